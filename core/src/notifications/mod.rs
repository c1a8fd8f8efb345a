//! In-app notifications (API-NEXT.md N1): the one door that creates them
//! ([`notify`]), the bell's reads, preferences, the live push and retention.
//!
//! A notification is written in the transaction of the event that causes it
//! (a reaction, a reply, a grade, ...), so it exists exactly when the event
//! does. [`notify`] honours the recipient's preferences, never notifies the
//! actor and keeps events that must notify once ever (a `dedup_key`) to one
//! row, all in one statement. After the commit the caller hands the new ids
//! to [`Pending::publish`], which tells every API process over Redis pub/sub
//! so open streams get them within a second (`live`); a lost publish only
//! delays the notification to the next poll or reconnect.

pub mod digest;
pub mod fanout;
pub mod live;

use crate::{Context, Error, Result};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Every notification type, in the order preferences list them.
pub const TYPES: &[&str] = &[
    REACTION_RECEIVED,
    REPLY_RECEIVED,
    ANSWER_ACCEPTED,
    BADGE_EARNED,
    SUBMISSION_GRADED,
    STREAK_BONUS,
    COURSE_PUBLISHED,
    SUBSCRIPTION,
];
pub const REACTION_RECEIVED: &str = "reaction_received";
pub const REPLY_RECEIVED: &str = "reply_received";
pub const ANSWER_ACCEPTED: &str = "answer_accepted";
pub const BADGE_EARNED: &str = "badge_earned";
pub const SUBMISSION_GRADED: &str = "submission_graded";
pub const STREAK_BONUS: &str = "streak_bonus";
pub const COURSE_PUBLISHED: &str = "course_published";
pub const SUBSCRIPTION: &str = "subscription";

/// The digest settings a user may choose.
pub const DIGEST_VALUES: &[&str] = &["off", "daily", "weekly"];

/// A notification to create.
#[derive(Debug, Clone)]
pub struct New {
    pub user_id: Uuid,
    /// Who acted; `None` for system events (badges, streaks, billing).
    pub actor_id: Option<Uuid>,
    pub kind: &'static str,
    pub title: String,
    pub message: String,
    pub reference_type: Option<&'static str>,
    pub reference_id: Option<String>,
    /// Set for events that must notify once ever per recipient.
    pub dedup_key: Option<String>,
}

/// The first `n` characters of a title, for messages.
pub fn excerpt(title: &str, n: usize) -> String {
    title.chars().take(n).collect()
}

impl New {
    /// `🔥 New Reaction`: someone reacted to the owner's post (once per actor
    /// and post, ever).
    pub fn reaction(owner: Uuid, actor: Uuid, post_id: Uuid, post_title: &str) -> Self {
        Self {
            user_id: owner,
            actor_id: Some(actor),
            kind: REACTION_RECEIVED,
            title: "🔥 New Reaction".into(),
            message: format!("reacted to your post \"{}\"", excerpt(post_title, 50)),
            reference_type: Some("post"),
            reference_id: Some(post_id.to_string()),
            dedup_key: Some(format!("reaction:{actor}:{post_id}")),
        }
    }

    /// `💬 New Reply` to the post's owner, or to the author of the reply that
    /// a nested reply answers (`on_comment`).
    pub fn reply(
        recipient: Uuid,
        actor: Uuid,
        post_id: Uuid,
        reply_id: Uuid,
        post_title: &str,
        on_comment: bool,
    ) -> Self {
        let what = if on_comment {
            "replied to your comment on"
        } else {
            "replied to your post"
        };
        Self {
            user_id: recipient,
            actor_id: Some(actor),
            kind: REPLY_RECEIVED,
            title: "💬 New Reply".into(),
            message: format!("{what} \"{}\"", excerpt(post_title, 50)),
            reference_type: Some("post"),
            reference_id: Some(post_id.to_string()),
            // One per recipient per reply.
            dedup_key: Some(format!("reply:{reply_id}")),
        }
    }

    /// `✅ Answer Accepted` to the reply's author (first acceptance only).
    pub fn answer_accepted(
        author: Uuid,
        actor: Uuid,
        post_id: Uuid,
        reply_id: Uuid,
        post_title: &str,
    ) -> Self {
        Self {
            user_id: author,
            actor_id: Some(actor),
            kind: ANSWER_ACCEPTED,
            title: "✅ Answer Accepted".into(),
            message: format!("accepted your answer on \"{}\"", excerpt(post_title, 50)),
            reference_type: Some("post"),
            reference_id: Some(post_id.to_string()),
            dedup_key: Some(format!("accepted:{reply_id}")),
        }
    }

