//! Community leaderboards (API-2026-05.md N5.4): the boards of `GET /stats`
//! with `period`/`category`, the hall of fame, `GET /stats/my-rank`, and the
//! snapshot they read.
//!
//! The boards are computed cheaply: the worker's `leaderboard_rebuild` cron
//! (every 60 s) calls [`rebuild`], which replaces the whole of
//! `leaderboard_entries` in one transaction with one set-based statement per
//! (period, category) plus the legacy ranking of API.md §4.9. Requests only
//! read the snapshot by its indexes ([`board`], [`rank_in_snapshot`]); the
//! one live part is the caller's own score on my-rank ([`live_score`], a few
//! indexed counts on the caller's rows). Boards therefore lag activity by at
//! most one tick.
//!
//! What counts: posts, replies and reactions that are neither deleted nor
//! hidden. A reply or reaction on a hidden post is hidden with it. Windows
//! (7 / 30 days) apply to each item's own creation time (a reaction's, a
//! reply's, a post's); an accepted answer is dated by its reply. Tombstoned
//! (deleted) accounts are never ranked.

use crate::Result;
use crate::community::Validation;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// The periods a board covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Weekly,
    Monthly,
    AllTime,
}

impl Period {
    pub const ALL: [Period; 3] = [Period::Weekly, Period::Monthly, Period::AllTime];
    pub const NAMES: [&'static str; 3] = ["weekly", "monthly", "all_time"];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
            Self::AllTime => "all_time",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
    /// The earliest creation time that counts (year 1 for all time: within
    /// PostgreSQL's range, before any row).
    pub fn since(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Self::Weekly => now - Duration::days(7),
            Self::Monthly => now - Duration::days(30),
            Self::AllTime => chrono::NaiveDate::from_ymd_opt(1, 1, 1)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
                .unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
        }
    }
}

/// What a board scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Overall,
    Helpful,
    Creative,
    Active,
}

/// Points per counted item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weights {
    pub posts: i64,
    pub reactions_received: i64,
    pub replies: i64,
    pub accepted_answers: i64,
    pub reactions_given: i64,
}

impl Category {
    pub const ALL: [Category; 4] = [
        Category::Overall,
        Category::Helpful,
        Category::Creative,
        Category::Active,
    ];
    pub const NAMES: [&'static str; 4] = ["overall", "helpful", "creative", "active"];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Overall => "overall",
            Self::Helpful => "helpful",
            Self::Creative => "creative",
            Self::Active => "active",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
    /// The contract's weights (N5.4).
    pub fn weights(self) -> Weights {
        let w = |posts, reactions_received, replies, accepted_answers, reactions_given| Weights {
            posts,
            reactions_received,
            replies,
            accepted_answers,
            reactions_given,
        };
        match self {
            Self::Overall => w(5, 2, 3, 15, 0),
            Self::Helpful => w(0, 0, 3, 10, 0),
            Self::Creative => w(5, 3, 0, 0, 0),
            Self::Active => w(3, 0, 2, 0, 1),
        }
    }
}

/// The category of the legacy ranking's rows (period `all_time`): API.md
/// §4.9's top 3 by post count.
pub const LEGACY_CATEGORY: &str = "legacy";
/// The hall of fame: the top of the all-time overall board.
pub const HALL_OF_FAME_SIZE: i64 = 5;
pub const LIMIT_DEFAULT: i64 = 10;
pub const LIMIT_MAX: i64 = 50;

/// One board: a period and a category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Board {
    pub period: Period,
    pub category: Category,
}

impl Default for Board {
    fn default() -> Self {
        Self {
            period: Period::AllTime,
            category: Category::Overall,
        }
    }
}

/// `period`, `category` (and `limit`, for the stats route) as the query
/// sends them; every bad one is reported in one 422 list.
pub fn parse_query(
    period: Option<&str>,
    category: Option<&str>,
    limit: Option<&str>,
) -> Result<(Board, i64)> {
    let mut v = Validation::new();
    let mut board = Board::default();
    if let Some(p) = period {
        match Period::parse(p) {
            Some(p) => board.period = p,
            None => v.literal(&["query", "period"], p, &Period::NAMES),
        }
    }
    if let Some(c) = category {
        match Category::parse(c) {
            Some(c) => board.category = c,
            None => v.literal(&["query", "category"], c, &Category::NAMES),
        }
    }
    let mut n = LIMIT_DEFAULT;
    if let Some(raw) = limit {
        let loc = ["query", "limit"];
        match raw.trim().parse::<i64>() {
            Err(_) => v.push(
                &loc,
                "int_parsing",
                "Input should be a valid integer, unable to parse string as an integer".into(),
                json!(raw),
                None,
            ),
            Ok(x) if x < 1 => v.push(
                &loc,
                "greater_than_equal",
                "Input should be greater than or equal to 1".into(),
                json!(raw),
                Some(json!({ "ge": 1 })),
            ),
            Ok(x) if x > LIMIT_MAX => v.push(
                &loc,
                "less_than_equal",
                format!("Input should be less than or equal to {LIMIT_MAX}"),
                json!(raw),
                Some(json!({ "le": LIMIT_MAX })),
            ),
            Ok(x) => n = x,
        }
    }
    v.finish()?;
    Ok((board, n))
}

