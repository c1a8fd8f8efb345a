//! Videos on Mux (API.md §3.6, §4.14; defects D5–D9, D15, D36).
//!
//! - A small reqwest client for the Mux Video API (basic auth with
//!   `MUX_TOKEN_ID`/`MUX_TOKEN_SECRET`, base URL from `MUX_BASE_URL`, a timeout on
//!   every call): direct uploads, assets.
//! - Direct uploads for lessons, course previews, level previews, community posts
//!   and replies, with the metadata and passthrough of §4.14; each upload is
//!   recorded in `mux_uploads` so it can be reconciled without a webhook.
//! - The signed webhook: hex HMAC-SHA256 over `"{t}.{body}"`, constant time,
//!   300 s tolerance, several `v1` values; every event id is processed once
//!   (`processed_webhook_events`), and the effects are idempotent anyway.
//! - Attaching and clearing asset ids on every table that holds them.

use crate::audit;
use crate::economy::{Amounts, PRO_SQL};
use crate::jobs::{self, BadgeCheckJob, MuxSyncAction, MuxSyncJob};
use crate::{Context, Error, Result};
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;
use sqlx::PgConnection;
use std::time::Duration;
use uuid::Uuid;

/// Longest time one call to the Mux API may take.
const MUX_TIMEOUT: Duration = Duration::from_secs(15);
/// How far a webhook timestamp may be from our clock.
pub const WEBHOOK_TOLERANCE_SECS: i64 = 300;
/// How many recent assets `check-upload-status` scans.
const LIST_LIMIT: u32 = 50;
/// An upload still pending after this long is reconciled by the `mux_sync` job.
const RECONCILE_AFTER: chrono::Duration = chrono::Duration::minutes(5);
/// Uploads older than this are no longer reconciled (Mux expires them long before).
const RECONCILE_UNTIL: chrono::Duration = chrono::Duration::days(2);
/// Uploads reconciled per run.
const RECONCILE_BATCH: i64 = 100;

// ---------------------------------------------------------------------------
// The Mux API client
// ---------------------------------------------------------------------------

/// A failed call to Mux.
#[derive(Debug, thiserror::Error)]
pub enum MuxError {
    #[error("Mux answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("Mux could not be reached: {0}")]
    Transport(String),
    #[error("unexpected answer from Mux: {0}")]
    Decode(String),
}

impl MuxError {
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

/// A direct upload as Mux reports it.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct MuxUpload {
    pub id: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub asset_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PlaybackId {
    pub id: String,
    #[serde(default)]
    pub policy: Option<String>,
}

/// An asset as Mux reports it.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct MuxAsset {
    pub id: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub playback_ids: Option<Vec<PlaybackId>>,
    /// A JSON string (what we send) or, leniently, an object.
    #[serde(default)]
    pub passthrough: Option<Value>,
    #[serde(default)]
    pub upload_id: Option<String>,
}

impl MuxAsset {
    pub fn first_playback_id(&self) -> Option<&str> {
        self.playback_ids
            .as_ref()?
            .iter()
            .map(|p| p.id.as_str())
            .find(|id| !id.is_empty())
    }
    pub fn passthrough_object(&self) -> Option<serde_json::Map<String, Value>> {
        parse_passthrough(self.passthrough.as_ref()?)
    }
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

/// The Mux Video API with this deployment's credentials.
#[derive(Clone)]
pub struct MuxClient {
    http: reqwest::Client,
    base: String,
    token_id: String,
    token_secret: String,
}

impl std::fmt::Debug for MuxClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MuxClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// `POST /api/mux/upload-url` without Mux credentials (§3.6).
pub const MSG_VIDEO_NOT_CONFIGURED: &str = "Video service not configured";

/// The Mux client, or 503 `Mux is not configured`.
pub fn client(ctx: &Context) -> Result<MuxClient> {
    let mux = ctx
        .config
        .mux
        .as_ref()
        .ok_or_else(|| Error::not_configured("Mux"))?;
    Ok(MuxClient {
        http: ctx.http.clone(),
        base: ctx.config.mux_base_url.trim_end_matches('/').to_string(),
        token_id: mux.token_id.clone(),
        token_secret: mux.token_secret.expose().to_string(),
    })
}

impl MuxClient {
    /// `{base}/video/v1/{segments...}` with every segment percent-encoded.
    fn url(&self, segments: &[&str]) -> std::result::Result<url::Url, MuxError> {
        let mut u = url::Url::parse(&self.base)
            .map_err(|e| MuxError::Transport(format!("bad MUX_BASE_URL: {e}")))?;
        {
            let mut p = u
                .path_segments_mut()
                .map_err(|_| MuxError::Transport("bad MUX_BASE_URL".into()))?;
            p.pop_if_empty().push("video").push("v1");
            for s in segments {
                p.push(s);
            }
        }
        Ok(u)
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> std::result::Result<Vec<u8>, MuxError> {
        let resp = rb
            .basic_auth(&self.token_id, Some(&self.token_secret))
            .timeout(MUX_TIMEOUT)
            .send()
            .await
            .map_err(|e| MuxError::Transport(e.without_url().to_string()))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| MuxError::Transport(e.without_url().to_string()))?;
        if !(200..300).contains(&status) {
            let body: String = String::from_utf8_lossy(&bytes).chars().take(300).collect();
            return Err(MuxError::Status { status, body });
        }
        Ok(bytes.to_vec())
    }

    async fn data<T: serde::de::DeserializeOwned>(
        &self,
        rb: reqwest::RequestBuilder,
    ) -> std::result::Result<T, MuxError> {
        let bytes = self.send(rb).await?;
        serde_json::from_slice::<Envelope<T>>(&bytes)
            .map(|e| e.data)
            .map_err(|e| MuxError::Decode(e.to_string()))
    }

    /// `POST /video/v1/uploads`.
    pub async fn create_direct_upload(
        &self,
        body: &Value,
    ) -> std::result::Result<MuxUpload, MuxError> {
        let url = self.url(&["uploads"])?;
        self.data(self.http.post(url).json(body)).await
    }

    /// `GET /video/v1/uploads/{id}`.
    pub async fn get_upload(&self, upload_id: &str) -> std::result::Result<MuxUpload, MuxError> {
        let url = self.url(&["uploads", upload_id])?;
        self.data(self.http.get(url)).await
    }

    /// `GET /video/v1/assets/{id}`.
    pub async fn get_asset(&self, asset_id: &str) -> std::result::Result<MuxAsset, MuxError> {
        let url = self.url(&["assets", asset_id])?;
        self.data(self.http.get(url)).await
    }

    /// `GET /video/v1/assets?limit=N` (most recent first).
    pub async fn list_assets(&self, limit: u32) -> std::result::Result<Vec<MuxAsset>, MuxError> {
        let mut url = self.url(&["assets"])?;
        url.query_pairs_mut()
            .append_pair("limit", &limit.to_string());
        self.data(self.http.get(url)).await
    }

    /// `DELETE /video/v1/assets/{id}`.
    pub async fn delete_asset(&self, asset_id: &str) -> std::result::Result<(), MuxError> {
        let url = self.url(&["assets", asset_id])?;
        self.send(self.http.delete(url)).await.map(|_| ())
    }
}

// ---------------------------------------------------------------------------
// Targets, passthrough, metadata
// ---------------------------------------------------------------------------

/// What an upload's video belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Lesson(Uuid),
    Course(Uuid),
    Level(Uuid),
    Post(Uuid),
    Reply(Uuid),
}

