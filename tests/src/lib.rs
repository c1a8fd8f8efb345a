//! Test harness: starts the real API (and worker) in-process on a random port
//! against real PostgreSQL and Redis, with a fresh database cloned from a
//! migrated template and a Redis namespace of its own per test.

use mambo_core::{Config, Context};
use poem::listener::{Acceptor, Listener, TcpListener};
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use tokio::sync::{OnceCell, oneshot};

pub use reqwest::StatusCode;

pub mod s3;
pub mod stripe;

fn pg_base() -> String {
    std::env::var("TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn admin_url() -> String {
    format!("{}/postgres", pg_base())
}

static TEMPLATE: OnceCell<String> = OnceCell::const_new();

/// The name of a database migrated with the current migrations, created once.
async fn template() -> String {
    TEMPLATE
        .get_or_init(|| async {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            for m in mambo_core::db::MIGRATOR.iter() {
                m.version.hash(&mut h);
                m.checksum.hash(&mut h);
            }
            let name = format!("mambo_tpl_{:016x}", h.finish());
            let mut conn = PgConnection::connect(&admin_url()).await.expect("postgres");
            // Several test binaries may race to build it.
            sqlx::query("SELECT pg_advisory_lock(727274)")
                .execute(&mut conn)
                .await
                .unwrap();
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS(SELECT 1 FROM pg_database WHERE datname=$1)")
                    .bind(&name)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
            if !exists {
                let tmp = format!("{name}_build");
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {tmp} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {tmp}")))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                {
                    let pool = mambo_core::db::connect(&format!("{}/{tmp}", pg_base()), 2)
                        .await
                        .unwrap();
                    mambo_core::db::migrate(&pool)
                        .await
                        .expect("migrations apply");
                    pool.close().await;
                }
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "ALTER DATABASE {tmp} RENAME TO {name}"
                )))
                .execute(&mut conn)
                .await
                .unwrap();
            }
            sqlx::query("SELECT pg_advisory_unlock(727274)")
                .execute(&mut conn)
                .await
                .unwrap();
            name
        })
        .await
        .clone()
}

/// A fresh, migrated database; dropped when the guard is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> Self {
        let tpl = template().await;
        let name = format!("mambo_t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin_url()).await.expect("postgres");
        // CREATE DATABASE .. TEMPLATE needs no other session on the template.
        for attempt in 0..50 {
            match sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE DATABASE {name} TEMPLATE {tpl}"
            )))
            .execute(&mut conn)
            .await
            {
                Ok(_) => break,
                Err(e) if attempt < 49 => {
                    let _ = e;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => panic!("create test database: {e}"),
            }
        }
        Self {
            url: format!("{}/{name}", pg_base()),
            name,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let url = admin_url();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok(mut c) = PgConnection::connect(&url).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut c)
                    .await;
                }
            });
        })
        .join();
    }
}

/// Environment for a test app: defaults plus overrides.
pub fn test_vars(db_url: &str, namespace: &str) -> HashMap<String, String> {
    let mut m = HashMap::new();
    m.insert("ENVIRONMENT".into(), "test".into());
    m.insert("SECRET_KEY".into(), "test-secret-key".into());
    m.insert("DATABASE_URL".into(), db_url.into());
    m.insert("REDIS_URL".into(), redis_url());
    m.insert("REDIS_NAMESPACE".into(), namespace.into());
    m.insert("SECURE_COOKIES".into(), "false".into());
    // Tests change users' rows with plain SQL between requests; the cache
    // would see those changes a moment later (through the database's
    // notification), not before the very next request. tests/caller_cache.rs
    // turns it on and checks exactly that path; MAMBO_TEST_CALLER_CACHE=10
    // runs every test with it.
    m.insert(
        "CALLER_CACHE_SECONDS".into(),
        std::env::var("MAMBO_TEST_CALLER_CACHE").unwrap_or_else(|_| "0".into()),
    );
    m
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub ctx: Context,
    pub namespace: String,
    /// The environment the app was configured from (peers reuse it).
    pub vars: HashMap<String, String>,
    shutdown: Vec<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    // Dropped last: the database.
    pub db: TestDb,
}

