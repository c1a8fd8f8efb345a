//! The Stripe HTTP client.
//!
//! Form-encoded requests through `ctx.http` against `STRIPE_BASE_URL`. Every
//! POST carries an `Idempotency-Key` naming one logical operation, so a call
//! retried after a network error or a 5xx (up to [`ATTEMPTS`] times, with the
//! same key) never happens twice in Stripe. Callers never hold a database
//! transaction open across these calls.

use super::*;
use std::time::Duration;

/// Tries per call: the first one and two retries.
pub(super) const ATTEMPTS: u32 = 3;

/// Why a Stripe call failed.
#[derive(Debug)]
pub(super) enum StripeError {
    /// Stripe answered with a 4xx: the request was refused (message for the user).
    Refused {
        status: u16,
        message: String,
        code: Option<String>,
    },
    /// Stripe could not be reached, timed out, or answered 5xx/garbage.
    Unavailable(String),
}

impl StripeError {
    /// D11: Stripe's 4xx errors are 400 with Stripe's message; outages are 502.
    pub(super) fn into_error(self) -> Error {
        match self {
            StripeError::Refused { message, .. } => Error::bad_request(message),
            StripeError::Unavailable(why) => {
                tracing::error!(error = %why, "Stripe unavailable");
                Error::http(502, MSG_STRIPE_DOWN)
            }
        }
    }

    pub(super) fn is_missing(&self) -> bool {
        matches!(self, StripeError::Refused { status: 404, .. })
            || matches!(self, StripeError::Refused { code: Some(c), .. } if c == "resource_missing")
    }
}

pub(super) struct Stripe<'a> {
    ctx: &'a Context,
    key: &'a str,
}

pub(super) fn stripe(ctx: &Context) -> Result<Stripe<'_>> {
    match &ctx.config.stripe_secret_key {
        Some(k) => Ok(Stripe {
            ctx,
            key: k.expose(),
        }),
        None => Err(Error::not_configured("Stripe")),
    }
}

pub(super) type Form = Vec<(String, String)>;

pub(super) fn field(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_string(), v.into())
}

/// An idempotency key for one logical operation of a request: `op` is fresh
/// per request, `step` names the call within it.
pub(super) fn op_key(op: Uuid, step: &str) -> String {
    format!("mambo-{step}-{op}")
}

impl Stripe<'_> {
    fn url(&self, path: &str) -> String {
        format!("{}/v1{}", self.ctx.config.stripe_base_url, path)
    }

    /// Sends `req`, retrying network errors and 5xx answers with a short
    /// backoff. `req` must be cloneable (form bodies are).
    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> std::result::Result<Value, StripeError> {
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(150 * 3u64.pow(attempt - 1))).await;
            }
            let Some(this) = req.try_clone() else {
                return Err(StripeError::Unavailable(format!(
                    "{what}: request not repeatable"
                )));
            };
            match self.send_once(this, what).await {
                Err(StripeError::Unavailable(why)) => {
                    tracing::warn!(attempt, error = %why, "Stripe call failed; retrying");
                    last = Some(StripeError::Unavailable(why));
                }
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| StripeError::Unavailable(what.into())))
    }

    async fn send_once(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> std::result::Result<Value, StripeError> {
        let resp = req
            .bearer_auth(self.key)
            .send()
            .await
            .map_err(|e| StripeError::Unavailable(format!("{what}: {}", e.without_url())))?;
        let status = resp.status().as_u16();
        if status >= 500 {
            return Err(StripeError::Unavailable(format!("{what}: HTTP {status}")));
        }
        let body: Value = resp
            .json()
            .await
            .map_err(|e| StripeError::Unavailable(format!("{what}: bad response: {e}")))?;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let err = &body["error"];
        let message = err["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("Stripe error (HTTP {status})"));
        if (400..500).contains(&status) {
            tracing::warn!(status, %message, what, "Stripe refused the request");
            Err(StripeError::Refused {
                status,
                message,
                code: err["code"].as_str().map(str::to_string),
            })
        } else {
            Err(StripeError::Unavailable(format!(
                "{what}: HTTP {status}: {message}"
            )))
        }
    }

    /// A POST; `idempotency_key` names the logical operation (retries reuse it).
    pub(super) async fn post(
        &self,
        path: &str,
        form: &Form,
        idempotency_key: &str,
    ) -> std::result::Result<Value, StripeError> {
        let req = self
            .ctx
            .http
            .post(self.url(path))
            .form(form)
            .header("Idempotency-Key", idempotency_key);
        self.send(req, path).await
    }

    pub(super) async fn get(&self, path: &str) -> std::result::Result<Value, StripeError> {
        self.send(self.ctx.http.get(self.url(path)), path).await
    }

    /// A DELETE (Stripe's cancel-now); idempotent by nature, keyed anyway.
    pub(super) async fn delete(
        &self,
        path: &str,
        idempotency_key: &str,
    ) -> std::result::Result<Value, StripeError> {
        let req = self
            .ctx
            .http
            .delete(self.url(path))
            .header("Idempotency-Key", idempotency_key);
        self.send(req, path).await
    }

    pub(super) async fn retrieve_subscription(
        &self,
        id: &str,
    ) -> std::result::Result<Value, StripeError> {
        self.get(&format!("/subscriptions/{}", path_segment(id)))
            .await
    }
}

/// Stripe ids are `[A-Za-z0-9_]`; anything else is dropped so an id can never
/// change the path.
pub(super) fn path_segment(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect()
}
