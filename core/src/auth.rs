//! Tokens and passwords.
//!
//! JWTs keep exactly the reference's claim set (`sub`, `exp`, `type`), so tokens
//! minted by the Python service stay valid when `SECRET_KEY` is shared (§1.2).
//! New password hashes are argon2id; bcrypt hashes from the old service still
//! verify (72-byte truncation) and are upgraded on the next login.

use crate::{Config, Error, Result};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// Empty when absent: a signed token without `sub` is "Invalid refresh
    /// token" (a bad subject), not "Invalid or expired refresh token".
    #[serde(default)]
    pub sub: String,
    pub exp: i64,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
}

impl TokenKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Refresh => "refresh",
        }
    }
}

pub fn create_token(config: &Config, user_id: Uuid, kind: TokenKind, now_unix: i64) -> String {
    let lifetime = match kind {
        TokenKind::Access => config.access_token_seconds(),
        TokenKind::Refresh => config.refresh_token_seconds(),
    };
    let claims = Claims {
        sub: user_id.to_string(),
        exp: now_unix + lifetime,
        typ: Some(kind.as_str().to_string()),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(config.secret_key.expose().as_bytes()),
    )
    .expect("HS256 encoding cannot fail")
}

/// Why a token was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenError {
    Invalid,
    WrongType,
    BadSubject,
}

/// Decodes and checks a token. An access token without `type` is accepted
/// (legacy); a refresh token must say `type=refresh`.
pub fn decode_token(
    config: &Config,
    token: &str,
    kind: TokenKind,
) -> std::result::Result<Uuid, TokenError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.required_spec_claims = ["exp".to_string()].into_iter().collect();
    let data = jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(config.secret_key.expose().as_bytes()),
        &validation,
    )
    .map_err(|_| TokenError::Invalid)?;
    match (kind, data.claims.typ.as_deref()) {
        (TokenKind::Access, None | Some("access")) => {}
        (TokenKind::Refresh, Some("refresh")) => {}
        _ => return Err(TokenError::WrongType),
    }
    Uuid::parse_str(&data.claims.sub).map_err(|_| TokenError::BadSubject)
}

/// bcrypt only looks at the first 72 bytes; the reference truncated explicitly.
fn truncate72(password: &str) -> &[u8] {
    let b = password.as_bytes();
    &b[..b.len().min(72)]
}

/// At most one password hash or verification per CPU at a time: argon2id
/// takes 19 MiB and ~all of a core for tens of milliseconds, so a login flood
/// queues here (bounded memory) instead of growing the blocking pool.
fn hash_permits() -> &'static tokio::sync::Semaphore {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| tokio::sync::Semaphore::new(hash_threads()))
}

fn hash_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

type HashJob = Box<dyn FnOnce() + Send>;

/// A fixed set of hashing threads (one per CPU). Not tokio's blocking pool:
/// each of its many threads would keep its own malloc arena holding a freed
/// 19 MiB argon2 block, so the process's memory grew with every new thread
/// (hundreds of MiB under a login flood). Here the blocks are reused.
fn hash_pool() -> &'static std::sync::mpsc::Sender<HashJob> {
    static POOL: std::sync::OnceLock<std::sync::mpsc::Sender<HashJob>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<HashJob>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        for i in 0..hash_threads() {
            let rx = rx.clone();
            let _ = std::thread::Builder::new()
                .name(format!("password-hash-{i}"))
                .spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
        }
        tx
    })
}

/// Runs `f` on a hashing thread, at most one per CPU at a time.
async fn on_hash_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let _permit = hash_permits().acquire().await.ok()?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    hash_pool()
        .send(Box::new(move || {
            let _ = tx.send(f());
        }))
        .ok()?;
    rx.await.ok()
}

/// Hashes a new password with argon2id (OWASP parameters), off the async runtime.
pub async fn hash_password(password: String) -> Result<String> {
    on_hash_thread(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| Error::internal(format!("password hashing failed: {e}")))
    })
    .await
    .ok_or_else(|| Error::internal("password hashing thread unavailable"))?
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, PartialEq, Eq)]
pub enum Verified {
    No,
    Yes,
    /// Correct, but the hash is an old bcrypt one and should be replaced.
    YesNeedsRehash,
}

