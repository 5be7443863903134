//! The one parse of a message: mail-parser's, without the copy of a
//! single-part body it would only have checked.
//!
//! mail-parser turns every text part into a `String` as it parses: a
//! UTF-8 body through `String::from_utf8_lossy`, which walks it a byte at
//! a time, a `charset=us-ascii` one through a table, a character at a
//! time into a new string. The policy reads a body only to see whether it
//! is blank, yet that walk was the largest single cost of accepting a
//! 100 KB message (`Utf8Chunks`, 8.7 % of the server's CPU in
//! `DELIVERY=false bench/accept-deliver.sh` on an AMD EPYC, 2026-12-07)
//! and a us-ascii body's copy 1.7 % at 5 KB.
//!
//! Most transactional mail is one text part, as sent, with no transfer
//! encoding. For that shape ([`Shape::single_body`], found by the
//! pre-scan, which walks the header blocks with mail-parser's own
//! pieces) [`parse`] hands mail-parser the header block alone and puts the
//! body in as the `&str` it already is, once `std::str::from_utf8` (which
//! reads ASCII a word at a time) says it is UTF-8: the same `Message`
//! mail-parser builds from the whole, which the tests compare. Any other
//! shape, charset or body goes to mail-parser whole.

use crate::prescan::Shape;
use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::{Encoding, Message, MessageParser, MimeHeaders, PartType};
use std::borrow::Cow;

/// `MessageParser::default().parse(raw)`, the same `Message`, with less
/// work for a single-part body (see the module documentation). `shape`
/// is what [`crate::prescan`] found in this `raw`.
pub(crate) fn parse<'x>(raw: &'x [u8], shape: Shape) -> Option<Message<'x>> {
    if let Some(start) = shape.single_body.filter(|&s| s < raw.len()) {
        if let Some(message) = single_part(raw, start) {
            return Some(message);
        }
    }
    MessageParser::default().parse(raw)
}

