//! Property tests of `check` on random MIME trees.
//!
//! A tree of multipart/mixed, alternative and related nodes (at most three
//! levels deep, at most four children each) with text and binary leaves is
//! generated, rendered to a CRLF message, and the attachments the policy
//! should see are worked out from the tree itself, never from mail-parser:
//! a part is an attachment when its Content-Disposition is `attachment` or
//! it has a filename, unless it has a Content-ID and its parent is
//! multipart/related (an image the HTML shows). Then:
//!
//! 1. `check` never panics, on the message or on a few byte-level
//!    mutations of it;
//! 2. with generous limits it accepts the message and reports the same
//!    attachments: count, decoded sizes, filenames and content types;
//! 3. with `max_attachments` one below the count it refuses with
//!    `FailedOperation.TooManyAttachments` (and accepts at the count).
//!
//! 256 cases per property; set `PROPTEST_CASES` to run more.

use posthorn_policy::{check, PolicyLimits};
use proptest::prelude::*;
use proptest::sample::Index;

const SENDER: &str = "app@example.com";
const TOO_MANY_ATTACHMENTS: &str = "FailedOperation.TooManyAttachments";

const GENEROUS: PolicyLimits = PolicyLimits {
    max_attachments: usize::MAX,
    max_attachment_size: usize::MAX,
    max_attachments_total: usize::MAX,
    max_body_size: usize::MAX,
    max_message_size: usize::MAX,
};

// ---------------------------------------------------------------------------
// The tree.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MultiKind {
    Mixed,
    Alternative,
    Related,
}

