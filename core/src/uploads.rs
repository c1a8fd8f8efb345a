//! uploads (filled in by its issue).
