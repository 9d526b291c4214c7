//! The one error type of the HTTP API: a status, a stable `code` and a human `message`, sent as
//! `{"code": …, "message": …}`. Internal details go to the log, never to the client.
//!
//! The engine's [`crate::engine::Error`] and the media store's errors become API errors here
//! and only here: neither knows HTTP.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after_s: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after_s: None }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthenticated() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", "sign in first")
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn too_large(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, code, message)
    }

    pub fn rate_limited(retry_after_s: u64) -> Self {
        Self {
            retry_after_s: Some(retry_after_s.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests; try again later",
            )
        }
    }

    /// Logs the cause and returns an opaque 500.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }

    pub fn not_a_member() -> Self {
        Self::forbidden("not_a_member", "you are not a member of this chat")
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "code": self.code, "message": self.message })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        ApiError::internal(error)
    }
}

/// The engine's refusals as the API answers them; every status, code and message here is part
/// of the API (`spec/`).
impl From<crate::engine::Error> for ApiError {
    fn from(error: crate::engine::Error) -> Self {
        use crate::engine::Error;
        let message = error.to_string();
        match error {
            Error::Invalid { code, .. } => Self::bad_request(code, message),
            Error::Forbidden { code, .. } => Self::forbidden(code, message),
            Error::NotFound { .. } => Self::new(StatusCode::NOT_FOUND, "not_found", message),
            Error::UnknownOrganisation { .. } => {
                Self::new(StatusCode::NOT_FOUND, "unknown_organisation", message)
            }
            Error::Conflict { code, .. } => Self::conflict(code, message),
            Error::TooLarge { code, .. } => Self::too_large(code, message),
            Error::NotSynced => Self::new(StatusCode::SERVICE_UNAVAILABLE, "not_synced", message),
            // Logged where it was made.
            Error::Internal => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message),
        }
    }
}

/// Media store failures as the API answers them.
impl From<crate::media::MediaError> for ApiError {
    fn from(error: crate::media::MediaError) -> Self {
        use crate::media::MediaError;
        match error {
            MediaError::TooLarge { .. } => {
                ApiError::too_large("payload_too_large", error.to_string())
            }
            MediaError::InvalidId | MediaError::NotFound => ApiError::not_found("media"),
            MediaError::Body(_) => ApiError::bad_request("bad_upload", error.to_string()),
            MediaError::Io(_) | MediaError::Task(_) => ApiError::internal(error),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.to_json())).into_response();
        if let Some(seconds) = self.retry_after_s {
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}
