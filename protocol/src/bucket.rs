//! History buckets: the automerge documents that hold a chat's messages.
//!
//! A bucket's root is written once, by the owning organisation's genesis change:
//!
//! ```text
//! { "v": "confab-bucket/1", "msg": {}, "upd": {}, "rx": {} }
//! ```
//!
//! Every later write puts a scalar JSON string into one of the three collection maps, under a key
//! that starts with the writing organisation's id, so no organisation can touch another's keys:
//!
//! - `msg["<org>:<message id>"]` = [`MessageRecord`]: a message, written once by its author's
//!   organisation. The message id carries that organisation's tag.
//! - `upd["<org>:<target message id>"]` = [`UpdateRecord`]: an edit or deletion of a message that
//!   may live in this or an older (sealed) bucket. Whether the update is allowed (author's own
//!   organisation, or a moderator) is decided when the views are built, from the control document.
//! - `rx["<org>:<message id>:<emoji>:<user>"]` = `"1"` (reacted) or `"0"` (reaction removed): a
//!   reaction by a user of the writing organisation, to a message of any organisation. Each
//!   (message, emoji, user) has its own key, so concurrent reactions never conflict. Removal
//!   writes `"0"` into the current bucket (a sealed bucket is never written again); for a key
//!   present in several buckets the newest bucket's value counts.

use crate::hlc::HlcTime;
use crate::ids::{MessageId, OrgId, UserId};
use automerge::transaction::Transactable;
use automerge::{AutoCommit, AutomergeError, ObjType, ReadDoc, ScalarValue, Value, ROOT};
use serde::{Deserialize, Serialize};

pub const SCHEMA: &str = "confab-bucket/1";
pub const SCHEMA_KEY: &str = "v";
pub const MESSAGES: &str = "msg";
pub const UPDATES: &str = "upd";
pub const REACTIONS: &str = "rx";
/// The collection maps, in the order genesis creates them.
pub const COLLECTIONS: [&str; 3] = [MESSAGES, UPDATES, REACTIONS];

/// Value of a reaction key: reacted.
pub const REACTION_ON: &str = "1";
/// Value of a reaction key: the reaction was removed.
pub const REACTION_OFF: &str = "0";
/// Longest emoji (or shortcode) a reaction may carry, in bytes.
pub const EMOJI_BYTES_MAX: usize = 32;

/// An emoji of a reaction: 1 to 32 bytes, no whitespace, control characters or `:`.
pub fn valid_emoji(emoji: &str) -> bool {
    !emoji.is_empty()
        && emoji.len() <= EMOJI_BYTES_MAX
        && !emoji.chars().any(|c| c.is_whitespace() || c.is_control() || c == ':')
}

/// Splits the part of a reaction key after the organisation: `<message id>:<emoji>:<user>`.
pub fn parse_reaction_key_rest(rest: &str) -> Option<(MessageId, &str, UserId)> {
    let (message, rest) = rest.split_once(':')?;
    let (emoji, user) = rest.rsplit_once(':')?;
    let message = message.parse().ok()?;
    let user = user.parse().ok()?;
    valid_emoji(emoji).then_some((message, emoji, user))
}

/// Files one message may carry.
pub const ATTACHMENTS_PER_MESSAGE_MAX: usize = 10;

/// A file attached to a message: a content-addressed blob (SHA-256) and what the posting node
/// learnt of it from the bytes (never from the client's claims).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentRecord {
    /// SHA-256 of the content, 64 lowercase hex digits.
    pub id: String,
    pub name: String,
    pub mime: String,
    pub size_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thumbnails: Vec<ThumbnailRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThumbnailRecord {
    pub id: String,
    pub width: u32,
    pub height: u32,
}

