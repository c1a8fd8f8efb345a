//! `mambo-worker`: consumes the job queues until SIGTERM or Ctrl-C (the same as
//! `mambo worker`). `LOG_FORMAT=json` logs JSON lines; `WORKER_METRICS_PORT`
//! serves Prometheus metrics on that port.

use mambo_core::{Config, Context, db};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if std::env::var("LOG_FORMAT").is_ok_and(|v| v.trim().eq_ignore_ascii_case("json")) {
        builder
            .json()
            .flatten_event(true)
            .with_span_list(true)
            .init();
    } else {
        builder.init();
    }

    let config = Config::from_env()?;
    let pool = db::connect(config.database_url.expose(), 10).await?;
    let ctx = Context::new(pool, config)?;
    if let Some(port) = std::env::var("WORKER_METRICS_PORT")
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        let port: u16 = port.trim().parse().map_err(|_| {
            anyhow::anyhow!("WORKER_METRICS_PORT must be a port number, got {port:?}")
        })?;
        tokio::spawn(async move {
            if let Err(e) = mambo_worker::serve_metrics(port, std::future::pending()).await {
                tracing::error!(error = %e, port, "cannot serve worker metrics");
            }
        });
    }
    mambo_worker::run(ctx, shutdown_signal()).await
}

/// Resolves on Ctrl-C or (on Unix) SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("Ctrl-C received"),
        _ = terminate => tracing::info!("SIGTERM received"),
    }
}
