//! The outbound SMTP client: one [`Connection`] is an open, greeted session
//! to one host (EHLO, STARTTLS or implicit TLS, AUTH PLAIN done), reusable
//! for several messages with [`Connection::send`].
//!
//! Failures that concern the whole connection or transaction come back as a
//! [`ClientError`] (temporary or permanent); once MAIL FROM was accepted,
//! every recipient gets its own [`RcptOutcome`]: the RCPT reply when it was
//! refused, else the reply to the final dot. A connection that breaks or
//! times out mid-transaction leaves the recipients without an answer with a
//! temporary `451 4.4.2` outcome, and the connection is no longer usable
//! ([`Connection::is_usable`]).
//!
//! SMTPUTF8 (RFC 6531): a transaction whose envelope or header block is
//! not ASCII ([`needs_smtputf8`]) is declared with ` SMTPUTF8` on MAIL
//! when the server offers it; when it does not, see
//! [`Connection::send_parts`] for what becomes of it.

use base64::Engine;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// The longest reply line accepted (RFC 5321 says 512; be generous).
const MAX_LINE: usize = 8 * 1024;
/// The most lines one reply may have.
const MAX_REPLY_LINES: usize = 200;
/// How long `quit` waits for the `221`.
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);

/// How the client behaves.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// The EHLO (or HELO) name.
    pub helo_name: String,
    /// For the TCP connect.
    pub connect_timeout: Duration,
    /// For each command's reply (and the greeting and TLS handshake).
    pub command_timeout: Duration,
    /// For sending the content and waiting for the reply to the final dot.
    pub data_timeout: Duration,
    pub tls: TlsPolicy,
    /// AUTH PLAIN with these credentials; when set, it is required.
    pub auth: Option<(String, String)>,
    /// Verify the certificate for [`TlsPolicy::Required`] and
    /// [`TlsPolicy::Implicit`] (true by default); false keeps TLS mandatory
    /// but unverified, as Postfix's `encrypt` level.
    pub verify_tls: bool,
}

impl ClientSettings {
    /// Opportunistic TLS, no AUTH, RFC 5321-ish timeouts.
    pub fn new(helo_name: impl Into<String>) -> Self {
        Self {
            helo_name: helo_name.into(),
            connect_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(600),
            tls: TlsPolicy::Opportunistic,
            auth: None,
            verify_tls: true,
        }
    }
}

/// When and how to use TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsPolicy {
    /// STARTTLS when offered, the certificate not verified (as MTAs do).
    /// A `STARTTLS` refused by the server continues in plaintext.
    Opportunistic,
    /// STARTTLS must be offered and the certificate must verify against the
    /// webpki roots or the extra roots given; else a temporary failure.
    Required,
    /// TLS from the first byte (a smart host on 465); the certificate is
    /// verified as for `Required`.
    Implicit,
    /// Plaintext only.
    None,
}

/// What became of one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RcptOutcome {
    pub rcpt: String,
    /// 2xx delivered, 4xx deferred, 5xx bounced.
    pub code: u16,
    /// The enhanced status code (`2.1.5`) when the server gave one.
    pub enhanced: Option<String>,
    pub text: String,
}

impl RcptOutcome {
    fn from_reply(rcpt: &str, reply: &Reply) -> Self {
        Self {
            rcpt: rcpt.to_string(),
            code: reply.code,
            enhanced: reply.enhanced.clone(),
            text: reply.text(),
        }
    }

    /// The outcome of a recipient that cannot go to a server without
    /// SMTPUTF8: its own address (or the sender's) is not ASCII. RFC 6531
    /// section 3.2 gives 553 and X.6.7, "non-ASCII addresses not permitted
    /// for that sender/recipient" (RFC 5248); permanent, so it bounces.
    fn no_smtputf8(rcpt: &str, sender: bool) -> Self {
        let whose = if sender { "sender" } else { "recipient" };
        Self {
            rcpt: rcpt.to_string(),
            code: 553,
            enhanced: Some("5.6.7".to_string()),
            text: format!(
                "the receiving server does not support SMTPUTF8 (RFC 6531), \
                 needed for the non-ASCII {whose} address"
            ),
        }
    }

    fn lost(rcpt: &str, reason: &str) -> Self {
        Self {
            rcpt: rcpt.to_string(),
            code: 451,
            enhanced: Some("4.4.2".to_string()),
            text: format!("connection lost: {reason}"),
        }
    }

    pub fn is_delivered(&self) -> bool {
        (200..300).contains(&self.code)
    }

    pub fn is_temporary(&self) -> bool {
        (400..500).contains(&self.code)
    }

    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }
}

/// A failure of the connection or of the transaction as a whole.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// Connect refused or timed out, 4xx to the greeting, EHLO or MAIL, TLS
    /// failure, connection lost: try again later.
    #[error("temporary failure: {0}")]
    Temporary(String),
    /// 5xx to the greeting or MAIL FROM, message over the server's SIZE,
    /// AUTH credentials refused.
    #[error("permanent failure: {0}")]
    Permanent(String),
}

impl ClientError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, ClientError::Permanent(_))
    }

    pub fn message(&self) -> &str {
        match self {
            ClientError::Temporary(m) | ClientError::Permanent(m) => m,
        }
    }
}

/// A parsed (possibly multi-line) SMTP reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// The enhanced status code at the start of the first line, if any.
    pub enhanced: Option<String>,
    /// Each line's text after the code and separator.
    pub lines: Vec<String>,
}

impl Reply {
    /// The lines' text without the enhanced code, joined with spaces.
    pub fn text(&self) -> String {
        let parts: Vec<&str> = self
            .lines
            .iter()
            .map(|l| match &self.enhanced {
                Some(e) if l.split_whitespace().next() == Some(e.as_str()) => {
                    l.trim_start()[e.len()..].trim_start()
                }
                _ => l.as_str(),
            })
            .collect();
        parts.join(" ")
    }

    fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(e) = &self.enhanced {
            write!(f, " {e}")?;
        }
        let text = self.text();
        if !text.is_empty() {
            write!(f, " {text}")?;
        }
        Ok(())
    }
}

/// One reply line: the code, whether it is the last line, and the text.
pub fn parse_reply_line(line: &str) -> Option<(u16, bool, &str)> {
    let b = line.as_bytes();
    if b.len() < 3 || !b[..3].iter().all(u8::is_ascii_digit) || !(b'1'..=b'5').contains(&b[0]) {
        return None;
    }
    let code: u16 = line[..3].parse().ok()?;
    match b.get(3) {
        None => Some((code, true, "")),
        Some(b' ') => Some((code, true, &line[4..])),
        Some(b'-') => Some((code, false, &line[4..])),
        _ => None,
    }
}

/// The enhanced status code (RFC 3463) that starts `text`, when its class
/// matches the reply code's.
pub fn enhanced_code(code: u16, text: &str) -> Option<String> {
    let token = text.split_whitespace().next()?;
    let mut parts = token.split('.');
    let (class, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let num = |p: &str| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    let class_ok =
        matches!(class, "2" | "4" | "5") && u16::from(class.as_bytes()[0] - b'0') == code / 100;
    (class_ok && num(subject) && num(detail)).then(|| token.to_string())
}

/// The message as sent after `354`: lines starting with `.` get another `.`,
/// a bare LF becomes CRLF, a CRLF is added when missing at the end, then the
/// terminating `.\r\n`.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    dot_stuff_parts(&[message])
}

