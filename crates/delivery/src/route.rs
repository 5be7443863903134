//! Routing: which hosts take mail for a domain (RFC 5321 §5.1, RFC 7505).
//!
//! [`Router::route`] asks DNS for the domain's MX records and then for the
//! A and AAAA records of each mail host, and answers either a [`Route`] (the
//! hosts to try, in order, each with its addresses) or a [`RouteError`] that
//! says whether the recipient should bounce ([`RouteError::Permanent`]) or be
//! retried later ([`RouteError::Temporary`]).
//!
//! The lookups and the decisions are kept apart: the DNS answers are first
//! reduced to an [`Answer`] (records, NODATA, NXDOMAIN, or a temporary
//! failure), and what they mean for delivery is decided by pure functions
//! ([`mx_targets`], [`order_exchanges`], [`assemble`], [`address_literal`],
//! [`normalize_domain`]) that are unit-tested without a name server; the
//! integration tests (`tests/route.rs`) run the whole thing against the
//! testkit's loopback DNS server.
//!
//! The rules:
//! - MX records are tried in preference order, lowest first. Hosts of equal
//!   preference come in random order (RFC 5321 §5.1 asks senders to spread
//!   load over them), so two calls may order a tie differently.
//! - A name listed twice keeps its lowest preference; at most
//!   [`MAX_MX_HOSTS`] hosts are looked up.
//! - No MX records (NODATA): the domain itself is the only host, preference 0
//!   (the "implicit MX").
//! - A null MX (RFC 7505: MX records whose exchanges are all `.`): permanent,
//!   "domain does not accept mail (null MX)". A `.` among real exchanges is
//!   ignored.
//! - NXDOMAIN for the domain: permanent, "domain does not exist".
//! - A host whose addresses cannot be found is left out of the route; if no
//!   host has an address, the failure is temporary when any host's lookup
//!   failed temporarily (a later try may find one), else permanent.
//! - SERVFAIL, REFUSED, timeouts and network errors are temporary.
//! - A host's addresses are its IPv4 addresses, then its IPv6 addresses,
//!   each in the order the name server gave them, without duplicates. If one
//!   of the two lookups fails, the host keeps the addresses of the other.
//! - [`Router::route`] filters nothing by address: a host resolving to
//!   loopback or a private range is returned as it is (the tests rely on
//!   loopback). The engine then applies [`external_only`] unless
//!   `[delivery] allow_private_destinations` is set: every internal
//!   address (`posthorn_types::net::is_internal`: loopback, private,
//!   link-local, CGNAT, benchmarking, documentation, multicast, reserved,
//!   and their IPv4-mapped, NAT64 and 6to4 forms) is dropped, a host left
//!   without addresses is dropped, and a route left without hosts is
//!   [`RouteError::InternalDestination`], a permanent failure. The engine
//!   connects only to the addresses of the route it was given, so what DNS
//!   says later cannot move a connection inside.
//! - An address literal (`[192.0.2.1]`, `[IPv6:2001:db8::1]`) is a single
//!   hop to that address, without DNS.
//! - Names are compared and returned in lower case, without the trailing
//!   dot; a domain with non-ASCII characters is looked up in its punycode
//!   form (UTS #46 via the `idna` crate).
//!
//! hickory-resolver 0.25 notes: it reports SERVFAIL (and REFUSED etc.) as
//! `ProtoErrorKind::NoRecordsFound` just like NODATA and NXDOMAIN, so the
//! response code inside that error is what tells them apart; its `attempts`
//! option counts *re*tries (0 means one try), which [`Router::new`]
//! translates from [`ResolverSettings::attempts`] (total tries).

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::Name;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{ResolveError, ResolveErrorKind, TokioResolver};
use rand::seq::SliceRandom;
use rand::Rng;
use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// The most MX hosts looked up for one domain (the lowest preferences
/// win). Postfix tries 5 addresses by default; 10 hosts leaves room.
pub const MAX_MX_HOSTS: usize = 10;

/// The resolver's cache: MX and address answers for this many names are
/// kept for their TTL, so a queue full of mail for one provider does not
/// ask again for every message.
const CACHE_SIZE: usize = 1024;

