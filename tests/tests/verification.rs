//! Email verification and disposable addresses (API-NEXT.md N3): the link by
//! email, the two routes, the `REQUIRE_VERIFIED_FOR` gate on posts, replies
//! and trials, `is_verified` in both profiles, and the disposable-domain list
//! at registration and on the waitlist.

use mambo_tests::{Options, StatusCode, TestApp, TestUser, eventually, json};
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PASSWORD: &str = "Salsa0n2Rocks";
const FRONTEND: &str = "https://mamboguild.test";

fn register_body(email: &str, username: &str) -> Value {
    json!({
        "email": email,
        "username": username,
        "password": PASSWORD,
        "confirm_password": PASSWORD,
        "first_name": "Ana",
        "last_name": "Mambo",
    })
}

/// Registers; returns (users.id, access token).
async fn register(app: &TestApp, email: &str, username: &str) -> (Uuid, String) {
    let (s, body) = json(
        app.post("/api/auth/register")
            .json(&register_body(email, username))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let token = body["access_token"].as_str().unwrap().to_string();
    let id: Uuid = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(email.to_lowercase())
        .fetch_one(app.db())
        .await
        .unwrap();
    (id, token)
}

/// The verification emails queued for `to`, oldest first.
async fn queued_emails(app: &TestApp, to: &str) -> Vec<Value> {
    sqlx::query_scalar(
        "SELECT payload FROM job_outbox
         WHERE queue = 'email' AND payload->>'template' = 'email_verification'
           AND payload->'to'->>0 = $1
         ORDER BY created_at, id",
    )
    .bind(to)
    .fetch_all(app.db())
    .await
    .unwrap()
}

/// The token of the link in an email's text.
fn token_in(text: &str) -> String {
    let start = text
        .find("/verify-email?token=")
        .expect("a verification link")
        + 20;
    text[start..]
        .split(char::is_whitespace)
        .next()
        .unwrap()
        .to_string()
}

async fn verify(app: &TestApp, token: &str) -> (StatusCode, Value) {
    json(
        app.post("/api/auth/verify-email")
            .json(&json!({"token": token}))
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn get_as(app: &TestApp, path: &str, token: &str) -> (StatusCode, Value) {
    json(app.get(path).bearer_auth(token).send().await.unwrap()).await
}

async fn post_as(app: &TestApp, path: &str, token: &str, body: &Value) -> (StatusCode, Value) {
    json(
        app.post(path)
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

fn lab_post() -> Value {
    json!({"post_type": "lab", "title": "How to spin?", "body": "Help", "tags": ["mambo"]})
}

/// A post by a verified student, to reply to.
async fn someone_posts(app: &TestApp) -> (TestUser, String) {
    let author = app.student().await;
    let (s, v) = post_as(app, "/api/community/posts", &author.token, &lab_post()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let id = v["post"]["id"].as_str().unwrap().to_string();
    (author, id)
}

async fn set_verified(app: &TestApp, id: Uuid, verified: bool) {
    sqlx::query("UPDATE users SET is_verified = $2 WHERE id = $1")
        .bind(id)
        .bind(verified)
        .execute(app.db())
        .await
        .unwrap();
}

fn forbidden_unverified(s: StatusCode, v: &Value) {
    assert_eq!(
        (s, v),
        (
            StatusCode::FORBIDDEN,
            &json!({"detail": "Please verify your email first"})
        )
    );
}

// ---------------------------------------------------------------------------
// The whole path, through the worker and a fake Resend
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_email_with_link_verify_then_post() {
    let resend = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/emails"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "em_1"})))
        .mount(&resend)
        .await;
    let app = TestApp::spawn_with(Options {
        worker: true,
        vars: vec![
            ("RESEND_API_KEY".into(), "re_test".into()),
            ("RESEND_BASE_URL".into(), resend.uri()),
            ("FRONTEND_URL".into(), FRONTEND.into()),
        ],
    })
    .await;
    let (post_author, post_id) = someone_posts(&app).await;
    let email = "new.dancer@example.com";
    let (id, token) = register(&app, email, "new_dancer").await;

    // Unverified: both profiles say so; posting and replying are refused,
    // even with an invalid body (authorization comes first).
    for p in ["/api/auth/me", "/api/users/me"] {
        let (s, me) = get_as(&app, p, &token).await;
        assert_eq!(s, StatusCode::OK, "{me}");
        assert_eq!(me["is_verified"], false, "{p}: {me}");
    }
    let (s, v) = post_as(&app, "/api/community/posts", &token, &lab_post()).await;
    forbidden_unverified(s, &v);
    let (s, v) = post_as(&app, "/api/community/posts", &token, &json!({"title": 7})).await;
    forbidden_unverified(s, &v);
    let reply_path = format!("/api/community/posts/{post_id}/replies");
    let (s, v) = post_as(&app, &reply_path, &token, &json!({"content": "Me too"})).await;
    forbidden_unverified(s, &v);
    // Nothing was spent or written.
    assert_eq!(app.balance_and_ledger(id).await, (15, 15));

    // The email arrives through the worker with a link to the frontend.
    let mail = eventually(20, || async {
        resend
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
            .find(|b| b["to"] == json!([email]))
    })
    .await
    .expect("the verification email was sent");
    assert_eq!(mail["subject"], "Verify your email - The Mambo Guild");
    let text = mail["text"].as_str().unwrap();
    assert!(
        text.contains(&format!("{FRONTEND}/verify-email?token=")),
        "{text}"
    );
    assert!(text.contains("48 hours"), "{text}");
    let link_token = token_in(text);
    assert!(
        mail["html"]
            .as_str()
            .unwrap()
            .contains(&format!("{FRONTEND}/verify-email?token={link_token}"))
    );

    // Verify (no sign-in needed), then post and reply.
    assert_eq!(
        verify(&app, &link_token).await,
        (StatusCode::OK, json!({"message": "Email verified"}))
    );
    for p in ["/api/auth/me", "/api/users/me"] {
        let (_, me) = get_as(&app, p, &token).await;
        assert_eq!(me["is_verified"], true, "{p}: {me}");
    }
    let (s, v) = post_as(&app, "/api/community/posts", &token, &lab_post()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = post_as(&app, &reply_path, &token, &json!({"content": "Me too"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (balance, ledger) = app.balance_and_ledger(id).await;
    assert_eq!(balance, ledger);

    // The link is single use.
    assert_eq!(
        verify(&app, &link_token).await,
        (
            StatusCode::BAD_REQUEST,
            json!({"detail": "Invalid or expired verification token"})
        )
    );
    // Someone else's public profile carries the field as well.
    let (_, author_me) = get_as(&app, "/api/users/me", &post_author.token).await;
    assert_eq!(author_me["is_verified"], true);
    app.stop().await;
}

// ---------------------------------------------------------------------------
// Links: used, expired, forged; a fresh one after another
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn used_expired_and_forged_tokens_are_400_and_fresh_ones_work() {
    let app = TestApp::spawn_api_only().await;
    let invalid = (
        StatusCode::BAD_REQUEST,
        json!({"detail": "Invalid or expired verification token"}),
    );
    let email = "links@example.com";
    let (id, token) = register(&app, email, "links").await;
    let mails = queued_emails(&app, email).await;
    assert_eq!(mails.len(), 1, "registration queues one email");
    let first = token_in(mails[0]["text"].as_str().unwrap());

    // Forged: tampered signature, another secret, garbage, another purpose,
    // an access token, a link for a row that does not exist.
    let mut tampered = first.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let mut other_secret = app.vars.clone();
    other_secret.insert("SECRET_KEY".into(), "not-the-secret".into());
    let other = mambo_core::Config::from_map(&other_secret).unwrap();
    let exp = chrono::Utc::now().timestamp() + 3600;
    let claims = |jti: Uuid, purpose: &str| {
        json!({"sub": id.to_string(), "jti": jti.to_string(), "purpose": purpose,
               "exp": exp, "type": purpose})
    };
    let row: Uuid = sqlx::query_scalar("SELECT id FROM email_verifications WHERE user_id = $1")
        .bind(id)
        .fetch_one(app.db())
        .await
        .unwrap();
    for forged in [
        tampered,
        mambo_core::auth::sign_jwt(&other, &claims(row, "email_verification")),
        mambo_core::auth::sign_jwt(&app.ctx.config, &claims(row, "password_reset")),
        mambo_core::auth::sign_jwt(
            &app.ctx.config,
            &claims(Uuid::new_v4(), "email_verification"),
        ),
        token.clone(),
        "made-up".into(),
        String::new(),
    ] {
        assert_eq!(verify(&app, &forged).await, invalid, "{forged}");
    }
    let (s, v) = json(
        app.post("/api/auth/verify-email")
            .json(&json!({"token": 5}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["detail"][0]["loc"], json!(["body", "token"]));

    // Two links out at once (registration, then a resend): each works once,
    // and verifying twice with a fresh link is fine.
    let (s, v) = post_as(&app, "/api/auth/resend-verification", &token, &json!({})).await;
    assert_eq!(
        (s, v),
        (
            StatusCode::OK,
            json!({"message": "Verification email sent"})
        )
    );
    let mails = queued_emails(&app, email).await;
    assert_eq!(mails.len(), 2);
    let second = token_in(mails[1]["text"].as_str().unwrap());
    assert_ne!(first, second);
    assert_eq!(
        verify(&app, &first).await,
        (StatusCode::OK, json!({"message": "Email verified"}))
    );
    assert_eq!(verify(&app, &first).await, invalid, "used");
    assert_eq!(
        verify(&app, &second).await,
        (StatusCode::OK, json!({"message": "Email verified"}))
    );
    assert_eq!(verify(&app, &second).await, invalid, "used");
    let verified: bool = sqlx::query_scalar("SELECT is_verified FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(app.db())
        .await
        .unwrap();
    assert!(verified);

    // Expired: a link older than 48 hours (on the one clock) is refused,
    // and one just younger still works.
    let email = "late@example.com";
    let (late, _) = register(&app, email, "late_one").await;
    let late_token = token_in(
        queued_emails(&app, email).await[0]["text"]
            .as_str()
            .unwrap(),
    );
    app.ctx
        .clock
        .advance(chrono::Duration::hours(48) + chrono::Duration::seconds(5));
    assert_eq!(verify(&app, &late_token).await, invalid, "expired");
    app.ctx.clock.set(chrono::Utc::now());
    let email = "inTime@example.com";
    let (in_time, _) = register(&app, email, "in_time").await;
    let in_time_token = token_in(
        queued_emails(&app, &email.to_lowercase()).await[0]["text"]
            .as_str()
            .unwrap(),
    );
    app.ctx.clock.advance(chrono::Duration::hours(47));
    assert_eq!(
        verify(&app, &in_time_token).await,
        (StatusCode::OK, json!({"message": "Email verified"}))
    );
    let states: Vec<(Uuid, bool)> =
        sqlx::query_as("SELECT id, is_verified FROM users WHERE id = ANY($1) ORDER BY email")
            .bind(vec![late, in_time])
            .fetch_all(app.db())
            .await
            .unwrap();
    assert_eq!(states, vec![(in_time, true), (late, false)]);

    // The daily maintenance deletes links a week past their expiry.
    app.ctx.clock.advance(chrono::Duration::days(9));
    let pruned = mambo_core::verification::prune(app.db(), app.ctx.clock.now())
        .await
        .unwrap();
    assert_eq!(pruned, 4, "every link of this test is old enough");
}

// ---------------------------------------------------------------------------
// Resend
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resend_is_three_an_hour_and_refused_once_verified() {
    let app = TestApp::spawn_api_only().await;
    let email = "again@example.com";
    let (_, token) = register(&app, email, "again").await;
    for i in 0..3 {
        let (s, v) = post_as(&app, "/api/auth/resend-verification", &token, &json!({})).await;
        assert_eq!(
            (s, v),
            (
                StatusCode::OK,
                json!({"message": "Verification email sent"})
            ),
            "resend {i}"
        );
    }
    let resp = app
        .post("/api/auth/resend-verification")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    let (_, v) = json(resp).await;
    assert!(v["detail"].is_string(), "{v}");
    // The registration's email and three resends; the refused one sent nothing.
    assert_eq!(queued_emails(&app, email).await.len(), 4);

    // Anonymous: 401. Verified: 400 (and nothing counted or sent).
    let (s, _) = json(
        app.post("/api/auth/resend-verification")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let verified = app.student().await;
    let (s, v) = post_as(
        &app,
        "/api/auth/resend-verification",
        &verified.token,
        &json!({}),
    )
    .await;
    assert_eq!(
        (s, v),
        (
            StatusCode::BAD_REQUEST,
            json!({"detail": "Email already verified"})
        )
    );
    assert!(queued_emails(&app, &verified.email).await.is_empty());
}

// ---------------------------------------------------------------------------
// The gate
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unverified_posts_replies_and_trials_are_403_admins_exempt() {
    let app = TestApp::spawn_api_only().await;
    let (_, post_id) = someone_posts(&app).await;
    let reply_path = format!("/api/community/posts/{post_id}/replies");
    let student = app.student().await;
    set_verified(&app, student.id, false).await;
    let (s, v) = post_as(&app, "/api/community/posts", &student.token, &lab_post()).await;
    forbidden_unverified(s, &v);
    let (s, v) = post_as(&app, &reply_path, &student.token, &json!({"content": "Hi"})).await;
    forbidden_unverified(s, &v);
    // Other writes are not gated.
    let (s, v) = post_as(
        &app,
        &format!("/api/community/posts/{post_id}/react"),
        &student.token,
        &json!({"reaction_type": "fire"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // The trial gate the checkout calls.
    let ctx = &app.ctx;
    let gate =
        |id| async move { mambo_core::verification::ensure_verified_for(ctx, id, "trial").await };
    match gate(student.id).await {
        Err(mambo_core::Error::Http { status, detail, .. }) => {
            assert_eq!(
                (status, detail),
                (403, json!("Please verify your email first"))
            )
        }
        other => panic!("{other:?}"),
    }

    // An unverified admin is exempt.
    let admin = app.admin().await;
    set_verified(&app, admin.id, false).await;
    assert!(gate(admin.id).await.is_ok());
    let (s, v) = post_as(&app, "/api/community/posts", &admin.token, &lab_post()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = post_as(&app, &reply_path, &admin.token, &json!({"content": "Hi"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // Verified: allowed.
    set_verified(&app, student.id, true).await;
    assert!(gate(student.id).await.is_ok());
    let (s, v) = post_as(&app, &reply_path, &student.token, &json!({"content": "Hi"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_verified_for_chooses_the_gated_actions() {
    let app = TestApp::spawn_with(Options {
        worker: false,
        vars: vec![("REQUIRE_VERIFIED_FOR".into(), "reply".into())],
    })
    .await;
    let (_, post_id) = someone_posts(&app).await;
    let student = app.student().await;
    set_verified(&app, student.id, false).await;
    let (s, v) = post_as(&app, "/api/community/posts", &student.token, &lab_post()).await;
    assert_eq!(s, StatusCode::OK, "posts are not gated: {v}");
    let (s, v) = post_as(
        &app,
        &format!("/api/community/posts/{post_id}/replies"),
        &student.token,
        &json!({"content": "Hi"}),
    )
    .await;
    forbidden_unverified(s, &v);
    assert!(
        mambo_core::verification::ensure_verified_for(&app.ctx, student.id, "trial")
            .await
            .is_ok()
    );
}

// ---------------------------------------------------------------------------
// Existing accounts, the waitlist, Google
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waitlist_queues_a_verification_email() {
    let app = TestApp::spawn_api_only().await;
    let (s, v) = json(
        app.post("/api/auth/waitlist")
            .json(&json!({"email": "Founder@Example.com", "username": "founder_one"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let mails = queued_emails(&app, "founder@example.com").await;
    assert_eq!(mails.len(), 1);
    let t = token_in(mails[0]["text"].as_str().unwrap());
    assert_eq!(
        verify(&app, &t).await,
        (StatusCode::OK, json!({"message": "Email verified"}))
    );
}

// ---------------------------------------------------------------------------
// Disposable addresses
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disposable_domains_and_subdomains_are_refused() {
    let app = TestApp::spawn_api_only().await;
    let refused = (
        StatusCode::BAD_REQUEST,
        json!({"detail": "Please use a permanent email address"}),
    );
    for (i, email) in [
        "a@mailinator.com",
        "a@inbox.mailinator.com",
        "A@YOPMAIL.COM",
        "a@deep.sub.10minutemail.com",
        "a@guerrillamailblock.com",
    ]
    .iter()
    .enumerate()
    {
        let (s, v) = json(
            app.post("/api/auth/register")
                .json(&register_body(email, &format!("throwaway_{i}")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v), refused, "register {email}");
        let (s, v) = json(
            app.post("/api/auth/waitlist")
                .json(&json!({"email": email, "username": format!("waiting_{i}")}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v), refused, "waitlist {email}");
    }
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(app.db())
        .await
        .unwrap();
    assert_eq!(accounts, 0, "nothing was created");

    // Ordinary domains (and a domain that merely contains a listed name).
    for (i, email) in [
        "ana@gmail.com",
        "ana@example.org",
        "ana@mail.mamboguild.com",
        "ana@salsa-mailinator.org",
        "ana@mailinator.com.mamboguild.com",
    ]
    .iter()
    .enumerate()
    {
        let (s, v) = json(
            app.post("/api/auth/register")
                .json(&register_body(email, &format!("dancer_{i}")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{email}: {v}");
    }
    let (s, v) = json(
        app.post("/api/auth/waitlist")
            .json(&json!({"email": "founder@outlook.com", "username": "founder_ok"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}
