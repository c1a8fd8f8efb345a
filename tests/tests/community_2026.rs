//! The May 2026 community (API-2026-05.md N5.4): the `like` reaction, the
//! Stage's `video_type`, the feed's new filters and anonymous preview, search
//! by author username, `is_saved`, and the richer PostUser.

use mambo_tests::{StatusCode, TestApp, TestUser, UserSpec, json};
use serde_json::{Value, json};
use uuid::Uuid;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

async fn user_with(app: &TestApp, claves: i64) -> TestUser {
    app.create_user(UserSpec {
        claves,
        ..Default::default()
    })
    .await
}

async fn call(
    app: &TestApp,
    user: Option<&TestUser>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    app.call(method, path, user, body).await
}

/// A POST without any body (no content type either), as `fetch` sends one.
async fn post_empty(app: &TestApp, user: &TestUser, path: &str) -> (StatusCode, Value) {
    json(
        app.post(path)
            .header("Authorization", user.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Inserts a post directly (setup that must not touch balances); `age`
/// seconds old, so the feed's order is known.
async fn insert_post(
    app: &TestApp,
    owner: Uuid,
    post_type: &str,
    title: &str,
    tags: &[&str],
    video_type: Option<&str>,
    age: i64,
) -> Uuid {
    let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    sqlx::query_scalar(
        "INSERT INTO posts (user_id, post_type, title, body, tags, video_type, created_at, updated_at)
         VALUES ($1, $2, $3, 'body', $4::text[]::varchar(50)[], $5,
                 now() - make_interval(secs => $6), now() - make_interval(secs => $6))
         RETURNING id",
    )
    .bind(owner)
    .bind(post_type)
    .bind(title)
    .bind(&tags)
    .bind(video_type)
    .bind(age as f64)
    .fetch_one(app.db())
    .await
    .unwrap()
}

async fn balance(app: &TestApp, id: Uuid) -> i64 {
    let (b, l) = app.balance_and_ledger(id).await;
    assert_eq!(b, l, "balance must equal the ledger sum");
    b
}

fn titles(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|p| p["title"].as_str().unwrap().to_string())
        .collect()
}

async fn outbox_stats(app: &TestApp, user: Uuid) -> Vec<String> {
    let rows: Vec<Value> = sqlx::query_scalar(
        "SELECT payload FROM job_outbox WHERE queue = 'badge_check' ORDER BY created_at, id",
    )
    .fetch_all(app.db())
    .await
    .unwrap();
    rows.iter()
        .filter(|p| p["user_id"] == json!(user.to_string()))
        .map(|p| p["stat"].as_str().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------------------
// React: `like`
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_a_type_is_a_like_and_shows_the_callers_state() {
    let app = TestApp::spawn_api_only().await;
    let owner = user_with(&app, 0).await;
    let fan = user_with(&app, 5).await;
    let post = insert_post(&app, owner.id, "stage", "Watch", &["mambo"], None, 0).await;
    let path = format!("/api/community/posts/{post}/react");

    // No body at all.
    let (s, v) = post_empty(&app, &fan, &path).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({"success": true, "message": "Reacted with like! (-1 🥢)",
               "user_reaction": "like", "reaction_count": 1})
    );
    assert_eq!(balance(&app, fan.id).await, 4);
    assert_eq!(balance(&app, owner.id).await, 1, "the owner's refund");
    // `{}`: the same like again.
    let (s, v) = call(&app, Some(&fan), "POST", &path, Some(json!({}))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v,
        json!({"success": true, "message": "Already reacted",
               "user_reaction": "like", "reaction_count": 1})
    );
    // Naming a type answers exactly as API.md (switching is free).
    let (s, v) = call(
        &app,
        Some(&fan),
        "POST",
        &path,
        Some(json!({"reaction_type": "fire"})),
    )
    .await;
    assert_eq!(
        (s, v),
        (
            StatusCode::OK,
            json!({"success": true, "message": "Reaction updated"})
        )
    );
    // `{reaction_type: null}`: back to a like, with the state.
    let (s, v) = call(
        &app,
        Some(&fan),
        "POST",
        &path,
        Some(json!({"reaction_type": null})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v,
        json!({"success": true, "message": "Reaction updated",
               "user_reaction": "like", "reaction_count": 1})
    );
    assert_eq!(balance(&app, fan.id).await, 4, "switching is free");
    // Named `like` is a fourth type, answered as API.md answers a named type.
    let (s, v) = call(
        &app,
        Some(&fan),
        "POST",
        &path,
        Some(json!({"reaction_type": "like"})),
    )
    .await;
    assert_eq!(
        (s, v),
        (
            StatusCode::OK,
            json!({"success": true, "message": "Already reacted"})
        )
    );
    let (_, detail) = call(
        &app,
        Some(&fan),
        "GET",
        &format!("/api/community/posts/{post}"),
        None,
    )
    .await;
    assert_eq!(detail["user_reaction"], "like");
    assert_eq!(detail["reaction_count"], 1);

    // A second fan: the count after the call is the post's.
    let fan2 = user_with(&app, 1).await;
    let (_, v) = post_empty(&app, &fan2, &path).await;
    assert_eq!(v["reaction_count"], 2);
    assert_eq!(v["user_reaction"], "like");

    // Own post, and too few claves: the usual refusals.
    let (s, v) = post_empty(&app, &owner, &path).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        v["detail"],
        json!({"success": false, "message": "You cannot react to your own posts"})
    );
    let broke = user_with(&app, 0).await;
    let (s, v) = post_empty(&app, &broke, &path).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        v["detail"],
        json!({"success": false, "message": "Insufficient claves. You need 1 🥢",
               "required": 1, "balance": 0})
    );
    // A bad type is still the 422 list, now with four choices; a bad body too.
    let (s, v) = call(
        &app,
        Some(&fan),
        "POST",
        &path,
        Some(json!({"reaction_type": "love"})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        v["detail"][0]["msg"],
        "Input should be 'fire', 'ruler', 'clap' or 'like'"
    );
    assert_eq!(v["detail"][0]["loc"], json!(["body", "reaction_type"]));
    let (s, _) = call(
        &app,
        Some(&fan),
        "POST",
        &path,
        Some(json!({"reaction_type": 5})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .post(&path)
        .header("Authorization", fan.bearer())
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM post_reactions WHERE post_id = $1")
        .bind(post)
        .fetch_one(app.db())
        .await
        .unwrap();
    assert_eq!(rows, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn likes_count_as_reactions_but_not_for_the_fire_clap_ruler_families() {
    let app = TestApp::spawn_api_only().await;
    let owner = user_with(&app, 0).await;
    let post = insert_post(&app, owner.id, "stage", "Likes", &["mambo"], None, 0).await;
    let path = format!("/api/community/posts/{post}/react");
    let mut fans = vec![];
    // Ten likes: as many fires would earn Firestarter (bronze, 10).
    for _ in 0..10 {
        let fan = user_with(&app, 1).await;
        let (s, v) = post_empty(&app, &fan, &path).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        fans.push(fan);
    }
    let (s, stats) = call(
        &app,
        None,
        "GET",
        &format!("/api/badges/stats/{}", owner.id),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(stats["reactions_received"], 10);
    assert_eq!(stats["fires_received"], 0);
    assert_eq!(stats["claps_received"], 0);
    assert_eq!(stats["metronomes_received"], 0);
    let (_, given) = call(
        &app,
        None,
        "GET",
        &format!("/api/badges/stats/{}", fans[0].id),
        None,
    )
    .await;
    assert_eq!(given["reactions_given"], 1);
    // The owner's badge checks are for the received count, never a family.
    let queued = outbox_stats(&app, owner.id).await;
    assert_eq!(queued.len(), 10);
    assert!(
        queued.iter().all(|s| s == "reactions_received"),
        "{queued:?}"
    );
    assert_eq!(
        outbox_stats(&app, fans[0].id).await,
        vec!["reactions_given"]
    );
    // Recomputing every requirement awards no family badge.
    let (s, v) = call(&app, Some(&owner), "POST", "/api/badges/check", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let earned: Vec<String> = v["badges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["badge_id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !earned.iter().any(|b| b.starts_with("firestarter")
            || b.starts_with("crowd_favorite")
            || b.starts_with("human_metronome")),
        "{earned:?}"
    );
    // A fire still feeds its family.
    let (_, v) = call(
        &app,
        Some(&fans[0]),
        "POST",
        &path,
        Some(json!({"reaction_type": "fire"})),
    )
    .await;
    assert_eq!(v["message"], "Reaction updated");
    let (_, stats) = call(
        &app,
        None,
        "GET",
        &format!("/api/badges/stats/{}", owner.id),
        None,
    )
    .await;
    assert_eq!(stats["fires_received"], 1);
    assert_eq!(stats["reactions_received"], 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_likes_by_one_fan_charge_once() {
    let app = TestApp::spawn_api_only().await;
    let owner = user_with(&app, 0).await;
    let fan = user_with(&app, 10).await;
    let post = insert_post(&app, owner.id, "stage", "Busy", &["mambo"], None, 0).await;
    let path = format!("/api/community/posts/{post}/react");
    let calls = (0..12).map(|i| {
        let app = &app;
        let fan = &fan;
        let path = path.clone();
        async move {
            if i % 2 == 0 {
                post_empty(app, fan, &path).await
            } else {
                call(app, Some(fan), "POST", &path, Some(json!({}))).await
            }
        }
    });
    let results = futures::future::join_all(calls).await;
    let mut new = 0;
    for (s, v) in &results {
        assert_eq!(*s, StatusCode::OK, "{v}");
        assert_eq!(v["user_reaction"], "like");
        assert_eq!(v["reaction_count"], 1);
        if v["message"] == "Reacted with like! (-1 🥢)" {
            new += 1;
        } else {
            assert_eq!(v["message"], "Already reacted");
        }
    }
    assert_eq!(new, 1);
    assert_eq!(balance(&app, fan.id).await, 9);
    assert_eq!(balance(&app, owner.id).await, 1);
}

// ---------------------------------------------------------------------------
// Stage video_type
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_video_type_is_validated_stored_and_required_by_setting() {
    let app = TestApp::spawn_api_only().await;
    let admin = app.admin().await;
    let u = user_with(&app, 100).await;
    let stage = |title: &str, vt: Value| {
        let mut b = json!({"post_type": "stage", "title": title, "tags": ["mambo"]});
        if !vt.is_null() || title.contains("null") {
            b["video_type"] = vt;
        }
        b
    };
    // Outside the enum: the 422 list, nothing charged.
    let (s, v) = call(
        &app,
        Some(&u),
        "POST",
        "/api/community/posts",
        Some(stage("Vlog", json!("vlog"))),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["detail"][0]["loc"], json!(["body", "video_type"]));
    assert_eq!(
        v["detail"][0]["msg"],
        "Input should be 'motw', 'original' or 'guild'"
    );
    assert_eq!(balance(&app, u.id).await, 100);

    // Stored and shown; null and absent are allowed while not required.
    let (s, v) = call(
        &app,
        Some(&u),
        "POST",
        "/api/community/posts",
        Some(stage("Guild piece", json!("guild"))),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["post"]["video_type"], "guild");
    let guild_id = v["post"]["id"].as_str().unwrap().to_string();
    let (s, v) = call(
        &app,
        Some(&u),
        "POST",
        "/api/community/posts",
        Some(stage("Plain null", Value::Null)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["post"]["video_type"], Value::Null);
    // Lab posts store null whatever they send (a valid value).
    let (s, v) = call(
        &app,
        Some(&u),
        "POST",
        "/api/community/posts",
        Some(
            json!({"post_type": "lab", "title": "How?", "body": "How do I turn?",
                    "tags": ["timing"], "video_type": "motw"}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["post"]["video_type"], Value::Null);
    // Not editable: an edit that sends it changes nothing of it.
    let (s, v) = call(
        &app,
        Some(&u),
        "PUT",
        &format!("/api/community/posts/{guild_id}"),
        Some(json!({"title": "Guild piece 2", "video_type": "motw"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["post"]["video_type"], "guild");
    assert_eq!(v["post"]["title"], "Guild piece 2");

    // Required: a stage post without it is refused after the tags, before
    // the slots, and nothing is charged.
    app.set_settings(&admin, json!({"community": {"video_type_required": true}}))
        .await;
    let count_posts = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM posts WHERE user_id = $1")
            .bind(u.id)
            .fetch_one(app.db())
            .await
            .unwrap()
    };
    let posts_before = count_posts().await;
    let before = balance(&app, u.id).await;
    for body in [
        stage("No type", Value::Null),
        stage("Null type null", Value::Null),
    ] {
        let (s, v) = call(&app, Some(&u), "POST", "/api/community/posts", Some(body)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            v["detail"],
            json!({"success": false,
                   "message": "video_type is required for Stage posts (motw, original, or guild)"})
        );
    }
    // The tags come first.
    let (s, v) = call(
        &app,
        Some(&u),
        "POST",
        "/api/community/posts",
        Some(json!({"post_type": "stage", "title": "Bad tags", "tags": ["nope"]})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        v["detail"]["message"],
        "At least one valid tag is required. Invalid tags provided."
    );
    // Before the slots: a user with no slot left hears about the video type.
    let full = user_with(&app, 100).await;
    for i in 0..50 {
        let (_, slots) = call(
            &app,
            Some(&full),
            "GET",
            "/api/community/upload-check",
            None,
        )
        .await;
        if slots["allowed"] == false {
            break;
        }
        let id = insert_post(&app, full.id, "stage", "Old", &["mambo"], None, 100 + i).await;
        sqlx::query("UPDATE posts SET mux_asset_id = $2 WHERE id = $1")
            .bind(id)
            .bind(format!("asset-{}", Uuid::new_v4()))
            .execute(app.db())
            .await
            .unwrap();
    }
    let (_, slots) = call(
        &app,
        Some(&full),
        "GET",
        "/api/community/upload-check",
        None,
    )
    .await;
    assert_eq!(slots["allowed"], false, "{slots}");
    let (s, v) = call(
        &app,
        Some(&full),
        "POST",
        "/api/community/posts",
        Some(stage("No slot", Value::Null)),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        v["detail"]["message"],
        "video_type is required for Stage posts (motw, original, or guild)"
    );
    // With a type, the slot check speaks.
    let (s, v) = call(
        &app,
        Some(&full),
        "POST",
        "/api/community/posts",
        Some(stage("No slot", json!("motw"))),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["detail"]["message"], slots["message"]);
    assert_eq!(balance(&app, u.id).await, before);
    assert_eq!(balance(&app, full.id).await, 100);
    assert_eq!(count_posts().await, posts_before);
    // With a type it passes; lab posts need none.
    let (s, v) = call(
        &app,
        Some(&u),
        "POST",
        "/api/community/posts",
        Some(stage("Motw", json!("motw"))),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["post"]["video_type"], "motw");
    assert_eq!(balance(&app, u.id).await, before - 15);
    let (s, v) = call(
        &app,
        Some(&u),
        "POST",
        "/api/community/posts",
        Some(
            json!({"post_type": "lab", "title": "Why?", "body": "Why this step?",
                    "tags": ["timing"]}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

// ---------------------------------------------------------------------------
// Feed filters
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_filters_by_video_type_and_any_of_several_tags() {
    let app = TestApp::spawn_api_only().await;
    let a = app.student().await;
    let v = app.student().await;
    insert_post(
        &app,
        a.id,
        "stage",
        "motw-mambo",
        &["mambo"],
        Some("motw"),
        50,
    )
    .await;
    insert_post(
        &app,
        a.id,
        "stage",
        "orig-styling",
        &["styling"],
        Some("original"),
        40,
    )
    .await;
    insert_post(
        &app,
        a.id,
        "stage",
        "guild-drills",
        &["drills"],
        Some("guild"),
        30,
    )
    .await;
    insert_post(&app, a.id, "lab", "lab-timing", &["timing"], None, 20).await;
    insert_post(
        &app,
        a.id,
        "stage",
        "motw-timing",
        &["timing", "mambo"],
        Some("motw"),
        10,
    )
    .await;

    let get = |q: &'static str| {
        let app = &app;
        let v = &v;
        async move {
            call(
                app,
                Some(v),
                "GET",
                &format!("/api/community/feed{q}"),
                None,
            )
            .await
        }
    };
    let (s, f) = get("?video_type=motw").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(titles(&f), vec!["motw-timing", "motw-mambo"]);
    assert_eq!(f[0]["video_type"], "motw");
    let (_, f) = get("?tags=styling,drills").await;
    assert_eq!(titles(&f), vec!["guild-drills", "orig-styling"]);
    // Any of the tags (a post with both shows once), united with `tag`.
    let (_, f) = get("?tags=timing,mambo").await;
    assert_eq!(titles(&f), vec!["motw-timing", "lab-timing", "motw-mambo"]);
    let (_, f) = get("?tag=drills&tags=styling").await;
    assert_eq!(titles(&f), vec!["guild-drills", "orig-styling"]);
    let (_, f) = get("?tags=timing&video_type=motw&post_type=stage").await;
    assert_eq!(titles(&f), vec!["motw-timing"]);
    let (_, f) = get("?tags=timing&post_type=lab&limit=1").await;
    assert_eq!(titles(&f), vec!["lab-timing"]);
    let (_, f) = get("?tags=,").await;
    assert_eq!(f.as_array().unwrap().len(), 5);
    // The same pages again (served from the cache) are the same.
    let (_, f) = get("?tags=timing,mambo").await;
    assert_eq!(titles(&f), vec!["motw-timing", "lab-timing", "motw-mambo"]);
    let (_, f) = get("?video_type=guild").await;
    assert_eq!(titles(&f), vec!["guild-drills"]);

    // 422s.
    let (s, e) = get("?video_type=vlog").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["detail"][0]["loc"], json!(["query", "video_type"]));
    let (s, e) = get("?tags=a,b,c,d,e,f,g,h,i,j,k").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["detail"][0]["loc"], json!(["query", "tags"]));
    assert_eq!(e["detail"][0]["type"], "too_long");
    let (s, _) = get("?tags=a,b,c,d,e,f,g,h,i,j").await;
    assert_eq!(s, StatusCode::OK);
}

// ---------------------------------------------------------------------------
// The anonymous preview
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_callers_see_only_the_newest_posts_of_the_filtered_feed() {
    let app = TestApp::spawn_api_only().await;
    let admin = app.admin().await;
    let a = app.student().await;
    let fan = user_with(&app, 10).await;
    let mut ids = vec![];
    for (i, (t, kind)) in [
        ("p1", "stage"),
        ("p2", "lab"),
        ("p3", "stage"),
        ("p4", "stage"),
        ("p5", "lab"),
        ("p6", "stage"),
    ]
    .iter()
    .enumerate()
    {
        // p6 newest.
        ids.push(insert_post(&app, a.id, kind, t, &["mambo"], None, 100 - i as i64).await);
    }
    // A hidden post, newest of all: excluded for anonymous callers.
    let hidden = insert_post(&app, a.id, "stage", "hidden", &["mambo"], None, 0).await;
    sqlx::query("UPDATE posts SET is_hidden = true WHERE id = $1")
        .bind(hidden)
        .execute(app.db())
        .await
        .unwrap();
    // The fan reacted to and saved p6: anonymous callers see neither.
    let p6 = ids[5];
    let (s, _) = post_empty(&app, &fan, &format!("/api/community/posts/{p6}/react")).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(
        &app,
        Some(&fan),
        "POST",
        &format!("/api/community/posts/{p6}/save"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);

    let anon = |q: &'static str| {
        let app = &app;
        async move { call(app, None, "GET", &format!("/api/community/feed{q}"), None).await }
    };
    let (s, f) = anon("").await;
    assert_eq!(s, StatusCode::OK, "{f}");
    assert_eq!(titles(&f), vec!["p6", "p5", "p4"]);
    assert_eq!(f[0]["user_reaction"], Value::Null);
    assert_eq!(f[0]["is_saved"], false);
    assert_eq!(f[0]["reaction_count"], 1);
    // The window is cut at the preview's end.
    let (_, f) = anon("?skip=1").await;
    assert_eq!(titles(&f), vec!["p5", "p4"]);
    let (_, f) = anon("?skip=2&limit=5").await;
    assert_eq!(titles(&f), vec!["p4"]);
    let (_, f) = anon("?limit=2").await;
    assert_eq!(titles(&f), vec!["p6", "p5"]);
    let (s, f) = anon("?skip=3").await;
    assert_eq!((s, f), (StatusCode::OK, json!([])));
    let (_, f) = anon("?skip=40&limit=50").await;
    assert_eq!(f, json!([]));
    // Of the filtered feed.
    let (_, f) = anon("?post_type=stage").await;
    assert_eq!(titles(&f), vec!["p6", "p4", "p3"]);
    let (_, f) = anon("?post_type=lab&skip=1").await;
    assert_eq!(titles(&f), vec!["p2"]);
    // skip/limit are validated as usual.
    let (s, _) = anon("?skip=-1").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = anon("?limit=0").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = anon("?limit=51").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = anon("?video_type=vlog").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // An invalid token is anonymous.
    let r = app
        .get("/api/community/feed")
        .header("Authorization", "Bearer not-a-token")
        .send()
        .await
        .unwrap();
    let (s, f) = json(r).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(titles(&f), vec!["p6", "p5", "p4"]);
    // A signed-in caller pages through everything, with their state.
    let (_, f) = call(&app, Some(&fan), "GET", "/api/community/feed?skip=3", None).await;
    assert_eq!(titles(&f), vec!["p3", "p2", "p1"]);
    let (_, f) = call(&app, Some(&fan), "GET", "/api/community/feed", None).await;
    assert_eq!(f[0]["title"], "p6");
    assert_eq!(f[0]["user_reaction"], "like");
    assert_eq!(f[0]["is_saved"], true);
    // The author sees the hidden post; an anonymous caller still does not.
    let (_, f) = call(&app, Some(&a), "GET", "/api/community/feed", None).await;
    assert_eq!(f[0]["title"], "hidden");
    let (_, f) = anon("").await;
    assert_eq!(titles(&f), vec!["p6", "p5", "p4"]);

    // The setting.
    app.set_settings(&admin, json!({"community": {"anonymous_feed_preview": 1}}))
        .await;
    let (_, f) = anon("").await;
    assert_eq!(titles(&f), vec!["p6"]);
    let (_, f) = anon("?skip=1").await;
    assert_eq!(f, json!([]));
    app.set_settings(&admin, json!({"community": {"anonymous_feed_preview": 0}}))
        .await;
    let (s, v) = anon("").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v, json!({"detail": "Could not validate credentials"}));
    let (s, _) = call(&app, Some(&fan), "GET", "/api/community/feed", None).await;
    assert_eq!(s, StatusCode::OK);
}

// ---------------------------------------------------------------------------
// Search
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_matches_the_author_username_literally_and_takes_the_feed_filters() {
    let app = TestApp::spawn_api_only().await;
    let pct = app
        .create_user(UserSpec {
            username: Some("sal%sa_queen".into()),
            ..Default::default()
        })
        .await;
    let other = app
        .create_user(UserSpec {
            username: Some("salxxsaxqueen".into()),
            ..Default::default()
        })
        .await;
    let viewer = app.student().await;
    insert_post(
        &app,
        pct.id,
        "stage",
        "First dance",
        &["mambo"],
        Some("motw"),
        30,
    )
    .await;
    insert_post(&app, pct.id, "lab", "A question", &["timing"], None, 20).await;
    insert_post(
        &app,
        other.id,
        "stage",
        "Second dance",
        &["mambo"],
        Some("original"),
        10,
    )
    .await;
    let search = |q: &str| {
        let app = &app;
        let viewer = &viewer;
        let path = format!("/api/community/search?q={q}");
        async move { call(app, Some(viewer), "GET", &path, None).await }
    };
    // Case-insensitive substring of the username; `%` and `_` are literal.
    let (s, f) = search("L%25SA_Q").await;
    assert_eq!(s, StatusCode::OK, "{f}");
    assert_eq!(titles(&f), vec!["A question", "First dance"]);
    assert_eq!(f[0]["user"]["username"], "sal%sa_queen");
    let (_, f) = search("xxsax").await;
    assert_eq!(titles(&f), vec!["Second dance"]);
    let (_, f) = search("queen").await;
    assert_eq!(
        titles(&f),
        vec!["Second dance", "A question", "First dance"]
    );
    // The feed's filters.
    let (_, f) = search("queen&video_type=motw").await;
    assert_eq!(titles(&f), vec!["First dance"]);
    let (_, f) = search("queen&tags=timing,styling").await;
    assert_eq!(titles(&f), vec!["A question"]);
    let (_, f) = search("queen&tag=mambo&post_type=stage").await;
    assert_eq!(titles(&f), vec!["Second dance", "First dance"]);
    let (s, _) = search("queen&video_type=vlog").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = search("queen&tags=a,b,c,d,e,f,g,h,i,j,k").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // Title search still works.
    let (_, f) = search("dance").await;
    assert_eq!(titles(&f), vec!["Second dance", "First dance"]);
}

// ---------------------------------------------------------------------------
// is_saved and PostUser
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn is_saved_is_the_callers_everywhere() {
    let app = TestApp::spawn_api_only().await;
    let a = app.student().await;
    let saver = app.student().await;
    let other = app.student().await;
    let post = insert_post(&app, a.id, "stage", "Keep me", &["mambo"], None, 0).await;
    let (s, _) = call(
        &app,
        Some(&saver),
        "POST",
        &format!("/api/community/posts/{post}/save"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    for (who, expect) in [(&saver, true), (&other, false)] {
        let (_, f) = call(&app, Some(who), "GET", "/api/community/feed", None).await;
        assert_eq!(f[0]["is_saved"], expect);
        let (_, d) = call(
            &app,
            Some(who),
            "GET",
            &format!("/api/community/posts/{post}"),
            None,
        )
        .await;
        assert_eq!(d["is_saved"], expect);
        let (_, f) = call(&app, Some(who), "GET", "/api/community/search?q=keep", None).await;
        assert_eq!(f[0]["is_saved"], expect);
    }
    let (_, f) = call(&app, Some(&saver), "GET", "/api/community/saved", None).await;
    assert_eq!(f[0]["is_saved"], true);
    let (_, f) = call(&app, None, "GET", "/api/community/feed", None).await;
    assert_eq!(f[0]["is_saved"], false);
    call(
        &app,
        Some(&saver),
        "DELETE",
        &format!("/api/community/posts/{post}/save"),
        None,
    )
    .await;
    let (_, f) = call(&app, Some(&saver), "GET", "/api/community/feed", None).await;
    assert_eq!(f[0]["is_saved"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_users_carry_username_cosmetics_and_the_guild_master_rule() {
    let app = TestApp::spawn_api_only().await;
    let admin = app.admin().await;
    let trial_gm = app
        .create_user(UserSpec {
            subscription: Some(("trialing", "performer")),
            username: Some("trial_gm".into()),
            claves: 100,
            ..Default::default()
        })
        .await;
    let gm = app
        .create_user(UserSpec {
            subscription: Some(("active", "performer")),
            username: Some("real_gm".into()),
            claves: 100,
            ..Default::default()
        })
        .await;
    let advanced = app
        .create_user(UserSpec {
            subscription: Some(("active", "advanced")),
            username: Some("adv".into()),
            claves: 100,
            ..Default::default()
        })
        .await;
    sqlx::query(
        "UPDATE user_profiles SET equipped_border_sku = 'border_gold', equipped_title_sku = 'title_maestro'
         WHERE user_id = $1",
    )
    .bind(trial_gm.id)
    .execute(app.db())
    .await
    .unwrap();
    let post = insert_post(
        &app,
        trial_gm.id,
        "lab",
        "Trial question",
        &["timing"],
        None,
        10,
    )
    .await;
    insert_post(&app, gm.id, "stage", "GM post", &["mambo"], None, 5).await;
    for u in [&gm, &advanced] {
        let (s, v) = call(
            &app,
            Some(u),
            "POST",
            &format!("/api/community/posts/{post}/replies"),
            Some(json!({"content": "An answer"})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    // A report, so the moderation queue lists the trialing GM as reporter.
    let gm_post: Uuid = sqlx::query_scalar("SELECT id FROM posts WHERE user_id = $1")
        .bind(gm.id)
        .fetch_one(app.db())
        .await
        .unwrap();
    let (s, v) = call(
        &app,
        Some(&trial_gm),
        "POST",
        &format!("/api/community/posts/{gm_post}/report"),
        Some(json!({"reason": "spam"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    let tgid = json!(trial_gm.id.to_string());
    let check = |includes_trialing: bool| {
        let tgid = tgid.clone();
        let app = &app;
        let admin = &admin;
        let advanced = &advanced;
        async move {
            let (_, feed) = call(app, Some(advanced), "GET", "/api/community/feed", None).await;
            let by_title = |t: &str| {
                feed.as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["title"] == t)
                    .unwrap()
                    .clone()
            };
            let trial = by_title("Trial question");
            assert_eq!(
                trial["user"],
                json!({"id": tgid, "first_name": trial["user"]["first_name"],
                       "last_name": trial["user"]["last_name"], "avatar_url": null,
                       "is_pro": true, "level": trial["user"]["level"],
                       "username": "trial_gm", "is_guild_master": includes_trialing,
                       "equipped_border_sku": "border_gold",
                       "equipped_title_sku": "title_maestro"})
            );
            let gm_item = by_title("GM post");
            assert_eq!(gm_item["user"]["is_guild_master"], true);
            assert_eq!(gm_item["user"]["username"], "real_gm");
            assert_eq!(gm_item["user"]["equipped_border_sku"], Value::Null);
            // The detail: the post's author and each reply's.
            let id = trial["id"].as_str().unwrap();
            let (_, d) = call(
                app,
                Some(advanced),
                "GET",
                &format!("/api/community/posts/{id}"),
                None,
            )
            .await;
            assert_eq!(d["user"]["is_guild_master"], includes_trialing);
            assert_eq!(d["user"]["equipped_title_sku"], "title_maestro");
            let users: Vec<(Value, Value)> = d["replies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r["user"]["username"].clone(),
                        r["user"]["is_guild_master"].clone(),
                    )
                })
                .collect();
            assert_eq!(
                users,
                vec![
                    (json!("real_gm"), json!(true)),
                    (json!("adv"), json!(false))
                ]
            );
            // Search and the moderation queue.
            let (_, f) = call(
                app,
                Some(advanced),
                "GET",
                "/api/community/search?q=trial",
                None,
            )
            .await;
            assert_eq!(f[0]["user"]["is_guild_master"], includes_trialing);
            assert_eq!(f[0]["user"]["username"], "trial_gm");
            let (s, q) = call(
                app,
                Some(admin),
                "GET",
                "/api/admin/moderation/reports?status=open",
                None,
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{q}");
            assert_eq!(q[0]["reporter"]["username"], "trial_gm");
            assert_eq!(q[0]["reporter"]["is_guild_master"], includes_trialing);
            assert_eq!(q[0]["reporter"]["equipped_border_sku"], "border_gold");
        }
    };
    check(false).await;
    app.set_settings(&admin, json!({"guild_master": {"includes_trialing": true}}))
        .await;
    check(true).await;
    // A reply written now shows the rule in force.
    let (_, v) = call(
        &app,
        Some(&trial_gm),
        "POST",
        &format!("/api/community/posts/{post}/replies"),
        Some(json!({"content": "Thanks"})),
    )
    .await;
    assert_eq!(v["reply"]["user"]["is_guild_master"], true);
    assert_eq!(v["reply"]["user"]["username"], "trial_gm");
}

// ---------------------------------------------------------------------------
// Statement counts
// ---------------------------------------------------------------------------

/// A context of its own with statement logging on and no background tasks.
async fn counting_ctx() -> (mambo_tests::TestDb, mambo_core::Context) {
    let db = mambo_tests::TestDb::new().await;
    let ns = format!("test-{}", Uuid::new_v4().simple());
    let vars = mambo_tests::test_vars(&db.url, &ns);
    let config = mambo_core::Config::from_map(&vars).unwrap();
    let opts: sqlx::postgres::PgConnectOptions = db.url.parse().unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(opts)
        .await
        .unwrap();
    let ctx = mambo_core::Context::new(pool, config).unwrap();
    (db, ctx)
}

/// Every feed page, filtered or not, signed in or anonymous, cached or not,
/// is one statement (zero past the anonymous preview), whatever its size:
/// the authors (PostUser), reactions and saves are part of it.
#[tokio::test(flavor = "current_thread")]
async fn the_feed_stays_one_statement_with_the_new_filters_and_fields() {
    let (_db, ctx) = counting_ctx().await;
    let pool = ctx.db.clone();
    let mut tx = pool.begin().await.unwrap();
    let viewer = mambo_core::users::create_user(
        &mut tx,
        &mambo_core::users::NewUser::student("v@example.com", "V", "W"),
    )
    .await
    .unwrap();
    for i in 0..30 {
        let nu = mambo_core::users::NewUser::student(&format!("a{i}@example.com"), "A", "B");
        let author = mambo_core::users::create_user(&mut tx, &nu).await.unwrap();
        if i % 2 == 0 {
            sqlx::query(
                "UPDATE subscriptions SET tier = 'performer', status = 'active' WHERE user_id = $1",
            )
            .bind(author)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
        let vt = ["motw", "original", "guild"][i % 3];
        let tag = if i % 2 == 0 { "mambo" } else { "timing" };
        let pid: Uuid = sqlx::query_scalar(
            "INSERT INTO posts (user_id, post_type, title, tags, video_type)
             VALUES ($1, 'stage', 't', ARRAY[$2]::varchar(50)[], $3) RETURNING id",
        )
        .bind(author)
        .bind(tag)
        .bind(vt)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        if i % 3 == 0 {
            sqlx::query("INSERT INTO post_reactions (post_id, user_id, reaction_type) VALUES ($1, $2, 'like')")
                .bind(pid)
                .bind(viewer)
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query("INSERT INTO saved_posts (user_id, post_id) VALUES ($1, $2)")
                .bind(viewer)
                .bind(pid)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
    }
    tx.commit().await.unwrap();
    let settings = mambo_core::settings::Settings::default();
    let filters = [
        mambo_core::community::FeedFilter::default(),
        mambo_core::community::FeedFilter::from_query(Some("mambo,timing"), None).unwrap(),
        mambo_core::community::FeedFilter::from_query(None, Some("motw")).unwrap(),
    ];
    let mut counts = vec![];
    for filter in &filters {
        // Each page twice: from the database, then from the cache.
        for limit in [1, 30, 1, 30] {
            let q = mambo_core::community::FeedQuery {
                post_type: Some("stage".into()),
                tag: None,
                skip: 0,
                limit,
            };
            let (items, n) = mambo_tests::count_statements(mambo_core::community::feed_page(
                &ctx,
                &settings,
                Some(viewer),
                &q,
                filter,
            ))
            .await;
            let items = items.unwrap();
            counts.push(n);
            let expected = if filter.video_type.is_some() {
                (limit as usize).min(10)
            } else {
                limit as usize
            };
            assert_eq!(items.len(), expected);
            if limit == 30 && filter.video_type.is_none() {
                let liked = items
                    .iter()
                    .filter(|p| p.user_reaction.as_deref() == Some("like"))
                    .count();
                assert_eq!(liked, 10);
                assert_eq!(items.iter().filter(|p| p.is_saved).count(), 10);
                assert_eq!(items.iter().filter(|p| p.user.is_guild_master).count(), 15);
            }
        }
        // Anonymous: the preview page is one statement; past it, none.
        let q = mambo_core::community::FeedQuery {
            post_type: None,
            tag: None,
            skip: 0,
            limit: 20,
        };
        let (items, n) = mambo_tests::count_statements(mambo_core::community::feed_page(
            &ctx, &settings, None, &q, filter,
        ))
        .await;
        let items = items.unwrap();
        assert_eq!(items.len(), 3);
        assert!(
            items
                .iter()
                .all(|p| p.user_reaction.is_none() && !p.is_saved)
        );
        counts.push(n);
        let q = mambo_core::community::FeedQuery { skip: 3, ..q };
        let (items, n) = mambo_tests::count_statements(mambo_core::community::feed_page(
            &ctx, &settings, None, &q, filter,
        ))
        .await;
        assert!(items.unwrap().is_empty());
        assert_eq!(n, 0);
    }
    assert!(counts.iter().all(|c| *c == 1), "{counts:?}");
}

/// A new like is the react path's four statements once the settings are
/// in the process (BEGIN is not logged): the post's lock, the profiles'
/// locks with the caller's reaction, one statement for every write, COMMIT.
#[tokio::test(flavor = "current_thread")]
async fn a_new_like_is_four_statements() {
    let (_db, ctx) = counting_ctx().await;
    let pool = ctx.db.clone();
    let mut tx = pool.begin().await.unwrap();
    let owner = mambo_core::users::create_user(
        &mut tx,
        &mambo_core::users::NewUser::student("o@example.com", "O", "W"),
    )
    .await
    .unwrap();
    let fan = mambo_core::users::create_user(
        &mut tx,
        &mambo_core::users::NewUser::student("f@example.com", "F", "W"),
    )
    .await
    .unwrap();
    let post: Uuid = sqlx::query_scalar(
        "INSERT INTO posts (user_id, post_type, title, tags) VALUES ($1, 'stage', 'Mine', '{mambo}') RETURNING id",
    )
    .bind(owner)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    sqlx::query("UPDATE user_profiles SET current_claves = 10 WHERE user_id = $1")
        .bind(fan)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // The steady state of an API process: its copy of the settings is held.
    ctx.settings_now().await.unwrap();
    let (r, n) =
        mambo_tests::count_statements(mambo_core::community::react(&ctx, fan, post, "like")).await;
    let r = r.unwrap();
    assert_eq!(r.message, "Reacted with like! (-1 🥢)");
    assert_eq!((r.user_reaction.as_str(), r.reaction_count), ("like", 1));
    assert_eq!(n, 4, "statements of a new like");
    let (r, _) =
        mambo_tests::count_statements(mambo_core::community::react(&ctx, fan, post, "fire")).await;
    let r = r.unwrap();
    assert_eq!(
        (r.message.as_str(), r.reaction_count),
        ("Reaction updated", 1)
    );
}
