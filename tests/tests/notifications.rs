//! Notifications (API-NEXT.md N1): every trigger creates exactly its
//! notification and none for the actor; the bell's list, counts, reading and
//! preferences.

use mambo_tests::{StatusCode, TestApp, TestUser, UserSpec, json};
use serde_json::{Value, json};
use uuid::Uuid;

async fn rich(app: &TestApp) -> TestUser {
    app.create_user(UserSpec {
        claves: 100,
        ..Default::default()
    })
    .await
}

async fn send(
    app: &TestApp,
    user: &TestUser,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = app
        .client
        .request(m, app.url(path))
        .header("Authorization", user.bearer());
    if let Some(b) = body {
        req = req.json(&b);
    }
    json(req.send().await.unwrap()).await
}

async fn insert_post(app: &TestApp, owner: Uuid, post_type: &str, title: &str) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO posts (user_id, post_type, title, body, tags)
         VALUES ($1, $2, $3, 'body', '{mambo}') RETURNING id",
    )
    .bind(owner)
    .bind(post_type)
    .bind(title)
    .fetch_one(app.db())
    .await
    .unwrap()
}

async fn bell(app: &TestApp, user: &TestUser) -> Vec<Value> {
    let (s, v) = send(app, user, "GET", "/api/notifications?limit=50", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array().unwrap().clone()
}

async fn unread(app: &TestApp, user: &TestUser) -> i64 {
    let (s, v) = send(app, user, "GET", "/api/notifications/unread-count", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["unread_count"].as_i64().unwrap()
}

async fn username(app: &TestApp, id: Uuid) -> String {
    sqlx::query_scalar("SELECT username FROM user_profiles WHERE user_id = $1")
        .bind(id)
        .fetch_one(app.db())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactions_replies_and_accepts_notify_the_other_party_once() {
    let app = TestApp::spawn_api_only().await;
    let owner = rich(&app).await;
    let fan = rich(&app).await;
    let long_title = "A very long title about cross body leads on two, with styling and shines";
    let post = insert_post(&app, owner.id, "lab", long_title).await;
    let path = format!("/api/community/posts/{post}");

    // React, unreact, react again, change the type: one notification.
    for (m, body) in [
        ("POST", Some(json!({"reaction_type": "fire"}))),
        ("DELETE", None),
        ("POST", Some(json!({"reaction_type": "fire"}))),
        ("POST", Some(json!({"reaction_type": "clap"}))),
    ] {
        let (s, v) = send(&app, &fan, m, &format!("{path}/react"), body).await;
        assert!(s.is_success(), "{m}: {v}");
    }
    let items = bell(&app, &owner).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let n = &items[0];
    assert_eq!(n["type"], "reaction_received");
    assert_eq!(n["title"], "🔥 New Reaction");
    let excerpt: String = long_title.chars().take(50).collect();
    assert_eq!(n["message"], format!("reacted to your post \"{excerpt}\""));
    assert_eq!(n["reference_type"], "post");
    assert_eq!(n["reference_id"], post.to_string());
    assert_eq!(n["is_read"], false);
    assert_eq!(n["actor_id"], fan.id.to_string());
    assert_eq!(n["actor_username"], username(&app, fan.id).await);
    assert!(n.get("actor_avatar_url").is_some());
    assert!(n["created_at"].as_str().unwrap().ends_with('Z'));
    // The actor is never notified of their own action.
    assert!(bell(&app, &fan).await.is_empty());

    // A reply notifies the post owner; the owner's own reply notifies nobody.
    let (s, v) = send(
        &app,
        &fan,
        "POST",
        &format!("{path}/replies"),
        Some(json!({"content": "Keep your frame"})),
    )
    .await;
    assert!(s.is_success(), "{v}");
    let reply_id = v["reply"]["id"].as_str().unwrap().to_string();
    let (s, v) = send(
        &app,
        &owner,
        "POST",
        &format!("{path}/replies"),
        Some(json!({"content": "Thanks!"})),
    )
    .await;
    assert!(s.is_success(), "{v}");
    let items = bell(&app, &owner).await;
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["type"], "reply_received");
    assert_eq!(items[0]["title"], "💬 New Reply");
    assert_eq!(
        items[0]["message"],
        format!("replied to your post \"{excerpt}\"")
    );
    assert_eq!(items[0]["actor_id"], fan.id.to_string());
    assert!(bell(&app, &fan).await.is_empty());

    // Accepting the answer notifies its author, once.
    for _ in 0..2 {
        let (s, v) = send(
            &app,
            &owner,
            "POST",
            &format!("{path}/replies/{reply_id}/accept"),
            None,
        )
        .await;
        assert!(s.is_success(), "{v}");
    }
    let items = bell(&app, &fan).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["type"], "answer_accepted");
    assert_eq!(items[0]["title"], "✅ Answer Accepted");
    assert_eq!(
        items[0]["message"],
        format!("accepted your answer on \"{excerpt}\"")
    );
    assert_eq!(items[0]["reference_id"], post.to_string());
    assert_eq!(items[0]["actor_id"], owner.id.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn badges_grades_and_streak_bonuses_notify_the_student() {
    let app = TestApp::spawn_api_only().await;
    let student = rich(&app).await;
    let admin = app.admin().await;

    // A badge earned through the check: no actor.
    sqlx::query(
        "INSERT INTO posts (user_id, post_type, title, body, tags)
         SELECT $1, 'lab', 'Q ' || g, 'body', '{}' FROM generate_series(1, 1) g",
    )
    .bind(student.id)
    .execute(app.db())
    .await
    .unwrap();
    let (s, v) = send(&app, &student, "POST", "/api/badges/check", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let earned: Vec<String> = v["badges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["badge_name"].as_str().unwrap().to_string())
        .collect();
    assert!(!earned.is_empty(), "{v}");
    let items = bell(&app, &student).await;
    assert_eq!(items.len(), earned.len());
    for n in &items {
        assert_eq!(n["type"], "badge_earned");
        assert_eq!(n["title"], "🏆 Badge Earned");
        assert_eq!(n["reference_type"], "badge");
        assert!(n["actor_id"].is_null());
        let msg = n["message"].as_str().unwrap();
        assert!(
            earned.iter().any(|e| msg == format!("You earned {e}")),
            "{msg}"
        );
    }
    // Checking again awards and notifies nothing more.
    send(&app, &student, "POST", "/api/badges/check", None).await;
    assert_eq!(bell(&app, &student).await.len(), earned.len());

    // Grading a boss battle.
    let world: Uuid = sqlx::query_scalar(
        "INSERT INTO worlds (title, slug, order_index, difficulty, is_free, is_published)
         VALUES ('W', $1, 1, 'Beginner', true, true) RETURNING id",
    )
    .bind(format!("w-{}", Uuid::new_v4()))
    .fetch_one(app.db())
    .await
    .unwrap();
    let level: Uuid = sqlx::query_scalar(
        "INSERT INTO levels (world_id, title, order_index) VALUES ($1, 'L', 0) RETURNING id",
    )
    .bind(world)
    .fetch_one(app.db())
    .await
    .unwrap();
    let lesson: Uuid = sqlx::query_scalar(
        "INSERT INTO lessons (level_id, title, order_index, is_boss_battle)
         VALUES ($1, 'The Boss', 0, true) RETURNING id",
    )
    .bind(level)
    .fetch_one(app.db())
    .await
    .unwrap();
    let sub: Uuid = sqlx::query_scalar(
        "INSERT INTO boss_submissions (user_id, lesson_id, video_url)
         VALUES ($1, $2, 'https://video.example/x.mp4') RETURNING id",
    )
    .bind(student.id)
    .bind(lesson)
    .fetch_one(app.db())
    .await
    .unwrap();
    let (s, v) = send(
        &app,
        &admin,
        "POST",
        &format!("/api/admin/submissions/{sub}/grade"),
        Some(json!({"status": "approved", "feedback_text": "Great"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let n = &bell(&app, &student).await[0];
    assert_eq!(n["type"], "submission_graded");
    assert_eq!(n["title"], "🎬 Submission Graded");
    assert_eq!(
        n["message"],
        "Your submission for \"The Boss\" was approved"
    );
    assert_eq!(n["reference_type"], "lesson");
    assert_eq!(n["reference_id"], lesson.to_string());
    assert_eq!(n["actor_id"], admin.id.to_string());

    // A streak bonus paid by the job (and again: paid and notified once).
    let today = app.ctx.clock.today();
    for _ in 0..2 {
        mambo_core::streaks::pay_bonus(
            &app.ctx,
            &mambo_core::jobs::StreakBonusJob {
                user_id: student.id,
                date: today,
                streak: 5,
            },
        )
        .await
        .unwrap();
    }
    let items = bell(&app, &student).await;
    let streak: Vec<&Value> = items
        .iter()
        .filter(|n| n["type"] == "streak_bonus")
        .collect();
    assert_eq!(streak.len(), 1, "{items:?}");
    assert_eq!(streak[0]["title"], "🔥 Streak Bonus");
    assert!(
        streak[0]["message"]
            .as_str()
            .unwrap()
            .ends_with("claves for a 5-day streak"),
        "{}",
        streak[0]["message"]
    );
    assert!(streak[0]["reference_type"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bell_pages_counts_and_reads_only_the_callers_notifications() {
    let app = TestApp::spawn_api_only().await;
    let me = rich(&app).await;
    let other = rich(&app).await;
    let post = insert_post(&app, me.id, "stage", "My shines").await;
    // Five reactors, one notification each, in order.
    let mut reactors = vec![];
    for _ in 0..5 {
        let r = rich(&app).await;
        let (s, v) = send(
            &app,
            &r,
            "POST",
            &format!("/api/community/posts/{post}/react"),
            Some(json!({"reaction_type": "fire"})),
        )
        .await;
        assert!(s.is_success(), "{v}");
        reactors.push(r);
    }
    assert_eq!(unread(&app, &me).await, 5);
    let all = bell(&app, &me).await;
    let actors: Vec<&str> = all
        .iter()
        .map(|n| n["actor_id"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = reactors.iter().rev().map(|r| r.id.to_string()).collect();
    assert_eq!(actors, expected, "newest first");
    let (_, page) = send(&app, &me, "GET", "/api/notifications?skip=1&limit=2", None).await;
    assert_eq!(page.as_array().unwrap(), &all[1..3].to_vec());

    for bad in ["limit=0", "limit=51", "skip=-1", "limit=abc"] {
        let (s, v) = send(&app, &me, "GET", &format!("/api/notifications?{bad}"), None).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
        assert!(v["detail"].is_array(), "{v}");
    }

    // Read one; twice is fine; someone else's and malformed ids are 404.
    let first = all[0]["id"].as_str().unwrap();
    for _ in 0..2 {
        let (s, v) = send(
            &app,
            &me,
            "POST",
            &format!("/api/notifications/{first}/read"),
            None,
        )
        .await;
        assert_eq!((s, v), (StatusCode::OK, json!({"success": true})));
    }
    assert_eq!(unread(&app, &me).await, 4);
    for id in [
        first.to_string(),
        Uuid::new_v4().to_string(),
        "not-an-id".into(),
    ] {
        let (s, v) = send(
            &app,
            &other,
            "POST",
            &format!("/api/notifications/{id}/read"),
            None,
        )
        .await;
        assert_eq!(
            (s, v),
            (
                StatusCode::NOT_FOUND,
                json!({"detail": "Notification not found"})
            ),
            "{id}"
        );
    }
    let (_, unread_page) = send(
        &app,
        &me,
        "GET",
        "/api/notifications?unread_only=true",
        None,
    )
    .await;
    assert_eq!(unread_page.as_array().unwrap().len(), 4);
    assert!(
        unread_page
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["is_read"] == false)
    );

    let (s, v) = send(&app, &me, "POST", "/api/notifications/read-all", None).await;
    assert_eq!(
        (s, v),
        (StatusCode::OK, json!({"success": true, "count": 4}))
    );
    assert_eq!(unread(&app, &me).await, 0);
    let (_, v) = send(&app, &me, "POST", "/api/notifications/read-all", None).await;
    assert_eq!(v, json!({"success": true, "count": 0}));
    // The other user saw nothing of it.
    assert!(bell(&app, &other).await.is_empty());
    let resp = app.get("/api/notifications").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferences_default_merge_validate_and_silence_a_type() {
    let app = TestApp::spawn_api_only().await;
    let me = rich(&app).await;
    let fan = rich(&app).await;
    let path = "/api/notifications/preferences";
    let (s, v) = send(&app, &me, "GET", path, None).await;
    assert_eq!(s, StatusCode::OK);
    let all_on = json!({
        "reaction_received": true, "reply_received": true, "answer_accepted": true,
        "badge_earned": true, "submission_graded": true, "streak_bonus": true,
        "course_published": true, "subscription": true
    });
    assert_eq!(v, json!({"in_app": all_on, "email_digest": "daily"}));

    // One type off: only that type changes.
    let (s, v) = send(
        &app,
        &me,
        "PUT",
        path,
        Some(json!({"in_app": {"reaction_received": false}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut expected = all_on.clone();
    expected["reaction_received"] = json!(false);
    assert_eq!(v, json!({"in_app": expected, "email_digest": "daily"}));
    // The digest alone: the in_app map is kept.
    let (_, v) = send(
        &app,
        &me,
        "PUT",
        path,
        Some(json!({"email_digest": "weekly"})),
    )
    .await;
    assert_eq!(v, json!({"in_app": expected, "email_digest": "weekly"}));
    let (_, v) = send(&app, &me, "GET", path, None).await;
    assert_eq!(v, json!({"in_app": expected, "email_digest": "weekly"}));

    for bad in [
        json!({"in_app": {"not_a_type": true}}),
        json!({"in_app": {"reaction_received": "yes"}}),
        json!({"email_digest": "hourly"}),
        json!({"sms": true}),
    ] {
        let (s, v) = send(&app, &me, "PUT", path, Some(bad.clone())).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
        assert!(v["detail"].is_array(), "{v}");
    }
    let (_, v) = send(&app, &me, "GET", path, None).await;
    assert_eq!(
        v["email_digest"], "weekly",
        "a refused update changes nothing"
    );

    // A type turned off is not created; the others still are.
    let post = insert_post(&app, me.id, "lab", "Silence").await;
    let (s, _) = send(
        &app,
        &fan,
        "POST",
        &format!("/api/community/posts/{post}/react"),
        Some(json!({"reaction_type": "fire"})),
    )
    .await;
    assert!(s.is_success());
    let (s, _) = send(
        &app,
        &fan,
        "POST",
        &format!("/api/community/posts/{post}/replies"),
        Some(json!({"content": "Hi"})),
    )
    .await;
    assert!(s.is_success());
    let types: Vec<String> = bell(&app, &me)
        .await
        .iter()
        .map(|n| n["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(types, ["reply_received"]);
}
