//! `confab-relay-bench`: starts a relay in this process (real sled on disk, 127.0.0.1:0) and
//! measures durable enqueue throughput and latency (each answer comes after the flush), then
//! fetch + ack throughput and latency over the HTTP poll, and the bytes of overhead per envelope
//! (sealing, the enqueue request on the wire, the stored record). Prints the figures.
//!
//! `cargo run --release -p confab-relay --bin confab-relay-bench -- --help`

use anyhow::{ensure, Context};
use clap::Parser;
use confab_protocol::relay::{
    b64_decode, b64_encode, seal, x25519_public, CapabilityId, CapabilityToken, ChallengePurpose,
    DeviceKey, EnqueueFields, EnqueueRequest, EnvelopeId, QueueId, Urgency,
};
use confab_protocol::OrgKey;
use confab_relay::push::now_ms;
use confab_relay::Config;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Benchmark of one confab relay: durable enqueue, fetch + ack")]
struct Args {
    /// Envelopes to enqueue in total.
    #[arg(long, default_value_t = 20_000)]
    envelopes: usize,
    /// Device queues they are spread over.
    #[arg(long, default_value_t = 20)]
    queues: usize,
    /// Concurrent enqueuing clients.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Plaintext bytes per envelope.
    #[arg(long, default_value_t = 256)]
    payload_bytes: usize,
    /// Envelopes per fetch.
    #[arg(long, default_value_t = 100)]
    fetch_batch: usize,
    /// Acknowledge after sled's flush only, without the extra fsync of its data file.
    #[arg(long)]
    no_fsync: bool,
}

fn random<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
    Ok(bytes)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Device {
    key: DeviceKey,
    queue: QueueId,
}

