//! Learning: the catalogue of worlds, lesson lists and details, the skill tree,
//! lesson completion and who may open what (API.md §3.2, §4.4–4.7).
//!
//! Access (issue decision, overriding §4.7): anonymous callers see the
//! catalogue but no lesson content; a free world is open to every signed-in
//! user; any other world needs paid access (`payments::ACCESS_SQL`: an
//! `active`, `trialing` or in-grace `past_due` subscription of tier
//! `advanced` or `performer`); `admin` and `instructor` open everything.
//! Unpublished worlds are invisible (404 `World not found`) to everyone but staff.
//!
//! Every read here costs a fixed number of queries whatever the size of the
//! world (D17): lists are single joined/aggregated queries.

use crate::economy::{self, PRO_SQL};
use crate::jobs::{self, BadgeCheckJob};
use crate::{Context, Error, Result};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

pub const LOCKED_MSG: &str = "Subscription required. Please upgrade to access this course.";
pub const WORLD_NOT_FOUND: &str = "World not found";
pub const LEVEL_NOT_FOUND: &str = "Level not found";
pub const LESSON_NOT_FOUND: &str = "Lesson not found";

/// The sort key of §4.5 over `lessons le JOIN levels l`, with the explicit
/// tie-breaks: level order, then lesson id.
pub const LESSON_ORDER_SQL: &str = "COALESCE(le.week_number, 0), COALESCE(le.day_number, 0), \
     le.order_index, l.order_index, le.id";

/// The signed-in caller as the domain sees it.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub id: Uuid,
    pub role: String,
}

impl Viewer {
    pub fn is_staff(&self) -> bool {
        self.role == "admin" || self.role == "instructor"
    }
}

/// What the caller may see and open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub user_id: Option<Uuid>,
    pub staff: bool,
    /// Paid access (`payments::ACCESS_SQL`).
    pub pro: bool,
}

impl Access {
    pub const ANONYMOUS: Access = Access {
        user_id: None,
        staff: false,
        pro: false,
    };

    /// Whether the caller may open lessons of a world.
    pub fn can_open(&self, world_is_free: bool) -> bool {
        self.user_id.is_some() && (self.staff || world_is_free || self.pro)
    }

    /// Whether unpublished worlds exist for the caller.
    pub fn sees_unpublished(&self) -> bool {
        self.staff
    }
}

/// The caller's access when the pro flag was read by the caller's own query
/// (`(SELECT {PRO_SQL} FROM subscriptions s WHERE s.user_id = $n)`).
fn access_with(viewer: Option<&Viewer>, pro: Option<bool>) -> Access {
    match viewer {
        None => Access::ANONYMOUS,
        Some(v) => Access {
            user_id: Some(v.id),
            staff: v.is_staff(),
            pro: v.is_staff() || pro.unwrap_or(false),
        },
    }
}

/// `100 × done / total`, 0 when there is nothing to do (§4.6).
pub fn percentage(done: i64, total: i64) -> f64 {
    if total <= 0 {
        0.0
    } else {
        100.0 * done as f64 / total as f64
    }
}

