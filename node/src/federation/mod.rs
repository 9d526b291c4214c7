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

pub mod ephemeral;
pub mod media;
pub mod serve;

use crate::engine::{self, ChatOrgs, Command, EngineHandle, Outbound, PeerRecord, RemoteVerdict};
use crate::error::{ApiError, ApiResult};
use crate::store::{KvRead, KvStore};
use confab_net::{
    CatchupRequest, CatchupResponse, MediaResponse, Multiaddr, NetConfig, NetEvent, NetworkHandle,
    PeerId, Validation,
};
use confab_protocol::{ChatId, DocId, OrgId, Preverified, Rejection, SignedChange};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// `[federation]` in the configuration file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FederationConfig {
    /// Multiaddrs to listen on, e.g. `/ip4/0.0.0.0/tcp/7700`. Empty: the node does not
    /// federate.
    pub listen: Vec<String>,
    /// Addresses put in invite tokens (what other organisations dial); the listen addresses
    /// when empty.
    pub public_addrs: Vec<String>,
    /// How often catch-up runs with every connected peer (gossip only repairs seconds of loss).
    pub anti_entropy_interval_s: u64,
    /// Invalid gossip messages from one peer after which it is blacklisted.
    pub blacklist_after_rejects: u32,
    /// Most gossip messages handed to the engine at once.
    pub gossip_batch_max: usize,
    /// Most catch-up pages fetched for one document in one sync.
    pub sync_pages_max: usize,
    /// How long an invite token stays valid.
    pub invite_ttl_s: u64,
    /// Most peered organisations.
    pub peers_max: usize,
}

impl Default for FederationConfig {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            public_addrs: Vec::new(),
            anti_entropy_interval_s: 30,
            blacklist_after_rejects: 10,
            gossip_batch_max: 256,
            sync_pages_max: 1000,
            invite_ttl_s: 7 * 24 * 3600,
            peers_max: 1024,
        }
    }
}

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

/// Traffic of the federation task since the process started, for the admin API and
/// benchmarks. Bytes are payload bytes (what is published or fetched), without libp2p's
/// framing, encryption or gossipsub control messages. Relaxed atomics: each counter is exact,
/// a snapshot of several is not taken at one instant.
#[derive(Debug, Default, Serialize)]
pub struct FederationStats {
    /// Own messages published on gossip (changes, presence and typing batches) that the
    /// network took.
    pub gossip_published_messages: AtomicU64,
    pub gossip_published_bytes: AtomicU64,
    /// Gossip messages received (changes, presence and typing batches), before validation:
    /// duplicates and invalid ones included.
    pub gossip_received_messages: AtomicU64,
    pub gossip_received_bytes: AtomicU64,
    /// Catch-up pages received from peers, as the requester.
    pub catchup_received_pages: AtomicU64,
    pub catchup_received_changes: AtomicU64,
    pub catchup_received_bytes: AtomicU64,
    /// Catch-up pages answered to peers.
    pub catchup_served_pages: AtomicU64,
    pub catchup_served_changes: AtomicU64,
    pub catchup_served_bytes: AtomicU64,
}

fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}

impl FederationStats {
    fn published(&self, bytes: usize) {
        add(&self.gossip_published_messages, 1);
        add(&self.gossip_published_bytes, bytes);
    }

    fn received(&self, bytes: usize) {
        add(&self.gossip_received_messages, 1);
        add(&self.gossip_received_bytes, bytes);
    }

    fn page_received(&self, page: &confab_net::CatchupPage) {
        add(&self.catchup_received_pages, 1);
        add(&self.catchup_received_changes, page.changes.len());
        add(&self.catchup_received_bytes, page_bytes(page));
    }

    fn page_served(&self, page: &confab_net::CatchupPage) {
        add(&self.catchup_served_pages, 1);
        add(&self.catchup_served_changes, page.changes.len());
        add(&self.catchup_served_bytes, page_bytes(page));
    }
}

fn page_bytes(page: &confab_net::CatchupPage) -> usize {
    page.changes.iter().map(Vec::len).sum()
}

/// One peer as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PeerView {
    pub org_id: OrgId,
    pub peer_id: String,
    pub name: String,
    pub addrs: Vec<String>,
    pub connected: bool,
    pub last_seen_ms: Option<u64>,
    pub rtt_ms: Option<u64>,
    pub lag: Option<u64>,
    pub last_error: Option<String>,
    pub rejected_messages: u32,
    pub blacklisted: bool,
    pub score: Option<f64>,
}

