//! mux (filled in by its issue).
