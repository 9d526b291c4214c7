//! Honest organisations writing, branching, merging and replicating through the validator.

use crate::support::*;
use automerge::ReadDoc;
use confab_protocol::bucket::{self, UpdateOp};
use confab_protocol::control;
use confab_protocol::validate::{Membership, MembershipAnswer};

#[test]
fn control_document_replicates_to_a_member() {
    let control = Control::new(true);
    let mut copy = Replica::new(MEMBER, 9, CONTROL);
    copy.sync_from(&control.log, &EpochOnly(2));
    let state = control::read(&copy.doc).expect("read");
    assert_eq!(state, control.state);
    assert_eq!(state.epoch, 2);
    assert_eq!(state.org_at_epoch(&org(MEMBER), 2), MembershipAnswer::Member);
    assert_eq!(state.org_at_epoch(&org(MEMBER), 1), MembershipAnswer::NotMember);
    assert_eq!(state.org_at_epoch(&org(OUTSIDER), 2), MembershipAnswer::NotMember);
    assert_eq!(state.org_at_epoch(&org(MEMBER), 3), MembershipAnswer::UnknownEpoch);
    assert_eq!(state.org_at_epoch(&org(MEMBER), 0), MembershipAnswer::NotMember);
}

#[test]
fn two_organisations_write_concurrently_and_converge() {
    let world = World::new(false);
    let state = world.state().clone();
    let mut owner = world.owner;
    let mut member = {
        let mut replica = Replica::new(MEMBER, 3, BUCKET);
        assert_eq!(replica.receive(&world.genesis, &state), Outcome::Accepted);
        replica
    };
    let alice = user("alice", "acme");
    let bob = user("bob", "globex");

    // Both write on concurrent branches over several changes.
    let a1 = owner.put_message(&alice, "hello from acme");
    owner.commit_local(2, &state);
    let a2 = owner.put_message(&alice, "second");
    owner.put_message(&alice, "third, same change");
    owner.commit_local(2, &state);
    let b1 = member.put_message(&bob, "hello from globex");
    member.commit_local(2, &state);
    member.put_update(&bob, b1, UpdateOp::Edit { body: "hello from globex (edited)".into() });
    member.commit_local(2, &state);

    // Merge both ways; then each writes on top of the merge, including updates of the other's
    // messages (moderation is decided by the views, not here).
    member.sync_from(&owner.log.clone(), &state);
    owner.sync_from(&member.log.clone(), &state);
    assert_eq!(owner.heads(), member.heads());
    member.put_update(&bob, a1, UpdateOp::Delete);
    member.put_message(&bob, "after the merge");
    member.commit_local(2, &state);
    owner.put_update(&alice, a2, UpdateOp::Edit { body: "second (edited)".into() });
    owner.commit_local(2, &state);
    owner.put_update(&alice, a2, UpdateOp::Delete);
    owner.commit_local(2, &state);

    member.sync_from(&owner.log.clone(), &state);
    owner.sync_from(&member.log.clone(), &state);
    assert_eq!(owner.heads(), member.heads());
    assert_eq!(owner.content(), member.content());
    let (messages, updates) = owner.content();
    assert_eq!(messages.len(), 5);
    assert_eq!(updates.len(), 3, "one update per organisation and target: {updates:?}");
    assert_eq!(owner.validator.len(), member.validator.len());
    assert_eq!(owner.validator.len(), 1 + 4 + 3);

    // A third replica catches up from either log and ends identical.
    let mut late = Replica::new(OWNER, 7, BUCKET);
    late.sync_from(&member.log.clone(), &state);
    assert_eq!(late.heads(), owner.heads());
    assert_eq!(late.content(), owner.content());
}

#[test]
fn three_organisations_and_restarted_actors_converge() {
    let world = World::new(true);
    let state = world.state().clone();
    let mut b = world.replica(MEMBER, 3);
    let mut c = world.replica(THIRD, 4);
    let mut a = world.owner;
    let (alice, bob, carol) =
        (user("alice", "acme"), user("bob", "globex"), user("carol", "initech"));
    for round in 0..3 {
        a.put_message(&alice, &format!("a{round}"));
        a.commit_local(2, &state);
        b.put_message(&bob, &format!("b{round}"));
        b.commit_local(2, &state);
        c.put_message(&carol, &format!("c{round}"));
        c.commit_local(2, &state);
        // A partial exchange each round: a ← b, b ← c, c ← a.
        a.sync_from(&b.log.clone(), &state);
        b.sync_from(&c.log.clone(), &state);
        c.sync_from(&a.log.clone(), &state);
    }
    // b "restarts": a fresh actor of the same organisation, loaded from its saved document.
    let saved = b.doc.save();
    let mut b2 = Replica::new(MEMBER, 5, BUCKET);
    b2.sync_from(&b.log.clone(), &state);
    assert_eq!(automerge::AutoCommit::load(&saved).expect("load").get_heads(), b2.heads());
    b2.put_message(&bob, "after restart");
    b2.commit_local(2, &state);
    for r in [&mut a, &mut c] {
        r.sync_from(&b2.log.clone(), &state);
    }
    for r in [&mut a, &mut b2] {
        r.sync_from(&c.log.clone(), &state);
    }
    c.sync_from(&a.log.clone(), &state);
    assert_eq!(a.heads(), b2.heads());
    assert_eq!(a.heads(), c.heads());
    assert_eq!(a.content(), c.content());
    assert_eq!(a.content().0.len(), 10);
    assert_eq!(bucket::messages(&c.doc).expect("messages").len(), 10);
    // Every replica's document re-loads from its save (automerge accepts what we stored).
    for r in [&mut a, &mut b2, &mut c] {
        let bytes = r.doc.save();
        let loaded = automerge::AutoCommit::load(&bytes).expect("reload");
        assert_eq!(loaded.length(bucket::collections(&loaded).expect("collections").messages), 10);
    }
}

#[test]
fn a_member_added_later_writes_at_its_epoch() {
    let mut world = World::new(false);
    world.control.add_org(THIRD, 3, user("carol", "initech"));
    let state = world.state().clone();
    let mut c = world.replica(THIRD, 4);
    c.put_message(&user("carol", "initech"), "hi, I am new");
    let signed = c.sign_local(3);
    assert_eq!(world.owner.receive(&signed, &state), Outcome::Accepted);
}

#[test]
fn message_body_of_exactly_the_limit_is_accepted() {
    let world = World::new(false);
    let state = world.state().clone();
    let mut b = world.replica(MEMBER, 3);
    let mut owner = world.owner;
    b.put_message(&user("bob", "globex"), &"€".repeat(100_000));
    let signed = b.sign_local(2);
    assert_eq!(owner.receive(&signed, &state), Outcome::Accepted);
}
