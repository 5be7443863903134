//! `Router` against a real DNS server on loopback (`posthorn_testkit::dns`).

use posthorn_delivery::route::{Hop, ResolverSettings, Route, RouteError, Router};
use posthorn_testkit::dns::DnsServer;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

fn settings(nameservers: Vec<SocketAddr>) -> ResolverSettings {
    ResolverSettings {
        nameservers,
        timeout: Duration::from_millis(500),
        attempts: 2,
    }
}

fn router(dns: &DnsServer) -> Router {
    Router::new(&settings(vec![dns.addr()])).unwrap()
}

fn ip4(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

fn ip6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn hop(name: &str, preference: u16, addrs: &[IpAddr]) -> Hop {
    Hop {
        name: name.to_string(),
        preference,
        addrs: addrs.to_vec(),
    }
}

fn names(route: &Route) -> Vec<&str> {
    route.hosts.iter().map(|h| h.name.as_str()).collect()
}

#[tokio::test]
async fn mx_hosts_in_preference_order_with_their_addresses() {
    let dns = DnsServer::start();
    dns.set_mx(
        "example.com",
        &[
            (20, "mx2.example.com"),
            (10, "mx1.example.com"),
            (30, "mx3.example.net"),
        ],
    );
    dns.set_a("mx1.example.com", &[ip4(11), ip4(12)]);
    dns.set_aaaa("mx1.example.com", &[ip6("2001:db8::11")]);
    dns.set_aaaa("mx2.example.com", &[ip6("2001:db8::21")]);
    dns.set_a("mx3.example.net", &[ip4(31)]);

    let route = router(&dns).route("example.com").await.unwrap();
    assert_eq!(
        route.hosts,
        vec![
            hop(
                "mx1.example.com",
                10,
                &[ip4(11).into(), ip4(12).into(), ip6("2001:db8::11").into()]
            ),
            hop("mx2.example.com", 20, &[ip6("2001:db8::21").into()]),
            hop("mx3.example.net", 30, &[ip4(31).into()]),
        ]
    );
    let asked: HashSet<_> = dns.queries().into_iter().collect();
    for (name, rtype) in [
        ("example.com", "MX"),
        ("mx1.example.com", "A"),
        ("mx1.example.com", "AAAA"),
        ("mx3.example.net", "AAAA"),
    ] {
        assert!(
            asked.contains(&(name.to_string(), rtype.to_string())),
            "{asked:?}"
        );
    }
}

#[tokio::test]
async fn equal_preferences_are_all_kept_ahead_of_worse_ones() {
    let dns = DnsServer::start();
    dns.set_mx(
        "tie.test",
        &[
            (10, "a.tie.test"),
            (10, "b.tie.test"),
            (5, "first.tie.test"),
            (20, "last.tie.test"),
        ],
    );
    for (i, host) in ["a", "b", "first", "last"].iter().enumerate() {
        dns.set_a(&format!("{host}.tie.test"), &[ip4(i as u8 + 1)]);
    }
    let r = router(&dns);
    let mut middles = HashSet::new();
    for _ in 0..30 {
        let route = r.route("tie.test").await.unwrap();
        let got = names(&route);
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], "first.tie.test");
        assert_eq!(got[3], "last.tie.test");
        assert_eq!(
            got[1..3].iter().copied().collect::<HashSet<_>>(),
            HashSet::from(["a.tie.test", "b.tie.test"])
        );
        middles.insert(got[1].to_string());
    }
    // Ties are shuffled (RFC 5321 §5.1): both orders turn up in 30 tries
    // (failing by chance with probability 2^-29).
    assert_eq!(middles.len(), 2, "{middles:?}");
}

