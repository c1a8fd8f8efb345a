//! The admin audit log's list (API-NEXT.md N4.5). The rows are written by the
//! admin actions themselves, through `mambo_core::audit::record`.

use crate::auth::AdminAuth;
use crate::error::ApiResult;
use crate::routes::community::int_query;
use crate::state::AppState;
use crate::types::ts;
use mambo_core::audit::{self, AuditRow, Filter};
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde_json::{Value, json};
use uuid::Uuid;

pub struct AuditApi;

/// Who acted, from their current account.
#[derive(Object, Debug, Clone)]
#[oai(rename = "AuditActor")]
pub struct AuditActorOut {
    pub id: String,
    pub username: Option<String>,
    pub email: String,
}

/// One audit row.
#[derive(Object, Debug, Clone)]
#[oai(rename = "AuditEntry")]
pub struct AuditEntryOut {
    pub id: String,
    /// `null` for the system
    pub actor_id: Option<String>,
    /// `null` for the system, or when the account is gone
    pub actor: Option<AuditActorOut>,
    /// `<target>.<verb>`, e.g. `course.update`, `submission.grade`, `claves.grant`
    pub action: String,
    /// `course`, `level`, `lesson`, `edge`, `submission`, `user`, `report`, ...
    pub target_type: String,
    pub target_id: Option<String>,
    /// The target before the action (`null` for a creation)
    pub before: Option<Value>,
    /// The target after the action (`null` for a deletion)
    pub after: Option<Value>,
    /// The client's address
    pub ip: Option<String>,
    pub created_at: String,
}

impl From<AuditRow> for AuditEntryOut {
    fn from(r: AuditRow) -> Self {
        Self {
            id: r.id.to_string(),
            actor_id: r.actor_id.map(|a| a.to_string()),
            actor: r.actor.map(|a| AuditActorOut {
                id: a.id.to_string(),
                username: a.username,
                email: a.email,
            }),
            action: r.action,
            target_type: r.target_type,
            target_id: r.target_id,
            before: r.before,
            after: r.after,
            ip: r.ip,
            created_at: ts(&r.created_at),
        }
    }
}

/// A filter value: absent or blank means "any".
fn given(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

#[OpenApi(tag = "crate::routes::Tag::Admin")]
impl AuditApi {
    /// The audit log, newest first, optionally by actor, action or target
    /// (admin). `limit` 1–100 (default 50), `skip` ≥ 0.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/api/admin/audit", method = "get")]
    async fn list(
        &self,
        _admin: AdminAuth,
        state: Data<&AppState>,
        /// The acting admin's users.id
        actor_id: Query<Option<String>>,
        /// e.g. `lesson.update`
        action: Query<Option<String>>,
        target_type: Query<Option<String>>,
        target_id: Query<Option<String>>,
        skip: Query<Option<String>>,
        limit: Query<Option<String>>,
    ) -> ApiResult<Json<Vec<AuditEntryOut>>> {
        let actor_id = match given(actor_id.0) {
            None => None,
            Some(raw) => Some(Uuid::parse_str(&raw).map_err(|_| {
                mambo_core::Error::validation(
                    &["query", "actor_id"],
                    "Input should be a valid UUID",
                    "uuid_parsing",
                    json!(raw),
                )
            })?),
        };
        let skip = int_query("skip", skip.0, 0, 0, None)?;
        let limit = int_query(
            "limit",
            limit.0,
            audit::LIST_DEFAULT_LIMIT,
            1,
            Some(audit::LIST_MAX_LIMIT),
        )?;
        let filter = Filter {
            actor_id,
            action: given(action.0),
            target_type: given(target_type.0),
            target_id: given(target_id.0),
        };
        let rows = audit::list(&state.ctx.db, &filter, skip, limit).await?;
        Ok(Json(rows.into_iter().map(Into::into).collect()))
    }
}