impl FederationHandle {
    /// A signed invite token naming this node's organisation and addresses.
    pub async fn invite(&self, now_s: u64) -> ApiResult<(String, u64)> {
        let listening = self.net.listen_addrs().await.map_err(ApiError::internal)?;
        invite_token(&self.seed, &self.config, listening, now_s)
    }

    /// Every peered organisation with its network state.
    pub async fn peers(&self, records: Vec<(OrgId, PeerRecord)>) -> ApiResult<Vec<PeerView>> {
        let states = self.net.peers().await.map_err(ApiError::internal)?;
        let ms = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .ok()
        };
        Ok(records
            .into_iter()
            .map(|(org, record)| {
                let peer = confab_net::peer_id_of(org.as_bytes()).ok();
                let state = states.iter().find(|s| Some(s.peer) == peer);
                PeerView {
                    org_id: org,
                    peer_id: peer.map(|p| p.to_string()).unwrap_or_default(),
                    name: record.name,
                    addrs: record.addrs,
                    connected: state.is_some_and(|s| s.connected),
                    last_seen_ms: state.and_then(|s| s.last_seen).and_then(ms),
                    rtt_ms: state.and_then(|s| s.rtt).map(|d| d.as_millis() as u64),
                    lag: state.and_then(|s| s.lag),
                    last_error: state.and_then(|s| s.last_error.clone()),
                    rejected_messages: state.map_or(0, |s| s.rejected_messages),
                    blacklisted: state.is_some_and(|s| s.blacklisted),
                    score: state.and_then(|s| s.score),
                }
            })
            .collect())
    }
}

/// A signed invite token for the organisation of `seed`: its `public_addrs`, else `listening`
/// (at most 8), valid for `invite_ttl_s`. Returns the token and when it expires (Unix s).
pub fn invite_token(
    seed: &[u8; 32],
    config: &FederationConfig,
    listening: Vec<Multiaddr>,
    now_s: u64,
) -> ApiResult<(String, u64)> {
    let mut addrs = parse_addrs(&config.public_addrs).map_err(ApiError::internal)?;
    if addrs.is_empty() {
        addrs = listening;
    }
    if addrs.is_empty() {
        return Err(ApiError::bad_request(
            "no_address",
            "no address to put in the invite: set [federation] public_addrs (or listen on a fixed port)",
        ));
    }
    addrs.truncate(8);
    let expires = now_s + config.invite_ttl_s;
    let token =
        confab_net::InviteToken::issue(seed, &addrs, expires).map_err(ApiError::internal)?;
    Ok((token.encode(), expires))
}

/// The configured listen addresses that another node can dial as they are (a port 0 is only
/// known once listening).
pub fn fixed_listen_addrs(config: &FederationConfig) -> Result<Vec<Multiaddr>, FederationError> {
    Ok(parse_addrs(&config.listen)?
        .into_iter()
        .filter(|addr| {
            !addr.iter().any(|part| {
                matches!(
                    part,
                    libp2p::multiaddr::Protocol::Tcp(0) | libp2p::multiaddr::Protocol::Udp(0)
                )
            })
        })
        .collect())
}

/// Longest organisation name a peer may be given (as for this node's own).
pub const PEER_NAME_BYTES_MAX: usize = 63;

/// A new peer as an admin gives it (admin API or CLI): its organisation name (its users are
/// `someone@name`) and either an address ending in `/p2p/<peer id>` or an invite token its
/// admin made. Returns the organisation and the record to store.
pub fn new_peer(
    name: String,
    address: Option<&str>,
    invite: Option<&str>,
    now_ms: u64,
) -> ApiResult<(OrgId, PeerRecord)> {
    if name.len() > PEER_NAME_BYTES_MAX || confab_protocol::ids::validate_org_name(&name).is_err() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "a peer's name is 1 to 63 of a-z, 0-9 and '-', starting with a letter or digit",
        ));
    }
    let (org, addrs) = match (address, invite) {
        (Some(address), None) => {
            let (org, addr) = split_peer_address(address)
                .map_err(|message| ApiError::bad_request("invalid_body", message))?;
            (org, vec![addr.to_string()])
        }
        (None, Some(invite)) => {
            let token = confab_net::InviteToken::verify(invite, now_ms / 1000)
                .map_err(|e| ApiError::bad_request("invalid_invite", e.to_string()))?;
            let org = OrgId::from_bytes(token.org_key());
            (org, token.addrs().iter().map(|a| a.to_string()).collect())
        }
        _ => {
            return Err(ApiError::bad_request(
                "invalid_body",
                "give either address or invite",
            ))
        }
    };
    let record = PeerRecord {
        name,
        addrs,
        added_ms: now_ms,
    };
    Ok((org, record))
}

