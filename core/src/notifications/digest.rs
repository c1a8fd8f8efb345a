//! The notification email digest (API-NEXT.md N1).
//!
//! [`run`] emails every user whose `email_digest` is the given period (no
//! preferences row means `daily`), who has not unsubscribed from email
//! (`users.email_unsubscribed`) and who has unread notifications created since
//! the last digest (`last_digest_at`, or ever): one email listing up to
//! [`MAX_LISTED`] of them, newest first, and the count of the rest, rendered
//! from `templates/email/notification_digest.{txt,html}`.
//!
//! Users are taken in batches of [`BATCH`] by id: two queries per batch (the
//! recipients, then their notifications), and one transaction that claims each
//! email's idempotency key (`digest:<period>:<user>:<day or ISO week>`,
//! [`crate::email::reserve`]), advances `last_digest_at` to the newest
//! notification listed and queues the emails through the outbox. A key
//! claimed before is skipped with its user, so running the digest twice in one
//! period sends one email per user, and notifications that arrive after that
//! email wait for the next period's.
//!
//! Every digest carries `List-Unsubscribe: <{BACKEND_URL}/api/notifications/
//! unsubscribe?token=…>` and `List-Unsubscribe-Post: List-Unsubscribe=One-Click`
//! (RFC 8058). The token is `<user id>.<base64url HMAC-SHA256>` of the user id
//! and [`UNSUBSCRIBE_PURPOSE`] under `SECRET_KEY`; it does not expire.
//! [`unsubscribe`] checks it in constant time and turns the digest off.

use super::unsubscribe_digest;
use crate::email;
use crate::email_templates;
use crate::jobs::{self, EmailJob};
use crate::{Config, Context, Error, Result};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Datelike, Utc, Weekday};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// Notifications listed in one email; the rest are counted.
pub const MAX_LISTED: i64 = 10;
/// Users per batch (two queries and one transaction each).
pub const BATCH: i64 = 500;
/// What an unsubscribe token is for: part of what its MAC covers, so a MAC
/// made for another purpose with the same key is not an unsubscribe token.
pub const UNSUBSCRIBE_PURPOSE: &str = "digest-unsubscribe";
/// The message of the unsubscribe route.
pub const UNSUBSCRIBED: &str = "You have been unsubscribed from notification emails";
/// The 400 of the unsubscribe route for a missing, malformed or forged token.
pub const INVALID_LINK: &str = "Invalid unsubscribe link";
/// The template of the digest email.
pub const TEMPLATE: &str = "notification_digest";

/// Which users a digest run is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    Daily,
    Weekly,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Weekly => "weekly",
        }
    }

    /// The period containing `at`, as it appears in the idempotency keys: the
    /// UTC date (`2026-11-20`) or the ISO week (`2026-W47`).
    pub fn key(self, at: DateTime<Utc>) -> String {
        match self {
            Self::Daily => at.format("%Y-%m-%d").to_string(),
            Self::Weekly => {
                let w = at.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            }
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Period {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "daily" => Ok(Self::Daily),
            "weekly" => Ok(Self::Weekly),
            other => Err(format!("expected daily or weekly, got {other:?}")),
        }
    }
}

/// What one [`run`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestReport {
    pub period: Period,
    /// The day or ISO week of the run (see [`Period::key`]).
    pub period_key: String,
    /// Digest emails queued.
    pub queued: usize,
    /// Users left out because their digest of this period was already queued.
    pub already_sent: usize,
}

// ---------------------------------------------------------------------------
// The digest
// ---------------------------------------------------------------------------

