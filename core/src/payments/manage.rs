//! Plan changes after checkout: upgrade now (prorated), downgrade at the end
//! of the period (a Stripe subscription schedule), cancel at period end,
//! resume, release a scheduled downgrade, the billing portal, and the
//! immediate cancel of an account deletion.
//!
//! Each operation reads the local row, calls Stripe (no transaction open,
//! one idempotency key per call of this logical operation), then stores what
//! Stripe answered in one statement that also moves the row's ordering mark,
//! so a webhook older than the change cannot undo it.

use super::plans::*;
use super::stripe::*;
use super::*;
use crate::access::tier_rank;

pub const MSG_ALREADY_ON_PLAN: &str = "Already on this plan";
pub const MSG_NO_ACTIVE: &str = "No active subscription";
pub const MSG_NOT_CANCELING: &str = "Subscription is not scheduled to cancel";
pub const MSG_NO_DOWNGRADE: &str = "No scheduled downgrade";
pub const MSG_NO_BILLING_ACCOUNT: &str =
    "No billing account found. Subscribe first to manage billing.";
pub const MSG_INVALID_RETURN_URL: &str = "Invalid return_url";
pub const MSG_RESUMED: &str = "Your subscription will continue.";
pub const MSG_DOWNGRADE_CANCELED: &str = "Your scheduled downgrade was canceled.";

