//! Badges (API.md §3.11, §4.8): definitions, a user's earned badges, awarding.

use crate::jobs::BadgeCheckJob;
use crate::{Context, Result, notifications};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// One badge definition with the user's earned state (BadgeItem of §3.0).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct BadgeItem {
    pub id: String,
    pub name: String,
    pub description: String,
    pub tier: String,
    pub icon_url: Option<String>,
    pub category: String,
    pub requirement_type: String,
    pub requirement_value: i32,
    pub is_earned: bool,
    pub earned_at: Option<DateTime<Utc>>,
    pub display_order: i32,
}

/// The badge definitions, in their tie-break order (requirement value
/// descending, then id). They change only through migrations and the seed,
/// so each process keeps them for [`DEFINITIONS_TTL`] (issue 20: the caller's
/// own profile carries all of them on every page load).
#[derive(Debug, Clone, sqlx::FromRow)]
struct Definition {
    id: String,
    name: String,
    description: String,
    tier: String,
    icon_url: Option<String>,
    category: String,
    requirement_type: String,
    requirement_value: i32,
}

/// How long a process keeps the badge definitions before reading them again.
pub const DEFINITIONS_TTL: std::time::Duration = std::time::Duration::from_secs(60);

type Definitions = std::sync::Arc<Vec<Definition>>;

static DEFINITIONS: std::sync::Mutex<Option<(std::time::Instant, Definitions)>> =
    std::sync::Mutex::new(None);

async fn definitions(db: &PgPool) -> Result<Definitions> {
    if let Ok(slot) = DEFINITIONS.lock()
        && let Some((at, defs)) = slot.as_ref()
        && at.elapsed() < DEFINITIONS_TTL
    {
        return Ok(defs.clone());
    }
    let defs: Definitions = std::sync::Arc::new(
        sqlx::query_as::<_, Definition>(
            "SELECT d.id, d.name, COALESCE(d.description, '') AS description,
                    COALESCE(d.tier, 'Silver') AS tier, d.icon_url,
                    COALESCE(d.category, 'special') AS category,
                    COALESCE(d.requirement_type, 'manual') AS requirement_type,
                    COALESCE(d.threshold, 0) AS requirement_value
             FROM badge_definitions d
             ORDER BY COALESCE(d.threshold, 0) DESC, d.id ASC",
        )
        .fetch_all(db)
        .await?,
    );
    if let Ok(mut slot) = DEFINITIONS.lock() {
        *slot = Some((std::time::Instant::now(), defs.clone()));
    }
    Ok(defs)
}

/// A user's earned badge: (badge id, earned at, display order).
pub type Earned = (String, DateTime<Utc>, i32);

/// Every definition with the earned state of `earned`, sorted as §3.0 says:
/// earned first; then display_order ascending (0 counts as 9999); then
/// requirement_value descending, then id (the definitions' own order).
async fn catalogue_for(db: &PgPool, earned: &[Earned]) -> Result<Vec<BadgeItem>> {
    let defs = definitions(db).await?;
    let mut items: Vec<(usize, BadgeItem)> = defs
        .iter()
        .enumerate()
        .map(|(pos, d)| {
            let mine = earned.iter().find(|(id, ..)| *id == d.id);
            (
                pos,
                BadgeItem {
                    id: d.id.clone(),
                    name: d.name.clone(),
                    description: d.description.clone(),
                    tier: d.tier.clone(),
                    icon_url: d.icon_url.clone(),
                    category: d.category.clone(),
                    requirement_type: d.requirement_type.clone(),
                    requirement_value: d.requirement_value,
                    is_earned: mine.is_some(),
                    earned_at: mine.map(|(_, at, _)| *at),
                    display_order: mine.map(|(.., o)| *o).unwrap_or(0),
                },
            )
        })
        .collect();
    items.sort_by_key(|(pos, b)| {
        let order = if b.display_order == 0 {
            9999
        } else {
            b.display_order
        };
        (!b.is_earned, order, *pos)
    });
    Ok(items.into_iter().map(|(_, b)| b).collect())
}