impl Target {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Lesson(_) => "lesson",
            Self::Course(_) => "course",
            Self::Level(_) => "level",
            Self::Post(_) => "post",
            Self::Reply(_) => "reply",
        }
    }
    pub fn id(&self) -> Uuid {
        match *self {
            Self::Lesson(id)
            | Self::Course(id)
            | Self::Level(id)
            | Self::Post(id)
            | Self::Reply(id) => id,
        }
    }
    fn from_parts(kind: &str, id: Option<Uuid>) -> Option<Self> {
        let id = id?;
        Some(match kind {
            "lesson" => Self::Lesson(id),
            "course" => Self::Course(id),
            "level" => Self::Level(id),
            "post" => Self::Post(id),
            "reply" => Self::Reply(id),
            _ => return None,
        })
    }
    /// The passthrough `type` we write for this kind of target.
    fn passthrough_type(&self) -> &'static str {
        match self {
            Self::Lesson(_) => "lesson",
            Self::Course(_) => "course-preview",
            Self::Level(_) => "level-preview",
            Self::Post(_) => "community-post",
            Self::Reply(_) => "community-reply",
        }
    }
    fn passthrough_key(&self) -> &'static str {
        match self {
            Self::Lesson(_) => "lesson_id",
            Self::Course(_) => "course_id",
            Self::Level(_) => "level_id",
            Self::Post(_) => "post_id",
            Self::Reply(_) => "reply_id",
        }
    }
}

/// A passthrough value as an object: a JSON string holding an object, or an object.
pub fn parse_passthrough(v: &Value) -> Option<serde_json::Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m.clone()),
        Value::String(s) => match serde_json::from_str::<Value>(s).ok()? {
            Value::Object(m) => Some(m),
            _ => None,
        },
        _ => None,
    }
}

fn id_field(p: &serde_json::Map<String, Value>, key: &str) -> Option<Uuid> {
    p.get(key)
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s.trim()).ok())
}

/// Where a passthrough routes: by its `type` first (a level preview also names
/// its course), then by the first id key present.
pub fn target_from_passthrough(p: &serde_json::Map<String, Value>) -> Option<Target> {
    let by_type = match p.get("type").and_then(Value::as_str) {
        Some("lesson") => id_field(p, "lesson_id").map(Target::Lesson),
        Some("course-preview") => id_field(p, "course_id").map(Target::Course),
        Some("level-preview") => id_field(p, "level_id").map(Target::Level),
        Some("community-post") => id_field(p, "post_id").map(Target::Post),
        Some("community-reply") => id_field(p, "reply_id").map(Target::Reply),
        _ => None,
    };
    by_type.or_else(|| {
        id_field(p, "lesson_id")
            .map(Target::Lesson)
            .or_else(|| id_field(p, "level_id").map(Target::Level))
            .or_else(|| id_field(p, "course_id").map(Target::Course))
            .or_else(|| id_field(p, "post_id").map(Target::Post))
            .or_else(|| id_field(p, "reply_id").map(Target::Reply))
    })
}

/// True when an asset's passthrough names `target` (and, if it has a `type`,
/// the same kind of target).
fn passthrough_matches(p: &serde_json::Map<String, Value>, target: Target) -> bool {
    if id_field(p, target.passthrough_key()) != Some(target.id()) {
        return false;
    }
    match p.get("type").and_then(Value::as_str) {
        Some(t) => t == target.passthrough_type(),
        None => true,
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// `meta` and `passthrough` of a new asset (§4.14).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AssetLabels {
    pub external_id: Option<String>,
    pub title: Option<String>,
    pub creator_id: Option<String>,
    pub passthrough: Option<Value>,
}

impl AssetLabels {
    fn new(external_id: String, title: String, creator_id: &str, passthrough: Value) -> Self {
        Self {
            external_id: Some(truncate(&external_id, 128)),
            title: Some(truncate(&title, 512)),
            creator_id: Some(truncate(creator_id, 128)),
            passthrough: Some(passthrough),
        }
    }
}

/// `lesson-{course_slug}[-w{week}][-d{day}][-l{order}]`: falsy parts are left out.
pub fn lesson_external_id(
    course_slug: &str,
    week: Option<i32>,
    day: Option<i32>,
    order: i32,
) -> String {
    let mut parts = vec![course_slug.to_string()];
    if let Some(w) = week.filter(|w| *w != 0) {
        parts.push(format!("w{w}"));
    }
    if let Some(d) = day.filter(|d| *d != 0) {
        parts.push(format!("d{d}"));
    }
    if order != 0 {
        parts.push(format!("l{order}"));
    }
    format!("lesson-{}", parts.join("-"))
}

/// `level-preview-{course_slug}-{level title lowercased, spaces→-, first 30}`.
pub fn level_external_id(course_slug: &str, level_title: &str) -> String {
    let slug: String = level_title.to_lowercase().replace(' ', "-");
    format!("level-preview-{course_slug}-{}", truncate(&slug, 30))
}

/// The body of `POST /video/v1/uploads` (§4.14): public playback, not a test
/// asset, `cors_origin` = `FRONTEND_URL`, 1080p cap for community videos and
/// capped-1080p MP4 renditions (for downloads) for everything else.
pub fn direct_upload_body(cors_origin: &str, community: bool, labels: &AssetLabels) -> Value {
    let mut settings = json!({
        "playback_policies": ["public"],
        "test": false,
    });
    if community {
        settings["max_resolution_tier"] = json!("1080p");
    } else {
        settings["mp4_support"] = json!("capped-1080p");
    }
    if let Some(p) = &labels.passthrough {
        settings["passthrough"] = Value::String(p.to_string());
    }
    let mut meta = serde_json::Map::new();
    if let Some(v) = &labels.title {
        meta.insert("title".into(), json!(v));
    }
    if let Some(v) = &labels.creator_id {
        meta.insert("creator_id".into(), json!(v));
    }
    if let Some(v) = &labels.external_id {
        meta.insert("external_id".into(), json!(v));
    }
    if !meta.is_empty() {
        settings["meta"] = Value::Object(meta);
    }
    json!({
        "cors_origin": cors_origin,
        "new_asset_settings": settings,
    })
}

// ---------------------------------------------------------------------------
// Video slots (§4.3)
// ---------------------------------------------------------------------------

/// `(used, limit)` video slots of a user: posts with an asset plus non-accepted
/// replies with an asset; 5 base, 20 pro. One query.
pub async fn slot_usage(
    ctx: &Context,
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<(i64, i64)> {
    let (used, pro): (i64, bool) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT
            (SELECT COUNT(*) FROM posts WHERE user_id = $1 AND mux_asset_id IS NOT NULL)
          + (SELECT COUNT(*) FROM post_replies
             WHERE user_id = $1 AND mux_asset_id IS NOT NULL AND NOT is_accepted_answer),
            COALESCE((SELECT {PRO_SQL} FROM subscriptions s WHERE s.user_id = $1), false)"
    )))
    .bind(user_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok((used, Amounts::from_config(&ctx.config).slot_limit(pro)))
}

fn slot_full_error(limit: i64, used: i64) -> Error {
    Error::with_object(
        422,
        json!({
            "success": false,
            "message": format!(
                "You've reached your {limit} video limit. Delete an old video to post a new one."
            ),
            "current_slots": used,
            "max_slots": limit,
        }),
    )
}

// ---------------------------------------------------------------------------
// POST /api/mux/upload-url
// ---------------------------------------------------------------------------

/// A caller as the API resolved it.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub id: Uuid,
    pub is_admin: bool,
}

