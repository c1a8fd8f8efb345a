//! profiles (filled in by its issue).
