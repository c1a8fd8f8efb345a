//! Operations: broadcasts (resumable, once per recipient, unsubscribes,
//! failures recorded per recipient), `/metrics` on the API and the worker, and
//! the committed OpenAPI document.

use mambo_core::broadcast::{self, Audience, BroadcastRequest, Counts};
use mambo_core::jobs::BroadcastJob;
use mambo_core::{Config, Context};
use mambo_tests::{Options, TestApp, eventually, json};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const TEMPLATE: &str = "{% block subject %}The doors are open, {{ first_name }}{% endblock %}\n\
{% block html %}<p>Hi @{{ username }}, {{ launch_date }} is the day.</p>{% endblock %}\n\
{% block text %}Hi @{{ username }}, {{ launch_date }} is the day.{% endblock %}\n";

fn launch_vars() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("launch_date".into(), json!("Monday"));
    m
}

fn request(source: &str, vars: Map<String, Value>) -> BroadcastRequest {
    BroadcastRequest {
        name: "launch.html".into(),
        source: source.into(),
        audience: Audience::Waitlist,
        vars,
    }
}

// ---------------------------------------------------------------------------
// A fake Resend batch endpoint
// ---------------------------------------------------------------------------

#[derive(Default)]
struct FakeState {
    /// Batch calls received (including replays of an idempotency key).
    calls: usize,
    /// Addresses delivered to: once per distinct idempotency key, as Resend does.
    delivered: Vec<String>,
    /// Answers by idempotency key (a replay gets the first answer, delivers nothing).
    answers: HashMap<String, Value>,
    /// Calls without an idempotency key.
    keyless: usize,
    /// Calls that repeated an idempotency key (answered from the cache).
    replays: usize,
}

#[derive(Clone)]
struct FakeResend {
    state: Arc<Mutex<FakeState>>,
    delay: Duration,
    /// Answer with this status and error instead (after `fail_after` good calls).
    fail: Option<(u16, &'static str)>,
}

impl FakeResend {
    fn new(delay: Duration) -> Self {
        Self {
            state: Arc::default(),
            delay,
            fail: None,
        }
    }

    async fn mount(&self) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/emails/batch"))
            .respond_with(self.clone())
            .mount(&server)
            .await;
        server
    }

    fn delivered(&self) -> Vec<String> {
        self.state.lock().unwrap().delivered.clone()
    }

    fn calls(&self) -> usize {
        self.state.lock().unwrap().calls
    }
}

impl Respond for FakeResend {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut st = self.state.lock().unwrap();
        st.calls += 1;
        if let Some((status, name)) = self.fail {
            return ResponseTemplate::new(status).set_body_json(
                json!({"statusCode": status, "name": name, "message": "refused by the fake"}),
            );
        }
        let key = req
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let Some(key) = key else {
            st.keyless += 1;
            return ResponseTemplate::new(400);
        };
        if let Some(answer) = st.answers.get(&key).cloned() {
            st.replays += 1;
            return ResponseTemplate::new(200)
                .set_body_json(answer)
                .set_delay(self.delay);
        }
        let emails: Vec<Value> = serde_json::from_slice(&req.body).expect("a JSON array");
        assert!(emails.len() <= 100, "a batch of {} emails", emails.len());
        let mut data = Vec::new();
        let mut errors = Vec::new();
        for (i, e) in emails.iter().enumerate() {
            let to = e["to"][0].as_str().unwrap_or_default().to_string();
            assert!(e["subject"].as_str().is_some_and(|s| !s.is_empty()));
            assert!(e["html"].as_str().is_some_and(|s| s.contains("<p>Hi @")));
            assert!(
                e["text"]
                    .as_str()
                    .is_some_and(|s| s.contains("Monday is the day"))
            );
            if to.starts_with("bounce") {
                errors.push(json!({"index": i, "message": "Invalid `to` field"}));
            } else {
                st.delivered.push(to);
                data.push(json!({"id": Uuid::new_v4().to_string()}));
            }
        }
        let answer = json!({"data": data, "errors": errors});
        st.answers.insert(key, answer.clone());
        // Delivered at once, answered after the delay: killing the worker in
        // between is "Resend sent it, we did not record it".
        ResponseTemplate::new(200)
            .set_body_json(answer)
            .set_delay(self.delay)
    }
}

