//! Payments endpoints (API.md §3.12, §4.15; API-NEXT.md N2): Stripe checkout
//! with trials, the subscription's state, plan changes, cancel and resume,
//! the billing portal and the signed webhook.

use crate::auth::UserAuth;
use crate::error::ApiResult;
use crate::state::AppState;
use crate::types::ts_opt;
use mambo_core::payments::{self, Buyer, Change, CheckoutRequest, SubscriptionView};
use poem::Request;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

pub struct PaymentsApi;

#[derive(Object, Debug)]
pub struct CheckoutSessionRequest {
    /// `ADVANCED_PRICE_ID` or `PERFORMER_PRICE_ID`
    price_id: String,
    /// Must start with `FRONTEND_URL`
    success_url: String,
    /// Must start with `FRONTEND_URL`
    cancel_url: String,
}

#[derive(Object, Debug)]
pub struct CheckoutSessionResponse {
    session_id: String,
    /// Stripe Checkout page to redirect to
    url: String,
    /// Free-trial days the session carries (0 when the user is not eligible)
    trial_days: i64,
}

#[derive(Object, Debug)]
pub struct UpdateSubscriptionRequest {
    new_price_id: String,
}

/// The answer of every plan operation: its message and the state afterwards.
#[derive(Object, Debug)]
pub struct SubscriptionResponse {
    success: bool,
    message: String,
    /// `rookie`, `advanced` or `performer`
    tier: Option<String>,
    /// `active`, `trialing`, `past_due`, `unpaid`, `canceled`, `incomplete`;
    /// null without a Stripe subscription
    status: Option<String>,
    /// The tier a scheduled downgrade moves to at `current_period_end`
    scheduled_tier: Option<String>,
    /// The subscription ends at `current_period_end`
    cancel_at_period_end: Option<bool>,
    current_period_end: Option<String>,
    trial_end: Option<String>,
}

impl From<Change> for SubscriptionResponse {
    fn from(c: Change) -> Self {
        let v = c.view;
        Self {
            success: true,
            message: c.message,
            tier: Some(v.tier),
            status: v.status,
            scheduled_tier: v.scheduled_tier,
            cancel_at_period_end: Some(v.cancel_at_period_end),
            current_period_end: ts_opt(&v.current_period_end),
            trial_end: ts_opt(&v.trial_end),
        }
    }
}

/// The caller's subscription (`GET /api/payments/subscription`).
#[derive(Object, Debug)]
pub struct SubscriptionStatus {
    /// `rookie` without a Stripe subscription
    tier: String,
    /// null without a Stripe subscription
    status: Option<String>,
    cancel_at_period_end: bool,
    current_period_end: Option<String>,
    scheduled_tier: Option<String>,
    trial_end: Option<String>,
}

impl From<SubscriptionView> for SubscriptionStatus {
    fn from(v: SubscriptionView) -> Self {
        Self {
            tier: v.tier,
            status: v.status,
            cancel_at_period_end: v.cancel_at_period_end,
            current_period_end: ts_opt(&v.current_period_end),
            scheduled_tier: v.scheduled_tier,
            trial_end: ts_opt(&v.trial_end),
        }
    }
}

#[derive(Object, Debug)]
pub struct PortalSessionRequest {
    /// Where the portal's back link goes; must be on `FRONTEND_URL`'s origin
    return_url: String,
}

#[derive(Object, Debug)]
pub struct PortalSessionResponse {
    /// Stripe billing portal page to redirect to
    url: String,
}

#[derive(Object, Debug)]
#[oai(rename = "StripeWebhookAck")]
pub struct WebhookAck {
    /// Always `success`
    status: String,
}

/// Guild Master seats (API-2026-05.md N5.6).
#[derive(Object, Debug)]
pub struct GuildMasterSeats {
    /// `guild_master.seat_cap`; null when there is no cap
    total: Option<i64>,
    /// Guild Master subscriptions plus open performer checkouts
    taken: i64,
    /// `max(0, total - taken)`; null when there is no cap
    remaining: Option<i64>,
    /// false when there is no cap
    is_full: bool,
}

#[derive(ApiResponse)]
pub enum GuildMasterSeatsResponse {
    /// The seat counter (may be up to 5 s old)
    #[oai(status = 200)]
    Ok(
        Json<GuildMasterSeats>,
        /// `public, max-age=30`
        #[oai(header = "Cache-Control")]
        String,
    ),
}

#[derive(Object, Debug)]
#[oai(rename = "CancelCheckoutAck")]
pub struct CancelCheckoutAck {
    /// Always `ok`
    status: String,
}

#[OpenApi(tag = "crate::routes::Tag::Payments")]
impl PaymentsApi {
    /// Start a Stripe Checkout for the Advanced or Performer plan (with a
    /// free trial when the user is eligible)
    #[oai(path = "/api/payments/create-checkout-session", method = "post")]
    async fn create_checkout_session(
        &self,
        auth: UserAuth,
        state: Data<&AppState>,
        body: Json<CheckoutSessionRequest>,
    ) -> ApiResult<Json<CheckoutSessionResponse>> {
        let user = auth.user();
        let body = body.0;
        let snap = state.ctx.settings_now().await?;
        let session = payments::create_checkout_session(
            &state.ctx,
            &snap,
            Buyer {
                id: user.id,
                email: &user.email,
            },
            &CheckoutRequest {
                price_id: body.price_id,
                success_url: body.success_url,
                cancel_url: body.cancel_url,
            },
        )
        .await?;
        Ok(Json(CheckoutSessionResponse {
            session_id: session.session_id,
            url: session.url,
            trial_days: session.trial_days,
        }))
    }

