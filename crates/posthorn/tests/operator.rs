//! The operator's path: the configuration found without flags, the admin
//! commands for every object, weak passwords refused, the host name warning,
//! capture mode, and a backup taken while mail is accepted, restored into a
//! server that then lists every message; a single embedded node in `cluster
//! status` and `migrate`.

use posthorn_testkit::http::get;
use posthorn_testkit::*;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_posthorn");
/// AUTH without TLS from loopback, so raw clients can log in.
const PLAINTEXT_AUTH: &str = "allow_plaintext_auth_on_loopback = true\n";

/// `posthorn template ...` (issue 22).
#[path = "operator/templates.rs"]
mod templates;

/// `posthorn ARGS` in `cwd`, with no configuration from the environment
/// unless `env_config` is given.
fn run_in(cwd: &Path, env_config: Option<&Path>, args: &[&str]) -> Output {
    let mut c = Command::new(BIN);
    c.current_dir(cwd).args(args).env_remove("POSTHORN_CONFIG");
    if let Some(file) = env_config {
        c.env("POSTHORN_CONFIG", file);
    }
    c.output().expect("run posthorn")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "failed: {}", text(&out.stderr));
    text(&out.stdout)
}

fn refused(out: Output, needle: &str) -> String {
    let err = text(&out.stderr);
    assert!(!out.status.success(), "should fail: {}", text(&out.stdout));
    let error = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("an error line in {err:?}"));
    assert!(error.contains(needle), "{error:?} should say {needle:?}");
    error.to_string()
}

#[test]
fn the_cli_finds_the_servers_configuration_without_flags() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("posthorn.toml"), "data_dir = \"here-data\"\n").unwrap();
    std::fs::write(d.join("other.toml"), "data_dir = \"other-data\"\n").unwrap();

    let shown = ok(run_in(d, None, &["config"]));
    assert!(shown.contains("config:   ./posthorn.toml"), "{shown}");
    assert!(shown.contains("data dir: here-data"), "{shown}");
    assert!(shown.contains("(not created yet)"), "{shown}");

    // The first command that opens the store says it creates an empty one.
    let out = run_in(d, None, &["account", "create", "shop"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning: no store at here-data/posthorn.db: creating an empty one"),
        "{err}"
    );
    assert!(d.join("here-data/posthorn.db").exists());
    let out = run_in(d, None, &["account", "list"]);
    assert!(text(&out.stderr).is_empty(), "no warning the second time");
    assert!(text(&out.stdout).starts_with("shop\t"));

    // $POSTHORN_CONFIG comes before ./posthorn.toml, --config before both.
    let other = d.join("other.toml");
    let shown = ok(run_in(d, Some(&other), &["config"]));
    assert!(shown.contains("data dir: other-data"), "{shown}");
    let shown = ok(run_in(
        d,
        Some(&other),
        &["--config", "posthorn.toml", "config"],
    ));
    assert!(shown.contains("data dir: here-data"), "{shown}");
    // A variable naming a missing file is an error, not a silent default.
    refused(
        run_in(d, Some(&d.join("missing.toml")), &["account", "list"]),
        "cannot read config file",
    );
    // Elsewhere, with no file at all: the defaults.
    let empty = tempfile::tempdir().unwrap();
    let shown = ok(run_in(empty.path(), None, &["config"]));
    assert!(shown.contains("config:   none (defaults)"), "{shown}");
    assert!(shown.contains("data dir: ./posthorn-data"), "{shown}");
}

