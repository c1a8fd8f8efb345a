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

// ---------------------------------------------------------------------------
// Limits configured by the platform settings (N5.1, N6.2)
// ---------------------------------------------------------------------------

/// A limit whose `max` comes from the settings: its windows are keyed by the
/// settings revision that configured them (`rate_limit:{action}:{revision}:{id}`),
/// so changing a limit starts new windows instead of judging the new limit
/// against counts gathered under the old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Configured {
    pub limit: Limit,
    pub revision: i64,
}

impl Configured {
    pub fn new(action: &'static str, max: i64, window_secs: u64, revision: i64) -> Self {
        Self {
            limit: Limit {
                action,
                max,
                window_secs,
            },
            revision,
        }
    }

    /// `{revision}:{id}`, the id part of [`key`].
    pub fn id(&self, id: &str) -> String {
        format!("{}:{}", self.revision, id)
    }
}

/// [`hit`] for a settings-configured limit (every hit counts).
pub async fn hit_configured(redis: &Redis, limit: &Configured, id: &str) -> Decision {
    hit(redis, &limit.limit, &limit.id(id)).await
}

/// One window of a [`hit_all_or_none`] call: `limit` checked for `id`, or
/// only counted when `check` is false.
#[derive(Debug, Clone)]
pub struct Window {
    pub limit: Limit,
    pub id: String,
    pub check: bool,
}

impl Window {
    pub fn checked(limit: Limit, id: impl Into<String>) -> Self {
        Self {
            limit,
            id: id.into(),
            check: true,
        }
    }
    pub fn counted(limit: Limit, id: impl Into<String>) -> Self {
        Self {
            limit,
            id: id.into(),
            check: false,
        }
    }
}

/// The outcome of [`hit_all_or_none`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllDecision {
    /// Every checked window had room; every window counted one hit.
    Allowed,
    /// The `index`-th window is full (the first in order); nothing counted.
    Limited { index: usize, retry_after: u64 },
    /// Redis did not answer: allowed without counting.
    Unknown,
}

/// KEYS: the windows; ARGV: `max, window_secs, check` per window.
const HIT_ALL_OR_NONE: &str = r#"
for i, k in ipairs(KEYS) do
  local max = tonumber(ARGV[3 * i - 2])
  local check = ARGV[3 * i] == "1"
  if check then
    local c = tonumber(redis.call("GET", k) or "0")
    if c >= max then
      local ttl = redis.call("TTL", k)
      return {i, ttl}
    end
  end
end
for i, k in ipairs(KEYS) do
  local c = redis.call("INCR", k)
  if c == 1 or redis.call("TTL", k) < 0 then
    redis.call("EXPIRE", k, tonumber(ARGV[3 * i - 1]))
  end
end
return {0, 0}
"#;

/// Checks the windows in order and, only when every checked one has room,
/// counts one hit in each (checked or not), atomically (one Lua script): a
/// refused request counts nowhere, and parallel requests cannot overshoot.
pub async fn hit_all_or_none(redis: &Redis, windows: &[Window]) -> AllDecision {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(HIT_ALL_OR_NONE).arg(windows.len());
    for w in windows {
        cmd.arg(redis.key(&key(&w.limit, &w.id)));
    }
    for w in windows {
        cmd.arg(w.limit.max)
            .arg(w.limit.window_secs)
            .arg(if w.check { "1" } else { "0" });
    }
    let mut conn = redis.conn();
    let result: redis::RedisResult<(i64, i64)> = cmd.query_async(&mut conn).await;
    match result {
        Ok((0, _)) => AllDecision::Allowed,
        Ok((i, ttl)) => {
            let index = (i - 1).max(0) as usize;
            let window = windows.get(index).map_or(1, |w| w.limit.window_secs);
            AllDecision::Limited {
                index,
                retry_after: if ttl > 0 { ttl as u64 } else { window },
            }
        }
        Err(e) => {
            tracing::warn!(
                error = %e,
                "rate limit check failed (Redis unavailable); allowing the request"
            );
            AllDecision::Unknown
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
        let c = Configured::new("register_ip", 5, 3600, 7);
        assert_eq!(
            key(&c.limit, &c.id("1.2.3.4")),
            "rate_limit:register_ip:7:1.2.3.4"
        );
    }
}
