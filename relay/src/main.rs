//! The `confab-relay` binary: layers the configuration (defaults, then a TOML file, then
//! environment variables, then flags), sets up structured logging, and runs the relay until
//! SIGTERM or Ctrl-C.

use anyhow::Context;
use clap::Parser;
use confab_relay::Config;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "confab-relay",
    version,
    about = "Confab relay: store-and-forward for offline devices"
)]
struct Cli {
    /// TOML file with any `Config` fields (`[limits]` for limits).
    #[arg(long, env = "CONFAB_RELAY_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (port 0 picks one; the address is printed on stdout).
    #[arg(long, env = "CONFAB_RELAY_LISTEN", default_value = "127.0.0.1:8790")]
    listen: SocketAddr,
    #[arg(long, env = "CONFAB_RELAY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// VAPID `sub` claim (mailto: or https: contact).
    #[arg(long, env = "CONFAB_RELAY_VAPID_SUBJECT")]
    vapid_subject: Option<String>,
    /// Allow push endpoints on private and loopback addresses.
    #[arg(long, env = "CONFAB_RELAY_ALLOW_PRIVATE_PUSH_ENDPOINTS")]
    allow_private_push_endpoints: Option<bool>,
    /// Allow http:// push endpoints.
    #[arg(long, env = "CONFAB_RELAY_ALLOW_HTTP_PUSH_ENDPOINTS")]
    allow_http_push_endpoints: Option<bool>,
    #[arg(long, env = "CONFAB_RELAY_SWEEP_INTERVAL_MS")]
    sweep_interval_ms: Option<u64>,
    #[arg(long, env = "CONFAB_RELAY_ENQUEUE_RATE_PER_S")]
    enqueue_rate_per_s: Option<f64>,
    #[arg(long, env = "CONFAB_RELAY_ENQUEUE_BURST")]
    enqueue_burst: Option<f64>,
    #[arg(long, env = "CONFAB_RELAY_QUEUE_ENVELOPES_MAX")]
    queue_envelopes_max: Option<u64>,
    /// Log format: `text` or `json`.
    #[arg(long, env = "CONFAB_RELAY_LOG_FORMAT", default_value = "text")]
    log_format: String,
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        None => Config::default(),
    };
    if let Some(v) = &cli.data_dir {
        config.data_dir = v.clone();
    }
    if let Some(v) = &cli.vapid_subject {
        config.vapid_subject = v.clone();
    }
    if let Some(v) = cli.allow_private_push_endpoints {
        config.allow_private_push_endpoints = v;
    }
    if let Some(v) = cli.allow_http_push_endpoints {
        config.allow_http_push_endpoints = v;
    }
    if let Some(v) = cli.sweep_interval_ms {
        config.sweep_interval_ms = v;
    }
    if let Some(v) = cli.enqueue_rate_per_s {
        config.limits.enqueue_rate_per_s = v;
    }
    if let Some(v) = cli.enqueue_burst {
        config.limits.enqueue_burst = v;
    }
    if let Some(v) = cli.queue_envelopes_max {
        config.limits.queue_envelopes_max = v;
    }
    Ok(config)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown signal received");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal (and not under NO_COLOR): a log file gets plain text.
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr()) && !no_color;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colours);
    match cli.log_format.as_str() {
        "json" => builder.json().init(),
        "text" => builder.init(),
        other => anyhow::bail!("unknown log format {other} (text or json)"),
    }
    let config = load_config(&cli)?;
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("binding {}", cli.listen))?;
    let addr = listener.local_addr()?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "confab-relay listening on http://{addr}")?;
        stdout.flush()?;
    }
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "starting");
    confab_relay::run(listener, config, shutdown_signal()).await.context("relay failed")?;
    Ok(())
}