async fn spawn_app(resend_url: &str) -> TestApp {
    TestApp::spawn_with(Options {
        worker: false,
        vars: vec![
            ("RESEND_API_KEY".into(), "re_test".into()),
            ("RESEND_BASE_URL".into(), resend_url.into()),
            (
                "FROM_EMAIL".into(),
                "The Mambo Guild <hello@example.com>".into(),
            ),
        ],
    })
    .await
}

/// Adds `n` waitlist users (`{prefix}{i}@example.com`); every `unsub_every`-th
/// has unsubscribed. One statement.
async fn seed_waitlist(app: &TestApp, prefix: &str, n: i32, unsub_every: i32) {
    sqlx::query(
        "WITH u AS (
             INSERT INTO users (email, auth_provider, email_unsubscribed, created_at)
             SELECT $1 || g || '@example.com', 'waitlist', $3 > 0 AND g % $3 = 0,
                    now() + g * interval '1 millisecond'
             FROM generate_series(1, $2) g
             RETURNING id, email
         )
         INSERT INTO user_profiles (user_id, first_name, last_name, username, referral_code)
         SELECT id, 'Founder', 'Member', split_part(email, '@', 1), upper(substr(md5(email), 1, 8))
         FROM u",
    )
    .bind(prefix)
    .bind(n)
    .bind(unsub_every)
    .execute(app.db())
    .await
    .unwrap();
}

async fn subscribed_waitlist_emails(app: &TestApp) -> HashSet<String> {
    sqlx::query_scalar(
        "SELECT email FROM users WHERE auth_provider = 'waitlist' AND NOT email_unsubscribed",
    )
    .fetch_all(app.db())
    .await
    .unwrap()
    .into_iter()
    .collect()
}

/// A worker with its own pool, as a separate process would have.
async fn start_worker(
    config: &Config,
) -> (
    tokio::task::JoinHandle<()>,
    sqlx::PgPool,
    tokio::sync::oneshot::Sender<()>,
) {
    let pool = mambo_core::db::connect(config.database_url.expose(), 5)
        .await
        .unwrap();
    let ctx = Context::new(pool.clone(), config.clone()).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let _ = mambo_worker::run(ctx, async move {
            let _ = rx.await;
        })
        .await;
    });
    (handle, pool, tx)
}

