//! The client API (`spec/client-api.md`): `app(state) -> Router`, its layers (`Origin` check,
//! security headers, body limit), and one module per resource for the handlers. Handlers read
//! views directly and send every write to the engine, which answers once it is durable.

mod admin;
mod auth;
mod caller;
mod chats;
mod devices;
mod extract;
mod federation;
mod health;
mod media;
mod members;
mod messages;
mod metrics;
mod search;
mod session;
mod state;
mod users;
mod ws;

pub use extract::{ClientAddress, JsonBody};
pub use messages::SendBody;
pub use session::{origin_allowed, session_token, CurrentUser};
pub use state::{AppState, SeenFilter};

use crate::error::ApiError;
use admin::{disable_user, enable_user, get_settings, patch_settings};
use auth::{login, logout, register};
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue};
use axum::middleware;
use axum::response::Response;
use axum::routing::{get, patch, post};
use axum::Router;
use chats::{
    chat_list, create_channel, get_chat, join_chat, leave_chat, list_channels, mark_read, open_dm,
    patch_chat, set_notifications,
};
use members::{add_member, list_members, remove_member, set_role};
use messages::{
    add_reaction, delete_message, edit_message, get_message, history, remove_reaction,
    send_message, sync,
};
use session::check_origin;
use users::{get_user, list_users, me, patch_me, presence, set_dnd};

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
        .route("/admin/peers/{org_id}", axum::routing::delete(federation::remove))
        .route("/admin/peers/{org_id}/unblock", post(federation::unblock))
        .route("/channels", get(list_channels).post(create_channel))
        .route("/dms", post(open_dm))
        .route("/chats", get(chat_list))
        .route("/chats/{chat_id}", get(get_chat).patch(patch_chat))
        .route("/chats/{chat_id}/join", post(join_chat))
        .route("/chats/{chat_id}/leave", post(leave_chat))
        .route("/chats/{chat_id}/members", get(list_members).post(add_member))
        .route("/chats/{chat_id}/members/{user_id}", patch(set_role).delete(remove_member))
        .route("/chats/{chat_id}/messages", get(history).post(send_message))
        .route(
            "/chats/{chat_id}/messages/{message_id}",
            get(get_message).patch(edit_message).delete(delete_message),
        )
        .route("/chats/{chat_id}/messages/{message_id}/reactions", post(add_reaction))
        .route(
            "/chats/{chat_id}/messages/{message_id}/reactions/{emoji}",
            axum::routing::delete(remove_reaction),
        )
        .route("/chats/{chat_id}/read", post(mark_read))
        .route("/sync", get(sync))
        .route("/presence", get(presence))
        .route("/me/dnd", axum::routing::put(set_dnd))
        .route("/chats/{chat_id}/notifications", axum::routing::put(set_notifications))
        .route("/media", post(media::upload))
        .route("/media/{id}", get(media::download))
        .route("/search", get(search::search))
        .route("/ws", get(ws::upgrade))
        .route("/push", get(devices::push_settings))
        .route("/devices", get(devices::list).post(devices::register))
        .route("/devices/{device_id}", axum::routing::delete(devices::revoke))
        .route("/devices/{device_id}/relay", axum::routing::put(devices::set_relay))
        .route("/users/{user_id}/devices", get(devices::signed_list))
        .fallback(|| async { ApiError::not_found("endpoint") });
    Router::new()
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(metrics::scrape))
        .nest("/api/v1", api)
        .merge(crate::web::routes(&state.config.push))
        .layer(middleware::from_fn_with_state(state.clone(), check_origin))
        .layer(middleware::map_response(security_headers))
        .layer(DefaultBodyLimit::max(state.config.limits.request_body_bytes_max))
        .layer(middleware::from_fn_with_state(state.clone(), metrics::count_request))
        .with_state(state)
}

/// Adds the headers every response carries: no content sniffing, no referrer, no framing, and
/// no caching unless the handler chose a policy.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let always = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    for (name, value) in always {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
