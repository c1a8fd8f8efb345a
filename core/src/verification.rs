//! Email verification (API-NEXT.md N3): the signed single-use link, the two
//! routes' rules, and the `REQUIRE_VERIFIED_FOR` gate.
//!
//! A link is `{FRONTEND_URL}/verify-email?token=…`, where the token is an
//! HS256 JWT (`SECRET_KEY`) naming one row of `email_verifications`. Using it
//! marks the row, so each link works once; it expires after
//! [`LINK_LIFETIME_HOURS`]. Every email sent creates a row of its own, so a
//! second, fresh link still verifies after the first was used.
//!
//! The gate is [`check`] (for a caller already loaded, as the API's auth
//! extractor does) and [`ensure_verified_for`] (reads the user row).

use crate::auth::sign_jwt;
use crate::email_templates;
use crate::jobs::{self, EmailJob};
use crate::ratelimit::{self, AllDecision, Configured, Decision, Limit, Window};
use crate::settings::Snapshot;
use crate::{Config, Context, Error, Result};
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

/// The 403 of the gate.
pub const VERIFY_FIRST: &str = "Please verify your email first";
/// The 400 of a used, expired or forged link.
pub const INVALID_TOKEN: &str = "Invalid or expired verification token";
/// The 400 of a resend for a verified account.
pub const ALREADY_VERIFIED: &str = "Email already verified";
/// How long a verification link works.
pub const LINK_LIFETIME_HOURS: i64 = 48;
/// Rows are deleted this many days after their link expired.
pub const KEEP_EXPIRED_DAYS: i64 = 7;

/// Resends per user: 3 an hour (the email sent at registration does not count).
pub const RESEND: Limit = Limit {
    action: "resend_verification",
    max: 3,
    window_secs: 3600,
};

/// `POST /api/auth/send-verification`'s answer when a link was sent.
pub const SENT: &str = "Verification email sent";
/// `send-verification`'s 429 per user.
pub const TOO_MANY_PER_USER: &str =
    "Too many verification email requests. Please wait a few minutes before trying again.";
/// `send-verification`'s 429 per client address.
pub const TOO_MANY_PER_IP: &str =
    "Too many verification email requests from this network. Please try again later.";

/// `send-verification` per user: `auth.send_verification_per_user` per 10
/// minutes. Every send through either route counts in it.
pub fn send_per_user(snap: &Snapshot) -> Configured {
    Configured::new(
        "send_verification",
        snap.settings.auth.send_verification_per_user,
        600,
        snap.revision,
    )
}

/// `send-verification` per client address: `auth.send_verification_ip_per_hour`.
pub fn send_per_ip(snap: &Snapshot) -> Configured {
    Configured::new(
        "send_verification_ip",
        snap.settings.auth.send_verification_ip_per_hour,
        3600,
        snap.revision,
    )
}

/// The actions `REQUIRE_VERIFIED_FOR` names.
pub mod action {
    /// Creating a community post.
    pub const POST: &str = "post";
    /// Replying to a post.
    pub const REPLY: &str = "reply";
    /// A checkout that would carry a free trial.
    pub const TRIAL: &str = "trial";
}

// ---------------------------------------------------------------------------
// The gate
// ---------------------------------------------------------------------------

/// Whether `REQUIRE_VERIFIED_FOR` lists `action`.
pub fn is_required(config: &Config, action: &str) -> bool {
    config
        .require_verified_for
        .iter()
        .any(|a| a.eq_ignore_ascii_case(action))
}

/// 403 `Please verify your email first` when `action` needs a verified email
/// and the caller has none. Admins are exempt.
pub fn check(config: &Config, action: &str, is_verified: bool, role: &str) -> Result<()> {
    if is_verified || role == "admin" || !is_required(config, action) {
        Ok(())
    } else {
        Err(Error::forbidden(VERIFY_FIRST))
    }
}

