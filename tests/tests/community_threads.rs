//! Community threads and moderation (issue 17, API-NEXT.md §N4.1, N4.2, N4.4):
//! nested replies, reply edit and delete, saved posts, reports, automatic
//! hiding and the admin's moderation queue.

use mambo_tests::{StatusCode, TestApp, TestUser, UserSpec, json};
use serde_json::{Value, json};
use uuid::Uuid;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

async fn rich(app: &TestApp) -> TestUser {
    app.create_user(UserSpec {
        claves: 200,
        ..Default::default()
    })
    .await
}

async fn call(
    app: &TestApp,
    user: &TestUser,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = match method {
        "GET" => app.get(path),
        "POST" => app.post(path),
        "PUT" => app.put(path),
        "DELETE" => app.delete(path),
        _ => unreachable!(),
    }
    .header("Authorization", user.bearer());
    if let Some(b) = body {
        req = req.json(&b);
    }
    json(req.send().await.unwrap()).await
}

async fn create_lab(app: &TestApp, user: &TestUser, title: &str) -> String {
    let (s, v) = call(
        app,
        user,
        "POST",
        "/api/community/posts",
        Some(json!({"post_type": "lab", "title": title, "body": "How?", "tags": ["timing"]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["post"]["id"].as_str().unwrap().to_string()
}

/// Replies and returns the new reply's id.
async fn reply(
    app: &TestApp,
    user: &TestUser,
    post: &str,
    content: &str,
    parent: Option<&str>,
) -> String {
    let mut body = json!({ "content": content });
    if let Some(p) = parent {
        body["parent_reply_id"] = json!(p);
    }
    let (s, v) = call(
        app,
        user,
        "POST",
        &format!("/api/community/posts/{post}/replies"),
        Some(body),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["reply"]["id"].as_str().unwrap().to_string()
}

async fn detail(app: &TestApp, user: &TestUser, post: &str) -> (StatusCode, Value) {
    call(
        app,
        user,
        "GET",
        &format!("/api/community/posts/{post}"),
        None,
    )
    .await
}

/// `reply_count` as the detail shows it, checked against the rows.
async fn reply_count(app: &TestApp, user: &TestUser, post: &str) -> i64 {
    let (s, v) = detail(app, user, post).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM post_replies WHERE post_id = $1")
        .bind(post.parse::<Uuid>().unwrap())
        .fetch_one(app.db())
        .await
        .unwrap();
    let shown = v["reply_count"].as_i64().unwrap();
    assert_eq!(shown, rows, "reply_count must equal the post's reply rows");
    shown
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

/// (actor_id, action, target_id, before, after) of an audit row.
type AuditRow = (Option<Uuid>, String, String, Option<Value>, Option<Value>);

fn message(v: &Value) -> &str {
    v["detail"]["message"].as_str().unwrap_or_default()
}

// ---------------------------------------------------------------------------
// N4.1 Nested replies
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_replies_attach_to_the_top_level_reply_in_thread_order() {
    let app = TestApp::spawn_api_only().await;
    let owner = rich(&app).await;
    let ana = rich(&app).await;
    let ben = rich(&app).await;
    let post = create_lab(&app, &owner, "Cross body lead timing").await;
    let other_post = create_lab(&app, &owner, "Another question").await;

    let a = reply(&app, &ana, &post, "first", None).await;
    let b = reply(&app, &ben, &post, "second", None).await;
    let a1 = reply(&app, &ben, &post, "answer to first", Some(&a)).await;
    // A reply to a nested reply goes under the same top-level reply.
    let a2 = reply(&app, &owner, &post, "answer to the answer", Some(&a1)).await;
    let b1 = reply(&app, &ana, &post, "answer to second", Some(&b)).await;
    assert_eq!(reply_count(&app, &owner, &post).await, 5);

    let (_, v) = detail(&app, &ana, &post).await;
    let replies = &v["replies"];
    assert_eq!(
        ids(replies),
        vec![a.clone(), a1.clone(), a2.clone(), b.clone(), b1.clone()]
    );
    assert_eq!(replies[0]["parent_reply_id"], Value::Null);
    assert_eq!(replies[1]["parent_reply_id"], a);
    assert_eq!(replies[2]["parent_reply_id"], a);
    assert_eq!(replies[4]["parent_reply_id"], b);
    assert_eq!(replies[0]["is_deleted"], false);

    // Unknown parent, a parent on another post, a malformed parent: 400.
    let foreign = reply(&app, &ana, &other_post, "elsewhere", None).await;
    for parent in [Uuid::new_v4().to_string(), foreign, "nope".to_string()] {
        let (s, v) = call(
            &app,
            &ben,
            "POST",
            &format!("/api/community/posts/{post}/replies"),
            Some(json!({"content": "x", "parent_reply_id": parent})),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(message(&v), "Invalid parent reply");
    }
    assert_eq!(reply_count(&app, &owner, &post).await, 5);

    // Only top-level replies can be accepted.
    let accept = |r: &str| format!("/api/community/posts/{post}/replies/{r}/accept");
    let (s, v) = call(&app, &owner, "POST", &accept(&a1), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(message(&v), "Only top-level replies can be accepted");
    let (s, v) = call(&app, &owner, "POST", &accept(&b), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The accepted answer's thread comes first.
    let (_, v) = detail(&app, &ana, &post).await;
    assert_eq!(ids(&v["replies"]), vec![b.clone(), b1, a, a1, a2]);
    assert_eq!(v["replies"][0]["is_accepted_answer"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_reply_notifies_the_post_owner_and_the_parent_author_once_each() {
    let app = TestApp::spawn_api_only().await;
    let owner = rich(&app).await;
    let ana = rich(&app).await;
    let ben = rich(&app).await;
    let post = create_lab(&app, &owner, "Shines").await;
    let a = reply(&app, &ana, &post, "top", None).await;
    let a1 = reply(&app, &ben, &post, "nested", Some(&a)).await;

    let notes = |reply: String| {
        let app = &app;
        async move {
            let rows: Vec<(Uuid, String)> = sqlx::query_as(
                "SELECT user_id, message FROM notifications
                 WHERE type = 'reply_received' AND dedup_key = $1 ORDER BY user_id",
            )
            .bind(format!("reply:{reply}"))
            .fetch_all(app.db())
            .await
            .unwrap();
            rows
        }
    };
    let mut expected = vec![
        (owner.id, "replied to your post \"Shines\"".to_string()),
        (ana.id, "replied to your comment on \"Shines\"".to_string()),
    ];
    expected.sort();
    assert_eq!(notes(a1.clone()).await, expected);

    // The owner answering Ana's comment: Ana once, the owner (the actor) never.
    let o1 = reply(&app, &owner, &post, "thanks", Some(&a1)).await;
    // The direct parent's author is Ben.
    assert_eq!(
        notes(o1).await,
        vec![(ben.id, "replied to your comment on \"Shines\"".to_string())]
    );
    // A nested reply on the owner's own comment: one notification, as owner.
    let o = reply(&app, &owner, &post, "my own comment", None).await;
    let n = reply(&app, &ana, &post, "on the owner's comment", Some(&o)).await;
    assert_eq!(
        notes(n).await,
        vec![(owner.id, "replied to your post \"Shines\"".to_string())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_are_edited_and_deleted_by_their_author_or_an_admin() {
    let app = TestApp::spawn_api_only().await;
    let owner = rich(&app).await;
    let ana = rich(&app).await;
    let ben = rich(&app).await;
    let admin = app.admin().await;
    let post = create_lab(&app, &owner, "Edits").await;
    let a = reply(&app, &ana, &post, "top", None).await;
    let path = |r: &str| format!("/api/community/posts/{post}/replies/{r}");

    // Edit: author and admin yes; the post owner and a stranger no, whatever
    // the body.
    let (s, v) = call(
        &app,
        &ana,
        "PUT",
        &path(&a),
        Some(json!({"content": "edited"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["content"], "edited");
    assert_eq!(v["id"], a);
    assert_eq!(v["is_deleted"], false);
    let (s, v) = call(
        &app,
        &admin,
        "PUT",
        &path(&a),
        Some(json!({"content": "by admin"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    for stranger in [&owner, &ben] {
        for body in [
            json!({"content": "hijack"}),
            json!({"content": ""}),
            json!({}),
        ] {
            let (s, v) = call(&app, stranger, "PUT", &path(&a), Some(body)).await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
            assert_eq!(message(&v), "Not authorized");
        }
    }
    let (s, _) = call(&app, &ana, "PUT", &path(&a), Some(json!({"content": ""}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, v) = call(
        &app,
        &ana,
        "PUT",
        &path("nope"),
        Some(json!({"content": "x"})),
    )
    .await;
    assert_eq!((s, message(&v)), (StatusCode::NOT_FOUND, "Reply not found"));
    let (s, v) = call(
        &app,
        &ana,
        "PUT",
        &format!("/api/community/posts/nope/replies/{a}"),
        Some(json!({"content": "x"})),
    )
    .await;
    assert_eq!((s, message(&v)), (StatusCode::NOT_FOUND, "Post not found"));
    let (_, v) = detail(&app, &owner, &post).await;
    assert_eq!(v["replies"][0]["content"], "by admin");

    // Delete: a stranger no; a reply with children stays as `[deleted]`.
    let a1 = reply(&app, &ben, &post, "child one", Some(&a)).await;
    let a2 = reply(&app, &owner, &post, "child two", Some(&a)).await;
    assert_eq!(reply_count(&app, &owner, &post).await, 3);
    let (s, v) = call(&app, &ben, "DELETE", &path(&a), None).await;
    assert_eq!((s, message(&v)), (StatusCode::FORBIDDEN, "Not authorized"));
    let (s, v) = call(&app, &ana, "DELETE", &path(&a), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"success": true}));
    assert_eq!(reply_count(&app, &owner, &post).await, 3);
    let (_, v) = detail(&app, &owner, &post).await;
    assert_eq!(ids(&v["replies"]), vec![a.clone(), a1.clone(), a2.clone()]);
    assert_eq!(v["replies"][0]["is_deleted"], true);
    assert_eq!(v["replies"][0]["content"], "[deleted]");
    // A placeholder cannot be edited or deleted again.
    let (s, _) = call(
        &app,
        &ana,
        "PUT",
        &path(&a),
        Some(json!({"content": "back"})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = call(&app, &ana, "DELETE", &path(&a), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Nor answered.
    let (s, v) = call(
        &app,
        &ben,
        "POST",
        &format!("/api/community/posts/{post}/replies"),
        Some(json!({"content": "x", "parent_reply_id": a})),
    )
    .await;
    assert_eq!(
        (s, message(&v)),
        (StatusCode::BAD_REQUEST, "Invalid parent reply")
    );

    // The children go (author, then admin); with the last one the placeholder
    // goes too.
    let (s, _) = call(&app, &ben, "DELETE", &path(&a1), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(reply_count(&app, &owner, &post).await, 2);
    let (s, _) = call(&app, &admin, "DELETE", &path(&a2), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(reply_count(&app, &owner, &post).await, 0);
    let (_, v) = detail(&app, &owner, &post).await;
    assert_eq!(v["replies"], json!([]));

    // A reply without children is simply removed; an accepted answer stays.
    let b = reply(&app, &ana, &post, "the answer", None).await;
    let c = reply(&app, &ben, &post, "another", None).await;
    assert_eq!(reply_count(&app, &owner, &post).await, 2);
    let (s, _) = call(
        &app,
        &owner,
        "POST",
        &format!("/api/community/posts/{post}/replies/{b}/accept"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    for who in [&ana, &admin] {
        let (s, v) = call(&app, who, "DELETE", &path(&b), None).await;
        assert_eq!(
            (s, message(&v)),
            (
                StatusCode::BAD_REQUEST,
                "Accepted answers cannot be deleted"
            )
        );
    }
    let (s, _) = call(&app, &ben, "DELETE", &path(&c), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(reply_count(&app, &owner, &post).await, 1);
    let (_, v) = detail(&app, &owner, &post).await;
    assert_eq!(ids(&v["replies"]), vec![b]);

    // An admin's edit or delete of someone else's content leaves an audit
    // row with the row before (and after); the authors' own leave none.
    let audits: Vec<AuditRow> = sqlx::query_as(
        "SELECT actor_id, action, target_id, before, after FROM audit_log
             ORDER BY created_at, id",
    )
    .fetch_all(app.db())
    .await
    .unwrap();
    let actions: Vec<(&str, &str)> = audits
        .iter()
        .map(|a| (a.1.as_str(), a.2.as_str()))
        .collect();
    assert_eq!(
        actions,
        vec![("reply.update", a.as_str()), ("reply.delete", a2.as_str())]
    );
    assert!(audits.iter().all(|a| a.0 == Some(admin.id)));
    assert_eq!(audits[0].3.as_ref().unwrap()["content"], "edited");
    assert_eq!(audits[0].4.as_ref().unwrap()["content"], "by admin");
    assert_eq!(audits[1].3.as_ref().unwrap()["content"], "child two");
    assert_eq!(audits[1].4, None);
    let (s, _) = call(
        &app,
        &admin,
        "DELETE",
        &format!("/api/community/posts/{post}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (action, before): (String, Value) =
        sqlx::query_as("SELECT action, before FROM audit_log WHERE target_id = $1")
            .bind(&post)
            .fetch_one(app.db())
            .await
            .unwrap();
    assert_eq!(action, "post.delete");
    assert_eq!(before["title"], "Edits");
}

// ---------------------------------------------------------------------------
// N4.2 Saved posts
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saving_is_idempotent_and_the_saved_list_is_newest_first() {
    let app = TestApp::spawn_api_only().await;
    let owner = rich(&app).await;
    let fan = rich(&app).await;
    let p1 = create_lab(&app, &owner, "First question").await;
    let p2 = create_lab(&app, &owner, "Second question").await;
    let p3 = create_lab(&app, &owner, "Third question").await;
    let save = |p: &str| format!("/api/community/posts/{p}/save");

    for p in [&p2, &p1, &p3] {
        for _ in 0..2 {
            let (s, v) = call(&app, &fan, "POST", &save(p), None).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            assert_eq!(v, json!({"success": true, "saved": true}));
        }
    }
    let (s, v) = call(&app, &fan, "GET", "/api/community/saved", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(ids(&v), vec![p3.clone(), p1.clone(), p2.clone()]);
    // The items are PostItems as the feed shows them.
    assert_eq!(v[0]["title"], "Third question");
    assert_eq!(v[0]["user"]["id"], owner.id.to_string());
    assert_eq!(v[0]["user_reaction"], Value::Null);
    let (_, v) = call(
        &app,
        &fan,
        "GET",
        "/api/community/saved?skip=1&limit=1",
        None,
    )
    .await;
    assert_eq!(ids(&v), vec![p1.clone()]);
    let (s, _) = call(&app, &fan, "GET", "/api/community/saved?limit=0", None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // Another user's list is their own.
    let (_, v) = call(&app, &owner, "GET", "/api/community/saved", None).await;
    assert_eq!(v, json!([]));

    for _ in 0..2 {
        let (s, v) = call(&app, &fan, "DELETE", &save(&p1), None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v, json!({"success": true, "saved": false}));
    }
    let (_, v) = call(&app, &fan, "GET", "/api/community/saved", None).await;
    assert_eq!(ids(&v), vec![p3.clone(), p2.clone()]);

    // Unknown and malformed posts are not found; a deleted post leaves the list.
    for p in [Uuid::new_v4().to_string(), "nope".to_string()] {
        let (s, v) = call(&app, &fan, "POST", &save(&p), None).await;
        assert_eq!((s, message(&v)), (StatusCode::NOT_FOUND, "Post not found"));
    }
    let (s, _) = call(
        &app,
        &owner,
        "DELETE",
        &format!("/api/community/posts/{p3}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (_, v) = call(&app, &fan, "GET", "/api/community/saved", None).await;
    assert_eq!(ids(&v), vec![p2]);
}

// ---------------------------------------------------------------------------
// N4.4 Reports and moderation
// ---------------------------------------------------------------------------

async fn report(app: &TestApp, user: &TestUser, path: &str, reason: &str) -> (StatusCode, Value) {
    call(
        app,
        user,
        "POST",
        &format!("{path}/report"),
        Some(json!({"reason": reason, "note": "not nice"})),
    )
    .await
}

async fn feed_ids(app: &TestApp, user: &TestUser) -> Vec<String> {
    let (s, v) = call(app, user, "GET", "/api/community/feed?limit=50", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    ids(&v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_is_taken_once_and_never_on_your_own_content() {
    let app = TestApp::spawn_api_only().await;
    let owner = rich(&app).await;
    let fan = rich(&app).await;
    let post = create_lab(&app, &owner, "Reported question").await;
    let r = reply(&app, &fan, &post, "a reply", None).await;
    let post_path = format!("/api/community/posts/{post}");
    let reply_path = format!("{post_path}/replies/{r}");

    let (s, v) = report(&app, &fan, &post_path, "spam").await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v, json!({"success": true}));
    let (s, v) = report(&app, &fan, &post_path, "other").await;
    assert_eq!((s, message(&v)), (StatusCode::CONFLICT, "Already reported"));
    let (s, v) = report(&app, &owner, &post_path, "spam").await;
    assert_eq!(
        (s, message(&v)),
        (
            StatusCode::BAD_REQUEST,
            "You cannot report your own content"
        )
    );
    let (s, v) = report(&app, &owner, &reply_path, "harassment").await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = report(&app, &fan, &reply_path, "harassment").await;
    assert_eq!(
        (s, message(&v)),
        (
            StatusCode::BAD_REQUEST,
            "You cannot report your own content"
        )
    );
    // Input and ids.
    let other = rich(&app).await;
    let (s, _) = report(&app, &other, &post_path, "boring").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = call(
        &app,
        &other,
        "POST",
        &format!("{post_path}/report"),
        Some(json!({"reason": "other", "note": "x".repeat(501)})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, v) = report(&app, &other, "/api/community/posts/nope", "spam").await;
    assert_eq!((s, message(&v)), (StatusCode::NOT_FOUND, "Post not found"));
    let (s, v) = report(&app, &other, &format!("{post_path}/replies/nope"), "spam").await;
    assert_eq!((s, message(&v)), (StatusCode::NOT_FOUND, "Reply not found"));
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM content_reports")
        .fetch_one(app.db())
        .await
        .unwrap();
    assert_eq!(rows, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_reported_by_enough_users_is_hidden_from_everyone_but_its_author() {
    let app = TestApp::spawn_api_only().await;
    let owner = rich(&app).await;
    let viewer = rich(&app).await;
    let admin = app.admin().await;
    let reporters = [rich(&app).await, rich(&app).await, rich(&app).await];
    let post = create_lab(&app, &owner, "Zebra salsa question").await;
    let other = create_lab(&app, &owner, "A fine question").await;
    let post_path = format!("/api/community/posts/{post}");
    // Saved and in the (cached) feed before it is hidden.
    let (s, _) = call(&app, &viewer, "POST", &format!("{post_path}/save"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        feed_ids(&app, &viewer).await,
        vec![other.clone(), post.clone()]
    );

    for (i, r) in reporters.iter().enumerate() {
        let (s, v) = report(&app, r, &post_path, "inappropriate").await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let hidden: bool = sqlx::query_scalar("SELECT is_hidden FROM posts WHERE id = $1")
            .bind(post.parse::<Uuid>().unwrap())
            .fetch_one(app.db())
            .await
            .unwrap();
        assert_eq!(hidden, i == 2, "hidden at the third distinct reporter");
    }

    // Everyone else: gone from the feed, search, detail and saved list, and
    // out of reach for writes.
    assert_eq!(feed_ids(&app, &viewer).await, vec![other.clone()]);
    let (_, v) = call(&app, &viewer, "GET", "/api/community/search?q=zebra", None).await;
    assert_eq!(v, json!([]));
    let (s, v) = detail(&app, &viewer, &post).await;
    assert_eq!(
        (s, v),
        (StatusCode::NOT_FOUND, json!({"detail": "Post not found"}))
    );
    let (_, v) = call(&app, &viewer, "GET", "/api/community/saved", None).await;
    assert_eq!(v, json!([]));
    for (method, path, body) in [
        ("POST", format!("{post_path}/save"), None),
        (
            "POST",
            format!("{post_path}/react"),
            Some(json!({"reaction_type": "fire"})),
        ),
        (
            "POST",
            format!("{post_path}/replies"),
            Some(json!({"content": "hi"})),
        ),
        (
            "POST",
            format!("{post_path}/report"),
            Some(json!({"reason": "spam"})),
        ),
    ] {
        let (s, v) = call(&app, &viewer, method, &path, body).await;
        assert_eq!(
            (s, message(&v)),
            (StatusCode::NOT_FOUND, "Post not found"),
            "{path}"
        );
    }

    // The author and admins still see it, marked.
    for who in [&owner, &admin] {
        let (s, v) = detail(&app, who, &post).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["is_hidden"], true);
    }
    let (_, v) = call(&app, &owner, "GET", "/api/community/feed?limit=50", None).await;
    assert_eq!(ids(&v), vec![other.clone(), post.clone()]);
    assert_eq!(v[1]["is_hidden"], true);
    assert_eq!(v[0]["is_hidden"], false);
    let (_, v) = call(&app, &owner, "GET", "/api/community/search?q=zebra", None).await;
    assert_eq!(ids(&v), vec![post.clone()]);
    let (_, v) = call(&app, &admin, "GET", "/api/community/feed?limit=50", None).await;
    assert!(ids(&v).contains(&post));

    // A hidden reply: gone for others, marked for its author.
    let other_path = format!("/api/community/posts/{other}");
    let r = reply(&app, &viewer, &other, "rude reply", None).await;
    for rep in &reporters {
        let (s, v) = report(
            &app,
            rep,
            &format!("{other_path}/replies/{r}"),
            "harassment",
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let (_, v) = detail(&app, &owner, &other).await;
    assert_eq!(v["replies"], json!([]));
    let (_, v) = detail(&app, &viewer, &other).await;
    assert_eq!(ids(&v["replies"]), vec![r.clone()]);
    assert_eq!(v["replies"][0]["is_hidden"], true);
    let (s, v) = call(
        &app,
        &owner,
        "POST",
        &format!("{other_path}/replies"),
        Some(json!({"content": "x", "parent_reply_id": r})),
    )
    .await;
    assert_eq!(
        (s, message(&v)),
        (StatusCode::BAD_REQUEST, "Invalid parent reply")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_resolve_reports_with_hide_unhide_dismiss_and_delete() {
    let app = TestApp::spawn_api_only().await;
    let owner = rich(&app).await;
    let viewer = rich(&app).await;
    let admin = app.admin().await;
    let reporters = [rich(&app).await, rich(&app).await, rich(&app).await];
    let post = create_lab(&app, &owner, "Moderated question").await;
    let post_path = format!("/api/community/posts/{post}");
    for r in &reporters {
        report(&app, r, &post_path, "spam").await;
    }
    let queue = "/api/admin/moderation/reports";
    let (s, v) = call(&app, &admin, "GET", queue, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v.as_array().unwrap().len(), 3);
    let item = &v[0];
    assert_eq!(item["target_type"], "post");
    assert_eq!(item["target_id"], post);
    assert_eq!(item["post_id"], post);
    assert_eq!(item["reason"], "spam");
    assert_eq!(item["note"], "not nice");
    assert_eq!(item["reporter"]["id"], reporters[2].id.to_string());
    assert_eq!(item["report_count"], 3);
    assert_eq!(item["is_hidden"], true);
    assert_eq!(item["status"], "open");
    assert_eq!(item["resolved_at"], Value::Null);
    assert_eq!(item["resolution"], Value::Null);
    let report_id = item["id"].as_str().unwrap().to_string();
    let resolve = |id: &str| format!("{queue}/{id}/resolve");

    // Only admins; unknown, malformed, bad action.
    let (s, _) = call(&app, &viewer, "GET", queue, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(
        &app,
        &viewer,
        "POST",
        &resolve(&report_id),
        Some(json!({"action": "unhide"})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    for id in [Uuid::new_v4().to_string(), "nope".into()] {
        let (s, v) = call(
            &app,
            &admin,
            "POST",
            &resolve(&id),
            Some(json!({"action": "hide"})),
        )
        .await;
        assert_eq!(
            (s, v["detail"].clone()),
            (StatusCode::NOT_FOUND, json!("Report not found"))
        );
    }
    let (s, _) = call(
        &app,
        &admin,
        "POST",
        &resolve(&report_id),
        Some(json!({"action": "ban"})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = call(&app, &admin, "GET", &format!("{queue}?status=closed"), None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // unhide: every open report on the target is resolved, the post is back.
    let (s, v) = call(
        &app,
        &admin,
        "POST",
        &resolve(&report_id),
        Some(json!({"action": "unhide"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"success": true}));
    assert!(feed_ids(&app, &viewer).await.contains(&post));
    let (_, v) = call(&app, &admin, "GET", queue, None).await;
    assert_eq!(v, json!([]));
    let (_, v) = call(
        &app,
        &admin,
        "GET",
        &format!("{queue}?status=resolved"),
        None,
    )
    .await;
    assert_eq!(v.as_array().unwrap().len(), 3);
    assert_eq!(v[0]["resolution"], "unhide");
    assert_eq!(v[0]["is_hidden"], false);
    assert!(v[0]["resolved_at"].is_string());
    let audits: Vec<(Option<Uuid>, String, Value)> = sqlx::query_as(
        "SELECT actor_id, target_id, after FROM audit_log WHERE action = 'report.resolve'",
    )
    .fetch_all(app.db())
    .await
    .unwrap();
    assert_eq!(audits.len(), 1);
    assert_eq!(audits[0].0, Some(admin.id));
    assert_eq!(audits[0].1, report_id);
    assert_eq!(audits[0].2["action"], "unhide");
    assert_eq!(audits[0].2["reports_resolved"], 3);

    // The same users may report again; hide with a single report.
    let (s, _) = report(&app, &reporters[0], &post_path, "other").await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, v) = call(&app, &admin, "GET", queue, None).await;
    let id = v[0]["id"].as_str().unwrap().to_string();
    let (s, _) = call(
        &app,
        &admin,
        "POST",
        &resolve(&id),
        Some(json!({"action": "hide"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(!feed_ids(&app, &viewer).await.contains(&post));

    // dismiss: the content stays as it is.
    let other = create_lab(&app, &owner, "Another question").await;
    let other_path = format!("/api/community/posts/{other}");
    report(&app, &viewer, &other_path, "spam").await;
    let (_, v) = call(&app, &admin, "GET", queue, None).await;
    let id = v[0]["id"].as_str().unwrap().to_string();
    let (s, _) = call(
        &app,
        &admin,
        "POST",
        &resolve(&id),
        Some(json!({"action": "dismiss"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(feed_ids(&app, &viewer).await.contains(&other));
    let (_, v) = call(&app, &admin, "GET", queue, None).await;
    assert_eq!(v, json!([]));

    // delete a reply: as its author could (reply_count follows).
    let r = reply(&app, &viewer, &other, "spammy reply", None).await;
    assert_eq!(reply_count(&app, &owner, &other).await, 1);
    report(&app, &owner, &format!("{other_path}/replies/{r}"), "spam").await;
    let (_, v) = call(&app, &admin, "GET", queue, None).await;
    assert_eq!(v[0]["target_type"], "reply");
    assert_eq!(v[0]["target_id"], r);
    let id = v[0]["id"].as_str().unwrap().to_string();
    let (s, v) = call(
        &app,
        &admin,
        "POST",
        &resolve(&id),
        Some(json!({"action": "delete"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(reply_count(&app, &owner, &other).await, 0);

    // delete a post: gone for its author too, tag usage goes down.
    let usage = || async {
        sqlx::query_scalar::<_, i32>("SELECT usage_count FROM community_tags WHERE slug = 'timing'")
            .fetch_one(app.db())
            .await
            .unwrap()
    };
    let before = usage().await;
    report(&app, &viewer, &other_path, "spam").await;
    let (_, v) = call(&app, &admin, "GET", queue, None).await;
    let id = v[0]["id"].as_str().unwrap().to_string();
    let (s, v) = call(
        &app,
        &admin,
        "POST",
        &resolve(&id),
        Some(json!({"action": "delete"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = detail(&app, &owner, &other).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(usage().await, before - 1);
    assert!(!feed_ids(&app, &owner).await.contains(&other));
    let audits: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'report.resolve'")
            .fetch_one(app.db())
            .await
            .unwrap();
    assert_eq!(audits, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolved_reports_are_kept_a_year_and_open_ones_until_resolved() {
    let app = TestApp::spawn_api_only().await;
    let owner = rich(&app).await;
    let fan = rich(&app).await;
    let post: Uuid = create_lab(&app, &owner, "Old question")
        .await
        .parse()
        .unwrap();
    for (status, days) in [("resolved", 400), ("resolved", 300), ("open", 400)] {
        sqlx::query(
            "INSERT INTO content_reports (target_type, target_id, post_id, reporter_id, reason,
                                          status, created_at)
             VALUES ('post', $1, $1, $2, 'spam', $3, now() - make_interval(days => $4))",
        )
        .bind(post)
        .bind(if status == "open" { fan.id } else { owner.id })
        .bind(status)
        .bind(days)
        .execute(app.db())
        .await
        .unwrap();
    }
    let deleted = mambo_core::community::prune_reports(app.db(), chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    let left: Vec<(String, i32)> = sqlx::query_as(
        "SELECT status::text, (now()::date - created_at::date) FROM content_reports
         ORDER BY created_at",
    )
    .fetch_all(app.db())
    .await
    .unwrap();
    assert_eq!(left.len(), 2);
    assert!(left.iter().any(|(s, _)| s == "open"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reports_hide_at_the_threshold_and_counts_stay_exact() {
    let app = TestApp::spawn_with_vars(&[("REPORTS_TO_HIDE", "5")]).await;
    let owner = rich(&app).await;
    let post = create_lab(&app, &owner, "Busy question").await;
    let path = format!("/api/community/posts/{post}");
    let mut users = vec![];
    for _ in 0..8 {
        users.push(rich(&app).await);
    }
    // Each user reports and replies, all at the same time: the fifth report
    // hides the post, and from then on it is not found for them.
    let reports = futures::future::join_all(
        users
            .iter()
            .map(|u| async { report(&app, u, &path, "spam").await.0 }),
    );
    let replies = futures::future::join_all(users.iter().map(|u| async {
        call(
            &app,
            u,
            "POST",
            &format!("{path}/replies"),
            Some(json!({"content": "me too"})),
        )
        .await
        .0
    }));
    let (reports, replies) = futures::join!(reports, replies);
    let count = |v: &[StatusCode], s: StatusCode| v.iter().filter(|x| **x == s).count();
    assert_eq!(count(&reports, StatusCode::CREATED), 5, "{reports:?}");
    assert_eq!(count(&reports, StatusCode::NOT_FOUND), 3, "{reports:?}");
    let replied = count(&replies, StatusCode::OK);
    assert_eq!(
        replied + count(&replies, StatusCode::NOT_FOUND),
        8,
        "{replies:?}"
    );
    let (open, hidden): (i64, bool) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM content_reports WHERE status = 'open'), is_hidden
         FROM posts WHERE id = $1",
    )
    .bind(post.parse::<Uuid>().unwrap())
    .fetch_one(app.db())
    .await
    .unwrap();
    assert_eq!((open, hidden), (5, true));
    assert_eq!(reply_count(&app, &owner, &post).await, replied as i64);
}
