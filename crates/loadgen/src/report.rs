//! Merging the sessions' statistics and printing them.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};

use crate::session::Stats;
use crate::Args;

pub struct Report {
    pub server: String,
    pub addr: SocketAddr,
    pub sessions: u32,
    pub messages: u64,
    pub size: usize,
    pub rcpts: u32,
    pub reuse: bool,
    pub pipelining: bool,
    pub tls: &'static str,
    pub auth: bool,
    /// `--rate`: offered messages per second.
    pub offered: Option<f64>,
    pub ok: u64,
    pub failed: u64,
    pub elapsed: Duration,
    pub connections: u64,
    pub connect_failures: u64,
    pub latency: Option<Latency>,
    pub replies: BTreeMap<u16, u64>,
    /// An example text for each code in `replies`.
    pub samples: BTreeMap<u16, String>,
    pub errors: BTreeMap<String, u64>,
    pub warnings: BTreeMap<String, u64>,
}

/// Transaction latency in microseconds.
#[derive(Debug, PartialEq, Eq)]
pub struct Latency {
    pub p50: u32,
    pub p90: u32,
    pub p99: u32,
    pub max: u32,
}

impl Latency {
    /// Nearest-rank percentiles of a sorted, non-empty slice.
    fn of_sorted(sorted: &[u32]) -> Option<Latency> {
        let last = *sorted.last()?;
        let rank = |p: f64| {
            let idx = (p * sorted.len() as f64).ceil() as usize;
            sorted[idx.clamp(1, sorted.len()) - 1]
        };
        Some(Latency {
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: last,
        })
    }
}

