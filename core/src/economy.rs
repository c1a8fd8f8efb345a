//! The clave economy (API.md §4.1). Every balance change is a ledger row in
//! `clave_transactions`, written in the same transaction as the balance update;
//! a spend is one conditional `UPDATE ... WHERE current_claves >= $cost`.

use crate::access::PRO_SQL;
use crate::db::Statement;
use crate::{Config, Error, Result};
use rand::Rng;
use sqlx::PgConnection;
use uuid::Uuid;

/// Every amount of the economy, in one place. Overridable from configuration
/// with `ECONOMY_<NAME>` (e.g. `ECONOMY_ACCEPTED_ANSWER=15`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Amounts {
    pub new_user_bonus: i64,
    pub daily_base_min: i64,
    pub daily_base_max: i64,
    pub daily_pro_min: i64,
    pub daily_pro_max: i64,
    pub streak_bonus_base: i64,
    pub streak_bonus_pro: i64,
    pub streak_milestone_every: i64,
    pub post_stage: i64,
    pub post_lab: i64,
    pub reaction: i64,
    pub reaction_refund: i64,
    pub reaction_refund_cap: i64,
    pub comment: i64,
    pub accepted_answer: i64,
    pub subscription_bonus_advanced: i64,
    pub subscription_bonus_performer: i64,
    pub referral_bonus: i64,
    pub slots_base: i64,
    pub slots_pro: i64,
}

impl Default for Amounts {
    fn default() -> Self {
        Self {
            new_user_bonus: 15,
            daily_base_min: 1,
            daily_base_max: 3,
            daily_pro_min: 4,
            daily_pro_max: 8,
            streak_bonus_base: 10,
            streak_bonus_pro: 20,
            streak_milestone_every: 5,
            post_stage: 15,
            post_lab: 5,
            reaction: 1,
            reaction_refund: 1,
            reaction_refund_cap: 5,
            comment: 2,
            accepted_answer: 10,
            subscription_bonus_advanced: 10,
            subscription_bonus_performer: 20,
            referral_bonus: 50,
            slots_base: 5,
            slots_pro: 20,
        }
    }
}

impl Amounts {
    pub fn from_config(config: &Config) -> Self {
        let mut a = Self::default();
        for (k, v) in &config.economy_overrides {
            let slot = match k.as_str() {
                "new_user_bonus" => &mut a.new_user_bonus,
                "daily_base_min" => &mut a.daily_base_min,
                "daily_base_max" => &mut a.daily_base_max,
                "daily_pro_min" => &mut a.daily_pro_min,
                "daily_pro_max" => &mut a.daily_pro_max,
                "streak_bonus_base" => &mut a.streak_bonus_base,
                "streak_bonus_pro" => &mut a.streak_bonus_pro,
                "streak_milestone_every" => &mut a.streak_milestone_every,
                "post_stage" => &mut a.post_stage,
                "post_lab" => &mut a.post_lab,
                "reaction" => &mut a.reaction,
                "reaction_refund" => &mut a.reaction_refund,
                "reaction_refund_cap" => &mut a.reaction_refund_cap,
                "comment" => &mut a.comment,
                "accepted_answer" => &mut a.accepted_answer,
                "subscription_bonus_advanced" => &mut a.subscription_bonus_advanced,
                "subscription_bonus_performer" => &mut a.subscription_bonus_performer,
                "referral_bonus" => &mut a.referral_bonus,
                "slots_base" => &mut a.slots_base,
                "slots_pro" => &mut a.slots_pro,
                _ => continue,
            };
            *slot = *v;
        }
        a
    }

