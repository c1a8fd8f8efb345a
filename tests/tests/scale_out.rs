//! Two of everything (issue 11): two API processes and two worker processes on
//! the same PostgreSQL database and Redis namespace. Rate limits are global,
//! each job runs once, each scheduled tick runs once, and a write through one
//! API is seen at once through the other (no process-local cache goes stale).

use mambo_tests::{Options, Peer, StatusCode, TestApp, TestUser, eventually, json};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// One of the two API processes.
trait Api {
    fn at(&self, path: &str) -> String;
    fn http(&self) -> &reqwest::Client;
}

impl Api for TestApp {
    fn at(&self, path: &str) -> String {
        self.url(path)
    }
    fn http(&self) -> &reqwest::Client {
        &self.client
    }
}

impl Api for Peer {
    fn at(&self, path: &str) -> String {
        self.url(path)
    }
    fn http(&self) -> &reqwest::Client {
        &self.client
    }
}

async fn call(
    api: &dyn Api,
    method: reqwest::Method,
    path: &str,
    user: Option<&TestUser>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut rb = api.http().request(method, api.at(path));
    if let Some(u) = user {
        rb = rb.header("Authorization", u.bearer());
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    json(rb.send().await.unwrap()).await
}

async fn get(api: &dyn Api, path: &str, user: &TestUser) -> (StatusCode, Value) {
    call(api, reqwest::Method::GET, path, Some(user), None).await
}

async fn post(api: &dyn Api, path: &str, user: &TestUser, body: Value) -> (StatusCode, Value) {
    call(api, reqwest::Method::POST, path, Some(user), Some(body)).await
}

async fn login(api: &dyn Api, email: &str, password: &str) -> (StatusCode, Value) {
    json(
        api.http()
            .post(api.at("/api/auth/token"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_shared_by_both_apis() {
    let a = TestApp::spawn_api_only().await;
    let b = a.spawn_peer_with(true, false, &[]).await;
    let apis: [&dyn Api; 2] = [&a, &b];
    let user = a.student().await;

    // Login: 5 attempts per email in 5 minutes, spread over both APIs.
    for i in 0..5 {
        let (s, v) = login(apis[i % 2], &user.email, "wrong-password-1").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "attempt {i}: {v}");
    }
    for api in apis {
        let (s, v) = login(api, &user.email, &user.password).await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
        assert_eq!(
            v["detail"],
            "Too many login attempts. Please try again in a few minutes."
        );
    }

    // Login: 20 attempts per client address. 5 were counted above (the two
    // refused ones stopped at the email limit); 15 more with other emails
    // alternate between the APIs, then the address is refused by both.
    for i in 0..15 {
        let (s, v) = login(
            apis[i % 2],
            &format!("nobody{i}@example.com"),
            "x-password-1",
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "attempt {i}: {v}");
    }
    for api in apis {
        let (s, v) = login(api, "someone-else@example.com", "x-password-1").await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
        assert_eq!(
            v["detail"],
            "Too many login attempts from this IP. Please try again later."
        );
    }
}

/// A fake Resend that records every send and answers at once.
#[derive(Clone, Default)]
struct RecordingResend {
    calls: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Respond for RecordingResend {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let key = req
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        self.calls.lock().unwrap().push((key.clone(), body));
        ResponseTemplate::new(200).set_body_json(json!({"id": format!("em_{key}")}))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_job_runs_once_with_two_apis_and_two_workers() {
    const N: usize = 24;
    let fake = RecordingResend::default();
    let resend = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/emails"))
        .respond_with(fake.clone())
        .mount(&resend)
        .await;
    let a = TestApp::spawn_with(Options {
        worker: true,
        vars: vec![
            ("RESEND_API_KEY".into(), "re_test".into()),
            ("RESEND_BASE_URL".into(), resend.uri()),
            // Each request says it comes from its own address, so the
            // per-address forgot-password limit (10) does not get in the way.
            ("TRUSTED_PROXIES".into(), "127.0.0.1".into()),
        ],
    })
    .await;
    let b = a.spawn_peer().await;
    let apis: [&dyn Api; 2] = [&a, &b];

    let mut users = vec![];
    for _ in 0..N {
        users.push(a.student().await);
    }
    // All at once, alternating between the APIs.
    let mut calls = vec![];
    for (i, u) in users.iter().enumerate() {
        let req = apis[i % 2]
            .http()
            .post(apis[i % 2].at("/api/auth/forgot-password"))
            .header(
                "X-Forwarded-For",
                format!("10.0.{}.{}", i / 200, i % 200 + 1),
            )
            .json(&json!({"email": u.email}));
        calls.push(tokio::spawn(async move {
            json(req.send().await.unwrap()).await
        }));
    }
    for c in calls {
        let (s, v) = c.await.unwrap();
        assert_eq!(s, StatusCode::OK, "{v}");
    }

    eventually(60, || async {
        (fake.calls.lock().unwrap().len() >= N).then_some(())
    })
    .await
    .expect("every email was sent");
    // Both worker processes consume the email queue.
    let mut redis = a.ctx.redis.conn();
    let workers: i64 = redis::cmd("ZCARD")
        .arg(format!("{}:email:workers", a.namespace))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(workers >= 2, "two email workers registered, got {workers}");
    // Give a duplicate delivery time to show up before counting.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let calls = fake.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), N, "exactly one send per email");
    let keys: HashSet<&String> = calls.iter().map(|(k, _)| k).collect();
    assert_eq!(keys.len(), N, "N distinct idempotency keys");
    let to: HashSet<String> = calls
        .iter()
        .map(|(_, b)| b["to"][0].as_str().unwrap().to_string())
        .collect();
    let expected: HashSet<String> = users.iter().map(|u| u.email.clone()).collect();
    assert_eq!(to, expected, "each user got their email");
    let (sent, attempts): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'sent'), coalesce(sum(attempts), 0)::bigint
         FROM email_deliveries",
    )
    .fetch_one(a.db())
    .await
    .unwrap();
    assert_eq!((sent, attempts), (N as i64, N as i64));
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM job_outbox WHERE relayed_at IS NULL")
            .fetch_one(a.db())
            .await
            .unwrap();
    assert_eq!(pending, 0);
    println!("two of everything: {N} emails queued through 2 APIs, {N} sends by 2 workers");
}

/// A fake Mux that records when each upload was read.
#[derive(Clone, Default)]
struct RecordingMux {
    reads: Arc<Mutex<Vec<Instant>>>,
}

impl Respond for RecordingMux {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        self.reads.lock().unwrap().push(Instant::now());
        let id = req.url.path().rsplit('/').next().unwrap_or_default();
        ResponseTemplate::new(200).set_body_json(json!({"data": {"id": id, "status": "waiting"}}))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_scheduled_tick_runs_once_with_two_workers() {
    let fake = RecordingMux::default();
    let mux = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path_regex("^/video/v1/uploads/[^/]+$"))
        .respond_with(fake.clone())
        .mount(&mux)
        .await;
    // Both cron jobs every 2 seconds instead of daily / every 5 minutes.
    let a = TestApp::spawn_with(Options {
        worker: false,
        vars: vec![
            ("MUX_TOKEN_ID".into(), "id".into()),
            ("MUX_TOKEN_SECRET".into(), "secret".into()),
            ("MUX_BASE_URL".into(), mux.uri()),
            ("MUX_RECONCILE_SCHEDULE".into(), "*/2 * * * * *".into()),
            ("DAILY_MAINTENANCE_SCHEDULE".into(), "*/2 * * * * *".into()),
        ],
    })
    .await;
    // An upload whose webhook never came: every reconcile run reads it at Mux
    // once (Mux says it is still waiting, so it stays pending).
    sqlx::query(
        "INSERT INTO mux_uploads (upload_id, target_type, status, created_at, updated_at)
         VALUES ('up-stuck', 'none', 'pending', now() - interval '10 minutes', now())",
    )
    .execute(a.db())
    .await
    .unwrap();

    let w1 = a.spawn_worker().await;
    let w2 = a.spawn_worker().await;
    let claims = |job: &'static str| {
        let ctx = a.ctx.clone();
        let ns = a.namespace.clone();
        async move {
            let mut redis = ctx.redis.conn();
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{ns}:cron:{job}:*"))
                .query_async(&mut redis)
                .await
                .unwrap();
            let mut out = HashMap::new();
            for k in keys {
                let n: i64 = redis::cmd("GET")
                    .arg(&k)
                    .query_async(&mut redis)
                    .await
                    .unwrap();
                out.insert(k, n);
            }
            out
        }
    };
    // Run until at least 4 ticks were fired by both workers.
    eventually(90, || async {
        let c = claims("mux_reconcile").await;
        (c.values().filter(|n| **n == 2).count() >= 4).then_some(())
    })
    .await
    .expect("both workers fire the ticks");
    w1.stop().await;
    w2.stop().await;

    let mux_claims = claims("mux_reconcile").await;
    let reads = fake.reads.lock().unwrap().clone();
    // One Mux read per tick, whatever the number of workers that fired it.
    assert_eq!(
        reads.len(),
        mux_claims.len(),
        "one reconcile run per tick: {mux_claims:?}"
    );
    assert!(mux_claims.values().all(|n| *n == 1 || *n == 2));
    let maintenance = claims("daily_maintenance").await;
    assert!(
        maintenance.values().filter(|n| **n == 2).count() >= 2,
        "the maintenance ticks were fired by both workers and claimed once: {maintenance:?}"
    );
    println!(
        "scheduled: {} reconcile ticks ({} fired by both workers), {} Mux reads; \
         {} maintenance ticks",
        mux_claims.len(),
        mux_claims.values().filter(|n| **n == 2).count(),
        reads.len(),
        maintenance.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_api_is_read_at_once_through_the_other() {
    let a = TestApp::spawn().await;
    let b = a.spawn_peer_with(true, false, &[]).await;
    let admin = a.admin().await;
    let author = a
        .create_user(mambo_tests::UserSpec {
            claves: 100,
            ..Default::default()
        })
        .await;
    let fan = a
        .create_user(mambo_tests::UserSpec {
            claves: 100,
            ..Default::default()
        })
        .await;

    // Feed: B caches its first page, A adds a post, B shows it at once.
    let (s, feed) = get(&b, "/api/community/feed", &fan).await;
    assert_eq!(s, StatusCode::OK, "{feed}");
    assert_eq!(feed.as_array().unwrap().len(), 0);
    let (s, v) = post(
        &a,
        "/api/community/posts",
        &author,
        json!({"post_type": "stage", "title": "Shines on 2", "tags": ["mambo"]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let post_id = v["post"]["id"].as_str().unwrap().to_string();
    let (_, feed) = get(&b, "/api/community/feed", &fan).await;
    assert_eq!(feed[0]["id"], json!(post_id), "B's feed shows A's new post");
    assert_eq!(feed[0]["reaction_count"], 0);

    // Reaction through A, counts and balances through B.
    let (_, w) = get(&b, "/api/claves/wallet", &fan).await;
    let fan_before = w["current_claves"].as_i64().unwrap();
    let (s, v) = post(
        &a,
        &format!("/api/community/posts/{post_id}/react"),
        &fan,
        json!({"reaction_type": "fire"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, p) = get(&b, &format!("/api/community/posts/{post_id}"), &fan).await;
    assert_eq!(p["reaction_count"], 1);
    assert_eq!(p["user_reaction"], "fire");
    let (_, feed) = get(&b, "/api/community/feed", &fan).await;
    assert_eq!(feed[0]["reaction_count"], 1);
    assert_eq!(feed[0]["user_reaction"], "fire");
    let (_, w) = get(&b, "/api/claves/wallet", &fan).await;
    assert!(w["current_claves"].as_i64().unwrap() < fan_before);

    // Reply through B, seen through A.
    let (s, v) = post(
        &b,
        &format!("/api/community/posts/{post_id}/replies"),
        &fan,
        json!({"content": "Clean spins!"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, p) = get(&a, &format!("/api/community/posts/{post_id}"), &author).await;
    assert_eq!(p["reply_count"], 1);
    assert_eq!(p["replies"][0]["content"], "Clean spins!");

    // Reply edit through A, seen through B.
    let reply_id = p["replies"][0]["id"].as_str().unwrap().to_string();
    let (s, v) = call(
        &a,
        reqwest::Method::PUT,
        &format!("/api/community/posts/{post_id}/replies/{reply_id}"),
        Some(&fan),
        Some(json!({"content": "Clean spins, edited"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, p) = get(&b, &format!("/api/community/posts/{post_id}"), &fan).await;
    assert_eq!(p["replies"][0]["content"], "Clean spins, edited");

    // Moderation through one API, the (cached) feed of the other follows:
    // hidden, shown again, deleted (N4.4).
    let (_, feed) = get(&b, "/api/community/feed", &fan).await;
    assert_eq!(feed[0]["id"], json!(post_id));
    let (s, v) = post(
        &a,
        &format!("/api/community/posts/{post_id}/report"),
        &fan,
        json!({"reason": "spam"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, queue) = get(&a, "/api/admin/moderation/reports", &admin).await;
    let report_id = queue[0]["id"].as_str().unwrap().to_string();
    let resolve = format!("/api/admin/moderation/reports/{report_id}/resolve");
    let (s, v) = post(&a, &resolve, &admin, json!({"action": "hide"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, feed) = get(&b, "/api/community/feed", &fan).await;
    assert_eq!(feed, json!([]), "B's feed drops the post hidden through A");
    let (_, feed) = get(&a, "/api/community/feed", &fan).await;
    assert_eq!(feed, json!([]));
    let (s, v) = post(&b, &resolve, &admin, json!({"action": "unhide"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, feed) = get(&a, "/api/community/feed", &fan).await;
    assert_eq!(feed[0]["id"], json!(post_id), "A's feed shows it again");
    let (s, v) = post(&a, &resolve, &admin, json!({"action": "delete"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, feed) = get(&b, "/api/community/feed", &fan).await;
    assert_eq!(feed, json!([]), "B's feed drops the post deleted through A");

    // Daily claim through A: B's wallet has it, and B refuses a second claim.
    let (s, claim) = call(
        &a,
        reqwest::Method::POST,
        "/api/claves/daily-claim",
        Some(&author),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{claim}");
    assert_eq!(claim["success"], true);
    let (_, w) = get(&b, "/api/claves/wallet", &author).await;
    assert_eq!(w["current_claves"], claim["new_balance"]);
    let (_, again) = call(
        &b,
        reqwest::Method::POST,
        "/api/claves/daily-claim",
        Some(&author),
        None,
    )
    .await;
    assert_eq!(again["success"], false, "{again}");
    assert_eq!(again["new_balance"], claim["new_balance"]);

    // An admin renames a world through A; both APIs list the new title.
    let (s, c) = post(
        &a,
        "/api/admin/courses",
        &admin,
        json!({"title": "Mambo 101", "slug": format!("m-{}", Uuid::new_v4().simple()),
               "order_index": 0, "difficulty": "beginner", "is_published": true}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let world = c["id"].as_str().unwrap().to_string();
    let (_, _) = call(
        &a,
        reqwest::Method::PUT,
        &format!("/api/admin/courses/{world}"),
        Some(&admin),
        Some(json!({"is_published": true})),
    )
    .await;
    let title_on = |api: &'static str, worlds: &Value| -> String {
        worlds
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["id"] == json!(world))
            .map(|w| w["title"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("{api} lists the world: {worlds}"))
    };
    let (_, worlds) = get(&b, "/api/courses/worlds", &fan).await;
    assert_eq!(title_on("B", &worlds), "Mambo 101");
    let (s, v) = call(
        &a,
        reqwest::Method::PUT,
        &format!("/api/admin/courses/{world}"),
        Some(&admin),
        Some(json!({"title": "Mambo 102"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, worlds) = get(&b, "/api/courses/worlds", &fan).await;
    assert_eq!(title_on("B", &worlds), "Mambo 102");
    let (_, worlds) = get(&a, "/api/courses/worlds", &fan).await;
    assert_eq!(title_on("A", &worlds), "Mambo 102");

    // Balances equal their ledgers after writes through both APIs.
    for u in [&author, &fan] {
        let (balance, ledger) = a.balance_and_ledger(u.id).await;
        assert_eq!(balance, ledger);
    }
}

/// The lesson detail comes from each API's catalogue cache: an edit through
/// one API, or a lesson added by plain SQL, is read at once through the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lesson_edited_through_one_api_is_read_at_once_through_the_other() {
    let a = TestApp::spawn().await;
    let b = a.spawn_peer_with(true, false, &[]).await;
    let admin = a.admin().await;
    let student = a.create_user(mambo_tests::UserSpec::default()).await;
    let w: Uuid = sqlx::query_scalar(
        "INSERT INTO worlds (title, slug, order_index, is_free, difficulty, is_published)
         VALUES ('Free', 'free-w', 0, true, 'Beginner', true) RETURNING id",
    )
    .fetch_one(a.db())
    .await
    .unwrap();
    let level: Uuid = sqlx::query_scalar(
        "INSERT INTO levels (world_id, title, order_index) VALUES ($1, 'Basics', 0) RETURNING id",
    )
    .bind(w)
    .fetch_one(a.db())
    .await
    .unwrap();
    let first: Uuid = sqlx::query_scalar(
        "INSERT INTO lessons (level_id, title, video_url, xp_value, order_index)
         VALUES ($1, 'Basic step', 'https://video.example/1', 10, 0) RETURNING id",
    )
    .bind(level)
    .fetch_one(a.db())
    .await
    .unwrap();
    let path = format!("/api/courses/lessons/{first}");
    let (s, d) = get(&b, &path, &student).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["title"], "Basic step");
    assert_eq!(d["level_title"], "Basics");
    assert_eq!(d["level_id"], json!(level));
    assert_eq!(d["next_lesson_id"], Value::Null);
    assert_eq!(d["prev_lesson_id"], Value::Null);

    // An edit through A.
    let (s, v) = call(
        &a,
        reqwest::Method::PUT,
        &format!("/api/admin/lessons/{first}"),
        Some(&admin),
        Some(json!({"title": "Basic step, on 2"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, d) = get(&b, &path, &student).await;
    assert_eq!(d["title"], "Basic step, on 2");

    // A lesson added by plain SQL: the first gains a next, the new one a prev.
    let second: Uuid = sqlx::query_scalar(
        "INSERT INTO lessons (level_id, title, video_url, xp_value, order_index)
         VALUES ($1, 'Side step', 'https://video.example/2', 10, 1) RETURNING id",
    )
    .bind(level)
    .fetch_one(a.db())
    .await
    .unwrap();
    let (_, d) = get(&b, &path, &student).await;
    assert_eq!(d["next_lesson_id"], json!(second));
    let (_, d) = get(&b, &format!("/api/courses/lessons/{second}"), &student).await;
    assert_eq!(d["prev_lesson_id"], json!(first));
    assert_eq!(d["title"], "Side step");

    // Unpublished: staff still read it (from the database), students get 404.
    sqlx::query("UPDATE worlds SET is_published = false WHERE id = $1")
        .bind(w)
        .execute(a.db())
        .await
        .unwrap();
    let (s, _) = get(&b, &path, &student).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, d) = get(&b, &path, &admin).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["next_lesson_id"], json!(second));
}
