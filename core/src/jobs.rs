//! Background jobs: their payloads, the transactional outbox that keeps them
//! from being lost, and the relay that moves them into the apalis Redis queues.
//!
//! A job is written to `job_outbox` in the same transaction as the change that
//! caused it ([`enqueue`]); after the commit the caller wakes the relay
//! ([`wake_relay`]). The relay ([`run_relay`], one per API and worker process)
//! pushes unrelayed rows into Redis with the outbox row id as the apalis task id
//! and marks them relayed. When Redis is down the rows simply wait: nothing is
//! lost, and the next relay pass (at most a second later) retries.
//!
//! Delivery is at least once: a crash between the Redis push and the commit
//! that marks the row relayed pushes the row again. apalis-redis ignores a task
//! whose id it already holds, but handlers must be idempotent regardless (they
//! may also be retried after a failure).
//!
//! The handlers live with their domain, not here (`badges::run_check`,
//! `streaks::pay_bonus`, `mux::sync`, `broadcast::send_batch`, `email::send`);
//! the worker maps each queue to its handler. This module knows no domain.

use crate::{Context, Error, Result};
use apalis::prelude::{TaskBuilder, TaskId, TaskSink};
use apalis_redis::RedisStorage;
use chrono::NaiveDate;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;
use uuid::Uuid;

/// A job payload and the queue it travels on. (`Clone` because the worker's
/// in-process retry re-runs a copy of the task.)
pub trait Job:
    Serialize + DeserializeOwned + Clone + Send + Sync + Unpin + 'static + Debug
{
    /// The queue name, without the deployment's Redis namespace.
    const QUEUE: &'static str;
}

/// Sends one email through Resend. `idempotency_key` names the logical email
/// (for example `password-reset:<token id>`): the same key is never sent twice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailJob {
    pub idempotency_key: String,
    /// What kind of email this is (`password_reset`, `welcome`, ...), for the records.
    pub template: String,
    pub to: Vec<String>,
    pub subject: String,
    pub html: String,
    pub text: String,
    /// Extra headers of the email (the digest's `List-Unsubscribe` and
    /// `List-Unsubscribe-Post`). Absent in jobs queued before it existed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

impl Job for EmailJob {
    const QUEUE: &'static str = "email";
}

/// Sends one batch of a waitlist broadcast.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastJob {
    pub broadcast_id: Uuid,
    pub batch: i32,
}

impl Job for BroadcastJob {
    const QUEUE: &'static str = "broadcast";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MuxSyncAction {
    /// Delete an asset on Mux (after its lesson or post was deleted).
    DeleteAsset { asset_id: String },
    /// Compare our assets with Mux's and fix the differences.
    Reconcile,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MuxSyncJob {
    pub action: MuxSyncAction,
}

impl Job for MuxSyncJob {
    const QUEUE: &'static str = "mux_sync";
}

/// Checks whether a user earned badges after `stat` changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadgeCheckJob {
    pub user_id: Uuid,
    pub stat: String,
}

impl Job for BadgeCheckJob {
    const QUEUE: &'static str = "badge_check";
}

/// Pays the streak bonus for `streak` days reached on `date`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreakBonusJob {
    pub user_id: Uuid,
    pub date: NaiveDate,
    pub streak: i32,
}

impl Job for StreakBonusJob {
    const QUEUE: &'static str = "streak_bonus";
}

/// Notifies every user that a world was published for the first time
/// (`notifications::fanout::run`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoursePublishedJob {
    pub world_id: Uuid,
}

impl Job for CoursePublishedJob {
    const QUEUE: &'static str = "notification_fanout";
}

/// Writes one data export (`privacy::export::run`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataExportJob {
    pub export_id: Uuid,
}

impl Job for DataExportJob {
    const QUEUE: &'static str = "data_export";
}

/// Carries out a requested account deletion (`privacy::deletion::run`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountDeletionJob {
    pub user_id: Uuid,
}

impl Job for AccountDeletionJob {
    const QUEUE: &'static str = "account_deletion";
}

