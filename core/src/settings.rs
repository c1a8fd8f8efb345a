//! Platform settings (API-2026-05.md N6): the rules an admin can switch at run
//! time (costs, rewards, the participation gate, the Guild Master definition,
//! streak-freeze prices, per-IP limits), with the `seed` preset (API.md's
//! rules, the default) and the `guild_2026` preset (the May 2026 product).
//!
//! - **Store**: one row of `platform_settings` (`doc` jsonb, `revision`). A key
//!   missing from `doc` takes its seed value, so a release that adds a key
//!   needs no data migration.
//! - **Typed**: [`KEYS`] describes every key (its group, type and range); the
//!   merged document is validated against it and then decoded into
//!   [`Settings`], so code reads `settings.economy.reaction_cost`, never JSON.
//! - **Cache**: every process keeps the decoded document with its revision
//!   ([`SettingsCache`]). A write commits `revision + 1`, replaces the writer's
//!   copy at once and publishes `settings:changed` on Redis; [`watch`] reloads
//!   on that message and, as the fallback for a lost message, reads the
//!   revision (one primary-key read) once a second. A process without the
//!   watcher (a CLI command) checks the revision on use, at most once a
//!   second. Correctness never depends on Redis.
//! - **One snapshot per request**: [`current`] hands out an `Arc` of one
//!   decoded revision; a request that reads it once and passes it down is
//!   judged by one revision from start to end.

