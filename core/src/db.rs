//! The PostgreSQL pool and migrations.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use std::str::FromStr;
use std::time::Duration;

/// One SQL statement written by several domains: a write that crosses doors
/// (the economy, the outbox, notifications) in one round trip. Each door
/// pushes its own common table expressions (`name AS (...)`, binding its own
/// values) through a `push_*` function that its single-step helper uses too,
/// so the rule stays in one place; a `guard` is an SQL condition over the
/// earlier expressions that its writes wait for (all of a statement's writes
/// run, whether or not the final `SELECT` reads them).
pub type Statement = sqlx::QueryBuilder<sqlx::Postgres>;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// A pooled connection idle for longer than this is pinged before it is handed
/// out (one round trip); a busy pool hands connections out untested. sqlx still
/// pings every connection when it is released, so one that broke during a query
/// (PostgreSQL restarted, backend killed) is dropped there, and one that broke
/// while idle is caught by this ping.
pub const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let opts = PgConnectOptions::from_str(url)?.disable_statement_logging();
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        // The default tests every connection on acquire: one extra round trip
        // per query on the hot paths (issue 10).
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IF_IDLE_FOR {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_with(opts)
        .await
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// Creates the database named in `url` when it does not exist yet.
pub async fn create_database_if_missing(url: &str) -> anyhow::Result<bool> {
    let opts = PgConnectOptions::from_str(url)?;
    let name = opts
        .get_database()
        .ok_or_else(|| anyhow::anyhow!("DATABASE_URL names no database"))?
        .to_string();
    let admin = opts.clone().database("postgres");
    let mut conn = sqlx::PgConnection::connect_with(&admin).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await?;
    }
    Ok(!exists)
}
