//! Messages: send, history, one message (read, edit, delete), reactions, and the sync feed.

use super::chats::readable_chat;
use super::extract::{parse_chat, parse_message, JsonBody};
use super::media;
use super::session::CurrentUser;
use super::AppState;
use crate::engine::Command;
use crate::error::{ApiError, ApiResult};
use crate::model::{MessageView, UserRecord};
use crate::views;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use confab_protocol::MessageId;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    #[serde(default)]
    pub body: String,
    pub reply_to: Option<String>,
    pub client_id: Option<String>,
    #[serde(default)]
    pub attachments: Vec<media::AttachmentRef>,
}

pub(super) async fn send_message(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(chat_id): Path<String>,
    JsonBody(body): JsonBody<SendBody>,
) -> ApiResult<(StatusCode, Json<MessageView>)> {
    let chat = parse_chat(&chat_id)?;
    let reply_to = body
        .reply_to
        .as_deref()
        .map(|id| {
            id.parse()
                .map_err(|_| ApiError::bad_request("invalid_id", "reply_to is not a message id"))
        })
        .transpose()?;
    let attachments = media::resolve_attachments(&state, &user, body.attachments).await?;
    let (message, created) = state
        .engine
        .call(|reply| Command::Send {
            user: user.id,
            chat,
            body: body.body,
            reply_to,
            client_id: body.client_id,
            attachments,
            reply,
        })
        .await?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(message),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HistoryQuery {
    before: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

fn parse_cursor_id(text: Option<&str>, name: &str) -> ApiResult<Option<MessageId>> {
    text.map(|t| {
        t.parse()
            .map_err(|_| ApiError::bad_request("invalid_id", format!("{name} is not a message id")))
    })
    .transpose()
}

pub(super) async fn history(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(chat_id): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let (record, _) = readable_chat(&state, &user, &chat_id)?;
    let before = parse_cursor_id(query.before.as_deref(), "before")?;
    let after = parse_cursor_id(query.after.as_deref(), "after")?;
    let limit = query
        .limit
        .unwrap_or(50)
        .clamp(1, state.config.limits.history_page_max);
    let (messages, has_more) = views::history(
        state.store.as_ref(),
        &record.id,
        before.as_ref(),
        after.as_ref(),
        limit,
    )?;
    Ok(Json(
        serde_json::json!({ "messages": messages, "has_more": has_more }),
    ))
}

pub(super) async fn get_message(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((chat_id, message_id)): Path<(String, String)>,
) -> ApiResult<Json<MessageView>> {
    let (record, _) = readable_chat(&state, &user, &chat_id)?;
    let id = parse_message(&message_id)?;
    Ok(Json(
        views::message(state.store.as_ref(), &record.id, &id)?
            .ok_or_else(|| ApiError::not_found("message"))?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EditBody {
    body: String,
}

pub(super) async fn edit_message(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((chat_id, message_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<EditBody>,
) -> ApiResult<Json<MessageView>> {
    let chat = parse_chat(&chat_id)?;
    let message = parse_message(&message_id)?;
    Ok(Json(
        state
            .engine
            .call(|reply| Command::Edit {
                user: user.id,
                chat,
                message,
                body: body.body,
                reply,
            })
            .await?,
    ))
}

pub(super) async fn delete_message(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((chat_id, message_id)): Path<(String, String)>,
) -> ApiResult<Json<MessageView>> {
    let chat = parse_chat(&chat_id)?;
    let message = parse_message(&message_id)?;
    let node_admin = user.is_admin;
    Ok(Json(
        state
            .engine
            .call(|reply| Command::Delete {
                user: user.id,
                node_admin,
                chat,
                message,
                reply,
            })
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReactionBody {
    emoji: String,
}

async fn react(
    state: AppState,
    user: UserRecord,
    chat_id: &str,
    message_id: &str,
    emoji: String,
    on: bool,
) -> ApiResult<Json<MessageView>> {
    let chat = parse_chat(chat_id)?;
    let message = parse_message(message_id)?;
    let view = state
        .engine
        .call(|reply| Command::React {
            user: user.id,
            chat,
            message,
            emoji,
            on,
            reply,
        })
        .await?;
    Ok(Json(view))
}

pub(super) async fn add_reaction(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((chat_id, message_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<ReactionBody>,
) -> ApiResult<Json<MessageView>> {
    react(state, user, &chat_id, &message_id, body.emoji, true).await
}

pub(super) async fn remove_reaction(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((chat_id, message_id, emoji)): Path<(String, String, String)>,
) -> ApiResult<Json<MessageView>> {
    react(state, user, &chat_id, &message_id, emoji, false).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SyncQuery {
    after: Option<String>,
    limit: Option<usize>,
}

pub(super) async fn sync(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(query): Query<SyncQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let after = parse_cursor_id(query.after.as_deref(), "after")?;
    let limit = query
        .limit
        .unwrap_or(100)
        .clamp(1, state.config.limits.history_page_max);
    let (messages, has_more) = views::sync(state.store.as_ref(), &user.id, after.as_ref(), limit)?;
    Ok(Json(
        serde_json::json!({ "messages": messages, "has_more": has_more }),
    ))
}
