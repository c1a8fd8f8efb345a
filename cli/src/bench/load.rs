//! One cell of closed-loop load, and the API under test as a child process.

use super::*;

pub(super) struct Cell {
    pub(super) requests: u64,
    pub(super) errors: u64,
    pub(super) elapsed: Duration,
    pub(super) p50: Duration,
    pub(super) p99: Duration,
    pub(super) first_error: Option<String>,
}

pub(super) async fn run_cell(
    ep: &Endpoint,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Cell> {
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
pub(super) fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Resets the peak RSS (`VmHWM`) of a process we started.
pub(super) fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

pub(super) fn mib(kib: Option<u64>) -> String {
    kib.map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
        .unwrap_or_else(|| "?".into())
}

pub(super) struct ApiProcess {
    pub(super) child: tokio::process::Child,
    pub(super) pid: u32,
}

impl ApiProcess {
    pub(super) async fn start(args: &BenchArgs, log: &std::path::Path) -> anyhow::Result<Self> {
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

    pub(super) async fn stop(mut self) {
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
