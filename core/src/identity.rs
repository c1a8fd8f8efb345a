//! Accounts and sign-in (API.md §3.1, §4.11, §4.12): registration, password
//! login, refresh tokens, the waitlist, and password reset.
//!
//! Every rule and message of the contract lives here; the HTTP layer only
//! parses, sets cookies and maps errors.

use crate::auth::{self, TokenError, TokenKind, Tokens, Verified, sign_jwt};
use crate::economy::{self, Amounts, reason};
use crate::first_touch::{self, Attribution, FirstTouch};
use crate::identity_rules::{is_valid_email, validate_password, validate_username};
use crate::jobs::{self, EmailJob};
use crate::ratelimit::{self, Configured, Decision};
use crate::settings::Snapshot;
use crate::users::{self, NewUser, normalize_email, normalize_level_tag};
use crate::violations::Violations;
use crate::{Context, Error, Result, disposable_email, sessions, streaks, verification};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// True when the address is well formed except, possibly, for a domain
/// without a dot (which the contract answers with a 400, not a 422).
fn is_email_shaped(email: &str) -> bool {
    is_valid_email(email) || (!email.ends_with('.') && is_valid_email(&format!("{email}.x")))
}

/// Checks an `EmailStr` field: 422 unless it is shaped like an email.
pub fn check_email_field(v: &mut Violations, loc: &[&str], email: &str) {
    if !is_email_shaped(email.trim()) {
        v.bad_email(loc, email);
    }
}

/// Turns an unexpected failure into the endpoint's 500 message; client errors pass.
fn or_500(e: Error, what: &str, message: &str) -> Error {
    if e.status() >= 500 {
        tracing::error!(error = %e, "{what} failed");
        Error::http(500, message)
    } else {
        e
    }
}

// ---------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------

pub fn issue_tokens(ctx: &Context, user_id: Uuid) -> Tokens {
    auth::issue_tokens_at(&ctx.config, user_id, ctx.clock.now())
}

/// Checks a refresh token and its user (§3.1). Errors are 401 with the
/// contract's messages; the caller clears both cookies on any of them.
pub async fn refresh(ctx: &Context, token: &str) -> Result<Uuid> {
    let decoded = match auth::decode(&ctx.config, token, TokenKind::Refresh) {
        Ok(d) => d,
        Err(TokenError::BadSubject) => return Err(Error::unauthorized("Invalid refresh token")),
        Err(_) => return Err(Error::unauthorized("Invalid or expired refresh token")),
    };
    let user_id = decoded.user_id;
    let row: Option<(Option<chrono::DateTime<chrono::Utc>>,)> = sqlx::query_as(
        "SELECT tokens_valid_after FROM users WHERE id = $1 AND deletion_requested_at IS NULL",
    )
    .bind(user_id)
    .fetch_optional(&ctx.db)
    .await?;
    let Some((valid_after,)) = row else {
        return Err(Error::unauthorized("User not found"));
    };
    // Signed out everywhere (or the password changed) since it was issued.
    if !decoded.is_current(valid_after) {
        return Err(Error::unauthorized("Could not validate credentials"));
    }
    Ok(user_id)
}

// ---------------------------------------------------------------------------
// Registration
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct RegisterInput {
    pub email: String,
    pub username: String,
    pub password: String,
    pub confirm_password: String,
    /// Absent: the stored (lowercased) username (N5.1).
    pub first_name: Option<String>,
    /// Absent: `""`.
    pub last_name: Option<String>,
    pub current_level_tag: Option<String>,
    /// `fbclid`, `utm`, `landing_url` and the `Referer` header (N5.1).
    pub attribution: Attribution,
}

