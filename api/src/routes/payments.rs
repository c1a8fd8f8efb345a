//! Payments endpoints (API.md §3.12, §4.15): Stripe checkout, plan changes,
//! cancellation and the signed webhook.

use crate::auth::UserAuth;
use crate::error::ApiResult;
use crate::state::AppState;
use mambo_core::payments::{self, CheckoutRequest};
use poem::Request;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

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
}

#[derive(Object, Debug)]
pub struct UpdateSubscriptionRequest {
    new_price_id: String,
}

#[derive(Object, Debug)]
pub struct SubscriptionResponse {
    success: bool,
    message: String,
    /// `rookie`, `advanced` or `performer`
    tier: String,
}

#[derive(Object, Debug)]
#[oai(rename = "StripeWebhookAck")]
pub struct WebhookAck {
    /// Always `success`
    status: String,
}

#[OpenApi(tag = "crate::routes::Tag::Payments")]
impl PaymentsApi {
    /// Start a Stripe Checkout for the Advanced or Performer plan
    #[oai(path = "/api/payments/create-checkout-session", method = "post")]
    async fn create_checkout_session(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        body: Json<CheckoutSessionRequest>,
    ) -> ApiResult<Json<CheckoutSessionResponse>> {
        let user = auth.user();
        let body = body.0;
        let session = payments::create_checkout_session(
            &state.ctx,
            user.id,
            &user.email,
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

    /// Move an active subscription to another plan (prorated)
    #[oai(path = "/api/payments/update-subscription", method = "post")]
    async fn update_subscription(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        body: Json<UpdateSubscriptionRequest>,
    ) -> ApiResult<Json<SubscriptionResponse>> {
        let tier =
            payments::update_subscription(&state.ctx, auth.user().id, &body.0.new_price_id).await?;
        Ok(Json(SubscriptionResponse {
            success: true,
            message: payments::MSG_UPDATED.into(),
            tier: tier.into(),
        }))
    }

    /// Cancel the subscription now; the account returns to Rookie
    #[oai(path = "/api/payments/cancel-subscription", method = "post")]
    async fn cancel_subscription(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
    ) -> ApiResult<Json<SubscriptionResponse>> {
        let message = payments::cancel_subscription(&state.ctx, auth.user().id).await?;
        Ok(Json(SubscriptionResponse {
            success: true,
            message: message.into(),
            tier: "rookie".into(),
        }))
    }
}
