//! Paid access (API-NEXT.md N2): who has a paid tier right now, and how the
//! tiers rank. The one rule that the course and lesson locks, completion, boss
//! battles, the economy's pro perks and uploads all use, kept below every one
//! of them (it imports no other module of the domain), so none of them has to
//! import `payments` or `economy` for it.

use crate::Result;
use sqlx::PgConnection;
use uuid::Uuid;

/// The one rule of paid access, as a SQL condition on a `subscriptions` row
/// aliased `s`: tier `advanced` or `performer`, and status `active` or
/// `trialing`, or `past_due` within the grace period that the first failed
/// payment started (`grace_until`). Every route that checks paid access uses
/// this condition, directly or through [`is_pro`].
pub const PRO_SQL: &str = "(s.tier IN ('advanced','performer') AND (s.status IN ('active','trialing') OR (s.status = 'past_due' AND s.grace_until > now())))";

/// [`PRO_SQL`] for one user (false without a subscription row).
pub async fn is_pro(conn: &mut PgConnection, user_id: Uuid) -> Result<bool> {
    let pro: Option<bool> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT {PRO_SQL} FROM subscriptions s WHERE s.user_id = $1"
    )))
    .bind(user_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(pro.unwrap_or(false))
}

/// The order of the tiers: a change to a higher one is an upgrade.
pub fn tier_rank(tier: &str) -> u8 {
    match tier {
        "performer" => 2,
        "advanced" => 1,
        _ => 0,
    }
}
