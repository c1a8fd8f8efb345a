//! The Profile shape of API.md §3.0, used by `/api/auth/me`, `/api/users/me`
//! and `/api/users/public/{username}`. Built in one query whatever the user
//! has (the profile with role, tier, stats and the earned badge rows), over
//! the badge definitions each process caches (`badges::DEFINITIONS_TTL`).
//! The caller's own profile carries every badge definition with its earned
//! state (the frontend's trophy case shows locked badges from the same list);
//! a public profile carries only the earned ones.

use crate::badges::{self, BadgeItem};
use crate::{Error, Result};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Stats {
    pub reactions_given: i64,
    pub reactions_received: i64,
    pub solutions_accepted: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    /// users.id (D30).
    pub id: Uuid,
    pub first_name: String,
    pub last_name: String,
    pub username: Option<String>,
    pub xp: i64,
    pub level: i64,
    pub streak_count: i64,
    /// `subscription.tier`, or `rookie` without a subscription row.
    pub tier: String,
    pub role: String,
    pub avatar_url: Option<String>,
    pub current_level_tag: Option<String>,
    pub reputation: i64,
    pub current_claves: i64,
    /// Whether the account's email is verified (N3).
    pub is_verified: bool,
    /// `https://instagram.com/<handle>` (N5.2).
    pub instagram_url: Option<String>,
    /// The subscription row's status; `None` without a row and for the
    /// untouched row registration creates (`incomplete` without a Stripe id).
    /// `None` on a public profile.
    pub subscription_status: Option<String>,
    /// `false` on a public profile.
    pub subscription_cancel_at_period_end: bool,
    /// `None` on a public profile.
    pub subscription_period_end: Option<chrono::DateTime<chrono::Utc>>,
    /// The tier a scheduled downgrade moves to (N2); `None` on a public profile.
    pub subscription_scheduled_tier: Option<String>,
    /// A trial was ever started for this user's normalised email (N2);
    /// `false` on a public profile.
    pub has_used_trial: bool,
    /// The equipped cosmetics (N7), shown to everyone.
    pub equipped_border_sku: Option<String>,
    pub equipped_title_sku: Option<String>,
    /// The IANA time zone (N10); `None` on a public profile.
    pub timezone: Option<String>,
    /// Own profile: every badge definition with the user's state, in the
    /// order of `GET /api/badges/`. Public profile: only the earned ones.
    pub badges: Vec<BadgeItem>,
    pub stats: Stats,
}

#[derive(sqlx::FromRow)]
struct Row {
    user_id: Uuid,
    first_name: String,
    last_name: String,
    username: Option<String>,
    xp: i32,
    level: i32,
    streak_count: i32,
    tier: String,
    role: String,
    avatar_url: Option<String>,
    current_level_tag: Option<String>,
    reputation: i32,
    current_claves: i32,
    is_verified: bool,
    instagram_url: Option<String>,
    subscription_status: Option<String>,
    subscription_cancel_at_period_end: bool,
    subscription_period_end: Option<chrono::DateTime<chrono::Utc>>,
    subscription_scheduled_tier: Option<String>,
    has_used_trial: bool,
    equipped_border_sku: Option<String>,
    equipped_title_sku: Option<String>,
    timezone: String,
    reactions_given: i32,
    reactions_received: i32,
    solutions_accepted: i32,
    badge_ids: Option<Vec<String>>,
    badge_earned_at: Option<Vec<chrono::DateTime<chrono::Utc>>>,
    badge_orders: Option<Vec<i32>>,
}

