//! People: the signed-in user's profile and do-not-disturb, the user directory, and presence.

use super::caller::{user_view, Caller};
use super::extract::{parse_user, JsonBody};
use crate::engine::{Command, ProfilePatch};
use crate::error::{ApiError, ApiResult};
use crate::model::UserView;
use crate::views;
use axum::extract::Path;
use axum::Json;
use serde::Deserialize;

pub(super) async fn me(caller: Caller) -> Json<UserView> {
    user_view(caller.user)
}

pub(super) async fn patch_me(
    caller: Caller,
    JsonBody(patch): JsonBody<ProfilePatch>,
) -> ApiResult<Json<UserView>> {
    caller.ask(user_view, |user, reply| Command::UpdateProfile { user, patch, reply }).await
}

pub(super) async fn list_users(caller: Caller) -> ApiResult<Json<Vec<UserView>>> {
    Ok(Json(views::users(caller.state.store.as_ref())?.iter().map(UserView::from).collect()))
}

pub(super) async fn get_user(
    Caller { state, .. }: Caller,
    Path(user_id): Path<String>,
) -> ApiResult<Json<UserView>> {
    let id = parse_user(&state, &user_id)?;
    if id.org_name() != state.config.org_name {
        return Err(ApiError::not_found("user"));
    }
    let user = views::user(state.store.as_ref(), id.localpart())?
        .ok_or_else(|| ApiError::not_found("user"))?;
    Ok(user_view(user))
}

/// Presence of everyone who shares a chat with the user (and the user).
pub(super) async fn presence(
    Caller { state, user }: Caller,
) -> ApiResult<Json<Vec<crate::presence::PresenceView>>> {
    let store = state.store.as_ref();
    let mut people = std::collections::BTreeSet::new();
    people.insert(user.id.clone());
    for chat in views::user_chats(store, &user.id)? {
        for member in views::members(store, &chat)? {
            people.insert(member.user_id);
        }
    }
    Ok(Json(people.iter().map(|person| state.presence.view(person)).collect()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DndBody {
    enabled: bool,
    /// When do-not-disturb ends by itself (ms since the epoch); absent: until turned off.
    until_ms: Option<u64>,
}

pub(super) async fn set_dnd(
    caller: Caller,
    JsonBody(body): JsonBody<DndBody>,
) -> ApiResult<Json<UserView>> {
    let until_ms = body.enabled.then(|| body.until_ms.unwrap_or(u64::MAX));
    caller.ask(user_view, |user, reply| Command::SetDoNotDisturb { user, until_ms, reply }).await
}
