//! Cluster mode end to end: real `posthorn serve` processes sharing one
//! PostgreSQL database (the store) and Redis (rate limits), relaying to
//! the test kit's sink.
//!
//! - three nodes share the queue; one is `kill -9`ed while it holds
//!   delivery leases, and the others take its work over within
//!   `node_timeout` and a little: every acknowledged message reaches the
//!   sink, every recipient ends delivered, and every surviving node tells
//!   the same story;
//! - PostgreSQL's connections are killed again and again under load:
//!   clients get a 250 with an id that is then delivered, or a 4xx, never
//!   a 5xx or silence, and the nodes recover by themselves.
//!
//! Each test needs `POSTHORN_TEST_POSTGRES_URL` and `REDIS_URL` and skips
//! (passing) when either is unset; it creates a database of its own on
//! that server and drops it at the end, and uses a Redis prefix of its own.

use posthorn_testkit::cluster::{
    provision, relay_to, ClusterDb, Node, NodeSettings, Outcome, SmtpError, SmtpTls,
};
use posthorn_testkit::http;
use posthorn_testkit::sink::{Sink, SinkMessage, SinkOptions};
use posthorn_testkit::{SENDER, SENDER_PASSWORD};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_posthorn");
/// Every SMTP read waits at most this long; longer is a hang.
const SMTP_TIMEOUT: Duration = Duration::from_secs(15);

fn settings(node_timeout: &str, sink: &Sink) -> NodeSettings {
    NodeSettings {
        node_timeout: node_timeout.to_string(),
        max_connections: 8,
        delivery: relay_to(sink.port()),
    }
}

fn content(rcpts: &[&str], subject: &str) -> Vec<u8> {
    format!(
        "From: Shop <{SENDER}>\r\nTo: {}\r\nSubject: {subject}\r\n\r\nA cluster test message.\r\n.\r\n",
        rcpts.join(", ")
    )
    .into_bytes()
}

/// The Subject of a message the sink received.
fn subject_of(m: &SinkMessage) -> Option<String> {
    let text = String::from_utf8_lossy(&m.data);
    text.split("\r\n")
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            l.get(..8)
                .filter(|h| h.eq_ignore_ascii_case("subject:"))
                .map(|_| l[8..].trim().to_string())
        })
}

/// Subject → every recipient the sink accepted a message with that
/// subject for, and how many transactions carried it.
fn sink_by_subject(sink: &Sink) -> HashMap<String, (BTreeSet<String>, usize)> {
    let mut by = HashMap::<String, (BTreeSet<String>, usize)>::new();
    for m in sink.received() {
        if let Some(s) = subject_of(&m) {
            let e = by.entry(s).or_default();
            e.0.extend(m.rcpt_to.iter().cloned());
            e.1 += 1;
        }
    }
    by
}

/// Wait until the sink has every `(subject, recipients)`; panics after
/// `timeout` naming what is missing.
fn wait_sink(
    sink: &Sink,
    want: &[(String, Vec<String>)],
    timeout: Duration,
    logs: &dyn Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let got = sink_by_subject(sink);
        let missing: Vec<&(String, Vec<String>)> = want
            .iter()
            .filter(|(s, rcpts)| {
                got.get(s)
                    .is_none_or(|(have, _)| rcpts.iter().any(|r| !have.contains(r)))
            })
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} acknowledged message(s) never reached the sink within {timeout:?} (of {}), e.g. {:?}\n{}",
            missing.len(),
            want.len(),
            &missing[..missing.len().min(10)],
            logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn is_final(status: &str) -> bool {
    matches!(status, "delivered" | "bounced" | "expired" | "suppressed")
}

