//! A scripted driver for [`Session`]: bytes in, replies out, with the
//! events answered by fixed rules instead of a store and a database.
//!
//! - AUTH succeeds for `sender@example.com` / `secret` (when `accept_auth`),
//!   everything else gets `535 5.7.8`.
//! - MAIL FROM succeeds for addresses at `example.com`, else `553 5.7.1`.
//! - RCPT always succeeds.
//! - Submit records the envelope and data and answers with a new
//!   [`MessageId`] (or `submit_refusal`, when set).
//! - StartTls "runs the handshake" at once and calls `tls_started`.

#![allow(dead_code)]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use posthorn_smtp::{Credentials, Event, Session, SessionConfig};
use posthorn_types::{Envelope, MessageId, Reply};

pub const USER: &str = "sender@example.com";
pub const PASS: &str = "secret";

pub fn b64(text: &str) -> String {
    STANDARD.encode(text)
}

/// `AUTH PLAIN` initial response for the harness's good credentials.
pub fn plain_ok() -> String {
    b64(&format!("\0{USER}\0{PASS}"))
}

/// The defaults, with a recognisable host name.
pub fn config() -> SessionConfig {
    SessionConfig {
        hostname: "mx.test".into(),
        ..SessionConfig::default()
    }
}

/// The defaults on an implicit-TLS connection.
pub fn tls_config() -> SessionConfig {
    SessionConfig {
        tls_active: true,
        ..config()
    }
}

/// One reply as the client reads it: the code and the text of each line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpReply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl SmtpReply {
    /// The enhanced status code, when the reply carries one.
    pub fn status(&self) -> Option<&str> {
        let last = self.lines.last()?;
        let first = last.split(' ').next()?;
        let parts: Vec<&str> = first.split('.').collect();
        let is_status = parts.len() == 3
            && matches!(parts[0], "2" | "4" | "5")
            && parts[1..]
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
        is_status.then_some(first)
    }

    /// `"<code> <status>"`, or `"<code>"` for a reply without a status.
    pub fn head(&self) -> String {
        match self.status() {
            Some(s) => format!("{} {}", self.code, s),
            None => self.code.to_string(),
        }
    }

    /// The text of the last line.
    pub fn text(&self) -> &str {
        self.lines.last().map(String::as_str).unwrap_or("")
    }
}

/// Split raw output into replies. Panics on anything that is not a
/// well-formed reply line: the session must never write one.
pub fn parse_replies(bytes: &[u8]) -> Vec<SmtpReply> {
    let text = std::str::from_utf8(bytes).expect("replies are UTF-8");
    assert!(
        text.is_empty() || text.ends_with("\r\n"),
        "output ends mid-line: {text:?}"
    );
    let mut replies = Vec::new();
    let mut current: Option<SmtpReply> = None;
    for line in text.split_terminator("\r\n") {
        assert!(!line.contains(['\r', '\n']), "bare CR/LF in reply {line:?}");
        assert!(line.len() >= 4, "short reply line {line:?}");
        assert!(line.len() <= 510, "reply line over 512 bytes: {line:?}");
        let code: u16 = line[..3].parse().expect("reply code");
        assert!((200..600).contains(&code), "bad code in {line:?}");
        let sep = line.as_bytes()[3];
        let rest = line[4..].to_string();
        let reply = current.get_or_insert_with(|| SmtpReply {
            code,
            lines: Vec::new(),
        });
        assert_eq!(reply.code, code, "code changes inside a reply: {line:?}");
        reply.lines.push(rest);
        match sep {
            b' ' => replies.push(current.take().expect("current reply")),
            b'-' => {}
            _ => panic!("bad separator in {line:?}"),
        }
    }
    assert!(current.is_none(), "unfinished multi-line reply");
    replies
}

pub fn heads(replies: &[SmtpReply]) -> Vec<String> {
    replies.iter().map(SmtpReply::head).collect()
}

pub struct Harness {
    pub session: Session,
    /// AUTH with the good credentials succeeds.
    pub accept_auth: bool,
    /// Answer Submit with this instead of an id.
    pub submit_refusal: Option<Reply>,
    /// Output not yet returned by `send`/`take`.
    pending: Vec<u8>,
    /// Everything the session wrote.
    pub transcript: Vec<u8>,
    pub auth_attempts: Vec<Credentials>,
    pub mail_requests: Vec<String>,
    pub rcpt_requests: Vec<String>,
    pub submitted: Vec<(Envelope, Vec<u8>)>,
    pub queued_ids: Vec<MessageId>,
    pub tls_starts: usize,
    pub closed: bool,
}

impl Harness {
    /// A session; the greeting is left unread (see `greeting`).
    pub fn new(config: SessionConfig) -> Self {
        let mut h = Self {
            session: Session::new(config),
            accept_auth: true,
            submit_refusal: None,
            pending: Vec::new(),
            transcript: Vec::new(),
            auth_attempts: Vec::new(),
            mail_requests: Vec::new(),
            rcpt_requests: Vec::new(),
            submitted: Vec::new(),
            queued_ids: Vec::new(),
            tls_starts: 0,
            closed: false,
        };
        h.collect();
        h
    }

