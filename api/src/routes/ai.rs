//! The AI concierge (API.md §3.9, §4.16), served under both `/api/ai/*` (what
//! the frontend calls) and `/api/ai_chat/*` (the seed's prefix).

use crate::auth::OptionalAuth;
use crate::error::{ApiResult, ErrorBody};
use crate::middleware::client_ip;
use crate::state::AppState;
use futures::stream::BoxStream;
use mambo_core::ai;
use poem::Request;
use poem::web::Data;
use poem_openapi::payload::{EventStream, Json};
use poem_openapi::{ApiResponse, Object, OpenApi, ResponseContent};
use serde_json::Value;

pub struct AiApi;

#[derive(Object, Debug)]
pub struct ChatMessageIn {
    /// `user`, `assistant` or `system`
    role: String,
    /// 1..10000 characters; trimmed, runs of 4+ newlines collapse to 3
    content: String,
}

#[derive(Object, Debug)]
pub struct ChatRequest {
    /// 1..50 messages; the last one is the new user turn
    messages: Vec<ChatMessageIn>,
    /// Server-sent events when true (the default)
    stream: Option<bool>,
}

#[derive(Object, Debug)]
pub struct ChatRateLimit {
    remaining: i64,
    reset_in_seconds: i64,
}

#[derive(Object, Debug)]
pub struct ChatFunctionCall {
    name: String,
    args: Value,
    result: Value,
}

#[derive(Object, Debug)]
pub struct ChatReply {
    content: String,
    rate_limit: ChatRateLimit,
    #[oai(skip_serializing_if_is_none)]
    function_call: Option<ChatFunctionCall>,
}

#[derive(ResponseContent)]
pub enum ChatBody {
    /// `stream=false`
    Json(Json<ChatReply>),
    /// `stream=true`: `data: {"type": "text"|"function_call"|"done"|"error", ...}` events
    Stream(EventStream<BoxStream<'static, Value>>),
}

#[derive(ApiResponse)]
pub enum ChatResponse {
    /// The answer (JSON or server-sent events)
    #[oai(status = 200)]
    Ok(
        ChatBody,
        #[oai(header = "X-RateLimit-Remaining")] String,
        #[oai(header = "X-RateLimit-Reset")] String,
        #[oai(header = "Cache-Control")] Option<String>,
        #[oai(header = "Connection")] Option<String>,
    ),
    /// Too many messages in the window
    #[oai(status = 429)]
    RateLimited(
        Json<ErrorBody>,
        #[oai(header = "X-RateLimit-Remaining")] String,
        #[oai(header = "X-RateLimit-Reset")] String,
        #[oai(header = "Retry-After")] String,
    ),
}

#[derive(Object, Debug)]
pub struct RateLimitSettings {
    requests_per_window: i64,
    window_seconds: i64,
}

#[derive(Object, Debug)]
pub struct AiStatus {
    available: bool,
    /// `gemini-2.0-flash`, or null when the service is not configured
    model: Option<String>,
    persona: String,
    tools: Vec<String>,
    rate_limit: RateLimitSettings,
}

#[derive(Object, Debug)]
pub struct RateLimitStatus {
    remaining: i64,
    limit: i64,
    window_seconds: i64,
}

async fn chat(
    state: &AppState,
    req: &Request,
    auth: &OptionalAuth,
    body: ChatRequest,
) -> ApiResult<ChatResponse> {
    let ctx = &state.ctx;
    let messages = ai::validate_messages(
        body.messages
            .into_iter()
            .map(|m| (m.role, m.content))
            .collect(),
    )?;
    let client = ai::client_id(auth.user().map(|u| u.id), client_ip(req, &ctx.config));
    let decision = ai::rate_limit_hit(ctx, &client).await;
    let reset = decision.reset_in_seconds.to_string();
    if !decision.allowed {
        return Ok(ChatResponse::RateLimited(
            Json(ErrorBody {
                detail: ai::rate_limited_detail(&decision),
            }),
            "0".into(),
            reset.clone(),
            reset,
        ));
    }
    let remaining = decision.remaining.to_string();
    if body.stream.unwrap_or(true) {
        let events = ai::chat_stream(ctx, &messages).await?;
        Ok(ChatResponse::Ok(
            ChatBody::Stream(EventStream::new(events)),
            remaining,
            reset,
            Some("no-cache".into()),
            Some("keep-alive".into()),
        ))
    } else {
        let reply = ai::chat(ctx, &messages).await?;
        Ok(ChatResponse::Ok(
            ChatBody::Json(Json(ChatReply {
                content: reply.content,
                rate_limit: ChatRateLimit {
                    remaining: decision.remaining,
                    reset_in_seconds: decision.reset_in_seconds,
                },
                function_call: reply.function_call.map(|f| ChatFunctionCall {
                    name: f.name,
                    args: f.args,
                    result: f.result,
                }),
            })),
            remaining,
            reset,
            None,
            None,
        ))
    }
}

fn status(state: &AppState) -> Json<AiStatus> {
    let s = ai::status(&state.ctx.config);
    Json(AiStatus {
        available: s.available,
        model: s.model.map(str::to_string),
        persona: s.persona,
        tools: s.tools.into_iter().map(str::to_string).collect(),
        rate_limit: RateLimitSettings {
            requests_per_window: s.requests_per_window,
            window_seconds: s.window_seconds,
        },
    })
}

async fn rate_limit(state: &AppState, req: &Request, auth: &OptionalAuth) -> Json<RateLimitStatus> {
    let ctx = &state.ctx;
    let client = ai::client_id(auth.user().map(|u| u.id), client_ip(req, &ctx.config));
    let d = ai::rate_limit_peek(ctx, &client).await;
    Json(RateLimitStatus {
        remaining: d.remaining,
        limit: d.limit,
        window_seconds: d.reset_in_seconds,
    })
}

#[OpenApi(tag = "crate::routes::Tag::Ai")]
impl AiApi {
    /// Chat with Tito P (streams server-sent events unless `stream` is false)
    #[oai(path = "/api/ai/chat", method = "post")]
    async fn chat(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: OptionalAuth,
        body: Json<ChatRequest>,
    ) -> ApiResult<ChatResponse> {
        chat(&state, req, &auth, body.0).await
    }

    /// Chat with Tito P (seed path; same as `/api/ai/chat`)
    #[oai(path = "/api/ai_chat/chat", method = "post")]
    async fn chat_alias(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: OptionalAuth,
        body: Json<ChatRequest>,
    ) -> ApiResult<ChatResponse> {
        chat(&state, req, &auth, body.0).await
    }

    /// Whether the concierge is available, and its settings
    #[oai(path = "/api/ai/status", method = "get")]
    async fn status(&self, state: Data<&AppState>) -> Json<AiStatus> {
        status(&state)
    }

    /// Whether the concierge is available (seed path)
    #[oai(path = "/api/ai_chat/status", method = "get")]
    async fn status_alias(&self, state: Data<&AppState>) -> Json<AiStatus> {
        status(&state)
    }

    /// The caller's remaining chat quota (does not use any)
    #[oai(path = "/api/ai/rate-limit", method = "get")]
    async fn rate_limit(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: OptionalAuth,
    ) -> Json<RateLimitStatus> {
        rate_limit(&state, req, &auth).await
    }

    /// The caller's remaining chat quota (seed path)
    #[oai(path = "/api/ai_chat/rate-limit", method = "get")]
    async fn rate_limit_alias(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: OptionalAuth,
    ) -> Json<RateLimitStatus> {
        rate_limit(&state, req, &auth).await
    }
}