/// How DNS is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverSettings {
    /// The name servers to ask (each over UDP, and TCP for truncated
    /// answers). Empty: the name servers of `/etc/resolv.conf` (only
    /// those: its search list, `ndots`, `timeout` and `attempts` do not
    /// apply; every name is looked up fully qualified, and the two fields
    /// below rule). `/etc/hosts` is never read.
    pub nameservers: Vec<SocketAddr>,
    /// How long to wait for one name server's answer to one question.
    pub timeout: Duration,
    /// How many times a question is sent before giving up (at least one).
    pub attempts: usize,
}

impl Default for ResolverSettings {
    /// The system's name servers, 5 s per answer, 2 tries.
    fn default() -> Self {
        ResolverSettings {
            nameservers: Vec::new(),
            timeout: Duration::from_secs(5),
            attempts: 2,
        }
    }
}

/// Finds where mail for a domain goes. Cheap to clone (the resolver and its
/// cache are shared).
#[derive(Clone)]
pub struct Router {
    resolver: TokioResolver,
    /// The most one lookup may take, whatever hickory does: a backstop, as
    /// its own timeouts apply per name server and per try.
    deadline: Duration,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// The hosts to try for a domain, best first. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub hosts: Vec<Hop>,
}

/// One host to try, with its addresses (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// The host's name in lower case without the trailing dot (the domain
    /// itself for an implicit MX). For an address literal, the literal in
    /// brackets: `[192.0.2.1]`, `[IPv6:2001:db8::1]`.
    pub name: String,
    /// The MX preference (0 for an implicit MX and an address literal).
    pub preference: u16,
    /// IPv4 addresses first, then IPv6.
    pub addrs: Vec<IpAddr>,
}

/// Why there is no route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The domain cannot take mail, now or later: bounce.
    #[error("{0}")]
    Permanent(String),
    /// DNS could not answer now: defer and try again later.
    #[error("{0}")]
    Temporary(String),
    /// Every address found is internal (loopback, private, ...), where
    /// Posthorn does not deliver unless the operator allows it: bounce.
    /// The message names the domain and the addresses.
    #[error("{0}")]
    InternalDestination(String),
}

impl RouteError {
    /// Whether the recipient should bounce rather than be retried.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            RouteError::Permanent(_) | RouteError::InternalDestination(_)
        )
    }

    /// The explanation, without the kind.
    pub fn message(&self) -> &str {
        match self {
            RouteError::Permanent(m)
            | RouteError::Temporary(m)
            | RouteError::InternalDestination(m) => m,
        }
    }
}

/// The message of the permanent error for a null MX.
pub const NULL_MX: &str = "domain does not accept mail (null MX)";
/// The message of the permanent error for NXDOMAIN on the domain.
pub const NO_SUCH_DOMAIN: &str = "domain does not exist";

/// What one DNS question got, without hickory's types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<T> {
    /// The records of the asked type (never empty).
    Records(Vec<T>),
    /// The name exists without records of that type (NOERROR, no answers).
    NoData,
    /// The name does not exist.
    NxDomain,
    /// No usable answer now (SERVFAIL, REFUSED, timeout, network): the
    /// reason.
    Failed(String),
}

impl<T> Answer<T> {
    /// The records, none for every other answer.
    fn records(&self) -> &[T] {
        match self {
            Answer::Records(records) => records,
            _ => &[],
        }
    }

    fn failure(&self) -> Option<&str> {
        match self {
            Answer::Failed(reason) => Some(reason),
            _ => None,
        }
    }
}

/// Where the MX lookup says to look next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets<N> {
    /// These exchanges, as the MX records listed them (null MX entries
    /// removed, not yet ordered).
    Exchanges(Vec<(u16, N)>),
    /// No MX records: the domain itself, preference 0.
    Implicit,
}

/// What the lookups found for one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAnswers {
    pub name: String,
    pub preference: u16,
    pub v4: Answer<Ipv4Addr>,
    pub v6: Answer<Ipv6Addr>,
}