    /// The amounts in force: the platform settings (N6) over the
    /// configuration's (the settings own every amount they name; the
    /// `ECONOMY_<NAME>` overrides still set the others).
    pub fn from_settings(config: &Config, s: &crate::settings::Settings) -> Self {
        let e = &s.economy;
        Self {
            new_user_bonus: e.starter_bonus,
            daily_base_min: e.daily_claim_base[0],
            daily_base_max: e.daily_claim_base[1],
            daily_pro_min: e.daily_claim_pro[0],
            daily_pro_max: e.daily_claim_pro[1],
            streak_bonus_base: e.streak_bonus_base,
            streak_bonus_pro: e.streak_bonus_pro,
            post_stage: e.stage_post_cost,
            post_lab: e.lab_post_cost,
            reaction: e.reaction_cost,
            reaction_refund: e.reaction_refund,
            reaction_refund_cap: e.reaction_refund_cap,
            comment: e.reply_cost,
            accepted_answer: e.accepted_answer_reward,
            ..Self::from_config(config)
        }
    }

    /// The amounts of the settings in force now ([`Self::from_settings`]).
    pub async fn current(ctx: &crate::Context) -> Result<Self> {
        let s = ctx.settings_now().await?;
        Ok(Self::from_settings(&ctx.config, &s.settings))
    }

    /// A random daily claim amount for the tier (inclusive range).
    pub fn daily_amount(&self, pro: bool) -> i64 {
        let (lo, hi) = if pro {
            (self.daily_pro_min, self.daily_pro_max)
        } else {
            (self.daily_base_min, self.daily_base_max)
        };
        if hi <= lo {
            return lo;
        }
        rand::rng().random_range(lo..=hi)
    }

    pub fn streak_bonus(&self, pro: bool) -> i64 {
        if pro {
            self.streak_bonus_pro
        } else {
            self.streak_bonus_base
        }
    }

    pub fn slot_limit(&self, pro: bool) -> i64 {
        if pro { self.slots_pro } else { self.slots_base }
    }
}

/// `"{base} (-{cost} 🥢)"`, or just `base` when nothing was charged (N6.3).
pub fn charged_message(base: &str, cost: i64) -> String {
    if cost == 0 {
        base.to_string()
    } else {
        format!("{base} (-{cost} 🥢)")
    }
}

/// Ledger reasons (`clave_transactions.reason`).
pub mod reason {
    pub const NEW_USER_BONUS: &str = "new_user_bonus";
    pub const DAILY_LOGIN: &str = "daily_login";
    pub const STREAK_BONUS: &str = "streak_bonus";
    pub const POST_STAGE: &str = "post_stage";
    pub const POST_LAB: &str = "post_lab";
    pub const REACTION: &str = "reaction";
    pub const REACTION_REFUND: &str = "reaction_refund";
    pub const COMMENT: &str = "comment";
    pub const ACCEPTED_ANSWER: &str = "accepted_answer";
    pub const SUBSCRIPTION_BONUS: &str = "subscription_bonus";
    /// An admin's grant or deduction (API-NEXT.md N4.6).
    pub const ADMIN_GRANT: &str = "admin_grant";
    /// N6.4: a posting reward (`reference_id` = the post).
    pub const POST_REWARD: &str = "post_reward";
    /// N6.4: a posting reward taken back (`reference_id` = the post).
    pub const POST_REWARD_CLAWBACK: &str = "post_reward_clawback";
}

/// Credits `amount` and writes the ledger row. With a `dedupe_key`, a second
/// credit under the same key does nothing and returns `None`. One statement.
pub async fn credit(
    conn: &mut PgConnection,
    user_id: Uuid,
    amount: i64,
    reason: &str,
    reference_id: Option<Uuid>,
    dedupe_key: Option<&str>,
) -> Result<Option<i64>> {
    if amount == 0 {
        // A reward of 0 (N6.3) writes no row.
        return Ok(None);
    }
    let (inserted, balance): (i64, Option<i32>) = sqlx::query_as(sqlx::AssertSqlSafe(credit_sql(
        "INSERT INTO clave_transactions (user_id, amount, reason, reference_id, dedupe_key)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING",
    )))
    .bind(user_id)
    .bind(amount as i32)
    .bind(reason)
    .bind(reference_id)
    .bind(dedupe_key)
    .fetch_one(&mut *conn)
    .await?;
    credited(inserted, balance)
}

