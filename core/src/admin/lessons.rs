//! Lessons: create, read, update, delete.

use super::*;

#[derive(Debug, Clone, Default)]
pub struct LessonCreate {
    pub title: String,
    pub description: Option<String>,
    pub video_url: Option<String>,
    pub xp_value: Option<i32>,
    pub order_index: i32,
    pub is_boss_battle: Option<bool>,
    pub duration_minutes: Option<i32>,
    pub week_number: Option<i32>,
    pub day_number: Option<i32>,
    pub content_json: Option<Value>,
    pub mux_playback_id: Option<String>,
    pub mux_asset_id: Option<String>,
    pub thumbnail_url: Option<String>,
    pub lesson_type: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, sqlx::FromRow)]
pub struct LessonCreated {
    pub id: Uuid,
    pub title: String,
    pub order_index: i32,
    pub xp_value: i32,
    pub is_boss_battle: bool,
}

/// The course alias: the level must belong to the course.
pub async fn level_in_course(db: &PgPool, course_id: Uuid, level_id: Option<Uuid>) -> Result<Uuid> {
    let row: Option<(Uuid, Option<Uuid>)> = sqlx::query_as(
        "SELECT w.id, l.id FROM worlds w
         LEFT JOIN levels l ON l.world_id = w.id AND l.id = $2
         WHERE w.id = $1",
    )
    .bind(course_id)
    .bind(level_id)
    .fetch_optional(db)
    .await?;
    match row {
        None => Err(Error::not_found(COURSE_NOT_FOUND)),
        Some((_, Some(level))) => Ok(level),
        Some((_, None)) => Err(Error::not_found(LEVEL_NOT_FOUND)),
    }
}

pub async fn create_lesson(
    db: &PgPool,
    actor: &Actor,
    level_id: Uuid,
    input: LessonCreate,
) -> Result<LessonCreated> {
    non_empty("title", &input.title)?;
    non_negative("order_index", Some(input.order_index))?;
    non_negative("xp_value", input.xp_value)?;
    non_negative("duration_minutes", input.duration_minutes)?;
    non_negative("week_number", input.week_number)?;
    non_negative("day_number", input.day_number)?;
    let content = input.content_json.filter(|v| !v.is_null());
    if let Some(c) = &content {
        validate_content_json(c)?;
    }
    let lesson_type =
        parse_lesson_type(input.lesson_type.as_deref())?.unwrap_or_else(|| "video".into());
    let video_url = input
        .video_url
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| LESSON_PLACEHOLDER_URL.into());
    let mut tx = db.begin().await?;
    let created = sqlx::query_as::<_, LessonCreated>(
        "INSERT INTO lessons (level_id, title, description, video_url, xp_value, order_index,
                              is_boss_battle, duration_minutes, week_number, day_number,
                              content_json, mux_playback_id, mux_asset_id, thumbnail_url,
                              lesson_type)
         SELECT l.id, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15
         FROM levels l WHERE l.id = $1
         RETURNING id, title, order_index, xp_value, is_boss_battle",
    )
    .bind(level_id)
    .bind(input.title.trim())
    .bind(&input.description)
    .bind(video_url)
    .bind(input.xp_value.unwrap_or(50))
    .bind(input.order_index)
    .bind(input.is_boss_battle.unwrap_or(false))
    .bind(input.duration_minutes)
    .bind(input.week_number)
    .bind(input.day_number)
    .bind(content)
    .bind(&input.mux_playback_id)
    .bind(&input.mux_asset_id)
    .bind(&input.thumbnail_url)
    .bind(lesson_type)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| Error::not_found(LEVEL_NOT_FOUND))?;
    let after = audit::snapshot(&mut tx, Table::Lessons, created.id, false).await?;
    audit::record(
        &mut tx,
        actor
            .entry(action::LESSON_CREATE, target::LESSON, created.id)
            .after(after),
    )
    .await?;
    tx.commit().await?;
    Ok(created)
}

