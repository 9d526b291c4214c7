//! Full-text search over messages: a tantivy index embedded in the node's data directory.
//!
//! The index is derived like the views: the engine [`SearchIndex::upsert`]s a message when it
//! arrives or is edited, [`SearchIndex::remove`]s it when it is deleted, and a rebuild is
//! [`SearchIndex::clear`] plus [`SearchIndex::upsert_many`] over the stored documents.
//!
//! # What is indexed
//!
//! One tantivy document per message: `key` (chat id ‖ message id, the replace/delete key,
//! stored), `chat` and `author` (raw-byte terms for filters), `created_ms` (u64 fast field for
//! date ranges and newest-first order), `has_attachment` (bool term) and `body` (tokenized with
//! the `confab` analyzer: words split on non-alphanumerics, longer than 40 bytes dropped,
//! lowercased, folded to ASCII; term frequencies but no positions, stored for snippets).
//!
//! # Queries
//!
//! The user's text is never parsed as query syntax: it is tokenized with the same analyzer and
//! every distinct word (up to [`MAX_QUERY_TERMS`]) must occur (AND). So `"((( AND OR :::`
//! searches for the words `and` and `or`. Blank text matches every message that passes the
//! filters; text with no word in it (only punctuation) matches nothing. The chat filter is
//! mandatory: [`SearchQuery::chats`] is the set of chats the user may see and the only chats
//! searched; an empty set gives no hits. Filters add no score.
//!
//! # Commit semantics
//!
//! Writes (`upsert`, `remove`, `clear`) go to the tantivy writer at once but are searchable only
//! after a tantivy commit, which writes segment files and fsyncs them (milliseconds to tens of
//! milliseconds) and, done often, makes many small segments to merge. So [`SearchIndex::commit`]
//! only *requests* a commit and returns at once; a background thread (`confab-search-commit`)
//! commits at most every [`COMMIT_INTERVAL`] (every [`COMMIT_INTERVAL_QUIET`] while fewer than
//! [`COMMIT_WRITES_EARLY`] writes are pending) and reloads the reader. Read-your-writes still
//! holds: a [`SearchIndex::search`] that starts after `commit()` returned waits for the commit
//! covering it (and asks the thread to do it now rather than at the end of the interval), so
//! `upsert → commit → search` always finds the message. Dropping the index commits what is
//! pending and stops the thread.
//!
//! Durability: the index is not part of the engine's atomic batch; after a crash it holds the
//! writes up to its last commit. [`SearchIndex::commit_marked`] records a caller-chosen number
//! (e.g. the event-log cursor) with the commit, readable with [`SearchIndex::committed_mark`],
//! so the node can re-index only what came after it; a full rebuild always works.
//!
//! # Threads and memory
//!
//! The tantivy writer runs `writer_heap_bytes / 64 MiB` indexing threads (at least 1, at most the
//! cores and 4), sharing that heap, and one merge thread; plus the commit thread. Readers
//! memory-map the segment files. [`SearchIndex::search`] blocks (CPU and mmap I/O): call it from
//! `spawn_blocking`.

mod commit;
mod query;

use commit::commit_loop;
use confab_protocol::{ChatId, MessageId, UserId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashSet};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tantivy::directory::MmapDirectory;
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, FAST, INDEXED, STORED,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
};
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, Order, ReloadPolicy, TantivyDocument, Term,
};

/// Name of the fast field holding [`chat_key`].
const CHAT_KEY_FIELD: &str = "chat_key";
/// Longest query text, in characters.
pub const MAX_TEXT_CHARS: usize = 500;
/// Most hits in one page.
pub const MAX_LIMIT: usize = 100;
/// Deepest page start.
pub const MAX_OFFSET: usize = 10_000;
/// Distinct query words used; later ones are ignored.
pub const MAX_QUERY_TERMS: usize = 32;
/// Longest snippet, in characters (roughly: tantivy cuts at token boundaries).
pub const SNIPPET_MAX_CHARS: usize = 200;
/// The background thread commits at most this often unless a search is waiting, once
/// [`COMMIT_WRITES_EARLY`] writes are pending. A search never misses a write for it (it asks
/// for the commit it needs), so this only trades the cost of commits (segment files, fsyncs,
/// merges: about 3 ms of CPU each) against how much one commit has to write. 2 s for every
/// commit was tried: under load each commit then came as one burst of CPU and disk writes, and
/// the flood benchmark's p99 doubled.
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(250);
/// With fewer writes pending, commits wait this long: a quiet node does not pay a commit for
/// every few messages.
pub const COMMIT_INTERVAL_QUIET: Duration = Duration::from_secs(2);
/// Writes pending that make the next commit come after [`COMMIT_INTERVAL`].
pub const COMMIT_WRITES_EARLY: u64 = 500;
/// A search waits at most this long for the commit that makes earlier writes visible.
const VISIBILITY_WAIT: Duration = Duration::from_secs(10);
/// Words longer than this (bytes) are not indexed.
const MAX_WORD_BYTES: usize = 40;
/// Name the analyzer is registered under (analyzers are not persisted with the index).
const ANALYZER: &str = "confab";
/// tantivy's minimum indexing heap per thread.
const MIN_HEAP_PER_THREAD: usize = 15_000_000;
/// Indexing heap that justifies one more indexing thread.
const HEAP_PER_THREAD: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("search text is longer than {max} characters")]
    TextTooLong { max: usize },
    #[error("page size is larger than {max}")]
    LimitTooLarge { max: usize },
    #[error("page offset is larger than {max}")]
    OffsetTooLarge { max: usize },
    #[error("the search index in {0} was made with another schema; remove it and rebuild")]
    Incompatible(String),
    #[error("search index I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("search index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("search index commit failed: {0}")]
    Commit(String),
    #[error("search index lock poisoned")]
    Poisoned,
    #[error("reading the messages to index: {0}")]
    Store(#[from] crate::store::StoreError),
}

