//! The live notification stream (API-NEXT.md N1, issue 16):
//! `GET /api/notifications/stream` over real HTTP with two API processes on
//! one database and Redis namespace. A notification committed through one
//! process reaches a stream on the other within a second; `Last-Event-ID`
//! replays exactly the newer ones; `?token=` and the cookie work, bad tokens
//! are 401 and never logged; the course fan-out is delivered; heartbeats;
//! one Redis subscription per process whatever the number of streams; a
//! lost subscription is re-made; streams end promptly on shutdown.

use futures::StreamExt;
use futures::stream::BoxStream;
use mambo_core::notifications::{self, New, Pending, fanout, live};
use mambo_tests::{Options, StatusCode, TestApp, TestUser, UserSpec, json, redis_url};
use serde_json::{Value, json};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

const STREAM: &str = "/api/notifications/stream";

/// One block of an event stream (up to a blank line).
#[derive(Debug, Clone, Default)]
struct Frame {
    event: Option<String>,
    id: Option<String>,
    data: String,
    retry: Option<u64>,
    comments: Vec<String>,
}

impl Frame {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
    fn is_event(&self) -> bool {
        self.event.is_some() || !self.data.is_empty()
    }
}

/// A minimal EventSource: reads frames off a streamed response body.
struct Sse {
    body: BoxStream<'static, reqwest::Result<Vec<u8>>>,
    buf: String,
    ended: bool,
}

impl Sse {
    async fn open(req: reqwest::RequestBuilder) -> Sse {
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if status != StatusCode::OK {
            let (_, v) = json(resp).await;
            panic!("stream refused: {status} {v}");
        }
        assert!(ct.starts_with("text/event-stream"), "content-type {ct}");
        assert_eq!(resp.headers()["cache-control"], "no-cache");
        Sse {
            body: resp.bytes_stream().map(|r| r.map(|b| b.to_vec())).boxed(),
            buf: String::new(),
            ended: false,
        }
    }

    /// The next frame, or `None` if none comes within `within` (or the
    /// stream ended: see `ended`).
    async fn frame(&mut self, within: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut f = Frame::default();
                for line in block.lines() {
                    if let Some(c) = line.strip_prefix(':') {
                        f.comments.push(c.trim().to_string());
                    } else if let Some((k, v)) = line.split_once(':') {
                        let v = v.strip_prefix(' ').unwrap_or(v);
                        match k {
                            "event" => f.event = Some(v.to_string()),
                            "id" => f.id = Some(v.to_string()),
                            "retry" => f.retry = v.parse().ok(),
                            "data" => {
                                if !f.data.is_empty() {
                                    f.data.push('\n');
                                }
                                f.data.push_str(v);
                            }
                            other => panic!("unknown field {other:?} in {block:?}"),
                        }
                    }
                }
                return Some(f);
            }
            if self.ended {
                return None;
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return None,
                Ok(Some(Ok(bytes))) => self.buf.push_str(std::str::from_utf8(&bytes).unwrap()),
                Ok(Some(Err(_))) | Ok(None) => self.ended = true,
            }
        }
    }

    /// The next event (comments and `retry:` skipped).
    async fn event(&mut self, within: Duration) -> Option<Frame> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let f = self.frame(left).await?;
            if f.is_event() {
                return Some(f);
            }
        }
    }

    /// The next event, which must be `unread_count`: its value.
    async fn unread(&mut self) -> i64 {
        let f = self.event(Duration::from_secs(5)).await.expect("an event");
        assert_eq!(f.event.as_deref(), Some("unread_count"), "{f:?}");
        f.json()["unread_count"].as_i64().unwrap()
    }

    /// The next event, which must be `notification`: its data.
    async fn notification(&mut self) -> Value {
        let f = self
            .event(Duration::from_secs(5))
            .await
            .expect("a notification");
        assert_eq!(f.event.as_deref(), Some("notification"), "{f:?}");
        let v = f.json();
        assert_eq!(
            f.id.as_deref(),
            v["id"].as_str(),
            "id: is the notification id"
        );
        v
    }

    /// Whether the body ends within `within`.
    async fn ends_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while !self.ended {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.frame(left).await;
        }
        true
    }
}

