//! Property tests: random input in random splits never panics, never
//! writes a malformed reply, and never submits a message without a
//! successful AUTH.

mod common;

use common::*;
use posthorn_smtp::{LineEndings, SessionConfig};
use proptest::prelude::*;

/// Pieces of SMTP, good and bad, for input that gets further into the
/// session than random bytes do.
const VOCABULARY: &[&str] = &[
    "EHLO client.example\r\n",
    "HELO client.example\r\n",
    "EHLO\r\n",
    "STARTTLS\r\n",
    "AUTH PLAIN\r\n",
    // "\0sender@example.com\0secret", the harness's good credentials.
    "AUTH PLAIN AHNlbmRlckBleGFtcGxlLmNvbQBzZWNyZXQ=\r\n",
    "AHNlbmRlckBleGFtcGxlLmNvbQBzZWNyZXQ=\r\n",
    "AUTH LOGIN\r\n",
    "AUTH LOGIN c2VuZGVyQGV4YW1wbGUuY29t\r\n",
    "c2VuZGVyQGV4YW1wbGUuY29t\r\n",
    "c2VjcmV0\r\n",
    "AUTH CRAM-MD5\r\n",
    "*\r\n",
    "=\r\n",
    "MAIL FROM:<sender@example.com>\r\n",
    "MAIL FROM:<sender@example.com> SIZE=100 BODY=8BITMIME SMTPUTF8\r\n",
    "MAIL FROM:<j\u{f6}rg@example.com> SMTPUTF8\r\n",
    "MAIL FROM:<>\r\n",
    "MAIL FRO\u{20ac}\r\n",
    "MAIL FROM:<a@b.c> X=",
    "RCPT TO:<r@example.net>\r\n",
    "RCPT TO:<@relay:r@example.net>\r\n",
    "RCPT TO:<bad>\r\n",
    "RCPT T\u{e9}\r\n",
    "DATA\r\n",
    "BDAT 5\r\n",
    "BDAT 3 LAST\r\n",
    "BDAT 0 LAST\r\n",
    "BDAT 18446744073709551615\r\n",
    "BDAT 99999999999999999999999\r\n",
    "RSET\r\n",
    "NOOP\r\n",
    "HELP\r\n",
    "VRFY x\r\n",
    "EXPN x\r\n",
    "QUIT\r\n",
    "XYZZY\r\n",
    ".\r\n",
    "..\r\n",
    "\r\n.\r\n",
    "\n.\n",
    "\r.\r",
    "\n.\r\n",
    "\r\n.\n",
    "\r\n",
    "\n",
    "\r",
    ".",
    "Subject: x\r\n\r\nbody\r\n",
    "hello",
    " ",
    "\u{e9}",
    "\u{20ac}",
    "\u{1f600}",
    "\u{0}",
    "\u{ff}",
];

fn vocabulary_input() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            8 => prop::sample::select(VOCABULARY).prop_map(|s| s.as_bytes().to_vec()),
            1 => prop::collection::vec(any::<u8>(), 0..8),
            1 => (1usize..300, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
        ],
        0..80,
    )
    .prop_map(|pieces| pieces.concat())
}

/// Pieces of message content, with the end-marker look-alikes.
const BODY: &[&str] = &[
    "Subject: x\r\n",
    "\r\n",
    "\n",
    "\r",
    ".",
    "..",
    ".\r\n",
    "\r\n.\r\n",
    "\n.\n",
    "\r.\r",
    "\n.\r\n",
    "\r\n.\n",
    "line\r\n",
    "MAIL FROM:<evil@example.com>\r\n",
    "QUIT\r\n",
    "\u{e9}",
];

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            6 => prop::sample::select(BODY).prop_map(|s| s.as_bytes().to_vec()),
            1 => prop::collection::vec(any::<u8>(), 0..8),
            1 => (1usize..300, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
        ],
        0..12,
    )
    .prop_map(|pieces| pieces.concat())
}

const AUTHS: &[&str] = &[
    "AUTH PLAIN AHNlbmRlckBleGFtcGxlLmNvbQBzZWNyZXQ=\r\n",
    "AUTH PLAIN\r\nAHNlbmRlckBleGFtcGxlLmNvbQBzZWNyZXQ=\r\n",
    "AUTH LOGIN\r\nc2VuZGVyQGV4YW1wbGUuY29t\r\nc2VjcmV0\r\n",
    "AUTH LOGIN c2VuZGVyQGV4YW1wbGUuY29t\r\nc2VjcmV0\r\n",
    "AUTH LOGIN c2VuZGVyQGV4YW1wbGUuY29t\r\n*\r\n",
];

