//! Badges (API.md §3.11, §4.8): definitions, a user's earned badges, awarding.

use crate::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// One badge definition with the user's earned state (BadgeItem of §3.0).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct BadgeItem {
    pub id: String,
    pub name: String,
    pub description: String,
    pub tier: String,
    pub icon_url: Option<String>,
    pub category: String,
    pub requirement_type: String,
    pub requirement_value: i32,
    pub is_earned: bool,
    pub earned_at: Option<DateTime<Utc>>,
    pub display_order: i32,
}

/// Every definition with `user_id`'s earned state, sorted as §3.0 says:
/// earned first; then display_order ascending (0 counts as 9999); then
/// requirement_value descending. One query.
pub async fn list_for_user(db: &PgPool, user_id: Option<Uuid>) -> Result<Vec<BadgeItem>> {
    let items = sqlx::query_as::<_, BadgeItem>(
        "SELECT d.id, d.name, COALESCE(d.description, '') AS description,
                COALESCE(d.tier, 'Silver') AS tier, d.icon_url,
                COALESCE(d.category, 'special') AS category,
                COALESCE(d.requirement_type, 'manual') AS requirement_type,
                COALESCE(d.threshold, 0) AS requirement_value,
                (ub.id IS NOT NULL) AS is_earned, ub.earned_at,
                COALESCE(ub.display_order, 0) AS display_order
         FROM badge_definitions d
         LEFT JOIN user_badges ub ON ub.badge_id = d.id AND ub.user_id = $1
         ORDER BY (ub.id IS NOT NULL) DESC,
                  CASE WHEN COALESCE(ub.display_order, 0) = 0 THEN 9999 ELSE ub.display_order END ASC,
                  COALESCE(d.threshold, 0) DESC, d.id ASC",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?;
    Ok(items)
}

/// Only the badges the user has earned, in the same order.
pub async fn earned_for_user(db: &PgPool, user_id: Uuid) -> Result<Vec<BadgeItem>> {
    Ok(list_for_user(db, Some(user_id))
        .await?
        .into_iter()
        .filter(|b| b.is_earned)
        .collect())
}