/// Credits `amount` unless the user already holds `cap` ledger rows of this
/// `reason` and `reference_id` (the reaction refund's per-post cap). The
/// caller serializes the credits of one `reference_id` (the reaction refund:
/// the post's lock), so the count cannot race. One statement; `None` when
/// capped.
pub async fn credit_capped(
    conn: &mut PgConnection,
    user_id: Uuid,
    amount: i64,
    reason: &str,
    reference_id: Uuid,
    cap: i64,
) -> Result<Option<i64>> {
    let mut q = Statement::new("WITH ");
    push_credit_capped(
        &mut q,
        "c",
        Capped {
            user_id,
            amount,
            reason,
            reference_id,
            cap,
        },
        "true",
    );
    q.push(" SELECT ");
    q.push(capped_result_sql("c"));
    let (inserted, balance): (i64, Option<i32>) = q.build_query_as().fetch_one(&mut *conn).await?;
    credited(inserted, balance)
}

/// The two columns (ledger rows, new balance) of a [`push_credit_capped`]
/// named `name`, for [`credited`].
pub fn capped_result_sql(name: &str) -> String {
    format!("(SELECT count(*) FROM {name}_ledger), (SELECT current_claves FROM {name})")
}

/// A capped credit ([`credit_capped`]).
#[derive(Debug, Clone, Copy)]
pub struct Capped<'a> {
    pub user_id: Uuid,
    pub amount: i64,
    pub reason: &'a str,
    pub reference_id: Uuid,
    pub cap: i64,
}

/// Pushes [`credit_capped`]'s expressions into a composed statement
/// ([`Statement`]), written only when `guard` holds: `{name}_ledger` (the
/// ledger row, if written) and `{name}` (the new balance, if credited).
pub fn push_credit_capped(q: &mut Statement, name: &str, c: Capped<'_>, guard: &str) {
    // A reward of 0 (N6.3) writes no row.
    let guard = if c.amount == 0 { "false" } else { guard };
    q.push(format_args!(
        "{name}_ledger AS (
             INSERT INTO clave_transactions (user_id, amount, reason, reference_id)
             SELECT "
    ));
    q.push_bind(c.user_id);
    q.push(", ");
    q.push_bind(c.amount as i32);
    q.push(", ");
    q.push_bind(c.reason);
    q.push(", ");
    q.push_bind(c.reference_id);
    q.push(format_args!(
        " WHERE ({guard}) AND (SELECT count(*) FROM clave_transactions
                                WHERE user_id = "
    ));
    q.push_bind(c.user_id);
    q.push(" AND reason = ");
    q.push_bind(c.reason);
    q.push(" AND reference_id = ");
    q.push_bind(c.reference_id);
    q.push(") < ");
    q.push_bind(c.cap);
    q.push(format_args!(
        " RETURNING user_id, amount
         ), {name} AS (
             UPDATE user_profiles p
             SET current_claves = p.current_claves + l.amount, updated_at = now()
             FROM {name}_ledger l WHERE p.user_id = l.user_id
             RETURNING p.current_claves
         )"
    ));
}

/// One credit statement: `insert` (a ledger row of user `$1`, amount `$2`, or
/// none), then the balance moved by `$2` only if the row was written. Returns
/// (rows written, new balance).
fn credit_sql(insert: &str) -> String {
    format!(
        "WITH t AS ({insert} RETURNING id), p AS (
             UPDATE user_profiles SET current_claves = current_claves + $2, updated_at = now()
             WHERE user_id = $1 AND EXISTS (SELECT 1 FROM t)
             RETURNING current_claves
         )
         SELECT (SELECT count(*) FROM t), (SELECT current_claves FROM p)"
    )
}

/// What a credit statement wrote: (ledger rows, new balance) → the new
/// balance, `None` when nothing was credited, and `Profile not found` when a
/// ledger row found no balance to move (the transaction must not commit).
pub fn credited(inserted: i64, balance: Option<i32>) -> Result<Option<i64>> {
    match (inserted, balance) {
        (0, _) => Ok(None),
        (_, Some(b)) => Ok(Some(b as i64)),
        (_, None) => Err(Error::not_found("Profile not found")),
    }
}

