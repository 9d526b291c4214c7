//! The relay's durable state in sled 0.34: queues, their envelopes and the indexes that make
//! enqueue idempotent, topics collapse and TTLs expire.
//!
//! Trees (names carry a version so the key encodings can change later):
//!
//! | tree | key | value |
//! |---|---|---|
//! | `meta/v1` | `vapid_key` | the VAPID P-256 secret scalar (32 bytes) |
//! | `queues/v1` | queue id (16) | [`QueueRecord`] JSON |
//! | `envelopes/v1` | queue id ‖ seq (u64 BE) | [`StoredEnvelope`] binary |
//! | `ids/v1` | queue id ‖ envelope id (16) | state (1: 0 queued, 1 done) ‖ u64 BE (seq, or keep-until ms) |
//! | `topics/v1` | queue id ‖ topic | seq (u64 BE) |
//! | `expiry/v1` | ms (u64 BE) ‖ kind (1) ‖ queue id ‖ rest | empty: kind 0 = envelope (rest = seq), 1 = id tombstone (rest = envelope id), 2 = revocation (rest = capability id) |
//! | `revoked/v1` | queue id ‖ capability id | not-after ms (u64 BE) |
//!
//! Every mutation runs under one async mutex (so the in-memory per-queue counts stay exact) as
//! one multi-tree sled transaction; callers answer only after [`Store::flush`]. A removed
//! envelope leaves a tombstone in `ids/v1` until the sender could no longer replay its request,
//! so a retried or replayed enqueue of an acknowledged envelope is answered `duplicate` and not
//! stored again.

use crate::error::StoreError;
use crate::metrics::Metrics;
use confab_protocol::relay::{CapabilityId, DevicePublicKey, EnvelopeId, QueueId, Topic, Urgency};
use confab_protocol::OrgId;
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use sled::Transactional;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

/// A device's Web Push subscription, in the shape of the browser's `PushSubscription.toJSON()`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushSubscription {
    pub endpoint: String,
    pub keys: PushKeys,
}

/// The subscription's keys, unpadded base64url: `p256dh` (65-byte uncompressed P-256 point),
/// `auth` (16 bytes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushKeys {
    pub p256dh: String,
    pub auth: String,
}

/// One device's queue.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QueueRecord {
    pub device_key: DevicePublicKey,
    pub created_ms: u64,
    pub push: Option<PushSubscription>,
    /// Sequence number of the next envelope (orders the queue).
    pub next_seq: u64,
    /// Enqueues refused because this queue was full, since it was created.
    pub overflowed: u64,
    /// Envelopes of this queue dropped because their TTL ran out, since it was created.
    pub expired: u64,
}

/// An envelope as stored. Binary layout: `version (1) = 1 ‖ envelope id (16) ‖ sender (32) ‖
/// received_ms (8) ‖ expires_ms (8) ‖ keep_until_ms (8) ‖ urgency (1) ‖ topic length (1) ‖
/// topic ‖ sealed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEnvelope {
    pub envelope_id: EnvelopeId,
    pub sender: OrgId,
    pub received_ms: u64,
    pub expires_ms: u64,
    /// Until when the id's tombstone must stay after removal (replay window).
    pub keep_until_ms: u64,
    pub urgency: Urgency,
    pub topic: Option<Topic>,
    pub sealed: Vec<u8>,
}

/// Bytes of a stored envelope besides its sealed payload and topic.
pub const STORED_HEADER_LEN: usize = 1 + 16 + 32 + 8 + 8 + 8 + 1 + 1;

