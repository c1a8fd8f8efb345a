//! Completing a lesson: XP, level, streak, badge check.

use super::*;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct XpGain {
    pub xp_gained: i64,
    pub new_total_xp: i64,
    pub leveled_up: bool,
    pub new_level: i64,
}

/// Completes a lesson for the caller: the lesson's XP once per user and lesson
/// (a repeat returns `xp_gained = 0` and changes nothing), the level recomputed
/// (D21), the streak touched and a badge check queued, all in one transaction.
/// Concurrent completions award once: the progress upsert only reports a row
/// that has just become completed.
pub async fn complete_lesson(ctx: &Context, viewer: &Viewer, lesson_id: Uuid) -> Result<XpGain> {
    let db = &ctx.db;
    let (row, access) = lesson_row(db, lesson_id, viewer).await?;
    check_open(&access, &row)?;
    let now = ctx.clock.now();

    let mut tx = db.begin().await?;
    let newly: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO user_progress (user_id, lesson_id, is_completed, completed_at)
         VALUES ($1, $2, true, $3)
         ON CONFLICT (user_id, lesson_id) DO UPDATE
             SET is_completed = true, completed_at = EXCLUDED.completed_at
             WHERE user_progress.is_completed = false
         RETURNING id",
    )
    .bind(viewer.id)
    .bind(row.id)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;

    if newly.is_none() {
        tx.rollback().await?;
        let xp: Option<i32> = sqlx::query_scalar("SELECT xp FROM user_profiles WHERE user_id = $1")
            .bind(viewer.id)
            .fetch_optional(db)
            .await?;
        let xp = xp.ok_or_else(|| Error::not_found("Profile not found"))? as i64;
        return Ok(XpGain {
            xp_gained: 0,
            new_total_xp: xp,
            leveled_up: false,
            new_level: economy::level_for_xp(xp),
        });
    }

    // RETURNING sees the new xp and the level before this completion.
    let (new_xp, old_level): (i32, i32) = sqlx::query_as(
        "UPDATE user_profiles SET xp = xp + $2, updated_at = now()
         WHERE user_id = $1 RETURNING xp, level",
    )
    .bind(viewer.id)
    .bind(row.xp_value)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| Error::not_found("Profile not found"))?;
    let new_level = economy::level_for_xp(new_xp as i64);
    sqlx::query("UPDATE user_profiles SET level = $2 WHERE user_id = $1")
        .bind(viewer.id)
        .bind(new_level as i32)
        .execute(&mut *tx)
        .await?;
    crate::streaks::update_streak(&mut tx, viewer.id, now).await?;
    jobs::enqueue(
        &mut tx,
        &BadgeCheckJob {
            user_id: viewer.id,
            stat: "lessons_completed".into(),
        },
    )
    .await?;
    tx.commit().await?;
    jobs::wake_relay(ctx);
    Ok(XpGain {
        xp_gained: row.xp_value as i64,
        new_total_xp: new_xp as i64,
        leveled_up: new_level > old_level as i64,
        new_level,
    })
}
