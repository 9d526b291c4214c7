//! Media storage: uploaded files as content-addressed blobs in the data directory, their sniffed
//! types and image thumbnails, the wire shape messages carry ([`Attachment`]), the HTTP upload
//! and download helpers, and the collector that reclaims unreferenced blobs.
//!
//! Layout under `<data_dir>/blobs/`:
//!
//! | path | what |
//! |---|---|
//! | `ab/cdef…` (2 + 62 hex digits of the SHA-256) | the blob's bytes, exactly as uploaded |
//! | `ab/cdef….json` | its [`BlobMeta`] (a cache: rebuilt from the bytes when missing) |
//! | `ab/cdef….thumbs.json` | its thumbnails, once made (absent: not made yet) |
//! | `tmp/` | uploads in progress; emptied when the store is opened |
//!
//! A blob is written to `tmp/`, fsynced, then renamed under its hash, so a crash never leaves
//! a partial blob under a hash name. Same bytes, same hash: a second upload of the same content
//! keeps the one copy (and refreshes its age for the collector).
//!
//! Thumbnails are blobs too. [`upload`] makes them on the blocking thread pool (never on the
//! async threads), at most a few images at once, and answers with the attachment complete:
//! the client then posts a message that already names its thumbnails. Access control (only
//! members of a chat where the media was posted may fetch it) is the caller's job: this module
//! knows blobs, not chats.

mod http;
mod sniff;
mod store;
mod thumbs;

#[cfg(test)]
mod tests;

pub use http::{content_disposition, download, upload, INLINE_MIME_TYPES};
pub use sniff::{sniff_magic, Sniffer};
pub use store::{BlobMeta, BlobStore, CollectReport};
pub use thumbs::{ThumbnailMeta, IMAGE_PIXELS_MAX, IMAGE_SIDE_MAX, THUMBNAIL_SIDES};

use confab_protocol::bucket::{AttachmentRecord, ThumbnailRecord};
use serde::{Deserialize, Serialize};

/// Default upload size limit: 100 MiB.
pub const UPLOAD_BYTES_MAX_DEFAULT: u64 = 100 * 1024 * 1024;

/// Longest file name kept, in UTF-8 bytes.
pub const FILE_NAME_BYTES_MAX: usize = 255;

/// Everything that can go wrong with media.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("the file is larger than the limit of {}", human_size(.limit))]
    TooLarge { limit: u64 },
    #[error("not a media id (64 lowercase hex digits)")]
    InvalidId,
    #[error("media not found")]
    NotFound,
    #[error("the upload was interrupted: {0}")]
    Body(String),
    #[error("media storage i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("media task failed: {0}")]
    Task(String),
}

/// `100 MiB (104857600 bytes)`, or just bytes for sizes that are not whole KiB/MiB/GiB.
fn human_size(bytes: &u64) -> String {
    let bytes = *bytes;
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{} {name} ({bytes} bytes)", bytes / unit);
        }
    }
    format!("{bytes} bytes")
}

/// An attachment as messages carry it. Build it with [`BlobStore::attachment`] from the store's
/// own knowledge, never from what a client claims.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The blob's SHA-256, 64 lowercase hex digits.
    pub id: String,
    /// The client's file name, sanitised ([`sanitize_file_name`]).
    pub name: String,
    /// Sniffed from the bytes.
    pub mime: String,
    pub size_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Largest first; empty for non-images and images that could not be decoded.
    #[serde(default)]
    pub thumbnails: Vec<ThumbnailMeta>,
}

impl Attachment {
    pub fn new(meta: &BlobMeta, name: Option<&str>, thumbnails: Vec<ThumbnailMeta>) -> Self {
        let name = match name {
            Some(name) => sanitize_file_name(name),
            None => default_file_name(&meta.mime),
        };
        Self {
            id: meta.hash.clone(),
            name,
            mime: meta.mime.clone(),
            size_bytes: meta.size_bytes,
            width: meta.width,
            height: meta.height,
            thumbnails,
        }
    }
}

impl Attachment {
    /// Every blob the attachment names: itself and its thumbnails.
    pub fn blob_ids(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.id.as_str()).chain(self.thumbnails.iter().map(|t| t.id.as_str()))
    }
}

impl From<&Attachment> for AttachmentRecord {
    fn from(attachment: &Attachment) -> Self {
        AttachmentRecord {
            id: attachment.id.clone(),
            name: attachment.name.clone(),
            mime: attachment.mime.clone(),
            size_bytes: attachment.size_bytes,
            width: attachment.width,
            height: attachment.height,
            thumbnails: attachment
                .thumbnails
                .iter()
                .map(|t| ThumbnailRecord { id: t.id.clone(), width: t.width, height: t.height })
                .collect(),
        }
    }
}

impl From<AttachmentRecord> for Attachment {
    fn from(record: AttachmentRecord) -> Self {
        Attachment {
            id: record.id,
            name: record.name,
            mime: record.mime,
            size_bytes: record.size_bytes,
            width: record.width,
            height: record.height,
            thumbnails: record
                .thumbnails
                .into_iter()
                .map(|t| ThumbnailMeta { id: t.id, width: t.width, height: t.height })
                .collect(),
        }
    }
}

/// True for a blob id: exactly 64 lowercase hex digits (so it is also a safe path component).
pub fn is_blob_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A file name safe to store and to send back: the last path component only (no `/` or `\`),
/// no control characters or bidirectional overrides, no leading/trailing whitespace or trailing
/// dots, not `.` or `..`, at most [`FILE_NAME_BYTES_MAX`] bytes (the extension kept when it is
/// short), and never empty (`file`).
pub fn sanitize_file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String =
        base.chars().filter(|c| !c.is_control() && !is_bidi_control(*c)).collect();
    let trimmed = cleaned.trim().trim_end_matches(|c: char| c == '.' || c.is_whitespace());
    if trimmed.is_empty() || trimmed == "." || trimmed == ".." {
        return "file".into();
    }
    if trimmed.len() <= FILE_NAME_BYTES_MAX {
        return trimmed.to_string();
    }
    // Too long: keep a short extension and cut the stem at a character boundary.
    let extension = match trimmed.rfind('.') {
        Some(dot) if dot > 0 && trimmed.len() - dot <= 16 => &trimmed[dot..],
        _ => "",
    };
    let stem = &trimmed[..trimmed.len() - extension.len()];
    let budget = FILE_NAME_BYTES_MAX - extension.len();
    let mut cut = budget.min(stem.len());
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{extension}", stem[..cut].trim_end())
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A name for an upload that came without one: `file` plus the type's usual extension.
fn default_file_name(mime: &str) -> String {
    let extension = match mime {
        "image/png" => ".png",
        "image/jpeg" => ".jpg",
        "image/gif" => ".gif",
        "image/webp" => ".webp",
        "application/pdf" => ".pdf",
        "application/zip" => ".zip",
        "video/mp4" => ".mp4",
        "video/webm" => ".webm",
        "audio/mpeg" => ".mp3",
        "audio/ogg" => ".ogg",
        "audio/wav" => ".wav",
        "audio/flac" => ".flac",
        "text/plain" => ".txt",
        _ => "",
    };
    format!("file{extension}")
}
