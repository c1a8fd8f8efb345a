//! Admin endpoints (API.md §3).

use poem_openapi::OpenApi;

pub struct AdminApi;

#[OpenApi(tag = "crate::routes::Tag::Admin")]
impl AdminApi {}
