//! Stripe subscriptions (API.md §3.12, §4.15; defects D9–D11).
//!
//! Stripe is called with plain form-encoded requests through `ctx.http`
//! against `config.stripe_base_url`, so tests point it at a fake server.
//! Webhooks are verified (hex HMAC-SHA256 over `"{t}.{body}"`, constant time,
//! 300 s tolerance against `ctx.clock`) and processed once per `event.id`:
//! the id is recorded in `processed_webhook_events` in the same transaction
//! as the event's effects. Events that arrive out of order never undo a newer
//! state: every state change is guarded by `subscriptions.stripe_event_created`.

use crate::economy::{self, Amounts};
use crate::{Config, Context, Error, Result};
use chrono::{DateTime, TimeZone, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use sqlx::PgConnection;
use uuid::Uuid;

/// Stripe's default replay window for webhook signatures.
pub const WEBHOOK_TOLERANCE_SECONDS: i64 = 300;

pub const MSG_INVALID_PRICE: &str =
    "Invalid price ID. Only Advanced and Performer tiers are available.";
pub const MSG_ALREADY_ACTIVE: &str =
    "User already has an active subscription. Use update-subscription to change plans.";
pub const MSG_NO_SUBSCRIPTION: &str = "No subscription found for this user.";
pub const MSG_NOT_ACTIVE_UPDATE: &str = "Subscription is not active. Cannot update.";
pub const MSG_NO_STRIPE_ID_UPDATE: &str = "No Stripe subscription ID found. Cannot update.";
pub const MSG_NOT_ACTIVE_CANCEL: &str = "Subscription is not active. Nothing to cancel.";
pub const MSG_UPDATED: &str = "Subscription updated successfully.";
pub const MSG_CANCELED_STRIPE: &str =
    "Subscription canceled successfully. You now have access to the Rookie plan.";
pub const MSG_CANCELED_LOCAL: &str = "Subscription canceled successfully.";
const MSG_STRIPE_DOWN: &str = "Payment provider unavailable. Please try again later.";

// ---------------------------------------------------------------------------
// Price ids and tiers
// ---------------------------------------------------------------------------

/// `ADVANCED_PRICE_ID` → advanced, `PERFORMER_PRICE_ID` → performer; nothing else.
pub fn tier_for_price(config: &Config, price_id: &str) -> Option<&'static str> {
    let p = price_id.trim();
    if p.is_empty() {
        None
    } else if p == config.advanced_price_id {
        Some("advanced")
    } else if p == config.performer_price_id {
        Some("performer")
    } else {
        None
    }
}

fn tier_for_lookup_key(key: &str) -> Option<&'static str> {
    match key.trim().to_ascii_lowercase().as_str() {
        "advanced" => Some("advanced"),
        "performer" | "vip" => Some("performer"),
        _ => None,
    }
}

/// The tier of a Stripe subscription object: its first item's price id, then
/// the price's `lookup_key`; anything else is rookie.
pub fn tier_of_subscription(config: &Config, sub: &Value) -> &'static str {
    let price = &sub["items"]["data"][0]["price"];
    price["id"]
        .as_str()
        .and_then(|id| tier_for_price(config, id))
        .or_else(|| price["lookup_key"].as_str().and_then(tier_for_lookup_key))
        .unwrap_or("rookie")
}

/// `current_period_end` of a subscription (top level, or on the first item in
/// newer API versions), as UTC.
pub fn period_end_of_subscription(sub: &Value) -> Option<DateTime<Utc>> {
    sub["current_period_end"]
        .as_i64()
        .or_else(|| sub["items"]["data"][0]["current_period_end"].as_i64())
        .and_then(unix_to_utc)
}

fn unix_to_utc(secs: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(secs, 0).single()
}

/// Maps Stripe's subscription statuses onto ours.
fn local_status(stripe_status: &str) -> &'static str {
    match stripe_status {
        "active" => "active",
        "trialing" => "trialing",
        "past_due" | "unpaid" => "past_due",
        "canceled" | "incomplete_expired" | "paused" => "canceled",
        _ => "incomplete",
    }
}

/// A Stripe id that may come expanded (`{"id": ...}`) or as a string.
fn id_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Object(o) => o
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        _ => None,
    }
}

/// True when `url` is the frontend URL or lies under it (an exact prefix
/// followed by `/`, `?` or `#`, so `http://app.example.evil` does not pass).
fn under_frontend(config: &Config, url: &str) -> bool {
    let base = config.frontend_url.trim_end_matches('/');
    match url.strip_prefix(base) {
        Some(rest) => rest.is_empty() || rest.starts_with(['/', '?', '#']),
        None => false,
    }
}

// ---------------------------------------------------------------------------
// The Stripe HTTP client
// ---------------------------------------------------------------------------

