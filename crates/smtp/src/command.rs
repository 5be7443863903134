//! Parsing one command line into a [`Command`]. Errors come back as the
//! reply to send.

use posthorn_types::{BodyType, Reply};

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Command {
    Helo(String),
    Ehlo(String),
    StartTls,
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
    Mail(MailFrom),
    Rcpt(String),
    Data,
    Bdat {
        size: usize,
        last: bool,
    },
    Rset,
    Noop,
    Help,
    Vrfy,
    Expn,
    Quit,
}

#[derive(Debug, PartialEq, Eq, Default)]
pub(crate) struct MailFrom {
    pub address: String,
    pub size: Option<u64>,
    pub body: BodyType,
    pub smtputf8: bool,
}

fn syntax(text: &str) -> Reply {
    Reply::new(501, "5.5.4", format!("Syntax: {text}"))
}

/// Client text quoted in a reply: at most 64 characters, printable ASCII
/// only, so the reply line stays under 512 bytes and carries no control
/// characters.
fn quote(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(64)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect();
    if text.chars().nth(64).is_some() {
        out.push_str("...");
    }
    out
}

/// Parse a command line (without its line ending).
pub(crate) fn parse(line: &[u8]) -> Result<Command, Reply> {
    let line = std::str::from_utf8(line)
        .map_err(|_| Reply::new(500, "5.5.2", "Error: command line is not valid UTF-8"))?;
    let (verb, args) = match line.find(' ') {
        Some(i) => (&line[..i], line[i + 1..].trim()),
        None => (line, ""),
    };
    let no_args = |cmd: Command, name: &str| {
        if args.is_empty() {
            Ok(cmd)
        } else {
            Err(syntax(&format!("{name} takes no arguments")))
        }
    };
    match verb.to_ascii_uppercase().as_str() {
        "HELO" | "EHLO" if args.is_empty() => {
            Err(syntax(&format!("{} hostname", verb.to_ascii_uppercase())))
        }
        "HELO" => Ok(Command::Helo(args.to_string())),
        "EHLO" => Ok(Command::Ehlo(args.to_string())),
        "STARTTLS" => no_args(Command::StartTls, "STARTTLS"),
        "AUTH" => {
            let mut parts = args.split_ascii_whitespace();
            let mechanism = parts
                .next()
                .ok_or_else(|| syntax("AUTH mechanism [initial-response]"))?
                .to_ascii_uppercase();
            let initial = parts.next().map(str::to_string);
            if parts.next().is_some() {
                return Err(syntax("AUTH mechanism [initial-response]"));
            }
            Ok(Command::Auth { mechanism, initial })
        }
        "MAIL" => parse_mail(args).map(Command::Mail),
        "RCPT" => parse_rcpt(args).map(Command::Rcpt),
        "DATA" => no_args(Command::Data, "DATA"),
        "BDAT" => parse_bdat(args),
        "RSET" => no_args(Command::Rset, "RSET"),
        "NOOP" => Ok(Command::Noop),
        "HELP" => Ok(Command::Help),
        "VRFY" if args.is_empty() => Err(syntax("VRFY address")),
        "VRFY" => Ok(Command::Vrfy),
        "EXPN" => Ok(Command::Expn),
        "QUIT" => no_args(Command::Quit, "QUIT"),
        _ => Err(Reply::new(500, "5.5.1", "Error: command not recognized")),
    }
}

/// Split `FROM:<path> params` (or `TO:`) after the keyword. Tolerates a
/// space after the colon and a path without angle brackets, as deployed
/// clients send both.
fn split_path<'a>(args: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
    // Compare bytes: `args` may have a multi-byte character straddling
    // `keyword.len()`, where slicing the str would panic.
    if !args
        .as_bytes()
        .get(..keyword.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(keyword.as_bytes()))
    {
        return None;
    }
    let rest = args[keyword.len()..].trim_start();
    if let Some(inner) = rest.strip_prefix('<') {
        // Find the closing bracket outside a quoted local part.
        let mut quoted = false;
        let mut escaped = false;
        for (i, c) in inner.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                '>' if !quoted => return Some((&inner[..i], inner[i + 1..].trim())),
                _ => {}
            }
        }
        None
    } else {
        let end = rest.find(' ').unwrap_or(rest.len());
        Some((&rest[..end], rest[end..].trim()))
    }
}

/// Remove an RFC 5321 source route (`@a,@b:user@d` → `user@d`).
fn strip_source_route(path: &str) -> &str {
    if path.starts_with('@') {
        if let Some(i) = path.find(':') {
            return &path[i + 1..];
        }
    }
    path
}

