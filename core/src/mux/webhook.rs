//! The signed webhook.

use super::*;

pub(super) type HmacSha256 = Hmac<Sha256>;

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
                Some(asset) => {
                    let snap = ctx.settings_now().await?;
                    asset_ready(&mut tx, now, &asset, &snap.settings).await?
                }
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
pub(super) async fn asset_ready(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    asset: &MuxAsset,
    settings: &crate::settings::Settings,
) -> Result<()> {
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
            let video = Video {
                settings,
                duration: asset.duration,
            };
            if attach(conn, now, t, &asset.id, playback_id, video)
                .await?
                .found
            {
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
