//! FastAPI-compatible error responses (API.md §1.3).
//!
//! Handlers return `ApiResult<T>`; every error case is declared in the spec by
//! [`ApiError`]. Errors raised before a handler runs (unknown route, bad JSON,
//! bad parameters, body too large) are turned into the same bodies by
//! [`catch_all`].

use mambo_core::Error as CoreError;
use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};
use serde_json::{Value, json};

/// `{"detail": ...}`: a message, an object, or a list of validation errors.
#[derive(Object, Debug, Clone)]
pub struct ErrorBody {
    pub detail: Value,
}

#[derive(ApiResponse, Debug)]
pub enum ApiError {
    /// Bad request
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Not authenticated
    #[oai(status = 401)]
    Unauthorized(
        Json<ErrorBody>,
        #[oai(header = "WWW-Authenticate")] Option<String>,
    ),
    /// Not allowed
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// Not found
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// Conflict
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// Validation error
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// Too many requests
    #[oai(status = 429)]
    TooManyRequests(
        Json<ErrorBody>,
        #[oai(header = "Retry-After")] Option<String>,
    ),
    /// Internal error
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// An upstream service (Stripe, Gemini, ...) failed or timed out
    #[oai(status = 502)]
    BadGateway(Json<ErrorBody>),
    /// Service unavailable or not configured
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

pub type ApiResult<T> = Result<T, ApiError>;

fn body(detail: Value) -> Json<ErrorBody> {
    Json(ErrorBody { detail })
}

impl ApiError {
    pub fn status_detail(status: u16, detail: Value, retry_after: Option<u64>) -> Self {
        match status {
            400 => Self::BadRequest(body(detail)),
            401 => Self::Unauthorized(body(detail), Some("Bearer".into())),
            403 => Self::Forbidden(body(detail)),
            404 => Self::NotFound(body(detail)),
            409 => Self::Conflict(body(detail)),
            422 => Self::Unprocessable(body(detail)),
            429 => Self::TooManyRequests(body(detail), retry_after.map(|s| s.to_string())),
            502 => Self::BadGateway(body(detail)),
            503 => Self::Unavailable(body(detail)),
            s if (400..500).contains(&s) => Self::BadRequest(body(detail)),
            _ => Self::Internal(body(detail)),
        }
    }

    pub fn msg(status: u16, detail: &str) -> Self {
        Self::status_detail(status, Value::String(detail.to_string()), None)
    }

    pub fn internal() -> Self {
        Self::Internal(body(json!("Internal Server Error")))
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Http {
                status,
                detail,
                retry_after,
            } => Self::status_detail(status, detail, retry_after),
            // A NUL byte (or another character PostgreSQL text cannot hold)
            // in a parameter: the client's input, not a server fault.
            CoreError::Database(sqlx::Error::Database(db))
                if matches!(db.code().as_deref(), Some("22021") | Some("22P05")) =>
            {
                Self::msg(400, "Invalid characters in request")
            }
            other => {
                tracing::error!(error = %other, "internal error");
                Self::internal()
            }
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        CoreError::from(e).into()
    }
}

/// A JSON error response outside the typed handlers.
pub fn json_error(status: StatusCode, detail: Value) -> Response {
    let mut resp = poem::web::Json(json!({ "detail": detail })).into_response();
    resp.set_status(status);
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert("www-authenticate", "Bearer".parse().expect("static header"));
    }
    resp
}