impl SearchError {
    /// True for errors caused by the query (answer 400), false for the index's own (500).
    pub fn is_bad_query(&self) -> bool {
        matches!(
            self,
            SearchError::TextTooLong { .. }
                | SearchError::LimitTooLarge { .. }
                | SearchError::OffsetTooLarge { .. }
        )
    }
}

/// One message as the index sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchDoc {
    pub chat: ChatId,
    pub message: MessageId,
    pub author: UserId,
    pub body: String,
    pub created_ms: u64,
    pub has_attachment: bool,
}

/// Order of the hits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchOrder {
    /// By `created_ms`, newest first.
    #[default]
    Newest,
    /// By BM25 score; blank text falls back to newest first.
    Relevance,
}

/// A search. Built by the node, never deserialized from a client: `chats` must come from the
/// user's memberships.
#[derive(Clone, Debug, Default)]
pub struct SearchQuery {
    /// Words to find (all of them); blank: every message passing the filters.
    pub text: String,
    /// The chats the user may see: the only chats searched. Empty: no hits.
    pub chats: Vec<ChatId>,
    pub author: Option<UserId>,
    /// Inclusive lower bound on `created_ms`.
    pub from_ms: Option<u64>,
    /// Exclusive upper bound on `created_ms`.
    pub to_ms: Option<u64>,
    pub has_attachment: Option<bool>,
    pub order: SearchOrder,
    pub offset: usize,
    pub limit: usize,
}

/// One hit. `score` is the BM25 score for [`SearchOrder::Relevance`] and 0 for newest first.
#[derive(Clone, Debug, Serialize)]
pub struct SearchHit {
    pub chat: ChatId,
    pub message: MessageId,
    pub score: f32,
    pub snippet: Vec<SnippetPart>,
}

/// A piece of a snippet. The client builds DOM text nodes from these; nothing here is HTML.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnippetPart {
    pub text: String,
    pub highlighted: bool,
}

/// One page of hits; `total` counts every match.
#[derive(Clone, Debug, Serialize)]
pub struct SearchPage {
    pub hits: Vec<SearchHit>,
    pub total: usize,
}

#[derive(Clone, Copy)]
struct Fields {
    key: Field,
    chat: Field,
    chat_key: Field,
    author: Field,
    created_ms: Field,
    has_attachment: Field,
    body: Field,
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let key = builder.add_bytes_field("key", INDEXED | STORED);
    let chat = builder.add_bytes_field("chat", INDEXED);
    let chat_key = builder.add_u64_field(CHAT_KEY_FIELD, FAST);
    let author = builder.add_bytes_field("author", INDEXED);
    let created_ms = builder.add_u64_field("created_ms", FAST);
    let has_attachment = builder.add_bool_field("has_attachment", INDEXED);
    let body_options = TextOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqs),
        )
        .set_stored();
    let body = builder.add_text_field("body", body_options);
    let fields = Fields { key, chat, chat_key, author, created_ms, has_attachment, body };
    (builder.build(), fields)
}

fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_WORD_BYTES))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

fn doc_key(chat: &ChatId, message: &MessageId) -> [u8; ChatId::LEN + MessageId::LEN] {
    let mut key = [0u8; ChatId::LEN + MessageId::LEN];
    key[..ChatId::LEN].copy_from_slice(chat.as_bytes());
    key[ChatId::LEN..].copy_from_slice(message.as_bytes());
    key
}

