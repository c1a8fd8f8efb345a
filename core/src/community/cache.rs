//! Caches, per filter and page, the ordered list of post ids: the part of a
//! feed page that is the same for every viewer and that only post creation,
//! edits (tags) and deletion change. The rows themselves (counters, authors,
//! playback ids) are always read fresh by primary key, so writes made
//! elsewhere (webhooks, profile edits) never show stale.
//!
//! Pages are stored under a generation number that every invalidating write
//! bumps after its commit; a page stored under an older generation is never
//! read again. The cache is best effort: any Redis error (or Redis being
//! down) falls back to the database, and after an error this process skips
//! the cache for a while, so a dead Redis costs no latency.

use crate::Context;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// Seconds a page lives (§4.10: 60 s).
pub const TTL_SECS: u64 = 60;
/// Longest a cache call may take before it is abandoned.
const CALL_TIMEOUT: Duration = Duration::from_millis(200);
/// After a failed read, skip the cache this long.
const BACKOFF_SECS: i64 = 5;

/// Per Redis namespace (one per deployment; several in tests): the unix
/// second until which the cache is skipped.
static SKIP_UNTIL: LazyLock<Mutex<HashMap<String, i64>>> = LazyLock::new(Default::default);

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn available(ctx: &Context) -> bool {
    let map = SKIP_UNTIL.lock().unwrap_or_else(|e| e.into_inner());
    map.get(ctx.redis.namespace())
        .is_none_or(|until| now_secs() >= *until)
}

fn skip_for(ctx: &Context, secs: i64) {
    let mut map = SKIP_UNTIL.lock().unwrap_or_else(|e| e.into_inner());
    let until = map.entry(ctx.redis.namespace().to_string()).or_insert(0);
    *until = (*until).max(now_secs() + secs);
}

fn version_key(ctx: &Context) -> String {
    ctx.redis.key("feed:version")
}

/// What one cached page is of: the feed's filters, normalised (blank values
/// are `None`, the tags of `tag` and `tags` united, sorted and deduplicated),
/// and its window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PageKey {
    pub post_type: Option<String>,
    /// Posts with any of these tags (none: every post).
    pub tags: Vec<String>,
    pub video_type: Option<String>,
    pub skip: i64,
    pub limit: i64,
}

/// `feed:{stage|lab|all}:page:{skip}:{limit}:v{generation}:{tags as hex, '.'
/// between}`, then `:vt{video type as hex}` when the page has one.
fn page_key(ctx: &Context, version: i64, k: &PageKey) -> String {
    let kind = match k.post_type.as_deref() {
        None | Some("") => "all".to_string(),
        Some(t @ ("stage" | "lab")) => t.to_string(),
        Some(other) => format!("x{}", hex(other)),
    };
    let tags: Vec<String> = k.tags.iter().map(|t| hex(t)).collect();
    let video = match &k.video_type {
        Some(v) => format!(":vt{}", hex(v)),
        None => String::new(),
    };
    ctx.redis.key(&format!(
        "feed:{kind}:page:{}:{}:v{version}:{}{video}",
        k.skip,
        k.limit,
        tags.join(".")
    ))
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

async fn run<T>(
    ctx: &Context,
    fut: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Option<T> {
    if !available(ctx) {
        return None;
    }
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "feed cache unavailable");
            skip_for(ctx, BACKOFF_SECS);
            None
        }
        Err(_) => {
            tracing::debug!("feed cache timed out");
            skip_for(ctx, BACKOFF_SECS);
            None
        }
    }
}

/// The current generation (0 when never bumped); `None` when Redis is unusable.
pub async fn version(ctx: &Context) -> Option<i64> {
    let mut conn = ctx.redis.conn();
    let key = version_key(ctx);
    run(ctx, async move {
        let v: Option<i64> = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
        Ok(v.unwrap_or(0))
    })
    .await
}

/// (generation, page)
type LocalKey = (i64, PageKey);
type LocalPages = HashMap<LocalKey, (std::time::Instant, Arc<Vec<Uuid>>)>;
/// Pages this process has read, per Redis namespace, for the current
/// generation only (older ones are dropped on the next store): a hit costs
/// no Redis read of the page.
static LOCAL: LazyLock<Mutex<HashMap<String, LocalPages>>> = LazyLock::new(Default::default);
/// Pages kept per namespace.
const LOCAL_MAX: usize = 512;

fn local_key(version: i64, k: &PageKey) -> LocalKey {
    (version, k.clone())
}

/// This process's copy of a page of generation `version` (at most
/// [`TTL_SECS`] old).
pub fn local_get(ctx: &Context, version: i64, q: &PageKey) -> Option<Arc<Vec<Uuid>>> {
    let map = LOCAL.lock().unwrap_or_else(|e| e.into_inner());
    let (at, ids) = map
        .get(ctx.redis.namespace())?
        .get(&local_key(version, q))?;
    (at.elapsed() < Duration::from_secs(TTL_SECS)).then(|| ids.clone())
}

/// Keeps a page of generation `version` in this process.
pub fn local_put(ctx: &Context, version: i64, q: &PageKey, ids: Arc<Vec<Uuid>>) {
    let mut map = LOCAL.lock().unwrap_or_else(|e| e.into_inner());
    let pages = map.entry(ctx.redis.namespace().to_string()).or_default();
    let ttl = Duration::from_secs(TTL_SECS);
    pages.retain(|k, (at, _)| k.0 == version && at.elapsed() < ttl);
    if pages.len() >= LOCAL_MAX {
        pages.clear();
    }
    pages.insert(local_key(version, q), (std::time::Instant::now(), ids));
}

/// The cached ids of a page of generation `version`.
pub async fn get(ctx: &Context, version: i64, q: &PageKey) -> Option<Vec<Uuid>> {
    let key = page_key(ctx, version, q);
    let mut conn = ctx.redis.conn();
    let raw: Option<String> = run(ctx, async move {
        redis::cmd("GET").arg(&key).query_async(&mut conn).await
    })
    .await?;
    let raw = raw?;
    serde_json::from_str(&raw).ok()
}

/// Stores a page read from the database under the generation read before it.
pub async fn put(ctx: &Context, version: i64, q: &PageKey, ids: &[Uuid]) {
    let Ok(raw) = serde_json::to_string(ids) else {
        return;
    };
    let key = page_key(ctx, version, q);
    let mut conn = ctx.redis.conn();
    let _: Option<()> = run(ctx, async move {
        redis::cmd("SET")
            .arg(&key)
            .arg(raw)
            .arg("EX")
            .arg(TTL_SECS)
            .query_async(&mut conn)
            .await
    })
    .await;
}

/// Drops every cached page (call after the commit of a write that adds,
/// removes or re-tags a post).
pub async fn invalidate(ctx: &Context) {
    let key = version_key(ctx);
    let mut conn = ctx.redis.conn();
    // Tried even while backing off: a missed bump could serve a stale page.
    let res = tokio::time::timeout(CALL_TIMEOUT, async move {
        let _: i64 = redis::cmd("INCR").arg(&key).query_async(&mut conn).await?;
        redis::RedisResult::Ok(())
    })
    .await;
    if !matches!(res, Ok(Ok(()))) {
        // Pages cached before this write may live one more TTL: do not
        // read the cache in this process until they have expired.
        tracing::debug!("feed cache invalidation failed");
        skip_for(ctx, TTL_SECS as i64);
    }
}
