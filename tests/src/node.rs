//! Spawning and controlling real `confab-node` processes.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Organisation name every test node is started with; user ids are `name@local`.
pub const ORG: &str = "local";

/// The line prefix the node prints on stdout once it listens.
pub const LISTENING_PREFIX: &str = "confab-node listening on ";

/// How long a node may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node may take to exit after SIGTERM.
const TERM_TIMEOUT: Duration = Duration::from_secs(30);
/// How many log lines of a node are kept for diagnostics.
const LOG_LINES_KEPT: usize = 4000;

/// `name@local`.
pub fn user_id(username: &str) -> String {
    format!("{username}@{ORG}")
}

/// Where the `confab-node` binary is (see [`find_binary`]).
pub fn find_node_binary() -> Result<PathBuf, String> {
    find_binary("confab-node", "CONFAB_NODE_BIN")
}

/// Where a workspace binary is: `$env_var`, else `$CARGO_TARGET_DIR/debug/<name>`, else next
/// to the running test executable's profile folder, else `<workspace>/target/debug`.
pub fn find_binary(name: &str, env_var: &str) -> Result<PathBuf, String> {
    let mut tried = Vec::new();
    if let Some(bin) = std::env::var_os(env_var) {
        let bin = PathBuf::from(bin);
        if bin.is_file() {
            return Ok(bin);
        }
        return Err(format!("{env_var} is set to {} but no such file exists", bin.display()));
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        tried.push(PathBuf::from(dir).join("debug").join(name));
    }
    if let Ok(exe) = std::env::current_exe() {
        // target/debug/deps/integration-xxxx or target/debug/confab-bench
        for anc in exe.ancestors().skip(1).take(2) {
            tried.push(anc.join(name));
        }
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    tried.push(workspace.join("target").join("debug").join(name));
    let mut unique: Vec<PathBuf> = Vec::new();
    for p in tried {
        if !unique.contains(&p) {
            unique.push(p);
        }
    }
    let tried = unique;
    for p in &tried {
        if p.is_file() {
            return Ok(p.clone());
        }
    }
    Err(format!(
        "{name} binary not found; build it with `cargo build --workspace --bins` or set \
         {env_var}. Looked in: {}",
        tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    ))
}

/// Like [`find_node_binary`] but panics with the explanation: tests must fail, never skip,
/// when the node is missing.
pub fn node_binary() -> PathBuf {
    match find_node_binary() {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

/// How to start a node.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// Test-visible name, used in diagnostics.
    pub name: String,
    /// Binary to run; default [`node_binary`].
    pub bin: Option<PathBuf>,
    /// Organisation name (`--org-name`).
    pub org_name: String,
    /// Extra arguments appended to `serve ...`.
    pub extra_args: Vec<String>,
    /// Extra environment for the node process.
    pub env: Vec<(String, String)>,
    /// Variables taken out of the environment the node inherits (e.g. `NO_COLOR`).
    pub env_remove: Vec<String>,
    /// A TOML configuration file's text, written next to the data directory and passed with
    /// `--config` on every start.
    pub config: Option<String>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            name: "node".to_string(),
            bin: None,
            org_name: ORG.to_string(),
            extra_args: Vec::new(),
            env: Vec::new(),
            env_remove: Vec::new(),
            config: None,
        }
    }
}

type Log = Arc<Mutex<VecDeque<String>>>;

fn push_log(log: &Log, line: String) {
    let mut g = match log.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    if g.len() >= LOG_LINES_KEPT {
        g.pop_front();
    }
    g.push_back(line);
}

/// One `confab-node serve` process on 127.0.0.1 with its own temporary data directory, which
/// survives restarts of the process and is deleted when the `TestNode` is dropped (kept when
/// `CONFAB_TEST_KEEP` is set).
pub struct TestNode {
    opts: NodeOptions,
    bin: PathBuf,
    root: Option<TempDir>,
    data_dir: PathBuf,
    child: Option<Child>,
    port: u16,
    log: Log,
    starts: u32,
}

impl TestNode {
    /// Starts a node with default options.
    pub async fn start() -> TestNode {
        Self::start_with(NodeOptions::default()).await
    }

    /// Starts a node with the given options on a fresh data directory.
    pub async fn start_with(opts: NodeOptions) -> TestNode {
        let mut node = Self::new_stopped(opts);
        node.start_again().await;
        node
    }

    /// Creates the data directory but does not start the process (for admin CLI use first).
    pub fn new_stopped(opts: NodeOptions) -> TestNode {
        let bin = opts.bin.clone().unwrap_or_else(node_binary);
        let root = match tempfile::Builder::new().prefix("confab-test-").tempdir() {
            Ok(d) => d,
            Err(e) => panic!("cannot create a temporary directory: {e}"),
        };
        let data_dir = root.path().join("data");
        TestNode {
            opts,
            bin,
            root: Some(root),
            data_dir,
            child: None,
            port: 0,
            log: Arc::new(Mutex::new(VecDeque::new())),
            starts: 0,
        }
    }

