//! The state every handler shares: stores, the engine, limiters and the live registries.

use crate::accounts::{FailureLimiter, TokenBucket};
use crate::config::Config;
use crate::engine::EngineHandle;
use crate::events::EventHub;
use crate::store::KvStore;
use confab_protocol::{MessageId, UserId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn KvStore>,
    pub engine: EngineHandle,
    pub hub: Arc<EventHub>,
    pub config: Arc<Config>,
    pub login_by_account: Arc<FailureLimiter>,
    pub login_by_address: Arc<FailureLimiter>,
    pub request_buckets: Arc<Mutex<HashMap<UserId, TokenBucket>>>,
    /// Becomes `true` when the node shuts down; WebSocket sessions close on it.
    pub shutdown: watch::Receiver<bool>,
    /// Messages some recipient device already got, so only the first delivery asks the engine
    /// to mark a message `received`.
    pub received: Arc<Mutex<SeenFilter>>,
    pub presence: crate::live::PresenceHandle,
    /// Bounds concurrent Argon2id computations (19 MiB of memory each).
    pub hashing: Arc<tokio::sync::Semaphore>,
    /// Uploaded files and thumbnails.
    pub blobs: crate::media::BlobStore,
    /// The message index; `None` only in tools and tests that run without one.
    pub search: Option<Arc<crate::search::SearchIndex>>,
    /// WebSocket sessions open per user.
    pub websocket_sessions: Arc<crate::live_count::LiveCount<UserId>>,
    /// Requests by route and status, for `/metrics`.
    pub http_metrics: crate::metrics::HttpMetrics,
    /// Devices with a live WebSocket session (not pushed to).
    pub live_devices: Arc<crate::push::LiveDevices>,
    /// The push sender; `None` in tests that run without one.
    pub pusher: Option<Arc<crate::push::Pusher>>,
    /// Federation; `None` when the node does not federate.
    pub federation: Option<crate::federation::FederationHandle>,
}

/// A bounded set of recently seen message ids: two generations, the older dropped when the
/// newer fills up. A miss only costs an extra (idempotent) engine intent.
#[derive(Default)]
pub struct SeenFilter {
    current: std::collections::HashSet<MessageId>,
    previous: std::collections::HashSet<MessageId>,
}

impl SeenFilter {
    const GENERATION_MAX: usize = 50_000;

    /// True the first time an id is seen (within the filter's memory).
    pub fn first_sight(&mut self, id: MessageId) -> bool {
        if self.current.contains(&id) || self.previous.contains(&id) {
            return false;
        }
        if self.current.len() >= Self::GENERATION_MAX {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(id);
        true
    }
}

impl AppState {
    pub fn new(
        store: Arc<dyn KvStore>,
        engine: EngineHandle,
        hub: Arc<EventHub>,
        config: Config,
        shutdown: watch::Receiver<bool>,
        blobs: crate::media::BlobStore,
        search: Option<Arc<crate::search::SearchIndex>>,
    ) -> Self {
        let limits = &config.limits;
        Self {
            login_by_account: Arc::new(FailureLimiter::new(
                limits.login_failures_max,
                limits.login_window_s,
            )),
            login_by_address: Arc::new(FailureLimiter::new(
                limits.login_failures_max,
                limits.login_window_s,
            )),
            request_buckets: Arc::new(Mutex::new(HashMap::new())),
            received: Arc::new(Mutex::new(SeenFilter::default())),
            hashing: Arc::new(tokio::sync::Semaphore::new(
                limits.password_hashes_concurrent_max.max(1),
            )),
            presence: crate::live::start(
                store.clone(),
                hub.clone(),
                crate::presence::PresenceConfig {
                    heartbeat_interval_ms: limits.presence_heartbeat_interval_ms,
                    heartbeats_missed_max: limits.presence_heartbeats_missed_max,
                },
            ),
            store,
            engine,
            hub,
            config: Arc::new(config),
            shutdown,
            blobs,
            search,
            websocket_sessions: Arc::default(),
            http_metrics: crate::metrics::HttpMetrics::default(),
            live_devices: Arc::new(crate::push::LiveDevices::default()),
            pusher: None,
            federation: None,
        }
    }

    /// Adds the push sender (which shares this state's live-device registry).
    pub fn with_pusher(mut self, pusher: Arc<crate::push::Pusher>) -> Self {
        self.live_devices = pusher.live.clone();
        self.pusher = Some(pusher);
        self
    }

    /// Adds federation (for the admin API).
    pub fn with_federation(mut self, federation: crate::federation::FederationHandle) -> Self {
        self.federation = Some(federation);
        self
    }
}
