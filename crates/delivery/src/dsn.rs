//! Delivery status notifications (RFC 3464): the bounce or delay notice sent
//! back to a message's envelope sender.
//!
//! [`build`] is a pure function of its [`DsnInput`]: it reads no clock and
//! does no I/O. The notice is a `multipart/report;
//! report-type=delivery-status` (RFC 6522) of three parts: a short
//! explanation for people (`text/plain`), the machine-readable report
//! (`message/delivery-status`), and the header section of the original
//! (`text/rfc822-headers`; the body is never returned). It carries
//! `Auto-Submitted: auto-replied` (RFC 3834) so that well-behaved software
//! does not answer it.
//!
//! Everything that came from elsewhere (the remote server's reply and host
//! name, the addresses, the original's header section) is cleaned before it
//! is written: control characters, CR and LF among them, become spaces, so
//! no remote text can start a header field or a boundary line of its own;
//! the remote server's text is made 7-bit; and values are folded, long
//! words cut, so that no line is longer than 998 octets (RFC 5322 §2.1.1).
//! The boundary is checked against every part's content.
//!
//! The notice is 7-bit unless an address or the original's header section
//! has 8-bit bytes; those parts, and the whole, then say
//! `Content-Transfer-Encoding: 8bit`.
//!
//! Sending it is the caller's job: with a null reverse-path (`MAIL FROM:<>`),
//! and never for a message that itself had one (RFC 5321 §4.5.5).

use posthorn_types::time::rfc5322;

/// What became of one recipient, as the notice reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnRecipient {
    /// The final recipient, a bare address (no angle brackets).
    pub address: String,
    /// Whether delivery to it failed for good or is still being retried.
    pub action: DsnAction,
    /// The enhanced status code (RFC 3463), e.g. `5.1.1`; `4.4.7` for a
    /// message that expired in the queue. One that is not a valid code is
    /// reported as `5.0.0` (failed) or `4.0.0` (delayed).
    pub status: String,
    /// The remote server's reply, e.g. `550 5.1.1 user unknown`; written as
    /// `Diagnostic-Code: smtp; ...`.
    pub diagnostic: Option<String>,
    /// The host name of the server that gave that reply; written as
    /// `Remote-MTA: dns; ...`.
    pub remote_mta: Option<String>,
    /// When delivery to it was last tried, in Unix seconds.
    pub last_attempt: Option<i64>,
}

/// The `Action` a notice reports for a recipient (RFC 3464 §2.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnAction {
    /// Not delivered and not to be retried: bounced, or expired in the queue.
    Failed,
    /// Not delivered yet, still being retried.
    Delayed,
}

impl DsnAction {
    /// The value of the `Action` field: `failed` or `delayed`.
    pub fn as_str(self) -> &'static str {
        match self {
            DsnAction::Failed => "failed",
            DsnAction::Delayed => "delayed",
        }
    }
}

/// Everything a notice says: about us, the original message, and each
/// recipient it reports on (at least one; RFC 3464 requires it).
#[derive(Debug, Clone, Copy)]
pub struct DsnInput<'a> {
    /// Our host name, written as `Reporting-MTA: dns; <name>`.
    pub reporting_mta: &'a str,
    /// Our id of the original message, written as `X-Posthorn-Queue-ID`.
    pub queue_id: &'a str,
    /// The address the notice comes from, e.g. `mailer-daemon@example.com`.
    pub from: &'a str,
    /// The original's envelope sender, to whom the notice goes.
    pub to: &'a str,
    /// When the original was accepted, in Unix seconds (`Arrival-Date`).
    pub arrival: i64,
    /// Now, in Unix seconds (the notice's `Date`).
    pub now: i64,
    /// The notice's own Message-ID, with angle brackets.
    pub message_id: &'a str,
    /// The original message as stored (CRLF line endings); only its header
    /// section is returned.
    pub original: &'a [u8],
    /// The recipients the notice reports on, in the order given.
    pub recipients: &'a [DsnRecipient],
}

/// The longest line allowed, in octets, without its CRLF (RFC 5322 §2.1.1).
const MAX_LINE: usize = 998;

/// The width folded header fields and wrapped text aim at.
const WIDTH: usize = 78;

/// The longest piece of a word with no spaces put on one line; a longer word
/// is cut into pieces of this size, one a line (short of [`MAX_LINE`] by
/// more than any prefix or field name used here).
const MAX_WORD: usize = 900;

