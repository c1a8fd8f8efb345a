//! Validation errors in FastAPI's shape: one 422 that lists every bad field.
//! Used by every module that validates a body (identity, sessions, profiles)
//! and by the HTTP layer; it imports no other module of the domain.

use crate::{Error, Result};
use serde_json::{Value, json};

/// Collects FastAPI-style validation errors, so one 422 lists every bad field.
#[derive(Debug, Default)]
pub struct Violations(Vec<Value>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    /// A custom validator's failure: `Value error, {msg}`.
    pub fn value_error(&mut self, loc: &[&str], msg: &str, input: Value) {
        self.0.push(json!({
            "type": "value_error",
            "loc": loc,
            "msg": format!("Value error, {msg}"),
            "input": input,
        }));
    }

    /// An invalid email, as pydantic's `EmailStr` reports it.
    pub fn bad_email(&mut self, loc: &[&str], input: &str) {
        let reason = if input.contains('@') {
            "The email address is not valid."
        } else {
            "An email address must have an @-sign."
        };
        self.0.push(json!({
            "type": "value_error",
            "loc": loc,
            "msg": format!("value is not a valid email address: {reason}"),
            "input": input,
            "ctx": {"reason": reason},
        }));
    }

    /// Any other pydantic error, already in its `{type, loc, msg, input}` shape.
    pub fn push(&mut self, error: Value) {
        self.0.push(error);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when nothing was collected, else the 422.
    pub fn into_result(self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::with_object(422, Value::Array(self.0)))
        }
    }
}
