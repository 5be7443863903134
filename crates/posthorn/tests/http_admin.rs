//! The admin routes over real HTTP against the real server: accounts and
//! their settings, domains with DKIM records and a DNS check against a real
//! name server on loopback, senders and API users whose returned secrets
//! work for SMTP AUTH, labels, the suppression list with its CSV export,
//! and HTTP API keys that work until revoked.

use posthorn_testkit::dns::DnsServer;
use posthorn_testkit::http::{delete, get, post_json, request, Response};
use posthorn_testkit::*;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_posthorn");
const PLAIN_AUTH: &str = "allow_plaintext_auth_on_loopback = true";
/// The `hostname` every test server has (the SPF record names it).
const HOSTNAME: &str = "posthorn.test";

fn start() -> TestServer {
    TestServer::start(BIN.as_ref(), PLAIN_AUTH)
}

fn put_json(port: u16, path: &str, key: &str, body: &Value) -> Response {
    let auth = format!("Bearer {key}");
    request(
        port,
        "PUT",
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
}

/// Assert the status (with the body in the message when it is another).
#[track_caller]
fn expect(r: &Response, status: u16) -> &Response {
    assert_eq!(
        r.status,
        status,
        "body: {}",
        String::from_utf8_lossy(&r.body)
    );
    r
}

#[track_caller]
fn expect_error(r: &Response, status: u16, code: &str) {
    expect(r, status);
    assert_eq!(r.error_code(), code);
}

fn smtp_login_ok(server: &TestServer, user: &str, password: &str) -> bool {
    let (_, reply) = RawClient::login(server.submission_port, user, password);
    if reply.starts_with("235 ") {
        return true;
    }
    assert!(reply.starts_with("535 "), "{reply}");
    false
}

fn setting<'a>(account: &'a Value, key: &str) -> &'a Value {
    account["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == key)
        .unwrap_or_else(|| panic!("no setting {key} in {account}"))
}

