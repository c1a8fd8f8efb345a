//! Learning: the catalogue of worlds, lesson lists and details, the skill tree,
//! lesson completion and who may open what (API.md §3.2, §4.4–4.7).
//!
//! Access (issue decision, overriding §4.7): anonymous callers see the
//! catalogue but no lesson content; a free world is open to every signed-in
//! user; any other world needs paid access (`access::PRO_SQL`: an
//! `active`, `trialing` or in-grace `past_due` subscription of tier
//! `advanced` or `performer`); `admin` and `instructor` open everything.
//! Unpublished worlds are invisible (404 `World not found`) to everyone but staff.
//!
//! Every read here costs a fixed number of queries whatever the size of the
//! world (D17): lists are single joined/aggregated queries.

use crate::access::PRO_SQL;
use crate::economy;
use crate::jobs::{self, BadgeCheckJob};
use crate::{Context, Error, Result};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

mod catalogue;
mod completion;
mod detail;
mod lessons;
mod skill_tree;
mod tldr;
mod worlds;

pub use catalogue::*;
pub use completion::*;
pub use detail::*;
pub use lessons::*;
pub use skill_tree::*;
pub use tldr::*;
pub use worlds::*;

pub const LOCKED_MSG: &str = "Subscription required. Please upgrade to access this course.";
pub const WORLD_NOT_FOUND: &str = "World not found";
pub const LEVEL_NOT_FOUND: &str = "Level not found";
pub const LESSON_NOT_FOUND: &str = "Lesson not found";

/// The sort key of §4.5 over `lessons le JOIN levels l`, with the explicit
/// tie-breaks: level order, then lesson id.
pub const LESSON_ORDER_SQL: &str = "COALESCE(le.week_number, 0), COALESCE(le.day_number, 0), \
     le.order_index, l.order_index, le.id";

/// The signed-in caller as the domain sees it.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub id: Uuid,
    pub role: String,
}

impl Viewer {
    pub fn is_staff(&self) -> bool {
        self.role == "admin" || self.role == "instructor"
    }
}

/// What the caller may see and open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub user_id: Option<Uuid>,
    pub staff: bool,
    /// Paid access (`access::PRO_SQL`).
    pub pro: bool,
}

impl Access {
    pub const ANONYMOUS: Access = Access {
        user_id: None,
        staff: false,
        pro: false,
    };

    /// Whether the caller may open lessons of a world.
    pub fn can_open(&self, world_is_free: bool) -> bool {
        self.user_id.is_some() && (self.staff || world_is_free || self.pro)
    }

    /// Whether unpublished worlds exist for the caller.
    pub fn sees_unpublished(&self) -> bool {
        self.staff
    }
}

/// The caller's access when the pro flag was read by the caller's own query
/// (`(SELECT {PRO_SQL} FROM subscriptions s WHERE s.user_id = $n)`).
fn access_with(viewer: Option<&Viewer>, pro: Option<bool>) -> Access {
    match viewer {
        None => Access::ANONYMOUS,
        Some(v) => Access {
            user_id: Some(v.id),
            staff: v.is_staff(),
            pro: v.is_staff() || pro.unwrap_or(false),
        },
    }
}

/// `100 × done / total`, 0 when there is nothing to do (§4.6).
pub fn percentage(done: i64, total: i64) -> f64 {
    if total <= 0 {
        0.0
    } else {
        100.0 * done as f64 / total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages() {
        assert_eq!(percentage(0, 0), 0.0);
        assert_eq!(percentage(1, 3), 33.333333333333336);
        assert_eq!(percentage(3, 3), 100.0);
    }

    #[test]
    fn access_rule() {
        let anon = Access::ANONYMOUS;
        assert!(!anon.can_open(true));
        let student = Access {
            user_id: Some(Uuid::nil()),
            staff: false,
            pro: false,
        };
        assert!(student.can_open(true));
        assert!(!student.can_open(false));
        let pro = Access {
            pro: true,
            ..student
        };
        assert!(pro.can_open(false));
    }

    #[test]
    fn unlock_rule() {
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let w = Uuid::new_v4();
        let edges = vec![
            Edge {
                id: Uuid::new_v4(),
                from_level_id: a,
                to_level_id: b,
                world_id: w,
            },
            Edge {
                id: Uuid::new_v4(),
                from_level_id: b,
                to_level_id: c,
                world_id: w,
            },
        ];
        let done = |id: Uuid| if id == a { 100.0 } else { 0.0 };
        assert!(unlocked(a, &edges, &done));
        assert!(unlocked(b, &edges, &done));
        assert!(!unlocked(c, &edges, &done));
    }
}
