//! Test harness: a relay in this process (`TestRelay`) or as the real binary (`BinRelay`), both on
//! 127.0.0.1:0 with sled on disk, and a device/node client that speaks the wire protocol.

use confab_protocol::relay::{
    b64_decode, b64_encode, seal, x25519_public, CapabilityId, CapabilityToken, ChallengePurpose,
    DeviceKey, EnqueueFields, EnqueueRequest, EnvelopeId, QueueId, Topic, Urgency,
};
use confab_protocol::OrgKey;
use confab_relay::Config;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("randomness");
    bytes
}

pub fn now_ms() -> u64 {
    confab_relay::push::now_ms()
}

/// A relay running inside the test process.
pub struct TestRelay {
    pub base: String,
    pub dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), confab_relay::RelayError>>>,
}

impl TestRelay {
    pub async fn start(configure: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, configure).await
    }

    pub async fn start_in(dir: tempfile::TempDir, configure: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config {
            data_dir: dir.path().join("data"),
            allow_private_push_endpoints: true,
            allow_http_push_endpoints: true,
            sweep_interval_ms: 50,
            ..Config::default()
        };
        configure(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(confab_relay::run(listener, config, async move {
            let _ = rx.await;
        }));
        Self { base, dir, shutdown: Some(tx), task: Some(task) }
    }

    /// Stops gracefully and returns the data directory for a restart.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("join").expect("relay ran");
        }
        // Wait for sled to release the directory lock.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let dir = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self.dir, dir)
    }

    pub fn client(&self) -> Client {
        Client::new(&self.base)
    }
}

/// The real `confab-relay` binary, for kill -9 and log capture.
pub struct BinRelay {
    pub base: String,
    pub child: Child,
}

impl BinRelay {
    pub fn spawn(data_dir: &Path, log_path: &Path, extra: &[&str]) -> Self {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(log_path).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_confab-relay"))
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(["--allow-private-push-endpoints", "true", "--allow-http-push-endpoints", "true"])
            .args(extra)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn confab-relay");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read the listening line");
        let base = line
            .trim()
            .strip_prefix("confab-relay listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Self { base, child }
    }

    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait");
    }

    /// SIGTERM, then wait for the graceful exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        self.child.wait().expect("wait")
    }

    pub fn client(&self) -> Client {
        Client::new(&self.base)
    }
}

/// A device: its keys and its queue on the relay.
pub struct Device {
    pub key: DeviceKey,
    pub x25519_secret: [u8; 32],
    pub queue: QueueId,
}

impl Device {
    pub fn x25519_public(&self) -> [u8; 32] {
        x25519_public(self.x25519_secret)
    }

    pub fn capability(&self, org: &OrgKey) -> CapabilityToken {
        self.capability_until(org, now_ms() + 3_600_000)
    }

    pub fn capability_until(&self, org: &OrgKey, not_after_ms: u64) -> CapabilityToken {
        CapabilityToken::issue(
            &self.key,
            self.queue,
            CapabilityId::from_bytes(random()),
            org.id(),
            not_after_ms,
        )
    }
}

/// What a node sends, with knobs for the tests.
pub struct Send<'a> {
    pub org: &'a OrgKey,
    pub device: &'a Device,
    pub capability: CapabilityToken,
    pub envelope_id: EnvelopeId,
    pub plaintext: Vec<u8>,
    pub ttl_s: u32,
    pub urgency: Urgency,
    pub topic: Option<Topic>,
}

impl<'a> Send<'a> {
    pub fn new(org: &'a OrgKey, device: &'a Device, plaintext: &[u8]) -> Self {
        Self {
            org,
            device,
            capability: device.capability(org),
            envelope_id: EnvelopeId::from_bytes(random()),
            plaintext: plaintext.to_vec(),
            ttl_s: 3600,
            urgency: Urgency::Normal,
            topic: None,
        }
    }

    pub fn with_cap(mut self, capability: &CapabilityToken) -> Self {
        self.capability = capability.clone();
        self
    }

    pub fn request(&self) -> EnqueueRequest {
        let sealed =
            seal(&self.device.x25519_public(), &self.plaintext, random()).expect("seal").encode();
        EnqueueRequest::sign(
            self.org,
            EnqueueFields {
                queue: self.device.queue,
                envelope_id: self.envelope_id,
                sent_ms: now_ms(),
                ttl_s: self.ttl_s,
                urgency: self.urgency,
                topic: self.topic.clone(),
                sealed,
                capability: self.capability.clone(),
            },
        )
    }
}

