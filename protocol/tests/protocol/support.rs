//! Shared fixtures: organisations, a control document, and replicas that run every change
//! through the validator exactly as a node does.

#![allow(dead_code)]

use automerge::transaction::CommitOptions;
use automerge::{AutoCommit, Change, ExpandedChange, ReadDoc};
use confab_protocol::bucket::{self, Collections, MessageRecord, UpdateOp, UpdateRecord};
use confab_protocol::control::{
    self, ChatInfo, ChatKind, ControlState, MemberRecord, Role, Visibility,
};
use confab_protocol::validate::{self, actor_for};
use confab_protocol::{
    ChatId, DocId, DocValidator, HlcTime, Limits, MessageId, OrgId, OrgKey, PendingReason,
    Preverified, Rejection, SignedChange, UserId, Verdict,
};

/// A fixed commit time, so changes are reproducible.
pub const TIME: i64 = 1_700_000_000;
pub const CHAT: ChatId = ChatId::from_bytes([0x11; 16]);
pub const BUCKET: DocId = DocId { chat: CHAT, kind: confab_protocol::DocKind::Bucket(1) };
pub const CONTROL: DocId = DocId { chat: CHAT, kind: confab_protocol::DocKind::Control };

/// Seeds of the organisations used throughout: the owner, a peered member, a third member and
/// an outsider that is never a member.
pub const OWNER: u8 = 0xa1;
pub const MEMBER: u8 = 0xb2;
pub const THIRD: u8 = 0xc3;
pub const OUTSIDER: u8 = 0xd4;

pub fn key(seed: u8) -> OrgKey {
    OrgKey::from_seed([seed; 32])
}

pub fn org(seed: u8) -> OrgId {
    key(seed).id()
}

pub fn user(local: &str, org_name: &str) -> UserId {
    UserId::new(local, org_name).expect("valid user id")
}

/// What happened to a change handed to a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Duplicate,
    Pending(PendingReason),
    Rejected(Rejection),
}

/// The control document of the test chat, as the owner builds it, and its state.
pub struct Control {
    pub replica: Replica,
    pub state: ControlState,
    pub log: Vec<SignedChange>,
}

impl Control {
    /// Genesis at epoch 1 by the owner; then `MEMBER` joins at epoch 2 (and, with `third`,
    /// `THIRD` joins at epoch 2 as well).
    pub fn new(third: bool) -> Self {
        let owner = org(OWNER);
        let info = ChatInfo {
            kind: ChatKind::Channel,
            visibility: Visibility::Private,
            created_ms: 1_000,
            owner,
        };
        let alice = user("alice", "acme");
        let mut replica = Replica::new(OWNER, 1, CONTROL);
        control::genesis(
            &mut replica.doc,
            &info,
            "general",
            "",
            (&alice, &MemberRecord { role: Role::Owner, org: owner }),
        )
        .expect("genesis");
        let empty = EpochOnly(1);
        let first = replica.commit_local(1, &empty);
        let mut this =
            Self { state: control::read(&replica.doc).expect("read"), replica, log: vec![first] };
        this.add_org(MEMBER, 2, user("bob", "globex"));
        if third {
            this.add_org(THIRD, 2, user("carol", "initech"));
        }
        this
    }

    /// Adds `seed`'s organisation from `epoch` (and moves the epoch there).
    pub fn add_org(&mut self, seed: u8, epoch: u64, member: UserId) {
        let doc = &mut self.replica.doc;
        control::put_member(doc, &member, &MemberRecord { role: Role::Member, org: org(seed) })
            .expect("member");
        control::set_org_ranges(doc, &org(seed), &[(epoch, None)]).expect("ranges");
        control::set_epoch(doc, epoch).expect("epoch");
        let state = self.state.clone();
        let signed = self.replica.commit_local(epoch, &state);
        self.log.push(signed);
        self.state = control::read(&self.replica.doc).expect("read");
    }

    /// Moves to `epoch` without changing membership.
    pub fn bump_epoch(&mut self, epoch: u64) {
        control::set_epoch(&mut self.replica.doc, epoch).expect("epoch");
        let state = self.state.clone();
        let signed = self.replica.commit_local(epoch, &state);
        self.log.push(signed);
        self.state = control::read(&self.replica.doc).expect("read");
    }
}

/// A membership that knows every epoch up to `.0` and has nobody as a member (enough for the
/// control document, whose changes are authorised by ownership alone).
pub struct EpochOnly(pub u64);

impl validate::Membership for EpochOnly {
    fn org_at_epoch(&self, _org: &OrgId, epoch: u64) -> validate::MembershipAnswer {
        if epoch <= self.0 {
            validate::MembershipAnswer::NotMember
        } else {
            validate::MembershipAnswer::UnknownEpoch
        }
    }
}