/// [`dot_stuff`] of the concatenation of `parts` (a line may run across
/// two of them).
pub fn dot_stuff_parts(parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(len + len / 64 + 5);
    // At the start of a line: the last part ended in LF, or none came yet.
    let mut line_start = true;
    for part in parts {
        // The bytes of `part` up to `copied` are in `out`; between the
        // places that change, bytes are copied in bulk.
        let mut copied = 0;
        if line_start && part.first() == Some(&b'.') {
            out.push(b'.');
        }
        for lf in memchr::memchr_iter(b'\n', part) {
            // A CR just before the LF, in this part or ending the last one.
            let after_cr = match lf {
                0 => out.last() == Some(&b'\r'),
                _ => part[lf - 1] == b'\r',
            };
            if !after_cr {
                out.extend_from_slice(&part[copied..lf]);
                out.extend_from_slice(b"\r\n");
                copied = lf + 1;
            }
            if part.get(lf + 1) == Some(&b'.') {
                out.extend_from_slice(&part[copied..=lf]);
                out.push(b'.');
                copied = lf + 1;
            }
        }
        out.extend_from_slice(&part[copied..]);
        if let Some(&last) = part.last() {
            line_start = last == b'\n';
        }
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Whether a transaction needs the SMTPUTF8 extension (RFC 6531): the
/// sender or a recipient address is not ASCII, or the message's header
/// block (up to the first empty line, across `parts`) has a byte that is
/// not ASCII: UTF-8 in header fields (RFC 6532). 8-bit bytes in the body
/// alone need only 8BITMIME (RFC 6152).
pub fn needs_smtputf8(mail_from: &str, rcpts: &[String], parts: &[&[u8]]) -> bool {
    !mail_from.is_ascii() || rcpts.iter().any(|r| !r.is_ascii()) || !header_is_ascii(parts)
}

/// Whether the header block of the message made of `parts` (everything
/// before the first empty line; the whole message when there is none) is
/// ASCII. A line may run across two parts.
pub fn header_is_ascii(parts: &[&[u8]]) -> bool {
    // Whether the current line so far is empty (a CR does not count).
    let mut blank = true;
    for part in parts {
        for &b in *part {
            match b {
                b'\n' if blank => return true,
                b'\n' => blank = true,
                b'\r' => {}
                0x80..=0xff => return false,
                _ => blank = false,
            }
        }
    }
    true
}

/// The address as it may be written to a server without SMTPUTF8: itself
/// when ASCII; with its domain in A-labels (punycode) when only the domain
/// is not ASCII, which RFC 6531 section 3.2 allows without the extension;
/// none when the local part is not ASCII.
pub fn ascii_address(addr: &str) -> Option<String> {
    if addr.is_ascii() {
        return Some(addr.to_string());
    }
    let (local, domain) = addr.rsplit_once('@')?;
    if !local.is_ascii() {
        return None;
    }
    let domain = idna::domain_to_ascii(domain).ok()?;
    (!domain.is_empty()).then(|| format!("{local}@{domain}"))
}

/// What the server's EHLO reply advertised.
#[derive(Clone, Debug, Default)]
struct Extensions {
    pipelining: bool,
    starttls: bool,
    /// `Some(0)`: SIZE without a limit.
    size: Option<u64>,
    eightbitmime: bool,
    smtputf8: bool,
    auth: Vec<String>,
}

impl Extensions {
    fn parse(reply: &Reply) -> Self {
        let mut ext = Extensions::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            let keyword = keyword.to_ascii_uppercase();
            match keyword.as_str() {
                "PIPELINING" => ext.pipelining = true,
                "STARTTLS" => ext.starttls = true,
                "8BITMIME" => ext.eightbitmime = true,
                "SMTPUTF8" => ext.smtputf8 = true,
                "SIZE" => ext.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "AUTH" => ext.auth.extend(words.map(|w| w.to_ascii_uppercase())),
                k => {
                    if let Some(mechs) = k.strip_prefix("AUTH=") {
                        ext.auth.push(mechs.to_string());
                        ext.auth.extend(words.map(|w| w.to_ascii_uppercase()));
                    }
                }
            }
        }
        ext
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Closed,
}

impl Stream {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
            Stream::Closed => Ok(0),
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Stream::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Stream::Closed => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    async fn shutdown(&mut self) {
        let _ = match self {
            Stream::Plain(s) => s.shutdown().await,
            Stream::Tls(s) => s.shutdown().await,
            Stream::Closed => Ok(()),
        };
    }
}

/// The TLS config when TLS is mandatory: verified unless the settings say not.
fn mandatory_config(
    settings: &ClientSettings,
    extra_roots: &[CertificateDer<'static>],
) -> Result<Arc<ClientConfig>, ClientError> {
    if settings.verify_tls {
        verified_config(extra_roots)
    } else {
        unverified_config()
    }
}

/// An open, greeted session to one host, reusable for several messages.
pub struct Connection {
    stream: Stream,
    rbuf: Vec<u8>,
    command_timeout: Duration,
    data_timeout: Duration,
    ext: Extensions,
    tls: bool,
    /// The connection broke, timed out or lost sync: no more commands.
    broken: bool,
    /// A transaction is (or may be) open on the server: RSET before MAIL.
    dirty: bool,
    /// `name[addr]`, for messages.
    peer: String,
}

impl Connection {
    /// Connect, read the greeting, EHLO, STARTTLS (per `settings.tls`, then
    /// EHLO again), AUTH PLAIN (when `settings.auth` is set).
    pub async fn open(
        addr: SocketAddr,
        server_name: &str,
        settings: &ClientSettings,
        extra_roots: &[CertificateDer<'static>],
    ) -> Result<Connection, ClientError> {
        let name = server_name.trim_end_matches('.');
        let peer = format!("{name}[{addr}]");
        let tcp =
            match tokio::time::timeout(settings.connect_timeout, TcpStream::connect(addr)).await {
                Err(_) => {
                    return Err(ClientError::Temporary(format!(
                        "{peer}: connect timed out after {:?}",
                        settings.connect_timeout
                    )))
                }
                Ok(Err(e)) => return Err(ClientError::Temporary(format!("{peer}: connect: {e}"))),
                Ok(Ok(s)) => s,
            };
        let _ = tcp.set_nodelay(true);
        let mut conn = Connection {
            stream: Stream::Plain(tcp),
            rbuf: Vec::new(),
            command_timeout: settings.command_timeout,
            data_timeout: settings.data_timeout,
            ext: Extensions::default(),
            tls: false,
            broken: false,
            dirty: false,
            peer,
        };
        let tls_name = tls_server_name(name, addr);
        if settings.tls == TlsPolicy::Implicit {
            conn.handshake(mandatory_config(settings, extra_roots)?, tls_name.clone())
                .await?;
        }
        let greeting = conn.read("greeting", conn.command_timeout).await?;
        if !greeting.is_positive() {
            return Err(conn.rejected("greeting", &greeting));
        }
        conn.ehlo(&settings.helo_name).await?;
        match settings.tls {
            TlsPolicy::Opportunistic if conn.ext.starttls => {
                let reply = conn.command("STARTTLS").await?;
                if reply.code == 220 {
                    conn.handshake(unverified_config()?, tls_name).await?;
                    conn.ehlo(&settings.helo_name).await?;
                } else {
                    tracing::debug!(peer = %conn.peer, %reply, "STARTTLS refused, continuing in plaintext");
                }
            }
            TlsPolicy::Required => {
                if !conn.ext.starttls {
                    return Err(ClientError::Temporary(format!(
                        "{}: TLS required but STARTTLS not offered",
                        conn.peer
                    )));
                }
                let reply = conn.command("STARTTLS").await?;
                if reply.code != 220 {
                    return Err(ClientError::Temporary(format!(
                        "{}: TLS required but STARTTLS refused: {reply}",
                        conn.peer
                    )));
                }
                conn.handshake(mandatory_config(settings, extra_roots)?, tls_name)
                    .await?;
                conn.ehlo(&settings.helo_name).await?;
            }
            _ => {}
        }
        if let Some((user, pass)) = &settings.auth {
            conn.auth_plain(user, pass).await?;
        }
        Ok(conn)
    }

    /// One transaction; see the module documentation. Recipients are given
    /// as bare addresses (no angle brackets); `mail_from` may be empty.
    pub async fn send(
        &mut self,
        mail_from: &str,
        rcpts: &[String],
        message: &[u8],
    ) -> Result<Vec<RcptOutcome>, ClientError> {
        self.send_parts(mail_from, rcpts, &[message]).await
    }

    /// [`Connection::send`] of the message made of `parts`, in order (a
    /// signature field and the content it signs, say), without joining them
    /// first.
    ///
    /// A transaction that [`needs_smtputf8`] is declared with ` SMTPUTF8`
    /// when the server offers it. When it does not (RFC 6531 section 3.2:
    /// no non-ASCII address may then be sent), each address is written in
    /// its ASCII form where one exists ([`ascii_address`]: a non-ASCII
    /// domain in A-labels), and every recipient that has none, or all of
    /// them when the sender has none, gets a permanent `553 5.6.7`
    /// ([`RcptOutcome`], so they bounce). What is left, an ASCII envelope
    /// with UTF-8 only in the header fields, is sent without SMTPUTF8 (and
    /// with `BODY=8BITMIME` when offered): see the comment in the code.
    pub async fn send_parts(
        &mut self,
        mail_from: &str,
        rcpts: &[String],
        parts: &[&[u8]],
    ) -> Result<Vec<RcptOutcome>, ClientError> {
        let size: usize = parts.iter().map(|p| p.len()).sum();
        if self.broken {
            return Err(ClientError::Temporary(format!(
                "{}: connection is closed",
                self.peer
            )));
        }
        if !valid_path(mail_from) {
            return Err(ClientError::Permanent(format!(
                "invalid sender address {mail_from:?}"
            )));
        }
        if let Some(limit) = self.ext.size {
            if limit > 0 && size as u64 > limit {
                return Err(ClientError::Permanent(format!(
                    "{}: message of {size} bytes exceeds the server's SIZE limit of {limit}",
                    self.peer,
                )));
            }
        }
        let mut outcomes: Vec<Option<RcptOutcome>> = vec![None; rcpts.len()];
        let mut to_send = Vec::new();
        for (i, r) in rcpts.iter().enumerate() {
            if valid_path(r) && !r.is_empty() {
                to_send.push(i);
            } else {
                outcomes[i] = Some(RcptOutcome {
                    rcpt: r.clone(),
                    code: 553,
                    enhanced: Some("5.1.3".to_string()),
                    text: "invalid recipient address".to_string(),
                });
            }
        }
        // The paths as written: the addresses, or their ASCII forms for a
        // server without SMTPUTF8.
        let mut sender = Cow::Borrowed(mail_from);
        let mut paths: Vec<Cow<str>> = rcpts.iter().map(|r| Cow::Borrowed(r.as_str())).collect();
        let utf8 = needs_smtputf8(mail_from, rcpts, parts);
        if utf8 && !self.ext.smtputf8 {
            // RFC 6531 section 3.2: an SMTPUTF8 client facing a server
            // without the extension must not send it a non-ASCII address;
            // it rejects or bounces (553 X.6.7 for an address), finds
            // another route, or downgrades (RFC 6857). Posthorn bounces
            // what cannot be written in ASCII: a recipient whose local part
            // is not ASCII, and every recipient when the sender's is not.
            // A non-ASCII domain alone is no reason: section 3.2 lets it go
            // as A-labels.
            //
            // UTF-8 in header fields with an ASCII envelope is sent as it
            // is, without SMTPUTF8, as 8-bit content (BODY=8BITMIME when
            // offered), rather than bounced with 5.6.9 ("UTF-8 header
            // message cannot be transferred to one or more recipients").
            // Section 3.2 lets a message submission agent (RFC 6409) deal
            // with this its own way, where a relaying MTA must bounce, and
            // Posthorn is the submission server of every message it sends.
            // A bounce would refuse a message almost every receiver takes:
            // raw UTF-8 subjects and display names were relayed as 8-bit
            // long before RFC 6532, and servers that do not offer SMTPUTF8
            // (common) still accept them, as Postfix's smtputf8.h notes.
            // RFC 6857 downgrading (the header fields rewritten as RFC 2047
            // encoded words) would break the DKIM signature made over them
            // and is not done.
            match ascii_address(mail_from) {
                Some(a) => sender = Cow::Owned(a),
                None => {
                    for i in to_send.drain(..) {
                        outcomes[i] = Some(RcptOutcome::no_smtputf8(&rcpts[i], true));
                    }
                }
            }
            to_send.retain(|&i| match ascii_address(&rcpts[i]) {
                Some(a) => {
                    paths[i] = Cow::Owned(a);
                    true
                }
                None => {
                    outcomes[i] = Some(RcptOutcome::no_smtputf8(&rcpts[i], false));
                    false
                }
            });
        }
        if to_send.is_empty() {
            return Ok(finish(outcomes, rcpts, ""));
        }
        if self.dirty {
            self.reset().await?;
        }

        let mut mail = format!("MAIL FROM:<{sender}>");
        if self.ext.size.is_some() {
            mail.push_str(&format!(" SIZE={size}"));
        }
        if self.ext.eightbitmime && !parts.iter().all(|p| p.is_ascii()) {
            mail.push_str(" BODY=8BITMIME");
        }
        if utf8 && self.ext.smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        let pipelined = self.ext.pipelining;
        if pipelined {
            let mut batch = format!("{mail}\r\n");
            for &i in &to_send {
                batch.push_str(&format!("RCPT TO:<{}>\r\n", paths[i]));
            }
            batch.push_str("DATA\r\n");
            self.write(batch.as_bytes(), "MAIL", self.command_timeout)
                .await?;
        }
        self.dirty = true;

        // MAIL FROM
        let mail_reply = self.step(pipelined, &mail, "MAIL FROM").await?;
        if !mail_reply.is_positive() {
            if pipelined {
                // Read the RCPT and DATA replies to stay in step.
                self.drain(to_send.len()).await;
            }
            self.dirty = false;
            return Err(self.rejected("MAIL FROM", &mail_reply));
        }

        // RCPT TO
        let mut accepted = Vec::new();
        for &i in &to_send {
            let cmd = format!("RCPT TO:<{}>", paths[i]);
            match self.step(pipelined, &cmd, "RCPT TO").await {
                Ok(r) if r.is_positive() => accepted.push(i),
                Ok(r) => outcomes[i] = Some(RcptOutcome::from_reply(&rcpts[i], &r)),
                Err(e) => return Ok(finish(outcomes, rcpts, e.message())),
            }
        }
        if accepted.is_empty() && !pipelined {
            // The transaction stays open (MAIL accepted): RSET next time.
            return Ok(finish(outcomes, rcpts, ""));
        }

        // DATA
        let data_reply = match self.step(pipelined, "DATA", "DATA").await {
            Ok(r) => r,
            Err(e) => return Ok(finish(outcomes, rcpts, e.message())),
        };
        if data_reply.code != 354 {
            for &i in &accepted {
                outcomes[i] = Some(RcptOutcome::from_reply(&rcpts[i], &data_reply));
            }
            return Ok(finish(outcomes, rcpts, ""));
        }
        if accepted.is_empty() {
            // A server that said 354 without a recipient: end it empty.
            let _ = self.write(b".\r\n", "DATA", self.command_timeout).await;
            let _ = self.read("DATA", self.command_timeout).await;
            return Ok(finish(outcomes, rcpts, ""));
        }
        let content = dot_stuff_parts(parts);
        let final_reply = match self
            .write(&content, "message content", self.data_timeout)
            .await
        {
            Ok(()) => self.read("end of data", self.data_timeout).await,
            Err(e) => Err(e),
        };
        match final_reply {
            Ok(r) => {
                self.dirty = false;
                for &i in &accepted {
                    outcomes[i] = Some(RcptOutcome::from_reply(&rcpts[i], &r));
                }
                Ok(finish(outcomes, rcpts, ""))
            }
            Err(e) => Ok(finish(outcomes, rcpts, e.message())),
        }
    }

    /// RSET: end a transaction that failed mid-way.
    pub async fn reset(&mut self) -> Result<(), ClientError> {
        if self.broken {
            return Err(ClientError::Temporary(format!(
                "{}: connection is closed",
                self.peer
            )));
        }
        let reply = self.command("RSET").await?;
        if reply.is_positive() {
            self.dirty = false;
            Ok(())
        } else {
            self.broken = true;
            Err(ClientError::Temporary(format!(
                "{}: RSET refused: {reply}",
                self.peer
            )))
        }
    }

    /// QUIT and close; errors are ignored.
    pub async fn quit(mut self) {
        if !self.broken {
            let timeout = self.command_timeout.min(QUIT_TIMEOUT);
            if self.write(b"QUIT\r\n", "QUIT", timeout).await.is_ok() {
                let _ = self.read("QUIT", timeout).await;
            }
        }
        self.stream.shutdown().await;
    }

    /// Whether the session runs inside TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Whether another message may be sent (the connection did not break,
    /// time out or lose sync).
    pub fn is_usable(&self) -> bool {
        !self.broken
    }

    /// EHLO, falling back to HELO when EHLO gets a 5xx.
    async fn ehlo(&mut self, helo_name: &str) -> Result<(), ClientError> {
        let reply = self.command(&format!("EHLO {helo_name}")).await?;
        if reply.is_positive() {
            self.ext = Extensions::parse(&reply);
            return Ok(());
        }
        if reply.code < 500 {
            return Err(self.rejected("EHLO", &reply));
        }
        let reply = self.command(&format!("HELO {helo_name}")).await?;
        if !reply.is_positive() {
            return Err(self.rejected("HELO", &reply));
        }
        self.ext = Extensions::default();
        Ok(())
    }

    async fn auth_plain(&mut self, user: &str, pass: &str) -> Result<(), ClientError> {
        if !self.ext.auth.iter().any(|m| m == "PLAIN") {
            return Err(ClientError::Temporary(format!(
                "{}: AUTH configured but the server does not offer AUTH PLAIN",
                self.peer
            )));
        }
        let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"));
        self.write(
            format!("AUTH PLAIN {token}\r\n").as_bytes(),
            "AUTH",
            self.command_timeout,
        )
        .await?;
        let reply = self.read("AUTH", self.command_timeout).await?;
        match reply.code {
            200..=299 => Ok(()),
            400..=499 => Err(self.rejected("AUTH", &reply)),
            500..=599 => Err(ClientError::Permanent(format!(
                "{}: AUTH rejected: {reply}",
                self.peer
            ))),
            _ => {
                // A challenge we did not ask for: the session is out of step.
                self.broken = true;
                Err(ClientError::Temporary(format!(
                    "{}: unexpected AUTH reply: {reply}",
                    self.peer
                )))
            }
        }
    }

    async fn handshake(
        &mut self,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<(), ClientError> {
        if !self.rbuf.is_empty() {
            // Bytes after the 220 were sent in plaintext: not to be trusted.
            self.broken = true;
            return Err(ClientError::Temporary(format!(
                "{}: unexpected data before the TLS handshake",
                self.peer
            )));
        }
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Closed) else {
            self.broken = true;
            return Err(ClientError::Temporary(format!(
                "{}: TLS already active",
                self.peer
            )));
        };
        let connector = TlsConnector::from(config);
        match tokio::time::timeout(self.command_timeout, connector.connect(name, tcp)).await {
            Ok(Ok(tls)) => {
                self.stream = Stream::Tls(Box::new(tls));
                self.tls = true;
                Ok(())
            }
            Ok(Err(e)) => {
                self.broken = true;
                Err(ClientError::Temporary(format!(
                    "{}: TLS handshake: {e}",
                    self.peer
                )))
            }
            Err(_) => {
                self.broken = true;
                Err(ClientError::Temporary(format!(
                    "{}: TLS handshake timed out",
                    self.peer
                )))
            }
        }
    }

    /// Write one command line and read its reply.
    async fn command(&mut self, line: &str) -> Result<Reply, ClientError> {
        let what = line.split_whitespace().next().unwrap_or(line).to_string();
        self.write(
            format!("{line}\r\n").as_bytes(),
            &what,
            self.command_timeout,
        )
        .await?;
        self.read(&what, self.command_timeout).await
    }

    /// Pipelined: read the next reply (the command was written in the
    /// batch); else write the command and read its reply.
    async fn step(
        &mut self,
        pipelined: bool,
        line: &str,
        what: &str,
    ) -> Result<Reply, ClientError> {
        if !pipelined {
            self.write(format!("{line}\r\n").as_bytes(), what, self.command_timeout)
                .await?;
        }
        self.read(what, self.command_timeout).await
    }

    /// After a refused pipelined MAIL: read the RCPT replies and the DATA
    /// reply (ending a `354` with an empty message).
    async fn drain(&mut self, rcpts: usize) {
        for _ in 0..rcpts {
            if self.read("RCPT TO", self.command_timeout).await.is_err() {
                return;
            }
        }
        if let Ok(r) = self.read("DATA", self.command_timeout).await {
            if r.code == 354
                && self
                    .write(b".\r\n", "DATA", self.command_timeout)
                    .await
                    .is_ok()
            {
                let _ = self.read("DATA", self.command_timeout).await;
            }
        }
    }

    async fn write(
        &mut self,
        bytes: &[u8],
        what: &str,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let result = tokio::time::timeout(timeout, self.stream.write_all(bytes)).await;
        let reason = match result {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => format!("writing {what}: {e}"),
            Err(_) => format!("writing {what}: timed out after {timeout:?}"),
        };
        self.broken = true;
        Err(ClientError::Temporary(format!("{}: {reason}", self.peer)))
    }

    async fn read(&mut self, what: &str, timeout: Duration) -> Result<Reply, ClientError> {
        let reason = match tokio::time::timeout(timeout, self.read_reply()).await {
            Ok(Ok(r)) => return Ok(r),
            Ok(Err(e)) => format!("reading the {what} reply: {e}"),
            Err(_) => format!("waiting for the {what} reply: timed out after {timeout:?}"),
        };
        self.broken = true;
        Err(ClientError::Temporary(format!("{}: {reason}", self.peer)))
    }

    async fn read_reply(&mut self) -> Result<Reply, String> {
        let mut reply: Option<Reply> = None;
        loop {
            let line = self.read_line().await?;
            let Some((code, last, text)) = parse_reply_line(&line) else {
                return Err(format!("malformed reply line {line:?}"));
            };
            let r = reply.get_or_insert_with(|| Reply {
                code,
                enhanced: enhanced_code(code, text),
                lines: Vec::new(),
            });
            if r.lines.len() >= MAX_REPLY_LINES {
                return Err("reply has too many lines".to_string());
            }
            r.lines.push(text.to_string());
            if last {
                return Ok(reply.expect("set above"));
            }
        }
    }

    async fn read_line(&mut self) -> Result<String, String> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(pos) = self.rbuf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.rbuf.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&line);
                return Ok(line.trim_end_matches(['\r', '\n']).to_string());
            }
            if self.rbuf.len() > MAX_LINE {
                return Err("reply line too long".to_string());
            }
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed by the server".to_string());
            }
            self.rbuf.extend_from_slice(&chunk[..n]);
        }
    }

    fn rejected(&self, what: &str, reply: &Reply) -> ClientError {
        let msg = format!("{}: {what} rejected: {reply}", self.peer);
        if reply.code >= 500 {
            ClientError::Permanent(msg)
        } else {
            ClientError::Temporary(msg)
        }
    }
}

