//! The live notification stream (API-NEXT.md N1): `GET /api/notifications/stream`
//! as server-sent events.
//!
//! The stream is a thin view of the process's [`live::Hub`] (one Redis
//! subscription per API process, fanned out in memory): it registers with the
//! hub, replays what the client missed (`Last-Event-ID`), sends the unread
//! count, then forwards what the hub pushes. An idle stream is a future
//! waiting on its channel; heartbeats come from the hub's one tick.

use crate::auth::StreamAuth;
use crate::error::{ApiError, ApiResult};
use crate::routes::notifications::{NotificationOut, UnreadCountOut};
use crate::state::AppState;
use futures::stream::{self, BoxStream, StreamExt};
use mambo_core::notifications::{self, Notification, live};
use poem::web::Data;
use poem::{Body, IntoResponse, Response};
use poem_openapi::param::{Header, Query};
use poem_openapi::payload::Payload;
use poem_openapi::registry::{
    MetaMediaType, MetaResponse, MetaResponses, MetaSchema, MetaSchemaRef, Registry,
};
use poem_openapi::types::Type;
use poem_openapi::{ApiResponse, OpenApi};
use std::collections::HashSet;
use uuid::Uuid;

pub struct NotificationsStreamApi;

/// Notifications replayed at most after a `Last-Event-ID`.
pub const REPLAY_LIMIT: i64 = 50;

/// The heartbeat: an SSE comment line, ignored by EventSource.
pub const HEARTBEAT: &str = ": ping\n\n";

const EVENT_DOC: &str = "One server-sent event. `event: notification` has `id:` the \
notification id and `data` a `Notification` object as JSON; `event: unread_count` has \
`data` `{\"unread_count\": <int>}`. A comment line (`: ping`) every 15 s is the heartbeat.";

/// A `text/event-stream` body of ready-made frames (events, comments).
pub struct LiveEvents(BoxStream<'static, String>);

impl Payload for LiveEvents {
    const CONTENT_TYPE: &'static str = "text/event-stream";

    fn schema_ref() -> MetaSchemaRef {
        let string = || MetaSchemaRef::Inline(Box::new(MetaSchema::new("string")));
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            description: Some(EVENT_DOC),
            required: vec!["event", "data"],
            properties: vec![
                (
                    "event",
                    MetaSchemaRef::Inline(Box::new(MetaSchema {
                        enum_items: vec!["notification".into(), "unread_count".into()],
                        ..MetaSchema::new("string")
                    })),
                ),
                ("data", string()),
                ("id", string()),
                (
                    "retry",
                    MetaSchemaRef::Inline(Box::new(MetaSchema::new("integer"))),
                ),
            ],
            ..MetaSchema::new("object")
        }))
    }

    fn register(registry: &mut Registry) {
        // The shapes `data` holds.
        NotificationOut::register(registry);
        UnreadCountOut::register(registry);
    }
}

impl IntoResponse for LiveEvents {
    fn into_response(self) -> Response {
        Response::builder()
            .content_type(Self::CONTENT_TYPE)
            .header("Cache-Control", "no-cache")
            // Proxies (nginx) must pass each event on at once.
            .header("X-Accel-Buffering", "no")
            .body(Body::from_bytes_stream(self.0.map(Ok::<_, std::io::Error>)))
    }
}

impl ApiResponse for LiveEvents {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "The caller's notifications as server-sent events, until the client \
                              or the server closes the stream",
                status: Some(200),
                status_range: None,
                content: vec![MetaMediaType {
                    content_type: Self::CONTENT_TYPE,
                    schema: Self::schema_ref(),
                }],
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        <Self as Payload>::register(registry);
    }
}

/// `event: notification`, with the notification id as the event id.
pub fn notification_frame(n: &Notification) -> String {
    let out = NotificationOut::from(n.clone());
    let data = serde_json::to_string(&out).expect("a notification serializes");
    format!("id: {}\nevent: notification\ndata: {data}\n\n", n.id)
}

/// `event: unread_count`.
pub fn unread_frame(unread_count: i64) -> String {
    let data = serde_json::to_string(&UnreadCountOut { unread_count }).expect("serializes");
    format!("event: unread_count\ndata: {data}\n\n")
}

/// The reconnection delay the client is told, spread over 2–5 s so that
/// streams closed together (a lost subscription, a restart) do not all
/// come back in the same instant.
fn retry_frame() -> String {
    format!("retry: {}\n\n", rand::random_range(2_000..5_000))
}

fn parse_last_id(header: Option<String>, query: Option<String>) -> Option<Uuid> {
    header
        .filter(|h| !h.trim().is_empty())
        .or(query)
        .and_then(|s| Uuid::parse_str(s.trim()).ok())
}

#[OpenApi(tag = "crate::routes::Tag::Notifications")]
impl NotificationsStreamApi {
    /// The caller's notifications as they happen (server-sent events)
    ///
    /// Sign in with the bearer header, the `access_token` cookie or
    /// `?token=<access token>` (a browser's EventSource cannot send headers).
    ///
    /// Events:
    /// - `notification`: `id:` is the notification id, `data` a `Notification`
    ///   as JSON (the shape of `GET /api/notifications`). Sent within a second
    ///   of the notification being committed, whichever API process the
    ///   stream is connected to.
    /// - `unread_count`: `data` is `{"unread_count": <int>}`; sent when the
    ///   stream opens and after each notification.
    ///
    /// A comment line (`: ping`) every 15 seconds is the heartbeat. A
    /// reconnect with `Last-Event-ID` (or `?last_event_id=`) first replays
    /// the caller's notifications newer than that id (at most 50, oldest
    /// first). The server may end the stream (shutdown, a client too slow to
    /// keep up, a lost Redis subscription); EventSource reconnects after the
    /// `retry:` delay and replays what it missed.
    #[oai(path = "/api/notifications/stream", method = "get")]
    async fn stream(
        &self,
        state: Data<&AppState>,
        auth: StreamAuth,
        /// The id of the last event received (sent by EventSource on reconnect)
        #[oai(name = "Last-Event-ID")]
        last_event_id_header: Header<Option<String>>,
        /// Same as the `Last-Event-ID` header (the header wins)
        last_event_id: Query<Option<String>>,
    ) -> ApiResult<LiveEvents> {
        let user_id = auth.user().id;
        let db = &state.ctx.db;
        // Registered first: whatever is committed from now on arrives live;
        // what was committed before is replayed below (both: sent once).
        let subscription = state
            .live
            .subscribe(user_id)
            .await
            .ok_or_else(|| ApiError::msg(503, "Server is shutting down"))?;
        let replay = match parse_last_id(last_event_id_header.0, last_event_id.0) {
            Some(last) => notifications::newer_than(db, user_id, last, REPLAY_LIMIT).await?,
            None => vec![],
        };
        let unread = notifications::unread_count(db, user_id).await?;
        let replayed: HashSet<Uuid> = replay.iter().map(|n| n.id).collect();
        let mut head = vec![retry_frame()];
        head.extend(replay.iter().map(notification_frame));
        head.push(unread_frame(unread));
        let live = subscription.filter_map(move |push| {
            let frame = match push {
                live::Push::Notification(n) if replayed.contains(&n.id) => None,
                live::Push::Notification(n) => Some(notification_frame(&n)),
                live::Push::UnreadCount(c) => Some(unread_frame(c)),
                live::Push::Heartbeat => Some(HEARTBEAT.to_string()),
            };
            std::future::ready(frame)
        });
        Ok(LiveEvents(stream::iter(head).chain(live).boxed()))
    }
}
