//! The background worker: one apalis worker per job queue, the scheduled jobs,
//! the outbox relay and the pruning of finished jobs ([`retention`]), all
//! stopped together by one shutdown signal.
//!
//! Every apalis worker gets a fresh unique name (`{queue}-{uuid}`), each time it
//! starts: apalis-redis refuses a name it saw alive in the last five minutes.
//! When a worker dies (Redis went away, its registration expired), it is started
//! again with a new name after a growing pause (2 s, doubling, at most 30 s).

use apalis::layers::catch_panic::CatchPanicLayer;
use apalis::layers::retry::HasherRng;
use apalis::layers::retry::backoff::{ExponentialBackoffMaker, MakeBackoff};
use apalis::layers::retry::{Policy, RetryPolicy};
use apalis::prelude::*;
use apalis_cron::{CronScheduler, Tick};
use futures::FutureExt;
use futures::future::BoxFuture;
use mambo_core::jobs::{
    self, AccountDeletionJob, BadgeCheckJob, BroadcastJob, CheckoutExpireJob, CoursePublishedJob,
    DataExportJob, EmailJob, Job, MuxSyncAction, MuxSyncJob, StreakBonusJob,
};
use mambo_core::metrics::{self, JobOutcome};
use mambo_core::{
    Context, badges, broadcast, email, mux, notifications, payments, privacy, streaks,
};
use std::future::Future;
use std::str::FromStr;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

pub mod retention;
pub use retention::{kept_jobs, prune_finished_jobs};

/// How often an idle worker looks for due and retried tasks (apalis' default is 30 s).
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// The daily maintenance job: 00:05:00 UTC (the first field is seconds).
/// `DAILY_MAINTENANCE_SCHEDULE` overrides it.
pub const DAILY_MAINTENANCE_SCHEDULE: &str = mambo_core::config::DEFAULT_DAILY_MAINTENANCE_SCHEDULE;

/// Every 5 minutes: pick up Mux uploads whose webhook never arrived.
/// `MUX_RECONCILE_SCHEDULE` overrides it.
pub const MUX_RECONCILE_SCHEDULE: &str = mambo_core::config::DEFAULT_MUX_RECONCILE_SCHEDULE;

/// The notification email digest: 17:00:00 UTC, daily users on every tick and
/// weekly users on Mondays. `NOTIFICATION_DIGEST_SCHEDULE` overrides it.
pub const NOTIFICATION_DIGEST_SCHEDULE: &str =
    mambo_core::config::DEFAULT_NOTIFICATION_DIGEST_SCHEDULE;

/// Every minute: rebuild the community leaderboards (N5.4).
/// `LEADERBOARD_SCHEDULE` overrides it.
pub const LEADERBOARD_SCHEDULE: &str = mambo_core::config::DEFAULT_LEADERBOARD_SCHEDULE;

/// How long the claim of one scheduled tick is kept in Redis. Every worker
/// process computes the same tick times, so their claims of one tick arrive
/// within moments of each other; an hour is far longer than any clock skew.
const TICK_CLAIM_TTL_SECS: u64 = 3600;

/// Every scheduled job.
const SCHEDULED: [Scheduled; 4] = [
    Scheduled::DailyMaintenance,
    Scheduled::MuxReconcile,
    Scheduled::NotificationDigest,
    Scheduled::LeaderboardRebuild,
];

/// The scheduled jobs, each on its own cron worker.
#[derive(Clone, Copy, Debug)]
enum Scheduled {
    DailyMaintenance,
    MuxReconcile,
    NotificationDigest,
    LeaderboardRebuild,
}

impl Scheduled {
    fn name(self) -> &'static str {
        match self {
            Self::DailyMaintenance => "daily_maintenance",
            Self::MuxReconcile => "mux_reconcile",
            Self::NotificationDigest => "notification_digest",
            Self::LeaderboardRebuild => "leaderboard_rebuild",
        }
    }
    fn schedule(self, ctx: &Context) -> &str {
        match self {
            Self::DailyMaintenance => &ctx.config.daily_maintenance_schedule,
            Self::MuxReconcile => &ctx.config.mux_reconcile_schedule,
            Self::NotificationDigest => &ctx.config.notification_digest_schedule,
            Self::LeaderboardRebuild => &ctx.config.leaderboard_schedule,
        }
    }
}

