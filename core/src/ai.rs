//! The AI concierge "Tito P" on Gemini (API.md §3.9, §4.16; D32, D36).
//!
//! Gemini is called over REST through `ctx.http` against
//! `config.gemini_base_url` (`generateContent`, and `streamGenerateContent`
//! with `alt=sse` for streaming). The chat is rate-limited per client with a
//! sliding window in Redis (a sorted set of request times) shared by every
//! replica; a rejected request does not use quota, and a Redis failure lets
//! the request through with a warning.

use crate::{Config, Context, Error, Result};
use futures::stream::{BoxStream, StreamExt};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Duration;
use uuid::Uuid;

pub const MODEL: &str = "gemini-2.0-flash";
pub const TOOL_NAMES: [&str; 2] = ["recommend_membership", "search_knowledge_base"];
pub const MSG_NOT_CONFIGURED: &str = "AI service not configured. GEMINI_API_KEY not set.";
/// The one message a client sees when generation fails (never the provider's text).
pub const MSG_FAILED: &str = "Failed to generate response. Please try again.";
pub const MAX_MESSAGES: usize = 50;
pub const MAX_CONTENT_CHARS: usize = 10_000;

/// How long to wait for Gemini to start answering.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a stream may stay silent between chunks.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound for a whole streamed answer.
const STREAM_TIMEOUT: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

/// One message of the conversation, validated and sanitized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// Trims and collapses runs of 4+ newlines to 3 (§3.9).
pub fn sanitize_content(raw: &str) -> String {
    let trimmed = raw.trim();
    let mut out = String::with_capacity(trimmed.len());
    let mut newlines = 0;
    for c in trimmed.chars() {
        if c == '\n' {
            newlines += 1;
            if newlines <= 3 {
                out.push(c);
            }
        } else {
            newlines = 0;
            out.push(c);
        }
    }
    out
}

const ROLE_PATTERN: &str = "^(user|assistant|system)$";