/// Reply texts can carry long JSON; an example needs the start only.
fn shorten(mut text: String) -> String {
    const MAX: usize = 200;
    if text.len() > MAX {
        let mut cut = MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

fn ms(us: u32) -> f64 {
    f64::from(us) / 1000.0
}

impl Report {
    pub fn merge(args: &Args, addr: SocketAddr, stats: Vec<Stats>, elapsed: Duration) -> Report {
        let mut report = Report {
            server: args.server.clone(),
            addr,
            sessions: args.sessions,
            messages: args.messages,
            size: args.size,
            rcpts: args.rcpts,
            reuse: args.reuse,
            pipelining: args.pipelining,
            tls: args.tls.name(),
            auth: args.user.is_some(),
            offered: args.rate,
            ok: 0,
            failed: 0,
            elapsed,
            connections: 0,
            connect_failures: 0,
            latency: None,
            replies: BTreeMap::new(),
            samples: BTreeMap::new(),
            errors: BTreeMap::new(),
            warnings: BTreeMap::new(),
        };
        let total: usize = stats.iter().map(|s| s.latencies_us.len()).sum();
        let mut latencies = Vec::with_capacity(total);
        for s in stats {
            report.ok += s.ok;
            report.failed += s.failed;
            report.connections += s.connections;
            report.connect_failures += s.connect_failures;
            latencies.extend_from_slice(&s.latencies_us);
            for (code, n) in s.replies {
                *report.replies.entry(code).or_default() += n;
            }
            for (code, text) in s.samples {
                report.samples.entry(code).or_insert_with(|| shorten(text));
            }
            for (kind, n) in s.errors {
                *report.errors.entry(kind).or_default() += n;
            }
            for (kind, n) in s.warnings {
                *report.warnings.entry(kind).or_default() += n;
            }
        }
        latencies.sort_unstable();
        report.latency = Latency::of_sorted(&latencies);
        report
    }

    pub fn attempted(&self) -> u64 {
        self.ok + self.failed
    }

    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
    }

    pub fn to_json(&self) -> Value {
        let latency = match &self.latency {
            Some(l) => json!({
                "p50": ms(l.p50),
                "p90": ms(l.p90),
                "p99": ms(l.p99),
                "max": ms(l.max),
            }),
            None => Value::Null,
        };
        let replies: serde_json::Map<String, Value> = self
            .replies
            .iter()
            .map(|(code, n)| (code.to_string(), json!(n)))
            .collect();
        let samples: serde_json::Map<String, Value> = self
            .samples
            .iter()
            .map(|(code, text)| (code.to_string(), json!(text)))
            .collect();
        json!({
            "server": self.server,
            "address": self.addr.to_string(),
            "sessions": self.sessions,
            "messages_requested": self.messages,
            "size": self.size,
            "rcpts": self.rcpts,
            "reuse": self.reuse,
            "pipelining": self.pipelining,
            "tls": self.tls,
            "auth": self.auth,
            "offered_rate": self.offered,
            "ok": self.ok,
            "failed": self.failed,
            "elapsed_s": (self.elapsed.as_secs_f64() * 1e6).round() / 1e6,
            "messages_per_s": (self.rate() * 100.0).round() / 100.0,
            "connections": self.connections,
            "connect_failures": self.connect_failures,
            "latency_ms": latency,
            "replies": replies,
            "reply_samples": samples,
            "errors": self.errors,
            "warnings": self.warnings,
        })
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "posthorn-loadgen: {}{}, {} sessions, {} messages x {} bytes, {} rcpt(s), {}, {}, tls {}{}{}",
            self.server,
            if self.addr.to_string() == self.server {
                String::new()
            } else {
                format!(" ({})", self.addr)
            },
            self.sessions,
            self.messages,
            self.size,
            self.rcpts,
            if self.reuse { "reuse" } else { "no reuse" },
            if self.pipelining { "pipelining" } else { "no pipelining" },
            self.tls,
            if self.auth { ", AUTH PLAIN" } else { "" },
            match self.offered {
                Some(rate) => format!(", offered {rate}/s"),
                None => String::new(),
            },
        );
        let _ = writeln!(
            out,
            "messages:    {} ok, {} failed in {:.3} s = {:.1} messages/s",
            self.ok,
            self.failed,
            self.elapsed.as_secs_f64(),
            self.rate()
        );
        let _ = writeln!(
            out,
            "connections: {} established, {} failed",
            self.connections, self.connect_failures
        );
        match &self.latency {
            Some(l) => {
                let _ = writeln!(
                    out,
                    "latency (MAIL to final reply): p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
                    ms(l.p50),
                    ms(l.p90),
                    ms(l.p99),
                    ms(l.max)
                );
            }
            None => {
                let _ = writeln!(out, "latency (MAIL to final reply): no message accepted");
            }
        }
        if !self.replies.is_empty() {
            let _ = writeln!(out, "replies not 2xx:");
            for (code, n) in &self.replies {
                match self.samples.get(code) {
                    Some(text) => {
                        let _ = writeln!(out, "  {code}: {n}  (e.g. {text:?})");
                    }
                    None => {
                        let _ = writeln!(out, "  {code}: {n}");
                    }
                }
            }
        }
        if !self.errors.is_empty() {
            let _ = writeln!(out, "errors:");
            for (kind, n) in &self.errors {
                let _ = writeln!(out, "  {kind}: {n}");
            }
        }
        if !self.warnings.is_empty() {
            let _ = writeln!(out, "warnings:");
            for (kind, n) in &self.warnings {
                let _ = writeln!(out, "  {kind}: {n} connection(s)");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        assert_eq!(Latency::of_sorted(&[]), None);
        assert_eq!(
            Latency::of_sorted(&[7]),
            Some(Latency {
                p50: 7,
                p90: 7,
                p99: 7,
                max: 7
            })
        );
        let v: Vec<u32> = (1..=1000).collect();
        assert_eq!(
            Latency::of_sorted(&v),
            Some(Latency {
                p50: 500,
                p90: 900,
                p99: 990,
                max: 1000
            })
        );
        let v: Vec<u32> = (1..=10).collect();
        let l = Latency::of_sorted(&v).unwrap();
        assert_eq!((l.p50, l.p90, l.p99, l.max), (5, 9, 10, 10));
    }

    #[test]
    fn milliseconds() {
        assert_eq!(ms(1234), 1.234);
        assert_eq!(ms(0), 0.0);
        assert_eq!(ms(1_500_000), 1500.0);
    }
}
