//! Records the node stores in its views, and the JSON shapes of the client API
//! (`spec/client-api.md`). Views are derived from the channel documents plus local state
//! (sessions, read markers, delivery states).

use confab_protocol::control::{ChatKind, Role, Visibility};
use confab_protocol::{ChatId, MessageId, UserId};
use serde::{Deserialize, Serialize};

/// A user account (the `Users` tree). The password hash never leaves the node.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UserRecord {
    pub id: UserId,
    pub password_hash: String,
    pub display_name: String,
    pub status_text: String,
    pub time_zone: String,
    pub team: String,
    pub is_admin: bool,
    pub disabled: bool,
    pub created_ms: u64,
    /// Bumped to end every session of the user (disable, password reset).
    #[serde(default)]
    pub session_generation: u64,
    /// Do not disturb until this time (`u64::MAX`: until turned off); `None`: off.
    #[serde(default)]
    pub dnd_until_ms: Option<u64>,
}

impl UserRecord {
    pub fn dnd_active(&self, now_ms: u64) -> bool {
        self.dnd_until_ms.is_some_and(|until| now_ms < until)
    }
}

/// Which messages of a chat notify a user.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NotificationLevel {
    All,
    Mentions,
    Mute,
}

impl NotificationLevel {
    /// DMs notify on everything by default; channels on mentions.
    pub fn default_for(kind: ChatKind) -> Self {
        match kind {
            ChatKind::Dm => NotificationLevel::All,
            ChatKind::Channel => NotificationLevel::Mentions,
        }
    }
}

/// Whether `message` notifies `user`: not their own, not deleted, not during do-not-disturb, and
/// allowed by the chat's level (mentions: `@user`, `@channel`, `@here`, `@all`).
pub fn is_notifying(
    user: &UserId,
    level: NotificationLevel,
    dnd: bool,
    message: &MessageView,
) -> bool {
    if &message.author == user || message.deleted || dnd {
        return false;
    }
    match level {
        NotificationLevel::All => true,
        NotificationLevel::Mentions => message.mention_all || message.mentions.contains(user),
        NotificationLevel::Mute => false,
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct UserView {
    pub id: UserId,
    pub username: String,
    pub display_name: String,
    pub status_text: String,
    pub time_zone: String,
    pub team: String,
    pub is_admin: bool,
    pub disabled: bool,
    pub created_ms: u64,
    /// Do-not-disturb is on now.
    pub dnd: bool,
    pub dnd_until_ms: Option<u64>,
}

impl From<&UserRecord> for UserView {
    fn from(user: &UserRecord) -> Self {
        Self {
            id: user.id.clone(),
            username: user.id.localpart().to_string(),
            display_name: user.display_name.clone(),
            status_text: user.status_text.clone(),
            time_zone: user.time_zone.clone(),
            team: user.team.clone(),
            is_admin: user.is_admin,
            disabled: user.disabled,
            created_ms: user.created_ms,
            dnd: user.dnd_active(now_ms()),
            dnd_until_ms: user.dnd_until_ms,
        }
    }
}

/// A session (the `Sessions` tree, keyed by the SHA-256 of the token).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionRecord {
    pub user: UserId,
    pub created_ms: u64,
    pub expires_ms: u64,
    pub generation: u64,
}

/// Node-wide settings (the `Meta` tree, key `settings`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Settings {
    pub registration_open: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self { registration_open: true }
    }
}

/// A chat's view (the `Chats` tree), derived from its control document.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ChatRecord {
    pub id: ChatId,
    pub kind: ChatKind,
    pub visibility: Visibility,
    pub name: String,
    pub topic: String,
    pub owner_org: String,
    pub created_ms: u64,
    pub member_count: usize,
    pub last_activity_ms: u64,
    pub last_message: Option<MessageId>,
    /// DMs: the participants, for naming the chat in the client.
    #[serde(default)]
    pub dm_members: Vec<UserId>,
    /// Whether another organisation is or was a member: its node is admitted for catch-up
    /// (current members) or for the control document (former ones) after a restart too.
    #[serde(default)]
    pub federated: bool,
}

