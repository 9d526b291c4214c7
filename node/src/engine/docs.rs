//! A chat's automerge documents as the engine holds them: the control document and the current
//! history bucket, each with its validator. Every change the node makes goes through the same
//! validation pipeline as a remote change (less the signature check) before it is persisted.

use crate::store::{prefix_range, KvRead, StoreError, Tree, WriteBatch};
use automerge::transaction::CommitOptions;
use automerge::AutoCommit;
use confab_protocol::bucket::{self, Collections};
use confab_protocol::control::{self, ControlState};
use confab_protocol::validate::{self, actor_for, Checked, DocValidator, Limits, Verdict};
use confab_protocol::{ChatId, DocId, OrgId, OrgKey, Preverified, SignedChange};
use std::collections::HashMap;

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
    #[error("the chat's current history bucket has not arrived from its owner yet")]
    NotSynced,
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
    /// An empty document of `owner`'s chat that this node writes to as `actor` (its own
    /// organisation's id and a suffix).
    fn new(id: DocId, owner: OrgId, actor: automerge::ActorId) -> Self {
        let mut doc = AutoCommit::new();
        doc.set_actor(actor);
        Self { id, doc, validator: DocValidator::new(id, owner, Limits::default()), next_index: 0 }
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
        let signed =
            SignedChange::sign(key, self.id, epoch, change.raw_bytes().to_vec(), &change.hash().0);
        match self.validator.check_own(&signed, membership) {
            Ok(Verdict::Accept(checked)) => self.store_accepted(&checked, &signed, batch),
            Ok(other) => return Err(DocError::Rejected(format!("{other:?}"))),
            Err(rejection) => return Err(DocError::Rejected(rejection.to_string())),
        }
        Ok(signed)
    }

    /// Records an accepted change in the validator and puts it into `batch` at the next
    /// index: the one way a change, local or remote, joins the stored document.
    fn store_accepted(&mut self, checked: &Checked, signed: &SignedChange, batch: &mut WriteBatch) {
        self.validator.commit(checked);
        batch.put(Tree::Changes, change_key(&self.id, self.next_index), signed.encode());
        self.next_index += 1;
    }

    /// Loads a document from its stored signed changes, re-running validation to rebuild the
    /// validator state, and applying them in one batch.
    fn load(
        store: &dyn KvRead,
        id: DocId,
        owner: confab_protocol::OrgId,
        membership: Option<&ControlState>,
        actor: automerge::ActorId,
    ) -> Result<Self, DocError> {
        let mut loaded = Self::new(id, owner, actor);
        let mut changes = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let range = match &after {
                None => prefix_range(&id.to_bytes()),
                Some(key) => {
                    (std::ops::Bound::Excluded(key.clone()), prefix_range(&id.to_bytes()).1)
                }
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
    /// This node's organisation: its actors write the documents.
    pub own: OrgId,
    pub control: Doc,
    pub state: ControlState,
    pub bucket: Doc,
    pub bucket_number: u32,
    /// The current bucket's collection maps; `None` while a remote owner's bucket genesis has
    /// not arrived (nothing can be written to it yet).
    pub collections: Option<Collections>,
    pub bucket_messages: u64,
    /// Older (or, briefly, newer) buckets loaded to apply remote changes or answer heads; at
    /// most [`OTHER_BUCKETS_MAX`].
    pub others: HashMap<u32, Doc>,
}

/// Buckets besides the current one a chat keeps loaded.
pub const OTHER_BUCKETS_MAX: usize = 4;

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
        let mut control_doc =
            Doc::new(DocId::control(chat), owner, actor_for(&owner, actor_suffixes.0));
        // The control genesis is validated against itself: the owner is always a member.
        let admission = genesis_admission_state(info);
        control_doc.commit(key, 1, &admission, now_ms, batch, |doc| {
            control::genesis(doc, info, name, topic, first_member)
        })?;
        let state =
            control::read(&control_doc.doc).map_err(|e| DocError::Damaged(e.to_string()))?;
        let mut bucket_doc =
            Doc::new(DocId::bucket(chat, 1), owner, actor_for(&owner, actor_suffixes.1));
        let mut collections = None;
        bucket_doc.commit(key, state.epoch, &state, now_ms, batch, |doc| {
            collections = Some(bucket::genesis(doc)?);
            Ok(())
        })?;
        let collections = collections
            .ok_or_else(|| DocError::Damaged("bucket genesis wrote no collections".into()))?;
        Ok(Self {
            chat,
            own: owner,
            control: control_doc,
            state,
            bucket: bucket_doc,
            bucket_number: 1,
            collections: Some(collections),
            bucket_messages: 0,
            others: HashMap::new(),
        })
    }

    /// Loads a chat's control document and newest bucket from storage.
    pub fn load(
        store: &dyn KvRead,
        chat: ChatId,
        own_org: OrgId,
        suffixes: ([u8; 16], [u8; 16]),
    ) -> Result<Option<Self>, DocError> {
        let control_id = DocId::control(chat);
        let Some(owner) = control_owner(store, chat)? else {
            return Ok(None);
        };
        let control_doc =
            Doc::load(store, control_id, owner, None, actor_for(&own_org, suffixes.0))?;
        let state =
            control::read(&control_doc.doc).map_err(|e| DocError::Damaged(e.to_string()))?;
        let bucket_number = current_bucket(&state);
        let bucket_doc = Doc::load(
            store,
            DocId::bucket(chat, bucket_number),
            owner,
            Some(&state),
            actor_for(&own_org, suffixes.1),
        )?;
        // A remote owner's bucket may not have arrived yet: then nothing can be written to it.
        let collections = bucket::collections(&bucket_doc.doc).ok();
        if collections.is_none() && owner == own_org {
            return Err(DocError::Damaged(format!(
                "bucket {bucket_number} of chat {chat} has no genesis"
            )));
        }
        let bucket_messages =
            bucket::messages(&bucket_doc.doc).map(|m| m.len() as u64).unwrap_or(0);
        Ok(Some(Self {
            chat,
            own: own_org,
            control: control_doc,
            state,
            bucket: bucket_doc,
            bucket_number,
            collections,
            bucket_messages,
            others: HashMap::new(),
        }))
    }

    /// A chat this node learns of from its owner, before its control genesis is applied
    /// ([`ChatDocs::apply_remote_control`] does that next): empty documents, and the state of
    /// an empty control document (no members, no organisations, epoch 0), which the genesis
    /// replaces.
    pub fn remote_genesis(
        chat: ChatId,
        owner: OrgId,
        own: OrgId,
        suffixes: ([u8; 16], [u8; 16]),
    ) -> Self {
        let state = ControlState {
            info: control::ChatInfo {
                kind: control::ChatKind::Channel,
                visibility: control::Visibility::Private,
                created_ms: 0,
                owner,
            },
            name: String::new(),
            topic: String::new(),
            epoch: 0,
            members: Default::default(),
            orgs: Default::default(),
            buckets: Default::default(),
        };
        Self {
            chat,
            own,
            control: Doc::new(DocId::control(chat), owner, actor_for(&own, suffixes.0)),
            state,
            bucket: Doc::new(DocId::bucket(chat, 1), owner, actor_for(&own, suffixes.1)),
            bucket_number: 1,
            collections: None,
            bucket_messages: 0,
            others: HashMap::new(),
        }
    }

    /// The loaded document `doc` of this chat (the control document, the current bucket or a
    /// cached other bucket), loading another bucket from `store` if needed.
    pub fn doc_mut(&mut self, store: &dyn KvRead, doc: DocId) -> Result<&mut Doc, DocError> {
        match doc.kind {
            confab_protocol::DocKind::Control => Ok(&mut self.control),
            confab_protocol::DocKind::Bucket(n) if n == self.bucket_number => Ok(&mut self.bucket),
            confab_protocol::DocKind::Bucket(n) => {
                if !self.others.contains_key(&n) {
                    if self.others.len() >= OTHER_BUCKETS_MAX {
                        if let Some(evict) = self.others.keys().next().copied() {
                            self.others.remove(&evict);
                        }
                    }
                    let owner = self.state.info.owner;
                    let actor = actor_for(&self.own, random_suffix());
                    let loaded = Doc::load(store, doc, owner, Some(&self.state), actor)?;
                    self.others.insert(n, loaded);
                }
                self.others.get_mut(&n).ok_or_else(|| DocError::Damaged("bucket cache".into()))
            }
        }
    }

    /// Validates a remote change of the control document (the full pipeline, signature
    /// included) and, if it is accepted, applies it and adds it to `batch`; then re-reads
    /// `self.state`, and a newly sealed current bucket makes the next one current. Bucket
    /// changes go through [`Self::apply_remote_bucket`].
    pub fn apply_remote_control(
        &mut self,
        store: &dyn KvRead,
        change: &Preverified,
        batch: &mut WriteBatch,
    ) -> Result<RemoteOutcome, DocError> {
        let signed = change.signed();
        let target = &mut self.control;
        let checked = match target.validator.check_preverified(change, &NoMembership) {
            Err(rejection) => return Ok(RemoteOutcome::Rejected(rejection.to_string())),
            Ok(Verdict::Duplicate) => return Ok(RemoteOutcome::Duplicate),
            Ok(Verdict::Pending(reason)) => {
                return Ok(RemoteOutcome::Pending(format!("{reason:?}")))
            }
            Ok(Verdict::Accept(checked)) => checked,
        };
        validate::apply(&mut target.doc, vec![checked.change.clone()])
            .map_err(|e| DocError::Rejected(e.to_string()))?;
        target.store_accepted(&checked, signed, batch);
        self.state =
            control::read(&self.control.doc).map_err(|e| DocError::Damaged(e.to_string()))?;
        self.follow_seals(store)?;
        Ok(RemoteOutcome::Accepted)
    }

    /// Validates remote changes of one bucket in order and applies the accepted ones together:
    /// one automerge apply and one diff for all of them (both cost more the fuller the bucket,
    /// so doing them per change made catch-up slow). Returns each change's outcome and the keys
    /// the accepted ones wrote. On error the in-memory document may hold the changes: the
    /// caller drops it.
    #[allow(clippy::type_complexity)]
    pub fn apply_remote_bucket(
        &mut self,
        store: &dyn KvRead,
        changes: &[Preverified],
        batch: &mut WriteBatch,
    ) -> Result<(Vec<RemoteOutcome>, Vec<(Collection, String, Option<String>)>), DocError> {
        let Some(first) = changes.first() else {
            return Ok((Vec::new(), Vec::new()));
        };
        let doc_id = first.signed().doc;
        let state = self.state.clone();
        let target = self.doc_mut(store, doc_id)?;
        let mut outcomes = Vec::with_capacity(changes.len());
        let mut accepted = Vec::new();
        for change in changes {
            let signed = change.signed();
            match target.validator.check_preverified(change, &state) {
                Err(rejection) => outcomes.push(RemoteOutcome::Rejected(rejection.to_string())),
                Ok(Verdict::Duplicate) => outcomes.push(RemoteOutcome::Duplicate),
                Ok(Verdict::Pending(reason)) => {
                    outcomes.push(RemoteOutcome::Pending(format!("{reason:?}")))
                }
                Ok(Verdict::Accept(checked)) => {
                    target.store_accepted(&checked, signed, batch);
                    accepted.push(checked.change.clone());
                    outcomes.push(RemoteOutcome::Accepted);
                }
            }
        }
        if accepted.is_empty() {
            return Ok((outcomes, Vec::new()));
        }
        let before = target.doc.get_heads();
        validate::apply(&mut target.doc, accepted)
            .map_err(|e| DocError::Rejected(e.to_string()))?;
        let after = target.doc.get_heads();
        let touched = touched_keys(&mut target.doc, &before, &after);
        if doc_id == self.bucket.id {
            if self.collections.is_none() {
                self.collections = bucket::collections(&self.bucket.doc).ok();
            }
            self.bucket_messages += touched
                .iter()
                .filter(|(collection, _, _)| *collection == Collection::Messages)
                .count() as u64;
        }
        Ok((outcomes, touched))
    }

    /// After the control document sealed the current bucket, the next bucket becomes current.
    fn follow_seals(&mut self, store: &dyn KvRead) -> Result<(), DocError> {
        let number = current_bucket(&self.state);
        if number <= self.bucket_number {
            return Ok(());
        }
        let next = match self.others.remove(&number) {
            Some(doc) => doc,
            None => Doc::load(
                store,
                DocId::bucket(self.chat, number),
                self.state.info.owner,
                Some(&self.state),
                actor_for(&self.own, random_suffix()),
            )?,
        };
        let old = std::mem::replace(&mut self.bucket, next);
        self.others.insert(self.bucket_number, old);
        self.bucket_number = number;
        self.collections = bucket::collections(&self.bucket.doc).ok();
        self.bucket_messages =
            bucket::messages(&self.bucket.doc).map(|m| m.len() as u64).unwrap_or(0);
        Ok(())
    }

    /// Current heads of one of this chat's documents (loading an older bucket if needed).
    pub fn heads(&mut self, store: &dyn KvRead, doc: DocId) -> Result<Vec<[u8; 32]>, DocError> {
        let loaded = self.doc_mut(store, doc)?;
        Ok(loaded.doc.get_heads().iter().map(|h| h.0).collect())
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
        let epoch = if bump_epoch { self.state.epoch + 1 } else { self.state.epoch };
        let state = self.state.clone();
        self.control.commit(key, epoch, &state, now_ms, batch, |doc| {
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
        let collections = self.collections.clone().ok_or(DocError::NotSynced)?;
        let epoch = self.state.epoch;
        self.bucket
            .commit(key, epoch, &self.state, now_ms, batch, |doc| write(doc, &collections))?;
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
        let heads = self.bucket.doc.get_heads().iter().map(|h| h.to_string()).collect();
        let record = control::BucketRecord { sealed: true, heads, messages: self.bucket_messages };
        let number = self.bucket_number;
        self.change_control(
            key,
            now_ms,
            batch,
            |doc| control::put_bucket(doc, number, &record),
            false,
        )?;
        let mut next =
            Doc::new(DocId::bucket(self.chat, number + 1), key.id(), actor_for(&key.id(), suffix));
        let mut collections = None;
        next.commit(key, self.state.epoch, &self.state, now_ms, batch, |doc| {
            collections = Some(bucket::genesis(doc)?);
            Ok(())
        })?;
        self.collections = Some(
            collections
                .ok_or_else(|| DocError::Damaged("bucket genesis wrote no collections".into()))?,
        );
        let old = std::mem::replace(&mut self.bucket, next);
        self.others.clear();
        self.others.insert(number, old);
        self.bucket_number = number + 1;
        self.bucket_messages = 0;
        Ok(())
    }
}

/// A state that admits the owner at epoch 1, for validating the control genesis itself.
/// The organisation that signed the first change of `chat`'s control document (its owner), or
/// `None` when that document is not stored.
fn control_owner(store: &dyn KvRead, chat: ChatId) -> Result<Option<OrgId>, DocError> {
    let control_id = DocId::control(chat);
    let Some((_, first)) = store
        .range(Tree::Changes, prefix_range(&control_id.to_bytes()), false, 1)?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    let signed =
        SignedChange::decode(&first, usize::MAX).map_err(|e| DocError::Damaged(e.to_string()))?;
    Ok(Some(signed.signer))
}

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

/// Every document of a chat, read back for rebuilding views: the control state and each
/// history bucket in order. `None` if the chat has no stored control document.
pub fn load_history(
    store: &dyn KvRead,
    chat: ChatId,
) -> Result<Option<(ControlState, Vec<AutoCommit>)>, DocError> {
    Ok(load_history_with_control(store, chat)?.map(|(state, buckets, _)| (state, buckets)))
}

/// Every document of a chat, read back: the control state, each history bucket in order, and
/// the control document. `None` if the chat has no stored control document.
pub fn load_history_with_control(
    store: &dyn KvRead,
    chat: ChatId,
) -> Result<Option<(ControlState, Vec<AutoCommit>, AutoCommit)>, DocError> {
    let suffix = [0u8; 16];
    let control_id = DocId::control(chat);
    let Some(owner) = control_owner(store, chat)? else {
        return Ok(None);
    };
    let control_doc = Doc::load(store, control_id, owner, None, actor_for(&owner, suffix))?;
    let state = control::read(&control_doc.doc).map_err(|e| DocError::Damaged(e.to_string()))?;
    let mut buckets = Vec::new();
    for number in 1.. {
        let id = DocId::bucket(chat, number);
        if store.range(Tree::Changes, prefix_range(&id.to_bytes()), false, 1)?.is_empty() {
            break;
        }
        buckets.push(Doc::load(store, id, owner, Some(&state), actor_for(&owner, suffix))?.doc);
    }
    Ok(Some((state, buckets, control_doc.doc)))
}

/// The outcome of a remote change.
#[derive(Debug)]
pub enum RemoteOutcome {
    /// Valid: applied and added to the batch.
    Accepted,
    /// Already known.
    Duplicate,
    /// Not yet applicable (missing dependencies, unknown epoch, sequence gap).
    Pending(String),
    /// Invalid for everyone.
    Rejected(String),
}

/// The three maps of a bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Collection {
    Messages,
    Updates,
    Reactions,
}

