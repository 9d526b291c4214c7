//! A Web Push service on 127.0.0.1 standing in for the browser vendor's: it takes the relay's
//! RFC 8030 pushes, decrypts each with the subscription's key (RFC 8291) and keeps it, so tests
//! can check what a push carried and where it went. Every subscription it hands out uses the
//! RFC 8291 §5 receiver key pair; endpoints differ by name.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use confab_protocol::relay::b64_decode;
use confab_relay::push::{decrypt, UaKeys};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The RFC 8291 §5 user agent: public key, authentication secret and private key.
const UA_PUBLIC: &str =
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
const UA_AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";
const UA_SECRET: &str = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94";

/// One push as the service received it.
#[derive(Clone, Debug)]
pub struct Push {
    /// The endpoint's name (`/push/{name}`).
    pub name: String,
    pub headers: HeaderMap,
    /// The encrypted body, as sent.
    pub body: Vec<u8>,
    /// The decrypted payload (`None` if it did not decrypt).
    pub plaintext: Option<Vec<u8>>,
    /// The VAPID token's `aud` claim.
    pub audience: Option<String>,
}

#[derive(Default)]
struct Shared {
    pushes: Mutex<Vec<Push>>,
}

pub struct TestPushService {
    base: String,
    shared: Arc<Shared>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl TestPushService {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/push/{name}", post(receive))
            .with_state(shared.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self {
            base,
            shared,
            _stop: stop,
        })
    }

    /// The origin (`http://127.0.0.1:port`): what a VAPID `aud` must say.
    pub fn origin(&self) -> &str {
        &self.base
    }

    pub fn endpoint(&self, name: &str) -> String {
        format!("{}/push/{name}", self.base)
    }

    /// A browser's `PushSubscription.toJSON()` for the endpoint `name`.
    pub fn subscription(&self, name: &str) -> Value {
        json!({"endpoint": self.endpoint(name), "keys": {"p256dh": UA_PUBLIC, "auth": UA_AUTH}})
    }

    /// The pushes that arrived for the endpoint `name`, oldest first.
    pub fn pushes_to(&self, name: &str) -> Vec<Push> {
        lock(&self.shared.pushes)
            .iter()
            .filter(|push| push.name == name)
            .cloned()
            .collect()
    }

    /// Waits until at least `count` pushes arrived for `name`; `None` after `timeout`.
    pub async fn wait_for(&self, name: &str, count: usize, timeout: Duration) -> Option<Vec<Push>> {
        let deadline = Instant::now() + timeout;
        loop {
            let pushes = self.pushes_to(name);
            if pushes.len() >= count {
                return Some(pushes);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let plaintext = ua_keys().and_then(|(keys, secret)| decrypt(&keys, &secret, &body).ok());
    let audience = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(vapid_audience);
    lock(&shared.pushes).push(Push {
        name,
        headers,
        body: body.to_vec(),
        plaintext,
        audience,
    });
    StatusCode::CREATED
}

fn ua_keys() -> Option<(UaKeys, [u8; 32])> {
    let p256dh = b64_decode(UA_PUBLIC)?.try_into().ok()?;
    let auth = b64_decode(UA_AUTH)?.try_into().ok()?;
    let secret = b64_decode(UA_SECRET)?.try_into().ok()?;
    Some((UaKeys { p256dh, auth }, secret))
}

/// The `aud` claim of `vapid t=<JWT>,k=<key>` (the signature is the relay's own tests' business).
fn vapid_audience(header: &str) -> Option<String> {
    let token = header.strip_prefix("vapid t=")?.split(',').next()?;
    let claims = b64_decode(token.split('.').nth(1)?)?;
    let claims: Value = serde_json::from_slice(&claims).ok()?;
    Some(claims["aud"].as_str()?.to_string())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
