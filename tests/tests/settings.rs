//! Platform settings and the economy presets (API-2026-05.md N6, issue 26):
//! the store, its validation and audit, coherence across replicas, costs and
//! messages from settings, posting rewards (cap, cooldown, once, clawback).

use mambo_tests::{StatusCode, TestApp, TestUser, UserSpec};
use serde_json::{Value, json};
use uuid::Uuid;

/// A paying member (the guild_2026 preset lets only paid members post).
async fn rich(app: &TestApp, claves: i64) -> TestUser {
    app.create_user(UserSpec {
        claves,
        subscription: Some(("active", "advanced")),
        ..Default::default()
    })
    .await
}

async fn ledger_rows(app: &TestApp, user: Uuid, reason: &str) -> Vec<(i32, Option<Uuid>)> {
    sqlx::query_as(
        "SELECT amount, reference_id FROM clave_transactions
         WHERE user_id = $1 AND reason = $2 ORDER BY created_at",
    )
    .bind(user)
    .bind(reason)
    .fetch_all(app.db())
    .await
    .unwrap()
}

async fn audit_actions(app: &TestApp) -> Vec<(String, Option<String>, Value)> {
    sqlx::query_as(
        "SELECT action, target_id, after FROM audit_log
         WHERE target_type = 'settings' ORDER BY created_at",
    )
    .fetch_all(app.db())
    .await
    .unwrap()
}

fn lab(title: &str, body: &str) -> Value {
    json!({"post_type": "lab", "title": title, "body": body, "tags": ["timing"]})
}

const LONG_BODY: &str = "How do I keep my shines on2 when the conga is loud? Any drills?";

