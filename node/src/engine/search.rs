//! Search upkeep: the index changes a group makes, fed to the index after the flush, and the
//! catch-up, replay and rebuild of the index from the stored messages.

use super::Engine;
use crate::events::{Event, EventBody};
use crate::model::MessageView;
use crate::search::{SearchDoc, SearchError, SearchIndex};
use crate::store::{KeyValue, KvStore, StoreError, Tree};
use confab_protocol::{ChatId, MessageId};
use std::ops::Bound;

/// A change to the search index.
pub(super) enum SearchOp {
    Upsert(SearchDoc),
    Remove(ChatId, MessageId),
}

pub(super) fn search_doc(message: &MessageView) -> SearchDoc {
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
pub(super) fn catch_up_search(store: &dyn KvStore, search: &SearchIndex, newest_cursor: u64) {
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
        .range(Tree::Events, (std::ops::Bound::Unbounded, std::ops::Bound::Unbounded), false, 1)
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

pub(super) fn replay_search(
    store: &dyn KvStore,
    search: &SearchIndex,
    after: u64,
) -> Result<usize, SearchError> {
    let mut count = 0;
    let from = Bound::Excluded(Event::key(after).to_vec());
    for_each_page::<SearchError>(store, Tree::Events, from, |page| {
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
        Ok(())
    })?;
    Ok(count)
}

/// Clears the index and adds every message of the views (not deleted ones).
pub fn reindex_search(store: &dyn KvStore, search: &SearchIndex) -> Result<usize, SearchError> {
    search.clear()?;
    let mut count = 0;
    let mut docs = Vec::with_capacity(PAGE_ENTRIES);
    for_each_page::<SearchError>(store, Tree::Messages, Bound::Unbounded, |page| {
        docs.clear();
        for (_, value) in page {
            if let Ok(message) = serde_json::from_slice::<MessageView>(&value) {
                if !message.deleted {
                    docs.push(search_doc(&message));
                }
            }
        }
        count += docs.len();
        search.upsert_many(&docs)
    })?;
    search.commit()?;
    Ok(count)
}

/// Entries read from the store at a time while the index catches up.
const PAGE_ENTRIES: usize = 1000;

/// Calls `each` with the entries of `tree` after `from`, in key order, a page at a time.
fn for_each_page<E: From<StoreError>>(
    store: &dyn KvStore,
    tree: Tree,
    mut from: Bound<Vec<u8>>,
    mut each: impl FnMut(Vec<KeyValue>) -> Result<(), E>,
) -> Result<(), E> {
    loop {
        let page = store.range(tree, (from.clone(), Bound::Unbounded), false, PAGE_ENTRIES)?;
        let Some((last, _)) = page.last() else {
            return Ok(());
        };
        from = Bound::Excluded(last.clone());
        each(page)?;
    }
}

impl Engine {
    /// Feeds the group's message changes to the search index and requests a commit marked with
    /// the newest event cursor (so a restart replays only what came after it). Index errors
    /// are logged: the index is derived and a rebuild restores it.
    pub(super) fn apply_search_ops(&mut self) {
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
}