/// One organisation's copy of one document with its validator, as a node keeps it.
pub struct Replica {
    pub seed: u8,
    pub suffix: u8,
    pub doc: AutoCommit,
    pub validator: DocValidator,
    /// Every change accepted here, in the order accepted (a causal order).
    pub log: Vec<SignedChange>,
    /// Message ids minted here; the HLC's counter.
    pub minted: u16,
}

impl Replica {
    pub fn new(seed: u8, suffix: u8, doc_id: DocId) -> Self {
        let doc = AutoCommit::new().with_actor(actor_for(&org(seed), [suffix; 16]));
        let validator = DocValidator::new(doc_id, org(OWNER), Limits::default());
        Self { seed, suffix, doc, validator, log: Vec::new(), minted: 0 }
    }

    pub fn key(&self) -> OrgKey {
        key(self.seed)
    }

    pub fn org(&self) -> OrgId {
        org(self.seed)
    }

    /// Commits the pending operations and signs the change, without validating it.
    pub fn sign_local(&mut self, epoch: u64) -> SignedChange {
        self.doc.commit_with(CommitOptions::default().with_time(TIME));
        let change = self.doc.get_last_local_change().expect("a local change");
        sign(&self.key(), self.validator.doc(), epoch, &change)
    }

    /// Commits, signs, checks with `check_own` and records the change, as the node does.
    pub fn commit_local(
        &mut self,
        epoch: u64,
        membership: &dyn validate::Membership,
    ) -> SignedChange {
        let signed = self.sign_local(epoch);
        match self.validator.check_own(&signed, membership) {
            Ok(Verdict::Accept(checked)) => self.validator.commit(&checked),
            other => panic!("own change refused: {other:?}"),
        }
        self.log.push(signed.clone());
        signed
    }

    /// Runs a remote change through `check`, and on acceptance `apply` then `commit`.
    pub fn receive(
        &mut self,
        signed: &SignedChange,
        membership: &dyn validate::Membership,
    ) -> Outcome {
        let verdict = self.validator.check(signed, membership);
        self.same_when_preverified(signed, membership, &outcome_ref(&verdict));
        match verdict {
            Ok(Verdict::Accept(checked)) => {
                validate::apply(&mut self.doc, vec![checked.change.clone()])
                    .expect("apply an accepted change");
                self.validator.commit(&checked);
                self.log.push(signed.clone());
                Outcome::Accepted
            }
            Ok(Verdict::Duplicate) => Outcome::Duplicate,
            Ok(Verdict::Pending(reason)) => Outcome::Pending(reason),
            Err(rejection) => Outcome::Rejected(rejection),
        }
    }

    /// Checks without applying anything.
    pub fn check(&self, signed: &SignedChange, membership: &dyn validate::Membership) -> Outcome {
        let outcome = outcome_of(self.validator.check(signed, membership));
        self.same_when_preverified(signed, membership, &outcome);
        outcome
    }

    /// The pipeline split as a node runs it for remote changes ([`Preverified::verify`] on one
    /// thread, [`DocValidator::check_preverified`] on another) decides as [`DocValidator::check`]
    /// does: the same verdict, or a rejection where it rejects (the reason may differ, since the
    /// steps run in another order).
    fn same_when_preverified(
        &self,
        signed: &SignedChange,
        membership: &dyn validate::Membership,
        expected: &Outcome,
    ) {
        let split = match Preverified::verify(signed.clone(), self.validator.limits()) {
            Err(rejection) => Outcome::Rejected(rejection),
            Ok(change) => outcome_of(self.validator.check_preverified(&change, membership)),
        };
        match (expected, &split) {
            (Outcome::Rejected(_), Outcome::Rejected(_)) => {}
            _ => assert_eq!(&split, expected, "preverified path differs for {signed:?}"),
        }
    }

    /// Receives every change of `other`'s log (in its causal order); each must be accepted or
    /// a duplicate.
    pub fn sync_from(&mut self, other: &[SignedChange], membership: &dyn validate::Membership) {
        for signed in other {
            match self.receive(signed, membership) {
                Outcome::Accepted | Outcome::Duplicate => {}
                other => panic!("honest change not accepted: {other:?}"),
            }
        }
    }

    pub fn collections(&self) -> Collections {
        bucket::collections(&self.doc).expect("bucket genesis")
    }

    /// Mints the next message id of this replica.
    pub fn next_id(&mut self) -> MessageId {
        self.minted += 1;
        MessageId::new(
            HlcTime { ms: 1_700_000_000_000, counter: self.minted },
            &self.org(),
            [self.suffix; 4],
        )
    }

