//! A fake Stripe for payment tests: the app pointed at a wiremock server,
//! a form-field matcher, and webhook events signed for real with the test
//! secret.

use crate::{StatusCode, TestApp, TestUser, json};
use serde_json::{Value, json};
use std::collections::HashMap;
use wiremock::{MockServer, Request};

pub const SECRET: &str = "whsec_test_secret";
pub const ADV: &str = "price_adv_test";
pub const PERF: &str = "price_perf_test";
pub const FRONT: &str = "http://localhost:3000";

/// The form fields of a request Stripe received.
pub fn form_of(req: &Request) -> HashMap<String, String> {
    let body = String::from_utf8_lossy(&req.body).to_string();
    reqwest::Url::parse(&format!("http://x/?{body}"))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Matches a form-encoded body that contains every given field.
pub struct Form(pub Vec<(&'static str, String)>);

impl wiremock::Match for Form {
    fn matches(&self, req: &Request) -> bool {
        let form = form_of(req);
        self.0
            .iter()
            .all(|(k, v)| form.get(*k).map(String::as_str) == Some(v.as_str()))
    }
}

/// The app with Stripe configured against a fresh fake server.
pub async fn stripe_app_with(extra: &[(&str, &str)]) -> (TestApp, MockServer) {
    let stripe = MockServer::start().await;
    let uri = stripe.uri();
    let mut vars = vec![
        ("STRIPE_SECRET_KEY", "sk_test_123"),
        ("STRIPE_WEBHOOK_SECRET", SECRET),
        ("STRIPE_BASE_URL", uri.as_str()),
        ("ADVANCED_PRICE_ID", ADV),
        ("PERFORMER_PRICE_ID", PERF),
        ("FRONTEND_URL", FRONT),
    ];
    vars.extend_from_slice(extra);
    let app = TestApp::spawn_with_vars(&vars).await;
    (app, stripe)
}

pub async fn stripe_app() -> (TestApp, MockServer) {
    stripe_app_with(&[]).await
}

pub fn event(id: &str, kind: &str, created: i64, object: Value) -> Value {
    json!({
        "id": id,
        "object": "event",
        "type": kind,
        "created": created,
        "livemode": false,
        "data": { "object": object },
    })
}

/// Sends a webhook signed now (per the app's clock).
pub async fn deliver(app: &TestApp, ev: &Value) -> (StatusCode, Value) {
    let body = serde_json::to_vec(ev).unwrap();
    let t = app.ctx.clock.now().timestamp();
    let sig = mambo_core::payments::signature_header(SECRET, t, &body);
    json(
        app.post("/api/payments/webhook")
            .header("Content-Type", "application/json; charset=utf-8")
            .header("Stripe-Signature", sig)
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

pub fn stripe_subscription(
    id: &str,
    customer: &str,
    price: &str,
    status: &str,
    user: &str,
) -> Value {
    json!({
        "id": id,
        "object": "subscription",
        "customer": customer,
        "status": status,
        "current_period_end": 1_900_000_000,
        "metadata": { "user_id": user },
        "items": { "object": "list", "data": [
            { "id": "si_1", "price": { "id": price, "lookup_key": null } }
        ]},
    })
}

/// Links the user's subscription row to Stripe ids with a status and tier.
pub async fn link(
    app: &TestApp,
    user: uuid::Uuid,
    status: &str,
    tier: &str,
    customer: &str,
    sub: Option<&str>,
) {
    sqlx::query(
        "UPDATE subscriptions SET status=$2, tier=$3, stripe_customer_id=$4, stripe_subscription_id=$5
         WHERE user_id=$1",
    )
    .bind(user)
    .bind(status)
    .bind(tier)
    .bind(customer)
    .bind(sub)
    .execute(app.db())
    .await
    .unwrap();
}

/// A signed-in POST with an optional JSON body.
pub async fn post_as(
    app: &TestApp,
    user: &TestUser,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut r = app.post(path).header("Authorization", user.bearer());
    if let Some(b) = body {
        r = r.json(&b);
    }
    json(r.send().await.unwrap()).await
}

/// A signed-in GET.
pub async fn get_as(app: &TestApp, user: &TestUser, path: &str) -> (StatusCode, Value) {
    json(
        app.get(path)
            .header("Authorization", user.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await
}

pub fn checkout_body(price: &str) -> Value {
    json!({
        "price_id": price,
        "success_url": format!("{FRONT}/pricing/success?session_id={{CHECKOUT_SESSION_ID}}"),
        "cancel_url": format!("{FRONT}/pricing"),
    })
}

pub async fn checkout(app: &TestApp, user: &TestUser, body: &Value) -> (StatusCode, Value) {
    post_as(
        app,
        user,
        "/api/payments/create-checkout-session",
        Some(body.clone()),
    )
    .await
}
