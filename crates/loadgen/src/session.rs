//! One session: a task that takes messages from the shared counter until
//! none are left, opening connections as it needs them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::conn::{Conn, Failure};
use crate::tls::Tls;
use crate::{message, Args, TlsMode};

/// What every session does, prepared once.
pub struct Plan {
    tls_mode: TlsMode,
    tls: Option<Tls>,
    /// `AUTH PLAIN ...\r\n`.
    auth: Option<Vec<u8>>,
    /// `EHLO name\r\n`.
    ehlo: Vec<u8>,
    /// `MAIL FROM:<from>` without the line ending.
    mail: Vec<u8>,
    /// ` SIZE=n`, added when the server advertises SIZE.
    size_param: Vec<u8>,
    /// `RCPT TO:<to>\r\n` each.
    rcpts: Vec<Vec<u8>>,
    /// The dot-stuffed message with its end marker, shared by all sessions.
    body: Arc<[u8]>,
    reuse: bool,
    pipelining: bool,
    timeout: Duration,
    duration_limit: Option<Duration>,
    /// Offered messages per second in all (`--rate`).
    rate: Option<f64>,
    /// Expected messages per session, to size the latency vector.
    per_session: usize,
}

impl Plan {
    pub fn new(
        args: &Args,
        recipients: &[String],
        content: &[u8],
        tls: Option<Tls>,
        auth: Option<Vec<u8>>,
        timeout: Duration,
        duration_limit: Option<Duration>,
    ) -> Plan {
        let body: Arc<[u8]> = message::dot_stuff(content).into();
        Plan {
            tls_mode: args.tls,
            tls,
            auth,
            ehlo: format!("EHLO {}\r\n", args.ehlo).into_bytes(),
            mail: format!("MAIL FROM:<{}>", args.from).into_bytes(),
            size_param: format!(" SIZE={}", content.len()).into_bytes(),
            rcpts: recipients
                .iter()
                .map(|r| format!("RCPT TO:<{r}>\r\n").into_bytes())
                .collect(),
            body,
            reuse: args.reuse,
            pipelining: args.pipelining,
            timeout,
            duration_limit,
            rate: args.rate,
            per_session: (args.messages / u64::from(args.sessions.max(1))).min(1 << 20) as usize
                + 1,
        }
    }
}

/// State shared by all sessions: the message counter and whether any
/// connection ever succeeded.
pub struct Shared {
    next: AtomicU64,
    total: u64,
    connected_any: AtomicBool,
}

impl Shared {
    pub fn new(total: u64) -> Shared {
        Shared {
            next: AtomicU64::new(0),
            total,
            connected_any: AtomicBool::new(false),
        }
    }

    /// The index of the next message to send, if any is left.
    fn claim(&self, deadline: Option<Instant>) -> Option<u64> {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (i < self.total).then_some(i)
    }
}

/// When message `index` may start at `rate` messages per second offered.
fn due(start: Instant, index: u64, rate: f64) -> Instant {
    start + Duration::from_secs_f64(index as f64 / rate)
}

/// What one session saw; merged into the report at the end.
#[derive(Default)]
pub struct Stats {
    pub ok: u64,
    pub failed: u64,
    /// Microseconds from writing MAIL to reading the final reply, per
    /// accepted message.
    pub latencies_us: Vec<u32>,
    /// Every reply outside 2xx, by code (the 354 that DATA expects is not
    /// counted).
    pub replies: HashMap<u16, u64>,
    /// One reply text per code in `replies`.
    pub samples: HashMap<u16, String>,
    /// Connect, TLS, I/O and protocol errors, and refused session set-ups.
    pub errors: HashMap<String, u64>,
    pub warnings: HashMap<String, u64>,
    /// Connections established (TCP, and TLS when asked for).
    pub connections: u64,
    /// Connections that could not be established.
    pub connect_failures: u64,
}

impl Stats {
    fn error(&mut self, kind: String) {
        *self.errors.entry(kind).or_default() += 1;
    }