    /// The node's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// `http://127.0.0.1:PORT` of the running process (the port changes on every start).
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port of the running process.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// OS process id of the running process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether a process is running (as far as we know).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The last lines the node printed (stderr, and any unexpected stdout), for diagnostics.
    pub fn log_tail(&self, lines: usize) -> String {
        let g = match self.log.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let skip = g.len().saturating_sub(lines);
        g.iter().skip(skip).cloned().collect::<Vec<_>>().join("\n")
    }

    /// Starts the process again on the same data directory (after `kill9` or `terminate`).
    pub async fn start_again(&mut self) {
        self.start_listening("127.0.0.1:0").await;
    }

    /// Starts the process again on the same data directory *and the same port* as its last
    /// run (after `kill9` or `terminate`), so a browser page keeps its origin and can reconnect.
    pub async fn start_again_same_port(&mut self) {
        assert!(
            self.port != 0,
            "{}: start_again_same_port before the node ever listened",
            self.opts.name
        );
        let listen = format!("127.0.0.1:{}", self.port);
        self.start_listening(&listen).await;
    }

    /// SIGTERM, wait, and start again on the same data directory and port.
    pub async fn restart_same_port(&mut self) -> ExitStatus {
        let status = self.terminate().await;
        self.start_again_same_port().await;
        status
    }

    /// `--config FILE` with [`NodeOptions::config`] written to FILE, when there is one.
    fn config_args(&self) -> Vec<PathBuf> {
        let (Some(text), Some(parent)) = (&self.opts.config, self.data_dir.parent()) else {
            return Vec::new();
        };
        let path = parent.join("config.toml");
        if let Err(e) = std::fs::write(&path, text) {
            panic!("{}: cannot write {}: {e}", self.opts.name, path.display());
        }
        vec![PathBuf::from("--config"), path]
    }

    async fn start_listening(&mut self, listen: &str) {
        assert!(
            self.child.is_none(),
            "{}: start_again while the node is still running",
            self.opts.name
        );
        self.starts += 1;
        let gen = self.starts;
        push_log(&self.log, format!("=== harness: start #{gen} ==="));
        let mut cmd = Command::new(&self.bin);
        cmd.arg("serve")
            .arg("--listen")
            .arg(listen)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--org-name")
            .arg(&self.opts.org_name)
            .args(&self.opts.extra_args)
            .args(self.config_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for k in &self.opts.env_remove {
            cmd.env_remove(k);
        }
        for (k, v) in &self.opts.env {
            cmd.env(k, v);
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!("{}: cannot spawn {}: {e}", self.opts.name, self.bin.display()),
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        if let Some(out) = child.stdout.take() {
            let log = self.log.clone();
            std::thread::spawn(move || {
                let mut tx = Some(tx);
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if let Some(url) = line.strip_prefix(LISTENING_PREFIX) {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(url.trim().to_string());
                            continue;
                        }
                    }
                    push_log(&log, format!("[stdout#{gen}] {line}"));
                }
            });
        }
        if let Some(err) = child.stderr.take() {
            let log = self.log.clone();
            std::thread::spawn(move || drain_lines(err, &log, gen));
        }
        self.child = Some(child);
        let url = match tokio::time::timeout(START_TIMEOUT, rx).await {
            Ok(Ok(url)) => url,
            Ok(Err(_)) => {
                let status = self.child.as_mut().and_then(|c| c.wait().ok());
                self.child = None;
                panic!(
                    "{}: confab-node closed stdout without printing `{LISTENING_PREFIX}http://...` \
                     (exit status {status:?}). Log:\n{}",
                    self.opts.name,
                    self.log_tail(200)
                );
            }
            Err(_) => {
                self.kill9();
                panic!(
                    "{}: confab-node did not print its listening line within {START_TIMEOUT:?}. Log:\n{}",
                    self.opts.name,
                    self.log_tail(200)
                );
            }
        };
        let port = url
            .strip_prefix("http://127.0.0.1:")
            .and_then(|p| p.trim_end_matches('/').parse::<u16>().ok());
        match port {
            Some(p) => self.port = p,
            None => panic!(
                "{}: listening line has an unexpected URL {url:?}; expected http://127.0.0.1:PORT",
                self.opts.name
            ),
        }
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            push_log(&self.log, "=== harness: SIGKILL ===".to_string());
        }
    }

    /// Sends a signal to the running process without waiting.
    pub fn signal(&self, sig: i32) {
        if let Some(c) = self.child.as_ref() {
            if let Ok(pid) = i32::try_from(c.id()) {
                // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
                unsafe {
                    libc::kill(pid, sig);
                }
            }
        }
    }

    /// SIGTERM, then waits for the process to exit. Panics (after SIGKILL) if it does not exit
    /// within 30 s. Returns its exit status.
    pub async fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(TERM_TIMEOUT, "SIGTERM").await
    }

    /// SIGINT, then waits like [`TestNode::terminate`].
    pub async fn interrupt(&mut self) -> ExitStatus {
        self.signal(libc::SIGINT);
        self.wait_exit(TERM_TIMEOUT, "SIGINT").await
    }

    async fn wait_exit(&mut self, timeout: Duration, what: &str) -> ExitStatus {
        let Some(mut child) = self.child.take() else {
            panic!("{}: {what} sent but the node was not running", self.opts.name);
        };
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    push_log(&self.log, format!("=== harness: exited {status} ==="));
                    return status;
                }
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "{}: confab-node did not exit within {timeout:?} after {what}. Log:\n{}",
                        self.opts.name,
                        self.log_tail(100)
                    );
                }
                Err(e) => panic!("{}: waiting for confab-node: {e}", self.opts.name),
            }
        }
    }

    /// SIGTERM, wait, and start again on the same data directory.
    pub async fn restart(&mut self) -> ExitStatus {
        let status = self.terminate().await;
        self.start_again().await;
        status
    }

    /// Runs `confab-node ARGS...` (an admin subcommand) to completion.
    pub fn cli(&self, args: &[&str]) -> Output {
        match Command::new(&self.bin).args(args).stdin(Stdio::null()).output() {
            Ok(o) => o,
            Err(e) => panic!("cannot run {} {args:?}: {e}", self.bin.display()),
        }
    }

    /// `confab-node user create --data-dir DIR USERNAME --password PW [--admin]`.
    pub fn cli_user_create(&self, username: &str, password: &str, admin: bool) -> Output {
        let dir = self.data_dir.to_string_lossy().to_string();
        let mut args =
            vec!["user", "create", "--data-dir", dir.as_str(), username, "--password", password];
        if admin {
            args.push("--admin");
        }
        self.cli(&args)
    }

    /// `confab-node user list --data-dir DIR`.
    pub fn cli_user_list(&self) -> Output {
        let dir = self.data_dir.to_string_lossy().to_string();
        self.cli(&["user", "list", "--data-dir", dir.as_str()])
    }
}

