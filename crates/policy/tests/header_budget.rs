//! The policy check is linear in its input: mail-parser is handed a message
//! only after the pre-scan has bounded what makes its cost grow faster
//! (parameters per Content-Type or Content-Disposition field, header fields
//! and bytes per part, parts, boundaries). Cost is measured in work done,
//! never in time: the pre-scan's count of bytes examined, and what
//! mail-parser is then handed (parameters per field and in all, header
//! fields, parts), read back from its own parse.
//!
//! 1. The regression from issue 17: 80,000 and 160,000 RFC 2231
//!    parameters in an attachment part's Content-Disposition are refused
//!    with `FailedOperation.HeaderTooComplex` by the pre-scan, which
//!    stops a few KB into the field, whatever its length.
//! 2. Each cap, just under and just over.
//! 3. The walk reads header blocks where mail-parser reads them (nested
//!    messages, encoded ones, digests, a boundary in mid-line, the Date
//!    field that runs past the blank line), so no block escapes the count.
//! 4. A property test over generated MIME messages (random parameter
//!    counts and forms, continuations, language tags, folding, nesting,
//!    encoded nested messages, missing boundaries): the pre-scan's work is
//!    within `work_bound` (linear) and within 2 bytes per byte walked plus
//!    a pass per missing boundary; when it lets a message through,
//!    mail-parser sees exactly the parts and header fields it counted and
//!    no field with more parameters than the caps allow; plausible
//!    messages pass and a field with more than 100 parameters never does.
//!
//! 256 cases per property; set `PROPTEST_CASES` to run more.

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};
use posthorn_policy::*;
use proptest::prelude::*;

const SENDER: &str = "app@example.com";
const HEADER_TOO_COMPLEX: &str = "FailedOperation.HeaderTooComplex";
const HEAD: &str =
    "From: app@example.com\r\nTo: a@example.net\r\nSubject: budget\r\nMIME-Version: 1.0\r\n";

/// Limits under which only the pre-scan can refuse these messages.
const GENEROUS: PolicyLimits = PolicyLimits {
    max_attachments: usize::MAX,
    max_attachment_size: usize::MAX,
    max_attachments_total: usize::MAX,
    max_body_size: usize::MAX,
    max_message_size: usize::MAX,
};

fn code(raw: &[u8]) -> &'static str {
    match check(raw, SENDER, &GENEROUS) {
        Ok(_) => "ok",
        Err(e) => e.code,
    }
}

/// `n` parameters as the probe sent them, `p0*0*=utf-8''a; p1*1*=utf-8''a;
/// …`, folded so no line passes 2,000 bytes.
fn probe_parameters(n: usize) -> String {
    let mut out = String::new();
    // After "Content-Disposition: attachment;" on the first line.
    let mut line = 32;
    for i in 0..n {
        let p = format!("p{i}*{}*=utf-8''a;", i % 2);
        if line + p.len() + 1 > 1990 {
            out.push_str("\r\n ");
            line = 1;
        } else {
            out.push(' ');
            line += 1;
        }
        out.push_str(&p);
        line += p.len();
    }
    out
}

/// A text part and an attachment whose Content-Disposition carries
/// `params`.
fn attachment_with(params: &str) -> String {
    format!(
        "{HEAD}Content-Type: multipart/mixed; boundary=\"BB\"\r\n\r\n--BB\r\nContent-Type: text/plain\r\n\r\nSee the file.\r\n--BB\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment;{params}\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQ=\r\n--BB--\r\n"
    )
}

// ---------------------------------------------------------------------------
// 1. The regression.

