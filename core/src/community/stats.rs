//! Public community stats (§4.9 "Stats").

use super::leaderboard::{self, Board, HALL_OF_FAME_SIZE, RankedMember};
use crate::Result;
use chrono::{DateTime, Utc};
use rand::Rng;
use sqlx::PgPool;

/// `GET /stats`: the legacy answer (no board asked for) or a board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommunityStats {
    pub member_count: i64,
    /// Simulated in the legacy answer; profiles with a streak touch in the
    /// last 24 h when a board was asked for.
    pub active_now: i64,
    /// The legacy top 3 by post count, or the board's first `limit`.
    pub leaderboard: Vec<RankedMember>,
    /// The top 5 of the all-time overall board, in both answers.
    pub hall_of_fame: Vec<RankedMember>,
    /// The board asked for; `None` for the legacy answer.
    pub board: Option<Board>,
}

/// `active_now` is simulated (§4.9): `max(3, max(5, floor(members*0.02)) + randint(-3, 5))`.
pub fn simulated_active_now(member_count: i64) -> i64 {
    let base = std::cmp::max(5, member_count * 2 / 100);
    let jitter = rand::rng().random_range(-3..=5);
    std::cmp::max(3, base + jitter)
}

/// Public community stats (§4.9 "Stats", N5.4). `board` is `None` when the
/// request sent none of `period`, `category`, `limit`: the legacy answer.
/// Both read the leaderboard snapshot ([`leaderboard::rebuild`]), never
/// aggregate over the community's rows.
pub async fn stats(
    db: &PgPool,
    now: DateTime<Utc>,
    board: Option<(Board, i64)>,
) -> Result<CommunityStats> {
    leaderboard::ensure_built(db, now).await?;
    let member_count: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(db)
        .await?;
    let hall_of_fame = leaderboard::board(db, Board::default(), HALL_OF_FAME_SIZE).await?;
    Ok(match board {
        None => CommunityStats {
            member_count,
            active_now: simulated_active_now(member_count),
            leaderboard: leaderboard::legacy(db).await?,
            hall_of_fame,
            board: None,
        },
        Some((b, limit)) => CommunityStats {
            member_count,
            active_now: leaderboard::active_now(db, now).await?,
            leaderboard: leaderboard::board(db, b, limit).await?,
            hall_of_fame,
            board: Some(b),
        },
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
