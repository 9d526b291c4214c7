//! A real headless Firefox (Debian's `firefox-esr`) driven over WebDriver BiDi, its own
//! WebSocket protocol (no geckodriver): a fresh profile whose prefs point Firefox's push
//! service at the test push service ([`TestPushService::autopush_url`]), so
//! `PushManager.subscribe`, the decryption of each push and the `push` event in the service
//! worker are Firefox's own. Chromium cannot do this: its push service is Google's, reached
//! over a protocol of its own that no test server speaks.
//!
//! Needs `firefox-esr` (or `firefox`, or `CONFAB_FIREFOX`); without it the test FAILS.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::harness::{kill_process_group, UI_TIMEOUT};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Firefox {
    child: Child,
    _profile: tempfile::TempDir,
    socket: Socket,
    context: String,
    next_id: u64,
}

/// The prefs of every test profile: no updates, telemetry or remote settings on a closed
/// network, notifications allowed, service workers on http://127.0.0.1.
const PREFS: &[(&str, &str)] = &[
    ("permissions.default.desktop-notification", "1"),
    ("alerts.useSystemBackend", "false"),
    ("dom.push.enabled", "true"),
    ("dom.push.connection.enabled", "true"),
    ("dom.push.testing.allowInsecureServerURL", "true"),
    ("dom.serviceWorkers.testing.enabled", "true"),
    ("browser.shell.checkDefaultBrowser", "false"),
    ("app.update.enabled", "false"),
    ("app.normandy.enabled", "false"),
    ("datareporting.policy.dataSubmissionEnabled", "false"),
    ("datareporting.healthreport.uploadEnabled", "false"),
    ("toolkit.telemetry.enabled", "false"),
    ("browser.startup.homepage_override.mstone", "\"ignore\""),
    ("network.captive-portal-service.enabled", "false"),
    ("network.connectivity-service.enabled", "false"),
    ("extensions.update.enabled", "false"),
    ("browser.safebrowsing.update.enabled", "false"),
    ("messaging-system.rsexperimentloader.enabled", "false"),
    ("services.settings.server", "\"http://127.0.0.1:9/\""),
];

fn firefox_binary() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("CONFAB_FIREFOX") {
        return path.into();
    }
    for name in ["firefox-esr", "firefox"] {
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
            let path = dir.join(name);
            if path.is_file() {
                return path;
            }
        }
    }
    panic!(
        "Firefox not found (firefox-esr or firefox on PATH, or CONFAB_FIREFOX). The real push \
         subscription test needs Debian's firefox-esr: apt-get install -y firefox-esr (.ci/run \
         does this)"
    );
}

impl Firefox {
    /// Starts Firefox on a fresh profile whose push service is `push_server_url`, opens a BiDi
    /// session and takes its first tab.
    pub async fn launch(push_server_url: &str) -> Firefox {
        let profile = tempfile::Builder::new()
            .prefix("confab-firefox-")
            .tempdir()
            .expect("profile directory");
        let mut prefs: String = PREFS
            .iter()
            .map(|(name, value)| format!("user_pref(\"{name}\", {value});\n"))
            .collect();
        prefs.push_str(&format!("user_pref(\"dom.push.serverURL\", \"{push_server_url}\");\n"));
        std::fs::write(profile.path().join("user.js"), prefs).expect("user.js");
        let mut child = Command::new(firefox_binary())
            .args(["--headless", "--no-remote", "--remote-debugging-port", "0"])
            .arg("--profile")
            .arg(profile.path())
            .arg("about:blank")
            .env("MOZ_CRASHREPORTER_DISABLE", "1")
            // Its own process group, so its content processes end with it.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start firefox");
        let stderr = child.stderr.take().expect("stderr");
        let (found, address) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut found = Some(found);
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("WebDriver BiDi listening on ") {
                    if let Some(found) = found.take() {
                        let _ = found.send(url.trim().to_string());
                    }
                }
            }
        });
        let url = tokio::time::timeout(Duration::from_secs(60), address)
            .await
            .expect("Firefox printed no BiDi address within 60 s")
            .expect("Firefox exited before listening");
        let (socket, _) = tokio_tungstenite::connect_async(format!("{url}/session"))
            .await
            .expect("connect to Firefox's BiDi endpoint");
        let mut firefox =
            Firefox { child, _profile: profile, socket, context: String::new(), next_id: 0 };
        firefox.call("session.new", json!({"capabilities": {}})).await.expect("session.new");
        let tree = firefox
            .call("browsingContext.getTree", json!({}))
            .await
            .expect("browsingContext.getTree");
        firefox.context = tree["contexts"][0]["context"].as_str().expect("a tab").to_string();
        firefox
    }

    /// One BiDi command; its `result`, or the error it answered with.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let command = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket
            .send(Message::Text(command.into()))
            .await
            .map_err(|e| format!("{method}: send: {e}"))?;
        loop {
            let message = tokio::time::timeout(Duration::from_secs(60), self.socket.next())
                .await
                .map_err(|_| format!("{method}: no answer in 60 s"))?;
            let Some(Ok(Message::Text(text))) = message else {
                match message {
                    Some(Ok(_)) => continue,
                    other => return Err(format!("{method}: connection ended: {other:?}")),
                }
            };
            let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if answer["id"] != json!(id) {
                continue; // an event
            }
            if answer["type"] == "error" {
                return Err(format!("{method}: {} {}", answer["error"], answer["message"]));
            }
            return Ok(answer["result"].clone());
        }
    }

    pub async fn goto(&mut self, url: &str) {
        let context = self.context.clone();
        self.call(
            "browsingContext.navigate",
            json!({"context": context, "url": url, "wait": "complete"}),
        )
        .await
        .unwrap_or_else(|e| panic!("navigate to {url}: {e}"));
    }

    /// Evaluates `expression` (awaited) in the tab as if from a click, and answers its value
    /// as JSON.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let context = self.context.clone();
        let wrapped =
            format!("(async () => JSON.stringify(await ({expression})))().then(v => v === undefined ? 'null' : v)");
        let result = self
            .call(
                "script.evaluate",
                json!({"expression": wrapped, "target": {"context": context},
                       "awaitPromise": true, "userActivation": true}),
            )
            .await
            .unwrap_or_else(|e| panic!("evaluate {expression}: {e}"));
        if result["type"] == "exception" {
            panic!("Firefox: {expression} threw {}", result["exceptionDetails"]["text"]);
        }
        let text = result["result"]["value"].as_str().unwrap_or("null");
        serde_json::from_str(text).unwrap_or(Value::Null)
    }

    /// Polls `expression` until it is truthy; answers its value. Panics after [`UI_TIMEOUT`].
    pub async fn wait(&mut self, what: &str, expression: &str) -> Value {
        let deadline = Instant::now() + UI_TIMEOUT;
        loop {
            let value = self.eval(expression).await;
            let truthy = !matches!(&value, Value::Null | Value::Bool(false))
                && value != json!("")
                && value != json!(0);
            if truthy {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "Firefox: timed out waiting for {what} (last value {value})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Firefox {
    fn drop(&mut self) {
        kill_process_group(&mut self.child);
    }
}