#[derive(Clone, Copy, Debug)]
enum TextEncoding {
    SevenBit,
    QuotedPrintable,
    Base64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Disposition {
    None,
    Inline,
    Attachment,
}

#[derive(Clone, Copy, Debug)]
enum Wrap {
    /// 76 columns, the RFC 2045 maximum.
    Cols76,
    Cols64,
    /// Lines of 996 characters: one line for anything up to 747 bytes.
    Long,
}

#[derive(Clone, Debug)]
enum FilenameForm {
    /// `filename="report.pdf"`
    Ascii,
    /// `filename="=?UTF-8?B?...?="`
    Rfc2047,
    /// `filename*=UTF-8''...`
    Rfc2231,
    /// `filename*=utf-8'en'...`, with a language tag.
    Rfc2231Language,
}

#[derive(Clone, Debug)]
struct Filename {
    name: String,
    form: FilenameForm,
    /// In Content-Disposition (`filename`) rather than Content-Type (`name`);
    /// only honoured when the part has a Content-Disposition.
    in_disposition: bool,
}

#[derive(Clone, Debug)]
struct TextLeaf {
    html: bool,
    charset: &'static str,
    encoding: TextEncoding,
    /// Never `Attachment`: text parts are never attachments here.
    disposition: Disposition,
    content_id: bool,
    content: String,
}

#[derive(Clone, Debug)]
struct BinaryLeaf {
    png: bool,
    wrap: Wrap,
    disposition: Disposition,
    filename: Option<Filename>,
    content_id: bool,
    content: Vec<u8>,
}

#[derive(Clone, Debug)]
enum Node {
    Multi(MultiKind, Vec<Node>),
    Text(TextLeaf),
    Binary(BinaryLeaf),
}

/// How rendering varies without changing the meaning.
#[derive(Clone, Copy, Debug)]
struct Style {
    /// Upper-case the media types and disposition values.
    shout: bool,
    /// Put parameters on folded continuation lines.
    fold: bool,
    /// A preamble and an epilogue around each multipart body.
    preamble: bool,
    /// A token that keeps boundaries unique across runs.
    salt: u32,
}

// ---------------------------------------------------------------------------
// Strategies.

const CHARSETS: &[&str] = &[
    "utf-8",
    "UTF-8",
    "utf8",
    "us-ascii",
    "iso-8859-1",
    "ISO-8859-15",
    "windows-1252",
    "latin1",
    "koi8-r",
];

fn text_leaf() -> impl Strategy<Value = TextLeaf> {
    (
        any::<bool>(),
        prop::sample::select(CHARSETS),
        prop_oneof![
            Just(TextEncoding::SevenBit),
            Just(TextEncoding::QuotedPrintable),
            Just(TextEncoding::Base64),
        ],
        prop_oneof![Just(Disposition::None), Just(Disposition::Inline)],
        any::<bool>(),
        // A letter first, so every text body is non-blank in any of the
        // ASCII-compatible charsets above.
        "[A-Za-z][ -~\n\t\u{a0}-\u{17f}\u{391}-\u{3c9}\u{4e00}-\u{4e40}]{0,400}",
    )
        .prop_map(
            |(html, charset, encoding, disposition, content_id, content)| {
                let content = match encoding {
                    // 7bit: printable ASCII without '=', so no boundary can occur.
                    TextEncoding::SevenBit => content
                        .chars()
                        .map(|c| match c {
                            '\n' | ' ' => c,
                            '=' => '-',
                            c if c.is_ascii_graphic() => c,
                            _ => '.',
                        })
                        .collect(),
                    _ => content,
                };
                TextLeaf {
                    html,
                    charset,
                    encoding,
                    disposition,
                    content_id,
                    content,
                }
            },
        )
}

fn filename() -> impl Strategy<Value = Filename> {
    prop_oneof![
        (
            "[A-Za-z0-9_-][A-Za-z0-9_.-]{0,15}\\.(bin|png|pdf|txt)",
            Just(FilenameForm::Ascii)
        ),
        (
            "[A-Za-z\u{e9}\u{fc}\u{df}\u{f8}\u{6587}\u{4ef6}\u{65e5}\u{672c}][A-Za-z0-9 _\u{e9}\u{fc}\u{df}\u{f8}\u{6587}\u{4ef6}\u{65e5}\u{672c}-]{0,9}\\.(pdf|png)",
            prop_oneof![
                2 => Just(FilenameForm::Rfc2047),
                2 => Just(FilenameForm::Rfc2231),
                1 => Just(FilenameForm::Rfc2231Language),
            ]
        ),
    ]
    .prop_flat_map(|(name, form)| {
        (Just(name), Just(form), any::<bool>()).prop_map(|(name, form, in_disposition)| Filename {
            name,
            form,
            in_disposition,
        })
    })
}

fn binary_leaf() -> impl Strategy<Value = BinaryLeaf> {
    (
        any::<bool>(),
        prop_oneof![
            6 => Just(Wrap::Cols76),
            2 => Just(Wrap::Cols64),
            2 => Just(Wrap::Long),
        ],
        prop_oneof![
            Just(Disposition::None),
            Just(Disposition::Inline),
            Just(Disposition::Attachment),
        ],
        prop::option::of(filename()),
        any::<bool>(),
        prop_oneof![
            1 => Just(Vec::new()),
            2 => prop::collection::vec(any::<u8>(), 1..8),
            7 => prop::collection::vec(any::<u8>(), 0..3000),
        ],
    )
        .prop_map(
            |(png, wrap, disposition, filename, content_id, content)| BinaryLeaf {
                png,
                wrap,
                disposition,
                filename,
                content_id,
                content,
            },
        )
}

fn multi_kind() -> impl Strategy<Value = MultiKind> {
    prop_oneof![
        Just(MultiKind::Mixed),
        Just(MultiKind::Alternative),
        Just(MultiKind::Related),
    ]
}

fn tree() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        text_leaf().prop_map(Node::Text),
        binary_leaf().prop_map(Node::Binary),
    ];
    leaf.prop_recursive(3, 48, 4, |inner| {
        (multi_kind(), prop::collection::vec(inner, 1..=4))
            .prop_map(|(kind, children)| Node::Multi(kind, children))
    })
    .prop_flat_map(|node| (Just(node), text_leaf()))
    .prop_map(|(node, text)| ensure_text(node, text))
}

