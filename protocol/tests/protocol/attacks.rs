//! The crafted automerge changes of design §4, built with automerge itself and signed by a real
//! member key. Each test first shows the attack works on a bare automerge document (so the test
//! keeps meaning something if automerge changes), then that the validator refuses it (or holds
//! it as pending) and that neither the document nor the validator moved.

use crate::support::*;
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{AutoCommit, Change, ReadDoc, ScalarValue, Value};
use confab_protocol::bucket::{self, MessageRecord};
use confab_protocol::validate::{self, actor_for};
use confab_protocol::{control, HlcTime, MessageId, PendingReason, Rejection};
use std::num::NonZeroU64;
use std::panic::{catch_unwind, AssertUnwindSafe};

fn string_at(doc: &AutoCommit, obj: &automerge::ObjId, key: &str) -> Option<String> {
    match doc.get(obj, key).expect("get")? {
        (Value::Scalar(value), _) => match value.as_ref() {
            ScalarValue::Str(text) => Some(text.to_string()),
            _ => None,
        },
        _ => None,
    }
}

/// Attack (a): an organisation that never saw another's write puts the same key with an empty
/// `pred` (and a high op counter so it sorts last) and wins the conflict.
#[test]
fn empty_pred_overwrite_of_another_organisations_key() {
    let mut world = World::new(false);
    let state = world.state().clone();
    let id = world.owner.put_message(&user("alice", "acme"), "the original");
    let original = world.owner.commit_local(2, &state);
    let key = bucket::namespaced_key(&org(OWNER), &id.to_string());

    // The member's replica has only the genesis: its put carries an empty pred.
    let mut b = world.replica(MEMBER, 3);
    let collections = b.collections();
    let forged = MessageRecord {
        author: user("alice", "acme"),
        body: "forged".into(),
        reply_to: None,
        attachments: Vec::new(),
    };
    b.doc
        .put(&collections.messages, key.as_str(), serde_json::to_string(&forged).expect("json"))
        .expect("put");
    b.doc.commit_with(CommitOptions::default().with_time(TIME));
    let mut expanded = b.doc.get_last_local_change().expect("change").decode();
    assert!(expanded.operations[0].pred.is_empty());
    expanded.start_op = NonZeroU64::new(1_000).expect("non-zero");
    let attack = Change::from(expanded.clone());

    // On a bare document the forged value wins.
    let mut bare = world.owner.doc.fork();
    bare.apply_changes(vec![attack.clone()]).expect("automerge applies it");
    let bare_collections = bucket::collections(&bare).expect("collections");
    assert!(string_at(&bare, &bare_collections.messages, &key).expect("value").contains("forged"));

    // Signed by the member at its real epoch: refused, nothing moved.
    let signed = sign(&key_of(MEMBER), BUCKET, 2, &attack);
    let before = world.owner.snapshot();
    let outcome = world.owner.receive(&signed, &state);
    assert!(
        matches!(
            outcome,
            Outcome::Rejected(Rejection::BadStartOp { .. } | Rejection::ForeignNamespace { .. })
        ),
        "{outcome:?}"
    );
    assert_eq!(world.owner.snapshot(), before);
    // With an honest start_op it is the namespace rule that refuses it.
    expanded.start_op = NonZeroU64::new(5).expect("non-zero");
    let signed = sign_expanded(&key_of(MEMBER), BUCKET, 2, expanded.clone());
    assert_eq!(
        world.owner.receive(&signed, &state),
        Outcome::Rejected(Rejection::ForeignNamespace { index: 0, key: key.clone() })
    );
    assert_eq!(world.owner.snapshot(), before);
    // Claiming the owner's actor instead, still signed by the member.
    expanded.actor_id = actor_for(&org(OWNER), [3; 16]);
    let signed = sign_expanded(&key_of(MEMBER), BUCKET, 2, expanded);
    assert_eq!(world.owner.receive(&signed, &state), Outcome::Rejected(Rejection::ActorNotSigner));
    assert_eq!(world.owner.snapshot(), before);
    let (messages, _) = world.owner.content();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].2.body, "the original");

    // A member replica that received the original refuses the attack as well.
    let mut c = world.replica(MEMBER, 4);
    assert_eq!(c.receive(&original, &state), Outcome::Accepted);
    assert!(matches!(c.receive(&signed, &state), Outcome::Rejected(_)));
}