impl StoredEnvelope {
    pub fn encode(&self) -> Vec<u8> {
        let topic = self.topic.as_ref().map(|t| t.as_str().as_bytes()).unwrap_or(&[]);
        let mut out = Vec::with_capacity(STORED_HEADER_LEN + topic.len() + self.sealed.len());
        out.push(1);
        out.extend_from_slice(self.envelope_id.as_bytes());
        out.extend_from_slice(self.sender.as_bytes());
        out.extend_from_slice(&self.received_ms.to_be_bytes());
        out.extend_from_slice(&self.expires_ms.to_be_bytes());
        out.extend_from_slice(&self.keep_until_ms.to_be_bytes());
        out.push(self.urgency.code());
        out.push(topic.len().min(255) as u8);
        out.extend_from_slice(topic);
        out.extend_from_slice(&self.sealed);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let corrupt = |what| StoreError::Corrupt { tree: "envelopes/v1", what };
        if bytes.len() < STORED_HEADER_LEN || bytes[0] != 1 {
            return Err(corrupt("header"));
        }
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_be_bytes(b)
        };
        let envelope_id = EnvelopeId::from_slice(&bytes[1..17]).ok_or(corrupt("id"))?;
        let sender = OrgId::from_slice(&bytes[17..49]).ok_or(corrupt("sender"))?;
        let urgency = Urgency::from_code(bytes[73]).ok_or(corrupt("urgency"))?;
        let topic_len = bytes[74] as usize;
        if bytes.len() < STORED_HEADER_LEN + topic_len {
            return Err(corrupt("topic"));
        }
        let topic = if topic_len == 0 {
            None
        } else {
            let text =
                std::str::from_utf8(&bytes[STORED_HEADER_LEN..STORED_HEADER_LEN + topic_len])
                    .map_err(|_| corrupt("topic"))?;
            Some(text.parse().map_err(|_| corrupt("topic"))?)
        };
        Ok(Self {
            envelope_id,
            sender,
            received_ms: u64_at(49),
            expires_ms: u64_at(57),
            keep_until_ms: u64_at(65),
            urgency,
            topic,
            sealed: bytes[STORED_HEADER_LEN + topic_len..].to_vec(),
        })
    }
}

/// An envelope to enqueue, already authenticated and checked against the limits.
#[derive(Clone, Debug)]
pub struct NewEnvelope {
    pub queue: QueueId,
    pub envelope_id: EnvelopeId,
    pub sender: OrgId,
    pub expires_ms: u64,
    pub keep_until_ms: u64,
    pub urgency: Urgency,
    pub topic: Option<Topic>,
    pub sealed: Vec<u8>,
}

/// What an enqueue did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnqueueOutcome {
    /// Stored (not yet flushed: flush before answering).
    Queued {
        depth: u64,
        /// An older envelope with the same topic was replaced.
        collapsed: Option<EnvelopeId>,
    },
    /// The envelope id was seen before in this queue; nothing changed.
    Duplicate {
        /// Still queued (false: already acknowledged, collapsed or expired).
        pending: bool,
    },
    /// Refused: the queue is at its cap. Nothing was stored; the queue's overflow count grew.
    Overflow { depth: u64, bytes: u64 },
}

/// Per-queue caps applied by [`Store::enqueue`].
#[derive(Clone, Copy, Debug)]
pub struct Caps {
    pub envelopes: u64,
    pub bytes: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct QueueStats {
    count: u64,
    bytes: u64,
}

#[derive(Default)]
struct Counts {
    per_queue: HashMap<QueueId, QueueStats>,
    total: u64,
}

const KIND_ENVELOPE: u8 = 0;
const KIND_TOMBSTONE: u8 = 1;
const KIND_REVOCATION: u8 = 2;
const ID_QUEUED: u8 = 0;
const ID_DONE: u8 = 1;

fn env_key(queue: &QueueId, seq: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(queue.as_bytes());
    key[16..].copy_from_slice(&seq.to_be_bytes());
    key
}

fn pair_key(queue: &QueueId, rest: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(16 + rest.len());
    key.extend_from_slice(queue.as_bytes());
    key.extend_from_slice(rest);
    key
}

fn expiry_key(ms: u64, kind: u8, queue: &QueueId, rest: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + 1 + 16 + rest.len());
    key.extend_from_slice(&ms.to_be_bytes());
    key.push(kind);
    key.extend_from_slice(queue.as_bytes());
    key.extend_from_slice(rest);
    key
}

fn id_value(state: u8, n: u64) -> [u8; 9] {
    let mut v = [0u8; 9];
    v[0] = state;
    v[1..].copy_from_slice(&n.to_be_bytes());
    v
}