fn opened(req: reqwest::RequestBuilder, user: &TestUser) -> reqwest::RequestBuilder {
    req.header("Authorization", user.bearer())
}

async fn rich(app: &TestApp) -> TestUser {
    app.create_user(UserSpec {
        claves: 100,
        ..Default::default()
    })
    .await
}

async fn insert_post(app: &TestApp, owner: Uuid) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO posts (user_id, post_type, title, body, tags)
         VALUES ($1, 'stage', 'My shines', 'body', '{mambo}') RETURNING id",
    )
    .bind(owner)
    .fetch_one(app.db())
    .await
    .unwrap()
}

async fn badge(ctx: &mambo_core::Context, user: Uuid, n: usize) -> Uuid {
    notifications::notify_now(
        ctx,
        &New::badge(user, &format!("b{n}"), &format!("Badge {n}")),
    )
    .await
    .unwrap()
    .expect("created")
}

async fn redis_direct() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Connections subscribed to the app's notification channel.
async fn subscriptions(app: &TestApp) -> i64 {
    let mut c = redis_direct().await;
    let (_, n): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(live::channel(&app.ctx))
        .query_async(&mut c)
        .await
        .unwrap();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_committed_through_another_api_process_reaches_the_stream_within_a_second() {
    let app = TestApp::spawn_api_only().await;
    let peer = app.spawn_peer_with(true, false, &[]).await;
    let owner = rich(&app).await;
    let fan = rich(&app).await;
    let post = insert_post(&app, owner.id).await;

    // The owner listens on the first process, the fan on the second.
    let mut owner_stream = Sse::open(opened(app.get(STREAM), &owner)).await;
    let first = owner_stream.frame(Duration::from_secs(5)).await.unwrap();
    let retry = first.retry.expect("the stream starts with retry:");
    assert!((2_000..5_000).contains(&retry), "{retry}");
    assert_eq!(owner_stream.unread().await, 0);
    let mut fan_stream = Sse::open(opened(peer.get(STREAM), &fan)).await;
    assert_eq!(fan_stream.unread().await, 0);

    // The fan reacts through the second process.
    let r = peer
        .post(&format!("/api/community/posts/{post}/react"))
        .header("Authorization", fan.bearer())
        .json(&json!({"reaction_type": "fire"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", json(r).await);
    let committed = Instant::now();
    let pushed = owner_stream.notification().await;
    let latency = committed.elapsed();
    assert!(latency < Duration::from_secs(1), "took {latency:?}");
    assert_eq!(owner_stream.unread().await, 1);

    // The same shape as the bell's list.
    let (s, bell) = json(
        opened(app.get("/api/notifications"), &owner)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(pushed, bell[0], "stream and bell agree");
    assert_eq!(pushed["type"], "reaction_received");
    assert_eq!(pushed["actor_id"], fan.id.to_string());
    assert_eq!(pushed["reference_id"], post.to_string());

    // A notification the worker commits (here: through the second process's
    // context) reaches the first process too.
    let started = Instant::now();
    let id = badge(&peer.ctx, owner.id, 1).await;
    let pushed = owner_stream.notification().await;
    let worker_latency = started.elapsed();
    assert_eq!(pushed["id"], id.to_string());
    assert_eq!(pushed["type"], "badge_earned");
    assert!(
        worker_latency < Duration::from_secs(1),
        "took {worker_latency:?}"
    );
    assert_eq!(owner_stream.unread().await, 2);

    // Nothing went to the fan's stream.
    let other = fan_stream.event(Duration::from_millis(500)).await;
    assert!(other.is_none(), "the fan got {other:?}");
    println!("stream latency: reaction {latency:?}, worker-style {worker_latency:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_with_last_event_id_replays_exactly_the_newer_notifications() {
    let app = TestApp::spawn_api_only().await;
    let user = app.student().await;
    let someone = app.student().await;
    let mut ids = vec![];
    for i in 0..4 {
        ids.push(badge(&app.ctx, user.id, i).await);
    }
    let theirs = badge(&app.ctx, someone.id, 99).await;

    // The header.
    let mut s =
        Sse::open(opened(app.get(STREAM), &user).header("Last-Event-ID", ids[1].to_string())).await;
    assert_eq!(s.notification().await["id"], ids[2].to_string());
    assert_eq!(s.notification().await["id"], ids[3].to_string());
    assert_eq!(s.unread().await, 4);
    drop(s);

    // The query parameter.
    let mut s = Sse::open(opened(
        app.get(&format!("{STREAM}?last_event_id={}", ids[0])),
        &user,
    ))
    .await;
    for id in &ids[1..] {
        assert_eq!(s.notification().await["id"], id.to_string());
    }
    assert_eq!(s.unread().await, 4);

    // Nothing newer, someone else's id, a malformed id: nothing replayed.
    for last in [ids[3].to_string(), theirs.to_string(), "not-an-id".into()] {
        let mut s = Sse::open(opened(app.get(STREAM), &user).header("Last-Event-ID", last)).await;
        assert_eq!(s.unread().await, 4);
    }

    // At most 50, oldest first, all newer than the last id.
    let mut more = vec![];
    for i in 0..55 {
        more.push(New::badge(user.id, &format!("m{i}"), "More"));
    }
    let mut pending = Pending::default();
    let mut conn = app.db().acquire().await.unwrap();
    notifications::notify_many(&mut conn, app.ctx.clock.now(), &more, &mut pending)
        .await
        .unwrap();
    drop(conn);
    let mut s =
        Sse::open(opened(app.get(STREAM), &user).header("Last-Event-ID", ids[3].to_string())).await;
    let mut replayed = vec![];
    loop {
        let f = s.event(Duration::from_secs(5)).await.unwrap();
        if f.event.as_deref() == Some("unread_count") {
            assert_eq!(f.json()["unread_count"], 59);
            break;
        }
        replayed.push(f.json());
    }
    assert_eq!(replayed.len(), 50);
    let times: Vec<&str> = replayed
        .iter()
        .map(|n| n["created_at"].as_str().unwrap())
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "oldest first");
    assert!(replayed.iter().all(|n| n["message"] == "You earned More"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_in_the_query_and_the_cookie_open_a_stream_and_bad_tokens_are_401() {
    let app = TestApp::spawn_api_only().await;
    let user = app.student().await;
    let other = app.student().await;

    // ?token= (what a browser's EventSource uses), and the cookie.
    let mut by_query = Sse::open(app.get(&format!("{STREAM}?token={}", user.token))).await;
    assert_eq!(by_query.unread().await, 0);
    let mut by_cookie = Sse::open(
        app.get(STREAM)
            .header("Cookie", format!("access_token={}", user.token)),
    )
    .await;
    assert_eq!(by_cookie.unread().await, 0);
    // The bearer header wins over ?token=, which wins over the cookie.
    let mut mixed = Sse::open(
        app.get(&format!("{STREAM}?token={}", other.token))
            .header("Authorization", user.bearer())
            .header("Cookie", format!("access_token={}", other.token)),
    )
    .await;
    assert_eq!(mixed.unread().await, 0);
    let mut query_over_cookie = Sse::open(
        app.get(&format!("{STREAM}?token={}", other.token))
            .header("Cookie", format!("access_token={}", user.token)),
    )
    .await;
    assert_eq!(query_over_cookie.unread().await, 0);
    let id = badge(&app.ctx, user.id, 1).await;
    for s in [&mut by_query, &mut by_cookie, &mut mixed] {
        assert_eq!(s.notification().await["id"], id.to_string());
    }
    let leaked = query_over_cookie.event(Duration::from_millis(500)).await;
    assert!(leaked.is_none(), "{leaked:?}");

    // Refused: nothing, a forged token, a refresh token, a deleted user.
    let refresh = mambo_core::auth::create_token(
        &app.ctx.config,
        user.id,
        mambo_core::auth::TokenKind::Refresh,
        app.ctx.clock.now().timestamp(),
    );
    let gone = app.student().await;
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(gone.id)
        .execute(app.db())
        .await
        .unwrap();
    let cases = vec![
        ("no credentials", app.get(STREAM)),
        (
            "forged ?token=",
            app.get(&format!("{STREAM}?token=forged.jwt.value")),
        ),
        ("empty ?token=", app.get(&format!("{STREAM}?token="))),
        (
            "refresh token",
            app.get(&format!("{STREAM}?token={refresh}")),
        ),
        (
            "deleted user",
            app.get(&format!("{STREAM}?token={}", gone.token)),
        ),
        (
            "forged bearer",
            app.get(STREAM).header("Authorization", "Bearer forged"),
        ),
        (
            "forged cookie",
            app.get(STREAM).header("Cookie", "access_token=forged"),
        ),
    ];
    for (what, req) in cases {
        let r = req.send().await.unwrap();
        assert!(r.headers().contains_key("www-authenticate"), "{what}");
        let (s, v) = json(r).await;
        assert_eq!(
            (s, v),
            (
                StatusCode::UNAUTHORIZED,
                json!({"detail": "Could not validate credentials"})
            ),
            "{what}"
        );
    }
}

static LOGS: LazyLock<Arc<Mutex<Vec<u8>>>> = LazyLock::new(Default::default);

struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_token_never_reaches_the_logs() {
    // This binary's logs (every test's, at debug level) go to a buffer.
    let captured = tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_ansi(false)
        .with_writer(|| Capture)
        .try_init()
        .is_ok();
    if !captured {
        eprintln!("another tracing subscriber is installed (TEST_LOG?): nothing to grep");
        return;
    }
    let app = TestApp::spawn_api_only().await;
    let user = app.student().await;
    let mut s = Sse::open(app.get(&format!("{STREAM}?token={}", user.token))).await;
    assert_eq!(s.unread().await, 0);
    drop(s);
    let forged = "forged-QUERYTOKEN-9z";
    let r = app
        .get(&format!("{STREAM}?token={forged}&last_event_id=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The response log line of the refused request is written after the body.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned();
    assert!(logs.contains(STREAM), "the stream requests were logged");
    assert!(
        !logs.contains(&user.token),
        "the access token is in the logs"
    );
    assert!(!logs.contains(forged), "the forged token is in the logs");
    assert!(!logs.contains("token="), "a query string is in the logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_course_fan_out_reaches_the_streams_of_every_process_but_the_publishers() {
    let app = TestApp::spawn_api_only().await;
    let peer = app.spawn_peer_with(true, false, &[]).await;
    let admin = app.admin().await;
    let here = app.student().await;
    let there = app.student().await;
    let world: Uuid = sqlx::query_scalar(
        "INSERT INTO worlds (title, slug, order_index, difficulty, is_free, is_published)
         VALUES ('Shines 101', $1, 1, 'Beginner', true, true) RETURNING id",
    )
    .bind(format!("shines-{}", Uuid::new_v4().simple()))
    .fetch_one(app.db())
    .await
    .unwrap();

    let mut s_here = Sse::open(opened(app.get(STREAM), &here)).await;
    let mut s_there = Sse::open(opened(peer.get(STREAM), &there)).await;
    let mut s_admin = Sse::open(opened(app.get(STREAM), &admin)).await;
    for s in [&mut s_here, &mut s_there, &mut s_admin] {
        assert_eq!(s.unread().await, 0);
    }

    // The admin's publication, then the worker's job (run on the peer).
    let mut tx = app.db().begin().await.unwrap();
    assert!(
        fanout::world_published(&mut tx, world, admin.id, app.ctx.clock.now())
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    let started = Instant::now();
    let inserted = fanout::run(
        &peer.ctx,
        &mambo_core::jobs::CoursePublishedJob { world_id: world },
    )
    .await
    .unwrap();
    assert_eq!(inserted, 2);
    for s in [&mut s_here, &mut s_there] {
        let n = s.notification().await;
        assert_eq!(n["type"], "course_published");
        assert_eq!(n["reference_type"], "world");
        assert_eq!(n["reference_id"], world.to_string());
        assert_eq!(n["message"], "\"Shines 101\" is now available");
        assert_eq!(s.unread().await, 1);
    }
    println!("fan-out to the streams: {:?}", started.elapsed());
    let got = s_admin.event(Duration::from_millis(500)).await;
    assert!(got.is_none(), "the publisher got {got:?}");

    // A fan-out message that matches nothing sends nothing.
    live::publish_fanout(&app.ctx, "course_published", &Uuid::new_v4().to_string())
        .await
        .unwrap();
    let got = s_here.event(Duration::from_millis(500)).await;
    assert!(got.is_none(), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_come_from_one_tick_and_many_streams_share_one_subscription() {
    let app = TestApp::spawn_with(Options {
        worker: false,
        vars: vec![("NOTIFICATIONS_HEARTBEAT_SECONDS".into(), "1".into())],
    })
    .await;
    let peer = app.spawn_peer_with(true, false, &[]).await;
    let user = app.student().await;

    // Many streams (tabs) of one user on the first process, more on the second.
    let mut tabs = vec![];
    for _ in 0..20 {
        let mut s = Sse::open(opened(app.get(STREAM), &user)).await;
        assert_eq!(s.unread().await, 0);
        tabs.push(s);
    }
    let mut far = vec![];
    for _ in 0..5 {
        let mut s = Sse::open(opened(peer.get(STREAM), &user)).await;
        assert_eq!(s.unread().await, 0);
        far.push(s);
    }
    assert_eq!(subscriptions(&app).await, 2, "one subscription per process");
    let metrics = app
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("notification_streams_open"), "{metrics}");

    // A heartbeat comment within two ticks.
    let started = Instant::now();
    let mut beat = None;
    while started.elapsed() < Duration::from_secs(3) {
        match tabs[0].frame(Duration::from_secs(3)).await {
            Some(f) if f.comments.iter().any(|c| c == "ping") => {
                beat = Some(started.elapsed());
                break;
            }
            Some(f) => assert!(!f.is_event(), "{f:?}"),
            None => break,
        }
    }
    assert!(beat.is_some(), "no heartbeat within 3 s at a 1 s interval");

    // Every tab of the user, on both processes, gets the notification.
    let id = badge(&app.ctx, user.id, 1).await;
    for s in tabs.iter_mut().chain(far.iter_mut()) {
        let n = loop {
            let f = s.event(Duration::from_secs(5)).await.expect("an event");
            if f.event.as_deref() == Some("notification") {
                break f.json();
            }
        };
        assert_eq!(n["id"], id.to_string());
    }
    drop(tabs);
    drop(far);
    assert_eq!(subscriptions(&app).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_end_promptly_when_the_server_shuts_down() {
    let app = TestApp::spawn_api_only().await;
    let peer = app.spawn_peer_with(true, false, &[]).await;
    let user = app.student().await;
    let mut s = Sse::open(opened(peer.get(STREAM), &user)).await;
    assert_eq!(s.unread().await, 0);
    let started = Instant::now();
    let stopping = tokio::spawn(peer.stop());
    assert!(
        s.ends_within(Duration::from_secs(3)).await,
        "the stream outlived the shutdown"
    );
    stopping.await.unwrap();
    let took = started.elapsed();
    // poem's graceful shutdown would wait 10 s for an open stream.
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    // Its subscription went with it.
    let gone = mambo_tests::eventually(5, || async {
        (subscriptions(&app).await == 1).then_some(())
    })
    .await;
    assert!(gone.is_some(), "the stopped process is still subscribed");
    // The first process serves on.
    let mut s = Sse::open(opened(app.get(STREAM), &user)).await;
    assert_eq!(s.unread().await, 0);
}

/// A TCP proxy to Redis whose connections can be cut, as a network fault
/// would.
struct Proxy {
    url: String,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let upstream = redis_url()
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .to_string();
        let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let registry = conns.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                registry.lock().unwrap().push(task.abort_handle());
            }
        });
        Proxy {
            url: format!("redis://127.0.0.1:{port}"),
            conns,
        }
    }

    /// Drops every connection open now (new ones are accepted).
    fn cut(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_subscription_is_made_again_and_the_reconnect_replays_what_was_missed() {
    let proxy = Proxy::start().await;
    let app = TestApp::spawn_with(Options {
        worker: false,
        vars: vec![("REDIS_URL".into(), proxy.url.clone())],
    })
    .await;
    let user = app.student().await;
    let mut s = Sse::open(opened(app.get(STREAM), &user)).await;
    assert_eq!(s.unread().await, 0);
    let first = badge(&app.ctx, user.id, 1).await;
    assert_eq!(s.notification().await["id"], first.to_string());
    assert_eq!(s.unread().await, 1);

    // Redis drops the connections: the stream ends (it may miss messages).
    proxy.cut();
    assert!(
        s.ends_within(Duration::from_secs(5)).await,
        "the stream outlived its subscription"
    );
    // Committed while the process is not subscribed.
    let missed = badge(&app.ctx, user.id, 2).await;

    // The process subscribes again; the client's reconnect replays.
    let back = mambo_tests::eventually(10, || async {
        (subscriptions(&app).await == 1).then_some(())
    })
    .await;
    assert!(back.is_some(), "no subscription again within 10 s");
    let mut s =
        Sse::open(opened(app.get(STREAM), &user).header("Last-Event-ID", first.to_string())).await;
    assert_eq!(s.notification().await["id"], missed.to_string());
    assert_eq!(s.unread().await, 2);
    let live_again = badge(&app.ctx, user.id, 3).await;
    assert_eq!(s.notification().await["id"], live_again.to_string());
    assert_eq!(s.unread().await, 3);
}

/// Opens a stream over a bare TCP connection (the cheapest client) and reads
/// up to its first `unread_count` event.
async fn open_raw(addr: &str, token: &str) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {STREAM} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Accept: text/event-stream\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while !String::from_utf8_lossy(&got).contains("event: unread_count") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    s
}

/// (resident kB, CPU seconds, threads) of a process, from /proc.
fn usage(pid: u32) -> (u64, f64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command (which may hold spaces): state is field 3.
    let rest: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = rest[11].parse::<u64>().unwrap() + rest[12].parse::<u64>().unwrap();
    (field("VmRSS:"), ticks as f64 / 100.0, field("Threads:"))
}

/// 10,000 idle streams on one API process: what they cost, and how fast a
/// notification and a fan-out reach them. The API is a separate `mambo api`
/// process (so /proc shows its own memory and CPU; client and server in one
/// process would also need twice the file descriptors). Run alone:
///
/// ```text
/// cargo build -p mambo-cli
/// cargo test -p mambo-tests --test notifications_stream -- --ignored --nocapture
/// ```
///
/// `MAMBO_BIN` picks another binary (a release build), `STREAMS` another
/// count; 10 streams per user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run alone"]
async fn ten_thousand_idle_streams_in_one_process() {
    use futures::stream;
    use tokio::io::AsyncReadExt;
    mambo_api::raise_open_file_limit();
    let streams: usize = std::env::var("STREAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let per_user = 10;
    let bin = std::env::var("MAMBO_BIN")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target/debug/mambo").into());
    let db = mambo_tests::TestDb::new().await;
    let namespace = format!("bench-{}", Uuid::new_v4().simple());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut vars = mambo_tests::test_vars(&db.url, &namespace);
    vars.insert("HOST".into(), "127.0.0.1".into());
    vars.insert("PORT".into(), port.to_string());
    vars.insert("RUST_LOG".into(), "warn".into());
    let mut child = tokio::process::Command::new(&bin)
        .arg("api")
        .envs(&vars)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{bin}: {e} (cargo build -p mambo-cli first)"));
    let pid = child.id().unwrap();
    let addr = format!("127.0.0.1:{port}");
    let health = format!("http://{addr}/health");
    let up = mambo_tests::eventually(60, || async {
        let r = reqwest::get(&health).await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    assert!(up.is_some(), "mambo api did not start");
    let config = mambo_core::Config::from_map(&vars).unwrap();
    let pool = mambo_core::db::connect(config.database_url.expose(), 5)
        .await
        .unwrap();
    let ctx = mambo_core::Context::new(pool, config).unwrap();
    let users: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO users (email) SELECT 'bench' || g || '@example.com'
         FROM generate_series(1, $1) g RETURNING id",
    )
    .bind(streams.div_ceil(per_user) as i32)
    .fetch_all(&ctx.db)
    .await
    .unwrap();
    let token = |u: Uuid| {
        mambo_core::auth::create_token(
            &ctx.config,
            u,
            mambo_core::auth::TokenKind::Access,
            ctx.clock.now().timestamp(),
        )
    };
    // Warm the server up with a few streams first.
    drop(open_raw(&addr, &token(users[0])).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss0, _, threads0) = usage(pid);

    let started = Instant::now();
    let conns: Vec<tokio::net::TcpStream> = stream::iter(0..streams)
        .map(|i| {
            let (addr, t) = (addr.clone(), token(users[i / per_user]));
            async move { open_raw(&addr, &t).await }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let opened = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss1, cpu1, threads1) = usage(pid);

    // Each connection is read by a task that reports notifications.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let pings = Arc::new(std::sync::atomic::AtomicU64::new(0));
    for (i, mut c) in conns.into_iter().enumerate() {
        let (tx, pings) = (tx.clone(), pings.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = c.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]);
                let beats = text.matches(": ping").count() as u64;
                pings.fetch_add(beats, std::sync::atomic::Ordering::Relaxed);
                for _ in 0..text.matches("event: notification").count() {
                    let _ = tx.send((i, Instant::now()));
                }
            }
        });
    }

    // Idle through two heartbeats.
    let idle = Duration::from_secs(31);
    tokio::time::sleep(idle).await;
    let (rss2, cpu2, threads2) = usage(pid);
    let beats = pings.load(std::sync::atomic::Ordering::Relaxed);

    // One notification to one user (10 streams).
    let sent = Instant::now();
    badge(&ctx, users[1], 1).await;
    let mut last = Duration::ZERO;
    for _ in 0..per_user {
        let (_, at) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        last = at - sent;
    }

    // The course fan-out to every user: every stream gets it.
    let world: Uuid = sqlx::query_scalar(
        "INSERT INTO worlds (title, slug, order_index, difficulty, is_free, is_published)
         VALUES ('Bench', 'bench', 1, 'Beginner', true, true) RETURNING id",
    )
    .fetch_one(&ctx.db)
    .await
    .unwrap();
    let mut tx_db = ctx.db.begin().await.unwrap();
    fanout::world_published(&mut tx_db, world, Uuid::nil(), ctx.clock.now())
        .await
        .unwrap();
    tx_db.commit().await.unwrap();
    let fan_started = Instant::now();
    fanout::run(
        &ctx,
        &mambo_core::jobs::CoursePublishedJob { world_id: world },
    )
    .await
    .unwrap();
    let inserted = fan_started.elapsed();
    let mut fan_last = Duration::ZERO;
    for _ in 0..streams {
        let (_, at) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .unwrap()
            .unwrap();
        fan_last = at - fan_started;
    }
    let (rss3, _, _) = usage(pid);

    let mb = |kb: u64| kb as f64 / 1024.0;
    println!(
        "{streams} streams ({per_user} per user) on one `mambo api` ({bin})\n\
         opened in {opened:.1?} ({:.0}/s)\n\
         resident memory: {:.1} MB before, {:.1} MB with the streams open \
         ({:.1} KB per stream), {:.1} MB after {idle:?} idle, {:.1} MB after the fan-out\n\
         threads: {threads0} before, {threads1} open, {threads2} idle\n\
         CPU while idle for {idle:?}: {:.2} s ({:.2} % of one core); {beats} heartbeats received\n\
         one notification to one user's {per_user} streams: {last:.1?}\n\
         fan-out: rows inserted in {inserted:.1?}, the last of {streams} streams had it after \
         {fan_last:.1?}",
        streams as f64 / opened.as_secs_f64(),
        mb(rss0),
        mb(rss1),
        (rss1 - rss0) as f64 / streams as f64,
        mb(rss2),
        mb(rss3),
        cpu2 - cpu1,
        (cpu2 - cpu1) / idle.as_secs_f64() * 100.0,
    );
    assert!(beats >= streams as u64, "every stream got a heartbeat");
    let _ = child.kill().await;
}
