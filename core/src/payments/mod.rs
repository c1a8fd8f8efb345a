//! Stripe subscriptions (API.md §3.12, §4.15; defects D9–D11) and their
//! lifecycle (API-NEXT.md N2): trials, plan changes, the portal, failed
//! payments and every Stripe event.
//!
//! Stripe is called with plain form-encoded requests through `ctx.http`
//! against `config.stripe_base_url`, so tests point it at a fake server.
//! Webhooks are verified (hex HMAC-SHA256 over `"{t}.{body}"`, constant time,
//! 300 s tolerance against `ctx.clock`) and processed once per `event.id`:
//! the id is recorded in `processed_webhook_events` in the same transaction
//! as the event's effects. Events that arrive out of order never undo a newer
//! state: every state change is guarded by `subscriptions.stripe_event_created`.

use crate::economy::{self, Amounts};
use crate::{Config, Context, Error, Result};
use chrono::{DateTime, TimeZone, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use sqlx::PgConnection;
use uuid::Uuid;

/// Stripe's default replay window for webhook signatures.
pub const WEBHOOK_TOLERANCE_SECONDS: i64 = 300;

pub const MSG_INVALID_PRICE: &str =
    "Invalid price ID. Only Advanced and Performer tiers are available.";
pub const MSG_ALREADY_ACTIVE: &str =
    "User already has an active subscription. Use update-subscription to change plans.";
pub const MSG_NO_SUBSCRIPTION: &str = "No subscription found for this user.";
pub const MSG_NOT_ACTIVE_UPDATE: &str = "Subscription is not active. Cannot update.";
pub const MSG_NO_STRIPE_ID_UPDATE: &str = "No Stripe subscription ID found. Cannot update.";
pub const MSG_NOT_ACTIVE_CANCEL: &str = "Subscription is not active. Nothing to cancel.";
pub const MSG_UPDATED: &str = "Subscription updated successfully.";
pub const MSG_CANCELED_STRIPE: &str =
    "Subscription canceled successfully. You now have access to the Rookie plan.";
pub const MSG_CANCELED_LOCAL: &str = "Subscription canceled successfully.";
const MSG_STRIPE_DOWN: &str = "Payment provider unavailable. Please try again later.";

// ---------------------------------------------------------------------------
// Price ids and tiers
// ---------------------------------------------------------------------------

/// `ADVANCED_PRICE_ID` → advanced, `PERFORMER_PRICE_ID` → performer; nothing else.
pub fn tier_for_price(config: &Config, price_id: &str) -> Option<&'static str> {
    let p = price_id.trim();
    if p.is_empty() {
        None
    } else if p == config.advanced_price_id {
        Some("advanced")
    } else if p == config.performer_price_id {
        Some("performer")
    } else {
        None
    }
}

fn tier_for_lookup_key(key: &str) -> Option<&'static str> {
    match key.trim().to_ascii_lowercase().as_str() {
        "advanced" => Some("advanced"),
        "performer" | "vip" => Some("performer"),
        _ => None,
    }
}

/// The tier of a Stripe subscription object: its first item's price id, then
/// the price's `lookup_key`; anything else is rookie.
pub fn tier_of_subscription(config: &Config, sub: &Value) -> &'static str {
    let price = &sub["items"]["data"][0]["price"];
    price["id"]
        .as_str()
        .and_then(|id| tier_for_price(config, id))
        .or_else(|| price["lookup_key"].as_str().and_then(tier_for_lookup_key))
        .unwrap_or("rookie")
}

/// `current_period_end` of a subscription (top level, or on the first item in
/// newer API versions), as UTC.
pub fn period_end_of_subscription(sub: &Value) -> Option<DateTime<Utc>> {
    sub["current_period_end"]
        .as_i64()
        .or_else(|| sub["items"]["data"][0]["current_period_end"].as_i64())
        .and_then(unix_to_utc)
}

fn unix_to_utc(secs: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(secs, 0).single()
}

/// Maps Stripe's subscription statuses onto ours.
fn local_status(stripe_status: &str) -> &'static str {
    match stripe_status {
        "active" => "active",
        "trialing" => "trialing",
        "past_due" => "past_due",
        "unpaid" => "unpaid",
        "canceled" | "incomplete_expired" | "paused" => "canceled",
        _ => "incomplete",
    }
}

/// A Stripe id that may come expanded (`{"id": ...}`) or as a string.
fn id_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Object(o) => o
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        _ => None,
    }
}

/// True when `url` is the frontend URL or lies under it (an exact prefix
/// followed by `/`, `?` or `#`, so `http://app.example.evil` does not pass).
fn under_frontend(config: &Config, url: &str) -> bool {
    let base = config.frontend_url.trim_end_matches('/');
    match url.strip_prefix(base) {
        Some(rest) => rest.is_empty() || rest.starts_with(['/', '?', '#']),
        None => false,
    }
}