const SELECT: &str = "SELECT u.id AS user_id, p.first_name, p.last_name, p.username, p.xp, p.level,
        p.streak_count, COALESCE(s.tier, 'rookie') AS tier, u.role, p.avatar_url,
        p.current_level_tag, p.reputation, p.current_claves, u.is_verified,
        p.instagram_url, p.equipped_border_sku, p.equipped_title_sku, p.timezone,
        CASE WHEN s.status = 'incomplete' AND s.stripe_subscription_id IS NULL THEN NULL
             ELSE s.status END AS subscription_status,
        COALESCE(s.cancel_at_period_end, false) AS subscription_cancel_at_period_end,
        s.current_period_end AS subscription_period_end,
        s.scheduled_tier AS subscription_scheduled_tier,
        (EXISTS (SELECT 1 FROM trial_claims tc
                 WHERE tc.normalized_email = trial_email_key(u.email))
         OR EXISTS (SELECT 1 FROM trial_claims tc WHERE tc.user_id = u.id)) AS has_used_trial,
        COALESCE(st.reactions_given_count, 0) AS reactions_given,
        COALESCE(st.reactions_received_count, 0) AS reactions_received,
        COALESCE(st.solutions_accepted_count, 0) AS solutions_accepted,
        ub.ids AS badge_ids, ub.ats AS badge_earned_at, ub.ords AS badge_orders
     FROM user_profiles p
     JOIN users u ON u.id = p.user_id
     LEFT JOIN subscriptions s ON s.user_id = p.user_id
     LEFT JOIN user_stats st ON st.user_id = p.user_id
     LEFT JOIN LATERAL (
         SELECT array_agg(b.badge_id::text) AS ids, array_agg(b.earned_at) AS ats,
                array_agg(b.display_order) AS ords
         FROM user_badges b WHERE b.user_id = p.user_id
     ) ub ON true";

/// Which badges a profile carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BadgeSet {
    /// Every definition with the user's earned state (the user's own profile).
    Catalogue,
    /// Only the earned badges (someone else's public profile).
    Earned,
}

async fn build(db: &PgPool, row: Option<Row>, set: BadgeSet) -> Result<Option<Profile>> {
    let Some(r) = row else {
        return Ok(None);
    };
    // The user's earned rows came with the profile row; the definitions are
    // cached per process: one query for the whole profile.
    let earned: Vec<badges::Earned> = r
        .badge_ids
        .unwrap_or_default()
        .into_iter()
        .zip(r.badge_earned_at.unwrap_or_default())
        .zip(r.badge_orders.unwrap_or_default())
        .map(|((id, at), order)| (id, at, order))
        .collect();
    let mut badges = badges::list_with_earned(db, &earned).await?;
    if set == BadgeSet::Earned {
        badges.retain(|b| b.is_earned);
    }
    Ok(Some(Profile {
        id: r.user_id,
        first_name: r.first_name,
        last_name: r.last_name,
        username: r.username,
        xp: r.xp as i64,
        level: r.level as i64,
        streak_count: r.streak_count as i64,
        tier: r.tier,
        role: r.role,
        avatar_url: r.avatar_url,
        current_level_tag: r.current_level_tag,
        reputation: r.reputation as i64,
        current_claves: r.current_claves as i64,
        is_verified: r.is_verified,
        instagram_url: r.instagram_url,
        subscription_status: r.subscription_status,
        subscription_cancel_at_period_end: r.subscription_cancel_at_period_end,
        subscription_period_end: r.subscription_period_end,
        subscription_scheduled_tier: r.subscription_scheduled_tier,
        has_used_trial: r.has_used_trial,
        equipped_border_sku: r.equipped_border_sku,
        equipped_title_sku: r.equipped_title_sku,
        timezone: Some(r.timezone),
        badges,
        stats: Stats {
            reactions_given: r.reactions_given as i64,
            reactions_received: r.reactions_received as i64,
            solutions_accepted: r.solutions_accepted as i64,
        },
    }))
}

/// The profile of `users.id`, or `None` when the user has no profile.
pub async fn by_user_id(db: &PgPool, user_id: Uuid) -> Result<Option<Profile>> {
    let row = sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE p.user_id = $1"
    )))
    .bind(user_id)
    .fetch_optional(db)
    .await?;
    build(db, row, BadgeSet::Catalogue).await
}

