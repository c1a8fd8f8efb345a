//! Community and the clave economy (issue 5): API.md §3.7, §3.8, §4.1–4.3, §4.9.

use mambo_tests::{StatusCode, TestApp, TestUser, UserSpec, json};
use serde_json::{Value, json};
use uuid::Uuid;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

async fn rich(app: &TestApp, claves: i64) -> TestUser {
    app.create_user(UserSpec {
        claves,
        ..Default::default()
    })
    .await
}

async fn post_json(app: &TestApp, user: &TestUser, path: &str, body: Value) -> (StatusCode, Value) {
    json(
        app.post(path)
            .header("Authorization", user.bearer())
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn put_json(app: &TestApp, user: &TestUser, path: &str, body: Value) -> (StatusCode, Value) {
    json(
        app.put(path)
            .header("Authorization", user.bearer())
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn get_as(app: &TestApp, user: &TestUser, path: &str) -> (StatusCode, Value) {
    json(
        app.get(path)
            .header("Authorization", user.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn delete_as(app: &TestApp, user: &TestUser, path: &str) -> (StatusCode, Value) {
    json(
        app.delete(path)
            .header("Authorization", user.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn create_stage(app: &TestApp, user: &TestUser, title: &str) -> Value {
    let (s, v) = post_json(
        app,
        user,
        "/api/community/posts",
        json!({"post_type": "stage", "title": title, "tags": ["mambo"]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["post"].clone()
}

async fn create_lab(app: &TestApp, user: &TestUser, title: &str) -> Value {
    let (s, v) = post_json(
        app,
        user,
        "/api/community/posts",
        json!({"post_type": "lab", "title": title, "body": "How do I do this?", "tags": ["timing"]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["post"].clone()
}

/// Inserts a post directly (test setup that must not touch balances).
async fn insert_post(app: &TestApp, owner: Uuid, post_type: &str, asset: Option<&str>) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO posts (user_id, post_type, title, body, tags, mux_asset_id)
         VALUES ($1, $2, 'A post', 'body', '{mambo}', $3) RETURNING id",
    )
    .bind(owner)
    .bind(post_type)
    .bind(asset)
    .fetch_one(app.db())
    .await
    .unwrap()
}

async fn balance(app: &TestApp, id: Uuid) -> i64 {
    let (b, l) = app.balance_and_ledger(id).await;
    assert_eq!(b, l, "balance must equal the ledger sum");
    b
}

async fn usage(app: &TestApp, slug: &str) -> i32 {
    sqlx::query_scalar("SELECT usage_count FROM community_tags WHERE slug = $1")
        .bind(slug)
        .fetch_one(app.db())
        .await
        .unwrap()
}

async fn outbox(app: &TestApp, queue: &str) -> Vec<Value> {
    sqlx::query_scalar("SELECT payload FROM job_outbox WHERE queue = $1 ORDER BY created_at, id")
        .bind(queue)
        .fetch_all(app.db())
        .await
        .unwrap()
}

fn stats_of(payloads: &[Value], user: Uuid) -> Vec<String> {
    payloads
        .iter()
        .filter(|p| p["user_id"] == json!(user.to_string()))
        .map(|p| p["stat"].as_str().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------------------
// Posts
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_posts_charge_and_show_in_feed() {
    let app = TestApp::spawn_api_only().await;
    let u = rich(&app, 20).await;

    let (s, v) = post_json(
        &app,
        &u,
        "/api/community/posts",
        json!({"post_type": "stage", "title": "My shines", "tags": ["mambo", "styling"], "is_wip": true}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["success"], true);
    assert_eq!(v["message"], "Post created! (-15 🥢)");
    let p = &v["post"];
    assert_eq!(p["post_type"], "stage");
    assert_eq!(p["tags"], json!(["mambo", "styling"]));
    assert_eq!(p["is_wip"], true);
    assert_eq!(p["feedback_type"], "coach");
    assert_eq!(p["user"]["id"], json!(u.id.to_string()));
    assert_eq!(p["user"]["is_pro"], false);
    assert_eq!(p["user"]["level"], 1);
    assert_eq!(p["user_reaction"], Value::Null);
    assert_eq!(p["body"], Value::Null);
    assert_eq!(p["mux_playback_id"], Value::Null);
    assert!(p.get("mux_asset_id").is_none());
    assert!(p["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(balance(&app, u.id).await, 5);
    assert_eq!(usage(&app, "mambo").await, 1);

    let (s, v) = post_json(
        &app,
        &u,
        "/api/community/posts",
        json!({"post_type": "lab", "title": "Timing?", "body": "On2 or On1?", "tags": ["timing"]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["message"], "Post created! (-5 🥢)");
    assert_eq!(balance(&app, u.id).await, 0);
    let reasons: Vec<(i32, String)> = sqlx::query_as(
        "SELECT amount, reason::text FROM clave_transactions WHERE user_id=$1 AND amount < 0 ORDER BY amount",
    )
    .bind(u.id)
    .fetch_all(app.db())
    .await
    .unwrap();
    assert_eq!(
        reasons,
        vec![(-15, "post_stage".into()), (-5, "post_lab".into())]
    );
    // A lab post queues the questions_posted badge check.
    assert_eq!(
        stats_of(&outbox(&app, "badge_check").await, u.id),
        vec!["questions_posted"]
    );

    let (s, feed) = get_as(&app, &u, "/api/community/feed").await;
    assert_eq!(s, StatusCode::OK);
    let feed = feed.as_array().unwrap();
    assert_eq!(feed.len(), 2);
    assert_eq!(feed[0]["post_type"], "lab");
    assert_eq!(feed[1]["post_type"], "stage");
    let (_, stage) = get_as(&app, &u, "/api/community/feed?post_type=stage").await;
    assert_eq!(stage.as_array().unwrap().len(), 1);
    let (_, lab) = get_as(
        &app,
        &u,
        "/api/community/feed?post_type=lab&skip=0&limit=20",
    )
    .await;
    assert_eq!(lab.as_array().unwrap().len(), 1);
    let (_, other) = get_as(&app, &u, "/api/community/feed?post_type=video").await;
    assert_eq!(other, json!([]));
    let (_, tagged) = get_as(&app, &u, "/api/community/feed?tag=styling").await;
    assert_eq!(tagged.as_array().unwrap().len(), 1);
    assert_eq!(tagged[0]["title"], "My shines");
    let (_, none) = get_as(&app, &u, "/api/community/feed?tag=drills").await;
    assert_eq!(none, json!([]));

    // Anonymous: API.md's 401 when the preview is off (N5.4's setting 0;
    // the preview itself is tests/tests/community_2026.rs's).
    let admin = app.admin().await;
    app.set_settings(&admin, json!({"community": {"anonymous_feed_preview": 0}}))
        .await;
    let r = app.get("/api/community/feed").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_post_validation_order_and_messages() {
    let app = TestApp::spawn_api_only().await;
    let u = rich(&app, 4).await;
    let path = "/api/community/posts";

    // Schema errors: FastAPI lists.
    let (s, v) = post_json(
        &app,
        &u,
        path,
        json!({"post_type": "stage", "title": "ab", "tags": ["mambo"]}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["detail"][0]["loc"], json!(["body", "title"]));
    assert_eq!(
        v["detail"][0]["msg"],
        "String should have at least 3 characters"
    );
    let long = "x".repeat(201);
    let (s, v) = post_json(
        &app,
        &u,
        path,
        json!({"post_type": "stage", "title": long, "tags": ["mambo"]}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["detail"][0]["type"], "string_too_long");
    let (s, v) = post_json(
        &app,
        &u,
        path,
        json!({"post_type": "stage", "title": "Hello", "tags": []}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["detail"][0]["loc"], json!(["body", "tags"]));
    let six = json!(["mambo", "timing", "drills", "turn", "choreo", "styling"]);
    let (s, v) = post_json(
        &app,
        &u,
        path,
        json!({"post_type": "stage", "title": "Hello", "tags": six}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["detail"][0]["type"], "too_long");
    let (s, v) = post_json(
        &app,
        &u,
        path,
        json!({"post_type": "video", "title": "Hello", "tags": ["mambo"]}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["detail"][0]["loc"], json!(["body", "post_type"]));
    assert_eq!(v["detail"][0]["msg"], "Input should be 'stage' or 'lab'");
    let (s, v) = post_json(
        &app,
        &u,
        path,
        json!({"post_type": "lab", "title": "Hello", "tags": ["mambo"], "feedback_type": "roast"}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["detail"][0]["loc"], json!(["body", "feedback_type"]));
    let (s, v) = post_json(
        &app,
        &u,
        path,
        json!({"post_type": "lab", "title": "Hello", "body": "", "tags": ["mambo"]}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        v["detail"][0]["msg"],
        "Value error, Body is required for Lab questions"
    );
    assert_eq!(v["detail"][0]["loc"], json!(["body", "body"]));
    let (s, v) = post_json(
        &app,
        &u,
        path,
        json!({"post_type": "lab", "title": "Hello"}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(v["detail"].is_array(), "{v}");

    // Rule errors: detail objects.
    let (s, v) = post_json(
        &app,
        &u,
        path,
        json!({"post_type": "lab", "title": "Hello", "body": "x", "tags": ["nope", "nada"]}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        v["detail"],
        json!({"success": false, "message": "At least one valid tag is required. Invalid tags provided."})
    );
    let (s, v) = post_json(&app, &u, path, json!({"post_type": "lab", "title": "Hello", "body": "x", "tags": ["mambo", "nope", "nada"]})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        v["detail"]["message"],
        "Invalid tags: nope, nada. Please select valid tags."
    );
    // Tags come before the lab body.
    let (s, v) = post_json(
        &app,
        &u,
        path,
        json!({"post_type": "lab", "title": "Hello", "body": "  ", "tags": ["nope"]}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        v["detail"]["message"],
        "At least one valid tag is required. Invalid tags provided."
    );
    let (s, v) = post_json(
        &app,
        &u,
        path,
        json!({"post_type": "lab", "title": "Hello", "body": "  ", "tags": ["mambo"]}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        v["detail"],
        json!({"success": false, "message": "Question body is required for Lab posts"})
    );
    let (s, v) = post_json(
        &app,
        &u,
        path,
        json!({"post_type": "lab", "title": "Hello", "tags": ["mambo"]}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        v["detail"]["message"],
        "Question body is required for Lab posts"
    );

    // Too few claves: 400, nothing written.
    let (s, v) = post_json(
        &app,
        &u,
        path,
        json!({"post_type": "lab", "title": "Hello", "body": "x", "tags": ["mambo"]}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        v["detail"],
        json!({"success": false, "message": "Insufficient claves. You need 5 🥢 but have 4 🥢", "required": 5, "balance": 4})
    );
    let (s, v) = post_json(
        &app,
        &u,
        path,
        json!({"post_type": "stage", "title": "Hello", "tags": ["mambo"]}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        v["detail"]["message"],
        "Insufficient claves. You need 15 🥢 but have 4 🥢"
    );
    assert_eq!(balance(&app, u.id).await, 4);
    let posts: i64 = sqlx::query_scalar("SELECT count(*) FROM posts")
        .fetch_one(app.db())
        .await
        .unwrap();
    assert_eq!(posts, 0);
    assert_eq!(usage(&app, "mambo").await, 0);
    assert!(outbox(&app, "badge_check").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_detail_update_and_delete() {
    let app = TestApp::spawn_api_only().await;
    let owner = rich(&app, 100).await;
    let other = rich(&app, 100).await;
    let admin = app.admin().await;
    let lab = create_lab(&app, &owner, "Question").await;
    let id = lab["id"].as_str().unwrap().to_string();

    let (s, v) = get_as(&app, &other, &format!("/api/community/posts/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["title"], "Question");
    assert_eq!(v["replies"], json!([]));
    let (s, v) = get_as(
        &app,
        &other,
        &format!("/api/community/posts/{}", Uuid::new_v4()),
    )
    .await;
    assert_eq!(
        (s, v),
        (StatusCode::NOT_FOUND, json!({"detail": "Post not found"}))
    );
    let (s, v) = get_as(&app, &other, "/api/community/posts/not-a-uuid").await;
    assert_eq!(
        (s, v),
        (StatusCode::NOT_FOUND, json!({"detail": "Post not found"}))
    );

    // Update: owner only, admins included.
    let path = format!("/api/community/posts/{id}");
    let (s, v) = put_json(&app, &other, &path, json!({"title": "Hijack"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        v["detail"],
        json!({"success": false, "message": "You can only edit your own posts"})
    );
    let (s, _) = put_json(&app, &admin, &path, json!({"title": "Hijack"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = put_json(
        &app,
        &owner,
        &format!("/api/community/posts/{}", Uuid::new_v4()),
        json!({"title": "Nope"}),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["detail"]["message"], "Post not found");
    let (s, v) = put_json(&app, &owner, &path, json!({"title": "ab"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["detail"][0]["loc"], json!(["body", "title"]));
    let (s, v) = put_json(&app, &owner, &path, json!({"body": "   "})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        v["detail"]["message"],
        "Question body is required for Lab posts"
    );
    let (s, v) = put_json(&app, &owner, &path, json!({"tags": ["nope"]})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        v["detail"]["message"],
        "At least one valid tag is required. Invalid tags provided."
    );
    let before = usage(&app, "timing").await;
    let (s, v) = put_json(
        &app,
        &owner,
        &path,
        json!({"title": "Better question", "tags": ["drills", "turn"], "is_wip": true, "feedback_type": "hype"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["success"], true);
    assert_eq!(v["message"], "Post updated successfully");
    assert_eq!(v["post"]["title"], "Better question");
    assert_eq!(v["post"]["body"], "How do I do this?");
    assert_eq!(v["post"]["tags"], json!(["drills", "turn"]));
    assert_eq!(v["post"]["feedback_type"], "hype");
    assert_eq!(usage(&app, "timing").await, before - 1);
    assert_eq!(usage(&app, "drills").await, 1);

    // Delete: owner or admin; tag usage goes down; no refund.
    let (s, v) = delete_as(&app, &other, &path).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(v["detail"]["message"], "You can only delete your own posts");
    let (s, v) = delete_as(&app, &owner, &path).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, json!({"success": true, "message": "Post deleted"}));
    assert_eq!(usage(&app, "drills").await, 0);
    assert_eq!(balance(&app, owner.id).await, 95);
    let (s, v) = delete_as(&app, &owner, &path).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        v["detail"],
        json!({"success": false, "message": "Post not found"})
    );
    let (s, v) = delete_as(&app, &owner, "/api/community/posts/garbage").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["detail"]["message"], "Post not found");

    // An admin deletes someone's video post: the asset goes through a job.
    let vid = insert_post(&app, other.id, "stage", Some("asset-123")).await;
    sqlx::query("UPDATE community_tags SET usage_count = 1 WHERE slug = 'mambo'")
        .execute(app.db())
        .await
        .unwrap();
    let (s, _) = delete_as(&app, &admin, &format!("/api/community/posts/{vid}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(usage(&app, "mambo").await, 0);
    assert_eq!(
        outbox(&app, "mux_sync").await,
        vec![json!({"action": {"DeleteAsset": {"asset_id": "asset-123"}}})]
    );
}

// ---------------------------------------------------------------------------
// Reactions
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactions_cost_refund_and_messages() {
    let app = TestApp::spawn_api_only().await;
    let owner = rich(&app, 15).await;
    let post = create_stage(&app, &owner, "Watch me").await;
    let pid = post["id"].as_str().unwrap().to_string();
    let path = format!("/api/community/posts/{pid}/react");
    assert_eq!(balance(&app, owner.id).await, 0);

    // Own post.
    let (s, v) = post_json(&app, &owner, &path, json!({"reaction_type": "fire"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        v["detail"],
        json!({"success": false, "message": "You cannot react to your own posts"})
    );
    // Bad type: schema 422.
    let fan = rich(&app, 3).await;
    let (s, v) = post_json(&app, &fan, &path, json!({"reaction_type": "love"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        v["detail"][0]["msg"],
        "Input should be 'fire', 'ruler', 'clap' or 'like'"
    );

    let (s, v) = post_json(&app, &fan, &path, json!({"reaction_type": "fire"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({"success": true, "message": "Reacted with fire! (-1 🥢)"})
    );
    assert_eq!(balance(&app, fan.id).await, 2);
    assert_eq!(balance(&app, owner.id).await, 1);
    let (s, v) = post_json(&app, &fan, &path, json!({"reaction_type": "fire"})).await;
    assert_eq!(
        (s, v),
        (
            StatusCode::OK,
            json!({"success": true, "message": "Already reacted"})
        )
    );
    let (s, v) = post_json(&app, &fan, &path, json!({"reaction_type": "clap"})).await;
    assert_eq!(
        (s, v),
        (
            StatusCode::OK,
            json!({"success": true, "message": "Reaction updated"})
        )
    );
    assert_eq!(balance(&app, fan.id).await, 2);
    assert_eq!(balance(&app, owner.id).await, 1);

    let (_, detail) = get_as(&app, &fan, &format!("/api/community/posts/{pid}")).await;
    assert_eq!(detail["reaction_count"], 1);
    assert_eq!(detail["user_reaction"], "clap");
    let (_, feed) = get_as(&app, &fan, "/api/community/feed").await;
    assert_eq!(feed[0]["user_reaction"], "clap");
    let (_, feed) = get_as(&app, &owner, "/api/community/feed").await;
    assert_eq!(feed[0]["user_reaction"], Value::Null);

    // Stats count new reactions only (D14); badge checks queued.
    let stats: (i32, i32) = sqlx::query_as(
        "SELECT (SELECT reactions_given_count FROM user_stats WHERE user_id=$1),
                (SELECT reactions_received_count FROM user_stats WHERE user_id=$2)",
    )
    .bind(fan.id)
    .bind(owner.id)
    .fetch_one(app.db())
    .await
    .unwrap();
    assert_eq!(stats, (1, 1));
    let jobs = outbox(&app, "badge_check").await;
    assert_eq!(stats_of(&jobs, fan.id), vec!["reactions_given"]);
    assert_eq!(stats_of(&jobs, owner.id), vec!["fires_received"]);

    // Unreact: no refund, count down.
    let (s, v) = delete_as(&app, &fan, &path).await;
    assert_eq!(
        (s, v),
        (
            StatusCode::OK,
            json!({"success": true, "message": "Reaction removed"})
        )
    );
    let (s, v) = delete_as(&app, &fan, &path).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["detail"]["message"], "No reaction to remove");
    let (_, detail) = get_as(&app, &fan, &format!("/api/community/posts/{pid}")).await;
    assert_eq!(detail["reaction_count"], 0);
    assert_eq!(detail["user_reaction"], Value::Null);
    assert_eq!(balance(&app, fan.id).await, 2);

    // Unknown and malformed ids.
    let (s, v) = post_json(
        &app,
        &fan,
        &format!("/api/community/posts/{}/react", Uuid::new_v4()),
        json!({"reaction_type": "fire"}),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        v["detail"],
        json!({"success": false, "message": "Post not found"})
    );
    let (s, _) = post_json(
        &app,
        &fan,
        "/api/community/posts/123/react",
        json!({"reaction_type": "fire"}),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = delete_as(&app, &fan, "/api/community/posts/123/react").await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Too few claves.
    let broke = rich(&app, 0).await;
    let (s, v) = post_json(&app, &broke, &path, json!({"reaction_type": "ruler"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        v["detail"],
        json!({"success": false, "message": "Insufficient claves. You need 1 🥢", "required": 1, "balance": 0})
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM post_reactions")
        .fetch_one(app.db())
        .await
        .unwrap();
    assert_eq!(rows, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_refund_is_capped_at_five_per_post() {
    let app = TestApp::spawn_api_only().await;
    let owner = rich(&app, 0).await;
    let post = insert_post(&app, owner.id, "stage", None).await;
    for _ in 0..7 {
        let fan = rich(&app, 1).await;
        let (s, v) = post_json(
            &app,
            &fan,
            &format!("/api/community/posts/{post}/react"),
            json!({"reaction_type": "fire"}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(balance(&app, fan.id).await, 0);
    }
    assert_eq!(balance(&app, owner.id).await, 5);
    let count: i32 = sqlx::query_scalar("SELECT reaction_count FROM posts WHERE id=$1")
        .bind(post)
        .fetch_one(app.db())
        .await
        .unwrap();
    assert_eq!(count, 7);
}

// ---------------------------------------------------------------------------
// Replies and solutions
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_cost_two_and_hype_closes_them() {
    let app = TestApp::spawn_api_only().await;
    let owner = rich(&app, 100).await;
    let helper = rich(&app, 3).await;
    let lab = create_lab(&app, &owner, "Help").await;
    let pid = lab["id"].as_str().unwrap();
    let path = format!("/api/community/posts/{pid}/replies");

    let (s, v) = post_json(&app, &helper, &path, json!({"content": ""})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["detail"][0]["loc"], json!(["body", "content"]));
    let (s, _) = post_json(&app, &helper, &path, json!({"content": "x".repeat(2001)})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    let (s, v) = post_json(&app, &helper, &path, json!({"content": "Count the clave"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["success"], true);
    assert_eq!(v["message"], "Comment posted! (-2 🥢)");
    assert_eq!(v["reply"]["content"], "Count the clave");
    assert_eq!(v["reply"]["is_accepted_answer"], false);
    assert_eq!(v["reply"]["user"]["id"], json!(helper.id.to_string()));
    assert_eq!(balance(&app, helper.id).await, 1);
    assert_eq!(
        stats_of(&outbox(&app, "badge_check").await, helper.id),
        vec!["comments_posted"]
    );

    let (s, v) = post_json(&app, &helper, &path, json!({"content": "Again"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        v["detail"],
        json!({"success": false, "message": "Insufficient claves. You need 2 🥢", "required": 2, "balance": 1})
    );
    // Self-replies are charged too.
    let (s, _) = post_json(&app, &owner, &path, json!({"content": "Thanks"})).await;
    assert_eq!(s, StatusCode::OK);
    let (_, detail) = get_as(&app, &owner, &format!("/api/community/posts/{pid}")).await;
    assert_eq!(detail["reply_count"], 2);
    assert_eq!(detail["replies"].as_array().unwrap().len(), 2);
    assert_eq!(detail["replies"][0]["content"], "Count the clave");

    let (s, _) = put_json(
        &app,
        &owner,
        &format!("/api/community/posts/{pid}"),
        json!({"feedback_type": "hype"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = post_json(&app, &owner, &path, json!({"content": "Closed?"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        v["detail"]["message"],
        "Comments are disabled on this post (Hype mode)"
    );

    let (s, v) = post_json(
        &app,
        &owner,
        &format!("/api/community/posts/{}/replies", Uuid::new_v4()),
        json!({"content": "x"}),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["detail"]["message"], "Post not found");
    let (s, _) = post_json(
        &app,
        &owner,
        "/api/community/posts/xyz/replies",
        json!({"content": "x"}),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepting_a_solution_pays_ten_once() {
    let app = TestApp::spawn_api_only().await;
    let asker = rich(&app, 100).await;
    let helper = rich(&app, 10).await;
    let helper2 = rich(&app, 10).await;
    let lab = create_lab(&app, &asker, "Help").await;
    let pid = lab["id"].as_str().unwrap().to_string();
    let stage = create_stage(&app, &asker, "Stage").await;
    let sid = stage["id"].as_str().unwrap().to_string();
    let reply = |u: TestUser, post: String| {
        let app = &app;
        async move {
            let (s, v) = post_json(
                app,
                &u,
                &format!("/api/community/posts/{post}/replies"),
                json!({"content": "Answer"}),
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{v}");
            v["reply"]["id"].as_str().unwrap().to_string()
        }
    };
    let r1 = reply(helper.clone(), pid.clone()).await;
    let r2 = reply(helper2.clone(), pid.clone()).await;
    let own = reply(asker.clone(), pid.clone()).await;
    let on_stage = reply(helper.clone(), sid.clone()).await;
    let accept = |post: &str, r: &str| format!("/api/community/posts/{post}/replies/{r}/accept");

    let (s, v) = post_json(&app, &helper, &accept(&pid, &r1), json!({})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        v["detail"]["message"],
        "Only the question author can mark a solution"
    );
    let (s, v) = post_json(&app, &asker, &accept(&sid, &on_stage), json!({})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        v["detail"]["message"],
        "Solutions are only for Lab questions"
    );
    let (s, v) = post_json(&app, &asker, &accept(&pid, &on_stage), json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        v["detail"],
        json!({"success": false, "message": "Reply not found"})
    );
    let (s, v) = post_json(&app, &asker, &accept(&pid, "bad-id"), json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["detail"]["message"], "Reply not found");
    let (s, v) = post_json(
        &app,
        &asker,
        &accept(&Uuid::new_v4().to_string(), &r1),
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["detail"]["message"], "Post not found");
    let (s, v) = post_json(&app, &asker, &accept(&pid, &own), json!({})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["detail"]["message"], "You can't accept your own answer");

    let before = balance(&app, helper.id).await;
    let (s, v) = post_json(&app, &asker, &accept(&pid, &r1), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({"success": true, "message": "Solution marked! Helper awarded 10 🥢"})
    );
    assert_eq!(balance(&app, helper.id).await, before + 10);
    // Again: a 200 no-op that pays nothing.
    let (s, _) = post_json(&app, &asker, &accept(&pid, &r1), json!({})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(balance(&app, helper.id).await, before + 10);

    let (_, detail) = get_as(&app, &asker, &format!("/api/community/posts/{pid}")).await;
    assert_eq!(detail["is_solved"], true);
    assert_eq!(detail["replies"][0]["id"], json!(r1));
    assert_eq!(detail["replies"][0]["is_accepted_answer"], true);

    // Switching pays the new helper; switching back pays nobody.
    let before2 = balance(&app, helper2.id).await;
    let (s, _) = post_json(&app, &asker, &accept(&pid, &r2), json!({})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(balance(&app, helper2.id).await, before2 + 10);
    let (s, _) = post_json(&app, &asker, &accept(&pid, &r1), json!({})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(balance(&app, helper.id).await, before + 10);
    let accepted: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM post_replies WHERE is_accepted_answer")
            .fetch_all(app.db())
            .await
            .unwrap();
    assert_eq!(accepted, vec![r1.parse::<Uuid>().unwrap()]);
    let acc: Option<Uuid> = sqlx::query_scalar("SELECT accepted_answer_id FROM posts WHERE id=$1")
        .bind(pid.parse::<Uuid>().unwrap())
        .fetch_one(app.db())
        .await
        .unwrap();
    assert_eq!(acc, Some(r1.parse().unwrap()));

    let (count, rep): (i32, i32) = sqlx::query_as(
        "SELECT s.solutions_accepted_count, p.reputation FROM user_stats s
         JOIN user_profiles p ON p.user_id = s.user_id WHERE s.user_id = $1",
    )
    .bind(helper.id)
    .fetch_one(app.db())
    .await
    .unwrap();
    assert_eq!((count, rep), (1, 1));
    let ledger: Vec<(i32, String, Option<Uuid>)> = sqlx::query_as(
        "SELECT amount, reason::text, reference_id FROM clave_transactions
         WHERE user_id = $1 AND reason = 'accepted_answer'",
    )
    .bind(helper.id)
    .fetch_all(app.db())
    .await
    .unwrap();
    assert_eq!(
        ledger,
        vec![(10, "accepted_answer".into(), Some(pid.parse().unwrap()))]
    );
    assert_eq!(
        stats_of(&outbox(&app, "badge_check").await, helper.id)
            .iter()
            .filter(|s| *s == "solutions_accepted")
            .count(),
        1
    );
}

// ---------------------------------------------------------------------------
// Slots, wallet, claves
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slot_formula_everywhere() {
    let app = TestApp::spawn_api_only().await;
    let u = rich(&app, 100).await;
    let other = rich(&app, 100).await;
    for i in 0..4 {
        insert_post(
            &app,
            u.id,
            if i % 2 == 0 { "stage" } else { "lab" },
            Some(&format!("a{i}")),
        )
        .await;
    }
    let lab = insert_post(&app, other.id, "lab", None).await;
    let (s, v) = post_json(
        &app,
        &u,
        &format!("/api/community/posts/{lab}/replies"),
        json!({"content": "video answer", "mux_asset_id": "r1"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let reply_id = v["reply"]["id"].as_str().unwrap().to_string();

    let full = json!({"allowed": false, "current_slots": 5, "max_slots": 5,
        "message": "You've reached your 5 video limit. Delete an old video to post a new one."});
    let (s, v) = get_as(&app, &u, "/api/community/upload-check").await;
    assert_eq!((s, v.clone()), (StatusCode::OK, full.clone()));
    let (_, v) = get_as(&app, &u, "/api/claves/slot-status").await;
    assert_eq!(v, full);
    let (_, w) = get_as(&app, &u, "/api/claves/wallet").await;
    assert_eq!(
        (
            w["video_slots_used"].clone(),
            w["video_slots_limit"].clone()
        ),
        (json!(5), json!(5))
    );

    // Stage post: 422 before charging; reply video: 400.
    let (s, v) = post_json(
        &app,
        &u,
        "/api/community/posts",
        json!({"post_type": "stage", "title": "One more", "tags": ["mambo"]}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        v["detail"],
        json!({"success": false, "message": full["message"]})
    );
    let (s, v) = post_json(
        &app,
        &u,
        &format!("/api/community/posts/{lab}/replies"),
        json!({"content": "another", "mux_asset_id": "r2"}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["detail"]["message"], full["message"]);
    // A text reply is fine.
    let (s, _) = post_json(
        &app,
        &u,
        &format!("/api/community/posts/{lab}/replies"),
        json!({"content": "text"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(balance(&app, u.id).await, 96);

    // The accepted reply frees its slot.
    let (s, _) = post_json(
        &app,
        &other,
        &format!("/api/community/posts/{lab}/replies/{reply_id}/accept"),
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (_, v) = get_as(&app, &u, "/api/community/upload-check").await;
    assert_eq!(
        v,
        json!({"allowed": true, "current_slots": 4, "max_slots": 5, "message": "You have 4/5 video slots used."})
    );

    // Pro (active or trialing advanced/performer): 20.
    let pro = app
        .create_user(UserSpec {
            subscription: Some(("trialing", "advanced")),
            ..Default::default()
        })
        .await;
    let (_, v) = get_as(&app, &pro, "/api/claves/slot-status").await;
    assert_eq!(v["max_slots"], 20);
    let (_, w) = get_as(&app, &pro, "/api/claves/wallet").await;
    assert_eq!(w["is_pro"], true);
    assert_eq!(w["video_slots_limit"], 20);
    let lapsed = app
        .create_user(UserSpec {
            subscription: Some(("canceled", "performer")),
            ..Default::default()
        })
        .await;
    let (_, v) = get_as(&app, &lapsed, "/api/claves/slot-status").await;
    assert_eq!(v["max_slots"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallet_balance_check_and_daily_claim() {
    let app = TestApp::spawn_api_only().await;
    let u = rich(&app, 15).await;
    let (s, w) = get_as(&app, &u, "/api/claves/wallet").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(w["current_claves"], 15);
    assert_eq!(w["is_pro"], false);
    let txs = w["recent_transactions"].as_array().unwrap();
    assert_eq!(txs.len(), 1);
    assert_eq!(txs[0]["amount"], 15);
    assert_eq!(txs[0]["reason"], "new_user_bonus");
    assert_eq!(txs[0]["reference_id"], Value::Null);
    assert!(txs[0]["created_at"].as_str().unwrap().ends_with('Z'));

    let (s, v) = get_as(&app, &u, "/api/claves/balance-check/20").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v,
        json!({"can_afford": false, "current_balance": 15, "required_amount": 20, "shortfall": 5})
    );
    let (_, v) = get_as(&app, &u, "/api/claves/balance-check/15").await;
    assert_eq!(
        v,
        json!({"can_afford": true, "current_balance": 15, "required_amount": 15, "shortfall": 0})
    );
    let (s, v) = get_as(&app, &u, "/api/claves/balance-check/abc").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["detail"][0]["loc"], json!(["path", "amount"]));

    let (s, v) = json(
        app.post("/api/claves/daily-claim")
            .header("Authorization", u.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["success"], true);
    let amount = v["amount"].as_i64().unwrap();
    assert!((1..=3).contains(&amount));
    assert_eq!(v["new_balance"], 15 + amount);
    assert_eq!(v["message"], format!("You earned {amount} 🥢"));
    let (s, v) = json(
        app.post("/api/claves/daily-claim")
            .header("Authorization", u.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v,
        json!({"success": false, "amount": 0, "new_balance": 15 + amount, "streak_bonus": null,
               "message": "Already claimed today. Come back tomorrow!"})
    );
    assert_eq!(balance(&app, u.id).await, 15 + amount);

    // Only the 20 newest transactions.
    let many = rich(&app, 0).await;
    for _ in 0..25 {
        let mut c = app.db().acquire().await.unwrap();
        mambo_core::economy::credit(&mut c, many.id, 1, "admin_test_airdrop", None, None)
            .await
            .unwrap();
    }
    let (_, w) = get_as(&app, &many, "/api/claves/wallet").await;
    assert_eq!(w["recent_transactions"].as_array().unwrap().len(), 20);
    assert_eq!(w["current_claves"], 25);

    for path in [
        "/api/claves/wallet",
        "/api/claves/slot-status",
        "/api/claves/balance-check/1",
    ] {
        let r = app.get(path).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
}

// ---------------------------------------------------------------------------
// Feed paging, search, tags, stats
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_paging_order_and_limits() {
    let app = TestApp::spawn_api_only().await;
    let u = rich(&app, 0).await;
    // 5 posts with the same created_at: the id breaks the tie.
    let mut ids = vec![];
    for _ in 0..5 {
        ids.push(insert_post(&app, u.id, "lab", None).await);
    }
    sqlx::query("UPDATE posts SET created_at = '2026-01-01T00:00:00Z'")
        .execute(app.db())
        .await
        .unwrap();
    let newest = insert_post(&app, u.id, "stage", None).await;
    ids.sort();
    ids.reverse();
    let mut expected = vec![newest.to_string()];
    expected.extend(ids.iter().map(|i| i.to_string()));

    let (_, all) = get_as(&app, &u, "/api/community/feed").await;
    let got: Vec<String> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, expected);
    let (_, page) = get_as(&app, &u, "/api/community/feed?skip=2&limit=3").await;
    let got: Vec<String> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, expected[2..5].to_vec());
    // Served again (from the cache, when there is one): same answer.
    let (_, again) = get_as(&app, &u, "/api/community/feed?skip=2&limit=3").await;
    assert_eq!(again, page);
    let (_, last) = get_as(&app, &u, "/api/community/feed?skip=5&limit=50").await;
    assert_eq!(last.as_array().unwrap().len(), 1);

    for (q, loc) in [
        ("limit=0", "limit"),
        ("limit=51", "limit"),
        ("limit=abc", "limit"),
        ("skip=-1", "skip"),
    ] {
        let (s, v) = get_as(&app, &u, &format!("/api/community/feed?{q}")).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{q}");
        assert_eq!(v["detail"][0]["loc"], json!(["query", loc]), "{q}");
        let (s, _) = get_as(&app, &u, &format!("/api/community/search?q=post&{q}")).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "search {q}");
    }
    let (_, v) = get_as(&app, &u, "/api/community/feed?limit=51").await;
    assert_eq!(
        v["detail"][0]["msg"],
        "Input should be less than or equal to 50"
    );

    // A new post shows at once (the cache is invalidated by writes).
    let rich_user = rich(&app, 15).await;
    create_stage(&app, &rich_user, "Brand new").await;
    let (_, all) = get_as(&app, &u, "/api/community/feed?limit=20").await;
    assert_eq!(all[0]["title"], "Brand new");
    assert_eq!(all.as_array().unwrap().len(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_escapes_wildcards_and_matches_tags() {
    let app = TestApp::spawn_api_only().await;
    let u = rich(&app, 100).await;
    let mk = |title: &'static str, tags: Value| {
        let app = &app;
        let u = &u;
        async move {
            let (s, v) = post_json(
                app,
                u,
                "/api/community/posts",
                json!({"post_type": "lab", "title": title, "body": "b", "tags": tags}),
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{v}");
        }
    };
    mk("100% on time", json!(["timing"])).await;
    mk("1000 turns", json!(["turn"])).await;
    mk("my_first_shine", json!(["styling"])).await;
    mk("myXfirst", json!(["drills"])).await;
    mk("Body rolls", json!(["body-movement"])).await;

    let titles = |v: Value| -> Vec<String> {
        let mut t: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["title"].as_str().unwrap().to_string())
            .collect();
        t.sort();
        t
    };
    let (s, v) = get_as(&app, &u, "/api/community/search?q=0%25").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(titles(v), vec!["100% on time"]);
    let (_, v) = get_as(&app, &u, "/api/community/search?q=my_").await;
    assert_eq!(titles(v), vec!["my_first_shine"]);
    let (_, v) = get_as(&app, &u, "/api/community/search?q=TURN").await;
    assert_eq!(titles(v), vec!["1000 turns"]);
    // Tag equal to lower(q), tag containing q, tag name containing q.
    let (_, v) = get_as(&app, &u, "/api/community/search?q=Drills").await;
    assert_eq!(titles(v), vec!["myXfirst"]);
    let (_, v) = get_as(&app, &u, "/api/community/search?q=movement").await;
    assert_eq!(titles(v), vec!["Body rolls"]);
    let (_, v) = get_as(&app, &u, "/api/community/search?q=Styl&post_type=stage").await;
    assert_eq!(v, json!([]));

    let (s, v) = get_as(&app, &u, "/api/community/search?q=a").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["detail"][0]["loc"], json!(["query", "q"]));
    let (s, v) = get_as(&app, &u, "/api/community/search").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["detail"][0]["type"], "missing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_and_stats_are_public() {
    let app = TestApp::spawn_api_only().await;
    let (s, tags) = json(app.get("/api/community/tags").send().await.unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    let tags = tags.as_array().unwrap();
    assert!(tags.len() >= 16);
    let names: Vec<&str> = tags.iter().map(|t| t["name"].as_str().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    let on2 = tags.iter().find(|t| t["slug"] == "salsa-on2").unwrap();
    assert_eq!(on2["name"], "Salsa On2");
    assert_eq!(on2["category"], "Style");
    assert_eq!(on2["usage_count"], 0);

    let a = rich(&app, 0).await;
    let b = rich(&app, 10).await;
    let _c = rich(&app, 0).await;
    let p1 = insert_post(&app, a.id, "lab", None).await;
    insert_post(&app, a.id, "lab", None).await;
    let pb = insert_post(&app, b.id, "lab", None).await;
    let (s, _) = post_json(
        &app,
        &b,
        &format!("/api/community/posts/{p1}/react"),
        json!({"reaction_type": "clap"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = post_json(
        &app,
        &b,
        &format!("/api/community/posts/{pb}/replies"),
        json!({"content": "me"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);

    let (s, v) = json(app.get("/api/community/stats").send().await.unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["member_count"], 3);
    assert!(v["active_now"].as_i64().unwrap() >= 3);
    let lb = v["leaderboard"].as_array().unwrap();
    assert_eq!(lb.len(), 2);
    assert_eq!(lb[0]["id"], json!(a.id.to_string()));
    assert_eq!(lb[0]["rank"], 1);
    assert_eq!(lb[0]["score"], 2 * 5 + 2);
    assert_eq!(lb[0]["first_name"], "Test");
    assert_eq!(lb[1]["id"], json!(b.id.to_string()));
    assert_eq!(lb[1]["score"], 5 + 3);
    assert_eq!(lb[1]["rank"], 2);
}

// ---------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_reactions_with_ten_claves() {
    let app = TestApp::spawn_api_only().await;
    let owner = rich(&app, 0).await;
    let fan = rich(&app, 10).await;
    let mut posts = vec![];
    for _ in 0..50 {
        posts.push(insert_post(&app, owner.id, "stage", None).await);
    }
    let results = futures::future::join_all(posts.iter().map(|p| {
        let app = &app;
        let fan = &fan;
        async move {
            post_json(
                app,
                fan,
                &format!("/api/community/posts/{p}/react"),
                json!({"reaction_type": "fire"}),
            )
            .await
        }
    }))
    .await;
    let ok = results.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    let poor = results
        .iter()
        .filter(|(s, v)| {
            *s == StatusCode::BAD_REQUEST
                && v["detail"]["message"] == "Insufficient claves. You need 1 🥢"
        })
        .count();
    assert_eq!((ok, poor), (10, 40), "{results:?}");
    assert_eq!(balance(&app, fan.id).await, 0);
    assert_eq!(balance(&app, owner.id).await, 10);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM post_reactions")
        .fetch_one(app.db())
        .await
        .unwrap();
    let counted: i64 = sqlx::query_scalar("SELECT sum(reaction_count)::bigint FROM posts")
        .fetch_one(app.db())
        .await
        .unwrap();
    assert_eq!((rows, counted), (10, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_accepts_pay_once() {
    let app = TestApp::spawn_api_only().await;
    let asker = rich(&app, 0).await;
    let helper = rich(&app, 2).await;
    let lab = insert_post(&app, asker.id, "lab", None).await;
    let (s, v) = post_json(
        &app,
        &helper,
        &format!("/api/community/posts/{lab}/replies"),
        json!({"content": "Answer"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let rid = v["reply"]["id"].as_str().unwrap().to_string();
    let path = format!("/api/community/posts/{lab}/replies/{rid}/accept");
    let results = futures::future::join_all((0..20).map(|_| {
        let app = &app;
        let asker = &asker;
        let path = &path;
        async move { post_json(app, asker, path, json!({})).await }
    }))
    .await;
    assert!(
        results.iter().all(|(s, _)| *s == StatusCode::OK),
        "{results:?}"
    );
    assert_eq!(balance(&app, helper.id).await, 10);
    let (count, rep): (i32, i32) = sqlx::query_as(
        "SELECT s.solutions_accepted_count, p.reputation FROM user_stats s
         JOIN user_profiles p ON p.user_id = s.user_id WHERE s.user_id = $1",
    )
    .bind(helper.id)
    .fetch_one(app.db())
    .await
    .unwrap();
    assert_eq!((count, rep), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_daily_claims_pay_once() {
    let app = TestApp::spawn_api_only().await;
    let u = rich(&app, 0).await;
    let results = futures::future::join_all((0..20).map(|_| {
        let app = &app;
        let u = &u;
        async move {
            json(
                app.post("/api/claves/daily-claim")
                    .header("Authorization", u.bearer())
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    }))
    .await;
    assert!(results.iter().all(|(s, _)| *s == StatusCode::OK));
    let winners: Vec<&Value> = results
        .iter()
        .filter(|(_, v)| v["success"] == true)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let amount = winners[0]["amount"].as_i64().unwrap();
    assert_eq!(balance(&app, u.id).await, amount);
    let rows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM clave_transactions WHERE user_id=$1 AND reason='daily_login'",
    )
    .bind(u.id)
    .fetch_one(app.db())
    .await
    .unwrap();
    assert_eq!(rows, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_react_and_unreact_keep_the_count_true() {
    let app = TestApp::spawn_api_only().await;
    let owner = rich(&app, 0).await;
    let post = insert_post(&app, owner.id, "stage", None).await;
    let mut fans = vec![];
    for _ in 0..10 {
        fans.push(rich(&app, 10).await);
    }
    let path = format!("/api/community/posts/{post}/react");
    let ops = fans.iter().flat_map(|f| (0..6).map(move |i| (f, i)));
    futures::future::join_all(ops.map(|(f, i)| {
        let app = &app;
        let path = &path;
        async move {
            let r = if i % 2 == 0 {
                let t = ["fire", "clap", "ruler"][i % 3];
                post_json(app, f, path, json!({"reaction_type": t})).await
            } else {
                delete_as(app, f, path).await
            };
            assert!(
                r.0 == StatusCode::OK || r.0 == StatusCode::BAD_REQUEST,
                "{r:?}"
            );
        }
    }))
    .await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM post_reactions WHERE post_id=$1")
        .bind(post)
        .fetch_one(app.db())
        .await
        .unwrap();
    let count: i32 = sqlx::query_scalar("SELECT reaction_count FROM posts WHERE id=$1")
        .bind(post)
        .fetch_one(app.db())
        .await
        .unwrap();
    assert_eq!(rows, count as i64);
    for f in &fans {
        balance(&app, f.id).await;
    }
    balance(&app, owner.id).await;
}

// ---------------------------------------------------------------------------
// The feed's query count does not grow with the page size (D17)
// ---------------------------------------------------------------------------

/// Every feed page is one statement (`mambo_tests::count_statements`).
#[tokio::test(flavor = "current_thread")]
async fn feed_query_count_is_fixed() {
    // A context of its own with statement logging on, and no background tasks.
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
    let ctx = mambo_core::Context::new(pool.clone(), config).unwrap();

    // 30 posts by 30 authors; the viewer reacted to some.
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
        let pid: Uuid = sqlx::query_scalar("INSERT INTO posts (user_id, post_type, title, tags) VALUES ($1, 'stage', 't', '{mambo}') RETURNING id")
            .bind(author)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        if i % 3 == 0 {
            sqlx::query("INSERT INTO post_reactions (post_id, user_id, reaction_type) VALUES ($1, $2, 'fire')")
                .bind(pid)
                .bind(viewer)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
    }
    tx.commit().await.unwrap();

    let mut counts = vec![];
    for (limit, tag) in [
        (1, None),
        (30, None),
        (1, None),
        (30, None),
        (10, Some("mambo")),
        (30, Some("mambo")),
    ] {
        let q = mambo_core::community::FeedQuery {
            post_type: Some("stage".into()),
            tag: tag.map(String::from),
            skip: 0,
            limit,
        };
        let (items, statements) =
            mambo_tests::count_statements(mambo_core::community::feed(&ctx, viewer, &q)).await;
        let items = items.unwrap();
        counts.push(statements);
        assert_eq!(items.len(), limit as usize);
        if limit == 30 {
            let mine = items
                .iter()
                .filter(|p| p.user_reaction.as_deref() == Some("fire"))
                .count();
            assert_eq!(mine, 10);
        }
    }
    // The repeated pages came from the Redis cache (ids); every page, cached
    // or not, is one query (the viewer's reactions are joined in).
    let mut redis = ctx.redis.conn();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{ns}:feed:*"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert!(counts.iter().all(|c| *c == 1), "{counts:?}");
    pool.close().await;
}

// ---------------------------------------------------------------------------
// Redis down: the feed and the writes still work (the cache is optional)
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn community_works_without_redis() {
    let app = TestApp::spawn_with(mambo_tests::Options {
        worker: false,
        vars: vec![("REDIS_URL".into(), "redis://127.0.0.1:1".into())],
    })
    .await;
    let u = rich(&app, 100).await;
    let fan = rich(&app, 10).await;
    let started = std::time::Instant::now();
    let post = create_stage(&app, &u, "No cache").await;
    let pid = post["id"].as_str().unwrap();
    let (s, _) = post_json(
        &app,
        &fan,
        &format!("/api/community/posts/{pid}/react"),
        json!({"reaction_type": "fire"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    for _ in 0..3 {
        let (s, feed) = get_as(&app, &fan, "/api/community/feed").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(feed[0]["title"], "No cache");
        assert_eq!(feed[0]["user_reaction"], "fire");
        assert_eq!(feed[0]["reaction_count"], 1);
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// The react path's round trips (issue 20)
// ---------------------------------------------------------------------------

/// A new reaction is BEGIN, the post's lock, the profiles' locks with the
/// caller's reaction, one statement for every write, and COMMIT (sqlx logs
/// every statement but BEGIN): all of it written, once.
#[tokio::test(flavor = "current_thread")]
async fn a_new_reaction_is_four_statements_and_writes_everything() {
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
    let ctx = mambo_core::Context::new(pool.clone(), config).unwrap();
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
    let balance = |u: Uuid| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i32>(
                "SELECT current_claves FROM user_profiles WHERE user_id = $1",
            )
            .bind(u)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let (fan_before, owner_before) = (balance(fan).await, balance(owner).await);
    // The platform settings are read from the process's copy, which an API
    // process keeps fresh with its watcher (N6.1): the steady state.
    mambo_tests::warm_settings(&ctx).await;

    let (done, statements) =
        mambo_tests::count_statements(mambo_core::community::react(&ctx, fan, post, "fire")).await;
    let done = done.unwrap();
    assert_eq!(done.message, "Reacted with fire! (-1 🥢)");
    assert_eq!(statements, 4, "statements of a new reaction");

    // Everything the one statement writes, once.
    assert_eq!(balance(fan).await, fan_before - 1);
    assert_eq!(balance(owner).await, owner_before + 1);
    let ledger: Vec<(Uuid, i32, String)> = sqlx::query_as(
        "SELECT user_id, amount, reason FROM clave_transactions
         WHERE reference_id = $1 ORDER BY amount",
    )
    .bind(post)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        ledger,
        vec![
            (fan, -1, "reaction".to_string()),
            (owner, 1, "reaction_refund".to_string())
        ]
    );
    let count: i32 = sqlx::query_scalar("SELECT reaction_count FROM posts WHERE id = $1")
        .bind(post)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
    let stats: Vec<(Uuid, i32, i32)> = sqlx::query_as(
        "SELECT user_id, reactions_given_count, reactions_received_count FROM user_stats
         WHERE user_id IN ($1, $2) ORDER BY reactions_given_count",
    )
    .bind(fan)
    .bind(owner)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(stats, vec![(owner, 0, 1), (fan, 1, 0)]);
    let jobs: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT payload FROM job_outbox WHERE queue = 'badge_check' ORDER BY payload->>'stat'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        jobs,
        vec![
            json!({"user_id": owner, "stat": "fires_received"}),
            json!({"user_id": fan, "stat": "reactions_given"}),
        ]
    );
    let notes: Vec<(Uuid, Option<Uuid>, String)> =
        sqlx::query_as("SELECT user_id, actor_id, type FROM notifications")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        notes,
        vec![(owner, Some(fan), "reaction_received".to_string())]
    );

    // Broke: nothing is written, and the error carries the balance.
    sqlx::query("UPDATE user_profiles SET current_claves = 0 WHERE user_id = $1")
        .bind(owner)
        .execute(&pool)
        .await
        .unwrap();
    let other: Uuid = sqlx::query_scalar(
        "INSERT INTO posts (user_id, post_type, title, tags) VALUES ($1, 'stage', 'Yours', '{mambo}') RETURNING id",
    )
    .bind(fan)
    .fetch_one(&pool)
    .await
    .unwrap();
    let err = mambo_core::community::react(&ctx, owner, other, "clap")
        .await
        .unwrap_err();
    assert_eq!(err.status(), 400);
    let rows: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM post_reactions WHERE post_id = $1)
              + (SELECT count(*) FROM clave_transactions WHERE reference_id = $1)
              + (SELECT count(*) FROM notifications WHERE user_id = $2)",
    )
    .bind(other)
    .bind(fan)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(rows, 0);

    // An owner without a balance row: the refund cannot be paid, so nothing
    // is (the charge included), as when the refund was a statement of its own.
    let fan_now = balance(fan).await;
    let ghost = post;
    sqlx::query("DELETE FROM user_profiles WHERE user_id = $1")
        .bind(owner)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM post_reactions WHERE post_id = $1")
        .bind(ghost)
        .execute(&pool)
        .await
        .unwrap();
    let err = mambo_core::community::react(&ctx, fan, ghost, "clap")
        .await
        .unwrap_err();
    assert_eq!(err.status(), 404);
    assert_eq!(balance(fan).await, fan_now);
    let reactions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM post_reactions WHERE post_id = $1")
            .bind(ghost)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(reactions, 0);
    pool.close().await;
}

/// The post page is one statement: the post, the viewer's reaction and the
/// whole thread (as one JSON column), in the N4.1 order, with hidden replies
/// left out for everyone but their author.
#[tokio::test(flavor = "current_thread")]
async fn the_post_page_is_one_statement_with_its_thread_in_order() {
    let db = mambo_tests::TestDb::new().await;
    let opts: sqlx::postgres::PgConnectOptions = db.url.parse().unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .unwrap();
    let mut users = vec![];
    for i in 0..3 {
        let mut tx = pool.begin().await.unwrap();
        let nu = mambo_core::users::NewUser::student(&format!("u{i}@example.com"), "U", "V");
        users.push(mambo_core::users::create_user(&mut tx, &nu).await.unwrap());
        tx.commit().await.unwrap();
    }
    let (owner, a, b) = (users[0], users[1], users[2]);
    let post: Uuid = sqlx::query_scalar(
        "INSERT INTO posts (user_id, post_type, title, tags) VALUES ($1, 'lab', 'Q', '{mambo}') RETURNING id",
    )
    .bind(owner)
    .fetch_one(&pool)
    .await
    .unwrap();
    let reply = |user: Uuid,
                 content: &str,
                 parent: Option<Uuid>,
                 secs: i64,
                 accepted: bool,
                 hidden: bool| {
        let pool = pool.clone();
        let content = content.to_string();
        async move {
            sqlx::query_scalar::<_, Uuid>(
                "INSERT INTO post_replies (post_id, user_id, content, parent_reply_id, created_at,
                                           is_accepted_answer, is_hidden)
                 VALUES ($1, $2, $3, $4, timestamptz '2026-01-01' + make_interval(secs => $5),
                         $6, $7)
                 RETURNING id",
            )
            .bind(post)
            .bind(user)
            .bind(content)
            .bind(parent)
            .bind(secs as f64)
            .bind(accepted)
            .bind(hidden)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let first = reply(a, "first", None, 1, false, false).await;
    let answer = reply(b, "answer", None, 2, true, false).await;
    let child = reply(b, "child of first", Some(first), 3, false, false).await;
    let hidden = reply(a, "hidden", None, 4, false, true).await;
    let under_answer = reply(a, "child of answer", Some(answer), 5, false, false).await;
    sqlx::query(
        "INSERT INTO post_reactions (post_id, user_id, reaction_type) VALUES ($1, $2, 'clap')",
    )
    .bind(post)
    .bind(b)
    .execute(&pool)
    .await
    .unwrap();

    let (seen_by_b, statements) =
        mambo_tests::count_statements(mambo_core::community::post_detail(&pool, b, post)).await;
    let seen_by_b = seen_by_b.unwrap().unwrap();
    assert_eq!(statements, 1);
    assert_eq!(seen_by_b.post.user_reaction.as_deref(), Some("clap"));
    let order: Vec<Uuid> = seen_by_b.replies.iter().map(|r| r.id).collect();
    assert_eq!(order, vec![answer, under_answer, first, child]);
    assert_eq!(seen_by_b.replies[0].user.id, b);
    assert!(seen_by_b.replies[0].is_accepted_answer);
    assert_eq!(seen_by_b.replies[3].parent_reply_id, Some(first));
    assert_eq!(
        seen_by_b.replies[2].created_at.to_rfc3339(),
        "2026-01-01T00:00:01+00:00"
    );

    // The author of the hidden reply sees it in its place.
    let seen_by_a = mambo_core::community::post_detail(&pool, a, post)
        .await
        .unwrap()
        .unwrap();
    let order: Vec<Uuid> = seen_by_a.replies.iter().map(|r| r.id).collect();
    assert_eq!(order, vec![answer, under_answer, first, child, hidden]);
    assert!(seen_by_a.replies[4].is_hidden);
    assert_eq!(seen_by_a.post.user_reaction, None);

    // No replies: an empty thread; someone else's hidden post: nothing.
    sqlx::query("DELETE FROM post_replies WHERE post_id = $1")
        .bind(post)
        .execute(&pool)
        .await
        .unwrap();
    let empty = mambo_core::community::post_detail(&pool, a, post)
        .await
        .unwrap()
        .unwrap();
    assert!(empty.replies.is_empty());
    sqlx::query("UPDATE posts SET is_hidden = true WHERE id = $1")
        .bind(post)
        .execute(&pool)
        .await
        .unwrap();
    assert!(
        mambo_core::community::post_detail(&pool, a, post)
            .await
            .unwrap()
            .is_none()
    );
    pool.close().await;
}
