//! The client API (`spec/client-api.md`): `app(state) -> Router`, limits, and the handlers.
//! Handlers read views directly and send every write to the engine, which answers once it is
//! durable.

mod admin;
mod auth;
mod devices;
mod extract;
mod federation;
mod media;
mod search;
mod session;
mod state;
mod users;
mod ws;

pub use extract::{ClientAddress, JsonBody};
pub use session::{origin_allowed, session_token, CurrentUser};
pub use state::{AppState, SeenFilter};

use crate::engine::Command;
use crate::error::{ApiError, ApiResult};
use crate::model::{ChatListEntry, ChatView, MemberView, MessageView, UserRecord};
use crate::views;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::Response;
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use confab_protocol::control::{Role, Visibility};
use confab_protocol::MessageId;
use extract::{parse_chat, parse_message, parse_user};
use serde::Deserialize;
use session::check_origin;

/// The whole HTTP application: the API under `/api/v1` and the embedded web client at `/`.
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route("/auth/register", post(auth::register))
        .route("/auth/login", post(auth::login))
        .route("/auth/logout", post(auth::logout))
        .route("/me", get(users::me).patch(users::patch_me))
        .route("/users", get(users::list_users))
        .route("/users/{user_id}", get(users::get_user))
        .route(
            "/admin/settings",
            get(admin::get_settings).patch(admin::patch_settings),
        )
        .route("/admin/users/{user_id}/disable", post(admin::disable_user))
        .route("/admin/users/{user_id}/enable", post(admin::enable_user))
        .route("/admin/federation", get(federation::info))
        .route("/admin/federation/invites", post(federation::invite))
        .route("/admin/peers", get(federation::list).post(federation::add))
        .route(
            "/admin/peers/{org_id}",
            axum::routing::delete(federation::remove),
        )
        .route("/admin/peers/{org_id}/unblock", post(federation::unblock))
        .route("/channels", get(list_channels).post(create_channel))
        .route("/dms", post(open_dm))
        .route("/chats", get(chat_list))
        .route("/chats/{chat_id}", get(get_chat).patch(patch_chat))
        .route("/chats/{chat_id}/join", post(join_chat))
        .route("/chats/{chat_id}/leave", post(leave_chat))
        .route(
            "/chats/{chat_id}/members",
            get(list_members).post(add_member),
        )
        .route(
            "/chats/{chat_id}/members/{user_id}",
            patch(set_role).delete(remove_member),
        )
        .route("/chats/{chat_id}/messages", get(history).post(send_message))
        .route(
            "/chats/{chat_id}/messages/{message_id}",
            get(get_message).patch(edit_message).delete(delete_message),
        )
        .route(
            "/chats/{chat_id}/messages/{message_id}/reactions",
            post(add_reaction),
        )
        .route(
            "/chats/{chat_id}/messages/{message_id}/reactions/{emoji}",
            axum::routing::delete(remove_reaction),
        )
        .route("/chats/{chat_id}/read", post(mark_read))
        .route("/sync", get(sync))
        .route("/presence", get(users::presence))
        .route("/me/dnd", axum::routing::put(users::set_dnd))
        .route(
            "/chats/{chat_id}/notifications",
            axum::routing::put(set_notifications),
        )
        .route("/media", post(media::upload))
        .route("/media/{id}", get(media::download))
        .route("/search", get(search::search))
        .route("/ws", get(ws::upgrade))
        .route("/push", get(devices::push_settings))
        .route("/devices", get(devices::list).post(devices::register))
        .route(
            "/devices/{device_id}",
            axum::routing::delete(devices::revoke),
        )
        .route(
            "/devices/{device_id}/relay",
            axum::routing::put(devices::set_relay),
        )
        .route("/users/{user_id}/devices", get(devices::signed_list))
        .fallback(|| async { ApiError::not_found("endpoint") });
    Router::new()
        .nest("/api/v1", api)
        .merge(crate::web::routes(&state.config.push))
        .layer(middleware::from_fn_with_state(state.clone(), check_origin))
        .layer(middleware::map_response(security_headers))
        .layer(DefaultBodyLimit::max(
            state.config.limits.request_body_bytes_max,
        ))
        .with_state(state)
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

// ----- chats -----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateChannelBody {
    name: String,
    #[serde(default)]
    topic: String,
    visibility: Visibility,
}

async fn create_channel(
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

async fn list_channels(
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
struct DmBody {
    user_ids: Vec<String>,
}

async fn open_dm(
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

async fn chat_list(
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
fn readable_chat(
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

async fn get_chat(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(chat_id): Path<String>,
) -> ApiResult<Json<ChatView>> {
    let (record, role) = readable_chat(&state, &user, &chat_id)?;
    Ok(Json(ChatView::of(&record, role)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchChatBody {
    name: Option<String>,
    topic: Option<String>,
}

async fn patch_chat(
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

async fn join_chat(
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

async fn leave_chat(
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

async fn list_members(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(chat_id): Path<String>,
) -> ApiResult<Json<Vec<MemberView>>> {
    let (record, _) = readable_chat(&state, &user, &chat_id)?;
    Ok(Json(views::members(state.store.as_ref(), &record.id)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddMemberBody {
    user_id: String,
    role: Option<Role>,
}

async fn add_member(
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
struct RoleBody {
    role: Role,
}

async fn set_role(
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

async fn remove_member(
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

// ----- messages -----

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

async fn send_message(
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
struct HistoryQuery {
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

async fn history(
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

async fn get_message(
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
struct EditBody {
    body: String,
}

async fn edit_message(
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

async fn delete_message(
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
struct ReactionBody {
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

async fn add_reaction(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((chat_id, message_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<ReactionBody>,
) -> ApiResult<Json<MessageView>> {
    react(state, user, &chat_id, &message_id, body.emoji, true).await
}

async fn remove_reaction(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((chat_id, message_id, emoji)): Path<(String, String, String)>,
) -> ApiResult<Json<MessageView>> {
    react(state, user, &chat_id, &message_id, emoji, false).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadBody {
    message_id: String,
}

async fn mark_read(
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
struct SyncQuery {
    after: Option<String>,
    limit: Option<usize>,
}

async fn sync(
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotificationsBody {
    level: crate::model::NotificationLevel,
}

async fn set_notifications(
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
