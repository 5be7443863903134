//! How the admin service says no. Every front end maps these four kinds
//! to its own: a one-line CLI error, an HTTP status with a stable code.

use posthorn_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The input is malformed or not allowed (a name, an address, a weak
    /// password); the message says what to fix.
    #[error("{0}")]
    Invalid(String),
    /// The account, domain, sender, API user or label named does not exist
    /// (or is another account's).
    #[error("{0}")]
    NotFound(String),
    /// It exists already.
    #[error("{0}")]
    Duplicate(String),
    /// Others still depend on it (senders of a domain, messages of an
    /// account in the queue).
    #[error("{0}")]
    InUse(String),
    /// The store failed, or key generation did; nothing was changed.
    #[error("{0}")]
    Internal(String),
}

pub type AdminResult<T> = Result<T, AdminError>;

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => AdminError::NotFound(m),
            StoreError::Duplicate(m) => AdminError::Duplicate(m),
            StoreError::InUse(m) => AdminError::InUse(m),
            e @ (StoreError::Backend(_) | StoreError::NoSpace(_)) => {
                AdminError::Internal(e.to_string())
            }
        }
    }
}
