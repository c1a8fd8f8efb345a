//! Claves endpoints (API.md §3.7): the wallet, the daily claim, balance checks
//! and video slots; and an admin's grant (API-NEXT.md N4.6).

use crate::auth::{AdminAuth, UserAuth};
use crate::error::ApiResult;
use crate::fast_json::FastJson;
use crate::routes::community::SlotStatusOut;
use crate::state::AppState;
use crate::types::{parse_id, ts};
use mambo_core::{community, economy, streaks};
use poem::Request;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

pub struct ClavesApi;

#[derive(Object, serde::Serialize, Debug)]
pub struct WalletTransactionOut {
    id: String,
    amount: i64,
    reason: String,
    reference_id: Option<String>,
    created_at: String,
}

#[derive(Object, serde::Serialize, Debug)]
pub struct WalletOut {
    current_claves: i64,
    is_pro: bool,
    recent_transactions: Vec<WalletTransactionOut>,
    video_slots_used: i64,
    video_slots_limit: i64,
}

#[derive(Object, Debug)]
pub struct DailyClaimOut {
    success: bool,
    amount: i64,
    new_balance: i64,
    streak_bonus: Option<i64>,
    message: String,
}

#[derive(Object, Debug)]
pub struct BalanceCheckOut {
    can_afford: bool,
    current_balance: i64,
    required_amount: i64,
    shortfall: i64,
}

/// An admin's grant (a positive amount) or deduction (a negative one).
#[derive(Object, Debug)]
#[oai(rename = "ClaveGrant")]
pub struct GrantIn {
    /// From -10000 to 10000, not 0
    amount: i64,
    /// Why (1–200 characters); kept in the audit log
    reason: String,
}

#[derive(Object, Debug)]
#[oai(rename = "ClaveGrantResult")]
pub struct GrantOut {
    success: bool,
    new_balance: i64,
}

#[OpenApi(tag = "crate::routes::Tag::Claves")]
impl ClavesApi {
    /// Grant claves to a user, or deduct them (admin). A ledger row
    /// `admin_grant` and an audit row `claves.grant`; a deduction below zero
    /// is refused.
    #[oai(
        path = "/api/admin/users/:user_id/claves",
        method = "post",
        tag = "crate::routes::Tag::Admin"
    )]
    async fn grant(
        &self,
        auth: AdminAuth,
        state: Data<&AppState>,
        req: &Request,
        user_id: Path<String>,
        body: Json<GrantIn>,
    ) -> ApiResult<Json<GrantOut>> {
        let actor = crate::routes::admin::audit_actor(&state, req, auth.user());
        let b = body.0;
        economy::validate_grant(b.amount, &b.reason)?;
        let user_id = parse_id(&user_id, economy::USER_NOT_FOUND)?;
        let new_balance =
            economy::grant(&state.ctx.db, &actor, user_id, b.amount, &b.reason).await?;
        Ok(Json(GrantOut {
            success: true,
            new_balance,
        }))
    }

    /// The caller's wallet: balance, 20 newest transactions, video slots
    #[oai(path = "/api/claves/wallet", method = "get")]
    async fn wallet(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
    ) -> ApiResult<FastJson<WalletOut>> {
        let w = economy::wallet(&state.ctx, auth.user().id).await?;
        Ok(FastJson(WalletOut {
            current_claves: w.current_claves,
            is_pro: w.is_pro,
            recent_transactions: w
                .recent_transactions
                .into_iter()
                .map(|t| WalletTransactionOut {
                    id: t.id.to_string(),
                    amount: t.amount as i64,
                    reason: t.reason,
                    reference_id: t.reference_id.map(|r| r.to_string()),
                    created_at: ts(&t.created_at),
                })
                .collect(),
            video_slots_used: w.video_slots_used,
            video_slots_limit: w.video_slots_limit,
        }))
    }

    /// Claim today's claves (always 200, also when already claimed)
    #[oai(path = "/api/claves/daily-claim", method = "post")]
    async fn daily_claim(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
    ) -> ApiResult<Json<DailyClaimOut>> {
        let c = streaks::daily_claim(&state.ctx, auth.user().id).await?;
        Ok(Json(DailyClaimOut {
            success: c.success,
            amount: c.amount,
            new_balance: c.new_balance,
            streak_bonus: c.streak_bonus,
            message: c.message,
        }))
    }

    /// Can the caller afford `amount` claves?
    #[oai(path = "/api/claves/balance-check/:amount", method = "get")]
    async fn balance_check(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        amount: Path<String>,
    ) -> ApiResult<Json<BalanceCheckOut>> {
        let raw = amount.0;
        let amount: i64 = raw.trim().parse().map_err(|_| {
            mambo_core::Error::validation(
                &["path", "amount"],
                "Input should be a valid integer, unable to parse string as an integer",
                "int_parsing",
                serde_json::json!(raw),
            )
        })?;
        let c = economy::balance_check(&state.ctx.db, auth.user().id, amount).await?;
        Ok(Json(BalanceCheckOut {
            can_afford: c.can_afford,
            current_balance: c.current_balance,
            required_amount: c.required_amount,
            shortfall: c.shortfall,
        }))
    }

    /// The caller's video slots (§4.3)
    #[oai(path = "/api/claves/slot-status", method = "get")]
    async fn slot_status(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
    ) -> ApiResult<Json<SlotStatusOut>> {
        let user = auth.user();
        let s = community::upload_check(&state.ctx, user.id, &user.role).await?;
        Ok(Json(s.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fast_json::assert_same_json;

    #[test]
    fn fast_json_matches_the_openapi_serialization() {
        assert_same_json(&WalletOut {
            current_claves: 12,
            is_pro: true,
            recent_transactions: vec![
                WalletTransactionOut {
                    id: "t1".into(),
                    amount: -1,
                    reason: "reaction".into(),
                    reference_id: Some("p1".into()),
                    created_at: "2026-11-27T10:00:00.5".into(),
                },
                WalletTransactionOut {
                    id: "t2".into(),
                    amount: 3,
                    reason: "daily_login".into(),
                    reference_id: None,
                    created_at: "2026-11-27T09:00:00".into(),
                },
            ],
            video_slots_used: 1,
            video_slots_limit: 5,
        });
    }
}