/// One ranked member, as the boards and the hall of fame show them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct RankedMember {
    pub id: Uuid,
    pub username: Option<String>,
    pub first_name: String,
    pub avatar_url: Option<String>,
    pub score: i64,
    pub rank: i64,
}

/// What [`rebuild`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rebuilt {
    /// Rows of the snapshot, every board and the legacy ranking together.
    pub entries: u64,
}

/// The lock that makes rebuilds, and a rebuild and an account deletion's
/// removal of the user's rows, run one after the other.
const LOCK_SQL: &str = "SELECT pg_advisory_xact_lock(hashtextextended('leaderboard_entries', 0))";

/// One board, one statement: each counted item is a row of `points` for its
/// user, summed, ranked; zero-weight kinds are skipped (one-time filters).
/// $1 period, $2 category, $3 since, $4..$8 the weights.
const BOARD_SQL: &str = "
INSERT INTO leaderboard_entries (period, category, user_id, score, position)
SELECT $1, $2, s.user_id, s.score,
       row_number() OVER (ORDER BY s.score DESC, s.user_id)
FROM (
    SELECT i.user_id, sum(i.points)::bigint AS score
    FROM (
        SELECT p.user_id, $4::bigint AS points FROM posts p
        WHERE $4::bigint > 0 AND NOT p.is_hidden AND p.created_at >= $3
        UNION ALL
        SELECT p.user_id, $5::bigint FROM post_reactions r JOIN posts p ON p.id = r.post_id
        WHERE $5::bigint > 0 AND NOT p.is_hidden AND r.created_at >= $3
        UNION ALL
        SELECT rp.user_id, $6::bigint FROM post_replies rp JOIN posts p ON p.id = rp.post_id
        WHERE $6::bigint > 0 AND NOT rp.is_hidden AND NOT rp.is_deleted AND NOT p.is_hidden
          AND rp.created_at >= $3
        UNION ALL
        SELECT rp.user_id, $7::bigint FROM post_replies rp JOIN posts p ON p.id = rp.post_id
        WHERE $7::bigint > 0 AND rp.is_accepted_answer
          AND NOT rp.is_hidden AND NOT rp.is_deleted AND NOT p.is_hidden
          AND rp.created_at >= $3
        UNION ALL
        SELECT r.user_id, $8::bigint FROM post_reactions r JOIN posts p ON p.id = r.post_id
        WHERE $8::bigint > 0 AND NOT p.is_hidden AND r.created_at >= $3
    ) i
    GROUP BY i.user_id
) s
JOIN users u ON u.id = s.user_id AND u.deleted_at IS NULL
WHERE s.score > 0";

/// API.md §4.9 exactly as it always was: the top 3 by post count (every
/// post), scored posts×5 + reactions received×2 + replies written×3, ranked
/// by post count.
const LEGACY_SQL: &str = "
INSERT INTO leaderboard_entries (period, category, user_id, score, position)
WITH top AS (
    SELECT user_id, count(*) AS posts FROM posts
    GROUP BY user_id ORDER BY count(*) DESC, user_id LIMIT 3
)
SELECT 'all_time', 'legacy', top.user_id,
       (top.posts * 5
        + COALESCE((SELECT count(*) FROM post_reactions r JOIN posts p ON p.id = r.post_id
                    WHERE p.user_id = top.user_id), 0) * 2
        + COALESCE((SELECT count(*) FROM post_replies rp WHERE rp.user_id = top.user_id), 0) * 3
       )::bigint,
       row_number() OVER (ORDER BY top.posts DESC, top.user_id)
FROM top";

/// Rebuilds the whole snapshot now (the cron's job; tests call it directly).
/// One transaction: readers see the previous snapshot until it commits.
pub async fn rebuild(db: &PgPool, now: DateTime<Utc>) -> Result<Rebuilt> {
    let mut tx = db.begin().await?;
    sqlx::query(LOCK_SQL).execute(&mut *tx).await?;
    let rebuilt = rebuild_locked(&mut tx, now).await?;
    tx.commit().await?;
    Ok(rebuilt)
}

