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

/// Ids `md5('<kind>:<n>')::uuid` for `n` in `ns` (the seed's id scheme).
async fn ids(conn: &mut PgConnection, kind: &str, ns: &[i64]) -> anyhow::Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar(
        "SELECT md5($1 || ':' || n)::uuid FROM unnest($2::bigint[]) WITH ORDINALITY AS t(n, o)
         ORDER BY o",
    )
    .bind(kind)
    .bind(ns)
    .fetch_all(&mut *conn)
    .await?)
}

/// A deterministic spread of `n` over `0..m` (splitmix64).
fn spread(n: u64, m: i64) -> i64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % (m.max(1) as u64)) as i64
}

struct Fixtures {
    base: String,
    /// Access tokens of the benchmark accounts (index = user number).
    tokens: Vec<String>,
    /// Tokens of the pro benchmark accounts.
    pro_tokens: Vec<String>,
    worlds: Vec<Uuid>,
    lessons: Vec<Uuid>,
    posts: Vec<Uuid>,
    fresh_posts: Vec<Uuid>,
    emails: i64,
    deep_skip: i64,
    /// (token, ETag of its signed-in worlds list), for the 304 row.
    etags: Vec<(String, String)>,
}

type MakeRequest = Arc<dyn Fn(&reqwest::Client, u64) -> reqwest::RequestBuilder + Send + Sync>;

struct Endpoint {
    name: String,
    make: MakeRequest,
    /// Shared by every cell of the endpoint: sequence numbers never repeat
    /// (each react is a new (user, post) pair, each login a fresh email).
    counter: Arc<AtomicU64>,
}

