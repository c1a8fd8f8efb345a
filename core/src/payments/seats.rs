//! Guild Master seats (API-2026-05.md N5.6): the seat counter, the checkout
//! holds that reserve a seat while a performer checkout is under way, the
//! cancel-checkout route and its job, and the holds' retention (N5.7).
//!
//! A seat is taken by a Guild Master subscription (N6.5,
//! [`access::guild_master_sql`]) or by a live performer hold: `reserved` (the
//! seat was checked, Stripe not called yet) or `open` (the Stripe session
//! exists), and not past `expires_at`. One person takes one seat: holds are
//! counted per user, and not at all for a user who is a Guild Master already.
//!
//! The cap is exact under concurrency: a performer checkout takes one
//! transaction-scoped advisory lock, counts and inserts its `reserved` hold in
//! one short transaction ([`reserve`]), so parallel checkouts serialise on the
//! count. Stripe is called after that commit; success opens the hold
//! ([`open`]), failure deletes it ([`release`]).

use super::stripe::*;
use super::*;
use crate::access;
use crate::jobs::{self, CheckoutExpireJob};
use crate::settings::Snapshot;

pub const MSG_GUILD_MASTER_FULL: &str =
    "Guild Master is currently full. Join the waitlist to be notified when a seat opens up.";

/// A hold lives this long after it was created (Stripe sessions are set to
/// expire just after it, [`STRIPE_EXPIRY_MARGIN_MINUTES`]).
pub const HOLD_MINUTES: i64 = 30;
/// Stripe refuses a session `expires_at` less than 30 minutes ahead, so the
/// session is asked to expire this much later than the hold.
pub const STRIPE_EXPIRY_MARGIN_MINUTES: i64 = 2;
/// Holds older than this are deleted by the daily maintenance (N5.7).
pub const HOLD_RETENTION_DAYS: i64 = 30;
/// How long a seat count may be reused (N5.6: at most 5 s).
pub const SEAT_COUNT_CACHE_SECONDS: u64 = 5;
/// The advisory lock every capped performer checkout takes ("gmseats").
const SEAT_LOCK_KEY: i64 = 0x0067_6d73_6561_7473;

/// The seat counter's answer (`GET /api/payments/guild-master-seats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Seats {
    /// `guild_master.seat_cap`; null = no cap.
    pub total: Option<i64>,
    pub taken: i64,
    /// `max(0, total − taken)`; null without a cap.
    pub remaining: Option<i64>,
    pub is_full: bool,
}

impl Seats {
    pub fn of(total: Option<i64>, taken: i64) -> Self {
        Self {
            total,
            taken,
            remaining: total.map(|t| (t - taken).max(0)),
            is_full: total.is_some_and(|t| taken >= t),
        }
    }
}

/// The seats taken now: Guild Master subscriptions plus the users with a live
/// performer hold who are not Guild Masters already.
pub async fn count_taken(
    conn: &mut PgConnection,
    includes_trialing: bool,
    now: DateTime<Utc>,
) -> Result<i64> {
    let gm = access::guild_master_sql(includes_trialing);
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT (SELECT count(*) FROM subscriptions s WHERE {gm})
              + (SELECT count(DISTINCT h.user_id) FROM checkout_holds h
                 WHERE h.tier = 'performer' AND h.status IN ('reserved', 'open')
                   AND h.expires_at > $1
                   AND NOT EXISTS (SELECT 1 FROM subscriptions s
                                   WHERE s.user_id = h.user_id AND {gm}))"
    )))
    .bind(now)
    .fetch_one(&mut *conn)
    .await?)
}

fn cache_key(ctx: &Context, revision: i64, includes_trialing: bool) -> String {
    ctx.redis
        .key(&format!("payments:gm_seats:{revision}:{includes_trialing}"))
}

/// `GET /api/payments/guild-master-seats`. The count is kept in Redis for
/// [`SEAT_COUNT_CACHE_SECONDS`] (keyed by the settings revision, so a settings
/// change is seen at once) and forgotten when a hold changes; without Redis
/// it is counted every time.
pub async fn guild_master_seats(ctx: &Context, snap: &Snapshot) -> Result<Seats> {
    let gm = &snap.settings.guild_master;
    let key = cache_key(ctx, snap.revision, gm.includes_trialing);
    let mut redis = ctx.redis.conn();
    let cached: redis::RedisResult<Option<i64>> =
        redis::cmd("GET").arg(&key).query_async(&mut redis).await;
    let taken = match cached {
        Ok(Some(n)) => n,
        other => {
            if let Err(e) = other {
                tracing::warn!(error = %e, "seat count cache unavailable; counting");
            }
            let mut conn = ctx.db.acquire().await?;
            let n = count_taken(&mut conn, gm.includes_trialing, ctx.clock.now()).await?;
            let set: redis::RedisResult<()> = redis::cmd("SET")
                .arg(&key)
                .arg(n)
                .arg("EX")
                .arg(SEAT_COUNT_CACHE_SECONDS)
                .query_async(&mut redis)
                .await;
            if let Err(e) = set {
                tracing::debug!(error = %e, "seat count not cached");
            }
            n
        }
    };
    Ok(Seats::of(gm.seat_cap, taken))
}

