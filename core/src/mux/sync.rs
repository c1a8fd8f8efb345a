//! The `mux_sync` job.

use super::*;

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
        let snap = ctx.settings_now().await?;
        let video = Video {
            settings: &snap.settings,
            duration: asset.duration,
        };
        let mut tx = ctx.db.begin().await?;
        if let Some(t) = Target::from_parts(&kind, target_id)
            && attach(&mut tx, now, t, asset_id, pid, video).await?.found
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
