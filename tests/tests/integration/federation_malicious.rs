//! A malicious organisation's node: forged signatures, writes in another organisation's
//! namespace or under its actor, wrong epochs, sequence gaps and reuse, oversize changes,
//! replays and garbage, gossiped to the channel's owner. None is applied or forwarded, the
//! peer ends up blacklisted, and honest traffic keeps flowing.
//!
//! acme (owner) and globex (honest member) are `confab-node` processes. evil is a Confab node
//! in this test process ([`confab_tests::evil`]) peered with acme only: globex can then receive
//! evil's gossip only if acme forwards it, so globex's data directory tells whether anything
//! was forwarded.

use std::time::{Duration, Instant};

use confab_protocol::bucket::{MessageRecord, UpdateOp, UpdateRecord};
use confab_protocol::control::{MemberRecord, Role};
use confab_protocol::{ChatId, DocId, HlcTime, MessageId, OrgId, SignedChange, UserId};
use confab_tests::evil::{self, EvilNode, Write};
use reqwest::Method;
use serde_json::{json, Value};

use crate::common::*;
use crate::federation::{eventually, occurrences, peer, Org};

/// How long acme may take to blacklist evil.
const BLACKLIST_WITHIN: Duration = Duration::from_secs(30);
/// The rejections after which a peer is blacklisted (`blacklist_after_rejects`, default).
const BLACKLIST_AFTER: u64 = 10;
/// Messages alice writes while evil attacks.
const DURING: usize = 10;
/// Messages in the valid change that starts evil's burst.
const BULK: usize = 128;

/// What an honest node is expected to do with a message of the burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Valid: applied and forwarded.
    Accepted,
    /// Dropped without penalty (pending or duplicate): not applied, not forwarded.
    Ignored,
    /// Rejected: not applied, not forwarded, counts towards the blacklist.
    Rejected,
}

/// One malicious gossip message.
struct Attack {
    name: &'static str,
    bytes: Vec<u8>,
    expect: Expect,
    /// The honest verdict computed locally ([`evil::honest_verdict`]).
    verdict: String,
}

/// Message ids and canaries, unique per message.
struct Ids {
    ms: u64,
    counter: u16,
    canary_prefix: String,
}

impl Ids {
    /// Ids from now on; canaries `<kind>-<process id>-<attack>`.
    fn new(kind: &str) -> Ids {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as u64;
        Ids { ms, counter: 0, canary_prefix: format!("{kind}-{}-", std::process::id()) }
    }

    fn id(&mut self, org: &OrgId) -> MessageId {
        self.counter += 1;
        MessageId::new(HlcTime { ms: self.ms, counter: self.counter }, org, [0xee; 4])
    }

    fn canary(&self, attack: &str) -> String {
        format!("{}{attack}", self.canary_prefix)
    }
}

/// Peers acme and evil both ways (evil's "admin" is this test) and waits until evil is
/// connected; returns acme's peer id.
async fn peer_with_evil(acme: &Org, evil: &EvilNode) -> String {
    let acme_peer = acme.peer_id().await;
    let _: Value = acme
        .client
        .call(
            Method::POST,
            "/admin/peers",
            Some(json!({"name": "evil", "address": evil.address().await.expect("evil address")})),
        )
        .await
        .must("acme peers with evil");
    evil.add_peer("acme", &acme.address().await).await.expect("evil peers with acme");
    eventually("evil connected to acme", || evil.connected_to(&acme_peer)).await;
    acme_peer
}

/// One change with `writes` by the actor `org ‖ suffix(n)` on top of `history`, signed by
/// `key`, encoded.
fn forge_signed(
    history: &[SignedChange],
    org: &OrgId,
    n: u8,
    writes: Vec<Write>,
    key: &confab_protocol::OrgKey,
    doc: DocId,
    epoch: u64,
) -> Vec<u8> {
    evil::forge_changes(history, org, suffix(n), vec![writes])
        .expect("forge")
        .remove(0)
        .sign(key, doc, epoch)
        .encode()
}

fn record(author: &UserId, body: &str) -> MessageRecord {
    MessageRecord {
        author: author.clone(),
        body: body.to_string(),
        reply_to: None,
        attachments: Vec::new(),
    }
}

/// A fresh automerge actor suffix per forged writer.
fn suffix(n: u8) -> [u8; 16] {
    let mut suffix = [0x5a; 16];
    suffix[15] = n;
    suffix
}

