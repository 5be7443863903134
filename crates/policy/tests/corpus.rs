//! The fixture corpus (`tests/fixtures/`) run through [`posthorn_policy::check`].
//!
//! * `fixtures/pass/*.eml` must pass for envelope sender `app@example.com`
//!   under the default limits, and their [`Facts`] must match [`EXPECTED`].
//! * `fixtures/refuse/<Code>[--variant].eml` must be refused with
//!   `FailedOperation.<Code>`.
//! * The size limits are exercised on messages built here, at full size.
//!
//! How each fixture was produced (real Python/Go/JavaMail/PHPMailer output or
//! hand-written bytes) is in `fixtures/generate/README.md`; the tests only read
//! the stored files. Failures are collected and reported together, one line a
//! fixture, so one run shows the whole picture.

use posthorn_policy::{check, AttachmentFact, Facts, PolicyLimits};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const ENVELOPE_FROM: &str = "app@example.com";
const MIB: usize = 1024 * 1024;

/// Every code the brief and the checker define; each must be exercised by a
/// refuse fixture or a built message below.
const ALL_CODES: &[&str] = &[
    "MissingFrom",
    "MissingSubject",
    "MissingRecipient",
    "MissingEmailContent",
    "SenderMismatch",
    "InvalidContentType",
    "InvalidCharset",
    "InvalidMimeVersion",
    "InvalidTransferEncoding",
    "InvalidAttachmentContent",
    "TooManyAttachments",
    "AttachmentTooLarge",
    "AttachmentsTooLarge",
    "BodyTooLarge",
    "MessageTooLarge",
    // LineTooLong is also a Posthorn code, but the SMTP DATA reader enforces
    // it (crates/smtp), not check().
];

/// Codes the built-message tests below cover (not stored: too large).
const BUILT_CODES: &[&str] = &[
    "TooManyAttachments",
    "AttachmentTooLarge",
    "AttachmentsTooLarge",
    "BodyTooLarge",
    "MessageTooLarge",
    "InvalidAttachmentContent",
];

// ---------------------------------------------------------------- corpus ---

fn fixture_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind)
}

/// (file name, bytes) of every `.eml` in `fixtures/<kind>`, sorted.
fn fixtures(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = fixture_dir(kind);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no fixtures in {}", dir.display());
    out
}

fn run(raw: &[u8]) -> Result<Facts, String> {
    check(raw, ENVELOPE_FROM, &PolicyLimits::default()).map_err(|e| describe(&e))
}

fn describe(e: &posthorn_types::BusinessError) -> String {
    format!("{} ({})", e.code, e.message)
}

fn code_of(r: Result<Facts, posthorn_types::BusinessError>) -> Result<Facts, &'static str> {
    r.map_err(|e| e.code)
}

/// Panics with every collected failure, if any.
fn report(what: &str, failures: Vec<String>) {
    if !failures.is_empty() {
        let mut msg = format!("{} {what} failure(s):\n", failures.len());
        for f in &failures {
            let _ = writeln!(msg, "  - {f}");
        }
        panic!("{msg}");
    }
}

// ------------------------------------------------------------ expectations ---

/// One expected attachment. `size: None` where the decoded size depends on
/// line-ending canonicalisation (7bit/8bit/quoted-printable text parts).
struct Att {
    filename: Option<&'static str>,
    content_type: &'static str,
    size: Option<usize>,
}

const fn att(filename: &'static str, content_type: &'static str, size: usize) -> Att {
    Att {
        filename: Some(filename),
        content_type,
        size: Some(size),
    }
}

const fn att_nosize(filename: &'static str, content_type: &'static str) -> Att {
    Att {
        filename: Some(filename),
        content_type,
        size: None,
    }
}

struct Expect {
    file: &'static str,
    /// Decoded subject; `None`: not checked (see the fixture's note).
    subject: Option<&'static str>,
    /// Decoded From display name; `None`: not checked.
    from_name: Option<&'static str>,
    attachments: &'static [Att],
    /// Checked when non-empty.
    cc: &'static [&'static str],
    bcc: &'static [&'static str],
}

const fn e(file: &'static str, subject: &'static str, attachments: &'static [Att]) -> Expect {
    Expect {
        file,
        subject: Some(subject),
        from_name: None,
        attachments,
        cc: &[],
        bcc: &[],
    }
}

const NONE: &[Att] = &[];

const LONG_CN_CSV: &str = "报表 2024年第一季度 销售数据明细（华东区、华南区、华北区）.csv";
const JAVAMAIL_LONG: &str = "二〇二四年第四季度客户满意度调查结果与改进建议汇总报告（最终版）.txt";

