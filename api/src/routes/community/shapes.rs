//! Response and request shapes of the community endpoints (§3.0).

use crate::types::ts;
use mambo_core::community;
use poem_openapi::Object;
use poem_openapi::types::MaybeUndefined;

// ---------------------------------------------------------------------------
// Shapes
// ---------------------------------------------------------------------------

#[derive(Object, serde::Serialize, Debug, Clone)]
pub struct PostUserOut {
    /// users.id
    pub(super) id: String,
    pub(super) first_name: String,
    pub(super) last_name: String,
    pub(super) avatar_url: Option<String>,
    pub(super) is_pro: bool,
    pub(super) level: i32,
    pub(super) username: Option<String>,
    /// Guild Master (performer, N6.5) under the settings in force
    pub(super) is_guild_master: bool,
    pub(super) equipped_border_sku: Option<String>,
    pub(super) equipped_title_sku: Option<String>,
}

impl From<community::PostUser> for PostUserOut {
    fn from(u: community::PostUser) -> Self {
        Self {
            id: u.id.to_string(),
            first_name: u.first_name,
            last_name: u.last_name,
            avatar_url: u.avatar_url,
            is_pro: u.is_pro,
            level: u.level,
            username: u.username,
            is_guild_master: u.is_guild_master,
            equipped_border_sku: u.equipped_border_sku,
            equipped_title_sku: u.equipped_title_sku,
        }
    }
}

#[derive(Object, serde::Serialize, Debug, Clone)]
pub struct PostItemOut {
    pub(super) id: String,
    pub(super) user: PostUserOut,
    /// `stage` or `lab`
    pub(super) post_type: String,
    pub(super) title: String,
    pub(super) body: Option<String>,
    pub(super) mux_playback_id: Option<String>,
    pub(super) video_duration_seconds: Option<i32>,
    pub(super) tags: Vec<String>,
    pub(super) is_wip: bool,
    /// `coach` or `hype`
    pub(super) feedback_type: String,
    pub(super) is_solved: bool,
    pub(super) reaction_count: i32,
    pub(super) reply_count: i32,
    /// The caller's reaction: `fire`, `ruler`, `clap`, `like` or null
    pub(super) user_reaction: Option<String>,
    pub(super) created_at: String,
    pub(super) updated_at: String,
    /// Hidden by moderation: only its author and admins see it
    pub(super) is_hidden: bool,
    /// Stage posts: `motw`, `original`, `guild` or null
    pub(super) video_type: Option<String>,
    /// Whether the caller saved the post (false for anonymous callers)
    pub(super) is_saved: bool,
}

impl From<community::PostItem> for PostItemOut {
    fn from(p: community::PostItem) -> Self {
        Self {
            id: p.id.to_string(),
            user: p.user.into(),
            post_type: p.post_type,
            title: p.title,
            body: p.body,
            mux_playback_id: p.mux_playback_id,
            video_duration_seconds: p.video_duration_seconds,
            tags: p.tags,
            is_wip: p.is_wip,
            feedback_type: p.feedback_type,
            is_solved: p.is_solved,
            reaction_count: p.reaction_count,
            reply_count: p.reply_count,
            user_reaction: p.user_reaction,
            created_at: ts(&p.created_at),
            updated_at: ts(&p.updated_at),
            is_hidden: p.is_hidden,
            video_type: p.video_type,
            is_saved: p.is_saved,
        }
    }
}

#[derive(Object, serde::Serialize, Debug, Clone)]
pub struct ReplyItemOut {
    pub(super) id: String,
    pub(super) user: PostUserOut,
    pub(super) content: String,
    pub(super) mux_playback_id: Option<String>,
    pub(super) is_accepted_answer: bool,
    pub(super) created_at: String,
    /// The top-level reply this one answers; null for a top-level reply
    pub(super) parent_reply_id: Option<String>,
    /// A deleted reply kept in place for its replies (`content` is `[deleted]`)
    pub(super) is_deleted: bool,
    /// Hidden by moderation: only its author and admins see it
    pub(super) is_hidden: bool,
}

