//! The one error type of the domain. Every 4xx carries the contract's `detail`
//! (a string, an object, or a FastAPI-style validation list); everything else is
//! an internal error that the API logs and shows as `Internal Server Error`.

use serde_json::{Value, json};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A client error with the contract's status and `detail` body.
    #[error("{status}: {detail}")]
    Http {
        status: u16,
        detail: Value,
        retry_after: Option<u64>,
    },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn http(status: u16, detail: impl Into<String>) -> Self {
        Self::Http {
            status,
            detail: Value::String(detail.into()),
            retry_after: None,
        }
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::http(400, detail)
    }
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::http(401, detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::http(403, detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::http(404, detail)
    }
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::http(409, detail)
    }
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::http(422, detail)
    }
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::http(503, detail)
    }
    /// 503 for an optional external service that is not configured.
    pub fn not_configured(service: &str) -> Self {
        Self::http(503, format!("{service} is not configured"))
    }
    pub fn too_many(detail: impl Into<String>, retry_after: u64) -> Self {
        Self::Http {
            status: 429,
            detail: Value::String(detail.into()),
            retry_after: Some(retry_after),
        }
    }
    /// An error whose `detail` is an object (community writes, AI rate limit).
    pub fn with_object(status: u16, detail: Value) -> Self {
        Self::Http {
            status,
            detail,
            retry_after: None,
        }
    }
    /// A FastAPI-style 422 for one field: `{"detail":[{type, loc, msg, input}]}`.
    pub fn validation(loc: &[&str], msg: impl Into<String>, kind: &str, input: Value) -> Self {
        Self::with_object(
            422,
            json!([{ "type": kind, "loc": loc, "msg": msg.into(), "input": input }]),
        )
    }
    /// A FastAPI `value_error` (custom validator): message prefixed with `Value error, `.
    pub fn value_error(loc: &[&str], msg: &str, input: Value) -> Self {
        Self::validation(loc, format!("Value error, {msg}"), "value_error", input)
    }
    pub fn internal(msg: impl std::fmt::Display) -> Self {
        Self::Internal(anyhow::anyhow!("{msg}"))
    }

    pub fn status(&self) -> u16 {
        match self {
            Self::Http { status, .. } => *status,
            _ => 500,
        }
    }

    /// True for a unique-key violation (optionally of one named constraint).
    pub fn is_unique_violation(&self, constraint: Option<&str>) -> bool {
        match self {
            Self::Database(e) => is_unique_violation(e, constraint),
            _ => false,
        }
    }
}

/// True when a database error is a unique violation (of `constraint`, if given).
pub fn is_unique_violation(e: &sqlx::Error, constraint: Option<&str>) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.code().as_deref() == Some("23505")
                && constraint.is_none_or(|c| db.constraint() == Some(c))
        }
        _ => false,
    }
}

/// True when a CHECK constraint failed (e.g. a balance going below zero).
pub fn is_check_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23514"))
}