/// Expires a Stripe Checkout session the user canceled
/// (`payments::expire_checkout_session`, API-2026-05.md N5.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutExpireJob {
    pub session_id: String,
}

impl Job for CheckoutExpireJob {
    const QUEUE: &'static str = "checkout_expire";
}

/// Every queue the worker consumes.
pub const QUEUES: &[&str] = &[
    EmailJob::QUEUE,
    BroadcastJob::QUEUE,
    MuxSyncJob::QUEUE,
    BadgeCheckJob::QUEUE,
    StreakBonusJob::QUEUE,
    CoursePublishedJob::QUEUE,
    DataExportJob::QUEUE,
    AccountDeletionJob::QUEUE,
    CheckoutExpireJob::QUEUE,
];

// ---------------------------------------------------------------------------
// Queues in Redis
// ---------------------------------------------------------------------------

/// How long apalis-redis remembers a relayed outbox id (longer than outbox rows live).
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(8 * 24 * 3600);

/// The full Redis queue name: `{namespace}:{queue}`.
pub fn queue_name(ctx: &Context, queue: &str) -> String {
    format!("{}:{}", ctx.config.redis_namespace, queue)
}

/// The apalis-redis configuration of one queue. Producer and consumer must agree
/// on the queue name (apalis' default is the Rust type name), so it is set here.
///
/// Liveness: every worker writes a heartbeat to `{queue}:workers` each
/// `WORKER_HEARTBEAT_SECONDS`; on each heartbeat a live worker moves the
/// in-flight jobs of workers silent for `WORKER_MISSED_HEARTBEATS` beats back to
/// the queue. So a job whose worker was killed mid-run (no graceful shutdown)
/// runs again on a live worker within about heartbeat × (missed + 1) seconds
/// (70 s by default; apalis' own default is over 5 minutes). Handlers are
/// idempotent, so the second run has the effect once.
pub fn redis_config(ctx: &Context, queue: &str) -> apalis_redis::Config {
    apalis_redis::Config::default()
        .queue(queue_name(ctx, queue))
        .heartbeat_interval(Duration::from_secs(ctx.config.worker_heartbeat_seconds))
        .missed_heartbeats(ctx.config.worker_missed_heartbeats as usize)
        // apalis-redis turns "no TTL" into `EXPIRE key 0`, which deletes the key at
        // once, so the idempotency keys need an explicit lifetime.
        .idempotency_ttl(Some(IDEMPOTENCY_TTL))
}

/// The apalis-redis storage of `J`'s queue, on the shared Redis connection.
pub fn storage<J: Job>(ctx: &Context) -> RedisStorage<J> {
    RedisStorage::new(ctx.redis.conn()).with_config(redis_config(ctx, J::QUEUE))
}

// ---------------------------------------------------------------------------
// The outbox
// ---------------------------------------------------------------------------

/// Writes `job` to the outbox inside the caller's transaction and returns its id
/// (which becomes the apalis task id). After the commit, call [`wake_relay`].
pub async fn enqueue<J: Job>(conn: &mut sqlx::PgConnection, job: &J) -> Result<Uuid> {
    let payload = serde_json::to_value(job)
        .map_err(|e| Error::internal(format!("serializing a {} job: {e}", J::QUEUE)))?;
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO job_outbox (id, queue, payload) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(J::QUEUE)
        .bind(payload)
        .execute(conn)
        .await?;
    Ok(id)
}

/// [`enqueue`] for several jobs of one queue, in one statement.
pub async fn enqueue_many<J: Job>(conn: &mut sqlx::PgConnection, jobs: &[J]) -> Result<Vec<Uuid>> {
    let mut q = crate::db::Statement::new("WITH ");
    let ids = push_enqueue(&mut q, "o", jobs, "true")?;
    q.push(" SELECT count(*) FROM o");
    q.build().execute(conn).await?;
    Ok(ids)
}

