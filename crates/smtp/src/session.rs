//! The session state machine.

use crate::command::{self, Command, MailFrom};
use crate::data::{canonicalize_chunks, DataError, DataProgress, DataReader, Limits};
use crate::sasl::{self, Credentials};
use crate::SessionConfig;
use memchr::memchr;
use posthorn_types::{BusinessError, Envelope, MessageId, Reply};

/// What the session needs from its driver after a [`Session::step`].
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Every complete command in the input has been handled: write the
    /// pending output, then read more and [`Session::feed`] it.
    NeedInput,
    /// Write the pending output (the `220` to STARTTLS), run the TLS
    /// handshake, then call [`Session::tls_started`]. Input that was already
    /// buffered has been thrown away.
    StartTls,
    /// Check these credentials, then call [`Session::auth_result`].
    Authenticate(Credentials),
    /// May the logged-in user send from this address? Answer with
    /// [`Session::mail_result`].
    Mail(String),
    /// May mail go to this recipient? Answer with [`Session::rcpt_result`].
    Rcpt(String),
    /// Store the message durably, then call [`Session::submit_result`].
    Submit { envelope: Envelope, data: Vec<u8> },
    /// Write the pending output and close the connection.
    Close,
}

enum State {
    /// Reading command lines.
    Command,
    /// After `334 ` to AUTH PLAIN without an initial response.
    AuthPlain,
    /// AUTH LOGIN, waiting for the user name.
    AuthLoginUser,
    /// AUTH LOGIN, waiting for the password.
    AuthLoginPassword(String),
    /// Between `354` and the end marker.
    Data(Box<DataReader>),
    /// Reading `remaining` bytes of a BDAT chunk of `size` bytes;
    /// `refusal` is the answer to a chunk sent with no transaction to put
    /// it in.
    Bdat {
        size: usize,
        remaining: usize,
        last: bool,
        refusal: Option<Reply>,
    },
    /// An event was returned; the driver's answer is due.
    Waiting(Pending),
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    Auth,
    Mail,
    Rcpt,
    Submit,
    StartTls,
}

/// The transaction opened by MAIL.
struct Transaction {
    envelope: Envelope,
    /// BDAT content so far.
    chunks: Vec<u8>,
    /// A BDAT chunk was refused; later chunks are read and refused too,
    /// until LAST.
    bdat_error: Option<Reply>,
    /// BDAT was used: DATA is now out of order.
    bdat_started: bool,
}

/// One SMTP server session. See the crate documentation.
pub struct Session {
    config: SessionConfig,
    state: State,
    input: Vec<u8>,
    /// Bytes of `input` already used.
    consumed: usize,
    output: Vec<u8>,
    /// The name given in HELO/EHLO; `None` until then.
    helo: Option<String>,
    esmtp: bool,
    tls: bool,
    authenticated: bool,
    transaction: Option<Transaction>,
    /// MAIL FROM waiting for the driver's approval.
    pending_mail: Option<MailFrom>,
    /// RCPT TO waiting for the driver's approval.
    pending_rcpt: Option<String>,
    errors: u32,
    /// Failed AUTH attempts on this connection.
    auth_failures: u32,
    /// Inside a command line longer than the limit: drop it up to its LF.
    skipping_line: bool,
    /// The length of the last message stored on this connection: room
    /// for the next one (and an eighth more).
    last_message_len: usize,
}

fn ok() -> Reply {
    Reply::new(250, "2.0.0", "Ok")
}

fn bad_sequence(text: &str) -> Reply {
    Reply::new(503, "5.5.1", format!("Error: {text}"))
}

impl Session {
    /// A new session; the greeting is already in the output.
    pub fn new(config: SessionConfig) -> Self {
        let mut s = Self {
            tls: config.tls_active,
            config,
            state: State::Command,
            input: Vec::new(),
            consumed: 0,
            output: Vec::new(),
            helo: None,
            esmtp: false,
            authenticated: false,
            transaction: None,
            pending_mail: None,
            pending_rcpt: None,
            errors: 0,
            auth_failures: 0,
            skipping_line: false,
            last_message_len: 0,
        };
        let greeting = format!("220 {} ESMTP Posthorn\r\n", s.config.hostname);
        s.output.extend_from_slice(greeting.as_bytes());
        s
    }

    /// A session that only refuses the connection with `reply` (a `421`
    /// instead of the greeting) and closes.
    pub fn refused(config: SessionConfig, reply: Reply) -> Self {
        let mut s = Self::new(config);
        s.output.clear();
        s.close_with(reply);
        s
    }

