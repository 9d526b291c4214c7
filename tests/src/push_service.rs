//! A Web Push service on 127.0.0.1 standing in for the browser vendor's: it takes the relay's
//! RFC 8030 pushes, decrypts each with the subscription's key (RFC 8291) and keeps it, so tests
//! can check what a push carried and where it went. Every subscription it hands out uses the
//! RFC 8291 §5 receiver key pair; endpoints differ by name.
//!
//! It also speaks Firefox's side of Mozilla's push protocol (autopush's WebSocket protocol:
//! `hello`, `register`, `notification`, `ack`), so a real Firefox pointed at it with the
//! `dom.push.serverURL` pref subscribes for real: `PushManager.subscribe` registers a channel
//! here and gets an endpoint `/wpush/{channel}`; what the relay posts there is handed to that
//! Firefox still encrypted, Firefox decrypts it with its own keys, and its `ack` (code 100:
//! delivered to the service worker; 101: it did not decrypt) is kept for the test.

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use confab_protocol::relay::{b64_decode, b64_encode};
use confab_relay::push::{decrypt, UaKeys};
use serde_json::{json, Value};
use std::collections::HashMap;
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

/// Firefox's answer to one notification (autopush `ack` or `nack`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    pub channel: String,
    pub version: String,
    /// 100: delivered; 101: decryption failed; 102: other error (a `nack` carries its own).
    pub code: u64,
}

#[derive(Default)]
struct Shared {
    base: String,
    pushes: Mutex<Vec<Push>>,
    autopush: Mutex<Autopush>,
}

/// The autopush side: which browser (user agent id) holds which channel, the browsers
/// connected now, notifications waiting for a browser to connect, and the browsers' acks.
#[derive(Default)]
struct Autopush {
    channels: HashMap<String, String>,
    /// The application server key each channel was registered with (base64url, unpadded).
    keys: HashMap<String, String>,
    sessions: HashMap<String, tokio::sync::mpsc::Sender<String>>,
    waiting: HashMap<String, Vec<String>>,
    acks: Vec<Ack>,
    versions: u64,
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
        let shared = Arc::new(Shared { base: base.clone(), ..Shared::default() });
        let app = Router::new()
            .route("/push/{name}", post(receive))
            .route("/wpush/{channel}", post(receive_for_firefox))
            .route("/autopush", get(autopush_socket))
            .with_state(shared.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self { base, shared, _stop: stop })
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
        lock(&self.shared.pushes).iter().filter(|push| push.name == name).cloned().collect()
    }

    /// The URL for Firefox's `dom.push.serverURL` pref.
    pub fn autopush_url(&self) -> String {
        format!("{}/autopush", self.base.replacen("http://", "ws://", 1))
    }

    /// The channels Firefox registered (`PushManager.subscribe`), in no order, each with the
    /// application server key it was registered with (base64url without padding).
    pub fn channels(&self) -> Vec<(String, String)> {
        let autopush = lock(&self.shared.autopush);
        autopush
            .channels
            .keys()
            .map(|channel| {
                let key = autopush.keys.get(channel).cloned().unwrap_or_default();
                (channel.clone(), key)
            })
            .collect()
    }

    /// Firefox's acks, oldest first.
    pub fn acks(&self) -> Vec<Ack> {
        lock(&self.shared.autopush).acks.clone()
    }

    /// Waits until Firefox answered at least `count` notifications; `None` after `timeout`.
    pub async fn wait_for_acks(&self, count: usize, timeout: Duration) -> Option<Vec<Ack>> {
        at_least(count, timeout, || self.acks()).await
    }

    /// Waits until at least `count` pushes arrived for `name`; `None` after `timeout`.
    pub async fn wait_for(&self, name: &str, count: usize, timeout: Duration) -> Option<Vec<Push>> {
        at_least(count, timeout, || self.pushes_to(name)).await
    }
}

