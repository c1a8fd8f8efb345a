//! Badges, streaks and boss-battle submissions (API.md §3.10, §3.11, §3.3
//! grading, §4.2, §4.8; D1, D14, D22, D24, D27, D29).

use chrono::{NaiveDate, TimeZone, Utc};
use mambo_core::jobs::{self, BadgeCheckJob, StreakBonusJob};
use mambo_tests::{StatusCode, TestApp, TestUser, UserSpec, eventually, json};
use serde_json::{Value, json};
use uuid::Uuid;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

async fn profile_id(app: &TestApp, user: Uuid) -> Uuid {
    sqlx::query_scalar("SELECT id FROM user_profiles WHERE user_id = $1")
        .bind(user)
        .fetch_one(app.db())
        .await
        .unwrap()
}

/// Inserts `n` posts of `post_type` for `user` (with a Mux asset when `video`).
async fn add_posts(app: &TestApp, user: Uuid, post_type: &str, n: i32, video: bool) {
    sqlx::query(
        "INSERT INTO posts (user_id, post_type, title, body, mux_asset_id)
         SELECT $1, $2, 'Post ' || g, 'body', CASE WHEN $3 THEN 'asset' || g ELSE NULL END
         FROM generate_series(1, $4) g",
    )
    .bind(user)
    .bind(post_type)
    .bind(video)
    .bind(n)
    .execute(app.db())
    .await
    .unwrap();
}

/// `reactor` reacts with `kind` on every post of `owner`.
async fn react_to_all(app: &TestApp, owner: Uuid, reactor: Uuid, kind: &str) {
    sqlx::query(
        "INSERT INTO post_reactions (post_id, user_id, reaction_type)
         SELECT id, $2, $3 FROM posts WHERE user_id = $1
         ON CONFLICT (post_id, user_id) DO NOTHING",
    )
    .bind(owner)
    .bind(reactor)
    .bind(kind)
    .execute(app.db())
    .await
    .unwrap();
}

async fn owned_badges(app: &TestApp, user: Uuid) -> Vec<String> {
    sqlx::query_scalar("SELECT badge_id FROM user_badges WHERE user_id = $1 ORDER BY badge_id")
        .bind(user)
        .fetch_all(app.db())
        .await
        .unwrap()
}

async fn badge_count(app: &TestApp, user: Uuid, badge: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM user_badges WHERE user_id = $1 AND badge_id = $2")
        .bind(user)
        .bind(badge)
        .fetch_one(app.db())
        .await
        .unwrap()
}

fn job(user: Uuid, stat: &str) -> BadgeCheckJob {
    BadgeCheckJob {
        user_id: user,
        stat: stat.into(),
    }
}

/// A world with one level, a boss-battle lesson and a normal lesson.
struct Course {
    boss: Uuid,
    normal: Uuid,
}

async fn course(app: &TestApp, is_free: bool, published: bool) -> Course {
    let slug = format!("w-{}", Uuid::new_v4().simple());
    let world: Uuid = sqlx::query_scalar(
        "INSERT INTO worlds (title, slug, order_index, is_free, difficulty, is_published)
         VALUES ('World', $1, 1, $2, 'Beginner', $3) RETURNING id",
    )
    .bind(&slug)
    .bind(is_free)
    .bind(published)
    .fetch_one(app.db())
    .await
    .unwrap();
    let level: Uuid = sqlx::query_scalar(
        "INSERT INTO levels (world_id, title, order_index) VALUES ($1, 'Level', 1) RETURNING id",
    )
    .bind(world)
    .fetch_one(app.db())
    .await
    .unwrap();
    let boss: Uuid = sqlx::query_scalar(
        "INSERT INTO lessons (level_id, title, order_index, is_boss_battle, video_url)
         VALUES ($1, 'The Final Shine', 2, true, '') RETURNING id",
    )
    .bind(level)
    .fetch_one(app.db())
    .await
    .unwrap();
    let normal: Uuid = sqlx::query_scalar(
        "INSERT INTO lessons (level_id, title, order_index, is_boss_battle, video_url)
         VALUES ($1, 'Basic Step', 1, false, '') RETURNING id",
    )
    .bind(level)
    .fetch_one(app.db())
    .await
    .unwrap();
    Course { boss, normal }
}