/// Pushes [`enqueue_many`]'s outbox rows into a composed statement
/// ([`crate::db::Statement`]) as `{name}`, written only when `guard` holds.
/// Returns the jobs' ids; after the commit, call [`wake_relay`].
pub fn push_enqueue<J: Job>(
    q: &mut crate::db::Statement,
    name: &str,
    jobs: &[J],
    guard: &str,
) -> Result<Vec<Uuid>> {
    let mut ids = Vec::with_capacity(jobs.len());
    let mut payloads = Vec::with_capacity(jobs.len());
    for job in jobs {
        payloads.push(
            serde_json::to_value(job)
                .map_err(|e| Error::internal(format!("serializing a {} job: {e}", J::QUEUE)))?,
        );
        ids.push(Uuid::now_v7());
    }
    q.push(format_args!(
        "{name} AS (
             INSERT INTO job_outbox (id, queue, payload)
             SELECT id, "
    ));
    q.push_bind(J::QUEUE);
    q.push(" , payload FROM unnest(");
    q.push_bind(ids.clone());
    q.push("::uuid[], ");
    q.push_bind(payloads);
    q.push(format_args!(
        "::jsonb[]) AS t(id, payload) WHERE ({guard}) RETURNING id)"
    ));
    Ok(ids)
}

/// Tells this process's relay that the outbox has new rows (call after commit).
pub fn wake_relay(ctx: &Context) {
    ctx.outbox_notify.notify_one();
}

/// Rows relayed per transaction.
const RELAY_BATCH: i64 = 100;
/// Longest time one Redis push may take while the outbox rows are locked.
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Moves up to one batch of unrelayed outbox rows to Redis and returns how many
/// were relayed. Rows locked by another relay are skipped. When Redis refuses a
/// queue's rows, they stay unrelayed with `attempts`/`last_error` updated, rows
/// of other queues that were pushed are still marked, and the error is returned.
pub async fn relay_once(ctx: &Context) -> Result<usize> {
    let mut tx = ctx.db.begin().await?;
    let rows: Vec<(Uuid, String, Value)> = sqlx::query_as(
        "SELECT id, queue, payload FROM job_outbox
         WHERE relayed_at IS NULL
         ORDER BY created_at, id
         LIMIT $1
         FOR UPDATE SKIP LOCKED",
    )
    .bind(RELAY_BATCH)
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        tx.commit().await?;
        return Ok(0);
    }

    // Group by queue, keeping the outbox order inside each queue.
    let mut groups: Vec<(String, Vec<(Uuid, Value)>)> = Vec::new();
    for (id, queue, payload) in rows {
        match groups.iter_mut().find(|(q, _)| *q == queue) {
            Some((_, items)) => items.push((id, payload)),
            None => groups.push((queue, vec![(id, payload)])),
        }
    }

    let now = ctx.clock.now();
    let mut relayed = 0;
    let mut first_error: Option<String> = None;
    for (queue, items) in groups {
        let ids: Vec<Uuid> = items.iter().map(|(id, _)| *id).collect();
        match push(ctx, &queue, items).await {
            Ok(()) => {
                sqlx::query(
                    "UPDATE job_outbox
                     SET relayed_at = $2, attempts = attempts + 1, last_error = NULL
                     WHERE id = ANY($1)",
                )
                .bind(&ids)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                relayed += ids.len();
            }
            Err(e) => {
                sqlx::query(
                    "UPDATE job_outbox SET attempts = attempts + 1, last_error = $2
                     WHERE id = ANY($1)",
                )
                .bind(&ids)
                .bind(&e)
                .execute(&mut *tx)
                .await?;
                first_error.get_or_insert(e);
            }
        }
    }
    tx.commit().await?;
    match first_error {
        None => Ok(relayed),
        Some(e) => Err(Error::Internal(anyhow::anyhow!(
            "relaying the job outbox to Redis: {e} ({relayed} row(s) relayed)"
        ))),
    }
}

