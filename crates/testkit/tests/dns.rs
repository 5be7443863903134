//! The loopback DNS server, asked by hickory-resolver configured the way the
//! delivery code will be: this one name server only, UDP with TCP fallback.

use hickory_resolver::config::{NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{ResolveError, TokioResolver};
use posthorn_testkit::dns::DnsServer;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

fn options() -> ResolverOpts {
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 1;
    opts.cache_size = 0;
    opts.use_hosts_file = ResolveHosts::Never;
    opts
}

fn resolver_with(dns: &DnsServer, opts: ResolverOpts) -> TokioResolver {
    let addr = dns.addr();
    let config = ResolverConfig::from_parts(
        None,
        vec![],
        NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true),
    );
    TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
        .with_options(opts)
        .build()
}

fn resolver(dns: &DnsServer) -> TokioResolver {
    resolver_with(dns, options())
}

async fn mx(resolver: &TokioResolver, domain: &str) -> Result<Vec<(u16, String)>, ResolveError> {
    let lookup = resolver.mx_lookup(domain).await?;
    let mut records: Vec<(u16, String)> = lookup
        .iter()
        .map(|mx| (mx.preference(), mx.exchange().to_ascii()))
        .collect();
    records.sort();
    Ok(records)
}

async fn a(resolver: &TokioResolver, host: &str) -> Result<Vec<Ipv4Addr>, ResolveError> {
    let lookup = resolver.ipv4_lookup(host).await?;
    let mut addrs: Vec<Ipv4Addr> = lookup.iter().map(|a| a.0).collect();
    addrs.sort();
    Ok(addrs)
}

/// Each TXT record's character-strings joined, sorted.
async fn txt(resolver: &TokioResolver, name: &str) -> Result<Vec<Vec<u8>>, ResolveError> {
    let lookup = resolver.txt_lookup(name).await?;
    let mut values: Vec<Vec<u8>> = lookup.iter().map(|t| t.txt_data().concat()).collect();
    values.sort();
    Ok(values)
}

fn response_code(err: &ResolveError) -> Option<ResponseCode> {
    match err.proto().map(|p| p.kind()) {
        Some(ProtoErrorKind::NoRecordsFound { response_code, .. }) => Some(*response_code),
        _ => None,
    }
}

#[tokio::test]
async fn mx_records_with_preferences_and_exchanges() {
    let dns = DnsServer::start();
    dns.set_mx(
        "example.com",
        &[(20, "MX2.example.com."), (10, "mx1.example.com")],
    );
    let r = resolver(&dns);
    let got = mx(&r, "example.com.").await.unwrap();
    assert_eq!(
        got,
        vec![
            (10, "mx1.example.com.".to_string()),
            // The exchange is answered as it was set: compare ignoring case.
            (20, "MX2.example.com.".to_string())
        ]
    );
    // Case and the trailing dot of the question do not matter.
    assert_eq!(mx(&r, "EXAMPLE.Com").await.unwrap(), got);
    assert!(dns
        .queries()
        .contains(&("example.com".to_string(), "MX".to_string())));
}

#[tokio::test]
async fn null_mx_is_an_exchange_of_root() {
    let dns = DnsServer::start();
    dns.set_mx("nomail.test", &[(0, ".")]);
    let r = resolver(&dns);
    let lookup = r.mx_lookup("nomail.test.").await.unwrap();
    let records: Vec<_> = lookup.iter().collect();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].preference(), 0);
    assert!(records[0].exchange().is_root());
    assert_eq!(records[0].exchange().to_ascii(), ".");
}

