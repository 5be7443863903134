//! The one classifier of internal addresses: what Posthorn will not connect
//! to on a user's behalf unless the operator allows it (delivery's
//! `[delivery] allow_private_destinations`, the webhooks'
//! `[webhooks] allow_private_networks`). Submission refuses an address
//! literal recipient with it, delivery drops what a recipient's domain
//! resolves to with it, and the webhook URL check and the webhook sender's
//! resolver ask it for every address; nothing else decides.
//!
//! "Internal" means every special-purpose range that is not globally
//! reachable unicast, after the IANA special-purpose registries (RFC 6890
//! and its updates): loopback, private, link-local (with the cloud metadata
//! address 169.254.169.254), CGNAT, benchmarking, documentation, multicast,
//! reserved, unspecified and the like. An IPv6 address that carries an IPv4
//! address (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`,
//! IPv4-translated `::ffff:0:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, 6to4
//! `2002:AABB:CCDD::/48`) is judged by the IPv4 address it carries, so
//! `::ffff:127.0.0.1` and `64:ff9b::a00:1` are as internal as `127.0.0.1`
//! and `10.0.0.1`. What cannot be judged that way is internal as a whole:
//! the local-use NAT64 prefix `64:ff9b:1::/48` (its embedding depends on a
//! prefix length the operator chose), Teredo `2001::/32`, and every IPv6
//! address outside global unicast `2000::/3`. Nothing here does I/O.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is internal: the range it falls in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Internal {
    /// The range's name: `loopback`, `private`, `link-local`, ...
    pub range: &'static str,
    /// The range in CIDR notation (`127.0.0.0/8`); for an IPv4 address
    /// carried in IPv6, the IPv4 range.
    pub prefix: &'static str,
    /// For an IPv4 address carried in an IPv6 address, how it was carried
    /// (`IPv4-mapped`, `IPv4-compatible`, `IPv4-translated`, `NAT64`,
    /// `6to4`).
    pub via: Option<&'static str>,
}

impl fmt::Display for Internal {
    /// `loopback`, or `loopback via NAT64`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.via {
            None => f.write_str(self.range),
            Some(via) => write!(f, "{} via {via}", self.range),
        }
    }
}

/// One IPv4 range: network, prefix length, name, CIDR text.
type V4Range = (u32, u32, &'static str, &'static str);

const fn v4(a: u8, b: u8, c: u8, d: u8) -> u32 {
    u32::from_be_bytes([a, b, c, d])
}

/// The internal IPv4 ranges; the first match names the address, so the
/// broadcast address comes before the reserved block holding it.
pub const V4_RANGES: &[V4Range] = &[
    (v4(0, 0, 0, 0), 8, "this network", "0.0.0.0/8"),
    (v4(10, 0, 0, 0), 8, "private", "10.0.0.0/8"),
    (v4(100, 64, 0, 0), 10, "CGNAT", "100.64.0.0/10"),
    (v4(127, 0, 0, 0), 8, "loopback", "127.0.0.0/8"),
    (v4(169, 254, 0, 0), 16, "link-local", "169.254.0.0/16"),
    (v4(172, 16, 0, 0), 12, "private", "172.16.0.0/12"),
    (
        v4(192, 0, 0, 0),
        24,
        "IETF protocol assignments",
        "192.0.0.0/24",
    ),
    (v4(192, 0, 2, 0), 24, "documentation", "192.0.2.0/24"),
    (
        v4(192, 88, 99, 0),
        24,
        "6to4 relay anycast",
        "192.88.99.0/24",
    ),
    (v4(192, 168, 0, 0), 16, "private", "192.168.0.0/16"),
    (v4(198, 18, 0, 0), 15, "benchmarking", "198.18.0.0/15"),
    (v4(198, 51, 100, 0), 24, "documentation", "198.51.100.0/24"),
    (v4(203, 0, 113, 0), 24, "documentation", "203.0.113.0/24"),
    (v4(224, 0, 0, 0), 4, "multicast", "224.0.0.0/4"),
    (
        v4(255, 255, 255, 255),
        32,
        "broadcast",
        "255.255.255.255/32",
    ),
    (v4(240, 0, 0, 0), 4, "reserved", "240.0.0.0/4"),
];

