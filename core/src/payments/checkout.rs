//! Checkout, with a free trial for those who never had one.

use super::plans::*;
use super::seats;
use super::stripe::*;
use super::*;
use crate::settings::Snapshot;

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
    /// Trial days the session carries (0 when the user is not eligible).
    pub trial_days: i64,
}

/// The form of an email that a trial is remembered by: lowercase, `+tag`
/// removed, and for gmail.com and googlemail.com (one domain) dots removed.
pub fn normalize_email(email: &str) -> String {
    let e = email.trim().to_lowercase();
    let Some((local, domain)) = e.rsplit_once('@') else {
        return e;
    };
    let local = local.split('+').next().unwrap_or(local);
    let domain = if domain == "googlemail.com" {
        "gmail.com"
    } else {
        domain
    };
    let local = if domain == "gmail.com" {
        local.replace('.', "")
    } else {
        local.to_string()
    };
    format!("{local}@{domain}")
}

/// Eligible for a trial: trials are on, the user never had a Stripe
/// subscription, and no trial was ever started for the same normalised email
/// (a session offered a trial but never completed uses nothing up).
pub async fn trial_eligible(
    conn: &mut PgConnection,
    config: &Config,
    user_id: Uuid,
    email: &str,
) -> Result<bool> {
    if config.trial_days <= 0 {
        return Ok(false);
    }
    Ok(sqlx::query_scalar(
        "SELECT NOT EXISTS (SELECT 1 FROM subscriptions
                            WHERE user_id = $1 AND stripe_subscription_id IS NOT NULL)
            AND NOT EXISTS (SELECT 1 FROM trial_claims
                            WHERE normalized_email = $2 OR user_id = $1)",
    )
    .bind(user_id)
    .bind(normalize_email(email))
    .fetch_one(&mut *conn)
    .await?)
}

