//! Rendering of stored templates (`/v1/templates`, `posthorn template`):
//! the one place that says what a placeholder is and how a value is
//! written into a subject, a text part or an HTML part. Pure: no I/O, no
//! clock, no allocation beyond the output.
//!
//! # Syntax
//!
//! - A placeholder is `{{`, optional blanks (spaces or tabs), a name,
//!   optional blanks, `}}`: `{{name}}`, `{{ name }}`.
//! - A name is 1 to [`MAX_NAME`] bytes of ASCII letters, digits, `_`, `-`
//!   and `.`, beginning with a letter or `_` (`first_name`, `order.id`).
//!   Names are case-sensitive.
//! - `\{{` writes a literal `{{` (the backslash is dropped); a backslash
//!   anywhere else is an ordinary character, and so is a `}}` outside a
//!   placeholder.
//! - Any other `{{` (no closing `}}` on the same placeholder, a bad name,
//!   a line break inside) is a [`SyntaxError`]: templates are checked when
//!   they are stored, so a stored template always renders once its
//!   variables are given.
//!
//! # Values
//!
//! - In the subject and text parts a value is written as given
//!   ([`Escape::None`]); in HTML parts ([`Escape::Html`]) `&`, `<`, `>`,
//!   `"` and `'` become `&amp;`, `&lt;`, `&gt;`, `&quot;`, `&#39;`, so a
//!   value is always text, never markup.
//! - Values are not trimmed; white space inside `{{ }}` is not part of the
//!   name.
//! - A value is inserted once: placeholders inside a value are not
//!   expanded again.
//! - Every placeholder's variable must be given, or rendering fails with
//!   [`RenderError::Missing`] naming all missing ones; variables given but
//!   not used are ignored.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The longest variable name, in bytes.
pub const MAX_NAME: usize = 64;

/// How values are written into a part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escape {
    /// As given: the subject and text parts.
    None,
    /// HTML-escaped: HTML parts.
    Html,
}

/// A template that does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    /// Byte offset of the `{{` at fault.
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.message)
    }
}

impl std::error::Error for SyntaxError {}

/// Why rendering failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RenderError {
    Syntax(SyntaxError),
    /// Variables used by the template and not given, sorted, each once.
    Missing(Vec<String>),
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenderError::Syntax(e) => write!(f, "template syntax error {e}"),
            RenderError::Missing(names) => {
                write!(f, "no value for {}", names.join(", "))
            }
        }
    }
}

impl std::error::Error for RenderError {}

/// One piece of a parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Literal text.
    Text(&'a str),
    /// A placeholder: the variable's name.
    Var(&'a str),
}

/// Whether `name` is a valid variable name (see the module documentation).
pub fn is_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
}

/// Parse a template into its pieces.
pub fn parse(src: &str) -> Result<Vec<Piece<'_>>, SyntaxError> {
    let mut pieces = Vec::new();
    let mut literal_from = 0;
    let mut i = 0;
    let b = src.as_bytes();
    while i + 1 < b.len() {
        if b[i] == b'\\' && b[i + 1] == b'{' && b.get(i + 2) == Some(&b'{') {
            if literal_from < i {
                pieces.push(Piece::Text(&src[literal_from..i]));
            }
            pieces.push(Piece::Text("{{"));
            i += 3;
            literal_from = i;
            continue;
        }
        if b[i] == b'{' && b[i + 1] == b'{' {
            let open = i;
            let inner_from = i + 2;
            let Some(len) = src[inner_from..].find("}}") else {
                return Err(SyntaxError {
                    offset: open,
                    message: "`{{` is not closed by `}}` (write `\\{{` for a literal `{{`)".into(),
                });
            };
            let inner = &src[inner_from..inner_from + len];
            let name = inner.trim_matches(|c| c == ' ' || c == '\t');
            if !is_name(name) {
                return Err(SyntaxError {
                    offset: open,
                    message: format!(
                        "{{{{{}}}}} is not a placeholder: a name is 1 to {MAX_NAME} letters, digits, `_`, `-` or `.`, beginning with a letter or `_` (write `\\{{{{` for a literal `{{{{`)",
                        shorten(inner)
                    ),
                });
            }
            if literal_from < open {
                pieces.push(Piece::Text(&src[literal_from..open]));
            }
            pieces.push(Piece::Var(name));
            i = inner_from + len + 2;
            literal_from = i;
            continue;
        }
        i += 1;
    }
    if literal_from < src.len() {
        pieces.push(Piece::Text(&src[literal_from..]));
    }
    Ok(pieces)
}

