//! Learning: worlds, lessons, progress, access by tier, the skill tree and the
//! admin course builder (API.md §3.2, §3.3, §4.4–4.7; issue 4).

use mambo_core::courses::{self, Viewer};
use mambo_tests::{StatusCode, TestApp, TestUser, UserSpec, count_statements, json};
use reqwest::Method;
use serde_json::{Value, json};
use std::str::FromStr;
use uuid::Uuid;

const LOCKED: &str = "Subscription required. Please upgrade to access this course.";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    who: Option<&TestUser>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = app.client.request(method, app.url(path));
    if let Some(u) = who {
        req = req.header("Authorization", u.bearer());
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    json(req.send().await.unwrap()).await
}

async fn get(app: &TestApp, path: &str, who: Option<&TestUser>) -> (StatusCode, Value) {
    call(app, Method::GET, path, who, None).await
}

async fn post(
    app: &TestApp,
    path: &str,
    who: Option<&TestUser>,
    body: Value,
) -> (StatusCode, Value) {
    call(app, Method::POST, path, who, Some(body)).await
}

fn id_of(v: &Value) -> Uuid {
    Uuid::parse_str(v["id"].as_str().expect("id")).unwrap()
}

fn ids(v: &Value) -> Vec<Uuid> {
    v.as_array().unwrap().iter().map(id_of).collect()
}

async fn mk_world(app: &TestApp, is_free: bool, is_published: bool) -> Uuid {
    let slug = format!("w-{}", Uuid::new_v4().simple());
    sqlx::query_scalar(
        "INSERT INTO worlds (title, slug, order_index, is_free, difficulty, is_published,
                             mux_preview_playback_id)
         VALUES ($1, $1, 0, $2, 'Beginner', $3, 'preview-pb') RETURNING id",
    )
    .bind(slug)
    .bind(is_free)
    .bind(is_published)
    .fetch_one(app.db())
    .await
    .unwrap()
}

async fn mk_level(app: &TestApp, world: Uuid, order: i32) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO levels (world_id, title, order_index) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(world)
    .bind(format!("Level {order}"))
    .bind(order)
    .fetch_one(app.db())
    .await
    .unwrap()
}

async fn mk_lesson(
    app: &TestApp,
    level: Uuid,
    week: Option<i32>,
    day: Option<i32>,
    order: i32,
    xp: i32,
) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO lessons (level_id, title, video_url, xp_value, order_index, week_number,
                              day_number, content_json, mux_playback_id, mux_asset_id,
                              duration_minutes)
         VALUES ($1, 'Lesson', 'https://video.example/x', $2, $3, $4, $5,
                 '{\"blocks\":[{\"type\":\"text\",\"content\":\"secret notes\"}]}',
                 'secret-pb', 'secret-asset', 10)
         RETURNING id",
    )
    .bind(level)
    .bind(xp)
    .bind(order)
    .bind(week)
    .bind(day)
    .fetch_one(app.db())
    .await
    .unwrap()
}

/// A published world with one level and one lesson.
async fn simple_world(app: &TestApp, is_free: bool) -> (Uuid, Uuid, Uuid) {
    let w = mk_world(app, is_free, true).await;
    let l = mk_level(app, w, 0).await;
    let le = mk_lesson(app, l, Some(1), Some(1), 0, 50).await;
    (w, l, le)
}

async fn role(app: &TestApp, role: &'static str) -> TestUser {
    app.create_user(UserSpec {
        role,
        ..Default::default()
    })
    .await
}

async fn subscribed(app: &TestApp, status: &'static str, tier: &'static str) -> TestUser {
    app.create_user(UserSpec {
        subscription: Some((status, tier)),
        ..Default::default()
    })
    .await
}

