//! Engine throughput without sockets: pipelined sends into one channel on a real sled store,
//! each acknowledged after its flush. Prints messages per second and CPU per message, so the
//! engine's ceiling can be told apart from the cost of fan-out over WebSockets.
//!
//! `cargo run --release -p confab-node --example engine_throughput -- [messages] [in_flight] [pacing_us] [bucket_messages_max]`

use confab_node::config::Limits;
use confab_node::engine::{self, Command};
use confab_node::store::{KvStore, SledStore};
use confab_protocol::control::Visibility;
use std::sync::Arc;
use std::time::Instant;

fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    ticks * 10.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let messages: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let in_flight: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let pacing_us: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(Limits::default().group_commit_interval_min_us);
    let bucket_messages_max: u64 =
        args.next().and_then(|a| a.parse().ok()).unwrap_or(Limits::default().bucket_messages_max);
    let limits = Limits {
        group_commit_interval_min_us: pacing_us,
        bucket_messages_max,
        ..Limits::default()
    };
    let dir = std::env::temp_dir().join(format!("confab-engine-throughput-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store: Arc<dyn KvStore> = Arc::new(SledStore::open(&dir)?);
    let (engine, _hub, task) = engine::start(store, "local".into(), limits, None, None).await?;
    let user = engine
        .call(|reply| Command::CreateUser {
            username: "alice".into(),
            password_hash: String::new(),
            display_name: String::new(),
            force_admin: None,
            bypass_registration: true,
            reply,
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .id;
    let chat = engine
        .call(|reply| Command::CreateChannel {
            creator: user.clone(),
            name: "general".into(),
            topic: String::new(),
            visibility: Visibility::Public,
            reply,
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .id;
    let semaphore = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let (cpu_before, started) = (cpu_ms(), Instant::now());
    let mut tasks = Vec::with_capacity(messages);
    for n in 0..messages {
        let permit = semaphore.clone().acquire_owned().await?;
        let (engine, user) = (engine.clone(), user.clone());
        tasks.push(tokio::spawn(async move {
            let body = format!("message {n} with a body of a typical length for a chat message");
            let result = engine
                .call(|reply| Command::Send {
                    user,
                    chat,
                    body,
                    reply_to: None,
                    client_id: None,
                    attachments: Vec::new(),
                    reply,
                })
                .await;
            drop(permit);
            result.is_ok()
        }));
    }
    let mut ok = 0;
    for task in tasks {
        ok += usize::from(task.await.unwrap_or(false));
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_ms() - cpu_before;
    println!(
        "engine: {ok}/{messages} messages acknowledged in {seconds:.2} s = {:.0} msg/s; CPU {:.3} ms/msg ({in_flight} in flight, flushes at most every {pacing_us} us)",
        ok as f64 / seconds,
        cpu / ok.max(1) as f64
    );
    drop(engine);
    let _ = task.await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
