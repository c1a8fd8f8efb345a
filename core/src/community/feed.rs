//! The community feed (§4.9, N5.4), newest first, with its page cache.

use super::cache::{self, PageKey};
use super::rows::{POST_JOINS, ViewedRow, post_columns, rows_by_ids};
use super::validation::Validation;
use super::visibility::{self, PUBLIC_POSTS_SQL, sees_hidden_sql, visible_sql};
use super::{FILTER_TAGS_MAX, PostItem, VIDEO_TYPES, Viewer};
use crate::settings::Settings;
use crate::{Context, Result};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use std::sync::Arc;
use uuid::Uuid;

/// Filters and window of the feed and search (API.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedQuery {
    pub post_type: Option<String>,
    pub tag: Option<String>,
    pub skip: i64,
    pub limit: i64,
}

/// The May 2026 filters of the feed and search (N5.4): `tags=a,b` (any of
/// them, united with `tag`) and the Stage's `video_type`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedFilter {
    pub tags: Vec<String>,
    pub video_type: Option<String>,
}

impl FeedFilter {
    /// From the query parameters: `tags` split at commas (blank items
    /// dropped, at most [`FILTER_TAGS_MAX`]), `video_type` one of
    /// [`VIDEO_TYPES`]; otherwise the 422 list (`loc` `["query", name]`).
    pub fn from_query(tags: Option<&str>, video_type: Option<&str>) -> Result<Self> {
        let mut v = Validation::new();
        let mut list: Vec<String> = Vec::new();
        for t in tags.unwrap_or("").split(',').map(str::trim) {
            if !t.is_empty() && !list.iter().any(|x| x == t) {
                list.push(t.to_string());
            }
        }
        v.list_len(&["query", "tags"], &list, 0, FILTER_TAGS_MAX);
        if let Some(vt) = video_type {
            v.literal(&["query", "video_type"], vt, VIDEO_TYPES);
        }
        v.finish()?;
        Ok(Self {
            tags: list,
            video_type: video_type.map(str::to_string),
        })
    }
}

pub(super) fn blank_to_none(s: &Option<String>) -> Option<String> {
    s.as_ref().filter(|v| !v.is_empty()).cloned()
}

/// The normalised page of `q` and `f`: what the SQL filters by and what the
/// cache is keyed by.
pub(super) fn page_of(q: &FeedQuery, f: &FeedFilter) -> PageKey {
    let mut tags: Vec<String> = f.tags.clone();
    tags.extend(blank_to_none(&q.tag));
    tags.sort();
    tags.dedup();
    PageKey {
        post_type: blank_to_none(&q.post_type),
        tags,
        video_type: blank_to_none(&f.video_type),
        skip: q.skip,
        limit: q.limit,
    }
}

/// The filter's conditions on `p`, with their parameters numbered from
/// `first`, and the values to bind in that order.
pub(super) struct Conditions {
    pub sql: Vec<String>,
    pub post_type: Option<String>,
    pub tags: Option<Vec<String>>,
    pub video_type: Option<String>,
}

pub(super) fn conditions(k: &PageKey, first: usize) -> Conditions {
    let mut n = first;
    let mut sql = vec![];
    if k.post_type.is_some() {
        sql.push(format!("p.post_type = ${n}"));
        n += 1;
    }
    if !k.tags.is_empty() {
        // Overlap (any of the tags), so the GIN index serves it.
        sql.push(format!("p.tags && ${n}::text[]::varchar(50)[]"));
        n += 1;
    }
    if k.video_type.is_some() {
        sql.push(format!("p.video_type = ${n}"));
    }
    Conditions {
        sql,
        post_type: k.post_type.clone(),
        tags: (!k.tags.is_empty()).then(|| k.tags.clone()),
        video_type: k.video_type.clone(),
    }
}

impl Conditions {
    pub(super) fn bind<'q, O>(
        self,
        mut query: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
        if let Some(t) = self.post_type {
            query = query.bind(t);
        }
        if let Some(t) = self.tags {
            query = query.bind(t);
        }
        if let Some(t) = self.video_type {
            query = query.bind(t);
        }
        query
    }
}

/// One page of post rows as `who` sees them (one query). Hidden posts are
/// left out, unless `sees_hidden` (the viewer may see some of them: the rule
/// of [`visibility`] then decides row by row).
pub(super) async fn feed_rows(
    conn: &mut PgConnection,
    who: &Viewer,
    sees_hidden: bool,
    k: &PageKey,
) -> Result<Vec<ViewedRow>> {
    let mut conds: Vec<String> = vec![if sees_hidden {
        visible_sql("p", "$3")
    } else {
        PUBLIC_POSTS_SQL.to_string()
    }];
    let filter = conditions(k, 4);
    conds.extend(filter.sql.iter().cloned());
    let filter_sql = format!("WHERE {}", conds.join(" AND "));
    // The page's ids first (an index-only scan of the (created_at, id) index,
    // so a deep OFFSET skips index entries, not joined rows), then the joins
    // for those rows only.
    let sql = format!(
        "WITH page AS (
             SELECT p.id, p.created_at FROM posts p {filter_sql}
             ORDER BY p.created_at DESC, p.id DESC
             OFFSET $1 LIMIT $2
         )
         SELECT {}, {} AS viewer_sees_hidden FROM page
         JOIN posts p ON p.id = page.id
         {}
         ORDER BY page.created_at DESC, page.id DESC",
        post_columns(who, "$3"),
        sees_hidden_sql("$3"),
        POST_JOINS.trim_start_matches("FROM posts p")
    );
    let query = sqlx::query_as::<_, ViewedRow>(sqlx::AssertSqlSafe(sql))
        .bind(k.skip)
        .bind(k.limit)
        .bind(who.id);
    Ok(filter.bind(query).fetch_all(&mut *conn).await?)
}

