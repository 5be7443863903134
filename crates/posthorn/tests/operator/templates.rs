//! `posthorn template add|list|show|remove` (issue 22), through the admin
//! service: the same rules as `/v1/templates`.

use super::BIN;
use posthorn_testkit::*;

#[test]
fn templates_are_added_listed_shown_and_removed() {
    let server = TestServer::start(BIN.as_ref(), "");
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("welcome.html");
    std::fs::write(&html, "<p>Hi {{ name }}</p>\n").unwrap();
    let html = html.to_str().unwrap();

    let added = server.cli_ok(&[
        "template",
        "add",
        "welcome",
        "--account",
        ACCOUNT,
        "--subject",
        "Hello {{name}}",
        "--text",
        "Hi {{name}}",
        "--html-file",
        html,
    ]);
    assert!(added.starts_with("added template welcome (tpl_"), "{added}");
    let id = added.split(['(', ')']).nth(1).unwrap().to_string();

    // Refused with a reason: a duplicate, a bad placeholder, a bad name.
    for (args, needle) in [
        (
            vec!["welcome", "--subject", "s", "--text", "t"],
            "already exists",
        ),
        (
            vec!["other", "--subject", "s", "--text", "Hi {{name"],
            "not closed",
        ),
        (
            vec!["bad name", "--subject", "s", "--text", "t"],
            "template name",
        ),
        (vec!["nobody", "--subject", "s"], "text or an HTML body"),
    ] {
        let mut all = vec!["template", "add", "--account", ACCOUNT];
        all.extend(args);
        let out = server.cli(&all);
        assert!(!out.status.success(), "{all:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{all:?}: {err}");
    }

    let list = server.cli_ok(&["template", "list", "--account", ACCOUNT]);
    let line = list.lines().next().unwrap();
    assert!(line.starts_with(&format!("{id}\twelcome\t")), "{list}");
    assert!(line.ends_with("\tHello {{name}}"), "{list}");
    assert_eq!(list.lines().count(), 1);

    let shown = server.cli_ok(&[
        "template",
        "show",
        "welcome",
        "--account",
        ACCOUNT,
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["html"], "<p>Hi {{ name }}</p>\n");
    let shown = server.cli_ok(&["template", "show", &id, "--account", ACCOUNT]);
    assert!(shown.contains("--- text\nHi {{name}}"), "{shown}");

    let removed = server.cli_ok(&["template", "remove", &id, "--account", ACCOUNT]);
    assert!(removed.starts_with("removed template welcome"), "{removed}");
    assert_eq!(
        server.cli_ok(&["template", "list", "--account", ACCOUNT]),
        ""
    );
    let out = server.cli(&["template", "show", "welcome", "--account", ACCOUNT]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no template"));
}
