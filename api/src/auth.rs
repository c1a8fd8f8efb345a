//! Who is calling (API.md §1.2).
//!
//! One bearer security scheme appears in the spec; the `access_token` cookie is
//! the fallback when no usable bearer token is sent. `Bearer null`,
//! `Bearer undefined` and an empty bearer are treated as absent (D34).

use crate::error::json_error;
use crate::state::AppState;
use mambo_core::auth::{TokenKind, decode};
use mambo_core::callers::CallerRow;
use poem::Request;
use poem::http::StatusCode;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::{ApiKey, Bearer};
use uuid::Uuid;

/// The signed-in caller.
#[derive(Clone, Debug)]
pub struct AuthUser {
    pub id: Uuid,
    pub email: String,
    pub role: String,
    /// Whether the email is verified (the `REQUIRE_VERIFIED_FOR` gate).
    pub is_verified: bool,
}

impl AuthUser {
    pub fn is_admin(&self) -> bool {
        self.role == "admin"
    }
    /// Admins and instructors see all content.
    pub fn is_staff(&self) -> bool {
        self.role == "admin" || self.role == "instructor"
    }
}

pub fn unauthorized() -> poem::Error {
    poem::Error::from_response(json_error(
        StatusCode::UNAUTHORIZED,
        serde_json::json!("Could not validate credentials"),
    ))
}

fn usable(token: &str) -> bool {
    let t = token.trim();
    !(t.is_empty() || t == "null" || t == "undefined")
}

/// The bearer token from the `Authorization` header, if it is usable.
pub fn bearer_token(req: &Request) -> Option<String> {
    let h = req.headers().get("authorization")?.to_str().ok()?;
    let (scheme, token) = h.split_once(' ').unwrap_or((h, ""));
    if !scheme.eq_ignore_ascii_case("bearer") || !usable(token) {
        return None;
    }
    Some(token.trim().to_string())
}

pub fn cookie_token(req: &Request) -> Option<String> {
    req.cookie()
        .get("access_token")
        .map(|c| c.value_str().to_string())
        .filter(|t| usable(t))
}

/// Resolves the caller from the bearer token (precedence) or the cookie.
pub async fn resolve(req: &Request) -> Option<AuthUser> {
    let token = bearer_token(req).or_else(|| cookie_token(req))?;
    resolve_token(req, &token).await
}

pub async fn resolve_token(req: &Request, token: &str) -> Option<AuthUser> {
    lookup_token(req, token).await.ok().flatten()
}

/// The caller for a token: `Ok(None)` when the token or its user is not valid,
/// `Err` when the database could not be asked (a 503, not a 401: the frontend
/// drops its token on any 401, which would sign users out during a DB blip).
async fn lookup_token(req: &Request, token: &str) -> Result<Option<AuthUser>, poem::Error> {
    lookup_token_of(req, token, TokenKind::Access).await
}

/// Whether `token` is a valid, unexpired upload token (N5.5), whoever it names.
pub fn is_upload_token(config: &mambo_core::Config, token: &str) -> bool {
    decode(config, token, TokenKind::Upload).is_ok()
}

/// The admin an upload token (N5.5) names, while that user is still an admin
/// and has not revoked their tokens since; `Ok(None)` otherwise. Only
/// `POST /api/mux/upload-url` asks: every other door looks for an access
/// token, which an upload token is not.
pub async fn resolve_upload_token(
    req: &Request,
    token: &str,
) -> Result<Option<AuthUser>, poem::Error> {
    Ok(lookup_token_of(req, token, TokenKind::Upload)
        .await?
        .filter(AuthUser::is_admin))
}

/// [`lookup_token`] for a token of `kind`.
async fn lookup_token_of(
    req: &Request,
    token: &str,
    kind: TokenKind,
) -> Result<Option<AuthUser>, poem::Error> {
    let Some(state) = req.data::<AppState>() else {
        return Ok(None);
    };
    let Ok(decoded) = decode(&state.ctx.config, token, kind) else {
        return Ok(None);
    };
    let id = decoded.user_id;
    let ctx = &state.ctx;
    let ttl = std::time::Duration::from_secs(ctx.config.caller_cache_seconds);
    let row = match ctx.callers.get(id, ttl) {
        // Cached (mambo_core::callers: forgotten the moment the row changes).
        Some(row) => row,
        None => {
            let generation = ctx.callers.generation();
            let Some(row) = caller_row(ctx, id).await? else {
                return Ok(None);
            };
            ctx.callers.put(id, row.clone(), generation);
            row
        }
    };
    let CallerRow {
        email,
        role,
        is_verified,
        tokens_valid_after: valid_after,
    } = row;
    if !decoded.is_current(valid_after) {
        return Ok(None);
    }
    // The request span (middleware::edge) logs who is calling.
    tracing::Span::current().record("user_id", tracing::field::display(id));
    Ok(Some(AuthUser {
        id,
        email,
        role,
        is_verified,
    }))
}

