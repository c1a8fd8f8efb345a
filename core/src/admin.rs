//! The admin course builder and back office (API.md §3.3, except submissions):
//! worlds, levels, lessons and skill-tree edges, the students list and stats.
//!
//! Every write is one statement or one transaction. Updates are single
//! `UPDATE`s that only touch the fields given (no read-modify-write), so two
//! admins editing the same lesson cannot corrupt each other's fields; ordering
//! is computed on read with deterministic tie-breaks. Deletes rely on the
//! schema's `ON DELETE CASCADE` (progress, submissions, comments, edges: D27).
//!
//! Every write also records its audit row (N4.5) in its transaction: the row
//! before (read `FOR UPDATE`) and after, by the acting admin.

use crate::audit::{self, Actor, Table, action, target};
use crate::courses::{
    self, LESSON_NOT_FOUND, LEVEL_NOT_FOUND, LessonItem, LessonScope, WORLD_NOT_FOUND,
};
use crate::error::is_unique_violation;
use crate::{Context, Error, Result, jobs, notifications};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

pub const COURSE_NOT_FOUND: &str = "Course not found";
pub const EDGE_NOT_FOUND: &str = "Edge not found";
pub const LESSON_PLACEHOLDER_URL: &str = "https://example.com/video/placeholder";

/// A field of a partial update: leave it, or set it (to `None` for a nullable
/// column cleared by an explicit `null`).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Patch<T> {
    #[default]
    Keep,
    Set(T),
}

impl<T> Patch<T> {
    pub fn is_set(&self) -> bool {
        matches!(self, Patch::Set(_))
    }
}

impl<T: Clone> Patch<Option<T>> {
    /// `(set?, value)` for binding `CASE WHEN $set THEN $value ELSE col END`.
    fn bind_parts(&self) -> (bool, Option<T>) {
        match self {
            Patch::Keep => (false, None),
            Patch::Set(v) => (true, v.clone()),
        }
    }
}

// ---------------------------------------------------------------------------
// Validation (FastAPI-shaped 422s) and enumerations
// ---------------------------------------------------------------------------

fn non_empty(field: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::validation(
            &["body", field],
            "String should have at least 1 character",
            "string_too_short",
            json!(value),
        ));
    }
    Ok(())
}

fn non_negative(field: &str, value: Option<i32>) -> Result<()> {
    match value {
        Some(v) if v < 0 => Err(Error::validation(
            &["body", field],
            "Input should be greater than or equal to 0",
            "greater_than_equal",
            json!(v),
        )),
        _ => Ok(()),
    }
}

/// The largest distance from the origin of a level on the skill-tree canvas.
/// Far beyond any drawing, and small enough that every value survives a JSON
/// round trip exactly (the audit log stores rows as jsonb).
pub const MAX_POSITION: f64 = 1_000_000.0;

/// A skill-tree coordinate: finite and within ±[`MAX_POSITION`].
fn finite(field: &str, value: Option<f64>) -> Result<()> {
    match value {
        Some(v) if !v.is_finite() => Err(Error::validation(
            &["body", field],
            "Input should be a finite number",
            "finite_number",
            json!(null),
        )),
        Some(v) if v > MAX_POSITION => Err(Error::validation(
            &["body", field],
            "Input should be less than or equal to 1000000",
            "less_than_equal",
            json!(v),
        )),
        Some(v) if v < -MAX_POSITION => Err(Error::validation(
            &["body", field],
            "Input should be greater than or equal to -1000000",
            "greater_than_equal",
            json!(v),
        )),
        _ => Ok(()),
    }
}

fn max_len(field: &str, value: Option<&str>, max: usize) -> Result<()> {
    match value {
        Some(v) if v.chars().count() > max => Err(Error::validation(
            &["body", field],
            format!("String should have at most {max} characters"),
            "string_too_long",
            json!(v),
        )),
        _ => Ok(()),
    }
}

/// Difficulty, matched case-insensitively against the names; 400 otherwise.
pub fn parse_difficulty(raw: &str) -> Result<String> {
    match raw.trim().to_ascii_uppercase().as_str() {
        "BEGINNER" => Ok("Beginner".into()),
        "INTERMEDIATE" => Ok("Intermediate".into()),
        "ADVANCED" => Ok("Advanced".into()),
        "OPEN" => Ok("Open".into()),
        _ => Err(Error::bad_request(format!("Invalid difficulty: {raw}"))),
    }
}

fn parse_enum(field: &str, raw: Option<&str>, allowed: &[&str]) -> Result<Option<String>> {
    let Some(raw) = raw else { return Ok(None) };
    let v = raw.trim().to_ascii_lowercase();
    if v.is_empty() {
        return Ok(None);
    }
    if allowed.contains(&v.as_str()) {
        return Ok(Some(v));
    }
    let list = allowed.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>();
    let (last, init) = list.split_last().expect("non-empty");
    Err(Error::validation(
        &["body", field],
        format!("Input should be {} or {last}", init.join(", ")),
        "enum",
        json!(raw),
    ))
}

