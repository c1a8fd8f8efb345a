//! Search (§4.9, D18).

use super::PostItem;
use super::feed::{FeedQuery, blank_to_none};
use super::rows::{POST_JOINS, PostRow, post_columns, with_reactions};
use super::visibility::visible_sql;
use crate::{Context, Result};
use uuid::Uuid;

/// Escapes `\`, `%` and `_` for a LIKE pattern with the default escape `\` (D18).
pub fn escape_like(q: &str) -> String {
    let mut out = String::with_capacity(q.len());
    for c in q.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Search (§4.9, D18): title substring (escaped), a tag equal to `lower(q)`,
/// or a tag whose slug or name contains `q`. Same order and paging as the feed.
pub async fn search(
    ctx: &Context,
    viewer: Uuid,
    text: &str,
    q: &FeedQuery,
) -> Result<Vec<PostItem>> {
    let mut conn = ctx.db.acquire().await?;
    let pattern = format!("%{}%", escape_like(text));
    let post_type = blank_to_none(&q.post_type);
    let type_filter = if post_type.is_some() {
        "AND p.post_type = $6"
    } else {
        ""
    };
    let sql = format!(
        "SELECT {} {POST_JOINS}
         WHERE (p.title ILIKE $3
                OR lower($4) = ANY(p.tags::text[])
                OR EXISTS (SELECT 1 FROM unnest(p.tags) AS t(slug)
                           LEFT JOIN community_tags ct ON ct.slug = t.slug
                           WHERE t.slug ILIKE $3 OR ct.name ILIKE $3))
           AND {}
           {type_filter}
         ORDER BY p.created_at DESC, p.id DESC
         OFFSET $1 LIMIT $2",
        post_columns(),
        visible_sql("p", "$5")
    );
    let mut query = sqlx::query_as::<_, PostRow>(sqlx::AssertSqlSafe(sql))
        .bind(q.skip)
        .bind(q.limit)
        .bind(&pattern)
        .bind(text)
        .bind(viewer);
    if let Some(t) = post_type {
        query = query.bind(t);
    }
    let rows = query.fetch_all(&mut *conn).await?;
    with_reactions(&mut conn, viewer, rows).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_escaping() {
        assert_eq!(escape_like("50%_off\\"), "50\\%\\_off\\\\");
        assert_eq!(escape_like("mambo"), "mambo");
    }
}
