//! The billing lifecycle (API-NEXT.md N2) against a fake Stripe that checks
//! what it receives: trials and their eligibility, upgrade and scheduled
//! downgrade, cancel at period end and resume, the billing portal, every
//! webhook event (idempotent and order-safe), the grace period of a failed
//! payment and the notices (notification and email) billing events send.

use chrono::{Duration, Utc};
use mambo_tests::stripe::*;
use mambo_tests::*;
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::{header_exists, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CHECKOUT: &str = "/api/payments/create-checkout-session";
const SUB: &str = "/api/payments/subscription";
const UPDATE: &str = "/api/payments/update-subscription";
const CANCEL: &str = "/api/payments/cancel-subscription";
const RESUME: &str = "/api/payments/resume-subscription";
const RELEASE: &str = "/api/payments/cancel-scheduled-downgrade";
const PORTAL: &str = "/api/payments/create-portal-session";

/// Stripe answers customers and checkout sessions.
async fn mount_checkout(stripe: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/v1/customers"))
        .and(header_exists("Idempotency-Key"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "cus_new"})))
        .mount(stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .and(header_exists("Idempotency-Key"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "cs_1", "url": "https://checkout.stripe.test/cs_1"})),
        )
        .mount(stripe)
        .await;
}

/// The form of every checkout session Stripe received, in order.
async fn sessions(stripe: &MockServer) -> Vec<std::collections::HashMap<String, String>> {
    stripe
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == "/v1/checkout/sessions")
        .map(form_of)
        .collect()
}

async fn set_email(app: &TestApp, user: Uuid, email: &str) {
    sqlx::query("UPDATE users SET email = $2 WHERE id = $1")
        .bind(user)
        .bind(email)
        .execute(app.db())
        .await
        .unwrap();
}

async fn trial_days(app: &TestApp, user: &TestUser) -> i64 {
    let (s, b) = post_as(app, user, CHECKOUT, Some(checkout_body(ADV))).await;
    assert_eq!(s, 200, "{b}");
    b["trial_days"].as_i64().unwrap()
}