    /// `🏆 Badge Earned` (the worker's award).
    pub fn badge(user: Uuid, badge_id: &str, badge_name: &str) -> Self {
        Self {
            user_id: user,
            actor_id: None,
            kind: BADGE_EARNED,
            title: "🏆 Badge Earned".into(),
            message: format!("You earned {badge_name}"),
            reference_type: Some("badge"),
            reference_id: Some(badge_id.to_string()),
            dedup_key: Some(format!("badge:{badge_id}")),
        }
    }

    /// `🎬 Submission Graded` to the submitter.
    pub fn graded(
        user: Uuid,
        admin: Uuid,
        submission_id: Uuid,
        lesson_id: Uuid,
        lesson_title: &str,
        status: &str,
    ) -> Self {
        Self {
            user_id: user,
            actor_id: Some(admin),
            kind: SUBMISSION_GRADED,
            title: "🎬 Submission Graded".into(),
            message: format!("Your submission for \"{lesson_title}\" was {status}"),
            reference_type: Some("lesson"),
            reference_id: Some(lesson_id.to_string()),
            dedup_key: Some(format!("graded:{submission_id}:{status}")),
        }
    }

    /// `🔥 Streak Bonus`; `key` is the bonus's own idempotency key.
    pub fn streak_bonus(user: Uuid, claves: i64, days: i64, key: &str) -> Self {
        Self {
            user_id: user,
            actor_id: None,
            kind: STREAK_BONUS,
            title: "🔥 Streak Bonus".into(),
            message: format!("You earned {claves} claves for a {days}-day streak"),
            reference_type: None,
            reference_id: None,
            dedup_key: Some(format!("streak:{key}")),
        }
    }

    /// A billing notification (API-NEXT.md N2); `key` makes it once per event.
    pub fn subscription(user: Uuid, title: &str, message: &str, key: &str) -> Self {
        Self {
            user_id: user,
            actor_id: None,
            kind: SUBSCRIPTION,
            title: title.into(),
            message: message.into(),
            reference_type: Some("subscription"),
            reference_id: None,
            dedup_key: Some(format!("subscription:{key}")),
        }
    }
}

/// New notification ids to announce once their transaction has committed.
#[derive(Debug, Default, Clone)]
#[must_use = "publish the ids after the commit"]
pub struct Pending(Vec<(Uuid, Uuid)>);

