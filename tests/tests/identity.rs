//! Identity: registration, login (JSON and form), tokens and cookies, refresh,
//! logout, me, waitlist, password reset, Google sign-in against a fake Google,
//! rate limits and the users endpoints (API.md §3.1, §3.4, §4.11–4.13).

use mambo_core::identity;
use mambo_tests::{StatusCode, TestApp, TestUser, UserSpec, json};
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PASSWORD: &str = "Salsa0n2Rocks";

fn register_body(email: &str, username: &str) -> Value {
    json!({
        "email": email,
        "username": username,
        "password": PASSWORD,
        "confirm_password": PASSWORD,
        "first_name": " Ana ",
        "last_name": "Mambo",
        "current_level_tag": "intermediate",
    })
}

async fn register(app: &TestApp, body: &Value) -> reqwest::Response {
    app.post("/api/auth/register")
        .json(body)
        .send()
        .await
        .unwrap()
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

fn cookie_value(cookies: &[String], name: &str) -> Option<String> {
    let c = cookie(cookies, name)?;
    let v = c[name.len() + 1..].split(';').next()?.to_string();
    Some(v)
}

async fn login_json(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    app.post("/api/auth/token")
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn user_row(app: &TestApp, email: &str) -> (Uuid, String, Option<String>, bool) {
    sqlx::query_as(
        "SELECT id, auth_provider, hashed_password, is_verified FROM users WHERE email = $1",
    )
    .bind(email)
    .fetch_one(app.db())
    .await
    .unwrap()
}

async fn ledger(app: &TestApp, id: Uuid) -> Vec<(i32, String)> {
    sqlx::query_as(
        "SELECT amount, reason FROM clave_transactions WHERE user_id = $1 ORDER BY created_at, id",
    )
    .bind(id)
    .fetch_all(app.db())
    .await
    .unwrap()
}

/// Email jobs written to the outbox for a template, oldest first.
async fn emails(app: &TestApp, template: &str) -> Vec<Value> {
    sqlx::query_scalar(
        "SELECT payload FROM job_outbox
         WHERE queue = 'email' AND payload->>'template' = $1 ORDER BY created_at, id",
    )
    .bind(template)
    .fetch_all(app.db())
    .await
    .unwrap()
}

fn token_from_reset_email(job: &Value) -> String {
    let text = job["text"].as_str().unwrap();
    let start = text.find("token=").unwrap() + "token=".len();
    text[start..]
        .split(|c: char| c.is_whitespace())
        .next()
        .unwrap()
        .to_string()
}

// ---------------------------------------------------------------------------
// Registration
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_creates_the_account_with_bonus_tokens_and_cookies() {
    let app = TestApp::spawn_api_only().await;
    let resp = register(
        &app,
        &register_body("  Ana.Dancer@Example.COM ", "Ana_Dancer"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let cookies = set_cookies(&resp);
    let (_, body) = json(resp).await;
    assert_eq!(body["token_type"], "bearer");
    let token = body["access_token"].as_str().unwrap().to_string();

    // Cookies of §1.2 (SECURE_COOKIES=false in tests, no COOKIE_DOMAIN).
    let access = cookie(&cookies, "access_token").expect("access cookie");
    assert!(access.contains("HttpOnly"), "{access}");
    assert!(access.contains("SameSite=Lax"), "{access}");
    assert!(
        access.contains("Path=/;") || access.ends_with("Path=/"),
        "{access}"
    );
    assert!(access.contains("Max-Age=1800"), "{access}");
    assert!(!access.contains("Secure"), "{access}");
    assert!(!access.contains("Domain="), "{access}");
    assert_eq!(cookie_value(&cookies, "access_token").unwrap(), token);
    let refresh = cookie(&cookies, "refresh_token").expect("refresh cookie");
    assert!(refresh.contains("Path=/api/auth/refresh"), "{refresh}");
    assert!(refresh.contains("Max-Age=604800"), "{refresh}");
    assert!(refresh.contains("HttpOnly"), "{refresh}");

    // Normalised email, argon2id hash, lowercased username, rookie subscription.
    let (id, provider, hash, verified) = user_row(&app, "ana.dancer@example.com").await;
    assert_eq!(provider, "email");
    assert!(hash.unwrap().starts_with("$argon2id$"));
    assert!(!verified);
    let (username, first, tag, code): (String, String, String, String) = sqlx::query_as(
        "SELECT username, first_name, current_level_tag, referral_code FROM user_profiles WHERE user_id = $1",
    )
    .bind(id)
    .fetch_one(app.db())
    .await
    .unwrap();
    assert_eq!(username, "ana_dancer");
    assert_eq!(first, "Ana");
    assert_eq!(tag, "Intermediate");
    assert_eq!(code.len(), 8);
    assert!(
        code.chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
    );
    let sub: (String, String) =
        sqlx::query_as("SELECT status, tier FROM subscriptions WHERE user_id = $1")
            .bind(id)
            .fetch_one(app.db())
            .await
            .unwrap();
    assert_eq!(sub, ("incomplete".into(), "rookie".into()));

    // +15 through the ledger; no daily claim or streak at registration.
    assert_eq!(ledger(&app, id).await, vec![(15, "new_user_bonus".into())]);
    assert_eq!(app.balance_and_ledger(id).await, (15, 15));

    // The token works, as a bearer and as the cookie.
    let (s, me) = json(
        app.get("/api/auth/me")
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(me["id"], id.to_string());
    assert_eq!(me["username"], "ana_dancer");
    assert_eq!(me["current_claves"], 15);
    assert_eq!(me["streak_count"], 0);
    assert_eq!(me["tier"], "rookie");
    assert_eq!(me["role"], "student");
    // The trophy case: every definition, none earned yet.
    let badges = me["badges"].as_array().unwrap();
    assert_eq!(badges.len(), 38);
    assert!(
        badges
            .iter()
            .all(|b| b["is_earned"] == false && b["earned_at"].is_null())
    );
    assert_eq!(
        me["stats"],
        json!({"reactions_given": 0, "reactions_received": 0, "solutions_accepted": 0})
    );
    let (s, me2) = json(
        app.get("/api/auth/me")
            .header("cookie", format!("access_token={token}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(me2["id"], me["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_rejects_bad_input_with_the_contract_messages() {
    let app = TestApp::spawn_api_only().await;

    // Password too short: FastAPI's value_error shape, without repeating the
    // password (issue 15).
    let mut b = register_body("a@example.com", "dancer");
    b["password"] = json!("abc1");
    b["confirm_password"] = json!("abc1");
    let (s, body) = json(register(&app, &b).await).await;
    assert_eq!(s, 422);
    assert_eq!(
        body,
        json!({"detail": [{
            "type": "value_error",
            "loc": ["body", "password"],
            "msg": "Value error, Password must be at least 8 characters long",
            "input": "[redacted]",
        }]})
    );
    for (pw, msg) in [
        ("a1".repeat(37), "Password cannot exceed 72 characters"),
        (
            "12345678".into(),
            "Password must contain at least one letter",
        ),
        (
            "abcdefgh".into(),
            "Password must contain at least one number",
        ),
    ] {
        let mut b = register_body("a@example.com", "dancer");
        b["password"] = json!(pw);
        b["confirm_password"] = json!(pw);
        let (s, body) = json(register(&app, &b).await).await;
        assert_eq!(s, 422);
        assert_eq!(body["detail"][0]["msg"], format!("Value error, {msg}"));
    }

    // Mismatched confirmation: loc ["body"].
    let mut b = register_body("a@example.com", "dancer");
    b["confirm_password"] = json!("Different1");
    let (s, body) = json(register(&app, &b).await).await;
    assert_eq!(s, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["body"]));
    assert_eq!(
        body["detail"][0]["msg"],
        "Value error, Passwords do not match"
    );
    assert_eq!(body["detail"][0]["type"], "value_error");

    // Username rules.
    for (u, msg) in [
        ("ab", "Username must be at least 3 characters"),
        (
            &"a".repeat(31) as &str,
            "Username cannot exceed 30 characters",
        ),
        (
            "bad name",
            "Username can only contain letters, numbers, and underscores",
        ),
    ] {
        let (s, body) = json(register(&app, &register_body("a@example.com", u)).await).await;
        assert_eq!(s, 422, "{u}");
        assert_eq!(body["detail"][0]["loc"], json!(["body", "username"]));
        assert_eq!(body["detail"][0]["msg"], format!("Value error, {msg}"));
    }

    // Missing confirmation: 422 naming the field.
    let mut b = register_body("a@example.com", "dancer");
    b.as_object_mut().unwrap().remove("confirm_password");
    let (s, body) = json(register(&app, &b).await).await;
    assert_eq!(s, 422);
    assert_eq!(
        body["detail"][0]["loc"],
        json!(["body", "confirm_password"])
    );
    assert_eq!(body["detail"][0]["type"], "missing");

    // Emails: malformed is 422, a domain without a dot is 400.
    let (s, body) = json(register(&app, &register_body("not-an-email", "dancer")).await).await;
    assert_eq!(s, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "email"]));
    let (s, body) = json(register(&app, &register_body("a@localhost", "dancer")).await).await;
    assert_eq!(s, 400);
    assert_eq!(body, json!({"detail": "Invalid email format"}));

    // Nothing was written by any of these.
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(app.db())
        .await
        .unwrap();
    assert_eq!(n, 0);

    // Duplicates (email normalised, username case-insensitive).
    assert_eq!(
        register(&app, &register_body("a@example.com", "dancer"))
            .await
            .status(),
        201
    );
    let (s, body) = json(register(&app, &register_body(" A@Example.com", "other")).await).await;
    assert_eq!(
        (s.as_u16(), body),
        (400, json!({"detail": "Email already registered"}))
    );
    let (s, body) = json(register(&app, &register_body("b@example.com", "DANCER")).await).await;
    assert_eq!(
        (s.as_u16(), body),
        (400, json!({"detail": "Username already taken"}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_string_fields_are_422_string_type_not_coerced() {
    // FastAPI/pydantic refuse a number or a boolean where a string is due;
    // `{"password": 123}` must not reach the login (and answer 401).
    let app = TestApp::spawn_api_only().await;
    let user = app.student().await;
    let string_type = |field: &str, input: Value| {
        json!({"detail": [{
            "type": "string_type",
            "loc": ["body", field],
            "msg": "Input should be a valid string",
            "input": input,
        }]})
    };
    let cases: Vec<(&str, Value, &str, Value)> = vec![
        (
            "/api/auth/token",
            json!({"email": user.email, "password": 123}),
            "password",
            // A password or token is never repeated (issue 15).
            json!("[redacted]"),
        ),
        (
            "/api/auth/token",
            json!({"email": true, "password": "x"}),
            "email",
            json!(true),
        ),
        (
            "/api/auth/forgot-password",
            json!({"email": 5}),
            "email",
            json!(5),
        ),
        (
            "/api/auth/reset-password",
            json!({"token": 1, "new_password": PASSWORD, "confirm_password": PASSWORD}),
            "token",
            json!("[redacted]"),
        ),
        (
            "/api/auth/waitlist",
            json!({"email": "w@example.com", "username": "waiter", "referrer_code": 7}),
            "referrer_code",
            json!(7),
        ),
    ];
    for (path, body, field, input) in cases {
        let (s, got) = json(app.post(path).json(&body).send().await.unwrap()).await;
        assert_eq!(
            (s.as_u16(), got),
            (422, string_type(field, input)),
            "{path}"
        );
    }
    let mut b = register_body("n@example.com", "numbers");
    b["username"] = json!(12345);
    let (s, got) = json(register(&app, &b).await).await;
    assert_eq!(
        (s.as_u16(), got),
        (422, string_type("username", json!(12345)))
    );

    let (s, got) = json(
        app.patch("/api/users/me")
            .bearer_auth(&user.token)
            .json(&json!({"username": 123}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s.as_u16(), got),
        (422, string_type("username", json!(123)))
    );
    let (s, got) = json(
        app.put("/api/users/me/badges/reorder")
            .bearer_auth(&user.token)
            .json(&json!({"badge_ids": ["a", 2]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s.as_u16(), got),
        (
            422,
            json!({"detail": [{
                "type": "string_type",
                "loc": ["body", "badge_ids", 1],
                "msg": "Input should be a valid string",
                "input": 2,
            }]})
        )
    );
    // null still means "unchanged".
    let (s, _) = json(
        app.patch("/api/users/me")
            .bearer_auth(&user.token)
            .json(&json!({"username": null, "avatar_url": null}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_registrations_get_400_not_500() {
    let app = TestApp::spawn_api_only().await;
    let (b1, b2) = (
        register_body("r1@example.com", "racer"),
        register_body("r2@example.com", "RACER"),
    );
    let (a, b) = tokio::join!(register(&app, &b1), register(&app, &b2));
    let mut results = [json(a).await, json(b).await];
    results.sort_by_key(|(s, _)| s.as_u16());
    assert_eq!(results[0].0, 201);
    assert_eq!(
        results[1],
        (
            StatusCode::BAD_REQUEST,
            json!({"detail": "Username already taken"})
        )
    );

    let (b1, b2) = (
        register_body("same@example.com", "first_one"),
        register_body("same@example.com", "second_one"),
    );
    let (a, b) = tokio::join!(register(&app, &b1), register(&app, &b2));
    let mut results = [json(a).await, json(b).await];
    results.sort_by_key(|(s, _)| s.as_u16());
    assert_eq!(results[0].0, 201);
    assert_eq!(
        results[1],
        (
            StatusCode::BAD_REQUEST,
            json!({"detail": "Email already registered"})
        )
    );
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(app.db())
        .await
        .unwrap();
    assert_eq!(n, 2);
}

// ---------------------------------------------------------------------------
// Login
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_accepts_json_and_the_oauth2_form_and_claims_daily() {
    let app = TestApp::spawn_api_only().await;
    assert_eq!(
        register(&app, &register_body("lia@example.com", "lia"))
            .await
            .status(),
        201
    );
    let (id, ..) = user_row(&app, "lia@example.com").await;

    let resp = login_json(&app, "  LIA@example.com", PASSWORD).await;
    assert_eq!(resp.status(), 200);
    let cookies = set_cookies(&resp);
    assert!(cookie(&cookies, "access_token").is_some());
    assert!(cookie(&cookies, "refresh_token").is_some());
    let (_, body) = json(resp).await;
    assert_eq!(body["token_type"], "bearer");
    let (s, me) = json(
        app.get("/api/auth/me")
            .bearer_auth(body["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(me["id"], id.to_string());
    // Streak update and daily claim ran.
    assert_eq!(me["streak_count"], 1);
    let rows = ledger(&app, id).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].1, "daily_login");
    assert!((1..=3).contains(&rows[1].0));
    let (b, l) = app.balance_and_ledger(id).await;
    assert_eq!(b, l);

    // The OAuth2 password form.
    let resp = app
        .post("/api/auth/token")
        .form(&[
            ("username", "lia@example.com"),
            ("password", PASSWORD),
            ("grant_type", "password"),
        ])
        .send()
        .await
        .unwrap();
    let (s, body) = json(resp).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["token_type"], "bearer");
    // A second login the same day claims nothing more.
    assert_eq!(ledger(&app, id).await.len(), 2);

    // Wrong password and unknown email: the same 401.
    let wrong = login_json(&app, "lia@example.com", "Wrong0password").await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(wrong.headers()["www-authenticate"], "Bearer");
    let (_, wrong_body) = json(wrong).await;
    let unknown = login_json(&app, "nobody@example.com", PASSWORD).await;
    assert_eq!(unknown.status(), 401);
    assert_eq!(unknown.headers()["www-authenticate"], "Bearer");
    let (_, unknown_body) = json(unknown).await;
    assert_eq!(wrong_body, json!({"detail": "Incorrect email or password"}));
    assert_eq!(unknown_body, wrong_body);
    let form_wrong = app
        .post("/api/auth/token")
        .form(&[("username", "lia@example.com"), ("password", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        json(form_wrong).await,
        (StatusCode::UNAUTHORIZED, wrong_body.clone())
    );

    // A user without a password (waitlist) cannot log in.
    let (s, _) = json(
        app.post("/api/auth/waitlist")
            .json(&json!({"email": "wl@example.com", "username": "wl_user"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 201);
    assert_eq!(
        json(login_json(&app, "wl@example.com", PASSWORD).await)
            .await
            .1,
        wrong_body
    );

    // Malformed bodies are 422.
    let (s, body) = json(login_json(&app, "not-an-email", PASSWORD).await).await;
    assert_eq!(s, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "email"]));
    let (s, body) = json(
        app.post("/api/auth/token")
            .form(&[("password", PASSWORD)])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "username"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passlib_bcrypt_hash_verifies_and_is_upgraded_to_argon2id() {
    let app = TestApp::spawn_api_only().await;
    let user = app.student().await;
    // Made by Python's passlib (`bcrypt.using(rounds=12).hash("Legacy-Passw0rd")`).
    let passlib = "$2b$12$wAHOPfEUwkAHUjGC.C0/eeUGWzBVPpFIDcofWa3L/3PCRd5Cwj2OC";
    sqlx::query("UPDATE users SET hashed_password = $2 WHERE id = $1")
        .bind(user.id)
        .bind(passlib)
        .execute(app.db())
        .await
        .unwrap();
    assert_eq!(
        login_json(&app, &user.email, "Legacy-Passw0rd1")
            .await
            .status(),
        401
    );
    let (s, _) = json(login_json(&app, &user.email, "Legacy-Passw0rd").await).await;
    assert_eq!(s, 200);
    let (_, _, hash, _) = user_row(&app, &user.email).await;
    let hash = hash.unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    // The new hash verifies too.
    assert_eq!(
        login_json(&app, &user.email, "Legacy-Passw0rd")
            .await
            .status(),
        200
    );
    let (_, _, again, _) = user_row(&app, &user.email).await;
    assert_eq!(again.unwrap(), hash);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_is_rate_limited_per_email_and_per_client() {
    let app = TestApp::spawn_api_only().await;
    let user = app.student().await;
    for _ in 0..5 {
        assert_eq!(
            login_json(&app, &user.email, "Wrong0pass").await.status(),
            401
        );
    }
    // The sixth attempt is refused even with the right password.
    let resp = login_json(&app, &user.email, &user.password).await;
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry), "{retry}");
    assert_eq!(
        json(resp).await.1,
        json!({"detail": "Too many login attempts. Please try again in a few minutes."})
    );
    // The key of §1.8 exists with the window as TTL.
    let mut redis = app.ctx.redis.conn();
    let ttl: i64 = redis::cmd("TTL")
        .arg(
            app.ctx
                .redis
                .key(&format!("rate_limit:login:{}", user.email)),
        )
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!((1..=300).contains(&ttl));

    // Per client: 20 attempts per window whatever the emails (5 counted above:
    // the refused sixth stopped at the per-email limit).
    for i in 0..15 {
        let s = login_json(&app, &format!("nobody{i}@example.com"), "x")
            .await
            .status();
        assert_eq!(s, 401, "attempt {i}");
    }
    let resp = login_json(&app, "another@example.com", "x").await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(
        json(resp).await.1,
        json!({"detail": "Too many login attempts from this IP. Please try again later."})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_fails_open_when_redis_is_down() {
    let app = TestApp::spawn_with(mambo_tests::Options {
        worker: false,
        vars: vec![("REDIS_URL".into(), "redis://127.0.0.1:1".into())],
    })
    .await;
    let user = app.student().await;
    for _ in 0..6 {
        assert_eq!(
            login_json(&app, &user.email, "Wrong0pass").await.status(),
            401
        );
    }
    assert_eq!(
        login_json(&app, &user.email, &user.password).await.status(),
        200
    );
}

// ---------------------------------------------------------------------------
// Tokens: refresh, logout, me, bearer precedence
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotates_and_failures_clear_cookies() {
    let app = TestApp::spawn_api_only().await;
    let resp = register(&app, &register_body("ref@example.com", "refresher")).await;
    let cookies = set_cookies(&resp);
    let refresh = cookie_value(&cookies, "refresh_token").unwrap();
    let access = cookie_value(&cookies, "access_token").unwrap();

    // No cookie: 401 and cookies untouched.
    let resp = app.post("/api/auth/refresh").send().await.unwrap();
    assert!(set_cookies(&resp).is_empty());
    assert_eq!(
        json(resp).await,
        (
            StatusCode::UNAUTHORIZED,
            json!({"detail": "Refresh token not found"})
        )
    );

    // A good refresh token rotates both cookies.
    let resp = app
        .post("/api/auth/refresh")
        .header("cookie", format!("refresh_token={refresh}"))
        .send()
        .await
        .unwrap();
    let new_cookies = set_cookies(&resp);
    let (s, body) = json(resp).await;
    assert_eq!(s, 200);
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(
        cookie_value(&new_cookies, "access_token").unwrap(),
        body["access_token"].as_str().unwrap()
    );
    assert!(
        cookie(&new_cookies, "refresh_token")
            .unwrap()
            .contains("Path=/api/auth/refresh")
    );
    let (s, _) = json(
        app.get("/api/auth/me")
            .bearer_auth(body["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);

    let check_cleared = |cookies: Vec<String>| {
        let a = cookie(&cookies, "access_token")
            .expect("access cleared")
            .clone();
        let r = cookie(&cookies, "refresh_token")
            .expect("refresh cleared")
            .clone();
        assert!(a.contains("Max-Age=0") && a.contains("Path=/"), "{a}");
        assert!(
            r.contains("Max-Age=0") && r.contains("Path=/api/auth/refresh"),
            "{r}"
        );
    };
    // An access token is not a refresh token; garbage is not either.
    for bad in [access.as_str(), "garbage"] {
        let resp = app
            .post("/api/auth/refresh")
            .header("cookie", format!("refresh_token={bad}"))
            .send()
            .await
            .unwrap();
        check_cleared(set_cookies(&resp));
        assert_eq!(
            json(resp).await,
            (
                StatusCode::UNAUTHORIZED,
                json!({"detail": "Invalid or expired refresh token"})
            )
        );
    }
    // A refresh token whose subject is not a UUID.
    let odd = mambo_core::auth::sign_jwt(
        &app.ctx.config,
        &json!({"sub": "not-a-uuid", "exp": chrono::Utc::now().timestamp() + 600, "type": "refresh"}),
    );
    let resp = app
        .post("/api/auth/refresh")
        .header("cookie", format!("refresh_token={odd}"))
        .send()
        .await
        .unwrap();
    check_cleared(set_cookies(&resp));
    assert_eq!(
        json(resp).await,
        (
            StatusCode::UNAUTHORIZED,
            json!({"detail": "Invalid refresh token"})
        )
    );
    // A signed refresh token without `sub` is also "Invalid refresh token".
    let no_sub = mambo_core::auth::sign_jwt(
        &app.ctx.config,
        &json!({"exp": chrono::Utc::now().timestamp() + 600, "type": "refresh"}),
    );
    let resp = app
        .post("/api/auth/refresh")
        .header("cookie", format!("refresh_token={no_sub}"))
        .send()
        .await
        .unwrap();
    check_cleared(set_cookies(&resp));
    assert_eq!(
        json(resp).await,
        (
            StatusCode::UNAUTHORIZED,
            json!({"detail": "Invalid refresh token"})
        )
    );
    // An expired refresh token.
    let expired = mambo_core::auth::sign_jwt(
        &app.ctx.config,
        &json!({"sub": Uuid::new_v4().to_string(), "exp": chrono::Utc::now().timestamp() - 10, "type": "refresh"}),
    );
    let resp = app
        .post("/api/auth/refresh")
        .header("cookie", format!("refresh_token={expired}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        json(resp).await.1,
        json!({"detail": "Invalid or expired refresh token"})
    );
    // A deleted user.
    let ghost = mambo_core::auth::create_token(
        &app.ctx.config,
        Uuid::new_v4(),
        mambo_core::auth::TokenKind::Refresh,
        chrono::Utc::now().timestamp(),
    );
    let resp = app
        .post("/api/auth/refresh")
        .header("cookie", format!("refresh_token={ghost}"))
        .send()
        .await
        .unwrap();
    check_cleared(set_cookies(&resp));
    assert_eq!(
        json(resp).await,
        (
            StatusCode::UNAUTHORIZED,
            json!({"detail": "User not found"})
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_me_and_bearer_rules() {
    let app = TestApp::spawn_api_only().await;
    let resp = app.post("/api/auth/logout").send().await.unwrap();
    let cookies = set_cookies(&resp);
    assert_eq!(
        json(resp).await,
        (
            StatusCode::OK,
            json!({"message": "Successfully logged out"})
        )
    );
    let a = cookie(&cookies, "access_token").unwrap();
    let r = cookie(&cookies, "refresh_token").unwrap();
    assert!(
        a.contains("Max-Age=0") && a.contains("Path=/;") && a.contains("HttpOnly"),
        "{a}"
    );
    assert!(
        r.contains("Max-Age=0") && r.contains("Path=/api/auth/refresh"),
        "{r}"
    );

    // No token: 401 with WWW-Authenticate.
    let resp = app.get("/api/auth/me").send().await.unwrap();
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        json(resp).await,
        (
            StatusCode::UNAUTHORIZED,
            json!({"detail": "Could not validate credentials"})
        )
    );

    let alice = app.student().await;
    let bob = app.student().await;
    // Junk bearer values fall back to the cookie.
    for junk in ["Bearer null", "Bearer undefined", "Bearer "] {
        let (s, me) = json(
            app.get("/api/auth/me")
                .header("authorization", junk)
                .header("cookie", format!("access_token={}", alice.token))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 200, "{junk}");
        assert_eq!(me["id"], alice.id.to_string());
    }
    // A real bearer token wins over the cookie.
    let (_, me) = json(
        app.get("/api/auth/me")
            .bearer_auth(&bob.token)
            .header("cookie", format!("access_token={}", alice.token))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(me["id"], bob.id.to_string());
    // A bad bearer token does not fall back.
    let (s, _) = json(
        app.get("/api/auth/me")
            .bearer_auth("garbage")
            .header("cookie", format!("access_token={}", alice.token))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 401);
    // A refresh token is not an access token.
    let refresh = mambo_core::auth::create_token(
        &app.ctx.config,
        alice.id,
        mambo_core::auth::TokenKind::Refresh,
        chrono::Utc::now().timestamp(),
    );
    let (s, _) = json(
        app.get("/api/auth/me")
            .bearer_auth(refresh)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 401);
    // A deleted profile: 404.
    sqlx::query("DELETE FROM user_profiles WHERE user_id = $1")
        .bind(alice.id)
        .execute(app.db())
        .await
        .unwrap();
    let (s, body) = json(
        app.get("/api/auth/me")
            .bearer_auth(&alice.token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s.as_u16(), body),
        (404, json!({"detail": "Profile not found"}))
    );
    let (s, body) = json(
        app.get("/api/users/me")
            .bearer_auth(&alice.token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s.as_u16(), body),
        (404, json!({"detail": "User profile not found"}))
    );
}

// ---------------------------------------------------------------------------
// Waitlist
// ---------------------------------------------------------------------------

async fn join(
    app: &TestApp,
    email: &str,
    username: &str,
    referrer: Option<&str>,
) -> (StatusCode, Value) {
    let mut body = json!({"email": email, "username": username});
    if let Some(r) = referrer {
        body["referrer_code"] = json!(r);
    }
    json(
        app.post("/api/auth/waitlist")
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn badges_of(app: &TestApp, id: Uuid) -> Vec<String> {
    sqlx::query_scalar("SELECT badge_id FROM user_badges WHERE user_id = $1 ORDER BY badge_id")
        .bind(id)
        .fetch_all(app.db())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waitlist_reserves_username_awards_badges_and_queues_welcome() {
    let app = TestApp::spawn_api_only().await;
    let (s, body) = join(&app, "Founder@Example.com", "First_Founder", None).await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["message"], "Welcome to the Inner Circle.");
    assert_eq!(body["position"], 1);
    let code = body["referral_code"].as_str().unwrap().to_string();
    let founder: Uuid = body["user_id"].as_str().unwrap().parse().unwrap();
    let (id, provider, hash, verified) = user_row(&app, "founder@example.com").await;
    assert_eq!(
        (id, provider.as_str(), hash, verified),
        (founder, "waitlist", None, false)
    );
    let (username, first, last): (String, String, String) = sqlx::query_as(
        "SELECT username, first_name, last_name FROM user_profiles WHERE user_id = $1",
    )
    .bind(founder)
    .fetch_one(app.db())
    .await
    .unwrap();
    assert_eq!(
        (username.as_str(), first.as_str(), last.as_str()),
        ("first_founder", "Founder", "Member")
    );
    assert_eq!(
        badges_of(&app, founder).await,
        vec!["founder_diamond".to_string()]
    );
    assert!(
        ledger(&app, founder).await.is_empty(),
        "no claves for waitlist joins"
    );

    // The welcome email went to the outbox with the referral link.
    let mail = emails(&app, "waitlist_welcome").await;
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0]["to"], json!(["founder@example.com"]));
    assert_eq!(mail[0]["subject"], "Welcome to The Mambo Guild");
    let link = format!("http://localhost:3000/waitlist?ref={code}");
    assert!(mail[0]["text"].as_str().unwrap().contains(&link));
    assert!(mail[0]["html"].as_str().unwrap().contains(&link));
    assert!(mail[0]["text"].as_str().unwrap().contains("first_founder"));

    // Errors.
    assert_eq!(
        join(&app, "founder@example.com", "someone_else", None).await,
        (
            StatusCode::BAD_REQUEST,
            json!({"detail": "This email is already on the list."})
        )
    );
    assert_eq!(
        join(&app, "x@example.com", "FIRST_founder", None).await,
        (
            StatusCode::BAD_REQUEST,
            json!({"detail": "This username is reserved. Choose another."})
        )
    );
    let (s, body) = join(&app, "x@example.com", "no spaces", None).await;
    assert_eq!(s, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "username"]));
    assert_eq!(
        body["detail"][0]["msg"],
        "Value error, Username can only contain letters, numbers, and underscores"
    );
    let (s, body) = join(&app, "not-an-email", "valid_name", None).await;
    assert_eq!(s, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "email"]));

    // Referrals: the third earns beta_tester, the fourth changes nothing (D24).
    for i in 0..4 {
        let (s, body) = join(
            &app,
            &format!("friend{i}@example.com"),
            &format!("friend_{i}"),
            Some(&code.to_lowercase()),
        )
        .await;
        assert_eq!(s, 201, "{body}");
        assert_eq!(body["position"], i + 2);
        let friend: Uuid = body["user_id"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            badges_of(&app, friend).await,
            vec!["founder_diamond".to_string()]
        );
        let referred: Option<String> =
            sqlx::query_scalar("SELECT referred_by_code FROM user_profiles WHERE user_id = $1")
                .bind(friend)
                .fetch_one(app.db())
                .await
                .unwrap();
        assert_eq!(referred.as_deref(), Some(code.as_str()));
        let expected: Vec<String> = if i >= 2 {
            vec!["beta_tester".into(), "founder_diamond".into()]
        } else {
            vec!["founder_diamond".into()]
        };
        assert_eq!(
            badges_of(&app, founder).await,
            expected,
            "after referral {}",
            i + 1
        );
    }
    let count: i32 =
        sqlx::query_scalar("SELECT referral_count FROM user_profiles WHERE user_id = $1")
            .bind(founder)
            .fetch_one(app.db())
            .await
            .unwrap();
    assert_eq!(count, 4);
    // An unknown referrer code is ignored.
    let (s, body) = join(&app, "stranger@example.com", "stranger", Some("NOPE1234")).await;
    assert_eq!(s, 201);
    let referred: Option<String> =
        sqlx::query_scalar("SELECT referred_by_code FROM user_profiles WHERE user_id = $1::uuid")
            .bind(body["user_id"].as_str().unwrap())
            .fetch_one(app.db())
            .await
            .unwrap();
    assert_eq!(referred, None);
    assert_eq!(emails(&app, "waitlist_welcome").await.len(), 6);
}

// ---------------------------------------------------------------------------
// Password reset
// ---------------------------------------------------------------------------

const FORGOT_MESSAGE: &str = "If the email exists, a password reset link has been sent.";

async fn forgot(app: &TestApp, email: &str) -> (StatusCode, Value) {
    json(
        app.post("/api/auth/forgot-password")
            .json(&json!({"email": email}))
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn reset(app: &TestApp, token: &str, pw: &str, confirm: &str) -> (StatusCode, Value) {
    json(
        app.post("/api/auth/reset-password")
            .json(&json!({"token": token, "new_password": pw, "confirm_password": confirm}))
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgot_and_reset_password_single_use() {
    let app = TestApp::spawn_api_only().await;
    let user = app.student().await;

    // Unknown email: same answer, no email.
    assert_eq!(
        forgot(&app, "nobody@example.com").await,
        (StatusCode::OK, json!({"message": FORGOT_MESSAGE}))
    );
    assert!(emails(&app, "password_reset").await.is_empty());
    let (s, body) = forgot(&app, "not-an-email").await;
    assert_eq!(s, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "email"]));

    // Known email: the reset email is queued through the outbox.
    assert_eq!(
        forgot(&app, &user.email.to_uppercase()).await,
        (StatusCode::OK, json!({"message": FORGOT_MESSAGE}))
    );
    let mail = emails(&app, "password_reset").await;
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0]["to"], json!([user.email]));
    assert_eq!(mail[0]["subject"], "Reset Your Password - The Mambo Guild");
    assert!(mail[0]["text"].as_str().unwrap().contains("1 hour"));
    assert!(
        mail[0]["html"]
            .as_str()
            .unwrap()
            .contains("http://localhost:3000/reset-password?token=")
    );
    assert!(
        mail[0]["idempotency_key"]
            .as_str()
            .unwrap()
            .starts_with("password-reset:")
    );
    let token = token_from_reset_email(&mail[0]);

    // The reset token is no login token.
    let (s, _) = json(
        app.get("/api/auth/me")
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 401);

    // Validation first.
    let (s, body) = reset(&app, &token, "NewPassw0rd", "OtherPassw0rd").await;
    assert_eq!(s, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["body"]));
    assert_eq!(
        body["detail"][0]["msg"],
        "Value error, Passwords do not match"
    );
    let (s, body) = reset(&app, &token, "short", "short").await;
    assert_eq!(s, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "new_password"]));

    // The reset works once.
    assert_eq!(
        reset(&app, &token, "NewPassw0rd", "NewPassw0rd").await,
        (
            StatusCode::OK,
            json!({"message": "Password reset successfully"})
        )
    );
    assert_eq!(
        login_json(&app, &user.email, "NewPassw0rd").await.status(),
        200
    );
    assert_eq!(
        login_json(&app, &user.email, &user.password).await.status(),
        401
    );
    let invalid = (
        StatusCode::BAD_REQUEST,
        json!({"detail": "Invalid or expired reset token"}),
    );
    assert_eq!(
        reset(&app, &token, "Another0ne", "Another0ne").await,
        invalid
    );
    assert_eq!(
        reset(&app, "garbage", "Another0ne", "Another0ne").await,
        invalid
    );
    // An access token is not a reset token.
    assert_eq!(
        reset(&app, &user.token, "Another0ne", "Another0ne").await,
        invalid
    );

    // Tokens expire after PASSWORD_RESET_EXPIRE_MINUTES.
    assert_eq!(forgot(&app, &user.email).await.0, 200);
    let mail = emails(&app, "password_reset").await;
    assert_eq!(mail.len(), 2);
    let late = token_from_reset_email(&mail[1]);
    app.ctx.clock.advance(chrono::Duration::minutes(61));
    assert_eq!(
        reset(&app, &late, "Another0ne", "Another0ne").await,
        invalid
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_rules_for_oauth_and_waitlist_accounts() {
    let app = TestApp::spawn_api_only().await;
    let google = app.student().await;
    sqlx::query("UPDATE users SET auth_provider = 'google', social_id = 'g-1' WHERE id = $1")
        .bind(google.id)
        .execute(app.db())
        .await
        .unwrap();
    assert_eq!(forgot(&app, &google.email).await.0, 200);
    let (s, body) = join(&app, "waiting@example.com", "waiting", None).await;
    assert_eq!(s, 201);
    let waiting: Uuid = body["user_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(forgot(&app, "waiting@example.com").await.0, 200);
    // Neither gets an email (claiming is off by default).
    assert!(emails(&app, "password_reset").await.is_empty());

    let hash: Option<String> =
        sqlx::query_scalar("SELECT hashed_password FROM users WHERE id = $1")
            .bind(google.id)
            .fetch_one(app.db())
            .await
            .unwrap();
    let t = identity::create_reset_token(&app.ctx, google.id, hash.as_deref());
    assert_eq!(
        reset(&app, &t, "NewPassw0rd", "NewPassw0rd").await,
        (
            StatusCode::BAD_REQUEST,
            json!({"detail": "Password reset not available for OAuth accounts"})
        )
    );
    let t = identity::create_reset_token(&app.ctx, waiting, None);
    assert_eq!(
        reset(&app, &t, "NewPassw0rd", "NewPassw0rd").await,
        (
            StatusCode::BAD_REQUEST,
            json!({"detail": "Account claiming is not currently active."})
        )
    );

    // Forgot-password limits are silent: same answer, no more emails.
    let user = app.student().await;
    for _ in 0..7 {
        assert_eq!(
            forgot(&app, &user.email).await,
            (StatusCode::OK, json!({"message": FORGOT_MESSAGE}))
        );
    }
    assert_eq!(emails(&app, "password_reset").await.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waitlist_members_claim_their_account_when_allowed() {
    let app = TestApp::spawn_with(mambo_tests::Options {
        worker: false,
        vars: vec![
            ("ALLOW_ACCOUNT_CLAIM".into(), "true".into()),
            ("PASSWORD_RESET_EXPIRE_MINUTES".into(), "30".into()),
        ],
    })
    .await;
    assert_eq!(
        join(&app, "claim@example.com", "claimer", None).await.0,
        201
    );
    assert_eq!(forgot(&app, "claim@example.com").await.0, 200);
    let mail = emails(&app, "password_reset").await;
    assert_eq!(mail.len(), 1);
    assert!(mail[0]["text"].as_str().unwrap().contains("30 minutes"));
    let token = token_from_reset_email(&mail[0]);
    assert_eq!(reset(&app, &token, "Claim3dIt", "Claim3dIt").await.0, 200);
    let (_, provider, hash, verified) = user_row(&app, "claim@example.com").await;
    assert_eq!(provider, "email");
    assert!(verified);
    assert!(hash.unwrap().starts_with("$argon2id$"));
    assert_eq!(
        login_json(&app, "claim@example.com", "Claim3dIt")
            .await
            .status(),
        200
    );
    // Single use across the claim too.
    assert_eq!(reset(&app, &token, "Claim3dIt2", "Claim3dIt2").await.0, 400);
}

// ---------------------------------------------------------------------------
// Google sign-in against a fake Google
// ---------------------------------------------------------------------------

async fn google_app() -> (TestApp, MockServer) {
    let google = MockServer::start().await;
    let token_url = format!("{}/token", google.uri());
    let userinfo_url = format!("{}/userinfo", google.uri());
    let app = TestApp::spawn_with(mambo_tests::Options {
        worker: false,
        vars: vec![
            ("GOOGLE_CLIENT_ID".into(), "client-123".into()),
            ("GOOGLE_CLIENT_SECRET".into(), "secret-456".into()),
            ("GOOGLE_TOKEN_URL".into(), token_url),
            ("GOOGLE_USERINFO_URL".into(), userinfo_url),
            ("BACKEND_URL".into(), "http://api.test".into()),
            ("FRONTEND_URL".into(), "http://front.test".into()),
        ],
    })
    .await;
    (app, google)
}

/// A Google account: `code` exchanges for a token that returns `info`.
async fn google_person(google: &MockServer, code: &str, info: Value) {
    let access = format!("ya29.{code}");
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains(format!("code={code}&")))
        .and(body_string_contains("client_id=client-123"))
        .and(body_string_contains("client_secret=secret-456"))
        .and(body_string_contains("grant_type=authorization_code"))
        .and(body_string_contains(
            "redirect_uri=http%3A%2F%2Fapi.test%2Fapi%2Fauth%2Fcallback%2Fgoogle",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": access, "token_type": "Bearer", "expires_in": 3599}),
        ))
        .mount(google)
        .await;
    Mock::given(method("GET"))
        .and(path("/userinfo"))
        .and(header("authorization", format!("Bearer {access}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(info))
        .mount(google)
        .await;
}

/// Starts the flow and returns the state from Google's consent URL.
async fn start_google(app: &TestApp) -> String {
    let resp = app.get("/api/auth/login/google").send().await.unwrap();
    assert_eq!(resp.status(), 307);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let url = reqwest::Url::parse(&location).unwrap();
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    q["state"].clone()
}

async fn callback(app: &TestApp, code: &str, state: &str) -> reqwest::Response {
    app.get(&format!(
        "/api/auth/callback/google?code={code}&state={state}"
    ))
    .send()
    .await
    .unwrap()
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers()["location"].to_str().unwrap().to_string()
}

/// application/x-www-form-urlencoded, as the redirect encodes the detail.
fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                (b as char).to_string()
            }
            b' ' => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn error_location(detail: &str) -> String {
    format!(
        "http://front.test/auth/callback?error={}",
        form_encode(detail)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_sign_in_creates_links_and_refuses() {
    let (app, google) = google_app().await;

    // The consent redirect.
    let resp = app.get("/api/auth/login/google").send().await.unwrap();
    assert_eq!(resp.status(), 307);
    let url = reqwest::Url::parse(&location(&resp)).unwrap();
    assert_eq!(
        url.as_str().split('?').next().unwrap(),
        "https://accounts.google.com/o/oauth2/v2/auth"
    );
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], "client-123");
    assert_eq!(
        q["redirect_uri"],
        "http://api.test/api/auth/callback/google"
    );
    assert_eq!(q["scope"], "openid email profile");
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["access_type"], "offline");
    assert_eq!(q["prompt"], "consent");
    let state = q["state"].clone();
    assert_eq!(state.len(), 43, "32 bytes, URL-safe base64");
    let mut redis = app.ctx.redis.conn();
    let ttl: i64 = redis::cmd("TTL")
        .arg(app.ctx.redis.key(&format!("oauth_state:google:{state}")))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!((590..=600).contains(&ttl), "{ttl}");

    // A new person: account created with the starter bonus and the daily claim (D20).
    google_person(
        &google,
        "new-person",
        json!({"id": "g-100", "email": "New.Person@Gmail.com", "verified_email": true,
               "given_name": "Nina", "family_name": "Perez",
               "picture": "https://lh3.googleusercontent.com/nina"}),
    )
    .await;
    let resp = callback(&app, "new-person", &state).await;
    assert_eq!(resp.status(), 302);
    assert_eq!(
        location(&resp),
        "http://front.test/auth/callback?success=true"
    );
    let cookies = set_cookies(&resp);
    let access = cookie_value(&cookies, "access_token").expect("access cookie");
    assert!(
        cookie(&cookies, "refresh_token")
            .unwrap()
            .contains("Path=/api/auth/refresh")
    );
    let (id, provider, hash, verified) = user_row(&app, "new.person@gmail.com").await;
    assert_eq!((provider.as_str(), hash, verified), ("google", None, true));
    let (s, me) = json(
        app.get("/api/auth/me")
            .header("cookie", format!("access_token={access}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(me["id"], id.to_string());
    assert_eq!(me["username"], Value::Null);
    assert_eq!(me["first_name"], "Nina");
    assert_eq!(me["last_name"], "Perez");
    assert_eq!(me["avatar_url"], "https://lh3.googleusercontent.com/nina");
    assert_eq!(me["current_level_tag"], "Beginner");
    assert_eq!(me["streak_count"], 1);
    let rows = ledger(&app, id).await;
    assert_eq!(rows[0], (15, "new_user_bonus".to_string()));
    assert_eq!(rows[1].1, "daily_login");
    let social: Option<String> = sqlx::query_scalar("SELECT social_id FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(app.db())
        .await
        .unwrap();
    assert_eq!(social.as_deref(), Some("g-100"));

    // The state is single use.
    let resp = callback(&app, "new-person", &state).await;
    assert_eq!(
        location(&resp),
        error_location("Invalid or expired OAuth state. Please try again.")
    );
    assert!(set_cookies(&resp).is_empty());
    let resp = callback(&app, "new-person", "made-up-state").await;
    assert_eq!(
        location(&resp),
        error_location("Invalid or expired OAuth state. Please try again.")
    );

    // Signing in again logs in the same account, with no second bonus.
    let state = start_google(&app).await;
    let resp = callback(&app, "new-person", &state).await;
    assert_eq!(
        location(&resp),
        "http://front.test/auth/callback?success=true"
    );
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users WHERE email = 'new.person@gmail.com'")
            .fetch_one(app.db())
            .await
            .unwrap();
    assert_eq!(n, 1);
    assert_eq!(ledger(&app, id).await.len(), 2);

    // An existing email account is linked; its password keeps working.
    let email_user = app
        .create_user(UserSpec {
            username: Some("linked_user".into()),
            ..Default::default()
        })
        .await;
    google_person(
        &google,
        "linker",
        json!({"id": "g-200", "email": email_user.email, "given_name": "L",
               "picture": "https://lh3.googleusercontent.com/l"}),
    )
    .await;
    let state = start_google(&app).await;
    let resp = callback(&app, "linker", &state).await;
    assert_eq!(
        location(&resp),
        "http://front.test/auth/callback?success=true"
    );
    let (_, provider, hash, verified) = user_row(&app, &email_user.email).await;
    assert_eq!(provider, "google");
    assert!(verified);
    assert!(hash.is_some());
    let avatar: Option<String> =
        sqlx::query_scalar("SELECT avatar_url FROM user_profiles WHERE user_id = $1")
            .bind(email_user.id)
            .fetch_one(app.db())
            .await
            .unwrap();
    assert_eq!(
        avatar.as_deref(),
        Some("https://lh3.googleusercontent.com/l")
    );
    assert_eq!(
        login_json(&app, &email_user.email, &email_user.password)
            .await
            .status(),
        200
    );

    // A waitlist account is refused.
    assert_eq!(
        join(&app, "listed@example.com", "listed", None).await.0,
        201
    );
    google_person(
        &google,
        "listed",
        json!({"id": "g-300", "email": "listed@example.com"}),
    )
    .await;
    let state = start_google(&app).await;
    let resp = callback(&app, "listed", &state).await;
    assert_eq!(
        location(&resp),
        error_location("Email already registered with different provider")
    );
    assert!(set_cookies(&resp).is_empty());

    // No email from Google.
    google_person(
        &google,
        "no-email",
        json!({"id": "g-400", "given_name": "X"}),
    )
    .await;
    let state = start_google(&app).await;
    let resp = callback(&app, "no-email", &state).await;
    assert_eq!(
        location(&resp),
        error_location("Email not provided by Google")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_failures_redirect_to_the_frontend() {
    let (app, google) = google_app().await;
    // The token endpoint refuses the code.
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("code=bad-code&"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"})))
        .mount(&google)
        .await;
    let state = start_google(&app).await;
    let resp = callback(&app, "bad-code", &state).await;
    assert_eq!(resp.status(), 302);
    assert_eq!(
        location(&resp),
        error_location("Failed to exchange authorization code. Please try again.")
    );
    // No access token in the answer.
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("code=no-token&"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"token_type": "Bearer"})))
        .mount(&google)
        .await;
    let state = start_google(&app).await;
    let resp = callback(&app, "no-token", &state).await;
    assert_eq!(
        location(&resp),
        error_location("No access token received from Google")
    );
    // Userinfo refused.
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("code=no-info&"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"access_token": "ya29.noinfo"})),
        )
        .mount(&google)
        .await;
    Mock::given(method("GET"))
        .and(path("/userinfo"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&google)
        .await;
    let state = start_google(&app).await;
    let resp = callback(&app, "no-info", &state).await;
    assert_eq!(
        location(&resp),
        error_location("Failed to fetch user information from Google")
    );
    // The person declined on Google's screen.
    let resp = app
        .get("/api/auth/callback/google?error=access_denied&state=x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    assert!(location(&resp).starts_with("http://front.test/auth/callback?error="));
    // Missing parameters are 422.
    let (s, body) = json(
        app.get("/api/auth/callback/google?state=abc")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["query", "code"]));
    let (s, body) = json(
        app.get("/api/auth/callback/google?code=abc")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["query", "state"]));
    // Both missing: both listed, as FastAPI does.
    let (s, body) = json(app.get("/api/auth/callback/google").send().await.unwrap()).await;
    assert_eq!(
        (s.as_u16(), body),
        (
            422,
            json!({"detail": [
                {"type": "missing", "loc": ["query", "code"], "msg": "Field required", "input": null},
                {"type": "missing", "loc": ["query", "state"], "msg": "Field required", "input": null},
            ]})
        )
    );
    // Other providers.
    let (s, body) = json(app.get("/api/auth/login/apple").send().await.unwrap()).await;
    assert_eq!(
        (s.as_u16(), body),
        (
            400,
            json!({"detail": "Invalid provider. Only Google OAuth is supported."})
        )
    );
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(app.db())
        .await
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_not_configured_is_503() {
    let app = TestApp::spawn_api_only().await;
    let (s, body) = json(app.get("/api/auth/login/google").send().await.unwrap()).await;
    assert_eq!(
        (s.as_u16(), body),
        (503, json!({"detail": "Google OAuth not configured"}))
    );
    let (s, body) = json(app.get("/api/auth/login/github").send().await.unwrap()).await;
    assert_eq!(
        (s.as_u16(), body),
        (
            400,
            json!({"detail": "Invalid provider. Only Google OAuth is supported."})
        )
    );
    let resp = app
        .get("/api/auth/callback/google?code=a&state=b")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(
        location(&resp),
        "http://localhost:3000/auth/callback?error=Invalid+or+expired+OAuth+state.+Please+try+again."
    );
}

// ---------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------

async fn patch_me(app: &TestApp, user: &TestUser, body: Value) -> (StatusCode, Value) {
    json(
        app.patch("/api/users/me")
            .header("authorization", user.bearer())
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_me_and_profile_updates() {
    let app = TestApp::spawn_api_only().await;
    let user = app
        .create_user(UserSpec {
            username: Some("salsero".into()),
            subscription: Some(("active", "advanced")),
            claves: 40,
            ..Default::default()
        })
        .await;
    let (s, me) = json(
        app.get("/api/users/me")
            .header("authorization", user.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(me["id"], user.id.to_string());
    assert_eq!(me["tier"], "advanced");
    assert_eq!(me["current_claves"], 40);
    assert_eq!(me["avatar_url"], Value::Null);
    let (s, _) = json(app.get("/api/users/me").send().await.unwrap()).await;
    assert_eq!(s, 401);

    // Avatar rules (D33).
    let (s, p) = patch_me(
        &app,
        &user,
        json!({"avatar_url": "https://pub-abc123.r2.dev/avatars/me.png"}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(p["avatar_url"], "https://pub-abc123.r2.dev/avatars/me.png");
    assert_eq!(p["id"], user.id.to_string());
    for ok in [
        "https://lh3.googleusercontent.com/a/x",
        "https://secure.gravatar.com/avatar/1",
        "http://localhost:3000/a.png",
    ] {
        assert_eq!(
            patch_me(&app, &user, json!({"avatar_url": ok})).await.0,
            200,
            "{ok}"
        );
    }
    let cases = [
        ("http://pub-abc.r2.dev/a.png", "Avatar URL must use HTTPS"),
        ("ftp://pub-abc.r2.dev/a.png", "Avatar URL must use HTTPS"),
        ("https://evil.com/a.png", "Avatar URL domain not allowed"),
        (
            "https://cloudflare.evil.com/a.png",
            "Avatar URL domain not allowed",
        ),
        (
            "https://pub-evil.com/a.png",
            "Avatar URL domain not allowed",
        ),
        (
            "https://r2.dev.evil.com/a.png",
            "Avatar URL domain not allowed",
        ),
        (
            "https://localhost.evil.com/a.png",
            "Avatar URL domain not allowed",
        ),
    ];
    for (url, msg) in cases {
        let (s, body) = patch_me(&app, &user, json!({"avatar_url": url})).await;
        assert_eq!(s, 422, "{url}");
        assert_eq!(
            body,
            json!({"detail": [{"type": "value_error", "loc": ["body", "avatar_url"],
                                "msg": format!("Value error, {msg}"), "input": url}]})
        );
    }
    let long = format!("https://pub-a.r2.dev/{}", "a".repeat(2100));
    let (s, body) = patch_me(&app, &user, json!({"avatar_url": long})).await;
    assert_eq!(s, 422);
    assert_eq!(body["detail"][0]["msg"], "Value error, Avatar URL too long");
    // Absent and null change nothing; "" clears.
    let (_, p) = patch_me(&app, &user, json!({})).await;
    assert_eq!(p["avatar_url"], "http://localhost:3000/a.png");
    let (_, p) = patch_me(&app, &user, json!({"avatar_url": null})).await;
    assert_eq!(p["avatar_url"], "http://localhost:3000/a.png");
    let (s, p) = patch_me(&app, &user, json!({"avatar_url": ""})).await;
    assert_eq!(s, 200);
    assert_eq!(p["avatar_url"], "");

    // Username rules.
    let (s, p) = patch_me(&app, &user, json!({"username": "New_Name"})).await;
    assert_eq!(s, 200);
    assert_eq!(p["username"], "new_name");
    let other = app
        .create_user(UserSpec {
            username: Some("taken_name".into()),
            ..Default::default()
        })
        .await;
    assert_eq!(
        patch_me(&app, &user, json!({"username": "TAKEN_NAME"})).await,
        (
            StatusCode::BAD_REQUEST,
            json!({"detail": "Username already taken"})
        )
    );
    // Keeping one's own name (in another case) is fine.
    assert_eq!(
        patch_me(&app, &user, json!({"username": "NEW_name"}))
            .await
            .0,
        200
    );
    let (s, body) = patch_me(&app, &user, json!({"username": "x!"})).await;
    assert_eq!(s, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "username"]));
    assert_eq!(
        body["detail"][0]["msg"],
        "Value error, Username must be at least 3 characters"
    );
    let _ = other;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_profiles_badges_order_and_leaderboard() {
    let app = TestApp::spawn_api_only().await;
    let owner = app
        .create_user(UserSpec {
            username: Some("public_star".into()),
            claves: 33,
            ..Default::default()
        })
        .await;
    let viewer = app.student().await;
    for (badge, when) in [
        ("founder_diamond", 1),
        ("center_stage_bronze", 2),
        ("the_professor_bronze", 3),
    ] {
        sqlx::query(
            "INSERT INTO user_badges (user_id, badge_id, earned_at) VALUES ($1, $2, now() - make_interval(mins => $3))",
        )
        .bind(owner.id)
        .bind(badge)
        .bind(when)
        .execute(app.db())
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO user_stats (user_id, reactions_given_count, reactions_received_count, solutions_accepted_count)
         VALUES ($1, 4, 5, 6)",
    )
    .bind(owner.id)
    .execute(app.db())
    .await
    .unwrap();

    // Anonymous, case-insensitive, users.id, claves hidden.
    let (s, p) = json(
        app.get("/api/users/public/PUBLIC_Star")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(p["id"], owner.id.to_string());
    assert_eq!(p["username"], "public_star");
    assert_eq!(p["current_claves"], 0);
    assert_eq!(
        p["stats"],
        json!({"reactions_given": 4, "reactions_received": 5, "solutions_accepted": 6})
    );
    let badges = p["badges"].as_array().unwrap();
    assert_eq!(badges.len(), 3);
    assert!(
        badges
            .iter()
            .all(|b| b["is_earned"] == true && b["earned_at"].is_string())
    );
    assert!(badges[0]["earned_at"].as_str().unwrap().ends_with('Z'));
    // Another signed-in user: still hidden. The owner: shown.
    let (_, p) = json(
        app.get("/api/users/public/public_star")
            .header("authorization", viewer.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(p["current_claves"], 0);
    let (_, p) = json(
        app.get("/api/users/public/public_star")
            .header("authorization", owner.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(p["current_claves"], 33);
    let (s, body) = json(
        app.get("/api/users/public/nobody_here")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s.as_u16(), body),
        (404, json!({"detail": "User not found"}))
    );

    // Reorder: owned ids get position + 1; unknown ones are ignored.
    let (s, body) = json(
        app.put("/api/users/me/badges/reorder")
            .header("authorization", owner.bearer())
            .json(&json!({"badge_ids": ["the_professor_bronze", "not_a_badge", "founder_diamond", "firestarter_gold"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s.as_u16(), body), (200, json!({"status": "success"})));
    let (_, me) = json(
        app.get("/api/users/me")
            .header("authorization", owner.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    let order: Vec<(String, i64)> = me["badges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["is_earned"] == true)
        .map(|b| {
            (
                b["id"].as_str().unwrap().to_string(),
                b["display_order"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        order,
        vec![
            ("the_professor_bronze".to_string(), 1),
            ("founder_diamond".to_string(), 3),
            ("center_stage_bronze".to_string(), 0),
        ]
    );
    let (s, _) = json(
        app.put("/api/users/me/badges/reorder")
            .json(&json!({"badge_ids": []}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 401);

    // Leaderboard: top 10 by XP with ranks and display names.
    for (i, xp) in [500, 1500, 900].iter().enumerate() {
        let u = app
            .create_user(UserSpec {
                username: Some(format!("lb_{i}")),
                ..Default::default()
            })
            .await;
        sqlx::query("UPDATE user_profiles SET xp = $2 WHERE user_id = $1")
            .bind(u.id)
            .bind(xp)
            .execute(app.db())
            .await
            .unwrap();
    }
    sqlx::query("UPDATE user_profiles SET xp = 700, username = NULL, first_name = 'No', last_name = 'Handle' WHERE user_id = $1")
        .bind(viewer.id)
        .execute(app.db())
        .await
        .unwrap();
    for _ in 0..8 {
        app.student().await;
    }
    let (s, board) = json(app.get("/api/users/leaderboard").send().await.unwrap()).await;
    assert_eq!(s, 200);
    let board = board.as_array().unwrap();
    assert_eq!(board.len(), 10);
    assert_eq!(board[0]["name"], "@lb_1");
    assert_eq!(board[0]["xp_total"], 1500);
    assert_eq!(board[0]["rank"], 1);
    assert_eq!(board[1]["name"], "@lb_2");
    assert_eq!(board[2]["name"], "No Handle");
    assert_eq!(board[2]["user_id"], viewer.id.to_string());
    assert_eq!(board[3]["rank"], 4);
    assert_eq!(board[9]["rank"], 10);
    assert!(board[0].as_object().unwrap().contains_key("avatar_url"));
}

/// Issue 15: `mambo create-admin` (core::users::create_admin) makes an admin
/// whose `/api/auth/me` shows an active performer tier, without a Stripe id;
/// promoting an existing student does the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_admins_have_an_active_performer_subscription() {
    let app = TestApp::spawn_api_only().await;
    let student = app.student().await;
    for (email, first) in [
        ("boss@example.com", "Boss"),
        (student.email.as_str(), "Promoted"),
    ] {
        let id = mambo_core::users::create_admin(app.db(), email, PASSWORD, first, "Admin")
            .await
            .unwrap();
        // Twice: idempotent.
        let again = mambo_core::users::create_admin(app.db(), email, PASSWORD, first, "Admin")
            .await
            .unwrap();
        assert_eq!(id, again);
        let resp = login_json(&app, email, PASSWORD).await;
        let (s, body) = json(resp).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let token = body["access_token"].as_str().unwrap().to_string();
        let (s, me) = json(
            app.get("/api/auth/me")
                .bearer_auth(&token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{me}");
        assert_eq!(me["role"], "admin", "{email}");
        assert_eq!(me["tier"], "performer", "{email}");
        let row: (String, String, Option<String>, Option<String>) = sqlx::query_as(
            "SELECT status, tier, stripe_customer_id, stripe_subscription_id
             FROM subscriptions WHERE user_id = $1",
        )
        .bind(id)
        .fetch_one(app.db())
        .await
        .unwrap();
        assert_eq!(
            row,
            ("active".to_string(), "performer".to_string(), None, None)
        );
    }
}
