//! Community endpoints (API.md §3.8): the Stage and the Lab.
//!
//! Errors of the write endpoints carry `detail` as the whole result object
//! (`{success:false, message, required?, balance?}`); that shape is built in
//! `mambo_core::community`.
//!
//! One file per part, as in `mambo_core::community`: the shapes and the
//! parameters the parts share, then the endpoints.

mod moderation;
mod params;
mod posts;
mod replies;
mod saved;
mod shapes;

pub use moderation::{ModerationApi, ReportsApi};
pub(crate) use params::int_query;
pub use posts::CommunityApi;
pub use replies::RepliesApi;
pub use saved::SavedApi;
pub use shapes::*;

/// Every community API struct, served as one (`crate::Apis` holds this tuple).
pub type Apis = (
    CommunityApi,
    RepliesApi,
    SavedApi,
    ReportsApi,
    ModerationApi,
);

pub fn apis() -> Apis {
    (
        CommunityApi,
        RepliesApi,
        SavedApi,
        ReportsApi,
        ModerationApi,
    )
}
