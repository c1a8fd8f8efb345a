//! Notifications (API-NEXT.md N1): the bell's list, unread count, reading,
//! per-type preferences and the digest email's one-click unsubscribe link.
//! The live stream is in `notifications_stream`.

use crate::auth::UserAuth;
use crate::error::{ApiError, ApiResult};
use crate::fast_json::FastJson;
use crate::routes::community::int_query;
use crate::state::AppState;
use crate::types::ts;
use mambo_core::notifications::{self, Notification, Preferences, PreferencesUpdate, digest};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Enum, Object, OpenApi};
use serde_json::{Map, Value};
use uuid::Uuid;

pub struct NotificationsApi;

/// One notification (N1 "Notification").
#[derive(Object, serde::Serialize, Debug, Clone)]
#[oai(rename = "Notification")]
pub struct NotificationOut {
    pub id: String,
    /// `reaction_received`, `reply_received`, `answer_accepted`, `badge_earned`,
    /// `submission_graded`, `streak_bonus`, `course_published` or `subscription`
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub message: String,
    pub reference_type: Option<String>,
    pub reference_id: Option<String>,
    pub is_read: bool,
    pub created_at: String,
    pub actor_id: Option<String>,
    pub actor_username: Option<String>,
    pub actor_avatar_url: Option<String>,
}

impl From<Notification> for NotificationOut {
    fn from(n: Notification) -> Self {
        Self {
            id: n.id.to_string(),
            kind: n.kind,
            title: n.title,
            message: n.message,
            reference_type: n.reference_type,
            reference_id: n.reference_id,
            is_read: n.is_read,
            created_at: ts(&n.created_at),
            actor_id: n.actor_id.map(|a| a.to_string()),
            actor_username: n.actor_username,
            actor_avatar_url: n.actor_avatar_url,
        }
    }
}

#[derive(Object, serde::Serialize, Debug)]
pub struct UnreadCountOut {
    pub unread_count: i64,
}

#[derive(Object, Debug)]
pub struct ReadOut {
    success: bool,
}

#[derive(Object, Debug)]
pub struct ReadAllOut {
    success: bool,
    /// Notifications that were unread and are now read
    count: i64,
}

/// Whether each type of notification is created for the user.
#[derive(Object, Debug, Clone, PartialEq, Eq)]
#[oai(rename = "InAppPreferences")]
pub struct InAppOut {
    reaction_received: bool,
    reply_received: bool,
    answer_accepted: bool,
    badge_earned: bool,
    submission_graded: bool,
    streak_bonus: bool,
    course_published: bool,
    subscription: bool,
}

/// Some types to turn on or off; the others keep their setting.
#[derive(Object, Debug, Clone, Default)]
#[oai(rename = "InAppPreferencesUpdate", deny_unknown_fields)]
pub struct InAppIn {
    reaction_received: Option<bool>,
    reply_received: Option<bool>,
    answer_accepted: Option<bool>,
    badge_earned: Option<bool>,
    submission_graded: Option<bool>,
    streak_bonus: Option<bool>,
    course_published: Option<bool>,
    subscription: Option<bool>,
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum DigestSetting {
    Off,
    Daily,
    Weekly,
}

impl DigestSetting {
    fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Daily => "daily",
            Self::Weekly => "weekly",
        }
    }
}

#[derive(Object, Debug)]
#[oai(rename = "NotificationPreferences")]
pub struct PreferencesOut {
    in_app: InAppOut,
    /// `off`, `daily` or `weekly`
    email_digest: String,
}

/// Any subset of the preferences; merged into the stored ones.
#[derive(Object, Debug)]
#[oai(rename = "NotificationPreferencesUpdate", deny_unknown_fields)]
pub struct PreferencesIn {
    in_app: Option<InAppIn>,
    email_digest: Option<DigestSetting>,
}

impl From<Preferences> for PreferencesOut {
    fn from(p: Preferences) -> Self {
        let on = |t: &str| p.in_app.iter().any(|(k, v)| k == t && *v);
        Self {
            in_app: InAppOut {
                reaction_received: on(notifications::REACTION_RECEIVED),
                reply_received: on(notifications::REPLY_RECEIVED),
                answer_accepted: on(notifications::ANSWER_ACCEPTED),
                badge_earned: on(notifications::BADGE_EARNED),
                submission_graded: on(notifications::SUBMISSION_GRADED),
                streak_bonus: on(notifications::STREAK_BONUS),
                course_published: on(notifications::COURSE_PUBLISHED),
                subscription: on(notifications::SUBSCRIPTION),
            },
            email_digest: p.email_digest,
        }
    }
}

impl PreferencesIn {
    fn into_core(self) -> PreferencesUpdate {
        let mut in_app = Map::new();
        if let Some(i) = self.in_app {
            for (k, v) in [
                (notifications::REACTION_RECEIVED, i.reaction_received),
                (notifications::REPLY_RECEIVED, i.reply_received),
                (notifications::ANSWER_ACCEPTED, i.answer_accepted),
                (notifications::BADGE_EARNED, i.badge_earned),
                (notifications::SUBMISSION_GRADED, i.submission_graded),
                (notifications::STREAK_BONUS, i.streak_bonus),
                (notifications::COURSE_PUBLISHED, i.course_published),
                (notifications::SUBSCRIPTION, i.subscription),
            ] {
                if let Some(v) = v {
                    in_app.insert(k.to_string(), Value::Bool(v));
                }
            }
        }
        PreferencesUpdate {
            in_app,
            email_digest: self.email_digest.map(|d| d.as_str().to_string()),
        }
    }
}

