//! Worlds (courses): list, create, update, delete, and the full course tree; the
//! audited delete and update helpers every part shares.

use super::*;

#[derive(Debug, Clone, Default)]
pub struct WorldCreate {
    pub title: String,
    pub description: Option<String>,
    pub slug: String,
    pub order_index: i32,
    pub is_free: bool,
    pub image_url: Option<String>,
    pub thumbnail_url: Option<String>,
    pub difficulty: String,
    pub course_type: Option<String>,
    pub is_published: bool,
    pub mux_preview_playback_id: Option<String>,
    pub mux_preview_asset_id: Option<String>,
    pub total_duration_minutes: Option<i32>,
    pub objectives: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default)]
pub struct WorldUpdate {
    pub title: Option<String>,
    pub description: Patch<Option<String>>,
    pub slug: Option<String>,
    pub order_index: Option<i32>,
    pub is_free: Option<bool>,
    pub image_url: Patch<Option<String>>,
    pub thumbnail_url: Patch<Option<String>>,
    pub difficulty: Option<String>,
    pub course_type: Option<String>,
    pub is_published: Option<bool>,
    pub mux_preview_playback_id: Patch<Option<String>>,
    pub mux_preview_asset_id: Patch<Option<String>>,
    pub total_duration_minutes: Option<i32>,
    pub objectives: Option<Vec<String>>,
}

pub(super) async fn admin_world_item(
    db: &PgPool,
    admin: Uuid,
    id: Uuid,
) -> Result<courses::WorldItem> {
    let access = courses::Access {
        user_id: Some(admin),
        staff: true,
        pro: true,
    };
    courses::world_items(db, &access, true, Some(id))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| Error::not_found(COURSE_NOT_FOUND))
}

/// `GET /api/admin/courses`: every world, published or not.
pub async fn list_courses(db: &PgPool, admin: Uuid) -> Result<Vec<courses::WorldItem>> {
    let access = courses::Access {
        user_id: Some(admin),
        staff: true,
        pro: true,
    };
    courses::world_items(db, &access, true, None).await
}

pub async fn create_world(
    ctx: &Context,
    actor: &Actor,
    input: WorldCreate,
) -> Result<courses::WorldItem> {
    let db = &ctx.db;
    let admin = actor.id;
    non_empty("title", &input.title)?;
    non_empty("slug", &input.slug)?;
    non_negative("order_index", Some(input.order_index))?;
    non_negative("total_duration_minutes", input.total_duration_minutes)?;
    let course_type =
        parse_course_type(input.course_type.as_deref())?.unwrap_or_else(|| "course".into());
    let difficulty = parse_difficulty(&input.difficulty)?;
    let objectives = json!(input.objectives.unwrap_or_default());
    // The course and, when it is published at once, its announcement.
    let mut tx = db.begin().await?;
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO worlds (title, description, slug, order_index, is_free, image_url,
                             thumbnail_url, difficulty, course_type, is_published,
                             mux_preview_playback_id, mux_preview_asset_id,
                             total_duration_minutes, objectives)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
         RETURNING id",
    )
    .bind(input.title.trim())
    .bind(&input.description)
    .bind(input.slug.trim())
    .bind(input.order_index)
    .bind(input.is_free)
    .bind(&input.image_url)
    .bind(&input.thumbnail_url)
    .bind(&difficulty)
    .bind(&course_type)
    .bind(input.is_published)
    .bind(&input.mux_preview_playback_id)
    .bind(&input.mux_preview_asset_id)
    .bind(input.total_duration_minutes.unwrap_or(0))
    .bind(objectives)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| map_slug_conflict(e, "Course with this slug already exists"))?;
    if input.is_published {
        notifications::fanout::world_published(&mut tx, id, admin, ctx.clock.now()).await?;
    }
    let after = audit::snapshot(&mut tx, Table::Worlds, id, false).await?;
    audit::record(
        &mut tx,
        actor
            .entry(action::COURSE_CREATE, target::COURSE, id)
            .after(after),
    )
    .await?;
    tx.commit().await?;
    jobs::wake_relay(ctx);
    admin_world_item(db, admin, id).await
}

