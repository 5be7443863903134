//! The domain check: look up the TXT records a domain should publish and
//! say, per record, whether it is found, missing or different.
//!
//! The lookups go to `[delivery] nameservers` when set (the same servers
//! delivery asks), else to the name servers of `/etc/resolv.conf`. A fresh
//! resolver is made per check, so a record just published is seen at once
//! (nothing negative is cached from a previous check). How the answers
//! compare with what is expected is decided by pure functions, unit-tested
//! below.

use crate::dkim::{Purpose, TxtRecord};
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::Name;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{ResolveError, ResolveErrorKind, TokioResolver};
use std::net::SocketAddr;
use std::time::Duration;

/// How long one name server gets for one answer.
const TIMEOUT: Duration = Duration::from_secs(3);
/// The most a whole check may take.
const DEADLINE: Duration = Duration::from_secs(10);

/// What DNS said about one name's TXT records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxtAnswer {
    /// The records, each with its strings joined.
    Records(Vec<String>),
    /// NXDOMAIN or no TXT records.
    Nothing,
    /// SERVFAIL, a timeout, a network error: nothing can be said.
    Failed(String),
}

/// How a published record compares with the expected one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Found,
    Missing,
    Different,
    /// The lookup failed (SERVFAIL, timeout): try again.
    Unresolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Found => "found",
            Status::Missing => "missing",
            Status::Different => "different",
            Status::Unresolved => "unresolved",
        }
    }
}

/// The verdict on one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub status: Status,
    /// The records of this kind published at the name.
    pub published: Vec<String>,
    /// What to do, or why this status.
    pub detail: String,
}

fn resolver(nameservers: &[SocketAddr]) -> Result<TokioResolver, String> {
    let config = if nameservers.is_empty() {
        let (system, _) = hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| format!("cannot read the system's DNS settings: {e}"))?;
        ResolverConfig::from_parts(None, vec![], system.name_servers().to_vec())
    } else {
        let mut servers = Vec::with_capacity(nameservers.len() * 2);
        for &addr in nameservers {
            servers.push(NameServerConfig::new(addr, Protocol::Udp));
            servers.push(NameServerConfig::new(addr, Protocol::Tcp));
        }
        ResolverConfig::from_parts(None, vec![], servers)
    };
    let mut opts = ResolverOpts::default();
    opts.timeout = TIMEOUT;
    opts.attempts = 1;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.edns0 = true;
    opts.ndots = 0;
    Ok(
        TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
            .with_options(opts)
            .build(),
    )
}

fn classify(error: &ResolveError) -> TxtAnswer {
    let ResolveErrorKind::Proto(proto) = error.kind() else {
        return TxtAnswer::Failed(format!("DNS lookup failed: {error}"));
    };
    match proto.kind() {
        ProtoErrorKind::NoRecordsFound { response_code, .. } => match *response_code {
            ResponseCode::NoError | ResponseCode::NXDomain => TxtAnswer::Nothing,
            ResponseCode::ServFail => {
                TxtAnswer::Failed("DNS server failure (SERVFAIL)".to_string())
            }
            code => TxtAnswer::Failed(format!("DNS lookup failed ({code})")),
        },
        ProtoErrorKind::Timeout => TxtAnswer::Failed("DNS lookup timed out".to_string()),
        _ => TxtAnswer::Failed(format!("DNS lookup failed: {proto}")),
    }
}

async fn txt(resolver: &TokioResolver, name: &str) -> TxtAnswer {
    let fqdn = match Name::from_ascii(format!("{}.", name.trim_end_matches('.'))) {
        Ok(n) => n,
        Err(e) => return TxtAnswer::Failed(format!("{name:?} is not a DNS name: {e}")),
    };
    match tokio::time::timeout(DEADLINE, resolver.txt_lookup(fqdn)).await {
        Err(_) => TxtAnswer::Failed("DNS lookup timed out".to_string()),
        Ok(Err(e)) => classify(&e),
        Ok(Ok(found)) => {
            let records: Vec<String> = found
                .iter()
                .map(|t| {
                    let bytes: Vec<u8> = t
                        .txt_data()
                        .iter()
                        .flat_map(|s| s.iter().copied())
                        .collect();
                    String::from_utf8_lossy(&bytes).into_owned()
                })
                .collect();
            if records.is_empty() {
                TxtAnswer::Nothing
            } else {
                TxtAnswer::Records(records)
            }
        }
    }
}