/// Releases a subscription schedule (a schedule already gone is fine).
async fn release_schedule(
    stripe: &Stripe<'_>,
    schedule_id: &str,
    key: &str,
) -> std::result::Result<(), StripeError> {
    match stripe
        .post(
            &format!(
                "/subscription_schedules/{}/release",
                path_segment(schedule_id)
            ),
            &vec![],
            key,
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.is_missing() || matches!(&e, StripeError::Refused { status: 400, .. }) => {
            // Missing, or already released/completed/canceled.
            tracing::info!(%schedule_id, error = ?e, "schedule already released");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Stores a local change made through Stripe. `None` leaves a column alone.
#[derive(Default)]
struct Local<'a> {
    status: Option<&'a str>,
    tier: Option<&'a str>,
    period_end: Option<DateTime<Utc>>,
    cancel_at_period_end: Option<bool>,
    /// `Some(None)` clears the schedule.
    schedule: Option<(Option<&'a str>, Option<&'a str>)>,
}

async fn store_local(ctx: &Context, user_id: Uuid, l: Local<'_>) -> Result<()> {
    let (set_schedule, schedule_id, scheduled_tier) = match l.schedule {
        Some((id, tier)) => (true, id, tier),
        None => (false, None, None),
    };
    sqlx::query(
        "UPDATE subscriptions SET
            status = COALESCE($2, status),
            tier = COALESCE($3, tier),
            current_period_end = COALESCE($4, current_period_end),
            cancel_at_period_end = COALESCE($5, cancel_at_period_end),
            stripe_schedule_id = CASE WHEN $6 THEN $7 ELSE stripe_schedule_id END,
            scheduled_tier = CASE WHEN $6 THEN $8 ELSE scheduled_tier END,
            stripe_event_created = GREATEST(COALESCE(stripe_event_created, 0), $9),
            schedule_event_created = CASE WHEN $6
                THEN GREATEST(COALESCE(schedule_event_created, 0), $9)
                ELSE schedule_event_created END,
            updated_at = now()
         WHERE user_id = $1",
    )
    .bind(user_id)
    .bind(l.status)
    .bind(l.tier)
    .bind(l.period_end)
    .bind(l.cancel_at_period_end)
    .bind(set_schedule)
    .bind(schedule_id)
    .bind(scheduled_tier)
    .bind(ctx.clock.now().timestamp())
    .execute(&ctx.db)
    .await?;
    Ok(())
}

/// `POST /api/payments/update-subscription`: an upgrade applies now with
/// proration; a downgrade is scheduled for the end of the paid period.
pub async fn update_subscription(
    ctx: &Context,
    user_id: Uuid,
    new_price_id: &str,
) -> Result<Change> {
    let new_price_id = new_price_id.trim();
    let tier = tier_for_price(&ctx.config, new_price_id)
        .ok_or_else(|| Error::bad_request(MSG_INVALID_PRICE))?;
    let row = load(ctx, user_id)
        .await?
        .ok_or_else(|| Error::not_found(MSG_NO_SUBSCRIPTION))?;
    if !is_current(&row.status) {
        return Err(Error::bad_request(MSG_NOT_ACTIVE_UPDATE));
    }
    let sub_id = row
        .stripe_subscription_id
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::bad_request(MSG_NO_STRIPE_ID_UPDATE))?;
    if row.scheduled_tier.as_deref() == Some(tier) {
        // The same downgrade again: nothing new to do.
        return change(ctx, user_id, MSG_UPDATED).await;
    }
    if row.tier == tier {
        return Err(Error::bad_request(MSG_ALREADY_ON_PLAN));
    }
    let stripe = stripe(ctx)?;
    let op = Uuid::new_v4();
    let current = stripe
        .retrieve_subscription(&sub_id)
        .await
        .map_err(StripeError::into_error)?;
    // D9: the items list is `["items"]["data"]`.
    let item = &current["items"]["data"][0];
    let item_id = item["id"]
        .as_str()
        .ok_or_else(|| Error::bad_request("No subscription item found. Cannot update."))?
        .to_string();

    if tier_rank(tier) > tier_rank(&row.tier) {
        // Upgrade: a pending downgrade no longer applies.
        let schedule = row
            .stripe_schedule_id
            .clone()
            .or_else(|| id_of(&current["schedule"]));
        if let Some(schedule_id) = schedule {
            release_schedule(&stripe, &schedule_id, &op_key(op, "release"))
                .await
                .map_err(StripeError::into_error)?;
        }
        let form = vec![
            field("items[0][id]", item_id),
            field("items[0][price]", new_price_id),
            field("proration_behavior", "always_invoice"),
        ];
        let updated = stripe
            .post(
                &format!("/subscriptions/{}", path_segment(&sub_id)),
                &form,
                &op_key(op, "upgrade"),
            )
            .await
            .map_err(StripeError::into_error)?;
        store_local(
            ctx,
            user_id,
            Local {
                tier: Some(tier),
                period_end: period_end_of_subscription(&updated),
                schedule: Some((None, None)),
                ..Local::default()
            },
        )
        .await?;
        return change(ctx, user_id, MSG_UPDATED).await;
    }

    // Downgrade: phase 1 keeps the current price until the period ends,
    // phase 2 moves to the new price; the schedule then releases itself.
    let current_price = item["price"]["id"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| match row.tier.as_str() {
            "performer" => ctx.config.performer_price_id.clone(),
            _ => ctx.config.advanced_price_id.clone(),
        });
    let existing = row
        .stripe_schedule_id
        .clone()
        .or_else(|| id_of(&current["schedule"]));
    let schedule = match existing {
        Some(id) => stripe
            .get(&format!("/subscription_schedules/{}", path_segment(&id)))
            .await
            .map_err(StripeError::into_error)?,
        None => stripe
            .post(
                "/subscription_schedules",
                &vec![field("from_subscription", &sub_id)],
                &op_key(op, "schedule"),
            )
            .await
            .map_err(StripeError::into_error)?,
    };
    let schedule_id =
        id_of(&schedule["id"]).ok_or_else(|| Error::internal("Stripe schedule without id"))?;
    let phase = &schedule["phases"][0];
    let start = phase["start_date"]
        .as_i64()
        .or_else(|| schedule["current_phase"]["start_date"].as_i64())
        .or_else(|| current["current_period_start"].as_i64())
        .or_else(|| item["current_period_start"].as_i64());
    let end = phase["end_date"]
        .as_i64()
        .or_else(|| schedule["current_phase"]["end_date"].as_i64())
        .or_else(|| period_end_of_subscription(&current).map(|d| d.timestamp()));
    let (Some(start), Some(end)) = (start, end) else {
        return Err(Error::internal("Stripe schedule without a current phase"));
    };
    let form = vec![
        field("end_behavior", "release"),
        field("phases[0][items][0][price]", &current_price),
        field("phases[0][items][0][quantity]", "1"),
        field("phases[0][start_date]", start.to_string()),
        field("phases[0][end_date]", end.to_string()),
        field("phases[0][proration_behavior]", "none"),
        field("phases[1][items][0][price]", new_price_id),
        field("phases[1][items][0][quantity]", "1"),
        field("phases[1][iterations]", "1"),
        field("phases[1][proration_behavior]", "none"),
    ];
    stripe
        .post(
            &format!("/subscription_schedules/{}", path_segment(&schedule_id)),
            &form,
            &op_key(op, "downgrade"),
        )
        .await
        .map_err(StripeError::into_error)?;
    store_local(
        ctx,
        user_id,
        Local {
            period_end: unix_to_utc(end),
            schedule: Some((Some(&schedule_id), Some(tier))),
            ..Local::default()
        },
    )
    .await?;
    change(ctx, user_id, MSG_UPDATED).await
}

fn ends_message(period_end: Option<DateTime<Utc>>) -> String {
    match period_end {
        Some(at) => format!(
            "Your subscription will end on {}. You keep access until then.",
            long_date(at)
        ),
        None => "Your subscription will end at the end of the billing period. You keep access until then.".into(),
    }
}

/// `POST /api/payments/cancel-subscription` (API-NEXT.md N2): a Stripe
/// subscription ends at the end of the paid period; one without a Stripe id
/// is cancelled locally at once.
pub async fn cancel_subscription(ctx: &Context, user_id: Uuid) -> Result<Change> {
    let row = load(ctx, user_id)
        .await?
        .ok_or_else(|| Error::not_found(MSG_NO_SUBSCRIPTION))?;
    if !is_running(&row.status) {
        return Err(Error::bad_request(MSG_NOT_ACTIVE_CANCEL));
    }
    let Some(sub_id) = row.stripe_subscription_id.clone().filter(|s| !s.is_empty()) else {
        cancel_locally(ctx, user_id).await?;
        return change(ctx, user_id, MSG_CANCELED_LOCAL).await;
    };
    if row.cancel_at_period_end {
        return change(ctx, user_id, ends_message(row.current_period_end)).await;
    }
    let stripe = stripe(ctx)?;
    let op = Uuid::new_v4();
    if let Some(schedule_id) = &row.stripe_schedule_id {
        // A subscription run by a schedule cannot be set to cancel; the
        // pending downgrade is moot anyway.
        release_schedule(&stripe, schedule_id, &op_key(op, "release"))
            .await
            .map_err(StripeError::into_error)?;
    }
    let updated = match stripe
        .post(
            &format!("/subscriptions/{}", path_segment(&sub_id)),
            &vec![field("cancel_at_period_end", "true")],
            &op_key(op, "cancel"),
        )
        .await
    {
        Ok(v) => v,
        Err(e) if e.is_missing() => {
            tracing::warn!(%sub_id, "Stripe subscription already gone; canceling locally");
            cancel_locally(ctx, user_id).await?;
            return change(ctx, user_id, MSG_CANCELED_LOCAL).await;
        }
        Err(e) => return Err(e.into_error()),
    };
    let period_end = period_end_of_subscription(&updated).or(row.current_period_end);
    store_local(
        ctx,
        user_id,
        Local {
            period_end,
            cancel_at_period_end: Some(true),
            schedule: Some((None, None)),
            ..Local::default()
        },
    )
    .await?;
    change(ctx, user_id, ends_message(period_end)).await
}

async fn cancel_locally(ctx: &Context, user_id: Uuid) -> Result<()> {
    store_local(
        ctx,
        user_id,
        Local {
            status: Some("canceled"),
            tier: Some("rookie"),
            cancel_at_period_end: Some(false),
            schedule: Some((None, None)),
            ..Local::default()
        },
    )
    .await
}

/// `POST /api/payments/resume-subscription`: clears a pending cancel.
pub async fn resume_subscription(ctx: &Context, user_id: Uuid) -> Result<Change> {
    let row = load(ctx, user_id)
        .await?
        .filter(|r| is_running(&r.status))
        .ok_or_else(|| Error::not_found(MSG_NO_ACTIVE))?;
    let Some(sub_id) = row.stripe_subscription_id.clone().filter(|s| !s.is_empty()) else {
        return Err(Error::bad_request(MSG_NOT_CANCELING));
    };
    if !row.cancel_at_period_end {
        return Err(Error::bad_request(MSG_NOT_CANCELING));
    }
    let stripe = stripe(ctx)?;
    let updated = stripe
        .post(
            &format!("/subscriptions/{}", path_segment(&sub_id)),
            &vec![field("cancel_at_period_end", "false")],
            &op_key(Uuid::new_v4(), "resume"),
        )
        .await
        .map_err(StripeError::into_error)?;
    store_local(
        ctx,
        user_id,
        Local {
            period_end: period_end_of_subscription(&updated),
            cancel_at_period_end: Some(false),
            ..Local::default()
        },
    )
    .await?;
    change(ctx, user_id, MSG_RESUMED).await
}

/// `POST /api/payments/cancel-scheduled-downgrade`: releases the schedule,
/// so the current plan renews as it is.
pub async fn cancel_scheduled_downgrade(ctx: &Context, user_id: Uuid) -> Result<Change> {
    let row = load(ctx, user_id).await?;
    let Some((schedule_id, _)) = row
        .as_ref()
        .and_then(|r| r.stripe_schedule_id.clone().zip(r.scheduled_tier.clone()))
    else {
        return Err(Error::bad_request(MSG_NO_DOWNGRADE));
    };
    let stripe = stripe(ctx)?;
    release_schedule(&stripe, &schedule_id, &op_key(Uuid::new_v4(), "release"))
        .await
        .map_err(StripeError::into_error)?;
    store_local(
        ctx,
        user_id,
        Local {
            schedule: Some((None, None)),
            ..Local::default()
        },
    )
    .await?;
    change(ctx, user_id, MSG_DOWNGRADE_CANCELED).await
}

/// True when `url` is on the same origin (scheme, host, port) as the frontend.
fn same_origin_as_frontend(config: &Config, url: &str) -> bool {
    let (Ok(a), Ok(b)) = (
        reqwest::Url::parse(url.trim()),
        reqwest::Url::parse(&config.frontend_url),
    ) else {
        return false;
    };
    matches!(a.scheme(), "http" | "https")
        && a.origin() == b.origin()
        && a.username().is_empty()
        && a.password().is_none()
}

/// `POST /api/payments/create-portal-session`: a Stripe billing-portal
/// session (cards, invoices) for the caller's customer.
pub async fn create_portal_session(
    ctx: &Context,
    user_id: Uuid,
    return_url: &str,
) -> Result<String> {
    let stripe = stripe(ctx)?;
    if !same_origin_as_frontend(&ctx.config, return_url) {
        return Err(Error::bad_request(MSG_INVALID_RETURN_URL));
    }
    let customer = load(ctx, user_id)
        .await?
        .and_then(|r| r.stripe_customer_id)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| Error::not_found(MSG_NO_BILLING_ACCOUNT))?;
    let session = stripe
        .post(
            "/billing_portal/sessions",
            &vec![
                field("customer", &customer),
                field("return_url", return_url.trim()),
            ],
            &op_key(Uuid::new_v4(), "portal"),
        )
        .await
        .map_err(StripeError::into_error)?;
    session["url"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Error::internal("Stripe portal session without url"))
}

