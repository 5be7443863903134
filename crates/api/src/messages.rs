//! Sending (`POST /v1/messages`, `POST /v1/messages/raw`) and status
//! (`GET /v1/messages/{id}`, `GET /v1/messages`).

use crate::auth::AccountAuth;
use crate::compose::{compose, ComposeError, SendRequest};
use crate::error::{
    ApiError, ApiResult, ErrorBody, INVALID_MESSAGE_ID, INVALID_QUERY, INVALID_VALUE, MEDIA_TYPE,
    MESSAGE_NOT_FOUND,
};
use crate::extract::{body_bytes, ApiJson, ApiQuery};
use crate::AppState;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::StatusCode;
use axum::Json;
use posthorn_store::{MessageFilter, MessageRecord, RecipientRecord};
use posthorn_submit::is_suppression;
use posthorn_types::time::{parse_date, rfc3339};
use posthorn_types::{Envelope, Identity, MessageId, Origin, RecipientStatus};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use utoipa::{IntoParams, ToSchema};

/// What became of one recipient of a send request.
#[derive(Serialize, ToSchema)]
pub struct SentRecipient {
    pub address: String,
    /// `queued` (accepted, will be delivered), `suppressed` (on the
    /// account's suppression list: recorded, not sent) or `refused` (not
    /// accepted: see `code`).
    #[schema(example = "queued")]
    pub status: String,
    /// For `refused` and `suppressed`: the stable error code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The answer to a send: the message is on stable storage.
#[derive(Serialize, ToSchema)]
pub struct SendResponse {
    /// Use it with `GET /v1/messages/{id}`.
    #[schema(example = "01JDQ8Z6K3V9X2T5W7Y4R1N0M8")]
    pub message_id: String,
    /// Only when the message became several (an `X-SMTPAPI` header: one
    /// message per recipient of its `to`, docs/x-smtpapi.md; or several
    /// recipients of an account with one-click unsubscribe on, one per
    /// recipient, docs/unsubscribe.md): every id, in recipient order;
    /// `message_id` is the first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub message_ids: Vec<String>,
    pub recipients: Vec<SentRecipient>,
}

/// Send a message built from JSON fields.
#[utoipa::path(post, path = "/v1/messages", tag = "messages",
    request_body = SendRequest,
    responses(
        (status = 202, description = "accepted and stored", body = SendResponse),
        (status = 400, description = "not JSON of this shape (`InvalidParameter.Json`: a wrong type, an unknown field), or a malformed field (`InvalidParameter.*`, `InvalidParameter.TemplateData` for `template_data`); a business rule the message breaks is 422", body = ErrorBody),
        (status = 401, description = "no or a wrong API key", body = ErrorBody),
        (status = 403, description = "the sender is not the account's", body = ErrorBody),
        (status = 413, description = "the body is too large", body = ErrorBody),
        (status = 415, description = "not JSON", body = ErrorBody),
        (status = 422, description = "the message breaks a business rule, with the business code SMTP answers for the same message (docs/errors.md): no `from` (`FailedOperation.MissingFrom`), no or an empty `subject` (`.MissingSubject`), no `to` or `cc` address (`.MissingRecipient`), no content and no template (`.MissingEmailContent`), an attachment that is not base64 (`.InvalidAttachmentContent`), too many or too large attachments, an unknown `template` (`.TemplateNotFound`), a template with `subject`, `text` or `html` (`.TemplateWithContent`), a variable the template uses missing from `template_data` (`.MissingTemplateVariable`), ...; or every recipient was refused", body = ErrorBody),
        (status = 429, description = "a rate limit", body = ErrorBody),
        (status = 503, description = "the store is unreachable (`InternalError.Temporary`), out of space (`InternalError.NoSpace`) or did not commit in time (`InternalError.StoreBusy`, after `[smtp] store_timeout_secs`; it may still be committed); retry", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn send(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    AccountAuth(who): AccountAuth,
    ApiJson(req): ApiJson<SendRequest>,
) -> ApiResult<(StatusCode, Json<SendResponse>)> {
    let req = match crate::templated::template_request(&req).map_err(compose_error)? {
        None => req,
        Some((template, data)) => {
            let found = posthorn_admin::Admin::new(state.store.clone())
                .template(who.account_id, template)
                .await
                .map_err(|e| match e {
                    posthorn_admin::AdminError::NotFound(_) => compose_error(ComposeError::new(
                        posthorn_policy::codes::TEMPLATE_NOT_FOUND,
                        "template",
                        format!("the account has no template {template:?}"),
                    )),
                    e => e.into(),
                })?;
            crate::templated::apply(&req, &found, &data).map_err(compose_error)?
        }
    };
    let composed = compose(&req).map_err(compose_error)?;
    let who = with_label(&state, who, req.label.as_deref()).await?;
    submit(
        &state,
        &who,
        peer,
        composed.mail_from,
        composed.rcpt_to,
        composed.content,
    )
    .await
}

/// A business rule (a missing field, an attachment that is not base64) is
/// answered as the submitter answers the policy: the same code, a `Message`
/// in the same words as SMTP's, the same status; a malformed field is 400.
fn compose_error(e: ComposeError) -> ApiError {
    let message = format!("{}: {}", e.field, e.message);
    if e.is_business() {
        return posthorn_submit::SubmitError::Business(posthorn_policy::codes::refusal(
            e.code, message,
        ))
        .into();
    }
    ApiError {
        status: StatusCode::BAD_REQUEST,
        code: e.code,
        message,
    }
}

/// The identity with a label, which must exist for the account.
async fn with_label(
    state: &AppState,
    mut who: Identity,
    label: Option<&str>,
) -> ApiResult<Identity> {
    if let Some(label) = label {
        if !state.store.has_label(who.account_id, label).await? {
            return Err(ApiError::new(
                INVALID_VALUE,
                format!("label {label:?} does not exist for this account (create it first: posthorn label add)"),
            ));
        }
        who.label = Some(label.to_string());
    }
    Ok(who)
}

/// The shared path: sender, each recipient, then the submitter's commit.
async fn submit(
    state: &AppState,
    who: &Identity,
    peer: SocketAddr,
    mail_from: String,
    rcpt_to: Vec<String>,
    content: Vec<u8>,
) -> ApiResult<(StatusCode, Json<SendResponse>)> {
    let submitter = &state.submitter;
    submitter.check_sender(who, &mail_from).await?;
    let mut envelope = Envelope {
        mail_from,
        ..Default::default()
    };
    let mut report = Vec::with_capacity(rcpt_to.len());
    let mut first_refusal = None;
    for rcpt in rcpt_to {
        match submitter
            .check_recipient(who, &envelope.mail_from, &rcpt)
            .await
        {
            Ok(()) => {
                report.push(SentRecipient {
                    address: rcpt.clone(),
                    status: "queued".into(),
                    code: None,
                    message: None,
                });
                envelope.rcpt_to.push(rcpt);
            }
            Err(e) => {
                let suppressed = is_suppression(&e);
                let err = ApiError::from(e);
                report.push(SentRecipient {
                    address: rcpt.clone(),
                    status: if suppressed { "suppressed" } else { "refused" }.into(),
                    code: Some(err.code.to_string()),
                    message: Some(err.message.clone()),
                });
                if suppressed {
                    envelope.suppressed.push(rcpt);
                }
                first_refusal.get_or_insert(err);
            }
        }
    }
    if envelope.rcpt_to.is_empty() {
        // Nothing to send: say why (the first refusal), store nothing.
        return Err(first_refusal.unwrap_or_else(|| {
            posthorn_submit::SubmitError::Business(posthorn_types::BusinessError::policy(
                posthorn_policy::codes::MISSING_RECIPIENT,
                "the message has no recipient (to, cc or bcc)",
            ))
            .into()
        }));
    }
    let origin = Origin {
        protocol: "HTTP",
        helo: None,
        peer: Some(peer.ip()),
        tls: None,
    };
    let ids = submitter
        .submit_all(who, &origin, envelope, content)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(SendResponse {
            message_id: ids[0].to_string(),
            message_ids: if ids.len() > 1 {
                ids.iter().map(ToString::to_string).collect()
            } else {
                Vec::new()
            },
            recipients: report,
        }),
    ))
}

/// Envelope overrides for a raw message.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RawQuery {
    /// The envelope sender; default: the From address.
    pub from: Option<String>,
    /// Comma-separated envelope recipients; default: every address in To,
    /// Cc and Bcc.
    pub to: Option<String>,
    /// A label of the account.
    pub label: Option<String>,
}

