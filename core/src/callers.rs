//! The caller's row, cached per API process (issue 20).
//!
//! Every signed-in request reads its caller's row (email, role, verification,
//! the token cut-off of sign-out-everywhere) before doing its own work: one of
//! the two round trips of most reads. This cache keeps the row for
//! `CALLER_CACHE_SECONDS` (10; 0 turns it off) and forgets it the moment it
//! may have changed:
//!
//! - **Any writer, any process, even plain SQL**: a trigger on `users`
//!   (migration 0190) sends `NOTIFY mambo_callers, '<user id>'` when a column
//!   the lookup reads changes or the row is deleted; each API process listens
//!   ([`listen`]) and forgets that user. PostgreSQL delivers a notification
//!   only after its transaction commits.
//! - **This process's own writes** (sign out everywhere, password change or
//!   reset, verification, deletion) also call [`CallerCache::forget`] right
//!   after their commit, before their response is sent, so the next request
//!   of the same client never races the notification.
//! - **No listener, no cache**: until the listener has subscribed, and from
//!   the moment its connection is lost until it has subscribed again (the
//!   notifications in between are lost), nothing is served from the cache and
//!   everything in it is dropped.
//! - A lookup that started before a forget never stores what it read
//!   ([`CallerCache::generation`]).

use crate::Config;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The channel the `users` trigger notifies.
pub const CHANNEL: &str = "mambo_callers";
/// Entries kept at most; past it the cache starts again empty.
const MAX_ENTRIES: usize = 200_000;

/// What the request's authentication reads of its caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallerRow {
    pub email: String,
    pub role: String,
    pub is_verified: bool,
    pub tokens_valid_after: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Default)]
pub struct CallerCache {
    entries: Mutex<HashMap<Uuid, (CallerRow, Instant)>>,
    /// Moves on every forget: a row read before it is not stored.
    generation: AtomicU64,
    /// Whether the listener is subscribed (nothing is served otherwise).
    listening: AtomicBool,
}

impl CallerCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, (CallerRow, Instant)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached row, if fresh (younger than `ttl`) and the listener is up.
    pub fn get(&self, id: Uuid, ttl: Duration) -> Option<CallerRow> {
        if ttl.is_zero() || !self.listening.load(Ordering::Acquire) {
            return None;
        }
        let entries = self.lock();
        let (row, at) = entries.get(&id)?;
        (at.elapsed() < ttl).then(|| row.clone())
    }

    /// Take before reading the row from the database; pass to [`Self::put`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Stores a row read from the database after [`Self::generation`]
    /// returned `generation`, unless something was forgotten since.
    pub fn put(&self, id: Uuid, row: CallerRow, generation: u64) {
        if !self.listening.load(Ordering::Acquire) {
            return;
        }
        let mut entries = self.lock();
        // Checked under the lock forget takes: no forget slips in between.
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(id, (row, Instant::now()));
    }

    /// Forgets a user's row (their row changed or may have).
    pub fn forget(&self, id: Uuid) {
        let mut entries = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.remove(&id);
    }

    /// Forgets every row.
    pub fn forget_all(&self) {
        let mut entries = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }

    fn set_listening(&self, on: bool) {
        let mut entries = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
        self.listening.store(on, Ordering::Release);
    }

    /// Whether rows are being cached (the listener is subscribed).
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }
}

/// Listens for changed callers until the process ends: forgets each user
/// notified, and serves nothing from the cache while not subscribed
/// (re-subscribing with backoff after a lost connection). Does nothing when
/// the cache is turned off. `cache` is the process's (`ctx.callers`).
pub async fn listen(config: Arc<Config>, cache: Arc<CallerCache>) {
    if config.caller_cache_seconds == 0 {
        return;
    }
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut listener =
            match sqlx::postgres::PgListener::connect(config.database_url.expose()).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "caller cache: cannot connect to listen");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
        // A lost connection is reported (Ok(None)), not silently re-made.
        listener.eager_reconnect(false);
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "caller cache: LISTEN failed");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
            continue;
        }
        // Subscribed: whatever changed before now is read afresh.
        cache.set_listening(true);
        backoff = Duration::from_millis(100);
        // Ok(None) (connection lost) or an error ends the subscription.
        while let Ok(Some(n)) = listener.try_recv().await {
            match Uuid::parse_str(n.payload()) {
                Ok(id) => cache.forget(id),
                Err(_) => cache.forget_all(),
            }
        }
        tracing::warn!(
            "caller cache: the listening connection was lost; caching stops until it is back"
        );
        cache.set_listening(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(role: &str) -> CallerRow {
        CallerRow {
            email: "a@b.c".into(),
            role: role.into(),
            is_verified: true,
            tokens_valid_after: None,
        }
    }

    #[test]
    fn rows_are_served_only_while_listening_fresh_and_not_forgotten() {
        let c = CallerCache::default();
        let id = Uuid::new_v4();
        let ttl = Duration::from_secs(10);
        // Not listening: nothing stored, nothing served.
        c.put(id, row("student"), c.generation());
        assert_eq!(c.get(id, ttl), None);
        c.set_listening(true);
        c.put(id, row("student"), c.generation());
        assert_eq!(c.get(id, ttl), Some(row("student")));
        assert_eq!(c.get(id, Duration::ZERO), None, "turned off");
        // A lookup that started before a forget does not store its row.
        let g = c.generation();
        c.forget(id);
        c.put(id, row("student"), g);
        assert_eq!(c.get(id, ttl), None);
        c.put(id, row("admin"), c.generation());
        assert_eq!(c.get(id, ttl), Some(row("admin")));
        // Forgetting another user also moves the generation (cheap, safe).
        let g = c.generation();
        c.forget(Uuid::new_v4());
        assert_ne!(c.generation(), g);
        assert_eq!(c.get(id, ttl), Some(row("admin")));
        // Losing the listener drops everything and stops serving.
        c.set_listening(false);
        assert_eq!(c.get(id, ttl), None);
        c.set_listening(true);
        assert_eq!(c.get(id, ttl), None, "emptied, not kept for later");
        // Old rows expire.
        c.put(id, row("student"), c.generation());
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(c.get(id, Duration::from_millis(1)), None);
    }
}
