//! `docs/errors.md` lists every business error code; this keeps it in step
//! with the code. To update the page after changing `ERROR_CODES`, run
//! `UPDATE_DOCS=1 cargo test -p posthorn-policy --test error_docs`.

use posthorn_policy::ERROR_CODES;
use std::path::{Path, PathBuf};

const BEGIN: &str = "<!-- BEGIN GENERATED: error codes -->";
const END: &str = "<!-- END GENERATED: error codes -->";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn table() -> String {
    let mut out = String::from(
        "| code | SMTP reply | `Message` begins with | when | how to fix |\n|---|---|---|---|---|\n",
    );
    for c in ERROR_CODES {
        let wording = c
            .seed_wording
            .map(|w| format!("`{w}: `"))
            .unwrap_or_else(|| "(Posthorn's words only)".into());
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            c.code, c.smtp, wording, c.trigger, c.fix
        ));
    }
    out
}

/// The page's example line is exactly what Posthorn writes, but for the
/// RequestId, which is new every time.
#[test]
fn the_error_page_shows_the_line_as_written() {
    const EXAMPLE_ID: &str = "0f8c2b9e-5a41-4d7e-9b3a-6c1d2e4f5a7b";
    let line = posthorn_policy::codes::refusal(
        posthorn_policy::codes::MISSING_SUBJECT,
        "the message has no Subject header",
    )
    .to_reply()
    .to_string();
    let marker = "\"RequestId\":\"";
    let at = line.find(marker).expect("a RequestId") + marker.len();
    let id = &line[at..at + 36];
    let documented = line.replace(id, EXAMPLE_ID);
    let page = std::fs::read_to_string(repo_root().join("docs/errors.md")).unwrap();
    assert!(
        page.contains(&format!("```\n{documented}\n```")),
        "docs/errors.md should show the line as Posthorn writes it:\n{documented}"
    );
}

#[test]
fn the_error_page_lists_every_code() {
    let path = repo_root().join("docs/errors.md");
    let page = std::fs::read_to_string(&path).expect("docs/errors.md exists");
    let start = page.find(BEGIN).expect("begin marker") + BEGIN.len();
    let end = page.find(END).expect("end marker");
    let expected = format!("\n{}", table());
    if page[start..end] != expected {
        if std::env::var_os("UPDATE_DOCS").is_some() {
            let updated = format!("{}{}{}", &page[..start], expected, &page[end..]);
            std::fs::write(&path, updated).unwrap();
        } else {
            panic!(
                "docs/errors.md is out of date with ERROR_CODES; run UPDATE_DOCS=1 cargo test -p posthorn-policy --test error_docs"
            );
        }
    }
}

/// Every code literal in the source is listed.
#[test]
fn every_code_used_in_the_source_is_listed() {
    let mut missing = Vec::new();
    let crates = repo_root().join("crates");
    let mut stack = vec![crates];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && path.to_string_lossy().contains("/src/")
            {
                let text = std::fs::read_to_string(&path).unwrap();
                for prefix in ["\"FailedOperation.", "\"RequestLimitExceeded."] {
                    for (i, _) in text.match_indices(prefix) {
                        let rest = &text[i + 1..];
                        let code: String = rest
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '.')
                            .collect();
                        if !ERROR_CODES.iter().any(|c| c.code == code) {
                            missing.push(format!("{code} in {}", path.display()));
                        }
                    }
                }
            }
        }
    }
    assert!(missing.is_empty(), "codes not in ERROR_CODES: {missing:?}");
}