fn sub_object(id: &str, customer: &str, price: &str, status: &str, user: Uuid) -> Value {
    let mut s = stripe_subscription(id, customer, price, status, &user.to_string());
    s["cancel_at_period_end"] = json!(false);
    s["trial_end"] = Value::Null;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trial_is_offered_once_per_person_not_per_alias() {
    let (app, stripe) = stripe_app().await;
    mount_checkout(&stripe).await;
    let now = app.ctx.clock.now().timestamp();

    let ana = app.student().await;
    set_email(&app, ana.id, "ana.lopez@gmail.com").await;
    // Offered, and offering it in a session never completed uses nothing up.
    assert_eq!(trial_days(&app, &ana).await, 7);
    assert_eq!(trial_days(&app, &ana).await, 7);
    let forms = sessions(&stripe).await;
    assert_eq!(forms.len(), 2);
    assert_eq!(
        forms[0]
            .get("subscription_data[trial_period_days]")
            .map(String::as_str),
        Some("7")
    );

    // Stripe starts the trial: the subscription is seen `trialing`.
    let mut sub = sub_object("sub_ana", "cus_new", ADV, "trialing", ana.id);
    sub["trial_end"] = json!(now + 7 * 86_400);
    let (s, _) = deliver(
        &app,
        &event("evt_trial_1", "customer.subscription.created", now, sub),
    )
    .await;
    assert_eq!(s, 200);
    let (_, view) = get_as(&app, &ana, SUB).await;
    assert_eq!(view["status"], "trialing");
    assert_eq!(view["tier"], "advanced");
    assert!(view["trial_end"].is_string(), "{view}");

    // A gmail alias of the same person: dots, +tag, googlemail.com.
    let alias = app.student().await;
    set_email(&app, alias.id, "A.na.Lopez+salsa@googlemail.com").await;
    assert_eq!(trial_days(&app, &alias).await, 0);
    let last = sessions(&stripe).await.pop().unwrap();
    assert!(
        !last.contains_key("subscription_data[trial_period_days]"),
        "{last:?}"
    );

    // The account deleted and registered again with the same address.
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(ana.id)
        .execute(app.db())
        .await
        .unwrap();
    let again = app.student().await;
    set_email(&app, again.id, "ana.lopez@gmail.com").await;
    assert_eq!(trial_days(&app, &again).await, 0);

    // Someone who had a Stripe subscription before gets no trial either.
    let former = app.student().await;
    link(
        &app,
        former.id,
        "canceled",
        "rookie",
        "cus_f",
        Some("sub_old"),
    )
    .await;
    assert_eq!(trial_days(&app, &former).await, 0);

    // An ordinary new address is eligible, and other domains keep their dots.
    let other = app.student().await;
    set_email(&app, other.id, "ana.lopez@example.com").await;
    assert_eq!(trial_days(&app, &other).await, 7);

    // TRIAL_DAYS=0 turns trials off.
    let (off, off_stripe) = stripe_app_with(&[("TRIAL_DAYS", "0")]).await;
    mount_checkout(&off_stripe).await;
    let u = off.student().await;
    assert_eq!(trial_days(&off, &u).await, 0);
}

/// Stripe's subscription `sub_id` on `price`, as a GET returns it.
async fn mount_subscription(stripe: &MockServer, sub_id: &str, price: &str, schedule: Value) {
    Mock::given(method("GET"))
        .and(path(format!("/v1/subscriptions/{sub_id}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": sub_id, "status": "active", "schedule": schedule,
            "current_period_start": 1_890_000_000, "current_period_end": 1_900_000_000,
            "items": {"data": [{"id": "si_x", "price": {"id": price}}]}
        })))
        .mount(stripe)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_prorates_and_downgrade_waits_for_the_period_end() {
    let (app, stripe) = stripe_app().await;
    let user = app.student().await;
    link(&app, user.id, "active", "advanced", "cus_u", Some("sub_u")).await;

    // Same tier.
    let (s, b) = post_as(&app, &user, UPDATE, Some(json!({"new_price_id": ADV}))).await;
    assert_eq!(
        (s, b),
        (
            StatusCode::BAD_REQUEST,
            json!({"detail": "Already on this plan"})
        )
    );

    // Upgrade: immediate, prorated, with an idempotency key.
    mount_subscription(&stripe, "sub_u", ADV, Value::Null).await;
    Mock::given(method("POST"))
        .and(path("/v1/subscriptions/sub_u"))
        .and(header_exists("Idempotency-Key"))
        .and(Form(vec![
            ("items[0][id]", "si_x".into()),
            ("items[0][price]", PERF.into()),
            ("proration_behavior", "always_invoice".into()),
        ]))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "sub_u", "status": "active", "current_period_end": 1_900_000_000,
            "items": {"data": [{"id": "si_x", "price": {"id": PERF}}]}
        })))
        .expect(1)
        .mount(&stripe)
        .await;
    let (s, b) = post_as(&app, &user, UPDATE, Some(json!({"new_price_id": PERF}))).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        (&b["tier"], &b["scheduled_tier"]),
        (&json!("performer"), &Value::Null)
    );

    // Downgrade: a schedule from the subscription, phase 1 keeps performer
    // until the period ends, phase 2 is advanced.
    stripe.reset().await;
    mount_subscription(&stripe, "sub_u", PERF, Value::Null).await;
    Mock::given(method("POST"))
        .and(path("/v1/subscription_schedules"))
        .and(header_exists("Idempotency-Key"))
        .and(Form(vec![("from_subscription", "sub_u".into())]))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "sub_sched_1", "subscription": "sub_u", "status": "active",
            "current_phase": {"start_date": 1_890_000_000, "end_date": 1_900_000_000},
            "phases": [{"start_date": 1_890_000_000, "end_date": 1_900_000_000,
                        "items": [{"price": PERF, "quantity": 1}]}]
        })))
        .expect(1)
        .mount(&stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/subscription_schedules/sub_sched_1"))
        .and(header_exists("Idempotency-Key"))
        .and(Form(vec![
            ("end_behavior", "release".into()),
            ("phases[0][items][0][price]", PERF.into()),
            ("phases[0][start_date]", "1890000000".into()),
            ("phases[0][end_date]", "1900000000".into()),
            ("phases[1][items][0][price]", ADV.into()),
        ]))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "sub_sched_1"})))
        .expect(1)
        .mount(&stripe)
        .await;
    let (s, b) = post_as(&app, &user, UPDATE, Some(json!({"new_price_id": ADV}))).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        (&b["tier"], &b["scheduled_tier"], &b["message"]),
        (
            &json!("performer"),
            &json!("advanced"),
            &json!("Subscription updated successfully.")
        )
    );
    let (_, me) = get_as(&app, &user, "/api/auth/me").await;
    assert_eq!(
        me["tier"], "performer",
        "performer access until the phase starts"
    );

    // Release the schedule: the downgrade is gone; a second time is a 400.
    Mock::given(method("POST"))
        .and(path("/v1/subscription_schedules/sub_sched_1/release"))
        .and(header_exists("Idempotency-Key"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "sub_sched_1", "status": "released"})),
        )
        .expect(1)
        .mount(&stripe)
        .await;
    let (s, b) = post_as(&app, &user, RELEASE, None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        (&b["tier"], &b["scheduled_tier"]),
        (&json!("performer"), &Value::Null)
    );
    let (s, b) = post_as(&app, &user, RELEASE, None).await;
    assert_eq!(
        (s, b),
        (
            StatusCode::BAD_REQUEST,
            json!({"detail": "No scheduled downgrade"})
        )
    );

    // The schedule's events keep scheduled_tier in step, and when the
    // second phase starts the tier follows.
    let now = app.ctx.clock.now().timestamp();
    let schedule = |status: &str, current_start: i64| {
        json!({
            "id": "sub_sched_2", "object": "subscription_schedule", "subscription": "sub_u",
            "customer": "cus_u", "status": status,
            "current_phase": {"start_date": current_start},
            "phases": [
                {"start_date": 1_890_000_000, "end_date": 1_900_000_000, "items": [{"price": PERF}]},
                {"start_date": 1_900_000_000, "end_date": 1_902_000_000, "items": [{"price": ADV}]}
            ]
        })
    };
    let (s, _) = deliver(
        &app,
        &event(
            "evt_sch_1",
            "subscription_schedule.created",
            now,
            schedule("active", 1_890_000_000),
        ),
    )
    .await;
    assert_eq!(s, 200);
    let (_, v) = get_as(&app, &user, SUB).await;
    assert_eq!(
        (&v["tier"], &v["scheduled_tier"]),
        (&json!("performer"), &json!("advanced"))
    );
    let (s, _) = deliver(
        &app,
        &event(
            "evt_sch_2",
            "subscription_schedule.updated",
            now + 10,
            schedule("active", 1_900_000_000),
        ),
    )
    .await;
    assert_eq!(s, 200);
    let (_, v) = get_as(&app, &user, SUB).await;
    assert_eq!(
        (&v["tier"], &v["scheduled_tier"]),
        (&json!("advanced"), &Value::Null)
    );
    // An older schedule event afterwards changes nothing.
    let (s, _) = deliver(
        &app,
        &event(
            "evt_sch_0",
            "subscription_schedule.created",
            now - 10,
            schedule("active", 1_890_000_000),
        ),
    )
    .await;
    assert_eq!(s, 200);
    let (_, v2) = get_as(&app, &user, SUB).await;
    assert_eq!(v, v2);
}

