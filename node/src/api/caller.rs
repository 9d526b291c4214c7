//! The signed-in caller of a handler, and how a handler asks the engine on its behalf.
//!
//! A handler takes a [`Caller`] (the state and the user, authenticated and rate-limited by
//! [`CurrentUser`]), builds one intent with [`Caller::ask`], and says what the engine's
//! answer becomes: `Json`, [`user_view`], [`created`], [`created_or_ok`] or
//! [`no_content`]. Engine errors travel with `?` (anything `Into<ApiError>`).

use super::session::CurrentUser;
use super::AppState;
use crate::engine::{Command, Reply};
use crate::error::{ApiError, ApiResult};
use crate::model::{UserRecord, UserView};
use axum::extract::FromRequestParts;
use axum::http::{request::Parts, StatusCode};
use axum::Json;
use confab_protocol::UserId;

/// The state and the signed-in user (see [`CurrentUser`]).
pub struct Caller {
    pub state: AppState,
    pub user: UserRecord,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let CurrentUser(user) = CurrentUser::from_request_parts(parts, state).await?;
        Ok(Self { state: state.clone(), user })
    }
}

impl Caller {
    /// Sends the intent `make` builds for this user and answers `respond` of its durable
    /// outcome.
    pub async fn ask<T, R>(
        &self,
        respond: impl FnOnce(T) -> R,
        make: impl FnOnce(UserId, Reply<T>) -> Command,
    ) -> ApiResult<R> {
        let user = self.user.id.clone();
        let outcome = self.state.engine.call(|reply| make(user, reply)).await?;
        Ok(respond(outcome))
    }
}

/// A user record as its public view.
pub fn user_view(user: UserRecord) -> Json<UserView> {
    Json(UserView::from(&user))
}

/// `201 Created` with the new thing.
pub fn created<T>(value: T) -> (StatusCode, Json<T>) {
    (StatusCode::CREATED, Json(value))
}

/// `201 Created` when the engine made something new, else `200 OK` with what already was.
pub fn created_or_ok<T>((value, created): (T, bool)) -> (StatusCode, Json<T>) {
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    (status, Json(value))
}

/// `204 No Content`, whatever the engine answered.
pub fn no_content<T>(_: T) -> StatusCode {
    StatusCode::NO_CONTENT
}