/// [`check`] for a user known by id (one query, none when `action` is not
/// gated). An unknown user is a 404 `User not found`.
pub async fn ensure_verified_for(ctx: &Context, user_id: Uuid, action: &str) -> Result<()> {
    if !is_required(&ctx.config, action) {
        return Ok(());
    }
    let row: Option<(bool, String)> =
        sqlx::query_as("SELECT is_verified, role FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&ctx.db)
            .await?;
    let (is_verified, role) = row.ok_or_else(|| Error::not_found("User not found"))?;
    check(&ctx.config, action, is_verified, &role)
}

// ---------------------------------------------------------------------------
// Links
// ---------------------------------------------------------------------------

const PURPOSE: &str = "email_verification";

#[derive(Debug, Serialize, Deserialize)]
struct VerifyClaims {
    sub: String,
    /// The `email_verifications` row.
    jti: String,
    purpose: String,
    exp: i64,
    /// Never `access`/`refresh`: a verification token is no login token.
    #[serde(rename = "type", default)]
    typ: Option<String>,
}

/// Creates a link for `user_id` and queues its email to `email` in the
/// caller's transaction (the outbox). The caller wakes the relay after commit.
pub async fn queue_email(
    conn: &mut PgConnection,
    ctx: &Context,
    user_id: Uuid,
    email: &str,
) -> Result<()> {
    let now = ctx.clock.now();
    let expires = now + chrono::Duration::hours(LINK_LIFETIME_HOURS);
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO email_verifications (id, user_id, created_at, expires_at)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(user_id)
    .bind(now)
    .bind(expires)
    .execute(&mut *conn)
    .await?;
    let token = sign_jwt(
        &ctx.config,
        &VerifyClaims {
            sub: user_id.to_string(),
            jti: id.to_string(),
            purpose: PURPOSE.into(),
            exp: expires.timestamp(),
            typ: Some(PURPOSE.into()),
        },
    );
    jobs::enqueue(&mut *conn, &email_job(ctx, id, email, &token)?).await?;
    Ok(())
}

fn email_job(ctx: &Context, id: Uuid, email: &str, token: &str) -> Result<EmailJob> {
    let link = format!("{}/verify-email?token={}", ctx.config.frontend_url, token);
    email_templates::email_job(
        "email_verification",
        format!("email-verification:{id}"),
        email,
        &serde_json::json!({
            "verify_link": link,
            "expires_in": email_templates::duration_phrase(LINK_LIFETIME_HOURS * 60),
        }),
    )
}

/// Checks signature, purpose and expiry (on the one clock): (user, row).
fn decode(ctx: &Context, token: &str) -> Option<(Uuid, Uuid)> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    let c = jsonwebtoken::decode::<VerifyClaims>(
        token.trim(),
        &DecodingKey::from_secret(ctx.config.secret_key.expose().as_bytes()),
        &validation,
    )
    .ok()?
    .claims;
    if c.purpose != PURPOSE || c.exp <= ctx.clock.now().timestamp() {
        return None;
    }
    Some((Uuid::parse_str(&c.sub).ok()?, Uuid::parse_str(&c.jti).ok()?))
}

