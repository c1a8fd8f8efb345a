//! `mambo bench`: the passes over the endpoints, with pgbench and the streams.

use super::*;

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
pub(super) async fn fanout_timing(url: &str) -> anyhow::Result<(i64, u64, Duration)> {
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
pub(super) async fn load_seq(conn: &mut PgConnection, endpoint: &str) -> anyhow::Result<u64> {
    let v: Option<String> = sqlx::query_scalar("SELECT value FROM bench_meta WHERE key = $1")
        .bind(format!("seq:{endpoint}"))
        .fetch_optional(&mut *conn)
        .await?;
    Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
}

pub(super) async fn save_seq(
    conn: &mut PgConnection,
    endpoint: &str,
    seq: u64,
) -> anyhow::Result<()> {
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
pub(super) struct Pass {
    pub(super) suffix: String,
    pub(super) concurrency: Vec<usize>,
    pub(super) gets_only: bool,
}

pub(super) async fn run_all(
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