/// A chat as one user sees it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ChatView {
    pub id: ChatId,
    pub kind: ChatKind,
    pub visibility: Visibility,
    pub name: String,
    pub topic: String,
    pub owner_org: String,
    pub created_ms: u64,
    pub member_count: usize,
    pub joined: bool,
    pub my_role: Option<Role>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dm_members: Vec<UserId>,
}

impl ChatView {
    pub fn of(chat: &ChatRecord, my_role: Option<Role>) -> Self {
        Self {
            id: chat.id,
            kind: chat.kind,
            visibility: chat.visibility,
            name: chat.name.clone(),
            topic: chat.topic.clone(),
            owner_org: chat.owner_org.clone(),
            created_ms: chat.created_ms,
            member_count: chat.member_count,
            joined: my_role.is_some(),
            my_role,
            dm_members: chat.dm_members.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MemberView {
    pub user_id: UserId,
    pub role: Role,
}

/// Delivery state of a message, as its sender sees it. Ordered: a state only moves forward.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum MessageState {
    Sent,
    /// A recipient device that was offline had the message pushed to it through its relay
    /// (the relay accepted the sealed envelope).
    NotificationSent,
    Received,
    Viewed,
    Deleted,
}

/// A message view (the `Messages` tree), with edits and deletion applied.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MessageView {
    pub id: MessageId,
    pub chat_id: ChatId,
    pub author: UserId,
    pub body: String,
    pub reply_to: Option<MessageId>,
    pub created_ms: u64,
    pub edited_ms: Option<u64>,
    pub deleted: bool,
    pub mentions: Vec<UserId>,
    pub mention_all: bool,
    pub state: MessageState,
    /// Reactions, sorted by emoji; users sorted.
    #[serde(default)]
    pub reactions: Vec<ReactionView>,
    /// Files, in the order the author attached them; empty once deleted.
    #[serde(default)]
    pub attachments: Vec<crate::media::Attachment>,
}

/// One emoji's reactions to a message.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReactionView {
    pub emoji: String,
    pub count: usize,
    pub users: Vec<UserId>,
}

impl MessageView {
    /// The view of a message as its record in a bucket stores it, before any update.
    pub fn from_record(
        id: MessageId,
        chat: ChatId,
        record: confab_protocol::bucket::MessageRecord,
        (mentions, mention_all): (Vec<UserId>, bool),
        state: MessageState,
    ) -> Self {
        MessageView {
            id,
            chat_id: chat,
            author: record.author,
            body: record.body,
            reply_to: record.reply_to,
            created_ms: id.time_ms(),
            edited_ms: None,
            deleted: false,
            mentions,
            mention_all,
            state,
            reactions: Vec::new(),
            attachments: record.attachments.into_iter().map(Into::into).collect(),
        }
    }

    /// Turns the view into a deleted message's (no body, mentions, reactions or files) and
    /// returns the files it carried.
    pub fn delete(&mut self) -> Vec<crate::media::Attachment> {
        self.body = String::new();
        self.deleted = true;
        self.mentions.clear();
        self.mention_all = false;
        self.reactions.clear();
        self.state = MessageState::Deleted;
        std::mem::take(&mut self.attachments)
    }

