//! Account privacy (API-NEXT.md N3): taking one's data away (`export`) and
//! being forgotten (`deletion`), with the private objects they keep in R2
//! (`storage`).

pub mod deletion;
pub mod export;
pub mod storage;
