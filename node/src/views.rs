//! Reads of the materialised views: users, chats, members, messages, read markers, the chat
//! list. Writes to these trees happen only in the engine.

use crate::model::{
    keys, ChatListEntry, ChatRecord, ChatView, MemberView, MessageView, NotificationLevel,
    Settings, UserRecord,
};
use crate::store::{prefix_range, KvRead, StoreError, Tree};
use confab_protocol::control::Role;
use confab_protocol::{ChatId, MessageId, UserId};
use serde::de::DeserializeOwned;
use std::ops::Bound;

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|error| StoreError::Backend(format!("unreadable record: {error}")))
}

pub fn settings(store: &dyn KvRead) -> Result<Settings, StoreError> {
    Ok(match store.get(Tree::Meta, b"settings")? {
        Some(bytes) => decode(&bytes)?,
        None => Settings::default(),
    })
}

pub fn user(store: &dyn KvRead, localpart: &str) -> Result<Option<UserRecord>, StoreError> {
    store.get(Tree::Users, localpart.as_bytes())?.map(|b| decode(&b)).transpose()
}

pub fn users(store: &dyn KvRead) -> Result<Vec<UserRecord>, StoreError> {
    store
        .range(Tree::Users, prefix_range(b""), false, usize::MAX)?
        .iter()
        .map(|(_, v)| decode(v))
        .collect()
}

pub fn chat(store: &dyn KvRead, chat: &ChatId) -> Result<Option<ChatRecord>, StoreError> {
    store.get(Tree::Chats, chat.as_bytes())?.map(|b| decode(&b)).transpose()
}

pub fn all_chats(store: &dyn KvRead) -> Result<Vec<ChatRecord>, StoreError> {
    store
        .range(Tree::Chats, prefix_range(b""), false, usize::MAX)?
        .iter()
        .map(|(_, v)| decode(v))
        .collect()
}

pub fn role(store: &dyn KvRead, chat: &ChatId, user: &UserId) -> Result<Option<Role>, StoreError> {
    Ok(store
        .get(Tree::Members, &keys::chat_member(chat, user))?
        .map(|b| decode::<MemberView>(&b))
        .transpose()?
        .map(|member| member.role))
}

pub fn members(store: &dyn KvRead, chat: &ChatId) -> Result<Vec<MemberView>, StoreError> {
    store
        .range(Tree::Members, prefix_range(chat.as_bytes()), false, usize::MAX)?
        .iter()
        .map(|(_, v)| decode(v))
        .collect()
}

pub fn user_chats(store: &dyn KvRead, user: &UserId) -> Result<Vec<ChatId>, StoreError> {
    let prefix = keys::user_prefix(user);
    Ok(store
        .range(Tree::UserChats, prefix_range(&prefix), false, usize::MAX)?
        .iter()
        .filter_map(|(key, _)| ChatId::from_slice(&key[prefix.len()..]))
        .collect())
}

pub fn chat_view(
    store: &dyn KvRead,
    record: &ChatRecord,
    user: &UserId,
) -> Result<ChatView, StoreError> {
    Ok(ChatView::of(record, role(store, &record.id, user)?))
}

pub fn message(
    store: &dyn KvRead,
    chat: &ChatId,
    id: &MessageId,
) -> Result<Option<MessageView>, StoreError> {
    store.get(Tree::Messages, &keys::message(chat, id))?.map(|b| decode(&b)).transpose()
}

/// A page of history, oldest first. Without bounds: the newest `limit`.
pub fn history(
    store: &dyn KvRead,
    chat: &ChatId,
    before: Option<&MessageId>,
    after: Option<&MessageId>,
    limit: usize,
) -> Result<(Vec<MessageView>, bool), StoreError> {
    let prefix = chat.as_bytes().to_vec();
    let (start, end) = prefix_range(&prefix);
    let start = after.map_or(start, |id| Bound::Excluded(keys::message(chat, id)));
    let end = before.map_or(end, |id| Bound::Excluded(keys::message(chat, id)));
    // With only `after`, page forward from it; otherwise page back from the end.
    let reverse = after.is_none();
    let mut page = store.range(Tree::Messages, (start, end), reverse, limit + 1)?;
    let has_more = page.len() > limit;
    page.truncate(limit);
    if reverse {
        page.reverse();
    }
    let messages = page.iter().map(|(_, v)| decode(v)).collect::<Result<Vec<MessageView>, _>>()?;
    Ok((messages, has_more))
}

pub fn read_marker(
    store: &dyn KvRead,
    user: &UserId,
    chat: &ChatId,
) -> Result<Option<MessageId>, StoreError> {
    Ok(store
        .get(Tree::ReadMarkers, &keys::user_chat(user, chat))?
        .and_then(|b| MessageId::from_slice(&b)))
}

/// The chat list entry of one chat for one user: unread and mention counts after their read
/// marker (counting at most `unread_max` messages), and the newest message as preview.
pub fn chat_list_entry(
    store: &dyn KvRead,
    user: &UserId,
    record: &ChatRecord,
    unread_max: usize,
) -> Result<ChatListEntry, StoreError> {
    let last_read = read_marker(store, user, &record.id)?;
    let (start, end) = prefix_range(record.id.as_bytes());
    let start =
        last_read.as_ref().map_or(start, |id| Bound::Excluded(keys::message(&record.id, id)));
    let mut unread_count = 0;
    let mut mention_count = 0;
    for (_, value) in store.range(Tree::Messages, (start, end), false, unread_max)? {
        let message: MessageView = decode(&value)?;
        if message.deleted || &message.author == user {
            continue;
        }
        unread_count += 1;
        if message.mention_all || message.mentions.contains(user) {
            mention_count += 1;
        }
    }
    let last_message = match &record.last_message {
        Some(id) => message(store, &record.id, id)?,
        None => None,
    };
    Ok(ChatListEntry {
        chat: chat_view(store, record, user)?,
        unread_count,
        mention_count,
        last_message,
        last_activity_ms: record.last_activity_ms,
        last_read,
        notification_level: notification_level(store, user, record)?,
    })
}

