//! The worlds list and a world as the caller may see it.

use super::*;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WorldItem {
    pub id: Uuid,
    pub title: String,
    pub slug: String,
    pub description: Option<String>,
    pub image_url: Option<String>,
    pub thumbnail_url: Option<String>,
    pub mux_preview_playback_id: Option<String>,
    pub difficulty: String,
    pub course_type: String,
    pub progress_percentage: f64,
    pub is_locked: bool,
    pub total_duration_minutes: i64,
    pub objectives: Vec<String>,
    pub module_count: i64,
    pub lesson_count: i64,
}

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct WorldRow {
    pub(super) id: Uuid,
    pub(super) title: String,
    pub(super) slug: String,
    pub(super) description: Option<String>,
    pub(super) image_url: Option<String>,
    pub(super) thumbnail_url: Option<String>,
    pub(super) mux_preview_playback_id: Option<String>,
    pub(super) difficulty: String,
    pub(super) course_type: String,
    pub(super) is_free: bool,
    pub(super) total_duration_minutes: i32,
    pub(super) objectives: Value,
    pub(super) module_count: i64,
    pub(super) lesson_count: i64,
    pub(super) duration_sum: i64,
    pub(super) completed: i64,
}

/// A jsonb array of strings; anything else is dropped.
pub fn objectives_from_json(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => vec![],
    }
}

/// Worlds with their catalogue aggregates and `user_id`'s completions (0
/// without a user), in one query. `include_unpublished` is for the admin list;
/// `only` restricts to one world.
pub(super) async fn world_rows(
    db: &PgPool,
    user_id: Option<Uuid>,
    include_unpublished: bool,
    only: Option<Uuid>,
) -> Result<Vec<WorldRow>> {
    Ok(sqlx::query_as::<_, WorldRow>(
        "SELECT w.id, w.title, w.slug, w.description, w.image_url, w.thumbnail_url,
                w.mux_preview_playback_id, w.difficulty, w.course_type, w.is_free,
                w.total_duration_minutes, w.objectives,
                COALESCE(s.module_count, 0)::bigint AS module_count,
                COALESCE(s.lesson_count, 0)::bigint AS lesson_count,
                COALESCE(s.duration_sum, 0)::bigint AS duration_sum,
                COALESCE(c.completed, 0)::bigint AS completed
         FROM worlds w
         LEFT JOIN (
             SELECT l.world_id,
                    count(DISTINCT l.id) AS module_count,
                    count(le.id) AS lesson_count,
                    sum(le.duration_minutes) AS duration_sum
             FROM levels l
             LEFT JOIN lessons le ON le.level_id = l.id
             WHERE ($3::uuid IS NULL OR l.world_id = $3)
             GROUP BY l.world_id
         ) s ON s.world_id = w.id
         -- The caller's completions only (the (user_id, lesson_id) index), not
         -- a join of every lesson against the whole progress table.
         LEFT JOIN (
             SELECT l.world_id, count(*) AS completed
             FROM user_progress up
             JOIN lessons le ON le.id = up.lesson_id
             JOIN levels l ON l.id = le.level_id
             WHERE up.user_id = $1 AND up.is_completed
             GROUP BY l.world_id
         ) c ON c.world_id = w.id
         WHERE ($2 OR w.is_published) AND ($3::uuid IS NULL OR w.id = $3)
         ORDER BY w.order_index, w.id",
    )
    .bind(user_id)
    .bind(include_unpublished)
    .bind(only)
    .fetch_all(db)
    .await?)
}

/// One world as `access` sees it, with `completed` of its lessons done.
pub(super) fn world_item(r: &WorldRow, access: &Access, completed: i64) -> WorldItem {
    WorldItem {
        id: r.id,
        title: r.title.clone(),
        slug: r.slug.clone(),
        description: r.description.clone(),
        image_url: r.image_url.clone(),
        thumbnail_url: r.thumbnail_url.clone(),
        mux_preview_playback_id: r.mux_preview_playback_id.clone(),
        difficulty: r.difficulty.clone(),
        course_type: r.course_type.clone(),
        progress_percentage: if access.user_id.is_some() {
            percentage(completed, r.lesson_count)
        } else {
            0.0
        },
        is_locked: !access.can_open(r.is_free),
        total_duration_minutes: if r.total_duration_minutes == 0 {
            r.duration_sum
        } else {
            r.total_duration_minutes as i64
        },
        objectives: objectives_from_json(&r.objectives),
        module_count: r.module_count,
        lesson_count: r.lesson_count,
    }
}

/// Worlds with their aggregates for `access` (the admin lists; uncached).
pub async fn world_items(
    db: &PgPool,
    access: &Access,
    include_unpublished: bool,
    only: Option<Uuid>,
) -> Result<Vec<WorldItem>> {
    let rows = world_rows(db, access.user_id, include_unpublished, only).await?;
    Ok(rows
        .iter()
        .map(|r| world_item(r, access, r.completed))
        .collect())
}

#[derive(sqlx::FromRow, Debug, Clone)]
pub(super) struct WorldHead {
    pub(super) id: Uuid,
    pub(super) title: String,
    pub(super) description: Option<String>,
    pub(super) difficulty: String,
    pub(super) course_type: String,
    pub(super) is_free: bool,
    pub(super) is_published: bool,
    pub(super) thumbnail_url: Option<String>,
}

/// The world and the caller's pro flag, in one query (404 when it does not
/// exist; visibility is the caller's check).
pub(super) async fn visible_world_for(
    db: &PgPool,
    user_id: Option<Uuid>,
    world_id: Uuid,
) -> Result<(WorldHead, Option<bool>)> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        head: WorldHead,
        pro: Option<bool>,
    }
    let r = sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(format!(
        "SELECT id, title, description, difficulty, course_type, is_free, is_published,
                thumbnail_url,
                (SELECT {PRO_SQL} FROM subscriptions s WHERE s.user_id = $2) AS pro
         FROM worlds WHERE id = $1"
    )))
    .bind(world_id)
    .bind(user_id)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| Error::not_found(WORLD_NOT_FOUND))?;
    Ok((r.head, r.pro))
}

/// The caller's access and the world they may see, in one query.
pub(super) async fn world_and_access(
    db: &PgPool,
    viewer: Option<&Viewer>,
    world_id: Uuid,
) -> Result<(WorldHead, Access)> {
    let (w, pro) = visible_world_for(db, viewer.map(|v| v.id), world_id).await?;
    let access = access_with(viewer, pro);
    if !w.is_published && !access.sees_unpublished() {
        return Err(Error::not_found(WORLD_NOT_FOUND));
    }
    Ok((w, access))
}