#[test]
fn admin_routes_need_the_admin_key() {
    let server = start();
    let port = server.http_port;
    let admin = server.admin_http_key();
    let account_key = server.http_key(ACCOUNT);

    let paths = [
        "/v1/admin/accounts".to_string(),
        format!("/v1/admin/accounts/{ACCOUNT}"),
        format!("/v1/admin/accounts/{ACCOUNT}/domains"),
        format!("/v1/admin/accounts/{ACCOUNT}/domains/{DOMAIN}"),
        format!("/v1/admin/accounts/{ACCOUNT}/domains/{DOMAIN}/check"),
        format!("/v1/admin/accounts/{ACCOUNT}/senders"),
        format!("/v1/admin/accounts/{ACCOUNT}/api-users"),
        format!("/v1/admin/accounts/{ACCOUNT}/labels"),
        format!("/v1/admin/accounts/{ACCOUNT}/suppressions"),
        format!("/v1/admin/accounts/{ACCOUNT}/suppressions.csv"),
        format!("/v1/admin/accounts/{ACCOUNT}/keys"),
    ];
    for path in &paths {
        let r = request(port, "GET", path, &[], b"");
        expect_error(&r, 401, "AuthFailure.MissingKey");
        expect_error(
            &get(
                port,
                path,
                "ph_aaaaaaaaaaaa_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            ),
            401,
            "AuthFailure.InvalidKey",
        );
        expect_error(
            &get(port, path, &account_key),
            403,
            "UnauthorizedOperation.AdminOnly",
        );
        expect(&get(port, path, &admin), 200);
    }
    // Nor may an account key write: refused before the body is read.
    for (method, path) in [
        ("POST", "/v1/admin/accounts".to_string()),
        ("POST", format!("/v1/admin/accounts/{ACCOUNT}/senders")),
        (
            "PUT",
            format!("/v1/admin/accounts/{ACCOUNT}/settings/max_attachments"),
        ),
        (
            "DELETE",
            format!("/v1/admin/accounts/{ACCOUNT}/keys/whatever"),
        ),
        (
            "DELETE",
            format!("/v1/admin/accounts/{ACCOUNT}/suppressions/a@b.c"),
        ),
    ] {
        let auth = format!("Bearer {account_key}");
        let r = request(
            port,
            method,
            &path,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            b"{}",
        );
        expect_error(&r, 403, "UnauthorizedOperation.AdminOnly");
    }

    // Every admin route is in the OpenAPI document, with the bearer scheme.
    let doc = request(port, "GET", "/openapi.json", &[], b"").json();
    for path in [
        "/v1/admin/accounts/{account}",
        "/v1/admin/accounts/{account}/settings/{key}",
        "/v1/admin/accounts/{account}/domains/{domain}/check",
        "/v1/admin/accounts/{account}/senders/{address}/password",
        "/v1/admin/accounts/{account}/suppressions.csv",
        "/v1/admin/accounts/{account}/keys/{id}",
    ] {
        let item = &doc["paths"][path];
        assert!(item.is_object(), "{path} is not documented");
        for (_, op) in item.as_object().unwrap() {
            assert_eq!(op["security"], json!([{"api_key": []}]), "{path}");
            assert!(op["responses"]["401"].is_object(), "{path}");
            assert!(op["responses"]["403"].is_object(), "{path}");
        }
    }
}

#[test]
fn accounts_list_create_show_and_settings() {
    let server = start();
    let port = server.http_port;
    let admin = server.admin_http_key();

    let r = post_json(port, "/v1/admin/accounts", &admin, &json!({"name": "blog"}));
    expect(&r, 201);
    assert_eq!(r.json()["name"], "blog");
    let names: Vec<Value> = get(port, "/v1/admin/accounts", &admin).json()["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("blog"), json!(ACCOUNT)]);

    expect_error(
        &post_json(port, "/v1/admin/accounts", &admin, &json!({"name": "blog"})),
        409,
        "ResourceInUse.Duplicate",
    );
    for bad in ["", "two words", "tab\there"] {
        expect_error(
            &post_json(port, "/v1/admin/accounts", &admin, &json!({"name": bad})),
            400,
            "InvalidParameter.Value",
        );
    }
    expect_error(
        &post_json(
            port,
            "/v1/admin/accounts",
            &admin,
            &json!({"name": "x", "extra": 1}),
        ),
        400,
        "InvalidParameter.Json",
    );

    // Show: domains, usage, every setting with its default.
    let (mut c, reply) = RawClient::login(server.submission_port, SENDER, SENDER_PASSWORD);
    assert!(reply.starts_with("235 "), "{reply}");
    assert!(c.cmd(&format!("MAIL FROM:<{SENDER}>")).starts_with("250"));
    assert!(c.cmd("RCPT TO:<to@example.net>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(
        b"From: <app@example.com>\r\nTo: <to@example.net>\r\nSubject: hi\r\n\r\nHello.\r\n.\r\n",
    );
    queued_id(&c.read_reply());

    let show = get(port, &format!("/v1/admin/accounts/{ACCOUNT}"), &admin);
    let a = expect(&show, 200).json();
    assert_eq!(a["name"], ACCOUNT);
    assert_eq!(a["domains"], json!([DOMAIN]));
    assert_eq!(a["usage"]["last_minute"], 1);
    assert_eq!(a["usage"]["last_day"], 1);
    assert_eq!(
        a["settings"].as_array().unwrap().len(),
        13,
        "every key of posthorn account set: {a}"
    );
    // The test server lifted this one with `account set`.
    let mps = setting(&a, "messages_per_second");
    assert_eq!(mps["value"], 0);
    assert_eq!(mps["default"], 20);
    assert_eq!(mps["overridden"], true);
    let att = setting(&a, "max_attachments");
    assert_eq!(att["overridden"], false);
    assert_eq!(att["value"], att["default"]);

    // Set (as a string or a number), see it in show and in the CLI.
    let path = format!("/v1/admin/accounts/{ACCOUNT}/settings/max_attachments");
    let r = put_json(port, &path, &admin, &json!({"value": "3"}));
    let v = expect(&r, 200).json();
    assert_eq!(v["value"], 3);
    assert_eq!(v["overridden"], true);
    let r = put_json(port, &path, &admin, &json!({"value": 4}));
    assert_eq!(expect(&r, 200).json()["value"], 4);
    let a = get(port, &format!("/v1/admin/accounts/{ACCOUNT}"), &admin).json();
    assert_eq!(setting(&a, "max_attachments")["value"], 4);
    assert_eq!(setting(&a, "max_attachments")["overridden"], true);
    let cli = server.cli_ok(&["account", "show", ACCOUNT]);
    assert!(
        cli.lines().any(|l| l.contains("max_attachments ")
            && l.contains(" 4 ")
            && l.contains("(set for this account)")),
        "{cli}"
    );

    // Clear: back to the default.
    let r = delete(port, &path, &admin);
    let v = expect(&r, 200).json();
    assert_eq!(v["overridden"], false);
    assert_eq!(v["value"], v["default"]);
    let a = get(port, &format!("/v1/admin/accounts/{ACCOUNT}"), &admin).json();
    assert_eq!(setting(&a, "max_attachments")["overridden"], false);

    // Bad values, unknown keys and accounts.
    for bad in [json!({"value": "lots"}), json!({"value": -1}), json!({})] {
        let r = put_json(port, &path, &admin, &bad);
        assert_eq!(r.status, 400, "{bad}: {}", String::from_utf8_lossy(&r.body));
    }
    expect_error(
        &put_json(
            port,
            &format!("/v1/admin/accounts/{ACCOUNT}/settings/bounce_notices"),
            &admin,
            &json!({"value": "2"}),
        ),
        400,
        "InvalidParameter.Value",
    );
    expect_error(
        &put_json(
            port,
            &format!("/v1/admin/accounts/{ACCOUNT}/settings/no_such_key"),
            &admin,
            &json!({"value": "1"}),
        ),
        404,
        "ResourceNotFound.Object",
    );
    expect_error(
        &put_json(
            port,
            "/v1/admin/accounts/nope/settings/max_attachments",
            &admin,
            &json!({"value": "1"}),
        ),
        404,
        "ResourceNotFound.Object",
    );
    for path in [
        "/v1/admin/accounts/nope",
        "/v1/admin/accounts/nope/domains",
        "/v1/admin/accounts/nope/senders",
        "/v1/admin/accounts/nope/api-users",
        "/v1/admin/accounts/nope/labels",
        "/v1/admin/accounts/nope/suppressions",
        "/v1/admin/accounts/nope/suppressions.csv",
        "/v1/admin/accounts/nope/keys",
        "/v1/admin/accounts/%E2%82%AC%20x",
    ] {
        expect_error(&get(port, path, &admin), 404, "ResourceNotFound.Object");
    }
}

/// The TXT value of the record with this purpose.
fn record<'a>(records: &'a Value, purpose: &str) -> &'a Value {
    records
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["purpose"] == purpose)
        .unwrap_or_else(|| panic!("no {purpose} record in {records}"))
}

