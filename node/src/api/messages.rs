//! Messages: send, history, one message (read, edit, delete), reactions, and the sync feed.

use super::caller::{created_or_ok, Caller};
use super::chats::readable_chat;
use super::extract::{parse_chat, parse_message, JsonBody};
use super::media;
use crate::engine::Command;
use crate::error::{ApiError, ApiResult};
use crate::model::MessageView;
use crate::views;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::Json;
use confab_protocol::MessageId;
use serde::Deserialize;
use std::convert::identity;

/// A message to send: the body of `POST /chats/{id}/messages`, and what the WebSocket's `send`
/// frame carries.
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

/// The one send path, for HTTP and the WebSocket: checks the chat and `reply_to` ids, resolves
/// the attachments, and asks the engine. Answers the message and whether it is new (`false`:
/// a retry with a `client_id` already sent).
pub(super) async fn send(
    caller: &Caller,
    chat_id: &str,
    body: SendBody,
) -> ApiResult<(MessageView, bool)> {
    let chat = parse_chat(chat_id)?;
    let reply_to = parse_cursor_id(body.reply_to.as_deref(), "reply_to")?;
    let attachments =
        media::resolve_attachments(&caller.state, &caller.user, body.attachments).await?;
    caller
        .ask(identity, |user, reply| Command::Send {
            user,
            chat,
            body: body.body,
            reply_to,
            client_id: body.client_id,
            attachments,
            reply,
        })
        .await
}

pub(super) async fn send_message(
    caller: Caller,
    Path(chat_id): Path<String>,
    JsonBody(body): JsonBody<SendBody>,
) -> ApiResult<(StatusCode, Json<MessageView>)> {
    send(&caller, &chat_id, body).await.map(created_or_ok)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HistoryQuery {
    before: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

/// An optional message id from the client; `name` says which one in the error.
fn parse_cursor_id(text: Option<&str>, name: &str) -> ApiResult<Option<MessageId>> {
    text.map(|t| {
        t.parse()
            .map_err(|_| ApiError::bad_request("invalid_id", format!("{name} is not a message id")))
    })
    .transpose()
}

pub(super) async fn history(
    caller: Caller,
    Path(chat_id): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let (record, _) = readable_chat(&caller, &chat_id)?;
    let before = parse_cursor_id(query.before.as_deref(), "before")?;
    let after = parse_cursor_id(query.after.as_deref(), "after")?;
    let state = &caller.state;
    let limit = query.limit.unwrap_or(50).clamp(1, state.config.limits.history_page_max);
    let (messages, has_more) =
        views::history(state.store.as_ref(), &record.id, before.as_ref(), after.as_ref(), limit)?;
    Ok(page(messages, has_more))
}

/// A page of messages, and whether there are more.
fn page(messages: Vec<MessageView>, has_more: bool) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "messages": messages, "has_more": has_more }))
}

pub(super) async fn get_message(
    caller: Caller,
    Path((chat_id, message_id)): Path<(String, String)>,
) -> ApiResult<Json<MessageView>> {
    let (record, _) = readable_chat(&caller, &chat_id)?;
    let id = parse_message(&message_id)?;
    Ok(Json(
        views::message(caller.state.store.as_ref(), &record.id, &id)?
            .ok_or_else(|| ApiError::not_found("message"))?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EditBody {
    body: String,
}

pub(super) async fn edit_message(
    caller: Caller,
    Path((chat_id, message_id)): Path<(String, String)>,
    JsonBody(EditBody { body }): JsonBody<EditBody>,
) -> ApiResult<Json<MessageView>> {
    let (chat, message) = (parse_chat(&chat_id)?, parse_message(&message_id)?);
    caller.ask(Json, |user, reply| Command::Edit { user, chat, message, body, reply }).await
}

pub(super) async fn delete_message(
    caller: Caller,
    Path((chat_id, message_id)): Path<(String, String)>,
) -> ApiResult<Json<MessageView>> {
    let (chat, message) = (parse_chat(&chat_id)?, parse_message(&message_id)?);
    let node_admin = caller.user.is_admin;
    caller.ask(Json, |user, reply| Command::Delete { user, node_admin, chat, message, reply }).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReactionBody {
    emoji: String,
}

async fn react(
    caller: Caller,
    (chat_id, message_id): (String, String),
    emoji: String,
    on: bool,
) -> ApiResult<Json<MessageView>> {
    let (chat, message) = (parse_chat(&chat_id)?, parse_message(&message_id)?);
    caller.ask(Json, |user, reply| Command::React { user, chat, message, emoji, on, reply }).await
}

pub(super) async fn add_reaction(
    caller: Caller,
    Path(ids): Path<(String, String)>,
    JsonBody(body): JsonBody<ReactionBody>,
) -> ApiResult<Json<MessageView>> {
    react(caller, ids, body.emoji, true).await
}

pub(super) async fn remove_reaction(
    caller: Caller,
    Path((chat_id, message_id, emoji)): Path<(String, String, String)>,
) -> ApiResult<Json<MessageView>> {
    react(caller, (chat_id, message_id), emoji, false).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SyncQuery {
    after: Option<String>,
    limit: Option<usize>,
}

pub(super) async fn sync(
    Caller { state, user }: Caller,
    Query(query): Query<SyncQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let after = parse_cursor_id(query.after.as_deref(), "after")?;
    let limit = query.limit.unwrap_or(100).clamp(1, state.config.limits.history_page_max);
    let (messages, has_more) = views::sync(state.store.as_ref(), &user.id, after.as_ref(), limit)?;
    Ok(page(messages, has_more))
}