    /// Tally a reply; true when it is 2xx. `text` is the reply's last line
    /// (kept once per code as an example).
    fn reply(&mut self, code: u16, text: &str) -> bool {
        if (200..300).contains(&code) {
            true
        } else {
            *self.replies.entry(code).or_default() += 1;
            self.samples.entry(code).or_insert_with(|| text.to_string());
            false
        }
    }
}

/// A connection after greeting, EHLO, TLS and AUTH.
struct Ready {
    conn: Conn,
    pipelining: bool,
    size: bool,
}

/// How a transaction ended.
enum Outcome {
    Accepted(Duration),
    /// Refused by a reply. `rset`: a transaction is open on the server.
    /// `closing`: the server said 421.
    Refused {
        rset: bool,
        closing: bool,
    },
    /// The connection is unusable.
    Broken(Failure),
}

/// Why a connection could not be made ready.
enum SetupError {
    /// TCP or implicit TLS failed: nothing was established.
    Transport,
    /// Established, then refused or broken during set-up.
    Session,
}

struct Session {
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    addr: SocketAddr,
    stats: Stats,
    wbuf: Vec<u8>,
    lines: Vec<String>,
}

pub async fn run(plan: Arc<Plan>, shared: Arc<Shared>, addr: SocketAddr, start: Instant) -> Stats {
    let deadline = plan.duration_limit.map(|d| start + d);
    let mut stats = Stats::default();
    stats.latencies_us.reserve(plan.per_session);
    let mut s = Session {
        plan,
        shared,
        addr,
        stats,
        wbuf: Vec::with_capacity(1024),
        lines: Vec::new(),
    };
    let mut ready: Option<Ready> = None;
    while let Some(index) = s.shared.claim(deadline) {
        if let Some(rate) = s.plan.rate {
            tokio::time::sleep_until(due(start, index, rate).into()).await;
        }
        let mut r = match ready.take() {
            Some(r) => r,
            None => match s.open().await {
                Ok(r) => r,
                Err(e) => {
                    s.stats.failed += 1;
                    if matches!(e, SetupError::Transport)
                        && !s.shared.connected_any.load(Ordering::Relaxed)
                    {
                        // Nothing has ever connected: do not hammer.
                        break;
                    }
                    continue;
                }
            },
        };
        let keep = match s.transaction(&mut r).await {
            Outcome::Accepted(latency) => {
                s.stats.ok += 1;
                let us = latency.as_micros().min(u128::from(u32::MAX)) as u32;
                s.stats.latencies_us.push(us);
                true
            }
            Outcome::Refused { rset, closing } => {
                s.stats.failed += 1;
                if closing {
                    false
                } else if rset && s.plan.reuse {
                    s.rset(&mut r).await
                } else {
                    true
                }
            }
            Outcome::Broken(failure) => {
                s.stats.failed += 1;
                s.stats.error(failure.kind("transaction"));
                false
            }
        };
        if keep && s.plan.reuse {
            ready = Some(r);
        } else if keep {
            s.quit(r).await;
        } else {
            r.conn.shutdown().await;
        }
    }
    if let Some(r) = ready {
        s.quit(r).await;
    }
    s.stats
}

impl Session {
    async fn open(&mut self) -> Result<Ready, SetupError> {
        let plan = self.plan.clone();
        let implicit = match plan.tls_mode {
            TlsMode::Implicit => plan.tls.as_ref(),
            _ => None,
        };
        let mut conn = match Conn::connect(self.addr, plan.timeout, implicit).await {
            Ok(conn) => conn,
            Err((stage, failure)) => {
                self.stats.connect_failures += 1;
                self.stats.error(failure.kind(stage));
                return Err(SetupError::Transport);
            }
        };
        self.stats.connections += 1;
        self.shared.connected_any.store(true, Ordering::Relaxed);
        match self.handshake(&mut conn).await {
            Ok((pipelining, size)) => Ok(Ready {
                conn,
                pipelining,
                size,
            }),
            Err(()) => {
                conn.shutdown().await;
                Err(SetupError::Session)
            }
        }
    }

