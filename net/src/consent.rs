//! Peering by explicit consent: a [`NetworkBehaviour`] that refuses every connection to or from
//! a peer that is not on the allow-list, or that is blacklisted, and enforces the connection
//! limits.
//!
//! Refusal happens at connection establishment: for inbound connections right after the noise
//! handshake (the first moment the remote's [`PeerId`] is authenticated), for outbound dials
//! before anything is sent (`handle_pending_outbound_connection`) and again once established.
//! This behaviour must be the first field of the composed behaviour so it is asked first.

use std::collections::{HashMap, HashSet, VecDeque};
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::swarm::{
    dummy, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

use crate::config::ConnectionLimits;

/// Most refusal events queued for the actor (older ones are dropped, only logs lose them).
const MAX_QUEUED_EVENTS: usize = 256;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The peer is not on the allow-list.
    #[error("peer is not on the allow-list")]
    NotAllowListed,
    /// The peer is blacklisted.
    #[error("peer is blacklisted")]
    Blacklisted,
    /// A connection limit is reached.
    #[error("connection limit reached: {0}")]
    Limit(&'static str),
}

/// A refused connection, reported to the actor.
#[derive(Debug, Clone)]
pub struct RefusedConnection {
    /// The remote peer, when known (inbound refusals before the handshake have none).
    pub peer: Option<PeerId>,
    /// Whether the remote dialed us.
    pub inbound: bool,
    /// Why.
    pub reason: Refusal,
}

/// The consent gate.
pub struct Consent {
    allowed: HashSet<PeerId>,
    blocked: HashSet<PeerId>,
    limits: ConnectionLimits,
    established: HashMap<PeerId, usize>,
    established_total: usize,
    pending_inbound: HashSet<ConnectionId>,
    events: VecDeque<RefusedConnection>,
}

impl Consent {
    /// A gate with an empty allow-list.
    pub fn new(limits: ConnectionLimits) -> Self {
        Self {
            allowed: HashSet::new(),
            blocked: HashSet::new(),
            limits,
            established: HashMap::new(),
            established_total: 0,
            pending_inbound: HashSet::new(),
            events: VecDeque::new(),
        }
    }

    /// Adds a peer to the allow-list.
    pub fn allow(&mut self, peer: PeerId) {
        self.allowed.insert(peer);
    }

    /// Removes a peer from the allow-list (existing connections are closed by the actor).
    pub fn disallow(&mut self, peer: &PeerId) {
        self.allowed.remove(peer);
    }

    /// Blacklists a peer: refused even while allow-listed.
    pub fn block(&mut self, peer: PeerId) {
        self.blocked.insert(peer);
    }

    /// Lifts a blacklisting.
    pub fn unblock(&mut self, peer: &PeerId) {
        self.blocked.remove(peer);
    }

    /// Whether connections with `peer` are permitted.
    pub fn permits(&self, peer: &PeerId) -> Result<(), Refusal> {
        if self.blocked.contains(peer) {
            Err(Refusal::Blacklisted)
        } else if !self.allowed.contains(peer) {
            Err(Refusal::NotAllowListed)
        } else {
            Ok(())
        }
    }

    fn check_established(&mut self, peer: PeerId, inbound: bool) -> Result<(), ConnectionDenied> {
        let verdict = self.permits(&peer).and_then(|()| {
            if self.established_total >= self.limits.max_established {
                Err(Refusal::Limit("established connections"))
            } else if self.established.get(&peer).copied().unwrap_or(0)
                >= self.limits.max_established_per_peer
            {
                Err(Refusal::Limit("connections per peer"))
            } else {
                Ok(())
            }
        });
        verdict.map_err(|reason| {
            tracing::info!(%peer, inbound, %reason, "connection refused");
            self.push_event(RefusedConnection { peer: Some(peer), inbound, reason });
            ConnectionDenied::new(reason)
        })
    }

    fn push_event(&mut self, event: RefusedConnection) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }
}

impl NetworkBehaviour for Consent {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = RefusedConnection;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        if self.pending_inbound.len() >= self.limits.max_pending_inbound {
            let reason = Refusal::Limit("pending inbound connections");
            tracing::info!(%remote_addr, %reason, "connection refused");
            self.push_event(RefusedConnection { peer: None, inbound: true, reason });
            return Err(ConnectionDenied::new(reason));
        }
        self.pending_inbound.insert(connection_id);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        _local_addr: &Multiaddr,
        _remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.pending_inbound.remove(&connection_id);
        self.check_established(peer, true)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        _addresses: &[Multiaddr],
        _effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        match maybe_peer {
            // A dial without a peer id cannot be checked before the handshake; it is checked
            // once established.
            None => Ok(Vec::new()),
            Some(peer) => match self.permits(&peer) {
                Ok(()) => Ok(Vec::new()),
                Err(reason) => {
                    tracing::debug!(%peer, %reason, "dial refused");
                    Err(ConnectionDenied::new(reason))
                }
            },
        }
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        peer: PeerId,
        _addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check_established(peer, false)?;
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                self.pending_inbound.remove(&e.connection_id);
                *self.established.entry(e.peer_id).or_insert(0) += 1;
                self.established_total += 1;
            }
            FromSwarm::ConnectionClosed(e) => {
                if let Some(count) = self.established.get_mut(&e.peer_id) {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        self.established.remove(&e.peer_id);
                    }
                }
                self.established_total = self.established_total.saturating_sub(1);
            }
            FromSwarm::ListenFailure(e) => {
                self.pending_inbound.remove(&e.connection_id);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer_id: PeerId,
        _connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        libp2p::core::util::unreachable(event)
    }

    fn poll(
        &mut self,
        _cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        match self.events.pop_front() {
            Some(event) => Poll::Ready(ToSwarm::GenerateEvent(event)),
            None => Poll::Pending,
        }
    }
}