/// Send a whole RFC 5322 message (`Content-Type: message/rfc822`).
#[utoipa::path(post, path = "/v1/messages/raw", tag = "messages",
    params(RawQuery),
    request_body(content = String, content_type = "message/rfc822", description = "the message, header and body"),
    responses(
        (status = 202, description = "accepted and stored", body = SendResponse),
        (status = 400, description = "no envelope could be read", body = ErrorBody),
        (status = 401, description = "no or a wrong API key", body = ErrorBody),
        (status = 403, description = "the sender is not the account's", body = ErrorBody),
        (status = 413, description = "the body is too large", body = ErrorBody),
        (status = 415, description = "not message/rfc822", body = ErrorBody),
        (status = 422, description = "the message breaks a business rule, with the business code SMTP answers for it (docs/errors.md), or every recipient was refused", body = ErrorBody),
        (status = 429, description = "a rate limit", body = ErrorBody),
        (status = 503, description = "the store is unreachable (`InternalError.Temporary`), out of space (`InternalError.NoSpace`) or did not commit in time (`InternalError.StoreBusy`, after `[smtp] store_timeout_secs`; it may still be committed); retry", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn send_raw(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    AccountAuth(who): AccountAuth,
    ApiQuery(query): ApiQuery<RawQuery>,
    req: Request,
) -> ApiResult<(StatusCode, Json<SendResponse>)> {
    let media = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if !matches!(
        media.as_deref(),
        Some("message/rfc822" | "text/plain" | "application/octet-stream")
    ) {
        return Err(ApiError::new(
            MEDIA_TYPE,
            "send the message as Content-Type: message/rfc822",
        ));
    }
    let body = body_bytes(req).await?;
    let content = posthorn_smtp::canonical_crlf(body.to_vec());
    let (header_from, header_rcpts) = header_envelope(&content);
    let mail_from = match query.from {
        Some(f) => f.trim().to_string(),
        None => header_from.ok_or_else(|| {
            ApiError::new(
                crate::compose::INVALID_ADDRESS,
                "the message has no From address and no ?from= was given",
            )
        })?,
    };
    let rcpt_to: Vec<String> = match query.to {
        Some(to) => to
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        None => header_rcpts,
    };
    let mut seen = std::collections::HashSet::new();
    let rcpt_to: Vec<String> = rcpt_to
        .into_iter()
        .filter(|r| seen.insert(r.to_ascii_lowercase()))
        .collect();
    for a in std::iter::once(&mail_from).chain(&rcpt_to) {
        if !plausible_address(a) {
            return Err(ApiError::new(
                crate::compose::INVALID_ADDRESS,
                format!("{a:?} is not an address"),
            ));
        }
    }
    let who = with_label(&state, who, query.label.as_deref()).await?;
    submit(&state, &who, peer, mail_from, rcpt_to, content).await
}

fn plausible_address(a: &str) -> bool {
    posthorn_types::Address::parse(a).is_ok()
}

/// The From address and the To, Cc and Bcc addresses of a message's header.
fn header_envelope(content: &[u8]) -> (Option<String>, Vec<String>) {
    let Some(msg) = mail_parser::MessageParser::default().parse_headers(content) else {
        return (None, Vec::new());
    };
    let addrs = |a: Option<&mail_parser::Address>| -> Vec<String> {
        a.map(|a| {
            a.iter()
                .filter_map(|x| x.address.as_deref().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
    };
    let from = addrs(msg.from()).into_iter().next();
    let mut rcpts = addrs(msg.to());
    rcpts.extend(addrs(msg.cc()));
    rcpts.extend(addrs(msg.bcc()));
    (from, rcpts)
}

/// One recipient and where it stands.
#[derive(Serialize, ToSchema)]
pub struct RecipientView {
    pub address: String,
    /// `queued`, `sending`, `delivered`, `deferred`, `bounced`, `expired`
    /// or `suppressed`.
    #[schema(example = "delivered")]
    pub status: String,
    /// Delivery attempts made.
    pub attempts: u32,
    /// The receiving server's last reply (or Posthorn's reason).
    #[schema(example = "250 2.0.0 Ok: queued as 4F2A1")]
    pub last_reply: Option<String>,
    /// The server that gave it, `name[address]`.
    pub remote_host: Option<String>,
    /// RFC 3339; when the next attempt is planned.
    pub next_attempt_at: Option<String>,
    /// RFC 3339; the last change of status.
    pub updated_at: String,
    /// Opens and clicks of a tracked message (docs/tracking.md); only in
    /// `GET /v1/messages/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engagement: Option<EngagementView>,
}

/// A recipient's opens and clicks (the open pixel and the click links of
/// a tracked message fetched; a mail client that blocks images opens
/// unseen).
#[derive(Serialize, ToSchema, Default)]
pub struct EngagementView {
    pub opened: bool,
    /// Fetches of the open pixel recorded.
    pub opens: u64,
    /// RFC 3339.
    pub first_opened_at: Option<String>,
    /// RFC 3339.
    pub last_opened_at: Option<String>,
    pub clicked: bool,
    /// Clicks recorded, every link together.
    pub clicks: u64,
    /// RFC 3339.
    pub first_clicked_at: Option<String>,
    /// RFC 3339.
    pub last_clicked_at: Option<String>,
}

impl EngagementView {
    /// Each recipient's view from the store's summaries.
    pub fn of(address: &str, all: &[posthorn_store::EngagementSummary]) -> Self {
        let mut v = EngagementView::default();
        for e in all
            .iter()
            .filter(|e| e.recipient.eq_ignore_ascii_case(address))
        {
            let (flag, count, first, last) = match e.kind.as_str() {
                posthorn_store::OPENED => (
                    &mut v.opened,
                    &mut v.opens,
                    &mut v.first_opened_at,
                    &mut v.last_opened_at,
                ),
                posthorn_store::CLICKED => (
                    &mut v.clicked,
                    &mut v.clicks,
                    &mut v.first_clicked_at,
                    &mut v.last_clicked_at,
                ),
                _ => continue,
            };
            *flag = true;
            *count += e.count;
            *first = Some(rfc3339(e.first_at));
            *last = Some(rfc3339(e.last_at));
        }
        v
    }
}

/// One attachment as the policy check found it.
#[derive(Serialize, ToSchema)]
pub struct AttachmentView {
    pub filename: Option<String>,
    pub content_type: String,
    /// Decoded bytes.
    pub size: u64,
}

/// A message and every recipient's status.
#[derive(Serialize, ToSchema)]
pub struct MessageView {
    pub id: String,
    /// The envelope sender.
    pub mail_from: String,
    /// The From address of the header.
    pub header_from: String,
    pub subject: String,
    pub label: Option<String>,
    /// Bytes as stored.
    pub size: u64,
    /// RFC 3339.
    pub received_at: String,
    /// RFC 3339; when every recipient had become final.
    pub completed_at: Option<String>,
    /// A bounce notice Posthorn generated.
    pub is_bounce_notice: bool,
    /// The content was deleted after its retention time (the statuses stay).
    pub content_purged: bool,
    pub attachments: Vec<AttachmentView>,
    pub recipients: Vec<RecipientView>,
}

impl From<RecipientRecord> for RecipientView {
    fn from(r: RecipientRecord) -> Self {
        let planned = matches!(
            r.status,
            RecipientStatus::Queued | RecipientStatus::Deferred
        );
        Self {
            address: r.address,
            status: r.status.as_str().to_string(),
            attempts: r.attempts,
            last_reply: r.last_reply,
            remote_host: r.remote_host,
            next_attempt_at: r.next_try.filter(|_| planned).map(rfc3339),
            updated_at: rfc3339(r.updated_at),
            engagement: None,
        }
    }
}

impl From<MessageRecord> for MessageView {
    fn from(m: MessageRecord) -> Self {
        Self {
            id: m.id.to_string(),
            mail_from: m.mail_from,
            header_from: m.header_from,
            subject: m.subject,
            label: m.label,
            size: m.size,
            received_at: rfc3339(m.received_at),
            completed_at: m.completed_at.map(rfc3339),
            is_bounce_notice: m.is_dsn,
            content_purged: m.content_purged,
            attachments: m
                .attachments
                .into_iter()
                .map(|a| AttachmentView {
                    filename: a.filename,
                    content_type: a.content_type,
                    size: a.size,
                })
                .collect(),
            recipients: m.recipients.into_iter().map(Into::into).collect(),
        }
    }
}

/// A message with every recipient's status.
#[utoipa::path(get, path = "/v1/messages/{id}", tag = "messages",
    params(("id" = String, Path, description = "the message id")),
    responses(
        (status = 200, description = "the message", body = MessageView),
        (status = 400, description = "not a message id", body = ErrorBody),
        (status = 401, description = "no or a wrong API key", body = ErrorBody),
        (status = 403, description = "the admin key: this route acts as an account", body = ErrorBody),
        (status = 404, description = "no such message of this account", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn get_message(
    State(state): State<AppState>,
    AccountAuth(who): AccountAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<MessageView>> {
    let id: MessageId = id
        .parse()
        .map_err(|e| ApiError::new(INVALID_MESSAGE_ID, format!("{e}")))?;
    let not_found = || ApiError::new(MESSAGE_NOT_FOUND, format!("no message {id}"));
    let m = match state.store.message(id).await {
        Ok(m) => m,
        Err(posthorn_store::StoreError::NotFound(_)) => return Err(not_found()),
        Err(e) => return Err(e.into()),
    };
    // Another account's message does not exist, as far as this key knows.
    if m.account_id != who.account_id {
        return Err(not_found());
    }
    let engagements = state.store.engagements(id).await?;
    let mut view: MessageView = m.into();
    for r in &mut view.recipients {
        r.engagement = Some(EngagementView::of(&r.address, &engagements));
    }
    Ok(Json(view))
}

/// Most messages one page holds.
pub const MAX_PAGE: u32 = 500;

/// Which messages to list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// A UTC day, `YYYY-MM-DD`: messages accepted that day.
    pub date: Option<String>,
    /// Only messages to this address.
    pub recipient: Option<String>,
    /// Only messages with a recipient in this status.
    pub status: Option<String>,
    pub label: Option<String>,
    /// At most this many (1–500, default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One page of messages, oldest first.
#[derive(Serialize, ToSchema)]
pub struct MessagePage {
    pub messages: Vec<MessageView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Messages by day, recipient, status and label, with cursor paging.
#[utoipa::path(get, path = "/v1/messages", tag = "messages",
    params(ListQuery),
    responses(
        (status = 200, description = "one page", body = MessagePage),
        (status = 400, description = "a malformed parameter", body = ErrorBody),
        (status = 401, description = "no or a wrong API key", body = ErrorBody),
        (status = 403, description = "the admin key: this route acts as an account", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn list_messages(
    State(state): State<AppState>,
    AccountAuth(who): AccountAuth,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<MessagePage>> {
    let bad = |m: String| ApiError::new(INVALID_QUERY, m);
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(bad(format!("limit must be 1..={MAX_PAGE}")));
    }
    let (mut after, mut before) = (None, None);
    if let Some(date) = &q.date {
        let day =
            parse_date(date).ok_or_else(|| bad(format!("date {date:?} is not YYYY-MM-DD")))?;
        let ms = |s: i64| (s as u64).saturating_mul(1000);
        // `after` is exclusive: the id just before the day's first.
        after = MessageId::first_at(ms(day)).checked_pred();
        before = Some(MessageId::first_at(ms(day + 86_400)));
    }
    if let Some(c) = &q.cursor {
        let c: MessageId = c
            .parse()
            .map_err(|_| bad("cursor is not one this API gave".into()))?;
        after = Some(after.map_or(c, |a| a.max(c)));
    }
    let status = q
        .status
        .as_deref()
        .map(|s| s.parse::<RecipientStatus>().map_err(bad))
        .transpose()?;
    let page = state
        .store
        .messages(&MessageFilter {
            account_id: Some(who.account_id),
            status,
            limit: Some(limit),
            after,
            before,
            recipient: q.recipient.clone(),
            label: q.label.clone(),
            newest_first: false,
        })
        .await?;
    let next_cursor = (page.len() == limit as usize)
        .then(|| page.last().map(|m| m.id.to_string()))
        .flatten();
    Ok(Json(MessagePage {
        messages: page.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_lines_become_crlf() {
        let canonical_lines = |b: &[u8]| posthorn_smtp::canonical_crlf(b.to_vec());
        assert_eq!(canonical_lines(b"a\nb\r\nc\rd"), b"a\r\nb\r\nc\r\nd\r\n");
        assert_eq!(canonical_lines(b"a\r\n"), b"a\r\n");
    }

    #[test]
    fn envelope_from_the_header() {
        let (from, rcpts) = header_envelope(
            b"From: A <a@x.test>\r\nTo: b@y.test, C <c@y.test>\r\nBcc: d@y.test\r\nSubject: s\r\n\r\nhi\r\n",
        );
        assert_eq!(from.as_deref(), Some("a@x.test"));
        assert_eq!(rcpts, ["b@y.test", "c@y.test", "d@y.test"]);
    }
}
