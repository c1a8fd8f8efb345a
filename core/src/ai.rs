//! ai (filled in by its issue).