// ---------------------------------------------------------------------------
// Worlds
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WorldItem {
    pub id: Uuid,
    pub title: String,
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
    id: Uuid,
    title: String,
    description: Option<String>,
    image_url: Option<String>,
    thumbnail_url: Option<String>,
    mux_preview_playback_id: Option<String>,
    difficulty: String,
    course_type: String,
    is_free: bool,
    total_duration_minutes: i32,
    objectives: Value,
    module_count: i64,
    lesson_count: i64,
    duration_sum: i64,
    completed: i64,
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
async fn world_rows(
    db: &PgPool,
    user_id: Option<Uuid>,
    include_unpublished: bool,
    only: Option<Uuid>,
) -> Result<Vec<WorldRow>> {
    Ok(sqlx::query_as::<_, WorldRow>(
        "SELECT w.id, w.title, w.description, w.image_url, w.thumbnail_url,
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
fn world_item(r: &WorldRow, access: &Access, completed: i64) -> WorldItem {
    WorldItem {
        id: r.id,
        title: r.title.clone(),
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

/// The published worlds with their catalogue aggregates: the part of the
/// worlds list that is the same for every caller, kept in process per
/// [`Context`] and revalidated on every request against `cache_versions`
/// (bumped by triggers on worlds, levels and lessons, migration 0100), so a
/// write through any process is seen at once.
#[derive(Default)]
pub struct CatalogCache(std::sync::RwLock<Option<(i64, Arc<Catalog>)>>);

/// One version of the published catalogue.
#[derive(Debug)]
pub struct Catalog {
    worlds: Vec<WorldRow>,
    /// Every lesson of a listed world, to its place: a caller's completions
    /// are counted per world from their lesson ids alone, and a lesson's
    /// detail is read with its neighbours from its world's list.
    lesson_world: HashMap<Uuid, LessonPlace>,
    /// Each listed world's lessons in the order of §4.5, as nobody's
    /// (not completed, not redacted), with whether the world is free.
    lessons: HashMap<Uuid, (bool, Vec<LessonItem>)>,
}

/// Where a lesson of the catalogue is: its world, its index in the world's
/// sorted list, and its level.
#[derive(Debug)]
struct LessonPlace {
    world: Uuid,
    index: usize,
    level_id: Uuid,
    level_title: String,
}

impl CatalogCache {
    fn get(&self, version: i64) -> Option<Arc<Catalog>> {
        let slot = self.0.read().unwrap_or_else(|e| e.into_inner());
        slot.as_ref()
            .filter(|(v, _)| *v == version)
            .map(|(_, c)| c.clone())
    }

    fn put(&self, version: i64, catalog: Arc<Catalog>) {
        let mut slot = self.0.write().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_none_or(|(v, _)| *v <= version) {
            *slot = Some((version, catalog));
        }
    }
}

impl std::fmt::Debug for CatalogCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CatalogCache")
    }
}

/// The published catalogue, read from the database (two queries).
async fn load_catalog(db: &PgPool) -> Result<Catalog> {
    #[derive(sqlx::FromRow)]
    struct Row {
        world_id: Uuid,
        world_is_free: bool,
        level_id: Uuid,
        level_title: String,
        #[sqlx(flatten)]
        item: LessonItem,
    }
    let worlds = world_rows(db, None, false, None).await?;
    let rows = sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(format!(
        "SELECT l.world_id, w.is_free AS world_is_free, l.id AS level_id, l.title AS level_title,
                le.id, le.title, le.description, le.video_url, le.xp_value,
                false AS is_completed, false AS is_locked,
                le.is_boss_battle, le.order_index, le.week_number, le.day_number,
                le.content_json, le.mux_playback_id, le.mux_asset_id, le.duration_minutes,
                le.thumbnail_url, le.lesson_type
         FROM lessons le
         JOIN levels l ON l.id = le.level_id
         JOIN worlds w ON w.id = l.world_id
         WHERE w.is_published
         ORDER BY l.world_id, {LESSON_ORDER_SQL}"
    )))
    .fetch_all(db)
    .await?;
    let mut lesson_world = HashMap::with_capacity(rows.len());
    let mut lessons: HashMap<Uuid, (bool, Vec<LessonItem>)> =
        worlds.iter().map(|w| (w.id, (w.is_free, vec![]))).collect();
    for r in rows {
        let list = &mut lessons
            .entry(r.world_id)
            .or_insert_with(|| (r.world_is_free, vec![]))
            .1;
        lesson_world.insert(
            r.item.id,
            LessonPlace {
                world: r.world_id,
                index: list.len(),
                level_id: r.level_id,
                level_title: r.level_title,
            },
        );
        list.push(r.item);
    }
    Ok(Catalog {
        worlds,
        lesson_world,
        lessons,
    })
}

/// The published catalogue of `version`: this process's copy, else read and
/// kept.
async fn catalog_at(ctx: &Context, version: i64) -> Result<Arc<Catalog>> {
    Ok(match ctx.catalog.get(version) {
        Some(c) => c,
        None => {
            let c = Arc::new(load_catalog(&ctx.db).await?);
            ctx.catalog.put(version, c.clone());
            c
        }
    })
}

/// What every catalogue read depends on besides the request itself: the
/// catalogue (and its version), the caller's access and their completed
/// lessons. Read in one query of index lookups ([`head`]); the catalogue's
/// aggregates come from the in-process cache.
pub struct Head {
    version: i64,
    catalog: Arc<Catalog>,
    access: Access,
    done: std::collections::HashSet<Uuid>,
}

impl Head {
    /// A short text naming that state, for HTTP validators (issue 20): the
    /// catalogue version, who is asking (staff, paid access) and a digest of
    /// their completed lessons. Equal tags mean equal responses.
    pub fn state_tag(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut ids: Vec<&Uuid> = self.done.iter().collect();
        ids.sort_unstable();
        let mut h = Sha256::new();
        for id in ids {
            h.update(id.as_bytes());
        }
        let who = self
            .access
            .user_id
            .map(|u| u.simple().to_string())
            .unwrap_or_else(|| "-".into());
        format!(
            "c{}:{who}:{}{}:{}",
            self.version,
            u8::from(self.access.staff),
            u8::from(self.access.pro),
            hex::encode(&h.finalize()[..8])
        )
    }
}

/// Reads the [`Head`] of a catalogue read.
pub async fn head(ctx: &Context, viewer: Option<&Viewer>) -> Result<Head> {
    let (version, pro, done): (i64, Option<bool>, Vec<Uuid>) =
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT (SELECT version FROM cache_versions WHERE name = 'catalog'),
                    (SELECT {PRO_SQL} FROM subscriptions s WHERE s.user_id = $1),
                    ARRAY(SELECT lesson_id FROM user_progress
                          WHERE user_id = $1 AND is_completed)"
        )))
        .bind(viewer.map(|v| v.id))
        .fetch_one(&ctx.db)
        .await?;
    // The version is read before the catalogue: what is cached under it is
    // at least as new as it, never older.
    let catalog = catalog_at(ctx, version).await?;
    Ok(Head {
        version,
        catalog,
        access: access_with(viewer, pro),
        done: done.into_iter().collect(),
    })
}