/// Why a Stripe call failed.
#[derive(Debug)]
enum StripeError {
    /// Stripe answered with a 4xx: the request was refused (message for the user).
    Refused {
        status: u16,
        message: String,
        code: Option<String>,
    },
    /// Stripe could not be reached, timed out, or answered 5xx/garbage.
    Unavailable(String),
}

impl StripeError {
    /// D11: Stripe's 4xx errors are 400 with Stripe's message; outages are 502.
    fn into_error(self) -> Error {
        match self {
            StripeError::Refused { message, .. } => Error::bad_request(message),
            StripeError::Unavailable(why) => {
                tracing::error!(error = %why, "Stripe unavailable");
                Error::http(502, MSG_STRIPE_DOWN)
            }
        }
    }

    fn is_missing(&self) -> bool {
        matches!(self, StripeError::Refused { status: 404, .. })
            || matches!(self, StripeError::Refused { code: Some(c), .. } if c == "resource_missing")
    }
}

struct Stripe<'a> {
    ctx: &'a Context,
    key: &'a str,
}

fn stripe(ctx: &Context) -> Result<Stripe<'_>> {
    match &ctx.config.stripe_secret_key {
        Some(k) => Ok(Stripe {
            ctx,
            key: k.expose(),
        }),
        None => Err(Error::not_configured("Stripe")),
    }
}

type Form = Vec<(String, String)>;

fn field(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_string(), v.into())
}

