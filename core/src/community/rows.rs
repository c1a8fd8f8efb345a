//! Reading posts as a viewer sees them: a fixed number of queries whatever
//! the page size (D17). Shared by the feed, search, detail and writes.

use super::visibility::{sees_hidden_sql, visible_sql};
use super::{PostItem, PostUser};
use crate::Result;
use crate::access::PRO_SQL;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use std::collections::HashMap;
use uuid::Uuid;

/// Columns of a post with its author, the same for every viewer.
pub(super) const POST_COLUMNS: &str =
    "p.id, p.user_id, p.post_type, p.title, p.body, p.mux_playback_id,
    p.video_duration_seconds, p.tags::text[] AS tags, p.is_wip, p.feedback_type, p.is_solved,
    p.reaction_count, p.reply_count, p.created_at, p.updated_at, p.is_hidden,
    COALESCE(pr.first_name, 'Unknown') AS first_name,
    COALESCE(pr.last_name, 'User') AS last_name,
    pr.avatar_url, COALESCE(pr.level, 1) AS level,
    COALESCE(PRO_EXPR, false) AS is_pro";

pub(super) const POST_JOINS: &str = "FROM posts p
    LEFT JOIN user_profiles pr ON pr.user_id = p.user_id
    LEFT JOIN subscriptions s ON s.user_id = p.user_id";

pub(super) fn post_columns() -> String {
    POST_COLUMNS.replace("PRO_EXPR", PRO_SQL)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct PostRow {
    pub(super) id: Uuid,
    pub(super) user_id: Uuid,
    pub(super) post_type: String,
    pub(super) title: String,
    pub(super) body: Option<String>,
    pub(super) mux_playback_id: Option<String>,
    pub(super) video_duration_seconds: Option<i32>,
    pub(super) tags: Vec<String>,
    pub(super) is_wip: bool,
    pub(super) feedback_type: String,
    pub(super) is_solved: bool,
    pub(super) reaction_count: i32,
    pub(super) reply_count: i32,
    pub(super) created_at: DateTime<Utc>,
    pub(super) updated_at: DateTime<Utc>,
    pub(super) is_hidden: bool,
    pub(super) first_name: String,
    pub(super) last_name: String,
    pub(super) avatar_url: Option<String>,
    pub(super) level: i32,
    pub(super) is_pro: bool,
}

impl PostRow {
    pub(super) fn into_item(self, user_reaction: Option<String>) -> PostItem {
        PostItem {
            id: self.id,
            user: PostUser {
                id: self.user_id,
                first_name: self.first_name,
                last_name: self.last_name,
                avatar_url: self.avatar_url,
                is_pro: self.is_pro,
                level: self.level,
            },
            post_type: self.post_type,
            title: self.title,
            body: self.body,
            mux_playback_id: self.mux_playback_id,
            video_duration_seconds: self.video_duration_seconds,
            tags: self.tags,
            is_wip: self.is_wip,
            feedback_type: self.feedback_type,
            is_solved: self.is_solved,
            reaction_count: self.reaction_count,
            reply_count: self.reply_count,
            user_reaction,
            created_at: self.created_at,
            updated_at: self.updated_at,
            is_hidden: self.is_hidden,
        }
    }
}

/// The viewer's reactions on `post_ids` (one query).
pub(super) async fn viewer_reactions(
    conn: &mut PgConnection,
    viewer: Uuid,
    post_ids: &[Uuid],
) -> Result<HashMap<Uuid, String>> {
    if post_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT post_id, reaction_type FROM post_reactions
         WHERE user_id = $1 AND post_id = ANY($2)",
    )
    .bind(viewer)
    .bind(post_ids)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Merges the viewer's reactions into viewer-independent rows.
pub(super) async fn with_reactions(
    conn: &mut PgConnection,
    viewer: Uuid,
    rows: Vec<PostRow>,
) -> Result<Vec<PostItem>> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let mut reactions = viewer_reactions(conn, viewer, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let mine = reactions.remove(&r.id);
            r.into_item(mine)
        })
        .collect())
}

/// One post as `viewer` sees it, or `None` (also when it is hidden from them).
pub(super) async fn load_post(
    conn: &mut PgConnection,
    viewer: Uuid,
    post_id: Uuid,
) -> Result<Option<PostItem>> {
    let sql = format!(
        "SELECT {}, r.reaction_type AS user_reaction {POST_JOINS}
         LEFT JOIN post_reactions r ON r.post_id = p.id AND r.user_id = $2
         WHERE p.id = $1 AND {}",
        post_columns(),
        visible_sql("p", "$2")
    );
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        post: PostRow,
        user_reaction: Option<String>,
    }
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(post_id)
        .bind(viewer)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|r| r.post.into_item(r.user_reaction)))
}

/// A post row with the viewer's reaction on it.
#[derive(sqlx::FromRow)]
pub(super) struct ViewedRow {
    #[sqlx(flatten)]
    pub(super) post: PostRow,
    pub(super) user_reaction: Option<String>,
    /// [`super::visibility::sees_hidden_sql`] for the viewer.
    pub(super) viewer_sees_hidden: bool,
}

impl ViewedRow {
    pub(super) fn into_item(self) -> PostItem {
        self.post.into_item(self.user_reaction)
    }
}

/// Rows of `ids` with the viewer's reactions, in that order (one query).
pub(super) async fn rows_by_ids(
    conn: &mut PgConnection,
    viewer: Uuid,
    ids: &[Uuid],
) -> Result<Vec<ViewedRow>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let sql = format!(
        "SELECT {}, r.reaction_type AS user_reaction, {} AS viewer_sees_hidden {POST_JOINS}
         LEFT JOIN post_reactions r ON r.post_id = p.id AND r.user_id = $2
         WHERE p.id = ANY($1)",
        post_columns(),
        sees_hidden_sql("$2")
    );
    let mut rows: HashMap<Uuid, ViewedRow> =
        sqlx::query_as::<_, ViewedRow>(sqlx::AssertSqlSafe(sql))
            .bind(ids)
            .bind(viewer)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|r| (r.post.id, r))
            .collect();
    // A post deleted since the page was cached is simply left out.
    Ok(ids.iter().filter_map(|id| rows.remove(id)).collect())
}