/// `GET /api/courses/worlds`: published worlds for the caller. One small query
/// per request (catalogue version, the caller's pro flag and completed lesson
/// ids: index lookups only); the aggregates over every lesson only when the
/// catalogue changed.
pub async fn list_worlds(ctx: &Context, viewer: Option<&Viewer>) -> Result<Vec<WorldItem>> {
    Ok(worlds_in(&head(ctx, viewer).await?))
}

/// The worlds list of a [`Head`] (no further query).
pub fn worlds_in(head: &Head) -> Vec<WorldItem> {
    let Head {
        catalog,
        access,
        done,
        ..
    } = head;
    let mut completed: HashMap<Uuid, i64> = HashMap::new();
    for lesson in done {
        if let Some(place) = catalog.lesson_world.get(lesson) {
            *completed.entry(place.world).or_default() += 1;
        }
    }
    catalog
        .worlds
        .iter()
        .map(|r| world_item(r, access, completed.get(&r.id).copied().unwrap_or(0)))
        .collect()
}

#[derive(sqlx::FromRow, Debug, Clone)]
struct WorldHead {
    id: Uuid,
    title: String,
    description: Option<String>,
    difficulty: String,
    course_type: String,
    is_free: bool,
    is_published: bool,
    thumbnail_url: Option<String>,
}

/// A world the caller may see (404 `World not found` otherwise).
async fn visible_world(db: &PgPool, access: &Access, world_id: Uuid) -> Result<WorldHead> {
    let (w, _) = visible_world_for(db, access.user_id, world_id).await?;
    if !w.is_published && !access.sees_unpublished() {
        return Err(Error::not_found(WORLD_NOT_FOUND));
    }
    Ok(w)
}