#[test]
fn every_object_can_be_listed_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cli = |args: &[&str]| {
        let mut all = vec!["--data-dir", d.to_str().unwrap()];
        all.extend_from_slice(args);
        run_in(d, None, &all)
    };
    ok(cli(&["account", "create", "shop"]));
    ok(cli(&["account", "create", "blog"]));
    ok(cli(&["domain", "add", "shop.test", "--account", "shop"]));
    ok(cli(&[
        "domain",
        "add",
        "blog.test",
        "--account",
        "blog",
        "--dkim",
        "ed25519",
    ]));
    ok(cli(&[
        "sender",
        "add",
        "app@shop.test",
        "--account",
        "shop",
    ]));
    ok(cli(&["apiuser", "add", "api1", "--account", "shop"]));
    ok(cli(&["label", "add", "42", "--account", "shop"]));

    let domains = ok(cli(&["domain", "list"]));
    assert!(domains.contains("shop.test\tshop\trsa\t"), "{domains}");
    assert!(domains.contains("blog.test\tblog\ted25519\t"), "{domains}");
    assert_eq!(
        ok(cli(&["domain", "list", "--account", "blog"]))
            .lines()
            .count(),
        1
    );
    assert!(ok(cli(&["sender", "list", "--account", "shop"])).starts_with("app@shop.test\t"));
    assert!(ok(cli(&["apiuser", "list", "--account", "shop"])).starts_with("api1\t"));
    assert!(ok(cli(&["label", "list", "--account", "shop"])).starts_with("42\t"));

    // A domain with senders stays; so does an account without --yes.
    refused(
        cli(&["domain", "remove", "shop.test"]),
        "still has 1 sender address; remove it first",
    );
    refused(cli(&["account", "remove", "shop"]), "add --yes to confirm");
    refused(
        cli(&["sender", "remove", "nobody@shop.test"]),
        "no sender address",
    );
    refused(
        cli(&["label", "remove", "7", "--account", "shop"]),
        "has no label",
    );

    ok(cli(&["sender", "remove", "APP@shop.test"]));
    assert_eq!(ok(cli(&["sender", "list", "--account", "shop"])), "");
    ok(cli(&["domain", "remove", "Shop.Test."]));
    ok(cli(&["apiuser", "remove", "api1"]));
    ok(cli(&["label", "remove", "42", "--account", "shop"]));
    for what in ["sender", "apiuser", "label"] {
        assert_eq!(ok(cli(&[what, "list", "--account", "shop"])), "", "{what}");
    }
    ok(cli(&["account", "remove", "blog", "--yes"]));
    let accounts = ok(cli(&["account", "list"]));
    assert!(accounts.starts_with("shop\t") && accounts.lines().count() == 1);
    assert_eq!(ok(cli(&["domain", "list"])), "");
}

#[test]
fn output_survives_a_closed_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let bin = BIN;
    // `head -1` closes the pipe after one line of many.
    let script = format!(
        "set -e; {bin} --data-dir {d} account create shop >/dev/null 2>&1
         for i in $(seq 300); do echo; done >/dev/null
         {bin} --data-dir {d} account show shop | head -1; echo \"status=${{PIPESTATUS[0]}}\""
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("account:  shop\n"), "{stdout}");
    assert!(
        stdout.contains("status=0"),
        "{stdout} {}",
        text(&out.stderr)
    );
    assert!(
        !text(&out.stderr).contains("panicked"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn weak_passwords_are_refused_with_a_reason() {
    let server = TestServer::start(Path::new(BIN), PLAINTEXT_AUTH);
    for weak in ["12345678", "password", "app2@example.com", "qwertyuiop"] {
        let out = server.cli(&[
            "sender",
            "add",
            "app2@example.com",
            "--account",
            ACCOUNT,
            "--password",
            weak,
        ]);
        refused(out, "too easy to guess");
    }
    let out = server.cli(&[
        "apiuser",
        "add",
        "api2",
        "--account",
        ACCOUNT,
        "--key",
        "password1",
    ]);
    refused(out, "the key is too easy to guess");
    // The admin API applies the same rule (one admin service).
    let admin = server.admin_http_key();
    let r = posthorn_testkit::http::post_json(
        server.http_port,
        &format!("/v1/admin/accounts/{ACCOUNT}/senders"),
        &admin,
        &serde_json::json!({"address": "app3@example.com", "password": "password"}),
    );
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("too easy to guess"));
    // A strong one, and a generated one, work; the login then works too.
    server.cli_ok(&[
        "sender",
        "add",
        "app2@example.com",
        "--account",
        ACCOUNT,
        "--password",
        "mossy harbor tulip lantern",
    ]);
    let (_, reply) = RawClient::login(
        server.submission_port,
        "app2@example.com",
        "mossy harbor tulip lantern",
    );
    assert!(reply.starts_with("235"), "{reply}");
}

#[test]
fn an_unqualified_host_name_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("posthorn.toml"), "hostname = \"vm\"\n").unwrap();
    ok(run_in(d, None, &["account", "create", "shop"]));
    let out = run_in(
        d,
        None,
        &["domain", "add", "example.com", "--account", "shop"],
    );
    assert!(out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("warning: the host name \"vm\" is not a fully qualified domain name"),
        "{err}"
    );
    assert!(text(&out.stdout).contains("v=spf1 a:vm ~all"));

    // The server says so at start.
    let log_path = d.join("serve.log");
    let mut child = Command::new(BIN)
        .current_dir(d)
        .env_remove("POSTHORN_CONFIG")
        .args([
            "serve",
            "--smtps",
            "127.0.0.1:0",
            "--submission",
            "127.0.0.1:0",
        ])
        .args(["--http", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let warned = loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("listening") || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        warned.contains("the host name is not a fully qualified domain name"),
        "{warned}"
    );
}

