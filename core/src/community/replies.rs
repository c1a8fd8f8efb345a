//! Replies and accepted solutions.

use super::reactions::bump_stat;
use super::slots::slot_status_conn;
use super::validation::Validation;
use super::write::{badge_check, fail, insufficient, lock_post, lock_profiles, post_not_found};
use super::{Done, PostUser, ReplyItem, ReplyWritten};
use crate::economy::{self, Amounts, PRO_SQL, reason};
use crate::jobs;
use crate::notifications;
use crate::{Context, Result};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// `POST /api/community/posts/{id}/replies`.
#[derive(Debug, Clone, Default)]
pub struct NewReply {
    pub content: String,
    pub mux_asset_id: Option<String>,
    pub mux_playback_id: Option<String>,
}

impl NewReply {
    pub fn validate(&self) -> Result<()> {
        let mut v = Validation::new();
        v.string_len(&["body", "content"], &self.content, 1, 2000);
        v.optional_len(&["body", "mux_asset_id"], &self.mux_asset_id, 100);
        v.optional_len(&["body", "mux_playback_id"], &self.mux_playback_id, 100);
        v.finish()
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct ReplyRow {
    pub(super) id: Uuid,
    pub(super) user_id: Uuid,
    pub(super) content: String,
    pub(super) mux_playback_id: Option<String>,
    pub(super) is_accepted_answer: bool,
    pub(super) created_at: DateTime<Utc>,
    pub(super) first_name: String,
    pub(super) last_name: String,
    pub(super) avatar_url: Option<String>,
    pub(super) level: i32,
    pub(super) is_pro: bool,
}

impl ReplyRow {
    pub(super) fn into_item(self) -> ReplyItem {
        ReplyItem {
            id: self.id,
            user: PostUser {
                id: self.user_id,
                first_name: self.first_name,
                last_name: self.last_name,
                avatar_url: self.avatar_url,
                is_pro: self.is_pro,
                level: self.level,
            },
            content: self.content,
            mux_playback_id: self.mux_playback_id,
            is_accepted_answer: self.is_accepted_answer,
            created_at: self.created_at,
        }
    }
}

pub(super) const REPLY_SELECT: &str = "SELECT rp.id, rp.user_id, rp.content, rp.mux_playback_id,
        rp.is_accepted_answer, rp.created_at,
        COALESCE(pr.first_name, 'Unknown') AS first_name,
        COALESCE(pr.last_name, 'User') AS last_name,
        pr.avatar_url, COALESCE(pr.level, 1) AS level,
        COALESCE(PRO_EXPR, false) AS is_pro
    FROM post_replies rp
    LEFT JOIN user_profiles pr ON pr.user_id = rp.user_id
    LEFT JOIN subscriptions s ON s.user_id = rp.user_id";

pub(super) fn reply_select() -> String {
    REPLY_SELECT.replace("PRO_EXPR", PRO_SQL)
}

pub(super) async fn load_reply(conn: &mut PgConnection, reply_id: Uuid) -> Result<ReplyItem> {
    let sql = format!("{} WHERE rp.id = $1", reply_select());
    let row: ReplyRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(reply_id)
        .fetch_one(&mut *conn)
        .await?;
    Ok(row.into_item())
}

// ---------------------------------------------------------------------------

/// Replies to a post (§4.9 "Reply"): 2 claves; closed in Hype mode; a reply
/// with a video takes a slot (D15).
pub async fn reply(
    ctx: &Context,
    user_id: Uuid,
    post_id: Uuid,
    input: NewReply,
) -> Result<ReplyWritten> {
    input.validate()?;
    let amounts = Amounts::from_config(&ctx.config);
    let mut tx = ctx.db.begin().await?;
    let post = lock_post(&mut tx, post_id)
        .await?
        .ok_or_else(post_not_found)?;
    if post.feedback_type == "hype" {
        return Err(fail(400, "Comments are disabled on this post (Hype mode)"));
    }
    lock_profiles(&mut tx, &[user_id]).await?;
    if input.mux_asset_id.is_some() {
        let status = slot_status_conn(&mut tx, &amounts, user_id).await?;
        if !status.allowed {
            return Err(fail(400, status.message));
        }
    }
    let cost = amounts.comment;
    if let Err(i) = economy::spend(&mut tx, user_id, cost, reason::COMMENT, Some(post_id)).await? {
        return Err(insufficient(
            400,
            format!("Insufficient claves. You need {cost} 🥢"),
            i,
        ));
    }
    let reply_id: Uuid = sqlx::query_scalar(
        "INSERT INTO post_replies (post_id, user_id, content, mux_asset_id, mux_playback_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(post_id)
    .bind(user_id)
    .bind(&input.content)
    .bind(&input.mux_asset_id)
    .bind(&input.mux_playback_id)
    .bind(ctx.clock.now())
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("UPDATE posts SET reply_count = reply_count + 1 WHERE id = $1")
        .bind(post_id)
        .execute(&mut *tx)
        .await?;
    badge_check(&mut tx, user_id, "comments_posted").await?;
    let mut pending = notifications::Pending::default();
    notifications::notify(
        &mut tx,
        ctx.clock.now(),
        &notifications::New::reply(post.user_id, user_id, post_id, reply_id, &post.title, false),
        &mut pending,
    )
    .await?;
    let reply = load_reply(&mut tx, reply_id).await?;
    tx.commit().await?;
    jobs::wake_relay(ctx);
    pending.publish(ctx).await;
    Ok(ReplyWritten {
        reply,
        message: format!("Comment posted! (-{cost} 🥢)"),
    })
}

/// Marks a reply as the accepted solution (§4.9 "Accept", D13). The helper
/// is paid once per reply, whatever the retries or the concurrency.
/// `reply_id` is `None` for a malformed id (it is then "Reply not found").
pub async fn accept(
    ctx: &Context,
    user_id: Uuid,
    post_id: Uuid,
    reply_id: Option<Uuid>,
) -> Result<Done> {
    let amounts = Amounts::from_config(&ctx.config);
    let message = format!(
        "Solution marked! Helper awarded {} 🥢",
        amounts.accepted_answer
    );
    let mut tx = ctx.db.begin().await?;
    let post = lock_post(&mut tx, post_id)
        .await?
        .ok_or_else(post_not_found)?;
    if post.user_id != user_id {
        return Err(fail(403, "Only the question author can mark a solution"));
    }
    if post.post_type != "lab" {
        return Err(fail(400, "Solutions are only for Lab questions"));
    }
    let reply: Option<(Uuid, bool)> = match reply_id {
        Some(rid) => sqlx::query_as(
            "SELECT user_id, is_accepted_answer FROM post_replies WHERE id = $1 AND post_id = $2",
        )
        .bind(rid)
        .bind(post_id)
        .fetch_optional(&mut *tx)
        .await?,
        None => None,
    };
    let (Some(reply_id), Some((helper, already))) = (reply_id, reply) else {
        return Err(fail(404, "Reply not found"));
    };
    if helper == user_id {
        return Err(fail(400, "You can't accept your own answer"));
    }
    if already {
        // Accepting the same reply again changes nothing and pays nothing.
        tx.rollback().await?;
        return Ok(Done { message });
    }
    sqlx::query(
        "UPDATE post_replies SET is_accepted_answer = (id = $2)
         WHERE post_id = $1 AND (is_accepted_answer OR id = $2)",
    )
    .bind(post_id)
    .bind(reply_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE posts SET accepted_answer_id = $2, is_solved = true WHERE id = $1")
        .bind(post_id)
        .bind(reply_id)
        .execute(&mut *tx)
        .await?;
    let key = format!("accepted_answer:{reply_id}");
    let paid = economy::credit(
        &mut tx,
        helper,
        amounts.accepted_answer,
        reason::ACCEPTED_ANSWER,
        Some(post_id),
        Some(&key),
    )
    .await?;
    if paid.is_some() {
        bump_stat(&mut tx, helper, "solutions_accepted_count").await?;
        sqlx::query("UPDATE user_profiles SET reputation = reputation + 1 WHERE user_id = $1")
            .bind(helper)
            .execute(&mut *tx)
            .await?;
        badge_check(&mut tx, helper, "solutions_accepted").await?;
    }
    // The first acceptance of this reply only (the key is per reply).
    let mut pending = notifications::Pending::default();
    notifications::notify(
        &mut tx,
        ctx.clock.now(),
        &notifications::New::answer_accepted(helper, user_id, post_id, reply_id, &post.title),
        &mut pending,
    )
    .await?;
    tx.commit().await?;
    jobs::wake_relay(ctx);
    pending.publish(ctx).await;
    Ok(Done { message })
}

// ---------------------------------------------------------------------------
// Tags and stats
