//! Account deletion (GDPR art. 17, API-NEXT.md N3).
//!
//! The request ([`request_own`], [`request_by_admin`]) only commits the
//! intent: `users.deletion_requested_at` is set, which at once blocks the
//! sign-in (login answers as for a wrong password) and every token (the
//! request's user lookup refuses the row, no extra query), an
//! `account_deletions` row records the progress, and the `account_deletion`
//! job is queued (an admin's request writes its audit row in the same
//! transaction).
//!
//! The job ([`run`]) then works through the steps in order, each recorded in
//! `account_deletions` when it finishes, so a job killed halfway resumes
//! where it stopped and a job run twice does nothing the second time:
//! 1. Stripe: the subscription is cancelled at once (`payments`).
//! 2. Mux: the assets of the user's posts, replies (and the replies under
//!    their posts) and submissions are deleted; the list is fixed when the
//!    step starts and each asset leaves it once deleted, so none is deleted
//!    twice.
//! 3. Object storage: the avatar (when it is one of our uploads) and the
//!    user's export archives.
//! 4. Redis keys of the user (rate limits by email and id).
//! 5. Rows, the tombstone and the audit row, in one transaction: the posts
//!    (with the replies under them), reactions and saved posts
//!    (`community::erase_author`, counters kept), notifications, preferences,
//!    submissions, progress, exports, verification links, broadcast
//!    recipients, email deliveries and leaderboard entries (N5.7); the user row stays as a tombstone (email, names, username,
//!    avatar, password and Google link cleared; shown as `Deleted user`) so
//!    the clave ledger and replies on other people's posts stay.

use super::storage;
use crate::audit::{self, Actor, Entry};
use crate::auth::{self, Verified};
use crate::jobs::{self, AccountDeletionJob};
use crate::{Context, Error, Result, community, mux};
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgConnection;
use std::net::IpAddr;
use uuid::Uuid;

pub const SCHEDULED: &str = "Your account is scheduled for deletion";
pub const SCHEDULED_BY_ADMIN: &str = "The account is scheduled for deletion";
pub const WRONG_PASSWORD: &str = "Password is incorrect";
pub const CONFIRM_REQUIRED: &str = "Type DELETE to confirm";
pub const USE_OWN_ROUTE: &str = "Use DELETE /api/users/me";
pub const USER_NOT_FOUND: &str = "User not found";
/// The word a Google account confirms its deletion with.
pub const CONFIRM_WORD: &str = "DELETE";
/// The names a deleted user is shown with.
pub const TOMBSTONE_FIRST_NAME: &str = "Deleted";
pub const TOMBSTONE_LAST_NAME: &str = "user";

/// `DELETE /api/users/me`: an account with a password confirms with it
/// (400 `Password is incorrect`); an account without one (Google) with
/// `confirm: "DELETE"`. Then schedules the deletion (idempotent).
pub async fn request_own(
    ctx: &Context,
    user_id: Uuid,
    password: Option<String>,
    confirm: Option<String>,
    ip: Option<IpAddr>,
) -> Result<()> {
    let row: Option<(String, Option<String>)> =
        sqlx::query_as("SELECT auth_provider, hashed_password FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&ctx.db)
            .await?;
    let (provider, hash) = row.ok_or_else(|| Error::not_found(USER_NOT_FOUND))?;
    let confirmed_by_word = provider != "email" && confirm.as_deref() == Some(CONFIRM_WORD);
    if !confirmed_by_word {
        match (hash, password) {
            (Some(hash), Some(password)) => {
                if auth::verify_password(password, hash).await == Verified::No {
                    return Err(Error::bad_request(WRONG_PASSWORD));
                }
            }
            (Some(_), None) => return Err(Error::bad_request(WRONG_PASSWORD)),
            (None, Some(password)) if provider == "email" => {
                auth::dummy_verify(password).await;
                return Err(Error::bad_request(WRONG_PASSWORD));
            }
            (None, _) => return Err(Error::bad_request(CONFIRM_REQUIRED)),
        }
    }
    let mut tx = ctx.db.begin().await?;
    schedule(&mut tx, ctx.clock.now(), user_id, user_id, ip).await?;
    tx.commit().await?;
    ctx.callers.forget(user_id);
    jobs::wake_relay(ctx);
    Ok(())
}

/// `DELETE /api/admin/users/{user_id}`: the same deletion, no password; 404
/// for an unknown (or already deleted) user, 400 for the admin themselves.
/// Writes the `user.delete` audit row with the request.
pub async fn request_by_admin(ctx: &Context, actor: &Actor, user_id: Uuid) -> Result<()> {
    if actor.id == user_id {
        return Err(Error::bad_request(USE_OWN_ROUTE));
    }
    let mut tx = ctx.db.begin().await?;
    let before: Option<serde_json::Value> = sqlx::query_scalar(
        "SELECT jsonb_build_object('id', u.id, 'role', u.role,
                                   'username', p.username,
                                   'deletion_requested_at', u.deletion_requested_at)
         FROM users u LEFT JOIN user_profiles p ON p.user_id = u.id
         WHERE u.id = $1 AND u.deleted_at IS NULL
         FOR UPDATE OF u",
    )
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?;
    let before = before.ok_or_else(|| Error::not_found(USER_NOT_FOUND))?;
    schedule(&mut tx, actor.at, user_id, actor.id, actor.ip).await?;
    audit::record(
        &mut tx,
        actor
            .entry(audit::action::USER_DELETE, audit::target::USER, user_id)
            .before(before)
            .after(json!({"status": "scheduled"})),
    )
    .await?;
    tx.commit().await?;
    ctx.callers.forget(user_id);
    jobs::wake_relay(ctx);
    Ok(())
}