async fn xp_of(app: &TestApp, user: Uuid) -> (i32, i32, i32) {
    sqlx::query_as("SELECT xp, level, streak_count FROM user_profiles WHERE user_id = $1")
        .bind(user)
        .fetch_one(app.db())
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------
// Ordering and next/prev (§4.5)
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lesson_order_ties_and_next_prev() {
    let app = TestApp::spawn().await;
    let pro = app.pro_student().await;
    let w = mk_world(&app, false, true).await;
    // Level B is created first but has the higher order_index.
    let b = mk_level(&app, w, 1).await;
    let a = mk_level(&app, w, 0).await;

    let b_w1d1_o0 = mk_lesson(&app, b, Some(1), Some(1), 0, 50).await;
    let a_w1d1_o0 = mk_lesson(&app, a, Some(1), Some(1), 0, 50).await;
    let a_null_o5 = mk_lesson(&app, a, None, None, 5, 50).await; // sorts as (0, 0, 5)
    let b_w1d1_o1 = mk_lesson(&app, b, Some(1), Some(1), 1, 50).await;
    let twin1 = mk_lesson(&app, a, Some(2), Some(1), 0, 50).await;
    let twin2 = mk_lesson(&app, a, Some(2), Some(1), 0, 50).await;
    let b_w1d0 = mk_lesson(&app, b, Some(1), None, 9, 50).await; // (1, 0, 9)
    let (t_lo, t_hi) = if twin1 < twin2 {
        (twin1, twin2)
    } else {
        (twin2, twin1)
    };

    let expected = vec![
        a_null_o5, b_w1d0, a_w1d1_o0, b_w1d1_o0, b_w1d1_o1, t_lo, t_hi,
    ];
    let (s, body) = get(
        &app,
        &format!("/api/courses/worlds/{w}/lessons"),
        Some(&pro),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(ids(&body), expected);
    // Same order anonymously (the catalogue is public).
    let (_, anon) = get(&app, &format!("/api/courses/worlds/{w}/lessons"), None).await;
    assert_eq!(ids(&anon), expected);

    // Level list: the same key inside one level.
    let (s, body) = get(
        &app,
        &format!("/api/courses/levels/{a}/lessons"),
        Some(&pro),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ids(&body), vec![a_null_o5, a_w1d1_o0, t_lo, t_hi]);

    // next/prev walk the world-wide order; null at both ends.
    for (i, id) in expected.iter().enumerate() {
        let (s, d) = get(&app, &format!("/api/courses/lessons/{id}"), Some(&pro)).await;
        assert_eq!(s, StatusCode::OK, "{d}");
        let prev = i.checked_sub(1).map(|j| expected[j].to_string());
        let next = expected.get(i + 1).map(|n| n.to_string());
        assert_eq!(d["prev_lesson_id"].as_str().map(str::to_string), prev);
        assert_eq!(d["next_lesson_id"].as_str().map(str::to_string), next);
        assert_eq!(d["comments"], json!([]));
        assert!(d["level_id"].is_string());
        assert!(d["level_title"].is_string());
    }

    // Admin level list: order_index only, then id.
    let admin = app.admin().await;
    let (s, body) = get(
        &app,
        &format!("/api/admin/levels/{a}/lessons"),
        Some(&admin),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let mut by_order = vec![(0, t_lo), (0, t_hi), (0, a_w1d1_o0), (5, a_null_o5)];
    by_order.sort();
    assert_eq!(
        ids(&body),
        by_order.into_iter().map(|(_, i)| i).collect::<Vec<_>>()
    );
    // The full course: lessons within a level follow §4.5.
    let (s, full) = get(&app, &format!("/api/admin/courses/{w}/full"), Some(&admin)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(full["levels"][0]["id"], json!(a.to_string()));
    assert_eq!(
        ids(&full["levels"][0]["lessons"]),
        vec![a_null_o5, a_w1d1_o0, t_lo, t_hi]
    );
    assert_eq!(
        ids(&full["levels"][1]["lessons"]),
        vec![b_w1d0, b_w1d1_o0, b_w1d1_o1]
    );
}

// ---------------------------------------------------------------------------
// Access by tier (§4.7 as decided by the issue) and D25
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_for_every_kind_of_caller() {
    let app = TestApp::spawn().await;
    let (free_w, free_l, free_lesson) = simple_world(&app, true).await;
    let (paid_w, paid_l, paid_lesson) = simple_world(&app, false).await;

    let student = app.student().await; // rookie, incomplete
    let active_rookie = subscribed(&app, "active", "rookie").await;
    let past_due = subscribed(&app, "past_due", "performer").await;
    let canceled = subscribed(&app, "canceled", "advanced").await;
    let pro = subscribed(&app, "active", "performer").await;
    let advanced = subscribed(&app, "active", "advanced").await;
    let trialing = subscribed(&app, "trialing", "advanced").await;
    let admin = app.admin().await;
    let instructor = role(&app, "instructor").await;

    // (caller, can open the paid world)
    let cases: Vec<(&str, Option<&TestUser>, bool)> = vec![
        ("student", Some(&student), false),
        ("active rookie", Some(&active_rookie), false),
        ("past_due performer", Some(&past_due), false),
        ("canceled advanced", Some(&canceled), false),
        ("pro", Some(&pro), true),
        ("advanced", Some(&advanced), true),
        ("trialing", Some(&trialing), true),
        ("admin", Some(&admin), true),
        ("instructor", Some(&instructor), true),
    ];

    // Anonymous: catalogue visible, everything locked, no content.
    let (s, worlds) = get(&app, "/api/courses/worlds", None).await;
    assert_eq!(s, StatusCode::OK);
    for w in worlds.as_array().unwrap() {
        assert_eq!(w["is_locked"], json!(true));
        assert_eq!(w["progress_percentage"], json!(0.0));
    }
    for path in [
        format!("/api/courses/worlds/{free_w}/lessons"),
        format!("/api/courses/worlds/{paid_w}/lessons"),
        format!("/api/courses/levels/{free_l}/lessons"),
        format!("/api/courses/levels/{paid_l}/lessons"),
    ] {
        let (s, body) = get(&app, &path, None).await;
        assert_eq!(s, StatusCode::OK, "{path}");
        let item = &body[0];
        assert_eq!(item["mux_playback_id"], Value::Null, "{path}");
        assert_eq!(item["mux_asset_id"], Value::Null);
        assert_eq!(item["content_json"], Value::Null);
        assert_eq!(item["video_url"], json!(""));
        assert_eq!(item["title"], json!("Lesson"));
        assert_eq!(item["is_completed"], json!(false));
    }
    let (_, lvl) = get(&app, &format!("/api/courses/levels/{free_l}/lessons"), None).await;
    assert_eq!(lvl[0]["is_locked"], json!(true));
    let (_, wl) = get(&app, &format!("/api/courses/worlds/{free_w}/lessons"), None).await;
    assert_eq!(wl[0]["is_locked"], json!(false));
    for lesson in [free_lesson, paid_lesson] {
        let (s, _) = get(&app, &format!("/api/courses/lessons/{lesson}"), None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, _) = post(
            &app,
            &format!("/api/progress/lessons/{lesson}/complete"),
            None,
            json!({}),
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }

    for (name, who, paid_open) in cases {
        let (s, worlds) = get(&app, "/api/courses/worlds", who).await;
        assert_eq!(s, StatusCode::OK);
        let find = |id: Uuid| {
            worlds
                .as_array()
                .unwrap()
                .iter()
                .find(|w| w["id"] == json!(id.to_string()))
                .cloned()
                .unwrap()
        };
        assert_eq!(find(free_w)["is_locked"], json!(false), "{name}");
        assert_eq!(find(paid_w)["is_locked"], json!(!paid_open), "{name}");

        // Free world: always open to a signed-in user.
        let (s, d) = get(&app, &format!("/api/courses/lessons/{free_lesson}"), who).await;
        assert_eq!(s, StatusCode::OK, "{name}: {d}");
        assert_eq!(d["mux_playback_id"], json!("secret-pb"));

        // Paid world.
        let (s, d) = get(&app, &format!("/api/courses/lessons/{paid_lesson}"), who).await;
        if paid_open {
            assert_eq!(s, StatusCode::OK, "{name}: {d}");
            assert_eq!(
                d["content_json"]["blocks"][0]["content"],
                json!("secret notes")
            );
        } else {
            assert_eq!(s, StatusCode::FORBIDDEN, "{name}");
            assert_eq!(d["detail"], json!(LOCKED));
        }
        for path in [
            format!("/api/courses/worlds/{paid_w}/lessons"),
            format!("/api/courses/levels/{paid_l}/lessons"),
        ] {
            let (s, body) = get(&app, &path, who).await;
            assert_eq!(s, StatusCode::OK);
            let item = &body[0];
            assert_eq!(item["is_locked"], json!(false), "{name} {path}");
            if paid_open {
                assert_eq!(item["mux_playback_id"], json!("secret-pb"), "{name}");
                assert_eq!(item["mux_asset_id"], json!("secret-asset"));
                assert_eq!(item["video_url"], json!("https://video.example/x"));
                assert!(item["content_json"].is_object());
            } else {
                assert_eq!(item["mux_playback_id"], Value::Null, "{name} {path}");
                assert_eq!(item["mux_asset_id"], Value::Null);
                assert_eq!(item["content_json"], Value::Null);
                assert_eq!(item["video_url"], json!(""));
                // Everything else is still there.
                assert_eq!(item["xp_value"], json!(50));
                assert_eq!(item["duration_minutes"], json!(10));
            }
        }
        // Free world lists are not redacted for signed-in users.
        let (_, body) = get(&app, &format!("/api/courses/worlds/{free_w}/lessons"), who).await;
        assert_eq!(body[0]["mux_playback_id"], json!("secret-pb"), "{name}");

        // Completing a lesson you cannot open is a 403 (D26).
        let (s, body) = post(
            &app,
            &format!("/api/progress/lessons/{paid_lesson}/complete"),
            who,
            json!({}),
        )
        .await;
        if paid_open {
            assert_eq!(s, StatusCode::OK, "{name}: {body}");
        } else {
            assert_eq!(s, StatusCode::FORBIDDEN, "{name}");
            assert_eq!(body["detail"], json!(LOCKED));
            let (s, _) = post(
                &app,
                &format!("/api/courses/lessons/{paid_lesson}/complete"),
                who,
                json!({}),
            )
            .await;
            assert_eq!(s, StatusCode::FORBIDDEN);
        }
    }
    // Nobody locked out got XP for the paid lesson.
    assert_eq!(xp_of(&app, student.id).await.0, 0);
    assert_eq!(xp_of(&app, past_due.id).await.0, 0);
    assert_eq!(xp_of(&app, pro.id).await.0, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpublished_worlds_are_invisible_outside_admin() {
    let app = TestApp::spawn().await;
    let w = mk_world(&app, true, false).await;
    let l = mk_level(&app, w, 0).await;
    let le = mk_lesson(&app, l, None, None, 0, 50).await;
    let student = app.student().await;
    let pro = app.pro_student().await;
    let admin = app.admin().await;

    for who in [None, Some(&student), Some(&pro)] {
        let (_, worlds) = get(&app, "/api/courses/worlds", who).await;
        assert!(!ids(&worlds).contains(&w));
        for path in [
            format!("/api/courses/worlds/{w}/lessons"),
            format!("/api/courses/levels/{l}/lessons"),
            format!("/api/courses/worlds/{w}/skill-tree"),
        ] {
            let (s, body) = get(&app, &path, who).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(body["detail"], json!("World not found"));
        }
        if who.is_some() {
            let (s, body) = get(&app, &format!("/api/courses/lessons/{le}"), who).await;
            assert_eq!(
                (s, body["detail"].clone()),
                (StatusCode::NOT_FOUND, json!("World not found"))
            );
            let (s, body) = post(
                &app,
                &format!("/api/progress/lessons/{le}/complete"),
                who,
                json!({}),
            )
            .await;
            assert_eq!(
                (s, body["detail"].clone()),
                (StatusCode::NOT_FOUND, json!("World not found"))
            );
        }
    }
    // Admins preview it everywhere.
    let (_, worlds) = get(&app, "/api/courses/worlds", Some(&admin)).await;
    assert!(
        !ids(&worlds).contains(&w),
        "the public catalogue lists published worlds only"
    );
    let (_, courses) = get(&app, "/api/admin/courses", Some(&admin)).await;
    assert!(ids(&courses).contains(&w));
    let (s, _) = get(
        &app,
        &format!("/api/courses/worlds/{w}/lessons"),
        Some(&admin),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = get(&app, &format!("/api/courses/lessons/{le}"), Some(&admin)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, tree) = get(
        &app,
        &format!("/api/courses/worlds/{w}/skill-tree"),
        Some(&admin),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(tree["is_published"], json!(false));
}

// ---------------------------------------------------------------------------
// Completion, XP, level, streak, progress (§4.4, §4.6)
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_is_idempotent_and_levels_up() {
    let app = TestApp::spawn().await;
    let w = mk_world(&app, true, true).await;
    let l = mk_level(&app, w, 0).await;
    let l1 = mk_lesson(&app, l, Some(1), Some(1), 0, 150).await;
    let l2 = mk_lesson(&app, l, Some(1), Some(2), 0, 300).await;
    let _l3 = mk_lesson(&app, l, Some(1), Some(3), 0, 50).await;
    let user = app.student().await;

    let (s, g) = post(
        &app,
        &format!("/api/progress/lessons/{l1}/complete"),
        Some(&user),
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{g}");
    assert_eq!(
        g,
        json!({"xp_gained": 150, "new_total_xp": 150, "leveled_up": false, "new_level": 1})
    );
    let (xp, level, streak) = xp_of(&app, user.id).await;
    assert_eq!((xp, level, streak), (150, 1, 1));

    // 1 of 3 lessons: the unrounded float of §4.6.
    let (_, worlds) = get(&app, "/api/courses/worlds", Some(&user)).await;
    let item = worlds
        .as_array()
        .unwrap()
        .iter()
        .find(|x| id_of(x) == w)
        .unwrap()
        .clone();
    assert_eq!(item["progress_percentage"], json!(33.333333333333336));
    assert_eq!(item["lesson_count"], json!(3));
    assert_eq!(item["module_count"], json!(1));
    assert_eq!(item["total_duration_minutes"], json!(30));

    // Again, on both paths: same shape, nothing awarded.
    for path in [
        format!("/api/progress/lessons/{l1}/complete"),
        format!("/api/courses/lessons/{l1}/complete"),
    ] {
        let (s, g) = post(&app, &path, Some(&user), json!({})).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            g,
            json!({"xp_gained": 0, "new_total_xp": 150, "leveled_up": false, "new_level": 1})
        );
    }

    // 450 XP: level 2 (floor(sqrt(4.5)) = 2).
    let (s, g) = post(
        &app,
        &format!("/api/courses/lessons/{l2}/complete"),
        Some(&user),
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        g,
        json!({"xp_gained": 300, "new_total_xp": 450, "leveled_up": true, "new_level": 2})
    );
    assert_eq!(xp_of(&app, user.id).await, (450, 2, 1));

    // Completion shows in the lists.
    let (_, list) = get(
        &app,
        &format!("/api/courses/worlds/{w}/lessons"),
        Some(&user),
    )
    .await;
    let done: Vec<bool> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["is_completed"].as_bool().unwrap())
        .collect();
    assert_eq!(done, vec![true, true, false]);

    // A badge check was queued in the same transaction, once per new completion.
    let jobs: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM job_outbox WHERE queue = 'badge_check'
         AND payload->>'stat' = 'lessons_completed' AND payload->>'user_id' = $1",
    )
    .bind(user.id.to_string())
    .fetch_one(app.db())
    .await
    .unwrap();
    assert_eq!(jobs, 2);

    // Streak: the next day continues it.
    app.ctx.clock.advance(chrono::Duration::days(1));
    let (s, _) = post(
        &app,
        &format!("/api/courses/lessons/{_l3}/complete"),
        Some(&user),
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(xp_of(&app, user.id).await, (500, 2, 2));

    // D21: a first lesson of 50 XP keeps level 1 (never 0).
    let fresh = app.student().await;
    let (_, g) = post(
        &app,
        &format!("/api/courses/lessons/{_l3}/complete"),
        Some(&fresh),
        json!({}),
    )
    .await;
    assert_eq!(g["new_level"], json!(1));
    assert_eq!(g["leveled_up"], json!(false));

    // Unknown and malformed lesson ids.
    for id in [Uuid::new_v4().to_string(), "not-a-uuid".into()] {
        for path in [
            format!("/api/progress/lessons/{id}/complete"),
            format!("/api/courses/lessons/{id}/complete"),
        ] {
            let (s, b) = post(&app, &path, Some(&user), json!({})).await;
            assert_eq!(
                (s, b["detail"].clone()),
                (StatusCode::NOT_FOUND, json!("Lesson not found"))
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_completions_award_once() {
    let app = TestApp::spawn().await;
    let (_, _, lesson) = simple_world(&app, true).await;
    let user = app.student().await;
    let mut handles = vec![];
    for i in 0..12 {
        let client = app.client.clone();
        let path = if i % 2 == 0 {
            app.url(&format!("/api/progress/lessons/{lesson}/complete"))
        } else {
            app.url(&format!("/api/courses/lessons/{lesson}/complete"))
        };
        let bearer = user.bearer();
        handles.push(tokio::spawn(async move {
            json(
                client
                    .post(path)
                    .header("Authorization", bearer)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }));
    }
    let mut gained = 0;
    for h in handles {
        let (s, g) = h.await.unwrap();
        assert_eq!(s, StatusCode::OK, "{g}");
        gained += g["xp_gained"].as_i64().unwrap();
        assert_eq!(g["new_total_xp"], json!(50));
    }
    assert_eq!(gained, 50);
    assert_eq!(xp_of(&app, user.id).await.0, 50);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM user_progress WHERE user_id = $1")
        .bind(user.id)
        .fetch_one(app.db())
        .await
        .unwrap();
    assert_eq!(rows, 1);
}

// ---------------------------------------------------------------------------
// Skill tree (§4.6)
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skill_tree_unlocks_follow_direct_prerequisites() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let user = app.student().await;
    let w = mk_world(&app, true, true).await;
    let a = mk_level(&app, w, 0).await;
    let b = mk_level(&app, w, 1).await;
    let c = mk_level(&app, w, 2).await;
    let d = mk_level(&app, w, 3).await; // a root with no lessons
    let a1 = mk_lesson(&app, a, None, None, 0, 40).await;
    let a2 = mk_lesson(&app, a, None, None, 1, 60).await;
    let b1 = mk_lesson(&app, b, None, None, 0, 50).await;
    sqlx::query("UPDATE levels SET total_xp = 999, status = '' WHERE id = $1")
        .bind(b)
        .execute(app.db())
        .await
        .unwrap();
    for (from, to) in [(a, b), (a, c), (b, c)] {
        let (s, e) = post(
            &app,
            &format!("/api/admin/worlds/{w}/edges"),
            Some(&admin),
            json!({"from_level_id": from, "to_level_id": to}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{e}");
        assert_eq!(e["world_id"], json!(w.to_string()));
    }

    let tree = |who: Option<TestUser>| {
        let app = &app;
        async move {
            let (s, t) = get(
                app,
                &format!("/api/courses/worlds/{w}/skill-tree"),
                who.as_ref(),
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{t}");
            t
        }
    };
    let unlocked = |t: &Value| -> Vec<bool> {
        t["levels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["is_unlocked"].as_bool().unwrap())
            .collect()
    };

    let t = tree(None).await;
    assert_eq!(ids(&t["levels"]), vec![a, b, c, d]);
    assert_eq!(t["edges"].as_array().unwrap().len(), 3);
    assert_eq!(unlocked(&t), vec![true, false, false, true]);
    let la = &t["levels"][0];
    assert_eq!(la["lesson_count"], json!(2));
    assert_eq!(la["total_xp"], json!(100)); // sum over lessons when stored 0
    assert_eq!(la["duration_minutes"], json!(20));
    assert_eq!(la["status"], json!("active"));
    assert_eq!(t["levels"][1]["total_xp"], json!(999));
    assert_eq!(t["levels"][1]["status"], json!("active"));

    let t = tree(Some(user.clone())).await;
    assert_eq!(unlocked(&t), vec![true, false, false, true]);

    post(
        &app,
        &format!("/api/progress/lessons/{a1}/complete"),
        Some(&user),
        json!({}),
    )
    .await;
    let t = tree(Some(user.clone())).await;
    assert_eq!(t["levels"][0]["completion_percentage"], json!(50.0));
    assert_eq!(unlocked(&t), vec![true, false, false, true]);

    post(
        &app,
        &format!("/api/progress/lessons/{a2}/complete"),
        Some(&user),
        json!({}),
    )
    .await;
    let t = tree(Some(user.clone())).await;
    assert_eq!(t["levels"][0]["completion_percentage"], json!(100.0));
    // B needs A; C needs A and B.
    assert_eq!(unlocked(&t), vec![true, true, false, true]);

    post(
        &app,
        &format!("/api/progress/lessons/{b1}/complete"),
        Some(&user),
        json!({}),
    )
    .await;
    let t = tree(Some(user.clone())).await;
    assert_eq!(unlocked(&t), vec![true, true, true, true]);
    // Anonymous callers still only get roots.
    assert_eq!(unlocked(&tree(None).await), vec![true, false, false, true]);

    for id in [Uuid::new_v4().to_string(), "nope".to_string()] {
        let (s, b) = get(&app, &format!("/api/courses/worlds/{id}/skill-tree"), None).await;
        assert_eq!(
            (s, b["detail"].clone()),
            (StatusCode::NOT_FOUND, json!("World not found"))
        );
    }
}

// ---------------------------------------------------------------------------
// Admin course builder (§3.3)
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_course_builder_crud_and_aliases() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let a = Some(&admin);

    // Create.
    let (s, c) = post(
        &app,
        "/api/admin/courses",
        a,
        json!({"title": "Mambo 101", "slug": "mambo-101", "order_index": 3,
               "difficulty": "beginner", "course_type": "Choreo", "description": "Intro",
               "objectives": ["one", "two", "three"], "mux_preview_playback_id": "pv"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let w = id_of(&c);
    assert_eq!(c["difficulty"], json!("Beginner"));
    assert_eq!(c["course_type"], json!("choreo"));
    assert_eq!(c["objectives"], json!(["one", "two", "three"]));
    assert_eq!(c["is_locked"], json!(false));
    assert_eq!(c["module_count"], json!(0));
    assert_eq!(c["mux_preview_playback_id"], json!("pv"));

    // Create errors.
    let base = json!({"title": "X", "slug": "x-1", "order_index": 0, "difficulty": "open"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let (s, e) = post(
        &app,
        "/api/admin/courses",
        a,
        with("slug", json!("mambo-101")),
    )
    .await;
    assert_eq!(
        (s, e["detail"].clone()),
        (
            StatusCode::BAD_REQUEST,
            json!("Course with this slug already exists")
        )
    );
    let (s, e) = post(
        &app,
        "/api/admin/courses",
        a,
        with("difficulty", json!("Expert")),
    )
    .await;
    assert_eq!(
        (s, e["detail"].clone()),
        (StatusCode::BAD_REQUEST, json!("Invalid difficulty: Expert"))
    );
    let (s, e) = post(&app, "/api/admin/courses", a, with("title", json!("  "))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["detail"][0]["loc"], json!(["body", "title"]));
    let (s, _) = post(
        &app,
        "/api/admin/courses",
        a,
        with("order_index", json!(-1)),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = post(
        &app,
        "/api/admin/courses",
        a,
        with("course_type", json!("movie")),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = post(&app, "/api/admin/courses", a, json!({"title": "No slug"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // A second course for slug conflicts.
    let (_, other) = post(&app, "/api/admin/courses", a, base.clone()).await;
    let other_id = id_of(&other);

    // PUT: null means unchanged.
    let (s, u) = call(
        &app,
        Method::PUT,
        &format!("/api/admin/courses/{w}"),
        a,
        Some(json!({"title": "Mambo 101!", "description": null, "is_published": true, "is_free": true})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{u}");
    assert_eq!(u["title"], json!("Mambo 101!"));
    assert_eq!(u["description"], json!("Intro"));
    // PATCH (seed alias): null clears a nullable field.
    let (s, u) = call(
        &app,
        Method::PATCH,
        &format!("/api/admin/courses/{w}"),
        a,
        Some(json!({"description": null, "difficulty": "ADVANCED", "objectives": ["x"]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{u}");
    assert_eq!(u["description"], Value::Null);
    assert_eq!(u["difficulty"], json!("Advanced"));
    assert_eq!(u["objectives"], json!(["x"]));
    assert_eq!(u["title"], json!("Mambo 101!"));
    let (s, e) = call(
        &app,
        Method::PATCH,
        &format!("/api/admin/courses/{other_id}"),
        a,
        Some(json!({"slug": "mambo-101"})),
    )
    .await;
    assert_eq!(
        (s, e["detail"].clone()),
        (StatusCode::BAD_REQUEST, json!("Slug already taken"))
    );
    let (s, e) = call(
        &app,
        Method::PUT,
        &format!("/api/admin/courses/{w}"),
        a,
        Some(json!({"difficulty": "hard"})),
    )
    .await;
    assert_eq!(
        (s, e["detail"].clone()),
        (StatusCode::BAD_REQUEST, json!("Invalid difficulty: hard"))
    );
    for id in [Uuid::new_v4().to_string(), "zzz".into()] {
        for body in [json!({}), json!({"difficulty": "hard"})] {
            let (s, e) = call(
                &app,
                Method::PUT,
                &format!("/api/admin/courses/{id}"),
                a,
                Some(body),
            )
            .await;
            assert_eq!(
                (s, e["detail"].clone()),
                (StatusCode::NOT_FOUND, json!("Course not found"))
            );
        }
    }

    // Levels: appended (frontend) and positioned (course route).
    let (s, l1) = post(&app, &format!("/api/admin/worlds/{w}/levels"), a, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{l1}");
    assert_eq!(l1["title"], json!("New Level"));
    assert_eq!(l1["description"], json!(""));
    assert_eq!(l1["order_index"], json!(0));
    assert_eq!(l1["x_position"], json!(50.0));
    assert_eq!(l1["world_id"], json!(w.to_string()));
    let (_, l2) = post(
        &app,
        &format!("/api/admin/worlds/{w}/levels"),
        a,
        json!({"title": "Second", "x_position": 10.5}),
    )
    .await;
    assert_eq!(l2["order_index"], json!(1));
    assert_eq!(l2["x_position"], json!(10.5));
    let (s, l3) = post(
        &app,
        &format!("/api/admin/courses/{w}/levels"),
        a,
        json!({"world_id": "ignored", "title": "Third", "order_index": 7}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{l3}");
    assert_eq!(l3.as_object().unwrap().len(), 3);
    assert_eq!(l3["order_index"], json!(7));
    let (s, e) = post(
        &app,
        &format!("/api/admin/courses/{}/levels", Uuid::new_v4()),
        a,
        json!({"title": "x", "order_index": 0}),
    )
    .await;
    assert_eq!(
        (s, e["detail"].clone()),
        (StatusCode::NOT_FOUND, json!("Course not found"))
    );
    let (s, e) = post(
        &app,
        &format!("/api/admin/worlds/{}/levels", Uuid::new_v4()),
        a,
        json!({}),
    )
    .await;
    assert_eq!(
        (s, e["detail"].clone()),
        (StatusCode::NOT_FOUND, json!("World not found"))
    );
    let (l1, l2, l3) = (id_of(&l1), id_of(&l2), id_of(&l3));

    let (s, lv) = call(
        &app,
        Method::PUT,
        &format!("/api/admin/levels/{l1}"),
        a,
        Some(
            json!({"title": "Basics", "outcome": "Step on 2", "status": "coming_soon",
                    "total_xp": 500, "description": null, "mux_preview_playback_id": "lp"}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{lv}");
    assert_eq!(lv["title"], json!("Basics"));
    assert_eq!(lv["description"], json!(""));
    assert_eq!(lv["status"], json!("coming_soon"));
    assert_eq!(lv["total_xp"], json!(500));
    assert_eq!(lv["mux_preview_playback_id"], json!("lp"));
    let (s, lv) = get(&app, &format!("/api/admin/levels/{l1}"), a).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(lv["outcome"], json!("Step on 2"));
    let (s, m) = call(
        &app,
        Method::PUT,
        &format!("/api/admin/levels/{l1}/position"),
        a,
        Some(json!({"x_position": 12.0})),
    )
    .await;
    assert_eq!(
        (s, m),
        (
            StatusCode::OK,
            json!({"message": "Position updated successfully"})
        )
    );
    let (_, lv) = get(&app, &format!("/api/admin/levels/{l1}"), a).await;
    assert_eq!(
        (lv["x_position"].clone(), lv["y_position"].clone()),
        (json!(12.0), json!(50.0))
    );
    let (s, _) = call(
        &app,
        Method::PUT,
        &format!("/api/admin/levels/{l1}"),
        a,
        Some(json!({"title": ""})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = call(
        &app,
        Method::PUT,
        &format!("/api/admin/levels/{l1}"),
        a,
        Some(json!({"duration_minutes": -5})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // Lessons: the frontend's route (no level_id in the body, D4) ...
    let (s, le) = post(
        &app,
        &format!("/api/admin/levels/{l1}/lessons"),
        a,
        json!({"title": "Basic step", "order_index": 0, "week_number": 1, "day_number": 2,
               "lesson_type": "QUIZ", "content_json": {"blocks": [{"type": "quiz",
               "questions": [{"question": "1?", "options": ["a", "b"], "correct_answer": 0}]}]}}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{le}");
    assert_eq!(
        le.as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .len(),
        5
    );
    assert_eq!(le["xp_value"], json!(50));
    assert_eq!(le["is_boss_battle"], json!(false));
    let lesson = id_of(&le);
    let (s, got) = get(&app, &format!("/api/admin/lessons/{lesson}"), a).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        got["video_url"],
        json!("https://example.com/video/placeholder")
    );
    assert_eq!(got["lesson_type"], json!("quiz"));
    assert_eq!(got["level_id"], json!(l1.to_string()));
    assert_eq!(got["week_number"], json!(1));

    // ... and the seed's alias (level_id required and inside the course).
    let (s, le2) = post(
        &app,
        &format!("/api/admin/courses/{w}/lessons"),
        a,
        json!({"level_id": l2, "title": "Boss", "order_index": 1, "is_boss_battle": true, "xp_value": 500,
               "video_url": "https://v/boss", "mux_playback_id": "m1"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{le2}");
    assert_eq!(le2["is_boss_battle"], json!(true));
    assert_eq!(le2["xp_value"], json!(500));
    let lesson2 = id_of(&le2);
    let (s, e) = post(
        &app,
        &format!("/api/admin/courses/{w}/lessons"),
        a,
        json!({"title": "x", "order_index": 0}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["detail"][0]["loc"], json!(["body", "level_id"]));
    let foreign_level = mk_level(&app, other_id, 0).await;
    for lvl in [
        foreign_level.to_string(),
        Uuid::new_v4().to_string(),
        "bad".into(),
    ] {
        let (s, e) = post(
            &app,
            &format!("/api/admin/courses/{w}/lessons"),
            a,
            json!({"level_id": lvl, "title": "x", "order_index": 0}),
        )
        .await;
        assert_eq!(
            (s, e["detail"].clone()),
            (StatusCode::NOT_FOUND, json!("Level not found"))
        );
    }
    for lvl in [Uuid::new_v4().to_string(), "bad".into()] {
        let (s, e) = post(
            &app,
            &format!("/api/admin/levels/{lvl}/lessons"),
            a,
            json!({"title": "x", "order_index": 0}),
        )
        .await;
        assert_eq!(
            (s, e["detail"].clone()),
            (StatusCode::NOT_FOUND, json!("Level not found"))
        );
    }
    // Bad lesson input.
    let lpath = format!("/api/admin/levels/{l1}/lessons");
    for (body, what) in [
        (json!({"title": "", "order_index": 0}), "empty title"),
        (json!({"title": "x", "order_index": -1}), "negative order"),
        (
            json!({"title": "x", "order_index": 0, "week_number": -1}),
            "negative week",
        ),
        (
            json!({"title": "x", "order_index": 0, "day_number": -3}),
            "negative day",
        ),
        (
            json!({"title": "x", "order_index": 0, "lesson_type": "dance"}),
            "unknown type",
        ),
        (
            json!({"title": "x", "order_index": 0, "content_json": [1, 2]}),
            "content not an object",
        ),
        (
            json!({"title": "x", "order_index": 0, "content_json": {"blocks": [{"type": "quiz", "questions": "q"}]}}),
            "quiz not a list",
        ),
        (json!({"title": "x"}), "missing order"),
    ] {
        let (s, e) = post(&app, &lpath, a, body).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {e}");
        assert!(e["detail"].is_array(), "{what}");
    }

    // PUT: null keeps week/day; PATCH (seed alias): null clears them (D36).
    let lp = format!("/api/admin/lessons/{lesson}");
    let (s, u) = call(
        &app,
        Method::PUT,
        &lp,
        a,
        Some(json!({"week_number": null, "title": "Basic step 2", "mux_playback_id": "hack"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{u}");
    assert_eq!(
        u,
        json!({"id": lesson.to_string(), "title": "Basic step 2", "order_index": 0})
    );
    let (_, got) = get(&app, &lp, a).await;
    assert_eq!(got["week_number"], json!(1));
    assert_eq!(
        got["mux_playback_id"],
        Value::Null,
        "mux ids in the body are ignored"
    );
    let (s, _) = call(&app, Method::PATCH, &lp, a, Some(json!({"week_number": null, "day_number": null, "content_json": null, "lesson_type": "history"}))).await;
    assert_eq!(s, StatusCode::OK);
    let (_, got) = get(&app, &lp, a).await;
    assert_eq!(got["week_number"], Value::Null);
    assert_eq!(got["day_number"], Value::Null);
    assert_eq!(got["content_json"], Value::Null);
    assert_eq!(got["lesson_type"], json!("history"));
    assert_eq!(got["title"], json!("Basic step 2"));
    let (s, _) = call(
        &app,
        Method::PATCH,
        &lp,
        a,
        Some(json!({"lesson_type": "film"})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = call(
        &app,
        Method::PATCH,
        &lp,
        a,
        Some(json!({"order_index": -2})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = call(&app, Method::PATCH, &lp, a, Some(json!({"title": ""}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // delete_video clears the video.
    let l2p = format!("/api/admin/lessons/{lesson2}");
    let (s, _) = call(
        &app,
        Method::PUT,
        &l2p,
        a,
        Some(json!({"delete_video": true})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (_, got) = get(&app, &l2p, a).await;
    assert_eq!(
        (got["mux_playback_id"].clone(), got["video_url"].clone()),
        (Value::Null, json!(""))
    );
    for id in [Uuid::new_v4().to_string(), "bad".into()] {
        let (s, e) = call(
            &app,
            Method::PATCH,
            &format!("/api/admin/lessons/{id}"),
            a,
            Some(json!({})),
        )
        .await;
        assert_eq!(
            (s, e["detail"].clone()),
            (StatusCode::NOT_FOUND, json!("Lesson not found"))
        );
        let (s, e) = get(&app, &format!("/api/admin/lessons/{id}"), a).await;
        assert_eq!(
            (s, e["detail"].clone()),
            (StatusCode::NOT_FOUND, json!("Lesson not found"))
        );
    }

    // Full course on both paths.
    for path in [
        format!("/api/admin/courses/{w}/full"),
        format!("/api/admin/courses/{w}"),
    ] {
        let (s, f) = get(&app, &path, a).await;
        assert_eq!(s, StatusCode::OK, "{f}");
        assert_eq!(f["slug"], json!("mambo-101"));
        assert_eq!(f["is_published"], json!(true));
        assert_eq!(ids(&f["levels"]), vec![l1, l2, l3]);
        assert_eq!(ids(&f["levels"][0]["lessons"]), vec![lesson]);
        assert_eq!(f["levels"][1]["lessons"][0]["is_boss_battle"], json!(true));
        assert_eq!(f["levels"][0]["outcome"], json!("Step on 2"));
    }
    let (s, e) = get(&app, "/api/admin/courses/nope/full", a).await;
    assert_eq!(
        (s, e["detail"].clone()),
        (StatusCode::NOT_FOUND, json!("Course not found"))
    );

    // Admin list: includes unpublished, with counts.
    let (_, list) = get(&app, "/api/admin/courses", a).await;
    assert_eq!(ids(&list), vec![other_id, w]); // order_index 0 then 3
    assert_eq!(list[1]["module_count"], json!(3));
    assert_eq!(list[1]["lesson_count"], json!(2));

    // Deletes.
    let (s, m) = call(&app, Method::DELETE, &lp, a, None).await;
    assert_eq!(
        (s, m),
        (
            StatusCode::OK,
            json!({"message": "Lesson deleted successfully"})
        )
    );
    let (s, _) = call(&app, Method::DELETE, &lp, a, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, m) = call(
        &app,
        Method::DELETE,
        &format!("/api/admin/levels/{l3}"),
        a,
        None,
    )
    .await;
    assert_eq!(
        (s, m),
        (
            StatusCode::OK,
            json!({"message": "Level deleted successfully"})
        )
    );
    let (s, e) = get(&app, &format!("/api/admin/levels/{l3}"), a).await;
    assert_eq!(
        (s, e["detail"].clone()),
        (StatusCode::NOT_FOUND, json!("Level not found"))
    );
    let (s, m) = call(
        &app,
        Method::DELETE,
        &format!("/api/admin/courses/{w}"),
        a,
        None,
    )
    .await;
    assert_eq!(
        (s, m),
        (
            StatusCode::OK,
            json!({"message": "Course deleted successfully"})
        )
    );
    let (s, e) = call(
        &app,
        Method::DELETE,
        &format!("/api/admin/courses/{w}"),
        a,
        None,
    )
    .await;
    assert_eq!(
        (s, e["detail"].clone()),
        (StatusCode::NOT_FOUND, json!("Course not found"))
    );
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM levels WHERE id = ANY($1)")
        .bind(vec![l1, l2])
        .fetch_one(app.db())
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_are_validated() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let a = Some(&admin);
    let w = mk_world(&app, true, true).await;
    let other = mk_world(&app, true, true).await;
    let (l1, l2, l3) = (
        mk_level(&app, w, 0).await,
        mk_level(&app, w, 1).await,
        mk_level(&app, w, 2).await,
    );
    let foreign = mk_level(&app, other, 0).await;
    let path = format!("/api/admin/worlds/{w}/edges");
    let edge = |f: Uuid, t: Uuid| json!({"from_level_id": f, "to_level_id": t});

    let (s, e1) = post(&app, &path, a, edge(l1, l2)).await;
    assert_eq!(s, StatusCode::OK, "{e1}");
    assert_eq!(e1["from_level_id"], json!(l1.to_string()));
    assert_eq!(e1["to_level_id"], json!(l2.to_string()));
    let (s, _) = post(&app, &path, a, edge(l2, l3)).await;
    assert_eq!(s, StatusCode::OK);

    let (s, e) = post(&app, &path, a, edge(l1, l2)).await;
    assert_eq!(
        (s, e["detail"].clone()),
        (StatusCode::BAD_REQUEST, json!("Edge already exists"))
    );
    let (s, _) = post(&app, &path, a, edge(l1, l1)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "self-loop");
    let (s, _) = post(&app, &path, a, edge(l3, l1)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "cycle l1→l2→l3→l1");
    let (s, _) = post(&app, &path, a, edge(l2, l1)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "2-cycle");
    let (s, _) = post(&app, &path, a, edge(l1, foreign)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "cross-world");
    let (s, _) = post(
        &app,
        &format!("/api/admin/worlds/{other}/edges"),
        a,
        edge(foreign, l1),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "cross-world from the other side"
    );
    let (s, e) = post(&app, &path, a, edge(l1, Uuid::new_v4())).await;
    assert_eq!(
        (s, e["detail"].clone()),
        (StatusCode::NOT_FOUND, json!("Level not found"))
    );
    let (s, e) = post(
        &app,
        &path,
        a,
        json!({"from_level_id": "x", "to_level_id": l2}),
    )
    .await;
    assert_eq!(
        (s, e["detail"].clone()),
        (StatusCode::NOT_FOUND, json!("Level not found"))
    );
    let (s, e) = post(
        &app,
        &format!("/api/admin/worlds/{}/edges", Uuid::new_v4()),
        a,
        edge(l1, l3),
    )
    .await;
    assert_eq!(
        (s, e["detail"].clone()),
        (StatusCode::NOT_FOUND, json!("World not found"))
    );
    // A shortcut that is not a cycle is fine.
    let (s, _) = post(&app, &path, a, edge(l1, l3)).await;
    assert_eq!(s, StatusCode::OK);

    // Concurrent opposite edges: at most one wins.
    let (x, y) = (mk_level(&app, w, 5).await, mk_level(&app, w, 6).await);
    let mut hs = vec![];
    for (f, t) in [(x, y), (y, x), (x, y), (y, x)] {
        let client = app.client.clone();
        let url = app.url(&path);
        let bearer = admin.bearer();
        hs.push(tokio::spawn(async move {
            client
                .post(url)
                .header("Authorization", bearer)
                .json(&json!({"from_level_id": f, "to_level_id": t}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut ok = 0;
    for h in hs {
        if h.await.unwrap() == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(ok, 1);

    let id = id_of(&e1);
    let (s, m) = call(
        &app,
        Method::DELETE,
        &format!("/api/admin/edges/{id}"),
        a,
        None,
    )
    .await;
    assert_eq!(
        (s, m),
        (
            StatusCode::OK,
            json!({"message": "Edge deleted successfully"})
        )
    );
    for id in [id.to_string(), "bad".into()] {
        let (s, e) = call(
            &app,
            Method::DELETE,
            &format!("/api/admin/edges/{id}"),
            a,
            None,
        )
        .await;
        assert_eq!(
            (s, e["detail"].clone()),
            (StatusCode::NOT_FOUND, json!("Edge not found"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_cascade_with_progress_present() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let a = Some(&admin);
    let user = app.student().await;
    let w = mk_world(&app, true, true).await;
    let l1 = mk_level(&app, w, 0).await;
    let l2 = mk_level(&app, w, 1).await;
    let le1 = mk_lesson(&app, l1, None, None, 0, 50).await;
    let le2 = mk_lesson(&app, l2, None, None, 0, 50).await;
    let le3 = mk_lesson(&app, l2, None, None, 1, 50).await;
    post(
        &app,
        &format!("/api/admin/worlds/{w}/edges"),
        a,
        json!({"from_level_id": l1, "to_level_id": l2}),
    )
    .await;
    for le in [le1, le2, le3] {
        let (s, _) = post(
            &app,
            &format!("/api/progress/lessons/{le}/complete"),
            Some(&user),
            json!({}),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        sqlx::query(
            "INSERT INTO boss_submissions (user_id, lesson_id, video_url) VALUES ($1, $2, 'v')",
        )
        .bind(user.id)
        .bind(le)
        .execute(app.db())
        .await
        .unwrap();
        sqlx::query("INSERT INTO comments (user_id, lesson_id, content) VALUES ($1, $2, 'hi')")
            .bind(user.id)
            .bind(le)
            .execute(app.db())
            .await
            .unwrap();
    }
    let count = |sql: &'static str| {
        let db = app.db().clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };

    let (s, _) = call(
        &app,
        Method::DELETE,
        &format!("/api/admin/lessons/{le3}"),
        a,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(count("SELECT count(*) FROM user_progress").await, 2);
    assert_eq!(count("SELECT count(*) FROM boss_submissions").await, 2);

    let (s, _) = call(
        &app,
        Method::DELETE,
        &format!("/api/admin/levels/{l2}"),
        a,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(count("SELECT count(*) FROM level_edges").await, 0);
    assert_eq!(count("SELECT count(*) FROM comments").await, 1);

    let (s, _) = call(
        &app,
        Method::DELETE,
        &format!("/api/admin/courses/{w}"),
        a,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    for sql in [
        "SELECT count(*) FROM user_progress",
        "SELECT count(*) FROM boss_submissions",
        "SELECT count(*) FROM comments",
        "SELECT count(*) FROM lessons",
        "SELECT count(*) FROM levels",
    ] {
        assert_eq!(count(sql).await, 0, "{sql}");
    }
    // The user keeps their XP.
    assert_eq!(xp_of(&app, user.id).await.0, 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_need_an_admin() {
    let app = TestApp::spawn().await;
    let student = app.pro_student().await;
    let instructor = role(&app, "instructor").await;
    let (w, l, le) = simple_world(&app, true).await;
    let x = Uuid::new_v4();
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/api/admin/stats".into(), None),
        (Method::GET, "/api/admin/students".into(), None),
        (Method::GET, "/api/admin/courses".into(), None),
        (
            Method::POST,
            "/api/admin/courses".into(),
            Some(json!({"title": "t", "slug": "s", "order_index": 0, "difficulty": "open"})),
        ),
        (
            Method::PUT,
            format!("/api/admin/courses/{w}"),
            Some(json!({})),
        ),
        (
            Method::PATCH,
            format!("/api/admin/courses/{w}"),
            Some(json!({})),
        ),
        (Method::DELETE, format!("/api/admin/courses/{w}"), None),
        (Method::GET, format!("/api/admin/courses/{w}/full"), None),
        (Method::GET, format!("/api/admin/courses/{w}"), None),
        (
            Method::POST,
            format!("/api/admin/courses/{w}/levels"),
            Some(json!({"title": "t", "order_index": 0})),
        ),
        (
            Method::POST,
            format!("/api/admin/worlds/{w}/levels"),
            Some(json!({})),
        ),
        (Method::GET, format!("/api/admin/levels/{l}"), None),
        (
            Method::PUT,
            format!("/api/admin/levels/{l}"),
            Some(json!({})),
        ),
        (Method::DELETE, format!("/api/admin/levels/{l}"), None),
        (
            Method::PUT,
            format!("/api/admin/levels/{l}/position"),
            Some(json!({})),
        ),
        (Method::GET, format!("/api/admin/levels/{l}/lessons"), None),
        (
            Method::POST,
            format!("/api/admin/levels/{l}/lessons"),
            Some(json!({"title": "t", "order_index": 0})),
        ),
        (
            Method::POST,
            format!("/api/admin/courses/{w}/lessons"),
            Some(json!({"level_id": l, "title": "t", "order_index": 0})),
        ),
        (Method::GET, format!("/api/admin/lessons/{le}"), None),
        (
            Method::PUT,
            format!("/api/admin/lessons/{le}"),
            Some(json!({})),
        ),
        (
            Method::PATCH,
            format!("/api/admin/lessons/{le}"),
            Some(json!({})),
        ),
        (Method::DELETE, format!("/api/admin/lessons/{le}"), None),
        (
            Method::POST,
            format!("/api/admin/worlds/{w}/edges"),
            Some(json!({"from_level_id": l, "to_level_id": x})),
        ),
        (Method::DELETE, format!("/api/admin/edges/{x}"), None),
    ];
    for (m, path, body) in routes {
        let (s, e) = call(&app, m.clone(), &path, None, body.clone()).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{m} {path}");
        assert_eq!(e["detail"], json!("Could not validate credentials"));
        for who in [&student, &instructor] {
            let (s, e) = call(&app, m.clone(), &path, Some(who), body.clone()).await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{m} {path}");
            assert_eq!(e["detail"], json!("Not enough permissions"));
        }
    }
    // Nothing was changed by the refused calls.
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM lessons WHERE id = $1")
        .bind(le)
        .fetch_one(app.db())
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unknown_ids_are_404() {
    let app = TestApp::spawn().await;
    let user = app.pro_student().await;
    let admin = app.admin().await;
    for id in [
        "not-a-uuid".to_string(),
        "123".into(),
        Uuid::new_v4().to_string(),
    ] {
        for (path, who, msg) in [
            (
                format!("/api/courses/worlds/{id}/lessons"),
                None,
                "World not found",
            ),
            (
                format!("/api/courses/worlds/{id}/skill-tree"),
                None,
                "World not found",
            ),
            (
                format!("/api/courses/levels/{id}/lessons"),
                None,
                "Level not found",
            ),
            (
                format!("/api/courses/lessons/{id}"),
                Some(&user),
                "Lesson not found",
            ),
            (
                format!("/api/admin/levels/{id}"),
                Some(&admin),
                "Level not found",
            ),
            (
                format!("/api/admin/levels/{id}/lessons"),
                Some(&admin),
                "Level not found",
            ),
            (
                format!("/api/admin/courses/{id}"),
                Some(&admin),
                "Course not found",
            ),
        ] {
            let (s, b) = get(&app, &path, who).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(b["detail"], json!(msg), "{path}");
        }
        for (m, path, msg) in [
            (
                Method::DELETE,
                format!("/api/admin/levels/{id}"),
                "Level not found",
            ),
            (
                Method::PUT,
                format!("/api/admin/levels/{id}/position"),
                "Level not found",
            ),
            (
                Method::PUT,
                format!("/api/admin/levels/{id}"),
                "Level not found",
            ),
            (
                Method::DELETE,
                format!("/api/admin/lessons/{id}"),
                "Lesson not found",
            ),
        ] {
            let (s, b) = call(&app, m, &path, Some(&admin), Some(json!({}))).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(b["detail"], json!(msg), "{path}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn students_list_and_stats() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let a = Some(&admin);
    let mut made = vec![];
    for _ in 0..3 {
        made.push(app.student().await);
    }
    sqlx::query("UPDATE user_profiles SET first_name = 'Ana_%' WHERE user_id = $1")
        .bind(made[0].id)
        .execute(app.db())
        .await
        .unwrap();
    sqlx::query("UPDATE user_profiles SET last_name = 'AnaXY' WHERE user_id = $1")
        .bind(made[1].id)
        .execute(app.db())
        .await
        .unwrap();
    // Deterministic creation times: made[2] newest.
    for (i, u) in made.iter().enumerate() {
        sqlx::query(
            "UPDATE users SET created_at = now() + make_interval(secs => $2) WHERE id = $1",
        )
        .bind(u.id)
        .bind(i as f64 + 10.0)
        .execute(app.db())
        .await
        .unwrap();
    }
    let (s, list) = get(&app, "/api/admin/students", a).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    assert_eq!(list.as_array().unwrap().len(), 4); // + the admin
    assert_eq!(id_of(&list[0]), made[2].id);
    let first = list[0].as_object().unwrap();
    for k in [
        "id",
        "email",
        "first_name",
        "last_name",
        "xp",
        "level",
        "streak_count",
        "created_at",
        "role",
    ] {
        assert!(first.contains_key(k), "{k}");
    }
    assert!(list[0]["created_at"].as_str().unwrap().ends_with('Z'));

    // `%` and `_` are literal.
    let (_, found) = get(&app, "/api/admin/students?search=a_%25", a).await;
    assert_eq!(ids(&found), vec![made[0].id]);
    let (_, found) = get(&app, "/api/admin/students?search=ANA", a).await;
    assert_eq!(ids(&found), vec![made[1].id, made[0].id]);
    let (_, found) = get(
        &app,
        &format!("/api/admin/students?search={}", &made[2].email[..10]),
        a,
    )
    .await;
    assert_eq!(ids(&found), vec![made[2].id]);
    for q in ["%25", "_", "%25%25", "a%25b"] {
        let (_, found) = get(&app, &format!("/api/admin/students?search={q}"), a).await;
        let expected = match q {
            "%25" | "_" => vec![made[0].id],
            _ => vec![],
        };
        assert_eq!(ids(&found), expected, "search={q}");
    }

    // Paging and clamping.
    let (_, page) = get(&app, "/api/admin/students?skip=1&limit=2", a).await;
    assert_eq!(ids(&page), vec![made[1].id, made[0].id]);
    let (s, page) = get(&app, "/api/admin/students?limit=0", a).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(page.as_array().unwrap().len(), 1);
    let (s, page) = get(&app, "/api/admin/students?limit=100000", a).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(page.as_array().unwrap().len(), 4);
    let (s, _) = get(&app, "/api/admin/students?skip=-1", a).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    let (_, _, le) = simple_world(&app, true).await;
    sqlx::query(
        "INSERT INTO boss_submissions (user_id, lesson_id, video_url) VALUES ($1, $2, 'v')",
    )
    .bind(made[0].id)
    .bind(le)
    .execute(app.db())
    .await
    .unwrap();
    sqlx::query("INSERT INTO boss_submissions (user_id, lesson_id, video_url, status) VALUES ($1, $2, 'v', 'approved')")
        .bind(made[1].id)
        .bind(le)
        .execute(app.db())
        .await
        .unwrap();
    let (s, st) = get(&app, "/api/admin/stats", a).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        st,
        json!({"total_users": 4, "total_submissions": 2, "pending_submissions": 1})
    );
}

// ---------------------------------------------------------------------------
// No N+1 (D17): statement counts do not grow with the world
// ---------------------------------------------------------------------------

/// A published paid world with `levels` levels of `per_level` lessons each, a
/// chain of edges, and some progress for `user`.
async fn big_world(app: &TestApp, levels: i32, per_level: i32, user: Uuid) -> (Uuid, Uuid, Uuid) {
    let w = mk_world(app, false, true).await;
    let level_ids: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO levels (world_id, title, order_index)
         SELECT $1, 'L' || g, g FROM generate_series(0, $2 - 1) g RETURNING id",
    )
    .bind(w)
    .bind(levels)
    .fetch_all(app.db())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO lessons (level_id, title, video_url, order_index, week_number, day_number, duration_minutes)
         SELECT l, 'x', 'v', g % 3, g % 5, g % 7, 5
         FROM unnest($1::uuid[]) l, generate_series(1, $2) g",
    )
    .bind(&level_ids)
    .bind(per_level)
    .execute(app.db())
    .await
    .unwrap();
    for pair in level_ids.windows(2) {
        sqlx::query(
            "INSERT INTO level_edges (world_id, from_level_id, to_level_id) VALUES ($1, $2, $3)",
        )
        .bind(w)
        .bind(pair[0])
        .bind(pair[1])
        .execute(app.db())
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO user_progress (user_id, lesson_id, is_completed, completed_at)
         SELECT $1, le.id, true, now() FROM lessons le WHERE le.level_id = $2",
    )
    .bind(user)
    .bind(level_ids[0])
    .execute(app.db())
    .await
    .unwrap();
    let some_lesson: Uuid = sqlx::query_scalar(
        "SELECT le.id FROM lessons le WHERE le.level_id = $1 ORDER BY le.id LIMIT 1",
    )
    .bind(level_ids[levels as usize - 1])
    .fetch_one(app.db())
    .await
    .unwrap();
    (w, level_ids[0], some_lesson)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_cost_a_fixed_number_of_queries() {
    let app = TestApp::spawn().await;
    let pro = app.pro_student().await;
    let student = app.student().await;
    let admin = app.admin().await;
    let small = big_world(&app, 2, 5, pro.id).await; // 10 lessons
    let big = big_world(&app, 10, 20, pro.id).await; // 200 lessons

    // A pool of our own with statement logging on (the app's pool has it off).
    let opts = sqlx::postgres::PgConnectOptions::from_str(&app.db.url).unwrap();
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(opts)
        .await
        .unwrap();
    // Warm the pool so that connecting is not counted.
    sqlx::query("SELECT 1").execute(&db).await.unwrap();

    let viewers = [
        (
            "pro",
            Some(Viewer {
                id: pro.id,
                role: "student".into(),
            }),
        ),
        (
            "student",
            Some(Viewer {
                id: student.id,
                role: "student".into(),
            }),
        ),
        (
            "admin",
            Some(Viewer {
                id: admin.id,
                role: "admin".into(),
            }),
        ),
        ("anonymous", None),
    ];
    // The worlds list reads the catalogue's aggregates once per catalogue
    // version (then from the process's cache); warm it so every count below
    // is a steady-state one.
    let ctx = mambo_core::Context {
        db: db.clone(),
        ..app.ctx.clone()
    };
    let (r, c) = count_statements(courses::list_worlds(&ctx, None)).await;
    r.unwrap();
    assert!(c <= 3, "cold worlds list: {c} statements");
    let mut counts: Vec<(String, usize, usize)> = vec![];
    for (name, v) in &viewers {
        let v = v.as_ref();
        let mut per_world = vec![];
        for (w, level, lesson) in [small, big] {
            let mut n = vec![];
            let (r, c) = count_statements(courses::list_worlds(&ctx, v)).await;
            r.unwrap();
            n.push(("worlds", c));
            let (r, c) = count_statements(courses::world_lessons(&ctx, v, w)).await;
            let lessons = r.unwrap();
            n.push(("world lessons", c));
            let (r, c) = count_statements(courses::level_lessons(&db, v, level)).await;
            r.unwrap();
            n.push(("level lessons", c));
            let (r, c) = count_statements(courses::skill_tree(&db, v, w)).await;
            let tree = r.unwrap();
            n.push(("skill tree", c));
            if let Some(v) = v {
                let (r, c) = count_statements(courses::lesson_detail(&ctx, v, lesson)).await;
                let _ = r; // 403 for the rookie: still counted
                n.push(("lesson detail", c));
            }
            if w == big.0 {
                assert_eq!(lessons.len(), 200);
                assert_eq!(tree.levels.len(), 10);
            }
            per_world.push(n);
        }
        for (a, b) in per_world[0].iter().zip(per_world[1].iter()) {
            assert!(
                a.1 >= 1,
                "{name} {}: no statement seen (is the counter working?)",
                a.0
            );
            assert_eq!(a.1, b.1, "{name} {}: 10 lessons vs 200 lessons", a.0);
            assert!(b.1 <= 4, "{name} {}: {} statements", b.0, b.1);
            counts.push((format!("{name} {}", a.0), a.1, b.1));
        }
    }
    // Admin lists.
    let mut admin_counts = vec![];
    for (w, level, _) in [small, big] {
        let (r, c1) = count_statements(mambo_core::admin::course_full(&db, w)).await;
        r.unwrap();
        let (r, c2) = count_statements(mambo_core::admin::list_courses(&db, admin.id)).await;
        r.unwrap();
        let (r, c3) =
            count_statements(mambo_core::admin::level_lessons(&db, admin.id, level)).await;
        r.unwrap();
        admin_counts.push((c1, c2, c3));
    }
    assert_eq!(admin_counts[0], admin_counts[1]);
    assert_eq!(admin_counts[1], (3, 1, 2));
    eprintln!("statement counts (10 lessons, 200 lessons): {counts:?}");
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lesson_edits_do_not_overwrite_each_other() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let other_admin = app.admin().await;
    let (w, _, lesson) = simple_world(&app, true).await;
    let path = format!("/api/admin/lessons/{lesson}");
    let mut hs = vec![];
    for i in 0..16 {
        let client = app.client.clone();
        let url = app.url(&path);
        let bearer = if i % 2 == 0 {
            admin.bearer()
        } else {
            other_admin.bearer()
        };
        // One admin reorders, the other edits the text: each touches only its fields.
        let body = if i % 2 == 0 {
            json!({"order_index": i, "week_number": 3})
        } else {
            json!({"title": format!("Title {i}"), "description": "edited"})
        };
        let method = if i % 4 < 2 {
            Method::PUT
        } else {
            Method::PATCH
        };
        hs.push(tokio::spawn(async move {
            client
                .request(method, url)
                .header("Authorization", bearer)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for h in hs {
        assert_eq!(h.await.unwrap(), StatusCode::OK);
    }
    let (_, got) = get(&app, &path, Some(&admin)).await;
    assert_eq!(got["week_number"], json!(3));
    assert_eq!(got["description"], json!("edited"));
    assert_eq!(got["day_number"], json!(1), "untouched fields survive");
    assert!(got["title"].as_str().unwrap().starts_with("Title "));
    assert_eq!(got["order_index"].as_i64().unwrap() % 2, 0);
    // The world's order is still well defined.
    let (s, list) = get(
        &app,
        &format!("/api/courses/worlds/{w}/lessons"),
        Some(&admin),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ids(&list), vec![lesson]);
}

/// The worlds list keeps the catalogue's aggregates in process (issue 10); a
/// write by any means (another API process, plain SQL) is seen by every
/// process on its next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cached_catalogue_follows_every_write_at_once() {
    let app = TestApp::spawn_api_only().await;
    let peer = app.spawn_peer_with(true, false, &[]).await;
    let student = app.student().await;
    let (w, level, _) = big_world(&app, 1, 3, student.id).await;
    let lessons_of = |worlds: &Value| -> Option<i64> {
        worlds
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == json!(w))
            .map(|x| x["lesson_count"].as_i64().unwrap())
    };
    let list = |url: String| {
        let client = app.client.clone();
        let bearer = student.bearer();
        async move {
            let (s, v) = json(
                client
                    .get(url)
                    .header("Authorization", bearer)
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{v}");
            v
        }
    };
    // Both processes have the catalogue cached.
    for _ in 0..2 {
        assert_eq!(
            lessons_of(&list(app.url("/api/courses/worlds")).await),
            Some(3)
        );
        assert_eq!(
            lessons_of(&list(peer.url("/api/courses/worlds")).await),
            Some(3)
        );
    }
    // A lesson added by plain SQL (no API involved): both see 4 at once, and
    // the caller's progress (first level done) is still per caller.
    sqlx::query(
        "INSERT INTO lessons (level_id, title, video_url, order_index, duration_minutes)
         VALUES ($1, 'new', 'v', 99, 5)",
    )
    .bind(level)
    .execute(app.db())
    .await
    .unwrap();
    let on_a = list(app.url("/api/courses/worlds")).await;
    let on_b = list(peer.url("/api/courses/worlds")).await;
    assert_eq!(lessons_of(&on_a), Some(4));
    assert_eq!(lessons_of(&on_b), Some(4));
    let pct = on_b
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == json!(w))
        .unwrap()["progress_percentage"]
        .as_f64()
        .unwrap();
    assert_eq!(pct, 75.0);
    // Unpublished through SQL: gone from both lists at once.
    sqlx::query("UPDATE worlds SET is_published = false WHERE id = $1")
        .bind(w)
        .execute(app.db())
        .await
        .unwrap();
    assert_eq!(
        lessons_of(&list(app.url("/api/courses/worlds")).await),
        None
    );
    assert_eq!(
        lessons_of(&list(peer.url("/api/courses/worlds")).await),
        None
    );
    peer.stop().await;
}
