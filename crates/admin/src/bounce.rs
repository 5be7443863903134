//! An operator's bounce of a message (`posthorn queue bounce`, the
//! console's Bounce button): every recipient not yet final becomes
//! bounced, in one commit with the bounce notice to the sender when one is
//! due, as delivery's own bounces are.

use crate::{Admin, AdminError, AdminResult};
use posthorn_delivery::dsn::{DsnAction, DsnRecipient};
use posthorn_delivery::engine::{bounce_notice, bounce_notices_on, Bounced};
use posthorn_store::{OutcomeBatch, RecipientUpdate};
use posthorn_types::{MessageId, RecipientStatus};

/// The reply recorded for a recipient an operator bounced.
pub const OPERATOR_BOUNCE_REPLY: &str = "550 5.0.0 bounced by the operator";

/// Whether bounce notices are sent, and the host name they are reported
/// by (`[delivery] dsn` and `[delivery] hostname`).
#[derive(Clone, Debug)]
pub struct BounceNotices {
    pub enabled: bool,
    pub hostname: String,
}

/// What [`Admin::bounce_message`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BounceOutcome {
    pub message_id: MessageId,
    /// The recipients that were not final, which it bounced (empty: every
    /// one was final already, nothing was done).
    pub bounced: Vec<String>,
    /// How many of them it bounced (fewer when others became final
    /// meanwhile).
    pub applied: u64,
    /// The bounce notice queued: its id and recipients.
    pub notice: Option<(MessageId, String)>,
    /// Why there is no notice, when bounces were made without one.
    pub no_notice: Option<&'static str>,
}

impl Admin {
    /// Bounce every recipient of message `id` that is not final yet, with
    /// the notice to its sender in the same commit. `account_id`: only a
    /// message of that account (another's is `NotFound`, as a missing one).
    pub async fn bounce_message(
        &self,
        id: MessageId,
        account_id: Option<i64>,
        notices: &BounceNotices,
    ) -> AdminResult<BounceOutcome> {
        let store = self.store();
        let m = store.message(id).await?;
        if account_id.is_some_and(|a| a != m.account_id) {
            return Err(AdminError::NotFound(format!("no message {id}")));
        }
        let now = store.now();
        let pending: Vec<(u32, &posthorn_store::RecipientRecord)> = m
            .recipients
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                matches!(
                    r.status,
                    RecipientStatus::Queued | RecipientStatus::Deferred | RecipientStatus::Sending
                )
            })
            .map(|(i, r)| (i as u32, r))
            .collect();
        let mut outcome = BounceOutcome {
            message_id: id,
            bounced: pending.iter().map(|(_, r)| r.address.clone()).collect(),
            applied: 0,
            notice: None,
            no_notice: None,
        };
        if pending.is_empty() {
            return Ok(outcome);
        }
        let updates: Vec<RecipientUpdate> = pending
            .iter()
            .map(|(idx, r)| RecipientUpdate {
                message_id: id,
                idx: *idx,
                status: RecipientStatus::Bounced,
                attempts: r.attempts,
                last_reply: Some(OPERATOR_BOUNCE_REPLY.to_string()),
                remote_host: None,
                next_try: None,
                suppress: None,
            })
            .collect();
        let failed: Vec<DsnRecipient> = pending
            .iter()
            .map(|(_, r)| DsnRecipient {
                address: r.address.clone(),
                action: DsnAction::Failed,
                status: "5.0.0".to_string(),
                diagnostic: Some("bounced by the operator".to_string()),
                remote_mta: None,
                last_attempt: Some(now),
            })
            .collect();
        let notice = if !notices.enabled {
            outcome.no_notice = Some("bounce notices are off ([delivery] dsn = false)");
            None
        } else if !bounce_notices_on(&store.account_settings(m.account_id).await?) {
            outcome.no_notice =
                Some("bounce notices are off for this account (bounce_notices = 0)");
            None
        } else {
            let content = store.message_content(id).await.unwrap_or_default();
            let about = Bounced {
                message_id: id,
                account_id: m.account_id,
                mail_from: &m.mail_from,
                label: m.label.as_deref(),
                received_at: m.received_at,
                is_dsn: m.is_dsn,
            };
            let notice = bounce_notice(&notices.hostname, &about, &failed, &content, now);
            if notice.is_none() {
                outcome.no_notice = Some(if m.is_dsn {
                    "the message is itself a bounce notice"
                } else {
                    "the message has the null sender"
                });
            }
            notice
        };
        let notice_id = notice.as_ref().map(|n| (n.id, n.recipients.join(", ")));
        let recorded = store
            .record_outcomes(
                None,
                OutcomeBatch {
                    updates,
                    notices: notice.into_iter().collect(),
                },
            )
            .await?;
        outcome.applied = recorded.applied;
        outcome.notice = notice_id;
        Ok(outcome)
    }
}
