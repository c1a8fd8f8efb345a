//! The community (API.md §3.8, §4.3, §4.9): the Stage (video posts) and the Lab
//! (questions with accepted answers), reactions, replies, tags, search, stats,
//! and the video-slot rule shared with the wallet.
//!
//! Every write runs in one transaction: the spend (`economy::spend`, a
//! conditional UPDATE), the ledger row, the action's rows, the counters (SQL
//! increments) and the queued jobs (outbox) commit together or not at all.
//!
//! Lock order, to keep concurrent writes free of deadlocks: the post row first
//! (`FOR UPDATE`), then user profiles in ascending `user_id` order.

use crate::economy::{self, Amounts, PRO_SQL, reason};
use crate::jobs::{self, BadgeCheckJob, MuxSyncAction, MuxSyncJob};
use crate::notifications;
use crate::{Context, Error, Result};
use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

pub const POST_TYPES: &[&str] = &["stage", "lab"];
pub const FEEDBACK_TYPES: &[&str] = &["hype", "coach"];
pub const REACTION_TYPES: &[&str] = &["fire", "ruler", "clap"];

/// Feed and search page size bounds (§1.5).
pub const LIMIT_DEFAULT: i64 = 20;
pub const LIMIT_MAX: i64 = 50;

// ---------------------------------------------------------------------------
// Shapes
// ---------------------------------------------------------------------------

/// The author shown on a post or reply (§3.0 PostUser).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostUser {
    pub id: Uuid,
    pub first_name: String,
    pub last_name: String,
    pub avatar_url: Option<String>,
    pub is_pro: bool,
    pub level: i32,
}

/// A post as the feed shows it (§3.0 PostItem).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostItem {
    pub id: Uuid,
    pub user: PostUser,
    pub post_type: String,
    pub title: String,
    pub body: Option<String>,
    pub mux_playback_id: Option<String>,
    pub video_duration_seconds: Option<i32>,
    pub tags: Vec<String>,
    pub is_wip: bool,
    pub feedback_type: String,
    pub is_solved: bool,
    pub reaction_count: i32,
    pub reply_count: i32,
    /// The viewer's reaction.
    pub user_reaction: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A reply (§3.0 ReplyItem).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyItem {
    pub id: Uuid,
    pub user: PostUser,
    pub content: String,
    pub mux_playback_id: Option<String>,
    pub is_accepted_answer: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PostDetail {
    pub post: PostItem,
    pub replies: Vec<ReplyItem>,
}

/// §3.0 SlotStatus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotStatus {
    pub allowed: bool,
    pub current_slots: i64,
    pub max_slots: i64,
    pub message: String,
}

/// §3.0 Tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Tag {
    pub slug: String,
    pub name: String,
    pub category: Option<String>,
    pub usage_count: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct LeaderboardEntry {
    pub id: Uuid,
    pub first_name: String,
    pub avatar_url: Option<String>,
    pub score: i64,
    pub rank: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommunityStats {
    pub member_count: i64,
    pub active_now: i64,
    pub leaderboard: Vec<LeaderboardEntry>,
}

/// `{success: true, message}` of a write that returns nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Done {
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PostWritten {
    pub post: PostItem,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplyWritten {
    pub reply: ReplyItem,
    pub message: String,
}

// ---------------------------------------------------------------------------
// Inputs and their schema-level validation (FastAPI 422 lists)
// ---------------------------------------------------------------------------

/// A body field that may be absent, explicitly null, or a value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Field<T> {
    #[default]
    Absent,
    Null,
    Value(T),
}

impl<T> Field<T> {
    pub fn value(&self) -> Option<&T> {
        match self {
            Self::Value(v) => Some(v),
            _ => None,
        }
    }
    pub fn into_option(self) -> Option<T> {
        match self {
            Self::Value(v) => Some(v),
            _ => None,
        }
    }
}

/// `POST /api/community/posts`.
#[derive(Debug, Clone, Default)]
pub struct NewPost {
    pub post_type: String,
    pub title: String,
    pub body: Field<String>,
    pub tags: Vec<String>,
    pub is_wip: bool,
    pub feedback_type: String,
    pub mux_asset_id: Option<String>,
    pub mux_playback_id: Option<String>,
    pub video_duration_seconds: Option<i32>,
}

/// `PUT /api/community/posts/{id}`: absent or null fields are left alone.
#[derive(Debug, Clone, Default)]
pub struct PostUpdate {
    pub title: Option<String>,
    pub body: Option<String>,
    pub tags: Option<Vec<String>>,
    pub is_wip: Option<bool>,
    pub feedback_type: Option<String>,
}

/// `POST /api/community/posts/{id}/replies`.
#[derive(Debug, Clone, Default)]
pub struct NewReply {
    pub content: String,
    pub mux_asset_id: Option<String>,
    pub mux_playback_id: Option<String>,
}

/// Collects FastAPI/pydantic-style validation errors in field order.
#[derive(Debug, Default)]
pub struct Validation {
    errors: Vec<Value>,
}

impl Validation {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(
        &mut self,
        loc: &[&str],
        kind: &str,
        msg: String,
        input: Value,
        ctx: Option<Value>,
    ) {
        let mut e = json!({ "type": kind, "loc": loc, "msg": msg, "input": input });
        if let Some(c) = ctx {
            e["ctx"] = c;
        }
        self.errors.push(e);
    }

    /// `min_length`/`max_length` of a string, counted in characters.
    pub fn string_len(&mut self, loc: &[&str], s: &str, min: usize, max: usize) {
        let n = s.chars().count();
        if n < min {
            let unit = if min == 1 { "character" } else { "characters" };
            self.push(
                loc,
                "string_too_short",
                format!("String should have at least {min} {unit}"),
                json!(s),
                Some(json!({ "min_length": min })),
            );
        } else if n > max {
            let unit = if max == 1 { "character" } else { "characters" };
            self.push(
                loc,
                "string_too_long",
                format!("String should have at most {max} {unit}"),
                json!(s),
                Some(json!({ "max_length": max })),
            );
        }
        self.no_nul(loc, s);
    }

    /// PostgreSQL text cannot hold NUL characters.
    pub fn no_nul(&mut self, loc: &[&str], s: &str) {
        if s.contains('\0') {
            self.push(
                loc,
                "value_error",
                "Value error, Text must not contain NUL characters".into(),
                json!(s),
                Some(json!({ "error": {} })),
            );
        }
    }

    pub fn list_len(&mut self, loc: &[&str], items: &[String], min: usize, max: usize) {
        let n = items.len();
        if n < min {
            let unit = if min == 1 { "item" } else { "items" };
            self.push(
                loc,
                "too_short",
                format!("List should have at least {min} {unit} after validation, not {n}"),
                json!(items),
                Some(json!({ "field_type": "List", "min_length": min, "actual_length": n })),
            );
        } else if n > max {
            let unit = if max == 1 { "item" } else { "items" };
            self.push(
                loc,
                "too_long",
                format!("List should have at most {max} {unit} after validation, not {n}"),
                json!(items),
                Some(json!({ "field_type": "List", "max_length": max, "actual_length": n })),
            );
        }
        for (i, t) in items.iter().enumerate() {
            let idx = i.to_string();
            let mut l: Vec<&str> = loc.to_vec();
            l.push(&idx);
            self.no_nul(&l, t);
        }
    }

    /// A `Literal[...]` field.
    pub fn literal(&mut self, loc: &[&str], value: &str, allowed: &[&str]) {
        if !allowed.contains(&value) {
            let expected = literal_expected(allowed);
            self.push(
                loc,
                "literal_error",
                format!("Input should be {expected}"),
                json!(value),
                Some(json!({ "expected": expected })),
            );
        }
    }

    pub fn optional_len(&mut self, loc: &[&str], s: &Option<String>, max: usize) {
        if let Some(s) = s {
            self.string_len(loc, s, 0, max);
        }
    }

    pub fn finish(self) -> Result<()> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(Error::with_object(422, Value::Array(self.errors)))
        }
    }
}

