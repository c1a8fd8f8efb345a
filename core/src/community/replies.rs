//! Replies and accepted solutions.

use super::reactions::bump_stat;
use super::rows::{AuthorRow, author_columns};
use super::slots::slot_status_conn;
use super::validation::Validation;
use super::visibility::{visible_sql, writable};
use super::write::{
    badge_check, fail, insufficient, lock_post, lock_post_for, lock_profiles, post_not_found,
};
use super::{Done, ReplyItem, ReplyWritten};
use crate::audit::{self, Actor};
use crate::economy::{self, Amounts, reason};
use crate::jobs::{self, MuxSyncAction, MuxSyncJob};
use crate::notifications;
use crate::{Context, Error, Result};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// `POST /api/community/posts/{id}/replies`.
#[derive(Debug, Clone, Default)]
pub struct NewReply {
    pub content: String,
    pub mux_asset_id: Option<String>,
    pub mux_playback_id: Option<String>,
    /// The reply this one answers (N4.1). A reply to a nested reply is
    /// attached to that reply's top-level parent.
    pub parent_reply_id: Option<Uuid>,
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

#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub(super) struct ReplyRow {
    pub(super) id: Uuid,
    pub(super) user_id: Uuid,
    pub(super) content: String,
    pub(super) mux_playback_id: Option<String>,
    pub(super) is_accepted_answer: bool,
    pub(super) created_at: DateTime<Utc>,
    pub(super) parent_reply_id: Option<Uuid>,
    pub(super) is_deleted: bool,
    pub(super) is_hidden: bool,
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub(super) author: AuthorRow,
}

impl ReplyRow {
    pub(super) fn into_item(self) -> ReplyItem {
        ReplyItem {
            id: self.id,
            user: self.author.into_user(self.user_id),
            content: self.content,
            mux_playback_id: self.mux_playback_id,
            is_accepted_answer: self.is_accepted_answer,
            created_at: self.created_at,
            parent_reply_id: self.parent_reply_id,
            is_deleted: self.is_deleted,
            is_hidden: self.is_hidden,
        }
    }
}

/// A reply `rp` with its author (N5.4 PostUser, [`author_columns`]).
fn reply_columns(gm_includes_trialing: bool) -> String {
    format!(
        "rp.id, rp.user_id, rp.content, rp.mux_playback_id,
         rp.is_accepted_answer, rp.created_at, rp.parent_reply_id, rp.is_deleted,
         rp.is_hidden, {}",
        author_columns(gm_includes_trialing)
    )
}

const REPLY_FROM: &str = "FROM post_replies rp
    LEFT JOIN user_profiles pr ON pr.user_id = rp.user_id
    LEFT JOIN subscriptions s ON s.user_id = rp.user_id";

pub(super) fn reply_select(gm_includes_trialing: bool) -> String {
    format!(
        "SELECT {} {REPLY_FROM}",
        reply_columns(gm_includes_trialing)
    )
}