/// The most characters of a remote server's reply that are kept.
const MAX_DIAGNOSTIC: usize = 2048;

/// The most octets of the original's header section that are returned.
const MAX_HEADERS: usize = 64 * 1024;

/// The notice for `input`: a complete RFC 5322 message with CRLF line
/// endings, ready to be sent with a null reverse-path.
pub fn build(input: &DsnInput) -> Vec<u8> {
    let failed = input
        .recipients
        .iter()
        .any(|r| r.action == DsnAction::Failed);
    let explanation = explanation(input, failed);
    let report = delivery_status(input);
    let headers = header_section(input.original);
    let boundary = boundary(input.queue_id, &[explanation.as_bytes(), &report, &headers]);

    let text_8bit = !explanation.is_ascii();
    let headers_8bit = !headers.is_ascii();

    let mut out = Vec::with_capacity(explanation.len() + report.len() + headers.len() + 1024);
    let from = format!("Mail Delivery System <{}>", address(input.from));
    push_field(&mut out, "From", &from);
    push_field(&mut out, "To", &format!("<{}>", address(input.to)));
    let subject = if failed {
        "Undelivered Mail Returned to Sender"
    } else {
        "Delayed Mail (still being retried)"
    };
    push_field(&mut out, "Subject", subject);
    push_field(&mut out, "Date", &rfc5322(input.now));
    push_field(&mut out, "Message-ID", input.message_id);
    push_field(&mut out, "MIME-Version", "1.0");
    push_field(&mut out, "Auto-Submitted", "auto-replied");
    out.extend_from_slice(b"Content-Type: multipart/report; report-type=delivery-status;\r\n");
    out.extend_from_slice(format!("\tboundary=\"{boundary}\"\r\n").as_bytes());
    push_field(
        &mut out,
        "Content-Transfer-Encoding",
        encoding(text_8bit || headers_8bit),
    );
    out.extend_from_slice(b"\r\nThis is a delivery status notification in MIME format.\r\n");

    let charset = if text_8bit { "utf-8" } else { "us-ascii" };
    let parts: [(String, &str, bool, &[u8]); 3] = [
        (
            format!("text/plain; charset={charset}"),
            "Notification",
            text_8bit,
            explanation.as_bytes(),
        ),
        (
            "message/delivery-status".to_string(),
            "Delivery report",
            false,
            &report,
        ),
        (
            "text/rfc822-headers".to_string(),
            "Undelivered message headers",
            headers_8bit,
            &headers,
        ),
    ];
    for (content_type, description, eight_bit, content) in parts {
        out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
        push_field(&mut out, "Content-Type", &content_type);
        push_field(&mut out, "Content-Description", description);
        push_field(&mut out, "Content-Transfer-Encoding", encoding(eight_bit));
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(content);
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// The `Content-Transfer-Encoding` for content that is, or is not, 8-bit.
fn encoding(eight_bit: bool) -> &'static str {
    if eight_bit {
        "8bit"
    } else {
        "7bit"
    }
}

/// The first part: what happened, for people. Every line ends in CRLF.
fn explanation(input: &DsnInput, failed: bool) -> String {
    let mut lines = wrap(
        &format!(
            "This is the mail delivery system at {}.",
            host(input.reporting_mta)
        ),
        "",
        "",
    );
    let sections = [
        (
            DsnAction::Failed,
            "Your message could not be delivered to the recipients below, and the \
             mail system has given up on them:",
        ),
        (
            DsnAction::Delayed,
            "Your message has not yet been delivered to the recipients below. It is \
             still being retried; you do not need to send it again:",
        ),
    ];
    for (action, intro) in sections {
        let mut recipients = input
            .recipients
            .iter()
            .filter(|r| r.action == action)
            .peekable();
        if recipients.peek().is_none() {
            continue;
        }
        lines.push(String::new());
        lines.extend(wrap(intro, "", ""));
        for r in recipients {
            lines.push(String::new());
            let line = format!("<{}>: {}", address(&r.address), reason(r));
            lines.extend(wrap(&line, "  ", "    "));
        }
    }
    lines.push(String::new());
    let attached = if failed {
        "The header section of your message is attached below."
    } else {
        "The header section of your message is attached below, for reference."
    };
    lines.extend(wrap(attached, "", ""));
    lines.into_iter().map(|l| l + "\r\n").collect()
}

/// Why a recipient is listed, in a few words: the remote reply if there is
/// one, else the status code.
fn reason(r: &DsnRecipient) -> String {
    let diagnostic = r.diagnostic.as_deref().map(remote_text);
    let remote = r.remote_mta.as_deref().map(host);
    let status = status(r);
    match (diagnostic.filter(|d| !d.is_empty()), remote) {
        (Some(d), Some(h)) if !h.is_empty() => format!("host {h} said: {d}"),
        (Some(d), _) => format!("the remote server said: {d}"),
        (None, _) if status == "4.4.7" => {
            "not delivered in time, the mail system gave up (status 4.4.7)".to_string()
        }
        (None, _) => format!("status {status}"),
    }
}

/// The second part: the `message/delivery-status` fields, per message then
/// per recipient, each group after a blank line. Always 7-bit.
fn delivery_status(input: &DsnInput) -> Vec<u8> {
    let mut out = Vec::new();
    push_field(
        &mut out,
        "Reporting-MTA",
        &format!("dns; {}", host(input.reporting_mta)),
    );
    push_field(
        &mut out,
        "X-Posthorn-Queue-ID",
        &remote_text(input.queue_id),
    );
    push_field(&mut out, "Arrival-Date", &rfc5322(input.arrival));
    for r in input.recipients {
        out.extend_from_slice(b"\r\n");
        push_field(&mut out, "Final-Recipient", &final_recipient(&r.address));
        push_field(&mut out, "Action", r.action.as_str());
        push_field(&mut out, "Status", status(r));
        if let Some(h) = r.remote_mta.as_deref().map(host).filter(|h| !h.is_empty()) {
            push_field(&mut out, "Remote-MTA", &format!("dns; {h}"));
        }
        if let Some(d) = r.diagnostic.as_deref().map(remote_text) {
            if !d.is_empty() {
                push_field(&mut out, "Diagnostic-Code", &format!("smtp; {d}"));
            }
        }
        if let Some(t) = r.last_attempt {
            push_field(&mut out, "Last-Attempt-Date", &rfc5322(t));
        }
    }
    out
}

/// The recipient's status code if it is a valid enhanced status code
/// (`class.subject.detail`, class 2, 4 or 5, the others of one to three
/// digits), else the generic code for its action.
fn status(r: &DsnRecipient) -> &str {
    let mut parts = r.status.split('.');
    let valid = matches!(parts.next(), Some("2" | "4" | "5"))
        && parts
            .by_ref()
            .take(2)
            .filter(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
            .count()
            == 2
        && parts.next().is_none();
    match (valid, r.action) {
        (true, _) => &r.status,
        (false, DsnAction::Failed) => "5.0.0",
        (false, DsnAction::Delayed) => "4.0.0",
    }
}

/// The `Final-Recipient` value: `rfc822; addr` for an ASCII address, else
/// `utf-8; ` and the address in the xtext form of RFC 6533 §3, which keeps
/// the delivery-status part 7-bit.
fn final_recipient(addr: &str) -> String {
    let addr = address(addr);
    if addr.is_ascii() {
        return format!("rfc822; {addr}");
    }
    let mut out = String::from("utf-8; ");
    for c in addr.chars() {
        match c {
            '\x21'..='\x2a' | '\x2c'..='\x3c' | '\x3e'..='\x5b' | '\x5d'..='\x7e' => out.push(c),
            _ => out.push_str(&format!("\\x{{{:02X}}}", u32::from(c))),
        }
    }
    out
}

/// An address as written inside angle brackets: without control
/// characters, whitespace or angle brackets.
fn address(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() && !c.is_whitespace() && !matches!(c, '<' | '>'))
        .collect()
}

/// A host name or address literal from elsewhere, cut down to the characters
/// those can have (letters, digits, `-`, `.`, `_`, and `[`, `]`, `:` for
/// literals) and to 255 of them.
fn host(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '[' | ']' | ':'))
        .take(255)
        .collect()
}