/// The 422 checks of the register body, all fields at once, then the
/// confirmation (only when every field is valid, as pydantic does). Returns
/// the first touch to record.
pub fn validate_register(input: &RegisterInput) -> Result<FirstTouch> {
    let mut v = Violations::new();
    check_email_field(&mut v, &["body", "email"], &input.email);
    if let Err(msg) = validate_username(&input.username) {
        v.value_error(&["body", "username"], msg, json!(input.username));
    }
    if let Err(msg) = validate_password(&input.password) {
        v.value_error(&["body", "password"], msg, json!(input.password));
    }
    let touch = first_touch::validate(&mut v, &input.attribution);
    if v.is_empty() && input.password != input.confirm_password {
        v.value_error(
            &["body"],
            "Passwords do not match",
            json!({
                "email": input.email,
                "username": input.username,
                "password": input.password,
                "confirm_password": input.confirm_password,
                "first_name": input.first_name,
                "last_name": input.last_name,
                "current_level_tag": input.current_level_tag,
            }),
        );
    }
    v.into_result()?;
    Ok(touch)
}

/// The 400 of a well-formed address whose domain has no dot.
fn check_email_format(email: &str) -> Result<()> {
    match email.rsplit_once('@') {
        Some((_, domain)) if domain.contains('.') => Ok(()),
        _ => Err(Error::bad_request("Invalid email format")),
    }
}

async fn email_taken(ctx: &Context, email: &str) -> Result<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS(SELECT 1 FROM users WHERE email = $1)")
            .bind(email)
            .fetch_one(&ctx.db)
            .await?,
    )
}

async fn username_taken(ctx: &Context, username: &str, except: Option<Uuid>) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS(SELECT 1 FROM user_profiles
                       WHERE lower(username) = lower($1) AND user_id IS DISTINCT FROM $2)",
    )
    .bind(username)
    .bind(except)
    .fetch_one(&ctx.db)
    .await?)
}

/// Which unique key a failed insert hit, as the contract's 400 message.
fn duplicate_message(e: &sqlx::Error, email_msg: &str, username_msg: &str) -> Option<String> {
    if crate::error::is_unique_violation(e, Some("users_email_key")) {
        Some(email_msg.to_string())
    } else if crate::error::is_unique_violation(e, Some("user_profiles_username_lower_key")) {
        Some(username_msg.to_string())
    } else {
        None
    }
}

fn map_duplicate(e: Error, email_msg: &str, username_msg: &str) -> Error {
    match &e {
        Error::Database(db) => match duplicate_message(db, email_msg, username_msg) {
            Some(m) => Error::bad_request(m),
            None => e,
        },
        _ => e,
    }
}

pub const REGISTER_TOO_MANY_HOUR: &str = "Too many registration attempts. Please try again later.";
pub const REGISTER_TOO_MANY_DAY: &str =
    "Daily registration limit reached. Please try again tomorrow.";
pub const WAITLIST_TOO_MANY: &str = "Too many sign-ups from this location. Please try again later.";

/// The per-client registration limits of the settings (N5.1; 0 = off, the
/// default): `auth.register_ip_per_hour`, then `auth.register_ip_per_day`.
/// Checked before the body is looked at; every request counts in each window
/// that is on; fail-open when Redis is down.
pub async fn check_register_limits(ctx: &Context, snap: &Snapshot, client: &str) -> Result<()> {
    let a = &snap.settings.auth;
    let windows = [
        (
            a.register_ip_per_hour,
            3600,
            "register_ip",
            REGISTER_TOO_MANY_HOUR,
        ),
        (
            a.register_ip_per_day,
            86400,
            "register_ip_day",
            REGISTER_TOO_MANY_DAY,
        ),
    ];
    let mut refused = None;
    for (max, secs, action, message) in windows {
        if max <= 0 {
            continue;
        }
        let limit = Configured::new(action, max, secs, snap.revision);
        if let Decision::Limited { retry_after } =
            ratelimit::hit_configured(&ctx.redis, &limit, client).await
        {
            refused.get_or_insert((message, retry_after));
        }
    }
    match refused {
        Some((message, retry_after)) => Err(Error::too_many(message, retry_after)),
        None => Ok(()),
    }
}