/// A published paid world with one lesson.
async fn paid_lesson(app: &TestApp) -> Uuid {
    let slug = format!("w-{}", Uuid::new_v4().simple());
    let world: Uuid = sqlx::query_scalar(
        "INSERT INTO worlds (title, slug, order_index, is_free, difficulty, is_published)
         VALUES ($1, $1, 0, false, 'Beginner', true) RETURNING id",
    )
    .bind(&slug)
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
    sqlx::query_scalar(
        "INSERT INTO lessons (level_id, title, video_url, xp_value, order_index)
         VALUES ($1, 'Paid lesson', 'https://video.example/x', 10, 0) RETURNING id",
    )
    .bind(level)
    .fetch_one(app.db())
    .await
    .unwrap()
}

async fn opens(app: &TestApp, user: &TestUser, lesson: Uuid) -> StatusCode {
    get_as(app, user, &format!("/api/courses/lessons/{lesson}"))
        .await
        .0
}

async fn notifications_of(app: &TestApp, user: Uuid) -> Vec<(String, String)> {
    sqlx::query_as("SELECT type, title FROM notifications WHERE user_id = $1 ORDER BY created_at")
        .bind(user)
        .fetch_all(app.db())
        .await
        .unwrap()
}

async fn fake_resend() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/emails"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "em_1"})))
        .mount(&server)
        .await;
    server
}

