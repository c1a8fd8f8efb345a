//! Lesson lists of a world or a level.

use super::*;

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

pub(super) const LESSON_ITEM_COLUMNS: &str =
    "le.id, le.title, le.description, le.video_url, le.xp_value,
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
