//! Stripe webhook events (API-NEXT.md N2): verified, applied once per event
//! id (the id is recorded in `processed_webhook_events` in the same
//! transaction as the effects), and order-safe: the subscription's state is
//! guarded by `stripe_event_created` and its schedule by
//! `schedule_event_created`, so an older event never overwrites newer state.
//! Whatever needs Stripe is fetched before the transaction opens.

use super::checkout::claim_trial;
use super::notices::{self, Notice};
use super::stripe::*;
use super::*;

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

/// The event types this service acts on (or records).
pub fn is_handled(kind: &str) -> bool {
    matches!(
        kind,
        "checkout.session.completed"
            | "checkout.session.expired"
            | "invoice.payment_succeeded"
            | "invoice.paid"
            | "invoice.payment_failed"
            | "customer.subscription.created"
            | "customer.subscription.updated"
            | "customer.subscription.deleted"
            | "customer.subscription.trial_will_end"
    ) || kind.starts_with("subscription_schedule.")
}

/// Applies a verified event exactly once.
pub async fn process_event(ctx: &Context, event: &Event) -> Result<()> {
    if !is_handled(&event.kind) {
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
        "INSERT INTO processed_webhook_events (provider, event_id, kind, created)
         VALUES ('stripe', $1, $2, $3)
         ON CONFLICT DO NOTHING RETURNING event_id",
    )
    .bind(&event.id)
    .bind(&event.kind)
    .bind(event.created)
    .fetch_optional(&mut *tx)
    .await?;
    if first.is_none() {
        // Another delivery of the same event committed first.
        tx.rollback().await?;
        return Ok(());
    }
    let mut pending = crate::notifications::Pending::default();
    apply(ctx, &mut tx, event, prepared, &mut pending).await?;
    tx.commit().await?;
    crate::jobs::wake_relay(ctx);
    pending.publish(ctx).await;
    // Holds and subscriptions decide the seat count (N5.6).
    super::seats::forget_seat_count(ctx).await;
    tracing::info!(id = %event.id, kind = %event.kind, "Stripe event processed");
    Ok(())
}

