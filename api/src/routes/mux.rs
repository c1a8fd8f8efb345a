//! Mux endpoints (API.md §3.6): video uploads, upload checks, asset deletion,
//! MP4 downloads and the signed webhook. The logic lives in `mambo_core::mux`.

use crate::auth::{AdminAuth, AuthUser, OptionalAuth, UserAuth};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use mambo_core::Error as CoreError;
use mambo_core::mux::{self, Caller, CheckRequest, UploadRequest, WebhookOutcome};
use poem::Request;
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{Object, OpenApi, Union};
use serde_json::Value;

pub struct MuxApi;

fn caller(u: &AuthUser) -> Caller {
    Caller {
        id: u.id,
        is_admin: u.is_admin(),
    }
}

/// `{upload_id, upload_url, status:"success"}` (the API client's format).
#[derive(Object, Debug)]
pub struct UploadUrlResponse {
    pub upload_id: String,
    pub upload_url: String,
    pub status: String,
}

/// `{url, uploadId}` (MuxUploader's format, used when the query names a lesson or file).
#[derive(Object, Debug)]
pub struct MuxUploaderResponse {
    pub url: String,
    #[oai(rename = "uploadId")]
    pub upload_id: String,
}

#[derive(Union, Debug)]
pub enum UploadUrlAnswer {
    Standard(UploadUrlResponse),
    MuxUploader(MuxUploaderResponse),
}

/// `{token, expires_in: 300}` (N5.5).
#[derive(Object, Debug)]
pub struct UploadTokenResponse {
    /// An HS256 JWT `{sub, exp, type: "upload"}`
    pub token: String,
    /// Seconds (300)
    pub expires_in: i64,
}

#[derive(Object, Debug)]
pub struct UploadStatusResponse {
    /// Mux's upload status, or `ready` once the video can be played.
    pub status: String,
    pub asset_id: Option<String>,
    pub playback_id: Option<String>,
}

#[derive(Object, Debug)]
pub struct CheckUploadResponse {
    /// `ready`, `processing` or `error`.
    pub status: String,
    #[oai(skip_serializing_if_is_none)]
    pub playback_id: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub asset_id: Option<String>,
    pub message: String,
    /// Present when this call attached a video to a post: the posting reward
    /// it paid (N6.4), or `null`
    #[oai(skip_serializing_if = "MaybeUndefined::is_undefined")]
    pub reward: MaybeUndefined<crate::routes::community::RewardOut>,
}

#[derive(Object, Debug)]
pub struct StatusMessage {
    pub status: String,
    pub message: String,
}

#[derive(Object, Debug)]
pub struct AssetExists {
    pub exists: bool,
    pub asset_id: String,
}

#[derive(Object, Debug)]
pub struct DownloadUrl {
    pub download_url: String,
    pub resolution: String,
}

#[derive(Object, Debug)]
pub struct DownloadAvailable {
    pub available: bool,
    pub download_url: Option<String>,
    pub resolution: Option<String>,
    pub message: Option<String>,
}

#[derive(Object, Debug)]
pub struct WebhookAck {
    pub status: String,
    #[oai(skip_serializing_if_is_none)]
    pub message: Option<String>,
}

/// Reads a string field of the optional upload-url body.
fn body_field(
    body: &Option<serde_json::Map<String, Value>>,
    key: &str,
) -> ApiResult<Option<String>> {
    match body.as_ref().and_then(|m| m.get(key)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(CoreError::validation(
            &["body", key],
            "Input should be a valid string",
            "string_type",
            other.clone(),
        )
        .into()),
    }
}

/// The optional JSON body of upload-url (MuxUploader sends none).
/// The query's values over the optional JSON body's.
fn upload_request(raw: &[u8], q: UploadRequest) -> ApiResult<UploadRequest> {
    let parsed = parse_upload_body(raw)?;
    Ok(UploadRequest {
        lesson_id: q.lesson_id.or(body_field(&parsed, "lesson_id")?),
        course_id: body_field(&parsed, "course_id")?,
        level_id: body_field(&parsed, "level_id")?,
        post_id: q.post_id.or(body_field(&parsed, "post_id")?),
        reply_id: body_field(&parsed, "reply_id")?,
        filename: q.filename.or(body_field(&parsed, "filename")?),
    })
}

