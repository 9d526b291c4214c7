//! The engine's error: why an intent was refused, in the engine's own terms. The engine and
//! the federation task know nothing of HTTP; `crate::error` maps each variant to a status, a
//! stable `code` and a message (`impl From<engine::Error> for ApiError`).
//!
//! An internal failure carries no detail: its cause is logged where it is made
//! ([`Error::internal`]) and the caller learns only that something failed.

/// A refused or failed intent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The request itself is wrong (a name too long, a bad id, an impossible change).
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// The caller may not do this (not a member, not an admin, a limit on their account).
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// `what` does not exist, or the caller may not know that it does.
    #[error("{what} not found")]
    NotFound { what: String },
    /// A user id names an organisation this node has not peered with.
    #[error("{message}")]
    UnknownOrganisation { message: String },
    /// The request contradicts the current state (a name taken, a last admin leaving).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// Over a size limit.
    #[error("{message}")]
    TooLarge { code: &'static str, message: String },
    /// A shared chat whose history has not arrived from its owner yet: try again shortly.
    #[error("this shared chat's history is still arriving from its owner; try again shortly")]
    NotSynced,
    /// Something failed inside the node; the cause is in the log.
    #[error("internal error; see the server log")]
    Internal,
}

/// The engine's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { code, message: message.into() }
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::Forbidden { code, message: message.into() }
    }

    pub fn not_a_member() -> Self {
        Self::forbidden("not_a_member", "you are not a member of this chat")
    }

    pub fn not_found(what: &str) -> Self {
        Self::NotFound { what: what.into() }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict { code, message: message.into() }
    }

    pub fn too_large(code: &'static str, message: impl Into<String>) -> Self {
        Self::TooLarge { code, message: message.into() }
    }

    /// Logs the cause and returns the opaque [`Error::Internal`].
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::Internal
    }
}

impl From<crate::store::StoreError> for Error {
    fn from(error: crate::store::StoreError) -> Self {
        Self::internal(error)
    }
}

/// `Ok` when `text` is one line of plain text with a number of characters in `chars`
/// ([`crate::model::is_plain_text`]); else an `invalid_body` error that says `rule`.
pub(super) fn require_plain_text(
    text: &str,
    chars: std::ops::RangeInclusive<usize>,
    rule: impl FnOnce() -> String,
) -> Result<()> {
    if crate::model::is_plain_text(text, chars) {
        Ok(())
    } else {
        Err(Error::invalid("invalid_body", rule()))
    }
}
