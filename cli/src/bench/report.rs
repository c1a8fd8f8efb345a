//! The results table.

use super::*;

pub(super) struct Row {
    pub(super) endpoint: String,
    pub(super) concurrency: usize,
    pub(super) cell: Cell,
    pub(super) peak_kib: Option<u64>,
    /// Bytes of one response body as sent (compressed when it was).
    pub(super) body_bytes: Option<usize>,
}

/// What the run measured besides the table.
#[derive(Default)]
pub(super) struct Extra {
    pub(super) pgbench_tps: Option<f64>,
    /// `pgbench -N`: committed write transactions per second.
    pub(super) pgbench_write_tps: Option<f64>,
    pub(super) pgbench_note: Option<String>,
    pub(super) idle_start: Option<u64>,
    pub(super) idle_end: Option<u64>,
    /// Users whose balance differs from their ledger after the run.
    pub(super) mismatches: i64,
    /// (streams opened, failed, API RSS with them open, RSS before opening).
    pub(super) streams: Option<(usize, usize, Option<u64>, Option<u64>)>,
}

/// A row's req/s against PostgreSQL alone: reads against `pgbench -S`,
/// the react (spend) path, a committed write, against `pgbench -N`, marked `w`.
pub(super) fn ratio(rps: f64, endpoint: &str, extra: &Extra) -> String {
    let (base, mark) = if endpoint.contains("/react") {
        (extra.pgbench_write_tps, " w")
    } else {
        (extra.pgbench_tps, "")
    };
    base.map(|t| format!("{:.2}{mark}", rps / t))
        .unwrap_or_else(|| "–".into())
}

pub(super) fn render(
    args: &BenchArgs,
    preset: &str,
    s: &Sizes,
    rows: &[Row],
    extra: &Extra,
) -> String {
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
