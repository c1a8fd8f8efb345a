//! Saved posts (N4.2).

use super::params::{int_query, write_post_id};
use super::shapes::*;
use crate::auth::UserAuth;
use crate::error::ApiResult;
use crate::fast_json::FastJson;
use crate::state::AppState;
use mambo_core::community;
use poem::web::Data;
use poem_openapi::OpenApi;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;

pub struct SavedApi;

#[OpenApi(tag = "crate::routes::Tag::Community")]
impl SavedApi {
    /// Save a post (idempotent)
    #[oai(path = "/api/community/posts/:post_id/save", method = "post")]
    async fn save(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        post_id: Path<String>,
    ) -> ApiResult<Json<SavedOut>> {
        let id = write_post_id(&post_id.0)?;
        community::save(&state.ctx, auth.user().id, id).await?;
        Ok(Json(SavedOut {
            success: true,
            saved: true,
        }))
    }

    /// Remove a post from the saved list (idempotent)
    #[oai(path = "/api/community/posts/:post_id/save", method = "delete")]
    async fn unsave(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        post_id: Path<String>,
    ) -> ApiResult<Json<SavedOut>> {
        let id = write_post_id(&post_id.0)?;
        community::unsave(&state.ctx, auth.user().id, id).await?;
        Ok(Json(SavedOut {
            success: true,
            saved: false,
        }))
    }

    /// The caller's saved posts, most recently saved first (`skip`, `limit` 1..50)
    #[oai(path = "/api/community/saved", method = "get")]
    async fn saved(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        skip: Query<Option<String>>,
        limit: Query<Option<String>>,
    ) -> ApiResult<FastJson<Vec<PostItemOut>>> {
        let skip = int_query("skip", skip.0, 0, 0, None)?;
        let limit = int_query(
            "limit",
            limit.0,
            community::LIMIT_DEFAULT,
            1,
            Some(community::LIMIT_MAX),
        )?;
        let posts = community::saved(&state.ctx, auth.user().id, skip, limit).await?;
        Ok(FastJson(posts.into_iter().map(Into::into).collect()))
    }
}