    /// Add bytes received from the client.
    pub fn feed(&mut self, bytes: &[u8]) {
        // Bytes that arrive between STARTTLS and the end of the handshake
        // were sent in plaintext: never execute them.
        if matches!(
            self.state,
            State::Closed | State::Waiting(Pending::StartTls)
        ) {
            return;
        }
        if self.consumed > 0 && self.consumed == self.input.len() {
            self.input.clear();
            self.consumed = 0;
        }
        self.input.extend_from_slice(bytes);
    }

    /// Replies not yet written to the client.
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// Call after writing [`Session::output`].
    pub fn clear_output(&mut self) {
        self.output.clear();
    }

    /// Mark the session as logged in without AUTH (a trusted network).
    pub fn set_authenticated(&mut self) {
        self.authenticated = true;
    }

    /// Recipients per transaction from now on: the logged-in account's own
    /// limit (the RCPT past it gets `452 4.5.3`).
    pub fn set_max_recipients(&mut self, max: usize) {
        self.config.max_recipients = max.max(1);
    }

    /// The name the client gave in HELO/EHLO.
    pub fn helo(&self) -> Option<&str> {
        self.helo.as_deref()
    }

    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// TLS is active on the connection.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Message content is being received (the driver allows the longer
    /// DATA timeout).
    pub fn in_data(&self) -> bool {
        matches!(self.state, State::Data(_) | State::Bdat { .. })
    }

