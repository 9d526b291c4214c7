//! Starting and stopping a node: open the store, start the engine, serve HTTP on a listener
//! handed in by the caller, stop gracefully when the shutdown future completes.

use crate::api::{app, AppState};
use crate::config::Config;
use crate::engine;
use crate::store::{KvStore, SledStore};
use axum::serve::ListenerExt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long the engine gets to finish its last group commit on shutdown.
const ENGINE_STOP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Start(#[from] engine::StartError),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens the store in the configured data directory.
pub fn open_store(config: &Config) -> Result<Arc<dyn KvStore>, ServeError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| ServeError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    })?;
    Ok(Arc::new(SledStore::open_with_cache(
        &config.data_dir.join("db"),
        config.limits.storage_cache_bytes,
    )?))
}

/// Serves the node on `listener` until `shutdown` completes, then stops cleanly: WebSockets are
/// closed with 1001, in-flight requests finish, the engine flushes its last group.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let store = open_store(&config)?;
    let (engine, hub, engine_task) = engine::start(
        store.clone(),
        config.org_name.clone(),
        config.limits.clone(),
    )
    .await?;
    let (stop_sender, stop_receiver) = watch::channel(false);
    let state = AppState::new(store, engine, hub, config, stop_receiver);
    let router = app(state);
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    // Chat is latency-bound: small frames must not wait for Nagle's algorithm.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::warn!(%error, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, service)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down");
            let _ = stop_sender.send(true);
        })
        .await?;
    // The router (and its engine handles) are dropped now; the engine drains and stops.
    if tokio::time::timeout(ENGINE_STOP_TIMEOUT, engine_task)
        .await
        .is_err()
    {
        tracing::warn!("engine did not stop in time");
    }
    Ok(())
}
