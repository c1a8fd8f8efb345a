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

/// The one Guild Master definition (API-2026-05.md N6.5), as a SQL condition
/// on a `subscriptions` row aliased `s`: tier `performer` with status
/// `active`, `past_due` within the grace period, or `trialing` when the
/// setting `guild_master.includes_trialing` is on. `PostUser.is_guild_master`,
/// the seat counter and every Guild-Master-gated feature use it.
pub fn guild_master_sql(includes_trialing: bool) -> &'static str {
    if includes_trialing {
        "(s.tier = 'performer' AND (s.status IN ('active','trialing') OR (s.status = 'past_due' AND s.grace_until > now())))"
    } else {
        "(s.tier = 'performer' AND (s.status = 'active' OR (s.status = 'past_due' AND s.grace_until > now())))"
    }
}

/// [`guild_master_sql`] for one user (false without a subscription row).
pub async fn is_guild_master(
    conn: &mut PgConnection,
    user_id: Uuid,
    includes_trialing: bool,
) -> Result<bool> {
    let gm: Option<bool> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM subscriptions s WHERE s.user_id = $1",
        guild_master_sql(includes_trialing)
    )))
    .bind(user_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(gm.unwrap_or(false))
}
