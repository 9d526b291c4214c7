//! Rebuilding the materialised views from the channel documents.
//!
//! Chats, members, the chats of each user and every message (with its edits and deletions) are
//! derived again from the stored signed changes. Local delivery state that is not in the
//! documents (read markers, `received` / `viewed`) is kept from the old views.
//!
//! An update (edit or deletion) applies to a message when it was written by the message's own
//! organisation (whose node checked that the user was the author or a moderator) or by the
//! chat's owning organisation (moderation). Updates apply in HLC order; a deletion is final.

use super::derive;
use super::docs::{load_history, DocError};
use crate::model::{keys, MessageState, MessageView};
use crate::store::{prefix_range, KvRead, KvStore, StoreError, Tree, WriteBatch};
use crate::views;
use confab_protocol::bucket::{self, UpdateOp};
use confab_protocol::{ChatId, OrgId};
use std::collections::BTreeMap;
use std::ops::Bound;

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("chat {chat}: {source}")]
    Doc { chat: ChatId, source: Box<DocError> },
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct RebuildReport {
    pub chats: usize,
    pub messages: usize,
}

/// Every chat that has a stored control document.
fn stored_chats(store: &dyn KvRead) -> Result<Vec<ChatId>, StoreError> {
    let mut chats = Vec::new();
    let mut from: Bound<Vec<u8>> = Bound::Unbounded;
    while let Some((key, _)) =
        store.range(Tree::Changes, (from.clone(), Bound::Unbounded), false, 1)?.into_iter().next()
    {
        let Some(chat) = key.get(..16).and_then(ChatId::from_slice) else {
            break;
        };
        chats.push(chat);
        from = match prefix_range(chat.as_bytes()).1 {
            Bound::Excluded(next) => Bound::Included(next),
            _ => break,
        };
    }
    Ok(chats)
}

/// Rebuilds the views of every chat, one atomic batch per chat, then flushes.
pub async fn rebuild_views(
    store: &dyn KvStore,
    own_org: &OrgId,
    org_name: &str,
) -> Result<RebuildReport, RebuildError> {
    let mut report = RebuildReport::default();
    clear_tree(store, Tree::MediaRefs)?;
    for chat in stored_chats(store)? {
        let messages =
            rebuild_chat(store, chat, own_org, org_name).map_err(|source| match source {
                RebuildError::Doc { source, .. } => RebuildError::Doc { chat, source },
                other => other,
            })?;
        report.chats += 1;
        report.messages += messages;
    }
    store.flush().await?;
    Ok(report)
}

/// Deletes every entry of a derived tree, a page at a time.
fn clear_tree(store: &dyn KvStore, tree: Tree) -> Result<(), StoreError> {
    loop {
        let page = store.range(tree, (Bound::Unbounded, Bound::Unbounded), false, 10_000)?;
        if page.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        for (key, _) in page {
            batch.delete(tree, key);
        }
        store.apply(batch)?;
    }
}

fn rebuild_chat(
    store: &dyn KvStore,
    chat: ChatId,
    own_org: &OrgId,
    org_name: &str,
) -> Result<usize, RebuildError> {
    let (state, buckets) = load_history(store, chat)
        .map_err(|source| RebuildError::Doc { chat, source: Box::new(source) })?
        .ok_or(RebuildError::Doc {
            chat,
            source: Box::new(DocError::Damaged("no control document".into())),
        })?;
    let mut batch = WriteBatch::default();

    // Old views: keep delivery states, drop everything else of this chat.
    let mut old_states = BTreeMap::new();
    for (key, value) in
        store.range(Tree::Messages, prefix_range(chat.as_bytes()), false, usize::MAX)?
    {
        if let Ok(view) = serde_json::from_slice::<MessageView>(&value) {
            old_states.insert(view.id, view.state);
        }
        batch.delete(Tree::Messages, key);
    }
    for member in views::members(store, &chat)? {
        batch.delete(Tree::Members, keys::chat_member(&chat, &member.user_id));
        batch.delete(Tree::UserChats, keys::user_chat(&member.user_id, &chat));
    }

    // Messages, then their updates in HLC order.
    let mut messages: BTreeMap<confab_protocol::MessageId, (OrgId, MessageView)> = BTreeMap::new();
    let mut updates = Vec::new();
    let mut reactions = BTreeMap::new();
    for doc in &buckets {
        for (org, id, record) in bucket::messages(doc).map_err(|e| RebuildError::Doc {
            chat,
            source: Box::new(DocError::Damaged(e.to_string())),
        })? {
            let mentions = views::parse_mentions(store, org_name, &record.body);
            let state = old_states
                .get(&id)
                .copied()
                .filter(|s| *s != MessageState::Deleted)
                .unwrap_or(MessageState::Sent);
            let view = MessageView::from_record(id, chat, record, mentions, state);
            messages.insert(id, (org, view));
        }
        // Later buckets override earlier ones for the same reaction key.
        for entry in bucket::reactions(doc).map_err(|e| RebuildError::Doc {
            chat,
            source: Box::new(DocError::Damaged(e.to_string())),
        })? {
            // A user's reaction counts only when written by their own organisation.
            if entry.org == *own_org && entry.user.org_name() != org_name {
                continue;
            }
            reactions.insert((entry.message, entry.emoji, entry.user), entry.on);
        }
        updates.extend(bucket::updates(doc).map_err(|e| RebuildError::Doc {
            chat,
            source: Box::new(DocError::Damaged(e.to_string())),
        })?);
    }
    updates.sort_by(|(org_a, a), (org_b, b)| a.at.cmp(&b.at).then(org_a.cmp(org_b)));
    for (org, update) in updates {
        let Some((message_org, view)) = messages.get_mut(&update.target) else {
            continue;
        };
        if (org != *message_org && org != state.info.owner) || view.deleted {
            continue;
        }
        match update.op {
            UpdateOp::Edit { body } => {
                let mentions = views::parse_mentions(store, org_name, &body);
                derive::apply_edit(view, update.at.ms, body, mentions);
            }
            UpdateOp::Delete => {
                view.edited_ms = Some(update.at.ms);
                view.delete();
            }
        }
    }
    for ((message, emoji, user), on) in reactions {
        if let Some((_, view)) = messages.get_mut(&message) {
            if on && !view.deleted {
                view.set_reaction(&emoji, &user, true);
            }
        }
    }
    for (id, (_, view)) in &messages {
        for attachment in &view.attachments {
            for blob in attachment.blob_ids() {
                batch.put(Tree::MediaRefs, keys::media_ref(blob, &chat, id), Vec::new());
            }
        }
        batch.put(
            Tree::Messages,
            keys::message(&chat, id),
            serde_json::to_vec(view).unwrap_or_default(),
        );
    }

    // The chat and its members, from the control document.
    for (user, member) in &state.members {
        derive::put_member(&mut batch, &chat, user, member.role);
    }
    let last = messages.keys().next_back().copied();
    let activity = derive::Activity {
        last_activity_ms: last
            .map_or(state.info.created_ms, |id| id.time_ms().max(state.info.created_ms)),
        last_message: last,
    };
    // Drift kept as it was: a peer's chat is labelled with the raw organisation id here,
    // where the live path (`Engine::org_label`) uses the peer's name.
    let owner_org = if state.info.owner == *own_org {
        org_name.to_string()
    } else {
        state.info.owner.to_string()
    };
    let record = derive::chat_record(chat, &state, owner_org, own_org, activity);
    batch.put(
        Tree::Chats,
        chat.as_bytes().to_vec(),
        serde_json::to_vec(&record).unwrap_or_default(),
    );
    store.apply(batch)?;
    Ok(messages.len())
}
