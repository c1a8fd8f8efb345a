//! Who sees hidden content (N4.4): the one door. A post or reply hidden by
//! moderation is shown only to its author and to admins (with `is_hidden:
//! true`); everyone else reads past it (feed, search, detail, saved list) and
//! cannot act on it (it is "not found"). Every read and write of the
//! community asks here.

use crate::Result;
use sqlx::PgConnection;
use uuid::Uuid;

/// SQL condition: the row `alias` (of `posts` or `post_replies`) is visible
/// to the viewer whose id is the SQL expression `viewer` (e.g. `$2`).
pub(super) fn visible_sql(alias: &str, viewer: &str) -> String {
    format!(
        "(NOT {alias}.is_hidden OR {alias}.user_id = {viewer}
          OR EXISTS (SELECT 1 FROM users va WHERE va.id = {viewer} AND va.role = 'admin'))"
    )
}

/// The condition for a viewer who sees no hidden post (see
/// [`sees_hidden_posts`]): the same for every such viewer, so their feed pages
/// can be cached, and served by the partial `… WHERE NOT is_hidden` indexes.
pub(super) const PUBLIC_POSTS_SQL: &str = "NOT p.is_hidden";

/// SQL: whether some hidden post is visible to the viewer `viewer` (an
/// admin, or the author of a hidden post): their feed is read past the shared
/// page cache. Two index probes (`posts_hidden_user_idx`, the users key),
/// evaluated once per statement; the feed's page query carries it as a column
/// so that it costs no query of its own.
pub(super) fn sees_hidden_sql(viewer: &str) -> String {
    format!(
        "(EXISTS (SELECT 1 FROM posts hp WHERE hp.user_id = {viewer} AND hp.is_hidden)
          OR EXISTS (SELECT 1 FROM users va WHERE va.id = {viewer} AND va.role = 'admin'))"
    )
}

/// [`sees_hidden_sql`] on its own (for an empty page, which carries no row).
pub(super) async fn sees_hidden_posts(conn: &mut PgConnection, viewer: Uuid) -> Result<bool> {
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT {}",
        sees_hidden_sql("$1")
    )))
    .bind(viewer)
    .fetch_one(&mut *conn)
    .await?)
}

/// For the write paths of ordinary users (react, reply, report, save): hidden
/// content is not there for anyone but its author. Admins act on hidden
/// content through moderation.
pub(super) fn writable(is_hidden: bool, author: Uuid, user: Uuid) -> bool {
    !is_hidden || author == user
}
