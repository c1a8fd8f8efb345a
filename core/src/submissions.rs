//! submissions (filled in by its issue).
