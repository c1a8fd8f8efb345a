//! Account privacy (API-NEXT.md N3): the data export and its list, and the
//! account deletion (the user's own and an admin's).

use crate::auth::{AdminAuth, UserAuth};
use crate::deferred::LaterJson;
use crate::error::{ApiError, ApiResult};
use crate::routes::admin::audit_actor;
use crate::state::AppState;
use crate::types::{parse_id, ts, ts_opt};
use mambo_core::privacy::{deletion, export};
use poem::Request;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

pub struct PrivacyApi;

#[derive(Object, Debug, Clone)]
#[oai(rename = "ExportRequested")]
pub struct ExportRequestedOut {
    /// `Your export is being prepared`
    pub message: String,
    pub export_id: String,
}

#[derive(ApiResponse)]
pub enum ExportAccepted {
    /// The export is queued; an email follows when it is ready
    #[oai(status = 202)]
    Accepted(Json<ExportRequestedOut>),
}

/// One data export of the caller.
#[derive(Object, Debug, Clone)]
#[oai(rename = "DataExport")]
pub struct ExportOut {
    pub id: String,
    /// `pending`, `ready`, `failed` or `expired`
    pub status: String,
    pub created_at: String,
    pub ready_at: Option<String>,
    /// A fresh presigned download link while the export is ready and not expired
    pub download_url: Option<String>,
}

/// How the caller confirms their account's deletion.
#[derive(Object, Debug, Clone)]
#[oai(rename = "DeleteAccount")]
pub struct DeleteAccountIn {
    /// The account's password (accounts that sign in with one)
    #[oai(deserialize_with = "crate::routes::auth::strict_opt_str")]
    pub password: Option<String>,
    /// `DELETE` (accounts that sign in with Google)
    #[oai(deserialize_with = "crate::routes::auth::strict_opt_str")]
    pub confirm: Option<String>,
}

#[derive(Object, Debug, Clone)]
#[oai(rename = "DeletionScheduled")]
pub struct DeletionScheduledOut {
    pub message: String,
}

#[derive(ApiResponse)]
pub enum DeletionAccepted {
    /// The deletion is scheduled; the worker carries it out
    #[oai(status = 202)]
    Accepted(Json<DeletionScheduledOut>),
}

#[OpenApi(tag = "crate::routes::Tag::Privacy")]
impl PrivacyApi {
    /// Ask for a copy of one's data (one ZIP of JSON files, emailed as a link)
    #[oai(path = "/api/users/me/export", method = "post")]
    async fn request_export(
        &self,
        auth: UserAuth,
        state: Data<&AppState>,
    ) -> ApiResult<ExportAccepted> {
        let id = export::request(&state.ctx, auth.user().id).await?;
        Ok(ExportAccepted::Accepted(Json(ExportRequestedOut {
            message: export::EXPORT_STARTED.into(),
            export_id: id.to_string(),
        })))
    }

    /// The caller's data exports, newest first
    #[oai(path = "/api/users/me/exports", method = "get")]
    async fn list_exports(
        &self,
        auth: UserAuth,
        state: Data<&AppState>,
    ) -> ApiResult<Json<Vec<ExportOut>>> {
        let items = export::list(&state.ctx, auth.user().id).await?;
        Ok(Json(
            items
                .into_iter()
                .map(|e| ExportOut {
                    id: e.id.to_string(),
                    status: e.status.into(),
                    created_at: ts(&e.created_at),
                    ready_at: ts_opt(&e.ready_at),
                    download_url: e.download_url,
                })
                .collect(),
        ))
    }

    /// Delete a user's account (admin; not one's own)
    #[oai(path = "/api/admin/users/:user_id", method = "delete")]
    async fn admin_delete_user(
        &self,
        auth: AdminAuth,
        state: Data<&AppState>,
        req: &Request,
        user_id: Path<String>,
    ) -> ApiResult<DeletionAccepted> {
        let actor = audit_actor(&state, req, auth.user());
        let id = parse_id(&user_id, deletion::USER_NOT_FOUND)?;
        deletion::request_by_admin(&state.ctx, &actor, id)
            .await
            .map_err(ApiError::from)?;
        Ok(DeletionAccepted::Accepted(Json(DeletionScheduledOut {
            message: deletion::SCHEDULED_BY_ADMIN.into(),
        })))
    }
}

/// `DELETE /api/users/me` (declared in `UsersApi`, which owns the path).
pub async fn delete_own(
    auth: UserAuth,
    state: &AppState,
    req: &Request,
    body: LaterJson<DeleteAccountIn>,
) -> ApiResult<DeletionAccepted> {
    let body = body.parse()?;
    let ip = crate::middleware::client_ip(req, &state.ctx.config);
    deletion::request_own(&state.ctx, auth.user().id, body.password, body.confirm, ip).await?;
    Ok(DeletionAccepted::Accepted(Json(DeletionScheduledOut {
        message: deletion::SCHEDULED.into(),
    })))
}