#[test]
fn the_probe_message_is_refused_by_the_pre_scan_in_a_few_kilobytes() {
    for n in [80_000, 160_000] {
        let raw = attachment_with(&probe_parameters(n));
        assert!(
            raw.len() > n * 19,
            "{n} parameters make {} bytes",
            raw.len()
        );
        let refused = check(raw.as_bytes(), SENDER, &PolicyLimits::default()).unwrap_err();
        assert_eq!(refused.code, HEADER_TOO_COMPLEX);
        assert_eq!(refused.smtp_code, 554);
        assert!(
            refused
                .message
                .contains("part 2: Content-Disposition has more than 100 parameters"),
            "{}",
            refused.message
        );
        let (work, result) = prescan(raw.as_bytes());
        assert_eq!(result.unwrap_err().code, HEADER_TOO_COMPLEX);
        // It stops at the 101st parameter: the headers before the field
        // and the start of the field, whatever the field's length.
        let field = raw.find("Content-Disposition").unwrap();
        assert!(
            work.bytes < field + 2 * 1024,
            "{n} parameters: {} bytes examined, the field starts at {field}",
            work.bytes
        );
        assert!(work.bytes <= work_bound(raw.len()));
    }
    // The work to refuse does not grow with the parameters.
    let work = |n| prescan(attachment_with(&probe_parameters(n)).as_bytes()).0;
    assert_eq!(work(200), work(80_000));
    // The same attachment with a few parameters passes.
    assert_eq!(
        code(attachment_with(&probe_parameters(10)).as_bytes()),
        "ok"
    );
}

#[test]
fn the_http_raw_path_and_smtp_path_share_the_refusal_line() {
    let raw = attachment_with(&probe_parameters(1_000));
    let reply = check(raw.as_bytes(), SENDER, &PolicyLimits::default())
        .unwrap_err()
        .to_reply()
        .to_string();
    assert!(reply.starts_with("554 5.0.0 "), "{reply}");
    assert!(
        reply.contains("\"Code\":\"FailedOperation.HeaderTooComplex\""),
        "{reply}"
    );
}

// ---------------------------------------------------------------------------
// 2. Each cap, just under and just over.

fn with_parts(parts: &[String]) -> String {
    let mut m = format!("{HEAD}Content-Type: multipart/mixed; boundary=\"BB\"\r\n\r\n");
    for p in parts {
        m.push_str("--BB\r\n");
        m.push_str(p);
        m.push_str("\r\n");
    }
    m.push_str("--BB--\r\n");
    m
}

fn text_part(extra_headers: &str) -> String {
    format!("Content-Type: text/plain{extra_headers}\r\n\r\nhello")
}

/// A Content-Type with exactly `n` parameters as the pre-scan counts them
/// (`n - 1` `;`-separated ones and the line end).
fn content_type_counting(n: usize) -> String {
    let mut field = String::from("Content-Type: text/plain");
    for i in 0..n - 1 {
        field.push_str(&format!("; p{i}=1"));
    }
    field
}

#[test]
fn parameters_per_field() {
    let at = |n| format!("{HEAD}{}\r\n\r\nhello\r\n", content_type_counting(n));
    assert_eq!(code(at(MAX_PARAMETERS).as_bytes()), "ok");
    assert_eq!(code(at(MAX_PARAMETERS + 1).as_bytes()), HEADER_TOO_COMPLEX);
    // A fold, a closing quote, a comment or a quote mark counts as much as
    // a `;`: mail-parser can start a parameter after each.
    for sep in ["\r\n ", "\"\"", "(", "'"] {
        let raw = format!(
            "{HEAD}Content-Type: text/plain; a=b{}\r\n\r\nhello\r\n",
            sep.repeat(MAX_PARAMETERS)
        );
        assert_eq!(code(raw.as_bytes()), HEADER_TOO_COMPLEX, "{sep:?}");
    }
}

#[test]
fn parameters_in_all() {
    // Parts of 50 parameters each: the total passes the cap where the
    // parts pass MAX_PARAMETERS_TOTAL / 50.
    let part = text_part(&"; p=1".repeat(49));
    let fits = MAX_PARAMETERS_TOTAL / 50 - 1;
    let raw = with_parts(&vec![part.clone(); fits]);
    let (work, result) = prescan(raw.as_bytes());
    assert!(result.is_ok());
    assert!(work.parameters <= MAX_PARAMETERS_TOTAL);
    let raw = with_parts(&vec![part; fits + 2]);
    assert_eq!(code(raw.as_bytes()), HEADER_TOO_COMPLEX);
}

#[test]
fn bytes_per_parameter_field() {
    let name = |len| {
        format!(
            "{HEAD}Content-Type: text/plain; name=\"{}\"\r\n\r\nhello\r\n",
            "x".repeat(len)
        )
    };
    assert_eq!(code(name(MAX_PARAMETER_FIELD_BYTES - 100).as_bytes()), "ok");
    assert_eq!(
        code(name(MAX_PARAMETER_FIELD_BYTES).as_bytes()),
        HEADER_TOO_COMPLEX
    );
}