/// Validates the request's messages like the reference's pydantic model:
/// 1..50 items; role user|assistant|system; content 1..10000 characters (and
/// not blank once trimmed). Errors are FastAPI's 422 list.
pub fn validate_messages(messages: Vec<(String, String)>) -> Result<Vec<ChatMessage>> {
    let mut errors: Vec<Value> = Vec::new();
    let n = messages.len();
    if n == 0 {
        errors.push(json!({
            "type": "too_short", "loc": ["body", "messages"],
            "msg": "List should have at least 1 item after validation, not 0",
            "input": [], "ctx": {"field_type": "List", "min_length": 1, "actual_length": 0}
        }));
    } else if n > MAX_MESSAGES {
        errors.push(json!({
            "type": "too_long", "loc": ["body", "messages"],
            "msg": format!("List should have at most {MAX_MESSAGES} items after validation, not {n}"),
            "input": Value::Null, "ctx": {"field_type": "List", "max_length": MAX_MESSAGES, "actual_length": n}
        }));
    }
    if !errors.is_empty() {
        return Err(Error::with_object(422, Value::Array(errors)));
    }
    let mut out = Vec::with_capacity(n);
    for (i, (role, content)) in messages.into_iter().enumerate() {
        if !matches!(role.as_str(), "user" | "assistant" | "system") {
            errors.push(json!({
                "type": "string_pattern_mismatch", "loc": ["body", "messages", i, "role"],
                "msg": format!("String should match pattern '{ROLE_PATTERN}'"),
                "input": role, "ctx": {"pattern": ROLE_PATTERN}
            }));
        }
        let chars = content.chars().count();
        let clean = sanitize_content(&content);
        if chars > MAX_CONTENT_CHARS || clean.chars().count() > MAX_CONTENT_CHARS {
            errors.push(json!({
                "type": "string_too_long", "loc": ["body", "messages", i, "content"],
                "msg": format!("String should have at most {MAX_CONTENT_CHARS} characters"),
                "input": Value::Null, "ctx": {"max_length": MAX_CONTENT_CHARS}
            }));
        } else if clean.is_empty() {
            errors.push(json!({
                "type": "string_too_short", "loc": ["body", "messages", i, "content"],
                "msg": "String should have at least 1 character",
                "input": content, "ctx": {"min_length": 1}
            }));
        }
        out.push(ChatMessage {
            role,
            content: clean,
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(Error::with_object(422, Value::Array(errors)))
    }
}

// ---------------------------------------------------------------------------
// Persona, tools, request body
// ---------------------------------------------------------------------------

pub fn is_configured(config: &Config) -> bool {
    config.gemini_api_key.is_some()
}

/// What `GET /status` reports (§3.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub available: bool,
    pub model: Option<&'static str>,
    pub persona: String,
    pub tools: Vec<&'static str>,
    pub requests_per_window: i64,
    pub window_seconds: i64,
}

pub fn status(config: &Config) -> Status {
    let available = is_configured(config);
    Status {
        available,
        model: available.then_some(MODEL),
        persona: config.ai_persona.clone(),
        tools: if available {
            TOOL_NAMES.to_vec()
        } else {
            vec![]
        },
        requests_per_window: config.ai_rate_limit_requests,
        window_seconds: config.ai_rate_limit_window_seconds,
    }
}

/// The system prompt (§4.16). `AI_SYSTEM_PROMPT` replaces it; `{persona}` in
/// either is the configured name.
pub fn system_prompt(config: &Config) -> String {
    let template = config
        .ai_system_prompt
        .as_deref()
        .unwrap_or(DEFAULT_SYSTEM_PROMPT);
    template.replace("{persona}", &config.ai_persona)
}

const DEFAULT_SYSTEM_PROMPT: &str = r#"You are '{persona}', the head concierge of The Mambo Guild, an online school for salsa On2 (mambo).

STYLE:
- Warm, charming and sophisticated, like the host of the finest dance club in 1920s Havana.
- Use a little Spanish naturally (Hola, mi amigo, magnifico), never too much.
- Stay in character: you ARE {persona}, not an AI assistant.

MISSION:
You are a consultant and a guide, NOT a pushy salesman. Help each guest find the membership that fits their journey:
- Rookie (Free): for complete beginners taking their first steps.
- Advanced (€29/mo): unlimited courses, new workshops and partnerwork for dancers ready to grow.
- Performer (€49/mo): everything in Advanced plus video reviews, direct chat with instructors and a certified badge.

CONSULTATION:
1. Before recommending anything, ask 2-3 qualifying questions, one at a time:
   - Are they taking their first steps, or already dancing? (experience)
   - What draws them to salsa: social dancing, fitness, or the artistry? (motivation)
   - Do they struggle more with timing/rhythm or with partnering (leading/following)?
   - Do they want to dance socially, or do they have performance goals?
2. Only call recommend_membership once you understand their needs.

RULES:
1. Keep every reply to at most 3 sentences.
2. No hard-sell phrases: never say "Buy now"; prefer "Reserve your spot" or "Step onto the stage".
3. No monologues or sales pitches. Be genuinely helpful.
4. For deep or technical dance questions (steps, technique, history, musicality), use the search_knowledge_base tool."#;

fn tool_declarations() -> Value {
    json!([{
        "functionDeclarations": [
            {
                "name": "recommend_membership",
                "description": "Call this when you have identified the user's dance level and goals and want to present a specific membership tier. Only call after asking at least one qualifying question.",
                "parameters": {
                    "type": "OBJECT",
                    "properties": {
                        "tier": {
                            "type": "STRING",
                            "enum": ["rookie", "advanced", "performer"],
                            "description": "The membership tier to recommend"
                        },
                        "reasoning": {
                            "type": "STRING",
                            "description": "A brief, personalized explanation of why this tier fits their needs (1-2 sentences)"
                        }
                    },
                    "required": ["tier", "reasoning"]
                }
            },
            {
                "name": "search_knowledge_base",
                "description": "Call this when the user asks a specific technical question about salsa steps, techniques, history or musicality that needs detailed information.",
                "parameters": {
                    "type": "OBJECT",
                    "properties": {
                        "query": {
                            "type": "STRING",
                            "description": "The technical dance question to search for"
                        }
                    },
                    "required": ["query"]
                }
            }
        ]
    }])
}

/// The `generateContent` body: history (user → user, anything else → model),
/// the last message as the new user turn, persona, tools and settings.
pub fn request_body(config: &Config, messages: &[ChatMessage]) -> Value {
    let mut contents: Vec<Value> = Vec::with_capacity(messages.len());
    if let Some((last, history)) = messages.split_last() {
        for m in history {
            let role = if m.role == "user" { "user" } else { "model" };
            contents.push(json!({ "role": role, "parts": [{ "text": m.content }] }));
        }
        contents.push(json!({ "role": "user", "parts": [{ "text": last.content }] }));
    }
    let safety: Vec<Value> = [
        "HARM_CATEGORY_HARASSMENT",
        "HARM_CATEGORY_HATE_SPEECH",
        "HARM_CATEGORY_SEXUALLY_EXPLICIT",
        "HARM_CATEGORY_DANGEROUS_CONTENT",
    ]
    .iter()
    .map(|c| json!({ "category": c, "threshold": "BLOCK_MEDIUM_AND_ABOVE" }))
    .collect();
    json!({
        "systemInstruction": { "parts": [{ "text": system_prompt(config) }] },
        "contents": contents,
        "tools": tool_declarations(),
        "generationConfig": {
            "temperature": 0.8,
            "topP": 0.95,
            "topK": 40,
            "maxOutputTokens": 1024
        },
        "safetySettings": safety,
    })
}

/// The card the frontend renders for a tier (§4.16). Unknown → rookie.
pub fn tier_card(tier: &str) -> Value {
    match tier {
        "advanced" => json!({
            "name": "Full Access",
            "tier": "advanced",
            "price": "€29",
            "period": "/mo",
            "description": "Unlock your full potential",
            "features": [
                "Unlimited Course Access",
                "New Workshops Weekly",
                "Advanced Partnerwork",
                "Community Challenges"
            ],
            "cta": "Start 7-Day Free Trial",
            "ctaLink": "/pricing",
            "highlighted": true
        }),
        "performer" => json!({
            "name": "Performer",
            "tier": "performer",
            "price": "€49",
            "period": "/mo",
            "description": "For the dedicated artist",
            "features": [
                "Everything in Advanced",
                "1 Video Review / Month",
                "Direct Chat with Instructors",
                "Certified Badge on Profile"
            ],
            "cta": "Step Onto The Stage",
            "ctaLink": "/pricing"
        }),
        _ => json!({
            "name": "Guest List",
            "tier": "rookie",
            "price": "Free",
            "period": "Forever",
            "description": "Perfect for taking your first steps",
            "features": [
                "1 Free Course Access",
                "1 Free Workshop / Month",
                "Community Access"
            ],
            "cta": "Create Free Account",
            "ctaLink": "/register"
        }),
    }
}

fn arg_str<'a>(args: &'a Value, key: &str, default: &'a str) -> &'a str {
    args.get(key).and_then(Value::as_str).unwrap_or(default)
}

/// Runs a tool the model called.
pub fn execute_tool(name: &str, args: &Value) -> Value {
    match name {
        "recommend_membership" => json!({
            "type": "recommendation",
            "tier_info": tier_card(arg_str(args, "tier", "rookie")),
            "reasoning": arg_str(args, "reasoning", ""),
        }),
        "search_knowledge_base" => {
            let query = arg_str(args, "query", "");
            json!({
                "type": "knowledge_base",
                "query": query,
                "result": format!(
                    "That's a great question about '{query}'! Our detailed knowledge base with step-by-step tutorials is coming soon. In the meantime, I'd recommend checking out our beginner courses, which cover the fundamentals thoroughly. Would you like me to tell you more about our course offerings?"
                ),
            })
        }
        other => json!({ "type": "error", "message": format!("Unknown tool: {other}") }),
    }
}

/// A function call made by the model, with its executed result.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionCall {
    pub name: String,
    pub args: Value,
    pub result: Value,
}