const MAILS: &[&str] = &[
    "MAIL FROM:<sender@example.com>\r\n",
    "MAIL FROM:<sender@example.com> BODY=8BITMIME SMTPUTF8\r\n",
    "MAIL FROM:<sender@example.com> SIZE=200\r\n",
    "MAIL FROM:<other@elsewhere.net>\r\n",
    "MAIL FROM:<j\u{f6}rg@example.com>\r\n",
];

const RCPTS: &[&str] = &[
    "RCPT TO:<r@example.net>\r\n",
    "RCPT TO:<s@example.net>\r\n",
    "RCPT TO:<\u{e9}@example.net>\r\n",
    "RCPT TO:<bad>\r\n",
];

/// One transaction, mostly well formed: MAIL, RCPTs, then DATA, BDAT
/// chunks (sizes sometimes wrong) or RSET.
fn transaction() -> impl Strategy<Value = Vec<u8>> {
    let bdat = prop::collection::vec((body(), -2i64..=2, 0u8..10), 1..4).prop_map(|chunks| {
        let n = chunks.len();
        let mut out = Vec::new();
        for (i, (content, delta, r)) in chunks.into_iter().enumerate() {
            let size = if r == 0 {
                (content.len() as i64 + delta).max(0)
            } else {
                content.len() as i64
            };
            let last = if i + 1 == n && r != 1 { " LAST" } else { "" };
            out.extend_from_slice(format!("BDAT {size}{last}\r\n").as_bytes());
            out.extend_from_slice(&content);
        }
        out
    });
    (
        prop::sample::select(MAILS),
        prop::collection::vec(prop::sample::select(RCPTS), 0..4),
        prop_oneof![
            4 => body().prop_map(|b| [&b"DATA\r\n"[..], &b, b"\r\n.\r\n"].concat()),
            2 => bdat,
            1 => Just(b"RSET\r\n".to_vec()),
        ],
    )
        .prop_map(|(mail, rcpts, rest)| {
            let mut out = mail.as_bytes().to_vec();
            for r in rcpts {
                out.extend_from_slice(r.as_bytes());
            }
            out.extend_from_slice(&rest);
            out
        })
}

/// A session that mostly follows the protocol, with junk mixed in, so the
/// input reaches DATA, BDAT and submission often.
fn session_input() -> impl Strategy<Value = Vec<u8>> {
    (
        0u8..10,
        0u8..10,
        prop::option::weighted(0.9, prop::sample::select(AUTHS)),
        prop::collection::vec(
            prop_oneof![
                6 => transaction(),
                1 => prop::sample::select(VOCABULARY).prop_map(|s| s.as_bytes().to_vec()),
                1 => prop::collection::vec(any::<u8>(), 0..16),
            ],
            0..6,
        ),
    )
        .prop_map(|(ehlo, starttls, auth, rest)| {
            let mut out = Vec::new();
            if ehlo != 0 {
                out.extend_from_slice(b"EHLO client.example\r\n");
            }
            if starttls == 0 {
                out.extend_from_slice(b"STARTTLS\r\nEHLO again.example\r\n");
            }
            if let Some(auth) = auth {
                out.extend_from_slice(auth.as_bytes());
            }
            out.extend(rest.concat());
            out
        })
}

fn byte_input() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..2000)
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![4 => session_input(), 2 => vocabulary_input(), 1 => byte_input()]
}

fn either_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![2 => session_input(), 1 => vocabulary_input()]
}

/// Sizes of the pieces the input is fed in (cycled).
fn splits() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..64, 1..16)
}

fn session_config() -> impl Strategy<Value = SessionConfig> {
    (
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        prop_oneof![Just(16 * 1024 * 1024), 0usize..400],
        prop_oneof![Just(50), 0usize..4],
        prop_oneof![Just(2000), 1usize..100],
        prop_oneof![Just(12 * 1024), 8usize..200],
        prop_oneof![Just(20), 0u32..25],
    )
        .prop_map(
            |((tls, starttls, plain_auth, reject), size, rcpts, line, command, errors)| {
                SessionConfig {
                    hostname: "mx.test".into(),
                    max_message_size: size,
                    max_recipients: rcpts,
                    max_line_length: line,
                    max_command_length: command,
                    line_endings: if reject {
                        LineEndings::Reject
                    } else {
                        LineEndings::Fix
                    },
                    tls_active: tls,
                    starttls_available: starttls,
                    auth_without_tls: plain_auth,
                    max_errors: errors,
                    max_auth_failures: errors.max(1),
                }
            },
        )
}

