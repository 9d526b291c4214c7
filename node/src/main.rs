//! The `confab-node` binary: `serve`, and admin subcommands that work on a stopped node's data.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use confab_node::config::Config;
use confab_node::engine::{self, Command};
use confab_node::{accounts, org_key, server, views};
use std::io::{IsTerminal, Read};
use std::net::SocketAddr;
use std::path::PathBuf;

// sled starts and retires IO threads as load changes; with glibc's per-thread arenas that left
// freed memory scattered (RSS grew to 3x the live heap in the load test). mimalloc returns it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its place in `mi_option_e` of mimalloc 3's header;
/// libmimalloc-sys names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Makes mimalloc give freed memory back to the OS at once instead of after its default
/// second, unless the operator chose otherwise with `MIMALLOC_PURGE_DELAY`. Each sign-in's
/// Argon2id hash frees 19 MiB, and with the delay those stayed resident into the load that
/// followed; measured with confab-bench in one sitting (default vs immediate, 3 runs each):
/// steady peak RSS 68-70 -> 49-50 MiB at the same CPU per message, and the flood ramp
/// sustained 9,731 msg/s (twice) where the delayed purge sustained 6,487 (twice).
fn purge_freed_memory_at_once() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mi_option_set only stores a number in mimalloc's option table; any value
        // of this option is valid, and setting options at any time is allowed.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
}

#[derive(Parser)]
#[command(name = "confab-node", version, about = "Confab: an organisation's federated chat server")]
struct Cli {
    #[command(subcommand)]
    command: Top,
}

#[derive(Subcommand)]
enum Top {
    /// Run the node.
    Serve {
        #[command(flatten)]
        common: Common,
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long, env = "CONFAB_LISTEN")]
        listen: Option<SocketAddr>,
        /// Federate: listen for other organisations' nodes on this multiaddr (repeatable,
        /// comma-separated in the environment), e.g. /ip4/0.0.0.0/tcp/7700 or
        /// /ip4/0.0.0.0/udp/7700/quic-v1.
        #[arg(long, env = "CONFAB_FEDERATION_LISTEN", value_delimiter = ',')]
        federation_listen: Vec<String>,
        /// Log format.
        #[arg(long, env = "CONFAB_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
        log_format: String,
        /// Colours in text logs: `auto` only when stderr is a terminal and NO_COLOR is unset
        /// (so `serve > node.log 2>&1` writes plain text), `always`, or `never`.
        #[arg(long, env = "CONFAB_LOG_COLOR", default_value = "auto", value_parser = ["auto", "always", "never"])]
        log_color: String,
    },
    /// Rebuild the views (chats, members, messages) from the stored channel documents
    /// (stop the node first).
    RebuildViews {
        #[command(flatten)]
        common: Common,
    },
    /// Write one of a chat's documents in automerge's saved format (stop the node first): the
    /// control document (`--document 0`) or history bucket n.
    ExportDocument {
        #[command(flatten)]
        common: Common,
        /// The chat id (26 characters).
        #[arg(long)]
        chat: String,
        /// 0 for the control document, n for bucket n.
        #[arg(long)]
        document: u32,
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
    },
    /// Manage users (stop the node first: the data directory is locked while it runs).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage the peered organisations (stop the node first; a running node is managed
    /// through the admin API, /api/v1/admin/peers).
    Peer {
        #[command(subcommand)]
        command: PeerCommand,
    },
}

#[derive(Subcommand)]
enum PeerCommand {
    /// This organisation's id and libp2p peer id, and the configured listen addresses.
    Identity {
        #[command(flatten)]
        common: Common,
    },
    /// List the peered organisations: org id, name, peer id, addresses.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Peer with an organisation (consent is mutual: its admin adds this one too).
    Add {
        #[command(flatten)]
        common: Common,
        /// The organisation's name (its users are `someone@name`).
        #[arg(long)]
        name: String,
        /// Its address, ending in /p2p/<peer id>.
        #[arg(long, conflicts_with = "invite", required_unless_present = "invite")]
        address: Option<String>,
        /// An invite token its admin made.
        #[arg(long)]
        invite: Option<String>,
    },
    /// Stop peering with an organisation (by org id or name).
    Remove {
        #[command(flatten)]
        common: Common,
        peer: String,
    },
    /// Print an invite token for another organisation's admin: this organisation's key and
    /// its `[federation] public_addrs` (else the listen addresses with a fixed port).
    Invite {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args, Clone)]
