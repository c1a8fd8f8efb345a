//! Reports and moderation (API-NEXT.md N4.4).
//!
//! A user reports a post or a reply once while the report is open (409
//! `Already reported`); when `REPORTS_TO_HIDE` distinct users have open
//! reports on a target, it is hidden in the transaction of the report that
//! reaches the threshold. Hidden content is left out for everyone but its
//! author and admins ([`super::visibility`]). An admin resolves a report with
//! `hide`, `unhide`, `dismiss` or `delete`; every open report on the same
//! target is resolved with it, and the decision is written to the audit log.
//!
//! Lock order, as every community write: the post row first, then the reply
//! row, then report rows.

use super::posts::{Clawback, remove_post};
use super::replies::{lock_reply, remove_reply};
use super::rows::{AuthorRow, author_columns};
use super::validation::Validation;
use super::visibility::writable;
use super::write::{after_post_write, fail, lock_post, lock_post_for};
use super::{PostUser, cache};
use crate::audit::{self, Actor};
use crate::jobs;
use crate::{Context, Error, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

pub const REPORT_REASONS: &[&str] = &["spam", "harassment", "inappropriate", "other"];
pub const REPORT_STATUSES: &[&str] = &["open", "resolved"];
pub const RESOLVE_ACTIONS: &[&str] = &["hide", "unhide", "dismiss", "delete"];

/// `{reason, note?}` of a report.
#[derive(Debug, Clone, Default)]
pub struct NewReport {
    pub reason: String,
    pub note: Option<String>,
}

impl NewReport {
    pub fn validate(&self) -> Result<()> {
        let mut v = Validation::new();
        v.literal(&["body", "reason"], &self.reason, REPORT_REASONS);
        v.optional_len(&["body", "note"], &self.note, 500);
        v.finish()
    }
}

/// What is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Post,
    /// A reply of the post; `None` for a malformed id (`Reply not found`).
    Reply(Option<Uuid>),
}

/// Reports a post or one of its replies (`user_id` is the reporter).
pub async fn report(
    ctx: &Context,
    user_id: Uuid,
    post_id: Uuid,
    target: Target,
    input: NewReport,
) -> Result<()> {
    let mut tx = ctx.db.begin().await?;
    let post = lock_post_for(&mut tx, post_id, user_id).await?;
    let (target_type, target_id, author) = match target {
        Target::Post => ("post", post_id, post.user_id),
        Target::Reply(reply_id) => {
            let reply = lock_reply(&mut tx, post_id, reply_id).await?;
            if !writable(reply.is_hidden, reply.user_id, user_id) {
                return Err(super::replies::reply_not_found());
            }
            ("reply", reply.id, reply.user_id)
        }
    };
    if author == user_id {
        return Err(fail(400, "You cannot report your own content"));
    }
    input.validate()?;
    let id: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO content_reports
             (target_type, target_id, post_id, reporter_id, reason, note, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (reporter_id, target_type, target_id) WHERE status = 'open' DO NOTHING
         RETURNING id",
    )
    .bind(target_type)
    .bind(target_id)
    .bind(post_id)
    .bind(user_id)
    .bind(&input.reason)
    .bind(&input.note)
    .bind(ctx.clock.now())
    .fetch_optional(&mut *tx)
    .await?;
    if id.is_none() {
        return Err(fail(409, "Already reported"));
    }
    // The post's lock serializes the reports on it and its replies, so the
    // count cannot race.
    let reporters: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT reporter_id) FROM content_reports
         WHERE target_type = $1 AND target_id = $2 AND status = 'open'",
    )
    .bind(target_type)
    .bind(target_id)
    .fetch_one(&mut *tx)
    .await?;
    let hid_post = if reporters >= ctx.config.reports_to_hide {
        let snap = ctx.settings_now().await?;
        let claw = Clawback {
            settings: &snap.settings,
            now: ctx.clock.now(),
        };
        set_hidden(&mut tx, target_type, target_id, true, claw).await? && target_type == "post"
    } else {
        false
    };
    tx.commit().await?;
    if hid_post {
        cache::invalidate(ctx).await;
    }
    Ok(())
}

