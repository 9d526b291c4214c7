//! A chat's automerge documents as the engine holds them: the control document and the current
//! history bucket, each with its validator. Every change the node makes goes through the same
//! validation pipeline as a remote change (less the signature check) before it is persisted.

use crate::store::{prefix_range, KvRead, StoreError, Tree, WriteBatch};
use automerge::transaction::CommitOptions;
use automerge::AutoCommit;
use confab_protocol::bucket::{self, Collections};
use confab_protocol::control::{self, ControlState};
use confab_protocol::validate::{self, actor_for, DocValidator, Limits, Verdict};
use confab_protocol::{ChatId, DocId, OrgKey, SignedChange};

#[derive(Debug, thiserror::Error)]
pub enum DocError {
    #[error("automerge: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    #[error("our own change was refused by validation: {0}")]
    Rejected(String),
    #[error("stored document is damaged: {0}")]
    Damaged(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One document with its validation state and storage position.
pub struct Doc {
    pub id: DocId,
    pub doc: AutoCommit,
    pub validator: DocValidator,
    /// Index the next stored change gets in the `Changes` tree.
    pub next_index: u64,
}

impl Doc {
    fn new(id: DocId, owner: confab_protocol::OrgId, actor_suffix: [u8; 16]) -> Self {
        let mut doc = AutoCommit::new();
        doc.set_actor(actor_for(&owner, actor_suffix));
        Self {
            id,
            doc,
            validator: DocValidator::new(id, owner, Limits::default()),
            next_index: 0,
        }
    }

    /// Makes a change with `write`, signs it, validates it, and adds it to `batch`.
    /// On error the in-memory document may hold the refused change: the caller drops it.
    pub fn commit(
        &mut self,
        key: &OrgKey,
        epoch: u64,
        membership: &ControlState,
        now_ms: u64,
        batch: &mut WriteBatch,
        write: impl FnOnce(&mut AutoCommit) -> Result<(), automerge::AutomergeError>,
    ) -> Result<SignedChange, DocError> {
        write(&mut self.doc)?;
        let options = CommitOptions::default().with_time((now_ms / 1000) as i64);
        self.doc
            .commit_with(options)
            .ok_or_else(|| DocError::Rejected("the write made no change".into()))?;
        let change = self
            .doc
            .get_last_local_change()
            .ok_or_else(|| DocError::Rejected("no local change after commit".into()))?;
        let signed = SignedChange::sign(
            key,
            self.id,
            epoch,
            change.raw_bytes().to_vec(),
            &change.hash().0,
        );
        match self.validator.check_own(&signed, membership) {
            Ok(Verdict::Accept(checked)) => self.validator.commit(&checked),
            Ok(other) => return Err(DocError::Rejected(format!("{other:?}"))),
            Err(rejection) => return Err(DocError::Rejected(rejection.to_string())),
        }
        batch.put(
            Tree::Changes,
            change_key(&self.id, self.next_index),
            signed.encode(),
        );
        self.next_index += 1;
        Ok(signed)
    }

    /// Loads a document from its stored signed changes, re-running validation to rebuild the
    /// validator state, and applying them in one batch.
    fn load(
        store: &dyn KvRead,
        id: DocId,
        owner: confab_protocol::OrgId,
        membership: Option<&ControlState>,
        actor_suffix: [u8; 16],
    ) -> Result<Self, DocError> {
        let mut loaded = Self::new(id, owner, actor_suffix);
        let mut changes = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let range = match &after {
                None => prefix_range(&id.to_bytes()),
                Some(key) => (
                    std::ops::Bound::Excluded(key.clone()),
                    prefix_range(&id.to_bytes()).1,
                ),
            };
            let page = store.range(Tree::Changes, range, false, 1024)?;
            let Some((last_key, _)) = page.last() else {
                break;
            };
            after = Some(last_key.clone());
            for (_, bytes) in page {
                let signed = SignedChange::decode(&bytes, usize::MAX)
                    .map_err(|e| DocError::Damaged(e.to_string()))?;
                // Our own store: the signatures were checked when the changes arrived.
                let verdict = match (id.kind, membership) {
                    (confab_protocol::DocKind::Bucket(_), Some(control)) => {
                        loaded.validator.check_own(&signed, control)
                    }
                    _ => loaded.validator.check_own(&signed, &NoMembership),
                };
                match verdict {
                    Ok(Verdict::Accept(checked)) => {
                        loaded.validator.commit(&checked);
                        changes.push(checked.change);
                    }
                    Ok(Verdict::Duplicate) => {}
                    other => {
                        return Err(DocError::Damaged(format!(
                            "stored change of {id} does not validate: {other:?}"
                        )))
                    }
                }
                loaded.next_index += 1;
            }
        }
        validate::apply(&mut loaded.doc, changes).map_err(|e| DocError::Damaged(e.to_string()))?;
        Ok(loaded)
    }
}

/// Membership for the control document, whose validation does not consult membership.
struct NoMembership;

impl validate::Membership for NoMembership {
    fn org_at_epoch(&self, _: &confab_protocol::OrgId, _: u64) -> validate::MembershipAnswer {
        validate::MembershipAnswer::NotMember
    }
}

pub fn change_key(doc: &DocId, index: u64) -> Vec<u8> {
    let mut key = doc.to_bytes().to_vec();
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// A chat's documents.
pub struct ChatDocs {
    pub chat: ChatId,
    pub control: Doc,
    pub state: ControlState,
    pub bucket: Doc,
    pub bucket_number: u32,
    pub collections: Collections,
    pub bucket_messages: u64,
}

impl ChatDocs {
    /// Creates a chat: control genesis and bucket 1 genesis, both added to `batch`.
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        key: &OrgKey,
        chat: ChatId,
        info: &control::ChatInfo,
        name: &str,
        topic: &str,
        first_member: (&confab_protocol::UserId, &control::MemberRecord),
        now_ms: u64,
        actor_suffixes: ([u8; 16], [u8; 16]),
        batch: &mut WriteBatch,
    ) -> Result<Self, DocError> {
        let owner = key.id();
        let mut control_doc = Doc::new(DocId::control(chat), owner, actor_suffixes.0);
        // The control genesis is validated against itself: the owner is always a member.
        let admission = genesis_admission_state(info);
        control_doc.commit(key, 1, &admission, now_ms, batch, |doc| {
            control::genesis(doc, info, name, topic, first_member)
        })?;
        let state =
            control::read(&control_doc.doc).map_err(|e| DocError::Damaged(e.to_string()))?;
        let mut bucket_doc = Doc::new(DocId::bucket(chat, 1), owner, actor_suffixes.1);
        let mut collections = None;
        bucket_doc.commit(key, state.epoch, &state, now_ms, batch, |doc| {
            collections = Some(bucket::genesis(doc)?);
            Ok(())
        })?;
        let collections = collections
            .ok_or_else(|| DocError::Damaged("bucket genesis wrote no collections".into()))?;
        Ok(Self {
            chat,
            control: control_doc,
            state,
            bucket: bucket_doc,
            bucket_number: 1,
            collections,
            bucket_messages: 0,
        })
    }

    /// Loads a chat's control document and newest bucket from storage.
    pub fn load(
        store: &dyn KvRead,
        chat: ChatId,
        suffixes: ([u8; 16], [u8; 16]),
    ) -> Result<Option<Self>, DocError> {
        let control_id = DocId::control(chat);
        let Some((_, first)) = store
            .range(
                Tree::Changes,
                prefix_range(&control_id.to_bytes()),
                false,
                1,
            )?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        let owner = SignedChange::decode(&first, usize::MAX)
            .map_err(|e| DocError::Damaged(e.to_string()))?
            .signer;
        let control_doc = Doc::load(store, control_id, owner, None, suffixes.0)?;
        let state =
            control::read(&control_doc.doc).map_err(|e| DocError::Damaged(e.to_string()))?;
        let bucket_number = state
            .buckets
            .iter()
            .filter(|(_, record)| record.sealed)
            .map(|(number, _)| number + 1)
            .max()
            .unwrap_or(1);
        let bucket_doc = Doc::load(
            store,
            DocId::bucket(chat, bucket_number),
            owner,
            Some(&state),
            suffixes.1,
        )?;
        let collections =
            bucket::collections(&bucket_doc.doc).map_err(|e| DocError::Damaged(e.to_string()))?;
        let bucket_messages = bucket::messages(&bucket_doc.doc)
            .map(|m| m.len() as u64)
            .unwrap_or(0);
        Ok(Some(Self {
            chat,
            control: control_doc,
            state,
            bucket: bucket_doc,
            bucket_number,
            collections,
            bucket_messages,
        }))
    }

    /// Changes the control document and re-reads its state.
    pub fn change_control(
        &mut self,
        key: &OrgKey,
        now_ms: u64,
        batch: &mut WriteBatch,
        write: impl FnOnce(&mut AutoCommit) -> Result<(), automerge::AutomergeError>,
        bump_epoch: bool,
    ) -> Result<(), DocError> {
        let epoch = if bump_epoch {
            self.state.epoch + 1
        } else {
            self.state.epoch
        };
        let state = self.state.clone();
        self.control
            .commit(key, epoch, &state, now_ms, batch, |doc| {
                write(doc)?;
                if bump_epoch {
                    control::set_epoch(doc, epoch)?;
                }
                Ok(())
            })?;
        self.state =
            control::read(&self.control.doc).map_err(|e| DocError::Damaged(e.to_string()))?;
        Ok(())
    }

    /// Writes to the current bucket at the current epoch.
    pub fn change_bucket(
        &mut self,
        key: &OrgKey,
        now_ms: u64,
        batch: &mut WriteBatch,
        write: impl FnOnce(&mut AutoCommit, &Collections) -> Result<(), automerge::AutomergeError>,
    ) -> Result<(), DocError> {
        let collections = self.collections.clone();
        let epoch = self.state.epoch;
        self.bucket
            .commit(key, epoch, &self.state, now_ms, batch, |doc| {
                write(doc, &collections)
            })?;
        Ok(())
    }

    /// Seals the full bucket (its final heads in the control document) and starts the next one.
    pub fn roll_over(
        &mut self,
        key: &OrgKey,
        now_ms: u64,
        suffix: [u8; 16],
        batch: &mut WriteBatch,
    ) -> Result<(), DocError> {
        let heads = self
            .bucket
            .doc
            .get_heads()
            .iter()
            .map(|h| h.to_string())
            .collect();
        let record = control::BucketRecord {
            sealed: true,
            heads,
            messages: self.bucket_messages,
        };
        let number = self.bucket_number;
        self.change_control(
            key,
            now_ms,
            batch,
            |doc| control::put_bucket(doc, number, &record),
            false,
        )?;
        let mut next = Doc::new(DocId::bucket(self.chat, number + 1), key.id(), suffix);
        let mut collections = None;
        next.commit(key, self.state.epoch, &self.state, now_ms, batch, |doc| {
            collections = Some(bucket::genesis(doc)?);
            Ok(())
        })?;
        self.collections = collections
            .ok_or_else(|| DocError::Damaged("bucket genesis wrote no collections".into()))?;
        self.bucket = next;
        self.bucket_number = number + 1;
        self.bucket_messages = 0;
        Ok(())
    }
}

/// A state that admits the owner at epoch 1, for validating the control genesis itself.
fn genesis_admission_state(info: &control::ChatInfo) -> ControlState {
    let mut orgs = std::collections::BTreeMap::new();
    orgs.insert(info.owner, vec![(1, None)]);
    ControlState {
        info: info.clone(),
        name: String::new(),
        topic: String::new(),
        epoch: 1,
        members: Default::default(),
        orgs,
        buckets: Default::default(),
    }
}

/// Every document of a chat, read back for rebuilding views: the control state, its owner, and
/// each history bucket in order. `None` if the chat has no stored control document.
pub fn load_history(
    store: &dyn KvRead,
    chat: ChatId,
) -> Result<Option<(ControlState, Vec<AutoCommit>)>, DocError> {
    let suffix = [0u8; 16];
    let control_id = DocId::control(chat);
    let Some((_, first)) = store
        .range(
            Tree::Changes,
            prefix_range(&control_id.to_bytes()),
            false,
            1,
        )?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    let owner = SignedChange::decode(&first, usize::MAX)
        .map_err(|e| DocError::Damaged(e.to_string()))?
        .signer;
    let control_doc = Doc::load(store, control_id, owner, None, suffix)?;
    let state = control::read(&control_doc.doc).map_err(|e| DocError::Damaged(e.to_string()))?;
    let mut buckets = Vec::new();
    for number in 1.. {
        let id = DocId::bucket(chat, number);
        if store
            .range(Tree::Changes, prefix_range(&id.to_bytes()), false, 1)?
            .is_empty()
        {
            break;
        }
        buckets.push(Doc::load(store, id, owner, Some(&state), suffix)?.doc);
    }
    Ok(Some((state, buckets)))
}