pub struct Options {
    pub worker: bool,
    pub vars: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            worker: true,
            vars: vec![],
        }
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Options::default()).await
    }

    /// Starts the API without a worker (jobs stay queued).
    pub async fn spawn_api_only() -> Self {
        Self::spawn_with(Options {
            worker: false,
            ..Default::default()
        })
        .await
    }

    pub async fn spawn_with_vars(vars: &[(&str, &str)]) -> Self {
        Self::spawn_with(Options {
            worker: true,
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
        .await
    }

    pub async fn spawn_with(opts: Options) -> Self {
        let _ = tracing_init();
        let db = TestDb::new().await;
        let namespace = format!("test-{}", uuid::Uuid::new_v4().simple());
        let mut vars = test_vars(&db.url, &namespace);
        for (k, v) in opts.vars {
            vars.insert(k, v);
        }
        let p = Process::start(&vars, true, opts.worker).await;
        Self {
            base: p.base,
            client: p.client,
            ctx: p.ctx,
            namespace,
            vars,
            shutdown: p.shutdown,
            tasks: p.tasks,
            db,
        }
    }

    /// Another API process and worker process on the same database and Redis
    /// namespace, configured like this app ("two of everything").
    pub async fn spawn_peer(&self) -> Peer {
        self.spawn_peer_with(true, true, &[]).await
    }

    /// A worker alone on this app's database and namespace (no API; `base` is empty).
    pub async fn spawn_worker(&self) -> Peer {
        self.spawn_peer_with(false, true, &[]).await
    }

    /// A peer process with its own pool and Redis connection: an API when
    /// `api`, a worker when `worker`, this app's variables plus `extra`.
    pub async fn spawn_peer_with(&self, api: bool, worker: bool, extra: &[(&str, &str)]) -> Peer {
        let mut vars = self.vars.clone();
        for (k, v) in extra {
            vars.insert(k.to_string(), v.to_string());
        }
        let p = Process::start(&vars, api, worker).await;
        Peer {
            base: p.base,
            client: p.client,
            ctx: p.ctx,
            shutdown: p.shutdown,
            tasks: p.tasks,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path))
    }
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(self.url(path))
    }
    pub fn put(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.put(self.url(path))
    }
    pub fn patch(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.patch(self.url(path))
    }
    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.delete(self.url(path))
    }

    pub fn db(&self) -> &sqlx::PgPool {
        &self.ctx.db
    }

    /// Stops the server and worker and waits for them.
    pub async fn stop(mut self) {
        for tx in self.shutdown.drain(..) {
            let _ = tx.send(());
        }
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(15), t).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn tracing_init() -> Option<()> {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var("TEST_LOG").is_ok() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(std::env::var("TEST_LOG").unwrap())
                .with_test_writer()
                .try_init();
        }
    });
    Some(())
}

/// Reads a response as (status, JSON body).
pub async fn json(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

/// Polls `f` until it returns `Some`, up to `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// What one process runs: an API server and/or a worker on one context.
struct Process {
    base: String,
    client: reqwest::Client,
    ctx: Context,
    shutdown: Vec<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Process {
    async fn start(vars: &HashMap<String, String>, api: bool, worker: bool) -> Self {
        let config = Config::from_map(vars).expect("test config");
        let pool = mambo_core::db::connect(config.database_url.expose(), 10)
            .await
            .expect("pool");
        let ctx = Context::new(pool, config).expect("context");
        let mut shutdown = vec![];
        let mut tasks = vec![];
        let mut base = String::new();

        if api {
            let acceptor = TcpListener::bind("127.0.0.1:0")
                .into_acceptor()
                .await
                .expect("bind");
            let addr = acceptor.local_addr()[0]
                .as_socket_addr()
                .cloned()
                .expect("socket addr");
            base = format!("http://{addr}");
            let (tx, rx) = oneshot::channel::<()>();
            shutdown.push(tx);
            let api_ctx = ctx.clone();
            tasks.push(tokio::spawn(async move {
                let _ = mambo_api::serve(acceptor, api_ctx, async move {
                    let _ = rx.await;
                })
                .await;
            }));
        }

        if worker {
            let (tx, rx) = oneshot::channel::<()>();
            shutdown.push(tx);
            let wctx = ctx.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = mambo_worker::run(wctx, async move {
                    let _ = rx.await;
                })
                .await
                {
                    eprintln!("worker stopped: {e:#}");
                }
            }));
        }

        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            base,
            client,
            ctx,
            shutdown,
            tasks,
        }
    }
}

