//! courses (filled in by its issue).