/// The caller's row, read from the database: the one query of the lookup,
/// which also says whether the token was revoked (signed out everywhere,
/// password changed or reset) since it was issued.
async fn caller_row(ctx: &mambo_core::Context, id: Uuid) -> Result<Option<CallerRow>, poem::Error> {
    type Row = (String, String, bool, Option<chrono::DateTime<chrono::Utc>>);
    let row: Option<Row> = sqlx::query_as(
        "SELECT email, role, is_verified, tokens_valid_after FROM users
         WHERE id = $1 AND deletion_requested_at IS NULL",
    )
    .bind(id)
    .fetch_optional(&ctx.db)
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "resolving the caller failed");
        poem::Error::from_response(json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!("Service temporarily unavailable"),
        ))
    })?;
    Ok(
        row.map(|(email, role, is_verified, tokens_valid_after)| CallerRow {
            email,
            role,
            is_verified,
            tokens_valid_after,
        }),
    )
}

async fn check_bearer(req: &Request, _bearer: Bearer) -> poem::Result<AuthUser> {
    match bearer_token(req) {
        Some(t) => lookup_token(req, &t).await?.ok_or_else(unauthorized),
        None => Err(unauthorized()),
    }
}

async fn check_cookie(req: &Request, _key: ApiKey) -> poem::Result<AuthUser> {
    if let Some(t) = bearer_token(req) {
        // A usable bearer token takes precedence and already failed. The
        // scheme that fails last decides the answer: ask once more, so that a
        // database error is a 503 (and a dropped connection, retried on a
        // fresh one, is no error at all) rather than a 401.
        return lookup_token(req, &t).await?.ok_or_else(unauthorized);
    }
    match cookie_token(req) {
        Some(t) => lookup_token(req, &t).await?.ok_or_else(unauthorized),
        None => Err(unauthorized()),
    }
}

/// JWT access token in `Authorization: Bearer`.
#[derive(SecurityScheme)]
#[oai(
    rename = "BearerAuth",
    ty = "bearer",
    bearer_format = "JWT",
    checker = "check_bearer"
)]
pub struct BearerAuth(pub AuthUser);

/// The httpOnly `access_token` cookie set at login.
#[derive(SecurityScheme)]
#[oai(
    rename = "CookieAuth",
    ty = "api_key",
    key_name = "access_token",
    key_in = "cookie",
    checker = "check_cookie"
)]
pub struct CookieAuth(pub AuthUser);

/// A signed-in user (401 otherwise).
///
/// The cookie scheme is tried first but defers to a usable bearer token (see
/// `check_cookie`), so the bearer token still takes precedence. The bearer
/// scheme comes last because the last failure is the answer: a missing cookie
/// must not hide a database error (503) behind a 401.
#[derive(SecurityScheme)]
pub enum UserAuth {
    Cookie(CookieAuth),
    Bearer(BearerAuth),
}

impl UserAuth {
    pub fn user(&self) -> &AuthUser {
        match self {
            Self::Bearer(b) => &b.0,
            Self::Cookie(c) => &c.0,
        }
    }
    pub fn into_user(self) -> AuthUser {
        match self {
            Self::Bearer(b) => b.0,
            Self::Cookie(c) => c.0,
        }
    }
}

/// 403 `Not enough permissions` (API.md §1.2) for a signed-in non-admin.
fn require_admin(user: AuthUser) -> poem::Result<AuthUser> {
    if user.is_admin() {
        Ok(user)
    } else {
        Err(poem::Error::from_response(json_error(
            StatusCode::FORBIDDEN,
            serde_json::json!("Not enough permissions"),
        )))
    }
}

async fn check_admin_bearer(req: &Request, bearer: Bearer) -> poem::Result<AuthUser> {
    require_admin(check_bearer(req, bearer).await?)
}

async fn check_admin_cookie(req: &Request, key: ApiKey) -> poem::Result<AuthUser> {
    require_admin(check_cookie(req, key).await?)
}

/// The bearer scheme of admin-only operations (same name in the spec as
/// [`BearerAuth`]; the role is checked with the token).
#[derive(SecurityScheme)]
#[oai(
    rename = "BearerAuth",
    ty = "bearer",
    bearer_format = "JWT",
    checker = "check_admin_bearer"
)]
pub struct AdminBearer(pub AuthUser);