/// Make sure the message has a non-blank text body (and a root the policy
/// allows): a binary root becomes a text one; a tree without text gets
/// `text` as the root's first child.
fn ensure_text(node: Node, text: TextLeaf) -> Node {
    fn has_text(node: &Node) -> bool {
        match node {
            Node::Text(_) => true,
            Node::Binary(_) => false,
            Node::Multi(_, children) => children.iter().any(has_text),
        }
    }
    match node {
        Node::Binary(_) => Node::Text(text),
        Node::Multi(kind, mut children) if !children.iter().any(has_text) => {
            if children.len() < 4 {
                children.insert(0, Node::Text(text));
            } else {
                children[0] = Node::Text(text);
            }
            Node::Multi(kind, children)
        }
        node => node,
    }
}

fn style() -> impl Strategy<Value = Style> {
    (any::<bool>(), any::<bool>(), any::<bool>(), any::<u32>()).prop_map(
        |(shout, fold, preamble, salt)| Style {
            shout,
            fold,
            preamble,
            salt,
        },
    )
}

// ---------------------------------------------------------------------------
// The expected attachments, from the tree alone.

#[derive(Clone, Debug, PartialEq, Eq)]
struct Expected {
    filename: Option<String>,
    content_type: &'static str,
    size: usize,
}

