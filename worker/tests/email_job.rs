//! End to end: an email job goes through the outbox, the relay, Redis and the
//! worker to a fake Resend (wiremock), exactly once; and a job enqueued while
//! Redis is down waits in the outbox until Redis is back.
//!
//! Needs PostgreSQL on 127.0.0.1:5432 (user `postgres`) and Redis on 127.0.0.1:6379.

use futures::FutureExt;
use mambo_core::jobs::{self, EmailJob};
use mambo_core::{Config, Context};
use serde_json::json;
use sqlx::{Connection, PgConnection, PgPool};
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// A fresh database and Redis namespace, removed again whatever the test does.
async fn with_env<F, Fut>(test: F)
where
    F: FnOnce(PgPool, String, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();

    let db_name = format!("mambo_jobtest_{}", Uuid::new_v4().simple());
    let namespace = format!("test-{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(ADMIN_URL).await.expect("PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE \"{db_name}\""
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let db_url = format!("postgres://postgres@127.0.0.1:5432/{db_name}");
    let pool = mambo_core::db::connect(&db_url, 10).await.unwrap();
    mambo_core::db::MIGRATOR.run(&pool).await.unwrap();

    let result = AssertUnwindSafe(test(pool.clone(), db_url, namespace.clone()))
        .catch_unwind()
        .await;

    pool.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{db_name}\" WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    clean_redis(&namespace).await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

async fn clean_redis(namespace: &str) {
    let client = redis::Client::open(REDIS_URL).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{namespace}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    for key in &keys {
        let _: () = redis::cmd("DEL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        // apalis registers every workers set in one global sorted set.
        let _: () = redis::cmd("ZREM")
            .arg("core:apalis:queues:list")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

fn context(pool: PgPool, db_url: &str, redis_url: &str, namespace: &str, resend: &str) -> Context {
    let vars: HashMap<String, String> = [
        ("DATABASE_URL", db_url),
        ("REDIS_URL", redis_url),
        ("REDIS_NAMESPACE", namespace),
        ("RESEND_API_KEY", "re_test"),
        ("RESEND_BASE_URL", resend),
        ("FROM_EMAIL", "The Mambo Guild <hello@example.com>"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Context::new(pool, Config::from_map(&vars).unwrap()).unwrap()
}

fn email_job(key: &str) -> EmailJob {
    EmailJob {
        idempotency_key: key.to_string(),
        template: "password_reset".into(),
        to: vec!["dancer@example.com".into()],
        subject: "Reset your password".into(),
        html: "<p>Click <a href=\"https://example.com/r\">here</a></p>".into(),
        text: "Click https://example.com/r".into(),
        headers: Default::default(),
    }
}

async fn enqueue_committed(ctx: &Context, job: &EmailJob) -> Uuid {
    let mut tx = ctx.db.begin().await.unwrap();
    let id = jobs::enqueue(&mut tx, job).await.unwrap();
    tx.commit().await.unwrap();
    jobs::wake_relay(ctx);
    id
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// apalis-redis' status of a task (`Pending`, `Running`, `Done`, ...).
async fn task_status(ctx: &Context, queue: &str, task_id: Uuid) -> Option<String> {
    let mut conn = ctx.redis.conn();
    redis::cmd("HGET")
        .arg(format!("{}:meta:{task_id}", jobs::queue_name(ctx, queue)))
        .arg("status")
        .query_async(&mut conn)
        .await
        .unwrap()
}

async fn email_requests(server: &MockServer) -> Vec<wiremock::Request> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == "/emails")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_email_job_is_sent_exactly_once() {
    with_env(|pool, db_url, namespace| async move {
        let resend = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/emails"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "em_123"})))
            .mount(&resend)
            .await;
        let ctx = context(pool.clone(), &db_url, REDIS_URL, &namespace, &resend.uri());

        let job = email_job("password-reset:42");
        let first = enqueue_committed(&ctx, &job).await;

        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let worker = tokio::spawn(mambo_worker::run(ctx.clone(), async {
            let _ = stop_rx.await;
        }));

        wait_until(
            "the email to reach Resend",
            Duration::from_secs(15),
            || async { !email_requests(&resend).await.is_empty() },
        )
        .await;
        wait_until(
            "the delivery to be recorded",
            Duration::from_secs(5),
            || async {
                sqlx::query_scalar::<_, String>(
                    "SELECT status FROM email_deliveries WHERE idempotency_key = $1",
                )
                .bind(&job.idempotency_key)
                .fetch_optional(&pool)
                .await
                .unwrap()
                .as_deref()
                    == Some("sent")
            },
        )
        .await;

        let requests = email_requests(&resend).await;
        assert_eq!(requests.len(), 1, "exactly one send");
        let req = &requests[0];
        assert_eq!(req.method.as_str(), "POST");
        assert_eq!(
            req.headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok()),
            Some("password-reset:42")
        );
        assert_eq!(
            req.headers
                .get("authorization")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer re_test")
        );
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["from"], "The Mambo Guild <hello@example.com>");
        assert_eq!(body["to"], json!(["dancer@example.com"]));
        assert_eq!(body["subject"], job.subject);
        assert_eq!(body["html"], job.html);
        assert_eq!(body["text"], job.text);

        // The outbox row was relayed, under its own id as the apalis task id.
        let relayed: bool =
            sqlx::query_scalar("SELECT relayed_at IS NOT NULL FROM job_outbox WHERE id = $1")
                .bind(first)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert!(relayed);
        wait_until(
            "the first task to be acknowledged",
            Duration::from_secs(5),
            || async { task_status(&ctx, "email", first).await.as_deref() == Some("Done") },
        )
        .await;

        // The same logical email enqueued again: the job runs, nothing is sent.
        let second = enqueue_committed(&ctx, &job).await;
        wait_until(
            "the second task to run",
            Duration::from_secs(15),
            || async { task_status(&ctx, "email", second).await.as_deref() == Some("Done") },
        )
        .await;
        assert_eq!(email_requests(&resend).await.len(), 1, "no second send");

        // A relay that pushes a row again (as after a crash before its commit)
        // does not run the job again: apalis keeps the first task with that id.
        sqlx::query("UPDATE job_outbox SET relayed_at = NULL WHERE id = $1")
            .bind(first)
            .execute(&pool)
            .await
            .unwrap();
        jobs::relay_once(&ctx).await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(email_requests(&resend).await.len(), 1, "re-push ignored");

        let (status, attempts, provider_id): (String, i32, Option<String>) = sqlx::query_as(
            "SELECT status, attempts, provider_id FROM email_deliveries
             WHERE idempotency_key = $1",
        )
        .bind(&job.idempotency_key)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(status, "sent");
        assert_eq!(attempts, 1);
        assert_eq!(provider_id.as_deref(), Some("em_123"));

        // Graceful shutdown.
        stop_tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(40), worker)
            .await
            .expect("the worker stops after the shutdown signal")
            .unwrap()
            .unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_enqueued_while_redis_is_down_waits_in_the_outbox() {
    with_env(|pool, db_url, namespace| async move {
        let down = context(
            pool.clone(),
            &db_url,
            "redis://127.0.0.1:1",
            &namespace,
            "http://127.0.0.1:9",
        );
        let job = email_job("welcome:7");
        let id = enqueue_committed(&down, &job).await;

        let err = jobs::relay_once(&down).await.expect_err("Redis is down");
        assert!(err.to_string().contains("Redis") || err.to_string().contains("queue"));
        let (relayed, attempts, last_error): (bool, i32, Option<String>) = sqlx::query_as(
            "SELECT relayed_at IS NOT NULL, attempts, last_error FROM job_outbox WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(!relayed, "the job stays in the outbox");
        assert_eq!(attempts, 1);
        assert!(last_error.is_some());

        // Redis is back: the next relay pass moves the job.
        let up = context(
            pool.clone(),
            &db_url,
            REDIS_URL,
            &namespace,
            "http://127.0.0.1:9",
        );
        assert_eq!(jobs::relay_once(&up).await.unwrap(), 1);
        let (relayed, last_error): (bool, Option<String>) = sqlx::query_as(
            "SELECT relayed_at IS NOT NULL, last_error FROM job_outbox WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(relayed);
        assert_eq!(last_error, None);
        assert_eq!(
            task_status(&up, "email", id).await.as_deref(),
            Some("Pending"),
            "the task waits in Redis under the outbox id"
        );
        let mut conn = up.redis.conn();
        let payload: String = redis::cmd("HGET")
            .arg(format!("{}:data", jobs::queue_name(&up, "email")))
            .arg(id.to_string())
            .query_async(&mut conn)
            .await
            .unwrap();
        let payload: EmailJob = serde_json::from_str(&payload).unwrap();
        assert_eq!(payload, job);
        assert_eq!(jobs::relay_once(&up).await.unwrap(), 0, "nothing left");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resend_client_errors_are_not_retried_but_server_errors_are() {
    with_env(|pool, db_url, namespace| async move {
        let resend = MockServer::start().await;
        // A 422 for one address: final.
        Mock::given(method("POST"))
            .and(path("/emails"))
            .and(wiremock::matchers::body_partial_json(json!({"to": ["bad@example.com"]})))
            .respond_with(ResponseTemplate::new(422).set_body_json(json!({
                "statusCode": 422, "name": "validation_error", "message": "Invalid `to` field."
            })))
            .mount(&resend)
            .await;
        // A 500 once for another, then success: retried.
        Mock::given(method("POST"))
            .and(path("/emails"))
            .and(wiremock::matchers::body_partial_json(json!({"to": ["flaky@example.com"]})))
            .respond_with(ResponseTemplate::new(500).set_body_json(json!({
                "statusCode": 500, "name": "application_error", "message": "oops"
            })))
            .up_to_n_times(1)
            .mount(&resend)
            .await;
        Mock::given(method("POST"))
            .and(path("/emails"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "em_ok"})))
            .mount(&resend)
            .await;
        let ctx = context(pool.clone(), &db_url, REDIS_URL, &namespace, &resend.uri());

        let mut bad = email_job("welcome:bad");
        bad.to = vec!["bad@example.com".into()];
        let mut flaky = email_job("welcome:flaky");
        flaky.to = vec!["flaky@example.com".into()];
        let bad_id = enqueue_committed(&ctx, &bad).await;
        enqueue_committed(&ctx, &flaky).await;

        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let worker = tokio::spawn(mambo_worker::run(ctx.clone(), async {
            let _ = stop_rx.await;
        }));

        let status_of = |key: &'static str| {
            let pool = pool.clone();
            async move {
                sqlx::query_as::<_, (String, i32, Option<String>)>(
                    "SELECT status, attempts, error FROM email_deliveries WHERE idempotency_key = $1",
                )
                .bind(key)
                .fetch_optional(&pool)
                .await
                .unwrap()
            }
        };
        wait_until("the flaky email to be sent", Duration::from_secs(20), || async {
            status_of("welcome:flaky").await.is_some_and(|(s, _, _)| s == "sent")
        })
        .await;
        let (_, attempts, _) = status_of("welcome:flaky").await.unwrap();
        assert_eq!(attempts, 2, "one failure, one success");

        wait_until("the bad task to be killed", Duration::from_secs(10), || async {
            task_status(&ctx, "email", bad_id).await.as_deref() == Some("Killed")
        })
        .await;
        let (status, attempts, error) = status_of("welcome:bad").await.unwrap();
        assert_eq!(status, "failed");
        assert_eq!(attempts, 1, "a 422 is not retried");
        assert!(error.unwrap().contains("validation_error"));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let to_bad = email_requests(&resend)
            .await
            .into_iter()
            .filter(|r| String::from_utf8_lossy(&r.body).contains("bad@example.com"))
            .count();
        assert_eq!(to_bad, 1);

        stop_tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(40), worker)
            .await
            .expect("the worker stops after the shutdown signal")
            .unwrap()
            .unwrap();
    })
    .await;
}