/// Builds the snapshot if it was never built (a fresh database before the
/// worker's first tick, or an API running without a worker), so that the
/// first read does not show empty boards. Afterwards a single-row lookup.
pub async fn ensure_built(db: &PgPool, now: DateTime<Utc>) -> Result<()> {
    if built_at(db).await?.is_some() {
        return Ok(());
    }
    let mut tx = db.begin().await?;
    sqlx::query(LOCK_SQL).execute(&mut *tx).await?;
    // Another request may have built it while this one waited for the lock.
    let built: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM leaderboard_snapshot)")
        .fetch_one(&mut *tx)
        .await?;
    if !built {
        rebuild_locked(&mut tx, now).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// When the snapshot was last built.
pub async fn built_at(db: &PgPool) -> Result<Option<DateTime<Utc>>> {
    Ok(
        sqlx::query_scalar("SELECT built_at FROM leaderboard_snapshot")
            .fetch_optional(db)
            .await?,
    )
}

async fn rebuild_locked(conn: &mut PgConnection, now: DateTime<Utc>) -> Result<Rebuilt> {
    sqlx::query("DELETE FROM leaderboard_entries")
        .execute(&mut *conn)
        .await?;
    let mut entries = 0;
    for period in Period::ALL {
        for category in Category::ALL {
            let w = category.weights();
            entries += sqlx::query(BOARD_SQL)
                .bind(period.as_str())
                .bind(category.as_str())
                .bind(period.since(now))
                .bind(w.posts)
                .bind(w.reactions_received)
                .bind(w.replies)
                .bind(w.accepted_answers)
                .bind(w.reactions_given)
                .execute(&mut *conn)
                .await?
                .rows_affected();
        }
    }
    entries += sqlx::query(LEGACY_SQL)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    sqlx::query(
        "INSERT INTO leaderboard_snapshot (singleton, built_at) VALUES (true, $1)
         ON CONFLICT (singleton) DO UPDATE SET built_at = EXCLUDED.built_at",
    )
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(Rebuilt { entries })
}

/// Account deletion (N5.7): the user's rows of every board, in the deletion's
/// transaction. Call it first in that transaction: it waits for a running
/// rebuild, so that rebuild cannot put the rows back afterwards (the next one
/// sees the tombstone and leaves the user out).
pub async fn forget_user(conn: &mut PgConnection, user_id: Uuid) -> Result<u64> {
    sqlx::query(LOCK_SQL).execute(&mut *conn).await?;
    Ok(
        sqlx::query("DELETE FROM leaderboard_entries WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *conn)
            .await?
            .rows_affected(),
    )
}

/// The first `limit` members of a board, from the snapshot.
pub async fn board(db: &PgPool, board: Board, limit: i64) -> Result<Vec<RankedMember>> {
    read(db, board.period.as_str(), board.category.as_str(), limit).await
}

/// The legacy ranking (API.md §4.9), from the snapshot.
pub async fn legacy(db: &PgPool) -> Result<Vec<RankedMember>> {
    read(db, Period::AllTime.as_str(), LEGACY_CATEGORY, 3).await
}

async fn read(db: &PgPool, period: &str, category: &str, limit: i64) -> Result<Vec<RankedMember>> {
    Ok(sqlx::query_as(
        "SELECT e.user_id AS id, pr.username::text AS username,
                COALESCE(pr.first_name, 'User') AS first_name, pr.avatar_url,
                e.score, e.position::bigint AS rank
         FROM leaderboard_entries e
         LEFT JOIN user_profiles pr ON pr.user_id = e.user_id
         WHERE e.period = $1 AND e.category = $2
         ORDER BY e.position
         LIMIT $3",
    )
    .bind(period)
    .bind(category)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// The caller's score on a board, live: a few indexed counts on the caller's
/// rows, with the rebuild's rules (zero-weight kinds are not counted).
pub async fn live_score(
    db: &PgPool,
    user_id: Uuid,
    board: Board,
    now: DateTime<Utc>,
) -> Result<i64> {
    let w = board.category.weights();
    Ok(sqlx::query_scalar(
        "SELECT (
           CASE WHEN $3::bigint > 0 THEN $3 * (
             SELECT count(*) FROM posts p
             WHERE p.user_id = $1 AND NOT p.is_hidden AND p.created_at >= $2) ELSE 0 END
         + CASE WHEN $4::bigint > 0 THEN $4 * (
             SELECT count(*) FROM posts p JOIN post_reactions r ON r.post_id = p.id
             WHERE p.user_id = $1 AND NOT p.is_hidden AND r.created_at >= $2) ELSE 0 END
         + CASE WHEN $5::bigint > 0 THEN $5 * (
             SELECT count(*) FROM post_replies rp JOIN posts p ON p.id = rp.post_id
             WHERE rp.user_id = $1 AND NOT rp.is_hidden AND NOT rp.is_deleted
               AND NOT p.is_hidden AND rp.created_at >= $2) ELSE 0 END
         + CASE WHEN $6::bigint > 0 THEN $6 * (
             SELECT count(*) FROM post_replies rp JOIN posts p ON p.id = rp.post_id
             WHERE rp.user_id = $1 AND rp.is_accepted_answer AND NOT rp.is_hidden
               AND NOT rp.is_deleted AND NOT p.is_hidden AND rp.created_at >= $2) ELSE 0 END
         + CASE WHEN $7::bigint > 0 THEN $7 * (
             SELECT count(*) FROM post_reactions r JOIN posts p ON p.id = r.post_id
             WHERE r.user_id = $1 AND NOT p.is_hidden AND r.created_at >= $2) ELSE 0 END
         )::bigint",
    )
    .bind(user_id)
    .bind(board.period.since(now))
    .bind(w.posts)
    .bind(w.reactions_received)
    .bind(w.replies)
    .bind(w.accepted_answers)
    .bind(w.reactions_given)
    .fetch_one(db)
    .await?)
}

/// 1 + the snapshot's entries ahead of `score` in the board's order
/// (`score DESC, user_id ASC`), the user's own entry left out. Two seeks and
/// a point lookup: the entries ahead are a prefix of the board, so their
/// number is the position of the first entry not ahead, minus one.
pub async fn rank_in_snapshot(db: &PgPool, user_id: Uuid, board: Board, score: i64) -> Result<i64> {
    let ahead: i64 = sqlx::query_scalar(
        "SELECT COALESCE(
             (SELECT e.position - 1 FROM leaderboard_entries e
              WHERE e.period = $1 AND e.category = $2
                AND e.score <= $3 AND (e.score < $3 OR e.user_id >= $4)
              ORDER BY e.score DESC, e.user_id
              LIMIT 1),
             (SELECT max(e.position) FROM leaderboard_entries e
              WHERE e.period = $1 AND e.category = $2),
             0)::bigint
         - (SELECT count(*) FROM leaderboard_entries e
            WHERE e.user_id = $4 AND e.period = $1 AND e.category = $2 AND e.score > $3)",
    )
    .bind(board.period.as_str())
    .bind(board.category.as_str())
    .bind(score)
    .bind(user_id)
    .fetch_one(db)
    .await?;
    Ok(1 + ahead)
}

/// `GET /stats/my-rank`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MyRank {
    pub rank: Option<i64>,
    pub score: i64,
    pub period: &'static str,
    pub category: &'static str,
}

/// The caller's live score and its rank against the snapshot (null at 0).
pub async fn my_rank(
    db: &PgPool,
    user_id: Uuid,
    board: Board,
    now: DateTime<Utc>,
) -> Result<MyRank> {
    let score = live_score(db, user_id, board, now).await?;
    let rank = if score > 0 {
        ensure_built(db, now).await?;
        Some(rank_in_snapshot(db, user_id, board, score).await?)
    } else {
        None
    };
    Ok(MyRank {
        rank,
        score,
        period: board.period.as_str(),
        category: board.category.as_str(),
    })
}

/// Members with a streak touch in the last 24 hours (an index range count).
pub async fn active_now(db: &PgPool, now: DateTime<Utc>) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM user_profiles
         WHERE last_login_date IS NOT NULL AND last_login_date > $1",
    )
    .bind(now - Duration::hours(24))
    .fetch_one(db)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_the_contracts() {
        let o = Category::Overall.weights();
        assert_eq!(
            (
                o.posts,
                o.reactions_received,
                o.replies,
                o.accepted_answers,
                o.reactions_given
            ),
            (5, 2, 3, 15, 0)
        );
        assert_eq!(Category::Helpful.weights().accepted_answers, 10);
        assert_eq!(Category::Creative.weights().reactions_received, 3);
        assert_eq!(Category::Active.weights().reactions_given, 1);
    }

    #[test]
    fn query_defaults_and_errors() {
        let (b, n) = parse_query(None, None, None).unwrap();
        assert_eq!(b, Board::default());
        assert_eq!(n, 10);
        let (b, n) = parse_query(Some("weekly"), Some("helpful"), Some("50")).unwrap();
        assert_eq!(
            (b.period, b.category, n),
            (Period::Weekly, Category::Helpful, 50)
        );
        let e = parse_query(Some("daily"), Some("x"), Some("0")).unwrap_err();
        assert_eq!(e.status(), 422);
        for bad in ["51", "abc", "-1"] {
            assert_eq!(
                parse_query(None, None, Some(bad)).unwrap_err().status(),
                422
            );
        }
    }

    #[test]
    fn windows() {
        let now = Utc::now();
        assert_eq!(Period::Weekly.since(now), now - Duration::days(7));
        assert_eq!(Period::Monthly.since(now), now - Duration::days(30));
        assert!(Period::AllTime.since(now) < now - Duration::days(365 * 1000));
    }
}
