//! Tags: the list, and the checks and usage counters of post writes.

use super::write::fail;
use crate::Result;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

/// §3.0 Tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Tag {
    pub slug: String,
    pub name: String,
    pub category: Option<String>,
    pub usage_count: i32,
}

pub async fn tags(db: &PgPool) -> Result<Vec<Tag>> {
    Ok(sqlx::query_as(
        "SELECT slug::text, name::text, category::text, usage_count
         FROM community_tags ORDER BY name, slug",
    )
    .fetch_all(db)
    .await?)
}

/// Removes duplicate tags, keeping the first occurrence.
pub(super) fn dedup_tags(tags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for t in tags {
        if !out.contains(t) {
            out.push(t.clone());
        }
    }
    out
}

/// Checks that every tag exists (§4.9 step 2). `status` is 422 on create and
/// 400 on update.
pub(super) async fn check_tags(
    conn: &mut PgConnection,
    tags: &[String],
    status: u16,
) -> Result<()> {
    if tags.is_empty() {
        return Err(fail(status, "At least one tag is required"));
    }
    let known: Vec<String> =
        sqlx::query_scalar("SELECT slug::text FROM community_tags WHERE slug = ANY($1::text[])")
            .bind(tags)
            .fetch_all(&mut *conn)
            .await?;
    if known.is_empty() {
        return Err(fail(
            status,
            "At least one valid tag is required. Invalid tags provided.",
        ));
    }
    let invalid: Vec<&str> = tags
        .iter()
        .filter(|t| !known.contains(t))
        .map(String::as_str)
        .collect();
    if !invalid.is_empty() {
        return Err(fail(
            status,
            format!(
                "Invalid tags: {}. Please select valid tags.",
                invalid.join(", ")
            ),
        ));
    }
    Ok(())
}

pub(super) async fn bump_tags(conn: &mut PgConnection, tags: &[String], delta: i32) -> Result<()> {
    if tags.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE community_tags SET usage_count = GREATEST(0, usage_count + $2)
         WHERE slug = ANY($1::text[])",
    )
    .bind(tags)
    .bind(delta)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
