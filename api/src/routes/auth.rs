//! Auth endpoints (API.md §3).

use poem_openapi::OpenApi;

pub struct AuthApi;

#[OpenApi(tag = "crate::routes::Tag::Auth")]
impl AuthApi {}
