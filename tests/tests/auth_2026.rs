//! The May 2026 frontend's auth (API-2026-05.md N5.1, N5.7): send-verification
//! and its limits (shared with N3's resend, keyed by the settings revision),
//! verify-email and reset-password signing in with login's cookies, optional
//! names and first-touch attribution on registration and the waitlist (stored
//! once, never returned, cleared by deletion), the per-client registration and
//! waitlist limits, the waitlist honeypot, and forgot-password naming the
//! OAuth provider.

use mambo_core::identity;
use mambo_core::jobs::AccountDeletionJob;
use mambo_core::privacy::deletion;
use mambo_tests::{Options, StatusCode, TestApp, TestUser, json};
use serde_json::{Value, json};
use uuid::Uuid;

const PASSWORD: &str = "Salsa0n2Rocks";
const FORGOT_MESSAGE: &str = "If the email exists, a password reset link has been sent.";
const PER_USER: &str =
    "Too many verification email requests. Please wait a few minutes before trying again.";
const PER_IP: &str =
    "Too many verification email requests from this network. Please try again later.";

/// The May 2026 frontend's register body: no names, no level.
fn lean_body(email: &str, username: &str) -> Value {
    json!({
        "email": email,
        "username": username,
        "password": PASSWORD,
        "confirm_password": PASSWORD,
    })
}

async fn post(app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
    app.post(path).json(body).send().await.unwrap()
}

async fn register(app: &TestApp, body: &Value) -> (StatusCode, Value) {
    json(post(app, "/api/auth/register", body).await).await
}

/// Registers with the lean body; returns (users.id, access token).
async fn registered(app: &TestApp, email: &str, username: &str) -> (Uuid, String) {
    let (s, v) = register(app, &lean_body(email, username)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(email)
        .fetch_one(app.db())
        .await
        .unwrap();
    (id, v["access_token"].as_str().unwrap().to_string())
}

fn set_cookies(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

fn cookie<'a>(cookies: &'a [String], name: &str) -> Option<&'a String> {
    cookies.iter().find(|c| c.starts_with(&format!("{name}=")))
}

fn cookie_value(cookies: &[String], name: &str) -> String {
    let c = cookie(cookies, name).unwrap_or_else(|| panic!("no {name} cookie in {cookies:?}"));
    c[name.len() + 1..].split(';').next().unwrap().to_string()
}

/// A cookie's attributes (everything after its value).
fn attributes(cookies: &[String], name: &str) -> String {
    let c = cookie(cookies, name).unwrap_or_else(|| panic!("no {name} cookie in {cookies:?}"));
    c.split_once(';').unwrap().1.to_string()
}