#[tokio::test]
async fn a_and_aaaa_records() {
    let dns = DnsServer::start();
    let v4 = [Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)];
    let v6 = [Ipv6Addr::LOCALHOST, "2001:db8::25".parse().unwrap()];
    dns.set_a("mx.example.net", &v4);
    dns.set_aaaa("mx.example.net", &v6);
    let r = resolver(&dns);

    assert_eq!(a(&r, "mx.example.net.").await.unwrap(), v4.to_vec());
    let mut got6: Vec<Ipv6Addr> = r
        .ipv6_lookup("mx.example.net.")
        .await
        .unwrap()
        .iter()
        .map(|a| a.0)
        .collect();
    got6.sort();
    let mut want6 = v6.to_vec();
    want6.sort();
    assert_eq!(got6, want6);

    let mut opts = options();
    opts.ip_strategy = hickory_resolver::config::LookupIpStrategy::Ipv4AndIpv6;
    let both = resolver_with(&dns, opts);
    let ips: Vec<_> = both
        .lookup_ip("mx.example.net.")
        .await
        .unwrap()
        .iter()
        .collect();
    assert_eq!(ips.len(), 4, "{ips:?}");
}

#[tokio::test]
async fn long_txt_value_is_split_and_joins_back() {
    let dns = DnsServer::start();
    let key: String = std::iter::repeat("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A")
        .flat_map(|s| s.chars())
        .take(400)
        .collect();
    let value = format!("v=DKIM1; k=rsa; p={key}");
    dns.set_txt("sel._domainkey.example.com", &[&value]);
    dns.set_txt("example.com", &["v=spf1 -all", "other"]);
    let r = resolver(&dns);

    let lookup = r.txt_lookup("sel._domainkey.example.com.").await.unwrap();
    let records: Vec<_> = lookup.iter().collect();
    assert_eq!(records.len(), 1, "one record");
    let parts: Vec<usize> = records[0].txt_data().iter().map(|p| p.len()).collect();
    assert_eq!(parts, vec![255, value.len() - 255]);
    assert_eq!(records[0].txt_data().concat(), value.as_bytes());

    assert_eq!(
        txt(&r, "example.com.").await.unwrap(),
        vec![b"other".to_vec(), b"v=spf1 -all".to_vec()]
    );
}

#[tokio::test]
async fn nxdomain_and_nodata_are_distinguishable() {
    let dns = DnsServer::start();
    dns.set_a("host.example.org", &[Ipv4Addr::new(127, 0, 0, 9)]);
    let r = resolver(&dns);

    let nx = mx(&r, "missing.example.org.").await.unwrap_err();
    assert!(nx.is_nx_domain(), "{nx:?}");
    assert_eq!(response_code(&nx), Some(ResponseCode::NXDomain));

    let nodata = mx(&r, "host.example.org.").await.unwrap_err();
    assert!(nodata.is_no_records_found(), "{nodata:?}");
    assert!(!nodata.is_nx_domain(), "{nodata:?}");
    assert_eq!(response_code(&nodata), Some(ResponseCode::NoError));

    // A parent of a set name exists (empty non-terminal): NODATA too.
    let ent = mx(&r, "example.org.").await.unwrap_err();
    assert!(!ent.is_nx_domain(), "{ent:?}");
    assert_eq!(response_code(&ent), Some(ResponseCode::NoError));

    // A name set with no MX records is NODATA for MX.
    dns.set_mx("empty.example.org", &[]);
    let empty = mx(&r, "empty.example.org.").await.unwrap_err();
    assert_eq!(response_code(&empty), Some(ResponseCode::NoError));
}

#[tokio::test]
async fn servfail_is_told_by_its_response_code() {
    let dns = DnsServer::start();
    dns.set_mx("flaky.test", &[(10, "mx.flaky.test")]);
    dns.fail("flaky.test");
    let r = resolver(&dns);
    let err = mx(&r, "flaky.test.").await.unwrap_err();
    assert!(!err.is_nx_domain(), "{err:?}");
    // hickory 0.25 reports SERVFAIL as `NoRecordsFound` too: only the
    // response code tells a temporary failure from NODATA.
    assert!(err.is_no_records_found(), "{err:?}");
    assert_eq!(response_code(&err), Some(ResponseCode::ServFail), "{err:?}");

    dns.remove("flaky.test");
    dns.set_mx("flaky.test", &[(10, "mx.flaky.test")]);
    assert_eq!(mx(&r, "flaky.test.").await.unwrap().len(), 1);
}

