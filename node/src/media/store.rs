//! [`BlobStore`]: content-addressed files under `<data_dir>/blobs/`, written by streaming
//! (temp file, fsync, rename), with a metadata sidecar per blob and a collector.

use super::sniff::Sniffer;
use super::thumbs::{self, ThumbnailMeta};
use super::{is_blob_id, Attachment, MediaError};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::io::AsyncWriteExt;

/// Thumbnail jobs decoding at once (each may hold a decoded image of up to
/// [`thumbs::DECODE_BYTES_MAX`] bytes).
const THUMBNAIL_JOBS_MAX: usize = 2;

/// What the store knows of a blob.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobMeta {
    /// SHA-256 of the bytes, 64 lowercase hex digits: the blob's id.
    pub hash: String,
    pub size_bytes: u64,
    /// Sniffed from the bytes.
    pub mime: String,
    /// Displayed dimensions (EXIF orientation applied) of an image whose header could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

/// What a collection reclaimed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CollectReport {
    pub deleted: u64,
    pub bytes_freed: u64,
}

/// The blob store. Cheap to clone (one shared inside).
#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    tmp: PathBuf,
    /// Serialises "a blob comes to life" (rename, or refresh of a deduplicated blob) with the
    /// collector's "check its age, delete it", so an upload never loses its blob to the
    /// collector.
    gc: Mutex<()>,
    thumbnail_jobs: tokio::sync::Semaphore,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStore").field("root", &self.inner.root).finish()
    }
}

/// A temp file removed on drop unless it was renamed into place.
struct TempFile {
    path: Option<PathBuf>,
}

impl TempFile {
    fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn disarm(&mut self) {
        self.path = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            if let Err(error) = std::fs::remove_file(&path) {
                if error.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), %error, "could not remove a temp file");
                }
            }
        }
    }
}