/// Account deletion (API-NEXT.md N3): cancels the user's Stripe subscription
/// at once and marks the row canceled. Idempotent: a second run (a resumed
/// deletion job) sends the same idempotency key, and a subscription already
/// gone in Stripe or never created is fine. A Stripe outage is an error so
/// that the job retries.
pub async fn cancel_for_deletion(ctx: &Context, user_id: Uuid) -> Result<()> {
    let Some(row) = load(ctx, user_id).await? else {
        return Ok(());
    };
    if let Some(sub_id) = row
        .stripe_subscription_id
        .clone()
        .filter(|s| !s.is_empty() && row.status != "canceled")
    {
        // Without Stripe settings nothing can be cancelled there: the local
        // row still ends, so the deletion goes on (and says so in the log).
        let Ok(stripe) = stripe(ctx) else {
            tracing::warn!(%user_id, %sub_id, "Stripe is not configured; subscription canceled locally only");
            return cancel_locally(ctx, user_id).await;
        };
        match stripe
            .delete(
                &format!("/subscriptions/{}", path_segment(&sub_id)),
                &format!("mambo-delete-account-{user_id}-{sub_id}"),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_missing() => {
                tracing::info!(%sub_id, "subscription already gone in Stripe")
            }
            Err(StripeError::Refused { message, .. }) => {
                // Already canceled in Stripe, say.
                tracing::warn!(%sub_id, %message, "Stripe refused the cancel; canceling locally")
            }
            Err(e) => return Err(e.into_error()),
        }
    }
    cancel_locally(ctx, user_id).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn return_urls_must_share_the_frontend_origin() {
        let mut m = HashMap::new();
        m.insert(
            "FRONTEND_URL".to_string(),
            "https://app.example.com".to_string(),
        );
        let c = Config::from_map(&m).unwrap();
        assert!(same_origin_as_frontend(
            &c,
            "https://app.example.com/billing"
        ));
        assert!(same_origin_as_frontend(&c, "https://app.example.com"));
        assert!(!same_origin_as_frontend(
            &c,
            "https://app.example.com.evil.io/billing"
        ));
        assert!(!same_origin_as_frontend(
            &c,
            "http://app.example.com/billing"
        ));
        assert!(!same_origin_as_frontend(
            &c,
            "https://app.example.com:444/billing"
        ));
        assert!(!same_origin_as_frontend(
            &c,
            "https://evil@app.example.com/"
        ));
        assert!(!same_origin_as_frontend(&c, "javascript:alert(1)"));
        assert!(!same_origin_as_frontend(&c, "/billing"));
    }
}
