//! The admin audit log (API-NEXT.md N4.5): who did what to which thing, with
//! the thing before and after.
//!
//! [`record`] is the one door that writes `audit_log`; it runs in the caller's
//! transaction, so a row exists exactly when the admin action committed. The
//! table is append-only (database triggers refuse UPDATE, DELETE and
//! TRUNCATE) and kept for good; `actor_id` has no foreign key, so deleting a
//! user leaves their trace.

use crate::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use std::net::IpAddr;
use uuid::Uuid;

/// The action names, `<target>.<verb>`.
pub mod action {
    pub const COURSE_CREATE: &str = "course.create";
    pub const COURSE_UPDATE: &str = "course.update";
    pub const COURSE_DELETE: &str = "course.delete";
    pub const LEVEL_CREATE: &str = "level.create";
    pub const LEVEL_UPDATE: &str = "level.update";
    pub const LEVEL_POSITION: &str = "level.position";
    pub const LEVEL_DELETE: &str = "level.delete";
    pub const LESSON_CREATE: &str = "lesson.create";
    pub const LESSON_UPDATE: &str = "lesson.update";
    pub const LESSON_DELETE: &str = "lesson.delete";
    pub const EDGE_CREATE: &str = "edge.create";
    pub const EDGE_DELETE: &str = "edge.delete";
    /// A video found at Mux and attached to a lesson, course or level.
    pub const MEDIA_ATTACH: &str = "media.attach";
    /// A video deleted at Mux and cleared from everything showing it.
    pub const MEDIA_DELETE: &str = "media.delete";
    /// A five-minute Mux upload token issued to an admin (N5.5).
    pub const MUX_UPLOAD_TOKEN: &str = "mux.upload_token";
    pub const SUBMISSION_GRADE: &str = "submission.grade";
    pub const CLAVES_GRANT: &str = "claves.grant";
    pub const REPORT_RESOLVE: &str = "report.resolve";
    pub const USER_ROLE: &str = "user.role";
    pub const USER_DELETE: &str = "user.delete";
    /// A broadcast email recorded and queued (or resumed) from the command line.
    pub const BROADCAST_SEND: &str = "broadcast.send";
    /// Platform settings changed key by key (N6.1).
    pub const SETTINGS_UPDATE: &str = "settings.update";
    /// Platform settings set to a preset (N6.1).
    pub const SETTINGS_PRESET: &str = "settings.preset";
}

/// The target types.
pub mod target {
    pub const COURSE: &str = "course";
    pub const LEVEL: &str = "level";
    pub const LESSON: &str = "lesson";
    pub const EDGE: &str = "edge";
    pub const SUBMISSION: &str = "submission";
    pub const USER: &str = "user";
    pub const REPORT: &str = "report";
    pub const MUX_ASSET: &str = "mux_asset";
    pub const BROADCAST: &str = "broadcast";
    pub const SETTINGS: &str = "settings";
}

/// The admin who acts, from where and when: built once per request by the
/// API (the admin's id, the client address, the clock's now) and handed to the
/// domain function, which turns it into entries. (A system entry, with no
/// actor, is an [`Entry`] with `actor_id: None`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub id: Uuid,
    pub ip: Option<IpAddr>,
    pub at: DateTime<Utc>,
}

impl Actor {
    pub fn new(id: Uuid, ip: Option<IpAddr>, at: DateTime<Utc>) -> Self {
        Self { id, ip, at }
    }

    /// An entry by this actor; add the row's states with
    /// [`Entry::before`] / [`Entry::after`].
    pub fn entry(
        &self,
        action: &'static str,
        target_type: &'static str,
        target_id: impl ToString,
    ) -> Entry {
        Entry {
            actor_id: Some(self.id),
            action,
            target_type,
            target_id: Some(target_id.to_string()),
            before: None,
            after: None,
            ip: self.ip,
            at: self.at,
        }
    }
}

impl Actor {
    /// An entry about a target that has no id (there is one of it).
    pub fn entry_untargeted(&self, action: &'static str, target_type: &'static str) -> Entry {
        Entry {
            target_id: None,
            ..self.entry(action, target_type, "")
        }
    }
}

/// One audit row to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub actor_id: Option<Uuid>,
    pub action: &'static str,
    pub target_type: &'static str,
    /// `None` for a target that is one of a kind (the platform settings).
    pub target_id: Option<String>,
    /// The target before the action (`None` for a creation).
    pub before: Option<Value>,
    /// The target after the action (`None` for a deletion).
    pub after: Option<Value>,
    pub ip: Option<IpAddr>,
    pub at: DateTime<Utc>,
}

impl Entry {
    pub fn before(mut self, v: impl Into<Option<Value>>) -> Self {
        self.before = v.into();
        self
    }

    pub fn after(mut self, v: impl Into<Option<Value>>) -> Self {
        self.after = v.into();
        self
    }
}