/// How an IPv6 range is judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum V6Rule {
    /// Internal, named so.
    Internal,
    /// Judged by the IPv4 address in its last 32 bits, carried this way.
    LastFour(&'static str),
    /// 6to4: judged by the IPv4 address in bits 16 to 48.
    SixToFour,
}

/// One IPv6 range: network, prefix length, name, CIDR text, rule.
type V6Range = (u128, u32, &'static str, &'static str, V6Rule);

const fn v6(segments: [u16; 8]) -> u128 {
    let mut n = 0u128;
    let mut i = 0;
    while i < 8 {
        n = (n << 16) | segments[i] as u128;
        i += 1;
    }
    n
}

/// The IPv6 ranges, most specific first (the first match rules). An
/// address matching none is internal unless it is in `2000::/3`.
pub const V6_RANGES: &[V6Range] = &[
    (0, 128, "unspecified", "::/128", V6Rule::Internal),
    (1, 128, "loopback", "::1/128", V6Rule::Internal),
    (
        v6([0, 0, 0, 0, 0, 0xffff, 0, 0]),
        96,
        "IPv4-mapped",
        "::ffff:0:0/96",
        V6Rule::LastFour("IPv4-mapped"),
    ),
    (
        v6([0, 0, 0, 0, 0xffff, 0, 0, 0]),
        96,
        "IPv4-translated",
        "::ffff:0:0:0/96",
        V6Rule::LastFour("IPv4-translated"),
    ),
    (
        0,
        96,
        "IPv4-compatible",
        "::/96",
        V6Rule::LastFour("IPv4-compatible"),
    ),
    (
        v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0]),
        96,
        "NAT64",
        "64:ff9b::/96",
        V6Rule::LastFour("NAT64"),
    ),
    (
        v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0]),
        48,
        "local-use NAT64",
        "64:ff9b:1::/48",
        V6Rule::Internal,
    ),
    (
        v6([0x100, 0, 0, 0, 0, 0, 0, 0]),
        64,
        "discard-only",
        "100::/64",
        V6Rule::Internal,
    ),
    (
        v6([0x2001, 0, 0, 0, 0, 0, 0, 0]),
        32,
        "Teredo",
        "2001::/32",
        V6Rule::Internal,
    ),
    (
        v6([0x2001, 2, 0, 0, 0, 0, 0, 0]),
        48,
        "benchmarking",
        "2001:2::/48",
        V6Rule::Internal,
    ),
    (
        v6([0x2001, 0, 0, 0, 0, 0, 0, 0]),
        23,
        "IETF protocol assignments",
        "2001::/23",
        V6Rule::Internal,
    ),
    (
        v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0]),
        32,
        "documentation",
        "2001:db8::/32",
        V6Rule::Internal,
    ),
    (
        v6([0x2002, 0, 0, 0, 0, 0, 0, 0]),
        16,
        "6to4",
        "2002::/16",
        V6Rule::SixToFour,
    ),
    (
        v6([0x3fff, 0, 0, 0, 0, 0, 0, 0]),
        20,
        "documentation",
        "3fff::/20",
        V6Rule::Internal,
    ),
    (
        v6([0x5f00, 0, 0, 0, 0, 0, 0, 0]),
        16,
        "SRv6 SIDs",
        "5f00::/16",
        V6Rule::Internal,
    ),
    (
        v6([0xfc00, 0, 0, 0, 0, 0, 0, 0]),
        7,
        "unique local",
        "fc00::/7",
        V6Rule::Internal,
    ),
    (
        v6([0xfe80, 0, 0, 0, 0, 0, 0, 0]),
        10,
        "link-local",
        "fe80::/10",
        V6Rule::Internal,
    ),
    (
        v6([0xfec0, 0, 0, 0, 0, 0, 0, 0]),
        10,
        "site-local",
        "fec0::/10",
        V6Rule::Internal,
    ),
    (
        v6([0xff00, 0, 0, 0, 0, 0, 0, 0]),
        8,
        "multicast",
        "ff00::/8",
        V6Rule::Internal,
    ),
];

