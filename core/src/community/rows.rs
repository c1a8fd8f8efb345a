//! Reading posts as a viewer sees them: a fixed number of queries whatever
//! the page size (D17). Shared by the feed, search, detail and writes.
//!
//! The author of every row (PostUser, N5.4: names, avatar, level, pro and
//! Guild Master status, username, equipped cosmetics) comes from the joins
//! of the row's own query ([`author_columns`]), and the viewer's state on the
//! post (reaction, saved) from correlated index probes of the same query
//! ([`post_columns`]): never a query per row.

use super::visibility::sees_hidden_sql;
use super::{PostItem, PostUser, Viewer};
use crate::Result;
use crate::access::{PRO_SQL, guild_master_sql};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use std::collections::HashMap;
use uuid::Uuid;

/// The PostUser columns of an author whose `user_profiles` row is joined as
/// `pr` and `subscriptions` row as `s` (both LEFT JOINs: a missing profile
/// reads as `Unknown User`, level 1). The Guild Master condition is the one
/// of N6.5 under the request's `guild_master.includes_trialing`.
pub(super) fn author_columns(gm_includes_trialing: bool) -> String {
    format!(
        "COALESCE(pr.first_name, 'Unknown') AS first_name,
         COALESCE(pr.last_name, 'User') AS last_name,
         pr.avatar_url, COALESCE(pr.level, 1) AS level,
         COALESCE({PRO_SQL}, false) AS is_pro,
         pr.username::text AS username,
         COALESCE({}, false) AS is_guild_master,
         pr.equipped_border_sku::text AS equipped_border_sku,
         pr.equipped_title_sku::text AS equipped_title_sku",
        guild_master_sql(gm_includes_trialing)
    )
}

/// The author part of a row ([`author_columns`]).
#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub(super) struct AuthorRow {
    pub(super) first_name: String,
    pub(super) last_name: String,
    pub(super) avatar_url: Option<String>,
    pub(super) level: i32,
    pub(super) is_pro: bool,
    pub(super) username: Option<String>,
    pub(super) is_guild_master: bool,
    pub(super) equipped_border_sku: Option<String>,
    pub(super) equipped_title_sku: Option<String>,
}

impl AuthorRow {
    pub(super) fn into_user(self, id: Uuid) -> PostUser {
        PostUser {
            id,
            first_name: self.first_name,
            last_name: self.last_name,
            avatar_url: self.avatar_url,
            is_pro: self.is_pro,
            level: self.level,
            username: self.username,
            is_guild_master: self.is_guild_master,
            equipped_border_sku: self.equipped_border_sku,
            equipped_title_sku: self.equipped_title_sku,
        }
    }
}

/// Columns of a post `p` with its author (joined by [`POST_JOINS`]) and the
/// state of the viewer whose id is the SQL expression `viewer` (a uuid
/// parameter, NULL for an anonymous viewer: no reaction, nothing saved).
pub(super) fn post_columns(who: &Viewer, viewer: &str) -> String {
    format!(
        "p.id, p.user_id, p.post_type, p.title, p.body, p.mux_playback_id,
         p.video_duration_seconds, p.tags::text[] AS tags, p.is_wip, p.feedback_type, p.is_solved,
         p.reaction_count, p.reply_count, p.created_at, p.updated_at, p.is_hidden,
         p.video_type::text AS video_type,
         (SELECT vr.reaction_type::text FROM post_reactions vr
          WHERE vr.post_id = p.id AND vr.user_id = {viewer}) AS user_reaction,
         EXISTS (SELECT 1 FROM saved_posts vs
                 WHERE vs.user_id = {viewer} AND vs.post_id = p.id) AS is_saved,
         {}",
        author_columns(who.gm_includes_trialing)
    )
}

pub(super) const POST_JOINS: &str = "FROM posts p
    LEFT JOIN user_profiles pr ON pr.user_id = p.user_id
    LEFT JOIN subscriptions s ON s.user_id = p.user_id";

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
    pub(super) video_type: Option<String>,
    /// The viewer's reaction.
    pub(super) user_reaction: Option<String>,
    /// Whether the viewer saved the post.
    pub(super) is_saved: bool,
    #[sqlx(flatten)]
    pub(super) author: AuthorRow,
}

impl PostRow {
    pub(super) fn into_item(self) -> PostItem {
        PostItem {
            id: self.id,
            user: self.author.into_user(self.user_id),
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
            user_reaction: self.user_reaction,
            created_at: self.created_at,
            updated_at: self.updated_at,
            is_hidden: self.is_hidden,
            video_type: self.video_type,
            is_saved: self.is_saved,
        }
    }
}

/// One post as `who` sees it, or `None` (also when it is hidden from them).
pub(super) async fn load_post(
    conn: &mut PgConnection,
    who: &Viewer,
    post_id: Uuid,
) -> Result<Option<PostItem>> {
    let sql = format!(
        "SELECT {} {POST_JOINS}
         WHERE p.id = $1 AND {}",
        post_columns(who, "$2"),
        super::visibility::visible_sql("p", "$2")
    );
    let row: Option<PostRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(post_id)
        .bind(who.id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(PostRow::into_item))
}

/// A post row as the viewer sees it, and whether the viewer may see some
/// hidden post.
#[derive(sqlx::FromRow)]
pub(super) struct ViewedRow {
    #[sqlx(flatten)]
    pub(super) post: PostRow,
    /// [`super::visibility::sees_hidden_sql`] for the viewer.
    pub(super) viewer_sees_hidden: bool,
}

impl ViewedRow {
    pub(super) fn into_item(self) -> PostItem {
        self.post.into_item()
    }
}

/// Rows of `ids` as `who` sees them, in that order (one query).
pub(super) async fn rows_by_ids(
    conn: &mut PgConnection,
    who: &Viewer,
    ids: &[Uuid],
) -> Result<Vec<ViewedRow>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let sql = format!(
        "SELECT {}, {} AS viewer_sees_hidden {POST_JOINS}
         WHERE p.id = ANY($1)",
        post_columns(who, "$2"),
        sees_hidden_sql("$2")
    );
    let mut rows: HashMap<Uuid, ViewedRow> =
        sqlx::query_as::<_, ViewedRow>(sqlx::AssertSqlSafe(sql))
            .bind(ids)
            .bind(who.id)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|r| (r.post.id, r))
            .collect();
    // A post deleted since the page was cached is simply left out.
    Ok(ids.iter().filter_map(|id| rows.remove(id)).collect())
}