/// Sets `is_hidden` on the target; whether it changed.
/// A post hidden (by reports or an admin) gives its reward back when it is
/// within the window (N6.4); an unhide pays nothing again.
async fn set_hidden(
    conn: &mut PgConnection,
    target_type: &str,
    target_id: Uuid,
    hidden: bool,
    claw: Clawback<'_>,
) -> Result<bool> {
    let sql = match target_type {
        "post" => "UPDATE posts SET is_hidden = $2 WHERE id = $1 AND is_hidden <> $2",
        _ => "UPDATE post_replies SET is_hidden = $2 WHERE id = $1 AND is_hidden <> $2",
    };
    let changed = sqlx::query(sql)
        .bind(target_id)
        .bind(hidden)
        .execute(&mut *conn)
        .await?
        .rows_affected()
        > 0;
    if changed && hidden && target_type == "post" {
        super::rewards::claw_back(conn, claw.settings, target_id, claw.now).await?;
    }
    Ok(changed)
}

/// A report in the admin queue.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportItem {
    pub id: Uuid,
    pub target_type: String,
    pub target_id: Uuid,
    pub post_id: Uuid,
    pub reason: String,
    pub note: Option<String>,
    pub reporter: PostUser,
    /// Reports on the same target with the same status (for an open report:
    /// how many users currently flag the target).
    pub report_count: i64,
    /// Whether the target is hidden now (false once it is gone).
    pub is_hidden: bool,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolution: Option<String>,
}

#[derive(sqlx::FromRow)]
struct ReportRow {
    id: Uuid,
    target_type: String,
    target_id: Uuid,
    post_id: Uuid,
    reason: String,
    note: Option<String>,
    reporter_id: Uuid,
    #[sqlx(flatten)]
    reporter: AuthorRow,
    report_count: i64,
    is_hidden: bool,
    status: String,
    created_at: DateTime<Utc>,
    resolved_at: Option<DateTime<Utc>>,
    resolution: Option<String>,
}

/// `GET /api/admin/moderation/reports`: the reports with `status`, newest
/// first. One query whatever the page size.
pub async fn reports(
    ctx: &Context,
    status: &str,
    skip: i64,
    limit: i64,
) -> Result<Vec<ReportItem>> {
    let snap = ctx.settings_now().await?;
    let sql = format!(
        "SELECT r.id, r.target_type::text, r.target_id, r.post_id, r.reason::text, r.note,
                r.reporter_id, {},
                (SELECT count(*) FROM content_reports c
                 WHERE c.target_type = r.target_type AND c.target_id = r.target_id
                   AND c.status = r.status) AS report_count,
                COALESCE(CASE WHEN r.target_type = 'post' THEN p.is_hidden ELSE rp.is_hidden END,
                         false) AS is_hidden,
                r.status::text, r.created_at, r.resolved_at, r.resolution::text
         FROM content_reports r
         LEFT JOIN posts p ON r.target_type = 'post' AND p.id = r.target_id
         LEFT JOIN post_replies rp ON r.target_type = 'reply' AND rp.id = r.target_id
         LEFT JOIN user_profiles pr ON pr.user_id = r.reporter_id
         LEFT JOIN subscriptions s ON s.user_id = r.reporter_id
         WHERE r.status = $1
         ORDER BY r.created_at DESC, r.id DESC
         OFFSET $2 LIMIT $3",
        author_columns(snap.settings.guild_master.includes_trialing)
    );
    let rows: Vec<ReportRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(status)
        .bind(skip)
        .bind(limit)
        .fetch_all(&ctx.db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| ReportItem {
            id: r.id,
            target_type: r.target_type,
            target_id: r.target_id,
            post_id: r.post_id,
            reason: r.reason,
            note: r.note,
            reporter: r.reporter.into_user(r.reporter_id),
            report_count: r.report_count,
            is_hidden: r.is_hidden,
            status: r.status,
            created_at: r.created_at,
            resolved_at: r.resolved_at,
            resolution: r.resolution,
        })
        .collect())
}

fn report_not_found() -> Error {
    Error::not_found("Report not found")
}

