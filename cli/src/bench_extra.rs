//! The parts of `mambo bench` added for issue 20: PostgreSQL's own speed on
//! the same machine in the same run (`pgbench -S` for reads, `pgbench -N`
//! for committed writes), so a reader can compare
//! runs on different machines by ratio, and thousands of idle notification
//! streams held open against the API while the read table runs again.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What PostgreSQL alone is measured doing.
#[derive(Clone, Copy)]
pub enum Pgbench {
    /// `-S`: primary-key lookups (the reads' yardstick).
    Select,
    /// `-N`: a small committed write transaction (an update, a select and an
    /// insert), bound by the WAL flush at commit: the writes' yardstick.
    SimpleUpdate,
}

/// Transactions per second PostgreSQL answers alone in `mode` at `clients`
/// connections for `secs` seconds, against its own database `mambo_pgbench`
/// (created and initialised at scale 10 once). An error note when pgbench is
/// not installed or fails.
pub async fn pgbench(mode: Pgbench, clients: usize, secs: u64) -> Result<f64, String> {
    let host = std::env::var("PGHOST").unwrap_or_else(|_| "127.0.0.1".into());
    let user = std::env::var("PGUSER").unwrap_or_else(|_| "postgres".into());
    let run = |args: Vec<String>| {
        let host = host.clone();
        let user = user.clone();
        async move {
            tokio::process::Command::new("pgbench")
                .args(["-h", &host, "-U", &user])
                .args(&args)
                .output()
                .await
                .map_err(|e| format!("pgbench: {e}"))
        }
    };
    // A database of its own, initialised once (createdb fails harmlessly
    // when it exists; `-i` is skipped when its tables are there).
    let _ = tokio::process::Command::new("createdb")
        .args(["-h", &host, "-U", &user, "mambo_pgbench"])
        .output()
        .await;
    let exists = tokio::process::Command::new("psql")
        .args(["-h", &host, "-U", &user, "-d", "mambo_pgbench", "-tAc"])
        .arg("SELECT count(*) FROM pg_tables WHERE tablename = 'pgbench_accounts'")
        .output()
        .await
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "1")
        .unwrap_or(false);
    if !exists {
        let out = run(vec![
            "-i".into(),
            "-q".into(),
            "-s".into(),
            "10".into(),
            "mambo_pgbench".into(),
        ])
        .await?;
        if !out.status.success() {
            return Err(format!(
                "pgbench -i: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    let flag = match mode {
        Pgbench::Select => "-S",
        Pgbench::SimpleUpdate => "-N",
    };
    let out = run(vec![
        flag.into(),
        "-n".into(),
        "-c".into(),
        clients.to_string(),
        "-j".into(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .to_string(),
        "-T".into(),
        secs.to_string(),
        "mambo_pgbench".into(),
    ])
    .await?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            let rest = l.trim().strip_prefix("tps = ")?;
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .ok_or_else(|| {
            format!(
                "pgbench printed no tps: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// Open notification streams: each is a plain TCP connection that sent its
/// request and now only reads (events and heartbeats), as a browser's
/// EventSource does. Dropping it closes them.
pub struct Streams {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub opened: usize,
    pub failed: usize,
}

impl Drop for Streams {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Opens `n` streams against `127.0.0.1:port` with the given tokens (used in
/// turn), at most 200 connecting at once, and waits until each has its
/// response head (`200` with `text/event-stream`).
pub async fn open_streams(port: u16, tokens: &[String], n: usize) -> Streams {
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(200));
    let mut tasks = Vec::with_capacity(n);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<bool>();
    for i in 0..n {
        let token = tokens[i % tokens.len()].clone();
        let sem = sem.clone();
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await;
            let ok = async {
                let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()?;
                let req = format!(
                    "GET /api/notifications/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                     Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
                );
                s.write_all(req.as_bytes()).await.ok()?;
                let mut head = vec![0u8; 1024];
                let got = tokio::time::timeout(Duration::from_secs(30), s.read(&mut head))
                    .await
                    .ok()?
                    .ok()?;
                let text = String::from_utf8_lossy(&head[..got]).to_ascii_lowercase();
                (text.starts_with("http/1.1 200") && text.contains("text/event-stream"))
                    .then_some(s)
            }
            .await;
            drop(permit);
            let _ = tx.send(ok.is_some());
            if let Some(mut s) = ok {
                // Idle: read whatever comes (heartbeats) until closed.
                let mut buf = [0u8; 512];
                while let Ok(k) = s.read(&mut buf).await {
                    if k == 0 {
                        break;
                    }
                }
            }
        }));
    }
    drop(tx);
    let (mut opened, mut failed) = (0, 0);
    while let Some(ok) = rx.recv().await {
        if ok {
            opened += 1;
        } else {
            failed += 1;
        }
        if opened + failed == n {
            break;
        }
    }
    Streams {
        tasks,
        opened,
        failed,
    }
}
