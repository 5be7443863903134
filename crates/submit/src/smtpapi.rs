//! SendCloud's X-SMTPAPI batch personalisation (issue 22, docs/x-smtpapi.md):
//! one submission with a JSON header field
//!
//! ```text
//! X-SMTPAPI: {"to": ["ann@example.com", "bob@example.net"],
//!             "sub": {"%name%": ["Ann", "Bob"]}}
//! ```
//!
//! becomes one message per address of `to`, each with the values of its
//! position substituted. [`parse`] checks the header (refused before the
//! 250 with `FailedOperation.InvalidSmtpApi`); [`personalise`] writes one
//! recipient's copy. Both are pure; the submitter runs them after
//! `policy::check`, on the facts of its one parse.
//!
//! Rules:
//! - The header is a JSON object with `to` (a non-empty list of addresses)
//!   and `sub` (tag to a list of string or number values, one per address
//!   of `to`); both optional, no other field. Without `to`, the envelope's
//!   recipients (RCPT TO), in order, are the list; with it, `to` replaces
//!   them (RCPT TO only opens the transaction).
//! - At most the account's `max_recipients` addresses, and no more than its
//!   `messages_per_second` (each copy is a message for the rate limits);
//!   at most [`MAX_TAGS`] tags, the field at most [`MAX_HEADER`] bytes;
//!   values on one line.
//! - Tags are replaced literally (`posthorn_template::replace_tags`: one
//!   pass, longest tag first, values not searched again) in the Subject
//!   and in every body text part (text/plain and text/html that is not an
//!   attachment), never in attachments or other header fields. A text
//!   part is substituted in its decoded form: quoted-printable and base64
//!   parts are decoded, substituted and encoded again the same way;
//!   values are written as given (no HTML escaping: SendCloud does none).
//!   A non-ASCII value cannot go into a part whose charset is neither
//!   UTF-8 nor US-ASCII, and a line of an unencoded part may not grow past
//!   998 bytes: both are `FailedOperation.SmtpApiSubstitution`.
//! - Each copy's To is its own address alone (Cc goes: no recipient sees
//!   the others), and the X-SMTPAPI field never reaches a recipient.

use base64::Engine as _;
use posthorn_policy::codes::{refusal, INVALID_SMTPAPI, SMTPAPI_SUBSTITUTION};
use posthorn_policy::{Facts, TransferEncoding};
use posthorn_types::BusinessError;
use serde_json::Value;

/// The longest X-SMTPAPI field value accepted, in bytes.
pub const MAX_HEADER: usize = 64 * 1024;
/// The most substitution tags.
pub const MAX_TAGS: usize = 100;
/// The longest tag, in bytes.
const MAX_TAG: usize = 100;
/// The longest line of an unencoded part (RFC 5322), without its CRLF.
const MAX_LINE: usize = 998;

/// A checked X-SMTPAPI header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpApi {
    /// One message per address, in this order.
    pub to: Vec<String>,
    /// Tag and its values, one per address of `to`.
    pub sub: Vec<(String, Vec<String>)>,
}

fn bad(explanation: impl Into<String>) -> BusinessError {
    refusal(INVALID_SMTPAPI, explanation)
}

