//! The headers Posthorn writes: a Received field on top, Message-ID and
//! Date when the client sent none, and no Bcc in the copy that is
//! delivered. Works on the raw bytes so everything else stays as sent.

use memchr::memchr;

/// What to change in a message's header block.
#[derive(Clone, Debug, Default)]
pub struct HeaderEdits<'a> {
    /// Whole `Received:` field, folded, without the final CRLF.
    pub received: Option<&'a str>,
    /// Fields to append when the message lacks them, as `(name, value)`.
    pub add_if_missing: &'a [(&'a str, &'a str)],
    /// Field names to remove (case-insensitive), e.g. `Bcc`. A field named
    /// here and in `add_if_missing` is replaced.
    pub remove: &'a [&'a str],
}

/// Apply `edits` to the canonical (CRLF) message `raw`.
pub fn rewrite_headers(raw: &[u8], edits: &HeaderEdits<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 512);
    if let Some(received) = edits.received {
        out.extend_from_slice(received.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let mut present = vec![false; edits.add_if_missing.len()];
    let mut pos = 0;
    let mut keep_current = true;
    // Walk the header lines; a line starting with white space continues the
    // field before it.
    let body_start = loop {
        let Some(lf) = memchr(b'\n', &raw[pos..]) else {
            // Headers only, with no blank line and no final line ending.
            if keep_current_line(&raw[pos..], &mut keep_current, edits, &mut present) {
                out.extend_from_slice(&raw[pos..]);
                if !raw[pos..].is_empty() {
                    out.extend_from_slice(b"\r\n");
                }
            }
            break raw.len();
        };
        let line = &raw[pos..pos + lf + 1];
        let content = line
            .strip_suffix(b"\r\n")
            .unwrap_or(&line[..line.len() - 1]);
        if content.is_empty() {
            break pos;
        }
        if keep_current_line(content, &mut keep_current, edits, &mut present) {
            out.extend_from_slice(line);
        }
        pos += lf + 1;
    };
    for ((name, value), present) in edits.add_if_missing.iter().zip(&present) {
        if !present {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(&raw[body_start..]);
    out
}

/// Whether the header block of `raw` has a field named `name`
/// (case-insensitive).
pub fn has_field(raw: &[u8], name: &str) -> bool {
    for line in raw.split(|&b| b == b'\n') {
        let content = line.strip_suffix(b"\r").unwrap_or(line);
        if content.is_empty() {
            return false;
        }
        if matches!(content.first(), Some(b' ' | b'\t')) {
            continue;
        }
        if let Some(i) = memchr(b':', content) {
            if content[..i]
                .trim_ascii()
                .eq_ignore_ascii_case(name.as_bytes())
            {
                return true;
            }
        }
    }
    false
}

/// Decide whether a header line is kept, tracking which fields are present.
fn keep_current_line(
    content: &[u8],
    keep_current: &mut bool,
    edits: &HeaderEdits<'_>,
    present: &mut [bool],
) -> bool {
    if matches!(content.first(), Some(b' ' | b'\t')) {
        return *keep_current;
    }
    let name = match memchr(b':', content) {
        Some(i) => content[..i].trim_ascii(),
        None => content,
    };
    *keep_current = !edits
        .remove
        .iter()
        .any(|r| name.eq_ignore_ascii_case(r.as_bytes()));
    // A field removed does not count as present: naming one in both lists
    // replaces it.
    for ((wanted, _), seen) in edits.add_if_missing.iter().zip(present.iter_mut()) {
        if *keep_current && name.eq_ignore_ascii_case(wanted.as_bytes()) {
            *seen = true;
        }
    }
    *keep_current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_field_looks_at_the_header_block_only() {
        let raw = b"Subject: hi\r\n x-folded: no\r\nlist-unsubscribe : <x>\r\n\r\nTo: body\r\n";
        assert!(has_field(raw, "List-Unsubscribe"));
        assert!(has_field(raw, "subject"));
        assert!(!has_field(raw, "X-Folded"));
        assert!(!has_field(raw, "To"));
        assert!(!has_field(b"Subject: x", "To"));
    }

    #[test]
    fn a_field_both_removed_and_added_is_replaced() {
        let raw = b"Date: 2026-12-06 06:14:41 +0000 UTC m=+0.0003\r\nSubject: hi\r\n\r\nbody\r\n";
        let out = rewrite_headers(
            raw,
            &HeaderEdits {
                received: None,
                add_if_missing: &[("Date", "Sun, 06 Dec 2026 06:14:41 +0000")],
                remove: &["Date"],
            },
        );
        assert_eq!(
            out,
            b"Subject: hi\r\nDate: Sun, 06 Dec 2026 06:14:41 +0000\r\n\r\nbody\r\n"
        );
    }

    #[test]
    fn removes_bcc_adds_missing_fields_and_prepends_received() {
        let raw =
            b"From: a@b.c\r\nBcc: x@y.z,\r\n  w@y.z\r\nSubject: hi\r\n\r\nBcc: body stays\r\n";
        let out = rewrite_headers(
            raw,
            &HeaderEdits {
                received: Some("Received: from x\r\n\tby y; date"),
                add_if_missing: &[("Message-ID", "<id@host>"), ("Subject", "never")],
                remove: &["bcc"],
            },
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Received: from x\r\n\tby y; date\r\nFrom: a@b.c\r\nSubject: hi\r\nMessage-ID: <id@host>\r\n\r\nBcc: body stays\r\n"
        );
    }

    #[test]
    fn handles_messages_without_a_body() {
        let out = rewrite_headers(
            b"Subject: x\r\nBcc: y@z.w",
            &HeaderEdits {
                received: None,
                add_if_missing: &[("Date", "now")],
                remove: &["Bcc"],
            },
        );
        assert_eq!(out, b"Subject: x\r\nDate: now\r\n");
    }
}