/// What the commit thread and the searches agree on.
#[derive(Default)]
struct CommitState {
    /// Commit requests made so far.
    requested: u64,
    /// Requests covered by the last finished commit.
    visible: u64,
    /// A search waits: commit now.
    urgent: bool,
    shutdown: bool,
    /// Highest mark handed to `commit_marked` not yet committed.
    mark: Option<u64>,
    /// Last background commit failure, reported by the next `commit()`.
    failure: Option<String>,
}

struct Inner {
    index: Index,
    fields: Fields,
    /// Adds and deletes take it shared (tantivy's are `&self`); commits take it exclusively.
    writer: RwLock<IndexWriter>,
    reader: IndexReader,
    state: Mutex<CommitState>,
    changed: Condvar,
    /// Adds and deletes since the last commit started (they decide how soon it comes).
    writes_pending: std::sync::atomic::AtomicU64,
    /// The mark of the last commit: carried into commits that set none, since every tantivy
    /// commit replaces the payload.
    last_mark: Mutex<Option<u64>>,
}

/// The node's message search index. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct SearchIndex {
    inner: Arc<Inner>,
    committer: Option<JoinHandle<()>>,
}

impl SearchIndex {
    /// Opens the index in `dir` (created if missing). `writer_heap_bytes` is the indexing heap,
    /// at least 15 MB per indexing thread (smaller values are raised to that); 64–128 MiB is
    /// plenty for live traffic, more speeds up rebuilds.
    pub fn open(dir: &Path, writer_heap_bytes: usize) -> Result<Self, SearchError> {
        std::fs::create_dir_all(dir)?;
        let (schema, fields) = schema();
        let directory = MmapDirectory::open(dir).map_err(tantivy::TantivyError::from)?;
        let index = if Index::exists(&directory).map_err(tantivy::TantivyError::from)? {
            let index = Index::open(directory)?;
            if !same_schema(&index.schema(), &schema) {
                return Err(SearchError::Incompatible(dir.display().to_string()));
            }
            index
        } else {
            Index::create(directory, schema, tantivy::IndexSettings::default())?
        };
        index.tokenizers().register(ANALYZER, analyzer());

        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = (writer_heap_bytes / HEAP_PER_THREAD).clamp(1, cores.clamp(1, 4));
        let per_thread = (writer_heap_bytes / threads).max(MIN_HEAP_PER_THREAD);
        let options = tantivy::indexer::IndexWriterOptions::builder()
            .num_worker_threads(threads)
            .num_merge_threads(1)
            .memory_budget_per_thread(per_thread)
            .build();
        let writer = index.writer_with_options(options)?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        let last_mark = index.load_metas()?.payload.and_then(|payload| payload.parse().ok());
        let inner = Arc::new(Inner {
            last_mark: Mutex::new(last_mark),
            index,
            fields,
            writer: RwLock::new(writer),
            reader,
            state: Mutex::new(CommitState::default()),
            changed: Condvar::new(),
            writes_pending: std::sync::atomic::AtomicU64::new(0),
        });
        let thread_inner = Arc::clone(&inner);
        let committer = std::thread::Builder::new()
            .name("confab-search-commit".into())
            .spawn(move || commit_loop(&thread_inner))?;
        Ok(Self { inner, committer: Some(committer) })
    }

    /// Adds a message, or replaces the one with the same chat and message id (edits).
    pub fn upsert(&self, doc: &SearchDoc) -> Result<(), SearchError> {
        self.upsert_many(std::slice::from_ref(doc))
    }

