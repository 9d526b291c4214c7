//! Independent referee for the federation wire: a js-libp2p peer (npm `libp2p` with
//! `@libp2p/gossipsub`, `tests/referee/libp2p-peer.mjs`, installed by `.ci/run`) that a node has
//! peered with as an organisation. It receives the channel's `SignedChange`s byte for byte as an
//! honest Rust node accepted them, and the invalid messages it publishes are rejected by the
//! node, lower its gossipsub score and get it blacklisted.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use confab_protocol::{ChatId, DocId, DocKind, SignedChange};
use confab_tests::evil::{self, EvilNode};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use crate::common::*;
use crate::federation::{eventually, peer_with, Org};

/// How long the referee may take to answer a command.
const REPLY_WITHIN: Duration = Duration::from_secs(20);

/// The js-libp2p peer, a Node.js process driven by JSON lines.
struct JsPeer {
    child: Child,
    stdin: ChildStdin,
    replies: mpsc::Receiver<Value>,
    /// Every gossip message it received, as its `message` events.
    messages: Arc<Mutex<Vec<Value>>>,
    peer_id: String,
    address: String,
}

impl JsPeer {
    async fn start(seed: [u8; 32]) -> JsPeer {
        let referee = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("referee");
        assert!(
            referee.join("node_modules/@libp2p/gossipsub").exists(),
            "the js-libp2p referee is not installed: run `npm ci --prefix tests/referee` (.ci/run does)"
        );
        let mut child = Command::new("node")
            .arg(referee.join("libp2p-peer.mjs"))
            .arg("--seed")
            .arg(hex::encode(seed))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run node (Node.js) for the js-libp2p referee");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (reply_tx, mut replies) = mpsc::channel(64);
        let messages = Arc::new(Mutex::new(Vec::new()));
        let received = messages.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(event) = serde_json::from_str::<Value>(&line) else {
                    println!("js-libp2p: {line}");
                    continue;
                };
                if event["event"] == json!("message") {
                    received.lock().expect("lock").push(event);
                } else if reply_tx.send(event).await.is_err() {
                    break;
                }
            }
        });
        let ready = tokio::time::timeout(REPLY_WITHIN, replies.recv())
            .await
            .expect("the js-libp2p peer starts")
            .expect("the js-libp2p peer's ready line");
        assert_eq!(ready["event"], json!("ready"), "{ready}");
        JsPeer {
            child,
            stdin,
            replies,
            messages,
            peer_id: ready["peer_id"].as_str().expect("peer id").to_string(),
            address: ready["addrs"][0].as_str().expect("an address").to_string(),
        }
    }

    async fn command(&mut self, command: Value) -> Value {
        let line = format!("{command}\n");
        self.stdin.write_all(line.as_bytes()).await.expect("write to the js-libp2p peer");
        tokio::time::timeout(REPLY_WITHIN, self.replies.recv())
            .await
            .unwrap_or_else(|_| panic!("no reply to {command}"))
            .expect("the js-libp2p peer exited")
    }

    /// The payloads received on `topic`, in order.
    fn received(&self, topic: &str) -> Vec<Vec<u8>> {
        self.messages
            .lock()
            .expect("lock")
            .iter()
            .filter(|m| m["topic"] == json!(topic))
            .map(|m| hex::decode(m["data_hex"].as_str().unwrap_or_default()).expect("hex"))
            .collect()
    }

    async fn stop(mut self) {
        let _ = self.command(json!({"cmd": "stop"})).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn js_libp2p_peer_receives_changes_byte_for_byte_and_is_rejected_when_invalid() {
    let acme = Org::start("acme", "alice").await;
    // An honest Rust member node (in this process, so the test can read what it accepted).
    let globex = EvilNode::start("globex").await.expect("start globex");
    let mut js = JsPeer::start(fastrand_seed()).await;
    println!("js-libp2p peer {} at {}", js.peer_id, js.address);

    // Both sides of each pair consent.
    peer_with(&acme, "globex", &globex.address().await.expect("address")).await;
    globex.add_peer("acme", &acme.address().await).await.expect("globex peers with acme");
    peer_with(&acme, "jsorg", &js.address).await;
    let dialed = js.command(json!({"cmd": "dial", "addr": acme.address().await})).await;
    assert_eq!(dialed["event"], json!("dialed"), "{dialed}");
    eventually("acme connected to globex and the js peer", || async {
        let peers = acme.peers().await;
        peers.len() == 2 && peers.iter().all(|p| p["connected"] == json!(true))
    })
    .await;

    let chat = acme.client.create_channel("interop", "private").await.must("create channel").id;
    for user in ["bob@globex", "js@jsorg"] {
        acme.client.invite(&chat, user, None).await.must(&format!("invite {user}"));
    }
    let chat_id: ChatId = chat.parse().expect("chat id");
    let topic = format!("confab/v1/chat/{chat}");
    let subscribed = js.command(json!({"cmd": "subscribe", "topic": topic})).await;
    assert_eq!(subscribed["event"], json!("subscribed"), "{subscribed}");
    let acme_peer = acme.peer_id().await;
    let started = Instant::now();
    loop {
        let peers = js.command(json!({"cmd": "topic_peers", "topic": topic})).await;
        if peers["peers"].as_array().is_some_and(|p| p.contains(&json!(acme_peer))) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "the js peer never saw acme subscribed to {topic}: {peers}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eventually("globex sees acme on the topic", || async {
        globex.topic_peers(chat_id).await.contains(&acme_peer)
    })
    .await;

    // Alice writes; the js peer must get every change by gossip. Acme admits the js peer to the
    // topic once its member set (from the control document) names jsorg, so the first messages
    // are retried until one arrives.
    let run = std::process::id();
    let probe_started = Instant::now();
    let mut probes = 0;
    while js.received(&topic).is_empty() {
        assert!(
            probe_started.elapsed() < Duration::from_secs(40),
            "the js peer received nothing on {topic}"
        );
        acme.client.send(&chat, &format!("probe {probes} {run}")).await.must("probe");
        probes += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let bodies: Vec<String> = (0..20).map(|i| format!("interop {i} {run} ✓")).collect();
    let first_gossiped = js.received(&topic).len();
    for body in &bodies {
        acme.client.send(&chat, body).await.must("alice writes");
    }
    eventually("the js peer received all 20 changes", || async {
        js.received(&topic).len() >= first_gossiped + bodies.len()
    })
    .await;

    // Byte for byte: each payload the js peer received is a change globex stored after the
    // whole validation pipeline (signature over the automerge change hash included), and it
    // decodes as acme's signed change of this chat.
    let bucket = DocId::bucket(chat_id, 1);
    eventually("globex has every message", || async {
        globex.history(bucket).is_ok_and(|h| {
            evil::bucket_bodies(&h).is_ok_and(|got| bodies.iter().all(|b| got.contains(b)))
        })
    })
    .await;
    let stored: Vec<Vec<u8>> = [DocId::control(chat_id), bucket]
        .into_iter()
        .flat_map(|doc| globex.history(doc).expect("history"))
        .map(|signed| signed.encode())
        .collect();
    let received = js.received(&topic);
    assert!(received.len() >= bodies.len());
    for payload in &received {
        let signed = SignedChange::decode(payload, usize::MAX).expect("a signed change");
        assert_eq!(signed.signer, acme_org(&globex, chat_id), "signed by acme");
        assert_eq!(signed.doc.chat, chat_id);
        assert!(matches!(signed.doc.kind, DocKind::Bucket(_)), "{signed:?}");
        assert!(
            stored.contains(payload),
            "the js peer received bytes globex did not accept: {signed:?}"
        );
    }
    for message in js.messages.lock().expect("lock").iter() {
        assert_eq!(message["from"], json!(acme_peer), "forwarded only by acme");
    }
    let globex_bodies =
        evil::bucket_bodies(&globex.history(bucket).expect("history")).expect("bodies");
    for body in &bodies {
        assert!(globex_bodies.contains(body), "{body}");
    }
    println!("the js peer received {} changes byte for byte ({} probes)", received.len(), probes);

    // The js peer publishes invalid messages: garbage, a received change with one bit of its
    // signature flipped, a truncated one and a replay under another chat's bytes.
    let before = acme.peer_named("jsorg").await;
    assert_eq!(before["rejected_messages"], json!(0), "{before}");
    let mut flipped = received[0].clone();
    let signature_at = confab_protocol::signed_change::HEADER_LEN - 4 - 64;
    flipped[signature_at] ^= 1;
    let invalid = [
        b"not a signed change".to_vec(),
        flipped,
        received[1][..received[1].len() / 2].to_vec(),
        {
            let mut other_chat = received[2].clone();
            other_chat[5 + 8] ^= 0xff;
            other_chat
        },
    ];
    for data in &invalid {
        let published = js
            .command(json!({"cmd": "publish", "topic": topic, "data_hex": hex::encode(data)}))
            .await;
        println!("js publish: {published}");
    }
    let after = loop {
        let after = acme.peer_named("jsorg").await;
        if after["blacklisted"] == json!(true) {
            break after;
        }
        assert!(
            probe_started.elapsed() < Duration::from_secs(120),
            "acme did not blacklist the js peer: {after}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("acme's view of the js peer after its invalid messages: {after}");
    let rejected = after["rejected_messages"].as_u64().expect("count");
    assert!(rejected >= 3, "{after}");
    if let (Some(score_before), Some(score_after)) =
        (before["score"].as_f64(), after["score"].as_f64())
    {
        assert!(
            score_after < score_before && score_after < -80.0,
            "its score fell below the graylist threshold: {before} → {after}"
        );
    }
    // Nothing invalid reached globex: it holds exactly what it held before.
    let still: Vec<Vec<u8>> = [DocId::control(chat_id), bucket]
        .into_iter()
        .flat_map(|doc| globex.history(doc).expect("history"))
        .map(|signed| signed.encode())
        .collect();
    for data in &invalid {
        assert!(!still.contains(data));
    }

    // Honest traffic keeps flowing to the remaining member.
    let after_body = format!("after the js peer {run}");
    acme.client.send(&chat, &after_body).await.must("alice");
    eventually("globex still receives", || async {
        globex
            .history(bucket)
            .is_ok_and(|h| evil::bucket_bodies(&h).is_ok_and(|got| got.contains(&after_body)))
    })
    .await;

    js.stop().await;
    globex.shutdown().await;
}

/// The chat's owner organisation as globex's copy of the control document names it.
fn acme_org(globex: &EvilNode, chat: ChatId) -> confab_protocol::OrgId {
    let history = globex.history(DocId::control(chat)).expect("control history");
    evil::control_state(&history).expect("control state").info.owner
}

fn fastrand_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    seed.iter_mut().for_each(|b| *b = fastrand::u8(..));
    seed
}
