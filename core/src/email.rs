//! Sending email through Resend, once per idempotency key.
//!
//! Every logical email has a row in `email_deliveries` keyed by the job's
//! `idempotency_key`. A job whose row is already `sent` does nothing, so a job
//! that runs twice (redelivery, retry, duplicate enqueue) sends one email. The
//! same key also goes to Resend as the `Idempotency-Key` header, which covers
//! the window where Resend accepted the email but we could not record it.

use crate::jobs::EmailJob;
use crate::{Context, Error, Result};
use chrono::{DateTime, Utc};
use resend_rs::types::{CreateEmailBaseOptions, ErrorKind};
use sqlx::PgConnection;

/// What [`send`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Resend accepted the email; `provider_id` is Resend's email id.
    Sent { provider_id: String },
    /// An earlier run already sent this idempotency key; nothing was sent.
    AlreadySent,
    /// Development without `RESEND_API_KEY`: the email was written to the log.
    Logged,
}

/// Sends `job` (HTML and text) unless its idempotency key was already sent, and
/// records the result in `email_deliveries`. Errors say whether a retry can
/// help: see [`is_retryable`].
pub async fn send(ctx: &Context, job: &EmailJob) -> Result<SendOutcome> {
    let key = job.idempotency_key.as_str();
    if key.is_empty() || key.len() > 256 {
        // Resend accepts 1 to 256 characters.
        return Err(Error::unprocessable(
            "email idempotency key must be 1 to 256 characters",
        ));
    }
    if job.to.is_empty() {
        return Err(Error::unprocessable("email has no recipient"));
    }

    let now = ctx.clock.now();
    sqlx::query(
        "INSERT INTO email_deliveries (idempotency_key, template, recipient, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $4)
         ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(key)
    .bind(&job.template)
    .bind(job.to.join(", "))
    .bind(now)
    .execute(&ctx.db)
    .await?;

    // Count the attempt, unless the email already went out.
    let attempt: Option<i32> = sqlx::query_scalar(
        "UPDATE email_deliveries SET attempts = attempts + 1, updated_at = $2
         WHERE idempotency_key = $1 AND status <> 'sent'
         RETURNING attempts",
    )
    .bind(key)
    .bind(now)
    .fetch_optional(&ctx.db)
    .await?;
    let Some(attempt) = attempt else {
        tracing::info!(
            idempotency_key = key,
            template = job.template,
            "email already sent; skipping"
        );
        return Ok(SendOutcome::AlreadySent);
    };

    let Some(api_key) = &ctx.config.resend_api_key else {
        if ctx.config.is_development() {
            tracing::info!(
                to = ?job.to,
                subject = job.subject,
                template = job.template,
                idempotency_key = key,
                text = job.text,
                "email (RESEND_API_KEY is not set: logged instead of sent)"
            );
            mark_sent(ctx, key, "log").await?;
            return Ok(SendOutcome::Logged);
        }
        tracing::warn!(
            to = ?job.to,
            template = job.template,
            idempotency_key = key,
            "email not sent: Resend is not configured"
        );
        mark_failed(ctx, key, "Resend is not configured").await?;
        return Err(Error::not_configured("Resend"));
    };

    let base_url: reqwest::Url = ctx.config.resend_base_url.parse().map_err(|e| {
        Error::internal(format!(
            "RESEND_BASE_URL {:?} is not a URL: {e}",
            ctx.config.resend_base_url
        ))
    })?;
    let resend = resend_rs::Resend::with_config(
        resend_rs::Config::builder(api_key.expose())
            .base_url(base_url)
            .client(ctx.http.clone())
            .build(),
    );
    let mut email = CreateEmailBaseOptions::new(&ctx.config.from_email, &job.to, &job.subject)
        .with_html(&job.html)
        .with_text(&job.text);
    for (name, value) in &job.headers {
        email = email.with_header(name, value);
    }
    let email = email.with_idempotency_key(key);

    match resend.emails.send(email).await {
        Ok(response) => {
            let provider_id = response.id.to_string();
            mark_sent(ctx, key, &provider_id).await?;
            tracing::info!(
                idempotency_key = key,
                template = job.template,
                provider_id,
                attempt,
                "email sent"
            );
            Ok(SendOutcome::Sent { provider_id })
        }
        Err(e) => {
            let retryable = resend_error_is_retryable(&e);
            mark_failed(ctx, key, &e.to_string()).await?;
            tracing::warn!(
                idempotency_key = key,
                template = job.template,
                attempt,
                retryable,
                error = %e,
                "Resend refused the email"
            );
            Err(Error::Internal(
                anyhow::Error::new(e).context("sending an email through Resend"),
            ))
        }
    }
}

/// Claims idempotency keys for emails about to be queued, in the caller's
/// transaction: records each key `pending` (as [`send`] would) unless it is
/// already recorded, and returns the keys that were new. An email whose key
/// was claimed before (a job that runs twice, a second digest in one period)
/// is then not queued at all. `items` are `(idempotency key, recipient)`.
pub async fn reserve(
    conn: &mut PgConnection,
    template: &str,
    items: &[(String, String)],
    now: DateTime<Utc>,
) -> Result<Vec<String>> {
    if items.is_empty() {
        return Ok(vec![]);
    }
    let keys: Vec<&str> = items.iter().map(|(k, _)| k.as_str()).collect();
    let recipients: Vec<&str> = items.iter().map(|(_, r)| r.as_str()).collect();
    Ok(sqlx::query_scalar(
        "INSERT INTO email_deliveries (idempotency_key, template, recipient, created_at, updated_at)
         SELECT t.key, $2, t.recipient, $4, $4
         FROM unnest($1::text[], $3::text[]) AS t(key, recipient)
         ON CONFLICT (idempotency_key) DO NOTHING
         RETURNING idempotency_key",
    )
    .bind(&keys)
    .bind(template)
    .bind(&recipients)
    .bind(now)
    .fetch_all(conn)
    .await?)
}

async fn mark_sent(ctx: &Context, key: &str, provider_id: &str) -> Result<()> {
    sqlx::query(
        "UPDATE email_deliveries
         SET status = 'sent', provider_id = $2, error = NULL, updated_at = $3
         WHERE idempotency_key = $1",
    )
    .bind(key)
    .bind(provider_id)
    .bind(ctx.clock.now())
    .execute(&ctx.db)
    .await?;
    Ok(())
}

/// Records a failed attempt, never downgrading a row another run marked sent.
async fn mark_failed(ctx: &Context, key: &str, error: &str) -> Result<()> {
    sqlx::query(
        "UPDATE email_deliveries SET status = 'failed', error = $2, updated_at = $3
         WHERE idempotency_key = $1 AND status <> 'sent'",
    )
    .bind(key)
    .bind(error)
    .bind(ctx.clock.now())
    .execute(&ctx.db)
    .await?;
    Ok(())
}

/// Whether retrying a failed [`send`] can help. Resend's 4xx answers are final
/// (a bad address, a bad key, the same idempotency key with another payload),
/// except 429 (rate limit, quota) and the two 409s that mean "in progress, try
/// again later". Network failures, 5xx, unreadable answers and database errors
/// are retryable; our own client errors (bad job, Resend not configured) are not.
pub fn is_retryable(err: &Error) -> bool {
    match err {
        Error::Http { .. } => false,
        Error::Database(_) => true,
        Error::Internal(e) => e
            .downcast_ref::<resend_rs::Error>()
            .is_none_or(resend_error_is_retryable),
    }
}

fn resend_error_is_retryable(e: &resend_rs::Error) -> bool {
    match e {
        resend_rs::Error::RateLimit { .. } => true,
        resend_rs::Error::Resend(resp) => match resp.status_code {
            429 => true,
            409 => matches!(
                resp.kind(),
                ErrorKind::ConcurrentIdempotentRequests | ErrorKind::ResourceLocked
            ),
            400..=499 => false,
            _ => true,
        },
        resend_rs::Error::Http(http) => http
            .status()
            .is_none_or(|s| !s.is_client_error() || s.as_u16() == 429),
        resend_rs::Error::Parse { .. } | resend_rs::Error::Other(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use resend_rs::types::ErrorResponse;

    fn resend(status: u16, name: &str) -> Error {
        Error::Internal(anyhow::Error::new(resend_rs::Error::Resend(
            ErrorResponse {
                status_code: status,
                message: "m".into(),
                name: name.into(),
            },
        )))
    }

    #[test]
    fn client_errors_from_resend_are_final_except_rate_limits() {
        assert!(!is_retryable(&resend(422, "validation_error")));
        assert!(!is_retryable(&resend(401, "missing_api_key")));
        assert!(!is_retryable(&resend(409, "invalid_idempotent_request")));
        assert!(is_retryable(&resend(409, "concurrent_idempotent_requests")));
        assert!(is_retryable(&resend(429, "daily_quota_exceeded")));
        assert!(is_retryable(&resend(500, "application_error")));
        let rate = resend_rs::Error::RateLimit {
            ratelimit_limit: None,
            ratelimit_remaining: None,
            ratelimit_reset: None,
        };
        assert!(is_retryable(&Error::Internal(
            anyhow::Error::new(rate).context("sending")
        )));
        assert!(!is_retryable(&Error::not_configured("Resend")));
        assert!(is_retryable(&Error::internal("connection reset")));
    }
}