pub(super) async fn load_reply(
    conn: &mut PgConnection,
    reply_id: Uuid,
    gm_includes_trialing: bool,
) -> Result<ReplyItem> {
    let sql = format!("{} WHERE rp.id = $1", reply_select(gm_includes_trialing));
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
    let snap = ctx.settings_now().await?;
    let amounts = Amounts::from_settings(&ctx.config, &snap.settings);
    let mut tx = ctx.db.begin().await?;
    let post = lock_post_for(&mut tx, post_id, user_id).await?;
    if post.feedback_type == "hype" {
        return Err(fail(400, "Comments are disabled on this post (Hype mode)"));
    }
    // N4.1: the parent must be a live reply of this post; a reply to a nested
    // reply goes under the same top-level reply (two levels).
    let parent = match input.parent_reply_id {
        Some(id) => Some(parent_of(&mut tx, post_id, id, user_id).await?),
        None => None,
    };
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
        "INSERT INTO post_replies (post_id, user_id, content, mux_asset_id, mux_playback_id,
                                   created_at, parent_reply_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(post_id)
    .bind(user_id)
    .bind(&input.content)
    .bind(&input.mux_asset_id)
    .bind(&input.mux_playback_id)
    .bind(ctx.clock.now())
    .bind(parent.as_ref().map(|p| p.top))
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("UPDATE posts SET reply_count = reply_count + 1 WHERE id = $1")
        .bind(post_id)
        .execute(&mut *tx)
        .await?;
    badge_check(&mut tx, user_id, "comments_posted").await?;
    // The post's owner, and the author of the reply answered: once each
    // (`notify` skips the actor; an owner answered on their own comment hears
    // it once, as the owner).
    let mut recipients = vec![(post.user_id, false)];
    if let Some(p) = &parent
        && p.author != post.user_id
    {
        recipients.push((p.author, true));
    }
    let mut pending = notifications::Pending::default();
    for (recipient, on_comment) in recipients {
        notifications::notify(
            &mut tx,
            ctx.clock.now(),
            &notifications::New::reply(
                recipient,
                user_id,
                post_id,
                reply_id,
                &post.title,
                on_comment,
            ),
            &mut pending,
        )
        .await?;
    }
    let reply = load_reply(
        &mut tx,
        reply_id,
        snap.settings.guild_master.includes_trialing,
    )
    .await?;
    tx.commit().await?;
    jobs::wake_relay(ctx);
    pending.publish(ctx).await;
    Ok(ReplyWritten {
        reply,
        message: economy::charged_message("Comment posted!", cost),
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
    let amounts = Amounts::current(ctx).await?;
    let message = if amounts.accepted_answer == 0 {
        "Solution marked!".to_string()
    } else {
        format!(
            "Solution marked! Helper awarded {} 🥢",
            amounts.accepted_answer
        )
    };
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
    let reply: Option<(Uuid, bool, bool)> =
        match reply_id {
            Some(rid) => sqlx::query_as(
                "SELECT user_id, is_accepted_answer, parent_reply_id IS NOT NULL FROM post_replies
             WHERE id = $1 AND post_id = $2 AND NOT is_deleted AND NOT is_hidden",
            )
            .bind(rid)
            .bind(post_id)
            .fetch_optional(&mut *tx)
            .await?,
            None => None,
        };
    let (Some(reply_id), Some((helper, already, nested))) = (reply_id, reply) else {
        return Err(reply_not_found());
    };
    if nested {
        return Err(fail(400, "Only top-level replies can be accepted"));
    }
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
    // With no reward (N6.3) there is no ledger row to guard the stats: the
    // reply's first acceptance (checked above) counts.
    if paid.is_some() || amounts.accepted_answer == 0 {
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

// ---------------------------------------------------------------------------
// Threads (N4.1): the order, the parent rule, edit and delete
// ---------------------------------------------------------------------------

/// The replies of post `$1` as `viewer` `$2` sees them, in the N4.1 order
/// (each top-level reply, the accepted answer first then by `created_at`,
/// followed by its children): an SQL expression giving a JSON array of
/// [`ReplyRow`]s, for the post's own query (one round trip for the page).
pub(super) fn thread_json_sql(gm_includes_trialing: bool) -> String {
    format!(
        "(SELECT COALESCE(json_agg(t ORDER BY t.thread_order), '[]'::json) FROM (
             SELECT {},
                    row_number() OVER (
                        ORDER BY top.is_accepted_answer DESC, top.created_at, top.id,
                                 rp.parent_reply_id IS NOT NULL, rp.created_at, rp.id
                    ) AS thread_order
             {REPLY_FROM}
             JOIN post_replies top ON top.id = COALESCE(rp.parent_reply_id, rp.id)
             WHERE rp.post_id = $1 AND {} AND {}
         ) t)",
        reply_columns(gm_includes_trialing),
        visible_sql("rp", "$2"),
        visible_sql("top", "$2"),
    )
}

pub(super) fn reply_not_found() -> Error {
    fail(404, "Reply not found")
}

/// The parent a new reply attaches to.
struct Parent {
    /// The top-level reply the new one goes under.
    top: Uuid,
    /// The author of the reply answered (notified).
    author: Uuid,
}

/// `parent_id` must be a live reply of `post_id`, not hidden from `user_id`
/// (else 400 `Invalid parent reply`); a nested parent resolves to its own top-level parent. The caller
/// holds the post's lock, so the parent cannot go meanwhile.
async fn parent_of(
    conn: &mut PgConnection,
    post_id: Uuid,
    parent_id: Uuid,
    user_id: Uuid,
) -> Result<Parent> {
    let row: Option<(Uuid, Option<Uuid>, Uuid, bool, bool)> = sqlx::query_as(
        "SELECT post_id, parent_reply_id, user_id, is_deleted, is_hidden
         FROM post_replies WHERE id = $1",
    )
    .bind(parent_id)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some((post, grand, author, false, hidden))
            if post == post_id && writable(hidden, author, user_id) =>
        {
            Ok(Parent {
                top: grand.unwrap_or(parent_id),
                author,
            })
        }
        _ => Err(fail(400, "Invalid parent reply")),
    }
}

/// A reply as its write paths see it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct LockedReply {
    pub(super) id: Uuid,
    pub(super) user_id: Uuid,
    pub(super) parent_reply_id: Option<Uuid>,
    pub(super) is_accepted_answer: bool,
    pub(super) mux_asset_id: Option<String>,
    pub(super) is_hidden: bool,
}