    /// Adds or replaces many messages (rebuild, bulk import).
    pub fn upsert_many(&self, docs: &[SearchDoc]) -> Result<(), SearchError> {
        let fields = self.inner.fields;
        let writer = self.inner.writer.read().map_err(|_| SearchError::Poisoned)?;
        for doc in docs {
            let key = doc_key(&doc.chat, &doc.message);
            writer.delete_term(Term::from_field_bytes(fields.key, &key));
            let mut document = TantivyDocument::new();
            document.add_bytes(fields.key, &key[..]);
            document.add_bytes(fields.chat, &doc.chat.as_bytes()[..]);
            document.add_u64(fields.chat_key, chat_key(&doc.chat));
            document.add_bytes(fields.author, doc.author.as_str().as_bytes());
            document.add_u64(fields.created_ms, doc.created_ms);
            document.add_bool(fields.has_attachment, doc.has_attachment);
            document.add_text(fields.body, &doc.body);
            writer.add_document(document)?;
        }
        self.inner
            .writes_pending
            .fetch_add(docs.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Removes a message (deleted). Removing one that is not indexed is not an error.
    pub fn remove(&self, chat: &ChatId, message: &MessageId) -> Result<(), SearchError> {
        let key = doc_key(chat, message);
        let writer = self.inner.writer.read().map_err(|_| SearchError::Poisoned)?;
        writer.delete_term(Term::from_field_bytes(self.inner.fields.key, &key));
        self.inner.writes_pending.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Requests a commit and returns at once (see the module docs): searches started after this
    /// returned see every write made before it. Reports a failure of an earlier background
    /// commit, if any.
    pub fn commit(&self) -> Result<(), SearchError> {
        self.request_commit(None)
    }

    /// [`SearchIndex::commit`], recording `mark` (e.g. the event cursor of the last write) with
    /// the tantivy commit that includes the writes made before this call.
    pub fn commit_marked(&self, mark: u64) -> Result<(), SearchError> {
        self.request_commit(Some(mark))
    }

    /// The highest mark recorded by a finished commit, read from the index on disk.
    pub fn committed_mark(&self) -> Result<Option<u64>, SearchError> {
        let metas = self.inner.index.load_metas()?;
        Ok(metas.payload.and_then(|payload| payload.parse().ok()))
    }

    fn request_commit(&self, mark: Option<u64>) -> Result<(), SearchError> {
        let mut state = self.inner.lock_state()?;
        state.requested += 1;
        if let Some(mark) = mark {
            state.mark = Some(state.mark.map_or(mark, |old| old.max(mark)));
        }
        let failure = state.failure.take();
        drop(state);
        self.inner.changed.notify_all();
        match failure {
            Some(failure) => Err(SearchError::Commit(failure)),
            None => Ok(()),
        }
    }

    /// Deletes every message (before a rebuild) and requests a commit.
    pub fn clear(&self) -> Result<(), SearchError> {
        {
            let writer = self.inner.writer.read().map_err(|_| SearchError::Poisoned)?;
            writer.delete_all_documents()?;
        }
        self.commit()
    }

    /// Merges every segment into one and waits for it: after a rebuild, to make the index
    /// smaller and searches faster. Slow (seconds per million messages); never needed for
    /// correctness.
    pub fn compact(&self) -> Result<(), SearchError> {
        self.commit()?;
        self.wait_visible()?;
        let mut writer = self.inner.writer.write().map_err(|_| SearchError::Poisoned)?;
        let segments = self.inner.index.searchable_segment_ids()?;
        if segments.len() > 1 {
            writer.merge(&segments).wait()?;
        }
        writer.garbage_collect_files().wait()?;
        drop(writer);
        self.inner.reader.reload()?;
        Ok(())
    }

    /// Messages indexed, counting every write committed before this call (it waits for the
    /// pending commit, like [`SearchIndex::search`]).
    pub fn doc_count(&self) -> u64 {
        if let Err(error) = self.wait_visible() {
            tracing::warn!(%error, "search index count before the pending commit finished");
        }
        self.inner.reader.searcher().num_docs()
    }

    /// Blocks until every commit requested so far is visible.
    fn wait_visible(&self) -> Result<(), SearchError> {
        let mut state = self.inner.lock_state()?;
        let target = state.requested;
        if state.visible >= target {
            return Ok(());
        }
        state.urgent = true;
        self.inner.changed.notify_all();
        let deadline = Instant::now() + VISIBILITY_WAIT;
        while state.visible < target && !state.shutdown {
            let now = Instant::now();
            if now >= deadline {
                tracing::warn!("search ran before the pending index commit finished");
                break;
            }
            state = self
                .inner
                .changed
                .wait_timeout(state, deadline - now)
                .map_err(|_| SearchError::Poisoned)?
                .0;
        }
        Ok(())
    }
}

impl Drop for SearchIndex {
    /// Commits what is pending and stops the commit thread.
    fn drop(&mut self) {
        if let Ok(mut state) = self.inner.state.lock() {
            state.shutdown = true;
        }
        self.inner.changed.notify_all();
        if let Some(committer) = self.committer.take() {
            if committer.join().is_err() {
                tracing::error!("search commit thread panicked");
            }
        }
    }
}

/// The chat as a u64 fast-field value: its first 8 bytes. Chat ids are random, so two chats
/// share a key with negligible probability; hits are still checked against the exact chat id.
fn chat_key(chat: &ChatId) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&chat.as_bytes()[..8]);
    u64::from_be_bytes(first)
}

fn parse_key(key: &[u8]) -> Option<(ChatId, MessageId)> {
    if key.len() != ChatId::LEN + MessageId::LEN {
        return None;
    }
    let (chat, message) = key.split_at(ChatId::LEN);
    Some((ChatId::from_slice(chat)?, MessageId::from_slice(message)?))
}

/// Compares schemas by their JSON form (what tantivy persists in `meta.json`).
fn same_schema(a: &Schema, b: &Schema) -> bool {
    match (serde_json::to_value(a), serde_json::to_value(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests;
