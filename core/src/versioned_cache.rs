//! One value kept per process under a version number (the course catalogue's
//! aggregates, issue 10): a read names the version it needs and gets the value
//! only when that is the version kept; a write never replaces a newer version.
//!
//! The cache does not know the type of what it keeps (the reader names it), so
//! [`Context`](crate::Context) can hold it without importing the module that
//! fills it (`courses`, which needs the `Context`).

use std::any::Any;
use std::sync::{Arc, RwLock};

type Slot = Option<(i64, Arc<dyn Any + Send + Sync>)>;

#[derive(Default)]
pub struct VersionedCache(RwLock<Slot>);

impl VersionedCache {
    /// The value kept for `version`, if it is that version and a `T`.
    pub fn get<T: Any + Send + Sync>(&self, version: i64) -> Option<Arc<T>> {
        let slot = self.0.read().unwrap_or_else(|e| e.into_inner());
        slot.as_ref()
            .filter(|(v, _)| *v == version)
            .and_then(|(_, value)| value.clone().downcast::<T>().ok())
    }

    /// Keeps `value` as `version`, unless a newer version is kept already.
    pub fn put<T: Any + Send + Sync>(&self, version: i64, value: Arc<T>) {
        let mut slot = self.0.write().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_none_or(|(v, _)| *v <= version) {
            *slot = Some((version, value));
        }
    }
}

impl std::fmt::Debug for VersionedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VersionedCache")
    }
}
