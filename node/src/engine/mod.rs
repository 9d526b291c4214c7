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

mod devices;
mod docs;
pub mod rebuild;
mod remote;

use crate::config::Limits;
use crate::error::{ApiError, ApiResult};
use crate::events::{Audience, Event, EventBody, EventHub};
use crate::media::Attachment;
use crate::model::{
    keys, now_ms, ChatRecord, ChatView, MemberView, MessageState, MessageView, NotificationLevel,
    Settings, UserRecord, UserView,
};
use crate::random::random_bytes;
use crate::search::{SearchDoc, SearchIndex};
use crate::store::{KvRead, KvStore, Staged, StoreError, Tree, WriteBatch};
use crate::views;
use confab_protocol::bucket::{self, MessageRecord, UpdateOp, UpdateRecord};
use confab_protocol::control::{self, ChatInfo, ChatKind, MemberRecord, Role, Visibility};
use confab_protocol::{ChatId, Hlc, MessageId, OrgKey, UserId};
use docs::ChatDocs;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub use docs::change_key;
pub use remote::{chat_owned_by, peers, ChatOrgs, DocHeads, PeerRecord, RemoteVerdict};

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

pub type Reply<T> = oneshot::Sender<ApiResult<T>>;

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
        matches!(
            self,
            Command::MarkReceived { .. } | Command::MarkNotified { .. }
        )
    }
}

/// The handle handlers use to reach the engine.
#[derive(Clone)]
pub struct EngineHandle {
    sender: mpsc::Sender<Command>,
}

impl EngineHandle {
    /// Sends an intent and waits for its durable outcome.
    pub async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> ApiResult<T> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(make(reply))
            .await
            .map_err(|_| ApiError::internal("engine stopped"))?;
        answer
            .await
            .map_err(|_| ApiError::internal("engine dropped a request"))?
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

/// Starts the engine task. It stops when every handle is dropped, after a final flush.
pub async fn start(
    store: Arc<dyn KvStore>,
    org_name: String,
    limits: Limits,
    search: Option<Arc<SearchIndex>>,
    outbound: Option<mpsc::Sender<Outbound>>,
) -> Result<(EngineHandle, Arc<EventHub>, tokio::task::JoinHandle<()>), StartError> {
    let key = crate::org_key::load_or_create_org_key(store.as_ref()).await?;
    let newest = crate::events::newest_cursor(store.as_ref())?;
    let hub = Arc::new(EventHub::new(newest, 4096));
    let hlc = match store.get(Tree::Meta, b"hlc")? {
        Some(bytes) => Hlc::resume_after(serde_json::from_slice(&bytes).unwrap_or_default()),
        None => Hlc::new(),
    };
    let engine = Engine {
        store,
        key,
        org_name,
        limits,
        hub: hub.clone(),
        chats: HashMap::new(),
        hlc,
        unique: random_bytes(),
        next_cursor: newest + 1,
        dirty: Dirty::default(),
        search,
        search_ops: Vec::new(),
        staged: Staged::default(),
        outbound,
        outbound_dropped: 0,
    };
    if let Some(search) = &engine.search {
        catch_up_search(engine.store.as_ref(), search, newest);
    }
    let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
    // The engine gets a thread of its own, with a single-threaded runtime for its timers: it
    // blocks on each flush there, and no socket task ever queues ahead of it.
    let task = tokio::task::spawn_blocking(move || {
        match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(runtime) => runtime.block_on(engine.run(receiver)),
            Err(error) => tracing::error!(%error, "could not start the engine's runtime"),
        }
    });
    Ok((EngineHandle { sender }, hub, task))
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
}

/// A change to the search index.
enum SearchOp {
    Upsert(SearchDoc),
    Remove(ChatId, MessageId),
}

fn search_doc(message: &MessageView) -> SearchDoc {
    SearchDoc {
        chat: message.chat_id,
        message: message.id,
        author: message.author.clone(),
        body: message.body.clone(),
        created_ms: message.created_ms,
        has_attachment: !message.attachments.is_empty(),
    }
}

