//! A malicious organisation for federation tests: a real Confab node (store, engine and
//! federation from `confab-node`, running in the test process) whose network handle the test
//! also drives directly, to gossip changes it forges with `confab-protocol`.
//!
//! The node itself behaves honestly (it peers, learns the chats it is invited to, subscribes to
//! their topics and answers catch-up), which is what makes the other nodes admit it as a member
//! of a chat; [`EvilNode::publish`] then puts arbitrary bytes on a chat's topic.
//!
//! The test crate does not depend on `automerge`, so its types are never named here: documents
//! are built inside [`forge`] (whose types follow from `confab_protocol::validate::apply`). The
//! network is reached through `confab_node::federation::FederationHandle::net`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use confab_node::config::Config;
use confab_node::engine::{self, EngineHandle, PeerRecord};
use confab_node::federation::{self, FederationConfig, FederationHandle};
use confab_node::store::{prefix_range, KvStore, Tree};
use confab_protocol::bucket::{self, MessageRecord, UpdateRecord};
use confab_protocol::control::{self, ControlState, MemberRecord};
use confab_protocol::validate::{self, MembershipAnswer};
use confab_protocol::{
    DocId, DocKind, DocValidator, Limits, MessageId, OrgId, OrgKey, SignedChange, UserId, Verdict,
};
use tokio::sync::watch;

