//! [`Staged`]: writes held in memory ahead of one atomic apply, readable through them.

use super::{KeyRange, KeyValue, KvRead, Scan, StoreError, Tree, WriteBatch};
use std::collections::BTreeMap;
use std::ops::Bound;

/// Writes staged in memory ahead of one atomic [`KvStore::apply`], readable before that
/// through [`Staged::over`].
///
/// The engine stages each intent's writes here and commits a whole group as one batch (one log
/// record, one sync), so a failed intent writes nothing and the fixed cost of a commit is paid
/// once per group. A later write to the same key replaces an earlier one.
#[derive(Debug)]
pub struct Staged {
    trees: Vec<BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
}

impl Default for Staged {
    fn default() -> Self {
        Self { trees: Tree::ALL.iter().map(|_| BTreeMap::new()).collect() }
    }
}

impl Staged {
    pub fn stage(&mut self, batch: WriteBatch) {
        for (tree, key, value) in batch.ops {
            self.trees[tree.index()].insert(key, value);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.trees.iter().all(BTreeMap::is_empty)
    }

    /// Everything staged, as one batch; leaves nothing staged.
    pub fn take(&mut self) -> WriteBatch {
        let mut batch = WriteBatch::default();
        for (tree, writes) in Tree::ALL.iter().zip(self.trees.iter_mut()) {
            for (key, value) in std::mem::take(writes) {
                batch.ops.push((*tree, key, value));
            }
        }
        batch
    }

    /// `base` as it will read once the staged writes are applied.
    pub fn over<'a>(&'a self, base: &'a dyn KvRead) -> StagedRead<'a> {
        StagedRead { base, staged: self }
    }
}

/// A store seen through staged writes; see [`Staged::over`].
pub struct StagedRead<'a> {
    base: &'a dyn KvRead,
    staged: &'a Staged,
}

impl KvRead for StagedRead<'_> {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.staged.trees[tree.index()].get(key) {
            Some(value) => Ok(value.clone()),
            None => self.base.get(tree, key),
        }
    }

    fn scan(&self, tree: Tree, scan: Scan) -> Result<Vec<KeyValue>, StoreError> {
        let writes = &self.staged.trees[tree.index()];
        if writes.is_empty() || is_empty_range(&scan.range) {
            return self.base.scan(tree, scan);
        }
        let staged: Vec<(&Vec<u8>, &Option<Vec<u8>>)> = writes.range(scan.range.clone()).collect();
        if staged.is_empty() {
            return self.base.scan(tree, scan);
        }
        let Scan { range, reverse, limit } = scan;
        // Each staged write hides at most one stored entry, so the first `limit` entries of the
        // merged view lie within the first `limit + staged.len()` stored ones.
        let stored = self.base.range(tree, range, reverse, limit.saturating_add(staged.len()))?;
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = stored.into_iter().collect();
        for (key, value) in staged {
            match value {
                Some(value) => merged.insert(key.clone(), value.clone()),
                None => merged.remove(key),
            };
        }
        let entries: Box<dyn Iterator<Item = KeyValue>> =
            if reverse { Box::new(merged.into_iter().rev()) } else { Box::new(merged.into_iter()) };
        Ok(entries.take(limit).collect())
    }
}

/// Whether no key can lie in `range` (a `BTreeMap` panics on such a range).
pub(super) fn is_empty_range(range: &KeyRange) -> bool {
    match range {
        (Bound::Included(start), Bound::Included(end)) => start > end,
        (Bound::Included(start) | Bound::Excluded(start), Bound::Excluded(end))
        | (Bound::Excluded(start), Bound::Included(end)) => start >= end,
        _ => false,
    }
}