/// [`feed_page`] for a signed-in viewer with the API.md filters, under the
/// seed settings (the Guild Master rule without trials); routes call
/// [`feed_page`] with the request's snapshot.
pub async fn feed(ctx: &Context, viewer: Uuid, q: &FeedQuery) -> Result<Vec<PostItem>> {
    let seed = Settings::default();
    feed_page(ctx, &seed, Some(viewer), q, &FeedFilter::default()).await
}

/// The community feed (§4.9, N5.4): one query whatever the page size (plus,
/// with the cache, up to two Redis reads).
///
/// An anonymous viewer (`None`) sees at most the newest
/// `community.anonymous_feed_preview` posts of the filtered feed: the window
/// `skip..skip+limit` is cut at that position (a page at or past it is empty
/// and costs no query), with no reaction, nothing saved and no hidden post.
/// Whether anonymous viewers are served at all (the setting 0 → 401) is the
/// route's decision.
///
/// The cached pages leave hidden posts out and are the same for every viewer
/// who sees no hidden post (anonymous viewers included: their cut window is
/// an ordinary page). The page's query also tells whether the viewer may see
/// some hidden post (an admin, or the author of a hidden post); such a
/// viewer's page is then read again past the cache, with what they may see
/// (`is_hidden: true`): a second query for them only (and for a signed-in
/// viewer's empty page).
pub async fn feed_page(
    ctx: &Context,
    settings: &Settings,
    viewer: Option<Uuid>,
    q: &FeedQuery,
    filter: &FeedFilter,
) -> Result<Vec<PostItem>> {
    let who = Viewer::new(viewer, settings);
    let mut page = page_of(q, filter);
    if viewer.is_none() {
        let preview = settings.community.anonymous_feed_preview;
        if page.skip >= preview {
            return Ok(vec![]);
        }
        page.limit = page.limit.min(preview - page.skip);
    }
    // The generation is read from Redis on every request (a write through any
    // process bumps it); the page's ids come from this process's copy, else
    // from Redis, else from the database.
    let version = cache::version(ctx).await;
    let cached = match version {
        Some(v) => match cache::local_get(ctx, v, &page) {
            Some(ids) => Some(ids),
            None => cache::get(ctx, v, &page).await.map(|ids| {
                let ids = Arc::new(ids);
                cache::local_put(ctx, v, &page, ids.clone());
                ids
            }),
        },
        None => None,
    };
    let mut conn = ctx.db.acquire().await?;
    let rows = match cached {
        // A post hidden since the page was cached is left out (the hide
        // also bumped the generation).
        Some(ids) => rows_by_ids(&mut conn, &who, &ids)
            .await?
            .into_iter()
            .filter(|r| !r.post.is_hidden)
            .collect(),
        None => {
            let rows = feed_rows(&mut conn, &who, false, &page).await?;
            if let Some(v) = version {
                let ids: Vec<Uuid> = rows.iter().map(|r| r.post.id).collect();
                cache::put(ctx, v, &page, &ids).await;
                cache::local_put(ctx, v, &page, Arc::new(ids));
            }
            rows
        }
    };
    let sees_hidden = match (rows.first(), viewer) {
        (_, None) => false,
        (Some(r), Some(_)) => r.viewer_sees_hidden,
        (None, Some(id)) => visibility::sees_hidden_posts(&mut conn, id).await?,
    };
    let rows = if sees_hidden {
        feed_rows(&mut conn, &who, true, &page).await?
    } else {
        rows
    };
    Ok(rows.into_iter().map(ViewedRow::into_item).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_from_query() {
        let f = FeedFilter::from_query(Some("a, b,,a"), Some("motw")).unwrap();
        assert_eq!(f.tags, vec!["a", "b"]);
        assert_eq!(f.video_type.as_deref(), Some("motw"));
        let eleven: Vec<String> = (0..11).map(|i| format!("t{i}")).collect();
        assert!(FeedFilter::from_query(Some(&eleven.join(",")), None).is_err());
        assert!(FeedFilter::from_query(Some(&eleven[..10].join(",")), None).is_ok());
        assert!(FeedFilter::from_query(None, Some("vlog")).is_err());
        assert!(FeedFilter::from_query(None, Some("")).is_err());
    }

    #[test]
    fn page_unites_tag_and_tags() {
        let q = FeedQuery {
            tag: Some("b".into()),
            ..Default::default()
        };
        let f = FeedFilter {
            tags: vec!["c".into(), "b".into()],
            video_type: None,
        };
        assert_eq!(page_of(&q, &f).tags, vec!["b", "c"]);
    }
}