/// Writes one audit row in the caller's transaction. The one door to
/// `audit_log`.
pub async fn record(conn: &mut PgConnection, entry: Entry) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log
             (id, actor_id, action, target_type, target_id, before, after, ip, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::inet, $9)",
    )
    .bind(Uuid::now_v7())
    .bind(entry.actor_id)
    .bind(entry.action)
    .bind(entry.target_type)
    .bind(&entry.target_id)
    .bind(&entry.before)
    .bind(&entry.after)
    .bind(entry.ip.map(|ip| ip.to_string()))
    .bind(entry.at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A row as `SELECT to_jsonb(t) FROM <table> t WHERE id = $1` gives it, for the
/// `before`/`after` of an entry; `None` when the row does not exist.
/// `lock` adds `FOR UPDATE`, for a `before` read ahead of the write.
pub async fn snapshot(
    conn: &mut PgConnection,
    table: Table,
    id: Uuid,
    lock: bool,
) -> Result<Option<Value>> {
    let sql = format!(
        "SELECT to_jsonb(t) FROM {} t WHERE t.id = $1{}",
        table.name(),
        if lock { " FOR UPDATE" } else { "" }
    );
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?)
}

/// The tables whose rows [`snapshot`] reads (a closed set: the name goes into
/// the SQL text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Worlds,
    Levels,
    Lessons,
    LevelEdges,
    BossSubmissions,
}

impl Table {
    pub fn name(self) -> &'static str {
        match self {
            Table::Worlds => "worlds",
            Table::Levels => "levels",
            Table::Lessons => "lessons",
            Table::LevelEdges => "level_edges",
            Table::BossSubmissions => "boss_submissions",
        }
    }
}

// ---------------------------------------------------------------------------
// Reading: the admin list
// ---------------------------------------------------------------------------

/// Who acted, as the list shows it (the user's current profile).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActorInfo {
    pub id: Uuid,
    pub username: Option<String>,
    pub email: String,
}

/// One row of `GET /api/admin/audit`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRow {
    pub id: Uuid,
    pub actor_id: Option<Uuid>,
    /// `None` for the system, or when the actor's account is gone.
    pub actor: Option<ActorInfo>,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub ip: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// The list's filters; `None` means any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub actor_id: Option<Uuid>,
    pub action: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
}

pub const LIST_DEFAULT_LIMIT: i64 = 50;
pub const LIST_MAX_LIMIT: i64 = 100;

/// Audit rows newest first (`created_at`, then `id`, descending), with each
/// actor's id, username and email from one join. One query.
pub async fn list(db: &PgPool, filter: &Filter, skip: i64, limit: i64) -> Result<Vec<AuditRow>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        id: Uuid,
        actor_id: Option<Uuid>,
        action: String,
        target_type: String,
        target_id: Option<String>,
        before: Option<Value>,
        after: Option<Value>,
        ip: Option<String>,
        created_at: DateTime<Utc>,
        user_id: Option<Uuid>,
        username: Option<String>,
        email: Option<String>,
    }
    // Only the filters given go into the SQL, so each plan can use its index.
    let mut conds: Vec<String> = Vec::new();
    let mut n = 0;
    let mut next = |col: &str| {
        n += 1;
        conds.push(format!("a.{col} = ${n}"));
    };
    if filter.actor_id.is_some() {
        next("actor_id");
    }
    if filter.action.is_some() {
        next("action");
    }
    if filter.target_type.is_some() {
        next("target_type");
    }
    if filter.target_id.is_some() {
        next("target_id");
    }
    let where_sql = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    };
    let sql = format!(
        "SELECT a.id, a.actor_id, a.action, a.target_type, a.target_id, a.before, a.after,
                host(a.ip) AS ip, a.created_at, u.id AS user_id, p.username, u.email
         FROM (SELECT * FROM audit_log a {where_sql}
               ORDER BY a.created_at DESC, a.id DESC
               OFFSET ${} LIMIT ${}) a
         LEFT JOIN users u ON u.id = a.actor_id
         LEFT JOIN user_profiles p ON p.user_id = u.id
         ORDER BY a.created_at DESC, a.id DESC",
        n + 1,
        n + 2
    );
    let mut q = sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql));
    if let Some(v) = filter.actor_id {
        q = q.bind(v);
    }
    if let Some(v) = &filter.action {
        q = q.bind(v.clone());
    }
    if let Some(v) = &filter.target_type {
        q = q.bind(v.clone());
    }
    if let Some(v) = &filter.target_id {
        q = q.bind(v.clone());
    }
    let rows = q
        .bind(skip.max(0))
        .bind(limit.clamp(1, LIST_MAX_LIMIT))
        .fetch_all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| AuditRow {
            actor: match (r.user_id, r.email) {
                (Some(id), Some(email)) => Some(ActorInfo {
                    id,
                    username: r.username,
                    email,
                }),
                _ => None,
            },
            id: r.id,
            actor_id: r.actor_id,
            action: r.action,
            target_type: r.target_type,
            target_id: r.target_id,
            before: r.before,
            after: r.after,
            ip: r.ip,
            created_at: r.created_at,
        })
        .collect())
}