/// A second process (API and/or worker) sharing a [`TestApp`]'s database and
/// Redis namespace. Dropping it kills it like [`Peer::kill`].
pub struct Peer {
    /// The API's base URL (empty for a worker alone).
    pub base: String,
    pub client: reqwest::Client,
    pub ctx: Context,
    shutdown: Vec<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Peer {
    pub fn url(&self, path: &str) -> String {
        assert!(!self.base.is_empty(), "this peer runs no API");
        format!("{}{}", self.base, path)
    }
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path))
    }
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(self.url(path))
    }
    pub fn put(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.put(self.url(path))
    }
    pub fn patch(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.patch(self.url(path))
    }
    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.delete(self.url(path))
    }

    /// Kills the process the hard way, as `kill -9` would: its tasks are
    /// aborted mid-flight (running jobs included), nothing is shut down
    /// gracefully and its Redis registrations are left behind.
    pub async fn kill(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
        self.shutdown.clear();
    }

    /// Stops the process gracefully and waits for it.
    pub async fn stop(mut self) {
        for tx in self.shutdown.drain(..) {
            let _ = tx.send(());
        }
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(15), t).await;
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A user made directly in the database, with a valid access token.
#[derive(Clone, Debug)]
pub struct TestUser {
    pub id: uuid::Uuid,
    pub email: String,
    pub password: String,
    pub token: String,
}

impl TestUser {
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }
}

/// What kind of user to create.
#[derive(Clone, Debug)]
pub struct UserSpec {
    pub role: &'static str,
    /// `Some((status, tier))` sets the subscription.
    pub subscription: Option<(&'static str, &'static str)>,
    pub claves: i64,
    pub username: Option<String>,
}

impl Default for UserSpec {
    fn default() -> Self {
        Self {
            role: "student",
            subscription: None,
            claves: 15,
            username: None,
        }
    }
}