/// `course`/`choreo`/`topic`, case-insensitive; empty means "not given".
pub fn parse_course_type(raw: Option<&str>) -> Result<Option<String>> {
    parse_enum("course_type", raw, &["course", "choreo", "topic"])
}

/// `video`/`quiz`/`history`, case-insensitive; empty means "not given".
pub fn parse_lesson_type(raw: Option<&str>) -> Result<Option<String>> {
    parse_enum("lesson_type", raw, &["video", "quiz", "history"])
}

/// `content_json` must be a JSON object; a `blocks` key must hold objects and
/// a quiz block's `questions` must be a list of objects.
pub fn validate_content_json(v: &Value) -> Result<()> {
    let bad = |msg: &str| {
        Err(Error::validation(
            &["body", "content_json"],
            msg.to_string(),
            "model_type",
            v.clone(),
        ))
    };
    let Value::Object(map) = v else {
        return bad("Input should be a valid dictionary");
    };
    if let Some(blocks) = map.get("blocks") {
        let Value::Array(blocks) = blocks else {
            return bad("blocks should be a list of objects");
        };
        for b in blocks {
            let Value::Object(b) = b else {
                return bad("blocks should be a list of objects");
            };
            if let Some(q) = b.get("questions") {
                let ok = q
                    .as_array()
                    .is_some_and(|qs| qs.iter().all(Value::is_object));
                if !ok {
                    return bad("questions should be a list of objects");
                }
            }
        }
    }
    Ok(())
}

fn map_slug_conflict(e: sqlx::Error, msg: &str) -> Error {
    if is_unique_violation(&e, Some("worlds_slug_key")) {
        Error::bad_request(msg)
    } else {
        Error::Database(e)
    }
}

// ---------------------------------------------------------------------------
// Worlds
// ---------------------------------------------------------------------------

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

async fn admin_world_item(db: &PgPool, admin: Uuid, id: Uuid) -> Result<courses::WorldItem> {
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
struct Deletion {
    table: Table,
    action: &'static str,
    target: &'static str,
    not_found: &'static str,
}

/// Deletes one row by id (`not_found` when there is none) with its audit row,
/// the deleted row as `before`. The foreign keys cascade to everything hanging
/// off the row.
async fn delete_row(db: &PgPool, actor: &Actor, d: Deletion, id: Uuid) -> Result<()> {
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
async fn record_update(
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

const ADMIN_LEVEL_COLUMNS: &str = "l.id, l.world_id, l.title, l.description, l.thumbnail_url,
     l.mux_preview_playback_id, l.mux_preview_asset_id, l.x_position, l.y_position, l.outcome,
     l.duration_minutes, l.total_xp, l.status, l.order_index";

const ADMIN_LESSON_COLUMNS: &str = "le.id, le.level_id, le.title, le.description, le.video_url,
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

// ---------------------------------------------------------------------------
// Levels
// ---------------------------------------------------------------------------

/// Locks the world row for the rest of the transaction (serializes level
/// appends and edge checks per world).
async fn lock_world(conn: &mut sqlx::PgConnection, id: Uuid, not_found: &str) -> Result<()> {
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

// ---------------------------------------------------------------------------
// Lessons
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Skill-tree edges
// ---------------------------------------------------------------------------

pub const EDGE_EXISTS: &str = "Edge already exists";
pub const EDGE_OUTSIDE_WORLD: &str = "Both levels must belong to this world";
pub const EDGE_SELF_LOOP: &str = "A level cannot be its own prerequisite";
pub const EDGE_CYCLE: &str = "This edge would create a cycle";

/// Adds the prerequisite edge `from → to` in a world. Rejected when a level is
/// missing (404), outside the world, the same level, already linked, or when
/// the edge would close a cycle (400). The world row is locked, so concurrent
/// additions are checked one after the other.
pub async fn create_edge(
    db: &PgPool,
    actor: &Actor,
    world_id: Uuid,
    from: Uuid,
    to: Uuid,
) -> Result<courses::Edge> {
    let mut tx = db.begin().await?;
    lock_world(&mut tx, world_id, WORLD_NOT_FOUND).await?;
    let levels: Vec<(Uuid, Uuid)> =
        sqlx::query_as("SELECT id, world_id FROM levels WHERE id = ANY($1)")
            .bind(vec![from, to])
            .fetch_all(&mut *tx)
            .await?;
    for id in [from, to] {
        match levels.iter().find(|(l, _)| *l == id) {
            None => return Err(Error::not_found(LEVEL_NOT_FOUND)),
            Some((_, w)) if *w != world_id => return Err(Error::bad_request(EDGE_OUTSIDE_WORLD)),
            Some(_) => {}
        }
    }
    if from == to {
        return Err(Error::bad_request(EDGE_SELF_LOOP));
    }
    // One query: does the edge exist, and can `from` already be reached from `to`?
    let (exists, cycle): (bool, bool) = sqlx::query_as(
        "WITH RECURSIVE reach(id) AS (
             SELECT $2::uuid
             UNION
             SELECT e.to_level_id FROM level_edges e JOIN reach r ON e.from_level_id = r.id
         )
         SELECT EXISTS (SELECT 1 FROM level_edges WHERE from_level_id = $1 AND to_level_id = $2),
                EXISTS (SELECT 1 FROM reach WHERE id = $1)",
    )
    .bind(from)
    .bind(to)
    .fetch_one(&mut *tx)
    .await?;
    if exists {
        return Err(Error::bad_request(EDGE_EXISTS));
    }
    if cycle {
        return Err(Error::bad_request(EDGE_CYCLE));
    }
    let edge = sqlx::query_as::<_, courses::Edge>(
        "INSERT INTO level_edges (world_id, from_level_id, to_level_id) VALUES ($1, $2, $3)
         RETURNING id, from_level_id, to_level_id, world_id",
    )
    .bind(world_id)
    .bind(from)
    .bind(to)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| {
        if is_unique_violation(&e, None) {
            Error::bad_request(EDGE_EXISTS)
        } else {
            Error::Database(e)
        }
    })?;
    let after = audit::snapshot(&mut tx, Table::LevelEdges, edge.id, false).await?;
    audit::record(
        &mut tx,
        actor
            .entry(action::EDGE_CREATE, target::EDGE, edge.id)
            .after(after),
    )
    .await?;
    tx.commit().await?;
    Ok(edge)
}

pub async fn delete_edge(db: &PgPool, actor: &Actor, id: Uuid) -> Result<()> {
    let d = Deletion {
        table: Table::LevelEdges,
        action: action::EDGE_DELETE,
        target: target::EDGE,
        not_found: EDGE_NOT_FOUND,
    };
    delete_row(db, actor, d, id).await
}

// ---------------------------------------------------------------------------
// Students and stats
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, PartialEq, sqlx::FromRow)]
pub struct Student {
    pub id: Uuid,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub xp: i32,
    pub level: i32,
    pub streak_count: i32,
    pub created_at: DateTime<Utc>,
    pub role: String,
}

