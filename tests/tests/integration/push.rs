//! Offline devices get their messages through their relay: a real `confab-relay` process and a
//! real node; the device's keys and relay calls are made here as the browser would make them.

use std::time::{Duration, Instant};

use confab_protocol::relay::{
    b64_decode, b64_encode, open, x25519_public, CapabilityId, CapabilityToken, ChallengePurpose,
    DeviceKey, QueueId, SealedEnvelope,
};
use confab_tests::push_service::TestPushService;
use confab_tests::relay::TestRelay;
use reqwest::Method;
use serde_json::{json, Value};

use crate::common::*;

/// A browser device: its two keys, its relay queue, and the envelopes it has opened.
struct Device {
    id: String,
    signing: DeviceKey,
    sealing_secret: [u8; 32],
    relay: String,
    queue: QueueId,
    http: reqwest::Client,
}

impl Device {
    /// Registers the device with the node, a queue with the relay (subscribed to Web Push at
    /// `push`'s endpoint named after the seed, when given), and the relay with the node.
    async fn enrol(
        client: &Client,
        relay: &TestRelay,
        seed: u8,
        push: Option<&TestPushService>,
    ) -> Device {
        let signing = DeviceKey::from_seed([seed; 32]);
        let sealing_secret = [seed.wrapping_add(100); 32];
        let device: Value = client
            .call(
                Method::POST,
                "/devices",
                Some(json!({
                    "name": format!("browser {seed}"),
                    "signing_key": signing.public().to_string(),
                    "sealing_key": confab_protocol::devices::SealingKey::from_bytes(
                        x25519_public(sealing_secret)
                    ).to_string(),
                })),
            )
            .await
            .must("register device");
        let id = device["id"].as_str().expect("device id").to_string();
        let http = reqwest::Client::new();
        let mut me = Device {
            id,
            signing,
            sealing_secret,
            relay: relay.url().to_string(),
            queue: QueueId::from_bytes([0; 16]),
            http,
        };
        let challenge = me.challenge().await;
        let answer = me.signing.answer(ChallengePurpose::Register, &challenge, None);
        let queue: Value = me
            .relay_call(
                "/v1/queues",
                json!({
                    "device_key": me.signing.public().to_string(),
                    "auth": {"challenge": b64_encode(&challenge), "signature": b64_encode(&answer.0)},
                    "push": push.map(|service| service.subscription(&seed.to_string())),
                }),
            )
            .await;
        me.queue = queue["queue"].as_str().expect("queue").parse().expect("queue id");
        let push: Value = client.call(Method::GET, "/push", None).await.must("push settings");
        let org = push["org"].as_str().expect("org").parse().expect("org id");
        let capability = CapabilityToken::issue(
            &me.signing,
            me.queue,
            CapabilityId::from_bytes([seed; 16]),
            org,
            in_thirty_days(),
        );
        let _: Value = client
            .call(
                Method::PUT,
                &format!("/devices/{}/relay", me.id),
                Some(json!({"relay": {
                    "url": me.relay, "queue": me.queue.to_string(), "capability": capability.to_text(),
                }})),
            )
            .await
            .must("set relay");
        me
    }

