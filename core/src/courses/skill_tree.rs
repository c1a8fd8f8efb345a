//! The skill tree of a world.

use super::*;

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
    /// Every lesson of the level, boss battles included (N5.3; equal to
    /// `lesson_count`, which keeps API.md's meaning).
    pub total_lesson_count: i64,
    /// The teaser of a `topic` world's level ([`level_tldr`]); `None`
    /// elsewhere.
    pub tldr: Option<String>,
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
    /// The caller's lock on the world, as the worlds list computes it.
    pub is_locked: bool,
    pub levels: Vec<LevelNode>,
    pub edges: Vec<Edge>,
}

#[derive(sqlx::FromRow)]
pub(super) struct LevelRow {
    pub(super) id: Uuid,
    pub(super) title: String,
    pub(super) description: Option<String>,
    pub(super) order_index: i32,
    pub(super) x_position: f64,
    pub(super) y_position: f64,
    pub(super) thumbnail_url: Option<String>,
    pub(super) mux_preview_playback_id: Option<String>,
    pub(super) outcome: Option<String>,
    pub(super) duration_minutes: i32,
    pub(super) total_xp: i32,
    pub(super) status: String,
    pub(super) lesson_count: i64,
    pub(super) duration_sum: i64,
    pub(super) xp_sum: i64,
    pub(super) completed: i64,
    /// The first lesson's (§4.5) `content_json.translations[locale].notes`
    /// and `content_json.notes`, read for `topic` worlds only.
    pub(super) translated_notes: Option<Value>,
    pub(super) notes: Option<Value>,
}

/// Unlock rule of §4.6: every direct prerequisite at 100 %; roots always open.
pub fn unlocked(level: Uuid, edges: &[Edge], completion: &dyn Fn(Uuid) -> f64) -> bool {
    edges
        .iter()
        .filter(|e| e.to_level_id == level)
        .all(|e| completion(e.from_level_id) >= 100.0)
}

/// `GET /api/courses/worlds/{id}/skill-tree` with the teasers in English.
pub async fn skill_tree(db: &PgPool, viewer: Option<&Viewer>, world_id: Uuid) -> Result<SkillTree> {
    skill_tree_in(db, viewer, world_id, &Locale::default()).await
}

/// `GET /api/courses/worlds/{id}/skill-tree?locale=`. Three queries: the
/// world with the caller's access, the levels with their aggregates (and, for
/// a topic world, each level's first lesson's notes), the edges.
pub async fn skill_tree_in(
    db: &PgPool,
    viewer: Option<&Viewer>,
    world_id: Uuid,
    locale: &Locale,
) -> Result<SkillTree> {
    let (world, access) = world_and_access(db, viewer, world_id).await?;
    let topic = world.course_type == "topic";
    let rows = sqlx::query_as::<_, LevelRow>(sqlx::AssertSqlSafe(format!(
        "SELECT t.*, f.translated_notes, f.notes
         FROM (
             SELECT l.id, l.title, l.description, l.order_index, l.x_position, l.y_position,
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
         ) t
         -- The level's first lesson in the order of §4.5 (topic worlds only).
         LEFT JOIN LATERAL (
             SELECT le.content_json -> 'translations' -> $3 -> 'notes' AS translated_notes,
                    le.content_json -> 'notes' AS notes
             FROM lessons le
             JOIN levels l ON l.id = le.level_id
             WHERE $4 AND le.level_id = t.id
             ORDER BY {LESSON_ORDER_SQL}
             LIMIT 1
         ) f ON true
         ORDER BY t.order_index, t.id"
    )))
    .bind(world.id)
    .bind(access.user_id)
    .bind(locale.as_str())
    .bind(topic)
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
                total_lesson_count: r.lesson_count,
                tldr: if topic {
                    level_tldr(r.translated_notes.as_ref(), r.notes.as_ref())
                } else {
                    None
                },
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
        is_locked: !access.can_open(world.is_free),
        thumbnail_url: world.thumbnail_url,
        levels,
        edges,
    })
}
