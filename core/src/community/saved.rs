//! Saved posts (API-NEXT.md N4.2): a user's bookmarks, newest first.

use super::rows::rows_by_ids;
use super::visibility::{visible_sql, writable};
use super::write::post_not_found;
use super::{PostItem, Viewer};
use crate::{Context, Error, Result};
use uuid::Uuid;

/// Saves `post_id` for `user_id` (idempotent). 404 `Post not found` for a
/// post that does not exist or is hidden from the user.
pub async fn save(ctx: &Context, user_id: Uuid, post_id: Uuid) -> Result<()> {
    let mut conn = ctx.db.acquire().await?;
    let post: Option<(Uuid, bool)> =
        sqlx::query_as("SELECT user_id, is_hidden FROM posts WHERE id = $1")
            .bind(post_id)
            .fetch_optional(&mut *conn)
            .await?;
    match post {
        Some((author, hidden)) if writable(hidden, author, user_id) => {}
        _ => return Err(post_not_found()),
    }
    let res = sqlx::query(
        "INSERT INTO saved_posts (user_id, post_id, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (user_id, post_id) DO NOTHING",
    )
    .bind(user_id)
    .bind(post_id)
    .bind(ctx.clock.now())
    .execute(&mut *conn)
    .await;
    match res {
        Ok(_) => Ok(()),
        // The post was deleted meanwhile.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23503") => {
            Err(post_not_found())
        }
        Err(e) => Err(Error::from(e)),
    }
}

/// Removes the bookmark (idempotent). 404 `Post not found` for a post that
/// does not exist.
pub async fn unsave(ctx: &Context, user_id: Uuid, post_id: Uuid) -> Result<()> {
    let mut conn = ctx.db.acquire().await?;
    let removed = sqlx::query("DELETE FROM saved_posts WHERE user_id = $1 AND post_id = $2")
        .bind(user_id)
        .bind(post_id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if removed == 0 {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM posts WHERE id = $1)")
            .bind(post_id)
            .fetch_one(&mut *conn)
            .await?;
        if !exists {
            return Err(post_not_found());
        }
    }
    Ok(())
}

/// The viewer's saved posts, most recently saved first: the page's ids (an
/// index range of `saved_posts_user_newest_idx`), then the rows as the feed
/// loads them. Two queries whatever the page size. Hidden posts are left
/// out unless the viewer may see them (the `visibility` rule).
pub async fn saved(ctx: &Context, viewer: Uuid, skip: i64, limit: i64) -> Result<Vec<PostItem>> {
    let snap = ctx.settings_now().await?;
    let who = Viewer::user(viewer, &snap.settings);
    let mut conn = ctx.db.acquire().await?;
    let ids: Vec<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT s.post_id FROM saved_posts s JOIN posts p ON p.id = s.post_id
             WHERE s.user_id = $1 AND {}
             ORDER BY s.created_at DESC, s.post_id DESC
             OFFSET $2 LIMIT $3",
        visible_sql("p", "$1")
    )))
    .bind(viewer)
    .bind(skip)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let rows = rows_by_ids(&mut conn, &who, &ids).await?;
    Ok(rows.into_iter().map(|r| r.into_item()).collect())
}
