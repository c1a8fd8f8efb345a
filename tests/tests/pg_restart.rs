//! PostgreSQL restarted under load (issue 11): the server itself is restarted
//! (`pg_ctlcluster ... restart`) while clients read and write through one API
//! process; the pool recovers without restarting the API.
//!
//! Ignored by default: it restarts the PostgreSQL server every other test
//! shares. Run it alone (as root, on a machine whose cluster is managed by
//! Debian's pg_ctlcluster):
//!   cargo test -p mambo-tests --test pg_restart -- --ignored --nocapture
//! `faults.rs` covers the same recovery in CI by terminating every backend.

use mambo_tests::TestApp;
use std::time::{Duration, Instant};

/// The clusters of Debian's postgresql-common (`/etc/postgresql/<version>/<name>`).
fn clusters() -> Vec<(String, String)> {
    let mut out = vec![];
    for v in std::fs::read_dir("/etc/postgresql")
        .into_iter()
        .flatten()
        .flatten()
    {
        for c in std::fs::read_dir(v.path()).into_iter().flatten().flatten() {
            out.push((
                v.file_name().to_string_lossy().into_owned(),
                c.file_name().to_string_lossy().into_owned(),
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restarts the shared PostgreSQL server; run alone with --ignored"]
async fn postgresql_restarted_under_load_the_pool_recovers() {
    let clusters = clusters();
    assert!(
        !clusters.is_empty(),
        "no pg_ctlcluster cluster on this machine"
    );
    let app = TestApp::spawn().await;
    let user = app.student().await;

    // Four clients read the feed and claim daily claves for ~8 s.
    let mut load = vec![];
    for i in 0..4 {
        let client = app.client.clone();
        let feed = app.url("/api/community/feed");
        let claim = app.url("/api/claves/daily-claim");
        let bearer = user.bearer();
        load.push(tokio::spawn(async move {
            let mut statuses = vec![];
            let end = Instant::now() + Duration::from_secs(8);
            while Instant::now() < end {
                let req = if i == 0 {
                    client.post(&claim)
                } else {
                    client.get(&feed)
                };
                match req
                    .header("Authorization", &bearer)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                {
                    Ok(r) => statuses.push(r.status().as_u16()),
                    Err(_) => statuses.push(0),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            statuses
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    for (version, name) in &clusters {
        let status = tokio::process::Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", version, name, "restart"])
            .status()
            .await
            .expect("pg_ctlcluster");
        assert!(status.success(), "restarting {version}/{name}: {status}");
    }
    let restart = started.elapsed();
    let mut statuses = vec![];
    for l in load {
        statuses.extend(l.await.unwrap());
    }
    // During the restart: 5xx or success, never a 401 (the frontend would sign
    // the user out) and never a hang.
    assert!(
        statuses.iter().all(|s| [200, 500, 503].contains(s)),
        "{statuses:?}"
    );
    let failed = statuses.iter().filter(|s| **s != 200).count();

    // Afterwards, on the same API process: every read and write succeeds.
    tokio::time::sleep(Duration::from_secs(2)).await;
    app.assert_serves_after_fault(&user, ("GET", "/api/claves/wallet"))
        .await;
    println!(
        "pg restart: {:.1} s, {} requests during the load, {failed} failed (5xx), all 31 after it ok",
        restart.as_secs_f64(),
        statuses.len()
    );
}