pub fn chat_list(
    store: &dyn KvRead,
    user: &UserId,
    unread_max: usize,
) -> Result<Vec<ChatListEntry>, StoreError> {
    let mut entries = Vec::new();
    for chat_id in user_chats(store, user)? {
        if let Some(record) = chat(store, &chat_id)? {
            entries.push(chat_list_entry(store, user, &record, unread_max)?);
        }
    }
    entries.sort_by(|a, b| {
        b.last_activity_ms.cmp(&a.last_activity_ms).then(a.chat.id.cmp(&b.chat.id))
    });
    Ok(entries)
}

/// Multi-device sync: messages with id > `after` in every chat of the user, oldest first.
pub fn sync(
    store: &dyn KvRead,
    user: &UserId,
    after: Option<&MessageId>,
    limit: usize,
) -> Result<(Vec<MessageView>, bool), StoreError> {
    let mut all = Vec::new();
    for chat_id in user_chats(store, user)? {
        let (start, end) = prefix_range(chat_id.as_bytes());
        let start = after.map_or(start, |id| Bound::Excluded(keys::message(&chat_id, id)));
        for (_, value) in store.range(Tree::Messages, (start, end), false, limit + 1)? {
            all.push(decode::<MessageView>(&value)?);
        }
    }
    all.sort_by_key(|message| message.id);
    let has_more = all.len() > limit;
    all.truncate(limit);
    Ok((all, has_more))
}

/// `@name` mentions of existing users of this node, and `@channel` / `@here` / `@all` /
/// `@everyone` (which mention everyone in the chat).
pub fn parse_mentions(store: &dyn KvRead, org_name: &str, body: &str) -> (Vec<UserId>, bool) {
    let mut users = Vec::new();
    let mut all = false;
    for (at, _) in body.match_indices('@') {
        if body[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric()) {
            continue; // an e-mail address, not a mention
        }
        let name: String = body[at + 1..]
            .chars()
            .take_while(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
            })
            .collect();
        let name = name.trim_end_matches(['.', '-', '_']);
        match name {
            "" => {}
            "channel" | "here" | "all" | "everyone" => all = true,
            _ => {
                if let Ok(user) = UserId::new(name, org_name) {
                    if !users.contains(&user) && matches!(self::user(store, name), Ok(Some(_))) {
                        users.push(user);
                    }
                }
            }
        }
    }
    (users, all)
}

/// The user's notification level for a chat (the default for its kind if never set).
pub fn notification_level(
    store: &dyn KvRead,
    user: &UserId,
    chat: &ChatRecord,
) -> Result<NotificationLevel, StoreError> {
    Ok(match store.get(Tree::NotifySettings, &keys::user_chat(user, &chat.id))? {
        Some(bytes) => decode(&bytes)?,
        None => NotificationLevel::default_for(chat.kind),
    })
}

/// The user's notification level for each of their chats.
pub fn notification_levels(
    store: &dyn KvRead,
    user: &UserId,
) -> Result<std::collections::HashMap<ChatId, NotificationLevel>, StoreError> {
    let mut levels = std::collections::HashMap::new();
    for chat_id in user_chats(store, user)? {
        if let Some(record) = chat(store, &chat_id)? {
            levels.insert(chat_id, notification_level(store, user, &record)?);
        }
    }
    Ok(levels)
}

/// A user's registered devices, oldest key first.
pub fn devices(
    store: &dyn KvRead,
    user: &UserId,
) -> Result<Vec<crate::model::DeviceRecord>, StoreError> {
    store
        .range(Tree::Devices, prefix_range(&keys::user_prefix(user)), false, usize::MAX)?
        .iter()
        .map(|(_, v)| decode(v))
        .collect()
}

pub fn device(
    store: &dyn KvRead,
    user: &UserId,
    device: &confab_protocol::DeviceId,
) -> Result<Option<crate::model::DeviceRecord>, StoreError> {
    let mut key = keys::user_prefix(user);
    key.extend_from_slice(device.as_bytes());
    store.get(Tree::Devices, &key)?.map(|b| decode(&b)).transpose()
}

/// Pending renunciations (`renunciations/v1`) with their keys: one user's, or everyone's
/// (`None`), at most `limit`.
pub fn renunciations(
    store: &dyn KvRead,
    user: Option<&UserId>,
    limit: usize,
) -> Result<Vec<(Vec<u8>, crate::model::PendingRenunciation)>, StoreError> {
    let range = match user {
        Some(user) => prefix_range(&keys::user_prefix(user)),
        None => (std::ops::Bound::Unbounded, std::ops::Bound::Unbounded),
    };
    store
        .range(Tree::Renunciations, range, false, limit)?
        .into_iter()
        .map(|(key, value)| Ok((key, decode(&value)?)))
        .collect()
}