/// The name of what is left outside global unicast `2000::/3`.
const NOT_GLOBAL_UNICAST: Internal = Internal {
    range: "not global unicast",
    prefix: "outside 2000::/3",
    via: None,
};

fn in_v4(addr: u32, net: u32, len: u32) -> bool {
    len == 0 || (addr ^ net) >> (32 - len) == 0
}

fn in_v6(addr: u128, net: u128, len: u32) -> bool {
    len == 0 || (addr ^ net) >> (128 - len) == 0
}

/// The internal range `ip` is in, or `None` for an address on the public
/// internet. See the module documentation for what counts.
pub fn is_internal(ip: IpAddr) -> Option<Internal> {
    match ip {
        IpAddr::V4(a) => internal_v4(a, None),
        IpAddr::V6(a) => internal_v6(a),
    }
}

fn internal_v4(ip: Ipv4Addr, via: Option<&'static str>) -> Option<Internal> {
    let n = u32::from(ip);
    V4_RANGES
        .iter()
        .find(|&&(net, len, _, _)| in_v4(n, net, len))
        .map(|&(_, _, range, prefix)| Internal { range, prefix, via })
}

fn internal_v6(ip: Ipv6Addr) -> Option<Internal> {
    let n = u128::from(ip);
    let Some(&(_, _, range, prefix, rule)) = V6_RANGES
        .iter()
        .find(|&&(net, len, _, _, _)| in_v6(n, net, len))
    else {
        return if in_v6(n, v6([0x2000, 0, 0, 0, 0, 0, 0, 0]), 3) {
            None
        } else {
            Some(NOT_GLOBAL_UNICAST)
        };
    };
    match rule {
        V6Rule::Internal => Some(Internal {
            range,
            prefix,
            via: None,
        }),
        V6Rule::LastFour(via) => internal_v4(Ipv4Addr::from(n as u32), Some(via)),
        V6Rule::SixToFour => internal_v4(Ipv4Addr::from((n >> 80) as u32), Some("6to4")),
    }
}

