//! A DNS server on loopback answering the MX, A, AAAA and TXT records a test
//! sets, so delivery code can be pointed at a real name server whose answers
//! the test controls.
//!
//! It speaks plain DNS over UDP and over TCP on the same port (a UDP answer
//! that does not fit is sent truncated, and resolvers retry over TCP). Every
//! answer carries TTL 0, so a record the test changes is seen on the next
//! lookup even by a caching resolver.
//!
//! How it answers a question for `name`:
//! - a name the test set (or one below which a set name lies, an "empty
//!   non-terminal") with records of the asked type: NOERROR with them;
//! - such a name without records of that type: NOERROR, no answers (NODATA),
//!   an SOA in the authority section;
//! - any other name: NXDOMAIN, an SOA in the authority section;
//! - a name marked with [`DnsServer::fail`]: SERVFAIL.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, MX, SOA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// The TTL of every answer and of the negative-caching SOA.
const TTL: u32 = 0;
/// The largest UDP answer sent to a client that sent EDNS (RFC 9715's
/// recommended 1232 bytes); without EDNS the limit is 512.
const MAX_UDP_PAYLOAD: u16 = 1232;

#[derive(Default)]
struct Entry {
    mx: Vec<(u16, Name)>,
    a: Vec<Ipv4Addr>,
    aaaa: Vec<Ipv6Addr>,
    /// One element per TXT record, each the character-strings of the record.
    txt: Vec<Vec<Vec<u8>>>,
}

#[derive(Default)]
struct Zone {
    names: HashMap<String, Entry>,
    failing: HashSet<String>,
    queries: Vec<(String, String)>,
}

