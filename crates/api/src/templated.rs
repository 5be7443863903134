//! `POST /v1/messages` with a stored template: the request's `template`
//! and `template_data` checked and rendered into `subject`, `text` and
//! `html`, so [`crate::compose::compose`] then builds the message exactly
//! as for a request that gave them. Pure: the handler fetches the
//! template; rendering is `posthorn_template`'s (values plain in the
//! subject and text, HTML-escaped in the HTML).

use crate::compose::{ComposeError, SendRequest, INVALID_TEMPLATE_DATA};
use posthorn_policy::codes;
use posthorn_store::Template;
use posthorn_template::{render_all, Escape, RenderError};
use serde_json::Value;
use std::collections::BTreeMap;

/// Template variables, name to value.
pub type Variables = BTreeMap<String, String>;

/// What a request asks of a template: its id or name and the data, or
/// `None` for a request without one. Refused: a template with `subject`,
/// `text` or `html` too (`FailedOperation.TemplateWithContent`), and
/// `template_data` that is malformed or comes without a template
/// (`InvalidParameter.TemplateData`).
pub fn template_request(req: &SendRequest) -> Result<Option<(&str, Variables)>, ComposeError> {
    let Some(template) = req.template.as_deref() else {
        if req.template_data.is_some() {
            return Err(ComposeError::new(
                INVALID_TEMPLATE_DATA,
                "template_data",
                "template_data needs a template",
            ));
        }
        return Ok(None);
    };
    for (field, given) in [
        ("subject", req.subject.is_some()),
        ("text", req.text.is_some()),
        ("html", req.html.is_some()),
    ] {
        if given {
            return Err(ComposeError::new(
                codes::TEMPLATE_WITH_CONTENT,
                field,
                format!("a send with a template takes its {field} from the template: leave {field} out, or leave out the template"),
            ));
        }
    }
    Ok(Some((template, template_data(req.template_data.as_ref())?)))
}

/// `template_data` as variables: an object (or an object as a JSON
/// string) whose values are strings, numbers or booleans (written as JSON
/// writes them). Absent or `null`: no variables.
pub fn template_data(value: Option<&Value>) -> Result<BTreeMap<String, String>, ComposeError> {
    let bad = |m: String| ComposeError::new(INVALID_TEMPLATE_DATA, "template_data", m);
    let parsed;
    let object = match value {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::Object(o)) => o,
        Some(Value::String(s)) => {
            parsed = serde_json::from_str::<Value>(s)
                .map_err(|e| bad(format!("a string here must hold a JSON object: {e}")))?;
            match &parsed {
                Value::Object(o) => o,
                _ => return Err(bad("a string here must hold a JSON object".into())),
            }
        }
        Some(_) => {
            return Err(bad(
                "an object of variables, or that object as a JSON string".into(),
            ))
        }
    };
    object
        .iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(bad(format!(
                        "{k:?}: a value is a string, a number or a boolean"
                    )))
                }
            };
            Ok((k.clone(), text))
        })
        .collect()
}

/// The request with the template's parts rendered into it.
pub fn apply(
    req: &SendRequest,
    template: &Template,
    data: &BTreeMap<String, String>,
) -> Result<SendRequest, ComposeError> {
    let text = template.text.as_deref();
    let html = template.html.as_deref();
    let mut parts = vec![(template.subject.as_str(), Escape::None)];
    parts.extend(text.map(|t| (t, Escape::None)));
    parts.extend(html.map(|h| (h, Escape::Html)));
    let mut rendered = render_all(&parts, data)
        .map_err(|e| match e {
            RenderError::Missing(names) => ComposeError::new(
                codes::MISSING_TEMPLATE_VARIABLE,
                "template_data",
                format!(
                    "template {} uses {} that template_data does not give",
                    template.name,
                    names.join(", ")
                ),
            ),
            // Stored templates were checked when they were stored.
            RenderError::Syntax(e) => ComposeError::new(
                INVALID_TEMPLATE_DATA,
                "template",
                format!("template {} does not parse: {e}", template.name),
            ),
        })?
        .into_iter();
    let mut out = req.clone();
    out.template = None;
    out.template_data = None;
    out.subject = rendered.next();
    out.text = text.and_then(|_| rendered.next());
    out.html = html.and_then(|_| rendered.next());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(v: Value) -> SendRequest {
        serde_json::from_value(v).unwrap()
    }

    fn template() -> Template {
        Template {
            id: "tpl_x".into(),
            account_id: 1,
            name: "welcome".into(),
            subject: "Hi {{name}}".into(),
            text: Some("Hello {{ name }}, #{{n}}".into()),
            html: Some("<p>{{name}}</p>".into()),
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn data_is_an_object_or_a_json_string_of_one() {
        let r = req(json!({"template": "t", "template_data": {"a": "x", "n": 3, "b": true}}));
        let (name, data) = template_request(&r).unwrap().unwrap();
        assert_eq!(name, "t");
        assert_eq!(data["n"], "3");
        assert_eq!(data["b"], "true");
        let r = req(json!({"template": "t", "template_data": "{\"a\":\"x\"}"}));
        assert_eq!(template_request(&r).unwrap().unwrap().1["a"], "x");
        for bad in [
            json!("[1]"),
            json!("{"),
            json!([1]),
            json!({"a": {"b": 1}}),
            json!({"a": null}),
        ] {
            let r = req(json!({"template": "t", "template_data": bad}));
            assert_eq!(
                template_request(&r).unwrap_err().code,
                INVALID_TEMPLATE_DATA,
                "{bad}"
            );
        }
        let r = req(json!({"template_data": {"a": "x"}}));
        assert_eq!(
            template_request(&r).unwrap_err().code,
            INVALID_TEMPLATE_DATA
        );
        assert!(template_request(&req(json!({}))).unwrap().is_none());
    }

    #[test]
    fn a_template_with_content_is_refused() {
        for field in ["subject", "text", "html"] {
            let r = req(json!({"template": "t", field: "x"}));
            let e = template_request(&r).unwrap_err();
            assert_eq!(
                (e.code, e.field.as_str()),
                (codes::TEMPLATE_WITH_CONTENT, field)
            );
            assert!(e.is_business());
        }
    }

    #[test]
    fn rendering_fills_subject_text_and_escaped_html() {
        let r = req(json!({"template": "welcome", "from": "a@example.com"}));
        let data: BTreeMap<String, String> = [
            ("name".to_string(), "<Ann>".to_string()),
            ("n".to_string(), "7".to_string()),
        ]
        .into();
        let out = apply(&r, &template(), &data).unwrap();
        assert_eq!(out.subject.as_deref(), Some("Hi <Ann>"));
        assert_eq!(out.text.as_deref(), Some("Hello <Ann>, #7"));
        assert_eq!(out.html.as_deref(), Some("<p>&lt;Ann&gt;</p>"));
        assert!(out.template.is_none());
        let e = apply(&r, &template(), &BTreeMap::new()).unwrap_err();
        assert_eq!(e.code, codes::MISSING_TEMPLATE_VARIABLE);
        assert!(e.message.contains("n, name"), "{}", e.message);
    }
}
