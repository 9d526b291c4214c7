//! Integration tests of `confab-net`: real libp2p swarms over TCP on 127.0.0.1 (port 0), no
//! mocks. Each node runs a small test driver that drains its events, applies a validation policy
//! to gossip, serves catch-up (document and chat index) requests and records what happened.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use confab_net::{
    CatchupRequest, CatchupResponder, CatchupResponse, GossipMessage, Multiaddr, NetConfig,
    NetEvent, Network, NetworkHandle, PeerId, Validation,
};
use confab_protocol::ChatId;

#[path = "net/blacklist.rs"]
mod blacklist;
#[path = "net/catchup.rs"]
mod catchup;
#[path = "net/codec.rs"]
mod codec;
#[path = "net/confidentiality.rs"]
mod confidentiality;
#[path = "net/consent.rs"]
mod consent;
#[path = "net/dial.rs"]
mod dial;
#[path = "net/former_members.rs"]
mod former_members;
#[path = "net/gossip.rs"]
mod gossip;
#[path = "net/index.rs"]
mod index;
#[path = "net/invite.rs"]
mod invite;
#[path = "net/media.rs"]
mod media;
#[path = "net/quic.rs"]
mod quic;

/// How long a test waits for something that should happen.
const WAIT: Duration = Duration::from_secs(20);

type Validator = Arc<dyn Fn(&GossipMessage) -> Validation + Send + Sync>;
type Server = Arc<dyn Fn(PeerId, &CatchupRequest) -> CatchupResponse + Send + Sync>;
type IndexServer = Arc<dyn Fn(PeerId) -> CatchupResponse + Send + Sync>;

#[derive(Default)]
struct Record {
    gossip: Vec<GossipMessage>,
    refused: Vec<NetEvent>,
    blacklisted: Vec<PeerId>,
    catchup_requests: Vec<(PeerId, CatchupRequest)>,
    index_requests: Vec<PeerId>,
    respond_errors: Vec<String>,
    disconnected: Vec<PeerId>,
    anti_entropy: Vec<Vec<PeerId>>,
}

struct Node {
    handle: NetworkHandle,
    peer: PeerId,
    addr: Multiaddr,
    record: Arc<Mutex<Record>>,
    driver: tokio::task::JoinHandle<()>,
    actor: tokio::task::JoinHandle<()>,
}

fn seed(n: u8) -> [u8; 32] {
    let mut s = [0u8; 32];
    s[0] = n;
    s[31] = 0xc0;
    s
}

fn test_config() -> NetConfig {
    let mut config = NetConfig {
        listen_addrs: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")],
        dial_backoff_min: Duration::from_millis(100),
        dial_backoff_max: Duration::from_millis(800),
        ..NetConfig::default()
    };
    config.gossip.heartbeat_interval = Duration::from_millis(100);
    config
}

fn accept_all() -> Validator {
    Arc::new(|_| Validation::Accept)
}

/// Rejects payloads starting with `bad`, accepts the rest.
fn reject_bad() -> Validator {
    Arc::new(|m| if m.data.starts_with(b"bad") { Validation::Reject } else { Validation::Accept })
}

fn no_server() -> Server {
    Arc::new(|_, _| CatchupResponse::Refused(confab_net::CatchupRefusal::UnknownDocument))
}

/// Answers every chat index request with an empty index.
fn empty_index() -> IndexServer {
    Arc::new(|_| CatchupResponse::Index(Vec::new()))
}

async fn start(n: u8, config: NetConfig, validator: Validator, server: Server) -> Node {
    start_with_index(n, config, validator, server, empty_index()).await
}

