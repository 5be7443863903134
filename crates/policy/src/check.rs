//! The checks, in the order a client most needs to hear about them.

use crate::charsets::is_registered;
use crate::codes::*;
use mail_parser::{Address, MessageParser, MessagePart, MimeHeaders, PartType};
use posthorn_types::BusinessError;

/// The limits one account's messages are held to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyLimits {
    pub max_attachments: usize,
    /// Decoded bytes of one attachment.
    pub max_attachment_size: usize,
    /// Decoded bytes of all attachments together.
    pub max_attachments_total: usize,
    /// Bytes of the message without its attachment parts.
    pub max_body_size: usize,
    /// Bytes of the whole message as sent.
    pub max_message_size: usize,
}

impl Default for PolicyLimits {
    fn default() -> Self {
        Self {
            max_attachments: 10,
            max_attachment_size: 5 * 1024 * 1024,
            max_attachments_total: 8 * 1024 * 1024,
            max_body_size: 1024 * 1024,
            max_message_size: 16 * 1024 * 1024,
        }
    }
}

/// One attachment as the policy saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachmentFact {
    /// Decoded from RFC 2047 or RFC 2231 form.
    pub filename: Option<String>,
    pub content_type: String,
    /// Decoded bytes.
    pub size: usize,
}

/// What the check learnt about an accepted message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// Decoded subject.
    pub subject: String,
    /// The From address.
    pub from: String,
    /// The From display name, decoded.
    pub from_name: Option<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    /// The client's Message-ID, without angle brackets.
    pub message_id: Option<String>,
    /// The message has a Date field that parses as a date.
    pub has_date: bool,
    pub attachments: Vec<AttachmentFact>,
    /// The body text parts (text/plain and text/html that are not
    /// attachments), where they are in the raw message and how they are
    /// encoded: what an X-SMTPAPI substitution rewrites.
    pub text_parts: Vec<TextPartFact>,
    /// The raw value of the X-SMTPAPI header field (SendCloud's batch
    /// personalisation), if the message has one.
    pub smtpapi: Option<String>,
    /// `X-Posthorn-Track: on|off`: this message tracked or not, whatever
    /// its account's `tracking` setting; `None` without the field.
    pub track: Option<bool>,
}

/// The header field that turns tracking on or off for one message.
pub const TRACK_FIELD: &str = "X-Posthorn-Track";

/// `X-Posthorn-Track`'s value: on, off, or refused.
fn track_field(message: &mail_parser::Message<'_>) -> Result<Option<bool>, BusinessError> {
    let mut values = message
        .headers()
        .iter()
        .filter(|h| h.name().eq_ignore_ascii_case(TRACK_FIELD))
        .map(|h| {
            message
                .raw_message()
                .get(h.offset_start() as usize..h.offset_end() as usize)
                .map(|v| String::from_utf8_lossy(v).trim().to_ascii_lowercase())
                .unwrap_or_default()
        });
    let Some(first) = values.next() else {
        return Ok(None);
    };
    let refused = |why: String| refuse(INVALID_TRACKING, why);
    if values.next().is_some() {
        return Err(refused(format!(
            "the {TRACK_FIELD} header field appears more than once"
        )));
    }
    match first.as_str() {
        "on" => Ok(Some(true)),
        "off" => Ok(Some(false)),
        other => Err(refused(format!(
            "{TRACK_FIELD} is {other:?}; it takes on or off"
        ))),
    }
}

/// How a part's body is written on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferEncoding {
    /// 7bit, 8bit, binary or none: the bytes as they are.
    Identity,
    QuotedPrintable,
    Base64,
}

/// One body text part of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextPartFact {
    /// Byte range of the encoded body in the raw message.
    pub start: usize,
    pub end: usize,
    pub encoding: TransferEncoding,
    /// The `charset` parameter, lower case; `None` when absent.
    pub charset: Option<String>,
    /// text/html (open and click tracking rewrites these).
    pub html: bool,
}

fn refuse(code: &'static str, explanation: impl Into<String>) -> BusinessError {
    crate::codes::refusal(code, explanation)
}

