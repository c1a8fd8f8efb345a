//! community (filled in by its issue).
