//! How long finished jobs stay in Redis.
//!
//! apalis-redis keeps every job it ran, with no TTL: the `{queue}:meta:<id>`
//! hash (status, attempts, result and `done_at`, the Unix second it finished),
//! the payload in the `{queue}:data` hash, the id in the plain set
//! `{queue}:done` (completed) or `{queue}:dead` (failed for good: aborted, or
//! out of attempts), and the relay's `{queue}:idempotency:<outbox id>` claim
//! (which expires after 8 days). Its own `vacuum_before` does not fit: one
//! duration for every state, it counts a job waiting for a retry (status
//! `Failed`, in the scheduled set) as finished and deletes it, it leaves the
//! ids in the done and dead sets, and it reads the whole payload hash in one
//! script.
//!
//! [`prune_finished_jobs`] keeps completed jobs `JOB_RETENTION_DONE_SECS` and
//! failed ones `JOB_RETENTION_FAILED_SECS` after they finished, by apalis' own
//! `done_at`, per queue and state in batches of one Lua script each:
//! 1. the ids in `{queue}:done` / `{queue}:dead` move to the sorted sets
//!    `{queue}:kept:done` / `{queue}:kept:failed`, scored by `done_at`, so the
//!    next step reads only what expired instead of scanning everything kept;
//! 2. every job of a sorted set whose `done_at` is past the retention is
//!    deleted: meta hash, payload, sorted-set entry and idempotency claim (when
//!    it still names this task).
//!
//! Only jobs whose status is terminal are touched. A script runs atomically,
//! so prunes in several worker processes at once are safe; [`run_pruner`]
//! still lets one process per minute do the pass. After a job is pruned, a
//! push of its outbox row again (only possible when marking the row relayed
//! failed that long) runs it again; handlers are idempotent.

use mambo_core::Context;
use mambo_core::jobs;
use std::time::Duration;
use tokio::sync::watch;

/// How often each worker process tries to prune.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(60);
/// Jobs moved or deleted per script run (one short Redis call each).
const BATCH: usize = 500;
/// Script runs per queue and state in one pass (the rest waits a minute).
const MAX_ROUNDS: usize = 200;
/// Longest wait for one Redis call.
const REDIS_TIMEOUT: Duration = Duration::from_secs(10);

/// A finished state and the apalis statuses that mean it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// Completed (`Done`), in `{queue}:done`.
    Done,
    /// Failed for good (`Killed`, or `Failed` out of attempts), in `{queue}:dead`.
    Failed,
}

impl Finished {
    pub const ALL: [Finished; 2] = [Finished::Done, Finished::Failed];

    /// The `state` label of the `worker_jobs_kept` gauge.
    pub fn label(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    fn statuses(self) -> &'static [&'static str] {
        match self {
            Self::Done => &["Done"],
            Self::Failed => &["Killed", "Failed"],
        }
    }

    /// apalis' set of the jobs that just finished in this state.
    fn apalis_set(self, config: &apalis_redis::Config) -> String {
        match self {
            Self::Done => config.done_jobs_set(),
            Self::Failed => config.dead_jobs_set(),
        }
    }

    fn retention_secs(self, ctx: &Context) -> u64 {
        match self {
            Self::Done => ctx.config.job_retention_done_secs,
            Self::Failed => ctx.config.job_retention_failed_secs,
        }
    }
}

/// The sorted set of a queue's kept jobs in `state`, scored by `done_at`.
pub fn kept_set(ctx: &Context, queue: &str, state: Finished) -> String {
    format!("{}:kept:{}", jobs::queue_name(ctx, queue), state.label())
}

/// KEYS: apalis' finished set, our sorted set, the payload hash.
/// ARGV: meta prefix, idempotency prefix, now, retention seconds, batch size,
/// then the statuses that mean this state.
/// Returns `{indexed, pruned, more}` (`more` = 1 when a step filled its batch).
const PRUNE_SCRIPT: &str = r#"
local finished, kept, data = KEYS[1], KEYS[2], KEYS[3]
local meta_prefix, idem_prefix = ARGV[1], ARGV[2]
local now = tonumber(ARGV[3])
local cutoff = now - tonumber(ARGV[4])
local batch = tonumber(ARGV[5])
local terminal = {}
for i = 6, #ARGV do terminal[ARGV[i]] = true end

-- 1. Index the newly finished jobs by the time they finished.
local indexed = 0
local ids = redis.call('SPOP', finished, batch)
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', meta_prefix .. ':' .. id, 'status', 'done_at')
  if f[1] and terminal[f[1]] then
    redis.call('ZADD', kept, tonumber(f[2]) or now, id)
    indexed = indexed + 1
  elseif not f[1] then
    -- Its record is gone already: drop the payload too.
    redis.call('HDEL', data, id)
  end
  -- Any other status: the job runs again, and apalis lists it when it ends.
end

