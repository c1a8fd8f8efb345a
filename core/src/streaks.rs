//! Streaks and the daily claim (API.md §4.2), on the UTC date of the one clock (D22).

use crate::access;
use crate::economy::{self, Amounts, reason};
use crate::jobs::{self, BadgeCheckJob, StreakBonusJob};
use crate::{Context, Result, notifications};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

/// Updates the streak from `last_login_date` and sets it to `now`.
/// Returns the new streak, or `None` when the user has no profile.
pub async fn update_streak(
    conn: &mut PgConnection,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<i32>> {
    let row: Option<(i32, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT streak_count, last_login_date FROM user_profiles WHERE user_id = $1 FOR UPDATE",
    )
    .bind(user_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((streak, last)) = row else {
        return Ok(None);
    };
    let today = now.date_naive();
    let new = next_streak(streak, last.map(|l| l.date_naive()), today);
    sqlx::query(
        "UPDATE user_profiles SET streak_count = $2, last_login_date = $3, updated_at = now()
         WHERE user_id = $1",
    )
    .bind(user_id)
    .bind(new)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(Some(new))
}

/// The streak rule of §4.2.
pub fn next_streak(streak: i32, last: Option<NaiveDate>, today: NaiveDate) -> i32 {
    match last {
        None => 1,
        Some(l) if l == today => streak.max(1),
        Some(l) if Some(l) == today.pred_opt() => streak + 1,
        Some(_) => 1,
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DailyClaim {
    pub success: bool,
    pub amount: i64,
    pub new_balance: i64,
    pub streak_bonus: Option<i64>,
    pub message: String,
}

/// The daily clave claim: at most once per UTC day, whatever the concurrency.
pub async fn daily_claim(ctx: &Context, user_id: Uuid) -> Result<DailyClaim> {
    let amounts = Amounts::current(ctx).await?;
    let now = ctx.clock.now();
    let today = now.date_naive();
    let mut tx = ctx.db.begin().await?;
    // The guard: only one transaction can move last_daily_claim to today.
    let claimed: Option<i32> = sqlx::query_scalar(
        "UPDATE user_profiles SET last_daily_claim = $2, updated_at = now()
         WHERE user_id = $1 AND (last_daily_claim IS NULL OR last_daily_claim <> $2)
         RETURNING current_claves",
    )
    .bind(user_id)
    .bind(today)
    .fetch_optional(&mut *tx)
    .await?;
    if claimed.is_none() {
        let balance: Option<i32> =
            sqlx::query_scalar("SELECT current_claves FROM user_profiles WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
        tx.rollback().await?;
        return Ok(match balance {
            Some(b) => DailyClaim {
                success: false,
                amount: 0,
                new_balance: b as i64,
                streak_bonus: None,
                message: "Already claimed today. Come back tomorrow!".into(),
            },
            None => DailyClaim {
                success: false,
                amount: 0,
                new_balance: 0,
                streak_bonus: None,
                message: "Profile not found".into(),
            },
        });
    }
    let pro = access::is_pro(&mut tx, user_id).await?;
    let amount = amounts.daily_amount(pro);
    let key = format!("daily_login:{user_id}:{today}");
    let mut balance = economy::credit(
        &mut tx,
        user_id,
        amount,
        reason::DAILY_LOGIN,
        None,
        Some(&key),
    )
    .await?
    .unwrap_or(claimed.unwrap_or(0) as i64);
    let streak = update_streak(&mut tx, user_id, now).await?.unwrap_or(0);
    let mut bonus = None;
    let mut pending = notifications::Pending::default();
    if streak > 0
        && amounts.streak_milestone_every > 0
        && (streak as i64) % amounts.streak_milestone_every == 0
    {
        let b = amounts.streak_bonus(pro);
        let key = format!("streak_bonus:{user_id}:{today}");
        if let Some(nb) =
            economy::credit(&mut tx, user_id, b, reason::STREAK_BONUS, None, Some(&key)).await?
        {
            balance = nb;
            bonus = Some(b);
            notifications::notify(
                &mut tx,
                now,
                &notifications::New::streak_bonus(user_id, b, streak as i64, &key),
                &mut pending,
            )
            .await?;
        }
    }
    jobs::enqueue(
        &mut tx,
        &BadgeCheckJob {
            user_id,
            stat: "daily_streak".into(),
        },
    )
    .await?;
    tx.commit().await?;
    jobs::wake_relay(ctx);
    pending.publish(ctx).await;
    let mut message = format!("You earned {amount} 🥢");
    if let Some(b) = bonus {
        message.push_str(&format!(" + {b} 🥢 streak bonus!"));
    }
    Ok(DailyClaim {
        success: true,
        amount,
        new_balance: balance,
        streak_bonus: bonus,
        message,
    })
}

/// The `streak_bonus` job's handler: pays the streak bonus of a milestone day.
/// The ledger's dedupe key `streak_bonus:{user}:{date}` is the one the daily
/// claim uses inline, so the job and the inline path together pay at most once
/// per user and day.
pub async fn pay_bonus(ctx: &Context, job: &StreakBonusJob) -> Result<()> {
    let amounts = Amounts::current(ctx).await?;
    let every = amounts.streak_milestone_every;
    if job.streak <= 0 || every <= 0 || (job.streak as i64) % every != 0 {
        tracing::warn!(
            ?job,
            "streak bonus job for a streak that is not a milestone; ignored"
        );
        return Ok(());
    }
    let mut tx = ctx.db.begin().await?;
    let has_profile: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM user_profiles WHERE user_id = $1)")
            .bind(job.user_id)
            .fetch_one(&mut *tx)
            .await?;
    if !has_profile {
        tracing::info!(?job, "streak bonus: the user is gone; nothing to pay");
        return Ok(());
    }
    let pro = access::is_pro(&mut tx, job.user_id).await?;
    let key = format!("streak_bonus:{}:{}", job.user_id, job.date);
    let bonus = amounts.streak_bonus(pro);
    let paid = economy::credit(
        &mut tx,
        job.user_id,
        bonus,
        reason::STREAK_BONUS,
        None,
        Some(&key),
    )
    .await?;
    let mut pending = notifications::Pending::default();
    if paid.is_some() {
        notifications::notify(
            &mut tx,
            ctx.clock.now(),
            &notifications::New::streak_bonus(job.user_id, bonus, job.streak as i64, &key),
            &mut pending,
        )
        .await?;
    }
    tx.commit().await?;
    pending.publish(ctx).await;
    match paid {
        Some(balance) => tracing::info!(?job, balance, "streak bonus paid"),
        None => tracing::debug!(?job, "streak bonus already paid"),
    }
    Ok(())
}

/// Sets `streak_count` to 0 for every user whose last streak touch is before
/// yesterday (UTC, from the clock): their streak is broken, so profiles and
/// leaderboards stop showing it. Idempotent. The next touch starts again at 1
/// (§4.2), exactly as without the reset. Part of the worker's daily maintenance.
pub async fn reset_broken_streaks(ctx: &Context) -> Result<u64> {
    let today = ctx.clock.today();
    let yesterday = today.pred_opt().unwrap_or(today);
    let cutoff = yesterday.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    let n = sqlx::query(
        "UPDATE user_profiles SET streak_count = 0, updated_at = now()
         WHERE streak_count <> 0 AND (last_login_date IS NULL OR last_login_date < $1)",
    )
    .bind(cutoff)
    .execute(&ctx.db)
    .await?
    .rows_affected();
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn streak_rules_across_month_and_year_ends() {
        assert_eq!(next_streak(0, None, d(2026, 1, 1)), 1);
        assert_eq!(next_streak(4, Some(d(2026, 1, 31)), d(2026, 2, 1)), 5);
        assert_eq!(next_streak(9, Some(d(2026, 12, 31)), d(2027, 1, 1)), 10);
        assert_eq!(next_streak(9, Some(d(2027, 1, 1)), d(2027, 1, 1)), 9);
        assert_eq!(next_streak(9, Some(d(2026, 12, 30)), d(2027, 1, 1)), 1);
        assert_eq!(next_streak(3, Some(d(2028, 2, 28)), d(2028, 2, 29)), 4);
    }
}