/// Turns every error that reached the outside into the contract's body.
pub async fn catch_all(err: poem::Error) -> Response {
    use poem_openapi::error::{
        AuthorizationError, ContentTypeError, ParseParamError, ParsePathError,
        ParseRequestPayloadError,
    };
    if let Some(e) = err.downcast_ref::<ParseRequestPayloadError>() {
        return json_error(StatusCode::UNPROCESSABLE_ENTITY, payload_errors(&e.reason));
    }
    if let Some(e) = err.downcast_ref::<ParseParamError>() {
        return json_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            param_error("query", e.name, &e.reason),
        );
    }
    if let Some(e) = err.downcast_ref::<ParsePathError>() {
        return json_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            param_error("path", e.name, &e.reason),
        );
    }
    if let Some(e) = err.downcast_ref::<ContentTypeError>() {
        // FastAPI parses a body with the wrong content type as a missing/invalid body.
        return json_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!([{ "type": "model_attributes_type", "loc": ["body"], "msg": "Input should be a valid dictionary or object to extract fields from", "input": e.to_string() }]),
        );
    }
    if err.downcast_ref::<AuthorizationError>().is_some() {
        return json_error(
            StatusCode::UNAUTHORIZED,
            json!("Could not validate credentials"),
        );
    }
    // Typed errors (`ApiError`, security schemes) already are the response.
    if err.is_from_response() {
        return err.into_response();
    }
    let status = err.status();
    let detail = match status {
        StatusCode::NOT_FOUND => json!("Not Found"),
        StatusCode::METHOD_NOT_ALLOWED => json!("Method Not Allowed"),
        StatusCode::PAYLOAD_TOO_LARGE => json!("Request body too large"),
        StatusCode::INTERNAL_SERVER_ERROR => {
            tracing::error!(error = %err, "unhandled error");
            json!("Internal Server Error")
        }
        s if s.is_server_error() => {
            tracing::error!(error = %err, "server error");
            json!(s.canonical_reason().unwrap_or("Error"))
        }
        _ => {
            // Our own typed errors already carry a body; keep it.
            if err.has_source() {
                return err.into_response();
            }
            json!(err.to_string())
        }
    };
    json_error(status, detail)
}

fn param_error(place: &str, name: &str, reason: &str) -> Value {
    let (kind, msg) = if reason.contains("required") || reason.contains("missing") {
        ("missing", "Field required".to_string())
    } else {
        ("value_error", reason.to_string())
    };
    json!([{ "type": kind, "loc": [place, name], "msg": msg, "input": Value::Null }])
}

/// Best effort translation of a poem-openapi body parse failure into FastAPI's list.
pub fn payload_errors(reason: &str) -> Value {
    // poem-openapi reports e.g. `failed to parse "LoginRequest": field `email`: ...`
    // or serde's `missing field `email``.
    let field = extract_between(reason, "field `", "`");
    let missing = reason.contains("missing") || reason.contains("required");
    match field {
        Some(f) if missing => {
            json!([{ "type": "missing", "loc": ["body", f], "msg": "Field required", "input": Value::Null }])
        }
        Some(f) => {
            json!([{ "type": "value_error", "loc": ["body", f], "msg": clean_reason(reason), "input": Value::Null }])
        }
        None if reason.contains("EOF")
            || reason.contains("expected")
            || reason.contains("JSON")
            || reason.contains("json") =>
        {
            json!([{ "type": "json_invalid", "loc": ["body", 0], "msg": "JSON decode error", "input": Value::Null, "ctx": {"error": reason} }])
        }
        None => {
            json!([{ "type": "value_error", "loc": ["body"], "msg": clean_reason(reason), "input": Value::Null }])
        }
    }
}

fn clean_reason(reason: &str) -> String {
    reason.to_string()
}

fn extract_between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = s.find(start)? + start.len();
    let j = s[i..].find(end)? + i;
    Some(&s[i..j])
}

/// What replaces a secret in an error body.
pub const REDACTED: &str = "[redacted]";

/// True for a field named like a password or a token (`password`,
/// `new_password`, `confirm_password`, `current_password`, `token`,
/// `refresh_token`, `client_secret`, ...): its value never appears in an
/// error body.
pub fn is_secret_field(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("password") || n.contains("secret") || n == "token" || n.ends_with("_token")
}

