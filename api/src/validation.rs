//! FastAPI-style 422 lists for request bodies that poem-openapi refused.
//!
//! poem-openapi reports a body parse failure as one string without the field
//! name. FastAPI clients (and the frontend) expect a list of `{type, loc, msg,
//! input}` per field, so the failure is re-explained here from the operation's
//! own schema in the OpenAPI document.

use serde_json::{Map, Value, json};
use std::sync::OnceLock;

fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| serde_json::from_str(&crate::spec_json()).unwrap_or(Value::Null))
}

/// Finds the request body schema of `method path` in the spec.
fn body_schema(method: &str, path: &str) -> Option<&'static Value> {
    let paths = spec().get("paths")?.as_object()?;
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let op = paths.iter().find_map(|(tpl, item)| {
        let t: Vec<&str> = tpl.trim_end_matches('/').split('/').collect();
        let matches = t.len() == segs.len()
            && t.iter()
                .zip(&segs)
                .all(|(a, b)| a == b || (a.starts_with('{') && a.ends_with('}')));
        if matches {
            item.get(method.to_ascii_lowercase())
        } else {
            None
        }
    })?;
    let content = op.get("requestBody")?.get("content")?.as_object()?;
    let media = content
        .get("application/json")
        .or_else(|| content.values().next())?;
    resolve(media.get("schema")?)
}

fn resolve(schema: &'static Value) -> Option<&'static Value> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next()?;
        return spec().get("components")?.get("schemas")?.get(name);
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array)
        && let Some(first) = all.first()
    {
        return resolve(first);
    }
    Some(schema)
}

/// The FastAPI `detail` list for a refused body.
pub fn explain(method: &str, path: &str, body: &[u8], reason: &str) -> Value {
    let value: Value = if body.iter().all(|b| b.is_ascii_whitespace()) {
        return json!([{"type": "missing", "loc": ["body"], "msg": "Field required", "input": Value::Null}]);
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                return json!([{
                    "type": "json_invalid",
                    "loc": ["body", e.column()],
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": e.to_string()}
                }]);
            }
        }
    };
    let mut errors = vec![];
    if let Some(schema) = body_schema(method, path) {
        check(schema, &value, &mut vec![json!("body")], &mut errors);
    }
    if errors.is_empty() {
        errors.push(json!({"type": "value_error", "loc": ["body"], "msg": reason, "input": value}));
    }
    Value::Array(errors)
}

fn err(errors: &mut Vec<Value>, kind: &str, loc: &[Value], msg: String, input: &Value) {
    errors.push(json!({"type": kind, "loc": loc, "msg": msg, "input": input}));
}