impl Pending {
    pub fn push(&mut self, user_id: Uuid, id: Uuid) {
        self.0.push((user_id, id));
    }
    pub fn extend(&mut self, other: Pending) {
        self.0.extend(other.0);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Tells every API process (Redis pub/sub) that these notifications
    /// exist. Best effort: a failure is logged; the rows are already there.
    pub async fn publish(self, ctx: &Context) {
        if self.0.is_empty() {
            return;
        }
        if let Err(e) = live::publish_created(ctx, &self.0).await {
            tracing::warn!(error = %e, "publishing notifications to the live streams failed");
        }
    }
}

/// Creates one notification in the caller's transaction, unless the recipient
/// is the actor, has turned the type off, or already has this `dedup_key`.
/// The one door for creating notifications; returns the new id, if any.
pub async fn notify(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    n: &New,
    pending: &mut Pending,
) -> Result<Option<Uuid>> {
    if n.actor_id == Some(n.user_id) {
        return Ok(None);
    }
    let mut q = crate::db::Statement::new("WITH ");
    push_notify(&mut q, "n", now, n, "true");
    q.push(" SELECT id FROM n");
    let created: Option<Uuid> = q.build_query_scalar().fetch_optional(&mut *conn).await?;
    if let Some(id) = created {
        pending.push(n.user_id, id);
    }
    Ok(created)
}

/// Pushes [`notify`]'s row into a composed statement ([`crate::db::Statement`])
/// as `{name}`, written only when `guard` holds; `{name}` yields the new id,
/// if any (pass it to [`Pending::push`] with `n.user_id`). Same rules as
/// [`notify`]: nothing for the actor themself, a type turned off, or a
/// `dedup_key` the recipient already has.
pub fn push_notify(
    q: &mut crate::db::Statement,
    name: &str,
    now: DateTime<Utc>,
    n: &New,
    guard: &str,
) {
    if n.actor_id == Some(n.user_id) {
        q.push(format_args!(
            "{name} AS (SELECT NULL::uuid AS id WHERE false)"
        ));
        return;
    }
    q.push(format_args!(
        "{name} AS (
             INSERT INTO notifications
                 (id, user_id, actor_id, type, title, message, reference_type, reference_id,
                  created_at, dedup_key)
             SELECT "
    ));
    q.push_bind(Uuid::now_v7());
    q.push(", ");
    q.push_bind(n.user_id);
    q.push(", ");
    q.push_bind(n.actor_id);
    q.push(", ");
    q.push_bind(n.kind);
    q.push(", ");
    q.push_bind(n.title.clone());
    q.push(", ");
    q.push_bind(n.message.clone());
    q.push(", ");
    q.push_bind(n.reference_type);
    q.push(", ");
    q.push_bind(n.reference_id.clone());
    q.push(", ");
    q.push_bind(now);
    q.push(", ");
    q.push_bind(n.dedup_key.clone());
    q.push(format_args!(
        " WHERE ({guard}) AND NOT EXISTS (SELECT 1 FROM notification_preferences p
                                         WHERE p.user_id = "
    ));
    q.push_bind(n.user_id);
    q.push(" AND p.in_app ->> ");
    q.push_bind(n.kind);
    q.push(
        " = 'false')
             ON CONFLICT (user_id, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING
             RETURNING id)",
    );
}

/// [`notify`] for several notifications in one statement (a badge check that
/// awards several tiers). Same rules, per row.
pub async fn notify_many(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    items: &[New],
    pending: &mut Pending,
) -> Result<usize> {
    let items: Vec<&New> = items
        .iter()
        .filter(|n| n.actor_id != Some(n.user_id))
        .collect();
    if items.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = items.iter().map(|_| Uuid::now_v7()).collect();
    let users: Vec<Uuid> = items.iter().map(|n| n.user_id).collect();
    let actors: Vec<Option<Uuid>> = items.iter().map(|n| n.actor_id).collect();
    let kinds: Vec<&str> = items.iter().map(|n| n.kind).collect();
    let titles: Vec<&str> = items.iter().map(|n| n.title.as_str()).collect();
    let messages: Vec<&str> = items.iter().map(|n| n.message.as_str()).collect();
    let ref_types: Vec<Option<&str>> = items.iter().map(|n| n.reference_type).collect();
    let ref_ids: Vec<Option<&str>> = items.iter().map(|n| n.reference_id.as_deref()).collect();
    let keys: Vec<Option<&str>> = items.iter().map(|n| n.dedup_key.as_deref()).collect();
    let created: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "INSERT INTO notifications
             (id, user_id, actor_id, type, title, message, reference_type, reference_id,
              created_at, dedup_key)
         SELECT t.id, t.user_id, t.actor_id, t.type, t.title, t.message, t.reference_type,
                t.reference_id, $10, t.dedup_key
         FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::text[], $9::text[])
              AS t(id, user_id, actor_id, type, title, message, reference_type, reference_id,
                   dedup_key)
         WHERE NOT EXISTS (SELECT 1 FROM notification_preferences p
                           WHERE p.user_id = t.user_id AND p.in_app ->> t.type = 'false')
         ON CONFLICT (user_id, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING
         RETURNING user_id, id",
    )
    .bind(&ids)
    .bind(&users)
    .bind(&actors)
    .bind(&kinds)
    .bind(&titles)
    .bind(&messages)
    .bind(&ref_types)
    .bind(&ref_ids)
    .bind(&keys)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    let n = created.len();
    for (user, id) in created {
        pending.push(user, id);
    }
    Ok(n)
}

/// [`notify`] in its own transaction, then published: for events the worker
/// owns that have no other write to share a transaction with.
pub async fn notify_now(ctx: &Context, n: &New) -> Result<Option<Uuid>> {
    let mut pending = Pending::default();
    let mut conn = ctx.db.acquire().await?;
    let id = notify(&mut conn, ctx.clock.now(), n, &mut pending).await?;
    drop(conn);
    pending.publish(ctx).await;
    Ok(id)
}

// ---------------------------------------------------------------------------
// Reading: the bell
// ---------------------------------------------------------------------------