/// What the upload is for (query values already merged over body values).
#[derive(Debug, Clone, Default)]
pub struct UploadRequest {
    pub lesson_id: Option<String>,
    pub course_id: Option<String>,
    pub level_id: Option<String>,
    pub post_id: Option<String>,
    pub reply_id: Option<String>,
    pub filename: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CreatedUpload {
    pub upload_id: String,
    pub upload_url: String,
}

fn present(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn parse_or_404(raw: &str, what: &str) -> Result<Uuid> {
    Uuid::parse_str(raw.trim()).map_err(|_| Error::not_found(format!("{what} not found")))
}

/// Who may upload for `req`'s kind of target: an admin for lesson, course and
/// level videos (and when no target is given), any signed-in user for post
/// and reply videos (ownership is checked with the target).
fn upload_caller(
    user: Option<Caller>,
    admin: Option<Caller>,
    req: &UploadRequest,
) -> Result<Caller> {
    if present(&req.lesson_id).is_some()
        || present(&req.course_id).is_some()
        || present(&req.level_id).is_some()
    {
        admin.ok_or_else(|| {
            Error::forbidden("Admin access required for lesson/course video uploads")
        })
    } else if present(&req.post_id).is_some() || present(&req.reply_id).is_some() {
        user.ok_or_else(|| {
            Error::unauthorized("Authentication required for community post uploads")
        })
    } else {
        admin.ok_or_else(|| Error::unauthorized("Admin access required"))
    }
}

/// The rights part of [`create_upload`] alone (role, then ownership of a
/// post or reply target), for a request whose body could not be read: the
/// caller who may not upload hears 401/403, not what was wrong with the body.
/// `req` holds what the query named; with no target there, the body's intent
/// is unknown and any signed-in caller may be uploading for their own post.
pub async fn authorize_upload(
    ctx: &Context,
    user: Option<Caller>,
    admin: Option<Caller>,
    req: &UploadRequest,
) -> Result<()> {
    let named = [
        &req.lesson_id,
        &req.course_id,
        &req.level_id,
        &req.post_id,
        &req.reply_id,
    ]
    .into_iter()
    .any(|v| present(v).is_some());
    if !named {
        return user
            .or(admin)
            .map(|_| ())
            .ok_or_else(|| Error::unauthorized("Admin access required"));
    }
    let caller = upload_caller(user, admin, req)?;
    let (table, raw, what) = match (present(&req.post_id), present(&req.reply_id)) {
        (Some(p), _) => ("posts", p, "post"),
        (None, Some(r)) => ("post_replies", r, "reply"),
        (None, None) => return Ok(()),
    };
    let Ok(id) = Uuid::parse_str(raw) else {
        return Ok(());
    };
    let owner: Option<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT user_id FROM {table} WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&ctx.db)
    .await?;
    match owner {
        Some(o) if o != caller.id && !caller.is_admin => Err(Error::forbidden(if what == "post" {
            "You can only upload videos to your own posts"
        } else {
            "You can only upload videos to your own replies"
        })),
        _ => Ok(()),
    }
}

/// Creates a Mux direct upload (§3.6). `user` is the signed-in caller (if any);
/// `admin` is the caller when an admin is established by header, cookie or
/// `?token=`.
pub async fn create_upload(
    ctx: &Context,
    user: Option<Caller>,
    admin: Option<Caller>,
    req: &UploadRequest,
) -> Result<CreatedUpload> {
    let lesson = present(&req.lesson_id);
    let course = present(&req.course_id);
    let level = present(&req.level_id);
    let post = present(&req.post_id);
    let reply = present(&req.reply_id);

    // Authorization first (nothing about the deployment leaks to strangers).
    let caller = upload_caller(user, admin, req)?;
    // §3.6 fixes this endpoint's message; the status is issue 7's 503.
    let mux = client(ctx).map_err(|_| Error::unavailable(MSG_VIDEO_NOT_CONFIGURED))?;

    let mut conn = ctx.db.acquire().await?;
    let (target, labels) = if let Some(raw) = lesson {
        let id = parse_or_404(raw, "Lesson")?;
        lesson_labels(&mut conn, id).await?
    } else if let Some(raw) = course {
        let id = parse_or_404(raw, "Course")?;
        course_labels(&mut conn, id).await?
    } else if let Some(raw) = level {
        let id = parse_or_404(raw, "Level")?;
        level_labels(&mut conn, id).await?
    } else if let Some(raw) = post {
        let id = parse_or_404(raw, "Post")?;
        post_labels(ctx, &mut conn, id, caller).await?
    } else if let Some(raw) = reply {
        let id = parse_or_404(raw, "Reply")?;
        reply_labels(ctx, &mut conn, id, caller).await?
    } else {
        (None, AssetLabels::default())
    };
    drop(conn);

    let community = matches!(target, Some(Target::Post(_) | Target::Reply(_)));
    let body = direct_upload_body(&ctx.config.frontend_url, community, &labels);
    let upload = mux.create_direct_upload(&body).await.map_err(|e| {
        tracing::error!(error = %e, "creating a Mux direct upload failed");
        Error::http(500, "Failed to create video upload URL")
    })?;
    let url = upload
        .url
        .clone()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            tracing::error!("Mux returned a direct upload without a URL");
            Error::http(500, "Failed to create video upload URL")
        })?;

    sqlx::query(
        "INSERT INTO mux_uploads (upload_id, user_id, target_type, target_id, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $5)
         ON CONFLICT (upload_id) DO NOTHING",
    )
    .bind(&upload.id)
    .bind(caller.id)
    .bind(target.map(|t| t.kind()).unwrap_or("none"))
    .bind(target.map(|t| t.id()))
    .bind(ctx.clock.now())
    .execute(&ctx.db)
    .await?;
    tracing::info!(upload_id = %upload.id, target = ?target, "Mux direct upload created");
    Ok(CreatedUpload {
        upload_id: upload.id,
        upload_url: url,
    })
}

/// Title, week, day, order, world slug, world title.
type LessonRow = (String, Option<i32>, Option<i32>, i32, String, String);

