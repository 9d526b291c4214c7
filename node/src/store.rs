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

use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Mutex, RwLock};

mod wal;

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
        self.ops
            .iter()
            .filter_map(move |(t, key, value)| match value {
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
    /// Entries in `range`, ascending or (with `reverse`) descending, at most `limit`.
    fn range(
        &self,
        tree: Tree,
        range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError>;
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

/// sled 0.34, in the data directory, behind the write-ahead log of [`wal`].
///
/// A write goes to the log, then to sled unflushed; a flush syncs the log only. sled is
/// flushed at checkpoints (when a log segment fills, and on close), after which the log
/// segments it covers are deleted; on open, the segments left are replayed into sled.
pub struct SledStore {
    db: sled::Db,
    trees: Vec<sled::Tree>,
    log_dir: PathBuf,
    log: Mutex<LogState>,
    /// Held for writing while a batch goes into sled, so readers never see half of one.
    visible: RwLock<()>,
    checkpointer: Option<Checkpointer>,
    segment_bytes_max: u64,
}

struct LogState {
    segment: wal::Segment,
    /// Set when a write or sync failed in a way that leaves the log's state unknown (an
    /// `fsync` error may have dropped dirty pages): every later write and flush fails, and
    /// the node needs a restart, which replays what the log holds.
    failed: bool,
}

/// The thread that flushes sled and deletes the log segments it then covers.
struct Checkpointer {
    requests: std::sync::mpsc::SyncSender<u64>,
    thread: std::thread::JoinHandle<()>,
}

impl SledStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// Opens with a page cache of at most `cache_bytes` (sled's default is 1 GiB), replaying
    /// whatever the write-ahead log holds.
    pub fn open_with_cache(path: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        Self::open_with_options(path, cache_bytes, wal::SEGMENT_BYTES_MAX)
    }

    /// [`Self::open_with_cache`] with log segments closed at `segment_bytes_max`.
    fn open_with_options(
        path: &Path,
        cache_bytes: u64,
        segment_bytes_max: u64,
    ) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            // Durability comes from the write-ahead log; sled is flushed at checkpoints.
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
        let log_dir = wal::directory(path);
        let number_last = replay(&db, &trees, &log_dir)?;
        let segment = wal::create_segment(&log_dir, number_last + 1)?;
        let checkpointer = Checkpointer::start(db.clone(), path.join("db"), log_dir.clone())?;
        Ok(Self {
            db,
            trees,
            log_dir,
            log: Mutex::new(LogState {
                segment,
                failed: false,
            }),
            visible: RwLock::new(()),
            checkpointer: Some(checkpointer),
            segment_bytes_max,
        })
    }

    fn tree(&self, tree: Tree) -> &sled::Tree {
        &self.trees[tree.index()]
    }

    fn lock_log(&self) -> Result<std::sync::MutexGuard<'_, LogState>, StoreError> {
        let log = self
            .log
            .lock()
            .map_err(|_| StoreError::Backend("write-ahead log: lock poisoned".into()))?;
        if log.failed {
            return Err(StoreError::Backend(
                "write-ahead log: an earlier write or sync failed; restart the node".into(),
            ));
        }
        Ok(log)
    }

    fn read_gate(&self) -> Result<std::sync::RwLockReadGuard<'_, ()>, StoreError> {
        self.visible
            .read()
            .map_err(|_| StoreError::Backend("storage: read lock poisoned".into()))
    }

    /// Closes the full segment (synced first: records in it may not have been) and opens the
    /// next; the checkpointer then flushes sled and deletes the closed one.
    fn rotate(&self, log: &mut LogState) -> Result<(), StoreError> {
        log.segment.file.sync_data().map_err(|error| {
            StoreError::Backend(format!("write-ahead log: sync a full segment: {error}"))
        })?;
        let closed = log.segment.number;
        log.segment = wal::create_segment(&self.log_dir, closed + 1)?;
        if let Some(checkpointer) = &self.checkpointer {
            // A full queue means a checkpoint is still running; the next request covers this
            // segment too.
            let _ = checkpointer.requests.try_send(closed);
        }
        Ok(())
    }

    /// Syncs a segment; a failed sync fails the store (see [`LogState::failed`]).
    fn sync_log(&self, file: &File) -> Result<(), StoreError> {
        file.sync_data().map_err(|error| self.sync_failed(error))
    }

    fn sync_failed(&self, error: std::io::Error) -> StoreError {
        if let Ok(mut log) = self.log.lock() {
            log.failed = true;
        }
        StoreError::Backend(format!("write-ahead log: sync: {error}"))
    }
}