    /// Greeting, EHLO, STARTTLS and EHLO again, AUTH. Every problem is
    /// tallied here; the caller only drops the connection.
    async fn handshake(&mut self, conn: &mut Conn) -> Result<(bool, bool), ()> {
        let plan = self.plan.clone();
        let stage = "setup";
        let code = conn
            .read_reply(None)
            .await
            .map_err(|e| self.stats.error(e.kind(stage)))?;
        if !self.stats.reply(code, conn.refusal()) {
            self.stats.error("setup: greeting refused".into());
            return Err(());
        }
        self.ehlo(conn).await?;
        if plan.tls_mode == TlsMode::Starttls {
            if !self.advertised("STARTTLS") {
                self.stats.error("setup: STARTTLS not advertised".into());
                return Err(());
            }
            conn.write_all(b"STARTTLS\r\n")
                .await
                .map_err(|e| self.stats.error(e.kind(stage)))?;
            let code = conn
                .read_reply(None)
                .await
                .map_err(|e| self.stats.error(e.kind(stage)))?;
            if !self.stats.reply(code, conn.refusal()) {
                self.stats.error("setup: STARTTLS refused".into());
                return Err(());
            }
            let tls = plan.tls.as_ref().expect("TLS prepared for STARTTLS");
            conn.start_tls(tls)
                .await
                .map_err(|e| self.stats.error(e.kind("tls")))?;
            self.ehlo(conn).await?;
        }
        if let Some(auth) = &plan.auth {
            conn.write_all(auth)
                .await
                .map_err(|e| self.stats.error(e.kind(stage)))?;
            let code = conn
                .read_reply(None)
                .await
                .map_err(|e| self.stats.error(e.kind(stage)))?;
            if code == 334 {
                // The server wants the response separately: it did not take
                // the initial response. Cancel and count it as refused.
                let _ = conn.write_all(b"*\r\n").await;
                let _ = conn.read_reply(None).await;
            }
            if !self.stats.reply(code, conn.refusal()) {
                self.stats.error("setup: AUTH refused".into());
                return Err(());
            }
        }
        let advertised = self.advertised("PIPELINING");
        if plan.pipelining && !advertised {
            *self
                .stats
                .warnings
                .entry("PIPELINING not advertised: lockstep".into())
                .or_default() += 1;
        }
        Ok((plan.pipelining && advertised, self.advertised("SIZE")))
    }

    async fn ehlo(&mut self, conn: &mut Conn) -> Result<(), ()> {
        conn.write_all(&self.plan.ehlo)
            .await
            .map_err(|e| self.stats.error(e.kind("setup")))?;
        let code = conn
            .read_reply(Some(&mut self.lines))
            .await
            .map_err(|e| self.stats.error(e.kind("setup")))?;
        if !self.stats.reply(code, conn.refusal()) {
            self.stats.error("setup: EHLO refused".into());
            return Err(());
        }
        Ok(())
    }

