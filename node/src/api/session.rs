//! Who is asking: the session-cookie extractor (with the per-user rate limit), the session
//! cookie itself, and the `Origin` check for state-changing requests.

use super::AppState;
use crate::accounts::{self, TokenBucket, COOKIE};
use crate::error::ApiError;
use crate::model::UserRecord;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The origins this node answers as: its `Host`, over http or https.
pub fn origin_allowed(headers: &HeaderMap, origin: &str) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    origin == format!("http://{host}") || origin == format!("https://{host}")
}

/// Refuses state-changing requests from a foreign `Origin` (axum does not check it). Requests
/// without `Origin` come from non-browser clients and pass; browsers always send it on these.
pub(super) async fn check_origin(
    State(_state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let changes_state = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if changes_state {
        if let Some(origin) = request.headers().get(header::ORIGIN) {
            let ok = origin.to_str().is_ok_and(|origin| origin_allowed(request.headers(), origin));
            if !ok {
                return ApiError::forbidden("forbidden_origin", "cross-origin request refused")
                    .into_response();
            }
        }
    }
    next.run(request).await
}

/// The signed-in user, from the session cookie. Also applies the per-user request rate limit.
pub struct CurrentUser(pub UserRecord);

pub fn session_token(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|cookies| {
        cookies.split(';').find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then(|| value.to_string())
        })
    })
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = session_token(&parts.headers).ok_or_else(ApiError::unauthenticated)?;
        let user = accounts::session_user(state.store.as_ref(), &token)?
            .ok_or_else(ApiError::unauthenticated)?;
        let limits = &state.config.limits;
        let mut buckets = state.request_buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > 100_000 {
            buckets.clear();
        }
        let bucket = buckets.entry(user.id.clone()).or_insert_with(|| {
            TokenBucket::new(limits.requests_per_s_per_user, limits.requests_burst_per_user)
        });
        bucket.take().map_err(ApiError::rate_limited)?;
        Ok(Self(user))
    }
}

pub(super) fn session_cookie(state: &AppState, token: &str, max_age_s: u64) -> HeaderValue {
    let secure = if state.config.secure_cookies { "; Secure" } else { "" };
    let value =
        format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}");
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}
