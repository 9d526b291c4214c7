//! The error type of the network handle.

use libp2p::PeerId;

use crate::catchup::{CodecError, Refusal};
use crate::media::{MediaCodecError, MediaRefusal};

/// Why a network operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// The configuration is invalid.
    #[error("invalid network configuration: {0}")]
    Config(String),
    /// The identity seed or a public key is not a valid ed25519 key.
    #[error("invalid ed25519 key")]
    BadKey,
    /// Listening on an address failed.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The network actor has stopped.
    #[error("the network actor has stopped")]
    Stopped,
    /// A bound was reached (allow-list size, channels, outstanding requests…).
    #[error("limit reached: {0}")]
    Limit(&'static str),
    /// The peer is not on the allow-list.
    #[error("peer {0} is not on the allow-list")]
    UnknownPeer(PeerId),
    /// The peer is blacklisted.
    #[error("peer {0} is blacklisted")]
    Blacklisted(PeerId),
    /// The peer is not connected.
    #[error("peer {0} is not connected")]
    NotConnected(PeerId),
    /// This node is not subscribed to the chat's topic.
    #[error("not subscribed to this chat's topic")]
    NotSubscribed,
    /// Gossipsub refused to publish.
    #[error("publish failed: {0}")]
    Publish(String),
    /// A catch-up message exceeds the limits.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A catch-up request failed (timeout, stream error, unsupported protocol, refused frame).
    #[error("catch-up request failed: {0}")]
    Catchup(String),
    /// The peer refused a chat index request (see [`crate::NetworkHandle::index`]).
    #[error("catch-up request refused by the peer: {0:?}")]
    Refused(Refusal),
    /// A well-formed catch-up response of the wrong kind for the request: a page answering a
    /// chat index request or an index answering a document request (from the peer, or handed
    /// to a [`crate::CatchupResponder`] by this node).
    #[error("catch-up protocol violation: {0}")]
    Protocol(&'static str),
    /// A media message exceeds the limit (e.g. a blob above `media_max_bytes` handed to a
    /// [`crate::MediaResponder`]).
    #[error(transparent)]
    MediaCodec(#[from] MediaCodecError),
    /// A media request failed (timeout, stream error, unsupported protocol, refused frame).
    #[error("media request failed: {0}")]
    Media(String),
    /// The peer refused a media request (see [`crate::NetworkHandle::fetch_media`]).
    #[error("media request refused by the peer: {0:?}")]
    MediaRefused(MediaRefusal),
    /// The bytes a peer sent for a blob do not hash (SHA-256) to the blob id asked for.
    #[error("media blob hash mismatch")]
    MediaHashMismatch,
}