/// The world and the caller's pro flag, in one query (404 when it does not
/// exist; visibility is the caller's check).
async fn visible_world_for(
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
async fn world_and_access(
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

// ---------------------------------------------------------------------------
// Lesson lists
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, PartialEq, sqlx::FromRow)]
pub struct LessonItem {
    pub id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub video_url: String,
    pub xp_value: i32,
    pub is_completed: bool,
    pub is_locked: bool,
    pub is_boss_battle: bool,
    pub order_index: i32,
    pub week_number: Option<i32>,
    pub day_number: Option<i32>,
    pub content_json: Option<Value>,
    pub mux_playback_id: Option<String>,
    pub mux_asset_id: Option<String>,
    pub duration_minutes: Option<i32>,
    pub thumbnail_url: Option<String>,
    pub lesson_type: String,
}

impl LessonItem {
    /// Hides what a caller who cannot open the lesson must not get (D25).
    pub fn redact(&mut self) {
        self.video_url = String::new();
        self.content_json = None;
        self.mux_playback_id = None;
        self.mux_asset_id = None;
    }
}

const LESSON_ITEM_COLUMNS: &str = "le.id, le.title, le.description, le.video_url, le.xp_value,
     COALESCE(up.is_completed, false) AS is_completed, $3::bool AS is_locked,
     le.is_boss_battle, le.order_index, le.week_number, le.day_number, le.content_json,
     le.mux_playback_id, le.mux_asset_id, le.duration_minutes, le.thumbnail_url, le.lesson_type";

/// Lessons of one world (`by_level = false`) or one level, with the caller's
/// completion, in the given order. One query.
pub async fn lesson_items(
    db: &PgPool,
    user_id: Option<Uuid>,
    scope: LessonScope,
    is_locked: bool,
    order: &str,
) -> Result<Vec<LessonItem>> {
    let filter = match scope {
        LessonScope::World(_) => "l.world_id = $1",
        LessonScope::Level(_) => "le.level_id = $1",
    };
    let id = match scope {
        LessonScope::World(id) | LessonScope::Level(id) => id,
    };
    let sql = format!(
        "SELECT {LESSON_ITEM_COLUMNS}
         FROM lessons le
         JOIN levels l ON l.id = le.level_id
         LEFT JOIN user_progress up ON up.lesson_id = le.id AND up.user_id = $2
         WHERE {filter}
         ORDER BY {order}"
    );
    Ok(sqlx::query_as::<_, LessonItem>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(user_id)
        .bind(is_locked)
        .fetch_all(db)
        .await?)
}

#[derive(Debug, Clone, Copy)]
pub enum LessonScope {
    World(Uuid),
    Level(Uuid),
}

/// `GET /api/courses/worlds/{id}/lessons`: every lesson of the world, sorted per
/// §4.5; content redacted for callers who cannot open the world.
pub async fn world_lessons(
    ctx: &Context,
    viewer: Option<&Viewer>,
    world_id: Uuid,
) -> Result<Vec<LessonItem>> {
    // A published world: from the catalogue cache, with the caller's
    // completions (one query of index lookups).
    let head = head(ctx, viewer).await?;
    if let Some(items) = world_lessons_in(&head, world_id) {
        return Ok(items);
    }
    // Unpublished (staff only) or unknown: from the database.
    let db = &ctx.db;
    let (world, access) = world_and_access(db, viewer, world_id).await?;
    let mut items = lesson_items(
        db,
        access.user_id,
        LessonScope::World(world.id),
        false,
        LESSON_ORDER_SQL,
    )
    .await?;
    if !access.can_open(world.is_free) {
        items.iter_mut().for_each(LessonItem::redact);
    }
    Ok(items)
}

/// A published world's lessons from a [`Head`] (no further query); `None`
/// when the world is not in the published catalogue.
pub fn world_lessons_in(head: &Head, world_id: Uuid) -> Option<Vec<LessonItem>> {
    let Head {
        catalog,
        access,
        done,
        ..
    } = head;
    let (is_free, lessons) = catalog.lessons.get(&world_id)?;
    let open = access.can_open(*is_free);
    Some(
        lessons
            .iter()
            .map(|l| {
                let mut item = l.clone();
                item.is_completed = access.user_id.is_some() && done.contains(&l.id);
                if !open {
                    item.redact();
                }
                item
            })
            .collect(),
    )
}

