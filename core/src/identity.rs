//! identity (filled in by its issue).
