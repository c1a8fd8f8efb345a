//! The community (API.md §3.8, §4.3, §4.9): the Stage (video posts) and the Lab
//! (questions with accepted answers), reactions, replies, tags, search, stats,
//! and the video-slot rule shared with the wallet.
//!
//! Every write runs in one transaction: the spend (`economy::spend`, a
//! conditional UPDATE), the ledger row, the action's rows, the counters (SQL
//! increments) and the queued jobs (outbox) commit together or not at all.
//!
//! Lock order, to keep concurrent writes free of deadlocks: the post row first
//! (`FOR UPDATE`), then the reply row, then user profiles in ascending
//! `user_id` order.
//!
//! Threads and moderation (API-NEXT.md N4, issue 17):
//! - `posts.reply_count` is the number of the post's rows in `post_replies`:
//!   every reply that was not removed, `[deleted]` placeholders and hidden
//!   replies included. Each write that adds or removes a row changes it in
//!   the same transaction (a placeholder left without children goes with its
//!   last child).
//! - Hidden content is decided in one place, `visibility`: shown to its
//!   author and admins (`is_hidden: true`), absent (404 / left out) for
//!   everyone else, reads and writes alike.
//! - Errors of the community routes keep the community write shape
//!   (`detail: {success: false, message}`); the admin moderation routes use
//!   the plain `detail` string of the admin area.
//!
//! One file per part: `posts`, `replies` (threads, edit, delete, accept),
//! `reactions`, `feed` (and its `cache`), `search`, `saved`, `moderation`
//! (reports, the queue, resolve), `visibility`, `rows` (reading posts as a
//! viewer sees them), `tags`, `stats` (and `leaderboard`, the snapshot it
//! reads), `slots`, `validation`, `write` (what every write shares).

pub mod cache;
mod erasure;
mod feed;
pub mod leaderboard;
mod moderation;
mod posts;
mod reactions;
mod replies;
pub mod rewards;
mod rows;
mod saved;
mod search;
mod slots;
mod stats;
mod tags;
mod validation;
mod visibility;
mod write;

pub use erasure::{Erased, erase_author};
pub use feed::{FeedFilter, FeedQuery, feed, feed_page};
pub use moderation::{
    KEEP_RESOLVED_REPORTS_DAYS, NewReport, REPORT_REASONS, REPORT_STATUSES, RESOLVE_ACTIONS,
    ReportItem, Target, prune_reports, report, reports, resolve,
};
pub use posts::{
    NewPost, PostUpdate, create_post, delete_post, ensure_post_author, post_detail, post_detail_as,
    update_post,
};
pub use reactions::{Reacted, react, unreact, validate_reaction_type};
pub use replies::{
    AUDIT_POST_DELETE, AUDIT_REPLY_DELETE, AUDIT_REPLY_UPDATE, NewReply, accept, delete_reply,
    ensure_reply_editor, reply, update_reply,
};
pub use rewards::Reward;
pub use saved::{save, saved, unsave};
pub use search::{escape_like, search};
pub use slots::{
    SlotStatus, question_limit, question_limit_reached, question_status_for, questions_used,
    refused_status, slot_status, slot_status_conn, slot_status_for, upload_check, upload_check_lab,
};
pub use stats::{CommunityStats, simulated_active_now, stats};
pub use tags::{Tag, tags};
pub use validation::{Field, Validation};
pub use write::write_post_not_found;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const POST_TYPES: &[&str] = &["stage", "lab"];
pub const FEEDBACK_TYPES: &[&str] = &["hype", "coach"];
pub const REACTION_TYPES: &[&str] = &["fire", "ruler", "clap", "like"];
/// The reaction of a request that names none (N5.4: the May 2026 frontend's
/// one button).
pub const DEFAULT_REACTION: &str = "like";
/// A Stage post's kind of video (N5.4): Move of the Week, an original, a
/// Guild piece.
pub const VIDEO_TYPES: &[&str] = &["motw", "original", "guild"];
/// At most this many slugs in the feed's and search's `tags=a,b` (N5.4).
pub const FILTER_TAGS_MAX: usize = 10;

/// Feed and search page size bounds (§1.5).
pub const LIMIT_DEFAULT: i64 = 20;
pub const LIMIT_MAX: i64 = 50;

// ---------------------------------------------------------------------------
// Shapes
// ---------------------------------------------------------------------------

/// Who reads (N5.4): a signed-in user, or nobody (the anonymous feed
/// preview), with the Guild Master rule of the settings in force (N6.5), so
/// that every PostUser of one request is judged by one snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewer {
    pub id: Option<Uuid>,
    /// `guild_master.includes_trialing`.
    pub gm_includes_trialing: bool,
}

impl Viewer {
    pub fn new(id: Option<Uuid>, settings: &crate::settings::Settings) -> Self {
        Self {
            id,
            gm_includes_trialing: settings.guild_master.includes_trialing,
        }
    }

    pub fn user(id: Uuid, settings: &crate::settings::Settings) -> Self {
        Self::new(Some(id), settings)
    }
}

/// The author shown on a post or reply (§3.0 PostUser, N5.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostUser {
    pub id: Uuid,
    pub first_name: String,
    pub last_name: String,
    pub avatar_url: Option<String>,
    pub is_pro: bool,
    pub level: i32,
    pub username: Option<String>,
    /// The one Guild Master definition (N6.5), under the request's settings.
    pub is_guild_master: bool,
    pub equipped_border_sku: Option<String>,
    pub equipped_title_sku: Option<String>,
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
    /// Hidden by moderation (N4.4): only its author and admins see it.
    pub is_hidden: bool,
    /// `motw`, `original`, `guild` (Stage posts that said), else `None` (N5.4).
    pub video_type: Option<String>,
    /// Whether the viewer saved the post (N4.2); false for anonymous viewers.
    pub is_saved: bool,
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
    /// The top-level reply this one answers (N4.1); `None` for a top-level reply.
    pub parent_reply_id: Option<Uuid>,
    /// A deleted reply that keeps its place for its children (`[deleted]`).
    pub is_deleted: bool,
    /// Hidden by moderation (N4.4): only its author and admins see it.
    pub is_hidden: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PostDetail {
    pub post: PostItem,
    pub replies: Vec<ReplyItem>,
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
    /// The posting reward this write paid (N6.4; creation only).
    pub reward: Option<rewards::Reward>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplyWritten {
    pub reply: ReplyItem,
    pub message: String,
}
