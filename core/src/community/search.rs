//! Search (§4.9, D18).

use super::feed::{FeedFilter, FeedQuery, conditions, page_of};
use super::rows::{POST_JOINS, PostRow, post_columns};
use super::visibility::visible_sql;
use super::{PostItem, Viewer};
use crate::{Context, Result};

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

/// Search (§4.9, D18, N5.4): title substring (escaped), a tag equal to
/// `lower(q)`, a tag whose slug or name contains `q`, or the author's
/// username containing `q` (case-insensitive, wildcards literal); filtered
/// like the feed (`post_type`, `tag`/`tags`, `video_type`). Same order
/// (`created_at DESC, id DESC`) and paging as the feed. One query.
pub async fn search(
    ctx: &Context,
    who: &Viewer,
    text: &str,
    q: &FeedQuery,
    filter: &FeedFilter,
) -> Result<Vec<PostItem>> {
    let mut conn = ctx.db.acquire().await?;
    let pattern = format!("%{}%", escape_like(text));
    let page = page_of(q, filter);
    let conds = conditions(&page, 6);
    let extra: String = conds.sql.iter().map(|c| format!(" AND {c}")).collect();
    let sql = format!(
        "SELECT {} {POST_JOINS}
         WHERE (p.title ILIKE $3
                OR lower($4) = ANY(p.tags::text[])
                OR EXISTS (SELECT 1 FROM unnest(p.tags) AS t(slug)
                           LEFT JOIN community_tags ct ON ct.slug = t.slug
                           WHERE t.slug ILIKE $3 OR ct.name ILIKE $3)
                OR pr.username ILIKE $3)
           AND {}
           {extra}
         ORDER BY p.created_at DESC, p.id DESC
         OFFSET $1 LIMIT $2",
        post_columns(who, "$5"),
        visible_sql("p", "$5")
    );
    let query = sqlx::query_as::<_, PostRow>(sqlx::AssertSqlSafe(sql))
        .bind(page.skip)
        .bind(page.limit)
        .bind(&pattern)
        .bind(text)
        .bind(who.id);
    let rows = conds.bind(query).fetch_all(&mut *conn).await?;
    Ok(rows.into_iter().map(PostRow::into_item).collect())
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
