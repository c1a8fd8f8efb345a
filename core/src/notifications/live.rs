//! The live push: what was committed is announced on one Redis pub/sub
//! channel per deployment, and every API process fans each message out to
//! the streams it holds (see the API's `/api/notifications/stream`).

use crate::Context;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The channel every process publishes to and each API process subscribes to
/// once: `{namespace}:notifications`.
pub fn channel(ctx: &Context) -> String {
    ctx.redis.key("notifications")
}

/// One pub/sub message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    /// These notifications were created (recipient, notification id).
    Created { items: Vec<(Uuid, Uuid)> },
    /// A fan-out created one notification of `type` for `reference_id` for
    /// (nearly) every user: each process looks up only its own streams' rows.
    FanOut {
        #[serde(rename = "type")]
        kind: String,
        reference_id: String,
    },
}

async fn publish(ctx: &Context, msg: &Message) -> redis::RedisResult<()> {
    let payload = serde_json::to_string(msg).expect("a pub/sub message serializes");
    let mut conn = ctx.redis.conn();
    let _: i64 = redis::cmd("PUBLISH")
        .arg(channel(ctx))
        .arg(payload)
        .query_async(&mut conn)
        .await?;
    Ok(())
}

/// Announces notifications committed just now.
pub async fn publish_created(ctx: &Context, items: &[(Uuid, Uuid)]) -> redis::RedisResult<()> {
    publish(
        ctx,
        &Message::Created {
            items: items.to_vec(),
        },
    )
    .await
}

/// Announces a finished fan-out.
pub async fn publish_fanout(
    ctx: &Context,
    kind: &str,
    reference_id: &str,
) -> redis::RedisResult<()> {
    publish(
        ctx,
        &Message::FanOut {
            kind: kind.to_string(),
            reference_id: reference_id.to_string(),
        },
    )
    .await
}
