//! Sessions (API-NEXT.md N3): signing out everywhere and changing the password.
//!
//! Sessions are JWTs, so revoking them is one timestamp per user:
//! `users.tokens_valid_after`. Every token issued before it is refused by the
//! request's user lookup (which loads that row anyway) and by the refresh
//! route; see [`crate::auth::Decoded::is_current`]. It only moves forward.

use crate::auth::{self, Tokens, Verified};
use crate::identity_rules::validate_password;
use crate::ratelimit::{self, Decision, Limit};
use crate::violations::Violations;
use crate::{Context, Error, Result};
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

pub const SIGNED_OUT_EVERYWHERE: &str = "Signed out everywhere";
pub const PASSWORD_CHANGED: &str = "Password changed";
const WRONG_CURRENT: &str = "Current password is incorrect";
const GOOGLE_ACCOUNT: &str = "This account signs in with Google";

/// Password change attempts per user, right or wrong: a stolen session cannot
/// guess the current password at leisure (and then lock its owner out).
pub const CHANGE_PASSWORD: Limit = Limit {
    action: "change_password",
    max: 10,
    window_secs: 900,
};

/// Refuses every token of `user_id` issued before `at` (in the caller's
/// transaction or on a connection).
pub async fn revoke_tokens(
    conn: &mut PgConnection,
    user_id: Uuid,
    at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "UPDATE users SET tokens_valid_after = GREATEST(COALESCE(tokens_valid_after, $2), $2)
         WHERE id = $1",
    )
    .bind(user_id)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// `POST /api/auth/logout-all`: every token issued until now stops working,
/// the caller's own included.
pub async fn logout_all(ctx: &Context, user_id: Uuid) -> Result<()> {
    let mut conn = ctx.db.acquire().await?;
    revoke_tokens(&mut conn, user_id, ctx.clock.now()).await?;
    // This process's cached row goes before the answer does (callers).
    ctx.callers.forget(user_id);
    Ok(())
}

#[derive(Debug, Clone)]
pub struct ChangePasswordInput {
    pub current_password: String,
    pub new_password: String,
    pub confirm_password: String,
}

/// The 422 checks: the registration's password rules for the new password,
/// then the confirmation (only when the rules pass, as pydantic does).
pub fn validate_change(input: &ChangePasswordInput) -> Result<()> {
    let mut v = Violations::new();
    if let Err(msg) = validate_password(&input.new_password) {
        v.value_error(&["body", "new_password"], msg, json!(input.new_password));
    }
    if v.is_empty() && input.new_password != input.confirm_password {
        v.value_error(
            &["body"],
            "Passwords do not match",
            json!({
                "current_password": input.current_password,
                "new_password": input.new_password,
                "confirm_password": input.confirm_password,
            }),
        );
    }
    v.into_result()
}

/// `POST /api/auth/change-password`: checks the current password (at most
/// [`CHANGE_PASSWORD`] attempts, then 429), sets the
/// new one and revokes every earlier token; returns fresh tokens issued at the
/// instant of the revocation, so this session goes on while every other ends.
pub async fn change_password(
    ctx: &Context,
    user_id: Uuid,
    input: ChangePasswordInput,
) -> Result<Tokens> {
    validate_change(&input)?;
    let row: Option<(String, Option<String>)> =
        sqlx::query_as("SELECT auth_provider, hashed_password FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&ctx.db)
            .await?;
    let (provider, old_hash) =
        row.ok_or_else(|| Error::unauthorized("Could not validate credentials"))?;
    let Some(old_hash) = old_hash else {
        return Err(Error::bad_request(if provider == "google" {
            GOOGLE_ACCOUNT
        } else {
            WRONG_CURRENT
        }));
    };
    if let Decision::Limited { retry_after } =
        ratelimit::hit(&ctx.redis, &CHANGE_PASSWORD, &user_id.to_string()).await
    {
        return Err(Error::too_many(
            "Too many password change attempts. Please try again later.",
            retry_after,
        ));
    }
    if auth::verify_password(input.current_password, old_hash.clone()).await == Verified::No {
        return Err(Error::bad_request(WRONG_CURRENT));
    }
    let new_hash = auth::hash_password(input.new_password).await?;
    let now = ctx.clock.now();
    let mut tx = ctx.db.begin().await?;
    // Conditional on the hash just checked: a concurrent change wins alone.
    let updated = sqlx::query(
        "UPDATE users SET hashed_password = $2, updated_at = now()
         WHERE id = $1 AND hashed_password = $3",
    )
    .bind(user_id)
    .bind(&new_hash)
    .bind(&old_hash)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(Error::bad_request(WRONG_CURRENT));
    }
    revoke_tokens(&mut tx, user_id, now).await?;
    tx.commit().await?;
    ctx.callers.forget(user_id);
    Ok(auth::issue_tokens_at(&ctx.config, user_id, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(new: &str, confirm: &str) -> ChangePasswordInput {
        ChangePasswordInput {
            current_password: "Old-pass1".into(),
            new_password: new.into(),
            confirm_password: confirm.into(),
        }
    }

    #[test]
    fn the_new_password_follows_the_registration_rules() {
        assert!(validate_change(&input("abcdefg1", "abcdefg1")).is_ok());
        let Err(Error::Http { status, detail, .. }) = validate_change(&input("short1", "short1"))
        else {
            panic!()
        };
        assert_eq!(status, 422);
        assert_eq!(detail[0]["loc"], json!(["body", "new_password"]));
        assert_eq!(
            detail[0]["msg"],
            "Value error, Password must be at least 8 characters long"
        );
        let Err(Error::Http { detail, .. }) = validate_change(&input("abcdefg1", "abcdefg2"))
        else {
            panic!()
        };
        assert_eq!(detail[0]["loc"], json!(["body"]));
        assert_eq!(detail[0]["msg"], "Value error, Passwords do not match");
    }
}
