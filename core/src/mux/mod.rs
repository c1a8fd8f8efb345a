//! Videos on Mux (API.md §3.6, §4.14; defects D5–D9, D15, D36).
//!
//! - A small reqwest client for the Mux Video API (basic auth with
//!   `MUX_TOKEN_ID`/`MUX_TOKEN_SECRET`, base URL from `MUX_BASE_URL`, a timeout on
//!   every call): direct uploads, assets.
//! - Direct uploads for lessons, course previews, level previews, community posts
//!   and replies, with the metadata and passthrough of §4.14; each upload is
//!   recorded in `mux_uploads` so it can be reconciled without a webhook.
//! - The signed webhook: hex HMAC-SHA256 over `"{t}.{body}"`, constant time,
//!   300 s tolerance, several `v1` values; every event id is processed once
//!   (`processed_webhook_events`), and the effects are idempotent anyway.
//! - Attaching and clearing asset ids on every table that holds them.

use crate::access::PRO_SQL;
use crate::audit;
use crate::economy::Amounts;
use crate::jobs::{self, BadgeCheckJob, MuxSyncAction, MuxSyncJob};
use crate::{Context, Error, Result};
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;
use sqlx::PgConnection;
use std::time::Duration;
use uuid::Uuid;

mod assets;
mod client;
mod manage;
mod status;
mod sync;
mod targets;
mod upload;
mod webhook;

pub use assets::*;
pub use client::*;
pub use manage::*;
pub use status::*;
pub use sync::*;
pub use targets::*;
pub use upload::*;
pub use webhook::*;

/// Longest time one call to the Mux API may take.
const MUX_TIMEOUT: Duration = Duration::from_secs(15);
/// How far a webhook timestamp may be from our clock.
pub const WEBHOOK_TOLERANCE_SECS: i64 = 300;
/// How many recent assets `check-upload-status` scans.
const LIST_LIMIT: u32 = 50;
/// An upload still pending after this long is reconciled by the `mux_sync` job.
const RECONCILE_AFTER: chrono::Duration = chrono::Duration::minutes(5);
/// Uploads older than this are no longer reconciled (Mux expires them long before).
const RECONCILE_UNTIL: chrono::Duration = chrono::Duration::days(2);
/// Uploads reconciled per run.
const RECONCILE_BATCH: i64 = 100;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hex_hmac_over_t_dot_body() {
        let body = br#"{"type":"video.asset.ready"}"#;
        let header = sign("whsec", 1_700_000_000, body);
        assert!(verify_signature("whsec", Some(&header), body, 1_700_000_000).is_ok());
        // Within the window either way.
        assert!(verify_signature("whsec", Some(&header), body, 1_700_000_300).is_ok());
        assert!(verify_signature("whsec", Some(&header), body, 1_699_999_700).is_ok());
        let msg = |r: Result<()>| r.unwrap_err().to_string();
        assert!(
            msg(verify_signature(
                "whsec",
                Some(&header),
                body,
                1_700_000_301
            ))
            .contains("Invalid webhook signature")
        );
        assert!(
            msg(verify_signature(
                "other",
                Some(&header),
                body,
                1_700_000_000
            ))
            .contains("Invalid webhook signature")
        );
        assert!(
            msg(verify_signature(
                "whsec",
                Some(&header),
                b"{}",
                1_700_000_000
            ))
            .contains("Invalid webhook signature")
        );
        assert!(
            msg(verify_signature("whsec", None, body, 0)).contains("Missing webhook signature")
        );
        assert!(
            msg(verify_signature("whsec", Some("t=1"), body, 1))
                .contains("Invalid webhook signature format")
        );
        assert!(
            msg(verify_signature("whsec", Some("v1=ab"), body, 1))
                .contains("Invalid webhook signature format")
        );
        assert!(
            msg(verify_signature("whsec", Some("t=x,v1=ab"), body, 1))
                .contains("Invalid webhook signature format")
        );
        assert!(
            msg(verify_signature("whsec", Some("garbage"), body, 1))
                .contains("Signature verification failed")
        );
        // Several v1 values: any one may match (secret rotation).
        let good = header.split("v1=").nth(1).unwrap();
        let multi = format!("t=1700000000,v1={},v1={good}", "00".repeat(32));
        assert!(verify_signature("whsec", Some(&multi), body, 1_700_000_000).is_ok());
        // Upper-case hex is accepted too.
        let upper = format!("t=1700000000,v1={}", good.to_uppercase());
        assert!(verify_signature("whsec", Some(&upper), body, 1_700_000_000).is_ok());
    }

    #[test]
    fn passthrough_routes_by_type_then_key() {
        let level = Uuid::new_v4();
        let course = Uuid::new_v4();
        let p = parse_passthrough(&json!(json!({
            "level_id": level.to_string(), "type": "level-preview", "course_id": course.to_string()
        })
        .to_string()))
        .unwrap();
        assert_eq!(target_from_passthrough(&p), Some(Target::Level(level)));
        let p = parse_passthrough(&json!({"course_id": course.to_string()})).unwrap();
        assert_eq!(target_from_passthrough(&p), Some(Target::Course(course)));
        assert!(passthrough_matches(&p, Target::Course(course)));
        let lp = parse_passthrough(&json!({
            "level_id": level.to_string(), "type": "level-preview", "course_id": course.to_string()
        }))
        .unwrap();
        assert!(!passthrough_matches(&lp, Target::Course(course)));
        assert!(parse_passthrough(&json!("not json")).is_none());
        assert!(
            target_from_passthrough(&parse_passthrough(&json!({"lesson_id": "x"})).unwrap())
                .is_none()
        );
    }

    #[test]
    fn external_ids_leave_out_falsy_parts() {
        assert_eq!(
            lesson_external_id("mambo-101", Some(1), Some(2), 3),
            "lesson-mambo-101-w1-d2-l3"
        );
        assert_eq!(lesson_external_id("m", None, Some(0), 0), "lesson-m");
        assert_eq!(
            level_external_id("m", "The Very First Level Of This Long Course"),
            "level-preview-m-the-very-first-level-of-this-l"
        );
    }

    #[test]
    fn upload_bodies() {
        let labels = AssetLabels::new("e".into(), "t".into(), "lesson", json!({"lesson_id": "1"}));
        let b = direct_upload_body("http://front", false, &labels);
        assert_eq!(b["cors_origin"], "http://front");
        let s = &b["new_asset_settings"];
        assert_eq!(s["playback_policies"], json!(["public"]));
        assert_eq!(s["test"], json!(false));
        assert_eq!(s["mp4_support"], "capped-1080p");
        assert!(s.get("max_resolution_tier").is_none());
        assert_eq!(s["passthrough"], json!(r#"{"lesson_id":"1"}"#));
        assert_eq!(
            s["meta"],
            json!({"title": "t", "creator_id": "lesson", "external_id": "e"})
        );
        let b = direct_upload_body("http://front", true, &AssetLabels::default());
        assert_eq!(b["new_asset_settings"]["max_resolution_tier"], "1080p");
        assert!(b["new_asset_settings"].get("mp4_support").is_none());
        assert!(b["new_asset_settings"].get("meta").is_none());
    }

    #[test]
    fn cleared_messages() {
        assert_eq!(Cleared::default().describe(), "database");
        let c = Cleared {
            lessons: 1,
            posts: 2,
            ..Default::default()
        };
        assert_eq!(c.describe(), "1 lesson(s), 2 post(s)");
        assert_eq!(c.total(), 3);
    }
}
