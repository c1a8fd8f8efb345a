//! The AI concierge (API.md §3.9, §4.16) against a fake Gemini server: JSON and
//! SSE answers, function calls, generic errors, rate limits.

use mambo_tests::*;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const KEY: &str = "test-gemini-key";
const GENERATE: &str = "/v1beta/models/gemini-2.0-flash:generateContent";
const STREAM: &str = "/v1beta/models/gemini-2.0-flash:streamGenerateContent";

async fn gemini_app(extra: &[(&str, &str)]) -> (TestApp, MockServer) {
    let gemini = MockServer::start().await;
    let uri = gemini.uri();
    let mut vars = vec![("GEMINI_API_KEY", KEY), ("GEMINI_BASE_URL", uri.as_str())];
    vars.extend_from_slice(extra);
    let app = TestApp::spawn_with_vars(&vars).await;
    (app, gemini)
}

fn hello() -> Value {
    json!({"messages": [{"role": "user", "content": "Hola!"}], "stream": false})
}

async fn chat(app: &TestApp, p: &str, body: &Value) -> reqwest::Response {
    app.post(p).json(body).send().await.unwrap()
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

/// The `data:` events of an SSE body, in order.
fn events(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter_map(|ev| {
            ev.lines()
                .find_map(|l| l.strip_prefix("data: "))
                .map(|d| serde_json::from_str(d).unwrap())
        })
        .collect()
}

fn candidate(parts: Value) -> Value {
    json!({"candidates": [{"content": {"role": "model", "parts": parts}, "index": 0}]})
}

fn sse(chunks: &[Value]) -> String {
    chunks
        .iter()
        .map(|c| format!("data: {c}\r\n\r\n"))
        .collect()
}

/// Checks what the API sends to Gemini.
struct GeminiRequest;

impl wiremock::Match for GeminiRequest {
    fn matches(&self, req: &Request) -> bool {
        let Ok(b) = serde_json::from_slice::<Value>(&req.body) else {
            return false;
        };
        let roles: Vec<&str> = b["contents"]
            .as_array()
            .map(|c| c.iter().filter_map(|m| m["role"].as_str()).collect())
            .unwrap_or_default();
        let tools: Vec<&str> = b["tools"][0]["functionDeclarations"]
            .as_array()
            .map(|t| t.iter().filter_map(|f| f["name"].as_str()).collect())
            .unwrap_or_default();
        let safety = b["safetySettings"].as_array().cloned().unwrap_or_default();
        roles == ["user", "model", "model", "user"]
            && b["contents"][3]["parts"][0]["text"] == "Tell me\n\n\nabout plans"
            && b["contents"][0]["parts"][0]["text"] == "Hi"
            && b["systemInstruction"]["parts"][0]["text"]
                .as_str()
                .is_some_and(|s| s.contains("Tito P") && s.contains("€29") && s.contains("€49"))
            && b["generationConfig"]
                == json!({"temperature": 0.8, "topP": 0.95, "topK": 40, "maxOutputTokens": 1024})
            && safety.len() == 4
            && safety
                .iter()
                .all(|s| s["threshold"] == "BLOCK_MEDIUM_AND_ABOVE")
            && tools == ["recommend_membership", "search_knowledge_base"]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_unconfigured_service() {
    let app = TestApp::spawn().await;
    for prefix in ["/api/ai", "/api/ai_chat"] {
        let (s, b) = json(app.get(&format!("{prefix}/status")).send().await.unwrap()).await;
        assert_eq!(s, 200);
        assert_eq!(
            b,
            json!({"available": false, "model": null, "persona": "Tito P", "tools": [],
                   "rate_limit": {"requests_per_window": 20, "window_seconds": 60}})
        );
        let (s, b) = json(chat(&app, &format!("{prefix}/chat"), &hello()).await).await;
        assert_eq!(
            (s, b),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"detail": "AI service not configured. GEMINI_API_KEY not set."})
            )
        );
        let (s, b) = json(
            app.get(&format!("{prefix}/rate-limit"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(b["limit"], 20);
        assert_eq!(b["window_seconds"], 60);
    }

    let (app, _g) = gemini_app(&[("AI_PERSONA", "Tita Q")]).await;
    let (_, b) = json(app.get("/api/ai/status").send().await.unwrap()).await;
    assert_eq!(
        b,
        json!({"available": true, "model": "gemini-2.0-flash", "persona": "Tita Q",
               "tools": ["recommend_membership", "search_knowledge_base"],
               "rate_limit": {"requests_per_window": 20, "window_seconds": 60}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_stream_chat_maps_history_and_runs_the_tool() {
    let (app, gemini) = gemini_app(&[]).await;
    Mock::given(method("POST"))
        .and(path(GENERATE))
        .and(query_param("key", KEY))
        .and(GeminiRequest)
        .respond_with(ResponseTemplate::new(200).set_body_json(candidate(json!([
            {"text": "Magnifico! "},
            {"text": "Full Access suits you."},
            {"functionCall": {"name": "recommend_membership",
                              "args": {"tier": "advanced", "reasoning": "You already dance socially."}}}
        ]))))
        .expect(2)
        .mount(&gemini)
        .await;

    let body = json!({"stream": false, "messages": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hola, amigo!"},
        {"role": "system", "content": "be nice"},
        {"role": "assistant", "content": "  Tell me\n\n\n\n\n\nabout plans  "}
    ]});
    for p in ["/api/ai/chat", "/api/ai_chat/chat"] {
        let resp = chat(&app, p, &body).await;
        assert_eq!(resp.status(), 200);
        assert!(header(&resp, "x-ratelimit-remaining").is_some());
        assert_eq!(header(&resp, "x-ratelimit-reset").as_deref(), Some("60"));
        let (_, b) = json(resp).await;
        assert_eq!(b["content"], "Magnifico! Full Access suits you.");
        assert_eq!(b["rate_limit"]["reset_in_seconds"], 60);
        assert!(b["rate_limit"]["remaining"].as_i64().unwrap() < 20);
        assert_eq!(
            b["function_call"],
            json!({
                "name": "recommend_membership",
                "args": {"tier": "advanced", "reasoning": "You already dance socially."},
                "result": {"type": "recommendation", "reasoning": "You already dance socially.",
                    "tier_info": {"name": "Full Access", "tier": "advanced", "price": "€29", "period": "/mo",
                        "description": "Unlock your full potential",
                        "features": ["Unlimited Course Access", "New Workshops Weekly", "Advanced Partnerwork", "Community Challenges"],
                        "cta": "Start 7-Day Free Trial", "ctaLink": "/pricing", "highlighted": true}}
            })
        );
    }

    // A plain answer has no function_call key.
    let (app2, gemini2) = gemini_app(&[]).await;
    Mock::given(method("POST"))
        .and(path(GENERATE))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(candidate(json!([{"text": "Hola"}]))),
        )
        .mount(&gemini2)
        .await;
    let (s, b) = json(chat(&app2, "/api/ai/chat", &hello()).await).await;
    assert_eq!(s, 200);
    assert_eq!(b["content"], "Hola");
    assert!(b.get("function_call").is_none(), "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_chat_sends_text_function_call_and_done() {
    let (app, gemini) = gemini_app(&[]).await;
    let body = sse(&[
        candidate(json!([{"text": "Hola"}])),
        candidate(json!([{"text": " mi amigo!"}])),
        candidate(
            json!([{"functionCall": {"name": "search_knowledge_base", "args": {"query": "copa"}}}]),
        ),
        candidate(
            json!([{"functionCall": {"name": "recommend_membership", "args": {"tier": "performer", "reasoning": "Stage goals."}}}]),
        ),
    ]);
    Mock::given(method("POST"))
        .and(path(STREAM))
        .and(query_param("alt", "sse"))
        .and(query_param("key", KEY))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(body),
        )
        .mount(&gemini)
        .await;

    let resp = chat(
        &app,
        "/api/ai/chat",
        &json!({"messages": [{"role": "user", "content": "I want to perform"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(
        header(&resp, "content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert_eq!(header(&resp, "cache-control").as_deref(), Some("no-cache"));
    assert_eq!(
        header(&resp, "x-ratelimit-remaining").as_deref(),
        Some("19")
    );
    assert_eq!(header(&resp, "x-ratelimit-reset").as_deref(), Some("60"));
    let text = resp.text().await.unwrap();
    assert!(text.starts_with("data: {"), "{text}");
    let evs = events(&text);
    assert_eq!(evs.len(), 4, "{text}");
    assert_eq!(
        evs[0],
        json!({"type": "text", "content": "Hola", "done": false})
    );
    assert_eq!(
        evs[1],
        json!({"type": "text", "content": " mi amigo!", "done": false})
    );
    // Only the last function call runs.
    assert_eq!(evs[2]["type"], "function_call");
    assert_eq!(evs[2]["name"], "recommend_membership");
    assert_eq!(
        evs[2]["args"],
        json!({"tier": "performer", "reasoning": "Stage goals."})
    );
    assert_eq!(evs[2]["result"]["tier_info"]["name"], "Performer");
    assert_eq!(evs[2]["result"]["tier_info"]["price"], "€49");
    assert_eq!(evs[2]["done"], false);
    assert_eq!(evs[3], json!({"type": "done", "content": "", "done": true}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_errors_are_generic() {
    let (app, gemini) = gemini_app(&[]).await;
    // Mid-stream error: text, then a generic error event and no done event.
    let body = format!(
        "{}data: {}\n\n",
        sse(&[candidate(json!([{"text": "Hola"}]))]),
        json!({"error": {"code": 400, "message": "API key not valid. secret-xyz", "status": "INVALID_ARGUMENT"}})
    );
    Mock::given(method("POST"))
        .and(path(STREAM))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(body),
        )
        .up_to_n_times(1)
        .mount(&gemini)
        .await;
    let resp = chat(
        &app,
        "/api/ai/chat",
        &json!({"messages": [{"role": "user", "content": "hi"}], "stream": true}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(
        !text.contains("secret-xyz") && !text.contains("API key"),
        "{text}"
    );
    let evs = events(&text);
    assert_eq!(evs.len(), 2, "{text}");
    assert_eq!(evs[0]["type"], "text");
    assert_eq!(
        evs[1],
        json!({"type": "error", "error": "Failed to generate response. Please try again.", "done": true})
    );

    // Gemini refusing or down before the stream starts: 502 with a clear detail.
    Mock::given(method("POST"))
        .and(path(STREAM))
        .respond_with(ResponseTemplate::new(400).set_body_string("API key not valid. secret-xyz"))
        .mount(&gemini)
        .await;
    Mock::given(method("POST"))
        .and(path(GENERATE))
        .respond_with(ResponseTemplate::new(503).set_body_string("overloaded secret-xyz"))
        .mount(&gemini)
        .await;
    for stream in [true, false] {
        let (s, b) = json(
            chat(
                &app,
                "/api/ai/chat",
                &json!({"messages": [{"role": "user", "content": "hi"}], "stream": stream}),
            )
            .await,
        )
        .await;
        assert_eq!(s, 502, "stream={stream}: {b}");
        assert_eq!(
            b,
            json!({"detail": "Failed to generate response. Please try again."})
        );
    }

    // Unreachable Gemini: still a bounded 502.
    let dead = TestApp::spawn_with_vars(&[
        ("GEMINI_API_KEY", KEY),
        ("GEMINI_BASE_URL", "http://127.0.0.1:9"),
    ])
    .await;
    for stream in [true, false] {
        let (s, _) = json(
            chat(
                &dead,
                "/api/ai/chat",
                &json!({"messages": [{"role": "user", "content": "hi"}], "stream": stream}),
            )
            .await,
        )
        .await;
        assert_eq!(s, 502);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_422_and_use_no_quota() {
    let app = TestApp::spawn_with_vars(&[("AI_RATE_LIMIT_REQUESTS", "1")]).await;
    let long = "x".repeat(10_001);
    let many: Vec<Value> = (0..51)
        .map(|_| json!({"role": "user", "content": "hi"}))
        .collect();
    let cases = [
        (json!({"messages": []}), json!(["body", "messages"])),
        (json!({"messages": many}), json!(["body", "messages"])),
        (
            json!({"messages": [{"role": "user", "content": ""}]}),
            json!(["body", "messages", 0, "content"]),
        ),
        (
            json!({"messages": [{"role": "user", "content": " \n\t "}]}),
            json!(["body", "messages", 0, "content"]),
        ),
        (
            json!({"messages": [{"role": "user", "content": long}]}),
            json!(["body", "messages", 0, "content"]),
        ),
        (
            json!({"messages": [{"role": "hacker", "content": "hi"}]}),
            json!(["body", "messages", 0, "role"]),
        ),
    ];
    for (body, loc) in cases {
        let (s, b) = json(chat(&app, "/api/ai/chat", &body).await).await;
        assert_eq!(s, 422, "{body}: {b}");
        assert_eq!(b["detail"][0]["loc"], loc, "{b}");
    }
    let (s, b) = json(chat(&app, "/api/ai/chat", &json!({"stream": true})).await).await;
    assert_eq!(s, 422, "{b}");
    // The single request of the window is still available.
    let (s, _) = json(chat(&app, "/api/ai/chat", &hello()).await).await;
    assert_eq!(s, 503);
    let (s, _) = json(chat(&app, "/api/ai/chat", &hello()).await).await;
    assert_eq!(s, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_requests_then_429() {
    // Without a Gemini key every allowed request is a 503 that still uses quota.
    let app = TestApp::spawn().await;
    for i in 0..20 {
        let resp = chat(&app, "/api/ai/chat", &hello()).await;
        assert_eq!(resp.status(), 503, "request {i}");
    }
    let (s, b) = json(app.get("/api/ai/rate-limit").send().await.unwrap()).await;
    assert_eq!(
        (s, b),
        (
            StatusCode::OK,
            json!({"remaining": 0, "limit": 20, "window_seconds": 60})
        )
    );

    let resp = chat(&app, "/api/ai/chat", &hello()).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(header(&resp, "x-ratelimit-remaining").as_deref(), Some("0"));
    assert_eq!(header(&resp, "x-ratelimit-reset").as_deref(), Some("60"));
    let (_, b) = json(resp).await;
    assert_eq!(
        b,
        json!({"detail": {"error": "Rate limit exceeded", "remaining": 0, "reset_in_seconds": 60,
                          "message": "Please wait before sending more messages."}})
    );
    // The alias shares the bucket.
    assert_eq!(
        chat(&app, "/api/ai_chat/chat", &hello()).await.status(),
        429
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_window_rejections_use_no_quota() {
    let app = TestApp::spawn_with_vars(&[
        ("AI_RATE_LIMIT_REQUESTS", "3"),
        ("AI_RATE_LIMIT_WINDOW_SECONDS", "60"),
    ])
    .await;
    let status = |app: &TestApp| {
        let r = app.post("/api/ai/chat").json(&hello());
        async move { r.send().await.unwrap().status() }
    };
    for _ in 0..3 {
        assert_eq!(status(&app).await, 503);
    }
    app.ctx.clock.advance(chrono::Duration::seconds(30));
    for _ in 0..5 {
        assert_eq!(status(&app).await, 429);
    }
    let (_, b) = json(app.get("/api/ai/rate-limit").send().await.unwrap()).await;
    assert_eq!(b["remaining"], 0);
    // The first three leave the window; the rejected ones never entered it.
    app.ctx.clock.advance(chrono::Duration::seconds(31));
    let (_, b) = json(app.get("/api/ai/rate-limit").send().await.unwrap()).await;
    assert_eq!(b, json!({"remaining": 3, "limit": 3, "window_seconds": 60}));
    for _ in 0..3 {
        assert_eq!(status(&app).await, 503);
    }
    assert_eq!(status(&app).await, 429);

    // The key lives in Redis under the app's namespace.
    let mut conn = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:ai_rate_limit:*", app.namespace))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0].rsplit(':').next().unwrap().len(), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_trusted_only_from_proxies() {
    let send = |app: &TestApp, xff: &str, bearer: Option<String>| {
        let mut r = app
            .post("/api/ai/chat")
            .header("X-Forwarded-For", xff)
            .json(&hello());
        if let Some(b) = bearer {
            r = r.header("Authorization", b);
        }
        async move { r.send().await.unwrap().status() }
    };
    // Untrusted peer: a spoofed X-Forwarded-For does not open a new bucket (D32).
    let app = TestApp::spawn_with_vars(&[("AI_RATE_LIMIT_REQUESTS", "2")]).await;
    assert_eq!(send(&app, "1.1.1.1", None).await, 503);
    assert_eq!(send(&app, "1.1.1.1", None).await, 503);
    assert_eq!(send(&app, "2.2.2.2", None).await, 429);
    // A signed-in user has a bucket of their own.
    let user = app.student().await;
    assert_eq!(send(&app, "1.1.1.1", Some(user.bearer())).await, 503);

    // Behind a trusted proxy, the forwarded address is the client.
    let app = TestApp::spawn_with_vars(&[
        ("AI_RATE_LIMIT_REQUESTS", "2"),
        ("TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    assert_eq!(send(&app, "1.1.1.1", None).await, 503);
    assert_eq!(send(&app, "1.1.1.1", None).await, 503);
    assert_eq!(send(&app, "1.1.1.1", None).await, 429);
    assert_eq!(send(&app, "2.2.2.2", None).await, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_open() {
    let app = TestApp::spawn_with(Options {
        worker: false,
        vars: vec![
            ("REDIS_URL".into(), "redis://127.0.0.1:1".into()),
            ("AI_RATE_LIMIT_REQUESTS".into(), "1".into()),
        ],
    })
    .await;
    for _ in 0..3 {
        let (s, b) = json(chat(&app, "/api/ai/chat", &hello()).await).await;
        assert_eq!(s, 503, "{b}");
    }
    let (s, b) = json(app.get("/api/ai/rate-limit").send().await.unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!(b["limit"], 1);
}

/// A fake Gemini that streams a chunk every 100 ms until its client goes away.
async fn endless_gemini() -> (String, tokio::sync::oneshot::Receiver<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 65536];
        let mut seen = Vec::new();
        // Read the request head and body (Content-Length).
        loop {
            let n = sock.read(&mut buf).await.unwrap();
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let len = text[..end]
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if seen.len() >= end + 4 + len {
                    break;
                }
            }
        }
        sock.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
        )
        .await
        .unwrap();
        for _ in 0..200 {
            let ev = format!("data: {}\r\n\r\n", candidate(json!([{"text": "la "}])));
            let chunk = format!("{:x}\r\n{ev}\r\n", ev.len());
            if sock.write_all(chunk.as_bytes()).await.is_err() {
                let _ = tx.send(());
                return;
            }
            match tokio::time::timeout(Duration::from_millis(100), sock.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    let _ = tx.send(());
                    return;
                }
                _ => {}
            }
        }
    });
    (format!("http://{addr}"), rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_stops_the_upstream_request() {
    let (base, closed) = endless_gemini().await;
    let app =
        TestApp::spawn_with_vars(&[("GEMINI_API_KEY", KEY), ("GEMINI_BASE_URL", &base)]).await;
    let resp = chat(
        &app,
        "/api/ai/chat",
        &json!({"messages": [{"role": "user", "content": "sing"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    use futures::StreamExt;
    let first = stream.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("\"type\":\"text\""));
    drop(stream);
    tokio::time::timeout(Duration::from_secs(10), closed)
        .await
        .expect("upstream closed after the client left")
        .unwrap();
}
