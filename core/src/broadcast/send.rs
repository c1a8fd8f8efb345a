//! Sending a batch (the worker): one Resend batch call, each outcome recorded.

use super::*;

/// What one run of a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub sent: usize,
    pub failed: usize,
    pub skipped: usize,
}

#[derive(sqlx::FromRow)]
pub(super) struct BroadcastRow {
    pub(super) template: String,
    pub(super) vars: Value,
}

/// Sends the pending recipients of one batch. Returns an error only when a
/// retry can help (then the recipients stay pending, with the error recorded);
/// final failures are recorded per recipient and return `Ok`.
pub async fn send_batch(ctx: &Context, job: &BroadcastJob) -> Result<BatchOutcome> {
    let mut tx = ctx.db.begin().await?;
    let Some(b) =
        sqlx::query_as::<_, BroadcastRow>("SELECT template, vars FROM broadcasts WHERE id = $1")
            .bind(job.broadcast_id)
            .fetch_optional(&mut *tx)
            .await?
    else {
        tracing::warn!(?job, "broadcast batch of an unknown broadcast; ignored");
        return Ok(BatchOutcome::default());
    };

    // Rows locked by another run of this batch are being sent right now: skip them.
    let sql = format!(
        "SELECT r.attempts, {RECIPIENT_COLUMNS}
         FROM broadcast_recipients r
         JOIN users u ON u.id = r.user_id
         LEFT JOIN user_profiles p ON p.user_id = r.user_id
         WHERE r.broadcast_id = $1 AND r.batch = $2 AND r.status = 'pending'
         ORDER BY r.user_id
         FOR UPDATE OF r SKIP LOCKED"
    );
    #[derive(sqlx::FromRow)]
    struct Row {
        attempts: i32,
        #[sqlx(flatten)]
        recipient: Recipient,
    }
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(job.broadcast_id)
        .bind(job.batch)
        .fetch_all(&mut *tx)
        .await?;
    if rows.is_empty() {
        tx.commit().await?;
        tracing::debug!(?job, "broadcast batch: nothing pending");
        return Ok(BatchOutcome::default());
    }
    let attempts = rows.iter().map(|r| r.attempts).max().unwrap_or(0);
    let now = ctx.clock.now();
    let mut outcome = BatchOutcome::default();

    // Unsubscribed since the broadcast was prepared.
    let (unsubscribed, rows): (Vec<Row>, Vec<Row>) = rows
        .into_iter()
        .partition(|r| r.recipient.email_unsubscribed);
    if !unsubscribed.is_empty() {
        let ids: Vec<Uuid> = unsubscribed.iter().map(|r| r.recipient.user_id).collect();
        outcome.skipped = ids.len();
        set_status(
            &mut tx,
            job.broadcast_id,
            &ids,
            "skipped",
            Some("unsubscribed"),
            now,
        )
        .await?;
    }

    // Render every email; a recipient whose email cannot be rendered fails alone.
    let extra = match b.vars {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let frontend = ctx.config.frontend_url.as_str();
    let mut emails: Vec<(Uuid, String, Rendered)> = Vec::with_capacity(rows.len());
    match BroadcastTemplate::parse(&b.template, &extra) {
        Ok(template) => {
            let mut broken: Vec<(Uuid, String)> = Vec::new();
            for r in &rows {
                match template.render(&template_vars(&r.recipient, frontend, &extra)) {
                    Ok(rendered) => {
                        emails.push((r.recipient.user_id, r.recipient.email.clone(), rendered))
                    }
                    Err(e) => broken.push((r.recipient.user_id, e.to_string())),
                }
            }
            for (reason, ids) in group_by_reason(broken) {
                outcome.failed += ids.len();
                set_status(
                    &mut tx,
                    job.broadcast_id,
                    &ids,
                    "failed",
                    Some(&reason),
                    now,
                )
                .await?;
            }
        }
        Err(e) => {
            let ids: Vec<Uuid> = rows.iter().map(|r| r.recipient.user_id).collect();
            outcome.failed += ids.len();
            set_status(
                &mut tx,
                job.broadcast_id,
                &ids,
                "failed",
                Some(&e.to_string()),
                now,
            )
            .await?;
        }
    }
    if emails.is_empty() {
        tx.commit().await?;
        return Ok(outcome);
    }

    let ids: Vec<Uuid> = emails.iter().map(|(id, _, _)| *id).collect();
    let Some(api_key) = &ctx.config.resend_api_key else {
        if ctx.config.is_development() {
            for (_, to, r) in &emails {
                tracing::info!(
                    to,
                    subject = r.subject,
                    text = r.text,
                    "broadcast email (RESEND_API_KEY is not set: logged instead of sent)"
                );
            }
            let provider: Vec<Option<String>> = vec![Some("log".into()); emails.len()];
            let to: Vec<String> = emails.iter().map(|(_, to, _)| to.clone()).collect();
            mark_sent(&mut tx, job.broadcast_id, &ids, &to, &provider, now).await?;
            outcome.sent += ids.len();
        } else {
            set_status(
                &mut tx,
                job.broadcast_id,
                &ids,
                "failed",
                Some("Resend is not configured"),
                now,
            )
            .await?;
            outcome.failed += ids.len();
        }
        tx.commit().await?;
        return Ok(outcome);
    };

    // The key names exactly this set of recipients: a retry of the same set is
    // deduplicated by Resend; a different set (someone unsubscribed) is a new send.
    let mut h = Sha256::new();
    for id in &ids {
        h.update(id.as_bytes());
    }
    let idempotency_key = format!(
        "broadcast/{}/{}/{}",
        job.broadcast_id,
        job.batch,
        &hex::encode(h.finalize())[..16]
    );

    match send_to_resend(ctx, api_key.expose(), &emails, &idempotency_key).await {
        Ok(resp) => {
            let rejected: HashMap<usize, String> = resp
                .errors
                .iter()
                .map(|e| (e.index.max(0) as usize, e.message.clone()))
                .collect();
            let mut provider_ids = resp.data.iter().map(|d| d.id.to_string());
            let mut sent_ids = Vec::new();
            let mut sent_to = Vec::new();
            let mut sent_provider = Vec::new();
            let mut refused: Vec<(Uuid, String)> = Vec::new();
            for (i, (id, to, _)) in emails.iter().enumerate() {
                match rejected.get(&i) {
                    Some(msg) => refused.push((*id, format!("Resend refused it: {msg}"))),
                    None => {
                        sent_ids.push(*id);
                        sent_to.push(to.clone());
                        sent_provider.push(provider_ids.next());
                    }
                }
            }
            mark_sent(
                &mut tx,
                job.broadcast_id,
                &sent_ids,
                &sent_to,
                &sent_provider,
                now,
            )
            .await?;
            outcome.sent += sent_ids.len();
            for (reason, ids) in group_by_reason(refused) {
                outcome.failed += ids.len();
                set_status(
                    &mut tx,
                    job.broadcast_id,
                    &ids,
                    "failed",
                    Some(&reason),
                    now,
                )
                .await?;
            }
            tx.commit().await?;
            tracing::info!(?job, ?outcome, "broadcast batch sent");
            Ok(outcome)
        }
        Err(e) => {
            let rate_limited = matches!(e, resend_rs::Error::RateLimit { .. })
                || matches!(&e, resend_rs::Error::Resend(r) if r.status_code == 429);
            let message = e.to_string();
            let err = Error::Internal(anyhow::Error::new(e).context("sending a broadcast batch"));
            let retryable = crate::email::is_retryable(&err);
            let attempt = if rate_limited { attempts } else { attempts + 1 };
            if retryable && attempt < MAX_ATTEMPTS {
                sqlx::query(
                    "UPDATE broadcast_recipients SET attempts = $3, error = $4, updated_at = $5
                     WHERE broadcast_id = $1 AND user_id = ANY($2)",
                )
                .bind(job.broadcast_id)
                .bind(&ids)
                .bind(attempt)
                .bind(&message)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                tracing::warn!(
                    ?job,
                    attempt,
                    error = message,
                    "broadcast batch failed; will retry"
                );
                Err(err)
            } else {
                sqlx::query(
                    "UPDATE broadcast_recipients
                     SET status = 'failed', attempts = $3, error = $4, updated_at = $5
                     WHERE broadcast_id = $1 AND user_id = ANY($2)",
                )
                .bind(job.broadcast_id)
                .bind(&ids)
                .bind(attempt)
                .bind(&message)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                tracing::warn!(
                    ?job,
                    attempt,
                    error = message,
                    "broadcast batch failed for good"
                );
                outcome.failed += ids.len();
                Ok(outcome)
            }
        }
    }
}

pub(super) async fn send_to_resend(
    ctx: &Context,
    api_key: &str,
    emails: &[(Uuid, String, Rendered)],
    idempotency_key: &str,
) -> std::result::Result<resend_rs::types::SendEmailBatchPermissiveResponse, resend_rs::Error> {
    use resend_rs::idempotent::IdempotentTrait;
    use resend_rs::types::{BatchValidation, CreateEmailBaseOptions};
    let base_url = ctx
        .config
        .resend_base_url
        .parse::<reqwest::Url>()
        .map_err(|e| {
            resend_rs::Error::Other(format!(
                "RESEND_BASE_URL {:?} is not a URL: {e}",
                ctx.config.resend_base_url
            ))
        })?;
    let resend = resend_rs::Resend::with_config(
        resend_rs::Config::builder(api_key)
            .base_url(base_url)
            .client(ctx.http.clone())
            .build(),
    );
    let batch: Vec<CreateEmailBaseOptions> = emails
        .iter()
        .map(|(_, to, r)| {
            CreateEmailBaseOptions::new(&ctx.config.from_email, [to.as_str()], &r.subject)
                .with_html(&r.html)
                .with_text(&r.text)
        })
        .collect();
    resend
        .batch
        .send_with_batch_validation(
            batch.with_idempotency_key(idempotency_key),
            BatchValidation::Permissive,
        )
        .await
}

pub(super) fn group_by_reason(items: Vec<(Uuid, String)>) -> Vec<(String, Vec<Uuid>)> {
    let mut groups: Vec<(String, Vec<Uuid>)> = Vec::new();
    for (id, reason) in items {
        match groups.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, ids)) => ids.push(id),
            None => groups.push((reason, vec![id])),
        }
    }
    groups
}

pub(super) async fn set_status(
    conn: &mut sqlx::PgConnection,
    broadcast_id: Uuid,
    user_ids: &[Uuid],
    status: &str,
    error: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    sqlx::query(
        "UPDATE broadcast_recipients SET status = $3, error = $4, updated_at = $5
         WHERE broadcast_id = $1 AND user_id = ANY($2) AND status = 'pending'",
    )
    .bind(broadcast_id)
    .bind(user_ids)
    .bind(status)
    .bind(error)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

pub(super) async fn mark_sent(
    conn: &mut sqlx::PgConnection,
    broadcast_id: Uuid,
    user_ids: &[Uuid],
    emails: &[String],
    provider_ids: &[Option<String>],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    if user_ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE broadcast_recipients r
         SET status = 'sent', email = t.email, provider_id = t.provider_id,
             error = NULL, sent_at = $5, updated_at = $5, attempts = r.attempts + 1
         FROM unnest($2::uuid[], $3::text[], $4::text[]) AS t(user_id, email, provider_id)
         WHERE r.broadcast_id = $1 AND r.user_id = t.user_id AND r.status = 'pending'",
    )
    .bind(broadcast_id)
    .bind(user_ids)
    .bind(emails)
    .bind(provider_ids)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}
