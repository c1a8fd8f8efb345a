//! The HTTP API of The Mambo Guild: poem + poem-openapi, thin handlers over
//! `mambo_core`.

pub mod auth;
pub mod deferred;
pub mod error;
pub mod fast_json;
pub mod metrics;
pub mod middleware;
pub mod routes;
pub mod spec;
pub mod state;
pub mod types;
pub mod validation;

use mambo_core::Context;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{Endpoint, EndpointExt, IntoEndpoint, Route};
use poem_openapi::OpenApiService;
use state::AppState;
use std::sync::Arc;

use routes::*;

pub type Apis = (
    health::HealthApi,
    routes::auth::AuthApi,
    users::UsersApi,
    courses::CoursesApi,
    admin::AdminApi,
    audit::AuditApi,
    uploads::UploadsApi,
    mux::MuxApi,
    claves::ClavesApi,
    community::Apis,
    ai::AiApi,
    submissions::SubmissionsApi,
    badges::BadgesApi,
    payments::PaymentsApi,
    notifications::NotificationsApi,
);

fn apis() -> Apis {
    (
        health::HealthApi,
        routes::auth::AuthApi,
        users::UsersApi,
        courses::CoursesApi,
        admin::AdminApi,
        audit::AuditApi,
        uploads::UploadsApi,
        mux::MuxApi,
        claves::ClavesApi,
        community::apis(),
        ai::AiApi,
        submissions::SubmissionsApi,
        badges::BadgesApi,
        payments::PaymentsApi,
        notifications::NotificationsApi,
    )
}

/// The OpenAPI service (also used by `mambo openapi`).
pub fn openapi_service(server_url: &str) -> OpenApiService<Apis, ()> {
    OpenApiService::new(apis(), "The Mambo Guild API", env!("CARGO_PKG_VERSION"))
        .description("Courses, community, claves and subscriptions for The Mambo Guild.")
        .server(server_url)
}

/// The OpenAPI document as JSON (what `/openapi.json` serves and `openapi.json`
/// at the repository root holds), with an `operationId` on every operation.
pub fn spec_json() -> String {
    spec::complete(&openapi_service("http://localhost:8000").spec())
}

/// Builds the whole application.
pub fn app(ctx: Context) -> impl Endpoint {
    let config = ctx.config.clone();
    let service = openapi_service(&config.backend_url);
    let spec_doc = spec::complete(&service.spec());
    metrics::learn_routes(&spec_doc);
    let spec = poem::endpoint::make_sync(move |_| {
        poem::IntoResponse::with_content_type(spec_doc.clone(), "application/json; charset=utf-8")
    });
    mambo_core::metrics::install();
    let mut route = Route::new()
        .at("/openapi.json", spec)
        .at("/metrics", poem::get(metrics::metrics_endpoint));
    if config.docs_enabled() {
        route = route
            .nest("/docs", service.swagger_ui())
            .nest("/redoc", service.redoc());
    }
    let route = route.nest("/", service);
    let state = AppState { ctx };
    let cfg = config.clone();
    route
        .around(metrics::capture_route)
        .data(state)
        .around(move |ep, req| middleware::edge(ep, req, cfg.clone()))
        .into_endpoint()
}

/// Serves on an already bound acceptor until `shutdown` completes.
///
/// The process also relays its own outbox writes to Redis at once (woken after
/// each commit), so jobs do not wait for a worker's next relay tick; relays in
/// several processes share the rows with `FOR UPDATE SKIP LOCKED`.
pub async fn serve<A: Acceptor + 'static>(
    acceptor: A,
    ctx: Context,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let relay = tokio::spawn(mambo_core::jobs::run_relay(ctx.clone(), async move {
        let _ = stop_rx.await;
    }));
    let result = poem::Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(app(ctx), shutdown, Some(std::time::Duration::from_secs(10)))
        .await;
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), relay).await;
    result
}

/// Binds `host:port` and serves until `shutdown`.
pub async fn serve_addr(
    ctx: Context,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = format!("{}:{}", ctx.config.host, ctx.config.port);
    let acceptor = TcpListener::bind(addr).into_acceptor().await?;
    serve(acceptor, ctx, shutdown).await
}

pub type SharedConfig = Arc<mambo_core::Config>;
