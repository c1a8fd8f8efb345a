//! Users endpoints (API.md §3.4): own profile, profile update, public
//! profiles, badge order and the XP leaderboard. Every id is users.id (D30).

use crate::auth::{OptionalAuth, UserAuth};
use crate::error::ApiResult;
use crate::state::AppState;
use crate::types::ts_opt;
use mambo_core::badges::BadgeItem;
use mambo_core::profiles::{self, Profile, ProfileUpdate};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{Object, OpenApi};

pub struct UsersApi;

/// A person found by the people search (N4.3).
#[derive(Object, Debug, Clone)]
#[oai(rename = "PersonSearchHit")]
pub struct PersonOut {
    /// users.id
    pub id: String,
    pub username: String,
    pub first_name: String,
    pub last_name: String,
    pub avatar_url: Option<String>,
    pub level: i64,
}

/// An earned badge on a profile (BadgeItem of §3.0).
#[derive(Object, serde::Serialize, Debug, Clone)]
#[oai(rename = "ProfileBadge")]
pub struct ProfileBadgeOut {
    pub id: String,
    pub name: String,
    pub description: String,
    pub tier: String,
    pub icon_url: Option<String>,
    pub category: String,
    pub requirement_type: String,
    pub requirement_value: i64,
    pub is_earned: bool,
    pub earned_at: Option<String>,
    pub display_order: i64,
}

impl From<BadgeItem> for ProfileBadgeOut {
    fn from(b: BadgeItem) -> Self {
        Self {
            earned_at: ts_opt(&b.earned_at),
            id: b.id,
            name: b.name,
            description: b.description,
            tier: b.tier,
            icon_url: b.icon_url,
            category: b.category,
            requirement_type: b.requirement_type,
            requirement_value: b.requirement_value as i64,
            is_earned: b.is_earned,
            display_order: b.display_order as i64,
        }
    }
}

#[derive(Object, serde::Serialize, Debug, Clone)]
#[oai(rename = "ProfileStats")]
pub struct ProfileStatsOut {
    pub reactions_given: i64,
    pub reactions_received: i64,
    pub solutions_accepted: i64,
}

/// The Profile of §3.0.
#[derive(Object, serde::Serialize, Debug, Clone)]
#[oai(rename = "Profile")]
pub struct ProfileOut {
    /// users.id
    pub id: String,
    pub first_name: String,
    pub last_name: String,
    pub username: Option<String>,
    pub xp: i64,
    pub level: i64,
    pub streak_count: i64,
    /// `rookie`, `advanced` or `performer`
    pub tier: String,
    /// `student`, `admin` or `instructor`
    pub role: String,
    pub avatar_url: Option<String>,
    pub current_level_tag: Option<String>,
    pub reputation: i64,
    pub current_claves: i64,
    /// Whether the account's email is verified
    pub is_verified: bool,
    /// `https://instagram.com/<handle>`
    pub instagram_url: Option<String>,
    /// The subscription's status (`active`, `trialing`, `past_due`,
    /// `canceled`, `unpaid`, `incomplete`); null without a subscription and on
    /// public profiles
    pub subscription_status: Option<String>,
    /// False on public profiles
    pub subscription_cancel_at_period_end: bool,
    /// The end of the current period; null on public profiles
    pub subscription_period_end: Option<String>,
    /// The tier a scheduled change moves to at the period end; null on public
    /// profiles
    pub subscription_scheduled_tier: Option<String>,
    /// Whether a free trial was ever started for this email; false on public
    /// profiles
    pub has_used_trial: bool,
    /// The equipped profile border (shop SKU)
    pub equipped_border_sku: Option<String>,
    /// The equipped title (shop SKU)
    pub equipped_title_sku: Option<String>,
    /// IANA time zone; null on public profiles
    pub timezone: Option<String>,
    pub badges: Vec<ProfileBadgeOut>,
    pub stats: ProfileStatsOut,
}

