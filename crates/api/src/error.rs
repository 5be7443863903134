//! How the API says no: `{"error": {"code", "message", "request_id"}}` with
//! a stable code, and the registry of every code it may answer with.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use posthorn_submit::SubmitError;
use serde::Serialize;
use utoipa::ToSchema;

tokio::task_local! {
    /// The id of the request being handled (set by the request-id layer).
    pub static REQUEST_ID: String;
}

/// The current request's id, or an empty string outside a request.
pub fn request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

/// One stable HTTP error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiErrorCode {
    pub code: &'static str,
    pub status: u16,
    pub when: &'static str,
}

macro_rules! codes {
    ($($name:ident = $code:literal, $status:literal, $when:literal;)*) => {
        $(pub const $name: &str = $code;)*
        /// Every code the API answers with besides the business error codes
        /// of `posthorn_policy::ERROR_CODES` (which it shares with SMTP).
        pub const API_ERROR_CODES: &[ApiErrorCode] = &[
            $(ApiErrorCode { code: $code, status: $status, when: $when },)*
        ];
    };
}

codes! {
    MISSING_KEY = "AuthFailure.MissingKey", 401, "no `Authorization: Bearer <key>` header";
    INVALID_KEY = "AuthFailure.InvalidKey", 401, "the key is unknown, revoked or malformed, or the SMTP user and password given with `Basic` are wrong";
    LOCKED_OUT = "AuthFailure.LockedOut", 429, "too many wrong passwords for this SMTP user from this address (or for any user from it): try again later";
    ADMIN_ONLY = "UnauthorizedOperation.AdminOnly", 403, "an account key was used on an admin route";
    ACCOUNT_ONLY = "UnauthorizedOperation.AccountOnly", 403, "the admin key was used on a route that acts as an account";
    SENDER_NOT_ALLOWED = "UnauthorizedOperation.SenderNotAllowed", 403, "`from` is not a sender address of the key's account";
    INVALID_JSON = "InvalidParameter.Json", 400, "the body is not valid JSON, or a field has the wrong type, is missing or unknown";
    MEDIA_TYPE = "InvalidParameter.MediaType", 415, "the body is not sent as `Content-Type: application/json` (or `message/rfc822` for raw)";
    REQUEST_TOO_LARGE = "InvalidParameter.RequestTooLarge", 413, "the request body is larger than `[http] max_body_bytes`";
    INVALID_QUERY = "InvalidParameter.Query", 400, "a query parameter is malformed (a date, status, limit or cursor)";
    INVALID_MESSAGE_ID = "InvalidParameter.MessageId", 400, "the path does not hold a message id (26 characters of Crockford base 32)";
    INVALID_URL = "InvalidParameter.Url", 400, "a webhook URL that is not http(s), is longer than 2,048 bytes, has user information, or is or resolves to an internal address (loopback, private, link-local, ...) while `[webhooks] allow_private_networks` is false";
    INVALID_EVENT = "InvalidParameter.Event", 400, "a webhook event kind that does not exist";
    INVALID_VALUE = "InvalidParameter.Value", 400, "an admin value is malformed (a name, address, setting or key)";
    MESSAGE_NOT_FOUND = "ResourceNotFound.Message", 404, "no message with this id belongs to the key's account";
    NOT_FOUND = "ResourceNotFound.Object", 404, "the account, domain, sender, webhook, key or suppression named does not exist";
    NO_ROUTE = "ResourceNotFound.Route", 404, "no such endpoint (see /openapi.json)";
    METHOD = "UnsupportedOperation.Method", 405, "the endpoint exists but not with this method";
    TOO_MANY_CONNECTIONS = "LimitExceeded.Connections", 503, "the server holds as many connections as it may (`[http] max_connections`, or the file descriptors kept for connections); the connection is answered and closed: retry shortly";
    TOO_MANY_CONNECTIONS_PER_ADDRESS = "LimitExceeded.ConnectionsPerAddress", 429, "your address holds `[http] max_connections_per_ip` connections already; the new one is answered and closed: reuse connections (keep-alive) or retry shortly";
    TOO_MANY_WEBHOOKS = "LimitExceeded.Webhooks", 409, "the account already has 20 webhooks, the most it may have: delete one first (one webhook takes several event kinds)";
    DUPLICATE = "ResourceInUse.Duplicate", 409, "the name or address already exists";
    IN_USE = "ResourceInUse.HasDependents", 409, "the object is still used (a domain with sender addresses, an account with messages in the queue): remove or finish those first";
    TEMPORARY = "InternalError.Temporary", 503, "the store could not be reached; nothing was accepted; retry";
    NO_SPACE = "InternalError.NoSpace", 503, "the store is out of disk space (SMTP says `452 4.3.1`); nothing was accepted; retry later (`/readyz` is not ready meanwhile)";
    STORE_BUSY = "InternalError.StoreBusy", 503, "the store did not commit the message within `[smtp] store_timeout_secs` (15 s; SMTP says `451 4.3.2`): it is behind; retry later (the message may still be committed, so a retry may arrive twice)";
    INTERNAL = "InternalError.Unexpected", 500, "a bug: the log line with the request id says more";
}

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

/// The JSON of an error answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable: match on it, not on the message. One of the API's own codes
    /// or, for a refusal SMTP would make too (a policy rule, a rate limit),
    /// the same business error code SMTP answers with (docs/errors.md).
    #[schema(example = "ResourceNotFound.Message")]
    pub code: String,
    pub message: String,
    /// Also in the `X-Request-Id` header and the server's log.
    pub request_id: String,
}

impl ApiError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        let status = API_ERROR_CODES
            .iter()
            .find(|c| c.code == code)
            .map(|c| StatusCode::from_u16(c.status).expect("valid status"))
            .unwrap_or(StatusCode::BAD_REQUEST);
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(NOT_FOUND, what)
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::SenderNotAllowed(from) => ApiError::new(
                SENDER_NOT_ALLOWED,
                format!("{from:?} is not a sender address of this account"),
            ),
            SubmitError::Business(b) => {
                // Temporary refusals (the rate limits, 45x in SMTP) are
                // 429; the message's own faults 422.
                let status = if b.smtp_code / 100 == 4 {
                    StatusCode::TOO_MANY_REQUESTS
                } else {
                    StatusCode::UNPROCESSABLE_ENTITY
                };
                ApiError {
                    status,
                    code: b.code,
                    message: b.message,
                }
            }
            SubmitError::Temporary(m) => ApiError::new(TEMPORARY, m),
            SubmitError::NoSpace(m) => ApiError::new(NO_SPACE, m),
            e @ SubmitError::StoreBusy(_) => ApiError::new(STORE_BUSY, format!("{e}; nothing is known to be accepted: send it again in a minute (it may then arrive twice)")),
        }
    }
}

impl From<posthorn_store::StoreError> for ApiError {
    fn from(e: posthorn_store::StoreError) -> Self {
        use posthorn_store::StoreError::*;
        match e {
            NotFound(m) => ApiError::new(NOT_FOUND, m),
            Duplicate(m) => ApiError::new(DUPLICATE, m),
            InUse(m) => ApiError::new(IN_USE, m),
            Backend(m) => ApiError::new(TEMPORARY, m),
            NoSpace(m) => ApiError::new(NO_SPACE, m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = request_id();
        if self.status.is_server_error() {
            tracing::warn!(%request_id, code = self.code, message = %self.message, "request failed");
        } else {
            tracing::debug!(%request_id, code = self.code, message = %self.message, "request refused");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                request_id,
            },
        };
        (self.status, axum::Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
