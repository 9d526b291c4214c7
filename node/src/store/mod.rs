//! The node's key-value storage: a small trait of our own, with sled 0.34 behind it.
//!
//! One tree per concern, named with a version (`users/v1`) so key encodings can change without
//! ambiguity. Writes go in a [`WriteBatch`] applied atomically across trees; a write counts as
//! durable only after [`KvStore::flush`] returns, and nothing is acknowledged before that.
//! Atomicity and durability come from the write-ahead log in [`wal`] (one record per batch,
//! one `fdatasync` per flush), not from sled's transactions and flush: each sled transaction
//! cost two log-buffer rolls that woke sled's whole IO pool, its flush stalled for tens of
//! milliseconds under load, and it is `sync_file_range`, not a full fsync (design §6).
//! Keeping the trait small keeps another engine possible.

use std::future::Future;
use std::ops::Bound;
use std::pin::Pin;

mod sled_store;
mod staged;
#[cfg(test)]
mod tests;
mod wal;

pub use sled_store::SledStore;
pub use staged::{Staged, StagedRead};

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
    /// user id ‖ 0 ‖ device id (16) → device record JSON.
    Devices,
    /// peer organisation id (32) → peer record JSON: its name and the addresses we dial.
    Peers,
    /// user id ‖ 0 ‖ queue id (16) ‖ capability id (16) → pending renunciation JSON: a
    /// capability this node still has to give up at a relay (the device was removed or moved).
    Renunciations,
}

impl Tree {
    pub const ALL: [Tree; 17] = [
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
        Tree::Devices,
        Tree::Peers,
        Tree::Renunciations,
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
            Tree::Devices => "devices/v1",
            Tree::Peers => "peers/v1",
            Tree::Renunciations => "renunciations/v1",
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

    /// The puts into `tree`, in order: key and value.
    pub fn puts(&self, tree: Tree) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.ops.iter().filter_map(move |(t, key, value)| match value {
            Some(value) if *t == tree => Some((key.as_slice(), value.as_slice())),
            _ => None,
        })
    }
}

pub type KeyValue = (Vec<u8>, Vec<u8>);
pub type FlushFuture<'a> = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>>;

/// The storage reads the node uses: the store itself, or the store seen through writes staged
/// ahead of their commit ([`Staged::over`]).
pub trait KvRead {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// The entries a [`Scan`] asks for.
    fn scan(&self, tree: Tree, scan: Scan) -> Result<Vec<KeyValue>, StoreError>;

    /// Entries in `range`, ascending or (with `reverse`) descending, at most `limit`.
    fn range(
        &self,
        tree: Tree,
        range: KeyRange,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        let scan = Scan { range, reverse, limit };
        self.scan(tree, scan)
    }
}

/// The keys from one bound to another.
pub type KeyRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// One range read: the entries in `range`, ascending or (with `reverse`) descending, at most
/// `limit` of them.
pub struct Scan {
    pub range: KeyRange,
    pub reverse: bool,
    pub limit: usize,
}

/// The storage operations the node uses.
pub trait KvStore: KvRead + Send + Sync + 'static {
    /// Applies every write of the batch or none.
    fn apply(&self, batch: WriteBatch) -> Result<(), StoreError>;
    /// Completes once everything applied so far is on disk.
    fn flush(&self) -> FlushFuture<'_>;
    /// Returns once everything applied so far is on disk, blocking the calling thread: for
    /// threads of their own (the engine's), where handing the wait to a pool would only add
    /// a wake-up.
    fn flush_blocking(&self) -> Result<(), StoreError>;
}

/// Helpers for prefix scans.
pub fn prefix_range(prefix: &[u8]) -> KeyRange {
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
