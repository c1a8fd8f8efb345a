//! What every handler can reach.

use mambo_core::Context;

#[derive(Clone)]
pub struct AppState {
    pub ctx: Context,
}
