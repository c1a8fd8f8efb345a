//! What HTTP caches and clients see (issue 20): compressed responses (gzip,
//! brotli) over 1 KiB when the client accepts them, never event streams.

use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder};
use mambo_tests::*;
use tokio::io::AsyncReadExt;

async fn decode(encoding: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "br" => BrotliDecoder::new(body)
            .read_to_end(&mut out)
            .await
            .unwrap(),
        "gzip" => GzipDecoder::new(body).read_to_end(&mut out).await.unwrap(),
        other => panic!("unexpected encoding {other}"),
    };
    out
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .reduce(|a, b| format!("{a}, {b}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_text_responses_are_compressed_as_the_client_accepts() {
    let app = TestApp::spawn_api_only().await;
    let plain = app.get("/openapi.json").send().await.unwrap();
    assert_eq!(plain.status(), 200);
    assert_eq!(header(&plain, "content-encoding"), None);
    assert!(
        header(&plain, "vary")
            .unwrap()
            .to_lowercase()
            .contains("accept-encoding")
    );
    let identity = plain.bytes().await.unwrap();
    assert!(identity.len() > 100_000);

    for (accept, expect) in [
        ("gzip", "gzip"),
        ("br", "br"),
        ("gzip, deflate, br", "br"),
        ("br;q=0.5, gzip", "gzip"),
    ] {
        let resp = app
            .get("/openapi.json")
            .header("Accept-Encoding", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            header(&resp, "content-encoding").as_deref(),
            Some(expect),
            "{accept}"
        );
        let body = resp.bytes().await.unwrap();
        assert!(
            body.len() * 4 < identity.len(),
            "{accept}: {} bytes",
            body.len()
        );
        assert_eq!(decode(expect, &body).await, identity, "{accept}");
    }

    // A JSON list over 1 KiB through the API's own routes.
    let user = app.student().await;
    let resp = app
        .get("/api/badges/")
        .header("Authorization", user.bearer())
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-encoding").as_deref(), Some("gzip"));
    let badges: serde_json::Value =
        serde_json::from_slice(&decode("gzip", &resp.bytes().await.unwrap()).await).unwrap();
    assert_eq!(badges.as_array().unwrap().len(), 38);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_responses_and_event_streams_are_never_compressed() {
    let app = TestApp::spawn_api_only().await;
    let user = app.student().await;
    // Small JSON (well under 1 KiB).
    let resp = app
        .get("/api/notifications/unread-count")
        .header("Authorization", user.bearer())
        .header("Accept-Encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-encoding"), None);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["unread_count"], 0);

    // The notification stream stays an uncompressed event stream.
    let mut resp = app
        .get("/api/notifications/stream")
        .header("Authorization", user.bearer())
        .header("Accept-Encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        header(&resp, "content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert_eq!(header(&resp, "content-encoding"), None);
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), resp.chunk())
        .await
        .expect("the stream sends its first event at once")
        .unwrap()
        .unwrap();
    assert!(std::str::from_utf8(&first).is_ok(), "plain text events");
}