#[tokio::test]
async fn a_host_that_does_not_resolve_is_skipped() {
    let dns = DnsServer::start();
    dns.set_mx(
        "skip.test",
        &[
            (10, "gone.skip.test"),
            (20, "broken.skip.test"),
            (30, "ok.skip.test"),
        ],
    );
    // gone.skip.test: NXDOMAIN; broken.skip.test: SERVFAIL.
    dns.set_a("broken.skip.test", &[ip4(2)]);
    dns.fail("broken.skip.test");
    dns.set_a("ok.skip.test", &[ip4(3)]);

    let route = router(&dns).route("skip.test").await.unwrap();
    assert_eq!(route.hosts, vec![hop("ok.skip.test", 30, &[ip4(3).into()])]);
}

#[tokio::test]
async fn no_host_with_an_address() {
    let dns = DnsServer::start();
    let r = router(&dns);

    // Every host missing or without addresses: permanent.
    dns.set_mx(
        "none.test",
        &[(10, "gone.none.test"), (20, "bare.none.test")],
    );
    dns.set_txt("bare.none.test", &["exists, no address"]);
    let err = r.route("none.test").await.unwrap_err();
    assert_eq!(
        err,
        RouteError::Permanent(
            "no address for any mail host (gone.none.test: host does not exist; \
             bare.none.test: no A or AAAA records)"
                .to_string()
        )
    );

    // One of them failing temporarily: temporary, a later try may work.
    dns.set_a("flaky.none.test", &[ip4(9)]);
    dns.fail("flaky.none.test");
    dns.set_mx(
        "none.test",
        &[(10, "gone.none.test"), (20, "flaky.none.test")],
    );
    let err = r.route("none.test").await.unwrap_err();
    assert!(matches!(err, RouteError::Temporary(_)), "{err:?}");
    assert!(err.to_string().contains("flaky.none.test"), "{err}");
    assert!(err.to_string().contains("SERVFAIL"), "{err}");
}

#[tokio::test]
async fn without_mx_the_domain_itself_is_the_host() {
    let dns = DnsServer::start();
    dns.set_a("direct.test", &[ip4(5)]);
    dns.set_aaaa("direct.test", &[Ipv6Addr::LOCALHOST]);
    let r = router(&dns);
    let route = r.route("direct.test").await.unwrap();
    assert_eq!(
        route.hosts,
        vec![hop(
            "direct.test",
            0,
            &[ip4(5).into(), Ipv6Addr::LOCALHOST.into()]
        )]
    );

    // Only AAAA.
    dns.set_aaaa("six.test", &[ip6("2001:db8::6")]);
    let route = r.route("six.test").await.unwrap();
    assert_eq!(
        route.hosts,
        vec![hop("six.test", 0, &[ip6("2001:db8::6").into()])]
    );

    // Exists, but neither MX nor address: permanent.
    dns.set_txt("noaddr.test", &["v=spf1 -all"]);
    let err = r.route("noaddr.test").await.unwrap_err();
    assert!(err.is_permanent(), "{err:?}");
    assert!(err.to_string().contains("noaddr.test"), "{err}");

    // An empty non-terminal (a name exists below it) has no MX either.
    dns.set_a("www.parent.test", &[ip4(6)]);
    assert!(r.route("parent.test").await.unwrap_err().is_permanent());
}

#[tokio::test]
async fn null_mx_bounces() {
    let dns = DnsServer::start();
    dns.set_mx("nomail.test", &[(0, ".")]);
    // Its addresses do not matter: a null MX means no mail.
    dns.set_a("nomail.test", &[ip4(1)]);
    let err = router(&dns).route("nomail.test").await.unwrap_err();
    assert_eq!(
        err,
        RouteError::Permanent("domain does not accept mail (null MX)".to_string())
    );
    // Not a single A or AAAA question was needed.
    assert_eq!(
        dns.queries(),
        vec![("nomail.test".to_string(), "MX".to_string())]
    );
}

#[tokio::test]
async fn a_null_mx_beside_real_ones_is_ignored() {
    let dns = DnsServer::start();
    dns.set_mx("mixed.test", &[(0, "."), (10, "mx.mixed.test")]);
    dns.set_a("mx.mixed.test", &[ip4(7)]);
    let route = router(&dns).route("mixed.test").await.unwrap();
    assert_eq!(
        route.hosts,
        vec![hop("mx.mixed.test", 10, &[ip4(7).into()])]
    );
}

