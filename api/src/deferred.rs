//! A JSON body that is parsed only when the handler asks for it.
//!
//! poem-openapi parses a `Json<T>` argument before the handler runs, so a route
//! whose right to be used depends on a database lookup (editing someone's
//! post) would answer a malformed body with a 422 before it could answer 403.
//! [`LaterJson`] documents the same request body in the spec as `Json<T>`, but
//! only keeps the bytes; the handler checks the caller's rights first and then
//! calls [`LaterJson::parse`], which refuses the body with the same FastAPI
//! 422 list the edge middleware builds for an eagerly parsed one.

use crate::error::ApiError;
use poem::{FromRequest, Request, RequestBody};
use poem_openapi::payload::{Json, Payload};
use poem_openapi::registry::{MetaRequest, Registry};
use poem_openapi::types::ParseFromJSON;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use serde_json::{Value, json};
use std::marker::PhantomData;

pub struct LaterJson<T> {
    raw: Vec<u8>,
    method: String,
    path: String,
    /// The content type, when it is not JSON.
    wrong_type: Option<String>,
    _t: PhantomData<fn() -> T>,
}

impl<'a, T: ParseFromJSON> ApiExtractor<'a> for LaterJson<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <Json<T> as Payload>::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        <Json<T> as ApiExtractor<'a>>::request_meta()
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let wrong_type = match request.content_type() {
            Some(ct) if <Json<T> as Payload>::check_content_type(ct) => None,
            Some(ct) => Some(ct.to_string()),
            None => Some(String::new()),
        };
        let raw = <Vec<u8> as FromRequest>::from_request(request, body).await?;
        Ok(Self {
            raw,
            method: request.method().as_str().to_string(),
            path: request.uri().path().to_string(),
            wrong_type,
            _t: PhantomData,
        })
    }
}

impl<T: ParseFromJSON> LaterJson<T> {
    /// Whether the request carried no body at all (whatever its content
    /// type), for a route where no body has a meaning of its own.
    pub fn is_empty(&self) -> bool {
        self.raw.iter().all(u8::is_ascii_whitespace)
    }

    /// The body as `T`, or the contract's 422.
    pub fn parse(self) -> Result<T, ApiError> {
        let refuse = |detail: Value| ApiError::status_detail(422, detail, None);
        if let Some(ct) = self.wrong_type {
            return Err(refuse(json!([{
                "type": "model_attributes_type",
                "loc": ["body"],
                "msg": "Input should be a valid dictionary or object to extract fields from",
                "input": ct,
            }])));
        }
        let value = if self.raw.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&self.raw).map_err(|e| {
                refuse(crate::validation::explain(
                    &self.method,
                    &self.path,
                    &self.raw,
                    &e.to_string(),
                ))
            })?
        };
        T::parse_from_json(Some(value)).map_err(|e| {
            refuse(crate::validation::explain(
                &self.method,
                &self.path,
                &self.raw,
                &e.into_message(),
            ))
        })
    }
}
