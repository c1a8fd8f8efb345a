//! A real S3-compatible server for tests: `s3s` (the S3 protocol, including
//! SigV4 header and presigned-URL verification) over `s3s-fs` (objects stored as
//! files in a temporary directory), served on a random local port.
//!
//! Presigned URLs made by the API are checked by this server exactly as R2
//! would check them: a wrong signature, a different `Content-Type` or an
//! expired URL is refused.

use hyper_util::rt::TokioIo;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use std::path::PathBuf;
use tokio::net::TcpListener;

pub const ACCESS_KEY: &str = "mambo-test-access-key";
pub const SECRET_KEY: &str = "mambo-test-secret-key-0123456789";

/// A running local S3 server with one bucket.
pub struct LocalS3 {
    /// `http://127.0.0.1:<port>` (path-style endpoint).
    pub endpoint: String,
    pub bucket: String,
    pub root: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl LocalS3 {
    /// Starts a server with `bucket` created and authentication on
    /// ([`ACCESS_KEY`]/[`SECRET_KEY`]).
    pub async fn start(bucket: &str) -> Self {
        let root = std::env::temp_dir().join(format!("mambo-s3-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(root.join(bucket)).expect("create the bucket directory");
        let fs = s3s_fs::FileSystem::new(&root).expect("s3s-fs root");
        let service = {
            let mut b = S3ServiceBuilder::new(fs);
            b.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
            b.build()
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind S3");
        let addr = listener.local_addr().expect("S3 address");
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let svc = service.clone();
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            endpoint: format!("http://{addr}"),
            bucket: bucket.to_string(),
            root,
            task,
        }
    }

    /// The R2 environment variables that point the API at this server.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_BUCKET_NAME", self.bucket.clone()),
        ]
    }

    /// Where the object `key` is stored on disk.
    pub fn object_path(&self, key: &str) -> PathBuf {
        self.root.join(&self.bucket).join(key)
    }
}

impl Drop for LocalS3 {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