/// `POST /api/admin/moderation/reports/{id}/resolve` `{action}`: applies the
/// action to the report's target and resolves every open report on it, with
/// one audit row (`report.resolve`). `report_id` is `None` for a malformed id.
/// `delete` deletes the target as its author could (same counters, tags,
/// Mux clean-up; an accepted answer stays: 400).
pub async fn resolve(
    ctx: &Context,
    actor: Actor,
    report_id: Option<Uuid>,
    action: &str,
) -> Result<()> {
    let report_id = report_id.ok_or_else(report_not_found)?;
    let mut tx = ctx.db.begin().await?;
    let found: Option<(Uuid, String, Uuid)> = sqlx::query_as(
        "SELECT post_id, target_type::text, target_id FROM content_reports WHERE id = $1",
    )
    .bind(report_id)
    .fetch_optional(&mut *tx)
    .await?;
    let (post_id, target_type, target_id) = found.ok_or_else(report_not_found)?;
    // The post first (the lock order of every community write); a report
    // whose post went meanwhile went with it.
    let post = lock_post(&mut tx, post_id)
        .await?
        .ok_or_else(report_not_found)?;
    let open: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM content_reports
         WHERE target_type = $1 AND target_id = $2 AND status = 'open'",
    )
    .bind(&target_type)
    .bind(target_id)
    .fetch_one(&mut *tx)
    .await?;
    let hidden_before = match target_type.as_str() {
        "post" => post.is_hidden,
        _ => sqlx::query_scalar::<_, bool>("SELECT is_hidden FROM post_replies WHERE id = $1")
            .bind(target_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(report_not_found)?,
    };
    let now = ctx.clock.now();
    let snap = ctx.settings_now().await?;
    let claw = Clawback {
        settings: &snap.settings,
        now,
    };
    // Resolve first: a delete takes the reports with the content.
    let resolved = sqlx::query(
        "UPDATE content_reports
         SET status = 'resolved', resolution = $3, resolved_at = $4, resolved_by = $5
         WHERE target_type = $1 AND target_id = $2 AND status = 'open'",
    )
    .bind(&target_type)
    .bind(target_id)
    .bind(action)
    .bind(now)
    .bind(actor.id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let mut feed_changed = false;
    let hidden_after: Option<bool> = match action {
        "hide" | "unhide" => {
            let hide = action == "hide";
            let changed = set_hidden(&mut tx, &target_type, target_id, hide, claw).await?;
            feed_changed = changed && target_type == "post";
            Some(hide)
        }
        "dismiss" => Some(hidden_before),
        "delete" => {
            if target_type == "post" {
                remove_post(&mut tx, post_id, &post, claw).await?;
                feed_changed = true;
            } else {
                let reply = lock_reply(&mut tx, post_id, Some(target_id))
                    .await
                    .map_err(|_| report_not_found())?;
                remove_reply(&mut tx, post_id, &reply).await?;
            }
            None
        }
        _ => return Err(Error::bad_request("Invalid action")),
    };
    let before = json!({
        "target_type": target_type, "target_id": target_id, "post_id": post_id,
        "is_hidden": hidden_before, "open_reports": open,
    });
    let after = json!({
        "action": action, "is_hidden": hidden_after, "deleted": hidden_after.is_none(),
        "reports_resolved": resolved,
    });
    audit::record(
        &mut tx,
        actor
            .entry(
                audit::action::REPORT_RESOLVE,
                audit::target::REPORT,
                report_id,
            )
            .before(before)
            .after(after),
    )
    .await?;
    tx.commit().await?;
    if feed_changed {
        after_post_write(ctx).await;
    } else {
        jobs::wake_relay(ctx);
    }
    Ok(())
}

/// Resolved reports are kept this long (counted from the report), then the
/// daily maintenance deletes them; the audit log keeps the decisions.
pub const KEEP_RESOLVED_REPORTS_DAYS: i64 = 365;

/// The daily maintenance's part: deletes resolved reports older than
/// [`KEEP_RESOLVED_REPORTS_DAYS`] (`content_reports_queue_idx`). Open
/// reports stay until an admin resolves them. Returns the rows deleted.
pub async fn prune_reports(db: &sqlx::PgPool, now: DateTime<Utc>) -> Result<u64> {
    let r =
        sqlx::query("DELETE FROM content_reports WHERE status = 'resolved' AND created_at < $1")
            .bind(now - chrono::Duration::days(KEEP_RESOLVED_REPORTS_DAYS))
            .execute(db)
            .await?;
    Ok(r.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_input_rules() {
        let ok = NewReport {
            reason: "spam".into(),
            note: Some("x".repeat(500)),
        };
        assert!(ok.validate().is_ok());
        let long = NewReport {
            note: Some("x".repeat(501)),
            ..ok.clone()
        };
        assert_eq!(long.validate().unwrap_err().status(), 422);
        let bad = NewReport {
            reason: "boring".into(),
            note: None,
        };
        assert_eq!(bad.validate().unwrap_err().status(), 422);
    }
}