/// A subscription state to store, as derived from an event. `None` leaves a
/// column as it is.
#[derive(Debug, Clone, Default)]
struct State {
    status: Option<&'static str>,
    tier: Option<&'static str>,
    period_end: Option<DateTime<Utc>>,
    customer_id: Option<String>,
    subscription_id: Option<String>,
    cancel_at_period_end: Option<bool>,
    /// `Some(None)` clears the trial end.
    trial_end: Option<Option<DateTime<Utc>>>,
    /// Clears a pending schedule (the subscription ended).
    clear_schedule: bool,
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
    /// Link a checkout session's customer/subscription to its user (and
    /// close the session's seat hold).
    Checkout {
        session_id: Option<String>,
        user_id: Option<Uuid>,
        customer_id: Option<String>,
        subscription: Option<Value>,
    },
    /// A subscription object from the event itself.
    Subscription(Value),
    Deleted(Value),
    TrialWillEnd(Value),
    /// A checkout session expired unpaid: its seat hold closes.
    CheckoutExpired(String),
    PaymentFailed {
        subscription_id: Option<String>,
        customer_id: String,
        invoice_id: Option<String>,
    },
    Schedule(Value),
    /// Recorded, nothing else changes.
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
                session_id: id_of(&obj["id"]),
                user_id,
                customer_id: id_of(&obj["customer"]),
                subscription,
            }
        }
        "checkout.session.expired" => match id_of(&obj["id"]) {
            Some(session_id) => Prepared::CheckoutExpired(session_id),
            None => Prepared::Skip,
        },
        "customer.subscription.created" | "customer.subscription.updated" => {
            Prepared::Subscription(obj.clone())
        }
        "customer.subscription.deleted" => Prepared::Deleted(obj.clone()),
        "customer.subscription.trial_will_end" => Prepared::TrialWillEnd(obj.clone()),
        "invoice.payment_failed" => match id_of(&obj["customer"]) {
            Some(customer_id) => Prepared::PaymentFailed {
                subscription_id: invoice_subscription_id(obj),
                customer_id,
                invoice_id: id_of(&obj["id"]),
            },
            None => Prepared::Skip,
        },
        k if k.starts_with("subscription_schedule.") => Prepared::Schedule(obj.clone()),
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
    let has = |k: &str| sub.get(k).is_some();
    State {
        status,
        tier,
        period_end: period_end_of_subscription(sub),
        customer_id: id_of(&sub["customer"]),
        subscription_id: id_of(&sub["id"]),
        cancel_at_period_end: sub["cancel_at_period_end"].as_bool(),
        trial_end: has("trial_end").then(|| sub["trial_end"].as_i64().and_then(unix_to_utc)),
        clear_schedule: status == Some("canceled"),
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
///
/// Entering `past_due` starts the grace period at the event's time (the
/// first failure of a spell keeps its start); any other status ends it.
async fn store_state(
    conn: &mut PgConnection,
    config: &Config,
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
            cancel_at_period_end = COALESCE($8, cancel_at_period_end),
            trial_end = CASE WHEN $9 THEN $10 ELSE trial_end END,
            scheduled_tier = CASE WHEN $11 THEN NULL ELSE scheduled_tier END,
            stripe_schedule_id = CASE WHEN $11 THEN NULL ELSE stripe_schedule_id END,
            past_due_since = CASE WHEN COALESCE($2, status) = 'past_due'
                THEN COALESCE(past_due_since, to_timestamp($7)) ELSE NULL END,
            grace_until = CASE WHEN COALESCE($2, status) = 'past_due'
                THEN COALESCE(grace_until, to_timestamp($7) + make_interval(days => $12))
                ELSE NULL END,
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
    .bind(state.cancel_at_period_end)
    .bind(state.trial_end.is_some())
    .bind(state.trial_end.flatten())
    .bind(state.clear_schedule)
    .bind(config.payment_grace_days as i32)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        > 0;
    if !applied {
        tracing::info!(%user_id, created, "older Stripe event ignored for subscription state");
    }
    Ok(applied)
}

/// Applies a subscription object's state; a `trialing` one uses up the
/// trial of the user's normalised email.
async fn store_subscription(
    conn: &mut PgConnection,
    config: &Config,
    user_id: Uuid,
    state: &State,
    created: i64,
) -> Result<bool> {
    if state.status == Some("trialing") {
        claim_trial(conn, user_id, state.subscription_id.as_deref()).await?;
    }
    store_state(conn, config, user_id, state, created).await
}

async fn apply(
    ctx: &Context,
    conn: &mut PgConnection,
    event: &Event,
    prepared: Prepared,
    pending: &mut crate::notifications::Pending,
) -> Result<()> {
    let config = &ctx.config;
    let now = ctx.clock.now();
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
            let mut state = state_of_subscription(config, &subscription);
            // The status mirrors the subscription, except that a paid
            // invoice settles a payment that was behind.
            state.status = Some(match state.status {
                Some("trialing") => "trialing",
                Some("canceled") => "canceled",
                _ => "active",
            });
            state.tier = Some(if state.status == Some("canceled") {
                "rookie"
            } else {
                tier
            });
            state.customer_id = Some(customer_id);
            state.subscription_id = sub_id;
            store_subscription(conn, config, user_id, &state, event.created).await?;
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
            session_id,
            user_id,
            customer_id,
            subscription,
        } => {
            if let Some(session_id) = &session_id {
                super::seats::close(conn, session_id, true).await?;
            }
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
            store_subscription(conn, config, user_id, &state, event.created).await?;
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
                    store_subscription(conn, config, user_id, &state, event.created).await?;
                }
                None => {
                    tracing::warn!(kind = %event.kind, "subscription for an unknown user; ignored")
                }
            }
        }
        Prepared::Deleted(sub) => {
            let sub_id = id_of(&sub["id"]);
            let user = find_user(
                conn,
                sub_id.as_deref(),
                id_of(&sub["customer"]).as_deref(),
                None,
            )
            .await?;
            let Some(user_id) = user else {
                tracing::warn!(?sub_id, "deleted subscription not found");
                return Ok(());
            };
            let state = State {
                status: Some("canceled"),
                tier: Some("rookie"),
                cancel_at_period_end: Some(false),
                clear_schedule: true,
                ..State::default()
            };
            if store_state(conn, config, user_id, &state, event.created).await? {
                let key = sub_id.unwrap_or_else(|| event.id.clone());
                notices::send(ctx, conn, now, user_id, Notice::Ended, &key, pending).await?;
            }
        }
        Prepared::TrialWillEnd(sub) => {
            let sub_id = id_of(&sub["id"]);
            let user = find_user(
                conn,
                sub_id.as_deref(),
                id_of(&sub["customer"]).as_deref(),
                sub["metadata"]["user_id"].as_str(),
            )
            .await?;
            let Some(user_id) = user else {
                tracing::warn!(?sub_id, "trial_will_end for an unknown subscription");
                return Ok(());
            };
            let trial_end = sub["trial_end"].as_i64().and_then(unix_to_utc);
            if let Some(at) = trial_end {
                // The trial's end is news only if no newer event said otherwise.
                let state = State {
                    trial_end: Some(Some(at)),
                    ..State::default()
                };
                store_state(conn, config, user_id, &state, event.created).await?;
            }
            // Once per subscription, however often Stripe sends it.
            let key = sub_id.unwrap_or_else(|| event.id.clone());
            notices::send(
                ctx,
                conn,
                now,
                user_id,
                Notice::TrialEnds(trial_end),
                &key,
                pending,
            )
            .await?;
        }
        Prepared::PaymentFailed {
            subscription_id,
            customer_id,
            invoice_id,
        } => {
            let user =
                find_user(conn, subscription_id.as_deref(), Some(&customer_id), None).await?;
            let Some(user_id) = user else {
                return Ok(());
            };
            let status: Option<String> =
                sqlx::query_scalar("SELECT status FROM subscriptions WHERE user_id = $1")
                    .bind(user_id)
                    .fetch_optional(&mut *conn)
                    .await?;
            // A failed invoice does not resurrect a canceled subscription.
            if status.as_deref() == Some("canceled") {
                return Ok(());
            }
            let state = State {
                status: Some("past_due"),
                ..State::default()
            };
            if store_state(conn, config, user_id, &state, event.created).await? {
                let key = invoice_id.unwrap_or_else(|| event.id.clone());
                // One per failed attempt: the same invoice failing again is a new event.
                let key = format!("{key}:{}", event.id);
                notices::send(
                    ctx,
                    conn,
                    now,
                    user_id,
                    Notice::PaymentFailed,
                    &key,
                    pending,
                )
                .await?;
            }
        }
        Prepared::CheckoutExpired(session_id) => {
            super::seats::close(conn, &session_id, false).await?;
        }
        Prepared::Schedule(schedule) => {
            apply_schedule(config, conn, event, &schedule).await?;
        }
    }
    Ok(())
}

