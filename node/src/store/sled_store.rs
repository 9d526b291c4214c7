//! [`SledStore`]: sled 0.34 in the data directory, behind the write-ahead log of [`super::wal`].

use super::wal;
use super::{
    FlushFuture, KeyValue, KvRead, KvStore, Scan, StoreError, Tree, WriteBatch, DEFAULT_CACHE_BYTES,
};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

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
    pub(super) fn open_with_options(
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
            log: Mutex::new(LogState { segment, failed: false }),
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
        self.visible.read().map_err(|_| StoreError::Backend("storage: read lock poisoned".into()))
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
    tracing::info!(segments = numbers.len(), records, "write-ahead log replayed");
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

    fn scan(&self, tree: Tree, scan: Scan) -> Result<Vec<KeyValue>, StoreError> {
        let _visible = self.read_gate()?;
        let iter = self.tree(tree).range::<Vec<u8>, _>(scan.range);
        let pairs: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> =
            if scan.reverse { Box::new(iter.rev()) } else { Box::new(iter) };
        pairs
            .take(scan.limit)
            .map(|pair| pair.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(StoreError::from))
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
