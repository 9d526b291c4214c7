//! Live events: a durable, ordered log (the `Events` tree, keyed by cursor) and an in-memory
//! broadcast of the same events once they are flushed.
//!
//! A WebSocket task subscribes to the broadcast first, then replays the log from the client's
//! cursor, then follows the broadcast, skipping anything at or below the last cursor it sent.
//! If it falls behind the broadcast it goes back to the log. That gives every client every event
//! visible to it exactly once, in order, across reconnects.

use crate::model::{
    ChatView, MessageState, MessageView, NotificationLevel, ReactionView, UserView,
};
use crate::store::{KvRead, StoreError, Tree};
use confab_protocol::{ChatId, MessageId, UserId};
use serde::{Deserialize, Serialize};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::broadcast;

/// Who may see an event.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "to", content = "id", rename_all = "snake_case")]
pub enum Audience {
    /// Current members of the chat.
    Chat(ChatId),
    /// One user (all of their devices).
    User(UserId),
    /// Every user of the node.
    All,
}

/// The events of `spec/client-api.md`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type")]
pub enum EventBody {
    #[serde(rename = "message.created")]
    MessageCreated { message: MessageView },
    #[serde(rename = "message.edited")]
    MessageEdited { message: MessageView },
    #[serde(rename = "message.deleted")]
    MessageDeleted { message: MessageView },
    #[serde(rename = "message.reactions")]
    MessageReactions {
        chat_id: ChatId,
        message_id: MessageId,
        emoji: String,
        user_id: UserId,
        on: bool,
        reactions: Vec<ReactionView>,
    },
    #[serde(rename = "message.state")]
    MessageState { chat_id: ChatId, message_id: MessageId, state: MessageState },
    #[serde(rename = "read_marker")]
    ReadMarker { chat_id: ChatId, user_id: UserId, message_id: MessageId },
    #[serde(rename = "chat.updated")]
    ChatUpdated { chat: ChatView },
    #[serde(rename = "chat.joined")]
    ChatJoined { chat: ChatView },
    #[serde(rename = "chat.left")]
    ChatLeft { chat_id: ChatId },
    #[serde(rename = "notifications.updated")]
    NotificationsUpdated { chat_id: ChatId, level: NotificationLevel },
    #[serde(rename = "user.updated")]
    UserUpdated { user: UserView },
}

/// An event as stored and broadcast. `json` is the exact frame sent to clients.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    pub cursor: u64,
    pub audience: Audience,
    pub body: EventBody,
    /// The serialised frame, made once and shared by every session that sends it.
    #[serde(skip)]
    pub frame: std::sync::OnceLock<String>,
}

impl Event {
    /// The frame for the client: the body with its `cursor`.
    pub fn to_frame(&self) -> &str {
        self.frame.get_or_init(|| {
            let mut value = serde_json::to_value(&self.body).unwrap_or_default();
            if let Some(object) = value.as_object_mut() {
                object.insert("cursor".into(), self.cursor.into());
            }
            value.to_string()
        })
    }

    pub fn new(cursor: u64, audience: Audience, body: EventBody) -> Self {
        Self { cursor, audience, body, frame: std::sync::OnceLock::new() }
    }

    pub fn key(cursor: u64) -> [u8; 8] {
        cursor.to_be_bytes()
    }
}

/// Who may see an ephemeral event (presence, typing).
#[derive(Clone, Debug)]
pub enum EphemeralAudience {
    /// Current members of the chat, except the user the event is about.
    Chat(ChatId),
    /// Users who share at least one of these chats with the user the event is about.
    SharesChat(Arc<Vec<ChatId>>),
}

/// An event that is never stored: presence changes and typing. Lost if a session lags.
#[derive(Clone, Debug)]
pub struct Ephemeral {
    pub audience: EphemeralAudience,
    pub about: UserId,
    /// The exact frame sent to clients.
    pub frame: String,
}

/// The broadcast side of the event log, plus the ephemeral broadcast.
pub struct EventHub {
    sender: broadcast::Sender<Arc<Event>>,
    ephemeral: broadcast::Sender<Arc<Ephemeral>>,
    /// Newest cursor that is flushed and published.
    latest: AtomicU64,
}

impl EventHub {
    pub fn new(latest: u64, capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity);
        let (ephemeral, _) = broadcast::channel(capacity);
        Self { sender, ephemeral, latest: AtomicU64::new(latest) }
    }

    pub fn subscribe_ephemeral(&self) -> broadcast::Receiver<Arc<Ephemeral>> {
        self.ephemeral.subscribe()
    }

    pub fn publish_ephemeral(&self, event: Ephemeral) {
        // No receivers is fine: nobody is connected.
        let _ = self.ephemeral.send(Arc::new(event));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.sender.subscribe()
    }

    pub fn latest(&self) -> u64 {
        self.latest.load(Ordering::Acquire)
    }

    /// Publishes events that are durable. Called by the engine, in cursor order.
    pub fn publish(&self, events: Vec<Event>) {
        for event in events {
            let cursor = event.cursor;
            self.latest.store(cursor, Ordering::Release);
            // No receivers is fine: nobody is connected.
            let _ = self.sender.send(Arc::new(event));
        }
    }
}

/// Reads stored events with cursor in `(after, up_to]`, at most `limit`.
pub fn read_log(
    store: &dyn KvRead,
    after: u64,
    up_to: u64,
    limit: usize,
) -> Result<Vec<Event>, StoreError> {
    if after >= up_to {
        return Ok(Vec::new());
    }
    let range =
        (Bound::Excluded(Event::key(after).to_vec()), Bound::Included(Event::key(up_to).to_vec()));
    let mut events = Vec::new();
    for (_, value) in store.range(Tree::Events, range, false, limit)? {
        match serde_json::from_slice::<Event>(&value) {
            Ok(event) => events.push(event),
            Err(error) => tracing::warn!(%error, "skipping an unreadable stored event"),
        }
    }
    Ok(events)
}

/// The oldest cursor still in the log (0 if empty).
pub fn oldest_cursor(store: &dyn KvRead) -> Result<u64, StoreError> {
    let first = store.range(Tree::Events, (Bound::Unbounded, Bound::Unbounded), false, 1)?;
    Ok(first
        .first()
        .and_then(|(key, _)| key.as_slice().try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0))
}

/// The newest cursor in the log (0 if empty).
pub fn newest_cursor(store: &dyn KvRead) -> Result<u64, StoreError> {
    let last = store.range(Tree::Events, (Bound::Unbounded, Bound::Unbounded), true, 1)?;
    Ok(last
        .first()
        .and_then(|(key, _)| key.as_slice().try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0))
}
