//! Federation: organisations' nodes as separate processes on 127.0.0.1, peered over libp2p by
//! their admins, sharing channels and DMs by gossip and catch-up of signed changes.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::*;

/// How long convergence may take before a test fails (catch-up runs every 2 s here).
const CONVERGE: Duration = Duration::from_secs(40);

/// One organisation: its node (federating on a free port) and a signed-in admin user.
pub(crate) struct Org {
    pub(crate) name: String,
    pub(crate) node: TestNode,
    pub(crate) client: Client,
    pub(crate) user: String,
    /// Holds the node's `node.toml` (and test scratch files).
    pub(crate) config_dir: tempfile::TempDir,
}

impl Org {
    pub(crate) async fn start(name: &str, user: &str) -> Org {
        Org::start_on(name, user, "/ip4/127.0.0.1/tcp/0").await
    }

    /// Like [`Org::start`], on a fixed TCP port of 127.0.0.1 (a free one now), so that its
    /// address stays the same across restarts.
    pub(crate) async fn start_fixed(name: &str, user: &str) -> Org {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        Org::start_on(name, user, &format!("/ip4/127.0.0.1/tcp/{port}")).await
    }

    /// Like [`Org::start`], federating on the multiaddr `listen` (a fixed port keeps the node's
    /// address across restarts; `/udp/<port>/quic-v1` is QUIC).
    pub(crate) async fn start_on(name: &str, user: &str, listen: &str) -> Org {
        let dir = tempfile::tempdir().expect("config dir");
        let config = dir.path().join("node.toml");
        std::fs::write(
            &config,
            format!("[federation]\nlisten = [\"{listen}\"]\nanti_entropy_interval_s = 2\n"),
        )
        .expect("write config");
        let node = TestNode::start_with(NodeOptions {
            name: name.to_string(),
            org_name: name.to_string(),
            extra_args: vec!["--config".into(), config.display().to_string()],
            ..NodeOptions::default()
        })
        .await;
        let client = Client::for_node(&node);
        client.register(user, PASSWORD).await.must("register admin");
        Org {
            name: name.to_string(),
            node,
            client,
            user: format!("{user}@{name}"),
            config_dir: dir,
        }
    }

    /// `GET /admin/federation`: identity, addresses and traffic counters.
    pub(crate) async fn federation(&self) -> Value {
        self.client.call(Method::GET, "/admin/federation", None).await.must("federation info")
    }

    /// This node's libp2p peer id.
    pub(crate) async fn peer_id(&self) -> String {
        self.federation().await["peer_id"].as_str().expect("peer id").to_string()
    }

    /// This node's address for others: its first listen address with `/p2p/<peer id>`.
    pub(crate) async fn address(&self) -> String {
        let info = self.federation().await;
        let addr = info["listen_addrs"][0].as_str().expect("a listen address");
        format!("{addr}/p2p/{}", info["peer_id"].as_str().expect("peer id"))
    }

    pub(crate) async fn peers(&self) -> Vec<Value> {
        self.client.call(Method::GET, "/admin/peers", None).await.must("list peers")
    }

    /// The peer named `name` as `GET /admin/peers` shows it.
    pub(crate) async fn peer_named(&self, name: &str) -> Value {
        self.peers().await.into_iter().find(|p| p["name"] == json!(name)).unwrap_or(Value::Null)
    }

    /// How many messages of the chat have exactly this body (and are not deleted).
    pub(crate) async fn count_body(&self, chat: &str, body: &str) -> usize {
        self.view(chat).await.iter().filter(|m| m.2 == body && !m.3).count()
    }

    pub(crate) async fn chat_ids(&self) -> Vec<String> {
        self.client.chats().await.must("chats").into_iter().map(|entry| entry.chat.id).collect()
    }

