//! Badges endpoints (API.md §3.11, §4.8, D1, D30).

use crate::auth::UserAuth;
use crate::conditional::{Cached, Validator};
use crate::error::{ApiError, ApiResult};
use crate::fast_json::FastJson;
use crate::state::AppState;
use crate::types::{parse_id, ts_opt};
use mambo_core::badges::{self, Awarded, BadgeItem, UserStats};
use poem::Request;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use uuid::Uuid;

pub struct BadgesApi;

/// A badge definition with a user's earned state (BadgeItem of §3.0).
#[derive(Object, serde::Serialize, Debug, Clone)]
pub struct BadgeItemOut {
    pub id: String,
    pub name: String,
    pub description: String,
    /// `Bronze`, `Silver`, `Gold` or `Diamond`
    pub tier: String,
    pub icon_url: Option<String>,
    pub category: String,
    pub requirement_type: String,
    pub requirement_value: i32,
    pub is_earned: bool,
    pub earned_at: Option<String>,
    pub display_order: i32,
}

impl From<BadgeItem> for BadgeItemOut {
    fn from(b: BadgeItem) -> Self {
        Self {
            id: b.id,
            name: b.name,
            description: b.description,
            tier: b.tier,
            icon_url: b.icon_url,
            category: b.category,
            requirement_type: b.requirement_type,
            requirement_value: b.requirement_value,
            is_earned: b.is_earned,
            earned_at: ts_opt(&b.earned_at),
            display_order: b.display_order,
        }
    }
}

/// Public profile stats (§3.11, §4.8).
#[derive(Object, Debug, Clone)]
pub struct BadgeStatsOut {
    pub reactions_given: i64,
    pub reactions_received: i64,
    pub fires_received: i64,
    pub claps_received: i64,
    /// `ruler` reactions received
    pub metronomes_received: i64,
    pub solutions_accepted: i64,
    /// Same as `solutions_accepted`
    pub questions_solved: i64,
    pub questions_posted: i64,
    pub videos_posted: i64,
    pub comments_posted: i64,
    pub current_streak: i64,
}

impl From<UserStats> for BadgeStatsOut {
    fn from(s: UserStats) -> Self {
        Self {
            reactions_given: s.reactions_given,
            reactions_received: s.reactions_received,
            fires_received: s.fires_received,
            claps_received: s.claps_received,
            metronomes_received: s.metronomes_received,
            solutions_accepted: s.solutions_accepted,
            questions_solved: s.solutions_accepted,
            questions_posted: s.questions_posted,
            videos_posted: s.videos_posted,
            comments_posted: s.comments_posted,
            current_streak: s.current_streak,
        }
    }
}

/// One badge awarded by a check.
#[derive(Object, Debug, Clone)]
pub struct AwardedBadgeOut {
    pub badge_id: String,
    pub badge_name: String,
    pub message: String,
}

impl From<Awarded> for AwardedBadgeOut {
    fn from(a: Awarded) -> Self {
        Self {
            message: format!("🏆 You earned {}!", a.badge_name),
            badge_id: a.badge_id,
            badge_name: a.badge_name,
        }
    }
}

#[derive(Object, Debug, Clone)]
pub struct BadgeCheckOut {
    pub success: bool,
    pub message: String,
    pub badges: Vec<AwardedBadgeOut>,
}

/// Resolves `{user_id}` as users.id, then as user_profiles.id; 404 otherwise.
async fn resolve(state: &AppState, raw: &str) -> ApiResult<Uuid> {
    let id = parse_id(raw, "User not found")?;
    badges::resolve_user_id(&state.ctx.db, id)
        .await?
        .ok_or_else(|| ApiError::msg(404, "User not found"))
}