const EXPECTED: &[Expect] = &[
    // --- Go, real library output
    Expect {
        from_name: Some("Go 发信程序"),
        ..e(
            "go-multipart-attachments.eml",
            "Go 附件测试",
            &[
                att("go.mod", "text/plain", 106),
                att("数据.csv", "text/csv", 22),
            ],
        )
    },
    e(
        "go-tencent-sample.eml",
        "Test465Attachment",
        &[
            att("./go.mod", "application/octet-stream", 106),
            att("测试附件.txt", "application/octet-stream", 228),
        ],
    ),
    e(
        "go-tencent-sample-verbatim.eml",
        "Test465Attachment",
        &[
            att("./go.mod", "application/octet-stream", 106),
            att("测试附件.txt", "application/octet-stream", 228),
        ],
    ),
    // --- hand-written
    e(
        "hw-attachment-encodings.eml",
        "Attachment encodings",
        &[
            att_nosize("qp.txt", "text/plain"),
            att_nosize("seven.txt", "text/plain"),
            att_nosize("eight.txt", "text/plain"),
        ],
    ),
    e(
        "hw-base64-shapes.eml",
        "Base64 shapes",
        &[
            att("empty.bin", "application/octet-stream", 0),
            att("pem.bin", "application/octet-stream", 512),
        ],
    ),
    Expect {
        from_name: Some("Café Bot"),
        ..e("hw-encoded-subject.eml", "Café ouvert — 今日 !", NONE)
    },
    e(
        "hw-filename-without-disposition.eml",
        "Name without disposition",
        &[
            att("report.pdf", "application/pdf", 327),
            att("photo.png", "image/png", 79),
        ],
    ),
    e("hw-gbk-8bit.eml", "简体中文测试（GBK）", NONE),
    e("hw-charset-big5.eml", "Charset Big5", NONE),
    e("hw-charset-euc-kr.eml", "Charset EUC-KR", NONE),
    e("hw-charset-gb18030.eml", "Charset GB18030", NONE),
    e("hw-charset-iso-2022-jp.eml", "Charset ISO-2022-JP", NONE),
    e("hw-charset-koi8-r.eml", "Charset KOI8-R", NONE),
    e("hw-charset-shift_jis.eml", "Charset Shift_JIS", NONE),
    e("hw-charset-us-ascii.eml", "Charset us-ascii", NONE),
    e("hw-charset-windows-1252.eml", "Charset windows-1252", NONE),
    e("hw-windows-1252-subject.eml", "Café € 5", NONE),
    e("hw-from-comment-form.eml", "Comment form", NONE),
    e(
        "hw-charset-alias-iso_8859-1.eml",
        "Charset alias ISO_8859-1",
        NONE,
    ),
    e(
        "hw-charset-alias-unknown-8bit.eml",
        "Charset alias unknown-8bit",
        NONE,
    ),
    e("hw-empty-transfer-encoding.eml", "Empty CTE", NONE),
    e(
        "hw-disposition-case.eml",
        "Disposition case",
        &[
            Att {
                filename: None,
                content_type: "application/octet-stream",
                size: Some(6),
            },
            att("tight.bin", "application/octet-stream", 6),
        ],
    ),
    e(
        "hw-text-attachment-charsets.eml",
        "Text attachment charsets",
        &[
            // Decoded = after base64, before any charset conversion.
            att("export.csv", "text/csv", 191),
            att("utf16.txt", "text/plain", 48),
        ],
    ),
    e(
        "hw-qp-attachment-sloppy.eml",
        "Sloppy QP attachment",
        &[att_nosize("sloppy.txt", "text/plain")],
    ),
    e(
        "hw-message-rfc822-attachment.eml",
        "Fwd: Original",
        &[att_nosize("original.eml", "message/rfc822")],
    ),
    e(
        "hw-attachment-no-filename.eml",
        "Nameless attachment",
        &[Att {
            filename: None,
            content_type: "application/octet-stream",
            size: Some(9),
        }],
    ),
    Expect {
        from_name: Some("Doe, John (App)"),
        ..e("hw-header-case.eml", "Folded subject line", NONE)
    },
    Expect {
        cc: &["one@example.net", "two@example.net"],
        bcc: &["hidden@example.org"],
        ..e("hw-html-cc-bcc.eml", "Cc and Bcc without To", NONE)
    },
    e(
        "hw-mime-version-comment.eml",
        "MIME-Version with a comment",
        NONE,
    ),
    e("hw-plain-no-mime-headers.eml", "Plain RFC 822", NONE),
    e(
        "hw-rfc2231-continuation.eml",
        "RFC 2231 continuation",
        &[att("测试-2.txt", "application/octet-stream", 13)],
    ),
    e(
        "hw-rfc2231-filename.eml",
        "RFC 2231 filename",
        &[att("测试.txt", "application/octet-stream", 13)],
    ),
    e(
        "hw-ten-attachments.eml",
        "Ten attachments",
        &[
            att("f01.txt", "application/octet-stream", 7),
            att("f02.txt", "application/octet-stream", 7),
            att("f03.txt", "application/octet-stream", 7),
            att("f04.txt", "application/octet-stream", 7),
            att("f05.txt", "application/octet-stream", 7),
            att("f06.txt", "application/octet-stream", 7),
            att("f07.txt", "application/octet-stream", 7),
            att("f08.txt", "application/octet-stream", 7),
            att("f09.txt", "application/octet-stream", 7),
            att("f10.txt", "application/octet-stream", 8),
        ],
    ),
    // --- JavaMail 1.6.5, real library output
    Expect {
        from_name: Some("应用通知"),
        ..e(
            "javamail-encodetext-filename.eml",
            "附件名称编码测试 (JavaMail)",
            &[
                att_nosize("发票.pdf", "application/octet-stream"),
                att_nosize("report.csv", "application/octet-stream"),
                // JavaMail split the folded RFC 2047 words into RFC 2231
                // continuations (name*0=, name*1=, ...); joined and decoded,
                // they give the name back (JavaMail reads it back that way).
                att_nosize(JAVAMAIL_LONG, "application/octet-stream"),
            ],
        )
    },
    e(
        "javamail-related-inline.eml",
        "Inline image (JavaMail)",
        NONE,
    ),
    e(
        "javamail-tencent-sample.eml",
        "Test email",
        &[
            att("测试附件.txt", "application/octet-stream", 36),
            att("b.txt", "application/octet-stream", 18),
        ],
    ),
    // --- PHPMailer 6.6.3, real library output
    e(
        "phpmailer-embedded-image.eml",
        "Embedded image",
        &[att("data.csv", "text/csv", 14)],
    ),
    Expect {
        from_name: Some("系统通知 Posthorn"),
        cc: &["cc@example.net"],
        ..e(
            "phpmailer-html-cc.eml",
            "Ihre Rechnung — 您的发票",
            &[att("发票 2024-12.pdf", "application/pdf", 142)],
        )
    },
    Expect {
        from_name: Some("fromName"),
        ..e(
            "phpmailer-tencent-sample.eml",
            "Here is the subject",
            &[att("tmp.txt", "text/plain", 48)],
        )
    },
    // --- Python email, real library output
    e("python-8bit.eml", "8bit body", NONE),
    e("python-alternative.eml", "Your weekly report", NONE),
    e(
        "python-attachments.eml",
        "Invoice and report",
        &[
            att("invoice-2024-001.pdf", "application/pdf", 327),
            att(LONG_CN_CSV, "text/csv", 39),
            att_nosize("notes.txt", "text/plain"),
        ],
    ),
    Expect {
        cc: &["carol@example.net", "dave@example.org"],
        bcc: &["audit@example.com"],
        ..e("python-cc-bcc.eml", "Copy for the team", NONE)
    },
    Expect {
        cc: &["carol@example.net"],
        ..e("python-cc-only.eml", "Cc only", NONE)
    },
    Expect {
        // Python labels its words "eucgb2312_cn" (its codec name, no MIME
        // charset): the subject cannot be expected to decode; it must pass.
        subject: None,
        ..e("python-gb2312-eucgb2312_cn-words.eml", "", NONE)
    },
    Expect {
        from_name: Some("通知中心"),
        ..e("python-gb2312.eml", "中文主题测试", NONE)
    },
    Expect {
        from_name: Some("José Müller"),
        ..e("python-iso-8859-1.eml", "Café reçu à Zürich", NONE)
    },
    e(
        "python-legacy-attachment.eml",
        "Legacy API attachment",
        &[att("月度报告.pdf", "application/octet-stream", 327)],
    ),
    Expect {
        from_name: Some("张三 Zhāng (Posthorn 通知)"),
        ..e(
            "python-nonascii-display-name.eml",
            "订单确认 — Order confirmation #1234",
            NONE,
        )
    },
    e("python-quoted-printable.eml", "Quoted-printable body", NONE),
    Expect {
        from_name: Some("发件人 Ünïcode"),
        ..e("python-smtputf8.eml", "原始 UTF-8 主题 — raw", NONE)
    },
    e(
        "python-related-cid-image.eml",
        "Inline logo (alternative > related)",
        NONE,
    ),
    e(
        "python-related-toplevel.eml",
        "Inline logo (top-level related)",
        NONE,
    ),
    Expect {
        from_name: Some("测试别名"),
        ..e("python-tencent-sample.eml", "[Test Subject] 测试主题", NONE)
    },
    e(
        "sendcloud-inline-image.eml",
        "python test inline image",
        NONE,
    ),
];

