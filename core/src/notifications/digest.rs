//! The notification email digest (API-NEXT.md N1): filled in by the digest work.
