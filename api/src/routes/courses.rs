//! Courses endpoints (API.md §3).

use poem_openapi::OpenApi;

pub struct CoursesApi;

#[OpenApi(tag = "crate::routes::Tag::Courses")]
impl CoursesApi {}
