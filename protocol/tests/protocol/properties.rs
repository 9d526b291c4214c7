//! Property tests against a simple model: honest histories of random operations by two or three
//! organisations always validate and converge; tampered, re-signed, foreign-namespace,
//! out-of-sequence and wrong-epoch variants of their changes never do.

use crate::support::*;
use confab_protocol::bucket::UpdateOp;
use confab_protocol::{MessageId, SignedChange, Verdict};
use proptest::prelude::*;
use std::num::NonZeroU64;

/// One step of the model.
#[derive(Clone, Debug)]
enum Step {
    /// Replica `.0` posts `.1` messages in one change.
    Post(usize, usize),
    /// Replica `.0` edits (or deletes) the message it knows at index `.1` (modulo).
    Edit(usize, usize, bool),
    /// Replica `.0` receives everything replica `.1` has.
    Sync(usize, usize),
}

fn step(replicas: usize) -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..replicas, 1..3usize).prop_map(|(r, n)| Step::Post(r, n)),
        (0..replicas, any::<usize>(), any::<bool>()).prop_map(|(r, i, d)| Step::Edit(r, i, d)),
        (0..replicas, 0..replicas).prop_map(|(r, from)| Step::Sync(r, from)),
    ]
}

fn history() -> impl Strategy<Value = (usize, Vec<Step>)> {
    (2..=3usize).prop_flat_map(|n| (Just(n), proptest::collection::vec(step(n), 1..14)))
}

const SEEDS: [u8; 3] = [OWNER, MEMBER, THIRD];

/// Runs the steps; every local change passes `check_own`, every delivery is accepted or a
/// duplicate (asserted inside `Replica`). Returns the world, replicas and all changes made.
fn run(n: usize, steps: &[Step]) -> (World, Vec<Replica>, Vec<SignedChange>) {
    let world = World::new(true);
    let state = world.state().clone();
    let mut replicas: Vec<Replica> =
        (0..n).map(|i| world.replica(SEEDS[i], 20 + i as u8)).collect();
    let mut made = Vec::new();
    for step in steps {
        match *step {
            Step::Post(r, count) => {
                let author = user("someone", "org");
                for i in 0..count {
                    replicas[r].put_message(&author, &format!("message {i}"));
                }
                made.push(replicas[r].commit_local(2, &state));
            }
            Step::Edit(r, index, delete) => {
                let known: Vec<MessageId> =
                    replicas[r].content().0.iter().map(|(_, id, _)| *id).collect();
                if known.is_empty() {
                    continue;
                }
                let target = known[index % known.len()];
                let op = if delete {
                    UpdateOp::Delete
                } else {
                    UpdateOp::Edit { body: format!("edited {index}") }
                };
                replicas[r].put_update(&user("someone", "org"), target, op);
                made.push(replicas[r].commit_local(2, &state));
            }
            Step::Sync(r, from) if r != from => {
                let log = replicas[from].log.clone();
                replicas[r].sync_from(&log, &state);
            }
            Step::Sync(..) => {}
        }
    }
    (world, replicas, made)
}

fn never_accepted(
    replica: &Replica,
    world: &World,
    signed: &SignedChange,
) -> Result<(), TestCaseError> {
    let verdict = replica.validator.check(signed, world.state());
    prop_assert!(
        !matches!(verdict, Ok(Verdict::Accept(_))),
        "accepted a tampered change: {signed:?}"
    );
    Ok(())
}