impl AttachmentRecord {
    /// Ids are SHA-256 hex; names are at most 255 bytes without control characters or path
    /// separators; at most 4 thumbnails.
    pub fn is_well_formed(&self) -> bool {
        let hex_id = |id: &str| {
            id.len() == 64 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        hex_id(&self.id)
            && !self.name.is_empty()
            && self.name.len() <= 255
            && !self.name.chars().any(|c| c.is_control() || c == '/' || c == '\\')
            && !self.mime.is_empty()
            && self.mime.len() <= 100
            && self.thumbnails.len() <= 4
            && self.thumbnails.iter().all(|t| hex_id(&t.id))
    }
}

/// A message as stored in a bucket (`msg` collection).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageRecord {
    pub author: UserId,
    /// May be empty only when the message carries attachments.
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<MessageId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<AttachmentRecord>,
}

/// What an update does to its target message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum UpdateOp {
    Edit { body: String },
    Delete,
}

/// An edit or deletion (`upd` collection). The latest by `at` wins; a deletion is final.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateRecord {
    pub target: MessageId,
    pub by: UserId,
    pub at: HlcTime,
    #[serde(flatten)]
    pub op: UpdateOp,
}

/// Object ids of the three collection maps of a bucket.
#[derive(Clone, Debug)]
pub struct Collections {
    pub messages: automerge::ObjId,
    pub updates: automerge::ObjId,
    pub reactions: automerge::ObjId,
}

/// Errors reading a bucket.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error("bucket has no genesis")]
    NoGenesis,
    #[error("automerge: {0}")]
    Automerge(#[from] AutomergeError),
}

/// Writes the genesis: the schema marker and the three collection maps. Only the owner does this.
pub fn genesis(doc: &mut AutoCommit) -> Result<Collections, AutomergeError> {
    doc.put(ROOT, SCHEMA_KEY, SCHEMA)?;
    let messages = doc.put_object(ROOT, MESSAGES, ObjType::Map)?;
    let updates = doc.put_object(ROOT, UPDATES, ObjType::Map)?;
    let reactions = doc.put_object(ROOT, REACTIONS, ObjType::Map)?;
    Ok(Collections { messages, updates, reactions })
}

/// Finds the collection maps of an existing bucket.
pub fn collections(doc: &impl ReadDoc) -> Result<Collections, BucketError> {
    let find = |name: &str| -> Result<automerge::ObjId, BucketError> {
        match doc.get(ROOT, name)? {
            Some((Value::Object(ObjType::Map), id)) => Ok(id),
            _ => Err(BucketError::NoGenesis),
        }
    };
    Ok(Collections {
        messages: find(MESSAGES)?,
        updates: find(UPDATES)?,
        reactions: find(REACTIONS)?,
    })
}

/// `"<org>:<rest>"`: the key prefix that puts a key in an organisation's namespace.
pub fn namespaced_key(org: &OrgId, rest: &str) -> String {
    format!("{org}:{rest}")
}

/// Splits a namespaced key into its organisation and the rest.
pub fn split_key(key: &str) -> Option<(OrgId, &str)> {
    let (org, rest) = key.split_once(':')?;
    Some((org.parse().ok()?, rest))
}

pub fn put_message(
    doc: &mut AutoCommit,
    collections: &Collections,
    org: &OrgId,
    id: &MessageId,
    record: &MessageRecord,
) -> Result<(), AutomergeError> {
    let json = serde_json::to_string(record).unwrap_or_default();
    doc.put(&collections.messages, namespaced_key(org, &id.to_string()), json)
}

pub fn put_update(
    doc: &mut AutoCommit,
    collections: &Collections,
    org: &OrgId,
    record: &UpdateRecord,
) -> Result<(), AutomergeError> {
    let json = serde_json::to_string(record).unwrap_or_default();
    doc.put(&collections.updates, namespaced_key(org, &record.target.to_string()), json)
}

/// Puts a reaction (`on`) or its removal into the current bucket.
pub fn put_reaction(
    doc: &mut AutoCommit,
    collections: &Collections,
    org: &OrgId,
    message: &MessageId,
    emoji: &str,
    user: &UserId,
    on: bool,
) -> Result<(), AutomergeError> {
    let key = namespaced_key(org, &format!("{message}:{emoji}:{user}"));
    doc.put(&collections.reactions, key, if on { REACTION_ON } else { REACTION_OFF })
}

