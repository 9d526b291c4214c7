//! confab-presence-bench: what presence costs a node: CPU and frames sent for `--users` online
//! users in `--channels` channels, in steady state and during a reconnect storm of all of them.
//!
//! Starts a `confab-node` (the `confab-node` binary next to this one, or `--node-bin`), registers
//! the users, creates the channels and puts each user in `--channels-per-user` of them (evenly
//! spread), then opens one WebSocket per user that heartbeats every 5 s like the web client.
//! After everyone is online and the initial presence wave has settled it measures:
//! - **steady state** (`--window-s`): node CPU (ms per second, from `/proc/<pid>/stat`), presence
//!   frames the node sent (counted by the clients), and how many of them said `offline`;
//! - **reconnect storm**: every WebSocket is closed and reopened at once; the same figures over
//!   the same window from the storm's start. A debounced node sends no `offline` and (almost) no
//!   presence frames at all, since nobody's status changed.
//!
//! Prints node RSS too. Run it in release: `cargo run --release -p confab-tests --bin
//! confab-presence-bench`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use clap::Parser;
use confab_tests::measure::proc_cpu_ms;
use confab_tests::{Client, NodeOptions, TestNode};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser, Debug)]
#[command(name = "confab-presence-bench", about = "Presence cost on one node")]
struct Args {
    #[arg(long, default_value_t = 1000)]
    users: usize,
    #[arg(long, default_value_t = 100)]
    channels: usize,
    #[arg(long, default_value_t = 5)]
    channels_per_user: usize,
    /// Length of each measured window.
    #[arg(long, default_value_t = 30)]
    window_s: u64,
    /// Node binary (default: `confab-node` next to this program, or the workspace build).
    #[arg(long)]
    node_bin: Option<std::path::PathBuf>,
}

const HEARTBEAT: Duration = Duration::from_secs(5);
const PASSWORD: &str = "bench-password-123";

#[derive(Default)]
struct Counters {
    frames: AtomicU64,
    presence: AtomicU64,
    offline: AtomicU64,
    connected: AtomicU64,
    errors: AtomicU64,
}

fn rss_mib(pid: u32) -> Option<f64> {
    confab_tests::measure::proc_status_kib(pid, "VmRSS:").map(|kib| kib as f64 / 1024.0)
}