/// A validator that has everything before `target` in `author`'s log but not `target` itself.
fn receiver_before(world: &World, author: &Replica, target: &SignedChange) -> Replica {
    let mut receiver = world.replica(OUTSIDER, 99);
    let position = author.log.iter().position(|s| s == target).expect("in the log");
    receiver.sync_from(&author.log[..position], world.state());
    receiver
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn honest_histories_validate_and_converge((n, steps) in history()) {
        let (world, mut replicas, _) = run(n, &steps);
        let state = world.state().clone();
        // Full exchange, twice around, then everyone is identical.
        for _ in 0..2 {
            for r in 0..n {
                for from in 0..n {
                    if r != from {
                        let log = replicas[from].log.clone();
                        replicas[r].sync_from(&log, &state);
                    }
                }
            }
        }
        let first_heads = replicas[0].heads();
        let first_content = replicas[0].content();
        for replica in replicas.iter_mut().skip(1) {
            prop_assert_eq!(replica.heads(), first_heads.clone());
            prop_assert_eq!(replica.content(), first_content.clone());
        }
    }

    #[test]
    fn bit_flips_never_validate((n, steps) in history(), pick in any::<usize>(), bit in any::<usize>()) {
        let (world, replicas, made) = run(n, &steps);
        prop_assume!(!made.is_empty());
        let target = &made[pick % made.len()];
        let author = author_of(&replicas, target);
        let receiver = receiver_before(&world, author, target);
        let mut bytes = target.encode();
        let bits = bytes.len() * 8;
        flip(&mut bytes, bit % bits);
        if let Ok(decoded) = SignedChange::decode(&bytes, 2 << 20) {
            never_accepted(&receiver, &world, &decoded)?;
        }
    }

    #[test]
    fn re_signed_changes_never_validate((n, steps) in history(), pick in any::<usize>(), by in 0..4usize) {
        let (world, replicas, made) = run(n, &steps);
        prop_assume!(!made.is_empty());
        let target = &made[pick % made.len()];
        let author = author_of(&replicas, target);
        let receiver = receiver_before(&world, author, target);
        let seed = [OWNER, MEMBER, THIRD, OUTSIDER][by];
        prop_assume!(seed != author.seed);
        let change = automerge::Change::from_bytes(target.change.clone()).expect("change");
        let resigned = sign(&key(seed), BUCKET, target.epoch, &change);
        never_accepted(&receiver, &world, &resigned)?;
        let mut forged = resigned;
        forged.signer = target.signer;
        never_accepted(&receiver, &world, &forged)?;
    }

    #[test]
    fn foreign_namespace_keys_never_validate((n, steps) in history(), pick in any::<usize>(), victim in 0..4usize) {
        let (world, replicas, made) = run(n, &steps);
        prop_assume!(!made.is_empty());
        let target = &made[pick % made.len()];
        let author = author_of(&replicas, target);
        let victim = org([OWNER, MEMBER, THIRD, OUTSIDER][victim]);
        prop_assume!(victim != author.org());
        let receiver = receiver_before(&world, author, target);
        let mut expanded = expand(target);
        let own = format!("{}:", author.org());
        for op in &mut expanded.operations {
            if let automerge::legacy::Key::Map(key) = &op.key {
                if let Some(rest) = key.strip_prefix(&own) {
                    op.key = automerge::legacy::Key::Map(format!("{victim}:{rest}").into());
                }
            }
        }
        let crafted = sign_expanded(&author.key(), BUCKET, target.epoch, expanded);
        never_accepted(&receiver, &world, &crafted)?;
    }

    #[test]
    fn out_of_sequence_and_wrong_epoch_never_validate(
        (n, steps) in history(),
        pick in any::<usize>(),
        seq_delta in prop_oneof![Just(-1i64), 1..4i64],
        start_delta in -3..4i64,
        epoch in prop_oneof![Just(0u64), Just(1), 3..100u64],
    ) {
        let (world, replicas, made) = run(n, &steps);
        prop_assume!(!made.is_empty());
        let target = &made[pick % made.len()];
        let author = author_of(&replicas, target);
        let receiver = receiver_before(&world, author, target);
        let expanded = expand(target);
        // Another seq (and possibly start_op): never accepted.
        let mut moved = expanded.clone();
        moved.seq = (moved.seq as i64 + seq_delta).max(0) as u64;
        prop_assume!(moved.seq != expanded.seq);
        let start = (expanded.start_op.get() as i64 + start_delta).max(1) as u64;
        moved.start_op = NonZeroU64::new(start).expect("non-zero");
        let crafted = sign_expanded(&author.key(), BUCKET, target.epoch, moved);
        never_accepted(&receiver, &world, &crafted)?;
        // Another start_op alone: never accepted.
        if start_delta != 0 {
            let mut shifted = expanded.clone();
            shifted.start_op = NonZeroU64::new(start).expect("non-zero");
            let crafted = sign_expanded(&author.key(), BUCKET, target.epoch, shifted);
            never_accepted(&receiver, &world, &crafted)?;
        }
        // The same change at an epoch where the author is not (yet) a known member.
        let change = automerge::Change::from_bytes(target.change.clone()).expect("change");
        let at_epoch = sign(&author.key(), BUCKET, epoch, &change);
        // (Epoch 1 is the owner's too, but every change depends on epoch-2 changes: stale.)
        never_accepted(&receiver, &world, &at_epoch)?;
    }
}

/// The replica that wrote `target` (other replicas' logs hold it too, once received).
fn author_of<'a>(replicas: &'a [Replica], target: &SignedChange) -> &'a Replica {
    replicas.iter().find(|r| r.org() == target.signer && r.log.contains(target)).expect("an author")
}
