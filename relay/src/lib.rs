//! Confab relay: store-and-forward of end-to-end sealed envelopes for offline devices, with
//! Web Push wake-ups. See `spec/relay.md` for the API and ARCHITECTURE.md for the whole system.
//!
//! A relay holds one queue per registered device. Nodes enqueue sealed envelopes, each request
//! signed by the sending organisation and authorised by a capability token the device issued;
//! devices fetch (HTTP poll or WebSocket) after answering an Ed25519 challenge, acknowledge what
//! they stored, and only then does the relay delete. The relay never sees plaintext.
//!
//! [`run`] is the whole server: it takes its listener and a shutdown signal, so the binary, the
//! tests and the benchmark all start it the same way.

pub mod api;
pub mod config;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod push;
pub mod store;

pub use api::app;
pub use config::{Config, Limits};
pub use error::{ApiError, RelayError, StoreError};

use confab_protocol::relay::QueueId;
use limits::{Challenges, GlobalLimiter, QueueLimiter};
use metrics::Metrics;
use push::{EndpointPolicy, PushJob, Pusher, Vapid};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use store::Store;
use tokio::net::TcpListener;

/// Capacity of the channel that tells WebSocket sessions about new envelopes.
const ARRIVALS_CAPACITY: usize = 1024;
/// Records handled per sweep step.
const SWEEP_BATCH: usize = 1_000;

/// Everything the handlers share.
pub struct AppState {
    pub config: Config,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub challenges: Challenges,
    pub enqueue_limiter: QueueLimiter,
    pub register_limiter: GlobalLimiter,
    pub challenge_limiter: GlobalLimiter,
    pub pusher: Arc<Pusher>,
    pub push_tx: tokio::sync::mpsc::Sender<PushJob>,
    pub arrivals: tokio::sync::broadcast::Sender<QueueId>,
    pub policy: EndpointPolicy,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// One permit per open WebSocket session.
    pub ws_sessions: Arc<tokio::sync::Semaphore>,
}

/// The running relay's background parts, returned by [`AppState::open`].
pub struct Background {
    push_rx: tokio::sync::mpsc::Receiver<PushJob>,
    shutdown_tx: tokio::sync::watch::Sender<bool>,
}

impl AppState {
    /// Opens the store and builds the shared state.
    pub async fn open(config: Config) -> Result<(Arc<Self>, Background), RelayError> {
        let metrics = Arc::new(Metrics::default());
        std::fs::create_dir_all(&config.data_dir)?;
        let store = Arc::new(Store::open(&config.data_dir, config.fsync, metrics.clone())?);
        let secret = store
            .vapid_secret(|| loop {
                let mut bytes = [0u8; 32];
                if getrandom::fill(&mut bytes).is_ok()
                    && p256::SecretKey::from_slice(&bytes).is_ok()
                {
                    return bytes;
                }
            })
            .await?;
        let vapid = Vapid::new(&secret, config.vapid_subject.clone())
            .map_err(|e| RelayError::PushClient(e.to_string()))?;
        let limits = &config.limits;
        let policy = EndpointPolicy {
            allow_private: config.allow_private_push_endpoints,
            allow_http: config.allow_http_push_endpoints,
            max_len: limits.push_endpoint_len_max,
        };
        let pusher = Arc::new(Pusher::new(
            vapid,
            store.clone(),
            metrics.clone(),
            policy,
            Duration::from_secs(limits.push_timeout_s),
        )?);
        let (push_tx, push_rx) = tokio::sync::mpsc::channel(limits.push_queue_max.max(1));
        let (arrivals, _) = tokio::sync::broadcast::channel(ARRIVALS_CAPACITY);
        let (shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
        let state = Arc::new(Self {
            ws_sessions: Arc::new(tokio::sync::Semaphore::new(limits.ws_sessions_max.max(1))),
            challenges: Challenges::new(
                Duration::from_secs(limits.challenge_ttl_s),
                limits.challenges_outstanding_max,
            ),
            enqueue_limiter: QueueLimiter::new(
                limits.enqueue_rate_per_s,
                limits.enqueue_burst,
                usize::try_from(limits.queues_max).unwrap_or(usize::MAX),
            ),
            register_limiter: GlobalLimiter::new(limits.register_rate_per_s, limits.register_burst),
            challenge_limiter: GlobalLimiter::new(
                limits.challenge_rate_per_s,
                limits.challenge_burst,
            ),
            config,
            store,
            metrics,
            pusher,
            push_tx,
            arrivals,
            policy,
            shutdown,
        });
        Ok((state, Background { push_rx, shutdown_tx }))
    }
}

/// Runs the relay on `listener` until `shutdown` completes, then stops accepting, lets open
/// requests finish, closes WebSockets and flushes the store.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RelayError> {
    let (state, background) = AppState::open(config).await?;
    let Background { push_rx, shutdown_tx } = background;
    let push_worker =
        tokio::spawn(state.pusher.clone().run(push_rx, state.config.limits.push_concurrency));
    let sweeper = tokio::spawn(sweep_loop(state.clone()));
    tracing::info!(addr = ?listener.local_addr().ok(), "relay listening");
    let result = axum::serve(listener, app(state.clone()))
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = shutdown_tx.send(true);
        })
        .await;
    sweeper.abort();
    push_worker.abort();
    state.store.flush().await?;
    tracing::info!("relay stopped");
    result.map_err(RelayError::Io)
}

async fn sweep_loop(state: Arc<AppState>) {
    let mut shutdown = state.shutdown.clone();
    let mut tick =
        tokio::time::interval(Duration::from_millis(state.config.sweep_interval_ms.max(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        loop {
            match state.store.sweep(push::now_ms(), SWEEP_BATCH).await {
                Ok(n) if n >= SWEEP_BATCH => continue,
                Ok(n) => {
                    if n > 0 {
                        if let Err(e) = state.store.flush().await {
                            tracing::warn!(error = %e, "flush after sweep");
                        }
                    }
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "sweep failed");
                    break;
                }
            }
        }
    }
}
