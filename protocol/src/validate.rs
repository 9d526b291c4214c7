//! The validation pipeline: every change, local or remote, passes here before automerge sees it.
//!
//! automerge authenticates nothing (an actor id is free bytes) and some crafted changes corrupt or
//! crash it (an empty `pred` that overwrites another actor's key, a `seq` gap, a `start_op` near
//! `u32::MAX`). So each change is inspected first, deterministically, so that every honest node
//! decides the same:
//!
//! 1. size cap; the chunk must be an uncompressed change chunk; it must parse, with no trailing
//!    bytes, a checksum that matches its hash (automerge does not check it, and the signed hash
//!    does not cover it), `seq` ≥ 1, no commit message and no extra bytes;
//! 2. the signature (strict) over document, epoch and change hash;
//! 3. the actor id is the signer's: 32 bytes organisation id + 16 bytes suffix;
//! 4. authority: the control document is written only by the owner; a bucket change's signer must
//!    be a member organisation at the epoch it claims, and that epoch may not be older than the
//!    epochs of its dependencies;
//! 5. `seq` is exactly the actor's last + 1 (a gap waits: [`Verdict::Pending`]; the same `seq`
//!    with another hash is equivocation);
//! 6. every dependency is known (else pending);
//! 7. `start_op` is exactly 1 + the highest op of its dependencies, and above the actor's previous
//!    change, so op ids can never collide or jump;
//! 8. every object and `pred` an operation names is older than the operation; a change without
//!    dependencies is the document's one genesis;
//! 9. every operation stays in the signer's namespace: only the owner's genesis writes the root;
//!    later writes are scalar JSON strings put into a collection map under a key prefixed with
//!    the signer's organisation id; `pred`s name only the signer's own ops; the records parse.
//!
//! The exact rules and limits are written down in `spec/channel-documents.md`.
//!
//! A change that passes comes back as [`Checked`]; the caller applies it with [`apply`] (under
//! `catch_unwind`), persists it, and only then calls [`DocValidator::commit`] and forwards it.

use crate::bucket::{self, MessageRecord, UpdateRecord};
use crate::ids::{DocKind, MessageId, OrgId};
use crate::signed_change::SignedChange;
use automerge::legacy::{Key, ObjectId, OpId, OpType};
use automerge::{ActorId, AutoCommit, Change, ChangeHash, ObjType, ScalarValue};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Bytes in an actor id: the organisation id then a 16-byte suffix.
pub const ACTOR_LEN: usize = 48;

/// Limits on one change and one document. Every honest node must use the same values, so they
/// are protocol constants with these defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub change_bytes_max: usize,
    pub ops_per_change_max: usize,
    pub deps_per_change_max: usize,
    pub actors_per_doc_max: usize,
    pub key_bytes_max: usize,
    pub value_bytes_max: usize,
    pub message_body_chars_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            change_bytes_max: 1024 * 1024,
            ops_per_change_max: 1024,
            deps_per_change_max: 64,
            actors_per_doc_max: 4096,
            key_bytes_max: 256,
            value_bytes_max: 800 * 1024,
            message_body_chars_max: 100_000,
        }
    }
}