/// `POST /api/auth/verify-email`: uses the link and marks the account
/// verified; returns the account, which the route signs in. A used, expired or
/// forged token is a 400, and so is the link of an account scheduled for
/// deletion (which cannot sign in, N3); a refused link stays unused.
pub async fn verify(ctx: &Context, token: &str) -> Result<Uuid> {
    let (user_id, id) = decode(ctx, token).ok_or_else(|| Error::bad_request(INVALID_TOKEN))?;
    let now = ctx.clock.now();
    let mut tx = ctx.db.begin().await?;
    // Conditional: of two concurrent uses of one link, one wins.
    let used = sqlx::query(
        "UPDATE email_verifications SET used_at = $3
         WHERE id = $1 AND user_id = $2 AND used_at IS NULL AND expires_at > $3
           AND EXISTS (SELECT 1 FROM users u
                       WHERE u.id = $2 AND u.deletion_requested_at IS NULL)",
    )
    .bind(id)
    .bind(user_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if used.rows_affected() == 0 {
        return Err(Error::bad_request(INVALID_TOKEN));
    }
    sqlx::query("UPDATE users SET is_verified = true, updated_at = now() WHERE id = $1")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    ctx.callers.forget(user_id);
    Ok(user_id)
}

/// `POST /api/auth/resend-verification`: a fresh link by email. 400 when the
/// account is verified already; 429 (with `Retry-After`) past [`RESEND`].
/// A send also counts in `send-verification`'s per-user window
/// ([`send_per_user`]), so alternating the routes does not double the budget.
pub async fn resend(ctx: &Context, snap: &Snapshot, user_id: Uuid) -> Result<()> {
    let row: Option<(String, bool)> =
        sqlx::query_as("SELECT email, is_verified FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&ctx.db)
            .await?;
    let (email, is_verified) = row.ok_or_else(|| Error::not_found("User not found"))?;
    if is_verified {
        return Err(Error::bad_request(ALREADY_VERIFIED));
    }
    if let Decision::Limited { retry_after } =
        ratelimit::hit(&ctx.redis, &RESEND, &user_id.to_string()).await
    {
        return Err(Error::too_many(
            "Too many verification emails. Please try again later.",
            retry_after,
        ));
    }
    let per_user = send_per_user(snap);
    ratelimit::hit_all_or_none(
        &ctx.redis,
        &[Window::counted(
            per_user.limit,
            per_user.id(&user_id.to_string()),
        )],
    )
    .await;
    let mut tx = ctx.db.begin().await?;
    queue_email(&mut tx, ctx, user_id, &email).await?;
    tx.commit().await?;
    jobs::wake_relay(ctx);
    Ok(())
}

/// What `POST /api/auth/send-verification` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// Verified already: nothing sent, no window used.
    AlreadyVerified,
    /// A fresh link was queued.
    Sent,
}

/// `POST /api/auth/send-verification` (N5.1): the May 2026 frontend's resend.
/// A verified caller is told so (no window used). Otherwise the limits, in
/// order, counting only requests that pass all of them: [`send_per_user`]
/// (shared with [`resend`]), then [`send_per_ip`]; a passing send also counts
/// in [`RESEND`]'s window. Then a fresh link through the outbox.
pub async fn send(
    ctx: &Context,
    snap: &Snapshot,
    user_id: Uuid,
    client: &str,
) -> Result<SendOutcome> {
    let row: Option<(String, bool)> =
        sqlx::query_as("SELECT email, is_verified FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&ctx.db)
            .await?;
    let (email, is_verified) = row.ok_or_else(|| Error::not_found("User not found"))?;
    if is_verified {
        return Ok(SendOutcome::AlreadyVerified);
    }
    let user = user_id.to_string();
    let per_user = send_per_user(snap);
    let per_ip = send_per_ip(snap);
    let windows = [
        Window::checked(per_user.limit, per_user.id(&user)),
        Window::checked(per_ip.limit, per_ip.id(client)),
        Window::counted(RESEND, user),
    ];
    if let AllDecision::Limited { index, retry_after } =
        ratelimit::hit_all_or_none(&ctx.redis, &windows).await
    {
        let message = if index == 0 {
            TOO_MANY_PER_USER
        } else {
            TOO_MANY_PER_IP
        };
        return Err(Error::too_many(message, retry_after));
    }
    let mut tx = ctx.db.begin().await?;
    queue_email(&mut tx, ctx, user_id, &email).await?;
    tx.commit().await?;
    jobs::wake_relay(ctx);
    Ok(SendOutcome::Sent)
}

/// The daily maintenance's part: deletes links that expired more than
/// [`KEEP_EXPIRED_DAYS`] ago (`email_verifications_expires_idx`). Returns the
/// rows deleted.
pub async fn prune(db: &sqlx::PgPool, now: DateTime<Utc>) -> Result<u64> {
    let r = sqlx::query("DELETE FROM email_verifications WHERE expires_at < $1")
        .bind(now - chrono::Duration::days(KEEP_EXPIRED_DAYS))
        .execute(db)
        .await?;
    Ok(r.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(gate: Option<&str>) -> Config {
        let mut m = HashMap::new();
        m.insert("SECRET_KEY".to_string(), "k".to_string());
        if let Some(g) = gate {
            m.insert("REQUIRE_VERIFIED_FOR".to_string(), g.to_string());
        }
        Config::from_map(&m).unwrap()
    }

    #[test]
    fn the_gate_follows_require_verified_for_and_exempts_admins() {
        let c = config(None);
        assert_eq!(c.require_verified_for, ["post", "reply", "trial"]);
        for a in [action::POST, action::REPLY, action::TRIAL] {
            let Err(Error::Http { status, detail, .. }) = check(&c, a, false, "student") else {
                panic!("{a} is gated by default")
            };
            assert_eq!((status, detail), (403, serde_json::json!(VERIFY_FIRST)));
            assert!(check(&c, a, true, "student").is_ok());
            assert!(check(&c, a, false, "admin").is_ok());
            assert!(check(&c, a, false, "instructor").is_err());
        }
        assert!(check(&c, "react", false, "student").is_ok());
        let c = config(Some(" Reply , "));
        assert_eq!(c.require_verified_for, ["reply"]);
        assert!(check(&c, action::POST, false, "student").is_ok());
        assert!(check(&c, action::REPLY, false, "student").is_err());
        let c = config(Some(""));
        assert!(c.require_verified_for.is_empty());
        assert!(check(&c, action::TRIAL, false, "student").is_ok());
    }

    #[test]
    fn the_email_carries_the_link_and_its_lifetime() {
        let r = email_templates::render(
            "email_verification",
            &serde_json::json!({
                "verify_link": "https://mamboguild.com/verify-email?token=a.b.c",
                "expires_in": email_templates::duration_phrase(LINK_LIFETIME_HOURS * 60),
            }),
        )
        .unwrap();
        assert_eq!(r.subject, "Verify your email - The Mambo Guild");
        assert!(
            r.text
                .contains("https://mamboguild.com/verify-email?token=a.b.c")
        );
        assert!(r.text.contains("48 hours"), "{}", r.text);
        assert!(
            r.html
                .contains("href=\"https://mamboguild.com/verify-email?token=a.b.c\"")
        );
    }
}
