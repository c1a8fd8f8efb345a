//! `course_published`: a world's first publication notifies every user but
//! the publishing admin. The admin's request only records the publication
//! ([`world_published`], in its transaction, with the job in the outbox); the
//! worker's [`run`] inserts the rows set-based in batches of
//! [`BATCH`] users, honouring preferences, idempotent per world.

use super::{COURSE_PUBLISHED, live};
use crate::jobs::{self, CoursePublishedJob};
use crate::{Context, Result};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// Users per INSERT ... SELECT (one short transaction each).
pub const BATCH: i64 = 20_000;

/// Records the first publication of `world_id` by `admin_id` and queues the
/// fan-out; a world published before (and unpublished since) sends nothing.
/// Returns whether this was the first publication.
pub async fn world_published(
    conn: &mut PgConnection,
    world_id: Uuid,
    admin_id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool> {
    let first: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO course_publications (world_id, published_by, published_at)
         VALUES ($1, $2, $3) ON CONFLICT (world_id) DO NOTHING RETURNING world_id",
    )
    .bind(world_id)
    .bind(admin_id)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    if first.is_some() {
        jobs::enqueue(&mut *conn, &CoursePublishedJob { world_id }).await?;
    }
    Ok(first.is_some())
}

/// The worker's job: one notification per user but the publisher, in
/// batches by user id. Safe to run twice (the rows' dedup key is per world;
/// a finished fan-out is marked and skipped). Returns the rows inserted.
pub async fn run(ctx: &Context, job: &CoursePublishedJob) -> Result<u64> {
    let row: Option<(Option<Uuid>, Option<DateTime<Utc>>, String)> = sqlx::query_as(
        "SELECT cp.published_by, cp.fanned_out_at, w.title
         FROM course_publications cp JOIN worlds w ON w.id = cp.world_id
         WHERE cp.world_id = $1",
    )
    .bind(job.world_id)
    .fetch_optional(&ctx.db)
    .await?;
    let Some((publisher, done, title)) = row else {
        // The world was deleted since: nothing to announce.
        return Ok(0);
    };
    if done.is_some() {
        return Ok(0);
    }
    let now = ctx.clock.now();
    let message = format!("\"{title}\" is now available");
    let dedup = format!("course:{}", job.world_id);
    let world = job.world_id.to_string();
    let mut cursor = Uuid::nil();
    let mut inserted = 0u64;
    loop {
        let (last, count): (Option<Uuid>, i64) = sqlx::query_as(
            "WITH batch AS (
                 SELECT id FROM users WHERE id > $1 ORDER BY id LIMIT $2
             ), ins AS (
                 INSERT INTO notifications
                     (id, user_id, actor_id, type, title, message, reference_type,
                      reference_id, created_at, dedup_key)
                 SELECT gen_random_uuid(), b.id, $3, $4, '🎉 New Course', $5, 'world', $6, $7, $8
                 FROM batch b
                 WHERE b.id IS DISTINCT FROM $3
                   AND NOT EXISTS (SELECT 1 FROM notification_preferences p
                                   WHERE p.user_id = b.id AND p.in_app ->> $4 = 'false')
                 ON CONFLICT (user_id, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING
                 RETURNING 1
             )
             SELECT (SELECT id FROM batch ORDER BY id DESC LIMIT 1), (SELECT count(*) FROM ins)",
        )
        .bind(cursor)
        .bind(BATCH)
        .bind(publisher)
        .bind(COURSE_PUBLISHED)
        .bind(&message)
        .bind(&world)
        .bind(now)
        .bind(&dedup)
        .fetch_one(&ctx.db)
        .await?;
        inserted += count as u64;
        match last {
            Some(id) => cursor = id,
            None => break,
        }
    }
    sqlx::query("UPDATE course_publications SET fanned_out_at = $2 WHERE world_id = $1")
        .bind(job.world_id)
        .bind(ctx.clock.now())
        .execute(&ctx.db)
        .await?;
    if let Err(e) = live::publish_fanout(ctx, COURSE_PUBLISHED, &world).await {
        tracing::warn!(error = %e, "announcing the course_published fan-out failed");
    }
    tracing::info!(world_id = %job.world_id, inserted, "course_published fan-out done");
    Ok(inserted)
}
