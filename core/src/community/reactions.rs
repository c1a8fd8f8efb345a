//! Reactions (§4.9 "React", "Unreact").

use super::validation::Validation;
use super::write::{fail, insufficient, lock_post_for, lock_profiles_reading_reaction};
use super::{Done, REACTION_TYPES};
use crate::db::Statement;
use crate::economy::{self, Amounts, reason};
use crate::jobs::{self, BadgeCheckJob};
use crate::notifications;
use crate::{Context, Result};
use sqlx::PgConnection;
use uuid::Uuid;

/// The answer of a react call: the message, and the caller's state on the
/// post after the call (N5.4: shown to a request that named no type).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reacted {
    pub message: String,
    /// The caller's reaction now.
    pub user_reaction: String,
    /// The post's reaction count now.
    pub reaction_count: i32,
}

/// Validates a reaction type (`Literal['fire','ruler','clap','like']`).
pub fn validate_reaction_type(reaction_type: &str) -> Result<()> {
    let mut v = Validation::new();
    v.literal(&["body", "reaction_type"], reaction_type, REACTION_TYPES);
    v.finish()
}

/// The badge stat an owner's received reaction of this type feeds: its
/// family's (fire, clap, ruler), or for a `like`, which belongs to no family
/// (N5.4), only the reactions-received count.
pub(super) fn received_stat(reaction_type: &str) -> &'static str {
    match reaction_type {
        "fire" => "fires_received",
        "clap" => "claps_received",
        "ruler" => "metronomes_received",
        _ => "reactions_received",
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

/// Reacts to a post (§4.9 "React", N5.4). A new reaction costs 1; the owner
/// gets a refund of 1, at most 5 times per post; changing the type is free
/// (the amounts are the settings', N6). The answer carries the caller's
/// reaction and the post's count after the call.
///
/// Five round trips: BEGIN, the post's lock, the two profiles' locks with the
/// caller's reaction, one statement for every write (the economy's, the
/// outbox's and the notification's parts pushed by their own modules), COMMIT.
pub async fn react(
    ctx: &Context,
    user_id: Uuid,
    post_id: Uuid,
    reaction_type: &str,
) -> Result<Reacted> {
    validate_reaction_type(reaction_type)?;
    let amounts = Amounts::current(ctx).await?;
    let mut tx = ctx.db.begin().await?;
    // 1. The post (locked: reactions on one post are serialized).
    let post = lock_post_for(&mut tx, post_id, user_id).await?;
    let owner = post.user_id;
    // The caller's reaction, read after the post's lock (a statement of its
    // own: the locking statement's snapshot predates a reaction committed
    // while it waited), with the profiles' locks the charge needs.
    let existing = lock_profiles_reading_reaction(&mut tx, post_id, user_id, owner).await?;
    // 2. An existing reaction: the same type is a no-op, another is a free change.
    let state = |message: String, reaction_count: i32| Reacted {
        message,
        user_reaction: reaction_type.to_string(),
        reaction_count,
    };
    if let Some(old) = existing {
        if old == reaction_type {
            tx.rollback().await?;
            return Ok(state("Already reacted".into(), post.reaction_count));
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
        return Ok(state("Reaction updated".into(), post.reaction_count));
    }
    // 3. Not on your own post.
    if owner == user_id {
        return Err(fail(400, "You cannot react to your own posts"));
    }
    // 4. One statement: the charge; then, only if it was paid, the reaction
    //    and the counter, both users' stats (new reactions only, D14), the
    //    owner's refund capped per post (the post's lock serializes the
    //    count), the badge checks and the owner's notification (once per
    //    (actor, post) ever: reacting again after an unreact is silent).
    let cost = amounts.reaction;
    let now = ctx.clock.now();
    let notice = notifications::New::reaction(owner, user_id, post_id, &post.title);
    const REACTED: &str = "EXISTS (SELECT 1 FROM reacted)";
    let mut q = Statement::new("WITH ");
    economy::push_spend(
        &mut q,
        "spent",
        user_id,
        cost,
        reason::REACTION,
        Some(post_id),
    );
    q.push(
        ", reacted AS (
             INSERT INTO post_reactions (post_id, user_id, reaction_type, created_at)
             SELECT ",
    );
    q.push_bind(post_id);
    q.push(", user_id, ");
    q.push_bind(reaction_type.to_string());
    q.push(", ");
    q.push_bind(now);
    q.push(
        " FROM spent RETURNING post_id
         ), counted AS (
             UPDATE posts SET reaction_count = reaction_count + 1
             WHERE id = (SELECT post_id FROM reacted)
             RETURNING reaction_count
         ), stats AS (
             INSERT INTO user_stats (user_id, reactions_given_count, reactions_received_count,
                                     last_updated)
             SELECT v.user_id, v.given, v.received, now()
             FROM (VALUES (",
    );
    q.push_bind(user_id);
    q.push(", 1, 0), (");
    q.push_bind(owner);
    q.push(format_args!(
        ", 0, 1)) AS v(user_id, given, received)
             WHERE {REACTED}
             ON CONFLICT (user_id) DO UPDATE
             SET reactions_given_count =
                     user_stats.reactions_given_count + EXCLUDED.reactions_given_count,
                 reactions_received_count =
                     user_stats.reactions_received_count + EXCLUDED.reactions_received_count,
                 last_updated = now()
         ), "
    ));
    if amounts.reaction_refund > 0 {
        economy::push_credit_capped(
            &mut q,
            "refund",
            economy::Capped {
                user_id: owner,
                amount: amounts.reaction_refund,
                reason: reason::REACTION_REFUND,
                reference_id: post_id,
                cap: amounts.reaction_refund_cap,
            },
            REACTED,
        );
        q.push(", ");
    }
    jobs::push_enqueue(
        &mut q,
        "badge_checks",
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
        REACTED,
    )?;
    q.push(", ");
    notifications::push_notify(&mut q, "notified", now, &notice, REACTED);
    q.push(
        " SELECT (SELECT current_claves FROM spent), (SELECT reaction_count FROM counted),
                 (SELECT id FROM notified), ",
    );
    q.push(if amounts.reaction_refund > 0 {
        economy::capped_result_sql("refund")
    } else {
        "0::bigint, NULL::int".to_string()
    });
    type Written = (Option<i32>, Option<i32>, Option<Uuid>, i64, Option<i32>);
    let (paid, count, notified, refunded, owner_balance): Written =
        q.build_query_as().fetch_one(&mut *tx).await?;
    // The refund's own check (a ledger row needs the owner's balance row).
    economy::credited(refunded, owner_balance)?;
    if paid.is_none() {
        let i = economy::insufficient(&mut tx, user_id, cost).await?;
        return Err(insufficient(
            400,
            format!("Insufficient claves. You need {cost} 🥢"),
            i,
        ));
    }
    tx.commit().await?;
    jobs::wake_relay(ctx);
    let mut pending = notifications::Pending::default();
    if let Some(id) = notified {
        pending.push(owner, id);
    }
    pending.publish(ctx).await;
    Ok(state(
        economy::charged_message(&format!("Reacted with {reaction_type}!"), cost),
        count.unwrap_or(post.reaction_count + 1),
    ))
}

/// Removes the caller's reaction. No refund; stats are untouched.
pub async fn unreact(ctx: &Context, user_id: Uuid, post_id: Uuid) -> Result<Done> {
    let mut tx = ctx.db.begin().await?;
    lock_post_for(&mut tx, post_id, user_id).await?;
    // The row and the counter in one statement.
    let removed = sqlx::query(
        "WITH removed AS (
             DELETE FROM post_reactions WHERE post_id = $1 AND user_id = $2 RETURNING post_id
         )
         UPDATE posts SET reaction_count = GREATEST(0, reaction_count - 1)
         WHERE id = (SELECT post_id FROM removed)",
    )
    .bind(post_id)
    .bind(user_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if removed == 0 {
        return Err(fail(400, "No reaction to remove"));
    }
    tx.commit().await?;
    jobs::wake_relay(ctx);
    Ok(Done {
        message: "Reaction removed".into(),
    })
}