fn mime_type(ct: &str) -> String {
    ct.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn compare(exp: &Expect, facts: &Facts) -> Vec<String> {
    let mut bad = Vec::new();
    if let Some(subject) = exp.subject {
        if facts.subject != subject {
            bad.push(format!("subject {:?}, expected {subject:?}", facts.subject));
        }
    }
    if !facts.from.eq_ignore_ascii_case(ENVELOPE_FROM) {
        bad.push(format!("from {:?}, expected {ENVELOPE_FROM:?}", facts.from));
    }
    if let Some(name) = exp.from_name {
        if facts.from_name.as_deref() != Some(name) {
            bad.push(format!(
                "from_name {:?}, expected {name:?}",
                facts.from_name
            ));
        }
    }
    if !exp.cc.is_empty() && facts.cc != exp.cc {
        bad.push(format!("cc {:?}, expected {:?}", facts.cc, exp.cc));
    }
    if !exp.bcc.is_empty() && facts.bcc != exp.bcc {
        bad.push(format!("bcc {:?}, expected {:?}", facts.bcc, exp.bcc));
    }
    if facts.attachments.len() != exp.attachments.len() {
        bad.push(format!(
            "{} attachment(s) {:?}, expected {} {:?}",
            facts.attachments.len(),
            facts
                .attachments
                .iter()
                .map(|a| a.filename.as_deref().unwrap_or("<none>"))
                .collect::<Vec<_>>(),
            exp.attachments.len(),
            exp.attachments
                .iter()
                .map(|a| a.filename.unwrap_or("<none>"))
                .collect::<Vec<_>>(),
        ));
        return bad;
    }
    for (i, (got, want)) in facts.attachments.iter().zip(exp.attachments).enumerate() {
        if got.filename.as_deref() != want.filename {
            bad.push(format!(
                "attachment {i}: filename {:?}, expected {:?}",
                got.filename, want.filename
            ));
        }
        if mime_type(&got.content_type) != want.content_type {
            bad.push(format!(
                "attachment {i}: content_type {:?}, expected {:?}",
                got.content_type, want.content_type
            ));
        }
        if let Some(size) = want.size {
            if got.size != size {
                bad.push(format!(
                    "attachment {i}: size {}, expected {size}",
                    got.size
                ));
            }
        }
    }
    bad
}

// ------------------------------------------------------------ stored tests ---

#[test]
fn corpus_files_are_crlf_and_small() {
    let mut failures = Vec::new();
    for kind in ["pass", "refuse"] {
        for (name, raw) in fixtures(kind) {
            if raw.len() > 100 * 1024 {
                failures.push(format!(
                    "{kind}/{name}: {} bytes (keep fixtures under 100 KB)",
                    raw.len()
                ));
            }
            let bare_lf = raw
                .iter()
                .enumerate()
                .any(|(i, &b)| b == b'\n' && (i == 0 || raw[i - 1] != b'\r'));
            if bare_lf {
                failures.push(format!("{kind}/{name}: bare LF (the corpus is CRLF)"));
            }
        }
    }
    report("corpus hygiene", failures);
}

#[test]
fn pass_fixtures_pass() {
    let mut failures = Vec::new();
    for (name, raw) in fixtures("pass") {
        if let Err(e) = run(&raw) {
            failures.push(format!("pass/{name}: refused with {e}"));
        }
    }
    report("pass-fixture", failures);
}

#[test]
fn pass_fixtures_have_the_expected_facts() {
    let files: BTreeSet<String> = fixtures("pass").into_iter().map(|(n, _)| n).collect();
    let listed: BTreeSet<String> = EXPECTED.iter().map(|e| e.file.to_string()).collect();
    let mut failures = Vec::new();
    for missing in files.difference(&listed) {
        failures.push(format!("pass/{missing}: no entry in EXPECTED"));
    }
    for stale in listed.difference(&files) {
        failures.push(format!("EXPECTED lists {stale}, which is not in pass/"));
    }
    for exp in EXPECTED {
        let Ok(raw) = std::fs::read(fixture_dir("pass").join(exp.file)) else {
            continue;
        };
        match run(&raw) {
            Err(_) => {} // reported by pass_fixtures_pass
            Ok(facts) => {
                for b in compare(exp, &facts) {
                    failures.push(format!("pass/{}: {b}", exp.file));
                }
            }
        }
    }
    report("facts", failures);
}

/// `Code--variant.eml` or `Code.eml` -> `FailedOperation.Code`.
fn expected_code(name: &str) -> String {
    let stem = name.strip_suffix(".eml").unwrap();
    let code = stem.split("--").next().unwrap();
    format!("FailedOperation.{code}")
}

#[test]
fn refuse_fixtures_refuse_with_the_named_code() {
    let mut failures = Vec::new();
    for (name, raw) in fixtures("refuse") {
        let want = expected_code(&name);
        match check(&raw, ENVELOPE_FROM, &PolicyLimits::default()) {
            Ok(facts) => failures.push(format!(
                "refuse/{name}: passed (subject {:?}, {} attachment(s)), expected {want}",
                facts.subject,
                facts.attachments.len()
            )),
            Err(e) if e.code != want => failures.push(format!(
                "refuse/{name}: refused with {}, expected {want}",
                describe(&e)
            )),
            Err(e) => {
                // The Message begins with the seed table's wording, if any.
                if let Some(wording) = posthorn_policy::codes::seed_wording(e.code) {
                    if !e.message.starts_with(&format!("{wording}: ")) {
                        failures.push(format!(
                            "refuse/{name}: message does not begin with {wording:?}: {:?}",
                            e.message
                        ));
                    }
                }
                // The reply must stay one SMTP line.
                let line = e.to_reply().to_string();
                if line.len() > 512 || line.trim_end().contains('\n') {
                    failures.push(format!(
                        "refuse/{name}: reply is not one short line: {line:?}"
                    ));
                }
            }
        }
    }
    report("refuse-fixture", failures);
}

#[test]
fn every_code_is_exercised() {
    let mut covered: BTreeSet<String> = fixtures("refuse")
        .iter()
        .map(|(n, _)| {
            expected_code(n)
                .trim_start_matches("FailedOperation.")
                .to_string()
        })
        .collect();
    covered.extend(BUILT_CODES.iter().map(|c| c.to_string()));
    let missing: Vec<_> = ALL_CODES
        .iter()
        .filter(|c| !covered.contains(**c))
        .collect();
    assert!(missing.is_empty(), "codes with no fixture: {missing:?}");
    let unknown: Vec<_> = covered
        .iter()
        .filter(|c| !ALL_CODES.contains(&c.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "refuse fixtures named after unknown codes: {unknown:?}"
    );
}

/// With limits set exactly at what a pass fixture uses, it still passes; one
/// below, it is refused with the matching code. Uses the checker's own sizes,
/// so it checks consistency (off-by-one, which sizes are compared), not values.
#[test]
fn limits_bind_exactly_at_the_fixtures_own_sizes() {
    let mut failures = Vec::new();
    for (name, raw) in fixtures("pass") {
        let Ok(facts) = run(&raw) else { continue };
        let d = PolicyLimits::default();
        let mut cases: Vec<(&str, PolicyLimits, PolicyLimits, &str)> = vec![(
            "max_message_size",
            PolicyLimits {
                max_message_size: raw.len(),
                ..d
            },
            PolicyLimits {
                max_message_size: raw.len() - 1,
                ..d
            },
            "FailedOperation.MessageTooLarge",
        )];
        let n = facts.attachments.len();
        if n > 0 {
            let max = facts.attachments.iter().map(|a| a.size).max().unwrap();
            let total: usize = facts.attachments.iter().map(|a| a.size).sum();
            cases.push((
                "max_attachments",
                PolicyLimits {
                    max_attachments: n,
                    ..d
                },
                PolicyLimits {
                    max_attachments: n - 1,
                    ..d
                },
                "FailedOperation.TooManyAttachments",
            ));
            if max > 0 {
                cases.push((
                    "max_attachment_size",
                    PolicyLimits {
                        max_attachment_size: max,
                        ..d
                    },
                    PolicyLimits {
                        max_attachment_size: max - 1,
                        ..d
                    },
                    "FailedOperation.AttachmentTooLarge",
                ));
            }
            // Only meaningful when no single attachment reaches total - 1.
            if total > max + 1 {
                cases.push((
                    "max_attachments_total",
                    PolicyLimits {
                        max_attachments_total: total,
                        ..d
                    },
                    PolicyLimits {
                        max_attachments_total: total - 1,
                        ..d
                    },
                    "FailedOperation.AttachmentsTooLarge",
                ));
            }
        }
        for (what, at, below, code) in cases {
            if let Err(e) = check(&raw, ENVELOPE_FROM, &at) {
                failures.push(format!(
                    "pass/{name}: {what} at its own size: refused {}",
                    describe(&e)
                ));
            }
            match code_of(check(&raw, ENVELOPE_FROM, &below)) {
                Err(c) if c == code => {}
                other => failures.push(format!(
                    "pass/{name}: {what} one below: {:?}, expected {code}",
                    other.map(|f| f.attachments.len())
                )),
            }
        }
    }
    report("limit-boundary", failures);
}

// ---------------------------------------------------------- built messages ---

/// One MIME part: its header lines (CRLF-terminated) and its encoded body.
struct Part {
    headers: String,
    body: Vec<u8>,
}

/// Deterministic, incompressible-looking bytes.
fn data(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Standard base64, wrapped at 76 columns with CRLF (what every sample does).
fn base64_wrapped(input: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut flat = Vec::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        flat.push(ALPHABET[(n >> 18) as usize & 63]);
        flat.push(ALPHABET[(n >> 12) as usize & 63]);
        flat.push(if chunk.len() > 1 {
            ALPHABET[(n >> 6) as usize & 63]
        } else {
            b'='
        });
        flat.push(if chunk.len() > 2 {
            ALPHABET[n as usize & 63]
        } else {
            b'='
        });
    }
    let mut out = Vec::with_capacity(flat.len() + flat.len() / 76 * 2 + 2);
    for line in flat.chunks(76) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Quoted-printable of arbitrary bytes: every byte as =XX, 25 to a line
/// (75 columns + soft break), so the wire is ~3.1x the decoded size.
fn qp_all_escaped(input: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(input.len() * 3 + input.len() / 25 * 3 + 2);
    for (i, &b) in input.iter().enumerate() {
        if i > 0 && i % 25 == 0 {
            out.extend_from_slice(b"=\r\n");
        }
        out.extend_from_slice(&[b'=', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn text_part(text: &str) -> Part {
    Part {
        headers: "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n"
            .into(),
        body: text.as_bytes().to_vec(),
    }
}

/// `lines` lines of 100 ASCII bytes each (CRLF included): a 7bit body of
/// exactly `lines * 100` bytes.
fn text_lines(lines: usize) -> String {
    let line = format!("{}\r\n", "x".repeat(98));
    line.repeat(lines)
}

fn b64_attachment(name: &str, decoded: &[u8]) -> Part {
    Part {
        headers: format!(
            "Content-Type: application/octet-stream; name=\"{name}\"\r\n\
             Content-Transfer-Encoding: base64\r\n\
             Content-Disposition: attachment; filename=\"{name}\"\r\n"
        ),
        body: base64_wrapped(decoded),
    }
}

fn qp_attachment(name: &str, decoded: &[u8]) -> Part {
    Part {
        headers: format!(
            "Content-Type: application/octet-stream\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\
             Content-Disposition: attachment; filename=\"{name}\"\r\n"
        ),
        body: qp_all_escaped(decoded),
    }
}

fn inline_cid_image(cid: &str, decoded: &[u8]) -> Part {
    Part {
        headers: format!(
            "Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\nContent-ID: <{cid}>\r\n"
        ),
        body: base64_wrapped(decoded),
    }
}

fn multipart(subtype: &str, boundary: &str, parts: Vec<Part>) -> Part {
    let mut body = Vec::new();
    for p in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        body.extend_from_slice(p.headers.as_bytes());
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(&p.body);
        if !p.body.ends_with(b"\r\n") {
            body.extend_from_slice(b"\r\n");
        }
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Part {
        headers: format!("Content-Type: multipart/{subtype}; boundary=\"{boundary}\"\r\n"),
        body,
    }
}

/// A whole message around `top`.
fn message(subject: &str, top: Part) -> Vec<u8> {
    let mut raw = format!(
        "From: Built <app@example.com>\r\nTo: user@example.net\r\nSubject: {subject}\r\n\
         Date: Mon, 02 Dec 2024 16:28:58 +0800\r\nMIME-Version: 1.0\r\n"
    )
    .into_bytes();
    raw.extend_from_slice(top.headers.as_bytes());
    raw.extend_from_slice(b"\r\n");
    raw.extend_from_slice(&top.body);
    raw
}

fn with_attachments(subject: &str, atts: Vec<Part>) -> Vec<u8> {
    let mut parts = vec![text_part("See the attachments.\r\n")];
    parts.extend(atts);
    message(subject, multipart("mixed", "built-mixed", parts))
}

fn expect_code(what: &str, raw: &[u8], code: &str, failures: &mut Vec<String>) {
    match code_of(check(raw, ENVELOPE_FROM, &PolicyLimits::default())) {
        Err(c) if c == code => {}
        Err(c) => failures.push(format!(
            "{what} ({} bytes): refused with {c}, expected {code}",
            raw.len()
        )),
        Ok(f) => failures.push(format!(
            "{what} ({} bytes): passed with {} attachment(s), expected {code}",
            raw.len(),
            f.attachments.len()
        )),
    }
}

fn expect_pass(what: &str, raw: &[u8], failures: &mut Vec<String>) -> Option<Facts> {
    match check(raw, ENVELOPE_FROM, &PolicyLimits::default()) {
        Ok(f) => Some(f),
        Err(e) => {
            failures.push(format!(
                "{what} ({} bytes): refused with {}, expected a pass",
                raw.len(),
                describe(&e)
            ));
            None
        }
    }
}

fn sizes(f: &Facts) -> Vec<usize> {
    f.attachments
        .iter()
        .map(|a: &AttachmentFact| a.size)
        .collect()
}

#[test]
fn built_attachment_count_limit() {
    let mut failures = Vec::new();
    let atts = |n: usize| {
        (0..n)
            .map(|i| b64_attachment(&format!("f{i}.bin"), &data(100, i as u32)))
            .collect()
    };
    if let Some(f) = expect_pass(
        "10 attachments",
        &with_attachments("ten", atts(10)),
        &mut failures,
    ) {
        if f.attachments.len() != 10 {
            failures.push(format!("10 attachments: Facts has {}", f.attachments.len()));
        }
    }
    expect_code(
        "11 attachments",
        &with_attachments("eleven", atts(11)),
        "FailedOperation.TooManyAttachments",
        &mut failures,
    );

    // Inline cid images in multipart/related are not attachments: 11 of them
    // next to 10 real attachments still pass, with 10 counted.
    let mut related = vec![Part {
        headers: "Content-Type: text/html; charset=utf-8\r\n".into(),
        body: b"<p><img src=\"cid:i0@x\"> ... </p>\r\n".to_vec(),
    }];
    related.extend((0..11).map(|i| inline_cid_image(&format!("i{i}@x"), &data(64, 100 + i))));
    let mut parts = vec![multipart("related", "built-related", related)];
    parts.extend(atts(10));
    let raw = message("inline + ten", multipart("mixed", "built-mixed", parts));
    if let Some(f) = expect_pass("11 inline cid images + 10 attachments", &raw, &mut failures) {
        if f.attachments.len() != 10 {
            failures.push(format!(
                "11 inline cid images + 10 attachments: Facts counts {} attachments, expected 10",
                f.attachments.len()
            ));
        }
    }
    report("attachment-count", failures);
}

#[test]
fn built_single_attachment_limit() {
    let mut failures = Vec::new();
    let raw = with_attachments(
        "5 MiB",
        vec![b64_attachment("exact.bin", &data(5 * MIB, 1))],
    );
    if let Some(f) = expect_pass("one attachment of exactly 5 MiB", &raw, &mut failures) {
        if sizes(&f) != [5 * MIB] {
            failures.push(format!(
                "one attachment of exactly 5 MiB: sizes {:?}",
                sizes(&f)
            ));
        }
    }
    let raw = with_attachments(
        "5 MiB + 1",
        vec![b64_attachment("big.bin", &data(5 * MIB + 1, 2))],
    );
    expect_code(
        "one attachment of 5 MiB + 1",
        &raw,
        "FailedOperation.AttachmentTooLarge",
        &mut failures,
    );
    report("single-attachment", failures);
}

/// A text attachment's decoded size is its bytes after the transfer encoding,
/// not after charset conversion: a 4 MiB GBK CSV (Excel's CSV export on a
/// Chinese Windows) is a 4 MiB attachment, within the 5 MiB limit.
#[test]
fn built_gbk_text_attachment_is_sized_in_its_own_bytes() {
    let mut failures = Vec::new();
    // "苹果,10\r\n" in GBK: C6 BB B9 FB 2C 31 30 0D 0A (9 bytes).
    let row: &[u8] = &[0xC6, 0xBB, 0xB9, 0xFB, b',', b'1', b'0', b'\r', b'\n'];
    let mut csv = Vec::with_capacity(4 * MIB);
    while csv.len() + row.len() <= 4 * MIB {
        csv.extend_from_slice(row);
    }
    let n = csv.len();
    let att = Part {
        headers: "Content-Type: text/csv; charset=GBK\r\nContent-Transfer-Encoding: base64\r\n\
                  Content-Disposition: attachment; filename=\"export.csv\"\r\n"
            .into(),
        body: base64_wrapped(&csv),
    };
    let raw = with_attachments("GBK CSV", vec![att]);
    if let Some(f) = expect_pass("4 MiB GBK text/csv attachment", &raw, &mut failures) {
        if sizes(&f) != [n] {
            failures.push(format!(
                "4 MiB GBK text/csv attachment: sizes {:?}, expected [{n}]",
                sizes(&f)
            ));
        }
    }
    report("text-attachment-size", failures);
}

#[test]
fn built_total_attachment_limit() {
    let mut failures = Vec::new();
    let raw = with_attachments(
        "4 + 4 MiB",
        vec![
            b64_attachment("a.bin", &data(4 * MIB, 3)),
            b64_attachment("b.bin", &data(4 * MIB, 4)),
        ],
    );
    if let Some(f) = expect_pass("attachments totalling exactly 8 MiB", &raw, &mut failures) {
        if sizes(&f) != [4 * MIB, 4 * MIB] {
            failures.push(format!(
                "attachments totalling exactly 8 MiB: sizes {:?}",
                sizes(&f)
            ));
        }
    }
    let raw = with_attachments(
        "4 + 4 MiB + 1",
        vec![
            b64_attachment("a.bin", &data(4 * MIB, 3)),
            b64_attachment("b.bin", &data(4 * MIB, 4)),
            b64_attachment("c.bin", &data(1, 5)),
        ],
    );
    expect_code(
        "attachments totalling 8 MiB + 1",
        &raw,
        "FailedOperation.AttachmentsTooLarge",
        &mut failures,
    );
    report("total-attachments", failures);
}

#[test]
fn built_body_limit() {
    let mut failures = Vec::new();
    // Whole message (headers and all) 1 MiB + ~10 KiB of plain text.
    let raw = message(
        "big body",
        Part {
            headers: "Content-Type: text/plain; charset=utf-8\r\n".into(),
            body: text_lines(MIB / 100 + 100).into_bytes(),
        },
    );
    expect_code(
        "text/plain body of 1 MiB + 10 KiB",
        &raw,
        "FailedOperation.BodyTooLarge",
        &mut failures,
    );

    // The same excess in the text part of a multipart/mixed with a small attachment.
    let raw = message(
        "big body + attachment",
        multipart(
            "mixed",
            "built-mixed",
            vec![
                text_part(&text_lines(MIB / 100 + 100)),
                b64_attachment("small.bin", &data(1000, 6)),
            ],
        ),
    );
    expect_code(
        "mixed: 1 MiB + 10 KiB text + small attachment",
        &raw,
        "FailedOperation.BodyTooLarge",
        &mut failures,
    );

    // Body just under 1 MiB next to 4 MiB of attachments: attachments are
    // not body, so this passes although the message is ~6.4 MiB.
    let raw = message(
        "body under limit + big attachment",
        multipart(
            "mixed",
            "built-mixed",
            vec![
                text_part(&text_lines(MIB / 100 - 100)),
                b64_attachment("big.bin", &data(4 * MIB, 7)),
            ],
        ),
    );
    expect_pass(
        "1 MiB - 10 KiB text + 4 MiB attachment",
        &raw,
        &mut failures,
    );

    // An inline cid image in multipart/related is not an attachment, so it
    // is body: a 1.5 MiB inline image goes over the body limit.
    let raw = message(
        "huge inline image",
        multipart(
            "related",
            "built-related",
            vec![
                Part {
                    headers: "Content-Type: text/html; charset=utf-8\r\n".into(),
                    body: b"<img src=\"cid:big@x\">\r\n".to_vec(),
                },
                inline_cid_image("big@x", &data(3 * MIB / 2, 8)),
            ],
        ),
    );
    expect_code(
        "1.5 MiB inline cid image in related",
        &raw,
        "FailedOperation.BodyTooLarge",
        &mut failures,
    );
    report("body-size", failures);
}

/// A multipart/mixed message whose two attachments are quoted-printable with
/// every byte escaped (wire ~3.1x decoded), plus `pad` bytes of text.
fn qp_message(a: usize, b: usize, pad: usize) -> Vec<u8> {
    // Always ends in CRLF, so the length grows by exactly one per `pad`.
    let text = format!(
        "Padding follows.\r\n{}{}\r\n",
        text_lines(pad / 100),
        "p".repeat(pad % 100)
    );
    message(
        "qp",
        multipart(
            "mixed",
            "built-mixed",
            vec![
                text_part(&text),
                qp_attachment("a.bin", &data(a, 9)),
                qp_attachment("b.bin", &data(b, 10)),
            ],
        ),
    )
}

#[test]
fn built_message_limit() {
    let mut failures = Vec::new();
    // 16 MiB + 2 KiB of text: over the message limit (and the body limit; the
    // message limit is the one a client hits first, via SIZE, so it wins).
    let raw = message(
        "17 MiB",
        Part {
            headers: "Content-Type: text/plain; charset=utf-8\r\n".into(),
            body: text_lines(16 * MIB / 100 + 20).into_bytes(),
        },
    );
    expect_code(
        "text body over 16 MiB",
        &raw,
        "FailedOperation.MessageTooLarge",
        &mut failures,
    );

    // Over 16 MiB only because quoted-printable triples the attachments:
    // 2 x 2.7 MiB decoded is within every attachment limit, the body is tiny.
    let (a, b) = (27 * MIB / 10, 27 * MIB / 10);
    let raw = qp_message(a, b, 0);
    assert!(
        raw.len() > 16 * MIB,
        "qp message is only {} bytes",
        raw.len()
    );
    expect_code(
        "qp attachments, ~16.9 MiB on the wire",
        &raw,
        "FailedOperation.MessageTooLarge",
        &mut failures,
    );

    // Exactly 16 MiB passes, 16 MiB + 1 does not (same shape, padded).
    let (a, b) = (27 * MIB / 10, 24 * MIB / 10);
    let pad = 16 * MIB - qp_message(a, b, 0).len();
    assert!(
        pad < 900 * 1024,
        "padding {pad} would go over the body limit"
    );
    let raw = qp_message(a, b, pad);
    assert_eq!(raw.len(), 16 * MIB);
    if let Some(f) = expect_pass(
        "message of exactly 16 MiB (qp attachments)",
        &raw,
        &mut failures,
    ) {
        if sizes(&f) != [a, b] {
            failures.push(format!(
                "message of exactly 16 MiB: attachment sizes {:?}, expected {:?}",
                sizes(&f),
                [a, b]
            ));
        }
    }
    let raw = qp_message(a, b, pad + 1);
    assert_eq!(raw.len(), 16 * MIB + 1);
    expect_code(
        "message of 16 MiB + 1 (qp attachments)",
        &raw,
        "FailedOperation.MessageTooLarge",
        &mut failures,
    );
    report("message-size", failures);
}

#[test]
fn built_broken_base64_deep_inside_a_large_attachment() {
    let mut failures = Vec::new();
    let mut att = b64_attachment("broken.bin", &data(2 * MIB, 11));
    // Corrupt one line ~1.5 MB in: the decoder must read the whole part.
    let at = att.body.len() * 3 / 4;
    let at = at - at % 78; // start of a line (76 + CRLF)
    att.body[at..at + 3].copy_from_slice(b"!!!");
    let raw = with_attachments("broken deep", vec![att]);
    expect_code(
        "'!!!' 1.5 MB into a 2 MiB attachment",
        &raw,
        "FailedOperation.InvalidAttachmentContent",
        &mut failures,
    );

    // Truncated: the last base64 line loses characters (length not 4n).
    let mut att = b64_attachment("truncated.bin", &data(1000, 12));
    let n = att.body.len();
    // 1000 bytes end in a quantum "xy=="; dropping "y==\r\n" leaves one
    // dangling character, which no base64 decoder can accept.
    att.body.truncate(n - 5);
    att.body.extend_from_slice(b"\r\n");
    let raw = with_attachments("truncated", vec![att]);
    expect_code(
        "base64 cut mid-quantum",
        &raw,
        "FailedOperation.InvalidAttachmentContent",
        &mut failures,
    );
    report("broken-base64", failures);
}
