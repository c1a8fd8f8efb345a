//! The admin course builder and back office (API.md §3.3, except submissions):
//! worlds, levels, lessons and skill-tree edges, the students list and stats.
//!
//! Every write is one statement or one transaction. Updates are single
//! `UPDATE`s that only touch the fields given (no read-modify-write), so two
//! admins editing the same lesson cannot corrupt each other's fields; ordering
//! is computed on read with deterministic tie-breaks. Deletes rely on the
//! schema's `ON DELETE CASCADE` (progress, submissions, comments, edges: D27).
//!
//! Every write also records its audit row (N4.5) in its transaction: the row
//! before (read `FOR UPDATE`) and after, by the acting admin.

use crate::audit::{self, Actor, Table, action, target};
use crate::courses::{
    self, LESSON_NOT_FOUND, LEVEL_NOT_FOUND, LessonItem, LessonScope, WORLD_NOT_FOUND,
};
use crate::error::is_unique_violation;
use crate::{Context, Error, Result, jobs, notifications};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

mod edges;
mod lessons;
mod levels;
mod students;
mod worlds;

pub use edges::*;
pub use lessons::*;
pub use levels::*;
pub use students::*;
pub use worlds::*;

pub const COURSE_NOT_FOUND: &str = "Course not found";
pub const EDGE_NOT_FOUND: &str = "Edge not found";
pub const LESSON_PLACEHOLDER_URL: &str = "https://example.com/video/placeholder";

/// A field of a partial update: leave it, or set it (to `None` for a nullable
/// column cleared by an explicit `null`).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Patch<T> {
    #[default]
    Keep,
    Set(T),
}

impl<T> Patch<T> {
    pub fn is_set(&self) -> bool {
        matches!(self, Patch::Set(_))
    }
}

impl<T: Clone> Patch<Option<T>> {
    /// `(set?, value)` for binding `CASE WHEN $set THEN $value ELSE col END`.
    fn bind_parts(&self) -> (bool, Option<T>) {
        match self {
            Patch::Keep => (false, None),
            Patch::Set(v) => (true, v.clone()),
        }
    }
}

// ---------------------------------------------------------------------------
// Validation (FastAPI-shaped 422s) and enumerations
// ---------------------------------------------------------------------------

fn non_empty(field: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::validation(
            &["body", field],
            "String should have at least 1 character",
            "string_too_short",
            json!(value),
        ));
    }
    Ok(())
}

fn non_negative(field: &str, value: Option<i32>) -> Result<()> {
    match value {
        Some(v) if v < 0 => Err(Error::validation(
            &["body", field],
            "Input should be greater than or equal to 0",
            "greater_than_equal",
            json!(v),
        )),
        _ => Ok(()),
    }
}

/// The largest distance from the origin of a level on the skill-tree canvas.
/// Far beyond any drawing, and small enough that every value survives a JSON
/// round trip exactly (the audit log stores rows as jsonb).
pub const MAX_POSITION: f64 = 1_000_000.0;

/// A skill-tree coordinate: finite and within ±[`MAX_POSITION`].
fn finite(field: &str, value: Option<f64>) -> Result<()> {
    match value {
        Some(v) if !v.is_finite() => Err(Error::validation(
            &["body", field],
            "Input should be a finite number",
            "finite_number",
            json!(null),
        )),
        Some(v) if v > MAX_POSITION => Err(Error::validation(
            &["body", field],
            "Input should be less than or equal to 1000000",
            "less_than_equal",
            json!(v),
        )),
        Some(v) if v < -MAX_POSITION => Err(Error::validation(
            &["body", field],
            "Input should be greater than or equal to -1000000",
            "greater_than_equal",
            json!(v),
        )),
        _ => Ok(()),
    }
}

fn max_len(field: &str, value: Option<&str>, max: usize) -> Result<()> {
    match value {
        Some(v) if v.chars().count() > max => Err(Error::validation(
            &["body", field],
            format!("String should have at most {max} characters"),
            "string_too_long",
            json!(v),
        )),
        _ => Ok(()),
    }
}