/// Every definition with `user_id`'s earned state (see [`catalogue_for`]):
/// the user's earned rows (one index lookup) over the cached definitions.
pub async fn list_for_user(db: &PgPool, user_id: Option<Uuid>) -> Result<Vec<BadgeItem>> {
    let earned: Vec<Earned> = match user_id {
        Some(u) => sqlx::query_as(
            "SELECT badge_id::text, earned_at, display_order FROM user_badges WHERE user_id = $1",
        )
        .bind(u)
        .fetch_all(db)
        .await?,
        None => vec![],
    };
    catalogue_for(db, &earned).await
}

/// [`list_for_user`] for earned rows the caller already read.
pub async fn list_with_earned(db: &PgPool, earned: &[Earned]) -> Result<Vec<BadgeItem>> {
    catalogue_for(db, earned).await
}

/// Only the badges the user has earned, in the same order.
pub async fn earned_for_user(db: &PgPool, user_id: Uuid) -> Result<Vec<BadgeItem>> {
    Ok(list_for_user(db, Some(user_id))
        .await?
        .into_iter()
        .filter(|b| b.is_earned)
        .collect())
}

// ---------------------------------------------------------------------------
// Stats and awarding (§4.8)
// ---------------------------------------------------------------------------

/// The requirement types that are computed from data and awarded automatically.
/// `manual` badges (Founder, Beta Tester) are never auto-awarded.
pub const AUTO_STATS: &[&str] = &[
    "reactions_given",
    "reactions_received",
    "fires_received",
    "claps_received",
    "metronomes_received",
    "solutions_accepted",
    "videos_posted",
    "questions_posted",
    "comments_posted",
    "daily_streak",
    "lessons_completed",
];

/// The public stats of a user (GET /api/badges/stats/{user_id}), all computed
/// from source data in one query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct UserStats {
    pub reactions_given: i64,
    pub reactions_received: i64,
    pub fires_received: i64,
    pub claps_received: i64,
    pub metronomes_received: i64,
    pub solutions_accepted: i64,
    pub questions_posted: i64,
    pub videos_posted: i64,
    pub comments_posted: i64,
    pub current_streak: i64,
    pub lessons_completed: i64,
}

impl UserStats {
    /// The value of one requirement type (None for `manual` or unknown types).
    pub fn value(&self, stat: &str) -> Option<i64> {
        Some(match stat {
            "reactions_given" => self.reactions_given,
            "reactions_received" => self.reactions_received,
            "fires_received" => self.fires_received,
            "claps_received" => self.claps_received,
            "metronomes_received" => self.metronomes_received,
            "solutions_accepted" => self.solutions_accepted,
            "videos_posted" => self.videos_posted,
            "questions_posted" => self.questions_posted,
            "comments_posted" => self.comments_posted,
            "daily_streak" | "current_streak" => self.current_streak,
            "lessons_completed" => self.lessons_completed,
            _ => return None,
        })
    }
}

/// Resolves a path id to `users.id`: first as a users.id, then as a
/// user_profiles.id (D30). `None` when neither exists.
pub async fn resolve_user_id(db: &PgPool, id: Uuid) -> Result<Option<Uuid>> {
    let found: Option<Uuid> = sqlx::query_scalar(
        "SELECT COALESCE((SELECT u.id FROM users u WHERE u.id = $1),
                         (SELECT p.user_id FROM user_profiles p WHERE p.id = $1))",
    )
    .bind(id)
    .fetch_one(db)
    .await?;
    Ok(found)
}

