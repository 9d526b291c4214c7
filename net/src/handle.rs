//! The node's side of the network: [`Network::start`], the cloneable [`NetworkHandle`] (commands
//! to the actor over a bounded channel), the [`NetEvent`]s it emits and the
//! [`CatchupResponder`] that answers an inbound catch-up request (a document request or a chat
//! index request) and the [`MediaResponder`] that answers an inbound media request.

use std::fmt;
use std::time::{Duration, SystemTime};

use confab_protocol::ChatId;
use libp2p::{Multiaddr, PeerId};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::catchup::{encode_response, CatchupRequest, CatchupResponse, Request};
use crate::config::{CatchupLimits, NetConfig};
use crate::media::{check_response, MediaRequest, MediaResponse};
use crate::NetError;

/// A gossip message id: the SHA-256 of the payload.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageHash(pub [u8; 32]);

impl fmt::Debug for MessageHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageHash({self})")
    }
}

impl fmt::Display for MessageHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in &self.0[..8] {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// The node's verdict on a received gossip message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    /// Valid: gossipsub forwards it.
    Accept,
    /// Invalid: dropped, the relaying peer's score is penalised and its reject count grows.
    Reject,
    /// Not invalid but not to be forwarded (duplicate, pending, unknown document): dropped
    /// without penalty.
    Ignore,
}

/// A gossip message received on a channel topic, waiting for the node's [`Validation`].
#[derive(Debug, Clone)]
pub struct GossipMessage {
    /// The chat whose topic carried it.
    pub chat: ChatId,
    /// Its id (SHA-256 of `data`): report the verdict with this.
    pub id: MessageHash,
    /// The peer that relayed it to us (a member of the chat): report the verdict with this.
    pub propagation_source: PeerId,
    /// The node that published it (gossipsub-signed).
    pub source: Option<PeerId>,
    /// The payload (an encoded `SignedChange`).
    pub data: Vec<u8>,
}

/// What the network reports to the node.
#[derive(Debug)]
pub enum NetEvent {
    /// Listening on a new address.
    Listening {
        /// The address.
        addr: Multiaddr,
    },
    /// First connection with an allow-listed peer established.
    PeerConnected {
        /// The peer.
        peer: PeerId,
    },
    /// Last connection with a peer closed.
    PeerDisconnected {
        /// The peer.
        peer: PeerId,
    },
    /// A connection was refused by the consent gate.
    ConnectionRefused {
        /// The remote, when known.
        peer: Option<PeerId>,
        /// Whether the remote dialed us.
        inbound: bool,
        /// Why.
        reason: crate::consent::Refusal,
    },
    /// A peer passed the reject threshold and was blacklisted (disconnected and refused).
    PeerBlacklisted {
        /// The peer.
        peer: PeerId,
        /// Its rejected messages.
        rejected: u32,
    },
    /// A gossip message to validate; answer with [`NetworkHandle::report_validation`].
    Gossip(GossipMessage),
    /// A document catch-up request from a member peer of the document's chat, or from a former
    /// member ([`NetworkHandle::set_channel_former_members`]) for the chat's control document.
    /// Answer with a [`CatchupResponse::Page`] or [`CatchupResponse::Refused`].
    CatchupRequest {
        /// The requesting peer (the node may still refuse, e.g. by epoch).
        peer: PeerId,
        /// The request.
        request: CatchupRequest,
        /// Answer through this.
        responder: CatchupResponder,
    },
    /// A chat index request from a connected, allow-listed peer. It is *not* checked against
    /// channel membership (the requester may not know any chat id yet): the node must answer
    /// with [`CatchupResponse::Index`] listing only the chats whose member organisations
    /// include the requester's (build it with [`CatchupResponse::index`]), or
    /// [`CatchupResponse::Refused`].
    IndexRequest {
        /// The requesting peer (its organisation: [`crate::org_public_key_of`]).
        peer: PeerId,
        /// Answer through this.
        responder: CatchupResponder,
        /// A poke ([`NetworkHandle::poke`]): the requester asks this node to sync with it now.
        poke: bool,
    },
    /// A media request (`/confab/media/1`) from a member peer of the chat (former members are
    /// refused before this). Answer with [`MediaResponse::Found`] carrying the blob whose
    /// SHA-256 is `blob` (the requester checks it), or [`MediaResponse::Refused`] (e.g.
    /// [`crate::MediaRefusal::NotFound`]).
    MediaRequest {
        /// The requesting peer (the node may still refuse).
        peer: PeerId,
        /// The chat the blob is attached in.
        chat: ChatId,
        /// The blob id: the SHA-256 of its bytes.
        blob: [u8; 32],
        /// Answer through this.
        responder: MediaResponder,
    },
    /// Time to run anti-entropy catch-up with the connected peers.
    AntiEntropyTick {
        /// Connected, allow-listed peers.
        peers: Vec<PeerId>,
    },
}

