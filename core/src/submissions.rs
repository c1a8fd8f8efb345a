//! Boss-battle video submissions and their grading (API.md §3.10, §3.3, D27, D29).

use crate::audit::{self, Actor, Table};
use crate::economy;
use crate::jobs::{self, EmailJob};
use crate::{Context, Error, Result, notifications};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

/// XP paid for the first approval of a boss battle (§4.4).
pub const BOSS_BATTLE_XP: i64 = 500;

/// Submission statuses (text in the database, API values).
pub const STATUSES: &[&str] = &["pending", "approved", "rejected"];

/// One submission, as the student sees it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Submission {
    pub id: Uuid,
    pub user_id: Uuid,
    pub lesson_id: Uuid,
    pub video_url: String,
    pub status: String,
    pub instructor_feedback: Option<String>,
    pub instructor_video_url: Option<String>,
    pub submitted_at: DateTime<Utc>,
    pub reviewed_at: Option<DateTime<Utc>>,
}

/// One submission in the admin grading queue (D29: with who and what).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AdminSubmission {
    #[sqlx(flatten)]
    pub submission: Submission,
    pub student_first_name: String,
    pub student_last_name: String,
    pub student_email: String,
    pub lesson_title: String,
}

/// Who is submitting.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub id: Uuid,
    pub role: &'a str,
}

/// Longest accepted video URL.
const MAX_URL_LEN: usize = 2048;

/// `video_url` must be an https URL or a Mux playback id (alphanumeric, 10–100
/// characters). Returns the trimmed value or the contract's 422.
pub fn validate_video_url(raw: &str) -> Result<String> {
    let v = raw.trim();
    let is_playback_id =
        (10..=100).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric());
    let is_https = v.len() <= MAX_URL_LEN
        && url::Url::parse(v)
            .map(|u| u.scheme() == "https" && u.host_str().is_some_and(|h| !h.is_empty()))
            .unwrap_or(false);
    if is_playback_id || is_https {
        Ok(v.to_string())
    } else {
        Err(Error::value_error(
            &["body", "video_url"],
            "video_url must be an https URL or a Mux playback id",
            json!(raw),
        ))
    }
}

const SUBMISSION_COLUMNS: &str = "b.id, b.user_id, b.lesson_id, b.video_url, b.status,
    b.instructor_feedback, b.instructor_video_url, b.submitted_at, b.reviewed_at";

#[derive(sqlx::FromRow)]
struct LessonAccess {
    is_boss_battle: bool,
    is_free: bool,
    is_published: bool,
    subscribed: bool,
}