/// Attack (a) against the control document: a member overwrites the channel name.
#[test]
fn empty_pred_overwrite_of_the_control_document() {
    let mut world = World::new(false);
    let state = world.state().clone();
    let mut b = Replica::new(MEMBER, 3, CONTROL);
    b.sync_from(&world.control.log[..1], &state);
    control::set_name(&mut b.doc, "hijacked").expect("put");
    let signed = b.sign_local(2);
    let before = world.control.replica.snapshot();
    assert_eq!(
        world.control.replica.receive(&signed, &state),
        Outcome::Rejected(Rejection::NotOwner)
    );
    assert_eq!(world.control.replica.snapshot(), before);
    assert_eq!(control::read(&world.control.replica.doc).expect("read").name, "general");
}

/// Attack (b): a change with `seq` 3 when only `seq` 1 of its actor is known, whose
/// dependencies are all present, so automerge considers it ready and applies it.
#[test]
fn seq_gap_is_held_and_never_applied() {
    let mut world = World::new(false);
    let state = world.state().clone();
    let mut b = world.replica(MEMBER, 3);
    b.put_message(&user("bob", "globex"), "first");
    let first = b.commit_local(2, &state);
    b.put_message(&user("bob", "globex"), "second");
    b.doc.commit_with(CommitOptions::default().with_time(TIME));
    let honest_second = b.doc.get_last_local_change().expect("change");
    let mut expanded = honest_second.decode();
    assert_eq!(expanded.seq, 2);
    expanded.seq = 3;
    let attack = Change::from(expanded);

    // On a bare document that knows seq 1 the gap is accepted by automerge and breaks it: either
    // apply panics or the next local write does.
    let mut victim = world.owner.doc.fork();
    victim
        .apply_changes(vec![Change::from_bytes(first.change.clone()).expect("first")])
        .expect("apply");
    let broken = catch_unwind(AssertUnwindSafe(|| {
        victim.apply_changes(vec![attack.clone()])?;
        let collections = bucket::collections(&victim).expect("collections");
        victim.put(&collections.reactions, "x", "y")?;
        victim.commit();
        let bytes = victim.save();
        AutoCommit::load(&bytes).map(|_| ())
    }));
    assert!(!matches!(broken, Ok(Ok(()))), "automerge took the seq gap in its stride: {broken:?}");

    // Through the validator: pending, not applied, nothing moved.
    let signed = sign(&key_of(MEMBER), BUCKET, 2, &attack);
    let mut owner = world.owner;
    assert_eq!(owner.receive(&first, &state), Outcome::Accepted);
    let before = owner.snapshot();
    assert_eq!(
        owner.receive(&signed, &state),
        Outcome::Pending(PendingReason::SeqGap { expected: 2, got: 3 })
    );
    assert_eq!(owner.snapshot(), before);
    // Even once seq 2 exists, the crafted seq-3 change does not fit: its start_op collides with
    // seq 2's ops.
    let second = sign(&key_of(MEMBER), BUCKET, 2, &honest_second);
    assert_eq!(owner.receive(&second, &state), Outcome::Accepted);
    assert!(matches!(
        owner.receive(&signed, &state),
        Outcome::Rejected(
            Rejection::BadStartOp { .. }
                | Rejection::OpIdReuse { .. }
                | Rejection::Equivocation { .. }
        )
    ));
}

