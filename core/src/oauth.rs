//! Google sign-in (API.md §4.13, D20).
//!
//! The state lives in Redis for 10 minutes and is deleted when checked, so it
//! works across API replicas and only once. The code exchange and the userinfo
//! call go through `ctx.http` to the configured endpoints (tests point them at
//! a fake Google). New Google users get the same starter bonus and daily claim
//! as email users; failures become a redirect to the frontend, never raw JSON.

use crate::economy::{self, Amounts, reason};
use crate::users::{self, NewUser, normalize_email};
use crate::{Context, Error, identity};
use base64::Engine;
use rand::RngCore;
use serde_json::Value;
use uuid::Uuid;

pub const GOOGLE: &str = "google";
const STATE_TTL_SECS: u64 = 600;

pub const INVALID_PROVIDER: &str = "Invalid provider. Only Google OAuth is supported.";
pub const NOT_CONFIGURED: &str = "Google OAuth not configured";
pub const INIT_FAILED: &str = "Failed to initialize OAuth flow";
pub const INVALID_STATE: &str = "Invalid or expired OAuth state. Please try again.";
pub const EXCHANGE_FAILED: &str = "Failed to exchange authorization code. Please try again.";
pub const NO_ACCESS_TOKEN: &str = "No access token received from Google";
pub const USERINFO_FAILED: &str = "Failed to fetch user information from Google";
pub const USERINFO_ERROR: &str = "Failed to retrieve user information";
pub const NO_EMAIL: &str = "Email not provided by Google";
pub const OTHER_PROVIDER: &str = "Email already registered with different provider";
pub const CREATE_FAILED: &str = "Failed to create user account";
pub const FAILED: &str = "OAuth authentication failed";

fn state_key(ctx: &Context, provider: &str, state: &str) -> String {
    ctx.redis.key(&format!("oauth_state:{provider}:{state}"))
}

pub fn redirect_uri(ctx: &Context) -> String {
    format!("{}/api/auth/callback/google", ctx.config.backend_url)
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Step 1: a fresh state in Redis and the URL of Google's consent screen.
/// Errors: 400 for another provider, 503 when Google is not configured,
/// 500 when the state cannot be stored.
pub async fn authorization_url(ctx: &Context, provider: &str) -> crate::Result<String> {
    if !provider.eq_ignore_ascii_case(GOOGLE) {
        return Err(Error::bad_request(INVALID_PROVIDER));
    }
    let Some(google) = &ctx.config.google else {
        return Err(Error::http(503, NOT_CONFIGURED));
    };
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let state = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let mut conn = ctx.redis.conn();
    let stored: redis::RedisResult<()> = redis::cmd("SET")
        .arg(state_key(ctx, GOOGLE, &state))
        .arg("1")
        .arg("EX")
        .arg(STATE_TTL_SECS)
        .query_async(&mut conn)
        .await;
    if let Err(e) = stored {
        tracing::error!(error = %e, "could not store the OAuth state in Redis");
        return Err(Error::http(500, INIT_FAILED));
    }
    Ok(format!(
        "{}?client_id={}&redirect_uri={}&scope={}&response_type=code&state={}&access_type=offline&prompt=consent",
        ctx.config.google_auth_url,
        enc(&google.client_id),
        enc(&redirect_uri(ctx)),
        enc("openid email profile"),
        enc(&state),
    ))
}

/// Where the browser goes after a successful callback.
pub fn success_redirect(ctx: &Context) -> String {
    format!("{}/auth/callback?success=true", ctx.config.frontend_url)
}

/// Where the browser goes after a failed callback.
pub fn error_redirect(ctx: &Context, detail: &str) -> String {
    format!(
        "{}/auth/callback?error={}",
        ctx.config.frontend_url,
        enc(detail)
    )
}

/// Why a callback failed: one of the contract's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure(pub &'static str);

/// Deletes the state; true only for the first use of a state we issued.
async fn take_state(ctx: &Context, state: &str) -> bool {
    if state.is_empty() || state.len() > 256 {
        return false;
    }
    let mut conn = ctx.redis.conn();
    let deleted: redis::RedisResult<i64> = redis::cmd("DEL")
        .arg(state_key(ctx, GOOGLE, state))
        .query_async(&mut conn)
        .await;
    match deleted {
        Ok(n) => n > 0,
        Err(e) => {
            tracing::warn!(error = %e, "could not check the OAuth state in Redis");
            false
        }
    }
}

/// What Google tells us about the person.
#[derive(Debug, Clone, Default)]
pub struct GoogleUser {
    pub email: Option<String>,
    pub id: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub picture: Option<String>,
    pub verified_email: Option<bool>,
}

fn str_field(v: &Value, k: &str) -> Option<String> {
    match v.get(k)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

async fn fetch_google_user(ctx: &Context, code: &str) -> Result<GoogleUser, Failure> {
    let google = ctx.config.google.as_ref().ok_or(Failure(NOT_CONFIGURED))?;
    let redirect = redirect_uri(ctx);
    let form = [
        ("code", code),
        ("client_id", google.client_id.as_str()),
        ("client_secret", google.client_secret.expose()),
        ("redirect_uri", redirect.as_str()),
        ("grant_type", "authorization_code"),
    ];
    let token: Value = match ctx
        .http
        .post(&ctx.config.google_token_url)
        .header("accept", "application/json")
        .form(&form)
        .send()
        .await
    {
        Ok(resp) if resp.status().is_success() => match resp.json().await {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "unreadable answer from Google's token endpoint");
                return Err(Failure(EXCHANGE_FAILED));
            }
        },
        Ok(resp) => {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            tracing::error!(%status, body = %body.chars().take(500).collect::<String>(), "Google refused the code exchange");
            return Err(Failure(EXCHANGE_FAILED));
        }
        Err(e) => {
            tracing::error!(error = %e, "code exchange with Google failed");
            return Err(Failure(EXCHANGE_FAILED));
        }
    };
    let Some(access_token) = str_field(&token, "access_token") else {
        tracing::error!("no access token in Google's token answer");
        return Err(Failure(NO_ACCESS_TOKEN));
    };
    let info: Value = match ctx
        .http
        .get(&ctx.config.google_userinfo_url)
        .bearer_auth(&access_token)
        .send()
        .await
    {
        Ok(resp) if resp.status().is_success() => match resp.json().await {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "unreadable userinfo from Google");
                return Err(Failure(USERINFO_ERROR));
            }
        },
        Ok(resp) => {
            tracing::error!(status = %resp.status(), "Google refused the userinfo request");
            return Err(Failure(USERINFO_FAILED));
        }
        Err(e) => {
            tracing::error!(error = %e, "userinfo request to Google failed");
            return Err(Failure(USERINFO_ERROR));
        }
    };
    Ok(GoogleUser {
        email: str_field(&info, "email"),
        id: str_field(&info, "id").or_else(|| str_field(&info, "sub")),
        given_name: str_field(&info, "given_name"),
        family_name: str_field(&info, "family_name"),
        picture: str_field(&info, "picture"),
        verified_email: info
            .get("verified_email")
            .or_else(|| info.get("email_verified"))
            .and_then(Value::as_bool),
    })
}