/// Applies the log's segments to sled in order, flushes sled, deletes them; returns the
/// highest segment number seen (0 for none).
fn replay(db: &sled::Db, trees: &[sled::Tree], log_dir: &Path) -> Result<u64, StoreError> {
    let numbers = wal::segment_numbers(log_dir)?;
    let Some(&number_last) = numbers.last() else {
        return Ok(0);
    };
    let mut records = 0usize;
    for &number in &numbers {
        let (batches, left_over_bytes) = wal::decode_segment(&wal::read_segment(log_dir, number)?)?;
        if left_over_bytes > 0 {
            tracing::warn!(
                segment = number,
                left_over_bytes,
                "write-ahead log: dropped an unfinished record (never acknowledged)"
            );
        }
        records += batches.len();
        for batch in &batches {
            apply_to_sled(trees, batch)?;
        }
    }
    db.flush()?;
    sync_sled_file(&db_file_of(log_dir))?;
    wal::delete_segments_through(log_dir, number_last)?;
    tracing::info!(
        segments = numbers.len(),
        records,
        "write-ahead log replayed"
    );
    Ok(number_last)
}

fn db_file_of(log_dir: &Path) -> PathBuf {
    log_dir.with_file_name("db")
}

/// sled 0.34's flush is `sync_file_range`, not a full fsync (sled#1452): before the log that
/// covers a flushed write is deleted, its file is synced for real.
fn sync_sled_file(path: &Path) -> Result<(), StoreError> {
    File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(|error| StoreError::Backend(format!("sync sled's file: {error}")))
}

fn apply_to_sled(trees: &[sled::Tree], batch: &WriteBatch) -> Result<(), StoreError> {
    for (tree, key, value) in &batch.ops {
        let tree = &trees[tree.index()];
        match value {
            Some(value) => {
                tree.insert(key.as_slice(), value.as_slice())?;
            }
            None => {
                tree.remove(key.as_slice())?;
            }
        }
    }
    Ok(())
}

impl Checkpointer {
    fn start(db: sled::Db, db_file: PathBuf, log_dir: PathBuf) -> Result<Self, StoreError> {
        let (requests, received) = std::sync::mpsc::sync_channel::<u64>(1);
        let thread = std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || {
                for closed in received {
                    let started = std::time::Instant::now();
                    let result = db
                        .flush()
                        .map_err(StoreError::from)
                        .and_then(|_| sync_sled_file(&db_file))
                        .and_then(|()| wal::delete_segments_through(&log_dir, closed));
                    match result {
                        Ok(()) => tracing::debug!(
                            through_segment = closed,
                            took_ms = started.elapsed().as_millis() as u64,
                            "store checkpoint"
                        ),
                        // The segments stay and are replayed on the next start: nothing lost.
                        Err(error) => tracing::warn!(%error, "store checkpoint failed"),
                    }
                }
            })
            .map_err(|error| {
                StoreError::Backend(format!("start the checkpoint thread: {error}"))
            })?;
        Ok(Self { requests, thread })
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        if let Some(checkpointer) = self.checkpointer.take() {
            drop(checkpointer.requests);
            let _ = checkpointer.thread.join();
        }
        // A last checkpoint spares the next start a replay; if it fails the log stays.
        let Ok(log) = self.log.get_mut() else {
            return;
        };
        if log.failed {
            return;
        }
        let number = log.segment.number;
        let closed = self
            .db
            .flush()
            .map_err(StoreError::from)
            .and_then(|_| sync_sled_file(&db_file_of(&self.log_dir)))
            .and_then(|()| wal::delete_segments_through(&self.log_dir, number));
        if let Err(error) = closed {
            tracing::warn!(%error, "store close: checkpoint failed; the log will be replayed");
        }
    }
}

impl KvRead for SledStore {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let _visible = self.read_gate()?;
        Ok(self.tree(tree).get(key)?.map(|value| value.to_vec()))
    }

    fn range(
        &self,
        tree: Tree,
        range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        let _visible = self.read_gate()?;
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
}

