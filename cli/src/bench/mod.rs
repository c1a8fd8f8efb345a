//! `mambo bench-seed` and `mambo bench`: a reproducible dataset at scale and a
//! small closed-loop load generator (tokio + reqwest) against the release API.
//!
//! `mambo bench` starts `<this binary> api` as a child process on the bench
//! database, warms each endpoint up, then drives it at each concurrency for a
//! fixed time and records requests/s, p50, p99, errors and the API process's
//! peak RSS (`VmHWM`, reset before every cell through `/proc/<pid>/clear_refs`).

use anyhow::Context as _;
use mambo_core::auth::{TokenKind, create_token};
use mambo_core::bench_seed::{self, Sizes};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

mod endpoints;
mod load;
mod report;
mod run;

use endpoints::*;
use load::*;
use report::*;
pub use run::*;

/// Loopback without TLS: PostgreSQL's default `sslmode=prefer` encrypts even
/// 127.0.0.1, which cost both processes CPU in every benchmark cell.
pub const DEFAULT_DATABASE_URL: &str =
    "postgres://postgres@127.0.0.1:5432/mambo_bench?sslmode=disable";
const SECRET: &str = "bench-secret-key-not-for-production";

#[derive(clap::Args, Debug, Clone)]
pub struct SeedArgs {
    /// Bench database (dropped and re-created; its name must contain "bench")
    #[arg(long, env = "BENCH_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// small or large
    #[arg(long, default_value = "small")]
    pub preset: String,
    #[arg(long)]
    pub users: Option<i64>,
    #[arg(long)]
    pub worlds: Option<i64>,
    #[arg(long)]
    pub lessons: Option<i64>,
    #[arg(long)]
    pub progress: Option<i64>,
    #[arg(long)]
    pub posts: Option<i64>,
    #[arg(long)]
    pub reactions: Option<i64>,
    #[arg(long)]
    pub replies: Option<i64>,
    /// RNG seed (same seed and sizes = same rows)
    #[arg(long)]
    pub seed: Option<i64>,
}

impl SeedArgs {
    fn sizes(&self) -> anyhow::Result<Sizes> {
        let mut s = Sizes::preset(&self.preset)
            .ok_or_else(|| anyhow::anyhow!("--preset must be small or large"))?;
        let o = |v: Option<i64>, d: i64| v.unwrap_or(d);
        s.users = o(self.users, s.users);
        s.worlds = o(self.worlds, s.worlds);
        s.lessons = o(self.lessons, s.lessons);
        s.progress = o(self.progress, s.progress);
        s.posts = o(self.posts, s.posts);
        s.reactions = o(self.reactions, s.reactions);
        s.replies = o(self.replies, s.replies);
        s.seed = o(self.seed, s.seed);
        Ok(s.normalized())
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    #[command(flatten)]
    pub seed: SeedArgs,
    /// Drop and seed the database again even when it is already seeded
    #[arg(long)]
    pub reseed: bool,
    /// Seconds per (endpoint, concurrency) cell
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Warm-up seconds per endpoint (not recorded)
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Concurrency levels
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,64")]
    pub concurrency: Vec<usize>,
    /// Port of the API under test
    #[arg(long, default_value_t = 18_080)]
    pub port: u16,
    /// Only endpoints whose name contains one of these (comma separated)
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Where the table is written
    #[arg(long, default_value = "docs/bench-results.md")]
    pub output: PathBuf,
    /// Seconds of `pgbench -S` and of `pgbench -N` (32 clients each) run first, for the ratio column (0: skip)
    #[arg(long, default_value_t = 10)]
    pub pgbench_seconds: u64,
    /// Then hold this many notification streams open and run the GET rows again at 32
    #[arg(long, default_value_t = 0)]
    pub streams: usize,
}

fn options(url: &str) -> anyhow::Result<(PgConnectOptions, String)> {
    let opts = PgConnectOptions::from_str(url)?.disable_statement_logging();
    let name = opts
        .get_database()
        .ok_or_else(|| anyhow::anyhow!("the bench database URL names no database"))?
        .to_string();
    Ok((opts, name))
}

/// Drops and re-creates the bench database, migrates and seeds it.
pub async fn seed_command(args: &SeedArgs) -> anyhow::Result<Sizes> {
    let sizes = args.sizes()?;
    let (opts, name) = options(&args.database_url)?;
    if !name.contains("bench") {
        anyhow::bail!(
            "refusing to drop {name:?}: the bench database's name must contain \"bench\""
        );
    }
    let started = Instant::now();
    {
        let mut admin = PgConnection::connect_with(&opts.clone().database("postgres")).await?;
        let quoted = name.replace('"', "\"\"");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{quoted}\" WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{quoted}\"")))
            .execute(&mut admin)
            .await?;
    }
    let pool = mambo_core::db::connect(&args.database_url, 2).await?;
    mambo_core::db::migrate(&pool).await?;
    pool.close().await;
    let hash = bench_seed::hash_bench_password().await?;
    let mut conn = PgConnection::connect_with(&opts).await?;
    println!("seeding {name}: {sizes:?}");
    let report = bench_seed::seed(&mut conn, sizes, &hash).await?;
    write_meta(&mut conn, &args.preset, &sizes).await?;
    for (table, rows, took) in &report.steps {
        println!(
            "  {table:<20} {rows:>10} rows  {:>8.1} s",
            took.as_secs_f64()
        );
    }
    println!(
        "seeded in {:.1} s (with migrations: {:.1} s); every user's password is {}",
        report.total.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        bench_seed::BENCH_PASSWORD
    );
    Ok(sizes)
}

