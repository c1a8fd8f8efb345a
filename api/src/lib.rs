//! The HTTP API of The Mambo Guild: poem + poem-openapi, thin handlers over
//! `mambo_core`.

pub mod auth;
pub mod compression;
pub mod conditional;
pub mod deferred;
pub mod error;
pub mod fast_json;
pub mod lean_streams;
pub mod metrics;
pub mod middleware;
pub mod routes;
pub mod spec;
pub mod state;
pub mod types;
pub mod validation;

use mambo_core::Context;
use mambo_core::notifications::live;
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
    // poem-openapi combines at most 16 APIs per tuple.
    (
        notifications_stream::NotificationsStreamApi,
        privacy::PrivacyApi,
        settings::SettingsApi,
    ),
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
        (
            notifications_stream::NotificationsStreamApi,
            privacy::PrivacyApi,
            settings::SettingsApi,
        ),
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

/// Builds the whole application (its notification hub starts with the first
/// stream; [`serve`] starts it at once and closes it on shutdown).
pub fn app(ctx: Context) -> impl Endpoint {
    let live = live::Hub::new(ctx.clone());
    app_with(ctx, live)
}

fn app_with(ctx: Context, live: live::Hub) -> impl Endpoint {
    let config = ctx.config.clone();
    let service = openapi_service(&config.backend_url);
    let spec_doc = spec::complete(&service.spec());
    metrics::learn_routes(&spec_doc);
    let spec_doc = Arc::new(compression::Precompressed::new(
        spec_doc,
        "application/json; charset=utf-8",
    ));
    let spec = poem::endpoint::make(move |req: poem::Request| {
        let doc = spec_doc.clone();
        async move { doc.respond(&req).await }
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
    let state = AppState { ctx, live };
    let cfg = config.clone();
    route
        .around(metrics::capture_route)
        .data(state)
        .around(move |ep, req| middleware::edge(ep, req, cfg.clone()))
        .around(compression::respond)
        .into_endpoint()
}

/// Serves on an already bound acceptor until `shutdown` completes.
///
/// The process also relays its own outbox writes to Redis at once (woken after
/// each commit), so jobs do not wait for a worker's next relay tick; relays in
/// several processes share the rows with `FOR UPDATE SKIP LOCKED`.
///
/// Its caller cache listens for changed users (`mambo_core::callers`), and
/// its notification hub subscribes to Redis at once (one subscription for all
/// the process's streams) and ends every stream when `shutdown` completes, so
/// the graceful shutdown does not wait for them. The streams' connections
/// are served by [`lean_streams::LeanStreams`] (about 3 KB each instead of
/// hyper's 35 KB), through the same endpoint as every other request.
pub async fn serve<A: Acceptor<Io = tokio::net::TcpStream> + 'static>(
    acceptor: A,
    ctx: Context,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let relay = tokio::spawn(mambo_core::jobs::run_relay(ctx.clone(), async move {
        let _ = stop_rx.await;
    }));
    // The caller cache serves only while this listener is subscribed.
    let callers = tokio::spawn(mambo_core::callers::listen(
        ctx.config.clone(),
        ctx.callers.clone(),
    ));
    // Platform settings: reloaded on `settings:changed`, re-checked each second.
    let settings = tokio::spawn(ctx.clone().watch_settings());
    let live = live::Hub::new(ctx.clone());
    let app = Arc::new(app_with(ctx, live.clone()));
    // Notification streams are served with less memory than poem's
    // connections take (lean_streams); everything else goes to poem.
    let acceptor = lean_streams::LeanStreams::new(acceptor, app.clone());
    live.start();
    let hub = live.clone();
    let shutdown = async move {
        shutdown.await;
        hub.close();
    };
    let result = poem::Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(app, shutdown, Some(std::time::Duration::from_secs(10)))
        .await;
    live.close();
    callers.abort();
    settings.abort();
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), relay).await;
    result
}

/// Binds `host:port` and serves until `shutdown`, with the open-file limit
/// raised first ([`raise_open_file_limit`]).
pub async fn serve_addr(
    ctx: Context,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match raise_open_file_limit() {
        Some(n) => tracing::info!(open_files = n, "open-file limit"),
        None => tracing::info!("open-file limit: unlimited"),
    }
    let addr = format!("{}:{}", ctx.config.host, ctx.config.port);
    let acceptor = TcpListener::bind(addr).into_acceptor().await?;
    serve(acceptor, ctx, shutdown).await
}

pub type SharedConfig = Arc<mambo_core::Config>;

/// The most open files [`raise_open_file_limit`] asks for.
pub const OPEN_FILES_CAP: u64 = 1 << 20;

/// Raises the process's soft limit on open files to its hard limit (at most
/// [`OPEN_FILES_CAP`]), as Go programs do at start: every open notification
/// stream, like every keep-alive connection, holds a file descriptor, and
/// the usual soft default of 1,024 is far below what one process serves.
/// The hard limit itself is the platform's (`ulimit -Hn`, docker-compose's
/// `ulimits`, systemd's `LimitNOFILE`). Returns the limit now in force
/// (`None`: unlimited).
#[cfg(unix)]
pub fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let target = limit.maximum.unwrap_or(OPEN_FILES_CAP).min(OPEN_FILES_CAP);
    match limit.current {
        None => return None,
        Some(current) if current >= target => return Some(current),
        Some(_) => {}
    }
    let raised = Rlimit {
        current: Some(target),
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => Some(target),
        Err(e) => {
            tracing::warn!(error = %e, "raising the open-file limit failed");
            limit.current
        }
    }
}

/// Elsewhere the limit is left as it is.
#[cfg(not(unix))]
pub fn raise_open_file_limit() -> Option<u64> {
    None
}

#[cfg(all(test, unix))]
mod tests {
    use rustix::process::{Resource, getrlimit};

    #[test]
    fn the_soft_open_file_limit_is_raised_to_the_hard_limit() {
        let before = getrlimit(Resource::Nofile);
        let now = super::raise_open_file_limit();
        assert_eq!(now, getrlimit(Resource::Nofile).current);
        if let Some(soft) = before.current {
            let target = before
                .maximum
                .unwrap_or(super::OPEN_FILES_CAP)
                .min(super::OPEN_FILES_CAP);
            assert_eq!(now, Some(soft.max(target)));
        }
    }
}
