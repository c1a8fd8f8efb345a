//! Finishing touches on the OpenAPI document for client generators.
//!
//! poem-openapi leaves `operationId` out unless a handler names one
//! (`#[oai(operation_id = "...")]`). Generated clients need one per operation,
//! so [`complete`] derives a stable camelCase id from the method and path of
//! every operation that has none: `GET /api/courses/worlds/{world_id}/lessons`
//! → `getCoursesWorldsByWorldIdLessons`. A trailing slash variant gets `Slash`
//! appended; ids stay unique.

use serde_json::Value;
use std::collections::HashSet;

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Adds the missing `operationId`s to a JSON OpenAPI document (returned as
/// pretty JSON, like poem-openapi's own). An unparsable input is returned as is.
pub fn complete(spec: &str) -> String {
    let Ok(mut doc) = serde_json::from_str::<Value>(spec) else {
        return spec.to_string();
    };
    let mut taken: HashSet<String> = HashSet::new();
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        for item in paths.values() {
            for m in METHODS {
                if let Some(id) = item
                    .get(*m)
                    .and_then(|op| op.get("operationId"))
                    .and_then(Value::as_str)
                {
                    taken.insert(id.to_string());
                }
            }
        }
    }
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            for m in METHODS {
                let Some(op) = item.get_mut(*m).and_then(Value::as_object_mut) else {
                    continue;
                };
                if op.contains_key("operationId") {
                    continue;
                }
                let base = operation_id(m, path);
                let mut id = base.clone();
                let mut n = 2;
                while taken.contains(&id) {
                    id = format!("{base}{n}");
                    n += 1;
                }
                taken.insert(id.clone());
                op.insert("operationId".into(), Value::String(id));
            }
        }
    }
    mark_nullable(&mut doc);
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| spec.to_string())
}

/// One server-sent event: `data` is a JSON object (API.md §4.16).
fn sse_event_schema() -> Value {
    serde_json::json!({
        "type": "object",
        "description": "One server-sent event; `data` holds a JSON object such as {\"type\":\"text\",\"content\":\"...\",\"done\":false}",
        "required": ["data"],
        "properties": {
            "event": {"type": "string"},
            "data": {"type": "string"},
            "id": {"type": "string"},
            "retry": {"type": "integer"}
        }
    })
}

/// poem-openapi writes an `Option<T>` field as an optional property, but the
/// API sends `null` for it (API.md §1.1: nullable fields are always present)
/// and accepts `null` in requests. Every optional property of an object schema
/// is therefore marked `nullable` (a `$ref` is wrapped in `allOf` for that).
fn mark_nullable(doc: &mut Value) {
    fn walk(schema: &mut Value) {
        let Some(obj) = schema.as_object_mut() else {
            return;
        };
        let required: HashSet<String> = obj
            .get("required")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(props) = obj.get_mut("properties").and_then(Value::as_object_mut) {
            for (name, prop) in props.iter_mut() {
                walk(prop);
                if required.contains(name) {
                    continue;
                }
                if let Some(p) = prop.as_object_mut() {
                    if let Some(r) = p.remove("$ref") {
                        p.insert("allOf".into(), serde_json::json!([{ "$ref": r }]));
                    }
                    p.insert("nullable".into(), Value::Bool(true));
                }
            }
        }
        for key in ["items", "additionalProperties"] {
            if let Some(v) = obj.get_mut(key) {
                walk(v);
            }
        }
        for key in ["allOf", "anyOf", "oneOf"] {
            if let Some(list) = obj.get_mut(key).and_then(Value::as_array_mut) {
                list.iter_mut().for_each(walk);
            }
        }
    }
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        schemas.values_mut().for_each(walk);
    }
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for op in item.values_mut() {
                for (_, resp) in op
                    .get_mut("responses")
                    .and_then(Value::as_object_mut)
                    .into_iter()
                    .flatten()
                {
                    for (media_type, media) in resp
                        .get_mut("content")
                        .and_then(Value::as_object_mut)
                        .into_iter()
                        .flatten()
                    {
                        if media_type.starts_with("text/event-stream") {
                            // Before OpenAPI 3.2 the schema of an event stream
                            // describes one event (poem-openapi writes an array;
                            // a payload that describes its own events is kept).
                            if media["schema"]["format"] == "event-stream" {
                                media["schema"] = sse_event_schema();
                            }
                        } else if let Some(s) = media.get_mut("schema") {
                            walk(s);
                        }
                    }
                }
            }
        }
    }
}

/// `("get", "/api/users/public/{username}")` → `getUsersPublicByUsername`.
pub fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_ascii_lowercase();
    let trimmed = path.strip_prefix("/api").unwrap_or(path);
    let segments: Vec<&str> = trimmed.split('/').filter(|s| !s.is_empty()).collect();
    if segments.is_empty() {
        id.push_str("Root");
    }
    for seg in segments {
        if let Some(param) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            id.push_str("By");
            id.push_str(&camel(param));
        } else {
            id.push_str(&camel(seg));
        }
    }
    if path.len() > 1 && path.ends_with('/') {
        id.push_str("Slash");
    }
    id
}

/// `reset-password` / `ai_chat` / `worldId` → `ResetPassword` / `AiChat` / `WorldId`.
fn camel(s: &str) -> String {
    s.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_method_and_path() {
        assert_eq!(
            operation_id("get", "/api/courses/worlds/{world_id}/lessons"),
            "getCoursesWorldsByWorldIdLessons"
        );
        assert_eq!(
            operation_id("post", "/api/auth/reset-password"),
            "postAuthResetPassword"
        );
        assert_eq!(operation_id("get", "/api/badges/"), "getBadgesSlash");
        assert_eq!(operation_id("get", "/"), "getRoot");
        assert_eq!(operation_id("get", "/health"), "getHealth");
        assert_eq!(operation_id("post", "/api/ai_chat/chat"), "postAiChatChat");
    }

    #[test]
    fn keeps_given_ids_and_stays_unique() {
        let spec = r#"{"paths":{
            "/a":{"get":{"operationId":"getA2"},"post":{}},
            "/a/":{"get":{}},
            "/b":{"get":{"operationId":"getA"}}
        }}"#;
        let out: Value = serde_json::from_str(&complete(spec)).unwrap();
        assert_eq!(out["paths"]["/a"]["get"]["operationId"], "getA2");
        assert_eq!(out["paths"]["/a"]["post"]["operationId"], "postA");
        assert_eq!(out["paths"]["/a/"]["get"]["operationId"], "getASlash");
        assert_eq!(out["paths"]["/b"]["get"]["operationId"], "getA");
    }
}