    /// Messages of a chat as (id, author, body, deleted, reactions), oldest first.
    pub(crate) async fn view(&self, chat: &str) -> Vec<(String, String, String, bool, Value)> {
        let page: Value = match self
            .client
            .call(Method::GET, &format!("/chats/{chat}/messages?limit=200"), None)
            .await
        {
            Ok(page) => page,
            Err(_) => return Vec::new(),
        };
        let mut out: Vec<_> = page["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                (
                    m["id"].as_str().unwrap_or_default().to_string(),
                    m["author"].as_str().unwrap_or_default().to_string(),
                    m["body"].as_str().unwrap_or_default().to_string(),
                    m["deleted"].as_bool().unwrap_or(false),
                    m["reactions"].clone(),
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// Sends a message, retrying while the node answers `503 not_synced` (a shared chat whose
/// history is still arriving from its owner, for a moment after it appears).
async fn send(org: &Org, chat: &str, body: &str) -> Message {
    let started = Instant::now();
    loop {
        match org.client.send(chat, body).await {
            Err(error) if error.status == 503 && started.elapsed() < CONVERGE => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other.must(&format!("{} sends {body:?}", org.name)),
        }
    }
}

/// Both admins peer with each other (consent is mutual).
pub(crate) async fn peer(a: &Org, b: &Org) {
    peer_with(a, &b.name, &b.address().await).await;
    peer_with(b, &a.name, &a.address().await).await;
}

/// `org`'s admin adds the organisation `name` at `address` (`…/p2p/<peer id>`) as a peer.
pub(crate) async fn peer_with(org: &Org, name: &str, address: &str) {
    let _: Value = org
        .client
        .call(Method::POST, "/admin/peers", Some(json!({"name": name, "address": address})))
        .await
        .must(&format!("{} peers with {name}", org.name));
}

/// Polls `check` until it holds or `CONVERGE` passes.
pub(crate) async fn eventually<F, Fut>(what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < CONVERGE, "{what}: not reached within {CONVERGE:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn converged(orgs: &[&Org], chat: &str, count: usize) -> bool {
    let first = orgs[0].view(chat).await;
    if first.len() != count {
        return false;
    }
    for org in &orgs[1..] {
        if org.view(chat).await != first {
            return false;
        }
    }
    true
}

async fn three_orgs() -> (Org, Org, Org) {
    let acme = Org::start("acme", "alice").await;
    let globex = Org::start("globex", "bob").await;
    let initech = Org::start("initech", "carol").await;
    peer(&acme, &globex).await;
    peer(&acme, &initech).await;
    peer(&globex, &initech).await;
    for org in [&acme, &globex, &initech] {
        eventually(&format!("{} connected to both peers", org.name), || async {
            org.peers().await.iter().filter(|p| p["connected"] == json!(true)).count() == 2
        })
        .await;
    }
    (acme, globex, initech)
}

/// A channel shared by three organisations and a DM between two: messages, edits, deletes
/// and reactions from every side converge to the same view on every node.
#[tokio::test(flavor = "multi_thread")]
async fn three_organisations_converge() {
    let (acme, globex, initech) = three_orgs().await;
    let chat = acme.client.create_channel("shared", "private").await.must("create channel");
    acme.client.invite(&chat.id, &globex.user, None).await.must("invite bob@globex");
    acme.client.invite(&chat.id, &initech.user, None).await.must("invite carol@initech");
    for org in [&globex, &initech] {
        eventually(&format!("{} sees the channel", org.name), || async {
            org.chat_ids().await.contains(&chat.id)
        })
        .await;
    }
    let members = globex.client.members(&chat.id).await.must("members");
    assert_eq!(members.len(), 3, "globex sees all three members");

    let a1 = send(&acme, &chat.id, "hello from acme").await;
    let b1 = send(&globex, &chat.id, "hello from globex").await;
    let c1 = send(&initech, &chat.id, "hello from initech").await;
    eventually("the three messages everywhere", || async {
        converged(&[&acme, &globex, &initech], &chat.id, 3).await
    })
    .await;

    globex
        .client
        .edit(&chat.id, &b1.id, "hello from globex (edited)")
        .await
        .must("bob edits his own message");
    initech.client.delete(&chat.id, &c1.id).await.must("carol deletes hers");
    let _: Value = acme
        .client
        .call(
            Method::POST,
            &format!("/chats/{}/messages/{}/reactions", chat.id, b1.id),
            Some(json!({"emoji": "👍"})),
        )
        .await
        .must("alice reacts to bob");
    let _: Value = globex
        .client
        .call(
            Method::POST,
            &format!("/chats/{}/messages/{}/reactions", chat.id, a1.id),
            Some(json!({"emoji": "🎉"})),
        )
        .await
        .must("bob reacts to alice");
    eventually("edits, deletes and reactions everywhere", || async {
        if !converged(&[&acme, &globex, &initech], &chat.id, 3).await {
            return false;
        }
        let view = initech.view(&chat.id).await;
        let b = view.iter().find(|m| m.0 == b1.id);
        let c = view.iter().find(|m| m.0 == c1.id);
        let a = view.iter().find(|m| m.0 == a1.id);
        b.is_some_and(|m| m.2 == "hello from globex (edited)" && m.4.to_string().contains("👍"))
            && c.is_some_and(|m| m.3)
            && a.is_some_and(|m| m.4.to_string().contains("🎉"))
    })
    .await;
    // Nobody edits another organisation's message.
    globex.client.edit(&chat.id, &a1.id, "hijacked").await.err_is(
        403,
        "forbidden",
        "bob edits alice's message",
    );

    // A DM between two organisations.
    let (_, dm) = acme.client.dm(&[&globex.user]).await.must("open DM");
    eventually("bob sees the DM", || async { globex.chat_ids().await.contains(&dm.id) }).await;
    let canary = format!("dm-canary-{}", std::process::id());
    send(&globex, &dm.id, &canary).await;
    send(&acme, &dm.id, "hi bob").await;
    eventually("the DM converges", || async { converged(&[&acme, &globex], &dm.id, 2).await })
        .await;
    assert!(!initech.chat_ids().await.contains(&dm.id), "initech is not in the DM");
    // Confidentiality: initech is peered with both but has no member in the DM.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut initech = initech;
    initech.node.terminate().await;
    assert_eq!(
        occurrences(initech.node.data_dir(), canary.as_bytes()),
        0,
        "a peered node with no member in the DM received its content"
    );
}

/// Removing an organisation's last member stops its replication and its writes.
#[tokio::test(flavor = "multi_thread")]
async fn removed_organisation_stops_replicating() {
    let acme = Org::start("acme", "alice").await;
    let globex = Org::start("globex", "bob").await;
    peer(&acme, &globex).await;
    let chat = acme.client.create_channel("ops", "private").await.must("create channel");
    acme.client.invite(&chat.id, &globex.user, None).await.must("invite bob");
    eventually("bob sees the channel", || async { globex.chat_ids().await.contains(&chat.id) })
        .await;
    send(&globex, &chat.id, "before").await;
    eventually("acme has bob's message", || async { acme.view(&chat.id).await.len() == 1 }).await;
    acme.client.remove_member(&chat.id, &globex.user).await.must("remove bob");
    eventually("bob no longer sees the channel", || async {
        !globex.chat_ids().await.contains(&chat.id)
    })
    .await;
    let canary = format!("canary-{}", std::process::id());
    send(&acme, &chat.id, &canary).await;
    // Several anti-entropy rounds pass.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(acme.view(&chat.id).await.len(), 2);
    let mut globex = globex;
    globex.node.terminate().await;
    assert_eq!(
        occurrences(globex.node.data_dir(), canary.as_bytes()),
        0,
        "a removed organisation's node received a later message"
    );
    assert!(
        occurrences(acme.node.data_dir(), canary.as_bytes()) > 0,
        "the canary search works (the owner's node has it)"
    );
}

/// Two organisations federating over QUIC only: peered, a shared channel, messages both ways.
#[tokio::test(flavor = "multi_thread")]
async fn organisations_federate_over_quic() {
    let quic = "/ip4/127.0.0.1/udp/0/quic-v1";
    let (acme, globex) =
        tokio::join!(Org::start_on("acme", "alice", quic), Org::start_on("globex", "bob", quic));
    assert!(acme.address().await.contains("/quic-v1/p2p/"));
    peer(&acme, &globex).await;
    let chat = shared_channel(&acme, &[&globex], "over-quic").await;
    send(&acme, &chat, "hello over quic").await;
    send(&globex, &chat, "hello back").await;
    eventually("both messages on both nodes", || async {
        converged(&[&acme, &globex], &chat, 2).await
    })
    .await;
}

/// The peer CLI on a stopped node: its identity, an invite the other admin accepts, a peer
/// added by address, listed and removed; the node peers as recorded when it starts.
#[tokio::test(flavor = "multi_thread")]
async fn peer_cli_manages_the_peers_of_a_stopped_node() {
    let mut acme = Org::start_fixed("acme", "alice").await;
    let globex = Org::start("globex", "bob").await;
    let acme_peer = acme.peer_id().await;
    acme.node.terminate().await;
    let dir = acme.node.data_dir().display().to_string();
    let config = acme.config_dir.path().join("node.toml").display().to_string();
    let cli = |node: &TestNode, args: &[&str]| {
        let mut all = vec!["peer"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--data-dir", &dir, "--config", &config, "--org-name", "acme"]);
        let output = node.cli(&all);
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).to_string();
        (output.status.success(), text(&output.stdout), text(&output.stderr))
    };

    let (ok, identity, err) = cli(&acme.node, &["identity"]);
    assert!(ok && identity.contains(&acme_peer), "{identity} {err}");
    let (ok, token, err) = cli(&acme.node, &["invite"]);
    assert!(ok, "invite: {err}");
    let _: Value = globex
        .client
        .call(Method::POST, "/admin/peers", Some(json!({"name": "acme", "invite": token.trim()})))
        .await
        .must("globex accepts acme's invite");
    let (ok, out, err) =
        cli(&acme.node, &["add", "--name", "globex", "--address", "/ip4/127.0.0.1/tcp/1"]);
    assert!(!ok && err.contains("/p2p/"), "an address without /p2p: {out} {err}");
    let (ok, out, err) =
        cli(&acme.node, &["add", "--name", "Not A Name", "--address", &globex.address().await]);
    assert!(!ok && err.contains("name"), "a bad name: {out} {err}");
    let (ok, out, err) =
        cli(&acme.node, &["add", "--name", "globex", "--address", &globex.address().await]);
    assert!(ok, "add: {out} {err}");
    let (ok, list, err) = cli(&acme.node, &["list"]);
    assert!(ok && list.lines().count() == 1 && list.contains("\tglobex\t"), "{list} {err}");

    acme.node.start_again_same_port().await;
    eventually("acme and globex connected", || async {
        acme.peer_named("globex").await["connected"] == json!(true)
            && globex.peer_named("acme").await["connected"] == json!(true)
    })
    .await;
    let chat = shared_channel(&acme, &[&globex], "peered-by-cli").await;
    send(&globex, &chat, "hello from globex").await;
    eventually("acme has globex's message", || async {
        acme.count_body(&chat, "hello from globex").await == 1
    })
    .await;

    acme.node.terminate().await;
    let (ok, out, err) = cli(&acme.node, &["remove", "globex"]);
    assert!(ok, "remove: {out} {err}");
    let (ok, list, _) = cli(&acme.node, &["list"]);
    assert!(ok && list.trim().is_empty(), "{list}");
    let (ok, _, err) = cli(&acme.node, &["remove", "globex"]);
    assert!(!ok && err.contains("no peer"), "{err}");
    acme.node.start_again_same_port().await;
    assert!(acme.peers().await.is_empty());
}

/// A removal made while the removed organisation's node is down reaches it when it comes back,
/// even after the owner's node restarted in between (it admits former members again from its
/// stored chats).
#[tokio::test(flavor = "multi_thread")]
async fn removal_reaches_an_offline_node_after_the_owner_restarts() {
    let mut acme = Org::start_fixed("acme", "alice").await;
    let mut globex = Org::start("globex", "bob").await;
    peer(&acme, &globex).await;
    let chat = shared_channel(&acme, &[&globex], "ops").await;
    globex.node.terminate().await;
    acme.client.remove_member(&chat, &globex.user).await.must("remove bob");
    acme.node.restart_same_port().await;
    globex.node.start_again_same_port().await;
    eventually("bob no longer sees the channel", || async {
        !globex.chat_ids().await.contains(&chat)
    })
    .await;
}

/// How many times `needle` occurs in the files under `dir`.
pub(crate) fn occurrences(dir: &std::path::Path, needle: &[u8]) -> usize {
    let mut count = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                count += bytes.windows(needle.len()).filter(|w| *w == needle).count();
            }
        }
    }
    count
}

