//! How submission outcomes are said in SMTP.

use posthorn_submit::{AuthError, SubmitError};
use posthorn_types::Reply;

pub(crate) fn auth_failure(e: &AuthError) -> Reply {
    match e {
        AuthError::Invalid => Reply::new(535, "5.7.8", "Error: authentication credentials invalid"),
        AuthError::UnknownLabel(label) => Reply::new(
            535,
            "5.7.8",
            format!(
                "Error: the password is right, but the account has no label {:?}; check the label id after '#'",
                label.chars().filter(|c| c.is_ascii_graphic()).take(64).collect::<String>()
            ),
        ),
        AuthError::LockedOut => Reply::new(
            454,
            "4.7.0",
            "Error: too many failed logins from your address, try again later",
        ),
        AuthError::Temporary(_) => Reply::new(
            454,
            "4.7.0",
            "Error: temporary authentication failure, try again later",
        ),
    }
}

pub(crate) fn submit_failure(e: &SubmitError) -> Reply {
    submit_failure_with_id(e, &posthorn_types::new_uuid())
}

/// [`submit_failure`], a business error carrying `request_id` as its
/// `RequestId`.
pub(crate) fn submit_failure_with_id(e: &SubmitError, request_id: &str) -> Reply {
    match e {
        SubmitError::SenderNotAllowed(from) => Reply::new(
            553,
            "5.7.1",
            format!("Error: sender address <{from}> is not allowed for this login"),
        ),
        SubmitError::Business(b) => b.to_reply_with_id(request_id),
        SubmitError::Temporary(_) => Reply::new(
            451,
            "4.3.0",
            "Error: temporary failure, message not accepted, try again later",
        ),
        // RFC 3463 4.3.1, mail system full; RFC 5321 452, insufficient
        // system storage.
        SubmitError::NoSpace(_) => Reply::new(
            452,
            "4.3.1",
            "Error: insufficient system storage, message not accepted, try again later",
        ),
        // RFC 3463 4.3.2, system not accepting network messages.
        SubmitError::StoreBusy(_) => Reply::new(
            451,
            "4.3.2",
            "Error: the server is busy storing other messages; this one was not accepted, send it again in a minute",
        ),
    }
}