fn parse_upload_body(raw: &[u8]) -> ApiResult<Option<serde_json::Map<String, Value>>> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match serde_json::from_slice::<Value>(raw) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        Ok(Value::Null) => Ok(None),
        Ok(other) => Err(CoreError::validation(
            &["body"],
            "Input should be a valid dictionary or object to extract fields from",
            "model_attributes_type",
            other,
        )
        .into()),
        Err(e) => Err(CoreError::with_object(
            422,
            serde_json::json!([{
                "type": "json_invalid", "loc": ["body", e.column()],
                "msg": "JSON decode error", "input": {}, "ctx": {"error": e.to_string()}
            }]),
        )
        .into()),
    }
}

/// The signed-in caller and the admin (if any) of an upload: the header or
/// cookie caller, the access token of `?token=`, and (for lesson, course and
/// level uploads only) the admin an upload token in `?token=` names (N5.5).
/// An upload token that cannot be used here (its subject is no longer an
/// admin, or the upload is not for a lesson, course or level) is a 401
/// `Could not validate credentials`, unless the header or cookie already
/// signs the caller in for a post or reply upload.
fn upload_callers(
    header_user: &Option<AuthUser>,
    token_user: &Option<AuthUser>,
    upload: Option<&Option<AuthUser>>,
    target: &UploadRequest,
) -> ApiResult<(Option<Caller>, Option<Caller>)> {
    let content = mux::is_content_upload(target);
    let upload_admin = upload.and_then(Option::as_ref).filter(|_| content);
    let admin = [header_user.as_ref(), token_user.as_ref(), upload_admin]
        .into_iter()
        .flatten()
        .find(|u| u.is_admin())
        .map(caller);
    if upload.is_some() && admin.is_none() && (content || header_user.is_none()) {
        return Err(ApiError::msg(401, "Could not validate credentials"));
    }
    let user = header_user.as_ref().or(token_user.as_ref()).map(caller);
    Ok((user, admin))
}

fn resolution_or(q: Option<String>, allowed: &[&str], msg: &str) -> ApiResult<String> {
    let r = q.unwrap_or_else(|| "high".into());
    if allowed.contains(&r.as_str()) {
        Ok(r)
    } else {
        Err(ApiError::msg(400, msg))
    }
}

async fn webhook(
    state: &AppState,
    sig: Option<String>,
    body: &[u8],
) -> ApiResult<Json<WebhookAck>> {
    let outcome = mux::handle_webhook(&state.ctx, sig.as_deref(), body).await?;
    Ok(Json(match outcome {
        WebhookOutcome::Processed | WebhookOutcome::Duplicate => WebhookAck {
            status: "ok".into(),
            message: None,
        },
        WebhookOutcome::Malformed => WebhookAck {
            status: "error".into(),
            message: Some("Internal error".into()),
        },
    }))
}