impl Stripe<'_> {
    fn url(&self, path: &str) -> String {
        format!("{}/v1{}", self.ctx.config.stripe_base_url, path)
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> std::result::Result<Value, StripeError> {
        let resp = req
            .bearer_auth(self.key)
            .send()
            .await
            .map_err(|e| StripeError::Unavailable(format!("{what}: {}", e.without_url())))?;
        let status = resp.status().as_u16();
        let body: Value = resp
            .json()
            .await
            .map_err(|e| StripeError::Unavailable(format!("{what}: bad response: {e}")))?;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let err = &body["error"];
        let message = err["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("Stripe error (HTTP {status})"));
        if (400..500).contains(&status) {
            tracing::warn!(status, %message, what, "Stripe refused the request");
            Err(StripeError::Refused {
                status,
                message,
                code: err["code"].as_str().map(str::to_string),
            })
        } else {
            Err(StripeError::Unavailable(format!(
                "{what}: HTTP {status}: {message}"
            )))
        }
    }

    async fn post(
        &self,
        path: &str,
        form: &Form,
        idempotency_key: Option<&str>,
    ) -> std::result::Result<Value, StripeError> {
        let mut req = self.ctx.http.post(self.url(path)).form(form);
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        self.send(req, path).await
    }

    async fn get(&self, path: &str) -> std::result::Result<Value, StripeError> {
        self.send(self.ctx.http.get(self.url(path)), path).await
    }

    async fn delete(&self, path: &str) -> std::result::Result<Value, StripeError> {
        self.send(self.ctx.http.delete(self.url(path)), path).await
    }

    async fn retrieve_subscription(&self, id: &str) -> std::result::Result<Value, StripeError> {
        self.get(&format!("/subscriptions/{}", path_segment(id)))
            .await
    }
}

/// Stripe ids are `[A-Za-z0-9_]`; anything else is dropped so an id can never
/// change the path.
fn path_segment(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect()
}

// ---------------------------------------------------------------------------
// Checkout, update, cancel
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct CheckoutRequest {
    pub price_id: String,
    pub success_url: String,
    pub cancel_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutSession {
    pub session_id: String,
    pub url: String,
}

#[derive(sqlx::FromRow)]
struct SubRow {
    stripe_customer_id: Option<String>,
    stripe_subscription_id: Option<String>,
    status: String,
}

async fn load_row(conn: &mut PgConnection, user_id: Uuid) -> Result<Option<SubRow>> {
    Ok(sqlx::query_as::<_, SubRow>(
        "SELECT stripe_customer_id, stripe_subscription_id, status
         FROM subscriptions WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(&mut *conn)
    .await?)
}

fn is_current(status: &str) -> bool {
    status == "active" || status == "trialing"
}

/// `POST /api/payments/create-checkout-session` (§4.15 Checkout).
pub async fn create_checkout_session(
    ctx: &Context,
    user_id: Uuid,
    email: &str,
    input: &CheckoutRequest,
) -> Result<CheckoutSession> {
    let config = &ctx.config;
    // Not configured is said first: without Stripe there are no prices, and
    // "Invalid price ID" would send the caller looking for the wrong fault.
    let stripe = stripe(ctx)?;
    let price_id = input.price_id.trim();
    if tier_for_price(config, price_id).is_none() {
        return Err(Error::bad_request(MSG_INVALID_PRICE));
    }
    for (name, url) in [
        ("success_url", &input.success_url),
        ("cancel_url", &input.cancel_url),
    ] {
        if !under_frontend(config, url.trim()) {
            return Err(Error::bad_request(format!(
                "Invalid {name}. It must start with {}",
                config.frontend_url
            )));
        }
    }

    let mut conn = ctx.db.acquire().await?;
    let row = load_row(&mut conn, user_id).await?;
    if row.as_ref().is_some_and(|r| is_current(&r.status)) {
        return Err(Error::bad_request(MSG_ALREADY_ACTIVE));
    }
    drop(conn);

    let user = user_id.to_string();

    // A customer is created once per user. The idempotency key makes
    // concurrent first checkouts get the same customer from Stripe, and the
    // conditional update keeps whichever id was stored first.
    let customer_id = match row.and_then(|r| r.stripe_customer_id) {
        Some(c) => c,
        None => {
            let form = vec![field("email", email), field("metadata[user_id]", &user)];
            let customer = stripe
                .post(
                    "/customers",
                    &form,
                    Some(&format!("mambo-customer-{user_id}")),
                )
                .await
                .map_err(StripeError::into_error)?;
            let created = id_of(&customer["id"])
                .ok_or_else(|| Error::internal("Stripe customer without id"))?;
            let stored: String = sqlx::query_scalar(
                "INSERT INTO subscriptions (user_id, stripe_customer_id, status, tier)
                 VALUES ($1, $2, 'incomplete', 'rookie')
                 ON CONFLICT (user_id) DO UPDATE SET
                    stripe_customer_id = COALESCE(subscriptions.stripe_customer_id, EXCLUDED.stripe_customer_id),
                    status = CASE WHEN subscriptions.status IN ('active', 'trialing')
                                  THEN subscriptions.status ELSE 'incomplete' END,
                    updated_at = now()
                 RETURNING stripe_customer_id",
            )
            .bind(user_id)
            .bind(&created)
            .fetch_one(&ctx.db)
            .await?;
            stored
        }
    };

    let form = vec![
        field("mode", "subscription"),
        field("customer", &customer_id),
        field("line_items[0][price]", price_id),
        field("line_items[0][quantity]", "1"),
        field("success_url", input.success_url.trim()),
        field("cancel_url", input.cancel_url.trim()),
        field("client_reference_id", &user),
        field("metadata[user_id]", &user),
        field("subscription_data[metadata][user_id]", &user),
    ];
    let session = stripe
        .post("/checkout/sessions", &form, None)
        .await
        .map_err(StripeError::into_error)?;
    let session_id = id_of(&session["id"])
        .ok_or_else(|| Error::internal("Stripe checkout session without id"))?;
    let url = session["url"].as_str().unwrap_or_default().to_string();
    Ok(CheckoutSession { session_id, url })
}

/// `POST /api/payments/update-subscription`: moves the single item of the
/// Stripe subscription to the new price. Returns the new tier.
pub async fn update_subscription(
    ctx: &Context,
    user_id: Uuid,
    new_price_id: &str,
) -> Result<&'static str> {
    let new_price_id = new_price_id.trim();
    let tier = tier_for_price(&ctx.config, new_price_id)
        .ok_or_else(|| Error::bad_request(MSG_INVALID_PRICE))?;
    let mut conn = ctx.db.acquire().await?;
    let row = load_row(&mut conn, user_id)
        .await?
        .ok_or_else(|| Error::not_found(MSG_NO_SUBSCRIPTION))?;
    drop(conn);
    if !is_current(&row.status) {
        return Err(Error::bad_request(MSG_NOT_ACTIVE_UPDATE));
    }
    let sub_id = row
        .stripe_subscription_id
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::bad_request(MSG_NO_STRIPE_ID_UPDATE))?;

    let stripe = stripe(ctx)?;
    let current = stripe
        .retrieve_subscription(&sub_id)
        .await
        .map_err(StripeError::into_error)?;
    // D9: the items list is `["items"]["data"]`.
    let item_id = current["items"]["data"][0]["id"]
        .as_str()
        .ok_or_else(|| Error::bad_request("No subscription item found. Cannot update."))?
        .to_string();
    let form = vec![
        field("items[0][id]", item_id),
        field("items[0][price]", new_price_id),
        field("proration_behavior", "always_invoice"),
    ];
    let updated = stripe
        .post(
            &format!("/subscriptions/{}", path_segment(&sub_id)),
            &form,
            None,
        )
        .await
        .map_err(StripeError::into_error)?;
    let period_end = period_end_of_subscription(&updated);
    sqlx::query(
        "UPDATE subscriptions SET tier = $2,
            current_period_end = COALESCE($3, current_period_end),
            stripe_event_created = GREATEST(COALESCE(stripe_event_created, 0), $4),
            updated_at = now()
         WHERE user_id = $1",
    )
    .bind(user_id)
    .bind(tier)
    .bind(period_end)
    .bind(ctx.clock.now().timestamp())
    .execute(&ctx.db)
    .await?;
    Ok(tier)
}

/// `POST /api/payments/cancel-subscription`: immediate cancel in Stripe (when
/// there is a Stripe subscription), then canceled + rookie locally. Returns
/// the message.
pub async fn cancel_subscription(ctx: &Context, user_id: Uuid) -> Result<&'static str> {
    let mut conn = ctx.db.acquire().await?;
    let row = load_row(&mut conn, user_id)
        .await?
        .ok_or_else(|| Error::not_found(MSG_NO_SUBSCRIPTION))?;
    drop(conn);
    if !is_current(&row.status) {
        return Err(Error::bad_request(MSG_NOT_ACTIVE_CANCEL));
    }
    let message = match row.stripe_subscription_id.filter(|s| !s.is_empty()) {
        Some(sub_id) => {
            let stripe = stripe(ctx)?;
            match stripe
                .delete(&format!("/subscriptions/{}", path_segment(&sub_id)))
                .await
            {
                Ok(_) => {}
                // Already gone in Stripe: cancel locally as well.
                Err(e) if e.is_missing() => {
                    tracing::warn!(%sub_id, "Stripe subscription already gone; canceling locally")
                }
                Err(e) => return Err(e.into_error()),
            }
            MSG_CANCELED_STRIPE
        }
        None => MSG_CANCELED_LOCAL,
    };
    sqlx::query(
        "UPDATE subscriptions SET status = 'canceled', tier = 'rookie',
            stripe_event_created = GREATEST(COALESCE(stripe_event_created, 0), $2),
            updated_at = now()
         WHERE user_id = $1",
    )
    .bind(user_id)
    .bind(ctx.clock.now().timestamp())
    .execute(&ctx.db)
    .await?;
    Ok(message)
}

