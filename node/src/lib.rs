//! `confab-node`: an organisation's chat server.
//!
//! The engine ([`engine`]) is the single writer: it turns users' intents into signed, validated
//! changes to the chats' automerge documents ([`confab_protocol`]) and into view updates, all in
//! one atomic batch per intent, group-committed with one flush. Handlers ([`api`]) read the views
//! ([`views`]) directly. Live events ([`events`]) are a durable log plus a broadcast. Federation
//! ([`federation`]) gossips the changes of chats shared with other organisations' nodes and
//! hands theirs to the engine.

pub mod accounts;
pub mod api;
pub mod config;
pub mod engine;
pub mod error;
pub mod events;
pub mod federation;
pub mod forwarded;
pub mod live;
pub mod live_count;
pub mod media;
pub mod metrics;
pub mod model;
pub mod org_key;
pub mod presence;
pub mod push;
pub mod random;
pub mod search;
pub mod server;
pub mod store;
pub mod views;
pub mod web;
