//! Federation: this node's side of the libp2p network (`confab-net`) between organisations.
//!
//! One task ([`Federation::run`]) owns the network's event stream and the engine's outbound
//! queue:
//! - **out**: the engine's own new changes of shared chats are gossiped on the chat's topic;
//!   when a chat's member organisations change, their nodes become the topic's admitted peers
//!   (nobody else receives its content) and are poked to sync.
//! - **in**: gossip messages are decoded and handed to the engine in micro-batches
//!   ([`Command::ApplyRemote`]); its verdict (accept, reject, ignore) goes back to gossipsub,
//!   which forwards only accepted ones and penalises (and finally blacklists) peers that relay
//!   invalid ones. A change that is not yet applicable (missing dependencies) starts a catch-up
//!   of its document from the peer that relayed it.
//! - **catch-up**: on connect, on every anti-entropy tick and when a peer pokes us (an index
//!   request), we ask the peer which chats we share (`index`), then for each chat its control
//!   document, its current bucket, then older buckets newest first, page by page. We answer
//!   the same requests from the stored changes ([`serve`]) without the engine.
//!
//! Peers are the organisations an admin peered with (`peers/v1`, through the engine); the
//! network refuses everyone else.
//!
//! The task counts its traffic in [`FederationStats`] (the `stats` of the admin API).

pub mod config;
pub mod ephemeral;
mod gossip;
pub mod media;
mod peers;
pub mod serve;
mod stats;
mod sync;

pub use config::FederationConfig;
pub use peers::{
    add_peer, check_new_peer, fixed_listen_addrs, invite_token, new_peer, remove_peer,
    split_peer_address, PeerView, PEER_NAME_BYTES_MAX,
};
pub use stats::FederationStats;

use peers::{org_of_peer, parse_addrs, peer_of_org};

