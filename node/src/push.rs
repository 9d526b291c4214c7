//! Pushing messages to devices that are offline, through the relay each device chose.
//!
//! The [`Pusher`] follows the event hub (so it sees only flushed messages). For a new message
//! it finds the members it notifies (their notification level and do-not-disturb, as for the
//! chat list's mention counts), and for each of their devices that registered a relay and has
//! no live WebSocket it seals the message to the device's X25519 key, signs the enqueue
//! request with the organisation key and posts it to the relay. When the relay stored it and
//! reports a wake-up on its way to the device (`push: queued`), the engine marks the message
//! `notification_sent`; a device with no push subscription finds the envelope when it connects.
//!
//! A push is a wake-up and a preview, never the only copy: the device reads every message from
//! its node when it reconnects and shows each once (by message id). A push the relay did not
//! take for a passing reason (relay down, timeout, 429, 5xx) is retried with backoff, the same
//! sealed envelope each time (the relay is idempotent by envelope id), up to `retries_max`
//! times and never past shutdown; then, or when the queue is full, it is logged and counted.
//!
//! When a device is removed or leaves a relay queue, the engine records in the same
//! transaction that its capability is to be renounced (`renunciations/v1`); the renouncer here
//! posts each to its relay and forgets it once taken, so neither a stop nor a relay that is
//! down loses one.

use crate::config::PushConfig;
use crate::engine::{Command, EngineHandle};
use crate::events::{EventBody, EventHub};
use crate::model::{
    is_notifying, now_ms, DeviceRecord, MessageView, PendingRenunciation, RelayRegistration,
};
use crate::store::{KvRead, KvStore, Tree};
use crate::views;
use confab_protocol::relay::{
    seal, CapabilityToken, EnqueueFields, EnqueueRequest, EnvelopeId, RenounceRequest, Urgency,
};
use confab_protocol::{DeviceId, OrgKey, UserId};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};

/// Longest message body carried in a push; a longer one is cut (`"truncated": true`) and the
/// device reads the whole message from its node. Keeps envelopes under the relay's 64 KiB.
const PUSH_BODY_BYTES_MAX: usize = 16 * 1024;

/// Devices with a live WebSocket session: they get events directly and are not pushed to.
pub type LiveDevices = crate::live_count::LiveCount<DeviceId>;

/// Counters, logged on shutdown and readable by tests.
#[derive(Default, Debug)]
pub struct PushCounters {
    pub accepted: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
    /// Attempts after the first.
    pub retried: AtomicU64,
    /// Stored by the relay without waking the device (it has no push subscription, say).
    pub unwoken: AtomicU64,
    /// Capabilities given up at a relay (a device removed), and attempts that failed.
    pub renounced: AtomicU64,
    pub renounce_failed: AtomicU64,
}

/// Why a relay did not take an envelope.
#[derive(Debug)]
struct PostError {
    message: String,
    /// Worth another attempt (no answer, a timeout, 408, 429, 5xx).
    passing: bool,
    /// The relay's `Retry-After`, in seconds.
    retry_after_s: Option<u64>,
    /// The relay's HTTP status, when it answered.
    status: Option<u16>,
}

impl PostError {
    fn refused(message: impl Into<String>) -> Self {
        Self { message: message.into(), passing: false, retry_after_s: None, status: None }
    }

    fn passing(message: impl Into<String>) -> Self {
        Self { message: message.into(), passing: true, retry_after_s: None, status: None }
    }
}

/// The wait before retry number `retry` (0 for the first): `base` doubled per retry, at most
/// `max`, or the relay's `Retry-After` when longer (itself at most `max`).
fn retry_delay(base_ms: u64, max_ms: u64, retry: u32, retry_after_s: Option<u64>) -> Duration {
    let backoff = base_ms.saturating_mul(1u64 << retry.min(20)).min(max_ms);
    let asked = retry_after_s.map_or(0, |s| s.saturating_mul(1000)).min(max_ms);
    Duration::from_millis(backoff.max(asked))
}