/// pydantic's wording: `'a' or 'b'`, `'a', 'b' or 'c'`.
fn literal_expected(allowed: &[&str]) -> String {
    let quoted: Vec<String> = allowed.iter().map(|a| format!("'{a}'")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

impl NewPost {
    /// Schema validation (422 list), in the order of the reference's fields.
    pub fn validate(&self) -> Result<()> {
        let mut v = Validation::new();
        v.literal(&["body", "post_type"], &self.post_type, POST_TYPES);
        v.string_len(&["body", "title"], &self.title, 3, 200);
        match &self.body {
            Field::Value(b) => v.no_nul(&["body", "body"], b),
            Field::Absent | Field::Null => {}
        }
        // `@validator('body')`: runs when the field is given (even as null).
        if self.post_type == "lab" {
            let input = match &self.body {
                Field::Absent => None,
                Field::Null => Some(Value::Null),
                Field::Value(b) if b.is_empty() => Some(json!(b)),
                Field::Value(_) => None,
            };
            if let Some(input) = input {
                v.push(
                    &["body", "body"],
                    "value_error",
                    "Value error, Body is required for Lab questions".into(),
                    input,
                    Some(json!({ "error": {} })),
                );
            }
        }
        v.list_len(&["body", "tags"], &self.tags, 1, 5);
        v.literal(
            &["body", "feedback_type"],
            &self.feedback_type,
            FEEDBACK_TYPES,
        );
        v.optional_len(&["body", "mux_asset_id"], &self.mux_asset_id, 100);
        v.optional_len(&["body", "mux_playback_id"], &self.mux_playback_id, 100);
        v.finish()
    }
}

impl PostUpdate {
    pub fn validate(&self) -> Result<()> {
        let mut v = Validation::new();
        if let Some(t) = &self.title {
            v.string_len(&["body", "title"], t, 3, 200);
        }
        if let Some(b) = &self.body {
            v.no_nul(&["body", "body"], b);
        }
        if let Some(tags) = &self.tags {
            v.list_len(&["body", "tags"], tags, 1, 5);
        }
        if let Some(f) = &self.feedback_type {
            v.literal(&["body", "feedback_type"], f, FEEDBACK_TYPES);
        }
        v.finish()
    }
}

impl NewReply {
    pub fn validate(&self) -> Result<()> {
        let mut v = Validation::new();
        v.string_len(&["body", "content"], &self.content, 1, 2000);
        v.optional_len(&["body", "mux_asset_id"], &self.mux_asset_id, 100);
        v.optional_len(&["body", "mux_playback_id"], &self.mux_playback_id, 100);
        v.finish()
    }
}

/// Validates a reaction type (`Literal['fire','ruler','clap']`).
pub fn validate_reaction_type(reaction_type: &str) -> Result<()> {
    let mut v = Validation::new();
    v.literal(&["body", "reaction_type"], reaction_type, REACTION_TYPES);
    v.finish()
}

// ---------------------------------------------------------------------------
// Errors of community writes: `detail` is `{success:false, message, ...}`
// ---------------------------------------------------------------------------

fn fail(status: u16, message: impl Into<String>) -> Error {
    Error::with_object(
        status,
        json!({ "success": false, "message": message.into() }),
    )
}

fn post_not_found() -> Error {
    fail(404, "Post not found")
}

fn insufficient(status: u16, message: String, i: economy::Insufficient) -> Error {
    Error::with_object(
        status,
        json!({ "success": false, "message": message, "required": i.required, "balance": i.balance }),
    )
}

/// The 404 a write endpoint gives for a malformed post id (D28).
pub fn write_post_not_found() -> Error {
    post_not_found()
}

// ---------------------------------------------------------------------------
// Reading posts: a fixed number of queries whatever the page size (D17)
// ---------------------------------------------------------------------------

/// Columns of a post with its author, the same for every viewer.
const POST_COLUMNS: &str = "p.id, p.user_id, p.post_type, p.title, p.body, p.mux_playback_id,
    p.video_duration_seconds, p.tags::text[] AS tags, p.is_wip, p.feedback_type, p.is_solved,
    p.reaction_count, p.reply_count, p.created_at, p.updated_at,
    COALESCE(pr.first_name, 'Unknown') AS first_name,
    COALESCE(pr.last_name, 'User') AS last_name,
    pr.avatar_url, COALESCE(pr.level, 1) AS level,
    COALESCE(PRO_EXPR, false) AS is_pro";

const POST_JOINS: &str = "FROM posts p
    LEFT JOIN user_profiles pr ON pr.user_id = p.user_id
    LEFT JOIN subscriptions s ON s.user_id = p.user_id";

fn post_columns() -> String {
    POST_COLUMNS.replace("PRO_EXPR", PRO_SQL)
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct PostRow {
    id: Uuid,
    user_id: Uuid,
    post_type: String,
    title: String,
    body: Option<String>,
    mux_playback_id: Option<String>,
    video_duration_seconds: Option<i32>,
    tags: Vec<String>,
    is_wip: bool,
    feedback_type: String,
    is_solved: bool,
    reaction_count: i32,
    reply_count: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    first_name: String,
    last_name: String,
    avatar_url: Option<String>,
    level: i32,
    is_pro: bool,
}

impl PostRow {
    fn into_item(self, user_reaction: Option<String>) -> PostItem {
        PostItem {
            id: self.id,
            user: PostUser {
                id: self.user_id,
                first_name: self.first_name,
                last_name: self.last_name,
                avatar_url: self.avatar_url,
                is_pro: self.is_pro,
                level: self.level,
            },
            post_type: self.post_type,
            title: self.title,
            body: self.body,
            mux_playback_id: self.mux_playback_id,
            video_duration_seconds: self.video_duration_seconds,
            tags: self.tags,
            is_wip: self.is_wip,
            feedback_type: self.feedback_type,
            is_solved: self.is_solved,
            reaction_count: self.reaction_count,
            reply_count: self.reply_count,
            user_reaction,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// The viewer's reactions on `post_ids` (one query).
async fn viewer_reactions(
    conn: &mut PgConnection,
    viewer: Uuid,
    post_ids: &[Uuid],
) -> Result<HashMap<Uuid, String>> {
    if post_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT post_id, reaction_type FROM post_reactions
         WHERE user_id = $1 AND post_id = ANY($2)",
    )
    .bind(viewer)
    .bind(post_ids)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Merges the viewer's reactions into viewer-independent rows.
async fn with_reactions(
    conn: &mut PgConnection,
    viewer: Uuid,
    rows: Vec<PostRow>,
) -> Result<Vec<PostItem>> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let mut reactions = viewer_reactions(conn, viewer, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let mine = reactions.remove(&r.id);
            r.into_item(mine)
        })
        .collect())
}

/// One post as `viewer` sees it, or `None`.
async fn load_post(
    conn: &mut PgConnection,
    viewer: Uuid,
    post_id: Uuid,
) -> Result<Option<PostItem>> {
    let sql = format!(
        "SELECT {}, r.reaction_type AS user_reaction {POST_JOINS}
         LEFT JOIN post_reactions r ON r.post_id = p.id AND r.user_id = $2
         WHERE p.id = $1",
        post_columns()
    );
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        post: PostRow,
        user_reaction: Option<String>,
    }
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(post_id)
        .bind(viewer)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|r| r.post.into_item(r.user_reaction)))
}

