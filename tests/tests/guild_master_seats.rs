//! Guild Master seats (API-2026-05.md N5.6, N5.7): the seat counter, the
//! checkout holds under `guild_master.seat_cap` (exact under parallel
//! checkouts), their closing by webhooks and by cancel-checkout (whose job
//! expires the Stripe session), their retention and account deletion.
//! Stripe is a wiremock server that checks what it receives.

use chrono::{Duration, Utc};
use mambo_core::payments::MSG_GUILD_MASTER_FULL;
use mambo_tests::stripe::*;
use mambo_tests::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use uuid::Uuid;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Answers every checkout session with a fresh id (`cs_test_1`, `cs_test_2`, ...).
struct Sessions(Arc<AtomicUsize>);

impl Respond for Sessions {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        ResponseTemplate::new(200).set_body_json(json!({
            "id": format!("cs_test_{n}"), "object": "checkout.session",
            "url": format!("https://checkout.stripe.com/c/pay/cs_test_{n}")
        }))
    }
}

/// A fake Stripe that creates customers and checkout sessions.
async fn mount_checkout(stripe: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/v1/customers"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "cus_seat"})))
        .mount(stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .and(header("authorization", "Bearer sk_test_123"))
        .respond_with(Sessions(Arc::new(AtomicUsize::new(0))))
        .mount(stripe)
        .await;
}

async fn seats(app: &TestApp) -> Value {
    let resp = app
        .get("/api/payments/guild-master-seats")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("public, max-age=30")
    );
    let (s, v) = json(resp).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

/// The seat count, recounted now (tests that write rows directly).
async fn fresh_seats(app: &TestApp) -> Value {
    mambo_core::payments::forget_seat_count(&app.ctx).await;
    seats(app).await
}

fn seat_body(total: Option<i64>, taken: i64, remaining: Option<i64>, is_full: bool) -> Value {
    json!({"total": total, "taken": taken, "remaining": remaining, "is_full": is_full})
}

async fn insert_hold(
    app: &TestApp,
    user: Uuid,
    tier: &str,
    status: &str,
    session: Option<&str>,
    created: chrono::DateTime<Utc>,
) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO checkout_holds (id, user_id, tier, stripe_session_id, status, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6 + interval '30 minutes')",
    )
    .bind(id)
    .bind(user)
    .bind(tier)
    .bind(session)
    .bind(status)
    .bind(created)
    .execute(app.db())
    .await
    .unwrap();
    id
}

/// (tier, status, session id) of the user's holds, oldest first.
async fn holds(app: &TestApp, user: Uuid) -> Vec<(String, String, Option<String>)> {
    sqlx::query_as(
        "SELECT tier, status, stripe_session_id FROM checkout_holds
         WHERE user_id = $1 ORDER BY created_at, id",
    )
    .bind(user)
    .fetch_all(app.db())
    .await
    .unwrap()
}

async fn hold_status(app: &TestApp, session: &str) -> String {
    sqlx::query_scalar("SELECT status FROM checkout_holds WHERE stripe_session_id = $1")
        .bind(session)
        .fetch_one(app.db())
        .await
        .unwrap()
}

async fn performer(app: &TestApp, status: &'static str) -> TestUser {
    app.create_user(UserSpec {
        subscription: Some((status, "performer")),
        ..Default::default()
    })
    .await
}

