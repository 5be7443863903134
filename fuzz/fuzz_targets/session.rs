//! Arbitrary bytes, in arbitrary splits, into an SMTP session whose events
//! are answered like the proptest harness in `crates/smtp/tests/common`.
//!
//! Input layout:
//! - byte 0: flags (TLS, STARTTLS offered, plaintext AUTH, reject bare line
//!   endings, small size / line / command limits, accept logins);
//! - byte 1: the value the small limits are derived from;
//! - then chunks, each a length byte followed by that many bytes (the last
//!   one may be short); each chunk is fed and the session run to NeedInput.
//!
//! Invariants checked:
//! - nothing panics;
//! - every reply line is `NNN` + space or dash, ends in CRLF, fits in 512
//!   bytes, and nothing is written after a close;
//! - with logins refused (flag 0x80 clear): no Submit event, no `235`, no
//!   `250 2.0.0 Ok: queued` (no AUTH success, no submission);
//! - with logins accepted: every submitted message has a recipient, CRLF
//!   line endings only, and fits in the size limit.

#![no_main]

use libfuzzer_sys::fuzz_target;
use posthorn_smtp::{Event, LineEndings, Session, SessionConfig};
use posthorn_types::{MessageId, Reply};

const USER: &str = "sender@example.com";
const PASS: &str = "secret";

fuzz_target!(|data: &[u8]| run(data));

fn config(flags: u8, limits: u8) -> SessionConfig {
    let defaults = SessionConfig::default();
    let small = limits as usize;
    SessionConfig {
        hostname: "mx.test".into(),
        tls_active: flags & 0x01 != 0,
        starttls_available: flags & 0x02 != 0,
        auth_without_tls: flags & 0x04 != 0,
        line_endings: if flags & 0x08 != 0 {
            LineEndings::Reject
        } else {
            LineEndings::Fix
        },
        max_message_size: if flags & 0x10 != 0 {
            small * 4
        } else {
            defaults.max_message_size
        },
        max_line_length: if flags & 0x20 != 0 {
            1 + small % 100
        } else {
            defaults.max_line_length
        },
        max_command_length: if flags & 0x40 != 0 {
            8 + small
        } else {
            defaults.max_command_length
        },
        max_recipients: if flags & 0x10 != 0 { small % 4 } else { 50 },
        max_errors: defaults.max_errors,
    }
}

struct Driver {
    session: Session,
    accept_auth: bool,
    transcript: Vec<u8>,
    closed: bool,
    submitted: usize,
    max_size: usize,
}

impl Driver {
    fn collect(&mut self) {
        let out = self.session.output();
        assert!(
            !self.closed || out.is_empty(),
            "output after close: {:?}",
            String::from_utf8_lossy(out)
        );
        self.transcript.extend_from_slice(out);
        self.session.clear_output();
    }

    fn run(&mut self) {
        if self.closed {
            return;
        }
        loop {
            match self.session.step() {
                Event::NeedInput => break,
                Event::Close => {
                    self.collect();
                    self.closed = true;
                    return;
                }
                Event::StartTls => {
                    self.collect();
                    self.session.tls_started();
                }
                Event::Authenticate(creds) => {
                    let ok = self.accept_auth && creds.username == USER && creds.password == PASS;
                    self.session.auth_result(if ok {
                        Ok(())
                    } else {
                        Err(Reply::new(535, "5.7.8", "Error: authentication failed"))
                    });
                }
                Event::Mail(from) => {
                    let ok = from.to_ascii_lowercase().ends_with("@example.com");
                    self.session.mail_result(if ok {
                        Ok(())
                    } else {
                        Err(Reply::new(553, "5.7.1", "Error: sender not allowed"))
                    });
                }
                Event::Rcpt(_) => self.session.rcpt_result(Ok(())),
                Event::Submit { envelope, data } => {
                    assert!(
                        self.accept_auth,
                        "Submit without a successful AUTH: {envelope:?}"
                    );
                    assert!(!envelope.rcpt_to.is_empty(), "Submit without recipients");
                    assert!(
                        data.len() <= self.max_size,
                        "stored copy over the size limit"
                    );
                    for (i, &b) in data.iter().enumerate() {
                        if b == b'\n' {
                            assert!(i > 0 && data[i - 1] == b'\r', "bare LF stored");
                        }
                        if b == b'\r' {
                            assert_eq!(data.get(i + 1), Some(&b'\n'), "bare CR stored");
                        }
                    }
                    self.submitted += 1;
                    self.session.submit_result(Ok(MessageId::generate()));
                }
            }
        }
        self.collect();
    }
}

fn check_replies(transcript: &[u8], accept_auth: bool) {
    let text = std::str::from_utf8(transcript).expect("replies are UTF-8");
    assert!(
        text.is_empty() || text.ends_with("\r\n"),
        "output ends mid-line"
    );
    for line in text.split_terminator("\r\n") {
        let bytes = line.as_bytes();
        assert!(line.len() + 2 <= 512, "reply line too long: {line:?}");
        assert!(
            !line.contains(['\r', '\n']),
            "bare CR/LF in reply: {line:?}"
        );
        assert!(
            bytes.len() >= 4
                && bytes[..3].iter().all(u8::is_ascii_digit)
                && (bytes[3] == b' ' || bytes[3] == b'-'),
            "malformed reply line: {line:?}"
        );
        if !accept_auth {
            assert!(!line.starts_with("235"), "AUTH succeeded: {line:?}");
            assert!(
                !line.starts_with("250 2.0.0 Ok: queued"),
                "queued without AUTH: {line:?}"
            );
        }
    }
}

fn run(data: &[u8]) {
    let [flags, limits, rest @ ..] = data else {
        return;
    };
    let accept_auth = flags & 0x80 != 0;
    let config = config(*flags, *limits);
    let mut driver = Driver {
        max_size: config.max_message_size,
        session: Session::new(config),
        accept_auth,
        transcript: Vec::new(),
        closed: false,
        submitted: 0,
    };
    driver.collect();
    let mut rest = rest;
    while let [len, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        driver.session.feed(&tail[..n]);
        driver.run();
        rest = &tail[n..];
    }
    driver.run();
    check_replies(&driver.transcript, accept_auth);
    if !accept_auth {
        assert_eq!(driver.submitted, 0);
        assert!(!driver.session.is_authenticated());
    }
}