mod checkout;
mod events;
mod manage;
mod notices;
mod plans;
mod replay;
mod seats;
mod signature;
mod stripe;

pub use checkout::{
    Buyer, CheckoutRequest, CheckoutSession, create_checkout_session, normalize_email,
    trial_eligible,
};
pub use events::{Event, handle_webhook, is_handled, process_event};
pub use manage::*;
pub use plans::{Change, SubscriptionView, long_date, subscription};
pub use replay::{complete_event, send_signed_event};
pub use seats::{
    HOLD_MINUTES, HOLD_RETENTION_DAYS, MSG_GUILD_MASTER_FULL, SEAT_COUNT_CACHE_SECONDS, Seats,
    cancel_checkout, count_taken, delete_holds_of_user, expire_checkout_session, forget_seat_count,
    guild_master_seats, prune_checkout_holds,
};
pub use signature::*;

/// The trial gate of `REQUIRE_VERIFIED_FOR` (API-NEXT.md N3): a checkout that
/// would carry a trial needs a verified email (admins are exempt).
pub(crate) async fn require_verified_for_trial(ctx: &Context, user_id: Uuid) -> Result<()> {
    crate::verification::ensure_verified_for(ctx, user_id, crate::verification::action::TRIAL).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config() -> Config {
        let mut m = HashMap::new();
        m.insert(
            "FRONTEND_URL".to_string(),
            "https://app.example.com".to_string(),
        );
        m.insert("ADVANCED_PRICE_ID".to_string(), "price_adv".to_string());
        m.insert("PERFORMER_PRICE_ID".to_string(), "price_perf".to_string());
        Config::from_map(&m).unwrap()
    }

    #[test]
    fn known_signature_vector() {
        // printf '%s' '1700000000.{"id":"evt_1"}' | openssl dgst -sha256 -hmac whsec_test
        let sig = sign_webhook("whsec_test", 1_700_000_000, br#"{"id":"evt_1"}"#);
        assert_eq!(
            sig,
            "c89214b5b5da833daed6f0b8c5bb6bd58cea9022bd80ccc78230f3942d632925"
        );
    }

    #[test]
    fn signatures_are_checked() {
        let body = br#"{"id":"evt_1"}"#;
        let now = 1_700_000_000;
        let header = signature_header("whsec_test", now, body);
        assert!(verify_signature("whsec_test", &header, body, now + 10, 300).is_ok());
        // Several v1 entries (secret rotation): any match passes.
        let rotated = format!(
            "t={now},v1=00ff,v1={}",
            sign_webhook("whsec_test", now, body)
        );
        assert!(verify_signature("whsec_test", &rotated, body, now, 300).is_ok());
        assert!(verify_signature("other", &header, body, now, 300).is_err());
        assert!(verify_signature("whsec_test", &header, b"{}", now, 300).is_err());
        let old = verify_signature("whsec_test", &header, body, now + 301, 300).unwrap_err();
        assert_eq!(old, "Timestamp outside the tolerance zone");
        assert!(verify_signature("whsec_test", "garbage", body, now, 300).is_err());
        assert!(verify_signature("whsec_test", &format!("t={now}"), body, now, 300).is_err());
        assert!(verify_signature("whsec_test", &format!("t={now},v1=zz"), body, now, 300).is_err());
    }

    #[test]
    fn prices_map_to_tiers() {
        let c = config();
        assert_eq!(tier_for_price(&c, "price_adv"), Some("advanced"));
        assert_eq!(tier_for_price(&c, "price_perf"), Some("performer"));
        assert_eq!(tier_for_price(&c, "price_other"), None);
        let by_lookup = serde_json::json!({"items":{"data":[{"price":{"id":"price_x","lookup_key":"performer"}}]}});
        assert_eq!(tier_of_subscription(&c, &by_lookup), "performer");
        let by_id = serde_json::json!({"items":{"data":[{"price":{"id":"price_adv","lookup_key":"performer"}}]}});
        assert_eq!(tier_of_subscription(&c, &by_id), "advanced");
        assert_eq!(tier_of_subscription(&c, &serde_json::json!({})), "rookie");
    }

    #[test]
    fn redirect_urls_must_be_under_the_frontend() {
        let c = config();
        assert!(under_frontend(&c, "https://app.example.com/success?x=1"));
        assert!(under_frontend(&c, "https://app.example.com"));
        assert!(!under_frontend(&c, "https://app.example.com.evil.io/x"));
        assert!(!under_frontend(
            &c,
            "https://evil.io/https://app.example.com"
        ));
    }

    #[test]
    fn period_end_reads_both_api_versions() {
        let old = serde_json::json!({"current_period_end": 1_800_000_000});
        let new = serde_json::json!({"items":{"data":[{"current_period_end": 1_800_000_000}]}});
        assert_eq!(
            period_end_of_subscription(&old),
            period_end_of_subscription(&new)
        );
        assert!(period_end_of_subscription(&old).is_some());
    }
}
