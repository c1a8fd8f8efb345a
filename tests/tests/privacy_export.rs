//! Data export (API-NEXT.md N3, GDPR art. 15/20): the 202 route and its
//! 24-hour limit, the worker's ZIP of JSON files with the user's rows and no
//! one else's, the emailed presigned link downloading it from the local S3
//! server, the list route, and expiry (the daily maintenance deletes the
//! archive). Real PostgreSQL, Redis and S3 server; a fake Resend.

use mambo_tests::s3::LocalS3;
use mambo_tests::{Options, StatusCode, TestApp, TestUser, UserSpec, eventually, json};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Read;
use uuid::Uuid;
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

/// The emails the fake Resend received for `to`.
async fn emails_to(server: &MockServer, to: &str) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == "/emails")
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
        .filter(|e| e["to"][0] == to)
        .collect()
}

async fn wait_for_email(server: &MockServer, to: &str) -> Value {
    eventually(30, || async {
        emails_to(server, to).await.into_iter().next()
    })
    .await
    .unwrap_or_else(|| panic!("no email to {to}"))
}

async fn spawn(s3: Option<&LocalS3>, resend: &MockServer) -> TestApp {
    let mut vars: Vec<(String, String)> = vec![
        ("RESEND_API_KEY".into(), "re_test".into()),
        ("RESEND_BASE_URL".into(), resend.uri()),
    ];
    if let Some(s3) = s3 {
        vars.extend(s3.vars().into_iter().map(|(k, v)| (k.to_string(), v)));
    }
    TestApp::spawn_with(Options { worker: true, vars }).await
}

async fn request_export(app: &TestApp, user: &TestUser) -> reqwest::Response {
    app.post("/api/users/me/export")
        .header("Authorization", user.bearer())
        .send()
        .await
        .unwrap()
}

async fn exports(app: &TestApp, user: &TestUser) -> Vec<Value> {
    let (s, v) = json(
        app.get("/api/users/me/exports")
            .header("Authorization", user.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array().unwrap().clone()
}

/// Some of everything for `user`: a post, a reply on `other_post`, a
/// reaction and a save of it, a notification, preferences and a badge.
/// Returns the user's post id.
async fn content_of(
    app: &TestApp,
    user: &TestUser,
    marker: &str,
    other_post: Option<Uuid>,
) -> Uuid {
    let db = app.db();
    let post: Uuid = sqlx::query_scalar(
        "INSERT INTO posts (user_id, post_type, title, body, tags)
         VALUES ($1, 'lab', $2, $3, '{mambo}') RETURNING id",
    )
    .bind(user.id)
    .bind(format!("Post of {marker}"))
    .bind(format!("Body of {marker}"))
    .fetch_one(db)
    .await
    .unwrap();
    if let Some(other) = other_post {
        sqlx::query("INSERT INTO post_replies (post_id, user_id, content) VALUES ($1, $2, $3)")
            .bind(other)
            .bind(user.id)
            .bind(format!("Reply of {marker}"))
            .execute(db)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO post_reactions (post_id, user_id, reaction_type) VALUES ($1, $2, 'fire')",
        )
        .bind(other)
        .bind(user.id)
        .execute(db)
        .await
        .unwrap();
        sqlx::query("INSERT INTO saved_posts (user_id, post_id) VALUES ($1, $2)")
            .bind(user.id)
            .bind(other)
            .execute(db)
            .await
            .unwrap();
    }
    sqlx::query(
        "INSERT INTO notifications (id, user_id, type, title, message)
         VALUES ($1, $2, 'badge_earned', 'Badge', $3)",
    )
    .bind(Uuid::now_v7())
    .bind(user.id)
    .bind(format!("Notification of {marker}"))
    .execute(db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO notification_preferences (user_id, email_digest) VALUES ($1, 'weekly')",
    )
    .bind(user.id)
    .execute(db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO user_badges (user_id, badge_id)
         SELECT $1, id FROM badge_definitions ORDER BY id LIMIT 1",
    )
    .bind(user.id)
    .execute(db)
    .await
    .unwrap();
    post
}

/// Unzips an archive into (file name → JSON).
fn unzip(bytes: &[u8]) -> BTreeMap<String, Value> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a ZIP archive");
    let mut files = BTreeMap::new();
    for i in 0..archive.len() {
        let mut f = archive.by_index(i).unwrap();
        let name = f.name().unwrap().to_string();
        let mut text = String::new();
        f.read_to_string(&mut text).unwrap();
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
        files.insert(name, v);
    }
    files
}