/// The message whose one body starts at `start`, or `None` where
/// mail-parser would decode the body into something other than its own
/// bytes (or the header block does not end at `start` when parsed alone).
fn single_part(raw: &[u8], start: usize) -> Option<Message<'_>> {
    let body = &raw[start..];
    let mut message = MessageParser::default().parse(&raw[..start])?;
    let [part] = message.parts.as_mut_slice() else {
        return None;
    };
    if part.offset_body as usize != start
        || part.encoding != Encoding::None
        || part.is_encoding_problem
    {
        return None;
    }
    // mail-parser's text: a known charset's decoder, else the bytes as
    // UTF-8. Only where that is the body itself can it be borrowed.
    let charset = part.content_type().and_then(|ct| ct.attribute("charset"));
    let as_is = match charset.filter(|c| charset_decoder(c.as_bytes()).is_some()) {
        None => true,
        // Its table maps ASCII to itself; any other byte is decoded.
        Some(c) => c.eq_ignore_ascii_case("us-ascii") && body.is_ascii(),
    };
    if !as_is {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    part.body = match &part.body {
        PartType::Text(t) if t.is_empty() => PartType::Text(Cow::Borrowed(text)),
        PartType::Html(t) if t.is_empty() => PartType::Html(Cow::Borrowed(text)),
        _ => return None,
    };
    part.offset_end = raw.len() as u32;
    message.raw_message = Cow::Borrowed(raw);
    Some(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prescan::prescan;

    /// `parse` gives what mail-parser gives for the whole message.
    fn same(raw: &str) -> bool {
        let raw = raw.as_bytes();
        let shape = prescan(raw).1.expect("passes the pre-scan");
        let ours = parse(raw, shape);
        let theirs = MessageParser::default().parse(raw);
        assert_eq!(ours, theirs, "{}", String::from_utf8_lossy(raw));
        shape.single_body.is_some()
    }

    const HEAD: &str = "From: a@example.com\r\nTo: b@example.net\r\nSubject: hi\r\n";

    #[test]
    fn single_parts_are_what_mail_parser_makes() {
        for (extra, body) in [
            ("", "Hello\r\nthere\r\n"),
            ("", "   \r\n\t\r\n"),
            ("", "caf\u{e9} \u{4f60}\u{597d}\r\n"),
            (
                "Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n",
                "Hello\r\n",
            ),
            (
                "Content-Type: text/plain; charset=\"UTF-8\"\r\n",
                "caf\u{e9}\r\n",
            ),
            (
                "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n",
                "<p>Hi</p>\r\n",
            ),
            ("Content-Type: TEXT/PLAIN; charset=US-ASCII\r\n", "x\r\n"),
            (
                "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n",
                "\r\n\r\nafter blank lines\r\n",
            ),
            (
                "Content-Type: text/plain; charset=unknown-8bit\r\n",
                "x\r\n",
            ),
            // A multipart whose boundary never comes: one text part.
            (
                "Content-Type: multipart/mixed; boundary=zz\r\n",
                "no parts here\r\n",
            ),
            ("Content-Type: application/octet-stream\r\n", "bytes\r\n"),
        ] {
            let raw = format!("{HEAD}{extra}\r\n{body}");
            assert!(same(&raw), "{extra}");
            let start = prescan(raw.as_bytes()).1.unwrap().single_body.unwrap();
            let binary = extra.contains("octet-stream");
            assert_eq!(
                single_part(raw.as_bytes(), start).is_none(),
                binary,
                "{extra}"
            );
        }
    }

    proptest::proptest! {
        /// Any header block and body: the same `Message` as mail-parser's.
        #[test]
        fn the_same_message_as_mail_parser(
            fields in proptest::collection::vec(proptest::sample::select(vec![
                "Content-Type: text/plain; charset=us-ascii\r\n",
                "Content-Type: text/plain; charset=utf-8\r\n",
                "Content-Type: text/html\r\n",
                "Content-Type: text/plain; charset=iso-8859-1\r\n",
                "Content-Type: multipart/mixed; boundary=b\r\n",
                "Content-Type: message/rfc822\r\n",
                "Content-Transfer-Encoding: 7bit\r\n",
                "Content-Transfer-Encoding: base64\r\n",
                "Content-Transfer-Encoding: quoted-printable\r\n",
                "Date: 1 Jan 2026 00:00:00 E\r\n",
                "Subject: =?utf-8?q?caf=C3=A9?=\r\n",
                "X-Folded: a\r\n b\r\n",
            ]), 0..5),
            body in proptest::collection::vec(proptest::sample::select(vec![
                &b"Hello "[..], b"\r\n", b" ", b"\t", b"caf\xc3\xa9", b"\xe9", b"\xc3",
                b"--b\r\n", b"--b--\r\n", b"Content-Type: text/plain\r\n\r\n", b"=41", b"SGk=",
                b"\n", b"\r", b"\0",
            ]), 0..12),
        ) {
            let mut raw = format!("{HEAD}{}\r\n", fields.concat()).into_bytes();
            raw.extend(body.concat());
            if let (_, Ok(shape)) = prescan(&raw) {
                proptest::prop_assert_eq!(parse(&raw, shape), MessageParser::default().parse(&raw[..]));
            }
        }
    }

    #[test]
    fn other_bodies_fall_back_to_the_whole_parse() {
        for (extra, body) in [
            // Bytes a us-ascii or UTF-8 reading would change.
            (
                "Content-Type: text/plain; charset=us-ascii\r\n",
                "caf\u{e9}\r\n",
            ),
            ("Content-Type: text/plain; charset=iso-8859-1\r\n", "x\r\n"),
            ("Content-Type: text/plain; charset=utf-16\r\n", "x\r\n"),
        ] {
            assert!(same(&format!("{HEAD}{extra}\r\n{body}")));
        }
        let mut latin1 = format!("{HEAD}\r\n").into_bytes();
        latin1.extend_from_slice(b"caf\xe9\r\n");
        let shape = prescan(&latin1).1.unwrap();
        assert_eq!(
            parse(&latin1, shape),
            MessageParser::default().parse(&latin1[..])
        );
        for extra in [
            "Content-Transfer-Encoding: quoted-printable\r\n",
            "Content-Transfer-Encoding: base64\r\n",
            "Content-Type: multipart/alternative; boundary=b\r\n",
            "Content-Type: message/rfc822\r\n",
        ] {
            let raw = format!(
                "{HEAD}{extra}\r\n--b\r\nContent-Type: text/plain\r\n\r\nSGk=\r\n--b--\r\n"
            );
            assert!(!same(&raw), "{extra}");
        }
    }

    #[test]
    fn headers_alone_and_odd_header_blocks() {
        same(HEAD);
        same(&format!("{HEAD}\r\n"));
        // mail-parser's Date parser reads past a blank line after a
        // one-letter zone: the header block ends at the next one.
        same(&format!(
            "{HEAD}Date: 1 Jan 2026 00:00:00 E\r\n\r\nX-A: b\r\n\r\nbody\r\n"
        ));
        same("Subject: only\r\n\r\nbody");
    }
}