use crate::audit::{self, Actor};
use crate::redis::Redis;
use crate::{Error, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sqlx::PgConnection;
use sqlx::PgPool;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How often a process re-reads the revision when no message told it.
pub const RECHECK: Duration = Duration::from_secs(1);
/// The Redis channel (namespaced) a write publishes on.
pub const CHANNEL: &str = "settings:changed";

/// The groups a preset sets; `auth` is operational and left alone.
pub const PRESET_GROUPS: [&str; 5] = [
    "economy",
    "posting_rewards",
    "community",
    "guild_master",
    "streaks",
];

/// The tiers in rank order (rookie 0, advanced 1, performer 2).
pub const TIERS: [&str; 3] = ["rookie", "advanced", "performer"];

/// The rank of a tier name (unknown names rank as rookie).
pub fn tier_rank(tier: &str) -> u8 {
    match tier {
        "advanced" => 1,
        "performer" => 2,
        _ => 0,
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Economy {
    pub stage_post_cost: i64,
    pub lab_post_cost: i64,
    pub reaction_cost: i64,
    pub reaction_refund: i64,
    pub reaction_refund_cap: i64,
    pub reply_cost: i64,
    pub accepted_answer_reward: i64,
    pub starter_bonus: i64,
    pub daily_claim_base: [i64; 2],
    pub daily_claim_pro: [i64; 2],
    pub streak_bonus_base: i64,
    pub streak_bonus_pro: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostingRewards {
    pub stage: i64,
    pub lab: i64,
    pub lab_min_body_chars: i64,
    pub daily_cap: i64,
    pub cooldown_seconds: i64,
    pub clawback_window_hours: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Community {
    pub participation_min_tier: String,
    pub trialing_can_participate: bool,
    pub video_type_required: bool,
    pub anonymous_feed_preview: i64,
    pub question_slots_base: Option<i64>,
    pub question_slots_pro: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuildMaster {
    pub includes_trialing: bool,
    pub seat_cap: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Streaks {
    pub weekly_freebie: bool,
    pub freeze_cost: i64,
    pub freeze_inventory_cap: i64,
    pub repair_cost_per_day: i64,
    pub repair_window_hours: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auth {
    pub register_ip_per_hour: i64,
    pub register_ip_per_day: i64,
    pub waitlist_ip_per_hour: i64,
    pub send_verification_per_user: i64,
    pub send_verification_ip_per_hour: i64,
}

/// Every setting, decoded and validated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub economy: Economy,
    pub posting_rewards: PostingRewards,
    pub community: Community,
    pub guild_master: GuildMaster,
    pub streaks: Streaks,
    pub auth: Auth,
}

impl Default for Settings {
    /// The seed values (API.md's rules).
    fn default() -> Self {
        decode(&Value::Object(Map::new())).expect("the seed document is valid")
    }
}

impl Settings {
    /// The minimum tier's rank for community participation (N6.5).
    pub fn participation_min_rank(&self) -> u8 {
        tier_rank(&self.community.participation_min_tier)
    }
}

/// A key's type and range.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Int(i64, i64),
    IntOrNull(i64, i64),
    Bool,
    Enum(&'static [&'static str]),
    /// `[min, max]`, both in the range.
    Range(i64, i64),
}

/// One key: where it lives, what it takes, its seed and `guild_2026` values
/// (`None`: a preset does not set it).
pub struct Key {
    pub group: &'static str,
    pub name: &'static str,
    pub kind: Kind,
    pub seed: fn() -> Value,
    pub guild_2026: Option<fn() -> Value>,
}

macro_rules! keys {
    ($( $group:literal . $name:literal : $kind:expr, $seed:tt $(, $g26:tt)? ; )*) => {
        &[ $( Key {
            group: $group,
            name: $name,
            kind: $kind,
            seed: || json!($seed),
            guild_2026: keys!(@g26 $($g26)?),
        }, )* ]
    };
    (@g26) => { None };
    (@g26 $v:tt) => { Some(|| json!($v)) };
}

/// The catalogue (N6.2).
pub static KEYS: &[Key] = keys! {
    "economy"."stage_post_cost": Kind::Int(0, 1000), 15, 0;
    "economy"."lab_post_cost": Kind::Int(0, 1000), 5, 0;
    "economy"."reaction_cost": Kind::Int(0, 100), 1, 0;
    "economy"."reaction_refund": Kind::Int(0, 100), 1, 0;
    "economy"."reaction_refund_cap": Kind::Int(0, 100), 5, 5;
    "economy"."reply_cost": Kind::Int(0, 100), 2, 0;
    "economy"."accepted_answer_reward": Kind::Int(0, 1000), 10, 15;
    "economy"."starter_bonus": Kind::Int(0, 1000), 15, 20;
    "economy"."daily_claim_base": Kind::Range(0, 100), [1, 3], [2, 6];
    "economy"."daily_claim_pro": Kind::Range(0, 100), [4, 8], [8, 16];
    "economy"."streak_bonus_base": Kind::Int(0, 1000), 10, 20;
    "economy"."streak_bonus_pro": Kind::Int(0, 1000), 20, 40;
    "posting_rewards"."stage": Kind::Int(0, 1000), 0, 40;
    "posting_rewards"."lab": Kind::Int(0, 1000), 0, 12;
    "posting_rewards"."lab_min_body_chars": Kind::Int(1, 5000), 40, 40;
    "posting_rewards"."daily_cap": Kind::Int(0, 10000), 120, 120;
    "posting_rewards"."cooldown_seconds": Kind::Int(0, 86400), 60, 60;
    "posting_rewards"."clawback_window_hours": Kind::Int(0, 720), 72, 72;
    "community"."participation_min_tier": Kind::Enum(&TIERS), "rookie", "advanced";
    "community"."trialing_can_participate": Kind::Bool, true, true;
    "community"."video_type_required": Kind::Bool, false, true;
    "community"."anonymous_feed_preview": Kind::Int(0, 20), 3, 3;
    "community"."question_slots_base": Kind::IntOrNull(1, 1000), null, 10;
    "community"."question_slots_pro": Kind::IntOrNull(1, 1000), null, 50;
    "guild_master"."includes_trialing": Kind::Bool, false, false;
    "guild_master"."seat_cap": Kind::IntOrNull(0, 100000), null, 30;
    "streaks"."weekly_freebie": Kind::Bool, false, true;
    "streaks"."freeze_cost": Kind::Int(1, 1000), 10, 10;
    "streaks"."freeze_inventory_cap": Kind::Int(0, 100), 5, 5;
    "streaks"."repair_cost_per_day": Kind::Int(1, 1000), 10, 10;
    "streaks"."repair_window_hours": Kind::Int(1, 168), 48, 48;
    "auth"."register_ip_per_hour": Kind::Int(0, 100000), 0;
    "auth"."register_ip_per_day": Kind::Int(0, 100000), 0;
    "auth"."waitlist_ip_per_hour": Kind::Int(0, 100000), 0;
    "auth"."send_verification_per_user": Kind::Int(1, 100000), 3;
    "auth"."send_verification_ip_per_hour": Kind::Int(1, 100000), 10;
};

const GROUPS: [&str; 6] = [
    "economy",
    "posting_rewards",
    "community",
    "guild_master",
    "streaks",
    "auth",
];

/// The preset names.
pub const PRESETS: [&str; 2] = ["seed", "guild_2026"];

fn key(group: &str, name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.group == group && k.name == name)
}

/// A preset's five groups as a document (`{group: {key: value}}`).
pub fn preset_doc(preset: &str) -> Option<Value> {
    if !PRESETS.contains(&preset) {
        return None;
    }
    let mut doc = Map::new();
    for g in PRESET_GROUPS {
        doc.insert(g.to_string(), Value::Object(Map::new()));
    }
    for k in KEYS.iter().filter(|k| PRESET_GROUPS.contains(&k.group)) {
        let v = if preset == "seed" {
            (k.seed)()
        } else {
            (k.guild_2026.unwrap_or(k.seed))()
        };
        doc[k.group]
            .as_object_mut()
            .expect("group")
            .insert(k.name.to_string(), v);
    }
    Some(Value::Object(doc))
}

/// The document with every key: `stored`'s values over the seed's.
fn merged(stored: &Value) -> Value {
    let mut doc = Map::new();
    for g in GROUPS {
        doc.insert(g.to_string(), Value::Object(Map::new()));
    }
    for k in KEYS {
        let v = stored
            .get(k.group)
            .and_then(|g| g.get(k.name))
            .cloned()
            .unwrap_or_else(k.seed);
        doc[k.group]
            .as_object_mut()
            .expect("group")
            .insert(k.name.to_string(), v);
    }
    Value::Object(doc)
}

fn type_error(loc: &[&str], kind: Kind, input: &Value) -> Value {
    let (t, msg) = match kind {
        Kind::Int(..) | Kind::IntOrNull(..) => {
            ("int_type", "Input should be a valid integer".to_string())
        }
        Kind::Bool => ("bool_type", "Input should be a valid boolean".to_string()),
        Kind::Enum(values) => (
            "enum",
            format!(
                "Input should be {}",
                values
                    .iter()
                    .map(|v| format!("'{v}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
                    .rsplit_once(", ")
                    .map(|(a, b)| format!("{a} or {b}"))
                    .unwrap_or_default()
            ),
        ),
        Kind::Range(..) => ("list_type", "Input should be a valid list".to_string()),
    };
    json!({"type": t, "loc": loc, "msg": msg, "input": input})
}

fn range_error(loc: &[&str], lo: i64, hi: i64, input: &Value) -> Value {
    let n = input.as_i64().unwrap_or(0);
    if n < lo {
        json!({"type": "greater_than_equal", "loc": loc,
               "msg": format!("Input should be greater than or equal to {lo}"),
               "input": input, "ctx": {"ge": lo}})
    } else {
        json!({"type": "less_than_equal", "loc": loc,
               "msg": format!("Input should be less than or equal to {hi}"),
               "input": input, "ctx": {"le": hi}})
    }
}

/// An integer value (JSON integers only; `1.0` and `"1"` are refused).
fn int_of(v: &Value) -> Option<i64> {
    if v.is_i64() || v.is_u64() {
        v.as_i64()
    } else {
        None
    }
}

/// The errors of one key's value (FastAPI items, `loc` from `["body", ...]`).
fn check_value(k: &Key, v: &Value, errors: &mut Vec<Value>) {
    let loc = ["body", k.group, k.name];
    match k.kind {
        Kind::Int(lo, hi) | Kind::IntOrNull(lo, hi) => {
            if v.is_null() && matches!(k.kind, Kind::IntOrNull(..)) {
                return;
            }
            match int_of(v) {
                None => errors.push(type_error(&loc, k.kind, v)),
                Some(n) if n < lo || n > hi => errors.push(range_error(&loc, lo, hi, v)),
                Some(_) => {}
            }
        }
        Kind::Bool => {
            if !v.is_boolean() {
                errors.push(type_error(&loc, k.kind, v));
            }
        }
        Kind::Enum(values) => {
            if !v.as_str().is_some_and(|s| values.contains(&s)) {
                errors.push(type_error(&loc, k.kind, v));
            }
        }
        Kind::Range(lo, hi) => {
            let Some(items) = v.as_array().filter(|a| a.len() == 2) else {
                errors.push(json!({"type": "list_type", "loc": loc,
                    "msg": "Input should be a list of two integers [min, max]", "input": v}));
                return;
            };
            for (i, item) in items.iter().enumerate() {
                let idx = i.to_string();
                let loc = ["body", k.group, k.name, idx.as_str()];
                match int_of(item) {
                    None => errors.push(type_error(&loc, Kind::Int(lo, hi), item)),
                    Some(n) if n < lo || n > hi => errors.push(range_error(&loc, lo, hi, item)),
                    Some(_) => {}
                }
            }
        }
    }
}

/// Rules across keys, on the merged document.
fn cross_checks(s: &Settings) -> Vec<Value> {
    let mut errors = vec![];
    let e = &s.economy;
    if e.reaction_refund > e.reaction_cost {
        errors.push(json!({"type": "value_error", "loc": ["body"],
            "msg": "Value error, reaction_refund cannot exceed reaction_cost", "input": null}));
    }
    if e.daily_claim_base[0] > e.daily_claim_base[1] || e.daily_claim_pro[0] > e.daily_claim_pro[1]
    {
        errors.push(json!({"type": "value_error", "loc": ["body"],
            "msg": "Value error, daily claim minimum cannot exceed maximum", "input": null}));
    }
    errors
}

/// Decodes a stored document (missing keys take their seed values). A stored
/// value that no longer validates (a range narrowed by a release) falls back
/// to its seed value rather than failing every request.
fn decode(stored: &Value) -> Result<Settings, Vec<Value>> {
    let mut doc = merged(stored);
    for k in KEYS {
        let mut errors = vec![];
        check_value(k, &doc[k.group][k.name], &mut errors);
        if !errors.is_empty() {
            doc[k.group][k.name] = (k.seed)();
        }
    }
    let s: Settings = serde_json::from_value(doc).map_err(|e| {
        vec![json!({"type": "value_error", "loc": ["body"], "msg": e.to_string(), "input": null})]
    })?;
    Ok(s)
}

/// Validates a PUT body: only known groups and keys, each valid. Read-only
/// keys (`preset`, `revision`, `updated_at`, `updated_by`) are ignored.
/// Returns the changes as `{group: {key: value}}`.
pub fn parse_changes(body: &Value) -> Result<Map<String, Value>> {
    let Some(obj) = body.as_object() else {
        return Err(Error::with_object(
            422,
            json!([{"type": "model_attributes_type", "loc": ["body"],
                    "msg": "Input should be a valid dictionary or object to extract fields from",
                    "input": body}]),
        ));
    };
    let mut errors = vec![];
    let mut changes = Map::new();
    for (group, keys) in obj {
        if ["preset", "revision", "updated_at", "updated_by"].contains(&group.as_str()) {
            continue;
        }
        if !GROUPS.contains(&group.as_str()) {
            errors.push(json!({"type": "extra_forbidden", "loc": ["body", group],
                "msg": "Extra inputs are not permitted", "input": keys}));
            continue;
        }
        let Some(keys) = keys.as_object() else {
            errors.push(json!({"type": "model_type", "loc": ["body", group],
                "msg": "Input should be a valid dictionary or object to extract fields from",
                "input": keys}));
            continue;
        };
        let mut group_changes = Map::new();
        for (name, v) in keys {
            let Some(k) = key(group, name) else {
                errors.push(
                    json!({"type": "extra_forbidden", "loc": ["body", group, name],
                    "msg": "Extra inputs are not permitted", "input": v}),
                );
                continue;
            };
            check_value(k, v, &mut errors);
            group_changes.insert(name.clone(), v.clone());
        }
        changes.insert(group.clone(), Value::Object(group_changes));
    }
    if !errors.is_empty() {
        return Err(Error::with_object(422, Value::Array(errors)));
    }
    Ok(changes)
}

/// One decoded revision of the settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub revision: i64,
    pub updated_at: Option<DateTime<Utc>>,
    pub updated_by: Option<Uuid>,
    pub settings: Settings,
}

impl Snapshot {
    fn seed() -> Self {
        Self {
            revision: 0,
            updated_at: None,
            updated_by: None,
            settings: Settings::default(),
        }
    }

    /// The preset whose values the five preset groups equal now, if any.
    pub fn preset(&self) -> Option<&'static str> {
        let doc = serde_json::to_value(&self.settings).ok()?;
        PRESETS.into_iter().find(|p| {
            let Some(pd) = preset_doc(p) else {
                return false;
            };
            PRESET_GROUPS.iter().all(|g| pd[*g] == doc[*g])
        })
    }

    /// The Settings body of the admin routes.
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::to_value(&self.settings).unwrap_or_default();
        let o = v.as_object_mut().expect("settings object");
        o.insert("preset".into(), json!(self.preset()));
        o.insert("revision".into(), json!(self.revision));
        o.insert(
            "updated_at".into(),
            json!(self.updated_at.map(crate::clock::iso)),
        );
        o.insert("updated_by".into(), json!(self.updated_by));
        v
    }
}

/// The process's copy of the settings.
pub struct SettingsCache {
    current: RwLock<Option<Arc<Snapshot>>>,
    /// When the revision was last compared with the database.
    checked: Mutex<Option<Instant>>,
    /// Whether [`watch`] keeps this cache fresh (then use never reads).
    watched: AtomicBool,
}

impl Default for SettingsCache {
    fn default() -> Self {
        Self {
            current: RwLock::new(None),
            checked: Mutex::new(None),
            watched: AtomicBool::new(false),
        }
    }
}

impl SettingsCache {
    fn get(&self) -> Option<Arc<Snapshot>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stores `snap` unless a newer revision is already held.
    fn put(&self, snap: Arc<Snapshot>) {
        let mut cur = self.current.write().unwrap_or_else(|e| e.into_inner());
        if cur.as_ref().is_none_or(|c| c.revision <= snap.revision) {
            *cur = Some(snap);
        }
        *self.checked.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// Whether [`watch`] has loaded this copy and keeps it fresh.
    pub fn is_watched(&self) -> bool {
        self.watched.load(Ordering::Acquire) && self.get().is_some()
    }

    /// True when the copy should be compared with the database now.
    fn due(&self) -> bool {
        let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
        match *checked {
            Some(at) if at.elapsed() < RECHECK => false,
            _ => {
                *checked = Some(Instant::now());
                true
            }
        }
    }
}

/// What the store reads and writes through: the database, Redis (the change
/// message) and the process's copy. `Context::settings_store` builds it;
/// the settings module knows nothing of the context (no import cycle).
#[derive(Clone, Copy)]
pub struct Store<'a> {
    pub db: &'a PgPool,
    pub redis: &'a Redis,
    pub cache: &'a SettingsCache,
}

async fn load(conn: &mut PgConnection) -> Result<Snapshot> {
    type Row = (Value, i64, Option<DateTime<Utc>>, Option<Uuid>);
    let row: Option<Row> = sqlx::query_as(
        "SELECT doc, revision, updated_at, updated_by FROM platform_settings WHERE id = 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        None => Snapshot::seed(),
        Some((doc, revision, updated_at, updated_by)) => Snapshot {
            revision,
            updated_at,
            updated_by,
            settings: decode(&doc).map_err(|e| Error::internal(format!("settings: {e:?}")))?,
        },
    })
}

async fn revision(st: &Store<'_>) -> Result<i64> {
    let r: Option<i64> = sqlx::query_scalar("SELECT revision FROM platform_settings WHERE id = 1")
        .fetch_optional(st.db)
        .await?;
    Ok(r.unwrap_or(0))
}

/// Re-reads the settings when the database holds a newer revision.
async fn refresh(st: &Store<'_>) -> Result<Arc<Snapshot>> {
    let held = st.cache.get();
    if let Some(h) = &held
        && revision(st).await? == h.revision
    {
        return Ok(h.clone());
    }
    let mut conn = st.db.acquire().await?;
    let snap = Arc::new(load(&mut conn).await?);
    st.cache.put(snap.clone());
    Ok(st.cache.get().unwrap_or(snap))
}

/// The settings in force: one snapshot, to be read once per request and
/// passed down.
/// (`Context::settings_now` is the short way to call it.)
pub async fn current(st: &Store<'_>) -> Result<Arc<Snapshot>> {
    match st.cache.get() {
        Some(s) if st.cache.watched.load(Ordering::Acquire) || !st.cache.due() => Ok(s),
        _ => refresh(st).await,
    }
}

/// Keeps this process's copy fresh until the process ends: reloads when a
/// `settings:changed` message arrives and, whatever Redis does, compares the
/// revision once a second.
pub async fn watch(db: PgPool, redis: Redis, redis_url: String, cache: Arc<SettingsCache>) {
    let st = Store {
        db: &db,
        redis: &redis,
        cache: &cache,
    };
    let _ = refresh(&st).await;
    cache.watched.store(true, Ordering::Release);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(8);
    let reload = async {
        let mut tick = tokio::time::interval(RECHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                Some(()) = rx.recv() => {}
            }
            if let Err(e) = refresh(&st).await {
                tracing::warn!(error = %e, "settings: reload failed");
            }
        }
    };
    // Both run until this future is dropped (the process stops).
    tokio::select! {
        _ = subscribe(&redis_url, redis.key(CHANNEL), tx) => {}
        _ = reload => {}
    }
}

/// Subscribes to the change channel and wakes [`watch`] on each message,
/// reconnecting with backoff.
async fn subscribe(redis_url: &str, channel: String, tx: tokio::sync::mpsc::Sender<()>) {
    use futures::StreamExt;
    let Ok(client) = redis::Client::open(redis_url) else {
        return;
    };
    let mut backoff = Duration::from_millis(200);
    loop {
        let connect = async {
            let mut ps = client.get_async_pubsub().await?;
            ps.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(ps)
        };
        if let Ok(Ok(mut ps)) = tokio::time::timeout(Duration::from_secs(3), connect).await {
            backoff = Duration::from_millis(200);
            // Whatever changed while unsubscribed is read now.
            let _ = tx.try_send(());
            let mut stream = ps.on_message();
            while stream.next().await.is_some() {
                let _ = tx.try_send(());
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

async fn publish(st: &Store<'_>) {
    let mut c = st.redis.conn();
    let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
        .arg(st.redis.key(CHANNEL))
        .arg("1")
        .query_async(&mut c)
        .await;
    if let Err(e) = sent {
        tracing::warn!(error = %e, "settings: publishing the change failed (peers re-read within 1 s)");
    }
}

/// The changed keys between two decoded settings, as `{group: {key: value}}`.
fn diff(before: &Settings, after: &Settings) -> (Value, Value) {
    let b = serde_json::to_value(before).unwrap_or_default();
    let a = serde_json::to_value(after).unwrap_or_default();
    let mut bm = Map::new();
    let mut am = Map::new();
    for k in KEYS {
        let (bv, av) = (&b[k.group][k.name], &a[k.group][k.name]);
        if bv != av {
            bm.entry(k.group)
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("group")
                .insert(k.name.into(), bv.clone());
            am.entry(k.group)
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("group")
                .insert(k.name.into(), av.clone());
        }
    }
    (Value::Object(bm), Value::Object(am))
}

/// Merges `changes` into the stored document under the row's lock, validates
/// the result, writes `revision + 1` and the audit row in one transaction. A
/// change that changes nothing writes nothing.
async fn write(
    st: &Store<'_>,
    actor: &Actor,
    changes: Map<String, Value>,
    action: &'static str,
    preset: Option<&str>,
) -> Result<Arc<Snapshot>> {
    let mut tx = st.db.begin().await?;
    sqlx::query(
        "INSERT INTO platform_settings (id, doc, revision) VALUES (1, '{}', 0)
         ON CONFLICT (id) DO NOTHING",
    )
    .execute(&mut *tx)
    .await?;
    let (stored, revision): (Value, i64) =
        sqlx::query_as("SELECT doc, revision FROM platform_settings WHERE id = 1 FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
    let before = decode(&stored).map_err(|e| Error::internal(format!("settings: {e:?}")))?;
    let mut doc = merged(&stored);
    for (group, keys) in &changes {
        if let Some(keys) = keys.as_object() {
            for (name, v) in keys {
                doc[group.as_str()][name.as_str()] = v.clone();
            }
        }
    }
    let after = decode(&doc).map_err(|e| Error::with_object(422, Value::Array(e)))?;
    let cross = cross_checks(&after);
    if !cross.is_empty() {
        return Err(Error::with_object(422, Value::Array(cross)));
    }
    if before == after {
        tx.rollback().await?;
        return current(st).await;
    }
    let (b, a) = diff(&before, &after);
    let stored_doc = serde_json::to_value(&after).unwrap_or_default();
    let new_revision = revision + 1;
    sqlx::query(
        "UPDATE platform_settings SET doc = $1, revision = $2, updated_at = $3, updated_by = $4
         WHERE id = 1",
    )
    .bind(&stored_doc)
    .bind(new_revision)
    .bind(actor.at)
    .bind(actor.id)
    .execute(&mut *tx)
    .await?;
    let after_json = match preset {
        Some(p) => json!({"preset": p, "changed": a}),
        None => a,
    };
    audit::record(
        &mut tx,
        actor
            .entry_untargeted(action, audit::target::SETTINGS)
            .before(b)
            .after(after_json),
    )
    .await?;
    tx.commit().await?;
    let snap = Arc::new(Snapshot {
        revision: new_revision,
        updated_at: Some(actor.at),
        updated_by: Some(actor.id),
        settings: after,
    });
    st.cache.put(snap.clone());
    publish(st).await;
    Ok(snap)
}

/// `PUT /api/admin/settings`: any subset of groups and keys.
pub async fn update(st: &Store<'_>, actor: &Actor, body: &Value) -> Result<Arc<Snapshot>> {
    let changes = parse_changes(body)?;
    write(st, actor, changes, audit::action::SETTINGS_UPDATE, None).await
}

/// `POST /api/admin/settings/preset`: every key of the five preset groups.
pub async fn apply_preset(st: &Store<'_>, actor: &Actor, preset: &str) -> Result<Arc<Snapshot>> {
    let Some(doc) = preset_doc(preset) else {
        return Err(Error::with_object(
            422,
            json!([{"type": "literal_error", "loc": ["body", "preset"],
                    "msg": "Input should be 'seed' or 'guild_2026'", "input": preset,
                    "ctx": {"expected": "'seed' or 'guild_2026'"}}]),
        ));
    };
    let changes = doc.as_object().cloned().unwrap_or_default();
    write(
        st,
        actor,
        changes,
        audit::action::SETTINGS_PRESET,
        Some(preset),
    )
    .await
}

/// `GET /api/admin/settings/presets`.
pub fn presets() -> Value {
    json!({
        "seed": preset_doc("seed"),
        "guild_2026": preset_doc("guild_2026"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_is_api_md() {
        let s = Settings::default();
        assert_eq!(s.economy.stage_post_cost, 15);
        assert_eq!(s.economy.daily_claim_pro, [4, 8]);
        assert_eq!(s.community.participation_min_tier, "rookie");
        assert_eq!(s.community.question_slots_base, None);
        assert_eq!(s.auth.send_verification_per_user, 3);
        let snap = Snapshot::seed();
        assert_eq!(snap.preset(), Some("seed"));
    }

    #[test]
    fn the_guild_2026_preset_decodes_and_is_recognised() {
        let doc = preset_doc("guild_2026").unwrap();
        let s = decode(&doc).unwrap();
        assert_eq!(s.economy.accepted_answer_reward, 15);
        assert_eq!(s.posting_rewards.stage, 40);
        assert_eq!(s.guild_master.seat_cap, Some(30));
        assert_eq!(s.auth.send_verification_ip_per_hour, 10, "auth untouched");
        let snap = Snapshot {
            settings: s,
            ..Snapshot::seed()
        };
        assert_eq!(snap.preset(), Some("guild_2026"));
        let mut custom = snap.clone();
        custom.settings.economy.reply_cost = 7;
        assert_eq!(custom.preset(), None);
    }

    #[test]
    fn changes_are_validated_with_their_location() {
        let e = parse_changes(&json!({"economy": {"reaction_cost": 101}})).unwrap_err();
        let Error::Http { status, detail, .. } = e else {
            panic!()
        };
        assert_eq!(status, 422);
        assert_eq!(
            detail[0]["loc"],
            json!(["body", "economy", "reaction_cost"])
        );
        for bad in [
            json!({"nope": {}}),
            json!({"economy": {"nope": 1}}),
            json!({"economy": {"reply_cost": "2"}}),
            json!({"economy": {"reply_cost": 2.5}}),
            json!({"community": {"participation_min_tier": "gold"}}),
            json!({"economy": {"daily_claim_base": [1]}}),
            json!({"guild_master": {"includes_trialing": 1}}),
            json!({"economy": {"daily_claim_base": [1, 101]}}),
        ] {
            assert!(parse_changes(&bad).is_err(), "{bad}");
        }
        let ok = parse_changes(&json!({"preset": "x", "revision": 3,
            "community": {"question_slots_base": null}}))
        .unwrap();
        assert_eq!(ok.len(), 1);
    }

    #[test]
    fn cross_key_rules() {
        let mut s = Settings::default();
        s.economy.reaction_refund = 2;
        assert_eq!(cross_checks(&s).len(), 1);
        s.economy.reaction_refund = 1;
        s.economy.daily_claim_base = [5, 3];
        assert_eq!(
            cross_checks(&s)[0]["msg"],
            "Value error, daily claim minimum cannot exceed maximum"
        );
    }
}
