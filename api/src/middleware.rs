//! CORS, security headers and request ids (API.md §1.6), applied to every
//! response including errors. Also where all input enters and every error
//! leaves: NUL characters (query strings, form and JSON bodies) and duplicate
//! JSON keys are refused here with a FastAPI 422, and every 4xx JSON body is
//! stripped of passwords and tokens on its way out (issue 15).

use mambo_core::Config;
use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::{Endpoint, IntoResponse, Request, Response, Result};
use std::net::IpAddr;
use std::sync::Arc;

const EXPOSED: &str = "X-RateLimit-Remaining, X-RateLimit-Reset, X-RateLimit-Limit, Retry-After, X-Request-Id, Content-Disposition, Content-Length";
const METHODS: &str = "GET, POST, PUT, PATCH, DELETE, OPTIONS";

/// Wraps the whole app: request id + tracing span, CORS, security headers.
pub async fn edge<E: Endpoint>(
    ep: Arc<E>,
    mut req: Request,
    config: Arc<Config>,
) -> Result<Response> {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let allowed = origin
        .as_deref()
        .map(|o| config.cors_origins.iter().any(|a| a == o))
        .unwrap_or(false);

    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let span = tracing::info_span!(
        "request",
        id = %request_id,
        %method,
        %path,
        user_id = tracing::field::Empty
    );
    let started = std::time::Instant::now();
    let route_slot = crate::metrics::RouteSlot::default();
    req.set_data(route_slot.clone());

    let is_preflight = method == Method::OPTIONS
        && origin.is_some()
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);

    // Password and token values of this request, scrubbed from error bodies.
    let mut secrets: Vec<String> = vec![];
    let mut resp = if is_preflight {
        if allowed {
            let mut r = Response::builder().status(StatusCode::OK).body("OK");
            let h = r.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(METHODS),
            );
            let req_headers = req
                .headers()
                .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
                .cloned()
                .unwrap_or_else(|| HeaderValue::from_static("*"));
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, req_headers);
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
            r
        } else {
            crate::error::json_error(
                StatusCode::BAD_REQUEST,
                serde_json::json!("Disallowed CORS origin"),
            )
        }
    } else if let Some(too_large) = enforce_body_limit(&mut req, config.max_body_bytes).await {
        too_large
    } else {
        use tracing::Instrument;
        let raw = capture_json_body(&mut req).await;
        let form = capture_form_body(&mut req).await;
        secrets = request_secrets(&req, raw.as_deref(), form.as_deref());
        let (m, p) = (method.as_str().to_string(), path.clone());
        let refused = refuse_input(&req, raw.as_deref(), form.as_deref());
        async {
            if let Some(detail) = refused {
                return crate::error::json_error(StatusCode::UNPROCESSABLE_ENTITY, detail);
            }
            match ep.call(req).await {
                Ok(r) => r.into_response(),
                Err(e) => {
                    if let (Some(pe), Some(raw)) = (
                        e.downcast_ref::<poem_openapi::error::ParseRequestPayloadError>(),
                        raw.as_ref(),
                    ) {
                        crate::error::json_error(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            crate::validation::explain(&m, &p, raw, &pe.reason),
                        )
                    } else {
                        crate::error::catch_all(e).await
                    }
                }
            }
        }
        .instrument(span.clone())
        .await
    };
    // Every error body, whoever built it (typed handlers, core validation,
    // `explain`, `catch_all`, the checks above), is written here: one place
    // keeps passwords and tokens out of the 422 lists (issue 15).
    if resp.status().is_client_error() {
        resp = redact_error_body(resp, &secrets).await;
    }

    let h = resp.headers_mut();
    if allowed {
        if let Some(o) = origin
            .as_deref()
            .and_then(|o| HeaderValue::from_str(o).ok())
        {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        }
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED),
        );
    }
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-xss-protection",
        HeaderValue::from_static("1; mode=block"),
    );
    h.insert(
        "referrer-policy",
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("geolocation=(), microphone=(), camera=()"),
    );
    if config.is_production() {
        h.insert(
            "strict-transport-security",
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-request-id", v);
    }
    crate::metrics::record(
        &route_slot,
        &method,
        resp.status().as_u16(),
        started.elapsed(),
    );
    let _enter = span.enter();
    tracing::info!(
        status = resp.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "response"
    );
    Ok(resp)
}

/// The client's address: the peer, or the first `X-Forwarded-For` hop when the
/// peer is a trusted proxy (D32).
pub fn client_ip(req: &Request, config: &Config) -> Option<IpAddr> {
    let peer = req.remote_addr().as_socket_addr().map(|a| a.ip());
    match peer {
        Some(p) if config.trusted_proxies.contains(&p) => req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
            .or(Some(p)),
        other => other,
    }
}