async fn lesson_labels(conn: &mut PgConnection, id: Uuid) -> Result<(Option<Target>, AssetLabels)> {
    let row: Option<LessonRow> = sqlx::query_as(
        "SELECT l.title, l.week_number, l.day_number, l.order_index, w.slug, w.title
         FROM lessons l JOIN levels v ON v.id = l.level_id JOIN worlds w ON w.id = v.world_id
         WHERE l.id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let (title, week, day, order, slug, world_title) =
        row.ok_or_else(|| Error::not_found("Lesson not found"))?;
    let mut p = serde_json::Map::new();
    p.insert("lesson_id".into(), json!(id.to_string()));
    p.insert("type".into(), json!("lesson"));
    p.insert("course_slug".into(), json!(slug));
    if let Some(w) = week.filter(|w| *w != 0) {
        p.insert("week".into(), json!(w));
    }
    if let Some(d) = day.filter(|d| *d != 0) {
        p.insert("day".into(), json!(d));
    }
    if order != 0 {
        p.insert("lesson_order".into(), json!(order));
    }
    Ok((
        Some(Target::Lesson(id)),
        AssetLabels::new(
            lesson_external_id(&slug, week, day, order),
            format!("{world_title} - {title}"),
            "lesson",
            Value::Object(p),
        ),
    ))
}

async fn course_labels(conn: &mut PgConnection, id: Uuid) -> Result<(Option<Target>, AssetLabels)> {
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT title, slug FROM worlds WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    let (title, slug) = row.ok_or_else(|| Error::not_found("Course not found"))?;
    Ok((
        Some(Target::Course(id)),
        AssetLabels::new(
            format!("course-preview-{slug}"),
            format!("{title} - Preview"),
            "course-preview",
            json!({"course_id": id.to_string(), "type": "course-preview", "course_slug": slug}),
        ),
    ))
}

async fn level_labels(conn: &mut PgConnection, id: Uuid) -> Result<(Option<Target>, AssetLabels)> {
    let row: Option<(String, Uuid, String, String)> = sqlx::query_as(
        "SELECT v.title, w.id, w.slug, w.title
         FROM levels v JOIN worlds w ON w.id = v.world_id WHERE v.id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let (title, world_id, slug, world_title) =
        row.ok_or_else(|| Error::not_found("Level not found"))?;
    Ok((
        Some(Target::Level(id)),
        AssetLabels::new(
            level_external_id(&slug, &title),
            format!("{world_title} - {title} Preview"),
            "level-preview",
            json!({
                "level_id": id.to_string(),
                "type": "level-preview",
                "course_slug": slug,
                "course_id": world_id.to_string(),
            }),
        ),
    ))
}

async fn post_labels(
    ctx: &Context,
    conn: &mut PgConnection,
    id: Uuid,
    caller: Caller,
) -> Result<(Option<Target>, AssetLabels)> {
    let row: Option<(Uuid, String, String, Option<String>)> =
        sqlx::query_as("SELECT user_id, post_type, title, mux_asset_id FROM posts WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    let (owner, post_type, title, asset) = row.ok_or_else(|| Error::not_found("Post not found"))?;
    if owner != caller.id && !caller.is_admin {
        return Err(Error::forbidden(
            "You can only upload videos to your own posts",
        ));
    }
    // D15: the slot limit holds before the upload (a post that already has a
    // video keeps its slot when the video is replaced).
    if asset.is_none() {
        let (used, limit) = slot_usage(ctx, conn, owner).await?;
        if used >= limit {
            return Err(slot_full_error(limit, used));
        }
    }
    let title = if title.trim().is_empty() {
        "Community Post".to_string()
    } else {
        title
    };
    let creator = if post_type == "stage" {
        "community-stage"
    } else {
        "community-lab"
    };
    let short: String = id.to_string().chars().take(8).collect();
    Ok((
        Some(Target::Post(id)),
        AssetLabels::new(
            format!("community-post-{short}"),
            title,
            creator,
            json!({"post_id": id.to_string(), "type": "community-post", "post_type": post_type}),
        ),
    ))
}

async fn reply_labels(
    ctx: &Context,
    conn: &mut PgConnection,
    id: Uuid,
    caller: Caller,
) -> Result<(Option<Target>, AssetLabels)> {
    let row: Option<(Uuid, Option<String>, bool)> = sqlx::query_as(
        "SELECT user_id, mux_asset_id, is_accepted_answer FROM post_replies WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let (owner, asset, accepted) = row.ok_or_else(|| Error::not_found("Reply not found"))?;
    if owner != caller.id && !caller.is_admin {
        return Err(Error::forbidden(
            "You can only upload videos to your own replies",
        ));
    }
    if asset.is_none() && !accepted {
        let (used, limit) = slot_usage(ctx, conn, owner).await?;
        if used >= limit {
            return Err(slot_full_error(limit, used));
        }
    }
    let short: String = id.to_string().chars().take(8).collect();
    Ok((
        Some(Target::Reply(id)),
        AssetLabels::new(
            format!("community-reply-{short}"),
            "Community Reply".into(),
            "community-reply",
            json!({"reply_id": id.to_string(), "type": "community-reply"}),
        ),
    ))
}

// ---------------------------------------------------------------------------
// Attaching and clearing asset ids
// ---------------------------------------------------------------------------

/// Stores `asset_id`/`playback_id` on the target. Returns false when the target
/// no longer exists. A Stage post that gains a video queues the `videos_posted`
/// badge check (D8); call [`jobs::wake_relay`] after the commit.
pub async fn attach(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    target: Target,
    asset_id: &str,
    playback_id: &str,
) -> Result<bool> {
    let id = target.id();
    let found = match target {
        Target::Lesson(_) => sqlx::query(
            "UPDATE lessons SET mux_asset_id = $2, mux_playback_id = $3, updated_at = $4
             WHERE id = $1",
        ),
        Target::Course(_) => sqlx::query(
            "UPDATE worlds SET mux_preview_asset_id = $2, mux_preview_playback_id = $3,
                               updated_at = $4
             WHERE id = $1",
        ),
        Target::Level(_) => sqlx::query(
            "UPDATE levels SET mux_preview_asset_id = $2, mux_preview_playback_id = $3,
                               updated_at = $4
             WHERE id = $1",
        ),
        Target::Reply(_) => sqlx::query(
            "UPDATE post_replies SET mux_asset_id = $2, mux_playback_id = $3
             WHERE id = $1 AND $4::timestamptz IS NOT NULL",
        ),
        Target::Post(_) => {
            let row: Option<(Uuid, String, Option<String>)> = sqlx::query_as(
                "WITH old AS (SELECT id, mux_asset_id FROM posts WHERE id = $1 FOR UPDATE)
                 UPDATE posts p SET mux_asset_id = $2, mux_playback_id = $3
                 FROM old WHERE p.id = old.id
                 RETURNING p.user_id, p.post_type, old.mux_asset_id",
            )
            .bind(id)
            .bind(asset_id)
            .bind(playback_id)
            .fetch_optional(&mut *conn)
            .await?;
            let Some((user_id, post_type, old)) = row else {
                return Ok(false);
            };
            if post_type == "stage" && old.as_deref() != Some(asset_id) {
                jobs::enqueue(
                    conn,
                    &BadgeCheckJob {
                        user_id,
                        stat: "videos_posted".into(),
                    },
                )
                .await?;
            }
            return Ok(true);
        }
    }
    .bind(id)
    .bind(asset_id)
    .bind(playback_id)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        > 0;
    Ok(found)
}

/// How many rows lost an asset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Cleared {
    pub lessons: u64,
    pub courses: u64,
    pub levels: u64,
    pub posts: u64,
    pub replies: u64,
}

impl Cleared {
    pub fn total(&self) -> u64 {
        self.lessons + self.courses + self.levels + self.posts + self.replies
    }
    /// `1 lesson(s), 1 course preview(s)`, or `database` when nothing was cleared.
    pub fn describe(&self) -> String {
        let mut parts = vec![];
        if self.lessons > 0 {
            parts.push(format!("{} lesson(s)", self.lessons));
        }
        if self.courses > 0 {
            parts.push(format!("{} course preview(s)", self.courses));
        }
        if self.levels > 0 {
            parts.push(format!("{} level preview(s)", self.levels));
        }
        if self.posts > 0 {
            parts.push(format!("{} post(s)", self.posts));
        }
        if self.replies > 0 {
            parts.push(format!("{} reply(ies)", self.replies));
        }
        if parts.is_empty() {
            "database".into()
        } else {
            parts.join(", ")
        }
    }
}

/// Clears `asset_id` from every lesson (with `video_url = ""`), course preview,
/// level preview, post and reply. With `owner`, only that user's posts and
/// replies are cleared (a non-admin deleting their own video).
pub async fn clear_asset(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    asset_id: &str,
    owner: Option<Uuid>,
) -> Result<Cleared> {
    let lessons = sqlx::query(
        "UPDATE lessons SET mux_asset_id = NULL, mux_playback_id = NULL, video_url = '',
                            updated_at = $2
         WHERE mux_asset_id = $1",
    )
    .bind(asset_id)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let courses = sqlx::query(
        "UPDATE worlds SET mux_preview_asset_id = NULL, mux_preview_playback_id = NULL,
                           updated_at = $2
         WHERE mux_preview_asset_id = $1",
    )
    .bind(asset_id)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let levels = sqlx::query(
        "UPDATE levels SET mux_preview_asset_id = NULL, mux_preview_playback_id = NULL,
                           updated_at = $2
         WHERE mux_preview_asset_id = $1",
    )
    .bind(asset_id)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let posts = sqlx::query(
        "UPDATE posts SET mux_asset_id = NULL, mux_playback_id = NULL
         WHERE mux_asset_id = $1 AND ($2::uuid IS NULL OR user_id = $2)",
    )
    .bind(asset_id)
    .bind(owner)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let replies = sqlx::query(
        "UPDATE post_replies SET mux_asset_id = NULL, mux_playback_id = NULL
         WHERE mux_asset_id = $1 AND ($2::uuid IS NULL OR user_id = $2)",
    )
    .bind(asset_id)
    .bind(owner)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(Cleared {
        lessons,
        courses,
        levels,
        posts,
        replies,
    })
}

async fn mark_upload(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    upload_id: &str,
    status: &str,
    asset_id: Option<&str>,
    playback_id: Option<&str>,
    error: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "UPDATE mux_uploads
         SET status = $2,
             asset_id = COALESCE($3, asset_id),
             playback_id = COALESCE($4, playback_id),
             error = COALESCE($5, error),
             updated_at = $6
         WHERE upload_id = $1",
    )
    .bind(upload_id)
    .bind(status)
    .bind(asset_id)
    .bind(playback_id)
    .bind(error)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn recorded_upload(
    conn: &mut PgConnection,
    upload_id: &str,
) -> Result<Option<(Option<Uuid>, Option<Target>)>> {
    let row: Option<(Option<Uuid>, String, Option<Uuid>)> = sqlx::query_as(
        "SELECT user_id, target_type, target_id FROM mux_uploads WHERE upload_id = $1",
    )
    .bind(upload_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|(user, kind, id)| (user, Target::from_parts(&kind, id))))
}

// ---------------------------------------------------------------------------
// GET /api/mux/upload-status/{upload_id}
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize)]
pub struct UploadStatus {
    pub status: String,
    pub asset_id: Option<String>,
    pub playback_id: Option<String>,
}

