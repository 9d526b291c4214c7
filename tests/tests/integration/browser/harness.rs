//! WebDriver plumbing for the browser tests: a chromedriver process on a free loopback port,
//! headless Chromium sessions with fresh profiles, polling helpers, screenshots and the
//! "nothing bad happened" checks (no CSP violation, no script error, no XSS flag, no dialog).
//!
//! Chromium and chromedriver are required: without them the tests FAIL with an explanation.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client as Wd, ClientBuilder, Locator};
use serde_json::{json, Value};

/// How long a UI condition may take to become true.
pub const UI_TIMEOUT: Duration = Duration::from_secs(20);

fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// The first of `env` (if set) or `candidates` that exists; panics with install instructions.
fn find_exe(env: &str, candidates: &[&str], what: &str) -> PathBuf {
    if let Some(v) = std::env::var_os(env) {
        let p = PathBuf::from(&v);
        if p.is_file() {
            return p;
        }
        panic!("{env} is set to {} but that file does not exist", p.display());
    }
    for c in candidates {
        if let Some(p) = which(c) {
            return p;
        }
    }
    panic!(
        "{what} not found (looked for {candidates:?} on PATH; or set {env}). The browser tests \
         need Debian's `chromium` and `chromium-driver`: apt-get install -y chromium \
         chromium-driver fonts-dejavu-core (.ci/run does this)"
    );
}

/// The Chromium binary.
pub fn chromium_binary() -> PathBuf {
    find_exe(
        "CONFAB_CHROMIUM",
        &["chromium", "chromium-browser", "/usr/lib/chromium/chromium", "google-chrome"],
        "Chromium",
    )
}

/// SIGKILLs `child`, started with `process_group(0)`, and every process of its group (the
/// browser processes it started), then reaps it.
pub fn kill_process_group(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on the process group we created for our own child.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn free_port() -> u16 {
    let l = match TcpListener::bind("127.0.0.1:0") {
        Ok(l) => l,
        Err(e) => panic!("cannot bind a loopback port: {e}"),
    };
    match l.local_addr() {
        Ok(a) => a.port(),
        Err(e) => panic!("local_addr: {e}"),
    }
}

/// Where screenshots go: `$CARGO_TARGET_DIR/confab-screenshots`, else `<workspace>/target/...`.
pub fn screenshot_dir() -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = base.join("confab-screenshots");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        panic!("cannot create {}: {e}", dir.display());
    }
    dir
}