/// The profile whose username matches case-insensitively (D31).
pub async fn by_username(db: &PgPool, username: &str) -> Result<Option<Profile>> {
    let row = sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE lower(p.username) = lower($1)"
    )))
    .bind(username.trim())
    .fetch_optional(db)
    .await?;
    build(db, row, BadgeSet::Earned).await
}

impl Profile {
    /// What anyone may read (N5.2): no subscription state, no trial history,
    /// no time zone; the Instagram link and the cosmetics stay.
    fn redact_private(&mut self) {
        self.subscription_status = None;
        self.subscription_cancel_at_period_end = false;
        self.subscription_period_end = None;
        self.subscription_scheduled_tier = None;
        self.has_used_trial = false;
        self.timezone = None;
    }
}

/// A public profile: someone else's balance is not shown (D31); nobody's
/// subscription, trial or time zone is (N5.2).
pub async fn public(db: &PgPool, username: &str, viewer: Option<Uuid>) -> Result<Profile> {
    let mut p = by_username(db, username)
        .await?
        .ok_or_else(|| Error::not_found("User not found"))?;
    if viewer != Some(p.id) {
        p.current_claves = 0;
    }
    p.redact_private();
    Ok(p)
}

/// One person found by `GET /api/users/search` (N4.3).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, sqlx::FromRow)]
pub struct PersonHit {
    /// users.id
    pub id: Uuid,
    pub username: String,
    pub first_name: String,
    pub last_name: String,
    pub avatar_url: Option<String>,
    pub level: i32,
}

pub const SEARCH_MIN_CHARS: usize = 2;
pub const SEARCH_MAX_CHARS: usize = 50;
pub const SEARCH_LIMIT: i64 = 10;

/// Checks the search's `q` (422 in FastAPI's shape): 2–50 characters.
pub fn validate_search(q: Option<&str>) -> Result<&str> {
    let loc = ["query", "q"];
    let Some(q) = q else {
        return Err(Error::validation(
            &loc,
            "Field required",
            "missing",
            serde_json::Value::Null,
        ));
    };
    let n = q.chars().count();
    if n < SEARCH_MIN_CHARS {
        return Err(Error::with_object(
            422,
            serde_json::json!([{ "type": "string_too_short", "loc": loc,
                "msg": format!("String should have at least {SEARCH_MIN_CHARS} characters"),
                "input": q, "ctx": { "min_length": SEARCH_MIN_CHARS } }]),
        ));
    }
    if n > SEARCH_MAX_CHARS {
        return Err(Error::with_object(
            422,
            serde_json::json!([{ "type": "string_too_long", "loc": loc,
                "msg": format!("String should have at most {SEARCH_MAX_CHARS} characters"),
                "input": q, "ctx": { "max_length": SEARCH_MAX_CHARS } }]),
        ));
    }
    Ok(q)
}

/// The people search: `$1` the prefix, `$2` the limit.
pub const SEARCH_SQL: &str =
    "SELECT p.user_id AS id, p.username, p.first_name, p.last_name, p.avatar_url, p.level
     FROM user_profiles p
     WHERE lower(p.username) ~>=~ lower($1)
       AND lower(p.username) ~<~ (lower($1) || chr(1114111))
       AND starts_with(lower(p.username), lower($1))
     ORDER BY lower(p.username) USING ~<~
     LIMIT $2";

/// People whose username starts with `q`, case-insensitively, at most 10, by
/// username. `q` is a literal prefix (`%`, `_` and `\` match themselves): the
/// query is a byte range over `lower(username)` (the `text_pattern_ops` index
/// serves it, whatever the plan) checked with `starts_with`.
pub async fn search(db: &PgPool, q: &str) -> Result<Vec<PersonHit>> {
    let q = validate_search(Some(q))?;
    Ok(sqlx::query_as::<_, PersonHit>(SEARCH_SQL)
        .bind(q)
        .bind(SEARCH_LIMIT)
        .fetch_all(db)
        .await?)
}

/// One row of `GET /api/users/leaderboard`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LeaderboardEntry {
    pub user_id: Uuid,
    pub name: String,
    pub avatar_url: Option<String>,
    pub xp_total: i64,
    pub rank: i64,
}

