//! Multi-process integration tests against a real `confab-node` (spec/client-api.md is the
//! contract). One binary; each module covers one area. Every test starts its own node.

#[path = "integration/common.rs"]
mod common;

#[path = "integration/accounts.rs"]
mod accounts;
#[path = "integration/chat.rs"]
mod chat;
#[path = "integration/durability.rs"]
mod durability;
#[path = "integration/federation.rs"]
mod federation;
#[path = "integration/federation_js_libp2p.rs"]
mod federation_js_libp2p;
#[path = "integration/federation_malicious.rs"]
mod federation_malicious;
#[path = "integration/history.rs"]
mod history;
#[path = "integration/limits.rs"]
mod limits;
#[path = "integration/live.rs"]
mod live;
#[path = "integration/media_search.rs"]
mod media_search;
#[path = "integration/operations.rs"]
mod operations;
#[path = "integration/push.rs"]
mod push;
#[path = "integration/security.rs"]
mod security;
#[path = "integration/states.rs"]
mod states;
#[path = "integration/unread.rs"]
mod unread;

#[path = "integration/browser/mod.rs"]
mod browser;
