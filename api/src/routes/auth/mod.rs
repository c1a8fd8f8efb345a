//! Auth endpoints (API.md §3.1): register, login, refresh, logout, me,
//! waitlist, Google sign-in and password reset; email verification, sign out
//! everywhere and password change (API-NEXT.md N3). Rules live in
//! `mambo_core::identity`, `oauth`, `verification` and `sessions`; this module
//! parses, sets the cookies of §1.2 and maps errors.

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

use poem_openapi::OpenApi;

use serde_json::json;

pub struct AuthApi;
mod shapes;
pub use shapes::*;
const REFRESH_PATH: &str = "/api/auth/refresh";

fn cookie_attrs(config: &Config, path: &str) -> String {
    let mut s = String::new();
    if let Some(d) = &config.cookie_domain {
        s.push_str("; Domain=");
        s.push_str(d);
    }
    s.push_str("; HttpOnly; Path=");
    s.push_str(path);
    s.push_str("; SameSite=Lax");
    if config.secure_cookies {
        s.push_str("; Secure");
    }
    s
}

fn set_cookie(config: &Config, name: &str, value: &str, path: &str, max_age: i64) -> String {
    format!(
        "{name}={value}; Max-Age={max_age}{}",
        cookie_attrs(config, path)
    )
}

fn delete_cookie(config: &Config, name: &str, path: &str) -> String {
    format!(
        "{name}=\"\"; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0{}",
        cookie_attrs(config, path)
    )
}

fn with_token_cookies<T>(resp: Response<T>, config: &Config, tokens: &Tokens) -> Response<T> {
    resp.header(
        "set-cookie",
        set_cookie(
            config,
            ACCESS_COOKIE,
            &tokens.access,
            "/",
            config.access_token_seconds(),
        ),
    )
    .header(
        "set-cookie",
        set_cookie(
            config,
            REFRESH_COOKIE,
            &tokens.refresh,
            REFRESH_PATH,
            config.refresh_token_seconds(),
        ),
    )
}

fn with_cleared_cookies<T>(resp: Response<T>, config: &Config) -> Response<T> {
    resp.header("set-cookie", delete_cookie(config, ACCESS_COOKIE, "/"))
        .header(
            "set-cookie",
            delete_cookie(config, REFRESH_COOKIE, REFRESH_PATH),
        )
}

/// The attribution of a body with the request's `Referer` header.
fn attribution(
    req: &Request,
    fbclid: Option<String>,
    utm: Option<serde_json::Value>,
    landing_url: Option<String>,
) -> Attribution {
    Attribution {
        fbclid: fbclid.map(serde_json::Value::String),
        utm,
        landing_url: landing_url.map(serde_json::Value::String),
        referrer: req
            .headers()
            .get("referer")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    }
}