fn endpoints(f: Arc<Fixtures>) -> Vec<Endpoint> {
    let mut out: Vec<Endpoint> = vec![];
    let mut add = |name: &str, make: MakeRequest| {
        out.push(Endpoint {
            name: name.to_string(),
            make,
            counter: Arc::new(AtomicU64::new(0)),
        })
    };
    let g = f.clone();
    add(
        "GET /api/courses/worlds (anonymous)",
        Arc::new(move |c, _| c.get(format!("{}/api/courses/worlds", g.base))),
    );
    let g = f.clone();
    add(
        "GET /api/courses/worlds (signed in)",
        Arc::new(move |c, n| {
            c.get(format!("{}/api/courses/worlds", g.base))
                .bearer_auth(&g.tokens[n as usize % g.tokens.len()])
        }),
    );
    let g = f.clone();
    add(
        "GET /api/courses/worlds/{id}/lessons",
        Arc::new(move |c, n| {
            let w = g.worlds[n as usize % g.worlds.len()];
            c.get(format!("{}/api/courses/worlds/{w}/lessons", g.base))
                .bearer_auth(&g.pro_tokens[n as usize % g.pro_tokens.len()])
        }),
    );
    let g = f.clone();
    add(
        "GET /api/courses/lessons/{id}",
        Arc::new(move |c, n| {
            let l = g.lessons[spread(n, g.lessons.len() as i64) as usize];
            c.get(format!("{}/api/courses/lessons/{l}", g.base))
                .bearer_auth(&g.pro_tokens[n as usize % g.pro_tokens.len()])
        }),
    );
    let g = f.clone();
    add(
        "GET /api/community/feed (page 1)",
        Arc::new(move |c, n| {
            c.get(format!("{}/api/community/feed?skip=0&limit=20", g.base))
                .bearer_auth(&g.tokens[n as usize % g.tokens.len()])
        }),
    );
    let g = f.clone();
    add(
        &format!("GET /api/community/feed (skip={})", f.deep_skip),
        Arc::new(move |c, n| {
            c.get(format!(
                "{}/api/community/feed?skip={}&limit=20",
                g.base, g.deep_skip
            ))
            .bearer_auth(&g.tokens[n as usize % g.tokens.len()])
        }),
    );
    let g = f.clone();
    add(
        "GET /api/community/posts/{id}",
        Arc::new(move |c, n| {
            let p = g.posts[spread(n, g.posts.len() as i64) as usize];
            c.get(format!("{}/api/community/posts/{p}", g.base))
                .bearer_auth(&g.tokens[n as usize % g.tokens.len()])
        }),
    );
    let g = f.clone();
    add(
        "GET /api/claves/wallet",
        Arc::new(move |c, n| {
            c.get(format!("{}/api/claves/wallet", g.base))
                .bearer_auth(&g.tokens[n as usize % g.tokens.len()])
        }),
    );
    let g = f.clone();
    add(
        "POST /api/community/posts/{id}/react",
        Arc::new(move |c, n| {
            // Pair n -> (user a, post (a + b) % F): unique for n < users × F,
            // and consecutive requests touch different users and posts.
            let users = g.tokens.len() as u64;
            let fresh = g.fresh_posts.len() as u64;
            let (a, b) = (n % users, n / users);
            let p = g.fresh_posts[((a + b) % fresh) as usize];
            c.post(format!("{}/api/community/posts/{p}/react", g.base))
                .bearer_auth(&g.tokens[a as usize])
                .json(&serde_json::json!({"reaction_type": "fire"}))
        }),
    );
    for path in ["/api/auth/me", "/api/users/me", "/api/badges/"] {
        let g = f.clone();
        add(
            &format!("GET {path}"),
            Arc::new(move |c, n| {
                c.get(format!("{}{path}", g.base))
                    .bearer_auth(&g.tokens[n as usize % g.tokens.len()])
            }),
        );
    }
    let g = f.clone();
    add(
        "GET /api/notifications/unread-count",
        Arc::new(move |c, n| {
            c.get(format!("{}/api/notifications/unread-count", g.base))
                .bearer_auth(&g.tokens[n as usize % g.tokens.len()])
        }),
    );
    let g = f.clone();
    add(
        "GET /api/notifications",
        Arc::new(move |c, n| {
            c.get(format!("{}/api/notifications?skip=0&limit=20", g.base))
                .bearer_auth(&g.tokens[n as usize % g.tokens.len()])
        }),
    );
    let g = f.clone();
    add(
        "GET /api/courses/worlds (signed in, If-None-Match: 304)",
        Arc::new(move |c, n| {
            let (token, tag) = &g.etags[n as usize % g.etags.len()];
            c.get(format!("{}/api/courses/worlds", g.base))
                .bearer_auth(token)
                .header("if-none-match", tag)
        }),
    );
    for (label, encoding) in [
        ("identity", None),
        ("gzip", Some("gzip")),
        ("br", Some("br")),
    ] {
        let g = f.clone();
        add(
            &format!("GET /api/community/feed (page 1, {label})"),
            Arc::new(move |c, n| {
                let r = c
                    .get(format!("{}/api/community/feed?skip=0&limit=20", g.base))
                    .bearer_auth(&g.tokens[n as usize % g.tokens.len()]);
                match encoding {
                    Some(e) => r.header("accept-encoding", e),
                    None => r,
                }
            }),
        );
        let g = f.clone();
        add(
            &format!("GET /openapi.json ({label})"),
            Arc::new(move |c, _| {
                let r = c.get(format!("{}/openapi.json", g.base));
                match encoding {
                    Some(e) => r.header("accept-encoding", e),
                    None => r,
                }
            }),
        );
    }
    let g = f;
    add(
        "POST /api/auth/token (login)",
        Arc::new(move |c, n| {
            // A fresh email and client address per attempt: the per-email
            // (5 / 5 min) and per-address limits are not what is measured.
            let email = bench_seed::bench_email(n as i64 % g.emails);
            let ip = format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255);
            c.post(format!("{}/api/auth/token", g.base))
                .header("x-forwarded-for", ip)
                .form(&[
                    ("username", email.as_str()),
                    ("password", bench_seed::BENCH_PASSWORD),
                ])
        }),
    );
    out
}

struct Cell {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    first_error: Option<String>,
}