fn addresses(a: Option<&Address<'_>>) -> Vec<String> {
    a.map(|a| {
        a.iter()
            .filter_map(|addr| addr.address().map(str::to_string))
            .collect()
    })
    .unwrap_or_default()
}

/// Check `raw` (the canonical message) sent with envelope sender
/// `envelope_from` against `limits`.
pub fn check(
    raw: &[u8],
    envelope_from: &str,
    limits: &PolicyLimits,
) -> Result<Facts, BusinessError> {
    if raw.len() > limits.max_message_size {
        return Err(refuse(
            MESSAGE_TOO_LARGE,
            format!(
                "the message is {} bytes; the limit is {}",
                raw.len(),
                limits.max_message_size
            ),
        ));
    }
    // mail-parser's cost grows with the square of the parameters in one
    // Content-Type or Content-Disposition field (and of the parts naming
    // a boundary that never comes); a linear walk refuses those first.
    // See prescan.rs.
    let shape = crate::prescan::prescan(raw).1?;
    let message = crate::parse::parse(raw, shape).ok_or_else(|| {
        refuse(
            MISSING_EMAIL_CONTENT,
            "the message has no headers or content",
        )
    })?;

    // Characters no mail may carry, before anything reads a field.
    check_characters(raw, &message.parts)?;

    // Headers.
    let from = message.from();
    let from_addrs = addresses(from);
    let Some(from_addr) = from_addrs.first() else {
        return Err(refuse(
            MISSING_FROM,
            "the message has no From header with an address",
        ));
    };
    if from_addrs.len() > 1 {
        let listed: Vec<String> = from_addrs
            .iter()
            .take(3)
            .map(|a| format!("<{a}>"))
            .collect();
        let more = if from_addrs.len() > 3 { ", ..." } else { "" };
        return Err(refuse(
            SENDER_MISMATCH,
            format!(
                "From has {} addresses ({}{more}); one is allowed, the envelope sender <{envelope_from}>",
                from_addrs.len(),
                listed.join(", ")
            ),
        ));
    }
    if !from_addr.eq_ignore_ascii_case(envelope_from) {
        return Err(refuse(
            SENDER_MISMATCH,
            format!("the From address <{from_addr}> must be the envelope sender <{envelope_from}>"),
        ));
    }
    let subject = message.subject().map(str::trim).unwrap_or_default();
    if subject.is_empty() {
        return Err(refuse(MISSING_SUBJECT, "the message has no Subject header"));
    }
    let to = addresses(message.to());
    let cc = addresses(message.cc());
    if to.is_empty() && cc.is_empty() {
        return Err(refuse(
            MISSING_RECIPIENT,
            "the message has no To or Cc address",
        ));
    }
    if let Some(version) = message.header_raw("MIME-Version") {
        if strip_comments(version).trim() != "1.0" {
            return Err(refuse(
                INVALID_MIME_VERSION,
                format!("MIME-Version is {:?}; only 1.0 is allowed", version.trim()),
            ));
        }
    }
    let root = message.root_part();
    if let Some(ct) = root.content_type() {
        let ok = match (
            ct.ctype().to_ascii_lowercase().as_str(),
            ct.subtype().map(str::to_ascii_lowercase),
        ) {
            ("text", Some(sub)) => sub == "plain" || sub == "html",
            ("multipart", Some(sub)) => matches!(sub.as_str(), "mixed" | "related" | "alternative"),
            _ => false,
        };
        if !ok {
            return Err(refuse(
                INVALID_CONTENT_TYPE,
                format!(
                    "top-level {}/{}; use text/plain, text/html or multipart/mixed, related or alternative",
                    ct.ctype(),
                    ct.subtype().unwrap_or("")
                ),
            ));
        }
    }

    // Parts.
    let parents = parent_map(&message.parts);
    let mut attachments = Vec::new();
    let mut attachment_raw_bytes = 0usize;
    let mut has_content = false;
    let mut text_parts = Vec::new();
    for (i, part) in message.parts.iter().enumerate() {
        if part.is_multipart() {
            continue;
        }
        check_part_headers(i, part)?;
        let is_attachment = i != 0 && is_attachment(part, parents[i].map(|p| &message.parts[p]));
        if is_attachment {
            if part.encoding == mail_parser::Encoding::Base64 || part.is_encoding_problem {
                check_base64(raw, part, i)?;
            }
            attachment_raw_bytes += (part.raw_end_offset() - part.raw_header_offset()) as usize;
            attachments.push(AttachmentFact {
                filename: attachment_name(raw, part),
                content_type: content_type_of(part),
                size: decoded_len(raw, part),
            });
        }
        if is_attachment || !part_is_blank(part) {
            has_content = true;
        }
        if !is_attachment && matches!(part.body, PartType::Text(_) | PartType::Html(_)) {
            text_parts.push(TextPartFact {
                start: part.raw_body_offset() as usize,
                end: (part.raw_end_offset() as usize).min(raw.len()),
                encoding: match part.encoding {
                    mail_parser::Encoding::QuotedPrintable => TransferEncoding::QuotedPrintable,
                    mail_parser::Encoding::Base64 => TransferEncoding::Base64,
                    mail_parser::Encoding::None => TransferEncoding::Identity,
                },
                charset: part
                    .content_type()
                    .and_then(|ct| ct.attribute("charset"))
                    .map(str::to_ascii_lowercase),
                html: matches!(part.body, PartType::Html(_)),
            });
        }
    }
    if !has_content {
        return Err(refuse(
            MISSING_EMAIL_CONTENT,
            "the message has no body text, HTML or attachment",
        ));
    }
    if attachments.len() > limits.max_attachments {
        return Err(refuse(
            TOO_MANY_ATTACHMENTS,
            format!(
                "{} attachments; the limit is {}",
                attachments.len(),
                limits.max_attachments
            ),
        ));
    }
    if let Some(big) = attachments
        .iter()
        .find(|a| a.size > limits.max_attachment_size)
    {
        return Err(refuse(
            ATTACHMENT_TOO_LARGE,
            format!(
                "attachment {} is {} bytes decoded; the limit is {}",
                big.filename.as_deref().unwrap_or("(unnamed)"),
                big.size,
                limits.max_attachment_size
            ),
        ));
    }
    let total: usize = attachments.iter().map(|a| a.size).sum();
    if total > limits.max_attachments_total {
        return Err(refuse(
            ATTACHMENTS_TOO_LARGE,
            format!(
                "attachments total {total} bytes decoded; the limit is {}",
                limits.max_attachments_total
            ),
        ));
    }
    let track = track_field(&message)?;
    let body = raw.len().saturating_sub(attachment_raw_bytes);
    if body > limits.max_body_size {
        return Err(refuse(
            BODY_TOO_LARGE,
            format!(
                "the message without attachments is {body} bytes; the limit is {}",
                limits.max_body_size
            ),
        ));
    }

    Ok(Facts {
        subject: subject.to_string(),
        from: from_addr.clone(),
        from_name: from
            .and_then(|f| f.first())
            .and_then(|a| a.name())
            .map(str::to_string),
        to,
        cc,
        bcc: addresses(message.bcc()),
        message_id: message.message_id().map(str::to_string),
        // A Date that does not parse (Go's time.Now().String(), say) is
        // as good as none: the submitter writes one.
        has_date: message.date().is_some(),
        attachments,
        text_parts,
        smtpapi: message.header_raw("X-SMTPAPI").map(str::to_string),
        track,
    })
}