#[OpenApi(tag = "crate::routes::Tag::Mux")]
impl MuxApi {
    /// Creates a Mux direct upload. Lesson, course and level videos need an
    /// admin (bearer, cookie or `?token=`); post videos any signed-in owner.
    /// The optional JSON body is `{filename?, lesson_id?, course_id?, level_id?,
    /// post_id?, reply_id?}`; query values win over body values.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/api/mux/upload-url", method = "post")]
    async fn upload_url(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: OptionalAuth,
        lesson_id: Query<Option<String>>,
        filename: Query<Option<String>>,
        post_id: Query<Option<String>>,
        token: Query<Option<String>>,
        body: Vec<u8>,
    ) -> ApiResult<Json<UploadUrlAnswer>> {
        let header_user = auth.into_user();
        // N5.5: an upload token as the bearer or the cookie is no credential
        // (without the check it would read as anonymous, a 403 for content).
        if header_user.is_none()
            && crate::auth::bearer_token(req)
                .or_else(|| crate::auth::cookie_token(req))
                .is_some_and(|t| crate::auth::is_upload_token(&state.ctx.config, &t))
        {
            return Err(ApiError::msg(401, "Could not validate credentials"));
        }
        let query_token = token.0.as_deref().map(str::trim).filter(|t| !t.is_empty());
        let token_user = match query_token {
            Some(t) => crate::auth::resolve_token(req, t).await,
            None => None,
        };
        // N5.5: `Some(admin or None)` when `?token=` is an upload token.
        let upload = match query_token {
            Some(t)
                if token_user.is_none() && crate::auth::is_upload_token(&state.ctx.config, t) =>
            {
                // A database error was logged by the lookup: a 503, not a 401.
                Some(
                    crate::auth::resolve_upload_token(req, t)
                        .await
                        .map_err(|_| ApiError::msg(503, "Service temporarily unavailable"))?,
                )
            }
            _ => None,
        };
        let callers = |target: &UploadRequest| {
            upload_callers(&header_user, &token_user, upload.as_ref(), target)
        };

        let muxuploader_format = lesson_id.0.is_some() || filename.0.is_some();
        let from_query = UploadRequest {
            lesson_id: lesson_id.0,
            post_id: post_id.0,
            filename: filename.0,
            ..Default::default()
        };
        let request = match upload_request(&body, from_query.clone()) {
            Ok(r) => r,
            Err(refused) => {
                // The caller's rights come before what was wrong with the
                // body: judge them from the query alone.
                let (user, admin) = callers(&from_query)?;
                mux::authorize_upload(&state.ctx, user, admin, &from_query).await?;
                return Err(refused);
            }
        };
        let (user, admin) = callers(&request)?;
        let created = mux::create_upload(&state.ctx, user, admin, &request).await?;
        Ok(Json(if muxuploader_format {
            UploadUrlAnswer::MuxUploader(MuxUploaderResponse {
                url: created.upload_url,
                upload_id: created.upload_id,
            })
        } else {
            UploadUrlAnswer::Standard(UploadUrlResponse {
                upload_id: created.upload_id,
                upload_url: created.upload_url,
                status: "success".into(),
            })
        }))
    }

    /// A five-minute upload token for MuxUploader (admin): accepted only as
    /// `?token=` on `POST /api/mux/upload-url` for lesson, course and level
    /// uploads, while its subject is still an admin; a 401 everywhere else.
    #[oai(path = "/api/mux/upload-token", method = "post")]
    async fn upload_token(
        &self,
        state: Data<&AppState>,
        req: &Request,
        admin: AdminAuth,
    ) -> ApiResult<Json<UploadTokenResponse>> {
        let ip = crate::middleware::client_ip(req, &state.ctx.config);
        let actor = mambo_core::audit::Actor::new(admin.user().id, ip, state.ctx.clock.now());
        let t = mux::issue_upload_token(&state.ctx, actor).await?;
        Ok(Json(UploadTokenResponse {
            token: t.token,
            expires_in: t.expires_in,
        }))
    }

    /// The state of a direct upload; `ready` once the video has a playback id.
    #[oai(path = "/api/mux/upload-status/:upload_id", method = "get")]
    async fn upload_status(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        upload_id: Path<String>,
    ) -> ApiResult<Json<UploadStatusResponse>> {
        let s = mux::upload_status(&state.ctx, caller(auth.user()), &upload_id.0).await?;
        Ok(Json(UploadStatusResponse {
            status: s.status,
            asset_id: s.asset_id,
            playback_id: s.playback_id,
        }))
    }

    /// Looks for a finished video of a course, level, post or lesson at Mux and
    /// stores it (useful when the webhook did not arrive).
    #[oai(path = "/api/mux/check-upload-status", method = "post")]
    #[allow(clippy::too_many_arguments)]
    async fn check_upload_status(
        &self,
        state: Data<&AppState>,
        request: &Request,
        auth: OptionalAuth,
        lesson_id: Query<Option<String>>,
        course_id: Query<Option<String>>,
        level_id: Query<Option<String>>,
        post_id: Query<Option<String>>,
    ) -> ApiResult<Json<CheckUploadResponse>> {
        let req = CheckRequest {
            lesson_id: lesson_id.0,
            course_id: course_id.0,
            level_id: level_id.0,
            post_id: post_id.0,
        };
        let ip = crate::middleware::client_ip(request, &state.ctx.config);
        let r = mux::check_upload_status(&state.ctx, auth.user().map(caller), ip, &req).await?;
        Ok(Json(CheckUploadResponse {
            status: r.status,
            playback_id: r.playback_id,
            asset_id: r.asset_id,
            message: r.message,
            reward: match r.reward {
                None => MaybeUndefined::Undefined,
                Some(None) => MaybeUndefined::Null,
                Some(Some(reward)) => MaybeUndefined::Value(reward.into()),
            },
        }))
    }

