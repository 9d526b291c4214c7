//! The engine: the one task that writes. HTTP handlers and WebSocket sessions send it intents
//! ("post this", "join that"); it checks the user's rights, makes the change to the chat's
//! automerge document with the organisation's own actor, signs it, validates it with the same
//! pipeline remote changes pass, updates the views and the event log in the same atomic batch,
//! and acknowledges only after the flush.
//!
//! Writes are group-committed: the engine handles every intent waiting in its queue (up to a
//! bound), staging each successful one's writes (later intents read through them), applies the
//! whole group in one transaction, flushes once, and then answers them all and publishes their
//! events. One transaction and one flush cost about the same for one message or hundreds. The
//! engine runs on a thread of its own and blocks on the flush there. (Flushing on a second
//! thread while the engine goes on was tried: on two cores the extra, smaller flushes cost more
//! CPU than the overlap saved, and the flood benchmark got worse.)

mod accounts;
mod chats;
mod commit;
mod derive;
mod devices;
mod dispatch;
mod docs;
mod error;
mod members;
mod messages;
pub mod rebuild;
mod receipts;
mod remote;
mod search;
mod start;

use crate::config::Limits;
use crate::events::EventHub;
use crate::media::Attachment;
use crate::model::{ChatView, MemberView, MessageView, NotificationLevel, Settings, UserRecord};
use crate::search::SearchIndex;
use crate::store::{KvRead, KvStore, Staged, StoreError};
use confab_protocol::control::{Role, Visibility};
use confab_protocol::{ChatId, Hlc, MessageId, OrgKey, UserId};
use docs::ChatDocs;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

use commit::{json, Dirty, Done, Tx};
use messages::delete_view;
use search::{search_doc, SearchOp};

pub use docs::change_key;
pub use error::{Error, Result};
pub use remote::{chat_owned_by, peers, ChatOrgs, DocHeads, PeerRecord, RemoteVerdict};
pub use search::reindex_search;
pub use start::start;

/// A chat document as automerge's own saved format (`AutoCommit::save`), rebuilt from the
/// stored signed changes: index 0 is the control document, n ≥ 1 bucket n. `None` if the chat
/// or the bucket is not stored. (For export and for independent readers such as automerge-js.)
pub fn export_document(
    store: &dyn KvRead,
    chat: ChatId,
    index: u32,
) -> Result<Option<Vec<u8>>, docs::DocError> {
    let Some((_, mut buckets, mut control)) = docs::load_history_with_control(store, chat)? else {
        return Ok(None);
    };
    if index == 0 {
        return Ok(Some(control.save()));
    }
    let position = index as usize - 1;
    if position >= buckets.len() {
        return Ok(None);
    }
    Ok(Some(buckets.swap_remove(position).save()))
}

/// What the engine hands federation after a flush: its own new changes of chats shared with
/// other organisations (to gossip), and the member organisations of chats whose control
/// document changed.
#[derive(Debug)]
pub enum Outbound {
    Publish { chat: ChatId, change: Vec<u8> },
    Members { chat: ChatId, orgs: ChatOrgs },
}

/// Capacity of the engine → federation queue; beyond it, publications are dropped and counted
/// (peers still get the changes by catch-up).
pub const OUTBOUND_QUEUE: usize = 8192;

/// How many intents one group commit takes at most.
const GROUP_MAX: usize = 1024;
/// Different emojis one message can carry.
pub const REACTION_EMOJIS_PER_MESSAGE_MAX: usize = 50;
/// Longest a lazy intent (a `received` mark) waits for a flush to share.
const LAZY_FLUSH: Duration = Duration::from_millis(50);
/// A group commit slower than this is logged.
const SLOW_GROUP: std::time::Duration = std::time::Duration::from_millis(20);
/// Capacity of the engine's intake queue.
pub const QUEUE_CAPACITY: usize = 4096;

pub type Reply<T> = oneshot::Sender<Result<T>>;