/// For each part, the multipart part that contains it.
fn parent_map(parts: &[MessagePart<'_>]) -> Vec<Option<usize>> {
    let mut parents = vec![None; parts.len()];
    for (i, part) in parts.iter().enumerate() {
        if let PartType::Multipart(children) = &part.body {
            for &child in children {
                if let Some(slot) = parents.get_mut(child as usize) {
                    *slot = Some(i);
                }
            }
        }
    }
    parents
}

/// A part with `Content-Disposition: attachment` or a filename, except an
/// inline part with a Content-ID inside multipart/related (an image the HTML
/// shows).
fn is_attachment(part: &MessagePart<'_>, parent: Option<&MessagePart<'_>>) -> bool {
    let disposition = part.content_disposition();
    if disposition.is_some_and(|d| d.is_attachment()) {
        return true;
    }
    let inline_related = part.content_id().is_some()
        && parent.is_some_and(|p| p.is_content_type("multipart", "related"));
    !inline_related && part.attachment_name().is_some()
}

fn content_type_of(part: &MessagePart<'_>) -> String {
    match part.content_type() {
        Some(ct) => match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        },
        None => "text/plain".into(),
    }
}

/// Bytes of the part after transfer decoding (base64, quoted-printable),
/// before any charset conversion: the size of the file the recipient saves.
fn decoded_len(raw: &[u8], part: &MessagePart<'_>) -> usize {
    match &part.body {
        PartType::Message(m) => m.raw_message.len(),
        PartType::Binary(b) | PartType::InlineBinary(b) => b.len(),
        PartType::Multipart(_) => 0,
        // Text was converted to UTF-8 by the parser: size it from the wire.
        PartType::Text(_) | PartType::Html(_) => {
            let body = raw_body(raw, part);
            match part.encoding {
                mail_parser::Encoding::Base64 => {
                    body.iter()
                        .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/'))
                        .count()
                        * 3
                        / 4
                }
                mail_parser::Encoding::QuotedPrintable => {
                    mail_parser::decoders::quoted_printable::quoted_printable_decode(body)
                        .map_or(body.len(), |d| d.len())
                }
                mail_parser::Encoding::None => body.len(),
            }
        }
    }
}