/// Filters of the feed and search.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedQuery {
    pub post_type: Option<String>,
    pub tag: Option<String>,
    pub skip: i64,
    pub limit: i64,
}

fn blank_to_none(s: &Option<String>) -> Option<String> {
    s.as_ref().filter(|v| !v.is_empty()).cloned()
}

/// A post row with the viewer's reaction on it.
#[derive(sqlx::FromRow)]
struct ViewedRow {
    #[sqlx(flatten)]
    post: PostRow,
    user_reaction: Option<String>,
}

impl ViewedRow {
    fn into_item(self) -> PostItem {
        self.post.into_item(self.user_reaction)
    }
}

/// One page of post rows with the viewer's reactions (one query).
async fn feed_rows(conn: &mut PgConnection, viewer: Uuid, q: &FeedQuery) -> Result<Vec<ViewedRow>> {
    let post_type = blank_to_none(&q.post_type);
    let tag = blank_to_none(&q.tag);
    let mut conds: Vec<String> = vec![];
    let mut n = 3;
    if post_type.is_some() {
        n += 1;
        conds.push(format!("p.post_type = ${n}"));
    }
    if tag.is_some() {
        n += 1;
        // Containment (= `$tag = ANY(tags)`), so the GIN index serves it.
        conds.push(format!("p.tags @> ARRAY[${n}]::varchar(50)[]"));
    }
    let filter = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    };
    // The page's ids first (an index-only scan of the (created_at, id) index,
    // so a deep OFFSET skips index entries, not joined rows), then the joins
    // for those rows only.
    let sql = format!(
        "WITH page AS (
             SELECT p.id, p.created_at FROM posts p {filter}
             ORDER BY p.created_at DESC, p.id DESC
             OFFSET $1 LIMIT $2
         )
         SELECT {}, r.reaction_type AS user_reaction FROM page
         JOIN posts p ON p.id = page.id
         LEFT JOIN user_profiles pr ON pr.user_id = p.user_id
         LEFT JOIN subscriptions s ON s.user_id = p.user_id
         LEFT JOIN post_reactions r ON r.post_id = p.id AND r.user_id = $3
         ORDER BY page.created_at DESC, page.id DESC",
        post_columns()
    );
    let mut query = sqlx::query_as::<_, ViewedRow>(sqlx::AssertSqlSafe(sql))
        .bind(q.skip)
        .bind(q.limit)
        .bind(viewer);
    if let Some(t) = post_type {
        query = query.bind(t);
    }
    if let Some(t) = tag {
        query = query.bind(t);
    }
    Ok(query.fetch_all(&mut *conn).await?)
}

/// Rows of `ids` with the viewer's reactions, in that order (one query).
async fn rows_by_ids(
    conn: &mut PgConnection,
    viewer: Uuid,
    ids: &[Uuid],
) -> Result<Vec<ViewedRow>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let sql = format!(
        "SELECT {}, r.reaction_type AS user_reaction {POST_JOINS}
         LEFT JOIN post_reactions r ON r.post_id = p.id AND r.user_id = $2
         WHERE p.id = ANY($1)",
        post_columns()
    );
    let mut rows: HashMap<Uuid, ViewedRow> =
        sqlx::query_as::<_, ViewedRow>(sqlx::AssertSqlSafe(sql))
            .bind(ids)
            .bind(viewer)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|r| (r.post.id, r))
            .collect();
    // A post deleted since the page was cached is simply left out.
    Ok(ids.iter().filter_map(|id| rows.remove(id)).collect())
}