/// The subjects of the emails the fake Resend received for `to`, once `n`
/// arrived (and a moment longer, so a duplicate would show).
async fn emails_to(server: &MockServer, to: &str, n: usize) -> Vec<Value> {
    let read = || async {
        server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path() == "/emails")
            .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
            .filter(|e| e["to"][0] == to)
            .collect::<Vec<_>>()
    };
    let got = eventually(20, || async { (read().await.len() >= n).then_some(()) }).await;
    assert!(
        got.is_some(),
        "{n} email(s) to {to} expected, got {:#?}",
        read().await
    );
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    read().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_at_period_end_resume_and_the_end_of_a_subscription() {
    let resend = fake_resend().await;
    let (app, stripe) = stripe_app_with(&[
        ("RESEND_API_KEY", "re_test"),
        ("RESEND_BASE_URL", &resend.uri()),
    ])
    .await;
    let lesson = paid_lesson(&app).await;
    let user = app.student().await;

    // Resume without a subscription.
    let (s, b) = post_as(&app, &user, RESUME, None).await;
    assert_eq!(
        (s, b),
        (
            StatusCode::NOT_FOUND,
            json!({"detail": "No active subscription"})
        )
    );

    link(&app, user.id, "active", "performer", "cus_c", Some("sub_c")).await;
    assert_eq!(opens(&app, &user, lesson).await, 200);
    let (s, b) = post_as(&app, &user, RESUME, None).await;
    assert_eq!(
        (s, b),
        (
            StatusCode::BAD_REQUEST,
            json!({"detail": "Subscription is not scheduled to cancel"})
        )
    );

    Mock::given(method("POST"))
        .and(path("/v1/subscriptions/sub_c"))
        .and(header_exists("Idempotency-Key"))
        .and(Form(vec![("cancel_at_period_end", "true".into())]))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "sub_c", "status": "active", "cancel_at_period_end": true,
            "current_period_end": 1_900_000_000,
            "items": {"data": [{"id": "si_c", "price": {"id": PERF}}]}
        })))
        .expect(1)
        .mount(&stripe)
        .await;
    let (s, b) = post_as(&app, &user, CANCEL, None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["message"],
        "Your subscription will end on March 17, 2030. You keep access until then."
    );
    assert_eq!(b["cancel_at_period_end"], true);
    assert_eq!(b["current_period_end"], "2030-03-17T17:46:40.000000Z");
    // Tier and access stay until the period ends.
    assert_eq!(opens(&app, &user, lesson).await, 200);
    let (_, v) = get_as(&app, &user, SUB).await;
    assert_eq!(
        v,
        json!({"tier": "performer", "status": "active", "cancel_at_period_end": true,
               "current_period_end": "2030-03-17T17:46:40.000000Z", "scheduled_tier": null, "trial_end": null})
    );

    // Resume clears it.
    Mock::given(method("POST"))
        .and(path("/v1/subscriptions/sub_c"))
        .and(Form(vec![("cancel_at_period_end", "false".into())]))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "sub_c", "status": "active", "cancel_at_period_end": false,
            "current_period_end": 1_900_000_000,
        })))
        .expect(1)
        .mount(&stripe)
        .await;
    let (s, b) = post_as(&app, &user, RESUME, None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["cancel_at_period_end"], false);

    // Stripe ends the subscription: access is lost at once, and the user is
    // told once, however often the event comes.
    let now = app.ctx.clock.now().timestamp();
    let mut gone = sub_object("sub_c", "cus_c", PERF, "canceled", user.id);
    gone["ended_at"] = json!(now);
    let ended = event("evt_end", "customer.subscription.deleted", now, gone);
    assert_eq!(deliver(&app, &ended).await.0, 200);
    assert_eq!(deliver(&app, &ended).await.0, 200);
    assert_eq!(opens(&app, &user, lesson).await, 403);
    let (_, v) = get_as(&app, &user, SUB).await;
    assert_eq!(
        (&v["tier"], &v["status"]),
        (&json!("rookie"), &json!("canceled"))
    );
    assert_eq!(
        notifications_of(&app, user.id).await,
        vec![(
            "subscription".to_string(),
            "Your subscription has ended".to_string()
        )]
    );
    let mails = emails_to(&resend, &user.email, 1).await;
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert!(
        mails[0]["subject"]
            .as_str()
            .unwrap()
            .starts_with("Your subscription has ended"),
        "{}",
        mails[0]["subject"]
    );
    // Nothing left to cancel or resume.
    assert_eq!(post_as(&app, &user, CANCEL, None).await.0, 400);
    assert_eq!(post_as(&app, &user, RESUME, None).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_billing_portal() {
    let (app, stripe) = stripe_app().await;
    let user = app.student().await;
    let body = json!({"return_url": format!("{FRONT}/billing")});

    let (s, b) = post_as(&app, &user, PORTAL, Some(body.clone())).await;
    assert_eq!(
        (s, b),
        (
            StatusCode::NOT_FOUND,
            json!({"detail": "No billing account found. Subscribe first to manage billing."})
        )
    );
    link(&app, user.id, "active", "advanced", "cus_p", Some("sub_p")).await;
    for bad in [
        "https://evil.example/billing",
        "http://localhost:3000.evil.example/billing",
        "http://localhost:3001/billing",
        "/billing",
    ] {
        let (s, b) = post_as(&app, &user, PORTAL, Some(json!({"return_url": bad}))).await;
        assert_eq!(
            (s, b),
            (
                StatusCode::BAD_REQUEST,
                json!({"detail": "Invalid return_url"})
            ),
            "{bad}"
        );
    }
    Mock::given(method("POST"))
        .and(path("/v1/billing_portal/sessions"))
        .and(header_exists("Idempotency-Key"))
        .and(Form(vec![
            ("customer", "cus_p".into()),
            ("return_url", format!("{FRONT}/billing")),
        ]))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "bps_1", "url": "https://billing.stripe.test/session/bps_1"
        })))
        .expect(1)
        .mount(&stripe)
        .await;
    let (s, b) = post_as(&app, &user, PORTAL, Some(body)).await;
    assert_eq!(
        (s, b),
        (
            StatusCode::OK,
            json!({"url": "https://billing.stripe.test/session/bps_1"})
        )
    );
}