/// The live reply `reply_id` of `post_id`, locked (the caller holds the
/// post's lock), or 404 `Reply not found`.
pub(super) async fn lock_reply(
    conn: &mut PgConnection,
    post_id: Uuid,
    reply_id: Option<Uuid>,
) -> Result<LockedReply> {
    let Some(reply_id) = reply_id else {
        return Err(reply_not_found());
    };
    let row: Option<LockedReply> = sqlx::query_as(
        "SELECT id, user_id, parent_reply_id, is_accepted_answer, mux_asset_id::text, is_hidden
         FROM post_replies WHERE id = $1 AND post_id = $2 AND NOT is_deleted FOR UPDATE",
    )
    .bind(reply_id)
    .bind(post_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.ok_or_else(reply_not_found)
}

fn not_authorized() -> Error {
    fail(403, "Not authorized")
}

/// Who may edit or delete a reply: its author or an admin. 404 `Post not
/// found` / `Reply not found`, 403 `Not authorized`. The edit route asks this
/// before it reads the body; the writes ask again under the row locks.
pub async fn ensure_reply_editor(
    ctx: &Context,
    user_id: Uuid,
    is_admin: bool,
    post_id: Uuid,
    reply_id: Option<Uuid>,
) -> Result<()> {
    let mut conn = ctx.db.acquire().await?;
    let post: Option<Uuid> = sqlx::query_scalar("SELECT id FROM posts WHERE id = $1")
        .bind(post_id)
        .fetch_optional(&mut *conn)
        .await?;
    post.ok_or_else(post_not_found)?;
    let Some(reply_id) = reply_id else {
        return Err(reply_not_found());
    };
    let author: Option<Uuid> = sqlx::query_scalar(
        "SELECT user_id FROM post_replies WHERE id = $1 AND post_id = $2 AND NOT is_deleted",
    )
    .bind(reply_id)
    .bind(post_id)
    .fetch_optional(&mut *conn)
    .await?;
    match author {
        None => Err(reply_not_found()),
        Some(a) if a != user_id && !is_admin => Err(not_authorized()),
        Some(_) => Ok(()),
    }
}

/// `PUT /posts/{post_id}/replies/{reply_id}` `{content}`: the author or an
/// admin edits the text (1 to 2000 characters).
/// `admin` is the acting admin when the caller is one: an admin's edit of
/// someone else's reply writes an audit row (`reply.update`).
pub async fn update_reply(
    ctx: &Context,
    user_id: Uuid,
    admin: Option<Actor>,
    post_id: Uuid,
    reply_id: Option<Uuid>,
    content: String,
) -> Result<ReplyItem> {
    let snap = ctx.settings_now().await?;
    let mut tx = ctx.db.begin().await?;
    lock_post(&mut tx, post_id)
        .await?
        .ok_or_else(post_not_found)?;
    let reply = lock_reply(&mut tx, post_id, reply_id).await?;
    if reply.user_id != user_id && admin.is_none() {
        return Err(not_authorized());
    }
    let mut v = Validation::new();
    v.string_len(&["body", "content"], &content, 1, 2000);
    v.finish()?;
    let audited = admin.filter(|_| reply.user_id != user_id);
    let before = match audited {
        Some(_) => snapshot(&mut tx, "post_replies", reply.id).await?,
        None => None,
    };
    sqlx::query("UPDATE post_replies SET content = $2 WHERE id = $1")
        .bind(reply.id)
        .bind(&content)
        .execute(&mut *tx)
        .await?;
    if let Some(actor) = audited {
        let after = snapshot(&mut tx, "post_replies", reply.id).await?;
        audit::record(
            &mut tx,
            actor
                .entry(AUDIT_REPLY_UPDATE, "reply", reply.id)
                .before(before)
                .after(after),
        )
        .await?;
    }
    let item = load_reply(
        &mut tx,
        reply.id,
        snap.settings.guild_master.includes_trialing,
    )
    .await?;
    tx.commit().await?;
    Ok(item)
}

/// Audit actions of admins on someone else's community content (N4.5).
pub const AUDIT_REPLY_UPDATE: &str = "reply.update";
pub const AUDIT_REPLY_DELETE: &str = "reply.delete";
pub const AUDIT_POST_DELETE: &str = "post.delete";

/// A post's or reply's row as JSON, for the `before`/`after` of an audit row.
pub(super) async fn snapshot(
    conn: &mut PgConnection,
    table: &'static str,
    id: Uuid,
) -> Result<Option<serde_json::Value>> {
    let table = match table {
        "posts" => "posts",
        _ => "post_replies",
    };
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT to_jsonb(t) FROM {table} t WHERE t.id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?)
}