/// Mux's upload status, or `ready` once the asset has a playback id and is not
/// still preparing (D9). A ready upload we recorded is attached to its target.
pub async fn upload_status(ctx: &Context, caller: Caller, upload_id: &str) -> Result<UploadStatus> {
    let mut conn = ctx.db.acquire().await?;
    let recorded = recorded_upload(&mut conn, upload_id).await?;
    drop(conn);
    if let Some((Some(owner), _)) = recorded
        && owner != caller.id
        && !caller.is_admin
    {
        return Err(Error::forbidden("Not your upload"));
    }
    let mux = client(ctx)?;
    let failed = |e: MuxError| {
        if e.is_not_found() {
            Error::not_found("Upload not found")
        } else {
            tracing::error!(error = %e, "checking a Mux upload failed");
            Error::http(500, "Error checking upload status")
        }
    };
    let upload = mux.get_upload(upload_id).await.map_err(failed)?;
    let mut status = upload.status.clone().unwrap_or_else(|| "waiting".into());
    let mut playback_id = None;
    if let Some(asset_id) = upload.asset_id.as_deref().filter(|a| !a.is_empty()) {
        let asset = mux.get_asset(asset_id).await.map_err(|e| {
            tracing::error!(error = %e, "reading a Mux asset failed");
            Error::http(500, "Error checking upload status")
        })?;
        playback_id = asset.first_playback_id().map(String::from);
        match asset.status.as_deref() {
            Some("errored") => status = "errored".into(),
            Some("preparing") => {}
            _ if playback_id.is_some() => status = "ready".into(),
            _ => {}
        }
        if status == "ready"
            && let (Some(pid), Some((_, target))) = (&playback_id, &recorded)
        {
            let mut tx = ctx.db.begin().await?;
            let now = ctx.clock.now();
            if let Some(t) = target {
                attach(&mut tx, now, *t, asset_id, pid).await?;
            }
            mark_upload(
                &mut tx,
                now,
                upload_id,
                "ready",
                Some(asset_id),
                Some(pid),
                None,
            )
            .await?;
            tx.commit().await?;
            jobs::wake_relay(ctx);
        }
    }
    Ok(UploadStatus {
        status,
        asset_id: upload.asset_id.filter(|a| !a.is_empty()),
        playback_id,
    })
}