/// Profile fields a user may change; `None` leaves a field as it is.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfilePatch {
    pub display_name: Option<String>,
    pub status_text: Option<String>,
    pub time_zone: Option<String>,
    pub team: Option<String>,
}

/// The intents the engine carries out.
pub enum Command {
    CreateUser {
        username: String,
        password_hash: String,
        display_name: String,
        force_admin: Option<bool>,
        bypass_registration: bool,
        reply: Reply<UserRecord>,
    },
    SetPassword {
        username: String,
        password_hash: String,
        reply: Reply<UserRecord>,
    },
    UpdateProfile {
        user: UserId,
        patch: ProfilePatch,
        reply: Reply<UserRecord>,
    },
    SetRegistrationOpen {
        open: bool,
        reply: Reply<Settings>,
    },
    SetDisabled {
        user: UserId,
        disabled: bool,
        reply: Reply<UserRecord>,
    },
    CreateChannel {
        creator: UserId,
        name: String,
        topic: String,
        visibility: Visibility,
        reply: Reply<ChatView>,
    },
    OpenDm {
        creator: UserId,
        others: Vec<UserId>,
        reply: Reply<(ChatView, bool)>,
    },
    UpdateChat {
        user: UserId,
        chat: ChatId,
        name: Option<String>,
        topic: Option<String>,
        reply: Reply<ChatView>,
    },
    Join {
        user: UserId,
        chat: ChatId,
        reply: Reply<ChatView>,
    },
    Leave {
        user: UserId,
        chat: ChatId,
        reply: Reply<()>,
    },
    AddMember {
        by: UserId,
        chat: ChatId,
        target: UserId,
        role: Role,
        reply: Reply<MemberView>,
    },
    SetRole {
        by: UserId,
        chat: ChatId,
        target: UserId,
        role: Role,
        reply: Reply<MemberView>,
    },
    RemoveMember {
        by: UserId,
        chat: ChatId,
        target: UserId,
        reply: Reply<()>,
    },
    Send {
        user: UserId,
        chat: ChatId,
        body: String,
        reply_to: Option<MessageId>,
        client_id: Option<String>,
        /// Resolved by the caller from the blob store (never the client's claims) and checked
        /// to be the user's to attach.
        attachments: Vec<Attachment>,
        reply: Reply<(MessageView, bool)>,
    },
    /// The user uploaded these blobs (a file and its thumbnails): they may fetch and attach
    /// them before they are posted.
    RecordUpload {
        user: UserId,
        blobs: Vec<String>,
        reply: Reply<()>,
    },
    Edit {
        user: UserId,
        chat: ChatId,
        message: MessageId,
        body: String,
        reply: Reply<MessageView>,
    },
    Delete {
        user: UserId,
        node_admin: bool,
        chat: ChatId,
        message: MessageId,
        reply: Reply<MessageView>,
    },
    MarkRead {
        user: UserId,
        chat: ChatId,
        message: MessageId,
        reply: Reply<()>,
    },
    SetNotificationLevel {
        user: UserId,
        chat: ChatId,
        level: NotificationLevel,
        reply: Reply<()>,
    },
    SetDoNotDisturb {
        user: UserId,
        until_ms: Option<u64>,
        reply: Reply<UserRecord>,
    },
    React {
        user: UserId,
        chat: ChatId,
        message: MessageId,
        emoji: String,
        on: bool,
        reply: Reply<MessageView>,
    },
    /// A recipient's device got the message; no answer.
    MarkReceived {
        chat: ChatId,
        message: MessageId,
        by: UserId,
    },
    RegisterDevice {
        device: crate::model::DeviceRecord,
        devices_max: usize,
        reply: Reply<crate::model::DeviceRecord>,
    },
    /// Forgets a device; its relay capability is recorded for renunciation (at most
    /// `renunciations_max` pending per user).
    RevokeDevice {
        user: UserId,
        device: confab_protocol::DeviceId,
        renunciations_max: usize,
        reply: Reply<()>,
    },
    /// Points a device at a relay queue (or none); a capability for a queue it leaves is
    /// recorded for renunciation.
    SetDeviceRelay {
        user: UserId,
        device: confab_protocol::DeviceId,
        relay: Option<crate::model::RelayRegistration>,
        renunciations_max: usize,
        reply: Reply<crate::model::DeviceRecord>,
    },
    /// The push sender is done with a pending renunciation (`renunciations/v1` key).
    ForgetRenunciation {
        key: Vec<u8>,
        reply: Reply<()>,
    },
    /// A relay accepted the envelope pushing the message to an offline device; no answer.
    MarkNotified {
        chat: ChatId,
        message: MessageId,
    },
    /// Changes from other organisations' nodes (gossip or catch-up), validated one by one
    /// (their signatures already verified off the engine thread).
    ApplyRemote {
        changes: Vec<confab_protocol::Preverified>,
        reply: Reply<Vec<RemoteVerdict>>,
    },
    /// Answers at once, writing nothing: shows the engine takes intents (for `/readyz`).
    Ping {
        reply: Reply<()>,
    },
    /// The heads this node has of a document (for a catch-up request).
    DocHeads {
        doc: confab_protocol::DocId,
        reply: Reply<Option<DocHeads>>,
    },
    /// Adds or replaces (`Some`) or removes (`None`) a peered organisation.
    SetPeer {
        org: confab_protocol::OrgId,
        record: Option<PeerRecord>,
        reply: Reply<()>,
    },
}

