//! The node's key-value storage: a small trait of our own, with sled 0.34 behind it.
//!
//! One tree per concern, named with a version (`users/v1`) so key encodings can change without
//! ambiguity. Writes go in a [`WriteBatch`] applied atomically across trees; a write counts as
//! durable only after [`Store::flush`] returns, and nothing is acknowledged before that.
//! Keeping the trait small keeps another engine possible (sled 0.34's flush is
//! `sync_file_range`, not a full fsync; see design §6).

use std::future::Future;
use std::ops::Bound;
use std::path::Path;
use std::pin::Pin;

/// sled page cache used unless configured otherwise.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// The trees. Each name carries its key-encoding version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tree {
    /// Node settings and secrets: `org_key`, `settings`.
    Meta,
    /// `localpart` → user record JSON.
    Users,
    /// session token hash → session JSON.
    Sessions,
    /// doc id (20) ‖ index (u64 BE) → SignedChange bytes.
    Changes,
    /// chat id (16) → chat view JSON.
    Chats,
    /// chat id (16) ‖ user id → member JSON.
    Members,
    /// user id ‖ 0 ‖ chat id (16) → empty. The chats a user is in.
    UserChats,
    /// chat id (16) ‖ message id (20) → message view JSON.
    Messages,
    /// user id ‖ 0 ‖ chat id (16) → message id (20): read markers.
    ReadMarkers,
    /// cursor (u64 BE) → event JSON.
    Events,
    /// user id ‖ 0 ‖ client id → chat id (16) ‖ message id (20): idempotent sends.
    ClientIds,
    /// user id ‖ 0 ‖ chat id (16) → notification level JSON.
    NotifySettings,
    /// blob id (64 hex) ‖ chat id (16) ‖ message id (20) → empty: the messages that carry a
    /// blob (an attachment or one of its thumbnails). A blob with no entry is collectable.
    MediaRefs,
    /// user id ‖ 0 ‖ blob id (64 hex) → upload time (u64 BE ms): what a user uploaded, so
    /// they may fetch and attach it before it is posted anywhere.
    Uploads,
}

