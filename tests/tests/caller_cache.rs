//! The caller cache (mambo_core::callers, issue 20): two API processes with
//! `CALLER_CACHE_SECONDS=10` on one database. A signed-in request's caller is
//! served from the process's memory, and forgotten the moment it changes:
//! at once in the process that changed it (sign out everywhere, password
//! change, verification, deletion), within moments in every other process
//! and after plain SQL (the `users` trigger's notification), never after a
//! change to a column the lookup does not read. Without its listener the
//! process caches nothing.

use mambo_tests::{Options, StatusCode, TestApp, TestUser, eventually, json};
use serde_json::json;
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(10);

async fn cached_app() -> TestApp {
    let app = TestApp::spawn_with(Options {
        worker: false,
        vars: vec![("CALLER_CACHE_SECONDS".into(), "10".into())],
    })
    .await;
    listening(&app.ctx).await;
    app
}

async fn listening(ctx: &mambo_core::Context) {
    let ok = eventually(5, || async { ctx.callers.is_listening().then_some(()) }).await;
    assert!(ok.is_some(), "the caller cache never started listening");
}

async fn me(req: reqwest::RequestBuilder, user: &TestUser) -> (StatusCode, serde_json::Value) {
    json(
        req.header("Authorization", user.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Waits up to 2 s for `user`'s `/api/auth/me` through `base` to answer `want`.
async fn answers_within(
    get: impl Fn() -> reqwest::RequestBuilder,
    user: &TestUser,
    want: StatusCode,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        if me(get(), user).await.0 == want {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_are_cached_and_forgotten_the_moment_they_change() {
    let app = cached_app().await;
    let peer = app.spawn_peer_with(true, false, &[]).await;
    listening(&peer.ctx).await;
    let alice = app.student().await;

    // Served once from the database, then from memory, in each process.
    assert_eq!(me(app.get("/api/auth/me"), &alice).await.0, StatusCode::OK);
    assert_eq!(me(peer.get("/api/auth/me"), &alice).await.0, StatusCode::OK);
    let row = app.ctx.callers.get(alice.id, TTL).expect("cached");
    assert_eq!(row.role, "student");
    assert!(peer.ctx.callers.get(alice.id, TTL).is_some());
    // A column the lookup does not read changes nothing.
    sqlx::query("UPDATE users SET updated_at = now() WHERE id = $1")
        .bind(alice.id)
        .execute(app.db())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(app.ctx.callers.get(alice.id, TTL).is_some(), "kept");

    // Sign out everywhere through the first process: its next request with
    // the old token is refused at once; the other process follows at once
    // too (the database's notification).
    let r = app
        .post("/api/auth/logout-all")
        .header("Authorization", alice.bearer())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", json(r).await);
    assert_eq!(
        me(app.get("/api/auth/me"), &alice).await.0,
        StatusCode::UNAUTHORIZED,
        "the same process must refuse the very next request"
    );
    let took = answers_within(
        || peer.get("/api/auth/me"),
        &alice,
        StatusCode::UNAUTHORIZED,
    )
    .await
    .expect("the other process still accepts a revoked token after 2 s");
    println!("revocation reached the other process in {took:?}");

    // Plain SQL (the CLI, an operator): role, verification, deletion.
    let bob = app.student().await;
    assert_eq!(
        me(peer.get("/api/auth/me"), &bob).await.1["role"],
        "student"
    );
    assert!(peer.ctx.callers.get(bob.id, TTL).is_some());
    sqlx::query("UPDATE users SET role = 'admin' WHERE id = $1")
        .bind(bob.id)
        .execute(app.db())
        .await
        .unwrap();
    let seen = eventually(2, || async {
        let (_, v) = me(peer.get("/api/auth/me"), &bob).await;
        (v["role"] == "admin").then_some(())
    })
    .await;
    assert!(seen.is_some(), "the role change never reached the cache");
    // The admin-only answer follows the cached role.
    let (s, _) = me(peer.get("/api/admin/audit"), &bob).await;
    assert_eq!(s, StatusCode::OK);
    sqlx::query("UPDATE users SET role = 'student' WHERE id = $1")
        .bind(bob.id)
        .execute(app.db())
        .await
        .unwrap();
    let refused = eventually(2, || async {
        let (s, _) = me(peer.get("/api/admin/audit"), &bob).await;
        (s == StatusCode::FORBIDDEN).then_some(())
    })
    .await;
    assert!(refused.is_some(), "a former admin kept the admin routes");
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(bob.id)
        .execute(app.db())
        .await
        .unwrap();
    assert!(
        answers_within(|| peer.get("/api/auth/me"), &bob, StatusCode::UNAUTHORIZED)
            .await
            .is_some(),
        "a deleted user is still served"
    );

    // Deleting one's own account: refused at once by the same process.
    let carol = app.student().await;
    assert_eq!(me(app.get("/api/auth/me"), &carol).await.0, StatusCode::OK);
    let r = app
        .delete("/api/users/me")
        .header("Authorization", carol.bearer())
        .json(&json!({"password": carol.password}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", json(r).await);
    assert_eq!(
        me(app.get("/api/auth/me"), &carol).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_listener_a_process_caches_nothing_until_it_listens_again() {
    let app = cached_app().await;
    let dave = app.student().await;
    assert_eq!(me(app.get("/api/auth/me"), &dave).await.0, StatusCode::OK);
    assert!(app.ctx.callers.get(dave.id, TTL).is_some());
    let listener_pid = || async {
        sqlx::query_scalar::<_, i32>(
            "SELECT pid FROM pg_stat_activity
             WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
        )
        .fetch_optional(app.db())
        .await
        .unwrap()
    };
    let old = listener_pid().await.expect("a listening backend");
    // The listener's connection dies; a change made meanwhile is not lost.
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(old)
        .execute(app.db())
        .await
        .unwrap();
    sqlx::query("UPDATE users SET is_verified = NOT is_verified WHERE id = $1")
        .bind(dave.id)
        .execute(app.db())
        .await
        .unwrap();
    let back = eventually(5, || async {
        match listener_pid().await {
            Some(pid) if pid != old && app.ctx.callers.is_listening() => Some(pid),
            _ => None,
        }
    })
    .await;
    assert!(back.is_some(), "the listener was not made again");
    let want: bool = sqlx::query_scalar("SELECT is_verified FROM users WHERE id = $1")
        .bind(dave.id)
        .fetch_one(app.db())
        .await
        .unwrap();
    let (s, v) = me(app.get("/api/auth/me"), &dave).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["is_verified"], want, "{v}");
}