/// One message from the standard sender on a logged-in connection; its id.
fn send(c: &mut RawClient, subject: &str) -> String {
    assert!(c.cmd(&format!("MAIL FROM:<{SENDER}>")).starts_with("250"));
    assert!(c.cmd("RCPT TO:<you@example.net>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(
        format!(
            "From: <{SENDER}>\r\nTo: <you@example.net>\r\nSubject: {subject}\r\n\r\nHello.\r\n.\r\n"
        )
        .as_bytes(),
    );
    queued_id(&c.read_reply())
}

#[test]
fn capture_mode_keeps_mail_and_sends_nothing() {
    // No DNS, no sink: in capture mode nothing is looked up or sent.
    let server = TestServer::start(
        Path::new(BIN),
        &format!("{PLAINTEXT_AUTH}[delivery]\nmode = \"capture\"\n"),
    );
    let (mut c, _) = RawClient::login(server.submission_port, SENDER, SENDER_PASSWORD);
    let id = send(&mut c, "captured");
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.statuses(&id) != ["delivered"] {
        assert!(Instant::now() < deadline, "{:?}", server.message(&id));
        std::thread::sleep(Duration::from_millis(50));
    }
    let m = server.message(&id);
    let r = &m["recipients"][0];
    assert!(r["last_reply"]
        .as_str()
        .unwrap()
        .starts_with("250 2.0.0 captured"));
    assert_eq!(r["remote_host"], "capture");
    // The content stays readable after the message is final.
    let content = String::from_utf8(server.content(&id)).unwrap();
    assert!(content.contains("Subject: captured"), "{content}");
    assert!(server.log().contains("capture mode"));
}

#[test]
fn a_backup_taken_while_accepting_restores_every_acknowledged_message() {
    let server = TestServer::start(Path::new(BIN), PLAINTEXT_AUTH);
    let port = server.submission_port;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sender = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            let (mut c, _) = RawClient::login(port, SENDER, SENDER_PASSWORD);
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                let id = send(&mut c, "backup");
                sent.lock().unwrap().push(id);
            }
        })
    };
    // Some messages before, the backup while they keep coming, some after.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sent.lock().unwrap().len() < 20 {
        assert!(Instant::now() < deadline, "messages are accepted");
        std::thread::sleep(Duration::from_millis(10));
    }
    let before: Vec<String> = sent.lock().unwrap().clone();
    let backup_dir = tempfile::tempdir().unwrap();
    let backup = backup_dir.path().join("posthorn-backup.db");
    let said = server.cli_ok(&["backup", backup.to_str().unwrap()]);
    assert!(said.contains("wrote a consistent copy"), "{said}");
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sender.join().unwrap();
    assert!(
        sent.lock().unwrap().len() > before.len(),
        "accepting went on"
    );
    // Nothing accepted is lost to an account removal: refused while queued.
    refused(
        server.cli(&["account", "remove", ACCOUNT, "--yes"]),
        "messages in the queue",
    );
    // An existing file is not overwritten.
    let again = server.cli(&["backup", backup.to_str().unwrap()]);
    refused(again, "exists already");

    // Restore into another server: stop it, put the backup in place of
    // its database, start it, and list over HTTP.
    let mut restored = TestServer::start(Path::new(BIN), "");
    assert!(restored.terminate(Duration::from_secs(10)));
    let data = restored.data_dir().to_path_buf();
    for f in ["posthorn.db-wal", "posthorn.db-shm"] {
        let _ = std::fs::remove_file(data.join(f));
    }
    std::fs::copy(&backup, data.join("posthorn.db")).unwrap();
    restored.restart();
    let key = restored.http_key(ACCOUNT);
    let mut listed = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = get(
            restored.http_port,
            &format!("/v1/messages?limit=100{cursor}"),
            &key,
        );
        assert_eq!(r.status, 200, "{}", text(&r.body));
        let page = r.json();
        for m in page["messages"].as_array().unwrap() {
            listed.push(m["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    for id in &before {
        assert!(
            listed.contains(id),
            "{id} was acknowledged before the backup"
        );
    }
}

#[test]
fn the_admin_api_removes_what_the_cli_removes() {
    use posthorn_testkit::http::delete;
    let server = TestServer::start(Path::new(BIN), PLAINTEXT_AUTH);
    let port = server.http_port;
    let admin = server.admin_http_key();
    let base = format!("/v1/admin/accounts/{ACCOUNT}");
    assert_eq!(
        delete(port, &format!("{base}/labels/{LABEL}"), &admin).status,
        204
    );
    let again = delete(port, &format!("{base}/labels/{LABEL}"), &admin);
    assert_eq!(
        (again.status, again.error_code().as_str()),
        (404, "ResourceNotFound.Object")
    );
    // A domain with senders stays, with the code that says why.
    let busy = delete(port, &format!("{base}/domains/{DOMAIN}"), &admin);
    assert_eq!(busy.status, 409);
    assert_eq!(busy.error_code(), "ResourceInUse.HasDependents");
    // A removed sender cannot log in any more, at once.
    let (_, reply) = RawClient::login(server.submission_port, SENDER, SENDER_PASSWORD);
    assert!(reply.starts_with("235"), "{reply}");
    for sender in [SENDER, OTHER_SENDER] {
        assert_eq!(
            delete(port, &format!("{base}/senders/{sender}"), &admin).status,
            204
        );
    }
    let (_, reply) = RawClient::login(server.submission_port, SENDER, SENDER_PASSWORD);
    assert!(reply.starts_with("535"), "{reply}");
    assert_eq!(
        delete(port, &format!("{base}/domains/{DOMAIN}"), &admin).status,
        204
    );
    assert_eq!(
        delete(port, &format!("{base}/api-users/{API_USER}"), &admin).status,
        204
    );
    // Another account's objects are not found through this one.
    let other = delete(port, "/v1/admin/accounts/nobody/labels/1", &admin);
    assert_eq!(other.status, 404);
    assert_eq!(delete(port, &base, &admin).status, 204);
    assert_eq!(server.cli_ok(&["account", "list"]), "");
}

#[test]
fn domain_check_reads_the_records_from_dns() {
    use posthorn_testkit::dns::DnsServer;
    let dns = DnsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("posthorn.toml"),
        format!(
            "hostname = \"mail.example.com\"\n[delivery]\nnameservers = [\"{}\"]\n",
            dns.addr()
        ),
    )
    .unwrap();
    ok(run_in(d, None, &["account", "create", "shop"]));
    let records = ok(run_in(
        d,
        None,
        &["domain", "add", "example.com", "--account", "shop"],
    ));
    let dkim = records
        .lines()
        .find(|l| l.starts_with("posthorn._domainkey.example.com."))
        .unwrap();
    // The value as published: the zone line's quoted pieces joined.
    let value: String = dkim
        .split('"')
        .skip(1)
        .step_by(2)
        .collect::<Vec<_>>()
        .concat();

    // Nothing published: DKIM missing is a failure, with what to publish.
    let out = run_in(d, None, &["domain", "check", "example.com"]);
    let said = text(&out.stdout);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("dkim   missing"), "{said}");
    assert!(said.contains(&format!("expected:  {value}")), "{said}");
    refused(
        out,
        "DKIM record of example.com is not published as expected",
    );

    dns.set_txt("posthorn._domainkey.example.com", &[&value]);
    dns.set_txt("example.com", &["v=spf1 a:mail.example.com ~all"]);
    let said = ok(run_in(d, None, &["domain", "check", "example.com"]));
    assert!(said.contains("dkim   found"), "{said}");
    assert!(said.contains("spf    found"), "{said}");
    assert!(said.contains("dmarc  missing"), "{said}");
    refused(
        run_in(d, None, &["domain", "check", "nope.example"]),
        "no domain \"nope.example\"",
    );
}