// ---------------------------------------------------------------------------
// POST /api/mux/check-upload-status
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
pub struct CheckRequest {
    pub lesson_id: Option<String>,
    pub course_id: Option<String>,
    pub level_id: Option<String>,
    pub post_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CheckResult {
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub playback_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asset_id: Option<String>,
    pub message: String,
}

impl CheckResult {
    fn ready(playback_id: String, asset_id: Option<String>, message: &str) -> Self {
        Self {
            status: "ready".into(),
            playback_id: Some(playback_id),
            asset_id,
            message: message.into(),
        }
    }
    fn other(status: &str, message: String) -> Self {
        Self {
            status: status.into(),
            playback_id: None,
            asset_id: None,
            message,
        }
    }
}

/// Looks for a finished video of one entity (course → level → post → lesson)
/// and stores it (§3.6). Real 4xx codes (D6). Attaching a video to a lesson,
/// course or level is an admin action: its audit row (`media.attach`, the
/// Mux ids before and after) is written with it; `ip` is the admin's address.
pub async fn check_upload_status(
    ctx: &Context,
    caller: Option<Caller>,
    ip: Option<std::net::IpAddr>,
    req: &CheckRequest,
) -> Result<CheckResult> {
    let lesson = present(&req.lesson_id);
    let course = present(&req.course_id);
    let level = present(&req.level_id);
    let post = present(&req.post_id);
    if lesson.is_some() || course.is_some() || level.is_some() {
        if !caller.is_some_and(|c| c.is_admin) {
            return Err(Error::forbidden("Admin access required"));
        }
    } else if post.is_some() {
        if caller.is_none() {
            return Err(Error::unauthorized("Authentication required"));
        }
    } else {
        return Err(Error::bad_request(
            "Either lesson_id, course_id, level_id, or post_id must be provided",
        ));
    }

    // (target, stored playback id, stored asset id, preview?)
    let mut conn = ctx.db.acquire().await?;
    let (target, stored_pid, stored_aid, preview) = if let Some(raw) = course {
        let id = parse_or_404(raw, "Course")?;
        let row: Option<(Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT mux_preview_playback_id, mux_preview_asset_id FROM worlds WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        let (p, a) = row.ok_or_else(|| Error::not_found("Course not found"))?;
        (Target::Course(id), p, a, true)
    } else if let Some(raw) = level {
        let id = parse_or_404(raw, "Level")?;
        let row: Option<(Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT mux_preview_playback_id, mux_preview_asset_id FROM levels WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        let (p, a) = row.ok_or_else(|| Error::not_found("Level not found"))?;
        (Target::Level(id), p, a, true)
    } else if let Some(raw) = post {
        let id = parse_or_404(raw, "Post")?;
        let row: Option<(Uuid, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT user_id, mux_playback_id, mux_asset_id FROM posts WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        let (owner, p, a) = row.ok_or_else(|| Error::not_found("Post not found"))?;
        let c = caller.expect("checked above");
        if owner != c.id && !c.is_admin {
            return Err(Error::forbidden("You can only check your own posts"));
        }
        (Target::Post(id), p, a, false)
    } else {
        let raw = lesson.expect("one id is present");
        let id = parse_or_404(raw, "Lesson")?;
        let row: Option<(Option<String>, Option<String>)> =
            sqlx::query_as("SELECT mux_playback_id, mux_asset_id FROM lessons WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
        let (p, a) = row.ok_or_else(|| Error::not_found("Lesson not found"))?;
        (Target::Lesson(id), p, a, false)
    };
    drop(conn);

    // Already there: previews need a playback id; lessons and posts need both ids.
    let already = match (&stored_pid, &stored_aid) {
        (Some(p), _) if preview && !p.is_empty() => Some(p.clone()),
        (Some(p), Some(a)) if !p.is_empty() && !a.is_empty() => Some(p.clone()),
        _ => None,
    };
    if let Some(p) = already {
        let msg = if preview {
            "Preview video is already ready"
        } else {
            "Video is already ready"
        };
        return Ok(CheckResult::ready(p, stored_aid, msg));
    }

    let mux = client(ctx)?;
    let assets = match mux.list_assets(LIST_LIMIT).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "listing Mux assets failed");
            return Ok(CheckResult::other(
                "error",
                format!("Error checking status: {e}"),
            ));
        }
    };
    let found = assets.into_iter().find_map(|a| {
        let p = a.passthrough_object()?;
        if !passthrough_matches(&p, target) {
            return None;
        }
        let pid = a.first_playback_id()?.to_string();
        Some((a.id, pid))
    });
    let Some((asset_id, playback_id)) = found else {
        let msg = if preview {
            "Preview video is still processing or not found"
        } else {
            "Video is still processing or not found"
        };
        return Ok(CheckResult::other("processing", msg.into()));
    };

    let mut tx = ctx.db.begin().await?;
    let now = ctx.clock.now();
    attach(&mut tx, now, target, &asset_id, &playback_id).await?;
    if let (Some(c), false) = (caller, matches!(target, Target::Post(_))) {
        let (pid_key, aid_key) = if preview {
            ("mux_preview_playback_id", "mux_preview_asset_id")
        } else {
            ("mux_playback_id", "mux_asset_id")
        };
        audit::record(
            &mut tx,
            audit::Actor::new(c.id, ip, now)
                .entry(audit::action::MEDIA_ATTACH, target.kind(), target.id())
                .before(json!({ pid_key: stored_pid, aid_key: stored_aid }))
                .after(json!({ pid_key: playback_id, aid_key: asset_id })),
        )
        .await?;
    }
    sqlx::query(
        "UPDATE mux_uploads SET status = 'ready', asset_id = $3, playback_id = $4, updated_at = $5
         WHERE target_type = $1 AND target_id = $2 AND status = 'pending'",
    )
    .bind(target.kind())
    .bind(target.id())
    .bind(&asset_id)
    .bind(&playback_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    jobs::wake_relay(ctx);

    let msg = match target {
        Target::Course(_) => "Preview video found and course updated",
        Target::Level(_) => "Preview video found and level updated",
        Target::Post(_) => "Video found and post updated",
        _ => "Video found and lesson updated",
    };
    Ok(CheckResult::ready(playback_id, Some(asset_id), msg))
}

// ---------------------------------------------------------------------------
// DELETE /api/mux/asset/{asset_id} and GET /api/mux/asset/{asset_id}/exists
// ---------------------------------------------------------------------------

/// Deletes an asset at Mux (a Mux 404 is fine) and clears it everywhere (D5):
/// admins may delete anything; others only a video of their own post or reply.
/// An admin's deletion is audited (`media.delete`: what it was cleared from);
/// `ip` is the caller's address.
pub async fn delete_asset(
    ctx: &Context,
    caller: Caller,
    ip: Option<std::net::IpAddr>,
    asset_id: &str,
) -> Result<String> {
    let owner = if caller.is_admin {
        None
    } else {
        let (owns, used_by_content): (bool, bool) = sqlx::query_as(
            "SELECT
                EXISTS (SELECT 1 FROM posts WHERE mux_asset_id = $1 AND user_id = $2)
                OR EXISTS (SELECT 1 FROM post_replies WHERE mux_asset_id = $1 AND user_id = $2),
                EXISTS (SELECT 1 FROM lessons WHERE mux_asset_id = $1)
                OR EXISTS (SELECT 1 FROM worlds WHERE mux_preview_asset_id = $1)
                OR EXISTS (SELECT 1 FROM levels WHERE mux_preview_asset_id = $1)",
        )
        .bind(asset_id)
        .bind(caller.id)
        .fetch_one(&ctx.db)
        .await?;
        if !owns {
            return Err(Error::forbidden(if used_by_content {
                "Admin access required to delete lesson/course videos"
            } else {
                "You can only delete videos from your own posts"
            }));
        }
        Some(caller.id)
    };
    let mux = client(ctx)?;
    let deleted_at_mux = match mux.delete_asset(asset_id).await {
        Ok(()) => true,
        Err(e) if e.is_not_found() => false,
        Err(e) => {
            tracing::error!(error = %e, asset_id, "deleting a Mux asset failed");
            // Mux's own client errors keep their status, except auth failures
            // (ours, not the caller's) and anything else, which are a 500.
            let status = e
                .status()
                .filter(|s| matches!(s, 400 | 404 | 409 | 422 | 429))
                .unwrap_or(500);
            return Err(Error::http(status, "Error deleting video asset"));
        }
    };
    let mut tx = ctx.db.begin().await?;
    let now = ctx.clock.now();
    let cleared = clear_asset(&mut tx, now, asset_id, owner).await?;
    if caller.is_admin {
        audit::record(
            &mut tx,
            audit::Actor::new(caller.id, ip, now)
                .entry(
                    audit::action::MEDIA_DELETE,
                    audit::target::MUX_ASSET,
                    asset_id,
                )
                .before(json!({ "asset_id": asset_id }))
                .after(json!({
                    "deleted_at_mux": deleted_at_mux,
                    "cleared": cleared,
                })),
        )
        .await?;
    }
    tx.commit().await?;
    tracing::info!(asset_id, ?cleared, deleted_at_mux, "Mux asset deleted");
    Ok(format!(
        "Asset {asset_id} {}cleared from {}",
        if deleted_at_mux {
            "deleted from Mux and "
        } else {
            ""
        },
        cleared.describe()
    ))
}

/// Whether Mux knows the asset (404 → false).
pub async fn asset_exists(ctx: &Context, asset_id: &str) -> Result<bool> {
    let mux = client(ctx)?;
    match mux.get_asset(asset_id).await {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(Error::http(500, format!("Error checking asset: {e}"))),
    }
}

// ---------------------------------------------------------------------------
// Downloads
// ---------------------------------------------------------------------------

/// `{MUX_STREAM_BASE_URL}/{playback_id}/{resolution}.mp4`.
pub fn mp4_url(ctx: &Context, playback_id: &str, resolution: &str) -> String {
    let pid: String = url::form_urlencoded::byte_serialize(playback_id.as_bytes()).collect();
    format!(
        "{}/{pid}/{resolution}.mp4",
        ctx.config.mux_stream_base_url.trim_end_matches('/')
    )
}

/// May `caller` watch (and so download) the video with this playback id?
/// Staff: everything. Course and level previews: everyone. Community videos:
/// every signed-in user. Lesson videos: a free world, or a pro subscription.
pub async fn may_watch(
    ctx: &Context,
    caller: &Caller,
    is_staff: bool,
    playback_id: &str,
) -> Result<bool> {
    if is_staff || caller.is_admin {
        return Ok(true);
    }
    let ok: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT
            EXISTS (SELECT 1 FROM posts WHERE mux_playback_id = $1)
         OR EXISTS (SELECT 1 FROM post_replies WHERE mux_playback_id = $1)
         OR EXISTS (SELECT 1 FROM worlds WHERE mux_preview_playback_id = $1)
         OR EXISTS (SELECT 1 FROM levels WHERE mux_preview_playback_id = $1)
         OR EXISTS (
             SELECT 1 FROM lessons l
             JOIN levels v ON v.id = l.level_id
             JOIN worlds w ON w.id = v.world_id
             WHERE l.mux_playback_id = $1
               AND (w.is_free OR EXISTS (
                   SELECT 1 FROM subscriptions s WHERE s.user_id = $2 AND {PRO_SQL})))"
    )))
    .bind(playback_id)
    .bind(caller.id)
    .fetch_one(&ctx.db)
    .await?;
    Ok(ok)
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DownloadAvailability {
    pub available: bool,
    pub download_url: Option<String>,
    pub resolution: Option<String>,
    pub message: Option<String>,
}

/// Probes the MP4 rendition with `Range: bytes=0-0` (10 s, redirects followed).
pub async fn download_available(
    ctx: &Context,
    playback_id: &str,
    resolution: &str,
) -> DownloadAvailability {
    let url = mp4_url(ctx, playback_id, resolution);
    let unavailable = |msg: &str| DownloadAvailability {
        available: false,
        download_url: None,
        resolution: None,
        message: Some(msg.into()),
    };
    let resp = ctx
        .http
        .get(&url)
        .header("Range", "bytes=0-0")
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e.without_url(), "MP4 probe failed");
            return unavailable("Unable to verify download availability.");
        }
    };
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if matches!(status, 200 | 206)
        && (content_type.contains("video") || content_type.contains("octet-stream"))
    {
        DownloadAvailability {
            available: true,
            download_url: Some(url),
            resolution: Some(resolution.to_string()),
            message: None,
        }
    } else if status == 404 || content_type.contains("json") {
        unavailable("MP4 download not available for this video.")
    } else {
        unavailable("Could not verify MP4 availability.")
    }
}

// ---------------------------------------------------------------------------
// The webhook
// ---------------------------------------------------------------------------

type HmacSha256 = Hmac<Sha256>;

/// Checks `Mux-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]` against the raw
/// body: HMAC-SHA256 over `"{t}.{body}"`, compared in constant time, and `t`
/// within [`WEBHOOK_TOLERANCE_SECS`] of `now`. Errors are the 401s of §3.6.
pub fn verify_signature(secret: &str, header: Option<&str>, body: &[u8], now: i64) -> Result<()> {
    let header = header
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or_else(|| Error::unauthorized("Missing webhook signature"))?;
    let mut t: Option<&str> = None;
    let mut sigs: Vec<&str> = vec![];
    for part in header.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| Error::unauthorized("Signature verification failed"))?;
        match k.trim() {
            "t" => t = Some(v.trim()),
            "v1" => sigs.push(v.trim()),
            _ => {}
        }
    }
    let t = t.filter(|t| !t.is_empty());
    let (Some(t), false) = (t, sigs.is_empty()) else {
        return Err(Error::unauthorized("Invalid webhook signature format"));
    };
    let ts: i64 = t
        .parse()
        .map_err(|_| Error::unauthorized("Invalid webhook signature format"))?;

    let mut mac = HmacSha256::new_from_slice(secret.as_bytes())
        .map_err(|e| Error::internal(format!("webhook HMAC key: {e}")))?;
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    let valid = sigs.iter().any(|s| {
        hex::decode(s.to_ascii_lowercase())
            .ok()
            .is_some_and(|bytes| mac.clone().verify_slice(&bytes).is_ok())
    });
    if !valid {
        return Err(Error::unauthorized("Invalid webhook signature"));
    }
    if (now - ts).abs() > WEBHOOK_TOLERANCE_SECS {
        return Err(Error::unauthorized("Invalid webhook signature"));
    }
    Ok(())
}

