//! Chats: channels (create, list), DMs, the chat list, one chat (read, rename, join, leave),
//! and the user's own state in a chat (read marker, notification level).

use super::caller::{created, created_or_ok, no_content, Caller};
use super::extract::{parse_chat, parse_message, parse_user, JsonBody};
use crate::engine::Command;
use crate::error::{ApiError, ApiResult};
use crate::model::{ChatListEntry, ChatView};
use crate::views;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::Json;
use confab_protocol::control::{Role, Visibility};
use confab_protocol::ChatId;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateChannelBody {
    name: String,
    #[serde(default)]
    topic: String,
    visibility: Visibility,
}

pub(super) async fn create_channel(
    caller: Caller,
    JsonBody(body): JsonBody<CreateChannelBody>,
) -> ApiResult<(StatusCode, Json<ChatView>)> {
    caller
        .ask(created, |creator, reply| Command::CreateChannel {
            creator,
            name: body.name,
            topic: body.topic,
            visibility: body.visibility,
            reply,
        })
        .await
}

pub(super) async fn list_channels(
    Caller { state, user }: Caller,
) -> ApiResult<Json<Vec<ChatView>>> {
    let store = state.store.as_ref();
    let mut channels = Vec::new();
    for chat in views::all_chats(store)? {
        if chat.kind != confab_protocol::control::ChatKind::Channel {
            continue;
        }
        let view = views::chat_view(store, &chat, &user.id)?;
        if chat.visibility == Visibility::Public || view.joined {
            channels.push(view);
        }
    }
    channels.sort_by_key(|chat| chat.name.to_lowercase());
    Ok(Json(channels))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DmBody {
    user_ids: Vec<String>,
}

pub(super) async fn open_dm(
    caller: Caller,
    JsonBody(body): JsonBody<DmBody>,
) -> ApiResult<(StatusCode, Json<ChatView>)> {
    if body.user_ids.len() > caller.state.config.limits.dm_members_max {
        return Err(ApiError::bad_request("invalid_body", "too many people for a DM"));
    }
    let others = body
        .user_ids
        .iter()
        .map(|id| parse_user(&caller.state, id))
        .collect::<ApiResult<Vec<_>>>()?;
    caller.ask(created_or_ok, |creator, reply| Command::OpenDm { creator, others, reply }).await
}

pub(super) async fn chat_list(
    Caller { state, user }: Caller,
) -> ApiResult<Json<Vec<ChatListEntry>>> {
    Ok(Json(views::chat_list(
        state.store.as_ref(),
        &user.id,
        state.config.limits.unread_count_max,
    )?))
}

/// The chat, if the caller may read it: a member, or anyone for a public channel.
pub(super) fn readable_chat(
    caller: &Caller,
    chat_id: &str,
) -> ApiResult<(crate::model::ChatRecord, Option<Role>)> {
    let chat = parse_chat(chat_id)?;
    let store = caller.state.store.as_ref();
    let record = views::chat(store, &chat)?.ok_or_else(|| ApiError::not_found("chat"))?;
    let role = views::role(store, &chat, &caller.user.id)?;
    if role.is_none() && record.visibility != Visibility::Public {
        return Err(ApiError::not_a_member());
    }
    Ok((record, role))
}

pub(super) async fn get_chat(
    caller: Caller,
    Path(chat_id): Path<String>,
) -> ApiResult<Json<ChatView>> {
    let (record, role) = readable_chat(&caller, &chat_id)?;
    Ok(Json(ChatView::of(&record, role)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PatchChatBody {
    name: Option<String>,
    topic: Option<String>,
}

pub(super) async fn patch_chat(
    caller: Caller,
    Path(chat_id): Path<String>,
    JsonBody(body): JsonBody<PatchChatBody>,
) -> ApiResult<Json<ChatView>> {
    let chat = parse_chat(&chat_id)?;
    caller
        .ask(Json, |user, reply| Command::UpdateChat {
            user,
            chat,
            name: body.name,
            topic: body.topic,
            reply,
        })
        .await
}

pub(super) async fn join_chat(
    caller: Caller,
    Path(chat_id): Path<String>,
) -> ApiResult<Json<ChatView>> {
    let chat = parse_chat(&chat_id)?;
    caller.ask(Json, |user, reply| Command::Join { user, chat, reply }).await
}

pub(super) async fn leave_chat(
    caller: Caller,
    Path(chat_id): Path<String>,
) -> ApiResult<StatusCode> {
    let chat = parse_chat(&chat_id)?;
    caller.ask(no_content, |user, reply| Command::Leave { user, chat, reply }).await
}

/// The caller's chat-list entry for a chat, after a change to their own state in it.
fn list_entry(caller: &Caller, chat: &ChatId) -> ApiResult<Json<ChatListEntry>> {
    let store = caller.state.store.as_ref();
    let record = views::chat(store, chat)?.ok_or_else(|| ApiError::not_found("chat"))?;
    Ok(Json(views::chat_list_entry(
        store,
        &caller.user.id,
        &record,
        caller.state.config.limits.unread_count_max,
    )?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReadBody {
    message_id: String,
}

pub(super) async fn mark_read(
    caller: Caller,
    Path(chat_id): Path<String>,
    JsonBody(body): JsonBody<ReadBody>,
) -> ApiResult<Json<ChatListEntry>> {
    let chat = parse_chat(&chat_id)?;
    let message = parse_message(&body.message_id)?;
    caller.ask(drop, |user, reply| Command::MarkRead { user, chat, message, reply }).await?;
    list_entry(&caller, &chat)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NotificationsBody {
    level: crate::model::NotificationLevel,
}

pub(super) async fn set_notifications(
    caller: Caller,
    Path(chat_id): Path<String>,
    JsonBody(body): JsonBody<NotificationsBody>,
) -> ApiResult<Json<ChatListEntry>> {
    let chat = parse_chat(&chat_id)?;
    caller
        .ask(drop, |user, reply| Command::SetNotificationLevel {
            user,
            chat,
            level: body.level,
            reply,
        })
        .await?;
    list_entry(&caller, &chat)
}