/// `GET /api/courses/levels/{id}/lessons`: one level's lessons, sorted per §4.5.
/// `is_locked` is true for anonymous callers.
pub async fn level_lessons(
    db: &PgPool,
    viewer: Option<&Viewer>,
    level_id: Uuid,
) -> Result<Vec<LessonItem>> {
    let world_id: Uuid = sqlx::query_scalar("SELECT world_id FROM levels WHERE id = $1")
        .bind(level_id)
        .fetch_optional(db)
        .await?
        .ok_or_else(|| Error::not_found(LEVEL_NOT_FOUND))?;
    let (world, access) = world_and_access(db, viewer, world_id).await?;
    let mut items = lesson_items(
        db,
        access.user_id,
        LessonScope::Level(level_id),
        access.user_id.is_none(),
        LESSON_ORDER_SQL,
    )
    .await?;
    if !access.can_open(world.is_free) {
        items.iter_mut().for_each(LessonItem::redact);
    }
    Ok(items)
}

// ---------------------------------------------------------------------------
// Lesson detail
// ---------------------------------------------------------------------------

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
struct LessonRow {
    id: Uuid,
    title: String,
    description: Option<String>,
    video_url: String,
    xp_value: i32,
    week_number: Option<i32>,
    day_number: Option<i32>,
    content_json: Option<Value>,
    mux_playback_id: Option<String>,
    mux_asset_id: Option<String>,
    thumbnail_url: Option<String>,
    lesson_type: String,
    level_id: Uuid,
    level_title: String,
    world_is_free: bool,
    world_is_published: bool,
}

const LESSON_ROW_COLUMNS: &str = "le.id, le.title, le.description, le.video_url, le.xp_value,
     le.week_number, le.day_number, le.content_json, le.mux_playback_id, le.mux_asset_id,
     le.thumbnail_url, le.lesson_type, l.id AS level_id, l.title AS level_title,
     w.is_free AS world_is_free, w.is_published AS world_is_published";

/// The lesson with its level and world, and the caller's pro flag, in one query.
async fn lesson_row(db: &PgPool, lesson_id: Uuid, viewer: &Viewer) -> Result<(LessonRow, Access)> {
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
fn check_open(access: &Access, row: &LessonRow) -> Result<()> {
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
async fn lesson_detail_db(db: &PgPool, viewer: &Viewer, lesson_id: Uuid) -> Result<LessonDetail> {
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
fn access_tag_of(version: i64, access: &Access) -> String {
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
async fn version_and_access(ctx: &Context, viewer: &Viewer) -> Result<(i64, Access)> {
    let (version, pro): (i64, Option<bool>) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT (SELECT version FROM cache_versions WHERE name = 'catalog'),
                (SELECT {PRO_SQL} FROM subscriptions s WHERE s.user_id = $1)"
    )))
    .bind(viewer.id)
    .fetch_one(&ctx.db)
    .await?;
    Ok((version, access_with(Some(viewer), pro)))
}

// ---------------------------------------------------------------------------
// Completion
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct XpGain {
    pub xp_gained: i64,
    pub new_total_xp: i64,
    pub leveled_up: bool,
    pub new_level: i64,
}

/// Completes a lesson for the caller: the lesson's XP once per user and lesson
/// (a repeat returns `xp_gained = 0` and changes nothing), the level recomputed
/// (D21), the streak touched and a badge check queued, all in one transaction.
/// Concurrent completions award once: the progress upsert only reports a row
/// that has just become completed.
pub async fn complete_lesson(ctx: &Context, viewer: &Viewer, lesson_id: Uuid) -> Result<XpGain> {
    let db = &ctx.db;
    let (row, access) = lesson_row(db, lesson_id, viewer).await?;
    check_open(&access, &row)?;
    let now = ctx.clock.now();

    let mut tx = db.begin().await?;
    let newly: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO user_progress (user_id, lesson_id, is_completed, completed_at)
         VALUES ($1, $2, true, $3)
         ON CONFLICT (user_id, lesson_id) DO UPDATE
             SET is_completed = true, completed_at = EXCLUDED.completed_at
             WHERE user_progress.is_completed = false
         RETURNING id",
    )
    .bind(viewer.id)
    .bind(row.id)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;

    if newly.is_none() {
        tx.rollback().await?;
        let xp: Option<i32> = sqlx::query_scalar("SELECT xp FROM user_profiles WHERE user_id = $1")
            .bind(viewer.id)
            .fetch_optional(db)
            .await?;
        let xp = xp.ok_or_else(|| Error::not_found("Profile not found"))? as i64;
        return Ok(XpGain {
            xp_gained: 0,
            new_total_xp: xp,
            leveled_up: false,
            new_level: economy::level_for_xp(xp),
        });
    }

    // RETURNING sees the new xp and the level before this completion.
    let (new_xp, old_level): (i32, i32) = sqlx::query_as(
        "UPDATE user_profiles SET xp = xp + $2, updated_at = now()
         WHERE user_id = $1 RETURNING xp, level",
    )
    .bind(viewer.id)
    .bind(row.xp_value)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| Error::not_found("Profile not found"))?;
    let new_level = economy::level_for_xp(new_xp as i64);
    sqlx::query("UPDATE user_profiles SET level = $2 WHERE user_id = $1")
        .bind(viewer.id)
        .bind(new_level as i32)
        .execute(&mut *tx)
        .await?;
    crate::streaks::update_streak(&mut tx, viewer.id, now).await?;
    jobs::enqueue(
        &mut tx,
        &BadgeCheckJob {
            user_id: viewer.id,
            stat: "lessons_completed".into(),
        },
    )
    .await?;
    tx.commit().await?;
    jobs::wake_relay(ctx);
    Ok(XpGain {
        xp_gained: row.xp_value as i64,
        new_total_xp: new_xp as i64,
        leveled_up: new_level > old_level as i64,
        new_level,
    })
}

