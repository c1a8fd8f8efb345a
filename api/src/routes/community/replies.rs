//! Replies: create (nested, two levels), edit, delete, and the accepted
//! solution (N4.1).

use super::params::write_post_id;
use super::shapes::*;
use crate::auth::UserAuth;
use crate::deferred::LaterJson;
use crate::error::ApiResult;
use crate::routes::admin::audit_actor;
use crate::state::AppState;
use mambo_core::{community, participation, verification};
use poem::Request;
use poem::web::Data;
use poem_openapi::OpenApi;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use uuid::Uuid;

pub struct RepliesApi;

#[OpenApi(tag = "crate::routes::Tag::Community")]
impl RepliesApi {
    /// Reply to a post (2 claves; closed in Hype mode)
    ///
    /// An unverified account gets 403 `Please verify your email first` while
    /// `REQUIRE_VERIFIED_FOR` lists `reply` (admins are exempt).
    #[oai(path = "/api/community/posts/:post_id/replies", method = "post")]
    async fn reply(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        post_id: Path<String>,
        body: LaterJson<ReplyIn>,
    ) -> ApiResult<Json<ReplyWrittenOut>> {
        let user = auth.user();
        participation::ensure(
            &state.ctx,
            user.id,
            &user.role,
            participation::Action::Reply,
        )
        .await?;
        verification::check(
            &state.ctx.config,
            verification::action::REPLY,
            user.is_verified,
            &user.role,
        )?;
        let b = body.parse()?;
        let input = community::NewReply {
            content: b.content,
            mux_asset_id: b.mux_asset_id,
            mux_playback_id: b.mux_playback_id,
            // A malformed parent id names no reply: `Invalid parent reply`.
            parent_reply_id: b
                .parent_reply_id
                .map(|p| Uuid::parse_str(p.trim()).unwrap_or(Uuid::nil())),
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

    /// Edit a reply (its author or an admin)
    #[oai(
        path = "/api/community/posts/:post_id/replies/:reply_id",
        method = "put"
    )]
    async fn update_reply(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        req: &Request,
        post_id: Path<String>,
        reply_id: Path<String>,
        body: LaterJson<UpdateReplyIn>,
    ) -> ApiResult<Json<ReplyItemOut>> {
        // Who may edit is decided before the body is looked at.
        let id = write_post_id(&post_id.0)?;
        let reply_id = Uuid::parse_str(reply_id.0.trim()).ok();
        let user = auth.user();
        community::ensure_reply_editor(&state.ctx, user.id, user.is_admin(), id, reply_id).await?;
        let b = body.parse()?;
        let admin = user.is_admin().then(|| audit_actor(&state, req, user));
        let r =
            community::update_reply(&state.ctx, user.id, admin, id, reply_id, b.content).await?;
        Ok(Json(r.into()))
    }

    /// Delete a reply (its author or an admin); one with replies under it
    /// keeps its place as `[deleted]`
    #[oai(
        path = "/api/community/posts/:post_id/replies/:reply_id",
        method = "delete"
    )]
    async fn delete_reply(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        req: &Request,
        post_id: Path<String>,
        reply_id: Path<String>,
    ) -> ApiResult<Json<SuccessOut>> {
        let id = write_post_id(&post_id.0)?;
        let reply_id = Uuid::parse_str(reply_id.0.trim()).ok();
        let user = auth.user();
        let admin = user.is_admin().then(|| audit_actor(&state, req, user));
        community::delete_reply(&state.ctx, user.id, admin, id, reply_id).await?;
        Ok(Json(SuccessOut { success: true }))
    }
}