fn expected(root: &Node) -> Vec<Expected> {
    fn walk(node: &Node, parent: Option<MultiKind>, out: &mut Vec<Expected>) {
        match node {
            Node::Multi(kind, children) => {
                for child in children {
                    walk(child, Some(*kind), out);
                }
            }
            // Text parts never have a filename or an attachment disposition.
            Node::Text(_) => {}
            Node::Binary(b) => {
                // The root is never an attachment (and never binary anyway).
                let Some(parent) = parent else { return };
                let shown_inline = b.content_id && parent == MultiKind::Related;
                let is_attachment = b.disposition == Disposition::Attachment
                    || (b.filename.is_some() && !shown_inline);
                if is_attachment {
                    out.push(Expected {
                        filename: b.filename.as_ref().map(|f| f.name.clone()),
                        content_type: if b.png {
                            "image/png"
                        } else {
                            "application/octet-stream"
                        },
                        size: b.content.len(),
                    });
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(root, None, &mut out);
    out
}

// ---------------------------------------------------------------------------
// Rendering.

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Base64 in lines of `width` characters, joined by CRLF (no final CRLF).
fn base64_wrapped(data: &[u8], width: usize) -> String {
    let flat = base64(data);
    flat.as_bytes()
        .chunks(width)
        .map(|line| std::str::from_utf8(line).unwrap())
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// Quoted-printable with hard line breaks for `\n` and soft breaks keeping
/// lines within 76 columns. `=` only ever starts `=XX` or a soft break.
fn quoted_printable(data: &[u8]) -> String {
    let mut out = String::new();
    let mut col = 0;
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' {
            out.push_str("\r\n");
            col = 0;
            continue;
        }
        let at_eol = data.get(i + 1).is_none_or(|&n| n == b'\n');
        let token = if (b.is_ascii_graphic() && b != b'=') || (matches!(b, b' ' | b'\t') && !at_eol)
        {
            (b as char).to_string()
        } else {
            format!("={b:02X}")
        };
        if col + token.len() > 75 {
            out.push_str("=\r\n");
            col = 0;
        }
        col += token.len();
        out.push_str(&token);
    }
    out
}

/// `%XX` for everything outside RFC 2231's attribute characters.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

struct Renderer {
    style: Style,
    boundaries: usize,
    content_ids: usize,
    out: String,
}

impl Renderer {
    fn cased(&self, s: &str) -> String {
        if self.style.shout {
            s.to_ascii_uppercase()
        } else {
            s.to_string()
        }
    }

    /// A boundary that cannot occur in any body: every body is base64,
    /// quoted-printable or 7bit text without `=`, and none of those can
    /// contain `=_`. Fixed width, so no boundary is a prefix of another.
    fn boundary(&mut self) -> String {
        self.boundaries += 1;
        format!("=_Posthorn_{:04}_{:08x}", self.boundaries, self.style.salt)
    }

    /// `name: value` followed by `; param` for each parameter, folded or not.
    fn header(&mut self, name: &str, value: &str, params: &[String]) {
        self.out.push_str(name);
        self.out.push_str(": ");
        self.out.push_str(value);
        for p in params {
            self.out
                .push_str(if self.style.fold { ";\r\n\t" } else { "; " });
            self.out.push_str(p);
        }
        self.out.push_str("\r\n");
    }

    fn filename_param(f: &Filename, attr: &str) -> String {
        match f.form {
            FilenameForm::Ascii => format!("{attr}=\"{}\"", f.name),
            FilenameForm::Rfc2047 => {
                format!("{attr}=\"=?UTF-8?B?{}?=\"", base64(f.name.as_bytes()))
            }
            FilenameForm::Rfc2231 => format!("{attr}*=UTF-8''{}", percent_encode(&f.name)),
            FilenameForm::Rfc2231Language => {
                format!("{attr}*=utf-8'en'{}", percent_encode(&f.name))
            }
        }
    }

    fn disposition(&mut self, d: Disposition, params: &[String]) {
        let value = match d {
            Disposition::None => return,
            Disposition::Inline => self.cased("inline"),
            Disposition::Attachment => self.cased("attachment"),
        };
        self.header("Content-Disposition", &value, params);
    }

    fn content_id(&mut self) {
        self.content_ids += 1;
        let n = self.content_ids;
        self.out.push_str(&format!(
            "Content-ID: <part{n}.{:08x}@example.com>\r\n",
            self.style.salt
        ));
    }

    /// Headers and body of `node`, without a final CRLF.
    fn node(&mut self, node: &Node) {
        match node {
            Node::Multi(kind, children) => {
                let boundary = self.boundary();
                let subtype = match kind {
                    MultiKind::Mixed => "mixed",
                    MultiKind::Alternative => "alternative",
                    MultiKind::Related => "related",
                };
                let value = self.cased(&format!("multipart/{subtype}"));
                self.header(
                    "Content-Type",
                    &value,
                    &[format!("boundary=\"{boundary}\"")],
                );
                self.out.push_str("\r\n");
                if self.style.preamble {
                    self.out
                        .push_str("This is a multi-part message in MIME format.\r\n");
                }
                for child in children {
                    self.out.push_str("--");
                    self.out.push_str(&boundary);
                    self.out.push_str("\r\n");
                    self.node(child);
                    self.out.push_str("\r\n");
                }
                self.out.push_str("--");
                self.out.push_str(&boundary);
                self.out.push_str("--");
                if self.style.preamble {
                    self.out.push_str("\r\nThat was all.");
                }
            }
            Node::Text(t) => {
                let value = self.cased(if t.html { "text/html" } else { "text/plain" });
                self.header("Content-Type", &value, &[format!("charset={}", t.charset)]);
                let (cte, body) = match t.encoding {
                    TextEncoding::SevenBit => ("7bit", t.content.replace('\n', "\r\n")),
                    TextEncoding::QuotedPrintable => {
                        ("quoted-printable", quoted_printable(t.content.as_bytes()))
                    }
                    TextEncoding::Base64 => ("base64", base64_wrapped(t.content.as_bytes(), 76)),
                };
                self.out
                    .push_str(&format!("Content-Transfer-Encoding: {cte}\r\n"));
                self.disposition(t.disposition, &[]);
                if t.content_id {
                    self.content_id();
                }
                self.out.push_str("\r\n");
                self.out.push_str(&body);
            }
            Node::Binary(b) => {
                let value = self.cased(if b.png {
                    "image/png"
                } else {
                    "application/octet-stream"
                });
                let in_disposition = b.disposition != Disposition::None
                    && b.filename.as_ref().is_some_and(|f| f.in_disposition);
                let name: Vec<String> = match &b.filename {
                    Some(f) if !in_disposition => vec![Self::filename_param(f, "name")],
                    _ => vec![],
                };
                self.header("Content-Type", &value, &name);
                self.out.push_str("Content-Transfer-Encoding: base64\r\n");
                let filename: Vec<String> = match &b.filename {
                    Some(f) if in_disposition => vec![Self::filename_param(f, "filename")],
                    _ => vec![],
                };
                self.disposition(b.disposition, &filename);
                if b.content_id {
                    self.content_id();
                }
                self.out.push_str("\r\n");
                let width = match b.wrap {
                    Wrap::Cols76 => 76,
                    Wrap::Cols64 => 64,
                    Wrap::Long => 996,
                };
                self.out.push_str(&base64_wrapped(&b.content, width));
            }
        }
    }
}

fn render(root: &Node, style: Style) -> Vec<u8> {
    let mut r = Renderer {
        style,
        boundaries: 0,
        content_ids: 0,
        out: String::new(),
    };
    r.out.push_str(
        "From: app@example.com\r\nTo: Someone <someone@example.net>\r\nSubject: A random tree\r\nMIME-Version: 1.0\r\n",
    );
    r.node(root);
    r.out.push_str("\r\n");
    r.out.into_bytes()
}

// ---------------------------------------------------------------------------
// Mutations.

#[derive(Clone, Debug)]
enum Mutation {
    Flip(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), 1..=255u8).prop_map(|(i, mask)| Mutation::Flip(i, mask)),
        3 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        3 => any::<Index>().prop_map(Mutation::Delete),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(raw: &mut Vec<u8>, m: &Mutation) {
    if raw.is_empty() {
        if let Mutation::Insert(_, b) = m {
            raw.push(*b);
        }
        return;
    }
    match m {
        Mutation::Flip(i, mask) => {
            let i = i.index(raw.len());
            raw[i] ^= mask;
        }
        Mutation::Insert(i, b) => {
            let i = i.index(raw.len() + 1);
            raw.insert(i, *b);
        }
        Mutation::Delete(i) => {
            let i = i.index(raw.len());
            raw.remove(i);
        }
        Mutation::Truncate(i) => {
            let i = i.index(raw.len());
            raw.truncate(i);
        }
    }
}

// ---------------------------------------------------------------------------
// Properties.

fn config() -> ProptestConfig {
    ProptestConfig {
        // 256 unless PROPTEST_CASES says otherwise.
        cases: ProptestConfig::default().cases,
        // Failures are reported, not written next to the sources.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn attachments_match_the_tree(root in tree(), style in style()) {
        let raw = render(&root, style);
        let want = expected(&root);

        let facts = check(&raw, SENDER, &GENEROUS);
        let facts = match facts {
            Ok(facts) => facts,
            Err(e) => {
                return Err(TestCaseError::fail(format!(
                    "refused with {}: {}\n{}",
                    e.code,
                    e.message,
                    String::from_utf8_lossy(&raw)
                )));
            }
        };
        let got: Vec<Expected> = facts
            .attachments
            .iter()
            .map(|a| Expected {
                filename: a.filename.clone(),
                content_type: match a.content_type.as_str() {
                    "image/png" => "image/png",
                    "application/octet-stream" => "application/octet-stream",
                    _ => "(other)",
                },
                size: a.size,
            })
            .collect();
        prop_assert_eq!(got.len(), want.len(), "attachment count\n{}", String::from_utf8_lossy(&raw));
        prop_assert_eq!(
            got.iter().map(|a| a.size).sum::<usize>(),
            want.iter().map(|a| a.size).sum::<usize>(),
            "total decoded size"
        );
        prop_assert_eq!(&got, &want, "attachments in order\n{}", String::from_utf8_lossy(&raw));

        // One over the limit is refused; at the limit is accepted.
        if !want.is_empty() {
            let at = PolicyLimits { max_attachments: want.len(), ..GENEROUS };
            prop_assert!(check(&raw, SENDER, &at).is_ok());
            let under = PolicyLimits { max_attachments: want.len() - 1, ..GENEROUS };
            match check(&raw, SENDER, &under) {
                Ok(_) => prop_assert!(false, "{} attachments accepted with a limit of {}", want.len(), want.len() - 1),
                Err(e) => prop_assert_eq!(e.code, TOO_MANY_ATTACHMENTS),
            }
        }
    }

    #[test]
    fn never_panics_on_mutated_messages(
        root in tree(),
        style in style(),
        mutations in prop::collection::vec(mutation(), 0..6),
    ) {
        let mut raw = render(&root, style);
        for m in &mutations {
            mutate(&mut raw, m);
        }
        let _ = check(&raw, SENDER, &GENEROUS);
        let _ = check(&raw, SENDER, &PolicyLimits::default());
    }
}

// ---------------------------------------------------------------------------
// The helpers themselves.

#[test]
fn the_encoders_are_right() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    assert_eq!(base64_wrapped(&[0; 6], 4), "AAAA\r\nAAAA");
    assert_eq!(quoted_printable(b"a=b \nc "), "a=3Db=20\r\nc=20");
    assert_eq!(percent_encode("a b\u{e9}.pdf"), "a%20b%C3%A9.pdf");
    let long = quoted_printable(&[b'x'; 200]);
    assert!(long.split("\r\n").all(|l| l.len() <= 76));
}

#[test]
fn a_hand_built_tree_is_counted_by_the_rule() {
    let bin = |disposition, filename: Option<&str>, content_id| {
        Node::Binary(BinaryLeaf {
            png: true,
            wrap: Wrap::Cols76,
            disposition,
            filename: filename.map(|n| Filename {
                name: n.into(),
                form: FilenameForm::Rfc2231,
                in_disposition: true,
            }),
            content_id,
            content: vec![7; 100],
        })
    };
    let text = Node::Text(TextLeaf {
        html: true,
        charset: "utf-8",
        encoding: TextEncoding::QuotedPrintable,
        disposition: Disposition::None,
        content_id: false,
        content: "<p>h\u{e9}llo</p>".into(),
    });
    let root = Node::Multi(
        MultiKind::Mixed,
        vec![
            Node::Multi(
                MultiKind::Related,
                vec![
                    text,
                    // Shown by the HTML: not an attachment.
                    bin(Disposition::Inline, Some("logo.png"), true),
                    // No Content-ID: an attachment.
                    bin(Disposition::None, Some("a.png"), false),
                    // Attachment disposition wins.
                    bin(Disposition::Attachment, None, true),
                ],
            ),
            // Content-ID outside related: an attachment.
            bin(Disposition::Inline, Some("b \u{e9}.png"), true),
            // Neither: not an attachment.
            bin(Disposition::Inline, None, false),
        ],
    );
    let want = expected(&root);
    assert_eq!(
        want.iter()
            .map(|a| a.filename.as_deref())
            .collect::<Vec<_>>(),
        [Some("a.png"), None, Some("b \u{e9}.png")]
    );
    let style = Style {
        shout: false,
        fold: true,
        preamble: true,
        salt: 1,
    };
    let raw = render(&root, style);
    let facts = check(&raw, SENDER, &GENEROUS).unwrap();
    assert_eq!(facts.attachments.len(), 3);
    assert_eq!(
        facts
            .attachments
            .iter()
            .map(|a| a.filename.as_deref())
            .collect::<Vec<_>>(),
        [Some("a.png"), None, Some("b \u{e9}.png")]
    );
    assert!(facts.attachments.iter().all(|a| a.size == 100));
}