/// Pseudo-random printable bytes (not compressible, so the change stays as large as its body).
fn noise(len: usize, seed: u64) -> String {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'a' + (state % 26) as u8)
        })
        .collect()
}

/// A malicious node (a member of the channel, peered with the owner) gossips every kind of
/// invalid change: nothing is applied anywhere, nothing reaches the other member through the
/// owner, the owner blacklists it, and the honest members keep chatting.
#[tokio::test(flavor = "multi_thread")]
async fn malicious_node_is_refused_and_blacklisted() {
    let started = Instant::now();
    let (acme, globex) = tokio::join!(Org::start("acme", "alice"), Org::start("globex", "bob"));
    let evil = EvilNode::start("evil").await.expect("start the evil node");
    peer(&acme, &globex).await;
    // evil peers with acme only.
    let acme_peer = peer_with_evil(&acme, &evil).await;
    eventually("acme connected to globex and evil", || async {
        let peers = acme.peers().await;
        peers.len() == 2 && peers.iter().all(|p| p["connected"] == json!(true))
    })
    .await;

    // A private channel of acme with bob@globex; an honest message before evil joins it (what
    // evil will replay), then mallory@evil is invited.
    let chat = acme.client.create_channel("ops", "private").await.must("create channel").id;
    acme.client.invite(&chat, &globex.user, None).await.must("invite bob@globex");
    eventually("globex sees the channel", || async { globex.chat_ids().await.contains(&chat) })
        .await;
    let replayed_body = format!("honest message that evil replays {}", std::process::id());
    let alice_message: MessageId = acme
        .client
        .send(&chat, &replayed_body)
        .await
        .must("alice writes")
        .id
        .parse()
        .expect("message id");
    eventually("globex has alice's message", || async {
        globex.count_body(&chat, &replayed_body).await == 1
    })
    .await;
    acme.client.invite(&chat, "mallory@evil", None).await.must("invite mallory@evil");

    // evil learns the channel like any member: its control document and bucket 1 by catch-up,
    // then it subscribes to the topic.
    let chat_id: ChatId = chat.parse().expect("chat id");
    let control_doc = DocId::control(chat_id);
    let bucket_doc = DocId::bucket(chat_id, 1);
    let evil_org = evil.org();
    eventually("evil has the control document naming it a member", || async {
        let Ok(history) = evil.history(control_doc) else {
            return false;
        };
        evil::control_state(&history).is_ok_and(|state| {
            state.orgs.get(&evil_org).is_some_and(|ranges| ranges.iter().any(|r| r.1.is_none()))
        })
    })
    .await;
    eventually("evil has bucket 1 with alice's message", || async {
        evil.history(bucket_doc).is_ok_and(|h| h.len() >= 2)
    })
    .await;
    eventually("evil sees acme subscribed to the topic", || async {
        evil.topic_peers(chat_id).await.contains(&acme_peer)
    })
    .await;
    let control_history = evil.history(control_doc).expect("control history");
    let state = evil::control_state(&control_history).expect("control state");
    let history = evil.history(bucket_doc).expect("bucket history");
    let acme_org = state.info.owner;
    let bob: UserId = globex.user.parse().expect("bob");
    let globex_org = state.members.get(&bob).expect("bob is a member").org;
    let epoch = state.epoch;
    let evil_since = state.orgs[&evil_org].iter().map(|r| r.0).max().expect("evil's range");
    println!(
        "setup in {:?}: epoch {epoch}, evil a member since epoch {evil_since}, bucket 1 has {} changes",
        started.elapsed(),
        history.len()
    );
    let key = confab_protocol::OrgKey::from_seed(evil.key.seed());
    let mallory: UserId = "mallory@evil".parse().expect("mallory");
    let alice: UserId = acme.user.parse().expect("alice");
    let mut ids = Ids::new("EVIL-CANARY");
    let now_ms = ids.ms;
    let verdict = |history: &[SignedChange], bytes: &[u8]| {
        evil::honest_verdict(bucket_doc, acme_org, &state, history, bytes)
    };

    // The gossip path works: a valid message from evil is applied by acme and forwarded to
    // globex (so "not applied, not forwarded" below is the nodes' decision, not a broken path).
    let probe_body = format!("hello from mallory {}", std::process::id());
    let probe = evil::forge(
        &history,
        &evil_org,
        suffix(1),
        vec![Write::Message {
            namespace: evil_org,
            id: ids.id(&evil_org),
            record: record(&mallory, &probe_body),
        }],
    )
    .expect("forge the probe")
    .remove(0)
    .sign(&key, bucket_doc, epoch);
    assert_eq!(verdict(&history, &probe.encode()), "accepted", "the probe");
    evil.publish(chat_id, probe.encode()).await.expect("publish the probe");
    eventually("evil's valid message reaches acme and globex", || async {
        acme.count_body(&chat, &probe_body).await == 1
            && globex.count_body(&chat, &probe_body).await == 1
    })
    .await;
    let mut with_probe = history.clone();
    with_probe.push(probe.clone());

    // The attacks. Each is a distinct gossip payload; every message body is a canary.
    let mut attacks: Vec<Attack> = Vec::new();
    let mut push = |name: &'static str, expect: Expect, bytes: Vec<u8>, verdict: String| {
        attacks.push(Attack { name, bytes, expect, verdict })
    };
    // A valid message of evil's at `epoch` by a fresh actor, before any tampering.
    let valid = |ids: &mut Ids, n: u8, name: &str| {
        let body = ids.canary(name);
        let id = ids.id(&evil_org);
        evil::forge(
            &history,
            &evil_org,
            suffix(n),
            vec![Write::Message { namespace: evil_org, id, record: record(&mallory, &body) }],
        )
        .expect("forge")
        .remove(0)
    };

    // First a valid change carrying BULK messages: evil's messages are judged one by one, so
    // this one is applied and forwarded. It also keeps acme's engine busy while the rest of the
    // burst arrives, so the invalid messages are judged together in one micro-batch. (Acme's
    // gossipsub graylists evil after about 3 rejections and then drops its messages unjudged;
    // the node blacklists a graylisted peer at once, so the attacks judged after that are few.)
    let bulk_bodies: Vec<String> =
        (0..BULK).map(|i| format!("mallory bulk {} #{i}", std::process::id())).collect();
    let bulk = {
        let writes = bulk_bodies
            .iter()
            .map(|body| Write::Message {
                namespace: evil_org,
                id: ids.id(&evil_org),
                record: record(&mallory, body),
            })
            .collect();
        evil::forge_changes(&history, &evil_org, suffix(15), vec![writes])
            .expect("forge")
            .remove(0)
            .sign(&key, bucket_doc, epoch)
            .encode()
    };
    push("valid-bulk", Expect::Accepted, bulk.clone(), verdict(&history, &bulk));
    // Not applicable yet (no penalty): dropped, and catch-up never brings them.
    // Out of sequence: seq 2 of an actor whose seq 1 was never sent.
    let gap = {
        let writes = ["seq-gap-unsent", "seq-gap"]
            .iter()
            .map(|name| Write::Message {
                namespace: evil_org,
                id: ids.id(&evil_org),
                record: record(&mallory, &ids.canary(name)),
            })
            .collect();
        let forged = evil::forge(&history, &evil_org, suffix(2), writes).expect("forge");
        forged[1].sign(&key, bucket_doc, epoch).encode()
    };
    push("seq-gap", Expect::Ignored, gap.clone(), verdict(&history, &gap));
    // An epoch the owner has not published yet.
    let future = valid(&mut ids, 3, "future-epoch").sign(&key, bucket_doc, epoch + 100).encode();
    push("future-epoch", Expect::Ignored, future.clone(), verdict(&history, &future));
    // A byte-identical replay of alice's accepted message (acme made it before evil joined, so
    // evil's gossipsub has not seen it; acme's has: its duplicate cache drops it).
    let honest = history.last().expect("alice's change").clone();
    let replay = honest.encode();
    push("replay", Expect::Ignored, replay.clone(), verdict(&history, &replay));

    // Rejected by validation (each counts towards the blacklist).
    // Forged signature: a valid change, one signature byte flipped.
    let mut forged_sig = valid(&mut ids, 4, "forged-signature").sign(&key, bucket_doc, epoch);
    forged_sig.signature.0[10] ^= 0x01;
    let forged_sig = forged_sig.encode();
    push("forged-signature", Expect::Rejected, forged_sig.clone(), verdict(&history, &forged_sig));
    // Impersonation: acme's actor, acme's namespace, acme named as signer, evil's signature.
    let impersonation = {
        let id = ids.id(&acme_org);
        let forged = evil::forge(
            &history,
            &acme_org,
            suffix(5),
            vec![Write::Message {
                namespace: acme_org,
                id,
                record: record(&alice, &ids.canary("impersonation")),
            }],
        )
        .expect("forge")
        .remove(0);
        let mut signed = forged.sign(&key, bucket_doc, epoch);
        signed.signer = acme_org;
        signed.encode()
    };
    push(
        "impersonation",
        Expect::Rejected,
        impersonation.clone(),
        verdict(&history, &impersonation),
    );
    // Another organisation's namespace: `<acme>:<message id>` (and globex's), signed by evil.
    for (name, org, author, n) in
        [("acme-namespace", acme_org, &alice, 6), ("globex-namespace", globex_org, &bob, 7)]
    {
        let id = ids.id(&org);
        let bytes = evil::forge(
            &history,
            &evil_org,
            suffix(n),
            vec![Write::Message { namespace: org, id, record: record(author, &ids.canary(name)) }],
        )
        .expect("forge")
        .remove(0)
        .sign(&key, bucket_doc, epoch)
        .encode();
        push(name, Expect::Rejected, bytes.clone(), verdict(&history, &bytes));
    }
    // Signed by evil, automerge actor acme's (message in evil's own namespace).
    let acme_actor = {
        let id = ids.id(&evil_org);
        evil::forge(
            &history,
            &acme_org,
            suffix(8),
            vec![Write::Message {
                namespace: evil_org,
                id,
                record: record(&mallory, &ids.canary("acme-actor")),
            }],
        )
        .expect("forge")
        .remove(0)
        .sign(&key, bucket_doc, epoch)
        .encode()
    };
    push("acme-actor", Expect::Rejected, acme_actor.clone(), verdict(&history, &acme_actor));
    // Wrong epochs: before evil was a member, and 0.
    let mut wrong_epochs = vec![0, 1, evil_since - 1];
    wrong_epochs.dedup();
    for (i, wrong) in wrong_epochs.into_iter().enumerate() {
        let name = ["epoch-0", "epoch-1", "epoch-before-joining"][i];
        let bytes = valid(&mut ids, 9 + i as u8, name).sign(&key, bucket_doc, wrong).encode();
        push(name, Expect::Rejected, bytes.clone(), verdict(&history, &bytes));
    }
    // Out of sequence: another change at the seq of the probe's actor (equivocation).
    let equivocation = valid(&mut ids, 1, "equivocation").sign(&key, bucket_doc, epoch).encode();
    push(
        "equivocation",
        Expect::Rejected,
        equivocation.clone(),
        verdict(&with_probe, &equivocation),
    );
    // The control document is the owner's alone.
    let control_write = {
        let forged = evil::forge(
            &control_history,
            &evil_org,
            suffix(12),
            vec![Write::ChatName(ids.canary("control"))],
        )
        .expect("forge")
        .remove(0);
        let signed = forged.sign(&key, control_doc, epoch);
        let bytes = signed.encode();
        let local = evil::honest_verdict(control_doc, acme_org, &state, &control_history, &bytes);
        (bytes, local)
    };
    push("control-write", Expect::Rejected, control_write.0, control_write.1);
    // evil makes itself the channel's owner.
    let owner_grab = forge_signed(
        &control_history,
        &evil_org,
        16,
        vec![Write::Member {
            user: mallory.clone(),
            record: MemberRecord { role: Role::Owner, org: evil_org },
        }],
        &key,
        control_doc,
        epoch,
    );
    let local = evil::honest_verdict(control_doc, acme_org, &state, &control_history, &owner_grab);
    push("owner-grab", Expect::Rejected, owner_grab, local);
    // Bucket writes the rules refuse even in evil's own namespace: a root write, a message id
    // minted by another organisation, a body over the limit, an empty body.
    let bucket_attacks = [
        ("root-write", Write::ChatName(ids.canary("root-write"))),
        (
            "acme-minted-id",
            Write::Message {
                namespace: evil_org,
                id: ids.id(&acme_org),
                record: record(&mallory, &ids.canary("acme-minted-id")),
            },
        ),
        (
            "body-too-long",
            Write::Message {
                namespace: evil_org,
                id: ids.id(&evil_org),
                record: record(
                    &mallory,
                    &format!("{}{}", ids.canary("body-too-long"), noise(100_000, 3)),
                ),
            },
        ),
        (
            "empty-body",
            Write::Message {
                namespace: evil_org,
                id: ids.id(&evil_org),
                record: record(&mallory, ""),
            },
        ),
    ];
    // Edits and deletions of alice's message (keys in acme's namespace).
    let update = |op: UpdateOp| UpdateRecord {
        target: alice_message,
        by: alice.clone(),
        at: HlcTime { ms: now_ms, counter: 0 },
        op,
    };
    let update_attacks = [
        (
            "edit-alice",
            Write::Update {
                namespace: acme_org,
                record: update(UpdateOp::Edit { body: ids.canary("edit-alice") }),
            },
        ),
        ("delete-alice", Write::Update { namespace: acme_org, record: update(UpdateOp::Delete) }),
    ];
    for (n, (name, write)) in bucket_attacks.into_iter().chain(update_attacks).enumerate() {
        let bytes =
            forge_signed(&history, &evil_org, 20 + n as u8, vec![write], &key, bucket_doc, epoch);
        push(name, Expect::Rejected, bytes.clone(), verdict(&history, &bytes));
    }
    // Replays of alice's change, altered: another epoch (the signature covers it), and the
    // chunk checksum changed (not covered by the change hash, hence not by the signature).
    let mut other_epoch = honest.clone();
    other_epoch.epoch += 1;
    let other_epoch = other_epoch.encode();
    push(
        "replay-other-epoch",
        Expect::Rejected,
        other_epoch.clone(),
        verdict(&history, &other_epoch),
    );
    let mut bad_checksum = honest.clone();
    bad_checksum.change[4] ^= 0xff;
    let bad_checksum = bad_checksum.encode();
    push(
        "replay-bad-checksum",
        Expect::Rejected,
        bad_checksum.clone(),
        verdict(&history, &bad_checksum),
    );

    // Refused before validation (the node cannot decode them for this topic); sent last, as
    // they are judged at once and the score they cost could otherwise graylist evil before
    // the others arrive.
    // Oversize: a change chunk above 1 MiB (the whole message still fits gossipsub's 1 MiB +
    // 16 KiB).
    let oversize = {
        let body = format!("{}{}", ids.canary("oversize"), noise(1024 * 1024 + 2048, now_ms));
        let id = ids.id(&evil_org);
        let forged = evil::forge(
            &history,
            &evil_org,
            suffix(13),
            vec![Write::Message { namespace: evil_org, id, record: record(&mallory, &body) }],
        )
        .expect("forge")
        .remove(0);
        assert!(
            forged.raw.len() > 1024 * 1024 && forged.raw.len() < 1024 * 1024 + 12 * 1024,
            "oversize change is {} bytes",
            forged.raw.len()
        );
        forged.sign(&key, bucket_doc, epoch).encode()
    };
    push("oversize", Expect::Rejected, oversize.clone(), verdict(&history, &oversize));
    // A valid change of another chat, on this chat's topic.
    let other_chat = {
        let mut signed = valid(&mut ids, 14, "other-chat").sign(&key, bucket_doc, epoch);
        let mut bytes = *chat_id.as_bytes();
        bytes[15] ^= 0xff;
        signed.doc = DocId::bucket(ChatId::from_bytes(bytes), 1);
        signed.encode()
    };
    push("other-chat", Expect::Rejected, other_chat.clone(), verdict(&history, &other_chat));
    // Garbage, and a signed-change header followed by garbage.
    let garbage = format!("{}{}", ids.canary("garbage"), noise(300, 7)).into_bytes();
    push("garbage", Expect::Rejected, garbage.clone(), verdict(&history, &garbage));
    let mut truncated = b"CFSC\x01".to_vec();
    truncated.extend_from_slice(ids.canary("truncated").as_bytes());
    push("truncated", Expect::Rejected, truncated.clone(), verdict(&history, &truncated));

    // Every attack is what it claims to be for an honest validator.
    for attack in &attacks {
        println!("{:<22} {}", attack.name, attack.verdict);
        match attack.expect {
            Expect::Accepted => assert_eq!(attack.verdict, "accepted", "{}", attack.name),
            Expect::Ignored => assert!(
                attack.verdict.starts_with("pending") || attack.verdict == "duplicate",
                "{}: {}",
                attack.name,
                attack.verdict
            ),
            Expect::Rejected => {
                assert!(
                    attack.verdict.starts_with("rejected"),
                    "{}: {}",
                    attack.name,
                    attack.verdict
                )
            }
        }
    }
    let rejectable = attacks.iter().filter(|a| a.expect == Expect::Rejected).count() as u64;
    assert!(rejectable > BLACKLIST_AFTER, "enough rejectable attacks");

    // alice keeps writing during the attack.
    let writers: Vec<_> = (0..DURING)
        .map(|i| {
            let client = acme.client.clone();
            let chat = chat.clone();
            tokio::spawn(async move {
                client.send(&chat, &format!("alice during the attack {i}")).await
            })
        })
        .collect();
    // The burst, all at once (in this order on the wire).
    let sent_at = Instant::now();
    let published = futures_util::future::join_all(
        attacks.iter().map(|attack| evil.publish(chat_id, attack.bytes.clone())),
    )
    .await;
    let send_time = sent_at.elapsed();
    for (attack, result) in attacks.iter().zip(published) {
        if let Err(error) = result {
            println!("{}: evil's publish failed: {error}", attack.name);
        }
    }
    for writer in writers {
        writer.await.expect("writer task").must("alice writes during the attack");
    }
    let evil_peer = loop {
        let evil_peer = acme.peer_named("evil").await;
        if evil_peer["blacklisted"] == json!(true) {
            break evil_peer;
        }
        assert!(
            sent_at.elapsed() < BLACKLIST_WITHIN,
            "acme did not blacklist evil within {BLACKLIST_WITHIN:?}: {evil_peer} (a peer whose gossipsub \
             score fell below the graylist threshold is ignored, so its later invalid messages \
             are never judged nor counted)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took = sent_at.elapsed();
    println!(
        "blacklisted {took:?} after the burst was sent ({send_time:?} to send it): {evil_peer}"
    );
    // Blacklisted for its rejections: by count, or by the score they brought it to.
    assert!(evil_peer["rejected_messages"].as_u64().unwrap_or(0) >= 1, "{evil_peer}");

    // Honest traffic keeps flowing both ways.
    let from_acme = format!("acme after the attack {}", std::process::id());
    let from_globex = format!("globex after the attack {}", std::process::id());
    acme.client.send(&chat, &from_acme).await.must("alice");
    globex.client.send(&chat, &from_globex).await.must("bob");
    eventually("both honest messages on both nodes", || async {
        let (a, g) = (acme.view(&chat).await, globex.view(&chat).await);
        a == g
            && a.len() == 4 + BULK + DURING
            && [&from_acme, &from_globex]
                .into_iter()
                .chain(&bulk_bodies)
                .all(|body| a.iter().any(|m| &m.2 == body))
    })
    .await;

    // Nothing malicious was applied (acme) or forwarded (globex).
    for org in [&acme, &globex] {
        let view = org.view(&chat).await;
        let applied: Vec<_> = view.iter().filter(|m| m.2.contains(&ids.canary_prefix)).collect();
        assert!(applied.is_empty(), "{} applied {applied:?}", org.name);
        assert_eq!(
            org.count_body(&chat, &replayed_body).await,
            1,
            "{}: alice's message is there once, neither edited nor deleted",
            org.name
        );
        // alice's first, mallory's probe and bulk, alice's during the attack, and one from
        // each side after it.
        assert_eq!(view.len(), 4 + BULK + DURING, "{}: {view:?}", org.name);
    }
    // Nor were the control document writes: the name and the members are the owner's.
    for org in [&acme, &globex] {
        let chats = org.client.chats().await.must("chats");
        let entry = chats.iter().find(|entry| entry.chat.id == chat).expect("the channel");
        assert_eq!(entry.chat.name.as_deref(), Some("ops"), "{}: {entry:?}", org.name);
        let members = org.client.members(&chat).await.must("members");
        let owners: Vec<_> = members.iter().filter(|m| m.role == "owner").collect();
        assert!(owners.len() == 1 && owners[0].user_id == acme.user, "{}: {members:?}", org.name);
    }
    let evil_peer = acme.peer_named("evil").await;
    assert_eq!(evil_peer["connected"], json!(false), "{evil_peer}");
    assert_eq!(evil_peer["blacklisted"], json!(true), "{evil_peer}");

    let log = acme.node.log_tail(4000);
    let verdicts: Vec<&str> = log
        .lines()
        .filter(|line| {
            line.contains("rejected")
                || line.contains("blacklisted")
                || line.contains("refused")
                || line.contains("group commit")
        })
        .collect();
    println!("acme's verdicts:\n{}", verdicts.join("\n"));

    evil.shutdown().await;
    let (mut acme, mut globex) = (acme, globex);
    acme.node.terminate().await;
    globex.node.terminate().await;
    for org in [&acme, &globex] {
        assert_eq!(
            occurrences(org.node.data_dir(), ids.canary_prefix.as_bytes()),
            0,
            "{}'s data directory holds a malicious message",
            org.name
        );
    }
    assert!(
        occurrences(globex.node.data_dir(), probe_body.as_bytes()) > 0,
        "the canary search works (globex has evil's valid message)"
    );
    println!("done in {:?}", started.elapsed());
}

/// A malicious member serves invalid changes in catch-up pages instead of gossiping them:
/// acme applies the valid one among them, none of the invalid ones, counts them against evil
/// and blacklists it.
#[tokio::test(flavor = "multi_thread")]
async fn malicious_catchup_server_is_blacklisted() {
    let acme = Org::start("acme", "alice").await;
    let evil = EvilNode::start("evil").await.expect("start the evil node");
    peer_with_evil(&acme, &evil).await;

    let chat = acme.client.create_channel("ops", "private").await.must("create channel").id;
    acme.client.send(&chat, "before evil").await.must("alice");
    acme.client.invite(&chat, "mallory@evil", None).await.must("invite mallory@evil");
    let chat_id: ChatId = chat.parse().expect("chat id");
    let (control_doc, bucket_doc) = (DocId::control(chat_id), DocId::bucket(chat_id, 1));
    let evil_org = evil.org();
    eventually("evil is a member with bucket 1", || async {
        let member = evil.history(control_doc).is_ok_and(|history| {
            evil::control_state(&history).is_ok_and(|state| state.orgs.contains_key(&evil_org))
        });
        member && evil.history(bucket_doc).is_ok_and(|h| h.len() >= 2)
    })
    .await;
    let state = evil::control_state(&evil.history(control_doc).expect("control")).expect("state");
    let history = evil.history(bucket_doc).expect("bucket history");
    let (acme_org, epoch) = (state.info.owner, state.epoch);
    let key = confab_protocol::OrgKey::from_seed(evil.key.seed());
    let mallory: UserId = "mallory@evil".parse().expect("mallory");
    let alice: UserId = acme.user.parse().expect("alice");
    let mut ids = Ids::new("EVIL-CATCHUP-CANARY");

    // One valid change (the probe: catch-up from evil reaches acme), then invalid ones, each
    // on top of the honest history: forged signatures (dropped before the engine) and writes in
    // acme's namespace signed by evil (rejected by the validator).
    let probe_body = format!("mallory by catch-up {}", std::process::id());
    let mut planted = vec![evil::forge(
        &history,
        &evil_org,
        suffix(1),
        vec![Write::Message {
            namespace: evil_org,
            id: ids.id(&evil_org),
            record: record(&mallory, &probe_body),
        }],
    )
    .expect("forge the probe")
    .remove(0)
    .sign(&key, bucket_doc, epoch)];
    let invalid = BLACKLIST_AFTER as u8 + 2;
    for n in 0..invalid {
        let (namespace, author) = match n % 2 {
            0 => (evil_org, &mallory),
            _ => (acme_org, &alice),
        };
        let body = ids.canary(&format!("planted-{n}"));
        let mut signed = evil::forge(
            &history,
            &evil_org,
            suffix(10 + n),
            vec![Write::Message {
                namespace,
                id: ids.id(&namespace),
                record: record(author, &body),
            }],
        )
        .expect("forge")
        .remove(0)
        .sign(&key, bucket_doc, epoch);
        if n % 2 == 0 {
            signed.signature.0[7] ^= 0x01;
        }
        let verdict =
            evil::honest_verdict(bucket_doc, acme_org, &state, &history, &signed.encode());
        assert!(verdict.starts_with("rejected"), "planted change {n}: {verdict}");
        planted.push(signed);
    }
    evil.plant(bucket_doc, &planted).await.expect("plant");

    // acme's anti-entropy (every 2 s) fetches them from evil.
    eventually("acme applies the valid planted change", || async {
        acme.count_body(&chat, &probe_body).await == 1
    })
    .await;
    let deadline = Instant::now() + BLACKLIST_WITHIN;
    loop {
        let peer = acme.peer_named("evil").await;
        if peer["blacklisted"] == json!(true) {
            assert!(peer["rejected_messages"].as_u64() >= Some(BLACKLIST_AFTER), "{peer}");
            assert_eq!(peer["connected"], json!(false), "{peer}");
            break;
        }
        assert!(Instant::now() < deadline, "acme did not blacklist evil: {peer}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let view = acme.view(&chat).await;
    assert!(
        view.iter().all(|m| !m.2.contains(&ids.canary_prefix)),
        "acme applied a planted invalid change: {view:?}"
    );
    assert_eq!(view.len(), 2, "alice's message and the probe: {view:?}");

    evil.shutdown().await;
    let mut acme = acme;
    acme.node.terminate().await;
    assert_eq!(
        occurrences(acme.node.data_dir(), ids.canary_prefix.as_bytes()),
        0,
        "acme's data directory holds a planted invalid change"
    );
}

/// A removed organisation may still fetch a chat's control document (to learn it was removed),
/// but only up to the change that removed it, whatever cursor it sends: the owner's later
/// changes (here a new name) never reach it.
#[tokio::test(flavor = "multi_thread")]
async fn removed_member_gets_the_control_document_only_up_to_its_removal() {
    let acme = Org::start("acme", "alice").await;
    let evil = EvilNode::start("evil").await.expect("start the evil node");
    let acme_peer = peer_with_evil(&acme, &evil).await;
    let chat = acme.client.create_channel("ops", "private").await.must("create channel").id;
    acme.client.invite(&chat, "mallory@evil", None).await.must("invite mallory@evil");
    let chat_id: ChatId = chat.parse().expect("chat id");
    let control_doc = DocId::control(chat_id);
    let evil_org = evil.org();
    let removed = |history: &[SignedChange]| {
        evil::control_state(history).is_ok_and(|state| {
            state
                .orgs
                .get(&evil_org)
                .is_some_and(|ranges| !ranges.is_empty() && ranges.iter().all(|r| r.1.is_some()))
        })
    };
    eventually("evil is a member", || async {
        evil.history(control_doc).is_ok_and(|history| {
            evil::control_state(&history).is_ok_and(|s| s.orgs.contains_key(&evil_org))
        })
    })
    .await;
    acme.client.remove_member(&chat, "mallory@evil").await.must("remove mallory");
    eventually("evil learned its removal", || async {
        evil.history(control_doc).is_ok_and(|history| removed(&history))
    })
    .await;
    let canary = format!("renamed-after-removal-{}", std::process::id());
    acme.client.patch_chat(&chat, json!({"name": canary})).await.must("rename");

    // From the start: everything up to the removal, nothing after. (Without a shared chat
    // the connection may have idled out; the nodes redial.)
    let deadline = Instant::now() + Duration::from_secs(30);
    let served = loop {
        match evil.fetch_document(&acme_peer, control_doc, Vec::new()).await {
            Ok(served) => break Ok(served),
            Err(error) if Instant::now() > deadline => break Err(error),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let served = served.expect("a former member may fetch the control document");
    assert!(removed(&served), "the removal is served");
    let state = evil::control_state(&served).expect("served state");
    assert_eq!(state.name, "ops", "the rename after the removal was served");
    assert!(
        served.last().is_some_and(|change| change.epoch
            == state.orgs[&evil_org].iter().filter_map(|r| r.1).max().unwrap_or(0)),
        "the last change served is the removal"
    );
    // A cursor past the removal gets nothing more.
    for cursor in [served.len() as u64, served.len() as u64 + 1] {
        let beyond = evil
            .fetch_document(&acme_peer, control_doc, cursor.to_be_bytes().to_vec())
            .await
            .expect("a page");
        assert!(beyond.is_empty(), "cursor {cursor}: {} changes", beyond.len());
    }
    // Bucket documents stay refused.
    assert!(evil.fetch_document(&acme_peer, DocId::bucket(chat_id, 1), Vec::new()).await.is_err());
    // The owner did rename the chat.
    let chats = acme.client.chats().await.must("chats");
    assert!(chats
        .iter()
        .any(|entry| entry.chat.id == chat && entry.chat.name.as_deref() == Some(canary.as_str())));
    evil.shutdown().await;
}