impl FunctionCall {
    fn run(name: String, args: Value) -> Self {
        let args = if args.is_object() { args } else { json!({}) };
        let result = execute_tool(&name, &args);
        Self { name, args, result }
    }
}

/// Text parts and the last function call of one `GenerateContentResponse`.
fn parts_of(chunk: &Value) -> (Vec<String>, Option<(String, Value)>) {
    let mut texts = Vec::new();
    let mut call = None;
    if let Some(parts) = chunk["candidates"][0]["content"]["parts"].as_array() {
        for p in parts {
            if let Some(t) = p["text"].as_str().filter(|t| !t.is_empty()) {
                texts.push(t.to_string());
            }
            if let Some(name) = p["functionCall"]["name"].as_str() {
                call = Some((name.to_string(), p["functionCall"]["args"].clone()));
            }
        }
    }
    (texts, call)
}

/// Why Gemini failed (logged, never shown to the client).
fn upstream_failure(what: &str, detail: impl std::fmt::Display) -> Error {
    tracing::error!(error = %detail, "Gemini {what} failed");
    Error::http(502, MSG_FAILED)
}

fn endpoint(config: &Config, method: &str, key: &str) -> String {
    let base = &config.gemini_base_url;
    let enc: String = url::form_urlencoded::byte_serialize(key.as_bytes()).collect();
    match method {
        "stream" => format!("{base}/v1beta/models/{MODEL}:streamGenerateContent?alt=sse&key={enc}"),
        _ => format!("{base}/v1beta/models/{MODEL}:generateContent?key={enc}"),
    }
}

