//! `mambo dev` without R2: a local S3-compatible server (s3s over s3s-fs) so
//! avatar and thumbnail uploads work on a fresh machine.
//!
//! Objects live under `.dev-data/s3/<bucket>` (kept across restarts, so stored
//! image URLs stay valid). Writes need a SigV4 signature (the API's presigned
//! URLs); reads are anonymous, like an R2 public bucket. CORS is open so the
//! browser can `PUT` straight from the frontend. Development only.

use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use mambo_core::config::{R2Config, Secret};
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{Body, HttpError, S3Result, s3_error};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const BUCKET: &str = "mambo-dev";
pub const ACCESS_KEY: &str = "mambo-dev";
pub const SECRET_KEY: &str = "mambo-dev-local-secret";
pub const DEFAULT_PORT: u16 = 9100;

/// Signed requests may do anything; anonymous ones may only read objects.
struct PublicRead;

#[async_trait::async_trait]
impl S3Access for PublicRead {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let read = matches!(cx.s3_op().name(), "GetObject" | "HeadObject");
        if cx.credentials().is_some() || read {
            Ok(())
        } else {
            Err(s3_error!(AccessDenied, "Signature is required"))
        }
    }
}

/// A running local S3 server.
pub struct LocalS3 {
    pub addr: SocketAddr,
    pub root: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl LocalS3 {
    /// The R2 configuration that points the API at this server.
    pub fn r2_config(&self) -> R2Config {
        R2Config {
            access_key_id: ACCESS_KEY.into(),
            secret_access_key: Secret::new(SECRET_KEY),
            endpoint_url: format!("http://{}", self.addr),
            bucket: BUCKET.into(),
            public_domain: None,
        }
    }
}

impl Drop for LocalS3 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn cors(mut resp: Response<Body>) -> Response<Body> {
    let h = resp.headers_mut();
    h.insert("access-control-allow-origin", "*".parse().expect("static"));
    h.insert(
        "access-control-allow-methods",
        "GET, HEAD, PUT, OPTIONS".parse().expect("static"),
    );
    h.insert("access-control-allow-headers", "*".parse().expect("static"));
    h.insert(
        "access-control-expose-headers",
        "ETag".parse().expect("static"),
    );
    h.insert("access-control-max-age", "600".parse().expect("static"));
    resp
}

async fn handle(s3: S3Service, req: Request<Incoming>) -> Result<Response<Body>, HttpError> {
    if req.method() == Method::OPTIONS {
        return Ok(cors(Response::new(Body::empty())));
    }
    let resp = hyper::service::Service::call(&s3, req).await?;
    Ok(cors(resp))
}

/// Starts the server on `127.0.0.1:port` (0 = any free port) with its data
/// under `root`.
pub async fn start(root: &Path, port: u16) -> anyhow::Result<LocalS3> {
    std::fs::create_dir_all(root.join(BUCKET))?;
    let fs =
        s3s_fs::FileSystem::new(root).map_err(|e| anyhow::anyhow!("local S3 storage: {e:?}"))?;
    let service = {
        let mut b = S3ServiceBuilder::new(fs);
        b.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        b.set_access(PublicRead);
        b.build()
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let s3 = service.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| handle(s3.clone(), req));
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await
                {
                    tracing::debug!(error = %e, "local S3 connection ended");
                }
            });
        }
    });
    Ok(LocalS3 {
        addr,
        root: root.to_path_buf(),
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mambo_core::uploads::{PresignRequest, presign_with};

    #[tokio::test]
    async fn presigned_uploads_land_and_are_publicly_readable() {
        let root =
            std::env::temp_dir().join(format!("mambo-local-s3-{}", uuid::Uuid::new_v4().simple()));
        let s3 = start(&root, 0).await.unwrap();
        let r2 = s3.r2_config();
        let req = PresignRequest {
            file_type: "image/png".into(),
            folder: "avatars".into(),
            file_size: None,
        };
        let up = presign_with(&r2, &req, std::time::SystemTime::now())
            .await
            .unwrap();
        let http = reqwest::Client::new();

        // The browser's preflight is answered.
        let pre = http
            .request(reqwest::Method::OPTIONS, &up.upload_url)
            .header("Origin", "http://localhost:3000")
            .header("Access-Control-Request-Method", "PUT")
            .send()
            .await
            .unwrap();
        assert!(pre.status().is_success());
        assert_eq!(pre.headers()["access-control-allow-origin"], "*");

        // Unsigned writes are refused; the presigned PUT works.
        let public = up.public_url.clone();
        let r = http
            .put(&public)
            .header("Content-Type", "image/png")
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::FORBIDDEN);
        let r = http
            .put(&up.upload_url)
            .header("Content-Type", "image/png")
            .body(b"png-bytes".to_vec())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());

        // Anyone can read it at the public URL.
        let r = http.get(&public).send().await.unwrap();
        assert!(r.status().is_success());
        assert_eq!(r.headers()["content-type"], "image/png");
        assert_eq!(r.bytes().await.unwrap().as_ref(), b"png-bytes");
        drop(s3);
        let _ = std::fs::remove_dir_all(root);
    }
}