/// What a document's validator needs to know about membership (from the control document).
pub trait Membership {
    fn org_at_epoch(&self, org: &OrgId, epoch: u64) -> MembershipAnswer;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipAnswer {
    Member,
    NotMember,
    /// The epoch is newer than the control document this node has: wait for it.
    UnknownEpoch,
}

/// Why a change was refused. Every variant is final: the change is invalid for everyone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("change is for document {got}, not {expected}")]
    WrongDocument { expected: String, got: String },
    #[error("change is {len} bytes; the limit is {max}")]
    TooLarge { len: usize, max: usize },
    #[error("not an uncompressed automerge change chunk")]
    NotAChange,
    #[error("malformed change: {0}")]
    Malformed(String),
    #[error("change has a commit message or extra bytes")]
    ExtraBytes,
    #[error("bad signature")]
    BadSignature,
    #[error("actor id is not the signer's")]
    ActorNotSigner,
    #[error("only the owning organisation writes the control document")]
    NotOwner,
    #[error("signer is not a member organisation at epoch {epoch}")]
    NotMember { epoch: u64 },
    #[error("change claims epoch {epoch}, older than its dependencies' {deps_epoch}")]
    StaleEpoch { epoch: u64, deps_epoch: u64 },
    #[error("actor equivocated: seq {seq} already has another change")]
    Equivocation { seq: u64 },
    #[error("start_op is {got}; it must be {expected}")]
    BadStartOp { expected: u64, got: u64 },
    #[error("start_op {got} does not follow the actor's previous change")]
    OpIdReuse { got: u64 },
    #[error("too many {what}: {count}, the limit is {max}")]
    Limit { what: &'static str, count: usize, max: usize },
    #[error("a change without dependencies must be the owner's genesis")]
    BadGenesis,
    #[error("only the owner's genesis change writes the document root")]
    RootWrite,
    #[error("operation {index}: {reason}")]
    BadOperation { index: usize, reason: String },
    #[error("operation {index} writes key {key:?} outside the signer's namespace")]
    ForeignNamespace { index: usize, key: String },
    #[error("operation {index} overwrites an operation of another organisation")]
    ForeignPred { index: usize },
    #[error("operation {index}: message body is {chars} characters; the limit is {max}")]
    BodyTooLong { index: usize, chars: usize, max: usize },
}

/// Why a change cannot be decided yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PendingReason {
    /// The actor's earlier changes have not arrived.
    SeqGap { expected: u64, got: u64 },
    /// Some dependencies are unknown.
    MissingDeps(Vec<ChangeHash>),
    /// The change claims an epoch newer than this node's control document.
    UnknownEpoch(u64),
}

/// The outcome of a check that is not a rejection.
#[derive(Debug)]
pub enum Verdict {
    Accept(Box<Checked>),
    /// Already known (same hash): drop silently, not an offence.
    Duplicate,
    Pending(PendingReason),
}

/// A change that passed validation, ready to apply.
#[derive(Debug)]
pub struct Checked {
    pub change: Change,
    pub hash: ChangeHash,
    pub epoch: u64,
    seq: u64,
    max_op: u64,
    genesis_collections: Option<[OpKey; 3]>,
}

/// An op id in a form that is cheap to compare.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct OpKey {
    counter: u64,
    actor: Vec<u8>,
}

impl OpKey {
    fn of(op: &OpId) -> Self {
        Self { counter: op.0, actor: op.1.to_bytes().to_vec() }
    }
}

#[derive(Debug)]
struct ActorState {
    /// Hash of each accepted change of this actor, by `seq - 1`.
    hashes: Vec<ChangeHash>,
    last_max_op: u64,
}

#[derive(Debug, Clone, Copy)]
struct ChangeInfo {
    max_op: u64,
    epoch: u64,
}

/// Validation state of one document.
#[derive(Debug)]
pub struct DocValidator {
    doc: crate::ids::DocId,
    owner: OrgId,
    limits: Limits,
    actors: HashMap<ActorId, ActorState>,
    changes: HashMap<ChangeHash, ChangeInfo>,
    /// Bucket collections (`msg`, `upd`, `rx`), known once the genesis is accepted.
    collections: Option<[OpKey; 3]>,
}

impl DocValidator {
    pub fn new(doc: crate::ids::DocId, owner: OrgId, limits: Limits) -> Self {
        Self {
            doc,
            owner,
            limits,
            actors: HashMap::new(),
            changes: HashMap::new(),
            collections: None,
        }
    }

