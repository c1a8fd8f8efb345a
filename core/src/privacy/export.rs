//! Data export (GDPR art. 15/20, API-NEXT.md N3): a user asks for their data
//! ([`request`], one per `EXPORT_LINK_SECONDS`), the worker writes one ZIP of
//! JSON files ([`run`]), uploads it privately to object storage at
//! `{EXPORT_PREFIX}/{user_id}/{export_id}.zip` and emails a presigned link;
//! [`list`] shows the user's exports with fresh links while they live; the
//! daily maintenance deletes expired archives ([`clean_expired`]).
//!
//! The archive is streamed: rows are read from a database cursor, serialized
//! by PostgreSQL (`to_jsonb`) and written in 64 KiB chunks to a ZIP in a
//! temporary file on a blocking thread, which is then uploaded from disk. A
//! user with 10,000 rows costs a few chunks of memory, not the archive.

use super::storage;
use crate::email_templates;
use crate::jobs::{self, DataExportJob};
use crate::{Context, Error, Result};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;
use uuid::Uuid;

pub const EXPORT_STARTED: &str = "Your export is being prepared";
pub const EXPORT_TOO_SOON: &str = "An export was requested recently";
/// The email template of both outcomes.
pub const EMAIL_TEMPLATE: &str = "data_export";
/// Rows of `data_exports` are kept this long (the archives go much earlier).
pub const KEEP_EXPORT_ROWS_DAYS: i64 = 90;

/// The files of the archive: (name, query returning one JSON text per row,
/// `$1` = the user id). The query must read only the user's own rows.
const LIST_FILES: &[(&str, &str)] = &[
    (
        "progress.json",
        "SELECT to_jsonb(t)::text FROM (
             SELECT up.lesson_id, l.title AS lesson_title, up.is_completed, up.completed_at
             FROM user_progress up JOIN lessons l ON l.id = up.lesson_id
             WHERE up.user_id = $1 ORDER BY up.completed_at NULLS LAST, up.id) t",
    ),
    (
        "submissions.json",
        "SELECT to_jsonb(t)::text FROM (
             SELECT b.id, b.lesson_id, l.title AS lesson_title, b.video_url, b.status,
                    b.instructor_feedback, b.instructor_video_url, b.submitted_at, b.reviewed_at
             FROM boss_submissions b JOIN lessons l ON l.id = b.lesson_id
             WHERE b.user_id = $1 ORDER BY b.submitted_at, b.id) t",
    ),
    (
        "posts.json",
        "SELECT to_jsonb(t)::text FROM (
             SELECT p.id, p.post_type, p.title, p.body, p.mux_playback_id, p.tags, p.is_wip,
                    p.feedback_type, p.is_solved, p.accepted_answer_id, p.reaction_count,
                    p.reply_count, p.is_hidden, p.created_at, p.updated_at
             FROM posts p WHERE p.user_id = $1 ORDER BY p.created_at, p.id) t",
    ),
    (
        "replies.json",
        "SELECT to_jsonb(t)::text FROM (
             SELECT r.id, r.post_id, r.parent_reply_id, r.content, r.mux_playback_id,
                    r.is_accepted_answer, r.is_deleted, r.is_hidden, r.created_at
             FROM post_replies r WHERE r.user_id = $1 ORDER BY r.created_at, r.id) t",
    ),
    (
        "reactions.json",
        "SELECT to_jsonb(t)::text FROM (
             SELECT r.post_id, r.reaction_type, r.created_at
             FROM post_reactions r WHERE r.user_id = $1 ORDER BY r.created_at, r.id) t",
    ),
    (
        "saved_posts.json",
        "SELECT to_jsonb(t)::text FROM (
             SELECT s.post_id, s.created_at
             FROM saved_posts s WHERE s.user_id = $1 ORDER BY s.created_at, s.post_id) t",
    ),
    (
        "clave_ledger.json",
        "SELECT to_jsonb(t)::text FROM (
             SELECT c.id, c.amount, c.reason, c.reference_id, c.created_at
             FROM clave_transactions c WHERE c.user_id = $1 ORDER BY c.created_at, c.id) t",
    ),
    (
        "badges.json",
        "SELECT to_jsonb(t)::text FROM (
             SELECT b.badge_id, d.name, d.tier, d.category, b.earned_at, b.display_order
             FROM user_badges b JOIN badge_definitions d ON d.id = b.badge_id
             WHERE b.user_id = $1 ORDER BY b.earned_at, b.badge_id) t",
    ),
    (
        "lesson_comments.json",
        "SELECT to_jsonb(t)::text FROM (
             SELECT c.id, c.lesson_id, c.parent_id, c.content, c.created_at
             FROM comments c WHERE c.user_id = $1 ORDER BY c.created_at, c.id) t",
    ),
    (
        "notifications.json",
        "SELECT to_jsonb(t)::text FROM (
             SELECT n.id, n.type, n.title, n.message, n.reference_type, n.reference_id,
                    n.is_read, n.actor_id, n.created_at
             FROM notifications n WHERE n.user_id = $1 ORDER BY n.created_at, n.id) t",
    ),
];

