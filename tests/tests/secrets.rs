//! Secrets and headers (issue 11): with every secret configured, failures of
//! every kind (bad logins, bad tokens, bad webhook signatures, refusing
//! upstream services) leave no secret in the logs or in any response; every
//! response, errors included, carries the security headers and CORS headers;
//! cookies are Secure, HttpOnly and SameSite=Lax in production.
//!
//! The logs of this test binary go to an in-memory buffer (at debug level,
//! more than production's `info`), which the test greps.

use mambo_tests::{Options, StatusCode, TestApp, eventually, json};
use serde_json::{Value, json};
use std::sync::{LazyLock, Mutex};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

static LOGS: LazyLock<Mutex<Vec<u8>>> = LazyLock::new(Default::default);

struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends every log line of this process (both tests) to [`LOGS`].
fn capture_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        tracing_subscriber::fmt()
            // The fakes are not the app: wiremock logs what it receives.
            .with_env_filter("debug,wiremock=off")
            .with_ansi(false)
            .with_writer(|| Capture)
            .try_init()
            .expect("no other tracing subscriber (unset TEST_LOG for this test)");
    });
}

fn logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}

/// Every configured secret, with a value that is easy to find.
const SECRETS: &[(&str, &str)] = &[
    ("SECRET_KEY", "jwt-SECRETKEY-7f3a9c21"),
    ("STRIPE_SECRET_KEY", "sk_test_STRIPESECRET51x"),
    ("STRIPE_WEBHOOK_SECRET", "whsec_STRIPEWEBHOOK9q"),
    ("RESEND_API_KEY", "re_RESENDKEY42zz"),
    ("MUX_TOKEN_SECRET", "MUXTOKENSECRET-abc"),
    ("MUX_WEBHOOK_SECRET", "MUXWEBHOOK-def"),
    ("GEMINI_API_KEY", "GEMINIKEY-ghi"),
    ("GOOGLE_CLIENT_SECRET", "GOOGLESECRET-jkl"),
    ("AWS_SECRET_ACCESS_KEY", "R2SECRET-mno"),
];
/// The database password, in `DATABASE_URL` (trust auth ignores it).
const DB_PASSWORD: &str = "DBPASSWORD-pqr";

/// Collects every response (status, headers and body) for the final grep.
#[derive(Default)]
struct Seen(Vec<String>);

