//! The domain of The Mambo Guild: configuration, the database, the clock, jobs
//! and one module per area of the product. No HTTP framework types live here.

pub mod auth;
pub mod clock;
pub mod config;
pub mod context;
pub mod db;
pub mod economy;
pub mod email;
pub mod error;
pub mod identity_rules;
pub mod jobs;
pub mod redis;
pub mod seed;
pub mod streaks;
pub mod users;

pub use clock::Clock;
pub use config::Config;
pub use context::Context;
pub use error::{Error, Result};