/// The one-object files: (name, query returning at most one JSON text).
const OBJECT_FILES: &[(&str, &str)] = &[
    (
        "account.json",
        "SELECT jsonb_build_object(
             'id', u.id, 'email', u.email, 'auth_provider', u.auth_provider,
             'role', u.role, 'is_verified', u.is_verified,
             'email_unsubscribed', u.email_unsubscribed, 'created_at', u.created_at,
             'profile', (SELECT to_jsonb(p) - 'id' - 'user_id' FROM user_profiles p
                         WHERE p.user_id = u.id),
             'stats', (SELECT to_jsonb(s) - 'user_id' FROM user_stats s WHERE s.user_id = u.id)
         )::text
         FROM users u WHERE u.id = $1",
    ),
    (
        "subscription.json",
        "SELECT (to_jsonb(s) - 'id' - 'user_id')::text FROM subscriptions s WHERE s.user_id = $1",
    ),
    (
        "notification_preferences.json",
        "SELECT (to_jsonb(n) - 'user_id')::text FROM notification_preferences n
         WHERE n.user_id = $1",
    ),
];

/// Every file name of an archive, in order.
pub fn file_names() -> Vec<&'static str> {
    OBJECT_FILES
        .iter()
        .chain(LIST_FILES)
        .map(|(name, _)| *name)
        .collect()
}

/// `POST /api/users/me/export`: records a pending export and queues its job.
/// 429 with `Retry-After` when the user's last export is younger than
/// `EXPORT_LINK_SECONDS`.
pub async fn request(ctx: &Context, user_id: Uuid) -> Result<Uuid> {
    let now = ctx.clock.now();
    let window = ctx.config.export_link_seconds as i64;
    let mut tx = ctx.db.begin().await?;
    // Serializes one user's requests (two at once cannot both pass the check).
    sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    let last: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT max(created_at) FROM data_exports WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await?;
    if let Some(last) = last {
        let next = last + chrono::Duration::seconds(window);
        if next > now {
            let wait = (next - now).num_seconds().max(1) as u64;
            return Err(Error::too_many(EXPORT_TOO_SOON, wait));
        }
    }
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO data_exports (id, user_id, created_at) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(user_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    jobs::enqueue(&mut tx, &DataExportJob { export_id: id }).await?;
    tx.commit().await?;
    jobs::wake_relay(ctx);
    Ok(id)
}

/// One export as `GET /api/users/me/exports` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportItem {
    pub id: Uuid,
    /// `pending`, `ready`, `failed` or `expired`.
    pub status: &'static str,
    pub created_at: DateTime<Utc>,
    pub ready_at: Option<DateTime<Utc>>,
    /// A fresh presigned link while the export is ready and not expired.
    pub download_url: Option<String>,
}

type ExportRow = (
    Uuid,
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<String>,
);

