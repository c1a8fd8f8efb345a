//! Disposable ("throwaway") email domains, refused at registration and on the
//! waitlist (API-NEXT.md N3).
//!
//! The list is the `mailchecker` crate's (tens of thousands of domains of
//! about 2,700 providers, maintained upstream and refreshed with
//! `cargo update -p mailchecker`). Only its list is used: the address itself
//! has already passed the registration's own email rules. An address is
//! refused when its domain or any parent domain is listed, so
//! `x@inbox.mailinator.com` counts as `mailinator.com`.

use crate::{Error, Result};
use std::collections::HashSet;
use std::sync::LazyLock;

/// The 400 of a disposable address.
pub const PERMANENT_EMAIL_PLEASE: &str = "Please use a permanent email address";

static DOMAINS: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| mailchecker::blacklist().into_iter().collect());

/// Whether `domain` (lower case) or one of its parent domains is listed.
pub fn is_disposable_domain(domain: &str) -> bool {
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let mut rest = domain.as_str();
    // Every suffix with a dot: a bare top-level domain never counts.
    while rest.contains('.') {
        if DOMAINS.contains(rest) {
            return true;
        }
        rest = rest.split_once('.').map_or("", |(_, parent)| parent);
    }
    false
}

/// Whether the address's domain (after the last `@`) is disposable.
pub fn is_disposable(email: &str) -> bool {
    email
        .rsplit_once('@')
        .is_some_and(|(_, domain)| is_disposable_domain(domain))
}

/// 400 `Please use a permanent email address` for a disposable address.
pub fn check_permanent(email: &str) -> Result<()> {
    if is_disposable(email) {
        Err(Error::bad_request(PERMANENT_EMAIL_PLEASE))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_domains_and_their_subdomains_are_disposable() {
        assert!(DOMAINS.len() > 2_000, "{}", DOMAINS.len());
        for e in [
            "a@mailinator.com",
            "a@MAILINATOR.com",
            "a@inbox.mailinator.com",
            "a@deep.er.mailinator.com",
            "a@10minutemail.com",
            "a@guerrillamailblock.com",
            "a@yopmail.com",
        ] {
            assert!(is_disposable(e), "{e}");
            assert!(check_permanent(e).is_err(), "{e}");
        }
    }

    #[test]
    fn ordinary_domains_are_not() {
        for e in [
            "a@gmail.com",
            "a@example.com",
            "a@example.org",
            "a@b.co",
            "a@mamboguild.com",
            "a@outlook.com",
            "a@yahoo.com",
            "a@sub.example.com",
            "a@localhost",
            "no-at-sign",
            "a@com",
        ] {
            assert!(!is_disposable(e), "{e}");
            assert!(check_permanent(e).is_ok(), "{e}");
        }
    }
}