/// Escapes `\`, `%` and `_` for a `LIKE ... ESCAPE '\'` pattern.
pub fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub const STUDENTS_DEFAULT_LIMIT: i64 = 100;
pub const STUDENTS_MAX_LIMIT: i64 = 500;

/// `GET /api/admin/students`: users with a profile, newest first; `search` is
/// a case-insensitive substring of email, first or last name; `limit` clamped
/// to 1..=500.
pub async fn students(
    db: &PgPool,
    search: Option<&str>,
    skip: i64,
    limit: Option<i64>,
) -> Result<Vec<Student>> {
    let limit = limit
        .unwrap_or(STUDENTS_DEFAULT_LIMIT)
        .clamp(1, STUDENTS_MAX_LIMIT);
    let pattern = search
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| format!("%{}%", escape_like(s)));
    Ok(sqlx::query_as::<_, Student>(
        "SELECT u.id, u.email, p.first_name, p.last_name, p.xp, p.level, p.streak_count,
                u.created_at, u.role
         FROM users u JOIN user_profiles p ON p.user_id = u.id
         WHERE $1::text IS NULL
            OR u.email ILIKE $1 ESCAPE '\\'
            OR p.first_name ILIKE $1 ESCAPE '\\'
            OR p.last_name ILIKE $1 ESCAPE '\\'
         ORDER BY u.created_at DESC, u.id DESC
         OFFSET $2 LIMIT $3",
    )
    .bind(pattern)
    .bind(skip.max(0))
    .bind(limit)
    .fetch_all(db)
    .await?)
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, sqlx::FromRow)]
pub struct Stats {
    pub total_users: i64,
    pub total_submissions: i64,
    pub pending_submissions: i64,
}

pub async fn stats(db: &PgPool) -> Result<Stats> {
    Ok(sqlx::query_as::<_, Stats>(
        "SELECT (SELECT count(*) FROM users) AS total_users,
                (SELECT count(*) FROM boss_submissions) AS total_submissions,
                (SELECT count(*) FROM boss_submissions WHERE status = 'pending')
                    AS pending_submissions",
    )
    .fetch_one(db)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_escaping() {
        assert_eq!(escape_like(r"a%b_c\d"), r"a\%b\_c\\d");
    }

    #[test]
    fn enums() {
        assert_eq!(parse_difficulty("beginner").unwrap(), "Beginner");
        assert_eq!(parse_difficulty("OPEN").unwrap(), "Open");
        assert_eq!(parse_difficulty("x").unwrap_err().status(), 400);
        assert_eq!(
            parse_course_type(Some("Choreo")).unwrap().as_deref(),
            Some("choreo")
        );
        assert_eq!(parse_course_type(Some("")).unwrap(), None);
        assert_eq!(parse_lesson_type(Some("dance")).unwrap_err().status(), 422);
    }

    #[test]
    fn content_json_rules() {
        assert!(validate_content_json(&json!({"blocks": [{"type": "text"}]})).is_ok());
        assert!(validate_content_json(&json!([1])).is_err());
        assert!(validate_content_json(&json!({"blocks": "x"})).is_err());
        assert!(
            validate_content_json(&json!({"blocks": [{"type": "quiz", "questions": [1]}]}))
                .is_err()
        );
    }
}