-- 2. Delete the jobs kept past the retention.
local pruned = 0
local expired = redis.call('ZRANGEBYSCORE', kept, '-inf', cutoff, 'LIMIT', 0, batch)
for _, id in ipairs(expired) do
  local meta = meta_prefix .. ':' .. id
  local f = redis.call('HMGET', meta, 'status', 'idempotency_key')
  if not f[1] or terminal[f[1]] then
    if f[2] and #f[2] > 0 then
      local idem = idem_prefix .. ':' .. f[2]
      if redis.call('GET', idem) == id then
        redis.call('DEL', idem)
      end
    end
    redis.call('DEL', meta)
    redis.call('HDEL', data, id)
    pruned = pruned + 1
  end
  redis.call('ZREM', kept, id)
end

local more = 0
if #ids >= batch or #expired >= batch then more = 1 end
return {indexed, pruned, more}
"#;

async fn with_timeout<T>(
    what: &str,
    fut: impl Future<Output = redis::RedisResult<T>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(REDIS_TIMEOUT, fut).await {
        Ok(res) => Ok(res?),
        Err(_) => Err(anyhow::anyhow!("{what}: Redis did not answer")),
    }
}

/// Prunes the finished jobs of every queue past their retention (see the
/// module documentation) and returns how many were deleted. Safe to run in
/// several processes at once.
pub async fn prune_finished_jobs(ctx: &Context) -> anyhow::Result<u64> {
    let script = redis::Script::new(PRUNE_SCRIPT);
    let now = ctx.clock.now().timestamp().max(0);
    let mut conn = ctx.redis.conn();
    let mut total = 0;
    for queue in jobs::QUEUES {
        let config = jobs::redis_config(ctx, queue);
        for state in Finished::ALL {
            let (mut indexed, mut pruned) = (0, 0);
            for _ in 0..MAX_ROUNDS {
                let mut call = script.prepare_invoke();
                call.key(state.apalis_set(&config))
                    .key(kept_set(ctx, queue, state))
                    .key(config.job_data_hash())
                    .arg(config.job_meta_hash())
                    .arg(config.idempotency_key_set())
                    .arg(now)
                    .arg(state.retention_secs(ctx))
                    .arg(BATCH);
                for status in state.statuses() {
                    call.arg(*status);
                }
                let (i, p, more): (u64, u64, u8) =
                    with_timeout("pruning finished jobs", call.invoke_async(&mut conn)).await?;
                indexed += i;
                pruned += p;
                if more == 0 {
                    break;
                }
            }
            if indexed > 0 || pruned > 0 {
                tracing::debug!(
                    queue,
                    state = state.label(),
                    indexed,
                    pruned,
                    "finished jobs pruned"
                );
            }
            total += pruned;
        }
    }
    Ok(total)
}

/// Finished jobs kept in Redis, per queue: `(queue, done, failed)`.
pub async fn kept_jobs(ctx: &Context) -> anyhow::Result<Vec<(&'static str, u64, u64)>> {
    let mut pipe = redis::pipe();
    for queue in jobs::QUEUES {
        let config = jobs::redis_config(ctx, queue);
        for state in Finished::ALL {
            pipe.scard(state.apalis_set(&config))
                .zcard(kept_set(ctx, queue, state));
        }
    }
    let mut conn = ctx.redis.conn();
    let counts: Vec<u64> = with_timeout("counting kept jobs", pipe.query_async(&mut conn)).await?;
    let count = |i: usize| counts.get(i).copied().unwrap_or(0);
    Ok(jobs::QUEUES
        .iter()
        .enumerate()
        .map(|(q, queue)| {
            let base = q * 4;
            (
                *queue,
                count(base) + count(base + 1),
                count(base + 2) + count(base + 3),
            )
        })
        .collect())
}

/// Prunes once a minute until the stop flag is set. Every worker process runs
/// this; a short claim in Redis lets one of them do each minute's pass.
pub async fn run_pruner(ctx: Context, stop: watch::Receiver<bool>) {
    let claim = ctx.redis.key("cron:prune_finished_jobs");
    loop {
        let mut conn = ctx.redis.conn();
        let claimed: anyhow::Result<Option<String>> = with_timeout(
            "claiming the prune",
            redis::cmd("SET")
                .arg(&claim)
                .arg(1)
                .arg("NX")
                .arg("EX")
                .arg(PRUNE_INTERVAL.as_secs().saturating_sub(10).max(1))
                .query_async(&mut conn),
        )
        .await;
        match claimed {
            Ok(Some(_)) => match prune_finished_jobs(&ctx).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(pruned = n, "finished jobs pruned from Redis"),
                Err(e) => tracing::warn!(error = %e, "pruning finished jobs failed"),
            },
            Ok(None) => tracing::debug!("another worker prunes finished jobs this minute"),
            Err(e) => tracing::debug!(error = %e, "cannot claim the prune of finished jobs"),
        }
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_INTERVAL) => {}
            _ = crate::stopped(stop.clone()) => return,
        }
    }
}
