//! What a billing event tells the user: a `subscription` notification and an
//! email (template files), both in the event's transaction and both once per
//! key (the notification's dedup key, the email's claimed idempotency key).

use super::plans::long_date;
use super::*;
use crate::notifications::{self, New, Pending};

/// A billing event worth telling the user about.
#[derive(Debug, Clone, Copy)]
pub(super) enum Notice {
    /// `customer.subscription.deleted`.
    Ended,
    /// `customer.subscription.trial_will_end`, with the trial's end.
    TrialEnds(Option<DateTime<Utc>>),
    /// `invoice.payment_failed`.
    PaymentFailed,
}

pub(super) async fn send(
    ctx: &Context,
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    user_id: Uuid,
    notice: Notice,
    key: &str,
    pending: &mut Pending,
) -> Result<()> {
    #[derive(sqlx::FromRow)]
    struct Who {
        email: String,
        first_name: Option<String>,
        grace_until: Option<DateTime<Utc>>,
    }
    let Some(who) = sqlx::query_as::<_, Who>(
        "SELECT u.email, p.first_name, s.grace_until
         FROM users u
         LEFT JOIN user_profiles p ON p.user_id = u.id
         LEFT JOIN subscriptions s ON s.user_id = u.id
         WHERE u.id = $1",
    )
    .bind(user_id)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(());
    };
    let front = ctx.config.frontend_url.trim_end_matches('/');
    let billing_link = format!("{front}/billing");
    let first_name = who
        .first_name
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "dancer".into());
    let (kind, title, message, template, vars) = match notice {
        Notice::Ended => (
            "ended",
            "Your subscription has ended".to_string(),
            "Your subscription has ended. Free courses and the community stay open to you."
                .to_string(),
            "subscription_ended",
            serde_json::json!({
                "first_name": first_name,
                "pricing_link": format!("{front}/pricing"),
            }),
        ),
        Notice::TrialEnds(at) => {
            let date = at.map(long_date).unwrap_or_else(|| "soon".into());
            let on = at
                .map(|_| format!("on {date}"))
                .unwrap_or_else(|| date.clone());
            (
                "trial_will_end",
                format!("Your trial ends {on}"),
                format!("Your trial ends {on}. Your plan then continues unless you cancel before."),
                "trial_ending",
                serde_json::json!({
                    "first_name": first_name,
                    "trial_end": date,
                    "billing_link": billing_link,
                }),
            )
        }
        Notice::PaymentFailed => (
            "payment_failed",
            "Your payment failed".to_string(),
            "We could not take your payment. Update your card in billing to keep your access."
                .to_string(),
            "payment_failed",
            serde_json::json!({
                "first_name": first_name,
                "billing_link": billing_link,
                "grace_until": who.grace_until.map(long_date),
            }),
        ),
    };
    let key = format!("{kind}:{key}");
    notifications::notify(
        conn,
        now,
        &New::subscription(user_id, &title, &message, &key),
        pending,
    )
    .await?;
    let email_key = format!("billing:{key}");
    let claimed = crate::email::reserve(
        conn,
        template,
        &[(email_key.clone(), who.email.clone())],
        now,
    )
    .await?;
    if !claimed.is_empty() {
        let job = crate::email_templates::email_job(template, email_key, &who.email, &vars)?;
        crate::jobs::enqueue(conn, &job).await?;
    }
    Ok(())
}