impl Router {
    /// A router asking `settings.nameservers`, or the name servers of
    /// `/etc/resolv.conf` when that list is empty. Fails (temporarily: a
    /// configuration that cannot be read now) when there are no name
    /// servers to ask.
    pub fn new(settings: &ResolverSettings) -> Result<Router, RouteError> {
        let config = if settings.nameservers.is_empty() {
            let (system, _system_opts) = hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| {
                    RouteError::Temporary(format!("cannot read the system's DNS settings: {e}"))
                })?;
            // Keep the name servers only: every name is fully qualified.
            ResolverConfig::from_parts(None, vec![], system.name_servers().to_vec())
        } else {
            let mut servers = Vec::with_capacity(settings.nameservers.len() * 2);
            for &addr in &settings.nameservers {
                servers.push(NameServerConfig::new(addr, Protocol::Udp));
                servers.push(NameServerConfig::new(addr, Protocol::Tcp));
            }
            ResolverConfig::from_parts(None, vec![], servers)
        };
        let server_count = config
            .name_servers()
            .iter()
            .map(|s| s.socket_addr)
            .collect::<HashSet<_>>()
            .len();
        let opts = resolver_options(settings);
        let resolver =
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
                .with_options(opts.clone())
                .build();
        Ok(Router {
            resolver,
            deadline: lookup_deadline(settings, server_count, opts.num_concurrent_reqs),
        })
    }

    /// Where mail for `domain` goes. `domain` may be in any case, with or
    /// without a trailing dot, with non-ASCII characters, or an address
    /// literal in brackets.
    ///
    /// It takes at most two lookup times (see [`ResolverSettings`]): the MX
    /// question, then the A and AAAA questions of every host at once. Call
    /// it inside a tokio runtime (the host lookups are spawned tasks).
    pub async fn route(&self, domain: &str) -> Result<Route, RouteError> {
        if let Some(literal) = address_literal(domain) {
            return literal;
        }
        let domain = normalize_domain(domain)?;
        let fqdn = to_name(&domain)?;

        let mx = self
            .lookup(self.resolver.mx_lookup(fqdn.clone()), |lookup| {
                lookup
                    .iter()
                    .map(|mx| (mx.preference(), mx.exchange().clone()))
                    .collect()
            })
            .await;
        let hosts: Vec<(u16, Name)> = match mx_targets(mx, |name: &Name| name.is_root())? {
            Targets::Implicit => vec![(0, fqdn)],
            Targets::Exchanges(exchanges) => {
                let named = exchanges
                    .into_iter()
                    .map(|(preference, name)| (preference, host_name(&name), name))
                    .collect();
                order_exchanges(named, &mut rand::thread_rng())
                    .into_iter()
                    .map(|(preference, _, name)| (preference, name))
                    .collect()
            }
        };

        let mut lookups = tokio::task::JoinSet::new();
        for (index, (preference, name)) in hosts.into_iter().enumerate() {
            let router = self.clone();
            lookups.spawn(async move { (index, router.host_answers(preference, name).await) });
        }
        let mut answers: Vec<Option<HostAnswers>> = vec![None; lookups.len()];
        while let Some(joined) = lookups.join_next().await {
            match joined {
                Ok((index, found)) => answers[index] = Some(found),
                Err(e) => return Err(RouteError::Temporary(format!("address lookup failed: {e}"))),
            }
        }
        let answers: Vec<HostAnswers> = answers.into_iter().flatten().collect();
        for skipped in answers
            .iter()
            .filter(|h| h.v4.records().is_empty() && h.v6.records().is_empty())
        {
            tracing::debug!(domain = %domain, host = %skipped.name, v4 = ?skipped.v4, v6 = ?skipped.v6, "mail host has no address");
        }
        assemble(answers)
    }

    /// The A and AAAA answers for one host, asked together.
    async fn host_answers(&self, preference: u16, name: Name) -> HostAnswers {
        let (v4, v6) = tokio::join!(
            self.lookup(self.resolver.ipv4_lookup(name.clone()), |lookup| {
                lookup.iter().map(|a| a.0).collect()
            }),
            self.lookup(self.resolver.ipv6_lookup(name.clone()), |lookup| {
                lookup.iter().map(|aaaa| aaaa.0).collect()
            }),
        );
        HostAnswers {
            name: host_name(&name),
            preference,
            v4,
            v6,
        }
    }

    /// One question, bounded by the deadline, reduced to an [`Answer`].
    async fn lookup<L, T>(
        &self,
        question: impl Future<Output = Result<L, ResolveError>>,
        records: impl FnOnce(&L) -> Vec<T>,
    ) -> Answer<T> {
        match tokio::time::timeout(self.deadline, question).await {
            Err(_) => Answer::Failed("DNS lookup timed out".to_string()),
            Ok(Err(e)) => classify(&e),
            Ok(Ok(found)) => {
                let records = records(&found);
                if records.is_empty() {
                    Answer::NoData
                } else {
                    Answer::Records(records)
                }
            }
        }
    }
}

