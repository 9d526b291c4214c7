//! The network actor: the one task that owns the swarm and does all network I/O. It serves
//! handle commands, turns swarm events into [`NetEvent`]s, dials allow-listed peers with
//! exponential backoff, counts rejected messages per peer and blacklists repeat offenders.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use confab_protocol::{ChatId, DocId, DocKind};
use libp2p::futures::StreamExt;
use libp2p::gossipsub::{self, MessageAcceptance, TopicHash};
use libp2p::identity::Keypair;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::SwarmEvent;
use libp2p::{identify, noise, ping, tcp, yamux, Multiaddr, PeerId, Swarm};
use tokio::sync::mpsc;

use crate::behaviour::{Behaviour, BehaviourEvent};
use crate::catchup::{CatchupCodec, CatchupRequest, CatchupResponse, Refusal, Request, PROTOCOL};
use crate::config::NetConfig;
use crate::consent::Consent;
use crate::gossip;
use crate::handle::{
    CatchupResponder, Command, GossipMessage, MediaResponder, MessageHash, NetEvent, PeerInfo,
    Reply, Validation,
};
use crate::media::{MediaCodec, MediaRefusal, MediaRequest, MediaResponse};
use crate::members::MemberGossip;
use crate::NetError;

/// How often due dials and housekeeping run.
const TICK: Duration = Duration::from_millis(100);

struct PeerState {
    addrs: Vec<Multiaddr>,
    connections: usize,
    last_seen: Option<SystemTime>,
    rtt: Option<Duration>,
    lag: Option<u64>,
    last_error: Option<String>,
    rejected: u32,
    blacklisted: bool,
    backoff: Duration,
    next_dial: Instant,
    dialing: bool,
}

pub(crate) struct Actor {
    swarm: Swarm<Behaviour>,
    config: NetConfig,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetEvent>,
    weak_tx: mpsc::WeakSender<Command>,
    peers: HashMap<PeerId, PeerState>,
    topics: HashMap<TopicHash, ChatId>,
    /// Former members per chat topic: admitted to catch-up of the chat's control document only
    /// (never to the topic). Chats without former members have no entry.
    former_members: HashMap<TopicHash, HashSet<PeerId>>,
    listen_addrs: Vec<Multiaddr>,
    pending_responses: HashMap<u64, ResponseChannel<CatchupResponse>>,
    next_response_id: u64,
    outstanding: HashMap<OutboundRequestId, Reply<CatchupResponse>>,
    /// Inbound media requests waiting for the node (ids from `next_response_id`).
    pending_media: HashMap<u64, ResponseChannel<MediaResponse>>,
    outstanding_media: HashMap<OutboundRequestId, Reply<MediaResponse>>,
}

fn swarm_error(e: impl std::fmt::Display) -> NetError {
    NetError::Config(e.to_string())
}

impl Actor {
    pub(crate) fn new(
        keypair: Keypair,
        config: NetConfig,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<NetEvent>,
        weak_tx: mpsc::WeakSender<Command>,
    ) -> Result<Self, NetError> {
        let gossipsub = gossip::build(&keypair, &config.gossip)?;
        let members = MemberGossip::new(gossipsub, config.gossip.max_subscriptions_per_peer);
        let consent = Consent::new(config.limits.clone());
        let catchup = request_response::Behaviour::with_codec(
            CatchupCodec::new(config.catchup),
            [(PROTOCOL, request_response::ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(config.catchup_timeout)
                .with_max_concurrent_streams(config.catchup_max_concurrent_streams),
        );
        let media = request_response::Behaviour::with_codec(
            MediaCodec::new(config.media_max_bytes),
            [(crate::media::PROTOCOL, request_response::ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(config.media_timeout)
                .with_max_concurrent_streams(config.media_max_concurrent_streams),
        );
        let identify = identify::Behaviour::new(identify::Config::new(
            "/confab/1.0.0".to_owned(),
            keypair.public(),
        ));
        let ping = ping::Behaviour::new(ping::Config::new());
        let idle = config.idle_connection_timeout;
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(swarm_error)?
            .with_quic()
            .with_behaviour(|_| Behaviour {
                consent,
                identify,
                ping,
                gossip: members,
                catchup,
                media,
            })
            .map_err(swarm_error)?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build();
        for addr in &config.listen_addrs {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| NetError::Listen { addr: addr.to_string(), reason: e.to_string() })?;
        }
        Ok(Self {
            swarm,
            config,
            commands,
            events,
            weak_tx,
            peers: HashMap::new(),
            topics: HashMap::new(),
            former_members: HashMap::new(),
            listen_addrs: Vec::new(),
            pending_responses: HashMap::new(),
            next_response_id: 0,
            outstanding: HashMap::new(),
            pending_media: HashMap::new(),
            outstanding_media: HashMap::new(),
        })
    }

    pub(crate) async fn run(mut self) {
        let local = *self.swarm.local_peer_id();
        tracing::info!(peer = %local, "network actor started");
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let start = tokio::time::Instant::now() + self.config.anti_entropy_interval;
        let mut anti_entropy = tokio::time::interval_at(start, self.config.anti_entropy_interval);
        anti_entropy.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(command) => self.on_command(command).await,
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event).await,
                _ = tick.tick() => self.housekeeping(),
                _ = anti_entropy.tick() => {
                    let peers = self.connected_peers();
                    if !peers.is_empty() {
                        self.emit(NetEvent::AntiEntropyTick { peers }).await;
                    }
                }
            }
        }
        tracing::info!(peer = %local, "network actor stopped");
    }