pub async fn update_world(
    ctx: &Context,
    actor: &Actor,
    id: Uuid,
    input: WorldUpdate,
) -> Result<courses::WorldItem> {
    let db = &ctx.db;
    let admin = actor.id;
    if let Some(t) = &input.title {
        non_empty("title", t)?;
    }
    if let Some(s) = &input.slug {
        non_empty("slug", s)?;
    }
    non_negative("order_index", input.order_index)?;
    non_negative("total_duration_minutes", input.total_duration_minutes)?;
    let course_type = parse_course_type(input.course_type.as_deref())?;
    let difficulty = match input.difficulty.as_deref().map(parse_difficulty) {
        Some(Ok(d)) => Some(d),
        // The course is looked up first: an unknown id is a 404 whatever the body.
        Some(Err(e)) => {
            let exists: Option<Uuid> = sqlx::query_scalar("SELECT id FROM worlds WHERE id = $1")
                .bind(id)
                .fetch_optional(db)
                .await?;
            return Err(if exists.is_none() {
                Error::not_found(COURSE_NOT_FOUND)
            } else {
                e
            });
        }
        None => None,
    };
    let (desc_set, desc) = input.description.bind_parts();
    let (img_set, img) = input.image_url.bind_parts();
    let (thumb_set, thumb) = input.thumbnail_url.bind_parts();
    let (pb_set, pb) = input.mux_preview_playback_id.bind_parts();
    let (asset_set, asset) = input.mux_preview_asset_id.bind_parts();
    // The change and, on the first publication, its announcement.
    let mut tx = db.begin().await?;
    let Some(before) = audit::snapshot(&mut tx, Table::Worlds, id, true).await? else {
        return Err(Error::not_found(COURSE_NOT_FOUND));
    };
    let updated: Option<bool> = sqlx::query_scalar(
        "UPDATE worlds SET
             title = COALESCE($2, title),
             description = CASE WHEN $3 THEN $4 ELSE description END,
             slug = COALESCE($5, slug),
             order_index = COALESCE($6, order_index),
             is_free = COALESCE($7, is_free),
             image_url = CASE WHEN $8 THEN $9 ELSE image_url END,
             thumbnail_url = CASE WHEN $10 THEN $11 ELSE thumbnail_url END,
             difficulty = COALESCE($12, difficulty),
             course_type = COALESCE($13, course_type),
             is_published = COALESCE($14, is_published),
             mux_preview_playback_id = CASE WHEN $15 THEN $16 ELSE mux_preview_playback_id END,
             mux_preview_asset_id = CASE WHEN $17 THEN $18 ELSE mux_preview_asset_id END,
             total_duration_minutes = COALESCE($19, total_duration_minutes),
             objectives = COALESCE($20, objectives),
             updated_at = now()
         WHERE id = $1 RETURNING is_published",
    )
    .bind(id)
    .bind(input.title.as_deref().map(str::trim))
    .bind(desc_set)
    .bind(desc)
    .bind(input.slug.as_deref().map(str::trim))
    .bind(input.order_index)
    .bind(input.is_free)
    .bind(img_set)
    .bind(img)
    .bind(thumb_set)
    .bind(thumb)
    .bind(difficulty)
    .bind(course_type)
    .bind(input.is_published)
    .bind(pb_set)
    .bind(pb)
    .bind(asset_set)
    .bind(asset)
    .bind(input.total_duration_minutes)
    .bind(input.objectives.map(|o| json!(o)))
    .fetch_optional(&mut *tx)
    .await
    .map_err(|e| map_slug_conflict(e, "Slug already taken"))?;
    let Some(published) = updated else {
        return Err(Error::not_found(COURSE_NOT_FOUND));
    };
    if published {
        notifications::fanout::world_published(&mut tx, id, admin, ctx.clock.now()).await?;
    }
    let after = audit::snapshot(&mut tx, Table::Worlds, id, false).await?;
    audit::record(
        &mut tx,
        actor
            .entry(action::COURSE_UPDATE, target::COURSE, id)
            .before(before)
            .after(after),
    )
    .await?;
    tx.commit().await?;
    jobs::wake_relay(ctx);
    admin_world_item(db, admin, id).await
}

/// What an audited one-row delete removes.
pub(super) struct Deletion {
    pub(super) table: Table,
    pub(super) action: &'static str,
    pub(super) target: &'static str,
    pub(super) not_found: &'static str,
}

/// Deletes one row by id (`not_found` when there is none) with its audit row,
/// the deleted row as `before`. The foreign keys cascade to everything hanging
/// off the row.
pub(super) async fn delete_row(db: &PgPool, actor: &Actor, d: Deletion, id: Uuid) -> Result<()> {
    let mut tx = db.begin().await?;
    let Some(before) = audit::snapshot(&mut tx, d.table, id, true).await? else {
        return Err(Error::not_found(d.not_found));
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {} WHERE id = $1",
        d.table.name()
    )))
    .bind(id)
    .execute(&mut *tx)
    .await?;
    audit::record(&mut tx, actor.entry(d.action, d.target, id).before(before)).await?;
    tx.commit().await?;
    Ok(())
}

/// Records an update's audit row: `before` as read under the lock, `after`
/// read back in the same transaction.
pub(super) async fn record_update(
    conn: &mut sqlx::PgConnection,
    actor: &Actor,
    table: Table,
    action: &'static str,
    target: &'static str,
    id: Uuid,
    before: serde_json::Value,
) -> Result<()> {
    let after = audit::snapshot(conn, table, id, false).await?;
    audit::record(
        conn,
        actor.entry(action, target, id).before(before).after(after),
    )
    .await
}