/// The user's exports, newest first (at most 50).
pub async fn list(ctx: &Context, user_id: Uuid) -> Result<Vec<ExportItem>> {
    let rows: Vec<ExportRow> = sqlx::query_as(
        "SELECT id, status, created_at, ready_at, expires_at, object_key
         FROM data_exports WHERE user_id = $1
         ORDER BY created_at DESC, id DESC LIMIT 50",
    )
    .bind(user_id)
    .fetch_all(&ctx.db)
    .await?;
    let now = ctx.clock.now();
    let store = storage::storage(ctx);
    let mut out = Vec::with_capacity(rows.len());
    for (id, status, created_at, ready_at, expires_at, key) in rows {
        let live = expires_at.is_some_and(|e| e > now);
        let status = match status.as_str() {
            "ready" if live => "ready",
            "ready" => "expired",
            "failed" => "failed",
            _ => "pending",
        };
        let download_url = match (status, &store, key, expires_at) {
            ("ready", Some(store), Some(key), Some(expires_at)) => {
                let left = (expires_at - now).to_std().unwrap_or_default();
                let lifetime = left.min(Duration::from_secs(ctx.config.export_link_seconds));
                Some(store.presign_get(&key, now, lifetime).await?)
            }
            _ => None,
        };
        out.push(ExportItem {
            id,
            status,
            created_at,
            ready_at,
            download_url,
        });
    }
    Ok(out)
}

/// The object key of an export.
pub fn object_key(ctx: &Context, user_id: Uuid, export_id: Uuid) -> String {
    format!("{}/{user_id}/{export_id}.zip", ctx.config.export_prefix)
}

/// The `data_export` job: writes the archive, uploads it, marks the export
/// ready and emails the link (or, without object storage, marks it failed and
/// emails that). Idempotent: an export that is no longer pending is left alone,
/// and the email's idempotency key is the export's.
pub async fn run(ctx: &Context, job: &DataExportJob) -> Result<()> {
    let row: Option<(Uuid, String, String, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT e.user_id, e.status, u.email, u.deletion_requested_at
         FROM data_exports e JOIN users u ON u.id = e.user_id WHERE e.id = $1",
    )
    .bind(job.export_id)
    .fetch_optional(&ctx.db)
    .await?;
    let Some((user_id, status, email, deletion)) = row else {
        return Ok(());
    };
    if status != "pending" {
        return Ok(());
    }
    if deletion.is_some() {
        // The account is going away: no archive, no email.
        finish_failed(ctx, job.export_id, None, "account deletion requested").await?;
        return Ok(());
    }
    let Some(store) = storage::storage(ctx) else {
        finish_failed(
            ctx,
            job.export_id,
            Some(&email),
            "object storage is not configured",
        )
        .await?;
        return Ok(());
    };

    let key = object_key(ctx, user_id, job.export_id);
    let file = TempFile::new(job.export_id);
    write_archive(ctx, user_id, file.path.clone()).await?;
    store.put_file(&key, &file.path, "application/zip").await?;
    drop(file);

    let now = ctx.clock.now();
    let lifetime = ctx.config.export_link_seconds;
    let expires_at = now + chrono::Duration::seconds(lifetime as i64);
    let link = store
        .presign_get(&key, now, Duration::from_secs(lifetime))
        .await?;
    let mail = email_templates::email_job(
        EMAIL_TEMPLATE,
        format!("data-export:{}", job.export_id),
        email,
        &json!({
            "ready": true,
            "download_link": link,
            "expires_in": email_templates::duration_phrase((lifetime / 60) as i64),
        }),
    )?;
    let mut tx = ctx.db.begin().await?;
    // Not if the account's deletion was requested meanwhile (the deletion
    // may already have cleaned the user's objects and rows).
    let updated = sqlx::query(
        "UPDATE data_exports e
         SET status = 'ready', object_key = $2, ready_at = $3, expires_at = $4, error = NULL
         FROM users u
         WHERE e.id = $1 AND e.status = 'pending'
           AND u.id = e.user_id AND u.deletion_requested_at IS NULL",
    )
    .bind(job.export_id)
    .bind(&key)
    .bind(now)
    .bind(expires_at)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated == 1 {
        jobs::enqueue(&mut tx, &mail).await?;
    }
    tx.commit().await?;
    jobs::wake_relay(ctx);
    if updated == 1 {
        tracing::info!(export_id = %job.export_id, %user_id, "data export ready");
        return Ok(());
    }
    // Someone else finished it (a duplicate delivery), or the account is
    // going away: the archive stays only if it is the export's own.
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM data_exports WHERE id = $1")
            .bind(job.export_id)
            .fetch_optional(&ctx.db)
            .await?;
    if status.as_deref() != Some("ready") {
        store.delete(&key).await?;
        if status.as_deref() == Some("pending") {
            finish_failed(ctx, job.export_id, None, "account deletion requested").await?;
        }
    }
    Ok(())
}