// ---------------------------------------------------------------------------
// Skill tree
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LevelNode {
    pub id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub order_index: i32,
    pub x_position: f64,
    pub y_position: f64,
    pub thumbnail_url: Option<String>,
    pub mux_preview_playback_id: Option<String>,
    pub is_unlocked: bool,
    pub completion_percentage: f64,
    pub lesson_count: i64,
    pub outcome: Option<String>,
    pub duration_minutes: i64,
    pub total_xp: i64,
    pub status: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, sqlx::FromRow)]
pub struct Edge {
    pub id: Uuid,
    pub from_level_id: Uuid,
    pub to_level_id: Uuid,
    pub world_id: Uuid,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SkillTree {
    pub id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub difficulty: String,
    pub course_type: String,
    pub is_free: bool,
    pub is_published: bool,
    pub thumbnail_url: Option<String>,
    pub levels: Vec<LevelNode>,
    pub edges: Vec<Edge>,
}

#[derive(sqlx::FromRow)]
struct LevelRow {
    id: Uuid,
    title: String,
    description: Option<String>,
    order_index: i32,
    x_position: f64,
    y_position: f64,
    thumbnail_url: Option<String>,
    mux_preview_playback_id: Option<String>,
    outcome: Option<String>,
    duration_minutes: i32,
    total_xp: i32,
    status: String,
    lesson_count: i64,
    duration_sum: i64,
    xp_sum: i64,
    completed: i64,
}

/// Unlock rule of §4.6: every direct prerequisite at 100 %; roots always open.
pub fn unlocked(level: Uuid, edges: &[Edge], completion: &dyn Fn(Uuid) -> f64) -> bool {
    edges
        .iter()
        .filter(|e| e.to_level_id == level)
        .all(|e| completion(e.from_level_id) >= 100.0)
}

/// `GET /api/courses/worlds/{id}/skill-tree`. Three queries.
pub async fn skill_tree(db: &PgPool, viewer: Option<&Viewer>, world_id: Uuid) -> Result<SkillTree> {
    let access = match viewer {
        Some(v) => Access {
            user_id: Some(v.id),
            staff: v.is_staff(),
            pro: false,
        },
        None => Access::ANONYMOUS,
    };
    let world = visible_world(db, &access, world_id).await?;
    let rows = sqlx::query_as::<_, LevelRow>(
        "SELECT l.id, l.title, l.description, l.order_index, l.x_position, l.y_position,
                l.thumbnail_url, l.mux_preview_playback_id, l.outcome, l.duration_minutes,
                l.total_xp, l.status,
                count(le.id)::bigint AS lesson_count,
                COALESCE(sum(le.duration_minutes), 0)::bigint AS duration_sum,
                COALESCE(sum(le.xp_value), 0)::bigint AS xp_sum,
                count(up.id)::bigint AS completed
         FROM levels l
         LEFT JOIN lessons le ON le.level_id = l.id
         LEFT JOIN user_progress up
                ON up.lesson_id = le.id AND up.user_id = $2 AND up.is_completed
         WHERE l.world_id = $1
         GROUP BY l.id
         ORDER BY l.order_index, l.id",
    )
    .bind(world.id)
    .bind(access.user_id)
    .fetch_all(db)
    .await?;
    let edges = sqlx::query_as::<_, Edge>(
        "SELECT id, from_level_id, to_level_id, world_id FROM level_edges
         WHERE world_id = $1 ORDER BY id",
    )
    .bind(world.id)
    .fetch_all(db)
    .await?;

    let completion: std::collections::HashMap<Uuid, f64> = rows
        .iter()
        .map(|r| (r.id, percentage(r.completed, r.lesson_count)))
        .collect();
    let anonymous = access.user_id.is_none();
    let levels = rows
        .into_iter()
        .map(|r| {
            let is_unlocked = if anonymous {
                !edges.iter().any(|e| e.to_level_id == r.id)
            } else {
                unlocked(r.id, &edges, &|id| {
                    completion.get(&id).copied().unwrap_or(0.0)
                })
            };
            LevelNode {
                id: r.id,
                title: r.title,
                description: r.description,
                order_index: r.order_index,
                x_position: r.x_position,
                y_position: r.y_position,
                thumbnail_url: r.thumbnail_url,
                mux_preview_playback_id: r.mux_preview_playback_id,
                is_unlocked,
                completion_percentage: percentage(r.completed, r.lesson_count),
                lesson_count: r.lesson_count,
                outcome: r.outcome,
                duration_minutes: if r.duration_minutes == 0 {
                    r.duration_sum
                } else {
                    r.duration_minutes as i64
                },
                total_xp: if r.total_xp == 0 {
                    r.xp_sum
                } else {
                    r.total_xp as i64
                },
                status: if r.status.is_empty() {
                    "active".into()
                } else {
                    r.status
                },
            }
        })
        .collect();
    Ok(SkillTree {
        id: world.id,
        title: world.title,
        description: world.description,
        difficulty: world.difficulty,
        course_type: world.course_type,
        is_free: world.is_free,
        is_published: world.is_published,
        thumbnail_url: world.thumbnail_url,
        levels,
        edges,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages() {
        assert_eq!(percentage(0, 0), 0.0);
        assert_eq!(percentage(1, 3), 33.333333333333336);
        assert_eq!(percentage(3, 3), 100.0);
    }

    #[test]
    fn access_rule() {
        let anon = Access::ANONYMOUS;
        assert!(!anon.can_open(true));
        let student = Access {
            user_id: Some(Uuid::nil()),
            staff: false,
            pro: false,
        };
        assert!(student.can_open(true));
        assert!(!student.can_open(false));
        let pro = Access {
            pro: true,
            ..student
        };
        assert!(pro.can_open(false));
    }

    #[test]
    fn unlock_rule() {
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let w = Uuid::new_v4();
        let edges = vec![
            Edge {
                id: Uuid::new_v4(),
                from_level_id: a,
                to_level_id: b,
                world_id: w,
            },
            Edge {
                id: Uuid::new_v4(),
                from_level_id: b,
                to_level_id: c,
                world_id: w,
            },
        ];
        let done = |id: Uuid| if id == a { 100.0 } else { 0.0 };
        assert!(unlocked(a, &edges, &done));
        assert!(unlocked(b, &edges, &done));
        assert!(!unlocked(c, &edges, &done));
    }
}