/// Deletes a world with its levels, lessons, edges and everything hanging off
/// the lessons (one statement; the foreign keys cascade).
pub async fn delete_world(db: &PgPool, actor: &Actor, id: Uuid) -> Result<()> {
    let d = Deletion {
        table: Table::Worlds,
        action: action::COURSE_DELETE,
        target: target::COURSE,
        not_found: COURSE_NOT_FOUND,
    };
    delete_row(db, actor, d, id).await
}

#[derive(Debug, Clone, Serialize, PartialEq, sqlx::FromRow)]
pub struct AdminLesson {
    pub id: Uuid,
    pub level_id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub video_url: String,
    pub xp_value: i32,
    pub order_index: i32,
    pub is_boss_battle: bool,
    pub duration_minutes: Option<i32>,
    pub week_number: Option<i32>,
    pub day_number: Option<i32>,
    pub content_json: Option<Value>,
    pub thumbnail_url: Option<String>,
    pub mux_playback_id: Option<String>,
    pub mux_asset_id: Option<String>,
    pub lesson_type: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, sqlx::FromRow)]
pub struct AdminLevel {
    pub id: Uuid,
    pub world_id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub thumbnail_url: Option<String>,
    pub mux_preview_playback_id: Option<String>,
    pub mux_preview_asset_id: Option<String>,
    pub x_position: f64,
    pub y_position: f64,
    pub outcome: Option<String>,
    pub duration_minutes: i32,
    pub total_xp: i32,
    pub status: String,
    pub order_index: i32,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AdminLevelFull {
    pub level: AdminLevel,
    pub lessons: Vec<AdminLesson>,
}

#[derive(Debug, Clone, Serialize, PartialEq, sqlx::FromRow)]
pub struct AdminWorld {
    pub id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub slug: String,
    pub order_index: i32,
    pub is_free: bool,
    pub image_url: Option<String>,
    pub thumbnail_url: Option<String>,
    pub mux_preview_playback_id: Option<String>,
    pub mux_preview_asset_id: Option<String>,
    pub difficulty: String,
    pub course_type: String,
    pub is_published: bool,
    pub total_duration_minutes: i32,
    pub objectives: Value,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AdminCourseFull {
    pub world: AdminWorld,
    pub levels: Vec<AdminLevelFull>,
}

pub(super) const ADMIN_LEVEL_COLUMNS: &str =
    "l.id, l.world_id, l.title, l.description, l.thumbnail_url,
     l.mux_preview_playback_id, l.mux_preview_asset_id, l.x_position, l.y_position, l.outcome,
     l.duration_minutes, l.total_xp, l.status, l.order_index";

pub(super) const ADMIN_LESSON_COLUMNS: &str =
    "le.id, le.level_id, le.title, le.description, le.video_url,
     le.xp_value, le.order_index, le.is_boss_battle, le.duration_minutes, le.week_number,
     le.day_number, le.content_json, le.thumbnail_url, le.mux_playback_id, le.mux_asset_id,
     le.lesson_type";

/// `GET /api/admin/courses/{id}/full`: the world, its levels by order_index and
/// each level's lessons per §4.5. Three queries.
pub async fn course_full(db: &PgPool, id: Uuid) -> Result<AdminCourseFull> {
    let world = sqlx::query_as::<_, AdminWorld>(
        "SELECT id, title, description, slug, order_index, is_free, image_url, thumbnail_url,
                mux_preview_playback_id, mux_preview_asset_id, difficulty, course_type,
                is_published, total_duration_minutes, objectives
         FROM worlds WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| Error::not_found(COURSE_NOT_FOUND))?;
    let levels = sqlx::query_as::<_, AdminLevel>(sqlx::AssertSqlSafe(format!(
        "SELECT {ADMIN_LEVEL_COLUMNS} FROM levels l WHERE l.world_id = $1
         ORDER BY l.order_index, l.id"
    )))
    .bind(id)
    .fetch_all(db)
    .await?;
    let lessons = sqlx::query_as::<_, AdminLesson>(sqlx::AssertSqlSafe(format!(
        "SELECT {ADMIN_LESSON_COLUMNS} FROM lessons le JOIN levels l ON l.id = le.level_id
         WHERE l.world_id = $1 ORDER BY {}",
        courses::LESSON_ORDER_SQL
    )))
    .bind(id)
    .fetch_all(db)
    .await?;
    let mut by_level: std::collections::HashMap<Uuid, Vec<AdminLesson>> = Default::default();
    for le in lessons {
        by_level.entry(le.level_id).or_default().push(le);
    }
    let levels = levels
        .into_iter()
        .map(|level| AdminLevelFull {
            lessons: by_level.remove(&level.id).unwrap_or_default(),
            level,
        })
        .collect();
    Ok(AdminCourseFull { world, levels })
}