/// Check the header `raw` (its value as sent; folding is JSON white
/// space) against the envelope's recipients and the most addresses
/// allowed.
pub fn parse(raw: &str, envelope_rcpts: &[String], max: usize) -> Result<SmtpApi, BusinessError> {
    if raw.len() > MAX_HEADER {
        return Err(bad(format!(
            "X-SMTPAPI is {} bytes; at most {MAX_HEADER}",
            raw.len()
        )));
    }
    // Unfolded (RFC 5322 2.2.3: the line breaks go, the white space after
    // them stays), so a client that folded the field inside a JSON string
    // (Python's email package folds at any space) is read as it meant.
    let unfolded: String = raw.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
    let value: Value = serde_json::from_str(unfolded.trim())
        .map_err(|e| bad(format!("X-SMTPAPI is not JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(bad("X-SMTPAPI must be a JSON object with to and sub"));
    };
    if let Some(unknown) = obj.keys().find(|k| *k != "to" && *k != "sub") {
        return Err(bad(format!(
            "X-SMTPAPI field {unknown:?} is not supported (only to and sub)"
        )));
    }
    let to: Vec<String> = match obj.get("to") {
        None => envelope_rcpts.to_vec(),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => match posthorn_types::Address::parse(s.trim()) {
                    Ok(_) => Ok(s.trim().to_string()),
                    Err(e) => Err(bad(format!("X-SMTPAPI to[{i}] {s:?}: {e}"))),
                },
                _ => Err(bad(format!("X-SMTPAPI to[{i}] is not a string"))),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("X-SMTPAPI to must be a list of addresses")),
    };
    if to.is_empty() {
        return Err(bad("X-SMTPAPI to names no address"));
    }
    if to.len() > max {
        return Err(bad(format!(
            "X-SMTPAPI names {} recipients; this account sends at most {max} at once (max_recipients, messages_per_second)",
            to.len()
        )));
    }
    let mut sub = Vec::new();
    match obj.get("sub") {
        None => {}
        Some(Value::Object(tags)) => {
            if tags.len() > MAX_TAGS {
                return Err(bad(format!(
                    "X-SMTPAPI sub has {} tags; at most {MAX_TAGS}",
                    tags.len()
                )));
            }
            for (tag, values) in tags {
                if tag.is_empty()
                    || tag.len() > MAX_TAG
                    || tag.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err(bad(format!(
                        "X-SMTPAPI sub tag {tag:?}: 1 to {MAX_TAG} bytes without spaces"
                    )));
                }
                let Value::Array(values) = values else {
                    return Err(bad(format!("X-SMTPAPI sub {tag:?} must be a list")));
                };
                if values.len() != to.len() {
                    return Err(bad(format!(
                        "X-SMTPAPI sub {tag:?} has {} values for {} recipients; give one per recipient",
                        values.len(),
                        to.len()
                    )));
                }
                let values = values
                    .iter()
                    .map(|v| {
                        let s = match v {
                            Value::String(s) => s.clone(),
                            Value::Number(n) => n.to_string(),
                            _ => {
                                return Err(bad(format!(
                                    "X-SMTPAPI sub {tag:?}: values are strings or numbers"
                                )))
                            }
                        };
                        if s.chars().any(|c| c.is_control() && c != '\t') {
                            return Err(bad(format!(
                                "X-SMTPAPI sub {tag:?}: a value has a line break or control character"
                            )));
                        }
                        Ok(s)
                    })
                    .collect::<Result<_, _>>()?;
                sub.push((tag.clone(), values));
            }
        }
        Some(_) => return Err(bad("X-SMTPAPI sub must be an object of lists")),
    }
    Ok(SmtpApi { to, sub })
}