/// The address inside an address literal domain (`[192.0.2.1]`,
/// `[IPv6:2001:db8::1]`, RFC 5321 §4.1.3; the tag in any case), or `None`
/// when `domain` is not one or what is inside is not an address.
pub fn literal_ip(domain: &str) -> Option<IpAddr> {
    let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
    match inner.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => {
            inner[5..].parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        }
        _ => inner.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

/// Whether a host name is `localhost` or under it (`x.localhost`), which
/// RFC 6761 §6.3 reserves for loopback whatever DNS says.
pub fn is_localhost_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let lower = name.to_ascii_lowercase();
    lower == "localhost" || lower.ends_with(".localhost")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn name_of(a: IpAddr) -> Option<&'static str> {
        is_internal(a).map(|i| i.range)
    }

    /// Every IPv4 row: (CIDR, name, what the address just below the range
    /// is, what the address just above it is).
    const V4_TABLE: &[(&str, &str, Option<&str>, Option<&str>)] = &[
        ("0.0.0.0/8", "this network", None, None),
        ("10.0.0.0/8", "private", None, None),
        ("100.64.0.0/10", "CGNAT", None, None),
        ("127.0.0.0/8", "loopback", None, None),
        ("169.254.0.0/16", "link-local", None, None),
        ("172.16.0.0/12", "private", None, None),
        ("192.0.0.0/24", "IETF protocol assignments", None, None),
        ("192.0.2.0/24", "documentation", None, None),
        ("192.88.99.0/24", "6to4 relay anycast", None, None),
        ("192.168.0.0/16", "private", None, None),
        ("198.18.0.0/15", "benchmarking", None, None),
        ("198.51.100.0/24", "documentation", None, None),
        ("203.0.113.0/24", "documentation", None, None),
        ("224.0.0.0/4", "multicast", None, Some("reserved")),
        // The reserved block's last address is the broadcast address.
        ("240.0.0.0/4", "reserved", Some("multicast"), None),
        ("255.255.255.255/32", "broadcast", Some("reserved"), None),
    ];

    fn v4_cidr(cidr: &str) -> (u32, u32) {
        let (net, len) = cidr.split_once('/').unwrap();
        (
            u32::from(net.parse::<Ipv4Addr>().unwrap()),
            len.parse().unwrap(),
        )
    }

    /// First, middle and last address of a range; the ones just outside
    /// (when there are).
    fn v4_edges(cidr: &str) -> (Vec<u32>, Option<u32>, Option<u32>) {
        let (net, len) = v4_cidr(cidr);
        let size = if len == 0 {
            u64::MAX
        } else {
            1u64 << (32 - len)
        };
        let last = (u64::from(net) + size - 1) as u32;
        let mid = (u64::from(net) + size / 2) as u32;
        (
            vec![net, mid, last],
            net.checked_sub(1),
            last.checked_add(1),
        )
    }

    #[test]
    fn every_ipv4_range_inside_at_its_edges_and_just_outside() {
        for &(cidr, name, below, above) in V4_TABLE {
            let (inside, before, after) = v4_edges(cidr);
            for n in inside {
                let a = Ipv4Addr::from(n);
                // The broadcast address sits inside the reserved block.
                let want = if n == u32::MAX { "broadcast" } else { name };
                assert_eq!(name_of(a.into()), Some(want), "{a} in {cidr}");
            }
            if let Some(b) = before {
                let a = Ipv4Addr::from(b);
                assert_eq!(name_of(a.into()), below, "{a} below {cidr}");
            }
            if let Some(b) = after {
                let a = Ipv4Addr::from(b);
                assert_eq!(name_of(a.into()), above, "{a} above {cidr}");
            }
        }
        // The table is the classifier's table: no range is left untested.
        assert_eq!(V4_TABLE.len(), V4_RANGES.len());
        for &(_, _, _, prefix) in V4_RANGES {
            assert!(V4_TABLE.iter().any(|r| r.0 == prefix), "{prefix} untested");
        }
    }

    #[test]
    fn the_addresses_that_matter_most() {
        for (a, want) in [
            ("127.0.0.1", "loopback"),
            ("0.0.0.0", "this network"),
            ("169.254.169.254", "link-local"),
            ("10.0.0.1", "private"),
            ("100.100.100.200", "CGNAT"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("255.255.255.255", "broadcast"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fd00:ec2::254", "unique local"),
        ] {
            assert_eq!(name_of(ip(a)), Some(want), "{a}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.255",
            "192.0.3.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700::1111",
            "2a00:1450:4001:81b::200e",
            "2001:200::1",
            "2002:808:808::1",
            "64:ff9b::808:808",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(is_internal(ip(public)), None, "{public}");
        }
    }

    /// Every IPv6 row: (first address, last address, name, the address just
    /// below, the address just above).
    #[allow(clippy::type_complexity)]
    const V6_TABLE: &[(&str, &str, &str, Option<&str>, Option<&str>)] = &[
        // The two single addresses; around them, IPv4-compatible forms of
        // 0.0.0.0/8 ("this network").
        ("::", "::", "unspecified", None, Some("loopback")),
        (
            "::1",
            "::1",
            "loopback",
            Some("unspecified"),
            Some("this network"),
        ),
        (
            "64:ff9b:1::",
            "64:ff9b:1:ffff:ffff:ffff:ffff:ffff",
            "local-use NAT64",
            Some("not global unicast"),
            Some("not global unicast"),
        ),
        (
            "100::",
            "100::ffff:ffff:ffff:ffff",
            "discard-only",
            Some("not global unicast"),
            Some("not global unicast"),
        ),
        (
            "2001::",
            "2001:0:ffff:ffff:ffff:ffff:ffff:ffff",
            "Teredo",
            None,
            Some("IETF protocol assignments"),
        ),
        (
            "2001:2::",
            "2001:2:0:ffff:ffff:ffff:ffff:ffff",
            "benchmarking",
            Some("IETF protocol assignments"),
            Some("IETF protocol assignments"),
        ),
        (
            "2001:1::",
            "2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff",
            "IETF protocol assignments",
            Some("Teredo"),
            None,
        ),
        (
            "2001:db8::",
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
            "documentation",
            None,
            None,
        ),
        (
            "3fff::",
            "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff",
            "documentation",
            None,
            None,
        ),
        (
            "5f00::",
            "5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "SRv6 SIDs",
            Some("not global unicast"),
            Some("not global unicast"),
        ),
        (
            "fc00::",
            "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "unique local",
            Some("not global unicast"),
            Some("not global unicast"),
        ),
        (
            "fe80::",
            "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "link-local",
            Some("not global unicast"),
            Some("site-local"),
        ),
        (
            "fec0::",
            "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "site-local",
            Some("link-local"),
            Some("multicast"),
        ),
        (
            "ff00::",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "multicast",
            Some("site-local"),
            None,
        ),
        // What is left outside 2000::/3, at both ends of global unicast.
        (
            "4000::",
            "4000::",
            "not global unicast",
            None,
            Some("not global unicast"),
        ),
        (
            "1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "not global unicast",
            Some("not global unicast"),
            None,
        ),
    ];

    #[test]
    fn every_ipv6_range_at_its_edges_and_just_outside() {
        for &(first, last, name, below, above) in V6_TABLE {
            let (f, l) = (
                u128::from(first.parse::<Ipv6Addr>().unwrap()),
                u128::from(last.parse::<Ipv6Addr>().unwrap()),
            );
            for n in [f, f + (l - f) / 2, l] {
                let a = Ipv6Addr::from(n);
                assert_eq!(name_of(a.into()), Some(name), "{a} in {first}..{last}");
            }
            if let Some(b) = f.checked_sub(1) {
                let a = Ipv6Addr::from(b);
                assert_eq!(name_of(a.into()), below, "{a} below {first}");
            }
            if let Some(b) = l.checked_add(1) {
                let a = Ipv6Addr::from(b);
                assert_eq!(name_of(a.into()), above, "{a} above {last}");
            }
        }
        // Every IPv6 row judged as a whole is in the table.
        for &(_, _, range, prefix, rule) in V6_RANGES {
            if rule == V6Rule::Internal {
                assert!(
                    V6_TABLE.iter().any(|r| r.2 == range),
                    "{prefix} ({range}) untested"
                );
            }
        }
        // The IPv6 ranges named by the prefixes they list.
        for &(net, len, range, prefix, _) in V6_RANGES {
            let (text, l) = prefix.split_once('/').unwrap();
            assert_eq!(
                u128::from(text.parse::<Ipv6Addr>().unwrap()),
                net,
                "{range}"
            );
            assert_eq!(l.parse::<u32>().unwrap(), len, "{range}");
        }
    }

    /// Every way IPv6 carries an IPv4 address, around every IPv4 row.
    #[test]
    fn embedded_ipv4_is_judged_by_the_ipv4_address() {
        type Wrap = fn(Ipv4Addr) -> Ipv6Addr;
        let mapped: Wrap = |a| a.to_ipv6_mapped();
        let compatible: Wrap = |a| Ipv6Addr::from(u128::from(u32::from(a)));
        let translated: Wrap =
            |a| Ipv6Addr::from(v6([0, 0, 0, 0, 0xffff, 0, 0, 0]) | u128::from(u32::from(a)));
        let nat64: Wrap =
            |a| Ipv6Addr::from(v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0]) | u128::from(u32::from(a)));
        let six_to_four: Wrap = |a| {
            Ipv6Addr::from(v6([0x2002, 0, 0, 0, 0, 0, 0, 1]) | (u128::from(u32::from(a)) << 80))
        };
        let wraps: [(&str, Wrap); 5] = [
            ("IPv4-mapped", mapped),
            ("IPv4-compatible", compatible),
            ("IPv4-translated", translated),
            ("NAT64", nat64),
            ("6to4", six_to_four),
        ];
        for (via, wrap) in wraps {
            for &(cidr, name, below, above) in V4_TABLE {
                let (inside, before, after) = v4_edges(cidr);
                for n in inside {
                    let a = wrap(Ipv4Addr::from(n));
                    let want = if n == u32::MAX { "broadcast" } else { name };
                    // `::` and `::1` keep their own names.
                    let want = match (via, n) {
                        ("IPv4-compatible", 0) => "unspecified",
                        ("IPv4-compatible", 1) => "loopback",
                        _ => want,
                    };
                    let got = is_internal(a.into()).unwrap_or_else(|| panic!("{a} ({via})"));
                    assert_eq!(got.range, want, "{a} ({via} {cidr})");
                    if !matches!(want, "unspecified" | "loopback") || n > 1 {
                        assert_eq!(got.via, Some(via), "{a}");
                    }
                }
                for (n, expect) in [(before, below), (after, above)] {
                    if let Some(n) = n {
                        let a = wrap(Ipv4Addr::from(n));
                        assert_eq!(name_of(a.into()), expect, "{a} ({via}, next to {cidr})");
                    }
                }
            }
            // A public IPv4 address carried this way is public.
            let a = wrap(Ipv4Addr::new(8, 8, 8, 8));
            assert_eq!(is_internal(a.into()), None, "{a}");
        }
        // The written forms the probe used.
        for (text, range, via) in [
            ("::ffff:127.0.0.1", "loopback", "IPv4-mapped"),
            ("::127.0.0.1", "loopback", "IPv4-compatible"),
            ("::ffff:0:10.0.0.1", "private", "IPv4-translated"),
            ("64:ff9b::a00:1", "private", "NAT64"),
            ("64:ff9b::169.254.169.254", "link-local", "NAT64"),
            ("64:ff9b::198.18.0.1", "benchmarking", "NAT64"),
            ("2002:7f00:1::", "loopback", "6to4"),
            ("2002:a9fe:a9fe::1", "link-local", "6to4"),
        ] {
            let got = is_internal(ip(text)).unwrap_or_else(|| panic!("{text}"));
            assert_eq!((got.range, got.via), (range, Some(via)), "{text}");
        }
        assert_eq!(
            is_internal(ip("64:ff9b::a00:1")).unwrap().to_string(),
            "private via NAT64"
        );
        assert_eq!(
            is_internal(ip("127.0.0.1")).unwrap().to_string(),
            "loopback"
        );
        // NAT64's neighbours outside the /96 are not NAT64.
        assert_eq!(name_of(ip("64:ff9b::1:0:0")), Some("not global unicast"));
    }

    #[test]
    fn address_literals() {
        assert_eq!(literal_ip("[127.0.0.1]"), Some(ip("127.0.0.1")));
        assert_eq!(literal_ip("[IPv6:::1]"), Some(ip("::1")));
        assert_eq!(
            literal_ip("[ipv6:::ffff:10.0.0.1]"),
            Some(ip("::ffff:10.0.0.1"))
        );
        for not in [
            "example.com",
            "[127.0.0.1",
            "[::1]",
            "[IPv6:127.0.0.1]",
            "[127.1]",
            "[]",
        ] {
            assert_eq!(literal_ip(not), None, "{not}");
        }
    }

    #[test]
    fn localhost_names() {
        for yes in ["localhost", "LocalHost.", "mx.localhost", "a.b.LOCALHOST"] {
            assert!(is_localhost_name(yes), "{yes}");
        }
        for no in [
            "localhost.example",
            "notlocalhost",
            "example.com",
            "localhost-x",
        ] {
            assert!(!is_localhost_name(no), "{no}");
        }
    }
}