async fn write_meta(conn: &mut PgConnection, preset: &str, s: &Sizes) -> anyhow::Result<()> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_meta (key text PRIMARY KEY, value text NOT NULL)",
    )
    .execute(&mut *conn)
    .await?;
    let rows = [
        ("preset", preset.to_string()),
        ("users", s.users.to_string()),
        ("worlds", s.worlds.to_string()),
        ("lessons", s.lessons.to_string()),
        ("progress", s.progress.to_string()),
        ("posts", s.posts.to_string()),
        ("reactions", s.reactions.to_string()),
        ("replies", s.replies.to_string()),
        ("bench_users", s.bench_users.to_string()),
        ("fresh_posts", s.fresh_posts.to_string()),
        ("seed", s.seed.to_string()),
    ];
    for (k, v) in rows {
        sqlx::query(
            "INSERT INTO bench_meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        )
        .bind(k)
        .bind(v)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The sizes and preset of a seeded database, or `None`.
async fn read_meta(url: &str) -> anyhow::Result<Option<(String, Sizes)>> {
    let (opts, _) = options(url)?;
    let Ok(mut conn) = PgConnection::connect_with(&opts).await else {
        return Ok(None);
    };
    let rows: Vec<(String, String)> = match sqlx::query_as("SELECT key, value FROM bench_meta")
        .fetch_all(&mut conn)
        .await
    {
        Ok(r) => r,
        Err(_) => return Ok(None),
    };
    let m: HashMap<String, String> = rows.into_iter().collect();
    let n = |k: &str| -> anyhow::Result<i64> {
        m.get(k)
            .ok_or_else(|| anyhow::anyhow!("bench_meta has no {k}"))?
            .parse::<i64>()
            .map_err(Into::into)
    };
    let s = Sizes {
        users: n("users")?,
        worlds: n("worlds")?,
        lessons: n("lessons")?,
        progress: n("progress")?,
        posts: n("posts")?,
        reactions: n("reactions")?,
        replies: n("replies")?,
        bench_users: n("bench_users")?,
        fresh_posts: n("fresh_posts")?,
        seed: n("seed")?,
    };
    Ok(Some((m.get("preset").cloned().unwrap_or_default(), s)))
}