use crate::engine::Result;
use crate::engine::{self, ChatOrgs, Command, EngineHandle, Outbound};
use crate::store::{KvRead, KvStore};
use confab_net::{CatchupResponse, MediaResponse, NetConfig, NetEvent, NetworkHandle, PeerId};
use confab_protocol::{ChatId, DocId, OrgId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    #[error("invalid federation listen address {0:?}")]
    Address(String),
    #[error("network: {0}")]
    Net(#[from] confab_net::NetError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// What the admin API uses: the network handle and the settings.
#[derive(Clone)]
pub struct FederationHandle {
    pub net: NetworkHandle,
    pub config: FederationConfig,
    pub own: OrgId,
    /// The federation task's traffic counters.
    pub stats: Arc<FederationStats>,
    seed: [u8; 32],
}

/// Chats another organisation is or was a member of: federated chat records, and (for records
/// written before they carried the flag) chats with a member whose organisation name is not
/// ours.
fn shared_chats(
    store: &dyn KvRead,
    org_name: &str,
) -> Result<Vec<ChatId>, crate::store::StoreError> {
    let all = || (std::ops::Bound::Unbounded, std::ops::Bound::Unbounded);
    let mut chats = std::collections::BTreeSet::new();
    for (key, value) in store.range(crate::store::Tree::Chats, all(), false, usize::MAX)? {
        let federated = serde_json::from_slice::<crate::model::ChatRecord>(&value)
            .is_ok_and(|record| record.federated || record.owner_org != org_name);
        if let (true, Some(chat)) = (federated, ChatId::from_slice(&key)) {
            chats.insert(chat);
        }
    }
    for (key, _) in store.range(crate::store::Tree::Members, all(), false, usize::MAX)? {
        let (Some(chat), Some(user)) = (
            key.get(..16).and_then(ChatId::from_slice),
            key.get(16..).and_then(|b| std::str::from_utf8(b).ok()),
        ) else {
            continue;
        };
        let foreign =
            user.parse::<confab_protocol::UserId>().is_ok_and(|user| user.org_name() != org_name);
        if foreign {
            chats.insert(chat);
        }
    }
    Ok(chats.into_iter().collect())
}

/// Starts the network and the federation task. Returns the handle for the admin API and the
/// task (it ends when `shutdown` turns true).
#[allow(clippy::too_many_arguments)]
pub async fn start(
    config: FederationConfig,
    org_name: String,
    seed: [u8; 32],
    store: Arc<dyn KvStore>,
    engine: EngineHandle,
    hub: Arc<crate::events::EventHub>,
    blobs: crate::media::BlobStore,
    outbound: mpsc::Receiver<Outbound>,
    shutdown: watch::Receiver<bool>,
) -> Result<(FederationHandle, tokio::task::JoinHandle<()>), FederationError> {
    let own = confab_protocol::OrgKey::from_seed(seed).id();
    let net_config = NetConfig {
        listen_addrs: parse_addrs(&config.listen)?,
        anti_entropy_interval: Duration::from_secs(config.anti_entropy_interval_s.max(1)),
        blacklist_after_rejects: config.blacklist_after_rejects,
        max_allowed_peers: config.peers_max,
        ..NetConfig::default()
    };
    let net_media_max_bytes = net_config.media_max_bytes;
    let (net, events, net_task) = confab_net::Network::start(seed, net_config)?;
    for (org, record) in engine::peers(store.as_ref())? {
        let (Some(peer), Ok(addrs)) = (peer_of_org(&org), parse_addrs(&record.addrs)) else {
            tracing::warn!(%org, "stored peer has a bad key or address; skipped");
            continue;
        };
        net.add_peer(peer, addrs).await?;
    }
    let stats = Arc::new(FederationStats::default());
    let handle = FederationHandle {
        net: net.clone(),
        config: config.clone(),
        own,
        stats: stats.clone(),
        seed,
    };
    let federation = Federation {
        net,
        engine,
        store,
        config,
        org_name,
        stats,
        chats: HashMap::new(),
        serving: Arc::new(serve::DocIndexCache::default()),
        syncing: Arc::new(Mutex::new(HashMap::new())),
        hub,
        blobs,
        media_max_bytes: net_media_max_bytes,
        ephemeral_out: ephemeral::Outbox::default(),
        ephemeral_in: ephemeral::InboundLimiter::default(),
    };
    let task = tokio::spawn(async move {
        federation.run(events, outbound, shutdown).await;
        let _ = net_task.await;
    });
    Ok((handle, task))
}

/// The federation task's state.
struct Federation {
    net: NetworkHandle,
    engine: EngineHandle,
    store: Arc<dyn KvStore>,
    config: FederationConfig,
    org_name: String,
    stats: Arc<FederationStats>,
    /// The member organisations (besides ours) of every shared chat.
    chats: HashMap<ChatId, ChatOrgs>,
    serving: Arc<serve::DocIndexCache>,
    /// Peers with a sync running, and whether another was asked for meanwhile.
    syncing: Arc<Mutex<HashMap<PeerId, bool>>>,
    /// The local event hub: presence and typing go out from it and come in to it.
    hub: Arc<crate::events::EventHub>,
    /// Files of shared chats are served from it.
    blobs: crate::media::BlobStore,
    media_max_bytes: usize,
    ephemeral_out: ephemeral::Outbox,
    ephemeral_in: ephemeral::InboundLimiter,
}

impl Federation {
    async fn run(
        mut self,
        mut events: mpsc::Receiver<NetEvent>,
        mut outbound: mpsc::Receiver<Outbound>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        if let Err(error) = self.load_shared_chats().await {
            tracing::error!(%error, "cannot list the shared chats; federation runs without them");
        }
        let mut local = self.hub.subscribe_ephemeral();
        let mut local_open = true;
        let mut batch_tick = tokio::time::interval(ephemeral::BATCH_INTERVAL);
        loop {
            tokio::select! {
                _ = async { let _ = shutdown.wait_for(|stopped| *stopped).await; } => break,
                Some(item) = outbound.recv() => self.on_outbound(item).await,
                event = events.recv() => match event {
                    Some(event) => self.on_event(event, &mut events).await,
                    None => break,
                },
                received = local.recv(), if local_open => match received {
                    Ok(event) => self.on_local_ephemeral(&event),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => local_open = false,
                },
                _ = batch_tick.tick() => self.publish_ephemeral().await,
            }
        }
        self.net.shutdown().await;
        tracing::info!("federation stopped");
    }

    /// Learns the member and former member organisations of every chat shared with another
    /// organisation, and admits their nodes.
    async fn load_shared_chats(&mut self) -> Result<()> {
        for chat in shared_chats(self.store.as_ref(), &self.org_name)? {
            let answer = self
                .engine
                .call(|reply| Command::DocHeads { doc: DocId::control(chat), reply })
                .await?;
            if let Some(heads) = answer {
                self.set_members(chat, heads.orgs).await;
            }
        }
        Ok(())
    }

    async fn on_outbound(&mut self, item: Outbound) {
        match item {
            Outbound::Publish { chat, change } => {
                let bytes = change.len();
                match self.net.publish(chat, change).await {
                    Ok(_) => self.stats.published(bytes),
                    Err(error) => {
                        tracing::debug!(%chat, %error, "gossip publish failed; peers catch up")
                    }
                }
            }
            Outbound::Members { chat, orgs } => {
                let before = self.chats.get(&chat).cloned().unwrap_or_default();
                let joined = orgs.current.iter().filter(|org| !before.current.contains(org));
                let left = orgs.former.iter().filter(|org| before.current.contains(org));
                let changed: Vec<OrgId> = joined.chain(left).copied().collect();
                self.set_members(chat, orgs).await;
                // Tell the organisations that joined or left to sync with us now.
                for org in changed {
                    if let Some(peer) = peer_of_org(&org) {
                        self.poke(peer);
                    }
                }
            }
        }
    }

    async fn set_members(&mut self, chat: ChatId, orgs: ChatOrgs) {
        let peers: Vec<PeerId> = orgs.current.iter().filter_map(peer_of_org).collect();
        let former: Vec<PeerId> = orgs.former.iter().filter_map(peer_of_org).collect();
        // Former members first: a removed organisation must never be refused the control
        // change that removed it.
        if let Err(error) = self.net.set_channel_former_members(chat, former).await {
            tracing::warn!(%chat, %error, "cannot set the chat's former member peers");
        }
        if let Err(error) = self.net.set_channel_members(chat, peers.clone()).await {
            tracing::warn!(%chat, %error, "cannot set the chat's member peers");
        }
        let result = if peers.is_empty() {
            if orgs.former.is_empty() {
                self.chats.remove(&chat);
            } else {
                self.chats.insert(chat, orgs);
            }
            self.net.unsubscribe(chat).await
        } else {
            self.chats.insert(chat, orgs);
            self.net.subscribe(chat).await
        };
        if let Err(error) = result {
            tracing::warn!(%chat, %error, "cannot change the chat's subscription");
        }
    }

    async fn on_event(&mut self, event: NetEvent, events: &mut mpsc::Receiver<NetEvent>) {
        match event {
            NetEvent::Gossip(first) => {
                // Micro-batch: whatever gossip is already waiting goes to the engine together.
                let mut batch = vec![first];
                let mut others = Vec::new();
                while batch.len() < self.config.gossip_batch_max.max(1) {
                    match events.try_recv() {
                        Ok(NetEvent::Gossip(message)) => batch.push(message),
                        Ok(other) => {
                            others.push(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                self.on_gossip(batch).await;
                for other in others {
                    Box::pin(self.on_event(other, events)).await;
                }
            }
            NetEvent::PeerConnected { peer } => {
                tracing::info!(%peer, "peer connected");
                self.start_sync(peer);
            }
            NetEvent::PeerDisconnected { peer } => tracing::info!(%peer, "peer disconnected"),
            NetEvent::ConnectionRefused { peer, inbound, reason } => {
                tracing::info!(?peer, inbound, ?reason, "connection refused")
            }
            NetEvent::PeerBlacklisted { peer, rejected } => {
                tracing::warn!(%peer, rejected, "peer blacklisted for invalid messages")
            }
            NetEvent::Listening { addr } => tracing::info!(%addr, "federation listening"),
            NetEvent::AntiEntropyTick { peers } => {
                for peer in peers {
                    self.start_sync(peer);
                }
            }
            NetEvent::CatchupRequest { peer, request, responder } => {
                self.on_catchup_request(peer, request, responder)
            }
            NetEvent::MediaRequest { peer, chat, blob, responder } => {
                let member = org_of_peer(&peer).is_some_and(|org| {
                    self.chats.get(&chat).is_some_and(|orgs| orgs.current.contains(&org))
                });
                let store = self.store.clone();
                let blobs = self.blobs.clone();
                let max_bytes = self.media_max_bytes;
                tokio::spawn(async move {
                    if member {
                        media::serve(store, blobs, chat, blob, max_bytes, responder).await;
                    } else {
                        let refused = MediaResponse::Refused(confab_net::MediaRefusal::NotMember);
                        let _ = responder.respond(refused).await;
                    }
                });
            }
            NetEvent::IndexRequest { peer, responder, poke } => {
                let org = org_of_peer(&peer);
                let chats: Vec<ChatId> = self
                    .chats
                    .iter()
                    .filter(|(_, orgs)| org.is_some_and(|org| orgs.current.contains(&org)))
                    .map(|(chat, _)| *chat)
                    .collect();
                tokio::spawn(async move {
                    if let Err(error) = responder.respond(CatchupResponse::index(chats)).await {
                        tracing::debug!(%peer, %error, "index answer failed");
                    }
                });
                // A poke: the peer has news for us (a plain index request is part of its own
                // sync and must not start ours, or the two would sync each other forever).
                if poke {
                    self.start_sync(peer);
                }
            }
        }
    }
}
