//! Accounts: registration, sign-in (with its failure limits) and sign-out.

use super::extract::{ClientAddress, JsonBody};
use super::session::{session_cookie, session_token};
use super::AppState;
use crate::accounts;
use crate::engine::Command;
use crate::error::{ApiError, ApiResult};
use crate::model::{UserRecord, UserView};
use crate::views;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RegisterBody {
    username: String,
    password: String,
    display_name: Option<String>,
}

pub(super) async fn register(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<RegisterBody>,
) -> ApiResult<Response> {
    confab_protocol::ids::validate_localpart(&body.username)
        .map_err(|e| ApiError::bad_request("invalid_username", e.to_string()))?;
    accounts::check_password_rules(&body.password)
        .map_err(|e| ApiError::bad_request("invalid_password", e))?;
    let password = body.password;
    let permit = state.hashing.acquire().await.map_err(ApiError::internal)?;
    let hash = tokio::task::spawn_blocking(move || accounts::hash_password(&password))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    drop(permit);
    let username = body.username;
    let display_name = body.display_name.unwrap_or_default();
    let user = state
        .engine
        .call(|reply| Command::CreateUser {
            username,
            password_hash: hash,
            display_name,
            force_admin: None,
            bypass_registration: false,
            reply,
        })
        .await?;
    signed_in(&state, &user, StatusCode::CREATED).await
}

async fn signed_in(state: &AppState, user: &UserRecord, status: StatusCode) -> ApiResult<Response> {
    let lifetime_s = state.config.limits.session_lifetime_s;
    let token = accounts::create_session(state.store.as_ref(), user, lifetime_s).await?;
    let mut response = (status, Json(UserView::from(user))).into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie(state, &token, lifetime_s));
    Ok(response)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoginBody {
    username: String,
    password: String,
}

pub(super) async fn login(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    JsonBody(body): JsonBody<LoginBody>,
) -> ApiResult<Response> {
    let account_key = body.username.to_lowercase();
    state.login_by_address.check(&address).map_err(ApiError::rate_limited)?;
    // A locked account still lets its owner in from an address that has not failed, so that
    // a guesser elsewhere cannot lock the owner out; each such address gets one try.
    let account_locked = state.login_by_account.check(&account_key).err();
    if let Some(retry_after_s) = account_locked {
        if state.login_by_address.has_failed(&address) {
            return Err(ApiError::rate_limited(retry_after_s));
        }
    }
    let user = views::user(state.store.as_ref(), &body.username)?;
    // Verify even for unknown users so timing does not reveal which names exist.
    let hash = user.as_ref().map(|u| u.password_hash.clone()).unwrap_or_else(|| {
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3Q0g7Qy6Yh3bKfW5p6dGx1qR9nG0Yq2mHcY8m0s0c0Y".into()
    });
    let password = body.password;
    let permit = state.hashing.acquire().await.map_err(ApiError::internal)?;
    let valid = tokio::task::spawn_blocking(move || accounts::verify_password(&password, &hash))
        .await
        .map_err(ApiError::internal)?;
    drop(permit);
    let Some(user) = user.filter(|_| valid) else {
        state.login_by_account.record_failure(&account_key);
        state.login_by_address.record_failure(&address);
        tracing::info!(username = %body.username, %address, "login failed");
        if let Some(retry_after_s) = account_locked {
            return Err(ApiError::rate_limited(retry_after_s));
        }
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "wrong username or password",
        ));
    };
    if user.disabled {
        return Err(ApiError::forbidden("user_disabled", "this account is disabled"));
    }
    state.login_by_account.clear(&account_key);
    signed_in(&state, &user, StatusCode::OK).await
}

pub(super) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if let Some(token) = session_token(&headers) {
        accounts::end_session(state.store.as_ref(), &token).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie(&state, "", 0));
    Ok(response)
}