/// Look up every record (at once) and judge each; `hostname` is the name
/// the SPF record should authorize.
pub async fn check(
    nameservers: &[SocketAddr],
    expected: &[TxtRecord],
    hostname: &str,
) -> Vec<Verdict> {
    let resolver = match resolver(nameservers) {
        Ok(r) => r,
        Err(e) => {
            return expected
                .iter()
                .map(|_| Verdict {
                    status: Status::Unresolved,
                    published: vec![],
                    detail: e.clone(),
                })
                .collect()
        }
    };
    let lookups = expected.iter().map(|r| {
        let resolver = resolver.clone();
        let name = r.name.clone();
        async move { txt(&resolver, &name).await }
    });
    let answers = futures_join_all(lookups).await;
    expected
        .iter()
        .zip(answers)
        .map(|(r, a)| judge(r, &a, hostname))
        .collect()
}

/// Run futures concurrently, answers in order (without a futures crate).
async fn futures_join_all<F: std::future::Future<Output = TxtAnswer> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<TxtAnswer> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(
            h.await
                .unwrap_or_else(|e| TxtAnswer::Failed(format!("DNS lookup task failed: {e}"))),
        );
    }
    out
}

/// `tag=value` pairs of a DKIM or DMARC record, names lowercased, values
/// trimmed.
fn tags(record: &str) -> Vec<(String, String)> {
    record
        .split(';')
        .filter_map(|t| {
            let (k, v) = t.split_once('=')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect()
}

fn tag<'a>(tags: &'a [(String, String)], name: &str) -> Option<&'a str> {
    tags.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A tag list in one spelling: `a=1; b=2`, no empty tags.
fn normalize_tags(record: &str) -> String {
    tags(record)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// How a record compares with what DNS answered.
pub fn judge(expected: &TxtRecord, answer: &TxtAnswer, hostname: &str) -> Verdict {
    let records = match answer {
        TxtAnswer::Failed(why) => {
            return Verdict {
                status: Status::Unresolved,
                published: vec![],
                detail: format!("{why}; try again later"),
            }
        }
        TxtAnswer::Nothing => vec![],
        TxtAnswer::Records(r) => r.clone(),
    };
    match expected.purpose {
        Purpose::Dkim => judge_dkim(expected, records),
        Purpose::Spf => judge_spf(expected, records, hostname),
        Purpose::Dmarc => judge_dmarc(expected, records),
    }
}

fn verdict(status: Status, published: Vec<String>, detail: impl Into<String>) -> Verdict {
    Verdict {
        status,
        published,
        detail: detail.into(),
    }
}

fn judge_dkim(expected: &TxtRecord, records: Vec<String>) -> Verdict {
    let want = tags(&expected.value);
    let want_p = tag(&want, "p").unwrap_or_default();
    let want_k = tag(&want, "k").unwrap_or("rsa");
    if records.is_empty() {
        return verdict(
            Status::Missing,
            records,
            "no DKIM key is published: receivers cannot verify the signatures; publish the expected record",
        );
    }
    let matches = records.iter().any(|r| {
        let t = tags(r);
        let p: String = tag(&t, "p")
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let k = tag(&t, "k").unwrap_or("rsa");
        p == want_p && k.eq_ignore_ascii_case(want_k)
    });
    if matches {
        verdict(Status::Found, records, "the DKIM key is published")
    } else {
        verdict(
            Status::Different,
            records,
            "a record is published but not with this domain's key: signatures will fail; replace it with the expected record",
        )
    }
}

fn is_spf(record: &str) -> bool {
    let lower = record.trim_start().to_ascii_lowercase();
    lower == "v=spf1" || lower.starts_with("v=spf1 ")
}

fn judge_spf(expected: &TxtRecord, records: Vec<String>, hostname: &str) -> Verdict {
    let spf: Vec<String> = records.into_iter().filter(|r| is_spf(r)).collect();
    match spf.len() {
        0 => verdict(
            Status::Missing,
            spf,
            "no SPF record: publish the expected one (or add a:HOST to your own)",
        ),
        1 => {
            let host = hostname.to_ascii_lowercase();
            let normalized = |s: &str| {
                s.split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .to_ascii_lowercase()
            };
            let names_us = normalized(&spf[0]).split(' ').any(|term| {
                let term = term.trim_start_matches(['+', '~', '?']);
                term == format!("a:{host}") || term == format!("include:{host}")
            });
            if normalized(&spf[0]) == normalized(&expected.value) || names_us {
                verdict(Status::Found, spf, format!("the SPF record authorizes {hostname}"))
            } else {
                verdict(
                    Status::Different,
                    spf,
                    format!("the SPF record does not name {hostname}: add a:{hostname} before its all term"),
                )
            }
        }
        _ => verdict(
            Status::Different,
            spf,
            "several SPF records are published: receivers treat that as an error (RFC 7208 permerror); merge them into one",
        ),
    }
}

fn judge_dmarc(expected: &TxtRecord, records: Vec<String>) -> Verdict {
    let dmarc: Vec<String> = records
        .into_iter()
        .filter(|r| tag(&tags(r), "v").is_some_and(|v| v.eq_ignore_ascii_case("DMARC1")))
        .collect();
    match dmarc.len() {
        0 => verdict(
            Status::Missing,
            dmarc,
            "no DMARC policy: publish the expected (monitoring) record or your own",
        ),
        1 if normalize_tags(&dmarc[0]).eq_ignore_ascii_case(&normalize_tags(&expected.value)) => {
            verdict(Status::Found, dmarc, "the DMARC record is published")
        }
        1 => verdict(
            Status::Different,
            dmarc,
            "another DMARC policy is published; keep it if it is yours (the expected one is only a suggestion)",
        ),
        _ => verdict(
            Status::Different,
            dmarc,
            "several DMARC records are published: receivers then ignore them all; keep one",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dkim::records;

    fn rec(purpose: Purpose) -> TxtRecord {
        records("example.com", "posthorn", "QUJD", "mx.example.net")
            .into_iter()
            .find(|r| r.purpose == purpose)
            .unwrap()
    }

    fn status(purpose: Purpose, answer: TxtAnswer) -> Status {
        judge(&rec(purpose), &answer, "mx.example.net").status
    }

    fn found(r: &[&str]) -> TxtAnswer {
        TxtAnswer::Records(r.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn dkim_compares_the_key_not_the_spelling() {
        use Purpose::Dkim;
        assert_eq!(status(Dkim, TxtAnswer::Nothing), Status::Missing);
        assert_eq!(
            status(Dkim, TxtAnswer::Failed("x".into())),
            Status::Unresolved
        );
        assert_eq!(
            status(Dkim, found(&["v=DKIM1; k=rsa; p=QUJD"])),
            Status::Found
        );
        assert_eq!(status(Dkim, found(&["v=DKIM1;p=QU JD"])), Status::Found);
        assert_eq!(
            status(Dkim, found(&["v=DKIM1; k=rsa; p=WFla"])),
            Status::Different
        );
        assert_eq!(
            status(Dkim, found(&["v=DKIM1; k=ed25519; p=QUJD"])),
            Status::Different
        );
        assert_eq!(status(Dkim, found(&["v=DKIM1; p="])), Status::Different);
    }

    #[test]
    fn spf_must_be_one_record_naming_this_host() {
        use Purpose::Spf;
        assert_eq!(
            status(Spf, found(&["google-site-verification=x"])),
            Status::Missing
        );
        assert_eq!(
            status(Spf, found(&["v=spf1  a:MX.example.net ~all"])),
            Status::Found
        );
        assert_eq!(
            status(
                Spf,
                found(&["v=spf1 include:_spf.google.com a:mx.example.net -all"])
            ),
            Status::Found
        );
        assert_eq!(status(Spf, found(&["v=spf1 -all"])), Status::Different);
        assert_eq!(
            status(Spf, found(&["v=spf1 a:mx.example.net ~all", "v=spf1 -all"])),
            Status::Different
        );
    }

    #[test]
    fn dmarc_equal_other_or_missing() {
        use Purpose::Dmarc;
        assert_eq!(status(Dmarc, TxtAnswer::Nothing), Status::Missing);
        assert_eq!(
            status(
                Dmarc,
                found(&["v=DMARC1;p=none;rua=mailto:dmarc@example.com"])
            ),
            Status::Found
        );
        assert_eq!(
            status(Dmarc, found(&["v=DMARC1; p=reject"])),
            Status::Different
        );
    }
}