/// At most 40 characters of `s`, for an error message.
fn shorten(s: &str) -> Cow<'_, str> {
    match s.char_indices().nth(40) {
        Some((at, _)) => Cow::Owned(format!("{}...", &s[..at])),
        None => Cow::Borrowed(s),
    }
}

/// Check a template's syntax (at create and update).
pub fn validate(src: &str) -> Result<(), SyntaxError> {
    parse(src).map(|_| ())
}

/// The variables a template uses, sorted, each once.
pub fn variables(src: &str) -> Result<BTreeSet<&str>, SyntaxError> {
    Ok(parse(src)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Var(name) => Some(name),
            Piece::Text(_) => None,
        })
        .collect())
}

/// Render `src` with `data`, values written as `escape` says.
pub fn render(
    src: &str,
    data: &BTreeMap<String, String>,
    escape: Escape,
) -> Result<String, RenderError> {
    let pieces = parse(src).map_err(RenderError::Syntax)?;
    let missing: BTreeSet<&str> = pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Var(name) if !data.contains_key(*name) => Some(*name),
            _ => None,
        })
        .collect();
    if !missing.is_empty() {
        return Err(RenderError::Missing(
            missing.into_iter().map(str::to_string).collect(),
        ));
    }
    let mut out = String::with_capacity(src.len());
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Var(name) => {
                let value = &data[name];
                match escape {
                    Escape::None => out.push_str(value),
                    Escape::Html => escape_html_into(value, &mut out),
                }
            }
        }
    }
    Ok(out)
}

/// Render several parts with one set of data: every missing variable of
/// every part is reported at once.
pub fn render_all(
    parts: &[(&str, Escape)],
    data: &BTreeMap<String, String>,
) -> Result<Vec<String>, RenderError> {
    let mut missing = BTreeSet::new();
    for (src, _) in parts {
        for name in variables(src).map_err(RenderError::Syntax)? {
            if !data.contains_key(name) {
                missing.insert(name.to_string());
            }
        }
    }
    if !missing.is_empty() {
        return Err(RenderError::Missing(missing.into_iter().collect()));
    }
    parts
        .iter()
        .map(|(src, escape)| render(src, data, *escape))
        .collect()
}

/// Replace literal tags (X-SMTPAPI's `%name%`, any non-empty string) by
/// their values in one pass from left to right: where several tags start
/// at one place the longest wins, and a value is never searched again.
/// Returns `None` when no tag occurs (nothing to copy).
pub fn replace_tags(text: &[u8], tags: &[(&[u8], &[u8])]) -> Option<Vec<u8>> {
    let firsts: Vec<u8> = tags
        .iter()
        .filter_map(|(t, _)| t.first().copied())
        .collect();
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < text.len() {
        if firsts.contains(&text[i]) {
            let hit = tags
                .iter()
                .filter(|(t, _)| !t.is_empty() && text[i..].starts_with(t))
                .max_by_key(|(t, _)| t.len());
            if let Some((tag, value)) = hit {
                let o = out.get_or_insert_with(|| Vec::with_capacity(text.len() + 64));
                o.extend_from_slice(&text[copied..i]);
                o.extend_from_slice(value);
                i += tag.len();
                copied = i;
                continue;
            }
        }
        i += 1;
    }
    let mut o = out?;
    o.extend_from_slice(&text[copied..]);
    Some(o)
}