/// The community feed (§4.9): one query whatever the page size (plus, with
/// the cache, up to two Redis reads).
pub async fn feed(ctx: &Context, viewer: Uuid, q: &FeedQuery) -> Result<Vec<PostItem>> {
    // The generation is read from Redis on every request (a write through any
    // process bumps it); the page's ids come from this process's copy, else
    // from Redis, else from the database.
    let version = cache::version(ctx).await;
    let cached = match version {
        Some(v) => match cache::local_get(ctx, v, q) {
            Some(ids) => Some(ids),
            None => cache::get(ctx, v, q).await.map(|ids| {
                let ids = Arc::new(ids);
                cache::local_put(ctx, v, q, ids.clone());
                ids
            }),
        },
        None => None,
    };
    let mut conn = ctx.db.acquire().await?;
    let rows = match cached {
        Some(ids) => rows_by_ids(&mut conn, viewer, &ids).await?,
        None => {
            let rows = feed_rows(&mut conn, viewer, q).await?;
            if let Some(v) = version {
                let ids: Vec<Uuid> = rows.iter().map(|r| r.post.id).collect();
                cache::put(ctx, v, q, &ids).await;
                cache::local_put(ctx, v, q, Arc::new(ids));
            }
            rows
        }
    };
    Ok(rows.into_iter().map(ViewedRow::into_item).collect())
}

