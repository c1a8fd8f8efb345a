//! Payments (API.md §3.12, §4.15) against a fake Stripe server that checks the
//! form fields it receives; webhooks are signed for real with the test secret.

use mambo_tests::stripe::*;
use mambo_tests::*;
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, ResponseTemplate};

#[derive(Debug, sqlx::FromRow, PartialEq)]
struct Row {
    status: String,
    tier: String,
    stripe_customer_id: Option<String>,
    stripe_subscription_id: Option<String>,
    current_period_end: Option<chrono::DateTime<chrono::Utc>>,
}

async fn row(app: &TestApp, user: uuid::Uuid) -> Row {
    sqlx::query_as(
        "SELECT status, tier, stripe_customer_id, stripe_subscription_id, current_period_end
         FROM subscriptions WHERE user_id = $1",
    )
    .bind(user)
    .fetch_one(app.db())
    .await
    .unwrap()
}

async fn bonus_rows(app: &TestApp, user: uuid::Uuid) -> Vec<(i32, Option<uuid::Uuid>)> {
    sqlx::query_as(
        "SELECT amount, reference_id FROM clave_transactions
         WHERE user_id=$1 AND reason='subscription_bonus' ORDER BY created_at",
    )
    .bind(user)
    .fetch_all(app.db())
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfigured_stripe_is_503_before_input_checks() {
    let app = TestApp::spawn().await;
    let user = app.student().await;
    let cfg = app.ctx.config.clone();

    // Issue 15: without Stripe every price is unknown; the answer is the
    // documented 503, not "Invalid price ID".
    for price in ["price_nope", cfg.advanced_price_id.as_str(), ""] {
        let (s, b) = checkout(&app, &user, &checkout_body(price)).await;
        assert_eq!(s, 503, "{price}: {b}");
        assert_eq!(b, json!({"detail": "Stripe is not configured"}));
    }

    // Webhook: the header check comes first, then the missing secret.
    let (s, b) = json(
        app.post("/api/payments/webhook")
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, b),
        (
            StatusCode::BAD_REQUEST,
            json!({"detail": "No Stripe-Signature header"})
        )
    );
    let (s, b) = json(
        app.post("/api/payments/webhook")
            .header("Stripe-Signature", "t=1,v1=00")
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, b["detail"].clone()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!("Stripe is not configured")
        )
    );

    // Local-only cancel needs no Stripe.
    link(&app, user.id, "active", "advanced", "cus_x", None).await;
    let (s, b) = json(
        app.post("/api/payments/cancel-subscription")
            .header("Authorization", user.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b,
        json!({"success": true, "message": "Subscription canceled successfully.", "tier": "rookie",
               "status": null, "scheduled_tier": null, "cancel_at_period_end": false,
               "current_period_end": null, "trial_end": null})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_rejects_bad_input_without_calling_stripe() {
    let (app, stripe) = stripe_app().await;
    let user = app.student().await;

    let (s, _) = json(
        app.post("/api/payments/create-checkout-session")
            .json(&checkout_body(ADV))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 401);

    let (s, b) = checkout(&app, &user, &checkout_body("price_unknown")).await;
    assert_eq!(
        (s, b["detail"].as_str().unwrap()),
        (
            StatusCode::BAD_REQUEST,
            "Invalid price ID. Only Advanced and Performer tiers are available."
        )
    );

    for (success, cancel) in [
        (
            "https://evil.example.com/ok".to_string(),
            format!("{FRONT}/pricing"),
        ),
        (format!("{FRONT}.evil.io/ok"), format!("{FRONT}/pricing")),
        (format!("{FRONT}/ok"), "javascript:alert(1)".to_string()),
    ] {
        let (s, b) = checkout(
            &app,
            &user,
            &json!({"price_id": ADV, "success_url": success, "cancel_url": cancel}),
        )
        .await;
        assert_eq!(s, 400, "{success} {cancel}: {b}");
    }

    let (s, b) = checkout(&app, &user, &json!({"price_id": ADV})).await;
    assert_eq!(s, 422, "{b}");

    let pro = app.pro_student().await;
    let (s, b) = checkout(&app, &pro, &checkout_body(PERF)).await;
    assert_eq!(s, 400);
    assert_eq!(
        b["detail"],
        "User already has an active subscription. Use update-subscription to change plans."
    );

    assert!(
        stripe.received_requests().await.unwrap().is_empty(),
        "no Stripe call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_creates_the_customer_once() {
    let (app, stripe) = stripe_app().await;
    let user = app.student().await;
    let uid = user.id.to_string();

    Mock::given(method("POST"))
        .and(path("/v1/customers"))
        .and(header("authorization", "Bearer sk_test_123"))
        .and(Form(vec![
            ("email", user.email.clone()),
            ("metadata[user_id]", uid.clone()),
        ]))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "cus_123", "object": "customer"})),
        )
        .expect(1)
        .mount(&stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .and(header("authorization", "Bearer sk_test_123"))
        .and(Form(vec![
            ("mode", "subscription".into()),
            ("customer", "cus_123".into()),
            ("line_items[0][price]", PERF.into()),
            ("line_items[0][quantity]", "1".into()),
            ("success_url", format!("{FRONT}/pricing/success?session_id={{CHECKOUT_SESSION_ID}}")),
            ("cancel_url", format!("{FRONT}/pricing")),
            ("client_reference_id", uid.clone()),
            ("metadata[user_id]", uid.clone()),
            ("subscription_data[metadata][user_id]", uid.clone()),
        ]))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"id": "cs_test_1", "object": "checkout.session", "url": "https://checkout.stripe.com/c/pay/cs_test_1"}),
        ))
        .expect(2)
        .mount(&stripe)
        .await;

    for _ in 0..2 {
        let (s, b) = checkout(&app, &user, &checkout_body(PERF)).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(
            b,
            json!({"session_id": "cs_test_1", "url": "https://checkout.stripe.com/c/pay/cs_test_1",
                   "trial_days": 7})
        );
    }
    let r = row(&app, user.id).await;
    assert_eq!(r.stripe_customer_id.as_deref(), Some("cus_123"));
    assert_eq!(r.status, "incomplete");
    assert_eq!(r.tier, "rookie");
    // The customer creation carries an idempotency key.
    let reqs = stripe.received_requests().await.unwrap();
    let customer_req = reqs
        .iter()
        .find(|r| r.url.path() == "/v1/customers")
        .unwrap();
    assert!(customer_req.headers.get("idempotency-key").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_errors_surface_as_400_or_502() {
    let (app, stripe) = stripe_app().await;
    let user = app.student().await;
    link(&app, user.id, "canceled", "rookie", "cus_err", None).await;

    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": {"type": "invalid_request_error", "code": "resource_missing", "message": "No such price: 'price_adv_test'"}
        })))
        .up_to_n_times(1)
        .mount(&stripe)
        .await;
    let (s, b) = checkout(&app, &user, &checkout_body(ADV)).await;
    assert_eq!(
        (s, b),
        (
            StatusCode::BAD_REQUEST,
            json!({"detail": "No such price: 'price_adv_test'"})
        )
    );

    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .respond_with(
            ResponseTemplate::new(500).set_body_json(json!({"error": {"message": "boom"}})),
        )
        .mount(&stripe)
        .await;
    let (s, b) = checkout(&app, &user, &checkout_body(ADV)).await;
    assert_eq!(s, 502, "{b}");
    assert!(!b["detail"].as_str().unwrap().contains("boom"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_signatures_are_verified() {
    let (app, _stripe) = stripe_app().await;
    let ev = event(
        "evt_sig",
        "customer.created",
        app.ctx.clock.now().timestamp(),
        json!({"id": "cus_1"}),
    );
    let body = serde_json::to_vec(&ev).unwrap();
    let now = app.ctx.clock.now().timestamp();
    let post = |sig: Option<String>, body: Vec<u8>| {
        let mut r = app
            .post("/api/payments/webhook")
            .header("Content-Type", "application/json");
        if let Some(s) = sig {
            r = r.header("Stripe-Signature", s);
        }
        async move { json(r.body(body).send().await.unwrap()).await }
    };

    let (s, b) = post(None, body.clone()).await;
    assert_eq!(
        (s, b),
        (
            StatusCode::BAD_REQUEST,
            json!({"detail": "No Stripe-Signature header"})
        )
    );

    let forged = mambo_core::payments::signature_header("whsec_wrong", now, &body);
    let (s, b) = post(Some(forged), body.clone()).await;
    assert_eq!(s, 400);
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .starts_with("Invalid signature: "),
        "{b}"
    );

    let stale = mambo_core::payments::signature_header(SECRET, now - 301, &body);
    let (s, b) = post(Some(stale), body.clone()).await;
    assert_eq!(s, 400);
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .starts_with("Invalid signature: "),
        "{b}"
    );

    let (s, b) = post(Some("garbage".into()), body.clone()).await;
    assert_eq!(s, 400);
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .starts_with("Invalid signature: "),
        "{b}"
    );

    // Tampered body with the original signature.
    let good = mambo_core::payments::signature_header(SECRET, now, &body);
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    let (s, _) = post(Some(good.clone()), tampered).await;
    assert_eq!(s, 400);

    let junk = b"not json".to_vec();
    let junk_sig = mambo_core::payments::signature_header(SECRET, now, &junk);
    let (s, b) = post(Some(junk_sig), junk).await;
    assert_eq!(s, 400);
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .starts_with("Invalid payload: "),
        "{b}"
    );

    // Valid signature on an event we ignore.
    let (s, b) = post(Some(good), body).await;
    assert_eq!((s, b), (StatusCode::OK, json!({"status": "success"})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_webhook_activation_bonus_and_pro_perks() {
    let (app, stripe) = stripe_app().await;
    let user = app.student().await;
    let uid = user.id.to_string();
    let (balance_before, _) = app.balance_and_ledger(user.id).await;

    Mock::given(method("POST"))
        .and(path("/v1/customers"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "cus_e2e"})))
        .mount(&stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"id": "cs_e2e", "url": "https://checkout.stripe.com/c/cs_e2e"}),
            ),
        )
        .mount(&stripe)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/subscriptions/sub_e2e"))
        .and(header("authorization", "Bearer sk_test_123"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(stripe_subscription(
                "sub_e2e", "cus_e2e", PERF, "active", &uid,
            )),
        )
        .mount(&stripe)
        .await;

    let (s, b) = checkout(&app, &user, &checkout_body(PERF)).await;
    assert_eq!(s, 200, "{b}");
    {
        let mut conn = app.db().acquire().await.unwrap();
        assert!(
            !mambo_core::access::is_pro(&mut conn, user.id)
                .await
                .unwrap()
        );
    }

    let now = app.ctx.clock.now().timestamp();
    let completed = event(
        "evt_cs_completed",
        "checkout.session.completed",
        now,
        json!({"id": "cs_e2e", "object": "checkout.session", "mode": "subscription", "customer": "cus_e2e",
               "subscription": "sub_e2e", "client_reference_id": uid, "metadata": {"user_id": uid}, "payment_status": "paid"}),
    );
    let (s, b) = deliver(&app, &completed).await;
    assert_eq!((s, b), (StatusCode::OK, json!({"status": "success"})));
    let r = row(&app, user.id).await;
    assert_eq!(
        (r.status.as_str(), r.tier.as_str()),
        ("active", "performer")
    );
    assert_eq!(r.stripe_subscription_id.as_deref(), Some("sub_e2e"));

    let paid = event(
        "evt_inv_paid",
        "invoice.payment_succeeded",
        now + 1,
        json!({"id": "in_001", "object": "invoice", "customer": "cus_e2e", "subscription": "sub_e2e", "amount_paid": 4900}),
    );
    let (s, _) = deliver(&app, &paid).await;
    assert_eq!(s, 200);
    let r = row(&app, user.id).await;
    assert_eq!(r.status, "active");
    assert_eq!(r.tier, "performer");
    assert_eq!(r.current_period_end.unwrap().timestamp(), 1_900_000_000);
    assert_eq!(bonus_rows(&app, user.id).await, vec![(20, None)]);

    // Redelivery changes nothing.
    for _ in 0..3 {
        let (s, b) = deliver(&app, &paid).await;
        assert_eq!((s, b), (StatusCode::OK, json!({"status": "success"})));
    }
    assert_eq!(bonus_rows(&app, user.id).await, vec![(20, None)]);
    let (balance, ledger) = app.balance_and_ledger(user.id).await;
    assert_eq!(balance, balance_before + 20);
    assert_eq!(balance, ledger);

    // The next month's invoice pays again, once.
    let next = event(
        "evt_inv_paid_2",
        "invoice.payment_succeeded",
        now + 2,
        json!({"id": "in_002", "customer": "cus_e2e", "parent": {"subscription_details": {"subscription": "sub_e2e"}}}),
    );
    assert_eq!(deliver(&app, &next).await.0, 200);
    assert_eq!(bonus_rows(&app, user.id).await.len(), 2);

    // Pro perks: pro status, pro slot limit and pro daily range.
    let mut conn = app.db().acquire().await.unwrap();
    assert!(
        mambo_core::access::is_pro(&mut conn, user.id)
            .await
            .unwrap()
    );
    let amounts = mambo_core::economy::Amounts::from_config(&app.ctx.config);
    assert_eq!(amounts.slot_limit(true), 20);
    let daily = amounts.daily_amount(true);
    assert!((4..=8).contains(&daily));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_concurrent_deliveries_pay_once() {
    let (app, stripe) = stripe_app().await;
    let user = app.student().await;
    let uid = user.id.to_string();
    link(&app, user.id, "incomplete", "rookie", "cus_conc", None).await;
    Mock::given(method("GET"))
        .and(path("/v1/subscriptions/sub_conc"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(stripe_subscription(
                    "sub_conc", "cus_conc", ADV, "active", &uid,
                ))
                .set_delay(std::time::Duration::from_millis(50)),
        )
        .mount(&stripe)
        .await;
    let (before, _) = app.balance_and_ledger(user.id).await;
    let ev = event(
        "evt_concurrent",
        "invoice.payment_succeeded",
        app.ctx.clock.now().timestamp(),
        json!({"id": "in_conc", "customer": "cus_conc", "subscription": "sub_conc", "amount_paid": 2900}),
    );
    let results = futures::future::join_all((0..10).map(|_| deliver(&app, &ev))).await;
    for (s, b) in results {
        assert_eq!((s, b), (StatusCode::OK, json!({"status": "success"})));
    }
    let (after, ledger) = app.balance_and_ledger(user.id).await;
    assert_eq!(after, before + 10);
    assert_eq!(after, ledger);
    let processed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM processed_webhook_events WHERE provider='stripe' AND event_id='evt_concurrent'",
    )
    .fetch_one(app.db())
    .await
    .unwrap();
    assert_eq!(processed, 1);
    let r = row(&app, user.id).await;
    assert_eq!((r.status.as_str(), r.tier.as_str()), ("active", "advanced"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_events_never_undo_a_newer_state() {
    let (app, stripe) = stripe_app().await;
    let user = app.student().await;
    let uid = user.id.to_string();
    link(
        &app,
        user.id,
        "active",
        "advanced",
        "cus_ooo",
        Some("sub_ooo"),
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/v1/subscriptions/sub_ooo"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(stripe_subscription(
                "sub_ooo", "cus_ooo", ADV, "canceled", &uid,
            )),
        )
        .mount(&stripe)
        .await;
    let t = app.ctx.clock.now().timestamp();

    // Newest first: the subscription was deleted at t.
    let deleted = event(
        "evt_del",
        "customer.subscription.deleted",
        t,
        json!({"id": "sub_ooo", "object": "subscription", "customer": "cus_ooo", "status": "canceled"}),
    );
    assert_eq!(deliver(&app, &deleted).await.0, 200);
    let r = row(&app, user.id).await;
    assert_eq!((r.status.as_str(), r.tier.as_str()), ("canceled", "rookie"));

    // Then, late, an update and a paid invoice from before the deletion.
    let updated = event(
        "evt_upd_old",
        "customer.subscription.updated",
        t - 50,
        stripe_subscription("sub_ooo", "cus_ooo", PERF, "active", &uid),
    );
    assert_eq!(deliver(&app, &updated).await.0, 200);
    let paid = event(
        "evt_paid_old",
        "invoice.payment_succeeded",
        t - 40,
        json!({"id": "in_old", "customer": "cus_ooo", "subscription": "sub_ooo"}),
    );
    assert_eq!(deliver(&app, &paid).await.0, 200);
    let r = row(&app, user.id).await;
    assert_eq!((r.status.as_str(), r.tier.as_str()), ("canceled", "rookie"));
    // The old invoice was still paid: its bonus is credited once.
    assert_eq!(bonus_rows(&app, user.id).await, vec![(10, None)]);

    // A newer update applies.
    let reactivated = event(
        "evt_upd_new",
        "customer.subscription.updated",
        t + 10,
        stripe_subscription("sub_ooo", "cus_ooo", PERF, "active", &uid),
    );
    assert_eq!(deliver(&app, &reactivated).await.0, 200);
    let r = row(&app, user.id).await;
    assert_eq!(
        (r.status.as_str(), r.tier.as_str()),
        ("active", "performer")
    );

    // invoice.payment_failed → past_due.
    let failed = event(
        "evt_failed",
        "invoice.payment_failed",
        t + 20,
        json!({"id": "in_fail", "customer": "cus_ooo", "subscription": "sub_ooo"}),
    );
    assert_eq!(deliver(&app, &failed).await.0, 200);
    assert_eq!(row(&app, user.id).await.status, "past_due");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_and_cancel_subscription() {
    let (app, stripe) = stripe_app().await;
    let user = app.student().await;
    let post = |p: &'static str, u: &TestUser, body: Option<Value>| {
        let mut r = app.post(p).header("Authorization", u.bearer());
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move { json(r.send().await.unwrap()).await }
    };
    let upd = "/api/payments/update-subscription";
    let cancel = "/api/payments/cancel-subscription";

    // Error cases, in contract order.
    let (s, b) = post(upd, &user, Some(json!({"new_price_id": "price_x"}))).await;
    assert_eq!(
        (s, b["detail"].clone()),
        (
            StatusCode::BAD_REQUEST,
            json!("Invalid price ID. Only Advanced and Performer tiers are available.")
        )
    );
    let (s, b) = post(upd, &user, Some(json!({"new_price_id": PERF}))).await;
    assert_eq!(
        (s, b["detail"].clone()),
        (
            StatusCode::BAD_REQUEST,
            json!("Subscription is not active. Cannot update.")
        )
    );
    let (s, b) = post(cancel, &user, None).await;
    assert_eq!(
        (s, b["detail"].clone()),
        (
            StatusCode::BAD_REQUEST,
            json!("Subscription is not active. Nothing to cancel.")
        )
    );
    link(&app, user.id, "active", "advanced", "cus_u", None).await;
    let (s, b) = post(upd, &user, Some(json!({"new_price_id": PERF}))).await;
    assert_eq!(
        (s, b["detail"].clone()),
        (
            StatusCode::BAD_REQUEST,
            json!("No Stripe subscription ID found. Cannot update.")
        )
    );

    let nobody = app.student().await;
    sqlx::query("DELETE FROM subscriptions WHERE user_id=$1")
        .bind(nobody.id)
        .execute(app.db())
        .await
        .unwrap();
    let (s, b) = post(upd, &nobody, Some(json!({"new_price_id": PERF}))).await;
    assert_eq!(
        (s, b["detail"].clone()),
        (
            StatusCode::NOT_FOUND,
            json!("No subscription found for this user.")
        )
    );
    let (s, b) = post(cancel, &nobody, None).await;
    assert_eq!(
        (s, b["detail"].clone()),
        (
            StatusCode::NOT_FOUND,
            json!("No subscription found for this user.")
        )
    );

    // Upgrade through Stripe.
    link(&app, user.id, "active", "advanced", "cus_u", Some("sub_u")).await;
    Mock::given(method("GET"))
        .and(path("/v1/subscriptions/sub_u"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "sub_u", "status": "active",
            "items": {"data": [{"id": "si_u1", "price": {"id": ADV}}]}
        })))
        .mount(&stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/subscriptions/sub_u"))
        .and(Form(vec![
            ("items[0][id]", "si_u1".into()),
            ("items[0][price]", PERF.into()),
            ("proration_behavior", "always_invoice".into()),
        ]))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "sub_u", "status": "active",
            "items": {"data": [{"id": "si_u1", "price": {"id": PERF}, "current_period_end": 1_950_000_000}]}
        })))
        .expect(1)
        .mount(&stripe)
        .await;
    let (s, b) = post(upd, &user, Some(json!({"new_price_id": PERF}))).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        (&b["success"], &b["message"], &b["tier"], &b["status"]),
        (
            &json!(true),
            &json!("Subscription updated successfully."),
            &json!("performer"),
            &json!("active")
        )
    );
    assert_eq!(b["scheduled_tier"], Value::Null);
    assert_eq!(b["cancel_at_period_end"], json!(false));
    let r = row(&app, user.id).await;
    assert_eq!(r.tier, "performer");
    assert_eq!(r.current_period_end.unwrap().timestamp(), 1_950_000_000);

    // Cancel through Stripe: at the end of the paid period (API-NEXT.md N2).
    Mock::given(method("POST"))
        .and(path("/v1/subscriptions/sub_u"))
        .and(Form(vec![("cancel_at_period_end", "true".into())]))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "sub_u", "status": "active", "cancel_at_period_end": true,
            "items": {"data": [{"id": "si_u1", "price": {"id": PERF}, "current_period_end": 1_950_000_000}]}
        })))
        .expect(1)
        .mount(&stripe)
        .await;
    let (s, b) = post(cancel, &user, None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["message"],
        json!("Your subscription will end on October 17, 2031. You keep access until then.")
    );
    assert_eq!(
        (&b["tier"], &b["status"], &b["cancel_at_period_end"]),
        (&json!("performer"), &json!("active"), &json!(true))
    );
    let r = row(&app, user.id).await;
    assert_eq!(
        (r.status.as_str(), r.tier.as_str()),
        ("active", "performer")
    );
    // Asking again changes nothing in Stripe (the mock expects one call).
    let (s, _) = post(cancel, &user, None).await;
    assert_eq!(s, 200);

    // Without a Stripe subscription the cancel is local and immediate.
    let local = app.pro_student().await;
    let (s, b) = post(cancel, &local, None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        (&b["message"], &b["tier"], &b["status"]),
        (
            &json!("Subscription canceled successfully."),
            &json!("rookie"),
            &Value::Null
        )
    );
    let (s, _) = post(cancel, &local, None).await;
    assert_eq!(s, 400);

    // A Stripe refusal on update is a 400 with Stripe's message.
    let other = app.student().await;
    link(
        &app,
        other.id,
        "active",
        "advanced",
        "cus_o",
        Some("sub_missing"),
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/v1/subscriptions/sub_missing"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "error": {"type": "invalid_request_error", "code": "resource_missing", "message": "No such subscription: 'sub_missing'"}
        })))
        .mount(&stripe)
        .await;
    let (s, b) = post(upd, &other, Some(json!({"new_price_id": PERF}))).await;
    assert_eq!(
        (s, b),
        (
            StatusCode::BAD_REQUEST,
            json!({"detail": "No such subscription: 'sub_missing'"})
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stripe_outage_makes_stripe_retry_and_a_gone_subscription_uses_the_invoice() {
    let (app, stripe) = stripe_app().await;
    let user = app.student().await;
    link(&app, user.id, "incomplete", "rookie", "cus_out", None).await;
    Mock::given(method("GET"))
        .and(path("/v1/subscriptions/sub_out"))
        .respond_with(ResponseTemplate::new(503).set_body_string("down"))
        .up_to_n_times(1)
        .mount(&stripe)
        .await;
    let ev = event(
        "evt_outage",
        "invoice.payment_succeeded",
        app.ctx.clock.now().timestamp(),
        json!({"id": "in_out", "customer": "cus_out", "subscription": "sub_out", "amount_paid": 2900,
               "lines": {"data": [{"price": {"id": ADV}, "period": {"end": 1_910_000_000}}]}}),
    );
    let (s, b) = deliver(&app, &ev).await;
    assert_eq!(
        (s, b),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"detail": "Stripe API error"})
        )
    );
    assert_eq!(row(&app, user.id).await.status, "incomplete");
    assert!(bonus_rows(&app, user.id).await.is_empty());

    // Stripe retries; the subscription is now unknown to Stripe (404): the
    // invoice's own line decides.
    Mock::given(method("GET"))
        .and(path("/v1/subscriptions/sub_out"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "error": {"code": "resource_missing", "message": "No such subscription: 'sub_out'"}
        })))
        .mount(&stripe)
        .await;
    let (s, _) = deliver(&app, &ev).await;
    assert_eq!(s, 200);
    let r = row(&app, user.id).await;
    assert_eq!((r.status.as_str(), r.tier.as_str()), ("active", "advanced"));
    assert_eq!(r.current_period_end.unwrap().timestamp(), 1_910_000_000);
    assert_eq!(bonus_rows(&app, user.id).await, vec![(10, None)]);
}