/// Brings the search index up to the event log after a crash or an upgrade: replays the
/// message events after the index's committed mark, or re-indexes every stored message when
/// the log no longer reaches back that far (or the index is new).
fn catch_up_search(store: &dyn KvStore, search: &SearchIndex, newest_cursor: u64) {
    let mark = match search.committed_mark() {
        Ok(mark) => mark,
        Err(error) => {
            tracing::error!(%error, "cannot read the search index mark; re-indexing");
            None
        }
    };
    if mark == Some(newest_cursor) {
        return;
    }
    let oldest = store
        .range(
            Tree::Events,
            (std::ops::Bound::Unbounded, std::ops::Bound::Unbounded),
            false,
            1,
        )
        .ok()
        .and_then(|first| first.into_iter().next())
        .and_then(|(key, _)| key.as_slice().try_into().ok().map(u64::from_be_bytes));
    let replayable = match (mark, oldest) {
        (Some(mark), Some(oldest)) => mark + 1 >= oldest,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let result = if replayable {
        replay_search(store, search, mark.unwrap_or(0))
    } else {
        reindex_search(store, search)
    };
    match result.and_then(|count| search.commit_marked(newest_cursor).map(|()| count)) {
        Ok(count) => tracing::info!(count, replayed = replayable, "search index caught up"),
        Err(error) => tracing::error!(%error, "search index catch-up failed"),
    }
}

fn replay_search(
    store: &dyn KvStore,
    search: &SearchIndex,
    after: u64,
) -> Result<usize, crate::search::SearchError> {
    let mut count = 0;
    let mut from = std::ops::Bound::Excluded(Event::key(after).to_vec());
    loop {
        let page = store.range(
            Tree::Events,
            (from.clone(), std::ops::Bound::Unbounded),
            false,
            1000,
        )?;
        let Some((last, _)) = page.last() else {
            return Ok(count);
        };
        from = std::ops::Bound::Excluded(last.clone());
        for (_, value) in page {
            let Ok(event) = serde_json::from_slice::<Event>(&value) else {
                continue;
            };
            match event.body {
                EventBody::MessageCreated { message } | EventBody::MessageEdited { message } => {
                    search.upsert(&search_doc(&message))?;
                    count += 1;
                }
                EventBody::MessageDeleted { message } => {
                    search.remove(&message.chat_id, &message.id)?;
                    count += 1;
                }
                _ => {}
            }
        }
    }
}

/// Clears the index and adds every message of the views (not deleted ones).
pub fn reindex_search(
    store: &dyn KvStore,
    search: &SearchIndex,
) -> Result<usize, crate::search::SearchError> {
    search.clear()?;
    let mut count = 0;
    let mut from = std::ops::Bound::Unbounded;
    let mut docs = Vec::with_capacity(1000);
    loop {
        let page = store.range(
            Tree::Messages,
            (from.clone(), std::ops::Bound::Unbounded),
            false,
            1000,
        )?;
        let Some((last, _)) = page.last() else {
            search.commit()?;
            return Ok(count);
        };
        from = std::ops::Bound::Excluded(last.clone());
        docs.clear();
        for (_, value) in page {
            if let Ok(message) = serde_json::from_slice::<MessageView>(&value) {
                if !message.deleted {
                    docs.push(search_doc(&message));
                }
            }
        }
        count += docs.len();
        search.upsert_many(&docs)?;
    }
}

#[derive(Default)]
struct Dirty {
    chats: HashMap<ChatId, ChatRecord>,
    markers: HashMap<(UserId, ChatId), MessageId>,
    hlc: Option<confab_protocol::HlcTime>,
}

impl Dirty {
    fn take_batch(&mut self) -> WriteBatch {
        let mut batch = WriteBatch::default();
        for (id, record) in self.chats.drain() {
            batch.put(Tree::Chats, id.as_bytes().to_vec(), json(&record));
        }
        for ((user, chat), message) in self.markers.drain() {
            batch.put(
                Tree::ReadMarkers,
                keys::user_chat(&user, &chat),
                message.as_bytes().to_vec(),
            );
        }
        if let Some(time) = self.hlc.take() {
            batch.put(Tree::Meta, b"hlc".to_vec(), json(&time));
        }
        batch
    }
}

/// What one intent writes.
#[derive(Default)]
struct Tx {
    batch: WriteBatch,
    events: Vec<Event>,
    /// Search index changes, kept only if the intent succeeds.
    search: Vec<SearchOp>,
}

type Done = Box<dyn FnOnce(bool) + Send>;

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

impl Engine {
    async fn run(mut self, mut receiver: mpsc::Receiver<Command>) {
        let mut last_flush = std::time::Instant::now();
        while let Some(command) = receiver.recv().await {
            let mut done: Vec<Done> = Vec::new();
            let mut events = Vec::new();
            let started = std::time::Instant::now();
            let mut urgent = !command.is_lazy();
            self.process(command, &mut done, &mut events);
            // Gather more intents before flushing: what is queued now; then, if something
            // waits for an answer, until `group_commit_interval_min_us` after the last flush
            // (so under load one flush serves many intents); if only lazy intents are here,
            // up to LAZY_FLUSH for company.
            let pacing = Duration::from_micros(self.limits.group_commit_interval_min_us);
            let lazy_deadline = tokio::time::Instant::now() + LAZY_FLUSH;
            while done.len() < GROUP_MAX {
                let next = match receiver.try_recv() {
                    Ok(command) => Some(command),
                    Err(_) => {
                        let until = if urgent {
                            tokio::time::Instant::from_std(last_flush + pacing)
                        } else {
                            lazy_deadline
                        };
                        if tokio::time::Instant::now() >= until {
                            break;
                        }
                        match tokio::time::timeout_at(until, receiver.recv()).await {
                            Ok(Some(command)) => Some(command),
                            Ok(None) | Err(_) => None,
                        }
                    }
                };
                let Some(command) = next else { break };
                urgent |= !command.is_lazy();
                self.process(command, &mut done, &mut events);
            }
            let processed = started.elapsed();
            let mut batch = self.staged.take();
            batch.append(self.dirty.take_batch());
            let outbound = self.outbound_of(&batch);
            self.trim_events(&mut batch);
            // A group that wrote nothing (reads such as federation's heads, refused intents)
            // has nothing to make durable.
            let nothing_written = batch.is_empty();
            let applied = if nothing_written {
                Ok(())
            } else {
                self.store.apply(batch)
            };
            let applied_at = started.elapsed();
            let flush_result = match applied {
                Ok(()) if nothing_written => Ok(()),
                other => other.and_then(|()| self.store.flush_blocking()),
            };
            last_flush = std::time::Instant::now();
            let total = started.elapsed();
            tracing::debug!(
                intents = done.len(),
                process_us = processed.as_micros() as u64,
                apply_us = (applied_at - processed).as_micros() as u64,
                flush_us = (total - processed).as_micros() as u64,
                "group committed"
            );
            if total >= SLOW_GROUP {
                tracing::warn!(
                    intents = done.len(),
                    process_ms = processed.as_millis() as u64,
                    flush_ms = (total - processed).as_millis() as u64,
                    "slow group commit"
                );
            }
            let flushed = match flush_result {
                Ok(()) => true,
                Err(error) => {
                    tracing::error!(%error, "flush failed; failing the group");
                    self.chats.clear();
                    false
                }
            };
            if flushed {
                self.hub.publish(events);
                self.send_outbound(outbound);
                self.apply_search_ops();
            } else {
                self.search_ops.clear();
            }
            for finish in done {
                finish(flushed);
            }
        }
        if let Err(error) = self.store.flush_blocking() {
            tracing::error!(%error, "final flush failed");
        }
        tracing::info!("engine stopped");
    }

    fn process(&mut self, command: Command, done: &mut Vec<Done>, events: &mut Vec<Event>) {
        let mut tx = Tx::default();
        let finish = match command {
            Command::CreateUser {
                username,
                password_hash,
                display_name,
                force_admin,
                bypass_registration,
                reply,
            } => {
                let result = self.create_user(
                    &mut tx,
                    &username,
                    password_hash,
                    display_name,
                    force_admin,
                    bypass_registration,
                );
                self.finish(tx, result, reply, events)
            }
            Command::SetPassword {
                username,
                password_hash,
                reply,
            } => {
                let result = self.set_password(&mut tx, &username, password_hash);
                self.finish(tx, result, reply, events)
            }
            Command::UpdateProfile { user, patch, reply } => {
                let result = self.update_profile(&mut tx, &user, patch);
                self.finish(tx, result, reply, events)
            }
            Command::SetRegistrationOpen { open, reply } => {
                let settings = Settings {
                    registration_open: open,
                };
                tx.batch
                    .put(Tree::Meta, b"settings".to_vec(), json(&settings));
                self.finish(tx, Ok(settings), reply, events)
            }
            Command::SetDisabled {
                user,
                disabled,
                reply,
            } => {
                let result = self.set_disabled(&mut tx, &user, disabled);
                self.finish(tx, result, reply, events)
            }
            Command::CreateChannel {
                creator,
                name,
                topic,
                visibility,
                reply,
            } => {
                let result = self.create_channel(&mut tx, &creator, name, topic, visibility);
                self.finish(tx, result, reply, events)
            }
            Command::OpenDm {
                creator,
                others,
                reply,
            } => {
                let result = self.open_dm(&mut tx, &creator, others);
                self.finish(tx, result, reply, events)
            }
            Command::UpdateChat {
                user,
                chat,
                name,
                topic,
                reply,
            } => {
                let result = self.update_chat(&mut tx, &user, &chat, name, topic);
                self.finish(tx, result, reply, events)
            }
            Command::Join { user, chat, reply } => {
                let result = self.join(&mut tx, &user, &chat);
                self.finish(tx, result, reply, events)
            }
            Command::Leave { user, chat, reply } => {
                let result = self.leave(&mut tx, &user, &chat);
                self.finish(tx, result, reply, events)
            }
            Command::AddMember {
                by,
                chat,
                target,
                role,
                reply,
            } => {
                let result = self.add_member(&mut tx, &by, &chat, &target, role);
                self.finish(tx, result, reply, events)
            }
            Command::SetRole {
                by,
                chat,
                target,
                role,
                reply,
            } => {
                let result = self.set_role(&mut tx, &by, &chat, &target, role);
                self.finish(tx, result, reply, events)
            }
            Command::RemoveMember {
                by,
                chat,
                target,
                reply,
            } => {
                let result = self.remove_member(&mut tx, &by, &chat, &target);
                self.finish(tx, result, reply, events)
            }
            Command::Send {
                user,
                chat,
                body,
                reply_to,
                client_id,
                attachments,
                reply,
            } => {
                let result = self.send(
                    &mut tx,
                    &user,
                    &chat,
                    body,
                    reply_to,
                    client_id,
                    attachments,
                );
                self.finish(tx, result, reply, events)
            }
            Command::RecordUpload { user, blobs, reply } => {
                let at = now_ms().to_be_bytes().to_vec();
                for blob in &blobs {
                    tx.batch
                        .put(Tree::Uploads, keys::upload(&user, blob), at.clone());
                }
                self.finish(tx, Ok(()), reply, events)
            }
            Command::Edit {
                user,
                chat,
                message,
                body,
                reply,
            } => {
                let result = self.edit(&mut tx, &user, &chat, &message, body);
                self.finish(tx, result, reply, events)
            }
            Command::Delete {
                user,
                node_admin,
                chat,
                message,
                reply,
            } => {
                let result = self.delete(&mut tx, &user, node_admin, &chat, &message);
                self.finish(tx, result, reply, events)
            }
            Command::SetNotificationLevel {
                user,
                chat,
                level,
                reply,
            } => {
                let result = self.set_notification_level(&mut tx, &user, &chat, level);
                self.finish(tx, result, reply, events)
            }
            Command::SetDoNotDisturb {
                user,
                until_ms,
                reply,
            } => {
                let result = self.set_do_not_disturb(&mut tx, &user, until_ms);
                self.finish(tx, result, reply, events)
            }
            Command::React {
                user,
                chat,
                message,
                emoji,
                on,
                reply,
            } => {
                let result = self.react(&mut tx, &user, &chat, &message, &emoji, on);
                self.finish(tx, result, reply, events)
            }
            Command::MarkRead {
                user,
                chat,
                message,
                reply,
            } => {
                let result = self.mark_read(&mut tx, &user, &chat, &message);
                self.finish(tx, result, reply, events)
            }
            Command::MarkReceived { chat, message, by } => {
                let result = self.mark_received(&mut tx, &chat, &message, &by);
                let (sender, _) = oneshot::channel();
                self.finish(tx, result, sender, events)
            }
            Command::RegisterDevice {
                device,
                devices_max,
                reply,
            } => {
                let result = self.register_device(&mut tx, device, devices_max);
                self.finish(tx, result, reply, events)
            }
            Command::RevokeDevice {
                user,
                device,
                renunciations_max,
                reply,
            } => {
                let result = self.revoke_device(&mut tx, &user, &device, renunciations_max);
                self.finish(tx, result, reply, events)
            }
            Command::SetDeviceRelay {
                user,
                device,
                relay,
                renunciations_max,
                reply,
            } => {
                let result =
                    self.set_device_relay(&mut tx, &user, &device, relay, renunciations_max);
                self.finish(tx, result, reply, events)
            }
            Command::ForgetRenunciation { key, reply } => {
                let result = self.forget_renunciation(&mut tx, key);
                self.finish(tx, result, reply, events)
            }
            Command::MarkNotified { chat, message } => {
                let result = self.mark_notified(&mut tx, &chat, &message);
                let (sender, _) = oneshot::channel();
                self.finish(tx, result, sender, events)
            }
            Command::ApplyRemote { changes, reply } => {
                let verdicts = self.apply_remote_changes(changes, events);
                self.finish(tx, Ok(verdicts), reply, events)
            }
            Command::DocHeads { doc, reply } => {
                let result = self.doc_heads(doc);
                self.finish(tx, result, reply, events)
            }
            Command::SetPeer { org, record, reply } => {
                let result = self.set_peer(&mut tx, org, record);
                self.finish(tx, result, reply, events)
            }
        };
        done.push(finish);
    }

    /// Stages the intent's writes if it succeeded (so later intents of the group read them;
    /// a failed intent writes nothing) and returns the closure that answers once the group's
    /// flush is done.
    /// What federation must hear of this group: own changes of shared chats, and the member
    /// organisations of chats whose control document changed.
    fn outbound_of(&self, batch: &WriteBatch) -> Vec<Outbound> {
        if self.outbound.is_none() {
            return Vec::new();
        }
        let own = self.key.id();
        let mut out = Vec::new();
        let mut controls = Vec::new();
        for (key, value) in batch.puts(Tree::Changes) {
            let Some(doc) = key
                .get(..confab_protocol::DocId::LEN)
                .and_then(confab_protocol::DocId::from_bytes)
            else {
                continue;
            };
            if doc.kind == confab_protocol::DocKind::Control && !controls.contains(&doc.chat) {
                controls.push(doc.chat);
            }
            let Some(docs) = self.chats.get(&doc.chat) else {
                continue;
            };
            let shared = docs.state.orgs.keys().any(|org| *org != own);
            // Only our own changes: gossipsub forwards others' itself.
            if shared && value.get(33..65) == Some(own.as_bytes().as_slice()) {
                out.push(Outbound::Publish {
                    chat: doc.chat,
                    change: value.to_vec(),
                });
            }
        }
        for chat in controls {
            if let Some(docs) = self.chats.get(&chat) {
                out.push(Outbound::Members {
                    chat,
                    orgs: ChatOrgs::of(&docs.state, &own),
                });
            }
        }
        out
    }

    fn send_outbound(&mut self, items: Vec<Outbound>) {
        let Some(sender) = &self.outbound else {
            return;
        };
        for item in items {
            if sender.try_send(item).is_err() {
                self.outbound_dropped += 1;
                if self.outbound_dropped.is_power_of_two() {
                    tracing::warn!(
                        dropped = self.outbound_dropped,
                        "federation queue full; peers will catch up"
                    );
                }
            }
        }
    }

    fn finish<T: Send + 'static>(
        &mut self,
        tx: Tx,
        result: ApiResult<T>,
        reply: Reply<T>,
        events: &mut Vec<Event>,
    ) -> Done {
        if result.is_ok() {
            self.staged.stage(tx.batch);
            events.extend(tx.events);
            self.search_ops.extend(tx.search);
        }
        Box::new(move |flushed| {
            let answer = match result {
                Ok(_) if !flushed => Err(ApiError::internal("flush failed")),
                other => other,
            };
            let _ = reply.send(answer);
        })
    }

    fn emit(&mut self, tx: &mut Tx, audience: Audience, body: EventBody) {
        let event = Event::new(self.next_cursor, audience, body);
        self.next_cursor += 1;
        tx.batch.put(
            Tree::Events,
            Event::key(event.cursor).to_vec(),
            json(&event),
        );
        tx.events.push(event);
    }

    /// Feeds the group's message changes to the search index and requests a commit marked with
    /// the newest event cursor (so a restart replays only what came after it). Index errors
    /// are logged: the index is derived and a rebuild restores it.
    fn apply_search_ops(&mut self) {
        let Some(search) = &self.search else {
            self.search_ops.clear();
            return;
        };
        if self.search_ops.is_empty() {
            return;
        }
        for op in self.search_ops.drain(..) {
            let result = match op {
                SearchOp::Upsert(doc) => search.upsert(&doc),
                SearchOp::Remove(chat, message) => search.remove(&chat, &message),
            };
            if let Err(error) = result {
                tracing::error!(%error, "search index update failed");
            }
        }
        if let Err(error) = search.commit_marked(self.next_cursor.saturating_sub(1)) {
            tracing::error!(%error, "search index commit failed");
        }
    }

    /// Adds to the group's batch the deletion of the oldest events past the retention limit, a
    /// bounded number at a time.
    fn trim_events(&self, batch: &mut WriteBatch) {
        let newest = self.next_cursor.saturating_sub(1);
        let Some(keep_from) = newest.checked_sub(self.limits.events_retained_max) else {
            return;
        };
        let range = (
            std::ops::Bound::Unbounded,
            std::ops::Bound::Excluded(Event::key(keep_from).to_vec()),
        );
        match self.store.range(Tree::Events, range, false, 1000) {
            Ok(old) => {
                for (key, _) in old {
                    batch.delete(Tree::Events, key);
                }
            }
            Err(error) => tracing::warn!(%error, "reading the event log to trim it failed"),
        }
    }

    /// The store as this group's intents see it: with the writes staged so far.
    fn reads(&self) -> crate::store::StagedRead<'_> {
        self.staged.over(self.store.as_ref())
    }

    // ----- users -----

    fn user_record(&self, user: &UserId) -> ApiResult<UserRecord> {
        if user.org_name() != self.org_name {
            return Err(ApiError::not_found("user"));
        }
        views::user(&self.reads(), user.localpart())?.ok_or_else(|| ApiError::not_found("user"))
    }

    fn create_user(
        &mut self,
        tx: &mut Tx,
        username: &str,
        password_hash: String,
        display_name: String,
        force_admin: Option<bool>,
        bypass_registration: bool,
    ) -> ApiResult<UserRecord> {
        let id = UserId::new(username, &self.org_name)
            .map_err(|e| ApiError::bad_request("invalid_username", e.to_string()))?;
        if views::user(&self.reads(), username)?.is_some() {
            return Err(ApiError::conflict(
                "username_taken",
                format!("the username {username:?} is taken"),
            ));
        }
        let first = self
            .reads()
            .range(Tree::Users, crate::store::prefix_range(b""), false, 1)?
            .is_empty();
        if !bypass_registration && !first && !views::settings(&self.reads())?.registration_open {
            return Err(ApiError::forbidden(
                "registration_closed",
                "registration is closed on this node",
            ));
        }
        let display_name = self
            .profile_field("display_name", Some(display_name))?
            .unwrap_or_default();
        let record = UserRecord {
            display_name: if display_name.is_empty() {
                username.to_string()
            } else {
                display_name
            },
            id,
            password_hash,
            status_text: String::new(),
            time_zone: String::new(),
            team: String::new(),
            is_admin: force_admin.unwrap_or(first),
            disabled: false,
            created_ms: now_ms(),
            session_generation: 0,
            dnd_until_ms: None,
        };
        self.put_user(tx, &record);
        Ok(record)
    }

    fn put_user(&mut self, tx: &mut Tx, record: &UserRecord) {
        tx.batch.put(
            Tree::Users,
            record.id.localpart().as_bytes().to_vec(),
            json(record),
        );
        self.emit(
            tx,
            Audience::All,
            EventBody::UserUpdated {
                user: UserView::from(record),
            },
        );
    }

    fn set_password(
        &mut self,
        tx: &mut Tx,
        username: &str,
        password_hash: String,
    ) -> ApiResult<UserRecord> {
        let mut record =
            views::user(&self.reads(), username)?.ok_or_else(|| ApiError::not_found("user"))?;
        record.password_hash = password_hash;
        record.session_generation += 1;
        tx.batch
            .put(Tree::Users, username.as_bytes().to_vec(), json(&record));
        Ok(record)
    }

    fn profile_field(&self, name: &str, value: Option<String>) -> ApiResult<Option<String>> {
        let Some(value) = value else { return Ok(None) };
        let value = value.trim().to_string();
        if value.chars().count() > self.limits.profile_field_chars_max
            || value.chars().any(char::is_control)
        {
            return Err(ApiError::bad_request(
                "invalid_body",
                format!(
                    "{name} must be at most {} characters without control characters",
                    self.limits.profile_field_chars_max
                ),
            ));
        }
        Ok(Some(value))
    }

    fn update_profile(
        &mut self,
        tx: &mut Tx,
        user: &UserId,
        patch: ProfilePatch,
    ) -> ApiResult<UserRecord> {
        let mut record = self.user_record(user)?;
        if let Some(name) = self.profile_field("display_name", patch.display_name)? {
            record.display_name = if name.is_empty() {
                user.localpart().to_string()
            } else {
                name
            };
        }
        if let Some(status) = self.profile_field("status_text", patch.status_text)? {
            record.status_text = status;
        }
        if let Some(zone) = self.profile_field("time_zone", patch.time_zone)? {
            record.time_zone = zone;
        }
        if let Some(team) = self.profile_field("team", patch.team)? {
            record.team = team;
        }
        self.put_user(tx, &record);
        Ok(record)
    }

    fn set_disabled(
        &mut self,
        tx: &mut Tx,
        user: &UserId,
        disabled: bool,
    ) -> ApiResult<UserRecord> {
        let mut record = self.user_record(user)?;
        if record.disabled != disabled {
            record.disabled = disabled;
            record.session_generation += 1;
            self.put_user(tx, &record);
        }
        Ok(record)
    }

    // ----- chats -----

    fn chat_record(&self, chat: &ChatId) -> ApiResult<ChatRecord> {
        if let Some(record) = self.dirty.chats.get(chat) {
            return Ok(record.clone());
        }
        views::chat(&self.reads(), chat)?.ok_or_else(|| ApiError::not_found("chat"))
    }

    fn require_role(&self, chat: &ChatId, user: &UserId) -> ApiResult<Role> {
        views::role(&self.reads(), chat, user)?.ok_or_else(ApiError::not_a_member)
    }

    /// Takes a chat's documents out of the cache (loading them if needed). Put them back with
    /// `self.chats.insert` on success; on error they are simply dropped and reload next time.
    fn take_docs(&mut self, chat: &ChatId) -> ApiResult<ChatDocs> {
        self.take_stored_docs(chat)?
            .ok_or_else(|| ApiError::not_found("chat"))
    }

    /// [`Self::take_docs`] for a chat that may not be stored yet (`None`).
    fn take_stored_docs(&mut self, chat: &ChatId) -> ApiResult<Option<ChatDocs>> {
        if let Some(docs) = self.chats.remove(chat) {
            return Ok(Some(docs));
        }
        ChatDocs::load(
            &self.reads(),
            *chat,
            self.key.id(),
            (random_bytes(), random_bytes()),
        )
        .map_err(ApiError::internal)
    }

    /// Like [`Self::take_docs`], for writing the control document: only the owning
    /// organisation may (a chat shared from elsewhere answers 403).
    fn take_owned_docs(&mut self, chat: &ChatId) -> ApiResult<ChatDocs> {
        let docs = self.take_docs(chat)?;
        if docs.state.info.owner != self.key.id() {
            self.chats.insert(*chat, docs);
            return Err(ApiError::forbidden(
                "not_owner",
                "this chat is shared from another organisation: its name, topic and members \
                 are changed there",
            ));
        }
        Ok(docs)
    }

    fn validate_chat_name(&self, name: &str) -> ApiResult<String> {
        let name = name.trim().to_string();
        let chars = name.chars().count();
        if chars == 0
            || chars > self.limits.chat_name_chars_max
            || name.chars().any(char::is_control)
        {
            return Err(ApiError::bad_request(
                "invalid_body",
                format!(
                    "a channel name is 1 to {} characters without control characters",
                    self.limits.chat_name_chars_max
                ),
            ));
        }
        Ok(name)
    }

    fn validate_topic(&self, topic: &str) -> ApiResult<String> {
        let topic = topic.trim().to_string();
        if topic.chars().count() > self.limits.topic_chars_max
            || topic.chars().any(|c| c.is_control() && c != '\n')
        {
            return Err(ApiError::bad_request(
                "invalid_body",
                format!(
                    "a topic is at most {} characters",
                    self.limits.topic_chars_max
                ),
            ));
        }
        Ok(topic)
    }

    fn create_channel(
        &mut self,
        tx: &mut Tx,
        creator: &UserId,
        name: String,
        topic: String,
        visibility: Visibility,
    ) -> ApiResult<ChatView> {
        let name = self.validate_chat_name(&name)?;
        let topic = self.validate_topic(&topic)?;
        if visibility == Visibility::Dm {
            return Err(ApiError::bad_request(
                "invalid_body",
                "visibility is public or private",
            ));
        }
        let taken = views::all_chats(&self.reads())?.iter().any(|chat| {
            chat.kind == ChatKind::Channel && chat.name.to_lowercase() == name.to_lowercase()
        });
        if taken {
            return Err(ApiError::conflict(
                "conflict",
                format!("a channel named {name:?} exists"),
            ));
        }
        let chat = remote::chat_id_for(&self.key.id(), random_bytes());
        self.create_chat(
            tx,
            chat,
            ChatKind::Channel,
            visibility,
            &name,
            &topic,
            creator,
            &[],
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn create_chat(
        &mut self,
        tx: &mut Tx,
        chat: ChatId,
        kind: ChatKind,
        visibility: Visibility,
        name: &str,
        topic: &str,
        creator: &UserId,
        others: &[UserId],
    ) -> ApiResult<ChatView> {
        let now = now_ms();
        let org = self.key.id();
        let info = ChatInfo {
            kind,
            visibility,
            created_ms: now,
            owner: org,
        };
        let creator_role = if kind == ChatKind::Dm {
            Role::Member
        } else {
            Role::Owner
        };
        let first = MemberRecord {
            role: creator_role,
            org,
        };
        let mut docs = ChatDocs::create(
            &self.key,
            chat,
            &info,
            name,
            topic,
            (creator, &first),
            now,
            (random_bytes(), random_bytes()),
            &mut tx.batch,
        )
        .map_err(ApiError::internal)?;
        if !others.is_empty() {
            let mut others_owned = Vec::new();
            for user in others {
                others_owned.push((user.clone(), self.org_of_user(user)?));
            }
            let epoch = docs.state.epoch + 1;
            docs.change_control(
                &self.key,
                now,
                &mut tx.batch,
                |doc| {
                    let mut joined = Vec::new();
                    for (user, member_org) in &others_owned {
                        control::put_member(
                            doc,
                            user,
                            &MemberRecord {
                                role: Role::Member,
                                org: *member_org,
                            },
                        )?;
                        if *member_org != org && !joined.contains(member_org) {
                            joined.push(*member_org);
                            control::set_org_ranges(doc, member_org, &[(epoch, None)])?;
                        }
                    }
                    Ok(())
                },
                true,
            )
            .map_err(ApiError::internal)?;
        }
        let mut members = vec![(creator.clone(), creator_role)];
        members.extend(others.iter().map(|user| (user.clone(), Role::Member)));
        let record = ChatRecord {
            id: chat,
            kind,
            visibility,
            name: name.to_string(),
            topic: topic.to_string(),
            owner_org: self.org_name.clone(),
            created_ms: now,
            member_count: members.len(),
            last_activity_ms: now,
            last_message: None,
            dm_members: if kind == ChatKind::Dm {
                let mut all: Vec<UserId> = members.iter().map(|(u, _)| u.clone()).collect();
                all.sort();
                all
            } else {
                Vec::new()
            },
            federated: others.iter().any(|user| user.org_name() != self.org_name),
        };
        tx.batch
            .put(Tree::Chats, chat.as_bytes().to_vec(), json(&record));
        self.dirty.chats.remove(&chat);
        for (user, role) in &members {
            self.put_member_view(tx, &chat, user, *role);
            self.emit(
                tx,
                Audience::User(user.clone()),
                EventBody::ChatJoined {
                    chat: ChatView::of(&record, Some(*role)),
                },
            );
        }
        self.chats.insert(chat, docs);
        Ok(ChatView::of(&record, Some(creator_role)))
    }

    fn put_member_view(&mut self, tx: &mut Tx, chat: &ChatId, user: &UserId, role: Role) {
        let member = MemberView {
            user_id: user.clone(),
            role,
        };
        tx.batch
            .put(Tree::Members, keys::chat_member(chat, user), json(&member));
        tx.batch
            .put(Tree::UserChats, keys::user_chat(user, chat), Vec::new());
    }

    fn open_dm(
        &mut self,
        tx: &mut Tx,
        creator: &UserId,
        others: Vec<UserId>,
    ) -> ApiResult<(ChatView, bool)> {
        let mut everyone: Vec<UserId> = others;
        everyone.push(creator.clone());
        everyone.sort();
        everyone.dedup();
        if everyone.len() < 2 || everyone.len() > self.limits.dm_members_max {
            return Err(ApiError::bad_request(
                "invalid_body",
                format!(
                    "a DM has 2 to {} people including you",
                    self.limits.dm_members_max
                ),
            ));
        }
        let mut orgs = Vec::new();
        for user in &everyone {
            let org = self
                .org_of_user(user)
                .map_err(|_| ApiError::bad_request("invalid_body", format!("no user {user}")))?;
            if org == self.key.id() {
                let record = self.user_record(user).map_err(|_| {
                    ApiError::bad_request("invalid_body", format!("no user {user}"))
                })?;
                if record.disabled {
                    return Err(ApiError::bad_request(
                        "invalid_body",
                        format!("{user} is disabled"),
                    ));
                }
            }
            if !orgs.contains(&org) {
                orgs.push(org);
            }
        }
        // One conversation per set of people: the chat id is derived from the set and from the
        // organisation that opens it; a DM the same people already have, opened by any of
        // their organisations, is reused.
        let mut hasher = Sha256::new();
        hasher.update(b"confab/v1/dm\0");
        for user in &everyone {
            hasher.update(user.as_str().as_bytes());
            hasher.update([0]);
        }
        let digest = hasher.finalize();
        let mut set_hash = [0u8; 8];
        set_hash.copy_from_slice(&digest[..8]);
        for org in &orgs {
            let candidate = remote::chat_id_for(org, set_hash);
            if let Some(record) = views::chat(&self.reads(), &candidate)? {
                return Ok((views::chat_view(&self.reads(), &record, creator)?, false));
            }
        }
        let chat = remote::chat_id_for(&self.key.id(), set_hash);
        let others: Vec<UserId> = everyone.iter().filter(|u| *u != creator).cloned().collect();
        let view = self.create_chat(
            tx,
            chat,
            ChatKind::Dm,
            Visibility::Dm,
            "",
            "",
            creator,
            &others,
        )?;
        Ok((view, true))
    }

    fn update_chat(
        &mut self,
        tx: &mut Tx,
        user: &UserId,
        chat: &ChatId,
        name: Option<String>,
        topic: Option<String>,
    ) -> ApiResult<ChatView> {
        let mut record = self.chat_record(chat)?;
        let role = self.require_role(chat, user)?;
        let name = name.map(|n| self.validate_chat_name(&n)).transpose()?;
        let topic = topic.map(|t| self.validate_topic(&t)).transpose()?;
        if name.is_some() && (record.kind == ChatKind::Dm || role < Role::Admin) {
            return Err(ApiError::forbidden(
                "forbidden",
                "only the channel's owner or an admin can rename it",
            ));
        }
        let mut docs = self.take_owned_docs(chat)?;
        let (n, t) = (name.clone(), topic.clone());
        docs.change_control(
            &self.key,
            now_ms(),
            &mut tx.batch,
            |doc| {
                if let Some(name) = &n {
                    control::set_name(doc, name)?;
                }
                if let Some(topic) = &t {
                    control::set_topic(doc, topic)?;
                }
                Ok(())
            },
            false,
        )
        .map_err(ApiError::internal)?;
        self.chats.insert(*chat, docs);
        if let Some(name) = name {
            record.name = name;
        }
        if let Some(topic) = topic {
            record.topic = topic;
        }
        tx.batch
            .put(Tree::Chats, chat.as_bytes().to_vec(), json(&record));
        self.dirty.chats.remove(chat);
        self.emit(
            tx,
            Audience::Chat(*chat),
            EventBody::ChatUpdated {
                chat: ChatView::of(&record, None),
            },
        );
        Ok(ChatView::of(&record, Some(role)))
    }

    /// Adds `user` to the control document and views; the caller checked the rights.
    fn add_to_chat(
        &mut self,
        tx: &mut Tx,
        record: &mut ChatRecord,
        user: &UserId,
        role: Role,
    ) -> ApiResult<()> {
        if record.member_count >= self.limits.channel_members_max {
            return Err(ApiError::forbidden(
                "member_limit",
                format!(
                    "the channel has reached its limit of {} members",
                    self.limits.channel_members_max
                ),
            ));
        }
        let org = self.org_of_user(user)?;
        if org == self.key.id() {
            let target = self.user_record(user)?;
            if target.disabled {
                return Err(ApiError::bad_request(
                    "invalid_body",
                    format!("{user} is disabled"),
                ));
            }
        }
        let mut docs = self.take_owned_docs(&record.id)?;
        let member = user.clone();
        let epoch = docs.state.epoch + 1;
        let ranges = org_ranges_joining(&docs.state, &org, epoch);
        docs.change_control(
            &self.key,
            now_ms(),
            &mut tx.batch,
            |doc| {
                control::put_member(doc, &member, &MemberRecord { role, org })?;
                if let Some(ranges) = &ranges {
                    control::set_org_ranges(doc, &org, ranges)?;
                }
                Ok(())
            },
            true,
        )
        .map_err(ApiError::internal)?;
        self.chats.insert(record.id, docs);
        record.member_count += 1;
        record.federated |= org != self.key.id();
        tx.batch
            .put(Tree::Chats, record.id.as_bytes().to_vec(), json(&*record));
        self.dirty.chats.remove(&record.id);
        self.put_member_view(tx, &record.id, user, role);
        self.emit(
            tx,
            Audience::User(user.clone()),
            EventBody::ChatJoined {
                chat: ChatView::of(record, Some(role)),
            },
        );
        self.emit(
            tx,
            Audience::Chat(record.id),
            EventBody::ChatUpdated {
                chat: ChatView::of(record, None),
            },
        );
        Ok(())
    }

    fn remove_from_chat(
        &mut self,
        tx: &mut Tx,
        record: &mut ChatRecord,
        user: &UserId,
    ) -> ApiResult<()> {
        let mut docs = self.take_owned_docs(&record.id)?;
        let member = user.clone();
        let epoch = docs.state.epoch + 1;
        let ranges = org_ranges_leaving(&docs.state, user, epoch);
        docs.change_control(
            &self.key,
            now_ms(),
            &mut tx.batch,
            |doc| {
                control::remove_member(doc, &member)?;
                if let Some((org, ranges)) = &ranges {
                    control::set_org_ranges(doc, org, ranges)?;
                }
                Ok(())
            },
            true,
        )
        .map_err(ApiError::internal)?;
        self.chats.insert(record.id, docs);
        record.member_count = record.member_count.saturating_sub(1);
        tx.batch
            .put(Tree::Chats, record.id.as_bytes().to_vec(), json(&*record));
        self.dirty.chats.remove(&record.id);
        tx.batch
            .delete(Tree::Members, keys::chat_member(&record.id, user));
        tx.batch
            .delete(Tree::UserChats, keys::user_chat(user, &record.id));
        self.emit(
            tx,
            Audience::User(user.clone()),
            EventBody::ChatLeft { chat_id: record.id },
        );
        self.emit(
            tx,
            Audience::Chat(record.id),
            EventBody::ChatUpdated {
                chat: ChatView::of(record, None),
            },
        );
        Ok(())
    }

    fn join(&mut self, tx: &mut Tx, user: &UserId, chat: &ChatId) -> ApiResult<ChatView> {
        let mut record = self.chat_record(chat)?;
        if let Some(role) = views::role(&self.reads(), chat, user)? {
            return Ok(ChatView::of(&record, Some(role)));
        }
        if record.visibility != Visibility::Public {
            return Err(ApiError::not_found("chat"));
        }
        self.add_to_chat(tx, &mut record, user, Role::Member)?;
        Ok(ChatView::of(&record, Some(Role::Member)))
    }

    fn leave(&mut self, tx: &mut Tx, user: &UserId, chat: &ChatId) -> ApiResult<()> {
        let mut record = self.chat_record(chat)?;
        self.require_role(chat, user)?;
        if record.kind == ChatKind::Dm {
            return Err(ApiError::bad_request(
                "bad_request",
                "you cannot leave a direct message",
            ));
        }
        self.remove_from_chat(tx, &mut record, user)
    }

    fn add_member(
        &mut self,
        tx: &mut Tx,
        by: &UserId,
        chat: &ChatId,
        target: &UserId,
        role: Role,
    ) -> ApiResult<MemberView> {
        let mut record = self.chat_record(chat)?;
        let by_role = self.require_role(chat, by)?;
        if record.kind == ChatKind::Dm {
            return Err(ApiError::bad_request(
                "bad_request",
                "a DM's members are fixed; start a new DM",
            ));
        }
        if record.visibility == Visibility::Private && by_role < Role::Admin {
            return Err(ApiError::forbidden(
                "forbidden",
                "only the owner or an admin can invite to a private channel",
            ));
        }
        if role == Role::Owner || (role == Role::Admin && by_role < Role::Owner) {
            return Err(ApiError::forbidden(
                "forbidden",
                "you cannot grant that role",
            ));
        }
        if views::role(&self.reads(), chat, target)?.is_some() {
            return Err(ApiError::conflict(
                "conflict",
                format!("{target} is already a member"),
            ));
        }
        self.add_to_chat(tx, &mut record, target, role)?;
        Ok(MemberView {
            user_id: target.clone(),
            role,
        })
    }

    fn set_role(
        &mut self,
        tx: &mut Tx,
        by: &UserId,
        chat: &ChatId,
        target: &UserId,
        role: Role,
    ) -> ApiResult<MemberView> {
        let record = self.chat_record(chat)?;
        if self.require_role(chat, by)? != Role::Owner || record.kind == ChatKind::Dm {
            return Err(ApiError::forbidden(
                "forbidden",
                "only the channel's owner changes roles",
            ));
        }
        if role == Role::Owner {
            return Err(ApiError::bad_request(
                "invalid_body",
                "role is admin or member",
            ));
        }
        let current = views::role(&self.reads(), chat, target)?
            .ok_or_else(|| ApiError::not_found("member"))?;
        if current == Role::Owner {
            return Err(ApiError::forbidden(
                "forbidden",
                "the owner's role cannot be changed",
            ));
        }
        let org = self.org_of_user(target)?;
        let mut docs = self.take_owned_docs(chat)?;
        let member = target.clone();
        docs.change_control(
            &self.key,
            now_ms(),
            &mut tx.batch,
            |doc| control::put_member(doc, &member, &MemberRecord { role, org }),
            false,
        )
        .map_err(ApiError::internal)?;
        self.chats.insert(*chat, docs);
        self.put_member_view(tx, chat, target, role);
        self.emit(
            tx,
            Audience::Chat(*chat),
            EventBody::ChatUpdated {
                chat: ChatView::of(&record, None),
            },
        );
        Ok(MemberView {
            user_id: target.clone(),
            role,
        })
    }

    fn remove_member(
        &mut self,
        tx: &mut Tx,
        by: &UserId,
        chat: &ChatId,
        target: &UserId,
    ) -> ApiResult<()> {
        let mut record = self.chat_record(chat)?;
        let by_role = self.require_role(chat, by)?;
        if record.kind == ChatKind::Dm || by_role < Role::Admin {
            return Err(ApiError::forbidden(
                "forbidden",
                "only the owner or an admin removes members",
            ));
        }
        let target_role = views::role(&self.reads(), chat, target)?
            .ok_or_else(|| ApiError::not_found("member"))?;
        if target_role >= by_role {
            return Err(ApiError::forbidden(
                "forbidden",
                "you cannot remove a member of equal or higher role",
            ));
        }
        self.remove_from_chat(tx, &mut record, target)
    }

    // ----- messages -----

    fn check_body(&self, body: &str) -> ApiResult<()> {
        let chars = body.chars().count();
        if chars > self.limits.message_chars_max {
            return Err(ApiError::too_large(
                "message_too_long",
                format!(
                    "message body is {chars} characters; the limit is {}",
                    self.limits.message_chars_max
                ),
            ));
        }
        if body.trim().is_empty() {
            return Err(ApiError::bad_request(
                "invalid_body",
                "message body is empty",
            ));
        }
        Ok(())
    }

    fn mentions(&self, body: &str) -> (Vec<UserId>, bool) {
        views::parse_mentions(&self.reads(), &self.org_name, body)
    }

    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        tx: &mut Tx,
        user: &UserId,
        chat: &ChatId,
        body: String,
        reply_to: Option<MessageId>,
        client_id: Option<String>,
        attachments: Vec<Attachment>,
    ) -> ApiResult<(MessageView, bool)> {
        if attachments.len() > bucket::ATTACHMENTS_PER_MESSAGE_MAX {
            return Err(ApiError::bad_request(
                "too_many_attachments",
                format!(
                    "a message carries at most {} files",
                    bucket::ATTACHMENTS_PER_MESSAGE_MAX
                ),
            ));
        }
        if attachments.is_empty() || !body.is_empty() {
            self.check_body(&body)?;
        }
        if let Some(client_id) = &client_id {
            if client_id.is_empty() || client_id.len() > 64 {
                return Err(ApiError::bad_request(
                    "invalid_body",
                    "client_id is 1 to 64 bytes",
                ));
            }
            if let Some(found) = self
                .reads()
                .get(Tree::ClientIds, &keys::client_id(user, client_id))?
            {
                let existing = ChatId::from_slice(&found[..16.min(found.len())])
                    .zip(MessageId::from_slice(found.get(16..).unwrap_or_default()))
                    .and_then(|(c, m)| views::message(&self.reads(), &c, &m).ok().flatten());
                if let Some(message) = existing {
                    return Ok((message, false));
                }
            }
        }
        let mut record = self.chat_record(chat)?;
        self.require_role(chat, user)?;
        if let Some(parent) = &reply_to {
            if views::message(&self.reads(), chat, parent)?.is_none() {
                return Err(ApiError::bad_request(
                    "invalid_body",
                    "reply_to names no message of this chat",
                ));
            }
        }
        let now = now_ms();
        let time = self.hlc.tick(now);
        let org = self.key.id();
        let id = MessageId::new(time, &org, self.unique);
        let (mentions, mention_all) = self.mentions(&body);
        let stored = MessageRecord {
            author: user.clone(),
            body,
            reply_to,
            attachments: attachments.iter().map(Into::into).collect(),
        };
        let mut docs = self.take_docs(chat)?;
        docs.change_bucket(&self.key, now, &mut tx.batch, |doc, collections| {
            bucket::put_message(doc, collections, &org, &id, &stored)
        })
        .map_err(doc_error)?;
        docs.bucket_messages += 1;
        // Only the owner seals a bucket (in its control document); others write on until it does.
        if docs.bucket_messages >= self.limits.bucket_messages_max && docs.state.info.owner == org {
            docs.roll_over(&self.key, now, random_bytes(), &mut tx.batch)
                .map_err(ApiError::internal)?;
        }
        self.chats.insert(*chat, docs);
        let message = MessageView {
            id,
            chat_id: *chat,
            author: user.clone(),
            body: stored.body,
            reply_to,
            created_ms: time.ms,
            edited_ms: None,
            deleted: false,
            mentions,
            mention_all,
            state: MessageState::Sent,
            reactions: Vec::new(),
            attachments,
        };
        tx.batch
            .put(Tree::Messages, keys::message(chat, &id), json(&message));
        for attachment in &message.attachments {
            for blob in attachment.blob_ids() {
                tx.batch.put(
                    Tree::MediaRefs,
                    keys::media_ref(blob, chat, &id),
                    Vec::new(),
                );
            }
        }
        tx.search.push(SearchOp::Upsert(search_doc(&message)));
        self.dirty.hlc = Some(time);
        record.last_activity_ms = now.max(record.last_activity_ms);
        record.last_message = Some(id);
        self.dirty.chats.insert(*chat, record);
        // Your own message is read by you.
        self.dirty.markers.insert((user.clone(), *chat), id);
        if let Some(client_id) = &client_id {
            let mut value = chat.as_bytes().to_vec();
            value.extend_from_slice(id.as_bytes());
            tx.batch
                .put(Tree::ClientIds, keys::client_id(user, client_id), value);
        }
        self.emit(
            tx,
            Audience::Chat(*chat),
            EventBody::MessageCreated {
                message: message.clone(),
            },
        );
        Ok((message, true))
    }

    fn message_for_update(&self, chat: &ChatId, message: &MessageId) -> ApiResult<MessageView> {
        let found = views::message(&self.reads(), chat, message)?
            .ok_or_else(|| ApiError::not_found("message"))?;
        if found.deleted {
            return Err(ApiError::not_found("message"));
        }
        Ok(found)
    }

    fn write_update(
        &mut self,
        tx: &mut Tx,
        chat: &ChatId,
        user: &UserId,
        target: MessageId,
        op: UpdateOp,
    ) -> ApiResult<u64> {
        let now = now_ms();
        let at = self.hlc.tick(now);
        let org = self.key.id();
        let update = UpdateRecord {
            target,
            by: user.clone(),
            at,
            op,
        };
        let mut docs = self.take_docs(chat)?;
        docs.change_bucket(&self.key, now, &mut tx.batch, |doc, collections| {
            bucket::put_update(doc, collections, &org, &update)
        })
        .map_err(doc_error)?;
        self.chats.insert(*chat, docs);
        self.dirty.hlc = Some(at);
        Ok(at.ms)
    }

    fn edit(
        &mut self,
        tx: &mut Tx,
        user: &UserId,
        chat: &ChatId,
        message: &MessageId,
        body: String,
    ) -> ApiResult<MessageView> {
        self.check_body(&body)?;
        self.require_role(chat, user)?;
        let mut view = self.message_for_update(chat, message)?;
        if &view.author != user {
            return Err(ApiError::forbidden(
                "forbidden",
                "only the author edits a message",
            ));
        }
        let at = self.write_update(
            tx,
            chat,
            user,
            *message,
            UpdateOp::Edit { body: body.clone() },
        )?;
        let (mentions, mention_all) = self.mentions(&body);
        view.body = body;
        view.edited_ms = Some(at);
        view.mentions = mentions;
        view.mention_all = mention_all;
        tx.batch
            .put(Tree::Messages, keys::message(chat, message), json(&view));
        tx.search.push(SearchOp::Upsert(search_doc(&view)));
        self.emit(
            tx,
            Audience::Chat(*chat),
            EventBody::MessageEdited {
                message: view.clone(),
            },
        );
        Ok(view)
    }

    fn delete(
        &mut self,
        tx: &mut Tx,
        user: &UserId,
        node_admin: bool,
        chat: &ChatId,
        message: &MessageId,
    ) -> ApiResult<MessageView> {
        let role = views::role(&self.reads(), chat, user)?;
        if role.is_none() && !node_admin {
            return Err(ApiError::not_a_member());
        }
        let mut view = self.message_for_update(chat, message)?;
        let moderator = node_admin || role.is_some_and(|r| r >= Role::Admin);
        if &view.author != user && !moderator {
            return Err(ApiError::forbidden(
                "forbidden",
                "only the author or a moderator deletes a message",
            ));
        }
        let at = self.write_update(tx, chat, user, *message, UpdateOp::Delete)?;
        view.edited_ms = Some(at);
        delete_view(tx, &mut view);
        tx.batch
            .put(Tree::Messages, keys::message(chat, message), json(&view));
        self.emit(
            tx,
            Audience::Chat(*chat),
            EventBody::MessageDeleted {
                message: view.clone(),
            },
        );
        Ok(view)
    }

    fn set_notification_level(
        &mut self,
        tx: &mut Tx,
        user: &UserId,
        chat: &ChatId,
        level: NotificationLevel,
    ) -> ApiResult<()> {
        self.require_role(chat, user)?;
        tx.batch.put(
            Tree::NotifySettings,
            keys::user_chat(user, chat),
            json(&level),
        );
        self.emit(
            tx,
            Audience::User(user.clone()),
            EventBody::NotificationsUpdated {
                chat_id: *chat,
                level,
            },
        );
        Ok(())
    }

    fn set_do_not_disturb(
        &mut self,
        tx: &mut Tx,
        user: &UserId,
        until_ms: Option<u64>,
    ) -> ApiResult<UserRecord> {
        let mut record = self.user_record(user)?;
        record.dnd_until_ms = until_ms;
        self.put_user(tx, &record);
        Ok(record)
    }

    fn react(
        &mut self,
        tx: &mut Tx,
        user: &UserId,
        chat: &ChatId,
        message: &MessageId,
        emoji: &str,
        on: bool,
    ) -> ApiResult<MessageView> {
        if !bucket::valid_emoji(emoji) {
            return Err(ApiError::bad_request(
                "invalid_body",
                format!(
                    "an emoji is 1 to {} bytes without spaces or ':'",
                    bucket::EMOJI_BYTES_MAX
                ),
            ));
        }
        self.require_role(chat, user)?;
        let mut view = self.message_for_update(chat, message)?;
        let new_emoji = !view.reactions.iter().any(|r| r.emoji == emoji);
        if on && new_emoji && view.reactions.len() >= REACTION_EMOJIS_PER_MESSAGE_MAX {
            return Err(ApiError::bad_request(
                "invalid_body",
                format!(
                    "a message has at most {REACTION_EMOJIS_PER_MESSAGE_MAX} different reactions"
                ),
            ));
        }
        if !view.set_reaction(emoji, user, on) {
            return Ok(view);
        }
        let now = now_ms();
        let org = self.key.id();
        let mut docs = self.take_docs(chat)?;
        docs.change_bucket(&self.key, now, &mut tx.batch, |doc, collections| {
            bucket::put_reaction(doc, collections, &org, message, emoji, user, on)
        })
        .map_err(doc_error)?;
        self.chats.insert(*chat, docs);
        tx.batch
            .put(Tree::Messages, keys::message(chat, message), json(&view));
        self.emit(
            tx,
            Audience::Chat(*chat),
            EventBody::MessageReactions {
                chat_id: *chat,
                message_id: *message,
                emoji: emoji.to_string(),
                user_id: user.clone(),
                on,
                reactions: view.reactions.clone(),
            },
        );
        Ok(view)
    }

    fn mark_read(
        &mut self,
        tx: &mut Tx,
        user: &UserId,
        chat: &ChatId,
        message: &MessageId,
    ) -> ApiResult<()> {
        self.require_role(chat, user)?;
        if views::message(&self.reads(), chat, message)?.is_none() {
            return Err(ApiError::not_found("message"));
        }
        let previous = match self.dirty.markers.get(&(user.clone(), *chat)) {
            Some(dirty) => Some(*dirty),
            None => views::read_marker(&self.reads(), user, chat)?,
        };
        if previous.as_ref().is_some_and(|p| p >= message) {
            return Ok(());
        }
        tx.batch.put(
            Tree::ReadMarkers,
            keys::user_chat(user, chat),
            message.as_bytes().to_vec(),
        );
        self.dirty.markers.remove(&(user.clone(), *chat));
        self.emit(
            tx,
            Audience::Chat(*chat),
            EventBody::ReadMarker {
                chat_id: *chat,
                user_id: user.clone(),
                message_id: *message,
            },
        );
        // Other people's messages up to the marker are now viewed (bounded work per call).
        let (start, _) = crate::store::prefix_range(chat.as_bytes());
        let start = previous.map_or(start, |p| {
            std::ops::Bound::Excluded(keys::message(chat, &p))
        });
        let end = std::ops::Bound::Included(keys::message(chat, message));
        for (_, value) in self
            .reads()
            .range(Tree::Messages, (start, end), true, 1000)?
        {
            let Ok(view) = serde_json::from_slice::<MessageView>(&value) else {
                continue;
            };
            if &view.author != user {
                self.advance_state(tx, view, MessageState::Viewed);
            }
        }
        Ok(())
    }

    fn mark_received(
        &mut self,
        tx: &mut Tx,
        chat: &ChatId,
        message: &MessageId,
        by: &UserId,
    ) -> ApiResult<()> {
        if let Some(view) = views::message(&self.reads(), chat, message)? {
            if &view.author != by {
                self.advance_state(tx, view, MessageState::Received);
            }
        }
        Ok(())
    }

    /// Moves a message's delivery state forward to `to` (a state never moves back) and tells
    /// its author.
    fn advance_state(&mut self, tx: &mut Tx, mut view: MessageView, to: MessageState) {
        if view.state >= to {
            return;
        }
        view.state = to;
        tx.batch.put(
            Tree::Messages,
            keys::message(&view.chat_id, &view.id),
            json(&view),
        );
        self.emit(
            tx,
            Audience::User(view.author.clone()),
            EventBody::MessageState {
                chat_id: view.chat_id,
                message_id: view.id,
                state: to,
            },
        );
    }
}