/// The result of a failed spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insufficient {
    pub required: i64,
    pub balance: i64,
}

/// Spends `cost` atomically: one conditional UPDATE, then the ledger row.
/// Returns the new balance, or `Err(Insufficient)` with nothing written.
pub async fn spend(
    conn: &mut PgConnection,
    user_id: Uuid,
    cost: i64,
    reason: &str,
    reference_id: Option<Uuid>,
) -> Result<std::result::Result<i64, Insufficient>> {
    // One statement: the conditional debit and its ledger row.
    let mut q = Statement::new("WITH ");
    push_spend(&mut q, "s", user_id, cost, reason, reference_id);
    q.push(" SELECT current_claves FROM s");
    let balance: Option<i32> = q.build_query_scalar().fetch_optional(&mut *conn).await?;
    match balance {
        Some(b) => Ok(Ok(b as i64)),
        None => Ok(Err(insufficient(conn, user_id, cost).await?)),
    }
}

/// Pushes [`spend`]'s expressions into a composed statement ([`Statement`]):
/// `{name}` yields the user's new balance when the balance covered `cost`
/// (the debit and its ledger row were written), and no row when it did not
/// (nothing was written; see [`insufficient`]).
pub fn push_spend(
    q: &mut Statement,
    name: &str,
    user_id: Uuid,
    cost: i64,
    reason: &str,
    reference_id: Option<Uuid>,
) {
    q.push(format_args!(
        "{name} AS (
             UPDATE user_profiles SET current_claves = current_claves - "
    ));
    q.push_bind(cost as i32);
    q.push(", updated_at = now() WHERE user_id = ");
    q.push_bind(user_id);
    q.push(" AND current_claves >= ");
    q.push_bind(cost as i32);
    q.push(format_args!(
        " RETURNING user_id, current_claves
         ), {name}_ledger AS (
             INSERT INTO clave_transactions (user_id, amount, reason, reference_id)
             SELECT user_id, "
    ));
    q.push_bind(-(cost as i32));
    q.push(", ");
    q.push_bind(reason);
    q.push(", ");
    q.push_bind(reference_id);
    // A cost of 0 (N6.3) spends nothing and writes no ledger row.
    q.push(format_args!(
        " FROM {name} WHERE {})",
        if cost == 0 { "false" } else { "true" }
    ));
}

/// Why a spend of `cost` was refused: the balance it did not cover.
pub async fn insufficient(
    conn: &mut PgConnection,
    user_id: Uuid,
    cost: i64,
) -> Result<Insufficient> {
    let current: Option<i32> =
        sqlx::query_scalar("SELECT current_claves FROM user_profiles WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(Insufficient {
        required: cost,
        balance: current.unwrap_or(0) as i64,
    })
}

/// The bounds of an admin's grant (N4.6): a deduction or a credit of at most
/// this many claves, never 0.
pub const GRANT_MAX: i64 = 10_000;
/// The longest reason an admin may give for a grant.
pub const GRANT_REASON_MAX: usize = 200;
pub const USER_NOT_FOUND: &str = "User not found";
pub const INSUFFICIENT_CLAVES: &str = "Insufficient claves";

