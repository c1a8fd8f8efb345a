//! What an account deletion (`privacy::deletion`) does to the community, with
//! the counters kept as every other write keeps them:
//! - the user's posts go, with every reply under them, their reactions, saves
//!   and reports (cascades), and the usage of their tags goes down;
//! - the user's reactions on other posts go, and those posts'
//!   `reaction_count` goes down by one each (a user reacts once per post);
//! - the user's saved posts go;
//! - the user's replies on other people's posts stay (shown under the
//!   tombstone's name, `Deleted user`), so those posts' `reply_count` and
//!   accepted answers do not change.
//!
//! The Mux assets are deleted (and their columns cleared) before this runs,
//! so nothing here queues a Mux job. Runs in the caller's transaction;
//! idempotent (a second run finds nothing left to remove).

use crate::Result;
use sqlx::PgConnection;
use uuid::Uuid;

/// What [`erase_author`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    pub posts: u64,
    pub reactions: u64,
    pub saved: u64,
}

/// Removes the community content of `user_id` that a deletion removes (see
/// the module documentation).
pub async fn erase_author(conn: &mut PgConnection, user_id: Uuid) -> Result<Erased> {
    // The posts first, locked in id order like every post write.
    let posts: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM posts WHERE user_id = $1 ORDER BY id FOR UPDATE")
            .bind(user_id)
            .fetch_all(&mut *conn)
            .await?;
    // Each post counted once per distinct tag, as `delete_post` does.
    sqlx::query(
        "UPDATE community_tags t SET usage_count = GREATEST(0, t.usage_count - c.n)
         FROM (SELECT tag, count(*)::int AS n
               FROM (SELECT DISTINCT p.id, unnest(p.tags)::text AS tag
                     FROM posts p WHERE p.id = ANY($1)) x
               GROUP BY tag) c
         WHERE t.slug = c.tag",
    )
    .bind(&posts)
    .execute(&mut *conn)
    .await?;
    // Replies, reactions, saves and reports of these posts cascade.
    let removed_posts = sqlx::query("DELETE FROM posts WHERE id = ANY($1)")
        .bind(&posts)
        .execute(&mut *conn)
        .await?
        .rows_affected();

    // Reactions on other people's posts: each post's count goes down by one.
    let reacted: Vec<Uuid> =
        sqlx::query_scalar("DELETE FROM post_reactions WHERE user_id = $1 RETURNING post_id")
            .bind(user_id)
            .fetch_all(&mut *conn)
            .await?;
    if !reacted.is_empty() {
        sqlx::query(
            "UPDATE posts SET reaction_count = GREATEST(0, reaction_count - 1)
             WHERE id = ANY($1)",
        )
        .bind(&reacted)
        .execute(&mut *conn)
        .await?;
    }

    let saved = sqlx::query("DELETE FROM saved_posts WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok(Erased {
        posts: removed_posts,
        reactions: reacted.len() as u64,
        saved,
    })
}