    /// Deletes a video at Mux and clears it from every lesson, course, level,
    /// post and reply. Admins: any video; others: their own post or reply videos.
    #[oai(path = "/api/mux/asset/:asset_id", method = "delete")]
    async fn delete_asset(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: UserAuth,
        asset_id: Path<String>,
    ) -> ApiResult<Json<StatusMessage>> {
        let ip = crate::middleware::client_ip(req, &state.ctx.config);
        let message = mux::delete_asset(&state.ctx, caller(auth.user()), ip, &asset_id.0).await?;
        Ok(Json(StatusMessage {
            status: "success".into(),
            message,
        }))
    }

    /// Whether Mux still has the asset (admin).
    #[oai(path = "/api/mux/asset/:asset_id/exists", method = "get")]
    async fn asset_exists(
        &self,
        state: Data<&AppState>,
        _admin: AdminAuth,
        asset_id: Path<String>,
    ) -> ApiResult<Json<AssetExists>> {
        let exists = mux::asset_exists(&state.ctx, &asset_id.0).await?;
        Ok(Json(AssetExists {
            exists,
            asset_id: asset_id.0,
        }))
    }

    /// The MP4 download URL of a video the caller may watch.
    #[oai(path = "/api/mux/download-url/:playback_id", method = "get")]
    async fn download_url(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        playback_id: Path<String>,
        resolution: Query<Option<String>>,
    ) -> ApiResult<Json<DownloadUrl>> {
        let resolution = resolution_or(
            resolution.0,
            &["high", "medium"],
            "Resolution must be 'high' or 'medium'",
        )?;
        let user = auth.user();
        if !mux::may_watch(&state.ctx, &caller(user), user.is_staff(), &playback_id.0).await? {
            return Err(ApiError::msg(403, "You do not have access to this video"));
        }
        Ok(Json(DownloadUrl {
            download_url: mux::mp4_url(&state.ctx, &playback_id.0, &resolution),
            resolution,
        }))
    }

    /// Whether the MP4 rendition of a video exists yet.
    #[oai(path = "/api/mux/download-available/:playback_id", method = "get")]
    async fn download_available(
        &self,
        state: Data<&AppState>,
        playback_id: Path<String>,
        resolution: Query<Option<String>>,
    ) -> ApiResult<Json<DownloadAvailable>> {
        let resolution = resolution_or(
            resolution.0,
            &["high", "medium", "low"],
            "Resolution must be 'high', 'medium', or 'low'",
        )?;
        let a = mux::download_available(&state.ctx, &playback_id.0, &resolution).await;
        Ok(Json(DownloadAvailable {
            available: a.available,
            download_url: a.download_url,
            resolution: a.resolution,
            message: a.message,
        }))
    }

    /// Mux webhook (signed with `Mux-Signature`).
    #[oai(path = "/api/mux/webhook", method = "post")]
    async fn webhook(
        &self,
        state: Data<&AppState>,
        #[oai(name = "Mux-Signature")] signature: Header<Option<String>>,
        body: Vec<u8>,
    ) -> ApiResult<Json<WebhookAck>> {
        webhook(&state, signature.0, &body).await
    }

    /// Alias of `/api/mux/webhook`.
    #[oai(path = "/api/webhook", method = "post")]
    async fn webhook_alias(
        &self,
        state: Data<&AppState>,
        #[oai(name = "Mux-Signature")] signature: Header<Option<String>>,
        body: Vec<u8>,
    ) -> ApiResult<Json<WebhookAck>> {
        webhook(&state, signature.0, &body).await
    }

    /// Alias of `/api/mux/webhook`.
    #[oai(path = "/api/webhooks", method = "post")]
    async fn webhooks_alias(
        &self,
        state: Data<&AppState>,
        #[oai(name = "Mux-Signature")] signature: Header<Option<String>>,
        body: Vec<u8>,
    ) -> ApiResult<Json<WebhookAck>> {
        webhook(&state, signature.0, &body).await
    }
}
