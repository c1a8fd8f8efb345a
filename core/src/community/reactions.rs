//! Reactions (§4.9 "React", "Unreact").

use super::validation::Validation;
use super::write::{fail, insufficient, lock_post_for, lock_profiles};
use super::{Done, REACTION_TYPES};
use crate::economy::{self, Amounts, reason};
use crate::jobs::{self, BadgeCheckJob};
use crate::notifications;
use crate::{Context, Result};
use sqlx::PgConnection;
use uuid::Uuid;

/// Validates a reaction type (`Literal['fire','ruler','clap']`).
pub fn validate_reaction_type(reaction_type: &str) -> Result<()> {
    let mut v = Validation::new();
    v.literal(&["body", "reaction_type"], reaction_type, REACTION_TYPES);
    v.finish()
}

/// The badge stat an owner's received reaction of this type feeds.
pub(super) fn received_stat(reaction_type: &str) -> &'static str {
    match reaction_type {
        "fire" => "fires_received",
        "clap" => "claps_received",
        _ => "metronomes_received",
    }
}

pub(super) async fn bump_stat(conn: &mut PgConnection, user_id: Uuid, column: &str) -> Result<()> {
    // `column` is one of our constants, never input.
    let sql = format!(
        "INSERT INTO user_stats (user_id, {column}, last_updated) VALUES ($1, 1, now())
         ON CONFLICT (user_id) DO UPDATE
         SET {column} = user_stats.{column} + 1, last_updated = now()"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Reacts to a post (§4.9 "React"). A new reaction costs 1; the owner gets a
/// refund of 1, at most 5 times per post; changing the type is free.
pub async fn react(
    ctx: &Context,
    user_id: Uuid,
    post_id: Uuid,
    reaction_type: &str,
) -> Result<Done> {
    validate_reaction_type(reaction_type)?;
    let amounts = Amounts::from_config(&ctx.config);
    let mut tx = ctx.db.begin().await?;
    // 1. The post (locked: reactions on one post are serialized).
    let post = lock_post_for(&mut tx, post_id, user_id).await?;
    let owner = post.user_id;
    // The caller's reaction, read after the lock (a statement of its own: the
    // locking statement's snapshot predates a reaction committed while it
    // waited).
    let existing: Option<String> = sqlx::query_scalar(
        "SELECT reaction_type FROM post_reactions WHERE post_id = $1 AND user_id = $2",
    )
    .bind(post_id)
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?;
    // 2. An existing reaction: the same type is a no-op, another is a free change.
    if let Some(old) = existing {
        if old == reaction_type {
            tx.rollback().await?;
            return Ok(Done {
                message: "Already reacted".into(),
            });
        }
        sqlx::query(
            "UPDATE post_reactions SET reaction_type = $3 WHERE post_id = $1 AND user_id = $2",
        )
        .bind(post_id)
        .bind(user_id)
        .bind(reaction_type)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        jobs::wake_relay(ctx);
        return Ok(Done {
            message: "Reaction updated".into(),
        });
    }
    // 3. Not on your own post.
    if owner == user_id {
        return Err(fail(400, "You cannot react to your own posts"));
    }
    // 4. Charge.
    lock_profiles(&mut tx, &[user_id, owner]).await?;
    let cost = amounts.reaction;
    if let Err(i) = economy::spend(&mut tx, user_id, cost, reason::REACTION, Some(post_id)).await? {
        return Err(insufficient(
            400,
            format!("Insufficient claves. You need {cost} 🥢"),
            i,
        ));
    }
    // 5. The reaction and the counter, in one statement.
    sqlx::query(
        "WITH r AS (
             INSERT INTO post_reactions (post_id, user_id, reaction_type, created_at)
             VALUES ($1, $2, $3, $4) RETURNING post_id
         )
         UPDATE posts SET reaction_count = reaction_count + 1
         WHERE id = (SELECT post_id FROM r)",
    )
    .bind(post_id)
    .bind(user_id)
    .bind(reaction_type)
    .bind(ctx.clock.now())
    .execute(&mut *tx)
    .await?;
    // 6. The owner's refund, capped per post (the owner's profile is locked,
    //    so the count cannot race).
    if amounts.reaction_refund > 0 {
        economy::credit_capped(
            &mut tx,
            owner,
            amounts.reaction_refund,
            reason::REACTION_REFUND,
            post_id,
            amounts.reaction_refund_cap,
        )
        .await?;
    }
    // Stats and badge checks count new reactions only (D14).
    sqlx::query(
        "INSERT INTO user_stats (user_id, reactions_given_count, reactions_received_count,
                                 last_updated)
         VALUES ($1, 1, 0, now()), ($2, 0, 1, now())
         ON CONFLICT (user_id) DO UPDATE
         SET reactions_given_count =
                 user_stats.reactions_given_count + EXCLUDED.reactions_given_count,
             reactions_received_count =
                 user_stats.reactions_received_count + EXCLUDED.reactions_received_count,
             last_updated = now()",
    )
    .bind(user_id)
    .bind(owner)
    .execute(&mut *tx)
    .await?;
    jobs::enqueue_many(
        &mut tx,
        &[
            BadgeCheckJob {
                user_id,
                stat: "reactions_given".into(),
            },
            BadgeCheckJob {
                user_id: owner,
                stat: received_stat(reaction_type).into(),
            },
        ],
    )
    .await?;
    // Once per (actor, post) ever: reacting again after an unreact is silent.
    let mut pending = notifications::Pending::default();
    notifications::notify(
        &mut tx,
        ctx.clock.now(),
        &notifications::New::reaction(owner, user_id, post_id, &post.title),
        &mut pending,
    )
    .await?;
    tx.commit().await?;
    jobs::wake_relay(ctx);
    pending.publish(ctx).await;
    Ok(Done {
        message: format!("Reacted with {reaction_type}! (-{cost} 🥢)"),
    })
}

/// Removes the caller's reaction. No refund; stats are untouched.
pub async fn unreact(ctx: &Context, user_id: Uuid, post_id: Uuid) -> Result<Done> {
    let mut tx = ctx.db.begin().await?;
    lock_post_for(&mut tx, post_id, user_id).await?;
    let removed = sqlx::query("DELETE FROM post_reactions WHERE post_id = $1 AND user_id = $2")
        .bind(post_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if removed == 0 {
        return Err(fail(400, "No reaction to remove"));
    }
    sqlx::query("UPDATE posts SET reaction_count = GREATEST(0, reaction_count - 1) WHERE id = $1")
        .bind(post_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    jobs::wake_relay(ctx);
    Ok(Done {
        message: "Reaction removed".into(),
    })
}