    async fn relay_call(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}{path}", self.relay))
            .json(&body)
            .send()
            .await
            .expect("relay request");
        let status = response.status();
        let answer: Value = response.json().await.expect("relay json");
        assert!(status.is_success(), "{path}: {status} {answer}");
        answer
    }

    async fn challenge(&self) -> [u8; 32] {
        let answer = self.relay_call("/v1/challenges", json!({})).await;
        let bytes = b64_decode(answer["challenge"].as_str().expect("challenge")).expect("b64");
        bytes.try_into().expect("32 bytes")
    }

    /// Fetches, opens and acknowledges whatever the relay holds for this device.
    async fn fetch(&self) -> Vec<Value> {
        let challenge = self.challenge().await;
        let answer = self.signing.answer(ChallengePurpose::Fetch, &challenge, Some(self.queue));
        let fetched = self
            .relay_call(
                &format!("/v1/queues/{}/fetch", self.queue),
                json!({"auth": {"challenge": b64_encode(&challenge), "signature": b64_encode(&answer.0)}}),
            )
            .await;
        let mut opened = Vec::new();
        let mut ids = Vec::new();
        for envelope in fetched["envelopes"].as_array().expect("envelopes") {
            ids.push(envelope["envelope_id"].clone());
            let sealed = b64_decode(envelope["sealed"].as_str().expect("sealed")).expect("b64");
            let sealed = SealedEnvelope::decode(&sealed).expect("envelope");
            let plaintext = open(self.sealing_secret, &sealed).expect("opens with the device key");
            opened.push(serde_json::from_slice(&plaintext).expect("payload json"));
        }
        if !ids.is_empty() {
            let challenge = self.challenge().await;
            let answer = self.signing.answer(ChallengePurpose::Fetch, &challenge, Some(self.queue));
            self.relay_call(
                &format!("/v1/queues/{}/ack", self.queue),
                json!({"auth": {"challenge": b64_encode(&challenge), "signature": b64_encode(&answer.0)},
                       "envelope_ids": ids}),
            )
            .await;
        }
        opened
    }

    /// Fetches until a pushed message with `body` arrives; returns every payload fetched.
    async fn fetch_until(&self, body: &str) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut all = Vec::new();
        loop {
            all.extend(self.fetch().await);
            if all.iter().any(|p| p["message"]["body"] == body) {
                return all;
            }
            assert!(
                Instant::now() < deadline,
                "no push with {body:?} reached the relay; got {all:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn bodies(payloads: &[Value]) -> Vec<String> {
    payloads.iter().map(|p| p["message"]["body"].as_str().unwrap_or_default().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_device_gets_each_message_once_through_its_relay_and_the_relay_reads_none() {
    let relay = TestRelay::start().await.expect("start a relay");
    let (node, cl) = setup_offering(&relay, &["alice", "bob"]).await;
    let (alice, bob) = (&cl[0], &cl[1]);
    let canary = format!("canary{:016x}", fastrand::u64(..));
    let push = TestPushService::start().await.expect("push service");
    let device = Device::enrol(bob, &relay, 3, Some(&push)).await;
    let (_, dm) = alice.dm(&["bob@local"]).await.must("dm");
    let mut alice_ws = alice.ws_ok(None).await;

    // Offline: the DM reaches bob's device through the relay, sealed, and the sender sees
    // `notification_sent`.
    let first = format!("{canary} one");
    let m1 = alice.send(&dm.id, &first).await.must("send");
    let got = device.fetch_until(&first).await;
    assert_eq!(bodies(&got), vec![first.clone()], "exactly one push");
    assert_eq!(got[0]["message"]["id"], m1.id.as_str());
    assert_eq!(got[0]["message"]["author"], "alice@local");
    alice_ws
        .wait_for("notification_sent", |v| {
            ev_type(v) == "message.state"
                && v["message_id"] == m1.id.as_str()
                && v["state"] == "notification_sent"
        })
        .await;
    assert_eq!(alice.get_message(&dm.id, &m1.id).await.must("get").state, "notification_sent");

    // Online as that device: nothing is pushed. Offline again: pushed again.
    let live = bob.ws_as_device(&device.id).await;
    let second = format!("{canary} two");
    let m2 = alice.send(&dm.id, &second).await.must("send");
    drop(live);
    // The live session marks it received; wait for that, so the session is surely counted.
    alice_ws
        .wait_for("received", |v| {
            ev_type(v) == "message.state" && v["message_id"] == m2.id.as_str()
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let third = format!("{canary} three");
    alice.send(&dm.id, &third).await.must("send");
    let got = device.fetch_until(&third).await;
    assert_eq!(bodies(&got), vec![third.clone()], "no push while live");

    // Channels notify on mentions by default.
    let channel = public_channel(alice, "general", &[bob]).await;
    alice.send(&channel.id, &format!("{canary} no mention")).await.must("send");
    let mention = format!("{canary} @bob look");
    alice.send(&channel.id, &mention).await.must("send");
    let got = device.fetch_until(&mention).await;
    assert_eq!(bodies(&got), vec![mention.clone()], "only the mention");

    // The relay held and logged ciphertext only.
    let mut stored = Vec::new();
    for entry in walk(relay.data_dir()) {
        stored.extend(std::fs::read(entry).expect("read relay file"));
    }
    let needle = canary.as_bytes();
    assert!(
        !stored.windows(needle.len()).any(|w| w == needle),
        "the canary is in the relay's data directory"
    );
    assert!(!relay.output().contains(&canary), "the canary is in the relay's logs");

    // One Web Push wake-up per pushed message (first, third, the mention), each decrypting to
    // a count and nothing of the message, with a VAPID token for the push service's origin.
    push.wait_for("3", 3, Duration::from_secs(10)).await.expect("three wake-ups");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pushes = push.pushes_to("3");
    assert_eq!(pushes.len(), 3, "{pushes:?}");
    for wake_up in &pushes {
        let plaintext = wake_up.plaintext.as_deref().expect("decrypts");
        let payload: Value = serde_json::from_slice(plaintext).expect("json");
        assert_eq!(payload["v"], 1, "{payload}");
        // A count taken when the wake-up is sent: 0 if the device already fetched and acked.
        assert!(payload["pending"].as_u64().is_some(), "{payload}");
        assert_eq!(payload.as_object().map(|o| o.len()), Some(2), "{payload}");
        for bytes in [plaintext, wake_up.body.as_slice()] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle));
        }
        assert_eq!(wake_up.audience.as_deref(), Some(push.origin()));
        assert_eq!(wake_up.headers["urgency"], "high");
    }
    drop(node);
}

/// A device that never subscribed to Web Push: the relay stores its envelope (the device reads
/// it when it connects) but reports that no wake-up went out, so the sender does not see
/// `notification_sent`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_without_a_push_subscription_is_not_reported_notified() {
    let relay = TestRelay::start().await.expect("start a relay");
    let (_node, cl) = setup_offering(&relay, &["alice", "bob"]).await;
    let (alice, bob) = (&cl[0], &cl[1]);
    let device = Device::enrol(bob, &relay, 4, None).await;
    let (_, dm) = alice.dm(&["bob@local"]).await.must("dm");
    let body = format!("no wake-up for this one {}", std::process::id());
    let message = alice.send(&dm.id, &body).await.must("send");
    let got = device.fetch_until(&body).await;
    assert_eq!(bodies(&got), vec![body.clone()]);
    // The relay answered before the device could fetch; give the node time to act on it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        alice.get_message(&dm.id, &message.id).await.must("get").state,
        "sent",
        "stored at the relay, but nobody was notified"
    );
}