type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<bytes::Bytes>,
>;

/// The push side of the node: which devices can be pushed to, and the sender.
pub struct Pusher {
    store: Arc<dyn KvStore>,
    key: OrgKey,
    engine: EngineHandle,
    config: PushConfig,
    pub live: Arc<LiveDevices>,
    /// Users with at least one device that registered a relay, and those devices. Kept in
    /// memory so a node with no such device pays nothing per message.
    relayed: RwLock<HashMap<UserId, Vec<DeviceRecord>>>,
    client: Client,
    pub counters: PushCounters,
    /// Set at shutdown: queued pushes get one attempt, none is retried.
    stopping: watch::Sender<bool>,
    /// Wakes the renouncer ([`Pusher::renounce_soon`]).
    renounce_wake: tokio::sync::Notify,
    /// The push queue, once [`Pusher::run`] made it (held weakly, so it still closes at
    /// shutdown): read for its length.
    queue: std::sync::OnceLock<mpsc::WeakSender<Job>>,
    /// Keys of the renunciations being attempted now.
    renouncing: Mutex<HashSet<Vec<u8>>>,
    /// Renunciations attempted at once (`concurrency`).
    renounce_slots: tokio::sync::Semaphore,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("push client: {0}")]
    Client(String),
    #[error("storage: {0}")]
    Store(#[from] crate::store::StoreError),
}

impl Pusher {
    pub fn new(
        store: Arc<dyn KvStore>,
        key: OrgKey,
        engine: EngineHandle,
        config: PushConfig,
    ) -> Result<Arc<Self>, PushError> {
        let timeout = Duration::from_millis(config.request_timeout_ms);
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        http.set_nodelay(true);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map_err(|error| PushError::Client(error.to_string()))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_max_idle_per_host(4)
                .build(connector);
        let pusher = Self {
            store,
            key,
            engine,
            live: Arc::new(LiveDevices::default()),
            relayed: RwLock::new(HashMap::new()),
            client,
            counters: PushCounters::default(),
            stopping: watch::channel(false).0,
            renounce_wake: tokio::sync::Notify::new(),
            queue: std::sync::OnceLock::new(),
            renouncing: Mutex::new(HashSet::new()),
            renounce_slots: tokio::sync::Semaphore::new(config.concurrency.max(1)),
            config,
        };
        pusher.load()?;
        Ok(Arc::new(pusher))
    }

    /// Reads every device with a relay.
    fn load(&self) -> Result<(), PushError> {
        let mut relayed: HashMap<UserId, Vec<DeviceRecord>> = HashMap::new();
        let all = self.store.range(
            Tree::Devices,
            (std::ops::Bound::Unbounded, std::ops::Bound::Unbounded),
            false,
            usize::MAX,
        )?;
        for (_, value) in all {
            let Ok(device) = serde_json::from_slice::<DeviceRecord>(&value) else {
                continue;
            };
            if device.relay.is_some() {
                relayed.entry(device.user.clone()).or_default().push(device);
            }
        }
        if let Ok(mut map) = self.relayed.write() {
            *map = relayed;
        }
        Ok(())
    }

    /// Re-reads one user's devices after they changed.
    pub fn refresh(&self, user: &UserId) -> Result<(), PushError> {
        let devices: Vec<DeviceRecord> = views::devices(self.store.as_ref(), user)?
            .into_iter()
            .filter(|device| device.relay.is_some())
            .collect();
        if let Ok(mut map) = self.relayed.write() {
            if devices.is_empty() {
                map.remove(user);
            } else {
                map.insert(user.clone(), devices);
            }
        }
        Ok(())
    }

