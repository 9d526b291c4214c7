//! A WebSocket client for `/api/v1/ws`.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use reqwest::header::HeaderValue;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::client::truncate;

/// Default time to wait for an expected event.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

type Sink = SplitSink<WsStream, WsMessage>;

/// Why a WebSocket could not be opened.
#[derive(Debug, Clone)]
pub struct WsConnectError {
    /// The HTTP status of a refused upgrade.
    pub status: Option<u16>,
    /// The body of a refused upgrade, if any.
    pub body: Option<String>,
    pub message: String,
}

impl fmt::Display for WsConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "status={:?} body={:?}: {}", self.status, self.body, self.message)
    }
}

impl std::error::Error for WsConnectError {}

/// What the reader task saw.
#[derive(Debug)]
enum Incoming {
    Frame(Value),
    /// A text frame that is not JSON, or a binary frame.
    Bad(String),
    Closed(String),
}

/// Outcome of [`WsClient::recv`].
#[derive(Debug, Clone, PartialEq)]
pub enum WsNext {
    Event(Value),
    Timeout,
    Closed(String),
}

/// A WebSocket stream to the node.
pub type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens `/api/v1/ws` on `base` (`http://127.0.0.1:PORT`): the upgrade only, nothing read.
async fn handshake(
    base: &str,
    cookie: Option<HeaderValue>,
    origin: Option<&str>,
    query: &str,
) -> Result<WsStream, WsConnectError> {
    let ws_base = base.replacen("http://", "ws://", 1);
    let url = if query.is_empty() {
        format!("{ws_base}/api/v1/ws")
    } else {
        format!("{ws_base}/api/v1/ws?{query}")
    };
    let err = |message: String| WsConnectError { status: None, body: None, message };
    let mut req =
        url.as_str().into_client_request().map_err(|e| err(format!("bad url {url}: {e}")))?;
    if let Some(c) = cookie {
        req.headers_mut().insert("cookie", c);
    }
    if let Some(o) = origin {
        let v = HeaderValue::from_str(o).map_err(|e| err(format!("bad origin {o}: {e}")))?;
        req.headers_mut().insert("origin", v);
    }
    let connect = tokio_tungstenite::connect_async(req);
    match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Err(_) => Err(err("WebSocket handshake timed out".into())),
        Ok(Err(tungstenite::Error::Http(resp))) => {
            let status = resp.status().as_u16();
            let body = resp.body().as_ref().map(|b| String::from_utf8_lossy(b).to_string());
            Err(WsConnectError { status: Some(status), body, message: "upgrade refused".into() })
        }
        Ok(Err(e)) => Err(err(format!("WebSocket connect: {e}"))),
        Ok(Ok((stream, _response))) => Ok(stream),
    }
}

/// Opens `/api/v1/ws` and waits for its `hello`, without the checking reader of [`WsClient`]:
/// the caller reads the later frames straight off the stream. For load generators, where
/// parsing every frame into a `Value` and checking it would cost more than the node's work
/// being measured.
pub async fn connect_raw(
    base: &str,
    cookie: Option<HeaderValue>,
    origin: Option<&str>,
) -> Result<(WsSender, SplitStream<WsStream>), WsConnectError> {
    let (sink, mut stream) = handshake(base, cookie, origin, "").await?.split();
    let first = tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await;
    let hello = match &first {
        Ok(Some(Ok(WsMessage::Text(text)))) => serde_json::from_str::<Value>(text.as_str()).ok(),
        _ => None,
    };
    if hello.as_ref().map(ev_type) != Some("hello") {
        return Err(WsConnectError {
            status: None,
            body: None,
            message: format!("the first frame is not a hello: {first:?}"),
        });
    }
    Ok((WsSender { sink }, stream))
}

/// A connected `/api/v1/ws`: a reader task buffers incoming JSON frames; helpers wait for
/// frames by predicate and keep the non-matching ones for later.
pub struct WsClient {
    sink: Sink,
    rx: mpsc::UnboundedReceiver<Incoming>,
    backlog: VecDeque<Value>,
    /// The `hello` frame.
    pub hello: Value,
    last_cursor: Option<u64>,
    closed: Option<String>,
    #[allow(dead_code)]
    reader: AbortOnDrop,
}

/// The `type` of an event.
pub fn ev_type(v: &Value) -> &str {
    v.get("type").and_then(Value::as_str).unwrap_or("")
}

/// The `cursor` of an event.
pub fn ev_cursor(v: &Value) -> Option<u64> {
    v.get("cursor").and_then(Value::as_u64)
}

/// `message.id` of a message event.
pub fn ev_message_id(v: &Value) -> Option<&str> {
    v.get("message").and_then(|m| m.get("id")).and_then(Value::as_str)
}