/// Fill the recipients without an answer with a temporary outcome.
fn finish(outcomes: Vec<Option<RcptOutcome>>, rcpts: &[String], reason: &str) -> Vec<RcptOutcome> {
    let reason = if reason.is_empty() {
        "no reply"
    } else {
        reason
    };
    outcomes
        .into_iter()
        .zip(rcpts)
        .map(|(o, r)| o.unwrap_or_else(|| RcptOutcome::lost(r, reason)))
        .collect()
}

/// No characters that would break the command line or the path.
fn valid_path(addr: &str) -> bool {
    !addr
        .bytes()
        .any(|b| b.is_ascii_control() || b == b'<' || b == b'>' || b == b' ')
}

fn tls_server_name(name: &str, addr: SocketAddr) -> ServerName<'static> {
    ServerName::try_from(name)
        .map(|n| n.to_owned())
        .unwrap_or_else(|_| ServerName::IpAddress(addr.ip().into()))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn config_builder(
) -> Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>, ClientError> {
    ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ClientError::Temporary(format!("TLS configuration: {e}")))
}

/// Verifying against the webpki roots plus `extra_roots`.
fn verified_config(
    extra_roots: &[CertificateDer<'static>],
) -> Result<Arc<ClientConfig>, ClientError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra_roots {
        if let Err(e) = roots.add(cert.clone()) {
            tracing::warn!("ignoring an unusable extra TLS root: {e}");
        }
    }
    Ok(Arc::new(
        config_builder()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// A TLS 1.2/1.3 client config (aws-lc-rs) that accepts any certificate but
/// still checks the handshake signatures: opportunistic STARTTLS here, and
/// the load generator, which measures real handshakes against test certs.
pub fn unverified_config() -> Result<Arc<ClientConfig>, ClientError> {
    Ok(Arc::new(
        config_builder()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider())))
            .with_no_client_auth(),
    ))
}