/// One recipient's copy: the message `raw` (which `facts` describe) with
/// the values of position `i` substituted in its body text parts, and its
/// substituted Subject (decoded). Header fields are the caller's to write.
pub fn personalise(
    raw: &[u8],
    facts: &Facts,
    api: &SmtpApi,
    i: usize,
) -> Result<(Vec<u8>, String), BusinessError> {
    let tags: Vec<(&[u8], &[u8])> = api
        .sub
        .iter()
        .map(|(t, v)| (t.as_bytes(), v[i].as_bytes()))
        .collect();
    let subject = match posthorn_template::replace_tags(facts.subject.as_bytes(), &tags) {
        // Tags and values are UTF-8, and so is the subject.
        Some(s) => String::from_utf8_lossy(&s).into_owned(),
        None => facts.subject.clone(),
    };
    let non_ascii = api.sub.iter().any(|(_, v)| !v[i].is_ascii());
    let mut out = Vec::with_capacity(raw.len() + 256);
    let mut copied = 0;
    for part in &facts.text_parts {
        if part.start < copied || part.end > raw.len() || part.start > part.end {
            continue;
        }
        let body = &raw[part.start..part.end];
        let replaced = match part.encoding {
            TransferEncoding::Identity => posthorn_template::replace_tags(body, &tags),
            TransferEncoding::QuotedPrintable => {
                posthorn_template::replace_tags(&qp_decode(body), &tags)
                    .map(|t| with_ending(qp_encode(&t), body))
            }
            TransferEncoding::Base64 => {
                let compact: Vec<u8> = body
                    .iter()
                    .copied()
                    .filter(|b| !b.is_ascii_whitespace())
                    .collect();
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(&compact)
                    .map_err(|_| {
                        refusal(
                            SMTPAPI_SUBSTITUTION,
                            "a base64 text part does not decode, so it cannot be substituted",
                        )
                    })?;
                posthorn_template::replace_tags(&decoded, &tags)
                    .map(|t| with_ending(base64_lines(&t), body))
            }
        };
        let Some(new) = replaced else { continue };
        let utf8 = part
            .charset
            .as_deref()
            .is_none_or(|c| matches!(c, "utf-8" | "utf8" | "us-ascii" | "ascii"));
        if non_ascii && !utf8 {
            return Err(refusal(
                SMTPAPI_SUBSTITUTION,
                format!(
                    "a value is not ASCII and a text part is in charset {}; write the part in UTF-8",
                    part.charset.as_deref().unwrap_or("")
                ),
            ));
        }
        if part.encoding == TransferEncoding::Identity
            && new.split(|&b| b == b'\n').any(|l| l.len() > MAX_LINE + 1)
        {
            return Err(refusal(
                SMTPAPI_SUBSTITUTION,
                format!("a substituted line is longer than {MAX_LINE} bytes; use quoted-printable or base64 for the part"),
            ));
        }
        out.extend_from_slice(&raw[copied..part.start]);
        out.extend_from_slice(&new);
        copied = part.end;
    }
    out.extend_from_slice(&raw[copied..]);
    Ok((out, subject))
}

