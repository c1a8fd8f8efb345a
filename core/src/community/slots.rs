//! Video slots (§4.3, D15): one formula everywhere.

use crate::access;
use crate::economy::Amounts;
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
