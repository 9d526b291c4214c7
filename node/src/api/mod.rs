//! The client API (`spec/client-api.md`): `app(state) -> Router`, limits, and the handlers.
//! Handlers read views directly and send every write to the engine, which answers once it is
//! durable.

mod devices;
mod extract;
mod federation;
mod media;
mod search;
mod session;
mod state;
mod ws;

pub use extract::{ClientAddress, JsonBody};
pub use session::{origin_allowed, session_token, CurrentUser};
pub use state::{AppState, SeenFilter};

use crate::accounts;
use crate::engine::{Command, ProfilePatch};
use crate::error::{ApiError, ApiResult};
use crate::model::{
    ChatListEntry, ChatView, MemberView, MessageView, Settings, UserRecord, UserView,
};
use crate::views;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use confab_protocol::control::{Role, Visibility};
use confab_protocol::MessageId;
use extract::{parse_chat, parse_message, parse_user};
use serde::Deserialize;
use session::{check_origin, session_cookie};

/// The whole HTTP application: the API under `/api/v1` and the embedded web client at `/`.
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
        .route("/me", get(me).patch(patch_me))
        .route("/users", get(list_users))
        .route("/users/{user_id}", get(get_user))
        .route("/admin/settings", get(get_settings).patch(patch_settings))
        .route("/admin/users/{user_id}/disable", post(disable_user))
        .route("/admin/users/{user_id}/enable", post(enable_user))
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
        .route("/presence", get(presence))
        .route("/me/dnd", axum::routing::put(set_dnd))
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

// ----- accounts -----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    username: String,
    password: String,
    display_name: Option<String>,
}

async fn register(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<RegisterBody>,
) -> ApiResult<Response> {
    confab_protocol::ids::validate_localpart(&body.username)
        .map_err(|e| ApiError::bad_request("invalid_username", e.to_string()))?;
    accounts::check_password_rules(&body.password)
        .map_err(|e| ApiError::bad_request("invalid_password", e))?;
    let password = body.password;
    let permit = state.hashing.acquire().await.map_err(ApiError::internal)?;
    let hash = tokio::task::spawn_blocking(move || accounts::hash_password(&password))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    drop(permit);
    let username = body.username;
    let display_name = body.display_name.unwrap_or_default();
    let user = state
        .engine
        .call(|reply| Command::CreateUser {
            username,
            password_hash: hash,
            display_name,
            force_admin: None,
            bypass_registration: false,
            reply,
        })
        .await?;
    signed_in(&state, &user, StatusCode::CREATED).await
}

async fn signed_in(state: &AppState, user: &UserRecord, status: StatusCode) -> ApiResult<Response> {
    let lifetime_s = state.config.limits.session_lifetime_s;
    let token = accounts::create_session(state.store.as_ref(), user, lifetime_s).await?;
    let mut response = (status, Json(UserView::from(user))).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(state, &token, lifetime_s),
    );
    Ok(response)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: String,
}

async fn login(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    JsonBody(body): JsonBody<LoginBody>,
) -> ApiResult<Response> {
    let account_key = body.username.to_lowercase();
    state
        .login_by_account
        .check(&account_key)
        .map_err(ApiError::rate_limited)?;
    state
        .login_by_address
        .check(&address)
        .map_err(ApiError::rate_limited)?;
    let user = views::user(state.store.as_ref(), &body.username)?;
    // Verify even for unknown users so timing does not reveal which names exist.
    let hash = user.as_ref().map(|u| u.password_hash.clone()).unwrap_or_else(|| {
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3Q0g7Qy6Yh3bKfW5p6dGx1qR9nG0Yq2mHcY8m0s0c0Y".into()
    });
    let password = body.password;
    let permit = state.hashing.acquire().await.map_err(ApiError::internal)?;
    let valid = tokio::task::spawn_blocking(move || accounts::verify_password(&password, &hash))
        .await
        .map_err(ApiError::internal)?;
    drop(permit);
    let Some(user) = user.filter(|_| valid) else {
        state.login_by_account.record_failure(&account_key);
        state.login_by_address.record_failure(&address);
        tracing::info!(username = %body.username, %address, "login failed");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "wrong username or password",
        ));
    };
    if user.disabled {
        return Err(ApiError::forbidden(
            "user_disabled",
            "this account is disabled",
        ));
    }
    state.login_by_account.clear(&account_key);
    signed_in(&state, &user, StatusCode::OK).await
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    if let Some(token) = session_token(&headers) {
        accounts::end_session(state.store.as_ref(), &token).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&state, "", 0));
    Ok(response)
}

async fn me(CurrentUser(user): CurrentUser) -> Json<UserView> {
    Json(UserView::from(&user))
}

async fn patch_me(
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

async fn list_users(
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

async fn get_user(
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

fn require_admin(user: &UserRecord) -> ApiResult<()> {
    if user.is_admin {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "forbidden",
            "only a node admin can do this",
        ))
    }
}

async fn get_settings(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<Json<Settings>> {
    require_admin(&user)?;
    Ok(Json(views::settings(state.store.as_ref())?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsBody {
    registration_open: bool,
}

async fn patch_settings(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    JsonBody(body): JsonBody<SettingsBody>,
) -> ApiResult<Json<Settings>> {
    require_admin(&user)?;
    let settings = state
        .engine
        .call(|reply| Command::SetRegistrationOpen {
            open: body.registration_open,
            reply,
        })
        .await?;
    Ok(Json(settings))
}

async fn set_disabled(
    state: AppState,
    admin: UserRecord,
    user_id: String,
    disabled: bool,
) -> ApiResult<Json<UserView>> {
    require_admin(&admin)?;
    let user = parse_user(&state, &user_id)?;
    if user == admin.id && disabled {
        return Err(ApiError::bad_request(
            "bad_request",
            "you cannot disable yourself",
        ));
    }
    let user = state
        .engine
        .call(|reply| Command::SetDisabled {
            user,
            disabled,
            reply,
        })
        .await?;
    Ok(Json(UserView::from(&user)))
}

async fn disable_user(
    State(state): State<AppState>,
    CurrentUser(admin): CurrentUser,
    Path(user_id): Path<String>,
) -> ApiResult<Json<UserView>> {
    set_disabled(state, admin, user_id, true).await
}

async fn enable_user(
    State(state): State<AppState>,
    CurrentUser(admin): CurrentUser,
    Path(user_id): Path<String>,
) -> ApiResult<Json<UserView>> {
    set_disabled(state, admin, user_id, false).await
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

/// Presence of everyone who shares a chat with the user (and the user).
async fn presence(
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
struct DndBody {
    enabled: bool,
    /// When do-not-disturb ends by itself (ms since the epoch); absent: until turned off.
    until_ms: Option<u64>,
}

async fn set_dnd(
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