/// Drops the cached seat counts of the current settings revision (after a
/// hold or a subscription changed). Best effort: a count lives 5 s anyway.
pub async fn forget_seat_count(ctx: &Context) {
    let revision = match ctx.settings_now().await {
        Ok(snap) => snap.revision,
        Err(e) => {
            tracing::debug!(error = %e, "settings unavailable; seat count not forgotten");
            return;
        }
    };
    let keys = [
        cache_key(ctx, revision, false),
        cache_key(ctx, revision, true),
    ];
    let mut redis = ctx.redis.conn();
    let res: redis::RedisResult<i64> = redis::cmd("DEL").arg(&keys).query_async(&mut redis).await;
    if let Err(e) = res {
        tracing::debug!(error = %e, "seat count cache not cleared");
    }
}

/// Records the hold of a checkout about to be created, in one short
/// transaction. A performer checkout under a cap first takes the seat lock
/// and counts: full → 409 (nothing written, nothing sent to Stripe). A user
/// who holds a live performer seat already keeps it (no second seat needed).
pub(super) async fn reserve(
    ctx: &Context,
    snap: &Snapshot,
    user_id: Uuid,
    tier: &str,
) -> Result<Uuid> {
    let gm = &snap.settings.guild_master;
    let now = ctx.clock.now();
    let mut tx = ctx.db.begin().await?;
    if tier == "performer"
        && let Some(cap) = gm.seat_cap
    {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SEAT_LOCK_KEY)
            .execute(&mut *tx)
            .await?;
        let has_seat: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM checkout_holds
                            WHERE user_id = $1 AND tier = 'performer'
                              AND status IN ('reserved', 'open') AND expires_at > $2)",
        )
        .bind(user_id)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        if !has_seat && count_taken(&mut tx, gm.includes_trialing, now).await? >= cap {
            tx.rollback().await?;
            return Err(Error::conflict(MSG_GUILD_MASTER_FULL));
        }
    }
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO checkout_holds (id, user_id, tier, status, created_at, expires_at)
         VALUES ($1, $2, $3, 'reserved', $4, $5)",
    )
    .bind(id)
    .bind(user_id)
    .bind(tier)
    .bind(now)
    .bind(now + chrono::Duration::minutes(HOLD_MINUTES))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    forget_seat_count(ctx).await;
    Ok(id)
}

/// When the Stripe session of a hold created `now` should expire.
pub(super) fn stripe_expires_at(now: DateTime<Utc>) -> i64 {
    (now + chrono::Duration::minutes(HOLD_MINUTES + STRIPE_EXPIRY_MARGIN_MINUTES)).timestamp()
}

/// The Stripe session exists: the hold becomes `open` with its session id.
/// If the user canceled while Stripe was being called, the hold stays
/// `canceled` and the new session is expired by a job.
pub(super) async fn open(ctx: &Context, hold_id: Uuid, session_id: &str) -> Result<()> {
    let mut tx = ctx.db.begin().await?;
    let status: Option<String> = sqlx::query_scalar(
        "UPDATE checkout_holds SET stripe_session_id = $2,
             status = CASE WHEN status = 'reserved' THEN 'open' ELSE status END
         WHERE id = $1 RETURNING status",
    )
    .bind(hold_id)
    .bind(session_id)
    .fetch_optional(&mut *tx)
    .await?;
    if status.as_deref() == Some("canceled") {
        jobs::enqueue(
            &mut tx,
            &CheckoutExpireJob {
                session_id: session_id.to_string(),
            },
        )
        .await?;
    }
    tx.commit().await?;
    if status.as_deref() == Some("canceled") {
        jobs::wake_relay(ctx);
    }
    Ok(())
}

/// Stripe failed: the hold is deleted (the seat frees at once).
pub(super) async fn release(ctx: &Context, hold_id: Uuid) {
    let res = sqlx::query("DELETE FROM checkout_holds WHERE id = $1")
        .bind(hold_id)
        .execute(&ctx.db)
        .await;
    if let Err(e) = res {
        // It lapses by itself at expires_at.
        tracing::error!(%hold_id, error = %e, "deleting a failed checkout's hold");
    }
    forget_seat_count(ctx).await;
}

/// `checkout.session.completed` / `.expired`: closes the session's holds
/// (inside the event's transaction, so a redelivery changes nothing). A
/// completed session closes its hold whatever it was; an expired one only
/// closes a hold still counting.
pub(super) async fn close(
    conn: &mut PgConnection,
    session_id: &str,
    completed: bool,
) -> Result<u64> {
    let sql = if completed {
        "UPDATE checkout_holds SET status = 'completed'
         WHERE stripe_session_id = $1 AND status <> 'completed'"
    } else {
        "UPDATE checkout_holds SET status = 'expired'
         WHERE stripe_session_id = $1 AND status IN ('reserved', 'open')"
    };
    Ok(sqlx::query(sql)
        .bind(session_id)
        .execute(&mut *conn)
        .await?
        .rows_affected())
}

