//! Uploads endpoints (API.md §3.5): presigned R2 URLs for images.

use crate::auth::UserAuth;
use crate::error::ApiResult;
use crate::state::AppState;
use mambo_core::uploads::{self, PresignRequest};
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

pub struct UploadsApi;

/// What to upload.
#[derive(Object, Debug)]
pub struct PresignedUrlRequest {
    /// MIME type of the image, e.g. `image/png`.
    pub file_type: String,
    /// `avatars` or `thumbnails`.
    pub folder: String,
    /// Size of the file in bytes. Optional; when given it must be at most
    /// `max_size_bytes` and the upload must be exactly that long.
    pub file_size: Option<i64>,
}

/// A presigned `PUT` URL and where the file will be readable.
#[derive(Object, Debug)]
pub struct PresignedUrlResponse {
    /// `PUT` the file here with the same `Content-Type` (valid for `expires_in` seconds).
    pub upload_url: String,
    pub public_url: String,
    pub expires_in: u64,
    /// The largest image accepted.
    pub max_size_bytes: i64,
}

#[OpenApi(tag = "crate::routes::Tag::Uploads")]
impl UploadsApi {
    /// A presigned upload URL for an avatar or thumbnail image.
    #[oai(path = "/api/uploads/presigned-url", method = "post")]
    async fn presigned_url(
        &self,
        state: Data<&AppState>,
        _auth: UserAuth,
        body: Json<PresignedUrlRequest>,
    ) -> ApiResult<Json<PresignedUrlResponse>> {
        let req = PresignRequest {
            file_type: body.0.file_type,
            folder: body.0.folder,
            file_size: body.0.file_size,
        };
        let up = uploads::presign(&state.ctx, &req).await?;
        Ok(Json(PresignedUrlResponse {
            upload_url: up.upload_url,
            public_url: up.public_url,
            expires_in: up.expires_in,
            max_size_bytes: up.max_size_bytes,
        }))
    }
}