async fn submit(app: &TestApp, user: &TestUser, lesson: &str, video: &str) -> (StatusCode, Value) {
    json(
        app.post("/api/submissions/submit")
            .header("Authorization", user.bearer())
            .json(&json!({"lesson_id": lesson, "video_url": video}))
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn grade(app: &TestApp, admin: &TestUser, id: &str, body: Value) -> (StatusCode, Value) {
    json(
        app.post(&format!("/api/admin/submissions/{id}/grade"))
            .header("Authorization", admin.bearer())
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn xp_level(app: &TestApp, user: Uuid) -> (i32, i32) {
    sqlx::query_as("SELECT xp, level FROM user_profiles WHERE user_id = $1")
        .bind(user)
        .fetch_one(app.db())
        .await
        .unwrap()
}

async fn streak(app: &TestApp, user: Uuid) -> i32 {
    sqlx::query_scalar("SELECT streak_count FROM user_profiles WHERE user_id = $1")
        .bind(user)
        .fetch_one(app.db())
        .await
        .unwrap()
}

async fn streak_bonus_rows(app: &TestApp, user: Uuid) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM clave_transactions WHERE user_id = $1 AND reason = 'streak_bonus'",
    )
    .bind(user)
    .fetch_one(app.db())
    .await
    .unwrap()
}

/// `h` o'clock UTC plus five seconds: `Clock::set` keeps millisecond precision
/// and may land a fraction of a millisecond early, so an exact midnight could
/// still read as the previous day.
/// The daily claim through the API (the clock decides the day; the token is
/// checked against real time).
async fn claim_http(app: &TestApp, user: &TestUser) -> (StatusCode, Value) {
    json(
        app.post("/api/claves/daily-claim")
            .header("Authorization", user.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await
}

fn at(y: i32, m: u32, d: u32, h: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 5).unwrap()
}

// ---------------------------------------------------------------------------
// Badge endpoints
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn badge_list_is_served_with_and_without_the_slash() {
    let app = TestApp::spawn_api_only().await;
    let user = app.student().await;

    for path in ["/api/badges/", "/api/badges"] {
        let (status, body) = json(
            app.get(path)
                .header("Authorization", user.bearer())
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        let items = body.as_array().unwrap();
        assert_eq!(items.len(), 38, "{path}");
        let first = &items[0];
        for key in [
            "id",
            "name",
            "description",
            "tier",
            "icon_url",
            "category",
            "requirement_type",
            "requirement_value",
            "is_earned",
            "earned_at",
            "display_order",
        ] {
            assert!(first.get(key).is_some(), "{path}: missing {key} in {first}");
        }
        assert!(items.iter().all(|b| b["is_earned"] == false));
        assert!(items.iter().all(|b| b["earned_at"].is_null()));
        // Unearned badges: requirement_value descending.
        let values: Vec<i64> = items
            .iter()
            .map(|b| b["requirement_value"].as_i64().unwrap())
            .collect();
        assert!(values.windows(2).all(|w| w[0] >= w[1]), "{values:?}");

        let resp = app.get(path).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
        let resp = app.post(path).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
    }
}

/// Issue 15: both profile routes carry the whole catalogue with the caller's
/// state, exactly as `GET /api/badges/` lists it; the public profile only the
/// earned badges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_profiles_carry_every_badge_in_the_catalogue_order() {
    let app = TestApp::spawn_api_only().await;
    let user = app.student().await;
    let other = app.student().await;
    // Two earned badges: one placed by the user, one unordered; and one for
    // somebody else, which must not show as earned here.
    sqlx::query(
        "INSERT INTO user_badges (user_id, badge_id, earned_at, display_order) VALUES
         ($1, 'firestarter_bronze', '2026-01-02T03:04:05Z', 0),
         ($1, 'curious_mind_silver', '2026-02-03T04:05:06Z', 1),
         ($2, 'center_stage_bronze', '2026-02-03T04:05:06Z', 1)",
    )
    .bind(user.id)
    .bind(other.id)
    .execute(app.db())
    .await
    .unwrap();
    let get = |path: &'static str| {
        let app = &app;
        let bearer = user.bearer();
        async move {
            let (s, v) = json(
                app.get(path)
                    .header("Authorization", bearer)
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{path}: {v}");
            v
        }
    };
    let catalogue = get("/api/badges/").await;
    let me = get("/api/auth/me").await;
    let users_me = get("/api/users/me").await;
    assert_eq!(catalogue.as_array().unwrap().len(), 38);
    assert_eq!(me["badges"], catalogue);
    assert_eq!(users_me["badges"], catalogue);
    let items = me["badges"].as_array().unwrap();
    // Earned first, the placed one before the unordered one (0 counts as 9999).
    assert_eq!(items[0]["id"], "curious_mind_silver");
    assert_eq!(items[0]["is_earned"], true);
    assert_eq!(items[0]["display_order"], 1);
    assert!(
        items[0]["earned_at"]
            .as_str()
            .unwrap()
            .starts_with("2026-02-03T04:05:06")
    );
    assert_eq!(items[1]["id"], "firestarter_bronze");
    assert_eq!(items[1]["is_earned"], true);
    assert!(
        items[2..]
            .iter()
            .all(|b| b["is_earned"] == false && b["earned_at"].is_null())
    );
    let locked: Vec<i64> = items[2..]
        .iter()
        .map(|b| b["requirement_value"].as_i64().unwrap())
        .collect();
    assert!(locked.windows(2).all(|w| w[0] >= w[1]), "{locked:?}");

    // The public profile keeps showing only what was earned.
    let username: String =
        sqlx::query_scalar("SELECT username FROM user_profiles WHERE user_id = $1")
            .bind(user.id)
            .fetch_one(app.db())
            .await
            .unwrap();
    let (s, public) = json(
        app.get(&format!("/api/users/public/{username}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<&str> = public["badges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["curious_mind_silver", "firestarter_bronze"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_badges_and_stats_resolve_user_and_profile_ids() {
    let app = TestApp::spawn_api_only().await;
    let owner = app.student().await;
    let fan = app.student().await;

    add_posts(&app, owner.id, "stage", 3, true).await;
    add_posts(&app, owner.id, "stage", 1, false).await;
    add_posts(&app, owner.id, "lab", 2, false).await;
    react_to_all(&app, owner.id, fan.id, "ruler").await;
    sqlx::query(
        "INSERT INTO user_stats (user_id, reactions_given_count, reactions_received_count,
                                 solutions_accepted_count)
         VALUES ($1, 4, 6, 2)",
    )
    .bind(owner.id)
    .execute(app.db())
    .await
    .unwrap();
    // The owner replies 3 times on their own post.
    sqlx::query(
        "INSERT INTO post_replies (post_id, user_id, content)
         SELECT (SELECT id FROM posts WHERE user_id = $1 LIMIT 1), $1, 'hi'
         FROM generate_series(1, 3)",
    )
    .bind(owner.id)
    .execute(app.db())
    .await
    .unwrap();
    sqlx::query("UPDATE user_profiles SET streak_count = 7 WHERE user_id = $1")
        .bind(owner.id)
        .execute(app.db())
        .await
        .unwrap();
    sqlx::query("INSERT INTO user_badges (user_id, badge_id, display_order) VALUES ($1, 'founder_diamond', 0)")
        .bind(owner.id)
        .execute(app.db())
        .await
        .unwrap();

    let pid = profile_id(&app, owner.id).await;
    for id in [owner.id, pid] {
        let (status, stats) = json(
            app.get(&format!("/api/badges/stats/{id}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{stats}");
        assert_eq!(
            stats,
            json!({
                "reactions_given": 4,
                "reactions_received": 6,
                "fires_received": 0,
                "claps_received": 0,
                "metronomes_received": 6,
                "solutions_accepted": 2,
                "questions_solved": 2,
                "questions_posted": 2,
                "videos_posted": 3,
                "comments_posted": 3,
                "current_streak": 7,
            })
        );

        let (status, items) = json(
            app.get(&format!("/api/badges/user/{id}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{items}");
        let items = items.as_array().unwrap();
        assert_eq!(items.len(), 38);
        assert_eq!(items[0]["id"], "founder_diamond");
        assert_eq!(items[0]["is_earned"], true);
        let earned_at = items[0]["earned_at"].as_str().unwrap();
        assert!(earned_at.ends_with('Z'), "{earned_at}");
        assert_eq!(items.iter().filter(|b| b["is_earned"] == true).count(), 1);
    }

    // Unknown and malformed ids: 404, never 500.
    for path in [
        format!("/api/badges/user/{}", Uuid::new_v4()),
        "/api/badges/user/not-a-uuid".to_string(),
        format!("/api/badges/stats/{}", Uuid::new_v4()),
        "/api/badges/stats/12345".to_string(),
    ] {
        let (status, body) = json(app.get(&path).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(body, json!({"detail": "User not found"}), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_endpoint_recomputes_every_stat_and_never_awards_manual_badges() {
    let app = TestApp::spawn_api_only().await;
    let user = app.student().await;
    let check = || async {
        json(
            app.post("/api/badges/check")
                .header("Authorization", user.bearer())
                .send()
                .await
                .unwrap(),
        )
        .await
    };

    let (status, body) = check().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"success": true, "message": "No new badges earned yet. Keep going!", "badges": []})
    );

    add_posts(&app, user.id, "stage", 1, true).await;
    add_posts(&app, user.id, "lab", 10, false).await;
    let (status, body) = check().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["message"], "🏆 3 new badge(s) earned!");
    let mut ids: Vec<&str> = body["badges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["badge_id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "center_stage_bronze",
            "curious_mind_bronze",
            "curious_mind_silver"
        ]
    );
    for b in body["badges"].as_array().unwrap() {
        assert!(b["badge_name"].as_str().unwrap().len() > 3);
        assert!(
            b["message"]
                .as_str()
                .unwrap()
                .contains(b["badge_name"].as_str().unwrap())
        );
    }

    let (_, body) = check().await;
    assert_eq!(body["message"], "No new badges earned yet. Keep going!");
    let owned = owned_badges(&app, user.id).await;
    assert_eq!(
        owned,
        [
            "center_stage_bronze",
            "curious_mind_bronze",
            "curious_mind_silver"
        ]
    );
    assert!(
        !owned
            .iter()
            .any(|b| b == "founder_diamond" || b == "beta_tester")
    );

    // The caller's list now shows them earned, first.
    let (_, items) = json(
        app.get("/api/badges/")
            .header("Authorization", user.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    let items = items.as_array().unwrap();
    assert!(items[..3].iter().all(|b| b["is_earned"] == true));
    assert!(items[3..].iter().all(|b| b["is_earned"] == false));

    let resp = app.post("/api/badges/check").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

// ---------------------------------------------------------------------------
// The badge_check job
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn badge_check_job_is_idempotent_and_awards_every_tier_reached() {
    let app = TestApp::spawn_api_only().await;
    let owner = app.student().await;
    let fan = app.student().await;

    // 25 claps: crowd_favorite bronze (5) and silver (25) at once.
    add_posts(&app, owner.id, "stage", 25, false).await;
    react_to_all(&app, owner.id, fan.id, "clap").await;

    let j = job(owner.id, "claps_received");
    mambo_core::badges::run_check(&app.ctx, &j).await.unwrap();
    mambo_core::badges::run_check(&app.ctx, &j).await.unwrap();
    assert_eq!(
        owned_badges(&app, owner.id).await,
        ["crowd_favorite_bronze", "crowd_favorite_silver"]
    );
    assert_eq!(
        badge_count(&app, owner.id, "crowd_favorite_silver").await,
        1
    );

    // Another stat of the same user awards only its own type.
    mambo_core::badges::run_check(&app.ctx, &job(owner.id, "fires_received"))
        .await
        .unwrap();
    assert_eq!(owned_badges(&app, owner.id).await.len(), 2);

    // Stats without definitions, manual, unknown stats and unknown users: no-ops.
    for stat in [
        "lessons_completed",
        "reactions_received",
        "manual",
        "nonsense",
        "",
    ] {
        mambo_core::badges::run_check(&app.ctx, &job(owner.id, stat))
            .await
            .unwrap();
    }
    mambo_core::badges::run_check(&app.ctx, &job(Uuid::new_v4(), "claps_received"))
        .await
        .unwrap();
    assert_eq!(owned_badges(&app, owner.id).await.len(), 2);

    // user_stats drives reactions_given / solutions_accepted.
    sqlx::query(
        "INSERT INTO user_stats (user_id, reactions_given_count, solutions_accepted_count)
         VALUES ($1, 100, 5)",
    )
    .bind(fan.id)
    .execute(app.db())
    .await
    .unwrap();
    for stat in ["reactions_given", "solutions_accepted"] {
        for _ in 0..2 {
            mambo_core::badges::run_check(&app.ctx, &job(fan.id, stat))
                .await
                .unwrap();
        }
    }
    assert_eq!(
        owned_badges(&app, fan.id).await,
        [
            "talent_scout_bronze",
            "talent_scout_silver",
            "the_professor_bronze",
            "the_professor_silver"
        ]
    );

    // Comments and streaks.
    sqlx::query(
        "INSERT INTO post_replies (post_id, user_id, content)
         SELECT (SELECT id FROM posts WHERE user_id = $2 LIMIT 1), $1, 'nice'
         FROM generate_series(1, 10)",
    )
    .bind(fan.id)
    .bind(owner.id)
    .execute(app.db())
    .await
    .unwrap();
    sqlx::query("UPDATE user_profiles SET streak_count = 14 WHERE user_id = $1")
        .bind(fan.id)
        .execute(app.db())
        .await
        .unwrap();
    for stat in [
        "comments_posted",
        "daily_streak",
        "comments_posted",
        "daily_streak",
    ] {
        mambo_core::badges::run_check(&app.ctx, &job(fan.id, stat))
            .await
            .unwrap();
    }
    let owned = owned_badges(&app, fan.id).await;
    for b in [
        "the_socialite_bronze",
        "unstoppable_bronze",
        "unstoppable_silver",
    ] {
        assert!(owned.iter().any(|o| o == b), "{b} in {owned:?}");
    }
    assert_eq!(owned.len(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_badge_checks_award_once() {
    let app = TestApp::spawn_api_only().await;
    let user = app.student().await;
    add_posts(&app, user.id, "lab", 25, false).await;

    let j = job(user.id, "questions_posted");
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let ctx = app.ctx.clone();
        let j = j.clone();
        set.spawn(async move { mambo_core::badges::check(&ctx, j.user_id, &j.stat).await });
    }
    // Also the full recompute, concurrently.
    for _ in 0..4 {
        let ctx = app.ctx.clone();
        let id = user.id;
        set.spawn(async move { mambo_core::badges::check_all(&ctx, id).await });
    }
    let mut awarded = vec![];
    while let Some(r) = set.join_next().await {
        awarded.extend(r.unwrap().unwrap().into_iter().map(|a| a.badge_id));
    }
    awarded.sort();
    // Each tier was reported as new by exactly one of the concurrent checks.
    assert_eq!(
        awarded,
        [
            "curious_mind_bronze",
            "curious_mind_gold",
            "curious_mind_silver"
        ]
    );
    assert_eq!(
        owned_badges(&app, user.id).await,
        [
            "curious_mind_bronze",
            "curious_mind_gold",
            "curious_mind_silver"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_awards_badges_from_queued_checks() {
    let app = TestApp::spawn().await;
    let owner = app.student().await;
    let fan = app.student().await;

    // 10 fire reactions on the owner's posts: Firestarter (Bronze).
    add_posts(&app, owner.id, "stage", 10, true).await;
    react_to_all(&app, owner.id, fan.id, "fire").await;

    // A second worker process on the same database and queues.
    let second_ctx = mambo_core::Context::new(
        mambo_core::db::connect(&app.db.url, 5).await.unwrap(),
        (*app.ctx.config).clone(),
    )
    .unwrap();
    let (stop_second, stopped) = tokio::sync::oneshot::channel::<()>();
    let second = tokio::spawn(mambo_worker::run(second_ctx, async move {
        let _ = stopped.await;
    }));

    let mut tx = app.db().begin().await.unwrap();
    // The same check several times (duplicate triggers) and a second stat.
    for _ in 0..6 {
        jobs::enqueue(&mut tx, &job(owner.id, "fires_received"))
            .await
            .unwrap();
    }
    jobs::enqueue(&mut tx, &job(owner.id, "videos_posted"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    jobs::wake_relay(&app.ctx);

    let owned = eventually(20, || async {
        let owned = owned_badges(&app, owner.id).await;
        (owned.len() >= 3).then_some(owned)
    })
    .await
    .expect("the worker awards the badges");
    assert_eq!(
        owned,
        [
            "center_stage_bronze",
            "center_stage_silver",
            "firestarter_bronze"
        ]
    );
    // Give the duplicate job time to run too: still one of each.
    eventually(10, || async {
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM job_outbox WHERE queue = 'badge_check' AND relayed_at IS NULL",
        )
        .fetch_one(app.db())
        .await
        .unwrap();
        (left == 0).then_some(())
    })
    .await
    .expect("outbox relayed");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(badge_count(&app, owner.id, "firestarter_bronze").await, 1);
    assert_eq!(owned_badges(&app, owner.id).await.len(), 3);
    let _ = stop_second.send(());
    let _ = tokio::time::timeout(std::time::Duration::from_secs(15), second).await;

    // Visible on the public badge list, by profile id.
    let pid = profile_id(&app, owner.id).await;
    let (_, items) = json(
        app.get(&format!("/api/badges/user/{pid}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let earned: Vec<&str> = items
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["is_earned"] == true)
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(earned.len(), 3);
    // Earned first, then by requirement_value descending.
    assert_eq!(earned[0], "center_stage_silver");
}

// ---------------------------------------------------------------------------
// Streaks
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streak_bonus_job_is_idempotent_and_shares_the_inline_key() {
    let app = TestApp::spawn_api_only().await;
    let base = app.student().await;
    let pro = app.pro_student().await;

    let date = NaiveDate::from_ymd_opt(2027, 3, 10).unwrap();
    for (user, amount) in [(&base, 10), (&pro, 20)] {
        let before = app.balance_and_ledger(user.id).await.0;
        let j = StreakBonusJob {
            user_id: user.id,
            date,
            streak: 5,
        };
        mambo_core::streaks::pay_bonus(&app.ctx, &j).await.unwrap();
        mambo_core::streaks::pay_bonus(&app.ctx, &j).await.unwrap();
        let (balance, ledger) = app.balance_and_ledger(user.id).await;
        assert_eq!(balance, before + amount);
        assert_eq!(balance, ledger);
        assert_eq!(streak_bonus_rows(&app, user.id).await, 1);
    }

    // Two workers running the same job at once pay once.
    let j = StreakBonusJob {
        user_id: base.id,
        date: date.succ_opt().unwrap(),
        streak: 10,
    };
    let (a, b) = tokio::join!(
        mambo_core::streaks::pay_bonus(&app.ctx, &j),
        mambo_core::streaks::pay_bonus(&app.ctx, &j)
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(streak_bonus_rows(&app, base.id).await, 2);

    // Not a milestone, or a user that is gone: nothing, no error.
    for (user_id, streak) in [(base.id, 4), (base.id, 0), (Uuid::new_v4(), 5)] {
        mambo_core::streaks::pay_bonus(
            &app.ctx,
            &StreakBonusJob {
                user_id,
                date: NaiveDate::from_ymd_opt(2027, 4, 1).unwrap(),
                streak,
            },
        )
        .await
        .unwrap();
    }
    assert_eq!(streak_bonus_rows(&app, base.id).await, 2);
    let (balance, ledger) = app.balance_and_ledger(base.id).await;
    assert_eq!(balance, ledger);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaks_cross_month_and_year_ends_and_bonuses_pay_once() {
    let app = TestApp::spawn().await;
    let user = app.student().await;

    // Five consecutive UTC days across a year end: Dec 28 .. Jan 1.
    let start = at(2027, 12, 28, 23);
    for day in 0..5 {
        app.ctx.clock.set(start + chrono::Duration::days(day));
        let claim = mambo_core::streaks::daily_claim(&app.ctx, user.id)
            .await
            .unwrap();
        assert!(claim.success, "{claim:?}");
        assert_eq!(streak(&app, user.id).await, day as i32 + 1);
        if day < 4 {
            assert_eq!(claim.streak_bonus, None);
        } else {
            assert_eq!(claim.streak_bonus, Some(10), "{claim:?}");
            assert!(
                claim.message.ends_with(" + 10 🥢 streak bonus!"),
                "{claim:?}"
            );
        }
        // A second claim the same day: nothing.
        let again = mambo_core::streaks::daily_claim(&app.ctx, user.id)
            .await
            .unwrap();
        assert!(!again.success);
        assert_eq!(again.message, "Already claimed today. Come back tomorrow!");
    }
    assert_eq!(
        app.ctx.clock.today(),
        NaiveDate::from_ymd_opt(2028, 1, 1).unwrap()
    );
    assert_eq!(streak_bonus_rows(&app, user.id).await, 1);

    // The job for the same milestone (e.g. a retry after the inline payment) pays nothing.
    let j = StreakBonusJob {
        user_id: user.id,
        date: NaiveDate::from_ymd_opt(2028, 1, 1).unwrap(),
        streak: 5,
    };
    mambo_core::streaks::pay_bonus(&app.ctx, &j).await.unwrap();
    mambo_core::streaks::pay_bonus(&app.ctx, &j).await.unwrap();
    assert_eq!(streak_bonus_rows(&app, user.id).await, 1);
    let (balance, ledger) = app.balance_and_ledger(user.id).await;
    assert_eq!(balance, ledger);

    // The daily_streak checks queued by the claims award Unstoppable (Bronze), once.
    eventually(20, || async {
        (badge_count(&app, user.id, "unstoppable_bronze").await == 1).then_some(())
    })
    .await
    .expect("unstoppable_bronze awarded by the worker");

    // A leap-year month end: Feb 28 -> Feb 29 -> Mar 1 continues the streak;
    // a missed day starts again at 1.
    let user2 = app.student().await;
    for (i, d) in [at(2028, 2, 28, 0), at(2028, 2, 29, 12), at(2028, 3, 1, 23)]
        .into_iter()
        .enumerate()
    {
        app.ctx.clock.set(d);
        let (status, body) = claim_http(&app, &user2).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["success"], true, "{body}");
        assert!(body["streak_bonus"].is_null());
        assert_eq!(streak(&app, user2.id).await, i as i32 + 1);
        let (_, again) = claim_http(&app, &user2).await;
        assert_eq!(again["success"], false);
        assert_eq!(
            again["message"],
            "Already claimed today. Come back tomorrow!"
        );
    }
    app.ctx.clock.set(at(2028, 3, 3, 1));
    let (_, body) = claim_http(&app, &user2).await;
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(streak(&app, user2.id).await, 1);
    let (balance, ledger) = app.balance_and_ledger(user2.id).await;
    assert_eq!(balance, ledger);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_maintenance_resets_broken_streaks() {
    let app = TestApp::spawn_api_only().await;
    let broken = app.student().await;
    let alive = app.student().await;
    let today_user = app.student().await;

    // Day 1 and 2: everyone claims; day 3 only `alive`... as seen from day 4.
    app.ctx.clock.set(at(2027, 6, 29, 10));
    for u in [&broken, &alive, &today_user] {
        mambo_core::streaks::daily_claim(&app.ctx, u.id)
            .await
            .unwrap();
    }
    app.ctx.clock.set(at(2027, 6, 30, 10));
    for u in [&broken, &alive, &today_user] {
        mambo_core::streaks::daily_claim(&app.ctx, u.id)
            .await
            .unwrap();
    }
    app.ctx.clock.set(at(2027, 7, 1, 23));
    mambo_core::streaks::daily_claim(&app.ctx, alive.id)
        .await
        .unwrap();
    app.ctx.clock.set(at(2027, 7, 2, 0));
    mambo_core::streaks::daily_claim(&app.ctx, today_user.id)
        .await
        .unwrap();
    assert_eq!(streak(&app, broken.id).await, 2);
    assert_eq!(streak(&app, alive.id).await, 3);
    assert_eq!(streak(&app, today_user.id).await, 1);

    // July 2: `broken` last touched June 30 (before yesterday): reset.
    app.ctx.clock.set(at(2027, 7, 2, 0));
    mambo_worker::daily_maintenance(&app.ctx).await.unwrap();
    mambo_worker::daily_maintenance(&app.ctx).await.unwrap();
    assert_eq!(streak(&app, broken.id).await, 0);
    assert_eq!(streak(&app, alive.id).await, 3);
    assert_eq!(streak(&app, today_user.id).await, 1);

    // /auth/me and /users/me report the reset streak.
    let token = mambo_core::auth::create_token(
        &app.ctx.config,
        broken.id,
        mambo_core::auth::TokenKind::Access,
        Utc::now().timestamp(),
    );
    for path in ["/api/auth/me", "/api/users/me"] {
        let (status, body) = json(
            app.get(path)
                .header("Authorization", format!("Bearer {token}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(body["streak_count"], 0, "{path}: {body}");
    }

    // The next claim starts a new streak at 1; the earned badges stay.
    mambo_core::streaks::daily_claim(&app.ctx, broken.id)
        .await
        .unwrap();
    assert_eq!(streak(&app, broken.id).await, 1);

    // Two days later both others are broken too.
    app.ctx.clock.set(at(2027, 7, 4, 0));
    mambo_worker::daily_maintenance(&app.ctx).await.unwrap();
    assert_eq!(streak(&app, alive.id).await, 0);
    assert_eq!(streak(&app, today_user.id).await, 0);
    assert_eq!(streak(&app, broken.id).await, 0);
}

// ---------------------------------------------------------------------------
// Boss-battle submissions
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_checks_lesson_access_video_and_duplicates() {
    let app = TestApp::spawn_api_only().await;
    let student = app.student().await;
    let pro = app.pro_student().await;
    let trialing = app
        .create_user(UserSpec {
            subscription: Some(("trialing", "advanced")),
            ..Default::default()
        })
        .await;
    let active_rookie = app
        .create_user(UserSpec {
            subscription: Some(("active", "rookie")),
            ..Default::default()
        })
        .await;
    let instructor = app
        .create_user(UserSpec {
            role: "instructor",
            ..Default::default()
        })
        .await;
    let paid = course(&app, false, true).await;
    let free = course(&app, true, true).await;
    let hidden = course(&app, true, false).await;
    let video = "https://videos.example.com/boss.mp4";

    // Unknown and malformed lessons.
    for lesson in [Uuid::new_v4().to_string(), "nope".to_string()] {
        let (status, body) = submit(&app, &student, &lesson, video).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body, json!({"detail": "Lesson not found"}));
    }
    // Unpublished world: not found for students.
    let (status, body) = submit(&app, &student, &hidden.boss.to_string(), video).await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, json!({"detail": "Lesson not found"}))
    );
    // Not a boss battle.
    let (status, body) = submit(&app, &pro, &paid.normal.to_string(), video).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, json!({"detail": "This lesson is not a boss battle"}));
    // Paid world without a pro subscription.
    for u in [&student, &active_rookie] {
        let (status, body) = submit(&app, u, &paid.boss.to_string(), video).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(
            body,
            json!({"detail": "Subscription required. Please upgrade to access this course."})
        );
    }
    // Bad video URLs: 422 with the contract's shape.
    for bad in [
        "http://insecure.example.com/v.mp4",
        "short",
        "ftp://x.y/z",
        "",
        "javascript:alert(1)",
    ] {
        let (status, body) = submit(&app, &pro, &paid.boss.to_string(), bad).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert_eq!(
            body["detail"][0]["loc"],
            json!(["body", "video_url"]),
            "{body}"
        );
        assert!(
            body["detail"][0]["msg"]
                .as_str()
                .unwrap()
                .starts_with("Value error, ")
        );
    }
    // Missing fields: 422.
    let (status, _) = json(
        app.post("/api/submissions/submit")
            .header("Authorization", pro.bearer())
            .json(&json!({"lesson_id": paid.boss}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // No token.
    let resp = app
        .post("/api/submissions/submit")
        .json(&json!({"lesson_id": paid.boss, "video_url": video}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // Allowed: pro (https URL), trialing advanced (Mux playback id), any user on
    // a free world, staff everywhere (even unpublished).
    let (status, body) = submit(&app, &pro, &paid.boss.to_string(), video).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "pending");
    assert!(body["feedback"].is_null());
    assert!(body["submitted_at"].as_str().unwrap().ends_with('Z'));
    assert!(Uuid::parse_str(body["id"].as_str().unwrap()).is_ok());
    let playback = "a1B2c3D4e5F6g7H8i9J0";
    let (status, body) = submit(&app, &trialing, &paid.boss.to_string(), playback).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["video_url"], playback);
    let (status, _) = submit(&app, &student, &free.boss.to_string(), video).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = submit(&app, &instructor, &paid.boss.to_string(), video).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = submit(&app, &instructor, &hidden.boss.to_string(), video).await;
    assert_eq!(status, StatusCode::OK);

    // A second submission for the same lesson: 400, whatever the status.
    let (status, body) = submit(&app, &pro, &paid.boss.to_string(), video).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"detail": "Submission already exists for this lesson"})
    );

    // My submissions: newest first, only mine.
    app.ctx.clock.advance(chrono::Duration::seconds(5));
    let (status, _) = submit(&app, &pro, &free.boss.to_string(), video).await;
    assert_eq!(status, StatusCode::OK);
    let (status, mine) = json(
        app.get("/api/submissions/my-submissions")
            .header("Authorization", pro.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let mine = mine.as_array().unwrap();
    assert_eq!(mine.len(), 2);
    assert_eq!(mine[0]["lesson_id"], free.boss.to_string());
    assert_eq!(mine[1]["lesson_id"], paid.boss.to_string());
    for m in mine {
        for key in ["id", "status", "feedback", "submitted_at"] {
            assert!(m.get(key).is_some(), "{key} in {m}");
        }
    }
    let resp = app
        .get("/api/submissions/my-submissions")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicate_submissions_store_one() {
    let app = TestApp::spawn_api_only().await;
    let student = app.student().await;
    let free = course(&app, true, true).await;
    let lesson = free.boss.to_string();
    let futs = (0..6).map(|_| submit(&app, &student, &lesson, "https://example.com/v.mp4"));
    let results = futures::future::join_all(futs).await;
    let ok = results.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert_eq!(ok, 1, "{results:?}");
    for (s, b) in results.iter().filter(|(s, _)| *s != StatusCode::OK) {
        assert_eq!(*s, StatusCode::BAD_REQUEST);
        assert_eq!(b["detail"], "Submission already exists for this lesson");
    }
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM boss_submissions WHERE user_id = $1")
        .bind(student.id)
        .fetch_one(app.db())
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_list_and_grade_submissions_xp_once_and_email_the_student() {
    let app = TestApp::spawn_api_only().await;
    let admin = app.admin().await;
    let student = app.student().await;
    let other = app.student().await;
    let free = course(&app, true, true).await;
    let free2 = course(&app, true, true).await;

    let (_, first) = submit(
        &app,
        &student,
        &free.boss.to_string(),
        "https://example.com/a.mp4",
    )
    .await;
    app.ctx.clock.advance(chrono::Duration::seconds(2));
    let (_, second) = submit(
        &app,
        &other,
        &free.boss.to_string(),
        "https://example.com/b.mp4",
    )
    .await;
    let first_id = first["id"].as_str().unwrap().to_string();
    let second_id = second["id"].as_str().unwrap().to_string();

    // Students and anonymous callers cannot list or grade.
    let resp = app
        .get("/api/admin/submissions")
        .header("Authorization", student.bearer())
        .send()
        .await
        .unwrap();
    let (status, body) = json(resp).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body, json!({"detail": "Not enough permissions"}));
    let resp = app.get("/api/admin/submissions").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (status, body) = grade(&app, &student, &first_id, json!({"status": "approved"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body, json!({"detail": "Not enough permissions"}));
    let resp = app
        .post(&format!("/api/admin/submissions/{first_id}/grade"))
        .json(&json!({"status": "approved"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(xp_level(&app, student.id).await, (0, 1));

    // The queue: pending, oldest first, with who and what (D29).
    let (status, list) = json(
        app.get("/api/admin/submissions")
            .header("Authorization", admin.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], first_id.as_str());
    assert_eq!(list[1]["id"], second_id.as_str());
    let item = &list[0];
    assert_eq!(item["status"], "pending");
    assert!(item["feedback"].is_null());
    assert_eq!(item["user_id"], student.id.to_string());
    assert_eq!(item["lesson_id"], free.boss.to_string());
    assert_eq!(item["video_url"], "https://example.com/a.mp4");
    assert_eq!(item["lesson_title"], "The Final Shine");
    assert!(
        item["student_name"].as_str().unwrap().starts_with("Test "),
        "{item}"
    );
    assert!(item["submitted_at"].as_str().unwrap().ends_with('Z'));

    // Grading errors.
    for id in [Uuid::new_v4().to_string(), "not-a-uuid".to_string()] {
        let (status, body) = grade(&app, &admin, &id, json!({"status": "approved"})).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body, json!({"detail": "Submission not found"}));
    }
    let (status, body) = grade(&app, &admin, &first_id, json!({"status": "great"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, json!({"detail": "Invalid status"}));
    let (status, _) = grade(&app, &admin, &first_id, json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(xp_level(&app, student.id).await, (0, 1));

    // First approval: +500 XP and the level recomputed (500 XP → level 2).
    let (status, body) = grade(
        &app,
        &admin,
        &first_id,
        json!({"status": "approved", "feedback_text": "Clean timing!", "feedback_video_url": "https://example.com/fb.mp4"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"message": "Submission graded successfully"}));
    assert_eq!(xp_level(&app, student.id).await, (500, 2));

    let (_, mine) = json(
        app.get("/api/submissions/my-submissions")
            .header("Authorization", student.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(mine[0]["status"], "approved");
    assert_eq!(mine[0]["feedback"], "Clean timing!");
    let (reviewed_by, reviewed_at): (Option<Uuid>, Option<chrono::DateTime<Utc>>) =
        sqlx::query_as("SELECT reviewed_by, reviewed_at FROM boss_submissions WHERE id = $1")
            .bind(Uuid::parse_str(&first_id).unwrap())
            .fetch_one(app.db())
            .await
            .unwrap();
    assert_eq!(reviewed_by, Some(admin.id));
    assert!(reviewed_at.is_some());

    // Re-grades never award again (D27): approved again, rejected, approved.
    for status in ["approved", "rejected", "approved"] {
        let (s, _) = grade(&app, &admin, &first_id, json!({"status": status})).await;
        assert_eq!(s, StatusCode::OK);
    }
    assert_eq!(xp_level(&app, student.id).await, (500, 2));

    // Rejection pays nothing; status filter shows it.
    let (s, _) = grade(
        &app,
        &admin,
        &second_id,
        json!({"status": "rejected", "feedback_text": "Again"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(xp_level(&app, other.id).await, (0, 1));
    let (_, pending) = json(
        app.get("/api/admin/submissions")
            .header("Authorization", admin.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(pending, json!([]));
    let (_, rejected) = json(
        app.get("/api/admin/submissions?status=rejected")
            .header("Authorization", admin.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(rejected.as_array().unwrap().len(), 1);
    assert_eq!(rejected[0]["id"], second_id.as_str());
    assert_eq!(rejected[0]["feedback"], "Again");
    let (_, all) = json(
        app.get("/api/admin/submissions?status=all")
            .header("Authorization", admin.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    let (s, _) = json(
        app.get("/api/admin/submissions?status=bogus")
            .header("Authorization", admin.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // Concurrent approvals of a fresh submission pay once.
    let (_, third) = submit(
        &app,
        &other,
        &free2.boss.to_string(),
        "https://example.com/c.mp4",
    )
    .await;
    let third_id = third["id"].as_str().unwrap().to_string();
    let futs = (0..4).map(|_| grade(&app, &admin, &third_id, json!({"status": "approved"})));
    for (s, _) in futures::future::join_all(futs).await {
        assert_eq!(s, StatusCode::OK);
    }
    assert_eq!(xp_level(&app, other.id).await, (500, 2));

    // Every grading decision queued an email to the student through the outbox.
    let emails: Vec<Value> = sqlx::query_scalar(
        "SELECT payload FROM job_outbox
         WHERE queue = 'email' AND payload->>'template' = 'submission_graded'
         ORDER BY created_at, id",
    )
    .fetch_all(app.db())
    .await
    .unwrap();
    let to_student: Vec<&Value> = emails
        .iter()
        .filter(|p| p["to"] == json!([student.email]))
        .collect();
    assert_eq!(to_student.len(), 4, "{emails:?}");
    assert_eq!(to_student[0]["template"], "submission_graded");
    assert!(
        to_student[0]["text"]
            .as_str()
            .unwrap()
            .contains("Clean timing!")
    );
    assert!(to_student[0]["text"].as_str().unwrap().contains("500 XP"));
    assert!(!to_student[1]["text"].as_str().unwrap().contains("500 XP"));
    let keys: std::collections::HashSet<&str> = emails
        .iter()
        .map(|p| p["idempotency_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), emails.len());
    let to_other = emails
        .iter()
        .filter(|p| p["to"] == json!([other.email]))
        .count();
    assert_eq!(to_other, 5);
}
