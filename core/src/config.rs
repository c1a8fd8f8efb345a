//! Configuration read from the environment (and a `.env` file when present).
//!
//! Every variable of API.md §1.7 is here, plus `REDIS_URL`, base URLs for each
//! external service (so tests can point them at local fakes) and
//! `TRUSTED_PROXIES`. Secrets are wrapped in [`Secret`], whose `Debug` prints
//! `"***"`, so a logged `Config` never leaks them.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

/// The database every command uses when `DATABASE_URL` is not set: the local
/// PostgreSQL's default superuser and the database `mambo dev` creates, so
/// `mambo seed`, `mambo broadcast`, ... work right after `dev` on a fresh
/// machine.
pub const DEFAULT_DATABASE_URL: &str = "postgresql://postgres@localhost:5432/mambo_dev";

/// When the worker's daily maintenance runs: 00:05:00 UTC (cron, seconds first).
pub const DEFAULT_DAILY_MAINTENANCE_SCHEDULE: &str = "0 5 0 * * *";
/// When the worker reconciles Mux uploads whose webhook never came: every 5 minutes.
pub const DEFAULT_MUX_RECONCILE_SCHEDULE: &str = "0 */5 * * * *";
/// When the worker emails the notification digests: 17:00:00 UTC every day for
/// daily users; the tick that falls on a Monday also sends the weekly ones.
pub const DEFAULT_NOTIFICATION_DIGEST_SCHEDULE: &str = "0 0 17 * * *";
/// When the worker rebuilds the community leaderboards: every minute (N5.4:
/// boards lag activity by at most 60 s).
pub const DEFAULT_LEADERBOARD_SCHEDULE: &str = "0 * * * * *";

/// A string that must never reach logs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// Why the configuration could not be built. One line, printed at startup.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "SECRET_KEY must be set when ENVIRONMENT is not 'development' (it signs every login token)"
    )]
    MissingSecretKey,
    #[error("invalid value for {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
    Other(String),
}

