//! Submissions endpoints (API.md §3).

use poem_openapi::OpenApi;

pub struct SubmissionsApi;

#[OpenApi(tag = "crate::routes::Tag::Submissions")]
impl SubmissionsApi {}
