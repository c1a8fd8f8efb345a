//! The notification streams' own HTTP/1.1 framing (api/src/lean_streams.rs,
//! issue 20) over raw TCP, as a browser's EventSource sends it: the answer
//! carries the same headers as poem's answers (CORS, security headers,
//! request id), events arrive chunked, the connection closes when the stream
//! ends, a client that goes away is forgotten at once, a refusal is poem's
//! refusal, and every connection that is not a plain stream request (a head
//! in pieces, a head too slow to arrive, another method, HTTP/1.0, a
//! keep-alive connection that asks for the stream second) is still served.
//!
//! Its own test binary: it reads the process-wide stream gauge.

use mambo_core::notifications::{self, New};
use mambo_tests::{TestApp, TestUser};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const STREAM: &str = "/api/notifications/stream";
const ORIGIN: &str = "http://localhost:3000";

fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_string()
}

fn stream_request(addr: &str, user: &TestUser) -> String {
    format!(
        "GET {STREAM} HTTP/1.1\r\nHost: {addr}\r\nOrigin: {ORIGIN}\r\n\
         Authorization: Bearer {}\r\nAccept: text/event-stream\r\n\r\n",
        user.token
    )
}

/// Reads until `needle` has arrived (or the connection ends or 5 s pass).
async fn read_until(s: &mut TcpStream, got: &mut Vec<u8>, needle: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(got).contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return false,
        }
    }
    true
}

/// The response head's header lines, lower-cased names.
fn header_lines(resp: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(resp);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

fn header<'a>(lines: &'a [(String, String)], name: &str) -> Option<&'a str> {
    lines
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Streams the process counts as open, from its /metrics.
async fn streams_open(app: &TestApp) -> f64 {
    let text = app
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("notification_streams_open "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn wait_for_streams(app: &TestApp, want: f64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if streams_open(app).await == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_framed_here_and_every_other_connection_still_reaches_poem() {
    let app = TestApp::spawn_api_only().await;
    let user = app.student().await;
    let addr = addr(&app);

    // A stream: the same headers poem's answers carry, chunked, then events.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(stream_request(&addr, &user).as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    assert!(read_until(&mut s, &mut got, "event: unread_count").await);
    let text = String::from_utf8_lossy(&got).to_string();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    let lines = header_lines(&got);
    assert_eq!(
        header(&lines, "content-type").map(|v| v.starts_with("text/event-stream")),
        Some(true),
        "{text}"
    );
    assert_eq!(header(&lines, "transfer-encoding"), Some("chunked"));
    assert_eq!(header(&lines, "connection"), Some("close"));
    assert!(header(&lines, "date").is_some(), "{text}");
    assert!(header(&lines, "content-length").is_none(), "{text}");
    assert!(
        header(&lines, "content-encoding").is_none(),
        "never compressed"
    );
    // What poem adds to a signed-in read on the same connection settings.
    let poem = app
        .get("/api/notifications/unread-count")
        .header("Origin", ORIGIN)
        .header("Authorization", user.bearer())
        .send()
        .await
        .unwrap();
    for name in [
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "x-content-type-options",
        "x-frame-options",
        "x-request-id",
    ] {
        let theirs = poem.headers().get(name).map(|v| v.to_str().unwrap());
        assert!(theirs.is_some(), "poem's answer lacks {name}");
        assert!(
            header(&lines, name).is_some(),
            "the stream lacks {name}: {text}"
        );
        if name != "x-request-id" {
            assert_eq!(header(&lines, name), theirs, "{name}");
        }
    }
    // The first chunk is framed: its size line, then the event.
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    let (size, rest) = body.split_once("\r\n").unwrap();
    let size = usize::from_str_radix(size, 16).expect("a chunk size");
    assert!(size > 0 && rest.len() >= size, "{body:?}");
    assert!(wait_for_streams(&app, 1.0).await);

    // A notification arrives as its own chunk.
    let id = notifications::notify_now(&app.ctx, &New::badge(user.id, "b1", "Badge 1"))
        .await
        .unwrap()
        .expect("created");
    let mut more = Vec::new();
    assert!(read_until(&mut s, &mut more, &id.to_string()).await);
    assert!(String::from_utf8_lossy(&more).contains("event: notification"));

    // Whatever the client sends afterwards is ignored; the stream goes on.
    s.write_all(b"GET /api/health HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    // Closing the connection ends the stream at once (not at the next write).
    drop(s);
    assert!(wait_for_streams(&app, 0.0).await, "the closed stream stays");

    // A refusal is poem's refusal, with its CORS headers, then a close.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let anon = format!("GET {STREAM} HTTP/1.1\r\nHost: {addr}\r\nOrigin: {ORIGIN}\r\n\r\n");
    s.write_all(anon.as_bytes()).await.unwrap();
    let mut refused = Vec::new();
    s.read_to_end(&mut refused).await.unwrap();
    let text = String::from_utf8_lossy(&refused).to_string();
    assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{text}");
    let lines = header_lines(&refused);
    assert_eq!(header(&lines, "access-control-allow-origin"), Some(ORIGIN));
    assert!(header(&lines, "www-authenticate").is_some(), "{text}");
    let body = r#"{"detail":"Could not validate credentials"}"#;
    assert_eq!(
        header(&lines, "content-length"),
        Some(body.len().to_string().as_str())
    );
    assert!(text.ends_with(body), "{text}");

    // A head sent in pieces is still taken.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let req = stream_request(&addr, &user);
    let (a, b) = req.split_at(40);
    s.write_all(a.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    s.write_all(b.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    assert!(read_until(&mut s, &mut got, "event: unread_count").await);
    assert_eq!(
        header(&header_lines(&got), "connection"),
        Some("close"),
        "taken here"
    );
    drop(s);

    // A head slower than HEAD_WAIT goes to poem, which serves the stream.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(a.as_bytes()).await.unwrap();
    tokio::time::sleep(mambo_api::lean_streams::HEAD_WAIT + Duration::from_millis(500)).await;
    s.write_all(b.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    assert!(read_until(&mut s, &mut got, "event: unread_count").await);
    let text = String::from_utf8_lossy(&got).to_string();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert_ne!(header(&header_lines(&got), "connection"), Some("close"));
    drop(s);

    // Another method, HTTP/1.0, and a keep-alive connection whose second
    // request is the stream: all poem's.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let head = format!("HEAD {STREAM} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    assert!(
        got.starts_with(b"HTTP/1.1 "),
        "{}",
        String::from_utf8_lossy(&got)
    );

    let mut s = TcpStream::connect(&addr).await.unwrap();
    let old = format!(
        "GET {STREAM} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\r\n",
        user.token
    );
    s.write_all(old.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    assert!(read_until(&mut s, &mut got, "event: unread_count").await);
    assert!(
        got.starts_with(b"HTTP/1.0 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    drop(s);

    let mut s = TcpStream::connect(&addr).await.unwrap();
    let first = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    s.write_all(first.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    assert!(read_until(&mut s, &mut got, "healthy").await);
    s.write_all(stream_request(&addr, &user).as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    assert!(read_until(&mut s, &mut got, "event: unread_count").await);
    // (poem's connections notice a closed client only at their next write,
    // the heartbeat: one more reason the lean path serves the streams.)
}