async fn post(http: &reqwest::Client, url: String, body: &Value) -> anyhow::Result<(u16, Value)> {
    let response = http.post(url).json(body).send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

async fn challenge(http: &reqwest::Client, base: &str) -> anyhow::Result<[u8; 32]> {
    let (status, body) = post(http, format!("{base}/v1/challenges"), &json!({})).await?;
    ensure!(status == 201, "challenge: {status} {body}");
    let bytes = b64_decode(body["challenge"].as_str().context("challenge")?).context("b64")?;
    bytes.try_into().map_err(|_| anyhow::anyhow!("challenge length"))
}

fn dir_size(path: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            let p = entry.path();
            total += if p.is_dir() {
                dir_size(&p)
            } else {
                entry.metadata().map(|m| m.len()).unwrap_or(0)
            };
        }
    }
    total
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.queues > 0 && args.concurrency > 0, "queues and concurrency must be > 0");
    let dir = std::env::temp_dir().join(format!("confab-relay-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = Config { data_dir: dir.join("data"), ..Config::default() };
    config.fsync = !args.no_fsync;
    config.limits.enqueue_rate_per_s = 1e9;
    config.limits.enqueue_burst = 1e9;
    config.limits.register_burst = 1e6;
    config.limits.challenge_burst = 1e9;
    config.limits.challenge_rate_per_s = 1e9;
    config.limits.queue_envelopes_max = (args.envelopes / args.queues + 1) as u64 * 2;
    config.limits.queue_bytes_max = u64::MAX / 2;
    config.limits.fetch_envelopes_max = args.fetch_batch.max(1);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(confab_relay::run(listener, config, async move {
        let _ = stop_rx.await;
    }));
    let http = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency * 2).build()?;

    // Devices.
    let mut devices = Vec::new();
    for _ in 0..args.queues {
        let key = DeviceKey::from_seed(random()?);
        let c = challenge(&http, &base).await?;
        let sig = key.answer(ChallengePurpose::Register, &c, None);
        let (status, body) = post(
            &http,
            format!("{base}/v1/queues"),
            &json!({ "device_key": key.public(),
                     "auth": { "challenge": b64_encode(&c), "signature": b64_encode(&sig.0) } }),
        )
        .await?;
        ensure!(status == 201, "register: {status} {body}");
        let queue: QueueId = body["queue"].as_str().context("queue")?.parse()?;
        devices.push(Device { key, queue });
    }

    // Requests, built (sealed and signed) before the clock starts.
    let org = OrgKey::from_seed(random()?);
    let caps: Vec<CapabilityToken> = devices
        .iter()
        .map(|d| -> anyhow::Result<CapabilityToken> {
            Ok(CapabilityToken::issue(
                &d.key,
                d.queue,
                CapabilityId::from_bytes(random()?),
                org.id(),
                now_ms() + 3_600_000,
            ))
        })
        .collect::<Result<_, _>>()?;
    let recipient = x25519_public(random()?);
    let plaintext = vec![b'x'; args.payload_bytes];
    let mut requests = Vec::with_capacity(args.envelopes);
    for i in 0..args.envelopes {
        let d = i % args.queues;
        let sealed = seal(&recipient, &plaintext, random()?)
            .map_err(|e| anyhow::anyhow!("seal: {e}"))?
            .encode();
        let request = EnqueueRequest::sign(
            &org,
            EnqueueFields {
                queue: devices[d].queue,
                envelope_id: EnvelopeId::from_bytes(random()?),
                sent_ms: now_ms(),
                ttl_s: 3600,
                urgency: Urgency::Normal,
                topic: None,
                sealed,
                capability: caps[d].clone(),
            },
        );
        requests.push(serde_json::to_vec(&request)?);
    }
    let wire_bytes: usize = requests.iter().map(Vec::len).sum();
    let size_before = dir_size(&dir);

    // Phase 1: durable enqueue.
    let per_worker = requests.len().div_ceil(args.concurrency);
    let mut chunks: Vec<Vec<(QueueId, Vec<u8>)>> = Vec::new();
    let mut all: Vec<(QueueId, Vec<u8>)> = requests
        .into_iter()
        .enumerate()
        .map(|(i, r)| (devices[i % args.queues].queue, r))
        .collect();
    while !all.is_empty() {
        let rest = all.split_off(per_worker.min(all.len()));
        chunks.push(std::mem::replace(&mut all, rest));
    }
    let base = Arc::new(base);
    let started = Instant::now();
    let mut workers = Vec::new();
    for chunk in chunks {
        let http = http.clone();
        let base = base.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(chunk.len());
            for (queue, body) in chunk {
                let t = Instant::now();
                let response = http
                    .post(format!("{base}/v1/queues/{queue}/envelopes"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                let status = response.status().as_u16();
                let _ = response.bytes().await?;
                anyhow::ensure!(status == 201, "enqueue answered {status}");
                latencies.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut enqueue_latencies = Vec::new();
    for worker in workers {
        enqueue_latencies.extend(worker.await??);
    }
    let enqueue_elapsed = started.elapsed();
    enqueue_latencies.sort();
    let size_after = dir_size(&dir);

    // Phase 2: fetch + ack, one poller per device, each call acknowledging the previous batch.
    let started = Instant::now();
    let mut pollers = Vec::new();
    for device in devices {
        let http = http.clone();
        let base = base.clone();
        pollers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut received = 0usize;
            let mut ack: Vec<EnvelopeId> = Vec::new();
            let mut next = challenge(&http, &base).await?;
            loop {
                let sig = device
                    .key
                    .answer(ChallengePurpose::Fetch, &next, Some(device.queue));
                let t = Instant::now();
                let (status, body) = post(
                    &http,
                    format!("{base}/v1/queues/{}/fetch", device.queue),
                    &json!({ "auth": { "challenge": b64_encode(&next), "signature": b64_encode(&sig.0) },
                             "ack": ack }),
                )
                .await?;
                latencies.push(t.elapsed());
                anyhow::ensure!(status == 200, "fetch answered {status}: {body}");
                let envelopes = body["envelopes"].as_array().context("envelopes")?;
                ack = envelopes
                    .iter()
                    .filter_map(|e| e["envelope_id"].as_str()?.parse().ok())
                    .collect();
                received += ack.len();
                next = b64_decode(body["next_challenge"].as_str().context("next")?)
                    .context("b64")?
                    .try_into()
                    .map_err(|_| anyhow::anyhow!("challenge length"))?;
                if ack.is_empty() {
                    break;
                }
            }
            Ok::<_, anyhow::Error>((received, latencies))
        }));
    }
    let mut fetch_latencies = Vec::new();
    let mut received = 0;
    for poller in pollers {
        let (n, l) = poller.await??;
        received += n;
        fetch_latencies.extend(l);
    }
    let fetch_elapsed = started.elapsed();
    fetch_latencies.sort();
    ensure!(received == args.envelopes, "fetched {received} of {} envelopes", args.envelopes);
    let metrics = http.get(format!("{base}/metrics")).send().await?.text().await?;
    let metric = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    };
    ensure!(metric("confab_relay_queue_depth") == 0, "queue not empty at the end");

    let n = args.envelopes as f64;
    let sealed_len = args.payload_bytes + confab_protocol::relay::SEAL_OVERHEAD;
    let stored_record = confab_relay::store::STORED_HEADER_LEN + sealed_len;
    // Keys and index entries per envelope: envelopes (24-byte key), ids (32-byte key, 9-byte
    // value), expiry (33-byte key).
    let index_bytes = 24 + 32 + 9 + 33;
    println!("confab-relay-bench: {} envelopes of {} plaintext bytes over {} queues, {} concurrent enqueuers (release build: {}, fsync: {})",
        args.envelopes, args.payload_bytes, args.queues, args.concurrency, !cfg!(debug_assertions), !args.no_fsync);
    println!(
        "durable enqueue : {:>9.0} envelopes/s   latency p50 {:.2} ms  p99 {:.2} ms  (answer after sled flush)",
        n / enqueue_elapsed.as_secs_f64(),
        ms(percentile(&enqueue_latencies, 0.50)),
        ms(percentile(&enqueue_latencies, 0.99))
    );
    println!(
        "fetch + ack     : {:>9.0} envelopes/s   per-call latency p50 {:.2} ms  p99 {:.2} ms  ({} calls of up to {} envelopes, {} pollers)",
        n / fetch_elapsed.as_secs_f64(),
        ms(percentile(&fetch_latencies, 0.50)),
        ms(percentile(&fetch_latencies, 0.99)),
        fetch_latencies.len(),
        args.fetch_batch,
        args.queues
    );
    println!(
        "overhead/envelope: sealing {} B; enqueue request on the wire {:.0} B (JSON, base64url, signature, capability); stored record {} B + {} B of keys and indexes = {} B over the plaintext; data directory grew {:.0} B per envelope",
        confab_protocol::relay::SEAL_OVERHEAD,
        wire_bytes as f64 / n - args.payload_bytes as f64,
        stored_record - args.payload_bytes,
        index_bytes,
        stored_record - args.payload_bytes + index_bytes,
        (size_after.saturating_sub(size_before)) as f64 / n
    );
    let _ = stop_tx.send(());
    server.await??;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
