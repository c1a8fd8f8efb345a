//! Jobs end to end: an email enqueued by an API request goes through the outbox,
//! Redis and the worker to (a fake) Resend exactly once; with Redis down at
//! commit time the job waits in the outbox and is delivered later.

use mambo_tests::{Options, TestApp, eventually, json};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn fake_resend() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/emails"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "em_1"})))
        .mount(&server)
        .await;
    server
}

async fn sent_requests(server: &MockServer) -> Vec<wiremock::Request> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == "/emails")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_reset_email_is_sent_once_through_the_worker() {
    let resend = fake_resend().await;
    let app = TestApp::spawn_with(Options {
        worker: true,
        vars: vec![
            ("RESEND_API_KEY".into(), "re_test".into()),
            ("RESEND_BASE_URL".into(), resend.uri()),
        ],
    })
    .await;
    let user = app.student().await;
    let (s, b) = json(
        app.post("/api/auth/forgot-password")
            .json(&json!({"email": user.email}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["message"],
        "If the email exists, a password reset link has been sent."
    );
    let got = eventually(20, || async {
        let r = sent_requests(&resend).await;
        (!r.is_empty()).then_some(r)
    })
    .await
    .expect("the worker sent the email");
    // Give a duplicate delivery a chance to show up before counting.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let got = if got.len() == 1 {
        sent_requests(&resend).await
    } else {
        got
    };
    assert_eq!(got.len(), 1, "exactly one send");
    let req = &got[0];
    assert!(
        req.headers
            .get("idempotency-key")
            .map(|v| !v.is_empty())
            .unwrap_or(false),
        "an idempotency key is sent"
    );
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body["to"], json!([user.email]));
    assert_eq!(body["subject"], "Reset Your Password - The Mambo Guild");
    assert!(
        body["html"]
            .as_str()
            .unwrap()
            .contains("/reset-password?token=")
    );
    // The outbox row is marked relayed; nothing is pending.
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM job_outbox WHERE relayed_at IS NULL")
            .fetch_one(app.db())
            .await
            .unwrap();
    assert_eq!(pending, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_at_commit_the_job_waits_in_the_outbox_and_is_delivered_later() {
    let resend = fake_resend().await;
    let vars = vec![
        ("RESEND_API_KEY".to_string(), "re_test".to_string()),
        ("RESEND_BASE_URL".to_string(), resend.uri()),
    ];
    // The API's Redis is unreachable: the request must still succeed.
    let mut down = vars.clone();
    down.push(("REDIS_URL".into(), "redis://127.0.0.1:1".into()));
    let app = TestApp::spawn_with(Options {
        worker: false,
        vars: down,
    })
    .await;
    let user = app.student().await;
    let (s, _) = json(
        app.post("/api/auth/forgot-password")
            .json(&json!({"email": user.email}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM job_outbox WHERE relayed_at IS NULL AND queue = 'email'",
    )
    .fetch_one(app.db())
    .await
    .unwrap();
    assert_eq!(pending, 1, "the job is kept in the outbox");
    assert!(sent_requests(&resend).await.is_empty());

    // Redis "comes back": a worker with a working Redis, same namespace and database.
    let mut cfg_vars = mambo_tests::test_vars(&app.db.url, &app.namespace);
    for (k, v) in &vars {
        cfg_vars.insert(k.clone(), v.clone());
    }
    let config = mambo_core::Config::from_map(&cfg_vars).unwrap();
    let ctx = mambo_core::Context::new(app.db().clone(), config).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(mambo_worker::run(ctx, async move {
        let _ = rx.await;
    }));
    let got = eventually(25, || async {
        let r = sent_requests(&resend).await;
        (!r.is_empty()).then_some(r)
    })
    .await
    .expect("delivered after Redis returned");
    assert_eq!(got.len(), 1);
    let _ = tx.send(());
    let _ = tokio::time::timeout(std::time::Duration::from_secs(35), worker).await;
    app.stop().await;
}

/// Every key of the test's Redis namespace, but the scheduled jobs' claims
/// (`cron:*`, which come and go with the clock).
async fn namespace_keys(app: &TestApp) -> std::collections::BTreeSet<String> {
    let mut conn = app.ctx.redis.conn();
    let mut keys = std::collections::BTreeSet::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{}:*", app.namespace))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        keys.extend(
            batch
                .into_iter()
                .filter(|k| !k.starts_with(&format!("{}:cron:", app.namespace))),
        );
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

/// Issue 15: finished jobs do not stay in Redis forever. Completed jobs are
/// kept a day, failed ones a week (the defaults), counted per queue; one prune
/// past the day removes the completed ones and keeps the failed one; one past
/// the week leaves the namespace with exactly the keys it had before the jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_are_pruned_after_their_retention() {
    use mambo_core::jobs::{self, BadgeCheckJob, EmailJob, Job};
    let app = TestApp::spawn().await;
    let ctx = &app.ctx;
    assert_eq!(ctx.config.job_retention_done_secs, 86_400);
    assert_eq!(ctx.config.job_retention_failed_secs, 7 * 86_400);

    // The baseline: once the worker is up on the queues used here and the
    // namespace is still for a second.
    let mut conn = ctx.redis.conn();
    for queue in [BadgeCheckJob::QUEUE, EmailJob::QUEUE] {
        let key = jobs::redis_config(ctx, queue).workers_set();
        let registered = eventually(20, || {
            let mut conn = conn.clone();
            let key = key.clone();
            async move {
                let n: u64 = redis::cmd("ZCARD")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .ok()?;
                (n > 0).then_some(())
            }
        })
        .await;
        assert!(registered.is_some(), "the worker consumes {queue}");
    }
    let mut before = namespace_keys(&app).await;
    for _ in 0..20 {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let now = namespace_keys(&app).await;
        if now == before {
            break;
        }
        before = now;
    }

    // N jobs that complete (nobody to award) and one that fails for good (an
    // email without a recipient is refused, not retried).
    const N: usize = 6;
    let checks: Vec<BadgeCheckJob> = (0..N)
        .map(|_| BadgeCheckJob {
            user_id: uuid::Uuid::new_v4(),
            stat: "claps_received".into(),
        })
        .collect();
    let bad_email = EmailJob {
        idempotency_key: format!("retention-test:{}", uuid::Uuid::new_v4()),
        template: "welcome".into(),
        to: vec![],
        subject: "Nobody".into(),
        html: "<p>x</p>".into(),
        text: "x".into(),
        headers: Default::default(),
    };
    let mut tx = ctx.db.begin().await.unwrap();
    jobs::enqueue_many(&mut tx, &checks).await.unwrap();
    let failed_id = jobs::enqueue(&mut tx, &bad_email).await.unwrap();
    tx.commit().await.unwrap();
    jobs::wake_relay(ctx);

    let kept = |queue: &'static str| async move {
        mambo_worker::kept_jobs(ctx)
            .await
            .unwrap()
            .into_iter()
            .find(|(q, _, _)| *q == queue)
            .map(|(_, done, failed)| (done, failed))
            .unwrap()
    };
    let finished = eventually(30, || async {
        let badge = kept(BadgeCheckJob::QUEUE).await;
        let email = kept(EmailJob::QUEUE).await;
        (badge == (N as u64, 0) && email == (0, 1)).then_some(())
    })
    .await;
    assert!(
        finished.is_some(),
        "all jobs finished: badge_check {:?}, email {:?}",
        kept(BadgeCheckJob::QUEUE).await,
        kept(EmailJob::QUEUE).await
    );
    let with_jobs = namespace_keys(&app).await;
    assert!(
        with_jobs.len() > before.len(),
        "finished jobs are kept for now"
    );
    // The worker's metrics count them.
    mambo_worker::record_queue_depths(ctx).await.unwrap();
    let text = mambo_core::metrics::render();
    assert!(
        text.contains("worker_jobs_kept{queue=\"badge_check\",state=\"done\"}"),
        "{text}"
    );
    assert!(
        text.contains("worker_jobs_kept{queue=\"email\",state=\"failed\"}"),
        "{text}"
    );

    // A prune within the day keeps everything.
    assert_eq!(mambo_worker::prune_finished_jobs(ctx).await.unwrap(), 0);
    assert_eq!(kept(BadgeCheckJob::QUEUE).await, (N as u64, 0));
    assert_eq!(kept(EmailJob::QUEUE).await, (0, 1));

    // Two days later: the completed jobs go, the failed one (younger than a
    // week) stays with its record and payload.
    ctx.clock.advance(chrono::Duration::days(2));
    assert_eq!(
        mambo_worker::prune_finished_jobs(ctx).await.unwrap(),
        N as u64
    );
    assert_eq!(kept(BadgeCheckJob::QUEUE).await, (0, 0));
    assert_eq!(kept(EmailJob::QUEUE).await, (0, 1));
    let email_queue = jobs::redis_config(ctx, EmailJob::QUEUE);
    let status: Option<String> = redis::cmd("HGET")
        .arg(format!("{}:{failed_id}", email_queue.job_meta_hash()))
        .arg("status")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(status.as_deref(), Some("Killed"));
    let payload: Option<String> = redis::cmd("HGET")
        .arg(email_queue.job_data_hash())
        .arg(failed_id.to_string())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(payload.is_some(), "the failed job's payload is kept");

    // Eight days later the failed job goes too: the namespace is back to
    // what it was before the jobs.
    ctx.clock.advance(chrono::Duration::days(6));
    assert_eq!(mambo_worker::prune_finished_jobs(ctx).await.unwrap(), 1);
    assert_eq!(kept(EmailJob::QUEUE).await, (0, 0));
    let after = namespace_keys(&app).await;
    println!(
        "namespace keys: {} before the jobs, {} with {N} done and 1 failed job kept, {} after the prunes",
        before.len(),
        with_jobs.len(),
        after.len()
    );
    assert_eq!(
        after,
        before,
        "left behind: {:?}; gone: {:?}",
        after.difference(&before).collect::<Vec<_>>(),
        before.difference(&after).collect::<Vec<_>>()
    );
    app.stop().await;
}
