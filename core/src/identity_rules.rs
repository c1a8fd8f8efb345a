//! Password, username and email rules (API.md §4.11), with the exact messages.

/// `Ok(())` or the contract's message.
pub fn validate_password(p: &str) -> Result<(), &'static str> {
    let n = p.chars().count();
    if n < 8 {
        return Err("Password must be at least 8 characters long");
    }
    if n > 72 {
        return Err("Password cannot exceed 72 characters");
    }
    if !p.chars().any(|c| c.is_ascii_alphabetic()) {
        return Err("Password must contain at least one letter");
    }
    if !p.chars().any(|c| c.is_ascii_digit()) {
        return Err("Password must contain at least one number");
    }
    Ok(())
}

pub fn validate_username(u: &str) -> Result<(), &'static str> {
    let n = u.chars().count();
    if n < 3 {
        return Err("Username must be at least 3 characters");
    }
    if n > 30 {
        return Err("Username cannot exceed 30 characters");
    }
    if !u.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err("Username can only contain letters, numbers, and underscores");
    }
    Ok(())
}

/// A pragmatic RFC-style check: one `@`, a non-empty local part without spaces,
/// and a domain of dot-separated labels.
pub fn is_valid_email(e: &str) -> bool {
    let e = e.trim();
    let Some((local, domain)) = e.rsplit_once('@') else {
        return false;
    };
    if local.is_empty() || local.len() > 64 || e.len() > 254 || local.contains('@') {
        return false;
    }
    if local.chars().any(|c| c.is_whitespace() || c.is_control())
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
    {
        return false;
    }
    if domain.is_empty() || !domain.contains('.') {
        return false;
    }
    domain.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_messages() {
        assert_eq!(
            validate_password("a1"),
            Err("Password must be at least 8 characters long")
        );
        assert_eq!(
            validate_password(&"a1".repeat(37)),
            Err("Password cannot exceed 72 characters")
        );
        assert_eq!(
            validate_password("12345678"),
            Err("Password must contain at least one letter")
        );
        assert_eq!(
            validate_password("abcdefgh"),
            Err("Password must contain at least one number")
        );
        assert_eq!(validate_password("abcdefg1"), Ok(()));
    }

    #[test]
    fn username_and_email() {
        assert!(validate_username("ab").is_err());
        assert!(validate_username("bad name").is_err());
        assert!(validate_username("good_name_1").is_ok());
        assert!(is_valid_email("a.b@example.com"));
        assert!(!is_valid_email("a@localhost"));
        assert!(!is_valid_email("no-at-sign"));
        assert!(!is_valid_email("a b@example.com"));
    }
}
