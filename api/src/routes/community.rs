//! Community endpoints (API.md §3.8): the Stage and the Lab.
//!
//! Errors of the write endpoints carry `detail` as the whole result object
//! (`{success:false, message, required?, balance?}`); that shape is built in
//! `mambo_core::community`.

use crate::auth::UserAuth;
use crate::deferred::LaterJson;
use crate::error::{ApiError, ApiResult};
use crate::fast_json::FastJson;
use crate::state::AppState;
use crate::types::{parse_id, ts};
use mambo_core::Error as CoreError;
use mambo_core::community::{self, FeedQuery, Field};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{Object, OpenApi};
use serde_json::json;
use uuid::Uuid;

pub struct CommunityApi;

// ---------------------------------------------------------------------------
// Shapes
// ---------------------------------------------------------------------------

#[derive(Object, serde::Serialize, Debug, Clone)]
pub struct PostUserOut {
    /// users.id
    id: String,
    first_name: String,
    last_name: String,
    avatar_url: Option<String>,
    is_pro: bool,
    level: i32,
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
        }
    }
}

#[derive(Object, serde::Serialize, Debug, Clone)]
pub struct PostItemOut {
    id: String,
    user: PostUserOut,
    /// `stage` or `lab`
    post_type: String,
    title: String,
    body: Option<String>,
    mux_playback_id: Option<String>,
    video_duration_seconds: Option<i32>,
    tags: Vec<String>,
    is_wip: bool,
    /// `coach` or `hype`
    feedback_type: String,
    is_solved: bool,
    reaction_count: i32,
    reply_count: i32,
    /// The caller's reaction: `fire`, `ruler`, `clap` or null
    user_reaction: Option<String>,
    created_at: String,
    updated_at: String,
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
        }
    }
}

#[derive(Object, serde::Serialize, Debug, Clone)]
pub struct ReplyItemOut {
    id: String,
    user: PostUserOut,
    content: String,
    mux_playback_id: Option<String>,
    is_accepted_answer: bool,
    created_at: String,
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
        }
    }
}

#[derive(Object, serde::Serialize, Debug)]
pub struct PostDetailOut {
    #[oai(flatten)]
    #[serde(flatten)]
    post: PostItemOut,
    /// Accepted answer first, then oldest first
    replies: Vec<ReplyItemOut>,
}

/// §3.0 SlotStatus.
#[derive(Object, Debug)]
pub struct SlotStatusOut {
    allowed: bool,
    current_slots: i64,
    max_slots: i64,
    message: String,
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
    slug: String,
    name: String,
    category: Option<String>,
    usage_count: i32,
}

#[derive(Object, Debug)]
pub struct CommunityLeaderboardEntryOut {
    id: String,
    first_name: String,
    avatar_url: Option<String>,
    score: i64,
    rank: i64,
}

#[derive(Object, Debug)]
pub struct CommunityStatsOut {
    member_count: i64,
    /// Simulated (§4.9)
    active_now: i64,
    leaderboard: Vec<CommunityLeaderboardEntryOut>,
}

#[derive(Object, Debug)]
pub struct PostWrittenOut {
    success: bool,
    post: PostItemOut,
    message: String,
}

#[derive(Object, Debug)]
pub struct ReplyWrittenOut {
    success: bool,
    reply: ReplyItemOut,
    message: String,
}

#[derive(Object, Debug)]
pub struct DoneOut {
    success: bool,
    message: String,
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
    post_type: String,
    /// 3 to 200 characters
    title: String,
    /// Required for Lab questions
    body: MaybeUndefined<String>,
    /// 1 to 5 tag slugs
    tags: Vec<String>,
    is_wip: Option<bool>,
    /// `coach` (default) or `hype`
    feedback_type: Option<String>,
    mux_asset_id: Option<String>,
    mux_playback_id: Option<String>,
    /// Seconds, not negative
    #[oai(validator(minimum(value = "0")))]
    video_duration_seconds: Option<i32>,
}

#[derive(Object, Debug)]
pub struct UpdatePostIn {
    title: Option<String>,
    body: Option<String>,
    tags: Option<Vec<String>>,
    is_wip: Option<bool>,
    feedback_type: Option<String>,
}

#[derive(Object, Debug)]
pub struct ReactIn {
    /// `fire`, `ruler` or `clap`
    reaction_type: String,
}

#[derive(Object, Debug)]
pub struct ReplyIn {
    /// 1 to 2000 characters
    content: String,
    mux_asset_id: Option<String>,
    mux_playback_id: Option<String>,
}

// ---------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------

/// A post id of a write endpoint: malformed means not found (D28), with the
/// object detail of community writes.
fn write_post_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw.trim()).map_err(|_| community::write_post_not_found().into())
}