async fn run_cell(ep: &Endpoint, concurrency: usize, duration: Duration) -> anyhow::Result<Cell> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?;
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let client = client.clone();
        let make = ep.make.clone();
        let counter = ep.counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat: Vec<u32> = Vec::with_capacity(4096);
            let mut errors = 0u64;
            let mut first_error: Option<String> = None;
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                let res = make(&client, n).send().await;
                let ok = match res {
                    Ok(r) => {
                        let status = r.status();
                        let body = r.bytes().await;
                        match body {
                            Ok(_) if status.is_success() || status.as_u16() == 304 => true,
                            Ok(b) => {
                                if first_error.is_none() {
                                    first_error = Some(format!(
                                        "{status} {}",
                                        String::from_utf8_lossy(&b[..b.len().min(200)])
                                    ));
                                }
                                false
                            }
                            Err(e) => {
                                first_error.get_or_insert_with(|| e.to_string());
                                false
                            }
                        }
                    }
                    Err(e) => {
                        first_error.get_or_insert_with(|| e.to_string());
                        false
                    }
                };
                lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                if !ok {
                    errors += 1;
                }
            }
            (lat, errors, first_error)
        }));
    }
    let mut all: Vec<u32> = vec![];
    let mut errors = 0;
    let mut first_error = None;
    for t in tasks {
        let (lat, e, fe) = t.await?;
        all.extend(lat);
        errors += e;
        if first_error.is_none() {
            first_error = fe;
        }
    }
    let elapsed = start.elapsed();
    all.sort_unstable();
    let pct = |q: f64| -> Duration {
        if all.is_empty() {
            return Duration::ZERO;
        }
        let i = ((all.len() as f64 * q).ceil() as usize).clamp(1, all.len()) - 1;
        Duration::from_micros(all[i] as u64)
    };
    Ok(Cell {
        requests: all.len() as u64,
        errors,
        elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
        first_error,
    })
}

/// `VmHWM` / `VmRSS` of a process, in KiB.
fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Resets the peak RSS (`VmHWM`) of a process we started.
fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

fn mib(kib: Option<u64>) -> String {
    kib.map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
        .unwrap_or_else(|| "?".into())
}

struct ApiProcess {
    child: tokio::process::Child,
    pid: u32,
}

