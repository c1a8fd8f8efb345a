//! Response compression (issue 20): gzip or brotli, as the client accepts,
//! for text responses over [`MIN_BYTES`], never for event streams.
//!
//! The negotiation and the encoders are poem's `Compression` middleware; this
//! module only decides which responses it may touch, which poem's middleware
//! does not (it compresses everything, and would also decompress request
//! bodies, which the API does not accept compressed).

use poem::http::{HeaderValue, StatusCode, header};
use poem::middleware::Compression;
use poem::web::CompressionAlgo;
use poem::{Body, Endpoint, IntoResponse, Middleware, Request, Response, Result};
use std::sync::{Arc, Mutex};

/// Responses up to this size go out as they are: compressing them costs
/// more CPU than the bytes it saves.
pub const MIN_BYTES: usize = 1024;

/// A text body worth compressing: JSON, text, JavaScript, SVG; never an
/// event stream (it must reach the client event by event), never a body
/// already encoded, never a status without a body.
fn compressible(resp: &Response) -> bool {
    let status = resp.status();
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || resp.headers().contains_key(header::CONTENT_ENCODING)
    {
        return false;
    }
    let Some(ct) = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let ct = ct.trim().to_ascii_lowercase();
    if ct.starts_with("text/event-stream") {
        return false;
    }
    ct.starts_with("application/json")
        || ct.starts_with("text/")
        || ct.starts_with("application/javascript")
        || ct.starts_with("image/svg+xml")
        || ct.contains("+json")
}

/// Hands poem's middleware a response that is already made.
struct Ready(Mutex<Option<Response>>);

impl Endpoint for Ready {
    type Output = Response;

    async fn call(&self, _req: Request) -> Result<Response> {
        Ok(self
            .0
            .lock()
            .map(|mut r| r.take())
            .ok()
            .flatten()
            .unwrap_or_else(|| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
    }
}

/// The outermost middleware of the API.
pub async fn respond<E: Endpoint>(ep: Arc<E>, req: Request) -> Result<Response> {
    let accept = req.headers().get(header::ACCEPT_ENCODING).cloned();
    let resp = ep.call(req).await?.into_response();
    if !compressible(&resp) {
        return Ok(resp);
    }
    let (mut parts, body) = resp.into_parts();
    // A cache must keep the encodings apart.
    parts
        .headers
        .append(header::VARY, HeaderValue::from_static("accept-encoding"));
    let bytes = body.into_bytes().await?;
    let small = bytes.len() <= MIN_BYTES;
    let resp = Response::from_parts(parts, Body::from_bytes(bytes));
    let Some(accept) = accept.filter(|_| !small) else {
        return Ok(resp);
    };
    let mut probe = Request::builder().finish();
    probe.headers_mut().insert(header::ACCEPT_ENCODING, accept);
    let mut resp = Compression::new()
        .algorithms([CompressionAlgo::BR, CompressionAlgo::GZIP])
        .transform(Ready(Mutex::new(Some(resp))))
        .call(probe)
        .await?;
    // A strong ETag names one sequence of bytes: the encoded body gets its
    // own (`"<tag>-br"`), as Apache's mod_deflate does; `If-None-Match`
    // accepts both (`conditional::Validator::matches`).
    let encoding = resp
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let (Some(enc), Some(tag)) = (
        encoding,
        resp.headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .and_then(|t| t.strip_suffix('"'))
            .map(str::to_string),
    ) && let Ok(v) = HeaderValue::from_str(&format!("{tag}-{enc}\""))
    {
        resp.headers_mut().insert(header::ETAG, v);
    }
    Ok(resp)
}