#[tokio::test]
async fn nxdomain_bounces() {
    let dns = DnsServer::start();
    dns.set_a("other.test", &[ip4(1)]);
    let err = router(&dns).route("missing.test").await.unwrap_err();
    assert_eq!(
        err,
        RouteError::Permanent("domain does not exist".to_string())
    );
}

#[tokio::test]
async fn servfail_defers_and_is_not_remembered() {
    let dns = DnsServer::start();
    dns.set_mx("flaky.test", &[(10, "mx.flaky.test")]);
    dns.set_a("mx.flaky.test", &[ip4(8)]);
    dns.fail("flaky.test");
    let r = router(&dns);
    let err = r.route("flaky.test").await.unwrap_err();
    assert!(matches!(err, RouteError::Temporary(_)), "{err:?}");
    assert!(err.to_string().contains("SERVFAIL"), "{err}");

    // Once the server answers again, so does the router (nothing cached).
    dns.remove("flaky.test");
    dns.set_mx("flaky.test", &[(10, "mx.flaky.test")]);
    let route = r.route("flaky.test").await.unwrap();
    assert_eq!(names(&route), vec!["mx.flaky.test"]);
}

#[tokio::test]
async fn changed_records_are_seen_on_the_next_route() {
    let dns = DnsServer::start();
    dns.set_mx("moving.test", &[(10, "one.moving.test")]);
    dns.set_a("one.moving.test", &[ip4(1)]);
    dns.set_a("two.moving.test", &[ip4(2)]);
    let r = router(&dns);
    assert_eq!(
        names(&r.route("moving.test").await.unwrap()),
        vec!["one.moving.test"]
    );
    dns.set_mx("moving.test", &[(10, "two.moving.test")]);
    assert_eq!(
        names(&r.route("moving.test").await.unwrap()),
        vec!["two.moving.test"]
    );
    dns.remove("moving.test");
    assert!(r.route("moving.test").await.unwrap_err().is_permanent());
}

/// A UDP socket that takes questions and never answers (nothing listens on
/// TCP at that port).
fn silent_server() -> std::net::UdpSocket {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap()
}

#[tokio::test]
async fn a_silent_name_server_is_a_temporary_failure_within_the_timeout() {
    let silent = silent_server();
    let settings = ResolverSettings {
        nameservers: vec![silent.local_addr().unwrap()],
        timeout: Duration::from_millis(300),
        attempts: 2,
    };
    let r = Router::new(&settings).unwrap();
    let started = Instant::now();
    let err = r.route("example.com").await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, RouteError::Temporary(_)), "{err:?}");
    // Two tries of 300 ms, with room for a slow machine; well below the
    // backstop deadline (timeout × (tries + 1)) plus slack.
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert!(took < Duration::from_millis(2000), "{took:?}");
}

