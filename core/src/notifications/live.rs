//! The live push: what was committed is announced on one Redis pub/sub
//! channel per deployment, and every API process fans each message out to
//! the streams it holds (see the API's `/api/notifications/stream`).

use super::{COLUMNS, Notification};
use crate::Context;
use futures::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
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

// ---------------------------------------------------------------------------
// The receiving side: one subscription per API process, fanned out in memory
// ---------------------------------------------------------------------------

/// What one open stream receives from the [`Hub`].
#[derive(Debug, Clone)]
pub enum Push {
    /// A notification of the stream's user (shared by that user's streams).
    Notification(Arc<Notification>),
    /// The user's unread count after the notifications just sent.
    UnreadCount(i64),
    /// Time for a heartbeat comment (one tick of the hub for every stream).
    Heartbeat,
}

/// Pushes a stream may have waiting before it counts as stalled; a stalled
/// stream is closed, and the client's reconnect replays what it missed
/// (`Last-Event-ID`).
pub const STREAM_BUFFER: usize = 32;
/// How long a new stream waits for the subscription when the process has
/// none yet (just started, or Redis is down); it is served anyway after that.
pub const READY_WAIT: Duration = Duration::from_secs(2);
/// Messages taken off the subscription at once: a burst is looked up with
/// one query per kind, not one per message.
const BATCH: usize = 256;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const PING_TIMEOUT: Duration = Duration::from_secs(5);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Gauge: streams open in this process.
pub const STREAMS_OPEN: &str = "notification_streams_open";

/// Where the process's subscription stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubState {
    /// Not subscribed yet.
    Starting,
    /// Subscribed: every message published from now on is fanned out.
    Subscribed,
    /// The subscription was lost; reconnecting with backoff.
    Down,
    /// The server is shutting down: every stream has ended, none may open.
    Closed,
}

/// The live streams of one API process: ONE Redis pub/sub subscription to
/// [`channel`], and a registry of the streams open here (user id → senders).
/// An open stream costs a bounded channel and an entry in the map: no task,
/// no timer and no Redis connection of its own. One heartbeat tick per
/// process reaches every stream.
///
/// Each message names notification ids (or a fan-out); the hub keeps only
/// the users it holds streams for, loads those notifications with one query
/// and their unread counts with another, and sends them to the streams.
/// Nothing here must be shared with other processes: every process receives
/// every message.
///
/// When the subscription is lost (or first made), the streams open at that
/// moment are closed: messages may have been missed, and a client's
/// reconnect replays them from its `Last-Event-ID`.
///
/// The hub closes itself when its last clone is dropped (a server that
/// stopped without [`Hub::close`]), so its tasks and connection go with it.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
    _owner: Arc<CloseOnDrop>,
}

/// Held by the [`Hub`]s only (not by the hub's own tasks).
struct CloseOnDrop(Arc<Inner>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("state", &*self.inner.state.borrow())
            .field("streams", &self.streams_open())
            .finish()
    }
}

struct Entry {
    id: u64,
    tx: mpsc::Sender<Push>,
}

struct Inner {
    ctx: Context,
    streams: Mutex<HashMap<Uuid, Vec<Entry>>>,
    next_id: AtomicU64,
    open: AtomicU64,
    state: watch::Sender<HubState>,
    started: AtomicBool,
    heartbeat: Duration,
}

impl Hub {
    /// A hub that does nothing until [`Hub::start`] (or the first stream).
    pub fn new(ctx: Context) -> Self {
        let heartbeat = Duration::from_secs(ctx.config.notifications_heartbeat_seconds.max(1));
        let inner = Arc::new(Inner {
            ctx,
            streams: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            open: AtomicU64::new(0),
            state: watch::Sender::new(HubState::Starting),
            started: AtomicBool::new(false),
            heartbeat,
        });
        Self {
            _owner: Arc::new(CloseOnDrop(inner.clone())),
            inner,
        }
    }

    /// Starts the subscriber and the heartbeat (once; later calls do
    /// nothing). Needs a Tokio runtime.
    pub fn start(&self) {
        if self.inner.started.swap(true, Ordering::SeqCst) {
            return;
        }
        metrics::describe_gauge!(
            STREAMS_OPEN,
            "Live notification streams open in the process"
        );
        tokio::spawn(subscriber(self.inner.clone()));
        tokio::spawn(heartbeat(self.inner.clone()));
    }

    /// Ends every stream and refuses new ones; the subscriber and the
    /// heartbeat stop. For the server's graceful shutdown.
    pub fn close(&self) {
        self.inner.close();
    }

    pub fn state(&self) -> HubState {
        *self.inner.state.borrow()
    }

    /// Streams open in this process.
    pub fn streams_open(&self) -> u64 {
        self.inner.open.load(Ordering::Relaxed)
    }