/// `chat_id` of an event: the top-level field or the message's.
pub fn ev_chat_id(v: &Value) -> Option<&str> {
    v.get("chat_id")
        .and_then(Value::as_str)
        .or_else(|| v.get("message").and_then(|m| m.get("chat_id")).and_then(Value::as_str))
        .or_else(|| v.get("chat").and_then(|m| m.get("id")).and_then(Value::as_str))
}

/// Decodes the `message` of a message event as the spec's `Message`.
pub fn ev_message(v: &Value) -> crate::types::Message {
    match v.get("message").cloned().map(serde_json::from_value::<crate::types::Message>) {
        Some(Ok(m)) => m,
        Some(Err(e)) => {
            panic!("event's `message` does not match the spec's Message shape: {e}; event: {v}")
        }
        None => panic!("event has no `message`: {v}"),
    }
}

impl WsClient {
    /// Connects to `base` (`http://127.0.0.1:PORT`) with the given cookie header and Origin,
    /// and waits (10 s) for the `hello` frame, which must come first.
    pub async fn connect(
        base: &str,
        cookie: Option<HeaderValue>,
        origin: Option<&str>,
        cursor: Option<u64>,
    ) -> Result<WsClient, WsConnectError> {
        let query = cursor.map(|c| format!("cursor={c}")).unwrap_or_default();
        Self::connect_query(base, cookie, origin, &query).await
    }

