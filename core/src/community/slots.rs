//! Video slots (§4.3, D15): one formula everywhere.

use crate::access;
use crate::economy::Amounts;
use crate::participation;
use crate::settings::Settings;
use crate::video_slots::slots_used;
use crate::{Context, Result};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

/// §3.0 SlotStatus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotStatus {
    pub allowed: bool,
    pub current_slots: i64,
    pub max_slots: i64,
    pub message: String,
}

/// The slot status with the messages of §4.3.
pub fn slot_status_for(used: i64, limit: i64) -> SlotStatus {
    let allowed = used < limit;
    let message = if allowed {
        format!("You have {used}/{limit} video slots used.")
    } else {
        format!("You've reached your {limit} video limit. Delete an old video to post a new one.")
    };
    SlotStatus {
        allowed,
        current_slots: used,
        max_slots: limit,
        message,
    }
}

/// What a caller the participation gate refuses sees on every slot check
/// (N6.5): nothing allowed, no slots, the gate's post message.
pub fn refused_status(r: &participation::Refusal) -> SlotStatus {
    SlotStatus {
        allowed: false,
        current_slots: 0,
        max_slots: 0,
        message: r.message.to_string(),
    }
}

/// The gate's refusal of a post by this caller, if any (one read of the
/// settings, one of the subscription when the gate is closed).
async fn post_refusal(
    conn: &mut PgConnection,
    settings: &Settings,
    user_id: Uuid,
    role: &str,
) -> Result<Option<participation::Refusal>> {
    participation::refusal(conn, settings, user_id, role, participation::Action::Post).await
}

/// The video slots of `GET /community/upload-check` and
/// `/claves/slot-status`: [`slot_status`], or the gate's refusal (N6.5).
pub async fn upload_check(ctx: &Context, user_id: Uuid, role: &str) -> Result<SlotStatus> {
    let snap = ctx.settings_now().await?;
    let mut conn = ctx.db.acquire().await?;
    if let Some(r) = post_refusal(&mut conn, &snap.settings, user_id, role).await? {
        return Ok(refused_status(&r));
    }
    slot_status_conn(&mut conn, &Amounts::from_config(&ctx.config), user_id).await
}

/// The Lab question limit in force for the user (N5.4): the base or pro
/// setting plus the shop's bonus slots; `None` when no limit is set.
pub async fn question_limit(
    conn: &mut PgConnection,
    settings: &Settings,
    user_id: Uuid,
) -> Result<Option<i64>> {
    let c = &settings.community;
    if c.question_slots_base.is_none() && c.question_slots_pro.is_none() {
        return Ok(None);
    }
    let pro = access::is_pro(conn, user_id).await?;
    let Some(base) = (if pro {
        c.question_slots_pro
    } else {
        c.question_slots_base
    }) else {
        return Ok(None);
    };
    let bonus: Option<i32> =
        sqlx::query_scalar("SELECT bonus_question_slots FROM user_profiles WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(Some(base + bonus.unwrap_or(0) as i64))
}

/// The caller's Lab questions (every lab post they have).
pub async fn questions_used(conn: &mut PgConnection, user_id: Uuid) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM posts WHERE user_id = $1 AND post_type = 'lab'")
            .bind(user_id)
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// The question slot status with N5.4's messages.
pub fn question_status_for(used: i64, limit: Option<i64>) -> SlotStatus {
    let Some(limit) = limit else {
        return SlotStatus {
            allowed: true,
            current_slots: used,
            max_slots: 0,
            message: "Questions are unlimited.".into(),
        };
    };
    let allowed = used < limit;
    SlotStatus {
        allowed,
        current_slots: used,
        max_slots: limit,
        message: if allowed {
            format!("You have {used}/{limit} question slots used.")
        } else {
            question_limit_reached(limit)
        },
    }
}

/// The message of a Lab post refused at the question limit.
pub fn question_limit_reached(limit: i64) -> String {
    format!("You've reached your {limit} question limit. Delete an old question to post a new one.")
}

/// `GET /api/community/upload-check-lab` (N5.4).
pub async fn upload_check_lab(ctx: &Context, user_id: Uuid, role: &str) -> Result<SlotStatus> {
    let snap = ctx.settings_now().await?;
    let mut conn = ctx.db.acquire().await?;
    if let Some(r) = post_refusal(&mut conn, &snap.settings, user_id, role).await? {
        return Ok(refused_status(&r));
    }
    let used = questions_used(&mut conn, user_id).await?;
    let limit = question_limit(&mut conn, &snap.settings, user_id).await?;
    Ok(question_status_for(used, limit))
}

/// The user's slot status (`GET /community/upload-check`, `/claves/slot-status`).
pub async fn slot_status(ctx: &Context, user_id: Uuid) -> Result<SlotStatus> {
    let mut conn = ctx.db.acquire().await?;
    slot_status_conn(&mut conn, &Amounts::from_config(&ctx.config), user_id).await
}

pub async fn slot_status_conn(
    conn: &mut PgConnection,
    amounts: &Amounts,
    user_id: Uuid,
) -> Result<SlotStatus> {
    let pro = access::is_pro(conn, user_id).await?;
    let used = slots_used(conn, user_id).await?;
    Ok(slot_status_for(used, amounts.slot_limit(pro)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_messages() {
        let s = question_status_for(3, None);
        assert!(s.allowed);
        assert_eq!((s.current_slots, s.max_slots), (3, 0));
        assert_eq!(s.message, "Questions are unlimited.");
        assert_eq!(
            question_status_for(2, Some(10)).message,
            "You have 2/10 question slots used."
        );
        let s = question_status_for(10, Some(10));
        assert!(!s.allowed);
        assert_eq!(
            s.message,
            "You've reached your 10 question limit. Delete an old question to post a new one."
        );
    }

    #[test]
    fn slot_messages() {
        let s = slot_status_for(2, 5);
        assert!(s.allowed);
        assert_eq!(s.message, "You have 2/5 video slots used.");
        let s = slot_status_for(5, 5);
        assert!(!s.allowed);
        assert_eq!(
            s.message,
            "You've reached your 5 video limit. Delete an old video to post a new one."
        );
    }
}
