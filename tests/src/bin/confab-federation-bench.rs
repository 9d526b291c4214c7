//! confab-federation-bench: cross-organisation figures for two federating Confab nodes on
//! 127.0.0.1.
//!
//! Starts node A (organisation `acme`, admin `alice`) and node B (`globex`, admin `bob`) on
//! fresh data directories, federating over loopback TCP, peers them through the admin API,
//! shares a private channel between alice and bob, and runs:
//! - `latency`: alice sends at a fixed `--rate` (default 100 msg/s) for `--latency-secs` over
//!   her WebSocket on A; bob listens on his WebSocket on B. Latency = receipt on B − send on A
//!   (one process clock). Also the same-node echo to alice's own socket (the baseline), and the
//!   gossip bytes per message of each node (the nodes' `stats` deltas, plus the TCP bytes of
//!   their federation connections from `ss -ti`, framing and gossipsub control included).
//! - `catchup`: B is stopped (SIGTERM), alice sends `--catchup-messages` (default 10,000) with
//!   `--window` sends in flight, B is started again; time until bob's WebSocket (resumed at
//!   its last cursor, so nothing is missed) has seen every one of them, and the catch-up
//!   pages, changes and bytes B received (B's counters start at zero with the process).
//! - `join`: alice fills a new channel with `--join-messages` (default 100,000), then invites
//!   bob@globex; time until B serves the same newest page (`limit=50`) as A, and until bob has
//!   seen every message (bounded by `--join-full-timeout-s`, 0 skips it).
//!
//! Ends with a summary of the figures against the goals (p99 ≤ 10 ms, catch-up ≤ 1 s, first
//! page ≤ 1 s). Use release builds of both this bench and `confab-node`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, ValueEnum};
use confab_tests::measure::percentile;
use confab_tests::measure::proc_cpu_ms;
use confab_tests::{Client, HistoryQuery, NodeOptions, TestNode, PASSWORD};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use reqwest::header::HeaderValue;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The goals.
const GOAL_P99_MS: f64 = 10.0;
const GOAL_CATCHUP_S: f64 = 1.0;
const GOAL_FIRST_PAGE_S: f64 = 1.0;
/// The history page size a client asks for first.
const FIRST_PAGE: usize = 50;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Phase {
    Latency,
    Catchup,
    Join,
    All,
}

#[derive(Parser, Debug)]
#[command(
    name = "confab-federation-bench",
    about = "Cross-organisation latency, catch-up and join figures for two Confab nodes (127.0.0.1 only)"
)]
struct Args {
    /// The confab-node binary to start (use a release build for real figures).
    #[arg(long)]
    node_bin: Option<PathBuf>,
    /// Phases to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
    phases: Vec<Phase>,
    /// latency: seconds of sending.
    #[arg(long, default_value_t = 20.0)]
    latency_secs: f64,
    /// latency: messages per second alice sends.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// catchup: messages alice sends while B is down.
    #[arg(long, default_value_t = 10_000)]
    catchup_messages: u32,
    /// catchup: give up waiting for B after this many seconds.
    #[arg(long, default_value_t = 300)]
    catchup_timeout_s: u64,
    /// join: messages in the channel before bob is invited.
    #[arg(long, default_value_t = 100_000)]
    join_messages: u32,
    /// join: give up waiting for the first page after this many seconds.
    #[arg(long, default_value_t = 300)]
    join_page_timeout_s: u64,
    /// join: give up waiting for the full history after this many seconds (0: do not wait).
    #[arg(long, default_value_t = 600)]
    join_full_timeout_s: u64,
    /// Characters of every message body (a realistic chat line by default).
    #[arg(long, default_value_t = 80)]
    body_chars: usize,
    /// Sends in flight on one WebSocket for the bulk phases (the node takes 256 at most).
    #[arg(long, default_value_t = 200)]
    window: usize,
    /// latency: seconds without messages first, to measure the background traffic.
    #[arg(long, default_value_t = 5.0)]
    idle_secs: f64,
    /// The nodes' `[federation] anti_entropy_interval_s` (the node's default is 30).
    #[arg(long, default_value_t = 30)]
    anti_entropy_s: u64,
    /// Print the last N log lines of each node at the end (set RUST_LOG for more detail).
    #[arg(long, default_value_t = 0)]
    node_log_lines: usize,
}

// ---------------------------------------------------------------------------------------------
// Nodes and the admin API

/// One organisation: its node and its signed-in admin.
struct Org {
    node: TestNode,
    client: Client,
    /// `user@org`.
    user: String,
}

/// The federation counters of a node (`stats` of `GET /admin/federation`).
type Stats = BTreeMap<String, u64>;

fn stat(stats: &Stats, key: &str) -> u64 {
    stats.get(key).copied().unwrap_or(0)
}

fn delta(after: &Stats, before: &Stats) -> Stats {
    after.iter().map(|(k, v)| (k.clone(), v.saturating_sub(stat(before, k)))).collect()
}

