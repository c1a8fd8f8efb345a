//! Platform settings (API-2026-05.md N6.1): read, change key by key, switch
//! to a preset. Every route is `admin` (401, then 403, before the body).

use crate::auth::AdminAuth;
use crate::error::ApiResult;
use crate::routes::admin::audit_actor;
use crate::state::AppState;
use mambo_core::settings;
use poem::Request;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde_json::Value;

pub struct SettingsApi;

/// `POST /api/admin/settings/preset`
#[derive(Object, Debug)]
pub struct PresetIn {
    /// `seed` (API.md's rules) or `guild_2026` (the May 2026 rules)
    pub preset: String,
}

#[OpenApi(tag = "crate::routes::Tag::Admin")]
impl SettingsApi {
    /// The platform settings: every group and key, the preset they match
    /// (`null`: custom) and the revision
    #[oai(path = "/api/admin/settings", method = "get")]
    async fn get(&self, state: Data<&AppState>, _admin: AdminAuth) -> ApiResult<Json<Value>> {
        Ok(Json(state.ctx.settings_now().await?.to_json()))
    }

    /// Changes any subset of groups and keys (merged; read-only keys ignored)
    #[oai(path = "/api/admin/settings", method = "put")]
    async fn put(
        &self,
        state: Data<&AppState>,
        req: &Request,
        admin: AdminAuth,
        body: Json<Value>,
    ) -> ApiResult<Json<Value>> {
        let actor = audit_actor(&state, req, admin.user());
        Ok(Json(
            settings::update(&state.ctx.settings_store(), &actor, &body.0)
                .await?
                .to_json(),
        ))
    }

    /// Sets every key of the five preset groups to a preset's values
    #[oai(path = "/api/admin/settings/preset", method = "post")]
    async fn preset(
        &self,
        state: Data<&AppState>,
        req: &Request,
        admin: AdminAuth,
        body: Json<PresetIn>,
    ) -> ApiResult<Json<Value>> {
        let actor = audit_actor(&state, req, admin.user());
        Ok(Json(
            settings::apply_preset(&state.ctx.settings_store(), &actor, &body.0.preset)
                .await?
                .to_json(),
        ))
    }

    /// What each preset sets
    #[oai(path = "/api/admin/settings/presets", method = "get")]
    async fn presets(&self, _admin: AdminAuth) -> ApiResult<Json<Value>> {
        Ok(Json(settings::presets()))
    }
}