/// Creates a private channel on `owner` with the admins of `others` as members and waits until
/// every one of them sees it.
async fn shared_channel(owner: &Org, others: &[&Org], name: &str) -> String {
    let chat = owner.client.create_channel(name, "private").await.must("create channel").id;
    for org in others {
        owner.client.invite(&chat, &org.user, None).await.must("invite");
    }
    for org in others {
        eventually(&format!("{} sees {name}", org.name), || async {
            org.chat_ids().await.contains(&chat)
        })
        .await;
    }
    chat
}

/// kill -9 of one node during traffic from both sides: after its restart the two converge and
/// no acknowledged message is lost.
#[tokio::test(flavor = "multi_thread")]
async fn killed_node_converges_after_restart() {
    let acme = Org::start("acme", "alice").await;
    let mut globex = Org::start("globex", "bob").await;
    peer(&acme, &globex).await;
    let chat = shared_channel(&acme, &[&globex], "traffic").await;
    let mut acked = Vec::new();
    for i in 0..30 {
        acked.push(send(&acme, &chat, &format!("a{i}")).await.id);
        acked.push(send(&globex, &chat, &format!("b{i}")).await.id);
    }
    // Traffic keeps coming from acme while globex dies.
    let writer = {
        let client = acme.client.clone();
        let chat = chat.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..40 {
                if let Ok(message) = client.send(&chat, &format!("during{i}")).await {
                    ids.push(message.id);
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            ids
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    globex.node.kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    globex.node.start_again_same_port().await;
    acked.extend(writer.await.expect("writer"));
    for i in 0..5 {
        acked.push(send(&globex, &chat, &format!("after{i}")).await.id);
    }
    let took = eventually("both nodes hold every acknowledged message", || async {
        let (a, b) = (acme.view(&chat).await, globex.view(&chat).await);
        a == b && acked.iter().all(|id| a.iter().any(|m| &m.0 == id))
    })
    .await;
    println!("converged {took:?} after the restart ({} messages)", acked.len());
}

/// The owner's node is down: the other member organisations keep chatting, and a fourth
/// organisation that was added before catches up from a non-owner.
#[tokio::test(flavor = "multi_thread")]
async fn owner_offline_others_chat_and_newcomer_catches_up() {
    let mut acme = Org::start("acme", "alice").await;
    let globex = Org::start("globex", "bob").await;
    let initech = Org::start("initech", "carol").await;
    let mut hooli = Org::start("hooli", "dave").await;
    for (a, b) in [
        (&acme, &globex),
        (&acme, &initech),
        (&globex, &initech),
        (&acme, &hooli),
        (&globex, &hooli),
        (&initech, &hooli),
    ] {
        peer(a, b).await;
    }
    let chat = shared_channel(&acme, &[&globex, &initech], "ops").await;
    send(&acme, &chat, "owner speaking").await;
    // hooli is added while its node is down.
    hooli.node.terminate().await;
    acme.client.invite(&chat, &hooli.user, None).await.must("invite dave@hooli");
    eventually("the others know dave is a member", || async {
        let members = globex.client.members(&chat).await.unwrap_or_default();
        members.iter().any(|m| m.user_id == hooli.user)
    })
    .await;
    acme.node.kill9();
    send(&globex, &chat, "owner is down").await;
    send(&initech, &chat, "still here").await;
    eventually("globex and initech converge without the owner", || async {
        converged(&[&globex, &initech], &chat, 3).await
    })
    .await;
    hooli.node.start_again_same_port().await;
    let took = eventually("hooli catches up from a non-owner", || async {
        converged(&[&globex, &initech, &hooli], &chat, 3).await
    })
    .await;
    println!("newcomer caught up in {took:?} with the owner down");
    send(&hooli, &chat, "hello, I'm new").await;
    eventually("dave's message reaches the others", || async {
        converged(&[&globex, &initech, &hooli], &chat, 4).await
    })
    .await;
}

/// A TCP proxy the test controls: forwards to `target` until cut, then drops every
/// connection and refuses new ones until healed.
struct Proxy {
    addr: std::net::SocketAddr,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    generation: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(target: std::net::SocketAddr) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let task = {
            let open = open.clone();
            let generation = generation.clone();
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !open.load(Ordering::SeqCst) {
                        continue;
                    }
                    let mut cut = generation.subscribe();
                    tokio::spawn(async move {
                        let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = cut.changed() => {}
                        }
                    });
                }
            })
        };
        Proxy { addr, open, generation, task }
    }

    fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    fn heal(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `/ip4/127.0.0.1/tcp/<port>` of a node's first federation listen address.
async fn federation_socket(org: &Org) -> std::net::SocketAddr {
    let address = org.address().await;
    let port = address
        .split('/')
        .skip_while(|part| *part != "tcp")
        .nth(1)
        .and_then(|port| port.parse::<u16>().ok())
        .expect("a tcp port in the listen address");
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

/// Peers `a` and `b` through a proxy each, so the test can partition them.
async fn peer_through_proxies(a: &Org, b: &Org) -> (Proxy, Proxy) {
    let to_a = Proxy::start(federation_socket(a).await).await;
    let to_b = Proxy::start(federation_socket(b).await).await;
    let via = |proxy: &Proxy, address: String| {
        let peer = address.rsplit('/').next().unwrap_or_default().to_string();
        format!("/ip4/127.0.0.1/tcp/{}/p2p/{peer}", proxy.addr.port())
    };
    let a_via = via(&to_a, a.address().await);
    let b_via = via(&to_b, b.address().await);
    let _: Value = a
        .client
        .call(Method::POST, "/admin/peers", Some(json!({"name": b.name, "address": b_via})))
        .await
        .must("peer a -> b via proxy");
    let _: Value = b
        .client
        .call(Method::POST, "/admin/peers", Some(json!({"name": a.name, "address": a_via})))
        .await
        .must("peer b -> a via proxy");
    (to_a, to_b)
}

/// A 30 s partition with writes on both sides; after it heals the two converge, and the time
/// that took is printed.
#[tokio::test(flavor = "multi_thread")]
async fn partition_heals_and_converges() {
    let acme = Org::start("acme", "alice").await;
    let globex = Org::start("globex", "bob").await;
    let (to_acme, to_globex) = peer_through_proxies(&acme, &globex).await;
    let chat = shared_channel(&acme, &[&globex], "split").await;
    send(&acme, &chat, "before").await;
    eventually("both have the first message", || async {
        converged(&[&acme, &globex], &chat, 1).await
    })
    .await;
    to_acme.cut();
    to_globex.cut();
    eventually("the peers see the partition", || async {
        acme.peers().await.iter().all(|p| p["connected"] == json!(false))
    })
    .await;
    let partition = Instant::now();
    for i in 0..10 {
        send(&acme, &chat, &format!("acme {i}")).await;
        send(&globex, &chat, &format!("globex {i}")).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(acme.view(&chat).await.len(), 11, "acme has only its side");
    assert_eq!(globex.view(&chat).await.len(), 11, "globex has only its side");
    let remaining = Duration::from_secs(30).saturating_sub(partition.elapsed());
    tokio::time::sleep(remaining).await;
    to_acme.heal();
    to_globex.heal();
    let healed = Instant::now();
    let started = Instant::now();
    loop {
        if converged(&[&acme, &globex], &chat, 21).await {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "no convergence within 90 s of healing a {:?} partition",
            healed - partition
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "partition of {:?} healed; converged {:?} later",
        healed - partition,
        healed.elapsed()
    );
}

/// Independent referee: automerge-js (`@automerge/automerge` from npm, installed by `.ci/run`
/// under `tests/referee/`) loads a history bucket saved by a node and reads the same messages
/// and updates the node's API serves.
#[tokio::test(flavor = "multi_thread")]
async fn automerge_js_reads_a_bucket_saved_by_a_node() {
    let referee = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("referee");
    assert!(
        referee.join("node_modules/@automerge/automerge").exists(),
        "the automerge-js referee is not installed: run `npm ci --prefix tests/referee` (.ci/run does)"
    );
    let mut acme = Org::start("acme", "alice").await;
    let chat = acme.client.create_channel("refereed", "public").await.must("create channel").id;
    let mut sent = Vec::new();
    for body in ["first", "second ✓", "third, with \"quotes\""] {
        sent.push(send(&acme, &chat, body).await);
    }
    acme.client.edit(&chat, &sent[0].id, "first (edited)").await.must("edit");
    acme.node.terminate().await;
    let out = acme.config_dir.path().join("bucket1.automerge");
    let data_dir = acme.node.data_dir().display().to_string();
    let output = acme.node.cli(&[
        "export-document",
        "--data-dir",
        &data_dir,
        "--org-name",
        "acme",
        "--chat",
        &chat,
        "--document",
        "1",
        "--out",
        &out.display().to_string(),
    ]);
    assert!(
        output.status.success(),
        "export-document failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let read = std::process::Command::new("node")
        .arg(referee.join("automerge-read.mjs"))
        .arg(&out)
        .output()
        .expect("run node (Node.js) for the automerge-js referee");
    assert!(
        read.status.success(),
        "automerge-js could not load the document: {}",
        String::from_utf8_lossy(&read.stderr)
    );
    let seen: Value = serde_json::from_slice(&read.stdout).expect("referee JSON");
    assert_eq!(seen["schema"], json!("confab-bucket/1"));
    let messages = seen["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 3, "automerge-js reads three messages: {seen}");
    for message in &sent {
        let entry = messages
            .iter()
            .find(|m| m["key"].as_str().is_some_and(|k| k.ends_with(&message.id)))
            .unwrap_or_else(|| panic!("automerge-js lacks message {}: {seen}", message.id));
        let record: Value =
            serde_json::from_str(entry["value"].as_str().expect("a string")).expect("record");
        assert_eq!(record["author"], json!(acme.user));
        assert_eq!(record["body"], json!(message.body), "the body as posted");
    }
    let updates = seen["updates"].as_array().expect("updates");
    assert_eq!(updates.len(), 1, "one edit: {seen}");
    let update: Value =
        serde_json::from_str(updates[0]["value"].as_str().expect("a string")).expect("update");
    assert_eq!(update["target"], json!(sent[0].id));
    assert_eq!(update["body"], json!("first (edited)"));
}

/// Presence and typing cross organisations on the shared chat's topic: bob on globex sees
/// alice of acme come online and type.
#[tokio::test(flavor = "multi_thread")]
async fn presence_and_typing_cross_organisations() {
    let acme = Org::start("acme", "alice").await;
    let globex = Org::start("globex", "bob").await;
    peer(&acme, &globex).await;
    let chat = shared_channel(&acme, &[&globex], "lively").await;
    let mut bob = globex.client.ws_ok(None).await;
    // Presence is a change, not a heartbeat: alice coming online is one.
    let mut alice = acme.client.ws_ok(None).await;
    let online = bob.wait_type("presence", |frame| frame["user_id"] == json!(acme.user)).await;
    assert_eq!(online["status"], json!("online"), "{online}");
    alice.send_json(&json!({"type": "typing", "chat_id": chat})).await.expect("send typing");
    let typing = bob.wait_type("typing", |frame| frame["user_id"] == json!(acme.user)).await;
    assert_eq!(typing["chat_id"], json!(chat));
}

/// A file posted in a shared channel is fetched by bob's node from a member node by its hash
/// (and verified) the first time bob downloads it; initech, peered but not a member, cannot.
#[tokio::test(flavor = "multi_thread")]
async fn media_is_fetched_by_hash_from_a_member_node() {
    let (acme, globex, initech) = three_orgs().await;
    let chat = shared_channel(&acme, &[&globex], "files").await;
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let http = reqwest::Client::new();
    let upload: Value = http
        .post(format!("{}/api/v1/media?name=plan.bin", acme.client.base()))
        .header("cookie", acme.client.cookie_header().expect("cookie"))
        .header("origin", acme.client.own_origin())
        .body(bytes.clone())
        .send()
        .await
        .expect("upload")
        .json()
        .await
        .expect("upload json");
    let blob = upload["attachment"]["id"].as_str().expect("blob id").to_string();
    let _: Value = acme
        .client
        .call(
            Method::POST,
            &format!("/chats/{chat}/messages"),
            Some(json!({"body": "the plan", "attachments": [{"id": blob, "name": "plan.bin"}]})),
        )
        .await
        .must("post with attachment");
    eventually("bob has the message", || async { globex.view(&chat).await.len() == 1 }).await;
    let download = |org: &Org| {
        http.get(format!("{}/api/v1/media/{blob}", org.client.base()))
            .header("cookie", org.client.cookie_header().expect("cookie"))
            .send()
    };
    let response = download(&globex).await.expect("download on globex");
    assert_eq!(response.status(), 200, "bob downloads the file on his node");
    assert!(
        response.bytes().await.expect("bytes")[..] == bytes[..],
        "the bytes fetched from acme's node are the uploaded ones"
    );
    let response = download(&initech).await.expect("download on initech");
    assert!(
        response.status() == 403 || response.status() == 404,
        "initech has no member in the channel: {}",
        response.status()
    );
    // Acme's node is gone: bob's node has its own verified copy now.
    let mut acme = acme;
    acme.node.kill9();
    let response = download(&globex).await.expect("download again");
    assert_eq!(response.status(), 200);
}
