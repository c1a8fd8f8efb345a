//! The lesson detail and its validator.

use super::*;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LessonDetail {
    pub id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub video_url: String,
    pub xp_value: i32,
    pub next_lesson_id: Option<Uuid>,
    pub prev_lesson_id: Option<Uuid>,
    pub week_number: Option<i32>,
    pub day_number: Option<i32>,
    pub content_json: Option<Value>,
    pub mux_playback_id: Option<String>,
    pub mux_asset_id: Option<String>,
    pub thumbnail_url: Option<String>,
    pub lesson_type: String,
    pub level_id: Option<Uuid>,
    pub level_title: Option<String>,
    /// What the answer depends on besides the lesson: see [`access_tag`].
    #[serde(skip)]
    pub state_tag: String,
}

#[derive(sqlx::FromRow)]
pub(super) struct LessonRow {
    pub(super) id: Uuid,
    pub(super) title: String,
    pub(super) description: Option<String>,
    pub(super) video_url: String,
    pub(super) xp_value: i32,
    pub(super) week_number: Option<i32>,
    pub(super) day_number: Option<i32>,
    pub(super) content_json: Option<Value>,
    pub(super) mux_playback_id: Option<String>,
    pub(super) mux_asset_id: Option<String>,
    pub(super) thumbnail_url: Option<String>,
    pub(super) lesson_type: String,
    pub(super) level_id: Uuid,
    pub(super) level_title: String,
    pub(super) world_is_free: bool,
    pub(super) world_is_published: bool,
}

pub(super) const LESSON_ROW_COLUMNS: &str =
    "le.id, le.title, le.description, le.video_url, le.xp_value,
     le.week_number, le.day_number, le.content_json, le.mux_playback_id, le.mux_asset_id,
     le.thumbnail_url, le.lesson_type, l.id AS level_id, l.title AS level_title,
     w.is_free AS world_is_free, w.is_published AS world_is_published";

/// The lesson with its level and world, and the caller's pro flag, in one query.
pub(super) async fn lesson_row(
    db: &PgPool,
    lesson_id: Uuid,
    viewer: &Viewer,
) -> Result<(LessonRow, Access)> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        row: LessonRow,
        pro: Option<bool>,
    }
    let r = sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(format!(
        "SELECT {LESSON_ROW_COLUMNS},
                (SELECT {PRO_SQL} FROM subscriptions s WHERE s.user_id = $2) AS pro
         FROM lessons le
         JOIN levels l ON l.id = le.level_id
         JOIN worlds w ON w.id = l.world_id
         WHERE le.id = $1"
    )))
    .bind(lesson_id)
    .bind(viewer.id)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| Error::not_found(LESSON_NOT_FOUND))?;
    Ok((r.row, access_with(Some(viewer), r.pro)))
}

/// 404 for an unpublished world, 403 for a world the caller cannot open.
pub(super) fn check_open(access: &Access, row: &LessonRow) -> Result<()> {
    if !row.world_is_published && !access.sees_unpublished() {
        return Err(Error::not_found(WORLD_NOT_FOUND));
    }
    if !access.can_open(row.world_is_free) {
        return Err(Error::forbidden(LOCKED_MSG));
    }
    Ok(())
}

/// `GET /api/courses/lessons/{id}` for a signed-in caller: the lesson, the
/// caller's access and the lesson's neighbours in its world's sorted list
/// (§4.5). A lesson of a published world comes from the catalogue cache
/// after one query of index lookups (the catalogue's version and the
/// caller's access); any other lesson (staff reading an unpublished world,
/// an unknown id) from the database.
pub async fn lesson_detail(
    ctx: &Context,
    viewer: &Viewer,
    lesson_id: Uuid,
) -> Result<LessonDetail> {
    let (version, access) = version_and_access(ctx, viewer).await?;
    let catalog = catalog_at(ctx, version).await?;
    let Some(place) = catalog.lesson_world.get(&lesson_id) else {
        return lesson_detail_db(&ctx.db, viewer, lesson_id).await;
    };
    let Some((is_free, list)) = catalog.lessons.get(&place.world) else {
        return lesson_detail_db(&ctx.db, viewer, lesson_id).await;
    };
    if !access.can_open(*is_free) {
        return Err(Error::forbidden(LOCKED_MSG));
    }
    let neighbour = |i: Option<usize>| i.and_then(|i| list.get(i)).map(|l| l.id);
    let l = &list[place.index];
    Ok(LessonDetail {
        id: l.id,
        title: l.title.clone(),
        description: l.description.clone(),
        video_url: l.video_url.clone(),
        xp_value: l.xp_value,
        next_lesson_id: neighbour(Some(place.index + 1)),
        prev_lesson_id: neighbour(place.index.checked_sub(1)),
        week_number: l.week_number,
        day_number: l.day_number,
        content_json: l.content_json.clone(),
        mux_playback_id: l.mux_playback_id.clone(),
        mux_asset_id: l.mux_asset_id.clone(),
        thumbnail_url: l.thumbnail_url.clone(),
        lesson_type: l.lesson_type.clone(),
        level_id: Some(place.level_id),
        level_title: Some(place.level_title.clone()),
        state_tag: access_tag_of(version, &access),
    })
}