fn resolver_options(settings: &ResolverSettings) -> ResolverOpts {
    let mut opts = ResolverOpts::default();
    opts.timeout = settings.timeout;
    // hickory counts retries.
    opts.attempts = settings.attempts.max(1) - 1;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.cache_size = CACHE_SIZE;
    opts.edns0 = true;
    opts.ndots = 0;
    opts
}

/// The backstop for one lookup: what hickory itself should take at worst
/// (servers asked `concurrent` at a time, each try waiting `timeout`), and
/// one timeout more.
fn lookup_deadline(settings: &ResolverSettings, servers: usize, concurrent: usize) -> Duration {
    let rounds = servers.max(1).div_ceil(concurrent.max(1));
    let tries = settings.attempts.max(1) * rounds + 1;
    settings
        .timeout
        .saturating_mul(u32::try_from(tries).unwrap_or(u32::MAX))
}

/// What a failed hickory lookup means.
fn classify<T>(error: &ResolveError) -> Answer<T> {
    let ResolveErrorKind::Proto(proto) = error.kind() else {
        return Answer::Failed(format!("DNS lookup failed: {error}"));
    };
    match proto.kind() {
        ProtoErrorKind::NoRecordsFound { response_code, .. } => match *response_code {
            ResponseCode::NoError => Answer::NoData,
            ResponseCode::NXDomain => Answer::NxDomain,
            ResponseCode::ServFail => Answer::Failed("DNS server failure (SERVFAIL)".to_string()),
            code => Answer::Failed(format!("DNS lookup failed ({code})")),
        },
        ProtoErrorKind::Timeout => Answer::Failed("DNS lookup timed out".to_string()),
        _ => Answer::Failed(format!("DNS lookup failed: {proto}")),
    }
}

/// What the MX answer means. `is_null` tells a null MX exchange (`.`).
pub fn mx_targets<N>(
    answer: Answer<(u16, N)>,
    is_null: impl Fn(&N) -> bool,
) -> Result<Targets<N>, RouteError> {
    match answer {
        Answer::NoData => Ok(Targets::Implicit),
        Answer::NxDomain => Err(RouteError::Permanent(NO_SUCH_DOMAIN.to_string())),
        Answer::Failed(reason) => Err(RouteError::Temporary(format!("MX lookup: {reason}"))),
        Answer::Records(records) => {
            let real: Vec<(u16, N)> = records.into_iter().filter(|(_, n)| !is_null(n)).collect();
            if real.is_empty() {
                Err(RouteError::Permanent(NULL_MX.to_string()))
            } else {
                Ok(Targets::Exchanges(real))
            }
        }
    }
}

/// The exchanges in the order to try them: by preference, ties shuffled
/// with `rng`; a name listed twice (compared by `key`, the lower-case name)
/// keeps its lowest preference; at most [`MAX_MX_HOSTS`].
pub fn order_exchanges<N>(
    mut exchanges: Vec<(u16, String, N)>,
    rng: &mut impl Rng,
) -> Vec<(u16, String, N)> {
    exchanges.shuffle(rng);
    // Stable: the shuffled order survives among equal preferences.
    exchanges.sort_by_key(|(preference, _, _)| *preference);
    let mut seen = HashSet::new();
    exchanges.retain(|(_, key, _)| seen.insert(key.clone()));
    exchanges.truncate(MAX_MX_HOSTS);
    exchanges
}

