//! Creating accounts: a user, a profile and a rookie subscription, always together.

use crate::Result;
use rand::RngCore;
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub hashed_password: Option<String>,
    pub auth_provider: String,
    pub social_id: Option<String>,
    pub is_verified: bool,
    pub role: String,
    pub first_name: String,
    pub last_name: String,
    pub username: Option<String>,
    pub avatar_url: Option<String>,
    pub current_level_tag: String,
    pub referred_by_code: Option<String>,
}

impl NewUser {
    pub fn student(email: &str, first_name: &str, last_name: &str) -> Self {
        Self {
            email: normalize_email(email),
            hashed_password: None,
            auth_provider: "email".into(),
            social_id: None,
            is_verified: false,
            role: "student".into(),
            first_name: first_name.into(),
            last_name: last_name.into(),
            username: None,
            avatar_url: None,
            current_level_tag: "Beginner".into(),
            referred_by_code: None,
        }
    }
}

pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// `Beginner`/`Novice`/`Intermediate`/`Advanced`, case-insensitive; anything else is Beginner.
pub fn normalize_level_tag(tag: Option<&str>) -> String {
    match tag.map(|t| t.trim().to_ascii_lowercase()).as_deref() {
        Some("novice") => "Novice",
        Some("intermediate") => "Intermediate",
        Some("advanced") => "Advanced",
        _ => "Beginner",
    }
    .to_string()
}

/// 4 random bytes as 8 uppercase hex characters.
pub fn new_referral_code() -> String {
    let mut b = [0u8; 4];
    rand::rng().fill_bytes(&mut b);
    hex::encode_upper(b)
}

/// Inserts the user, the profile (with a fresh referral code) and a rookie
/// subscription. Unique violations (email, username) surface as database
/// errors for the caller to map.
pub async fn create_user(conn: &mut PgConnection, new: &NewUser) -> Result<Uuid> {
    let user_id: Uuid = sqlx::query_scalar(
        "INSERT INTO users (email, hashed_password, auth_provider, social_id, is_verified, role)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(&new.email)
    .bind(&new.hashed_password)
    .bind(&new.auth_provider)
    .bind(&new.social_id)
    .bind(new.is_verified)
    .bind(&new.role)
    .fetch_one(&mut *conn)
    .await?;
    let mut code = new_referral_code();
    for _ in 0..10 {
        let taken: bool = sqlx::query_scalar(
            "SELECT EXISTS(SELECT 1 FROM user_profiles WHERE referral_code = $1)",
        )
        .bind(&code)
        .fetch_one(&mut *conn)
        .await?;
        if !taken {
            break;
        }
        code = new_referral_code();
    }
    sqlx::query(
        "INSERT INTO user_profiles (user_id, first_name, last_name, username, avatar_url,
             current_level_tag, referral_code, referred_by_code)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(user_id)
    .bind(&new.first_name)
    .bind(&new.last_name)
    .bind(new.username.as_ref().map(|u| u.to_lowercase()))
    .bind(&new.avatar_url)
    .bind(&new.current_level_tag)
    .bind(&code)
    .bind(&new.referred_by_code)
    .execute(&mut *conn)
    .await?;
    sqlx::query("INSERT INTO subscriptions (user_id) VALUES ($1)")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    Ok(user_id)
}

/// `mambo create-admin`: an admin account (created, or an existing one
/// promoted) with an active `performer` subscription that has no Stripe id,
/// so the frontend shows an admin every paid feature.
pub async fn create_admin(
    pool: &sqlx::PgPool,
    email: &str,
    password: &str,
    first_name: &str,
    last_name: &str,
) -> Result<Uuid> {
    ensure_account(
        pool,
        email,
        password,
        "admin",
        first_name,
        last_name,
        Some("performer"),
    )
    .await
}

/// Creates an account with a password, or updates the role/password of an
/// existing one (used by `mambo create-admin` and `create-test-user`).
/// With `tier`, the subscription is set active at that tier.
pub async fn ensure_account(
    pool: &sqlx::PgPool,
    email: &str,
    password: &str,
    role: &str,
    first_name: &str,
    last_name: &str,
    tier: Option<&str>,
) -> Result<Uuid> {
    if let Err(msg) = crate::identity_rules::validate_password(password) {
        return Err(crate::Error::bad_request(msg));
    }
    if !crate::identity_rules::is_valid_email(email) {
        return Err(crate::Error::bad_request("Invalid email format"));
    }
    let hash = crate::auth::hash_password(password.to_string()).await?;
    let email = normalize_email(email);
    let mut tx = pool.begin().await?;
    let existing: Option<(Uuid, String)> =
        sqlx::query_as("SELECT id, role FROM users WHERE email = $1 FOR UPDATE")
            .bind(&email)
            .fetch_optional(&mut *tx)
            .await?;
    // A role given from the command line is an admin action of the system
    // (N4.5): audited when it changes a role or creates a staff account.
    let role_change = match &existing {
        Some((_, old)) if old != role => Some(Some(old.clone())),
        None if role != "student" => Some(None),
        _ => None,
    };
    let id = match existing.map(|(id, _)| id) {
        Some(id) => {
            sqlx::query(
                "UPDATE users SET role = $2, hashed_password = $3, updated_at = now() WHERE id = $1",
            )
            .bind(id)
            .bind(role)
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
            id
        }
        None => {
            let mut nu = NewUser::student(&email, first_name, last_name);
            nu.role = role.to_string();
            nu.hashed_password = Some(hash);
            nu.is_verified = true;
            let id = create_user(&mut tx, &nu).await?;
            crate::economy::credit(
                &mut tx,
                id,
                crate::economy::Amounts::default().new_user_bonus,
                crate::economy::reason::NEW_USER_BONUS,
                None,
                None,
            )
            .await?;
            id
        }
    };
    if let Some(tier) = tier {
        // An active subscription without Stripe ids (as the original
        // service's admin script made): the frontend shows paid features
        // from `tier`. A promoted account that lost its row gets one.
        sqlx::query(
            "INSERT INTO subscriptions (user_id, status, tier) VALUES ($1, 'active', $2)
             ON CONFLICT (user_id) DO UPDATE SET status = 'active', tier = $2, updated_at = now()",
        )
        .bind(id)
        .bind(tier)
        .execute(&mut *tx)
        .await?;
    }
    if let Some(before) = role_change {
        crate::audit::record(
            &mut tx,
            crate::audit::Entry {
                actor_id: None,
                action: crate::audit::action::USER_ROLE,
                target_type: crate::audit::target::USER,
                target_id: Some(id.to_string()),
                before: before.map(|r| serde_json::json!({ "role": r })),
                after: Some(serde_json::json!({ "role": role })),
                ip: None,
                at: crate::Clock::system().now(),
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(id)
}
