//! A chat's members: list, add, change a role, remove.

use super::caller::{created, no_content, Caller};
use super::chats::readable_chat;
use super::extract::{parse_chat, parse_user, JsonBody};
use crate::engine::Command;
use crate::error::ApiResult;
use crate::model::MemberView;
use crate::views;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::Json;
use confab_protocol::control::Role;
use serde::Deserialize;

pub(super) async fn list_members(
    caller: Caller,
    Path(chat_id): Path<String>,
) -> ApiResult<Json<Vec<MemberView>>> {
    let (record, _) = readable_chat(&caller, &chat_id)?;
    Ok(Json(views::members(caller.state.store.as_ref(), &record.id)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AddMemberBody {
    user_id: String,
    role: Option<Role>,
}

pub(super) async fn add_member(
    caller: Caller,
    Path(chat_id): Path<String>,
    JsonBody(body): JsonBody<AddMemberBody>,
) -> ApiResult<(StatusCode, Json<MemberView>)> {
    let chat = parse_chat(&chat_id)?;
    let target = parse_user(&caller.state, &body.user_id)?;
    let role = body.role.unwrap_or(Role::Member);
    caller.ask(created, |by, reply| Command::AddMember { by, chat, target, role, reply }).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RoleBody {
    role: Role,
}

pub(super) async fn set_role(
    caller: Caller,
    Path((chat_id, user_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<RoleBody>,
) -> ApiResult<Json<MemberView>> {
    let chat = parse_chat(&chat_id)?;
    let target = parse_user(&caller.state, &user_id)?;
    caller
        .ask(Json, |by, reply| Command::SetRole { by, chat, target, role: body.role, reply })
        .await
}

pub(super) async fn remove_member(
    caller: Caller,
    Path((chat_id, user_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let chat = parse_chat(&chat_id)?;
    let target = parse_user(&caller.state, &user_id)?;
    caller.ask(no_content, |by, reply| Command::RemoveMember { by, chat, target, reply }).await
}
