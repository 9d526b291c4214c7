//! The presence service: one task that owns the [`PresenceTracker`], fed by WebSocket sessions
//! (heartbeats, disconnects) and a one-second tick, publishing only status changes as ephemeral
//! events to the users who share a chat with the user concerned.

use crate::events::{Ephemeral, EphemeralAudience, EventHub};
use crate::model::now_ms;
use crate::presence::{PresenceConfig, PresenceTracker, PresenceView, Status};
use crate::store::{KvRead, KvStore};
use crate::views;
use confab_protocol::UserId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Inputs waiting for the presence task at most; past it heartbeats are dropped (the next one
/// repairs the state).
const QUEUE_CAPACITY: usize = 8192;
const TICK: Duration = Duration::from_secs(1);

pub enum PresenceInput {
    Heartbeat { user: UserId, device: u64, idle: bool },
    Disconnect { user: UserId, device: u64 },
}

/// What sessions and handlers hold: a queue into the task and the latest published views.
#[derive(Clone)]
pub struct PresenceHandle {
    sender: mpsc::Sender<PresenceInput>,
    published: Arc<Mutex<HashMap<UserId, PresenceView>>>,
}

impl PresenceHandle {
    pub fn send(&self, input: PresenceInput) {
        let _ = self.sender.try_send(input);
    }

    /// The published presence of a user (offline if never seen).
    pub fn view(&self, user: &UserId) -> PresenceView {
        let published = self.published.lock().unwrap_or_else(|e| e.into_inner());
        published.get(user).cloned().unwrap_or(PresenceView {
            user_id: user.clone(),
            status: Status::Offline,
            last_active_ms: 0,
        })
    }
}

/// Starts the presence task. It stops when every handle is dropped.
pub fn start(
    store: Arc<dyn KvStore>,
    hub: Arc<EventHub>,
    config: PresenceConfig,
) -> PresenceHandle {
    let (sender, mut receiver) = mpsc::channel(QUEUE_CAPACITY);
    let published = Arc::new(Mutex::new(HashMap::new()));
    let handle = PresenceHandle { sender, published: published.clone() };
    tokio::spawn(async move {
        let mut tracker = PresenceTracker::new(config);
        let mut tick = tokio::time::interval(TICK);
        loop {
            let changes = tokio::select! {
                input = receiver.recv() => match input {
                    Some(PresenceInput::Heartbeat { user, device, idle }) => tracker.heartbeat(&user, device, idle, now_ms()).into_iter().collect(),
                    Some(PresenceInput::Disconnect { user, device }) => tracker.disconnect(&user, device, now_ms()).into_iter().collect(),
                    None => break,
                },
                _ = tick.tick() => tracker.tick(now_ms()),
            };
            for change in changes {
                publish(store.as_ref(), &hub, &published, change);
            }
        }
    });
    handle
}

fn publish(
    store: &dyn KvRead,
    hub: &EventHub,
    published: &Mutex<HashMap<UserId, PresenceView>>,
    change: PresenceView,
) {
    let chats = match views::user_chats(store, &change.user_id) {
        Ok(chats) => chats,
        Err(error) => {
            tracing::warn!(%error, "presence: cannot read the user's chats");
            Vec::new()
        }
    };
    let mut frame = serde_json::to_value(&change).unwrap_or_default();
    frame["type"] = "presence".into();
    hub.publish_ephemeral(Ephemeral {
        audience: EphemeralAudience::SharesChat(Arc::new(chats)),
        about: change.user_id.clone(),
        frame: frame.to_string(),
    });
    published.lock().unwrap_or_else(|e| e.into_inner()).insert(change.user_id.clone(), change);
}