impl From<community::ReplyItem> for ReplyItemOut {
    fn from(r: community::ReplyItem) -> Self {
        Self {
            id: r.id.to_string(),
            user: r.user.into(),
            content: r.content,
            mux_playback_id: r.mux_playback_id,
            is_accepted_answer: r.is_accepted_answer,
            created_at: ts(&r.created_at),
            parent_reply_id: r.parent_reply_id.map(|id| id.to_string()),
            is_deleted: r.is_deleted,
            is_hidden: r.is_hidden,
        }
    }
}

#[derive(Object, serde::Serialize, Debug)]
pub struct PostDetailOut {
    #[oai(flatten)]
    #[serde(flatten)]
    pub(super) post: PostItemOut,
    /// Accepted answer first, then oldest first
    pub(super) replies: Vec<ReplyItemOut>,
}

/// §3.0 SlotStatus.
#[derive(Object, Debug)]
pub struct SlotStatusOut {
    pub(super) allowed: bool,
    pub(super) current_slots: i64,
    pub(super) max_slots: i64,
    pub(super) message: String,
}

impl From<community::SlotStatus> for SlotStatusOut {
    fn from(s: community::SlotStatus) -> Self {
        Self {
            allowed: s.allowed,
            current_slots: s.current_slots,
            max_slots: s.max_slots,
            message: s.message,
        }
    }
}

#[derive(Object, Debug)]
pub struct TagOut {
    pub(super) slug: String,
    pub(super) name: String,
    pub(super) category: Option<String>,
    pub(super) usage_count: i32,
}

#[derive(Object, Debug)]
pub struct CommunityLeaderboardEntryOut {
    pub(super) id: String,
    /// Absent from the legacy answer's top 3 (its shape is API.md's); present
    /// (null when unset) on boards and the hall of fame (N5.4)
    pub(super) username: MaybeUndefined<String>,
    pub(super) first_name: String,
    pub(super) avatar_url: Option<String>,
    pub(super) score: i64,
    pub(super) rank: i64,
}

impl CommunityLeaderboardEntryOut {
    /// `with_username`: false for the legacy top 3.
    pub(super) fn from_member(
        m: community::leaderboard::RankedMember,
        with_username: bool,
    ) -> Self {
        Self {
            id: m.id.to_string(),
            username: match (with_username, m.username) {
                (false, _) => MaybeUndefined::Undefined,
                (true, Some(u)) => MaybeUndefined::Value(u),
                (true, None) => MaybeUndefined::Null,
            },
            first_name: m.first_name,
            avatar_url: m.avatar_url,
            score: m.score,
            rank: m.rank,
        }
    }
}

#[derive(Object, Debug)]
pub struct CommunityStatsOut {
    pub(super) member_count: i64,
    /// Simulated (§4.9) in the legacy answer; with `period`/`category`/`limit`,
    /// profiles with a streak touch in the last 24 h (N5.4)
    pub(super) active_now: i64,
    /// Legacy: the top 3 by post count; otherwise the board's first `limit`
    pub(super) leaderboard: Vec<CommunityLeaderboardEntryOut>,
    /// The top 5 of the all-time overall board
    pub(super) hall_of_fame: Vec<CommunityLeaderboardEntryOut>,
    /// `weekly`, `monthly`, `all_time`; null in the legacy answer
    pub(super) period: Option<String>,
    /// `overall`, `helpful`, `creative`, `active`; null in the legacy answer
    pub(super) category: Option<String>,
}

impl From<community::CommunityStats> for CommunityStatsOut {
    fn from(s: community::CommunityStats) -> Self {
        let boards = s.board.is_some();
        Self {
            member_count: s.member_count,
            active_now: s.active_now,
            leaderboard: s
                .leaderboard
                .into_iter()
                .map(|m| CommunityLeaderboardEntryOut::from_member(m, boards))
                .collect(),
            hall_of_fame: s
                .hall_of_fame
                .into_iter()
                .map(|m| CommunityLeaderboardEntryOut::from_member(m, true))
                .collect(),
            period: s.board.map(|b| b.period.as_str().to_string()),
            category: s.board.map(|b| b.category.as_str().to_string()),
        }
    }
}

#[derive(Object, Debug)]
pub struct MyRankOut {
    /// 1 + the snapshot's entries ahead of `score`; null when `score` is 0
    pub(super) rank: Option<i64>,
    /// The caller's score on the board, live
    pub(super) score: i64,
    pub(super) period: String,
    pub(super) category: String,
}