impl From<Profile> for ProfileOut {
    fn from(p: Profile) -> Self {
        Self {
            id: p.id.to_string(),
            first_name: p.first_name,
            last_name: p.last_name,
            username: p.username,
            xp: p.xp,
            level: p.level,
            streak_count: p.streak_count,
            tier: p.tier,
            role: p.role,
            avatar_url: p.avatar_url,
            current_level_tag: p.current_level_tag,
            reputation: p.reputation,
            current_claves: p.current_claves,
            is_verified: p.is_verified,
            instagram_url: p.instagram_url,
            subscription_status: p.subscription_status,
            subscription_cancel_at_period_end: p.subscription_cancel_at_period_end,
            subscription_period_end: ts_opt(&p.subscription_period_end),
            subscription_scheduled_tier: p.subscription_scheduled_tier,
            has_used_trial: p.has_used_trial,
            equipped_border_sku: p.equipped_border_sku,
            equipped_title_sku: p.equipped_title_sku,
            timezone: p.timezone,
            badges: p.badges.into_iter().map(Into::into).collect(),
            stats: ProfileStatsOut {
                reactions_given: p.stats.reactions_given,
                reactions_received: p.stats.reactions_received,
                solutions_accepted: p.stats.solutions_accepted,
            },
        }
    }
}

#[derive(Object, Debug, Clone)]
#[oai(rename = "ProfileUpdate")]
pub struct ProfileUpdateIn {
    /// An https URL on an allowed host, or `""` to clear the avatar
    #[oai(deserialize_with = "crate::routes::auth::strict_opt_str")]
    pub avatar_url: Option<String>,
    /// 3–30 characters: letters, digits, underscores; stored lowercased
    #[oai(deserialize_with = "crate::routes::auth::strict_opt_str")]
    pub username: Option<String>,
    /// A handle (`diego`, `@diego.dance`) or an `https://instagram.com/…`
    /// URL, stored as `https://instagram.com/<handle>`; `null` or `""` clears
    /// it, absent leaves it unchanged
    #[oai(deserialize_with = "crate::routes::auth::strict_maybe_str")]
    pub instagram_url: MaybeUndefined<String>,
}

#[derive(Object, Debug, Clone)]
#[oai(rename = "BadgeReorder")]
pub struct BadgeReorderIn {
    #[oai(deserialize_with = "crate::routes::auth::strict_str_list")]
    pub badge_ids: Vec<String>,
}

#[derive(Object, Debug, Clone)]
#[oai(rename = "StatusSuccess")]
pub struct StatusOut {
    /// Always `success`
    pub status: String,
}

#[derive(Object, Debug, Clone)]
#[oai(rename = "LeaderboardEntry")]
pub struct LeaderboardEntryOut {
    /// users.id
    pub user_id: String,
    /// `@username`, or `first last` without a username
    pub name: String,
    pub avatar_url: Option<String>,
    pub xp_total: i64,
    /// 1-based
    pub rank: i64,
}

#[OpenApi(tag = "crate::routes::Tag::Users")]
impl UsersApi {
    /// The signed-in user's profile
    #[oai(path = "/api/users/me", method = "get")]
    async fn me(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
    ) -> ApiResult<crate::fast_json::FastJson<ProfileOut>> {
        let p = profiles::by_user_id(&state.ctx.db, auth.user().id)
            .await?
            .ok_or_else(|| crate::error::ApiError::msg(404, "User profile not found"))?;
        Ok(crate::fast_json::FastJson(p.into()))
    }

    /// Delete one's account (GDPR art. 17): signed out at once, erased by the worker
    ///
    /// `{password}` for accounts that sign in with one, `{confirm: "DELETE"}`
    /// for Google accounts.
    #[oai(path = "/api/users/me", method = "delete")]
    async fn delete_me(
        &self,
        auth: UserAuth,
        state: Data<&AppState>,
        req: &poem::Request,
        body: crate::deferred::LaterJson<crate::routes::privacy::DeleteAccountIn>,
    ) -> ApiResult<crate::routes::privacy::DeletionAccepted> {
        crate::routes::privacy::delete_own(auth, &state, req, body).await
    }

    /// Update the avatar and/or the username
    #[oai(path = "/api/users/me", method = "patch")]
    async fn update_me(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        body: Json<ProfileUpdateIn>,
    ) -> ApiResult<Json<ProfileOut>> {
        let b = body.0;
        let p = profiles::update(
            &state.ctx,
            auth.user().id,
            ProfileUpdate {
                avatar_url: b.avatar_url,
                username: b.username,
                instagram_url: match b.instagram_url {
                    MaybeUndefined::Undefined => None,
                    MaybeUndefined::Null => Some(None),
                    MaybeUndefined::Value(v) => Some(Some(v)),
                },
            },
        )
        .await?;
        Ok(Json(p.into()))
    }