/// The Notification shape of N1.
#[derive(Debug, Clone, Serialize, PartialEq, sqlx::FromRow)]
pub struct Notification {
    pub id: Uuid,
    #[serde(rename = "type")]
    #[sqlx(rename = "type")]
    pub kind: String,
    pub title: String,
    pub message: String,
    pub reference_type: Option<String>,
    pub reference_id: Option<String>,
    pub is_read: bool,
    pub created_at: DateTime<Utc>,
    pub actor_id: Option<Uuid>,
    pub actor_username: Option<String>,
    pub actor_avatar_url: Option<String>,
}

/// Columns of a notification with its actor's current profile (a join on the
/// profile's unique user_id: one lookup per page, not one per row).
const COLUMNS: &str = "n.id, n.type, n.title, n.message, n.reference_type, n.reference_id,
    n.is_read, n.created_at, n.actor_id, ap.username AS actor_username,
    ap.avatar_url AS actor_avatar_url";

/// One page, newest first (`created_at`, then `id`, descending).
pub async fn list(
    db: &PgPool,
    user_id: Uuid,
    skip: i64,
    limit: i64,
    unread_only: bool,
) -> Result<Vec<Notification>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS}
         FROM notifications n
         LEFT JOIN user_profiles ap ON ap.user_id = n.actor_id
         WHERE n.user_id = $1 AND (NOT $2 OR NOT n.is_read)
         ORDER BY n.created_at DESC, n.id DESC
         OFFSET $3 LIMIT $4"
    )))
    .bind(user_id)
    .bind(unread_only)
    .bind(skip)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Notifications by id (for the live streams), with their recipients.
pub async fn by_ids(db: &PgPool, ids: &[Uuid]) -> Result<Vec<(Uuid, Notification)>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        user_id: Uuid,
        #[sqlx(flatten)]
        n: Notification,
    }
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT n.user_id, {COLUMNS}
         FROM notifications n
         LEFT JOIN user_profiles ap ON ap.user_id = n.actor_id
         WHERE n.id = ANY($1)
         ORDER BY n.created_at, n.id"
    )))
    .bind(ids)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.user_id, r.n)).collect())
}

/// The caller's notifications newer than `last_id` (oldest first, at most
/// `limit`): the replay of a stream reconnecting with `Last-Event-ID`. An
/// unknown id replays nothing.
pub async fn newer_than(
    db: &PgPool,
    user_id: Uuid,
    last_id: Uuid,
    limit: i64,
) -> Result<Vec<Notification>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT * FROM (
             SELECT {COLUMNS}
             FROM notifications n
             LEFT JOIN user_profiles ap ON ap.user_id = n.actor_id
             JOIN notifications last ON last.id = $2 AND last.user_id = $1
             WHERE n.user_id = $1 AND (n.created_at, n.id) > (last.created_at, last.id)
             ORDER BY n.created_at DESC, n.id DESC
             LIMIT $3
         ) page ORDER BY created_at, id"
    )))
    .bind(user_id)
    .bind(last_id)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// The polled count (an index-only scan of the partial unread index).
pub async fn unread_count(db: &PgPool, user_id: Uuid) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM notifications WHERE user_id = $1 AND NOT is_read")
            .bind(user_id)
            .fetch_one(db)
            .await?,
    )
}

pub fn not_found() -> Error {
    Error::not_found("Notification not found")
}

/// Marks one of the caller's notifications read; someone else's or an
/// unknown id is 404. Reading twice is fine.
pub async fn mark_read(db: &PgPool, user_id: Uuid, id: Uuid) -> Result<()> {
    let found: Option<bool> = sqlx::query_scalar(
        "WITH target AS (SELECT id FROM notifications WHERE id = $1 AND user_id = $2),
              changed AS (UPDATE notifications SET is_read = true
                          WHERE id IN (SELECT id FROM target) AND NOT is_read)
         SELECT true FROM target",
    )
    .bind(id)
    .bind(user_id)
    .fetch_optional(db)
    .await?;
    found.map(|_| ()).ok_or_else(not_found)
}

/// Marks every unread notification of the caller read; the rows changed.
pub async fn mark_all_read(db: &PgPool, user_id: Uuid) -> Result<i64> {
    let r =
        sqlx::query("UPDATE notifications SET is_read = true WHERE user_id = $1 AND NOT is_read")
            .bind(user_id)
            .execute(db)
            .await?;
    Ok(r.rows_affected() as i64)
}