impl From<community::leaderboard::MyRank> for MyRankOut {
    fn from(r: community::leaderboard::MyRank) -> Self {
        Self {
            rank: r.rank,
            score: r.score,
            period: r.period.to_string(),
            category: r.category.to_string(),
        }
    }
}

#[derive(Object, Debug)]
pub struct PostWrittenOut {
    pub(super) success: bool,
    pub(super) post: PostItemOut,
    pub(super) message: String,
}

/// A posting reward paid by this request (N6.4).
#[derive(Object, Debug, Clone)]
#[oai(rename = "PostReward")]
pub struct RewardOut {
    pub amount: i64,
    /// `post_reward`
    pub reason: String,
    pub new_balance: i64,
}

impl From<mambo_core::community::Reward> for RewardOut {
    fn from(r: mambo_core::community::Reward) -> Self {
        Self {
            amount: r.amount,
            reason: r.reason.into(),
            new_balance: r.new_balance,
        }
    }
}

/// `POST /api/community/posts`: the post and, when one was paid, its reward.
#[derive(Object, Debug)]
pub struct PostCreatedOut {
    pub(super) success: bool,
    pub(super) post: PostItemOut,
    pub(super) message: String,
    /// The posting reward paid for this post (N6.4), `null` when none
    pub(super) reward: Option<RewardOut>,
}

#[derive(Object, Debug)]
pub struct ReplyWrittenOut {
    pub(super) success: bool,
    pub(super) reply: ReplyItemOut,
    pub(super) message: String,
}

/// The answer of a react call. A request that named no type (a `like`)
/// also gets the caller's state after the call (N5.4).
#[derive(Object, Debug)]
pub struct ReactedOut {
    pub(super) success: bool,
    pub(super) message: String,
    /// The caller's reaction now (only when the request named no type)
    #[oai(skip_serializing_if_is_none)]
    pub(super) user_reaction: Option<String>,
    /// The post's reaction count now (only when the request named no type)
    #[oai(skip_serializing_if_is_none)]
    pub(super) reaction_count: Option<i32>,
}

#[derive(Object, Debug)]
pub struct DoneOut {
    pub(super) success: bool,
    pub(super) message: String,
}

impl From<community::Done> for DoneOut {
    fn from(d: community::Done) -> Self {
        Self {
            success: true,
            message: d.message,
        }
    }
}

#[derive(Object, Debug)]
pub struct CreatePostIn {
    /// `stage` or `lab`
    pub(super) post_type: String,
    /// 3 to 200 characters
    pub(super) title: String,
    /// Required for Lab questions
    pub(super) body: MaybeUndefined<String>,
    /// 1 to 5 tag slugs
    pub(super) tags: Vec<String>,
    pub(super) is_wip: Option<bool>,
    /// `coach` (default) or `hype`
    pub(super) feedback_type: Option<String>,
    pub(super) mux_asset_id: Option<String>,
    pub(super) mux_playback_id: Option<String>,
    /// Seconds, not negative
    #[oai(validator(minimum(value = "0")))]
    pub(super) video_duration_seconds: Option<i32>,
    /// Stage posts: `motw`, `original` or `guild` (required when the
    /// platform setting `community.video_type_required` is on); lab posts
    /// store null
    pub(super) video_type: Option<String>,
}

#[derive(Object, Debug)]
pub struct UpdatePostIn {
    pub(super) title: Option<String>,
    pub(super) body: Option<String>,
    pub(super) tags: Option<Vec<String>>,
    pub(super) is_wip: Option<bool>,
    pub(super) feedback_type: Option<String>,
}

#[derive(Object, Debug)]
pub struct ReactIn {
    /// `fire`, `ruler`, `clap` or `like`; absent or null (or no body at
    /// all) means `like`
    pub(super) reaction_type: Option<String>,
}

#[derive(Object, Debug)]
pub struct ReplyIn {
    /// 1 to 2000 characters
    pub(super) content: String,
    pub(super) mux_asset_id: Option<String>,
    pub(super) mux_playback_id: Option<String>,
    /// The reply answered; a reply to a nested reply goes under the same
    /// top-level reply
    pub(super) parent_reply_id: Option<String>,
}

