//! The web console (issue 21) in a real browser: headless Chromium driven
//! over WebDriver (fantoccini) against a real `posthorn serve`.
//!
//! Each test starts `chromedriver` on a free port itself and is SKIPPED
//! (with a message) when it is not installed (`apt-get install chromium
//! chromium-driver`; `.ci/run` installs them). Every wait is bounded. Any
//! error in the browser's console fails a test (read through
//! chromedriver's log endpoint, `goog:loggingPrefs` browser ALL), and a
//! failing test saves a screenshot under `target/console-screenshots/`.
//!
//! `POSTHORN_CONSOLE_SCREENSHOT=path.png` makes the scenario save the
//! messages page there (how `docs/console-messages.png` is made).

use fantoccini::{Client, ClientBuilder, Locator};
use lettre::message::{header::ContentType, Mailbox, Message, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{SmtpTransport, Transport};
use posthorn_testkit::{free_port, TestServer, ACCOUNT};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

type R<T = ()> = Result<T, String>;

/// The longest any one wait takes.
const WAIT: Duration = Duration::from_secs(10);

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_posthorn"))
}

fn chromedriver() -> Option<PathBuf> {
    ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// chromedriver, killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser session, or `None` (the test is skipped) without
/// chromedriver.
async fn browser(test: &str) -> Option<(Driver, Client)> {
    let (Some(driver), Some(chrome)) = (chromedriver(), chromium()) else {
        println!(
            "SKIPPED {test}: chromedriver/chromium not installed (apt-get install chromium chromium-driver)"
        );
        return None;
    };
    let port = free_port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver { child, port };
    let caps: serde_json::Map<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chrome,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--lang=en-US"],
        },
        "goog:loggingPrefs": {"browser": "ALL"},
    }))
    .expect("capabilities");
    let started = Instant::now();
    loop {
        match ClientBuilder::rustls()
            .expect("rustls client")
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => return Some((driver, c)),
            Err(e) if started.elapsed() < Duration::from_secs(20) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("chromedriver did not start a session: {e}"),
        }
    }
}