/// Whether `org` may be added to the peers `known` of organisation `own`.
pub fn check_new_peer(
    own: &OrgId,
    peers_max: usize,
    known: &[(OrgId, PeerRecord)],
    org: &OrgId,
) -> ApiResult<()> {
    if org == own {
        return Err(ApiError::bad_request(
            "invalid_body",
            "that address is this node's own",
        ));
    }
    if peer_of_org(org).is_none() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "not an organisation key",
        ));
    }
    if known.len() >= peers_max && !known.iter().any(|(o, _)| o == org) {
        return Err(ApiError::forbidden(
            "peer_limit",
            format!("at most {peers_max} peers"),
        ));
    }
    Ok(())
}

fn parse_addrs(texts: &[String]) -> Result<Vec<Multiaddr>, FederationError> {
    texts
        .iter()
        .map(|text| {
            text.parse::<Multiaddr>()
                .map_err(|_| FederationError::Address(text.clone()))
        })
        .collect()
}

/// Splits `/ip4/…/tcp/…/p2p/<peer>` into the address without `/p2p` and the peer's
/// organisation.
pub fn split_peer_address(text: &str) -> Result<(OrgId, Multiaddr), String> {
    let mut addr: Multiaddr = text
        .parse()
        .map_err(|_| format!("{text:?} is not a multiaddr"))?;
    let Some(libp2p::multiaddr::Protocol::P2p(peer)) = addr.pop() else {
        return Err("the address must end with /p2p/<peer id>".into());
    };
    let org = org_of_peer(&peer).ok_or("the peer id is not an organisation key")?;
    Ok((org, addr))
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
        let foreign = user
            .parse::<confab_protocol::UserId>()
            .is_ok_and(|user| user.org_name() != org_name);
        if foreign {
            chats.insert(chat);
        }
    }
    Ok(chats.into_iter().collect())
}

fn org_of_peer(peer: &PeerId) -> Option<OrgId> {
    confab_net::org_public_key_of(peer).map(OrgId::from_bytes)
}

fn peer_of_org(org: &OrgId) -> Option<PeerId> {
    confab_net::peer_id_of(org.as_bytes()).ok()
}

/// Adds (or updates) a peer: the record through the engine, then the network's allow-list.
pub async fn add_peer(
    handle: &FederationHandle,
    engine: &EngineHandle,
    known: &[(OrgId, PeerRecord)],
    org: OrgId,
    record: PeerRecord,
) -> ApiResult<()> {
    check_new_peer(&handle.own, handle.config.peers_max, known, &org)?;
    let addrs = parse_addrs(&record.addrs)
        .map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))?;
    let peer = peer_of_org(&org)
        .ok_or_else(|| ApiError::bad_request("invalid_body", "not an organisation key"))?;
    engine
        .call(|reply| Command::SetPeer {
            org,
            record: Some(record),
            reply,
        })
        .await?;
    handle
        .net
        .add_peer(peer, addrs)
        .await
        .map_err(ApiError::internal)
}

