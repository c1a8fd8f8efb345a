//! Users endpoints (API.md §3).

use poem_openapi::OpenApi;

pub struct UsersApi;

#[OpenApi(tag = "crate::routes::Tag::Users")]
impl UsersApi {}
