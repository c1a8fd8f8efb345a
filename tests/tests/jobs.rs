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
