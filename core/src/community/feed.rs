//! The community feed (§4.9), newest first, with its page cache.

use super::rows::{ViewedRow, post_columns, rows_by_ids};
use super::visibility::{self, PUBLIC_POSTS_SQL, sees_hidden_sql, visible_sql};
use super::{PostItem, cache};
use crate::{Context, Result};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use std::sync::Arc;
use uuid::Uuid;

/// Filters of the feed and search.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedQuery {
    pub post_type: Option<String>,
    pub tag: Option<String>,
    pub skip: i64,
    pub limit: i64,
}

pub(super) fn blank_to_none(s: &Option<String>) -> Option<String> {
    s.as_ref().filter(|v| !v.is_empty()).cloned()
}

/// One page of post rows with the viewer's reactions (one query). Hidden
/// posts are left out, unless `sees_hidden` (the viewer may see some of them:
/// the rule of [`visibility`] then decides row by row).
pub(super) async fn feed_rows(
    conn: &mut PgConnection,
    viewer: Uuid,
    sees_hidden: bool,
    q: &FeedQuery,
) -> Result<Vec<ViewedRow>> {
    let post_type = blank_to_none(&q.post_type);
    let tag = blank_to_none(&q.tag);
    let mut conds: Vec<String> = vec![if sees_hidden {
        visible_sql("p", "$3")
    } else {
        PUBLIC_POSTS_SQL.to_string()
    }];
    let mut n = 3;
    if post_type.is_some() {
        n += 1;
        conds.push(format!("p.post_type = ${n}"));
    }
    if tag.is_some() {
        n += 1;
        // Containment (= `$tag = ANY(tags)`), so the GIN index serves it.
        conds.push(format!("p.tags @> ARRAY[${n}]::varchar(50)[]"));
    }
    let filter = format!("WHERE {}", conds.join(" AND "));
    // The page's ids first (an index-only scan of the (created_at, id) index,
    // so a deep OFFSET skips index entries, not joined rows), then the joins
    // for those rows only.
    let sql = format!(
        "WITH page AS (
             SELECT p.id, p.created_at FROM posts p {filter}
             ORDER BY p.created_at DESC, p.id DESC
             OFFSET $1 LIMIT $2
         )
         SELECT {}, r.reaction_type AS user_reaction, {} AS viewer_sees_hidden FROM page
         JOIN posts p ON p.id = page.id
         LEFT JOIN user_profiles pr ON pr.user_id = p.user_id
         LEFT JOIN subscriptions s ON s.user_id = p.user_id
         LEFT JOIN post_reactions r ON r.post_id = p.id AND r.user_id = $3
         ORDER BY page.created_at DESC, page.id DESC",
        post_columns(),
        sees_hidden_sql("$3")
    );
    let mut query = sqlx::query_as::<_, ViewedRow>(sqlx::AssertSqlSafe(sql))
        .bind(q.skip)
        .bind(q.limit)
        .bind(viewer);
    if let Some(t) = post_type {
        query = query.bind(t);
    }
    if let Some(t) = tag {
        query = query.bind(t);
    }
    Ok(query.fetch_all(&mut *conn).await?)
}

/// The community feed (§4.9): one query whatever the page size (plus, with
/// the cache, up to two Redis reads).
///
/// The cached pages leave hidden posts out and are the same for every viewer
/// who sees no hidden post. The page's query also tells whether the viewer
/// may see some hidden post (an admin, or the author of a hidden post); such
/// a viewer's page is then read again past the cache, with what they may see
/// (`is_hidden: true`): a second query for them only (and for an empty page).
pub async fn feed(ctx: &Context, viewer: Uuid, q: &FeedQuery) -> Result<Vec<PostItem>> {
    // The generation is read from Redis on every request (a write through any
    // process bumps it); the page's ids come from this process's copy, else
    // from Redis, else from the database.
    let version = cache::version(ctx).await;
    let cached = match version {
        Some(v) => match cache::local_get(ctx, v, q) {
            Some(ids) => Some(ids),
            None => cache::get(ctx, v, q).await.map(|ids| {
                let ids = Arc::new(ids);
                cache::local_put(ctx, v, q, ids.clone());
                ids
            }),
        },
        None => None,
    };
    let mut conn = ctx.db.acquire().await?;
    let rows = match cached {
        // A post hidden since the page was cached is left out (the hide
        // also bumped the generation).
        Some(ids) => rows_by_ids(&mut conn, viewer, &ids)
            .await?
            .into_iter()
            .filter(|r| !r.post.is_hidden)
            .collect(),
        None => {
            let rows = feed_rows(&mut conn, viewer, false, q).await?;
            if let Some(v) = version {
                let ids: Vec<Uuid> = rows.iter().map(|r| r.post.id).collect();
                cache::put(ctx, v, q, &ids).await;
                cache::local_put(ctx, v, q, Arc::new(ids));
            }
            rows
        }
    };
    let sees_hidden = match rows.first() {
        Some(r) => r.viewer_sees_hidden,
        None => visibility::sees_hidden_posts(&mut conn, viewer).await?,
    };
    let rows = if sees_hidden {
        feed_rows(&mut conn, viewer, true, q).await?
    } else {
        rows
    };
    Ok(rows.into_iter().map(ViewedRow::into_item).collect())
}
