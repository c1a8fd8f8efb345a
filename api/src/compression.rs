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

/// The encodings a request accepts, best first among `br` and `gzip`
/// (highest q, then br over gzip; `q=0` refuses; `*` stands for both).
pub fn preferred(req: &Request) -> Option<&'static str> {
    let mut best: Option<(&'static str, u32)> = None;
    for value in req.headers().get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .filter_map(|q| q.trim().parse::<f32>().ok())
                .next_back()
                .unwrap_or(1.0);
            let q = (q.clamp(0.0, 1.0) * 1000.0) as u32;
            if q == 0 {
                continue;
            }
            let names: &[&'static str] = match name.as_str() {
                "br" => &["br"],
                "gzip" => &["gzip"],
                "*" => &["br", "gzip"],
                _ => &[],
            };
            for &n in names {
                let better = match best {
                    None => true,
                    Some((b, bq)) => q > bq || (q == bq && n == "br" && b != "br"),
                };
                if better {
                    best = Some((n, q));
                }
            }
        }
    }
    best.map(|(n, _)| n)
}

/// A static document served already compressed: each encoding is made once,
/// on its first request, then served from memory (the OpenAPI document is
/// 640 KB; compressing it per request cost ~65 ms of CPU each, issue 20).
pub struct Precompressed {
    content_type: &'static str,
    identity: bytes::Bytes,
    gzip: tokio::sync::OnceCell<bytes::Bytes>,
    br: tokio::sync::OnceCell<bytes::Bytes>,
}

impl Precompressed {
    pub fn new(body: impl Into<bytes::Bytes>, content_type: &'static str) -> Self {
        Self {
            content_type,
            identity: body.into(),
            gzip: Default::default(),
            br: Default::default(),
        }
    }

    async fn encoded(&self, encoding: &'static str) -> std::io::Result<bytes::Bytes> {
        use tokio::io::AsyncReadExt;
        let cell = if encoding == "br" {
            &self.br
        } else {
            &self.gzip
        };
        cell.get_or_try_init(|| async {
            let src = self.identity.clone();
            let mut out = Vec::with_capacity(src.len() / 8);
            if encoding == "br" {
                async_compression::tokio::bufread::BrotliEncoder::with_quality(
                    &src[..],
                    async_compression::Level::Default,
                )
                .read_to_end(&mut out)
                .await?;
            } else {
                async_compression::tokio::bufread::GzipEncoder::with_quality(
                    &src[..],
                    async_compression::Level::Best,
                )
                .read_to_end(&mut out)
                .await?;
            }
            Ok(bytes::Bytes::from(out))
        })
        .await
        .cloned()
    }

    /// The document in the best encoding the request accepts.
    pub async fn respond(&self, req: &Request) -> Response {
        // Identity: `respond` (the middleware) adds the Vary header.
        let plain = || {
            Response::builder()
                .content_type(self.content_type)
                .body(Body::from_bytes(self.identity.clone()))
        };
        let Some(encoding) = preferred(req) else {
            return plain();
        };
        match self.encoded(encoding).await {
            Ok(body) => Response::builder()
                .content_type(self.content_type)
                .header(header::CONTENT_ENCODING, encoding)
                .header(header::VARY, "accept-encoding")
                .body(Body::from_bytes(body)),
            Err(e) => {
                tracing::warn!(error = %e, encoding, "precompressing failed; sending identity");
                plain()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(accept: &str) -> Option<&'static str> {
        preferred(
            &Request::builder()
                .header("accept-encoding", accept)
                .finish(),
        )
    }

    #[test]
    fn the_best_accepted_encoding_wins() {
        assert_eq!(pick("gzip"), Some("gzip"));
        assert_eq!(pick("br"), Some("br"));
        assert_eq!(pick("gzip, deflate, br"), Some("br"));
        assert_eq!(pick("br;q=0.5, gzip"), Some("gzip"));
        assert_eq!(pick("gzip;q=0, br;q=0"), None);
        assert_eq!(pick("deflate, identity"), None);
        assert_eq!(pick("*"), Some("br"));
        assert_eq!(pick("GZIP ; q=0.8"), Some("gzip"));
        assert_eq!(preferred(&Request::builder().finish()), None);
    }
}
