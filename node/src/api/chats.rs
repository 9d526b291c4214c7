//! Chats: channels (create, list), DMs, the chat list, one chat (read, rename, join, leave),
//! and the user's own state in a chat (read marker, notification level).

use super::extract::{parse_chat, parse_message, parse_user, JsonBody};
use super::session::CurrentUser;
use super::AppState;
use crate::engine::Command;
use crate::error::{ApiError, ApiResult};
use crate::model::{ChatListEntry, ChatView, UserRecord};
use crate::views;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use confab_protocol::control::{Role, Visibility};
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
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    JsonBody(body): JsonBody<CreateChannelBody>,
) -> ApiResult<(StatusCode, Json<ChatView>)> {
    let chat = state
        .engine
        .call(|reply| Command::CreateChannel {
            creator: user.id,
            name: body.name,
            topic: body.topic,
            visibility: body.visibility,
            reply,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(chat)))
}

pub(super) async fn list_channels(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
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
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    JsonBody(body): JsonBody<DmBody>,
) -> ApiResult<(StatusCode, Json<ChatView>)> {
    if body.user_ids.len() > state.config.limits.dm_members_max {
        return Err(ApiError::bad_request(
            "invalid_body",
            "too many people for a DM",
        ));
    }
    let others = body
        .user_ids
        .iter()
        .map(|id| parse_user(&state, id))
        .collect::<ApiResult<Vec<_>>>()?;
    let (chat, created) = state
        .engine
        .call(|reply| Command::OpenDm {
            creator: user.id,
            others,
            reply,
        })
        .await?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(chat),
    ))
}

pub(super) async fn chat_list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<Json<Vec<ChatListEntry>>> {
    Ok(Json(views::chat_list(
        state.store.as_ref(),
        &user.id,
        state.config.limits.unread_count_max,
    )?))
}

/// The chat, if the user may read it: a member, or anyone for a public channel.
pub(super) fn readable_chat(
    state: &AppState,
    user: &UserRecord,
    chat_id: &str,
) -> ApiResult<(crate::model::ChatRecord, Option<Role>)> {
    let chat = parse_chat(chat_id)?;
    let store = state.store.as_ref();
    let record = views::chat(store, &chat)?.ok_or_else(|| ApiError::not_found("chat"))?;
    let role = views::role(store, &chat, &user.id)?;
    if role.is_none() && record.visibility != Visibility::Public {
        return Err(ApiError::not_a_member());
    }
    Ok((record, role))
}

pub(super) async fn get_chat(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(chat_id): Path<String>,
) -> ApiResult<Json<ChatView>> {
    let (record, role) = readable_chat(&state, &user, &chat_id)?;
    Ok(Json(ChatView::of(&record, role)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PatchChatBody {
    name: Option<String>,
    topic: Option<String>,
}

pub(super) async fn patch_chat(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(chat_id): Path<String>,
    JsonBody(body): JsonBody<PatchChatBody>,
) -> ApiResult<Json<ChatView>> {
    let chat = parse_chat(&chat_id)?;
    let view = state
        .engine
        .call(|reply| Command::UpdateChat {
            user: user.id,
            chat,
            name: body.name,
            topic: body.topic,
            reply,
        })
        .await?;
    Ok(Json(view))
}

pub(super) async fn join_chat(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(chat_id): Path<String>,
) -> ApiResult<Json<ChatView>> {
    let chat = parse_chat(&chat_id)?;
    Ok(Json(
        state
            .engine
            .call(|reply| Command::Join {
                user: user.id,
                chat,
                reply,
            })
            .await?,
    ))
}

pub(super) async fn leave_chat(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(chat_id): Path<String>,
) -> ApiResult<StatusCode> {
    let chat = parse_chat(&chat_id)?;
    state
        .engine
        .call(|reply| Command::Leave {
            user: user.id,
            chat,
            reply,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReadBody {
    message_id: String,
}

pub(super) async fn mark_read(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(chat_id): Path<String>,
    JsonBody(body): JsonBody<ReadBody>,
) -> ApiResult<Json<ChatListEntry>> {
    let chat = parse_chat(&chat_id)?;
    let message = parse_message(&body.message_id)?;
    let id = user.id.clone();
    state
        .engine
        .call(|reply| Command::MarkRead {
            user: id,
            chat,
            message,
            reply,
        })
        .await?;
    let record =
        views::chat(state.store.as_ref(), &chat)?.ok_or_else(|| ApiError::not_found("chat"))?;
    Ok(Json(views::chat_list_entry(
        state.store.as_ref(),
        &user.id,
        &record,
        state.config.limits.unread_count_max,
    )?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NotificationsBody {
    level: crate::model::NotificationLevel,
}

pub(super) async fn set_notifications(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(chat_id): Path<String>,
    JsonBody(body): JsonBody<NotificationsBody>,
) -> ApiResult<Json<ChatListEntry>> {
    let chat = parse_chat(&chat_id)?;
    let id = user.id.clone();
    state
        .engine
        .call(|reply| Command::SetNotificationLevel {
            user: id,
            chat,
            level: body.level,
            reply,
        })
        .await?;
    let record =
        views::chat(state.store.as_ref(), &chat)?.ok_or_else(|| ApiError::not_found("chat"))?;
    Ok(Json(views::chat_list_entry(
        state.store.as_ref(),
        &user.id,
        &record,
        state.config.limits.unread_count_max,
    )?))
}