    /// A session with the greeting read.
    pub fn started(config: SessionConfig) -> Self {
        let mut h = Self::new(config);
        let greeting = h.take();
        assert_eq!(heads(&greeting), ["220"]);
        h
    }

    /// On TLS, after EHLO and a successful AUTH PLAIN.
    pub fn logged_in(config: SessionConfig) -> Self {
        let mut h = Self::started(SessionConfig {
            tls_active: true,
            ..config
        });
        h.expect("EHLO client.example", "250");
        h.expect(&format!("AUTH PLAIN {}", plain_ok()), "235 2.7.0");
        h
    }

    fn collect(&mut self) {
        let out = self.session.output();
        self.pending.extend_from_slice(out);
        self.transcript.extend_from_slice(out);
        self.session.clear_output();
    }

    /// Feed bytes without stepping.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.session.feed(bytes);
    }

    /// Step until the session needs input or closes, answering events.
    pub fn run(&mut self) {
        if self.closed {
            return;
        }
        loop {
            match self.session.step() {
                Event::NeedInput => break,
                Event::Close => {
                    self.closed = true;
                    break;
                }
                Event::StartTls => {
                    // The 220 is written before the handshake.
                    self.collect();
                    self.tls_starts += 1;
                    self.session.tls_started();
                }
                Event::Authenticate(creds) => {
                    let ok = self.accept_auth && creds.username == USER && creds.password == PASS;
                    self.auth_attempts.push(creds);
                    self.session.auth_result(if ok {
                        Ok(())
                    } else {
                        Err(Reply::new(
                            535,
                            "5.7.8",
                            "Error: authentication failed: bad user name or password",
                        ))
                    });
                }
                Event::Mail(from) => {
                    let ok = from.to_ascii_lowercase().ends_with("@example.com");
                    self.mail_requests.push(from);
                    self.session.mail_result(if ok {
                        Ok(())
                    } else {
                        Err(Reply::new(
                            553,
                            "5.7.1",
                            "Error: sender address not owned by the user",
                        ))
                    });
                }
                Event::Rcpt(to) => {
                    self.rcpt_requests.push(to);
                    self.session.rcpt_result(Ok(()));
                }
                Event::Submit { envelope, data } => {
                    self.submitted.push((envelope, data));
                    match self.submit_refusal.clone() {
                        Some(r) => self.session.submit_result(Err(r)),
                        None => {
                            let id = MessageId::generate();
                            self.queued_ids.push(id);
                            self.session.submit_result(Ok(id));
                        }
                    }
                }
            }
        }
        self.collect();
    }

    /// Feed, run, and return the replies this produced.
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) -> Vec<SmtpReply> {
        self.feed(bytes.as_ref());
        self.run();
        self.take()
    }

    /// Replies written and not yet taken.
    pub fn take(&mut self) -> Vec<SmtpReply> {
        let out = std::mem::take(&mut self.pending);
        parse_replies(&out)
    }

    /// Send one command line (CRLF added); expect exactly one reply.
    pub fn cmd(&mut self, line: &str) -> SmtpReply {
        let mut replies = self.send(format!("{line}\r\n"));
        assert_eq!(replies.len(), 1, "{line:?} got {replies:?}");
        replies.pop().expect("one reply")
    }

    /// Send one command line and check the head of its one reply.
    pub fn expect(&mut self, line: &str, head: &str) -> SmtpReply {
        let reply = self.cmd(line);
        assert_eq!(reply.head(), head, "{line:?} got {reply:?}");
        reply
    }

    /// MAIL, RCPT, DATA, content, end: expects the message to be queued and
    /// returns its stored copy.
    pub fn send_message(&mut self, from: &str, to: &[&str], content: &[u8]) -> Vec<u8> {
        let before = self.submitted.len();
        self.expect(&format!("MAIL FROM:<{from}>"), "250 2.1.0");
        for rcpt in to {
            self.expect(&format!("RCPT TO:<{rcpt}>"), "250 2.1.5");
        }
        self.expect("DATA", "354");
        let mut body = content.to_vec();
        body.extend_from_slice(b".\r\n");
        let replies = self.send(body);
        assert_eq!(heads(&replies), ["250 2.0.0"], "{replies:?}");
        assert!(replies[0].text().starts_with("2.0.0 Ok: queued as "));
        assert_eq!(self.submitted.len(), before + 1);
        self.submitted.last().expect("submitted").1.clone()
    }
}

/// The transcript with message and request ids replaced, so runs compare.
pub fn normalize(transcript: &[u8]) -> String {
    let text = String::from_utf8_lossy(transcript).into_owned();
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    loop {
        let queued = rest.find("queued as ").map(|i| (i, "queued as ", 26));
        let request = rest
            .find("\"RequestId\":\"")
            .map(|i| (i, "\"RequestId\":\"", 36));
        let next = match (queued, request) {
            (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
            (a, b) => a.or(b),
        };
        let Some((i, marker, len)) = next else {
            out.push_str(rest);
            return out;
        };
        let end = (i + marker.len() + len).min(rest.len());
        out.push_str(&rest[..i + marker.len()]);
        out.push_str("<ID>");
        rest = &rest[end..];
    }
}