/// A chromedriver process (in its own process group, so the Chromium processes it starts are
/// ended with it) listening on a free 127.0.0.1 port.
pub struct Driver {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Driver {
    pub async fn start() -> Driver {
        let bin = find_exe(
            "CONFAB_CHROMEDRIVER",
            &["chromedriver", "/usr/lib/chromium/chromedriver"],
            "chromedriver",
        );
        // Fail early and clearly if Chromium itself is missing too.
        let _ = chromium_binary();
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port();
            let log = std::env::temp_dir()
                .join(format!("confab-chromedriver-{}-{port}.log", std::process::id()));
            let child = match Command::new(&bin)
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
            {
                Ok(c) => c,
                Err(e) => panic!("cannot start {}: {e}", bin.display()),
            };
            let mut d = Driver { child, port, log };
            let deadline = Instant::now() + Duration::from_secs(20);
            let http = reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(2))
                .build()
                .expect("reqwest client");
            while Instant::now() < deadline {
                if let Ok(Some(status)) = d.child.try_wait() {
                    last_err = format!("chromedriver exited with {status}");
                    break;
                }
                if let Ok(r) = http.get(format!("{}/status", d.url())).send().await {
                    if let Ok(v) = r.json::<Value>().await {
                        if v["value"]["ready"] == json!(true) {
                            return d;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if last_err.is_empty() {
                last_err = format!("chromedriver on port {port} did not become ready in 20 s");
            }
            d.kill();
        }
        panic!("cannot start chromedriver: {last_err}");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        kill_process_group(&mut self.child);
    }

    /// The last lines of chromedriver's log (diagnostics).
    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// One headless Chromium session with a fresh profile.
pub struct Browser {
    pub wd: Wd,
    pub name: String,
    /// The profile directory (Chromium writes its DevTools port there).
    profile: tempfile::TempDir,
}

/// Options for [`Browser::open`].
#[derive(Clone, Copy, Default)]
pub struct BrowserOpts {
    /// `prefers-color-scheme: dark`.
    pub dark: bool,
}

impl Browser {
    pub async fn open(driver: &Driver, name: &str, opts: BrowserOpts) -> Browser {
        let chrome = chromium_binary();
        let profile = match tempfile::Builder::new().prefix("confab-chromium-").tempdir() {
            Ok(d) => d,
            Err(e) => panic!("temp dir: {e}"),
        };
        let mut args = vec![
            "--headless".to_string(),
            "--no-sandbox".to_string(),
            "--disable-gpu".to_string(),
            "--disable-quic".to_string(),
            "--no-first-run".to_string(),
            "--disable-background-networking".to_string(),
            "--disable-component-update".to_string(),
            "--disable-sync".to_string(),
            "--disable-dev-shm-usage".to_string(),
            "--disable-extensions".to_string(),
            "--disable-default-apps".to_string(),
            "--no-default-browser-check".to_string(),
            "--password-store=basic".to_string(),
            "--lang=en-US".to_string(),
            "--force-device-scale-factor=1".to_string(),
            "--window-size=1280,800".to_string(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        if opts.dark {
            args.push("--force-dark-mode".to_string());
            args.push("--blink-settings=preferredColorScheme=0".to_string());
        }
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        // Leave any alert/confirm open so the tests notice it (the app itself never uses them).
        caps.insert("unhandledPromptBehavior".into(), json!("ignore"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chrome.display().to_string(),
                "args": args,
                "prefs": {"credentials_enable_service": false, "profile.password_manager_enabled": false}
            }),
        );
        let mut last = String::new();
        for _ in 0..3 {
            let mut b =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
            b.capabilities(caps.clone());
            match b.connect(&driver.url()).await {
                Ok(wd) => {
                    let br = Browser { wd, name: name.to_string(), profile };
                    return br;
                }
                Err(e) => {
                    last = e.to_string();
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        panic!(
            "{name}: cannot start a Chromium session: {last}\nchromedriver log:\n{}",
            driver.log_tail()
        );
    }

    pub async fn close(self) {
        let _ = self.wd.close().await;
    }

    pub async fn goto(&self, url: &str) {
        if let Err(e) = self.wd.goto(url).await {
            panic!("{}: goto {url}: {e}", self.name);
        }
    }

    /// Runs `body` (a function body; `arguments` are `args`) and returns its value.
    pub async fn js_args(&self, body: &str, args: Vec<Value>) -> Value {
        match self.wd.execute(body, args).await {
            Ok(v) => v,
            Err(e) => panic!("{}: script failed: {e}\nscript: {body}", self.name),
        }
    }

    /// The value of the JavaScript expression `expr`.
    pub async fn eval(&self, expr: &str) -> Value {
        self.js_args(&format!("return ({expr});"), vec![]).await
    }

    /// Polls `expr` (a JavaScript expression; `arguments` are `args`) until it is truthy and
    /// returns that value; panics after [`UI_TIMEOUT`] with a screenshot and the page text.
    pub async fn wait_args(&self, what: &str, expr: &str, args: Vec<Value>) -> Value {
        self.wait_for(what, expr, args, UI_TIMEOUT).await
    }

    pub async fn wait(&self, what: &str, expr: &str) -> Value {
        self.wait_for(what, expr, vec![], UI_TIMEOUT).await
    }

    pub async fn wait_for(&self, what: &str, expr: &str, args: Vec<Value>, t: Duration) -> Value {
        let script = format!(
            "try {{ const v = ({expr}); return v === undefined ? null : v; }} \
             catch (e) {{ return {{__err: String(e)}}; }}"
        );
        let deadline = Instant::now() + t;
        let mut last;
        loop {
            match self.wd.execute(&script, args.clone()).await {
                Ok(v) => {
                    let truthy = match &v {
                        Value::Null => false,
                        Value::Bool(b) => *b,
                        Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
                        Value::String(s) => !s.is_empty(),
                        Value::Object(o) => !o.contains_key("__err"),
                        Value::Array(_) => true,
                    };
                    if truthy {
                        return v;
                    }
                    last = v;
                }
                Err(e) => last = json!(format!("webdriver error: {e}")),
            }
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "timed out after {t:?} waiting for {what} (`{expr}`); last value {last}"
                ))
                .await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Panics with `msg`, the page's visible text and a screenshot.
    pub async fn fail(&self, msg: &str) -> ! {
        let text = self
            .wd
            .execute(
                "return [document.body ? document.body.innerText.slice(0, 3000) : '', \
                 JSON.stringify(window.__confabErrors || []), JSON.stringify(window.__confabCsp || [])];",
                vec![],
            )
            .await
            .unwrap_or(Value::Null);
        let shot = self.screenshot(&format!("FAILED-{}", self.name)).await;
        panic!(
            "{}: {msg}\nscreenshot: {}\npage text, script errors, CSP violations: {text}",
            self.name,
            shot.display()
        );
    }

    /// The element at `css` once it exists and is displayed.
    pub async fn el(&self, css: &str) -> fantoccini::elements::Element {
        let deadline = Instant::now() + UI_TIMEOUT;
        loop {
            if let Ok(e) = self.wd.find(Locator::Css(css)).await {
                if e.is_displayed().await.unwrap_or(false) {
                    return e;
                }
            }
            if Instant::now() >= deadline {
                self.fail(&format!("no displayed element `{css}`")).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the element at `css`, finding it again if the page re-rendered it meanwhile.
    pub async fn click(&self, css: &str) {
        let mut tries = 0;
        loop {
            let e = self.el(css).await;
            match e.click().await {
                Ok(()) => return,
                Err(err) if tries < 30 => {
                    tries += 1;
                    let _ = err;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => self.fail(&format!("click `{css}`: {err}")).await,
            }
        }
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.el(css).await;
        if let Err(err) = e.send_keys(text).await {
            self.fail(&format!("typing into `{css}`: {err}")).await;
        }
    }

    pub async fn clear(&self, css: &str) {
        let e = self.el(css).await;
        if let Err(err) = e.clear().await {
            self.fail(&format!("clearing `{css}`: {err}")).await;
        }
    }

    /// Types `text` into the composer and presses Enter.
    pub async fn send_message(&self, text: &str) {
        self.type_into("#input", text).await;
        self.type_into("#input", "\u{e007}").await;
    }

    /// Saves a PNG of the viewport as `<name>.png` in [`screenshot_dir`]; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let path = screenshot_dir().join(format!("{name}.png"));
        match self.wd.screenshot().await {
            Ok(png) => {
                if let Err(e) = std::fs::write(&path, png) {
                    eprintln!("cannot write {}: {e}", path.display());
                } else {
                    eprintln!("screenshot: {}", path.display());
                }
            }
            Err(e) => eprintln!("{}: screenshot failed: {e}", self.name),
        }
        path
    }

    /// Signs in through the sign-in form and waits for the live connection.
    pub async fn sign_in(&self, base: &str, username: &str, password: &str) {
        self.goto(&format!("{base}/")).await;
        self.wait("the sign-in form", "!document.getElementById('auth').hidden").await;
        self.clear("#auth-username").await;
        self.type_into("#auth-username", username).await;
        self.type_into("#auth-password", password).await;
        self.click("#auth-submit").await;
        self.wait_live().await;
    }

    /// Waits until the app shows and its WebSocket is live.
    pub async fn wait_live(&self) {
        self.wait(
            "the app with a live connection",
            "!document.getElementById('app').hidden && document.body.dataset.conn === 'live'",
        )
        .await;
    }

    /// Clicks the chat in the sidebar and waits until its messages are loaded.
    pub async fn open_chat(&self, chat_id: &str) {
        self.click(&format!(".chat-item[data-chat-id=\"{chat_id}\"]")).await;
        self.wait_args(
            "the chat to load",
            "document.getElementById('chat').dataset.chatId === arguments[0] && \
             document.getElementById('chat').dataset.loaded === '1'",
            vec![json!(chat_id)],
        )
        .await;
    }

    /// Waits until a confirmed message whose body text contains `text` is shown; returns its id.
    pub async fn wait_message(&self, text: &str) -> String {
        let v = self
            .wait_args(
                &format!("a message containing {text:?}"),
                "(() => { for (const m of document.querySelectorAll('#msg-list .msg[data-id]')) { \
                   const b = m.querySelector('.msg-body'); \
                   if (b && b.textContent.includes(arguments[0])) return m.dataset.id; } \
                 return null; })()",
                vec![json!(text)],
            )
            .await;
        v.as_str().unwrap_or_default().to_string()
    }

    /// How many message elements (confirmed ones) contain `text`.
    pub async fn count_messages(&self, text: &str) -> u64 {
        self.js_args(
            "let n = 0; for (const m of document.querySelectorAll('#msg-list .msg')) { \
               const b = m.querySelector('.msg-body'); if (b && b.textContent.includes(arguments[0])) n++; } \
             return n;",
            vec![json!(text)],
        )
        .await
        .as_u64()
        .unwrap_or(0)
    }

    /// Hovers the message (so its tools show) and clicks its tool `act`.
    pub async fn message_tool(&self, id: &str, act: &str) {
        let sel = format!(".msg[data-id=\"{id}\"]");
        let m = self.el(&sel).await;
        // Hover by moving the pointer onto the message.
        use fantoccini::actions::InputSource;
        let actions = fantoccini::actions::MouseActions::new("mouse".to_string()).then(
            fantoccini::actions::PointerAction::MoveToElement {
                element: m.clone(),
                duration: None,
                x: 0.0,
                y: 0.0,
            },
        );
        if let Err(e) = self.wd.perform_actions(actions).await {
            self.fail(&format!("hover {sel}: {e}")).await;
        }
        self.click(&format!("{sel} .msg-tools button[data-act=\"{act}\"]")).await;
    }

    /// Asserts nothing bad happened on the page: no CSP violation, no uncaught script error,
    /// no XSS flag set and no alert/confirm/prompt open.
    pub async fn assert_clean(&self, ctx: &str) {
        match self.wd.get_alert_text().await {
            Err(e) if e.is_no_such_alert() => {}
            Ok(text) => {
                let _ = self.wd.dismiss_alert().await;
                panic!("{}: {ctx}: a JavaScript dialog is open: {text:?}", self.name);
            }
            Err(e) => panic!("{}: {ctx}: checking for dialogs: {e}", self.name),
        }
        let v = self
            .eval(
                "{csp: window.__confabCsp || null, errors: window.__confabErrors || null, \
                  xss: window.__xss === undefined ? null : window.__xss, watch: !!window.__confabWatch}",
            )
            .await;
        assert_eq!(
            v["watch"],
            json!(true),
            "{}: {ctx}: watch.js did not install its listeners",
            self.name
        );
        assert_eq!(
            v["xss"],
            Value::Null,
            "{}: {ctx}: an XSS payload ran (window.__xss = {})",
            self.name,
            v["xss"]
        );
        assert_eq!(v["csp"], json!([]), "{}: {ctx}: Content-Security-Policy violations", self.name);
        assert_eq!(v["errors"], json!([]), "{}: {ctx}: uncaught script errors", self.name);
    }
}

/// A PNG (8-bit RGB, stored deflate blocks) of `w`×`h` pixels coloured by `f(x, y)`.
pub fn png_rgb(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in data {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut c = kind.to_vec();
        c.extend_from_slice(data);
        out.extend_from_slice(&c);
        out.extend_from_slice(&crc32(&c).to_be_bytes());
    }
    let mut raw = Vec::with_capacity(((w * 3 + 1) * h) as usize);
    for y in 0..h {
        raw.push(0);
        for x in 0..w {
            raw.extend_from_slice(&f(x, y));
        }
    }
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65535).collect();
    for (i, b) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        let len = b.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(b);
    }
    let (mut a, mut bsum) = (1u32, 0u32);
    for &x in &raw {
        a = (a + u32::from(x)) % 65521;
        bsum = (bsum + a) % 65521;
    }
    z.extend_from_slice(&((bsum << 16) | a).to_be_bytes());
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// Uploads `bytes` as `name` through `POST /api/v1/media` with `client`'s session; returns the
/// attachment JSON (panics on failure).
pub async fn upload_media(client: &crate::common::Client, name: &str, bytes: Vec<u8>) -> Value {
    let http = reqwest::Client::builder().no_proxy().build().expect("reqwest client");
    let mut url = match reqwest::Url::parse(&format!("{}/api/v1/media", client.base())) {
        Ok(u) => u,
        Err(e) => panic!("url: {e}"),
    };
    url.query_pairs_mut().append_pair("name", name);
    let mut req = http
        .post(url)
        .header("origin", client.own_origin())
        .header("content-type", "application/octet-stream")
        .body(bytes);
    if let Some(c) = client.cookie_header() {
        req = req.header("cookie", c);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => panic!("upload {name:?}: {e}"),
    };
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(status, 201, "upload {name:?}: HTTP {status}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    v["attachment"].clone()
}

/// A Chrome DevTools Protocol command sent through chromedriver (`goog/cdp/execute`).
#[derive(Debug)]
struct CdpCommand {
    cmd: String,
    params: Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for CdpCommand {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/goog/cdp/execute", session_id.unwrap_or_default()))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(json!({"cmd": self.cmd, "params": self.params}).to_string()))
    }
}

impl Browser {
    /// Evaluates `expr` (awaiting a promise) in this browser's running service worker, through
    /// Chromium's own DevTools endpoint: chromedriver's command only reaches the page.
    pub async fn eval_in_service_worker(&self, expr: &str) -> Result<Value, String> {
        use futures_util::{SinkExt, StreamExt};
        let port_file = self.profile.path().join("DevToolsActivePort");
        let port = std::fs::read_to_string(&port_file)
            .map_err(|e| format!("{}: {e}", port_file.display()))?;
        let port = port.lines().next().unwrap_or_default().trim().to_string();
        let deadline = Instant::now() + UI_TIMEOUT;
        let socket_url = loop {
            let targets: Value = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            let worker = targets.as_array().and_then(|targets| {
                targets
                    .iter()
                    .find(|t| t["type"] == "service_worker")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str())
                    .map(str::to_string)
            });
            match worker {
                Some(url) => break url,
                None if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                None => return Err(format!("no running service worker among {targets}")),
            }
        };
        let (mut socket, _) = tokio_tungstenite::connect_async(socket_url.as_str())
            .await
            .map_err(|e| e.to_string())?;
        let command = json!({"id": 1, "method": "Runtime.evaluate", "params": {
            "expression": expr, "awaitPromise": true, "returnByValue": true}});
        socket
            .send(tokio_tungstenite::tungstenite::Message::text(command.to_string()))
            .await
            .map_err(|e| e.to_string())?;
        while let Some(message) = tokio::time::timeout(UI_TIMEOUT, socket.next())
            .await
            .map_err(|_| "no answer from the service worker".to_string())?
        {
            let message = message.map_err(|e| e.to_string())?;
            let Ok(text) = message.to_text() else {
                continue;
            };
            let answer: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
            if answer["id"] != 1 {
                continue;
            }
            if let Some(thrown) = answer["result"].get("exceptionDetails") {
                return Err(format!("the service worker threw: {thrown}"));
            }
            return Ok(answer["result"]["result"]["value"].clone());
        }
        Err("the DevTools socket closed".into())
    }

    /// Runs a DevTools command (e.g. `ServiceWorker.deliverPushMessage`) in this browser.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Result<Value, String> {
        self.wd
            .issue_cmd(CdpCommand { cmd: cmd.to_string(), params })
            .await
            .map_err(|e| e.to_string())
    }
}
