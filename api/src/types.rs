//! Small helpers shared by the handlers.

use chrono::{DateTime, SecondsFormat, Utc};

/// RFC 3339 in UTC with `Z` (API.md §1.4).
pub fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub fn ts_opt(t: &Option<DateTime<Utc>>) -> Option<String> {
    t.as_ref().map(ts)
}

/// Parses a path id; a malformed one is the endpoint's own 404 (D28).
pub fn parse_id(raw: &str, not_found: &str) -> Result<uuid::Uuid, crate::error::ApiError> {
    uuid::Uuid::parse_str(raw.trim()).map_err(|_| crate::error::ApiError::msg(404, not_found))
}
