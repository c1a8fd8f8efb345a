//! Conditional reads (issue 20): a strong `ETag` on the catalogue reads,
//! derived from what the response depends on (the catalogue version and the
//! caller's own state, see `courses::Head::state_tag`), checked against
//! `If-None-Match` before the body is built; a match is a `304` with no body.
//!
//! `Cache-Control`: `public, max-age=60` only for anonymous reads (a CDN in
//! front of the API may share them), `private, no-cache` for anything that
//! depends on the caller (kept by the caller's browser only, revalidated with
//! the ETag each time). `Vary: Authorization, Cookie` because the same URL
//! answers differently per caller.

use poem::http::{HeaderValue, StatusCode, header};
use poem::{IntoResponse, Request, Response};
use poem_openapi::ApiResponse;
use poem_openapi::registry::{MetaResponse, MetaResponses, Registry};
use sha2::{Digest, Sha256};

/// The validator of one read.
#[derive(Debug, Clone)]
pub struct Validator {
    etag: String,
    anonymous: bool,
}

impl Validator {
    /// `route` names the read and its parameters; `state` what else its
    /// answer depends on.
    pub fn new(route: &str, state: &str, anonymous: bool) -> Self {
        let digest = Sha256::new()
            .chain_update(route.as_bytes())
            .chain_update(b"\n")
            .chain_update(state.as_bytes())
            .finalize();
        Self {
            etag: format!("\"{}\"", hex::encode(&digest[..16])),
            anonymous,
        }
    }

    /// The validator of a body already built (for reads without a cheaper
    /// key).
    pub fn of_body(route: &str, body: &[u8], anonymous: bool) -> Self {
        Self::new(route, &hex::encode(Sha256::digest(body)), anonymous)
    }

    pub fn etag(&self) -> &str {
        &self.etag
    }

    /// Whether the request's `If-None-Match` names this validator (weak
    /// comparison, as RFC 9110 asks for `If-None-Match`; `*` matches).
    pub fn matches(&self, req: &Request) -> bool {
        let ours = self.etag.as_str();
        req.headers()
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .any(|tag| tag == "*" || same_entity(tag.strip_prefix("W/").unwrap_or(tag), ours))
    }

    fn apply(&self, resp: &mut Response) {
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&self.etag) {
            h.insert(header::ETAG, v);
        }
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(if self.anonymous {
                "public, max-age=60"
            } else {
                "private, no-cache"
            }),
        );
        h.append(
            header::VARY,
            HeaderValue::from_static("authorization, cookie"),
        );
    }
}

/// `theirs` is `ours`, or `ours` with the suffix compression gives an
/// encoded body's tag (`"<tag>-gzip"`, `"<tag>-br"`: `compression::respond`).
fn same_entity(theirs: &str, ours: &str) -> bool {
    if theirs == ours {
        return true;
    }
    let (Some(t), Some(o)) = (theirs.strip_suffix('"'), ours.strip_suffix('"')) else {
        return false;
    };
    t.strip_prefix(o)
        .is_some_and(|rest| rest == "-gzip" || rest == "-br")
}

/// A read that may be answered `304 Not Modified`.
pub enum Cached<T> {
    Fresh(T, Validator),
    NotModified(Validator),
    /// No validator (a read outside the cached catalogue, e.g. an
    /// unpublished world for staff): private, never stored.
    Uncached(T),
}

impl<T> Cached<T> {
    /// `NotModified` when the request already holds `validator`'s version,
    /// else the body `build` makes.
    pub async fn answer<F, Fut, E>(req: &Request, validator: Validator, build: F) -> Result<Self, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        if validator.matches(req) {
            Ok(Cached::NotModified(validator))
        } else {
            Ok(Cached::Fresh(build().await?, validator))
        }
    }
}

impl<T: IntoResponse> IntoResponse for Cached<T> {
    fn into_response(self) -> Response {
        match self {
            Cached::Fresh(body, v) => {
                let mut resp = body.into_response();
                if resp.status().is_success() {
                    v.apply(&mut resp);
                }
                resp
            }
            Cached::NotModified(v) => {
                let mut resp = StatusCode::NOT_MODIFIED.into_response();
                v.apply(&mut resp);
                resp
            }
            Cached::Uncached(body) => {
                let mut resp = body.into_response();
                resp.headers_mut().insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("private, no-store"),
                );
                resp
            }
        }
    }
}

impl<T: ApiResponse> ApiResponse for Cached<T> {
    fn meta() -> MetaResponses {
        let mut meta = T::meta();
        meta.responses.push(MetaResponse {
            description: "Not Modified: the `If-None-Match` ETag is current (no body)",
            status: Some(304),
            status_range: None,
            content: vec![],
            headers: vec![],
        });
        meta
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}