async fn wait_for_counts<F: Fn(&Counts) -> bool>(
    ctx: &Context,
    id: Uuid,
    secs: u64,
    done: F,
) -> Counts {
    let start = std::time::Instant::now();
    loop {
        let c = broadcast::counts(ctx, id).await.unwrap();
        if done(&c) {
            return c;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out; counts {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------
// Broadcasts
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_survives_a_killed_worker_and_sends_each_recipient_once() {
    let fake = FakeResend::new(Duration::from_millis(300));
    let server = fake.mount().await;
    let app = spawn_app(&server.uri()).await;
    // 2400 waitlist users, 80 of them unsubscribed, plus students who are not in the audience.
    seed_waitlist(&app, "wl", 2400, 30).await;
    let student = app.student().await;
    let expected = subscribed_waitlist_emails(&app).await;
    assert_eq!(expected.len(), 2320);

    let plan = broadcast::prepare(&app.ctx, &request(TEMPLATE, launch_vars()), false)
        .await
        .unwrap();
    let id = plan.broadcast_id.unwrap();
    assert!(!plan.resumed);
    assert_eq!(plan.audience_size, 2400);
    assert_eq!(plan.unsubscribed, 80);
    assert_eq!(plan.new_recipients, 2320);
    assert_eq!(plan.batches_queued, 24);

    // A worker starts sending and is killed after a couple of batches.
    let (worker, pool, _stop) = start_worker(&app.ctx.config).await;
    let start = std::time::Instant::now();
    while fake.calls() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no batch was sent"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(150)).await; // mid-way through a call
    worker.abort();
    let _ = worker.await;
    pool.close().await; // the dead process's connections go away
    let midway = broadcast::counts(&app.ctx, id).await.unwrap();
    assert!(midway.pending > 0, "interrupted too late: {midway:?}");
    assert!(midway.sent < 2320);

    // The command is run again: it resumes the same broadcast and re-queues
    // what is pending; a new worker finishes.
    let plan = broadcast::prepare(&app.ctx, &request(TEMPLATE, launch_vars()), false)
        .await
        .unwrap();
    assert!(plan.resumed);
    assert_eq!(plan.broadcast_id, Some(id));
    assert_eq!(plan.new_recipients, 0);
    assert!(plan.batches_queued >= 1);
    let (worker, pool, stop) = start_worker(&app.ctx.config).await;
    let done = wait_for_counts(&app.ctx, id, 90, |c| c.pending == 0).await;
    assert_eq!(done.sent, 2320, "{done:?}");
    assert_eq!(done.failed, 0);

    // Every subscribed waitlist member got it exactly once; nobody else did.
    let delivered = fake.delivered();
    let unique: HashSet<String> = delivered.iter().cloned().collect();
    assert_eq!(delivered.len(), unique.len(), "someone got it twice");
    assert_eq!(unique, expected);
    assert!(!unique.contains(&student.email));
    assert_eq!(fake.state.lock().unwrap().keyless, 0);
    // The unrecorded batch was sent again with the same idempotency key, so
    // Resend answered from its cache instead of sending twice.
    assert!(fake.state.lock().unwrap().replays >= 1);

    // Each recipient row is recorded with the address and Resend's id.
    let (rows, with_ids): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(provider_id) FROM broadcast_recipients
         WHERE broadcast_id = $1 AND status = 'sent' AND email IS NOT NULL AND sent_at IS NOT NULL",
    )
    .bind(id)
    .fetch_one(app.db())
    .await
    .unwrap();
    assert_eq!((rows, with_ids), (2320, 2320));
    let unsubscribed_rows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM broadcast_recipients r JOIN users u ON u.id = r.user_id
         WHERE r.broadcast_id = $1 AND u.email_unsubscribed",
    )
    .bind(id)
    .fetch_one(app.db())
    .await
    .unwrap();
    assert_eq!(unsubscribed_rows, 0);

    // Running it once more sends nothing; new waitlist members get it alone.
    let calls_before = fake.calls();
    seed_waitlist(&app, "late", 3, 0).await;
    let plan = broadcast::prepare(&app.ctx, &request(TEMPLATE, launch_vars()), false)
        .await
        .unwrap();
    assert_eq!(plan.new_recipients, 3);
    assert_eq!(plan.batches_queued, 1);
    let done = wait_for_counts(&app.ctx, id, 60, |c| c.pending == 0).await;
    assert_eq!(done.sent, 2323);
    assert_eq!(fake.calls(), calls_before + 1);
    let delivered = fake.delivered();
    assert_eq!(delivered.len(), 2323);
    assert_eq!(
        delivered.iter().filter(|e| e.starts_with("late")).count(),
        3
    );

    // The worker counted its jobs.
    let text = mambo_core::metrics::render();
    assert!(
        text.contains("worker_jobs_processed_total{queue=\"broadcast\"}"),
        "{text}"
    );
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(20), worker).await;
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_with_a_missing_variable_sends_nothing() {
    let fake = FakeResend::new(Duration::ZERO);
    let server = fake.mount().await;
    let app = spawn_app(&server.uri()).await;
    seed_waitlist(&app, "wl", 5, 0).await;

    // `launch_date` is not passed.
    let err = broadcast::prepare(&app.ctx, &request(TEMPLATE, Map::new()), false)
        .await
        .unwrap_err();
    assert_eq!(err.status(), 422);
    assert!(err.to_string().contains("launch_date"), "{err}");
    // A dry run fails the same way.
    assert!(
        broadcast::prepare(&app.ctx, &request(TEMPLATE, Map::new()), true)
            .await
            .is_err()
    );
    // A template without its text block too.
    let no_text = "{% block subject %}Hi{% endblock %}{% block html %}<p>x</p>{% endblock %}";
    let err = broadcast::prepare(&app.ctx, &request(no_text, Map::new()), false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("block text"), "{err}");

    let broadcasts: i64 = sqlx::query_scalar("SELECT count(*) FROM broadcasts")
        .fetch_one(app.db())
        .await
        .unwrap();
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM job_outbox WHERE queue = 'broadcast'")
        .fetch_one(app.db())
        .await
        .unwrap();
    assert_eq!((broadcasts, jobs), (0, 0));
    assert_eq!(fake.calls(), 0);

    // A dry run of a good template renders every email and records nothing.
    let plan = broadcast::prepare(&app.ctx, &request(TEMPLATE, launch_vars()), true)
        .await
        .unwrap();
    assert_eq!(plan.broadcast_id, None);
    assert_eq!(plan.new_recipients, 5);
    assert_eq!(plan.batches_queued, 1);
    let (_, sample) = plan.sample.unwrap();
    assert_eq!(sample.subject, "The doors are open, Founder");
    assert!(sample.text.contains("Hi @wl1, Monday is the day."));
    let broadcasts: i64 = sqlx::query_scalar("SELECT count(*) FROM broadcasts")
        .fetch_one(app.db())
        .await
        .unwrap();
    assert_eq!(broadcasts, 0);
}

/// Runs the broadcast's batch jobs by hand (no worker), as the worker would.
async fn run_batches(ctx: &Context, id: Uuid) -> Vec<Result<broadcast::BatchOutcome, String>> {
    let batches: Vec<i32> = sqlx::query_scalar(
        "SELECT DISTINCT batch FROM broadcast_recipients WHERE broadcast_id = $1 ORDER BY batch",
    )
    .bind(id)
    .fetch_all(&ctx.db)
    .await
    .unwrap();
    let mut out = Vec::new();
    for batch in batches {
        let job = BroadcastJob {
            broadcast_id: id,
            batch,
        };
        out.push(
            broadcast::send_batch(ctx, &job)
                .await
                .map_err(|e| e.to_string()),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_unreachable_sends_are_recorded_per_recipient() {
    // Resend refuses one address of the batch (permissive validation).
    let fake = FakeResend::new(Duration::ZERO);
    let server = fake.mount().await;
    let app = spawn_app(&server.uri()).await;
    seed_waitlist(&app, "wl", 4, 0).await;
    seed_waitlist(&app, "bounce", 1, 0).await;
    let plan = broadcast::prepare(&app.ctx, &request(TEMPLATE, launch_vars()), false)
        .await
        .unwrap();
    let id = plan.broadcast_id.unwrap();
    // Someone unsubscribes after the broadcast was prepared.
    sqlx::query("UPDATE users SET email_unsubscribed = true WHERE email = 'wl2@example.com'")
        .execute(app.db())
        .await
        .unwrap();
    let out = run_batches(&app.ctx, id).await;
    assert_eq!(out.len(), 1);
    let o = out[0].as_ref().unwrap();
    assert_eq!((o.sent, o.failed, o.skipped), (3, 1, 1));
    let c = broadcast::counts(&app.ctx, id).await.unwrap();
    assert_eq!((c.sent, c.failed, c.skipped, c.pending), (3, 1, 1, 0));
    let reason: String = sqlx::query_scalar(
        "SELECT r.error FROM broadcast_recipients r JOIN users u ON u.id = r.user_id
         WHERE r.broadcast_id = $1 AND u.email = 'bounce1@example.com'",
    )
    .bind(id)
    .fetch_one(app.db())
    .await
    .unwrap();
    assert!(reason.contains("Invalid `to` field"), "{reason}");
    // A second run finds nothing pending and sends nothing.
    let calls = fake.calls();
    run_batches(&app.ctx, id).await;
    assert_eq!(fake.calls(), calls);
    assert!(!fake.delivered().contains(&"wl2@example.com".to_string()));

    // A 4xx for the whole batch fails its recipients at once, without retries.
    let refusing = FakeResend {
        fail: Some((422, "validation_error")),
        ..FakeResend::new(Duration::ZERO)
    };
    let server = refusing.mount().await;
    let app = spawn_app(&server.uri()).await;
    seed_waitlist(&app, "wl", 3, 0).await;
    let id = broadcast::prepare(&app.ctx, &request(TEMPLATE, launch_vars()), false)
        .await
        .unwrap()
        .broadcast_id
        .unwrap();
    let out = run_batches(&app.ctx, id).await;
    assert_eq!(out[0].as_ref().unwrap().failed, 3);
    assert_eq!(refusing.calls(), 1);
    let c = broadcast::counts(&app.ctx, id).await.unwrap();
    assert_eq!((c.failed, c.pending), (3, 0));

    // An unreachable Resend is retried, then recorded as failed: not forever.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let app = spawn_app(&format!("http://127.0.0.1:{closed}")).await;
    seed_waitlist(&app, "wl", 2, 0).await;
    let id = broadcast::prepare(&app.ctx, &request(TEMPLATE, launch_vars()), false)
        .await
        .unwrap()
        .broadcast_id
        .unwrap();
    for attempt in 1..broadcast::MAX_ATTEMPTS {
        let out = run_batches(&app.ctx, id).await;
        assert!(out[0].is_err(), "attempt {attempt} should ask for a retry");
        let c = broadcast::counts(&app.ctx, id).await.unwrap();
        assert_eq!(c.pending, 2);
    }
    let out = run_batches(&app.ctx, id).await;
    assert_eq!(out[0].as_ref().unwrap().failed, 2);
    let c = broadcast::counts(&app.ctx, id).await.unwrap();
    assert_eq!((c.failed, c.pending), (2, 0));
    let attempts: Vec<i32> =
        sqlx::query_scalar("SELECT attempts FROM broadcast_recipients WHERE broadcast_id = $1")
            .bind(id)
            .fetch_all(app.db())
            .await
            .unwrap();
    assert_eq!(attempts, vec![broadcast::MAX_ATTEMPTS; 2]);
}

// ---------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------

/// The value of the sample `name{labels}` in Prometheus text.
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_route_template_without_user_data() {
    let app = TestApp::spawn_api_only().await;
    let user = app.student().await;
    let username: String =
        sqlx::query_scalar("SELECT username FROM user_profiles WHERE user_id = $1")
            .bind(user.id)
            .fetch_one(app.db())
            .await
            .unwrap();
    for _ in 0..3 {
        assert_eq!(app.get("/health").send().await.unwrap().status(), 200);
    }
    let r = app
        .get(&format!("/api/users/public/{username}"))
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success() || r.status() == 404,
        "{}",
        r.status()
    );
    let r = app
        .post("/api/auth/token")
        .json(&json!({"email": user.email, "password": "wrong-Passw0rd"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
    let r = app
        .get("/api/secret-place/someone@example.org")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = app
        .get("/api/auth/me")
        .header("Authorization", user.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let resp = app.get("/metrics").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = resp.text().await.unwrap();
    let health = sample(
        &text,
        "http_requests_total{route=\"/health\",method=\"GET\",status=\"200\"}",
    )
    .unwrap_or_else(|| panic!("no /health counter in\n{text}"));
    assert!(health >= 3.0, "{health}");
    assert!(
        text.contains("route=\"/api/users/public/{username}\""),
        "{text}"
    );
    assert!(text.contains("route=\"/api/auth/me\",method=\"GET\",status=\"200\""));
    assert!(text.contains("route=\"unmatched\",method=\"GET\",status=\"404\""));
    assert!(text.contains("http_request_duration_seconds_bucket{route=\"/health\""));
    assert!(text.contains("db_pool_connections "));
    assert!(text.contains("db_pool_idle_connections "));
    // No user data: no address, username, id or raw path.
    for secret in [
        user.email.as_str(),
        username.as_str(),
        &user.id.to_string(),
        "someone@example.org",
        "secret-place",
        "@",
    ] {
        assert!(!text.contains(secret), "/metrics exposes {secret:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_serves_its_metrics_on_a_port() {
    let app = TestApp::spawn().await;
    mambo_worker::record_queue_depths(&app.ctx).await.unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(mambo_worker::serve_metrics(port, async move {
        let _ = rx.await;
    }));
    let client = reqwest::Client::new();
    let text = eventually(10, || {
        let client = client.clone();
        async move {
            let r = client
                .get(format!("http://127.0.0.1:{port}/metrics"))
                .send()
                .await
                .ok()?;
            r.text().await.ok()
        }
    })
    .await
    .expect("worker metrics answer");
    assert!(
        text.contains("worker_queue_depth{queue=\"email\"}"),
        "{text}"
    );
    assert!(
        text.contains("job_outbox_pending{queue=\"broadcast\"}"),
        "{text}"
    );
    let _ = tx.send(());
    let _ = server.await;
}

// ---------------------------------------------------------------------------
// The OpenAPI document
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_committed_openapi_json_is_the_served_spec() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.json"))
            .expect("openapi.json at the repository root");
    let current = mambo_api::spec_json();
    assert!(
        committed.trim_end() == current.trim_end(),
        "openapi.json is stale: run `cargo run -p mambo-cli -- openapi > openapi.json`"
    );

    let doc: Value = serde_json::from_str(&current).unwrap();
    let mut ids = HashSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (m, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str();
            assert!(id.is_some(), "{m} {path} has no operationId");
            assert!(
                ids.insert(id.unwrap().to_string()),
                "duplicate operationId {id:?}"
            );
            assert!(
                op["tags"].as_array().is_some_and(|t| !t.is_empty()),
                "{m} {path} has no tag"
            );
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{m} {path} has no summary"
            );
        }
    }

    // The server serves the same document (with its own server URL).
    let app = TestApp::spawn_api_only().await;
    let (s, mut served) = json(app.get("/openapi.json").send().await.unwrap()).await;
    assert_eq!(s, 200);
    let mut doc = doc;
    served["servers"] = Value::Null;
    doc["servers"] = Value::Null;
    assert_eq!(served, doc);
}