/// Accepts any certificate, still checking the handshake signatures.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines_and_enhanced_codes() {
        assert_eq!(
            parse_reply_line("250-sink.test"),
            Some((250, false, "sink.test"))
        );
        assert_eq!(
            parse_reply_line("250 2.1.5 Ok"),
            Some((250, true, "2.1.5 Ok"))
        );
        assert_eq!(parse_reply_line("354"), Some((354, true, "")));
        assert_eq!(parse_reply_line("25x ok"), None);
        assert_eq!(parse_reply_line("250/ok"), None);
        assert_eq!(
            enhanced_code(550, "5.1.1 user unknown").as_deref(),
            Some("5.1.1")
        );
        assert_eq!(enhanced_code(250, "5.1.1 mismatched class"), None);
        assert_eq!(enhanced_code(250, "sink.test greets"), None);
        assert_eq!(enhanced_code(451, "4.3.0"), Some("4.3.0".to_string()));
        let r = Reply {
            code: 550,
            enhanced: Some("5.1.1".into()),
            lines: vec!["5.1.1 user unknown".into(), "5.1.1 really".into()],
        };
        assert_eq!(r.text(), "user unknown really");
        assert_eq!(r.to_string(), "550 5.1.1 user unknown really");
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn smtputf8_is_needed_for_non_ascii_addresses_and_header_fields() {
        let ascii: &[&[u8]] = &[b"Subject: hi\r\n\r\nHello.\r\n"];
        let sender = "app@example.com";
        assert!(!needs_smtputf8(sender, &strings(&["a@example.net"]), ascii));
        assert!(!needs_smtputf8("", &strings(&["a@example.net"]), ascii));
        assert!(needs_smtputf8(
            "j\u{fc}rgen@example.com",
            &strings(&["a@example.net"]),
            ascii
        ));
        assert!(needs_smtputf8(
            sender,
            &strings(&["a@example.net", "j\u{fc}rgen@example.net"]),
            ascii
        ));
        assert!(needs_smtputf8(
            sender,
            &strings(&["a@b\u{fc}cher.example"]),
            ascii
        ));
        // 8-bit in the header block needs it, in the body alone it does not.
        let rcpts = strings(&["a@example.net"]);
        let header: &[&[u8]] = &["Subject: Gr\u{fc}\u{df}e\r\n\r\nHello.\r\n".as_bytes()];
        assert!(needs_smtputf8(sender, &rcpts, header));
        let body: &[&[u8]] = &["Subject: hi\r\n\r\nGr\u{fc}\u{df}e\r\n".as_bytes()];
        assert!(!needs_smtputf8(sender, &rcpts, body));
        // A folded line is still the header; LF-only line ends count too.
        let folded: &[&[u8]] = &["Subject: a\r\n b\u{e9}\r\n\r\nx".as_bytes()];
        assert!(needs_smtputf8(sender, &rcpts, folded));
        let lf: &[&[u8]] = &["Subject: a\n\nb\u{e9}\n".as_bytes()];
        assert!(!needs_smtputf8(sender, &rcpts, lf));
    }

    #[test]
    fn the_header_block_runs_across_parts() {
        // The DKIM signature part and the content it signs.
        let sig: &[u8] = b"DKIM-Signature: v=1; b=abc\r\n";
        let content = "From: a@example.com\r\nSubject: \u{e9}t\u{e9}\r\n\r\nx\r\n";
        assert!(!header_is_ascii(&[sig, content.as_bytes()]));
        let content = "From: a@example.com\r\n\r\n\u{e9}t\u{e9}\r\n";
        assert!(header_is_ascii(&[sig, content.as_bytes()]));
        // The empty line split between parts: CR LF | CR LF, CR | LF.
        for cut in 1..6 {
            let whole = "A: b\r\n\r\n\u{e9}\r\n".as_bytes();
            let (a, b) = whole.split_at(cut);
            assert!(header_is_ascii(&[a, b]), "cut at {cut}");
        }
        // No empty line: it is all header.
        assert!(!header_is_ascii(&["A: b\r\nC: \u{e9}".as_bytes()]));
        assert!(header_is_ascii(&[b"A: b\r\nC: d"]));
        // An empty header block.
        assert!(header_is_ascii(&["\r\n\u{e9}".as_bytes()]));
        assert!(header_is_ascii(&[]));
    }

    #[test]
    fn ascii_forms_of_addresses() {
        assert_eq!(
            ascii_address("a@example.net").as_deref(),
            Some("a@example.net")
        );
        assert_eq!(ascii_address("").as_deref(), Some(""));
        assert_eq!(
            ascii_address("info@b\u{fc}cher.example").as_deref(),
            Some("info@xn--bcher-kva.example")
        );
        assert_eq!(ascii_address("j\u{fc}rgen@example.net"), None);
        assert_eq!(ascii_address("j\u{fc}rgen@b\u{fc}cher.example"), None);
    }

    #[test]
    fn ehlo_keywords() {
        let reply = |lines: &[&str]| Reply {
            code: 250,
            enhanced: None,
            lines: strings(lines),
        };
        let ext = Extensions::parse(&reply(&[
            "mx.example.net",
            "SIZE 1000",
            "8BITMIME",
            "smtputf8",
            "PIPELINING",
        ]));
        assert!(ext.smtputf8 && ext.eightbitmime && ext.pipelining);
        assert_eq!(ext.size, Some(1000));
        let ext = Extensions::parse(&reply(&["mx.example.net", "8BITMIME"]));
        assert!(!ext.smtputf8);
        // The first line is the server's name, not a keyword.
        assert!(!Extensions::parse(&reply(&["SMTPUTF8"])).smtputf8);
    }

    mod against_the_sink {
        use super::super::*;
        use posthorn_testkit::sink::{Sink, SinkOptions};

        const SENDER: &str = "app@example.com";
        const ASCII: &str = "Subject: hi\r\n\r\nGr\u{fc}\u{df}e im Text.\r\n";
        const UTF8_HEADER: &str = "Subject: Gr\u{fc}\u{df}e\r\n\r\nHello.\r\n";

        fn sink(smtputf8: bool) -> Sink {
            Sink::start(SinkOptions {
                smtputf8,
                ..SinkOptions::default()
            })
        }

        async fn send(sink: &Sink, from: &str, rcpts: &[&str], message: &str) -> Vec<RcptOutcome> {
            let mut settings = ClientSettings::new("client.test");
            settings.tls = TlsPolicy::None;
            let addr = SocketAddr::from(([127, 0, 0, 1], sink.port()));
            let mut c = Connection::open(addr, "localhost", &settings, &[])
                .await
                .expect("open");
            let rcpts: Vec<String> = rcpts.iter().map(|r| r.to_string()).collect();
            let out = c
                .send(from, &rcpts, message.as_bytes())
                .await
                .expect("send");
            c.quit().await;
            out
        }

        /// The MAIL lines the sink got.
        fn mails(sink: &Sink) -> Vec<String> {
            let t = sink.transcript();
            t.into_iter().filter(|l| l.starts_with("MAIL")).collect()
        }

        #[tokio::test]
        async fn declared_when_needed_and_offered() {
            let sink = sink(true);
            let out = send(&sink, SENDER, &["j\u{fc}rgen@example.net"], ASCII).await;
            assert_eq!(out[0].code, 250, "{out:?}");
            let out = send(&sink, SENDER, &["ok@example.net"], UTF8_HEADER).await;
            assert_eq!(out[0].code, 250, "{out:?}");
            let out = send(&sink, SENDER, &["ok@example.net"], ASCII).await;
            assert_eq!(out[0].code, 250, "{out:?}");
            let got = sink.wait_for(3, Duration::from_secs(5));
            assert_eq!(got[0].rcpt_to, ["j\u{fc}rgen@example.net"]);
            assert!(
                got[0].mail_params.iter().any(|p| p == "SMTPUTF8"),
                "{got:?}"
            );
            assert!(
                got[1].mail_params.iter().any(|p| p == "SMTPUTF8"),
                "{got:?}"
            );
            // 8-bit in the body alone: 8BITMIME, no SMTPUTF8.
            assert!(
                got[2].mail_params.iter().all(|p| p != "SMTPUTF8"),
                "{got:?}"
            );
            assert!(got[2].mail_params.iter().any(|p| p == "BODY=8BITMIME"));
        }

        #[tokio::test]
        async fn without_smtputf8_non_ascii_addresses_bounce_and_the_rest_goes() {
            let sink = sink(false);
            let out = send(
                &sink,
                SENDER,
                &[
                    "j\u{fc}rgen@example.net",
                    "ok@example.net",
                    "info@b\u{fc}cher.example",
                ],
                UTF8_HEADER,
            )
            .await;
            assert_eq!(out[0].code, 553, "{out:?}");
            assert_eq!(out[0].enhanced.as_deref(), Some("5.6.7"));
            // Decided here, not the sink's own refusal of the address.
            assert!(
                out[0]
                    .text
                    .starts_with("the receiving server does not support SMTPUTF8"),
                "{out:?}"
            );
            assert!(out[0].is_permanent());
            assert_eq!(out[1].code, 250, "{out:?}");
            assert_eq!(out[2].code, 250, "{out:?}");
            assert_eq!(out[2].rcpt, "info@b\u{fc}cher.example");
            let got = sink.wait_for(1, Duration::from_secs(5));
            assert_eq!(
                got[0].rcpt_to,
                ["ok@example.net", "info@xn--bcher-kva.example"],
                "the domain in A-labels"
            );
            // UTF-8 header fields alone go as 8-bit content.
            assert_eq!(got[0].mail_params[1], "BODY=8BITMIME", "{got:?}");
            assert!(got[0].mail_params.iter().all(|p| p != "SMTPUTF8"));
            assert_eq!(got[0].data, UTF8_HEADER.as_bytes());
            assert!(
                sink.transcript().iter().all(|l| l.is_ascii()),
                "nothing non-ASCII was sent: {:?}",
                sink.transcript()
            );
        }

        #[tokio::test]
        async fn without_smtputf8_a_non_ascii_sender_bounces_everyone() {
            let sink = sink(false);
            let out = send(
                &sink,
                "j\u{fc}rgen@example.com",
                &["ok@example.net", "b@example.net"],
                ASCII,
            )
            .await;
            for o in &out {
                assert_eq!(
                    (o.code, o.enhanced.as_deref()),
                    (553, Some("5.6.7")),
                    "{out:?}"
                );
                assert!(o.text.contains("sender"), "{o:?}");
            }
            assert!(mails(&sink).is_empty(), "{:?}", sink.transcript());
            // A sender with only its domain non-ASCII goes in A-labels.
            let out = send(&sink, "app@b\u{fc}cher.example", &["ok@example.net"], ASCII).await;
            assert_eq!(out[0].code, 250, "{out:?}");
            assert_eq!(
                sink.wait_for(1, Duration::from_secs(5))[0].mail_from,
                "app@xn--bcher-kva.example"
            );
        }
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(
            dot_stuff(b"a\r\n.b\r\n..c\r\n"),
            b"a\r\n..b\r\n...c\r\n.\r\n"
        );
        assert_eq!(dot_stuff(b".\r\nx"), b"..\r\nx\r\n.\r\n");
        assert_eq!(dot_stuff(b"a\nb\n"), b"a\r\nb\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b".\r\n");
        assert_eq!(dot_stuff(b"\n\n.\r"), b"\r\n\r\n..\r\r\n.\r\n");
        assert_eq!(dot_stuff(b"a\r\n\r\n.x"), b"a\r\n\r\n..x\r\n.\r\n");
    }

    /// Dot-stuffing line by line, the plain way: what the bulk copy in
    /// [`dot_stuff_parts`] must equal.
    fn dot_stuff_line_by_line(message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut after_cr = false;
        let mut line_start = true;
        for &b in message {
            if line_start && b == b'.' {
                out.push(b'.');
            }
            if b == b'\n' && !after_cr {
                out.push(b'\r');
            }
            out.push(b);
            after_cr = b == b'\r';
            line_start = b == b'\n';
        }
        if !out.is_empty() && !out.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        out
    }

    #[test]
    fn dot_stuffing_in_bulk_is_dot_stuffing_byte_by_byte() {
        let alphabet = [b'a', b'.', b'\r', b'\n'];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..3000 {
            let len = (next() % 24) as usize;
            let whole: Vec<u8> = (0..len).map(|_| alphabet[(next() % 4) as usize]).collect();
            let want = dot_stuff_line_by_line(&whole);
            for cut in 0..=whole.len() {
                let (a, b) = whole.split_at(cut);
                assert_eq!(dot_stuff_parts(&[a, b]), want, "{whole:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn dot_stuffing_parts_is_dot_stuffing_their_concatenation() {
        let cases: &[&[u8]] = &[
            b"DKIM-Signature: v=1\r\n\tb=x\r\n.a\r\nb\n.\r\n",
            b"a\r\n.b\r\n..c",
            b"\n\n.\r",
            b".x\r\n",
        ];
        for whole in cases {
            for cut in 0..=whole.len() {
                let (a, b) = whole.split_at(cut);
                assert_eq!(
                    dot_stuff_parts(&[a, b]),
                    dot_stuff(whole),
                    "{:?} cut at {cut}",
                    String::from_utf8_lossy(whole)
                );
            }
        }
    }
}