async fn start_with_index(
    n: u8,
    config: NetConfig,
    validator: Validator,
    server: Server,
    index_server: IndexServer,
) -> Node {
    let (handle, mut events, actor) = Network::start(seed(n), config).expect("start");
    let peer = handle.local_peer_id();
    assert_eq!(peer, confab_net::peer_id_of(&org_key(n)).expect("peer id"));
    let record = Arc::new(Mutex::new(Record::default()));
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let mut addr_tx = Some(addr_tx);
    let driver_handle = handle.clone();
    let driver_record = record.clone();
    let driver = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                NetEvent::Listening { addr } => {
                    if let Some(tx) = addr_tx.take() {
                        let _ = tx.send(addr);
                    }
                }
                NetEvent::Gossip(message) => {
                    let verdict = validator(&message);
                    let _ = driver_handle
                        .report_validation(message.id, message.propagation_source, verdict)
                        .await;
                    driver_record.lock().expect("lock").gossip.push(message);
                }
                NetEvent::CatchupRequest { peer, request, responder } => {
                    let response = server(peer, &request);
                    driver_record.lock().expect("lock").catchup_requests.push((peer, request));
                    respond(responder, response, &driver_record).await;
                }
                NetEvent::IndexRequest { peer, responder, .. } => {
                    let response = index_server(peer);
                    driver_record.lock().expect("lock").index_requests.push(peer);
                    respond(responder, response, &driver_record).await;
                }
                NetEvent::PeerBlacklisted { peer, .. } => {
                    driver_record.lock().expect("lock").blacklisted.push(peer);
                }
                NetEvent::AntiEntropyTick { peers } => {
                    driver_record.lock().expect("lock").anti_entropy.push(peers);
                }
                NetEvent::PeerDisconnected { peer } => {
                    driver_record.lock().expect("lock").disconnected.push(peer);
                }
                event @ NetEvent::ConnectionRefused { .. } => {
                    driver_record.lock().expect("lock").refused.push(event);
                }
                _ => {}
            }
        }
    });
    let addr = tokio::time::timeout(WAIT, addr_rx).await.expect("listening in time").expect("addr");
    Node { handle, peer, addr, record, driver, actor }
}

async fn respond(responder: CatchupResponder, response: CatchupResponse, record: &Mutex<Record>) {
    if let Err(e) = responder.respond(response).await {
        record.lock().expect("lock").respond_errors.push(e.to_string());
    }
}

fn org_key(n: u8) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(&seed(n)).verifying_key().to_bytes()
}

impl Node {
    async fn stop(self) {
        self.handle.shutdown().await;
        let _ = tokio::time::timeout(WAIT, self.actor).await;
        self.driver.abort();
    }

    fn received(&self) -> Vec<Vec<u8>> {
        self.record.lock().expect("lock").gossip.iter().map(|m| m.data.clone()).collect()
    }

    async fn connected_to(&self, other: &PeerId) -> bool {
        self.handle.peers().await.expect("peers").iter().any(|p| p.peer == *other && p.connected)
    }
}

/// Peers two nodes both ways (mutual consent).
async fn peer(a: &Node, b: &Node) {
    a.handle.add_peer(b.peer, vec![b.addr.clone()]).await.expect("add peer");
    b.handle.add_peer(a.peer, vec![a.addr.clone()]).await.expect("add peer");
}

/// Polls `cond` until it is true or [`WAIT`] passes.
async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if cond().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn chat(n: u8) -> ChatId {
    ChatId::from_bytes([n; 16])
}

/// Subscribes every node to `chat` with the given member peers per node.
async fn join_channel(chat: ChatId, nodes: &[(&Node, Vec<PeerId>)]) {
    for (node, members) in nodes {
        node.handle.set_channel_members(chat, members.clone()).await.expect("members");
        node.handle.subscribe(chat).await.expect("subscribe");
    }
}

/// Waits until `node` sees exactly `expected` on the chat's topic (as a set).
async fn wait_topic_peers(node: &Node, chat: ChatId, expected: &[PeerId]) {
    let expected: HashSet<PeerId> = expected.iter().copied().collect();
    eventually("topic peers", || async {
        let got: HashSet<PeerId> =
            node.handle.topic_peers(chat).await.expect("topic peers").into_iter().collect();
        got == expected
    })
    .await;
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
