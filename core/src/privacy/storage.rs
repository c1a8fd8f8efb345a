//! The private objects of the privacy features in R2 (S3-compatible): the
//! export archives, and the user's objects an account deletion removes.
//!
//! The client is the uploads' one ([`crate::uploads::s3_client`]: static
//! credentials, region `auto`, path-style); here it also sends requests.

use crate::config::R2Config;
use crate::{Context, Error, Result};
use aws_sdk_s3::Client;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, Utc};
use std::path::Path;
use std::time::Duration;

/// Object storage as configured: the client and the exports' bucket.
pub struct Storage {
    pub client: Client,
    pub bucket: String,
    pub r2: R2Config,
}

/// The storage, or `None` when no object storage is configured.
pub fn storage(ctx: &Context) -> Option<Storage> {
    let r2 = ctx.config.r2.as_ref()?;
    Some(Storage {
        client: crate::uploads::s3_client(r2),
        bucket: ctx
            .config
            .export_bucket
            .clone()
            .unwrap_or_else(|| r2.bucket.clone()),
        r2: r2.clone(),
    })
}

fn s3_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::internal(format!("object storage: {what}: {e}"))
}

impl Storage {
    /// Uploads a local file (streamed from disk) as a private object.
    pub async fn put_file(&self, key: &str, path: &Path, content_type: &str) -> Result<()> {
        let body = ByteStream::from_path(path)
            .await
            .map_err(|e| s3_error("reading the archive", e))?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                s3_error(
                    &format!("uploading {key}"),
                    aws_sdk_s3::error::DisplayErrorContext(e),
                )
            })?;
        Ok(())
    }

    /// A presigned `GET` of `key` in the exports' bucket, valid `lifetime`
    /// from `now`.
    pub async fn presign_get(
        &self,
        key: &str,
        now: DateTime<Utc>,
        lifetime: Duration,
    ) -> Result<String> {
        let cfg = PresigningConfig::builder()
            .start_time(now.into())
            .expires_in(lifetime.max(Duration::from_secs(1)))
            .build()
            .map_err(|e| s3_error("presigning configuration", e))?;
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(cfg)
            .await
            .map_err(|e| s3_error("presigning a download", e))?;
        Ok(req.uri().to_string())
    }

    /// Deletes one object of `bucket` (a missing object is fine).
    pub async fn delete_in(&self, bucket: &str, key: &str) -> Result<()> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| {
                s3_error(
                    &format!("deleting {key}"),
                    aws_sdk_s3::error::DisplayErrorContext(e),
                )
            })?;
        Ok(())
    }

    /// Deletes one object of the exports' bucket.
    pub async fn delete(&self, key: &str) -> Result<()> {
        let bucket = self.bucket.clone();
        self.delete_in(&bucket, key).await
    }

    /// Deletes every object of the exports' bucket under `prefix`; returns how many.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize> {
        let mut deleted = 0;
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.clone())
                .send()
                .await
                .map_err(|e| {
                    s3_error(
                        &format!("listing {prefix}"),
                        aws_sdk_s3::error::DisplayErrorContext(e),
                    )
                })?;
            for obj in page.contents() {
                if let Some(key) = obj.key() {
                    self.delete(key).await?;
                    deleted += 1;
                }
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(deleted)
    }

    /// The bucket and key of one of our objects given its public URL (an
    /// avatar uploaded through the presigned uploads), or `None` for any other URL.
    pub fn key_of_public_url(&self, url: &str) -> Option<String> {
        let sample = crate::uploads::public_url(&self.r2, "");
        let key = url.strip_prefix(&sample)?;
        let key = key.split(['?', '#']).next().unwrap_or("");
        let ok = crate::uploads::FOLDERS
            .iter()
            .any(|f| key.starts_with(&format!("{f}/")))
            && !key.contains("..");
        ok.then(|| key.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn store(public: Option<&str>) -> Storage {
        let r2 = R2Config {
            access_key_id: "AKID".into(),
            secret_access_key: Secret::new("secret"),
            endpoint_url: "https://acc.r2.cloudflarestorage.com".into(),
            bucket: "media".into(),
            public_domain: public.map(String::from),
        };
        Storage {
            client: crate::uploads::s3_client(&r2),
            bucket: "media".into(),
            r2,
        }
    }

    #[test]
    fn only_our_uploads_are_ours_to_delete() {
        let s = store(Some("https://pub-1.r2.dev"));
        assert_eq!(
            s.key_of_public_url("https://pub-1.r2.dev/avatars/a.png")
                .as_deref(),
            Some("avatars/a.png")
        );
        assert_eq!(
            s.key_of_public_url("https://www.gravatar.com/avatar/x"),
            None
        );
        assert_eq!(
            s.key_of_public_url("https://pub-1.r2.dev/exports/x.zip"),
            None
        );
        assert_eq!(
            s.key_of_public_url("https://pub-1.r2.dev/avatars/../x"),
            None
        );
        let s = store(None);
        assert_eq!(
            s.key_of_public_url("https://acc.r2.cloudflarestorage.com/media/thumbnails/t.jpg")
                .as_deref(),
            Some("thumbnails/t.jpg")
        );
    }
}
