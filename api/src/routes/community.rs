//! Community endpoints (API.md §3).

use poem_openapi::OpenApi;

pub struct CommunityApi;

#[OpenApi(tag = "crate::routes::Tag::Community")]
impl CommunityApi {}