/// An integer query parameter with FastAPI's validation errors.
pub(crate) fn int_query(
    name: &str,
    raw: Option<String>,
    default: i64,
    ge: i64,
    le: Option<i64>,
) -> Result<i64, CoreError> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    let loc = ["query", name];
    let v: i64 = raw.trim().parse().map_err(|_| {
        CoreError::validation(
            &loc,
            "Input should be a valid integer, unable to parse string as an integer",
            "int_parsing",
            json!(raw),
        )
    })?;
    if v < ge {
        return Err(CoreError::with_object(
            422,
            json!([{ "type": "greater_than_equal", "loc": loc,
                     "msg": format!("Input should be greater than or equal to {ge}"),
                     "input": raw, "ctx": { "ge": ge } }]),
        ));
    }
    if let Some(le) = le
        && v > le
    {
        return Err(CoreError::with_object(
            422,
            json!([{ "type": "less_than_equal", "loc": loc,
                     "msg": format!("Input should be less than or equal to {le}"),
                     "input": raw, "ctx": { "le": le } }]),
        ));
    }
    Ok(v)
}

fn page(
    post_type: Option<String>,
    tag: Option<String>,
    skip: Option<String>,
    limit: Option<String>,
) -> Result<FeedQuery, CoreError> {
    let skip = int_query("skip", skip, 0, 0, None)?;
    let limit = int_query(
        "limit",
        limit,
        community::LIMIT_DEFAULT,
        1,
        Some(community::LIMIT_MAX),
    )?;
    for (name, v) in [("post_type", &post_type), ("tag", &tag)] {
        if let Some(v) = v {
            let mut val = community::Validation::new();
            val.no_nul(&["query", name], v);
            val.finish()?;
        }
    }
    Ok(FeedQuery {
        post_type,
        tag,
        skip,
        limit,
    })
}

// ---------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------

#[OpenApi(tag = "crate::routes::Tag::Community")]
impl CommunityApi {
    /// Public community stats: members, simulated active count, top 3 posters
    #[oai(path = "/api/community/stats", method = "get")]
    async fn stats(&self, state: Data<&AppState>) -> ApiResult<Json<CommunityStatsOut>> {
        let s = community::stats(&state.ctx.db).await?;
        Ok(Json(CommunityStatsOut {
            member_count: s.member_count,
            active_now: s.active_now,
            leaderboard: s
                .leaderboard
                .into_iter()
                .map(|e| CommunityLeaderboardEntryOut {
                    id: e.id.to_string(),
                    first_name: e.first_name,
                    avatar_url: e.avatar_url,
                    score: e.score,
                    rank: e.rank,
                })
                .collect(),
        }))
    }

    /// The feed, newest first (`post_type` stage/lab, `tag`, `skip`, `limit` 1..50)
    #[oai(path = "/api/community/feed", method = "get")]
    async fn feed(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        post_type: Query<Option<String>>,
        tag: Query<Option<String>>,
        skip: Query<Option<String>>,
        limit: Query<Option<String>>,
    ) -> ApiResult<FastJson<Vec<PostItemOut>>> {
        let q = page(post_type.0, tag.0, skip.0, limit.0)?;
        let posts = community::feed(&state.ctx, auth.user().id, &q).await?;
        Ok(FastJson(posts.into_iter().map(Into::into).collect()))
    }

    /// Search posts by title or tag (`q` at least 2 characters)
    #[oai(path = "/api/community/search", method = "get")]
    async fn search(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        q: Query<Option<String>>,
        post_type: Query<Option<String>>,
        skip: Query<Option<String>>,
        limit: Query<Option<String>>,
    ) -> ApiResult<FastJson<Vec<PostItemOut>>> {
        let Some(text) = q.0 else {
            return Err(CoreError::validation(
                &["query", "q"],
                "Field required",
                "missing",
                serde_json::Value::Null,
            )
            .into());
        };
        let mut v = community::Validation::new();
        v.string_len(&["query", "q"], &text, 2, usize::MAX);
        v.finish()?;
        let page = page(post_type.0, None, skip.0, limit.0)?;
        let posts = community::search(&state.ctx, auth.user().id, &text, &page).await?;
        Ok(FastJson(posts.into_iter().map(Into::into).collect()))
    }

    /// A post with its replies
    #[oai(path = "/api/community/posts/:post_id", method = "get")]
    async fn post_detail(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        post_id: Path<String>,
    ) -> ApiResult<FastJson<PostDetailOut>> {
        let id = parse_id(&post_id.0, "Post not found")?;
        let detail = community::post_detail(&state.ctx.db, auth.user().id, id)
            .await?
            .ok_or_else(|| ApiError::msg(404, "Post not found"))?;
        Ok(FastJson(PostDetailOut {
            post: detail.post.into(),
            replies: detail.replies.into_iter().map(Into::into).collect(),
        }))
    }