#[tokio::test]
async fn an_unused_port_is_a_temporary_failure() {
    // Bind and drop to get a port nothing listens on. hickory's UDP sockets
    // are not connected, so the port-unreachable answer is not seen: this
    // ends as a timeout too (two tries of 500 ms).
    let addr = silent_server().local_addr().unwrap();
    let r = Router::new(&settings(vec![addr])).unwrap();
    let started = Instant::now();
    let err = r.route("example.com").await.unwrap_err();
    assert!(matches!(err, RouteError::Temporary(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_second_name_server_answers_for_a_silent_first() {
    let silent = silent_server();
    let dns = DnsServer::start();
    dns.set_a("direct.test", &[ip4(4)]);
    let r = Router::new(&settings(vec![silent.local_addr().unwrap(), dns.addr()])).unwrap();
    let started = Instant::now();
    let route = r.route("direct.test").await.unwrap();
    assert_eq!(names(&route), vec!["direct.test"]);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// An empty list means the system's name servers. Nothing is asked here
/// (they are not ours to send test traffic to): only that the router is
/// built when `/etc/resolv.conf` names a server, and that its absence is a
/// temporary failure rather than a panic.
#[tokio::test]
async fn empty_nameserver_list_reads_the_system_configuration() {
    let system = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let names_a_server = system
        .lines()
        .any(|line| line.trim_start().starts_with("nameserver"));
    match Router::new(&ResolverSettings::default()) {
        Ok(_) => assert!(names_a_server, "built without a name server"),
        Err(e) => {
            assert!(!names_a_server, "{e:?}");
            assert!(matches!(e, RouteError::Temporary(_)), "{e:?}");
        }
    }
}

#[tokio::test]
async fn address_literals_need_no_dns() {
    let dns = DnsServer::start();
    let r = router(&dns);
    let route = r.route("[127.0.0.1]").await.unwrap();
    assert_eq!(route.hosts, vec![hop("[127.0.0.1]", 0, &[ip4(1).into()])]);
    let route = r.route("[IPv6:::1]").await.unwrap();
    assert_eq!(
        route.hosts,
        vec![hop("[IPv6:::1]", 0, &[Ipv6Addr::LOCALHOST.into()])]
    );
    assert!(r
        .route("[not.an.address]")
        .await
        .unwrap_err()
        .is_permanent());
    assert!(dns.queries().is_empty(), "{:?}", dns.queries());
}

#[tokio::test]
async fn case_and_trailing_dots_do_not_matter() {
    let dns = DnsServer::start();
    dns.set_mx("Case.Test", &[(10, "MX.Case.TEST.")]);
    dns.set_a("mx.case.test", &[ip4(10)]);
    let r = router(&dns);
    let want = vec![hop("mx.case.test", 10, &[ip4(10).into()])];
    for domain in ["case.test", "CASE.TEST", "Case.Test.", "case.test."] {
        assert_eq!(r.route(domain).await.unwrap().hosts, want, "{domain}");
    }
    // Asked fully qualified: no search-list suffixes were tried.
    for (name, _) in dns.queries() {
        assert!(name == "case.test" || name == "mx.case.test", "{name}");
    }
}

#[tokio::test]
async fn international_domains_are_looked_up_in_punycode() {
    let dns = DnsServer::start();
    dns.set_mx("xn--bcher-kva.test", &[(10, "mx.xn--bcher-kva.test")]);
    dns.set_a("mx.xn--bcher-kva.test", &[ip4(12)]);
    let route = router(&dns).route("Bücher.test.").await.unwrap();
    assert_eq!(
        route.hosts,
        vec![hop("mx.xn--bcher-kva.test", 10, &[ip4(12).into()])]
    );
    assert_eq!(
        dns.queries()[0],
        ("xn--bcher-kva.test".to_string(), "MX".to_string())
    );
}

#[tokio::test]
async fn invalid_domains_bounce_without_dns() {
    let dns = DnsServer::start();
    let r = router(&dns);
    for bad in ["", ".", "a..test", "sp ace.test", "[192.0.2.1"] {
        let err = r.route(bad).await.unwrap_err();
        assert!(err.is_permanent(), "{bad:?}: {err:?}");
    }
    assert!(dns.queries().is_empty(), "{:?}", dns.queries());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_routes() {
    let dns = DnsServer::start();
    for i in 0..20u8 {
        dns.set_mx(
            &format!("d{i}.many.test"),
            &[(10, &format!("mx{i}.many.test"))],
        );
        dns.set_a(&format!("mx{i}.many.test"), &[Ipv4Addr::new(127, 0, 1, i)]);
    }
    let r = router(&dns);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20u8 {
        let r = r.clone();
        tasks.spawn(async move {
            let route = r.route(&format!("d{i}.many.test")).await.unwrap();
            assert_eq!(
                route.hosts,
                vec![hop(
                    &format!("mx{i}.many.test"),
                    10,
                    &[Ipv4Addr::new(127, 0, 1, i).into()]
                )]
            );
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}
