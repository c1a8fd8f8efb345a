//! `mambo`: run, migrate, seed and operate The Mambo Guild.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use mambo_core::broadcast::{self, Audience, BroadcastRequest};
use mambo_core::notifications::digest::{self, Period};
use mambo_core::payments;
use mambo_core::{Config, Context};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod bench_extra;
mod local_s3;

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
    /// Create (or promote) an admin account with an active performer subscription
    #[command(long_about = CREATE_ADMIN_HELP)]
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
    /// Drop, re-create and fill the bench database (`--preset small|large`, size overrides)
    BenchSeed(bench::SeedArgs),
    /// Benchmark the release API against the bench database (seeds it when empty)
    Bench(bench::BenchArgs),
    /// Email a template to an audience through the worker (resumable, nobody twice)
    #[command(long_about = BROADCAST_HELP)]
    Broadcast {
        /// Template file with {% block subject %}, {% block html %} and {% block text %}
        #[arg(long, value_name = "FILE")]
        template: PathBuf,
        /// Who gets it: waitlist, all or students
        #[arg(long, value_parser = parse_audience)]
        audience: Audience,
        /// An extra template variable (repeatable)
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// Check the template against every recipient and show the first email; send nothing
        #[arg(long)]
        dry_run: bool,
        /// Queue the batches and exit without waiting for the worker to send them
        #[arg(long)]
        no_wait: bool,
    },
    /// Sign a Stripe event file with STRIPE_WEBHOOK_SECRET and post it to the API's webhook
    #[command(long_about = STRIPE_EVENT_HELP)]
    StripeEvent {
        /// A JSON event (`{"type": ..., "data": {"object": {...}}}`); `-` reads stdin
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The API to send it to
        #[arg(long, env = "BACKEND_URL", default_value = "http://localhost:8000")]
        url: String,
    },
    /// Queue the notification email digest now (once per user per day or ISO week)
    #[command(long_about = DIGEST_HELP)]
    Digest {
        /// Which users: those whose digest setting is daily or weekly
        #[arg(long, value_parser = parse_period)]
        period: Period,
    },
}

const CREATE_ADMIN_HELP: &str = "Create (or promote) an admin account.

The account gets the admin role, a verified email, the given password and an \
active `performer` subscription without a Stripe id (as the original service's \
admin script made), so the frontend, which decides from `tier` in \
/api/auth/me, shows the admin every paid feature (posting in the community, \
every course). Running it again for the same email resets the password and \
keeps the subscription active.";

const BROADCAST_HELP: &str = "Email a template to an audience through the worker.

The template is checked against every recipient first: a variable it uses that \
no recipient has fails the command before anything is recorded or sent. Then one \
job per batch of at most 100 recipients is queued (Resend's batch endpoint) and a \
progress bar follows the worker until every recipient is sent, failed or skipped.

Running the same command again (same template, audience and --var values) resumes \
the same broadcast: recipients already sent are never sent again, users who joined \
the audience since are added, and batches still pending are queued again. Users \
with email_unsubscribed are left out.

Variables: email, first_name, last_name, username, referral_code, referral_link, \
frontend_url, plus every --var NAME=VALUE. Missing values are null (print as nothing).

Example: mambo broadcast --template core/templates/broadcasts/waitlist_launch.html --audience waitlist --dry-run";

const STRIPE_EVENT_HELP: &str = "Sign a Stripe event and post it to the API's webhook.

What `stripe listen --forward-to` does, without Stripe: the file's event gets an \
`id` (evt_local_...) and a `created` time (now) when it has none, is signed with \
STRIPE_WEBHOOK_SECRET (t=now, v1=HMAC-SHA256) and posted to \
{url}/api/payments/webhook, which verifies and applies it like a real delivery. \
Sending the same file twice (with its own id) shows the idempotency; a smaller \
`created` than an earlier event shows that older events change nothing.

Example: mambo stripe-event docs/stripe-events/payment_failed.json";

const DIGEST_HELP: &str = "Queue the notification email digest now.

Emails every user whose digest setting is --period (daily is the default \
setting), who has not unsubscribed from email and who has unread notifications \
since their last digest: one email with up to 10 of them and the count of the \
rest. The worker sends the queued emails. Each user gets at most one digest per \
period (the UTC day, or the ISO week for weekly): running the command again, or \
after the worker's scheduled run (NOTIFICATION_DIGEST_SCHEDULE), queues nothing \
for users who already had theirs.

Example: mambo digest --period daily";

fn parse_period(s: &str) -> Result<Period, String> {
    s.parse()
}

fn parse_audience(s: &str) -> Result<Audience, String> {
    s.parse()
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, got {s:?}"))?;
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "bad variable name {name:?} (letters, digits and _ only)"
        ));
    }
    Ok((name.to_string(), value.to_string()))
}