/// `auth.waitlist_ip_per_hour` per client (0 = off, the default), checked
/// before anything else on the waitlist; every request counts.
pub async fn check_waitlist_limit(ctx: &Context, snap: &Snapshot, client: &str) -> Result<()> {
    let max = snap.settings.auth.waitlist_ip_per_hour;
    if max <= 0 {
        return Ok(());
    }
    let limit = Configured::new("waitlist_ip", max, 3600, snap.revision);
    match ratelimit::hit_configured(&ctx.redis, &limit, client).await {
        Decision::Limited { retry_after } => Err(Error::too_many(WAITLIST_TOO_MANY, retry_after)),
        _ => Ok(()),
    }
}

/// Creates an email account with the 15-clave starter bonus (§3.1). Returns users.id.
pub async fn register(ctx: &Context, input: RegisterInput) -> Result<Uuid> {
    let touch = validate_register(&input)?;
    register_checked(ctx, input, touch)
        .await
        .map_err(|e| or_500(e, "registration", "Registration failed. Please try again."))
}

async fn register_checked(ctx: &Context, input: RegisterInput, touch: FirstTouch) -> Result<Uuid> {
    let email = normalize_email(&input.email);
    check_email_format(&email)?;
    disposable_email::check_permanent(&email)?;
    if email_taken(ctx, &email).await? {
        return Err(Error::bad_request("Email already registered"));
    }
    let username = input.username.trim().to_lowercase();
    if username_taken(ctx, &username, None).await? {
        return Err(Error::bad_request("Username already taken"));
    }
    let hash = auth::hash_password(input.password).await?;

    // N5.1: the names became optional; the username stands in for the first.
    let first_name = input
        .first_name
        .as_deref()
        .map(str::trim)
        .unwrap_or(&username)
        .to_string();
    let last_name = input.last_name.as_deref().map(str::trim).unwrap_or("");
    let mut nu = NewUser::student(&email, &first_name, last_name);
    nu.hashed_password = Some(hash);
    nu.username = Some(username);
    nu.current_level_tag = normalize_level_tag(input.current_level_tag.as_deref());

    let amounts = Amounts::current(ctx).await?;
    let result: Result<Uuid> = async {
        let mut tx = ctx.db.begin().await?;
        let id = users::create_user(&mut tx, &nu).await?;
        first_touch::record(&mut tx, id, &touch, ctx.clock.now()).await?;
        economy::credit(
            &mut tx,
            id,
            amounts.new_user_bonus,
            reason::NEW_USER_BONUS,
            None,
            None,
        )
        .await?;
        verification::queue_email(&mut tx, ctx, id, &email).await?;
        tx.commit().await?;
        Ok(id)
    }
    .await;
    let id = result
        .map_err(|e| map_duplicate(e, "Email already registered", "Username already taken"))?;
    jobs::wake_relay(ctx);
    Ok(id)
}

// ---------------------------------------------------------------------------
// Password login
// ---------------------------------------------------------------------------

const BAD_CREDENTIALS: &str = "Incorrect email or password";

/// Password login (§3.1): rate limits first (every attempt counts), then the
/// password, then the streak update and the daily claim (failures swallowed).
pub async fn login(ctx: &Context, email: &str, password: &str, client: &str) -> Result<Uuid> {
    let email = normalize_email(email);
    if let Decision::Limited { retry_after } =
        ratelimit::hit(&ctx.redis, &ratelimit::LOGIN, &email).await
    {
        return Err(Error::too_many(
            "Too many login attempts. Please try again in a few minutes.",
            retry_after,
        ));
    }
    if let Decision::Limited { retry_after } =
        ratelimit::hit(&ctx.redis, &ratelimit::LOGIN_IP, client).await
    {
        return Err(Error::too_many(
            "Too many login attempts from this IP. Please try again later.",
            retry_after,
        ));
    }
    login_checked(ctx, &email, password)
        .await
        .map_err(|e| or_500(e, "login", "Login failed. Please try again."))
}