#[test]
fn header_fields_per_part() {
    let fields = |n: usize| {
        (0..n)
            .map(|i| format!("\r\nX-Field-{i}: {i}"))
            .collect::<String>()
    };
    // The part's Content-Type is one field.
    let raw = with_parts(&[text_part(&fields(MAX_HEADER_FIELDS - 1))]);
    assert_eq!(code(raw.as_bytes()), "ok");
    let raw = with_parts(&[text_part(&fields(MAX_HEADER_FIELDS))]);
    assert_eq!(code(raw.as_bytes()), HEADER_TOO_COMPLEX);
    // The message's own header block too.
    let raw = format!(
        "{HEAD}X-First: 0{}\r\n\r\nhello\r\n",
        fields(MAX_HEADER_FIELDS)
    );
    assert_eq!(code(raw.as_bytes()), HEADER_TOO_COMPLEX);
}

#[test]
fn header_bytes_per_part_and_in_all() {
    // 200 fields of 1,000 bytes: 200 KB, under the per-part cap.
    let big = |fields: usize| {
        (0..fields)
            .map(|i| format!("\r\nX-Field-{i:03}: {}", "v".repeat(984)))
            .collect::<String>()
    };
    let raw = with_parts(&[text_part(&big(200))]);
    assert_eq!(code(raw.as_bytes()), "ok");
    let raw = with_parts(&[text_part(&big(MAX_HEADER_BYTES / 1000 + 1))]);
    assert_eq!(code(raw.as_bytes()), HEADER_TOO_COMPLEX);
    // Five parts of 200 KB pass each cap per part but not the total.
    let parts = vec![text_part(&big(200)); 4];
    assert_eq!(code(with_parts(&parts).as_bytes()), "ok");
    let parts = vec![text_part(&big(200)); MAX_HEADER_BYTES_TOTAL / 200_000 + 1];
    assert_eq!(code(with_parts(&parts).as_bytes()), HEADER_TOO_COMPLEX);
}

#[test]
fn parts() {
    let part = text_part("");
    // The message's own header block is one.
    let raw = with_parts(&vec![part.clone(); MAX_PARTS - 1]);
    assert_eq!(code(raw.as_bytes()), "ok");
    let raw = with_parts(&vec![part; MAX_PARTS]);
    assert_eq!(code(raw.as_bytes()), HEADER_TOO_COMPLEX);
}

#[test]
fn boundary_length() {
    let with_boundary = |b: &str| {
        format!(
            "{HEAD}Content-Type: multipart/mixed; boundary=\"{b}\"\r\n\r\n--{b}\r\nContent-Type: text/plain\r\n\r\nhello\r\n--{b}--\r\n"
        )
    };
    assert_eq!(
        code(with_boundary(&"b".repeat(MAX_BOUNDARY_LEN)).as_bytes()),
        "ok"
    );
    assert_eq!(
        code(with_boundary(&"b".repeat(MAX_BOUNDARY_LEN + 1)).as_bytes()),
        HEADER_TOO_COMPLEX
    );
}

#[test]
fn missing_boundaries() {
    let broken =
        |i: usize| format!("Content-Type: multipart/mixed; boundary=\"nowhere-{i}\"\r\n\r\nhello");
    let parts: Vec<String> = (0..MAX_MISSING_BOUNDARIES).map(broken).collect();
    let (work, result) = prescan(with_parts(&parts).as_bytes());
    assert!(result.is_ok());
    assert_eq!(work.missing_boundaries, MAX_MISSING_BOUNDARIES);
    let parts: Vec<String> = (0..=MAX_MISSING_BOUNDARIES).map(broken).collect();
    assert_eq!(code(with_parts(&parts).as_bytes()), HEADER_TOO_COMPLEX);
    // 20,000 of them (13 s before) are refused after the ninth.
    let parts: Vec<String> = (0..20_000).map(broken).collect();
    let raw = with_parts(&parts);
    let (work, result) = prescan(raw.as_bytes());
    assert_eq!(result.unwrap_err().code, HEADER_TOO_COMPLEX);
    assert!(work.bytes <= (MAX_MISSING_BOUNDARIES + 2) * raw.len());
}