/// The relay is down when a message for an offline device arrives: the node keeps the sealed
/// envelope and posts it again until the relay is back, which then holds it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_is_retried_until_the_relay_is_back() {
    let mut relay = TestRelay::start().await.expect("start a relay");
    let (_node, cl) = setup_offering(&relay, &["alice", "bob"]).await;
    let (alice, bob) = (&cl[0], &cl[1]);
    let push = TestPushService::start().await.expect("push service");
    let device = Device::enrol(bob, &relay, 9, Some(&push)).await;
    let (_, dm) = alice.dm(&["bob@local"]).await.must("dm");
    relay.kill9();
    let body = format!("sent while the relay was down {}", std::process::id());
    let message = alice.send(&dm.id, &body).await.must("send");
    // Two attempts fail (0.5 s and 1 s apart by default).
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(
        alice.get_message(&dm.id, &message.id).await.must("get").state,
        "sent",
        "not pushed while the relay is down"
    );
    relay.start_again().await.expect("restart the relay");
    assert!(
        reaches_state(alice, &dm.id, &message.id, "notification_sent", Duration::from_secs(20))
            .await,
        "the push was never retried"
    );
    let got = device.fetch_until(&body).await;
    assert_eq!(bodies(&got), vec![body.clone()], "exactly one envelope");
    assert!(device.fetch().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_device_reads_its_messages_from_the_relay_while_its_node_is_down() {
    let relay = TestRelay::start().await.expect("start a relay");
    let (mut node, cl) = setup_offering(&relay, &["alice", "bob"]).await;
    let (alice, bob) = (&cl[0], &cl[1]);
    let push = TestPushService::start().await.expect("push service");
    let device = Device::enrol(bob, &relay, 7, Some(&push)).await;
    let (_, dm) = alice.dm(&["bob@local"]).await.must("dm");
    let mut sent = Vec::new();
    for i in 0..5 {
        let m = alice.send(&dm.id, &format!("while you were out {i}")).await.must("send");
        sent.push(m.id);
    }
    // Every message was handed to the relay before the node goes down.
    for id in &sent {
        assert!(
            reaches_state(alice, &dm.id, id, "notification_sent", Duration::from_secs(15)).await,
            "message {id} was never pushed"
        );
    }
    node.kill9();

    let mut got: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < sent.len() {
        got.extend(
            device
                .fetch()
                .await
                .iter()
                .map(|p| p["message"]["id"].as_str().unwrap_or_default().to_string()),
        );
        assert!(Instant::now() < deadline, "only {got:?} of {sent:?}");
    }
    got.sort();
    let mut want = sent.clone();
    want.sort();
    assert_eq!(got, want, "each message exactly once, with the node down");
    assert!(device.fetch().await.is_empty(), "acknowledged envelopes are gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_registration_checks_keys_names_and_capabilities() {
    let relay = TestRelay::start().await.expect("start a relay");
    let (_node, cl) = setup_offering(&relay, &["alice", "bob"]).await;
    let (alice, bob) = (&cl[0], &cl[1]);
    let device = Device::enrol(bob, &relay, 5, None).await;

    // Devices are the user's own: listed for them, signed for everyone.
    let list: Value = bob.call(Method::GET, "/devices", None).await.must("list");
    assert_eq!(list["devices"].as_array().map(Vec::len), Some(1));
    let error = alice
        .call::<Value>(
            Method::PUT,
            &format!("/devices/{}/relay", device.id),
            Some(json!({"relay": null})),
        )
        .await
        .expect_err("not alice's device");
    assert_eq!((error.status, error.code.as_str()), (404, "not_found"), "{error}");
    let signed: confab_protocol::devices::SignedDeviceList =
        alice.call(Method::GET, "/users/bob@local/devices", None).await.must("signed list");
    signed.verify().expect("signed by the organisation");
    assert_eq!(signed.list.devices.len(), 1);
    assert_eq!(signed.list.devices[0].signing_key, device.signing.public());

    // Bad input: a clear error, nothing stored.
    let bad = |name: &str, signing: String, sealing: String| json!({"name": name, "signing_key": signing, "sealing_key": sealing});
    let other = DeviceKey::from_seed([9; 32]).public().to_string();
    let sealing =
        confab_protocol::devices::SealingKey::from_bytes(x25519_public([8; 32])).to_string();
    for (body, code) in [
        (bad("", other.clone(), sealing.clone()), "invalid_name"),
        (
            bad(
                "x",
                other.clone(),
                confab_protocol::devices::SealingKey::from_bytes([0; 32]).to_string(),
            ),
            "invalid_key",
        ),
        (bad("x", device.signing.public().to_string(), sealing.clone()), "device_exists"),
    ] {
        let error =
            bob.call::<Value>(Method::POST, "/devices", Some(body)).await.expect_err("refused");
        assert_eq!(error.code, code, "{error}");
    }
    // A capability for another organisation, or signed by another key, is refused.
    let stranger = DeviceKey::from_seed([11; 32]);
    let push: Value = bob.call(Method::GET, "/push", None).await.must("push");
    let org = push["org"].as_str().expect("org").parse().expect("org id");
    for capability in [
        CapabilityToken::issue(
            &stranger,
            device.queue,
            CapabilityId::from_bytes([1; 16]),
            org,
            in_thirty_days(),
        ),
        CapabilityToken::issue(
            &device.signing,
            device.queue,
            CapabilityId::from_bytes([1; 16]),
            confab_protocol::OrgKey::from_seed([4; 32]).id(),
            in_thirty_days(),
        ),
    ] {
        let error = bob
            .call::<Value>(
                Method::PUT,
                &format!("/devices/{}/relay", device.id),
                Some(json!({"relay": {"url": device.relay, "queue": device.queue.to_string(),
                                      "capability": capability.to_text()}})),
            )
            .await
            .expect_err("refused");
        assert_eq!(error.code, "invalid_capability", "{error}");
    }

    // A message waits at the relay for the offline device when it is removed.
    let (_, dm) = alice.dm(&["bob@local"]).await.must("dm");
    alice.send(&dm.id, "before removal").await.must("send");
    assert!(
        relay_metric_reaches(&relay, "confab_relay_queue_depth", 1).await,
        "the message never reached the relay"
    );

    // Revoked: gone from both lists, no longer pushed to, and the node renounced its
    // capability at the relay, which deleted the waiting envelope (the device may be lost).
    assert_eq!(
        bob.call_empty(Method::DELETE, &format!("/devices/{}", device.id)).await.must("revoke"),
        204
    );
    let signed: confab_protocol::devices::SignedDeviceList =
        alice.call(Method::GET, "/users/bob@local/devices", None).await.must("signed list");
    assert!(signed.list.devices.is_empty());
    assert!(
        relay_metric_reaches(&relay, "confab_relay_purged_total", 1).await,
        "the relay never heard of the removal"
    );
    alice.send(&dm.id, "after revocation").await.must("send");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(device.fetch().await.is_empty(), "a revoked device is not pushed to");
}

/// Removing a device while its relay is down, then killing the node: the renunciation was
/// recorded with the removal, so the restarted node gives up the capability once the relay is
/// back, and the relay deletes the envelope the lost device could otherwise still fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renunciation_survives_a_relay_outage_and_a_node_crash() {
    let mut relay = TestRelay::start().await.expect("start a relay");
    let (mut node, cl) = setup_offering_with(
        &relay,
        "retries_max = 1\nretry_delay_ms = 100\nrenounce_retry_interval_s = 1",
        &["alice", "bob"],
    )
    .await;
    let (alice, bob) = (&cl[0], &cl[1]);
    let device = Device::enrol(bob, &relay, 21, None).await;
    let (_, dm) = alice.dm(&["bob@local"]).await.must("dm");
    alice.send(&dm.id, "waits for the lost device").await.must("send");
    // `enqueued_total` counts envelopes on disk (the depth gauge moves before the flush, so
    // killing the relay on it could lose the envelope the test needs).
    assert!(
        relay_metric_reaches(&relay, "confab_relay_enqueued_total", 1).await,
        "the message never reached the relay"
    );

    relay.kill9();
    assert_eq!(
        bob.call_empty(Method::DELETE, &format!("/devices/{}", device.id))
            .await
            .must("remove the device"),
        204
    );
    // Let the node try (and fail) while the relay is down, then crash it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    node.kill9();
    relay.start_again().await.expect("restart the relay");
    assert_eq!(relay.metric("confab_relay_queue_depth").await, Some(1));
    node.start_again().await;
    assert!(
        relay_metric_reaches(&relay, "confab_relay_purged_total", 1).await,
        "the restarted node never renounced:\n{}",
        node.log_tail(30)
    );
    assert_eq!(relay.metric("confab_relay_queue_depth").await, Some(0));
    assert_eq!(relay.metric("confab_relay_purged_total").await, Some(1), "renounced once");
}

/// A node offering `relay` as its default (a node pushes only through relays it offers) with
/// the users `names`.
async fn setup_offering(relay: &TestRelay, names: &[&str]) -> (TestNode, Vec<Client>) {
    setup_offering_with(relay, "", names).await
}

/// [`setup_offering`] with more `[push]` settings (TOML lines).
async fn setup_offering_with(
    relay: &TestRelay,
    push_settings: &str,
    names: &[&str],
) -> (TestNode, Vec<Client>) {
    let opts = NodeOptions {
        config: Some(format!("[push]\ndefault_relay_url = \"{}\"\n{push_settings}\n", relay.url())),
        ..NodeOptions::default()
    };
    confab_tests::node_with_users_opts(names, opts).await
}

/// Whether the relay's Prometheus metric `name` reaches `value` within 10 s.
async fn relay_metric_reaches(relay: &TestRelay, name: &str, value: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if relay.metric(name).await == Some(value) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A capability expiry within the relay's 400-day limit.
fn in_thirty_days() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    now + 30 * 24 * 3600 * 1000
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