/// Checks a grant's body (422 in FastAPI's shape): `amount` from −10,000 to
/// 10,000 and not 0; `reason` 1–200 characters (not only blanks).
pub fn validate_grant(amount: i64, reason: &str) -> Result<()> {
    let amount_error = |kind: &str, msg: String, ctx: serde_json::Value| {
        Error::with_object(
            422,
            serde_json::json!([{ "type": kind, "loc": ["body", "amount"], "msg": msg,
                                 "input": amount, "ctx": ctx }]),
        )
    };
    if amount < -GRANT_MAX {
        return Err(amount_error(
            "greater_than_equal",
            format!("Input should be greater than or equal to {}", -GRANT_MAX),
            serde_json::json!({ "ge": -GRANT_MAX }),
        ));
    }
    if amount > GRANT_MAX {
        return Err(amount_error(
            "less_than_equal",
            format!("Input should be less than or equal to {GRANT_MAX}"),
            serde_json::json!({ "le": GRANT_MAX }),
        ));
    }
    if amount == 0 {
        return Err(Error::value_error(
            &["body", "amount"],
            "amount must not be 0",
            serde_json::json!(amount),
        ));
    }
    let len = reason.trim().chars().count();
    if len == 0 {
        return Err(Error::with_object(
            422,
            serde_json::json!([{ "type": "string_too_short", "loc": ["body", "reason"],
                                 "msg": "String should have at least 1 character",
                                 "input": reason, "ctx": { "min_length": 1 } }]),
        ));
    }
    if reason.chars().count() > GRANT_REASON_MAX {
        return Err(Error::with_object(
            422,
            serde_json::json!([{ "type": "string_too_long", "loc": ["body", "reason"],
                                 "msg": format!("String should have at most {GRANT_REASON_MAX} characters"),
                                 "input": reason, "ctx": { "max_length": GRANT_REASON_MAX } }]),
        ));
    }
    Ok(())
}

/// An admin credits (`amount` > 0) or deducts (`amount` < 0) claves: one
/// ledger row of reason `admin_grant` through [`credit`] / [`spend`] and the
/// `claves.grant` audit row (balance before and after, the amount and the
/// reason), in one transaction. 404 `User not found` for an unknown user; a
/// deduction below zero is a 400 `Insufficient claves` with nothing written.
/// Returns the new balance. The body is checked by [`validate_grant`] first.
pub async fn grant(
    db: &sqlx::PgPool,
    actor: &crate::audit::Actor,
    user_id: Uuid,
    amount: i64,
    reason: &str,
) -> Result<i64> {
    use crate::audit::{self, action, target};
    validate_grant(amount, reason)?;
    let reason = reason.trim();
    let mut tx = db.begin().await?;
    // The profile row locked: `before` is the balance this grant moves from.
    let before: Option<i32> = sqlx::query_scalar(
        "SELECT current_claves FROM user_profiles WHERE user_id = $1 FOR UPDATE",
    )
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(before) = before else {
        return Err(Error::not_found(USER_NOT_FOUND));
    };
    let balance = if amount > 0 {
        credit(&mut tx, user_id, amount, reason::ADMIN_GRANT, None, None)
            .await?
            .ok_or_else(|| Error::internal("an undeduplicated credit wrote nothing"))?
    } else {
        match spend(&mut tx, user_id, -amount, reason::ADMIN_GRANT, None).await? {
            Ok(b) => b,
            Err(_) => return Err(Error::bad_request(INSUFFICIENT_CLAVES)),
        }
    };
    audit::record(
        &mut tx,
        actor
            .entry(action::CLAVES_GRANT, target::USER, user_id)
            .before(serde_json::json!({ "current_claves": before }))
            .after(serde_json::json!({
                "current_claves": balance,
                "amount": amount,
                "reason": reason,
            })),
    )
    .await?;
    tx.commit().await?;
    Ok(balance)
}

/// One ledger row as the wallet shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct WalletTransaction {
    pub id: Uuid,
    pub amount: i32,
    pub reason: String,
    pub reference_id: Option<Uuid>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// `GET /api/claves/wallet` (§3.7): balance, pro flag, the 20 newest ledger
/// rows and the video slots of the §4.3 formula (D15).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Wallet {
    pub current_claves: i64,
    pub is_pro: bool,
    pub recent_transactions: Vec<WalletTransaction>,
    pub video_slots_used: i64,
    pub video_slots_limit: i64,
}

/// Wallet transactions shown (§1.5).
pub const WALLET_TRANSACTIONS: i64 = 20;

