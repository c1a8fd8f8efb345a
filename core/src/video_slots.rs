//! Video slots in use (§4.3, D15): the one count that the community's slot
//! checks (`community::slot_status`) and the wallet (`economy::wallet`) both
//! show. It imports no other module of the domain, so the economy can count
//! slots without importing the community (which spends through the economy).

use crate::Result;
use sqlx::PgConnection;
use uuid::Uuid;

/// Slots in use: the user's posts with a video, plus their replies with a
/// video that are not accepted answers. An expression of `$1` (the user id).
pub const SLOTS_USED_SQL: &str =
    "((SELECT count(*) FROM posts WHERE user_id = $1 AND mux_asset_id IS NOT NULL)
      + (SELECT count(*) FROM post_replies
         WHERE user_id = $1 AND mux_asset_id IS NOT NULL AND NOT is_accepted_answer))";

/// [`SLOTS_USED_SQL`] for one user.
pub async fn slots_used(conn: &mut PgConnection, user_id: Uuid) -> Result<i64> {
    let used: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT {SLOTS_USED_SQL}")))
        .bind(user_id)
        .fetch_one(&mut *conn)
        .await?;
    Ok(used)
}
