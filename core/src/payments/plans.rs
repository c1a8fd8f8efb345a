//! The caller's subscription as the billing pages see it, and the local row
//! every plan operation starts from.

use super::*;

/// The subscription row of one user.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct SubRow {
    pub stripe_customer_id: Option<String>,
    pub stripe_subscription_id: Option<String>,
    pub stripe_schedule_id: Option<String>,
    pub status: String,
    pub tier: String,
    pub scheduled_tier: Option<String>,
    pub cancel_at_period_end: bool,
    pub current_period_end: Option<DateTime<Utc>>,
    pub trial_end: Option<DateTime<Utc>>,
}

pub(super) async fn load_row(conn: &mut PgConnection, user_id: Uuid) -> Result<Option<SubRow>> {
    Ok(sqlx::query_as::<_, SubRow>(
        "SELECT stripe_customer_id, stripe_subscription_id, stripe_schedule_id, status, tier,
                scheduled_tier, cancel_at_period_end, current_period_end, trial_end
         FROM subscriptions WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(&mut *conn)
    .await?)
}

pub(super) async fn load(ctx: &Context, user_id: Uuid) -> Result<Option<SubRow>> {
    let mut conn = ctx.db.acquire().await?;
    load_row(&mut conn, user_id).await
}

/// `active` or `trialing`: a plan that can be changed.
pub(super) fn is_current(status: &str) -> bool {
    status == "active" || status == "trialing"
}

/// A subscription that is still running in Stripe (it may be behind on
/// payment): it can be cancelled or resumed.
pub(super) fn is_running(status: &str) -> bool {
    is_current(status) || status == "past_due"
}

/// `GET /api/payments/subscription` and the state part of every plan
/// operation's answer (API-NEXT.md N2).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SubscriptionView {
    pub tier: String,
    pub status: Option<String>,
    pub cancel_at_period_end: bool,
    pub current_period_end: Option<DateTime<Utc>>,
    pub scheduled_tier: Option<String>,
    pub trial_end: Option<DateTime<Utc>>,
}

impl SubscriptionView {
    /// No subscription: the rookie row that registration creates, or a
    /// checkout that never completed, counts as none. A row granted locally
    /// (no Stripe id, e.g. `create-admin`) that is running shows as it is.
    pub(super) fn of(row: Option<&SubRow>) -> Self {
        match row {
            Some(r) if r.stripe_subscription_id.is_some() || is_running(&r.status) => Self {
                tier: r.tier.clone(),
                status: Some(r.status.clone()),
                cancel_at_period_end: r.cancel_at_period_end,
                current_period_end: r.current_period_end,
                scheduled_tier: r.scheduled_tier.clone(),
                trial_end: r.trial_end,
            },
            _ => Self {
                tier: "rookie".into(),
                status: None,
                cancel_at_period_end: false,
                current_period_end: None,
                scheduled_tier: None,
                trial_end: None,
            },
        }
    }
}

/// What a plan operation did: its message and the state afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub message: String,
    pub view: SubscriptionView,
}

pub(super) async fn change(
    ctx: &Context,
    user_id: Uuid,
    message: impl Into<String>,
) -> Result<Change> {
    let row = load(ctx, user_id).await?;
    Ok(Change {
        message: message.into(),
        view: SubscriptionView::of(row.as_ref()),
    })
}

/// `GET /api/payments/subscription`.
pub async fn subscription(ctx: &Context, user_id: Uuid) -> Result<SubscriptionView> {
    let row = load(ctx, user_id).await?;
    Ok(SubscriptionView::of(row.as_ref()))
}

/// "January 5, 2027": dates in messages and emails.
pub fn long_date(at: DateTime<Utc>) -> String {
    at.format("%B %-d, %Y").to_string()
}
