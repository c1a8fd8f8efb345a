//! First-touch attribution (API-2026-05.md N5.1): the optional `fbclid`,
//! `utm` and `landing_url` of registration and the waitlist, and the
//! `Referer` header, written once to `user_profiles.first_touch_*` when the
//! account is created. Never returned to the user; cleared by account
//! deletion ([`clear`], N3/N5.7).

use crate::violations::Violations;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

pub const FBCLID_MAX: usize = 255;
pub const LANDING_URL_MAX: usize = 500;
pub const UTM_MAX_KEYS: usize = 20;
pub const UTM_KEY_MAX: usize = 50;
pub const UTM_VALUE_MAX: usize = 200;
/// The stored `Referer` is cut to the column's size (a header, not a field
/// the client chose to send, so it is never a 422).
pub const REFERRER_MAX: usize = 1000;

/// The attribution fields of a body, as sent (checked by [`validate`]).
#[derive(Debug, Clone, Default)]
pub struct Attribution {
    /// A string, or `None` when absent or `null`.
    pub fbclid: Option<Value>,
    /// An object of string → string, or `None` when absent or `null`.
    pub utm: Option<Value>,
    pub landing_url: Option<Value>,
    /// The request's `Referer` header.
    pub referrer: Option<String>,
}

/// What [`record`] writes, once validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FirstTouch {
    pub fbclid: Option<String>,
    pub utm: Option<Value>,
    pub landing_url: Option<String>,
    pub referrer: Option<String>,
}

impl FirstTouch {
    pub fn is_empty(&self) -> bool {
        self.fbclid.is_none()
            && self.utm.is_none()
            && self.landing_url.is_none()
            && self.referrer.is_none()
    }
}

fn push(
    v: &mut Violations,
    loc: &[&str],
    kind: &str,
    msg: String,
    input: &Value,
    ctx: Option<Value>,
) {
    let mut e = json!({ "type": kind, "loc": loc, "msg": msg, "input": input });
    if let Some(c) = ctx {
        e["ctx"] = c;
    }
    v.push(e);
}

/// pydantic's `max_length` (in characters); PostgreSQL text holds no NUL.
/// True when `s` passes.
fn check_len(v: &mut Violations, loc: &[&str], s: &str, max: usize) -> bool {
    if s.chars().count() > max {
        push(
            v,
            loc,
            "string_too_long",
            format!("String should have at most {max} characters"),
            &json!(s),
            Some(json!({ "max_length": max })),
        );
        false
    } else if s.contains('\0') {
        push(
            v,
            loc,
            "value_error",
            "Value error, Text must not contain NUL characters".into(),
            &json!(s),
            Some(json!({ "error": {} })),
        );
        false
    } else {
        true
    }
}

fn string_type(v: &mut Violations, loc: &[&str], input: &Value) {
    push(
        v,
        loc,
        "string_type",
        "Input should be a valid string".into(),
        input,
        None,
    );
}

fn string_field(
    v: &mut Violations,
    field: &str,
    value: &Option<Value>,
    max: usize,
) -> Option<String> {
    match value {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => check_len(v, &["body", field], s, max).then(|| s.clone()),
        Some(other) => {
            string_type(v, &["body", field], other);
            None
        }
    }
}