/// An organisation's membership epochs in a control document: `[from, until)`.
type OrgRanges = Vec<(u64, Option<u64>)>;

/// The organisation ranges to write when a user of `org` joins at `epoch`: a new open range if
/// the organisation is not a member now, else `None` (nothing changes).
fn org_ranges_joining(
    state: &control::ControlState,
    org: &confab_protocol::OrgId,
    epoch: u64,
) -> Option<OrgRanges> {
    let mut ranges = state.orgs.get(org).cloned().unwrap_or_default();
    if ranges.iter().any(|(_, until)| until.is_none()) {
        return None;
    }
    ranges.push((epoch, None));
    Some(ranges)
}

/// The organisation ranges to write when `user` leaves at `epoch`: the user's organisation's
/// open range closes if nobody else of it stays (never the owner's), else `None`.
fn org_ranges_leaving(
    state: &control::ControlState,
    user: &UserId,
    epoch: u64,
) -> Option<(confab_protocol::OrgId, OrgRanges)> {
    let org = state.members.get(user)?.org;
    if org == state.info.owner {
        return None;
    }
    let others_stay = state
        .members
        .iter()
        .any(|(other, member)| other != user && member.org == org);
    if others_stay {
        return None;
    }
    let mut ranges = state.orgs.get(&org).cloned().unwrap_or_default();
    for range in &mut ranges {
        if range.1.is_none() {
            range.1 = Some(epoch);
        }
    }
    Some((org, ranges))
}

/// Deletes a message's view (the caller stores it): its body and files go (the last message
/// carrying a blob going makes it collectable), and so does its search entry.
fn delete_view(tx: &mut Tx, view: &mut MessageView) {
    for attachment in view.delete() {
        for blob in attachment.blob_ids() {
            tx.batch.delete(
                Tree::MediaRefs,
                keys::media_ref(blob, &view.chat_id, &view.id),
            );
        }
    }
    tx.search.push(SearchOp::Remove(view.chat_id, view.id));
}

/// A document error as the API answers it: a shared chat whose history has not arrived yet is
/// `503 not_synced` (retry shortly); anything else is internal.
fn doc_error(error: docs::DocError) -> ApiError {
    match error {
        docs::DocError::NotSynced => ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "not_synced",
            "this shared chat's history is still arriving from its owner; try again shortly",
        ),
        other => ApiError::internal(other),
    }
}