/// [`lesson_detail`] from the database, in one query.
pub(super) async fn lesson_detail_db(
    db: &PgPool,
    viewer: &Viewer,
    lesson_id: Uuid,
) -> Result<LessonDetail> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        row: LessonRow,
        pro: Option<bool>,
        prev_id: Option<Uuid>,
        next_id: Option<Uuid>,
        catalog_version: i64,
    }
    let r = sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(format!(
        "SELECT {LESSON_ROW_COLUMNS},
                (SELECT {PRO_SQL} FROM subscriptions s WHERE s.user_id = $2) AS pro,
                n.prev_id, n.next_id,
                (SELECT version FROM cache_versions WHERE name = 'catalog') AS catalog_version
         FROM lessons le
         JOIN levels l ON l.id = le.level_id
         JOIN worlds w ON w.id = l.world_id
         LEFT JOIN LATERAL (
             SELECT t.prev_id, t.next_id FROM (
                 SELECT le.id, lag(le.id) OVER o AS prev_id, lead(le.id) OVER o AS next_id
                 FROM lessons le JOIN levels l ON l.id = le.level_id
                 WHERE l.world_id = w.id
                 WINDOW o AS (ORDER BY {LESSON_ORDER_SQL})
             ) t WHERE t.id = $1
         ) n ON true
         WHERE le.id = $1"
    )))
    .bind(lesson_id)
    .bind(viewer.id)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| Error::not_found(LESSON_NOT_FOUND))?;
    let access = access_with(Some(viewer), r.pro);
    let row = r.row;
    check_open(&access, &row)?;
    Ok(LessonDetail {
        id: row.id,
        title: row.title,
        description: row.description,
        video_url: row.video_url,
        xp_value: row.xp_value,
        next_lesson_id: r.next_id,
        prev_lesson_id: r.prev_id,
        week_number: row.week_number,
        day_number: row.day_number,
        content_json: row.content_json,
        mux_playback_id: row.mux_playback_id,
        mux_asset_id: row.mux_asset_id,
        thumbnail_url: row.thumbnail_url,
        lesson_type: row.lesson_type,
        level_id: Some(row.level_id),
        level_title: Some(row.level_title),
        state_tag: access_tag_of(r.catalog_version, &access),
    })
}

/// The validator state of reads that depend on the catalogue and on what the
/// caller may open, not on their progress (the lesson detail).
pub(super) fn access_tag_of(version: i64, access: &Access) -> String {
    let who = access
        .user_id
        .map(|u| u.simple().to_string())
        .unwrap_or_else(|| "-".into());
    format!(
        "c{version}:{who}:{}{}",
        u8::from(access.staff),
        u8::from(access.pro)
    )
}

/// [`access_tag_of`] read on its own (one query of two index lookups), to
/// answer a conditional request before the lesson is read.
pub async fn access_tag(ctx: &Context, viewer: &Viewer) -> Result<String> {
    let (version, access) = version_and_access(ctx, viewer).await?;
    Ok(access_tag_of(version, &access))
}

/// The catalogue's version and what the caller may open, in one query of
/// index lookups.
pub(super) async fn version_and_access(ctx: &Context, viewer: &Viewer) -> Result<(i64, Access)> {
    let (version, pro): (i64, Option<bool>) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT (SELECT version FROM cache_versions WHERE name = 'catalog'),
                (SELECT {PRO_SQL} FROM subscriptions s WHERE s.user_id = $1)"
    )))
    .bind(viewer.id)
    .fetch_one(&ctx.db)
    .await?;
    Ok((version, access_with(Some(viewer), pro)))
}
