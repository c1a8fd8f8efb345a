//! The Stage and the Lab: stats, feed, search, posts, reactions, replies, tags.

use super::params::{page, write_post_id};
use super::shapes::*;
use crate::auth::{OptionalAuth, UserAuth};
use crate::deferred::LaterJson;
use crate::error::{ApiError, ApiResult};
use crate::fast_json::FastJson;
use crate::routes::admin::audit_actor;
use crate::state::AppState;
use crate::types::parse_id;
use mambo_core::Error as CoreError;
use mambo_core::community::{self, Field};
use mambo_core::{participation, verification};
use poem::Request;
use poem::web::Data;
use poem_openapi::OpenApi;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;

pub struct CommunityApi;

#[OpenApi(tag = "crate::routes::Tag::Community")]
impl CommunityApi {
    /// Public community stats: members, active count, a leaderboard and the
    /// hall of fame. Without `period`, `category` and `limit`: the legacy
    /// answer (top 3 posters, simulated active count, `period`/`category`
    /// null); with any of them a board (`period` weekly|monthly|all_time,
    /// `category` overall|helpful|creative|active, `limit` 1..50)
    #[oai(path = "/api/community/stats", method = "get")]
    async fn stats(
        &self,
        state: Data<&AppState>,
        period: Query<Option<String>>,
        category: Query<Option<String>>,
        limit: Query<Option<String>>,
    ) -> ApiResult<Json<CommunityStatsOut>> {
        let board = if period.0.is_none() && category.0.is_none() && limit.0.is_none() {
            None
        } else {
            Some(community::leaderboard::parse_query(
                period.0.as_deref(),
                category.0.as_deref(),
                limit.0.as_deref(),
            )?)
        };
        let s = community::stats(&state.ctx.db, state.ctx.clock.now(), board).await?;
        Ok(Json(s.into()))
    }

    /// The caller's live score on a board and its rank against the board's
    /// snapshot (`rank` null when the score is 0)
    #[oai(path = "/api/community/stats/my-rank", method = "get")]
    async fn my_rank(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        period: Query<Option<String>>,
        category: Query<Option<String>>,
    ) -> ApiResult<Json<MyRankOut>> {
        let (board, _) =
            community::leaderboard::parse_query(period.0.as_deref(), category.0.as_deref(), None)?;
        let r = community::leaderboard::my_rank(
            &state.ctx.db,
            auth.user().id,
            board,
            state.ctx.clock.now(),
        )
        .await?;
        Ok(Json(r.into()))
    }