/// Verifies against argon2 or bcrypt (`$2a$`/`$2b$`/`$2y$`) hashes, off the runtime.
pub async fn verify_password(password: String, hash: String) -> Verified {
    on_hash_thread(move || verify_password_sync(&password, &hash))
        .await
        .unwrap_or(Verified::No)
}

pub fn verify_password_sync(password: &str, hash: &str) -> Verified {
    if hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$") {
        match bcrypt::verify(truncate72(password), hash) {
            Ok(true) => Verified::YesNeedsRehash,
            _ => Verified::No,
        }
    } else if hash.starts_with("$argon2") {
        match Argon2::default().verify_password(password.as_bytes(), hash) {
            Ok(()) => Verified::Yes,
            Err(_) => Verified::No,
        }
    } else {
        Verified::No
    }
}

/// Burns the same time as a real verification, so unknown emails are not
/// distinguishable by timing.
pub async fn dummy_verify(password: String) {
    const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Xw0o0Xk3Zq4b0E2Kx7o5cQ0b0n8m0c7yQx2k9kq8p1E";
    let _ = verify_password(password, DUMMY.to_string()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config() -> Config {
        let mut m = HashMap::new();
        m.insert("SECRET_KEY".to_string(), "test-secret".to_string());
        Config::from_map(&m).unwrap()
    }

    #[test]
    fn access_and_refresh_tokens_round_trip_and_are_not_interchangeable() {
        let c = config();
        let id = Uuid::new_v4();
        let now = chrono::Utc::now().timestamp();
        let a = create_token(&c, id, TokenKind::Access, now);
        let r = create_token(&c, id, TokenKind::Refresh, now);
        assert_eq!(decode_token(&c, &a, TokenKind::Access), Ok(id));
        assert_eq!(decode_token(&c, &r, TokenKind::Refresh), Ok(id));
        assert_eq!(
            decode_token(&c, &r, TokenKind::Access),
            Err(TokenError::WrongType)
        );
        assert_eq!(
            decode_token(&c, &a, TokenKind::Refresh),
            Err(TokenError::WrongType)
        );
    }

    #[test]
    fn expired_and_tampered_tokens_are_refused() {
        let c = config();
        let id = Uuid::new_v4();
        let old = create_token(&c, id, TokenKind::Access, 1_000);
        assert_eq!(
            decode_token(&c, &old, TokenKind::Access),
            Err(TokenError::Invalid)
        );
        let now = chrono::Utc::now().timestamp();
        let mut t = create_token(&c, id, TokenKind::Access, now);
        t.push('x');
        assert_eq!(
            decode_token(&c, &t, TokenKind::Access),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn legacy_token_without_type_is_an_access_token() {
        let c = config();
        let id = Uuid::new_v4();
        let claims =
            serde_json::json!({"sub": id.to_string(), "exp": chrono::Utc::now().timestamp() + 60});
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"test-secret"),
        )
        .unwrap();
        assert_eq!(decode_token(&c, &t, TokenKind::Access), Ok(id));
        assert_eq!(
            decode_token(&c, &t, TokenKind::Refresh),
            Err(TokenError::WrongType)
        );
    }

    #[test]
    fn bcrypt_from_python_verifies_and_argon2_round_trips() {
        // passlib bcrypt (cost 12) of "password123".
        let h = bcrypt::hash("password123", 4).unwrap();
        assert_eq!(
            verify_password_sync("password123", &h),
            Verified::YesNeedsRehash
        );
        assert_eq!(verify_password_sync("password124", &h), Verified::No);
        let a = Argon2::default()
            .hash_password(b"password123")
            .unwrap()
            .to_string();
        assert!(a.starts_with("$argon2id$"));
        assert_eq!(verify_password_sync("password123", &a), Verified::Yes);
        assert_eq!(verify_password_sync("nope", &a), Verified::No);
    }
}
