//! Inputs' schema-level validation: FastAPI/pydantic-style 422 lists.

use crate::{Error, Result};
use serde_json::{Value, json};

/// A body field that may be absent, explicitly null, or a value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Field<T> {
    #[default]
    Absent,
    Null,
    Value(T),
}

impl<T> Field<T> {
    pub fn value(&self) -> Option<&T> {
        match self {
            Self::Value(v) => Some(v),
            _ => None,
        }
    }
    pub fn into_option(self) -> Option<T> {
        match self {
            Self::Value(v) => Some(v),
            _ => None,
        }
    }
}

/// Collects FastAPI/pydantic-style validation errors in field order.
#[derive(Debug, Default)]
pub struct Validation {
    errors: Vec<Value>,
}

impl Validation {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(
        &mut self,
        loc: &[&str],
        kind: &str,
        msg: String,
        input: Value,
        ctx: Option<Value>,
    ) {
        let mut e = json!({ "type": kind, "loc": loc, "msg": msg, "input": input });
        if let Some(c) = ctx {
            e["ctx"] = c;
        }
        self.errors.push(e);
    }

    /// `min_length`/`max_length` of a string, counted in characters.
    pub fn string_len(&mut self, loc: &[&str], s: &str, min: usize, max: usize) {
        let n = s.chars().count();
        if n < min {
            let unit = if min == 1 { "character" } else { "characters" };
            self.push(
                loc,
                "string_too_short",
                format!("String should have at least {min} {unit}"),
                json!(s),
                Some(json!({ "min_length": min })),
            );
        } else if n > max {
            let unit = if max == 1 { "character" } else { "characters" };
            self.push(
                loc,
                "string_too_long",
                format!("String should have at most {max} {unit}"),
                json!(s),
                Some(json!({ "max_length": max })),
            );
        }
        self.no_nul(loc, s);
    }

    /// PostgreSQL text cannot hold NUL characters.
    pub fn no_nul(&mut self, loc: &[&str], s: &str) {
        if s.contains('\0') {
            self.push(
                loc,
                "value_error",
                "Value error, Text must not contain NUL characters".into(),
                json!(s),
                Some(json!({ "error": {} })),
            );
        }
    }

    pub fn list_len(&mut self, loc: &[&str], items: &[String], min: usize, max: usize) {
        let n = items.len();
        if n < min {
            let unit = if min == 1 { "item" } else { "items" };
            self.push(
                loc,
                "too_short",
                format!("List should have at least {min} {unit} after validation, not {n}"),
                json!(items),
                Some(json!({ "field_type": "List", "min_length": min, "actual_length": n })),
            );
        } else if n > max {
            let unit = if max == 1 { "item" } else { "items" };
            self.push(
                loc,
                "too_long",
                format!("List should have at most {max} {unit} after validation, not {n}"),
                json!(items),
                Some(json!({ "field_type": "List", "max_length": max, "actual_length": n })),
            );
        }
        for (i, t) in items.iter().enumerate() {
            let idx = i.to_string();
            let mut l: Vec<&str> = loc.to_vec();
            l.push(&idx);
            self.no_nul(&l, t);
        }
    }

    /// A `Literal[...]` field.
    pub fn literal(&mut self, loc: &[&str], value: &str, allowed: &[&str]) {
        if !allowed.contains(&value) {
            let expected = literal_expected(allowed);
            self.push(
                loc,
                "literal_error",
                format!("Input should be {expected}"),
                json!(value),
                Some(json!({ "expected": expected })),
            );
        }
    }

    pub fn optional_len(&mut self, loc: &[&str], s: &Option<String>, max: usize) {
        if let Some(s) = s {
            self.string_len(loc, s, 0, max);
        }
    }

    pub fn finish(self) -> Result<()> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(Error::with_object(422, Value::Array(self.errors)))
        }
    }
}

/// pydantic's wording: `'a' or 'b'`, `'a', 'b' or 'c'`.
pub(super) fn literal_expected(allowed: &[&str]) -> String {
    let quoted: Vec<String> = allowed.iter().map(|a| format!("'{a}'")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_wording() {
        assert_eq!(literal_expected(&["stage", "lab"]), "'stage' or 'lab'");
        assert_eq!(
            literal_expected(&["fire", "ruler", "clap"]),
            "'fire', 'ruler' or 'clap'"
        );
    }
}