// ---------------------------------------------------------------------------
// Webhook signature
// ---------------------------------------------------------------------------

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &str, timestamp: &str, payload: &[u8]) -> HmacSha256 {
    let mut mac =
        <HmacSha256 as KeyInit>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac
}

/// The `v1` signature Stripe would send for `payload` at `timestamp`
/// (hex HMAC-SHA256 of `"{timestamp}.{payload}"`). Used by tests and tools.
pub fn sign_webhook(secret: &str, timestamp: i64, payload: &[u8]) -> String {
    hex::encode(
        mac(secret, &timestamp.to_string(), payload)
            .finalize()
            .into_bytes(),
    )
}

/// A complete `Stripe-Signature` header value for `payload` at `timestamp`.
pub fn signature_header(secret: &str, timestamp: i64, payload: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        sign_webhook(secret, timestamp, payload)
    )
}

/// Verifies `Stripe-Signature: t=..,v1=..[,v1=..]` in constant time, then the
/// replay window. The error text follows Stripe's library.
pub fn verify_signature(
    secret: &str,
    header: &str,
    payload: &[u8],
    now: i64,
    tolerance: i64,
) -> std::result::Result<(), String> {
    let mut timestamp: Option<&str> = None;
    let mut signatures: Vec<&str> = Vec::new();
    for part in header.split(',') {
        let Some((k, v)) = part.split_once('=') else {
            continue;
        };
        match k.trim() {
            "t" => timestamp = Some(v.trim()),
            "v1" => signatures.push(v.trim()),
            _ => {}
        }
    }
    let (Some(ts_raw), Some(ts)) = (timestamp, timestamp.and_then(|t| t.parse::<i64>().ok()))
    else {
        return Err("Unable to extract timestamp and signatures from header".into());
    };
    if signatures.is_empty() {
        return Err("No signatures found with expected scheme v1".into());
    }
    let expected = mac(secret, ts_raw, payload);
    let matched = signatures.iter().any(|s| {
        hex::decode(s)
            .map(|bytes| expected.clone().verify_slice(&bytes).is_ok())
            .unwrap_or(false)
    });
    if !matched {
        return Err("No signatures found matching the expected signature for payload".into());
    }
    if (now - ts).abs() > tolerance {
        return Err("Timestamp outside the tolerance zone".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Webhook events
// ---------------------------------------------------------------------------

/// A verified Stripe event.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub kind: String,
    pub created: i64,
    pub object: Value,
}

fn parse_event(payload: &[u8]) -> std::result::Result<Event, String> {
    let text = std::str::from_utf8(payload).map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let id = v["id"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or("event has no id")?
        .to_string();
    let kind = v["type"].as_str().ok_or("event has no type")?.to_string();
    let created = v["created"].as_i64().unwrap_or(0);
    let object = v["data"]["object"].clone();
    if !object.is_object() {
        return Err("event has no data.object".into());
    }
    Ok(Event {
        id,
        kind,
        created,
        object,
    })
}

/// `POST /api/payments/webhook`: verifies and applies one Stripe event.
pub async fn handle_webhook(ctx: &Context, signature: Option<&str>, payload: &[u8]) -> Result<()> {
    let Some(signature) = signature.map(str::trim).filter(|s| !s.is_empty()) else {
        return Err(Error::bad_request("No Stripe-Signature header"));
    };
    let secret = ctx
        .config
        .stripe_webhook_secret
        .as_ref()
        .ok_or_else(|| Error::not_configured("Stripe"))?;
    verify_signature(
        secret.expose(),
        signature,
        payload,
        ctx.clock.now().timestamp(),
        WEBHOOK_TOLERANCE_SECONDS,
    )
    .map_err(|e| Error::bad_request(format!("Invalid signature: {e}")))?;
    let event =
        parse_event(payload).map_err(|e| Error::bad_request(format!("Invalid payload: {e}")))?;
    process_event(ctx, &event).await
}

/// Applies a verified event exactly once.
pub async fn process_event(ctx: &Context, event: &Event) -> Result<()> {
    let handled = matches!(
        event.kind.as_str(),
        "checkout.session.completed"
            | "invoice.payment_succeeded"
            | "invoice.paid"
            | "invoice.payment_failed"
            | "customer.subscription.created"
            | "customer.subscription.updated"
            | "customer.subscription.deleted"
    );
    if !handled {
        tracing::debug!(kind = %event.kind, id = %event.id, "Stripe event ignored");
        return Ok(());
    }
    // Cheap early exit for redeliveries (the insert below is the real guard).
    let seen: bool = sqlx::query_scalar(
        "SELECT EXISTS(SELECT 1 FROM processed_webhook_events WHERE provider = 'stripe' AND event_id = $1)",
    )
    .bind(&event.id)
    .fetch_one(&ctx.db)
    .await?;
    if seen {
        tracing::info!(id = %event.id, "Stripe event already processed");
        return Ok(());
    }

    // Everything that needs Stripe happens before the transaction opens.
    let prepared = prepare(ctx, event).await?;

    let mut tx = ctx.db.begin().await?;
    let first: Option<String> = sqlx::query_scalar(
        "INSERT INTO processed_webhook_events (provider, event_id) VALUES ('stripe', $1)
         ON CONFLICT DO NOTHING RETURNING event_id",
    )
    .bind(&event.id)
    .fetch_optional(&mut *tx)
    .await?;
    if first.is_none() {
        // Another delivery of the same event committed first.
        tx.rollback().await?;
        return Ok(());
    }
    apply(ctx, &mut tx, event, prepared).await?;
    tx.commit().await?;
    tracing::info!(id = %event.id, kind = %event.kind, "Stripe event processed");
    Ok(())
}

/// A subscription state to store, as derived from an event.
#[derive(Debug, Clone, Default)]
struct State {
    status: Option<&'static str>,
    tier: Option<&'static str>,
    period_end: Option<DateTime<Utc>>,
    customer_id: Option<String>,
    subscription_id: Option<String>,
}

/// What an event needs, fetched from Stripe before the transaction.
enum Prepared {
    /// Activate from a paid invoice, then pay the bonus.
    InvoicePaid {
        invoice_id: String,
        customer_id: String,
        subscription: Value,
        bonus: bool,
    },
    /// Link a checkout session's customer/subscription to its user.
    Checkout {
        user_id: Option<Uuid>,
        customer_id: Option<String>,
        subscription: Option<Value>,
    },
    /// A subscription object from the event itself.
    Subscription(Value),
    Deleted {
        subscription_id: String,
    },
    PaymentFailed {
        subscription_id: Option<String>,
        customer_id: String,
    },
    Skip,
}

fn invoice_subscription_id(invoice: &Value) -> Option<String> {
    id_of(&invoice["subscription"])
        .or_else(|| id_of(&invoice["parent"]["subscription_details"]["subscription"]))
}

/// Without `STRIPE_SECRET_KEY` the invoice's own first line stands in for the
/// subscription (price and period).
fn subscription_from_invoice(invoice: &Value, sub_id: &str) -> Value {
    let line = &invoice["lines"]["data"][0];
    let price = if line["price"].is_object() {
        line["price"].clone()
    } else {
        serde_json::json!({ "id": line["pricing"]["price_details"]["price"] })
    };
    serde_json::json!({
        "id": sub_id,
        "status": "active",
        "items": { "data": [ { "price": price, "current_period_end": line["period"]["end"] } ] },
        "metadata": invoice["subscription_details"]["metadata"].clone(),
    })
}

/// The live subscription; `None` when Stripe is not configured or refuses
/// (the caller then uses the event's own data). An outage is a 500 so that
/// Stripe delivers the event again later.
async fn fetch_subscription(ctx: &Context, sub_id: &str) -> Result<Option<Value>> {
    let Ok(stripe) = stripe(ctx) else {
        return Ok(None);
    };
    match stripe.retrieve_subscription(sub_id).await {
        Ok(v) => Ok(Some(v)),
        // Stripe refuses (e.g. the subscription is gone): retrying will not
        // help, so the event's own data is used instead.
        Err(e @ StripeError::Refused { .. }) => {
            tracing::warn!(error = ?e, %sub_id, "Stripe refused to return the subscription");
            Ok(None)
        }
        Err(e) => {
            tracing::error!(error = ?e, %sub_id, "Stripe API error retrieving subscription");
            // 500 so that Stripe retries the delivery later.
            Err(Error::http(500, "Stripe API error"))
        }
    }
}

async fn prepare(ctx: &Context, event: &Event) -> Result<Prepared> {
    let obj = &event.object;
    Ok(match event.kind.as_str() {
        "invoice.payment_succeeded" | "invoice.paid" => {
            let (Some(sub_id), Some(customer_id)) =
                (invoice_subscription_id(obj), id_of(&obj["customer"]))
            else {
                return Ok(Prepared::Skip);
            };
            let invoice_id = id_of(&obj["id"]).unwrap_or_else(|| event.id.clone());
            let subscription = match fetch_subscription(ctx, &sub_id).await? {
                Some(s) => s,
                None => subscription_from_invoice(obj, &sub_id),
            };
            // A €0 invoice (trial, 100 % coupon) pays no bonus.
            let bonus = obj["amount_paid"].as_i64().is_none_or(|a| a > 0);
            Prepared::InvoicePaid {
                invoice_id,
                customer_id,
                subscription,
                bonus,
            }
        }
        "checkout.session.completed" => {
            let user_id = obj["client_reference_id"]
                .as_str()
                .or_else(|| obj["metadata"]["user_id"].as_str())
                .and_then(|s| Uuid::parse_str(s.trim()).ok());
            let subscription = match id_of(&obj["subscription"]) {
                Some(sub_id) if obj["mode"].as_str().is_none_or(|m| m == "subscription") => {
                    match fetch_subscription(ctx, &sub_id).await? {
                        Some(s) => Some(s),
                        None => Some(serde_json::json!({ "id": sub_id })),
                    }
                }
                _ => None,
            };
            Prepared::Checkout {
                user_id,
                customer_id: id_of(&obj["customer"]),
                subscription,
            }
        }
        "customer.subscription.created" | "customer.subscription.updated" => {
            Prepared::Subscription(obj.clone())
        }
        "customer.subscription.deleted" => match id_of(&obj["id"]) {
            Some(subscription_id) => Prepared::Deleted { subscription_id },
            None => Prepared::Skip,
        },
        "invoice.payment_failed" => match id_of(&obj["customer"]) {
            Some(customer_id) => Prepared::PaymentFailed {
                subscription_id: invoice_subscription_id(obj),
                customer_id,
            },
            None => Prepared::Skip,
        },
        _ => Prepared::Skip,
    })
}

/// The full state a Stripe subscription object describes.
fn state_of_subscription(config: &Config, sub: &Value) -> State {
    let status = sub["status"].as_str().map(local_status);
    let tier = if status == Some("canceled") {
        Some("rookie")
    } else if sub["items"]["data"][0].is_object() {
        Some(tier_of_subscription(config, sub))
    } else {
        None
    };
    State {
        status,
        tier,
        period_end: period_end_of_subscription(sub),
        customer_id: id_of(&sub["customer"]),
        subscription_id: id_of(&sub["id"]),
    }
}

/// The user a subscription object belongs to: by subscription id, then
/// customer id, then `metadata.user_id`.
async fn find_user(
    conn: &mut PgConnection,
    subscription_id: Option<&str>,
    customer_id: Option<&str>,
    metadata_user: Option<&str>,
) -> Result<Option<Uuid>> {
    if let Some(s) = subscription_id {
        let u: Option<Uuid> = sqlx::query_scalar(
            "SELECT user_id FROM subscriptions WHERE stripe_subscription_id = $1
             ORDER BY updated_at DESC LIMIT 1",
        )
        .bind(s)
        .fetch_optional(&mut *conn)
        .await?;
        if u.is_some() {
            return Ok(u);
        }
    }
    if let Some(c) = customer_id {
        let u: Option<Uuid> = sqlx::query_scalar(
            "SELECT user_id FROM subscriptions WHERE stripe_customer_id = $1
             ORDER BY updated_at DESC LIMIT 1",
        )
        .bind(c)
        .fetch_optional(&mut *conn)
        .await?;
        if u.is_some() {
            return Ok(u);
        }
    }
    if let Some(id) = metadata_user.and_then(|s| Uuid::parse_str(s.trim()).ok()) {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS(SELECT 1 FROM users WHERE id = $1)")
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
        if exists {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// Stores `state` on the user's row unless a newer event already set it.
/// Creates the row if the user has none. Returns whether it was applied.
async fn store_state(
    conn: &mut PgConnection,
    user_id: Uuid,
    state: &State,
    created: i64,
) -> Result<bool> {
    sqlx::query("INSERT INTO subscriptions (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    let applied = sqlx::query(
        "UPDATE subscriptions SET
            status = COALESCE($2, status),
            tier = COALESCE($3, tier),
            current_period_end = COALESCE($4, current_period_end),
            stripe_customer_id = COALESCE($5, stripe_customer_id),
            stripe_subscription_id = COALESCE($6, stripe_subscription_id),
            stripe_event_created = $7,
            updated_at = now()
         WHERE user_id = $1 AND (stripe_event_created IS NULL OR stripe_event_created <= $7)",
    )
    .bind(user_id)
    .bind(state.status)
    .bind(state.tier)
    .bind(state.period_end)
    .bind(state.customer_id.as_deref())
    .bind(state.subscription_id.as_deref())
    .bind(created)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        > 0;
    if !applied {
        tracing::info!(%user_id, created, "older Stripe event ignored for subscription state");
    }
    Ok(applied)
}

async fn apply(
    ctx: &Context,
    conn: &mut PgConnection,
    event: &Event,
    prepared: Prepared,
) -> Result<()> {
    let config = &ctx.config;
    match prepared {
        Prepared::Skip => {}
        Prepared::InvoicePaid {
            invoice_id,
            customer_id,
            subscription,
            bonus,
        } => {
            let sub_id = id_of(&subscription["id"]);
            let user = find_user(
                conn,
                None,
                Some(&customer_id),
                subscription["metadata"]["user_id"].as_str(),
            )
            .await?;
            let Some(user_id) = user else {
                tracing::warn!(%customer_id, "invoice paid for an unknown customer; ignored");
                return Ok(());
            };
            let tier = tier_of_subscription(config, &subscription);
            let state = State {
                status: Some("active"),
                tier: Some(tier),
                period_end: period_end_of_subscription(&subscription),
                customer_id: Some(customer_id),
                subscription_id: sub_id,
            };
            store_state(conn, user_id, &state, event.created).await?;
            let amounts = Amounts::from_config(config);
            let amount = match tier {
                "advanced" => amounts.subscription_bonus_advanced,
                "performer" => amounts.subscription_bonus_performer,
                _ => 0,
            };
            if bonus && amount > 0 {
                // D10: no reference id (the invoice id is not a UUID); once per invoice.
                economy::credit(
                    conn,
                    user_id,
                    amount,
                    economy::reason::SUBSCRIPTION_BONUS,
                    None,
                    Some(&format!("subscription_bonus:{invoice_id}")),
                )
                .await?;
            }
        }
        Prepared::Checkout {
            user_id,
            customer_id,
            subscription,
        } => {
            let user = match user_id {
                Some(u) => find_user(conn, None, None, Some(&u.to_string())).await?,
                None => find_user(conn, None, customer_id.as_deref(), None).await?,
            };
            let Some(user_id) = user else {
                tracing::warn!("checkout session for an unknown user; ignored");
                return Ok(());
            };
            let mut state = match &subscription {
                Some(sub) => state_of_subscription(config, sub),
                None => State::default(),
            };
            if state.customer_id.is_none() {
                state.customer_id = customer_id;
            }
            store_state(conn, user_id, &state, event.created).await?;
        }
        Prepared::Subscription(sub) => {
            let state = state_of_subscription(config, &sub);
            let user = find_user(
                conn,
                state.subscription_id.as_deref(),
                state.customer_id.as_deref(),
                sub["metadata"]["user_id"].as_str(),
            )
            .await?;
            match user {
                Some(user_id) => {
                    store_state(conn, user_id, &state, event.created).await?;
                }
                None => {
                    tracing::warn!(kind = %event.kind, "subscription for an unknown user; ignored")
                }
            }
        }
        Prepared::Deleted { subscription_id } => {
            let user = find_user(conn, Some(&subscription_id), None, None).await?;
            match user {
                Some(user_id) => {
                    let state = State {
                        status: Some("canceled"),
                        tier: Some("rookie"),
                        ..State::default()
                    };
                    store_state(conn, user_id, &state, event.created).await?;
                }
                None => tracing::warn!(%subscription_id, "deleted subscription not found"),
            }
        }
        Prepared::PaymentFailed {
            subscription_id,
            customer_id,
        } => {
            let user =
                find_user(conn, subscription_id.as_deref(), Some(&customer_id), None).await?;
            if let Some(user_id) = user {
                let status: Option<String> =
                    sqlx::query_scalar("SELECT status FROM subscriptions WHERE user_id = $1")
                        .bind(user_id)
                        .fetch_optional(&mut *conn)
                        .await?;
                // A failed invoice does not resurrect a canceled subscription.
                if status.as_deref() != Some("canceled") {
                    let state = State {
                        status: Some("past_due"),
                        ..State::default()
                    };
                    store_state(conn, user_id, &state, event.created).await?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config() -> Config {
        let mut m = HashMap::new();
        m.insert(
            "FRONTEND_URL".to_string(),
            "https://app.example.com".to_string(),
        );
        m.insert("ADVANCED_PRICE_ID".to_string(), "price_adv".to_string());
        m.insert("PERFORMER_PRICE_ID".to_string(), "price_perf".to_string());
        Config::from_map(&m).unwrap()
    }

    #[test]
    fn known_signature_vector() {
        // printf '%s' '1700000000.{"id":"evt_1"}' | openssl dgst -sha256 -hmac whsec_test
        let sig = sign_webhook("whsec_test", 1_700_000_000, br#"{"id":"evt_1"}"#);
        assert_eq!(
            sig,
            "c89214b5b5da833daed6f0b8c5bb6bd58cea9022bd80ccc78230f3942d632925"
        );
    }

    #[test]
    fn signatures_are_checked() {
        let body = br#"{"id":"evt_1"}"#;
        let now = 1_700_000_000;
        let header = signature_header("whsec_test", now, body);
        assert!(verify_signature("whsec_test", &header, body, now + 10, 300).is_ok());
        // Several v1 entries (secret rotation): any match passes.
        let rotated = format!(
            "t={now},v1=00ff,v1={}",
            sign_webhook("whsec_test", now, body)
        );
        assert!(verify_signature("whsec_test", &rotated, body, now, 300).is_ok());
        assert!(verify_signature("other", &header, body, now, 300).is_err());
        assert!(verify_signature("whsec_test", &header, b"{}", now, 300).is_err());
        let old = verify_signature("whsec_test", &header, body, now + 301, 300).unwrap_err();
        assert_eq!(old, "Timestamp outside the tolerance zone");
        assert!(verify_signature("whsec_test", "garbage", body, now, 300).is_err());
        assert!(verify_signature("whsec_test", &format!("t={now}"), body, now, 300).is_err());
        assert!(verify_signature("whsec_test", &format!("t={now},v1=zz"), body, now, 300).is_err());
    }

    #[test]
    fn prices_map_to_tiers() {
        let c = config();
        assert_eq!(tier_for_price(&c, "price_adv"), Some("advanced"));
        assert_eq!(tier_for_price(&c, "price_perf"), Some("performer"));
        assert_eq!(tier_for_price(&c, "price_other"), None);
        let by_lookup = serde_json::json!({"items":{"data":[{"price":{"id":"price_x","lookup_key":"performer"}}]}});
        assert_eq!(tier_of_subscription(&c, &by_lookup), "performer");
        let by_id = serde_json::json!({"items":{"data":[{"price":{"id":"price_adv","lookup_key":"performer"}}]}});
        assert_eq!(tier_of_subscription(&c, &by_id), "advanced");
        assert_eq!(tier_of_subscription(&c, &serde_json::json!({})), "rookie");
    }

    #[test]
    fn redirect_urls_must_be_under_the_frontend() {
        let c = config();
        assert!(under_frontend(&c, "https://app.example.com/success?x=1"));
        assert!(under_frontend(&c, "https://app.example.com"));
        assert!(!under_frontend(&c, "https://app.example.com.evil.io/x"));
        assert!(!under_frontend(
            &c,
            "https://evil.io/https://app.example.com"
        ));
    }

    #[test]
    fn period_end_reads_both_api_versions() {
        let old = serde_json::json!({"current_period_end": 1_800_000_000});
        let new = serde_json::json!({"items":{"data":[{"current_period_end": 1_800_000_000}]}});
        assert_eq!(
            period_end_of_subscription(&old),
            period_end_of_subscription(&new)
        );
        assert!(period_end_of_subscription(&old).is_some());
    }
}
