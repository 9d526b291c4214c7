//! What handlers read from a request besides the session: JSON bodies with the API's error
//! shape, the client's address, and ids from the path.

use super::AppState;
use crate::error::{ApiError, ApiResult};
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::{request::Parts, StatusCode};
use axum::Json;
use confab_protocol::{ChatId, MessageId, UserId};
use std::net::SocketAddr;

/// JSON body extractor whose errors use the API's error shape.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::too_large("payload_too_large", "request body is too large");
    }
    if rejection.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_request",
            "send Content-Type: application/json",
        );
    }
    ApiError::bad_request("bad_request", rejection.body_text())
}

/// The client's address, for per-address limits: the connection's, or the one a trusted proxy
/// names ([`crate::forwarded`]); `unknown` when not served over TCP.
pub struct ClientAddress(pub String);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let trusted = &state.config.trusted_proxies;
        let address = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| trusted.client_address(info.0.ip(), &parts.headers).to_string());
        Ok(Self(address.unwrap_or_else(|| "unknown".into())))
    }
}

pub(super) fn parse_user(state: &AppState, text: &str) -> ApiResult<UserId> {
    let _ = state;
    text.parse()
        .map_err(|e: confab_protocol::IdError| ApiError::bad_request("invalid_id", e.to_string()))
}

pub(super) fn parse_chat(text: &str) -> ApiResult<ChatId> {
    text.parse().map_err(|_| ApiError::not_found("chat"))
}

pub(super) fn parse_message(text: &str) -> ApiResult<MessageId> {
    text.parse().map_err(|_| ApiError::not_found("message"))
}