impl KvStore for SledStore {
    fn apply(&self, batch: WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let record = wal::encode_record(&batch)?;
        let mut log = self.lock_log()?;
        log.segment.append(&record)?;
        {
            let _visible = self
                .visible
                .write()
                .map_err(|_| StoreError::Backend("storage: write lock poisoned".into()))?;
            if let Err(error) = apply_to_sled(&self.trees, &batch) {
                // The record is in the log and would be replayed: stop here, so nothing
                // is answered as failed that a restart would then show.
                log.failed = true;
                return Err(error);
            }
        }
        if log.segment.len_bytes >= self.segment_bytes_max {
            if let Err(error) = self.rotate(&mut log) {
                log.failed = true;
                return Err(error);
            }
        }
        Ok(())
    }

    fn flush(&self) -> FlushFuture<'_> {
        Box::pin(async move {
            let file = self.lock_log()?.segment.file.clone();
            tokio::task::spawn_blocking(move || file.sync_data())
                .await
                .map_err(|error| StoreError::Backend(format!("flush task failed: {error}")))?
                .map_err(|error| self.sync_failed(error))
        })
    }

    fn flush_blocking(&self) -> Result<(), StoreError> {
        let file = self.lock_log()?.segment.file.clone();
        self.sync_log(&file)
    }
}

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
        Self {
            trees: Tree::ALL.iter().map(|_| BTreeMap::new()).collect(),
        }
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

    fn range(
        &self,
        tree: Tree,
        range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        let writes = &self.staged.trees[tree.index()];
        if writes.is_empty() || is_empty_range(&range) {
            return self.base.range(tree, range, reverse, limit);
        }
        let staged: Vec<(&Vec<u8>, &Option<Vec<u8>>)> = writes.range(range.clone()).collect();
        if staged.is_empty() {
            return self.base.range(tree, range, reverse, limit);
        }
        // Each staged write hides at most one stored entry, so the first `limit` entries of the
        // merged view lie within the first `limit + staged.len()` stored ones.
        let stored = self
            .base
            .range(tree, range, reverse, limit.saturating_add(staged.len()))?;
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = stored.into_iter().collect();
        for (key, value) in staged {
            match value {
                Some(value) => merged.insert(key.clone(), value.clone()),
                None => merged.remove(key),
            };
        }
        let entries: Box<dyn Iterator<Item = KeyValue>> = if reverse {
            Box::new(merged.into_iter().rev())
        } else {
            Box::new(merged.into_iter())
        };
        Ok(entries.take(limit).collect())
    }
}