    /// Puts a message (not yet committed) and returns its id.
    pub fn put_message(&mut self, author: &UserId, body: &str) -> MessageId {
        let id = self.next_id();
        let collections = self.collections();
        let record = MessageRecord {
            author: author.clone(),
            body: body.into(),
            reply_to: None,
            attachments: Vec::new(),
        };
        let org = self.org();
        bucket::put_message(&mut self.doc, &collections, &org, &id, &record).expect("put message");
        id
    }

    /// Puts an edit or deletion of `target` (not yet committed).
    pub fn put_update(&mut self, by: &UserId, target: MessageId, op: UpdateOp) {
        self.minted += 1;
        let collections = self.collections();
        let record = UpdateRecord {
            target,
            by: by.clone(),
            at: HlcTime { ms: 1_700_000_000_000, counter: self.minted },
            op,
        };
        let org = self.org();
        bucket::put_update(&mut self.doc, &collections, &org, &record).expect("put update");
    }

    pub fn heads(&mut self) -> Vec<automerge::ChangeHash> {
        let mut heads = self.doc.get_heads();
        heads.sort();
        heads
    }

    /// The bucket's content as the views would read it, sorted.
    pub fn content(&self) -> (Vec<(OrgId, MessageId, MessageRecord)>, Vec<String>) {
        let mut messages = bucket::messages(&self.doc).unwrap_or_default();
        messages.sort_by_key(|(org, id, _)| (*org, *id));
        let mut updates: Vec<String> = bucket::updates(&self.doc)
            .unwrap_or_default()
            .into_iter()
            .map(|(org, record)| format!("{org} {}", serde_json::to_string(&record).expect("json")))
            .collect();
        updates.sort();
        (messages, updates)
    }

    /// A snapshot of everything observable: heads, content and validator state.
    pub fn snapshot(&mut self) -> String {
        let heads = self.heads();
        let content = self.content();
        let actor = self.doc.get_actor().clone();
        format!(
            "{heads:?} {content:?} {} {}",
            self.validator.len(),
            self.validator.next_seq(&actor)
        )
    }
}

/// Signs a change exactly as a node does.
pub fn sign(key: &OrgKey, doc: DocId, epoch: u64, change: &Change) -> SignedChange {
    SignedChange::sign(key, doc, epoch, change.raw_bytes().to_vec(), &change.hash().0)
}

/// Re-encodes an edited expanded change and signs it.
pub fn sign_expanded(
    key: &OrgKey,
    doc: DocId,
    epoch: u64,
    expanded: ExpandedChange,
) -> SignedChange {
    let change = Change::from(expanded);
    sign(key, doc, epoch, &change)
}

/// Decodes the automerge change inside a signed change.
pub fn expand(signed: &SignedChange) -> ExpandedChange {
    Change::from_bytes(signed.change.clone()).expect("a change").decode()
}

/// A bucket with its genesis written by the owner, and the control document it answers to.
pub struct World {
    pub control: Control,
    pub owner: Replica,
    pub genesis: SignedChange,
}

impl World {
    pub fn new(third: bool) -> Self {
        let control = Control::new(third);
        let mut owner = Replica::new(OWNER, 2, BUCKET);
        bucket::genesis(&mut owner.doc).expect("genesis");
        let genesis = owner.commit_local(2, &control.state);
        Self { control, owner, genesis }
    }

    /// A replica of the bucket for `seed`, which has received the owner's genesis.
    pub fn replica(&self, seed: u8, suffix: u8) -> Replica {
        let mut replica = Replica::new(seed, suffix, BUCKET);
        assert_eq!(replica.receive(&self.genesis, &self.control.state), Outcome::Accepted);
        replica
    }

    pub fn state(&self) -> &ControlState {
        &self.control.state
    }
}

/// Flips one bit.
pub fn flip(bytes: &mut [u8], bit: usize) {
    bytes[bit / 8] ^= 1 << (bit % 8);
}

/// The document read as text, to compare replicas beyond the views.
pub fn doc_text(doc: &AutoCommit) -> String {
    format!("{:?}", doc.keys(automerge::ROOT).collect::<Vec<_>>())
}

fn outcome_of(verdict: Result<Verdict, Rejection>) -> Outcome {
    outcome_ref(&verdict)
}

fn outcome_ref(verdict: &Result<Verdict, Rejection>) -> Outcome {
    match verdict {
        Ok(Verdict::Accept(_)) => Outcome::Accepted,
        Ok(Verdict::Duplicate) => Outcome::Duplicate,
        Ok(Verdict::Pending(reason)) => Outcome::Pending(reason.clone()),
        Err(rejection) => Outcome::Rejected(rejection.clone()),
    }
}