fn parse_id_value(bytes: &[u8]) -> Result<(u8, u64), StoreError> {
    if bytes.len() != 9 {
        return Err(StoreError::Corrupt { tree: "ids/v1", what: "length" });
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&bytes[1..]);
    Ok((bytes[0], u64::from_be_bytes(n)))
}

fn be_u64(bytes: &[u8], tree: &'static str) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt { tree, what: "u64" })
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

/// The relay's store. Cheap to share behind an `Arc`.
pub struct Store {
    db: sled::Db,
    /// sled's data file, fsynced after every flush (sled 0.34 flushes with `sync_file_range`,
    /// which does not persist file metadata: design §6, sled#1452). `None`: flush only.
    data_file: Option<Arc<std::fs::File>>,
    /// Group commit: a ticket per flush call, and the highest ticket a finished flush covers.
    flush_tickets: std::sync::atomic::AtomicU64,
    flushed: tokio::sync::Mutex<u64>,
    meta: sled::Tree,
    queues: sled::Tree,
    envelopes: sled::Tree,
    ids: sled::Tree,
    topics: sled::Tree,
    expiry: sled::Tree,
    revoked: sled::Tree,
    counts: tokio::sync::Mutex<Counts>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

/// Removes one stored envelope inside a transaction, leaving a tombstone for its id.
#[allow(clippy::too_many_arguments)]
fn tx_remove(
    envelopes: &TransactionalTree,
    ids: &TransactionalTree,
    topics: &TransactionalTree,
    expiry: &TransactionalTree,
    queue: &QueueId,
    seq: u64,
    envelope: &StoredEnvelope,
    now_ms: u64,
) -> TxResult<()> {
    envelopes.remove(&env_key(queue, seq)[..])?;
    expiry.remove(expiry_key(envelope.expires_ms, KIND_ENVELOPE, queue, &seq.to_be_bytes()))?;
    if let Some(topic) = &envelope.topic {
        let key = pair_key(queue, topic.as_str().as_bytes());
        if topics.get(&key)?.as_deref() == Some(&seq.to_be_bytes()[..]) {
            topics.remove(key)?;
        }
    }
    let id_key = pair_key(queue, envelope.envelope_id.as_bytes());
    if envelope.keep_until_ms > now_ms {
        ids.insert(id_key, &id_value(ID_DONE, envelope.keep_until_ms)[..])?;
        expiry.insert(
            expiry_key(
                envelope.keep_until_ms,
                KIND_TOMBSTONE,
                queue,
                envelope.envelope_id.as_bytes(),
            ),
            &[][..],
        )?;
    } else {
        ids.remove(id_key)?;
    }
    Ok(())
}

impl Store {
    /// Opens (or creates) the store in `dir` and counts what it holds.
    pub fn open(dir: &Path, fsync: bool, metrics: Arc<Metrics>) -> Result<Self, StoreError> {
        let db = sled::Config::new().path(dir).cache_capacity(64 * 1024 * 1024).open()?;
        let data_file = if fsync {
            Some(Arc::new(
                std::fs::File::open(dir.join("db")).map_err(|e| StoreError::Sled(e.into()))?,
            ))
        } else {
            None
        };
        let mut store = Self {
            data_file,
            flush_tickets: std::sync::atomic::AtomicU64::new(0),
            flushed: tokio::sync::Mutex::new(0),
            meta: db.open_tree("meta/v1")?,
            queues: db.open_tree("queues/v1")?,
            envelopes: db.open_tree("envelopes/v1")?,
            ids: db.open_tree("ids/v1")?,
            topics: db.open_tree("topics/v1")?,
            expiry: db.open_tree("expiry/v1")?,
            revoked: db.open_tree("revoked/v1")?,
            db,
            counts: tokio::sync::Mutex::new(Counts::default()),
            metrics,
        };
        let mut counts = Counts::default();
        for item in store.envelopes.iter() {
            let (key, value) = item?;
            let queue = QueueId::from_slice(key.get(..16).unwrap_or(&[]))
                .ok_or(StoreError::Corrupt { tree: "envelopes/v1", what: "key" })?;
            let stats = counts.per_queue.entry(queue).or_default();
            stats.count += 1;
            stats.bytes += value.len() as u64;
            counts.total += 1;
        }
        store.metrics.queue_depth.store(counts.total, std::sync::atomic::Ordering::Relaxed);
        store.metrics.queues.store(store.queues.len() as u64, std::sync::atomic::Ordering::Relaxed);
        store.counts = tokio::sync::Mutex::new(counts);
        Ok(store)
    }

    /// Waits until everything written before the call is on disk (see design §6 for sled's
    /// caveats). Concurrent callers share flushes (group commit): a caller whose ticket a
    /// flush that started after it already covers returns without flushing again.
    ///
    /// The flush runs on tokio's blocking pool (`Db::flush`, then `fsync` of the data file when
    /// configured); sled's `flush_async` was seen to stall under many concurrent callers.
    pub async fn flush(&self) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        let ticket = self.flush_tickets.fetch_add(1, Ordering::SeqCst) + 1;
        let mut flushed = self.flushed.lock().await;
        if *flushed >= ticket {
            return Ok(());
        }
        // Every ticket up to here was taken after its caller's writes, so this flush covers it.
        let covers = self.flush_tickets.load(Ordering::SeqCst);
        let db = self.db.clone();
        let file = self.data_file.clone();
        tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            db.flush()?;
            if let Some(file) = file {
                file.sync_all().map_err(|e| StoreError::Sled(e.into()))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))??;
        *flushed = covers;
        Ok(())
    }

    /// The stored VAPID secret, or `make()`'s result stored (and flushed) as the new one.
    pub async fn vapid_secret(
        &self,
        make: impl FnOnce() -> [u8; 32],
    ) -> Result<[u8; 32], StoreError> {
        if let Some(bytes) = self.meta.get("vapid_key")? {
            return <[u8; 32]>::try_from(&bytes[..])
                .map_err(|_| StoreError::Corrupt { tree: "meta/v1", what: "vapid_key" });
        }
        let secret = make();
        self.meta.insert("vapid_key", &secret[..])?;
        self.flush().await?;
        Ok(secret)
    }

    pub fn queue(&self, queue: &QueueId) -> Result<Option<QueueRecord>, StoreError> {
        match self.queues.get(queue.as_bytes())? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// Creates a queue under a fresh id from `new_id` (retried on the unlikely collision).
    pub async fn register(
        &self,
        device_key: DevicePublicKey,
        push: Option<PushSubscription>,
        now_ms: u64,
        mut new_id: impl FnMut() -> QueueId,
    ) -> Result<QueueId, StoreError> {
        let _guard = self.counts.lock().await;
        let record = QueueRecord {
            device_key,
            created_ms: now_ms,
            push,
            next_seq: 0,
            overflowed: 0,
            expired: 0,
        };
        let value = serde_json::to_vec(&record)?;
        loop {
            let id = new_id();
            if self
                .queues
                .compare_and_swap(id.as_bytes(), None as Option<&[u8]>, Some(value.clone()))?
                .is_ok()
            {
                Metrics::inc(&self.metrics.queues, 1);
                return Ok(id);
            }
        }
    }

    /// Replaces the queue's push subscription. `None` if the queue does not exist.
    pub async fn set_push(
        &self,
        queue: &QueueId,
        push: Option<PushSubscription>,
    ) -> Result<Option<()>, StoreError> {
        let _guard = self.counts.lock().await;
        let Some(mut record) = self.queue(queue)? else {
            return Ok(None);
        };
        record.push = push;
        self.queues.insert(queue.as_bytes(), serde_json::to_vec(&record)?)?;
        Ok(Some(()))
    }

    /// Deletes the push subscription if it still has this endpoint (after a 404/410).
    pub async fn delete_push_if(
        &self,
        queue: &QueueId,
        endpoint: &str,
    ) -> Result<bool, StoreError> {
        let _guard = self.counts.lock().await;
        let Some(mut record) = self.queue(queue)? else {
            return Ok(false);
        };
        if record.push.as_ref().map(|p| p.endpoint.as_str()) != Some(endpoint) {
            return Ok(false);
        }
        record.push = None;
        self.queues.insert(queue.as_bytes(), serde_json::to_vec(&record)?)?;
        Ok(true)
    }

    /// Deletes a queue with everything it holds (envelopes, ids, topics, revocations). Its
    /// entries in `expiry/v1` are left for the sweeper, which drops entries whose record is gone.
    /// `Ok(false)` if there was no such queue. The caller must flush before answering.
    pub async fn delete_queue(&self, queue: &QueueId) -> Result<bool, StoreError> {
        let mut counts = self.counts.lock().await;
        if !self.queues.contains_key(queue.as_bytes())? {
            return Ok(false);
        }
        let keys = |tree: &sled::Tree| -> Result<Vec<sled::IVec>, StoreError> {
            Ok(tree.scan_prefix(queue.as_bytes()).keys().collect::<Result<_, _>>()?)
        };
        let envelopes = keys(&self.envelopes)?;
        let ids = keys(&self.ids)?;
        let topics = keys(&self.topics)?;
        let revoked = keys(&self.revoked)?;
        (&self.queues, &self.envelopes, &self.ids, &self.topics, &self.revoked)
            .transaction(|(q, e, i, t, r)| {
                q.remove(&queue.as_bytes()[..])?;
                for key in &envelopes {
                    e.remove(key)?;
                }
                for key in &ids {
                    i.remove(key)?;
                }
                for key in &topics {
                    t.remove(key)?;
                }
                for key in &revoked {
                    r.remove(key)?;
                }
                Ok::<_, ConflictableTransactionError<StoreError>>(())
            })
            .map_err(StoreError::from)?;
        if let Some(stats) = counts.per_queue.remove(queue) {
            counts.total = counts.total.saturating_sub(stats.count);
        }
        self.metrics.queue_depth.store(counts.total, std::sync::atomic::Ordering::Relaxed);
        self.metrics.queues.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        Ok(true)
    }

    pub fn is_revoked(
        &self,
        queue: &QueueId,
        capability: &CapabilityId,
    ) -> Result<bool, StoreError> {
        Ok(self.revoked.contains_key(pair_key(queue, capability.as_bytes()))?)
    }

    /// Records a revocation until `not_after_ms`. `Ok(false)` if the queue already has `max`.
    pub async fn revoke(
        &self,
        queue: &QueueId,
        capability: &CapabilityId,
        not_after_ms: u64,
        max: u64,
    ) -> Result<bool, StoreError> {
        let revoked = self.revoke_removing(queue, capability, not_after_ms, max, None, 0).await?;
        Ok(revoked.is_some())
    }

    /// A sender gives up its capability: records the revocation until `not_after_ms` and
    /// deletes every envelope `sender` has in the queue, in one transaction. Returns how many
    /// were deleted, or `None` (nothing changed) if the queue already has `max` revocations.
    /// The caller must flush before answering.
    pub async fn renounce(
        &self,
        queue: &QueueId,
        capability: &CapabilityId,
        not_after_ms: u64,
        sender: &OrgId,
        max: u64,
        now_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        self.revoke_removing(queue, capability, not_after_ms, max, Some(sender), now_ms).await
    }

    /// Records a revocation (unless already recorded) and, with a `sender`, deletes that
    /// sender's envelopes in the same transaction. `None` if the revocation cap is reached.
    async fn revoke_removing(
        &self,
        queue: &QueueId,
        capability: &CapabilityId,
        not_after_ms: u64,
        max: u64,
        sender: Option<&OrgId>,
        now_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        let mut counts = self.counts.lock().await;
        let key = pair_key(queue, capability.as_bytes());
        let known = self.revoked.contains_key(&key)?;
        if !known && self.revoked.scan_prefix(queue.as_bytes()).count() as u64 >= max {
            return Ok(None);
        }
        let mut victims = Vec::new();
        if let Some(sender) = sender {
            for item in self.envelopes.scan_prefix(queue.as_bytes()) {
                let (key, value) = item?;
                let envelope = StoredEnvelope::decode(&value)?;
                if envelope.sender == *sender {
                    let seq = be_u64(&key[16..], "envelopes/v1")?;
                    victims.push((seq, envelope, value.len() as u64));
                }
            }
        }
        if known && victims.is_empty() {
            return Ok(Some(0));
        }
        (&self.envelopes, &self.ids, &self.topics, &self.expiry, &self.revoked)
            .transaction(|(envelopes, ids, topics, expiry, revoked)| {
                if !known {
                    revoked.insert(key.clone(), &not_after_ms.to_be_bytes()[..])?;
                    expiry.insert(
                        expiry_key(not_after_ms, KIND_REVOCATION, queue, capability.as_bytes()),
                        &[][..],
                    )?;
                }
                for (seq, envelope, _) in &victims {
                    tx_remove(envelopes, ids, topics, expiry, queue, *seq, envelope, now_ms)?;
                }
                Ok::<_, ConflictableTransactionError<StoreError>>(())
            })
            .map_err(StoreError::from)?;
        let n = self.uncount(&mut counts, queue, &victims);
        Metrics::inc(&self.metrics.purged, n);
        Ok(Some(n))
    }

    /// Takes removed envelopes off the in-memory counts and the depth gauge; returns how many.
    fn uncount(
        &self,
        counts: &mut Counts,
        queue: &QueueId,
        removed: &[(u64, StoredEnvelope, u64)],
    ) -> u64 {
        let n = removed.len() as u64;
        let freed: u64 = removed.iter().map(|(_, _, len)| *len).sum();
        let entry = counts.per_queue.entry(*queue).or_default();
        entry.count = entry.count.saturating_sub(n);
        entry.bytes = entry.bytes.saturating_sub(freed);
        counts.total = counts.total.saturating_sub(n);
        self.metrics.queue_depth.store(counts.total, std::sync::atomic::Ordering::Relaxed);
        n
    }

    fn stats(&self, counts: &mut Counts, queue: &QueueId) -> QueueStats {
        *counts.per_queue.entry(*queue).or_default()
    }

    /// Stores an envelope: idempotent by envelope id, collapsing by topic, refusing beyond the
    /// caps. The caller has authenticated the request and must flush before answering.
    pub async fn enqueue(
        &self,
        envelope: NewEnvelope,
        caps: Caps,
        now_ms: u64,
    ) -> Result<Option<EnqueueOutcome>, StoreError> {
        let mut counts = self.counts.lock().await;
        let queue = envelope.queue;
        let Some(mut record) = self.queue(&queue)? else {
            return Ok(None);
        };
        let id_key = pair_key(&queue, envelope.envelope_id.as_bytes());
        if let Some(value) = self.ids.get(&id_key)? {
            let (state, _) = parse_id_value(&value)?;
            Metrics::inc(&self.metrics.duplicates, 1);
            return Ok(Some(EnqueueOutcome::Duplicate { pending: state == ID_QUEUED }));
        }
        // Topic collapse: the envelope this one replaces, if any.
        let mut replaced: Option<(u64, StoredEnvelope)> = None;
        if let Some(topic) = &envelope.topic {
            if let Some(seq) = self.topics.get(pair_key(&queue, topic.as_str().as_bytes()))? {
                let seq = be_u64(&seq, "topics/v1")?;
                if let Some(bytes) = self.envelopes.get(env_key(&queue, seq))? {
                    replaced = Some((seq, StoredEnvelope::decode(&bytes)?));
                }
            }
        }
        let stored = StoredEnvelope {
            envelope_id: envelope.envelope_id,
            sender: envelope.sender,
            received_ms: now_ms,
            expires_ms: envelope.expires_ms,
            keep_until_ms: envelope.keep_until_ms,
            urgency: envelope.urgency,
            topic: envelope.topic.clone(),
            sealed: envelope.sealed,
        };
        let value = stored.encode();
        let stats = self.stats(&mut counts, &queue);
        let (freed_count, freed_bytes) = match &replaced {
            Some((_, old)) => (1, old.encode().len() as u64),
            None => (0, 0),
        };
        let count_after = stats.count - freed_count + 1;
        let bytes_after = stats.bytes - freed_bytes + value.len() as u64;
        if count_after > caps.envelopes || bytes_after > caps.bytes {
            record.overflowed += 1;
            self.queues.insert(queue.as_bytes(), serde_json::to_vec(&record)?)?;
            Metrics::inc(&self.metrics.overflowed, 1);
            return Ok(Some(EnqueueOutcome::Overflow { depth: stats.count, bytes: stats.bytes }));
        }
        let seq = record.next_seq;
        record.next_seq += 1;
        let record_bytes = serde_json::to_vec(&record)?;
        (&self.queues, &self.envelopes, &self.ids, &self.topics, &self.expiry)
            .transaction(|(queues, envelopes, ids, topics, expiry)| {
                if let Some((old_seq, old)) = &replaced {
                    tx_remove(envelopes, ids, topics, expiry, &queue, *old_seq, old, now_ms)?;
                }
                queues.insert(&queue.as_bytes()[..], record_bytes.clone())?;
                envelopes.insert(&env_key(&queue, seq)[..], value.clone())?;
                ids.insert(id_key.clone(), &id_value(ID_QUEUED, seq)[..])?;
                if let Some(topic) = &stored.topic {
                    topics.insert(
                        pair_key(&queue, topic.as_str().as_bytes()),
                        &seq.to_be_bytes()[..],
                    )?;
                }
                expiry.insert(
                    expiry_key(stored.expires_ms, KIND_ENVELOPE, &queue, &seq.to_be_bytes()),
                    &[][..],
                )?;
                Ok::<_, ConflictableTransactionError<StoreError>>(())
            })
            .map_err(StoreError::from)?;
        let entry = counts.per_queue.entry(queue).or_default();
        entry.count = count_after;
        entry.bytes = bytes_after;
        counts.total = counts.total + 1 - freed_count;
        self.metrics.queue_depth.store(counts.total, std::sync::atomic::Ordering::Relaxed);
        Metrics::inc(&self.metrics.collapsed, freed_count);
        Ok(Some(EnqueueOutcome::Queued {
            depth: count_after,
            collapsed: replaced.map(|(_, old)| old.envelope_id),
        }))
    }

    /// Number of envelopes held for a queue.
    pub async fn depth(&self, queue: &QueueId) -> u64 {
        let mut counts = self.counts.lock().await;
        self.stats(&mut counts, queue).count
    }

    /// Envelopes waiting in `queue`, oldest first, skipping expired ones and those in `skip`;
    /// at most `max_n`, and at most `max_bytes` of sealed payload (but at least one).
    pub fn pending(
        &self,
        queue: &QueueId,
        now_ms: u64,
        skip: &HashSet<EnvelopeId>,
        max_n: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredEnvelope>, StoreError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for item in self.envelopes.scan_prefix(queue.as_bytes()) {
            if out.len() >= max_n {
                break;
            }
            let (_, value) = item?;
            let envelope = StoredEnvelope::decode(&value)?;
            if envelope.expires_ms <= now_ms || skip.contains(&envelope.envelope_id) {
                continue;
            }
            if !out.is_empty() && bytes + envelope.sealed.len() > max_bytes {
                break;
            }
            bytes += envelope.sealed.len();
            out.push(envelope);
        }
        Ok(out)
    }

    /// Deletes the acknowledged envelopes (unknown or already deleted ids are ignored). Returns
    /// how many were deleted now. The caller must flush before answering.
    pub async fn ack(
        &self,
        queue: &QueueId,
        envelope_ids: &[EnvelopeId],
        now_ms: u64,
    ) -> Result<u64, StoreError> {
        let mut counts = self.counts.lock().await;
        let mut victims = Vec::new();
        let mut seen = HashSet::new();
        for id in envelope_ids {
            if !seen.insert(*id) {
                continue;
            }
            let Some(value) = self.ids.get(pair_key(queue, id.as_bytes()))? else {
                continue;
            };
            let (state, seq) = parse_id_value(&value)?;
            if state != ID_QUEUED {
                continue;
            }
            if let Some(bytes) = self.envelopes.get(env_key(queue, seq))? {
                victims.push((seq, StoredEnvelope::decode(&bytes)?, bytes.len() as u64));
            }
        }
        if victims.is_empty() {
            return Ok(0);
        }
        (&self.envelopes, &self.ids, &self.topics, &self.expiry)
            .transaction(|(envelopes, ids, topics, expiry)| {
                for (seq, envelope, _) in &victims {
                    tx_remove(envelopes, ids, topics, expiry, queue, *seq, envelope, now_ms)?;
                }
                Ok::<_, ConflictableTransactionError<StoreError>>(())
            })
            .map_err(StoreError::from)?;
        let n = self.uncount(&mut counts, queue, &victims);
        Metrics::inc(&self.metrics.delivered, n);
        Ok(n)
    }

    /// Drops expired envelopes (counted) and forgets tombstones and revocations past their
    /// time; at most `max` records per call. Returns how many records were handled.
    pub async fn sweep(&self, now_ms: u64, max: usize) -> Result<usize, StoreError> {
        let upper = (now_ms + 1).to_be_bytes();
        let keys: Vec<sled::IVec> =
            self.expiry.range(..&upper[..]).keys().take(max).collect::<Result<_, _>>()?;
        if keys.is_empty() {
            return Ok(0);
        }
        let mut counts = self.counts.lock().await;
        let mut expired_per_queue: HashMap<QueueId, u64> = HashMap::new();
        for key in &keys {
            let corrupt = StoreError::Corrupt { tree: "expiry/v1", what: "key" };
            if key.len() < 25 {
                self.expiry.remove(key)?;
                return Err(corrupt);
            }
            let kind = key[8];
            let queue = QueueId::from_slice(&key[9..25]).ok_or(corrupt)?;
            let rest = &key[25..];
            match kind {
                KIND_ENVELOPE => {
                    let seq = be_u64(rest, "expiry/v1")?;
                    match self.envelopes.get(env_key(&queue, seq))? {
                        Some(bytes) => {
                            let envelope = StoredEnvelope::decode(&bytes)?;
                            (&self.envelopes, &self.ids, &self.topics, &self.expiry)
                                .transaction(|(envelopes, ids, topics, expiry)| {
                                    tx_remove(
                                        envelopes, ids, topics, expiry, &queue, seq, &envelope,
                                        now_ms,
                                    )
                                })
                                .map_err(StoreError::from)?;
                            let entry = counts.per_queue.entry(queue).or_default();
                            entry.count = entry.count.saturating_sub(1);
                            entry.bytes = entry.bytes.saturating_sub(bytes.len() as u64);
                            counts.total = counts.total.saturating_sub(1);
                            *expired_per_queue.entry(queue).or_default() += 1;
                        }
                        None => {
                            self.expiry.remove(key)?;
                        }
                    }
                }
                KIND_TOMBSTONE => {
                    let id_key = pair_key(&queue, rest);
                    if let Some(value) = self.ids.get(&id_key)? {
                        if parse_id_value(&value)?.0 == ID_DONE {
                            self.ids.remove(&id_key)?;
                        }
                    }
                    self.expiry.remove(key)?;
                }
                KIND_REVOCATION => {
                    self.revoked.remove(pair_key(&queue, rest))?;
                    self.expiry.remove(key)?;
                }
                _ => {
                    self.expiry.remove(key)?;
                }
            }
        }
        let mut total_expired = 0;
        for (queue, n) in expired_per_queue {
            total_expired += n;
            if let Some(mut record) = self.queue(&queue)? {
                record.expired += n;
                self.queues.insert(queue.as_bytes(), serde_json::to_vec(&record)?)?;
            }
        }
        self.metrics.queue_depth.store(counts.total, std::sync::atomic::Ordering::Relaxed);
        Metrics::inc(&self.metrics.expired, total_expired);
        Ok(keys.len())
    }
}
