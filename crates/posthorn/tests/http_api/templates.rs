//! Stored templates (issue 22): `/v1/templates` and `POST /v1/messages`
//! with `template` + `template_data`, rendered (subject and text plain,
//! HTML escaped) and delivered to the sink; every refusal with its code.

use super::{dns_to, send, BIN, WAIT};
use posthorn_testkit::http;
use posthorn_testkit::sink::{Sink, SinkOptions};
use posthorn_testkit::*;
use serde_json::json;

fn put_json(port: u16, path: &str, key: &str, body: &serde_json::Value) -> http::Response {
    http::request(
        port,
        "PUT",
        path,
        &[
            ("Authorization", &format!("Bearer {key}")),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
}

#[test]
fn templates_are_stored_rendered_escaped_and_refused_with_codes() {
    let sink = Sink::start(SinkOptions::default());
    let (_dns, config) = dns_to(&sink, "");
    let server = TestServer::start(BIN.as_ref(), &config);
    let key = server.http_key(ACCOUNT);
    let port = server.http_port;

    // Create: answered with the id.
    let r = http::post_json(
        port,
        "/v1/templates",
        &key,
        &json!({
            "name": "welcome",
            "subject": "Welcome, {{ name }}",
            "text": "Hi {{name}}, your code is {{code}}.",
            "html": "<p>Hi <b>{{name}}</b>, code {{code}} \\{{literal}}</p>",
        }),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let created = r.json();
    let id = created["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("tpl_"), "{created}");
    assert_eq!(created["variables"], json!(["code", "name"]));

    // Names are unique; placeholders are checked when stored.
    let r = http::post_json(
        port,
        "/v1/templates",
        &key,
        &json!({"name": "welcome", "subject": "s", "text": "t"}),
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (409, "ResourceInUse.Duplicate")
    );
    let r = http::post_json(
        port,
        "/v1/templates",
        &key,
        &json!({"name": "broken", "subject": "s", "text": "Hi {{name"}),
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "InvalidParameter.Value")
    );

    // List, show by id and by name, replace.
    let r = http::get(port, "/v1/templates", &key);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["templates"].as_array().unwrap().len(), 1);
    let r = http::get(port, &format!("/v1/templates/{id}"), &key);
    assert_eq!(r.json()["name"], "welcome");
    let r = http::get(port, "/v1/templates/welcome", &key);
    assert_eq!(r.json()["id"], id.as_str());
    let r = put_json(
        port,
        &format!("/v1/templates/{id}"),
        &key,
        &json!({
            "name": "welcome",
            "subject": "Welcome, {{name}}",
            "text": "Hi {{name}}, your code is {{code}}.",
            "html": "<p>Hi <b>{{name}}</b>, code {{code}} \\{{literal}}</p>",
        }),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    // Send by name with an object, and by id with a JSON string (Tencent's
    // TemplateData); unused variables are fine.
    let first = send(
        &server,
        &key,
        json!({
            "from": SENDER,
            "to": "ok@example.net",
            "template": "welcome",
            "template_data": {"name": "<Ann & \"Bob\">", "code": 42, "unused": true},
        }),
    );
    let second = send(
        &server,
        &key,
        json!({
            "from": SENDER,
            "to": "ok2@example.net",
            "template": id,
            "template_data": "{\"name\": \"Cy\", \"code\": \"7\"}",
        }),
    );
    assert_ne!(first, second);
    let got = sink.wait_for(2, WAIT);
    let parsed: Vec<_> = got
        .iter()
        .map(|m| {
            let p = mail_parser::MessageParser::default()
                .parse(&m.data)
                .unwrap();
            (
                m.rcpt_to[0].clone(),
                p.subject().unwrap().to_string(),
                p.body_text(0).unwrap().into_owned(),
                p.body_html(0).unwrap().into_owned(),
            )
        })
        .collect();
    let ann = parsed.iter().find(|p| p.0 == "ok@example.net").unwrap();
    assert_eq!(ann.1, "Welcome, <Ann & \"Bob\">");
    assert_eq!(ann.2.trim_end(), "Hi <Ann & \"Bob\">, your code is 42.");
    assert!(
        ann.3
            .contains("<p>Hi <b>&lt;Ann &amp; &quot;Bob&quot;&gt;</b>, code 42 {{literal}}</p>"),
        "{}",
        ann.3
    );
    let cy = parsed.iter().find(|p| p.0 == "ok2@example.net").unwrap();
    assert_eq!(cy.1, "Welcome, Cy");

    // Refusals, each with its stable code; nothing stored.
    for (body, status, code) in [
        (
            json!({"from": SENDER, "to": "ok@example.net", "template": "welcome", "template_data": {"name": "Ann"}}),
            422,
            "FailedOperation.MissingTemplateVariable",
        ),
        (
            json!({"from": SENDER, "to": "ok@example.net", "template": "nope"}),
            422,
            "FailedOperation.TemplateNotFound",
        ),
        (
            json!({"from": SENDER, "to": "ok@example.net", "template": "welcome", "subject": "x", "template_data": {"name": "a", "code": 1}}),
            422,
            "FailedOperation.TemplateWithContent",
        ),
        (
            json!({"from": SENDER, "to": "ok@example.net", "subject": "x"}),
            422,
            "FailedOperation.MissingEmailContent",
        ),
        (
            json!({"from": SENDER, "to": "ok@example.net", "template": "welcome", "template_data": "[1]"}),
            400,
            "InvalidParameter.TemplateData",
        ),
    ] {
        let r = http::post_json(port, "/v1/messages", &key, &body);
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (status, code),
            "{body}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let r = http::post_json(
        port,
        "/v1/messages",
        &key,
        &json!({"from": SENDER, "to": "ok@example.net", "template": "welcome"}),
    );
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("code, name"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(server.messages().len(), 2);

    // Another account does not see it; deleting makes it gone.
    server.cli_ok(&["account", "create", "other"]);
    let other = server.http_key("other");
    assert_eq!(
        http::get(port, &format!("/v1/templates/{id}"), &other).status,
        404
    );
    assert_eq!(
        http::delete(port, &format!("/v1/templates/{id}"), &key).status,
        204
    );
    assert_eq!(
        http::get(port, &format!("/v1/templates/{id}"), &key).status,
        404
    );
    assert_eq!(
        http::delete(port, &format!("/v1/templates/{id}"), &key).status,
        404
    );
}
