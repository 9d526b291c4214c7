//! A chat's members: list, add, change a role, remove.

use super::chats::readable_chat;
use super::extract::{parse_chat, parse_user, JsonBody};
use super::session::CurrentUser;
use super::AppState;
use crate::engine::Command;
use crate::error::ApiResult;
use crate::model::MemberView;
use crate::views;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use confab_protocol::control::Role;
use serde::Deserialize;

pub(super) async fn list_members(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(chat_id): Path<String>,
) -> ApiResult<Json<Vec<MemberView>>> {
    let (record, _) = readable_chat(&state, &user, &chat_id)?;
    Ok(Json(views::members(state.store.as_ref(), &record.id)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AddMemberBody {
    user_id: String,
    role: Option<Role>,
}

pub(super) async fn add_member(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(chat_id): Path<String>,
    JsonBody(body): JsonBody<AddMemberBody>,
) -> ApiResult<(StatusCode, Json<MemberView>)> {
    let chat = parse_chat(&chat_id)?;
    let target = parse_user(&state, &body.user_id)?;
    let role = body.role.unwrap_or(Role::Member);
    let member = state
        .engine
        .call(|reply| Command::AddMember {
            by: user.id,
            chat,
            target,
            role,
            reply,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(member)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RoleBody {
    role: Role,
}

pub(super) async fn set_role(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((chat_id, user_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<RoleBody>,
) -> ApiResult<Json<MemberView>> {
    let chat = parse_chat(&chat_id)?;
    let target = parse_user(&state, &user_id)?;
    Ok(Json(
        state
            .engine
            .call(|reply| Command::SetRole {
                by: user.id,
                chat,
                target,
                role: body.role,
                reply,
            })
            .await?,
    ))
}

pub(super) async fn remove_member(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((chat_id, user_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let chat = parse_chat(&chat_id)?;
    let target = parse_user(&state, &user_id)?;
    state
        .engine
        .call(|reply| Command::RemoveMember {
            by: user.id,
            chat,
            target,
            reply,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
