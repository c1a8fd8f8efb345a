//! The request and response shapes of the auth endpoints.
#![allow(unused_imports)]

use crate::auth::UserAuth;
use crate::deferred::LaterJson;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::middleware::client_ip;
use crate::routes::users::ProfileOut;
use crate::state::AppState;
use mambo_core::auth::Tokens;
use mambo_core::first_touch::Attribution;
use mambo_core::identity::{self, RegisterInput, ResetInput, WaitlistInput};
use mambo_core::sessions::{self, ChangePasswordInput};
use mambo_core::{Config, oauth, profiles, verification};
use poem::Request;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Form, Json, Response};
use poem_openapi::types::{ParseError, ParseResult};
use poem_openapi::{ApiRequest, ApiResponse, Object, OpenApi};
use serde::Deserialize;
use serde_json::json;

/// Request strings are strict, as in FastAPI/pydantic: a number or a boolean
/// where the contract wants a string is a 422 `string_type`, not silently
/// turned into text (poem-openapi's `String` would accept `123` as `"123"`).
pub(crate) fn strict_str(value: Option<serde_json::Value>) -> ParseResult<String> {
    match value {
        Some(serde_json::Value::String(s)) => Ok(s),
        other => Err(ParseError::expected_type(other.unwrap_or_default())),
    }
}

/// [`strict_str`] for lists of strings: `[1, 2]` is a 422 as well.
pub(crate) fn strict_str_list(value: Option<serde_json::Value>) -> ParseResult<Vec<String>> {
    match value {
        Some(serde_json::Value::Array(items)) => items
            .into_iter()
            .map(|item| strict_str(Some(item)).map_err(ParseError::propagate))
            .collect(),
        other => Err(ParseError::expected_type(other.unwrap_or_default())),
    }
}

/// An optional field of any JSON type (absent or `null` is `None`), for the
/// fields whose type and sizes the domain checks (`utm`).
pub(super) fn any_opt(value: Option<serde_json::Value>) -> ParseResult<Option<serde_json::Value>> {
    Ok(value.filter(|v| !v.is_null()))
}

/// [`strict_str`] for optional fields: absent or `null` is `None`.
pub(crate) fn strict_opt_str(value: Option<serde_json::Value>) -> ParseResult<Option<String>> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(ParseError::expected_type(other)),
    }
}

/// [`strict_str`] for fields where absent and `null` mean different things.
pub(crate) fn strict_maybe_str(
    value: Option<serde_json::Value>,
) -> ParseResult<poem_openapi::types::MaybeUndefined<String>> {
    use poem_openapi::types::MaybeUndefined;
    match value {
        None => Ok(MaybeUndefined::Undefined),
        Some(serde_json::Value::Null) => Ok(MaybeUndefined::Null),
        Some(serde_json::Value::String(s)) => Ok(MaybeUndefined::Value(s)),
        Some(other) => Err(ParseError::expected_type(other)),
    }
}

// ---------------------------------------------------------------------------
// Shapes
// ---------------------------------------------------------------------------

/// `{access_token, token_type: "bearer"}`
#[derive(Object, Debug, Clone)]
#[oai(rename = "Token")]
pub struct TokenOut {
    pub access_token: String,
    /// Always `bearer`
    pub token_type: String,
}

impl TokenOut {
    pub(super) fn bearer(access_token: String) -> Self {
        Self {
            access_token,
            token_type: "bearer".into(),
        }
    }
}

/// `{message}`
#[derive(Object, Debug, Clone)]
#[oai(rename = "Msg")]
pub struct MessageOut {
    pub message: String,
}

pub(super) fn message(m: &str) -> Json<MessageOut> {
    Json(MessageOut {
        message: m.to_string(),
    })
}

#[derive(Object, Debug, Clone)]
#[oai(rename = "RegisterRequest")]
pub struct RegisterIn {
    #[oai(deserialize_with = "strict_str")]
    pub email: String,
    /// 3–30 characters: letters, digits, underscores; stored lowercased
    #[oai(deserialize_with = "strict_str")]
    pub username: String,
    /// 8–72 characters with at least one letter and one digit
    #[oai(deserialize_with = "strict_str")]
    pub password: String,
    #[oai(deserialize_with = "strict_str")]
    pub confirm_password: String,
    /// Optional: the stored (lowercased) username when absent
    #[oai(deserialize_with = "strict_opt_str")]
    pub first_name: Option<String>,
    /// Optional: `""` when absent
    #[oai(deserialize_with = "strict_opt_str")]
    pub last_name: Option<String>,
    /// `Beginner`, `Novice`, `Intermediate` or `Advanced` (anything else is Beginner)
    #[oai(deserialize_with = "strict_opt_str")]
    pub current_level_tag: Option<String>,
    /// First-touch attribution: the Meta click id (≤255)
    #[oai(deserialize_with = "strict_opt_str")]
    pub fbclid: Option<String>,
    /// First-touch attribution: UTM parameters, string → string (≤20 keys,
    /// keys ≤50, values ≤200 characters)
    #[oai(deserialize_with = "any_opt")]
    pub utm: Option<serde_json::Value>,
    /// First-touch attribution: the first page seen (≤500)
    #[oai(deserialize_with = "strict_opt_str")]
    pub landing_url: Option<String>,
}

