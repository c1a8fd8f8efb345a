//! The participation gate and the Lab question slots (API-2026-05.md N6.5,
//! N5.4 upload-check-lab; issue 26).

use mambo_tests::{StatusCode, TestApp, TestUser, UserSpec};
use serde_json::{Value, json};

async fn member(app: &TestApp, sub: Option<(&'static str, &'static str)>) -> TestUser {
    app.create_user(UserSpec {
        subscription: sub,
        claves: 100,
        ..Default::default()
    })
    .await
}

fn lab(title: &str) -> Value {
    json!({"post_type": "lab", "title": title, "body": "Where is the one?", "tags": ["timing"]})
}

async fn gate_of(app: &TestApp, user: &TestUser) -> (StatusCode, Value) {
    app.call(
        "POST",
        "/api/community/posts",
        Some(user),
        Some(lab("Gated question")),
    )
    .await
}

#[tokio::test]
async fn the_seed_gate_lets_everyone_post() {
    let app = TestApp::spawn_api_only().await;
    let free = member(&app, None).await;
    let (s, v) = gate_of(&app, &free).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = app
        .call("GET", "/api/community/upload-check-lab", Some(&free), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v,
        json!({"allowed": true, "current_slots": 1, "max_slots": 0, "message": "Questions are unlimited."})
    );
}

#[tokio::test]
async fn each_gate_state_is_refused_with_its_message_and_nothing_written() {
    let app = TestApp::spawn_api_only().await;
    let admin = app.admin().await;
    app.set_settings(
        &admin,
        json!({"community": {"participation_min_tier": "advanced", "trialing_can_participate": false}}),
    )
    .await;
    let free = member(&app, None).await;
    let lapsed = member(&app, Some(("canceled", "advanced"))).await;
    let trial = member(&app, Some(("trialing", "performer"))).await;
    let paid = member(&app, Some(("active", "advanced"))).await;
    let cases = [
        (
            &free,
            "free",
            "Posting in the community is for paid Mambo Guild members. Subscribe to share your practice or ask questions.",
        ),
        (
            &lapsed,
            "lapsed",
            "Your subscription has lapsed. Renew to keep posting in the community.",
        ),
        (
            &trial,
            "trial",
            "For security reasons, posting is not possible during your free trial. You'll be able to post once your trial ends and your first payment is processed.",
        ),
    ];
    for (user, state, message) in cases {
        let (s, v) = gate_of(&app, user).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{state}: {v}");
        assert_eq!(
            v["detail"],
            json!({"success": false, "message": message, "tier_required": true, "gate_state": state})
        );
        // Before body validation: an invalid body gets the same 403.
        let (s, _) = app
            .call(
                "POST",
                "/api/community/posts",
                Some(user),
                Some(json!({"post_type": 5})),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        // The slot checks answer the refusal.
        for path in [
            "/api/community/upload-check",
            "/api/claves/slot-status",
            "/api/community/upload-check-lab",
        ] {
            let (s, v) = app.call("GET", path, Some(user), None).await;
            assert_eq!(s, StatusCode::OK);
            assert_eq!(
                v,
                json!({"allowed": false, "current_slots": 0, "max_slots": 0, "message": message}),
                "{path}"
            );
        }
        assert_eq!(app.balance_and_ledger(user.id).await, (100, 100));
    }
    // Replies have their own free message; reacting is never gated.
    let (s, v) = gate_of(&app, &paid).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let post_id = v["post"]["id"].as_str().unwrap().to_string();
    let (s, v) = app
        .call(
            "POST",
            &format!("/api/community/posts/{post_id}/replies"),
            Some(&free),
            Some(json!({"content": "me too"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        v["detail"]["message"],
        "Commenting is for paid Mambo Guild members. Subscribe to join the conversation."
    );
    let (s, v) = app
        .call(
            "POST",
            &format!("/api/community/posts/{post_id}/react"),
            Some(&free),
            Some(json!({"reaction_type": "fire"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Admins always pass; a performer minimum refuses advanced members.
    let (s, _) = gate_of(&app, &admin).await;
    assert_eq!(s, StatusCode::OK);
    app.set_settings(
        &admin,
        json!({"community": {"participation_min_tier": "performer"}}),
    )
    .await;
    let (s, v) = gate_of(&app, &paid).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(v["detail"]["gate_state"], "tier");
    assert_eq!(
        v["detail"]["message"],
        "This feature requires Guild Master (Performer) subscription."
    );
    // Trialing members pass while the setting allows it.
    app.set_settings(
        &admin,
        json!({"community": {"trialing_can_participate": true}}),
    )
    .await;
    let (s, v) = gate_of(&app, &trial).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn a_post_video_upload_is_gated_too() {
    // Mux is configured (at an address nothing listens on: the gate refuses
    // before anything is sent).
    let app = TestApp::spawn_with(mambo_tests::Options {
        worker: false,
        vars: vec![
            ("MUX_TOKEN_ID".into(), "id".into()),
            ("MUX_TOKEN_SECRET".into(), "secret".into()),
            ("MUX_BASE_URL".into(), "http://127.0.0.1:9".into()),
        ],
    })
    .await;
    let admin = app.admin().await;
    app.set_preset(&admin, "guild_2026").await;
    let free = member(&app, None).await;
    let (s, v) = app
        .call(
            "POST",
            &format!("/api/mux/upload-url?post_id={}", uuid::Uuid::new_v4()),
            Some(&free),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["detail"]["gate_state"], "free");
}

#[tokio::test]
async fn the_question_limit_counts_lab_posts_plus_bonus_and_holds_under_concurrency() {
    let app = TestApp::spawn_api_only().await;
    let admin = app.admin().await;
    app.set_settings(
        &admin,
        json!({"community": {"question_slots_base": 2, "question_slots_pro": 4}}),
    )
    .await;
    let user = member(&app, None).await;
    let (s, v) = app
        .call("GET", "/api/community/upload-check-lab", Some(&user), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v,
        json!({"allowed": true, "current_slots": 0, "max_slots": 2, "message": "You have 0/2 question slots used."})
    );
    // Parallel questions never pass the limit.
    let mut tasks = vec![];
    for i in 0..6 {
        let (base, token) = (app.base.clone(), user.bearer());
        tasks.push(tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{base}/api/community/posts"))
                .header("Authorization", token)
                .json(&lab(&format!("Question number {i}")))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(ok, 2);
    let (s, v) = gate_of(&app, &user).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        v["detail"],
        json!({"success": false, "message": "You've reached your 2 question limit. Delete an old question to post a new one."})
    );
    let (_, v) = app
        .call("GET", "/api/community/upload-check-lab", Some(&user), None)
        .await;
    assert_eq!(v["allowed"], false);
    assert_eq!(v["current_slots"], 2);
    // The shop's bonus slots raise the limit; stage posts are not questions.
    sqlx::query("UPDATE user_profiles SET bonus_question_slots = 1 WHERE user_id = $1")
        .bind(user.id)
        .execute(app.db())
        .await
        .unwrap();
    let (_, v) = app
        .call("GET", "/api/community/upload-check-lab", Some(&user), None)
        .await;
    assert_eq!(v["max_slots"], 3);
    let (s, _) = gate_of(&app, &user).await;
    assert_eq!(s, StatusCode::OK);
    // Pro members get the pro limit.
    let pro = member(&app, Some(("active", "performer"))).await;
    let (_, v) = app
        .call("GET", "/api/community/upload-check-lab", Some(&pro), None)
        .await;
    assert_eq!(v["max_slots"], 4);
    assert_eq!(app.balance_and_ledger(user.id).await.0, 100 - 3 * 5);
}
