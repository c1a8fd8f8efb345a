//! Sessions (API-NEXT.md N3): sign out everywhere, change the password, and
//! the revocation of every earlier token (access, refresh, cookie, event
//! stream) by those and by a password reset.

use mambo_tests::{StatusCode, TestApp, json};
use serde_json::{Value, json};
use uuid::Uuid;

const PASSWORD: &str = "Salsa0n2Rocks";
const NEW_PASSWORD: &str = "Mambo0n2Forever";

/// One signed-in session: its access token and refresh token (from cookies).
#[derive(Clone, Debug)]
struct Session {
    access: String,
    refresh: String,
}

fn set_cookies(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

fn cookie_value(cookies: &[String], name: &str) -> Option<String> {
    let c = cookies
        .iter()
        .find(|c| c.starts_with(&format!("{name}=")))?;
    Some(c[name.len() + 1..].split(';').next()?.to_string())
}

fn session_of(resp: &reqwest::Response) -> Session {
    let cookies = set_cookies(resp);
    Session {
        access: cookie_value(&cookies, "access_token").expect("access cookie"),
        refresh: cookie_value(&cookies, "refresh_token").expect("refresh cookie"),
    }
}

async fn register(app: &TestApp, email: &str, username: &str) -> (Uuid, Session) {
    let resp = app
        .post("/api/auth/register")
        .json(&json!({
            "email": email, "username": username, "password": PASSWORD,
            "confirm_password": PASSWORD, "first_name": "Ana", "last_name": "Mambo",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let s = session_of(&resp);
    let id = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(email)
        .fetch_one(app.db())
        .await
        .unwrap();
    (id, s)
}

async fn login(app: &TestApp, email: &str, password: &str) -> (StatusCode, Option<Session>) {
    let resp = app
        .post("/api/auth/token")
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, status.is_success().then(|| session_of(&resp)))
}

/// `GET /api/auth/me` with a bearer token.
async fn me(app: &TestApp, token: &str) -> StatusCode {
    app.get("/api/auth/me")
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

/// Asserts that `token` is refused as the contract says, as a bearer token,
/// as the cookie and on the event stream.
async fn assert_refused(app: &TestApp, token: &str, what: &str) {
    let resp = app
        .get("/api/auth/me")
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert!(resp.headers().contains_key("www-authenticate"), "{what}");
    assert_eq!(
        json(resp).await,
        (
            StatusCode::UNAUTHORIZED,
            json!({"detail": "Could not validate credentials"})
        ),
        "{what} as a bearer token"
    );
    let s = app
        .get("/api/users/me")
        .header("cookie", format!("access_token={token}"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{what} as the cookie");
    let s = app
        .get(&format!("/api/notifications/stream?token={token}"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{what} on the event stream");
}

async fn refresh(app: &TestApp, refresh_token: &str) -> (StatusCode, Value, Vec<String>) {
    let resp = app
        .post("/api/auth/refresh")
        .header("cookie", format!("refresh_token={refresh_token}"))
        .send()
        .await
        .unwrap();
    let cookies = set_cookies(&resp);
    let (s, v) = json(resp).await;
    (s, v, cookies)
}

async fn assert_refresh_refused(app: &TestApp, refresh_token: &str, what: &str) {
    let (s, v, cookies) = refresh(app, refresh_token).await;
    assert_eq!(
        (s, v),
        (
            StatusCode::UNAUTHORIZED,
            json!({"detail": "Could not validate credentials"})
        ),
        "{what}"
    );
    // Refresh failures clear both cookies.
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("refresh_token=") && c.contains("Max-Age=0")),
        "{cookies:?}"
    );
}

/// A token as the old service minted it: `sub`, `exp`, `type`, no `iat_us`.
fn legacy_token(app: &TestApp, id: Uuid) -> String {
    mambo_core::auth::sign_jwt(
        &app.ctx.config,
        &json!({"sub": id.to_string(), "exp": chrono::Utc::now().timestamp() + 600, "type": "access"}),
    )
}

async fn change_password(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.post("/api/auth/change-password")
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn change_body(current: &str, new: &str, confirm: &str) -> Value {
    json!({"current_password": current, "new_password": new, "confirm_password": confirm})
}

// ---------------------------------------------------------------------------
// logout-all
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_all_kills_every_token_including_refresh_and_cookies() {
    let app = TestApp::spawn_api_only().await;
    let email = "everywhere@example.com";
    let (id, laptop) = register(&app, email, "everywhere").await;
    let (_, phone) = login(&app, email, PASSWORD).await;
    let phone = phone.unwrap();
    let legacy = legacy_token(&app, id);
    // Before: every token works, the old service's included.
    for t in [&laptop.access, &phone.access, &legacy] {
        assert_eq!(me(&app, t).await, StatusCode::OK);
    }
    // Minted in the same second as the logout, just before it.
    let same_second = app.token_for(id);
    assert_eq!(me(&app, &same_second).await, StatusCode::OK);

    let resp = app
        .post("/api/auth/logout-all")
        .bearer_auth(&laptop.access)
        .send()
        .await
        .unwrap();
    let cookies = set_cookies(&resp);
    assert_eq!(
        json(resp).await,
        (StatusCode::OK, json!({"message": "Signed out everywhere"}))
    );
    // Both cookies are cleared, with the same paths as at sign-in.
    let cleared = |name: &str, path: &str| {
        cookies.iter().any(|c| {
            c.starts_with(&format!("{name}=\"\""))
                && c.contains("Max-Age=0")
                && c.contains(&format!("Path={path}"))
        })
    };
    assert!(cleared("access_token", "/"), "{cookies:?}");
    assert!(cleared("refresh_token", "/api/auth/refresh"), "{cookies:?}");

    // After: every earlier token is refused, the current one too.
    for (t, what) in [
        (&laptop.access, "this session"),
        (&phone.access, "another session"),
        (&legacy, "an old service's token"),
        (&same_second, "a token of the same second"),
    ] {
        assert_refused(&app, t, what).await;
    }
    assert_refresh_refused(&app, &laptop.refresh, "this session's refresh token").await;
    assert_refresh_refused(&app, &phone.refresh, "another refresh token").await;
    let (s, _) = json(
        app.post("/api/auth/logout-all")
            .bearer_auth(&laptop.access)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Signing in again works, and that session refreshes.
    let (s, fresh) = login(&app, email, PASSWORD).await;
    assert_eq!(s, StatusCode::OK);
    let fresh = fresh.unwrap();
    assert_eq!(me(&app, &fresh.access).await, StatusCode::OK);
    let (s, v, _) = refresh(&app, &fresh.refresh).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        me(&app, v["access_token"].as_str().unwrap()).await,
        StatusCode::OK
    );
    // Anonymous: 401.
    let s = app
        .post("/api/auth/logout-all")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_without_the_new_claim_live_until_revoked() {
    let app = TestApp::spawn_api_only().await;
    let user = app.student().await;
    let legacy = legacy_token(&app, user.id);
    assert_eq!(me(&app, &legacy).await, StatusCode::OK);
    // Someone else signing out everywhere changes nothing for this user.
    let other = app.student().await;
    let (s, _) = json(
        app.post("/api/auth/logout-all")
            .bearer_auth(&other.token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me(&app, &legacy).await, StatusCode::OK);
    assert_eq!(me(&app, &user.token).await, StatusCode::OK);
    assert_refused(&app, &other.token, "the other user's token").await;
}

// ---------------------------------------------------------------------------
// change-password
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_password_keeps_this_session_and_ends_every_other() {
    let app = TestApp::spawn_api_only().await;
    let email = "changer@example.com";
    let (_, laptop) = register(&app, email, "changer").await;
    let (_, phone) = login(&app, email, PASSWORD).await;
    let phone = phone.unwrap();

    // Wrong current password.
    let (s, v) = json(
        change_password(
            &app,
            &laptop.access,
            change_body("Wrong0ne", NEW_PASSWORD, NEW_PASSWORD),
        )
        .await,
    )
    .await;
    assert_eq!(
        (s, v),
        (
            StatusCode::BAD_REQUEST,
            json!({"detail": "Current password is incorrect"})
        )
    );
    // The registration's rules: 422 in FastAPI's shape.
    let (s, v) = json(
        change_password(
            &app,
            &laptop.access,
            change_body(PASSWORD, "short1", "short1"),
        )
        .await,
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["detail"][0]["loc"], json!(["body", "new_password"]));
    assert_eq!(
        v["detail"][0]["msg"],
        "Value error, Password must be at least 8 characters long"
    );
    let (s, v) = json(
        change_password(
            &app,
            &laptop.access,
            change_body(PASSWORD, "onlyletters", "onlyletters"),
        )
        .await,
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["detail"][0]["loc"], json!(["body", "new_password"]));
    let (s, v) = json(
        change_password(
            &app,
            &laptop.access,
            change_body(PASSWORD, NEW_PASSWORD, "Mambo0n2Other"),
        )
        .await,
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["detail"][0]["loc"], json!(["body"]));
    assert_eq!(v["detail"][0]["msg"], "Value error, Passwords do not match");
    let (s, v) =
        json(change_password(&app, &laptop.access, json!({"current_password": PASSWORD})).await)
            .await;
    assert_eq!(s, 422, "{v}");
    // Authorization before validation: anonymous with a bad body is 401.
    let (s, _) = json(
        app.post("/api/auth/change-password")
            .json(&json!({"new_password": 1}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Nothing changed so far.
    assert_eq!(me(&app, &phone.access).await, StatusCode::OK);

    // The change: a fresh token and fresh cookies for this session.
    let resp = change_password(
        &app,
        &laptop.access,
        change_body(PASSWORD, NEW_PASSWORD, NEW_PASSWORD),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let renewed = session_of(&resp);
    let (_, v) = json(resp).await;
    assert_eq!(v["message"], "Password changed");
    assert_eq!(v["token_type"], "bearer");
    assert_eq!(v["access_token"], renewed.access.as_str());
    assert_eq!(
        v.as_object().unwrap().len(),
        3,
        "message, access_token, token_type: {v}"
    );
    assert_ne!(renewed.access, laptop.access);

    // This session goes on, with the new token and its refresh cookie.
    assert_eq!(me(&app, &renewed.access).await, StatusCode::OK);
    let (s, v, _) = refresh(&app, &renewed.refresh).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Every earlier token ends, this session's old one included.
    assert_refused(&app, &laptop.access, "the old token of this session").await;
    assert_refused(&app, &phone.access, "another session").await;
    assert_refresh_refused(&app, &phone.refresh, "another refresh token").await;
    assert_refresh_refused(&app, &laptop.refresh, "the old refresh token").await;

    // Only the new password signs in.
    let (s, _) = login(&app, email, PASSWORD).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = login(&app, email, NEW_PASSWORD).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_accounts_have_no_password_to_change() {
    let app = TestApp::spawn_api_only().await;
    let user = app.student().await;
    sqlx::query(
        "UPDATE users SET auth_provider = 'google', social_id = 'g-1', hashed_password = NULL
         WHERE id = $1",
    )
    .bind(user.id)
    .execute(app.db())
    .await
    .unwrap();
    let (s, v) = json(
        change_password(
            &app,
            &user.token,
            change_body("Anything1", NEW_PASSWORD, NEW_PASSWORD),
        )
        .await,
    )
    .await;
    assert_eq!(
        (s, v),
        (
            StatusCode::BAD_REQUEST,
            json!({"detail": "This account signs in with Google"})
        )
    );
    // Nothing was revoked.
    assert_eq!(me(&app, &user.token).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_the_current_password_is_limited() {
    let app = TestApp::spawn_api_only().await;
    let user = app.student().await;
    for i in 0..10 {
        let (s, v) = json(
            change_password(
                &app,
                &user.token,
                change_body(&format!("Guess{i}pass"), NEW_PASSWORD, NEW_PASSWORD),
            )
            .await,
        )
        .await;
        assert_eq!(
            (s, v),
            (
                StatusCode::BAD_REQUEST,
                json!({"detail": "Current password is incorrect"})
            ),
            "attempt {i}"
        );
    }
    // The 11th attempt within 15 minutes is refused, even with the right password.
    let resp = change_password(
        &app,
        &user.token,
        change_body(&user.password, NEW_PASSWORD, NEW_PASSWORD),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    // Nothing changed: the session and the password are the same.
    assert_eq!(me(&app, &user.token).await, StatusCode::OK);
    let (s, _) = login(&app, &user.email, &user.password).await;
    assert_eq!(s, StatusCode::OK);
}

// ---------------------------------------------------------------------------
// Password reset
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_reset_revokes_every_earlier_token() {
    let app = TestApp::spawn_api_only().await;
    let email = "forgetful@example.com";
    let (_, before) = register(&app, email, "forgetful").await;
    assert_eq!(me(&app, &before.access).await, StatusCode::OK);
    let (s, _) = json(
        app.post("/api/auth/forgot-password")
            .json(&json!({"email": email}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let text: String = sqlx::query_scalar(
        "SELECT payload->>'text' FROM job_outbox
         WHERE queue = 'email' AND payload->>'template' = 'password_reset'",
    )
    .fetch_one(app.db())
    .await
    .unwrap();
    let start = text.find("token=").unwrap() + 6;
    let token = text[start..].split(char::is_whitespace).next().unwrap();
    let (s, v) = json(
        app.post("/api/auth/reset-password")
            .json(&json!({"token": token, "new_password": NEW_PASSWORD,
                          "confirm_password": NEW_PASSWORD}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_refused(&app, &before.access, "a token from before the reset").await;
    assert_refresh_refused(&app, &before.refresh, "a refresh token from before").await;
    let (s, after) = login(&app, email, NEW_PASSWORD).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me(&app, &after.unwrap().access).await, StatusCode::OK);
}