    /// Follows the hub until shutdown.
    pub async fn run(self: Arc<Self>, hub: Arc<EventHub>, mut shutdown: watch::Receiver<bool>) {
        let mut events = hub.subscribe();
        let (jobs, queued) = mpsc::channel(self.config.queue_max.max(1));
        let _ = self.queue.set(jobs.downgrade());
        let sender = tokio::spawn(self.clone().send_loop(queued));
        tokio::spawn(self.clone().renounce_loop(shutdown.clone()));
        loop {
            let event = tokio::select! {
                _ = shutdown.changed() => break,
                event = events.recv() => event,
            };
            match event {
                Ok(event) => {
                    if let EventBody::MessageCreated { message } = &event.body {
                        self.on_message(message, &jobs);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    // The devices read those messages from the node when they reconnect.
                    tracing::warn!(missed, "push: fell behind the event hub; some pushes skipped");
                    self.counters.dropped.fetch_add(missed, Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
        // Pushes already queued are still sent (each bounded by the request timeout), once.
        self.stopping.send_replace(true);
        drop(jobs);
        let _ = sender.await;
        tracing::info!(counters = ?self.counters, "push sender stopped");
    }

    fn on_message(&self, message: &MessageView, jobs: &mpsc::Sender<Job>) {
        let targets = match self.targets(message) {
            Ok(targets) => targets,
            Err(error) => {
                tracing::warn!(%error, "push: could not read recipients");
                return;
            }
        };
        for device in targets {
            let job = Job { device, message: message.clone() };
            if let Err(mpsc::error::TrySendError::Full(job)) = jobs.try_send(job) {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(device = %job.device.id, "push: queue full, push dropped");
            }
        }
    }

    /// Pushes waiting in the queue now (0 before [`Pusher::run`] and after it ends).
    pub fn queued(&self) -> usize {
        let queue = self.queue.get().and_then(mpsc::WeakSender::upgrade);
        queue.map_or(0, |queue| queue.max_capacity() - queue.capacity())
    }

    /// Sends queued pushes, `concurrency` at a time.
    async fn send_loop(self: Arc<Self>, jobs: mpsc::Receiver<Job>) {
        let jobs = Arc::new(tokio::sync::Mutex::new(jobs));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..self.config.concurrency.max(1) {
            let pusher = self.clone();
            let jobs = jobs.clone();
            workers.spawn(async move {
                loop {
                    let job = jobs.lock().await.recv().await;
                    let Some(job) = job else { break };
                    pusher.push(&job.device, &job.message).await;
                }
            });
        }
        while workers.join_next().await.is_some() {}
    }

    /// The offline, relay-registered devices of the members this message notifies.
    fn targets(&self, message: &MessageView) -> Result<Vec<DeviceRecord>, PushError> {
        let Ok(relayed) = self.relayed.read() else {
            return Ok(Vec::new());
        };
        if relayed.is_empty() {
            return Ok(Vec::new());
        }
        let store: &dyn KvRead = self.store.as_ref();
        let Some(chat) = views::chat(store, &message.chat_id)? else {
            return Ok(Vec::new());
        };
        let now = now_ms();
        let mut targets = Vec::new();
        for member in views::members(store, &message.chat_id)? {
            let Some(devices) = relayed.get(&member.user_id) else {
                continue;
            };
            let level = views::notification_level(store, &member.user_id, &chat)?;
            let dnd = views::user(store, member.user_id.localpart())?
                .is_some_and(|user| user.dnd_active(now));
            if !is_notifying(&member.user_id, level, dnd, message) {
                continue;
            }
            targets.extend(devices.iter().filter(|device| !self.live.is_live(&device.id)).cloned());
        }
        Ok(targets)
    }

    async fn push(&self, device: &DeviceRecord, message: &MessageView) {
        match self.deliver(device, message).await {
            Ok(Stored::Woken) => {
                self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                self.engine
                    .notify(Command::MarkNotified { chat: message.chat_id, message: message.id });
            }
            Ok(Stored::Silently(report)) => {
                // The device reads it when it next connects; no notification was sent.
                self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                self.counters.unwoken.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(device = %device.id, push = %report, "push: stored at the relay, device not woken");
            }
            Err(error) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(device = %device.id, error = %error.message, "push: relay did not take the envelope");
            }
        }
    }

    /// Seals the message once and posts it until the relay takes it, it refuses, the retries
    /// run out or the node stops.
    async fn deliver(
        &self,
        device: &DeviceRecord,
        message: &MessageView,
    ) -> Result<Stored, PostError> {
        let (url, body) = self.envelope(device, message)?;
        let answer = self.post_until_taken(&url, body).await?;
        Ok(Stored::from_answer(answer.as_deref()))
    }

    /// Asks the renouncer to look for new pending renunciations now (a device was removed or
    /// moved off a queue; the engine recorded what to renounce in the same transaction).
    pub fn renounce_soon(&self) {
        self.renounce_wake.notify_one();
    }

    /// Gives up the capabilities recorded in `renunciations/v1` until shutdown: at start (what
    /// a stop interrupted), when woken, and every `renounce_retry_interval_s` (what a relay
    /// that was down did not take). The relay revokes each and deletes this organisation's
    /// envelopes still queued there, so a lost device cannot fetch them.
    async fn renounce_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let interval = Duration::from_secs(self.config.renounce_retry_interval_s.max(1));
        loop {
            self.renounce_pending();
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = self.renounce_wake.notified() => {}
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// Starts a renunciation for each pending record not already in flight, `concurrency` at
    /// a time.
    fn renounce_pending(self: &Arc<Self>) {
        let limit = self.config.queue_max.max(1);
        let pending = match views::renunciations(self.store.as_ref(), None, limit) {
            Ok(pending) => pending,
            Err(error) => {
                tracing::warn!(%error, "push: could not read pending renunciations");
                return;
            }
        };
        for (key, renunciation) in pending {
            let fresh = match self.renouncing.lock() {
                Ok(mut in_flight) => in_flight.insert(key.clone()),
                Err(_) => false,
            };
            if !fresh {
                continue;
            }
            let pusher = self.clone();
            tokio::spawn(async move {
                if let Ok(_slot) = pusher.renounce_slots.acquire().await {
                    pusher.renounce(key.clone(), renunciation).await;
                }
                if let Ok(mut in_flight) = pusher.renouncing.lock() {
                    in_flight.remove(&key);
                }
            });
        }
    }

    /// One renunciation, retried like a push. The record is forgotten once the relay took it,
    /// when the relay refuses it for good, or when it can no longer matter (older than the
    /// envelope TTL: every envelope it would delete has expired); otherwise it stays for the
    /// next round.
    async fn renounce(&self, key: Vec<u8>, pending: PendingRenunciation) {
        let relay = &pending.relay;
        let done = match self.post_renunciation(relay).await {
            Ok(()) => {
                self.counters.renounced.fetch_add(1, Ordering::Relaxed);
                tracing::info!(relay = %relay.url, queue = %relay.queue, "push: capability renounced at the relay");
                true
            }
            Err(error) => {
                let ttl_ms = u64::from(self.config.envelope_ttl_s) * 1000;
                let moot = now_ms() >= pending.recorded_ms.saturating_add(ttl_ms);
                if !error.passing || moot {
                    self.counters.renounce_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(relay = %relay.url, queue = %relay.queue, error = %error.message, "push: could not renounce the capability at the relay; given up");
                } else {
                    tracing::info!(relay = %relay.url, queue = %relay.queue, error = %error.message, "push: renunciation not taken yet; will try again");
                }
                !error.passing || moot
            }
        };
        // Forgotten durably before the key leaves the in-flight set, so no later round sends
        // it again.
        if done {
            if let Err(error) =
                self.engine.call(|reply| Command::ForgetRenunciation { key, reply }).await
            {
                tracing::warn!(%error, "push: could not forget a renunciation; it will be sent again");
            }
        }
    }

    async fn post_renunciation(&self, relay: &RelayRegistration) -> Result<(), PostError> {
        let capability = CapabilityToken::from_text(&relay.capability)
            .map_err(|error| PostError::refused(format!("stored capability: {error}")))?;
        let request = RenounceRequest::sign(&self.key, capability, now_ms());
        let body =
            serde_json::to_vec(&request).map_err(|error| PostError::refused(error.to_string()))?;
        let url =
            format!("{}/v1/queues/{}/renunciations", relay.url.trim_end_matches('/'), relay.queue);
        match self.post_until_taken(&url, bytes::Bytes::from(body)).await {
            Ok(_) => Ok(()),
            // The device deleted its queue itself (as the browser does when removed here).
            Err(error) if error.status == Some(404) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Posts `body` until the relay takes it (its answer), it refuses, the retries run out or
    /// the node stops.
    async fn post_until_taken(
        &self,
        url: &str,
        body: bytes::Bytes,
    ) -> Result<Option<bytes::Bytes>, PostError> {
        let mut stopping = self.stopping.subscribe();
        let mut retry = 0;
        loop {
            let error = match self.post(url, body.clone()).await {
                Ok(answer) => return Ok(answer),
                Err(error) => error,
            };
            if !error.passing || retry >= self.config.retries_max || *stopping.borrow() {
                return Err(error);
            }
            let wait = retry_delay(
                self.config.retry_delay_ms,
                self.config.retry_delay_ms_max,
                retry,
                error.retry_after_s,
            );
            tracing::debug!(%url, error = %error.message, ?wait, "push: retrying");
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stopping.wait_for(|stop| *stop) => return Err(error),
            }
            retry += 1;
            self.counters.retried.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The relay URL to post to and the signed enqueue request carrying the sealed message.
    fn envelope(
        &self,
        device: &DeviceRecord,
        message: &MessageView,
    ) -> Result<(String, bytes::Bytes), PostError> {
        let relay = device.relay.as_ref().ok_or(PostError::refused("no relay"))?;
        let capability = CapabilityToken::from_text(&relay.capability)
            .map_err(|error| PostError::refused(format!("stored capability: {error}")))?;
        let plaintext = push_payload(message);
        let mut ephemeral = [0u8; 32];
        let mut envelope_id = [0u8; 16];
        getrandom::fill(&mut ephemeral).map_err(|error| PostError::refused(error.to_string()))?;
        getrandom::fill(&mut envelope_id).map_err(|error| PostError::refused(error.to_string()))?;
        let sealed = seal(device.sealing_key.as_bytes(), &plaintext, ephemeral)
            .map_err(|error| PostError::refused(format!("seal: {error}")))?;
        let request = EnqueueRequest::sign(
            &self.key,
            EnqueueFields {
                queue: relay.queue,
                envelope_id: EnvelopeId::from_bytes(envelope_id),
                sent_ms: now_ms(),
                ttl_s: self.config.envelope_ttl_s,
                urgency: Urgency::High,
                topic: None,
                sealed: sealed.encode(),
                capability,
            },
        );
        let body =
            serde_json::to_vec(&request).map_err(|error| PostError::refused(error.to_string()))?;
        let url =
            format!("{}/v1/queues/{}/envelopes", relay.url.trim_end_matches('/'), relay.queue);
        Ok((url, bytes::Bytes::from(body)))
    }

    /// One attempt at handing a request to the relay; its answer's body, if readable.
    async fn post(&self, url: &str, body: bytes::Bytes) -> Result<Option<bytes::Bytes>, PostError> {
        let request = axum::http::Request::post(url)
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(body))
            .map_err(|error| PostError::refused(format!("request to {url}: {error}")))?;
        let timeout = Duration::from_millis(self.config.request_timeout_ms);
        let response = tokio::time::timeout(timeout, self.client.request(request))
            .await
            .map_err(|_| PostError::passing(format!("{url}: timed out")))?
            .map_err(|error| PostError::passing(format!("{url}: {error}")))?;
        let status = response.status();
        use http_body_util::BodyExt;
        if status.is_success() {
            let answer = tokio::time::timeout(timeout, response.into_body().collect())
                .await
                .ok()
                .and_then(|body| body.ok())
                .map(|body| body.to_bytes());
            return Ok(answer);
        }
        let retry_after_s = response
            .headers()
            .get(axum::http::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok());
        let answer: String = tokio::time::timeout(timeout, response.into_body().collect())
            .await
            .ok()
            .and_then(|body| body.ok())
            .map(|body| String::from_utf8_lossy(&body.to_bytes()).chars().take(300).collect())
            .unwrap_or_default();
        let passing = status.is_server_error()
            || status == axum::http::StatusCode::TOO_MANY_REQUESTS
            || status == axum::http::StatusCode::REQUEST_TIMEOUT;
        Err(PostError {
            message: format!("{url}: {status}: {answer}"),
            passing,
            retry_after_s,
            status: Some(status.as_u16()),
        })
    }
}

/// A relay stored the envelope; whether it is waking the device (its answer's `push`).
#[derive(Debug, PartialEq, Eq)]
enum Stored {
    /// `queued`, or `subscribed` for a retry the relay had already stored.
    Woken,
    /// Anything else (`no_subscription`, `very_low`, `dropped`, or no readable report).
    Silently(String),
}

impl Stored {
    fn from_answer(answer: Option<&[u8]>) -> Self {
        #[derive(serde::Deserialize)]
        struct Answer {
            push: String,
        }
        match answer.and_then(|bytes| serde_json::from_slice::<Answer>(bytes).ok()) {
            Some(answer) if answer.push == "queued" || answer.push == "subscribed" => Stored::Woken,
            Some(answer) => Stored::Silently(answer.push),
            None => Stored::Silently("no push report".into()),
        }
    }
}

struct Job {
    device: DeviceRecord,
    message: MessageView,
}

/// What the device decrypts: the message as the client API shows it, body cut if very long.
pub fn push_payload(message: &MessageView) -> Vec<u8> {
    let mut message = message.clone();
    let truncated = message.body.len() > PUSH_BODY_BYTES_MAX;
    if truncated {
        let mut end = PUSH_BODY_BYTES_MAX;
        while !message.body.is_char_boundary(end) {
            end -= 1;
        }
        message.body.truncate(end);
    }
    serde_json::to_vec(&serde_json::json!({
        "v": 1,
        "type": "message",
        "truncated": truncated,
        "message": message,
    }))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::{retry_delay, Stored};
    use std::time::Duration;

    #[test]
    fn only_a_wake_up_counts_as_a_notification() {
        let stored = |answer: &str| Stored::from_answer(Some(answer.as_bytes()));
        assert_eq!(stored(r#"{"status":"queued","push":"queued"}"#), Stored::Woken);
        assert_eq!(stored(r#"{"status":"duplicate","push":"subscribed"}"#), Stored::Woken);
        for push in ["no_subscription", "very_low", "dropped"] {
            assert_eq!(
                stored(&format!(r#"{{"status":"queued","push":"{push}"}}"#)),
                Stored::Silently(push.into())
            );
        }
        assert!(matches!(stored(r#"{"status":"queued"}"#), Stored::Silently(_)));
        assert!(matches!(Stored::from_answer(None), Stored::Silently(_)));
    }

    #[test]
    fn retry_delay_doubles_up_to_the_cap_and_honours_retry_after() {
        let ms = Duration::from_millis;
        assert_eq!(retry_delay(500, 30_000, 0, None), ms(500));
        assert_eq!(retry_delay(500, 30_000, 1, None), ms(1_000));
        assert_eq!(retry_delay(500, 30_000, 5, None), ms(16_000));
        assert_eq!(retry_delay(500, 30_000, 6, None), ms(30_000));
        assert_eq!(retry_delay(500, 30_000, 63, None), ms(30_000));
        assert_eq!(retry_delay(500, 30_000, 0, Some(3)), ms(3_000));
        assert_eq!(retry_delay(500, 30_000, 4, Some(1)), ms(8_000));
        assert_eq!(retry_delay(500, 30_000, 0, Some(u64::MAX)), ms(30_000));
    }
}