    /// Registers a stream for `user_id`. Waits up to [`READY_WAIT`] for the
    /// subscription if there is none yet; `None` once the hub is closed.
    /// Register before reading what to replay: whatever is committed after
    /// this call arrives through the subscription.
    pub async fn subscribe(&self, user_id: Uuid) -> Option<Subscription> {
        self.start();
        let mut state = self.inner.state.subscribe();
        let _ = tokio::time::timeout(
            READY_WAIT,
            state.wait_for(|s| matches!(s, HubState::Subscribed | HubState::Closed)),
        )
        .await;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut streams = self.inner.lock();
            // Checked under the lock `close` takes: no stream slips in after it.
            if *self.inner.state.borrow() == HubState::Closed {
                return None;
            }
            streams.entry(user_id).or_default().push(Entry { id, tx });
        }
        let open = self.inner.open.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!(STREAMS_OPEN).set(open as f64);
        Some(Subscription {
            rx,
            hub: Arc::downgrade(&self.inner),
            user_id,
            id,
        })
    }
}

/// One registered stream: a [`futures::Stream`] of [`Push`]es that ends when
/// the hub drops it (shutdown, lost subscription, stalled client).
/// Dropping it unregisters the stream.
pub struct Subscription {
    rx: mpsc::Receiver<Push>,
    hub: Weak<Inner>,
    user_id: Uuid,
    id: u64,
}

impl futures::Stream for Subscription {
    type Item = Push;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Push>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let Some(inner) = self.hub.upgrade() else {
            return;
        };
        {
            let mut streams = inner.lock();
            if let Some(entries) = streams.get_mut(&self.user_id) {
                entries.retain(|e| e.id != self.id);
                if entries.is_empty() {
                    streams.remove(&self.user_id);
                }
            }
        }
        let open = inner.open.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
        metrics::gauge!(STREAMS_OPEN).set(open as f64);
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Vec<Entry>>> {
        // A panic while holding the lock leaves a usable map.
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn close(&self) {
        self.state.send_replace(HubState::Closed);
        self.close_streams();
    }

    fn closed(&self) -> bool {
        *self.state.borrow() == HubState::Closed
    }

    /// Drops every sender: each open stream ends.
    fn close_streams(&self) {
        let old = std::mem::take(&mut *self.lock());
        drop(old);
    }

    /// Sends to every stream of `user_id`; a stream that is gone or stalled
    /// is dropped (a stalled one ends, and its client replays on reconnect).
    fn send(streams: &mut HashMap<Uuid, Vec<Entry>>, user_id: Uuid, push: &Push) {
        let Some(entries) = streams.get_mut(&user_id) else {
            return;
        };
        entries.retain(|e| match e.tx.try_send(push.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(%user_id, "a notification stream fell behind; closing it");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        if entries.is_empty() {
            streams.remove(&user_id);
        }
    }

    /// Looks up what `msgs` announce for the users with a stream here and
    /// sends it: at most one query for the new notifications, one per
    /// distinct fan-out, and one for the unread counts.
    async fn deliver(&self, msgs: &[redis::Msg]) {
        let mut created: Vec<(Uuid, Uuid)> = vec![];
        let mut fanouts: Vec<(String, String)> = vec![];
        for m in msgs {
            match serde_json::from_slice::<Message>(m.get_payload_bytes()) {
                Ok(Message::Created { items }) => created.extend(items),
                Ok(Message::FanOut { kind, reference_id }) => {
                    if !fanouts
                        .iter()
                        .any(|(k, r)| *k == kind && *r == reference_id)
                    {
                        fanouts.push((kind, reference_id));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "unreadable notification message"),
            }
        }
        let (ids, everyone): (Vec<Uuid>, Vec<Uuid>) = {
            let streams = self.lock();
            let ids = created
                .iter()
                .filter(|(user, _)| streams.contains_key(user))
                .map(|(_, id)| *id)
                .collect();
            let everyone = if fanouts.is_empty() {
                vec![]
            } else {
                streams.keys().copied().collect()
            };
            (ids, everyone)
        };
        let db = &self.ctx.db;
        let mut rows: Vec<(Uuid, Notification)> = vec![];
        if !ids.is_empty() {
            match super::by_ids(db, &ids).await {
                Ok(found) => rows.extend(found),
                Err(e) => {
                    tracing::warn!(error = %e, "loading notifications for live streams failed")
                }
            }
        }
        if !everyone.is_empty() {
            for (kind, reference_id) in &fanouts {
                match fanned_out(db, &everyone, kind, reference_id).await {
                    Ok(found) => rows.extend(found),
                    Err(e) => {
                        tracing::warn!(error = %e, "loading a fan-out for live streams failed")
                    }
                }
            }
        }
        if rows.is_empty() {
            return;
        }
        let mut users: Vec<Uuid> = rows.iter().map(|(u, _)| *u).collect();
        users.sort_unstable();
        users.dedup();
        let counts = match unread_counts(db, &users).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "unread counts for live streams failed");
                vec![]
            }
        };
        let mut streams = self.lock();
        for (user_id, n) in rows {
            Self::send(&mut streams, user_id, &Push::Notification(Arc::new(n)));
        }
        for (user_id, count) in counts {
            Self::send(&mut streams, user_id, &Push::UnreadCount(count));
        }
    }
}

/// The notification of `kind` for `reference_id` of each of `users` (a
/// fan-out just inserted it): the newest match per user, found from the top
/// of the user's newest-first index. One query whatever the number of users.
async fn fanned_out(
    db: &PgPool,
    users: &[Uuid],
    kind: &str,
    reference_id: &str,
) -> crate::Result<Vec<(Uuid, Notification)>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        user_id: Uuid,
        #[sqlx(flatten)]
        n: Notification,
    }
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT u.user_id, {COLUMNS}
         FROM unnest($1::uuid[]) AS u(user_id)
         CROSS JOIN LATERAL (
             SELECT * FROM notifications x
             WHERE x.user_id = u.user_id AND x.type = $2 AND x.reference_id = $3
             ORDER BY x.created_at DESC, x.id DESC
             LIMIT 1
         ) n
         LEFT JOIN user_profiles ap ON ap.user_id = n.actor_id"
    )))
    .bind(users)
    .bind(kind)
    .bind(reference_id)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.user_id, r.n)).collect())
}