async fn login_checked(ctx: &Context, email: &str, password: &str) -> Result<Uuid> {
    let row: Option<(Uuid, Option<String>)> =
        // An account scheduled for deletion answers as a wrong password (N3).
        sqlx::query_as(
            "SELECT id, hashed_password FROM users WHERE email = $1 AND deletion_requested_at IS NULL",
        )
            .bind(email)
            .fetch_optional(&ctx.db)
            .await?;
    let (user_id, hash) = match row {
        Some((id, Some(hash))) => (id, hash),
        _ => {
            // Same work as a real check, so unknown emails are not revealed by timing.
            auth::dummy_verify(password.to_string()).await;
            return Err(Error::unauthorized(BAD_CREDENTIALS));
        }
    };
    match auth::verify_password(password.to_string(), hash.clone()).await {
        Verified::No => return Err(Error::unauthorized(BAD_CREDENTIALS)),
        Verified::Yes => {}
        Verified::YesNeedsRehash => upgrade_hash(ctx, user_id, password, &hash).await,
    }
    after_sign_in(ctx, user_id).await;
    Ok(user_id)
}

/// Replaces a legacy bcrypt hash by an argon2id one (only if it did not change meanwhile).
async fn upgrade_hash(ctx: &Context, user_id: Uuid, password: &str, old: &str) {
    let result: Result<()> = async {
        let new = auth::hash_password(password.to_string()).await?;
        sqlx::query(
            "UPDATE users SET hashed_password = $2, updated_at = now()
             WHERE id = $1 AND hashed_password = $3",
        )
        .bind(user_id)
        .bind(new)
        .bind(old)
        .execute(&ctx.db)
        .await?;
        Ok(())
    }
    .await;
    match result {
        Ok(()) => tracing::info!(%user_id, "legacy bcrypt hash upgraded to argon2id"),
        Err(e) => tracing::warn!(%user_id, error = %e, "could not upgrade a bcrypt hash"),
    }
}

/// The streak update and the daily claim of a sign-in (§4.2). Never fails.
pub async fn after_sign_in(ctx: &Context, user_id: Uuid) {
    let streak: Result<()> = async {
        let mut tx = ctx.db.begin().await?;
        streaks::update_streak(&mut tx, user_id, ctx.clock.now()).await?;
        tx.commit().await?;
        Ok(())
    }
    .await;
    if let Err(e) = streak {
        tracing::warn!(%user_id, error = %e, "streak update at sign-in failed");
    }
    if let Err(e) = streaks::daily_claim(ctx, user_id).await {
        tracing::warn!(%user_id, error = %e, "daily claim at sign-in failed");
    }
}

// ---------------------------------------------------------------------------
// Waitlist
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct WaitlistInput {
    pub email: String,
    pub username: String,
    pub referrer_code: Option<String>,
    /// `fbclid`, `utm`, `landing_url` and the `Referer` header (N5.1).
    pub attribution: Attribution,
}

#[derive(Debug, Clone, Serialize)]
pub struct WaitlistJoined {
    pub user_id: Uuid,
    pub referral_code: String,
    pub position: i64,
}

const EMAIL_ON_LIST: &str = "This email is already on the list.";
const USERNAME_RESERVED: &str = "This username is reserved. Choose another.";
/// Referrals that earn the referrer the `beta_tester` badge.
const BETA_TESTER_REFERRALS: i32 = 3;

pub fn validate_waitlist(input: &WaitlistInput) -> Result<FirstTouch> {
    let mut v = Violations::new();
    check_email_field(&mut v, &["body", "email"], &input.email);
    if let Err(msg) = validate_username(input.username.trim()) {
        v.value_error(&["body", "username"], msg, json!(input.username));
    }
    let touch = first_touch::validate(&mut v, &input.attribution);
    v.into_result()?;
    Ok(touch)
}

/// The waitlist's answer to a filled honeypot (`hp`, N5.1): the normal shape
/// (a random user id and referral code, a plausible position) and no effect
/// at all; only a read, so nothing is stored, sent, awarded or counted.
pub async fn waitlist_decoy(ctx: &Context) -> Result<WaitlistJoined> {
    let position: i64 =
        sqlx::query_scalar("SELECT count(*) FROM user_badges WHERE badge_id = 'founder_diamond'")
            .fetch_one(&ctx.db)
            .await
            .unwrap_or(0);
    Ok(WaitlistJoined {
        user_id: Uuid::new_v4(),
        referral_code: users::new_referral_code(),
        position: position + 1,
    })
}