impl Seen {
    async fn send(&mut self, rb: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let resp = rb.send().await.unwrap();
        let mut text = format!("{} {:?}\n", resp.status(), resp.headers());
        let (s, v) = json(resp).await;
        text.push_str(&v.to_string());
        self.0.push(text);
        (s, v)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_logs_or_a_response() {
    capture_logs();
    let stripe = MockServer::start().await;
    let resend = MockServer::start().await;
    let mux = MockServer::start().await;
    let gemini = MockServer::start().await;
    let google = MockServer::start().await;
    // Every upstream refuses, the way each really does.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {
            "type": "invalid_request_error",
            "message": "Invalid API Key provided: sk_test_****T51x"}})))
        .mount(&stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/emails"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "statusCode": 401, "name": "validation_error", "message": "API key is invalid"})))
        .mount(&resend)
        .await;
    Mock::given(method("POST"))
        .and(path("/video/v1/uploads"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": {"type": "unauthorized", "messages": ["Unauthorized request"]}})))
        .mount(&mux)
        .await;
    Mock::given(method("POST"))
        .and(path_regex("^/v1beta/models/.*"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "code": 400, "status": "INVALID_ARGUMENT", "message": "API key not valid. Please pass a valid API key."}})))
        .mount(&gemini)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_client", "error_description": "The OAuth client was not found."})))
        .mount(&google)
        .await;

    let base = TestApp::spawn_api_only().await;
    let db_url = base
        .db
        .url
        .replacen("://postgres@", &format!("://postgres:{DB_PASSWORD}@"), 1);
    assert!(
        db_url.contains(DB_PASSWORD),
        "TEST_PG_URL has the postgres@ form"
    );
    let mut vars: Vec<(&str, String)> = SECRETS.iter().map(|(k, v)| (*k, v.to_string())).collect();
    vars.extend([
        ("DATABASE_URL", db_url),
        ("STRIPE_BASE_URL", stripe.uri()),
        ("RESEND_BASE_URL", resend.uri()),
        ("MUX_TOKEN_ID", "mux-id".into()),
        ("MUX_BASE_URL", mux.uri()),
        ("GEMINI_BASE_URL", gemini.uri()),
        ("GOOGLE_CLIENT_ID", "google-id".into()),
        ("GOOGLE_TOKEN_URL", format!("{}/token", google.uri())),
        ("GOOGLE_USERINFO_URL", format!("{}/userinfo", google.uri())),
        ("AWS_ACCESS_KEY_ID", "r2-access-id".into()),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9".into()),
        ("AWS_BUCKET_NAME", "bucket".into()),
    ]);
    let extra: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = base.spawn_peer_with(true, true, &extra).await;
    let user = base.student().await;
    let admin = base.admin().await;
    // Tokens signed with the peer's key (the base app has another one).
    let token = |id| {
        mambo_core::auth::create_token(
            &app.ctx.config,
            id,
            mambo_core::auth::TokenKind::Access,
            app.ctx.clock.now().timestamp(),
        )
    };
    let (user_bearer, admin_bearer) = (
        format!("Bearer {}", token(user.id)),
        format!("Bearer {}", token(admin.id)),
    );
    let mut seen = Seen::default();

    // Sign-in failures: a wrong password, an unknown email, a bad token, the
    // login rate limit.
    for _ in 0..6 {
        seen.send(
            app.post("/api/auth/token")
                .json(&json!({"email": user.email, "password": "not-the-password-1"})),
        )
        .await;
    }
    let (s, _) = seen
        .send(
            app.post("/api/auth/token")
                .json(&json!({"email": "nobody@example.com", "password": "x-password-1"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = seen
        .send(
            app.get("/api/auth/me")
                .header("Authorization", format!("Bearer {}", user.token)),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a token signed with another key"
    );
    let (s, _) = seen
        .send(
            app.get("/api/auth/me")
                .header("Authorization", &user_bearer),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    // Client errors.
    seen.send(
        app.get("/api/community/posts/not-a-uuid")
            .header("Authorization", &user_bearer),
    )
    .await;
    seen.send(
        app.post("/api/community/posts")
            .header("Authorization", &user_bearer)
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    // Webhooks with bad signatures.
    let (s, _) = seen
        .send(
            app.post("/api/payments/webhook")
                .header("Stripe-Signature", "t=1,v1=deadbeef")
                .body(r#"{"id":"evt_1","type":"checkout.session.completed"}"#),
        )
        .await;
    assert!(s.is_client_error(), "{s}");
    let (s, _) = seen
        .send(
            app.post("/api/mux/webhook")
                .header("Mux-Signature", "t=1,v1=deadbeef")
                .header("content-type", "application/json")
                .body(r#"{"id":"e1","type":"video.asset.ready","data":{}}"#),
        )
        .await;
    assert!(s.is_client_error(), "{s}");
    // Upstreams that refuse: Stripe, Mux, Gemini, Google, Resend (in the worker).
    let (s, v) = seen
        .send(
            app.post("/api/payments/create-checkout-session")
                .header("Authorization", &user_bearer)
                .json(&json!({"price_id": app.ctx.config.advanced_price_id,
                    "success_url": "http://localhost:3000/ok", "cancel_url": "http://localhost:3000/no"})),
        )
        .await;
    assert!(!s.is_success(), "{s} {v}");
    let (s, v) = seen
        .send(
            app.post("/api/mux/upload-url")
                .header("Authorization", &admin_bearer)
                .json(&json!({})),
        )
        .await;
    assert!(s.is_server_error(), "{s} {v}");
    let (s, v) = seen
        .send(
            app.post("/api/ai/chat")
                .json(&json!({"messages": [{"role": "user", "content": "Hola"}], "stream": false})),
        )
        .await;
    assert!(!s.is_success(), "{s} {v}");
    let r = app.get("/api/auth/login/google").send().await.unwrap();
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(!location.contains("GOOGLESECRET"), "{location}");
    let state = reqwest::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let (s, v) = seen
        .send(app.get(&format!("/api/auth/callback/google?code=c1&state={state}")))
        .await;
    assert!(!s.is_success(), "{s} {v}");
    let (s, v) = seen
        .send(
            app.post("/api/uploads/presigned-url")
                .header("Authorization", &user_bearer)
                .json(&json!({"file_type": "image/png", "folder": "avatars"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = seen
        .send(
            app.post("/api/auth/forgot-password")
                .json(&json!({"email": user.email})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    eventually(30, || async {
        let st: Option<String> = sqlx::query_scalar("SELECT status FROM email_deliveries LIMIT 1")
            .fetch_optional(base.db())
            .await
            .unwrap();
        (st.as_deref() == Some("failed")).then_some(())
    })
    .await
    .expect("the worker tried Resend and recorded the refusal");
    // The configuration itself, as a careless `?config` would log it.
    tracing::info!(config = ?app.ctx.config, "config dump");

    let logs = logs();
    // The logs saw the failures (so the grep below means something).
    for expected in [
        "path=/api/auth/token",
        "path=/api/payments/webhook",
        "path=/api/mux/webhook",
        "path=/api/payments/create-checkout-session",
        "path=/api/mux/upload-url",
        "path=/api/ai/chat",
        "path=/api/auth/callback/google",
        "Resend refused the email",
        "config dump",
    ] {
        assert!(logs.contains(expected), "the logs mention {expected:?}");
    }
    let failures = logs
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .count();
    assert!(
        failures >= 5,
        "the upstream refusals were logged ({failures} lines)"
    );
    let mut secrets: Vec<(&str, &str)> = SECRETS.to_vec();
    secrets.push(("DATABASE_URL password", DB_PASSWORD));
    for (name, value) in &secrets {
        assert!(!logs.contains(value), "{name} appears in the logs");
        for response in &seen.0 {
            assert!(
                !response.contains(value),
                "{name} appears in a response: {response}"
            );
        }
    }
    println!(
        "secrets: {} secrets grepped in {} log lines ({failures} warnings/errors) and {} responses",
        secrets.len(),
        logs.lines().count(),
        seen.0.len()
    );
    app.stop().await;
}

/// The security headers of every response (production adds HSTS).
fn assert_security_headers(what: &str, h: &reqwest::header::HeaderMap, origin: &str) {
    let expect = [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("x-xss-protection", "1; mode=block"),
        ("referrer-policy", "strict-origin-when-cross-origin"),
        (
            "permissions-policy",
            "geolocation=(), microphone=(), camera=()",
        ),
        (
            "strict-transport-security",
            "max-age=31536000; includeSubDomains",
        ),
        ("access-control-allow-origin", origin),
        ("access-control-allow-credentials", "true"),
    ];
    for (name, value) in expect {
        assert_eq!(
            h.get(name).and_then(|v| v.to_str().ok()),
            Some(value),
            "{what}: {name}"
        );
    }
    assert!(h.get("x-request-id").is_some(), "{what}: x-request-id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_has_security_and_cors_headers_and_production_cookies_are_secure() {
    capture_logs();
    const ORIGIN: &str = "http://localhost:3000";
    let app = TestApp::spawn_with(Options {
        worker: false,
        vars: vec![
            ("ENVIRONMENT".into(), "production".into()),
            // Unset: production's default (secure cookies).
            ("SECURE_COOKIES".into(), "".into()),
            ("MAX_BODY_BYTES".into(), "4096".into()),
        ],
    })
    .await;
    assert!(app.ctx.config.secure_cookies);
    let user = app.student().await;

    let requests: Vec<(&str, u16, reqwest::RequestBuilder)> = vec![
        ("root", 200, app.get("/")),
        ("anonymous /me", 401, app.get("/api/auth/me")),
        (
            "student on an admin route",
            403,
            app.get("/api/admin/stats")
                .header("Authorization", user.bearer()),
        ),
        ("unknown path", 404, app.get("/api/nope")),
        ("wrong method", 405, app.delete("/api/auth/token")),
        (
            "oversized body",
            413,
            app.post("/api/auth/token")
                .header("content-type", "application/json")
                .body(vec![b' '; 10_000]),
        ),
        (
            "invalid body",
            422,
            app.post("/api/auth/token").json(&json!({"email": 5})),
        ),
    ];
    for (what, status, rb) in requests {
        let r = rb.header("Origin", ORIGIN).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{what}");
        assert_security_headers(what, r.headers(), ORIGIN);
        if status >= 400 {
            let (_, v) = json(r).await;
            assert!(v.get("detail").is_some(), "{what}: {v}");
        }
    }
    // 429: the login limit.
    let mut last = None;
    for _ in 0..6 {
        last = Some(
            app.post("/api/auth/token")
                .header("Origin", ORIGIN)
                .json(&json!({"email": "limited@example.com", "password": "x-password-1"}))
                .send()
                .await
                .unwrap(),
        );
    }
    let r = last.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_security_headers("429", r.headers(), ORIGIN);
    assert!(r.headers().get("retry-after").is_some());

    // 5xx: an API process whose database pool is gone.
    let broken = app.spawn_peer_with(true, false, &[]).await;
    broken.ctx.db.close().await;
    for path in ["/api/courses/worlds", "/api/auth/me"] {
        let r = broken
            .get(path)
            .header("Origin", ORIGIN)
            .header("Authorization", user.bearer())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_server_error(), "{path}: {}", r.status());
        assert_security_headers(path, r.headers(), ORIGIN);
        let (_, v) = json(r).await;
        let detail = v["detail"].as_str().unwrap_or_default().to_string();
        assert!(
            !detail.to_lowercase().contains("pool") && !detail.contains("sqlx"),
            "{path}: no internals in the body: {v}"
        );
    }

    // Cookies in production: Secure, HttpOnly, SameSite=Lax (§1.2).
    let r = app
        .post("/api/auth/token")
        .header("Origin", ORIGIN)
        .json(&json!({"email": user.email, "password": user.password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_security_headers("login", r.headers(), ORIGIN);
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    for name in ["access_token", "refresh_token"] {
        let c = cookies
            .iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} cookie in {cookies:?}"));
        for attr in ["Secure", "HttpOnly", "SameSite=Lax"] {
            assert!(
                c.split(';').any(|a| a.trim() == attr),
                "{name}: {attr} in {c}"
            );
        }
    }
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("refresh_token=") && c.contains("Path=/api/auth/refresh"))
    );
    // Preflight for a disallowed origin gets no CORS grant, but the headers.
    let r = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/auth/me"))
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
}

/// A 422 keeps FastAPI's shape but never repeats a password or a token
/// (issue 15): the `input` of such a field is `"[redacted]"`, and so is every
/// such key inside an `input` that is a whole body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_errors_do_not_echo_passwords_or_tokens() {
    let app = TestApp::spawn_api_only().await;
    let user = app.student().await;
    let register = |pw: Value, confirm: Value| {
        json!({"email": "redact@example.com", "username": "redactme", "password": pw,
            "confirm_password": confirm, "first_name": "A", "last_name": "B"})
    };
    // (what, request, the secrets it carries, the `loc` whose input is redacted)
    let cases: Vec<(&str, reqwest::RequestBuilder, Vec<&str>, Value)> = vec![
        (
            "register, short password and mismatched confirm",
            app.post("/api/auth/register")
                .json(&register(json!("Sh0rtZ"), json!("Other-Confirm-7"))),
            vec!["Sh0rtZ", "Other-Confirm-7"],
            json!(["body", "password"]),
        ),
        (
            "register, passwords do not match (input is the body)",
            app.post("/api/auth/register").json(&register(
                json!("Mambo-Secret-111"),
                json!("Mambo-Secret-222"),
            )),
            vec!["Mambo-Secret-111", "Mambo-Secret-222"],
            json!(["body"]),
        ),
        (
            "register, password of the wrong type",
            app.post("/api/auth/register").json(&register(
                json!({"p": "Object-Secret-33"}),
                json!(["Array-Secret-44"]),
            )),
            vec!["Object-Secret-33", "Array-Secret-44"],
            json!(["body", "password"]),
        ),
        (
            "register, email missing (input is the body)",
            app.post("/api/auth/register")
                .json(&json!({"username": "redactme2",
                "password": "Missing-Email-55", "confirm_password": "Missing-Email-55",
                "first_name": "A", "last_name": "B"})),
            vec!["Missing-Email-55"],
            json!(["body", "email"]),
        ),
        (
            "reset, short new password",
            app.post("/api/auth/reset-password").json(&json!({
                "token": "reset-TOKEN-abc123", "new_password": "tiny1",
                "confirm_password": "tiny1"})),
            vec!["reset-TOKEN-abc123", "tiny1"],
            json!(["body", "new_password"]),
        ),
        (
            "reset, mismatched confirm (input is the body)",
            app.post("/api/auth/reset-password").json(&json!({
                "token": "reset-TOKEN-def456", "new_password": "Reset-Secret-666",
                "confirm_password": "Reset-Secret-777"})),
            vec!["reset-TOKEN-def456", "Reset-Secret-666", "Reset-Secret-777"],
            json!(["body"]),
        ),
        (
            "reset, token of the wrong type",
            app.post("/api/auth/reset-password").json(&json!({
                "token": ["reset-TOKEN-ghi789"], "new_password": "Reset-Secret-888",
                "confirm_password": "Reset-Secret-888"})),
            vec!["reset-TOKEN-ghi789"],
            json!(["body", "token"]),
        ),
        (
            "reset, new password missing (input is the body)",
            app.post("/api/auth/reset-password").json(&json!({
                "token": "reset-TOKEN-jkl012", "confirm_password": "Reset-Secret-999"})),
            vec!["reset-TOKEN-jkl012", "Reset-Secret-999"],
            json!(["body", "new_password"]),
        ),
        (
            "login, password of the wrong type",
            app.post("/api/auth/token")
                .json(&json!({"email": user.email, "password": ["Login-Secret-101"]})),
            vec!["Login-Secret-101"],
            json!(["body", "password"]),
        ),
        (
            "login, a number as password",
            app.post("/api/auth/token")
                .json(&json!({"email": user.email, "password": 987654321})),
            vec!["987654321"],
            json!(["body", "password"]),
        ),
        (
            "login, bad email next to a password",
            app.post("/api/auth/token").json(
                &json!({"email": "not-an-email", "password": "Login-Secret-202",
                    "refresh_token": "Refresh-Secret-303"}),
            ),
            vec!["Login-Secret-202", "Refresh-Secret-303"],
            json!(["body", "email"]),
        ),
        (
            "login, NUL in the password",
            app.post("/api/auth/token")
                .json(&json!({"email": user.email, "password": "Nul-Secret-404\u{0}"})),
            vec!["Nul-Secret-404"],
            json!(["body", "password"]),
        ),
        (
            "form login, NUL in the password",
            app.post("/api/auth/token")
                .header("content-type", "application/x-www-form-urlencoded")
                .body("username=a%40b.co&password=Form-Secret-505%00"),
            vec!["Form-Secret-505"],
            json!(["body", "password"]),
        ),
    ];
    for (what, req, secrets, loc) in cases {
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {text}");
        for s in &secrets {
            assert!(!text.contains(s), "{what}: {s:?} echoed in {text}");
        }
        let v: Value = serde_json::from_str(&text).unwrap();
        let errors = v["detail"].as_array().expect("a FastAPI list");
        let e = errors
            .iter()
            .find(|e| e["loc"] == loc)
            .unwrap_or_else(|| panic!("{what}: no error at {loc}: {text}"));
        for key in ["type", "loc", "msg", "input"] {
            assert!(e.get(key).is_some(), "{what}: {key} kept: {text}");
        }
        let input = &e["input"];
        if input.is_object() {
            // The whole body: secret keys redacted, the rest kept.
            let obj = input.as_object().unwrap();
            if let Some(email) = obj.get("email") {
                assert_ne!(email, "[redacted]", "{what}: other fields kept: {text}");
            }
            for (k, val) in obj {
                if k.contains("password") || k.contains("token") {
                    assert_eq!(val, "[redacted]", "{what}: {k}: {text}");
                }
            }
        } else if loc[1]
            .as_str()
            .is_some_and(|f| f.contains("password") || f.contains("token"))
        {
            assert_eq!(input, "[redacted]", "{what}: {text}");
        } else {
            assert_ne!(input, "[redacted]", "{what}: only secrets: {text}");
        }
    }
    // A reset token that does not verify is not repeated either.
    let resp = app
        .post("/api/auth/reset-password")
        .json(
            &json!({"token": "reset-TOKEN-bad-mno345", "new_password": "Reset-Secret-121",
            "confirm_password": "Reset-Secret-121"}),
        )
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(status.is_client_error(), "{status} {text}");
    assert!(!text.contains("reset-TOKEN-bad-mno345") && !text.contains("Reset-Secret-121"));
    // Other fields still show their input: the shape is FastAPI's.
    let (s, v) = json(
        app.post("/api/auth/token")
            .json(&json!({"email": "not-an-email", "password": "x"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["detail"][0]["input"], "not-an-email", "{v}");
}