#[derive(Debug, PartialEq, sqlx::FromRow)]
struct Mirror {
    status: String,
    tier: String,
    cancel_at_period_end: bool,
    current_period_end: Option<chrono::DateTime<Utc>>,
    trial_end: Option<chrono::DateTime<Utc>>,
}

async fn mirror(app: &TestApp, user: Uuid) -> Mirror {
    sqlx::query_as(
        "SELECT status, tier, cancel_at_period_end, current_period_end, trial_end
         FROM subscriptions WHERE user_id = $1",
    )
    .bind(user)
    .fetch_one(app.db())
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_events_mirror_stripe_once_and_in_order() {
    let (app, _stripe) = stripe_app_with(&[("STRIPE_SECRET_KEY", "")]).await;
    let user = app.student().await;
    link(&app, user.id, "incomplete", "rookie", "cus_m", None).await;
    let now = app.ctx.clock.now().timestamp();

    // An expired checkout changes nothing, but is recorded.
    let expired = event(
        "evt_exp",
        "checkout.session.expired",
        now,
        json!({"id": "cs_x", "customer": "cus_m", "client_reference_id": user.id.to_string()}),
    );
    let before = mirror(&app, user.id).await;
    assert_eq!(deliver(&app, &expired).await.0, 200);
    assert_eq!(mirror(&app, user.id).await, before);
    let recorded: Option<String> = sqlx::query_scalar(
        "SELECT kind FROM processed_webhook_events WHERE provider = 'stripe' AND event_id = 'evt_exp'",
    )
    .fetch_optional(app.db())
    .await
    .unwrap();
    assert_eq!(recorded.as_deref(), Some("checkout.session.expired"));

    // created / updated mirror status, tier, cancel flag, period and trial end.
    for (i, status) in ["trialing", "active", "past_due", "unpaid", "incomplete"]
        .iter()
        .enumerate()
    {
        let mut sub = sub_object("sub_m", "cus_m", PERF, status, user.id);
        sub["cancel_at_period_end"] = json!(i % 2 == 0);
        sub["trial_end"] = if *status == "trialing" {
            json!(1_800_000_000)
        } else {
            Value::Null
        };
        let kind = if i == 0 {
            "customer.subscription.created"
        } else {
            "customer.subscription.updated"
        };
        let (s, _) = deliver(
            &app,
            &event(&format!("evt_m{i}"), kind, now + i as i64, sub),
        )
        .await;
        assert_eq!(s, 200);
        let m = mirror(&app, user.id).await;
        assert_eq!(m.status, *status);
        assert_eq!(m.tier, "performer");
        assert_eq!(m.cancel_at_period_end, i % 2 == 0);
        assert_eq!(m.current_period_end.unwrap().timestamp(), 1_900_000_000);
        assert_eq!(
            m.trial_end.map(|t| t.timestamp()),
            (*status == "trialing").then_some(1_800_000_000)
        );
    }

    // Back to active; the same event twice, then an older one: nothing moves.
    let newest = event(
        "evt_new",
        "customer.subscription.updated",
        now + 100,
        sub_object("sub_m", "cus_m", ADV, "active", user.id),
    );
    assert_eq!(deliver(&app, &newest).await.0, 200);
    let settled = mirror(&app, user.id).await;
    assert_eq!(
        (settled.status.as_str(), settled.tier.as_str()),
        ("active", "advanced")
    );
    assert_eq!(deliver(&app, &newest).await.0, 200);
    assert_eq!(mirror(&app, user.id).await, settled);
    let older = event(
        "evt_old",
        "customer.subscription.updated",
        now + 50,
        sub_object("sub_m", "cus_m", PERF, "past_due", user.id),
    );
    assert_eq!(deliver(&app, &older).await.0, 200);
    assert_eq!(mirror(&app, user.id).await, settled);
    let old_failure = event(
        "evt_old_fail",
        "invoice.payment_failed",
        now + 60,
        json!({"id": "in_old", "customer": "cus_m", "subscription": "sub_m"}),
    );
    assert_eq!(deliver(&app, &old_failure).await.0, 200);
    assert_eq!(mirror(&app, user.id).await, settled);
    assert!(notifications_of(&app, user.id).await.is_empty());
}

async fn fail_payment(app: &TestApp, id: &str, customer: &str, sub: &str, at: i64) {
    let ev = event(
        id,
        "invoice.payment_failed",
        at,
        json!({"id": format!("in_{id}"), "customer": customer, "subscription": sub, "attempt_count": 1}),
    );
    let (s, b) = deliver(app, &ev).await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_payment_keeps_access_for_the_grace_period_only() {
    let resend = fake_resend().await;
    let (app, _stripe) = stripe_app_with(&[
        ("STRIPE_SECRET_KEY", ""),
        ("PAYMENT_GRACE_DAYS", "3"),
        ("RESEND_API_KEY", "re_test"),
        ("RESEND_BASE_URL", &resend.uri()),
    ])
    .await;
    let lesson = paid_lesson(&app).await;
    let now = Utc::now();
    let ago = |d: i64| (now - Duration::days(d)).timestamp();

    // Failed a day ago: inside the grace period.
    let recent = app.student().await;
    link(
        &app,
        recent.id,
        "active",
        "advanced",
        "cus_r",
        Some("sub_r"),
    )
    .await;
    fail_payment(&app, "evt_r1", "cus_r", "sub_r", ago(1)).await;
    assert_eq!(opens(&app, &recent, lesson).await, 200);
    let (_, v) = get_as(&app, &recent, SUB).await;
    assert_eq!(v["status"], "past_due");
    // The wallet's pro flag follows the same rule.
    let (_, w) = get_as(&app, &recent, "/api/claves/wallet").await;
    assert_eq!(w["is_pro"], true);
    assert_eq!(
        notifications_of(&app, recent.id).await,
        vec![(
            "subscription".to_string(),
            "Your payment failed".to_string()
        )]
    );
    let mails = emails_to(&resend, &recent.email, 1).await;
    assert_eq!(mails.len(), 1);
    assert!(
        mails[0]["text"]
            .as_str()
            .unwrap()
            .contains(&format!("{FRONT}/billing")),
        "{}",
        mails[0]["text"]
    );

    // First failed five days ago: the grace period is over, and a later
    // failure does not start a new one.
    let late = app.student().await;
    link(&app, late.id, "active", "advanced", "cus_l", Some("sub_l")).await;
    fail_payment(&app, "evt_l1", "cus_l", "sub_l", ago(5)).await;
    assert_eq!(opens(&app, &late, lesson).await, 403);
    fail_payment(&app, "evt_l2", "cus_l", "sub_l", ago(0) - 60).await;
    assert_eq!(opens(&app, &late, lesson).await, 403);
    let (_, w) = get_as(&app, &late, "/api/claves/wallet").await;
    assert_eq!(w["is_pro"], false);

    // Paying the invoice restores access.
    let paid = event(
        "evt_l_paid",
        "invoice.paid",
        ago(0),
        json!({"id": "in_l_paid", "customer": "cus_l", "subscription": "sub_l", "amount_paid": 2900,
               "lines": {"data": [{"price": {"id": ADV}, "period": {"end": 1_910_000_000}}]}}),
    );
    assert_eq!(deliver(&app, &paid).await.0, 200);
    assert_eq!(opens(&app, &late, lesson).await, 200);
    let (_, v) = get_as(&app, &late, SUB).await;
    assert_eq!(v["status"], "active");
    let grace: Option<chrono::DateTime<Utc>> =
        sqlx::query_scalar("SELECT grace_until FROM subscriptions WHERE user_id = $1")
            .bind(late.id)
            .fetch_one(app.db())
            .await
            .unwrap();
    assert_eq!(grace, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trial_will_end_tells_the_user_once() {
    let resend = fake_resend().await;
    let (app, _stripe) = stripe_app_with(&[
        ("STRIPE_SECRET_KEY", ""),
        ("RESEND_API_KEY", "re_test"),
        ("RESEND_BASE_URL", &resend.uri()),
    ])
    .await;
    let user = app.student().await;
    link(
        &app,
        user.id,
        "trialing",
        "advanced",
        "cus_t",
        Some("sub_t"),
    )
    .await;
    let now = app.ctx.clock.now().timestamp();
    let mut sub = sub_object("sub_t", "cus_t", ADV, "trialing", user.id);
    sub["trial_end"] = json!(1_900_000_000);
    // Two deliveries of one event, and a second event for the same trial.
    let first = event(
        "evt_twe_1",
        "customer.subscription.trial_will_end",
        now,
        sub.clone(),
    );
    assert_eq!(deliver(&app, &first).await.0, 200);
    assert_eq!(deliver(&app, &first).await.0, 200);
    let second = event(
        "evt_twe_2",
        "customer.subscription.trial_will_end",
        now + 1,
        sub,
    );
    assert_eq!(deliver(&app, &second).await.0, 200);

    let mails = emails_to(&resend, &user.email, 1).await;
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert_eq!(
        mails[0]["subject"],
        "Your trial ends on March 17, 2030 - The Mambo Guild"
    );
    assert_eq!(
        notifications_of(&app, user.id).await,
        vec![(
            "subscription".to_string(),
            "Your trial ends on March 17, 2030".to_string()
        )]
    );
}

async fn unverify(app: &TestApp, user: Uuid) {
    sqlx::query("UPDATE users SET is_verified = false WHERE id = $1")
        .bind(user)
        .execute(app.db())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trial_needs_a_verified_email_but_paying_does_not() {
    let (app, stripe) = stripe_app().await;
    mount_checkout(&stripe).await;

    // Eligible for a trial but unverified: refused, and Stripe is not called.
    let fresh = app.student().await;
    unverify(&app, fresh.id).await;
    let (s, b) = checkout(&app, &fresh, &checkout_body(ADV)).await;
    assert_eq!(
        (s, b),
        (
            StatusCode::FORBIDDEN,
            json!({"detail": "Please verify your email first"})
        )
    );
    assert!(sessions(&stripe).await.is_empty());

    // Not eligible (had a subscription): an unverified user can still pay.
    let former = app.student().await;
    unverify(&app, former.id).await;
    link(
        &app,
        former.id,
        "canceled",
        "rookie",
        "cus_f",
        Some("sub_f"),
    )
    .await;
    assert_eq!(trial_days(&app, &former).await, 0);

    // Admins are exempt.
    let admin = app.admin().await;
    unverify(&app, admin.id).await;
    assert_eq!(trial_days(&app, &admin).await, 7);

    // Without the trial gate in REQUIRE_VERIFIED_FOR the trial is offered.
    let (open, open_stripe) = stripe_app_with(&[("REQUIRE_VERIFIED_FOR", "post,reply")]).await;
    mount_checkout(&open_stripe).await;
    let u = open.student().await;
    unverify(&open, u.id).await;
    assert_eq!(trial_days(&open, &u).await, 7);
}

/// The documented development events (docs/stripe-events, sent by `mambo
/// stripe-event`) are accepted by the webhook and do what the table says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_test_events_replay_through_the_signed_webhook() {
    let (app, _stripe) = stripe_app_with(&[("STRIPE_SECRET_KEY", "")]).await;
    let user = app.student().await;
    link(&app, user.id, "incomplete", "rookie", "cus_dev_1", None).await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/stripe-events");
    let http = reqwest::Client::new();
    let mut now = app.ctx.clock.now().timestamp();
    for (file, status) in [
        ("subscription_trialing.json", "trialing"),
        ("payment_failed.json", "past_due"),
        ("invoice_paid.json", "active"),
        ("trial_will_end.json", "active"),
        ("subscription_deleted.json", "canceled"),
    ] {
        let text = std::fs::read_to_string(dir.join(file))
            .unwrap()
            .replace("00000000-0000-0000-0000-000000000000", &user.id.to_string());
        now += 1;
        let event = mambo_core::payments::complete_event(serde_json::from_str(&text).unwrap(), now)
            .unwrap();
        let (code, body) = mambo_core::payments::send_signed_event(
            &http,
            &app.url(""),
            SECRET,
            &event,
            app.ctx.clock.now().timestamp(),
        )
        .await
        .unwrap();
        assert_eq!(code, 200, "{file}: {body}");
        let (_, v) = get_as(&app, &user, SUB).await;
        assert_eq!(v["status"], status, "{file}: {v}");
    }
    let kinds: Vec<String> = notifications_of(&app, user.id)
        .await
        .into_iter()
        .map(|(_, title)| title)
        .collect();
    assert_eq!(
        kinds,
        vec![
            "Your payment failed",
            "Your trial ends on March 17, 2030",
            "Your subscription has ended"
        ]
    );
}

/// Account deletion's Stripe step: cancels at once with one idempotency key
/// however often it runs, and without Stripe settings ends the row locally
/// instead of failing the deletion forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deletion_cancel_is_idempotent_and_never_stalls() {
    let (app, stripe) = stripe_app().await;
    let user = app.student().await;
    link(&app, user.id, "active", "advanced", "cus_d", Some("sub_d")).await;
    Mock::given(method("DELETE"))
        .and(path("/v1/subscriptions/sub_d"))
        .and(header_exists("Idempotency-Key"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": "sub_d", "status": "canceled"})),
        )
        .expect(1)
        .mount(&stripe)
        .await;
    mambo_core::payments::cancel_for_deletion(&app.ctx, user.id)
        .await
        .unwrap();
    mambo_core::payments::cancel_for_deletion(&app.ctx, user.id)
        .await
        .unwrap();
    let (_, v) = get_as(&app, &user, SUB).await;
    assert_eq!(
        (&v["status"], &v["tier"]),
        (&json!("canceled"), &json!("rookie"))
    );

    let (bare, _) = stripe_app_with(&[("STRIPE_SECRET_KEY", "")]).await;
    let other = bare.student().await;
    link(
        &bare,
        other.id,
        "active",
        "advanced",
        "cus_e",
        Some("sub_e"),
    )
    .await;
    mambo_core::payments::cancel_for_deletion(&bare.ctx, other.id)
        .await
        .unwrap();
    let (_, v) = get_as(&bare, &other, SUB).await;
    assert_eq!(v["status"], "canceled");
}
