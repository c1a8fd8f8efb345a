//! Levels (modules) of a world: create, read, update, reorder, delete, their lessons.

use super::*;

/// Locks the world row for the rest of the transaction (serializes level
/// appends and edge checks per world).
pub(super) async fn lock_world(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
    not_found: &str,
) -> Result<()> {
    let found: Option<Uuid> = sqlx::query_scalar("SELECT id FROM worlds WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    found.map(|_| ()).ok_or_else(|| Error::not_found(not_found))
}

#[derive(Debug, Clone, Default)]
pub struct LevelCreate {
    pub title: String,
    pub description: Option<String>,
    /// `None`: append (order_index = the number of existing levels).
    pub order_index: Option<i32>,
    pub x_position: f64,
    pub y_position: f64,
}

/// Creates a level; `not_found` is the message when the world is missing.
pub async fn create_level(
    db: &PgPool,
    actor: &Actor,
    world_id: Uuid,
    input: LevelCreate,
    not_found: &str,
) -> Result<AdminLevel> {
    non_empty("title", &input.title)?;
    non_negative("order_index", input.order_index)?;
    finite("x_position", Some(input.x_position))?;
    finite("y_position", Some(input.y_position))?;
    let mut tx = db.begin().await?;
    lock_world(&mut tx, world_id, not_found).await?;
    let order_index = match input.order_index {
        Some(o) => o,
        None => {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM levels WHERE world_id = $1")
                .bind(world_id)
                .fetch_one(&mut *tx)
                .await?;
            n as i32
        }
    };
    let level = sqlx::query_as::<_, AdminLevel>(sqlx::AssertSqlSafe(format!(
        "INSERT INTO levels AS l (world_id, title, description, order_index, x_position, y_position)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING {ADMIN_LEVEL_COLUMNS}"
    )))
    .bind(world_id)
    .bind(input.title.trim())
    .bind(&input.description)
    .bind(order_index)
    .bind(input.x_position)
    .bind(input.y_position)
    .fetch_one(&mut *tx)
    .await?;
    let after = audit::snapshot(&mut tx, Table::Levels, level.id, false).await?;
    audit::record(
        &mut tx,
        actor
            .entry(action::LEVEL_CREATE, target::LEVEL, level.id)
            .after(after),
    )
    .await?;
    tx.commit().await?;
    Ok(level)
}

pub async fn get_level(db: &PgPool, id: Uuid) -> Result<AdminLevel> {
    sqlx::query_as::<_, AdminLevel>(sqlx::AssertSqlSafe(format!(
        "SELECT {ADMIN_LEVEL_COLUMNS} FROM levels l WHERE l.id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| Error::not_found(LEVEL_NOT_FOUND))
}

#[derive(Debug, Clone, Default)]
pub struct LevelUpdate {
    pub title: Option<String>,
    pub description: Patch<Option<String>>,
    pub thumbnail_url: Patch<Option<String>>,
    pub mux_preview_playback_id: Patch<Option<String>>,
    pub mux_preview_asset_id: Patch<Option<String>>,
    pub outcome: Patch<Option<String>>,
    pub duration_minutes: Option<i32>,
    pub total_xp: Option<i32>,
    pub status: Option<String>,
    pub order_index: Option<i32>,
    pub x_position: Option<f64>,
    pub y_position: Option<f64>,
}

pub async fn update_level(
    db: &PgPool,
    actor: &Actor,
    id: Uuid,
    input: LevelUpdate,
) -> Result<AdminLevel> {
    if let Some(t) = &input.title {
        non_empty("title", t)?;
    }
    non_negative("duration_minutes", input.duration_minutes)?;
    non_negative("total_xp", input.total_xp)?;
    non_negative("order_index", input.order_index)?;
    finite("x_position", input.x_position)?;
    finite("y_position", input.y_position)?;
    if let Patch::Set(Some(o)) = &input.outcome {
        max_len("outcome", Some(o), 255)?;
    }
    max_len("status", input.status.as_deref(), 50)?;
    let status = input
        .status
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let (d_set, d) = input.description.bind_parts();
    let (t_set, t) = input.thumbnail_url.bind_parts();
    let (p_set, p) = input.mux_preview_playback_id.bind_parts();
    let (a_set, a) = input.mux_preview_asset_id.bind_parts();
    let (o_set, o) = input.outcome.bind_parts();
    let mut tx = db.begin().await?;
    let Some(before) = audit::snapshot(&mut tx, Table::Levels, id, true).await? else {
        return Err(Error::not_found(LEVEL_NOT_FOUND));
    };
    let level = sqlx::query_as::<_, AdminLevel>(sqlx::AssertSqlSafe(format!(
        "UPDATE levels AS l SET
             title = COALESCE($2, title),
             description = CASE WHEN $3 THEN $4 ELSE description END,
             thumbnail_url = CASE WHEN $5 THEN $6 ELSE thumbnail_url END,
             mux_preview_playback_id = CASE WHEN $7 THEN $8 ELSE mux_preview_playback_id END,
             mux_preview_asset_id = CASE WHEN $9 THEN $10 ELSE mux_preview_asset_id END,
             outcome = CASE WHEN $11 THEN $12 ELSE outcome END,
             duration_minutes = COALESCE($13, duration_minutes),
             total_xp = COALESCE($14, total_xp),
             status = COALESCE($15, status),
             order_index = COALESCE($16, order_index),
             x_position = COALESCE($17, x_position),
             y_position = COALESCE($18, y_position),
             updated_at = now()
         WHERE l.id = $1
         RETURNING {ADMIN_LEVEL_COLUMNS}"
    )))
    .bind(id)
    .bind(input.title.as_deref().map(str::trim))
    .bind(d_set)
    .bind(d)
    .bind(t_set)
    .bind(t)
    .bind(p_set)
    .bind(p)
    .bind(a_set)
    .bind(a)
    .bind(o_set)
    .bind(o)
    .bind(input.duration_minutes)
    .bind(input.total_xp)
    .bind(status)
    .bind(input.order_index)
    .bind(input.x_position)
    .bind(input.y_position)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| Error::not_found(LEVEL_NOT_FOUND))?;
    record_update(
        &mut tx,
        actor,
        Table::Levels,
        action::LEVEL_UPDATE,
        target::LEVEL,
        id,
        before,
    )
    .await?;
    tx.commit().await?;
    Ok(level)
}

pub async fn set_level_position(
    db: &PgPool,
    actor: &Actor,
    id: Uuid,
    x: Option<f64>,
    y: Option<f64>,
) -> Result<()> {
    finite("x_position", x)?;
    finite("y_position", y)?;
    let mut tx = db.begin().await?;
    let Some(before) = audit::snapshot(&mut tx, Table::Levels, id, true).await? else {
        return Err(Error::not_found(LEVEL_NOT_FOUND));
    };
    let n = sqlx::query(
        "UPDATE levels SET x_position = COALESCE($2, x_position),
                           y_position = COALESCE($3, y_position), updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(x)
    .bind(y)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(Error::not_found(LEVEL_NOT_FOUND));
    }
    record_update(
        &mut tx,
        actor,
        Table::Levels,
        action::LEVEL_POSITION,
        target::LEVEL,
        id,
        before,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Deletes a level with its edges and lessons (and their progress,
/// submissions and comments) through the cascading foreign keys.
pub async fn delete_level(db: &PgPool, actor: &Actor, id: Uuid) -> Result<()> {
    let d = Deletion {
        table: Table::Levels,
        action: action::LEVEL_DELETE,
        target: target::LEVEL,
        not_found: LEVEL_NOT_FOUND,
    };
    delete_row(db, actor, d, id).await
}

/// `GET /api/admin/levels/{id}/lessons`: by order_index (then id), with the
/// admin's own completion, never locked (D3). Two queries.
pub async fn level_lessons(db: &PgPool, admin: Uuid, level_id: Uuid) -> Result<Vec<LessonItem>> {
    let exists: Option<Uuid> = sqlx::query_scalar("SELECT id FROM levels WHERE id = $1")
        .bind(level_id)
        .fetch_optional(db)
        .await?;
    if exists.is_none() {
        return Err(Error::not_found(LEVEL_NOT_FOUND));
    }
    courses::lesson_items(
        db,
        Some(admin),
        LessonScope::Level(level_id),
        false,
        "le.order_index, le.id",
    )
    .await
}