/// Whether no key can lie in `range` (a `BTreeMap` panics on such a range).
fn is_empty_range(range: &(Bound<Vec<u8>>, Bound<Vec<u8>>)) -> bool {
    match range {
        (Bound::Included(start), Bound::Included(end)) => start > end,
        (Bound::Included(start) | Bound::Excluded(start), Bound::Excluded(end))
        | (Bound::Excluded(start), Bound::Included(end)) => start >= end,
        _ => false,
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

    fn fresh_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("confab-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// What a crash leaves: log segments sled never saw, the last one ending in half a record.
    /// Opening replays the whole records in order (a later delete wins over an earlier put),
    /// drops the half one, and leaves only a fresh segment.
    #[test]
    fn open_replays_the_log_a_crash_left() {
        let dir = fresh_dir("store-replay");
        let log_dir = wal::directory(&dir);
        let mut first = wal::create_segment(&log_dir, 7).unwrap();
        let mut batch = WriteBatch::default();
        batch.put(Tree::Users, b"alice".to_vec(), b"1".to_vec());
        batch.put(Tree::Chats, b"c".to_vec(), b"x".to_vec());
        first.append(&wal::encode_record(&batch).unwrap()).unwrap();
        let mut second = wal::create_segment(&log_dir, 8).unwrap();
        let mut batch = WriteBatch::default();
        batch.delete(Tree::Users, b"alice".to_vec());
        batch.put(Tree::Users, b"bob".to_vec(), b"2".to_vec());
        second.append(&wal::encode_record(&batch).unwrap()).unwrap();
        let mut torn = WriteBatch::default();
        torn.put(Tree::Users, b"carol".to_vec(), b"3".to_vec());
        let torn = wal::encode_record(&torn).unwrap();
        second.append(&torn[..torn.len() - 1]).unwrap();
        drop((first, second));

        let store = SledStore::open(&dir).unwrap();
        assert_eq!(store.get(Tree::Users, b"alice").unwrap(), None);
        assert_eq!(store.get(Tree::Users, b"bob").unwrap(), Some(b"2".to_vec()));
        assert_eq!(store.get(Tree::Chats, b"c").unwrap(), Some(b"x".to_vec()));
        assert_eq!(store.get(Tree::Users, b"carol").unwrap(), None);
        assert_eq!(wal::segment_numbers(&log_dir).unwrap(), vec![9]);
        drop(store);
        // A clean close checkpoints: nothing left to replay.
        assert_eq!(wal::segment_numbers(&log_dir).unwrap(), Vec::<u64>::new());
        let store = SledStore::open(&dir).unwrap();
        assert_eq!(store.get(Tree::Users, b"bob").unwrap(), Some(b"2".to_vec()));
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Full segments are closed, checkpointed and deleted while writes go on, and nothing
    /// written is lost across the rotations.
    #[test]
    fn full_segments_are_checkpointed_and_deleted() {
        let dir = fresh_dir("store-rotate");
        let log_dir = wal::directory(&dir);
        let store = SledStore::open_with_options(&dir, DEFAULT_CACHE_BYTES, 4096).unwrap();
        for i in 0u32..400 {
            let mut batch = WriteBatch::default();
            batch.put(Tree::Messages, i.to_be_bytes().to_vec(), vec![b'm'; 100]);
            store.apply(batch).unwrap();
            store.flush_blocking().unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while wal::segment_numbers(&log_dir).unwrap().len() > 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "segments never deleted"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(wal::segment_numbers(&log_dir).unwrap()[0] > 5);
        drop(store);
        let store = SledStore::open(&dir).unwrap();
        let all = store
            .range(Tree::Messages, prefix_range(b""), false, 1000)
            .unwrap();
        assert_eq!(all.len(), 400);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A plain in-memory store: the model the staged view is checked against.
    #[derive(Default)]
    struct Model(BTreeMap<Vec<u8>, Vec<u8>>);

    impl KvRead for Model {
        fn get(&self, _tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(self.0.get(key).cloned())
        }

        fn range(
            &self,
            _tree: Tree,
            range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
            reverse: bool,
            limit: usize,
        ) -> Result<Vec<KeyValue>, StoreError> {
            if is_empty_range(&range) {
                return Ok(Vec::new());
            }
            let entries = self.0.range(range).map(|(k, v)| (k.clone(), v.clone()));
            Ok(if reverse {
                entries.rev().take(limit).collect()
            } else {
                entries.take(limit).collect()
            })
        }
    }

    fn key() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        proptest::collection::vec(0u8..4, 0..3)
    }

    fn bound() -> impl proptest::strategy::Strategy<Value = Bound<Vec<u8>>> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Bound::Unbounded),
            key().prop_map(Bound::Included),
            key().prop_map(Bound::Excluded),
        ]
    }

    proptest::proptest! {
        /// Reads through staged writes equal reads of the store with the writes applied, and
        /// `take` hands back exactly those writes.
        #[test]
        fn staged_reads_match_the_applied_model(
            stored in proptest::collection::btree_map(key(), key(), 0..12),
            writes in proptest::collection::vec((key(), proptest::option::of(key())), 0..12),
            start in bound(),
            end in bound(),
            reverse in proptest::bool::ANY,
            limit in 0usize..8,
        ) {
            let base = Model(stored);
            let mut staged = Staged::default();
            let mut applied = Model(base.0.clone());
            for (key, value) in &writes {
                let mut batch = WriteBatch::default();
                match value {
                    Some(value) => {
                        batch.put(Tree::Users, key.clone(), value.clone());
                        applied.0.insert(key.clone(), value.clone());
                    }
                    None => {
                        batch.delete(Tree::Users, key.clone());
                        applied.0.remove(key);
                    }
                }
                staged.stage(batch);
            }
            let view = staged.over(&base);
            let range = (start, end);
            proptest::prop_assert_eq!(
                view.range(Tree::Users, range.clone(), reverse, limit).unwrap(),
                applied.range(Tree::Users, range, reverse, limit).unwrap()
            );
            for (key, _) in &writes {
                proptest::prop_assert_eq!(
                    view.get(Tree::Users, key).unwrap(),
                    applied.get(Tree::Users, key).unwrap()
                );
            }
            let mut replayed = Model(base.0.clone());
            for (tree, key, value) in staged.take().ops {
                proptest::prop_assert_eq!(tree, Tree::Users);
                match value {
                    Some(value) => replayed.0.insert(key, value),
                    None => replayed.0.remove(&key),
                };
            }
            proptest::prop_assert_eq!(replayed.0, applied.0);
            proptest::prop_assert!(staged.is_empty());
        }
    }
}