/// Logs to stderr: human-readable, or one JSON object per line when
/// `LOG_FORMAT=json` (with the request and job span fields: request id, user
/// id, queue, ...). `RUST_LOG` filters (default `info,sqlx=warn`).
fn init_tracing(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let json = std::env::var("LOG_FORMAT")
        .map(|v| v.trim().eq_ignore_ascii_case("json"))
        .unwrap_or(false);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        let _ = builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .try_init();
    } else {
        let _ = builder.try_init();
    }
}

/// `WORKER_METRICS_PORT`, when set: where the worker serves `/metrics`.
fn worker_metrics_port() -> anyhow::Result<Option<u16>> {
    match std::env::var("WORKER_METRICS_PORT") {
        Ok(v) if !v.trim().is_empty() => {
            v.trim().parse::<u16>().map(Some).map_err(|_| {
                anyhow::anyhow!("WORKER_METRICS_PORT must be a port number, got {v:?}")
            })
        }
        _ => Ok(None),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
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
    mambo_core::db::connect(config.database_url.expose(), config.database_pool_size)
        .await
        .context("cannot connect to PostgreSQL (check DATABASE_URL)")
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime")
        .block_on(async_main());
}

async fn async_main() {
    let cli = Cli::parse();
    // The broadcast command draws a progress bar: keep its logs to warnings.
    init_tracing(match cli.command {
        Command::Broadcast { .. } | Command::Bench(_) | Command::BenchSeed(_) => "warn",
        _ => "info,sqlx=warn",
    });
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
    match &cli.command {
        Command::BenchSeed(args) => return bench::seed_command(args).await.map(|_| ()),
        Command::Bench(args) => return bench::bench_command(args.clone()).await,
        _ => {}
    }
    let config = Config::from_env()?;
    match cli.command {
        Command::Openapi | Command::BenchSeed(_) | Command::Bench(_) => unreachable!(),
        Command::Dev => dev(config).await,
        Command::Api => {
            let pool = connect(&config).await?;
            let ctx = Context::new(pool, config)?;
            tracing::info!(host = %ctx.config.host, port = ctx.config.port, "API listening");
            mambo_api::serve_addr(ctx, shutdown_signal()).await?;
            Ok(())
        }
        Command::Worker => {
            let metrics_port = worker_metrics_port()?;
            let pool = connect(&config).await?;
            let ctx = Context::new(pool, config)?;
            if let Some(port) = metrics_port {
                tokio::spawn(async move {
                    if let Err(e) = mambo_worker::serve_metrics(port, std::future::pending()).await
                    {
                        tracing::error!(error = %e, port, "cannot serve worker metrics");
                    }
                });
            }
            mambo_worker::run(ctx, shutdown_signal()).await
        }
        Command::Broadcast {
            template,
            audience,
            vars,
            dry_run,
            no_wait,
        } => {
            let source = std::fs::read_to_string(&template)
                .with_context(|| format!("cannot read the template {}", template.display()))?;
            let name = template
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "broadcast".into());
            let req = BroadcastRequest {
                name,
                source,
                audience,
                vars: vars
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::Value::String(v)))
                    .collect(),
            };
            let pool = connect(&config).await?;
            let ctx = Context::new(pool, config)?;
            broadcast_command(&ctx, &req, dry_run, no_wait).await
        }
        Command::StripeEvent { file, url } => {
            let secret = config
                .stripe_webhook_secret
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("STRIPE_WEBHOOK_SECRET is not set"))?;
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file)?
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs() as i64;
            let event: serde_json::Value = serde_json::from_str(&text)?;
            let event = payments::complete_event(event, now).map_err(anyhow::Error::msg)?;
            let http = reqwest::Client::new();
            let (status, body) =
                payments::send_signed_event(&http, &url, secret.expose(), &event, now)
                    .await
                    .map_err(anyhow::Error::msg)?;
            println!("{} {} -> HTTP {status} {body}", event["type"], event["id"]);
            if !(200..300).contains(&status) {
                anyhow::bail!("the webhook refused the event");
            }
            Ok(())
        }
        Command::Digest { period } => {
            let pool = connect(&config).await?;
            let ctx = Context::new(pool, config)?;
            let report = digest::run(&ctx, period).await?;
            println!(
                "{} digest ({}): {} email(s) queued for the worker; {} user(s) already had this period's digest",
                report.period, report.period_key, report.queued, report.already_sent
            );
            Ok(())
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
            let id =
                mambo_core::users::create_admin(&pool, &email, &password, &first_name, &last_name)
                    .await?;
            println!("admin {email} ready (id {id}, tier performer, active)");
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

async fn broadcast_command(
    ctx: &Context,
    req: &BroadcastRequest,
    dry_run: bool,
    no_wait: bool,
) -> anyhow::Result<()> {
    let plan = broadcast::prepare(ctx, req, dry_run)
        .await
        .map_err(|e| anyhow::anyhow!(one_line(&e)))?;
    println!(
        "audience {}: {} users, {} unsubscribed (left out)",
        req.audience, plan.audience_size, plan.unsubscribed
    );
    if dry_run {
        if plan.resumed {
            let c = plan.counts;
            println!(
                "already prepared: {} sent, {} failed, {} skipped, {} pending",
                c.sent, c.failed, c.skipped, c.pending
            );
        }
        println!(
            "dry run: {} new recipient(s); {} batch(es) would be queued; nothing was recorded or sent",
            plan.new_recipients, plan.batches_queued
        );
        match &plan.sample {
            Some((to, email)) => {
                println!("\n--- first email, to {to} ---");
                println!("Subject: {}\n\n{}", email.subject, email.text.trim_end());
                println!("--- end ---");
            }
            None => println!("nobody to send to"),
        }
        return Ok(());
    }
    let Some(id) = plan.broadcast_id else {
        anyhow::bail!("the broadcast was not recorded");
    };
    println!(
        "broadcast {id}{}: {} new recipient(s), {} batch(es) queued",
        if plan.resumed { " (resumed)" } else { "" },
        plan.new_recipients,
        plan.batches_queued
    );
    if no_wait {
        println!(
            "queued; the worker sends the batches. Run the same command again to follow or resume."
        );
        return Ok(());
    }
    let counts = follow_broadcast(ctx, id).await?;
    println!(
        "summary: {} sent, {} failed, {} skipped, {} pending (of {} recipients; {} unsubscribed left out)",
        counts.sent,
        counts.failed,
        counts.skipped,
        counts.pending,
        counts.total(),
        plan.unsubscribed
    );
    if counts.failed > 0 {
        for (reason, n) in broadcast::failure_reasons(ctx, id).await? {
            println!("  failed ({n}): {reason}");
        }
    }
    if counts.pending > 0 {
        println!(
            "some recipients are still pending: the worker goes on; run the same command again to follow or resume"
        );
    }
    Ok(())
}

/// Draws a progress bar from the recipients' statuses until none is pending
/// (or Ctrl-C: the worker goes on without us).
async fn follow_broadcast(ctx: &Context, id: uuid::Uuid) -> anyhow::Result<broadcast::Counts> {
    use indicatif::{ProgressBar, ProgressStyle};
    let mut counts = broadcast::counts(ctx, id).await?;
    let bar = ProgressBar::new(counts.total());
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    let mut last_done = counts.done();
    let mut last_change = Instant::now();
    loop {
        bar.set_length(counts.total());
        bar.set_position(counts.done());
        let mut msg = format!(
            "sent {} · failed {} · skipped {}",
            counts.sent, counts.failed, counts.skipped
        );
        if counts.pending == 0 {
            bar.set_message(msg);
            bar.finish();
            return Ok(counts);
        }
        if counts.done() != last_done {
            last_done = counts.done();
            last_change = Instant::now();
        } else if last_change.elapsed() > Duration::from_secs(60) {
            msg.push_str(" · no progress for a minute: is `mambo worker` running?");
        }
        bar.set_message(msg);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = &mut ctrl_c => {
                bar.abandon_with_message("stopped following; the worker goes on");
                return Ok(counts);
            }
        }
        counts = broadcast::counts(ctx, id).await?;
    }
}

