//! What every community write shares: the error shape (`detail` is
//! `{success:false, message, ...}`), the row locks in their fixed order, the
//! badge-check job and what runs after the commit.

use super::cache;
use crate::economy;
use crate::jobs::{self, BadgeCheckJob};
use crate::{Context, Error, Result};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

pub(super) fn fail(status: u16, message: impl Into<String>) -> Error {
    Error::with_object(
        status,
        json!({ "success": false, "message": message.into() }),
    )
}

pub(super) fn post_not_found() -> Error {
    fail(404, "Post not found")
}

pub(super) fn insufficient(status: u16, message: String, i: economy::Insufficient) -> Error {
    Error::with_object(
        status,
        json!({ "success": false, "message": message, "required": i.required, "balance": i.balance }),
    )
}

/// The 404 a write endpoint gives for a malformed post id (D28).
pub fn write_post_not_found() -> Error {
    post_not_found()
}

/// Locks the profiles of `users` in ascending id order (deadlock-free).
pub(super) async fn lock_profiles(conn: &mut PgConnection, users: &[Uuid]) -> Result<()> {
    let mut ids = users.to_vec();
    ids.sort();
    ids.dedup();
    // One or two users (every caller): `IN ($1, $2)` is planned once per
    // connection; `= ANY($1)` was re-planned on every call.
    let q = match ids.as_slice() {
        [a] => sqlx::query("SELECT 1 FROM user_profiles WHERE user_id = $1 FOR UPDATE").bind(*a),
        [a, b] => sqlx::query(
            "SELECT 1 FROM user_profiles WHERE user_id IN ($1, $2) ORDER BY user_id FOR UPDATE",
        )
        .bind(*a)
        .bind(*b),
        _ => sqlx::query(
            "SELECT 1 FROM user_profiles WHERE user_id = ANY($1) ORDER BY user_id FOR UPDATE",
        )
        .bind(ids.clone()),
    };
    q.fetch_all(&mut *conn).await?;
    Ok(())
}

/// [`lock_profiles`] for a reaction's two users (the reactor and the post's
/// owner, in the same order), in the statement that also reads the reactor's
/// reaction to the post: one round trip. Call it after the post's lock, so
/// the read sees every reaction committed before this transaction held it.
pub(super) async fn lock_profiles_reading_reaction(
    conn: &mut PgConnection,
    post_id: Uuid,
    user_id: Uuid,
    owner: Uuid,
) -> Result<Option<String>> {
    let rows: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT (SELECT reaction_type FROM post_reactions WHERE post_id = $1 AND user_id = $2)
         FROM user_profiles WHERE user_id IN ($2, $3) ORDER BY user_id FOR UPDATE",
    )
    .bind(post_id)
    .bind(user_id)
    .bind(owner)
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        // No profile to lock (never for a signed-in user); the reaction still counts.
        return Ok(sqlx::query_scalar(
            "SELECT reaction_type FROM post_reactions WHERE post_id = $1 AND user_id = $2",
        )
        .bind(post_id)
        .bind(user_id)
        .fetch_optional(&mut *conn)
        .await?);
    }
    Ok(rows.into_iter().flatten().next())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct LockedPost {
    pub(super) user_id: Uuid,
    pub(super) title: String,
    pub(super) post_type: String,
    pub(super) feedback_type: String,
    pub(super) tags: Vec<String>,
    pub(super) mux_asset_id: Option<String>,
    pub(super) is_hidden: bool,
    pub(super) reaction_count: i32,
}

/// Locks the post row (first lock of every post write).
pub(super) async fn lock_post(
    conn: &mut PgConnection,
    post_id: Uuid,
) -> Result<Option<LockedPost>> {
    Ok(sqlx::query_as(
        "SELECT user_id, title, post_type, feedback_type, tags::text[] AS tags, mux_asset_id,
                is_hidden, reaction_count
         FROM posts WHERE id = $1 FOR UPDATE",
    )
    .bind(post_id)
    .fetch_optional(&mut *conn)
    .await?)
}

pub(super) async fn badge_check(conn: &mut PgConnection, user_id: Uuid, stat: &str) -> Result<()> {
    jobs::enqueue(
        conn,
        &BadgeCheckJob {
            user_id,
            stat: stat.to_string(),
        },
    )
    .await?;
    Ok(())
}

/// After the commit of a write that adds, removes or re-tags a post: wake the
/// outbox relay and drop cached feed pages.
pub(super) async fn after_post_write(ctx: &Context) {
    jobs::wake_relay(ctx);
    cache::invalidate(ctx).await;
}

/// [`lock_post`] for a user's write on someone's post (react, reply,
/// report): 404 `Post not found` when it does not exist or is hidden from
/// `user_id` ([`super::visibility::writable`]).
pub(super) async fn lock_post_for(
    conn: &mut PgConnection,
    post_id: Uuid,
    user_id: Uuid,
) -> Result<LockedPost> {
    match lock_post(conn, post_id).await? {
        Some(p) if super::visibility::writable(p.is_hidden, p.user_id, user_id) => Ok(p),
        _ => Err(post_not_found()),
    }
}