/// Marks the account for deletion and queues the job, once: a second request
/// for an account already scheduled changes nothing.
async fn schedule(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    user_id: Uuid,
    requested_by: Uuid,
    ip: Option<IpAddr>,
) -> Result<()> {
    let first = sqlx::query(
        "UPDATE users SET deletion_requested_at = $2, updated_at = $2
         WHERE id = $1 AND deletion_requested_at IS NULL",
    )
    .bind(user_id)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if !first {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO account_deletions (user_id, requested_at, requested_by, requested_ip)
         VALUES ($1, $2, $3, $4::text::inet)
         ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(user_id)
    .bind(now)
    .bind(requested_by)
    .bind(ip.map(|ip| ip.to_string()))
    .execute(&mut *conn)
    .await?;
    jobs::enqueue(conn, &AccountDeletionJob { user_id }).await?;
    Ok(())
}

/// The steps of a deletion, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    Stripe,
    Mux,
    Storage,
    /// Redis keys, rows, the tombstone and the audit row.
    Rows,
}

pub const STEPS: [Step; 4] = [Step::Stripe, Step::Mux, Step::Storage, Step::Rows];

type Progress = (
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

/// The `account_deletion` job: every step not done yet, in order.
pub async fn run(ctx: &Context, job: &AccountDeletionJob) -> Result<()> {
    run_until(ctx, job.user_id, Step::Rows).await
}

/// Runs the steps not done yet up to and including `last` (tests stop early
/// to resume later, as a killed job would).
///
/// One run per user at a time: a transaction-level advisory lock is held
/// for the whole run (released by the rollback if the run dies or is
/// cancelled), so a duplicate delivery of the job neither calls Stripe nor
/// Mux a second time; it returns at once, the first run finishing the work.
pub async fn run_until(ctx: &Context, user_id: Uuid, last: Step) -> Result<()> {
    let mut lock = ctx.db.begin().await?;
    let locked: bool = sqlx::query_scalar(
        "SELECT pg_try_advisory_xact_lock(hashtextextended('account_deletion:' || $1::text, 0))",
    )
    .bind(user_id)
    .fetch_one(&mut *lock)
    .await?;
    if !locked {
        tracing::info!(%user_id, "account deletion already running elsewhere");
        return Ok(());
    }
    let res = run_steps(ctx, user_id, last).await;
    lock.rollback().await?;
    res
}

async fn run_steps(ctx: &Context, user_id: Uuid, last: Step) -> Result<()> {
    for step in STEPS {
        if step > last {
            break;
        }
        let progress: Option<Progress> = sqlx::query_as(
            "SELECT stripe_done_at, mux_done_at, storage_done_at, rows_done_at, completed_at
             FROM account_deletions WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(&ctx.db)
        .await?;
        let Some((stripe, mux_done, storage_done, rows, completed)) = progress else {
            // No deletion was requested for this user.
            return Ok(());
        };
        if completed.is_some() {
            return Ok(());
        }
        let done = match step {
            Step::Stripe => stripe.is_some(),
            Step::Mux => mux_done.is_some(),
            Step::Storage => storage_done.is_some(),
            Step::Rows => rows.is_some(),
        };
        if done {
            continue;
        }
        match step {
            Step::Stripe => cancel_subscription(ctx, user_id).await?,
            Step::Mux => delete_mux_assets(ctx, user_id).await?,
            Step::Storage => delete_objects(ctx, user_id).await?,
            Step::Rows => {
                delete_redis_keys(ctx, user_id).await;
                delete_rows(ctx, user_id).await?;
                community::cache::invalidate(ctx).await;
                tracing::info!(%user_id, "account deleted");
                continue;
            }
        }
        let column = match step {
            Step::Stripe => "stripe_done_at",
            Step::Mux => "mux_done_at",
            Step::Storage => "storage_done_at",
            Step::Rows => unreachable!("the rows step records itself"),
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE account_deletions SET {column} = $2 WHERE user_id = $1"
        )))
        .bind(user_id)
        .bind(ctx.clock.now())
        .execute(&ctx.db)
        .await?;
    }
    Ok(())
}