/// Joins the waitlist (§3.1, D24): user, profile, subscription, referral
/// count, founder badge, referrer's beta-tester badge and the welcome email,
/// all in one transaction.
pub async fn join_waitlist(ctx: &Context, input: WaitlistInput) -> Result<WaitlistJoined> {
    let touch = validate_waitlist(&input)?;
    join_waitlist_checked(ctx, input, touch)
        .await
        .map_err(|e| or_500(e, "waitlist join", "Failed to join waitlist."))
}

async fn join_waitlist_checked(
    ctx: &Context,
    input: WaitlistInput,
    touch: FirstTouch,
) -> Result<WaitlistJoined> {
    let email = normalize_email(&input.email);
    disposable_email::check_permanent(&email)?;
    if email_taken(ctx, &email).await? {
        return Err(Error::bad_request(EMAIL_ON_LIST));
    }
    let username = input.username.trim().to_lowercase();
    if username_taken(ctx, &username, None).await? {
        return Err(Error::bad_request(USERNAME_RESERVED));
    }
    let referrer_code = input
        .referrer_code
        .as_deref()
        .map(|c| c.trim().to_uppercase())
        .filter(|c| !c.is_empty() && c.len() <= 20);

    let result: Result<WaitlistJoined> = async {
        let mut tx = ctx.db.begin().await?;
        let mut nu = NewUser::student(&email, "Founder", "Member");
        nu.auth_provider = "waitlist".into();
        nu.username = Some(username.clone());
        let user_id = users::create_user(&mut tx, &nu).await?;
        first_touch::record(&mut tx, user_id, &touch, ctx.clock.now()).await?;

        // The referrer, if the code is someone else's.
        let referrer: Option<(Uuid, i32)> = match &referrer_code {
            Some(code) => sqlx::query_as(
                "UPDATE user_profiles SET referral_count = referral_count + 1, updated_at = now()
                     WHERE referral_code = $1 AND user_id <> $2
                     RETURNING user_id, referral_count",
            )
            .bind(code)
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?,
            None => None,
        };
        if referrer.is_some() {
            sqlx::query("UPDATE user_profiles SET referred_by_code = $2 WHERE user_id = $1")
                .bind(user_id)
                .bind(&referrer_code)
                .execute(&mut *tx)
                .await?;
        }
        award_manual_badge(&mut tx, user_id, "founder_diamond").await?;
        if let Some((referrer_id, count)) = referrer
            && count >= BETA_TESTER_REFERRALS
        {
            award_manual_badge(&mut tx, referrer_id, "beta_tester").await?;
        }

        let referral_code: String =
            sqlx::query_scalar("SELECT referral_code FROM user_profiles WHERE user_id = $1")
                .bind(user_id)
                .fetch_one(&mut *tx)
                .await?;
        let position: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM user_badges WHERE badge_id = 'founder_diamond'",
        )
        .fetch_one(&mut *tx)
        .await?;

        jobs::enqueue(
            &mut tx,
            &welcome_email(ctx, user_id, &email, &username, &referral_code)?,
        )
        .await?;
        verification::queue_email(&mut tx, ctx, user_id, &email).await?;
        tx.commit().await?;
        Ok(WaitlistJoined {
            user_id,
            referral_code,
            position: position.max(1),
        })
    }
    .await;
    let joined = result.map_err(|e| map_duplicate(e, EMAIL_ON_LIST, USERNAME_RESERVED))?;
    jobs::wake_relay(ctx);
    Ok(joined)
}

/// Awards a badge unless the user already has it (or it is not defined).
/// Returns whether a row was written.
async fn award_manual_badge(
    conn: &mut sqlx::PgConnection,
    user_id: Uuid,
    badge_id: &str,
) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO user_badges (user_id, badge_id)
         SELECT $1, d.id FROM badge_definitions d WHERE d.id = $2
         ON CONFLICT (user_id, badge_id) DO NOTHING",
    )
    .bind(user_id)
    .bind(badge_id)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