// ---------------------------------------------------------------------------
// 3. Header blocks where mail-parser reads them.

fn bomb() -> String {
    format!(
        "Content-Disposition: attachment;{}",
        probe_parameters(1_000)
    )
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (i, chunk) in data.chunks(3).enumerate() {
        let v = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ALPHABET[(v >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
        if i % 19 == 18 {
            out.push_str("\r\n");
        }
    }
    out.push_str("\r\n");
    out
}

fn quoted_printable(data: &str) -> String {
    let mut out = String::new();
    let mut col = 0;
    for b in data.bytes() {
        let piece = match b {
            b'\r' | b'\n' => (b as char).to_string(),
            b'=' => "=3D".to_string(),
            _ => (b as char).to_string(),
        };
        if b == b'\n' {
            col = 0;
        } else if col + piece.len() > 72 {
            out.push_str("=\r\n");
            col = 0;
        }
        col += piece.len();
        out.push_str(&piece);
    }
    out
}

fn nested_message(headers: &str) -> String {
    format!("From: b@example.org\r\nSubject: inner\r\n{headers}\r\n\r\ninner body\r\n")
}

#[test]
fn nested_and_encoded_messages_are_walked() {
    let inner = nested_message(&bomb());
    let cases = [
        (
            "inline message/rfc822",
            format!("Content-Type: message/rfc822\r\n\r\n{inner}"),
        ),
        (
            "base64 message/rfc822",
            format!(
                "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
                base64(inner.as_bytes())
            ),
        ),
        (
            "quoted-printable message/global",
            format!(
                "Content-Type: message/global\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{}",
                quoted_printable(&inner)
            ),
        ),
        (
            "base64 in base64",
            format!(
                "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
                base64(
                    format!(
                        "From: c@example.org\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
                        base64(inner.as_bytes())
                    )
                    .as_bytes()
                )
            ),
        ),
        ("the bomb itself", format!("{}\r\n\r\nx", bomb())),
    ];
    for (what, part) in cases {
        let raw = with_parts(&[text_part(""), part]);
        assert_eq!(code(raw.as_bytes()), HEADER_TOO_COMPLEX, "{what}");
    }
    // A digest's parts are messages without saying so.
    let raw = format!(
        "{HEAD}Content-Type: multipart/digest; boundary=\"DD\"\r\n\r\n--DD\r\nContent-Transfer-Encoding: base64\r\n\r\n{}--DD--\r\n",
        base64(inner.as_bytes())
    );
    assert_eq!(code(raw.as_bytes()), HEADER_TOO_COMPLEX);
    // The same nested messages without the bomb pass.
    let calm = nested_message("Content-Type: text/plain; charset=utf-8");
    let raw = with_parts(&[
        text_part(""),
        format!(
            "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
            base64(calm.as_bytes())
        ),
    ]);
    assert_eq!(code(raw.as_bytes()), "ok");
}

#[test]
fn blocks_start_where_mail_parser_starts_them() {
    // A boundary in mid-line: mail-parser reads the header block from just
    // after it.
    let raw = format!(
        "{HEAD}Content-Type: multipart/mixed; boundary=\"BB\"\r\n\r\nsee --BB{}\r\n\r\nx\r\n--BB--\r\n",
        bomb()
    );
    assert_eq!(code(raw.as_bytes()), HEADER_TOO_COMPLEX);
    // mail-parser's Date parser runs past the blank line when the zone is
    // one letter, and reads the body as header fields.
    let raw = format!(
        "{HEAD}Date: 1 Jan 2026 00:00:00 E\r\n\r\n{}\r\n\r\nhello\r\n",
        bomb()
    );
    assert_eq!(code(raw.as_bytes()), HEADER_TOO_COMPLEX);
    // Then the message can end inside its header block: still one part
    // to mail-parser, with all its fields (a case the property test found).
    let raw = format!("{HEAD}Date: 1 Jan 2026 00:00:00 E\r\n\r\nleaf body\r\n");
    let (work, result) = prescan(raw.as_bytes());
    assert!(result.is_ok());
    let message = MessageParser::default().parse(raw.as_bytes()).unwrap();
    assert_eq!(message.parts.len(), 1);
    assert_eq!(work.header_blocks, 1);
    assert_eq!(work.header_fields, message.parts[0].headers.len());
    // What mail-parser does not read as a header is not counted: the bomb
    // in a preamble, or in a text body.
    let raw = format!(
        "{HEAD}Content-Type: multipart/mixed; boundary=\"BB\"\r\n\r\n{}\r\n--BB\r\nContent-Type: text/plain\r\n\r\nhello\r\n--BB--\r\n",
        bomb()
    );
    assert_eq!(code(raw.as_bytes()), "ok");
    let raw = format!("{HEAD}\r\n{}\r\n", bomb());
    assert_eq!(code(raw.as_bytes()), "ok");
}

// ---------------------------------------------------------------------------
// 4. The property test.

/// One parameter, in one of the forms mail-parser reads.
#[derive(Clone, Copy, Debug)]
enum ParamForm {
    Plain,
    Quoted,
    /// `name*N=` or `name*N*=`, a piece of a continued value.
    Piece {
        encoded: bool,
    },
    /// `name*=utf-8'en'…`
    Language,
    /// `name="a"` right after the previous one, with no `;`.
    NoSemicolon,
    /// `name="a\"b\\c\;d"`, backslash escapes in a quoted value.
    Escaped,
}

#[derive(Clone, Debug)]
struct ParamField {
    disposition: bool,
    forms: Vec<ParamForm>,
    /// Fold before every this-many parameters.
    fold_every: usize,
    /// All pieces continue one name (`p*1`, `p*2`, …) or each its own.
    one_name: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Nested {
    Inline,
    Base64,
    QuotedPrintable,
}

#[derive(Clone, Debug)]
enum Node {
    Leaf {
        fields: Vec<ParamField>,
        extra_fields: usize,
    },
    Multi {
        fields: Vec<ParamField>,
        missing_boundary: bool,
        children: Vec<Node>,
    },
    Message(Nested, Box<Node>),
}

impl ParamField {
    fn render(&self, out: &mut String) {
        out.push_str(if self.disposition {
            "Content-Disposition: attachment"
        } else {
            "Content-Type: application/octet-stream"
        });
        for (i, form) in self.forms.iter().enumerate() {
            if self.fold_every > 0 && i % self.fold_every == 0 {
                out.push_str("\r\n ");
            }
            let name = if self.one_name {
                "p".to_string()
            } else {
                format!("p{i}")
            };
            match form {
                ParamForm::Plain => out.push_str(&format!("; {name}=v{i}")),
                ParamForm::Quoted => out.push_str(&format!("; {name}=\"v {i};\"")),
                ParamForm::Piece { encoded: false } => {
                    out.push_str(&format!("; {name}*{}=v{i}", i + 1))
                }
                ParamForm::Piece { encoded: true } => {
                    out.push_str(&format!("; {name}*{}*=utf-8''v%20{i}", i + 1))
                }
                ParamForm::Language => out.push_str(&format!("; {name}*=utf-8'en'v{i}")),
                ParamForm::NoSemicolon => out.push_str(&format!(" {name}=\"v{i}\"")),
                ParamForm::Escaped => out.push_str(&format!("; {name}=\"a\\\"b\\\\c\\;d{i}\"")),
            }
        }
        out.push_str("\r\n");
    }

    /// Parameters as a reader would count them: one per form.
    fn parameters(&self) -> usize {
        self.forms.len()
    }

    /// A field any mail client might write: a few parameters, however
    /// folded and whatever their form.
    fn plausible(&self) -> bool {
        self.forms.len() <= 20
    }
}

impl Node {
    fn render(&self, out: &mut String, salt: &mut u32) {
        match self {
            Node::Leaf {
                fields,
                extra_fields,
            } => {
                for i in 0..*extra_fields {
                    out.push_str(&format!("X-Extra-{i}: value {i}\r\n"));
                }
                for f in fields {
                    f.render(out);
                }
                out.push_str("\r\nleaf body\r\n");
            }
            Node::Multi {
                fields,
                missing_boundary,
                children,
            } => {
                *salt += 1;
                let boundary = format!("b{salt}");
                for f in fields {
                    f.render(out);
                }
                let declared = if *missing_boundary {
                    format!("{boundary}-missing")
                } else {
                    boundary.clone()
                };
                out.push_str(&format!(
                    "Content-Type: multipart/mixed; boundary=\"{declared}\"\r\n\r\npreamble\r\n"
                ));
                for child in children {
                    out.push_str(&format!("--{boundary}\r\n"));
                    child.render(out, salt);
                    out.push_str("\r\n");
                }
                out.push_str(&format!("--{boundary}--\r\n"));
            }
            Node::Message(nested, inner) => {
                let mut message = String::from("From: inner@example.org\r\nSubject: inner\r\n");
                inner.render(&mut message, salt);
                match nested {
                    Nested::Inline => {
                        out.push_str("Content-Type: message/rfc822\r\n\r\n");
                        out.push_str(&message);
                    }
                    Nested::Base64 => {
                        out.push_str("Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n");
                        out.push_str(&base64(message.as_bytes()));
                    }
                    Nested::QuotedPrintable => {
                        out.push_str("Content-Type: message/rfc822\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n");
                        out.push_str(&quoted_printable(&message));
                    }
                }
            }
        }
    }

    fn visit(&self, f: &mut impl FnMut(&Node)) {
        f(self);
        match self {
            Node::Multi { children, .. } => children.iter().for_each(|c| c.visit(f)),
            Node::Message(_, inner) => inner.visit(f),
            Node::Leaf { .. } => {}
        }
    }

    /// The widest field mail-parser reads as a header: not those inside
    /// a multipart whose boundary is missing (text to it), nor those of a
    /// message encoded deeper than it decodes.
    fn widest_read(&self, encoded_depth: usize) -> usize {
        let own = self
            .fields()
            .iter()
            .map(ParamField::parameters)
            .max()
            .unwrap_or(0);
        match self {
            Node::Leaf { .. } => own,
            Node::Multi {
                missing_boundary: true,
                ..
            } => own,
            Node::Multi { children, .. } => children
                .iter()
                .map(|c| c.widest_read(encoded_depth))
                .fold(own, usize::max),
            Node::Message(Nested::Inline, inner) => inner.widest_read(encoded_depth),
            Node::Message(_, _) if encoded_depth == 3 => 0,
            Node::Message(_, inner) => inner.widest_read(encoded_depth + 1),
        }
    }

    fn fields(&self) -> &[ParamField] {
        match self {
            Node::Leaf { fields, .. } | Node::Multi { fields, .. } => fields,
            Node::Message(..) => &[],
        }
    }
}

fn param_form() -> impl Strategy<Value = ParamForm> {
    prop_oneof![
        3 => Just(ParamForm::Plain),
        2 => Just(ParamForm::Quoted),
        3 => any::<bool>().prop_map(|encoded| ParamForm::Piece { encoded }),
        1 => Just(ParamForm::Language),
        1 => Just(ParamForm::NoSemicolon),
        1 => Just(ParamForm::Escaped),
    ]
}

fn param_field() -> impl Strategy<Value = ParamField> {
    (
        any::<bool>(),
        // Mostly a few, sometimes around the cap, sometimes far past it.
        prop_oneof![
            6 => prop::collection::vec(param_form(), 0..8),
            2 => prop::collection::vec(param_form(), 20..140),
            1 => prop::collection::vec(param_form(), 300..1200),
        ],
        prop_oneof![Just(0usize), 1usize..4, 10usize..60],
        any::<bool>(),
    )
        .prop_map(|(disposition, forms, fold_every, one_name)| ParamField {
            disposition,
            forms,
            fold_every,
            one_name,
        })
}

fn node() -> impl Strategy<Value = Node> {
    let leaf = (prop::collection::vec(param_field(), 0..3), 0usize..30).prop_map(
        |(fields, extra_fields)| Node::Leaf {
            fields,
            extra_fields,
        },
    );
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            4 => (
                prop::collection::vec(param_field(), 0..2),
                prop::bool::weighted(0.1),
                prop::collection::vec(inner.clone(), 1..4),
            )
                .prop_map(|(fields, missing_boundary, children)| Node::Multi {
                    fields,
                    missing_boundary,
                    children,
                }),
            1 => (
                prop_oneof![
                    Just(Nested::Inline),
                    Just(Nested::Base64),
                    Just(Nested::QuotedPrintable)
                ],
                inner,
            )
                .prop_map(|(nested, inner)| Node::Message(nested, Box::new(inner))),
        ]
    })
}