/// Step 1: the subscription ends at once at Stripe (the payments domain
/// knows how; no subscription is fine).
async fn cancel_subscription(ctx: &Context, user_id: Uuid) -> Result<()> {
    crate::payments::cancel_for_deletion(ctx, user_id).await
}

/// The Mux assets a deletion removes: of the user's posts, of the replies by
/// the user or under the user's posts, and of the user's submissions.
async fn assets_of(conn: &mut PgConnection, user_id: Uuid) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT a FROM (
             SELECT p.mux_asset_id::text AS a FROM posts p
             WHERE p.user_id = $1 AND p.mux_asset_id IS NOT NULL
             UNION
             SELECT r.mux_asset_id::text FROM post_replies r
             WHERE r.mux_asset_id IS NOT NULL
               AND (r.user_id = $1 OR r.post_id IN (SELECT id FROM posts WHERE user_id = $1))
             UNION
             SELECT u.asset_id FROM mux_uploads u
             JOIN boss_submissions b ON b.video_url = u.playback_id
             WHERE b.user_id = $1 AND u.asset_id IS NOT NULL
         ) x WHERE a <> '' ORDER BY a",
    )
    .bind(user_id)
    .fetch_all(&mut *conn)
    .await?)
}

/// Step 2: deletes the assets at Mux, each once (a Mux 404 counts as
/// deleted), then clears them from the rows that stay until step 5.
async fn delete_mux_assets(ctx: &Context, user_id: Uuid) -> Result<()> {
    let mut tx = ctx.db.begin().await?;
    let pending: Option<Option<Vec<String>>> = sqlx::query_scalar(
        "SELECT mux_assets FROM account_deletions WHERE user_id = $1 FOR UPDATE",
    )
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?;
    let pending = match pending.flatten() {
        Some(list) => list,
        None => {
            let list = assets_of(&mut tx, user_id).await?;
            sqlx::query("UPDATE account_deletions SET mux_assets = $2 WHERE user_id = $1")
                .bind(user_id)
                .bind(&list)
                .execute(&mut *tx)
                .await?;
            list
        }
    };
    tx.commit().await?;

    for asset_id in &pending {
        match mux::sync_delete_asset(ctx, asset_id).await {
            Ok(()) => {}
            // Mux refused for good (not a 404, which is success, nor a 429):
            // retrying cannot help, and the deletion must not stall on it.
            Err(e) if (400..500).contains(&e.status()) && e.status() != 429 => {
                tracing::warn!(
                    %user_id,
                    asset_id,
                    error = %e,
                    "Mux refused to delete an asset; skipped"
                );
            }
            Err(e) => return Err(e),
        }
        sqlx::query(
            "UPDATE account_deletions SET mux_assets = array_remove(mux_assets, $2)
             WHERE user_id = $1",
        )
        .bind(user_id)
        .bind(asset_id)
        .execute(&ctx.db)
        .await?;
    }

    // The videos are gone: nothing may point at them (nor queue their
    // deletion again when the rows go).
    let mut tx = ctx.db.begin().await?;
    sqlx::query(
        "UPDATE post_replies SET mux_asset_id = NULL, mux_playback_id = NULL
         WHERE mux_asset_id IS NOT NULL
           AND (user_id = $1 OR post_id IN (SELECT id FROM posts WHERE user_id = $1))",
    )
    .bind(user_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE posts SET mux_asset_id = NULL, mux_playback_id = NULL
         WHERE user_id = $1 AND mux_asset_id IS NOT NULL",
    )
    .bind(user_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Step 3: the avatar (when it is one of our uploads) and every export
/// archive of the user. Without object storage there is nothing to delete.
async fn delete_objects(ctx: &Context, user_id: Uuid) -> Result<()> {
    let Some(store) = storage::storage(ctx) else {
        return Ok(());
    };
    let avatar: Option<Option<String>> =
        sqlx::query_scalar("SELECT avatar_url FROM user_profiles WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&ctx.db)
            .await?;
    if let Some(key) = avatar
        .flatten()
        .and_then(|url| store.key_of_public_url(&url))
    {
        store.delete_in(&store.r2.bucket, &key).await?;
    }
    store
        .delete_prefix(&format!("{}/{user_id}/", ctx.config.export_prefix))
        .await?;
    Ok(())
}

/// Step 4: the user's keys in Redis (rate limits by email and by id).
/// Best effort: keys expire by themselves.
async fn delete_redis_keys(ctx: &Context, user_id: Uuid) {
    let email: Option<String> = sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(&ctx.db)
        .await
        .ok()
        .flatten();
    let mut conn = ctx.redis.conn();
    let mut keys: Vec<String> = Vec::new();
    let mut patterns = vec![ctx.redis.key(&format!("*{user_id}*"))];
    if let Some(email) = email {
        let escaped: String = email
            .chars()
            .flat_map(|c| match c {
                '*' | '?' | '[' | ']' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        patterns.push(ctx.redis.key(&format!("*:{escaped}")));
    }
    for pattern in patterns {
        let mut cursor: u64 = 0;
        loop {
            let res: redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await;
            match res {
                Ok((next, found)) => {
                    keys.extend(found);
                    cursor = next;
                    if cursor == 0 {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(%user_id, error = %e, "scanning the user's Redis keys failed");
                    break;
                }
            }
        }
    }
    if !keys.is_empty() {
        let res: redis::RedisResult<i64> =
            redis::cmd("DEL").arg(&keys).query_async(&mut conn).await;
        if let Err(e) = res {
            tracing::warn!(%user_id, error = %e, "deleting the user's Redis keys failed");
        }
    }
}

/// `rows_done_at`, `requested_by`, the requester's address, `requested_at`.
type DeletionState = (
    Option<DateTime<Utc>>,
    Option<Uuid>,
    Option<String>,
    DateTime<Utc>,
);

/// Step 5: the rows, the tombstone and the audit row, in one transaction.
async fn delete_rows(ctx: &Context, user_id: Uuid) -> Result<()> {
    let now = ctx.clock.now();
    let mut tx = ctx.db.begin().await?;
    // First, before any row lock: it waits for a running leaderboard rebuild
    // (N5.7), which then cannot put the user's entries back.
    let leaderboard_entries = community::leaderboard::forget_user(&mut tx, user_id).await?;
    let state: Option<DeletionState> = sqlx::query_as(
        "SELECT rows_done_at, requested_by, host(requested_ip), requested_at
             FROM account_deletions WHERE user_id = $1 FOR UPDATE",
    )
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((None, requested_by, ip, requested_at)) = state else {
        return Ok(());
    };
    let email: String = sqlx::query_scalar("SELECT email FROM users WHERE id = $1 FOR UPDATE")
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?;

    let erased = community::erase_author(&mut tx, user_id).await?;
    for sql in [
        "DELETE FROM notifications WHERE user_id = $1",
        "DELETE FROM notification_preferences WHERE user_id = $1",
        "DELETE FROM boss_submissions WHERE user_id = $1",
        "DELETE FROM user_progress WHERE user_id = $1",
        "DELETE FROM data_exports WHERE user_id = $1",
        "DELETE FROM broadcast_recipients WHERE user_id = $1",
        // Verification links (reset links die with the password hash).
        "DELETE FROM email_verifications WHERE user_id = $1",
    ] {
        sqlx::query(sql).bind(user_id).execute(&mut *tx).await?;
    }
    // Checkout seat holds (API-2026-05.md N5.7); open sessions are expired.
    crate::payments::delete_holds_of_user(&mut tx, user_id).await?;
    sqlx::query("DELETE FROM email_deliveries WHERE recipient = $1")
        .bind(&email)
        .execute(&mut *tx)
        .await?;
    // The tombstone: nothing left that names the person.
    sqlx::query(
        "UPDATE users SET email = $2, hashed_password = NULL, social_id = NULL,
             is_verified = false, email_unsubscribed = true, deleted_at = $3, updated_at = $3
         WHERE id = $1",
    )
    .bind(user_id)
    .bind(format!("deleted-{}@deleted.invalid", user_id.simple()))
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE user_profiles SET first_name = $2, last_name = $3, username = NULL,
             avatar_url = NULL, referral_code = NULL, referred_by_code = NULL, updated_at = $4
         WHERE user_id = $1",
    )
    .bind(user_id)
    .bind(TOMBSTONE_FIRST_NAME)
    .bind(TOMBSTONE_LAST_NAME)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    // First-touch attribution (N5.7).
    crate::first_touch::clear(&mut tx, user_id).await?;
    sqlx::query(
        "UPDATE account_deletions SET rows_done_at = $2, completed_at = $2 WHERE user_id = $1",
    )
    .bind(user_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        Entry {
            actor_id: None,
            action: audit::action::USER_DELETE,
            target_type: audit::target::USER,
            target_id: Some(user_id.to_string()),
            before: Some(json!({
                "requested_at": requested_at,
                "requested_by": requested_by,
            })),
            after: Some(json!({
                "status": "deleted",
                "posts_deleted": erased.posts,
                "reactions_deleted": erased.reactions,
                "saved_posts_deleted": erased.saved,
                "leaderboard_entries_deleted": leaderboard_entries,
            })),
            ip: ip.and_then(|ip| ip.parse().ok()),
            at: now,
        },
    )
    .await?;
    tx.commit().await?;
    jobs::wake_relay(ctx);
    Ok(())
}