/// The Redis key that counts the worker processes that fired one tick of a
/// scheduled job: `{namespace}:cron:{job}:{tick unix seconds}`.
pub fn tick_claim_key(ctx: &Context, job_name: &str, tick: u64) -> String {
    ctx.redis.key(&format!("cron:{job_name}:{tick}"))
}

/// Whether this process runs the tick `tick` of `job`. Every worker process
/// fires every tick; each counts itself in the tick's Redis key and only the
/// first runs the job, so a schedule has its effect once however many workers
/// there are. When Redis cannot answer, the tick runs anyway (the scheduled
/// jobs are idempotent, so a rare double run is harmless; a skipped
/// maintenance is not).
async fn claim_tick(ctx: &Context, job_name: &str, tick: u64) -> bool {
    let key = tick_claim_key(ctx, job_name, tick);
    let mut conn = ctx.redis.conn();
    let res: redis::RedisResult<(i64,)> = redis::pipe()
        .atomic()
        .incr(&key, 1)
        .expire(&key, TICK_CLAIM_TTL_SECS as i64)
        .ignore()
        .query_async(&mut conn)
        .await;
    match res {
        Ok((1,)) => true,
        Ok((n,)) => {
            tracing::debug!(
                job = job_name,
                tick,
                claims = n,
                "scheduled tick already taken by another worker"
            );
            false
        }
        Err(e) => {
            tracing::warn!(
                job = job_name,
                tick,
                error = %e,
                "could not claim the scheduled tick in Redis; running it anyway"
            );
            true
        }
    }
}
/// How long running jobs get to finish after the shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How one queue is consumed.
#[derive(Debug, Clone, Copy)]
struct QueueSettings {
    /// Jobs of this queue run at the same time in this process.
    concurrency: usize,
    /// In-process retries (with exponential backoff) before the failure goes
    /// back to Redis, which schedules further attempts itself.
    retries: usize,
    /// A job running longer than this fails (and is retried).
    timeout: Duration,
}

const EMAIL: QueueSettings = QueueSettings {
    concurrency: 4,
    retries: 3,
    timeout: Duration::from_secs(60),
};
const BROADCAST: QueueSettings = QueueSettings {
    concurrency: 1,
    retries: 3,
    timeout: Duration::from_secs(300),
};
const MUX_SYNC: QueueSettings = QueueSettings {
    concurrency: 2,
    retries: 3,
    timeout: Duration::from_secs(120),
};
const BADGE_CHECK: QueueSettings = QueueSettings {
    concurrency: 8,
    retries: 3,
    timeout: Duration::from_secs(30),
};
const STREAK_BONUS: QueueSettings = QueueSettings {
    concurrency: 4,
    retries: 3,
    timeout: Duration::from_secs(30),
};
/// One fan-out at a time: each inserts up to 100,000s of rows in batches.
const NOTIFICATION_FANOUT: QueueSettings = QueueSettings {
    concurrency: 1,
    retries: 3,
    timeout: Duration::from_secs(600),
};

/// One export at a time per process: each streams a user's rows to a ZIP
/// on disk and uploads it.
const DATA_EXPORT: QueueSettings = QueueSettings {
    concurrency: 1,
    retries: 3,
    timeout: Duration::from_secs(600),
};

/// Account deletions call Stripe, Mux (once per video) and R2, then delete
/// rows; resumable, so a timeout or a crash only costs a rerun.
const ACCOUNT_DELETION: QueueSettings = QueueSettings {
    concurrency: 1,
    retries: 3,
    timeout: Duration::from_secs(600),
};

/// Expiring a canceled Stripe Checkout session: two short Stripe calls.
const CHECKOUT_EXPIRE: QueueSettings = QueueSettings {
    concurrency: 2,
    retries: 3,
    timeout: Duration::from_secs(60),
};