#[derive(sqlx::FromRow)]
struct Recipient {
    user_id: Uuid,
    email: String,
    first_name: String,
    last_digest_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct Item {
    user_id: Uuid,
    title: String,
    message: String,
    created_at: DateTime<Utc>,
    actor_username: Option<String>,
    /// All unread notifications of the user since the last digest.
    total: i64,
}

/// Emails the `period` digest to every user it is due to (see the module
/// documentation). Safe to run any number of times: one email per user per
/// day (`daily`) or ISO week (`weekly`).
pub async fn run(ctx: &Context, period: Period) -> Result<DigestReport> {
    let now = ctx.clock.now();
    let mut report = DigestReport {
        period,
        period_key: period.key(now),
        queued: 0,
        already_sent: 0,
    };
    let mut cursor = Uuid::nil();
    loop {
        let recipients = recipients(ctx, period, cursor, BATCH).await?;
        let Some(last) = recipients.last() else {
            break;
        };
        cursor = last.user_id;
        let full = recipients.len() as i64 == BATCH;
        let (queued, skipped) = send_batch(ctx, period, &report.period_key, &recipients).await?;
        report.queued += queued;
        report.already_sent += skipped;
        if !full {
            break;
        }
    }
    tracing::info!(
        period = %period,
        period_key = report.period_key,
        queued = report.queued,
        already_sent = report.already_sent,
        "notification digest queued"
    );
    Ok(report)
}

/// The scheduled digest at `tick`: the daily one, and on Mondays (UTC) the
/// weekly one too.
pub async fn run_scheduled(ctx: &Context, tick: DateTime<Utc>) -> Result<Vec<DigestReport>> {
    let mut reports = vec![run(ctx, Period::Daily).await?];
    if tick.weekday() == Weekday::Mon {
        reports.push(run(ctx, Period::Weekly).await?);
    }
    Ok(reports)
}

/// The next `limit` users after `cursor` (by id) that the `period` digest is
/// due to: one query.
async fn recipients(
    ctx: &Context,
    period: Period,
    cursor: Uuid,
    limit: i64,
) -> Result<Vec<Recipient>> {
    Ok(sqlx::query_as(
        "SELECT u.id AS user_id, u.email, COALESCE(pr.first_name, '') AS first_name,
                p.last_digest_at
         FROM users u
         LEFT JOIN notification_preferences p ON p.user_id = u.id
         LEFT JOIN user_profiles pr ON pr.user_id = u.id
         WHERE u.id > $1
           AND NOT u.email_unsubscribed
           AND COALESCE(p.email_digest, 'daily') = $2
           AND EXISTS (SELECT 1 FROM notifications n
                       WHERE n.user_id = u.id AND NOT n.is_read
                         AND n.created_at > COALESCE(p.last_digest_at, '-infinity'))
         ORDER BY u.id
         LIMIT $3",
    )
    .bind(cursor)
    .bind(period.as_str())
    .bind(limit)
    .fetch_all(&ctx.db)
    .await?)
}

/// Renders and queues the digests of one batch of recipients; returns the
/// emails queued and the users skipped because their key was taken.
async fn send_batch(
    ctx: &Context,
    period: Period,
    period_key: &str,
    recipients: &[Recipient],
) -> Result<(usize, usize)> {
    // Up to MAX_LISTED unread notifications per user, newest first, with the
    // count of all of them: one query for the batch.
    let ids: Vec<Uuid> = recipients.iter().map(|r| r.user_id).collect();
    let since: Vec<Option<DateTime<Utc>>> = recipients.iter().map(|r| r.last_digest_at).collect();
    let items: Vec<Item> = sqlx::query_as(
        "SELECT r.user_id, n.title, n.message, n.created_at, ap.username AS actor_username,
                n.total
         FROM unnest($1::uuid[], $2::timestamptz[]) AS r(user_id, since)
         CROSS JOIN LATERAL (
             SELECT n.id, n.title, n.message, n.created_at, n.actor_id,
                    count(*) OVER () AS total
             FROM notifications n
             WHERE n.user_id = r.user_id AND NOT n.is_read
               AND n.created_at > COALESCE(r.since, '-infinity')
             ORDER BY n.created_at DESC, n.id DESC
             LIMIT $3
         ) n
         LEFT JOIN user_profiles ap ON ap.user_id = n.actor_id
         ORDER BY r.user_id, n.created_at DESC, n.id DESC",
    )
    .bind(&ids)
    .bind(&since)
    .bind(MAX_LISTED)
    .fetch_all(&ctx.db)
    .await?;
    let mut by_user: BTreeMap<Uuid, Vec<Item>> = BTreeMap::new();
    for item in items {
        by_user.entry(item.user_id).or_default().push(item);
    }

    let app_link = format!("{}/", ctx.config.frontend_url.trim_end_matches('/'));
    let mut emails: Vec<(EmailJob, Uuid, DateTime<Utc>)> = Vec::with_capacity(by_user.len());
    for r in recipients {
        // Read since the first query: nothing to tell.
        let Some(items) = by_user.get(&r.user_id) else {
            continue;
        };
        let newest = items[0].created_at;
        let total = items[0].total;
        let listed: Vec<_> = items
            .iter()
            .map(|i| {
                json!({
                    "title": i.title,
                    "message": i.message,
                    "actor": i.actor_username,
                    "when": i.created_at.format("%b %-d, %H:%M UTC").to_string(),
                })
            })
            .collect();
        let more = total - listed.len() as i64;
        let unsubscribe_link = unsubscribe_url(&ctx.config, r.user_id);
        let vars = json!({
            "first_name": r.first_name,
            "period": period.as_str(),
            "total": total,
            "notifications": listed,
            "more": more,
            "app_link": app_link,
            "unsubscribe_link": unsubscribe_link,
        });
        let key = idempotency_key(period, r.user_id, period_key);
        let mut job = email_templates::email_job(TEMPLATE, key, &r.email, &vars)?;
        job.headers = unsubscribe_headers(&unsubscribe_link);
        emails.push((job, r.user_id, newest));
    }
    if emails.is_empty() {
        return Ok((0, 0));
    }

    let now = ctx.clock.now();
    let mut tx = ctx.db.begin().await?;
    let claims: Vec<(String, String)> = emails
        .iter()
        .map(|(job, _, _)| (job.idempotency_key.clone(), job.to.join(", ")))
        .collect();
    let claimed: HashSet<String> = email::reserve(&mut tx, TEMPLATE, &claims, now)
        .await?
        .into_iter()
        .collect();
    let total = emails.len();
    emails.retain(|(job, _, _)| claimed.contains(&job.idempotency_key));
    if !emails.is_empty() {
        let users: Vec<Uuid> = emails.iter().map(|(_, u, _)| *u).collect();
        let covered: Vec<DateTime<Utc>> = emails.iter().map(|(_, _, t)| *t).collect();
        sqlx::query(
            "INSERT INTO notification_preferences (user_id, last_digest_at, updated_at)
             SELECT t.user_id, t.covered, $3
             FROM unnest($1::uuid[], $2::timestamptz[]) AS t(user_id, covered)
             ON CONFLICT (user_id) DO UPDATE SET last_digest_at =
                 GREATEST(notification_preferences.last_digest_at, EXCLUDED.last_digest_at)",
        )
        .bind(&users)
        .bind(&covered)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let jobs_: Vec<EmailJob> = emails.into_iter().map(|(job, _, _)| job).collect();
        jobs::enqueue_many(&mut tx, &jobs_).await?;
    }
    tx.commit().await?;
    jobs::wake_relay(ctx);
    Ok((claimed.len(), total - claimed.len()))
}

/// The digest email's idempotency key: one per user per period.
pub fn idempotency_key(period: Period, user_id: Uuid, period_key: &str) -> String {
    format!("digest:{}:{user_id}:{period_key}", period.as_str())
}

/// The RFC 8058 one-click unsubscribe headers for `url`.
pub fn unsubscribe_headers(url: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("List-Unsubscribe".to_string(), format!("<{url}>")),
        (
            "List-Unsubscribe-Post".to_string(),
            "List-Unsubscribe=One-Click".to_string(),
        ),
    ])
}