fn api_key(config: &Config) -> Result<&str> {
    config
        .gemini_api_key
        .as_ref()
        .map(|k| k.expose())
        .ok_or_else(|| Error::unavailable(MSG_NOT_CONFIGURED))
}

/// A short, key-free excerpt of an error body for the logs.
async fn error_excerpt(resp: reqwest::Response) -> String {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    let excerpt: String = body.chars().take(300).collect();
    format!("HTTP {status}: {excerpt}")
}

/// The non-streaming answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub content: String,
    pub function_call: Option<FunctionCall>,
}

/// `stream=false`: one `generateContent` call.
pub async fn chat(ctx: &Context, messages: &[ChatMessage]) -> Result<Reply> {
    let key = api_key(&ctx.config)?;
    let resp = ctx
        .http
        .post(endpoint(&ctx.config, "once", key))
        .json(&request_body(&ctx.config, messages))
        .send()
        .await
        .map_err(|e| upstream_failure("request", e.without_url()))?;
    if !resp.status().is_success() {
        return Err(upstream_failure("request", error_excerpt(resp).await));
    }
    let body: Value = resp
        .json()
        .await
        .map_err(|e| upstream_failure("response", e.without_url()))?;
    if body.get("error").is_some() {
        return Err(upstream_failure("response", &body["error"]));
    }
    let (texts, call) = parts_of(&body);
    Ok(Reply {
        content: texts.concat(),
        function_call: call.map(|(name, args)| FunctionCall::run(name, args)),
    })
}

// ---------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------

pub fn text_event(content: &str) -> Value {
    json!({ "type": "text", "content": content, "done": false })
}

pub fn function_call_event(fc: &FunctionCall) -> Value {
    json!({ "type": "function_call", "name": fc.name, "args": fc.args, "result": fc.result, "done": false })
}

pub fn done_event() -> Value {
    json!({ "type": "done", "content": "", "done": true })
}

pub fn error_event() -> Value {
    json!({ "type": "error", "error": MSG_FAILED, "done": true })
}

/// Splits an SSE byte stream into the `data` payloads of its events.
#[derive(Default)]
struct SseParser {
    buf: Vec<u8>,
}

