//! People: the signed-in user's profile and do-not-disturb, the user directory, and presence.

use super::extract::{parse_user, JsonBody};
use super::session::CurrentUser;
use super::AppState;
use crate::engine::{Command, ProfilePatch};
use crate::error::{ApiError, ApiResult};
use crate::model::UserView;
use crate::views;
use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;

pub(super) async fn me(CurrentUser(user): CurrentUser) -> Json<UserView> {
    Json(UserView::from(&user))
}

pub(super) async fn patch_me(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    JsonBody(patch): JsonBody<ProfilePatch>,
) -> ApiResult<Json<UserView>> {
    let user = state
        .engine
        .call(|reply| Command::UpdateProfile {
            user: user.id,
            patch,
            reply,
        })
        .await?;
    Ok(Json(UserView::from(&user)))
}

pub(super) async fn list_users(
    State(state): State<AppState>,
    CurrentUser(_): CurrentUser,
) -> ApiResult<Json<Vec<UserView>>> {
    Ok(Json(
        views::users(state.store.as_ref())?
            .iter()
            .map(UserView::from)
            .collect(),
    ))
}

pub(super) async fn get_user(
    State(state): State<AppState>,
    CurrentUser(_): CurrentUser,
    Path(user_id): Path<String>,
) -> ApiResult<Json<UserView>> {
    let id = parse_user(&state, &user_id)?;
    if id.org_name() != state.config.org_name {
        return Err(ApiError::not_found("user"));
    }
    let user = views::user(state.store.as_ref(), id.localpart())?
        .ok_or_else(|| ApiError::not_found("user"))?;
    Ok(Json(UserView::from(&user)))
}

/// Presence of everyone who shares a chat with the user (and the user).
pub(super) async fn presence(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<Json<Vec<crate::presence::PresenceView>>> {
    let store = state.store.as_ref();
    let mut people = std::collections::BTreeSet::new();
    people.insert(user.id.clone());
    for chat in views::user_chats(store, &user.id)? {
        for member in views::members(store, &chat)? {
            people.insert(member.user_id);
        }
    }
    Ok(Json(
        people
            .iter()
            .map(|person| state.presence.view(person))
            .collect(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DndBody {
    enabled: bool,
    /// When do-not-disturb ends by itself (ms since the epoch); absent: until turned off.
    until_ms: Option<u64>,
}

pub(super) async fn set_dnd(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    JsonBody(body): JsonBody<DndBody>,
) -> ApiResult<Json<UserView>> {
    let until_ms = body.enabled.then(|| body.until_ms.unwrap_or(u64::MAX));
    let user = state
        .engine
        .call(|reply| Command::SetDoNotDisturb {
            user: user.id,
            until_ms,
            reply,
        })
        .await?;
    Ok(Json(UserView::from(&user)))
}
