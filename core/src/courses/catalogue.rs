//! The published catalogue kept per process (keyed by the catalogue version)
//! and what every catalogue read depends on besides the request ([`Head`]).

use super::*;

/// One version of the published catalogue: the published worlds with their
/// catalogue aggregates, the part of the worlds list that is the same for
/// every caller, kept in process per [`Context`] (`ctx.catalog`) and
/// revalidated on every request against `cache_versions` (bumped by triggers
/// on worlds, levels and lessons, migration 0100), so a write through any
/// process is seen at once.
#[derive(Debug)]
pub struct Catalog {
    pub(super) worlds: Vec<WorldRow>,
    /// Every lesson of a listed world, to its place: a caller's completions
    /// are counted per world from their lesson ids alone, and a lesson's
    /// detail is read with its neighbours from its world's list.
    pub(super) lesson_world: HashMap<Uuid, LessonPlace>,
    /// Each listed world's lessons in the order of §4.5, as nobody's
    /// (not completed, not redacted), with whether the world is free.
    pub(super) lessons: HashMap<Uuid, (bool, Vec<LessonItem>)>,
}

/// Where a lesson of the catalogue is: its world, its index in the world's
/// sorted list, and its level.
#[derive(Debug)]
pub(super) struct LessonPlace {
    pub(super) world: Uuid,
    pub(super) index: usize,
    pub(super) level_id: Uuid,
    pub(super) level_title: String,
}

/// The published catalogue, read from the database (two queries).
pub(super) async fn load_catalog(db: &PgPool) -> Result<Catalog> {
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
pub(super) async fn catalog_at(ctx: &Context, version: i64) -> Result<Arc<Catalog>> {
    Ok(match ctx.catalog.get::<Catalog>(version) {
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
    pub(super) version: i64,
    pub(super) catalog: Arc<Catalog>,
    pub(super) access: Access,
    pub(super) done: std::collections::HashSet<Uuid>,
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
