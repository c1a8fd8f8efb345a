//! Mux endpoints (API.md §3).

use poem_openapi::OpenApi;

pub struct MuxApi;

#[OpenApi(tag = "crate::routes::Tag::Mux")]
impl MuxApi {}