/// Removes secrets from an error `detail`, keeping FastAPI's shape:
/// - in a validation list, the `input` of an entry whose `loc` names a secret
///   field becomes `"[redacted]"`;
/// - inside any `input` or `ctx` object (e.g. the whole body of a `missing`
///   error), and in an object `detail`, the values of secret keys become
///   `"[redacted]"`;
/// - any other `msg`, `input` or `ctx` text that contains one of `known` (the
///   request's own secret values, at least 4 characters long) has it
///   replaced (a parser's message may quote the value).
///
/// Returns true when something changed.
pub fn redact_detail(detail: &mut Value, known: &[String]) -> bool {
    let known: Vec<&str> = known
        .iter()
        .map(String::as_str)
        .filter(|s| s.chars().count() >= 4)
        .collect();
    let mut changed = false;
    match detail {
        Value::Array(items) => {
            for item in items {
                let Some(obj) = item.as_object_mut() else {
                    continue;
                };
                let secret_loc = obj
                    .get("loc")
                    .and_then(Value::as_array)
                    .is_some_and(|loc| loc.iter().filter_map(Value::as_str).any(is_secret_field));
                // A `missing` error's input is the object that lacks the
                // field: only its secret keys are hidden.
                let missing = obj.get("type").and_then(Value::as_str) == Some("missing");
                if let Some(input) = obj.get_mut("input") {
                    if secret_loc && !missing {
                        if input != &json!(REDACTED) && !input.is_null() {
                            *input = json!(REDACTED);
                            changed = true;
                        }
                    } else {
                        changed |= redact_keys(input);
                    }
                }
                if let Some(ctx) = obj.get_mut("ctx") {
                    changed |= redact_keys(ctx);
                }
                for field in ["msg", "input", "ctx"] {
                    if let Some(v) = obj.get_mut(field) {
                        changed |= scrub(v, &known);
                    }
                }
            }
        }
        Value::Object(_) => {
            changed |= redact_keys(detail);
            changed |= scrub(detail, &known);
        }
        _ => {}
    }
    changed
}

/// Replaces the values of secret keys, at any depth.
fn redact_keys(v: &mut Value) -> bool {
    let mut changed = false;
    match v {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if is_secret_field(k) {
                    if !v.is_null() && v != &json!(REDACTED) {
                        *v = json!(REDACTED);
                        changed = true;
                    }
                } else {
                    changed |= redact_keys(v);
                }
            }
        }
        Value::Array(items) => {
            for i in items {
                changed |= redact_keys(i);
            }
        }
        _ => {}
    }
    changed
}

/// Replaces every occurrence of a known secret value in the strings of `v`.
fn scrub(v: &mut Value, known: &[&str]) -> bool {
    if known.is_empty() {
        return false;
    }
    match v {
        Value::String(s) => {
            let mut changed = false;
            for k in known {
                if s.contains(k) {
                    *s = s.replace(k, REDACTED);
                    changed = true;
                }
            }
            changed
        }
        Value::Array(items) => items.iter_mut().fold(false, |c, i| scrub(i, known) | c),
        Value::Object(map) => map.values_mut().fold(false, |c, i| scrub(i, known) | c),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_inputs_are_redacted_and_the_shape_kept() {
        let mut d = json!([
            {"type": "value_error", "loc": ["body", "password"], "msg": "Value error, short", "input": "abc"},
            {"type": "missing", "loc": ["body", "email"], "msg": "Field required",
             "input": {"username": "u", "password": "p4ss", "nested": [{"refresh_token": "r"}]}},
            {"type": "missing", "loc": ["body", "token"], "msg": "Field required", "input": {"new_password": "n"}},
            {"type": "value_error", "loc": ["body"], "msg": "Expected a string, found [\"hunter22\"]", "input": 3},
            {"type": "string_type", "loc": ["body", "username"], "msg": "m", "input": "kept"}
        ]);
        assert!(redact_detail(&mut d, &["hunter22".into(), "ab".into()]));
        assert_eq!(
            d,
            json!([
                {"type": "value_error", "loc": ["body", "password"], "msg": "Value error, short", "input": "[redacted]"},
                {"type": "missing", "loc": ["body", "email"], "msg": "Field required",
                 "input": {"username": "u", "password": "[redacted]", "nested": [{"refresh_token": "[redacted]"}]}},
                {"type": "missing", "loc": ["body", "token"], "msg": "Field required", "input": {"new_password": "[redacted]"}},
                {"type": "value_error", "loc": ["body"], "msg": "Expected a string, found [\"[redacted]\"]", "input": 3},
                {"type": "string_type", "loc": ["body", "username"], "msg": "m", "input": "kept"}
            ])
        );
        let mut plain = json!("Could not validate credentials");
        assert!(!redact_detail(&mut plain, &["validate".into()]));
    }

    #[test]
    fn secret_field_names() {
        for n in [
            "password",
            "new_password",
            "confirm_password",
            "current_password",
            "token",
            "refresh_token",
            "client_secret",
        ] {
            assert!(is_secret_field(n), "{n}");
        }
        for n in ["email", "username", "token_type", "body", "post_id"] {
            assert!(!is_secret_field(n), "{n}");
        }
    }
}
