//! What a name, a domain and an address may be, for every admin front end.

use crate::{AdminError, AdminResult};

fn invalid(message: String) -> AdminError {
    AdminError::Invalid(message)
}

/// A name (account, API user, label): 1 to 128 characters, no spaces or
/// control characters.
pub fn check_name(what: &str, name: &str) -> AdminResult<()> {
    if name.is_empty()
        || name.len() > 128
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid(format!(
            "{what} {name:?} must be 1 to 128 characters without spaces"
        )));
    }
    Ok(())
}

/// An API user name: a name without '#' (it separates a label at login)
/// or '@' (that would be a sender address).
pub fn check_api_user_name(name: &str) -> AdminResult<()> {
    check_name("API user name", name)?;
    if name.contains('#') || name.contains('@') {
        return Err(invalid(format!(
            "API user name {name:?} may not contain '#' or '@' ('#' separates a label at login)"
        )));
    }
    Ok(())
}

/// A label id: a name without '#'.
pub fn check_label(label: &str) -> AdminResult<()> {
    check_name("label", label)?;
    if label.contains('#') {
        return Err(invalid(format!("label {label:?} may not contain '#'")));
    }
    Ok(())
}

/// A domain name like `example.com` (ASCII labels, at least two).
pub fn is_domain(d: &str) -> bool {
    d.len() <= 253
        && d.contains('.')
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// A domain as stored: lower case, no trailing dot.
pub fn normalize_domain(d: &str) -> String {
    d.trim_end_matches('.').to_ascii_lowercase()
}

/// A domain to add: normalized and checked.
pub fn checked_domain(d: &str) -> AdminResult<String> {
    let domain = normalize_domain(d);
    if !is_domain(&domain) {
        return Err(invalid(format!(
            "{d:?} is not a domain name like example.com"
        )));
    }
    Ok(domain)
}

/// The domain of a sender address (as it is written): an address whose
/// domain is a host name like `example.com`.
pub fn address_domain(address: &str) -> AdminResult<&str> {
    match posthorn_types::Address::parse(address) {
        Ok(a) if is_domain(&a.domain().to_ascii_lowercase()) => Ok(a.domain()),
        Ok(_) => Err(invalid(format!(
            "{address:?} is not an email address like name@example.com: its domain is not a host name like example.com"
        ))),
        Err(why) => Err(invalid(format!(
            "{address:?} is not an email address like name@example.com: {why}"
        ))),
    }
}

/// An address for the suppression list.
pub fn check_address(address: &str) -> AdminResult<()> {
    posthorn_types::Address::parse(address)
        .map(|_| ())
        .map_err(|why| {
            invalid(format!(
                "{address:?} is not an email address like name@example.com: {why}"
            ))
        })
}

/// One line of text an operator gives (a reason, a description), trimmed.
pub fn one_line(what: &str, text: &str, max: usize) -> AdminResult<String> {
    let text = text.trim();
    if text.len() > max || text.chars().any(char::is_control) {
        return Err(invalid(format!(
            "the {what} must be at most {max} bytes on one line"
        )));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_domains_and_addresses() {
        assert!(check_name("x", "shop").is_ok());
        assert!(check_name("x", "").is_err());
        assert!(check_name("x", "a b").is_err());
        assert!(check_name("x", &"a".repeat(129)).is_err());
        assert!(check_api_user_name("api1").is_ok());
        assert!(check_api_user_name("api#1").is_err());
        assert!(check_api_user_name("a@b").is_err());
        assert!(check_label("42").is_ok());
        assert!(check_label("4#2").is_err());
        assert!(is_domain("mail.example.com"));
        assert!(!is_domain("example"));
        assert!(!is_domain("-a.example"));
        assert!(!is_domain("a_b.example"));
        assert_eq!(normalize_domain("Example.COM."), "example.com");
        assert_eq!(checked_domain("Example.COM.").unwrap(), "example.com");
        assert!(checked_domain("nodot").is_err());
        assert_eq!(address_domain("a@Example.com").unwrap(), "Example.com");
        assert!(address_domain("no-at").is_err());
        assert!(address_domain("<a>@example.com").is_err());
        assert!(check_address("a@b").is_ok());
        assert!(check_address("a@b").is_ok() && check_address("a@[192.0.2.1]").is_ok());
        assert!(check_address("a b@c").is_err());
        assert_eq!(one_line("reason", "  x ", 10).unwrap(), "x");
        assert!(one_line("reason", "a\nb", 10).is_err());
    }
}