impl SseParser {
    /// Feeds bytes; returns the data of every complete event.
    fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buf
            .extend(bytes.iter().copied().filter(|b| *b != b'\r'));
        let mut out = Vec::new();
        while let Some(pos) = self.buf.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = self.buf.drain(..pos + 2).collect();
            if let Some(data) = Self::data_of(&event[..pos]) {
                out.push(data);
            }
        }
        out
    }

    /// The last, unterminated event (if the stream ends without a blank line).
    fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.buf);
        Self::data_of(&rest)
    }

    fn data_of(event: &[u8]) -> Option<String> {
        let text = String::from_utf8_lossy(event);
        let lines: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        if lines.is_empty() {
            None
        } else {
            Some(lines.join("\n"))
        }
    }
}

struct StreamState {
    upstream: Option<BoxStream<'static, reqwest::Result<Vec<u8>>>>,
    parser: SseParser,
    pending: VecDeque<Value>,
    call: Option<(String, Value)>,
    finished: bool,
}

impl StreamState {
    /// Handles one upstream event; false when it is an error.
    fn on_data(&mut self, data: &str) -> bool {
        let data = data.trim();
        if data.is_empty() || data == "[DONE]" {
            return true;
        }
        let chunk: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "Gemini stream sent invalid JSON");
                return false;
            }
        };
        if chunk.get("error").is_some() {
            tracing::error!(error = %chunk["error"], "Gemini stream error");
            return false;
        }
        if chunk["candidates"].as_array().is_none_or(|c| c.is_empty())
            && chunk["promptFeedback"]["blockReason"].is_string()
        {
            tracing::warn!(reason = %chunk["promptFeedback"]["blockReason"], "Gemini blocked the prompt");
            return false;
        }
        let (texts, call) = parts_of(&chunk);
        for t in texts {
            self.pending.push_back(text_event(&t));
        }
        if call.is_some() {
            self.call = call;
        }
        true
    }

    fn fail(&mut self) {
        self.pending.push_back(error_event());
        self.finished = true;
        self.upstream = None;
    }

    fn complete(&mut self) {
        if let Some(data) = self.parser.finish()
            && !self.on_data(&data)
        {
            return self.fail();
        }
        if let Some((name, args)) = self.call.take() {
            let fc = FunctionCall::run(name, args);
            self.pending.push_back(function_call_event(&fc));
        }
        self.pending.push_back(done_event());
        self.finished = true;
        self.upstream = None;
    }
}

/// `stream=true`: opens the upstream `streamGenerateContent` call and returns
/// the §4.16 events. A failure before Gemini starts answering is a 502; after
/// that, the stream ends with a generic error event. Dropping the returned
/// stream (client gone) drops the upstream request.
pub async fn chat_stream(
    ctx: &Context,
    messages: &[ChatMessage],
) -> Result<BoxStream<'static, Value>> {
    let key = api_key(&ctx.config)?;
    let send = ctx
        .http
        .post(endpoint(&ctx.config, "stream", key))
        .timeout(STREAM_TIMEOUT)
        .header("Accept", "text/event-stream")
        .json(&request_body(&ctx.config, messages))
        .send();
    let resp = match tokio::time::timeout(FIRST_BYTE_TIMEOUT, send).await {
        Err(_) => return Err(upstream_failure("stream", "timed out")),
        Ok(Err(e)) => return Err(upstream_failure("stream", e.without_url())),
        Ok(Ok(r)) => r,
    };
    if !resp.status().is_success() {
        return Err(upstream_failure("stream", error_excerpt(resp).await));
    }
    let state = StreamState {
        upstream: Some(resp.bytes_stream().map(|r| r.map(|b| b.to_vec())).boxed()),
        parser: SseParser::default(),
        pending: VecDeque::new(),
        call: None,
        finished: false,
    };
    let stream = futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(ev) = st.pending.pop_front() {
                return Some((ev, st));
            }
            if st.finished {
                return None;
            }
            let Some(up) = st.upstream.as_mut() else {
                st.complete();
                continue;
            };
            match tokio::time::timeout(IDLE_TIMEOUT, up.next()).await {
                Ok(Some(Ok(bytes))) => {
                    for data in st.parser.push(&bytes) {
                        if !st.on_data(&data) {
                            st.fail();
                            break;
                        }
                    }
                }
                Ok(Some(Err(e))) => {
                    tracing::error!(error = %e.without_url(), "Gemini stream broke");
                    st.fail();
                }
                Ok(None) => st.complete(),
                Err(_) => {
                    tracing::error!("Gemini stream went silent");
                    st.fail();
                }
            }
        }
    });
    Ok(stream.boxed())
}