    pub fn doc(&self) -> crate::ids::DocId {
        self.doc
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Number of accepted changes.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn knows(&self, hash: &ChangeHash) -> bool {
        self.changes.contains_key(hash)
    }

    /// The `seq` the actor's next change must have.
    pub fn next_seq(&self, actor: &ActorId) -> u64 {
        self.actors.get(actor).map_or(1, |state| state.hashes.len() as u64 + 1)
    }

    /// Runs the whole pipeline on a change from anyone.
    pub fn check(
        &self,
        signed: &SignedChange,
        membership: &dyn Membership,
    ) -> Result<Verdict, Rejection> {
        self.check_document(signed)?;
        let change = parse_change(&signed.change, &self.limits)?;
        if signed.verify(&change.hash().0).is_err() {
            return Err(Rejection::BadSignature);
        }
        self.check_parsed(signed, change, membership)
    }

    /// Runs the pipeline on a change from anyone whose stateless first steps (parsing and the
    /// signature) [`Preverified::verify`] already ran, possibly on another thread: the same
    /// verdicts as [`Self::check`], without verifying the signature twice.
    pub fn check_preverified(
        &self,
        change: &Preverified,
        membership: &dyn Membership,
    ) -> Result<Verdict, Rejection> {
        self.check_document(&change.signed)?;
        // The change may have been parsed under other limits.
        check_size(&change.signed.change, &self.limits)?;
        check_ops(&change.change, &self.limits)?;
        self.check_parsed(&change.signed, change.change.clone(), membership)
    }

    /// Runs the pipeline on a change this node has just made and signed itself, skipping only
    /// the signature verification (the node holds the key). Everything structural is checked, so
    /// a bug in our own writer cannot put an invalid change into history.
    pub fn check_own(
        &self,
        signed: &SignedChange,
        membership: &dyn Membership,
    ) -> Result<Verdict, Rejection> {
        self.check_document(signed)?;
        let change = parse_change(&signed.change, &self.limits)?;
        self.check_parsed(signed, change, membership)
    }

    fn check_document(&self, signed: &SignedChange) -> Result<(), Rejection> {
        if signed.doc != self.doc {
            return Err(Rejection::WrongDocument {
                expected: self.doc.to_string(),
                got: signed.doc.to_string(),
            });
        }
        Ok(())
    }

    /// The pipeline after parsing and the signature.
    fn check_parsed(
        &self,
        signed: &SignedChange,
        change: Change,
        membership: &dyn Membership,
    ) -> Result<Verdict, Rejection> {
        let hash = change.hash();
        let actor = change.actor_id();
        if !actor_belongs_to(actor, &signed.signer) {
            return Err(Rejection::ActorNotSigner);
        }
        if self.changes.contains_key(&hash) {
            return Ok(Verdict::Duplicate);
        }
        if let Some(verdict) = self.check_authority(signed, membership)? {
            return Ok(verdict);
        }
        let seq = change.seq();
        let expected_seq = self.next_seq(actor);
        if seq < expected_seq {
            // A different change at a seq we already hold: the actor signed two histories.
            return Err(Rejection::Equivocation { seq });
        }
        if seq > expected_seq {
            return Ok(Verdict::Pending(PendingReason::SeqGap {
                expected: expected_seq,
                got: seq,
            }));
        }
        if !self.actors.contains_key(actor) && self.actors.len() >= self.limits.actors_per_doc_max {
            return Err(Rejection::Limit {
                what: "actors in the document",
                count: self.actors.len() + 1,
                max: self.limits.actors_per_doc_max,
            });
        }
        let deps = change.deps();
        if deps.len() > self.limits.deps_per_change_max {
            return Err(Rejection::Limit {
                what: "dependencies",
                count: deps.len(),
                max: self.limits.deps_per_change_max,
            });
        }
        let missing: Vec<ChangeHash> =
            deps.iter().filter(|dep| !self.changes.contains_key(dep)).copied().collect();
        if !missing.is_empty() {
            return Ok(Verdict::Pending(PendingReason::MissingDeps(missing)));
        }
        let (deps_max_op, deps_epoch) = deps.iter().fold((0, 0), |(op, epoch), dep| {
            let info = self.changes[dep];
            (op.max(info.max_op), epoch.max(info.epoch))
        });
        if signed.epoch < deps_epoch {
            return Err(Rejection::StaleEpoch { epoch: signed.epoch, deps_epoch });
        }
        let start_op = change.start_op().get();
        if start_op != deps_max_op + 1 {
            return Err(Rejection::BadStartOp { expected: deps_max_op + 1, got: start_op });
        }
        if let Some(state) = self.actors.get(actor) {
            if start_op <= state.last_max_op {
                return Err(Rejection::OpIdReuse { got: start_op });
            }
        }
        let ops = decode_ops(&change)?;
        let genesis_collections = self.check_operations(signed, &change, &ops)?;
        let max_op = start_op + change.len() as u64 - 1;
        Ok(Verdict::Accept(Box::new(Checked {
            change,
            hash,
            epoch: signed.epoch,
            seq,
            max_op,
            genesis_collections,
        })))
    }

    /// Checks who may write, and at which epoch. `Some` is a pending verdict.
    fn check_authority(
        &self,
        signed: &SignedChange,
        membership: &dyn Membership,
    ) -> Result<Option<Verdict>, Rejection> {
        match self.doc.kind {
            DocKind::Control => {
                if signed.signer != self.owner {
                    return Err(Rejection::NotOwner);
                }
                Ok(None)
            }
            DocKind::Bucket(_) => match membership.org_at_epoch(&signed.signer, signed.epoch) {
                MembershipAnswer::Member => Ok(None),
                MembershipAnswer::NotMember => Err(Rejection::NotMember { epoch: signed.epoch }),
                MembershipAnswer::UnknownEpoch => {
                    Ok(Some(Verdict::Pending(PendingReason::UnknownEpoch(signed.epoch))))
                }
            },
        }
    }

    fn check_operations(
        &self,
        signed: &SignedChange,
        change: &Change,
        ops: &[automerge::legacy::Op],
    ) -> Result<Option<[OpKey; 3]>, Rejection> {
        check_op_ids(change, ops)?;
        match self.doc.kind {
            DocKind::Control => {
                // The control document has exactly one genesis: the first change accepted, with
                // no dependencies, at seq 1. Another root change would fork the whole document.
                if change.deps().is_empty() && (change.seq() != 1 || !self.changes.is_empty()) {
                    return Err(Rejection::BadGenesis);
                }
                check_control_ops(&signed.signer, ops)?;
                Ok(None)
            }
            DocKind::Bucket(_) => {
                if change.deps().is_empty() {
                    return self.check_bucket_genesis(signed, change, ops).map(Some);
                }
                let Some(collections) = &self.collections else {
                    return Err(Rejection::BadGenesis);
                };
                self.check_bucket_ops(&signed.signer, collections, ops)?;
                Ok(None)
            }
        }
    }

    fn check_bucket_genesis(
        &self,
        signed: &SignedChange,
        change: &Change,
        ops: &[automerge::legacy::Op],
    ) -> Result<[OpKey; 3], Rejection> {
        if signed.signer != self.owner
            || self.collections.is_some()
            || change.seq() != 1
            || ops.len() != 4
        {
            return Err(Rejection::BadGenesis);
        }
        let schema_ok = matches!(
            (&ops[0].obj, &ops[0].key, &ops[0].action),
            (ObjectId::Root, Key::Map(key), OpType::Put(ScalarValue::Str(value)))
                if key.as_str() == bucket::SCHEMA_KEY && value.as_str() == bucket::SCHEMA
        );
        if !schema_ok || ops.iter().any(|op| op.insert || !op.pred.is_empty()) {
            return Err(Rejection::BadGenesis);
        }
        let actor = change.actor_id().to_bytes().to_vec();
        let start_op = change.start_op().get();
        let mut collections = Vec::with_capacity(3);
        for (offset, (op, name)) in ops[1..].iter().zip(bucket::COLLECTIONS).enumerate() {
            let is_map = matches!(
                (&op.obj, &op.key, &op.action),
                (ObjectId::Root, Key::Map(key), OpType::Make(ObjType::Map)) if key.as_str() == name
            );
            if !is_map {
                return Err(Rejection::BadGenesis);
            }
            collections.push(OpKey { counter: start_op + 1 + offset as u64, actor: actor.clone() });
        }
        collections.try_into().map_err(|_| Rejection::BadGenesis)
    }

    fn check_bucket_ops(
        &self,
        signer: &OrgId,
        collections: &[OpKey; 3],
        ops: &[automerge::legacy::Op],
    ) -> Result<(), Rejection> {
        let prefix = format!("{signer}:");
        for (index, op) in ops.iter().enumerate() {
            let bad = |reason: &str| Rejection::BadOperation { index, reason: reason.to_string() };
            let collection = match &op.obj {
                ObjectId::Root => return Err(Rejection::RootWrite),
                ObjectId::Id(id) => collections
                    .iter()
                    .position(|c| *c == OpKey::of(id))
                    .ok_or_else(|| bad("writes an object that is not a bucket collection"))?,
            };
            if op.insert {
                return Err(bad("inserts into a sequence"));
            }
            let Key::Map(key) = &op.key else {
                return Err(bad("uses a sequence key"));
            };
            if key.len() > self.limits.key_bytes_max {
                return Err(bad("key is too long"));
            }
            let Some(rest) = key.strip_prefix(&prefix) else {
                return Err(Rejection::ForeignNamespace { index, key: key.to_string() });
            };
            if op.pred.iter().any(|pred| !actor_belongs_to(&pred.1, signer)) {
                return Err(Rejection::ForeignPred { index });
            }
            match (&op.action, collection) {
                (OpType::Put(ScalarValue::Str(value)), _)
                    if value.len() > self.limits.value_bytes_max =>
                {
                    return Err(bad("value is too large"));
                }
                (OpType::Put(ScalarValue::Str(value)), 0) => {
                    self.check_message(index, signer, rest, value)?
                }
                (OpType::Put(ScalarValue::Str(value)), 1) => {
                    self.check_update(index, rest, value)?
                }
                (OpType::Put(ScalarValue::Str(value)), _) => {
                    if !matches!(value.as_str(), bucket::REACTION_ON | bucket::REACTION_OFF) {
                        return Err(bad("a reaction's value is \"1\" or \"0\""));
                    }
                    if bucket::parse_reaction_key_rest(rest).is_none() {
                        return Err(bad("reaction key is not <message>:<emoji>:<user>"));
                    }
                }
                (OpType::Delete, 2) => {}
                _ => return Err(bad("action not allowed here")),
            }
        }
        Ok(())
    }

    fn check_message(
        &self,
        index: usize,
        signer: &OrgId,
        rest: &str,
        value: &str,
    ) -> Result<(), Rejection> {
        let bad = |reason: &str| Rejection::BadOperation { index, reason: reason.to_string() };
        let id: MessageId = rest.parse().map_err(|_| bad("message key is not a message id"))?;
        if !id.minted_by(signer) {
            return Err(bad("message id does not carry the signer's tag"));
        }
        let record: MessageRecord =
            serde_json::from_str(value).map_err(|_| bad("message record does not parse"))?;
        if record.attachments.len() > bucket::ATTACHMENTS_PER_MESSAGE_MAX {
            return Err(bad("too many attachments"));
        }
        if !record.attachments.iter().all(bucket::AttachmentRecord::is_well_formed) {
            return Err(bad("an attachment is malformed"));
        }
        if record.body.is_empty() && !record.attachments.is_empty() {
            return Ok(());
        }
        self.check_body(index, &record.body)
    }

    fn check_update(&self, index: usize, rest: &str, value: &str) -> Result<(), Rejection> {
        let bad = |reason: &str| Rejection::BadOperation { index, reason: reason.to_string() };
        let target: MessageId = rest.parse().map_err(|_| bad("update key is not a message id"))?;
        let record: UpdateRecord =
            serde_json::from_str(value).map_err(|_| bad("update record does not parse"))?;
        if record.target != target {
            return Err(bad("update record names another message than its key"));
        }
        match &record.op {
            bucket::UpdateOp::Edit { body } => self.check_body(index, body),
            bucket::UpdateOp::Delete => Ok(()),
        }
    }

    fn check_body(&self, index: usize, body: &str) -> Result<(), Rejection> {
        let chars = body.chars().count();
        if chars == 0 {
            return Err(Rejection::BadOperation { index, reason: "message body is empty".into() });
        }
        if chars > self.limits.message_body_chars_max {
            return Err(Rejection::BodyTooLong {
                index,
                chars,
                max: self.limits.message_body_chars_max,
            });
        }
        Ok(())
    }

    /// Records a change that was accepted by [`check`](Self::check) and applied.
    pub fn commit(&mut self, checked: &Checked) {
        let actor = checked.change.actor_id().clone();
        let state = self
            .actors
            .entry(actor)
            .or_insert_with(|| ActorState { hashes: Vec::new(), last_max_op: 0 });
        debug_assert_eq!(state.hashes.len() as u64 + 1, checked.seq);
        state.hashes.push(checked.hash);
        state.last_max_op = state.last_max_op.max(checked.max_op);
        self.changes
            .insert(checked.hash, ChangeInfo { max_op: checked.max_op, epoch: checked.epoch });
        if let Some(collections) = &checked.genesis_collections {
            self.collections = Some(collections.clone());
        }
    }
}

/// Every object and `pred` an operation names must be older than the operation itself (its op
/// id is `start_op + index`): honest automerge never writes otherwise, and a reference into the
/// future would name an op that does not exist yet when the change is applied.
fn check_op_ids(change: &Change, ops: &[automerge::legacy::Op]) -> Result<(), Rejection> {
    let start_op = change.start_op().get();
    for (index, op) in ops.iter().enumerate() {
        let own = start_op + index as u64;
        let future_obj = matches!(&op.obj, ObjectId::Id(id) if id.0 >= own);
        if future_obj || op.pred.iter().any(|pred| pred.0 >= own) {
            return Err(Rejection::BadOperation {
                index,
                reason: "names an operation that is not older than itself".into(),
            });
        }
    }
    Ok(())
}

fn check_control_ops(owner: &OrgId, ops: &[automerge::legacy::Op]) -> Result<(), Rejection> {
    for (index, op) in ops.iter().enumerate() {
        let bad = |reason: &str| Rejection::BadOperation { index, reason: reason.to_string() };
        if op.insert || !matches!(op.key, Key::Map(_)) {
            return Err(bad("the control document has only maps"));
        }
        if let ObjectId::Id(id) = &op.obj {
            if !actor_belongs_to(&id.1, owner) {
                return Err(bad("writes an object the owner did not create"));
            }
        }
        if op.pred.iter().any(|pred| !actor_belongs_to(&pred.1, owner)) {
            return Err(Rejection::ForeignPred { index });
        }
        match &op.action {
            OpType::Put(_) | OpType::Delete | OpType::Make(ObjType::Map) => {}
            _ => return Err(bad("action not allowed in the control document")),
        }
    }
    Ok(())
}

/// A remote change whose signature was verified over its change hash, parsed once: made only
/// by [`Preverified::verify`], so [`DocValidator::check_preverified`] can trust it. These steps
/// need no document state, so a node runs them off its engine thread, in parallel with applying
/// earlier changes.
#[derive(Debug, Clone)]
pub struct Preverified {
    signed: SignedChange,
    change: Change,
}

impl Preverified {
    /// Parses the change (under `limits`) and verifies its signature.
    pub fn verify(signed: SignedChange, limits: &Limits) -> Result<Self, Rejection> {
        let change = parse_change(&signed.change, limits)?;
        if signed.verify(&change.hash().0).is_err() {
            return Err(Rejection::BadSignature);
        }
        Ok(Self { signed, change })
    }

