//! Fixed-window rate limits in Redis, shared by every API replica (API.md §1.8).
//!
//! Each limit is a counter under `rate_limit:{action}:{id}` (inside the
//! deployment's namespace). The window starts at the first hit: the key is
//! created with the window as its TTL and every hit increments it. When Redis
//! cannot answer, the request is allowed (fail-open) and a warning is logged.

use crate::redis::Redis;

/// One kind of limit: at most `max` hits per `window_secs` per id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub action: &'static str,
    pub max: i64,
    pub window_secs: u64,
}

/// Password login, per normalised email.
pub const LOGIN: Limit = Limit {
    action: "login",
    max: 5,
    window_secs: 300,
};
/// Password login, per client address.
pub const LOGIN_IP: Limit = Limit {
    action: "login_ip",
    max: 20,
    window_secs: 300,
};
/// Forgot-password, per normalised email.
pub const FORGOT_PASSWORD: Limit = Limit {
    action: "forgot_password",
    max: 5,
    window_secs: 300,
};
/// Forgot-password, per client address.
pub const FORGOT_PASSWORD_IP: Limit = Limit {
    action: "forgot_password_ip",
    max: 10,
    window_secs: 300,
};

/// The outcome of one hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Within the limit; `remaining` more hits fit in the window.
    Allowed { remaining: i64 },
    /// Over the limit; the window ends in `retry_after` seconds.
    Limited { retry_after: u64 },
    /// Redis did not answer: allowed without counting.
    Unknown,
}

impl Decision {
    pub fn is_limited(&self) -> bool {
        matches!(self, Self::Limited { .. })
    }
}

/// The Redis key of a limit, without the namespace.
pub fn key(limit: &Limit, id: &str) -> String {
    format!("rate_limit:{}:{}", limit.action, id)
}

/// Counts one hit against `limit` for `id` (every hit counts, allowed or not).
pub async fn hit(redis: &Redis, limit: &Limit, id: &str) -> Decision {
    let key = redis.key(&key(limit, id));
    let mut conn = redis.conn();
    // Atomic: create the counter with the window as TTL if it is new, count the
    // hit, read the time left.
    let result: redis::RedisResult<(i64, i64)> = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg(&key)
        .arg(0)
        .arg("EX")
        .arg(limit.window_secs)
        .arg("NX")
        .ignore()
        .cmd("INCR")
        .arg(&key)
        .cmd("TTL")
        .arg(&key)
        .query_async(&mut conn)
        .await;
    match result {
        Ok((count, ttl)) => {
            if ttl < 0 {
                // A key without expiry must never block forever.
                let _: redis::RedisResult<()> = redis::cmd("EXPIRE")
                    .arg(&key)
                    .arg(limit.window_secs)
                    .query_async(&mut conn)
                    .await;
            }
            if count > limit.max {
                let retry_after = if ttl > 0 {
                    ttl as u64
                } else {
                    limit.window_secs
                };
                Decision::Limited { retry_after }
            } else {
                Decision::Allowed {
                    remaining: limit.max - count,
                }
            }
        }
        Err(e) => {
            tracing::warn!(
                action = limit.action,
                error = %e,
                "rate limit check failed (Redis unavailable); allowing the request"
            );
            Decision::Unknown
        }
    }
}

/// Forgets the counter of `limit` for `id` (e.g. in tests or after an admin unlock).
pub async fn reset(redis: &Redis, limit: &Limit, id: &str) {
    let key = redis.key(&key(limit, id));
    let mut conn = redis.conn();
    let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&key).query_async(&mut conn).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_contract() {
        assert_eq!(key(&LOGIN, "a@b.co"), "rate_limit:login:a@b.co");
        assert_eq!(key(&LOGIN_IP, "1.2.3.4"), "rate_limit:login_ip:1.2.3.4");
        assert_eq!(
            key(&FORGOT_PASSWORD_IP, "::1"),
            "rate_limit:forgot_password_ip:::1"
        );
    }
}