    /// [`WsClient::connect`] with a query string of its own (`cursor=…&device=…`).
    pub async fn connect_query(
        base: &str,
        cookie: Option<HeaderValue>,
        origin: Option<&str>,
        query: &str,
    ) -> Result<WsClient, WsConnectError> {
        let err = |message: String| WsConnectError { status: None, body: None, message };
        let stream = handshake(base, cookie, origin, query).await?;
        let (sink, mut stream) = stream.split();
        let (tx, rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            loop {
                let item = stream.next().await;
                let msg = match item {
                    None => {
                        let _ = tx.send(Incoming::Closed("stream ended".into()));
                        break;
                    }
                    Some(Err(e)) => {
                        let _ = tx.send(Incoming::Closed(format!("error: {e}")));
                        break;
                    }
                    Some(Ok(m)) => m,
                };
                let incoming = match msg {
                    WsMessage::Text(t) => match serde_json::from_str::<Value>(t.as_str()) {
                        Ok(v) => Incoming::Frame(v),
                        Err(e) => Incoming::Bad(format!("non-JSON text frame ({e}): {t}")),
                    },
                    WsMessage::Binary(b) => {
                        Incoming::Bad(format!("unexpected binary frame of {} bytes", b.len()))
                    }
                    WsMessage::Close(f) => {
                        let _ = tx.send(Incoming::Closed(format!("close frame {f:?}")));
                        break;
                    }
                    _ => continue,
                };
                if tx.send(incoming).is_err() {
                    break;
                }
            }
        });
        let mut ws = WsClient {
            sink,
            rx,
            backlog: VecDeque::new(),
            hello: Value::Null,
            last_cursor: query
                .split('&')
                .find_map(|pair| pair.strip_prefix("cursor="))
                .and_then(|c| c.parse().ok()),
            closed: None,
            reader: AbortOnDrop(reader),
        };
        let first = match tokio::time::timeout(EVENT_TIMEOUT, ws.rx.recv()).await {
            Err(_) => return Err(err("no hello frame within 10 s".into())),
            Ok(None) => return Err(err("connection closed before hello".into())),
            Ok(Some(Incoming::Closed(r))) => {
                return Err(err(format!("connection closed before hello: {r}")))
            }
            Ok(Some(Incoming::Bad(b))) => return Err(err(format!("bad first frame: {b}"))),
            Ok(Some(Incoming::Frame(v))) => v,
        };
        if ev_type(&first) != "hello" || ev_cursor(&first).is_none() {
            return Err(err(format!(
                "first frame is not {{\"type\":\"hello\",\"cursor\":N}}: {first}"
            )));
        }
        if ws.last_cursor.is_none() {
            ws.last_cursor = ev_cursor(&first);
        }
        ws.hello = first;
        Ok(ws)
    }

    /// The `cursor` of the `hello` frame.
    pub fn hello_cursor(&self) -> u64 {
        ev_cursor(&self.hello).unwrap_or_default()
    }

    /// The highest cursor among the frames taken from the socket so far (or the `cursor=`
    /// connected with, or the hello cursor).
    pub fn last_cursor(&self) -> Option<u64> {
        self.last_cursor
    }

    /// Why the socket closed, once it has.
    pub fn closed_reason(&self) -> Option<&str> {
        self.closed.as_deref()
    }

    fn note(&mut self, v: &Value) {
        if let Some(c) = ev_cursor(v) {
            self.last_cursor = Some(self.last_cursor.map_or(c, |l| l.max(c)));
        }
    }

    /// Takes one frame from the socket (not the backlog).
    async fn pull(&mut self, deadline: Instant) -> WsNext {
        if let Some(r) = &self.closed {
            return WsNext::Closed(r.clone());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.rx.recv()).await {
            Err(_) => WsNext::Timeout,
            Ok(None) => {
                self.closed = Some("reader ended".into());
                WsNext::Closed("reader ended".into())
            }
            Ok(Some(Incoming::Closed(r))) => {
                self.closed = Some(r.clone());
                WsNext::Closed(r)
            }
            Ok(Some(Incoming::Bad(b))) => {
                panic!("WebSocket contract violation: {b}")
            }
            Ok(Some(Incoming::Frame(v))) => {
                self.note(&v);
                WsNext::Event(v)
            }
        }
    }

    /// The next frame (backlog first) within `timeout`.
    pub async fn recv(&mut self, timeout: Duration) -> WsNext {
        if let Some(v) = self.backlog.pop_front() {
            return WsNext::Event(v);
        }
        self.pull(Instant::now() + timeout).await
    }

    /// The next frame within `timeout`, or `None` on timeout or close.
    pub async fn next_event(&mut self, timeout: Duration) -> Option<Value> {
        match self.recv(timeout).await {
            WsNext::Event(v) => Some(v),
            _ => None,
        }
    }

    /// Waits for the first frame matching `pred` (the backlog first); frames that do not match
    /// are kept, in order, for later calls.
    pub async fn try_wait_for<F>(&mut self, timeout: Duration, mut pred: F) -> Option<Value>
    where
        F: FnMut(&Value) -> bool,
    {
        if let Some(i) = self.backlog.iter().position(&mut pred) {
            return self.backlog.remove(i);
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.pull(deadline).await {
                WsNext::Event(v) => {
                    if pred(&v) {
                        return Some(v);
                    }
                    self.backlog.push_back(v);
                }
                WsNext::Timeout | WsNext::Closed(_) => return None,
            }
        }
    }

    /// Like [`WsClient::try_wait_for`] with [`EVENT_TIMEOUT`]; panics describing `what` and the
    /// frames seen meanwhile.
    pub async fn wait_for<F>(&mut self, what: &str, pred: F) -> Value
    where
        F: FnMut(&Value) -> bool,
    {
        match self.try_wait_for(EVENT_TIMEOUT, pred).await {
            Some(v) => v,
            None => panic!(
                "WebSocket: no {what} within {EVENT_TIMEOUT:?} (closed: {:?}); other frames seen: [{}]",
                self.closed,
                self.backlog
                    .iter()
                    .map(|v| truncate(&v.to_string(), 300))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// Waits for an event of `ty` matching `pred`.
    pub async fn wait_type<F>(&mut self, ty: &str, mut pred: F) -> Value
    where
        F: FnMut(&Value) -> bool,
    {
        let what = format!("`{ty}` event");
        self.wait_for(&what, |v| ev_type(v) == ty && pred(v)).await
    }

    /// Waits for `message.created` of the message with this id.
    pub async fn wait_created(&mut self, message_id: &str) -> Value {
        let what = format!("message.created for {message_id}");
        self.wait_for(&what, |v| {
            ev_type(v) == "message.created" && ev_message_id(v) == Some(message_id)
        })
        .await
    }

    /// Waits for `message.created` whose body is `body`.
    pub async fn wait_created_body(&mut self, body: &str) -> Value {
        let what = format!("message.created with body {body:?}");
        self.wait_for(&what, |v| {
            ev_type(v) == "message.created"
                && v.get("message").and_then(|m| m.get("body")).and_then(Value::as_str)
                    == Some(body)
        })
        .await
    }

    /// Returns the backlog and every frame that arrives until none has arrived for `quiet`
    /// (bounded by 30 s overall).
    pub async fn drain(&mut self, quiet: Duration) -> Vec<Value> {
        let mut out: Vec<Value> = self.backlog.drain(..).collect();
        let hard = Instant::now() + Duration::from_secs(30);
        loop {
            let deadline = (Instant::now() + quiet).min(hard);
            match self.pull(deadline).await {
                WsNext::Event(v) => out.push(v),
                WsNext::Timeout | WsNext::Closed(_) => return out,
            }
        }
    }

    /// Waits until the server closes the socket; true if it did within `timeout`.
    /// Frames that arrive meanwhile are kept.
    pub async fn wait_closed(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self.pull(deadline).await {
                WsNext::Event(v) => self.backlog.push_back(v),
                WsNext::Closed(_) => return true,
                WsNext::Timeout => return false,
            }
        }
    }

    /// Sends a JSON frame.
    pub async fn send_json(&mut self, v: &Value) -> Result<(), tungstenite::Error> {
        self.sink.send(WsMessage::text(v.to_string())).await
    }

    /// Sends a raw text frame.
    pub async fn send_text(&mut self, s: String) -> Result<(), tungstenite::Error> {
        self.sink.send(WsMessage::text(s)).await
    }

    /// `{"type":"ping"}` and waits for `{"type":"pong"}`.
    pub async fn ping(&mut self) -> Value {
        if let Err(e) = self.send_json(&json!({"type": "ping"})).await {
            panic!("WebSocket ping send failed: {e}");
        }
        self.wait_for("pong", |v| ev_type(v) == "pong").await
    }

    /// Sends a `send` frame and waits for its `ack` (Ok, the ack's message) or `error`
    /// (Err, the error frame) with the same `client_id`.
    pub async fn send_message(
        &mut self,
        client_id: &str,
        chat_id: &str,
        body: &str,
        reply_to: Option<&str>,
    ) -> Result<Value, Value> {
        let frame = json!({"type": "send", "client_id": client_id, "chat_id": chat_id,
                           "body": body, "reply_to": reply_to});
        if let Err(e) = self.send_json(&frame).await {
            return Err(json!({"type": "error", "code": "<transport>", "message": e.to_string()}));
        }
        let what = format!("ack or error for client_id {client_id}");
        let v = self
            .wait_for(&what, |v| {
                matches!(ev_type(v), "ack" | "error")
                    && v.get("client_id").and_then(Value::as_str) == Some(client_id)
            })
            .await;
        if ev_type(&v) == "ack" {
            Ok(v.get("message").cloned().unwrap_or(Value::Null))
        } else {
            Err(v)
        }
    }

    /// Sends a `read` frame.
    pub async fn send_read(&mut self, chat_id: &str, message_id: &str) {
        let frame = json!({"type": "read", "chat_id": chat_id, "message_id": message_id});
        if let Err(e) = self.send_json(&frame).await {
            panic!("WebSocket read frame send failed: {e}");
        }
    }

    /// Sends a close frame and stops reading.
    pub async fn close(mut self) {
        let _ = self.sink.send(WsMessage::Close(None)).await;
        let _ = self.sink.close().await;
    }

    /// Splits off the sending half, for a separate sender task; the rest keeps receiving.
    pub fn into_parts(self) -> (WsSender, WsReceiver) {
        let WsClient { sink, rx, backlog, hello, last_cursor, closed, reader } = self;
        (WsSender { sink }, WsReceiver { rx, backlog, hello, last_cursor, closed, reader })
    }
}

/// The sending half of a split [`WsClient`].
pub struct WsSender {
    sink: Sink,
}

impl WsSender {
    /// Sends a JSON frame.
    pub async fn send_json(&mut self, v: &Value) -> Result<(), tungstenite::Error> {
        self.sink.send(WsMessage::text(v.to_string())).await
    }

    /// Closes the socket.
    pub async fn close(&mut self) {
        let _ = self.sink.send(WsMessage::Close(None)).await;
        let _ = self.sink.close().await;
    }
}

/// The receiving half of a split [`WsClient`].
pub struct WsReceiver {
    rx: mpsc::UnboundedReceiver<Incoming>,
    backlog: VecDeque<Value>,
    pub hello: Value,
    pub last_cursor: Option<u64>,
    closed: Option<String>,
    #[allow(dead_code)]
    reader: AbortOnDrop,
}

impl WsReceiver {
    /// The next frame within `timeout`.
    pub async fn recv(&mut self, timeout: Duration) -> WsNext {
        if let Some(v) = self.backlog.pop_front() {
            return WsNext::Event(v);
        }
        if let Some(r) = &self.closed {
            return WsNext::Closed(r.clone());
        }
        match tokio::time::timeout(timeout, self.rx.recv()).await {
            Err(_) => WsNext::Timeout,
            Ok(None) => {
                self.closed = Some("reader ended".into());
                WsNext::Closed("reader ended".into())
            }
            Ok(Some(Incoming::Closed(r))) => {
                self.closed = Some(r.clone());
                WsNext::Closed(r)
            }
            Ok(Some(Incoming::Bad(b))) => panic!("WebSocket contract violation: {b}"),
            Ok(Some(Incoming::Frame(v))) => {
                if let Some(c) = ev_cursor(&v) {
                    self.last_cursor = Some(self.last_cursor.map_or(c, |l| l.max(c)));
                }
                WsNext::Event(v)
            }
        }
    }
}

/// Aborts the reader task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
