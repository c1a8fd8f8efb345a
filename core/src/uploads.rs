//! Image uploads to Cloudflare R2 (S3-compatible) through presigned URLs
//! (API.md §3.5, §4.14).
//!
//! Presigning is offline: an `aws_sdk_s3` client built from static credentials,
//! region `auto`, the configured endpoint and path-style addressing signs a
//! SigV4 `PUT` for `{folder}/{uuid}{ext}`. The `content-type` header is part of
//! the signature, so the uploader must send the same `Content-Type`; when the
//! caller states the file size, `content-length` is signed too, so R2 refuses a
//! body of any other size (a presigned `PUT` cannot carry a size *range*).

use crate::config::R2Config;
use crate::{Context, Error, Result};
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::presigning::PresigningConfig;
use serde::Serialize;
use std::time::{Duration, SystemTime};

/// How long a presigned upload URL stays valid.
pub const PRESIGN_EXPIRES: Duration = Duration::from_secs(3600);
/// The largest image accepted (stated in the response; enforced by signing the
/// exact `content-length` when the client gives the size up front).
pub const MAX_IMAGE_BYTES: i64 = 10 * 1024 * 1024;
/// The folders an upload may go to.
pub const FOLDERS: [&str; 2] = ["avatars", "thumbnails"];

pub const FOLDER_MESSAGE: &str = "Folder must be 'avatars' or 'thumbnails'";
pub const FILE_TYPE_MESSAGE: &str = "File type must be an image (e.g., image/png, image/jpeg)";

/// What the caller asked for.
#[derive(Debug, Clone)]
pub struct PresignRequest {
    pub file_type: String,
    pub folder: String,
    /// Optional size in bytes; when present it is checked and signed.
    pub file_size: Option<i64>,
}

/// `{upload_url, public_url}` plus what the uploader must know.
#[derive(Debug, Clone, Serialize)]
pub struct PresignedUpload {
    pub upload_url: String,
    pub public_url: String,
    /// The object key inside the bucket.
    pub key: String,
    /// Headers the `PUT` must carry exactly (at least `content-type`).
    pub headers: Vec<(String, String)>,
    pub expires_in: u64,
    pub max_size_bytes: i64,
}

/// The file extension for an image MIME type (§4.14).
pub fn extension_for(file_type: &str) -> &'static str {
    let t = file_type.trim().to_ascii_lowercase();
    let sub = t.strip_prefix("image/").unwrap_or("");
    // Ignore parameters such as `; charset=...`.
    let sub = sub.split(';').next().unwrap_or("").trim();
    match sub {
        "jpeg" | "jpg" | "pjpeg" => ".jpg",
        "png" => ".png",
        "gif" => ".gif",
        "webp" => ".webp",
        "svg+xml" => ".svg",
        _ => ".jpg",
    }
}

/// Checks the request; the messages are the contract's (422, see the Media issue).
pub fn validate(req: &PresignRequest) -> Result<()> {
    if !FOLDERS.contains(&req.folder.as_str()) {
        return Err(Error::unprocessable(FOLDER_MESSAGE));
    }
    let ft = req.file_type.trim().to_ascii_lowercase();
    let essence = ft.split(';').next().unwrap_or("").trim();
    let sub = essence.strip_prefix("image/").unwrap_or("");
    // `image/` alone, or a subtype with spaces or slashes, is not an image type.
    if sub.is_empty() || sub.contains('/') || sub.contains(char::is_whitespace) {
        return Err(Error::unprocessable(FILE_TYPE_MESSAGE));
    }
    if let Some(size) = req.file_size {
        if size <= 0 {
            return Err(Error::unprocessable("File size must be positive"));
        }
        if size > MAX_IMAGE_BYTES {
            return Err(Error::unprocessable(format!(
                "File is too large (maximum {} MB)",
                MAX_IMAGE_BYTES / (1024 * 1024)
            )));
        }
    }
    Ok(())
}

/// The public URL of an object: `{R2_PUBLIC_DOMAIN}/{key}` (a bare host gets
/// `https://`), or `{AWS_ENDPOINT_URL}/{bucket}/{key}` when no public domain is set.
pub fn public_url(r2: &R2Config, key: &str) -> String {
    match r2.public_domain.as_deref().filter(|d| !d.is_empty()) {
        Some(d) if d.starts_with("http://") || d.starts_with("https://") => {
            format!("{}/{key}", d.trim_end_matches('/'))
        }
        Some(d) => format!("https://{}/{key}", d.trim_end_matches('/')),
        None => format!(
            "{}/{}/{key}",
            r2.endpoint_url.trim_end_matches('/'),
            r2.bucket
        ),
    }
}