// ---------------------------------------------------------------------------
// Emails (plain templates for now)
// ---------------------------------------------------------------------------

fn welcome_email(
    ctx: &Context,
    user_id: Uuid,
    email: &str,
    username: &str,
    referral_code: &str,
) -> Result<EmailJob> {
    let link = format!("{}/waitlist?ref={}", ctx.config.frontend_url, referral_code);
    let r = crate::email_templates::render(
        "waitlist_welcome",
        &serde_json::json!({ "username": username, "referral_link": link }),
    )?;
    Ok(EmailJob {
        idempotency_key: format!("welcome:{user_id}"),
        template: "waitlist_welcome".into(),
        to: vec![email.to_string()],
        subject: r.subject,
        html: r.html,
        text: r.text,
        headers: Default::default(),
    })
}

fn expiry_phrase(minutes: i64) -> String {
    match minutes {
        60 => "1 hour".into(),
        m if m > 60 && m % 60 == 0 => format!("{} hours", m / 60),
        1 => "1 minute".into(),
        m => format!("{m} minutes"),
    }
}

fn reset_email(ctx: &Context, email: &str, token: &str) -> Result<EmailJob> {
    let link = format!("{}/reset-password?token={}", ctx.config.frontend_url, token);
    let r = crate::email_templates::render(
        "password_reset",
        &serde_json::json!({
            "reset_link": link,
            "expires_in": expiry_phrase(ctx.config.password_reset_expire_minutes),
        }),
    )?;
    let digest = hex::encode(Sha256::digest(token.as_bytes()));
    Ok(EmailJob {
        idempotency_key: format!("password-reset:{}", &digest[..32]),
        template: "password_reset".into(),
        to: vec![email.to_string()],
        subject: r.subject,
        html: r.html,
        text: r.text,
        headers: Default::default(),
    })
}

// ---------------------------------------------------------------------------
// Password reset (§4.12, D19)
// ---------------------------------------------------------------------------

pub const FORGOT_PASSWORD_MESSAGE: &str =
    "If the email exists, a password reset link has been sent.";
const RESET_PURPOSE: &str = "password_reset";
const INVALID_RESET: &str = "Invalid or expired reset token";

#[derive(Debug, Serialize, Deserialize)]
struct ResetClaims {
    sub: String,
    purpose: String,
    exp: i64,
    /// Fingerprint of the password hash the token was issued for.
    pfp: String,
    /// Never `access`/`refresh`, so a reset token is no login token.
    #[serde(rename = "type", default)]
    typ: Option<String>,
}

/// First 16 hex characters of sha256 of the stored hash (or of `none`).
pub fn password_fingerprint(hashed_password: Option<&str>) -> String {
    let digest = Sha256::digest(hashed_password.unwrap_or("none").as_bytes());
    hex::encode(digest)[..16].to_string()
}

/// A signed, URL-safe reset token bound to the current password hash: it dies
/// when it expires or as soon as the password changes (single use).
pub fn create_reset_token(ctx: &Context, user_id: Uuid, hashed_password: Option<&str>) -> String {
    let claims = ResetClaims {
        sub: user_id.to_string(),
        purpose: RESET_PURPOSE.into(),
        exp: ctx.clock.now().timestamp() + ctx.config.password_reset_expire_minutes * 60,
        pfp: password_fingerprint(hashed_password),
        typ: Some(RESET_PURPOSE.into()),
    };
    sign_jwt(&ctx.config, &claims)
}

/// Checks signature, purpose and expiry (on the one clock); returns (user, pfp).
fn decode_reset_token(ctx: &Context, token: &str) -> Option<(Uuid, String)> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<ResetClaims>(
        token.trim(),
        &DecodingKey::from_secret(ctx.config.secret_key.expose().as_bytes()),
        &validation,
    )
    .ok()?;
    let c = data.claims;
    if c.purpose != RESET_PURPOSE || c.exp <= ctx.clock.now().timestamp() {
        return None;
    }
    Some((Uuid::parse_str(&c.sub).ok()?, c.pfp))
}