/// The cookies login sets, for comparison.
async fn login_cookies(app: &TestApp, email: &str, password: &str) -> Vec<String> {
    let resp = post(
        app,
        "/api/auth/token",
        &json!({"email": email, "password": password}),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    set_cookies(&resp)
}

/// Both cookies carry exactly the attributes login's carry.
fn assert_login_cookies(got: &[String], login: &[String]) {
    for name in ["access_token", "refresh_token"] {
        assert_eq!(attributes(got, name), attributes(login, name), "{name}");
        assert!(!cookie_value(got, name).is_empty(), "{name}");
    }
    assert_eq!(got.len(), 2, "{got:?}");
}

async fn me_with_cookie(app: &TestApp, access: &str) -> StatusCode {
    app.get("/api/auth/me")
        .header("Cookie", format!("access_token={access}"))
        .send()
        .await
        .unwrap()
        .status()
}

async fn outbox(app: &TestApp, template: &str, to: &str) -> Vec<Value> {
    sqlx::query_scalar(
        "SELECT payload FROM job_outbox
         WHERE queue = 'email' AND payload->>'template' = $1 AND payload->'to'->>0 = $2
         ORDER BY created_at, id",
    )
    .bind(template)
    .bind(to)
    .fetch_all(app.db())
    .await
    .unwrap()
}

/// The `token=` of the last email of `template` to `to`.
async fn last_link_token(app: &TestApp, template: &str, to: &str) -> String {
    let jobs = outbox(app, template, to).await;
    let text = jobs.last().expect("an email")["text"]
        .as_str()
        .unwrap()
        .to_string();
    let start = text.find("token=").unwrap() + "token=".len();
    text[start..]
        .split(char::is_whitespace)
        .next()
        .unwrap()
        .to_string()
}

async fn count(app: &TestApp, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(app.db()).await.unwrap()
}

fn retry_after(resp: &reqwest::Response) -> u64 {
    resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn unverified(app: &TestApp) -> TestUser {
    let u = app.student().await;
    sqlx::query("UPDATE users SET is_verified = false WHERE id = $1")
        .bind(u.id)
        .execute(app.db())
        .await
        .unwrap();
    u
}

async fn send_verification(app: &TestApp, u: &TestUser) -> reqwest::Response {
    app.post("/api/auth/send-verification")
        .bearer_auth(&u.token)
        .send()
        .await
        .unwrap()
}

async fn resend_verification(app: &TestApp, u: &TestUser) -> StatusCode {
    app.post("/api/auth/resend-verification")
        .bearer_auth(&u.token)
        .send()
        .await
        .unwrap()
        .status()
}

type FirstTouchRow = (
    Option<String>,
    Option<Value>,
    Option<String>,
    Option<String>,
    Option<chrono::DateTime<chrono::Utc>>,
);

async fn first_touch(app: &TestApp, id: Uuid) -> FirstTouchRow {
    sqlx::query_as(
        "SELECT first_touch_fbclid, first_touch_utm, first_touch_landing_url,
                first_touch_referrer, first_touch_at
         FROM user_profiles WHERE user_id = $1",
    )
    .bind(id)
    .fetch_one(app.db())
    .await
    .unwrap()
}

// ---------------------------------------------------------------------------
// send-verification
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_verification_answers_its_shape_and_limits_per_user() {
    let app = TestApp::spawn_api_only().await;

    // Verified: 200, nothing sent, no window used.
    let verified = app.student().await;
    for _ in 0..5 {
        let (s, v) = json(send_verification(&app, &verified).await).await;
        assert_eq!(
            (s, v),
            (
                StatusCode::OK,
                json!({"message": "Email already verified", "is_verified": true})
            )
        );
    }
    assert!(
        outbox(&app, "email_verification", &verified.email)
            .await
            .is_empty()
    );
    // N3's route keeps its 400.
    assert_eq!(
        resend_verification(&app, &verified).await,
        StatusCode::BAD_REQUEST
    );

    // Unverified: 3 sends (the default) per 10 minutes, then 429.
    let u = unverified(&app).await;
    for i in 0..3 {
        let (s, v) = json(send_verification(&app, &u).await).await;
        assert_eq!(
            (s, v),
            (
                StatusCode::OK,
                json!({"message": "Verification email sent", "is_verified": false})
            ),
            "send {i}"
        );
    }
    let resp = send_verification(&app, &u).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry = retry_after(&resp);
    assert!((1..=600).contains(&retry), "{retry}");
    assert_eq!(json(resp).await.1, json!({"detail": PER_USER}));
    assert_eq!(outbox(&app, "email_verification", &u.email).await.len(), 3);
    // Each link is fresh and works once.
    let token = last_link_token(&app, "email_verification", &u.email).await;
    let resp = post(&app, "/api/auth/verify-email", &json!({"token": token})).await;
    assert_eq!(resp.status(), StatusCode::OK);

    // Anonymous: 401.
    let s = app
        .post("/api/auth/send-verification")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_routes_share_the_per_user_budget() {
    let app = TestApp::spawn_api_only().await;

    // Two through N3's route, then send-verification has one left.
    let a = unverified(&app).await;
    for _ in 0..2 {
        assert_eq!(resend_verification(&app, &a).await, StatusCode::OK);
    }
    assert_eq!(send_verification(&app, &a).await.status(), StatusCode::OK);
    let resp = send_verification(&app, &a).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(json(resp).await.1, json!({"detail": PER_USER}));

    // Three through send-verification use N3's hourly three as well.
    let b = unverified(&app).await;
    for _ in 0..3 {
        assert_eq!(send_verification(&app, &b).await.status(), StatusCode::OK);
    }
    assert_eq!(
        resend_verification(&app, &b).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        send_verification(&app, &b).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Alternating: never more than three emails in all.
    let c = unverified(&app).await;
    let mut sent = 0;
    for i in 0..8 {
        let ok = if i % 2 == 0 {
            send_verification(&app, &c).await.status() == StatusCode::OK
        } else {
            resend_verification(&app, &c).await == StatusCode::OK
        };
        sent += ok as usize;
    }
    assert_eq!(sent, 3);
    assert_eq!(outbox(&app, "email_verification", &c.email).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ip_limit_counts_only_passing_requests_and_windows_follow_the_revision() {
    let app = TestApp::spawn_api_only().await;
    let admin = app.admin().await;
    app.set_settings(
        &admin,
        json!({"auth": {"send_verification_per_user": 1, "send_verification_ip_per_hour": 3}}),
    )
    .await;

    // A: one send, then refused per user three times (not counted per IP).
    let a = unverified(&app).await;
    assert_eq!(send_verification(&app, &a).await.status(), StatusCode::OK);
    for _ in 0..3 {
        let resp = send_verification(&app, &a).await;
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(json(resp).await.1, json!({"detail": PER_USER}));
    }
    // B and C fit in the address's three; D does not.
    for _ in 0..2 {
        let u = unverified(&app).await;
        assert_eq!(send_verification(&app, &u).await.status(), StatusCode::OK);
    }
    let d = unverified(&app).await;
    let resp = send_verification(&app, &d).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry = retry_after(&resp);
    assert!((1..=3600).contains(&retry), "{retry}");
    assert_eq!(json(resp).await.1, json!({"detail": PER_IP}));
    // Refused per address: D's own window did not count it.
    assert!(
        outbox(&app, "email_verification", &d.email)
            .await
            .is_empty()
    );

    // A new revision starts new windows: D and A send again.
    let settings = app
        .set_settings(
            &admin,
            json!({"auth": {"send_verification_ip_per_hour": 4}}),
        )
        .await;
    let revision = settings["revision"].as_i64().unwrap();
    assert_eq!(send_verification(&app, &d).await.status(), StatusCode::OK);
    assert_eq!(send_verification(&app, &a).await.status(), StatusCode::OK);
    // The windows are keyed `rate_limit:{action}:{revision}:{id}`.
    let mut conn = app.ctx.redis.conn();
    let key = app
        .ctx
        .redis
        .key(&format!("rate_limit:send_verification:{revision}:{}", d.id));
    let n: Option<i64> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, Some(1));
}

// ---------------------------------------------------------------------------
// verify-email and reset-password sign in
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_email_signs_in_with_login_cookies_and_failures_set_none() {
    let app = TestApp::spawn_api_only().await;
    let email = "verify@example.com";
    registered(&app, email, "verifier").await;
    let login = login_cookies(&app, email, PASSWORD).await;
    let token = last_link_token(&app, "email_verification", email).await;

    let resp = post(&app, "/api/auth/verify-email", &json!({"token": token})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let cookies = set_cookies(&resp);
    assert_eq!(json(resp).await.1, json!({"message": "Email verified"}));
    assert_login_cookies(&cookies, &login);
    // The cookie is a working session.
    let access = cookie_value(&cookies, "access_token");
    assert_eq!(me_with_cookie(&app, &access).await, StatusCode::OK);
    let refresh = app
        .post("/api/auth/refresh")
        .header(
            "Cookie",
            format!("refresh_token={}", cookie_value(&cookies, "refresh_token")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(refresh.status(), StatusCode::OK);

    // A used, a forged and a missing token: 400/422 and no cookie.
    for body in [
        json!({"token": token}),
        json!({"token": "forged.token.here"}),
        json!({}),
    ] {
        let resp = post(&app, "/api/auth/verify-email", &body).await;
        assert!(resp.status().is_client_error(), "{body}");
        assert!(set_cookies(&resp).is_empty(), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_password_signs_in_after_revoking_older_sessions() {
    let app = TestApp::spawn_api_only().await;
    let email = "reset@example.com";
    let (_, old_token) = registered(&app, email, "resetter").await;
    let login = login_cookies(&app, email, PASSWORD).await;
    let old_cookie = cookie_value(&login, "access_token");

    let resp = post(&app, "/api/auth/forgot-password", &json!({"email": email})).await;
    assert_eq!(json(resp).await.1, json!({"message": FORGOT_MESSAGE}));
    let token = last_link_token(&app, "password_reset", email).await;

    // Failures first: a mismatch (422) and a forged token (400) set no cookie.
    for body in [
        json!({"token": token, "new_password": "NewPassw0rd", "confirm_password": "Other0pass"}),
        json!({"token": "x.y.z", "new_password": "NewPassw0rd", "confirm_password": "NewPassw0rd"}),
    ] {
        let resp = post(&app, "/api/auth/reset-password", &body).await;
        assert!(resp.status().is_client_error());
        assert!(set_cookies(&resp).is_empty());
    }

    let body =
        json!({"token": token, "new_password": "NewPassw0rd", "confirm_password": "NewPassw0rd"});
    let resp = post(&app, "/api/auth/reset-password", &body).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let cookies = set_cookies(&resp);
    assert_eq!(
        json(resp).await.1,
        json!({"message": "Password reset successfully"})
    );
    assert_login_cookies(&cookies, &login);

    // Older sessions are gone; the new one survives the revocation.
    let s = app
        .get("/api/auth/me")
        .bearer_auth(&old_token)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        me_with_cookie(&app, &old_cookie).await,
        StatusCode::UNAUTHORIZED
    );
    let access = cookie_value(&cookies, "access_token");
    assert_eq!(me_with_cookie(&app, &access).await, StatusCode::OK);

    // The token was single use: no cookie the second time.
    let resp = post(&app, "/api/auth/reset-password", &body).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(set_cookies(&resp).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_scheduled_for_deletion_get_the_invalid_token_400_and_no_cookie() {
    let app = TestApp::spawn_api_only().await;
    let email = "leaving@example.com";
    let (id, token) = registered(&app, email, "leaving").await;
    let verify_token = last_link_token(&app, "email_verification", email).await;
    let hash: Option<String> =
        sqlx::query_scalar("SELECT hashed_password FROM users WHERE id = $1")
            .bind(id)
            .fetch_one(app.db())
            .await
            .unwrap();
    let reset_token = identity::create_reset_token(&app.ctx, id, hash.as_deref());

    let (s, v) = json(
        app.delete("/api/users/me")
            .bearer_auth(&token)
            .json(&json!({"password": PASSWORD}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");

    let resp = post(
        &app,
        "/api/auth/verify-email",
        &json!({"token": verify_token}),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(set_cookies(&resp).is_empty());
    assert_eq!(
        json(resp).await.1,
        json!({"detail": "Invalid or expired verification token"})
    );
    let resp = post(
        &app,
        "/api/auth/reset-password",
        &json!({"token": reset_token, "new_password": "NewPassw0rd", "confirm_password": "NewPassw0rd"}),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(set_cookies(&resp).is_empty());
    assert_eq!(
        json(resp).await.1,
        json!({"detail": "Invalid or expired reset token"})
    );
    // Nothing changed: the link is unused, the account unverified, the password kept.
    let used = count(
        &app,
        "SELECT count(*) FROM email_verifications WHERE used_at IS NOT NULL",
    )
    .await;
    assert_eq!(used, 0);
    let (verified, same_hash): (bool, bool) =
        sqlx::query_as("SELECT is_verified, hashed_password = $2 FROM users WHERE id = $1")
            .bind(id)
            .bind(&hash)
            .fetch_one(app.db())
            .await
            .unwrap();
    assert!(!verified);
    assert!(same_hash);
}

// ---------------------------------------------------------------------------
// Registration: optional names, attribution
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_optional_and_attribution_is_stored_once_never_returned() {
    let app = TestApp::spawn_api_only().await;
    let mut body = lean_body("lean@example.com", "Lean_Dancer");
    body["fbclid"] = json!("IwAR0abc");
    body["utm"] = json!({"utm_source": "facebook", "utm_campaign": "spring"});
    body["landing_url"] = json!("https://mamboguild.com/?utm_source=facebook");
    let resp = app
        .post("/api/auth/register")
        .header("Referer", "https://l.facebook.com/")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let cookies = set_cookies(&resp);
    let (_, v) = json(resp).await;
    assert_eq!(v["token_type"], "bearer");
    assert_eq!(cookies.len(), 2);
    let token = v["access_token"].as_str().unwrap().to_string();
    let id: Uuid = sqlx::query_scalar("SELECT id FROM users WHERE email = 'lean@example.com'")
        .fetch_one(app.db())
        .await
        .unwrap();
    let names: (String, String, String, String) = sqlx::query_as(
        "SELECT first_name, last_name, current_level_tag, username FROM user_profiles WHERE user_id = $1",
    )
    .bind(id)
    .fetch_one(app.db())
    .await
    .unwrap();
    assert_eq!(
        names,
        (
            "lean_dancer".into(),
            "".into(),
            "Beginner".into(),
            "lean_dancer".into()
        )
    );
    let (fbclid, utm, landing, referrer, at) = first_touch(&app, id).await;
    assert_eq!(fbclid.as_deref(), Some("IwAR0abc"));
    assert_eq!(
        utm,
        Some(json!({"utm_source": "facebook", "utm_campaign": "spring"}))
    );
    assert_eq!(
        landing.as_deref(),
        Some("https://mamboguild.com/?utm_source=facebook")
    );
    assert_eq!(referrer.as_deref(), Some("https://l.facebook.com/"));
    assert!(at.is_some());
    // Never returned to the user.
    for path in ["/api/auth/me", "/api/users/me"] {
        let (s, me) = json(app.get(path).bearer_auth(&token).send().await.unwrap()).await;
        assert_eq!(s, StatusCode::OK);
        let text = me.to_string();
        assert!(
            !text.contains("IwAR0abc") && !text.contains("first_touch"),
            "{path}: {text}"
        );
    }

    // The seed frontend's body still works as before; no attribution, nothing stored.
    let mut seed = lean_body("seed@example.com", "seeder");
    seed["first_name"] = json!(" Ana ");
    seed["last_name"] = json!("Mambo");
    seed["current_level_tag"] = json!("intermediate");
    let (s, _) = register(&app, &seed).await;
    assert_eq!(s, StatusCode::CREATED);
    let seed_id: Uuid = sqlx::query_scalar("SELECT id FROM users WHERE email = 'seed@example.com'")
        .fetch_one(app.db())
        .await
        .unwrap();
    let names: (String, String, String) = sqlx::query_as(
        "SELECT first_name, last_name, current_level_tag FROM user_profiles WHERE user_id = $1",
    )
    .bind(seed_id)
    .fetch_one(app.db())
    .await
    .unwrap();
    assert_eq!(names, ("Ana".into(), "Mambo".into(), "Intermediate".into()));
    assert_eq!(
        first_touch(&app, seed_id).await,
        (None, None, None, None, None)
    );

    // The frontend's explicit nulls are accepted.
    let mut nulls = lean_body("nulls@example.com", "nuller");
    nulls["fbclid"] = Value::Null;
    nulls["utm"] = Value::Null;
    nulls["landing_url"] = Value::Null;
    assert_eq!(register(&app, &nulls).await.0, StatusCode::CREATED);

    // The waitlist stores them on its row; claiming the account keeps them.
    let resp = app
        .post("/api/auth/waitlist")
        .header("Referer", "https://instagram.com/")
        .json(&json!({
            "email": "wait@example.com", "username": "waiter", "hp": "",
            "fbclid": "fb-wait", "utm": {"utm_medium": "story"}, "landing_url": null,
        }))
        .send()
        .await
        .unwrap();
    let (s, v) = json(resp).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let waiting: Uuid = v["user_id"].as_str().unwrap().parse().unwrap();
    let (fbclid, utm, landing, referrer, at) = first_touch(&app, waiting).await;
    assert_eq!(fbclid.as_deref(), Some("fb-wait"));
    assert_eq!(utm, Some(json!({"utm_medium": "story"})));
    assert_eq!(landing, None);
    assert_eq!(referrer.as_deref(), Some("https://instagram.com/"));
    assert!(at.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attribution_of_the_wrong_type_or_length_is_422_and_writes_nothing() {
    let app = TestApp::spawn_api_only().await;
    let many: serde_json::Map<String, Value> =
        (0..21).map(|i| (format!("k{i}"), json!("v"))).collect();
    let cases = [
        (
            "fbclid",
            json!("f".repeat(256)),
            json!(["body", "fbclid"]),
            "string_too_long",
        ),
        (
            "fbclid",
            json!(12),
            json!(["body", "fbclid"]),
            "string_type",
        ),
        (
            "landing_url",
            json!("u".repeat(501)),
            json!(["body", "landing_url"]),
            "string_too_long",
        ),
        (
            "landing_url",
            json!(["x"]),
            json!(["body", "landing_url"]),
            "string_type",
        ),
        (
            "utm",
            json!("utm_source=fb"),
            json!(["body", "utm"]),
            "dict_type",
        ),
        (
            "utm",
            Value::Object(many),
            json!(["body", "utm"]),
            "too_long",
        ),
        (
            "utm",
            json!({"utm_source": 3}),
            json!(["body", "utm", "utm_source"]),
            "string_type",
        ),
        (
            "utm",
            json!({"utm_term": "t".repeat(201)}),
            json!(["body", "utm", "utm_term"]),
            "string_too_long",
        ),
        (
            "utm",
            json!({"k".repeat(51): "v"}),
            json!(["body", "utm", "k".repeat(51), "[key]"]),
            "string_too_long",
        ),
    ];
    for (i, (field, value, loc, kind)) in cases.iter().enumerate() {
        let mut body = lean_body(&format!("bad{i}@example.com"), &format!("bad_{i}"));
        body[*field] = value.clone();
        let (s, v) = register(&app, &body).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{field} {value}: {v}");
        let detail = v["detail"].as_array().unwrap();
        assert!(
            detail
                .iter()
                .any(|e| e["loc"] == *loc && e["type"] == *kind),
            "{field}: {v}"
        );
        let mut body =
            json!({"email": format!("wbad{i}@example.com"), "username": format!("wbad_{i}")});
        body[*field] = value.clone();
        let (s, v) = json(post(&app, "/api/auth/waitlist", &body).await).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "waitlist {field}: {v}");
    }
    // At the limits: accepted.
    let mut body = lean_body("edge@example.com", "edge");
    body["fbclid"] = json!("f".repeat(255));
    body["landing_url"] = json!("u".repeat(500));
    body["utm"] = Value::Object(
        (0..20)
            .map(|i| (format!("{i}{}", "k".repeat(48)), json!("v".repeat(200))))
            .collect(),
    );
    let (s, v) = register(&app, &body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_deletion_clears_the_first_touch() {
    let app = TestApp::spawn_api_only().await;
    let mut body = lean_body("gone@example.com", "gone");
    body["fbclid"] = json!("fb-gone");
    body["utm"] = json!({"utm_source": "ig"});
    body["landing_url"] = json!("https://mamboguild.com/l");
    let resp = app
        .post("/api/auth/register")
        .header("Referer", "https://ref.example/")
        .json(&body)
        .send()
        .await
        .unwrap();
    let (s, v) = json(resp).await;
    assert_eq!(s, StatusCode::CREATED);
    let token = v["access_token"].as_str().unwrap();
    let id: Uuid = sqlx::query_scalar("SELECT id FROM users WHERE email = 'gone@example.com'")
        .fetch_one(app.db())
        .await
        .unwrap();
    assert!(first_touch(&app, id).await.0.is_some());
    let s = app
        .delete("/api/users/me")
        .bearer_auth(token)
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, StatusCode::ACCEPTED);
    deletion::run(&app.ctx, &AccountDeletionJob { user_id: id })
        .await
        .unwrap();
    assert_eq!(first_touch(&app, id).await, (None, None, None, None, None));
}

// ---------------------------------------------------------------------------
// Per-client limits of registration and the waitlist
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_limits_per_client_come_before_the_body_and_count_every_request() {
    let app = TestApp::spawn_api_only().await;
    // Off by default.
    for i in 0..4 {
        let (s, v) = register(
            &app,
            &lean_body(&format!("d{i}@example.com"), &format!("d_{i}")),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let admin = app.admin().await;
    app.set_settings(&admin, json!({"auth": {"register_ip_per_hour": 2}}))
        .await;
    // A bad body and a good one use the two.
    assert_eq!(
        register(&app, &json!({"email": "x"})).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        register(&app, &lean_body("h1@example.com", "h_1")).await.0,
        StatusCode::CREATED
    );
    for body in [
        lean_body("h2@example.com", "h_2"),
        json!({"email": 5}),
        json!([]),
    ] {
        let resp = post(&app, "/api/auth/register", &body).await;
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS, "{body}");
        let retry = retry_after(&resp);
        assert!((1..=3600).contains(&retry), "{retry}");
        assert_eq!(
            json(resp).await.1,
            json!({"detail": "Too many registration attempts. Please try again later."})
        );
    }
    // The daily limit, under a new revision (fresh windows).
    app.set_settings(
        &admin,
        json!({"auth": {"register_ip_per_hour": 0, "register_ip_per_day": 1}}),
    )
    .await;
    assert_eq!(
        register(&app, &lean_body("day1@example.com", "day_1"))
            .await
            .0,
        StatusCode::CREATED
    );
    let resp = post(
        &app,
        "/api/auth/register",
        &lean_body("day2@example.com", "day_2"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry = retry_after(&resp);
    assert!((3600..=86400).contains(&retry), "{retry}");
    assert_eq!(
        json(resp).await.1,
        json!({"detail": "Daily registration limit reached. Please try again tomorrow."})
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM users WHERE email LIKE 'day2%'").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_limits_fail_open_when_redis_is_down() {
    let app = TestApp::spawn_with(Options {
        worker: false,
        vars: vec![("REDIS_URL".into(), "redis://127.0.0.1:1".into())],
    })
    .await;
    let admin = app.admin().await;
    app.set_settings(
        &admin,
        json!({"auth": {"register_ip_per_hour": 1, "register_ip_per_day": 1, "waitlist_ip_per_hour": 1}}),
    )
    .await;
    for i in 0..3 {
        let (s, v) = register(
            &app,
            &lean_body(&format!("o{i}@example.com"), &format!("o_{i}")),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let (s, v) = json(
            post(
                &app,
                "/api/auth/waitlist",
                &json!({"email": format!("ow{i}@example.com"), "username": format!("ow_{i}")}),
            )
            .await,
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waitlist_honeypot_answers_normally_and_changes_nothing() {
    let app = TestApp::spawn_api_only().await;
    let referrer = app.student().await;
    let code: String =
        sqlx::query_scalar("SELECT referral_code FROM user_profiles WHERE user_id = $1")
            .bind(referrer.id)
            .fetch_one(app.db())
            .await
            .unwrap();
    let users = count(&app, "SELECT count(*) FROM users").await;
    let outbox_rows = count(&app, "SELECT count(*) FROM job_outbox").await;
    let resp = app
        .post("/api/auth/waitlist")
        .header("Referer", "https://bot.example/")
        .json(&json!({
            "email": "bot@example.com", "username": "botty", "referrer_code": code,
            "hp": "http://spam.example", "fbclid": "fb", "utm": {"utm_source": "x"},
        }))
        .send()
        .await
        .unwrap();
    let (s, v) = json(resp).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let mut keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["message", "position", "referral_code", "user_id"]);
    assert_eq!(v["message"], "Welcome to the Inner Circle.");
    assert!(v["user_id"].as_str().unwrap().parse::<Uuid>().is_ok());
    let rc = v["referral_code"].as_str().unwrap();
    assert!(
        rc.len() == 8
            && rc
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()),
        "{rc}"
    );
    assert!(v["position"].as_i64().unwrap() >= 1);
    // Nothing at all happened.
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, users);
    assert_eq!(
        count(&app, "SELECT count(*) FROM job_outbox").await,
        outbox_rows
    );
    assert_eq!(count(&app, "SELECT count(*) FROM user_badges").await, 0);
    let referrals: i32 =
        sqlx::query_scalar("SELECT referral_count FROM user_profiles WHERE user_id = $1")
            .bind(referrer.id)
            .fetch_one(app.db())
            .await
            .unwrap();
    assert_eq!(referrals, 0);
    // Even an email already on the list or taken gets the 201.
    let (s, _) = json(
        post(
            &app,
            "/api/auth/waitlist",
            &json!({"email": referrer.email, "username": "other", "hp": "x"}),
        )
        .await,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);

    // An empty honeypot is a person: the usual effects.
    let (s, v) = json(
        post(
            &app,
            "/api/auth/waitlist",
            &json!({"email": "person@example.com", "username": "person", "hp": "", "referrer_code": code}),
        )
        .await,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, users + 1);
    let referrals: i32 =
        sqlx::query_scalar("SELECT referral_count FROM user_profiles WHERE user_id = $1")
            .bind(referrer.id)
            .fetch_one(app.db())
            .await
            .unwrap();
    assert_eq!(referrals, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waitlist_limit_per_client_is_checked_first() {
    let app = TestApp::spawn_api_only().await;
    let admin = app.admin().await;
    app.set_settings(&admin, json!({"auth": {"waitlist_ip_per_hour": 2}}))
        .await;
    let (s, _) = json(
        post(
            &app,
            "/api/auth/waitlist",
            &json!({"email": "w1@example.com", "username": "w_1"}),
        )
        .await,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = json(
        post(
            &app,
            "/api/auth/waitlist",
            &json!({"email": "w2@example.com", "username": "w_2", "hp": "bot"}),
        )
        .await,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    for body in [
        json!({"email": "w3@example.com", "username": "w_3"}),
        json!({"email": "w4@example.com", "username": "w_4", "hp": "bot"}),
        json!({"email": 3}),
    ] {
        let resp = post(&app, "/api/auth/waitlist", &body).await;
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert!(retry_after(&resp) >= 1);
        assert_eq!(
            json(resp).await.1,
            json!({"detail": "Too many sign-ups from this location. Please try again later."})
        );
    }
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM users WHERE email LIKE 'w%@example.com'"
        )
        .await,
        1
    );
}

// ---------------------------------------------------------------------------
// forgot-password for OAuth accounts
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgot_password_names_the_oauth_provider_and_sends_nothing() {
    let app = TestApp::spawn_api_only().await;
    let mut oauth = vec![];
    for provider in ["google", "apple"] {
        let u = app.student().await;
        sqlx::query(
            "UPDATE users SET auth_provider = $2, social_id = $2 || '-1', hashed_password = NULL
             WHERE id = $1",
        )
        .bind(u.id)
        .bind(provider)
        .execute(app.db())
        .await
        .unwrap();
        let (s, v) = json(
            post(
                &app,
                "/api/auth/forgot-password",
                &json!({"email": u.email}),
            )
            .await,
        )
        .await;
        assert_eq!(
            (s, v),
            (
                StatusCode::OK,
                json!({"message": FORGOT_MESSAGE, "oauth_provider": provider})
            )
        );
        assert!(outbox(&app, "password_reset", &u.email).await.is_empty());
        oauth.push(u);
    }
    // Email accounts and unknown addresses: the usual body, key absent.
    let email_user = app.student().await;
    for email in [email_user.email.as_str(), "nobody@example.com"] {
        let (s, v) =
            json(post(&app, "/api/auth/forgot-password", &json!({"email": email})).await).await;
        assert_eq!((s, v), (StatusCode::OK, json!({"message": FORGOT_MESSAGE})));
    }
    assert_eq!(
        outbox(&app, "password_reset", &email_user.email)
            .await
            .len(),
        1
    );
    // The route's limits come first: past them the provider is not named.
    let google = &oauth[0];
    for _ in 0..4 {
        post(
            &app,
            "/api/auth/forgot-password",
            &json!({"email": google.email}),
        )
        .await;
    }
    let (s, v) = json(
        post(
            &app,
            "/api/auth/forgot-password",
            &json!({"email": google.email}),
        )
        .await,
    )
    .await;
    assert_eq!((s, v), (StatusCode::OK, json!({"message": FORGOT_MESSAGE})));
}