/// Feed `input` in pieces of the given sizes, running after each.
fn feed_split(h: &mut Harness, input: &[u8], splits: &[usize]) {
    let mut rest = input;
    let mut sizes = splits.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().expect("non-empty splits")).min(rest.len());
        h.feed(&rest[..n]);
        h.run();
        rest = &rest[n..];
    }
    h.run();
}

fn check_well_formed(h: &Harness) {
    // Panics on a malformed reply.
    let replies = parse_replies(&h.transcript);
    assert_eq!(replies.first().map(|r| r.code), Some(220));
    // Nothing after a closing reply.
    if let Some(i) = replies.iter().position(|r| r.code == 221 || r.code == 421) {
        assert_eq!(i, replies.len() - 1, "replies after close: {replies:?}");
        assert!(h.closed);
    }
}

fn check_nothing_submitted(h: &Harness) {
    assert!(h.submitted.is_empty(), "submitted without AUTH");
    assert!(!h.session.is_authenticated());
    let text = String::from_utf8_lossy(&h.transcript);
    assert!(
        !text.contains("250 2.0.0 Ok: queued"),
        "queued without AUTH: {text}"
    );
    assert!(!text.contains("235 "), "AUTH success reply: {text}");
}

/// 3000 cases per property (under a second), or `PROPTEST_CASES` for a
/// longer hunt.
fn proptest_config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    ProptestConfig {
        cases,
        // Integration tests have no lib.rs for proptest to file
        // regressions beside; failures print the minimal input instead.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(proptest_config())]

    /// With every login refused, nothing is ever queued, whatever arrives.
    #[test]
    fn no_auth_no_submission(
        config in session_config(),
        input in input(),
        splits in splits(),
    ) {
        let mut h = Harness::new(config);
        h.accept_auth = false;
        feed_split(&mut h, &input, &splits);
        check_well_formed(&h);
        check_nothing_submitted(&h);
    }

    /// With logins accepted, anything may happen, but nothing panics and
    /// every reply is well formed.
    #[test]
    fn never_panics_with_logins_accepted(
        config in session_config(),
        input in either_input(),
        splits in splits(),
    ) {
        let max_size = config.max_message_size;
        let mut h = Harness::new(config);
        feed_split(&mut h, &input, &splits);
        check_well_formed(&h);
        for (envelope, data) in &h.submitted {
            prop_assert!(!envelope.rcpt_to.is_empty());
            prop_assert!(data.len() <= max_size, "{} > {}", data.len(), max_size);
            // The stored copy uses CRLF only.
            for (i, &b) in data.iter().enumerate() {
                if b == b'\n' {
                    prop_assert!(i > 0 && data[i - 1] == b'\r');
                }
                if b == b'\r' {
                    prop_assert_eq!(data.get(i + 1), Some(&b'\n'));
                }
            }
        }
    }

    /// Where no STARTTLS can happen (it throws away what is buffered, so it
    /// depends on the splits by design), the replies and the messages do
    /// not depend on how the input was split.
    #[test]
    fn splits_do_not_change_the_outcome(
        config in session_config(),
        input in either_input(),
        splits in splits(),
    ) {
        let config = SessionConfig { tls_active: true, ..config };
        let mut whole = Harness::new(config.clone());
        whole.feed(&input);
        whole.run();
        let mut split = Harness::new(config);
        feed_split(&mut split, &input, &splits);
        prop_assert_eq!(normalize(&whole.transcript), normalize(&split.transcript));
        prop_assert_eq!(&whole.submitted, &split.submitted);
        prop_assert_eq!(whole.closed, split.closed);
    }
}

#[test]
fn good_credentials_refused_by_the_driver_are_not_a_login() {
    // The vocabulary's credentials are the good ones; the harness refusing
    // them is what the property above relies on.
    let mut h = Harness::started(tls_config());
    h.accept_auth = false;
    h.expect("EHLO client.example", "250");
    h.expect(&format!("AUTH PLAIN {}", plain_ok()), "535 5.7.8");
    assert_eq!(h.auth_attempts.len(), 1);
    h.expect("MAIL FROM:<sender@example.com>", "530 5.7.0");
}
