//! The students list and the back-office stats.

use super::*;

#[derive(Debug, Clone, Serialize, PartialEq, sqlx::FromRow)]
pub struct Student {
    pub id: Uuid,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub xp: i32,
    pub level: i32,
    pub streak_count: i32,
    pub created_at: DateTime<Utc>,
    pub role: String,
}

/// Escapes `\`, `%` and `_` for a `LIKE ... ESCAPE '\'` pattern.
pub fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub const STUDENTS_DEFAULT_LIMIT: i64 = 100;
pub const STUDENTS_MAX_LIMIT: i64 = 500;

/// `GET /api/admin/students`: users with a profile, newest first; `search` is
/// a case-insensitive substring of email, first or last name; `limit` clamped
/// to 1..=500.
pub async fn students(
    db: &PgPool,
    search: Option<&str>,
    skip: i64,
    limit: Option<i64>,
) -> Result<Vec<Student>> {
    let limit = limit
        .unwrap_or(STUDENTS_DEFAULT_LIMIT)
        .clamp(1, STUDENTS_MAX_LIMIT);
    let pattern = search
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| format!("%{}%", escape_like(s)));
    Ok(sqlx::query_as::<_, Student>(
        "SELECT u.id, u.email, p.first_name, p.last_name, p.xp, p.level, p.streak_count,
                u.created_at, u.role
         FROM users u JOIN user_profiles p ON p.user_id = u.id
         WHERE $1::text IS NULL
            OR u.email ILIKE $1 ESCAPE '\\'
            OR p.first_name ILIKE $1 ESCAPE '\\'
            OR p.last_name ILIKE $1 ESCAPE '\\'
         ORDER BY u.created_at DESC, u.id DESC
         OFFSET $2 LIMIT $3",
    )
    .bind(pattern)
    .bind(skip.max(0))
    .bind(limit)
    .fetch_all(db)
    .await?)
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, sqlx::FromRow)]
pub struct Stats {
    pub total_users: i64,
    pub total_submissions: i64,
    pub pending_submissions: i64,
}

pub async fn stats(db: &PgPool) -> Result<Stats> {
    Ok(sqlx::query_as::<_, Stats>(
        "SELECT (SELECT count(*) FROM users) AS total_users,
                (SELECT count(*) FROM boss_submissions) AS total_submissions,
                (SELECT count(*) FROM boss_submissions WHERE status = 'pending')
                    AS pending_submissions",
    )
    .fetch_one(db)
    .await?)
}
