//! The domain of The Mambo Guild: configuration, the database, the clock, jobs
//! and one module per area of the product. No HTTP framework types live here.

pub mod admin;
pub mod ai;
pub mod audit;
pub mod auth;
pub mod badges;
pub mod bench_seed;
pub mod broadcast;
pub mod callers;
pub mod clock;
pub mod community;
pub mod config;
pub mod context;
pub mod courses;
pub mod db;
pub mod disposable_email;
pub mod economy;
pub mod email;
pub mod email_templates;
pub mod error;
pub mod identity;
pub mod identity_rules;
pub mod jobs;
pub mod metrics;
pub mod mux;
pub mod notifications;
pub mod oauth;
pub mod payments;
pub mod privacy;
pub mod profiles;
pub mod ratelimit;
pub mod redis;
pub mod seed;
pub mod sessions;
pub mod settings;
pub mod streaks;
pub mod submissions;
pub mod uploads;
pub mod users;
pub mod verification;

pub use clock::Clock;
pub use config::Config;
pub use context::Context;
pub use error::{Error, Result};
