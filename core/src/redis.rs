//! Redis access shared by every API replica: rate limits, OAuth state, caches.
//! The connection is lazy, so the API starts (and serves reads) without Redis;
//! callers decide whether to fail open.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;

#[derive(Clone)]
pub struct Redis {
    conn: ConnectionManager,
    namespace: String,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl Redis {
    /// Builds a lazily connecting manager; never fails because Redis is down.
    pub fn new(url: &str, namespace: &str) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let conn = ConnectionManager::new_lazy_with_config(client, manager_config())?;
        Ok(Self {
            conn,
            namespace: namespace.to_string(),
        })
    }

    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// `{namespace}:{key}`.
    pub fn key(&self, key: &str) -> String {
        format!("{}:{}", self.namespace, key)
    }

    pub async fn ping(&self) -> redis::RedisResult<()> {
        let mut c = self.conn();
        let _: String = redis::cmd("PING").query_async(&mut c).await?;
        Ok(())
    }
}

pub fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(1000)))
        .set_response_timeout(Some(Duration::from_millis(2000)))
        .set_number_of_retries(1)
}
