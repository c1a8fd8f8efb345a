//! Tokens and passwords.
//!
//! JWTs keep the reference's claim set (`sub`, `exp`, `type`), so tokens
//! minted by the Python service stay valid when `SECRET_KEY` is shared (§1.2).
//! Tokens minted here also carry `iat_us`, the instant of issue in
//! microseconds (not the registered `iat`, which the old service never sent
//! and which its libraries would validate): it lets "sign out everywhere"
//! (`users.tokens_valid_after`) refuse every token issued before it, even one
//! issued in the same second, while the fresh token of a password change lives.
//! A token without `iat_us` (the old service's, or minted before this change)
//! stays valid until it expires unless its user has revoked tokens.
//! New password hashes are argon2id; bcrypt hashes from the old service still
//! verify (72-byte truncation) and are upgraded on the next login.

use crate::{Config, Error, Result};
use argon2::Argon2;
use chrono::{DateTime, Utc};
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
    /// When the token was issued, in microseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat_us: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
    /// A short-lived admin token for Mux direct uploads (N5.5), accepted only
    /// as `?token=` on `POST /api/mux/upload-url`; every other door refuses
    /// it because it is not an access token.
    Upload,
}

impl TokenKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Refresh => "refresh",
            Self::Upload => "upload",
        }
    }
}

/// The lifetime of an upload token (N5.5), in seconds.
pub const UPLOAD_TOKEN_SECONDS: i64 = 300;

/// A token issued at the start of the second `now_unix`.
pub fn create_token(config: &Config, user_id: Uuid, kind: TokenKind, now_unix: i64) -> String {
    create_token_at(
        config,
        user_id,
        kind,
        DateTime::from_timestamp(now_unix, 0).unwrap_or_default(),
    )
}

/// A token issued at `now` (to the microsecond, see [`Claims::iat_us`]).
pub fn create_token_at(
    config: &Config,
    user_id: Uuid,
    kind: TokenKind,
    now: DateTime<Utc>,
) -> String {
    let lifetime = match kind {
        TokenKind::Access => config.access_token_seconds(),
        TokenKind::Refresh => config.refresh_token_seconds(),
        TokenKind::Upload => UPLOAD_TOKEN_SECONDS,
    };
    let claims = Claims {
        sub: user_id.to_string(),
        exp: now.timestamp() + lifetime,
        typ: Some(kind.as_str().to_string()),
        iat_us: Some(now.timestamp_micros()),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(config.secret_key.expose().as_bytes()),
    )
    .expect("HS256 encoding cannot fail")
}

/// An access and a refresh token for one user.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
}

/// Tokens issued at `now` (a password change issues them at the instant of
/// its revocation, so they outlive it).
pub fn issue_tokens_at(config: &Config, user_id: Uuid, now: DateTime<Utc>) -> Tokens {
    Tokens {
        access: create_token_at(config, user_id, TokenKind::Access, now),
        refresh: create_token_at(config, user_id, TokenKind::Refresh, now),
    }
}

/// Signs any claim set as an HS256 JWT with `SECRET_KEY`.
pub fn sign_jwt(config: &Config, claims: &impl Serialize) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(config.secret_key.expose().as_bytes()),
    )
    .expect("HS256 encoding of a serializable claim set cannot fail")
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
    decode(config, token, kind).map(|d| d.user_id)
}

/// What a valid token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    pub user_id: Uuid,
    /// `iat_us`, absent on tokens of the old service.
    pub issued_us: Option<i64>,
}

impl Decoded {
    /// Whether the token survives its user's revocations: none yet, or it was
    /// issued at or after the last one. A token without `iat_us` dies with the
    /// first revocation (its age is unknown).
    pub fn is_current(&self, tokens_valid_after: Option<DateTime<Utc>>) -> bool {
        match (tokens_valid_after, self.issued_us) {
            (None, _) => true,
            (Some(after), Some(issued)) => issued >= after.timestamp_micros(),
            (Some(_), None) => false,
        }
    }
}

/// [`decode_token`] with the instant of issue.
pub fn decode(
    config: &Config,
    token: &str,
    kind: TokenKind,
) -> std::result::Result<Decoded, TokenError> {
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
        (TokenKind::Upload, Some("upload")) => {}
        _ => return Err(TokenError::WrongType),
    }
    let user_id = Uuid::parse_str(&data.claims.sub).map_err(|_| TokenError::BadSubject)?;
    Ok(Decoded {
        user_id,
        issued_us: data.claims.iat_us,
    })
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
    on_hash_thread(move || hash_password_sync(&password))
        .await
        .ok_or_else(|| Error::internal("password hashing thread unavailable"))?
}

/// The largest argon2 memory (in 1 KiB blocks) a hashing thread keeps for
/// reuse; a stored hash asking for more is verified with a one-off allocation.
const MAX_REUSED_BLOCKS: usize = 64 * 1024;

