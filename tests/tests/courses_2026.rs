//! Courses as the May 2026 frontend reads them (API-2026-05 N5.3): `slug` on
//! every WorldItem, the caller's `is_locked` on the skill tree, and per level
//! `total_lesson_count` and the topic teaser `tldr` (`?locale=`).

use mambo_core::courses::{self, Locale, Viewer};
use mambo_tests::{StatusCode, TestApp, TestUser, count_statements, json};
use reqwest::Method;
use serde_json::{Value, json};
use std::str::FromStr;
use uuid::Uuid;

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

/// A GET with `If-None-Match`: the status, the ETag and the body (null on 304).
async fn get_tagged(
    app: &TestApp,
    path: &str,
    who: Option<&TestUser>,
    if_none_match: Option<&str>,
) -> (StatusCode, Option<String>, Value) {
    let mut req = app.client.get(app.url(path));
    if let Some(u) = who {
        req = req.header("Authorization", u.bearer());
    }
    if let Some(t) = if_none_match {
        req = req.header("If-None-Match", t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let tag = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = resp.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, tag, body)
}

async fn mk_world(app: &TestApp, slug: &str, is_free: bool, course_type: &str) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO worlds (title, slug, order_index, is_free, difficulty, is_published,
                             course_type)
         VALUES ($1, $1, 0, $2, 'Beginner', true, $3) RETURNING id",
    )
    .bind(slug)
    .bind(is_free)
    .bind(course_type)
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

/// A lesson at (week, order) with `content_json` and whether it is a boss
/// battle.
async fn mk_lesson(
    app: &TestApp,
    level: Uuid,
    week: i32,
    order: i32,
    boss: bool,
    content: Value,
) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO lessons (level_id, title, video_url, xp_value, order_index, week_number,
                              day_number, is_boss_battle, content_json, duration_minutes)
         VALUES ($1, 'Lesson', 'https://video.example/x', 50, $2, $3, 1, $4, $5, 10)
         RETURNING id",
    )
    .bind(level)
    .bind(order)
    .bind(week)
    .bind(boss)
    .bind(content)
    .fetch_one(app.db())
    .await
    .unwrap()
}

fn item(list: &Value, id: Uuid) -> &Value {
    list.as_array()
        .expect("a list")
        .iter()
        .find(|w| w["id"] == json!(id.to_string()))
        .unwrap_or_else(|| panic!("{id} not in {list}"))
}

fn level(tree: &Value, id: Uuid) -> &Value {
    item(&tree["levels"], id)
}

fn tree_path(w: Uuid, query: &str) -> String {
    format!("/api/courses/worlds/{w}/skill-tree{query}")
}