/// A peer of the allow-list and its state.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerInfo {
    /// The peer.
    pub peer: PeerId,
    /// The addresses we dial.
    pub addrs: Vec<Multiaddr>,
    /// Whether at least one connection is established.
    pub connected: bool,
    /// Last time we heard from it (connection, ping, message).
    pub last_seen: Option<SystemTime>,
    /// Last ping round-trip time.
    pub rtt: Option<Duration>,
    /// Replication lag as last reported by the node ([`NetworkHandle::set_peer_lag`]).
    pub lag: Option<u64>,
    /// Last dial or connection error.
    pub last_error: Option<String>,
    /// Gossip messages from it the node rejected.
    pub rejected_messages: u32,
    /// Whether it is blacklisted.
    pub blacklisted: bool,
    /// Gossipsub's current score of the peer.
    pub score: Option<f64>,
}

pub(crate) type Reply<T> = oneshot::Sender<Result<T, NetError>>;

/// Commands from handles to the actor.
pub(crate) enum Command {
    AddPeer { peer: PeerId, addrs: Vec<Multiaddr>, reply: Reply<()> },
    RemovePeer { peer: PeerId, reply: Reply<()> },
    UnblockPeer { peer: PeerId, reply: Reply<()> },
    Subscribe { chat: ChatId, reply: Reply<()> },
    Unsubscribe { chat: ChatId, reply: Reply<()> },
    SetChannelMembers { chat: ChatId, members: Vec<PeerId>, reply: Reply<()> },
    SetChannelFormerMembers { chat: ChatId, peers: Vec<PeerId>, reply: Reply<()> },
    Publish { chat: ChatId, data: Vec<u8>, reply: Reply<MessageHash> },
    ReportValidation { id: MessageHash, propagation_source: PeerId, validation: Validation },
    ReportInvalid { peer: PeerId, count: u32 },
    SendCatchup { peer: PeerId, request: Request, reply: Reply<CatchupResponse> },
    RespondCatchup { id: u64, response: CatchupResponse },
    CancelCatchup { id: u64 },
    SendMedia { peer: PeerId, request: MediaRequest, reply: Reply<MediaResponse> },
    RespondMedia { id: u64, response: MediaResponse },
    CancelMedia { id: u64 },
    SetPeerLag { peer: PeerId, lag: Option<u64> },
    Peers { reply: Reply<Vec<PeerInfo>> },
    TopicPeers { chat: ChatId, reply: Reply<Vec<PeerId>> },
    ListenAddrs { reply: Reply<Vec<Multiaddr>> },
    Shutdown,
}

/// The node's handle on the running network. Cheap to clone; the actor stops when every handle
/// is dropped or [`NetworkHandle::shutdown`] is called.
#[derive(Clone)]
pub struct NetworkHandle {
    tx: mpsc::Sender<Command>,
    local_peer_id: PeerId,
}