#[test]
fn domains_records_and_the_dns_check() {
    let dns = DnsServer::start();
    let server = TestServer::start(
        BIN.as_ref(),
        &format!(
            "{PLAIN_AUTH}\n[delivery]\nenabled = false\nnameservers = [\"{}\"]\n",
            dns.addr()
        ),
    );
    let port = server.http_port;
    let admin = server.admin_http_key();
    let base = format!("/v1/admin/accounts/{ACCOUNT}/domains");

    let list = get(port, &base, &admin).json();
    assert_eq!(list["domains"][0]["domain"], DOMAIN);
    assert_eq!(list["domains"][0]["algorithm"], "rsa");
    assert_eq!(list["domains"][0]["selector"], "posthorn");

    // Add: RSA by default, Ed25519 on request; names are normalized.
    let r = post_json(port, &base, &admin, &json!({"domain": "Mail.Example.ORG."}));
    let added = expect(&r, 201).json();
    assert_eq!(added["domain"], "mail.example.org");
    assert_eq!(added["algorithm"], "rsa");
    let dkim = record(&added["records"], "dkim");
    assert_eq!(dkim["name"], "posthorn._domainkey.mail.example.org");
    assert_eq!(dkim["type"], "TXT");
    assert_eq!(dkim["required"], true);
    assert!(dkim["value"]
        .as_str()
        .unwrap()
        .starts_with("v=DKIM1; k=rsa; p=MII"));
    assert_eq!(
        record(&added["records"], "spf")["value"],
        format!("v=spf1 a:{HOSTNAME} ~all")
    );
    assert_eq!(
        record(&added["records"], "dmarc")["value"],
        "v=DMARC1; p=none; rua=mailto:dmarc@mail.example.org"
    );
    // The zone text is what the CLI prints (with the same config).
    let config = server.data_dir().join("posthorn.toml");
    assert_eq!(
        added["zone"].as_str().unwrap(),
        server.cli_ok(&[
            "--config",
            config.to_str().unwrap(),
            "domain",
            "records",
            "mail.example.org"
        ])
    );

    let r = post_json(
        port,
        &base,
        &admin,
        &json!({"domain": "ed.example.org", "dkim": "ed25519"}),
    );
    let ed = expect(&r, 201).json();
    assert_eq!(ed["algorithm"], "ed25519");
    assert!(record(&ed["records"], "dkim")["value"]
        .as_str()
        .unwrap()
        .starts_with("v=DKIM1; k=ed25519; p="));

    expect_error(
        &post_json(port, &base, &admin, &json!({"domain": "example.com"})),
        409,
        "ResourceInUse.Duplicate",
    );
    for bad in ["localhost", "bad_domain.com", "-x.example", ""] {
        expect_error(
            &post_json(port, &base, &admin, &json!({"domain": bad})),
            400,
            "InvalidParameter.Value",
        );
    }
    expect_error(
        &post_json(
            port,
            &base,
            &admin,
            &json!({"domain": "x.example", "dkim": "dsa"}),
        ),
        400,
        "InvalidParameter.Json",
    );
    expect_error(
        &post_json(
            port,
            "/v1/admin/accounts/nope/domains",
            &admin,
            &json!({"domain": "x.example"}),
        ),
        404,
        "ResourceNotFound.Object",
    );

    // Show; another account's domain, or none, is not found.
    let shown = get(port, &format!("{base}/{DOMAIN}"), &admin);
    let shown = expect(&shown, 200).json();
    assert_eq!(shown["domain"], DOMAIN);
    assert_eq!(shown["records"].as_array().unwrap().len(), 3);
    expect(
        &post_json(
            port,
            "/v1/admin/accounts",
            &admin,
            &json!({"name": "other"}),
        ),
        201,
    );
    for path in [
        format!("{base}/nope.example"),
        format!("{base}/nope.example/check"),
        format!("/v1/admin/accounts/other/domains/{DOMAIN}"),
        format!("/v1/admin/accounts/other/domains/{DOMAIN}/check"),
    ] {
        expect_error(&get(port, &path, &admin), 404, "ResourceNotFound.Object");
    }

    // Nothing published: every record missing, with the expected values.
    let check = get(port, &format!("{base}/{DOMAIN}/check"), &admin);
    let c = expect(&check, 200).json();
    assert_eq!(c["all_found"], false);
    assert_eq!(c["dkim_ok"], false);
    for purpose in ["dkim", "spf", "dmarc"] {
        let r = record(&c["records"], purpose);
        assert_eq!(r["status"], "missing", "{r}");
        assert_eq!(r["expected"], record(&shown["records"], purpose)["value"]);
    }

    // The DKIM key as expected (split into 255-byte strings by the
    // server), an SPF record that does not name us, no DMARC.
    let dkim_value = record(&shown["records"], "dkim")["value"]
        .as_str()
        .unwrap()
        .to_string();
    dns.set_txt(&format!("posthorn._domainkey.{DOMAIN}"), &[&dkim_value]);
    dns.set_txt(DOMAIN, &["v=spf1 -all", "google-site-verification=abc"]);
    let c = get(port, &format!("{base}/{DOMAIN}/check"), &admin).json();
    assert_eq!(record(&c["records"], "dkim")["status"], "found", "{c}");
    let spf = record(&c["records"], "spf");
    assert_eq!(spf["status"], "different", "{c}");
    assert_eq!(spf["published"], json!(["v=spf1 -all"]));
    assert_eq!(record(&c["records"], "dmarc")["status"], "missing", "{c}");
    assert_eq!(c["dkim_ok"], true);
    assert_eq!(c["all_found"], false);

    // Another domain's key at our name is different; then all found.
    let other_key = record(&added["records"], "dkim")["value"]
        .as_str()
        .unwrap()
        .to_string();
    dns.set_txt(&format!("posthorn._domainkey.{DOMAIN}"), &[&other_key]);
    let c = get(port, &format!("{base}/{DOMAIN}/check"), &admin).json();
    assert_eq!(record(&c["records"], "dkim")["status"], "different", "{c}");
    assert_eq!(c["dkim_ok"], false);

    dns.set_txt(&format!("posthorn._domainkey.{DOMAIN}"), &[&dkim_value]);
    dns.set_txt(DOMAIN, &[&format!("v=spf1 a:{HOSTNAME} ~all")]);
    dns.set_txt(
        &format!("_dmarc.{DOMAIN}"),
        &[&format!("v=DMARC1; p=none; rua=mailto:dmarc@{DOMAIN}")],
    );
    let c = get(port, &format!("{base}/{DOMAIN}/check"), &admin).json();
    assert_eq!(c["all_found"], true, "{c}");
    let asked: Vec<String> = dns.queries().into_iter().map(|(name, _)| name).collect();
    assert!(asked.contains(&format!("_dmarc.{DOMAIN}")), "{asked:?}");

    // A name server failure is not "missing".
    dns.fail(&format!("_dmarc.{DOMAIN}"));
    let c = get(port, &format!("{base}/{DOMAIN}/check"), &admin).json();
    assert_eq!(
        record(&c["records"], "dmarc")["status"],
        "unresolved",
        "{c}"
    );
}

