//! Configuration of the federation network: every size, count, rate and interval, with defaults.
//!
//! [`NetConfig`] is a plain struct; start from [`NetConfig::default`] and change fields. The
//! catch-up wire limits ([`CatchupLimits`]) and [`NetConfig::media_max_bytes`] are part of the
//! protocol: every honest node must use the same values (see `spec/federation.md`).

use std::time::Duration;

use libp2p::Multiaddr;

/// Everything [`crate::Network::start`] needs besides the identity.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Addresses to listen on: TCP (`/ip4/0.0.0.0/tcp/7700`) and QUIC
    /// (`/ip4/0.0.0.0/udp/7700/quic-v1`); port 0 picks a free port.
    pub listen_addrs: Vec<Multiaddr>,
    /// Connection limits enforced at connection establishment.
    pub limits: ConnectionLimits,
    /// Gossipsub parameters.
    pub gossip: GossipConfig,
    /// Catch-up protocol limits (wire limits: identical on every node).
    pub catchup: CatchupLimits,
    /// Catch-up request timeout.
    pub catchup_timeout: Duration,
    /// Concurrent catch-up streams per connection.
    pub catchup_max_concurrent_streams: usize,
    /// First retry delay after a failed dial.
    pub dial_backoff_min: Duration,
    /// Largest retry delay (the delay doubles after each failure up to this).
    pub dial_backoff_max: Duration,
    /// How often [`crate::NetEvent::AntiEntropyTick`] is emitted (the node then runs catch-up
    /// with its connected peers).
    pub anti_entropy_interval: Duration,
    /// Capacity of the command channel (handle → actor).
    pub command_queue: usize,
    /// Capacity of the event channel (actor → node). When it is full the actor waits: the swarm
    /// is not polled until the node drains events (backpressure instead of an unbounded queue).
    pub event_queue: usize,
    /// Connections with no active stream are closed after this long (unless a protocol keeps
    /// them alive; gossipsub and ping do for peered nodes).
    pub idle_connection_timeout: Duration,
    /// Rejected gossip messages from one peer after which it is blacklisted: disconnected and
    /// refused until [`crate::NetworkHandle::unblock_peer`].
    pub blacklist_after_rejects: u32,
    /// Most peers in the allow-list, and most peers per channel in each of a channel's member
    /// and former-member sets.
    pub max_allowed_peers: usize,
    /// Most channel topics this node subscribes to.
    pub max_channels: usize,
    /// Most pending (not yet answered) inbound catch-up requests held for the node.
    pub max_pending_catchup_responses: usize,
    /// Most outstanding outbound catch-up requests.
    pub max_outstanding_catchup_requests: usize,
    /// Largest media blob sent or accepted over `/confab/media/1` (wire limit: identical on
    /// every node; a found response body is this plus 6 bytes).
    pub media_max_bytes: usize,
    /// Media request timeout (the whole blob must arrive within it).
    pub media_timeout: Duration,
    /// Concurrent media streams per connection.
    pub media_max_concurrent_streams: usize,
    /// Most pending (not yet answered) inbound media requests held for the node (more are
    /// answered busy).
    pub max_pending_media_responses: usize,
    /// Most outstanding outbound media requests (each may bring `media_max_bytes` into memory).
    pub max_outstanding_media_requests: usize,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            listen_addrs: Vec::new(),
            limits: ConnectionLimits::default(),
            gossip: GossipConfig::default(),
            catchup: CatchupLimits::default(),
            catchup_timeout: Duration::from_secs(30),
            catchup_max_concurrent_streams: 16,
            dial_backoff_min: Duration::from_millis(500),
            dial_backoff_max: Duration::from_secs(60),
            anti_entropy_interval: Duration::from_secs(30),
            command_queue: 1024,
            event_queue: 1024,
            idle_connection_timeout: Duration::from_secs(60),
            blacklist_after_rejects: 10,
            max_allowed_peers: 1024,
            max_channels: 65_536,
            max_pending_catchup_responses: 256,
            max_outstanding_catchup_requests: 256,
            media_max_bytes: crate::media::DEFAULT_MAX_BYTES,
            media_timeout: Duration::from_secs(60),
            media_max_concurrent_streams: 4,
            max_pending_media_responses: 64,
            max_outstanding_media_requests: 16,
        }
    }
}

