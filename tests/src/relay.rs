//! A real `confab-relay` process on 127.0.0.1, with its own temporary data directory and its
//! output kept (tests search it, e.g. for message canaries). Killed on drop.

use crate::node::find_binary;
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
    pub async fn start() -> TestRelay {
        let bin = find_binary("confab-relay", "CONFAB_RELAY_BIN").unwrap_or_else(|e| panic!("{e}"));
        let data = tempfile::tempdir().expect("relay data dir");
        let mut child = Command::new(&bin)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data.path())
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", bin.display()));
        let output = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        let stdout = child.stdout.take().expect("stdout");
        let kept = output.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix(LISTENING_PREFIX) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url.trim().to_string());
                    }
                }
                kept.lock().expect("log").push(line);
            }
        });
        let stderr = child.stderr.take().expect("stderr");
        let kept = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                kept.lock().expect("log").push(line);
            }
        });
        let url = tokio::time::timeout(START_TIMEOUT, rx)
            .await
            .expect("relay did not start in time")
            .expect("relay exited before listening");
        TestRelay {
            child: Some(child),
            data,
            url,
            output,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// Everything the relay printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.output.lock().expect("log").join("\n")
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
