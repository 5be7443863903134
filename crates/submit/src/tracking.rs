//! Open and click tracking (issue 22, docs/tracking.md), pure: one
//! recipient's copy of a message with every HTML body part rewritten in its
//! decoded form (quoted-printable and base64 parts decoded, rewritten and
//! encoded again the same way, as X-SMTPAPI substitution does): each
//! `href="http(s)://..."` of an `<a>` element points at the signed click
//! link ([`Links::click_url`]) and a 1×1 image
//! ([`Links::open_url`]) goes before `</body>` (or at the end).
//!
//! Left as they are: links that are not http(s) (`mailto:`, anchors),
//! `href` values without quotes, text parts, attachments, and a part
//! without a transfer encoding whose lines would grow past 998 bytes (it
//! is sent untracked rather than broken).

use crate::links::Links;
use crate::smtpapi::{base64_lines, qp_decode, qp_encode, with_ending};
use base64::Engine as _;
use posthorn_policy::{Facts, TransferEncoding};

/// The longest line of an unencoded part (RFC 5322), without its CRLF.
const MAX_LINE: usize = 998;

/// `raw` (which `facts` describe) with its HTML parts tracked for the
/// recipient whose tracking token is `token`.
pub fn track(raw: &[u8], facts: &Facts, links: &Links, token: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 1024);
    let mut copied = 0;
    for part in &facts.text_parts {
        if !part.html || part.start < copied || part.end > raw.len() || part.start > part.end {
            continue;
        }
        let body = &raw[part.start..part.end];
        let rewrite = |html: &[u8]| {
            rewrite_html(html, &links.open_url(token), &|url| {
                links.click_url(token, url)
            })
        };
        let new = match part.encoding {
            TransferEncoding::Identity => {
                let new = rewrite(body);
                if new.split(|&b| b == b'\n').any(|l| l.len() > MAX_LINE + 1) {
                    continue;
                }
                new
            }
            TransferEncoding::QuotedPrintable => {
                with_ending(qp_encode(&rewrite(&qp_decode(body))), body)
            }
            TransferEncoding::Base64 => {
                let compact: Vec<u8> = body
                    .iter()
                    .copied()
                    .filter(|b| !b.is_ascii_whitespace())
                    .collect();
                let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(&compact) else {
                    continue;
                };
                with_ending(base64_lines(&rewrite(&decoded)), body)
            }
        };
        out.extend_from_slice(&raw[copied..part.start]);
        out.extend_from_slice(&new);
        copied = part.end;
    }
    out.extend_from_slice(&raw[copied..]);
    out
}

fn find_ci(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
        .map(|i| i + from)
}

/// HTML entity-decode the few forms a URL in an attribute uses.
fn unescape(v: &[u8]) -> String {
    String::from_utf8_lossy(v)
        .replace("&amp;", "&")
        .replace("&#38;", "&")
        .replace("&#x26;", "&")
}

fn escape(url: &str) -> String {
    url.replace('&', "&amp;").replace('"', "&quot;")
}