/// The signature header value for `body` at time `t` (tests and tooling).
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// What the webhook answered (always HTTP 200 once verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOutcome {
    Processed,
    /// The event id was seen before; nothing was done.
    Duplicate,
    /// The body was not a JSON event.
    Malformed,
}

/// Verifies and processes one webhook delivery.
pub async fn handle_webhook(
    ctx: &Context,
    signature: Option<&str>,
    body: &[u8],
) -> Result<WebhookOutcome> {
    match &ctx.config.mux_webhook_secret {
        Some(secret) => verify_signature(
            secret.expose(),
            signature,
            body,
            ctx.clock.now().timestamp(),
        )?,
        None if ctx.config.is_development() => {
            tracing::warn!(
                "MUX_WEBHOOK_SECRET is not set; accepting an unsigned Mux webhook (development)"
            );
        }
        None => {
            tracing::error!("MUX_WEBHOOK_SECRET is not set; refusing Mux webhooks");
            return Err(Error::http(500, "Webhook not properly configured"));
        }
    }
    let event: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            tracing::warn!("Mux webhook body is not a JSON object");
            return Ok(WebhookOutcome::Malformed);
        }
    };
    process_event(ctx, &event).await
}

/// Applies one (verified) event. Idempotent: the event id is stored in the
/// same transaction as the effects, and a stored id means nothing is done.
pub async fn process_event(ctx: &Context, event: &Value) -> Result<WebhookOutcome> {
    let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
    let event_id = event
        .get("id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let data = event.get("data").cloned().unwrap_or(Value::Null);
    let now = ctx.clock.now();

    let mut tx = ctx.db.begin().await?;
    if let Some(id) = event_id {
        let fresh = sqlx::query(
            "INSERT INTO processed_webhook_events (provider, event_id, processed_at)
             VALUES ('mux', $1, $2) ON CONFLICT (provider, event_id) DO NOTHING",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if !fresh {
            tx.rollback().await?;
            tracing::info!(
                event_id = id,
                kind,
                "Mux webhook already processed; skipped"
            );
            return Ok(WebhookOutcome::Duplicate);
        }
    }

    let str_of = |k: &str| {
        data.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    match kind {
        "video.asset.ready" => {
            let asset: Option<MuxAsset> = serde_json::from_value(data.clone()).ok();
            match asset {
                Some(asset) => asset_ready(&mut tx, now, &asset).await?,
                None => tracing::warn!("video.asset.ready without an asset id; ignored"),
            }
        }
        "video.asset.deleted" => match str_of("id") {
            Some(asset_id) => {
                let cleared = clear_asset(&mut tx, now, asset_id, None).await?;
                tracing::info!(asset_id, ?cleared, "Mux asset deleted; references cleared");
            }
            None => tracing::warn!("video.asset.deleted without an asset id; ignored"),
        },
        "video.asset.errored" => {
            let errors = data.get("errors").map(Value::to_string);
            tracing::warn!(asset_id = ?str_of("id"), errors = ?errors, "Mux asset errored");
            if let Some(upload_id) = str_of("upload_id") {
                mark_upload(
                    &mut tx,
                    now,
                    upload_id,
                    "errored",
                    str_of("id"),
                    None,
                    errors.as_deref(),
                )
                .await?;
            }
        }
        "video.upload.asset_created" => {
            if let (Some(upload_id), Some(asset_id)) = (str_of("id"), str_of("asset_id")) {
                sqlx::query(
                    "UPDATE mux_uploads SET asset_id = $2, updated_at = $3 WHERE upload_id = $1",
                )
                .bind(upload_id)
                .bind(asset_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        "video.upload.errored" | "video.upload.cancelled" => {
            if let Some(upload_id) = str_of("id") {
                let status = if kind.ends_with("cancelled") {
                    "cancelled"
                } else {
                    "errored"
                };
                let errors = data.get("error").map(Value::to_string);
                tracing::warn!(upload_id, status, "Mux upload did not complete");
                mark_upload(
                    &mut tx,
                    now,
                    upload_id,
                    status,
                    None,
                    None,
                    errors.as_deref(),
                )
                .await?;
            }
        }
        other => tracing::debug!(kind = other, "Mux webhook event ignored"),
    }
    tx.commit().await?;
    jobs::wake_relay(ctx);
    Ok(WebhookOutcome::Processed)
}

/// `video.asset.ready`: attach by passthrough (or, without one, by the upload we
/// recorded). A missing entity or no playback id is logged and ignored.
async fn asset_ready(conn: &mut PgConnection, now: DateTime<Utc>, asset: &MuxAsset) -> Result<()> {
    let Some(playback_id) = asset.first_playback_id() else {
        tracing::warn!(asset_id = %asset.id, "Mux asset ready without playback ids; ignored");
        return Ok(());
    };
    let mut target = asset
        .passthrough_object()
        .as_ref()
        .and_then(target_from_passthrough);
    if target.is_none()
        && let Some(upload_id) = asset.upload_id.as_deref()
    {
        target = recorded_upload(conn, upload_id).await?.and_then(|(_, t)| t);
    }
    if let Some(upload_id) = asset.upload_id.as_deref() {
        mark_upload(
            conn,
            now,
            upload_id,
            "ready",
            Some(&asset.id),
            Some(playback_id),
            None,
        )
        .await?;
    }
    match target {
        Some(t) => {
            if attach(conn, now, t, &asset.id, playback_id).await? {
                tracing::info!(asset_id = %asset.id, target = ?t, "Mux video attached");
            } else {
                tracing::warn!(asset_id = %asset.id, target = ?t, "Mux video for an entity that no longer exists; ignored");
            }
        }
        None => {
            tracing::warn!(asset_id = %asset.id, "Mux asset ready without a usable passthrough; ignored")
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The mux_sync job
// ---------------------------------------------------------------------------

/// The `mux_sync` job's handler. `DeleteAsset`: delete the asset at Mux (a 404
/// means it is already gone, so the job is idempotent). `Reconcile`: attach
/// uploads that never got a webhook.
pub async fn sync(ctx: &Context, job: &MuxSyncJob) -> Result<()> {
    match &job.action {
        MuxSyncAction::DeleteAsset { asset_id } => sync_delete_asset(ctx, asset_id).await,
        MuxSyncAction::Reconcile => {
            let attached = reconcile(ctx).await?;
            tracing::info!(attached, "mux reconcile done");
            Ok(())
        }
    }
}

/// Deletes an asset at Mux (after its post or lesson was deleted). A 404 means
/// it is already gone; without Mux credentials there is nothing to delete.
pub async fn sync_delete_asset(ctx: &Context, asset_id: &str) -> Result<()> {
    let mux = match client(ctx) {
        Ok(m) => m,
        Err(_) => {
            tracing::warn!(asset_id, "Mux is not configured; asset not deleted at Mux");
            return Ok(());
        }
    };
    match mux.delete_asset(asset_id).await {
        Ok(()) => {
            tracing::info!(asset_id, "Mux asset deleted");
            Ok(())
        }
        Err(e) if e.is_not_found() => Ok(()),
        // Retrying cannot fix a client error (other than rate limiting).
        Err(e @ MuxError::Status { status, .. })
            if (400..500).contains(&status) && status != 429 =>
        {
            Err(Error::http(
                status,
                format!("deleting Mux asset {asset_id}: {e}"),
            ))
        }
        Err(e) => Err(Error::internal(format!(
            "deleting Mux asset {asset_id}: {e}"
        ))),
    }
}

/// Reconciles uploads that never got a webhook: every upload still pending
/// after a few minutes is looked up at Mux and, when its asset is ready,
/// attached to its target; failed uploads are marked. Returns how many uploads
/// were attached.
pub async fn reconcile(ctx: &Context) -> Result<usize> {
    let Ok(mux) = client(ctx) else {
        return Ok(0);
    };
    let now = ctx.clock.now();
    let pending: Vec<(String, String, Option<Uuid>)> = sqlx::query_as(
        "SELECT upload_id, target_type, target_id FROM mux_uploads
         WHERE status = 'pending' AND created_at < $1 AND created_at > $2
         ORDER BY created_at LIMIT $3",
    )
    .bind(now - RECONCILE_AFTER)
    .bind(now - RECONCILE_UNTIL)
    .bind(RECONCILE_BATCH)
    .fetch_all(&ctx.db)
    .await?;
    let mut attached = 0;
    for (upload_id, kind, target_id) in pending {
        let upload = match mux.get_upload(&upload_id).await {
            Ok(u) => u,
            Err(e) if e.is_not_found() => {
                mark_upload(
                    &mut *ctx.db.acquire().await?,
                    now,
                    &upload_id,
                    "cancelled",
                    None,
                    None,
                    Some("unknown at Mux"),
                )
                .await?;
                continue;
            }
            Err(e) => {
                tracing::warn!(upload_id, error = %e, "reconcile: reading the upload failed");
                continue;
            }
        };
        match upload.status.as_deref() {
            Some("errored") | Some("timed_out") | Some("cancelled") => {
                let status = if upload.status.as_deref() == Some("errored") {
                    "errored"
                } else {
                    "cancelled"
                };
                mark_upload(
                    &mut *ctx.db.acquire().await?,
                    now,
                    &upload_id,
                    status,
                    None,
                    None,
                    upload.status.as_deref(),
                )
                .await?;
                continue;
            }
            _ => {}
        }
        let Some(asset_id) = upload.asset_id.as_deref().filter(|a| !a.is_empty()) else {
            continue;
        };
        let asset = match mux.get_asset(asset_id).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(upload_id, asset_id, error = %e, "reconcile: reading the asset failed");
                continue;
            }
        };
        if asset.status.as_deref() == Some("errored") {
            mark_upload(
                &mut *ctx.db.acquire().await?,
                now,
                &upload_id,
                "errored",
                Some(asset_id),
                None,
                Some("asset errored"),
            )
            .await?;
            continue;
        }
        let (Some(pid), Some("ready") | None) =
            (asset.first_playback_id(), asset.status.as_deref())
        else {
            continue;
        };
        let mut tx = ctx.db.begin().await?;
        if let Some(t) = Target::from_parts(&kind, target_id)
            && attach(&mut tx, now, t, asset_id, pid).await?
        {
            attached += 1;
        }
        mark_upload(
            &mut tx,
            now,
            &upload_id,
            "ready",
            Some(asset_id),
            Some(pid),
            None,
        )
        .await?;
        tx.commit().await?;
    }
    if attached > 0 {
        jobs::wake_relay(ctx);
    }
    Ok(attached)
}

/// Queues the Mux deletion of an asset inside the caller's transaction.
pub async fn enqueue_delete(conn: &mut PgConnection, asset_id: &str) -> Result<()> {
    jobs::enqueue(
        conn,
        &MuxSyncJob {
            action: MuxSyncAction::DeleteAsset {
                asset_id: asset_id.to_string(),
            },
        },
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hex_hmac_over_t_dot_body() {
        let body = br#"{"type":"video.asset.ready"}"#;
        let header = sign("whsec", 1_700_000_000, body);
        assert!(verify_signature("whsec", Some(&header), body, 1_700_000_000).is_ok());
        // Within the window either way.
        assert!(verify_signature("whsec", Some(&header), body, 1_700_000_300).is_ok());
        assert!(verify_signature("whsec", Some(&header), body, 1_699_999_700).is_ok());
        let msg = |r: Result<()>| r.unwrap_err().to_string();
        assert!(
            msg(verify_signature(
                "whsec",
                Some(&header),
                body,
                1_700_000_301
            ))
            .contains("Invalid webhook signature")
        );
        assert!(
            msg(verify_signature(
                "other",
                Some(&header),
                body,
                1_700_000_000
            ))
            .contains("Invalid webhook signature")
        );
        assert!(
            msg(verify_signature(
                "whsec",
                Some(&header),
                b"{}",
                1_700_000_000
            ))
            .contains("Invalid webhook signature")
        );
        assert!(
            msg(verify_signature("whsec", None, body, 0)).contains("Missing webhook signature")
        );
        assert!(
            msg(verify_signature("whsec", Some("t=1"), body, 1))
                .contains("Invalid webhook signature format")
        );
        assert!(
            msg(verify_signature("whsec", Some("v1=ab"), body, 1))
                .contains("Invalid webhook signature format")
        );
        assert!(
            msg(verify_signature("whsec", Some("t=x,v1=ab"), body, 1))
                .contains("Invalid webhook signature format")
        );
        assert!(
            msg(verify_signature("whsec", Some("garbage"), body, 1))
                .contains("Signature verification failed")
        );
        // Several v1 values: any one may match (secret rotation).
        let good = header.split("v1=").nth(1).unwrap();
        let multi = format!("t=1700000000,v1={},v1={good}", "00".repeat(32));
        assert!(verify_signature("whsec", Some(&multi), body, 1_700_000_000).is_ok());
        // Upper-case hex is accepted too.
        let upper = format!("t=1700000000,v1={}", good.to_uppercase());
        assert!(verify_signature("whsec", Some(&upper), body, 1_700_000_000).is_ok());
    }

    #[test]
    fn passthrough_routes_by_type_then_key() {
        let level = Uuid::new_v4();
        let course = Uuid::new_v4();
        let p = parse_passthrough(&json!(json!({
            "level_id": level.to_string(), "type": "level-preview", "course_id": course.to_string()
        })
        .to_string()))
        .unwrap();
        assert_eq!(target_from_passthrough(&p), Some(Target::Level(level)));
        let p = parse_passthrough(&json!({"course_id": course.to_string()})).unwrap();
        assert_eq!(target_from_passthrough(&p), Some(Target::Course(course)));
        assert!(passthrough_matches(&p, Target::Course(course)));
        let lp = parse_passthrough(&json!({
            "level_id": level.to_string(), "type": "level-preview", "course_id": course.to_string()
        }))
        .unwrap();
        assert!(!passthrough_matches(&lp, Target::Course(course)));
        assert!(parse_passthrough(&json!("not json")).is_none());
        assert!(
            target_from_passthrough(&parse_passthrough(&json!({"lesson_id": "x"})).unwrap())
                .is_none()
        );
    }

    #[test]
    fn external_ids_leave_out_falsy_parts() {
        assert_eq!(
            lesson_external_id("mambo-101", Some(1), Some(2), 3),
            "lesson-mambo-101-w1-d2-l3"
        );
        assert_eq!(lesson_external_id("m", None, Some(0), 0), "lesson-m");
        assert_eq!(
            level_external_id("m", "The Very First Level Of This Long Course"),
            "level-preview-m-the-very-first-level-of-this-l"
        );
    }

    #[test]
    fn upload_bodies() {
        let labels = AssetLabels::new("e".into(), "t".into(), "lesson", json!({"lesson_id": "1"}));
        let b = direct_upload_body("http://front", false, &labels);
        assert_eq!(b["cors_origin"], "http://front");
        let s = &b["new_asset_settings"];
        assert_eq!(s["playback_policies"], json!(["public"]));
        assert_eq!(s["test"], json!(false));
        assert_eq!(s["mp4_support"], "capped-1080p");
        assert!(s.get("max_resolution_tier").is_none());
        assert_eq!(s["passthrough"], json!(r#"{"lesson_id":"1"}"#));
        assert_eq!(
            s["meta"],
            json!({"title": "t", "creator_id": "lesson", "external_id": "e"})
        );
        let b = direct_upload_body("http://front", true, &AssetLabels::default());
        assert_eq!(b["new_asset_settings"]["max_resolution_tier"], "1080p");
        assert!(b["new_asset_settings"].get("mp4_support").is_none());
        assert!(b["new_asset_settings"].get("meta").is_none());
    }

    #[test]
    fn cleared_messages() {
        assert_eq!(Cleared::default().describe(), "database");
        let c = Cleared {
            lessons: 1,
            posts: 2,
            ..Default::default()
        };
        assert_eq!(c.describe(), "1 lesson(s), 2 post(s)");
        assert_eq!(c.total(), 3);
    }
}