    /// The feed, newest first (`post_type` stage/lab, `tag`, `tags` a,b (any,
    /// at most 10), `video_type` motw/original/guild, `skip`, `limit` 1..50)
    ///
    /// Anonymous callers (no or an invalid token) see the newest
    /// `community.anonymous_feed_preview` posts of the filtered feed only
    /// (the window is cut there); with the setting 0 they get 401.
    #[oai(path = "/api/community/feed", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn feed(
        &self,
        state: Data<&AppState>,
        auth: OptionalAuth,
        post_type: Query<Option<String>>,
        tag: Query<Option<String>>,
        tags: Query<Option<String>>,
        video_type: Query<Option<String>>,
        skip: Query<Option<String>>,
        limit: Query<Option<String>>,
    ) -> ApiResult<FastJson<Vec<PostItemOut>>> {
        let snap = state.ctx.settings_now().await?;
        let viewer = auth.user().map(|u| u.id);
        if viewer.is_none() && snap.settings.community.anonymous_feed_preview == 0 {
            return Err(ApiError::msg(401, "Could not validate credentials"));
        }
        let q = page(post_type.0, tag.0, skip.0, limit.0)?;
        let filter = community::FeedFilter::from_query(tags.0.as_deref(), video_type.0.as_deref())?;
        let posts = community::feed_page(&state.ctx, &snap.settings, viewer, &q, &filter).await?;
        Ok(FastJson(posts.into_iter().map(Into::into).collect()))
    }

    /// Search posts by title, tag or author username (`q` at least 2
    /// characters; `post_type`, `tag`, `tags`, `video_type` as in the feed)
    #[oai(path = "/api/community/search", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn search(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        q: Query<Option<String>>,
        post_type: Query<Option<String>>,
        tag: Query<Option<String>>,
        tags: Query<Option<String>>,
        video_type: Query<Option<String>>,
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
        let page = page(post_type.0, tag.0, skip.0, limit.0)?;
        let filter = community::FeedFilter::from_query(tags.0.as_deref(), video_type.0.as_deref())?;
        let snap = state.ctx.settings_now().await?;
        let who = community::Viewer::user(auth.user().id, &snap.settings);
        let posts = community::search(&state.ctx, &who, &text, &page, &filter).await?;
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
        let snap = state.ctx.settings_now().await?;
        let who = community::Viewer::user(auth.user().id, &snap.settings);
        let detail = community::post_detail_as(&state.ctx.db, &who, id)
            .await?
            .ok_or_else(|| ApiError::msg(404, "Post not found"))?;
        Ok(FastJson(PostDetailOut {
            post: detail.post.into(),
            replies: detail.replies.into_iter().map(Into::into).collect(),
        }))
    }

    /// Create a post (Stage 15 claves, Lab 5 claves)
    ///
    /// An unverified account gets 403 `Please verify your email first` while
    /// `REQUIRE_VERIFIED_FOR` lists `post` (admins are exempt).
    #[oai(path = "/api/community/posts", method = "post")]
    async fn create_post(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        body: LaterJson<CreatePostIn>,
    ) -> ApiResult<Json<PostCreatedOut>> {
        let user = auth.user();
        participation::ensure(&state.ctx, user.id, &user.role, participation::Action::Post).await?;
        verification::check(
            &state.ctx.config,
            verification::action::POST,
            user.is_verified,
            &user.role,
        )?;
        let b = body.parse()?;
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
            video_type: b.video_type,
        };
        let w = community::create_post(&state.ctx, auth.user().id, input).await?;
        Ok(Json(PostCreatedOut {
            success: true,
            post: w.post.into(),
            message: w.message,
            reward: w.reward.map(Into::into),
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
        req: &Request,
        post_id: Path<String>,
    ) -> ApiResult<Json<DoneOut>> {
        let id = write_post_id(&post_id.0)?;
        let user = auth.user();
        let admin = user.is_admin().then(|| audit_actor(&state, req, user));
        let d = community::delete_post(&state.ctx, user.id, admin, id).await?;
        Ok(Json(d.into()))
    }

    /// React to a post (1 clave; changing the type is free)
    ///
    /// No body, `{}` or `{reaction_type: null}` is a `like`; such a request
    /// also gets `user_reaction` and `reaction_count` (the caller's state
    /// after the call).
    #[oai(path = "/api/community/posts/:post_id/react", method = "post")]
    async fn react(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        post_id: Path<String>,
        body: LaterJson<ReactIn>,
    ) -> ApiResult<Json<ReactedOut>> {
        let named = if body.is_empty() {
            None
        } else {
            body.parse()?.reaction_type
        };
        let reaction_type = named
            .clone()
            .unwrap_or_else(|| community::DEFAULT_REACTION.to_string());
        community::validate_reaction_type(&reaction_type)?;
        let id = write_post_id(&post_id.0)?;
        let r = community::react(&state.ctx, auth.user().id, id, &reaction_type).await?;
        // A request that named its type answers exactly as API.md.
        let state_shown = named.is_none();
        Ok(Json(ReactedOut {
            success: true,
            message: r.message,
            user_reaction: state_shown.then_some(r.user_reaction),
            reaction_count: state_shown.then_some(r.reaction_count),
        }))
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

    /// Can the caller upload another video? (§4.3)
    #[oai(path = "/api/community/upload-check", method = "get")]
    async fn upload_check(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
    ) -> ApiResult<Json<SlotStatusOut>> {
        let user = auth.user();
        let s = community::upload_check(&state.ctx, user.id, &user.role).await?;
        Ok(Json(s.into()))
    }

    /// Can the caller ask another Lab question? (N5.4: the question slots,
    /// `Questions are unlimited.` while no limit is set)
    #[oai(path = "/api/community/upload-check-lab", method = "get")]
    async fn upload_check_lab(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
    ) -> ApiResult<Json<SlotStatusOut>> {
        let user = auth.user();
        let s = community::upload_check_lab(&state.ctx, user.id, &user.role).await?;
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