/// `POST /api/payments/cancel-checkout`: the caller's counting holds become
/// `canceled` at once, and one job per Stripe session expires it there.
pub async fn cancel_checkout(ctx: &Context, user_id: Uuid) -> Result<()> {
    let mut tx = ctx.db.begin().await?;
    let sessions: Vec<String> = sqlx::query_scalar(
        "WITH c AS (
             UPDATE checkout_holds SET status = 'canceled'
             WHERE user_id = $1 AND status IN ('reserved', 'open')
             RETURNING stripe_session_id)
         SELECT DISTINCT stripe_session_id FROM c WHERE stripe_session_id IS NOT NULL",
    )
    .bind(user_id)
    .fetch_all(&mut *tx)
    .await?;
    let jobs: Vec<CheckoutExpireJob> = sessions
        .into_iter()
        .map(|session_id| CheckoutExpireJob { session_id })
        .collect();
    if !jobs.is_empty() {
        jobs::enqueue_many(&mut tx, &jobs).await?;
    }
    tx.commit().await?;
    if !jobs.is_empty() {
        jobs::wake_relay(ctx);
    }
    forget_seat_count(ctx).await;
    Ok(())
}

/// The `checkout_expire` job: expires a Stripe Checkout session the user
/// canceled. Idempotent: a session that is no longer `open` (completed,
/// expired, gone) is left alone, and the expire call carries an idempotency
/// key naming the session.
pub async fn expire_checkout_session(ctx: &Context, job: &CheckoutExpireJob) -> Result<()> {
    let Ok(stripe) = stripe(ctx) else {
        tracing::warn!(session = %job.session_id, "Stripe not configured; session not expired");
        return Ok(());
    };
    let id = path_segment(&job.session_id);
    if id.is_empty() {
        return Ok(());
    }
    match stripe.get(&format!("/checkout/sessions/{id}")).await {
        Ok(session) if session["status"].as_str() == Some("open") => {}
        Ok(session) => {
            tracing::info!(session = %id, status = ?session["status"], "checkout session not open; left alone");
            return Ok(());
        }
        Err(e @ StripeError::Refused { .. }) => {
            tracing::info!(session = %id, error = ?e, "checkout session not found; nothing to expire");
            return Ok(());
        }
        Err(e) => return Err(e.into_error()),
    }
    match stripe
        .post(
            &format!("/checkout/sessions/{id}/expire"),
            &Form::new(),
            &format!("mambo-checkout-expire-{id}"),
        )
        .await
    {
        Ok(_) => {
            tracing::info!(session = %id, "checkout session expired");
            Ok(())
        }
        // Completed or expired in the meantime: nothing left to do.
        Err(e @ StripeError::Refused { .. }) => {
            tracing::info!(session = %id, error = ?e, "Stripe refused to expire the session");
            Ok(())
        }
        Err(e) => Err(e.into_error()),
    }
}

/// Account deletion (N5.7): deletes the user's holds inside the deletion's
/// transaction; a session still open is expired by a job (relayed within a
/// second), so a deleted account cannot complete it.
pub async fn delete_holds_of_user(conn: &mut PgConnection, user_id: Uuid) -> Result<()> {
    let sessions: Vec<String> = sqlx::query_scalar(
        "WITH d AS (
             DELETE FROM checkout_holds WHERE user_id = $1
             RETURNING stripe_session_id, status)
         SELECT DISTINCT stripe_session_id FROM d
         WHERE stripe_session_id IS NOT NULL AND status IN ('reserved', 'open')",
    )
    .bind(user_id)
    .fetch_all(&mut *conn)
    .await?;
    if !sessions.is_empty() {
        let jobs: Vec<CheckoutExpireJob> = sessions
            .into_iter()
            .map(|session_id| CheckoutExpireJob { session_id })
            .collect();
        jobs::enqueue_many(conn, &jobs).await?;
    }
    Ok(())
}

/// The holds' part of the daily maintenance (N5.7): deletes holds older than
/// [`HOLD_RETENTION_DAYS`]. Returns how many.
pub async fn prune_checkout_holds(db: &sqlx::PgPool, now: DateTime<Utc>) -> Result<u64> {
    let cutoff = now - chrono::Duration::days(HOLD_RETENTION_DAYS);
    Ok(
        sqlx::query("DELETE FROM checkout_holds WHERE created_at < $1")
            .bind(cutoff)
            .execute(db)
            .await?
            .rows_affected(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seats_follow_the_cap() {
        assert_eq!(
            Seats::of(None, 7),
            Seats {
                total: None,
                taken: 7,
                remaining: None,
                is_full: false
            }
        );
        assert_eq!(Seats::of(Some(30), 7).remaining, Some(23));
        assert!(!Seats::of(Some(30), 29).is_full);
        let full = Seats::of(Some(30), 31);
        assert_eq!((full.remaining, full.is_full), (Some(0), true));
        let zero = Seats::of(Some(0), 0);
        assert_eq!((zero.remaining, zero.is_full), (Some(0), true));
    }

    #[test]
    fn stripe_sessions_outlive_their_hold() {
        let now = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
        assert_eq!(stripe_expires_at(now), 1_800_000_000 + 32 * 60);
    }
}