pub async fn get_lesson(db: &PgPool, id: Uuid) -> Result<AdminLesson> {
    sqlx::query_as::<_, AdminLesson>(sqlx::AssertSqlSafe(format!(
        "SELECT {ADMIN_LESSON_COLUMNS} FROM lessons le WHERE le.id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| Error::not_found(LESSON_NOT_FOUND))
}

/// A lesson update. `mux_*` ids are not part of it: only the webhook and the
/// upload checks set them; `delete_video` clears them and the video URL.
#[derive(Debug, Clone, Default)]
pub struct LessonUpdate {
    pub title: Option<String>,
    pub description: Patch<Option<String>>,
    pub video_url: Option<String>,
    pub xp_value: Option<i32>,
    pub order_index: Option<i32>,
    pub is_boss_battle: Option<bool>,
    pub duration_minutes: Patch<Option<i32>>,
    pub week_number: Patch<Option<i32>>,
    pub day_number: Patch<Option<i32>>,
    pub content_json: Patch<Option<Value>>,
    pub thumbnail_url: Patch<Option<String>>,
    /// Unknown values are a 422.
    pub lesson_type: Option<String>,
    pub delete_video: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, sqlx::FromRow)]
pub struct LessonUpdated {
    pub id: Uuid,
    pub title: String,
    pub order_index: i32,
}

pub async fn update_lesson(
    db: &PgPool,
    actor: &Actor,
    id: Uuid,
    input: LessonUpdate,
) -> Result<LessonUpdated> {
    if let Some(t) = &input.title {
        non_empty("title", t)?;
    }
    non_negative("xp_value", input.xp_value)?;
    non_negative("order_index", input.order_index)?;
    for (field, p) in [
        ("duration_minutes", &input.duration_minutes),
        ("week_number", &input.week_number),
        ("day_number", &input.day_number),
    ] {
        if let Patch::Set(v) = p {
            non_negative(field, *v)?;
        }
    }
    let content = match input.content_json {
        Patch::Set(Some(Value::Null)) | Patch::Set(None) => Patch::Set(None),
        Patch::Set(Some(v)) => {
            validate_content_json(&v)?;
            Patch::Set(Some(v))
        }
        Patch::Keep => Patch::Keep,
    };
    let lesson_type = parse_lesson_type(input.lesson_type.as_deref())?;
    let (d_set, d) = input.description.bind_parts();
    let (dm_set, dm) = input.duration_minutes.bind_parts();
    let (w_set, w) = input.week_number.bind_parts();
    let (day_set, day) = input.day_number.bind_parts();
    let (c_set, c) = content.bind_parts();
    let (t_set, t) = input.thumbnail_url.bind_parts();
    let mut tx = db.begin().await?;
    let Some(before) = audit::snapshot(&mut tx, Table::Lessons, id, true).await? else {
        return Err(Error::not_found(LESSON_NOT_FOUND));
    };
    let updated = sqlx::query_as::<_, LessonUpdated>(
        "UPDATE lessons SET
             title = COALESCE($2, title),
             description = CASE WHEN $3 THEN $4 ELSE description END,
             video_url = CASE WHEN $19 THEN '' ELSE COALESCE($5, video_url) END,
             xp_value = COALESCE($6, xp_value),
             order_index = COALESCE($7, order_index),
             is_boss_battle = COALESCE($8, is_boss_battle),
             duration_minutes = CASE WHEN $9 THEN $10 ELSE duration_minutes END,
             week_number = CASE WHEN $11 THEN $12 ELSE week_number END,
             day_number = CASE WHEN $13 THEN $14 ELSE day_number END,
             content_json = CASE WHEN $15 THEN $16 ELSE content_json END,
             thumbnail_url = CASE WHEN $17 THEN $18 ELSE thumbnail_url END,
             mux_playback_id = CASE WHEN $19 THEN NULL ELSE mux_playback_id END,
             mux_asset_id = CASE WHEN $19 THEN NULL ELSE mux_asset_id END,
             lesson_type = COALESCE($20, lesson_type),
             updated_at = now()
         WHERE id = $1
         RETURNING id, title, order_index",
    )
    .bind(id)
    .bind(input.title.as_deref().map(str::trim))
    .bind(d_set)
    .bind(d)
    .bind(input.video_url)
    .bind(input.xp_value)
    .bind(input.order_index)
    .bind(input.is_boss_battle)
    .bind(dm_set)
    .bind(dm)
    .bind(w_set)
    .bind(w)
    .bind(day_set)
    .bind(day)
    .bind(c_set)
    .bind(c)
    .bind(t_set)
    .bind(t)
    .bind(input.delete_video)
    .bind(lesson_type)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| Error::not_found(LESSON_NOT_FOUND))?;
    record_update(
        &mut tx,
        actor,
        Table::Lessons,
        action::LESSON_UPDATE,
        target::LESSON,
        id,
        before,
    )
    .await?;
    tx.commit().await?;
    Ok(updated)
}

/// Deletes a lesson with its progress, submissions and comments (cascade).
pub async fn delete_lesson(db: &PgPool, actor: &Actor, id: Uuid) -> Result<()> {
    let d = Deletion {
        table: Table::Lessons,
        action: action::LESSON_DELETE,
        target: target::LESSON,
        not_found: LESSON_NOT_FOUND,
    };
    delete_row(db, actor, d, id).await
}