/// Runs the worker until `shutdown` resolves, then stops taking jobs, lets the
/// running ones finish (up to [`SHUTDOWN_GRACE`]) and returns.
///
/// Also runs the outbox relay, so a worker alone keeps jobs flowing from
/// PostgreSQL to Redis.
pub async fn run(
    ctx: Context,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Fail early on a bad schedule rather than in a restart loop.
    for job in SCHEDULED {
        cron::Schedule::from_str(job.schedule(&ctx)).map_err(|e| {
            anyhow::anyhow!(
                "invalid cron schedule {:?} for {}: {e}",
                job.schedule(&ctx),
                job.name()
            )
        })?;
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();

    metrics::install();
    tasks.spawn(jobs::run_relay(ctx.clone(), stopped(stop_rx.clone())));
    tasks.spawn(sample_queue_depths(ctx.clone(), stop_rx.clone()));
    tasks.spawn(retention::run_pruner(ctx.clone(), stop_rx.clone()));
    {
        // Platform settings (N6.1): the worker's jobs read the same revision.
        let (sctx, stop) = (ctx.clone(), stop_rx.clone());
        tasks.spawn(async move {
            tokio::select! {
                _ = sctx.watch_settings() => {}
                _ = stopped(stop) => {}
            }
        });
    }

    spawn_queue::<EmailJob, _, _>(&mut tasks, &ctx, &stop_rx, EMAIL, email_task);
    spawn_queue::<BroadcastJob, _, _>(&mut tasks, &ctx, &stop_rx, BROADCAST, broadcast_task);
    spawn_queue::<MuxSyncJob, _, _>(&mut tasks, &ctx, &stop_rx, MUX_SYNC, mux_sync_task);
    spawn_queue::<BadgeCheckJob, _, _>(&mut tasks, &ctx, &stop_rx, BADGE_CHECK, badge_check_task);
    spawn_queue::<StreakBonusJob, _, _>(
        &mut tasks,
        &ctx,
        &stop_rx,
        STREAK_BONUS,
        streak_bonus_task,
    );
    spawn_queue::<CoursePublishedJob, _, _>(
        &mut tasks,
        &ctx,
        &stop_rx,
        NOTIFICATION_FANOUT,
        course_published_task,
    );
    spawn_queue::<DataExportJob, _, _>(&mut tasks, &ctx, &stop_rx, DATA_EXPORT, data_export_task);
    spawn_queue::<AccountDeletionJob, _, _>(
        &mut tasks,
        &ctx,
        &stop_rx,
        ACCOUNT_DELETION,
        account_deletion_task,
    );
    spawn_queue::<CheckoutExpireJob, _, _>(
        &mut tasks,
        &ctx,
        &stop_rx,
        CHECKOUT_EXPIRE,
        checkout_expire_task,
    );
    for job in SCHEDULED {
        let ctx = ctx.clone();
        tasks.spawn(supervise(job.name(), stop_rx.clone(), move |name, stop| {
            run_cron_worker(ctx.clone(), job, name, stop).boxed()
        }));
    }

    tracing::info!(
        namespace = ctx.config.redis_namespace,
        queues = ?jobs::QUEUES,
        "worker started"
    );
    shutdown.await;
    tracing::info!("worker shutting down: finishing running jobs");
    let _ = stop_tx.send(true);

    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while let Some(res) = tasks.join_next().await {
            if let Err(e) = res {
                tracing::error!(error = %e, "a worker task ended abnormally");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            grace = ?SHUTDOWN_GRACE,
            "jobs still running after the shutdown grace period; abandoning them \
             (apalis re-queues them once this worker's registration expires)"
        );
        tasks.shutdown().await;
    }
    tracing::info!("worker stopped");
    Ok(())
}

/// Resolves once the stop flag is set (or its sender is gone).
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

fn spawn_queue<J, H, Fut>(
    tasks: &mut JoinSet<()>,
    ctx: &Context,
    stop_rx: &watch::Receiver<bool>,
    settings: QueueSettings,
    handler: H,
) where
    J: Job,
    H: Fn(J, Data<Context>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxDynError>> + Send + 'static,
{
    let ctx = ctx.clone();
    tasks.spawn(supervise(J::QUEUE, stop_rx.clone(), move |name, stop| {
        run_queue_worker::<J, H, Fut>(ctx.clone(), name, stop, settings, handler.clone()).boxed()
    }));
}

/// Keeps one worker running: starts it under a fresh name, and when it dies
/// (not because of shutdown) starts it again after a pause.
async fn supervise<F>(what: &'static str, stop_rx: watch::Receiver<bool>, start: F)
where
    F: Fn(String, watch::Receiver<bool>) -> BoxFuture<'static, Result<(), WorkerError>>,
{
    let mut failures: u32 = 0;
    loop {
        if *stop_rx.borrow() {
            return;
        }
        let name = format!("{what}-{}", uuid::Uuid::new_v4().simple());
        let started = Instant::now();
        let res = start(name.clone(), stop_rx.clone()).await;
        if *stop_rx.borrow() {
            if let Err(e) = res {
                tracing::warn!(worker = name, error = %e, "worker stopped with an error");
            }
            return;
        }
        match res {
            Ok(()) => tracing::warn!(worker = name, "worker ended unexpectedly; restarting"),
            Err(e) => tracing::warn!(worker = name, error = %e, "worker failed; restarting"),
        }
        if started.elapsed() > Duration::from_secs(60) {
            failures = 0;
        }
        failures = failures.saturating_add(1);
        let pause = Duration::from_secs(1 << failures.min(5)).min(Duration::from_secs(30));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stopped(stop_rx.clone()) => return,
        }
    }
}

/// Layer order (outermost first): concurrency → retry → catch_panic → timeout
/// → tracing, the order apalis accepts without warnings.
async fn run_queue_worker<J, H, Fut>(
    ctx: Context,
    name: String,
    stop: watch::Receiver<bool>,
    settings: QueueSettings,
    handler: H,
) -> Result<(), WorkerError>
where
    J: Job,
    H: Fn(J, Data<Context>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxDynError>> + Send + 'static,
{
    let backend = jobs::storage::<J>(&ctx).poll_with_interval(POLL_INTERVAL);
    let backoff = ExponentialBackoffMaker::new(
        Duration::from_secs(1),
        Duration::from_secs(30),
        0.5,
        HasherRng::default(),
    )
    .expect("valid backoff settings")
    .make_backoff();
    let retry = SkipAborted(RetryPolicy::retries(settings.retries).with_backoff(backoff));

    let wctx = WorkerContext::new(&name);
    let worker = WorkerBuilder::new(&wctx)
        .backend(backend)
        .data(ctx)
        .concurrency(settings.concurrency)
        .retry(retry)
        .layer(CatchPanicLayer::with_panic_handler(on_panic))
        .timeout(settings.timeout)
        .enable_tracing()
        .build(handler);
    run_until_stopped(worker.run(), &wctx, stop).await
}

async fn run_cron_worker(
    ctx: Context,
    job: Scheduled,
    name: String,
    stop: watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    let schedule = cron::Schedule::from_str(job.schedule(&ctx)).map_err(|e| {
        WorkerError::IoError(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    })?;
    let wctx = WorkerContext::new(&name);
    let worker = WorkerBuilder::new(&wctx)
        .backend(CronScheduler::new(schedule))
        .data(ctx)
        .data(job)
        .layer(CatchPanicLayer::with_panic_handler(on_panic))
        .timeout(Duration::from_secs(600))
        .enable_tracing()
        .build(scheduled_task);
    run_until_stopped(worker.run(), &wctx, stop).await
}

/// Drives a worker until it ends by itself or the stop flag is set; then stops
/// it gracefully (no new jobs, running jobs finish) and waits for it.
async fn run_until_stopped(
    run: impl Future<Output = Result<(), WorkerError>>,
    wctx: &WorkerContext,
    stop: watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    let mut run = std::pin::pin!(run);
    tokio::select! {
        res = &mut run => return res,
        _ = stopped(stop) => {}
    }
    // A worker that has not started yet cannot be stopped: give it a moment.
    for _ in 0..100 {
        if !wctx.is_pending() {
            break;
        }
        tokio::select! {
            res = &mut run => return res,
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    if let Err(e) = wctx.stop() {
        tracing::debug!(worker = wctx.name(), error = %e, "stopping worker");
    }
    run.await
}

// ---------------------------------------------------------------------------
// Handlers: each queue runs its domain's handler in mambo_core (email::send,
// broadcast::send_batch, mux::sync, badges::run_check, streaks::pay_bonus,
// notifications::fanout::run).
// ---------------------------------------------------------------------------

/// A retry policy that never retries an [`AbortError`]. apalis' own check
/// cannot see through the boxed error, and `retry_if` with a closure makes the
/// worker future fail the `Send` check, hence this wrapper.
#[derive(Debug, Clone)]
struct SkipAborted<P>(P);

impl<T, Res, P> Policy<Task<T>, Res, BoxDynError> for SkipAborted<P>
where
    P: Policy<Task<T>, Res, BoxDynError>,
{
    type Future = P::Future;

    fn retry(
        &mut self,
        req: &mut Task<T>,
        result: &mut Result<Res, BoxDynError>,
    ) -> Option<Self::Future> {
        if let Err(e) = result
            && e.downcast_ref::<AbortError>().is_some()
        {
            return None;
        }
        self.0.retry(req, result)
    }

    fn clone_request(&mut self, req: &Task<T>) -> Option<Task<T>> {
        self.0.clone_request(req)
    }
}

/// A panicking job fails without retries (a panic is a bug, not bad luck).
fn on_panic(panic: &Box<dyn std::any::Any + Send>) -> AbortError {
    let msg = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string());
    tracing::error!(panic = msg, "job panicked");
    AbortError::new(format!("job panicked: {msg}"))
}

/// Turns a domain error into a task error: client errors (4xx other than 429
/// and 503) will fail the same way again, so they abort instead of retrying.
fn task_error(e: mambo_core::Error) -> BoxDynError {
    match e.status() {
        400..=499 if e.status() != 429 => Box::new(AbortError::new(e)),
        _ => Box::new(e),
    }
}

/// Runs one job inside a `job` span and records its outcome and duration.
async fn observe(
    queue: &'static str,
    span: tracing::Span,
    run: impl Future<Output = Result<(), BoxDynError>>,
) -> Result<(), BoxDynError> {
    let started = Instant::now();
    let res = run.instrument(span.clone()).await;
    let outcome = match &res {
        Ok(()) => JobOutcome::Succeeded,
        Err(e) if e.downcast_ref::<AbortError>().is_some() => JobOutcome::Failed,
        Err(_) => JobOutcome::Retried,
    };
    metrics::record_job(queue, outcome, started.elapsed());
    let _enter = span.enter();
    match (&res, outcome) {
        (Ok(()), _) => tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "job done"
        ),
        (Err(e), JobOutcome::Failed) => tracing::warn!(error = %e, "job failed for good"),
        (Err(e), _) => tracing::info!(error = %e, "job failed; it will be retried"),
    }
    res
}

async fn email_task(job: EmailJob, ctx: Data<Context>) -> Result<(), BoxDynError> {
    let span = tracing::info_span!("job", queue = EmailJob::QUEUE, template = job.template);
    observe(EmailJob::QUEUE, span, async {
        match email::send(&ctx, &job).await {
            Ok(_) => Ok(()),
            Err(e) if email::is_retryable(&e) => Err(Box::new(e) as BoxDynError),
            Err(e) => Err(Box::new(AbortError::new(e)) as BoxDynError),
        }
    })
    .await
}

async fn broadcast_task(job: BroadcastJob, ctx: Data<Context>) -> Result<(), BoxDynError> {
    let span = tracing::info_span!(
        "job",
        queue = BroadcastJob::QUEUE,
        broadcast_id = %job.broadcast_id,
        batch = job.batch
    );
    observe(BroadcastJob::QUEUE, span, async {
        broadcast::send_batch(&ctx, &job)
            .await
            .map(|_| ())
            .map_err(task_error)
    })
    .await
}

async fn mux_sync_task(job: MuxSyncJob, ctx: Data<Context>) -> Result<(), BoxDynError> {
    let span = tracing::info_span!("job", queue = MuxSyncJob::QUEUE);
    observe(MuxSyncJob::QUEUE, span, async {
        mux::sync(&ctx, &job).await.map_err(task_error)
    })
    .await
}

async fn badge_check_task(job: BadgeCheckJob, ctx: Data<Context>) -> Result<(), BoxDynError> {
    let span = tracing::info_span!(
        "job",
        queue = BadgeCheckJob::QUEUE,
        user_id = %job.user_id,
        stat = job.stat
    );
    observe(BadgeCheckJob::QUEUE, span, async {
        badges::run_check(&ctx, &job).await.map_err(task_error)
    })
    .await
}

async fn streak_bonus_task(job: StreakBonusJob, ctx: Data<Context>) -> Result<(), BoxDynError> {
    let span = tracing::info_span!("job", queue = StreakBonusJob::QUEUE, user_id = %job.user_id);
    observe(StreakBonusJob::QUEUE, span, async {
        streaks::pay_bonus(&ctx, &job).await.map_err(task_error)
    })
    .await
}

async fn course_published_task(
    job: CoursePublishedJob,
    ctx: Data<Context>,
) -> Result<(), BoxDynError> {
    let span = tracing::info_span!(
        "job",
        queue = CoursePublishedJob::QUEUE,
        world_id = %job.world_id
    );
    observe(CoursePublishedJob::QUEUE, span, async {
        notifications::fanout::run(&ctx, &job)
            .await
            .map(|_| ())
            .map_err(task_error)
    })
    .await
}

async fn data_export_task(job: DataExportJob, ctx: Data<Context>) -> Result<(), BoxDynError> {
    let span = tracing::info_span!("job", queue = DataExportJob::QUEUE, export_id = %job.export_id);
    observe(DataExportJob::QUEUE, span, async {
        privacy::export::run(&ctx, &job).await.map_err(task_error)
    })
    .await
}

async fn account_deletion_task(
    job: AccountDeletionJob,
    ctx: Data<Context>,
) -> Result<(), BoxDynError> {
    let span =
        tracing::info_span!("job", queue = AccountDeletionJob::QUEUE, user_id = %job.user_id);
    observe(AccountDeletionJob::QUEUE, span, async {
        privacy::deletion::run(&ctx, &job).await.map_err(task_error)
    })
    .await
}

async fn checkout_expire_task(
    job: CheckoutExpireJob,
    ctx: Data<Context>,
) -> Result<(), BoxDynError> {
    let span = tracing::info_span!(
        "job",
        queue = CheckoutExpireJob::QUEUE,
        session_id = job.session_id
    );
    observe(CheckoutExpireJob::QUEUE, span, async {
        payments::expire_checkout_session(&ctx, &job)
            .await
            .map_err(task_error)
    })
    .await
}

async fn scheduled_task(
    tick: Tick,
    ctx: Data<Context>,
    job: Data<Scheduled>,
) -> Result<(), BoxDynError> {
    let job = *job;
    let tick = tick.get_timestamp();
    if !claim_tick(&ctx, job.name(), tick).await {
        return Ok(());
    }
    let span = tracing::info_span!("job", queue = job.name(), tick);
    observe(job.name(), span, async {
        match job {
            Scheduled::DailyMaintenance => daily_maintenance(&ctx).await,
            Scheduled::MuxReconcile => {
                mux::sync(
                    &ctx,
                    &MuxSyncJob {
                        action: MuxSyncAction::Reconcile,
                    },
                )
                .await
            }
            Scheduled::NotificationDigest => {
                let at = chrono::DateTime::from_timestamp(tick as i64, 0)
                    .unwrap_or_else(|| ctx.clock.now());
                notifications::digest::run_scheduled(&ctx, at)
                    .await
                    .map(|_| ())
            }
            Scheduled::LeaderboardRebuild => {
                mambo_core::community::leaderboard::rebuild(&ctx.db, ctx.clock.now())
                    .await
                    .map(|r| tracing::debug!(entries = r.entries, "leaderboards rebuilt"))
            }
        }
        .map_err(task_error)
    })
    .await
}

/// The daily scheduled job (00:05 UTC by default). Idempotent: several worker
/// processes may each run it. Relays any stuck outbox rows, deletes relayed
/// outbox rows older than a week ([`jobs::maintain_outbox`]), resets broken
/// streaks ([`streaks::reset_broken_streaks`]), deletes read notifications
/// older than 90 days and all older than 365 ([`notifications::prune`]) and
/// resolved content reports older than 365 days
/// ([`mambo_core::community::prune_reports`]), email verification links a
/// week past their expiry ([`mambo_core::verification::prune`]), checkout
/// holds older than 30 days ([`payments::prune_checkout_holds`]), and deletes
/// the archives of expired data exports ([`privacy::export::clean_expired`]).
pub async fn daily_maintenance(ctx: &Context) -> mambo_core::Result<()> {
    let outbox = jobs::maintain_outbox(ctx).await?;
    let streaks_reset = streaks::reset_broken_streaks(ctx).await?;
    let notifications_deleted = notifications::prune(&ctx.db, ctx.clock.now()).await?;
    let reports_deleted = mambo_core::community::prune_reports(&ctx.db, ctx.clock.now()).await?;
    let verification_links_deleted =
        mambo_core::verification::prune(&ctx.db, ctx.clock.now()).await?;
    let checkout_holds_deleted = payments::prune_checkout_holds(&ctx.db, ctx.clock.now()).await?;
    let (export_archives_deleted, export_rows_deleted) =
        privacy::export::clean_expired(ctx).await?;
    tracing::info!(
        relayed = outbox.relayed,
        deleted = outbox.deleted,
        streaks_reset,
        notifications_deleted,
        reports_deleted,
        verification_links_deleted,
        checkout_holds_deleted,
        export_archives_deleted,
        export_rows_deleted,
        "daily maintenance done"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------

/// How often the queue depth gauges are refreshed.
const DEPTH_SAMPLE_INTERVAL: Duration = Duration::from_secs(10);

/// Refreshes the queue depth gauges until the stop flag is set: jobs waiting in
/// Redis (`{queue}:active` plus scheduled retries) and in the outbox.
async fn sample_queue_depths(ctx: Context, stop: watch::Receiver<bool>) {
    loop {
        if let Err(e) = record_queue_depths(&ctx).await {
            tracing::debug!(error = %e, "sampling queue depths failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(DEPTH_SAMPLE_INTERVAL) => {}
            _ = stopped(stop.clone()) => return,
        }
    }
}

/// Sets `worker_queue_depth`, `job_outbox_pending` and `worker_jobs_kept`
/// (finished jobs kept in Redis, by `state`: `done` or `failed`) for every queue.
pub async fn record_queue_depths(ctx: &Context) -> anyhow::Result<()> {
    let outbox: Vec<(String, i64)> = sqlx::query_as(
        "SELECT queue, count(*) FROM job_outbox WHERE relayed_at IS NULL GROUP BY queue",
    )
    .fetch_all(&ctx.db)
    .await?;
    let mut pipe = redis::pipe();
    for queue in jobs::QUEUES {
        let config = jobs::redis_config(ctx, queue);
        pipe.llen(config.active_jobs_list())
            .zcard(config.scheduled_jobs_set());
    }
    let mut conn = ctx.redis.conn();
    let lens: Vec<i64> = tokio::time::timeout(Duration::from_secs(5), pipe.query_async(&mut conn))
        .await
        .map_err(|_| anyhow::anyhow!("Redis did not answer"))??;
    for (i, queue) in jobs::QUEUES.iter().enumerate() {
        let depth =
            lens.get(2 * i).copied().unwrap_or(0) + lens.get(2 * i + 1).copied().unwrap_or(0);
        ::metrics::gauge!(metrics::QUEUE_DEPTH, "queue" => *queue).set(depth as f64);
        let waiting = outbox
            .iter()
            .find(|(q, _)| q == queue)
            .map(|(_, n)| *n)
            .unwrap_or(0);
        ::metrics::gauge!(metrics::OUTBOX_PENDING, "queue" => *queue).set(waiting as f64);
    }
    for (queue, done, failed) in kept_jobs(ctx).await? {
        ::metrics::gauge!(metrics::JOBS_KEPT, "queue" => queue, "state" => "done").set(done as f64);
        ::metrics::gauge!(metrics::JOBS_KEPT, "queue" => queue, "state" => "failed")
            .set(failed as f64);
    }
    metrics::record_pool(&ctx.db);
    Ok(())
}

/// Serves `GET /metrics` (Prometheus text) and `GET /health` on `0.0.0.0:port`
/// until `shutdown` (the worker's `WORKER_METRICS_PORT`).
pub async fn serve_metrics(
    port: u16,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use poem::listener::TcpListener;
    use poem::{Route, get, handler};

    #[handler]
    fn metrics_endpoint() -> poem::Response {
        poem::Response::builder()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(metrics::render())
    }
    #[handler]
    fn health() -> &'static str {
        "ok"
    }

    metrics::install();
    let app = Route::new()
        .at("/metrics", get(metrics_endpoint))
        .at("/health", get(health));
    tracing::info!(port, "worker metrics on /metrics");
    poem::Server::new(TcpListener::bind(("0.0.0.0", port)))
        .run_with_graceful_shutdown(app, shutdown, Some(Duration::from_secs(2)))
        .await
}