/// The badge catalogue with the caller's earned state. Its validator is the
/// digest of the rows (one small query; no version of the definitions and
/// awards is kept that would be cheaper to read).
async fn all_for(
    state: &AppState,
    user: Uuid,
    req: &Request,
) -> ApiResult<Cached<FastJson<Vec<BadgeItemOut>>>> {
    let items = badges::list_for_user(&state.ctx.db, Some(user)).await?;
    let rows = serde_json::to_vec(&items).map_err(|_| ApiError::internal())?;
    let validator = Validator::of_body(&format!("badges:{user}"), &rows, false);
    Cached::answer(req, validator, || async {
        Ok(FastJson(items.into_iter().map(Into::into).collect()))
    })
    .await
}

/// Every badge definition with `user`'s earned status (both list paths).
pub async fn list_all_for(
    state: &AppState,
    user: Uuid,
    req: &Request,
) -> ApiResult<Cached<FastJson<Vec<BadgeItemOut>>>> {
    all_for(state, user, req).await
}

// poem-openapi drops a trailing slash from an operation path, except for the
// path "/" under a prefix that ends with one: this prefix is how
// `GET /api/badges/` (the frontend's path) is served directly. The slash-less
// `GET /api/badges` is declared in `routes::submissions` (an impl without a
// prefix), on the same handler.
#[OpenApi(prefix_path = "/api/badges/", tag = "crate::routes::Tag::Badges")]
impl BadgesApi {
    /// Every badge definition with the caller's earned status
    #[oai(path = "/", method = "get")]
    async fn list_badges(
        &self,
        auth: UserAuth,
        state: Data<&AppState>,
        req: &Request,
    ) -> ApiResult<Cached<FastJson<Vec<BadgeItemOut>>>> {
        all_for(&state, auth.user().id, req).await
    }

    /// A user's badges (by users.id or user_profiles.id)
    #[oai(path = "/user/:user_id", method = "get")]
    async fn user_badges(
        &self,
        state: Data<&AppState>,
        user_id: Path<String>,
    ) -> ApiResult<Json<Vec<BadgeItemOut>>> {
        let user = resolve(&state, &user_id).await?;
        let items = badges::list_for_user(&state.ctx.db, Some(user)).await?;
        Ok(Json(items.into_iter().map(Into::into).collect()))
    }

    /// A user's public stats
    #[oai(path = "/stats/:user_id", method = "get")]
    async fn user_stats(
        &self,
        state: Data<&AppState>,
        user_id: Path<String>,
    ) -> ApiResult<Json<BadgeStatsOut>> {
        let user = resolve(&state, &user_id).await?;
        let mut conn = state.ctx.db.acquire().await?;
        let stats = badges::stats(&mut conn, user)
            .await?
            .ok_or_else(|| ApiError::msg(404, "User not found"))?;
        Ok(Json(stats.into()))
    }

    /// Recompute every stat of the caller and award every badge reached
    #[oai(path = "/check", method = "post")]
    async fn check(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
    ) -> ApiResult<Json<BadgeCheckOut>> {
        let awarded = badges::check_all(&state.ctx, auth.user().id).await?;
        let message = if awarded.is_empty() {
            "No new badges earned yet. Keep going!".to_string()
        } else {
            format!("🏆 {} new badge(s) earned!", awarded.len())
        };
        Ok(Json(BadgeCheckOut {
            success: true,
            message,
            badges: awarded.into_iter().map(Into::into).collect(),
        }))
    }
}

#[cfg(test)]
mod fast_json_shapes {
    use super::*;
    use crate::fast_json::assert_same_json;

    #[test]
    fn badge_items_serialize_as_the_schema_says() {
        for earned_at in [None, Some("2026-12-02T17:00:00.000000Z".to_string())] {
            assert_same_json(&vec![BadgeItemOut {
                id: "first_steps".into(),
                name: "First Steps".into(),
                description: "d".into(),
                tier: "Bronze".into(),
                icon_url: None,
                category: "learning".into(),
                requirement_type: "lessons_completed".into(),
                requirement_value: 1,
                is_earned: earned_at.is_some(),
                earned_at,
                display_order: 0,
            }]);
        }
    }
}