/// The route from what each host's lookups found, hosts in the order given.
pub fn assemble(hosts: Vec<HostAnswers>) -> Result<Route, RouteError> {
    let mut route = Vec::new();
    let mut problems = Vec::new();
    let mut temporary = false;
    for host in hosts {
        let mut addrs: Vec<IpAddr> = Vec::new();
        for addr in host
            .v4
            .records()
            .iter()
            .map(|&a| IpAddr::V4(a))
            .chain(host.v6.records().iter().map(|&a| IpAddr::V6(a)))
        {
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        if !addrs.is_empty() {
            route.push(Hop {
                name: host.name,
                preference: host.preference,
                addrs,
            });
            continue;
        }
        let problem = match (host.v4.failure(), host.v6.failure()) {
            (Some(reason), _) | (None, Some(reason)) => {
                temporary = true;
                reason.to_string()
            }
            (None, None) if host.v4 == Answer::NxDomain || host.v6 == Answer::NxDomain => {
                "host does not exist".to_string()
            }
            (None, None) => "no A or AAAA records".to_string(),
        };
        problems.push(format!("{}: {problem}", host.name));
    }
    if !route.is_empty() {
        return Ok(Route { hosts: route });
    }
    let message = format!("no address for any mail host ({})", problems.join("; "));
    Err(if temporary {
        RouteError::Temporary(message)
    } else {
        RouteError::Permanent(message)
    })
}

/// The most internal addresses a refusal lists; the rest are counted.
const MAX_LISTED: usize = 4;

/// `route` without internal addresses (see [`posthorn_types::net`]): each
/// host keeps its public addresses, a host without any is left out, and
/// when nothing is left the route is refused with
/// [`RouteError::InternalDestination`], naming `domain` and the addresses.
pub fn external_only(domain: &str, route: Route) -> Result<Route, RouteError> {
    let mut dropped: Vec<(IpAddr, posthorn_types::net::Internal)> = Vec::new();
    let mut hosts = Vec::with_capacity(route.hosts.len());
    for mut hop in route.hosts {
        hop.addrs
            .retain(|&ip| match posthorn_types::net::is_internal(ip) {
                Some(why) => {
                    dropped.push((ip, why));
                    false
                }
                None => true,
            });
        if !hop.addrs.is_empty() {
            hosts.push(hop);
        }
    }
    if !dropped.is_empty() {
        tracing::debug!(domain, dropped = ?dropped.iter().map(|(ip, _)| ip).collect::<Vec<_>>(),
            left = hosts.len(), "internal addresses left out of the route");
    }
    if !hosts.is_empty() {
        return Ok(Route { hosts });
    }
    let mut listed: Vec<String> = dropped
        .iter()
        .take(MAX_LISTED)
        .map(|(ip, why)| format!("{ip}: {why}"))
        .collect();
    if dropped.len() > MAX_LISTED {
        listed.push(format!("{} more", dropped.len() - MAX_LISTED));
    }
    let what = if domain.starts_with('[') {
        "is an internal address"
    } else {
        "resolves only to internal addresses"
    };
    Err(RouteError::InternalDestination(format!(
        "<{domain}> {what} ({}); Posthorn does not deliver to internal networks \
         ([delivery] allow_private_destinations)",
        listed.join(", ")
    )))
}

/// The route for an address literal (`[192.0.2.1]`, `[IPv6:2001:db8::1]`,
/// RFC 5321 §4.1.3): `None` when `domain` is not in brackets, a permanent
/// error when what is inside is not an address.
pub fn address_literal(domain: &str) -> Option<Result<Route, RouteError>> {
    domain.strip_prefix('[')?;
    let Some(addr) = posthorn_types::net::literal_ip(domain) else {
        return Some(Err(invalid_domain(domain)));
    };
    let name = match addr {
        IpAddr::V4(a) => format!("[{a}]"),
        IpAddr::V6(a) => format!("[IPv6:{a}]"),
    };
    Some(Ok(Route {
        hosts: vec![Hop {
            name,
            preference: 0,
            addrs: vec![addr],
        }],
    }))
}

/// The form a domain is looked up in: ASCII (punycode for non-ASCII
/// labels), lower case, no trailing dot. Refuses what cannot be a domain.
pub fn normalize_domain(domain: &str) -> Result<String, RouteError> {
    let trimmed = domain.strip_suffix('.').unwrap_or(domain);
    let ascii = if trimmed.is_ascii() {
        trimmed.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii(trimmed).map_err(|_| invalid_domain(domain))?
    };
    let valid = !ascii.is_empty()
        && ascii.len() <= 253
        && ascii.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if valid {
        Ok(ascii)
    } else {
        Err(invalid_domain(domain))
    }
}

fn invalid_domain(domain: &str) -> RouteError {
    RouteError::Permanent(format!("invalid domain {domain:?}"))
}

/// The fully qualified DNS name of a normalized domain.
fn to_name(domain: &str) -> Result<Name, RouteError> {
    let mut name = Name::from_ascii(domain).map_err(|_| invalid_domain(domain))?;
    name.set_fqdn(true);
    Ok(name)
}

/// A DNS name as a host name: lower case, no trailing dot.
fn host_name(name: &Name) -> String {
    let ascii = name.to_lowercase().to_ascii();
    ascii.strip_suffix('.').unwrap_or(&ascii).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::op::Query;
    use hickory_resolver::proto::rr::RecordType;
    use hickory_resolver::proto::ProtoError;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn host(
        name: &str,
        preference: u16,
        a: Answer<Ipv4Addr>,
        aaaa: Answer<Ipv6Addr>,
    ) -> HostAnswers {
        HostAnswers {
            name: name.to_string(),
            preference,
            v4: a,
            v6: aaaa,
        }
    }

    fn no_records(code: ResponseCode) -> ResolveError {
        ProtoError::from(ProtoErrorKind::NoRecordsFound {
            query: Box::new(Query::query(
                Name::from_ascii("x.test.").unwrap(),
                RecordType::MX,
            )),
            soa: None,
            ns: None,
            negative_ttl: None,
            response_code: code,
            trusted: true,
            authorities: None,
        })
        .into()
    }

    fn is_null(name: &&str) -> bool {
        *name == "."
    }

    #[test]
    fn errors_are_classified_by_response_code() {
        assert_eq!(
            classify::<()>(&no_records(ResponseCode::NoError)),
            Answer::NoData
        );
        assert_eq!(
            classify::<()>(&no_records(ResponseCode::NXDomain)),
            Answer::NxDomain
        );
        assert_eq!(
            classify::<()>(&no_records(ResponseCode::ServFail)),
            Answer::Failed("DNS server failure (SERVFAIL)".to_string())
        );
        assert!(matches!(
            classify::<()>(&no_records(ResponseCode::Refused)),
            Answer::Failed(_)
        ));
        let timeout: ResolveError = ProtoError::from(ProtoErrorKind::Timeout).into();
        assert_eq!(
            classify::<()>(&timeout),
            Answer::Failed("DNS lookup timed out".to_string())
        );
        let io: ResolveError =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused").into();
        assert!(matches!(classify::<()>(&io), Answer::Failed(_)));
        let msg = ResolveError::from("something");
        assert!(matches!(classify::<()>(&msg), Answer::Failed(_)));
    }

    #[test]
    fn mx_answers() {
        assert_eq!(
            mx_targets::<&str>(Answer::NoData, is_null),
            Ok(Targets::Implicit)
        );
        assert_eq!(
            mx_targets::<&str>(Answer::NxDomain, is_null),
            Err(RouteError::Permanent("domain does not exist".to_string()))
        );
        assert!(matches!(
            mx_targets::<&str>(Answer::Failed("x".into()), is_null),
            Err(RouteError::Temporary(_))
        ));
        assert_eq!(
            mx_targets(Answer::Records(vec![(0, ".")]), is_null),
            Err(RouteError::Permanent(
                "domain does not accept mail (null MX)".to_string()
            ))
        );
        // Several null MX records are still a null MX.
        assert_eq!(
            mx_targets(Answer::Records(vec![(0, "."), (10, ".")]), is_null),
            Err(RouteError::Permanent(NULL_MX.to_string()))
        );
        // A null MX beside real ones is ignored.
        assert_eq!(
            mx_targets(Answer::Records(vec![(0, "."), (10, "mx.test")]), is_null),
            Ok(Targets::Exchanges(vec![(10, "mx.test")]))
        );
    }

    #[test]
    fn exchanges_in_preference_order_ties_shuffled() {
        let input = || {
            vec![
                (20, "c".to_string(), ()),
                (10, "a".to_string(), ()),
                (10, "b".to_string(), ()),
                (5, "z".to_string(), ()),
                (30, "a".to_string(), ()),
            ]
        };
        let mut orders = HashSet::new();
        for seed in 0..64 {
            let ordered = order_exchanges(input(), &mut StdRng::seed_from_u64(seed));
            let names: Vec<(u16, String)> = ordered.into_iter().map(|(p, n, ())| (p, n)).collect();
            assert_eq!(names.len(), 4, "duplicate kept once: {names:?}");
            assert_eq!(names[0], (5, "z".to_string()));
            assert_eq!(names[3], (20, "c".to_string()));
            let tie: HashSet<_> = names[1..3].iter().cloned().collect();
            assert_eq!(
                tie,
                HashSet::from([(10, "a".to_string()), (10, "b".to_string())])
            );
            orders.insert(names);
        }
        assert_eq!(orders.len(), 2, "both orders of the tie occur");
    }

    #[test]
    fn at_most_max_mx_hosts() {
        let many: Vec<(u16, String, ())> = (0..30u16)
            .rev()
            .map(|i| (i, format!("mx{i}"), ()))
            .collect();
        let ordered = order_exchanges(many, &mut StdRng::seed_from_u64(1));
        assert_eq!(ordered.len(), MAX_MX_HOSTS);
        assert_eq!(ordered[0].1, "mx0");
        assert_eq!(ordered[MAX_MX_HOSTS - 1].0, (MAX_MX_HOSTS - 1) as u16);
    }

    #[test]
    fn assemble_keeps_order_and_skips_hosts_without_addresses() {
        let route = assemble(vec![
            host("mx1.test", 10, Answer::NxDomain, Answer::NxDomain),
            host(
                "mx2.test",
                20,
                Answer::Records(vec![v4("192.0.2.1"), v4("192.0.2.1"), v4("192.0.2.2")]),
                Answer::Records(vec![v6("2001:db8::1")]),
            ),
            host(
                "mx3.test",
                30,
                Answer::Failed("x".into()),
                Answer::Records(vec![v6("2001:db8::3")]),
            ),
        ])
        .unwrap();
        assert_eq!(
            route.hosts,
            vec![
                Hop {
                    name: "mx2.test".into(),
                    preference: 20,
                    addrs: vec![
                        IpAddr::V4(v4("192.0.2.1")),
                        IpAddr::V4(v4("192.0.2.2")),
                        IpAddr::V6(v6("2001:db8::1")),
                    ],
                },
                Hop {
                    name: "mx3.test".into(),
                    preference: 30,
                    addrs: vec![IpAddr::V6(v6("2001:db8::3"))],
                },
            ]
        );
    }

    #[test]
    fn assemble_without_any_address() {
        let permanent = assemble(vec![
            host("mx1.test", 10, Answer::NxDomain, Answer::NxDomain),
            host("mx2.test", 20, Answer::NoData, Answer::NoData),
        ])
        .unwrap_err();
        assert_eq!(
            permanent,
            RouteError::Permanent(
                "no address for any mail host (mx1.test: host does not exist; \
                 mx2.test: no A or AAAA records)"
                    .to_string()
            )
        );
        let temporary = assemble(vec![
            host("mx1.test", 10, Answer::NxDomain, Answer::NxDomain),
            host(
                "mx2.test",
                20,
                Answer::Failed("DNS server failure (SERVFAIL)".into()),
                Answer::NoData,
            ),
        ])
        .unwrap_err();
        assert!(!temporary.is_permanent());
        assert!(
            temporary.message().contains("mx2.test: DNS server failure"),
            "{temporary}"
        );
        assert!(assemble(vec![]).unwrap_err().is_permanent());
    }

    #[test]
    fn address_literals() {
        assert_eq!(address_literal("example.com"), None);
        let route = address_literal("[192.0.2.1]").unwrap().unwrap();
        assert_eq!(
            route.hosts,
            vec![Hop {
                name: "[192.0.2.1]".into(),
                preference: 0,
                addrs: vec![IpAddr::V4(v4("192.0.2.1"))],
            }]
        );
        let route = address_literal("[ipv6:2001:DB8:0::1]").unwrap().unwrap();
        assert_eq!(route.hosts[0].name, "[IPv6:2001:db8::1]");
        assert_eq!(route.hosts[0].addrs, vec![IpAddr::V6(v6("2001:db8::1"))]);
        for bad in [
            "[192.0.2.1",
            "[]",
            "[example.com]",
            "[2001:db8::1]",
            "[IPv6:192.0.2.1]",
            "[300.0.0.1]",
        ] {
            let err = address_literal(bad).unwrap().unwrap_err();
            assert!(err.is_permanent(), "{bad}: {err}");
        }
    }

    #[test]
    fn internal_addresses_are_left_out() {
        let hop = |name: &str, addrs: &[&str]| Hop {
            name: name.into(),
            preference: 10,
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        };
        // Public addresses stay, internal ones go, a host without any goes.
        let route = Route {
            hosts: vec![
                hop("mx1.test", &["127.0.0.1", "::1"]),
                hop(
                    "mx2.test",
                    &["10.0.0.1", "8.8.8.8", "64:ff9b::a00:1", "2606:4700::1"],
                ),
            ],
        };
        assert_eq!(
            external_only("a.test", route).unwrap().hosts,
            vec![hop("mx2.test", &["8.8.8.8", "2606:4700::1"])]
        );
        // Nothing left: refused, permanently, saying why.
        let route = Route {
            hosts: vec![hop("mx.a.test", &["127.0.0.1"])],
        };
        let err = external_only("a.test", route).unwrap_err();
        assert!(err.is_permanent());
        assert_eq!(
            err,
            RouteError::InternalDestination(
                "<a.test> resolves only to internal addresses (127.0.0.1: loopback); \
                 Posthorn does not deliver to internal networks \
                 ([delivery] allow_private_destinations)"
                    .into()
            )
        );
        let many = Route {
            hosts: vec![
                hop("mx1.test", &["10.0.0.1", "10.0.0.2", "169.254.169.254"]),
                hop("mx2.test", &["::ffff:127.0.0.1", "fd00::1", "198.18.0.1"]),
            ],
        };
        let err = external_only("b.test", many).unwrap_err();
        assert!(
            err.message().contains(
                "(10.0.0.1: private, 10.0.0.2: private, 169.254.169.254: link-local, \
                 ::ffff:127.0.0.1: loopback via IPv4-mapped, 2 more)"
            ),
            "{err}"
        );
        let literal = address_literal("[IPv6:::1]").unwrap().unwrap();
        let err = external_only("[IPv6:::1]", literal).unwrap_err();
        assert!(
            err.message()
                .starts_with("<[IPv6:::1]> is an internal address (::1: loopback)"),
            "{err}"
        );
        let public = address_literal("[8.8.8.8]").unwrap().unwrap();
        assert_eq!(external_only("[8.8.8.8]", public.clone()), Ok(public));
    }

    #[test]
    fn domains_are_normalized() {
        assert_eq!(normalize_domain("Example.COM.").unwrap(), "example.com");
        assert_eq!(
            normalize_domain("mail_in.example").unwrap(),
            "mail_in.example"
        );
        assert_eq!(
            normalize_domain("Bücher.example").unwrap(),
            "xn--bcher-kva.example"
        );
        assert_eq!(normalize_domain("ÄÖÜ.test.").unwrap(), "xn--4ca0bs.test");
        assert_eq!(
            normalize_domain("例え.テスト").unwrap(),
            "xn--r8jz45g.xn--zckzah"
        );
        for bad in [
            "",
            ".",
            "a..b",
            ".a",
            "a b.test",
            "a/b",
            &"x".repeat(64),
            &"a.".repeat(130),
        ] {
            assert!(normalize_domain(bad).unwrap_err().is_permanent(), "{bad:?}");
        }
    }

    #[test]
    fn host_names_are_lower_case_without_dot() {
        assert_eq!(
            host_name(&Name::from_ascii("MX1.Example.COM.").unwrap()),
            "mx1.example.com"
        );
        assert_eq!(host_name(&Name::from_ascii("mx.test").unwrap()), "mx.test");
    }

    #[test]
    fn options_and_deadline() {
        let settings = ResolverSettings {
            nameservers: vec![],
            timeout: Duration::from_secs(2),
            attempts: 3,
        };
        let opts = resolver_options(&settings);
        assert_eq!(opts.attempts, 2, "hickory counts retries");
        assert_eq!(opts.use_hosts_file, ResolveHosts::Never);
        assert_eq!(
            resolver_options(&ResolverSettings {
                attempts: 0,
                ..settings.clone()
            })
            .attempts,
            0
        );
        // One server: 3 tries and one timeout more.
        assert_eq!(lookup_deadline(&settings, 1, 2), Duration::from_secs(8));
        // Three servers asked two at a time: two rounds per try.
        assert_eq!(lookup_deadline(&settings, 3, 2), Duration::from_secs(14));
    }
}