/// The frontend's JSON login body.
#[derive(Object, Deserialize, Debug, Clone)]
#[oai(rename = "LoginRequest")]
pub struct LoginJson {
    #[oai(deserialize_with = "strict_str")]
    pub email: String,
    #[oai(deserialize_with = "strict_str")]
    pub password: String,
}

/// The OAuth2 password form (Swagger's Authorize button, generated SDKs).
#[derive(Object, Deserialize, Debug, Clone)]
#[oai(rename = "LoginForm")]
pub struct LoginForm {
    /// The email address
    pub username: String,
    pub password: String,
    pub grant_type: Option<String>,
    pub scope: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

#[derive(ApiRequest, Debug)]
pub enum LoginRequest {
    /// `{email, password}`
    Json(Json<LoginJson>),
    /// `username=<email>&password=...`
    Form(Form<LoginForm>),
}

#[derive(Object, Debug, Clone)]
#[oai(rename = "WaitlistRequest")]
pub struct WaitlistIn {
    #[oai(deserialize_with = "strict_str")]
    pub email: String,
    #[oai(deserialize_with = "strict_str")]
    pub username: String,
    #[oai(deserialize_with = "strict_opt_str")]
    pub referrer_code: Option<String>,
    /// Honeypot: people leave it empty
    #[oai(deserialize_with = "strict_opt_str")]
    pub hp: Option<String>,
    /// First-touch attribution, as on registration
    #[oai(deserialize_with = "strict_opt_str")]
    pub fbclid: Option<String>,
    #[oai(deserialize_with = "any_opt")]
    pub utm: Option<serde_json::Value>,
    #[oai(deserialize_with = "strict_opt_str")]
    pub landing_url: Option<String>,
}

#[derive(Object, Debug, Clone)]
#[oai(rename = "WaitlistJoined")]
pub struct WaitlistOut {
    pub message: String,
    pub user_id: String,
    pub referral_code: String,
    pub position: i64,
}

/// `{message}`, plus `oauth_provider` for an account that signs in with
/// Google or Apple (no email is sent then)
#[derive(Object, Debug, Clone)]
#[oai(rename = "ForgotPasswordAnswer")]
pub struct ForgotOut {
    pub message: String,
    /// `google` or `apple`; present only for such accounts
    #[oai(skip_serializing_if_is_none)]
    pub oauth_provider: Option<String>,
}

/// `{message, is_verified}`
#[derive(Object, Debug, Clone)]
#[oai(rename = "SendVerificationAnswer")]
pub struct SendVerificationOut {
    pub message: String,
    pub is_verified: bool,
}

#[derive(Object, Debug, Clone)]
#[oai(rename = "ForgotPasswordRequest")]
pub struct ForgotIn {
    #[oai(deserialize_with = "strict_str")]
    pub email: String,
}

#[derive(Object, Debug, Clone)]
#[oai(rename = "ResetPasswordRequest")]
pub struct ResetIn {
    #[oai(deserialize_with = "strict_str")]
    pub token: String,
    #[oai(deserialize_with = "strict_str")]
    pub new_password: String,
    #[oai(deserialize_with = "strict_str")]
    pub confirm_password: String,
}

#[derive(Object, Debug, Clone)]
#[oai(rename = "VerifyEmailRequest")]
pub struct VerifyEmailIn {
    /// The `token` of the emailed link
    #[oai(deserialize_with = "strict_str")]
    pub token: String,
}

#[derive(Object, Debug, Clone)]
#[oai(rename = "ChangePasswordRequest")]
pub struct ChangePasswordIn {
    #[oai(deserialize_with = "strict_str")]
    pub current_password: String,
    /// 8–72 characters with at least one letter and one digit
    #[oai(deserialize_with = "strict_str")]
    pub new_password: String,
    #[oai(deserialize_with = "strict_str")]
    pub confirm_password: String,
}

/// `{message: "Password changed", access_token, token_type: "bearer"}`
#[derive(Object, Debug, Clone)]
#[oai(rename = "PasswordChanged")]
pub struct PasswordChangedOut {
    pub message: String,
    pub access_token: String,
    /// Always `bearer`
    pub token_type: String,
}

#[derive(ApiResponse)]
pub enum Created<T: poem_openapi::types::ToJSON> {
    /// Created
    #[oai(status = 201)]
    Created(Json<T>),
}

#[derive(ApiResponse)]
pub enum Ok200<T: poem_openapi::types::ToJSON> {
    /// Success
    #[oai(status = 200)]
    Ok(Json<T>),
}

#[derive(ApiResponse)]
pub enum RefreshResponse {
    /// New tokens; both cookies are rotated
    #[oai(status = 200)]
    Ok(Json<TokenOut>),
    /// No, bad or expired refresh token, or unknown user
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// Internal error
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
}

#[derive(ApiResponse)]
pub enum TemporaryRedirect {
    /// To Google's consent screen
    #[oai(status = 307)]
    Redirect(#[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
pub enum FoundRedirect {
    /// To `{FRONTEND_URL}/auth/callback?success=true` (cookies set) or `?error=<detail>`
    #[oai(status = 302)]
    Redirect(#[oai(header = "Location")] String),
}

// ---------------------------------------------------------------------------
// Cookies (§1.2)
// ---------------------------------------------------------------------------

pub(super) const ACCESS_COOKIE: &str = "access_token";
pub(super) const REFRESH_COOKIE: &str = "refresh_token";
