//! payments (filled in by its issue).