// ---------------------------------------------------------------------------
// The unsubscribe link
// ---------------------------------------------------------------------------

type HmacSha256 = Hmac<Sha256>;

fn unsubscribe_mac(secret: &str, user_id: Uuid) -> HmacSha256 {
    let mut mac =
        <HmacSha256 as KeyInit>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(UNSUBSCRIBE_PURPOSE.as_bytes());
    mac.update(b":");
    mac.update(user_id.as_bytes());
    mac
}

/// The user's unsubscribe token: `<user id>.<base64url MAC>` (no expiry).
pub fn unsubscribe_token(config: &Config, user_id: Uuid) -> String {
    let mac = unsubscribe_mac(config.secret_key.expose(), user_id);
    format!(
        "{user_id}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

/// `{BACKEND_URL}/api/notifications/unsubscribe?token=…` for the user.
pub fn unsubscribe_url(config: &Config, user_id: Uuid) -> String {
    format!(
        "{}/api/notifications/unsubscribe?token={}",
        config.backend_url.trim_end_matches('/'),
        unsubscribe_token(config, user_id)
    )
}

/// The user a token was made for, when its MAC checks out (compared in
/// constant time); `None` for anything malformed or forged.
pub fn verify_unsubscribe_token(config: &Config, token: &str) -> Option<Uuid> {
    let (id, sig) = token.trim().split_once('.')?;
    let user_id = Uuid::parse_str(id).ok()?;
    let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
    unsubscribe_mac(config.secret_key.expose(), user_id)
        .verify_slice(&sig)
        .ok()?;
    Some(user_id)
}

/// The unsubscribe link: a valid token turns the user's digest off
/// (idempotent); anything else is 400 [`INVALID_LINK`].
pub async fn unsubscribe(ctx: &Context, token: Option<&str>) -> Result<()> {
    let user_id = token
        .and_then(|t| verify_unsubscribe_token(&ctx.config, t))
        .ok_or_else(|| Error::bad_request(INVALID_LINK))?;
    unsubscribe_digest(&ctx.db, user_id, ctx.clock.now()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::collections::HashMap;

    fn config(secret: &str) -> Config {
        let vars = HashMap::from([
            ("SECRET_KEY".to_string(), secret.to_string()),
            (
                "BACKEND_URL".to_string(),
                "https://api.example.com/".to_string(),
            ),
        ]);
        Config::from_map(&vars).unwrap()
    }

    #[test]
    fn tokens_verify_for_their_user_only() {
        let c = config("k1");
        let user = Uuid::new_v4();
        let token = unsubscribe_token(&c, user);
        assert_eq!(verify_unsubscribe_token(&c, &token), Some(user));
        // Another key, another user, a changed MAC, garbage: refused.
        assert_eq!(verify_unsubscribe_token(&config("k2"), &token), None);
        let (_, sig) = token.split_once('.').unwrap();
        let other = Uuid::new_v4();
        assert_eq!(
            verify_unsubscribe_token(&c, &format!("{other}.{sig}")),
            None
        );
        let mut flipped = token.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(verify_unsubscribe_token(&c, &flipped), None);
        for bad in [
            "",
            ".",
            "x.y",
            &user.to_string(),
            &format!("{user}."),
            "a.b.c",
        ] {
            assert_eq!(verify_unsubscribe_token(&c, bad), None, "{bad:?}");
        }
        let url = unsubscribe_url(&c, user);
        assert_eq!(
            url,
            format!("https://api.example.com/api/notifications/unsubscribe?token={token}")
        );
    }

    #[test]
    fn period_keys_are_the_day_and_the_iso_week() {
        // 2027-01-01 is a Friday in ISO week 53 of 2026.
        let at = Utc.with_ymd_and_hms(2027, 1, 1, 17, 0, 0).unwrap();
        assert_eq!(Period::Daily.key(at), "2027-01-01");
        assert_eq!(Period::Weekly.key(at), "2026-W53");
        assert_eq!("Weekly".parse::<Period>(), Ok(Period::Weekly));
        assert!("monthly".parse::<Period>().is_err());
        let u = Uuid::nil();
        assert_eq!(
            idempotency_key(Period::Daily, u, "2027-01-01"),
            format!("digest:daily:{u}:2027-01-01")
        );
        let h = unsubscribe_headers("https://x/u?token=t");
        assert_eq!(h["List-Unsubscribe"], "<https://x/u?token=t>");
        assert_eq!(h["List-Unsubscribe-Post"], "List-Unsubscribe=One-Click");
    }
}