#[test]
fn senders_api_users_and_labels() {
    let server = start();
    let port = server.http_port;
    let admin = server.admin_http_key();
    let senders = format!("/v1/admin/accounts/{ACCOUNT}/senders");

    let list = get(port, &senders, &admin).json();
    assert_eq!(
        list["senders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["address"].clone())
            .collect::<Vec<_>>(),
        vec![json!(SENDER), json!(OTHER_SENDER)]
    );

    // Generated: returned once, and it works for SMTP AUTH.
    let r = post_json(
        port,
        &senders,
        &admin,
        &json!({"address": "new@example.com"}),
    );
    let created = expect(&r, 201).json();
    assert_eq!(created["address"], "new@example.com");
    let password = created["password"].as_str().unwrap().to_string();
    assert!(password.len() >= 20, "{password}");
    assert!(smtp_login_ok(&server, "new@example.com", &password));
    assert!(!smtp_login_ok(&server, "new@example.com", "wrong-password"));
    let list = get(port, &senders, &admin).json();
    assert!(list["senders"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["address"] == "new@example.com" && s["created_at"].is_string()));
    assert!(!list.to_string().contains(&password));

    // Given: not echoed.
    let r = post_json(
        port,
        &senders,
        &admin,
        &json!({"address": "given@example.com", "password": "given-secret-1"}),
    );
    assert_eq!(
        expect(&r, 201).json(),
        json!({"address": "given@example.com"})
    );
    assert!(smtp_login_ok(
        &server,
        "given@example.com",
        "given-secret-1"
    ));

    // Set a password: generated (the old one stops working), then given.
    let pw = format!("{senders}/new@example.com/password");
    let r = post_json(port, &pw, &admin, &json!({}));
    let new_password = expect(&r, 200).json()["password"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_password, password);
    assert!(!smtp_login_ok(&server, "new@example.com", &password));
    assert!(smtp_login_ok(&server, "new@example.com", &new_password));
    let r = post_json(port, &pw, &admin, &json!({"password": "chosen-pass-9"}));
    assert_eq!(
        expect(&r, 200).json(),
        json!({"address": "new@example.com"})
    );
    assert!(smtp_login_ok(&server, "new@example.com", "chosen-pass-9"));
    expect_error(
        &post_json(port, &pw, &admin, &json!({"password": "short"})),
        400,
        "InvalidParameter.Value",
    );
    expect_error(
        &post_json(
            port,
            &format!("{senders}/nobody@example.com/password"),
            &admin,
            &json!({}),
        ),
        404,
        "ResourceNotFound.Object",
    );
    // Another account cannot reach this account's sender.
    expect(
        &post_json(
            port,
            "/v1/admin/accounts",
            &admin,
            &json!({"name": "other"}),
        ),
        201,
    );
    expect_error(
        &post_json(
            port,
            "/v1/admin/accounts/other/senders/new@example.com/password",
            &admin,
            &json!({}),
        ),
        404,
        "ResourceNotFound.Object",
    );

    // Refusals.
    expect_error(
        &post_json(
            port,
            &senders,
            &admin,
            &json!({"address": "new@example.com"}),
        ),
        409,
        "ResourceInUse.Duplicate",
    );
    for bad in ["no-at-sign", "a@other.org", "a b@example.com", "a@"] {
        expect_error(
            &post_json(port, &senders, &admin, &json!({"address": bad})),
            400,
            "InvalidParameter.Value",
        );
    }
    expect_error(
        &post_json(
            port,
            &senders,
            &admin,
            &json!({"address": "x@example.com", "password": "short"}),
        ),
        400,
        "InvalidParameter.Value",
    );

    // API users: the generated key logs in over SMTP.
    let users = format!("/v1/admin/accounts/{ACCOUNT}/api-users");
    let r = post_json(port, &users, &admin, &json!({"name": "backend"}));
    let created = expect(&r, 201).json();
    assert_eq!(created["name"], "backend");
    let key = created["key"].as_str().unwrap().to_string();
    assert!(smtp_login_ok(&server, "backend", &key));
    assert!(smtp_login_ok(&server, &format!("backend#{LABEL}"), &key));
    let names: Vec<Value> = get(port, &users, &admin).json()["api_users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].clone())
        .collect();
    assert_eq!(names, vec![json!(API_USER), json!("backend")]);
    expect_error(
        &post_json(port, &users, &admin, &json!({"name": "backend"})),
        409,
        "ResourceInUse.Duplicate",
    );
    for bad in ["a#b", "a@b", "with space", ""] {
        expect_error(
            &post_json(port, &users, &admin, &json!({"name": bad})),
            400,
            "InvalidParameter.Value",
        );
    }

    // Labels.
    let labels = format!("/v1/admin/accounts/{ACCOUNT}/labels");
    let r = post_json(port, &labels, &admin, &json!({"label": "newsletter"}));
    assert_eq!(expect(&r, 201).json()["label"], "newsletter");
    let listed: Vec<Value> = get(port, &labels, &admin).json()["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["label"].clone())
        .collect();
    assert_eq!(listed, vec![json!(LABEL), json!("newsletter")]);
    assert!(smtp_login_ok(
        &server,
        &format!("{SENDER}#newsletter"),
        SENDER_PASSWORD
    ));
    expect_error(
        &post_json(port, &labels, &admin, &json!({"label": "newsletter"})),
        409,
        "ResourceInUse.Duplicate",
    );
    for bad in ["a#b", "two words", ""] {
        expect_error(
            &post_json(port, &labels, &admin, &json!({"label": bad})),
            400,
            "InvalidParameter.Value",
        );
    }
    expect_error(
        &post_json(
            port,
            "/v1/admin/accounts/nope/labels",
            &admin,
            &json!({"label": "x"}),
        ),
        404,
        "ResourceNotFound.Object",
    );
}

#[test]
fn suppression_list_and_csv_export() {
    let server = start();
    let port = server.http_port;
    let admin = server.admin_http_key();
    let base = format!("/v1/admin/accounts/{ACCOUNT}/suppressions");

    assert_eq!(get(port, &base, &admin).json(), json!({"suppressions": []}));
    let tricky = "550 5.1.1 <gone@example.net>: no such user, \"really\"";
    let r = post_json(
        port,
        &base,
        &admin,
        &json!({"address": "gone@example.net", "reason": tricky}),
    );
    let added = expect(&r, 201).json();
    assert_eq!(added["address"], "gone@example.net");
    assert_eq!(added["reason"], tricky);
    assert_eq!(added["message_id"], Value::Null);
    let r = post_json(
        port,
        &base,
        &admin,
        &json!({"address": "plain@example.net"}),
    );
    assert_eq!(expect(&r, 201).json()["reason"], "added by operator");
    // Again: the reason is updated, 200.
    let r = post_json(
        port,
        &base,
        &admin,
        &json!({"address": "plain@example.net", "reason": "asked to stop"}),
    );
    assert_eq!(expect(&r, 200).json()["reason"], "asked to stop");

    let list = get(port, &base, &admin).json();
    let addresses: Vec<&str> = list["suppressions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["address"].as_str().unwrap())
        .collect();
    assert_eq!(addresses, ["gone@example.net", "plain@example.net"]);

    // The server refuses the recipient now.
    let mut c = server.logged_in();
    assert!(c.cmd(&format!("MAIL FROM:<{SENDER}>")).starts_with("250"));
    let reply = c.cmd("RCPT TO:<gone@example.net>");
    assert!(reply.starts_with("550"), "{reply}");

    // CSV: a header, RFC 4180 quoting of the comma and the quotes.
    let r = get(port, &format!("{base}.csv"), &admin);
    expect(&r, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/csv"));
    assert!(r
        .header("content-disposition")
        .unwrap()
        .contains("suppressions-shop.csv"));
    let csv = String::from_utf8(r.body.clone()).unwrap();
    let lines: Vec<&str> = csv.split("\r\n").collect();
    assert_eq!(lines[0], "address,reason,message_id,created_at");
    let created = list["suppressions"][0]["created_at"].as_str().unwrap();
    assert_eq!(
        lines[1],
        format!(
            "gone@example.net,\"550 5.1.1 <gone@example.net>: no such user, \"\"really\"\"\",,{created}"
        )
    );
    assert!(
        lines[2].starts_with("plain@example.net,asked to stop,,"),
        "{csv}"
    );
    assert_eq!(lines[3], "");
    assert_eq!(lines.len(), 4);

    // Remove; then it is not there.
    expect(
        &delete(port, &format!("{base}/gone@example.net"), &admin),
        204,
    );
    expect_error(
        &delete(port, &format!("{base}/gone@example.net"), &admin),
        404,
        "ResourceNotFound.Object",
    );
    assert_eq!(
        get(port, &base, &admin).json()["suppressions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    for bad in [
        json!({"address": "no-at"}),
        json!({"address": "a b@example.net"}),
        json!({"address": "a@example.net", "reason": "two\nlines"}),
        json!({"address": "a@example.net", "reason": "  "}),
        json!({"address": "a@example.net", "reason": "x".repeat(513)}),
    ] {
        expect_error(
            &post_json(port, &base, &admin, &bad),
            400,
            "InvalidParameter.Value",
        );
    }
    expect_error(
        &post_json(port, &base, &admin, &json!({"adress": "typo@example.net"})),
        400,
        "InvalidParameter.Json",
    );
    expect_error(
        &delete(port, "/v1/admin/accounts/nope/suppressions/a@b.c", &admin),
        404,
        "ResourceNotFound.Object",
    );
}

#[test]
fn http_keys_work_until_revoked() {
    let server = start();
    let port = server.http_port;
    let admin = server.admin_http_key();
    let base = format!("/v1/admin/accounts/{ACCOUNT}/keys");

    let r = post_json(port, &base, &admin, &json!({"description": "shop backend"}));
    let created = expect(&r, 201).json();
    let key = created["key"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    assert!(key.starts_with(&format!("ph_{id}_")), "{key}");
    assert_eq!(created["description"], "shop backend");

    // It acts as the account.
    expect(&get(port, "/v1/messages", &key), 200);
    expect_error(
        &get(port, "/v1/admin/accounts", &key),
        403,
        "UnauthorizedOperation.AdminOnly",
    );

    let list = get(port, &base, &admin).json();
    let keys = list["keys"].as_array().unwrap();
    let mine = keys.iter().find(|k| k["id"] == id.as_str()).unwrap();
    assert_eq!(mine["description"], "shop backend");
    assert!(mine["created_at"].is_string());
    assert!(!list.to_string().contains(&key));

    // A key of another account cannot be revoked through this one.
    expect(
        &post_json(
            port,
            "/v1/admin/accounts",
            &admin,
            &json!({"name": "other"}),
        ),
        201,
    );
    expect_error(
        &delete(port, &format!("/v1/admin/accounts/other/keys/{id}"), &admin),
        404,
        "ResourceNotFound.Object",
    );
    expect(&get(port, "/v1/messages", &key), 200);

    // Revoked: refused at once (the verified-key cache is told).
    expect(&delete(port, &format!("{base}/{id}"), &admin), 204);
    expect_error(
        &get(port, "/v1/messages", &key),
        401,
        "AuthFailure.InvalidKey",
    );
    expect_error(
        &delete(port, &format!("{base}/{id}"), &admin),
        404,
        "ResourceNotFound.Object",
    );
    assert!(!get(port, &base, &admin).json().to_string().contains(&id));

    // No description is fine; a multi-line one is not.
    expect(&post_json(port, &base, &admin, &json!({})), 201);
    expect_error(
        &post_json(port, &base, &admin, &json!({"description": "a\nb"})),
        400,
        "InvalidParameter.Value",
    );
    expect_error(
        &post_json(port, "/v1/admin/accounts/nope/keys", &admin, &json!({})),
        404,
        "ResourceNotFound.Object",
    );
}