impl fmt::Debug for NetworkHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NetworkHandle({})", self.local_peer_id)
    }
}

/// Starts networks.
pub struct Network;

impl Network {
    /// Starts the network actor on the current tokio runtime.
    ///
    /// `identity_seed` is the organisation's ed25519 key seed: the organisation key *is* the
    /// libp2p identity. Returns the handle, the event receiver (drain it continuously: when it
    /// is full the actor stops polling the network) and the actor's join handle.
    pub fn start(
        identity_seed: [u8; 32],
        config: NetConfig,
    ) -> Result<(NetworkHandle, mpsc::Receiver<NetEvent>, JoinHandle<()>), NetError> {
        let keypair = crate::keypair_of(identity_seed)?;
        let local_peer_id = keypair.public().to_peer_id();
        let (tx, rx) = mpsc::channel(config.command_queue.max(1));
        let (event_tx, event_rx) = mpsc::channel(config.event_queue.max(1));
        let actor = crate::actor::Actor::new(keypair, config, rx, event_tx, tx.downgrade())?;
        let join = tokio::spawn(actor.run());
        Ok((NetworkHandle { tx, local_peer_id }, event_rx, join))
    }
}

impl NetworkHandle {
    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, NetError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)?
    }

    /// Adds a peer to the allow-list (or replaces its addresses) and starts dialing it.
    pub async fn add_peer(&self, peer: PeerId, addrs: Vec<Multiaddr>) -> Result<(), NetError> {
        self.call(|reply| Command::AddPeer { peer, addrs, reply }).await
    }

    /// Removes a peer from the allow-list and closes its connections.
    pub async fn remove_peer(&self, peer: PeerId) -> Result<(), NetError> {
        self.call(|reply| Command::RemovePeer { peer, reply }).await
    }

    /// Lifts a blacklisting and resets the peer's reject count.
    pub async fn unblock_peer(&self, peer: PeerId) -> Result<(), NetError> {
        self.call(|reply| Command::UnblockPeer { peer, reply }).await
    }

    /// Subscribes to a chat's topic (admitting only the peers set with
    /// [`Self::set_channel_members`]).
    pub async fn subscribe(&self, chat: ChatId) -> Result<(), NetError> {
        self.call(|reply| Command::Subscribe { chat, reply }).await
    }

    /// Unsubscribes from a chat's topic.
    pub async fn unsubscribe(&self, chat: ChatId) -> Result<(), NetError> {
        self.call(|reply| Command::Unsubscribe { chat, reply }).await
    }

    /// Sets the peers (member organisations' nodes) admitted to a chat's topic and catch-up.
    /// Peers removed while subscribed are disconnected (they reconnect without the topic). At
    /// most `max_allowed_peers` peers ([`NetError::Limit`]). See also
    /// [`Self::set_channel_former_members`].
    pub async fn set_channel_members(
        &self,
        chat: ChatId,
        members: Vec<PeerId>,
    ) -> Result<(), NetError> {
        self.call(|reply| Command::SetChannelMembers { chat, members, reply }).await
    }

    /// Sets the former members of a chat: peers (organisations removed from the chat) that may
    /// still fetch the chat's **control document** by catch-up, so that a removed organisation
    /// can learn the signed control change that removed it. They are not admitted to the chat's
    /// topic (no subscription, no messages, no IHAVE) and a request of theirs for any history
    /// bucket is refused [`crate::CatchupRefusal::NotMember`]. Their control-document requests
    /// reach the node as [`NetEvent::CatchupRequest`]: the node decides what to answer (e.g. only
    /// the changes up to the one that removed them). A peer that is also a member
    /// (see [`Self::set_channel_members`]) is simply a member. Replaces the chat's previous
    /// former-member set; an empty list clears it. At most `max_allowed_peers` peers
    /// ([`NetError::Limit`]).
    ///
    /// When removing an organisation, set it as a former member *before* setting the reduced
    /// member set, so that its control-document requests are never refused in between.
    pub async fn set_channel_former_members(
        &self,
        chat: ChatId,
        peers: Vec<PeerId>,
    ) -> Result<(), NetError> {
        self.call(|reply| Command::SetChannelFormerMembers { chat, peers, reply }).await
    }

    /// Publishes a payload (an encoded `SignedChange`) on a chat's topic. Fails with
    /// [`NetError::NotSubscribed`] unless subscribed, and with [`NetError::Publish`] when
    /// gossipsub refuses (e.g. no admitted member peer is subscribed yet, or a duplicate):
    /// not fatal for the node, whose peers also heal by catch-up.
    pub async fn publish(&self, chat: ChatId, data: Vec<u8>) -> Result<MessageHash, NetError> {
        self.call(|reply| Command::Publish { chat, data, reply }).await
    }

    /// Reports the node's verdict on a received gossip message.
    pub async fn report_validation(
        &self,
        id: MessageHash,
        propagation_source: PeerId,
        validation: Validation,
    ) -> Result<(), NetError> {
        self.tx
            .send(Command::ReportValidation { id, propagation_source, validation })
            .await
            .map_err(|_| NetError::Stopped)
    }

    /// Counts `count` invalid changes that `peer` sent outside gossip (in a catch-up page it
    /// served) against it, as a gossip rejection counts: the peer is blacklisted when its count
    /// reaches `blacklist_after_rejects`.
    pub async fn report_invalid(&self, peer: PeerId, count: u32) -> Result<(), NetError> {
        if count == 0 {
            return Ok(());
        }
        self.tx.send(Command::ReportInvalid { peer, count }).await.map_err(|_| NetError::Stopped)
    }

    /// Sends a document catch-up request to a connected peer and waits for its answer: a
    /// [`CatchupResponse::Page`] or [`CatchupResponse::Refused`] (an
    /// [`CatchupResponse::Index`] answer fails with [`NetError::Protocol`]).
    pub async fn catchup(
        &self,
        peer: PeerId,
        request: CatchupRequest,
    ) -> Result<CatchupResponse, NetError> {
        let response = self
            .call(|reply| Command::SendCatchup { peer, request: Request::Document(request), reply })
            .await?;
        document_answer(response)
    }

    /// Asks a connected peer for the chats it shares with this node's organisation (the chat
    /// index), e.g. to learn chats another organisation added one of our users to. The ids come
    /// back strictly increasing. A refusal fails with [`NetError::Refused`] (e.g.
    /// [`crate::CatchupRefusal::Busy`]: retry later), a page answer with
    /// [`NetError::Protocol`]; transport failures are as for [`Self::catchup`].
    pub async fn index(&self, peer: PeerId) -> Result<Vec<ChatId>, NetError> {
        let response = self
            .call(|reply| Command::SendCatchup { peer, request: Request::Index, reply })
            .await?;
        index_answer(response)
    }

    /// [`Self::index`], also asking the peer to sync with this node now (a poke: this node has
    /// news for it, such as a chat its organisation was added to or removed from).
    pub async fn poke(&self, peer: PeerId) -> Result<Vec<ChatId>, NetError> {
        let response =
            self.call(|reply| Command::SendCatchup { peer, request: Request::Poke, reply }).await?;
        index_answer(response)
    }

    /// Fetches a media blob of `chat` from a connected member peer and returns its bytes,
    /// checked to hash (SHA-256) to `blob`: other bytes fail with [`NetError::MediaHashMismatch`].
    /// A refusal fails with [`NetError::MediaRefused`] ([`crate::MediaRefusal::NotMember`] when
    /// the peer does not count this node as a member of the chat,
    /// [`crate::MediaRefusal::NotFound`], [`crate::MediaRefusal::Busy`]: retry later). A peer
    /// that is not connected fails with [`NetError::NotConnected`], too many outstanding
    /// fetches with [`NetError::Limit`], a timeout, stream error or a blob above
    /// `media_max_bytes` with [`NetError::Media`].
    pub async fn fetch_media(
        &self,
        peer: PeerId,
        chat: ChatId,
        blob: [u8; 32],
    ) -> Result<Vec<u8>, NetError> {
        let response = self
            .call(|reply| Command::SendMedia { peer, request: MediaRequest { chat, blob }, reply })
            .await?;
        let bytes = match response {
            MediaResponse::Found(bytes) => bytes,
            MediaResponse::Refused(refusal) => return Err(NetError::MediaRefused(refusal)),
        };
        // Hashing up to `media_max_bytes` takes a while: off the async worker.
        let (bytes, digest) = tokio::task::spawn_blocking(move || {
            let digest: [u8; 32] = Sha256::digest(&bytes).into();
            (bytes, digest)
        })
        .await
        .map_err(|e| NetError::Media(format!("hashing failed: {e}")))?;
        verified_blob(bytes, digest, &blob)
    }

    /// Records the replication lag of a peer (shown in [`PeerInfo::lag`]).
    pub async fn set_peer_lag(&self, peer: PeerId, lag: Option<u64>) -> Result<(), NetError> {
        self.tx.send(Command::SetPeerLag { peer, lag }).await.map_err(|_| NetError::Stopped)
    }

    /// The allow-listed peers and their state.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NetError> {
        self.call(|reply| Command::Peers { reply }).await
    }

    /// The peers gossipsub counts as subscribed to a chat's topic (admitted members only).
    pub async fn topic_peers(&self, chat: ChatId) -> Result<Vec<PeerId>, NetError> {
        self.call(|reply| Command::TopicPeers { chat, reply }).await
    }

    /// The addresses the node listens on.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NetError> {
        self.call(|reply| Command::ListenAddrs { reply }).await
    }

    /// Stops the actor.
    pub async fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown).await;
    }
}