/// How long the node's tasks get to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A Confab node in this process, for an organisation whose key the test holds.
pub struct EvilNode {
    /// The organisation's name (its users are `someone@name`).
    pub name: String,
    /// The organisation key: the node's signing key and libp2p identity.
    pub key: OrgKey,
    handle: FederationHandle,
    engine: Option<EngineHandle>,
    store: Arc<dyn KvStore>,
    stop: watch::Sender<bool>,
    federation_task: Option<tokio::task::JoinHandle<()>>,
    engine_task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl EvilNode {
    /// Starts a node for organisation `name` on a fresh data directory, federating on a free
    /// port of 127.0.0.1 with catch-up every 2 s.
    pub async fn start(name: &str) -> Result<EvilNode, String> {
        let dir = tempfile::Builder::new()
            .prefix("confab-evil-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let config = Config {
            data_dir: dir.path().join("data"),
            org_name: name.to_string(),
            federation: FederationConfig {
                listen: vec!["/ip4/127.0.0.1/tcp/0".to_string()],
                anti_entropy_interval_s: 2,
                ..FederationConfig::default()
            },
            ..Config::default()
        };
        let store = confab_node::server::open_store(&config).map_err(|e| e.to_string())?;
        let (outbound, outbound_receiver) = tokio::sync::mpsc::channel(engine::OUTBOUND_QUEUE);
        let (engine, hub, engine_task) = engine::start(
            store.clone(),
            name.to_string(),
            config.limits.clone(),
            None,
            Some(outbound),
        )
        .await
        .map_err(|e| e.to_string())?;
        let key = confab_node::org_key::load_or_create_org_key(store.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        let (stop, stop_receiver) = watch::channel(false);
        let (handle, federation_task) = federation::start(
            config.federation.clone(),
            name.to_string(),
            key.seed(),
            store.clone(),
            engine.clone(),
            hub,
            confab_node::media::BlobStore::new(&config.data_dir).map_err(|e| e.to_string())?,
            outbound_receiver,
            stop_receiver,
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(EvilNode {
            name: name.to_string(),
            key,
            handle,
            engine: Some(engine),
            store,
            stop,
            federation_task: Some(federation_task),
            engine_task: Some(engine_task),
            _dir: dir,
        })
    }

    /// The organisation id.
    pub fn org(&self) -> OrgId {
        self.key.id()
    }

    /// The libp2p peer id, as text.
    pub fn peer_id(&self) -> String {
        self.handle.net.local_peer_id().to_string()
    }

    /// `<listen address>/p2p/<peer id>`, what another node's admin peers with (waits up to
    /// 10 s for the listener).
    pub async fn address(&self) -> Result<String, String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let addrs = self.handle.net.listen_addrs().await.map_err(|e| e.to_string())?;
            if let Some(addr) = addrs.first() {
                return Ok(format!("{addr}/p2p/{}", self.peer_id()));
            }
            if Instant::now() > deadline {
                return Err("the evil node has no listen address".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Peers with the organisation `name` at `address` (`…/p2p/<peer id>`), as its admin would.
    pub async fn add_peer(&self, name: &str, address: &str) -> Result<(), String> {
        let engine = self.engine.as_ref().ok_or("the evil node is stopped")?;
        let (org, addr) = federation::split_peer_address(address)?;
        let known = engine::peers(self.store.as_ref()).map_err(|e| e.to_string())?;
        let record = PeerRecord {
            name: name.to_string(),
            addrs: vec![addr.to_string()],
            added_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        };
        federation::add_peer(&self.handle, engine, &known, org, record)
            .await
            .map_err(|e| e.to_string())
    }

    /// Whether the node has a connection to `peer_id`.
    pub async fn connected_to(&self, peer_id: &str) -> bool {
        self.handle
            .net
            .peers()
            .await
            .is_ok_and(|peers| peers.iter().any(|p| p.connected && p.peer.to_string() == peer_id))
    }

    /// The peers this node knows to be subscribed to `chat`'s topic (and admitted by its
    /// member set), as text.
    pub async fn topic_peers(&self, chat: confab_protocol::ChatId) -> Vec<String> {
        self.handle
            .net
            .topic_peers(chat)
            .await
            .map(|peers| peers.iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    /// The signed changes of `doc` this node has stored, in the order they were applied.
    pub fn history(&self, doc: DocId) -> Result<Vec<SignedChange>, String> {
        let entries = self
            .store
            .range(Tree::Changes, prefix_range(&doc.to_bytes()), false, usize::MAX)
            .map_err(|e| e.to_string())?;
        entries
            .into_iter()
            .map(|(_, bytes)| SignedChange::decode(&bytes, usize::MAX).map_err(|e| e.to_string()))
            .collect()
    }

    /// Stores `changes` as if this node had accepted them, after `doc`'s stored ones, without
    /// checking them: catch-up then serves them to whoever asks (as a dishonest node would).
    pub async fn plant(&self, doc: DocId, changes: &[SignedChange]) -> Result<(), String> {
        let stored = self.history(doc)?.len() as u64;
        let mut batch = confab_node::store::WriteBatch::default();
        for (offset, change) in changes.iter().enumerate() {
            let key = engine::change_key(&doc, stored + offset as u64);
            batch.put(Tree::Changes, key, change.encode());
        }
        self.store.apply(batch).map_err(|e| e.to_string())?;
        self.store.flush().await.map_err(|e| e.to_string())
    }

    /// Asks `peer` (a peer id) for `doc` directly, from `cursor`, as if this node knew none of
    /// it: the changes of the first page, or the refusal as an error.
    pub async fn fetch_document(
        &self,
        peer: &str,
        doc: DocId,
        cursor: Vec<u8>,
    ) -> Result<Vec<SignedChange>, String> {
        let peer: confab_net::PeerId = peer.parse().map_err(|e| format!("peer id: {e}"))?;
        let request = confab_net::CatchupRequest { doc, heads: Vec::new(), cursor };
        match self.handle.net.catchup(peer, request).await {
            Ok(confab_net::CatchupResponse::Page(page)) => page
                .changes
                .iter()
                .map(|bytes| SignedChange::decode(bytes, usize::MAX).map_err(|e| e.to_string()))
                .collect(),
            Ok(other) => Err(format!("{other:?}")),
            Err(error) => Err(error.to_string()),
        }
    }

    /// Gossips `data` on `chat`'s topic, as this node (gossipsub signs the envelope).
    pub async fn publish(
        &self,
        chat: confab_protocol::ChatId,
        data: Vec<u8>,
    ) -> Result<(), String> {
        self.handle.net.publish(chat, data).await.map(|_| ()).map_err(|e| e.to_string())
    }

    /// Stops the federation task (and the network) and the engine.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.federation_task.take() {
            let _ = tokio::time::timeout(STOP_TIMEOUT, task).await;
        }
        // The engine stops once its last handle is gone.
        self.engine = None;
        if let Some(task) = self.engine_task.take() {
            let _ = tokio::time::timeout(STOP_TIMEOUT, task).await;
        }
    }
}

impl Drop for EvilNode {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// One write of a forged change.
#[derive(Clone, Debug)]
pub enum Write {
    /// Puts `record` at key `<namespace>:<id>` of a bucket's `msg` map (the key's namespace is
    /// whatever the forger likes).
    Message { namespace: OrgId, id: MessageId, record: MessageRecord },
    /// Puts `record` at key `<namespace>:<target>` of a bucket's `upd` map (an edit or a
    /// deletion of the target message).
    Update { namespace: OrgId, record: UpdateRecord },
    /// Sets the chat name: the root of a control document (or of a bucket, which only the
    /// owner's genesis may write).
    ChatName(String),
    /// Puts a member record into a control document.
    Member { user: UserId, record: MemberRecord },
}

/// An automerge change made by [`forge`]: the raw chunk and its hash (what a signature covers).
#[derive(Clone, Debug)]
pub struct Forged {
    pub raw: Vec<u8>,
    pub hash: [u8; 32],
}

impl Forged {
    /// Signs the change with `key` for `doc` at `epoch`, as an honest writer would.
    pub fn sign(&self, key: &OrgKey, doc: DocId, epoch: u64) -> SignedChange {
        SignedChange::sign(key, doc, epoch, self.raw.clone(), &self.hash)
    }
}

/// Builds the automerge document of `history` (applied in order, unvalidated: it is this
/// node's own store) and binds it to `$doc`.
macro_rules! document {
    ($doc:ident, $history:expr) => {
        let changes = $history
            .iter()
            .map(|signed: &SignedChange| {
                TryFrom::try_from(signed.change.as_slice()).map_err(|e| format!("{e:?}"))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let mut $doc = Default::default();
        validate::apply(&mut $doc, changes).map_err(|e| e.to_string())?;
    };
}

/// Forges changes on top of `history`: each write of `writes` is committed as one change by the
/// automerge actor `actor_org ‖ suffix` (whoever `actor_org` is), so they get `seq` 1, 2, … and
/// the right dependencies and `start_op`. Returns the changes in order.
pub fn forge(
    history: &[SignedChange],
    actor_org: &OrgId,
    suffix: [u8; 16],
    writes: Vec<Write>,
) -> Result<Vec<Forged>, String> {
    forge_changes(history, actor_org, suffix, writes.into_iter().map(|write| vec![write]).collect())
}

/// Like [`forge`], with several writes (operations) in each change.
pub fn forge_changes(
    history: &[SignedChange],
    actor_org: &OrgId,
    suffix: [u8; 16],
    changes: Vec<Vec<Write>>,
) -> Result<Vec<Forged>, String> {
    document!(doc, history);
    doc.set_actor(validate::actor_for(actor_org, suffix));
    let mut forged = Vec::with_capacity(changes.len());
    for writes in changes {
        for write in writes {
            match write {
                Write::Message { namespace, id, record } => {
                    let collections = bucket::collections(&doc).map_err(|e| e.to_string())?;
                    bucket::put_message(&mut doc, &collections, &namespace, &id, &record)
                        .map_err(|e| e.to_string())?;
                }
                Write::Update { namespace, record } => {
                    let collections = bucket::collections(&doc).map_err(|e| e.to_string())?;
                    bucket::put_update(&mut doc, &collections, &namespace, &record)
                        .map_err(|e| e.to_string())?;
                }
                Write::ChatName(name) => {
                    control::set_name(&mut doc, &name).map_err(|e| e.to_string())?
                }
                Write::Member { user, record } => {
                    control::put_member(&mut doc, &user, &record).map_err(|e| e.to_string())?
                }
            }
        }
        doc.commit().ok_or("the writes made no change")?;
        let change = doc.get_last_local_change().ok_or("no local change after the commit")?;
        forged.push(Forged { raw: change.raw_bytes().to_vec(), hash: change.hash().0 });
    }
    Ok(forged)
}

/// The state of the control document whose changes are `history`.
pub fn control_state(history: &[SignedChange]) -> Result<ControlState, String> {
    document!(doc, history);
    control::read(&doc).map_err(|e| e.to_string())
}

/// The bodies of the messages in the bucket document whose changes are `history`.
pub fn bucket_bodies(history: &[SignedChange]) -> Result<Vec<String>, String> {
    document!(doc, history);
    let messages = bucket::messages(&doc).map_err(|e| e.to_string())?;
    Ok(messages.into_iter().map(|(_, _, record)| record.body).collect())
}

/// The control document's validation does not consult membership.
struct NoMembership;

impl validate::Membership for NoMembership {
    fn org_at_epoch(&self, _: &OrgId, _: u64) -> MembershipAnswer {
        MembershipAnswer::NotMember
    }
}

/// What an honest node whose document `doc` holds `history` decides about `change`: the exact
/// pipeline of `spec/channel-documents.md` §6 (after the node's own decoding, with its size
/// limit), as text: `accepted`, `duplicate`, `pending: …` or `rejected: …`.
pub fn honest_verdict(
    doc: DocId,
    owner: OrgId,
    control: &ControlState,
    history: &[SignedChange],
    bytes: &[u8],
) -> String {
    let limit = Limits::default().change_bytes_max + confab_protocol::signed_change::HEADER_LEN;
    let change = match SignedChange::decode(bytes, limit) {
        Ok(change) => change,
        Err(error) => return format!("rejected: not a signed change: {error}"),
    };
    if change.doc.chat != doc.chat {
        return "rejected: a change of another chat on this chat's topic".into();
    }
    let membership: &dyn validate::Membership = match doc.kind {
        DocKind::Control => &NoMembership,
        DocKind::Bucket(_) => control,
    };
    let mut validator = DocValidator::new(doc, owner, Limits::default());
    for signed in history {
        match validator.check(signed, membership) {
            Ok(Verdict::Accept(checked)) => validator.commit(&checked),
            Ok(Verdict::Duplicate) => {}
            other => return format!("history does not validate: {other:?}"),
        }
    }
    match validator.check(&change, membership) {
        Ok(Verdict::Accept(_)) => "accepted".into(),
        Ok(Verdict::Duplicate) => "duplicate".into(),
        Ok(Verdict::Pending(reason)) => format!("pending: {reason:?}"),
        Err(rejection) => format!("rejected: {rejection}"),
    }
}