/// Difficulty, matched case-insensitively against the names; 400 otherwise.
pub fn parse_difficulty(raw: &str) -> Result<String> {
    match raw.trim().to_ascii_uppercase().as_str() {
        "BEGINNER" => Ok("Beginner".into()),
        "INTERMEDIATE" => Ok("Intermediate".into()),
        "ADVANCED" => Ok("Advanced".into()),
        "OPEN" => Ok("Open".into()),
        _ => Err(Error::bad_request(format!("Invalid difficulty: {raw}"))),
    }
}

fn parse_enum(field: &str, raw: Option<&str>, allowed: &[&str]) -> Result<Option<String>> {
    let Some(raw) = raw else { return Ok(None) };
    let v = raw.trim().to_ascii_lowercase();
    if v.is_empty() {
        return Ok(None);
    }
    if allowed.contains(&v.as_str()) {
        return Ok(Some(v));
    }
    let list = allowed.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>();
    let (last, init) = list.split_last().expect("non-empty");
    Err(Error::validation(
        &["body", field],
        format!("Input should be {} or {last}", init.join(", ")),
        "enum",
        json!(raw),
    ))
}

/// `course`/`choreo`/`topic`, case-insensitive; empty means "not given".
pub fn parse_course_type(raw: Option<&str>) -> Result<Option<String>> {
    parse_enum("course_type", raw, &["course", "choreo", "topic"])
}

/// `video`/`quiz`/`history`, case-insensitive; empty means "not given".
pub fn parse_lesson_type(raw: Option<&str>) -> Result<Option<String>> {
    parse_enum("lesson_type", raw, &["video", "quiz", "history"])
}

/// `content_json` must be a JSON object; a `blocks` key must hold objects and
/// a quiz block's `questions` must be a list of objects.
pub fn validate_content_json(v: &Value) -> Result<()> {
    let bad = |msg: &str| {
        Err(Error::validation(
            &["body", "content_json"],
            msg.to_string(),
            "model_type",
            v.clone(),
        ))
    };
    let Value::Object(map) = v else {
        return bad("Input should be a valid dictionary");
    };
    if let Some(blocks) = map.get("blocks") {
        let Value::Array(blocks) = blocks else {
            return bad("blocks should be a list of objects");
        };
        for b in blocks {
            let Value::Object(b) = b else {
                return bad("blocks should be a list of objects");
            };
            if let Some(q) = b.get("questions") {
                let ok = q
                    .as_array()
                    .is_some_and(|qs| qs.iter().all(Value::is_object));
                if !ok {
                    return bad("questions should be a list of objects");
                }
            }
        }
    }
    Ok(())
}

fn map_slug_conflict(e: sqlx::Error, msg: &str) -> Error {
    if is_unique_violation(&e, Some("worlds_slug_key")) {
        Error::bad_request(msg)
    } else {
        Error::Database(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_escaping() {
        assert_eq!(escape_like(r"a%b_c\d"), r"a\%b\_c\\d");
    }

    #[test]
    fn enums() {
        assert_eq!(parse_difficulty("beginner").unwrap(), "Beginner");
        assert_eq!(parse_difficulty("OPEN").unwrap(), "Open");
        assert_eq!(parse_difficulty("x").unwrap_err().status(), 400);
        assert_eq!(
            parse_course_type(Some("Choreo")).unwrap().as_deref(),
            Some("choreo")
        );
        assert_eq!(parse_course_type(Some("")).unwrap(), None);
        assert_eq!(parse_lesson_type(Some("dance")).unwrap_err().status(), 422);
    }

    #[test]
    fn content_json_rules() {
        assert!(validate_content_json(&json!({"blocks": [{"type": "text"}]})).is_ok());
        assert!(validate_content_json(&json!([1])).is_err());
        assert!(validate_content_json(&json!({"blocks": "x"})).is_err());
        assert!(
            validate_content_json(&json!({"blocks": [{"type": "quiz", "questions": [1]}]}))
                .is_err()
        );
    }
}