/// The map keys of the bucket's collections that changed between two sets of heads, with each
/// key's string value now (`None` when deleted or not a string).
fn touched_keys(
    doc: &mut AutoCommit,
    before: &[automerge::ChangeHash],
    after: &[automerge::ChangeHash],
) -> Vec<(Collection, String, Option<String>)> {
    use automerge::{ReadDoc, ScalarValue, Value};
    let Ok(collections) = bucket::collections(doc) else {
        return Vec::new();
    };
    let patches = doc.diff(before, after);
    let mut touched = Vec::new();
    for patch in patches {
        let collection = if patch.obj == collections.messages {
            Collection::Messages
        } else if patch.obj == collections.updates {
            Collection::Updates
        } else if patch.obj == collections.reactions {
            Collection::Reactions
        } else {
            continue;
        };
        let key = match patch.action {
            automerge::PatchAction::PutMap { key, .. } => key,
            automerge::PatchAction::DeleteMap { key } => key,
            _ => continue,
        };
        let value = match doc.get(&patch.obj, key.as_str()) {
            Ok(Some((Value::Scalar(value), _))) => match value.as_ref() {
                ScalarValue::Str(text) => Some(text.to_string()),
                _ => None,
            },
            _ => None,
        };
        touched.push((collection, key, value));
    }
    touched
}

/// The bucket new messages go to: the one after the newest sealed bucket.
pub fn current_bucket(state: &ControlState) -> u32 {
    state
        .buckets
        .iter()
        .filter(|(_, record)| record.sealed)
        .map(|(number, _)| number + 1)
        .max()
        .unwrap_or(1)
}

fn random_suffix() -> [u8; 16] {
    crate::random::random_bytes()
}