impl Environment {
    fn parse(s: &str) -> Self {
        match s.trim().to_ascii_lowercase().as_str() {
            "development" | "dev" | "" => Self::Development,
            "production" | "prod" => Self::Production,
            other => Self::Other(other.to_string()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct MuxConfig {
    pub token_id: String,
    pub token_secret: Secret,
}

#[derive(Clone, Debug)]
pub struct R2Config {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub endpoint_url: String,
    pub bucket: String,
    pub public_domain: Option<String>,
}

#[derive(Clone, Debug)]
pub struct GoogleConfig {
    pub client_id: String,
    pub client_secret: Secret,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub environment: Environment,
    pub host: String,
    pub port: u16,
    pub database_url: Secret,
    pub redis_url: Secret,
    /// Prefix for every Redis key and queue name of this deployment (tests use one per test).
    pub redis_namespace: String,
    pub secret_key: Secret,
    pub access_token_expire_minutes: i64,
    pub refresh_token_expire_days: i64,
    pub cors_origins: Vec<String>,
    pub secure_cookies: bool,
    pub cookie_domain: Option<String>,
    pub frontend_url: String,
    pub backend_url: String,
    pub mux: Option<MuxConfig>,
    pub mux_webhook_secret: Option<Secret>,
    pub r2: Option<R2Config>,
    pub google: Option<GoogleConfig>,
    pub resend_api_key: Option<Secret>,
    pub from_email: String,
    pub password_reset_expire_minutes: i64,
    pub allow_account_claim: bool,
    pub stripe_secret_key: Option<Secret>,
    pub stripe_webhook_secret: Option<Secret>,
    pub advanced_price_id: String,
    pub performer_price_id: String,
    /// Free-trial length offered at checkout to eligible users (`TRIAL_DAYS`, 0 = no trials).
    pub trial_days: i64,
    /// Days a `past_due` subscription keeps access after its first failed payment.
    pub payment_grace_days: i64,
    pub gemini_api_key: Option<Secret>,
    pub ai_rate_limit_requests: i64,
    pub ai_rate_limit_window_seconds: i64,
    pub ai_persona: String,
    /// Overrides the concierge's system prompt (`AI_SYSTEM_PROMPT`; `{persona}` is replaced by the name).
    pub ai_system_prompt: Option<String>,
    pub trusted_proxies: Vec<IpAddr>,
    pub max_body_bytes: usize,
    // Base URLs of external services, overridable for tests.
    pub mux_base_url: String,
    pub stripe_base_url: String,
    pub resend_base_url: String,
    pub google_auth_url: String,
    pub google_token_url: String,
    pub google_userinfo_url: String,
    pub gemini_base_url: String,
    pub mux_stream_base_url: String,
    /// Economy amounts overridden from `ECONOMY_<NAME>` variables (see `economy`).
    pub economy_overrides: HashMap<String, i64>,
    /// Seconds between a worker's heartbeats in Redis (`WORKER_HEARTBEAT_SECONDS`, 10).
    pub worker_heartbeat_seconds: u64,
    /// Connections in each process's PostgreSQL pool (`DATABASE_POOL_SIZE`, 20).
    pub database_pool_size: u32,
    /// Distinct users with an open report on a post or reply that hide it
    /// until an admin decides (`REPORTS_TO_HIDE`, 3; N4.4).
    pub reports_to_hide: i64,
    /// Heartbeats a worker may miss before it counts as dead and its in-flight
    /// jobs are queued again for the live workers (`WORKER_MISSED_HEARTBEATS`, 6:
    /// a killed worker's jobs run again within about a minute).
    pub worker_missed_heartbeats: u64,
    /// Cron schedule (seconds first) of the daily maintenance job
    /// (`DAILY_MAINTENANCE_SCHEDULE`, `0 5 0 * * *`).
    pub daily_maintenance_schedule: String,
    /// Cron schedule of the Mux reconciliation (`MUX_RECONCILE_SCHEDULE`, every 5 minutes).
    pub mux_reconcile_schedule: String,
    /// Cron schedule of the notification email digest
    /// (`NOTIFICATION_DIGEST_SCHEDULE`, `0 0 17 * * *`): daily users on every
    /// tick, weekly users on the ticks that fall on a Monday (UTC).
    pub notification_digest_schedule: String,
    /// Cron schedule of the community leaderboard rebuild
    /// (`LEADERBOARD_SCHEDULE`, `0 * * * * *`: every minute; N5.4).
    pub leaderboard_schedule: String,
    /// Seconds a job that completed stays in Redis (its status, payload and
    /// result) before the worker prunes it (`JOB_RETENTION_DONE_SECS`, one day).
    pub job_retention_done_secs: u64,
    /// Seconds a job that failed for good stays in Redis, to be inspected
    /// (`JOB_RETENTION_FAILED_SECS`, seven days).
    pub job_retention_failed_secs: u64,
    /// Seconds between the heartbeat comments of the notification streams
    /// (`NOTIFICATIONS_HEARTBEAT_SECONDS`, 15).
    pub notifications_heartbeat_seconds: u64,
    /// Seconds an API process keeps a caller's row between requests
    /// (`CALLER_CACHE_SECONDS`, 10; 0 turns the cache off). Changes reach it
    /// at once through the database (see `callers`).
    pub caller_cache_seconds: u64,
    /// The actions an unverified (non-admin) user may not take
    /// (`REQUIRE_VERIFIED_FOR`, comma list, default `post,reply,trial`; lower
    /// case, blanks dropped). See `verification::ensure_verified_for`.
    pub require_verified_for: Vec<String>,
    /// The bucket data exports are written to (`EXPORT_BUCKET`; the R2 bucket,
    /// `AWS_BUCKET_NAME`, when unset). Exports are private: only presigned
    /// links read them.
    pub export_bucket: Option<String>,
    /// The key prefix of data exports (`EXPORT_PREFIX`, `exports`): objects are
    /// `{prefix}/{user_id}/{export_id}.zip`.
    pub export_prefix: String,
    /// How long a data export (and its download link) lives
    /// (`EXPORT_LINK_SECONDS`, 86,400 = 24 h). The same span is the minimum
    /// time between two exports of one user.
    pub export_link_seconds: u64,
}

impl Config {
    /// Reads `.env` (if present) and then the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        let vars: HashMap<String, String> = std::env::vars().collect();
        Self::from_map(&vars)
    }

    /// Builds the configuration from a map of variables (tests use this directly).
    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let get = |k: &str| -> Option<String> {
            vars.get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let environment = Environment::parse(&get("ENVIRONMENT").unwrap_or_default());
        let is_dev = environment == Environment::Development;
        let is_prod = environment == Environment::Production;

        let secret_key = match get("SECRET_KEY") {
            Some(k) => Secret::new(k),
            None if is_dev => Secret::new(random_hex(32)),
            None => return Err(ConfigError::MissingSecretKey),
        };

        let parse_i64 = |name: &'static str, default: i64| -> Result<i64, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(v) => v.parse::<i64>().map_err(|e| ConfigError::Invalid {
                    name,
                    reason: format!("{v:?} is not an integer ({e})"),
                }),
            }
        };
        let positive = |name: &'static str, default: i64| -> Result<u64, ConfigError> {
            match parse_i64(name, default)? {
                n if n > 0 => Ok(n as u64),
                n => Err(ConfigError::Invalid {
                    name,
                    reason: format!("{n} is not a positive integer"),
                }),
            }
        };
        let non_negative = |name: &'static str, default: i64| -> Result<u64, ConfigError> {
            match parse_i64(name, default)? {
                n if n >= 0 => Ok(n as u64),
                n => Err(ConfigError::Invalid {
                    name,
                    reason: format!("{n} is negative"),
                }),
            }
        };
        let parse_bool = |name: &'static str, default: bool| -> Result<bool, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(v) => match v.to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" => Ok(true),
                    "0" | "false" | "no" | "off" => Ok(false),
                    _ => Err(ConfigError::Invalid {
                        name,
                        reason: format!("{v:?} is not a boolean"),
                    }),
                },
            }
        };

        // §1.2: default 30 minutes; JWT_EXPIRATION_DAYS is the fallback when the minutes are unset.
        let access_token_expire_minutes = match get("ACCESS_TOKEN_EXPIRE_MINUTES") {
            Some(_) => parse_i64("ACCESS_TOKEN_EXPIRE_MINUTES", 30)?,
            None => match get("JWT_EXPIRATION_DAYS") {
                Some(_) => parse_i64("JWT_EXPIRATION_DAYS", 0)? * 1440,
                None => 30,
            },
        };
        if access_token_expire_minutes <= 0 {
            return Err(ConfigError::Invalid {
                name: "ACCESS_TOKEN_EXPIRE_MINUTES",
                reason: "must be positive".into(),
            });
        }

        let redis_url = match get("REDIS_URL") {
            Some(u) => u,
            None => format!(
                "redis://{}:{}",
                get("REDIS_HOST").unwrap_or_else(|| "localhost".into()),
                get("REDIS_PORT").unwrap_or_else(|| "6379".into())
            ),
        };

        let port = match get("PORT") {
            None => 8000,
            Some(p) => p.parse::<u16>().map_err(|e| ConfigError::Invalid {
                name: "PORT",
                reason: e.to_string(),
            })?,
        };

        let mut trusted_proxies = Vec::new();
        for p in get("TRUSTED_PROXIES")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            trusted_proxies.push(p.parse::<IpAddr>().map_err(|e| ConfigError::Invalid {
                name: "TRUSTED_PROXIES",
                reason: format!("{p:?}: {e}"),
            })?);
        }

        let mux = match (get("MUX_TOKEN_ID"), get("MUX_TOKEN_SECRET")) {
            (Some(id), Some(secret)) => Some(MuxConfig {
                token_id: id,
                token_secret: Secret::new(secret),
            }),
            _ => None,
        };
        let r2 = match (
            get("AWS_ACCESS_KEY_ID"),
            get("AWS_SECRET_ACCESS_KEY"),
            get("AWS_ENDPOINT_URL"),
            get("AWS_BUCKET_NAME"),
        ) {
            (Some(k), Some(s), Some(e), Some(b)) => Some(R2Config {
                access_key_id: k,
                secret_access_key: Secret::new(s),
                endpoint_url: e.trim_end_matches('/').to_string(),
                bucket: b,
                public_domain: get("R2_PUBLIC_DOMAIN").map(|d| d.trim_end_matches('/').to_string()),
            }),
            _ => None,
        };
        let google = match (get("GOOGLE_CLIENT_ID"), get("GOOGLE_CLIENT_SECRET")) {
            (Some(id), Some(s)) => Some(GoogleConfig {
                client_id: id,
                client_secret: Secret::new(s),
            }),
            _ => None,
        };

        let economy_overrides = vars
            .iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix("ECONOMY_")?;
                Some((name.to_ascii_lowercase(), v.trim().parse::<i64>().ok()?))
            })
            .collect();

        Ok(Self {
            host: get("HOST").unwrap_or_else(|| "0.0.0.0".into()),
            port,
            database_url: Secret::new(
                get("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.into()),
            ),
            redis_url: Secret::new(redis_url),
            redis_namespace: get("REDIS_NAMESPACE").unwrap_or_else(|| "mambo".into()),
            secret_key,
            access_token_expire_minutes,
            refresh_token_expire_days: parse_i64("REFRESH_TOKEN_EXPIRE_DAYS", 7)?,
            cors_origins: get("CORS_ORIGINS")
                .unwrap_or_else(|| "http://localhost:3000,http://localhost:8000".into())
                .split(',')
                .map(|s| s.trim().trim_end_matches('/').to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            secure_cookies: parse_bool("SECURE_COOKIES", is_prod)?,
            cookie_domain: get("COOKIE_DOMAIN"),
            frontend_url: get("FRONTEND_URL")
                .unwrap_or_else(|| "http://localhost:3000".into())
                .trim_end_matches('/')
                .to_string(),
            backend_url: get("BACKEND_URL")
                .unwrap_or_else(|| "http://localhost:8000".into())
                .trim_end_matches('/')
                .to_string(),
            mux,
            mux_webhook_secret: get("MUX_WEBHOOK_SECRET").map(Secret::new),
            r2,
            google,
            resend_api_key: get("RESEND_API_KEY").map(Secret::new),
            from_email: get("FROM_EMAIL").unwrap_or_else(|| "onboarding@resend.dev".into()),
            password_reset_expire_minutes: parse_i64("PASSWORD_RESET_EXPIRE_MINUTES", 60)?,
            allow_account_claim: parse_bool("ALLOW_ACCOUNT_CLAIM", false)?,
            stripe_secret_key: get("STRIPE_SECRET_KEY").map(Secret::new),
            stripe_webhook_secret: get("STRIPE_WEBHOOK_SECRET").map(Secret::new),
            advanced_price_id: get("ADVANCED_PRICE_ID")
                .unwrap_or_else(|| "price_1SmeXA1a6FlufVwfOLg5SMcc".into()),
            performer_price_id: get("PERFORMER_PRICE_ID")
                .unwrap_or_else(|| "price_1SmeZa1a6FlufVwfrJCJrv94".into()),
            trial_days: parse_i64("TRIAL_DAYS", 7)?.clamp(0, 730),
            payment_grace_days: parse_i64("PAYMENT_GRACE_DAYS", 3)?.clamp(0, 365),
            gemini_api_key: get("GEMINI_API_KEY").map(Secret::new),
            ai_rate_limit_requests: parse_i64("AI_RATE_LIMIT_REQUESTS", 20)?,
            ai_rate_limit_window_seconds: parse_i64("AI_RATE_LIMIT_WINDOW_SECONDS", 60)?,
            ai_persona: get("AI_PERSONA").unwrap_or_else(|| "Tito P".into()),
            ai_system_prompt: get("AI_SYSTEM_PROMPT"),
            trusted_proxies,
            max_body_bytes: parse_i64("MAX_BODY_BYTES", 2 * 1024 * 1024)? as usize,
            mux_base_url: base(get("MUX_BASE_URL"), "https://api.mux.com"),
            stripe_base_url: base(get("STRIPE_BASE_URL"), "https://api.stripe.com"),
            resend_base_url: base(get("RESEND_BASE_URL"), "https://api.resend.com"),
            google_auth_url: get("GOOGLE_AUTH_URL")
                .unwrap_or_else(|| "https://accounts.google.com/o/oauth2/v2/auth".into()),
            google_token_url: get("GOOGLE_TOKEN_URL")
                .unwrap_or_else(|| "https://oauth2.googleapis.com/token".into()),
            google_userinfo_url: get("GOOGLE_USERINFO_URL")
                .unwrap_or_else(|| "https://www.googleapis.com/oauth2/v2/userinfo".into()),
            gemini_base_url: base(
                get("GEMINI_BASE_URL"),
                "https://generativelanguage.googleapis.com",
            ),
            mux_stream_base_url: base(get("MUX_STREAM_BASE_URL"), "https://stream.mux.com"),
            economy_overrides,
            worker_heartbeat_seconds: positive("WORKER_HEARTBEAT_SECONDS", 10)?,
            database_pool_size: positive("DATABASE_POOL_SIZE", 20)?.min(1000) as u32,
            reports_to_hide: positive("REPORTS_TO_HIDE", 3)? as i64,
            worker_missed_heartbeats: positive("WORKER_MISSED_HEARTBEATS", 6)?,
            daily_maintenance_schedule: get("DAILY_MAINTENANCE_SCHEDULE")
                .unwrap_or_else(|| DEFAULT_DAILY_MAINTENANCE_SCHEDULE.into()),
            mux_reconcile_schedule: get("MUX_RECONCILE_SCHEDULE")
                .unwrap_or_else(|| DEFAULT_MUX_RECONCILE_SCHEDULE.into()),
            notification_digest_schedule: get("NOTIFICATION_DIGEST_SCHEDULE")
                .unwrap_or_else(|| DEFAULT_NOTIFICATION_DIGEST_SCHEDULE.into()),
            leaderboard_schedule: get("LEADERBOARD_SCHEDULE")
                .unwrap_or_else(|| DEFAULT_LEADERBOARD_SCHEDULE.into()),
            job_retention_done_secs: non_negative("JOB_RETENTION_DONE_SECS", 86_400)?,
            job_retention_failed_secs: non_negative("JOB_RETENTION_FAILED_SECS", 7 * 86_400)?,
            notifications_heartbeat_seconds: positive("NOTIFICATIONS_HEARTBEAT_SECONDS", 15)?,
            caller_cache_seconds: non_negative("CALLER_CACHE_SECONDS", 10)?.min(3_600),
            // Set but empty (`REQUIRE_VERIFIED_FOR=`) means no gate at all.
            require_verified_for: vars
                .get("REQUIRE_VERIFIED_FOR")
                .map(String::as_str)
                .unwrap_or("post,reply,trial")
                .split(',')
                .map(|a| a.trim().to_ascii_lowercase())
                .filter(|a| !a.is_empty())
                .collect(),
            export_bucket: get("EXPORT_BUCKET"),
            export_prefix: get("EXPORT_PREFIX")
                .map(|p| p.trim_matches('/').to_string())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "exports".into()),
            // At most 7 days: the longest a SigV4 presigned URL may live.
            export_link_seconds: positive("EXPORT_LINK_SECONDS", 86_400)?.min(7 * 86_400),
            environment,
        })
    }

    pub fn is_development(&self) -> bool {
        self.environment == Environment::Development
    }

    pub fn is_production(&self) -> bool {
        self.environment == Environment::Production
    }

    /// Docs (`/docs`, `/redoc`) are hidden in production (§1.1).
    pub fn docs_enabled(&self) -> bool {
        !self.is_production()
    }

    pub fn access_token_seconds(&self) -> i64 {
        self.access_token_expire_minutes * 60
    }

    pub fn refresh_token_seconds(&self) -> i64 {
        self.refresh_token_expire_days * 86_400
    }
}