/// A DNS server on `127.0.0.1`, UDP and TCP on one port, serving the
/// records the test sets. It runs on its own thread and stops when dropped.
pub struct DnsServer {
    addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl DnsServer {
    /// Bind UDP and TCP on the same free port of 127.0.0.1 and start
    /// answering. Works from plain tests and from inside a tokio runtime.
    pub fn start() -> DnsServer {
        let (udp, tcp) = bind_pair();
        let addr = udp.local_addr().expect("udp local addr");
        let zone = Arc::new(Mutex::new(Zone::default()));
        let (stop, stopped) = oneshot::channel();
        let thread_zone = Arc::clone(&zone);
        let thread = std::thread::Builder::new()
            .name(format!("testkit-dns-{}", addr.port()))
            .spawn(move || serve(udp, tcp, thread_zone, stopped))
            .expect("spawn dns server thread");
        DnsServer {
            addr,
            zone,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Where the server listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Set the MX records of `domain` (replacing its MX records, keeping its
    /// other types). An exchange of `"."` is a null MX (RFC 7505). An empty
    /// slice leaves the name known without MX records (NODATA).
    pub fn set_mx(&self, domain: &str, records: &[(u16, &str)]) {
        let mx = records
            .iter()
            .map(|&(preference, exchange)| (preference, parse_name(exchange)))
            .collect();
        self.zone().names.entry(key(domain)).or_default().mx = mx;
    }

    /// Set the A records of `host` (replacing its A records).
    pub fn set_a(&self, host: &str, addrs: &[Ipv4Addr]) {
        self.zone().names.entry(key(host)).or_default().a = addrs.to_vec();
    }

    /// Set the AAAA records of `host` (replacing its AAAA records).
    pub fn set_aaaa(&self, host: &str, addrs: &[Ipv6Addr]) {
        self.zone().names.entry(key(host)).or_default().aaaa = addrs.to_vec();
    }

    /// Set the TXT records of `name` (replacing its TXT records), one
    /// record per string. A string longer than 255 bytes is split into
    /// several character-strings of that one record, which a reader joins
    /// back (as for DKIM keys).
    pub fn set_txt(&self, name: &str, strings: &[&str]) {
        let txt = strings
            .iter()
            .map(|s| {
                let bytes = s.as_bytes();
                if bytes.is_empty() {
                    vec![Vec::new()]
                } else {
                    bytes.chunks(255).map(<[u8]>::to_vec).collect()
                }
            })
            .collect();
        self.zone().names.entry(key(name)).or_default().txt = txt;
    }

    /// Forget `name` and all its records: it answers NXDOMAIN again (unless
    /// a name below it is still set). Also ends [`DnsServer::fail`] for it.
    pub fn remove(&self, name: &str) {
        let mut zone = self.zone();
        zone.names.remove(&key(name));
        zone.failing.remove(&key(name));
    }

    /// Answer SERVFAIL to every question about `name` (a temporary DNS
    /// failure) until [`DnsServer::remove`] is called for it.
    pub fn fail(&self, name: &str) {
        self.zone().failing.insert(key(name));
    }

    /// Every question received so far, in order: the name in lower case
    /// without the trailing dot, and the type (`"MX"`, `"A"`, `"AAAA"`,
    /// `"TXT"`, ...). A question retried over TCP after a truncated UDP
    /// answer appears twice.
    pub fn queries(&self) -> Vec<(String, String)> {
        self.zone().queries.clone()
    }

    /// Forget the questions recorded so far.
    pub fn clear_queries(&self) {
        self.zone().queries.clear();
    }

    fn zone(&self) -> MutexGuard<'_, Zone> {
        lock(&self.zone)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock(zone: &Mutex<Zone>) -> MutexGuard<'_, Zone> {
    zone.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The map key of a name: lower case, no trailing dot.
fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn parse_name(name: &str) -> Name {
    let trimmed = name.trim_end_matches('.');
    if trimmed.is_empty() {
        return Name::root();
    }
    let mut parsed = Name::from_ascii(trimmed)
        .unwrap_or_else(|e| panic!("{name:?} is not a valid DNS name: {e}"));
    parsed.set_fqdn(true);
    parsed
}

/// A UDP socket and a TCP listener on the same free loopback port.
fn bind_pair() -> (std::net::UdpSocket, std::net::TcpListener) {
    let mut last_error = None;
    for _ in 0..50 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp on 127.0.0.1");
        let addr = udp.local_addr().expect("udp local addr");
        match std::net::TcpListener::bind(addr) {
            Ok(tcp) => return (udp, tcp),
            Err(e) => last_error = Some(e),
        }
    }
    panic!("no loopback port free for both UDP and TCP: {last_error:?}");
}

fn serve(
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
    zone: Arc<Mutex<Zone>>,
    stopped: oneshot::Receiver<()>,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("dns server runtime");
    runtime.block_on(async move {
        udp.set_nonblocking(true).expect("nonblocking udp");
        tcp.set_nonblocking(true).expect("nonblocking tcp");
        let udp = tokio::net::UdpSocket::from_std(udp).expect("tokio udp");
        let tcp = tokio::net::TcpListener::from_std(tcp).expect("tokio tcp");
        tokio::select! {
            _ = stopped => {}
            _ = serve_udp(udp, Arc::clone(&zone)) => {}
            _ = serve_tcp(tcp, zone) => {}
        }
    });
    // Dropping the runtime cancels the TCP connections still open.
}

async fn serve_udp(socket: tokio::net::UdpSocket, zone: Arc<Mutex<Zone>>) {
    let mut buf = vec![0u8; 65535];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        if let Some(reply) = respond(&zone, &buf[..len], true) {
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

async fn serve_tcp(listener: tokio::net::TcpListener, zone: Arc<Mutex<Zone>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(serve_tcp_connection(stream, Arc::clone(&zone)));
    }
}

/// Several length-prefixed questions may come on one connection (RFC 7766).
async fn serve_tcp_connection(mut stream: tokio::net::TcpStream, zone: Arc<Mutex<Zone>>) {
    loop {
        let Ok(len) = stream.read_u16().await else {
            return;
        };
        let mut request = vec![0u8; usize::from(len)];
        if stream.read_exact(&mut request).await.is_err() {
            return;
        }
        let Some(reply) = respond(&zone, &request, false) else {
            return;
        };
        let Ok(reply_len) = u16::try_from(reply.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&reply_len.to_be_bytes());
        framed.extend_from_slice(&reply);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}

/// The encoded answer to an encoded request, or `None` to stay silent.
fn respond(zone: &Mutex<Zone>, request: &[u8], udp: bool) -> Option<Vec<u8>> {
    let Ok(request) = Message::from_vec(request) else {
        // Answer FORMERR if there is at least a header to take the id from.
        if request.len() < 12 {
            return None;
        }
        let id = u16::from_be_bytes([request[0], request[1]]);
        let mut reply = Message::new();
        reply
            .set_id(id)
            .set_message_type(MessageType::Response)
            .set_response_code(ResponseCode::FormErr);
        return reply.to_vec().ok();
    };
    if request.message_type() != MessageType::Query {
        return None;
    }

    let mut reply = Message::new();
    reply
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(request.op_code())
        .set_authoritative(true)
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true);
    reply.add_queries(request.queries().iter().cloned());
    let mut limit = 512usize;
    if let Some(edns) = request.extensions() {
        limit = limit.max(usize::from(edns.max_payload().min(MAX_UDP_PAYLOAD)));
        let mut ours = Edns::new();
        ours.set_max_payload(MAX_UDP_PAYLOAD).set_version(0);
        reply.set_edns(ours);
    }

    if request.op_code() != OpCode::Query {
        reply.set_response_code(ResponseCode::NotImp);
    } else if request.queries().len() != 1 {
        reply.set_response_code(ResponseCode::FormErr);
    } else {
        answer(&mut lock(zone), &request.queries()[0], &mut reply);
    }

    let encoded = reply.to_vec().ok()?;
    if !udp || encoded.len() <= limit {
        return Some(encoded);
    }
    // Too big for UDP: the header and question with TC set, so the client
    // asks again over TCP.
    reply.take_answers();
    reply.take_name_servers();
    reply.take_additionals();
    reply.set_truncated(true);
    reply.to_vec().ok()
}

fn answer(zone: &mut Zone, query: &Query, reply: &mut Message) {
    let name = key(&query.name().to_ascii());
    let rtype = query.query_type();
    zone.queries.push((name.clone(), rtype.to_string()));

    if query.query_class() != DNSClass::IN {
        reply.set_response_code(ResponseCode::Refused);
        return;
    }
    if zone.failing.contains(&name) {
        reply.set_response_code(ResponseCode::ServFail);
        return;
    }
    let owner = query.name().clone();
    let record = |rdata: RData| Record::from_rdata(owner.clone(), TTL, rdata);
    let mut answers = Vec::new();
    if let Some(entry) = zone.names.get(&name) {
        let any = rtype == RecordType::ANY;
        if any || rtype == RecordType::MX {
            for (preference, exchange) in &entry.mx {
                answers.push(record(RData::MX(MX::new(*preference, exchange.clone()))));
            }
        }
        if any || rtype == RecordType::A {
            for ip in &entry.a {
                answers.push(record(RData::A(A(*ip))));
            }
        }
        if any || rtype == RecordType::AAAA {
            for ip in &entry.aaaa {
                answers.push(record(RData::AAAA(AAAA(*ip))));
            }
        }
        if any || rtype == RecordType::TXT {
            for strings in &entry.txt {
                let parts = strings.iter().map(Vec::as_slice).collect();
                answers.push(record(RData::TXT(TXT::from_bytes(parts))));
            }
        }
    } else if !is_empty_non_terminal(zone, &name) {
        reply.set_response_code(ResponseCode::NXDomain);
        reply.add_name_server(soa());
        return;
    }
    if answers.is_empty() {
        // NODATA: the name exists, the type does not.
        reply.add_name_server(soa());
    } else {
        reply.add_answers(answers);
    }
}

/// Whether some set name lies below `name` (so `name` exists in DNS).
fn is_empty_non_terminal(zone: &Zone, name: &str) -> bool {
    let suffix = format!(".{name}");
    zone.names
        .keys()
        .any(|known| name.is_empty() || known.ends_with(&suffix))
}

/// The SOA sent with negative answers: owned by the root, so it is the zone
/// of every name; its minimum (the negative-caching TTL) is 0.
fn soa() -> Record {
    let soa = SOA::new(
        parse_name("ns.posthorn.test"),
        parse_name("hostmaster.posthorn.test"),
        1,
        60,
        60,
        60,
        TTL,
    );
    Record::from_rdata(Name::root(), TTL, RData::SOA(soa))
}