    fn connected_peers(&self) -> Vec<PeerId> {
        self.peers.iter().filter(|(_, s)| s.connections > 0).map(|(p, _)| *p).collect()
    }

    async fn emit(&mut self, event: NetEvent) {
        if self.events.send(event).await.is_err() {
            tracing::debug!("event receiver dropped; event discarded");
        }
    }

    fn housekeeping(&mut self) {
        let now = Instant::now();
        let due: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, s)| {
                s.connections == 0
                    && !s.dialing
                    && !s.blacklisted
                    && !s.addrs.is_empty()
                    && s.next_dial <= now
            })
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            self.dial(peer);
        }
        self.pending_responses.retain(|_, channel| channel.is_open());
        self.pending_media.retain(|_, channel| channel.is_open());
    }

    fn dial(&mut self, peer: PeerId) {
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        let opts = DialOpts::peer_id(peer)
            .addresses(state.addrs.clone())
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        state.dialing = true;
        tracing::debug!(%peer, backoff_ms = state.backoff.as_millis() as u64, "dialing peer");
        if let Err(error) = self.swarm.dial(opts) {
            self.dial_failed(peer, error.to_string());
        }
    }

    fn dial_failed(&mut self, peer: PeerId, error: String) {
        let (min, max) = (self.config.dial_backoff_min, self.config.dial_backoff_max);
        if let Some(state) = self.peers.get_mut(&peer) {
            state.dialing = false;
            state.next_dial = Instant::now() + state.backoff;
            tracing::debug!(%peer, %error, retry_in_ms = state.backoff.as_millis() as u64, "dial failed");
            state.backoff = (state.backoff * 2).clamp(min, max);
            state.last_error = Some(error);
        }
    }

    fn topic(&self, chat: &ChatId) -> TopicHash {
        gossip::topic_of(chat).hash()
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::AddPeer { peer, addrs, reply } => {
                let _ = reply.send(self.add_peer(peer, addrs));
            }
            Command::RemovePeer { peer, reply } => {
                self.peers.remove(&peer);
                self.swarm.behaviour_mut().consent.disallow(&peer);
                let _ = self.swarm.disconnect_peer_id(peer);
                tracing::info!(%peer, "peer removed from the allow-list");
                let _ = reply.send(Ok(()));
            }
            Command::UnblockPeer { peer, reply } => {
                let behaviour = self.swarm.behaviour_mut();
                behaviour.consent.unblock(&peer);
                behaviour.gossip.inner.remove_blacklisted_peer(&peer);
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.blacklisted = false;
                    state.rejected = 0;
                    state.backoff = self.config.dial_backoff_min;
                    state.next_dial = Instant::now();
                }
                tracing::info!(%peer, "peer unblocked");
                let _ = reply.send(Ok(()));
            }
            Command::Subscribe { chat, reply } => {
                let _ = reply.send(self.subscribe(chat));
            }
            Command::Unsubscribe { chat, reply } => {
                let topic = gossip::topic_of(&chat);
                self.swarm.behaviour_mut().gossip.inner.unsubscribe(&topic);
                self.topics.remove(&topic.hash());
                let _ = reply.send(Ok(()));
            }
            Command::SetChannelMembers { chat, members, reply } => {
                let _ = reply.send(self.set_members(chat, members));
            }
            Command::SetChannelFormerMembers { chat, peers, reply } => {
                let _ = reply.send(self.set_former_members(chat, peers));
            }
            Command::Publish { chat, data, reply } => {
                let topic = self.topic(&chat);
                let result = if !self.topics.contains_key(&topic) {
                    Err(NetError::NotSubscribed)
                } else {
                    let id = MessageHash(gossip::message_id_of(&data));
                    match self.swarm.behaviour_mut().gossip.inner.publish(topic, data) {
                        Ok(_) => Ok(id),
                        Err(e) => Err(NetError::Publish(e.to_string())),
                    }
                };
                let _ = reply.send(result);
            }
            Command::ReportValidation { id, propagation_source, validation } => {
                self.report_validation(id, propagation_source, validation).await;
            }
            Command::ReportInvalid { peer, count } => self.report_invalid(peer, count).await,
            Command::SendCatchup { peer, request, reply } => {
                if self.outstanding.len() >= self.config.max_outstanding_catchup_requests {
                    let _ = reply.send(Err(NetError::Limit("outstanding catch-up requests")));
                } else if !self.swarm.is_connected(&peer) {
                    let _ = reply.send(Err(NetError::NotConnected(peer)));
                } else if let Err(e) =
                    crate::catchup::encode_request(&request, &self.config.catchup)
                {
                    let _ = reply.send(Err(e.into()));
                } else {
                    let id = self.swarm.behaviour_mut().catchup.send_request(&peer, request);
                    self.outstanding.insert(id, reply);
                }
            }
            Command::RespondCatchup { id, response } => {
                if let Some(channel) = self.pending_responses.remove(&id) {
                    if self.swarm.behaviour_mut().catchup.send_response(channel, response).is_err()
                    {
                        tracing::debug!(id, "catch-up response not sent: stream closed");
                    }
                }
            }
            Command::CancelCatchup { id } => {
                self.pending_responses.remove(&id);
            }
            Command::SendMedia { peer, request, reply } => {
                if self.outstanding_media.len() >= self.config.max_outstanding_media_requests {
                    let _ = reply.send(Err(NetError::Limit("outstanding media requests")));
                } else if !self.swarm.is_connected(&peer) {
                    let _ = reply.send(Err(NetError::NotConnected(peer)));
                } else {
                    let id = self.swarm.behaviour_mut().media.send_request(&peer, request);
                    self.outstanding_media.insert(id, reply);
                }
            }
            Command::RespondMedia { id, response } => {
                if let Some(channel) = self.pending_media.remove(&id) {
                    if self.swarm.behaviour_mut().media.send_response(channel, response).is_err() {
                        tracing::debug!(id, "media response not sent: stream closed");
                    }
                }
            }
            Command::CancelMedia { id } => {
                self.pending_media.remove(&id);
            }
            Command::SetPeerLag { peer, lag } => {
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.lag = lag;
                }
            }
            Command::Peers { reply } => {
                let gossip = &self.swarm.behaviour().gossip.inner;
                let mut list: Vec<PeerInfo> = self
                    .peers
                    .iter()
                    .map(|(peer, s)| PeerInfo {
                        peer: *peer,
                        addrs: s.addrs.clone(),
                        connected: s.connections > 0,
                        last_seen: s.last_seen,
                        rtt: s.rtt,
                        lag: s.lag,
                        last_error: s.last_error.clone(),
                        rejected_messages: s.rejected,
                        blacklisted: s.blacklisted,
                        score: gossip.peer_score(peer),
                    })
                    .collect();
                list.sort_by_key(|info| info.peer);
                let _ = reply.send(Ok(list));
            }
            Command::TopicPeers { chat, reply } => {
                let topic = self.topic(&chat);
                let peers = self
                    .swarm
                    .behaviour()
                    .gossip
                    .inner
                    .all_peers()
                    .filter(|(_, topics)| topics.contains(&&topic))
                    .map(|(p, _)| *p)
                    .collect();
                let _ = reply.send(Ok(peers));
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(Ok(self.listen_addrs.clone()));
            }
            Command::Shutdown => {}
        }
    }

    fn add_peer(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) -> Result<(), NetError> {
        if peer == *self.swarm.local_peer_id() {
            return Err(NetError::Config("cannot peer with ourselves".into()));
        }
        if !self.peers.contains_key(&peer) && self.peers.len() >= self.config.max_allowed_peers {
            return Err(NetError::Limit("allow-listed peers"));
        }
        // Keep only dialable addresses; a trailing /p2p naming this peer is removed.
        let addrs: Vec<Multiaddr> = addrs
            .into_iter()
            .map(|a| {
                a.into_iter()
                    .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
                    .collect()
            })
            .collect();
        self.swarm.behaviour_mut().consent.allow(peer);
        let min = self.config.dial_backoff_min;
        let state = self.peers.entry(peer).or_insert_with(|| PeerState {
            addrs: Vec::new(),
            connections: 0,
            last_seen: None,
            rtt: None,
            lag: None,
            last_error: None,
            rejected: 0,
            blacklisted: false,
            backoff: min,
            next_dial: Instant::now(),
            dialing: false,
        });
        state.addrs = addrs;
        state.next_dial = Instant::now();
        state.backoff = min;
        tracing::info!(%peer, addrs = ?state.addrs, "peer allow-listed");
        Ok(())
    }

    fn subscribe(&mut self, chat: ChatId) -> Result<(), NetError> {
        let topic = gossip::topic_of(&chat);
        let hash = topic.hash();
        if !self.topics.contains_key(&hash) && self.topics.len() >= self.config.max_channels {
            return Err(NetError::Limit("subscribed channels"));
        }
        let params = gossip::topic_score_params(&self.config.gossip);
        let gs = &mut self.swarm.behaviour_mut().gossip.inner;
        gs.subscribe(&topic).map_err(|e| NetError::Config(format!("subscribe: {e}")))?;
        if let Err(e) = gs.set_topic_params(topic, params) {
            tracing::warn!(error = %e, "topic score parameters refused");
        }
        self.topics.insert(hash, chat);
        Ok(())
    }

    fn set_members(&mut self, chat: ChatId, members: Vec<PeerId>) -> Result<(), NetError> {
        if members.len() > self.config.max_allowed_peers {
            return Err(NetError::Limit("channel members"));
        }
        let topic = self.topic(&chat);
        let members: HashSet<PeerId> = members.into_iter().collect();
        let revoked = self.swarm.behaviour_mut().gossip.set_members(topic, members);
        for peer in revoked {
            tracing::info!(%peer, %chat, "channel membership revoked; closing connections");
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        Ok(())
    }

    /// Sets the former members of `chat`: they may fetch its control document by catch-up,
    /// nothing else (the gossip filter does not know them). Bounded like [`Self::set_members`].
    fn set_former_members(&mut self, chat: ChatId, peers: Vec<PeerId>) -> Result<(), NetError> {
        if peers.len() > self.config.max_allowed_peers {
            return Err(NetError::Limit("channel former members"));
        }
        let topic = self.topic(&chat);
        let peers: HashSet<PeerId> = peers.into_iter().collect();
        if peers.is_empty() {
            self.former_members.remove(&topic);
        } else {
            self.former_members.insert(topic, peers);
        }
        Ok(())
    }

    /// Whether `peer` may ask for `doc` by catch-up: a member of the document's chat may ask
    /// for any of its documents, a former member for its control document only.
    fn may_catch_up(&self, peer: &PeerId, doc: &DocId) -> bool {
        let topic = self.topic(&doc.chat);
        self.swarm.behaviour().gossip.is_member(&topic, peer)
            || (doc.kind == DocKind::Control
                && self.former_members.get(&topic).is_some_and(|former| former.contains(peer)))
    }

    async fn report_validation(&mut self, id: MessageHash, source: PeerId, validation: Validation) {
        let acceptance = match validation {
            Validation::Accept => MessageAcceptance::Accept,
            Validation::Reject => MessageAcceptance::Reject,
            Validation::Ignore => MessageAcceptance::Ignore,
        };
        let msg_id = gossipsub::MessageId::from(id.0.to_vec());
        let gs = &mut self.swarm.behaviour_mut().gossip.inner;
        if !gs.report_message_validation_result(&msg_id, &source, acceptance) {
            tracing::debug!(message = %id, "validation report for a message no longer cached");
        }
        if validation != Validation::Reject {
            return;
        }
        tracing::info!(peer = %source, message = %id, "gossip message rejected");
        let graylisted = self.graylisted(&source);
        self.count_rejections(source, 1, graylisted).await;
    }

    /// Invalid changes a peer served outside gossip (in catch-up pages).
    async fn report_invalid(&mut self, peer: PeerId, count: u32) {
        tracing::info!(%peer, count, "invalid changes served by peer");
        self.count_rejections(peer, count, false).await;
    }

    /// Adds `count` to `peer`'s rejections; blacklists it when they reach
    /// `blacklist_after_rejects` or when `graylisted`.
    async fn count_rejections(&mut self, peer: PeerId, count: u32, graylisted: bool) {
        let threshold = self.config.blacklist_after_rejects;
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        state.rejected = state.rejected.saturating_add(count);
        if state.rejected >= threshold || graylisted {
            self.blacklist(peer).await;
        }
    }

    /// Whether gossipsub's score of `peer` is below the graylist threshold. Gossipsub then drops
    /// the peer's messages before the node judges them, so the reject count stops growing: a
    /// peer that sends invalid messages slowly would stay below `blacklist_after_rejects` for
    /// ever. Only the invalid-message term is strongly negative (see [`gossip`]), so a graylisted
    /// peer that had messages rejected got there by sending them.
    fn graylisted(&self, peer: &PeerId) -> bool {
        let threshold = self.config.gossip.graylist_threshold;
        self.swarm.behaviour().gossip.inner.peer_score(peer).is_some_and(|score| score < threshold)
    }

    /// Blacklists `peer`: refused by the consent gate and gossipsub, disconnected, reported.
    async fn blacklist(&mut self, peer: PeerId) {
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        if state.blacklisted {
            return;
        }
        state.blacklisted = true;
        let rejected = state.rejected;
        let behaviour = self.swarm.behaviour_mut();
        behaviour.consent.block(peer);
        behaviour.gossip.inner.blacklist_peer(&peer);
        let _ = self.swarm.disconnect_peer_id(peer);
        tracing::warn!(%peer, rejected, "peer blacklisted");
        self.emit(NetEvent::PeerBlacklisted { peer, rejected }).await;
    }

    fn seen(&mut self, peer: &PeerId) {
        if let Some(state) = self.peers.get_mut(peer) {
            state.last_seen = Some(SystemTime::now());
        }
    }

    async fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                self.listen_addrs.push(address.clone());
                self.emit(NetEvent::Listening { addr: address }).await;
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| *a != address);
            }
            SwarmEvent::ConnectionEstablished { peer_id, num_established, endpoint, .. } => {
                let min = self.config.dial_backoff_min;
                if let Some(state) = self.peers.get_mut(&peer_id) {
                    state.connections = num_established.get() as usize;
                    state.dialing = false;
                    state.backoff = min;
                    state.last_error = None;
                    state.last_seen = Some(SystemTime::now());
                }
                tracing::info!(peer = %peer_id, remote = %endpoint.get_remote_address(), "connection established");
                if num_established.get() == 1 {
                    self.emit(NetEvent::PeerConnected { peer: peer_id }).await;
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established, cause, .. } => {
                let min = self.config.dial_backoff_min;
                if let Some(state) = self.peers.get_mut(&peer_id) {
                    state.connections = num_established as usize;
                    if num_established == 0 {
                        state.dialing = false;
                        state.next_dial = Instant::now() + min;
                        if let Some(cause) = &cause {
                            state.last_error = Some(cause.to_string());
                        }
                    }
                }
                tracing::info!(peer = %peer_id, cause = ?cause, remaining = num_established, "connection closed");
                if num_established == 0 {
                    self.emit(NetEvent::PeerDisconnected { peer: peer_id }).await;
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id: Some(peer), error, .. } => {
                self.dial_failed(peer, error.to_string());
            }
            SwarmEvent::IncomingConnectionError { send_back_addr, error, .. } => {
                tracing::debug!(remote = %send_back_addr, %error, "incoming connection failed");
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event).await,
            _ => {}
        }
    }

    async fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Consent(refused) => {
                self.emit(NetEvent::ConnectionRefused {
                    peer: refused.peer,
                    inbound: refused.inbound,
                    reason: refused.reason,
                })
                .await;
            }
            BehaviourEvent::Ping(ping::Event { peer, result, .. }) => match result {
                Ok(rtt) => {
                    if let Some(state) = self.peers.get_mut(&peer) {
                        state.rtt = Some(rtt);
                        state.last_seen = Some(SystemTime::now());
                    }
                }
                Err(e) => tracing::debug!(%peer, error = %e, "ping failed"),
            },
            BehaviourEvent::Identify(event) => {
                if let identify::Event::Received { peer_id, info, .. } = event {
                    tracing::debug!(peer = %peer_id, agent = %info.agent_version, "identified");
                }
            }
            BehaviourEvent::Gossip(event) => self.on_gossip_event(event).await,
            BehaviourEvent::Catchup(event) => self.on_catchup_event(event).await,
            BehaviourEvent::Media(event) => self.on_media_event(event).await,
        }
    }

    async fn on_gossip_event(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message { propagation_source, message_id, message } => {
                self.seen(&propagation_source);
                let chat = self.topics.get(&message.topic).copied();
                let id = <[u8; 32]>::try_from(message_id.0.as_slice()).ok().map(MessageHash);
                match (chat, id) {
                    (Some(chat), Some(id)) => {
                        tracing::debug!(peer = %propagation_source, %chat, message = %id, bytes = message.data.len(), "gossip received");
                        self.emit(NetEvent::Gossip(GossipMessage {
                            chat,
                            id,
                            propagation_source,
                            source: message.source,
                            data: message.data,
                        }))
                        .await;
                    }
                    _ => {
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .gossip
                            .inner
                            .report_message_validation_result(
                                &message_id,
                                &propagation_source,
                                MessageAcceptance::Ignore,
                            );
                    }
                }
            }
            gossipsub::Event::Subscribed { peer_id, topic, .. } => {
                tracing::debug!(peer = %peer_id, %topic, "peer subscribed");
            }
            gossipsub::Event::Unsubscribed { peer_id, topic } => {
                tracing::debug!(peer = %peer_id, %topic, "peer unsubscribed");
            }
            gossipsub::Event::GossipsubNotSupported { peer_id } => {
                tracing::info!(peer = %peer_id, "peer does not speak gossipsub");
            }
            gossipsub::Event::SlowPeer { peer_id, failed_messages } => {
                tracing::warn!(peer = %peer_id, ?failed_messages, "slow peer");
            }
        }
    }

    async fn on_catchup_event(&mut self, event: request_response::Event<Request, CatchupResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    self.seen(&peer);
                    match request {
                        Request::Document(request) => {
                            self.on_document_request(peer, request, channel).await;
                        }
                        Request::Index => self.on_index_request(peer, channel, false).await,
                        Request::Poke => self.on_index_request(peer, channel, true).await,
                    }
                }
                request_response::Message::Response { request_id, response } => {
                    self.seen(&peer);
                    if let Some(reply) = self.outstanding.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure { peer, request_id, error, .. } => {
                tracing::debug!(%peer, %error, "catch-up request failed");
                if let Some(reply) = self.outstanding.remove(&request_id) {
                    let _ = reply.send(Err(NetError::Catchup(error.to_string())));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound catch-up failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Refuses an inbound request without involving the node.
    fn refuse(&mut self, channel: ResponseChannel<CatchupResponse>, refusal: Refusal) {
        let _ = self
            .swarm
            .behaviour_mut()
            .catchup
            .send_response(channel, CatchupResponse::Refused(refusal));
    }

    /// Holds an inbound request's channel for the node and returns its responder, or gives the
    /// channel back when the pending-responses cap is reached.
    fn hold(
        &mut self,
        channel: ResponseChannel<CatchupResponse>,
        index: bool,
    ) -> Result<CatchupResponder, ResponseChannel<CatchupResponse>> {
        if self.pending_responses.len() >= self.config.max_pending_catchup_responses {
            return Err(channel);
        }
        let id = self.next_response_id;
        self.next_response_id += 1;
        self.pending_responses.insert(id, channel);
        Ok(CatchupResponder {
            id,
            limits: self.config.catchup,
            index,
            tx: Some(self.weak_tx.clone()),
        })
    }

    /// A document request: only from a member peer of the document's chat, or from a former
    /// member for the chat's control document ([`Self::may_catch_up`]).
    async fn on_document_request(
        &mut self,
        peer: PeerId,
        request: CatchupRequest,
        channel: ResponseChannel<CatchupResponse>,
    ) {
        if !self.may_catch_up(&peer, &request.doc) {
            tracing::info!(%peer, doc = %request.doc, refusal = ?Refusal::NotMember, "catch-up request refused");
            self.refuse(channel, Refusal::NotMember);
            return;
        }
        match self.hold(channel, false) {
            Ok(responder) => {
                self.emit(NetEvent::CatchupRequest { peer, request, responder }).await;
            }
            Err(channel) => {
                tracing::info!(%peer, doc = %request.doc, refusal = ?Refusal::Busy, "catch-up request refused");
                self.refuse(channel, Refusal::Busy);
            }
        }
    }

    /// A chat index request: from any allow-listed, not blacklisted peer (the connection exists,
    /// so the consent gate admitted it); no membership check, since the requester may know no
    /// chat id yet. The node lists only the chats the requester is a member of.
    async fn on_index_request(
        &mut self,
        peer: PeerId,
        channel: ResponseChannel<CatchupResponse>,
        poke: bool,
    ) {
        if self.peers.get(&peer).is_none_or(|s| s.blacklisted) {
            // Unreachable through the consent gate; refused defensively.
            tracing::info!(%peer, refusal = ?Refusal::NotMember, "chat index request refused");
            self.refuse(channel, Refusal::NotMember);
            return;
        }
        match self.hold(channel, true) {
            Ok(responder) => self.emit(NetEvent::IndexRequest { peer, responder, poke }).await,
            Err(channel) => {
                tracing::info!(%peer, refusal = ?Refusal::Busy, "chat index request refused");
                self.refuse(channel, Refusal::Busy);
            }
        }
    }

    async fn on_media_event(
        &mut self,
        event: request_response::Event<MediaRequest, MediaResponse>,
    ) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    self.seen(&peer);
                    self.on_media_request(peer, request, channel).await;
                }
                request_response::Message::Response { request_id, response } => {
                    self.seen(&peer);
                    if let Some(reply) = self.outstanding_media.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure { peer, request_id, error, .. } => {
                tracing::debug!(%peer, %error, "media request failed");
                if let Some(reply) = self.outstanding_media.remove(&request_id) {
                    let _ = reply.send(Err(NetError::Media(error.to_string())));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound media request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// A media request: only from a member peer of the chat (former members are refused like
    /// any non-member: they may fetch the control document only, never content).
    async fn on_media_request(
        &mut self,
        peer: PeerId,
        request: MediaRequest,
        channel: ResponseChannel<MediaResponse>,
    ) {
        let MediaRequest { chat, blob } = request;
        let refusal = if !self.swarm.behaviour().gossip.is_member(&self.topic(&chat), &peer) {
            MediaRefusal::NotMember
        } else if self.pending_media.len() >= self.config.max_pending_media_responses {
            MediaRefusal::Busy
        } else {
            let id = self.next_response_id;
            self.next_response_id += 1;
            self.pending_media.insert(id, channel);
            let responder = MediaResponder {
                id,
                max_bytes: self.config.media_max_bytes,
                tx: Some(self.weak_tx.clone()),
            };
            self.emit(NetEvent::MediaRequest { peer, chat, blob, responder }).await;
            return;
        };
        tracing::info!(%peer, %chat, ?refusal, "media request refused");
        let _ = self
            .swarm
            .behaviour_mut()
            .media
            .send_response(channel, MediaResponse::Refused(refusal));
    }
}