impl Org {
    async fn start(name: &str, user: &str, bin: &Path, config: &Path) -> Result<Org> {
        let node = TestNode::start_with(NodeOptions {
            name: name.to_string(),
            bin: Some(bin.to_path_buf()),
            org_name: name.to_string(),
            extra_args: vec!["--config".into(), config.display().to_string()],
            ..NodeOptions::default()
        })
        .await;
        let client = Client::for_node(&node);
        client
            .register(user, PASSWORD)
            .await
            .map_err(|e| anyhow!("register {user}@{name}: {e}"))?;
        Ok(Org { node, client, user: format!("{user}@{name}") })
    }

    async fn info(&self) -> Result<Value> {
        self.client
            .call(Method::GET, "/admin/federation", None)
            .await
            .map_err(|e| anyhow!("GET /admin/federation: {e}"))
    }

    async fn stats(&self) -> Result<Stats> {
        let info = self.info().await?;
        serde_json::from_value(info["stats"].clone())
            .context("`stats` of GET /admin/federation (is confab-node built with the counters?)")
    }

    /// The federation listen port and the address other nodes dial (`…/p2p/<peer id>`).
    async fn federation_address(&self) -> Result<(u16, String)> {
        let info = self.info().await?;
        let addr = info["listen_addrs"][0]
            .as_str()
            .ok_or_else(|| anyhow!("no federation listen address: {info}"))?;
        let port = addr
            .rsplit('/')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| anyhow!("no TCP port in {addr}"))?;
        let peer = info["peer_id"].as_str().unwrap_or_default();
        Ok((port, format!("{addr}/p2p/{peer}")))
    }

    async fn connected_peers(&self) -> usize {
        let peers: Vec<Value> =
            self.client.call(Method::GET, "/admin/peers", None).await.unwrap_or_default();
        peers.iter().filter(|p| p["connected"] == json!(true)).count()
    }

    fn cpu_ms(&self) -> Option<f64> {
        self.node.pid().and_then(proc_cpu_ms)
    }
}

/// Both admins peer with each other and wait until both see the connection.
async fn peer(a: &Org, b: &Org, names: [&str; 2]) -> Result<()> {
    let (_, a_addr) = a.federation_address().await?;
    let (_, b_addr) = b.federation_address().await?;
    for (from, name, addr) in [(a, names[1], &b_addr), (b, names[0], &a_addr)] {
        let _: Value = from
            .client
            .call(Method::POST, "/admin/peers", Some(json!({"name": name, "address": addr})))
            .await
            .map_err(|e| anyhow!("POST /admin/peers {name}: {e}"))?;
    }
    wait_until("the nodes connected", Duration::from_secs(30), || async {
        a.connected_peers().await == 1 && b.connected_peers().await == 1
    })
    .await
}