    /// Adds or removes `user`'s `emoji`; false if nothing changed.
    pub fn set_reaction(&mut self, emoji: &str, user: &UserId, on: bool) -> bool {
        let position = self.reactions.binary_search_by(|r| r.emoji.as_str().cmp(emoji));
        match (position, on) {
            (Ok(at), true) => {
                let users = &mut self.reactions[at].users;
                match users.binary_search(user) {
                    Ok(_) => return false,
                    Err(slot) => users.insert(slot, user.clone()),
                }
                self.reactions[at].count = self.reactions[at].users.len();
            }
            (Ok(at), false) => {
                let users = &mut self.reactions[at].users;
                match users.binary_search(user) {
                    Ok(slot) => users.remove(slot),
                    Err(_) => return false,
                };
                self.reactions[at].count = self.reactions[at].users.len();
                if self.reactions[at].users.is_empty() {
                    self.reactions.remove(at);
                }
            }
            (Err(slot), true) => {
                self.reactions.insert(
                    slot,
                    ReactionView { emoji: emoji.to_string(), count: 1, users: vec![user.clone()] },
                );
            }
            (Err(_), false) => return false,
        }
        true
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ChatListEntry {
    pub chat: ChatView,
    pub unread_count: usize,
    pub mention_count: usize,
    pub last_message: Option<MessageView>,
    pub last_activity_ms: u64,
    pub last_read: Option<MessageId>,
    pub notification_level: NotificationLevel,
}

/// A browser device of a user: its keys (made in WebCrypto, the secrets never leave it) and the
/// relay queue it registered, if any (the `devices/v1` tree).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DeviceRecord {
    pub id: confab_protocol::DeviceId,
    pub user: UserId,
    pub name: String,
    pub signing_key: confab_protocol::relay::DevicePublicKey,
    pub sealing_key: confab_protocol::devices::SealingKey,
    pub created_ms: u64,
    pub relay: Option<RelayRegistration>,
}

/// Where the node posts sealed envelopes for a device while it is offline.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RelayRegistration {
    /// The relay's base URL (`https://relay.example` or, in tests, `http://127.0.0.1:PORT`).
    pub url: String,
    pub queue: confab_protocol::relay::QueueId,
    /// The device-issued capability token for this node's organisation, in text form.
    pub capability: String,
}

/// A capability the node still has to renounce at a relay (`renunciations/v1`): recorded in
/// the transaction that removes the device or moves it off the queue, deleted once the relay
/// took it (or it can no longer matter).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PendingRenunciation {
    pub user: UserId,
    pub relay: RelayRegistration,
    pub recorded_ms: u64,
}

/// Key helpers for the trees that are keyed by user and chat.
pub mod keys {
    use confab_protocol::{ChatId, MessageId, UserId};

    pub fn user_chat(user: &UserId, chat: &ChatId) -> Vec<u8> {
        let mut key = user_prefix(user);
        key.extend_from_slice(chat.as_bytes());
        key
    }

    /// `devices/v1` key of one device.
    pub fn device(user: &UserId, device: &confab_protocol::DeviceId) -> Vec<u8> {
        let mut key = user_prefix(user);
        key.extend_from_slice(device.as_bytes());
        key
    }

    /// `renunciations/v1` key of one capability of `user`'s former device.
    pub fn renunciation(
        user: &UserId,
        queue: &confab_protocol::relay::QueueId,
        capability: &confab_protocol::relay::CapabilityId,
    ) -> Vec<u8> {
        let mut key = user_prefix(user);
        key.extend_from_slice(queue.as_bytes());
        key.extend_from_slice(capability.as_bytes());
        key
    }

    pub fn user_prefix(user: &UserId) -> Vec<u8> {
        let mut key = user.as_str().as_bytes().to_vec();
        key.push(0);
        key
    }

    pub fn chat_member(chat: &ChatId, user: &UserId) -> Vec<u8> {
        let mut key = chat.as_bytes().to_vec();
        key.extend_from_slice(user.as_str().as_bytes());
        key
    }

    pub fn message(chat: &ChatId, id: &MessageId) -> Vec<u8> {
        let mut key = chat.as_bytes().to_vec();
        key.extend_from_slice(id.as_bytes());
        key
    }

    pub fn media_ref(blob: &str, chat: &ChatId, message: &MessageId) -> Vec<u8> {
        let mut key = blob.as_bytes().to_vec();
        key.extend_from_slice(chat.as_bytes());
        key.extend_from_slice(message.as_bytes());
        key
    }

    pub fn upload(user: &UserId, blob: &str) -> Vec<u8> {
        let mut key = user_prefix(user);
        key.extend_from_slice(blob.as_bytes());
        key
    }

    pub fn client_id(user: &UserId, client_id: &str) -> Vec<u8> {
        let mut key = user_prefix(user);
        key.extend_from_slice(client_id.as_bytes());
        key
    }
}

/// Whether `text` is one line of plain text with a number of characters in `chars`: no
/// control characters (new lines, escapes), as names, topics and profile fields must be.
pub fn is_plain_text(text: &str, chars: std::ops::RangeInclusive<usize>) -> bool {
    chars.contains(&text.chars().count()) && !text.chars().any(char::is_control)
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