pub async fn wallet(ctx: &crate::Context, user_id: Uuid) -> Result<Wallet> {
    #[derive(sqlx::FromRow)]
    struct Row {
        balance: Option<i32>,
        pro: Option<bool>,
        used: i64,
        id: Option<Uuid>,
        amount: Option<i32>,
        reason: Option<String>,
        reference_id: Option<Uuid>,
        created_at: Option<chrono::DateTime<chrono::Utc>>,
    }
    let amounts = Amounts::from_config(&ctx.config);
    // One round trip (issue 10): the scalars are evaluated once, the ledger
    // rows come from the `(user_id, created_at)` index through the lateral join.
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT (SELECT current_claves FROM user_profiles WHERE user_id = $1) AS balance,
                (SELECT {PRO_SQL} FROM subscriptions s WHERE s.user_id = $1) AS pro,
                {slots} AS used,
                t.id, t.amount, t.reason, t.reference_id, t.created_at
         FROM (SELECT 1) one
         LEFT JOIN LATERAL (
             SELECT id, amount, reason::text AS reason, reference_id, created_at
             FROM clave_transactions WHERE user_id = $1
             ORDER BY created_at DESC, id DESC LIMIT $2
         ) t ON true
         ORDER BY t.created_at DESC, t.id DESC",
        slots = crate::video_slots::SLOTS_USED_SQL,
    )))
    .bind(user_id)
    .bind(WALLET_TRANSACTIONS)
    .fetch_all(&ctx.db)
    .await?;
    let head = rows.first();
    let balance = head.and_then(|r| r.balance).unwrap_or(0) as i64;
    let pro = head.and_then(|r| r.pro).unwrap_or(false);
    let used = head.map(|r| r.used).unwrap_or(0);
    let recent_transactions = rows
        .into_iter()
        .filter_map(|r| {
            Some(WalletTransaction {
                id: r.id?,
                amount: r.amount?,
                reason: r.reason?,
                reference_id: r.reference_id,
                created_at: r.created_at?,
            })
        })
        .collect();
    Ok(Wallet {
        current_claves: balance,
        is_pro: pro,
        recent_transactions,
        video_slots_used: used,
        video_slots_limit: amounts.slot_limit(pro),
    })
}

/// `GET /api/claves/balance-check/{amount}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BalanceCheck {
    pub can_afford: bool,
    pub current_balance: i64,
    pub required_amount: i64,
    pub shortfall: i64,
}

pub fn balance_check_for(balance: i64, amount: i64) -> BalanceCheck {
    BalanceCheck {
        can_afford: balance >= amount,
        current_balance: balance,
        required_amount: amount,
        shortfall: amount.saturating_sub(balance).max(0),
    }
}