/// A reaction entry of a bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReactionEntry {
    pub org: OrgId,
    pub message: MessageId,
    pub emoji: String,
    pub user: UserId,
    pub on: bool,
}

/// Every reaction entry of a bucket whose key and value parse.
pub fn reactions(doc: &impl ReadDoc) -> Result<Vec<ReactionEntry>, BucketError> {
    let collections = collections(doc)?;
    let mut out = Vec::new();
    for (key, value) in string_entries(doc, &collections.reactions)? {
        let Some((org, rest)) = split_key(&key) else {
            continue;
        };
        let Some((message, emoji, user)) = parse_reaction_key_rest(rest) else {
            continue;
        };
        out.push(ReactionEntry {
            org,
            message,
            emoji: emoji.to_string(),
            user,
            on: value == REACTION_ON,
        });
    }
    Ok(out)
}

/// Every message in a bucket whose key and record parse (validation admits no others).
pub fn messages(doc: &impl ReadDoc) -> Result<Vec<(OrgId, MessageId, MessageRecord)>, BucketError> {
    let collections = collections(doc)?;
    let mut out = Vec::new();
    for (key, json) in string_entries(doc, &collections.messages)? {
        let Some((org, rest)) = split_key(&key) else {
            continue;
        };
        let (Ok(id), Ok(record)) = (rest.parse::<MessageId>(), serde_json::from_str(&json)) else {
            continue;
        };
        out.push((org, id, record));
    }
    Ok(out)
}

/// Every update in a bucket, with the organisation that wrote it.
pub fn updates(doc: &impl ReadDoc) -> Result<Vec<(OrgId, UpdateRecord)>, BucketError> {
    let collections = collections(doc)?;
    let mut out = Vec::new();
    for (key, json) in string_entries(doc, &collections.updates)? {
        let Some((org, _)) = split_key(&key) else {
            continue;
        };
        if let Ok(record) = serde_json::from_str(&json) {
            out.push((org, record));
        }
    }
    Ok(out)
}

fn string_entries(
    doc: &impl ReadDoc,
    obj: &automerge::ObjId,
) -> Result<Vec<(String, String)>, AutomergeError> {
    let mut out = Vec::new();
    for key in doc.keys(obj) {
        if let Some((Value::Scalar(value), _)) = doc.get(obj, key.as_str())? {
            if let ScalarValue::Str(text) = value.as_ref() {
                out.push((key, text.to_string()));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_and_read_back() {
        let org = OrgId::from_bytes([4; 32]);
        let mut doc = AutoCommit::new();
        let collections = genesis(&mut doc).unwrap();
        let id = MessageId::new(HlcTime { ms: 10, counter: 0 }, &org, [1; 4]);
        let record = MessageRecord {
            author: "alice@acme".parse().unwrap(),
            body: "hi".into(),
            reply_to: None,
            attachments: Vec::new(),
        };
        put_message(&mut doc, &collections, &org, &id, &record).unwrap();
        let update = UpdateRecord {
            target: id,
            by: "alice@acme".parse().unwrap(),
            at: HlcTime { ms: 11, counter: 0 },
            op: UpdateOp::Edit { body: "hello".into() },
        };
        put_update(&mut doc, &collections, &org, &update).unwrap();
        doc.commit();
        assert_eq!(messages(&doc).unwrap(), vec![(org, id, record)]);
        assert_eq!(updates(&doc).unwrap(), vec![(org, update)]);
    }

    #[test]
    fn record_json_is_stable() {
        let org = OrgId::from_bytes([4; 32]);
        let id = MessageId::new(HlcTime { ms: 10, counter: 0 }, &org, [1; 4]);
        let update = UpdateRecord {
            target: id,
            by: "bob@acme".parse().unwrap(),
            at: HlcTime { ms: 1, counter: 2 },
            op: UpdateOp::Delete,
        };
        assert_eq!(
            serde_json::to_string(&update).unwrap(),
            format!(
                r#"{{"target":"{id}","by":"bob@acme","at":{{"ms":1,"counter":2}},"op":"delete"}}"#
            )
        );
    }
}