/// Removes a peer: refused from now on.
pub async fn remove_peer(
    handle: &FederationHandle,
    engine: &EngineHandle,
    org: OrgId,
) -> ApiResult<()> {
    engine
        .call(|reply| Command::SetPeer {
            org,
            record: None,
            reply,
        })
        .await?;
    if let Some(peer) = peer_of_org(&org) {
        handle
            .net
            .remove_peer(peer)
            .await
            .map_err(ApiError::internal)?;
    }
    Ok(())
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
    async fn load_shared_chats(&mut self) -> ApiResult<()> {
        for chat in shared_chats(self.store.as_ref(), &self.org_name)? {
            let answer = self
                .engine
                .call(|reply| Command::DocHeads {
                    doc: DocId::control(chat),
                    reply,
                })
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
                let joined = orgs
                    .current
                    .iter()
                    .filter(|org| !before.current.contains(org));
                let left = orgs
                    .former
                    .iter()
                    .filter(|org| before.current.contains(org));
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
            NetEvent::ConnectionRefused {
                peer,
                inbound,
                reason,
            } => tracing::info!(?peer, inbound, ?reason, "connection refused"),
            NetEvent::PeerBlacklisted { peer, rejected } => {
                tracing::warn!(%peer, rejected, "peer blacklisted for invalid messages")
            }
            NetEvent::Listening { addr } => tracing::info!(%addr, "federation listening"),
            NetEvent::AntiEntropyTick { peers } => {
                for peer in peers {
                    self.start_sync(peer);
                }
            }
            NetEvent::CatchupRequest {
                peer,
                request,
                responder,
            } => self.on_catchup_request(peer, request, responder),
            NetEvent::MediaRequest {
                peer,
                chat,
                blob,
                responder,
            } => {
                let member = org_of_peer(&peer).is_some_and(|org| {
                    self.chats
                        .get(&chat)
                        .is_some_and(|orgs| orgs.current.contains(&org))
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
            NetEvent::IndexRequest {
                peer,
                responder,
                poke,
            } => {
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

    /// Queues a presence change or typing notice of one of this node's users for the shared
    /// chats it concerns.
    fn on_local_ephemeral(&mut self, event: &crate::events::Ephemeral) {
        if event.about.org_name() != self.org_name {
            return;
        }
        let chats = &self.chats;
        self.ephemeral_out.push(event, |chat| {
            chats.get(chat).is_some_and(|orgs| !orgs.current.is_empty())
        });
    }

    async fn publish_ephemeral(&mut self) {
        for (chat, payload) in self.ephemeral_out.take() {
            let bytes = payload.len();
            match self.net.publish(chat, payload).await {
                Ok(_) => self.stats.published(bytes),
                Err(error) => tracing::debug!(%chat, %error, "ephemeral publish failed"),
            }
        }
    }

    /// A presence or typing batch from another organisation's node.
    async fn on_remote_ephemeral(&mut self, message: &confab_net::GossipMessage) {
        let Some(publisher) = message.source else {
            return self.report(message, Validation::Reject).await;
        };
        if !self
            .ephemeral_in
            .allow(publisher, std::time::Instant::now())
        {
            return self.report(message, Validation::Ignore).await;
        }
        let name = org_of_peer(&publisher).and_then(|org| {
            engine::peers(self.store.as_ref())
                .ok()?
                .into_iter()
                .find(|(known, _)| *known == org)
                .map(|(_, record)| record.name)
        });
        let Some(name) = name else {
            // A publisher we have not peered with (relayed by a member): we cannot tell
            // whose users it speaks for.
            return self.report(message, Validation::Ignore).await;
        };
        match ephemeral::decode(message.chat, &message.data, &name, crate::model::now_ms()) {
            Ok(events) => {
                for event in events {
                    self.hub.publish_ephemeral(event);
                }
                self.report(message, Validation::Accept).await;
            }
            Err(error) => {
                tracing::info!(%publisher, %error, "ephemeral batch refused");
                self.report(message, Validation::Reject).await;
            }
        }
    }

    async fn on_gossip(&mut self, batch: Vec<confab_net::GossipMessage>) {
        let mut changes = Vec::new();
        let mut sources = Vec::new();
        for message in batch {
            self.stats.received(message.data.len());
            if ephemeral::is_ephemeral(&message.data) {
                self.on_remote_ephemeral(&message).await;
                continue;
            }
            let decoded = SignedChange::decode(
                &message.data,
                confab_protocol::validate::Limits::default().change_bytes_max
                    + confab_protocol::signed_change::HEADER_LEN,
            );
            match decoded {
                Ok(change) if change.doc.chat == message.chat => {
                    changes.push(change);
                    sources.push(message);
                }
                _ => self.report(&message, Validation::Reject).await,
            }
        }
        if changes.is_empty() {
            return;
        }
        let mut verified = Vec::with_capacity(changes.len());
        let mut verified_sources = Vec::with_capacity(changes.len());
        let mut results = preverify(changes).await.into_iter();
        for message in sources {
            match results.next() {
                Some(Ok(change)) => {
                    verified.push(change);
                    verified_sources.push(message);
                }
                Some(Err(rejection)) => {
                    tracing::info!(peer = %message.propagation_source, %rejection, "gossiped change rejected");
                    self.report(&message, Validation::Reject).await;
                }
                // Not verified (see `preverify`): no verdict on the sender.
                None => self.report(&message, Validation::Ignore).await,
            }
        }
        let (changes, sources) = (verified, verified_sources);
        if changes.is_empty() {
            return;
        }
        let docs: Vec<DocId> = changes.iter().map(|c| c.signed().doc).collect();
        let verdicts = match self
            .engine
            .call(|reply| Command::ApplyRemote { changes, reply })
            .await
        {
            Ok(verdicts) => verdicts,
            Err(error) => {
                tracing::warn!(%error, "engine did not take gossip; ignoring it");
                vec![RemoteVerdict::Pending(String::new()); sources.len()]
            }
        };
        let mut repair = HashSet::new();
        for ((message, verdict), doc) in sources.iter().zip(verdicts).zip(docs) {
            let validation = match verdict {
                RemoteVerdict::Accepted => Validation::Accept,
                RemoteVerdict::Rejected(_) => Validation::Reject,
                RemoteVerdict::Duplicate => Validation::Ignore,
                RemoteVerdict::Pending(_) => {
                    repair.insert(message.propagation_source);
                    let _ = doc;
                    Validation::Ignore
                }
            };
            self.report(message, validation).await;
        }
        // Something is missing before these changes: catch up with whoever relayed them.
        for peer in repair {
            self.start_sync(peer);
        }
    }

    async fn report(&self, message: &confab_net::GossipMessage, validation: Validation) {
        if let Err(error) = self
            .net
            .report_validation(message.id, message.propagation_source, validation)
            .await
        {
            tracing::debug!(%error, "validation report failed");
        }
    }

    /// Whether `peer` may fetch `doc`, and up to which epoch. Members get every document;
    /// former members only the control document (to learn that they were removed), and a
    /// removed organisation only up to the change that removed it.
    fn may_fetch(&self, peer: &PeerId, doc: &DocId) -> (bool, Option<u64>) {
        let (Some(org), Some(orgs)) = (org_of_peer(peer), self.chats.get(&doc.chat)) else {
            return (false, None);
        };
        if orgs.current.contains(&org) {
            return (true, None);
        }
        let former = doc.kind == confab_protocol::DocKind::Control && orgs.former.contains(&org);
        (former, orgs.removed_at(&org))
    }

    fn on_catchup_request(
        &self,
        peer: PeerId,
        request: CatchupRequest,
        responder: confab_net::CatchupResponder,
    ) {
        let (member, until_epoch) = self.may_fetch(&peer, &request.doc);
        let store = self.store.clone();
        let serving = self.serving.clone();
        let stats = self.stats.clone();
        tokio::spawn(async move {
            let response = if member {
                let answer = tokio::task::spawn_blocking(move || {
                    serving.page(
                        store.as_ref(),
                        request.doc,
                        &request.heads,
                        &request.cursor,
                        &confab_net::CatchupLimits::default(),
                        until_epoch,
                    )
                })
                .await;
                match answer {
                    Ok(Ok(response)) => response,
                    Ok(Err(error)) => {
                        tracing::error!(%error, "catch-up answer failed");
                        CatchupResponse::Refused(confab_net::CatchupRefusal::Busy)
                    }
                    Err(_) => CatchupResponse::Refused(confab_net::CatchupRefusal::Busy),
                }
            } else {
                CatchupResponse::Refused(confab_net::CatchupRefusal::NotMember)
            };
            if let CatchupResponse::Page(page) = &response {
                stats.page_served(page);
            }
            if let Err(error) = responder.respond(response).await {
                tracing::debug!(%peer, %error, "catch-up answer failed");
            }
        });
    }

    /// Asks `peer` to sync with us (an index request is a poke).
    fn poke(&self, peer: PeerId) {
        let net = self.net.clone();
        tokio::spawn(async move {
            if let Err(error) = net.poke(peer).await {
                tracing::debug!(%peer, %error, "poke failed");
            }
        });
        self.start_sync(peer);
    }

    /// Starts a sync with `peer` unless one runs; then it runs once more when it ends.
    fn start_sync(&self, peer: PeerId) {
        {
            let mut syncing = self.syncing.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(again) = syncing.get_mut(&peer) {
                *again = true;
                return;
            }
            syncing.insert(peer, false);
        }
        let sync = Sync {
            net: self.net.clone(),
            engine: self.engine.clone(),
            stats: self.stats.clone(),
            pages_max: self.config.sync_pages_max,
            known: self
                .chats
                .iter()
                .filter(|(_, orgs)| {
                    org_of_peer(&peer).is_some_and(|org| orgs.current.contains(&org))
                })
                .map(|(chat, _)| *chat)
                .collect(),
        };
        let syncing = self.syncing.clone();
        tokio::spawn(async move {
            loop {
                if let Err(error) = sync.with_peer(peer).await {
                    tracing::debug!(%peer, %error, "sync stopped");
                }
                let mut running = syncing.lock().unwrap_or_else(|e| e.into_inner());
                match running.get_mut(&peer) {
                    Some(again) if *again => *again = false,
                    _ => {
                        running.remove(&peer);
                        return;
                    }
                }
            }
        });
    }
}

/// One catch-up run with one peer.
struct Sync {
    net: NetworkHandle,
    engine: EngineHandle,
    stats: Arc<FederationStats>,
    pages_max: usize,
    /// Chats we know we share with the peer.
    known: Vec<ChatId>,
}

#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("network: {0}")]
    Net(#[from] confab_net::NetError),
    #[error("engine: {0}")]
    Engine(String),
}

impl From<ApiError> for SyncError {
    fn from(error: ApiError) -> Self {
        SyncError::Engine(error.message)
    }
}

impl Sync {
    async fn with_peer(&self, peer: PeerId) -> Result<(), SyncError> {
        let mut chats = self.net.index(peer).await?;
        for chat in &self.known {
            if !chats.contains(chat) {
                chats.push(*chat);
            }
        }
        // Every chat's control document and current bucket first (what makes it readable),
        // then the older buckets of all of them, newest first: a long history never delays
        // another chat's latest messages.
        let mut applied = 0usize;
        let mut older = Vec::with_capacity(chats.len());
        for chat in chats {
            let (latest, current_bucket) = self.latest(peer, chat).await?;
            applied += latest;
            older.push((chat, current_bucket));
        }
        for (chat, current_bucket) in older {
            for number in (1..current_bucket).rev() {
                applied += self.doc(peer, DocId::bucket(chat, number)).await?;
            }
        }
        if applied > 0 {
            tracing::info!(%peer, applied, "caught up");
        }
        let _ = self.net.set_peer_lag(peer, Some(0)).await;
        Ok(())
    }

    /// The control document, then the current bucket; returns the changes applied and the
    /// current bucket's number (0 when the chat is unknown).
    async fn latest(&self, peer: PeerId, chat: ChatId) -> Result<(usize, u32), SyncError> {
        let mut applied = self.doc(peer, DocId::control(chat)).await?;
        let Some(info) = self.heads(DocId::control(chat)).await? else {
            return Ok((applied, 0));
        };
        if info.current_bucket > 0 {
            applied += self
                .doc(peer, DocId::bucket(chat, info.current_bucket))
                .await?;
        }
        Ok((applied, info.current_bucket))
    }

    async fn heads(&self, doc: DocId) -> Result<Option<engine::DocHeads>, SyncError> {
        Ok(self
            .engine
            .call(|reply| Command::DocHeads { doc, reply })
            .await?)
    }

    /// Fetches and applies the changes of one document the peer has and we lack. Pages are
    /// pipelined: while the engine applies one, the next is fetched and its signatures are
    /// verified (the cursor alone says where the next page starts, so the heads of the first
    /// request serve for all of them).
    async fn doc(&self, peer: PeerId, doc: DocId) -> Result<usize, SyncError> {
        let limits = confab_net::CatchupLimits::default();
        let heads: Vec<[u8; 32]> = self
            .heads(doc)
            .await?
            .map(|h| h.heads)
            .unwrap_or_default()
            .into_iter()
            .take(limits.max_heads)
            .collect();
        let request = |cursor: Vec<u8>| CatchupRequest {
            doc,
            heads: heads.clone(),
            cursor,
        };
        let mut next = self.fetch(peer, request(Vec::new())).await?;
        let mut applied = 0;
        for _ in 0..self.pages_max {
            let Some(page) = next.take() else {
                break;
            };
            let following = async {
                match page.more {
                    true => self.fetch(peer, request(page.cursor.clone())).await,
                    false => Ok(None),
                }
            };
            let (applied_now, following) =
                tokio::join!(self.apply(peer, doc, page.changes), following);
            applied += applied_now?;
            next = following?;
        }
        Ok(applied)
    }

    /// One page of `doc` from `peer`, decoded and its signatures verified; `None` when the
    /// peer refused.
    async fn fetch(
        &self,
        peer: PeerId,
        request: CatchupRequest,
    ) -> Result<Option<FetchedPage>, SyncError> {
        let doc = request.doc;
        let page = match self.net.catchup(peer, request).await? {
            CatchupResponse::Page(page) => page,
            CatchupResponse::Refused(_) | CatchupResponse::Index(_) => return Ok(None),
        };
        self.stats.page_received(&page);
        let limits = confab_net::CatchupLimits::default();
        let mut invalid = page.changes.len();
        let decoded: Vec<SignedChange> = page
            .changes
            .iter()
            .filter_map(|bytes| SignedChange::decode(bytes, limits.max_change_bytes).ok())
            .collect();
        let changes: Vec<Preverified> = preverify(decoded)
            .await
            .into_iter()
            .filter_map(Result::ok)
            .collect();
        invalid -= changes.len();
        if invalid > 0 {
            tracing::warn!(%peer, %doc, invalid, "catch-up page held changes that do not decode or verify");
            self.report_invalid(peer, invalid).await;
        }
        Ok(Some(FetchedPage {
            changes,
            more: page.more,
            cursor: page.cursor,
        }))
    }

    /// Counts invalid changes the peer served against it (it is blacklisted when they add up):
    /// an honest peer serves only changes it accepted, which are valid for every member.
    async fn report_invalid(&self, peer: PeerId, invalid: usize) {
        let count = u32::try_from(invalid).unwrap_or(u32::MAX);
        if let Err(error) = self.net.report_invalid(peer, count).await {
            tracing::debug!(%peer, %error, "could not report invalid changes");
        }
    }

    /// Hands verified changes to the engine; returns how many it accepted.
    async fn apply(
        &self,
        peer: PeerId,
        doc: DocId,
        changes: Vec<Preverified>,
    ) -> Result<usize, SyncError> {
        if changes.is_empty() {
            return Ok(0);
        }
        let verdicts = self
            .engine
            .call(|reply| Command::ApplyRemote { changes, reply })
            .await?;
        let rejected = verdicts
            .iter()
            .filter(|v| matches!(v, RemoteVerdict::Rejected(_)))
            .count();
        if rejected > 0 {
            tracing::warn!(%peer, %doc, rejected, "catch-up page held invalid changes");
            self.report_invalid(peer, rejected).await;
        }
        Ok(verdicts
            .iter()
            .filter(|v| **v == RemoteVerdict::Accepted)
            .count())
    }
}

/// A catch-up page whose changes decoded and verified.
struct FetchedPage {
    changes: Vec<Preverified>,
    more: bool,
    cursor: Vec<u8>,
}

/// Changes in a batch below this many are verified on one thread.
const PARALLEL_VERIFY_MIN: usize = 64;

/// Parses remote changes and verifies their signatures (the stateless start of the validation
/// pipeline, [`Preverified::verify`]) on tokio's blocking threads, a batch split across the
/// machine's cores: signature checks were about half of the engine's time in a catch-up.
async fn preverify(changes: Vec<SignedChange>) -> Vec<Result<Preverified, Rejection>> {
    let limits = confab_protocol::validate::Limits::default();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let parts = if changes.len() < PARALLEL_VERIFY_MIN {
        1
    } else {
        threads
            .min(changes.len() / (PARALLEL_VERIFY_MIN / 2))
            .max(1)
    };
    let per_part = changes.len().div_ceil(parts).max(1);
    let mut tasks = Vec::with_capacity(parts);
    let mut rest = changes.into_iter();
    loop {
        let part: Vec<SignedChange> = rest.by_ref().take(per_part).collect();
        if part.is_empty() {
            break;
        }
        let limits = limits.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            part.into_iter()
                .map(|signed| Preverified::verify(signed, &limits))
                .collect::<Vec<_>>()
        }));
    }
    let mut out = Vec::new();
    for task in tasks {
        match task.await {
            Ok(results) => out.extend(results),
            // A panicking verifier (a bug) must not take the node down; the caller sees the
            // batch as shorter and treats the rest as not verified.
            Err(error) => {
                tracing::error!(%error, "signature verification task failed");
                break;
            }
        }
    }
    out
}
