//! Confab's federation networking: the libp2p layer between organisations' nodes.
//!
//! One actor task owns the libp2p [`Swarm`](libp2p::Swarm) (TCP + noise + yamux, identify,
//! ping, gossipsub, the catch-up and media request-response protocols) and does all I/O. The
//! node talks to it through a cloneable [`NetworkHandle`] (commands over a bounded channel) and
//! receives [`NetEvent`]s on a bounded channel. Modules, one per concern:
//!
//! - [`config`]: [`NetConfig`] and every limit, with defaults;
//! - [`consent`]: peering by explicit consent (allow-list, blacklist, connection limits);
//! - [`gossip`]: channel topics, message ids, gossipsub and peer-score configuration;
//! - [`members`]: per-peer channel membership enforced on gossipsub (confidentiality);
//! - [`catchup`]: the `/confab/catchup/1` messages (document and chat index requests) and codec;
//! - [`media`]: the `/confab/media/1` messages (blob fetch by SHA-256 id) and codec;
//! - [`invite`]: signed invite tokens;
//! - [`handle`]: the handle, commands and events; `actor` (private): the event loop.
//!
//! The organisation's ed25519 key is the libp2p identity: [`peer_id_of`] maps an `OrgId`'s
//! bytes to its [`PeerId`]. The wire protocols are specified in `spec/federation.md`.

mod actor;
mod behaviour;
pub mod catchup;
pub mod config;
pub mod consent;
mod error;
mod frame;
pub mod gossip;
pub mod handle;
pub mod invite;
pub mod media;
pub mod members;

pub use catchup::{CatchupPage, CatchupRequest, CatchupResponse, Refusal as CatchupRefusal};
pub use config::{CatchupLimits, ConnectionLimits, GossipConfig, NetConfig};
pub use error::NetError;
pub use handle::{
    CatchupResponder, GossipMessage, MediaResponder, MessageHash, NetEvent, Network, NetworkHandle,
    PeerInfo, Validation,
};
pub use invite::{InviteError, InviteToken};
pub use libp2p::{Multiaddr, PeerId};
pub use media::{MediaRefusal, MediaRequest, MediaResponse};

/// The libp2p identity of the organisation whose ed25519 public key is `org_public_key` (the
/// `OrgId` bytes).
pub fn peer_id_of(org_public_key: &[u8; 32]) -> Result<PeerId, NetError> {
    let key = libp2p::identity::ed25519::PublicKey::try_from_bytes(org_public_key)
        .map_err(|_| NetError::BadKey)?;
    Ok(libp2p::identity::PublicKey::from(key).to_peer_id())
}

/// The libp2p key pair of the organisation whose ed25519 secret seed is `seed`.
pub fn keypair_of(seed: [u8; 32]) -> Result<libp2p::identity::Keypair, NetError> {
    libp2p::identity::Keypair::ed25519_from_bytes(seed).map_err(|_| NetError::BadKey)
}

/// The organisation public key (`OrgId` bytes) behind a peer id, if it is an ed25519 identity.
pub fn org_public_key_of(peer: &PeerId) -> Option<[u8; 32]> {
    // Ed25519 peer ids inline the protobuf-encoded public key in an identity multihash.
    let multihash = peer.as_ref();
    if multihash.code() != 0 {
        return None;
    }
    let key = libp2p::identity::PublicKey::try_decode_protobuf(multihash.digest()).ok()?;
    Some(key.try_into_ed25519().ok()?.to_bytes())
}
