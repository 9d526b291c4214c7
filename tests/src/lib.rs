//! Confab test harness: real `confab-node` processes on 127.0.0.1 ([`TestNode`], [`TestNet`]),
//! an HTTP client per user session ([`Client`]) and a WebSocket client ([`WsClient`]) for the
//! API of `spec/client-api.md`.

pub mod client;
pub mod evil;
pub mod measure;
pub mod node;
pub mod push_service;
pub mod relay;
pub mod types;
pub mod ws;

pub use client::{ApiError, ApiResult, Body, Client, OriginMode, RawResponse, SESSION_COOKIE};
pub use node::{find_node_binary, node_binary, user_id, NodeOptions, TestNet, TestNode, ORG};
pub use types::{Chat, ChatListEntry, HistoryQuery, Member, Message, Page, Settings, User};
pub use ws::{
    ev_chat_id, ev_cursor, ev_message, ev_message_id, ev_type, WsClient, WsConnectError, WsNext,
    WsReceiver, WsSender, EVENT_TIMEOUT,
};

/// A password that satisfies the spec's rules.
pub const PASSWORD: &str = "correct horse battery";

/// Starts a node and registers `names` in order (the first becomes admin), each with its own
/// session. Panics with the API error if a registration fails.
pub async fn node_with_users(names: &[&str]) -> (TestNode, Vec<Client>) {
    node_with_users_opts(names, node::NodeOptions::default()).await
}

/// [`node_with_users`] for a node started with `opts`.
pub async fn node_with_users_opts(
    names: &[&str],
    opts: node::NodeOptions,
) -> (TestNode, Vec<Client>) {
    let node = TestNode::start_with(opts).await;
    let mut clients = Vec::new();
    for n in names {
        let c = Client::for_node(&node);
        if let Err(e) = c.register(n, PASSWORD).await {
            panic!("register {n}: {e}");
        }
        clients.push(c);
    }
    (node, clients)
}