/// Text from elsewhere made safe for a 7-bit field: control characters and
/// other whitespace become single spaces, other non-ASCII characters `?`,
/// and past [`MAX_DIAGNOSTIC`] characters it is cut and ends in `...`.
fn remote_text(s: &str) -> String {
    let mapped = s.chars().map(|c| match c {
        c if c.is_control() || c.is_whitespace() => ' ',
        c if c.is_ascii() => c,
        _ => '?',
    });
    let mut out = String::new();
    for c in mapped {
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        if out.len() == MAX_DIAGNOSTIC {
            out.truncate(out.trim_end().len());
            out.push_str("...");
            return out;
        }
        out.push(c);
    }
    out.truncate(out.trim_end().len());
    out
}

/// Appends the header field `name: value` to `out`, folded (RFC 5322 §2.2.3)
/// to [`WIDTH`] where the value has spaces. Whitespace and control
/// characters in `value` only separate words, so none can end the field.
fn push_field(out: &mut Vec<u8>, name: &str, value: &str) {
    let lines = wrap(value, &format!("{name}: "), " ");
    out.extend_from_slice(lines.join("\r\n").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The words of `text` (split at whitespace and control characters, which
/// are dropped) in lines of about [`WIDTH`] octets, the first starting with
/// `first`, the others with `rest`. A word longer than [`MAX_WORD`] octets is
/// cut into pieces of that size, one a line, so no line is longer than
/// [`MAX_LINE`] for prefixes shorter than their difference. Always at least
/// one line; none has a line break.
fn wrap(text: &str, first: &str, rest: &str) -> Vec<String> {
    let words = text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .flat_map(pieces);
    let mut lines = Vec::new();
    let mut line = first.to_string();
    let mut empty = true;
    for word in words {
        if !empty && line.len() + 1 + word.len() > WIDTH {
            lines.push(std::mem::replace(&mut line, rest.to_string()));
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    debug_assert!(line.len() <= MAX_LINE);
    lines.push(line);
    lines
}

/// `word` in pieces of at most [`MAX_WORD`] octets, cut at character
/// boundaries.
fn pieces(word: &str) -> impl Iterator<Item = &str> {
    let mut rest = word;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = rest.len().min(MAX_WORD);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

/// The third part: the original's header section, up to and excluding the
/// empty line that ends it (all of the original if it has none), each line
/// ending in CRLF. Whatever the stored form, the result is safe to embed:
/// a bare LF ends a line, a bare CR or NUL becomes a space, a line is cut
/// at [`MAX_LINE`] octets, and whole fields are kept only while they fit in
/// [`MAX_HEADERS`] octets.
fn header_section(original: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut field_start = 0;
    for line in original.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            // The empty line ending the section, or the nothing after a final
            // line break.
            break;
        }
        let continuation = matches!(line[0], b' ' | b'\t');
        if !continuation {
            field_start = out.len();
        }
        let line = &line[..line.len().min(MAX_LINE)];
        if out.len() + line.len() + 2 > MAX_HEADERS {
            // Drop the field this line belongs to: only whole fields are kept.
            out.truncate(field_start);
            break;
        }
        out.extend(line.iter().map(|&b| match b {
            b'\r' | b'\0' => b' ',
            b => b,
        }));
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A boundary for a notice about `queue_id` that occurs in none of `parts`:
/// `=_posthorn_`, the queue id's letters and digits (at most 32), `_` and a
/// counter, the first value of which that is absent. At most 64 characters
/// (RFC 2046 allows 70); `=_` cannot occur in quoted-printable or base64.
fn boundary(queue_id: &str, parts: &[&[u8]]) -> String {
    let id: String = queue_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(32)
        .collect();
    let mut n = 0u64;
    loop {
        let candidate = format!("=_posthorn_{id}_{n}");
        let needle = candidate.as_bytes();
        let used = parts
            .iter()
            .any(|part| part.windows(needle.len()).any(|w| w == needle));
        if !used {
            return candidate;
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipient(status: &str, action: DsnAction) -> DsnRecipient {
        DsnRecipient {
            address: "user@example.net".to_string(),
            action,
            status: status.to_string(),
            diagnostic: None,
            remote_mta: None,
            last_attempt: None,
        }
    }

    #[test]
    fn wraps_at_spaces_and_cuts_long_words() {
        let lines = wrap("a b  c\r\nd", "X: ", " ");
        assert_eq!(lines, ["X: a b c d"]);

        let text = "word ".repeat(40);
        let lines = wrap(&text, "X: ", " ");
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|l| l.len() <= WIDTH));
        assert!(lines[1..].iter().all(|l| l.starts_with(' ')));
        assert_eq!(lines.concat().split_whitespace().count(), 41);

        let long = "x".repeat(2500);
        let lines = wrap(&long, "X: ", " ");
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| l.len() <= MAX_LINE));

        // Multi-byte characters are cut at character boundaries.
        let long = "é".repeat(1000);
        assert!(wrap(&long, "", "").iter().all(|l| l.len() <= MAX_WORD));
    }

    #[test]
    fn empty_value_is_one_line() {
        assert_eq!(wrap("", "X: ", " "), ["X: "]);
    }

    #[test]
    fn remote_text_is_one_ascii_line() {
        assert_eq!(
            remote_text("550 5.1.1\r\nX-Injected: 1\0 \u{1b}[0m caf\u{e9}  "),
            "550 5.1.1 X-Injected: 1 [0m caf?"
        );
        let long = remote_text(&"y".repeat(5000));
        assert_eq!(long.len(), MAX_DIAGNOSTIC + 3);
        assert!(long.ends_with("..."));
    }

    #[test]
    fn status_codes_are_checked() {
        let r = recipient("5.1.1", DsnAction::Failed);
        assert_eq!(status(&r), "5.1.1");
        let r = recipient("4.4.7", DsnAction::Failed);
        assert_eq!(status(&r), "4.4.7");
        let r = recipient("5.100.100", DsnAction::Failed);
        assert_eq!(status(&r), "5.100.100");
        for bad in [
            "",
            "5",
            "5.1",
            "5.1.1.1",
            "3.1.1",
            "5.1000.1",
            "5.x.1",
            "5.1.1\r\n",
        ] {
            assert_eq!(
                status(&recipient(bad, DsnAction::Failed)),
                "5.0.0",
                "{bad:?}"
            );
            assert_eq!(
                status(&recipient(bad, DsnAction::Delayed)),
                "4.0.0",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn final_recipient_keeps_non_ascii_7bit() {
        assert_eq!(
            final_recipient("user@example.net"),
            "rfc822; user@example.net"
        );
        assert_eq!(
            final_recipient("j\u{f6}rg+x@b\u{fc}cher.example"),
            "utf-8; j\\x{F6}rg\\x{2B}x@b\\x{FC}cher.example"
        );
    }

    #[test]
    fn host_names_lose_other_characters() {
        assert_eq!(host("mx1.example.net\r\nX: y"), "mx1.example.netX:y");
        assert_eq!(host("[192.0.2.1]"), "[192.0.2.1]");
    }

    #[test]
    fn header_section_ends_at_the_empty_line() {
        let original = b"Subject: hi\r\nTo: a@b\r\n\r\nbody\r\n";
        assert_eq!(header_section(original), b"Subject: hi\r\nTo: a@b\r\n");
        // No empty line: all of it, the last line given its CRLF.
        assert_eq!(
            header_section(b"Subject: hi\r\nTo: a@b"),
            b"Subject: hi\r\nTo: a@b\r\n"
        );
        // No header section at all.
        assert_eq!(header_section(b"\r\nbody\r\n"), b"");
        // Bare LF ends a line, a bare CR is no line break.
        assert_eq!(
            header_section(b"A: 1\nB: 2\r3\r\n\nbody"),
            b"A: 1\r\nB: 2 3\r\n"
        );
    }

    #[test]
    fn header_section_is_capped_at_a_field_boundary() {
        let mut original = Vec::new();
        for i in 0..2000 {
            original.extend_from_slice(format!("X-Field-{i}: {}\r\n", "v".repeat(40)).as_bytes());
            original.extend_from_slice(b"\tcontinued\r\n");
        }
        original.extend_from_slice(b"\r\nbody\r\n");
        let section = header_section(&original);
        assert!(section.len() <= MAX_HEADERS);
        assert!(section.ends_with(b"\tcontinued\r\n"));
        let long_line = [b"X: ".as_slice(), &[b'z'; 5000], b"\r\n\r\n"].concat();
        let section = header_section(&long_line);
        assert_eq!(section.len(), MAX_LINE + 2);
    }

    #[test]
    fn boundary_avoids_the_content() {
        assert_eq!(boundary("01J-ABC", &[b"nothing"]), "=_posthorn_01JABC_0");
        let taken = b"--=_posthorn_01JABC_0 and =_posthorn_01JABC_1";
        assert_eq!(boundary("01J-ABC", &[b"x", taken]), "=_posthorn_01JABC_2");
        assert!(boundary(&"Q".repeat(100), &[]).len() <= 70);
    }
}
