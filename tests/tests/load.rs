//! Load held (issue 11): many users at once, for `LOAD_SECS` seconds (10 by
//! default; `LOAD_SECS=60 cargo test -p mambo-tests --test load -- --nocapture`
//! is the full run), read feeds, posts, wallets and worlds, react, reply,
//! accept answers and claim their daily claves, spread over two API processes
//! with two workers on one database and Redis namespace. No response may be a
//! 5xx (or a broken connection). Afterwards every balance equals its ledger,
//! every counter column equals the rows it counts, and no job is left behind
//! in the outbox or the Redis queues.

use mambo_tests::{Peer, StatusCode, TestApp, TestUser, UserSpec, eventually, json};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Concurrent clients.
const CLIENTS: usize = 24;
/// Users (each client acts as a random one per request).
const USERS: usize = 40;
/// Posts made through the API before the load (half Stage, half Lab).
const POSTS: usize = 16;
const TAGS: &[&str] = &["mambo", "timing", "styling", "musicality"];

fn load_secs() -> u64 {
    std::env::var("LOAD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

/// A small deterministic generator (no extra dependency; reproducible runs).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Default)]
struct Tally {
    /// (operation, status) → count; status 0 = no response (transport error).
    by_op: BTreeMap<(&'static str, u16), u64>,
    /// Slowest request per operation.
    slowest: BTreeMap<&'static str, Duration>,
    /// Bodies of 5xx answers (at most a few).
    server_errors: Vec<String>,
}

#[derive(Clone)]
struct Shared {
    apis: Arc<Vec<String>>,
    users: Arc<Vec<TestUser>>,
    /// (post id, owner index, is lab)
    posts: Arc<Vec<(Uuid, usize, bool)>>,
    /// Replies made during the load: (post id, reply id).
    replies: Arc<Mutex<Vec<(Uuid, Uuid)>>>,
    tally: Arc<Mutex<Tally>>,
}

async fn client_loop(seed: u64, until: Instant, sh: Shared) {
    let http = reqwest::Client::new();
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut n = 0usize;
    while Instant::now() < until {
        n += 1;
        let api = &sh.apis[n % sh.apis.len()];
        let ui = rng.below(sh.users.len());
        let user = &sh.users[ui];
        let (post, owner, is_lab) = sh.posts[rng.below(sh.posts.len())];
        let roll = rng.below(100);
        let (op, rb) = match roll {
            0..=29 => {
                let skip = rng.below(3) * 10;
                let kind = ["", "&post_type=stage", "&post_type=lab"][rng.below(3)];
                (
                    "feed",
                    http.get(format!(
                        "{api}/api/community/feed?skip={skip}&limit=10{kind}"
                    )),
                )
            }
            30..=44 => (
                "post",
                http.get(format!("{api}/api/community/posts/{post}")),
            ),
            45..=52 => ("wallet", http.get(format!("{api}/api/claves/wallet"))),
            53..=57 => ("worlds", http.get(format!("{api}/api/courses/worlds"))),
            58..=74 => {
                let kind = ["fire", "ruler", "clap"][rng.below(3)];
                (
                    "react",
                    http.post(format!("{api}/api/community/posts/{post}/react"))
                        .json(&json!({ "reaction_type": kind })),
                )
            }
            75..=86 => (
                "reply",
                http.post(format!("{api}/api/community/posts/{post}/replies"))
                    .json(&json!({ "content": format!("Nice one #{n}") })),
            ),
            87..=91 if is_lab => {
                // The question's author marks a reply as the solution.
                let pick = {
                    let replies = sh.replies.lock().unwrap();
                    let mine: Vec<Uuid> = replies
                        .iter()
                        .filter(|(p, _)| *p == post)
                        .map(|(_, r)| *r)
                        .collect();
                    (!mine.is_empty()).then(|| mine[rng.below(mine.len())])
                };
                let Some(reply) = pick else { continue };
                let owner = &sh.users[owner];
                let rb = http
                    .post(format!(
                        "{api}/api/community/posts/{post}/replies/{reply}/accept"
                    ))
                    .header("Authorization", owner.bearer());
                ("accept", rb)
            }
            _ => (
                "daily-claim",
                http.post(format!("{api}/api/claves/daily-claim")),
            ),
        };
        let rb = if op == "accept" {
            rb
        } else {
            rb.header("Authorization", user.bearer())
        };
        let started = Instant::now();
        let (status, body) = match rb.timeout(Duration::from_secs(30)).send().await {
            Ok(r) => {
                let s = r.status().as_u16();
                (s, r.text().await.unwrap_or_default())
            }
            Err(e) => (0, e.to_string()),
        };
        let took = started.elapsed();
        if op == "reply" && status == 200 {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            if let Some(id) = v["reply"]["id"].as_str().and_then(|s| s.parse().ok()) {
                sh.replies.lock().unwrap().push((post, id));
            }
        }
        let mut t = sh.tally.lock().unwrap();
        *t.by_op.entry((op, status)).or_default() += 1;
        let slowest = t.slowest.entry(op).or_default();
        *slowest = (*slowest).max(took);
        if (status == 0 || status >= 500) && t.server_errors.len() < 10 {
            t.server_errors.push(format!("{op} {status}: {body}"));
        }
    }
}

async fn scalar(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(app.db())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_load_from_many_users_over_two_apis_keeps_every_invariant() {
    let app = TestApp::spawn().await;
    let peer: Peer = app.spawn_peer().await;

    let mut users = vec![];
    for i in 0..USERS {
        users.push(
            app.create_user(UserSpec {
                // Some users run out of claves during the run (refusals are 4xx).
                claves: if i % 5 == 0 { 3 } else { 200 },
                ..Default::default()
            })
            .await,
        );
    }
    let initial_usage: HashMap<String, i64> =
        sqlx::query_as::<_, (String, i32)>("SELECT slug::text, usage_count FROM community_tags")
            .fetch_all(app.db())
            .await
            .unwrap()
            .into_iter()
            .map(|(s, n)| (s, n as i64))
            .collect();

    // Posts through the API, by the first POSTS users with enough claves.
    let mut posts = vec![];
    let authors: Vec<usize> = (0..USERS).filter(|i| i % 5 != 0).take(POSTS).collect();
    for (k, &ui) in authors.iter().enumerate() {
        let lab = k % 2 == 1;
        let body = if lab {
            json!({"post_type": "lab", "title": format!("Question {k}"), "body": "How?",
                   "tags": [TAGS[k % TAGS.len()]]})
        } else {
            json!({"post_type": "stage", "title": format!("Routine {k}"),
                   "tags": [TAGS[k % TAGS.len()], TAGS[(k + 1) % TAGS.len()]]})
        };
        let (s, v) = json(
            app.post("/api/community/posts")
                .header("Authorization", users[ui].bearer())
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        posts.push((v["post"]["id"].as_str().unwrap().parse().unwrap(), ui, lab));
    }

    let secs = load_secs();
    let shared = Shared {
        apis: Arc::new(vec![app.base.clone(), peer.base.clone()]),
        users: Arc::new(users.clone()),
        posts: Arc::new(posts),
        replies: Arc::default(),
        tally: Arc::default(),
    };
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let mut clients = vec![];
    for c in 0..CLIENTS {
        clients.push(tokio::spawn(client_loop(
            c as u64 + 1,
            until,
            shared.clone(),
        )));
    }
    for c in clients {
        c.await.unwrap();
    }
    let elapsed = started.elapsed();

    let tally = std::mem::take(&mut *shared.tally.lock().unwrap());
    let total: u64 = tally.by_op.values().sum();
    let mut per_op: BTreeMap<&str, BTreeMap<u16, u64>> = BTreeMap::new();
    for ((op, status), n) in &tally.by_op {
        per_op.entry(op).or_default().insert(*status, *n);
    }
    println!(
        "load: {total} requests in {:.1} s ({:.0}/s) from {CLIENTS} clients as {USERS} users over 2 APIs",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    for (op, statuses) in &per_op {
        println!(
            "  {op:12} {statuses:?} slowest {:?}",
            tally.slowest.get(op).copied().unwrap_or_default()
        );
    }
    assert!(
        tally.server_errors.is_empty(),
        "5xx or broken connections under load: {:?}",
        tally.server_errors
    );
    for op in [
        "feed",
        "post",
        "wallet",
        "worlds",
        "react",
        "reply",
        "daily-claim",
    ] {
        let ok = per_op
            .get(op)
            .and_then(|s| s.get(&200))
            .copied()
            .unwrap_or(0);
        assert!(ok > 0, "some {op} requests succeeded: {per_op:?}");
    }

    // No job left behind: the outbox is relayed and the Redis queues drain.
    let drained = eventually(120, || async {
        let outbox = scalar(
            &app,
            "SELECT count(*) FROM job_outbox WHERE relayed_at IS NULL",
        )
        .await;
        let mut redis = app.ctx.redis.conn();
        let mut waiting = 0i64;
        for q in mambo_core::jobs::QUEUES {
            let cfg = mambo_core::jobs::redis_config(&app.ctx, q);
            let (active, scheduled): (i64, i64) = redis::pipe()
                .llen(cfg.active_jobs_list())
                .zcard(cfg.scheduled_jobs_set())
                .query_async(&mut redis)
                .await
                .unwrap();
            let inflight: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}:*", cfg.inflight_jobs_set()))
                .query_async(&mut redis)
                .await
                .unwrap();
            let mut held = 0i64;
            for k in inflight {
                let n: i64 = redis::cmd("SCARD")
                    .arg(&k)
                    .query_async(&mut redis)
                    .await
                    .unwrap();
                held += n;
            }
            waiting += active + scheduled + held;
        }
        (outbox == 0 && waiting == 0).then_some(())
    })
    .await;
    assert!(
        drained.is_some(),
        "jobs are stuck in the outbox or in Redis"
    );
    let jobs = scalar(&app, "SELECT count(*) FROM job_outbox").await;

    // Balances equal their ledgers, and nobody is below zero.
    let mismatched = scalar(
        &app,
        "SELECT count(*) FROM user_profiles p
         WHERE p.current_claves <> coalesce(
             (SELECT sum(t.amount) FROM clave_transactions t WHERE t.user_id = p.user_id), 0)
            OR p.current_claves < 0",
    )
    .await;
    assert_eq!(mismatched, 0, "balances differ from their ledgers");
    for u in &users {
        let (balance, ledger) = app.balance_and_ledger(u.id).await;
        assert_eq!(balance, ledger, "user {}", u.id);
    }
    // One daily claim per user and day.
    let double_claims = scalar(
        &app,
        "SELECT count(*) FROM (SELECT user_id, created_at::date FROM clave_transactions
          WHERE reason = 'daily_login' GROUP BY 1, 2 HAVING count(*) > 1) d",
    )
    .await;
    assert_eq!(double_claims, 0);
    // Reaction refunds stay within the per-post cap.
    let cap = mambo_core::economy::Amounts::from_config(&app.ctx.config).reaction_refund_cap;
    let over_cap = scalar(
        &app,
        &format!(
            "SELECT count(*) FROM (SELECT user_id, reference_id FROM clave_transactions
              WHERE reason = 'reaction_refund' GROUP BY 1, 2 HAVING count(*) > {cap}) o"
        ),
    )
    .await;
    assert_eq!(over_cap, 0);

    // Every counter equals the rows it counts.
    let checks: &[(&str, &str)] = &[
        (
            "posts.reaction_count",
            "SELECT count(*) FROM posts p WHERE p.reaction_count <>
               (SELECT count(*) FROM post_reactions r WHERE r.post_id = p.id)",
        ),
        (
            "posts.reply_count",
            "SELECT count(*) FROM posts p WHERE p.reply_count <>
               (SELECT count(*) FROM post_replies r WHERE r.post_id = p.id)",
        ),
        (
            "user_stats.reactions_given_count",
            "SELECT count(*) FROM user_profiles u WHERE
               coalesce((SELECT reactions_given_count FROM user_stats s WHERE s.user_id = u.user_id), 0)
               <> (SELECT count(*) FROM post_reactions r WHERE r.user_id = u.user_id)",
        ),
        (
            "user_stats.reactions_received_count",
            "SELECT count(*) FROM user_profiles u WHERE
               coalesce((SELECT reactions_received_count FROM user_stats s WHERE s.user_id = u.user_id), 0)
               <> (SELECT count(*) FROM post_reactions r JOIN posts p ON p.id = r.post_id
                   WHERE p.user_id = u.user_id)",
        ),
        (
            "user_stats.solutions_accepted_count",
            "SELECT count(*) FROM user_profiles u WHERE
               coalesce((SELECT solutions_accepted_count FROM user_stats s WHERE s.user_id = u.user_id), 0)
               <> (SELECT count(*) FROM clave_transactions t
                   WHERE t.user_id = u.user_id AND t.reason = 'accepted_answer')",
        ),
        (
            "user_profiles.reputation",
            "SELECT count(*) FROM user_profiles u WHERE u.reputation <>
               (SELECT count(*) FROM clave_transactions t
                WHERE t.user_id = u.user_id AND t.reason = 'accepted_answer')",
        ),
        (
            "one accepted answer per post",
            "SELECT count(*) FROM posts p WHERE
               (SELECT count(*) FROM post_replies r WHERE r.post_id = p.id AND r.is_accepted_answer)
               <> (CASE WHEN p.accepted_answer_id IS NULL THEN 0 ELSE 1 END)
               OR p.is_solved <> (p.accepted_answer_id IS NOT NULL)
               OR (p.accepted_answer_id IS NOT NULL AND NOT EXISTS (
                   SELECT 1 FROM post_replies r WHERE r.id = p.accepted_answer_id
                     AND r.post_id = p.id AND r.is_accepted_answer))",
        ),
        (
            "reaction/comment spends",
            "SELECT count(*) FROM user_profiles u WHERE
               (SELECT count(*) FROM clave_transactions t WHERE t.user_id = u.user_id AND t.reason = 'reaction')
               <> coalesce((SELECT reactions_given_count FROM user_stats s WHERE s.user_id = u.user_id), 0)
               OR (SELECT count(*) FROM clave_transactions t WHERE t.user_id = u.user_id AND t.reason = 'comment')
               <> (SELECT count(*) FROM post_replies r WHERE r.user_id = u.user_id)",
        ),
    ];
    for (what, sql) in checks {
        assert_eq!(scalar(&app, sql).await, 0, "{what} differs from its rows");
    }
    let usage: Vec<(String, i32, i64)> = sqlx::query_as(
        "SELECT t.slug::text, t.usage_count,
                (SELECT count(*) FROM posts p WHERE t.slug = ANY(p.tags))
         FROM community_tags t",
    )
    .fetch_all(app.db())
    .await
    .unwrap();
    for (slug, count, posts) in &usage {
        assert_eq!(
            *count as i64,
            initial_usage.get(slug).copied().unwrap_or(0) + posts,
            "community_tags.usage_count of {slug}"
        );
    }
    let (reactions, replies, accepted, ledger_rows) = (
        scalar(&app, "SELECT count(*) FROM post_reactions").await,
        scalar(&app, "SELECT count(*) FROM post_replies").await,
        scalar(&app, "SELECT count(*) FROM posts WHERE is_solved").await,
        scalar(&app, "SELECT count(*) FROM clave_transactions").await,
    );
    println!(
        "after load: {reactions} reactions, {replies} replies, {accepted} solved questions, \
         {ledger_rows} ledger rows, {jobs} jobs relayed and run; {} balances = ledgers; \
         {} counter checks over every row; 0 jobs waiting",
        users.len(),
        checks.len() + 1
    );
    peer.stop().await;
}
