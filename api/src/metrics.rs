//! `GET /metrics` (Prometheus text) and the request recording behind it.
//!
//! `edge` puts a [`RouteSlot`] into every request; [`capture_route`], which sits
//! inside it around the router, fills the slot with the matched route template
//! (`/api/courses/lessons/{lesson_id}`), so `edge` can count the request under
//! its template and final status. Requests that match no route are counted as
//! `unmatched`: a raw path never becomes a label, so no id, username or email
//! reaches the metrics.

use crate::state::AppState;
use poem::web::Data;
use poem::{Endpoint, IntoResponse, Request, Response, Result, handler};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// poem-openapi routes `/api/users/public/{username}` as
/// `/api/users/public/:param0`: this maps the numbered form back to the
/// document's path, learnt from the spec once.
static SPEC_PATHS: OnceLock<HashMap<String, String>> = OnceLock::new();

/// Learns the route templates of the OpenAPI document (`spec`: its JSON).
pub fn learn_routes(spec: &str) {
    SPEC_PATHS.get_or_init(|| {
        let mut map = HashMap::new();
        let doc: serde_json::Value = serde_json::from_str(spec).unwrap_or_default();
        if let Some(paths) = doc.get("paths").and_then(|p| p.as_object()) {
            // Shorter first, so `/x` wins over `/x/` (both are routed as `/x`).
            let mut names: Vec<&String> = paths.keys().collect();
            names.sort_by_key(|p| (p.len(), p.as_str()));
            for p in names {
                map.entry(numbered(p)).or_insert_with(|| p.clone());
            }
        }
        map
    });
}

/// `/a/{x}/b/{y}/` → `/a/{param0}/b/{param1}` (poem-openapi's routing form).
fn numbered(path: &str) -> String {
    let mut out = String::new();
    let mut n = 0;
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        if seg.starts_with('{') && seg.ends_with('}') {
            out.push_str(&format!("{{param{n}}}"));
            n += 1;
        } else {
            out.push_str(seg);
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// The document's template for a poem route pattern.
fn template_for(pattern: &str) -> String {
    let t = mambo_core::metrics::route_template(pattern);
    SPEC_PATHS
        .get()
        .and_then(|m| m.get(&t))
        .cloned()
        .unwrap_or(t)
}

/// Where the matched route template of a request is left for `edge`.
#[derive(Clone, Default, Debug)]
pub struct RouteSlot(Arc<OnceLock<String>>);

impl RouteSlot {
    pub fn route(&self) -> &str {
        self.0.get().map(String::as_str).unwrap_or("unmatched")
    }
}

/// Around the router: copies the matched path pattern into the request's
/// [`RouteSlot`] (errors lose it once `edge` turns them into responses).
pub async fn capture_route<E: Endpoint>(ep: Arc<E>, req: Request) -> Result<Response> {
    let slot = req.data::<RouteSlot>().cloned();
    let res = ep.call(req).await.map(IntoResponse::into_response);
    if let Some(slot) = slot {
        let pattern = match &res {
            Ok(r) => r.data::<poem::PathPattern>(),
            // An unknown path carries the pattern of the enclosing `nest("/")`.
            Err(e) if e.is::<poem::error::NotFoundError>() => None,
            Err(e) => e.data::<poem::PathPattern>(),
        };
        if let Some(p) = pattern {
            let _ = slot.0.set(template_for(&p.0));
        }
    }
    res
}

/// Counts one finished request (called by `edge` with the final status).
pub fn record(slot: &RouteSlot, method: &poem::http::Method, status: u16, elapsed: Duration) {
    mambo_core::metrics::record_request(slot.route(), method.as_str(), status, elapsed);
}

/// `GET /metrics`: request counts and latency by route template and status,
/// the database pool, and (in `mambo dev`, where the worker shares the process)
/// the job counters. Not part of the OpenAPI document.
#[handler]
pub async fn metrics_endpoint(state: Data<&AppState>) -> Response {
    mambo_core::metrics::record_pool(&state.ctx.db);
    mambo_core::metrics::render()
        .with_content_type("text/plain; version=0.0.4; charset=utf-8")
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_paths() {
        assert_eq!(
            numbered("/api/users/public/{username}"),
            "/api/users/public/{param0}"
        );
        assert_eq!(numbered("/api/a/{x}/b/{y}/"), "/api/a/{param0}/b/{param1}");
        assert_eq!(numbered("/"), "/");
    }
}