/// `subscription_schedule.*`: keeps `scheduled_tier` in step with the
/// schedule's next phase, and when a phase starts, the tier follows it.
async fn apply_schedule(
    config: &Config,
    conn: &mut PgConnection,
    event: &Event,
    schedule: &Value,
) -> Result<()> {
    let Some(schedule_id) = id_of(&schedule["id"]) else {
        return Ok(());
    };
    let sub_id = id_of(&schedule["subscription"]);
    let user = match find_user(
        conn,
        sub_id.as_deref(),
        id_of(&schedule["customer"]).as_deref(),
        schedule["metadata"]["user_id"].as_str(),
    )
    .await?
    {
        Some(u) => Some(u),
        None => {
            sqlx::query_scalar("SELECT user_id FROM subscriptions WHERE stripe_schedule_id = $1")
                .bind(&schedule_id)
                .fetch_optional(&mut *conn)
                .await?
        }
    };
    let Some(user_id) = user else {
        tracing::warn!(%schedule_id, "schedule for an unknown subscription; ignored");
        return Ok(());
    };
    let status = schedule["status"].as_str().unwrap_or("");
    let live = matches!(status, "active" | "not_started")
        && !event.kind.ends_with(".released")
        && !event.kind.ends_with(".canceled")
        && !event.kind.ends_with(".completed")
        && !event.kind.ends_with(".aborted");
    let (tier_now, next) = if live {
        phases_of(config, schedule)
    } else {
        (None, None)
    };
    let scheduled = match (tier_now, next) {
        (Some(now), Some(next)) if now != next => Some(next),
        (None, Some(next)) => Some(next),
        _ => None,
    };
    let applied = sqlx::query(
        "UPDATE subscriptions SET
            stripe_schedule_id = CASE WHEN $3 THEN $2 ELSE NULL END,
            scheduled_tier = $4,
            schedule_event_created = $5,
            updated_at = now()
         WHERE user_id = $1
           AND (schedule_event_created IS NULL OR schedule_event_created <= $5)
           AND (stripe_schedule_id IS NULL OR stripe_schedule_id = $2 OR $3)",
    )
    .bind(user_id)
    .bind(&schedule_id)
    .bind(live && scheduled.is_some())
    .bind(scheduled)
    .bind(event.created)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        > 0;
    // The phase that is running now sets the tier (the downgrade has begun).
    if applied && let Some(tier) = tier_now {
        sqlx::query(
            "UPDATE subscriptions SET tier = $2, updated_at = now()
             WHERE user_id = $1 AND status IN ('active', 'trialing', 'past_due')
               AND (stripe_event_created IS NULL OR stripe_event_created <= $3)",
        )
        .bind(user_id)
        .bind(tier)
        .bind(event.created)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The tiers of a schedule's running phase and of the phase after it.
fn phases_of(config: &Config, schedule: &Value) -> (Option<&'static str>, Option<&'static str>) {
    let Some(phases) = schedule["phases"].as_array() else {
        return (None, None);
    };
    let tier_of = |phase: &Value| {
        let price = &phase["items"][0]["price"];
        id_of(price).and_then(|p| tier_for_price(config, &p))
    };
    let started = schedule["current_phase"]["start_date"].as_i64();
    let current = started
        .and_then(|s| {
            phases
                .iter()
                .position(|p| p["start_date"].as_i64() == Some(s))
        })
        .or(if phases.is_empty() { None } else { Some(0) });
    match current {
        Some(i) => (
            started.and(phases.get(i).and_then(tier_of)),
            phases.get(i + 1).and_then(tier_of),
        ),
        None => (None, None),
    }
}