fn link_in(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("http"))
        .unwrap_or_else(|| panic!("no link in {text}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_zip_holds_the_users_rows_and_the_email_link_downloads_it() {
    let s3 = LocalS3::start("mambo-media").await;
    let resend = fake_resend().await;
    let app = spawn(Some(&s3), &resend).await;
    let alice = app
        .create_user(UserSpec {
            claves: 10,
            ..Default::default()
        })
        .await;
    let bob = app
        .create_user(UserSpec {
            claves: 20,
            ..Default::default()
        })
        .await;
    let bob_post = content_of(&app, &bob, "bob", None).await;
    let alice_post = content_of(&app, &alice, "alice", Some(bob_post)).await;
    // Bob answers Alice: his reply must not be in her export.
    sqlx::query(
        "INSERT INTO post_replies (post_id, user_id, content) VALUES ($1, $2, 'Reply of bob')",
    )
    .bind(alice_post)
    .bind(bob.id)
    .execute(app.db())
    .await
    .unwrap();
    // 10,000 more ledger rows for Alice (the balance follows the ledger).
    sqlx::query(
        "INSERT INTO clave_transactions (user_id, amount, reason)
         SELECT $1, 1, 'daily_login' FROM generate_series(1, 10000)",
    )
    .bind(alice.id)
    .execute(app.db())
    .await
    .unwrap();
    sqlx::query(
        "UPDATE user_profiles SET current_claves = current_claves + 10000 WHERE user_id = $1",
    )
    .bind(alice.id)
    .execute(app.db())
    .await
    .unwrap();

    // 202, then 429 within 24 hours.
    let (s, v) = json(request_export(&app, &alice).await).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["message"], "Your export is being prepared");
    let export_id: Uuid = v["export_id"].as_str().unwrap().parse().unwrap();
    let r = request_export(&app, &alice).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 86_000 && retry <= 86_400, "Retry-After {retry}");
    let (_, v) = json(r).await;
    assert_eq!(v, json!({"detail": "An export was requested recently"}));

    // The email carries a presigned link that downloads the archive.
    let email = wait_for_email(&resend, &alice.email).await;
    assert_eq!(
        email["subject"],
        "Your data export is ready - The Mambo Guild"
    );
    let text = email["text"].as_str().unwrap();
    assert!(
        text.contains("expires in 1 day") || text.contains("expires in 24 hours"),
        "{text}"
    );
    let link = link_in(text);
    let key = format!("exports/{}/{export_id}.zip", alice.id);
    assert!(link.contains(&format!("/mambo-media/{key}?")), "{link}");
    assert!(link.contains("X-Amz-Expires=86400"), "{link}");
    let http = reqwest::Client::new();
    let r = http.get(&link).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let bytes = r.bytes().await.unwrap();
    assert_eq!(bytes.as_ref(), std::fs::read(s3.object_path(&key)).unwrap());

    // The JSON files hold Alice's rows, and no one else's.
    let files = unzip(&bytes);
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    let mut expected = mambo_core::privacy::export::file_names();
    expected.sort();
    assert_eq!(names, expected);
    for needed in [
        "account.json",
        "subscription.json",
        "progress.json",
        "submissions.json",
        "posts.json",
        "replies.json",
        "reactions.json",
        "saved_posts.json",
        "clave_ledger.json",
        "badges.json",
        "notifications.json",
        "notification_preferences.json",
    ] {
        assert!(files.contains_key(needed), "{needed} missing");
    }
    let account = &files["account.json"];
    assert_eq!(account["id"], json!(alice.id));
    assert_eq!(account["email"], json!(alice.email));
    assert!(account.get("hashed_password").is_none());
    assert_eq!(account["profile"]["current_claves"], 10_010);
    assert_eq!(files["subscription.json"]["tier"], "rookie");
    let posts = files["posts.json"].as_array().unwrap();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0]["id"], json!(alice_post));
    assert_eq!(posts[0]["title"], "Post of alice");
    let replies = files["replies.json"].as_array().unwrap();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0]["content"], "Reply of alice");
    assert_eq!(replies[0]["post_id"], json!(bob_post));
    assert_eq!(files["reactions.json"].as_array().unwrap().len(), 1);
    assert_eq!(files["saved_posts.json"][0]["post_id"], json!(bob_post));
    let ledger = files["clave_ledger.json"].as_array().unwrap();
    assert_eq!(ledger.len(), 10_001);
    let sum: i64 = ledger.iter().map(|r| r["amount"].as_i64().unwrap()).sum();
    assert_eq!(sum, 10_010);
    assert_eq!(files["badges.json"].as_array().unwrap().len(), 1);
    let notes = files["notifications.json"].as_array().unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0]["message"], "Notification of alice");
    assert_eq!(
        files["notification_preferences.json"]["email_digest"],
        "weekly"
    );
    assert_eq!(files["progress.json"], json!([]));
    assert_eq!(files["submissions.json"], json!([]));
    let everything = serde_json::to_string(&files).unwrap();
    for foreign in [
        bob.id.to_string(),
        bob.email.clone(),
        "Post of bob".into(),
        "Reply of bob".into(),
        "Notification of bob".into(),
    ] {
        assert!(
            !everything.contains(&foreign),
            "{foreign} leaked into the export"
        );
    }

    // The list: ready, with a fresh link that works too.
    let list = exports(&app, &alice).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], json!(export_id));
    assert_eq!(list[0]["status"], "ready");
    assert!(list[0]["ready_at"].is_string());
    assert!(list[0]["created_at"].is_string());
    let url = list[0]["download_url"].as_str().unwrap();
    let r = http.get(url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap(), bytes);
    // Bob has none; his list is his own.
    assert_eq!(exports(&app, &bob).await, Vec::<Value>::new());
    // Exactly one email for the export.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(emails_to(&resend, &alice.email).await.len(), 1);

    // A day later: expired, no link; the maintenance deletes the archive and a
    // new export may be asked for.
    app.ctx
        .clock
        .set(chrono::Utc::now() + chrono::Duration::hours(25));
    let list = exports(&app, &alice).await;
    assert_eq!(list[0]["status"], "expired");
    assert_eq!(list[0]["download_url"], Value::Null);
    assert!(s3.object_path(&key).exists());
    mambo_worker::daily_maintenance(&app.ctx).await.unwrap();
    assert!(
        !s3.object_path(&key).exists(),
        "the expired archive is deleted"
    );
    let r = http.get(&link).send().await.unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    let (s, v) = json(request_export(&app, &alice).await).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let list = exports(&app, &alice).await;
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], v["export_id"], "newest first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_object_storage_the_export_fails_and_the_email_says_so() {
    let resend = fake_resend().await;
    let app = spawn(None, &resend).await;
    let user = app.student().await;

    // Anonymous callers are refused.
    let r = app.post("/api/users/me/export").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app.get("/api/users/me/exports").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let (s, v) = json(request_export(&app, &user).await).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let email = wait_for_email(&resend, &user.email).await;
    assert_eq!(
        email["subject"],
        "Your data export could not be prepared - The Mambo Guild"
    );
    assert!(!email["text"].as_str().unwrap().contains("http"));
    let list = exports(&app, &user).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["status"], "failed");
    assert_eq!(list[0]["ready_at"], Value::Null);
    assert_eq!(list[0]["download_url"], Value::Null);
    // A failed export still counts for the daily limit.
    let r = request_export(&app, &user).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_of_an_account_being_deleted_is_never_written() {
    let s3 = LocalS3::start("mambo-media").await;
    let app = TestApp::spawn_with(Options {
        worker: false,
        vars: s3
            .vars()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    })
    .await;
    let user = app.student().await;
    let (s, v) = json(request_export(&app, &user).await).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let export_id: Uuid = v["export_id"].as_str().unwrap().parse().unwrap();
    // The deletion is asked for before the worker gets to the export.
    let (s, v) = json(
        app.delete("/api/users/me")
            .header("Authorization", user.bearer())
            .json(&json!({"password": user.password}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let job = mambo_core::jobs::DataExportJob { export_id };
    mambo_core::privacy::export::run(&app.ctx, &job)
        .await
        .unwrap();
    mambo_core::privacy::export::run(&app.ctx, &job)
        .await
        .unwrap();
    let status: String = sqlx::query_scalar("SELECT status FROM data_exports WHERE id = $1")
        .bind(export_id)
        .fetch_one(app.db())
        .await
        .unwrap();
    assert_eq!(status, "failed");
    let key = format!("exports/{}/{export_id}.zip", user.id);
    assert!(!s3.object_path(&key).exists());
    let emails: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM job_outbox WHERE queue = 'email' AND payload->>'template' = 'data_export'",
    )
    .fetch_one(app.db())
    .await
    .unwrap();
    assert_eq!(emails, 0, "no email to an account being deleted");
}
