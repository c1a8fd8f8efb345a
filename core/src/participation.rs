//! The participation gate (API-2026-05.md N6.5): who may post, reply and
//! upload a post's video. `community.participation_min_tier` names the
//! lowest tier that takes part (rookie, the seed, lets everyone in); a
//! subscription counts while it is `active`, `past_due` within the N2 grace
//! period, or `trialing` when `community.trialing_can_participate`. Admins
//! always pass. Reacting, saving, reporting and reading are never gated.
//!
//! The one door: [`refusal`] decides, [`Refusal::error`] is the 403 every
//! gated route answers, [`Refusal::slot_status`] what the slot checks show.

use crate::settings::{Settings, tier_rank};
use crate::{Error, Result};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

/// What the caller wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Create a post (and upload its video).
    Post,
    /// Reply to a post.
    Reply,
}

/// Why a caller is refused, and what they are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `free`, `lapsed`, `trial` or `tier`.
    pub gate_state: &'static str,
    pub message: &'static str,
}

pub const FREE_POST: &str = "Posting in the community is for paid Mambo Guild members. Subscribe to share your practice or ask questions.";
pub const FREE_REPLY: &str =
    "Commenting is for paid Mambo Guild members. Subscribe to join the conversation.";
pub const LAPSED: &str = "Your subscription has lapsed. Renew to keep posting in the community.";
pub const TRIAL: &str = "For security reasons, posting is not possible during your free trial. You'll be able to post once your trial ends and your first payment is processed.";
pub const TIER: &str = "This feature requires Guild Master (Performer) subscription.";

impl Refusal {
    /// The 403 of a gated route: `{detail: {success: false, message,
    /// tier_required: true, gate_state}}`.
    pub fn error(&self) -> Error {
        Error::with_object(
            403,
            json!({
                "success": false,
                "message": self.message,
                "tier_required": true,
                "gate_state": self.gate_state,
            }),
        )
    }
}

/// The subscription facts the gate reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscription {
    pub tier: String,
    pub status: String,
    /// `past_due` and still within the grace period.
    pub in_grace: bool,
}

/// The gate's decision for a subscription (`None`: no row) under `settings`.
pub fn decide(
    settings: &Settings,
    role: &str,
    sub: Option<&Subscription>,
    action: Action,
) -> Option<Refusal> {
    let min = settings.participation_min_rank();
    if role == "admin" || min == 0 {
        return None;
    }
    let free = Refusal {
        gate_state: "free",
        message: match action {
            Action::Post => FREE_POST,
            Action::Reply => FREE_REPLY,
        },
    };
    let Some(sub) = sub else {
        return Some(free);
    };
    let rank = tier_rank(&sub.tier);
    if rank == 0 {
        return Some(free);
    }
    let counts = match sub.status.as_str() {
        "active" => true,
        "past_due" => sub.in_grace,
        "trialing" => {
            if !settings.community.trialing_can_participate {
                return Some(Refusal {
                    gate_state: "trial",
                    message: TRIAL,
                });
            }
            true
        }
        "canceled" | "unpaid" => false,
        // incomplete, incomplete_expired, paused: never paid.
        _ => return Some(free),
    };
    if !counts {
        return Some(Refusal {
            gate_state: "lapsed",
            message: LAPSED,
        });
    }
    (rank < min).then_some(Refusal {
        gate_state: "tier",
        message: TIER,
    })
}

/// Reads the caller's subscription and decides (one query, skipped when the
/// gate is open).
pub async fn refusal(
    conn: &mut PgConnection,
    settings: &Settings,
    user_id: Uuid,
    role: &str,
    action: Action,
) -> Result<Option<Refusal>> {
    if role == "admin" || settings.participation_min_rank() == 0 {
        return Ok(None);
    }
    let sub: Option<(String, String, Option<bool>)> = sqlx::query_as(
        "SELECT tier, status, (status = 'past_due' AND grace_until > now())
         FROM subscriptions WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(&mut *conn)
    .await?;
    let sub = sub.map(|(tier, status, in_grace)| Subscription {
        tier,
        status,
        in_grace: in_grace.unwrap_or(false),
    });
    Ok(decide(settings, role, sub.as_ref(), action))
}

/// The gate for a request: `Err` with the 403 when the caller is refused.
pub async fn ensure(ctx: &crate::Context, user_id: Uuid, role: &str, action: Action) -> Result<()> {
    let snap = ctx.settings_now().await?;
    if role == "admin" || snap.settings.participation_min_rank() == 0 {
        return Ok(());
    }
    let mut conn = ctx.db.acquire().await?;
    match refusal(&mut conn, &snap.settings, user_id, role, action).await? {
        Some(r) => Err(r.error()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(tier: &str, status: &str, in_grace: bool) -> Subscription {
        Subscription {
            tier: tier.into(),
            status: status.into(),
            in_grace,
        }
    }

    fn gated(min: &str, trialing: bool) -> Settings {
        let mut s = Settings::default();
        s.community.participation_min_tier = min.into();
        s.community.trialing_can_participate = trialing;
        s
    }

    #[test]
    fn the_seed_lets_everyone_in() {
        let s = Settings::default();
        assert_eq!(decide(&s, "student", None, Action::Post), None);
    }

    #[test]
    fn each_gate_state() {
        let s = gated("advanced", false);
        let state = |sub: Option<Subscription>, a| {
            decide(&s, "student", sub.as_ref(), a).map(|r| (r.gate_state, r.message))
        };
        assert_eq!(state(None, Action::Post), Some(("free", FREE_POST)));
        assert_eq!(
            state(Some(sub("rookie", "active", false)), Action::Reply),
            Some(("free", FREE_REPLY))
        );
        assert_eq!(
            state(Some(sub("advanced", "active", false)), Action::Post),
            None
        );
        assert_eq!(
            state(Some(sub("performer", "past_due", true)), Action::Post),
            None
        );
        assert_eq!(
            state(Some(sub("advanced", "past_due", false)), Action::Post),
            Some(("lapsed", LAPSED))
        );
        assert_eq!(
            state(Some(sub("advanced", "canceled", false)), Action::Post),
            Some(("lapsed", LAPSED))
        );
        assert_eq!(
            state(Some(sub("advanced", "trialing", false)), Action::Post),
            Some(("trial", TRIAL))
        );
        assert_eq!(
            state(Some(sub("advanced", "incomplete", false)), Action::Post),
            Some(("free", FREE_POST))
        );
        let s = gated("performer", true);
        assert_eq!(
            decide(
                &s,
                "student",
                Some(&sub("advanced", "trialing", false)),
                Action::Post
            )
            .map(|r| r.gate_state),
            Some("tier")
        );
        assert_eq!(
            decide(
                &s,
                "student",
                Some(&sub("performer", "trialing", false)),
                Action::Post
            ),
            None
        );
        assert_eq!(decide(&s, "admin", None, Action::Post), None);
    }
}