/// A Subject field value for `subject`: as it is when it is printable
/// ASCII that fits a line, else RFC 2047 encoded words (UTF-8, base64) of
/// whole characters, folded.
pub fn subject_field(subject: &str) -> String {
    if subject.len() <= 900
        && subject
            .bytes()
            .all(|b| (32..127).contains(&b) || b == b'\t')
    {
        return subject.to_string();
    }
    let mut words = Vec::new();
    let mut start = 0;
    let mut end = 0;
    for (at, c) in subject.char_indices() {
        if at + c.len_utf8() - start > 45 {
            words.push(&subject[start..end]);
            start = at;
        }
        end = at + c.len_utf8();
    }
    words.push(&subject[start..end]);
    words
        .into_iter()
        .map(|w| {
            format!(
                "=?UTF-8?B?{}?=",
                base64::engine::general_purpose::STANDARD.encode(w)
            )
        })
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// `encoded` ending in CRLF exactly when `original` did.
pub(crate) fn with_ending(mut encoded: Vec<u8>, original: &[u8]) -> Vec<u8> {
    let had = original.ends_with(b"\r\n");
    let has = encoded.ends_with(b"\r\n");
    if had && !has {
        encoded.extend_from_slice(b"\r\n");
    } else if !had && has {
        encoded.truncate(encoded.len() - 2);
    }
    encoded
}

pub(crate) fn base64_lines(data: &[u8]) -> Vec<u8> {
    let text = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = Vec::with_capacity(text.len() + text.len() / 76 * 2 + 2);
    for chunk in text.as_bytes().chunks(76) {
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Quoted-printable decoding (RFC 2045 6.7): `=XX` and soft line breaks;
/// anything malformed is kept as it is.
pub fn qp_decode(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'=' {
            if body[i + 1..].starts_with(b"\r\n") {
                i += 3;
                continue;
            }
            if body[i + 1..].starts_with(b"\n") {
                i += 2;
                continue;
            }
            if let (Some(h), Some(l)) = (
                body.get(i + 1).copied().and_then(hex),
                body.get(i + 2).copied().and_then(hex),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(body[i]);
        i += 1;
    }
    out
}

/// Quoted-printable encoding: CRLF line breaks kept as hard breaks, lines
/// of at most 76 characters with soft breaks, white space before a break
/// encoded.
pub fn qp_encode(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 11 / 10 + 16);
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    for (n, line) in lines.iter().enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut width = 0;
        for (j, &b) in line.iter().enumerate() {
            let last = j + 1 == line.len();
            let literal =
                (b == b' ' || b == b'\t') && !last || (33..=126).contains(&b) && b != b'=';
            let piece_len = if literal { 1 } else { 3 };
            if width + piece_len > 75 {
                out.extend_from_slice(b"=\r\n");
                width = 0;
            }
            if literal {
                out.push(b);
            } else {
                out.extend_from_slice(format!("={b:02X}").as_bytes());
            }
            width += piece_len;
        }
        if n + 1 < lines.len() {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use posthorn_policy::PolicyLimits;
    use proptest::strategy::Strategy;

    fn api(raw: &str) -> Result<SmtpApi, BusinessError> {
        parse(raw, &["env@example.com".into()], 50)
    }

    #[test]
    fn the_header_is_checked() {
        let ok = api(r#"{"to": ["a@example.com", "b@example.net"], "sub": {"%name%": ["Ann", "Bob"], "%n%": [1, 2]}}"#).unwrap();
        assert_eq!(ok.to, ["a@example.com", "b@example.net"]);
        assert_eq!(ok.sub.len(), 2);
        // Folded anywhere, even inside a string.
        let folded =
            api("{\"to\": [\"a@example.com\"],\r\n \"sub\": {\"%n%\": [\"Ann\r\n Lee\"]}}")
                .unwrap();
        assert_eq!(folded.sub[0].1, ["Ann Lee"]);
        // Without to: the envelope's recipients.
        assert_eq!(
            api(r#"{"sub": {"%x%": ["1"]}}"#).unwrap().to,
            ["env@example.com"]
        );
        for bad in [
            "{not json",
            "[]",
            r#"{"to": []}"#,
            r#"{"to": ["not an address"]}"#,
            r#"{"to": "a@example.com"}"#,
            r#"{"to": ["a@example.com", "b@example.com"], "sub": {"%n%": ["1"]}}"#,
            r#"{"to": ["a@example.com"], "sub": {"%n%": [["x"]]}}"#,
            r#"{"to": ["a@example.com"], "sub": {"%n%": ["x\r\nBcc: y"]}}"#,
            r#"{"to": ["a@example.com"], "sub": {"": ["x"]}}"#,
            r#"{"to": ["a@example.com"], "filters": {}}"#,
        ] {
            let e = api(bad).unwrap_err();
            assert_eq!(e.code, INVALID_SMTPAPI, "{bad}");
            assert_eq!(e.smtp_code, 554, "{bad}");
        }
        let many = format!(r#"{{"to": [{}]}}"#, ["\"a@example.com\""; 3].join(","));
        assert!(parse(&many, &[], 2).is_err());
    }

    fn message(body_headers: &str, body: &str) -> Vec<u8> {
        format!(
            "From: s@example.com\r\nTo: x@example.com\r\nSubject: Hi %name%\r\nX-SMTPAPI: {{}}\r\nMIME-Version: 1.0\r\n{body_headers}\r\n{body}"
        )
        .into_bytes()
    }

    fn personalised(raw: &[u8], values: &[&str]) -> Result<(String, String), BusinessError> {
        let facts = posthorn_policy::check(raw, "s@example.com", &PolicyLimits::default()).unwrap();
        let api = SmtpApi {
            to: values.iter().map(|_| "x@example.com".to_string()).collect(),
            sub: vec![(
                "%name%".into(),
                values.iter().map(|v| v.to_string()).collect(),
            )],
        };
        let (out, subject) = personalise(raw, &facts, &api, values.len() - 1)?;
        let parsed = mail_parser::MessageParser::default().parse(&out).unwrap();
        let text = parsed.body_text(0).unwrap_or_default().into_owned();
        Ok((subject, text))
    }

    #[test]
    fn plain_qp_and_base64_parts_are_substituted_decoded() {
        let plain = message(
            "Content-Type: text/plain; charset=utf-8\r\n",
            "Dear %name%,\r\nbye\r\n",
        );
        assert_eq!(
            personalised(&plain, &["Ann", "Zoë"]).unwrap(),
            ("Hi Zoë".into(), "Dear Zoë,\r\nbye\r\n".into())
        );
        let qp = message(
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n",
            "Caf=C3=A9 %name% =3D ok\r\n",
        );
        let (_, text) = personalised(&qp, &["Jürgen = x"]).unwrap();
        assert_eq!(text, "Café Jürgen = x = ok\r\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode("Hello %name%!\r\n");
        let b = message(
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n",
            &format!("{b64}\r\n"),
        );
        let (_, text) = personalised(&b, &["Ann"]).unwrap();
        assert_eq!(text, "Hello Ann!\r\n");
    }

    #[test]
    fn values_that_cannot_be_written_are_refused() {
        let latin = message(
            "Content-Type: text/plain; charset=iso-8859-1\r\n",
            "Dear %name%\r\n",
        );
        assert_eq!(
            personalised(&latin, &["Zoë"]).unwrap_err().code,
            SMTPAPI_SUBSTITUTION
        );
        assert!(personalised(&latin, &["Zoe"]).is_ok());
        let long = "x".repeat(990);
        let plain = message(
            "Content-Type: text/plain\r\n",
            &format!("{long} %name%\r\n"),
        );
        assert_eq!(
            personalised(&plain, &[&"y".repeat(20)]).unwrap_err().code,
            SMTPAPI_SUBSTITUTION
        );
    }

    #[test]
    fn subjects_are_encoded_when_needed() {
        assert_eq!(subject_field("Hi Ann"), "Hi Ann");
        let long = "Grüße ".repeat(30);
        let field = subject_field(&long);
        assert!(field.lines().all(|l| l.len() < 80), "{field}");
        let raw = format!("Subject: {field}\r\n\r\n");
        let parsed = mail_parser::MessageParser::default()
            .parse(raw.as_bytes())
            .unwrap();
        assert_eq!(parsed.subject().unwrap(), long);
    }

    proptest::proptest! {
        /// Any text of CRLF-separated lines survives quoted-printable
        /// encoding, in lines of at most 76 characters.
        #[test]
        fn quoted_printable_round_trips_any_lines(
            lines in proptest::collection::vec(
                proptest::collection::vec(proptest::num::u8::ANY.prop_filter("no line break", |b| *b != b'\r' && *b != b'\n'), 0..200),
                0..5,
            )
        ) {
            let text = lines.join(&b"\r\n"[..]);
            let encoded = qp_encode(&text);
            proptest::prop_assert_eq!(qp_decode(&encoded), text);
            proptest::prop_assert!(encoded.split(|&b| b == b'\n').all(|l| l.len() <= 77));
        }
    }

    #[test]
    fn quoted_printable_round_trips() {
        for text in ["a = b\r\nc\t \r\n", &"é".repeat(100), "x "] {
            assert_eq!(
                qp_decode(&qp_encode(text.as_bytes())),
                text.as_bytes(),
                "{text:?}"
            );
            assert!(qp_encode(text.as_bytes())
                .split(|&b| b == b'\n')
                .all(|l| l.len() <= 77));
        }
    }
}