/// Submits a boss-battle video. Checks, in order: the video URL (422), the
/// lesson exists and is visible (404), is a boss battle (400), the caller may
/// open it (403), and no earlier submission exists (400, also under a race).
pub async fn submit(
    ctx: &Context,
    caller: Caller<'_>,
    lesson_id: &str,
    video_url: &str,
) -> Result<Submission> {
    let video_url = validate_video_url(video_url)?;
    let not_found = || Error::not_found("Lesson not found");
    let lesson_id = Uuid::parse_str(lesson_id.trim()).map_err(|_| not_found())?;
    let staff = caller.role == "admin" || caller.role == "instructor";

    let mut tx = ctx.db.begin().await?;
    // The access rule: free world → any signed-in user; otherwise the one
    // paid-access condition (`access::PRO_SQL`); admins and instructors
    // always.
    let access = sqlx::query_as::<_, LessonAccess>(sqlx::AssertSqlSafe(format!(
        "SELECT l.is_boss_battle, w.is_free, w.is_published,
                EXISTS (SELECT 1 FROM subscriptions s
                        WHERE s.user_id = $2 AND {access}) AS subscribed
         FROM lessons l
         JOIN levels lv ON lv.id = l.level_id
         JOIN worlds w ON w.id = lv.world_id
         WHERE l.id = $1",
        access = crate::access::PRO_SQL,
    )))
    .bind(lesson_id)
    .bind(caller.id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(not_found)?;
    if !access.is_published && !staff {
        return Err(not_found());
    }
    if !access.is_boss_battle {
        return Err(Error::bad_request("This lesson is not a boss battle"));
    }
    if !(staff || access.is_free || access.subscribed) {
        return Err(Error::forbidden(
            "Subscription required. Please upgrade to access this course.",
        ));
    }

    let now = ctx.clock.now();
    let inserted = sqlx::query_as::<_, Submission>(
        "INSERT INTO boss_submissions AS b (user_id, lesson_id, video_url, status, submitted_at)
         VALUES ($1, $2, $3, 'pending', $4)
         ON CONFLICT (user_id, lesson_id) DO NOTHING
         RETURNING b.id, b.user_id, b.lesson_id, b.video_url, b.status,
                   b.instructor_feedback, b.instructor_video_url, b.submitted_at, b.reviewed_at",
    )
    .bind(caller.id)
    .bind(lesson_id)
    .bind(&video_url)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(submission) = inserted else {
        return Err(Error::bad_request(
            "Submission already exists for this lesson",
        ));
    };
    tx.commit().await?;
    Ok(submission)
}

/// The caller's submissions, newest first.
pub async fn my_submissions(ctx: &Context, user_id: Uuid) -> Result<Vec<Submission>> {
    let rows = sqlx::query_as::<_, Submission>(sqlx::AssertSqlSafe(format!(
        "SELECT {SUBMISSION_COLUMNS} FROM boss_submissions b
         WHERE b.user_id = $1
         ORDER BY b.submitted_at DESC, b.id DESC"
    )))
    .bind(user_id)
    .fetch_all(&ctx.db)
    .await?;
    Ok(rows)
}

/// The grading queue: submissions of `status` (`pending` by default; `all` for
/// every status), oldest first, with the student and the lesson.
pub async fn admin_list(ctx: &Context, status: Option<&str>) -> Result<Vec<AdminSubmission>> {
    let status = status
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("pending");
    let filter: Option<&str> = match status {
        "all" => None,
        s if STATUSES.contains(&s) => Some(s),
        other => {
            return Err(Error::validation(
                &["query", "status"],
                "Input should be 'pending', 'approved', 'rejected' or 'all'",
                "enum",
                json!(other),
            ));
        }
    };
    let rows = sqlx::query_as::<_, AdminSubmission>(sqlx::AssertSqlSafe(format!(
        "SELECT {SUBMISSION_COLUMNS},
                COALESCE(p.first_name, '') AS student_first_name,
                COALESCE(p.last_name, '') AS student_last_name,
                u.email AS student_email,
                l.title AS lesson_title
         FROM boss_submissions b
         JOIN users u ON u.id = b.user_id
         LEFT JOIN user_profiles p ON p.user_id = b.user_id
         JOIN lessons l ON l.id = b.lesson_id
         WHERE $1::text IS NULL OR b.status = $1
         ORDER BY b.submitted_at ASC, b.id ASC"
    )))
    .bind(filter)
    .fetch_all(&ctx.db)
    .await?;
    Ok(rows)
}

/// A grading decision.
#[derive(Debug, Clone)]
pub struct Grade {
    pub status: String,
    pub feedback_text: Option<String>,
    pub feedback_video_url: Option<String>,
}

#[derive(sqlx::FromRow)]
struct GradeTarget {
    user_id: Uuid,
    lesson_id: Uuid,
    xp_awarded_at: Option<DateTime<Utc>>,
    email: String,
    first_name: Option<String>,
    lesson_title: String,
}

/// Grades a submission: 404 `Submission not found`, 400 `Invalid status`.
/// The first approval pays +500 XP (and recomputes the level) exactly once,
/// whatever the re-grades and concurrency (`xp_awarded_at`, under a row lock).
/// The student gets an email through the worker; the grading admin's audit
/// row (`submission.grade`, the submission before and after) is written in
/// the same transaction.
pub async fn grade(ctx: &Context, actor: &Actor, submission_id: Uuid, g: Grade) -> Result<()> {
    let grader = actor.id;
    let mut tx = ctx.db.begin().await?;
    let target = sqlx::query_as::<_, GradeTarget>(
        "SELECT b.user_id, b.lesson_id, b.xp_awarded_at, u.email, p.first_name,
                l.title AS lesson_title
         FROM boss_submissions b
         JOIN users u ON u.id = b.user_id
         LEFT JOIN user_profiles p ON p.user_id = b.user_id
         JOIN lessons l ON l.id = b.lesson_id
         WHERE b.id = $1
         FOR UPDATE OF b",
    )
    .bind(submission_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| Error::not_found("Submission not found"))?;
    let approved = match g.status.as_str() {
        "approved" => true,
        "rejected" => false,
        _ => return Err(Error::bad_request("Invalid status")),
    };
    // Locked above.
    let before = audit::snapshot(&mut tx, Table::BossSubmissions, submission_id, false).await?;

    let now = ctx.clock.now();
    let pay_xp = approved && target.xp_awarded_at.is_none();
    sqlx::query(
        "UPDATE boss_submissions
         SET status = $2, instructor_feedback = $3, instructor_video_url = $4,
             reviewed_at = $5, reviewed_by = $6,
             xp_awarded_at = CASE WHEN $7 THEN $5 ELSE xp_awarded_at END
         WHERE id = $1",
    )
    .bind(submission_id)
    .bind(&g.status)
    .bind(&g.feedback_text)
    .bind(&g.feedback_video_url)
    .bind(now)
    .bind(grader)
    .bind(pay_xp)
    .execute(&mut *tx)
    .await?;

    if pay_xp {
        let xp: Option<i32> = sqlx::query_scalar(
            "UPDATE user_profiles SET xp = xp + $2, updated_at = now()
             WHERE user_id = $1 RETURNING xp",
        )
        .bind(target.user_id)
        .bind(BOSS_BATTLE_XP as i32)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(xp) = xp {
            sqlx::query("UPDATE user_profiles SET level = $2 WHERE user_id = $1")
                .bind(target.user_id)
                .bind(economy::level_for_xp(xp as i64) as i32)
                .execute(&mut *tx)
                .await?;
        }
    }

    let after = audit::snapshot(&mut tx, Table::BossSubmissions, submission_id, false).await?;
    audit::record(
        &mut tx,
        actor
            .entry(
                audit::action::SUBMISSION_GRADE,
                audit::target::SUBMISSION,
                submission_id,
            )
            .before(before)
            .after(after),
    )
    .await?;

    jobs::enqueue(
        &mut tx,
        &graded_email(ctx, submission_id, &target, &g, pay_xp)?,
    )
    .await?;
    let mut pending = notifications::Pending::default();
    notifications::notify(
        &mut tx,
        now,
        &notifications::New::graded(
            target.user_id,
            grader,
            submission_id,
            target.lesson_id,
            &target.lesson_title,
            &g.status,
        ),
        &mut pending,
    )
    .await?;
    tx.commit().await?;
    jobs::wake_relay(ctx);
    pending.publish(ctx).await;
    Ok(())
}

/// The "submission graded" email (one per grading decision).
fn graded_email(
    ctx: &Context,
    submission_id: Uuid,
    t: &GradeTarget,
    g: &Grade,
    xp_paid: bool,
) -> Result<EmailJob> {
    let name = t
        .first_name
        .as_deref()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or("dancer");
    let nonblank = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
    let r = crate::email_templates::render(
        "submission_graded",
        &serde_json::json!({
            "approved": g.status == "approved",
            "first_name": name,
            "lesson_title": t.lesson_title,
            "xp_awarded": if xp_paid { Some(BOSS_BATTLE_XP) } else { None },
            "feedback_text": nonblank(&g.feedback_text),
            "feedback_video_url": nonblank(&g.feedback_video_url),
            "courses_link": format!("{}/courses", ctx.config.frontend_url.trim_end_matches('/')),
        }),
    )?;
    Ok(EmailJob {
        // One email per grading decision (a re-grade sends a new one).
        idempotency_key: format!("submission-graded:{submission_id}:{}", Uuid::new_v4()),
        template: "submission_graded".into(),
        to: vec![t.email.clone()],
        subject: r.subject,
        html: r.html,
        text: r.text,
        headers: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_url_rule() {
        assert!(validate_video_url("https://example.com/v.mp4").is_ok());
        assert!(validate_video_url(" https://stream.mux.com/abc.m3u8 ").is_ok());
        assert!(validate_video_url("abcDEF0123456789").is_ok());
        assert!(validate_video_url("http://example.com/v.mp4").is_err());
        assert!(validate_video_url("javascript:alert(1)").is_err());
        assert!(validate_video_url("short").is_err());
        assert!(validate_video_url("abc-def-0123456789").is_err());
        assert!(validate_video_url(&"a".repeat(101)).is_err());
        assert!(validate_video_url("").is_err());
        let e = validate_video_url("nope").unwrap_err();
        assert_eq!(e.status(), 422);
    }
}
