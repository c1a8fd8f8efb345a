//! `GET /` and `GET /health` (API.md §3.13).

use crate::state::AppState;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

pub struct HealthApi;

#[derive(Object)]
pub struct RootInfo {
    message: String,
    status: String,
}

#[derive(Object)]
pub struct HealthStatus {
    /// `healthy` or `unhealthy`
    status: String,
    /// `ok` or `down`
    database: String,
    /// `ok` or `down`
    redis: String,
}

#[derive(ApiResponse)]
pub enum HealthResponse {
    /// Everything is up
    #[oai(status = 200)]
    Ok(Json<HealthStatus>),
    /// A dependency is down
    #[oai(status = 503)]
    Unavailable(Json<HealthStatus>),
}

#[OpenApi(tag = "crate::routes::Tag::Health")]
impl HealthApi {
    /// Service banner
    #[oai(path = "/", method = "get")]
    async fn root(&self) -> Json<RootInfo> {
        Json(RootInfo {
            message: "Salsa Lab API".into(),
            status: "running".into(),
        })
    }

    /// Health check: PostgreSQL and Redis
    #[oai(path = "/health", method = "get")]
    async fn health(&self, state: Data<&AppState>) -> HealthResponse {
        let db_ok = tokio::time::timeout(
            std::time::Duration::from_secs(3),
            sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.ctx.db),
        )
        .await
        .map(|r| r.is_ok())
        .unwrap_or(false);
        let redis_ok =
            tokio::time::timeout(std::time::Duration::from_secs(3), state.ctx.redis.ping())
                .await
                .map(|r| r.is_ok())
                .unwrap_or(false);
        let s = |ok: bool| if ok { "ok" } else { "down" }.to_string();
        let body = HealthStatus {
            status: if db_ok && redis_ok {
                "healthy"
            } else {
                "unhealthy"
            }
            .into(),
            database: s(db_ok),
            redis: s(redis_ok),
        };
        if db_ok && redis_ok {
            HealthResponse::Ok(Json(body))
        } else {
            tracing::warn!(database = db_ok, redis = redis_ok, "health check failed");
            HealthResponse::Unavailable(Json(body))
        }
    }
}