thread_local! {
    /// This thread's argon2 memory, reused by every hash it computes: a login
    /// flood costs one 19 MiB block per hashing thread, not one malloc'ed (and
    /// then kept by the allocator) per login (issue 10).
    static ARGON2_BLOCKS: std::cell::RefCell<Vec<argon2::Block>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// `argon2(password, salt)` into `out`, in this thread's reused memory.
fn argon2_into(ctx: &Argon2, password: &[u8], salt: &[u8], out: &mut [u8]) -> Option<()> {
    let p = ctx.params();
    let needed = (p.m_cost() as usize).max(8 * p.p_cost() as usize);
    if needed > MAX_REUSED_BLOCKS {
        return ctx.hash_password_into(password, salt, out).ok();
    }
    ARGON2_BLOCKS.with_borrow_mut(|blocks| {
        if blocks.len() < needed {
            blocks.resize_with(needed, argon2::Block::default);
        }
        ctx.hash_password_into_with_memory(password, salt, out, &mut blocks[..needed])
            .ok()
    })
}

/// A new argon2id PHC string with the crate's default (OWASP) parameters.
pub fn hash_password_sync(password: &str) -> Result<String> {
    use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
    let fail = |e: &dyn std::fmt::Display| Error::internal(format!("password hashing failed: {e}"));
    let params = argon2::Params::default();
    let salt_bytes: [u8; argon2::RECOMMENDED_SALT_LEN] = rand::random();
    let mut out = [0u8; argon2::Params::DEFAULT_OUTPUT_LEN];
    let ctx = Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        params.clone(),
    );
    argon2_into(&ctx, password.as_bytes(), &salt_bytes, &mut out).ok_or_else(|| fail(&"argon2"))?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(argon2::Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| fail(&e))?,
        salt: Some(Salt::new(&salt_bytes).map_err(|e| fail(&e))?),
        hash: Some(Output::new(&out).map_err(|e| fail(&e))?),
    };
    Ok(phc.to_string())
}

/// Checks `password` against an argon2 PHC string, in reused memory.
fn verify_argon2(password: &[u8], hash: &str) -> bool {
    let Ok(parsed) = argon2::PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(version), Ok(params)) = (
        argon2::Algorithm::try_from(parsed.algorithm.as_str()),
        argon2::Version::try_from(parsed.version.unwrap_or(0x13)),
        argon2::Params::try_from(&parsed),
    ) else {
        return false;
    };
    let ctx = Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.len()];
    if argon2_into(&ctx, password, &salt, &mut out).is_none() {
        return false;
    }
    // Constant time over the output.
    out.iter()
        .zip(expected.as_bytes())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
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
        if verify_argon2(password.as_bytes(), hash) {
            Verified::Yes
        } else {
            Verified::No
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
    fn upload_tokens_are_only_upload_tokens() {
        let c = config();
        let id = Uuid::new_v4();
        let now = chrono::Utc::now();
        let u = create_token_at(&c, id, TokenKind::Upload, now);
        let d = decode(&c, &u, TokenKind::Upload).unwrap();
        assert_eq!(d.user_id, id);
        assert_eq!(d.issued_us, Some(now.timestamp_micros()));
        for kind in [TokenKind::Access, TokenKind::Refresh] {
            assert_eq!(decode_token(&c, &u, kind), Err(TokenError::WrongType));
        }
        let a = create_token_at(&c, id, TokenKind::Access, now);
        assert_eq!(
            decode_token(&c, &a, TokenKind::Upload),
            Err(TokenError::WrongType)
        );
        // {sub, exp, type: "upload"}, five minutes.
        let claims: serde_json::Value = {
            use base64::Engine;
            let part = u.split('.').nth(1).unwrap();
            serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(part)
                    .unwrap(),
            )
            .unwrap()
        };
        assert_eq!(claims["sub"], id.to_string());
        assert_eq!(claims["type"], "upload");
        assert_eq!(claims["exp"], now.timestamp() + UPLOAD_TOKEN_SECONDS);
        let old = create_token_at(
            &c,
            id,
            TokenKind::Upload,
            now - chrono::Duration::seconds(UPLOAD_TOKEN_SECONDS + 1),
        );
        assert_eq!(
            decode_token(&c, &old, TokenKind::Upload),
            Err(TokenError::Invalid)
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
    fn revocation_compares_the_microsecond_of_issue() {
        let c = config();
        let id = Uuid::new_v4();
        let now = chrono::Utc::now();
        let t = create_token_at(&c, id, TokenKind::Access, now);
        let d = decode(&c, &t, TokenKind::Access).unwrap();
        assert_eq!(d.issued_us, Some(now.timestamp_micros()));
        assert!(d.is_current(None));
        // Revoked at the very instant of issue: a fresh token lives.
        assert!(d.is_current(Some(now)));
        // Revoked a microsecond later (same second): it dies.
        assert!(!d.is_current(Some(now + chrono::Duration::microseconds(1))));
        // The old service's tokens (no iat_us) live until the first revocation.
        let legacy = Decoded {
            user_id: id,
            issued_us: None,
        };
        assert!(legacy.is_current(None));
        assert!(!legacy.is_current(Some(now - chrono::Duration::days(30))));
    }

    #[test]
    fn bcrypt_from_python_verifies_and_argon2_round_trips() {
        use argon2::PasswordHasher;
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

    #[test]
    fn hashes_in_reused_memory_match_the_argon2_crate() {
        use argon2::{PasswordHasher, PasswordVerifier};
        // Ours verifies with the crate's verifier, and the other way round,
        // twice on the same thread (the memory is reused, not re-zeroed).
        let ours = hash_password_sync("s3cret pass").unwrap();
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        Argon2::default()
            .verify_password(b"s3cret pass", ours.as_str())
            .unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"s3cret pasS", ours.as_str())
                .is_err()
        );
        let theirs = Argon2::default()
            .hash_password(b"another one")
            .unwrap()
            .to_string();
        for _ in 0..2 {
            assert_eq!(verify_password_sync("another one", &theirs), Verified::Yes);
            assert_eq!(verify_password_sync("another on", &theirs), Verified::No);
            assert_eq!(verify_password_sync("s3cret pass", &ours), Verified::Yes);
        }
        // Two hashes of one password differ (fresh salt).
        assert_ne!(ours, hash_password_sync("s3cret pass").unwrap());
        // Garbage and truncated hashes are a plain "no".
        assert_eq!(
            verify_password_sync("x", "$argon2id$v=19$m=19456"),
            Verified::No
        );
        assert_eq!(
            verify_password_sync("x", &ours[..ours.len() - 5]),
            Verified::No
        );
    }
}