/// The blob if its digest is the blob id asked for.
fn verified_blob(bytes: Vec<u8>, digest: [u8; 32], blob: &[u8; 32]) -> Result<Vec<u8>, NetError> {
    if digest == *blob {
        Ok(bytes)
    } else {
        Err(NetError::MediaHashMismatch)
    }
}

/// Checks the answer to a document request.
fn document_answer(response: CatchupResponse) -> Result<CatchupResponse, NetError> {
    match response {
        CatchupResponse::Index(_) => Err(NetError::Protocol(INDEX_FOR_DOCUMENT)),
        other => Ok(other),
    }
}

/// Checks the answer to a chat index request.
fn index_answer(response: CatchupResponse) -> Result<Vec<ChatId>, NetError> {
    match response {
        CatchupResponse::Index(chats) => Ok(chats),
        CatchupResponse::Refused(refusal) => Err(NetError::Refused(refusal)),
        CatchupResponse::Page(_) => Err(NetError::Protocol(PAGE_FOR_INDEX)),
    }
}

const INDEX_FOR_DOCUMENT: &str = "a chat index answers a document request";
const PAGE_FOR_INDEX: &str = "a page answers a chat index request";

/// Answers one inbound catch-up request ([`NetEvent::CatchupRequest`] or
/// [`NetEvent::IndexRequest`]). Dropping it without answering cancels the request (the
/// requester sees its stream closed).
pub struct CatchupResponder {
    pub(crate) id: u64,
    pub(crate) limits: CatchupLimits,
    /// Whether it answers a chat index request (else a document request).
    pub(crate) index: bool,
    pub(crate) tx: Option<mpsc::WeakSender<Command>>,
}