fn base(v: Option<String>, default: &str) -> String {
    v.unwrap_or_else(|| default.to_string())
        .trim_end_matches('/')
        .to_string()
}

pub fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn production_without_secret_key_is_refused() {
        let err = Config::from_map(&map(&[("ENVIRONMENT", "production")])).unwrap_err();
        assert!(matches!(err, ConfigError::MissingSecretKey));
        assert!(!err.to_string().contains('\n'));
    }

    #[test]
    fn development_gets_a_random_secret() {
        let a = Config::from_map(&map(&[])).unwrap();
        let b = Config::from_map(&map(&[])).unwrap();
        assert_ne!(a.secret_key.expose(), b.secret_key.expose());
        assert_eq!(a.access_token_expire_minutes, 30);
    }

    #[test]
    fn jwt_expiration_days_is_the_fallback() {
        let c = Config::from_map(&map(&[("JWT_EXPIRATION_DAYS", "7")])).unwrap();
        assert_eq!(c.access_token_expire_minutes, 7 * 1440);
        let c = Config::from_map(&map(&[
            ("JWT_EXPIRATION_DAYS", "7"),
            ("ACCESS_TOKEN_EXPIRE_MINUTES", "15"),
        ]))
        .unwrap();
        assert_eq!(c.access_token_expire_minutes, 15);
    }

    #[test]
    fn debug_redacts_secrets() {
        let c = Config::from_map(&map(&[
            ("SECRET_KEY", "super-secret-value"),
            ("STRIPE_SECRET_KEY", "sk_live_zzz"),
            ("DATABASE_URL", "postgres://u:hunter2@h/db"),
        ]))
        .unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("super-secret-value"));
        assert!(!dbg.contains("sk_live_zzz"));
        assert!(!dbg.contains("hunter2"));
    }

    #[test]
    fn worker_settings_have_defaults_and_must_be_positive() {
        let c = Config::from_map(&map(&[])).unwrap();
        assert_eq!(
            (c.worker_heartbeat_seconds, c.worker_missed_heartbeats),
            (10, 6)
        );
        assert_eq!(
            c.daily_maintenance_schedule,
            DEFAULT_DAILY_MAINTENANCE_SCHEDULE
        );
        assert_eq!(c.mux_reconcile_schedule, DEFAULT_MUX_RECONCILE_SCHEDULE);
        assert_eq!(
            c.notification_digest_schedule,
            DEFAULT_NOTIFICATION_DIGEST_SCHEDULE
        );
        assert_eq!(c.leaderboard_schedule, DEFAULT_LEADERBOARD_SCHEDULE);
        assert!(Config::from_map(&map(&[("WORKER_HEARTBEAT_SECONDS", "0")])).is_err());
        assert!(Config::from_map(&map(&[("WORKER_MISSED_HEARTBEATS", "-1")])).is_err());
        let c = Config::from_map(&map(&[("MUX_RECONCILE_SCHEDULE", "*/2 * * * * *")])).unwrap();
        assert_eq!(c.mux_reconcile_schedule, "*/2 * * * * *");
    }

    #[test]
    fn job_retention_defaults_to_a_day_and_a_week_and_may_be_zero() {
        let c = Config::from_map(&map(&[])).unwrap();
        assert_eq!(
            (c.job_retention_done_secs, c.job_retention_failed_secs),
            (86_400, 604_800)
        );
        let c = Config::from_map(&map(&[
            ("JOB_RETENTION_DONE_SECS", "0"),
            ("JOB_RETENTION_FAILED_SECS", "60"),
        ]))
        .unwrap();
        assert_eq!(
            (c.job_retention_done_secs, c.job_retention_failed_secs),
            (0, 60)
        );
        assert!(Config::from_map(&map(&[("JOB_RETENTION_DONE_SECS", "-1")])).is_err());
        assert!(Config::from_map(&map(&[("JOB_RETENTION_FAILED_SECS", "week")])).is_err());
    }

    #[test]
    fn redis_host_and_port_still_work() {
        let c = Config::from_map(&map(&[("REDIS_HOST", "cache"), ("REDIS_PORT", "6380")])).unwrap();
        assert_eq!(c.redis_url.expose(), "redis://cache:6380");
        let c = Config::from_map(&map(&[("REDIS_URL", "redis://x:1/2")])).unwrap();
        assert_eq!(c.redis_url.expose(), "redis://x:1/2");
    }
}
