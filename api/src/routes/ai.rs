//! Ai endpoints (API.md §3).

use poem_openapi::OpenApi;

pub struct AiApi;

#[OpenApi(tag = "crate::routes::Tag::Ai")]
impl AiApi {}