pub fn validate_forgot(email: &str) -> Result<()> {
    let mut v = Violations::new();
    check_email_field(&mut v, &["body", "email"], email);
    v.into_result()
}

/// Forgot-password (§3.1): the answer never depends on the account; limits
/// are silent. Past the limits, a `google` or `apple` account gets no email
/// and its provider is returned, which the route adds to the answer (N5.1).
pub async fn forgot_password(ctx: &Context, email: &str, client: &str) -> Result<Option<String>> {
    validate_forgot(email)?;
    let email = normalize_email(email);
    if ratelimit::hit(&ctx.redis, &ratelimit::FORGOT_PASSWORD, &email)
        .await
        .is_limited()
        || ratelimit::hit(&ctx.redis, &ratelimit::FORGOT_PASSWORD_IP, client)
            .await
            .is_limited()
    {
        tracing::info!("forgot-password rate limited; answering as usual");
        return Ok(None);
    }
    match send_reset(ctx, &email).await {
        Ok(provider) => Ok(provider),
        Err(e) => {
            tracing::error!(error = %e, "forgot-password failed; answering as usual");
            Ok(None)
        }
    }
}

/// Queues the reset email when the account may reset; returns the provider
/// of an OAuth (`google`/`apple`) account instead. An account scheduled for
/// deletion is treated as unknown (its reset would be refused anyway).
async fn send_reset(ctx: &Context, email: &str) -> Result<Option<String>> {
    let row: Option<(Uuid, String, Option<String>)> = sqlx::query_as(
        "SELECT id, auth_provider, hashed_password FROM users
         WHERE email = $1 AND deletion_requested_at IS NULL",
    )
    .bind(email)
    .fetch_optional(&ctx.db)
    .await?;
    let Some((user_id, provider, hash)) = row else {
        return Ok(None);
    };
    let eligible = match provider.as_str() {
        "email" => hash.is_some(),
        "waitlist" => ctx.config.allow_account_claim,
        "google" | "apple" => return Ok(Some(provider)),
        _ => false,
    };
    if !eligible {
        return Ok(None);
    }
    let token = create_reset_token(ctx, user_id, hash.as_deref());
    let mut tx = ctx.db.begin().await?;
    jobs::enqueue(&mut tx, &reset_email(ctx, email, &token)?).await?;
    tx.commit().await?;
    jobs::wake_relay(ctx);
    Ok(None)
}

#[derive(Debug, Clone)]
pub struct ResetInput {
    pub token: String,
    pub new_password: String,
    pub confirm_password: String,
}

pub fn validate_reset(input: &ResetInput) -> Result<()> {
    let mut v = Violations::new();
    if let Err(msg) = validate_password(&input.new_password) {
        v.value_error(&["body", "new_password"], msg, json!(input.new_password));
    }
    if v.is_empty() && input.new_password != input.confirm_password {
        v.value_error(
            &["body"],
            "Passwords do not match",
            json!({
                "token": input.token,
                "new_password": input.new_password,
                "confirm_password": input.confirm_password,
            }),
        );
    }
    v.into_result()
}

/// Sets a new password from a reset token (§3.1). A waitlist account that
/// claims itself becomes an email account, verified. Returns tokens issued at
/// the instant of N3's revocation of every older one, so the route signs the
/// account in with a session that survives the reset (N5.1). An account
/// scheduled for deletion gets the invalid-token 400.
pub async fn reset_password(ctx: &Context, input: ResetInput) -> Result<Tokens> {
    validate_reset(&input)?;
    reset_checked(ctx, input).await.map_err(|e| {
        if e.status() >= 500 {
            tracing::error!(error = %e, "password reset failed");
            Error::bad_request(INVALID_RESET)
        } else {
            e
        }
    })
}