// ---------------------------------------------------------------------------
// Preferences
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Preferences {
    /// Every type with whether it is created for the user.
    pub in_app: Vec<(String, bool)>,
    pub email_digest: String,
}

/// A partial update: only the keys given change.
#[derive(Debug, Clone, Default)]
pub struct PreferencesUpdate {
    pub in_app: Map<String, Value>,
    pub email_digest: Option<String>,
}

fn full(stored: &Value, digest: String) -> Preferences {
    Preferences {
        in_app: TYPES
            .iter()
            .map(|t| {
                (
                    t.to_string(),
                    stored.get(*t).and_then(Value::as_bool).unwrap_or(true),
                )
            })
            .collect(),
        email_digest: digest,
    }
}

pub async fn preferences(db: &PgPool, user_id: Uuid) -> Result<Preferences> {
    let row: Option<(Value, String)> = sqlx::query_as(
        "SELECT in_app, email_digest FROM notification_preferences WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(db)
    .await?;
    let (stored, digest) = row.unwrap_or_else(|| (Value::Object(Map::new()), "daily".into()));
    Ok(full(&stored, digest))
}

/// Checks a partial update: known types with boolean values, a known digest
/// value. Errors are FastAPI-style 422 lists.
pub fn validate(update: &PreferencesUpdate) -> Result<()> {
    for (k, v) in &update.in_app {
        if !TYPES.contains(&k.as_str()) {
            return Err(Error::validation(
                &["body", "in_app", k],
                format!("Unknown notification type '{k}'"),
                "value_error",
                Value::String(k.clone()),
            ));
        }
        if !v.is_boolean() {
            return Err(Error::validation(
                &["body", "in_app", k],
                "Input should be a valid boolean",
                "bool_type",
                v.clone(),
            ));
        }
    }
    if let Some(d) = &update.email_digest
        && !DIGEST_VALUES.contains(&d.as_str())
    {
        return Err(Error::validation(
            &["body", "email_digest"],
            "Input should be 'off', 'daily' or 'weekly'",
            "enum",
            Value::String(d.clone()),
        ));
    }
    Ok(())
}

/// Merges a partial update into the stored preferences (one statement).
pub async fn update_preferences(
    db: &PgPool,
    user_id: Uuid,
    update: PreferencesUpdate,
    now: DateTime<Utc>,
) -> Result<Preferences> {
    validate(&update)?;
    let (stored, digest): (Value, String) = sqlx::query_as(
        "INSERT INTO notification_preferences (user_id, in_app, email_digest, updated_at)
         VALUES ($1, $2, COALESCE($3, 'daily'), $4)
         ON CONFLICT (user_id) DO UPDATE SET
             in_app = notification_preferences.in_app || EXCLUDED.in_app,
             email_digest = COALESCE($3, notification_preferences.email_digest),
             updated_at = $4
         RETURNING in_app, email_digest",
    )
    .bind(user_id)
    .bind(Value::Object(update.in_app))
    .bind(update.email_digest)
    .bind(now)
    .fetch_one(db)
    .await?;
    Ok(full(&stored, digest))
}

/// Turns the digest off (the unsubscribe link). Idempotent.
pub async fn unsubscribe_digest(db: &PgPool, user_id: Uuid, now: DateTime<Utc>) -> Result<()> {
    sqlx::query(
        "INSERT INTO notification_preferences (user_id, email_digest, updated_at)
         SELECT id, 'off', $2 FROM users WHERE id = $1
         ON CONFLICT (user_id) DO UPDATE SET email_digest = 'off', updated_at = $2",
    )
    .bind(user_id)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Retention
// ---------------------------------------------------------------------------

/// Read notifications are kept this long.
pub const KEEP_READ_DAYS: i64 = 90;
/// Every notification is deleted after this long.
pub const KEEP_ANY_DAYS: i64 = 365;

/// The daily maintenance's part: deletes read notifications older than 90
/// days and all older than 365 days. Returns the rows deleted.
pub async fn prune(db: &PgPool, now: DateTime<Utc>) -> Result<u64> {
    let r = sqlx::query(
        "DELETE FROM notifications
         WHERE created_at < $2 OR (is_read AND created_at < $1)",
    )
    .bind(now - Duration::days(KEEP_READ_DAYS))
    .bind(now - Duration::days(KEEP_ANY_DAYS))
    .execute(db)
    .await?;
    Ok(r.rows_affected())
}
