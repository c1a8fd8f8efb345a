//! Public community stats (§4.9 "Stats").

use crate::Result;
use rand::Rng;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct LeaderboardEntry {
    pub id: Uuid,
    pub first_name: String,
    pub avatar_url: Option<String>,
    pub score: i64,
    pub rank: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommunityStats {
    pub member_count: i64,
    pub active_now: i64,
    pub leaderboard: Vec<LeaderboardEntry>,
}

/// `active_now` is simulated (§4.9): `max(3, max(5, floor(members*0.02)) + randint(-3, 5))`.
pub fn simulated_active_now(member_count: i64) -> i64 {
    let base = std::cmp::max(5, member_count * 2 / 100);
    let jitter = rand::rng().random_range(-3..=5);
    std::cmp::max(3, base + jitter)
}

/// Public community stats (§4.9 "Stats").
pub async fn stats(db: &PgPool) -> Result<CommunityStats> {
    let member_count: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(db)
        .await?;
    let leaderboard: Vec<LeaderboardEntry> = sqlx::query_as(
        "WITH top AS (
             SELECT user_id, count(*) AS posts FROM posts
             GROUP BY user_id ORDER BY count(*) DESC, user_id LIMIT 3
         )
         SELECT top.user_id AS id,
                COALESCE(pr.first_name, 'User') AS first_name,
                pr.avatar_url,
                (top.posts * 5
                 + COALESCE((SELECT count(*) FROM post_reactions r JOIN posts p ON p.id = r.post_id
                             WHERE p.user_id = top.user_id), 0) * 2
                 + COALESCE((SELECT count(*) FROM post_replies rp WHERE rp.user_id = top.user_id), 0) * 3
                )::bigint AS score,
                row_number() OVER (ORDER BY top.posts DESC, top.user_id) AS rank
         FROM top LEFT JOIN user_profiles pr ON pr.user_id = top.user_id
         ORDER BY rank",
    )
    .fetch_all(db)
    .await?;
    Ok(CommunityStats {
        member_count,
        active_now: simulated_active_now(member_count),
        leaderboard,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_now_bounds() {
        for _ in 0..100 {
            let a = simulated_active_now(10);
            assert!((3..=10).contains(&a));
            let b = simulated_active_now(1000);
            assert!((17..=25).contains(&b));
        }
    }
}