    /// The signed change.
    pub fn signed(&self) -> &SignedChange {
        &self.signed
    }
}

fn check_size(bytes: &[u8], limits: &Limits) -> Result<(), Rejection> {
    if bytes.len() > limits.change_bytes_max {
        return Err(Rejection::TooLarge { len: bytes.len(), max: limits.change_bytes_max });
    }
    Ok(())
}

/// Parses one uncompressed change chunk, refusing anything automerge would not load.
fn parse_change(bytes: &[u8], limits: &Limits) -> Result<Change, Rejection> {
    check_size(bytes, limits)?;
    // Chunk header: magic (4) ‖ checksum (4) ‖ type (1). Type 1 is an uncompressed change;
    // compressed changes (2) could inflate past every limit, documents (0) are not changes.
    const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
    if bytes.len() < 9 || bytes[..4] != MAGIC || bytes[8] != 1 {
        return Err(Rejection::NotAChange);
    }
    let change = catch_unwind(|| Change::from_bytes(bytes.to_vec()))
        .map_err(|_| Rejection::Malformed("parser panicked".into()))?
        .map_err(|error| Rejection::Malformed(error.to_string()))?;
    if change.raw_bytes() != bytes {
        return Err(Rejection::Malformed("trailing bytes after the change".into()));
    }
    // automerge does not check the chunk checksum when it parses a single change, and the
    // change hash (which the signature covers) does not cover the checksum. Without this
    // check anyone could flip checksum bits of a signed change and it would still verify,
    // yet `Automerge::load` refuses such a chunk once it is stored.
    if bytes[4..8] != change.hash().0[..4] {
        return Err(Rejection::Malformed("chunk checksum does not match the change hash".into()));
    }
    if change.seq() == 0 {
        return Err(Rejection::Malformed("seq 0".into()));
    }
    if change.message().is_some_and(|m| !m.is_empty()) || !change.extra_bytes().is_empty() {
        return Err(Rejection::ExtraBytes);
    }
    check_ops(&change, limits)?;
    if change.actor_id().to_bytes().len() != ACTOR_LEN {
        return Err(Rejection::ActorNotSigner);
    }
    Ok(change)
}

fn check_ops(change: &Change, limits: &Limits) -> Result<(), Rejection> {
    if change.len() > limits.ops_per_change_max {
        return Err(Rejection::Limit {
            what: "operations",
            count: change.len(),
            max: limits.ops_per_change_max,
        });
    }
    Ok(())
}

/// True if `actor` is one of `org`'s actors: its first 32 bytes are the organisation id.
pub fn actor_belongs_to(actor: &ActorId, org: &OrgId) -> bool {
    let bytes = actor.to_bytes();
    bytes.len() == ACTOR_LEN && bytes[..32] == org.as_bytes()[..]
}

/// An actor id for `org` with the given 16-byte suffix (fresh per document per process start).
pub fn actor_for(org: &OrgId, suffix: [u8; 16]) -> ActorId {
    let mut bytes = Vec::with_capacity(ACTOR_LEN);
    bytes.extend_from_slice(org.as_bytes());
    bytes.extend_from_slice(&suffix);
    ActorId::from(bytes)
}

fn decode_ops(change: &Change) -> Result<Vec<automerge::legacy::Op>, Rejection> {
    let expanded = catch_unwind(AssertUnwindSafe(|| change.decode()))
        .map_err(|_| Rejection::Malformed("decoder panicked".into()))?;
    if expanded.operations.len() != change.len() {
        return Err(Rejection::Malformed("operation count does not match".into()));
    }
    Ok(expanded.operations)
}

/// Why applying checked changes failed. The document may be damaged: reload it from storage.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("automerge refused the changes: {0}")]
    Refused(String),
    #[error("automerge panicked while applying the changes")]
    Panicked,
}

/// Applies validated changes in one batch, under `catch_unwind`.
pub fn apply(doc: &mut AutoCommit, changes: Vec<Change>) -> Result<(), ApplyError> {
    match catch_unwind(AssertUnwindSafe(|| doc.apply_changes(changes))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(ApplyError::Refused(error.to_string())),
        Err(_) => Err(ApplyError::Panicked),
    }
}