/// Every stat of §4.8 for `user_id`, or `None` when the user does not exist.
pub async fn stats(conn: &mut PgConnection, user_id: Uuid) -> Result<Option<UserStats>> {
    let stats = sqlx::query_as::<_, UserStats>(
        "SELECT COALESCE(s.reactions_given_count, 0)::bigint AS reactions_given,
                COALESCE(s.reactions_received_count, 0)::bigint AS reactions_received,
                COALESCE(r.fires, 0)::bigint AS fires_received,
                COALESCE(r.claps, 0)::bigint AS claps_received,
                COALESCE(r.rulers, 0)::bigint AS metronomes_received,
                COALESCE(s.solutions_accepted_count, 0)::bigint AS solutions_accepted,
                (SELECT count(*) FROM posts p
                  WHERE p.user_id = u.id AND p.post_type = 'lab') AS questions_posted,
                (SELECT count(*) FROM posts p
                  WHERE p.user_id = u.id AND p.post_type = 'stage'
                    AND p.mux_asset_id IS NOT NULL) AS videos_posted,
                (SELECT count(*) FROM post_replies pr WHERE pr.user_id = u.id) AS comments_posted,
                COALESCE(up.streak_count, 0)::bigint AS current_streak,
                (SELECT count(*) FROM user_progress x
                  WHERE x.user_id = u.id AND x.is_completed) AS lessons_completed
         FROM users u
         LEFT JOIN user_stats s ON s.user_id = u.id
         LEFT JOIN user_profiles up ON up.user_id = u.id
         LEFT JOIN LATERAL (
             SELECT count(*) FILTER (WHERE pr.reaction_type = 'fire') AS fires,
                    count(*) FILTER (WHERE pr.reaction_type = 'clap') AS claps,
                    count(*) FILTER (WHERE pr.reaction_type = 'ruler') AS rulers
             FROM post_reactions pr JOIN posts p ON p.id = pr.post_id
             WHERE p.user_id = u.id
         ) r ON true
         WHERE u.id = $1",
    )
    .bind(user_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(stats)
}

/// The current value of one stat, computed from source data. `None` for
/// `manual`, an unknown stat, or a user that does not exist.
pub async fn stat_value(conn: &mut PgConnection, user_id: Uuid, stat: &str) -> Result<Option<i64>> {
    let sql = match stat {
        "reactions_given" => {
            "SELECT COALESCE(s.reactions_given_count, 0)::bigint
             FROM users u LEFT JOIN user_stats s ON s.user_id = u.id WHERE u.id = $1"
        }
        "reactions_received" => {
            "SELECT COALESCE(s.reactions_received_count, 0)::bigint
             FROM users u LEFT JOIN user_stats s ON s.user_id = u.id WHERE u.id = $1"
        }
        "solutions_accepted" => {
            "SELECT COALESCE(s.solutions_accepted_count, 0)::bigint
             FROM users u LEFT JOIN user_stats s ON s.user_id = u.id WHERE u.id = $1"
        }
        "fires_received" | "claps_received" | "metronomes_received" => {
            "SELECT (SELECT count(*) FROM post_reactions pr JOIN posts p ON p.id = pr.post_id
                     WHERE p.user_id = u.id AND pr.reaction_type = $2)
             FROM users u WHERE u.id = $1"
        }
        "videos_posted" => {
            "SELECT (SELECT count(*) FROM posts p WHERE p.user_id = u.id
                     AND p.post_type = 'stage' AND p.mux_asset_id IS NOT NULL)
             FROM users u WHERE u.id = $1"
        }
        "questions_posted" => {
            "SELECT (SELECT count(*) FROM posts p WHERE p.user_id = u.id AND p.post_type = 'lab')
             FROM users u WHERE u.id = $1"
        }
        "comments_posted" => {
            "SELECT (SELECT count(*) FROM post_replies pr WHERE pr.user_id = u.id)
             FROM users u WHERE u.id = $1"
        }
        "daily_streak" | "current_streak" => {
            "SELECT streak_count::bigint FROM user_profiles WHERE user_id = $1"
        }
        "lessons_completed" => {
            "SELECT (SELECT count(*) FROM user_progress x WHERE x.user_id = u.id AND x.is_completed)
             FROM users u WHERE u.id = $1"
        }
        _ => return Ok(None),
    };
    let reaction_type = match stat {
        "fires_received" => "fire",
        "claps_received" => "clap",
        _ => "ruler",
    };
    let mut q = sqlx::query_scalar::<_, i64>(sql).bind(user_id);
    if stat.ends_with("_received") && stat != "reactions_received" {
        q = q.bind(reaction_type);
    }
    Ok(q.fetch_optional(&mut *conn).await?)
}

/// One badge awarded by a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Awarded {
    pub badge_id: String,
    pub badge_name: String,
    pub requirement_type: String,
    pub threshold: i32,
}