/// Attack (c): a change whose `start_op` is near `u32::MAX`, after which local writes panic.
#[test]
fn start_op_near_u32_max_is_refused() {
    let mut world = World::new(false);
    let state = world.state().clone();
    let mut b = world.replica(MEMBER, 3);
    b.put_message(&user("bob", "globex"), "far future");
    b.doc.commit_with(CommitOptions::default().with_time(TIME));
    let mut expanded = b.doc.get_last_local_change().expect("change").decode();
    expanded.start_op = NonZeroU64::new(u64::from(u32::MAX) - 1).expect("non-zero");
    let attack = Change::from(expanded);

    // On a bare document: applying works, but a later local write panics or fails.
    let mut victim = world.owner.doc.fork();
    let broken = catch_unwind(AssertUnwindSafe(|| {
        victim.apply_changes(vec![attack.clone()])?;
        let collections = bucket::collections(&victim).expect("collections");
        for i in 0..4 {
            victim.put(&collections.reactions, format!("k{i}"), "v")?;
            victim.commit();
        }
        let bytes = victim.save();
        AutoCommit::load(&bytes).map(|_| ())
    }));
    assert!(!matches!(broken, Ok(Ok(()))), "automerge survived a start_op near u32::MAX");

    let signed = sign(&key_of(MEMBER), BUCKET, 2, &attack);
    let mut owner = world.owner;
    let before = owner.snapshot();
    assert_eq!(
        owner.receive(&signed, &state),
        Outcome::Rejected(Rejection::BadStartOp { expected: 5, got: u64::from(u32::MAX) - 1 })
    );
    assert_eq!(owner.snapshot(), before);
    // The owner's document still takes local writes.
    owner.put_message(&user("alice", "acme"), "still fine");
    owner.commit_local(2, &state);
}

/// A genesis with a far start_op, and a start_op that reuses the actor's own op ids.
#[test]
fn start_op_must_follow_the_dependencies_exactly() {
    let world = World::new(false);
    let state = world.state().clone();
    let fresh = Replica::new(OWNER, 9, BUCKET);
    let mut genesis = expand(&world.genesis);
    genesis.start_op = NonZeroU64::new(u64::from(u32::MAX)).expect("non-zero");
    let signed = sign_expanded(&key_of(OWNER), BUCKET, 2, genesis);
    assert_eq!(
        fresh.check(&signed, &state),
        Outcome::Rejected(Rejection::BadStartOp { expected: 1, got: u64::from(u32::MAX) })
    );
    // One op too early, one too late.
    let mut b = world.replica(MEMBER, 3);
    b.put_message(&user("bob", "globex"), "x");
    let honest = b.sign_local(2);
    for start in [4, 6] {
        let mut expanded = expand(&honest);
        expanded.start_op = NonZeroU64::new(start).expect("non-zero");
        let signed = sign_expanded(&key_of(MEMBER), BUCKET, 2, expanded);
        assert_eq!(
            world.owner.check(&signed, &state),
            Outcome::Rejected(Rejection::BadStartOp { expected: 5, got: start })
        );
    }
}

/// A pred or object that names an op of the same change that is not older than the op itself.
#[test]
fn references_into_the_future_are_refused() {
    let world = World::new(false);
    let state = world.state().clone();
    let mut b = world.replica(MEMBER, 3);
    let id = MessageId::new(HlcTime { ms: 1, counter: 0 }, &org(MEMBER), [0; 4]);
    let collections = b.collections();
    let record = MessageRecord {
        author: user("bob", "globex"),
        body: "x".into(),
        reply_to: None,
        attachments: Vec::new(),
    };
    bucket::put_message(&mut b.doc, &collections, &org(MEMBER), &id, &record).expect("put");
    let honest = b.sign_local(2);
    let mut expanded = expand(&honest);
    let own = expanded.actor_id.clone();
    expanded.operations[0].pred = vec![automerge::legacy::OpId(5, own)].into();
    let signed = sign_expanded(&key_of(MEMBER), BUCKET, 2, expanded);
    match world.owner.check(&signed, &state) {
        Outcome::Rejected(Rejection::BadOperation { index: 0, reason }) => {
            assert!(reason.contains("not older"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(world.owner.check(&honest, &state), Outcome::Accepted);
}

fn key_of(seed: u8) -> confab_protocol::OrgKey {
    key(seed)
}

#[test]
fn apply_reports_refusals_instead_of_panicking() {
    // `apply` runs automerge under catch_unwind; a change with missing deps is simply queued.
    let world = World::new(false);
    let mut doc = AutoCommit::new();
    let change = Change::from_bytes(world.genesis.change.clone()).expect("change");
    validate::apply(&mut doc, vec![change]).expect("apply genesis");
    assert_eq!(doc.get_heads().len(), 1);
}
