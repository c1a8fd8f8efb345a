//! `POST /api/mux/upload-url`.

use super::*;

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

/// An upload token (N5.5): `{token, expires_in}`.
#[derive(Debug, Clone)]
pub struct UploadToken {
    pub token: String,
    /// Seconds.
    pub expires_in: i64,
}

/// `POST /api/mux/upload-token` (admin, N5.5): a five-minute HS256 JWT
/// `{sub, exp, type: "upload"}` (plus `iat_us`, so signing out everywhere
/// revokes it too) for the admin in `actor`, audited as `mux.upload_token`
/// (the token itself is not recorded).
pub async fn issue_upload_token(ctx: &Context, actor: audit::Actor) -> Result<UploadToken> {
    let kind = crate::auth::TokenKind::Upload;
    let token = crate::auth::create_token_at(&ctx.config, actor.id, kind, actor.at);
    let expires_in = crate::auth::UPLOAD_TOKEN_SECONDS;
    let expires_at = actor.at + chrono::Duration::seconds(expires_in);
    let mut tx = ctx.db.begin().await?;
    audit::record(
        &mut tx,
        actor
            .entry(
                audit::action::MUX_UPLOAD_TOKEN,
                audit::target::USER,
                actor.id,
            )
            .after(json!({ "expires_at": expires_at, "expires_in": expires_in })),
    )
    .await?;
    tx.commit().await?;
    Ok(UploadToken { token, expires_in })
}

/// Whether `req` is a lesson, course or level upload: the only uploads an
/// upload token may be used for (N5.5).
pub fn is_content_upload(req: &UploadRequest) -> bool {
    present(&req.lesson_id).is_some()
        || present(&req.course_id).is_some()
        || present(&req.level_id).is_some()
}

pub(super) fn present(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

pub(super) fn parse_or_404(raw: &str, what: &str) -> Result<Uuid> {
    Uuid::parse_str(raw.trim()).map_err(|_| Error::not_found(format!("{what} not found")))
}

/// Who may upload for `req`'s kind of target: an admin for lesson, course and
/// level videos (and when no target is given), any signed-in user for post
/// and reply videos (ownership is checked with the target).
pub(super) fn upload_caller(
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
/// A post's video is posting: the participation gate (N6.5) decides first.
async fn gate_post_upload(ctx: &Context, caller: Caller) -> Result<()> {
    let role = if caller.is_admin { "admin" } else { "student" };
    crate::participation::ensure(ctx, caller.id, role, crate::participation::Action::Post).await
}

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
    if present(&req.post_id).is_some() {
        gate_post_upload(ctx, caller).await?;
    }
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
    if post.is_some() {
        gate_post_upload(ctx, caller).await?;
    }
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
pub(super) type LessonRow = (String, Option<i32>, Option<i32>, i32, String, String);

pub(super) async fn lesson_labels(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<(Option<Target>, AssetLabels)> {
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

pub(super) async fn course_labels(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<(Option<Target>, AssetLabels)> {
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

pub(super) async fn level_labels(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<(Option<Target>, AssetLabels)> {
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

pub(super) async fn post_labels(
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

pub(super) async fn reply_labels(
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
