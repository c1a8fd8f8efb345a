//! Uploads endpoints (API.md §3).

use poem_openapi::OpenApi;

pub struct UploadsApi;

#[OpenApi(tag = "crate::routes::Tag::Uploads")]
impl UploadsApi {}
