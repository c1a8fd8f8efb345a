//! `mambo`: run, migrate, seed and operate The Mambo Guild.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use mambo_core::{Config, Context};
use std::io::Write;

#[derive(Parser)]
#[command(name = "mambo", version, about = "The Mambo Guild backend")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the database if missing, migrate, seed demo data, run API and worker
    Dev,
    /// Run the HTTP API only (the Procfile's `web`)
    Api,
    /// Run the job worker only (the Procfile's `worker`)
    Worker,
    /// Apply pending database migrations
    Migrate,
    /// Insert demo data (idempotent)
    Seed,
    /// Print the OpenAPI spec as JSON
    Openapi,
    /// Create (or promote) an admin account
    CreateAdmin {
        #[arg(long)]
        email: String,
        /// Read from MAMBO_ADMIN_PASSWORD or prompted when absent
        #[arg(long, env = "MAMBO_ADMIN_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        #[arg(long, default_value = "Admin")]
        first_name: String,
        #[arg(long, default_value = "User")]
        last_name: String,
    },
    /// Create a student with an active subscription
    CreateTestUser {
        #[arg(long, default_value = "test@mamboguild.dev")]
        email: String,
        #[arg(long, default_value = "TestUser2026")]
        password: String,
        #[arg(long, default_value = "performer")]
        tier: String,
    },
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

async fn connect(config: &Config) -> anyhow::Result<sqlx::PgPool> {
    mambo_core::db::connect(config.database_url.expose(), 20)
        .await
        .context("cannot connect to PostgreSQL (check DATABASE_URL)")
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    init_tracing();
    if let Err(e) = run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Openapi = cli.command {
        let mut out = std::io::stdout();
        writeln!(out, "{}", mambo_api::spec_json())?;
        return Ok(());
    }
    let config = Config::from_env()?;
    match cli.command {
        Command::Openapi => unreachable!(),
        Command::Dev => dev(config).await,
        Command::Api => {
            let pool = connect(&config).await?;
            let ctx = Context::new(pool, config)?;
            tracing::info!(host = %ctx.config.host, port = ctx.config.port, "API listening");
            mambo_api::serve_addr(ctx, shutdown_signal()).await?;
            Ok(())
        }
        Command::Worker => {
            let pool = connect(&config).await?;
            let ctx = Context::new(pool, config)?;
            mambo_worker::run(ctx, shutdown_signal()).await
        }
        Command::Migrate => {
            let pool = connect(&config).await?;
            mambo_core::db::migrate(&pool).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Seed => {
            let pool = connect(&config).await?;
            let r = mambo_core::seed::seed(&pool).await?;
            println!(
                "seeded: {} worlds, {} lessons, {} users (existing rows left as they were)",
                r.worlds_created, r.lessons_created, r.users_created
            );
            Ok(())
        }
        Command::CreateAdmin {
            email,
            password,
            first_name,
            last_name,
        } => {
            let password = match password {
                Some(p) => p,
                None => prompt_password()?,
            };
            let pool = connect(&config).await?;
            let id = mambo_core::users::ensure_account(
                &pool, &email, &password, "admin", &first_name, &last_name, None,
            )
            .await?;
            println!("admin {email} ready (id {id})");
            Ok(())
        }
        Command::CreateTestUser {
            email,
            password,
            tier,
        } => {
            if !["advanced", "performer", "rookie"].contains(&tier.as_str()) {
                anyhow::bail!("--tier must be rookie, advanced or performer");
            }
            let pool = connect(&config).await?;
            let id = mambo_core::users::ensure_account(
                &pool,
                &email,
                &password,
                "student",
                "Test",
                "User",
                Some(&tier),
            )
            .await?;
            println!("test user {email} / {password} ready (id {id}, tier {tier}, active)");
            Ok(())
        }
    }
}

fn prompt_password() -> anyhow::Result<String> {
    eprint!("password: ");
    std::io::stderr().flush()?;
    let mut s = String::new();
    std::io::stdin().read_line(&mut s)?;
    Ok(s.trim_end_matches(['\r', '\n']).to_string())
}

/// Where `mambo dev` keeps its data when DATABASE_URL is not set: the local
/// PostgreSQL's default superuser, so a fresh machine needs no setup.
const DEV_DATABASE_URL: &str = "postgresql://postgres@localhost:5432/mambo_dev";

async fn dev(mut config: Config) -> anyhow::Result<()> {
    if std::env::var("DATABASE_URL").map(|v| v.trim().is_empty()).unwrap_or(true) {
        config.database_url = mambo_core::config::Secret::new(DEV_DATABASE_URL);
    }
    let url = config.database_url.expose().to_string();
    if mambo_core::db::create_database_if_missing(&url)
        .await
        .context("cannot reach PostgreSQL to create the database (check DATABASE_URL)")?
    {
        println!("created database");
    }
    let pool = connect(&config).await?;
    mambo_core::db::migrate(&pool).await?;
    let r = mambo_core::seed::seed(&pool).await?;
    if r != Default::default() {
        println!(
            "seeded demo data: {} worlds, {} lessons, {} users",
            r.worlds_created, r.lessons_created, r.users_created
        );
    }
    let ctx = Context::new(pool, config)?;
    let shown_host = if ctx.config.host == "0.0.0.0" {
        "localhost"
    } else {
        &ctx.config.host
    };
    let base = format!("http://{shown_host}:{}", ctx.config.port);
    println!("API:      {base}");
    println!("Docs:     {base}/docs  (ReDoc: {base}/redoc, spec: {base}/openapi.json)");
    println!(
        "Admin:    {} / {}",
        mambo_core::seed::ADMIN_EMAIL,
        mambo_core::seed::ADMIN_PASSWORD
    );
    println!(
        "Student:  {} / {}",
        mambo_core::seed::STUDENT_EMAIL,
        mambo_core::seed::STUDENT_PASSWORD
    );
    let (tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut rx_api = tx.subscribe();
    let mut rx_worker = tx.subscribe();
    let wctx = ctx.clone();
    let worker = tokio::spawn(async move {
        if let Err(e) = mambo_worker::run(wctx, async move {
            let _ = rx_worker.recv().await;
        })
        .await
        {
            tracing::error!(error = %e, "worker stopped");
        }
    });
    let api = tokio::spawn(async move {
        mambo_api::serve_addr(ctx, async move {
            let _ = rx_api.recv().await;
        })
        .await
    });
    shutdown_signal().await;
    let _ = tx.send(());
    let _ = worker.await;
    api.await??;
    Ok(())
}