#[test]
fn one_embedded_node_is_a_cluster_of_one_and_migrate_says_so() {
    let server = TestServer::start(Path::new(BIN), "");
    assert!(server.cli_ok(&["migrate"]).contains("schema up to date"));
    let node_id = std::fs::read_to_string(server.data_dir().join("node-id")).unwrap();
    // The first heartbeat is sent at start; allow for a slow machine.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let out = server.cli_ok(&["cluster", "status", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        if v["nodes"].as_array().is_some_and(|n| !n.is_empty()) {
            break v;
        }
        assert!(Instant::now() < deadline, "no heartbeat: {out}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let nodes = status["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{status}");
    assert_eq!(nodes[0]["id"], node_id.trim());
    assert_eq!(nodes[0]["alive"], true);
    assert_eq!(nodes[0]["leases"], 0);
    assert_eq!(status["node_timeout_secs"], 30);
    assert_eq!(status["queue"]["queued"], 0);
    // The HTTP admin API answers the same document.
    let http = get(
        server.http_port,
        "/v1/admin/cluster",
        &server.admin_http_key(),
    );
    assert_eq!(http.status, 200, "{}", String::from_utf8_lossy(&http.body));
    let v = http.json();
    assert_eq!(v["nodes"][0]["id"], nodes[0]["id"]);
    assert_eq!(v["queue"], status["queue"]);
}
