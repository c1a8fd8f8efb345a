//! What every handler can reach.

use mambo_core::Context;
use mambo_core::notifications::live;

#[derive(Clone)]
pub struct AppState {
    pub ctx: Context,
    /// This process's notification streams and its one Redis subscription.
    pub live: live::Hub,
}