/// Unread counts of several users in one query (each an index-only count of
/// the partial unread index); every user is in the answer, 0 included.
pub async fn unread_counts(db: &PgPool, users: &[Uuid]) -> crate::Result<Vec<(Uuid, i64)>> {
    Ok(sqlx::query_as(
        "SELECT u.user_id,
                (SELECT count(*) FROM notifications n
                 WHERE n.user_id = u.user_id AND NOT n.is_read)
         FROM unnest($1::uuid[]) AS u(user_id)",
    )
    .bind(users)
    .fetch_all(db)
    .await?)
}

/// The process's one subscription: connects, subscribes, fans out what
/// arrives, and reconnects with backoff when Redis drops it, until closed.
async fn subscriber(inner: Arc<Inner>) {
    let client = match redis::Client::open(inner.ctx.config.redis_url.expose()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "live notifications disabled: bad Redis URL");
            return;
        }
    };
    let channel = channel(&inner.ctx);
    let mut state = inner.state.subscribe();
    let mut backoff = MIN_BACKOFF;
    let mut failures = 0u32;
    while !inner.closed() {
        let connect = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(p)) => p,
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".to_string(),
                };
                if failures == 0 || backoff == MAX_BACKOFF {
                    tracing::warn!(%error, "subscribing to live notifications failed; retrying");
                }
                failures += 1;
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = closed(&mut state) => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        if failures > 0 {
            tracing::info!(failures, "subscribed to live notifications again");
        }
        backoff = MIN_BACKOFF;
        failures = 0;
        // Streams opened before this point may have missed messages: end
        // them (their clients reconnect and replay), then admit new ones.
        inner.close_streams();
        if inner.state.send_if_modified(|s| match s {
            HubState::Closed => false,
            _ => {
                *s = HubState::Subscribed;
                true
            }
        }) {
            let reason = listen(&inner, pubsub, &mut state).await;
            if inner.closed() {
                return;
            }
            tracing::warn!(%reason, "live notification subscription lost; reconnecting");
            inner.state.send_if_modified(|s| match s {
                HubState::Closed => false,
                _ => {
                    *s = HubState::Down;
                    true
                }
            });
            inner.close_streams();
        }
    }
}

/// Receives until the connection fails (or the hub closes); pings Redis
/// every heartbeat so a silently dead connection is noticed.
async fn listen(
    inner: &Inner,
    pubsub: redis::aio::PubSub,
    state: &mut watch::Receiver<HubState>,
) -> String {
    let (mut sink, mut messages) = pubsub.split();
    let mut ping = tokio::time::interval_at(
        tokio::time::Instant::now() + inner.heartbeat,
        inner.heartbeat,
    );
    loop {
        tokio::select! {
            msg = messages.next() => {
                let Some(first) = msg else {
                    return "connection closed".into();
                };
                let mut batch = vec![first];
                while batch.len() < BATCH {
                    match messages.next().now_or_never() {
                        Some(Some(m)) => batch.push(m),
                        _ => break,
                    }
                }
                inner.deliver(&batch).await;
            }
            _ = ping.tick() => {
                match tokio::time::timeout(PING_TIMEOUT, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return format!("ping failed: {e}"),
                    Err(_) => return "ping timed out".into(),
                }
            }
            _ = closed(state) => return "closed".into(),
        }
    }
}

/// Completes once the hub is closed (holds no lock across an await).
async fn closed(state: &mut watch::Receiver<HubState>) {
    let _ = state.wait_for(|s| *s == HubState::Closed).await;
}

/// One tick per process for every open stream's heartbeat comment.
async fn heartbeat(inner: Arc<Inner>) {
    let mut state = inner.state.subscribe();
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + inner.heartbeat,
        inner.heartbeat,
    );
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let streams = inner.lock();
                for entries in streams.values() {
                    for e in entries {
                        // A full buffer already has something to send.
                        let _ = e.tx.try_send(Push::Heartbeat);
                    }
                }
            }
            _ = closed(&mut state) => return,
        }
    }
}