struct Common {
    /// TOML configuration file.
    #[arg(long, env = "CONFAB_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (default ./confab-data).
    #[arg(long, env = "CONFAB_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The organisation's name: users are `name@org` (default `local`).
    #[arg(long, env = "CONFAB_ORG_NAME")]
    org_name: Option<String>,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user.
    Create {
        #[command(flatten)]
        common: Common,
        username: String,
        /// The password (or use --password-stdin).
        #[arg(long)]
        password: Option<String>,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Make the user a node admin.
        #[arg(long)]
        admin: bool,
    },
    /// Set a new password and end the user's sessions.
    ResetPassword {
        #[command(flatten)]
        common: Common,
        username: String,
        #[arg(long)]
        password: Option<String>,
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List {
        #[command(flatten)]
        common: Common,
    },
}

/// Defaults, then the TOML file, then environment and flags (clap reads both; flags win).
fn load_config(common: &Common, listen: Option<SocketAddr>) -> Result<Config> {
    let mut config = match &common.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        None => Config::default(),
    };
    if let Some(dir) = &common.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(name) = &common.org_name {
        config.org_name = name.clone();
    }
    if let Some(listen) = listen {
        config.listen = listen;
    }
    confab_protocol::ids::validate_org_name(&config.org_name).context("org_name")?;
    config.push.validate().map_err(anyhow::Error::msg)?;
    if let Ok(token) = std::env::var("CONFAB_METRICS_TOKEN") {
        config.metrics_token = Some(token);
    }
    if config.metrics_token.as_ref().is_some_and(|token| token.trim().chars().count() < 16) {
        bail!("metrics_token: use at least 16 characters (a random token, e.g. from openssl rand -hex 16)");
    }
    Ok(config)
}

/// Whether text logs get ANSI colours: `always`, `never`, or (`auto`) only when stderr is a
/// terminal and NO_COLOR (<https://no-color.org>) is unset or empty.
fn log_colours(choice: &str) -> bool {
    match choice {
        "always" => true,
        "never" => false,
        _ => {
            let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
            std::io::stderr().is_terminal() && !no_color
        }
    }
}

