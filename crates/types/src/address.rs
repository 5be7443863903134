//! The one address parser: `local@domain` as an SMTP path, an HTTP request
//! field, an admin command or a suppression entry gives it. Every front end
//! parses with [`Address::parse`] and adds only its own stricter rules on
//! top (the HTTP composer writes headers, so it wants a dot-atom local part
//! in ASCII; a sending domain must be a host name with a dot).
//!
//! What it accepts, after RFC 5321's Mailbox: at most 254 bytes; a local
//! part of 1 to 64 bytes, either a quoted string or characters other than
//! white space, controls and the specials `<>()[]\,;:@"`; a domain that is
//! a host name (labels of letters, digits, `-`, `_`, or non-ASCII for
//! SMTPUTF8, none empty or longer than 63, none starting or ending with
//! `-`) or an address literal in brackets. Not a full grammar: enough to
//! refuse what cannot be delivered and to keep anything that could be
//! smuggled (line breaks, angle brackets) out.

use std::fmt;

/// Longest address: a path is at most 256 octets with its brackets.
pub const MAX_LEN: usize = 254;
/// Longest local part (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL: usize = 64;

/// An address split into its parts, borrowing the text it was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Address<'a> {
    local: &'a str,
    domain: &'a str,
}

/// Why a text is not an address; `Display` says it for people ("it has no
/// '@'"), so a front end can write "`to` is not an address: it has no '@'".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressError {
    Empty,
    TooLong,
    NoAt,
    Forbidden,
    EmptyLocal,
    LocalTooLong,
    BadLocal,
    EmptyDomain,
    BadDomain,
    BadLiteral,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressError::Empty => "it is empty",
            AddressError::TooLong => "it is longer than 254 characters",
            AddressError::NoAt => "it has no '@'",
            AddressError::Forbidden => {
                "it contains a line break, a control character or angle brackets"
            }
            AddressError::EmptyLocal => "the part before '@' is empty",
            AddressError::LocalTooLong => "the part before '@' is longer than 64 characters",
            AddressError::BadLocal => {
                "the part before '@' contains white space or a character that needs quoting"
            }
            AddressError::EmptyDomain => "the domain after '@' is empty",
            AddressError::BadDomain => "the domain is not a host name",
            AddressError::BadLiteral => "the domain literal is malformed",
        })
    }
}

impl std::error::Error for AddressError {}

/// RFC 5322 specials that an unquoted local part cannot hold.
const SPECIALS: &[char] = &['<', '>', '(', ')', '[', ']', '\\', ',', ';', ':', '@', '"'];

impl<'a> Address<'a> {
    /// Parse `text` (without angle brackets).
    pub fn parse(text: &'a str) -> Result<Self, AddressError> {
        if text.is_empty() {
            return Err(AddressError::Empty);
        }
        if text.len() > MAX_LEN {
            return Err(AddressError::TooLong);
        }
        if text.chars().any(|c| c.is_control() || c == '<' || c == '>') {
            return Err(AddressError::Forbidden);
        }
        let (local, domain) = text.rsplit_once('@').ok_or(AddressError::NoAt)?;
        check_local(local)?;
        check_domain(domain)?;
        Ok(Address { local, domain })
    }

    pub fn local(&self) -> &'a str {
        self.local
    }

    /// As written (case kept; compare with `eq_ignore_ascii_case`).
    pub fn domain(&self) -> &'a str {
        self.domain
    }

    /// Whether the domain is an address literal (`[192.0.2.1]`).
    pub fn is_literal(&self) -> bool {
        self.domain.starts_with('[')
    }

    /// Whether the local part can go into a header as it is: a dot-atom of
    /// ASCII characters (no quoting, no leading, trailing or double dot).
    pub fn is_dot_atom(&self) -> bool {
        let atext = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b);
        self.local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.bytes().all(atext))
    }

    /// Whether the domain is a host name of ASCII labels with at least one
    /// dot (`example.com`): what a sending domain must be.
    pub fn has_dotted_ascii_domain(&self) -> bool {
        !self.is_literal() && self.domain.is_ascii() && self.domain.contains('.')
    }
}