#[tokio::test]
async fn a_fresh_database_reports_the_seed_and_admins_only() {
    let app = TestApp::spawn_api_only().await;
    let student = app.student().await;
    let admin = app.admin().await;
    let (s, _) = app.call("GET", "/api/admin/settings", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, v) = app
        .call("GET", "/api/admin/settings", Some(&student), None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(v["detail"], "Not enough permissions");
    // 403 before the body is looked at.
    let (s, _) = app
        .call(
            "PUT",
            "/api/admin/settings",
            Some(&student),
            Some(json!({"economy": {"reaction_cost": "x"}})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    let (s, v) = app
        .call("GET", "/api/admin/settings", Some(&admin), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["preset"], "seed");
    assert_eq!(v["revision"], 0);
    assert_eq!(v["updated_at"], Value::Null);
    assert_eq!(v["economy"]["stage_post_cost"], 15);
    assert_eq!(v["economy"]["daily_claim_base"], json!([1, 3]));
    assert_eq!(v["community"]["participation_min_tier"], "rookie");
    assert_eq!(v["community"]["question_slots_base"], Value::Null);
    assert_eq!(v["guild_master"]["seat_cap"], Value::Null);
    assert_eq!(v["auth"]["send_verification_per_user"], 3);

    let (s, p) = app
        .call("GET", "/api/admin/settings/presets", Some(&admin), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(p["guild_2026"]["economy"]["accepted_answer_reward"], 15);
    assert_eq!(p["seed"]["posting_rewards"]["stage"], 0);
    assert!(
        p["seed"].get("auth").is_none(),
        "auth is not a preset group"
    );
}

#[tokio::test]
async fn changes_merge_validate_audit_and_switch_presets() {
    let app = TestApp::spawn_api_only().await;
    let admin = app.admin().await;
    // Bad values: 422 with the key's location, nothing changes.
    for (body, loc) in [
        (
            json!({"economy": {"reaction_cost": 101}}),
            json!(["body", "economy", "reaction_cost"]),
        ),
        (
            json!({"economy": {"reply_cost": "2"}}),
            json!(["body", "economy", "reply_cost"]),
        ),
        (
            json!({"economy": {"nope": 1}}),
            json!(["body", "economy", "nope"]),
        ),
        (json!({"nope": {"a": 1}}), json!(["body", "nope"])),
        (
            json!({"community": {"participation_min_tier": "gold"}}),
            json!(["body", "community", "participation_min_tier"]),
        ),
    ] {
        let (s, v) = app
            .call(
                "PUT",
                "/api/admin/settings",
                Some(&admin),
                Some(body.clone()),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert_eq!(v["detail"][0]["loc"], loc, "{body}: {v}");
    }
    // Cross-key rules on the merged result.
    let (s, v) = app
        .call(
            "PUT",
            "/api/admin/settings",
            Some(&admin),
            Some(json!({"economy": {"reaction_refund": 2}})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        v["detail"][0]["msg"],
        "Value error, reaction_refund cannot exceed reaction_cost"
    );
    assert_eq!(v["detail"][0]["loc"], json!(["body"]));
    let (s, v) = app
        .call(
            "PUT",
            "/api/admin/settings",
            Some(&admin),
            Some(json!({"economy": {"daily_claim_pro": [9, 8]}})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        v["detail"][0]["msg"],
        "Value error, daily claim minimum cannot exceed maximum"
    );
    assert!(
        audit_actions(&app).await.is_empty(),
        "refused changes write nothing"
    );

    // A group with one key changes that key only; read-only keys are ignored.
    let v = app
        .set_settings(
            &admin,
            json!({"preset": "guild_2026", "revision": 99, "economy": {"reply_cost": 3}}),
        )
        .await;
    assert_eq!(v["economy"]["reply_cost"], 3);
    assert_eq!(v["economy"]["stage_post_cost"], 15);
    assert_eq!(v["revision"], 1);
    assert_eq!(v["preset"], Value::Null, "custom");
    assert_eq!(v["updated_by"], json!(admin.id));
    // A GET-edit-PUT round trip works and, unchanged, writes nothing.
    let (_, got) = app
        .call("GET", "/api/admin/settings", Some(&admin), None)
        .await;
    let v = app.set_settings(&admin, got.clone()).await;
    assert_eq!(v["revision"], 1, "nothing changed, same revision");
    let audits = audit_actions(&app).await;
    assert_eq!(audits.len(), 1);
    assert_eq!(audits[0].0, "settings.update");
    assert_eq!(audits[0].1, None, "target_id is null");
    assert_eq!(audits[0].2, json!({"economy": {"reply_cost": 3}}));

    // Presets set the five groups and leave `auth` alone.
    app.set_settings(&admin, json!({"auth": {"register_ip_per_hour": 7}}))
        .await;
    let v = app.set_preset(&admin, "guild_2026").await;
    assert_eq!(v["preset"], "guild_2026");
    assert_eq!(v["economy"]["reply_cost"], 0);
    assert_eq!(v["posting_rewards"]["stage"], 40);
    assert_eq!(v["guild_master"]["seat_cap"], 30);
    assert_eq!(v["auth"]["register_ip_per_hour"], 7);
    let audits = audit_actions(&app).await;
    assert_eq!(audits.last().unwrap().0, "settings.preset");
    assert_eq!(audits.last().unwrap().2["preset"], "guild_2026");
    let v = app.set_preset(&admin, "seed").await;
    assert_eq!(v["preset"], "seed");
    assert_eq!(v["economy"]["reply_cost"], 2);
    let (s, _) = app
        .call(
            "POST",
            "/api/admin/settings/preset",
            Some(&admin),
            Some(json!({"preset": "gold"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn two_admins_saving_at_once_keep_each_others_keys() {
    let app = TestApp::spawn_api_only().await;
    let admin = app.admin().await;
    let keys = [
        ("economy", "reply_cost", 4),
        ("economy", "reaction_refund_cap", 7),
        ("economy", "stage_post_cost", 20),
        ("economy", "lab_post_cost", 6),
        ("posting_rewards", "daily_cap", 100),
        ("posting_rewards", "cooldown_seconds", 30),
        ("streaks", "freeze_cost", 12),
        ("auth", "waitlist_ip_per_hour", 5),
    ];
    let mut tasks = vec![];
    for (g, k, n) in keys {
        let (base, token) = (app.base.clone(), admin.bearer());
        tasks.push(tokio::spawn(async move {
            reqwest::Client::new()
                .put(format!("{base}/api/admin/settings"))
                .header("Authorization", token)
                .json(&json!({ g: { k: n } }))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    let (_, v) = app
        .call("GET", "/api/admin/settings", Some(&admin), None)
        .await;
    for (g, k, n) in keys {
        assert_eq!(v[g][k], n, "{g}.{k}");
    }
    assert_eq!(v["revision"], keys.len());
}

#[tokio::test]
async fn a_change_reaches_the_other_replica_within_a_second() {
    let app = TestApp::spawn_api_only().await;
    let peer = app.spawn_peer_with(true, false, &[]).await;
    let admin = app.admin().await;
    let author = rich(&app, 100).await;
    // Warm the peer's copy first.
    let (s, v) = mambo_tests::json(
        peer.post("/api/community/posts")
            .header("Authorization", author.bearer())
            .json(&lab("First question", "Is this on2?"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["message"], "Post created! (-5 🥢)");
    app.set_settings(&admin, json!({"economy": {"lab_post_cost": 0}}))
        .await;
    // The writer applies it to its next request.
    let (s, v) = app
        .call(
            "POST",
            "/api/community/posts",
            Some(&author),
            Some(lab("Second question", "Is this on1?")),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["message"], "Post created!");
    // The other replica within a second (the Redis message, or the revision
    // check that stands in for a lost one).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (s, v) = mambo_tests::json(
        peer.post("/api/community/posts")
            .header("Authorization", author.bearer())
            .json(&lab("Third question", "Is this salsa?"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["message"], "Post created!");
    let (b, l) = app.balance_and_ledger(author.id).await;
    assert_eq!((b, l), (95, 95));
    assert_eq!(ledger_rows(&app, author.id, "post_lab").await.len(), 1);
}

#[tokio::test]
async fn free_engagement_writes_no_ledger_rows_and_says_so() {
    let app = TestApp::spawn_api_only().await;
    let admin = app.admin().await;
    app.set_preset(&admin, "guild_2026").await;
    let author = rich(&app, 0).await;
    let helper = rich(&app, 0).await;
    let (s, v) = app
        .call(
            "POST",
            "/api/community/posts",
            Some(&author),
            Some(lab("Broke question", "short")),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["message"], "Post created!");
    assert_eq!(v["reward"], Value::Null, "a short body earns nothing");
    let post_id = v["post"]["id"].as_str().unwrap().to_string();
    let (s, v) = app
        .call(
            "POST",
            &format!("/api/community/posts/{post_id}/react"),
            Some(&helper),
            Some(json!({"reaction_type": "fire"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["message"], "Reacted with fire!");
    let (s, v) = app
        .call(
            "POST",
            &format!("/api/community/posts/{post_id}/replies"),
            Some(&helper),
            Some(json!({"content": "Count the clave"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["message"], "Comment posted!");
    let reply_id = v["reply"]["id"].as_str().unwrap().to_string();
    let (s, v) = app
        .call(
            "POST",
            &format!("/api/community/posts/{post_id}/replies/{reply_id}/accept"),
            Some(&author),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["message"], "Solution marked! Helper awarded 15 🥢");
    for u in [&author, &helper] {
        let rows: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM clave_transactions WHERE user_id = $1 AND amount = 0",
        )
        .bind(u.id)
        .fetch_one(app.db())
        .await
        .unwrap();
        assert_eq!(rows, 0, "no zero rows");
        let (b, l) = app.balance_and_ledger(u.id).await;
        assert_eq!(b, l);
    }
    assert_eq!(app.balance_and_ledger(helper.id).await.0, 15);
    // A reward of 0 writes no row and says so.
    app.set_settings(&admin, json!({"economy": {"accepted_answer_reward": 0}}))
        .await;
    let (_, v) = app
        .call(
            "POST",
            "/api/community/posts",
            Some(&author),
            Some(lab("Another one", "short")),
        )
        .await;
    let post2 = v["post"]["id"].as_str().unwrap().to_string();
    let (_, v) = app
        .call(
            "POST",
            &format!("/api/community/posts/{post2}/replies"),
            Some(&helper),
            Some(json!({"content": "Again the clave"})),
        )
        .await;
    let reply2 = v["reply"]["id"].as_str().unwrap().to_string();
    let (s, v) = app
        .call(
            "POST",
            &format!("/api/community/posts/{post2}/replies/{reply2}/accept"),
            Some(&author),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["message"], "Solution marked!");
    assert_eq!(
        ledger_rows(&app, helper.id, "accepted_answer").await.len(),
        1
    );
}

#[tokio::test]
async fn lab_rewards_follow_the_cap_the_cooldown_and_are_paid_once() {
    let app = TestApp::spawn_api_only().await;
    let admin = app.admin().await;
    app.set_preset(&admin, "guild_2026").await;
    app.set_settings(
        &admin,
        json!({"posting_rewards": {"lab": 50, "daily_cap": 120, "cooldown_seconds": 60}}),
    )
    .await;
    let author = rich(&app, 0).await;
    let post = |title: &str| {
        let title = title.to_string();
        let app = &app;
        let author = &author;
        async move {
            app.call(
                "POST",
                "/api/community/posts",
                Some(author),
                Some(lab(&title, LONG_BODY)),
            )
            .await
        }
    };
    let (s, v) = post("Question one").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["reward"],
        json!({"amount": 50, "reason": "post_reward", "new_balance": 50})
    );
    // Within the cooldown: not paid, and never later.
    let (_, v) = post("Question two").await;
    assert_eq!(v["reward"], Value::Null);
    app.ctx.clock.advance(chrono::Duration::seconds(61));
    let (_, v) = post("Question three").await;
    assert_eq!(v["reward"]["amount"], 50);
    app.ctx.clock.advance(chrono::Duration::seconds(61));
    // The post that reaches the cap gets the remainder.
    let (_, v) = post("Question four").await;
    assert_eq!(v["reward"]["amount"], 20);
    assert_eq!(v["reward"]["new_balance"], 120);
    app.ctx.clock.advance(chrono::Duration::seconds(61));
    let (_, v) = post("Question five").await;
    assert_eq!(v["reward"], Value::Null, "capped");
    let rows = ledger_rows(&app, author.id, "post_reward").await;
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![50, 50, 20]
    );
    let (b, l) = app.balance_and_ledger(author.id).await;
    assert_eq!((b, l), (120, 120));
}

#[tokio::test]
async fn parallel_posts_by_one_author_respect_the_cap_and_cooldown() {
    let app = TestApp::spawn_api_only().await;
    let admin = app.admin().await;
    app.set_preset(&admin, "guild_2026").await;
    app.set_settings(
        &admin,
        json!({"posting_rewards": {"lab": 30, "daily_cap": 70, "cooldown_seconds": 0}}),
    )
    .await;
    let author = rich(&app, 0).await;
    let mut tasks = vec![];
    for i in 0..10 {
        let (base, token) = (app.base.clone(), author.bearer());
        tasks.push(tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{base}/api/community/posts"))
                .header("Authorization", token)
                .json(&lab(&format!("Parallel question {i}"), LONG_BODY))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    let rows = ledger_rows(&app, author.id, "post_reward").await;
    let total: i32 = rows.iter().map(|r| r.0).sum();
    assert_eq!(total, 70, "the cap holds under concurrency: {rows:?}");
    let (b, l) = app.balance_and_ledger(author.id).await;
    assert_eq!((b, l), (70, 70));
}

#[tokio::test]
async fn deleting_or_hiding_a_rewarded_post_claws_the_reward_back() {
    let app = TestApp::spawn_api_only().await;
    let admin = app.admin().await;
    app.set_preset(&admin, "guild_2026").await;
    app.set_settings(
        &admin,
        json!({"posting_rewards": {"lab": 12, "cooldown_seconds": 0}}),
    )
    .await;
    let author = rich(&app, 0).await;
    let (_, v) = app
        .call(
            "POST",
            "/api/community/posts",
            Some(&author),
            Some(lab("Clawed question", LONG_BODY)),
        )
        .await;
    assert_eq!(v["reward"]["amount"], 12);
    let first = v["post"]["id"].as_str().unwrap().to_string();
    let (_, v) = app
        .call(
            "POST",
            "/api/community/posts",
            Some(&author),
            Some(lab("Hidden question", LONG_BODY)),
        )
        .await;
    assert_eq!(v["reward"]["amount"], 12);
    let second = v["post"]["id"].as_str().unwrap().to_string();
    let (_, v) = app
        .call(
            "POST",
            "/api/community/posts",
            Some(&author),
            Some(lab("Old question", LONG_BODY)),
        )
        .await;
    let third = v["post"]["id"].as_str().unwrap().to_string();
    // The owner deletes the first: the reward goes back.
    let (s, v) = app
        .call(
            "DELETE",
            &format!("/api/community/posts/{first}"),
            Some(&author),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(app.balance_and_ledger(author.id).await, (24, 24));
    // Spend part of the balance: the clawback never goes below zero.
    sqlx::query("UPDATE user_profiles SET current_claves = 5 WHERE user_id = $1")
        .bind(author.id)
        .execute(app.db())
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO clave_transactions (user_id, amount, reason) VALUES ($1, -19, 'test_spend')",
    )
    .bind(author.id)
    .execute(app.db())
    .await
    .unwrap();
    // An admin hides the second through a report's resolution.
    let (s, v) = app
        .call(
            "POST",
            &format!("/api/community/posts/{second}/report"),
            Some(&admin),
            Some(json!({"reason": "spam"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let report_id: Uuid = sqlx::query_scalar("SELECT id FROM content_reports LIMIT 1")
        .fetch_one(app.db())
        .await
        .unwrap();
    let (s, v) = app
        .call(
            "POST",
            &format!("/api/admin/moderation/reports/{report_id}/resolve"),
            Some(&admin),
            Some(json!({"action": "hide"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let claws = ledger_rows(&app, author.id, "post_reward_clawback").await;
    assert_eq!(
        claws.iter().map(|c| c.0).collect::<Vec<_>>(),
        vec![-12, -5],
        "the second clawback is floored at the balance"
    );
    assert_eq!(app.balance_and_ledger(author.id).await, (0, 0));
    // Past the window nothing is taken.
    app.ctx.clock.advance(chrono::Duration::hours(73));
    sqlx::query("UPDATE user_profiles SET current_claves = 10 WHERE user_id = $1")
        .bind(author.id)
        .execute(app.db())
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO clave_transactions (user_id, amount, reason) VALUES ($1, 10, 'test_grant')",
    )
    .bind(author.id)
    .execute(app.db())
    .await
    .unwrap();
    let (s, _) = app
        .call(
            "DELETE",
            &format!("/api/community/posts/{third}"),
            Some(&author),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        ledger_rows(&app, author.id, "post_reward_clawback")
            .await
            .len(),
        2
    );
    assert_eq!(app.balance_and_ledger(author.id).await, (10, 10));
}

#[tokio::test]
async fn the_seed_keeps_api_md_messages_and_pays_no_reward() {
    let app = TestApp::spawn_api_only().await;
    let author = rich(&app, 100).await;
    let (s, v) = app
        .call(
            "POST",
            "/api/community/posts",
            Some(&author),
            Some(lab("Seed question", LONG_BODY)),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["message"], "Post created! (-5 🥢)");
    assert_eq!(v["reward"], Value::Null);
    assert!(ledger_rows(&app, author.id, "post_reward").await.is_empty());
}