fn statuses(m: &Value) -> Vec<String> {
    m["recipients"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| r["status"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// `GET /v1/messages/{id}` on `node`; the status code and the JSON.
fn message_status(node: &Node, key: &str, id: &str) -> (u16, Value) {
    let r = http::get(node.http_port, &format!("/v1/messages/{id}"), key);
    let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, v)
}

/// Poll the status API of `nodes` (in turn) until every message in `ids`
/// has every recipient final; panics after `timeout` with the stragglers.
/// Returns the last JSON of each.
fn wait_all_final(
    nodes: &[&Node],
    key: &str,
    ids: &[String],
    timeout: Duration,
    logs: &dyn Fn() -> String,
) -> BTreeMap<String, Value> {
    let deadline = Instant::now() + timeout;
    let mut done = BTreeMap::new();
    let mut pending: Vec<String> = ids.to_vec();
    let mut turn = 0;
    loop {
        let mut still = Vec::new();
        let mut last = BTreeMap::new();
        for id in pending {
            turn += 1;
            let node = nodes[turn % nodes.len()];
            let (code, m) = message_status(node, key, &id);
            let st = statuses(&m);
            if code == 200 && !st.is_empty() && st.iter().all(|s| is_final(s)) {
                done.insert(id, m);
            } else {
                last.insert(id.clone(), (node.id.clone(), code, m));
                still.push(id);
            }
        }
        if still.is_empty() {
            return done;
        }
        if Instant::now() > deadline {
            let sample: Vec<String> = last
                .iter()
                .take(5)
                .map(|(id, (node, code, m))| format!("{id} via {node}: HTTP {code} {m}"))
                .collect();
            panic!(
                "{} of {} acknowledged message(s) not final within {timeout:?}:\n{}\n{}",
                still.len(),
                ids.len(),
                sample.join("\n"),
                logs()
            );
        }
        pending = still;
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The entry of node `id` in a cluster status.
fn node_entry<'a>(status: &'a Value, id: &str) -> &'a Value {
    status["nodes"]
        .as_array()
        .and_then(|ns| ns.iter().find(|n| n["id"] == id))
        .unwrap_or_else(|| panic!("no node {id} in the cluster status {status:#}"))
}

/// What every node should report alike about the nodes (not `last_seen`,
/// which moves).
fn node_facts(status: &Value) -> Vec<(String, bool, String, String, String)> {
    let mut v: Vec<_> = status["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("no nodes in {status:#}"))
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap_or_default().to_string(),
                n["alive"]
                    .as_bool()
                    .unwrap_or_else(|| panic!("alive in {n}")),
                n["address"].to_string(),
                n["version"].to_string(),
                n["started_at"].to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn logs_of(nodes: &[Node]) -> String {
    nodes
        .iter()
        .map(|n| {
            format!(
                "--- node {} (last warnings and errors) ---\n{}",
                n.id,
                n.log_problems(40)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A message sent in the takeover test.
struct Sent {
    id: String,
    subject: String,
    rcpts: Vec<String>,
}

#[test]
fn three_nodes_share_the_queue_and_take_over_a_dead_node() {
    const NODE_TIMEOUT: Duration = Duration::from_secs(5);
    /// How long past `node_timeout` the takeover may take: up to one
    /// heartbeat tick (a second) before the kill and one check tick after
    /// the timeout, and room for a busy machine.
    const SLACK: Duration = Duration::from_secs(4);
    let Some(db) = ClusterDb::create("three_nodes_share_the_queue_and_take_over_a_dead_node")
    else {
        return;
    };
    let began = Instant::now();
    // Slow final replies keep deliveries in flight (leased) for 8 s.
    let sink = Sink::start(SinkOptions {
        slow_delay: Duration::from_secs(8),
        ..SinkOptions::default()
    });
    let s = settings("5s", &sink);
    let mut nodes: Vec<Node> = ["n1", "n2", "n3"]
        .iter()
        .map(|id| Node::new(BIN.as_ref(), &db, id, &s))
        .collect();
    let keys = provision(&nodes[0]);
    for n in &mut nodes {
        n.start();
    }
    eprintln!("takeover: 3 nodes up after {:?}", began.elapsed());

    // Submit to every node: over SMTP (STARTTLS + AUTH, one connection per
    // node) and over HTTP; ok@, slow@ and both.
    let mix: [&[&str]; 3] = [
        &["ok@example.net"],
        &["slow@example.net"],
        &["ok@example.net", "slow@example.net"],
    ];
    let mut sent: Vec<Sent> = Vec::new();
    for node in &nodes {
        let mut c = node
            .smtp_login(SMTP_TIMEOUT)
            .unwrap_or_else(|e| panic!("SMTP login on {}: {e}\n{}", node.id, node.log()));
        for j in 0..6 {
            let rcpts = mix[j % 3];
            let subject = format!("takeover {} smtp {j}", node.id);
            match c.transaction(SENDER, rcpts, &content(rcpts, &subject)) {
                Outcome::Queued(id) => sent.push(Sent {
                    id,
                    subject,
                    rcpts: rcpts.iter().map(|r| r.to_string()).collect(),
                }),
                other => panic!("{} refused {subject:?}: {other:?}\n{}", node.id, node.log()),
            }
        }
        c.quit();
        for j in 0..4 {
            let rcpts = mix[(j + 1) % 3];
            let subject = format!("takeover {} http {j}", node.id);
            let r = http::post_json(
                node.http_port,
                "/v1/messages",
                &keys.account_key,
                &json!({"from": SENDER, "to": rcpts, "subject": subject, "text": "A cluster test message."}),
            );
            assert!(
                (200..300).contains(&r.status),
                "{} answered {} to {subject:?}: {}\n{}",
                node.id,
                r.status,
                String::from_utf8_lossy(&r.body),
                node.log()
            );
            let id = r.json()["message_id"]
                .as_str()
                .unwrap_or_else(|| panic!("no message_id: {}", String::from_utf8_lossy(&r.body)))
                .to_string();
            sent.push(Sent {
                id,
                subject,
                rcpts: rcpts.iter().map(|r| r.to_string()).collect(),
            });
        }
    }
    eprintln!(
        "takeover: {} messages acknowledged after {:?}",
        sent.len(),
        began.elapsed()
    );

    // The victim: the node holding the most leases once one holds any.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (victim, held) = loop {
        let st = nodes[0].cluster_status();
        let best = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (i, node_entry(&st, &n.id)["leases"].as_u64().unwrap_or(0)))
            .max_by_key(|&(_, leases)| leases);
        if let Some((i, leases)) = best.filter(|&(_, l)| l > 0) {
            break (i, leases);
        }
        assert!(
            Instant::now() < deadline,
            "no node held a delivery lease within 20 s: {st:#}\n{}",
            logs_of(&nodes)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let victim_id = nodes[victim].id.clone();
    nodes[victim].kill9();
    let killed_at = Instant::now();
    let survivors: Vec<usize> = (0..nodes.len()).filter(|&i| i != victim).collect();
    let watcher = &nodes[survivors[0]];
    let st = watcher.cluster_status();
    let leases_at_kill = node_entry(&st, &victim_id)["leases"].as_u64().unwrap_or(0);
    eprintln!(
        "takeover: killed {victim_id} (kill -9) holding {held} lease(s) as last seen, {leases_at_kill} right after the kill, at {:?}",
        began.elapsed()
    );
    assert!(
        leases_at_kill > 0,
        "{victim_id} held no lease any more when it was killed, so nothing is taken over: {st:#}"
    );

    // Its leases go to 0 and it shows dead within node_timeout + slack.
    let mut dead_after = None;
    let taken_over_after = loop {
        let st = watcher.cluster_status();
        let e = node_entry(&st, &victim_id);
        let elapsed = killed_at.elapsed();
        if e["alive"] == false && dead_after.is_none() {
            dead_after = Some(elapsed);
        }
        if e["alive"] == false && e["leases"] == 0 {
            break elapsed;
        }
        assert!(
            elapsed < NODE_TIMEOUT + SLACK,
            "{victim_id} still alive or holding leases {elapsed:?} after kill -9 (node_timeout 5 s): {st:#}\n{}",
            logs_of(&nodes)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "takeover: {victim_id} reported dead {:?} and its leases released {taken_over_after:?} after the kill (node_timeout {NODE_TIMEOUT:?})",
        dead_after.unwrap_or(taken_over_after)
    );

    // Every recipient of every acknowledged message ends delivered, as the
    // status API of a surviving node says.
    let survivor_nodes: Vec<&Node> = survivors.iter().map(|&i| &nodes[i]).collect();
    let ids: Vec<String> = sent.iter().map(|s| s.id.clone()).collect();
    let logs = || logs_of(&nodes);
    let finals = wait_all_final(
        &survivor_nodes,
        &keys.account_key,
        &ids,
        Duration::from_secs(40),
        &logs,
    );
    for s in &sent {
        let m = &finals[&s.id];
        assert!(
            statuses(m).iter().all(|st| st == "delivered"),
            "{} ({:?}) did not end delivered: {m:#}",
            s.id,
            s.subject
        );
        assert_eq!(statuses(m).len(), s.rcpts.len(), "{m:#}");
    }
    let all_final_after = killed_at.elapsed();

    // Every acknowledged message reached the sink, to every recipient
    // (duplicates allowed).
    let want: Vec<(String, Vec<String>)> = sent
        .iter()
        .map(|s| (s.subject.clone(), s.rcpts.clone()))
        .collect();
    wait_sink(&sink, &want, Duration::from_secs(20), &logs);
    let got = sink_by_subject(&sink);
    let transactions: usize = got.values().map(|(_, n)| n).sum();
    let expected: usize = sent.len();
    eprintln!(
        "takeover: all {} messages delivered {all_final_after:?} after the kill; the sink has {transactions} transactions for them ({} more than one per message)",
        sent.len(),
        transactions.saturating_sub(expected)
    );

    // The surviving nodes tell the same story about each message. A read
    // of one and then the other may straddle a change that is still due
    // (the content of a complete message is purged on a later tick, with
    // the default body_retention of 0), so both are read again until
    // they agree, for a few seconds at most.
    let (a, b) = (survivor_nodes[0], survivor_nodes[1]);
    for s in &sent {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (ca, ja) = message_status(a, &keys.account_key, &s.id);
            let (cb, jb) = message_status(b, &keys.account_key, &s.id);
            if (ca, cb) == (200, 200) && ja == jb {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "GET /v1/messages/{} differs between {} (HTTP {ca}) and {} (HTTP {cb}) for 5 s:\n{ja}\n{jb}",
                s.id,
                a.id,
                b.id
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // ... and about the cluster, through the CLI and the admin API.
    let sa = a.cluster_status();
    let sb = b.cluster_status();
    assert_eq!(node_facts(&sa), node_facts(&sb), "{sa:#}\n{sb:#}");
    assert_eq!(sa["queue"], sb["queue"], "{sa:#}\n{sb:#}");
    assert_eq!(sa["node_timeout_secs"], 5, "{sa:#}");
    assert_eq!(sa["queue"]["sending"], 0, "{sa:#}");
    let facts = node_facts(&sa);
    let ids_alive: Vec<(String, bool)> = facts.iter().map(|f| (f.0.clone(), f.1)).collect();
    let want_alive: Vec<(String, bool)> = nodes
        .iter()
        .map(|n| (n.id.clone(), n.id != victim_id))
        .collect();
    assert_eq!(ids_alive, want_alive, "{sa:#}");
    for n in [a, b] {
        let r = http::get(n.http_port, "/v1/admin/cluster", &keys.admin_key);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let j = r.json();
        assert_eq!(
            node_facts(&j),
            facts,
            "GET /v1/admin/cluster on {}: {j:#}",
            n.id
        );
        assert_eq!(j["queue"], sa["queue"], "{j:#}");
    }
    eprintln!(
        "takeover: done in {:?} (takeover {taken_over_after:?} after kill -9)",
        began.elapsed()
    );
}

/// What one client thread saw.
#[derive(Default)]
struct ClientLog {
    /// `(id, subject)` of every `250 … queued as ID`.
    acked: Vec<(String, String)>,
    /// Every 4xx reply to a message (`stage: reply`).
    temporary: Vec<String>,
    /// 4xx replies to connecting or AUTH.
    login_temporary: Vec<String>,
    /// What must not happen: 5xx, no reply, a hang.
    violations: Vec<String>,
    /// `(started, finished, accepted)` of every transaction.
    results: Vec<(Instant, Instant, bool)>,
}

/// Submit over one STARTTLS connection (a new one whenever it breaks)
/// until `until`.
fn client(thread: usize, port: u16, until: Instant) -> ClientLog {
    let mut log = ClientLog::default();
    let mut conn: Option<SmtpTls> = None;
    let mut n = 0;
    while Instant::now() < until {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => {
                let login = SmtpTls::connect(port, SMTP_TIMEOUT).and_then(|mut c| {
                    c.auth_plain(SENDER, SENDER_PASSWORD).and_then(|r| {
                        if r.starts_with("235") {
                            Ok(c)
                        } else {
                            Err(SmtpError::Reply(r))
                        }
                    })
                });
                match login {
                    Ok(c) => conn.insert(c),
                    Err(SmtpError::Reply(r)) if r.starts_with('4') => {
                        log.login_temporary.push(r.trim_end().to_string());
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                    Err(e) => {
                        log.violations.push(format!("connect/AUTH: {e}"));
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                }
            }
        };
        n += 1;
        let subject = format!("pgkill {thread} {n}");
        let rcpts = ["ok@example.net"];
        let started = Instant::now();
        let outcome = c.transaction(SENDER, &rcpts, &content(&rcpts, &subject));
        let accepted = matches!(outcome, Outcome::Queued(_));
        log.results.push((started, Instant::now(), accepted));
        match outcome {
            Outcome::Queued(id) => log.acked.push((id, subject)),
            Outcome::Temporary(stage, r) => {
                log.temporary.push(format!("{stage}: {}", r.trim_end()))
            }
            Outcome::Permanent(stage, r) => log
                .violations
                .push(format!("5xx to {stage} of {subject:?}: {}", r.trim_end())),
            Outcome::Broken(stage, e) => log
                .violations
                .push(format!("no reply to {stage} of {subject:?}: {e}")),
        }
        if !c.is_usable() {
            conn = None;
        }
    }
    if let Some(c) = conn {
        c.quit();
    }
    log
}

/// `451 4.3.0` from `stage: 451 4.3.0 text`.
fn code_of(entry: &str) -> String {
    let reply = entry.split_once(": ").map_or(entry, |(_, r)| r);
    reply
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn postgres_connections_killed_under_load() {
    const LOAD: Duration = Duration::from_secs(8);
    const FAULT_FROM: Duration = Duration::from_secs(2);
    const FAULT_ROUNDS: usize = 10;
    const FAULT_EVERY: Duration = Duration::from_millis(300);
    /// How soon after the last kill every node must accept again.
    const RECOVERY: Duration = Duration::from_secs(5);
    let Some(db) = ClusterDb::create("postgres_connections_killed_under_load") else {
        return;
    };
    let began = Instant::now();
    let sink = Sink::start(SinkOptions::default());
    let s = settings("10s", &sink);
    let mut nodes: Vec<Node> = ["p1", "p2"]
        .iter()
        .map(|id| Node::new(BIN.as_ref(), &db, id, &s))
        .collect();
    let keys = provision(&nodes[0]);
    for n in &mut nodes {
        n.start();
    }
    let ports: Vec<u16> = nodes.iter().map(|n| n.submission_port).collect();

    // Four clients (two per node) for LOAD; meanwhile every server process
    // connected to this test's database is killed, every 300 ms for 3 s.
    let t0 = Instant::now();
    let until = t0 + LOAD;
    let mut terminated = Vec::new();
    let (logs, fault_end) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let node = t % ports.len();
                let port = ports[node];
                scope.spawn(move || (node, client(t, port, until)))
            })
            .collect();
        std::thread::sleep(FAULT_FROM);
        let mut admin = db.admin();
        for _ in 0..FAULT_ROUNDS {
            terminated.push(
                db.terminate_connections(&mut admin)
                    .expect("pg_terminate_backend"),
            );
            std::thread::sleep(FAULT_EVERY);
        }
        let fault_end = Instant::now();
        let logs: Vec<(usize, ClientLog)> = handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect();
        (logs, fault_end)
    });
    let fault_start = t0 + FAULT_FROM;
    let acked: Vec<(String, String)> = logs.iter().flat_map(|(_, l)| l.acked.clone()).collect();
    let temporary: Vec<String> = logs.iter().flat_map(|(_, l)| l.temporary.clone()).collect();
    let login_temporary: Vec<String> = logs
        .iter()
        .flat_map(|(_, l)| l.login_temporary.clone())
        .collect();
    let violations: Vec<String> = logs
        .iter()
        .flat_map(|(_, l)| l.violations.clone())
        .collect();
    let mut by_code = BTreeMap::<String, usize>::new();
    for t in temporary.iter().chain(&login_temporary) {
        *by_code.entry(code_of(t)).or_default() += 1;
    }
    eprintln!(
        "pgkill: {} server connections terminated in {FAULT_ROUNDS} rounds ({terminated:?}); clients got {} × 250, {} × 4xx to a message, {} × 4xx to connect/AUTH (by code {by_code:?}), {} violation(s)",
        terminated.iter().sum::<usize>(),
        acked.len(),
        temporary.len(),
        login_temporary.len(),
        violations.len()
    );
    for t in temporary.iter().chain(&login_temporary).take(5) {
        eprintln!("pgkill: e.g. {t}");
    }
    assert!(
        terminated.iter().sum::<usize>() > 0,
        "no server connection of {} was there to terminate",
        db.name
    );
    assert!(
        violations.is_empty(),
        "while PostgreSQL's connections were killed, clients saw {} reply/replies that are neither 250 nor 4xx, or none:\n{}\n{}",
        violations.len(),
        violations.join("\n"),
        logs_of(&nodes)
    );

    // Recovery: per node, the first accepted message begun after the
    // fault, and whatever was refused after the fault plus RECOVERY.
    for (i, node) in nodes.iter().enumerate() {
        let results: Vec<(Instant, Instant, bool)> = logs
            .iter()
            .filter(|(n, _)| *n == i)
            .flat_map(|(_, l)| l.results.clone())
            .collect();
        let during = results
            .iter()
            .filter(|(s, e, _)| *e >= fault_start && *s <= fault_end)
            .count();
        let refused_during = results
            .iter()
            .filter(|(s, e, ok)| *e >= fault_start && *s <= fault_end && !ok)
            .count();
        let first_ok = results
            .iter()
            .filter(|(s, _, ok)| *s >= fault_end && *ok)
            .map(|(_, e, _)| e.duration_since(fault_end))
            .min();
        let late_refusals = results
            .iter()
            .filter(|(s, _, ok)| *s >= fault_end + RECOVERY && !ok)
            .count();
        eprintln!(
            "pgkill: {}: {during} transactions overlapped the fault, {refused_during} of them refused; first 250 after the fault {first_ok:?} after it",
            node.id
        );
        assert_eq!(
            late_refusals,
            0,
            "{} still refused mail more than {RECOVERY:?} after the fault\n{}",
            node.id,
            logs_of(&nodes)
        );
    }
    // And a message sent now is accepted by each node (retries allowed
    // within RECOVERY of the fault's end).
    for node in &nodes {
        let mut tries = Vec::new();
        loop {
            let rcpts = ["ok@example.net"];
            let subject = format!("pgkill after {} {}", node.id, tries.len());
            let outcome = match node.smtp_login(SMTP_TIMEOUT) {
                Ok(mut c) => c.transaction(SENDER, &rcpts, &content(&rcpts, &subject)),
                Err(e) => Outcome::Broken("login", e),
            };
            if let Outcome::Queued(id) = outcome {
                eprintln!(
                    "pgkill: {} accepted {id} {:?} after the fault ({} earlier tries: {tries:?})",
                    node.id,
                    fault_end.elapsed(),
                    tries.len()
                );
                break;
            }
            tries.push(format!("{outcome:?}"));
            assert!(
                fault_end.elapsed() < LOAD.max(RECOVERY + Duration::from_secs(3)),
                "{} does not accept mail {:?} after the fault: {tries:#?}\n{}",
                node.id,
                fault_end.elapsed(),
                logs_of(&nodes)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    // Every 250 was a stored message: found through the status API and
    // delivered to the sink.
    let ids: Vec<String> = acked.iter().map(|(id, _)| id.clone()).collect();
    let node_refs: Vec<&Node> = nodes.iter().collect();
    let logs_fn = || logs_of(&nodes);
    let finals = wait_all_final(
        &node_refs,
        &keys.account_key,
        &ids,
        Duration::from_secs(40),
        &logs_fn,
    );
    for (id, m) in &finals {
        assert_eq!(statuses(m), ["delivered"], "{id}: {m:#}");
    }
    let want: Vec<(String, Vec<String>)> = acked
        .iter()
        .map(|(_, s)| (s.clone(), vec!["ok@example.net".to_string()]))
        .collect();
    wait_sink(&sink, &want, Duration::from_secs(30), &logs_fn);
    eprintln!(
        "pgkill: all {} acknowledged messages stored and delivered; done in {:?}",
        acked.len(),
        began.elapsed()
    );
}
