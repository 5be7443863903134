//! `posthorn store copy --to URL --schema NAME`: a node's store copied into
//! PostgreSQL by the command line, refused the second time. Runs when
//! `POSTHORN_TEST_POSTGRES_URL` is set; otherwise it says so and passes.

use posthorn_store::{PostgresStore, Store, TemplateStore};
use posthorn_testkit::cluster::PgClient;
use posthorn_testkit::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_posthorn");

/// A schema of the test database for this test, dropped before and after.
struct TestSchema {
    url: String,
    name: String,
}

impl TestSchema {
    fn new(url: String) -> Self {
        let schema = Self {
            url,
            name: format!("copy_cli_{}", std::process::id()),
        };
        schema.drop_it();
        schema
    }

    fn drop_it(&self) {
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name);
        if let Err(e) = PgClient::connect(&self.url).and_then(|mut c| c.execute(&sql)) {
            eprintln!("could not drop the test schema {}: {e}", self.name);
        }
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        self.drop_it();
    }
}

fn send(c: &mut RawClient) -> String {
    assert!(c.cmd(&format!("MAIL FROM:<{SENDER}>")).starts_with("250"));
    assert!(c.cmd("RCPT TO:<you@example.net>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(
        format!(
            "From: <{SENDER}>\r\nTo: <you@example.net>\r\nSubject: moving\r\n\r\nHello.\r\n.\r\n"
        )
        .as_bytes(),
    );
    queued_id(&c.read_reply())
}

#[test]
fn store_copy_fills_an_empty_postgres_database_once() {
    let Ok(url) = std::env::var("POSTHORN_TEST_POSTGRES_URL") else {
        eprintln!("skipped: POSTHORN_TEST_POSTGRES_URL is unset");
        return;
    };
    let schema = TestSchema::new(url.clone());
    let mut server = TestServer::start(Path::new(BIN), "allow_plaintext_auth_on_loopback = true");
    let mut c = server.logged_in();
    let id = send(&mut c);
    c.cmd("QUIT");
    assert!(
        server.terminate(Duration::from_secs(20)),
        "{}",
        server.log()
    );

    server.cli_ok(&[
        "template",
        "add",
        "welcome",
        "--account",
        ACCOUNT,
        "--subject",
        "Hi {{name}}",
        "--text",
        "Hello {{name}}",
    ]);

    let copy = ["store", "copy", "--to", &url, "--schema", &schema.name];
    let out = server.cli(&copy);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    println!("{stdout}");
    assert!(
        stdout.contains("1 account, 1 domain, 2 senders, 1 API user, 1 label")
            && stdout.contains(", 1 template"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 message (1 content kept, 0 attachments), 1 recipient"),
        "{stdout}"
    );
    assert!(stdout.contains("backend = \"postgres\""), "{stdout}");
    assert!(
        stdout.contains(&format!("schema = \"{}\"", schema.name)),
        "{stdout}"
    );

    // The message is there, queued, on the cluster's store.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pg = PostgresStore::open(&url, Some(&schema.name), 2)
            .await
            .unwrap();
        let m = pg.message(id.parse().unwrap()).await.unwrap();
        assert_eq!(m.account, ACCOUNT);
        assert_eq!(m.recipients[0].address, "you@example.net");
        assert_eq!(m.recipients[0].status.as_str(), "queued");
        assert!(!pg.message_content(m.id).await.unwrap().is_empty());
        let account = pg.account(ACCOUNT).await.unwrap();
        let t = pg.template_by_name(account.id, "welcome").await.unwrap();
        assert_eq!(t.text.as_deref(), Some("Hello {{name}}"));
    });

    // Again: refused, naming the database that is not empty.
    let again = server.cli(&copy);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success());
    assert!(
        stderr.contains(&format!(
            "the PostgreSQL database (schema \"{}\") already holds data (1 account, 1 message",
            schema.name
        )),
        "{stderr}"
    );
    assert!(stderr.contains("only fills an empty database"), "{stderr}");

    // With no store in the data directory there is nothing to copy, and
    // none is made.
    let empty = tempfile::tempdir().unwrap();
    let none = Command::new(BIN)
        .arg("--data-dir")
        .arg(empty.path())
        .args(copy)
        .output()
        .unwrap();
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("no store at"));
    assert!(!empty.path().join("posthorn.db").exists());
}
