//! Web Push against a fake push service (an axum server on 127.0.0.1:0 in this test): the RFC 8030
//! headers, no push for `very-low`, deletion of subscriptions answering 404/410, refusal of
//! private endpoints, and an independent referee — PyPI's `http_ece` and `py-vapid` in
//! `relay/tests/referee.py` — that decrypts every captured push and verifies its VAPID token.
//! The referee's prerequisites are installed by `.ci/run` (`ensure_relay_referee`); if they are
//! missing this test fails.

use crate::support::*;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::routing::post;
use axum::Router;
use confab_protocol::relay::{b64_encode, ChallengePurpose, Urgency};
use p256::elliptic_curve::sec1::ToSec1Point;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug)]
struct Captured {
    path: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

#[derive(Clone, Default)]
struct FakePush {
    captured: Arc<Mutex<Vec<Captured>>>,
}

async fn receive(
    State(fake): State<FakePush>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> AxumStatus {
    let headers = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    fake.captured.lock().expect("lock").push(Captured {
        path: format!("/push/{id}"),
        headers,
        body: body.to_vec(),
    });
    if id == "slow" {
        // Holds the relay's push worker, so its push channel fills up.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    }
    match id.as_str() {
        "gone" => AxumStatus::GONE,
        "missing" => AxumStatus::NOT_FOUND,
        "broken" => AxumStatus::INTERNAL_SERVER_ERROR,
        _ => AxumStatus::CREATED,
    }
}

impl FakePush {
    async fn start() -> (Self, String) {
        let fake = FakePush::default();
        let app = Router::new().route("/push/{id}", post(receive)).with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (fake, base)
    }

    fn count(&self) -> usize {
        self.captured.lock().expect("lock").len()
    }

    async fn wait_for(&self, n: usize) -> Vec<Captured> {
        for _ in 0..200 {
            if self.count() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let captured = self.captured.lock().expect("lock").clone();
        assert!(captured.len() >= n, "expected {n} pushes, got {}", captured.len());
        captured
    }
}

/// A browser's push subscription keys.
struct UaKeys {
    secret: [u8; 32],
    public: Vec<u8>,
    auth: [u8; 16],
}

impl UaKeys {
    fn new() -> Self {
        loop {
            let secret: [u8; 32] = random();
            if let Ok(key) = p256::SecretKey::from_slice(&secret) {
                let public = key.public_key().to_sec1_point(false).as_bytes().to_vec();
                return Self { secret, public, auth: random() };
            }
        }
    }

    fn subscription(&self, endpoint: &str) -> Value {
        json!({
            "endpoint": endpoint,
            "keys": { "p256dh": b64_encode(&self.public), "auth": b64_encode(&self.auth) },
        })
    }
}

fn referee_python() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("CONFAB_RELAY_REFEREE_PYTHON") {
        return path.into();
    }
    let home = std::env::var_os("HOME").expect("HOME");
    std::path::Path::new(&home).join(".cache/confab-relay-referee/bin/python3")
}

/// Runs `relay/tests/referee.py` on the captured pushes; panics (fails the test) if the referee
/// or its packages are missing or it rejects anything.
fn run_referee(ua: &UaKeys, pushes: &[(String, &Captured)]) -> Value {
    let (ok, stdout, stderr) = referee(ua, pushes);
    assert!(ok, "the referee rejected our pushes:\n{stdout}\n{stderr}");
    serde_json::from_str(&stdout).expect("referee output is JSON")
}

/// Runs the referee; (accepted, stdout, stderr).
fn referee(ua: &UaKeys, pushes: &[(String, &Captured)]) -> (bool, String, String) {
    let python = referee_python();
    assert!(
        python.exists(),
        "the Web Push referee is missing: {} does not exist. Install it with .ci/run's \
         ensure_relay_referee (python3 -m venv ~/.cache/confab-relay-referee && \
         ~/.cache/confab-relay-referee/bin/pip install http-ece==1.2.1 py-vapid==1.9.6)",
        python.display()
    );
    let case = json!({
        "ua_private": b64_encode(&ua.secret),
        "auth": b64_encode(&ua.auth),
        "pushes": pushes.iter().map(|(endpoint, c)| json!({
            "endpoint": endpoint,
            "headers": c.headers,
            "body": b64_encode(&c.body),
        })).collect::<Vec<_>>(),
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let case_path = dir.path().join("case.json");
    std::fs::write(&case_path, case.to_string()).expect("write case");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/referee.py");
    let output = std::process::Command::new(&python)
        .arg(script)
        .arg(&case_path)
        .output()
        .unwrap_or_else(|e| panic!("running the referee {}: {e}", python.display()));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn web_push_is_encrypted_authorised_and_content_free() {
    let (fake, push_base) = FakePush::start().await;
    let relay = TestRelay::start(|_| {}).await;
    let client = relay.client();
    let ua = UaKeys::new();
    let endpoint = format!("{push_base}/push/device-1");
    let (device, answer) = client.register_with(Some(ua.subscription(&endpoint))).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    let vapid_key = answer.body["vapid_public_key"].as_str().expect("key").to_owned();
    let org = org();
    let canary = format!("canary-{}", b64_encode(&random::<12>()));

    let mut send = Send::new(&org, &device, format!("{canary} hello").as_bytes());
    send.urgency = Urgency::High;
    send.topic = Some("chat-1".parse().expect("topic"));
    send.ttl_s = 600;
    let answer = client.enqueue(&send.request()).await;
    assert_eq!(answer.status, StatusCode::CREATED);
    assert_eq!(answer.body["push"], "queued", "{answer:?}");
    // A retry of the same request: the wake-up went with the first.
    let again = client.enqueue(&send.request()).await;
    assert_eq!(again.body["status"], "duplicate");
    assert_eq!(again.body["push"], "subscribed", "{again:?}");
    let captured = fake.wait_for(1).await;
    let push = &captured[0];
    assert_eq!(push.path, "/push/device-1");
    assert_eq!(push.headers["ttl"], "600");
    assert_eq!(push.headers["urgency"], "high");
    assert_eq!(push.headers["topic"], "chat-1");
    assert_eq!(push.headers["content-encoding"], "aes128gcm");
    let authorization = &push.headers["authorization"];
    assert!(authorization.starts_with("vapid t="), "{authorization}");
    assert!(authorization.ends_with(&format!(",k={vapid_key}")), "{authorization}");
    assert!(push.body.len() <= 4096);

    // A second push with normal urgency and no topic.
    let send2 = Send::new(&org, &device, format!("{canary} again").as_bytes());
    client.enqueue(&send2.request()).await;
    let captured = fake.wait_for(2).await;
    assert_eq!(captured[1].headers["urgency"], "normal");
    assert!(!captured[1].headers.contains_key("topic"));

    // very-low urgency: stored, but no wake-up.
    let mut quiet = Send::new(&org, &device, format!("{canary} quiet").as_bytes());
    quiet.urgency = Urgency::VeryLow;
    let answer = client.enqueue(&quiet.request()).await;
    assert_eq!(answer.status, StatusCode::CREATED);
    assert_eq!(answer.body["push"], "very_low", "{answer:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.count(), 2);
    assert_eq!(client.drain(&device).await.len(), 3);

    // The independent referee decrypts both pushes and verifies the VAPID tokens; the aud claim
    // carries the port.
    let captured = fake.wait_for(2).await;
    let pushes: Vec<(String, &Captured)> = captured.iter().map(|c| (endpoint.clone(), c)).collect();
    let verdict = run_referee(&ua, &pushes);
    assert_eq!(verdict["ok"], true);
    let results = verdict["pushes"].as_array().expect("pushes");
    assert_eq!(results.len(), 2);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["aud"], push_base.as_str());
        let plaintext = result["plaintext"].as_str().expect("plaintext");
        assert!(!plaintext.contains(&canary), "push body carries content");
        let wake: Value = serde_json::from_str(plaintext).expect("wake-up JSON");
        assert_eq!(wake["v"], 1);
        assert_eq!(wake["pending"], i + 1);
        assert_eq!(wake.as_object().map(|o| o.len()), Some(2), "only v and pending: {wake}");
    }
    for c in &captured {
        assert!(
            !c.body.windows(canary.len()).any(|w| w == canary.as_bytes()),
            "canary in a push body"
        );
    }
    assert_eq!(client.metric("confab_relay_push_sent_total").await, 2);

    // The referee is not a rubber stamp: an audience without the port, a tampered body and the
    // wrong subscription keys are all rejected.
    let port_less =
        endpoint.replacen(&format!(":{}", push_base.rsplit(':').next().expect("port")), "", 1);
    let (ok, _, stderr) = referee(&ua, &[(port_less, &captured[0])]);
    assert!(!ok && stderr.contains("aud"), "aud check: {stderr}");
    let mut tampered = captured[0].clone();
    let last = tampered.body.len() - 1;
    tampered.body[last] ^= 1;
    let (ok, _, _) = referee(&ua, &[(endpoint.clone(), &tampered)]);
    assert!(!ok, "tampered body accepted");
    let (ok, _, _) = referee(&UaKeys::new(), &[(endpoint.clone(), &captured[0])]);
    assert!(!ok, "wrong keys accepted");
    relay.stop().await;
}

#[tokio::test]
async fn subscriptions_answering_404_or_410_are_deleted() {
    let (fake, push_base) = FakePush::start().await;
    let relay = TestRelay::start(|_| {}).await;
    let client = relay.client();
    let org = org();
    let ua = UaKeys::new();
    let mut expected_pushes = 0;
    for (n, which) in ["gone", "missing"].into_iter().enumerate() {
        let (device, answer) = client
            .register_with(Some(ua.subscription(&format!("{push_base}/push/ok-{which}"))))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED);
        // The device moves its subscription (Manage signature) to one the service has dropped.
        let auth = client.auth(&device, ChallengePurpose::Manage).await;
        let answer = client
            .put(
                &format!("/v1/queues/{}/push", device.queue),
                &json!({ "auth": auth, "subscription": ua.subscription(&format!("{push_base}/push/{which}")) }),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        client.enqueue(&Send::new(&org, &device, b"one").request()).await;
        expected_pushes += 1;
        fake.wait_for(expected_pushes).await;
        for _ in 0..100 {
            if client.metric("confab_relay_push_subscriptions_deleted_total").await == n as u64 + 1
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            client.metric("confab_relay_push_subscriptions_deleted_total").await,
            n as u64 + 1
        );
        // No subscription any more: the next envelope is stored but pushes nothing.
        client.enqueue(&Send::new(&org, &device, b"two").request()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(fake.count(), expected_pushes);
        assert_eq!(client.drain(&device).await.len(), 2, "envelopes are kept");
    }
    // A failing (500) push service is counted but keeps the subscription.
    let (device, _) =
        client.register_with(Some(ua.subscription(&format!("{push_base}/push/broken")))).await;
    let failed_before = client.metric("confab_relay_push_failed_total").await;
    client.enqueue(&Send::new(&org, &device, b"x").request()).await;
    fake.wait_for(expected_pushes + 1).await;
    for _ in 0..100 {
        if client.metric("confab_relay_push_failed_total").await > failed_before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(client.metric("confab_relay_push_failed_total").await, failed_before + 1);
    client.enqueue(&Send::new(&org, &device, b"y").request()).await;
    fake.wait_for(expected_pushes + 2).await;
    assert_eq!(client.metric("confab_relay_push_subscriptions_deleted_total").await, 2);
    relay.stop().await;
}

/// When the push channel is full, the envelope is still stored and acknowledged, and the
/// answer says its wake-up was dropped (`push: "dropped"`, counted), never `queued`.
#[tokio::test]
async fn a_full_push_channel_drops_the_wake_up_and_keeps_the_envelope() {
    let (fake, push_base) = FakePush::start().await;
    let relay = TestRelay::start(|c| {
        c.limits.push_concurrency = 1;
        c.limits.push_queue_max = 1;
    })
    .await;
    let client = relay.client();
    let org = org();
    let ua = UaKeys::new();
    let (device, answer) =
        client.register_with(Some(ua.subscription(&format!("{push_base}/push/slow")))).await;
    assert_eq!(answer.status, StatusCode::CREATED);
    // One push in flight (held by the slow service), one waiting for the worker, one in the
    // channel: a later one finds it full.
    let mut reports = Vec::new();
    for n in 0..6u8 {
        let answer = client.enqueue(&Send::new(&org, &device, &[n]).request()).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
        assert_eq!(answer.body["status"], "queued");
        reports.push(answer.body["push"].as_str().unwrap_or("").to_string());
        if n == 0 {
            fake.wait_for(1).await;
        }
    }
    assert_eq!(reports[0], "queued");
    let dropped = reports.iter().filter(|r| *r == "dropped").count() as u64;
    assert!(dropped >= 1 && reports.iter().all(|r| r == "queued" || r == "dropped"), "{reports:?}");
    assert_eq!(client.metric("confab_relay_push_dropped_total").await, dropped);
    assert_eq!(client.drain(&device).await.len(), 6, "every envelope is kept");
    relay.stop().await;
}

#[tokio::test]
async fn private_and_insecure_push_endpoints_are_refused_by_default() {
    let relay = TestRelay::start(|c| {
        c.allow_private_push_endpoints = false;
        c.allow_http_push_endpoints = false;
    })
    .await;
    let client = relay.client();
    let ua = UaKeys::new();
    for endpoint in [
        "https://127.0.0.1/push/x",
        "https://10.1.2.3/push/x",
        "https://192.168.0.10:8443/push/x",
        "https://[::1]/push/x",
        "https://[fd00::1]/push/x",
        "https://localhost/push/x",
        "https://localhost./push/x",
        "https://api.localhost/push/x",
        "http://push.example.com/push/x",
        "ftp://push.example.com/x",
        "not a url",
    ] {
        let (_, answer) = client.register_with(Some(ua.subscription(endpoint))).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{endpoint}: {answer:?}");
        assert_eq!(answer.code(), "invalid_push_subscription", "{endpoint}");
    }
    // Bad keys.
    let bad = json!({ "endpoint": "https://push.example.com/p", "keys": { "p256dh": "AAAA", "auth": "AAAA" } });
    let (_, answer) = client.register_with(Some(bad)).await;
    assert_eq!(answer.code(), "invalid_push_subscription");
    // A public endpoint is accepted (not contacted here).
    let (_, answer) =
        client.register_with(Some(ua.subscription("https://push.example.com/push/x"))).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    relay.stop().await;
}