impl ApiProcess {
    async fn start(args: &BenchArgs, log: &std::path::Path) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        if !exe.to_string_lossy().contains("release") {
            eprintln!(
                "warning: {} is not a release build; run scripts/bench.sh (cargo build --release)",
                exe.display()
            );
        }
        let log_file = std::fs::File::create(log)?;
        let namespace = format!(
            "bench-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs()
        );
        let child = tokio::process::Command::new(&exe)
            .arg("api")
            .env("DATABASE_URL", &args.seed.database_url)
            .env("PORT", args.port.to_string())
            .env("HOST", "127.0.0.1")
            .env("SECRET_KEY", SECRET)
            .env("REDIS_NAMESPACE", namespace)
            .env("TRUSTED_PROXIES", "127.0.0.1")
            .env("RUST_LOG", "warn")
            .env("LOG_FORMAT", "text")
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {} api", exe.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow::anyhow!("the API exited"))?;
        let mut p = ApiProcess { child, pid };
        let client = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{}/health", args.port);
        for _ in 0..300 {
            if let Ok(r) = client.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(p);
            }
            if let Some(status) = p.child.try_wait()? {
                anyhow::bail!("the API exited ({status}); see {}", log.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!(
            "the API did not answer /health in 30 s; see {}",
            log.display()
        )
    }

    async fn stop(mut self) {
        // SIGTERM through `kill` (graceful shutdown), then make sure.
        let _ = tokio::process::Command::new("kill")
            .arg(self.pid.to_string())
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

async fn fixtures(url: &str, s: &Sizes, base: String) -> anyhow::Result<Fixtures> {
    let (opts, _) = options(url)?;
    let mut conn = PgConnection::connect_with(&opts).await?;
    let bench: Vec<i64> = (0..s.bench_users).collect();
    let user_ids = ids(&mut conn, "u", &bench).await?;
    let mut map = HashMap::new();
    map.insert("SECRET_KEY".to_string(), SECRET.to_string());
    let config = mambo_core::Config::from_map(&map)?;
    // Long enough for the whole run.
    let now = chrono_now() + 3 * 3600 - config.access_token_seconds();
    let tokens: Vec<String> = user_ids
        .iter()
        .map(|u| create_token(&config, *u, TokenKind::Access, now))
        .collect();
    let pro_tokens = tokens.iter().step_by(2).cloned().collect();
    let worlds = ids(&mut conn, "w", &(0..s.worlds).collect::<Vec<_>>()).await?;
    let lessons = ids(&mut conn, "le", &(0..s.lessons).collect::<Vec<_>>()).await?;
    let sample: Vec<i64> = (0..5_000u64).map(|n| spread(n, s.posts)).collect();
    let posts = ids(&mut conn, "p", &sample).await?;
    let fresh: Vec<i64> = (s.posts - s.fresh_posts..s.posts).collect();
    let fresh_posts = ids(&mut conn, "p", &fresh).await?;
    // The ETag each of the first 64 accounts holds for its worlds list.
    let client = reqwest::Client::new();
    let mut etags = vec![];
    for t in tokens.iter().take(64) {
        let r = client
            .get(format!("{base}/api/courses/worlds"))
            .bearer_auth(t)
            .send()
            .await?;
        if let Some(tag) = r.headers().get("etag").and_then(|v| v.to_str().ok()) {
            etags.push((t.clone(), tag.to_string()));
        }
    }
    if etags.is_empty() {
        anyhow::bail!("the worlds list sends no ETag");
    }
    Ok(Fixtures {
        base,
        tokens,
        pro_tokens,
        worlds,
        lessons,
        posts,
        fresh_posts,
        emails: s.users,
        deep_skip: (s.posts / 2).min(10_000),
        etags,
    })
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

struct Row {
    endpoint: String,
    concurrency: usize,
    cell: Cell,
    peak_kib: Option<u64>,
    /// Bytes of one response body as sent (compressed when it was).
    body_bytes: Option<usize>,
}

/// What the run measured besides the table.
#[derive(Default)]
struct Extra {
    pgbench_tps: Option<f64>,
    /// `pgbench -N`: committed write transactions per second.
    pgbench_write_tps: Option<f64>,
    pgbench_note: Option<String>,
    idle_start: Option<u64>,
    idle_end: Option<u64>,
    /// Users whose balance differs from their ledger after the run.
    mismatches: i64,
    /// (streams opened, failed, API RSS with them open, RSS before opening).
    streams: Option<(usize, usize, Option<u64>, Option<u64>)>,
}

/// `mambo bench`.
pub async fn bench_command(args: BenchArgs) -> anyhow::Result<()> {
    // Thousands of streams need as many sockets in this process too.
    mambo_api::raise_open_file_limit();
    let (preset, sizes) = match read_meta(&args.seed.database_url).await? {
        Some(m) if !args.reseed => m,
        _ => {
            let s = seed_command(&args.seed).await?;
            (args.seed.preset.clone(), s)
        }
    };
    println!("bench database: preset {preset}, {sizes:?}");
    std::fs::create_dir_all("target")?;
    let log = PathBuf::from("target/bench-api.log");
    let api = ApiProcess::start(&args, &log).await?;
    let pid = api.pid;
    let idle_start = proc_kib(pid, "VmRSS:");
    let base = format!("http://127.0.0.1:{}", args.port);
    let f = Arc::new(fixtures(&args.seed.database_url, &sizes, base).await?);
    let mut extra = Extra::default();
    if args.pgbench_seconds > 0 {
        use crate::bench_extra::{Pgbench, pgbench};
        eprintln!(
            "pgbench -S and -N, 32 clients, {} s each",
            args.pgbench_seconds
        );
        let both = async {
            let reads = pgbench(Pgbench::Select, 32, args.pgbench_seconds).await?;
            let writes = pgbench(Pgbench::SimpleUpdate, 32, args.pgbench_seconds).await?;
            Ok::<_, String>((reads, writes))
        };
        match both.await {
            Ok((reads, writes)) => {
                extra.pgbench_tps = Some(reads);
                extra.pgbench_write_tps = Some(writes);
            }
            Err(e) => {
                eprintln!("  pgbench: {e}");
                extra.pgbench_note = Some(e);
            }
        }
    }
    let full = Pass {
        suffix: String::new(),
        concurrency: args.concurrency.clone(),
        gets_only: false,
    };
    let mut result = run_all(&args, f.clone(), pid, &full).await;
    if args.streams > 0 && result.is_ok() {
        let before = proc_kib(pid, "VmRSS:");
        eprintln!("opening {} notification streams", args.streams);
        let streams = crate::bench_extra::open_streams(args.port, &f.tokens, args.streams).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let with = proc_kib(pid, "VmRSS:");
        eprintln!(
            "  {} open, {} failed; API RSS {} (was {})",
            streams.opened,
            streams.failed,
            mib(with),
            mib(before)
        );
        extra.streams = Some((streams.opened, streams.failed, with, before));
        let again = Pass {
            suffix: format!(" [{} streams open]", streams.opened),
            concurrency: vec![32],
            gets_only: true,
        };
        match run_all(&args, f.clone(), pid, &again).await {
            Ok(more) => {
                if let Ok(rows) = result.as_mut() {
                    rows.extend(more);
                }
            }
            Err(e) => result = Err(e),
        }
        drop(streams);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_end = proc_kib(pid, "VmRSS:");
    api.stop().await;
    let rows = result?;
    let fanout = if args.only.is_empty() || args.only.iter().any(|o| o == "fanout") {
        Some(fanout_timing(&args.seed.database_url).await?)
    } else {
        None
    };
    let (opts, _) = options(&args.seed.database_url)?;
    let mut conn = PgConnection::connect_with(&opts).await?;
    let mismatches = bench_seed::ledger_mismatches(&mut conn).await?;
    extra.idle_start = idle_start;
    extra.idle_end = idle_end;
    extra.mismatches = mismatches;
    let mut report = render(&args, &preset, &sizes, &rows, &extra);
    if let Some((users, inserted, took)) = fanout {
        report.push_str(&format!(
            "`course_published` fan-out (the worker's job, `notifications::fanout::run`): {inserted} \
             notifications for {users} users in {:.2} s ({:.0} rows/s).\n",
            took.as_secs_f64(),
            inserted as f64 / took.as_secs_f64().max(1e-9)
        ));
    }
    println!("\n{report}");
    if let Some(dir) = args.output.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.output, &report)?;
    println!("written to {}", args.output.display());
    Ok(())
}

/// Times the `course_published` fan-out over every user of the bench
/// database: a throw-away world is published, the worker's job runs in this
/// process, and the world and its notifications are removed afterwards.
/// Returns (users, rows inserted, time).
async fn fanout_timing(url: &str) -> anyhow::Result<(i64, u64, Duration)> {
    let pool = mambo_core::db::connect(url, 4).await?;
    let vars: HashMap<String, String> = [
        ("DATABASE_URL".to_string(), url.to_string()),
        ("SECRET_KEY".to_string(), SECRET.to_string()),
        (
            "REDIS_NAMESPACE".to_string(),
            format!("bench-fanout-{}", Uuid::new_v4().simple()),
        ),
    ]
    .into_iter()
    .chain(
        std::env::var("REDIS_URL")
            .ok()
            .map(|v| ("REDIS_URL".to_string(), v)),
    )
    .collect();
    let config = mambo_core::Config::from_map(&vars)?;
    let ctx = mambo_core::Context::new(pool.clone(), config)?;
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&pool)
        .await?;
    let world: Uuid = sqlx::query_scalar(
        "INSERT INTO worlds (title, slug, order_index, difficulty, is_free, is_published)
         VALUES ('Bench fan-out', $1, 999, 'Beginner', true, true) RETURNING id",
    )
    .bind(format!("bench-fanout-{}", Uuid::new_v4().simple()))
    .fetch_one(&pool)
    .await?;
    sqlx::query("INSERT INTO course_publications (world_id) VALUES ($1)")
        .bind(world)
        .execute(&pool)
        .await?;
    eprintln!("course_published fan-out to {users} users");
    let job = mambo_core::jobs::CoursePublishedJob { world_id: world };
    let started = Instant::now();
    let inserted = mambo_core::notifications::fanout::run(&ctx, &job).await?;
    let took = started.elapsed();
    eprintln!("  {inserted} rows in {:.2} s", took.as_secs_f64());
    sqlx::query("DELETE FROM notifications WHERE dedup_key = $1")
        .bind(format!("course:{world}"))
        .execute(&pool)
        .await?;
    sqlx::query("DELETE FROM worlds WHERE id = $1")
        .bind(world)
        .execute(&pool)
        .await?;
    Ok((users, inserted, took))
}

/// Where an endpoint's sequence numbers stopped in earlier runs on this
/// database: a new run goes on from there, so a react is always a new (user,
/// post) pair (the spend path), never an "Already reacted" replay of an
/// earlier run's pair.
async fn load_seq(conn: &mut PgConnection, endpoint: &str) -> anyhow::Result<u64> {
    let v: Option<String> = sqlx::query_scalar("SELECT value FROM bench_meta WHERE key = $1")
        .bind(format!("seq:{endpoint}"))
        .fetch_optional(&mut *conn)
        .await?;
    Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
}

async fn save_seq(conn: &mut PgConnection, endpoint: &str, seq: u64) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO bench_meta (key, value) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
    )
    .bind(format!("seq:{endpoint}"))
    .bind(seq.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// One pass over the endpoints: the full table, or the GET rows again with
/// streams open.
struct Pass {
    suffix: String,
    concurrency: Vec<usize>,
    gets_only: bool,
}

async fn run_all(
    args: &BenchArgs,
    f: Arc<Fixtures>,
    pid: u32,
    pass: &Pass,
) -> anyhow::Result<Vec<Row>> {
    let (opts, _) = options(&args.seed.database_url)?;
    let mut conn = PgConnection::connect_with(&opts).await?;
    let mut rows = vec![];
    let sizer = reqwest::Client::new();
    for ep in endpoints(f) {
        if !args.only.is_empty() && !args.only.iter().any(|o| ep.name.contains(o.as_str())) {
            continue;
        }
        if pass.gets_only && !ep.name.starts_with("GET") {
            continue;
        }
        let name = format!("{}{}", ep.name, pass.suffix);
        eprintln!("{name}");
        ep.counter
            .store(load_seq(&mut conn, &ep.name).await?, Ordering::Relaxed);
        // One response's size as sent (reads only: a write would count).
        let body_bytes = if ep.name.starts_with("GET") {
            let n = ep.counter.fetch_add(1, Ordering::Relaxed);
            match (ep.make)(&sizer, n).send().await {
                Ok(r) => r.bytes().await.ok().map(|b| b.len()),
                Err(_) => None,
            }
        } else {
            None
        };
        if args.warmup > 0.0 {
            run_cell(&ep, 8, Duration::from_secs_f64(args.warmup)).await?;
        }
        for &c in &pass.concurrency {
            reset_peak(pid);
            let cell = run_cell(&ep, c, Duration::from_secs_f64(args.duration)).await?;
            let peak_kib = proc_kib(pid, "VmHWM:");
            eprintln!(
                "  c={c:<3} {:>8.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}  peak {}{}",
                cell.requests as f64 / cell.elapsed.as_secs_f64(),
                cell.p50.as_secs_f64() * 1e3,
                cell.p99.as_secs_f64() * 1e3,
                cell.errors,
                mib(peak_kib),
                cell.first_error
                    .as_deref()
                    .map(|e| format!("  (first error: {e})"))
                    .unwrap_or_default()
            );
            rows.push(Row {
                endpoint: name.clone(),
                concurrency: c,
                cell,
                peak_kib,
                body_bytes,
            });
        }
        save_seq(&mut conn, &ep.name, ep.counter.load(Ordering::Relaxed)).await?;
    }
    Ok(rows)
}

/// A row's req/s against PostgreSQL alone: reads against `pgbench -S`,
/// the react (spend) path, a committed write, against `pgbench -N`, marked `w`.
fn ratio(rps: f64, endpoint: &str, extra: &Extra) -> String {
    let (base, mark) = if endpoint.contains("/react") {
        (extra.pgbench_write_tps, " w")
    } else {
        (extra.pgbench_tps, "")
    };
    base.map(|t| format!("{:.2}{mark}", rps / t))
        .unwrap_or_else(|| "–".into())
}

fn render(args: &BenchArgs, preset: &str, s: &Sizes, rows: &[Row], extra: &Extra) -> String {
    let mut out = String::new();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    out.push_str("# Benchmark results\n\n");
    out.push_str(&format!(
        "`mambo bench` — preset **{preset}** ({} users, {} worlds, {} lessons, {} progress rows, \
         {} posts, {} reactions, {} replies), release build, {cpus} CPUs, load generator on the \
         same machine, {} s per cell after a {} s warm-up.\n\n",
        s.users,
        s.worlds,
        s.lessons,
        s.progress,
        s.posts,
        s.reactions,
        s.replies,
        args.duration,
        args.warmup
    ));
    match (extra.pgbench_tps, &extra.pgbench_note) {
        (Some(tps), _) => out.push_str(&format!(
            "PostgreSQL alone in the same run: `pgbench -S -c 32` (primary-key lookups) **{tps:.0} \
             tps**, `pgbench -N -c 32` (a committed update, select and insert) **{} tps**. The \
             `× pgbench` column divides each read's req/s by the first and the react path's \
             (marked w) by the second, to compare runs on different machines.\n\n",
            extra
                .pgbench_write_tps
                .map(|w| format!("{w:.0}"))
                .unwrap_or_else(|| "–".into())
        )),
        (None, Some(note)) => out.push_str(&format!("pgbench not run: {note}\n\n")),
        (None, None) => {}
    }
    out.push_str(
        "| endpoint | conc | req/s | × pgbench | p50 ms | p99 ms | errors | body bytes | API peak RSS |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        let rps = r.cell.requests as f64 / r.cell.elapsed.as_secs_f64();
        out.push_str(&format!(
            "| {} | {} | {:.0} | {} | {:.2} | {:.2} | {} | {} | {} |\n",
            r.endpoint,
            r.concurrency,
            rps,
            ratio(rps, &r.endpoint, extra),
            r.cell.p50.as_secs_f64() * 1e3,
            r.cell.p99.as_secs_f64() * 1e3,
            r.cell.errors,
            r.body_bytes
                .map(|b| b.to_string())
                .unwrap_or_else(|| "–".into()),
            mib(r.peak_kib)
        ));
    }
    if let Some((opened, failed, with, before)) = extra.streams {
        out.push_str(&format!(
            "\nNotification streams: {opened} held open ({failed} failed to open); API RSS {} with \
             them open (it was {} before they opened). The rows marked `[… streams open]` ran \
             while they stayed open.\n",
            mib(with),
            mib(before)
        ));
    }
    out.push_str(&format!(
        "\nAPI idle RSS: {} after start, {} after the run. Ledger check after the run: {} \
         user(s) whose balance differs from the sum of their ledger rows.\n",
        mib(extra.idle_start),
        mib(extra.idle_end),
        extra.mismatches
    ));
    out.push_str(
        "Login: argon2id m=19456 KiB, t=2, p=1 (the argon2 crate's defaults, OWASP); \
         concurrent hashes/verifications bounded by a semaphore (one per CPU).\n",
    );
    out
}
