//! Deleting an asset, whether it exists, and downloads.

use super::*;

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