/// Every part mail-parser made, nested messages' parts included.
fn all_parts<'a>(message: &'a Message<'a>, out: &mut Vec<&'a mail_parser::MessagePart<'a>>) {
    for part in &message.parts {
        out.push(part);
        if let PartType::Message(inner) = &part.body {
            all_parts(inner, out);
        }
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: ProptestConfig::default().cases,
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_pre_scan_is_linear_and_bounds_what_mail_parser_is_handed(tree in node(), date_quirk in prop::bool::weighted(0.1)) {
        let mut raw = String::from(HEAD);
        if date_quirk {
            raw.push_str("Date: 1 Jan 2026 00:00:00 E\r\n");
        }
        let mut salt = 0;
        tree.render(&mut raw, &mut salt);
        let raw = raw.into_bytes();

        let (work, result) = prescan(&raw);
        // Linear, with the documented constant.
        prop_assert!(work.bytes <= work_bound(raw.len()), "{} > bound for {}", work.bytes, raw.len());
        // And in practice: two looks per byte, one more pass per missing
        // boundary; decoded nested messages add their own length.
        let mut encoded = false;
        tree.visit(&mut |n| encoded |= matches!(n, Node::Message(Nested::Base64 | Nested::QuotedPrintable, _)));
        if !encoded {
            prop_assert!(
                work.bytes <= (2 + work.missing_boundaries) * raw.len(),
                "{} bytes examined for {}", work.bytes, raw.len()
            );
        }
        // check refuses exactly what the pre-scan refuses (with these
        // limits nothing else is over).
        let checked = check(&raw, SENDER, &GENEROUS);
        if let Err(e) = &result {
            prop_assert_eq!(e.code, HEADER_TOO_COMPLEX);
            prop_assert_eq!(checked.unwrap_err().code, HEADER_TOO_COMPLEX);
        } else if let Err(e) = &checked {
            prop_assert_ne!(e.code, HEADER_TOO_COMPLEX);
        }

        // A field past the cap never gets through (the Date quirk can
        // swallow the first fields into the Date, so not with it).
        let widest = tree.widest_read(0);
        if widest > MAX_PARAMETERS && !date_quirk {
            prop_assert!(result.is_err(), "a field with {} parameters passed", widest);
        }
        // And a plausible message is never refused.
        let mut plausible = true;
        let mut forms = 0;
        let mut nodes = 0;
        tree.visit(&mut |n| {
            nodes += 1;
            for f in n.fields() {
                plausible &= f.plausible();
                forms += f.parameters();
            }
        });
        if plausible && forms <= 1_000 && nodes < 100 {
            prop_assert!(result.is_ok(), "a plausible message was refused: {:?}", result);
        }

        if result.is_ok() {
            // What mail-parser is handed is what the walk counted.
            let message = MessageParser::default().parse(&raw).expect("parses");
            let mut parts = Vec::new();
            all_parts(&message, &mut parts);
            prop_assert_eq!(parts.len(), work.header_blocks);
            prop_assert_eq!(parts.iter().map(|p| p.headers.len()).sum::<usize>(), work.header_fields);
            prop_assert!(parts.len() <= MAX_PARTS);
            let mut total = 0;
            for part in &parts {
                prop_assert!(part.headers.len() <= MAX_HEADER_FIELDS);
                for ct in [part.content_type(), part.content_disposition()].into_iter().flatten() {
                    let n = ct.attributes().map_or(0, |a| a.len());
                    // Each parameter mail-parser keeps ends at a counted
                    // place; a language tag adds one more.
                    prop_assert!(n <= 2 * work.max_parameters.max(1), "{} attributes, {} counted", n, work.max_parameters);
                    total += n;
                }
            }
            prop_assert!(total <= 2 * work.parameters.max(1));
            prop_assert!(work.max_parameters <= MAX_PARAMETERS);
            prop_assert!(work.parameters <= MAX_PARAMETERS_TOTAL);
        }
    }
}