fn check(schema: &'static Value, value: &Value, loc: &mut Vec<Value>, errors: &mut Vec<Value>) {
    let Some(schema) = resolve(schema) else {
        return;
    };
    // Nullable / optional wrappers: `anyOf`/`oneOf` with null.
    if let Some(any) = schema
        .get("anyOf")
        .or_else(|| schema.get("oneOf"))
        .and_then(Value::as_array)
    {
        if value.is_null() {
            return;
        }
        if let Some(first) = any.iter().find(|s| s.get("type") != Some(&json!("null"))) {
            check(first, value, loc, errors);
        }
        return;
    }
    let ty = schema.get("type").and_then(Value::as_str).unwrap_or("");
    if value.is_null() && schema.get("nullable") == Some(&json!(true)) {
        return;
    }
    if let Some(variants) = schema.get("enum").and_then(Value::as_array) {
        if !variants.contains(value) {
            let names: Vec<String> = variants
                .iter()
                .map(|v| format!("'{}'", v.as_str().unwrap_or("")))
                .collect();
            let msg = match names.len() {
                0 => "Input should be a valid value".to_string(),
                1 => format!("Input should be {}", names[0]),
                n => format!(
                    "Input should be {} or {}",
                    names[..n - 1].join(", "),
                    names[n - 1]
                ),
            };
            err(errors, "enum", loc, msg, value);
        }
        return;
    }
    match ty {
        "object" => {
            let Some(obj) = value.as_object() else {
                let msg = if loc.len() == 1 {
                    "Input should be a valid dictionary or object to extract fields from"
                } else {
                    "Input should be a valid dictionary"
                };
                err(
                    errors,
                    if loc.len() == 1 {
                        "model_attributes_type"
                    } else {
                        "dict_type"
                    },
                    loc,
                    msg.into(),
                    value,
                );
                return;
            };
            static EMPTY: OnceLock<Map<String, Value>> = OnceLock::new();
            let props = schema
                .get("properties")
                .and_then(Value::as_object)
                .unwrap_or_else(|| EMPTY.get_or_init(Map::new));
            let required: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            // Required fields in their declared order (the spec's `required`
            // list keeps it), then the optional ones, as FastAPI reports them.
            let mut ordered: Vec<(&String, &Value)> = props.iter().collect();
            ordered.sort_by_key(|(name, _)| {
                required
                    .iter()
                    .position(|r| r == name)
                    .unwrap_or(usize::MAX)
            });
            for (name, prop) in ordered {
                loc.push(json!(name));
                match obj.get(name) {
                    None if required.contains(&name.as_str()) => err(
                        errors,
                        "missing",
                        loc,
                        "Field required".into(),
                        &Value::Object(obj.clone()),
                    ),
                    None => {}
                    Some(v) => check(prop, v, loc, errors),
                }
                loc.pop();
            }
        }
        "array" => {
            let Some(items) = value.as_array() else {
                err(
                    errors,
                    "list_type",
                    loc,
                    "Input should be a valid list".into(),
                    value,
                );
                return;
            };
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && (items.len() as u64) < min
            {
                err(
                    errors,
                    "too_short",
                    loc,
                    format!(
                        "List should have at least {min} item{} after validation, not {}",
                        if min == 1 { "" } else { "s" },
                        items.len()
                    ),
                    value,
                );
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && (items.len() as u64) > max
            {
                err(
                    errors,
                    "too_long",
                    loc,
                    format!(
                        "List should have at most {max} item{} after validation, not {}",
                        if max == 1 { "" } else { "s" },
                        items.len()
                    ),
                    value,
                );
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    loc.push(json!(i));
                    check(item_schema, v, loc, errors);
                    loc.pop();
                }
            }
        }
        "string" => match value.as_str() {
            None => err(
                errors,
                "string_type",
                loc,
                "Input should be a valid string".into(),
                value,
            ),
            Some(s) => {
                let n = s.chars().count() as u64;
                if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                    && n < min
                {
                    err(
                        errors,
                        "string_too_short",
                        loc,
                        format!(
                            "String should have at least {min} character{}",
                            if min == 1 { "" } else { "s" }
                        ),
                        value,
                    );
                }
                if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                    && n > max
                {
                    err(
                        errors,
                        "string_too_long",
                        loc,
                        format!(
                            "String should have at most {max} character{}",
                            if max == 1 { "" } else { "s" }
                        ),
                        value,
                    );
                }
                if schema.get("format").and_then(Value::as_str) == Some("uuid")
                    && uuid::Uuid::parse_str(s).is_err()
                {
                    err(
                        errors,
                        "uuid_parsing",
                        loc,
                        "Input should be a valid UUID".into(),
                        value,
                    );
                }
            }
        },
        "integer" => {
            if !(value.is_i64() || value.is_u64()) {
                err(
                    errors,
                    "int_type",
                    loc,
                    "Input should be a valid integer".into(),
                    value,
                );
            } else {
                range(schema, value, loc, errors);
            }
        }
        "number" => {
            if !value.is_number() {
                err(
                    errors,
                    "float_type",
                    loc,
                    "Input should be a valid number".into(),
                    value,
                );
            } else {
                range(schema, value, loc, errors);
            }
        }
        "boolean" if !value.is_boolean() => {
            err(
                errors,
                "bool_type",
                loc,
                "Input should be a valid boolean".into(),
                value,
            );
        }
        _ => {}
    }
}

fn range(schema: &Value, value: &Value, loc: &[Value], errors: &mut Vec<Value>) {
    let v = value.as_f64().unwrap_or(0.0);
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
        && v < min
    {
        err(
            errors,
            "greater_than_equal",
            loc,
            format!("Input should be greater than or equal to {min}"),
            value,
        );
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
        && v > max
    {
        err(
            errors,
            "less_than_equal",
            loc,
            format!("Input should be less than or equal to {max}"),
            value,
        );
    }
}
