//! Prometheus metrics for the API and the worker (the `metrics` facade with the
//! Prometheus exporter, without its HTTP listener: each process serves
//! [`render`] itself).
//!
//! Labels are route templates, methods, statuses and queue names only: never a
//! raw path, an id, an email or anything else that belongs to a user.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

pub const HTTP_REQUESTS: &str = "http_requests_total";
pub const HTTP_DURATION: &str = "http_request_duration_seconds";
pub const DB_POOL_CONNECTIONS: &str = "db_pool_connections";
pub const DB_POOL_IDLE: &str = "db_pool_idle_connections";
pub const DB_POOL_MAX: &str = "db_pool_max_connections";
pub const JOBS_PROCESSED: &str = "worker_jobs_processed_total";
pub const JOBS_FAILED: &str = "worker_jobs_failed_total";
pub const JOBS_RETRIED: &str = "worker_jobs_retried_total";
pub const JOB_DURATION: &str = "worker_job_duration_seconds";
pub const QUEUE_DEPTH: &str = "worker_queue_depth";
pub const JOBS_KEPT: &str = "worker_jobs_kept";
pub const OUTBOX_PENDING: &str = "job_outbox_pending";

/// Seconds: 5 ms to 30 s.
const HTTP_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Seconds: 10 ms to 5 min.
const JOB_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls are no-ops)
/// and returns its handle. `None` when another recorder was installed first.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), HTTP_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(JOB_DURATION.into()), JOB_BUCKETS)
                });
            let builder = match builder {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: bad histogram buckets");
                    return None;
                }
            };
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => {
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: a recorder is already installed");
                    None
                }
            }
        })
        .as_ref()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests by route template, method and status"
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "HTTP request latency by route template, method and status"
    );
    describe_gauge!(
        DB_POOL_CONNECTIONS,
        "Open PostgreSQL connections in the pool"
    );
    describe_gauge!(DB_POOL_IDLE, "Idle PostgreSQL connections in the pool");
    describe_gauge!(DB_POOL_MAX, "Largest size of the PostgreSQL pool");
    describe_counter!(JOBS_PROCESSED, "Jobs that completed, by queue");
    describe_counter!(
        JOBS_FAILED,
        "Jobs that failed for good (not retried), by queue"
    );
    describe_counter!(
        JOBS_RETRIED,
        "Job runs that failed and will be retried, by queue"
    );
    describe_histogram!(JOB_DURATION, Unit::Seconds, "Job run time by queue");
    describe_gauge!(QUEUE_DEPTH, "Jobs waiting in Redis, by queue");
    describe_gauge!(
        JOBS_KEPT,
        "Finished jobs kept in Redis until their retention ends, by queue and state (done, failed)"
    );
    describe_gauge!(
        OUTBOX_PENDING,
        "Jobs waiting in the outbox for the relay, by queue"
    );
}

/// The metrics in Prometheus' text format (empty when no recorder is ours).
pub fn render() -> String {
    match install() {
        Some(h) => {
            h.run_upkeep();
            h.render()
        }
        None => String::new(),
    }
}

/// Records one HTTP request. `route` must be a template (`/api/x/{id}`), never
/// the raw path.
pub fn record_request(route: &str, method: &str, status: u16, elapsed: Duration) {
    let labels = [
        ("route", route.to_string()),
        ("method", method.to_string()),
        ("status", status.to_string()),
    ];
    metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
    metrics::histogram!(HTTP_DURATION, &labels).record(elapsed.as_secs_f64());
}

/// Sets the pool gauges from `pool`'s current state.
pub fn record_pool(pool: &sqlx::PgPool) {
    metrics::gauge!(DB_POOL_CONNECTIONS).set(pool.size() as f64);
    metrics::gauge!(DB_POOL_IDLE).set(pool.num_idle() as f64);
    metrics::gauge!(DB_POOL_MAX).set(pool.options().get_max_connections() as f64);
}

/// How a job run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    Succeeded,
    /// Failed; it will run again.
    Retried,
    /// Failed for good.
    Failed,
}

/// Records one run of a job of `queue`.
pub fn record_job(queue: &'static str, outcome: JobOutcome, elapsed: Duration) {
    let name = match outcome {
        JobOutcome::Succeeded => JOBS_PROCESSED,
        JobOutcome::Retried => JOBS_RETRIED,
        JobOutcome::Failed => JOBS_FAILED,
    };
    metrics::counter!(name, "queue" => queue).increment(1);
    metrics::histogram!(JOB_DURATION, "queue" => queue).record(elapsed.as_secs_f64());
}

/// Turns a poem route pattern (`/api/x/:id`, `/api/x/*rest`) into the OpenAPI
/// form (`/api/x/{id}`).
pub fn route_template(pattern: &str) -> String {
    pattern
        .split('/')
        .map(
            |seg| match seg.strip_prefix(':').or_else(|| seg.strip_prefix('*')) {
                Some(name) if !name.is_empty() => {
                    let name = name.split('<').next().unwrap_or(name);
                    format!("{{{name}}}")
                }
                _ => seg.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_templates() {
        assert_eq!(
            route_template("/api/courses/lessons/:lesson_id"),
            "/api/courses/lessons/{lesson_id}"
        );
        assert_eq!(route_template("/health"), "/health");
        assert_eq!(route_template("/api/badges/"), "/api/badges/");
        assert_eq!(route_template("/docs/*path"), "/docs/{path}");
    }
}
