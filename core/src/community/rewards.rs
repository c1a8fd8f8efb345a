//! Posting rewards (API-2026-05.md N6.4): who is paid for a post, and when a
//! reward is taken back. The balance moves only through `economy`
//! (`pay_post_reward`, `claw_back_post_reward`).
//!
//! - A lab post is judged at creation: eligible when its trimmed body has at
//!   least `lab_min_body_chars` characters.
//! - A stage post is judged when the server first attaches a ready video to
//!   it, unless Mux reports a duration of 0. Video ids a client supplies on
//!   create are not verified: such a post is judged (and not paid) at once.
//! - A post is judged once (`posts.reward_judged_at`): one skipped for the
//!   cooldown or the cap is never paid later.

use crate::Result;
use crate::economy::{self, PostRewardRule};
use crate::settings::Settings;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

/// A reward paid by this request (`reward` of the post and check-upload
/// answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Reward {
    pub amount: i64,
    pub reason: &'static str,
    pub new_balance: i64,
}

fn rule(settings: &Settings, post_type: &str) -> PostRewardRule {
    let p = &settings.posting_rewards;
    PostRewardRule {
        reward: if post_type == "stage" { p.stage } else { p.lab },
        daily_cap: p.daily_cap,
        cooldown_seconds: p.cooldown_seconds,
    }
}

/// Whether a lab body earns (N6.4): at least `lab_min_body_chars` characters
/// once trimmed.
pub fn lab_body_eligible(settings: &Settings, body: Option<&str>) -> bool {
    body.is_some_and(|b| {
        b.trim().chars().count() as i64 >= settings.posting_rewards.lab_min_body_chars
    })
}

/// Judges a post once: marks it judged and, when `eligible`, pays its author.
/// The caller holds the author's profile row `FOR UPDATE`.
pub async fn judge(
    conn: &mut PgConnection,
    settings: &Settings,
    post_id: Uuid,
    now: DateTime<Utc>,
    eligible: bool,
) -> Result<Option<Reward>> {
    let judged: Option<(Uuid, String)> = sqlx::query_as(
        "UPDATE posts SET reward_judged_at = $2
         WHERE id = $1 AND reward_judged_at IS NULL
         RETURNING user_id, post_type",
    )
    .bind(post_id)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((author, post_type)) = judged else {
        return Ok(None);
    };
    if !eligible {
        return Ok(None);
    }
    let paid =
        economy::pay_post_reward(conn, author, post_id, rule(settings, &post_type), now).await?;
    Ok(paid.map(|(amount, new_balance)| Reward {
        amount,
        reason: economy::reason::POST_REWARD,
        new_balance,
    }))
}

/// A stage post gains a video the server found ready at Mux: lock its
/// author's profile (after the post's row: the community lock order) and
/// judge it. `duration` is Mux's, when it reported one.
pub async fn judge_stage_video(
    conn: &mut PgConnection,
    settings: &Settings,
    post_id: Uuid,
    author: Uuid,
    duration: Option<f64>,
    now: DateTime<Utc>,
) -> Result<Option<Reward>> {
    sqlx::query("SELECT 1 FROM user_profiles WHERE user_id = $1 FOR UPDATE")
        .bind(author)
        .execute(&mut *conn)
        .await?;
    let eligible = duration.is_none_or(|d| d > 0.0);
    judge(conn, settings, post_id, now, eligible).await
}

/// A post is deleted or hidden: take its reward back when it is younger than
/// `clawback_window_hours` (N6.4).
pub async fn claw_back(
    conn: &mut PgConnection,
    settings: &Settings,
    post_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<i64>> {
    economy::claw_back_post_reward(
        conn,
        post_id,
        settings.posting_rewards.clawback_window_hours,
        now,
    )
    .await
}
