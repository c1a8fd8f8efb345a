//! Everything a domain function needs, shared by the API and the worker.

use crate::{Clock, Config, redis::Redis};
use sqlx::PgPool;
use std::sync::Arc;
use tokio::sync::Notify;

#[derive(Clone)]
pub struct Context {
    pub db: PgPool,
    pub redis: Redis,
    pub config: Arc<Config>,
    pub clock: Clock,
    pub http: reqwest::Client,
    /// Woken after a transaction that wrote to the job outbox commits, so the
    /// relay moves the job to Redis at once instead of at its next tick.
    pub outbox_notify: Arc<Notify>,
    /// The course catalogue's aggregates (`courses::Catalog`), cached per
    /// process (issue 10).
    pub catalog: Arc<crate::versioned_cache::VersionedCache>,
    /// Callers' rows, cached per process (issue 20; see `callers`).
    pub callers: Arc<crate::callers::CallerCache>,
    /// The platform settings, cached per process (N6.1; see `settings`).
    pub settings: Arc<crate::settings::SettingsCache>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Context {
    pub fn new(db: PgPool, config: Config) -> anyhow::Result<Self> {
        let redis = Redis::new(config.redis_url.expose(), &config.redis_namespace)?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(20))
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()?;
        Ok(Self {
            db,
            redis,
            config: Arc::new(config),
            clock: Clock::system(),
            http,
            outbox_notify: Arc::new(Notify::new()),
            catalog: Arc::default(),
            callers: Arc::default(),
            settings: Arc::default(),
        })
    }
}

impl Context {
    /// The platform settings' store over this context's parts.
    pub fn settings_store(&self) -> crate::settings::Store<'_> {
        crate::settings::Store {
            db: &self.db,
            redis: &self.redis,
            cache: &self.settings,
        }
    }

    /// The platform settings in force (N6): one snapshot, to be read once
    /// per request and passed down.
    pub async fn settings_now(&self) -> crate::Result<Arc<crate::settings::Snapshot>> {
        crate::settings::current(&self.settings_store()).await
    }

    /// Keeps this process's settings fresh until the future is dropped
    /// (`settings::watch`).
    pub async fn watch_settings(self) {
        crate::settings::watch(
            self.db.clone(),
            self.redis.clone(),
            self.config.redis_url.expose().to_string(),
            self.settings.clone(),
        )
        .await
    }
}