impl BlobStore {
    /// Opens (creating if needed) the store in `<data_dir>/blobs/` and removes what earlier runs
    /// left in `tmp/` (uploads a crash or shutdown interrupted). Open one store per data
    /// directory, at start-up.
    pub fn new(data_dir: impl AsRef<Path>) -> Result<Self, MediaError> {
        let root = data_dir.as_ref().join("blobs");
        let tmp = root.join("tmp");
        std::fs::create_dir_all(&tmp)?;
        let mut stale = 0usize;
        for entry in std::fs::read_dir(&tmp)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::remove_file(entry.path())?;
                stale += 1;
            }
        }
        if stale > 0 {
            tracing::info!(stale, "removed interrupted uploads");
        }
        Ok(Self {
            inner: Arc::new(Inner {
                root,
                tmp,
                gc: Mutex::new(()),
                thumbnail_jobs: tokio::sync::Semaphore::new(THUMBNAIL_JOBS_MAX),
            }),
        })
    }

    /// `<data_dir>/blobs`.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Where a blob's bytes live: `ab/cdef…`.
    pub fn blob_path(&self, hash: &str) -> Result<PathBuf, MediaError> {
        if !is_blob_id(hash) {
            return Err(MediaError::InvalidId);
        }
        Ok(self.inner.root.join(&hash[..2]).join(&hash[2..]))
    }

    fn sidecar_path(&self, hash: &str, suffix: &str) -> Result<PathBuf, MediaError> {
        if !is_blob_id(hash) {
            return Err(MediaError::InvalidId);
        }
        Ok(self.inner.root.join(&hash[..2]).join(format!("{}{suffix}", &hash[2..])))
    }

    fn meta_path(&self, hash: &str) -> Result<PathBuf, MediaError> {
        self.sidecar_path(hash, ".json")
    }

    fn thumbs_path(&self, hash: &str) -> Result<PathBuf, MediaError> {
        self.sidecar_path(hash, ".thumbs.json")
    }

    fn new_temp(&self) -> Result<TempFile, MediaError> {
        let mut random = [0u8; 16];
        getrandom::fill(&mut random)
            .map_err(|e| MediaError::Io(std::io::Error::other(e.to_string())))?;
        Ok(TempFile { path: Some(self.inner.tmp.join(data_encoding::HEXLOWER.encode(&random))) })
    }

    fn gc_lock(&self) -> MutexGuard<'_, ()> {
        self.inner.gc.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Stores a stream of chunks without holding it in memory: hashes and sniffs each chunk as
    /// it is written to a temp file, then fsyncs and renames it under its hash. Past
    /// `size_bytes_max` bytes it stops reading, removes the temp file and fails with
    /// [`MediaError::TooLarge`]; a stream error fails with [`MediaError::Body`]. Content already
    /// stored is not stored twice.
    pub async fn put_stream<S, E>(
        &self,
        stream: S,
        size_bytes_max: u64,
    ) -> Result<BlobMeta, MediaError>
    where
        S: futures_util::Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let temp = self.new_temp()?;
        let path = temp.path().map(Path::to_path_buf).unwrap_or_default();
        let mut file =
            tokio::fs::OpenOptions::new().write(true).create_new(true).open(&path).await?;
        let mut stream = std::pin::pin!(stream);
        let mut hasher = Sha256::new();
        let mut sniffer = Sniffer::new();
        let mut size_bytes: u64 = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| MediaError::Body(e.to_string()))?;
            size_bytes = size_bytes.saturating_add(chunk.len() as u64);
            if size_bytes > size_bytes_max {
                drop(file);
                drop(temp);
                return Err(MediaError::TooLarge { limit: size_bytes_max });
            }
            hasher.update(&chunk);
            sniffer.feed(&chunk);
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        file.sync_all().await?;
        drop(file);
        let hash = data_encoding::HEXLOWER.encode(hasher.finalize().as_slice());
        let mime = sniffer.finish();
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.commit(temp, hash, size_bytes, mime))
            .await
            .map_err(|e| MediaError::Task(e.to_string()))?
    }

    /// Stores bytes already in memory (thumbnails; small things). Blocking.
    pub fn put_bytes(&self, data: &[u8]) -> Result<BlobMeta, MediaError> {
        let temp = self.new_temp()?;
        let path = temp.path().map(Path::to_path_buf).unwrap_or_default();
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
        file.write_all(data)?;
        file.sync_all()?;
        drop(file);
        let hash = data_encoding::HEXLOWER.encode(Sha256::digest(data).as_slice());
        let mut sniffer = Sniffer::new();
        sniffer.feed(data);
        self.commit(temp, hash, data.len() as u64, sniffer.finish())
    }

    /// Moves a complete, fsynced temp file under its hash (or drops it when that content is
    /// already stored) and records its metadata. Blocking.
    fn commit(
        &self,
        mut temp: TempFile,
        hash: String,
        size_bytes: u64,
        mime: &str,
    ) -> Result<BlobMeta, MediaError> {
        let final_path = self.blob_path(&hash)?;
        let temp_path = temp.path().map(Path::to_path_buf).unwrap_or_default();
        let (width, height) = match thumbs::image_format(mime) {
            Some(format) => thumbs::displayed_dimensions(&temp_path, format)
                .map_or((None, None), |(w, h)| (Some(w), Some(h))),
            None => (None, None),
        };
        let meta = BlobMeta { hash, size_bytes, mime: mime.to_string(), width, height };
        let fan_out = final_path.parent().map(Path::to_path_buf).unwrap_or_default();
        {
            let _gc = self.gc_lock();
            if final_path.is_file() {
                // Same content: keep the stored copy, make it young again for the collector.
                refresh(&final_path)?;
            } else {
                let created = !fan_out.is_dir();
                std::fs::create_dir_all(&fan_out)?;
                std::fs::rename(&temp_path, &final_path)?;
                temp.disarm();
                sync_dir(&fan_out)?;
                if created {
                    sync_dir(&self.inner.root)?;
                }
            }
        }
        drop(temp);
        self.write_sidecar(&self.meta_path(&meta.hash)?, &meta)?;
        Ok(meta)
    }

    /// Writes a JSON sidecar by temp file and rename (not fsynced: sidecars are rebuilt or
    /// remade when missing).
    fn write_sidecar<T: Serialize>(&self, path: &Path, value: &T) -> Result<(), MediaError> {
        let json = serde_json::to_vec(value)
            .map_err(|e| MediaError::Io(std::io::Error::other(e.to_string())))?;
        let mut temp = self.new_temp()?;
        let temp_path = temp.path().map(Path::to_path_buf).unwrap_or_default();
        std::fs::write(&temp_path, json)?;
        std::fs::rename(&temp_path, path)?;
        temp.disarm();
        Ok(())
    }

    /// True if the blob is stored (false for anything that is not a blob id).
    pub fn exists(&self, hash: &str) -> bool {
        self.blob_path(hash).is_ok_and(|path| path.is_file())
    }

    /// The blob's metadata: from its sidecar, or rebuilt from its bytes (and the sidecar
    /// rewritten) when that is missing or unreadable. Blocking.
    pub fn meta(&self, hash: &str) -> Result<BlobMeta, MediaError> {
        let path = self.blob_path(hash)?;
        let meta_path = self.meta_path(hash)?;
        if let Ok(json) = std::fs::read(&meta_path) {
            if let Ok(meta) = serde_json::from_slice::<BlobMeta>(&json) {
                if meta.hash == hash && path.is_file() {
                    return Ok(meta);
                }
            }
        }
        let mut file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(MediaError::NotFound)
            }
            Err(error) => return Err(error.into()),
        };
        let mut sniffer = Sniffer::new();
        let mut size_bytes = 0u64;
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = file.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            size_bytes += read as u64;
            sniffer.feed(&buffer[..read]);
        }
        let mime = sniffer.finish();
        let (width, height) = match thumbs::image_format(mime) {
            Some(format) => thumbs::displayed_dimensions(&path, format)
                .map_or((None, None), |(w, h)| (Some(w), Some(h))),
            None => (None, None),
        };
        let meta =
            BlobMeta { hash: hash.to_string(), size_bytes, mime: mime.to_string(), width, height };
        self.write_sidecar(&meta_path, &meta)?;
        Ok(meta)
    }

    /// Opens a blob for reading, with its metadata.
    pub async fn open(&self, hash: &str) -> Result<(tokio::fs::File, BlobMeta), MediaError> {
        let path = self.blob_path(hash)?;
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(MediaError::NotFound)
            }
            Err(error) => return Err(error.into()),
        };
        let store = self.clone();
        let hash = hash.to_string();
        let meta = tokio::task::spawn_blocking(move || store.meta(&hash))
            .await
            .map_err(|e| MediaError::Task(e.to_string()))??;
        Ok((file, meta))
    }

    /// Removes one blob and its sidecars (not its thumbnails, which other blobs may share: the
    /// collector reclaims them). Returns whether it was there. Blocking.
    pub fn delete(&self, hash: &str) -> Result<bool, MediaError> {
        let path = self.blob_path(hash)?;
        let _gc = self.gc_lock();
        let existed = remove_if_present(&path)?;
        remove_if_present(&self.meta_path(hash)?)?;
        remove_if_present(&self.thumbs_path(hash)?)?;
        Ok(existed)
    }

    /// The blob's thumbnails if they were made (`Some(vec![])` for a blob that has none),
    /// `None` if not yet. Blocking (one small read).
    pub fn thumbnails_of(&self, hash: &str) -> Result<Option<Vec<ThumbnailMeta>>, MediaError> {
        let path = self.thumbs_path(hash)?;
        let json = match std::fs::read(&path) {
            Ok(json) => json,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let Ok(list) = serde_json::from_slice::<Vec<ThumbnailMeta>>(&json) else {
            return Ok(None);
        };
        if list.iter().all(|thumbnail| self.exists(&thumbnail.id)) {
            Ok(Some(list))
        } else {
            Ok(None)
        }
    }

    /// Makes the thumbnails of an image blob ([`thumbs::THUMBNAIL_SIDES`], never upscaled,
    /// aspect kept; JPEG, or PNG when the image has transparency), stores them as blobs and
    /// records the list beside the blob. Returns the recorded list when it already exists.
    /// A non-image, an image over the size limits or one that does not decode gets no
    /// thumbnails (an empty list, not an error). CPU-heavy and blocking: run it on the blocking
    /// pool ([`BlobStore::thumbnails`] does).
    pub fn make_thumbnails(&self, hash: &str) -> Result<Vec<ThumbnailMeta>, MediaError> {
        if let Some(list) = self.thumbnails_of(hash)? {
            return Ok(list);
        }
        let meta = self.meta(hash)?;
        let mut list = Vec::new();
        if let Some(format) = thumbs::image_format(&meta.mime) {
            match thumbs::render(&self.blob_path(hash)?, format) {
                Ok(rendered) => {
                    for thumbnail in rendered {
                        let stored = self.put_bytes(&thumbnail.bytes)?;
                        list.push(ThumbnailMeta {
                            id: stored.hash,
                            width: thumbnail.width,
                            height: thumbnail.height,
                        });
                    }
                }
                Err(reason) => {
                    tracing::info!(%hash, %reason, "no thumbnails for this image");
                }
            }
        }
        self.write_sidecar(&self.thumbs_path(hash)?, &list)?;
        Ok(list)
    }

    /// [`BlobStore::make_thumbnails`] on the blocking pool, at most [`THUMBNAIL_JOBS_MAX`] at
    /// once. The job runs to completion even if the caller stops waiting.
    pub async fn thumbnails(&self, hash: &str) -> Result<Vec<ThumbnailMeta>, MediaError> {
        let permit = self
            .inner
            .thumbnail_jobs
            .acquire()
            .await
            .map_err(|e| MediaError::Task(e.to_string()))?;
        let store = self.clone();
        let hash = hash.to_string();
        let result = tokio::task::spawn_blocking(move || store.make_thumbnails(&hash))
            .await
            .map_err(|e| MediaError::Task(e.to_string()));
        drop(permit);
        result?
    }

    /// The attachment for a stored blob, from the store's own metadata and thumbnail list (an
    /// empty list if thumbnails are not made yet). Use this when a message is posted instead
    /// of trusting the client's copy. Blocking (small reads).
    pub fn attachment(&self, hash: &str, name: Option<&str>) -> Result<Attachment, MediaError> {
        let meta = self.meta(hash)?;
        let thumbnails = self.thumbnails_of(hash)?.unwrap_or_default();
        Ok(Attachment::new(&meta, name, thumbnails))
    }

    /// Deletes every blob that is not in `referenced`, not the thumbnail of a kept blob, and
    /// older than `min_age` (by modification time, refreshed when the same content is uploaded
    /// again; the age spares blobs uploaded but not yet posted). Also removes sidecars whose
    /// blob is gone. Blocking: walks the whole store.
    pub fn collect(
        &self,
        referenced: &HashSet<String>,
        min_age: Duration,
    ) -> Result<CollectReport, MediaError> {
        let now = SystemTime::now();
        let young =
            |modified: SystemTime| now.duration_since(modified).map_or(true, |age| age < min_age);
        // hash → (size, modified)
        let mut blobs: HashMap<String, (u64, SystemTime)> = HashMap::new();
        let mut sidecars: Vec<(String, PathBuf)> = Vec::new();
        for fan_out in std::fs::read_dir(&self.inner.root)? {
            let fan_out = fan_out?;
            let prefix = fan_out.file_name().to_string_lossy().into_owned();
            if prefix.len() != 2 || !fan_out.file_type()?.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(fan_out.path())? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let (rest, is_sidecar) = match name.split_once('.') {
                    Some((rest, _)) => (rest, true),
                    None => (name.as_str(), false),
                };
                let hash = format!("{prefix}{rest}");
                if !is_blob_id(&hash) {
                    continue;
                }
                if is_sidecar {
                    sidecars.push((hash, entry.path()));
                    continue;
                }
                let metadata = entry.metadata()?;
                if metadata.is_file() {
                    let modified = metadata.modified().unwrap_or(now);
                    blobs.insert(hash, (metadata.len(), modified));
                }
            }
        }

        // Kept: referenced or young, and the thumbnails of whatever is kept.
        let mut kept: HashSet<String> = HashSet::new();
        let mut queue: Vec<String> = blobs
            .iter()
            .filter(|(hash, (_, modified))| referenced.contains(*hash) || young(*modified))
            .map(|(hash, _)| hash.clone())
            .collect();
        while let Some(hash) = queue.pop() {
            if !kept.insert(hash.clone()) {
                continue;
            }
            if let Ok(Some(thumbnails)) = self.thumbnails_of_unchecked(&hash) {
                queue.extend(thumbnails.into_iter().map(|thumbnail| thumbnail.id));
            }
        }

        let mut report = CollectReport::default();
        for (hash, (size, _)) in &blobs {
            if kept.contains(hash) {
                continue;
            }
            let path = self.blob_path(hash)?;
            let _gc = self.gc_lock();
            // An upload of the same content may have refreshed it since the walk.
            match std::fs::metadata(&path) {
                Ok(metadata) if young(metadata.modified().unwrap_or(now)) => continue,
                Ok(_) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error.into()),
            }
            if remove_if_present(&path)? {
                report.deleted += 1;
                report.bytes_freed += size;
            }
            remove_if_present(&self.meta_path(hash)?)?;
            remove_if_present(&self.thumbs_path(hash)?)?;
        }
        for (hash, path) in sidecars {
            if !blobs.contains_key(&hash) {
                let _gc = self.gc_lock();
                if !self.exists(&hash) {
                    remove_if_present(&path)?;
                }
            }
        }
        if report.deleted > 0 {
            tracing::info!(
                deleted = report.deleted,
                bytes_freed = report.bytes_freed,
                "collected unreferenced media"
            );
        }
        Ok(report)
    }

    /// The recorded thumbnail list, without checking that the thumbnails still exist.
    fn thumbnails_of_unchecked(
        &self,
        hash: &str,
    ) -> Result<Option<Vec<ThumbnailMeta>>, MediaError> {
        match std::fs::read(self.thumbs_path(hash)?) {
            Ok(json) => Ok(serde_json::from_slice(&json).ok()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error.into()),
        }
    }
}

/// Sets a file's modification time to now.
fn refresh(path: &Path) -> Result<(), MediaError> {
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    file.set_modified(SystemTime::now())?;
    Ok(())
}

fn sync_dir(path: &Path) -> Result<(), MediaError> {
    std::fs::File::open(path)?.sync_all()?;
    Ok(())
}

fn remove_if_present(path: &Path) -> Result<bool, MediaError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error.into()),
    }
}
