//! `GET /api/mux/upload-status/{upload_id}` and `POST /api/mux/check-upload-status`.

use super::*;

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
            let snap = ctx.settings_now().await?;
            let video = Video {
                settings: &snap.settings,
                duration: asset.duration,
            };
            let mut tx = ctx.db.begin().await?;
            let now = ctx.clock.now();
            if let Some(t) = target {
                attach(&mut tx, now, *t, asset_id, pid, video).await?;
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
    /// Present when this call attached a video to a post: the posting reward
    /// it paid (N6.4), or `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reward: Option<Option<crate::community::Reward>>,
}

impl CheckResult {
    fn ready(playback_id: String, asset_id: Option<String>, message: &str) -> Self {
        Self {
            status: "ready".into(),
            playback_id: Some(playback_id),
            asset_id,
            message: message.into(),
            reward: None,
        }
    }
    fn other(status: &str, message: String) -> Self {
        Self {
            status: status.into(),
            playback_id: None,
            asset_id: None,
            message,
            reward: None,
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
        Some((a.id, pid, a.duration))
    });
    let Some((asset_id, playback_id, duration)) = found else {
        let msg = if preview {
            "Preview video is still processing or not found"
        } else {
            "Video is still processing or not found"
        };
        return Ok(CheckResult::other("processing", msg.into()));
    };

    let snap = ctx.settings_now().await?;
    let video = Video {
        settings: &snap.settings,
        duration,
    };
    let mut tx = ctx.db.begin().await?;
    let now = ctx.clock.now();
    let attached = attach(&mut tx, now, target, &asset_id, &playback_id, video).await?;
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
    let mut result = CheckResult::ready(playback_id, Some(asset_id), msg);
    if matches!(target, Target::Post(_)) {
        result.reward = Some(attached.reward);
    }
    Ok(result)
}