/// `PUT /api/community/posts/{post_id}/replies/{reply_id}`.
#[derive(Object, Debug)]
pub struct UpdateReplyIn {
    /// 1 to 2000 characters
    pub(super) content: String,
}

/// `{success: true}`.
#[derive(Object, Debug)]
pub struct SuccessOut {
    pub(super) success: bool,
}

/// `{success: true, saved}` of saving or unsaving a post.
#[derive(Object, Debug)]
pub struct SavedOut {
    pub(super) success: bool,
    /// Whether the post is now saved
    pub(super) saved: bool,
}

/// `{reason, note?}` of a report.
#[derive(Object, Debug)]
pub struct ReportIn {
    /// `spam`, `harassment`, `inappropriate` or `other`
    pub(super) reason: String,
    /// At most 500 characters
    pub(super) note: Option<String>,
}

/// A report in the admin's moderation queue.
#[derive(Object, Debug)]
pub struct ReportItemOut {
    pub(super) id: String,
    /// `post` or `reply`
    pub(super) target_type: String,
    pub(super) target_id: String,
    pub(super) post_id: String,
    pub(super) reason: String,
    pub(super) note: Option<String>,
    pub(super) reporter: PostUserOut,
    /// Reports on the same target with the same status
    pub(super) report_count: i64,
    /// Whether the target is hidden now
    pub(super) is_hidden: bool,
    /// `open` or `resolved`
    pub(super) status: String,
    pub(super) created_at: String,
    pub(super) resolved_at: Option<String>,
    /// `hide`, `unhide`, `dismiss` or `delete`
    pub(super) resolution: Option<String>,
}

impl From<community::ReportItem> for ReportItemOut {
    fn from(r: community::ReportItem) -> Self {
        Self {
            id: r.id.to_string(),
            target_type: r.target_type,
            target_id: r.target_id.to_string(),
            post_id: r.post_id.to_string(),
            reason: r.reason,
            note: r.note,
            reporter: r.reporter.into(),
            report_count: r.report_count,
            is_hidden: r.is_hidden,
            status: r.status,
            created_at: ts(&r.created_at),
            resolved_at: r.resolved_at.as_ref().map(ts),
            resolution: r.resolution,
        }
    }
}

/// `{action}` of a resolution.
#[derive(Object, Debug)]
pub struct ResolveIn {
    /// `hide`, `unhide`, `dismiss` or `delete`
    pub(super) action: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fast_json::assert_same_json;

    #[test]
    fn fast_json_matches_the_openapi_serialization() {
        for some in [false, true] {
            let opt = |s: &str| some.then(|| s.to_string());
            let user = PostUserOut {
                id: "u1".into(),
                first_name: "Ana".into(),
                last_name: "O'Neil \\ \"x\"".into(),
                avatar_url: opt("a"),
                is_pro: some,
                level: 4,
                username: opt("ana_\"x"),
                is_guild_master: !some,
                equipped_border_sku: opt("border_gold"),
                equipped_title_sku: opt("title"),
            };
            let post = PostItemOut {
                id: "p1".into(),
                user: user.clone(),
                post_type: "lab".into(),
                title: "T".into(),
                body: opt("b\n"),
                mux_playback_id: opt("m"),
                video_duration_seconds: some.then_some(30),
                tags: vec!["mambo".into()],
                is_wip: some,
                feedback_type: "coach".into(),
                is_solved: !some,
                reaction_count: 3,
                reply_count: 1,
                user_reaction: opt("fire"),
                created_at: "2026-11-27T10:00:00.123456".into(),
                updated_at: "2026-11-27T10:00:00".into(),
                is_hidden: some,
                video_type: opt("motw"),
                is_saved: !some,
            };
            assert_same_json(&vec![post.clone()]);
            assert_same_json(&PostDetailOut {
                post,
                replies: vec![ReplyItemOut {
                    id: "r1".into(),
                    user,
                    content: "c".into(),
                    mux_playback_id: opt("m"),
                    is_accepted_answer: some,
                    created_at: "2026-11-27T10:00:00".into(),
                    parent_reply_id: opt("r0"),
                    is_deleted: !some,
                    is_hidden: !some,
                }],
            });
        }
    }
}
