//! Presence, typing and notification flags over real sockets: a node served in-process on
//! 127.0.0.1:0, real HTTP and WebSocket clients.

use super::harness::temp_dir;
use confab_node::config::{Config, Limits};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct LiveNode {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    dir: PathBuf,
}

impl LiveNode {
    async fn start(limits: Limits) -> Self {
        let dir = temp_dir();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let config = Config { data_dir: dir.clone(), limits, ..Config::default() };
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            confab_node::server::serve(listener, config, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Self { address, stop: Some(stop), dir }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    async fn user(&self, name: &str) -> User {
        let http = reqwest::Client::new();
        let response = http
            .post(self.url("/api/v1/auth/register"))
            .json(&json!({"username": name, "password": "password123"}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "register {name}");
        let cookie = response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        User { http, cookie, base: self.url(""), address: self.address }
    }
}

impl Drop for LiveNode {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct User {
    http: reqwest::Client,
    cookie: String,
    base: String,
    address: SocketAddr,
}

impl User {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("cookie", &self.cookie);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let value = response.json::<Value>().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {value}");
        value
    }

    async fn ws(&self) -> Ws {
        let mut request = format!("ws://{}/api/v1/ws", self.address).into_client_request().unwrap();
        request.headers_mut().insert("cookie", self.cookie.parse().unwrap());
        request.headers_mut().insert("origin", format!("http://{}", self.address).parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        let hello = next_frame(&mut ws, Duration::from_secs(5)).await.expect("hello");
        assert_eq!(hello["type"], "hello");
        ws
    }
}

async fn next_frame(ws: &mut Ws, wait: Duration) -> Option<Value> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return serde_json::from_str(&text).ok(),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

/// The next frame matching `wanted` within `wait`, skipping others.
async fn wait_for(ws: &mut Ws, wait: Duration, wanted: impl Fn(&Value) -> bool) -> Option<Value> {
    let deadline = Instant::now() + wait;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let frame = next_frame(ws, left).await?;
        if wanted(&frame) {
            return Some(frame);
        }
    }
    None
}

fn fast_presence() -> Limits {
    Limits {
        presence_heartbeat_interval_ms: 200,
        presence_heartbeats_missed_max: 3,
        ..Limits::default()
    }
}

async fn shared_channel(node: &LiveNode, names: &[&str]) -> (Vec<User>, String) {
    let mut users = Vec::new();
    for name in names {
        users.push(node.user(name).await);
    }
    let chat = users[0]
        .call(
            reqwest::Method::POST,
            "/api/v1/channels",
            Some(json!({"name": "general", "visibility": "public"})),
        )
        .await;
    let id = chat["id"].as_str().unwrap().to_string();
    for user in &users[1..] {
        user.call(reqwest::Method::POST, &format!("/api/v1/chats/{id}/join"), None).await;
    }
    (users, id)
}

fn presence_of<'a>(user: &'a str, status: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |frame| {
        frame["type"] == "presence" && frame["user_id"] == user && frame["status"] == status
    }
}

#[tokio::test]
async fn presence_goes_offline_after_missed_heartbeats_and_only_changes_are_sent() {
    let node = LiveNode::start(fast_presence()).await;
    let (users, _) = shared_channel(&node, &["alice", "bob"]).await;
    let mut alice = users[0].ws().await;
    let mut bob = users[1].ws().await;
    let online =
        wait_for(&mut alice, Duration::from_secs(5), presence_of("bob@local", "online")).await;
    assert!(online.is_some(), "alice sees bob come online");
    let last_heartbeat = Instant::now();
    bob.close(None).await.unwrap();
    let offline =
        wait_for(&mut alice, Duration::from_secs(5), presence_of("bob@local", "offline")).await;
    let offline = offline.expect("alice sees bob go offline");
    assert!(
        last_heartbeat.elapsed() >= Duration::from_millis(600),
        "not before 3 missed heartbeats"
    );
    assert!(offline["last_active_ms"].as_u64().unwrap() > 0);
    // The HTTP view agrees.
    let people = users[0].call(reqwest::Method::GET, "/api/v1/presence", None).await;
    let bob_view =
        people.as_array().unwrap().iter().find(|p| p["user_id"] == "bob@local").unwrap().clone();
    assert_eq!(bob_view["status"], "offline");
}

#[tokio::test]
async fn a_quick_reconnect_makes_no_flap() {
    let node = LiveNode::start(fast_presence()).await;
    let (users, _) = shared_channel(&node, &["alice", "bob"]).await;
    let mut alice = users[0].ws().await;
    let mut bob = users[1].ws().await;
    assert!(wait_for(&mut alice, Duration::from_secs(5), presence_of("bob@local", "online"))
        .await
        .is_some());
    bob.close(None).await.unwrap();
    let mut bob = users[1].ws().await;
    let started = Instant::now();
    let heartbeats = tokio::spawn(async move {
        while started.elapsed() < Duration::from_secs(2) {
            bob.send(Message::text(r#"{"type":"heartbeat","idle":false}"#)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bob
    });
    let flap = wait_for(&mut alice, Duration::from_secs(2), |f| {
        f["type"] == "presence" && f["user_id"] == "bob@local"
    })
    .await;
    assert_eq!(flap, None, "no presence change for bob during a quick reconnect");
    drop(heartbeats.await.unwrap());
}

#[tokio::test]
async fn typing_reaches_members_only_and_is_rate_limited() {
    let node = LiveNode::start(Limits::default()).await;
    let (users, chat) = shared_channel(&node, &["alice", "bob"]).await;
    let eve = node.user("eve").await;
    let mut alice = users[0].ws().await;
    let mut bob = users[1].ws().await;
    let mut eve_ws = eve.ws().await;
    let typing = json!({"type": "typing", "chat_id": chat}).to_string();
    bob.send(Message::text(typing.clone())).await.unwrap();
    bob.send(Message::text(typing)).await.unwrap();
    let is_typing = |f: &Value| f["type"] == "typing";
    let first = wait_for(&mut alice, Duration::from_secs(3), is_typing)
        .await
        .expect("alice sees bob typing");
    assert_eq!(
        (first["user_id"].as_str(), first["chat_id"].as_str()),
        (Some("bob@local"), Some(chat.as_str()))
    );
    assert!(first["expires_ms"].as_u64().is_some());
    assert_eq!(
        wait_for(&mut alice, Duration::from_millis(800), is_typing).await,
        None,
        "the second is suppressed"
    );
    assert_eq!(
        wait_for(&mut eve_ws, Duration::from_millis(300), is_typing).await,
        None,
        "a non-member sees nothing"
    );
    assert_eq!(
        wait_for(&mut bob, Duration::from_millis(300), is_typing).await,
        None,
        "not echoed to the typist"
    );
}

#[tokio::test]
async fn notify_follows_mentions_levels_and_do_not_disturb() {
    let node = LiveNode::start(Limits::default()).await;
    let (users, chat) = shared_channel(&node, &["alice", "bob"]).await;
    let mut alice = users[0].ws().await;
    let post = format!("/api/v1/chats/{chat}/messages");
    assert!(
        !notify_for(&users[1], &post, &mut alice, "plain message").await,
        "channels notify on mentions by default"
    );
    assert!(notify_for(&users[1], &post, &mut alice, "hey @alice").await);
    assert!(notify_for(&users[1], &post, &mut alice, "@here standup").await);
    users[0]
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/chats/{chat}/notifications"),
            Some(json!({"level": "all"})),
        )
        .await;
    assert!(notify_for(&users[1], &post, &mut alice, "now everything notifies").await);
    let me =
        users[0].call(reqwest::Method::PUT, "/api/v1/me/dnd", Some(json!({"enabled": true}))).await;
    assert_eq!(me["dnd"], true);
    assert!(!notify_for(&users[1], &post, &mut alice, "@alice during do not disturb").await);
    users[0].call(reqwest::Method::PUT, "/api/v1/me/dnd", Some(json!({"enabled": false}))).await;
    users[0]
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/chats/{chat}/notifications"),
            Some(json!({"level": "mute"})),
        )
        .await;
    assert!(!notify_for(&users[1], &post, &mut alice, "@alice in a muted chat").await);
    let list = users[0].call(reqwest::Method::GET, "/api/v1/chats", None).await;
    assert_eq!(list[0]["notification_level"], "mute");
    assert!(list[0]["mention_count"].as_u64().unwrap() >= 3, "mentions still count while muted");
}

/// Bob posts `body`; returns the `notify` flag of the frame Alice's WebSocket gets.
async fn notify_for(bob: &User, post: &str, alice: &mut Ws, body: &str) -> bool {
    bob.call(reqwest::Method::POST, post, Some(json!({"body": body}))).await;
    let frame = wait_for(alice, Duration::from_secs(3), |f| f["type"] == "message.created")
        .await
        .expect("message.created");
    frame["notify"].as_bool().expect("notify flag")
}
