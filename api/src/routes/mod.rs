//! One API struct per area of API.md §3, combined into one OpenAPI service.

pub mod health;
pub mod payments;
pub mod badges;
pub mod submissions;
pub mod ai;
pub mod community;
pub mod claves;
pub mod mux;
pub mod uploads;
pub mod admin;
pub mod courses;
pub mod users;
pub mod auth;

use poem_openapi::Tags;

#[derive(Tags)]
pub enum Tag {
    /// Liveness and readiness
    Health,
    /// Registration, login, tokens, OAuth, password reset
    Auth,
    /// Profiles
    Users,
    /// Worlds, lessons and progress
    Courses,
    /// Course builder and grading
    Admin,
    /// Image uploads
    Uploads,
    /// Video uploads and webhooks
    Mux,
    /// The clave economy
    Claves,
    /// Stage and Lab
    Community,
    /// Tito P, the AI concierge
    Ai,
    /// Boss battle submissions
    Submissions,
    /// Badges
    Badges,
    /// Stripe subscriptions
    Payments,
}