/// Records that `user_id` started a trial (a `trialing` subscription was seen).
pub(super) async fn claim_trial(
    conn: &mut PgConnection,
    user_id: Uuid,
    subscription_id: Option<&str>,
) -> Result<()> {
    let email: Option<String> = sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(&mut *conn)
        .await?;
    let key = email
        .filter(|e| !e.trim().is_empty())
        .map(|e| normalize_email(&e))
        .unwrap_or_else(|| format!("user:{user_id}"));
    sqlx::query(
        "INSERT INTO trial_claims (normalized_email, user_id, stripe_subscription_id)
         VALUES ($1, $2, $3) ON CONFLICT (normalized_email) DO NOTHING",
    )
    .bind(key)
    .bind(user_id)
    .bind(subscription_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Who is checking out.
#[derive(Debug, Clone, Copy)]
pub struct Buyer<'a> {
    pub id: Uuid,
    pub email: &'a str,
}

/// `POST /api/payments/create-checkout-session` (API.md §4.15, API-NEXT.md N2).
///
/// Every session records a checkout hold (API-2026-05.md N5.6); a performer
/// checkout under `guild_master.seat_cap` reserves a seat first (409 when
/// full, before anything is sent to Stripe). The hold is committed before
/// Stripe is called; a Stripe failure deletes it.
pub async fn create_checkout_session(
    ctx: &Context,
    snap: &Snapshot,
    buyer: Buyer<'_>,
    input: &CheckoutRequest,
) -> Result<CheckoutSession> {
    let config = &ctx.config;
    let user_id = buyer.id;
    // Not configured is said first: without Stripe there are no prices, and
    // "Invalid price ID" would send the caller looking for the wrong fault.
    let stripe = stripe(ctx)?;
    let price_id = input.price_id.trim();
    let Some(tier) = tier_for_price(config, price_id) else {
        return Err(Error::bad_request(MSG_INVALID_PRICE));
    };
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
    if row.as_ref().is_some_and(|r| is_running(&r.status)) {
        return Err(Error::bad_request(MSG_ALREADY_ACTIVE));
    }
    let trial = trial_eligible(&mut conn, config, user_id, buyer.email).await?;
    drop(conn);
    if trial {
        crate::payments::require_verified_for_trial(ctx, user_id).await?;
    }
    let trial_days = if trial { config.trial_days } else { 0 };

    let capped = tier == "performer" && snap.settings.guild_master.seat_cap.is_some();
    let hold = seats::reserve(ctx, snap, user_id, tier).await?;
    let created = async {
        let session = stripe_session(
            ctx,
            &stripe,
            buyer,
            input,
            row.and_then(|r| r.stripe_customer_id),
            trial_days,
            capped.then(|| seats::stripe_expires_at(ctx.clock.now())),
        )
        .await?;
        seats::open(ctx, hold, &session.session_id).await?;
        Ok::<_, Error>(session)
    }
    .await;
    if created.is_err() {
        seats::release(ctx, hold).await;
    }
    created
}

/// The Stripe half of a checkout: the customer (once per user), then the
/// session. No transaction is open while Stripe is called.
async fn stripe_session(
    ctx: &Context,
    stripe: &Stripe<'_>,
    buyer: Buyer<'_>,
    input: &CheckoutRequest,
    known_customer: Option<String>,
    trial_days: i64,
    expires_at: Option<i64>,
) -> Result<CheckoutSession> {
    let user_id = buyer.id;
    let price_id = input.price_id.trim();
    let user = user_id.to_string();
    let op = Uuid::new_v4();

    // A customer is created once per user. The idempotency key makes
    // concurrent first checkouts get the same customer from Stripe, and the
    // conditional update keeps whichever id was stored first.
    let customer_id = match known_customer {
        Some(c) => c,
        None => {
            let form = vec![
                field("email", buyer.email),
                field("metadata[user_id]", &user),
            ];
            let customer = stripe
                .post("/customers", &form, &format!("mambo-customer-{user_id}"))
                .await
                .map_err(StripeError::into_error)?;
            let created = id_of(&customer["id"])
                .ok_or_else(|| Error::internal("Stripe customer without id"))?;
            let stored: String = sqlx::query_scalar(
                "INSERT INTO subscriptions (user_id, stripe_customer_id, status, tier)
                 VALUES ($1, $2, 'incomplete', 'rookie')
                 ON CONFLICT (user_id) DO UPDATE SET
                    stripe_customer_id = COALESCE(subscriptions.stripe_customer_id, EXCLUDED.stripe_customer_id),
                    status = CASE WHEN subscriptions.status IN ('active', 'trialing', 'past_due')
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

    let mut form = vec![
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
    if trial_days > 0 {
        form.push(field(
            "subscription_data[trial_period_days]",
            trial_days.to_string(),
        ));
    }
    if let Some(at) = expires_at {
        // The session lapses with its seat hold (Stripe's default is 24 h).
        form.push(field("expires_at", at.to_string()));
    }
    let session = stripe
        .post("/checkout/sessions", &form, &op_key(op, "checkout"))
        .await
        .map_err(StripeError::into_error)?;
    let session_id = id_of(&session["id"])
        .ok_or_else(|| Error::internal("Stripe checkout session without id"))?;
    let url = session["url"].as_str().unwrap_or_default().to_string();
    Ok(CheckoutSession {
        session_id,
        url,
        trial_days,
    })
}

#[cfg(test)]
mod tests {
    use super::normalize_email;

    #[test]
    fn emails_normalise_for_trials() {
        assert_eq!(
            normalize_email(" Ana.Lopez+salsa@Gmail.com "),
            "analopez@gmail.com"
        );
        assert_eq!(
            normalize_email("ana.lopez@googlemail.com"),
            "analopez@gmail.com"
        );
        assert_eq!(
            normalize_email("ana.lopez+x@example.com"),
            "ana.lopez@example.com"
        );
        assert_eq!(normalize_email("Ana@Example.COM"), "ana@example.com");
    }
}