    /// Someone's public profile (username matched case-insensitively)
    #[oai(path = "/api/users/public/:username", method = "get")]
    async fn public_profile(
        &self,
        state: Data<&AppState>,
        auth: OptionalAuth,
        username: Path<String>,
    ) -> ApiResult<Json<ProfileOut>> {
        let viewer = auth.user().map(|u| u.id);
        let p = profiles::public(&state.ctx.db, &username.0, viewer).await?;
        Ok(Json(p.into()))
    }

    /// People whose username starts with `q` (case-insensitive, literal), at
    /// most 10
    #[oai(path = "/api/users/search", method = "get")]
    async fn search(
        &self,
        _auth: UserAuth,
        state: Data<&AppState>,
        /// The username prefix, 2–50 characters
        q: Query<Option<String>>,
    ) -> ApiResult<Json<Vec<PersonOut>>> {
        let q = profiles::validate_search(q.0.as_deref())?;
        let rows = profiles::search(&state.ctx.db, q).await?;
        Ok(Json(
            rows.into_iter()
                .map(|p| PersonOut {
                    id: p.id.to_string(),
                    username: p.username,
                    first_name: p.first_name,
                    last_name: p.last_name,
                    avatar_url: p.avatar_url,
                    level: p.level as i64,
                })
                .collect(),
        ))
    }

    /// Set the display order of the user's badges
    #[oai(path = "/api/users/me/badges/reorder", method = "put")]
    async fn reorder_badges(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        body: Json<BadgeReorderIn>,
    ) -> ApiResult<Json<StatusOut>> {
        profiles::reorder_badges(&state.ctx.db, auth.user().id, &body.0.badge_ids).await?;
        Ok(Json(StatusOut {
            status: "success".into(),
        }))
    }

    /// Top 10 by XP
    #[oai(path = "/api/users/leaderboard", method = "get")]
    async fn leaderboard(
        &self,
        state: Data<&AppState>,
    ) -> ApiResult<Json<Vec<LeaderboardEntryOut>>> {
        let rows = profiles::leaderboard(&state.ctx.db).await?;
        Ok(Json(
            rows.into_iter()
                .map(|r| LeaderboardEntryOut {
                    user_id: r.user_id.to_string(),
                    name: r.name,
                    avatar_url: r.avatar_url,
                    xp_total: r.xp_total,
                    rank: r.rank,
                })
                .collect(),
        ))
    }
}

#[cfg(test)]
mod fast_json_shapes {
    use super::*;
    use crate::fast_json::assert_same_json;

    #[test]
    fn profiles_serialize_as_the_schema_says() {
        let badge = |earned: bool| ProfileBadgeOut {
            id: "first_steps".into(),
            name: "First Steps".into(),
            description: String::new(),
            tier: "Bronze".into(),
            icon_url: earned.then(|| "https://x.example/i.png".into()),
            category: "learning".into(),
            requirement_type: "lessons_completed".into(),
            requirement_value: 1,
            is_earned: earned,
            earned_at: earned.then(|| "2026-12-02T17:00:00.000000Z".into()),
            display_order: 2,
        };
        for (username, sub) in [(None, false), (Some("ana".to_string()), true)] {
            assert_same_json(&ProfileOut {
                id: "8a4f9c52-7d0e-4b7a-9d55-0c8b8f3f1e2a".into(),
                first_name: "Ana".into(),
                last_name: "López".into(),
                username,
                xp: 10,
                level: 2,
                streak_count: 0,
                tier: "rookie".into(),
                role: "student".into(),
                avatar_url: None,
                current_level_tag: Some("Beginner".into()),
                reputation: 0,
                current_claves: 15,
                is_verified: true,
                instagram_url: sub.then(|| "https://instagram.com/ana".into()),
                subscription_status: sub.then(|| "trialing".into()),
                subscription_cancel_at_period_end: sub,
                subscription_period_end: sub.then(|| "2026-12-02T17:00:00.000000Z".into()),
                subscription_scheduled_tier: sub.then(|| "advanced".into()),
                has_used_trial: sub,
                equipped_border_sku: sub.then(|| "border_gold".into()),
                equipped_title_sku: sub.then(|| "title_maestro".into()),
                timezone: sub.then(|| "Europe/Madrid".into()),
                badges: vec![badge(true), badge(false)],
                stats: ProfileStatsOut {
                    reactions_given: 1,
                    reactions_received: 2,
                    solutions_accepted: 3,
                },
            });
        }
    }
}