/// Escapes `\`, `%` and `_` for a LIKE pattern with the default escape `\` (D18).
pub fn escape_like(q: &str) -> String {
    let mut out = String::with_capacity(q.len());
    for c in q.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Search (§4.9, D18): title substring (escaped), a tag equal to `lower(q)`,
/// or a tag whose slug or name contains `q`. Same order and paging as the feed.
pub async fn search(
    ctx: &Context,
    viewer: Uuid,
    text: &str,
    q: &FeedQuery,
) -> Result<Vec<PostItem>> {
    let mut conn = ctx.db.acquire().await?;
    let pattern = format!("%{}%", escape_like(text));
    let post_type = blank_to_none(&q.post_type);
    let type_filter = if post_type.is_some() {
        "AND p.post_type = $5"
    } else {
        ""
    };
    let sql = format!(
        "SELECT {} {POST_JOINS}
         WHERE (p.title ILIKE $3
                OR lower($4) = ANY(p.tags::text[])
                OR EXISTS (SELECT 1 FROM unnest(p.tags) AS t(slug)
                           LEFT JOIN community_tags ct ON ct.slug = t.slug
                           WHERE t.slug ILIKE $3 OR ct.name ILIKE $3))
           {type_filter}
         ORDER BY p.created_at DESC, p.id DESC
         OFFSET $1 LIMIT $2",
        post_columns()
    );
    let mut query = sqlx::query_as::<_, PostRow>(sqlx::AssertSqlSafe(sql))
        .bind(q.skip)
        .bind(q.limit)
        .bind(&pattern)
        .bind(text);
    if let Some(t) = post_type {
        query = query.bind(t);
    }
    let rows = query.fetch_all(&mut *conn).await?;
    with_reactions(&mut conn, viewer, rows).await
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct ReplyRow {
    id: Uuid,
    user_id: Uuid,
    content: String,
    mux_playback_id: Option<String>,
    is_accepted_answer: bool,
    created_at: DateTime<Utc>,
    first_name: String,
    last_name: String,
    avatar_url: Option<String>,
    level: i32,
    is_pro: bool,
}

impl ReplyRow {
    fn into_item(self) -> ReplyItem {
        ReplyItem {
            id: self.id,
            user: PostUser {
                id: self.user_id,
                first_name: self.first_name,
                last_name: self.last_name,
                avatar_url: self.avatar_url,
                is_pro: self.is_pro,
                level: self.level,
            },
            content: self.content,
            mux_playback_id: self.mux_playback_id,
            is_accepted_answer: self.is_accepted_answer,
            created_at: self.created_at,
        }
    }
}

const REPLY_SELECT: &str = "SELECT rp.id, rp.user_id, rp.content, rp.mux_playback_id,
        rp.is_accepted_answer, rp.created_at,
        COALESCE(pr.first_name, 'Unknown') AS first_name,
        COALESCE(pr.last_name, 'User') AS last_name,
        pr.avatar_url, COALESCE(pr.level, 1) AS level,
        COALESCE(PRO_EXPR, false) AS is_pro
    FROM post_replies rp
    LEFT JOIN user_profiles pr ON pr.user_id = rp.user_id
    LEFT JOIN subscriptions s ON s.user_id = rp.user_id";

fn reply_select() -> String {
    REPLY_SELECT.replace("PRO_EXPR", PRO_SQL)
}

/// A post with its replies (accepted first, then oldest first): two queries.
pub async fn post_detail(db: &PgPool, viewer: Uuid, post_id: Uuid) -> Result<Option<PostDetail>> {
    let mut conn = db.acquire().await?;
    let Some(post) = load_post(&mut conn, viewer, post_id).await? else {
        return Ok(None);
    };
    let sql = format!(
        "{} WHERE rp.post_id = $1
         ORDER BY rp.is_accepted_answer DESC, rp.created_at ASC, rp.id ASC",
        reply_select()
    );
    let replies: Vec<ReplyRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(post_id)
        .fetch_all(&mut *conn)
        .await?;
    Ok(Some(PostDetail {
        post,
        replies: replies.into_iter().map(ReplyRow::into_item).collect(),
    }))
}

async fn load_reply(conn: &mut PgConnection, reply_id: Uuid) -> Result<ReplyItem> {
    let sql = format!("{} WHERE rp.id = $1", reply_select());
    let row: ReplyRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(reply_id)
        .fetch_one(&mut *conn)
        .await?;
    Ok(row.into_item())
}

// ---------------------------------------------------------------------------
// Video slots (§4.3, D15): one formula everywhere
// ---------------------------------------------------------------------------

/// Slots in use: the user's posts with a video, plus their replies with a
/// video that are not accepted answers. An expression of `$1` (the user id).
pub const SLOTS_USED_SQL: &str =
    "((SELECT count(*) FROM posts WHERE user_id = $1 AND mux_asset_id IS NOT NULL)
      + (SELECT count(*) FROM post_replies
         WHERE user_id = $1 AND mux_asset_id IS NOT NULL AND NOT is_accepted_answer))";

/// [`SLOTS_USED_SQL`] for one user.
pub async fn slots_used(conn: &mut PgConnection, user_id: Uuid) -> Result<i64> {
    let used: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT {SLOTS_USED_SQL}")))
        .bind(user_id)
        .fetch_one(&mut *conn)
        .await?;
    Ok(used)
}

/// The slot status with the messages of §4.3.
pub fn slot_status_for(used: i64, limit: i64) -> SlotStatus {
    let allowed = used < limit;
    let message = if allowed {
        format!("You have {used}/{limit} video slots used.")
    } else {
        format!("You've reached your {limit} video limit. Delete an old video to post a new one.")
    };
    SlotStatus {
        allowed,
        current_slots: used,
        max_slots: limit,
        message,
    }
}

/// The user's slot status (`GET /community/upload-check`, `/claves/slot-status`).
pub async fn slot_status(ctx: &Context, user_id: Uuid) -> Result<SlotStatus> {
    let mut conn = ctx.db.acquire().await?;
    slot_status_conn(&mut conn, &Amounts::from_config(&ctx.config), user_id).await
}

pub async fn slot_status_conn(
    conn: &mut PgConnection,
    amounts: &Amounts,
    user_id: Uuid,
) -> Result<SlotStatus> {
    let pro = economy::is_pro(conn, user_id).await?;
    let used = slots_used(conn, user_id).await?;
    Ok(slot_status_for(used, amounts.slot_limit(pro)))
}

// ---------------------------------------------------------------------------
// Helpers of the write paths
// ---------------------------------------------------------------------------

/// Locks the profiles of `users` in ascending id order (deadlock-free).
async fn lock_profiles(conn: &mut PgConnection, users: &[Uuid]) -> Result<()> {
    let mut ids = users.to_vec();
    ids.sort();
    ids.dedup();
    // One or two users (every caller): `IN ($1, $2)` is planned once per
    // connection; `= ANY($1)` was re-planned on every call.
    let q = match ids.as_slice() {
        [a] => sqlx::query("SELECT 1 FROM user_profiles WHERE user_id = $1 FOR UPDATE").bind(*a),
        [a, b] => sqlx::query(
            "SELECT 1 FROM user_profiles WHERE user_id IN ($1, $2) ORDER BY user_id FOR UPDATE",
        )
        .bind(*a)
        .bind(*b),
        _ => sqlx::query(
            "SELECT 1 FROM user_profiles WHERE user_id = ANY($1) ORDER BY user_id FOR UPDATE",
        )
        .bind(ids.clone()),
    };
    q.fetch_all(&mut *conn).await?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct LockedPost {
    user_id: Uuid,
    title: String,
    post_type: String,
    feedback_type: String,
    tags: Vec<String>,
    mux_asset_id: Option<String>,
}

/// Locks the post row (first lock of every post write).
async fn lock_post(conn: &mut PgConnection, post_id: Uuid) -> Result<Option<LockedPost>> {
    Ok(sqlx::query_as(
        "SELECT user_id, title, post_type, feedback_type, tags::text[] AS tags, mux_asset_id
         FROM posts WHERE id = $1 FOR UPDATE",
    )
    .bind(post_id)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Removes duplicate tags, keeping the first occurrence.
fn dedup_tags(tags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for t in tags {
        if !out.contains(t) {
            out.push(t.clone());
        }
    }
    out
}

/// Checks that every tag exists (§4.9 step 2). `status` is 422 on create and
/// 400 on update.
async fn check_tags(conn: &mut PgConnection, tags: &[String], status: u16) -> Result<()> {
    if tags.is_empty() {
        return Err(fail(status, "At least one tag is required"));
    }
    let known: Vec<String> =
        sqlx::query_scalar("SELECT slug::text FROM community_tags WHERE slug = ANY($1::text[])")
            .bind(tags)
            .fetch_all(&mut *conn)
            .await?;
    if known.is_empty() {
        return Err(fail(
            status,
            "At least one valid tag is required. Invalid tags provided.",
        ));
    }
    let invalid: Vec<&str> = tags
        .iter()
        .filter(|t| !known.contains(t))
        .map(String::as_str)
        .collect();
    if !invalid.is_empty() {
        return Err(fail(
            status,
            format!(
                "Invalid tags: {}. Please select valid tags.",
                invalid.join(", ")
            ),
        ));
    }
    Ok(())
}

async fn bump_tags(conn: &mut PgConnection, tags: &[String], delta: i32) -> Result<()> {
    if tags.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE community_tags SET usage_count = GREATEST(0, usage_count + $2)
         WHERE slug = ANY($1::text[])",
    )
    .bind(tags)
    .bind(delta)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn badge_check(conn: &mut PgConnection, user_id: Uuid, stat: &str) -> Result<()> {
    jobs::enqueue(
        conn,
        &BadgeCheckJob {
            user_id,
            stat: stat.to_string(),
        },
    )
    .await?;
    Ok(())
}

/// After the commit of a write that adds, removes or re-tags a post: wake the
/// outbox relay and drop cached feed pages.
async fn after_post_write(ctx: &Context) {
    jobs::wake_relay(ctx);
    cache::invalidate(ctx).await;
}

// ---------------------------------------------------------------------------
// Posts
// ---------------------------------------------------------------------------

/// Creates a post, in the order of §4.9. Schema validation is the caller's
/// ([`NewPost::validate`]); it is repeated here for direct callers.
pub async fn create_post(ctx: &Context, user_id: Uuid, input: NewPost) -> Result<PostWritten> {
    input.validate()?;
    let amounts = Amounts::from_config(&ctx.config);
    let tags = dedup_tags(&input.tags);
    let is_stage = input.post_type == "stage";
    let mut tx = ctx.db.begin().await?;
    // 1-2. Tags.
    check_tags(&mut tx, &tags, 422).await?;
    // Serialize this user's writes so the slot count cannot race.
    lock_profiles(&mut tx, &[user_id]).await?;
    // 3. Slots (stage posts, and any post that carries a video).
    if is_stage || input.mux_asset_id.is_some() {
        let status = slot_status_conn(&mut tx, &amounts, user_id).await?;
        if !status.allowed {
            return Err(fail(422, status.message));
        }
    }
    // 4. Lab body.
    let body = input.body.clone().into_option();
    if !is_stage && body.as_deref().is_none_or(|b| b.trim().is_empty()) {
        return Err(fail(422, "Question body is required for Lab posts"));
    }
    // 5. Charge.
    let (cost, why) = if is_stage {
        (amounts.post_stage, reason::POST_STAGE)
    } else {
        (amounts.post_lab, reason::POST_LAB)
    };
    if let Err(i) = economy::spend(&mut tx, user_id, cost, why, None).await? {
        return Err(insufficient(
            400,
            format!(
                "Insufficient claves. You need {cost} 🥢 but have {} 🥢",
                i.balance
            ),
            i,
        ));
    }
    // 6. The post.
    let now = ctx.clock.now();
    let post_id: Uuid = sqlx::query_scalar(
        "INSERT INTO posts (user_id, post_type, title, body, mux_asset_id, mux_playback_id,
             video_duration_seconds, tags, is_wip, feedback_type, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text[]::varchar(50)[], $9, $10, $11, $11)
         RETURNING id",
    )
    .bind(user_id)
    .bind(&input.post_type)
    .bind(&input.title)
    .bind(&body)
    .bind(&input.mux_asset_id)
    .bind(&input.mux_playback_id)
    .bind(input.video_duration_seconds)
    .bind(&tags)
    .bind(input.is_wip)
    .bind(&input.feedback_type)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    // 7. Tag usage.
    bump_tags(&mut tx, &tags, 1).await?;
    // 8. Badge checks.
    if !is_stage {
        badge_check(&mut tx, user_id, "questions_posted").await?;
    } else if input.mux_asset_id.is_some() {
        badge_check(&mut tx, user_id, "videos_posted").await?;
    }
    let post = load_post(&mut tx, user_id, post_id)
        .await?
        .ok_or_else(|| Error::internal("created post vanished"))?;
    tx.commit().await?;
    after_post_write(ctx).await;
    Ok(PostWritten {
        post,
        message: format!("Post created! (-{cost} 🥢)"),
    })
}

/// Edits a post (owner only; §4.9 "Update post").
/// 404 `Post not found` or 403 `You can only edit your own posts` unless
/// `user_id` wrote the post. The edit route asks this before it reads the
/// body; [`update_post`] asks again under the row lock.
pub async fn ensure_post_author(ctx: &Context, user_id: Uuid, post_id: Uuid) -> Result<()> {
    let author: Option<Uuid> = sqlx::query_scalar("SELECT user_id FROM posts WHERE id = $1")
        .bind(post_id)
        .fetch_optional(&ctx.db)
        .await?;
    match author {
        None => Err(post_not_found()),
        Some(a) if a != user_id => Err(not_the_author()),
        Some(_) => Ok(()),
    }
}

fn not_the_author() -> Error {
    fail(403, "You can only edit your own posts")
}

pub async fn update_post(
    ctx: &Context,
    user_id: Uuid,
    post_id: Uuid,
    input: PostUpdate,
) -> Result<PostWritten> {
    let mut tx = ctx.db.begin().await?;
    let post = lock_post(&mut tx, post_id)
        .await?
        .ok_or_else(post_not_found)?;
    if post.user_id != user_id {
        return Err(not_the_author());
    }
    // The author's rights first, then the input (a stranger learns nothing).
    input.validate()?;
    if let Some(b) = &input.body
        && post.post_type == "lab"
        && b.trim().is_empty()
    {
        return Err(fail(400, "Question body is required for Lab posts"));
    }
    let new_tags = match &input.tags {
        Some(t) => {
            let tags = dedup_tags(t);
            check_tags(&mut tx, &tags, 400).await?;
            let removed: Vec<String> = post
                .tags
                .iter()
                .filter(|t| !tags.contains(t))
                .cloned()
                .collect();
            let added: Vec<String> = tags
                .iter()
                .filter(|t| !post.tags.contains(t))
                .cloned()
                .collect();
            bump_tags(&mut tx, &removed, -1).await?;
            bump_tags(&mut tx, &added, 1).await?;
            Some(tags)
        }
        None => None,
    };
    sqlx::query(
        "UPDATE posts SET
             title = COALESCE($2, title),
             body = COALESCE($3, body),
             tags = COALESCE($4::text[]::varchar(50)[], tags),
             is_wip = COALESCE($5, is_wip),
             feedback_type = COALESCE($6, feedback_type),
             updated_at = $7
         WHERE id = $1",
    )
    .bind(post_id)
    .bind(&input.title)
    .bind(&input.body)
    .bind(&new_tags)
    .bind(input.is_wip)
    .bind(&input.feedback_type)
    .bind(ctx.clock.now())
    .execute(&mut *tx)
    .await?;
    let item = load_post(&mut tx, user_id, post_id)
        .await?
        .ok_or_else(post_not_found)?;
    tx.commit().await?;
    after_post_write(ctx).await;
    Ok(PostWritten {
        post: item,
        message: "Post updated successfully".into(),
    })
}

/// Deletes a post (owner or admin). Replies and reactions cascade, tag usage
/// goes down, and the post's videos are removed at Mux by a queued job.
pub async fn delete_post(
    ctx: &Context,
    user_id: Uuid,
    is_admin: bool,
    post_id: Uuid,
) -> Result<Done> {
    let mut tx = ctx.db.begin().await?;
    let post = lock_post(&mut tx, post_id)
        .await?
        .ok_or_else(post_not_found)?;
    if post.user_id != user_id && !is_admin {
        return Err(fail(403, "You can only delete your own posts"));
    }
    let reply_assets: Vec<String> = sqlx::query_scalar(
        "DELETE FROM post_replies WHERE post_id = $1 AND mux_asset_id IS NOT NULL
         RETURNING mux_asset_id::text",
    )
    .bind(post_id)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM posts WHERE id = $1")
        .bind(post_id)
        .execute(&mut *tx)
        .await?;
    bump_tags(&mut tx, &dedup_tags(&post.tags), -1).await?;
    let assets = post.mux_asset_id.iter().chain(reply_assets.iter());
    for asset_id in assets {
        jobs::enqueue(
            &mut tx,
            &MuxSyncJob {
                action: MuxSyncAction::DeleteAsset {
                    asset_id: asset_id.clone(),
                },
            },
        )
        .await?;
    }
    tx.commit().await?;
    after_post_write(ctx).await;
    Ok(Done {
        message: "Post deleted".into(),
    })
}

// ---------------------------------------------------------------------------
// Reactions
// ---------------------------------------------------------------------------

/// The badge stat an owner's received reaction of this type feeds.
fn received_stat(reaction_type: &str) -> &'static str {
    match reaction_type {
        "fire" => "fires_received",
        "clap" => "claps_received",
        _ => "metronomes_received",
    }
}

async fn bump_stat(conn: &mut PgConnection, user_id: Uuid, column: &str) -> Result<()> {
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
    let post = lock_post(&mut tx, post_id)
        .await?
        .ok_or_else(post_not_found)?;
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
    lock_post(&mut tx, post_id)
        .await?
        .ok_or_else(post_not_found)?;
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

// ---------------------------------------------------------------------------
// Replies and solutions
// ---------------------------------------------------------------------------

/// Replies to a post (§4.9 "Reply"): 2 claves; closed in Hype mode; a reply
/// with a video takes a slot (D15).
pub async fn reply(
    ctx: &Context,
    user_id: Uuid,
    post_id: Uuid,
    input: NewReply,
) -> Result<ReplyWritten> {
    input.validate()?;
    let amounts = Amounts::from_config(&ctx.config);
    let mut tx = ctx.db.begin().await?;
    let post = lock_post(&mut tx, post_id)
        .await?
        .ok_or_else(post_not_found)?;
    if post.feedback_type == "hype" {
        return Err(fail(400, "Comments are disabled on this post (Hype mode)"));
    }
    lock_profiles(&mut tx, &[user_id]).await?;
    if input.mux_asset_id.is_some() {
        let status = slot_status_conn(&mut tx, &amounts, user_id).await?;
        if !status.allowed {
            return Err(fail(400, status.message));
        }
    }
    let cost = amounts.comment;
    if let Err(i) = economy::spend(&mut tx, user_id, cost, reason::COMMENT, Some(post_id)).await? {
        return Err(insufficient(
            400,
            format!("Insufficient claves. You need {cost} 🥢"),
            i,
        ));
    }
    let reply_id: Uuid = sqlx::query_scalar(
        "INSERT INTO post_replies (post_id, user_id, content, mux_asset_id, mux_playback_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(post_id)
    .bind(user_id)
    .bind(&input.content)
    .bind(&input.mux_asset_id)
    .bind(&input.mux_playback_id)
    .bind(ctx.clock.now())
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("UPDATE posts SET reply_count = reply_count + 1 WHERE id = $1")
        .bind(post_id)
        .execute(&mut *tx)
        .await?;
    badge_check(&mut tx, user_id, "comments_posted").await?;
    let mut pending = notifications::Pending::default();
    notifications::notify(
        &mut tx,
        ctx.clock.now(),
        &notifications::New::reply(post.user_id, user_id, post_id, reply_id, &post.title, false),
        &mut pending,
    )
    .await?;
    let reply = load_reply(&mut tx, reply_id).await?;
    tx.commit().await?;
    jobs::wake_relay(ctx);
    pending.publish(ctx).await;
    Ok(ReplyWritten {
        reply,
        message: format!("Comment posted! (-{cost} 🥢)"),
    })
}

/// Marks a reply as the accepted solution (§4.9 "Accept", D13). The helper
/// is paid once per reply, whatever the retries or the concurrency.
/// `reply_id` is `None` for a malformed id (it is then "Reply not found").
pub async fn accept(
    ctx: &Context,
    user_id: Uuid,
    post_id: Uuid,
    reply_id: Option<Uuid>,
) -> Result<Done> {
    let amounts = Amounts::from_config(&ctx.config);
    let message = format!(
        "Solution marked! Helper awarded {} 🥢",
        amounts.accepted_answer
    );
    let mut tx = ctx.db.begin().await?;
    let post = lock_post(&mut tx, post_id)
        .await?
        .ok_or_else(post_not_found)?;
    if post.user_id != user_id {
        return Err(fail(403, "Only the question author can mark a solution"));
    }
    if post.post_type != "lab" {
        return Err(fail(400, "Solutions are only for Lab questions"));
    }
    let reply: Option<(Uuid, bool)> = match reply_id {
        Some(rid) => sqlx::query_as(
            "SELECT user_id, is_accepted_answer FROM post_replies WHERE id = $1 AND post_id = $2",
        )
        .bind(rid)
        .bind(post_id)
        .fetch_optional(&mut *tx)
        .await?,
        None => None,
    };
    let (Some(reply_id), Some((helper, already))) = (reply_id, reply) else {
        return Err(fail(404, "Reply not found"));
    };
    if helper == user_id {
        return Err(fail(400, "You can't accept your own answer"));
    }
    if already {
        // Accepting the same reply again changes nothing and pays nothing.
        tx.rollback().await?;
        return Ok(Done { message });
    }
    sqlx::query(
        "UPDATE post_replies SET is_accepted_answer = (id = $2)
         WHERE post_id = $1 AND (is_accepted_answer OR id = $2)",
    )
    .bind(post_id)
    .bind(reply_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE posts SET accepted_answer_id = $2, is_solved = true WHERE id = $1")
        .bind(post_id)
        .bind(reply_id)
        .execute(&mut *tx)
        .await?;
    let key = format!("accepted_answer:{reply_id}");
    let paid = economy::credit(
        &mut tx,
        helper,
        amounts.accepted_answer,
        reason::ACCEPTED_ANSWER,
        Some(post_id),
        Some(&key),
    )
    .await?;
    if paid.is_some() {
        bump_stat(&mut tx, helper, "solutions_accepted_count").await?;
        sqlx::query("UPDATE user_profiles SET reputation = reputation + 1 WHERE user_id = $1")
            .bind(helper)
            .execute(&mut *tx)
            .await?;
        badge_check(&mut tx, helper, "solutions_accepted").await?;
    }
    // The first acceptance of this reply only (the key is per reply).
    let mut pending = notifications::Pending::default();
    notifications::notify(
        &mut tx,
        ctx.clock.now(),
        &notifications::New::answer_accepted(helper, user_id, post_id, reply_id, &post.title),
        &mut pending,
    )
    .await?;
    tx.commit().await?;
    jobs::wake_relay(ctx);
    pending.publish(ctx).await;
    Ok(Done { message })
}

// ---------------------------------------------------------------------------
// Tags and stats
// ---------------------------------------------------------------------------

/// Every tag, ordered by name.
pub async fn tags(db: &PgPool) -> Result<Vec<Tag>> {
    Ok(sqlx::query_as(
        "SELECT slug::text, name::text, category::text, usage_count
         FROM community_tags ORDER BY name, slug",
    )
    .fetch_all(db)
    .await?)
}

/// `active_now` is simulated (§4.9): `max(3, max(5, floor(members*0.02)) + randint(-3, 5))`.
pub fn simulated_active_now(member_count: i64) -> i64 {
    let base = std::cmp::max(5, member_count * 2 / 100);
    let jitter = rand::rng().random_range(-3..=5);
    std::cmp::max(3, base + jitter)
}

/// Public community stats (§4.9 "Stats").
pub async fn stats(db: &PgPool) -> Result<CommunityStats> {
    let member_count: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(db)
        .await?;
    let leaderboard: Vec<LeaderboardEntry> = sqlx::query_as(
        "WITH top AS (
             SELECT user_id, count(*) AS posts FROM posts
             GROUP BY user_id ORDER BY count(*) DESC, user_id LIMIT 3
         )
         SELECT top.user_id AS id,
                COALESCE(pr.first_name, 'User') AS first_name,
                pr.avatar_url,
                (top.posts * 5
                 + COALESCE((SELECT count(*) FROM post_reactions r JOIN posts p ON p.id = r.post_id
                             WHERE p.user_id = top.user_id), 0) * 2
                 + COALESCE((SELECT count(*) FROM post_replies rp WHERE rp.user_id = top.user_id), 0) * 3
                )::bigint AS score,
                row_number() OVER (ORDER BY top.posts DESC, top.user_id) AS rank
         FROM top LEFT JOIN user_profiles pr ON pr.user_id = top.user_id
         ORDER BY rank",
    )
    .fetch_all(db)
    .await?;
    Ok(CommunityStats {
        member_count,
        active_now: simulated_active_now(member_count),
        leaderboard,
    })
}

// ---------------------------------------------------------------------------
// Optional Redis cache of feed pages (§4.10)
// ---------------------------------------------------------------------------

/// Caches, per filter and page, the ordered list of post ids: the part of a
/// feed page that is the same for every viewer and that only post creation,
/// edits (tags) and deletion change. The rows themselves (counters, authors,
/// playback ids) are always read fresh by primary key, so writes made
/// elsewhere (webhooks, profile edits) never show stale.
///
/// Pages are stored under a generation number that every invalidating write
/// bumps after its commit; a page stored under an older generation is never
/// read again. The cache is best effort: any Redis error (or Redis being
/// down) falls back to the database, and after an error this process skips
/// the cache for a while, so a dead Redis costs no latency.
pub mod cache {
    use super::FeedQuery;
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

    /// `feed:{stage|lab|all}:page:{skip}:{limit}:v{generation}:{tag as hex}`.
    fn page_key(ctx: &Context, version: i64, q: &FeedQuery) -> String {
        let kind = match q.post_type.as_deref() {
            None | Some("") => "all".to_string(),
            Some(t @ ("stage" | "lab")) => t.to_string(),
            Some(other) => format!("x{}", hex(other)),
        };
        let tag = hex(q.tag.as_deref().unwrap_or(""));
        ctx.redis.key(&format!(
            "feed:{kind}:page:{}:{}:v{version}:{tag}",
            q.skip, q.limit
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

    /// (generation, post type, tag, skip, limit)
    type LocalKey = (i64, Option<String>, Option<String>, i64, i64);
    type LocalPages = HashMap<LocalKey, (std::time::Instant, Arc<Vec<Uuid>>)>;
    /// Pages this process has read, per Redis namespace, for the current
    /// generation only (older ones are dropped on the next store): a hit costs
    /// no Redis read of the page.
    static LOCAL: LazyLock<Mutex<HashMap<String, LocalPages>>> = LazyLock::new(Default::default);
    /// Pages kept per namespace.
    const LOCAL_MAX: usize = 512;

    fn local_key(version: i64, q: &FeedQuery) -> LocalKey {
        let blank = |s: &Option<String>| s.clone().filter(|v| !v.is_empty());
        (version, blank(&q.post_type), blank(&q.tag), q.skip, q.limit)
    }

    /// This process's copy of a page of generation `version` (at most
    /// [`TTL_SECS`] old).
    pub fn local_get(ctx: &Context, version: i64, q: &FeedQuery) -> Option<Arc<Vec<Uuid>>> {
        let map = LOCAL.lock().unwrap_or_else(|e| e.into_inner());
        let (at, ids) = map
            .get(ctx.redis.namespace())?
            .get(&local_key(version, q))?;
        (at.elapsed() < Duration::from_secs(TTL_SECS)).then(|| ids.clone())
    }

    /// Keeps a page of generation `version` in this process.
    pub fn local_put(ctx: &Context, version: i64, q: &FeedQuery, ids: Arc<Vec<Uuid>>) {
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
    pub async fn get(ctx: &Context, version: i64, q: &FeedQuery) -> Option<Vec<Uuid>> {
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
    pub async fn put(ctx: &Context, version: i64, q: &FeedQuery, ids: &[Uuid]) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_escaping() {
        assert_eq!(escape_like("50%_off\\"), "50\\%\\_off\\\\");
        assert_eq!(escape_like("mambo"), "mambo");
    }

    #[test]
    fn literal_wording() {
        assert_eq!(literal_expected(&["stage", "lab"]), "'stage' or 'lab'");
        assert_eq!(
            literal_expected(&["fire", "ruler", "clap"]),
            "'fire', 'ruler' or 'clap'"
        );
    }

    #[test]
    fn slot_messages() {
        let s = slot_status_for(2, 5);
        assert!(s.allowed);
        assert_eq!(s.message, "You have 2/5 video slots used.");
        let s = slot_status_for(5, 5);
        assert!(!s.allowed);
        assert_eq!(
            s.message,
            "You've reached your 5 video limit. Delete an old video to post a new one."
        );
    }

    #[test]
    fn active_now_bounds() {
        for _ in 0..100 {
            let a = simulated_active_now(10);
            assert!((3..=10).contains(&a));
            let b = simulated_active_now(1000);
            assert!((17..=25).contains(&b));
        }
    }

    #[test]
    fn lab_body_schema() {
        let mut p = NewPost {
            post_type: "lab".into(),
            title: "How?".into(),
            body: Field::Value(String::new()),
            tags: vec!["mambo".into()],
            feedback_type: "coach".into(),
            ..Default::default()
        };
        let e = p.validate().unwrap_err();
        match e {
            Error::Http { status, detail, .. } => {
                assert_eq!(status, 422);
                assert_eq!(
                    detail[0]["msg"],
                    "Value error, Body is required for Lab questions"
                );
                assert_eq!(detail[0]["loc"], json!(["body", "body"]));
            }
            _ => panic!(),
        }
        p.body = Field::Absent;
        assert!(p.validate().is_ok());
        p.body = Field::Value("  ".into());
        assert!(p.validate().is_ok());
    }
}