/// The error's message on one line (a template error can span several).
fn one_line(e: &mambo_core::Error) -> String {
    let msg = match e {
        mambo_core::Error::Http { detail, .. } => detail
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| detail.to_string()),
        other => other.to_string(),
    };
    msg.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn prompt_password() -> anyhow::Result<String> {
    eprint!("password: ");
    std::io::stderr().flush()?;
    let mut s = String::new();
    std::io::stdin().read_line(&mut s)?;
    Ok(s.trim_end_matches(['\r', '\n']).to_string())
}

/// Creates the database if missing (`DATABASE_URL`, default
/// [`mambo_core::config::DEFAULT_DATABASE_URL`]), migrates, seeds and runs
/// everything in one process.
async fn dev(mut config: Config) -> anyhow::Result<()> {
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
    // No R2 configured: serve uploads from a local S3-compatible server.
    let _local_s3 = if config.r2.is_none() {
        let port = std::env::var("LOCAL_S3_PORT")
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(local_s3::DEFAULT_PORT);
        match local_s3::start(std::path::Path::new(".dev-data/s3"), port).await {
            Ok(s3) => {
                config.r2 = Some(s3.r2_config());
                println!(
                    "Uploads:  local S3 at http://{} (bucket {}, files in {})",
                    s3.addr,
                    local_s3::BUCKET,
                    s3.root.display()
                );
                Some(s3)
            }
            Err(e) => {
                eprintln!("local S3 server not started ({e:#}); image uploads answer 503");
                None
            }
        }
    } else {
        None
    };
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
