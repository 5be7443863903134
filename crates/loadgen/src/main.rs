//! `posthorn-loadgen`: an SMTP load generator.
//!
//! N concurrent sessions share M messages of S bytes (one message generated
//! and dot-stuffed once, shared by every session), with K recipients each,
//! over plain TCP, STARTTLS or implicit TLS, optionally with AUTH PLAIN,
//! connection reuse and PIPELINING. It reports messages/second, the latency
//! of each transaction (writing MAIL to reading the final reply after the
//! data) as p50/p90/p99/max, every non-2xx reply by code and every
//! connection or TLS error by kind.
//!
//! Exit status: 0 after a measurement, whatever the server answered; 2 for
//! bad arguments; 1 when not a single connection could be established.

mod conn;
mod message;
mod report;
mod session;
mod tls;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};

use crate::session::{Plan, Shared};

/// How the connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TlsMode {
    /// Plain TCP.
    None,
    /// STARTTLS after the first EHLO, then EHLO again.
    Starttls,
    /// TLS from the first byte (submissions port style).
    Implicit,
}

impl TlsMode {
    pub fn name(self) -> &'static str {
        match self {
            TlsMode::None => "none",
            TlsMode::Starttls => "starttls",
            TlsMode::Implicit => "implicit",
        }
    }
}

/// SMTP load generator for Posthorn (or any SMTP server).
#[derive(Parser, Debug)]
#[command(name = "posthorn-loadgen", version)]
pub struct Args {
    /// Server address, HOST:PORT.
    #[arg(long)]
    pub server: String,
    /// Concurrent sessions (one task each).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub sessions: u32,
    /// Messages in total, shared by all sessions.
    #[arg(long, default_value_t = 10000)]
    pub messages: u64,
    /// Size of the generated message in bytes (headers and body, before dot-stuffing).
    #[arg(long, default_value_t = 5120)]
    pub size: usize,
    /// Recipients per message.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub rcpts: u32,
    /// Envelope and header sender.
    #[arg(long, default_value = "load@bench.test")]
    pub from: String,
    /// Recipient; with --rcpts K > 1 the recipients are local-part+1 .. local-part+K.
    #[arg(long, default_value = "sink@example.net")]
    pub to: String,
    /// Keep each connection for many messages (otherwise one message per connection).
    #[arg(long)]
    pub reuse: bool,
    /// Send MAIL, RCPT... and DATA in one write when the server advertises PIPELINING.
    #[arg(long)]
    pub pipelining: bool,
    /// Transport security; certificates are never verified.
    #[arg(long, value_enum, default_value_t = TlsMode::None)]
    pub tls: TlsMode,
    /// AUTH PLAIN user (after TLS, if any).
    #[arg(long, requires = "password")]
    pub user: Option<String>,
    /// AUTH PLAIN password.
    #[arg(long, requires = "user")]
    pub password: Option<String>,
    /// EHLO name.
    #[arg(long, default_value = "loadgen.localhost")]
    pub ehlo: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Stop starting new messages after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub duration_limit: Option<f64>,
    /// Offer at most this many messages per second in all: message i is not
    /// started before i/RATE seconds after the start (default: each session
    /// sends as fast as the server answers).
    #[arg(long, value_name = "MSGS_PER_SEC")]
    pub rate: Option<f64>,
    /// Timeout for connecting, the TLS handshake and each reply, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub timeout: f64,
    /// Runtime worker threads (default: one per CPU).
    #[arg(long)]
    pub threads: Option<usize>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = match runtime.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("posthorn-loadgen: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("posthorn-loadgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn seconds(what: &str, secs: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(secs).with_context(|| format!("bad {what}: {secs}"))
}

fn check_address(what: &str, addr: &str) -> anyhow::Result<()> {
    if let Err(why) = posthorn_types::Address::parse(addr) {
        bail!("bad {what} address {addr:?}: {why}");
    }
    Ok(())
}

/// Everything that can be wrong with the arguments is found here, before a
/// single connection: errors returned from here exit with status 2.
async fn prepare(args: &Args) -> anyhow::Result<(Plan, SocketAddr)> {
    check_address("--from", &args.from)?;
    check_address("--to", &args.to)?;
    if args.ehlo.is_empty() || args.ehlo.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        bail!("bad --ehlo name: {:?}", args.ehlo);
    }
    let timeout = seconds("--timeout", args.timeout)?;
    if timeout.is_zero() {
        bail!("--timeout must be positive");
    }
    let duration_limit = match args.duration_limit {
        Some(secs) => Some(seconds("--duration-limit", secs)?),
        None => None,
    };
    if let Some(rate) = args.rate {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("--rate must be a positive number of messages per second, not {rate}");
        }
    }
    let (host, _port) = split_host_port(&args.server)?;
    let addr = tokio::net::lookup_host(args.server.as_str())
        .await
        .with_context(|| format!("cannot resolve --server {}", args.server))?
        .next()
        .with_context(|| format!("--server {} resolves to no address", args.server))?;
    let tls = match args.tls {
        TlsMode::None => None,
        _ => Some(tls::connector(host)?),
    };
    let auth = match (&args.user, &args.password) {
        (Some(user), Some(pass)) => Some(message::auth_plain_command(user, pass)),
        _ => None,
    };
    let recipients = message::recipients(&args.to, args.rcpts);
    let content = message::generate(&args.from, &recipients, args.size);
    let plan = Plan::new(
        args,
        &recipients,
        &content,
        tls,
        auth,
        timeout,
        duration_limit,
    );
    Ok((plan, addr))
}

fn split_host_port(server: &str) -> anyhow::Result<(&str, u16)> {
    let (host, port) = server
        .rsplit_once(':')
        .with_context(|| format!("--server must be HOST:PORT, not {server:?}"))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("bad port in --server {server:?}"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        bail!("--server must be HOST:PORT, not {server:?}");
    }
    Ok((host, port))
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (plan, addr) = prepare(&args).await?;
    let plan = Arc::new(plan);
    let shared = Arc::new(Shared::new(args.messages));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(args.sessions as usize);
    for _ in 0..args.sessions {
        let plan = plan.clone();
        let shared = shared.clone();
        tasks.push(tokio::spawn(session::run(plan, shared, addr, start)));
    }
    let mut stats = Vec::with_capacity(tasks.len());
    for task in tasks {
        match task.await {
            Ok(s) => stats.push(s),
            Err(e) => eprintln!("posthorn-loadgen: a session task failed: {e}"),
        }
    }
    let elapsed = start.elapsed();
    let report = report::Report::merge(&args, addr, stats, elapsed);
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    if report.connections == 0 && report.attempted() > 0 {
        eprintln!("posthorn-loadgen: no connection to {addr} could be established");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port() {
        assert_eq!(
            split_host_port("127.0.0.1:2525").unwrap(),
            ("127.0.0.1", 2525)
        );
        assert_eq!(split_host_port("[::1]:25").unwrap(), ("::1", 25));
        assert_eq!(
            split_host_port("mail.example.com:465").unwrap(),
            ("mail.example.com", 465)
        );
        assert!(split_host_port("localhost").is_err());
        assert!(split_host_port(":25").is_err());
        assert!(split_host_port("host:port").is_err());
    }

    #[test]
    fn addresses() {
        assert!(check_address("--to", "sink@example.net").is_ok());
        assert!(check_address("--to", "sink").is_err());
        assert!(check_address("--to", "a b@c").is_err());
        assert!(check_address("--to", "<a@c>").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