/// 413 when the body is larger than the limit: by `Content-Length`, or by
/// reading at most `max + 1` bytes of a body sent without one.
async fn enforce_body_limit(req: &mut Request, max: usize) -> Option<Response> {
    let too_large = || {
        crate::error::json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            serde_json::json!("Request body too large"),
        )
    };
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len <= max as u64 {
            return None;
        }
        // Read a moderately oversized body before answering, so a client that
        // is still sending gets the 413 instead of a broken pipe; a far larger
        // one is refused at once.
        if len <= (max as u64).saturating_mul(4) {
            let _ = req.take_body().into_bytes_limit(len as usize).await;
        }
        return Some(too_large());
    }
    if req.headers().contains_key(header::TRANSFER_ENCODING) {
        let body = req.take_body();
        match body.into_bytes_limit(max).await {
            Ok(bytes) => req.set_body(bytes),
            Err(_) => return Some(too_large()),
        }
    }
    None
}

/// Keeps a copy of a JSON body so a refused one can be explained field by
/// field. A body sent without a content type that looks like JSON is treated
/// as JSON, as FastAPI does.
async fn capture_json_body(req: &mut Request) -> Option<Vec<u8>> {
    if !matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        return None;
    }
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    let is_json = ct.as_deref().is_some_and(|c| c.contains("json"));
    if ct.is_some() && !is_json {
        return None;
    }
    let bytes = req.take_body().into_vec().await.ok()?;
    if ct.is_none() {
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if matches!(first, Some(b'{') | Some(b'[')) {
            req.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        } else {
            req.set_body(bytes);
            return None;
        }
    }
    req.set_body(bytes.clone());
    Some(bytes)
}

/// Keeps a copy of a form-encoded body, so NUL characters in it can be refused
/// before any handler sees it.
async fn capture_form_body(req: &mut Request) -> Option<Vec<u8>> {
    if !matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        return None;
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| {
            c.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if !is_form {
        return None;
    }
    let bytes = req.take_body().into_vec().await.ok()?;
    req.set_body(bytes.clone());
    Some(bytes)
}

const NUL_MSG: &str = "Value error, String should not contain NUL characters";

/// A copy of `s` that can be shown: NUL characters become U+FFFD.
fn shown(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

fn nul_error(loc: Vec<serde_json::Value>, input: &str) -> serde_json::Value {
    serde_json::json!({"type": "value_error", "loc": loc, "msg": NUL_MSG, "input": shown(input)})
}

/// NUL characters in `name=value` pairs (a query string or a form body): one
/// error per pair, located at `[place, name]`.
fn nul_pairs(place: &str, encoded: &[u8], errors: &mut Vec<serde_json::Value>) {
    for (k, v) in url::form_urlencoded::parse(encoded) {
        if k.contains('\0') || v.contains('\0') {
            errors.push(nul_error(
                vec![serde_json::json!(place), serde_json::json!(shown(&k))],
                &v,
            ));
        }
    }
}

/// The 422 `detail` for input refused before routing, whatever the route:
/// NUL characters in the query string, a form body or a JSON string
/// (PostgreSQL text cannot hold them), and duplicate JSON keys.
fn refuse_input(
    req: &Request,
    json_body: Option<&[u8]>,
    form_body: Option<&[u8]>,
) -> Option<serde_json::Value> {
    use serde_json::{Value, json};
    let mut errors = vec![];
    if let Some(q) = req.uri().query() {
        nul_pairs("query", q.as_bytes(), &mut errors);
    }
    if let Some(form) = form_body {
        nul_pairs("body", form, &mut errors);
    }
    match json_body.and_then(scan_json) {
        Some(Finding::Duplicate(loc)) => {
            // Which value counts would be a guess: refuse the body.
            let msg = format!(
                "Duplicate key '{}'",
                loc.last().cloned().unwrap_or_default()
            );
            let mut l = vec![json!("body")];
            l.extend(loc.into_iter().map(Value::String));
            errors.push(json!({"type": "json_invalid", "loc": l, "msg": msg, "input": {}}));
        }
        Some(Finding::Nul(loc, input)) => {
            let mut l = vec![json!("body")];
            l.extend(loc.iter().map(|k| json!(shown(k))));
            errors.push(nul_error(l, &input));
        }
        None => {}
    }
    (!errors.is_empty()).then_some(Value::Array(errors))
}

/// What [`scan_json`] refuses in a JSON body.
#[derive(Debug, PartialEq)]
enum Finding {
    /// The path of an object key that appears twice.
    Duplicate(Vec<String>),
    /// The path of a string (or key) holding a NUL character, and that string.
    Nul(Vec<String>, String),
}

/// The first duplicate object key or NUL character in a JSON body, if any. A
/// body that is not valid JSON is left to the normal parser.
fn scan_json(body: &[u8]) -> Option<Finding> {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use std::fmt;

    struct Walk<'a>(&'a mut Vec<String>, &'a mut Option<Finding>);

    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, s: &str) -> Result<(), E> {
            if s.contains('\0') && self.1.is_none() {
                *self.1 = Some(Finding::Nul(self.0.clone(), s.to_string()));
            }
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut i = 0usize;
            loop {
                self.0.push(i.to_string());
                let more = seq.next_element_seed(Walk(self.0, self.1))?.is_some();
                self.0.pop();
                if !more {
                    return Ok(());
                }
                i += 1;
            }
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(k) = map.next_key::<String>()? {
                self.0.push(k.clone());
                if self.1.is_none() {
                    if k.contains('\0') {
                        *self.1 = Some(Finding::Nul(self.0.clone(), k.clone()));
                    } else if !seen.insert(k) {
                        *self.1 = Some(Finding::Duplicate(self.0.clone()));
                    }
                }
                map.next_value_seed(Walk(self.0, self.1))?;
                self.0.pop();
            }
            Ok(())
        }
    }

    let mut path = vec![];
    let mut found = None;
    let mut de = serde_json::Deserializer::from_slice(body);
    Walk(&mut path, &mut found).deserialize(&mut de).ok()?;
    found
}

