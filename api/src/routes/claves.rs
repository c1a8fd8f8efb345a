//! Claves endpoints (API.md §3).

use poem_openapi::OpenApi;

pub struct ClavesApi;

#[OpenApi(tag = "crate::routes::Tag::Claves")]
impl ClavesApi {}
