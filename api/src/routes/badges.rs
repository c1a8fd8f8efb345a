//! Badges endpoints (API.md §3).

use poem_openapi::OpenApi;

pub struct BadgesApi;

#[OpenApi(tag = "crate::routes::Tag::Badges")]
impl BadgesApi {}