impl TestApp {
    /// Creates a user (profile, rookie subscription, `claves` through the ledger).
    pub async fn create_user(&self, spec: UserSpec) -> TestUser {
        let n = uuid::Uuid::new_v4().simple().to_string();
        let email = format!("user{}@example.com", &n[..12]);
        let password = "Passw0rd123".to_string();
        let mut nu =
            mambo_core::users::NewUser::student(&email, "Test", &format!("User{}", &n[..4]));
        nu.role = spec.role.into();
        // Verified, as every account made before email verification existed
        // (and as registration's gate expects of a user who posts); tests of
        // unverified accounts clear it.
        nu.is_verified = true;
        nu.username = Some(
            spec.username
                .clone()
                .unwrap_or_else(|| format!("u_{}", &n[..12])),
        );
        // A cheap bcrypt hash keeps tests fast; it is a valid legacy hash.
        nu.hashed_password = Some(bcrypt::hash(&password, 4).unwrap());
        let mut tx = self.db().begin().await.unwrap();
        let id = mambo_core::users::create_user(&mut tx, &nu).await.unwrap();
        if spec.claves != 0 {
            mambo_core::economy::credit(&mut tx, id, spec.claves, "new_user_bonus", None, None)
                .await
                .unwrap();
        }
        if let Some((status, tier)) = spec.subscription {
            sqlx::query("UPDATE subscriptions SET status=$2, tier=$3 WHERE user_id=$1")
                .bind(id)
                .bind(status)
                .bind(tier)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        let token = self.token_for(id);
        TestUser {
            id,
            email,
            password,
            token,
        }
    }

    pub async fn student(&self) -> TestUser {
        self.create_user(UserSpec::default()).await
    }

    pub async fn admin(&self) -> TestUser {
        self.create_user(UserSpec {
            role: "admin",
            ..Default::default()
        })
        .await
    }

    /// A student with an active performer subscription ("pro").
    pub async fn pro_student(&self) -> TestUser {
        self.create_user(UserSpec {
            subscription: Some(("active", "performer")),
            ..Default::default()
        })
        .await
    }

    pub fn token_for(&self, id: uuid::Uuid) -> String {
        mambo_core::auth::create_token_at(
            &self.ctx.config,
            id,
            mambo_core::auth::TokenKind::Access,
            self.ctx.clock.now(),
        )
    }

    /// The user's balance and the sum of their ledger, for invariant checks.
    pub async fn balance_and_ledger(&self, id: uuid::Uuid) -> (i64, i64) {
        let b: i32 =
            sqlx::query_scalar("SELECT current_claves FROM user_profiles WHERE user_id=$1")
                .bind(id)
                .fetch_one(self.db())
                .await
                .unwrap();
        let s: Option<i64> = sqlx::query_scalar(
            "SELECT SUM(amount)::bigint FROM clave_transactions WHERE user_id=$1",
        )
        .bind(id)
        .fetch_one(self.db())
        .await
        .unwrap();
        (b as i64, s.unwrap_or(0))
    }
}

impl TestApp {
    /// After a fault: the same API process answers every request. 30 feed
    /// reads, then `then` (a write or a read, `method path`) as `user`, all 200,
    /// and the user's balance still equals their ledger.
    pub async fn assert_serves_after_fault(&self, user: &TestUser, then: (&str, &str)) {
        for i in 0..30 {
            let (s, v) = json(
                self.get("/api/community/feed")
                    .header("Authorization", user.bearer())
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(s, StatusCode::OK, "request {i} after the fault: {v}");
        }
        let (method, path) = then;
        let req = match method {
            "POST" => self.post(path),
            _ => self.get(path),
        };
        let (s, v) = json(
            req.header("Authorization", user.bearer())
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{method} {path} after the fault: {v}");
        let (balance, ledger) = self.balance_and_ledger(user.id).await;
        assert_eq!(balance, ledger);
    }
}

/// Collects what a `fmt` subscriber writes, one line per `sqlx::query` event.
#[derive(Clone, Default)]
struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Runs `f` with a thread-local subscriber that records every statement sqlx
/// executes (sqlx logs each one under the `sqlx::query` target) and returns
/// how many ran. The future is polled on this test's thread (the test body
/// runs under `block_on`), so only its own statements are seen.
pub async fn count_statements<T, Fut: std::future::Future<Output = T>>(f: Fut) -> (T, usize) {
    use tracing_subscriber::util::SubscriberInitExt;
    let cap = Capture::default();
    let sub = tracing_subscriber::fmt()
        .with_writer(cap.clone())
        .with_ansi(false)
        .with_env_filter(tracing_subscriber::EnvFilter::new("sqlx::query=debug"))
        .finish();
    let guard = sub.set_default();
    let out = f.await;
    drop(guard);
    let text = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
    let n = text.lines().filter(|l| l.contains("sqlx::query")).count();
    if std::env::var("MAMBO_TEST_PRINT_STATEMENTS").is_ok() {
        eprintln!("{text}");
    }
    (out, n)
}

impl TestApp {
    /// One JSON request as `user` (or anonymous): `method` is `GET`, `POST`,
    /// `PUT`, `PATCH` or `DELETE`; `body` is sent as JSON when given.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        user: Option<&TestUser>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(m, self.url(path));
        if let Some(u) = user {
            req = req.header("Authorization", u.bearer());
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        json(req.send().await.expect("request")).await
    }

    /// Sets platform settings through the admin API (N6.1) as `admin`.
    pub async fn set_settings(&self, admin: &TestUser, changes: Value) -> Value {
        let (s, v) = self
            .call("PUT", "/api/admin/settings", Some(admin), Some(changes))
            .await;
        assert_eq!(s, StatusCode::OK, "settings: {v}");
        v
    }

    /// Applies a settings preset (`seed` or `guild_2026`) as `admin`.
    pub async fn set_preset(&self, admin: &TestUser, preset: &str) -> Value {
        let (s, v) = self
            .call(
                "POST",
                "/api/admin/settings/preset",
                Some(admin),
                Some(serde_json::json!({ "preset": preset })),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "preset: {v}");
        v
    }
}

/// Loads the platform settings into `ctx`'s copy the way an API process's
/// watcher does, then stops the watcher: the copy stays and requests read it
/// without a statement (for statement-count tests of a bare `Context`).
pub async fn warm_settings(ctx: &Context) {
    let watcher = tokio::spawn(ctx.clone().watch_settings());
    eventually(20, || async { ctx.settings.is_watched().then_some(()) })
        .await
        .expect("settings load");
    watcher.abort();
}