impl Command {
    /// Intents nobody waits for: they share the next flush instead of forcing one.
    fn is_lazy(&self) -> bool {
        matches!(self, Command::MarkReceived { .. } | Command::MarkNotified { .. })
    }
}

/// The handle handlers use to reach the engine.
#[derive(Clone)]
pub struct EngineHandle {
    sender: mpsc::Sender<Command>,
    metrics: crate::metrics::EngineMetrics,
}

impl EngineHandle {
    /// The engine's queue, group and flush figures (for `/metrics`).
    pub fn metrics(&self) -> &crate::metrics::EngineMetrics {
        &self.metrics
    }

    /// Sends an intent and waits for its durable outcome.
    pub async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        self.sender.send(make(reply)).await.map_err(|_| Error::internal("engine stopped"))?;
        answer.await.map_err(|_| Error::internal("engine dropped a request"))?
    }

    /// Sends an intent that has no answer; dropped if the engine is overloaded.
    pub fn notify(&self, command: Command) {
        let _ = self.sender.try_send(command);
    }
}

/// Errors starting the engine.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] crate::org_key::KeyError),
}

struct Engine {
    store: Arc<dyn KvStore>,
    key: OrgKey,
    org_name: String,
    limits: Limits,
    hub: Arc<EventHub>,
    /// Loaded chat documents. Dropped on any error so they reload from storage.
    chats: HashMap<ChatId, ChatDocs>,
    hlc: Hlc,
    /// Distinguishes message ids minted by this process from other processes of the org.
    unique: [u8; 4],
    next_cursor: u64,
    /// View writes that many intents of a group repeat (a chat's last activity, the newest HLC
    /// time, a sender's own read marker), written once at the end of the group.
    dirty: Dirty,
    /// The message search index, fed after each flush (it is derived, like the views).
    search: Option<Arc<SearchIndex>>,
    /// Index changes of the current group, applied once its flush succeeded.
    search_ops: Vec<SearchOp>,
    /// The writes of the current group's intents, committed together at its end; intents read
    /// the store through them ([`Engine::reads`]).
    staged: Staged,
    /// Federation's queue, when the node federates.
    outbound: Option<mpsc::Sender<Outbound>>,
    outbound_dropped: u64,
    metrics: crate::metrics::EngineMetrics,
}