/// Whether `address` is an address (the one parser, in posthorn-types).
pub(crate) fn is_valid_address(address: &str) -> bool {
    posthorn_types::Address::parse(address).is_ok()
}

fn parse_mail(args: &str) -> Result<MailFrom, Reply> {
    let (path, params) = split_path(args, "FROM:").ok_or_else(|| syntax("MAIL FROM:<address>"))?;
    let address = strip_source_route(path).to_string();
    if !address.is_empty() && !is_valid_address(&address) {
        return Err(Reply::new(501, "5.1.7", "Error: bad sender address syntax"));
    }
    let mut mail = MailFrom {
        address,
        ..Default::default()
    };
    for param in params.split_ascii_whitespace() {
        let (key, value) = match param.find('=') {
            Some(i) => (&param[..i], Some(&param[i + 1..])),
            None => (param, None),
        };
        match (key.to_ascii_uppercase().as_str(), value) {
            ("SIZE", Some(v)) => {
                mail.size = Some(v.parse().map_err(|_| syntax("SIZE=<number>"))?);
            }
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => mail.body = BodyType::SevenBit,
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => {
                mail.body = BodyType::EightBitMime
            }
            ("BODY", _) => return Err(syntax("BODY=7BIT or BODY=8BITMIME")),
            ("SMTPUTF8", None) => mail.smtputf8 = true,
            // RFC 4954 AUTH= on MAIL: accepted and ignored, the session's
            // own login decides.
            ("AUTH", Some(_)) => {}
            _ => {
                return Err(Reply::new(
                    555,
                    "5.5.4",
                    format!("Error: unsupported MAIL parameter {}", quote(key)),
                ))
            }
        }
    }
    Ok(mail)
}

fn parse_rcpt(args: &str) -> Result<String, Reply> {
    let (path, params) = split_path(args, "TO:").ok_or_else(|| syntax("RCPT TO:<address>"))?;
    if let Some(param) = params.split_ascii_whitespace().next() {
        return Err(Reply::new(
            555,
            "5.5.4",
            format!("Error: unsupported RCPT parameter {}", quote(param)),
        ));
    }
    let address = strip_source_route(path);
    if !is_valid_address(address) {
        return Err(Reply::new(
            501,
            "5.1.3",
            "Error: bad recipient address syntax",
        ));
    }
    Ok(address.to_string())
}

fn parse_bdat(args: &str) -> Result<Command, Reply> {
    let mut parts = args.split_ascii_whitespace();
    let size = parts
        .next()
        .and_then(|s| s.parse::<usize>().ok())
        .ok_or_else(|| syntax("BDAT size [LAST]"))?;
    let last = match parts.next() {
        None => false,
        Some(s) if s.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(syntax("BDAT size [LAST]")),
    };
    if parts.next().is_some() {
        return Err(syntax("BDAT size [LAST]"));
    }
    Ok(Command::Bdat { size, last })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mail_with_parameters() {
        let Command::Mail(m) =
            parse(b"MAIL FROM:<a@example.com> SIZE=1512 BODY=8BITMIME SMTPUTF8").unwrap()
        else {
            panic!()
        };
        assert_eq!(m.address, "a@example.com");
        assert_eq!(m.size, Some(1512));
        assert_eq!(m.body, BodyType::EightBitMime);
        assert!(m.smtputf8);
    }

    #[test]
    fn tolerates_common_client_spellings() {
        assert!(matches!(parse(b"mail from: <a@b.c>"), Ok(Command::Mail(_))));
        assert!(matches!(parse(b"MAIL FROM:a@b.c"), Ok(Command::Mail(_))));
        assert_eq!(
            parse(b"RCPT TO:<@relay.example:x@y.z>"),
            Ok(Command::Rcpt("x@y.z".into()))
        );
        assert!(matches!(parse(b"MAIL FROM:<>"), Ok(Command::Mail(m)) if m.address.is_empty()));
    }

    #[test]
    fn refuses_bad_syntax_with_the_right_codes() {
        assert_eq!(parse(b"MAIL TO:<a@b.c>").unwrap_err().code, 501);
        assert_eq!(parse(b"RCPT TO:<nobody>").unwrap_err().status, "5.1.3");
        assert_eq!(parse(b"MAIL FROM:<a@b.c> FOO=1").unwrap_err().code, 555);
        assert_eq!(parse(b"BDAT x").unwrap_err().code, 501);
        assert_eq!(parse(b"XYZZY").unwrap_err().code, 500);
        assert_eq!(parse(b"EHLO").unwrap_err().code, 501);
        assert_eq!(parse("MAIL FRO\u{20ac}".as_bytes()).unwrap_err().code, 501);
    }
}