fn client_id(req: &Request, config: &Config) -> String {
    client_ip(req, config)
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// FastAPI's 422 listing every missing query parameter.
fn missing_query(names: &[&str]) -> ApiError {
    let detail: Vec<serde_json::Value> = names
        .iter()
        .map(|name| json!({ "type": "missing", "loc": ["query", name], "msg": "Field required", "input": null }))
        .collect();
    ApiError::status_detail(422, json!(detail), None)
}

// ---------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------

#[OpenApi(tag = "crate::routes::Tag::Auth")]
impl AuthApi {
    /// Register with email and password
    ///
    /// Creates the account with the 15-clave starter bonus and signs in:
    /// returns the access token and sets both cookies. The per-client limits
    /// of the settings (`auth.register_ip_per_hour`/`_per_day`) come first.
    #[oai(path = "/api/auth/register", method = "post")]
    async fn register(
        &self,
        state: Data<&AppState>,
        req: &Request,
        body: LaterJson<RegisterIn>,
    ) -> ApiResult<Response<Created<TokenOut>>> {
        let ctx = &state.ctx;
        let snap = ctx.settings_now().await?;
        identity::check_register_limits(ctx, &snap, &client_id(req, &ctx.config)).await?;
        let b = body.parse()?;
        let attribution = attribution(req, b.fbclid, b.utm, b.landing_url);
        let user_id = identity::register(
            ctx,
            RegisterInput {
                email: b.email,
                username: b.username,
                password: b.password,
                confirm_password: b.confirm_password,
                first_name: b.first_name,
                last_name: b.last_name,
                current_level_tag: b.current_level_tag,
                attribution,
            },
        )
        .await?;
        let tokens = identity::issue_tokens(ctx, user_id);
        let resp = Response::new(Created::Created(Json(TokenOut::bearer(
            tokens.access.clone(),
        ))));
        Ok(with_token_cookies(resp, &ctx.config, &tokens))
    }

    /// Log in
    ///
    /// Accepts the frontend's JSON `{email, password}` and the OAuth2
    /// password form (`username`, `password`). Rate limited per email and per
    /// client. Runs the streak update and the daily clave claim.
    #[oai(path = "/api/auth/token", method = "post")]
    async fn login(
        &self,
        state: Data<&AppState>,
        req: &Request,
        body: LoginRequest,
    ) -> ApiResult<Response<Ok200<TokenOut>>> {
        let ctx = &state.ctx;
        let (email, password) = match body {
            LoginRequest::Json(Json(b)) => {
                let mut v = mambo_core::violations::Violations::new();
                identity::check_email_field(&mut v, &["body", "email"], &b.email);
                v.into_result()?;
                (b.email, b.password)
            }
            LoginRequest::Form(Form(f)) => (f.username, f.password),
        };
        let user_id = identity::login(ctx, &email, &password, &client_id(req, &ctx.config)).await?;
        let tokens = identity::issue_tokens(ctx, user_id);
        let resp = Response::new(Ok200::Ok(Json(TokenOut::bearer(tokens.access.clone()))));
        Ok(with_token_cookies(resp, &ctx.config, &tokens))
    }

    /// Rotate tokens with the refresh cookie
    #[oai(path = "/api/auth/refresh", method = "post")]
    async fn refresh(&self, state: Data<&AppState>, req: &Request) -> Response<RefreshResponse> {
        let ctx = &state.ctx;
        let token = req
            .cookie()
            .get(REFRESH_COOKIE)
            .map(|c| c.value_str().to_string())
            .filter(|t| !t.trim().is_empty());
        let Some(token) = token else {
            return Response::new(RefreshResponse::Unauthorized(Json(ErrorBody {
                detail: json!("Refresh token not found"),
            })));
        };
        match identity::refresh(ctx, token.trim()).await {
            Ok(user_id) => {
                let tokens = identity::issue_tokens(ctx, user_id);
                let resp = Response::new(RefreshResponse::Ok(Json(TokenOut::bearer(
                    tokens.access.clone(),
                ))));
                with_token_cookies(resp, &ctx.config, &tokens)
            }
            Err(mambo_core::Error::Http { detail, .. }) => with_cleared_cookies(
                Response::new(RefreshResponse::Unauthorized(Json(ErrorBody { detail }))),
                &ctx.config,
            ),
            Err(e) => {
                tracing::error!(error = %e, "refresh failed");
                Response::new(RefreshResponse::Internal(Json(ErrorBody {
                    detail: json!("Internal Server Error"),
                })))
            }
        }
    }

    /// Log out (clears both cookies)
    #[oai(path = "/api/auth/logout", method = "post")]
    async fn logout(&self, state: Data<&AppState>) -> Response<Ok200<MessageOut>> {
        with_cleared_cookies(
            Response::new(Ok200::Ok(message("Successfully logged out"))),
            &state.ctx.config,
        )
    }

    /// The signed-in user's profile
    #[oai(path = "/api/auth/me", method = "get")]
    async fn me(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
    ) -> ApiResult<crate::fast_json::FastJson<ProfileOut>> {
        let p = profiles::by_user_id(&state.ctx.db, auth.user().id)
            .await?
            .ok_or_else(|| ApiError::msg(404, "Profile not found"))?;
        Ok(crate::fast_json::FastJson(ProfileOut::from(p)))
    }

    /// Join the waitlist
    ///
    /// `auth.waitlist_ip_per_hour` per client comes first. A filled honeypot
    /// (`hp`) gets an answer of the usual shape and changes nothing.
    #[oai(path = "/api/auth/waitlist", method = "post")]
    async fn waitlist(
        &self,
        state: Data<&AppState>,
        req: &Request,
        body: LaterJson<WaitlistIn>,
    ) -> ApiResult<Created<WaitlistOut>> {
        let ctx = &state.ctx;
        let snap = ctx.settings_now().await?;
        identity::check_waitlist_limit(ctx, &snap, &client_id(req, &ctx.config)).await?;
        let b = body.parse()?;
        let joined = if b.hp.as_deref().is_some_and(|hp| !hp.is_empty()) {
            identity::waitlist_decoy(ctx).await?
        } else {
            let attribution = attribution(req, b.fbclid, b.utm, b.landing_url);
            identity::join_waitlist(
                ctx,
                WaitlistInput {
                    email: b.email,
                    username: b.username,
                    referrer_code: b.referrer_code,
                    attribution,
                },
            )
            .await?
        };
        Ok(Created::Created(Json(WaitlistOut {
            message: "Welcome to the Inner Circle.".into(),
            user_id: joined.user_id.to_string(),
            referral_code: joined.referral_code,
            position: joined.position,
        })))
    }

    /// Start OAuth sign-in (Google only)
    #[oai(path = "/api/auth/login/:provider", method = "get")]
    async fn oauth_login(
        &self,
        state: Data<&AppState>,
        provider: Path<String>,
    ) -> ApiResult<TemporaryRedirect> {
        let url = oauth::authorization_url(&state.ctx, &provider.0).await?;
        Ok(TemporaryRedirect::Redirect(url))
    }

    /// Google's OAuth callback
    ///
    /// Signs in (creating or linking the account), sets both cookies and
    /// redirects to the frontend; failures redirect with `?error=<detail>`.
    #[oai(path = "/api/auth/callback/google", method = "get")]
    async fn google_callback(
        &self,
        state: Data<&AppState>,
        code: Query<Option<String>>,
        #[oai(name = "state")] oauth_state: Query<Option<String>>,
        error: Query<Option<String>>,
    ) -> ApiResult<Response<FoundRedirect>> {
        let ctx = &state.ctx;
        if let Some(err) = error.0.filter(|e| !e.is_empty()) {
            // The person declined on Google's screen (or Google failed).
            tracing::info!(error = %err, "Google returned an error to the OAuth callback");
            return Ok(Response::new(FoundRedirect::Redirect(
                oauth::error_redirect(ctx, oauth::FAILED),
            )));
        }
        let (Some(code), Some(oauth_state)) = (code.0.clone(), oauth_state.0.clone()) else {
            let missing: Vec<&str> = [
                ("code", code.0.is_none()),
                ("state", oauth_state.0.is_none()),
            ]
            .into_iter()
            .filter_map(|(name, absent)| absent.then_some(name))
            .collect();
            return Err(missing_query(&missing));
        };
        match oauth::callback(ctx, &code, &oauth_state).await {
            Ok(user_id) => {
                let tokens = identity::issue_tokens(ctx, user_id);
                let resp = Response::new(FoundRedirect::Redirect(oauth::success_redirect(ctx)));
                Ok(with_token_cookies(resp, &ctx.config, &tokens))
            }
            Err(oauth::Failure(detail)) => Ok(Response::new(FoundRedirect::Redirect(
                oauth::error_redirect(ctx, detail),
            ))),
        }
    }

    /// Ask for a password reset email
    ///
    /// Always answers the same message, whether or not the email exists; an
    /// account that signs in with Google or Apple gets no email and the
    /// answer names its `oauth_provider`.
    #[oai(path = "/api/auth/forgot-password", method = "post")]
    async fn forgot_password(
        &self,
        state: Data<&AppState>,
        req: &Request,
        body: Json<ForgotIn>,
    ) -> ApiResult<Json<ForgotOut>> {
        let ctx = &state.ctx;
        let oauth_provider =
            identity::forgot_password(ctx, &body.0.email, &client_id(req, &ctx.config)).await?;
        Ok(Json(ForgotOut {
            message: identity::FORGOT_PASSWORD_MESSAGE.into(),
            oauth_provider,
        }))
    }

    /// Set a new password with a reset token
    ///
    /// Every earlier session ends; this answer signs in (both cookies set as
    /// login sets them).
    #[oai(path = "/api/auth/reset-password", method = "post")]
    async fn reset_password(
        &self,
        state: Data<&AppState>,
        body: Json<ResetIn>,
    ) -> ApiResult<Response<Ok200<MessageOut>>> {
        let ctx = &state.ctx;
        let b = body.0;
        let tokens = identity::reset_password(
            ctx,
            ResetInput {
                token: b.token,
                new_password: b.new_password,
                confirm_password: b.confirm_password,
            },
        )
        .await?;
        let resp = Response::new(Ok200::Ok(message("Password reset successfully")));
        Ok(with_token_cookies(resp, &ctx.config, &tokens))
    }

    /// Verify the email address with the emailed link's token
    ///
    /// Each link works once and for 48 hours. Success signs in (both cookies
    /// set as login sets them).
    #[oai(path = "/api/auth/verify-email", method = "post")]
    async fn verify_email(
        &self,
        state: Data<&AppState>,
        body: Json<VerifyEmailIn>,
    ) -> ApiResult<Response<Ok200<MessageOut>>> {
        let ctx = &state.ctx;
        let user_id = verification::verify(ctx, &body.0.token).await?;
        let tokens = identity::issue_tokens(ctx, user_id);
        let resp = Response::new(Ok200::Ok(message("Email verified")));
        Ok(with_token_cookies(resp, &ctx.config, &tokens))
    }

    /// Send a fresh verification link (3 an hour)
    #[oai(path = "/api/auth/resend-verification", method = "post")]
    async fn resend_verification(
        &self,
        auth: UserAuth,
        state: Data<&AppState>,
    ) -> ApiResult<Json<MessageOut>> {
        let ctx = &state.ctx;
        let snap = ctx.settings_now().await?;
        verification::resend(ctx, &snap, auth.user().id).await?;
        Ok(message(verification::SENT))
    }

    /// Send a fresh verification link (the May 2026 frontend's resend)
    ///
    /// A verified caller is told so and nothing is sent. Limits from the
    /// settings: `auth.send_verification_per_user` per 10 minutes (shared with
    /// `resend-verification`), then `auth.send_verification_ip_per_hour`.
    #[oai(path = "/api/auth/send-verification", method = "post")]
    async fn send_verification(
        &self,
        auth: UserAuth,
        state: Data<&AppState>,
        req: &Request,
    ) -> ApiResult<Json<SendVerificationOut>> {
        let ctx = &state.ctx;
        let snap = ctx.settings_now().await?;
        let client = client_id(req, &ctx.config);
        let out = match verification::send(ctx, &snap, auth.user().id, &client).await? {
            verification::SendOutcome::AlreadyVerified => SendVerificationOut {
                message: verification::ALREADY_VERIFIED.into(),
                is_verified: true,
            },
            verification::SendOutcome::Sent => SendVerificationOut {
                message: verification::SENT.into(),
                is_verified: false,
            },
        };
        Ok(Json(out))
    }

    /// Sign out everywhere
    ///
    /// Every access and refresh token issued until now stops working, this
    /// one included; both cookies are cleared.
    #[oai(path = "/api/auth/logout-all", method = "post")]
    async fn logout_all(
        &self,
        auth: UserAuth,
        state: Data<&AppState>,
    ) -> ApiResult<Response<Ok200<MessageOut>>> {
        sessions::logout_all(&state.ctx, auth.user().id).await?;
        Ok(with_cleared_cookies(
            Response::new(Ok200::Ok(message(sessions::SIGNED_OUT_EVERYWHERE))),
            &state.ctx.config,
        ))
    }

    /// Change the password
    ///
    /// Every other session ends; this one goes on with the returned token and
    /// fresh cookies.
    #[oai(path = "/api/auth/change-password", method = "post")]
    async fn change_password(
        &self,
        auth: UserAuth,
        state: Data<&AppState>,
        body: Json<ChangePasswordIn>,
    ) -> ApiResult<Response<Ok200<PasswordChangedOut>>> {
        let ctx = &state.ctx;
        let b = body.0;
        let tokens = sessions::change_password(
            ctx,
            auth.user().id,
            ChangePasswordInput {
                current_password: b.current_password,
                new_password: b.new_password,
                confirm_password: b.confirm_password,
            },
        )
        .await?;
        let resp = Response::new(Ok200::Ok(Json(PasswordChangedOut {
            message: sessions::PASSWORD_CHANGED.into(),
            access_token: tokens.access.clone(),
            token_type: "bearer".into(),
        })));
        Ok(with_token_cookies(resp, &ctx.config, &tokens))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Config {
        let mut m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        m.insert("SECRET_KEY".into(), "k".into());
        Config::from_map(&m).unwrap()
    }

    #[test]
    fn cookies_carry_the_attributes_of_the_contract() {
        let c = config(&[
            ("SECURE_COOKIES", "true"),
            ("COOKIE_DOMAIN", ".mamboguild.com"),
        ]);
        assert_eq!(
            set_cookie(&c, ACCESS_COOKIE, "tok", "/", c.access_token_seconds()),
            "access_token=tok; Max-Age=1800; Domain=.mamboguild.com; HttpOnly; Path=/; SameSite=Lax; Secure"
        );
        assert_eq!(
            delete_cookie(&c, REFRESH_COOKIE, REFRESH_PATH),
            "refresh_token=\"\"; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; \
             Domain=.mamboguild.com; HttpOnly; Path=/api/auth/refresh; SameSite=Lax; Secure"
        );
        let c = config(&[("SECURE_COOKIES", "false"), ("JWT_EXPIRATION_DAYS", "7")]);
        assert_eq!(
            set_cookie(&c, ACCESS_COOKIE, "tok", "/", c.access_token_seconds()),
            "access_token=tok; Max-Age=604800; HttpOnly; Path=/; SameSite=Lax"
        );
        // Production defaults to secure cookies.
        let c = config(&[("ENVIRONMENT", "production")]);
        assert!(set_cookie(&c, ACCESS_COOKIE, "t", "/", 1).ends_with("; Secure"));
    }
}
