//! The May 2026 Profile (API-2026-05.md N5.2) and the Mux upload token (N5.5).
//!
//! - Every new Profile field on `/api/auth/me`, `GET`/`PATCH /api/users/me`
//!   and `/api/users/public/{username}`: for a freshly registered user, for a
//!   trialing subscriber who cancels at the period end, and as the public sees
//!   them (no subscription, trial or time zone; the link and cosmetics stay).
//! - `has_used_trial` follows the trial claims of the user's normalised email
//!   (N2), and the SQL form of that normalisation agrees with the Rust one.
//! - `PATCH /api/users/me {instagram_url}`: handles, URLs, clearing, the five
//!   422s (nothing written on a refusal).
//! - The upload token: accepted as `?token=` on `POST /api/mux/upload-url` for
//!   lesson, course and level uploads while its subject is an admin; a 401
//!   everywhere else, and once its subject is no longer an admin.

use mambo_tests::{StatusCode, TestApp, TestUser, UserSpec, eventually, json};
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PROFILE_ROUTES: [&str; 3] = ["/api/auth/me", "/api/users/me", "PATCH /api/users/me"];

/// The four profile views of `user`: own (auth/me, users/me, PATCH with an
/// empty body) and public (read anonymously).
async fn views(app: &TestApp, user: &TestUser) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for route in PROFILE_ROUTES {
        let (m, p) = match route.split_once(' ') {
            Some((m, p)) => (m, p),
            None => ("GET", route),
        };
        let body = (m == "PATCH").then(|| json!({}));
        let (s, v) = app.call(m, p, Some(user), body).await;
        assert_eq!(s, StatusCode::OK, "{route}: {v}");
        out.push((route.to_string(), v));
    }
    out
}

async fn username(app: &TestApp, id: Uuid) -> String {
    sqlx::query_scalar("SELECT username FROM user_profiles WHERE user_id = $1")
        .bind(id)
        .fetch_one(app.db())
        .await
        .unwrap()
}