/// Step 2 (§4.13): checks and burns the state, exchanges the code, finds,
/// links or creates the account, runs the sign-in effects. Returns users.id.
pub async fn callback(ctx: &Context, code: &str, state: &str) -> Result<Uuid, Failure> {
    if !take_state(ctx, state).await {
        return Err(Failure(INVALID_STATE));
    }
    if ctx.config.google.is_none() {
        return Err(Failure(NOT_CONFIGURED));
    }
    let g = fetch_google_user(ctx, code).await?;
    let user_id = resolve_account(ctx, &g).await?;
    identity::after_sign_in(ctx, user_id).await;
    Ok(user_id)
}

/// Finds, links or creates the account for a Google user (§4.13 step 3).
pub async fn resolve_account(ctx: &Context, g: &GoogleUser) -> Result<Uuid, Failure> {
    let email = normalize_email(g.email.as_deref().ok_or(Failure(NO_EMAIL))?);
    if email.is_empty() {
        return Err(Failure(NO_EMAIL));
    }
    // A second pass resolves the race of two first sign-ins with one email.
    for _ in 0..2 {
        match resolve_once(ctx, g, &email).await {
            Ok(Some(id)) => return Ok(id),
            Ok(None) => continue,
            Err(f) => return Err(f),
        }
    }
    Err(Failure(CREATE_FAILED))
}

/// `Ok(None)` when a concurrent sign-in created the user first.
async fn resolve_once(ctx: &Context, g: &GoogleUser, email: &str) -> Result<Option<Uuid>, Failure> {
    let internal = |e: sqlx::Error| {
        tracing::error!(error = %e, "Google account resolution failed");
        Failure(FAILED)
    };
    let mut tx = ctx.db.begin().await.map_err(internal)?;
    let existing: Option<(Uuid, String, Option<String>)> = sqlx::query_as(
        "SELECT id, auth_provider, social_id FROM users WHERE email = $1 FOR UPDATE",
    )
    .bind(email)
    .fetch_optional(&mut *tx)
    .await
    .map_err(internal)?;

    let user_id = match existing {
        Some((id, provider, social_id)) if provider == "email" && social_id.is_none() => {
            // Linking hands the account to whoever controls the Google identity:
            // only with an address Google has verified.
            if g.verified_email == Some(false) {
                return Err(Failure(OTHER_PROVIDER));
            }
            sqlx::query(
                "UPDATE users SET auth_provider = 'google', social_id = $2, is_verified = true,
                     updated_at = now()
                 WHERE id = $1",
            )
            .bind(id)
            .bind(&g.id)
            .execute(&mut *tx)
            .await
            .map_err(internal)?;
            if let Some(picture) = &g.picture {
                sqlx::query(
                    "UPDATE user_profiles SET avatar_url = $2, updated_at = now()
                     WHERE user_id = $1 AND (avatar_url IS NULL OR avatar_url = '')",
                )
                .bind(id)
                .bind(picture)
                .execute(&mut *tx)
                .await
                .map_err(internal)?;
            }
            id
        }
        Some((id, provider, _)) if provider == GOOGLE => id,
        Some(_) => return Err(Failure(OTHER_PROVIDER)),
        None => {
            let mut nu = NewUser::student(
                email,
                g.given_name.as_deref().unwrap_or("User"),
                g.family_name.as_deref().unwrap_or(""),
            );
            nu.auth_provider = GOOGLE.into();
            nu.social_id = g.id.clone();
            nu.is_verified = true;
            nu.avatar_url = g.picture.clone();
            let created = async {
                let id = users::create_user(&mut tx, &nu).await?;
                economy::credit(
                    &mut tx,
                    id,
                    Amounts::current(ctx).await?.new_user_bonus,
                    reason::NEW_USER_BONUS,
                    None,
                    None,
                )
                .await?;
                Ok::<_, Error>(id)
            }
            .await;
            match created {
                Ok(id) => id,
                Err(e) if e.is_unique_violation(Some("users_email_key")) => return Ok(None),
                Err(e) => {
                    tracing::error!(error = %e, "creating a Google user failed");
                    return Err(Failure(CREATE_FAILED));
                }
            }
        }
    };
    tx.commit().await.map_err(internal)?;
    Ok(Some(user_id))
}