    /// No transaction is open and nothing is pending: the connection can be
    /// closed for shutdown without losing anything.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Command) && self.transaction.is_none()
    }

    /// The reply for an idle timeout; the driver writes it and closes.
    pub fn timeout(&mut self) {
        self.close_with(Reply::new(
            421,
            "4.4.2",
            format!("{} Error: timeout exceeded", self.config.hostname),
        ));
    }

    /// The reply for a shutting-down server; the driver writes it and closes.
    pub fn shutdown(&mut self) {
        self.close_with(Reply::new(
            421,
            "4.3.2",
            format!(
                "{} Service shutting down, try again later",
                self.config.hostname
            ),
        ));
    }

    /// Refuse the connection (for example a connection cap) with `reply`.
    pub fn close_with(&mut self, reply: Reply) {
        reply.write_to(&mut self.output);
        self.state = State::Closed;
    }

    fn reply(&mut self, reply: Reply) {
        // Only the client's own protocol errors (unknown command, bad
        // syntax, bad sequence, commands that need AUTH or TLS first) count
        // toward the error limit; refusals of what it asked for (a sender,
        // a message) do not.
        if matches!(reply.code, 500..=504 | 530 | 538 | 555) {
            self.errors += 1;
        }
        reply.write_to(&mut self.output);
        // 421 means the server closes the connection (RFC 5321 4.2.2).
        if reply.code == 421 {
            self.state = State::Closed;
        }
    }

    fn wait(&mut self, pending: Pending, event: Event) -> Event {
        self.state = State::Waiting(pending);
        event
    }

    fn expect_waiting(&mut self, pending: Pending) {
        match self.state {
            State::Waiting(p) if p == pending => self.state = State::Command,
            _ => panic!("{pending:?} result given while the session was not waiting for it"),
        }
    }

    /// Answer to [`Event::StartTls`]: the handshake succeeded.
    pub fn tls_started(&mut self) {
        self.expect_waiting(Pending::StartTls);
        self.tls = true;
    }

    /// Answer to [`Event::Authenticate`]: `Ok` logs in; `Err` is the refusal
    /// (normally `535 5.7.8`).
    pub fn auth_result(&mut self, result: Result<(), Reply>) {
        self.expect_waiting(Pending::Auth);
        match result {
            Ok(()) => {
                self.authenticated = true;
                self.reply(Reply::new(235, "2.7.0", "Authentication successful"));
            }
            Err(r) => {
                self.reply(r);
                self.auth_failures += 1;
                if self.auth_failures >= self.config.max_auth_failures {
                    self.close_with(Reply::new(
                        421,
                        "4.7.0",
                        "Error: too many failed authentication attempts",
                    ));
                }
            }
        }
    }

    /// Answer to [`Event::Mail`].
    pub fn mail_result(&mut self, result: Result<(), Reply>) {
        self.expect_waiting(Pending::Mail);
        let mail = self.pending_mail.take().expect("pending MAIL");
        match result {
            Ok(()) => {
                self.transaction = Some(Transaction {
                    envelope: Envelope {
                        mail_from: mail.address,
                        rcpt_to: Vec::new(),
                        body: mail.body,
                        smtputf8: mail.smtputf8,
                        declared_size: mail.size,
                        suppressed: Vec::new(),
                    },
                    chunks: Vec::new(),
                    bdat_error: None,
                    bdat_started: false,
                });
                self.reply(Reply::new(250, "2.1.0", "Ok"));
            }
            Err(r) => self.reply(r),
        }
    }

    /// Answer to [`Event::Rcpt`].
    pub fn rcpt_result(&mut self, result: Result<(), Reply>) {
        self.expect_waiting(Pending::Rcpt);
        let rcpt = self.pending_rcpt.take().expect("pending RCPT");
        match result {
            Ok(()) => {
                let txn = self
                    .transaction
                    .as_mut()
                    .expect("RCPT inside a transaction");
                if !txn
                    .envelope
                    .rcpt_to
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case(&rcpt))
                {
                    txn.envelope.rcpt_to.push(rcpt);
                }
                self.reply(Reply::new(250, "2.1.5", "Ok"));
            }
            Err(r) => self.reply(r),
        }
    }

    /// Answer to [`Event::Submit`]: the message is stored (`Ok(id)`) or was
    /// refused. Either way the transaction is over.
    pub fn submit_result(&mut self, result: Result<MessageId, Reply>) {
        self.expect_waiting(Pending::Submit);
        self.transaction = None;
        match result {
            Ok(id) => self.reply(Reply::new(250, "2.0.0", format!("Ok: queued as {id}"))),
            Err(r) => self.reply(r),
        }
    }

    /// Advance until the driver must act. See [`Event`].
    pub fn step(&mut self) -> Event {
        loop {
            if self.errors > self.config.max_errors && !matches!(self.state, State::Closed) {
                self.close_with(Reply::new(421, "4.7.0", "Error: too many errors"));
            }
            match &mut self.state {
                State::Closed => return Event::Close,
                State::Waiting(p) => panic!("step called while waiting for {p:?}"),
                State::Data(reader) => {
                    let (used, progress) = reader.consume(&self.input[self.consumed..]);
                    self.consumed += used;
                    match progress {
                        DataProgress::NeedMore => return self.need_input(),
                        DataProgress::Done(result) => {
                            self.state = State::Command;
                            if let Some(event) = self.finish_message(result) {
                                return event;
                            }
                        }
                    }
                }
                State::Bdat {
                    size,
                    remaining,
                    last,
                    refusal,
                } => {
                    let (size, remaining_now, last, refusal) =
                        (*size, *remaining, *last, refusal.take());
                    let available = self.input.len() - self.consumed;
                    let take = available.min(remaining_now);
                    let chunk = &self.input[self.consumed..self.consumed + take];
                    if let Some(txn) = self.transaction.as_mut() {
                        if txn.bdat_error.is_none() {
                            if txn.chunks.len() + take > self.config.max_message_size {
                                txn.bdat_error = Some(too_large());
                                txn.chunks = Vec::new();
                            } else {
                                txn.chunks.extend_from_slice(chunk);
                            }
                        }
                    }
                    self.consumed += take;
                    if take < remaining_now {
                        self.state = State::Bdat {
                            size,
                            remaining: remaining_now - take,
                            last,
                            refusal,
                        };
                        return self.need_input();
                    }
                    self.state = State::Command;
                    if let Some(r) = refusal {
                        self.reply(r);
                        continue;
                    }
                    if let Some(event) = self.finish_chunk(size, last) {
                        return event;
                    }
                }
                State::Command
                | State::AuthPlain
                | State::AuthLoginUser
                | State::AuthLoginPassword(_) => {
                    let Some(line) = self.next_line() else {
                        return self.need_input();
                    };
                    // An over-long line was answered; go round again so the
                    // error limit is checked before the next line.
                    let Some(line) = line else {
                        continue;
                    };
                    if let Some(event) = self.handle_line(line) {
                        return event;
                    }
                }
            }
        }
    }

    fn need_input(&mut self) -> Event {
        // Keep the buffer from growing: drop what was used.
        if self.consumed > 0 {
            self.input.drain(..self.consumed);
            self.consumed = 0;
        }
        Event::NeedInput
    }

    /// The next complete line, without its line ending: `None` when no
    /// complete line is buffered, `Some(None)` when the next line was too
    /// long (it has been answered). An over-long line is dropped as it
    /// arrives and answered once its end is seen.
    fn next_line(&mut self) -> Option<Option<Vec<u8>>> {
        let rest = &self.input[self.consumed..];
        let Some(lf) = memchr(b'\n', rest) else {
            if rest.len() > self.config.max_command_length {
                self.skipping_line = true;
                self.consumed = self.input.len();
            }
            return None;
        };
        let mut line = &rest[..lf];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        let too_long = self.skipping_line || lf + 1 > self.config.max_command_length;
        let line = (!too_long).then(|| line.to_vec());
        self.consumed += lf + 1;
        self.skipping_line = false;
        if line.is_none() {
            self.state = State::Command;
            self.reply(Reply::new(500, "5.5.2", "Error: line too long"));
        }
        Some(line)
    }

    fn handle_line(&mut self, line: Vec<u8>) -> Option<Event> {
        match std::mem::replace(&mut self.state, State::Command) {
            State::AuthPlain => {
                let line = String::from_utf8_lossy(&line).into_owned();
                if line.trim() == "*" {
                    self.reply(auth_cancelled());
                    return None;
                }
                match sasl::decode_plain(&line) {
                    Ok(creds) => Some(self.wait(Pending::Auth, Event::Authenticate(creds))),
                    Err(r) => {
                        self.reply(r);
                        None
                    }
                }
            }
            State::AuthLoginUser => {
                let line = String::from_utf8_lossy(&line).into_owned();
                if line.trim() == "*" {
                    self.reply(auth_cancelled());
                    return None;
                }
                match sasl::decode_response(&line).and_then(|u| sasl::utf8(&u)) {
                    Ok(user) => {
                        self.ask_login_password(user);
                        None
                    }
                    Err(r) => {
                        self.reply(r);
                        None
                    }
                }
            }
            State::AuthLoginPassword(username) => {
                let line = String::from_utf8_lossy(&line).into_owned();
                if line.trim() == "*" {
                    self.reply(auth_cancelled());
                    return None;
                }
                match sasl::decode_response(&line).and_then(|p| sasl::utf8(&p)) {
                    Ok(password) => Some(self.wait(
                        Pending::Auth,
                        Event::Authenticate(Credentials {
                            authzid: String::new(),
                            username,
                            password,
                        }),
                    )),
                    Err(r) => {
                        self.reply(r);
                        None
                    }
                }
            }
            _ => match command::parse(&line) {
                Ok(cmd) => self.handle_command(cmd),
                Err(r) => {
                    self.reply(r);
                    None
                }
            },
        }
    }

    fn ask_login_password(&mut self, user: String) {
        let prompt = format!("334 {}\r\n", sasl::encode("Password:"));
        self.output.extend_from_slice(prompt.as_bytes());
        self.state = State::AuthLoginPassword(user);
    }

    fn handle_command(&mut self, cmd: Command) -> Option<Event> {
        match cmd {
            Command::Helo(name) => {
                self.helo = Some(name);
                self.esmtp = false;
                self.transaction = None;
                // RFC 2034 §3: no enhanced status code in the reply to
                // HELO (nor EHLO): the domain comes first (RFC 5321 4.1.1.1).
                let line = format!("250 {}\r\n", self.config.hostname);
                self.output.extend_from_slice(line.as_bytes());
            }
            Command::Ehlo(name) => {
                self.helo = Some(name);
                self.esmtp = true;
                self.transaction = None;
                self.write_ehlo();
            }
            Command::StartTls => return self.start_tls(),
            Command::Auth { mechanism, initial } => return self.auth(mechanism, initial),
            Command::Mail(mail) => return self.mail(mail),
            Command::Rcpt(rcpt) => return self.rcpt(rcpt),
            Command::Data => self.data(),
            Command::Bdat { size, last } => self.bdat(size, last),
            Command::Rset => {
                self.transaction = None;
                self.reply(ok());
            }
            Command::Noop => self.reply(ok()),
            Command::Help => self.reply(Reply::new(
                214,
                "2.0.0",
                "Commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA BDAT RSET NOOP VRFY QUIT",
            )),
            Command::Vrfy => self.reply(Reply::new(
                252,
                "2.5.0",
                "Cannot VRFY user, but will accept message and attempt delivery",
            )),
            Command::Expn => self.reply(Reply::new(502, "5.5.1", "Error: EXPN not implemented")),
            Command::Quit => {
                self.close_with(Reply::new(221, "2.0.0", "Bye"));
                return Some(Event::Close);
            }
        }
        None
    }

    fn auth_offered(&self) -> bool {
        self.tls || self.config.auth_without_tls
    }

    fn write_ehlo(&mut self) {
        let mut lines = vec![
            self.config.hostname.clone(),
            "PIPELINING".to_string(),
            format!("SIZE {}", self.config.max_message_size),
            "8BITMIME".to_string(),
            "SMTPUTF8".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
            "CHUNKING".to_string(),
        ];
        if !self.tls && self.config.starttls_available {
            lines.push("STARTTLS".to_string());
        }
        if self.auth_offered() && !self.authenticated {
            lines.push("AUTH PLAIN LOGIN".to_string());
        }
        let last = lines.len() - 1;
        for (i, line) in lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            self.output
                .extend_from_slice(format!("250{sep}{line}\r\n").as_bytes());
        }
    }

    fn start_tls(&mut self) -> Option<Event> {
        if self.tls {
            self.reply(bad_sequence("TLS is already active"));
            return None;
        }
        if !self.config.starttls_available {
            self.reply(Reply::new(454, "4.7.0", "Error: TLS not available"));
            return None;
        }
        self.reply(Reply::new(220, "2.0.0", "Ready to start TLS"));
        // Anything pipelined behind STARTTLS arrived in plaintext: it is
        // thrown away, never executed after the handshake (CVE-2011-0411).
        self.input.clear();
        self.consumed = 0;
        // RFC 3207: forget everything learnt before TLS.
        self.helo = None;
        self.esmtp = false;
        self.authenticated = false;
        self.transaction = None;
        Some(self.wait(Pending::StartTls, Event::StartTls))
    }

    fn auth(&mut self, mechanism: String, initial: Option<String>) -> Option<Event> {
        if !self.esmtp {
            self.reply(bad_sequence("send EHLO first"));
            return None;
        }
        if self.authenticated {
            self.reply(bad_sequence("already authenticated"));
            return None;
        }
        if self.transaction.is_some() {
            self.reply(bad_sequence("AUTH not allowed during a mail transaction"));
            return None;
        }
        if !self.auth_offered() {
            self.reply(Reply::new(
                538,
                "5.7.11",
                "Error: encryption required for authentication, use STARTTLS first",
            ));
            return None;
        }
        match (mechanism.as_str(), initial) {
            ("PLAIN", None) => {
                self.output.extend_from_slice(b"334 \r\n");
                self.state = State::AuthPlain;
                None
            }
            ("PLAIN", Some(ir)) => match sasl::decode_plain(&ir) {
                Ok(creds) => Some(self.wait(Pending::Auth, Event::Authenticate(creds))),
                Err(r) => {
                    self.reply(r);
                    None
                }
            },
            ("LOGIN", None) => {
                let prompt = format!("334 {}\r\n", sasl::encode("Username:"));
                self.output.extend_from_slice(prompt.as_bytes());
                self.state = State::AuthLoginUser;
                None
            }
            ("LOGIN", Some(ir)) => {
                match sasl::decode_response(&ir).and_then(|u| sasl::utf8(&u)) {
                    Ok(user) => self.ask_login_password(user),
                    Err(r) => self.reply(r),
                }
                None
            }
            _ => {
                self.reply(Reply::new(
                    504,
                    "5.5.4",
                    "Error: unrecognized authentication type, use PLAIN or LOGIN",
                ));
                None
            }
        }
    }

    fn mail(&mut self, mail: MailFrom) -> Option<Event> {
        if self.helo.is_none() {
            self.reply(bad_sequence("send HELO/EHLO first"));
            return None;
        }
        if !self.authenticated {
            self.reply(Reply::new(530, "5.7.0", "Error: authentication required"));
            return None;
        }
        if self.transaction.is_some() {
            self.reply(bad_sequence("nested MAIL command"));
            return None;
        }
        if mail
            .size
            .is_some_and(|s| s > self.config.max_message_size as u64)
        {
            self.reply(too_large());
            return None;
        }
        if !mail.smtputf8 && !mail.address.is_ascii() {
            self.reply(Reply::new(
                553,
                "5.6.7",
                "Error: non-ASCII address needs the SMTPUTF8 parameter",
            ));
            return None;
        }
        let from = mail.address.clone();
        self.pending_mail = Some(mail);
        Some(self.wait(Pending::Mail, Event::Mail(from)))
    }

    fn rcpt(&mut self, rcpt: String) -> Option<Event> {
        let Some(txn) = &self.transaction else {
            self.reply(bad_sequence("need MAIL command"));
            return None;
        };
        if txn.bdat_started {
            self.reply(bad_sequence("RCPT not allowed after BDAT"));
            return None;
        }
        if !txn.envelope.smtputf8 && !rcpt.is_ascii() {
            self.reply(Reply::new(
                553,
                "5.6.7",
                "Error: non-ASCII address needs the SMTPUTF8 parameter",
            ));
            return None;
        }
        if txn.envelope.rcpt_to.len() >= self.config.max_recipients {
            self.reply(Reply::new(
                452,
                "4.5.3",
                format!(
                    "Error: too many recipients, at most {} per message; send the rest in another transaction",
                    self.config.max_recipients
                ),
            ));
            return None;
        }
        self.pending_rcpt = Some(rcpt.clone());
        Some(self.wait(Pending::Rcpt, Event::Rcpt(rcpt)))
    }

    fn limits(&self) -> Limits {
        Limits {
            max_size: self.config.max_message_size,
            max_line: self.config.max_line_length,
            line_endings: self.config.line_endings,
        }
    }

    fn data(&mut self) {
        let reply = match &self.transaction {
            None => Some(bad_sequence("need MAIL command")),
            Some(t) if t.bdat_started => Some(bad_sequence("DATA not allowed after BDAT")),
            Some(t) if t.envelope.rcpt_to.is_empty() => {
                Some(Reply::new(554, "5.5.1", "Error: no valid recipients"))
            }
            Some(_) => None,
        };
        if let Some(r) = reply {
            self.reply(r);
            return;
        }
        self.output
            .extend_from_slice(b"354 End data with <CR><LF>.<CR><LF>\r\n");
        // Room for what this connection has sent before (and an eighth
        // more), not for a size the client declares: a claim costs the
        // client nothing, and held by many slow connections it would be
        // memory the server keeps for bytes never sent.
        let room = self.last_message_len + self.last_message_len / 8;
        let reader = DataReader::with_capacity(self.limits(), room);
        self.state = State::Data(Box::new(reader));
    }

    fn bdat(&mut self, size: usize, last: bool) {
        // The chunk is read whatever happens, so the stream stays in sync;
        // a refusal is answered once it has been read.
        let mut refusal = None;
        match &mut self.transaction {
            None => refusal = Some(bad_sequence("need MAIL command")),
            Some(t) => {
                t.bdat_started = true;
                if t.envelope.rcpt_to.is_empty() {
                    t.bdat_error.get_or_insert(Reply::new(
                        554,
                        "5.5.1",
                        "Error: no valid recipients",
                    ));
                }
            }
        }
        self.state = State::Bdat {
            size,
            remaining: size,
            last,
            refusal,
        };
    }

    fn finish_chunk(&mut self, size: usize, last: bool) -> Option<Event> {
        let txn = self.transaction.as_mut().expect("BDAT transaction");
        if let Some(err) = txn.bdat_error.clone() {
            if last {
                self.transaction = None;
            }
            self.reply(err);
            return None;
        }
        if !last {
            self.reply(Reply::new(
                250,
                "2.0.0",
                format!("Ok: {size} octets received"),
            ));
            return None;
        }
        let data = std::mem::take(&mut txn.chunks);
        let result = canonicalize_chunks(data, self.limits());
        self.finish_message(result)
    }

    fn finish_message(&mut self, result: Result<Vec<u8>, DataError>) -> Option<Event> {
        match result {
            Ok(data) => {
                self.last_message_len = data.len();
                let envelope =
                    std::mem::take(&mut self.transaction.as_mut().expect("transaction").envelope);
                Some(self.wait(Pending::Submit, Event::Submit { envelope, data }))
            }
            Err(e) => {
                self.transaction = None;
                self.reply(data_error_reply(e, self.config.max_line_length));
                None
            }
        }
    }
}

fn auth_cancelled() -> Reply {
    Reply::new(501, "5.7.0", "Authentication cancelled")
}

fn too_large() -> Reply {
    Reply::new(
        552,
        "5.3.4",
        "Error: message size exceeds fixed maximum message size",
    )
}

fn data_error_reply(e: DataError, max_line: usize) -> Reply {
    match e {
        DataError::TooLarge => too_large(),
        DataError::LineTooLong => BusinessError::policy(
            "FailedOperation.LineTooLong",
            format!(
                "a line of the message is longer than {max_line} bytes; wrap it or use quoted-printable or base64"
            ),
        )
        .to_reply(),
        DataError::BareLineEnding => Reply::new(
            550,
            "5.5.2",
            "Error: bare CR or LF in message data; send CRLF line endings",
        ),
    }
}