/// user_id, username, first_name, last_name, avatar_url, xp.
type LeaderRow = (Uuid, Option<String>, String, String, Option<String>, i32);

/// The top 10 profiles by XP.
pub async fn leaderboard(db: &PgPool) -> Result<Vec<LeaderboardEntry>> {
    let rows: Vec<LeaderRow> = sqlx::query_as(
        "SELECT p.user_id, p.username, p.first_name, p.last_name, p.avatar_url, p.xp
         FROM user_profiles p
         ORDER BY p.xp DESC, p.created_at ASC, p.user_id ASC
         LIMIT 10",
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .enumerate()
        .map(|(i, (user_id, username, first, last, avatar_url, xp))| {
            let name = match username.filter(|u| !u.is_empty()) {
                Some(u) => format!("@{u}"),
                None => format!("{first} {last}").trim().to_string(),
            };
            LeaderboardEntry {
                user_id,
                name,
                avatar_url,
                xp_total: xp as i64,
                rank: i as i64 + 1,
            }
        })
        .collect())
}

/// Sets `display_order = position + 1` for each listed badge the user owns.
/// Unknown or unowned ids are ignored; a repeated id keeps its last position.
pub async fn reorder_badges(db: &PgPool, user_id: Uuid, badge_ids: &[String]) -> Result<()> {
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut ids: Vec<String> = Vec::new();
    let mut orders: Vec<i32> = Vec::new();
    for (i, id) in badge_ids.iter().enumerate() {
        let order = i32::try_from(i + 1).unwrap_or(i32::MAX);
        match index.get(id.as_str()) {
            Some(&pos) => orders[pos] = order,
            None => {
                index.insert(id.as_str(), ids.len());
                ids.push(id.clone());
                orders.push(order);
            }
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE user_badges ub SET display_order = t.ord
         FROM unnest($2::text[], $3::int[]) AS t(badge_id, ord)
         WHERE ub.user_id = $1 AND ub.badge_id = t.badge_id",
    )
    .bind(user_id)
    .bind(&ids)
    .bind(&orders)
    .execute(db)
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// PATCH /api/users/me
// ---------------------------------------------------------------------------

/// Hosts allowed for avatars, matched exactly or as a dot-suffix (D33).
const AVATAR_HOST_SUFFIXES: &[&str] = &[
    "r2.dev",
    "cloudflare.com",
    "cloudflarestorage.com",
    "googleusercontent.com",
    "gravatar.com",
];
const AVATAR_HOST_EXACT: &[&str] = &["localhost", "127.0.0.1"];
const AVATAR_MAX_LEN: usize = 2048;

fn host_matches(host: &str, domain: &str) -> bool {
    let domain = domain.trim_start_matches('.').to_ascii_lowercase();
    !domain.is_empty() && (host == domain || host.ends_with(&format!(".{domain}")))
}

/// The host part of the configured R2 public domain (`R2_PUBLIC_DOMAIN` may
/// be a bare host or a URL).
fn r2_public_host(config: &crate::Config) -> Option<String> {
    let d = config.r2.as_ref()?.public_domain.as_deref()?.trim();
    if d.is_empty() {
        return None;
    }
    let with_scheme = if d.contains("://") {
        d.to_string()
    } else {
        format!("https://{d}")
    };
    url::Url::parse(&with_scheme)
        .ok()?
        .host_str()
        .map(|h| h.to_ascii_lowercase())
}

/// The avatar rules of §3.4: `Ok(())` or the contract's message.
pub fn check_avatar_url(config: &crate::Config, v: &str) -> std::result::Result<(), &'static str> {
    if v.is_empty() {
        return Ok(());
    }
    let Ok(u) = url::Url::parse(v) else {
        return Err("Avatar URL must use HTTPS");
    };
    let host = u.host_str().unwrap_or("").to_ascii_lowercase();
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let local = AVATAR_HOST_EXACT.contains(&host.as_str());
    match u.scheme() {
        "https" => {}
        "http" if local => {}
        _ => return Err("Avatar URL must use HTTPS"),
    }
    let allowed = local
        || AVATAR_HOST_SUFFIXES.iter().any(|d| host_matches(&host, d))
        || r2_public_host(config).is_some_and(|d| host_matches(&host, &d));
    if !allowed {
        return Err("Avatar URL domain not allowed");
    }
    if v.len() > AVATAR_MAX_LEN {
        return Err("Avatar URL too long");
    }
    Ok(())
}

/// The longest `instagram_url` accepted (the column's length).
pub const INSTAGRAM_URL_MAX_CHARS: usize = 255;

fn is_instagram_handle(h: &str) -> bool {
    let n = h.chars().count();
    (1..=30).contains(&n)
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// `PATCH /api/users/me {instagram_url}` (N5.2): `Ok(None)` clears the link
/// (`""`); a handle (`diego`, `@diego.dance`) or an `https://instagram.com/…`
/// / `https://www.instagram.com/…` URL becomes `https://instagram.com/<handle>`
/// (the first path segment; query and fragment dropped). Otherwise the
/// contract's message, checked in this order: too long (over 255
/// characters), not HTTPS, not instagram.com, no handle, a bad handle.
/// Surrounding whitespace is ignored. A value with neither `:` nor `/` is a
/// handle attempt, so a bad one (`diego!`) is `Invalid Instagram URL`.
pub fn parse_instagram_url(raw: &str) -> std::result::Result<Option<String>, &'static str> {
    if raw.chars().count() > INSTAGRAM_URL_MAX_CHARS {
        return Err("Instagram URL too long");
    }
    let v = raw.trim();
    if v.is_empty() {
        return Ok(None);
    }
    let handle_of = |h: &str| -> std::result::Result<Option<String>, &'static str> {
        let h = h.strip_prefix('@').unwrap_or(h);
        if is_instagram_handle(h) {
            Ok(Some(format!("https://instagram.com/{h}")))
        } else {
            Err("Invalid Instagram URL")
        }
    };
    if !v.contains(':') && !v.contains('/') {
        return handle_of(v);
    }
    let url = match url::Url::parse(v) {
        Ok(u) if u.scheme() == "https" => u,
        _ => return Err("Instagram URL must use HTTPS"),
    };
    match url.host_str().map(|h| h.to_ascii_lowercase()).as_deref() {
        Some("instagram.com" | "www.instagram.com") => {}
        _ => return Err("URL must point to instagram.com"),
    }
    let first = url
        .path_segments()
        .and_then(|mut segs| segs.find(|s| !s.is_empty()))
        .unwrap_or("");
    if first.is_empty() {
        return Err("Instagram URL must include a handle");
    }
    handle_of(first)
}