/// An HTTP answer: status, `Retry-After` and the JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub retry_after: Option<String>,
    pub body: Value,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        }
    }

    async fn answer(response: reqwest::Response) -> Answer {
        let status = response.status();
        let retry_after =
            response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer { status, retry_after, body }
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .expect("request");
        Self::answer(response).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Answer {
        let response =
            self.http.put(format!("{}{path}", self.base)).json(body).send().await.expect("request");
        Self::answer(response).await
    }

    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Answer {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request");
        Self::answer(response).await
    }

    pub async fn get_text(&self, path: &str) -> String {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request")
            .text()
            .await
            .expect("text")
    }

    pub async fn challenge(&self) -> [u8; 32] {
        let answer = self.post("/v1/challenges", &json!({})).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
        let bytes =
            b64_decode(answer.body["challenge"].as_str().expect("challenge")).expect("base64url");
        bytes.try_into().expect("32 bytes")
    }

    pub async fn register_with(&self, push: Option<Value>) -> (Device, Answer) {
        let key = DeviceKey::from_seed(random());
        let challenge = self.challenge().await;
        let signature = key.answer(ChallengePurpose::Register, &challenge, None);
        let mut body = json!({
            "device_key": key.public(),
            "auth": { "challenge": b64_encode(&challenge), "signature": b64_encode(&signature.0) },
        });
        if let Some(push) = push {
            body["push"] = push;
        }
        let answer = self.post("/v1/queues", &body).await;
        let queue = answer.body["queue"]
            .as_str()
            .and_then(|q| q.parse().ok())
            .unwrap_or(QueueId::from_bytes([0; 16]));
        (Device { key, x25519_secret: random(), queue }, answer)
    }

    pub async fn register(&self) -> Device {
        let (device, answer) = self.register_with(None).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
        device
    }

    pub async fn enqueue(&self, request: &EnqueueRequest) -> Answer {
        self.post(
            &format!("/v1/queues/{}/envelopes", request.queue),
            &serde_json::to_value(request).expect("json"),
        )
        .await
    }

    pub async fn auth(&self, device: &Device, purpose: ChallengePurpose) -> Value {
        let challenge = self.challenge().await;
        let signature = device.key.answer(purpose, &challenge, Some(device.queue));
        json!({ "challenge": b64_encode(&challenge), "signature": b64_encode(&signature.0) })
    }

    /// Fetches (acknowledging `ack` first) and returns the answer.
    pub async fn fetch(&self, device: &Device, ack: &[EnvelopeId]) -> Answer {
        let auth = self.auth(device, ChallengePurpose::Fetch).await;
        self.post(
            &format!("/v1/queues/{}/fetch", device.queue),
            &json!({ "auth": auth, "ack": ack }),
        )
        .await
    }

    pub async fn ack(&self, device: &Device, ids: &[EnvelopeId]) -> Answer {
        let auth = self.auth(device, ChallengePurpose::Fetch).await;
        self.post(
            &format!("/v1/queues/{}/ack", device.queue),
            &json!({ "auth": auth, "envelope_ids": ids }),
        )
        .await
    }

    /// Everything waiting for the device, opened: (envelope id, plaintext), oldest first.
    pub async fn drain(&self, device: &Device) -> Vec<(EnvelopeId, Vec<u8>)> {
        let answer = self.fetch(device, &[]).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        open_all(device, &answer.body)
    }

    pub async fn metric(&self, name: &str) -> u64 {
        let text = self.get_text("/metrics").await;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("metric {name} missing in\n{text}"))
    }
}

/// Opens every envelope of a fetch answer (or WebSocket batch).
pub fn open_all(device: &Device, body: &Value) -> Vec<(EnvelopeId, Vec<u8>)> {
    body["envelopes"]
        .as_array()
        .expect("envelopes")
        .iter()
        .map(|e| {
            let id: EnvelopeId = e["envelope_id"].as_str().expect("id").parse().expect("id");
            let sealed = b64_decode(e["sealed"].as_str().expect("sealed")).expect("b64");
            let sealed =
                confab_protocol::relay::SealedEnvelope::decode(&sealed).expect("sealed envelope");
            let plain = confab_protocol::relay::open(device.x25519_secret, &sealed).expect("opens");
            (id, plain)
        })
        .collect()
}

pub fn org() -> OrgKey {
    OrgKey::from_seed(random())
}

/// Counts occurrences of `needle` in every file under `dir`.
pub fn count_in_dir(dir: &Path, needle: &[u8]) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            n += count_in_dir(&path, needle);
        } else {
            let bytes = std::fs::read(&path).expect("read");
            n += bytes.windows(needle.len()).filter(|w| *w == needle).count();
        }
    }
    n
}
