//! ratelimit (filled in by its issue).