fn drain_lines(r: impl Read, log: &Log, gen: u32) {
    for line in BufReader::new(r).lines() {
        let Ok(line) = line else { break };
        push_log(log, format!("[#{gen}] {line}"));
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "----- {} log (last 150 lines) -----\n{}\n----- end of {} log -----",
                self.opts.name,
                self.log_tail(150),
                self.opts.name
            );
        }
        if std::env::var_os("CONFAB_TEST_KEEP").is_some() {
            if let Some(root) = self.root.take() {
                let kept = root.keep();
                eprintln!("{}: data kept in {}", self.opts.name, kept.display());
            }
        }
    }
}

/// Several nodes, all killed on drop.
#[derive(Default)]
pub struct TestNet {
    /// The nodes, in start order.
    pub nodes: Vec<TestNode>,
}

impl TestNet {
    /// Starts `n` nodes named `node0..`, each with org name `org0..` (or `local` when n == 1).
    pub async fn start(n: usize) -> TestNet {
        let mut net = TestNet::default();
        for i in 0..n {
            let org = if n == 1 { ORG.to_string() } else { format!("org{i}") };
            net.add(NodeOptions {
                name: format!("node{i}"),
                org_name: org,
                ..NodeOptions::default()
            })
            .await;
        }
        net
    }

    /// Starts one more node.
    pub async fn add(&mut self, opts: NodeOptions) -> &mut TestNode {
        let node = TestNode::start_with(opts).await;
        self.nodes.push(node);
        let last = self.nodes.len() - 1;
        &mut self.nodes[last]
    }

    /// The i-th node.
    pub fn node(&mut self, i: usize) -> &mut TestNode {
        &mut self.nodes[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A stand-in "node": prints the listening line, then sleeps until signalled.
    fn fake_node(dir: &Path) -> PathBuf {
        let p = dir.join("fake-node.sh");
        let script = "#!/bin/sh\necho \"some log\" >&2\necho \"confab-node listening on http://127.0.0.1:4242\"\nexec sleep 60\n";
        std::fs::write(&p, script).expect("write fake node");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }

    #[tokio::test]
    async fn harness_starts_parses_port_and_stops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = fake_node(dir.path());
        let mut node = TestNode::start_with(NodeOptions {
            name: "fake".into(),
            bin: Some(bin),
            ..NodeOptions::default()
        })
        .await;
        assert_eq!(node.port(), 4242);
        assert_eq!(node.base_url(), "http://127.0.0.1:4242");
        assert!(node.is_running());
        let st = node.terminate().await;
        assert!(!st.success(), "sleep dies of SIGTERM");
        assert!(!node.is_running());
        node.start_again().await;
        assert!(node.is_running());
        node.kill9();
        assert!(!node.is_running());
        std::thread::sleep(Duration::from_millis(100));
        assert!(node.log_tail(50).contains("some log"), "stderr is captured");
    }
}