/// One user's device: connect, heartbeat, count frames; reconnect whenever `generation` moves.
async fn device(
    base: String,
    cookie: HeaderValue,
    counters: Arc<Counters>,
    mut generation: watch::Receiver<u64>,
    jitter: Duration,
) {
    let ws_url = format!("{}/api/v1/ws", base.replacen("http://", "ws://", 1));
    loop {
        let Ok(mut request) = ws_url.as_str().into_client_request() else {
            return;
        };
        request.headers_mut().insert("cookie", cookie.clone());
        if let Ok(origin) = HeaderValue::from_str(&base) {
            request.headers_mut().insert("origin", origin);
        }
        let stream = match tokio_tungstenite::connect_async(request).await {
            Ok((stream, _)) => stream,
            Err(_) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        counters.connected.fetch_add(1, Ordering::Relaxed);
        let (mut sink, mut source) = stream.split();
        let mut heartbeat =
            tokio::time::interval_at(tokio::time::Instant::now() + jitter, HEARTBEAT);
        let reconnect = loop {
            tokio::select! {
                _ = heartbeat.tick() => {
                    let frame = r#"{"type":"heartbeat","idle":false}"#;
                    if sink.send(Message::text(frame)).await.is_err() {
                        break true;
                    }
                }
                changed = generation.changed() => {
                    if changed.is_err() {
                        break false;
                    }
                    break true;
                }
                frame = source.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        counters.frames.fetch_add(1, Ordering::Relaxed);
                        if text.contains(r#""type":"presence""#) {
                            counters.presence.fetch_add(1, Ordering::Relaxed);
                            if text.contains(r#""status":"offline""#) {
                                counters.offline.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => break true,
                }
            }
        };
        counters.connected.fetch_sub(1, Ordering::Relaxed);
        let _ = sink.close().await;
        if !reconnect {
            return;
        }
    }
}

struct Snapshot {
    at: Instant,
    cpu_ms: f64,
    frames: u64,
    presence: u64,
    offline: u64,
}

fn snapshot(pid: u32, counters: &Counters) -> Snapshot {
    Snapshot {
        at: Instant::now(),
        cpu_ms: proc_cpu_ms(pid).unwrap_or(f64::NAN),
        frames: counters.frames.load(Ordering::Relaxed),
        presence: counters.presence.load(Ordering::Relaxed),
        offline: counters.offline.load(Ordering::Relaxed),
    }
}

fn report(label: &str, users: usize, from: &Snapshot, to: &Snapshot, pid: u32) {
    let seconds = (to.at - from.at).as_secs_f64();
    let cpu = to.cpu_ms - from.cpu_ms;
    let heartbeats = users as f64 * seconds / HEARTBEAT.as_secs_f64();
    println!(
        "{label:<16} window {seconds:5.1} s  node CPU {:7.1} ms/s ({:5.2}% of one core)  \
         CPU per heartbeat {:6.1} µs  frames sent {:8} ({:8.1}/s)  presence frames {:7}  \
         offline frames {:5}  RSS {:6.1} MiB",
        cpu / seconds,
        cpu / seconds / 10.0,
        cpu * 1000.0 / heartbeats,
        to.frames - from.frames,
        (to.frames - from.frames) as f64 / seconds,
        to.presence - from.presence,
        to.offline - from.offline,
        rss_mib(pid).unwrap_or(f64::NAN),
    );
}

async fn run(args: Args) -> Result<()> {
    if args.users < 2 || args.channels == 0 || args.channels_per_user == 0 {
        bail!("need at least 2 users, 1 channel and 1 channel per user");
    }
    let bin = match &args.node_bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("confab-node")))
            .filter(|path| path.is_file())
            .map_or_else(|| confab_tests::find_node_binary().map_err(|e| anyhow!(e)), Ok)?,
    };
    // Setting up 1,000 accounts and 5,000 joins goes faster than the default per-user limits.
    let config =
        std::env::temp_dir().join(format!("confab-presence-bench-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        "[limits]\nrequests_per_s_per_user = 1000000\nrequests_burst_per_user = 1000000\n\
         password_hashes_concurrent_max = 2\n",
    )?;
    let node = TestNode::start_with(NodeOptions {
        name: "presence-bench".into(),
        bin: Some(bin),
        extra_args: vec!["--config".into(), config.display().to_string()],
        ..NodeOptions::default()
    })
    .await;
    let base = node.base_url();
    let pid = node.pid().ok_or_else(|| anyhow!("node has no pid"))?;
    eprintln!("node {base} pid {pid}");

    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(8));
    let mut registrations = Vec::new();
    for n in 0..args.users {
        let base = base.clone();
        let gate = gate.clone();
        registrations.push(tokio::spawn(async move {
            let _permit = gate.acquire().await;
            let client = Client::new(&base);
            client
                .register(&format!("p{n}"), PASSWORD)
                .await
                .map_err(|e| anyhow!("register p{n}: {e}"))?;
            Ok::<_, anyhow::Error>(client)
        }));
    }
    let mut clients = Vec::with_capacity(args.users);
    for registration in registrations {
        clients.push(registration.await??);
    }
    eprintln!("registered {} users in {:.1} s", args.users, started.elapsed().as_secs_f64());

    let mut channels = Vec::with_capacity(args.channels);
    for c in 0..args.channels {
        let chat = clients[0]
            .create_channel(&format!("room-{c}"), "public")
            .await
            .map_err(|e| anyhow!("create channel: {e}"))?;
        channels.push(chat.id);
    }
    let mut joins = Vec::new();
    for (n, client) in clients.iter().enumerate() {
        for k in 0..args.channels_per_user {
            let chat = channels[(n * args.channels_per_user + k) % args.channels].clone();
            if n == 0 {
                continue;
            }
            let client = client.clone();
            let gate = gate.clone();
            joins.push(tokio::spawn(async move {
                let _permit = gate.acquire().await;
                client.join(&chat).await.map_err(|e| anyhow!("join: {e}"))
            }));
        }
    }
    for join in joins {
        join.await??;
    }
    eprintln!(
        "{} channels, {} memberships each; setup took {:.1} s",
        args.channels,
        args.channels_per_user,
        started.elapsed().as_secs_f64()
    );

    let counters = Arc::new(Counters::default());
    let (generation_sender, generation) = watch::channel(0u64);
    let mut devices = Vec::new();
    for (n, client) in clients.iter().enumerate() {
        let cookie =
            client.cookie_header().ok_or_else(|| anyhow!("user {n} has no session cookie"))?;
        let jitter = Duration::from_millis((n as u64 * 4_999) / args.users as u64);
        devices.push(tokio::spawn(device(
            base.clone(),
            cookie,
            counters.clone(),
            generation.clone(),
            jitter,
        )));
    }
    while counters.connected.load(Ordering::Relaxed) < args.users as u64 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("all {} online; letting the first presence wave settle", args.users);
    tokio::time::sleep(Duration::from_secs(10)).await;

    let window = Duration::from_secs(args.window_s);
    let before = snapshot(pid, &counters);
    tokio::time::sleep(window).await;
    let steady = snapshot(pid, &counters);
    println!(
        "presence bench: {} users online, {} channels, {} channels per user (~{} members per channel), heartbeat every {} s",
        args.users,
        args.channels,
        args.channels_per_user,
        args.users * args.channels_per_user / args.channels,
        HEARTBEAT.as_secs()
    );
    report("steady state", args.users, &before, &steady, pid);

    // Storm: everyone drops their socket and reconnects at once.
    let storm_start = snapshot(pid, &counters);
    generation_sender.send_modify(|g| *g += 1);
    let reconnect_started = Instant::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    while counters.connected.load(Ordering::Relaxed) < args.users as u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reconnected_in = reconnect_started.elapsed();
    let rest = window.saturating_sub(storm_start.at.elapsed());
    tokio::time::sleep(rest).await;
    let storm_end = snapshot(pid, &counters);
    report("reconnect storm", args.users, &storm_start, &storm_end, pid);
    println!(
        "reconnect storm: all {} sockets back in {:.0} ms; connect errors {}",
        args.users,
        reconnected_in.as_secs_f64() * 1000.0,
        counters.errors.load(Ordering::Relaxed)
    );

    drop(generation_sender);
    for device in devices {
        let _ = tokio::time::timeout(Duration::from_secs(5), device).await;
    }
    drop(node);
    let _ = std::fs::remove_file(&config);
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(run(args))
}
