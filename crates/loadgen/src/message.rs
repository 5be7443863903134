//! The one message every session sends: generated once, dot-stuffed once.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;

/// Length of a body line without its CRLF.
const LINE: usize = 76;

/// The recipients: `to` itself for one, `local+1@domain` .. `local+K@domain`
/// for more.
pub fn recipients(to: &str, count: u32) -> Vec<String> {
    if count <= 1 {
        return vec![to.to_string()];
    }
    let (local, domain) = to.rsplit_once('@').unwrap_or((to, ""));
    (1..=count)
        .map(|i| {
            if domain.is_empty() {
                format!("{local}+{i}")
            } else {
                format!("{local}+{i}@{domain}")
            }
        })
        .collect()
}

/// `AUTH PLAIN <base64(\0user\0password)>\r\n`.
pub fn auth_plain_command(user: &str, password: &str) -> Vec<u8> {
    let mut raw = Vec::with_capacity(user.len() + password.len() + 2);
    raw.push(0);
    raw.extend_from_slice(user.as_bytes());
    raw.push(0);
    raw.extend_from_slice(password.as_bytes());
    let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
    format!("AUTH PLAIN {encoded}\r\n").into_bytes()
}

/// A valid RFC 5322 message of exactly `size` bytes (or just over, when the
/// header section alone is larger): From, To, Subject, Date, Message-ID,
/// MIME-Version and a text/plain body of 76-character lines, CRLF endings.
pub fn generate(from: &str, recipients: &[String], size: usize) -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let domain = from.rsplit_once('@').map(|(_, d)| d).unwrap_or("localhost");
    let token: u64 = rand::random();
    let mut msg = Vec::with_capacity(size + 1024);
    push_header(&mut msg, "From", from);
    let to = recipients.join(",\r\n ");
    push_header(&mut msg, "To", &to);
    push_header(&mut msg, "Subject", "posthorn-loadgen test message");
    push_header(&mut msg, "Date", &rfc5322_date(now.as_secs()));
    let id = format!("<loadgen.{}.{token:016x}@{domain}>", now.as_nanos());
    push_header(&mut msg, "Message-ID", &id);
    push_header(&mut msg, "MIME-Version", "1.0");
    push_header(&mut msg, "Content-Type", "text/plain; charset=us-ascii");
    push_header(&mut msg, "Content-Transfer-Encoding", "7bit");
    msg.extend_from_slice(b"\r\n");
    let pattern: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut n = 0usize;
    let mut body_line = |len: usize, msg: &mut Vec<u8>| {
        for _ in 0..len {
            msg.push(pattern[n % pattern.len()]);
            n += 1;
        }
        msg.extend_from_slice(b"\r\n");
    };
    // Body lines cost len + 2 bytes with len in 1..=LINE: full lines, then
    // one shorter line for the rest; a rest of 1 or 2 bytes is too short for
    // a line, so the last full line and the rest become two shorter lines.
    let budget = size.saturating_sub(msg.len()).max(3);
    let full = LINE + 2;
    let (mut lines, rest) = (budget / full, budget % full);
    let mut tail: Vec<usize> = Vec::with_capacity(2);
    match rest {
        0 => {}
        1 | 2 => {
            lines -= 1;
            let both = full + rest;
            tail.push(40 - 2);
            tail.push(both - 40 - 2);
        }
        _ => tail.push(rest - 2),
    }
    for _ in 0..lines {
        body_line(LINE, &mut msg);
    }
    for len in tail {
        body_line(len, &mut msg);
    }
    msg
}

fn push_header(msg: &mut Vec<u8>, name: &str, value: &str) {
    msg.extend_from_slice(name.as_bytes());
    msg.extend_from_slice(b": ");
    msg.extend_from_slice(value.as_bytes());
    msg.extend_from_slice(b"\r\n");
}

/// `Thu, 01 Jan 1970 00:00:00 +0000` for seconds since the epoch.
pub fn rfc5322_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil: (year, month 1..=12, day 1..=31).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The message as sent after DATA: CRLF line endings, a `.` doubled at the
/// start of every line, and the `<CRLF>.<CRLF>` end marker.
pub fn dot_stuff(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + content.len() / 64 + 5);
    let mut line_start = true;
    let mut i = 0;
    while i < content.len() {
        let b = content[i];
        if line_start && b == b'.' {
            out.push(b'.');
        }
        match b {
            b'\r' if content.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
                line_start = true;
                continue;
            }
            b'\r' | b'\n' => {
                out.extend_from_slice(b"\r\n");
                line_start = true;
            }
            _ => {
                out.push(b);
                line_start = false;
            }
        }
        i += 1;
    }
    if !line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipient_lists() {
        assert_eq!(recipients("sink@x", 1), vec!["sink@x"]);
        assert_eq!(
            recipients("sink@x", 3),
            vec!["sink+1@x", "sink+2@x", "sink+3@x"]
        );
    }

    #[test]
    fn auth_plain() {
        assert_eq!(
            auth_plain_command("app@example.com", "secret"),
            b"AUTH PLAIN AGFwcEBleGFtcGxlLmNvbQBzZWNyZXQ=\r\n".to_vec()
        );
    }

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_700_000_000),
            "Tue, 14 Nov 2023 22:13:20 +0000"
        );
    }

    #[test]
    fn exact_sizes_and_line_lengths() {
        let rcpts = recipients("sink@example.net", 2);
        let headers = generate("load@bench.test", &rcpts, 0).len();
        for size in (headers..headers + 400).chain([5120, 100_000]) {
            let msg = generate("load@bench.test", &rcpts, size);
            assert_eq!(msg.len(), size, "size {size}");
            let text = std::str::from_utf8(&msg).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            for name in ["From: ", "To: ", "Subject: ", "Date: ", "Message-ID: "] {
                assert!(head.contains(name), "{name}");
            }
            assert!(body.ends_with("\r\n"));
            for line in body.trim_end_matches("\r\n").split("\r\n") {
                assert!(!line.is_empty() && line.len() <= LINE, "{size}: {line:?}");
            }
            assert!(!body.replace("\r\n", "").contains(['\r', '\n']));
        }
        // Too small for the headers: still a valid message with a body line.
        let msg = generate("load@bench.test", &rcpts, 10);
        assert_eq!(msg.len(), headers);
        assert!(msg.ends_with(b"\r\n"));
    }

    #[test]
    fn stuffing() {
        assert_eq!(dot_stuff(b"a\r\n.b\r\n"), b"a\r\n..b\r\n.\r\n");
        assert_eq!(dot_stuff(b".\r\n"), b"..\r\n.\r\n");
        assert_eq!(dot_stuff(b"a\nb"), b"a\r\nb\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b".\r\n");
        assert_eq!(dot_stuff(b"x.y\r\n"), b"x.y\r\n.\r\n");
        let msg = generate("a@b", &["c@d".to_string()], 5120);
        let stuffed = dot_stuff(&msg);
        assert_eq!(&stuffed[..msg.len()], &msg[..]);
        assert_eq!(&stuffed[msg.len()..], b".\r\n");
    }
}
