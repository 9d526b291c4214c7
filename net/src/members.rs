//! Confidentiality: gossipsub restricted, per peer, to the channels the peer is a member of.
//!
//! Gossipsub hands a topic to any connected peer that subscribes to it, and its subscription
//! filter never learns *who* subscribes. [`MemberGossip`] therefore wraps the gossipsub
//! behaviour and inspects every RPC a peer sends before gossipsub sees it:
//!
//! - **Subscriptions** to a channel topic from a peer that is not in the channel's member set
//!   are withheld from gossipsub. Gossipsub thus never counts the peer as subscribed: it never
//!   grafts it into the topic's mesh (a GRAFT for an unsubscribed topic is dropped by gossipsub),
//!   never flood-publishes, forwards or fans out a message of that topic to it, and never sends
//!   it IHAVE gossip for the topic. A withheld subscription is replayed if the peer later becomes
//!   a member (bounded per peer).
//! - **Messages** on a channel topic relayed by a peer that is not a member are dropped before
//!   gossipsub sees them (they are neither delivered to the node nor forwarded).
//! - **Revocation**: when a peer leaves a channel's member set while gossipsub counts it as
//!   subscribed, [`MemberGossip::set_members`] returns it and the actor closes its connections;
//!   its subscriptions are filtered again when it reconnects.
//!
//! Channels whose member set was never set admit nobody. What this does not cover: an IWANT for
//! a message id is answered from gossipsub's short message cache without a topic check (the
//! RPC's ids are not visible outside gossipsub). A message id is the SHA-256 of the payload and
//! is only ever advertised (IHAVE) to admitted members, so a non-member can only ask for a
//! message whose hash a member told it — a member that could as well have sent the message.

use std::collections::{HashMap, HashSet};
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::gossipsub::TopicHash;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

use crate::gossip::Gossipsub;

type InnerEvent = THandlerOutEvent<Gossipsub>;

/// Gossipsub with per-peer channel membership enforced on inbound RPCs.
pub struct MemberGossip {
    /// The wrapped gossipsub behaviour (publish, subscribe, report validation through it).
    pub inner: Gossipsub,
    members: HashMap<TopicHash, HashSet<PeerId>>,
    /// Subscription RPCs withheld from gossipsub, by (peer, topic): replayed on admission.
    held: HashMap<(PeerId, TopicHash), (ConnectionId, InnerEvent)>,
    held_per_peer: HashMap<PeerId, usize>,
    max_held_per_peer: usize,
    dropped_messages: u64,
}

impl MemberGossip {
    /// Wraps `inner`; each peer may have at most `max_held_per_peer` withheld subscriptions.
    pub fn new(inner: Gossipsub, max_held_per_peer: usize) -> Self {
        Self {
            inner,
            members: HashMap::new(),
            held: HashMap::new(),
            held_per_peer: HashMap::new(),
            max_held_per_peer,
            dropped_messages: 0,
        }
    }

    /// Whether `peer` is admitted to `topic`.
    pub fn is_member(&self, topic: &TopicHash, peer: &PeerId) -> bool {
        self.members.get(topic).is_some_and(|m| m.contains(peer))
    }

    /// Messages dropped so far because their relaying peer was not a member.
    pub fn dropped_messages(&self) -> u64 {
        self.dropped_messages
    }

    /// Sets the member peers of `topic`. Returns the peers that lost membership while gossipsub
    /// counts them as subscribed: the caller must close their connections.
    pub fn set_members(&mut self, topic: TopicHash, members: HashSet<PeerId>) -> Vec<PeerId> {
        let revoked: Vec<PeerId> = self
            .inner
            .all_peers()
            .filter(|(peer, topics)| !members.contains(peer) && topics.contains(&&topic))
            .map(|(peer, _)| *peer)
            .collect();
        // Replay withheld subscriptions of newly admitted peers.
        for peer in &members {
            if let Some((connection, event)) = self.held.remove(&(*peer, topic.clone())) {
                self.release_slot(peer);
                tracing::debug!(%peer, topic = %topic, "replaying withheld subscription");
                self.inner.on_connection_handler_event(*peer, connection, event);
            }
        }
        if members.is_empty() {
            self.members.remove(&topic);
        } else {
            self.members.insert(topic, members);
        }
        revoked
    }

    /// Forgets a topic's member set (nobody is admitted).
    pub fn clear_members(&mut self, topic: &TopicHash) -> Vec<PeerId> {
        self.set_members(topic.clone(), HashSet::new())
    }

    fn release_slot(&mut self, peer: &PeerId) {
        if let Some(n) = self.held_per_peer.get_mut(peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.held_per_peer.remove(peer);
            }
        }
    }

    fn filter(&mut self, peer: PeerId, connection: ConnectionId, event: InnerEvent) -> InnerEvent {
        let InnerEvent::Message { mut rpc, invalid_messages } = event else {
            return event;
        };
        let subscriptions = std::mem::take(&mut rpc.subscriptions);
        let messages = std::mem::take(&mut rpc.messages);
        // With subscriptions, messages and control messages taken out, a copy of `rpc` is an
        // empty RPC: the template for withheld subscriptions.
        let control_msgs = std::mem::take(&mut rpc.control_msgs);
        let template = rpc.clone();
        rpc.control_msgs = control_msgs;
        for subscription in subscriptions {
            let topic = subscription.topic_hash.clone();
            if self.is_member(&topic, &peer) {
                rpc.subscriptions.push(subscription);
                continue;
            }
            let key = (peer, topic.clone());
            let replacing = self.held.contains_key(&key);
            let count = self.held_per_peer.get(&peer).copied().unwrap_or(0);
            if !replacing && count >= self.max_held_per_peer {
                tracing::debug!(%peer, %topic, "subscription of non-member dropped (hold limit)");
                continue;
            }
            tracing::debug!(%peer, %topic, "subscription of non-member withheld");
            let mut held = template.clone();
            held.subscriptions.push(subscription);
            self.held.insert(
                key,
                (connection, InnerEvent::Message { rpc: held, invalid_messages: Vec::new() }),
            );
            if !replacing {
                *self.held_per_peer.entry(peer).or_insert(0) += 1;
            }
        }
        for message in messages {
            if self.is_member(&message.topic, &peer) {
                rpc.messages.push(message);
            } else {
                self.dropped_messages += 1;
                tracing::debug!(%peer, topic = %message.topic, "message from non-member dropped");
            }
        }
        InnerEvent::Message { rpc, invalid_messages }
    }
}

impl NetworkBehaviour for MemberGossip {
    type ConnectionHandler = <Gossipsub as NetworkBehaviour>::ConnectionHandler;
    type ToSwarm = <Gossipsub as NetworkBehaviour>::ToSwarm;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner.handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner.handle_established_inbound_connection(
            connection_id,
            peer,
            local_addr,
            remote_addr,
        )
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner.handle_pending_outbound_connection(
            connection_id,
            maybe_peer,
            addresses,
            effective_role,
        )
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner.handle_established_outbound_connection(
            connection_id,
            peer,
            addr,
            role_override,
            port_use,
        )
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        if let FromSwarm::ConnectionClosed(closed) = &event {
            if closed.remaining_established == 0 {
                let peer = closed.peer_id;
                self.held.retain(|(p, _), _| *p != peer);
                self.held_per_peer.remove(&peer);
            }
        }
        self.inner.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        let event = self.filter(peer_id, connection_id, event);
        self.inner.on_connection_handler_event(peer_id, connection_id, event);
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.inner.poll(cx)
    }
}