/// An S3 client for presigning only (it never sends a request itself).
pub fn s3_client(r2: &R2Config) -> aws_sdk_s3::Client {
    let creds = Credentials::new(
        r2.access_key_id.clone(),
        r2.secret_access_key.expose().to_string(),
        None,
        None,
        "mambo-config",
    );
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .credentials_provider(creds)
        .region(Region::new("auto"))
        .endpoint_url(r2.endpoint_url.clone())
        .force_path_style(true)
        // A presigned PUT must not pin a checksum of an empty body.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// Presigns a `PUT` of a new object under `folder` (checked with [`validate`]).
pub async fn presign(ctx: &Context, req: &PresignRequest) -> Result<PresignedUpload> {
    validate(req)?;
    let r2 = ctx
        .config
        .r2
        .as_ref()
        .ok_or_else(|| Error::not_configured("R2"))?;
    presign_with(r2, req, ctx.clock.now().into()).await
}

/// [`presign`] with explicit configuration and signing time.
pub async fn presign_with(
    r2: &R2Config,
    req: &PresignRequest,
    now: SystemTime,
) -> Result<PresignedUpload> {
    validate(req)?;
    let content_type = req.file_type.trim().to_string();
    let key = format!(
        "{}/{}{}",
        req.folder,
        uuid::Uuid::new_v4(),
        extension_for(&content_type)
    );
    let client = s3_client(r2);
    let presigning = PresigningConfig::builder()
        .start_time(now)
        .expires_in(PRESIGN_EXPIRES)
        .build()
        .map_err(|e| Error::internal(format!("presigning configuration: {e}")))?;
    let mut op = client
        .put_object()
        .bucket(&r2.bucket)
        .key(&key)
        .content_type(&content_type);
    if let Some(size) = req.file_size {
        op = op.content_length(size);
    }
    let presigned = op.presigned(presigning).await.map_err(|e| {
        tracing::error!(error = %e, "signing an R2 upload URL failed");
        Error::http(500, "Failed to generate upload URL. Please try again.")
    })?;
    let headers = presigned
        .headers()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Ok(PresignedUpload {
        upload_url: presigned.uri().to_string(),
        public_url: public_url(r2, &key),
        key,
        headers,
        expires_in: PRESIGN_EXPIRES.as_secs(),
        max_size_bytes: MAX_IMAGE_BYTES,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn r2(public: Option<&str>) -> R2Config {
        R2Config {
            access_key_id: "AKID".into(),
            secret_access_key: Secret::new("secret"),
            endpoint_url: "https://acc.r2.cloudflarestorage.com".into(),
            bucket: "media".into(),
            public_domain: public.map(String::from),
        }
    }

    fn req(ft: &str, folder: &str) -> PresignRequest {
        PresignRequest {
            file_type: ft.into(),
            folder: folder.into(),
            file_size: None,
        }
    }

    #[test]
    fn extensions_follow_the_mime_type() {
        assert_eq!(extension_for("image/jpeg"), ".jpg");
        assert_eq!(extension_for("image/jpg"), ".jpg");
        assert_eq!(extension_for("image/png"), ".png");
        assert_eq!(extension_for("image/gif"), ".gif");
        assert_eq!(extension_for("image/webp"), ".webp");
        assert_eq!(extension_for("image/svg+xml"), ".svg");
        assert_eq!(extension_for("image/heic"), ".jpg");
    }

    #[test]
    fn only_images_in_known_folders() {
        assert!(validate(&req("image/png", "avatars")).is_ok());
        assert!(validate(&req("image/jpeg", "thumbnails")).is_ok());
        let e = validate(&req("image/png", "videos")).unwrap_err();
        assert_eq!(e.status(), 422);
        assert!(e.to_string().contains(FOLDER_MESSAGE));
        for bad in ["video/mp4", "application/pdf", "image/", "", "text/html"] {
            let e = validate(&req(bad, "avatars")).unwrap_err();
            assert!(e.to_string().contains(FILE_TYPE_MESSAGE), "{bad}");
        }
        let mut big = req("image/png", "avatars");
        big.file_size = Some(MAX_IMAGE_BYTES + 1);
        assert_eq!(validate(&big).unwrap_err().status(), 422);
    }

    #[test]
    fn public_urls() {
        assert_eq!(
            public_url(&r2(None), "avatars/x.png"),
            "https://acc.r2.cloudflarestorage.com/media/avatars/x.png"
        );
        assert_eq!(
            public_url(&r2(Some("https://pub-1.r2.dev")), "avatars/x.png"),
            "https://pub-1.r2.dev/avatars/x.png"
        );
        assert_eq!(
            public_url(&r2(Some("pub-1.r2.dev")), "a/x.png"),
            "https://pub-1.r2.dev/a/x.png"
        );
    }

    #[tokio::test]
    async fn presigned_put_is_path_style_and_signs_the_content_type() {
        let up = presign_with(&r2(None), &req("image/png", "avatars"), SystemTime::now())
            .await
            .unwrap();
        let url = url::Url::parse(&up.upload_url).unwrap();
        assert_eq!(url.host_str(), Some("acc.r2.cloudflarestorage.com"));
        assert!(url.path().starts_with("/media/avatars/"), "{}", url.path());
        assert!(url.path().ends_with(".png"));
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q.get("X-Amz-Expires").map(String::as_str), Some("3600"));
        assert!(q["X-Amz-Credential"].contains("/auto/s3/aws4_request"));
        assert!(q["X-Amz-SignedHeaders"].contains("content-type"));
        assert!(!q.contains_key("x-amz-checksum-crc32"));
        assert!(up.public_url.ends_with(&up.key));
    }
}
