//! Starting and stopping a node: open the store, start the engine, serve HTTP on a listener
//! handed in by the caller, stop gracefully when the shutdown future completes.

use crate::api::{app, AppState};
use crate::config::Config;
use crate::engine;
use crate::media::BlobStore;
use crate::search::SearchIndex;
use crate::store::{prefix_range, KvRead, KvStore, SledStore, Tree};
use axum::serve::ListenerExt;
use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::ops::Bound;
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
    #[error(transparent)]
    Key(#[from] crate::org_key::KeyError),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
    #[error("media store: {0}")]
    Media(#[from] crate::media::MediaError),
    #[error("push: {0}")]
    Push(#[from] crate::push::PushError),
    #[error("search index: {0}")]
    Search(#[from] crate::search::SearchError),
    #[error("federation: {0}")]
    Federation(#[from] crate::federation::FederationError),
}

/// Opens the message search index in `<data_dir>/search`.
/// An index made by another version (another schema) is derived data: it is removed and
/// made again, and the engine re-indexes every message on start.
pub fn open_search(config: &Config) -> Result<Arc<SearchIndex>, ServeError> {
    let dir = config.data_dir.join("search");
    let heap = config.limits.search_writer_heap_bytes;
    match SearchIndex::open(&dir, heap) {
        Err(crate::search::SearchError::Incompatible(path)) => {
            tracing::warn!(%path, "search index has another schema; rebuilding it");
            std::fs::remove_dir_all(&dir)?;
            Ok(Arc::new(SearchIndex::open(&dir, heap)?))
        }
        other => Ok(Arc::new(other?)),
    }
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
    let blobs = BlobStore::new(&config.data_dir)?;
    let search = open_search(&config)?;
    let federates = !config.federation.listen.is_empty();
    let (outbound_sender, outbound_receiver) = tokio::sync::mpsc::channel(engine::OUTBOUND_QUEUE);
    let (engine, hub, engine_task) = engine::start(
        store.clone(),
        config.org_name.clone(),
        config.limits.clone(),
        Some(search.clone()),
        federates.then_some(outbound_sender),
    )
    .await?;
    let (stop_sender, stop_receiver) = watch::channel(false);
    let collector = tokio::spawn(collect_media_periodically(
        store.clone(),
        blobs.clone(),
        Duration::from_secs(config.limits.media_collect_interval_s.max(1)),
        Duration::from_secs(config.limits.media_collect_grace_s),
        stop_receiver.clone(),
    ));
    let key = crate::org_key::load_or_create_org_key(store.as_ref()).await?;
    let seed = key.seed();
    let pusher = crate::push::Pusher::new(store.clone(), key, engine.clone(), config.push.clone())?;
    let push_task = tokio::spawn(pusher.clone().run(hub.clone(), stop_receiver.clone()));
    let federation = if federates {
        let (handle, task) = crate::federation::start(
            config.federation.clone(),
            config.org_name.clone(),
            seed,
            store.clone(),
            engine.clone(),
            hub.clone(),
            blobs.clone(),
            outbound_receiver,
            stop_receiver.clone(),
        )
        .await?;
        Some((handle, task))
    } else {
        None
    };
    let mut state = AppState::new(store, engine, hub, config, stop_receiver, blobs, Some(search))
        .with_pusher(pusher);
    let mut federation_task = None;
    if let Some((handle, task)) = federation {
        state = state.with_federation(handle);
        federation_task = Some(task);
    }
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
    // The push sender and federation hold engine handles too: let them stop first.
    let _ = push_task.await;
    if let Some(task) = federation_task {
        let _ = task.await;
    }
    // The router (and its engine handles) are dropped now; the engine drains and stops.
    if tokio::time::timeout(ENGINE_STOP_TIMEOUT, engine_task).await.is_err() {
        tracing::warn!("engine did not stop in time");
    }
    let _ = collector.await;
    Ok(())
}

/// Every blob id some message carries (attachments and their thumbnails).
pub fn referenced_blobs(store: &dyn KvRead) -> Result<HashSet<String>, crate::store::StoreError> {
    const PAGE: usize = 10_000;
    let mut referenced = HashSet::new();
    let mut from = Bound::Unbounded;
    loop {
        let page = store.range(Tree::MediaRefs, (from, Bound::Unbounded), false, PAGE)?;
        let Some((last, _)) = page.last() else {
            return Ok(referenced);
        };
        // Skip the rest of the last blob's references: the next page starts at the next blob.
        from = match page.last().and_then(|(key, _)| key.get(..64)) {
            Some(blob) => match prefix_range(blob).1 {
                Bound::Excluded(next) => Bound::Included(next),
                _ => Bound::Excluded(last.clone()),
            },
            None => Bound::Excluded(last.clone()),
        };
        for (key, _) in page {
            if let Some(blob) = key.get(..64).and_then(|b| std::str::from_utf8(b).ok()) {
                referenced.insert(blob.to_string());
            }
        }
    }
}

/// One collection: deletes blobs no message carries that are older than `grace`.
pub async fn collect_media(
    store: Arc<dyn KvStore>,
    blobs: BlobStore,
    grace: Duration,
) -> Result<crate::media::CollectReport, ServeError> {
    tokio::task::spawn_blocking(move || {
        let referenced = referenced_blobs(store.as_ref())?;
        Ok(blobs.collect(&referenced, grace)?)
    })
    .await
    .map_err(|error| ServeError::Io(std::io::Error::other(error.to_string())))?
}

/// Runs [`collect_media`] every `interval` until shutdown.
async fn collect_media_periodically(
    store: Arc<dyn KvStore>,
    blobs: BlobStore,
    interval: Duration,
    grace: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|stopped| *stopped) => return,
        }
        match collect_media(store.clone(), blobs.clone(), grace).await {
            Ok(report) if report.deleted > 0 => tracing::info!(
                deleted = report.deleted,
                bytes_freed = report.bytes_freed,
                "media collected"
            ),
            Ok(_) => tracing::debug!("media collection found nothing to delete"),
            Err(error) => tracing::error!(%error, "media collection failed"),
        }
    }
}