/// Polls `read` until it answers at least `count` items; `None` after `timeout`.
async fn at_least<T>(count: usize, timeout: Duration, read: impl Fn() -> Vec<T>) -> Option<Vec<T>> {
    let deadline = Instant::now() + timeout;
    loop {
        let items = read();
        if items.len() >= count {
            return Some(items);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let plaintext = ua_keys().and_then(|(keys, secret)| decrypt(&keys, &secret, &body).ok());
    let audience = audience_of(&headers);
    lock(&shared.pushes).push(Push { name, headers, body: body.to_vec(), plaintext, audience });
    StatusCode::CREATED
}

/// A push for a Firefox channel: kept (it cannot be decrypted here: the keys are Firefox's)
/// and handed to the Firefox holding the channel, now or when it next connects.
async fn receive_for_firefox(
    State(shared): State<Arc<Shared>>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let audience = audience_of(&headers);
    let encoding = headers
        .get("content-encoding")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_string();
    lock(&shared.pushes).push(Push {
        name: channel.clone(),
        headers,
        body: body.to_vec(),
        plaintext: None,
        audience,
    });
    let delivery = {
        let mut autopush = lock(&shared.autopush);
        let Some(uaid) = autopush.channels.get(&channel).cloned() else {
            return StatusCode::GONE;
        };
        autopush.versions += 1;
        let notification = json!({
            "messageType": "notification",
            "channelID": channel,
            "version": format!("v{}", autopush.versions),
            "data": b64_encode(&body),
            "headers": {"encoding": encoding},
        })
        .to_string();
        match autopush.sessions.get(&uaid).cloned() {
            Some(session) => Some((session, notification)),
            None => {
                autopush.waiting.entry(uaid).or_default().push(notification);
                None
            }
        }
    };
    if let Some((session, notification)) = delivery {
        let _ = session.send(notification).await;
    }
    StatusCode::CREATED
}

async fn autopush_socket(State(shared): State<Arc<Shared>>, upgrade: WebSocketUpgrade) -> Response {
    upgrade
        .protocols(["push-notification"])
        .on_upgrade(move |socket| autopush_session(shared, socket))
}

/// One Firefox connection: `hello` names (or gets) its user agent id, `register` and
/// `unregister` manage channels, `ack`/`nack` answer notifications, `{}` is a ping.
async fn autopush_session(shared: Arc<Shared>, mut socket: WebSocket) {
    let (outgoing, mut to_send) = tokio::sync::mpsc::channel::<String>(64);
    let mut uaid: Option<String> = None;
    loop {
        let text = tokio::select! {
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => text.to_string(),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Binary(_))) => continue,
                _ => break,
            },
            Some(notification) = to_send.recv() => {
                if socket.send(Message::Text(notification.into())).await.is_err() {
                    break;
                }
                continue;
            }
        };
        let request: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let reply = match request["messageType"].as_str() {
            Some("hello") => {
                let id = request["uaid"]
                    .as_str()
                    .filter(|id| !id.is_empty())
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{:032x}", fastrand::u128(..)));
                let waiting = {
                    let mut autopush = lock(&shared.autopush);
                    autopush.sessions.insert(id.clone(), outgoing.clone());
                    autopush.waiting.remove(&id).unwrap_or_default()
                };
                for notification in waiting {
                    let _ = outgoing.try_send(notification);
                }
                uaid = Some(id.clone());
                json!({"messageType": "hello", "status": 200, "uaid": id, "use_webpush": true, "broadcasts": {}})
            }
            Some("register") => {
                let channel = request["channelID"].as_str().unwrap_or("").to_string();
                if let Some(id) = &uaid {
                    let key = request["key"].as_str().unwrap_or("").trim_end_matches('=');
                    let mut autopush = lock(&shared.autopush);
                    autopush.channels.insert(channel.clone(), id.clone());
                    autopush.keys.insert(channel.clone(), key.to_string());
                }
                json!({"messageType": "register", "channelID": channel, "status": 200,
                       "pushEndpoint": format!("{}/wpush/{channel}", shared.base)})
            }
            Some("unregister") => {
                let channel = request["channelID"].as_str().unwrap_or("").to_string();
                lock(&shared.autopush).channels.remove(&channel);
                json!({"messageType": "unregister", "channelID": channel, "status": 200})
            }
            Some("ack") => {
                let mut autopush = lock(&shared.autopush);
                for update in request["updates"].as_array().into_iter().flatten() {
                    autopush.acks.push(Ack {
                        channel: update["channelID"].as_str().unwrap_or("").to_string(),
                        version: update["version"].as_str().unwrap_or("").to_string(),
                        code: update["code"].as_u64().unwrap_or(0),
                    });
                }
                continue;
            }
            Some("nack") => {
                lock(&shared.autopush).acks.push(Ack {
                    channel: String::new(),
                    version: request["version"].as_str().unwrap_or("").to_string(),
                    code: request["code"].as_u64().unwrap_or(0),
                });
                continue;
            }
            _ => json!({}),
        };
        if socket.send(Message::Text(reply.to_string().into())).await.is_err() {
            break;
        }
    }
    if let Some(id) = uaid {
        lock(&shared.autopush).sessions.remove(&id);
    }
}

fn ua_keys() -> Option<(UaKeys, [u8; 32])> {
    let p256dh = b64_decode(UA_PUBLIC)?.try_into().ok()?;
    let auth = b64_decode(UA_AUTH)?.try_into().ok()?;
    let secret = b64_decode(UA_SECRET)?.try_into().ok()?;
    Some((UaKeys { p256dh, auth }, secret))
}

/// The VAPID `aud` claim of a push's `Authorization` header.
fn audience_of(headers: &HeaderMap) -> Option<String> {
    headers.get("authorization").and_then(|value| value.to_str().ok()).and_then(vapid_audience)
}

/// The `aud` claim of `vapid t=<JWT>,k=<key>` (the signature is the relay's own tests' business).
fn vapid_audience(header: &str) -> Option<String> {
    let token = header.strip_prefix("vapid t=")?.split(',').next()?;
    let claims = b64_decode(token.split('.').nth(1)?)?;
    let claims: Value = serde_json::from_slice(&claims).ok()?;
    Some(claims["aud"].as_str()?.to_string())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