/// Connection limits (checked by the consent gate before a connection is accepted).
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Most established connections in total.
    pub max_established: usize,
    /// Most established connections per peer (2 allows a simultaneous dial from both sides).
    pub max_established_per_peer: usize,
    /// Most inbound connections still in their handshake (before the peer is known).
    pub max_pending_inbound: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self { max_established: 1024, max_established_per_peer: 2, max_pending_inbound: 64 }
    }
}

/// Gossipsub parameters.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    /// Largest gossip message (a whole `SignedChange` plus gossipsub framing must fit).
    pub max_transmit_size: usize,
    /// Gossipsub heartbeat.
    pub heartbeat_interval: Duration,
    /// Target mesh degree (`D`); `mesh_n_low`/`mesh_n_high` follow gossipsub's usual ratios.
    pub mesh_n: usize,
    /// Lower mesh bound (`D_lo`).
    pub mesh_n_low: usize,
    /// Upper mesh bound (`D_hi`).
    pub mesh_n_high: usize,
    /// Outbound mesh quota (`D_out`); must be below `mesh_n_low` and at most `mesh_n / 2`.
    pub mesh_outbound_min: usize,
    /// How long message ids are remembered to drop duplicates.
    pub duplicate_cache_time: Duration,
    /// Most topics a peer may be subscribed to at once (and per subscription RPC).
    pub max_subscriptions_per_peer: usize,
    /// Weight of one invalid message in the topic score (P4, multiplied by the squared count).
    pub invalid_message_weight: f64,
    /// Decay of the invalid-message counter per decay interval (1 s).
    pub invalid_message_decay: f64,
    /// Peer-score thresholds (gossip, publish, graylist); all ≤ 0, in decreasing order.
    pub gossip_threshold: f64,
    /// Below this score our own messages are not published to the peer.
    pub publish_threshold: f64,
    /// Below this score every RPC of the peer is ignored.
    pub graylist_threshold: f64,
}

impl Default for GossipConfig {
    fn default() -> Self {
        Self {
            // 1 MiB change + 133-byte SignedChange header + protobuf framing and signature.
            max_transmit_size: 1024 * 1024 + 16 * 1024,
            heartbeat_interval: Duration::from_secs(1),
            mesh_n: 6,
            mesh_n_low: 4,
            mesh_n_high: 12,
            mesh_outbound_min: 2,
            duplicate_cache_time: Duration::from_secs(120),
            max_subscriptions_per_peer: 4096,
            invalid_message_weight: -10.0,
            invalid_message_decay: 0.99,
            gossip_threshold: -10.0,
            publish_threshold: -50.0,
            graylist_threshold: -80.0,
        }
    }
}

/// Limits of the catch-up protocol `/confab/catchup/1` (wire limits, see `spec/federation.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatchupLimits {
    /// Most heads in a request.
    pub max_heads: usize,
    /// Most bytes of an opaque paging cursor.
    pub max_cursor_bytes: usize,
    /// Most changes in one response page.
    pub max_changes_per_page: usize,
    /// Most bytes of one change in a page.
    pub max_change_bytes: usize,
    /// Most bytes of one whole response frame.
    pub max_response_bytes: usize,
    /// Most chat ids in one chat index response (16 bytes each).
    pub max_index_chats: usize,
}

impl Default for CatchupLimits {
    fn default() -> Self {
        Self {
            max_heads: 256,
            max_cursor_bytes: 64,
            max_changes_per_page: 1024,
            // 1 MiB change chunk + the 133-byte SignedChange header.
            max_change_bytes: 1024 * 1024 + 133,
            max_response_bytes: 8 * 1024 * 1024,
            // 65,536 × 16-byte chat ids = 1 MiB, well within `max_response_bytes`.
            max_index_chats: 65_536,
        }
    }
}

impl CatchupLimits {
    /// Most bytes of one request frame body under these limits (a document request with the
    /// most heads and the longest cursor; a chat index request is one byte).
    pub fn max_request_bytes(&self) -> usize {
        crate::catchup::request_overhead() + self.max_heads * 32 + self.max_cursor_bytes
    }
}