    /// Stripe webhook (signed with `STRIPE_WEBHOOK_SECRET`)
    #[oai(path = "/api/payments/webhook", method = "post")]
    async fn webhook(
        &self,
        state: Data<&AppState>,
        req: &Request,
        body: Vec<u8>,
    ) -> ApiResult<Json<WebhookAck>> {
        let signature = req
            .headers()
            .get("stripe-signature")
            .and_then(|v| v.to_str().ok());
        payments::handle_webhook(&state.ctx, signature, &body).await?;
        Ok(Json(WebhookAck {
            status: "success".into(),
        }))
    }

    /// The caller's subscription
    #[oai(path = "/api/payments/subscription", method = "get")]
    async fn subscription(
        &self,
        auth: UserAuth,
        state: Data<&AppState>,
    ) -> ApiResult<Json<SubscriptionStatus>> {
        let view = payments::subscription(&state.ctx, auth.user().id).await?;
        Ok(Json(view.into()))
    }

    /// Change plan: an upgrade applies now (prorated), a downgrade at the end
    /// of the paid period
    #[oai(path = "/api/payments/update-subscription", method = "post")]
    async fn update_subscription(
        &self,
        auth: UserAuth,
        state: Data<&AppState>,
        body: Json<UpdateSubscriptionRequest>,
    ) -> ApiResult<Json<SubscriptionResponse>> {
        let change =
            payments::update_subscription(&state.ctx, auth.user().id, &body.0.new_price_id).await?;
        Ok(Json(change.into()))
    }

    /// Cancel at the end of the paid period (at once without a Stripe
    /// subscription)
    #[oai(path = "/api/payments/cancel-subscription", method = "post")]
    async fn cancel_subscription(
        &self,
        auth: UserAuth,
        state: Data<&AppState>,
    ) -> ApiResult<Json<SubscriptionResponse>> {
        let change = payments::cancel_subscription(&state.ctx, auth.user().id).await?;
        Ok(Json(change.into()))
    }

    /// Keep a subscription that was set to cancel at period end
    #[oai(path = "/api/payments/resume-subscription", method = "post")]
    async fn resume_subscription(
        &self,
        auth: UserAuth,
        state: Data<&AppState>,
    ) -> ApiResult<Json<SubscriptionResponse>> {
        let change = payments::resume_subscription(&state.ctx, auth.user().id).await?;
        Ok(Json(change.into()))
    }

    /// Drop a scheduled downgrade; the current plan renews as it is
    #[oai(path = "/api/payments/cancel-scheduled-downgrade", method = "post")]
    async fn cancel_scheduled_downgrade(
        &self,
        auth: UserAuth,
        state: Data<&AppState>,
    ) -> ApiResult<Json<SubscriptionResponse>> {
        let change = payments::cancel_scheduled_downgrade(&state.ctx, auth.user().id).await?;
        Ok(Json(change.into()))
    }

    /// A Stripe billing-portal session (cards, invoices) for the caller
    #[oai(path = "/api/payments/create-portal-session", method = "post")]
    async fn create_portal_session(
        &self,
        auth: UserAuth,
        state: Data<&AppState>,
        body: Json<PortalSessionRequest>,
    ) -> ApiResult<Json<PortalSessionResponse>> {
        let url =
            payments::create_portal_session(&state.ctx, auth.user().id, &body.0.return_url).await?;
        Ok(Json(PortalSessionResponse { url }))
    }

    /// Guild Master seats: the cap, the seats taken and whether it is full
    #[oai(path = "/api/payments/guild-master-seats", method = "get")]
    async fn guild_master_seats(
        &self,
        state: Data<&AppState>,
    ) -> ApiResult<GuildMasterSeatsResponse> {
        let snap = state.ctx.settings_now().await?;
        let seats = payments::guild_master_seats(&state.ctx, &snap).await?;
        Ok(GuildMasterSeatsResponse::Ok(
            Json(GuildMasterSeats {
                total: seats.total,
                taken: seats.taken,
                remaining: seats.remaining,
                is_full: seats.is_full,
            }),
            "public, max-age=30".into(),
        ))
    }

    /// Abandon the caller's open checkouts: their seat holds free at once
    /// and the Stripe sessions are expired in the background
    #[oai(path = "/api/payments/cancel-checkout", method = "post")]
    async fn cancel_checkout(
        &self,
        auth: UserAuth,
        state: Data<&AppState>,
    ) -> ApiResult<Json<CancelCheckoutAck>> {
        payments::cancel_checkout(&state.ctx, auth.user().id).await?;
        Ok(Json(CancelCheckoutAck {
            status: "ok".into(),
        }))
    }
}
