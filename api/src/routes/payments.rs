//! Payments endpoints (API.md §3).

use poem_openapi::OpenApi;

pub struct PaymentsApi;

#[OpenApi(tag = "crate::routes::Tag::Payments")]
impl PaymentsApi {}