fn raw_body<'r>(raw: &'r [u8], part: &MessagePart<'_>) -> &'r [u8] {
    let start = part.raw_body_offset() as usize;
    let end = (part.raw_end_offset() as usize).min(raw.len());
    raw.get(start..end).unwrap_or_default()
}

/// The decoded file name. A name split into RFC 2231 pieces that cut
/// through RFC 2047 encoded words (JavaMail does this for long names) is put
/// back together before decoding.
fn attachment_name(raw: &[u8], part: &MessagePart<'_>) -> Option<String> {
    let name = part.attachment_name()?;
    if !name.contains("=?") {
        return Some(name.to_string());
    }
    let joined = ["Content-Disposition", "Content-Type"]
        .iter()
        .find_map(|field| {
            let header = part
                .headers
                .iter()
                .find(|h| h.name().eq_ignore_ascii_case(field))?;
            let value = raw.get(header.offset_start as usize..header.offset_end as usize)?;
            let param = if *field == "Content-Type" {
                "name"
            } else {
                "filename"
            };
            join_continuations(&String::from_utf8_lossy(value), param)
        });
    let Some(joined) = joined else {
        return Some(name.to_string());
    };
    // Let the parser decode the encoded words, as it would a Subject.
    let wrapped = format!("Subject: {joined}\r\n\r\n");
    MessageParser::new()
        .parse(wrapped.as_bytes())
        .and_then(|m| m.subject().map(str::to_string))
        .or(Some(name.to_string()))
}