/// The values of the request's password and token fields (JSON body, form
/// body, query string), so an error body can be scrubbed of them.
fn request_secrets(
    req: &Request,
    json_body: Option<&[u8]>,
    form_body: Option<&[u8]>,
) -> Vec<String> {
    use crate::error::is_secret_field;
    let mut out = vec![];
    // Every string under a secret key (a password sent as `["..."]` too).
    fn walk(v: &serde_json::Value, secret: bool, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => m
                .iter()
                .for_each(|(k, v)| walk(v, secret || is_secret_field(k), out)),
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, secret, out)),
            serde_json::Value::String(s) if secret => out.push(s.clone()),
            _ => {}
        }
    }
    if let Some(v) = json_body.and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok()) {
        walk(&v, false, &mut out);
    }
    let query = req.uri().query().unwrap_or_default().as_bytes();
    let pairs = url::form_urlencoded::parse(query)
        .chain(url::form_urlencoded::parse(form_body.unwrap_or_default()));
    out.extend(
        pairs
            .filter(|(k, _)| is_secret_field(k))
            .map(|(_, v)| v.into_owned()),
    );
    out
}

/// Rewrites a JSON error body with [`crate::error::redact_detail`]; any other
/// body is left as it is.
async fn redact_error_body(mut resp: Response, secrets: &[String]) -> Response {
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.contains("json"));
    if !is_json {
        return resp;
    }
    let Ok(bytes) = resp.take_body().into_vec().await else {
        return resp;
    };
    let mut value: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(_) => {
            resp.set_body(bytes);
            return resp;
        }
    };
    let changed = value
        .get_mut("detail")
        .is_some_and(|d| crate::error::redact_detail(d, secrets));
    if changed {
        resp.headers_mut().remove(header::CONTENT_LENGTH);
        resp.set_body(serde_json::to_vec(&value).unwrap_or(bytes));
    } else {
        resp.set_body(bytes);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_scan_finds_duplicates_and_nul_characters_in_order() {
        let s = |b: &str| scan_json(b.as_bytes());
        assert_eq!(s(r#"{"a":1,"b":["x","y"]}"#), None);
        assert_eq!(
            s(r#"{"a":1,"a":2}"#),
            Some(Finding::Duplicate(vec!["a".into()]))
        );
        assert_eq!(
            s(r#"{"a":{"b":["ok","n\u0000l"]},"a":2}"#),
            Some(Finding::Nul(
                vec!["a".into(), "b".into(), "1".into()],
                "n\0l".into()
            ))
        );
        assert_eq!(
            s(r#"{"k\u0000":1}"#),
            Some(Finding::Nul(vec!["k\0".into()], "k\0".into()))
        );
        assert_eq!(s("{not json"), None);
    }

    #[test]
    fn nul_in_pairs_is_located_and_not_echoed() {
        let mut e = vec![];
        nul_pairs("query", b"q=a%00b&ok=1&x%00=2", &mut e);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0]["loc"], serde_json::json!(["query", "q"]));
        assert_eq!(e[0]["input"], "a\u{FFFD}b");
        assert_eq!(e[1]["loc"], serde_json::json!(["query", "x\u{FFFD}"]));
    }
}