async fn reset_checked(ctx: &Context, input: ResetInput) -> Result<Tokens> {
    let (user_id, pfp) =
        decode_reset_token(ctx, &input.token).ok_or_else(|| Error::bad_request(INVALID_RESET))?;
    let row: Option<(String, Option<String>)> = sqlx::query_as(
        "SELECT auth_provider, hashed_password FROM users
         WHERE id = $1 AND deletion_requested_at IS NULL",
    )
    .bind(user_id)
    .fetch_optional(&ctx.db)
    .await?;
    let Some((provider, old_hash)) = row else {
        return Err(Error::bad_request(INVALID_RESET));
    };
    if password_fingerprint(old_hash.as_deref()) != pfp {
        return Err(Error::bad_request(INVALID_RESET));
    }
    match provider.as_str() {
        "email" => {}
        "waitlist" if ctx.config.allow_account_claim => {}
        "waitlist" => {
            return Err(Error::bad_request(
                "Account claiming is not currently active.",
            ));
        }
        _ => {
            return Err(Error::bad_request(
                "Password reset not available for OAuth accounts",
            ));
        }
    }
    let new_hash = auth::hash_password(input.new_password).await?;
    let mut tx = ctx.db.begin().await?;
    // Conditional on the old hash: two uses of one token cannot both succeed.
    let updated = sqlx::query(
        "UPDATE users SET hashed_password = $2,
             auth_provider = CASE WHEN auth_provider = 'waitlist' THEN 'email' ELSE auth_provider END,
             is_verified = CASE WHEN auth_provider = 'waitlist' THEN true ELSE is_verified END,
             updated_at = now()
         WHERE id = $1 AND hashed_password IS NOT DISTINCT FROM $3
           AND deletion_requested_at IS NULL",
    )
    .bind(user_id)
    .bind(&new_hash)
    .bind(&old_hash)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(Error::bad_request(INVALID_RESET));
    }
    // A reset signs the account out everywhere (N3), then in here (N5.1).
    let now = ctx.clock.now();
    sessions::revoke_tokens(&mut tx, user_id, now).await?;
    tx.commit().await?;
    ctx.callers.forget(user_id);
    Ok(auth::issue_tokens_at(&ctx.config, user_id, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_shapes() {
        assert!(is_email_shaped("a@b.co"));
        assert!(is_email_shaped("a@localhost"));
        assert!(!is_email_shaped("a@"));
        assert!(!is_email_shaped("a@b."));
        assert!(!is_email_shaped("nope"));
        assert!(!is_email_shaped("a b@c.de"));
        assert!(check_email_format("a@localhost").is_err());
        assert!(check_email_format("a@b.co").is_ok());
    }

    #[test]
    fn fingerprints_change_with_the_hash() {
        assert_eq!(password_fingerprint(None).len(), 16);
        assert_ne!(password_fingerprint(None), password_fingerprint(Some("x")));
        assert_eq!(
            password_fingerprint(Some("x")),
            password_fingerprint(Some("x"))
        );
    }

    #[test]
    fn register_messages() {
        let ok = RegisterInput {
            email: "a@b.co".into(),
            username: "dancer_1".into(),
            password: "abcdefg1".into(),
            confirm_password: "abcdefg1".into(),
            first_name: Some("A".into()),
            last_name: Some("B".into()),
            current_level_tag: None,
            attribution: Attribution::default(),
        };
        assert!(validate_register(&ok).is_ok());
        let mut bad = ok.clone();
        bad.confirm_password = "abcdefg2".into();
        let Err(Error::Http { status, detail, .. }) = validate_register(&bad) else {
            panic!()
        };
        assert_eq!(status, 422);
        assert_eq!(detail[0]["loc"], json!(["body"]));
        assert_eq!(detail[0]["msg"], "Value error, Passwords do not match");
        let mut bad = ok.clone();
        bad.password = "short1".into();
        bad.confirm_password = "short1".into();
        let Err(Error::Http { detail, .. }) = validate_register(&bad) else {
            panic!()
        };
        assert_eq!(detail[0]["loc"], json!(["body", "password"]));
        assert_eq!(
            detail[0]["msg"],
            "Value error, Password must be at least 8 characters long"
        );
    }
}
