//! One API struct per area of API.md §3, combined into one OpenAPI service.

pub mod admin;
pub mod ai;
pub mod audit;
pub mod auth;
pub mod badges;
pub mod claves;
pub mod community;
pub mod courses;
pub mod health;
pub mod mux;
pub mod notifications;
pub mod notifications_stream;
pub mod payments;
pub mod privacy;
pub mod settings;
pub mod submissions;
pub mod uploads;
pub mod users;

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
    /// The notification bell, its live stream and preferences
    Notifications,
    /// Data export and account deletion
    Privacy,
}