/// The decoded HTML `html` with its http(s) links pointed at `click(url)`
/// and the pixel `open_url` added.
pub fn rewrite_html(html: &[u8], open_url: &str, click: &dyn Fn(&str) -> String) -> Vec<u8> {
    let mut out = Vec::with_capacity(html.len() + 512);
    let mut copied = 0;
    let mut at = 0;
    while let Some(start) = find_ci(html, b"<a", at) {
        at = start + 2;
        if !html.get(at).is_some_and(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let Some(end) = html[at..].iter().position(|&b| b == b'>').map(|i| i + at) else {
            break;
        };
        let tag = &html[start..end];
        let mut search = 0;
        while let Some(h) = find_ci(tag, b"href", search) {
            search = h + 4;
            if !tag[h - 1].is_ascii_whitespace() {
                continue;
            }
            let mut i = h + 4;
            while tag.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
                i += 1;
            }
            if tag.get(i) != Some(&b'=') {
                continue;
            }
            i += 1;
            while tag.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
                i += 1;
            }
            let Some(&quote) = tag.get(i).filter(|q| matches!(q, b'"' | b'\'')) else {
                break;
            };
            let Some(len) = tag[i + 1..].iter().position(|&b| b == quote) else {
                break;
            };
            let value = &tag[i + 1..i + 1 + len];
            let url = unescape(value);
            let lower = url.trim().to_ascii_lowercase();
            if lower.starts_with("http://") || lower.starts_with("https://") {
                let value_start = start + i + 1;
                out.extend_from_slice(&html[copied..value_start]);
                out.extend_from_slice(escape(&click(url.trim())).as_bytes());
                copied = value_start + len;
            }
            break;
        }
        at = end + 1;
    }
    let pixel = format!(
        "<img src=\"{}\" width=\"1\" height=\"1\" alt=\"\" style=\"border:0;width:1px;height:1px\">",
        escape(open_url)
    );
    // The last </body>, if it comes after what was copied.
    let body_end = (0..html.len())
        .rev()
        .find(|&i| html[i..].len() >= 6 && html[i..i + 6].eq_ignore_ascii_case(b"</body"))
        .filter(|&i| i >= copied);
    match body_end {
        Some(i) => {
            out.extend_from_slice(&html[copied..i]);
            out.extend_from_slice(pixel.as_bytes());
            out.extend_from_slice(&html[i..]);
        }
        None => {
            out.extend_from_slice(&html[copied..]);
            out.extend_from_slice(pixel.as_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn click(url: &str) -> String {
        format!("https://t.example/c?u={url}&s=1")
    }

    #[test]
    fn links_are_rewritten_and_the_pixel_added() {
        let html = br#"<html><BODY><A class="x" HREF = "https://shop.example/a?b=1&amp;c=2">Shop</A>
<a href='mailto:x@example.com'>mail</a> <a name="n">n</a> <a href=http://unquoted.example>u</a>
<a data-href="x" href="http://plain.example/">p</a><abbr href="https://no.example">no</abbr></body></html>"#;
        let out = String::from_utf8(rewrite_html(html, "https://t.example/o.gif", &click)).unwrap();
        assert!(
            out.contains(
                r#"HREF = "https://t.example/c?u=https://shop.example/a?b=1&amp;c=2&amp;s=1">Shop"#
            ),
            "{out}"
        );
        assert!(out.contains("href='mailto:x@example.com'"), "{out}");
        assert!(out.contains("href=http://unquoted.example>"), "{out}");
        assert!(
            out.contains(r#"href="https://t.example/c?u=http://plain.example/&amp;s=1""#),
            "{out}"
        );
        assert!(out.contains(r#"<abbr href="https://no.example">"#), "{out}");
        assert!(out.ends_with(
            "<img src=\"https://t.example/o.gif\" width=\"1\" height=\"1\" alt=\"\" style=\"border:0;width:1px;height:1px\"></body></html>"
        ), "{out}");
        // Without </body>, the pixel goes at the end.
        let out = rewrite_html(b"<p>hi</p>", "https://t/o.gif", &click);
        assert!(out.starts_with(b"<p>hi</p><img src=\"https://t/o.gif\""));
    }

    #[test]
    fn encoded_parts_are_rewritten_decoded() {
        let links = Links::new([1; 32], "https://mail.example.com");
        let html = "<p>Hi</p><a href=\"https://shop.example/very/long/path/that/goes/on/and/on/and/on/and/on\">x</a></body>";
        let b64 = base64::engine::general_purpose::STANDARD.encode(html);
        let raw = format!(
            "From: a@example.com\r\nTo: b@example.net\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhttps://shop.example/\r\n--b\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p style=3D\"x\">Hi</p><a href=3D\"https://shop.example/q\">x</a></body>\r\n--b\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--b--\r\n"
        );
        let facts = posthorn_policy::check(
            raw.as_bytes(),
            "a@example.com",
            &posthorn_policy::PolicyLimits::default(),
        )
        .unwrap();
        let id = posthorn_types::MessageId::generate();
        let token = links.track_token(1, id, "b@example.net");
        let out = track(raw.as_bytes(), &facts, &links, &token);
        let parsed = mail_parser::MessageParser::default().parse(&out).unwrap();
        assert_eq!(parsed.body_text(0).unwrap().trim(), "https://shop.example/");
        let first = parsed.body_html(0).unwrap();
        let second = parsed.body_html(1).unwrap();
        for (h, url) in [
            (&first, "https://shop.example/q"),
            (
                &second,
                "https://shop.example/very/long/path/that/goes/on/and/on/and/on/and/on",
            ),
        ] {
            let want = links.click_url(&token, url).replace('&', "&amp;");
            assert!(h.contains(&want), "{h}\n{want}");
            assert!(h.contains(&links.open_url(&token)), "{h}");
        }
        assert!(first.starts_with("<p style=\"x\">Hi</p>"), "{first}");
    }
}