// ---------------------------------------------------------------------------
// WorldItem.slug
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_world_list_carries_the_slug() {
    let app = TestApp::spawn_api_only().await;
    let admin = app.admin().await;
    let student = app.student().await;
    let w = mk_world(&app, "salsa-on2-basics", true, "course").await;

    for who in [None, Some(&student), Some(&admin)] {
        let (s, list) = get(&app, "/api/courses/worlds", who).await;
        assert_eq!(s, StatusCode::OK, "{list}");
        assert_eq!(item(&list, w)["slug"], json!("salsa-on2-basics"));
    }
    let (s, list) = get(&app, "/api/admin/courses", Some(&admin)).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    assert_eq!(item(&list, w)["slug"], json!("salsa-on2-basics"));

    // A rename is seen at once (the catalogue cache holds the slug) and the
    // admin's answer carries it.
    let (s, updated) = call(
        &app,
        Method::PUT,
        &format!("/api/admin/courses/{w}"),
        Some(&admin),
        Some(json!({"slug": "mambo-basics"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{updated}");
    assert_eq!(updated["slug"], json!("mambo-basics"));
    let (_, list) = get(&app, "/api/courses/worlds", None).await;
    assert_eq!(item(&list, w)["slug"], json!("mambo-basics"));

    let (s, created) = call(
        &app,
        Method::POST,
        "/api/admin/courses",
        Some(&admin),
        Some(
            json!({"title": "Shines", "slug": "shines-101", "order_index": 1,
                    "difficulty": "Beginner", "is_published": true}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{created}");
    assert_eq!(created["slug"], json!("shines-101"));
}

// ---------------------------------------------------------------------------
// SkillTree.is_locked
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skill_tree_lock_is_the_worlds_list_lock() {
    let app = TestApp::spawn_api_only().await;
    let free = mk_world(&app, "free-world", true, "course").await;
    let paid = mk_world(&app, "paid-world", false, "course").await;
    for w in [free, paid] {
        let l = mk_level(&app, w, 0).await;
        mk_lesson(&app, l, 1, 0, false, json!({})).await;
    }
    let student = app.student().await;
    let pro = app.pro_student().await;
    let admin = app.admin().await;

    // (caller, free locked, paid locked)
    let cases = [
        ("anonymous", None, true, true),
        ("student", Some(&student), false, true),
        ("pro", Some(&pro), false, false),
        ("admin", Some(&admin), false, false),
    ];
    for (name, who, free_locked, paid_locked) in cases {
        let (_, list) = get(&app, "/api/courses/worlds", who).await;
        for (w, locked) in [(free, free_locked), (paid, paid_locked)] {
            let (s, tree) = get(&app, &tree_path(w, ""), who).await;
            assert_eq!(s, StatusCode::OK, "{name}: {tree}");
            assert_eq!(tree["is_locked"], json!(locked), "{name} {w}");
            assert_eq!(tree["is_locked"], item(&list, w)["is_locked"], "{name} {w}");
        }
    }

    // The lock follows the caller's subscription, also through a validator
    // the caller already holds.
    let (s, tag, tree) = get_tagged(&app, &tree_path(paid, ""), Some(&student), None).await;
    assert_eq!((s, &tree["is_locked"]), (StatusCode::OK, &json!(true)));
    sqlx::query("UPDATE subscriptions SET status = 'active', tier = 'advanced' WHERE user_id = $1")
        .bind(student.id)
        .execute(app.db())
        .await
        .unwrap();
    let (s, _, tree) = get_tagged(&app, &tree_path(paid, ""), Some(&student), tag.as_deref()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(tree["is_locked"], json!(false));
}

// ---------------------------------------------------------------------------
// LevelNode.total_lesson_count
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_lesson_count_counts_boss_battles() {
    let app = TestApp::spawn_api_only().await;
    let w = mk_world(&app, "with-a-boss", true, "course").await;
    let with_boss = mk_level(&app, w, 0).await;
    let empty = mk_level(&app, w, 1).await;
    mk_lesson(&app, with_boss, 1, 0, false, json!({})).await;
    mk_lesson(&app, with_boss, 1, 1, false, json!({})).await;
    mk_lesson(&app, with_boss, 2, 0, true, json!({})).await;

    let (s, tree) = get(&app, &tree_path(w, ""), None).await;
    assert_eq!(s, StatusCode::OK, "{tree}");
    let node = level(&tree, with_boss);
    assert_eq!(node["total_lesson_count"], json!(3));
    assert_eq!(node["lesson_count"], json!(3), "API.md's meaning is kept");
    assert_eq!(level(&tree, empty)["total_lesson_count"], json!(0));
}

// ---------------------------------------------------------------------------
// LevelNode.tldr
// ---------------------------------------------------------------------------

const NOTES_EN: &str = "# Cross body lead\nIntro.\n\n## TL;DR\n\nStep on **2**, open the door.\n\n## Details\nPremium detail: the shoulder cue.";
const NOTES_ES: &str = "## tldr\nPisa en el **2**.\n## Detalles\nDetalle premium.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_levels_tease_the_tldr_of_their_first_lesson() {
    let app = TestApp::spawn_api_only().await;
    let admin = app.admin().await;
    let student = app.student().await;
    // A paid topic world: the teaser is for callers without access too.
    let w = mk_world(&app, "topic-world", false, "topic").await;
    let translated = mk_level(&app, w, 0).await;
    let untranslated = mk_level(&app, w, 1).await;
    let without = mk_level(&app, w, 2).await;
    let empty = mk_level(&app, w, 3).await;
    // Inserted first but second in the order of §4.5 (week 2 after week 1).
    mk_lesson(
        &app,
        translated,
        2,
        0,
        false,
        json!({"notes": "## TL;DR\nNot the first lesson."}),
    )
    .await;
    let first = mk_lesson(
        &app,
        translated,
        1,
        5,
        false,
        json!({"notes": NOTES_EN, "translations": {"es": {"notes": NOTES_ES}}}),
    )
    .await;
    mk_lesson(
        &app,
        untranslated,
        1,
        0,
        false,
        json!({"notes": "## TLDR\nHips over feet.", "translations": {"fr": {"title": "x"}}}),
    )
    .await;
    mk_lesson(
        &app,
        without,
        1,
        0,
        false,
        json!({"notes": "Just notes.\n## Details\nx"}),
    )
    .await;
    // A later lesson's section does not stand in for the first one's.
    mk_lesson(
        &app,
        without,
        1,
        1,
        false,
        json!({"notes": "## TL;DR\nLater."}),
    )
    .await;

    for who in [None, Some(&student), Some(&admin)] {
        let (s, tree) = get(&app, &tree_path(w, ""), who).await;
        assert_eq!(s, StatusCode::OK, "{tree}");
        assert_eq!(
            level(&tree, translated)["tldr"],
            json!("Step on **2**, open the door.")
        );
        assert_eq!(level(&tree, untranslated)["tldr"], json!("Hips over feet."));
        assert_eq!(level(&tree, without)["tldr"], Value::Null);
        assert_eq!(level(&tree, empty)["tldr"], Value::Null);
        // Only the section is exposed.
        assert!(!tree.to_string().contains("Premium detail"), "{tree}");
        assert!(!tree.to_string().contains("Intro."), "{tree}");
    }
    // ?locale=en is the default.
    let (_, en_tag, en) = get_tagged(&app, &tree_path(w, ""), None, None).await;
    let (_, _, explicit) = get_tagged(&app, &tree_path(w, "?locale=en"), None, None).await;
    assert_eq!(en, explicit);

    // Spanish: the translation's section; no translation falls back to notes.
    let (s, es_tag, es) = get_tagged(&app, &tree_path(w, "?locale=es"), None, None).await;
    assert_eq!(s, StatusCode::OK, "{es}");
    assert_eq!(level(&es, translated)["tldr"], json!("Pisa en el **2**."));
    assert_eq!(level(&es, untranslated)["tldr"], json!("Hips over feet."));
    assert_eq!(level(&es, without)["tldr"], Value::Null);
    assert!(!es.to_string().contains("Detalle premium"), "{es}");
    assert_ne!(en_tag, es_tag, "the locale is part of the validator");
    // French has no translation anywhere: English throughout.
    let (_, fr) = get(&app, &tree_path(w, "?locale=fr"), None).await;
    assert_eq!(
        level(&fr, translated)["tldr"],
        json!("Step on **2**, open the door.")
    );

    // An edit of the first lesson's notes shows up at once, also past a
    // validator the caller holds.
    let (s, body) = call(
        &app,
        Method::PUT,
        &format!("/api/admin/lessons/{first}"),
        Some(&admin),
        Some(
            json!({"content_json": {"notes": "## TL;DR\nLead with the frame.",
                                     "translations": {"es": {"notes": NOTES_ES}}}}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, _, after) = get_tagged(&app, &tree_path(w, ""), None, en_tag.as_deref()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        level(&after, translated)["tldr"],
        json!("Lead with the frame.")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_worlds_have_no_tldr() {
    let app = TestApp::spawn_api_only().await;
    for course_type in ["course", "choreo"] {
        let w = mk_world(&app, &format!("not-topic-{course_type}"), true, course_type).await;
        let l = mk_level(&app, w, 0).await;
        mk_lesson(
            &app,
            l,
            1,
            0,
            false,
            json!({"notes": NOTES_EN, "translations": {"es": {"notes": NOTES_ES}}}),
        )
        .await;
        for query in ["", "?locale=es"] {
            let (s, tree) = get(&app, &tree_path(w, query), None).await;
            assert_eq!(s, StatusCode::OK, "{tree}");
            let node = level(&tree, l);
            assert!(node.as_object().unwrap().contains_key("tldr"), "{node}");
            assert_eq!(node["tldr"], Value::Null, "{course_type}{query}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locale_outside_the_pattern_is_a_422_list() {
    let app = TestApp::spawn_api_only().await;
    let w = mk_world(&app, "topic-422", true, "topic").await;
    for bad in ["EN1", "EN", "e", "esp", ""] {
        let (s, body) = get(&app, &tree_path(w, &format!("?locale={bad}")), None).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}: {body}");
        assert_eq!(
            body,
            json!({"detail": [{
                "type": "string_pattern_mismatch",
                "loc": ["query", "locale"],
                "msg": "String should match pattern '^[a-z]{2}$'",
                "input": bad,
                "ctx": {"pattern": "^[a-z]{2}$"},
            }]}),
            "{bad:?}"
        );
    }
    // Checked before the world is looked up.
    let (s, _) = get(&app, &tree_path(Uuid::new_v4(), "?locale=EN1"), None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_skill_tree_is_three_statements_whatever_its_size() {
    let app = TestApp::spawn_api_only().await;
    let pro = app.pro_student().await;
    let mut worlds = vec![];
    for (n, levels) in [(0, 2), (1, 12)] {
        let w = mk_world(&app, &format!("topic-size-{n}"), false, "topic").await;
        for i in 0..levels {
            let l = mk_level(&app, w, i).await;
            for j in 0..3 {
                mk_lesson(
                    &app,
                    l,
                    1,
                    j,
                    j == 2,
                    json!({"notes": format!("## TL;DR\nLevel {i} lesson {j}."),
                           "translations": {"es": {"notes": format!("## TL;DR\nNivel {i}.")}}}),
                )
                .await;
            }
        }
        worlds.push((w, levels));
    }
    // A pool of our own with statement logging on (the app's pool has it off).
    let opts = sqlx::postgres::PgConnectOptions::from_str(&app.db.url).unwrap();
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(opts)
        .await
        .unwrap();
    sqlx::query("SELECT 1").execute(&db).await.unwrap();
    let viewer = Viewer {
        id: pro.id,
        role: "student".into(),
    };
    let es = Locale::parse(Some("es")).unwrap();
    let mut counts = vec![];
    for (w, levels) in worlds {
        for v in [None, Some(&viewer)] {
            let (tree, c) = count_statements(courses::skill_tree_in(&db, v, w, &es)).await;
            let tree = tree.unwrap();
            assert_eq!(tree.levels.len(), levels as usize);
            for (i, node) in tree.levels.iter().enumerate() {
                assert_eq!(node.tldr.as_deref(), Some(format!("Nivel {i}.").as_str()));
                assert_eq!(node.total_lesson_count, 3);
            }
            counts.push(c);
        }
    }
    assert!(counts.iter().all(|&c| c == 3), "{counts:?}");
    db.close().await;
}