/// The cookie scheme of admin-only operations (same name in the spec as
/// [`CookieAuth`]).
#[derive(SecurityScheme)]
#[oai(
    rename = "CookieAuth",
    ty = "api_key",
    key_name = "access_token",
    key_in = "cookie",
    checker = "check_admin_cookie"
)]
pub struct AdminCookie(pub AuthUser);

/// A signed-in admin: 401 when anonymous, 403 `Not enough permissions` for
/// anyone else.
///
/// The role is decided while the caller is resolved, before any parameter or
/// body of the operation is parsed (poem-openapi extracts arguments in their
/// order, and this one comes first), so a caller who may not use an admin
/// route never learns its validation rules from a 422.
#[derive(SecurityScheme)]
pub enum AdminAuth {
    Cookie(AdminCookie),
    Bearer(AdminBearer),
}

impl AdminAuth {
    pub fn user(&self) -> &AuthUser {
        match self {
            Self::Bearer(b) => &b.0,
            Self::Cookie(c) => &c.0,
        }
    }
    pub fn into_user(self) -> AuthUser {
        match self {
            Self::Bearer(b) => b.0,
            Self::Cookie(c) => c.0,
        }
    }
}

/// The token of the `token` query parameter, if it is usable.
pub fn query_token(req: &Request) -> Option<String> {
    let query = req.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.trim().to_string())
        .filter(|t| usable(t))
}

/// The token an event stream is opened with: the bearer header first, then
/// `?token=`, then the cookie (an explicit token beats an ambient cookie).
fn stream_token(req: &Request) -> Option<String> {
    bearer_token(req)
        .or_else(|| query_token(req))
        .or_else(|| cookie_token(req))
}

async fn check_stream(req: &Request) -> poem::Result<AuthUser> {
    match stream_token(req) {
        Some(t) => lookup_token(req, &t).await?.ok_or_else(unauthorized),
        None => Err(unauthorized()),
    }
}

async fn check_stream_cookie(req: &Request, _key: ApiKey) -> poem::Result<AuthUser> {
    check_stream(req).await
}

async fn check_stream_query(req: &Request, _key: ApiKey) -> poem::Result<AuthUser> {
    check_stream(req).await
}

async fn check_stream_bearer(req: &Request, _bearer: Bearer) -> poem::Result<AuthUser> {
    check_stream(req).await
}

/// The access token in the `token` query parameter, for a browser's
/// EventSource, which cannot send headers (event streams only; never logged).
#[derive(SecurityScheme)]
#[oai(
    rename = "QueryTokenAuth",
    ty = "api_key",
    key_name = "token",
    key_in = "query",
    checker = "check_stream_query"
)]
pub struct QueryTokenAuth(pub AuthUser);

/// [`CookieAuth`] for an event stream (same name in the spec).
#[derive(SecurityScheme)]
#[oai(
    rename = "CookieAuth",
    ty = "api_key",
    key_name = "access_token",
    key_in = "cookie",
    checker = "check_stream_cookie"
)]
pub struct StreamCookie(pub AuthUser);

/// [`BearerAuth`] for an event stream (same name in the spec).
#[derive(SecurityScheme)]
#[oai(
    rename = "BearerAuth",
    ty = "bearer",
    bearer_format = "JWT",
    checker = "check_stream_bearer"
)]
pub struct StreamBearer(pub AuthUser);

/// A signed-in user of an event stream: the bearer header, `?token=` or the
/// `access_token` cookie, in that order of precedence (401 otherwise). Every
/// scheme resolves the same token, whichever of them is present.
#[derive(SecurityScheme)]
pub enum StreamAuth {
    Cookie(StreamCookie),
    Query(QueryTokenAuth),
    Bearer(StreamBearer),
}

impl StreamAuth {
    pub fn user(&self) -> &AuthUser {
        match self {
            Self::Cookie(c) => &c.0,
            Self::Query(q) => &q.0,
            Self::Bearer(b) => &b.0,
        }
    }
}

/// A signed-in user if the token is valid; anonymous otherwise (never 401).
#[derive(SecurityScheme)]
pub enum OptionalAuth {
    Bearer(BearerAuth),
    Cookie(CookieAuth),
    #[oai(fallback)]
    Anonymous,
}

impl OptionalAuth {
    pub fn user(&self) -> Option<&AuthUser> {
        match self {
            Self::Bearer(b) => Some(&b.0),
            Self::Cookie(c) => Some(&c.0),
            Self::Anonymous => None,
        }
    }
    pub fn into_user(self) -> Option<AuthUser> {
        match self {
            Self::Bearer(b) => Some(b.0),
            Self::Cookie(c) => Some(c.0),
            Self::Anonymous => None,
        }
    }
}