/// Polls `check` every 50 ms until it holds, or fails after `timeout`.
async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        if started.elapsed() > timeout {
            bail!("{what}: not reached within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// CPU seconds a node used between two readings, as text.
fn cpu_text(before: Option<f64>, after: Option<f64>) -> String {
    match (before, after) {
        (Some(b), Some(a)) => format!("{:.2} s", (a - b) / 1000.0),
        _ => "n/a".into(),
    }
}

/// Bytes (sent, received) each of the two nodes moved over its established federation TCP
/// connections (loopback), read with `ss -ti`: everything libp2p writes is included (noise,
/// yamux, gossipsub control and heartbeats, pings, catch-up). `ports` are the nodes'
/// federation listen ports; a socket belongs to the node listening on its local port, else
/// (an outgoing connection to the other node's port) to the other node. None without `ss`.
fn wire_bytes(ports: [u16; 2]) -> Option<[(u64, u64); 2]> {
    let out =
        std::process::Command::new("ss").args(["-tinH", "state", "established"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut totals = [(0u64, 0u64); 2];
    let mut owner = None;
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) {
            let socket_ports: Vec<u16> = line
                .split_whitespace()
                .filter_map(|t| t.rsplit_once(':'))
                .filter_map(|(_, p)| p.parse().ok())
                .collect();
            owner = match socket_ports[..] {
                [local, remote, ..] => match (
                    ports.iter().position(|p| *p == local),
                    ports.iter().position(|p| *p == remote),
                ) {
                    (Some(i), _) => Some(i),
                    (None, Some(i)) => Some(1 - i),
                    _ => None,
                },
                _ => None,
            };
        } else if let Some(i) = owner.take() {
            let field = |key: &str| {
                line.split_whitespace()
                    .find_map(|t| t.strip_prefix(key))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            totals[i].0 += field("bytes_sent:");
            totals[i].1 += field("bytes_received:");
        }
    }
    Some(totals)
}

// ---------------------------------------------------------------------------------------------
// WebSockets

type WsSink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, WsMessage>;

/// A bench message seen on a WebSocket (`message.created` with a `fb|…` body).
#[derive(Debug, Clone, Copy)]
struct Delivery {
    phase: u32,
    seq: u32,
    sent_us: u64,
    recv_us: u64,
}

/// The parts of a frame the bench reads; the rest is skipped unparsed.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    cursor: Option<u64>,
    #[serde(borrow)]
    message: Option<FrameMessage<'a>>,
}

#[derive(Deserialize)]
struct FrameMessage<'a> {
    #[serde(borrow, default)]
    body: Option<Cow<'a, str>>,
}

/// One session's WebSocket: a sink, and a reader task that reports bench messages, counts
/// answered sends (acks and errors, which also free a slot of the send window) and keeps the
/// highest event cursor (to resume from).
struct Ws {
    sink: WsSink,
    deliveries: mpsc::UnboundedReceiver<Delivery>,
    window: Arc<Semaphore>,
    answered: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    cursor: Arc<AtomicU64>,
    reader: tokio::task::JoinHandle<()>,
}

impl Ws {
    /// Opens `/api/v1/ws[?cursor=N]` with the client's session.
    async fn connect(
        client: &Client,
        cursor: Option<u64>,
        window: usize,
        t0: Instant,
        who: &'static str,
    ) -> Result<Ws> {
        let base = client.base().replacen("http://", "ws://", 1);
        let url = match cursor {
            Some(c) => format!("{base}/api/v1/ws?cursor={c}"),
            None => format!("{base}/api/v1/ws"),
        };
        let mut request = url.as_str().into_client_request()?;
        if let Some(cookie) = client.cookie_header() {
            request.headers_mut().insert("cookie", cookie);
        }
        request.headers_mut().insert("origin", HeaderValue::from_str(client.base())?);
        let (stream, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(request),
        )
        .await
        .context("WebSocket connect timed out")?
        .with_context(|| format!("WebSocket of {who}"))?;
        let (sink, mut frames) = stream.split();
        let (tx, deliveries) = mpsc::unbounded_channel();
        let window = Arc::new(Semaphore::new(window));
        let answered = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let last_cursor = Arc::new(AtomicU64::new(cursor.unwrap_or(0)));
        let reader = {
            let (window, answered, errors, last_cursor) =
                (window.clone(), answered.clone(), errors.clone(), last_cursor.clone());
            tokio::spawn(async move {
                while let Some(frame) = frames.next().await {
                    let text = match frame {
                        Ok(WsMessage::Text(text)) => text,
                        Ok(WsMessage::Close(_)) | Err(_) => break,
                        Ok(_) => continue,
                    };
                    let recv_us = t0.elapsed().as_micros() as u64;
                    let Ok(frame) = serde_json::from_str::<Frame>(text.as_str()) else {
                        continue;
                    };
                    if let Some(c) = frame.cursor {
                        last_cursor.fetch_max(c, Ordering::Relaxed);
                    }
                    match frame.kind.as_ref() {
                        "message.created" => {
                            if let Some(d) = frame.message.and_then(|m| parse_body(&m.body?)) {
                                let _ = tx.send(Delivery { recv_us, ..d });
                            }
                        }
                        "ack" => {
                            answered.fetch_add(1, Ordering::Relaxed);
                            window.add_permits(1);
                        }
                        "error" => {
                            answered.fetch_add(1, Ordering::Relaxed);
                            window.add_permits(1);
                            if errors.fetch_add(1, Ordering::Relaxed) < 5 {
                                eprintln!("{who}: error frame {text}");
                            }
                        }
                        _ => {}
                    }
                }
            })
        };
        Ok(Ws { sink, deliveries, window, answered, errors, cursor: last_cursor, reader })
    }

    /// Sends one bench message (waiting for a free slot of the send window first).
    async fn send(
        &mut self,
        chat: &str,
        phase: u32,
        seq: u32,
        t0: Instant,
        pad: &str,
    ) -> Result<()> {
        self.window.acquire().await?.forget();
        let sent_us = t0.elapsed().as_micros() as u64;
        let body = format!("fb|{phase}|{seq}|{sent_us}|");
        let body = format!("{body}{}", &pad[..pad.len().saturating_sub(body.len())]);
        let frame = json!({"type": "send", "client_id": format!("{phase}-{seq}"),
                           "chat_id": chat, "body": body, "reply_to": null});
        self.sink.send(WsMessage::text(frame.to_string())).await.context("WebSocket send")
    }

    /// Sends `n` messages as fast as the window allows and waits for all their answers.
    /// Returns the seconds from the first send to the last answer.
    async fn bulk(
        &mut self,
        chat: &str,
        phase: u32,
        n: u32,
        t0: Instant,
        pad: &str,
    ) -> Result<f64> {
        let answered0 = self.answered.load(Ordering::Relaxed);
        let errors0 = self.errors.load(Ordering::Relaxed);
        let started = Instant::now();
        let mut next_report = Instant::now() + Duration::from_secs(10);
        for seq in 0..n {
            self.send(chat, phase, seq, t0, pad).await?;
            if Instant::now() >= next_report {
                next_report += Duration::from_secs(10);
                eprintln!(
                    "  … {seq}/{n} sent ({:.0} msg/s)",
                    f64::from(seq) / started.elapsed().as_secs_f64()
                );
            }
        }
        let want = answered0 + u64::from(n);
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.answered.load(Ordering::Relaxed) < want {
            if Instant::now() > deadline {
                bail!(
                    "only {} of {n} sends answered",
                    self.answered.load(Ordering::Relaxed) - answered0
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let errors = self.errors.load(Ordering::Relaxed) - errors0;
        if errors > 0 {
            bail!("{errors} of {n} sends were refused");
        }
        Ok(started.elapsed().as_secs_f64())
    }

    async fn close(mut self) {
        let _ = self.sink.send(WsMessage::Close(None)).await;
        let _ = self.sink.close().await;
        self.reader.abort();
    }
}

/// `fb|phase|seq|sent_us|padding`.
fn parse_body(body: &str) -> Option<Delivery> {
    let mut parts = body.split('|');
    if parts.next()? != "fb" {
        return None;
    }
    Some(Delivery {
        phase: parts.next()?.parse().ok()?,
        seq: parts.next()?.parse().ok()?,
        sent_us: parts.next()?.parse().ok()?,
        recv_us: 0,
    })
}

/// Counts distinct messages `0..n` of `phase` arriving on `ws` until all are in or `deadline`
/// passes; prints progress every 10 s. Returns the count and when the last one arrived.
async fn collect(ws: &mut Ws, phase: u32, n: u32, deadline: Instant, what: &str) -> (u32, Instant) {
    let mut seen = vec![false; n as usize];
    let mut count = 0u32;
    let mut last = Instant::now();
    let started = Instant::now();
    let mut next_report = started + Duration::from_secs(10);
    while count < n {
        let wait = deadline.min(next_report).saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, ws.deliveries.recv()).await {
            Ok(Some(d)) if d.phase == phase => {
                if let Some(slot) = seen.get_mut(d.seq as usize) {
                    if !*slot {
                        *slot = true;
                        count += 1;
                        last = Instant::now();
                    }
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) if Instant::now() >= deadline => break,
            Err(_) => {
                next_report += Duration::from_secs(10);
                eprintln!("  … {what}: {count}/{n} after {:.0} s", started.elapsed().as_secs_f64());
            }
        }
    }
    (count, last)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

/// Bytes per message, as text.
fn per_msg(bytes: u64, messages: u64) -> String {
    if messages == 0 {
        "n/a".into()
    } else {
        format!("{:.0} B", bytes as f64 / messages as f64)
    }
}

// ---------------------------------------------------------------------------------------------
// The bench

struct Bench {
    args: Args,
    t0: Instant,
    pad: String,
    a: Org,
    b: Org,
    chat: String,
    alice: Ws,
    /// Bob's WebSocket on B (none while B is down).
    bob: Option<Ws>,
    /// Summary lines, printed at the end.
    summary: Vec<String>,
}

impl Bench {
    async fn setup(args: Args) -> Result<(Bench, tempfile::TempDir)> {
        let bin = match &args.node_bin {
            Some(b) => b.clone(),
            None => {
                let sibling = std::env::current_exe()
                    .ok()
                    .and_then(|e| e.parent().map(|p| p.join("confab-node")))
                    .filter(|p| p.is_file());
                match sibling {
                    Some(p) => p,
                    None => confab_tests::find_node_binary().map_err(|e| anyhow!(e))?,
                }
            }
        };
        // The per-session rate limits are raised: one simulated user sends far faster than a
        // person types (the engines, storage and federation are what is measured; everything
        // else is the default).
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("node.toml");
        std::fs::write(
            &config,
            format!(
                "[limits]\nwebsocket_frames_per_s = 1000000\nwebsocket_frames_burst = 1000000\n\
                 requests_per_s_per_user = 1000000\nrequests_burst_per_user = 1000000\n\n\
                 [federation]\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\nanti_entropy_interval_s = {}\n",
                args.anti_entropy_s
            ),
        )?;
        eprintln!(
            "starting two nodes of {} (config {}: per-session rate limits raised, federation on \
             loopback, anti-entropy every {} s)",
            bin.display(),
            config.display(),
            args.anti_entropy_s
        );
        let a = Org::start("acme", "alice", &bin, &config).await?;
        let b = Org::start("globex", "bob", &bin, &config).await?;
        peer(&a, &b, ["acme", "globex"]).await?;
        let chat = a
            .client
            .create_channel("shared", "private")
            .await
            .map_err(|e| anyhow!("create channel: {e}"))?
            .id;
        a.client
            .invite(&chat, &b.user, None)
            .await
            .map_err(|e| anyhow!("invite {}: {e}", b.user))?;
        wait_until("bob sees the shared channel", Duration::from_secs(30), || async {
            b.client.chat(&chat).await.is_ok()
        })
        .await?;
        let t0 = Instant::now();
        let alice = Ws::connect(&a.client, None, args.window, t0, "alice").await?;
        let bob = Ws::connect(&b.client, None, args.window, t0, "bob").await?;
        let pad = "x".repeat(args.body_chars);
        let mut bench =
            Bench { args, t0, pad, a, b, chat, alice, bob: Some(bob), summary: Vec::new() };
        bench.warm_up().await?;
        Ok((bench, dir))
    }

    fn bob(&mut self) -> Result<&mut Ws> {
        self.bob.as_mut().ok_or_else(|| anyhow!("bob has no WebSocket"))
    }

    /// Replaces bob's WebSocket by one resumed from `cursor` on B.
    async fn reconnect_bob(&mut self, cursor: Option<u64>) -> Result<()> {
        if let Some(old) = self.bob.take() {
            old.close().await;
        }
        let ws = Ws::connect(&self.b.client, cursor, self.args.window, self.t0, "bob").await?;
        self.bob = Some(ws);
        Ok(())
    }

    /// Sends until bob receives on B (the gossip mesh has formed), then a few more.
    async fn warm_up(&mut self) -> Result<()> {
        let started = Instant::now();
        let mut seq = 0;
        loop {
            let (chat, t0, pad) = (self.chat.clone(), self.t0, self.pad.clone());
            self.alice.send(&chat, 0, seq, t0, &pad).await?;
            seq += 1;
            let got =
                tokio::time::timeout(Duration::from_millis(200), self.bob()?.deliveries.recv())
                    .await
                    .ok()
                    .flatten();
            if got.is_some() && seq >= 20 {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("warm-up: bob received nothing from alice within 30 s");
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        while self.bob()?.deliveries.try_recv().is_ok() {}
        while self.alice.deliveries.try_recv().is_ok() {}
        eprintln!("warm-up: {seq} messages, gossip path ready");
        Ok(())
    }

    async fn fed_ports(&self) -> Result<[u16; 2]> {
        Ok([self.a.federation_address().await?.0, self.b.federation_address().await?.0])
    }

    /// The background traffic of two peered nodes sharing a channel in which nothing happens.
    async fn idle(&mut self) -> Result<()> {
        let secs = self.args.idle_secs;
        println!("\n== idle: {secs} s without messages");
        let ports = self.fed_ports().await?;
        let (sa0, sb0) = (self.a.stats().await?, self.b.stats().await?);
        let wire0 = wire_bytes(ports);
        let (ca0, cb0) = (self.a.cpu_ms(), self.b.cpu_ms());
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        let (ca1, cb1) = (self.a.cpu_ms(), self.b.cpu_ms());
        let (sa, sb) = (delta(&self.a.stats().await?, &sa0), delta(&self.b.stats().await?, &sb0));
        let wire = match (wire0, wire_bytes(ports)) {
            (Some(w0), Some(w1)) => format!(
                "A sent {} B, B sent {} B",
                w1[0].0.saturating_sub(w0[0].0),
                w1[1].0.saturating_sub(w0[1].0)
            ),
            _ => "n/a".into(),
        };
        let line = format!(
            "idle: {secs} s without messages: catch-up pages received by A {} (changes {}), by B {} (changes {}); gossip published A {}, B {}; federation TCP {wire}; CPU A {}, B {}",
            stat(&sa, "catchup_received_pages"),
            stat(&sa, "catchup_received_changes"),
            stat(&sb, "catchup_received_pages"),
            stat(&sb, "catchup_received_changes"),
            stat(&sa, "gossip_published_messages"),
            stat(&sb, "gossip_published_messages"),
            cpu_text(ca0, ca1),
            cpu_text(cb0, cb1)
        );
        println!("{line}");
        self.summary.push(line);
        Ok(())
    }

    async fn latency(&mut self) -> Result<()> {
        let n = (self.args.latency_secs * self.args.rate).round().max(1.0) as u32;
        println!(
            "\n== latency: alice@acme (A) -> bob@globex (B), {} msg/s for {} s ({n} msgs, {} chars each)",
            self.args.rate, self.args.latency_secs, self.args.body_chars
        );
        let ports = self.fed_ports().await?;
        let (sa0, sb0) = (self.a.stats().await?, self.b.stats().await?);
        let wire0 = wire_bytes(ports);
        let (ca0, cb0) = (self.a.cpu_ms(), self.b.cpu_ms());
        let interval = Duration::from_secs_f64(1.0 / self.args.rate);
        let start = Instant::now() + Duration::from_millis(50);
        let (chat, t0, pad) = (self.chat.clone(), self.t0, self.pad.clone());
        for seq in 0..n {
            tokio::time::sleep_until((start + interval * seq).into()).await;
            self.alice.send(&chat, 1, seq, t0, &pad).await?;
        }
        let send_secs = start.elapsed().as_secs_f64();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut remote = Vec::with_capacity(n as usize);
        let mut seen = vec![false; n as usize];
        let mut duplicates = 0;
        while remote.len() < n as usize {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.bob()?.deliveries.recv()).await {
                Ok(Some(d)) if d.phase == 1 => match seen.get_mut(d.seq as usize) {
                    Some(slot) if !*slot => {
                        *slot = true;
                        remote.push(d.recv_us.saturating_sub(d.sent_us));
                    }
                    _ => duplicates += 1,
                },
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let mut echo = Vec::with_capacity(n as usize);
        while let Ok(d) = self.alice.deliveries.try_recv() {
            if d.phase == 1 {
                echo.push(d.recv_us.saturating_sub(d.sent_us));
            }
        }
        // Let in-flight gossip and any anti-entropy round settle before reading counters.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (ca1, cb1) = (self.a.cpu_ms(), self.b.cpu_ms());
        let (sa, sb) = (delta(&self.a.stats().await?, &sa0), delta(&self.b.stats().await?, &sb0));
        let wire = match (wire0, wire_bytes(ports)) {
            (Some(w0), Some(w1)) => Some(
                [0, 1].map(|i| (w1[i].0.saturating_sub(w0[i].0), w1[i].1.saturating_sub(w0[i].1))),
            ),
            _ => None,
        };
        remote.sort_unstable();
        echo.sort_unstable();
        let lost = u64::from(n) - remote.len() as u64;
        let m = u64::from(n);
        let p99 = percentile(&remote, 0.99);
        let lines = vec![
            format!(
                "latency: {n} msgs sent in {send_secs:.2} s ({:.1} msg/s); delivered to bob on B {}/{n}, lost {lost}, duplicates {duplicates}",
                f64::from(n) / send_secs,
                remote.len()
            ),
            format!(
                "latency: cross-org A->B p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms (goal p99 <= {GOAL_P99_MS} ms: {})",
                percentile(&remote, 0.50),
                percentile(&remote, 0.90),
                p99,
                remote.last().map_or(f64::NAN, |&v| v as f64 / 1000.0),
                verdict(p99 <= GOAL_P99_MS && lost == 0)
            ),
            format!(
                "latency: same-node echo A->alice (baseline) p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                percentile(&echo, 0.50),
                percentile(&echo, 0.99),
                echo.last().map_or(f64::NAN, |&v| v as f64 / 1000.0)
            ),
            format!(
                "latency: gossip payload per message: A published {} ({} msgs), received {} ({} msgs); B published {} ({} msgs), received {} ({} msgs)",
                per_msg(stat(&sa, "gossip_published_bytes"), m),
                stat(&sa, "gossip_published_messages"),
                per_msg(stat(&sa, "gossip_received_bytes"), m),
                stat(&sa, "gossip_received_messages"),
                per_msg(stat(&sb, "gossip_published_bytes"), m),
                stat(&sb, "gossip_published_messages"),
                per_msg(stat(&sb, "gossip_received_bytes"), m),
                stat(&sb, "gossip_received_messages"),
            ),
            match wire {
                Some(w) => format!(
                    "latency: federation TCP bytes per message (all libp2p traffic): A sent {}, received {}; B sent {}, received {}",
                    per_msg(w[0].0, m),
                    per_msg(w[0].1, m),
                    per_msg(w[1].0, m),
                    per_msg(w[1].1, m)
                ),
                None => "latency: federation TCP bytes: n/a (no `ss`)".into(),
            },
            format!(
                "latency: catch-up during the phase: B received {} pages / {} changes, A received {} pages / {} changes; CPU A {}, B {}",
                stat(&sb, "catchup_received_pages"),
                stat(&sb, "catchup_received_changes"),
                stat(&sa, "catchup_received_pages"),
                stat(&sa, "catchup_received_changes"),
                cpu_text(ca0, ca1),
                cpu_text(cb0, cb1)
            ),
        ];
        for l in &lines {
            println!("{l}");
        }
        self.summary.extend(lines);
        Ok(())
    }

    async fn catchup(&mut self) -> Result<()> {
        let n = self.args.catchup_messages;
        println!("\n== catch-up: B stopped, alice sends {n} msgs on A, B restarted");
        let cursor = self.bob()?.cursor.load(Ordering::Relaxed);
        if let Some(bob) = self.bob.take() {
            bob.close().await;
        }
        let status = self.b.node.terminate().await;
        eprintln!("B stopped ({status}); bob's last cursor {cursor}");
        let sa0 = self.a.stats().await?;
        let (chat, t0, pad) = (self.chat.clone(), self.t0, self.pad.clone());
        let secs = self.alice.bulk(&chat, 2, n, t0, &pad).await?;
        println!(
            "catch-up: A took {n} msgs in {secs:.2} s ({:.0} msg/s, window {})",
            f64::from(n) / secs,
            self.args.window
        );
        while self.alice.deliveries.try_recv().is_ok() {}
        let newest_on_a = self
            .a
            .client
            .history(&chat, &HistoryQuery::latest(1))
            .await
            .map_err(|e| anyhow!("A history: {e}"))?
            .messages
            .last()
            .map(|m| m.id.clone())
            .ok_or_else(|| anyhow!("A's channel is empty"))?;

        let restart = Instant::now();
        self.b.node.start_again_same_port().await;
        let listening = restart.elapsed().as_secs_f64();
        let cb0 = self.b.cpu_ms();
        let ca0 = self.a.cpu_ms();
        self.reconnect_bob(Some(cursor)).await?;
        // Meanwhile: when does B's newest message match A's (the catch-up order puts the
        // newest bucket first)?
        let mut newest = {
            let client = self.b.client.clone();
            let chat = chat.clone();
            tokio::spawn(async move {
                loop {
                    if let Ok(page) = client.history(&chat, &HistoryQuery::latest(1)).await {
                        if page.messages.last().map(|m| &m.id) == Some(&newest_on_a) {
                            return restart.elapsed().as_secs_f64();
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let deadline = restart + Duration::from_secs(self.args.catchup_timeout_s);
        let (count, last) = collect(self.bob()?, 2, n, deadline, "catch-up").await;
        let total = last.duration_since(restart).as_secs_f64();
        let newest_secs = match tokio::time::timeout(Duration::from_secs(1), &mut newest).await {
            Ok(Ok(s)) => format!("{s:.3} s"),
            _ => "not reached".into(),
        };
        newest.abort();
        let (ca1, cb1) = (self.a.cpu_ms(), self.b.cpu_ms());
        let sb = self.b.stats().await?;
        let sa = delta(&self.a.stats().await?, &sa0);
        let wire = wire_bytes(self.fed_ports().await?);
        let held = self
            .b
            .client
            .all_messages(&chat)
            .await
            .map(|m| m.iter().filter(|m| m.body.starts_with("fb|2|")).count())
            .map_err(|e| anyhow!("B history: {e}"))?;
        let lines = vec![
            format!(
                "catch-up: B restarted (listening after {listening:.3} s); bob saw {count}/{n} missed msgs {:.3} s after the restart ({:.3} s after listening) (goal <= {GOAL_CATCHUP_S} s: {}); B's history holds {held}/{n}",
                total,
                total - listening,
                verdict(count == n && total <= GOAL_CATCHUP_S)
            ),
            format!("catch-up: B's newest message matched A's after {newest_secs}"),
            format!(
                "catch-up: B received {} pages, {} changes, {} payload bytes ({} per msg); A served {} pages, {} changes, {} bytes",
                stat(&sb, "catchup_received_pages"),
                stat(&sb, "catchup_received_changes"),
                stat(&sb, "catchup_received_bytes"),
                per_msg(stat(&sb, "catchup_received_bytes"), u64::from(n)),
                stat(&sa, "catchup_served_pages"),
                stat(&sa, "catchup_served_changes"),
                stat(&sa, "catchup_served_bytes"),
            ),
            format!(
                "catch-up: federation TCP bytes since B's restart: {}; CPU until done A {}, B {}",
                match wire {
                    Some(w) => format!("B received {}, sent {}", w[1].1, w[1].0),
                    None => "n/a".into(),
                },
                cpu_text(ca0, ca1),
                cpu_text(cb0, cb1)
            ),
        ];
        for l in &lines {
            println!("{l}");
        }
        self.summary.extend(lines);
        Ok(())
    }

    async fn join(&mut self) -> Result<()> {
        let n = self.args.join_messages;
        println!("\n== join: a channel of {n} msgs on A, then bob@globex is invited");
        let chat = self
            .a
            .client
            .create_channel("archive", "private")
            .await
            .map_err(|e| anyhow!("create channel: {e}"))?
            .id;
        let (t0, pad) = (self.t0, self.pad.clone());
        let secs = self.alice.bulk(&chat, 3, n, t0, &pad).await?;
        println!(
            "join: A took {n} msgs in {secs:.1} s ({:.0} msg/s, window {})",
            f64::from(n) / secs,
            self.args.window
        );
        while self.alice.deliveries.try_recv().is_ok() {}
        let newest: Vec<String> = self
            .a
            .client
            .history(&chat, &HistoryQuery::latest(FIRST_PAGE as u32))
            .await
            .map_err(|e| anyhow!("A history: {e}"))?
            .messages
            .into_iter()
            .map(|m| m.id)
            .collect();
        if newest.len() != FIRST_PAGE.min(n as usize) {
            bail!("A's newest page has {} messages", newest.len());
        }
        let cursor = self.bob()?.cursor.load(Ordering::Relaxed);
        let (sa0, sb0) = (self.a.stats().await?, self.b.stats().await?);
        let (ca0, cb0) = (self.a.cpu_ms(), self.b.cpu_ms());

        let invited = Instant::now();
        self.a
            .client
            .invite(&chat, &self.b.user, None)
            .await
            .map_err(|e| anyhow!("invite bob: {e}"))?;
        // Poll B as bob's client would: the channel, then its newest page.
        let mut visible = None;
        let mut first_page = None;
        let mut at_first_page = None;
        let page_deadline = invited + Duration::from_secs(self.args.join_page_timeout_s);
        while first_page.is_none() && Instant::now() < page_deadline {
            // Refused (not a member yet) until the control document has arrived.
            let page = self.b.client.history(&chat, &HistoryQuery::latest(FIRST_PAGE as u32)).await;
            if let Ok(page) = page {
                if visible.is_none() {
                    visible = Some(invited.elapsed().as_secs_f64());
                    // Resume bob's socket from before the invite: the session now knows the
                    // channel, and the replay covers everything since.
                    self.reconnect_bob(Some(cursor)).await?;
                }
                let ids = page.messages.iter().map(|m| &m.id);
                if ids.eq(newest.iter()) {
                    first_page = Some(invited.elapsed().as_secs_f64());
                    at_first_page = Some(self.b.stats().await?);
                }
            }
            if first_page.is_none() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let fmt_s = |s: Option<f64>| s.map_or("not reached".to_string(), |s| format!("{s:.3} s"));
        let fetched_by_first_page = at_first_page.map_or("n/a".to_string(), |s| {
            let s = delta(&s, &sb0);
            format!(
                "{} pages / {} changes / {} bytes",
                stat(&s, "catchup_received_pages"),
                stat(&s, "catchup_received_changes"),
                stat(&s, "catchup_received_bytes")
            )
        });
        let mut lines = vec![
            format!(
                "join: A built the channel at {:.0} msg/s; after the invite B showed the channel after {}, served the newest {FIRST_PAGE} (same as A) after {} (goal <= {GOAL_FIRST_PAGE_S} s: {})",
                f64::from(n) / secs,
                fmt_s(visible),
                fmt_s(first_page),
                verdict(first_page.is_some_and(|s| s <= GOAL_FIRST_PAGE_S))
            ),
            format!("join: catch-up B had received when the first page was ready: {fetched_by_first_page}"),
        ];
        if self.args.join_full_timeout_s > 0 && visible.is_some() {
            let deadline = invited + Duration::from_secs(self.args.join_full_timeout_s);
            let (count, last) = collect(self.bob()?, 3, n, deadline, "join history").await;
            let full = last.duration_since(invited).as_secs_f64();
            let (ca1, cb1) = (self.a.cpu_ms(), self.b.cpu_ms());
            let (sa, sb) =
                (delta(&self.a.stats().await?, &sa0), delta(&self.b.stats().await?, &sb0));
            let held = if count == n {
                self.b
                    .client
                    .all_messages(&chat)
                    .await
                    .map(|m| m.len().to_string())
                    .unwrap_or_else(|e| format!("? ({e})"))
            } else {
                "not checked".into()
            };
            lines.push(format!(
                "join: bob saw {count}/{n} msgs, the last {full:.1} s after the invite ({:.0} msg/s); B's history holds {held}; timeout {} s",
                f64::from(count) / full,
                self.args.join_full_timeout_s
            ));
            lines.push(format!(
                "join: B received {} pages, {} changes, {} payload bytes ({} per msg); A served {} pages; CPU A {}, B {}",
                stat(&sb, "catchup_received_pages"),
                stat(&sb, "catchup_received_changes"),
                stat(&sb, "catchup_received_bytes"),
                per_msg(stat(&sb, "catchup_received_bytes"), u64::from(n)),
                stat(&sa, "catchup_served_pages"),
                cpu_text(ca0, ca1),
                cpu_text(cb0, cb1)
            ));
        }
        for l in &lines {
            println!("{l}");
        }
        self.summary.extend(lines);
        Ok(())
    }
}

async fn run(args: Args) -> Result<()> {
    if !(args.rate > 0.0 && args.latency_secs > 0.0) || args.window == 0 {
        bail!("--rate, --latency-secs and --window must be positive");
    }
    let all = args.phases.contains(&Phase::All);
    let want = |p: Phase| all || args.phases.contains(&p);
    let (latency, catchup, join) = (want(Phase::Latency), want(Phase::Catchup), want(Phase::Join));
    let (mut bench, _config_dir) = Bench::setup(args).await?;
    println!(
        "nodes: A {} (acme, pid {:?}), B {} (globex, pid {:?})",
        bench.a.client.base(),
        bench.a.node.pid(),
        bench.b.client.base(),
        bench.b.node.pid()
    );
    if latency {
        if bench.args.idle_secs > 0.0 {
            bench.idle().await?;
        }
        bench.latency().await?;
    }
    if catchup {
        bench.catchup().await?;
    }
    if join {
        bench.join().await?;
    }
    println!("\n==================== confab-federation-bench summary ====================");
    println!(
        "goals: cross-org p99 <= {GOAL_P99_MS} ms on loopback, catch-up <= {GOAL_CATCHUP_S} s, first page <= {GOAL_FIRST_PAGE_S} s"
    );
    for line in &bench.summary {
        println!("{line}");
    }
    println!("==========================================================================");
    let log_lines = bench.args.node_log_lines;
    let Bench { a, b, alice, bob, .. } = bench;
    alice.close().await;
    if let Some(bob) = bob {
        bob.close().await;
    }
    for mut org in [a, b] {
        let status = org.node.terminate().await;
        eprintln!("{} exited: {status}", org.user);
        if log_lines > 0 {
            eprintln!("----- log of {} -----\n{}", org.user, org.node.log_tail(log_lines));
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(run(args))
}