/// Pushes one queue's rows in a single Redis call, each with its outbox id as
/// the task id (and idempotency key), so a second push of the same row is ignored.
async fn push(ctx: &Context, queue: &str, items: Vec<(Uuid, Value)>) -> Result<(), String> {
    let mut storage: RedisStorage<Value> =
        RedisStorage::new(ctx.redis.conn()).with_config(redis_config(ctx, queue));
    let tasks = items.into_iter().map(|(id, payload)| {
        let id = id.to_string();
        TaskBuilder::new(payload)
            .task_id(TaskId::from_string(id.clone()))
            .idempotency_key(id)
            .build()
    });
    match tokio::time::timeout(PUSH_TIMEOUT, storage.push_all(futures::stream::iter(tasks))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("queue {queue}: {e}")),
        Err(_) => Err(format!(
            "queue {queue}: Redis did not answer within {PUSH_TIMEOUT:?}"
        )),
    }
}

/// Relays the outbox until `shutdown` resolves: after every pass it waits for
/// [`wake_relay`] or one second, whichever comes first. Redis outages are logged
/// (a warning when they start and once a minute while they last) and retried.
pub async fn run_relay(ctx: Context, shutdown: impl Future) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut failures: u64 = 0;
    loop {
        let mut full_batch = false;
        match relay_once(&ctx).await {
            Ok(n) => {
                if failures > 0 {
                    tracing::info!(after_failures = failures, "job outbox relay recovered");
                }
                failures = 0;
                full_batch = n as i64 >= RELAY_BATCH;
                if n > 0 {
                    tracing::debug!(relayed = n, "job outbox relayed");
                }
            }
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(60) {
                    tracing::warn!(
                        error = %e,
                        consecutive_failures = failures,
                        "job outbox relay failed; the jobs stay in the outbox and are retried"
                    );
                } else {
                    tracing::debug!(error = %e, "job outbox relay failed again");
                }
            }
        }
        if full_batch {
            // More rows are waiting: go on at once (unless shutting down).
            if futures::FutureExt::now_or_never(shutdown.as_mut()).is_some() {
                return;
            }
            continue;
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ctx.outbox_notify.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Relayed outbox rows are kept this long (to investigate), then deleted.
const OUTBOX_RETENTION_DAYS: i64 = 7;

/// What [`maintain_outbox`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxMaintenance {
    /// Rows that were still waiting and were relayed now.
    pub relayed: usize,
    /// Relayed rows older than the retention that were deleted.
    pub deleted: u64,
}

/// The outbox's part of the worker's daily maintenance. Idempotent: several
/// worker processes may each run it. Relays any stuck outbox rows and deletes
/// relayed rows older than a week.
pub async fn maintain_outbox(ctx: &Context) -> Result<OutboxMaintenance> {
    // Relay what is waiting (bounded, in case rows keep arriving).
    let mut relayed = 0;
    for _ in 0..100 {
        let n = relay_once(ctx).await?;
        relayed += n;
        if (n as i64) < RELAY_BATCH {
            break;
        }
    }
    let cutoff = ctx.clock.now() - chrono::Duration::days(OUTBOX_RETENTION_DAYS);
    let deleted = sqlx::query("DELETE FROM job_outbox WHERE relayed_at < $1")
        .bind(cutoff)
        .execute(&ctx.db)
        .await?
        .rows_affected();
    Ok(OutboxMaintenance { relayed, deleted })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_as_json() {
        let job = MuxSyncJob {
            action: MuxSyncAction::DeleteAsset {
                asset_id: "a1".into(),
            },
        };
        let v = serde_json::to_value(&job).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"action": {"DeleteAsset": {"asset_id": "a1"}}})
        );
        assert_eq!(serde_json::from_value::<MuxSyncJob>(v).unwrap(), job);

        let job = StreakBonusJob {
            user_id: Uuid::nil(),
            date: NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
            streak: 7,
        };
        let v = serde_json::to_value(&job).unwrap();
        assert_eq!(v["date"], "2026-12-31");
        assert_eq!(serde_json::from_value::<StreakBonusJob>(v).unwrap(), job);
    }
}