/// Awards every definition whose requirement type is in `values` with
/// `threshold <= value` that the user does not own. The unique key
/// (user_id, badge_id) with `ON CONFLICT DO NOTHING` makes concurrent checks
/// award each badge once; only the rows this call inserted are returned.
/// Manual badges are never awarded here.
pub async fn award(
    conn: &mut PgConnection,
    user_id: Uuid,
    values: &[(&str, i64)],
    now: DateTime<Utc>,
) -> Result<Vec<Awarded>> {
    let (types, vals): (Vec<String>, Vec<i64>) = values
        .iter()
        .filter(|(t, _)| *t != "manual")
        .map(|(t, v)| (t.to_string(), *v))
        .unzip();
    if types.is_empty() {
        return Ok(vec![]);
    }
    let awarded = sqlx::query_as::<_, Awarded>(
        "WITH v AS (
             SELECT * FROM unnest($2::text[], $3::bigint[]) AS t(requirement_type, value)
         ), ins AS (
             INSERT INTO user_badges (user_id, badge_id, earned_at)
             SELECT u.id, d.id, $4
             FROM badge_definitions d
             JOIN v ON v.requirement_type = d.requirement_type
             JOIN users u ON u.id = $1
             WHERE d.requirement_type <> 'manual' AND d.threshold <= v.value
             ON CONFLICT (user_id, badge_id) DO NOTHING
             RETURNING badge_id
         )
         SELECT d.id AS badge_id, d.name AS badge_name, d.requirement_type, d.threshold
         FROM ins JOIN badge_definitions d ON d.id = ins.badge_id
         ORDER BY d.requirement_type, d.threshold, d.id",
    )
    .bind(user_id)
    .bind(&types)
    .bind(&vals)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    Ok(awarded)
}

/// The badge check of one stat (the worker's `badge_check` job): computes the
/// stat from source data and awards every tier reached. Idempotent; a
/// `manual`, unknown or definition-less stat awards nothing.
pub async fn check(ctx: &Context, user_id: Uuid, stat: &str) -> Result<Vec<Awarded>> {
    if !AUTO_STATS.contains(&stat) {
        return Ok(vec![]);
    }
    let mut conn = ctx.db.acquire().await?;
    let Some(value) = stat_value(&mut conn, user_id, stat).await? else {
        return Ok(vec![]);
    };
    drop(conn);
    award_and_notify(ctx, user_id, &[(stat, value)]).await
}

/// [`award`] and a `badge_earned` notification per new badge, in one
/// transaction (a badge is never awarded without its notification), then
/// announced to the live streams.
async fn award_and_notify(
    ctx: &Context,
    user_id: Uuid,
    values: &[(&str, i64)],
) -> Result<Vec<Awarded>> {
    let now = ctx.clock.now();
    let mut tx = ctx.db.begin().await?;
    let awarded = award(&mut tx, user_id, values, now).await?;
    let mut pending = notifications::Pending::default();
    if !awarded.is_empty() {
        let items: Vec<notifications::New> = awarded
            .iter()
            .map(|a| notifications::New::badge(user_id, &a.badge_id, &a.badge_name))
            .collect();
        notifications::notify_many(&mut tx, now, &items, &mut pending).await?;
    }
    tx.commit().await?;
    pending.publish(ctx).await;
    Ok(awarded)
}

/// The `badge_check` job's handler: awards every badge tier of `job.stat` the
/// user has reached and does not own ([`check`]), and logs what it awarded.
/// Idempotent: the (user_id, badge_id) unique key makes a repeated or
/// concurrent run award nothing twice.
pub async fn run_check(ctx: &Context, job: &BadgeCheckJob) -> Result<()> {
    let awarded = check(ctx, job.user_id, &job.stat).await?;
    if awarded.is_empty() {
        tracing::debug!(user_id = %job.user_id, stat = job.stat, "badge check: nothing new");
    } else {
        let ids: Vec<&str> = awarded.iter().map(|a| a.badge_id.as_str()).collect();
        tracing::info!(user_id = %job.user_id, stat = job.stat, badges = ?ids, "badges awarded");
    }
    Ok(())
}

/// Recomputes every requirement type and awards every badge now reached
/// (POST /api/badges/check).
pub async fn check_all(ctx: &Context, user_id: Uuid) -> Result<Vec<Awarded>> {
    let mut conn = ctx.db.acquire().await?;
    let Some(s) = stats(&mut conn, user_id).await? else {
        return Ok(vec![]);
    };
    drop(conn);
    let values: Vec<(&str, i64)> = AUTO_STATS
        .iter()
        .filter_map(|t| s.value(t).map(|v| (*t, v)))
        .collect();
    award_and_notify(ctx, user_id, &values).await
}