impl fmt::Debug for CatchupResponder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CatchupResponder({})", self.id)
    }
}

impl CatchupResponder {
    /// Sends the answer. Fails (and sends nothing, cancelling the request) if it exceeds the
    /// catch-up limits, is an index that is not strictly increasing, or is of the wrong kind
    /// ([`NetError::Protocol`]: a page for an index request or an index for a document
    /// request).
    pub async fn respond(mut self, response: CatchupResponse) -> Result<(), NetError> {
        match (&response, self.index) {
            (CatchupResponse::Page(_), true) => return Err(NetError::Protocol(PAGE_FOR_INDEX)),
            (CatchupResponse::Index(_), false) => {
                return Err(NetError::Protocol(INDEX_FOR_DOCUMENT))
            }
            _ => {}
        }
        encode_response(&response, &self.limits)?;
        let tx = self.tx.take().and_then(|weak| weak.upgrade()).ok_or(NetError::Stopped)?;
        tx.send(Command::RespondCatchup { id: self.id, response })
            .await
            .map_err(|_| NetError::Stopped)
    }
}

impl Drop for CatchupResponder {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take().and_then(|weak| weak.upgrade()) {
            // If the queue is full the actor still drops the channel when its stream closes.
            let _ = tx.try_send(Command::CancelCatchup { id: self.id });
        }
    }
}