// ---------------------------------------------------------------------------
// Rate limit
// ---------------------------------------------------------------------------

/// The rate-limit key: a signed-in user is limited per user, anyone else per
/// client address (`X-Forwarded-For` only from trusted proxies, D32). First
/// 16 hex characters of a SHA-256, so no address is stored in Redis.
pub fn client_id(user: Option<Uuid>, ip: Option<IpAddr>) -> String {
    let raw = match (user, ip) {
        (Some(u), _) => format!("user:{u}"),
        (None, Some(ip)) => ip.to_string(),
        (None, None) => "unknown".to_string(),
    };
    let digest = Sha256::digest(raw.as_bytes());
    hex::encode(digest)[..16].to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    pub remaining: i64,
    pub limit: i64,
    pub reset_in_seconds: i64,
}

/// Drops old entries; counts; adds this request only when under the limit.
const HIT_SCRIPT: &str = r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1] - ARGV[2])
local count = redis.call('ZCARD', KEYS[1])
if count >= tonumber(ARGV[3]) then
  return {0, count}
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, count + 1}
"#;

const PEEK_SCRIPT: &str = r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1] - ARGV[2])
return redis.call('ZCARD', KEYS[1])
"#;

fn window(config: &Config) -> (i64, i64) {
    (
        config.ai_rate_limit_requests.max(0),
        config.ai_rate_limit_window_seconds.max(1),
    )
}

fn rate_key(ctx: &Context, client_id: &str) -> String {
    ctx.redis.key(&format!("ai_rate_limit:{client_id}"))
}

/// Counts this request against the client's window (§4.16).
pub async fn rate_limit_hit(ctx: &Context, client_id: &str) -> RateDecision {
    let (limit, secs) = window(&ctx.config);
    let now_ms = ctx.clock.now().timestamp_millis();
    let member = format!("{now_ms}-{}", Uuid::new_v4().simple());
    let mut conn = ctx.redis.conn();
    let res: redis::RedisResult<Vec<i64>> = redis::cmd("EVAL")
        .arg(HIT_SCRIPT)
        .arg(1)
        .arg(rate_key(ctx, client_id))
        .arg(now_ms)
        .arg(secs * 1000)
        .arg(limit)
        .arg(member)
        .query_async(&mut conn)
        .await;
    match res {
        Ok(v) if v.len() == 2 => RateDecision {
            allowed: v[0] == 1,
            remaining: if v[0] == 1 { (limit - v[1]).max(0) } else { 0 },
            limit,
            reset_in_seconds: secs,
        },
        other => {
            tracing::warn!(result = ?other, "AI rate limit unavailable (Redis); allowing the request");
            RateDecision {
                allowed: true,
                remaining: limit,
                limit,
                reset_in_seconds: secs,
            }
        }
    }
}

/// `GET /rate-limit`: prunes and counts without using quota.
pub async fn rate_limit_peek(ctx: &Context, client_id: &str) -> RateDecision {
    let (limit, secs) = window(&ctx.config);
    let now_ms = ctx.clock.now().timestamp_millis();
    let mut conn = ctx.redis.conn();
    let res: redis::RedisResult<i64> = redis::cmd("EVAL")
        .arg(PEEK_SCRIPT)
        .arg(1)
        .arg(rate_key(ctx, client_id))
        .arg(now_ms)
        .arg(secs * 1000)
        .query_async(&mut conn)
        .await;
    let count = match res {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "AI rate limit unavailable (Redis)");
            0
        }
    };
    RateDecision {
        allowed: count < limit,
        remaining: (limit - count).max(0),
        limit,
        reset_in_seconds: secs,
    }
}