#[tokio::test]
async fn changes_are_seen_on_the_next_lookup() {
    let dns = DnsServer::start();
    let one = Ipv4Addr::new(127, 0, 0, 1);
    let two = Ipv4Addr::new(127, 0, 0, 2);
    // One resolver without a cache, one with hickory's default cache: TTL 0
    // keeps both current.
    let mut cached_opts = options();
    cached_opts.cache_size = ResolverOpts::default().cache_size;
    for r in [resolver(&dns), resolver_with(&dns, cached_opts)] {
        dns.set_a("moving.test", &[one]);
        assert_eq!(a(&r, "moving.test.").await.unwrap(), vec![one]);
        dns.set_a("moving.test", &[two]);
        assert_eq!(a(&r, "moving.test.").await.unwrap(), vec![two]);
        dns.remove("moving.test");
        assert!(a(&r, "moving.test.").await.unwrap_err().is_nx_domain());
        dns.set_mx("moving.test", &[(5, "mx.moving.test")]);
        let nodata = a(&r, "moving.test.").await.unwrap_err();
        assert!(!nodata.is_nx_domain(), "{nodata:?}");
        dns.set_a("moving.test", &[one]);
        assert_eq!(a(&r, "moving.test.").await.unwrap(), vec![one]);
        dns.remove("moving.test");
    }
}

#[tokio::test]
async fn large_answers_fall_back_to_tcp() {
    let dns = DnsServer::start();
    let values: Vec<String> = (0..10).map(|i| format!("{i}{}", "x".repeat(400))).collect();
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    dns.set_txt("big.test", &refs);
    for edns0 in [false, true] {
        dns.clear_queries();
        let mut opts = options();
        opts.edns0 = edns0;
        let r = resolver_with(&dns, opts);
        let got = txt(&r, "big.test.").await.unwrap();
        let mut want: Vec<Vec<u8>> = values.iter().map(|v| v.as_bytes().to_vec()).collect();
        want.sort();
        assert_eq!(got, want);
        // Asked over UDP (truncated), then again over TCP.
        assert_eq!(
            dns.queries(),
            vec![
                ("big.test".to_string(), "TXT".to_string()),
                ("big.test".to_string(), "TXT".to_string())
            ]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_lookups() {
    let dns = DnsServer::start();
    for i in 0..50u8 {
        dns.set_a(&format!("h{i}.many.test"), &[Ipv4Addr::new(127, 0, 1, i)]);
        dns.set_mx(
            &format!("d{i}.many.test"),
            &[(10, &format!("h{i}.many.test"))],
        );
    }
    let r = resolver(&dns);
    let mut tasks = tokio::task::JoinSet::new();
    for round in 0..4 {
        for i in 0..50u8 {
            let r = r.clone();
            tasks.spawn(async move {
                if round % 2 == 0 {
                    let got = a(&r, &format!("h{i}.many.test.")).await.unwrap();
                    assert_eq!(got, vec![Ipv4Addr::new(127, 0, 1, i)]);
                } else {
                    let got = mx(&r, &format!("d{i}.many.test.")).await.unwrap();
                    assert_eq!(got, vec![(10, format!("h{i}.many.test."))]);
                }
            });
        }
    }
    let mut done = 0;
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
        done += 1;
    }
    assert_eq!(done, 200);
    assert_eq!(dns.queries().len(), 200);
}

/// Usable from a plain test, and it stops listening when dropped.
#[test]
fn plain_test_and_stop_on_drop() {
    let dns = DnsServer::start();
    let addr = dns.addr();
    assert!(addr.ip().is_loopback());
    dns.set_a("plain.test", &[Ipv4Addr::new(127, 0, 0, 7)]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let got = runtime.block_on(async { a(&resolver(&dns), "plain.test.").await.unwrap() });
    assert_eq!(got, vec![Ipv4Addr::new(127, 0, 0, 7)]);
    assert_eq!(
        dns.queries(),
        vec![("plain.test".to_string(), "A".to_string())]
    );

    assert!(std::net::TcpStream::connect(addr).is_ok());
    drop(dns);
    assert!(std::net::TcpStream::connect(addr).is_err());
}