/// The 422 checks of the attribution fields, added to `v` (pydantic's
/// messages: `string_type`, `string_too_long`, `dict_type`, `too_long`).
pub fn validate(v: &mut Violations, a: &Attribution) -> FirstTouch {
    let fbclid = string_field(v, "fbclid", &a.fbclid, FBCLID_MAX);
    let utm = match &a.utm {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => {
            if map.len() > UTM_MAX_KEYS {
                push(
                    v,
                    &["body", "utm"],
                    "too_long",
                    format!(
                        "Dictionary should have at most {UTM_MAX_KEYS} items after validation, not {}",
                        map.len()
                    ),
                    &Value::Object(map.clone()),
                    Some(
                        json!({"field_type": "Dictionary", "max_length": UTM_MAX_KEYS, "actual_length": map.len()}),
                    ),
                );
            }
            let mut out = Map::new();
            for (k, val) in map {
                check_len(v, &["body", "utm", k.as_str(), "[key]"], k, UTM_KEY_MAX);
                match val {
                    Value::String(s) => {
                        check_len(v, &["body", "utm", k.as_str()], s, UTM_VALUE_MAX);
                    }
                    other => string_type(v, &["body", "utm", k.as_str()], other),
                }
                out.insert(k.clone(), val.clone());
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Some(other) => {
            push(
                v,
                &["body", "utm"],
                "dict_type",
                "Input should be a valid dictionary".into(),
                other,
                None,
            );
            None
        }
    };
    let landing_url = string_field(v, "landing_url", &a.landing_url, LANDING_URL_MAX);
    let referrer = a
        .referrer
        .as_deref()
        .map(|r| r.trim().replace('\0', ""))
        .filter(|r| !r.is_empty())
        .map(|r| r.chars().take(REFERRER_MAX).collect());
    FirstTouch {
        fbclid: fbclid.filter(|s| !s.is_empty()),
        utm,
        landing_url: landing_url.filter(|s| !s.is_empty()),
        referrer,
    }
}

/// Writes the first touch of `user_id` in the caller's transaction (the one
/// that creates the account). First touch wins: a column already set is kept.
/// Nothing is written when there is nothing to record.
pub async fn record(
    conn: &mut PgConnection,
    user_id: Uuid,
    touch: &FirstTouch,
    at: DateTime<Utc>,
) -> crate::Result<()> {
    if touch.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE user_profiles SET
             first_touch_fbclid = COALESCE(first_touch_fbclid, $2),
             first_touch_utm = COALESCE(first_touch_utm, $3),
             first_touch_landing_url = COALESCE(first_touch_landing_url, $4),
             first_touch_referrer = COALESCE(first_touch_referrer, $5),
             first_touch_at = COALESCE(first_touch_at, $6)
         WHERE user_id = $1",
    )
    .bind(user_id)
    .bind(&touch.fbclid)
    .bind(&touch.utm)
    .bind(&touch.landing_url)
    .bind(&touch.referrer)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Account deletion's part (N3, N5.7): forgets every `first_touch_*` column.
pub async fn clear(conn: &mut PgConnection, user_id: Uuid) -> crate::Result<()> {
    sqlx::query(
        "UPDATE user_profiles SET first_touch_fbclid = NULL, first_touch_utm = NULL,
             first_touch_landing_url = NULL, first_touch_referrer = NULL, first_touch_at = NULL
         WHERE user_id = $1",
    )
    .bind(user_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(a: Attribution) -> (FirstTouch, Vec<Value>) {
        let mut v = Violations::new();
        let t = validate(&mut v, &a);
        let errors = match v.into_result() {
            Ok(()) => vec![],
            Err(crate::Error::Http { detail, .. }) => detail.as_array().unwrap().clone(),
            Err(e) => panic!("{e}"),
        };
        (t, errors)
    }

    #[test]
    fn valid_fields_are_kept_and_empty_ones_dropped() {
        let (t, errors) = check(Attribution {
            fbclid: Some(json!("IwAR0abc")),
            utm: Some(json!({"utm_source": "facebook", "utm_campaign": "spring"})),
            landing_url: Some(json!("")),
            referrer: Some(" https://l.facebook.com/ ".into()),
        });
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(t.fbclid.as_deref(), Some("IwAR0abc"));
        assert_eq!(
            t.utm,
            Some(json!({"utm_source": "facebook", "utm_campaign": "spring"}))
        );
        assert_eq!(t.landing_url, None);
        assert_eq!(t.referrer.as_deref(), Some("https://l.facebook.com/"));
        let (t, errors) = check(Attribution {
            utm: Some(json!({})),
            fbclid: Some(Value::Null),
            ..Default::default()
        });
        assert!(errors.is_empty());
        assert!(t.is_empty());
    }

    #[test]
    fn wrong_types_and_lengths_are_listed() {
        let many: Map<String, Value> = (0..21).map(|i| (format!("k{i}"), json!("v"))).collect();
        let (_, errors) = check(Attribution {
            fbclid: Some(json!("x".repeat(256))),
            utm: Some(Value::Object(many)),
            landing_url: Some(json!(5)),
            referrer: None,
        });
        let locs: Vec<&Value> = errors.iter().map(|e| &e["loc"]).collect();
        assert_eq!(
            locs,
            [
                &json!(["body", "fbclid"]),
                &json!(["body", "utm"]),
                &json!(["body", "landing_url"])
            ]
        );
        assert_eq!(errors[0]["type"], "string_too_long");
        assert_eq!(
            errors[0]["msg"],
            "String should have at most 255 characters"
        );
        assert_eq!(errors[1]["type"], "too_long");
        assert_eq!(errors[2]["type"], "string_type");

        let (_, errors) = check(Attribution {
            utm: Some(json!({"utm_source": 1, "k".repeat(51): "v", "utm_term": "t".repeat(201)})),
            ..Default::default()
        });
        let locs: Vec<Value> = errors.iter().map(|e| e["loc"].clone()).collect();
        assert!(
            locs.contains(&json!(["body", "utm", "utm_source"])),
            "{locs:?}"
        );
        assert!(
            locs.contains(&json!(["body", "utm", "k".repeat(51), "[key]"])),
            "{locs:?}"
        );
        assert!(
            locs.contains(&json!(["body", "utm", "utm_term"])),
            "{locs:?}"
        );
        let (_, errors) = check(Attribution {
            utm: Some(json!(["a"])),
            ..Default::default()
        });
        assert_eq!(errors[0]["type"], "dict_type");
    }
}