/// The 429 body's `detail` (§3.9).
pub fn rate_limited_detail(decision: &RateDecision) -> Value {
    json!({
        "error": "Rate limit exceeded",
        "remaining": 0,
        "reset_in_seconds": decision.reset_in_seconds,
        "message": "Please wait before sending more messages.",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn content_is_trimmed_and_newlines_collapse() {
        assert_eq!(sanitize_content("  hi \n"), "hi");
        assert_eq!(sanitize_content("a\n\n\n\n\n\nb"), "a\n\n\nb");
        assert_eq!(sanitize_content("a\n\n\nb"), "a\n\n\nb");
    }

    #[test]
    fn validation_follows_the_contract() {
        assert!(validate_messages(vec![]).is_err());
        assert!(validate_messages(vec![("user".into(), "   ".into())]).is_err());
        assert!(validate_messages(vec![("robot".into(), "hi".into())]).is_err());
        assert!(validate_messages(vec![("user".into(), "x".repeat(10_001))]).is_err());
        assert!(validate_messages(vec![("user".into(), "x".repeat(10_000))]).is_ok());
        let many = (0..51)
            .map(|_| ("user".to_string(), "hi".to_string()))
            .collect();
        assert!(validate_messages(many).is_err());
        let err = validate_messages(vec![("user".into(), "".into())]).unwrap_err();
        assert_eq!(err.status(), 422);
    }

    #[test]
    fn history_maps_roles_and_the_last_message_is_the_user_turn() {
        let config = Config::from_map(&HashMap::new()).unwrap();
        let msgs = vec![
            ChatMessage {
                role: "user".into(),
                content: "a".into(),
            },
            ChatMessage {
                role: "assistant".into(),
                content: "b".into(),
            },
            ChatMessage {
                role: "system".into(),
                content: "c".into(),
            },
            ChatMessage {
                role: "assistant".into(),
                content: "d".into(),
            },
        ];
        let body = request_body(&config, &msgs);
        let roles: Vec<&str> = body["contents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["user", "model", "model", "user"]);
        assert_eq!(body["contents"][3]["parts"][0]["text"], "d");
        assert!(
            body["systemInstruction"]["parts"][0]["text"]
                .as_str()
                .unwrap()
                .contains("Tito P")
        );
        assert_eq!(body["generationConfig"]["topK"], 40);
    }

    #[test]
    fn tools() {
        let r = execute_tool(
            "recommend_membership",
            &json!({"tier": "advanced", "reasoning": "r"}),
        );
        assert_eq!(r["tier_info"]["highlighted"], true);
        assert_eq!(r["tier_info"]["price"], "€29");
        let r = execute_tool("recommend_membership", &json!({"tier": "nope"}));
        assert_eq!(r["tier_info"]["tier"], "rookie");
        assert!(r["tier_info"].get("highlighted").is_none());
        let r = execute_tool("search_knowledge_base", &json!({"query": "copa"}));
        assert_eq!(r["type"], "knowledge_base");
        assert!(r["result"].as_str().unwrap().contains("copa"));
        let r = execute_tool("dance", &json!({}));
        assert_eq!(
            r,
            json!({"type": "error", "message": "Unknown tool: dance"})
        );
    }

    #[test]
    fn sse_parser_handles_split_chunks_and_crlf() {
        let mut p = SseParser::default();
        assert!(p.push(b"data: {\"a\":").is_empty());
        assert_eq!(
            p.push(b"1}\r\n\r\ndata: {\"b\":2}\n\n"),
            vec!["{\"a\":1}", "{\"b\":2}"]
        );
        assert!(p.push(b"data: [DONE]").is_empty());
        assert_eq!(p.finish().as_deref(), Some("[DONE]"));
    }

    #[test]
    fn client_ids_are_short_hashes() {
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let a = client_id(None, Some(ip));
        assert_eq!(a.len(), 16);
        assert_ne!(a, client_id(Some(Uuid::nil()), Some(ip)));
        assert_eq!(a, client_id(None, Some(ip)));
    }
}