impl Tree {
    pub const ALL: [Tree; 14] = [
        Tree::Meta,
        Tree::Users,
        Tree::Sessions,
        Tree::Changes,
        Tree::Chats,
        Tree::Members,
        Tree::UserChats,
        Tree::Messages,
        Tree::ReadMarkers,
        Tree::Events,
        Tree::ClientIds,
        Tree::NotifySettings,
        Tree::MediaRefs,
        Tree::Uploads,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Tree::Meta => "meta/v1",
            Tree::Users => "users/v1",
            Tree::Sessions => "sessions/v1",
            Tree::Changes => "changes/v1",
            Tree::Chats => "chats/v1",
            Tree::Members => "members/v1",
            Tree::UserChats => "user_chats/v1",
            Tree::Messages => "messages/v1",
            Tree::ReadMarkers => "read_markers/v1",
            Tree::Events => "events/v1",
            Tree::ClientIds => "client_ids/v1",
            Tree::NotifySettings => "notify_settings/v1",
            Tree::MediaRefs => "media_refs/v1",
            Tree::Uploads => "uploads/v1",
        }
    }

    fn index(self) -> usize {
        Tree::ALL.iter().position(|tree| *tree == self).unwrap_or(0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Backend(String),
    #[error("the data directory is in use by another process (is a node running?)")]
    Locked,
}

impl From<sled::Error> for StoreError {
    fn from(error: sled::Error) -> Self {
        StoreError::Backend(error.to_string())
    }
}

/// Writes applied together, atomically.
#[derive(Default, Debug)]
pub struct WriteBatch {
    ops: Vec<(Tree, Vec<u8>, Option<Vec<u8>>)>,
}

impl WriteBatch {
    pub fn put(&mut self, tree: Tree, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push((tree, key.into(), Some(value.into())));
    }

    pub fn delete(&mut self, tree: Tree, key: impl Into<Vec<u8>>) {
        self.ops.push((tree, key.into(), None));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn append(&mut self, other: WriteBatch) {
        self.ops.extend(other.ops);
    }
}

pub type KeyValue = (Vec<u8>, Vec<u8>);
pub type FlushFuture<'a> = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>>;

/// The storage operations the node uses.
pub trait KvStore: Send + Sync + 'static {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Entries in `range`, ascending or (with `reverse`) descending, at most `limit`.
    fn range(
        &self,
        tree: Tree,
        range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError>;
    /// Applies every write of the batch or none.
    fn apply(&self, batch: WriteBatch) -> Result<(), StoreError>;
    /// Completes once everything applied so far is on disk.
    fn flush(&self) -> FlushFuture<'_>;
}

/// sled 0.34, in the data directory.
pub struct SledStore {
    db: sled::Db,
    trees: Vec<sled::Tree>,
}

impl SledStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// Opens with a page cache of at most `cache_bytes` (sled's default is 1 GiB).
    pub fn open_with_cache(path: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            // The node flushes explicitly before every acknowledgement; a timer flush on top
            // would only add work.
            .flush_every_ms(None)
            .open()
            .map_err(|error| match error {
                sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                    StoreError::Locked
                }
                sled::Error::Io(io) if io.to_string().contains("lock") => StoreError::Locked,
                other => StoreError::from(other),
            })?;
        let trees = Tree::ALL
            .iter()
            .map(|tree| db.open_tree(tree.name()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { db, trees })
    }

    fn tree(&self, tree: Tree) -> &sled::Tree {
        &self.trees[tree.index()]
    }
}

impl KvStore for SledStore {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree(tree).get(key)?.map(|value| value.to_vec()))
    }

    fn range(
        &self,
        tree: Tree,
        range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        let iter = self.tree(tree).range::<Vec<u8>, _>(range);
        let pairs: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> = if reverse {
            Box::new(iter.rev())
        } else {
            Box::new(iter)
        };
        pairs
            .take(limit)
            .map(|pair| {
                pair.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(StoreError::from)
            })
            .collect()
    }

    fn apply(&self, batch: WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        // Group the writes per tree, then apply them in one multi-tree transaction.
        let mut used: Vec<Tree> = Vec::new();
        for (tree, _, _) in &batch.ops {
            if !used.contains(tree) {
                used.push(*tree);
            }
        }
        let trees: Vec<sled::Tree> = used.iter().map(|tree| self.tree(*tree).clone()).collect();
        use sled::Transactional;
        trees
            .as_slice()
            .transaction(|tx_trees| {
                for (tree, key, value) in &batch.ops {
                    let at = used.iter().position(|t| t == tree).unwrap_or(0);
                    match value {
                        Some(value) => {
                            tx_trees[at].insert(key.as_slice(), value.as_slice())?;
                        }
                        None => {
                            tx_trees[at].remove(key.as_slice())?;
                        }
                    }
                }
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|error| StoreError::Backend(format!("transaction failed: {error:?}")))
    }

    fn flush(&self) -> FlushFuture<'_> {
        // `flush_async` runs on sled's IO pool, whose every task wakes all its idle threads;
        // a blocking flush on tokio's blocking pool wakes one.
        let db = self.db.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || db.flush())
                .await
                .map_err(|error| StoreError::Backend(format!("flush task failed: {error}")))??;
            Ok(())
        })
    }
}

/// Helpers for prefix scans.
pub fn prefix_range(prefix: &[u8]) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let start = Bound::Included(prefix.to_vec());
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return (start, Bound::Excluded(end));
        }
    }
    (start, Bound::Unbounded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batch_apply_range_and_reopen() {
        let dir = std::env::temp_dir().join(format!("confab-store-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let store = SledStore::open(&dir).unwrap();
            let mut batch = WriteBatch::default();
            batch.put(Tree::Users, b"a".to_vec(), b"1".to_vec());
            batch.put(Tree::Users, b"b".to_vec(), b"2".to_vec());
            batch.put(Tree::Chats, b"a".to_vec(), b"x".to_vec());
            store.apply(batch).unwrap();
            store.flush().await.unwrap();
            let all = store
                .range(Tree::Users, prefix_range(b""), true, 10)
                .unwrap();
            assert_eq!(
                all,
                vec![
                    (b"b".to_vec(), b"2".to_vec()),
                    (b"a".to_vec(), b"1".to_vec())
                ]
            );
            let mut batch = WriteBatch::default();
            batch.delete(Tree::Users, b"a".to_vec());
            store.apply(batch).unwrap();
            store.flush().await.unwrap();
        }
        let store = SledStore::open(&dir).unwrap();
        assert_eq!(store.get(Tree::Users, b"a").unwrap(), None);
        assert_eq!(store.get(Tree::Chats, b"a").unwrap(), Some(b"x".to_vec()));
        assert_eq!(
            prefix_range(&[1, 255]),
            (Bound::Included(vec![1, 255]), Bound::Excluded(vec![2]))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