pub async fn balance_check(db: &sqlx::PgPool, user_id: Uuid, amount: i64) -> Result<BalanceCheck> {
    let balance: Option<i32> =
        sqlx::query_scalar("SELECT current_claves FROM user_profiles WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(db)
            .await?;
    Ok(balance_check_for(balance.unwrap_or(0) as i64, amount))
}

/// Level from XP: `max(1, floor(sqrt(xp/100)))` (D21).
pub fn level_for_xp(xp: i64) -> i64 {
    if xp <= 0 {
        return 1;
    }
    ((xp as f64 / 100.0).sqrt().floor() as i64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_formula() {
        assert_eq!(level_for_xp(0), 1);
        assert_eq!(level_for_xp(50), 1);
        assert_eq!(level_for_xp(399), 1);
        assert_eq!(level_for_xp(400), 2);
        assert_eq!(level_for_xp(900), 3);
        assert_eq!(level_for_xp(10_000), 10);
    }

    #[test]
    fn balance_check_shortfall() {
        assert_eq!(balance_check_for(10, 4).shortfall, 0);
        assert!(balance_check_for(10, 10).can_afford);
        let c = balance_check_for(3, 15);
        assert!(!c.can_afford);
        assert_eq!(c.shortfall, 12);
        assert_eq!(balance_check_for(3, -5).shortfall, 0);
    }

    #[test]
    fn daily_amount_ranges() {
        let a = Amounts::default();
        for _ in 0..200 {
            let b = a.daily_amount(false);
            assert!((1..=3).contains(&b));
            let p = a.daily_amount(true);
            assert!((4..=8).contains(&p));
        }
    }
}

/// A posting reward's rules (N6.4; `posting_rewards.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostRewardRule {
    pub reward: i64,
    pub daily_cap: i64,
    pub cooldown_seconds: i64,
}

/// Pays a posting reward for `post_id` to its author, once per post ever:
/// `min(reward, daily_cap − rewards paid since 00:00 UTC)`, nothing while
/// the author's previous reward is younger than the cooldown. The caller
/// holds the author's `user_profiles` row `FOR UPDATE`, so parallel posts
/// of one author are judged one after the other. One statement; returns
/// `(amount, new balance)` when something was paid.
pub async fn pay_post_reward(
    conn: &mut PgConnection,
    user_id: Uuid,
    post_id: Uuid,
    rule: PostRewardRule,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<(i64, i64)>> {
    if rule.reward <= 0 {
        return Ok(None);
    }
    let day_start = now
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    let cool_start = now - chrono::Duration::seconds(rule.cooldown_seconds);
    let row: Option<(i32, i32)> = sqlx::query_as(
        "WITH prior AS (
             SELECT COALESCE(sum(amount) FILTER (WHERE created_at >= $4), 0) AS paid,
                    max(created_at) AS last
             FROM clave_transactions
             WHERE user_id = $1 AND reason = 'post_reward' AND created_at >= LEAST($4, $5)
         ), amt AS (
             SELECT LEAST($3::int, $6::int - paid)::int AS amount FROM prior
             WHERE last IS NULL OR last <= $5
         ), l AS (
             INSERT INTO clave_transactions (user_id, amount, reason, reference_id, created_at)
             SELECT $1, amount, 'post_reward', $2, $7 FROM amt WHERE amount > 0
             ON CONFLICT (reference_id) WHERE reason = 'post_reward' DO NOTHING
             RETURNING amount
         )
         UPDATE user_profiles SET current_claves = current_claves + l.amount, updated_at = $7
         FROM l WHERE user_profiles.user_id = $1
         RETURNING l.amount, user_profiles.current_claves",
    )
    .bind(user_id)
    .bind(post_id)
    .bind(rule.reward as i32)
    .bind(day_start)
    .bind(cool_start)
    .bind(rule.daily_cap as i32)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|(a, b)| (a as i64, b as i64)))
}

/// Takes a post's reward back when the post is deleted or hidden within
/// `window_hours` of the reward (N6.4): one `post_reward_clawback` row of
/// `−min(reward, balance)` (the balance never goes below zero), at most one
/// per post. One statement; returns the amount taken.
pub async fn claw_back_post_reward(
    conn: &mut PgConnection,
    post_id: Uuid,
    window_hours: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<i64>> {
    if window_hours <= 0 {
        return Ok(None);
    }
    let since = now - chrono::Duration::hours(window_hours);
    let taken: Option<i32> = sqlx::query_scalar(
        "WITH r AS (
             SELECT user_id, amount FROM clave_transactions
             WHERE reason = 'post_reward' AND reference_id = $1 AND created_at > $2
         ), p AS (
             SELECT pr.user_id, LEAST(r.amount, pr.current_claves) AS take
             FROM user_profiles pr JOIN r ON r.user_id = pr.user_id
             FOR UPDATE OF pr
         ), l AS (
             INSERT INTO clave_transactions (user_id, amount, reason, reference_id, created_at)
             SELECT user_id, -take, 'post_reward_clawback', $1, $3 FROM p WHERE take > 0
             ON CONFLICT (reference_id) WHERE reason = 'post_reward_clawback' DO NOTHING
             RETURNING user_id, amount
         )
         UPDATE user_profiles u SET current_claves = u.current_claves + l.amount, updated_at = $3
         FROM l WHERE u.user_id = l.user_id
         RETURNING -l.amount",
    )
    .bind(post_id)
    .bind(since)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(taken.map(i64::from))
}