fn check_local(local: &str) -> Result<(), AddressError> {
    if local.is_empty() {
        return Err(AddressError::EmptyLocal);
    }
    if local.len() > MAX_LOCAL {
        return Err(AddressError::LocalTooLong);
    }
    if let Some(inner) = local.strip_prefix('"') {
        // A quoted string: anything but controls, '"' only escaped.
        let Some(inner) = inner.strip_suffix('"') else {
            return Err(AddressError::BadLocal);
        };
        let mut escaped = false;
        for c in inner.chars() {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => return Err(AddressError::BadLocal),
                _ => {}
            }
        }
        return if escaped {
            Err(AddressError::BadLocal)
        } else {
            Ok(())
        };
    }
    if local
        .chars()
        .any(|c| c.is_whitespace() || SPECIALS.contains(&c))
    {
        return Err(AddressError::BadLocal);
    }
    Ok(())
}

fn check_domain(domain: &str) -> Result<(), AddressError> {
    if domain.is_empty() {
        return Err(AddressError::EmptyDomain);
    }
    if let Some(literal) = domain.strip_prefix('[') {
        let ok = literal.strip_suffix(']').is_some_and(|inner| {
            !inner.is_empty()
                && inner
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b':')
        });
        return if ok {
            Ok(())
        } else {
            Err(AddressError::BadLiteral)
        };
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || !c.is_ascii())
    };
    if domain.len() > 253 || !domain.split('.').all(label_ok) {
        return Err(AddressError::BadDomain);
    }
    Ok(())
}

/// The domain of an address: what follows its last '@' (empty without one).
pub fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map_or("", |(_, d)| d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_split_and_checked() {
        let a = Address::parse("app@Example.com").unwrap();
        assert_eq!((a.local(), a.domain()), ("app", "Example.com"));
        assert!(a.is_dot_atom() && a.has_dotted_ascii_domain() && !a.is_literal());
        let q = Address::parse("\"a b@c\"@example.com").unwrap();
        assert_eq!(q.local(), "\"a b@c\"");
        assert!(!q.is_dot_atom());
        assert!(Address::parse("x@[192.0.2.1]").unwrap().is_literal());
        assert!(Address::parse("x@[IPv6:2001:db8::1]").is_ok());
        assert!(Address::parse("用户@例子.测试").is_ok(), "SMTPUTF8");
        assert!(Address::parse("postmaster@localhost").is_ok());
        assert!(!Address::parse("a..b@x.test").unwrap().is_dot_atom());
        for (text, why) in [
            ("", AddressError::Empty),
            ("no-at", AddressError::NoAt),
            ("@x.test", AddressError::EmptyLocal),
            ("a@", AddressError::EmptyDomain),
            ("a b@x.test", AddressError::BadLocal),
            ("a<b@x.test", AddressError::Forbidden),
            ("a\r\nRCPT@x.test", AddressError::Forbidden),
            ("a,b@x.test", AddressError::BadLocal),
            ("\"open@x.test", AddressError::BadLocal),
            ("a@-x.test", AddressError::BadDomain),
            ("a@x..test", AddressError::BadDomain),
            ("a@x.test.", AddressError::BadDomain),
            ("a@[1.2.3.4", AddressError::BadLiteral),
        ] {
            assert_eq!(Address::parse(text), Err(why), "{text:?}");
        }
        assert_eq!(
            Address::parse(&format!("{}@x.test", "a".repeat(65))),
            Err(AddressError::LocalTooLong)
        );
        assert_eq!(
            Address::parse(&format!("a@{}.test", "b".repeat(250))),
            Err(AddressError::TooLong)
        );
        assert_eq!(domain_of("a@b@c.test"), "c.test");
        assert_eq!(domain_of("nothing"), "");
    }
}
