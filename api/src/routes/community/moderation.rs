//! Reports and moderation (N4.4): a user reports a post or a reply; the admin
//! works the queue and resolves.

use super::params::{int_query, write_post_id};
use super::shapes::*;
use crate::auth::{AdminAuth, UserAuth};
use crate::error::ApiResult;
use crate::routes::admin::audit_actor;
use crate::routes::auth::Created;
use crate::state::AppState;
use mambo_core::community::{self, NewReport, Target};
use poem::Request;
use poem::web::Data;
use poem_openapi::OpenApi;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use uuid::Uuid;

pub struct ReportsApi;

#[OpenApi(tag = "crate::routes::Tag::Community")]
impl ReportsApi {
    /// Report a post (once while the report is open)
    #[oai(path = "/api/community/posts/:post_id/report", method = "post")]
    async fn report_post(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        post_id: Path<String>,
        body: Json<ReportIn>,
    ) -> ApiResult<Created<SuccessOut>> {
        let id = write_post_id(&post_id.0)?;
        let input = NewReport {
            reason: body.0.reason,
            note: body.0.note,
        };
        community::report(&state.ctx, auth.user().id, id, Target::Post, input).await?;
        Ok(Created::Created(Json(SuccessOut { success: true })))
    }

    /// Report a reply (once while the report is open)
    #[oai(
        path = "/api/community/posts/:post_id/replies/:reply_id/report",
        method = "post"
    )]
    async fn report_reply(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        post_id: Path<String>,
        reply_id: Path<String>,
        body: Json<ReportIn>,
    ) -> ApiResult<Created<SuccessOut>> {
        let id = write_post_id(&post_id.0)?;
        let reply_id = Uuid::parse_str(reply_id.0.trim()).ok();
        let input = NewReport {
            reason: body.0.reason,
            note: body.0.note,
        };
        community::report(
            &state.ctx,
            auth.user().id,
            id,
            Target::Reply(reply_id),
            input,
        )
        .await?;
        Ok(Created::Created(Json(SuccessOut { success: true })))
    }
}

pub struct ModerationApi;

#[OpenApi(tag = "crate::routes::Tag::Admin")]
impl ModerationApi {
    /// The moderation queue: reports by status (`open` by default), newest first
    #[oai(path = "/api/admin/moderation/reports", method = "get")]
    async fn reports(
        &self,
        auth: AdminAuth,
        state: Data<&AppState>,
        status: Query<Option<String>>,
        skip: Query<Option<String>>,
        limit: Query<Option<String>>,
    ) -> ApiResult<Json<Vec<ReportItemOut>>> {
        let _ = auth;
        let status = status.0.unwrap_or_else(|| "open".into());
        let mut v = community::Validation::new();
        v.literal(&["query", "status"], &status, community::REPORT_STATUSES);
        v.finish()?;
        let skip = int_query("skip", skip.0, 0, 0, None)?;
        let limit = int_query(
            "limit",
            limit.0,
            community::LIMIT_DEFAULT,
            1,
            Some(community::LIMIT_MAX),
        )?;
        let items = community::reports(&state.ctx, &status, skip, limit).await?;
        Ok(Json(items.into_iter().map(Into::into).collect()))
    }

    /// Resolve a report and every open report on the same target
    /// (`hide`, `unhide`, `dismiss` or `delete`)
    #[oai(
        path = "/api/admin/moderation/reports/:report_id/resolve",
        method = "post"
    )]
    async fn resolve(
        &self,
        auth: AdminAuth,
        state: Data<&AppState>,
        req: &Request,
        report_id: Path<String>,
        body: Json<ResolveIn>,
    ) -> ApiResult<Json<SuccessOut>> {
        let report_id = Uuid::parse_str(report_id.0.trim()).ok();
        let action = body.0.action;
        let mut v = community::Validation::new();
        v.literal(&["body", "action"], &action, community::RESOLVE_ACTIONS);
        v.finish()?;
        let actor = audit_actor(&state, req, auth.user());
        community::resolve(&state.ctx, actor, report_id, &action).await?;
        Ok(Json(SuccessOut { success: true }))
    }
}