/// Marks a pending export failed and (with an address) emails the user so.
async fn finish_failed(
    ctx: &Context,
    export_id: Uuid,
    email: Option<&str>,
    why: &str,
) -> Result<()> {
    let mut tx = ctx.db.begin().await?;
    let updated = sqlx::query(
        "UPDATE data_exports SET status = 'failed', error = $2 WHERE id = $1 AND status = 'pending'",
    )
    .bind(export_id)
    .bind(why)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if let (1, Some(email)) = (updated, email) {
        let mail = email_templates::email_job(
            EMAIL_TEMPLATE,
            format!("data-export:{export_id}"),
            email,
            &json!({"ready": false, "download_link": null, "expires_in": null}),
        )?;
        jobs::enqueue(&mut tx, &mail).await?;
    }
    tx.commit().await?;
    jobs::wake_relay(ctx);
    tracing::warn!(%export_id, reason = why, "data export failed");
    Ok(())
}

/// A temporary file removed when dropped.
struct TempFile {
    path: PathBuf,
}

impl TempFile {
    fn new(export_id: Uuid) -> Self {
        Self {
            path: std::env::temp_dir().join(format!("mambo-export-{export_id}.zip")),
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What the reading side sends the ZIP-writing thread.
enum Chunk {
    /// Starts a new file in the archive.
    File(&'static str),
    Bytes(Vec<u8>),
}

/// Bytes buffered before a chunk goes to the writer.
const CHUNK_BYTES: usize = 64 * 1024;

/// Writes the user's archive to `path`: every file of [`file_names`], each a
/// JSON document (an object, `null`, or an array of rows).
pub async fn write_archive(ctx: &Context, user_id: Uuid, path: PathBuf) -> Result<()> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(8);
    let writer = tokio::task::spawn_blocking(move || write_zip(&path, rx));
    let produced = produce(ctx, user_id, &tx).await;
    drop(tx);
    let written = writer
        .await
        .map_err(|e| Error::internal(format!("the archive writer stopped: {e}")))?;
    produced?;
    written.map_err(|e| Error::internal(format!("writing the export archive: {e}")))
}

async fn produce(
    ctx: &Context,
    user_id: Uuid,
    tx: &tokio::sync::mpsc::Sender<Chunk>,
) -> Result<()> {
    let send = |c: Chunk| async move {
        tx.send(c)
            .await
            .map_err(|_| Error::internal("the archive writer stopped early"))
    };
    for (name, sql) in OBJECT_FILES {
        send(Chunk::File(name)).await?;
        let one: Option<String> = sqlx::query_scalar(*sql)
            .bind(user_id)
            .fetch_optional(&ctx.db)
            .await?;
        let mut body = one.unwrap_or_else(|| "null".into()).into_bytes();
        body.push(b'\n');
        send(Chunk::Bytes(body)).await?;
    }
    for (name, sql) in LIST_FILES {
        send(Chunk::File(name)).await?;
        let mut buf = Vec::with_capacity(CHUNK_BYTES + 1024);
        buf.push(b'[');
        let mut first = true;
        let mut rows = sqlx::query_scalar::<_, String>(*sql)
            .bind(user_id)
            .fetch(&ctx.db);
        while let Some(row) = rows.try_next().await? {
            if !first {
                buf.push(b',');
            }
            first = false;
            buf.push(b'\n');
            buf.extend_from_slice(row.as_bytes());
            if buf.len() >= CHUNK_BYTES {
                let full = std::mem::replace(&mut buf, Vec::with_capacity(CHUNK_BYTES + 1024));
                send(Chunk::Bytes(full)).await?;
            }
        }
        drop(rows);
        buf.extend_from_slice(if first { b"]\n" } else { b"\n]\n" });
        send(Chunk::Bytes(buf)).await?;
    }
    Ok(())
}

/// The blocking side: a deflated ZIP written to a file as chunks arrive.
fn write_zip(
    path: &std::path::Path,
    mut rx: tokio::sync::mpsc::Receiver<Chunk>,
) -> std::io::Result<()> {
    use zip::write::SimpleFileOptions;
    let file = std::fs::File::create(path)?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(false);
    while let Some(chunk) = rx.blocking_recv() {
        match chunk {
            Chunk::File(name) => zip
                .start_file(name, options)
                .map_err(std::io::Error::other)?,
            Chunk::Bytes(b) => zip.write_all(&b)?,
        }
    }
    let mut out = zip.finish().map_err(std::io::Error::other)?;
    out.flush()?;
    out.get_ref().sync_all()?;
    Ok(())
}

/// The exports' part of the daily maintenance: deletes the archives of
/// expired exports from object storage and export rows older than
/// [`KEEP_EXPORT_ROWS_DAYS`]. Returns (archives deleted, rows deleted).
pub async fn clean_expired(ctx: &Context) -> Result<(usize, u64)> {
    let now = ctx.clock.now();
    let mut archives = 0;
    if let Some(store) = storage::storage(ctx) {
        let due: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT id, object_key FROM data_exports
             WHERE object_key IS NOT NULL AND cleaned_at IS NULL AND expires_at <= $1
             ORDER BY expires_at LIMIT 1000",
        )
        .bind(now)
        .fetch_all(&ctx.db)
        .await?;
        let mut done = Vec::with_capacity(due.len());
        for (id, key) in due {
            match store.delete(&key).await {
                Ok(()) => done.push(id),
                Err(e) => {
                    tracing::warn!(export_id = %id, error = %e, "deleting an expired export failed")
                }
            }
        }
        if !done.is_empty() {
            sqlx::query("UPDATE data_exports SET cleaned_at = $2 WHERE id = ANY($1)")
                .bind(&done)
                .bind(now)
                .execute(&ctx.db)
                .await?;
        }
        archives = done.len();
    }
    let cutoff = now - chrono::Duration::days(KEEP_EXPORT_ROWS_DAYS);
    let rows = sqlx::query(
        "DELETE FROM data_exports
         WHERE created_at < $1 AND (object_key IS NULL OR cleaned_at IS NOT NULL)",
    )
    .bind(cutoff)
    .execute(&ctx.db)
    .await?
    .rows_affected();
    Ok((archives, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_email_says_ready_or_failed() {
        let ready = email_templates::render(
            EMAIL_TEMPLATE,
            &json!({
                "ready": true,
                "download_link": "https://r2.example/exports/u/e.zip?X-Amz-Signature=a&b=<1>",
                "expires_in": email_templates::duration_phrase(1440),
            }),
        )
        .unwrap();
        assert_eq!(ready.subject, "Your data export is ready - The Mambo Guild");
        assert!(
            ready
                .text
                .contains("\nhttps://r2.example/exports/u/e.zip?X-Amz-Signature=a&b=<1>\n")
        );
        assert!(ready.text.contains("The link expires in 24 hours."));
        assert!(ready.html.contains("X-Amz-Signature=a&amp;b=&lt;1&gt;"));
        let failed = email_templates::render(
            EMAIL_TEMPLATE,
            &json!({"ready": false, "download_link": null, "expires_in": null}),
        )
        .unwrap();
        assert_eq!(
            failed.subject,
            "Your data export could not be prepared - The Mambo Guild"
        );
        assert!(!failed.text.contains("http"));
        assert!(!failed.html.contains("Download your data"));
    }

    #[test]
    fn every_file_reads_only_the_users_rows() {
        let names = file_names();
        assert_eq!(names.len(), OBJECT_FILES.len() + LIST_FILES.len());
        for (name, sql) in OBJECT_FILES.iter().chain(LIST_FILES) {
            assert!(name.ends_with(".json"));
            assert!(sql.contains("= $1"), "{name} must filter on the user");
        }
    }
}
