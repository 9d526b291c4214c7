//! Start-up: loading the organisation's key, the clock and the cursors, catching the search
//! index up, and spawning the engine on a thread of its own.

use super::search::catch_up_search;
use super::{Dirty, Engine, EngineHandle, Outbound, StartError, QUEUE_CAPACITY};
use crate::config::Limits;
use crate::events::EventHub;
use crate::random::random_bytes;
use crate::search::SearchIndex;
use crate::store::{KvStore, Staged, Tree};
use confab_protocol::Hlc;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Starts the engine task. It stops when every handle is dropped, after a final flush.
pub async fn start(
    store: Arc<dyn KvStore>,
    org_name: String,
    limits: Limits,
    search: Option<Arc<SearchIndex>>,
    outbound: Option<mpsc::Sender<Outbound>>,
) -> Result<(EngineHandle, Arc<EventHub>, tokio::task::JoinHandle<()>), StartError> {
    let key = crate::org_key::load_or_create_org_key(store.as_ref()).await?;
    let newest = crate::events::newest_cursor(store.as_ref())?;
    let hub = Arc::new(EventHub::new(newest, 4096));
    let hlc = match store.get(Tree::Meta, b"hlc")? {
        Some(bytes) => Hlc::resume_after(serde_json::from_slice(&bytes).unwrap_or_default()),
        None => Hlc::new(),
    };
    let engine = Engine {
        store,
        key,
        org_name,
        limits,
        hub: hub.clone(),
        chats: HashMap::new(),
        hlc,
        unique: random_bytes(),
        next_cursor: newest + 1,
        dirty: Dirty::default(),
        search,
        search_ops: Vec::new(),
        staged: Staged::default(),
        outbound,
        outbound_dropped: 0,
        metrics: crate::metrics::EngineMetrics::default(),
    };
    let metrics = engine.metrics.clone();
    if let Some(search) = &engine.search {
        catch_up_search(engine.store.as_ref(), search, newest);
    }
    let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
    // The engine gets a thread of its own, with a single-threaded runtime for its timers: it
    // blocks on each flush there, and no socket task ever queues ahead of it.
    let task = tokio::task::spawn_blocking(move || {
        match tokio::runtime::Builder::new_current_thread().enable_time().build() {
            Ok(runtime) => runtime.block_on(engine.run(receiver)),
            Err(error) => tracing::error!(%error, "could not start the engine's runtime"),
        }
    });
    Ok((EngineHandle { sender, metrics }, hub, task))
}