/// The values of `param*0`, `param*1`, ... in `header`, joined in order.
fn join_continuations(header: &str, param: &str) -> Option<String> {
    let mut pieces: Vec<(u32, String)> = Vec::new();
    let lower = header.to_ascii_lowercase();
    let key = format!("{param}*");
    let mut from = 0;
    while let Some(found) = lower[from..].find(&key) {
        let start = from + found + key.len();
        from = start;
        // Only a parameter name boundary: preceded by ';' or white space.
        let before = lower[..start - key.len()].trim_end();
        if !before.ends_with(';') {
            continue;
        }
        let digits: String = header[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let Ok(n) = digits.parse::<u32>() else {
            continue;
        };
        let rest = &header[start + digits.len()..];
        let Some(rest) = rest.strip_prefix('=') else {
            continue;
        };
        let value = if let Some(quoted) = rest.strip_prefix('"') {
            quoted.split('"').next().unwrap_or_default().to_string()
        } else {
            rest.split(|c: char| c == ';' || c.is_whitespace())
                .next()
                .unwrap_or_default()
                .to_string()
        };
        // Folding inside a quoted piece is not part of the value.
        let value: String = value
            .split("\r\n")
            .map(|l| l.trim_start_matches([' ', '\t']))
            .collect::<Vec<_>>()
            .join(" ");
        pieces.push((n, value));
    }
    if pieces.is_empty() {
        return None;
    }
    pieces.sort_by_key(|(n, _)| *n);
    Some(pieces.into_iter().map(|(_, v)| v).collect::<String>())
}

fn part_is_blank(part: &MessagePart<'_>) -> bool {
    match &part.body {
        PartType::Text(t) | PartType::Html(t) => t.trim().is_empty(),
        PartType::Binary(b) | PartType::InlineBinary(b) => b.is_empty(),
        PartType::Message(_) => false,
        PartType::Multipart(_) => true,
    }
}

fn check_part_headers(index: usize, part: &MessagePart<'_>) -> Result<(), BusinessError> {
    if let Some(cte) = part.content_transfer_encoding() {
        let cte = cte.trim();
        let known = ["7bit", "8bit", "binary", "base64", "quoted-printable"];
        if !known.iter().any(|k| k.eq_ignore_ascii_case(cte)) {
            return Err(refuse(
                INVALID_TRANSFER_ENCODING,
                format!("part {index} is {cte:?}; use base64 or quoted-printable"),
            ));
        }
    }
    if let Some(ct) = part.content_type() {
        if ct.ctype().eq_ignore_ascii_case("text") {
            if let Some(charset) = ct.attribute("charset") {
                if !is_registered(charset) {
                    return Err(refuse(
                        INVALID_CHARSET,
                        format!("part {index} names charset {charset:?}, which is not registered; use UTF-8"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Strict base64: only the alphabet and white space, padding only at the
/// end, and a length that can be decoded.
fn check_base64(raw: &[u8], part: &MessagePart<'_>, index: usize) -> Result<(), BusinessError> {
    let start = part.raw_body_offset() as usize;
    let end = (part.raw_end_offset() as usize).min(raw.len());
    let body = raw.get(start..end).unwrap_or_default();
    let name = part.attachment_name().unwrap_or("(unnamed)");
    let bad = |why: &str| {
        refuse(
            INVALID_ATTACHMENT_CONTENT,
            // The reason first: a long Message is cut at its end.
            format!("part {index}: {why} ({name})"),
        )
    };
    let mut symbols = 0usize;
    let mut padding = 0usize;
    for &b in body {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' => {
                if padding > 0 {
                    return Err(bad("data after padding"));
                }
                symbols += 1;
            }
            b'=' => {
                padding += 1;
                if padding > 2 {
                    return Err(bad("too much padding"));
                }
            }
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ => return Err(bad("a character not in base64")),
        }
    }
    if (symbols + padding) % 4 == 1 || (padding > 0 && !(symbols + padding).is_multiple_of(4)) {
        return Err(bad("truncated"));
    }
    Ok(())
}

/// A byte a header field may not hold (RFC 5322 3.2 and 2.2: field
/// bodies are VCHAR, WSP and CRLF-folding; the obsolete syntax's
/// NO-WS-CTL is for readers, never for writers): NUL, every C0 control but
/// HTAB, and DEL. CR and LF are judged apart: as a pair they end a line.
fn forbidden_in_header(b: u8) -> bool {
    (b < 0x20 && b != b'\t' && b != b'\r' && b != b'\n') || b == 0x7f
}

/// Refuse (`FailedOperation.ControlCharacter`) a header field of the
/// message or of one of its MIME parts that holds a forbidden control
/// character or a CR or LF not in a CRLF pair, and a NUL anywhere in the
/// body. A message/rfc822 attachment's own header is content of the
/// message it is attached to and is not looked into. Linear: each header
/// byte is looked at once (the pre-scan bounds header bytes to 1 MiB),
/// the body is searched for NUL with memchr.
fn check_characters(raw: &[u8], parts: &[MessagePart<'_>]) -> Result<(), BusinessError> {
    for (index, part) in parts.iter().enumerate() {
        let start = (part.raw_header_offset() as usize).min(raw.len());
        let end = (part.raw_body_offset() as usize).clamp(start, raw.len());
        let header = &raw[start..end];
        for (i, &b) in header.iter().enumerate() {
            let bad = match b {
                b'\r' => header.get(i + 1) != Some(&b'\n'),
                b'\n' => i == 0 || header[i - 1] != b'\r',
                _ => forbidden_in_header(b),
            };
            if bad {
                let field = field_name_at(header, i);
                let whose = if index == 0 {
                    String::new()
                } else {
                    format!("part {index}: ")
                };
                let what = match b {
                    0 => "a NUL (0x00)".to_string(),
                    b'\r' => "a CR (0x0D) without LF".to_string(),
                    b'\n' => "an LF (0x0A) without CR".to_string(),
                    _ => format!("the control character 0x{b:02X}"),
                };
                return Err(refuse(
                    CONTROL_CHARACTER,
                    format!("{whose}header field {field} holds {what}; header fields allow no control characters but tab"),
                ));
            }
        }
    }
    if let Some(at) = memchr::memchr(0, raw) {
        return Err(refuse(
            CONTROL_CHARACTER,
            format!("the body holds a NUL (0x00) at byte {at}; encode binary content as base64"),
        ));
    }
    Ok(())
}

/// The name of the header field the byte at `at` of `header` is in, for a
/// refusal: printable ASCII, at most 64 characters.
fn field_name_at(header: &[u8], at: usize) -> String {
    // Back to the start of the line, then over continuation lines.
    let mut start = header[..at]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    while start > 0 && matches!(header.get(start), Some(b' ' | b'\t')) {
        start = header[..start - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
    }
    let name: String = header[start..]
        .iter()
        .take_while(|&&b| b != b':' && (0x21..0x7f).contains(&b))
        .take(64)
        .map(|&b| b as char)
        .collect();
    if name.is_empty() {
        "(unnamed)".into()
    } else {
        name
    }
}

fn strip_comments(s: &str) -> String {
    let mut depth = 0;
    s.chars()
        .filter(|&c| match c {
            '(' => {
                depth += 1;
                false
            }
            ')' => {
                depth -= 1;
                false
            }
            _ => depth == 0,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(raw: &str) -> &'static str {
        match check(raw.as_bytes(), "app@example.com", &PolicyLimits::default()) {
            Ok(_) => "ok",
            Err(e) => e.code,
        }
    }

    const OK: &str =
        "From: \"App\" <app@example.com>\r\nTo: a@example.net\r\nSubject: Hi\r\n\r\nHello\r\n";

    #[test]
    fn a_plain_message_passes_with_its_facts() {
        let facts = check(OK.as_bytes(), "APP@example.com", &PolicyLimits::default()).unwrap();
        assert_eq!(facts.subject, "Hi");
        assert_eq!(facts.from, "app@example.com");
        assert_eq!(facts.from_name.as_deref(), Some("App"));
        assert_eq!(facts.to, ["a@example.net"]);
        assert!(facts.attachments.is_empty());
        assert!(!facts.has_date);
        let dated = format!("Date: Sun, 06 Dec 2026 06:14:41 +0000\r\n{OK}");
        let facts = check(
            dated.as_bytes(),
            "app@example.com",
            &PolicyLimits::default(),
        )
        .unwrap();
        assert!(facts.has_date);
        // Go's time.Now().String(), as Tencent's Go sample writes it.
        let go = format!("Date: 2026-12-06 06:14:41.609435949 +0000 UTC m=+0.000312875\r\n{OK}");
        let facts = check(go.as_bytes(), "app@example.com", &PolicyLimits::default()).unwrap();
        assert!(!facts.has_date, "an unreadable Date is replaced");
    }

    #[test]
    fn each_header_rule_has_its_code() {
        assert_eq!(code(&OK.replace("Subject: Hi\r\n", "")), MISSING_SUBJECT);
        assert_eq!(
            code(&OK.replace("Subject: Hi", "Subject:   ")),
            MISSING_SUBJECT
        );
        assert_eq!(
            code(&OK.replace("From: \"App\" <app@example.com>\r\n", "")),
            MISSING_FROM
        );
        assert_eq!(
            code(&OK.replace("To: a@example.net\r\n", "")),
            MISSING_RECIPIENT
        );
        assert_eq!(code(&OK.replace("To:", "Cc:")), "ok");
        assert_eq!(
            code(&OK.replace("app@example.com", "other@example.com")),
            SENDER_MISMATCH
        );
        assert_eq!(code(&OK.replace("Hello\r\n", "")), MISSING_EMAIL_CONTENT);
        assert_eq!(code(&format!("MIME-Version: 1.0 (x)\r\n{OK}")), "ok");
        assert_eq!(
            code(&format!("MIME-Version: 2.0\r\n{OK}")),
            INVALID_MIME_VERSION
        );
        assert_eq!(
            code(&format!("Content-Type: application/pdf\r\n{OK}")),
            INVALID_CONTENT_TYPE
        );
        assert_eq!(
            code(&format!(
                "Content-Type: text/plain; charset=klingon\r\n{OK}"
            )),
            INVALID_CHARSET
        );
        assert_eq!(
            code(&format!("Content-Type: text/plain; charset=GB2312\r\n{OK}")),
            "ok"
        );
        assert_eq!(
            code(&format!("Content-Transfer-Encoding: x-uuencode\r\n{OK}")),
            INVALID_TRANSFER_ENCODING
        );
    }

    fn refusal(raw: &[u8]) -> BusinessError {
        check(raw, "app@example.com", &PolicyLimits::default()).unwrap_err()
    }

    #[test]
    fn control_characters_in_header_fields_are_refused() {
        for (field, bad) in [
            ("Subject", "Hi\0there"),
            ("Subject", "Hi\x01"),
            ("Subject", "Hi\x1b[31m"),
            ("Subject", "Hi\x7f"),
            ("Subject", "Hi\rBcc: x@example.net"),
            ("X-Note", "a\x0cb"),
        ] {
            let raw = format!("{field}: {bad}\r\n{OK}");
            let e = refusal(raw.as_bytes());
            assert_eq!(e.code, CONTROL_CHARACTER, "{bad:?}");
            assert!(
                e.message.contains(&format!("header field {field} holds")),
                "{}",
                e.message
            );
        }
        // In the From field itself, before From is read.
        let raw = OK.replace("<app@example.com>", "<app@example.com>\0");
        assert_eq!(refusal(raw.as_bytes()).code, CONTROL_CHARACTER);
        // A folded field is named by its first line.
        let raw = format!(
            "Subject: Hi\r\n there\x02\r\n{}",
            OK.replace("Subject: Hi\r\n", "")
        );
        let e = refusal(raw.as_bytes());
        assert!(
            e.message
                .contains("header field Subject holds the control character 0x02"),
            "{}",
            e.message
        );
        // Tab and 8-bit text are fine.
        assert_eq!(code(&OK.replace("Subject: Hi", "Subject: Hi\tthere")), "ok");
        assert_eq!(code(&OK.replace("Subject: Hi", "Subject: Grüße")), "ok");
    }

    #[test]
    fn control_characters_in_part_headers_are_refused() {
        let att = "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"a\0.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQ=";
        let raw = with_parts("multipart/mixed", &[TEXT, att]);
        let e = refusal(raw.as_bytes());
        assert_eq!(e.code, CONTROL_CHARACTER);
        assert!(
            e.message
                .contains("part 2: header field Content-Disposition holds a NUL"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_nul_in_the_body_is_refused_other_controls_are_not() {
        let e = refusal(OK.replace("Hello", "Hel\0lo").as_bytes());
        assert_eq!(e.code, CONTROL_CHARACTER);
        assert!(e.message.contains("the body holds a NUL"), "{}", e.message);
        // Form feed, ESC (ISO-2022-JP text): allowed in a body.
        assert_eq!(code(&OK.replace("Hello", "Page\x0cTwo \x1b$B\x1b(B")), "ok");
    }

    #[test]
    fn a_from_with_two_addresses_names_both() {
        let raw = OK.replace(
            "From: \"App\" <app@example.com>",
            "From: app@example.com, other@example.com",
        );
        let e = refusal(raw.as_bytes());
        assert_eq!(e.code, SENDER_MISMATCH);
        assert!(
            e.message.contains(
                "From has 2 addresses (<app@example.com>, <other@example.com>); one is allowed"
            ),
            "{}",
            e.message
        );
    }

    fn with_parts(ctype: &str, parts: &[&str]) -> String {
        let mut m = format!(
            "From: app@example.com\r\nTo: a@example.net\r\nSubject: parts\r\nMIME-Version: 1.0\r\nContent-Type: {ctype}; boundary=\"BB\"\r\n\r\n"
        );
        for p in parts {
            m.push_str("--BB\r\n");
            m.push_str(p);
            m.push_str("\r\n");
        }
        m.push_str("--BB--\r\n");
        m
    }

    const TEXT: &str = "Content-Type: text/plain; charset=utf-8\r\n\r\nhello";

    #[test]
    fn inline_related_images_are_not_attachments() {
        let img = "Content-Type: image/png; name=\"logo.png\"\r\nContent-ID: <logo>\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=";
        let html = "Content-Type: text/html\r\n\r\n<img src=\"cid:logo\">";
        let raw = with_parts("multipart/related", &[html, img]);
        let facts = check(raw.as_bytes(), "app@example.com", &PolicyLimits::default()).unwrap();
        assert_eq!(facts.attachments.len(), 0);
        // The same image in multipart/mixed is an attachment.
        let raw = with_parts("multipart/mixed", &[TEXT, img]);
        let facts = check(raw.as_bytes(), "app@example.com", &PolicyLimits::default()).unwrap();
        assert_eq!(facts.attachments.len(), 1);
        assert_eq!(facts.attachments[0].filename.as_deref(), Some("logo.png"));
        assert_eq!(facts.attachments[0].size, 8);
    }

    #[test]
    fn attachments_are_counted_sized_and_must_decode() {
        let att = |name: &str, b64: &str| {
            format!("Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}")
        };
        let good = att("a.bin", "AAECAwQ=");
        let raw = with_parts("multipart/mixed", &[TEXT, &good]);
        assert_eq!(code(&raw), "ok");
        for broken in ["AAEC!wQ=", "AAECAwQ=AAAA", "AAECA"] {
            let raw = with_parts("multipart/mixed", &[TEXT, &att("b.bin", broken)]);
            assert_eq!(code(&raw), INVALID_ATTACHMENT_CONTENT, "{broken}");
        }
        let many: Vec<String> = (0..11)
            .map(|i| att(&format!("{i}.bin"), "AAECAwQ="))
            .collect();
        let mut parts: Vec<&str> = vec![TEXT];
        parts.extend(many.iter().map(String::as_str));
        assert_eq!(
            code(&with_parts("multipart/mixed", &parts)),
            TOO_MANY_ATTACHMENTS
        );
        let small = PolicyLimits {
            max_attachment_size: 4,
            ..PolicyLimits::default()
        };
        let raw = with_parts("multipart/mixed", &[TEXT, &good]);
        assert_eq!(
            check(raw.as_bytes(), "app@example.com", &small)
                .unwrap_err()
                .code,
            ATTACHMENT_TOO_LARGE
        );
        let small = PolicyLimits {
            max_attachments_total: 9,
            ..PolicyLimits::default()
        };
        let raw = with_parts("multipart/mixed", &[TEXT, &good, &good]);
        assert_eq!(
            check(raw.as_bytes(), "app@example.com", &small)
                .unwrap_err()
                .code,
            ATTACHMENTS_TOO_LARGE
        );
        let small = PolicyLimits {
            max_body_size: 100,
            ..PolicyLimits::default()
        };
        assert_eq!(
            check(raw.as_bytes(), "app@example.com", &small)
                .unwrap_err()
                .code,
            BODY_TOO_LARGE
        );
    }
}