/// The answer of the unsubscribe link.
#[derive(Object, Debug)]
#[oai(rename = "UnsubscribeResponse")]
pub struct UnsubscribeOut {
    /// `You have been unsubscribed from notification emails`
    message: String,
}

async fn unsubscribe(state: &AppState, token: Option<&str>) -> ApiResult<Json<UnsubscribeOut>> {
    digest::unsubscribe(&state.ctx, token).await?;
    Ok(Json(UnsubscribeOut {
        message: digest::UNSUBSCRIBED.into(),
    }))
}

fn parse_notification_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw.trim()).map_err(|_| notifications::not_found().into())
}

#[OpenApi(tag = "crate::routes::Tag::Notifications")]
impl NotificationsApi {
    /// The caller's notifications, newest first
    #[oai(path = "/api/notifications", method = "get")]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        /// Rows to skip (≥ 0, default 0)
        skip: Query<Option<String>>,
        /// Page size (1–50, default 20)
        limit: Query<Option<String>>,
        /// Only unread notifications (default false)
        unread_only: Query<Option<bool>>,
    ) -> ApiResult<FastJson<Vec<NotificationOut>>> {
        let skip = int_query("skip", skip.0, 0, 0, None)?;
        let limit = int_query("limit", limit.0, 20, 1, Some(50))?;
        let rows = notifications::list(
            &state.ctx.db,
            auth.user().id,
            skip,
            limit,
            unread_only.0.unwrap_or(false),
        )
        .await?;
        Ok(FastJson(rows.into_iter().map(Into::into).collect()))
    }

    /// How many of the caller's notifications are unread (polled by the bell)
    #[oai(path = "/api/notifications/unread-count", method = "get")]
    async fn unread_count(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
    ) -> ApiResult<FastJson<UnreadCountOut>> {
        let unread_count = notifications::unread_count(&state.ctx.db, auth.user().id).await?;
        Ok(FastJson(UnreadCountOut { unread_count }))
    }

    /// Mark every notification read
    #[oai(path = "/api/notifications/read-all", method = "post")]
    async fn read_all(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
    ) -> ApiResult<Json<ReadAllOut>> {
        let count = notifications::mark_all_read(&state.ctx.db, auth.user().id).await?;
        Ok(Json(ReadAllOut {
            success: true,
            count,
        }))
    }

    /// Mark one notification read (404 for someone else's)
    #[oai(path = "/api/notifications/:notification_id/read", method = "post")]
    async fn read(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        notification_id: Path<String>,
    ) -> ApiResult<Json<ReadOut>> {
        let id = parse_notification_id(&notification_id.0)?;
        notifications::mark_read(&state.ctx.db, auth.user().id, id).await?;
        Ok(Json(ReadOut { success: true }))
    }

    /// Which notifications the caller gets, and the email digest setting
    #[oai(path = "/api/notifications/preferences", method = "get")]
    async fn preferences(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
    ) -> ApiResult<Json<PreferencesOut>> {
        let p = notifications::preferences(&state.ctx.db, auth.user().id).await?;
        Ok(Json(p.into()))
    }

    /// Change some preferences; returns them all
    #[oai(path = "/api/notifications/preferences", method = "put")]
    async fn update_preferences(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        body: Json<PreferencesIn>,
    ) -> ApiResult<Json<PreferencesOut>> {
        let p = notifications::update_preferences(
            &state.ctx.db,
            auth.user().id,
            body.0.into_core(),
            state.ctx.clock.now(),
        )
        .await?;
        Ok(Json(p.into()))
    }

    /// One-click unsubscribe from the notification email digest (RFC 8058)
    ///
    /// The `List-Unsubscribe` link of every digest email: turns the digest off.
    /// Idempotent. A missing, malformed or forged token is 400 `Invalid
    /// unsubscribe link`.
    #[oai(path = "/api/notifications/unsubscribe", method = "post")]
    async fn unsubscribe_post(
        &self,
        state: Data<&AppState>,
        /// The signed token of the email's link
        token: Query<Option<String>>,
    ) -> ApiResult<Json<UnsubscribeOut>> {
        unsubscribe(&state, token.0.as_deref()).await
    }

    /// Unsubscribe from the notification email digest (for mail clients that only GET)
    ///
    /// The same as the POST.
    #[oai(path = "/api/notifications/unsubscribe", method = "get")]
    async fn unsubscribe_get(
        &self,
        state: Data<&AppState>,
        /// The signed token of the email's link
        token: Query<Option<String>>,
    ) -> ApiResult<Json<UnsubscribeOut>> {
        unsubscribe(&state, token.0.as_deref()).await
    }
}