    /// Create a post (Stage 15 claves, Lab 5 claves)
    #[oai(path = "/api/community/posts", method = "post")]
    async fn create_post(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        body: Json<CreatePostIn>,
    ) -> ApiResult<Json<PostWrittenOut>> {
        let b = body.0;
        let input = community::NewPost {
            post_type: b.post_type,
            title: b.title,
            body: match b.body {
                MaybeUndefined::Undefined => Field::Absent,
                MaybeUndefined::Null => Field::Null,
                MaybeUndefined::Value(v) => Field::Value(v),
            },
            tags: b.tags,
            is_wip: b.is_wip.unwrap_or(false),
            feedback_type: b.feedback_type.unwrap_or_else(|| "coach".into()),
            mux_asset_id: b.mux_asset_id,
            mux_playback_id: b.mux_playback_id,
            video_duration_seconds: b.video_duration_seconds,
        };
        let w = community::create_post(&state.ctx, auth.user().id, input).await?;
        Ok(Json(PostWrittenOut {
            success: true,
            post: w.post.into(),
            message: w.message,
        }))
    }

    /// Edit your post
    #[oai(path = "/api/community/posts/:post_id", method = "put")]
    async fn update_post(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        post_id: Path<String>,
        body: LaterJson<UpdatePostIn>,
    ) -> ApiResult<Json<PostWrittenOut>> {
        // Who may edit is decided before the body is looked at: a stranger
        // gets 403 (or 404) whatever they send.
        let id = write_post_id(&post_id.0)?;
        let user_id = auth.user().id;
        community::ensure_post_author(&state.ctx, user_id, id).await?;
        let b = body.parse()?;
        let input = community::PostUpdate {
            title: b.title,
            body: b.body,
            tags: b.tags,
            is_wip: b.is_wip,
            feedback_type: b.feedback_type,
        };
        let w = community::update_post(&state.ctx, user_id, id, input).await?;
        Ok(Json(PostWrittenOut {
            success: true,
            post: w.post.into(),
            message: w.message,
        }))
    }

    /// Delete a post (owner or admin)
    #[oai(path = "/api/community/posts/:post_id", method = "delete")]
    async fn delete_post(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        post_id: Path<String>,
    ) -> ApiResult<Json<DoneOut>> {
        let id = write_post_id(&post_id.0)?;
        let user = auth.user();
        let d = community::delete_post(&state.ctx, user.id, user.is_admin(), id).await?;
        Ok(Json(d.into()))
    }

    /// React to a post (1 clave; changing the type is free)
    #[oai(path = "/api/community/posts/:post_id/react", method = "post")]
    async fn react(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        post_id: Path<String>,
        body: Json<ReactIn>,
    ) -> ApiResult<Json<DoneOut>> {
        community::validate_reaction_type(&body.0.reaction_type)?;
        let id = write_post_id(&post_id.0)?;
        let d = community::react(&state.ctx, auth.user().id, id, &body.0.reaction_type).await?;
        Ok(Json(d.into()))
    }

    /// Remove your reaction (no refund)
    #[oai(path = "/api/community/posts/:post_id/react", method = "delete")]
    async fn unreact(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        post_id: Path<String>,
    ) -> ApiResult<Json<DoneOut>> {
        let id = write_post_id(&post_id.0)?;
        let d = community::unreact(&state.ctx, auth.user().id, id).await?;
        Ok(Json(d.into()))
    }

    /// Reply to a post (2 claves; closed in Hype mode)
    #[oai(path = "/api/community/posts/:post_id/replies", method = "post")]
    async fn reply(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        post_id: Path<String>,
        body: Json<ReplyIn>,
    ) -> ApiResult<Json<ReplyWrittenOut>> {
        let b = body.0;
        let input = community::NewReply {
            content: b.content,
            mux_asset_id: b.mux_asset_id,
            mux_playback_id: b.mux_playback_id,
        };
        input.validate()?;
        let id = write_post_id(&post_id.0)?;
        let w = community::reply(&state.ctx, auth.user().id, id, input).await?;
        Ok(Json(ReplyWrittenOut {
            success: true,
            reply: w.reply.into(),
            message: w.message,
        }))
    }

    /// Mark a reply as the accepted solution (question author only)
    #[oai(
        path = "/api/community/posts/:post_id/replies/:reply_id/accept",
        method = "post"
    )]
    async fn accept(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        post_id: Path<String>,
        reply_id: Path<String>,
    ) -> ApiResult<Json<DoneOut>> {
        let id = write_post_id(&post_id.0)?;
        let reply_id = Uuid::parse_str(reply_id.0.trim()).ok();
        let d = community::accept(&state.ctx, auth.user().id, id, reply_id).await?;
        Ok(Json(d.into()))
    }

    /// Can the caller upload another video? (§4.3)
    #[oai(path = "/api/community/upload-check", method = "get")]
    async fn upload_check(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
    ) -> ApiResult<Json<SlotStatusOut>> {
        let s = community::slot_status(&state.ctx, auth.user().id).await?;
        Ok(Json(s.into()))
    }

    /// Every tag, ordered by name
    #[oai(path = "/api/community/tags", method = "get")]
    async fn tags(&self, state: Data<&AppState>) -> ApiResult<Json<Vec<TagOut>>> {
        let tags = community::tags(&state.ctx.db).await?;
        Ok(Json(
            tags.into_iter()
                .map(|t| TagOut {
                    slug: t.slug,
                    name: t.name,
                    category: t.category,
                    usage_count: t.usage_count,
                })
                .collect(),
        ))
    }
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
                }],
            });
        }
    }
}