async fn stripe_calls(stripe: &MockServer, p: &str) -> usize {
    stripe
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == p)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counter_counts_guild_masters_and_live_performer_holds() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let now = app.ctx.clock.now();

    // No cap (the seed setting): nulls, never full, anonymous.
    assert_eq!(seats(&app).await, seat_body(None, 0, None, false));

    // Guild Masters (N6.5): active; past_due within the grace period;
    // trialing only with includes_trialing. Not: past_due past the grace,
    // canceled, advanced.
    let active = performer(&app, "active").await;
    performer(&app, "trialing").await;
    let in_grace = performer(&app, "past_due").await;
    let lapsed = performer(&app, "past_due").await;
    performer(&app, "canceled").await;
    app.create_user(UserSpec {
        subscription: Some(("active", "advanced")),
        ..Default::default()
    })
    .await;
    for (user, grace) in [(in_grace.id, 3), (lapsed.id, -1)] {
        sqlx::query("UPDATE subscriptions SET grace_until = now() + make_interval(days => $2) WHERE user_id = $1")
            .bind(user)
            .bind(grace)
            .execute(app.db())
            .await
            .unwrap();
    }
    // Holds: a live open one and a user with two live holds (one seat); not
    // an expired one, nor canceled, completed, expired or advanced ones, nor
    // one of a Guild Master (their seat is counted once).
    let (a, b, c) = (
        app.student().await,
        app.student().await,
        app.student().await,
    );
    insert_hold(&app, a.id, "performer", "open", Some("cs_a"), now).await;
    insert_hold(&app, b.id, "performer", "reserved", None, now).await;
    insert_hold(&app, b.id, "performer", "open", Some("cs_b"), now).await;
    insert_hold(
        &app,
        c.id,
        "performer",
        "open",
        Some("cs_c_old"),
        now - Duration::minutes(31),
    )
    .await;
    for status in ["canceled", "completed", "expired"] {
        insert_hold(&app, c.id, "performer", status, None, now).await;
    }
    insert_hold(&app, c.id, "advanced", "open", Some("cs_c_adv"), now).await;
    insert_hold(&app, active.id, "performer", "open", Some("cs_gm"), now).await;

    assert_eq!(fresh_seats(&app).await, seat_body(None, 4, None, false));

    // A cap: remaining = cap - taken. A settings change is seen at once.
    app.set_settings(&admin, json!({"guild_master": {"seat_cap": 5}}))
        .await;
    assert_eq!(seats(&app).await, seat_body(Some(5), 4, Some(1), false));
    // The trialing switch counts the trial.
    app.set_settings(&admin, json!({"guild_master": {"includes_trialing": true}}))
        .await;
    assert_eq!(seats(&app).await, seat_body(Some(5), 5, Some(0), true));
    // Over the cap: remaining never goes below zero.
    app.set_settings(
        &admin,
        json!({"guild_master": {"seat_cap": 3, "includes_trialing": false}}),
    )
    .await;
    assert_eq!(seats(&app).await, seat_body(Some(3), 4, Some(0), true));
    // A signed-in caller gets the same answer.
    let (s, v) = app
        .call("GET", "/api/payments/guild-master-seats", Some(&a), None)
        .await;
    assert_eq!(
        (s, v),
        (StatusCode::OK, seat_body(Some(3), 4, Some(0), true))
    );

    // The count may be reused for at most 5 s: a Guild Master added behind
    // the server's back shows within that.
    performer(&app, "active").await;
    let before = std::time::Instant::now();
    let seen = eventually(10, || async {
        (seats(&app).await["taken"] == 5).then_some(())
    })
    .await;
    assert!(seen.is_some(), "the new Guild Master is counted");
    assert!(before.elapsed() <= std::time::Duration::from_millis(6500));
    // A hold past its 30 minutes stops counting without any event.
    app.ctx.clock.set(now + Duration::minutes(31));
    assert_eq!(fresh_seats(&app).await["taken"], 3);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_guild_refuses_performer_checkout_before_stripe() {
    let (app, stripe) = stripe_app().await;
    mount_checkout(&stripe).await;
    let admin = app.admin().await;
    app.set_settings(&admin, json!({"guild_master": {"seat_cap": 1}}))
        .await;
    performer(&app, "active").await;
    let user = app.student().await;
    let sub_before: (String, String, Option<String>) = sqlx::query_as(
        "SELECT status, tier, stripe_customer_id FROM subscriptions WHERE user_id = $1",
    )
    .bind(user.id)
    .fetch_one(app.db())
    .await
    .unwrap();

    let (s, b) = checkout(&app, &user, &checkout_body(PERF)).await;
    assert_eq!(
        (s, b),
        (
            StatusCode::CONFLICT,
            json!({"detail": MSG_GUILD_MASTER_FULL})
        )
    );
    assert!(
        stripe.received_requests().await.unwrap().is_empty(),
        "nothing created in Stripe"
    );
    assert!(holds(&app, user.id).await.is_empty());
    let sub_after: (String, String, Option<String>) = sqlx::query_as(
        "SELECT status, tier, stripe_customer_id FROM subscriptions WHERE user_id = $1",
    )
    .bind(user.id)
    .fetch_one(app.db())
    .await
    .unwrap();
    assert_eq!(sub_before, sub_after);
    assert_eq!(seats(&app).await, seat_body(Some(1), 1, Some(0), true));

    // Advanced is not capped; its session records a hold too, which takes no seat.
    let (s, b) = checkout(&app, &user, &checkout_body(ADV)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let sid = b["session_id"].as_str().unwrap().to_string();
    assert_eq!(
        holds(&app, user.id).await,
        vec![("advanced".into(), "open".into(), Some(sid))]
    );
    // Without a cap the advanced session keeps Stripe's own expiry.
    let reqs = stripe.received_requests().await.unwrap();
    let session_req = reqs
        .iter()
        .find(|r| r.url.path() == "/v1/checkout/sessions")
        .unwrap();
    assert!(!form_of(session_req).contains_key("expires_at"));
    assert_eq!(seats(&app).await["taken"], 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_checkouts_never_exceed_the_cap() {
    let (app, stripe) = stripe_app().await;
    mount_checkout(&stripe).await;
    let admin = app.admin().await;
    app.set_settings(&admin, json!({"guild_master": {"seat_cap": 4}}))
        .await;
    performer(&app, "active").await; // one seat taken already
    let mut users = vec![];
    for _ in 0..12 {
        users.push(app.student().await);
    }
    let app = Arc::new(app);
    let mut set = tokio::task::JoinSet::new();
    for u in users.clone() {
        let app = app.clone();
        set.spawn(async move { checkout(&app, &u, &checkout_body(PERF)).await });
    }
    let (mut ok, mut full) = (0, 0);
    while let Some(res) = set.join_next().await {
        let (s, b) = res.unwrap();
        match s {
            StatusCode::OK => ok += 1,
            StatusCode::CONFLICT => {
                assert_eq!(b, json!({"detail": MSG_GUILD_MASTER_FULL}));
                full += 1
            }
            other => panic!("unexpected {other}: {b}"),
        }
    }
    assert_eq!((ok, full), (3, 9));
    // Exactly the winners reached Stripe, and their sessions lapse with the hold.
    assert_eq!(stripe_calls(&stripe, "/v1/checkout/sessions").await, 3);
    let created = app.ctx.clock.now().timestamp();
    for r in stripe.received_requests().await.unwrap() {
        if r.url.path() == "/v1/checkout/sessions" {
            let at: i64 = form_of(&r)["expires_at"].parse().unwrap();
            assert!(
                (created + 31 * 60..=created + 33 * 60).contains(&at),
                "{at}"
            );
        }
    }
    let live: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM checkout_holds WHERE tier = 'performer' AND status = 'open'
           AND stripe_session_id IS NOT NULL",
    )
    .fetch_one(app.db())
    .await
    .unwrap();
    assert_eq!(live, 3);
    assert_eq!(seats(&app).await, seat_body(Some(4), 4, Some(0), true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stripe_failure_deletes_the_hold() {
    let (app, stripe) = stripe_app().await;
    let admin = app.admin().await;
    app.set_settings(&admin, json!({"guild_master": {"seat_cap": 1}}))
        .await;
    let (first, second) = (app.student().await, app.student().await);
    Mock::given(method("POST"))
        .and(path("/v1/customers"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "cus_f"})))
        .mount(&stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": {"type": "invalid_request_error", "message": "No such price: 'price_perf_test'"}
        })))
        .up_to_n_times(1)
        .mount(&stripe)
        .await;
    let (s, b) = checkout(&app, &first, &checkout_body(PERF)).await;
    assert_eq!(
        (s, b),
        (
            StatusCode::BAD_REQUEST,
            json!({"detail": "No such price: 'price_perf_test'"})
        )
    );
    assert!(holds(&app, first.id).await.is_empty(), "the hold is gone");
    assert_eq!(seats(&app).await, seat_body(Some(1), 0, Some(1), false));

    // The seat is free for the next checkout at once.
    mount_checkout(&stripe).await;
    let (s, b) = checkout(&app, &second, &checkout_body(PERF)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(seats(&app).await, seat_body(Some(1), 1, Some(0), true));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_and_expired_webhooks_close_holds_once() {
    let (app, stripe) = stripe_app().await;
    mount_checkout(&stripe).await;
    let admin = app.admin().await;
    app.set_settings(&admin, json!({"guild_master": {"seat_cap": 2}}))
        .await;
    let (buyer, quitter, third) = (
        app.student().await,
        app.student().await,
        app.student().await,
    );
    let (s, b) = checkout(&app, &buyer, &checkout_body(PERF)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let paid = b["session_id"].as_str().unwrap().to_string();
    let (s, b) = checkout(&app, &quitter, &checkout_body(PERF)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let lapsed = b["session_id"].as_str().unwrap().to_string();
    assert_eq!(seats(&app).await, seat_body(Some(2), 2, Some(0), true));
    assert_eq!(
        checkout(&app, &third, &checkout_body(PERF)).await.0,
        StatusCode::CONFLICT
    );

    let now = app.ctx.clock.now().timestamp();
    let expired = event(
        "evt_cs_expired",
        "checkout.session.expired",
        now,
        json!({"id": lapsed, "object": "checkout.session", "status": "expired",
               "client_reference_id": quitter.id.to_string()}),
    );
    for _ in 0..3 {
        assert_eq!(
            deliver(&app, &expired).await,
            (StatusCode::OK, json!({"status": "success"}))
        );
        assert_eq!(hold_status(&app, &lapsed).await, "expired");
        assert_eq!(seats(&app).await, seat_body(Some(2), 1, Some(1), false));
    }

    let uid = buyer.id.to_string();
    Mock::given(method("GET"))
        .and(path("/v1/subscriptions/sub_seat"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(stripe_subscription(
                "sub_seat", "cus_seat", PERF, "active", &uid,
            )),
        )
        .mount(&stripe)
        .await;
    let completed = event(
        "evt_cs_completed",
        "checkout.session.completed",
        now + 1,
        json!({"id": paid, "object": "checkout.session", "mode": "subscription",
               "customer": "cus_seat", "subscription": "sub_seat", "client_reference_id": uid,
               "metadata": {"user_id": uid}, "status": "complete"}),
    );
    for _ in 0..3 {
        assert_eq!(
            deliver(&app, &completed).await,
            (StatusCode::OK, json!({"status": "success"}))
        );
        assert_eq!(hold_status(&app, &paid).await, "completed");
        // The seat is now the subscription's: still one taken, not two.
        assert_eq!(seats(&app).await, seat_body(Some(2), 1, Some(1), false));
    }
    // A late expiry event for the paid session changes nothing.
    let late = event(
        "evt_cs_expired_late",
        "checkout.session.expired",
        now + 2,
        json!({"id": paid, "object": "checkout.session"}),
    );
    assert_eq!(deliver(&app, &late).await.0, StatusCode::OK);
    assert_eq!(hold_status(&app, &paid).await, "completed");
    // The freed seat goes to the next buyer.
    let (s, b) = checkout(&app, &third, &checkout_body(PERF)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(seats(&app).await, seat_body(Some(2), 2, Some(0), true));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_checkout_frees_the_seat_and_expires_the_session_once() {
    let (app, stripe) = stripe_app().await;
    mount_checkout(&stripe).await;
    let admin = app.admin().await;
    app.set_settings(&admin, json!({"guild_master": {"seat_cap": 1}}))
        .await;
    let (leaver, waiting) = (app.student().await, app.student().await);

    // Nothing to cancel is fine; anonymous is a 401.
    assert_eq!(
        post_as(&app, &leaver, "/api/payments/cancel-checkout", None).await,
        (StatusCode::OK, json!({"status": "ok"}))
    );
    let (s, _) = app
        .call("POST", "/api/payments/cancel-checkout", None, None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    let (s, b) = checkout(&app, &leaver, &checkout_body(PERF)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let open = b["session_id"].as_str().unwrap().to_string();
    assert_eq!(
        checkout(&app, &waiting, &checkout_body(PERF)).await.0,
        StatusCode::CONFLICT
    );

    let open_path = format!("/v1/checkout/sessions/{open}");
    let expire_path = format!("{open_path}/expire");
    Mock::given(method("GET"))
        .and(path(open_path.as_str()))
        .and(header("authorization", "Bearer sk_test_123"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": open, "object": "checkout.session", "status": "open"})),
        )
        .mount(&stripe)
        .await;
    Mock::given(method("POST"))
        .and(path(expire_path.as_str()))
        .and(header("authorization", "Bearer sk_test_123"))
        .and(header(
            "idempotency-key",
            format!("mambo-checkout-expire-{open}").as_str(),
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"id": open, "object": "checkout.session", "status": "expired"}),
            ),
        )
        .expect(1)
        .mount(&stripe)
        .await;

    // Cancel: the hold is canceled and the seat frees at once.
    for _ in 0..2 {
        assert_eq!(
            post_as(&app, &leaver, "/api/payments/cancel-checkout", None).await,
            (StatusCode::OK, json!({"status": "ok"}))
        );
    }
    assert_eq!(hold_status(&app, &open).await, "canceled");
    assert_eq!(seats(&app).await, seat_body(Some(1), 0, Some(1), false));
    let (s, b) = checkout(&app, &waiting, &checkout_body(PERF)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let waiting_session = b["session_id"].as_str().unwrap().to_string();

    // The worker expires the session in Stripe, once.
    let done = eventually(20, || async {
        (stripe_calls(&stripe, &expire_path).await >= 1).then_some(())
    })
    .await;
    assert!(done.is_some(), "the expire endpoint was called");
    // Stripe's later expiry event changes nothing more.
    let ev = event(
        "evt_cs_exp_cancel",
        "checkout.session.expired",
        app.ctx.clock.now().timestamp(),
        json!({"id": open, "object": "checkout.session"}),
    );
    assert_eq!(deliver(&app, &ev).await.0, StatusCode::OK);
    assert_eq!(hold_status(&app, &open).await, "canceled");

    // A session that was completed meanwhile is left alone: looked up, never expired.
    let waiting_path = format!("/v1/checkout/sessions/{waiting_session}");
    Mock::given(method("GET"))
        .and(path(waiting_path.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"id": waiting_session, "object": "checkout.session", "status": "complete"}),
        ))
        .mount(&stripe)
        .await;
    let (s, _) = post_as(&app, &waiting, "/api/payments/cancel-checkout", None).await;
    assert_eq!(s, StatusCode::OK);
    let looked = eventually(20, || async {
        (stripe_calls(&stripe, &waiting_path).await >= 1).then_some(())
    })
    .await;
    assert!(looked.is_some(), "the job looked the session up");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        stripe_calls(&stripe, &format!("{waiting_path}/expire")).await,
        0
    );
    assert_eq!(stripe_calls(&stripe, &expire_path).await, 1);
    app.stop().await;
    stripe.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_holds_are_pruned_and_deletion_removes_a_users_holds() {
    let app = TestApp::spawn_api_only().await;
    let (user, other) = (app.student().await, app.student().await);
    let now = app.ctx.clock.now();
    insert_hold(
        &app,
        user.id,
        "performer",
        "completed",
        Some("cs_old"),
        now - Duration::days(31),
    )
    .await;
    insert_hold(
        &app,
        user.id,
        "performer",
        "expired",
        Some("cs_recent"),
        now - Duration::days(29),
    )
    .await;
    insert_hold(
        &app,
        other.id,
        "advanced",
        "canceled",
        None,
        now - Duration::days(45),
    )
    .await;

    mambo_worker::daily_maintenance(&app.ctx).await.unwrap();
    assert_eq!(
        holds(&app, user.id).await,
        vec![(
            "performer".into(),
            "expired".into(),
            Some("cs_recent".into())
        )]
    );
    assert!(holds(&app, other.id).await.is_empty());

    // Account deletion deletes the user's holds; an open session gets an
    // expire job so a deleted account cannot complete it.
    insert_hold(&app, user.id, "performer", "open", Some("cs_live"), now).await;
    let (s, v) = json(
        app.delete("/api/users/me")
            .header("Authorization", user.bearer())
            .json(&json!({"password": user.password}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    mambo_core::privacy::deletion::run(
        &app.ctx,
        &mambo_core::jobs::AccountDeletionJob { user_id: user.id },
    )
    .await
    .unwrap();
    assert!(holds(&app, user.id).await.is_empty());
    let jobs: Vec<Value> = sqlx::query_scalar(
        "SELECT payload FROM job_outbox WHERE queue = 'checkout_expire' ORDER BY created_at",
    )
    .fetch_all(app.db())
    .await
    .unwrap();
    assert_eq!(jobs, vec![json!({"session_id": "cs_live"})]);

    // Deleting a users row itself cascades to its holds.
    let rule: String = sqlx::query_scalar(
        "SELECT confdeltype::text FROM pg_constraint
         WHERE conrelid = 'checkout_holds'::regclass AND contype = 'f'",
    )
    .fetch_one(app.db())
    .await
    .unwrap();
    assert_eq!(rule, "c", "ON DELETE CASCADE");
    app.stop().await;
}