/// The fields of `PATCH /api/users/me`; `None` leaves a field unchanged.
#[derive(Debug, Clone, Default)]
pub struct ProfileUpdate {
    pub avatar_url: Option<String>,
    pub username: Option<String>,
    /// `Some(None)`: clear the link (`null`); `Some(Some(v))`: parse `v` with
    /// [`parse_instagram_url`].
    pub instagram_url: Option<Option<String>>,
}

pub fn validate_update(config: &crate::Config, u: &ProfileUpdate) -> Result<()> {
    let mut v = crate::violations::Violations::new();
    if let Some(a) = &u.avatar_url
        && let Err(msg) = check_avatar_url(config, a)
    {
        v.value_error(&["body", "avatar_url"], msg, serde_json::json!(a));
    }
    if let Some(name) = &u.username
        && let Err(msg) = crate::identity_rules::validate_username(name)
    {
        v.value_error(&["body", "username"], msg, serde_json::json!(name));
    }
    if let Some(Some(ig)) = &u.instagram_url
        && let Err(msg) = parse_instagram_url(ig)
    {
        v.value_error(&["body", "instagram_url"], msg, serde_json::json!(ig));
    }
    v.into_result()
}

/// Applies a profile update and returns the new profile (404 `User profile
/// not found` without a profile; 400 `Username already taken`).
pub async fn update(ctx: &crate::Context, user_id: Uuid, u: ProfileUpdate) -> Result<Profile> {
    validate_update(&ctx.config, &u)?;
    let username = u.username.map(|n| n.to_lowercase());
    // Validated above: the stored form of the link, when one was sent.
    let instagram: Option<Option<String>> = u
        .instagram_url
        .map(|v| v.and_then(|raw| parse_instagram_url(&raw).ok().flatten()));
    if let Some(name) = &username {
        let taken: bool = sqlx::query_scalar(
            "SELECT EXISTS(SELECT 1 FROM user_profiles
                           WHERE lower(username) = lower($1) AND user_id <> $2)",
        )
        .bind(name)
        .bind(user_id)
        .fetch_one(&ctx.db)
        .await?;
        if taken {
            return Err(Error::bad_request("Username already taken"));
        }
    }
    let updated = sqlx::query(
        "UPDATE user_profiles
         SET avatar_url = CASE WHEN $2 THEN $3 ELSE avatar_url END,
             username = COALESCE($4, username),
             instagram_url = CASE WHEN $5 THEN $6 ELSE instagram_url END,
             updated_at = now()
         WHERE user_id = $1",
    )
    .bind(user_id)
    .bind(u.avatar_url.is_some())
    .bind(&u.avatar_url)
    .bind(&username)
    .bind(instagram.is_some())
    .bind(instagram.flatten())
    .execute(&ctx.db)
    .await;
    match updated {
        Ok(r) if r.rows_affected() == 0 => return Err(Error::not_found("User profile not found")),
        Ok(_) => {}
        Err(e)
            if crate::error::is_unique_violation(&e, Some("user_profiles_username_lower_key")) =>
        {
            return Err(Error::bad_request("Username already taken"));
        }
        Err(e) => return Err(e.into()),
    }
    by_user_id(&ctx.db, user_id)
        .await?
        .ok_or_else(|| Error::not_found("User profile not found"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(r2: Option<&str>) -> crate::Config {
        let mut m = HashMap::new();
        m.insert("SECRET_KEY".to_string(), "k".to_string());
        if let Some(d) = r2 {
            for (k, v) in [
                ("AWS_ACCESS_KEY_ID", "a"),
                ("AWS_SECRET_ACCESS_KEY", "s"),
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
                ("AWS_BUCKET_NAME", "b"),
                ("R2_PUBLIC_DOMAIN", d),
            ] {
                m.insert(k.to_string(), v.to_string());
            }
        }
        crate::Config::from_map(&m).unwrap()
    }

    #[test]
    fn avatar_rules() {
        let c = config(None);
        assert_eq!(check_avatar_url(&c, ""), Ok(()));
        assert_eq!(check_avatar_url(&c, "https://pub-abc.r2.dev/a.png"), Ok(()));
        assert_eq!(
            check_avatar_url(&c, "https://lh3.googleusercontent.com/x"),
            Ok(())
        );
        assert_eq!(
            check_avatar_url(&c, "https://www.gravatar.com/avatar/1"),
            Ok(())
        );
        assert_eq!(check_avatar_url(&c, "http://localhost:3000/a.png"), Ok(()));
        assert_eq!(check_avatar_url(&c, "http://127.0.0.1/a.png"), Ok(()));
        assert_eq!(
            check_avatar_url(&c, "http://pub-abc.r2.dev/a.png"),
            Err("Avatar URL must use HTTPS")
        );
        assert_eq!(
            check_avatar_url(&c, "javascript:alert(1)"),
            Err("Avatar URL must use HTTPS")
        );
        for bad in [
            "https://example.com/a.png",
            "https://cloudflare.evil.com/a.png",
            "https://pub-evil.com/a.png",
            "https://r2.dev.evil.com/a.png",
            "https://evilr2.dev/a.png",
            "https://localhost.evil.com/a.png",
            "https://notgravatar.com/a.png",
        ] {
            assert_eq!(
                check_avatar_url(&c, bad),
                Err("Avatar URL domain not allowed"),
                "{bad}"
            );
        }
        let long = format!("https://pub-a.r2.dev/{}", "a".repeat(2048));
        assert_eq!(check_avatar_url(&c, &long), Err("Avatar URL too long"));
    }

    #[test]
    fn instagram_links_normalise_to_the_handle_url() {
        let ok = |v: &str| parse_instagram_url(v).unwrap();
        let url = |h: &str| Some(format!("https://instagram.com/{h}"));
        assert_eq!(ok(""), None);
        assert_eq!(ok("  "), None);
        assert_eq!(ok("diego"), url("diego"));
        assert_eq!(ok("@diego.dance"), url("diego.dance"));
        assert_eq!(ok(" Diego_99 "), url("Diego_99"));
        assert_eq!(ok(&"a".repeat(30)), url(&"a".repeat(30)));
        assert_eq!(ok("https://instagram.com/diego"), url("diego"));
        assert_eq!(ok("https://www.instagram.com/diego/"), url("diego"));
        assert_eq!(ok("https://WWW.Instagram.com/diego"), url("diego"));
        assert_eq!(
            ok("https://instagram.com/diego.dance?igsh=abc&x=1#top"),
            url("diego.dance")
        );
        assert_eq!(ok("https://instagram.com/diego/reels/123"), url("diego"));
        assert_eq!(ok("https://instagram.com//diego"), url("diego"));
    }

    #[test]
    fn instagram_links_are_refused_in_the_contract_order() {
        let err = |v: &str| parse_instagram_url(v).unwrap_err();
        // Too long is checked first, whatever else is wrong.
        assert_eq!(err(&"a".repeat(256)), "Instagram URL too long");
        assert_eq!(
            err(&format!("http://evil.com/{}", "a".repeat(250))),
            "Instagram URL too long"
        );
        assert_eq!(
            parse_instagram_url(&format!("https://instagram.com/{}", "a".repeat(30))),
            Ok(Some(format!("https://instagram.com/{}", "a".repeat(30))))
        );
        for v in [
            "http://instagram.com/diego",
            "ftp://instagram.com/diego",
            "instagram.com/diego",
            "www.instagram.com/diego",
            "javascript:alert(1)",
            "https//instagram.com/diego",
        ] {
            assert_eq!(err(v), "Instagram URL must use HTTPS", "{v}");
        }
        for v in [
            "https://evil.com/diego",
            "https://instagram.com.evil.com/diego",
            "https://notinstagram.com/diego",
            "https://m.instagram.com/diego",
            "https:///diego",
        ] {
            assert_eq!(err(v), "URL must point to instagram.com", "{v}");
        }
        for v in [
            "https://instagram.com",
            "https://instagram.com/",
            "https://www.instagram.com/?x=1",
            "https://instagram.com/#diego",
        ] {
            assert_eq!(err(v), "Instagram URL must include a handle", "{v}");
        }
        for v in [
            "diego!",
            "@",
            "@@diego",
            "dié go",
            &"a".repeat(31),
            "https://instagram.com/bad!handle",
            "https://instagram.com/%40diego",
            &format!("https://instagram.com/{}", "a".repeat(31)),
        ] {
            assert_eq!(err(v), "Invalid Instagram URL", "{v}");
        }
    }

    #[test]
    fn configured_r2_domain_is_allowed() {
        let c = config(Some("https://cdn.mamboguild.com"));
        assert_eq!(
            check_avatar_url(&c, "https://cdn.mamboguild.com/a.png"),
            Ok(())
        );
        assert_eq!(
            check_avatar_url(&c, "https://cdn.mamboguild.com.evil.io/a.png"),
            Err("Avatar URL domain not allowed")
        );
        let c = config(Some("media.example.org"));
        assert_eq!(
            check_avatar_url(&c, "https://media.example.org/a.png"),
            Ok(())
        );
    }
}