/// Answers one inbound media request ([`NetEvent::MediaRequest`]). Dropping it without
/// answering cancels the request (the requester sees its stream closed).
pub struct MediaResponder {
    pub(crate) id: u64,
    pub(crate) max_bytes: usize,
    pub(crate) tx: Option<mpsc::WeakSender<Command>>,
}

impl fmt::Debug for MediaResponder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MediaResponder({})", self.id)
    }
}

impl MediaResponder {
    /// Sends the answer. Fails (and sends nothing, cancelling the request) with
    /// [`NetError::MediaCodec`] if a found blob exceeds `media_max_bytes`. The bytes are not
    /// checked against the blob id here: the node serves what it stored under that id, and the
    /// requester verifies.
    pub async fn respond(mut self, response: MediaResponse) -> Result<(), NetError> {
        check_response(&response, self.max_bytes)?;
        let tx = self.tx.take().and_then(|weak| weak.upgrade()).ok_or(NetError::Stopped)?;
        tx.send(Command::RespondMedia { id: self.id, response })
            .await
            .map_err(|_| NetError::Stopped)
    }
}

impl Drop for MediaResponder {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take().and_then(|weak| weak.upgrade()) {
            // If the queue is full the actor still drops the channel when its stream closes.
            let _ = tx.try_send(Command::CancelMedia { id: self.id });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catchup::{CatchupPage, Refusal};

    #[test]
    fn answers_of_the_wrong_kind_are_protocol_errors() {
        let chats = vec![ChatId::from_bytes([1; 16])];
        assert_eq!(index_answer(CatchupResponse::Index(chats.clone())), Ok(chats.clone()));
        assert_eq!(
            index_answer(CatchupResponse::Refused(Refusal::Busy)),
            Err(NetError::Refused(Refusal::Busy))
        );
        assert_eq!(
            index_answer(CatchupResponse::Page(CatchupPage::default())),
            Err(NetError::Protocol(PAGE_FOR_INDEX))
        );
        let page = CatchupResponse::Page(CatchupPage::default());
        assert_eq!(document_answer(page.clone()), Ok(page));
        let refused = CatchupResponse::Refused(Refusal::NotMember);
        assert_eq!(document_answer(refused.clone()), Ok(refused));
        assert_eq!(
            document_answer(CatchupResponse::Index(chats)),
            Err(NetError::Protocol(INDEX_FOR_DOCUMENT))
        );
    }

    #[test]
    fn blobs_must_hash_to_their_id() {
        let id: [u8; 32] = Sha256::digest(b"blob").into();
        assert_eq!(verified_blob(b"blob".to_vec(), id, &id), Ok(b"blob".to_vec()));
        let other: [u8; 32] = Sha256::digest(b"other").into();
        assert_eq!(verified_blob(b"other".to_vec(), other, &id), Err(NetError::MediaHashMismatch));
    }
}
