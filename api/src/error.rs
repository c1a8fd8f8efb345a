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