/// `DELETE /posts/{post_id}/replies/{reply_id}` (the author or an admin).
/// An accepted answer stays (400). A reply with children keeps its place as
/// `[deleted]`; one without is removed, and so is its parent when that was a
/// placeholder left with no children. `reply_count` follows the rows.
/// An admin's delete of someone else's reply writes an audit row
/// (`reply.delete`).
pub async fn delete_reply(
    ctx: &Context,
    user_id: Uuid,
    admin: Option<Actor>,
    post_id: Uuid,
    reply_id: Option<Uuid>,
) -> Result<()> {
    let mut tx = ctx.db.begin().await?;
    lock_post(&mut tx, post_id)
        .await?
        .ok_or_else(post_not_found)?;
    let reply = lock_reply(&mut tx, post_id, reply_id).await?;
    if reply.user_id != user_id && admin.is_none() {
        return Err(not_authorized());
    }
    let audited = admin.filter(|_| reply.user_id != user_id);
    let before = match audited {
        Some(_) => snapshot(&mut tx, "post_replies", reply.id).await?,
        None => None,
    };
    remove_reply(&mut tx, post_id, &reply).await?;
    if let Some(actor) = audited {
        let after = snapshot(&mut tx, "post_replies", reply.id).await?;
        audit::record(
            &mut tx,
            actor
                .entry(AUDIT_REPLY_DELETE, "reply", reply.id)
                .before(before)
                .after(after),
        )
        .await?;
    }
    tx.commit().await?;
    jobs::wake_relay(ctx);
    Ok(())
}

/// Deletes a locked reply (the post's lock held): the rules of
/// [`delete_reply`] after the rights check. Shared with moderation.
pub(super) async fn remove_reply(
    conn: &mut PgConnection,
    post_id: Uuid,
    reply: &LockedReply,
) -> Result<()> {
    if reply.is_accepted_answer {
        return Err(fail(400, "Accepted answers cannot be deleted"));
    }
    let has_children: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM post_replies WHERE parent_reply_id = $1)")
            .bind(reply.id)
            .fetch_one(&mut *conn)
            .await?;
    let removed: i64 = if has_children {
        sqlx::query(
            "UPDATE post_replies SET is_deleted = true, content = '[deleted]',
                 mux_asset_id = NULL, mux_playback_id = NULL
             WHERE id = $1",
        )
        .bind(reply.id)
        .execute(&mut *conn)
        .await?;
        0
    } else {
        sqlx::query("DELETE FROM post_replies WHERE id = $1")
            .bind(reply.id)
            .execute(&mut *conn)
            .await?;
        // A placeholder kept only for this child goes with it.
        let parent = match reply.parent_reply_id {
            Some(parent) => sqlx::query(
                "DELETE FROM post_replies p WHERE p.id = $1 AND p.is_deleted
                 AND NOT EXISTS (SELECT 1 FROM post_replies c WHERE c.parent_reply_id = p.id)",
            )
            .bind(parent)
            .execute(&mut *conn)
            .await?
            .rows_affected() as i64,
            None => 0,
        };
        1 + parent
    };
    // Its reports go with its content (a post's go by CASCADE).
    sqlx::query("DELETE FROM content_reports WHERE target_type = 'reply' AND target_id = $1")
        .bind(reply.id)
        .execute(&mut *conn)
        .await?;
    if removed > 0 {
        sqlx::query("UPDATE posts SET reply_count = GREATEST(0, reply_count - $2) WHERE id = $1")
            .bind(post_id)
            .bind(removed as i32)
            .execute(&mut *conn)
            .await?;
    }
    if let Some(asset_id) = &reply.mux_asset_id {
        jobs::enqueue(
            conn,
            &MuxSyncJob {
                action: MuxSyncAction::DeleteAsset {
                    asset_id: asset_id.clone(),
                },
            },
        )
        .await?;
    }
    Ok(())
}