    /// Whether the last EHLO reply lists this extension (after line 1,
    /// which is the greeting).
    fn advertised(&self, keyword: &str) -> bool {
        self.lines.iter().skip(1).any(|line| {
            line.split_ascii_whitespace()
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case(keyword))
        })
    }

    async fn transaction(&mut self, r: &mut Ready) -> Outcome {
        match self.transaction_inner(r).await {
            Ok(outcome) => outcome,
            Err(failure) => Outcome::Broken(failure),
        }
    }

    async fn transaction_inner(&mut self, r: &mut Ready) -> Result<Outcome, Failure> {
        let plan = self.plan.clone();
        let mut closing = false;
        self.wbuf.clear();
        self.wbuf.extend_from_slice(&plan.mail);
        if r.size {
            self.wbuf.extend_from_slice(&plan.size_param);
        }
        self.wbuf.extend_from_slice(b"\r\n");
        let started = Instant::now();
        let mail_ok;
        let mut rcpts_ok = 0usize;
        let data_code;
        if r.pipelining {
            for rcpt in &plan.rcpts {
                self.wbuf.extend_from_slice(rcpt);
            }
            self.wbuf.extend_from_slice(b"DATA\r\n");
            r.conn.write_all(&self.wbuf).await?;
            let code = r.conn.read_reply(None).await?;
            closing |= code == 421;
            mail_ok = self.stats.reply(code, r.conn.refusal());
            for _ in &plan.rcpts {
                let code = r.conn.read_reply(None).await?;
                closing |= code == 421;
                if self.stats.reply(code, r.conn.refusal()) {
                    rcpts_ok += 1;
                }
            }
            data_code = r.conn.read_reply(None).await?;
        } else {
            r.conn.write_all(&self.wbuf).await?;
            let code = r.conn.read_reply(None).await?;
            mail_ok = self.stats.reply(code, r.conn.refusal());
            if !mail_ok {
                return Ok(Outcome::Refused {
                    rset: false,
                    closing: code == 421,
                });
            }
            for rcpt in &plan.rcpts {
                r.conn.write_all(rcpt).await?;
                let code = r.conn.read_reply(None).await?;
                if code == 421 {
                    return Ok(Outcome::Refused {
                        rset: false,
                        closing: true,
                    });
                }
                if self.stats.reply(code, r.conn.refusal()) {
                    rcpts_ok += 1;
                }
            }
            if rcpts_ok == 0 {
                return Ok(Outcome::Refused {
                    rset: true,
                    closing: false,
                });
            }
            r.conn.write_all(b"DATA\r\n").await?;
            data_code = r.conn.read_reply(None).await?;
        }
        if data_code != 354 {
            self.stats.reply(data_code, r.conn.refusal());
            return Ok(Outcome::Refused {
                rset: mail_ok,
                closing: closing || data_code == 421,
            });
        }
        // 354: the server is reading content now, whatever it said before.
        r.conn.write_all(&plan.body).await?;
        let code = r.conn.read_reply(None).await?;
        let latency = started.elapsed();
        if self.stats.reply(code, r.conn.refusal()) && mail_ok && rcpts_ok > 0 {
            Ok(Outcome::Accepted(latency))
        } else {
            Ok(Outcome::Refused {
                rset: false,
                closing: closing || code == 421,
            })
        }
    }

    /// Reset an open transaction; false when the connection is not usable.
    async fn rset(&mut self, r: &mut Ready) -> bool {
        if let Err(e) = r.conn.write_all(b"RSET\r\n").await {
            self.stats.error(e.kind("rset"));
            return false;
        }
        match r.conn.read_reply(None).await {
            Ok(code) => self.stats.reply(code, r.conn.refusal()),
            Err(e) => {
                self.stats.error(e.kind("rset"));
                false
            }
        }
    }

    async fn quit(&mut self, mut r: Ready) {
        match r.conn.write_all(b"QUIT\r\n").await {
            Ok(()) => match r.conn.read_reply(None).await {
                Ok(code) => {
                    self.stats.reply(code, r.conn.refusal());
                }
                Err(e) => self.stats.error(e.kind("quit")),
            },
            Err(e) => self.stats.error(e.kind("quit")),
        }
        r.conn.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paced_start_times() {
        let t0 = Instant::now();
        assert_eq!(due(t0, 0, 1000.0), t0);
        assert_eq!(due(t0, 1000, 1000.0), t0 + Duration::from_secs(1));
        assert_eq!(due(t0, 5, 2.0), t0 + Duration::from_millis(2500));
    }

    #[test]
    fn claims_stop_at_the_total() {
        let shared = Shared::new(2);
        assert_eq!(shared.claim(None), Some(0));
        assert_eq!(shared.claim(None), Some(1));
        assert_eq!(shared.claim(None), None);
        let shared = Shared::new(5);
        assert_eq!(shared.claim(Some(Instant::now())), None);
    }
}