async fn public(app: &TestApp, id: Uuid, viewer: Option<&TestUser>) -> Value {
    let name = username(app, id).await;
    let (s, v) = app
        .call("GET", &format!("/api/users/public/{name}"), viewer, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

const NEW_FIELDS: [&str; 10] = [
    "instagram_url",
    "subscription_status",
    "subscription_cancel_at_period_end",
    "subscription_period_end",
    "subscription_scheduled_tier",
    "has_used_trial",
    "is_verified",
    "equipped_border_sku",
    "equipped_title_sku",
    "timezone",
];

fn new_fields(v: &Value) -> Value {
    Value::Object(
        NEW_FIELDS
            .iter()
            .map(|k| {
                assert!(v.get(*k).is_some(), "{k} missing in {v}");
                (k.to_string(), v[*k].clone())
            })
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_user_sees_every_new_field_with_its_default() {
    let app = TestApp::spawn_api_only().await;
    let resp = app
        .post("/api/auth/register")
        .json(&json!({
            "email": "fresh.dancer@example.com",
            "username": "fresh_dancer",
            "password": "Salsa0n2Rocks",
            "confirm_password": "Salsa0n2Rocks",
            "first_name": "Fresh",
            "last_name": "Dancer",
            "current_level_tag": "Beginner",
        }))
        .send()
        .await
        .unwrap();
    let (s, body) = json(resp).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let id: Uuid = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind("fresh.dancer@example.com")
        .fetch_one(app.db())
        .await
        .unwrap();
    let user = TestUser {
        id,
        email: "fresh.dancer@example.com".into(),
        password: "Salsa0n2Rocks".into(),
        token: body["access_token"].as_str().unwrap().to_string(),
    };
    // Registration made the untouched row: incomplete, no Stripe id.
    let (status, stripe): (String, Option<String>) = sqlx::query_as(
        "SELECT status, stripe_subscription_id FROM subscriptions WHERE user_id = $1",
    )
    .bind(id)
    .fetch_one(app.db())
    .await
    .unwrap();
    assert_eq!((status.as_str(), stripe), ("incomplete", None));

    let verified: bool = sqlx::query_scalar("SELECT is_verified FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(app.db())
        .await
        .unwrap();
    let own = json!({
        "instagram_url": null,
        "subscription_status": null,
        "subscription_cancel_at_period_end": false,
        "subscription_period_end": null,
        "subscription_scheduled_tier": null,
        "has_used_trial": false,
        "is_verified": verified,
        "equipped_border_sku": null,
        "equipped_title_sku": null,
        "timezone": "UTC",
    });
    for (route, v) in views(&app, &user).await {
        assert_eq!(new_fields(&v), own, "{route}");
        assert_eq!(v["tier"], "rookie", "{route}");
    }
    let mut public_view = own.clone();
    public_view["timezone"] = Value::Null;
    for viewer in [None, Some(&user)] {
        let v = public(&app, id, viewer).await;
        assert_eq!(new_fields(&v), public_view);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trialing_subscriber_who_cancels_sees_the_subscription_and_the_public_does_not() {
    let app = TestApp::spawn_api_only().await;
    let user = app
        .create_user(UserSpec {
            subscription: Some(("trialing", "performer")),
            ..Default::default()
        })
        .await;
    let other = app.student().await;
    let period_end = "2026-06-14T10:00:00Z";
    sqlx::query(
        "UPDATE subscriptions SET stripe_subscription_id = 'sub_trial_1',
             stripe_customer_id = 'cus_1', cancel_at_period_end = true,
             current_period_end = $2::timestamptz, scheduled_tier = 'advanced'
         WHERE user_id = $1",
    )
    .bind(user.id)
    .bind(period_end)
    .execute(app.db())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO trial_claims (normalized_email, user_id, stripe_subscription_id)
         VALUES ($1, $2, 'sub_trial_1')",
    )
    .bind(mambo_core::payments::normalize_email(&user.email))
    .bind(user.id)
    .execute(app.db())
    .await
    .unwrap();
    sqlx::query(
        "UPDATE user_profiles SET instagram_url = 'https://instagram.com/trial.dancer',
             equipped_border_sku = 'border_gold', equipped_title_sku = 'title_maestro',
             timezone = 'Europe/Madrid'
         WHERE user_id = $1",
    )
    .bind(user.id)
    .execute(app.db())
    .await
    .unwrap();

    for (route, v) in views(&app, &user).await {
        let f = new_fields(&v);
        assert_eq!(f["instagram_url"], "https://instagram.com/trial.dancer");
        assert_eq!(f["subscription_status"], "trialing", "{route}");
        assert_eq!(f["subscription_cancel_at_period_end"], true, "{route}");
        let end = chrono::DateTime::parse_from_rfc3339(
            f["subscription_period_end"].as_str().expect("a timestamp"),
        )
        .unwrap();
        assert_eq!(
            end,
            chrono::DateTime::parse_from_rfc3339(period_end).unwrap()
        );
        assert_eq!(f["subscription_scheduled_tier"], "advanced", "{route}");
        assert_eq!(f["has_used_trial"], true, "{route}");
        assert_eq!(f["is_verified"], true, "{route}");
        assert_eq!(f["equipped_border_sku"], "border_gold");
        assert_eq!(f["equipped_title_sku"], "title_maestro");
        assert_eq!(f["timezone"], "Europe/Madrid", "{route}");
        assert_eq!(v["tier"], "performer", "{route}");
    }

    // Anyone, the user included, reads the public view without them.
    let expected = json!({
        "instagram_url": "https://instagram.com/trial.dancer",
        "subscription_status": null,
        "subscription_cancel_at_period_end": false,
        "subscription_period_end": null,
        "subscription_scheduled_tier": null,
        "has_used_trial": false,
        "is_verified": true,
        "equipped_border_sku": "border_gold",
        "equipped_title_sku": "title_maestro",
        "timezone": null,
    });
    for viewer in [None, Some(&other), Some(&user)] {
        let v = public(&app, user.id, viewer).await;
        assert_eq!(new_fields(&v), expected);
        assert_eq!(v["tier"], "performer");
    }

    // A canceled subscription with a Stripe id is reported as such.
    sqlx::query(
        "UPDATE subscriptions SET status = 'canceled', cancel_at_period_end = false,
             scheduled_tier = NULL, tier = 'rookie' WHERE user_id = $1",
    )
    .bind(user.id)
    .execute(app.db())
    .await
    .unwrap();
    let (_, v) = app.call("GET", "/api/auth/me", Some(&user), None).await;
    assert_eq!(v["subscription_status"], "canceled");
    assert_eq!(v["subscription_cancel_at_period_end"], false);
    assert_eq!(v["subscription_scheduled_tier"], Value::Null);
    assert_eq!(v["has_used_trial"], true);
    // An incomplete row that did reach Stripe is not the untouched one.
    sqlx::query("UPDATE subscriptions SET status = 'incomplete' WHERE user_id = $1")
        .bind(user.id)
        .execute(app.db())
        .await
        .unwrap();
    let (_, v) = app.call("GET", "/api/users/me", Some(&user), None).await;
    assert_eq!(v["subscription_status"], "incomplete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn has_used_trial_follows_the_normalised_email() {
    let app = TestApp::spawn_api_only().await;
    let has_used = |u: TestUser| {
        let app = &app;
        async move {
            let (s, v) = app.call("GET", "/api/auth/me", Some(&u), None).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            v["has_used_trial"].as_bool().unwrap()
        }
    };
    // A deleted account's trial: the claim outlives it, keyed by the email.
    let ana = app.student().await;
    sqlx::query("UPDATE users SET email = 'Ana.Lopez+salsa@Gmail.com' WHERE id = $1")
        .bind(ana.id)
        .execute(app.db())
        .await
        .unwrap();
    assert!(!has_used(ana.clone()).await);
    sqlx::query("INSERT INTO trial_claims (normalized_email, user_id) VALUES ($1, $2)")
        .bind(mambo_core::payments::normalize_email(
            "analopez@googlemail.com",
        ))
        .bind(Uuid::new_v4())
        .execute(app.db())
        .await
        .unwrap();
    assert!(has_used(ana).await);

    // A claim recorded under the user (no usable email at the time).
    let ben = app.student().await;
    sqlx::query("INSERT INTO trial_claims (normalized_email, user_id) VALUES ($1, $2)")
        .bind(format!("user:{}", ben.id))
        .bind(ben.id)
        .execute(app.db())
        .await
        .unwrap();
    assert!(has_used(ben).await);
    // Someone else's claim is not this user's.
    let carla = app.student().await;
    assert!(!has_used(carla).await);

    // The profile's SQL key is checkout's normalisation.
    for e in [
        " Ana.Lopez+salsa@Gmail.com ",
        "ana.lopez@googlemail.com",
        "a.b.c+x+y@GMAIL.COM",
        "ana.lopez+x@example.com",
        "Ana@Example.COM",
        "+tag@example.com",
        "no-at-sign",
        "weird@name@Gmail.com",
        "tab\tx@example.com\n",
        "Ünïcödé.Dancer+1@Example.org",
        "",
    ] {
        let sql: String = sqlx::query_scalar("SELECT trial_email_key($1)")
            .bind(e)
            .fetch_one(app.db())
            .await
            .unwrap();
        assert_eq!(sql, mambo_core::payments::normalize_email(e), "{e:?}");
    }
}

// ---------------------------------------------------------------------------
// PATCH /api/users/me {instagram_url}
// ---------------------------------------------------------------------------

async fn stored_instagram(app: &TestApp, id: Uuid) -> Option<String> {
    sqlx::query_scalar("SELECT instagram_url FROM user_profiles WHERE user_id = $1")
        .bind(id)
        .fetch_one(app.db())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instagram_links_are_normalised_cleared_and_refused() {
    let app = TestApp::spawn_api_only().await;
    let user = app.student().await;
    let patch = |body: Value| {
        let app = &app;
        let user = &user;
        async move {
            app.call("PATCH", "/api/users/me", Some(user), Some(body))
                .await
        }
    };

    for (input, stored) in [
        ("diego", "https://instagram.com/diego"),
        ("@diego.dance", "https://instagram.com/diego.dance"),
        (
            "https://instagram.com/diego_99?igsh=abc123&utm_source=qr#reels",
            "https://instagram.com/diego_99",
        ),
        (
            "https://www.instagram.com/diego.dance/reels/C0ffee/",
            "https://instagram.com/diego.dance",
        ),
        (
            "https://www.instagram.com/Mambo.Kings",
            "https://instagram.com/Mambo.Kings",
        ),
    ] {
        let (s, v) = patch(json!({"instagram_url": input})).await;
        assert_eq!(s, StatusCode::OK, "{input}: {v}");
        assert_eq!(v["instagram_url"], stored, "{input}");
        assert_eq!(
            stored_instagram(&app, user.id).await.as_deref(),
            Some(stored)
        );
        // Every view reads the stored link.
        let (_, me) = app.call("GET", "/api/auth/me", Some(&user), None).await;
        assert_eq!(me["instagram_url"], stored);
        let (_, me) = app.call("GET", "/api/users/me", Some(&user), None).await;
        assert_eq!(me["instagram_url"], stored);
        assert_eq!(public(&app, user.id, None).await["instagram_url"], stored);
    }

    // Absent: unchanged (also when other fields change).
    let (s, v) = patch(json!({"avatar_url": "https://pub-abc.r2.dev/a.png"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["instagram_url"], "https://instagram.com/Mambo.Kings");

    // Refusals, in the contract's order; nothing is written.
    let long = format!("https://instagram.com/{}", "a".repeat(240));
    for (input, msg) in [
        (long.as_str(), "Value error, Instagram URL too long"),
        (
            "http://instagram.com/diego",
            "Value error, Instagram URL must use HTTPS",
        ),
        (
            "instagram.com/diego",
            "Value error, Instagram URL must use HTTPS",
        ),
        (
            "https://evil.com/diego",
            "Value error, URL must point to instagram.com",
        ),
        (
            "https://instagram.com.evil.com/diego",
            "Value error, URL must point to instagram.com",
        ),
        (
            "https://instagram.com/",
            "Value error, Instagram URL must include a handle",
        ),
        (
            "https://www.instagram.com?x=1",
            "Value error, Instagram URL must include a handle",
        ),
        (
            "https://instagram.com/not!valid",
            "Value error, Invalid Instagram URL",
        ),
        ("diego!", "Value error, Invalid Instagram URL"),
        (
            "this_handle_is_far_too_long_for_ig",
            "Value error, Invalid Instagram URL",
        ),
    ] {
        let (s, v) = patch(json!({"instagram_url": input, "username": "renamed_dancer"})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{input}: {v}");
        assert_eq!(
            v,
            json!({"detail": [{
                "type": "value_error",
                "loc": ["body", "instagram_url"],
                "msg": msg,
                "input": input,
            }]}),
            "{input}"
        );
        assert_eq!(
            stored_instagram(&app, user.id).await.as_deref(),
            Some("https://instagram.com/Mambo.Kings")
        );
        assert_ne!(username(&app, user.id).await, "renamed_dancer");
    }
    // Too long is checked before anything else.
    let (s, v) =
        patch(json!({"instagram_url": format!("http://evil.com/{}", "x!".repeat(130))})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["detail"][0]["msg"], "Value error, Instagram URL too long");
    // Not a string: a 422, not a 500.
    for bad in [json!(42), json!(["diego"]), json!({"handle": "diego"})] {
        let (s, v) = patch(json!({"instagram_url": bad})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(
            v["detail"][0]["loc"],
            json!(["body", "instagram_url"]),
            "{v}"
        );
        assert_eq!(v["detail"][0]["type"], "string_type", "{v}");
    }
    assert_eq!(
        stored_instagram(&app, user.id).await.as_deref(),
        Some("https://instagram.com/Mambo.Kings")
    );

    // Cleared by "" and by null.
    let (s, v) = patch(json!({"instagram_url": ""})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["instagram_url"], Value::Null);
    assert_eq!(stored_instagram(&app, user.id).await, None);
    patch(json!({"instagram_url": "diego"})).await;
    assert_eq!(
        stored_instagram(&app, user.id).await.as_deref(),
        Some("https://instagram.com/diego")
    );
    let (s, v) = patch(json!({"instagram_url": null})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["instagram_url"], Value::Null);
    assert_eq!(stored_instagram(&app, user.id).await, None);
}

// ---------------------------------------------------------------------------
// N5.5 The Mux upload token
// ---------------------------------------------------------------------------

const MUX_ID: &str = "mux-token-id";
const MUX_SECRET: &str = "mux-token-secret";

async fn mux_app(mux: &MockServer) -> TestApp {
    let uri = mux.uri();
    TestApp::spawn_with_vars(&[
        ("MUX_TOKEN_ID", MUX_ID),
        ("MUX_TOKEN_SECRET", MUX_SECRET),
        ("MUX_WEBHOOK_SECRET", "mux-webhook-secret"),
        ("MUX_BASE_URL", &uri),
        ("MUX_STREAM_BASE_URL", &uri),
        ("FRONTEND_URL", "https://app.mambo.test"),
    ])
    .await
}

async fn mount_create_upload(mux: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/video/v1/uploads"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "data": {
                "id": "up-1",
                "url": "https://storage.googleapis.com/video-storage/up-1",
                "status": "waiting",
                "timeout": 3600,
                "cors_origin": "https://app.mambo.test",
            }
        })))
        .mount(mux)
        .await;
}

struct Content {
    world: Uuid,
    level: Uuid,
    lesson: Uuid,
}

async fn content(app: &TestApp) -> Content {
    let world: Uuid = sqlx::query_scalar(
        "INSERT INTO worlds (title, slug, order_index, difficulty, is_free, is_published)
         VALUES ('Course up', 'course-up', 1, 'Beginner', false, true) RETURNING id",
    )
    .fetch_one(app.db())
    .await
    .unwrap();
    let level: Uuid = sqlx::query_scalar(
        "INSERT INTO levels (world_id, title, order_index) VALUES ($1, 'Basics', 0) RETURNING id",
    )
    .bind(world)
    .fetch_one(app.db())
    .await
    .unwrap();
    let lesson: Uuid = sqlx::query_scalar(
        "INSERT INTO lessons (level_id, title, order_index, video_url, week_number, day_number)
         VALUES ($1, 'The Basic', 1, 'https://example.com/v.mp4', 1, 1) RETURNING id",
    )
    .bind(level)
    .fetch_one(app.db())
    .await
    .unwrap();
    Content {
        world,
        level,
        lesson,
    }
}

async fn upload_token(app: &TestApp, admin: &TestUser) -> String {
    let (s, v) = app
        .call("POST", "/api/mux/upload-token", Some(admin), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["expires_in"], 300);
    v["token"].as_str().unwrap().to_string()
}

fn claims(token: &str) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

async fn uploads(mux: &MockServer) -> usize {
    mux.received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == "/video/v1/uploads")
        .count()
}

/// actor_id, target_type, target_id, after.
type AuditRow = (Option<Uuid>, String, Option<String>, Option<Value>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_tokens_are_issued_to_admins_and_audited() {
    let mux = MockServer::start().await;
    let app = mux_app(&mux).await;
    let admin = app.admin().await;
    let student = app.student().await;

    let (s, v) = app.call("POST", "/api/mux/upload-token", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    let (s, v) = app
        .call("POST", "/api/mux/upload-token", Some(&student), None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v, json!({"detail": "Not enough permissions"}));

    let before = chrono::Utc::now().timestamp();
    let token = upload_token(&app, &admin).await;
    let c = claims(&token);
    assert_eq!(c["sub"], admin.id.to_string());
    assert_eq!(c["type"], "upload");
    let exp = c["exp"].as_i64().unwrap();
    assert!(
        (before + 299..=chrono::Utc::now().timestamp() + 301).contains(&exp),
        "{c}"
    );
    let header: Value = {
        use base64::Engine;
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(header["alg"], "HS256");

    let rows: Vec<AuditRow> = sqlx::query_as(
        "SELECT actor_id, target_type, target_id, after FROM audit_log
         WHERE action = 'mux.upload_token'",
    )
    .fetch_all(app.db())
    .await
    .unwrap();
    assert_eq!(rows.len(), 1, "only the admin's request is audited");
    let (actor, target_type, target_id, after) = &rows[0];
    assert_eq!(*actor, Some(admin.id));
    assert_eq!(target_type, "user");
    assert_eq!(target_id.as_deref(), Some(admin.id.to_string().as_str()));
    let after = after.as_ref().unwrap();
    assert_eq!(after["expires_in"], 300);
    assert!(
        !after.to_string().contains(&token),
        "the token is not recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_tokens_work_only_on_upload_url_for_content_while_the_subject_is_admin() {
    let mux = MockServer::start().await;
    mount_create_upload(&mux).await;
    let app = mux_app(&mux).await;
    let admin = app.admin().await;
    let student = app.student().await;
    let c = content(&app).await;
    let token = upload_token(&app, &admin).await;
    let unauthorized = json!({"detail": "Could not validate credentials"});

    // Accepted: ?token= on upload-url for a lesson (MuxUploader's query
    // format), a course and a level (body format).
    let (s, v) = json(
        app.post(&format!(
            "/api/mux/upload-url?lesson_id={}&token={token}",
            c.lesson
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({"url": "https://storage.googleapis.com/video-storage/up-1", "uploadId": "up-1"})
    );
    for body in [
        json!({"course_id": c.world.to_string()}),
        json!({"level_id": c.level.to_string()}),
        json!({"lesson_id": c.lesson.to_string()}),
    ] {
        let (s, v) = json(
            app.post(&format!("/api/mux/upload-url?token={token}"))
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{body}: {v}");
        assert_eq!(v["status"], "success");
    }
    assert_eq!(uploads(&mux).await, 4);
    // The admin's own access token keeps working on ?token=.
    let (s, v) = json(
        app.post(&format!(
            "/api/mux/upload-url?lesson_id={}&token={}",
            c.lesson, admin.token
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(uploads(&mux).await, 5);

    // Refused on upload-url for anything but content.
    let post: Uuid = sqlx::query_scalar(
        "INSERT INTO posts (user_id, post_type, title, body, tags)
         VALUES ($1, 'stage', 'My shines', 'body', ARRAY['mambo']) RETURNING id",
    )
    .bind(admin.id)
    .fetch_one(app.db())
    .await
    .unwrap();
    for (q, body) in [
        (format!("?post_id={post}&token={token}"), json!({})),
        (format!("?token={token}"), json!({})),
        (
            format!("?token={token}"),
            json!({"post_id": post.to_string()}),
        ),
    ] {
        let (s, v) = json(
            app.post(&format!("/api/mux/upload-url{q}"))
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{q} {body}: {v}");
        assert_eq!(v, unauthorized);
    }
    // As a bearer or the cookie, even on upload-url, it is no credential.
    let (s, v) = json(
        app.post("/api/mux/upload-url")
            .header("Authorization", format!("Bearer {token}"))
            .json(&json!({"lesson_id": c.lesson.to_string()}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, &v), (StatusCode::UNAUTHORIZED, &unauthorized), "bearer");
    let (s, v) = json(
        app.post("/api/mux/upload-url")
            .header("cookie", format!("access_token={token}"))
            .json(&json!({"lesson_id": c.lesson.to_string()}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, &v), (StatusCode::UNAUTHORIZED, &unauthorized), "cookie");
    assert_eq!(
        uploads(&mux).await,
        5,
        "no upload made with a refused token"
    );

    // Anywhere else: 401 as a bearer, as the cookie and as the SSE ?token=.
    for p in [
        "/api/auth/me",
        "/api/users/me",
        "/api/mux/asset/a1/exists",
        "/api/admin/courses",
    ] {
        let (s, v) = json(
            app.get(p)
                .header("Authorization", format!("Bearer {token}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (s, &v),
            (StatusCode::UNAUTHORIZED, &unauthorized),
            "bearer {p}"
        );
        let (s, v) = json(
            app.get(p)
                .header("cookie", format!("access_token={token}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (s, &v),
            (StatusCode::UNAUTHORIZED, &unauthorized),
            "cookie {p}"
        );
    }
    let (s, v) = json(
        app.post("/api/mux/upload-token")
            .header("Authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, &v),
        (StatusCode::UNAUTHORIZED, &unauthorized),
        "no token from a token"
    );
    let resp = app
        .get(&format!("/api/notifications/stream?token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (_, v) = json(resp).await;
    assert_eq!(v, unauthorized);
    // A student's upload-url rights are not widened by an admin's token either
    // (the header user decides a post upload; the token is not used).
    let own: Uuid = sqlx::query_scalar(
        "INSERT INTO posts (user_id, post_type, title, body, tags)
         VALUES ($1, 'stage', 'Mine', 'body', ARRAY['mambo']) RETURNING id",
    )
    .bind(student.id)
    .fetch_one(app.db())
    .await
    .unwrap();
    let (s, v) = json(
        app.post(&format!("/api/mux/upload-url?post_id={post}&token={token}"))
            .header("Authorization", student.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "someone else's post: {v}");
    let (s, v) = json(
        app.post(&format!("/api/mux/upload-url?post_id={own}&token={token}"))
            .header("Authorization", student.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "the student's own post: {v}");
    let uploads_before = uploads(&mux).await;

    // Once the subject is no longer an admin, the token is refused.
    sqlx::query("UPDATE users SET role = 'student' WHERE id = $1")
        .bind(admin.id)
        .execute(app.db())
        .await
        .unwrap();
    let refused = eventually(10, || async {
        let (s, v) = json(
            app.post(&format!(
                "/api/mux/upload-url?lesson_id={}&token={token}",
                c.lesson
            ))
            .send()
            .await
            .unwrap(),
        )
        .await;
        (s == StatusCode::UNAUTHORIZED).then_some(v)
    })
    .await
    .expect("the demoted admin's upload token is refused");
    assert_eq!(refused, unauthorized);
    let (s, v) = json(
        app.post(&format!("/api/mux/upload-url?token={token}"))
            .json(&json!({"course_id": c.world.to_string()}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, &v), (StatusCode::UNAUTHORIZED, &unauthorized));
    assert_eq!(uploads(&mux).await, uploads_before);

    // A student's access token on ?token= is still the existing 403.
    let (s, _) = json(
        app.post(&format!(
            "/api/mux/upload-url?lesson_id={}&token={}",
            c.lesson, student.token
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_tokens_die_with_sign_out_everywhere() {
    let mux = MockServer::start().await;
    mount_create_upload(&mux).await;
    let app = mux_app(&mux).await;
    let admin = app.admin().await;
    let c = content(&app).await;
    let token = upload_token(&app, &admin).await;
    sqlx::query("UPDATE users SET tokens_valid_after = now() + interval '1 second' WHERE id = $1")
        .bind(admin.id)
        .execute(app.db())
        .await
        .unwrap();
    let refused = eventually(10, || async {
        let (s, v) = json(
            app.post(&format!(
                "/api/mux/upload-url?lesson_id={}&token={token}",
                c.lesson
            ))
            .send()
            .await
            .unwrap(),
        )
        .await;
        (s == StatusCode::UNAUTHORIZED).then_some(v)
    })
    .await
    .expect("a revoked upload token is refused");
    assert_eq!(refused, json!({"detail": "Could not validate credentials"}));
    assert_eq!(uploads(&mux).await, 0);
}
