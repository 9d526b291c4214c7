//! Answering catch-up requests from the stored signed changes, without the engine.
//!
//! A document's changes are stored in the order they were accepted (`changes/v1`: doc id ‖
//! index), which is an order they can be applied in. To answer "I have these heads", the
//! responder marks every stored change in the causal past of the heads it knows, then pages
//! through the others from the cursor (the next index to look at, u64 BE). Heads it does not
//! know are ignored: the requester has something we lack, which our own catch-up fetches.
//!
//! A removed organisation (a former member) is answered for the control document only, up to
//! the change that removed it: the first stored change signed at the epoch its membership
//! ended, or later.
//!
//! Each document's hashes, dependency lists and epochs are parsed once and cached
//! ([`DocIndexCache`]), extended by whatever was stored since.

use crate::engine::change_key;
use crate::store::{prefix_range, KvRead, StoreError, Tree};
use confab_net::{CatchupLimits, CatchupPage, CatchupRefusal, CatchupResponse};
use confab_protocol::DocId;
use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Mutex;

/// Documents whose index is cached at most.
const CACHED_DOCS_MAX: usize = 256;
/// Room kept in a response for its own framing.
const RESPONSE_MARGIN_BYTES: usize = 1024;

/// Hashes and dependencies of one document's stored changes, by store index.
#[derive(Default)]
struct DocIndex {
    hashes: Vec<[u8; 32]>,
    deps: Vec<Vec<u32>>,
    /// The epoch each change was signed at (`u64::MAX` for one that does not parse, so that
    /// it ends an epoch-bounded answer rather than extending it).
    epochs: Vec<u64>,
    by_hash: HashMap<[u8; 32], u32>,
}

impl DocIndex {
    /// Reads and parses the changes stored after the ones already indexed.
    fn extend(&mut self, store: &dyn KvRead, doc: &DocId) -> Result<(), StoreError> {
        loop {
            let from = change_key(doc, self.hashes.len() as u64);
            let range = (Bound::Included(from), prefix_range(&doc.to_bytes()).1);
            let page = store.range(Tree::Changes, range, false, 1024)?;
            if page.is_empty() {
                return Ok(());
            }
            for (_, bytes) in page {
                let (hash, deps, epoch) =
                    parse_change(&bytes).unwrap_or(([0; 32], Vec::new(), u64::MAX));
                let deps = deps.iter().filter_map(|dep| self.by_hash.get(dep).copied()).collect();
                let index = self.hashes.len() as u32;
                self.by_hash.insert(hash, index);
                self.hashes.push(hash);
                self.deps.push(deps);
                self.epochs.push(epoch);
            }
        }
    }

    /// Which stored changes are in the causal past of `heads` (those of them we know).
    fn known_past(&self, heads: &[[u8; 32]]) -> Vec<bool> {
        let mut have = vec![false; self.hashes.len()];
        let mut stack: Vec<u32> =
            heads.iter().filter_map(|head| self.by_hash.get(head).copied()).collect();
        while let Some(index) = stack.pop() {
            let Some(slot) = have.get_mut(index as usize) else {
                continue;
            };
            if *slot {
                continue;
            }
            *slot = true;
            if let Some(deps) = self.deps.get(index as usize) {
                stack.extend(deps.iter().copied());
            }
        }
        have
    }
}

/// The change hash, dependency hashes and epoch of an encoded `SignedChange`.
fn parse_change(bytes: &[u8]) -> Option<([u8; 32], Vec<[u8; 32]>, u64)> {
    let signed = confab_protocol::SignedChange::decode(bytes, usize::MAX).ok()?;
    let epoch = signed.epoch;
    let change = automerge::Change::from_bytes(signed.change).ok()?;
    Some((change.hash().0, change.deps().iter().map(|d| d.0).collect(), epoch))
}

/// The per-document indexes, shared by every catch-up answer.
#[derive(Default)]
pub struct DocIndexCache {
    docs: Mutex<HashMap<DocId, DocIndex>>,
}

impl DocIndexCache {
    /// One page of the changes of `doc` the requester (with `heads`) lacks, from `cursor`.
    /// With `until_epoch`, the stored changes end at the first one signed at that epoch or a
    /// later one (included), whatever the cursor: a removed organisation gets the control
    /// document up to the change that removed it, never what the owner wrote after.
    pub fn page(
        &self,
        store: &dyn KvRead,
        doc: DocId,
        heads: &[[u8; 32]],
        cursor: &[u8],
        limits: &CatchupLimits,
        until_epoch: Option<u64>,
    ) -> Result<CatchupResponse, StoreError> {
        let start = match cursor.len() {
            0 => 0,
            8 => u64::from_be_bytes(cursor.try_into().unwrap_or([0; 8])),
            _ => return Ok(CatchupResponse::Refused(CatchupRefusal::Other(0))),
        };
        let (have, end) = {
            let mut docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
            if !docs.contains_key(&doc) && docs.len() >= CACHED_DOCS_MAX {
                if let Some(evict) = docs.keys().next().copied() {
                    docs.remove(&evict);
                }
            }
            let index = docs.entry(doc).or_default();
            index.extend(store, &doc)?;
            if index.hashes.is_empty() {
                return Ok(CatchupResponse::Refused(CatchupRefusal::UnknownDocument));
            }
            let end = until_epoch
                .and_then(|until| index.epochs.iter().position(|epoch| *epoch >= until))
                .map_or(index.hashes.len(), |last| last + 1);
            (index.known_past(heads), end)
        };
        let mut page = CatchupPage::default();
        let mut size = 0usize;
        let mut next = start;
        let budget = limits.max_response_bytes.saturating_sub(RESPONSE_MARGIN_BYTES);
        'pages: loop {
            let range = (Bound::Included(change_key(&doc, next)), prefix_range(&doc.to_bytes()).1);
            let stored = store.range(Tree::Changes, range, false, 256)?;
            if stored.is_empty() {
                break;
            }
            for (_, bytes) in stored {
                let index = next as usize;
                if index >= end {
                    // Stored after we indexed (the next request gets it), or past the epoch
                    // bound.
                    break 'pages;
                }
                if !have[index] {
                    if page.changes.len() >= limits.max_changes_per_page
                        || size + bytes.len() + 4 > budget
                    {
                        page.more = true;
                        break 'pages;
                    }
                    size += bytes.len() + 4;
                    page.changes.push(bytes);
                }
                next += 1;
            }
        }
        page.cursor = next.to_be_bytes().to_vec();
        Ok(CatchupResponse::Page(page))
    }
}
