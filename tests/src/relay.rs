//! A real `confab-relay` process on 127.0.0.1, with its own temporary data directory and its
//! output kept (tests search it, e.g. for message canaries). Killed on drop. It may push to
//! loopback `http` endpoints, such as a [`crate::push_service::TestPushService`].

use crate::node::find_binary;
use anyhow::Context;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LISTENING_PREFIX: &str = "confab-relay listening on ";
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct TestRelay {
    child: Option<Child>,
    data: tempfile::TempDir,
    url: String,
    output: Arc<Mutex<Vec<String>>>,
}

impl TestRelay {
    /// Starts the relay; fails with the reason (the binary missing, a spawn error, no
    /// `listening` line within the start timeout).
    pub async fn start() -> anyhow::Result<TestRelay> {
        let data = tempfile::tempdir().context("relay data dir")?;
        let mut relay = TestRelay {
            child: None,
            data,
            url: String::new(),
            output: Arc::new(Mutex::new(Vec::new())),
        };
        relay.url = relay.spawn("127.0.0.1:0").await?;
        Ok(relay)
    }

    /// SIGKILL; the data directory stays.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the relay again on the same data directory and address (after [`Self::kill9`]).
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        self.kill9();
        let listen = self.url.strip_prefix("http://").context("the relay's URL")?.to_string();
        let url = self.spawn(&listen).await?;
        anyhow::ensure!(url == self.url, "the relay came back at {url}, not {}", self.url);
        Ok(())
    }

    /// Spawns the process listening on `listen`; returns the URL it printed.
    async fn spawn(&mut self, listen: &str) -> anyhow::Result<String> {
        let bin = find_binary("confab-relay", "CONFAB_RELAY_BIN").map_err(anyhow::Error::msg)?;
        let mut child = Command::new(&bin)
            .arg("--listen")
            .arg(listen)
            .arg("--data-dir")
            .arg(self.data.path())
            // Tests push to a `TestPushService` on http://127.0.0.1.
            .args(["--allow-private-push-endpoints", "true"])
            .args(["--allow-http-push-endpoints", "true"])
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        let mut tx = Some(tx);
        if let Some(stdout) = child.stdout.take() {
            keep_lines(stdout, self.output.clone(), move |line| {
                if let Some(url) = line.strip_prefix(LISTENING_PREFIX) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url.trim().to_string());
                    }
                }
            });
        }
        if let Some(stderr) = child.stderr.take() {
            keep_lines(stderr, self.output.clone(), |_| {});
        }
        self.child = Some(child);
        tokio::time::timeout(START_TIMEOUT, rx)
            .await
            .context("the relay did not start in time")?
            .with_context(|| format!("the relay exited before listening:\n{}", self.output()))
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// The current value of the Prometheus metric `name` (`None` if it is not reported).
    pub async fn metric(&self, name: &str) -> Option<u64> {
        let text = reqwest::get(format!("{}/metrics", self.url)).await.ok()?.text().await.ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
    }

    /// Everything the relay printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        lock(&self.output).join("\n")
    }
}

/// Keeps every line of `stream` in `output`, showing each to `look` first.
fn keep_lines(
    stream: impl std::io::Read + Send + 'static,
    output: Arc<Mutex<Vec<String>>>,
    mut look: impl FnMut(&str) + Send + 'static,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            look(&line);
            lock(&output).push(line);
        }
    });
}

/// The output log; a thread that panicked while holding it left whole lines behind.
fn lock(output: &Mutex<Vec<String>>) -> std::sync::MutexGuard<'_, Vec<String>> {
    output.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
