//! Every refusal of the validator, each asserting the exact variant.

use crate::support::*;
use automerge::legacy::{Key, ObjectId, OpId, OpType};
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{AutoCommit, ObjType, ScalarValue, ROOT};
use confab_protocol::bucket::{self, MessageRecord, UpdateOp, UpdateRecord};
use confab_protocol::control;
use confab_protocol::validate::actor_for;
use confab_protocol::{
    DocId, HlcTime, MessageId, PendingReason, Rejection, Signature, SignedChange,
};

/// The world, the member's replica, and one honest change by the member (not yet delivered).
fn setup() -> (World, Replica, SignedChange) {
    let world = World::new(true);
    let mut b = world.replica(MEMBER, 3);
    b.put_message(&user("bob", "globex"), "hello");
    let signed = b.sign_local(2);
    (world, b, signed)
}

fn rejected(outcome: Outcome) -> Rejection {
    match outcome {
        Outcome::Rejected(rejection) => rejection,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// Checks `signed` at the owner and asserts the owner's replica did not move.
fn check_at_owner(world: &mut World, signed: &SignedChange) -> Outcome {
    let state = world.state().clone();
    let before = world.owner.snapshot();
    let outcome = world.owner.receive(signed, &state);
    if outcome != Outcome::Accepted {
        assert_eq!(world.owner.snapshot(), before, "a refused change left a trace");
    }
    outcome
}

fn bad_operation(outcome: Outcome, needle: &str) {
    match rejected(outcome) {
        Rejection::BadOperation { reason, .. } => {
            assert!(reason.contains(needle), "{reason:?} lacks {needle:?}")
        }
        other => panic!("expected BadOperation({needle}), got {other:?}"),
    }
}

#[test]
fn honest_setup_is_accepted() {
    let (mut world, _, signed) = setup();
    assert_eq!(check_at_owner(&mut world, &signed), Outcome::Accepted);
    assert_eq!(check_at_owner(&mut world, &signed), Outcome::Duplicate);
}

#[test]
fn bit_flipped_change_bytes() {
    let (mut world, _, signed) = setup();
    // A bit inside the message body: still parses, but the hash (and so the signature) changes.
    let at = signed.change.windows(5).position(|w| w == b"hello").expect("body in the change");
    let mut body_flip = signed.clone();
    body_flip.change[at] ^= 0x20;
    assert!(matches!(rejected(check_at_owner(&mut world, &body_flip)), Rejection::Malformed(_)));
    // With the chunk checksum recomputed, as an attacker would, it is the signature that fails.
    let new_hash =
        automerge::Change::from_bytes(body_flip.change.clone()).expect("still parses").hash();
    body_flip.change[4..8].copy_from_slice(&new_hash.0[..4]);
    assert_eq!(check_at_owner(&mut world, &body_flip), Outcome::Rejected(Rejection::BadSignature));
    // A bit of the chunk checksum: the hash does not cover it, so only the checksum check can
    // tell (automerge's single-change parser does not).
    let mut checksum_flip = signed.clone();
    checksum_flip.change[5] ^= 1;
    assert!(matches!(
        rejected(check_at_owner(&mut world, &checksum_flip)),
        Rejection::Malformed(_)
    ));
    // The chunk type byte: a document or compressed chunk is not a change.
    let mut type_flip = signed.clone();
    type_flip.change[8] ^= 1;
    assert_eq!(check_at_owner(&mut world, &type_flip), Outcome::Rejected(Rejection::NotAChange));
    // Every other single-bit flip of the change is refused one way or another.
    for bit in 0..signed.change.len() * 8 {
        let mut flipped = signed.clone();
        flip(&mut flipped.change, bit);
        let outcome = world.owner.check(&flipped, &world.control.state);
        assert!(
            matches!(outcome, Outcome::Rejected(_) | Outcome::Pending(_)),
            "bit {bit}: {outcome:?}"
        );
    }
    assert_eq!(check_at_owner(&mut world, &signed), Outcome::Accepted);
}

#[test]
fn checksum_flip_of_a_known_change_is_not_a_duplicate() {
    let (mut world, _, signed) = setup();
    assert_eq!(check_at_owner(&mut world, &signed), Outcome::Accepted);
    let mut checksum_flip = signed.clone();
    checksum_flip.change[4] ^= 0x80;
    assert!(matches!(
        rejected(check_at_owner(&mut world, &checksum_flip)),
        Rejection::Malformed(_)
    ));
}

#[test]
fn bit_flipped_signature() {
    let (mut world, _, mut signed) = setup();
    signed.signature.0[10] ^= 4;
    assert_eq!(check_at_owner(&mut world, &signed), Outcome::Rejected(Rejection::BadSignature));
}

#[test]
fn re_signed_by_another_key() {
    let (mut world, _, signed) = setup();
    let change = automerge::Change::from_bytes(signed.change.clone()).expect("change");
    // A valid signature by another member organisation over the member's actor.
    let resigned = sign(&key(THIRD), BUCKET, 2, &change);
    assert_eq!(check_at_owner(&mut world, &resigned), Outcome::Rejected(Rejection::ActorNotSigner));
    // Another key's signature, but the member still named as signer.
    let mut forged = resigned.clone();
    forged.signer = org(MEMBER);
    assert_eq!(check_at_owner(&mut world, &forged), Outcome::Rejected(Rejection::BadSignature));
    // The owner's own key cannot sign for the member's actor either.
    let by_owner = sign(&key(OWNER), BUCKET, 2, &change);
    assert_eq!(check_at_owner(&mut world, &by_owner), Outcome::Rejected(Rejection::ActorNotSigner));
}

#[test]
fn actor_of_the_wrong_length_is_not_the_signers() {
    let (mut world, _, signed) = setup();
    let mut expanded = expand(&signed);
    let mut bytes = expanded.actor_id.to_bytes().to_vec();
    bytes.push(0);
    expanded.actor_id = automerge::ActorId::from(bytes);
    let crafted = sign_expanded(&key(MEMBER), BUCKET, 2, expanded);
    assert_eq!(check_at_owner(&mut world, &crafted), Outcome::Rejected(Rejection::ActorNotSigner));
}

#[test]
fn foreign_namespace() {
    let mut world = World::new(true);
    // A replica of the member that has only the genesis.
    let mut b = world.replica(MEMBER, 4);
    let collections = b.collections();
    let owner = org(OWNER);
    let id = MessageId::new(HlcTime { ms: 5, counter: 0 }, &owner, [0; 4]);
    let record = MessageRecord {
        author: user("alice", "acme"),
        body: "forged".into(),
        reply_to: None,
        attachments: Vec::new(),
    };
    // The member writes a key in the owner's namespace (with the owner's message id).
    bucket::put_message(&mut b.doc, &collections, &owner, &id, &record).expect("put");
    let signed = b.sign_local(2);
    assert_eq!(
        check_at_owner(&mut world, &signed),
        Outcome::Rejected(Rejection::ForeignNamespace { index: 0, key: format!("{owner}:{id}") })
    );
    // A key with no namespace at all.
    let mut c = world.replica(THIRD, 5);
    let collections = c.collections();
    c.doc.put(&collections.messages, "no-namespace", "x").expect("put");
    let signed = c.sign_local(2);
    assert_eq!(
        check_at_owner(&mut world, &signed),
        Outcome::Rejected(Rejection::ForeignNamespace { index: 0, key: "no-namespace".into() })
    );
}

#[test]
fn foreign_pred() {
    let (mut world, b, signed) = setup();
    let genesis_actor = expand(&world.genesis).actor_id;
    let mut expanded = expand(&signed);
    // Claim to overwrite one of the owner's operations (the genesis's `msg` map).
    expanded.operations[0].pred = vec![OpId(2, genesis_actor)].into();
    let crafted = sign_expanded(&b.key(), BUCKET, 2, expanded);
    assert_eq!(
        check_at_owner(&mut world, &crafted),
        Outcome::Rejected(Rejection::ForeignPred { index: 0 })
    );
}

#[test]
fn root_write_after_genesis_even_by_the_owner() {
    let mut world = World::new(false);
    let mut b = world.replica(MEMBER, 4);
    b.doc.put(ROOT, "v", "confab-bucket/2").expect("put");
    let signed = b.sign_local(2);
    assert_eq!(check_at_owner(&mut world, &signed), Outcome::Rejected(Rejection::RootWrite));
    let mut owner = Replica::new(OWNER, 6, BUCKET);
    owner.sync_from(&[world.genesis.clone()], &world.control.state);
    owner.doc.put(ROOT, "topic", "x").expect("put");
    let signed = owner.sign_local(2);
    assert_eq!(check_at_owner(&mut world, &signed), Outcome::Rejected(Rejection::RootWrite));
}

#[test]
fn second_genesis() {
    let mut world = World::new(false);
    // The owner (another process, fresh actor) writes a genesis again.
    let mut again = Replica::new(OWNER, 7, BUCKET);
    bucket::genesis(&mut again.doc).expect("genesis");
    let signed = again.sign_local(2);
    assert_eq!(check_at_owner(&mut world, &signed), Outcome::Rejected(Rejection::BadGenesis));
}

#[test]
fn second_control_genesis() {
    let mut world = World::new(false);
    let mut again = Replica::new(OWNER, 8, CONTROL);
    let owner = org(OWNER);
    let info = control::ChatInfo {
        kind: control::ChatKind::Channel,
        visibility: control::Visibility::Public,
        created_ms: 1,
        owner,
    };
    let alice = user("alice", "acme");
    let record = control::MemberRecord { role: control::Role::Owner, org: owner };
    control::genesis(&mut again.doc, &info, "other", "", (&alice, &record)).expect("genesis");
    let signed = again.sign_local(2);
    let state = world.state().clone();
    let before = world.control.replica.snapshot();
    assert_eq!(
        world.control.replica.receive(&signed, &state),
        Outcome::Rejected(Rejection::BadGenesis)
    );
    assert_eq!(world.control.replica.snapshot(), before);
}

#[test]
fn non_owner_genesis() {
    let world = World::new(false);
    let mut b = Replica::new(MEMBER, 3, BUCKET);
    bucket::genesis(&mut b.doc).expect("genesis");
    let signed = b.sign_local(2);
    let fresh = Replica::new(OWNER, 9, BUCKET);
    assert_eq!(fresh.check(&signed, world.state()), Outcome::Rejected(Rejection::BadGenesis));
    // And in the control document, a non-owner is refused outright.
    let mut c = Replica::new(MEMBER, 3, CONTROL);
    control::set_name(&mut c.doc, "mine").expect("put");
    let signed = c.sign_local(2);
    let fresh = Replica::new(OWNER, 9, CONTROL);
    assert_eq!(fresh.check(&signed, world.state()), Outcome::Rejected(Rejection::NotOwner));
    assert_eq!(
        world.control.replica.check(&signed, world.state()),
        Outcome::Rejected(Rejection::NotOwner)
    );
}

#[test]
fn make_text_increment_and_insert() {
    let (mut world, _, signed) = setup();
    let b_key = key(MEMBER);
    let mut b = world.replica(MEMBER, 4);
    let collections = b.collections();
    let key_text = format!("{}:x", org(MEMBER));
    b.doc.put_object(&collections.messages, key_text.as_str(), ObjType::Text).expect("make");
    let text = b.sign_local(2);
    bad_operation(check_at_owner(&mut world, &text), "action not allowed");

    // A counter is not a string either.
    let mut c = world.replica(MEMBER, 5);
    let collections = c.collections();
    c.doc.put(&collections.reactions, key_text.as_str(), ScalarValue::counter(1)).expect("put");
    bad_operation(check_at_owner(&mut world, &c.sign_local(2)), "action not allowed");

    // Increment, crafted from an honest put.
    let mut expanded = expand(&signed);
    expanded.operations[0].action = OpType::Increment(1);
    let crafted = sign_expanded(&b_key, BUCKET, 2, expanded);
    bad_operation(check_at_owner(&mut world, &crafted), "action not allowed");

    // An insert into a sequence, crafted.
    let mut expanded = expand(&signed);
    expanded.operations[0].insert = true;
    expanded.operations[0].key = Key::Seq(automerge::legacy::ElementId::Head);
    let crafted = sign_expanded(&b_key, BUCKET, 2, expanded);
    bad_operation(check_at_owner(&mut world, &crafted), "inserts into a sequence");

    // A nested object under a collection.
    let mut expanded = expand(&signed);
    let genesis_actor = expand(&world.genesis).actor_id;
    expanded.operations[0].obj = ObjectId::Id(OpId(1, genesis_actor));
    let crafted = sign_expanded(&b_key, BUCKET, 2, expanded);
    bad_operation(check_at_owner(&mut world, &crafted), "not a bucket collection");
}

#[test]
fn compressed_change_and_document_chunks() {
    let (mut world, mut b, _) = setup();
    b.put_message(&user("bob", "globex"), &"a long and repetitive body ".repeat(200));
    b.doc.commit_with(CommitOptions::default().with_time(TIME));
    let mut change = b.doc.get_last_local_change().expect("change");
    let compressed = change.bytes().to_vec();
    assert_eq!(compressed[8], 2, "automerge compressed the large change");
    let signed = SignedChange::sign(&b.key(), BUCKET, 2, compressed, &change.hash().0);
    assert_eq!(check_at_owner(&mut world, &signed), Outcome::Rejected(Rejection::NotAChange));

    let document = b.doc.save();
    assert_eq!(document[8], 0);
    let signed = SignedChange::sign(&b.key(), BUCKET, 2, document, &[0; 32]);
    assert_eq!(check_at_owner(&mut world, &signed), Outcome::Rejected(Rejection::NotAChange));
    let signed = SignedChange::sign(&b.key(), BUCKET, 2, b"short".to_vec(), &[0; 32]);
    assert_eq!(check_at_owner(&mut world, &signed), Outcome::Rejected(Rejection::NotAChange));
    let signed = SignedChange::sign(&b.key(), BUCKET, 2, Vec::new(), &[0; 32]);
    assert_eq!(check_at_owner(&mut world, &signed), Outcome::Rejected(Rejection::NotAChange));
}

#[test]
fn trailing_bytes() {
    let (mut world, b, signed) = setup();
    let change = automerge::Change::from_bytes(signed.change.clone()).expect("change");
    let mut bytes = signed.change.clone();
    bytes.push(0);
    let crafted = SignedChange::sign(&b.key(), BUCKET, 2, bytes.clone(), &change.hash().0);
    assert!(matches!(rejected(check_at_owner(&mut world, &crafted)), Rejection::Malformed(_)));
    // Two changes glued together are not one change either.
    bytes.pop();
    bytes.extend_from_slice(&world.genesis.change);
    let crafted = SignedChange::sign(&b.key(), BUCKET, 2, bytes, &change.hash().0);
    assert!(matches!(rejected(check_at_owner(&mut world, &crafted)), Rejection::Malformed(_)));
}

#[test]
fn commit_message_and_extra_bytes() {
    let (mut world, _, signed) = setup();
    let mut b = world.replica(MEMBER, 4);
    b.put_message(&user("bob", "globex"), "with a message");
    b.doc.commit_with(CommitOptions::default().with_time(TIME).with_message("hidden payload"));
    let change = b.doc.get_last_local_change().expect("change");
    let with_message = sign(&b.key(), BUCKET, 2, &change);
    assert_eq!(check_at_owner(&mut world, &with_message), Outcome::Rejected(Rejection::ExtraBytes));

    let mut expanded = expand(&signed);
    expanded.extra_bytes = vec![1, 2, 3];
    let crafted = sign_expanded(&key(MEMBER), BUCKET, 2, expanded);
    assert_eq!(check_at_owner(&mut world, &crafted), Outcome::Rejected(Rejection::ExtraBytes));
}

#[test]
fn oversize_change() {
    let (mut world, _, _) = setup();
    let mut b = world.replica(MEMBER, 4);
    let bob = user("bob", "globex");
    // Three bodies of 100,000 four-byte characters: each within limits, together over 1 MiB.
    for _ in 0..3 {
        b.put_message(&bob, &"𝄞".repeat(100_000));
    }
    let signed = b.sign_local(2);
    let len = signed.change.len();
    assert!(len > 1024 * 1024);
    assert_eq!(
        check_at_owner(&mut world, &signed),
        Outcome::Rejected(Rejection::TooLarge { len, max: 1024 * 1024 })
    );
}

#[test]
fn too_many_operations() {
    let (mut world, _, _) = setup();
    let mut b = world.replica(MEMBER, 4);
    let collections = b.collections();
    for i in 0..1025 {
        let key = format!("{}:r{i}", org(MEMBER));
        b.doc.put(&collections.reactions, key.as_str(), "+").expect("put");
    }
    let signed = b.sign_local(2);
    assert_eq!(
        check_at_owner(&mut world, &signed),
        Outcome::Rejected(Rejection::Limit { what: "operations", count: 1025, max: 1024 })
    );
}

#[test]
fn wrong_document() {
    let (mut world, b, signed) = setup();
    let change = automerge::Change::from_bytes(signed.change.clone()).expect("change");
    let other = DocId::bucket(CHAT, 2);
    let crafted = sign(&b.key(), other, 2, &change);
    assert_eq!(
        check_at_owner(&mut world, &crafted),
        Outcome::Rejected(Rejection::WrongDocument {
            expected: BUCKET.to_string(),
            got: other.to_string()
        })
    );
    let crafted = sign(&b.key(), CONTROL, 2, &change);
    assert!(matches!(
        rejected(check_at_owner(&mut world, &crafted)),
        Rejection::WrongDocument { .. }
    ));
}

#[test]
fn not_a_member_at_the_epoch() {
    let (mut world, b, signed) = setup();
    let change = automerge::Change::from_bytes(signed.change.clone()).expect("change");
    // The member joined at epoch 2, so epoch 1 is before its time.
    let early = sign(&b.key(), BUCKET, 1, &change);
    assert_eq!(
        check_at_owner(&mut world, &early),
        Outcome::Rejected(Rejection::NotMember { epoch: 1 })
    );
    let zero = sign(&b.key(), BUCKET, 0, &change);
    assert_eq!(
        check_at_owner(&mut world, &zero),
        Outcome::Rejected(Rejection::NotMember { epoch: 0 })
    );
    // An organisation that never was a member.
    let mut outsider = world.replica(OUTSIDER, 1);
    outsider.put_message(&user("eve", "evil"), "let me in");
    let signed = outsider.sign_local(2);
    assert_eq!(
        check_at_owner(&mut world, &signed),
        Outcome::Rejected(Rejection::NotMember { epoch: 2 })
    );
}

#[test]
fn removed_member_is_refused_at_later_epochs() {
    let mut world = World::new(false);
    let state_before = world.state().clone();
    let mut b = world.replica(MEMBER, 3);
    // Remove the member from epoch 3 on.
    {
        let doc = &mut world.control.replica.doc;
        control::set_org_ranges(doc, &org(MEMBER), &[(2, Some(3))]).expect("ranges");
        control::set_epoch(doc, 3).expect("epoch");
    }
    let signed = world.control.replica.commit_local(3, &state_before);
    world.control.log.push(signed);
    world.control.state = control::read(&world.control.replica.doc).expect("read");
    b.put_message(&user("bob", "globex"), "still here?");
    let late = b.sign_local(3);
    assert_eq!(
        check_at_owner(&mut world, &late),
        Outcome::Rejected(Rejection::NotMember { epoch: 3 })
    );
}

#[test]
fn epoch_older_than_the_dependencies() {
    let mut world = World::new(false);
    world.control.bump_epoch(3);
    let state = world.state().clone();
    let mut b = world.replica(MEMBER, 3);
    // The owner writes at epoch 3; the member receives it and then claims epoch 2.
    world.owner.put_message(&user("alice", "acme"), "at epoch 3");
    let at3 = world.owner.commit_local(3, &state);
    assert_eq!(b.receive(&at3, &state), Outcome::Accepted);
    b.put_message(&user("bob", "globex"), "claims an old epoch");
    let stale = b.sign_local(2);
    assert_eq!(
        check_at_owner(&mut world, &stale),
        Outcome::Rejected(Rejection::StaleEpoch { epoch: 2, deps_epoch: 3 })
    );
}

#[test]
fn unknown_epoch_is_pending() {
    let (mut world, b, signed) = setup();
    let change = automerge::Change::from_bytes(signed.change.clone()).expect("change");
    let future = sign(&b.key(), BUCKET, 7, &change);
    assert_eq!(
        check_at_owner(&mut world, &future),
        Outcome::Pending(PendingReason::UnknownEpoch(7))
    );
}

#[test]
fn seq_gap_is_pending() {
    let (mut world, mut b, first) = setup();
    let state = world.state().clone();
    match b.validator.check_own(&first, &state) {
        Ok(confab_protocol::Verdict::Accept(checked)) => b.validator.commit(&checked),
        other => panic!("{other:?}"),
    }
    b.put_message(&user("bob", "globex"), "second");
    let second = b.sign_local(2);
    assert_eq!(
        check_at_owner(&mut world, &second),
        Outcome::Pending(PendingReason::SeqGap { expected: 1, got: 2 })
    );
    assert_eq!(check_at_owner(&mut world, &first), Outcome::Accepted);
    assert_eq!(check_at_owner(&mut world, &second), Outcome::Accepted);
}

#[test]
fn equivocation() {
    let (mut world, b, first) = setup();
    assert_eq!(check_at_owner(&mut world, &first), Outcome::Accepted);
    // The same actor, having lost its state, writes another change at the same seq.
    let mut clone = world.replica(MEMBER, 3);
    assert_eq!(clone.doc.get_actor(), b.doc.get_actor());
    clone.put_message(&user("bob", "globex"), "a different history");
    let second = clone.sign_local(2);
    assert_ne!(second.change, first.change);
    assert_eq!(
        check_at_owner(&mut world, &second),
        Outcome::Rejected(Rejection::Equivocation { seq: 1 })
    );
}

#[test]
fn missing_dependencies_are_pending() {
    let mut world = World::new(false);
    let state = world.state().clone();
    let mut b = world.replica(MEMBER, 3);
    let mut c = world.replica(MEMBER, 4);
    c.put_message(&user("bob", "globex"), "from another process");
    let unseen = c.commit_local(2, &state);
    assert_eq!(b.receive(&unseen, &state), Outcome::Accepted);
    b.put_message(&user("bob", "globex"), "depends on it");
    let dependent = b.sign_local(2);
    let hash = automerge::Change::from_bytes(unseen.change.clone()).expect("change").hash();
    assert_eq!(
        check_at_owner(&mut world, &dependent),
        Outcome::Pending(PendingReason::MissingDeps(vec![hash]))
    );
    assert_eq!(check_at_owner(&mut world, &unseen), Outcome::Accepted);
    assert_eq!(check_at_owner(&mut world, &dependent), Outcome::Accepted);
}

#[test]
fn duplicate() {
    let (mut world, _, signed) = setup();
    assert_eq!(check_at_owner(&mut world, &signed), Outcome::Accepted);
    assert_eq!(check_at_owner(&mut world, &signed), Outcome::Duplicate);
    let genesis = world.genesis.clone();
    assert_eq!(check_at_owner(&mut world, &genesis), Outcome::Duplicate);
    // A duplicate with a broken signature is not a duplicate but a forgery.
    let mut forged = signed.clone();
    forged.signature = Signature([0; 64]);
    assert_eq!(check_at_owner(&mut world, &forged), Outcome::Rejected(Rejection::BadSignature));
}

#[test]
fn message_id_not_minted_by_the_signer() {
    let (mut world, _, _) = setup();
    let mut b = world.replica(MEMBER, 4);
    let collections = b.collections();
    let id = MessageId::new(HlcTime { ms: 5, counter: 0 }, &org(OWNER), [0; 4]);
    let record = MessageRecord {
        author: user("bob", "globex"),
        body: "hi".into(),
        reply_to: None,
        attachments: Vec::new(),
    };
    let key = bucket::namespaced_key(&org(MEMBER), &id.to_string());
    b.doc
        .put(&collections.messages, key.as_str(), serde_json::to_string(&record).expect("json"))
        .expect("put");
    bad_operation(check_at_owner(&mut world, &b.sign_local(2)), "signer's tag");
}

#[test]
fn body_over_the_limit() {
    let (mut world, _, _) = setup();
    let mut b = world.replica(MEMBER, 4);
    b.put_message(&user("bob", "globex"), &"x".repeat(100_001));
    assert_eq!(
        check_at_owner(&mut world, &b.sign_local(2)),
        Outcome::Rejected(Rejection::BodyTooLong { index: 0, chars: 100_001, max: 100_000 })
    );
    let mut b = world.replica(MEMBER, 5);
    let id = b.put_message(&user("bob", "globex"), "short");
    b.put_update(&user("bob", "globex"), id, UpdateOp::Edit { body: "é".repeat(100_001) });
    assert_eq!(
        check_at_owner(&mut world, &b.sign_local(2)),
        Outcome::Rejected(Rejection::BodyTooLong { index: 1, chars: 100_001, max: 100_000 })
    );
    let mut b = world.replica(MEMBER, 6);
    b.put_message(&user("bob", "globex"), "");
    bad_operation(check_at_owner(&mut world, &b.sign_local(2)), "empty");
}

#[test]
fn update_whose_target_is_not_its_key() {
    let (mut world, _, _) = setup();
    let mut b = world.replica(MEMBER, 4);
    let collections = b.collections();
    let key_id = MessageId::new(HlcTime { ms: 5, counter: 0 }, &org(OWNER), [0; 4]);
    let other = MessageId::new(HlcTime { ms: 6, counter: 0 }, &org(OWNER), [0; 4]);
    let record = UpdateRecord {
        target: other,
        by: user("bob", "globex"),
        at: HlcTime::default(),
        op: UpdateOp::Delete,
    };
    let key = bucket::namespaced_key(&org(MEMBER), &key_id.to_string());
    b.doc
        .put(&collections.updates, key.as_str(), serde_json::to_string(&record).expect("json"))
        .expect("put");
    bad_operation(check_at_owner(&mut world, &b.sign_local(2)), "another message");
}

#[test]
fn records_that_do_not_parse() {
    let (mut world, _, _) = setup();
    let cases = [
        (0, r#"{"author":"bob@globex","body":"x","extra":1}"#, "does not parse"),
        (0, r#"{"author":"Bob@globex","body":"x"}"#, "does not parse"),
        (
            1,
            r#"{"target":"nope","by":"bob@globex","at":{"ms":1,"counter":0},"op":"delete"}"#,
            "does not parse",
        ),
    ];
    for (suffix, (collection, json, needle)) in (10..).zip(cases) {
        let mut b = world.replica(MEMBER, suffix);
        let collections = b.collections();
        let obj = if collection == 0 { collections.messages } else { collections.updates };
        let id = MessageId::new(HlcTime { ms: 5, counter: 0 }, &org(MEMBER), [0; 4]);
        let key = bucket::namespaced_key(&org(MEMBER), &id.to_string());
        b.doc.put(&obj, key.as_str(), json).expect("put");
        bad_operation(check_at_owner(&mut world, &b.sign_local(2)), needle);
    }
}

#[test]
fn deletes_only_in_reactions() {
    let (mut world, _, _) = setup();
    let state = world.state().clone();
    let mut b = world.replica(MEMBER, 4);
    let id = b.put_message(&user("bob", "globex"), "to delete");
    let first = b.commit_local(2, &state);
    assert_eq!(check_at_owner(&mut world, &first), Outcome::Accepted);
    let collections = b.collections();
    b.doc
        .delete(
            &collections.messages,
            bucket::namespaced_key(&org(MEMBER), &id.to_string()).as_str(),
        )
        .expect("delete");
    bad_operation(check_at_owner(&mut world, &b.sign_local(2)), "action not allowed");
    // A reaction can be put and deleted by its organisation.
    let mut c = world.replica(MEMBER, 5);
    let collections = c.collections();
    let key = format!("{}:{id}:+1:bob@globex", org(MEMBER));
    c.doc.put(&collections.reactions, key.as_str(), "1").expect("put");
    let put = c.commit_local(2, &state);
    assert_eq!(check_at_owner(&mut world, &put), Outcome::Accepted);
    c.doc.delete(&collections.reactions, key.as_str()).expect("delete");
    let delete = c.commit_local(2, &state);
    assert_eq!(check_at_owner(&mut world, &delete), Outcome::Accepted);
}

#[test]
fn reactions_need_a_well_formed_key_and_value() {
    let (mut world, _, _) = setup();
    let state = world.state().clone();
    let mut b = world.replica(MEMBER, 6);
    let id = b.put_message(&user("bob", "globex"), "react to me");
    let first = b.commit_local(2, &state);
    assert_eq!(check_at_owner(&mut world, &first), Outcome::Accepted);
    let collections = b.collections();
    // The writer's own helper produces an accepted change, on and off.
    for on in [true, false] {
        bucket::put_reaction(
            &mut b.doc,
            &collections,
            &org(MEMBER),
            &id,
            "👍",
            &user("bob", "globex"),
            on,
        )
        .expect("put");
        let signed = b.commit_local(2, &state);
        assert_eq!(check_at_owner(&mut world, &signed), Outcome::Accepted);
    }
    let bad_keys = [
        format!("{}:{id}:👍", org(MEMBER)),               // no user
        format!("{}:{id}::bob@globex", org(MEMBER)),      // empty emoji
        format!("{}:notanid:👍:bob@globex", org(MEMBER)), // bad message id
        format!("{}:{id}:a b:bob@globex", org(MEMBER)),   // whitespace in the emoji
        format!("{}:{id}:{}:bob@globex", org(MEMBER), "x".repeat(33)),
    ];
    for (n, key) in bad_keys.iter().enumerate() {
        let mut c = world.replica(MEMBER, 20 + n as u8);
        let collections = c.collections();
        c.doc.put(&collections.reactions, key.as_str(), "1").expect("put");
        bad_operation(check_at_owner(&mut world, &c.sign_local(2)), "reaction key");
    }
    let mut c = world.replica(MEMBER, 30);
    let collections = c.collections();
    let key = format!("{}:{id}:👍:bob@globex", org(MEMBER));
    c.doc.put(&collections.reactions, key.as_str(), "yes").expect("put");
    bad_operation(check_at_owner(&mut world, &c.sign_local(2)), "reaction's value");
}

#[test]
fn control_document_allows_only_maps_of_the_owner() {
    let world = World::new(false);
    let mut owner = Replica::new(OWNER, 11, CONTROL);
    owner.sync_from(&world.control.log, world.state());
    owner.doc.put_object(ROOT, "list", ObjType::List).expect("make");
    let signed = owner.sign_local(2);
    bad_operation(
        world.control.replica.check(&signed, world.state()),
        "not allowed in the control document",
    );
    let mut owner = Replica::new(OWNER, 12, CONTROL);
    owner.sync_from(&world.control.log, world.state());
    owner.doc.put_object(ROOT, "text", ObjType::Text).expect("make");
    let signed = owner.sign_local(2);
    bad_operation(
        world.control.replica.check(&signed, world.state()),
        "not allowed in the control document",
    );
}

#[test]
fn a_fresh_validator_rejects_writes_before_genesis() {
    let world = World::new(false);
    let fresh = Replica::new(OWNER, 13, BUCKET);
    // Any bucket change with no dependencies that is not the owner's exact genesis.
    let mut doc = AutoCommit::new().with_actor(actor_for(&org(OWNER), [14; 16]));
    doc.put(ROOT, "v", "confab-bucket/1").expect("put");
    doc.put_object(ROOT, "msg", ObjType::Map).expect("make");
    doc.commit_with(CommitOptions::default().with_time(TIME));
    let signed = sign(&key(OWNER), BUCKET, 2, &doc.get_last_local_change().expect("change"));
    assert_eq!(fresh.check(&signed, world.state()), Outcome::Rejected(Rejection::BadGenesis));
}

#[test]
fn preverified_under_looser_limits_is_size_checked_again() {
    let (world, _, signed) = setup();
    let loose = confab_protocol::Limits {
        change_bytes_max: usize::MAX,
        ..confab_protocol::Limits::default()
    };
    let strict = confab_protocol::Limits {
        change_bytes_max: signed.change.len() - 1,
        ..confab_protocol::Limits::default()
    };
    let change = confab_protocol::Preverified::verify(signed, &loose).expect("verifies");
    let validator = confab_protocol::DocValidator::new(BUCKET, org(OWNER), strict);
    assert!(matches!(
        validator.check_preverified(&change, world.state()),
        Err(Rejection::TooLarge { .. })
    ));
}

#[test]
fn preverified_under_looser_limits_is_op_counted_again() {
    let (world, _, signed) = setup();
    let loose = confab_protocol::Limits {
        ops_per_change_max: usize::MAX,
        ..confab_protocol::Limits::default()
    };
    let strict =
        confab_protocol::Limits { ops_per_change_max: 0, ..confab_protocol::Limits::default() };
    let change = confab_protocol::Preverified::verify(signed, &loose).expect("verifies");
    let validator = confab_protocol::DocValidator::new(BUCKET, org(OWNER), strict);
    assert!(matches!(
        validator.check_preverified(&change, world.state()),
        Err(Rejection::Limit { what: "operations", .. })
    ));
}