fn init_logs(format: &str, colour: &str) {
    let mut filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // automerge marks hot internal functions `#[instrument]`, at INFO: those spans cost the
    // engine about 5% of its CPU and tell an operator nothing. Quiet unless asked for by name.
    let automerge_asked = std::env::var("RUST_LOG").is_ok_and(|value| value.contains("automerge"));
    if !automerge_asked {
        if let Ok(directive) = "automerge=warn".parse() {
            filter = filter.add_directive(directive);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(log_colours(colour));
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn password(given: Option<String>, stdin: bool) -> Result<String> {
    let password = match (given, stdin) {
        (Some(p), false) => p,
        (None, true) => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            text.trim_end_matches(['\n', '\r']).to_string()
        }
        _ => bail!("give exactly one of --password or --password-stdin"),
    };
    accounts::check_password_rules(&password).map_err(anyhow::Error::msg)?;
    Ok(password)
}

#[tokio::main]
async fn main() -> Result<()> {
    purge_freed_memory_at_once();
    let cli = Cli::parse();
    match cli.command {
        Top::Serve { common, listen, federation_listen, log_format, log_color } => {
            init_logs(&log_format, &log_color);
            let mut config = load_config(&common, listen)?;
            if !federation_listen.is_empty() {
                config.federation.listen = federation_listen;
            }
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("binding {}", config.listen))?;
            let address = listener.local_addr()?;
            tracing::info!(%address, data_dir = %config.data_dir.display(), org = %config.org_name, "starting");
            println!("confab-node listening on http://{address}");
            server::serve(listener, config, shutdown_signal()).await?;
            tracing::info!("stopped");
        }
        Top::RebuildViews { common } => {
            init_logs("text", "auto");
            let config = load_config(&common, None)?;
            let store = server::open_store(&config)?;
            let key = org_key::load_or_create_org_key(store.as_ref()).await?;
            let report =
                engine::rebuild::rebuild_views(store.as_ref(), &key.id(), &config.org_name).await?;
            let search = server::open_search(&config)?;
            let indexed = engine::reindex_search(store.as_ref(), &search)?;
            let newest = confab_node::events::newest_cursor(store.as_ref())?;
            search.commit_marked(newest)?;
            search.compact()?;
            println!(
                "rebuilt {} chats, {} messages; search index: {} messages",
                report.chats, report.messages, indexed
            );
        }
        Top::ExportDocument { common, chat, document, out } => {
            init_logs("text", "auto");
            let config = load_config(&common, None)?;
            let store = server::open_store(&config)?;
            let chat: confab_protocol::ChatId = chat.parse().context("--chat is not a chat id")?;
            let bytes = engine::export_document(store.as_ref(), chat, document)?
                .with_context(|| format!("chat {chat} has no document {document}"))?;
            std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
            println!("wrote {} bytes to {}", bytes.len(), out.display());
        }
        Top::User { command } => {
            init_logs("text", "auto");
            user_command(command).await?;
        }
        Top::Peer { command } => {
            init_logs("text", "auto");
            peer_command(command).await?;
        }
    }
    Ok(())
}

async fn peer_command(command: PeerCommand) -> Result<()> {
    use confab_node::federation;
    let common = match &command {
        PeerCommand::Identity { common }
        | PeerCommand::List { common }
        | PeerCommand::Add { common, .. }
        | PeerCommand::Remove { common, .. }
        | PeerCommand::Invite { common } => common.clone(),
    };
    let config = load_config(&common, None)?;
    let store = server::open_store(&config)?;
    let key = org_key::load_or_create_org_key(store.as_ref()).await?;
    let api_error = |e: confab_node::engine::Error| anyhow::anyhow!("{e}");
    let known = engine::peers(store.as_ref())?;
    match command {
        PeerCommand::Identity { .. } => {
            let peer = confab_net::peer_id_of(key.id().as_bytes())?;
            println!("org_id\t{}\npeer_id\t{peer}", key.id());
            for addr in &config.federation.listen {
                println!("listen\t{addr}");
            }
        }
        PeerCommand::List { .. } => {
            for (org, record) in known {
                let peer = confab_net::peer_id_of(org.as_bytes())?;
                println!("{org}\t{}\t{peer}\t{}", record.name, record.addrs.join(","));
            }
        }
        PeerCommand::Invite { .. } => {
            let listening = federation::fixed_listen_addrs(&config.federation)?;
            let now_s = confab_node::model::now_ms() / 1000;
            let (token, expires_s) =
                federation::invite_token(&key.seed(), &config.federation, listening, now_s)
                    .map_err(api_error)?;
            println!("{token}");
            eprintln!("valid until {expires_s} (Unix seconds)");
        }
        PeerCommand::Add { name, address, invite, .. } => {
            let now = confab_node::model::now_ms();
            let (org, record) =
                federation::new_peer(name, address.as_deref(), invite.as_deref(), now)
                    .map_err(api_error)?;
            federation::check_new_peer(&key.id(), config.federation.peers_max, &known, &org)
                .map_err(api_error)?;
            let name = record.name.clone();
            set_peer(store, &config, org, Some(record)).await?;
            println!("peered with {name} ({org}); it takes effect when the node starts");
        }
        PeerCommand::Remove { peer, .. } => {
            let Some((org, record)) = known
                .into_iter()
                .find(|(org, record)| org.to_string() == peer || record.name == peer)
            else {
                bail!("no peer {peer:?} (give its org id or name; see `peer list`)");
            };
            set_peer(store, &config, org, None).await?;
            println!("removed {} ({org})", record.name);
        }
    }
    Ok(())
}

/// The engine on a stopped node's store, for the admin subcommands (no push, no federation);
/// it stops once its handle is dropped, and the task then ends.
async fn offline_engine(
    store: std::sync::Arc<dyn confab_node::store::KvStore>,
    config: &Config,
) -> Result<(engine::EngineHandle, tokio::task::JoinHandle<()>)> {
    let (engine, _hub, task) =
        engine::start(store, config.org_name.clone(), config.limits.clone(), None, None).await?;
    Ok((engine, task))
}

/// Writes (or deletes) a peer record through the engine, as the admin API does.
async fn set_peer(
    store: std::sync::Arc<dyn confab_node::store::KvStore>,
    config: &Config,
    org: confab_protocol::OrgId,
    record: Option<engine::PeerRecord>,
) -> Result<()> {
    let (engine, task) = offline_engine(store, config).await?;
    engine
        .call(|reply| Command::SetPeer { org, record, reply })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    drop(engine);
    task.await?;
    Ok(())
}

async fn user_command(command: UserCommand) -> Result<()> {
    let common = match &command {
        UserCommand::Create { common, .. }
        | UserCommand::ResetPassword { common, .. }
        | UserCommand::List { common } => common.clone(),
    };
    let config = load_config(&common, None)?;
    let store = server::open_store(&config)?;
    if let UserCommand::List { .. } = command {
        for user in views::users(store.as_ref())? {
            let flags = [(user.is_admin, "admin"), (user.disabled, "disabled")]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, name)| *name)
                .collect::<Vec<_>>()
                .join(",");
            println!("{}\t{}\t{}", user.id, user.display_name, flags);
        }
        return Ok(());
    }
    let (engine, task) = offline_engine(store, &config).await?;
    match command {
        UserCommand::Create { username, password: given, password_stdin, admin, .. } => {
            let password = password(given, password_stdin)?;
            let hash = accounts::hash_password(&password).map_err(anyhow::Error::msg)?;
            let user = engine
                .call(|reply| Command::CreateUser {
                    username,
                    password_hash: hash,
                    display_name: String::new(),
                    force_admin: admin.then_some(true),
                    bypass_registration: true,
                    reply,
                })
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("created {}{}", user.id, if user.is_admin { " (admin)" } else { "" });
        }
        UserCommand::ResetPassword { username, password: given, password_stdin, .. } => {
            let password = password(given, password_stdin)?;
            let hash = accounts::hash_password(&password).map_err(anyhow::Error::msg)?;
            let user = engine
                .call(|reply| Command::SetPassword { username, password_hash: hash, reply })
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("password reset for {}; their sessions are ended", user.id);
        }
        UserCommand::List { .. } => {}
    }
    drop(engine);
    let _ = task.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Option 15 is the purge delay: its default is mimalloc 3's 1000 ms (the options beside
    /// it default to 1 and 0), and setting it reads back.
    #[test]
    fn the_purge_delay_is_option_15_and_is_set_to_zero() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            eprintln!("MIMALLOC_PURGE_DELAY is set: the default is not checked");
        } else {
            // SAFETY: reads mimalloc's option table.
            assert_eq!(unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }, 1000);
        }
        purge_freed_memory_at_once();
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // SAFETY: as above.
            assert_eq!(unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }, 0);
        }
    }
}