/// The browser console's entries since the last call: (level, message).
async fn browser_log(driver: &Driver, client: &Client) -> Vec<(String, String)> {
    let Ok(id) = client.session_id().await else {
        return Vec::new();
    };
    let Some(id) = id else {
        return Vec::new();
    };
    let port = driver.port;
    let body = tokio::task::spawn_blocking(move || log_request(port, &id))
        .await
        .expect("log request");
    let json: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => panic!(
            "chromedriver's log endpoint answered no JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        ),
    };
    json["value"]
        .as_array()
        .unwrap_or_else(|| panic!("chromedriver's log endpoint: {json}"))
        .iter()
        .map(|e| {
            (
                e["level"].as_str().unwrap_or("").to_string(),
                e["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// `POST /session/{id}/se/log` (chromedriver's log endpoint, which
/// WebDriver clients do not wrap): the answer's body, read by its
/// Content-Length (chromedriver keeps the connection open).
fn log_request(port: u16, session: &str) -> Vec<u8> {
    use std::io::{BufRead, BufReader, Read, Write};
    let body = br#"{"type":"browser"}"#;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect chromedriver");
    s.set_read_timeout(Some(WAIT)).unwrap();
    let head = format!(
        "POST /session/{session}/se/log HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut r = BufReader::new(s);
    let mut length = 0;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("chromedriver's answer");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((n, v)) = line.split_once(':') {
            if n.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut out = vec![0; length];
    r.read_exact(&mut out).expect("chromedriver's answer body");
    out
}

/// Fails on any error in the browser's console since the last check.
async fn no_console_errors(driver: &Driver, client: &Client, step: &str) -> R {
    let errors: Vec<_> = browser_log(driver, client)
        .await
        .into_iter()
        .filter(|(level, _)| level == "SEVERE" || level == "WARNING")
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("browser console errors after {step}: {errors:?}"))
    }
}

/// Save a screenshot of the page; its path.
async fn screenshot(client: &Client, name: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots");
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join(format!("{name}.png"));
    let png = client.screenshot().await.ok()?;
    std::fs::write(&path, png).ok()?;
    Some(path)
}

/// Run a scenario; on failure save a screenshot, print its path and fail.
async fn run(name: &str, driver: Driver, client: Client, scenario: R) {
    if let Err(e) = scenario {
        let shot = screenshot(&client, name).await;
        let url = client.current_url().await.map(|u| u.to_string());
        let _ = client.close().await;
        drop(driver);
        match shot {
            Some(p) => panic!("{e}\n(at {url:?}; screenshot: {})", p.display()),
            None => panic!("{e}\n(at {url:?}; no screenshot could be taken)"),
        }
    }
    let _ = client.close().await;
    drop(driver);
}

fn err<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

async fn find(c: &Client, css: &str) -> R<fantoccini::elements::Element> {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .map_err(err(css))
}

async fn text(c: &Client, css: &str) -> R<String> {
    find(c, css).await?.text().await.map_err(err(css))
}

async fn goto(c: &Client, url: &str) -> R {
    c.goto(url).await.map_err(err(url))
}

async fn fill(c: &Client, css: &str, value: &str) -> R {
    let e = find(c, css).await?;
    e.clear().await.map_err(err(css))?;
    e.send_keys(value).await.map_err(err(css))
}

/// Click `e` and wait until the page it was on is gone (a link or a
/// form's submission), so what is read next is the new page's.
async fn click_away(c: &Client, e: fantoccini::elements::Element, what: &str) -> R {
    let old = c.find(Locator::Css("html")).await.map_err(err("html"))?;
    e.click().await.map_err(err(what))?;
    let started = Instant::now();
    while old.tag_name().await.is_ok() {
        if started.elapsed() > WAIT {
            return Err(format!("clicking {what} did not load a page"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Click the element at `css`, which leads to another page.
async fn click(c: &Client, css: &str) -> R {
    let e = find(c, css).await?;
    click_away(c, e, css).await
}

/// Click the element at the XPath `xpath`, which leads to another page.
async fn click_x(c: &Client, xpath: &str) -> R {
    let e = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(xpath))
        .await
        .map_err(err(xpath))?;
    click_away(c, e, xpath).await
}

/// Choose `value` in the `select` at `css`.
async fn choose(c: &Client, css: &str, value: &str) -> R {
    find(c, css)
        .await?
        .select_by_value(value)
        .await
        .map_err(err(css))
}

/// Wait until the page's text has `want` (reloading when `reload`).
async fn wait_text(c: &Client, want: &str, reload: bool) -> R {
    let started = Instant::now();
    loop {
        let body = text(c, "body").await?;
        if body.contains(want) {
            return Ok(());
        }
        if started.elapsed() > WAIT {
            return Err(format!("{want:?} not on the page; it reads:\n{body}"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        if reload {
            c.refresh().await.map_err(err("refresh"))?;
        }
    }
}

async fn sign_in(c: &Client, base: &str, key: &str) -> R {
    goto(c, &format!("{base}/signin")).await?;
    // The field is found by its label, as a person would.
    let label = c
        .find(Locator::XPath("//label[normalize-space()='API key']"))
        .await
        .map_err(err("label API key"))?;
    let id = label
        .attr("for")
        .await
        .map_err(err("label for"))?
        .ok_or("the API key label names no field")?;
    fill(c, &format!("#{id}"), key).await?;
    click_x(c, "//button[normalize-space()='Sign in']").await?;
    find(c, "form.signout").await?;
    Ok(())
}

/// Send over STARTTLS with AUTH; the queued id.
fn smtp_send(port: u16, user: &str, password: &str, msg: Message) -> R<String> {
    let tls = TlsParameters::builder("localhost".to_string())
        .dangerous_accept_invalid_certs(true)
        .build_rustls()
        .map_err(err("tls"))?;
    let transport = SmtpTransport::builder_dangerous("127.0.0.1")
        .port(port)
        .tls(Tls::Required(tls))
        .credentials(Credentials::new(user.to_string(), password.to_string()))
        .timeout(Some(Duration::from_secs(10)))
        .build();
    let response = transport.send(&msg).map_err(err("SMTP send"))?;
    let id = response.message().find_map(|l| {
        l.split_once("queued as ")
            .map(|(_, id)| id.trim().to_string())
    });
    id.ok_or_else(|| format!("no queued id in {response:?}"))
}

async fn send(port: u16, user: &str, password: &str, msg: Message) -> R<String> {
    let (user, password) = (user.to_string(), password.to_string());
    tokio::task::spawn_blocking(move || smtp_send(port, &user, &password, msg))
        .await
        .map_err(err("send task"))?
}

fn start_server() -> TestServer {
    TestServer::start(
        bin(),
        "[delivery]\nmode = \"capture\"\n[webhooks]\nallow_private_networks = true\n",
    )
}

const NAV_BUILT: &[&str] = &[
    "Overview",
    "Messages",
    "Domains",
    "Senders",
    "API users",
    "Labels",
    "API keys",
    "Suppressions",
    "Webhooks",
    "Statistics",
    "Accounts",
];
/// Every page of the issue is built; this list stays for the next one.
const NAV_NOT_BUILT: &[&str] = &[];

async fn scenario(driver: &Driver, c: &Client, server: &TestServer) -> R {
    let base = format!("http://127.0.0.1:{}", server.http_port);
    let admin_key = server.admin_http_key();
    server.cli_ok(&["account", "create", "rival"]);
    let rival_key = server.http_key("rival");

    // Sign in with the admin key.
    sign_in(c, &base, &admin_key).await?;
    for name in NAV_BUILT {
        c.find(Locator::LinkText(name))
            .await
            .map_err(err(&format!("nav link {name}")))?;
    }
    for name in NAV_NOT_BUILT {
        if c.find(Locator::LinkText(name)).await.is_ok() {
            return Err(format!("a nav link {name:?} to a page that is not built"));
        }
    }
    no_console_errors(driver, c, "sign-in").await?;
    // The log is really read: an error the page logs is seen.
    c.execute("console.error('posthorn-log-probe')", vec![])
        .await
        .map_err(err("probe"))?;
    let probe = browser_log(driver, c).await;
    if !probe
        .iter()
        .any(|(l, m)| l == "SEVERE" && m.contains("posthorn-log-probe"))
    {
        return Err(format!("the browser log is not being read: {probe:?}"));
    }

    // Add a domain; its DKIM record is shown.
    click(c, "header nav a[href='/domains']").await?;
    choose(c, "form.add select[name=account]", ACCOUNT).await?;
    fill(c, "form.add input[name=domain]", "console.test").await?;
    click(c, "form.add button[type=submit]").await?;
    let dkim = text(c, "#records tr[data-purpose=dkim]").await?;
    if !(dkim.contains("_domainkey.console.test") && dkim.contains("v=DKIM1")) {
        return Err(format!("no DKIM record shown: {dkim}"));
    }
    no_console_errors(driver, c, "adding a domain").await?;

    // Add a sender (password generated, shown once), then set a new one.
    goto(c, &format!("{base}/senders")).await?;
    choose(c, "form.add select[name=account]", ACCOUNT).await?;
    fill(c, "form.add input[name=address]", "hello@console.test").await?;
    click(c, "form.add button[type=submit]").await?;
    let first = text(c, "#new-secret").await?;
    let row = "//table[@id='senders']//tr[td[normalize-space()='hello@console.test']]";
    click_x(c, &format!("{row}//button")).await?;
    let password = text(c, "#new-secret").await?;
    if password == first || password.len() < 16 {
        return Err(format!(
            "no new password shown: {first:?} then {password:?}"
        ));
    }
    no_console_errors(driver, c, "senders").await?;

    // Send with it over STARTTLS + AUTH.
    let msg = Message::builder()
        .from("Console <hello@console.test>".parse::<Mailbox>().unwrap())
        .to("alice@dest.test".parse().unwrap())
        .to("bob@dest.test".parse().unwrap())
        .subject("Console hello")
        .header(ContentType::TEXT_PLAIN)
        .body(String::from("Hello from the console test.\r\n"))
        .map_err(err("message"))?;
    let id = send(server.submission_port, "hello@console.test", &password, msg).await?;

    // Find it by recipient; open it; each recipient's status and reply.
    click(c, "header nav a[href='/messages']").await?;
    fill(c, "form.search input[name=recipient]", "bob@dest.test").await?;
    click(c, "form.search button[type=submit]").await?;
    let rows = c
        .find_all(Locator::Css("#messages tbody tr"))
        .await
        .map_err(err("rows"))?;
    if rows.len() != 1 {
        return Err(format!("{} rows for bob@dest.test", rows.len()));
    }
    if let Ok(path) = std::env::var("POSTHORN_CONSOLE_SCREENSHOT") {
        // A few more messages, so the picture shows a page of them.
        for (to, subject) in [
            ("carol@dest.test", "Your order #1042 has shipped"),
            ("dave@dest.test", "Reset your password"),
            ("erin@dest.test", "Welcome to Example"),
            ("frank@dest.test", "Invoice for November"),
        ] {
            let msg = Message::builder()
                .from("Console <hello@console.test>".parse::<Mailbox>().unwrap())
                .to(to.parse().unwrap())
                .subject(subject)
                .header(ContentType::TEXT_PLAIN)
                .body(String::from("Hello.\r\n"))
                .map_err(err("message"))?;
            send(server.submission_port, "hello@console.test", &password, msg).await?;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        goto(c, &format!("{base}/messages")).await?;
        find(c, "#messages").await?;
        let png = c.screenshot().await.map_err(err("screenshot"))?;
        std::fs::write(&path, png).map_err(err(&path))?;
        goto(c, &format!("{base}/messages?recipient=bob%40dest.test")).await?;
    }
    click(c, "#messages tbody td.subject a").await?;
    wait_text(c, "250 2.0.0 captured", true).await?;
    let rcpts = text(c, "#recipients").await?;
    for want in ["alice@dest.test", "bob@dest.test", "delivered"] {
        if !rcpts.contains(want) {
            return Err(format!("{want} not in the recipients table: {rcpts}"));
        }
    }
    if c.current_url().await.map_err(err("url"))?.path() != format!("/messages/{id}") {
        return Err("the message page is not the one sent".into());
    }
    no_console_errors(driver, c, "the message page").await?;

    // Add and remove a suppression.
    click(c, "header nav a[href='/suppressions']").await?;
    choose(c, "form.add select[name=account]", ACCOUNT).await?;
    fill(c, "form.add input[name=address]", "gone@dest.test").await?;
    fill(c, "form.add input[name=reason]", "asked to stop").await?;
    click(c, "form.add button[type=submit]").await?;
    let list = text(c, "#suppressions").await?;
    if !list.contains("gone@dest.test") || !list.contains("asked to stop") {
        return Err(format!("suppression not listed: {list}"));
    }
    click(
        c,
        "#suppressions button[aria-label='Remove gone@dest.test']",
    )
    .await?;
    wait_text(c, "Removed: gone@dest.test", false).await?;
    if c.find(Locator::Css("#suppressions")).await.is_ok() {
        return Err("the suppression is still listed".into());
    }
    no_console_errors(driver, c, "suppressions").await?;

    // The overview counts today's message and draws the chart.
    c.find(Locator::LinkText("Overview"))
        .await
        .map_err(err("Overview"))?;
    click(c, "header nav a[href='/']").await?;
    let today = text(c, "#today").await?;
    // Two recipients accepted (more when the screenshot's were sent).
    let accepted: u64 = today
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if accepted < 2 || !today.contains("accepted") {
        return Err(format!("today's counts: {today:?}"));
    }
    find(c, "figure svg.chart").await?;
    find(c, "#queue").await?;
    no_console_errors(driver, c, "the overview").await?;

    // An API key: made and shown once, then revoked.
    click(c, "header nav a[href='/keys']").await?;
    choose(c, "form.add select[name=account]", ACCOUNT).await?;
    fill(c, "form.add input[name=description]", "from the console").await?;
    click(c, "form.add button[type=submit]").await?;
    let key = text(c, "#new-secret").await?;
    let key_id = key
        .strip_prefix("ph_")
        .and_then(|k| k.split('_').next())
        .ok_or_else(|| format!("not a key: {key:?}"))?
        .to_string();
    click(c, &format!("#keys button[aria-label='Revoke {key_id}']")).await?;
    wait_text(c, &format!("Removed: {key_id}"), false).await?;
    if text(c, "#keys").await?.contains(&key_id) {
        return Err("the revoked key is still listed".into());
    }
    // A label, added and removed.
    click(c, "header nav a[href='/labels']").await?;
    choose(c, "form.add select[name=account]", ACCOUNT).await?;
    fill(c, "form.add input[name=label]", "promo").await?;
    click(c, "form.add button[type=submit]").await?;
    wait_text(c, "Added: promo", false).await?;
    click(c, "#labels button[aria-label='Remove promo']").await?;
    wait_text(c, "Removed: promo", false).await?;
    no_console_errors(driver, c, "API keys and labels").await?;

    // A webhook at a real receiver: added (its secret shown once), sent a
    // test event that arrives and is listed with its HTTP status, then
    // removed.
    let receiver = posthorn_testkit::http::Receiver::start();
    click(c, "header nav a[href='/webhooks']").await?;
    choose(c, "form.add select[name=account]", ACCOUNT).await?;
    fill(c, "form.add input[name=url]", &receiver.url("/hook")).await?;
    click(c, "form.add button[type=submit]").await?;
    let secret = text(c, "#new-secret").await?;
    if !secret.starts_with("whsec_") {
        return Err(format!("no signing secret shown: {secret:?}"));
    }
    let hook = text(c, "#webhooks tbody td code").await?;
    click(
        c,
        &format!("#webhooks button[aria-label='Send test event {hook}']"),
    )
    .await?;
    wait_text(c, &format!("Test event queued for webhook {hook}"), false).await?;
    let started = Instant::now();
    while receiver.received().is_empty() {
        if started.elapsed() > WAIT {
            return Err("the test event did not reach the receiver".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = &receiver.received()[0];
    let event: serde_json::Value = serde_json::from_slice(&got.body).map_err(err("event"))?;
    if got.path != "/hook"
        || event["type"] != "test"
        || got.header("x-posthorn-signature").is_none()
    {
        return Err(format!("not a signed test event: {got:?}"));
    }
    // Listed with the receiver's 200 once the result is recorded.
    let started = Instant::now();
    loop {
        let row = text(c, &format!("#deliveries-{hook} tbody tr"))
            .await
            .unwrap_or_default();
        if row.contains("test") && row.contains("200") && row.contains("done") {
            break;
        }
        if started.elapsed() > WAIT {
            return Err(format!("the test delivery is not listed with 200: {row:?}"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        c.refresh().await.map_err(err("refresh"))?;
    }
    no_console_errors(driver, c, "a webhook's test event").await?;
    click(c, &format!("#webhooks button[aria-label='Remove {hook}']")).await?;
    wait_text(c, &format!("Removed: {hook}"), false).await?;
    no_console_errors(driver, c, "webhooks").await?;

    // Statistics: a chart and a table; accounts: create one, set a limit.
    click(c, "header nav a[href='/statistics']").await?;
    find(c, "figure svg.chart").await?;
    let stats = text(c, "#stats").await?;
    if !stats.contains("Delivered") && !stats.contains("delivered") {
        return Err(format!("statistics table: {stats}"));
    }
    click(c, "header nav a[href='/accounts']").await?;
    fill(c, "form.add input[name=name]", "third").await?;
    click(c, "form.add button[type=submit]").await?;
    wait_text(c, "Added: third", false).await?;
    click(c, "#accounts a[href='/accounts/third']").await?;
    fill(c, "#settings input[aria-label=messages_per_second]", "5").await?;
    click_x(
        c,
        "//table[@id='settings']//tr[.//input[@aria-label='messages_per_second']]//button",
    )
    .await?;
    wait_text(c, "Saved: messages_per_second", false).await?;
    no_console_errors(driver, c, "statistics and accounts").await?;

    // Sign out: the session is gone server-side too.
    click_x(c, "//button[normalize-space()='Sign out']").await?;
    find(c, "input[name=key]").await?;
    goto(c, &format!("{base}/messages")).await?;
    find(c, "input[name=key]").await?;
    no_console_errors(driver, c, "sign-out").await?;

    // Another account's key cannot reach the message by URL.
    sign_in(c, &base, &rival_key).await?;
    if c.find(Locator::LinkText("Accounts")).await.is_ok() {
        return Err("an account session shows Accounts".into());
    }
    goto(c, &format!("{base}/messages/{id}")).await?;
    let h1 = text(c, "h1").await?;
    let body = text(c, "body").await?;
    if h1 != "Not found" || body.contains("bob@dest.test") {
        return Err(format!("another account's message was shown: {body}"));
    }
    goto(c, &format!("{base}/messages/{id}/html")).await?;
    if text(c, "h1").await? != "Not found" {
        return Err("another account's message content was served".into());
    }
    // Its listing does not show it either.
    goto(c, &format!("{base}/messages?id={id}")).await?;
    if text(c, "body").await?.contains("Console hello") {
        return Err("another account's message is listed".into());
    }
    // The only errors here are the two 404 answers themselves.
    let unexpected: Vec<_> = browser_log(driver, c)
        .await
        .into_iter()
        .filter(|(level, m)| {
            (level == "SEVERE" || level == "WARNING") && !m.contains("status of 404")
        })
        .collect();
    if !unexpected.is_empty() {
        return Err(format!("browser console errors: {unexpected:?}"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_scenario_in_chromium() {
    let Some((driver, client)) = browser("console_scenario_in_chromium").await else {
        return;
    };
    let server = start_server();
    let result = scenario(&driver, &client, &server).await;
    if result.is_err() {
        eprintln!("server log:\n{}", server.log());
    }
    run("console_scenario_in_chromium", driver, client, result).await;
}

async fn hostile(driver: &Driver, c: &Client, server: &TestServer) -> R {
    let base = format!("http://127.0.0.1:{}", server.http_port);
    let admin_key = server.admin_http_key();
    let subject = r#"<script>document.title='pwned';window.__pwned=1</script><img src=x onerror="window.__pwned=2">"#;
    // Inside the frame the payloads would mark the frame's own document
    // (a script there could not reach the console's window anyway: the
    // sandbox gives it an opaque origin).
    let html = r#"<html><head><title>original</title></head><body><p>Hi</p><script>document.title='pwned';document.body.setAttribute('data-pwned','script')</script><img src="x" onerror="document.body.setAttribute('data-pwned','onerror')"><svg onload="document.body.setAttribute('data-pwned','svg')"></svg></body></html>"#;
    let msg = Message::builder()
        .from(posthorn_testkit::SENDER.parse::<Mailbox>().unwrap())
        .to("victim@dest.test".parse().unwrap())
        .subject(subject)
        .multipart(
            MultiPart::alternative()
                .singlepart(SinglePart::plain(String::from("plain <script>x</script>")))
                .singlepart(SinglePart::html(String::from(html))),
        )
        .map_err(err("message"))?;
    let id = send(
        server.submission_port,
        posthorn_testkit::SENDER,
        posthorn_testkit::SENDER_PASSWORD,
        msg,
    )
    .await?;
    sign_in(c, &base, &admin_key).await?;
    goto(c, &format!("{base}/messages/{id}")).await?;
    let frame = find(c, "iframe.html").await?;
    // Give anything that could run the time to run.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The frame did load the message's HTML (so its payloads were there
    // to run), as text.
    c.clone()
        .enter_frame(Some(0))
        .await
        .map_err(err("enter the frame"))?;
    let shown = text(c, "body").await?;
    let marked = find(c, "body")
        .await?
        .attr("data-pwned")
        .await
        .map_err(err("data-pwned"))?;
    let source = c.source().await.map_err(err("frame source"))?;
    c.clone()
        .enter_parent_frame()
        .await
        .map_err(err("leave the frame"))?;
    if !shown.contains("Hi") || !source.contains("onerror") {
        return Err(format!(
            "the frame does not hold the message's HTML: {source}"
        ));
    }
    if marked.is_some() || !source.contains("<title>original</title>") {
        return Err(format!("a payload ran in the frame ({marked:?}): {source}"));
    }
    let ran = c
        .execute("return [document.title, String(window.__pwned)];", vec![])
        .await
        .map_err(err("execute"))?;
    let title = ran[0].as_str().unwrap_or("").to_string();
    if ran[1].as_str() != Some("undefined") || title.contains("pwned") {
        return Err(format!("a payload ran: {ran}"));
    }
    // And the frame is sandboxed without exceptions (checked after the
    // payloads, so a missing sandbox shows as a payload that ran).
    let sandbox = frame.attr("sandbox").await.map_err(err("sandbox"))?;
    if sandbox.as_deref() != Some("") {
        return Err(format!("the frame's sandbox is {sandbox:?}"));
    }
    // The subject is shown as text, tags and all.
    if !text(c, "#envelope")
        .await?
        .contains("<script>document.title='pwned'")
    {
        return Err("the subject is not shown literally".into());
    }
    // The browser reports what it refused; nothing else may be in its
    // console (in particular no script error of the page's own).
    let log = browser_log(driver, c).await;
    let other: Vec<_> = log
        .iter()
        .filter(|(level, m)| {
            (level == "SEVERE" || level == "WARNING")
                && !(m.contains("Content Security Policy")
                    || m.contains("sandboxed")
                    || m.contains("Blocked script execution"))
        })
        .collect();
    if !other.is_empty() {
        return Err(format!("browser console errors: {other:?}"));
    }
    println!("refusals the browser reported: {log:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_message_is_shown_inert() {
    let Some((driver, client)) = browser("hostile_message_is_shown_inert").await else {
        return;
    };
    let server = start_server();
    let result = hostile(&driver, &client, &server).await;
    if result.is_err() {
        eprintln!("server log:\n{}", server.log());
    }
    run("hostile_message_is_shown_inert", driver, client, result).await;
}

// --- without a browser: sessions, CSRF and headers over plain HTTP ------------

mod over_http {
    use super::*;
    use posthorn_testkit::http::{request, Response};

    fn cookie_of<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .filter(|(n, _)| n == "set-cookie")
            .map(|(_, v)| v.as_str())
            .find(|v| v.starts_with(&format!("{name}=")))
    }

    fn value_of(set_cookie: &str) -> String {
        set_cookie
            .split(';')
            .next()
            .and_then(|kv| kv.split_once('='))
            .map(|(_, v)| v.to_string())
            .unwrap_or_default()
    }

    fn body(r: &Response) -> String {
        String::from_utf8_lossy(&r.body).into_owned()
    }

    /// The `csrf` field of a page.
    fn csrf(page: &str) -> String {
        let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
        page[at..at + 64].to_string()
    }

    /// Sign in with `key`; the session cookie's value.
    fn sign_in(port: u16, key: &str, extra: &[(&str, &str)]) -> (Response, String) {
        let page = request(port, "GET", "/signin", extra, b"");
        let pre = value_of(cookie_of(&page, "ph_pre").expect("a ph_pre cookie"));
        let cookie = format!("ph_pre={pre}");
        let form = format!("pre={pre}&key={key}");
        let mut headers = vec![
            ("Cookie", cookie.as_str()),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ];
        headers.extend_from_slice(extra);
        let r = request(port, "POST", "/signin", &headers, form.as_bytes());
        let session = cookie_of(&r, "ph_session")
            .map(value_of)
            .unwrap_or_default();
        (r, session)
    }

    fn get(port: u16, path: &str, session: &str) -> Response {
        let cookie = format!("ph_session={session}");
        request(port, "GET", path, &[("Cookie", &cookie)], b"")
    }

    fn post(port: u16, path: &str, session: &str, form: &str) -> Response {
        let cookie = format!("ph_session={session}");
        request(
            port,
            "POST",
            path,
            &[
                ("Cookie", &cookie),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            form.as_bytes(),
        )
    }

    #[test]
    fn sessions_csrf_scoping_and_headers() {
        let server = start_server();
        let port = server.http_port;
        let admin_key = server.admin_http_key();
        let shop_key = server.http_key(ACCOUNT);
        server.cli_ok(&["account", "create", "rival"]);
        let rival_key = server.http_key("rival");

        // Every page has the console's headers; the sign-in form a
        // double-submit cookie.
        let page = request(port, "GET", "/signin", &[], b"");
        assert_eq!(page.status, 200);
        let csp = page.header("content-security-policy").unwrap_or("");
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
        assert!(body(&page).contains(">API key<") && body(&page).contains(">Sign in<"));

        // Without the pre-sign-in cookie, no session.
        let r = request(
            port,
            "POST",
            "/signin",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            format!("pre=x&key={admin_key}").as_bytes(),
        );
        assert_eq!(r.status, 403);
        assert!(cookie_of(&r, "ph_session").is_none());
        // A wrong key: no session.
        let (r, s) = sign_in(
            port,
            "ph_aaaaaaaaaaaa_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            &[],
        );
        assert_eq!(r.status, 401);
        assert!(s.is_empty());

        // Signed in: a strict, HttpOnly cookie (Secure behind TLS).
        let (r, session) = sign_in(port, &admin_key, &[]);
        assert_eq!(r.status, 303);
        let set = cookie_of(&r, "ph_session").unwrap();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        assert!(!set.contains("Secure"), "{set}");
        let (r, _) = sign_in(port, &admin_key, &[("X-Forwarded-Proto", "https")]);
        assert!(cookie_of(&r, "ph_session").unwrap().contains("; Secure"));

        // A change without the CSRF token is refused, and nothing changes.
        let page = get(port, "/suppressions", &session);
        assert_eq!(page.status, 200);
        let token = csrf(&body(&page));
        let r = post(
            port,
            "/suppressions",
            &session,
            &format!("account={ACCOUNT}&address=x%40dest.test"),
        );
        assert_eq!(r.status, 403);
        let r = post(
            port,
            "/suppressions",
            &session,
            &format!(
                "account={ACCOUNT}&address=x%40dest.test&csrf={}",
                "0".repeat(64)
            ),
        );
        assert_eq!(r.status, 403);
        assert!(!body(&get(port, "/suppressions", &session)).contains("x@dest.test"));
        let r = post(
            port,
            "/suppressions",
            &session,
            &format!("account={ACCOUNT}&address=x%40dest.test&csrf={token}"),
        );
        assert_eq!(r.status, 303);
        assert!(body(&get(port, "/suppressions", &session)).contains("x@dest.test"));
        // Bad input is a page saying so, not a 500.
        let r = post(
            port,
            "/suppressions",
            &session,
            &format!("account={ACCOUNT}&address=not-an-address&csrf={token}"),
        );
        assert_eq!(r.status, 400, "{}", body(&r));
        let r = post(
            port,
            "/webhooks",
            &session,
            &format!("account={ACCOUNT}&url=ftp%3A%2F%2Fx&events=delivered&csrf={token}"),
        );
        assert_eq!(r.status, 400, "{}", body(&r));
        let r = post(
            port,
            "/webhooks",
            &session,
            &format!(
                "account={ACCOUNT}&url=http%3A%2F%2F127.0.0.1%3A9%2F&events=read&csrf={token}"
            ),
        );
        assert_eq!(r.status, 400, "{}", body(&r));
        for path in [
            "/messages?status=nonsense&date=yesterday",
            "/messages?id=%FF%FE",
            "/messages/not-an-id",
            "/domains/nope.example",
            "/nothing/here",
        ] {
            let r = get(port, path, &session);
            assert!(r.status == 200 || r.status == 404, "{path}: {}", r.status);
        }

        // An account's key sees its own message, not another's.
        let msg = Message::builder()
            .from(posthorn_testkit::SENDER.parse::<Mailbox>().unwrap())
            .to("someone@dest.test".parse().unwrap())
            .subject("Scoped")
            .header(ContentType::TEXT_PLAIN)
            .body(String::from("hi\r\n"))
            .unwrap();
        let id = smtp_send(
            server.submission_port,
            posthorn_testkit::SENDER,
            posthorn_testkit::SENDER_PASSWORD,
            msg,
        )
        .unwrap();
        let (_, shop) = sign_in(port, &shop_key, &[]);
        let (_, rival) = sign_in(port, &rival_key, &[]);
        let mine = get(port, &format!("/messages/{id}"), &shop);
        assert_eq!(mine.status, 200);
        assert!(body(&mine).contains("someone@dest.test"));
        for path in [format!("/messages/{id}"), format!("/messages/{id}/html")] {
            let theirs = get(port, &path, &rival);
            assert_eq!(theirs.status, 404, "{path}");
            assert!(!body(&theirs).contains("someone@dest.test"));
        }
        assert!(!body(&get(port, "/messages", &rival)).contains("Scoped"));
        assert!(body(&get(port, "/messages", &shop)).contains("Scoped"));
        // An account session has no Accounts page and cannot act for
        // another account by naming it.
        let rival_page = body(&get(port, "/suppressions", &rival));
        let rival_csrf = csrf(&rival_page);
        let r = post(
            port,
            "/suppressions",
            &rival,
            &format!("account={ACCOUNT}&address=y%40dest.test&csrf={rival_csrf}"),
        );
        assert_eq!(r.status, 303);
        assert!(!body(&get(port, "/suppressions", &shop)).contains("y@dest.test"));
        assert!(body(&get(port, "/suppressions", &rival)).contains("y@dest.test"));

        // Admin only: Accounts.
        assert_eq!(get(port, "/accounts", &rival).status, 404);
        assert_eq!(get(port, "/accounts", &session).status, 200);
        // Statistics as CSV, of the account's own messages.
        let csv = get(port, "/statistics.csv?days=7", &shop);
        assert_eq!(csv.status, 200);
        assert!(csv
            .header("content-type")
            .unwrap_or("")
            .starts_with("text/csv"));
        let text = body(&csv);
        assert!(
            text.starts_with("day,messages,recipients,delivered"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 8, "{text}");
        assert!(text.lines().any(|l| l.contains(",1,1,")), "{text}");
        assert!(body(&get(port, "/statistics.csv", &rival))
            .lines()
            .all(|l| !l.contains(",1,1,")));

        // Chinese from Accept-Language, and by the switch.
        let zh = request(
            port,
            "GET",
            "/signin",
            &[("Accept-Language", "zh-CN,zh;q=0.9")],
            b"",
        );
        assert!(body(&zh).contains("登录"), "{}", body(&zh));
        let r = request(port, "GET", "/lang?to=zh&next=%2Fsignin", &[], b"");
        assert_eq!(r.status, 303);
        assert_eq!(r.header("location"), Some("/signin"));
        assert!(cookie_of(&r, "ph_lang").unwrap().starts_with("ph_lang=zh"));
        // Never a redirect off the site.
        let r = request(port, "GET", "/lang?to=en&next=%2F%2Fevil.example", &[], b"");
        assert_eq!(r.header("location"), Some("/"));

        // Sign-out ends the session on the server: the old cookie is
        // worth nothing after it.
        let page = body(&get(port, "/messages", &session));
        let r = post(port, "/signout", &session, &format!("csrf={}", csrf(&page)));
        assert_eq!(r.status, 303);
        let after = get(port, "/messages", &session);
        assert_eq!(after.status, 303);
        assert_eq!(after.header("location"), Some("/signin"));

        // A revoked key ends its sessions.
        let id_of = |k: &str| k.split('_').nth(1).unwrap().to_string();
        assert_eq!(get(port, "/messages", &shop).status, 200);
        server.cli_ok(&["apikey", "revoke", &id_of(&shop_key)]);
        assert_eq!(get(port, "/messages", &shop).status, 303);

        // The API keeps its own JSON 404 under /v<n>.
        let r = request(port, "GET", "/v2/nothing", &[], b"");
        assert_eq!(r.status, 404);
        assert!(body(&r).contains("ResourceNotFound.Route"));
    }

    /// The `value` of the first hidden `id` field of a page.
    fn id_field(page: &str) -> String {
        let at = page.find("name=\"id\" value=\"").expect("an id field") + 17;
        page[at..].split('"').next().unwrap_or("").to_string()
    }

    /// Bounce from the message page (an account's own message only, once
    /// confirmed), and a webhook's test event sent to a real receiver and
    /// listed with its HTTP status.
    #[test]
    fn bounce_and_a_webhook_test_event() {
        // No [delivery] section: delivery is off, so mail stays queued.
        let server = TestServer::start(bin(), "[webhooks]\nallow_private_networks = true\n");
        let port = server.http_port;
        let shop_key = server.http_key(ACCOUNT);
        server.cli_ok(&["account", "create", "rival"]);
        let rival_key = server.http_key("rival");
        let (_, shop) = sign_in(port, &shop_key, &[]);
        let (_, rival) = sign_in(port, &rival_key, &[]);
        let rival_csrf = csrf(&body(&get(port, "/messages", &rival)));

        let msg = Message::builder()
            .from(posthorn_testkit::SENDER.parse::<Mailbox>().unwrap())
            .to("alice@dest.test".parse().unwrap())
            .to("bob@dest.test".parse().unwrap())
            .subject("To bounce")
            .header(ContentType::TEXT_PLAIN)
            .body(String::from("hi\r\n"))
            .unwrap();
        let id = smtp_send(
            server.submission_port,
            posthorn_testkit::SENDER,
            posthorn_testkit::SENDER_PASSWORD,
            msg,
        )
        .unwrap();
        let path = format!("/messages/{id}");
        let action = format!("/messages/{id}/bounce");
        let page = body(&get(port, &path, &shop));
        assert!(page.contains(&action), "{page}");
        assert!(page.contains("Bounce every recipient not yet final"));
        let token = csrf(&page);
        // Another account's key cannot bounce it by URL; without the CSRF
        // token or the box ticked, nothing happens.
        let r = post(
            port,
            &action,
            &rival,
            &format!("confirm=yes&csrf={rival_csrf}"),
        );
        assert_eq!(r.status, 404);
        assert_eq!(post(port, &action, &shop, "confirm=yes").status, 403);
        let r = post(port, &action, &shop, &format!("csrf={token}"));
        assert_eq!(r.status, 400);
        assert!(body(&r).contains("Tick the box"), "{}", body(&r));
        assert!(!body(&get(port, &path, &shop)).contains("bounced by the operator"));

        let r = post(port, &action, &shop, &format!("confirm=yes&csrf={token}"));
        assert_eq!(r.status, 303, "{}", body(&r));
        let to = r.header("location").unwrap().to_string();
        assert!(to.starts_with(&format!("{path}?done=bounced&dsn=")), "{to}");
        let page = body(&get(port, &to, &shop));
        assert!(
            page.contains("Bounced by the operator: alice@dest.test, bob@dest.test"),
            "{page}"
        );
        assert!(page.contains("550 5.0.0 bounced by the operator"));
        // The notice to the sender, in the same commit.
        assert!(page.contains("Bounce notice queued"), "{page}");
        // Nothing left to bounce: no button.
        assert!(!page.contains(&action));
        let shown = server.cli_ok(&["message", "show", &id.to_string(), "--json"]);
        assert_eq!(shown.matches("\"bounced\"").count(), 2, "{shown}");

        // A webhook at a real receiver; its first answer is 503.
        let receiver = posthorn_testkit::http::Receiver::start();
        receiver.answer_next(503);
        let token = csrf(&body(&get(port, "/webhooks", &shop)));
        let url = format!("http%3A%2F%2F127.0.0.1%3A{}%2Fhook", receiver.port);
        let r = post(
            port,
            "/webhooks",
            &shop,
            &format!("url={url}&events=delivered&csrf={token}"),
        );
        assert_eq!(r.status, 200, "{}", body(&r));
        let hook = id_field(&body(&r));
        assert!(body(&r).contains("Nothing sent to this webhook yet."));
        // Not through another account's session.
        let r = post(
            port,
            "/webhooks/test",
            &rival,
            &format!("account={ACCOUNT}&id={hook}&csrf={rival_csrf}"),
        );
        assert_eq!(r.status, 404);
        assert!(receiver.received().is_empty());

        let send_test = || {
            let r = post(
                port,
                "/webhooks/test",
                &shop,
                &format!("id={hook}&csrf={token}"),
            );
            assert_eq!(r.status, 303, "{}\n{}", body(&r), server.log());
        };
        let listed_with = |want: &str| {
            let deadline = Instant::now() + WAIT;
            loop {
                let page = body(&get(port, "/webhooks", &shop));
                if page.contains(want) {
                    return page;
                }
                assert!(Instant::now() < deadline, "{want:?} not on:\n{page}");
                std::thread::sleep(Duration::from_millis(100));
            }
        };
        send_test();
        let got = receiver.wait_for(1, 10);
        assert_eq!(got[0].path, "/hook");
        assert_eq!(got[0].header("x-posthorn-event"), Some("test"));
        let event: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
        assert_eq!(event["type"], "test");
        let page = listed_with("<td class=\"status\">503</td>");
        assert!(page.contains("HTTP 503"), "{page}");
        assert!(page.contains("next try"), "{page}");

        send_test();
        receiver.wait_for(2, 10);
        let page = listed_with("<td class=\"status\">200</td>");
        let table = &page[page.find(&format!("id=\"deliveries-{hook}\"")).unwrap()..];
        // Newest first: the accepted one, then the one being retried.
        let ok = table.find(">200<").unwrap();
        let failed = table.find(">503<").unwrap_or(usize::MAX);
        assert!(ok < failed, "{table}");
        assert!(table.contains(">done<"), "{table}");

        // In Chinese too.
        let cookie = format!("ph_session={shop}; ph_lang=zh");
        let zh = body(&request(
            port,
            "GET",
            "/webhooks",
            &[("Cookie", &cookie)],
            b"",
        ));
        assert!(
            zh.contains("最近投递") && zh.contains("发送测试事件"),
            "{zh}"
        );
    }
}