/// HTML-escape `s` onto `out`: `&`, `<`, `>`, `"`, `'`.
pub fn escape_html_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn placeholders_are_replaced_with_blanks_allowed() {
        let d = data(&[("name", "Ann"), ("order.id", "42")]);
        assert_eq!(
            render(
                "Hi {{name}}, order {{ order.id }}\t{{\tname\t}}!",
                &d,
                Escape::None
            )
            .unwrap(),
            "Hi Ann, order 42\tAnn!"
        );
    }

    #[test]
    fn html_parts_escape_values_but_not_the_template() {
        let d = data(&[("name", "<b>\"Tom\" & 'Jerry'</b>")]);
        assert_eq!(
            render("<p>{{name}}</p>", &d, Escape::Html).unwrap(),
            "<p>&lt;b&gt;&quot;Tom&quot; &amp; &#39;Jerry&#39;&lt;/b&gt;</p>"
        );
        assert_eq!(
            render("{{name}}", &d, Escape::None).unwrap(),
            "<b>\"Tom\" & 'Jerry'</b>"
        );
    }

    #[test]
    fn missing_variables_are_all_named_and_unused_ones_ignored() {
        let d = data(&[("a", "1"), ("unused", "x")]);
        assert_eq!(
            render("{{a}} {{c}} {{b}} {{c}}", &d, Escape::None),
            Err(RenderError::Missing(vec!["b".into(), "c".into()]))
        );
        assert_eq!(
            render_all(&[("{{a}}{{s}}", Escape::None), ("{{h}}", Escape::Html)], &d),
            Err(RenderError::Missing(vec!["h".into(), "s".into()]))
        );
        assert_eq!(render("{{a}}", &d, Escape::None).unwrap(), "1");
    }

    #[test]
    fn escapes_and_literals() {
        let d = data(&[("x", "1")]);
        assert_eq!(render("\\{{x}}", &d, Escape::None).unwrap(), "{{x}}");
        assert_eq!(
            render("a \\ b }} {", &d, Escape::None).unwrap(),
            "a \\ b }} {"
        );
        assert_eq!(render("{{x}}}", &d, Escape::None).unwrap(), "1}");
        // A value is not expanded again.
        let d = data(&[("x", "{{y}}")]);
        assert_eq!(render("{{x}}", &d, Escape::None).unwrap(), "{{y}}");
    }

    #[test]
    fn syntax_errors_say_where() {
        for (src, offset) in [
            ("Hi {{name", 3),
            ("{{}}", 0),
            ("ok {{ 1st }}", 3),
            ("{{a b}}", 0),
            ("{{na\nme}}", 0),
            ("x{{{a}}}", 1),
        ] {
            let e = validate(src).unwrap_err();
            assert_eq!(e.offset, offset, "{src}: {e}");
        }
        let long = format!("{{{{{}}}}}", "a".repeat(MAX_NAME + 1));
        assert!(validate(&long).is_err());
        let longest = format!("{{{{{}}}}}", "a".repeat(MAX_NAME));
        assert!(validate(&longest).is_ok());
    }

    #[test]
    fn variables_are_listed_once() {
        let v = variables("{{b}} {{a}} {{ b }}").unwrap();
        assert_eq!(v.into_iter().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn tags_are_replaced_once_longest_first() {
        let tags: &[(&[u8], &[u8])] = &[(b"%n%", b"Ann %n%"), (b"%name%", b"Bob"), (b"%", b"?")];
        assert_eq!(
            replace_tags(b"Hi %name%, %n%!", tags).unwrap(),
            b"Hi Bob, Ann %n%!".to_vec()
        );
        assert_eq!(replace_tags(b"nothing here", &[(b"%x%", b"y")]), None);
        assert_eq!(
            replace_tags(b"%x%", &[(b"%x%", b"")]).unwrap(),
            b"".to_vec()
        );
    }

    proptest! {
        /// Text without any tag comes back as none to copy.
        #[test]
        fn text_without_tags_is_left_alone(s in "[a-z ]*") {
            prop_assert_eq!(replace_tags(s.as_bytes(), &[(b"%x%", b"y")]), None);
        }

        /// Text without `{{` renders to itself, whatever the data.
        #[test]
        fn text_without_placeholders_is_unchanged(s in "\\PC*") {
            prop_assume!(!s.contains("{{"));
            prop_assert_eq!(render(&s, &BTreeMap::new(), Escape::Html).unwrap(), s);
        }

        /// An escaped value never contains markup characters, and a
        /// rendered HTML part holds no `<` the template did not have.
        #[test]
        fn html_values_carry_no_markup(v in "\\PC*") {
            let d = data(&[("v", &v)]);
            let out = render("{{v}}", &d, Escape::Html).unwrap();
            prop_assert!(!out.contains(['<', '>', '"', '\'']));
            let plain = render("{{v}}", &d, Escape::None).unwrap();
            prop_assert_eq!(plain, v);
        }

        /// Parsing never panics, and a template that parses renders once
        /// every variable is given.
        #[test]
        fn parsing_any_input_is_total(s in "[{}a-z \\\\.]{0,40}") {
            if let Ok(vars) = variables(&s) {
                let d: BTreeMap<String, String> =
                    vars.iter().map(|v| (v.to_string(), "V".to_string())).collect();
                prop_assert!(render(&s, &d, Escape::None).is_ok());
            }
        }
    }
}
