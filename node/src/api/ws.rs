//! The live-event WebSocket (`GET /api/v1/ws?cursor=N`): one per device session.
//!
//! Order of work on connect: subscribe to the broadcast, send `hello` with the newest cursor,
//! replay the stored log after the client's cursor, then follow the broadcast, skipping
//! anything at or below the last cursor handled. A session that lags behind the broadcast
//! goes back to the log, so nothing is lost and nothing is sent twice.

use super::caller::Caller;
use super::messages::{self, SendBody};
use super::session::{origin_allowed, session_token, CurrentUser};
use super::AppState;
use crate::accounts::TokenBucket;
use crate::engine::Command;
use crate::error::ApiError;
use crate::events::{self, Audience, Ephemeral, EphemeralAudience, Event, EventBody};
use crate::live::PresenceInput;
use crate::model::{is_notifying, NotificationLevel, UserRecord};
use crate::views;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use confab_protocol::{ChatId, MessageId};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, Semaphore};

/// Sends one session may have waiting for the engine at once.
const SENDS_IN_FLIGHT_MAX: usize = 256;
/// Ready events written before one flush of the socket.
const EVENTS_PER_FLUSH_MAX: usize = 64;
/// Events read from the log per page while replaying.
const REPLAY_PAGE: usize = 1000;
const PING_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
pub struct WsQuery {
    cursor: Option<u64>,
    /// The registered device this session is (`GET /devices`): while it is connected, the
    /// node does not push to it through its relay.
    device: Option<String>,
}

/// The close code of a session refused by a limit (RFC 6455 "policy violation").
const CLOSE_POLICY: u16 = 1008;

/// Initial WebSocket read buffer per connection.
const READ_BUFFER_BYTES: usize = 8 * 1024;

pub async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Query<WsQuery>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let origin_ok = headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .is_some_and(|origin| origin_allowed(&headers, origin));
    if !origin_ok {
        return Err(ApiError::forbidden(
            "forbidden_origin",
            "WebSocket upgrade needs a same-origin Origin header",
        ));
    }
    let token = session_token(&headers).ok_or_else(ApiError::unauthenticated)?;
    let user = crate::accounts::session_user(state.store.as_ref(), &token)?
        .ok_or_else(ApiError::unauthenticated)?;
    let _ = CurrentUser(user.clone());
    let frame_max = state.config.limits.websocket_frame_bytes_max;
    let cursor = query.cursor;
    let device = match &query.device {
        None => None,
        Some(text) => {
            let id: confab_protocol::DeviceId =
                text.parse().map_err(|_| ApiError::not_found("device"))?;
            crate::views::device(state.store.as_ref(), &user.id, &id)?
                .ok_or_else(|| ApiError::not_found("device"))?;
            Some(id)
        }
    };
    let sessions_max = state.config.limits.websocket_connections_per_user_max;
    let slot = state.websocket_sessions.try_connect(&user.id, sessions_max);
    Ok(upgrade
        .max_message_size(frame_max)
        .max_frame_size(frame_max)
        // tungstenite allocates its read buffer up front (128 KiB by default); chat frames are
        // small, so start small and let it grow for the rare large one. Saves ~120 MiB per
        // 1,000 connected devices.
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |mut socket| async move {
            let Some(_slot) = slot else {
                tracing::info!(user = %user.id, sessions_max, "websocket refused: too many sessions");
                let reason = format!("too many connections: at most {sessions_max} per user");
                let frame = CloseFrame { code: CLOSE_POLICY, reason: Utf8Bytes::from(reason) };
                let _ = socket.send(Message::Close(Some(frame))).await;
                return;
            };
            let _live = device.map(|device| state.live_devices.connect(device));
            let id = user.id.clone();
            if let Err(error) = Session::new(state, user).run(socket, cursor).await {
                tracing::debug!(user = %id, %error, "websocket session ended");
            }
        }))
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientFrame {
    Ping,
    Send {
        client_id: String,
        chat_id: String,
        #[serde(default)]
        body: String,
        #[serde(default)]
        reply_to: Option<String>,
        #[serde(default)]
        attachments: Vec<super::media::AttachmentRef>,
    },
    Read {
        chat_id: String,
        message_id: String,
    },
    Heartbeat {
        #[serde(default)]
        idle: bool,
    },
    Typing {
        chat_id: String,
    },
}

/// Tells sessions apart for presence (a session is a device).
static NEXT_DEVICE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

struct Session {
    state: AppState,
    user: UserRecord,
    chats: HashSet<ChatId>,
    last_cursor: u64,
    bucket: TokenBucket,
    sends: Arc<Semaphore>,
    close_after: bool,
    /// The user's notification level per chat, and do-not-disturb, for the `notify` flag.
    levels: std::collections::HashMap<ChatId, NotificationLevel>,
    dnd_until_ms: Option<u64>,
    device: u64,
    /// When this session last announced typing in each chat.
    typing_sent: std::collections::HashMap<ChatId, std::time::Instant>,
}

type Sink = futures_util::stream::SplitSink<WebSocket, Message>;

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("socket: {0}")]
    Socket(#[from] axum::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

fn text(frame: String) -> Message {
    Message::Text(Utf8Bytes::from(frame))
}

impl Session {
    fn new(state: AppState, user: UserRecord) -> Self {
        let limits = &state.config.limits;
        let bucket = TokenBucket::new(limits.websocket_frames_per_s, limits.websocket_frames_burst);
        let dnd_until_ms = user.dnd_until_ms;
        Self {
            state,
            user,
            chats: HashSet::new(),
            last_cursor: 0,
            bucket,
            sends: Arc::new(Semaphore::new(SENDS_IN_FLIGHT_MAX)),
            close_after: false,
            levels: std::collections::HashMap::new(),
            dnd_until_ms,
            device: NEXT_DEVICE.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            typing_sent: std::collections::HashMap::new(),
        }
    }

    /// Runs the session; the device counts for presence from connect until it lapses.
    async fn run(mut self, socket: WebSocket, cursor: Option<u64>) -> Result<(), SessionError> {
        let presence = self.state.presence.clone();
        let (user, device) = (self.user.id.clone(), self.device);
        presence.send(PresenceInput::Heartbeat { user: user.clone(), device, idle: false });
        let result = self.serve_socket(socket, cursor).await;
        presence.send(PresenceInput::Disconnect { user, device });
        result
    }

    async fn serve_socket(
        &mut self,
        socket: WebSocket,
        cursor: Option<u64>,
    ) -> Result<(), SessionError> {
        let (mut sink, mut stream) = socket.split();
        let mut events = self.state.hub.subscribe();
        let mut ephemeral = self.state.hub.subscribe_ephemeral();
        let mut shutdown = self.state.shutdown.clone();
        let (acks, mut ack_frames) = mpsc::channel::<String>(SENDS_IN_FLIGHT_MAX);
        self.chats =
            views::user_chats(self.state.store.as_ref(), &self.user.id)?.into_iter().collect();
        self.levels = views::notification_levels(self.state.store.as_ref(), &self.user.id)?;
        let latest = self.state.hub.latest();
        sink.send(text(serde_json::json!({ "type": "hello", "cursor": latest }).to_string()))
            .await?;
        self.last_cursor = latest;
        if let Some(cursor) = cursor.filter(|c| *c < latest) {
            let oldest = events::oldest_cursor(self.state.store.as_ref())?;
            if oldest > cursor + 1 {
                sink.send(text(
                    serde_json::json!({ "type": "resync", "cursor": latest }).to_string(),
                ))
                .await?;
            } else {
                self.last_cursor = cursor;
                self.replay(&mut sink, latest).await?;
            }
        }
        let mut ping = tokio::time::interval(PING_INTERVAL);
        ping.tick().await;
        while !self.close_after {
            tokio::select! {
                received = events.recv() => match received {
                    Ok(event) => {
                        // Under load several events are ready: write them all, then flush
                        // once (one syscall instead of one per frame).
                        self.deliver(&mut sink, &event).await?;
                        for _ in 0..EVENTS_PER_FLUSH_MAX {
                            match events.try_recv() {
                                Ok(event) => self.deliver(&mut sink, &event).await?,
                                Err(broadcast::error::TryRecvError::Lagged(_)) => {
                                    let latest = self.state.hub.latest();
                                    self.replay(&mut sink, latest).await?;
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                        sink.flush().await?;
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let latest = self.state.hub.latest();
                        self.replay(&mut sink, latest).await?;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                frame = stream.next() => match frame {
                    Some(Ok(Message::Text(frame))) => self.on_frame(&mut sink, frame.as_str(), &acks).await?,
                    Some(Ok(Message::Binary(_))) => {
                        let error = ApiError::bad_request("bad_request", "frames are JSON text");
                        sink.send(text(error_frame(None, &error))).await?;
                    }
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Err(error.into()),
                },
                Some(ack) = ack_frames.recv() => sink.send(text(ack)).await?,
                received = ephemeral.recv() => match received {
                    Ok(event) if self.sees_ephemeral(&event) => sink.send(text(event.frame.clone())).await?,
                    // Lost ephemeral events are acceptable: the next change repairs them.
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = ping.tick() => sink.send(Message::Ping(Default::default())).await?,
                _ = shutdown.changed() => {
                    let frame = CloseFrame { code: 1001, reason: Utf8Bytes::from_static("node shutting down") };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    return Ok(());
                }
            }
        }
        let _ = sink.close().await;
        Ok(())
    }

    /// Sends stored events after `last_cursor` up to `up_to`.
    async fn replay(&mut self, sink: &mut Sink, up_to: u64) -> Result<(), SessionError> {
        while self.last_cursor < up_to {
            let page =
                events::read_log(self.state.store.as_ref(), self.last_cursor, up_to, REPLAY_PAGE)?;
            let Some(last) = page.last().map(|e| e.cursor) else {
                break;
            };
            for event in page {
                self.deliver(sink, &event).await?;
            }
            self.last_cursor = self.last_cursor.max(last);
        }
        self.last_cursor = self.last_cursor.max(up_to);
        sink.flush().await?;
        Ok(())
    }

    fn visible(&self, event: &Event) -> bool {
        match &event.audience {
            Audience::All => true,
            Audience::User(user) => *user == self.user.id,
            Audience::Chat(chat) => self.chats.contains(chat),
        }
    }

    async fn deliver(&mut self, sink: &mut Sink, event: &Event) -> Result<(), SessionError> {
        if event.cursor <= self.last_cursor {
            return Ok(());
        }
        self.last_cursor = event.cursor;
        if let (EventBody::ChatJoined { chat }, Audience::User(_)) = (&event.body, &event.audience)
        {
            if self.visible(event) {
                self.chats.insert(chat.id);
                self.levels.insert(chat.id, NotificationLevel::default_for(chat.kind));
            }
        }
        if !self.visible(event) {
            return Ok(());
        }
        let frame = event.to_frame();
        match &event.body {
            // Whether the message notifies this user depends on their settings: add it here.
            EventBody::MessageCreated { message } => {
                let level = self
                    .levels
                    .get(&message.chat_id)
                    .copied()
                    .unwrap_or(NotificationLevel::Mentions);
                let dnd = self.dnd_until_ms.is_some_and(|until| crate::model::now_ms() < until);
                let notify = is_notifying(&self.user.id, level, dnd, message);
                let base = frame.strip_suffix('}').unwrap_or(frame);
                sink.feed(text(format!("{base},\"notify\":{notify}}}"))).await?;
            }
            _ => sink.feed(text(frame.to_string())).await?,
        }
        match &event.body {
            EventBody::NotificationsUpdated { chat_id, level } => {
                self.levels.insert(*chat_id, *level);
            }
            EventBody::UserUpdated { user } if user.id == self.user.id => {
                self.dnd_until_ms = user.dnd_until_ms;
                if user.disabled {
                    self.close_after = true;
                }
            }
            EventBody::ChatLeft { chat_id } => {
                self.chats.remove(chat_id);
            }
            // Delivery states are not federated: a message of another organisation's user
            // is not marked (its author, on another node, would never see the state, and a
            // catch-up would pay a write per message for it).
            EventBody::MessageCreated { message }
                if message.author != self.user.id
                    && message.author.org_name() == self.user.id.org_name()
                    && self.first_delivery(&message.id) =>
            {
                self.state.engine.notify(Command::MarkReceived {
                    chat: message.chat_id,
                    message: message.id,
                    by: self.user.id.clone(),
                });
            }
            _ => {}
        }
        Ok(())
    }

    fn sees_ephemeral(&self, event: &Ephemeral) -> bool {
        match &event.audience {
            EphemeralAudience::Chat(chat) => {
                event.about != self.user.id && self.chats.contains(chat)
            }
            EphemeralAudience::SharesChat(chats) => {
                chats.iter().any(|chat| self.chats.contains(chat))
            }
        }
    }

    /// Announces typing in a chat, at most once per `typing_interval_min_ms` per chat.
    fn typing(&mut self, chat: ChatId) {
        let limits = &self.state.config.limits;
        if !self.chats.contains(&chat) {
            return;
        }
        let now = std::time::Instant::now();
        let interval = Duration::from_millis(limits.typing_interval_min_ms);
        if self.typing_sent.get(&chat).is_some_and(|last| now.duration_since(*last) < interval) {
            return;
        }
        if self.typing_sent.len() > 1000 {
            self.typing_sent.clear();
        }
        self.typing_sent.insert(chat, now);
        let frame = serde_json::json!({
            "type": "typing",
            "chat_id": chat,
            "user_id": self.user.id,
            "expires_ms": crate::model::now_ms() + limits.typing_expiry_ms,
        });
        self.state.hub.publish_ephemeral(Ephemeral {
            audience: EphemeralAudience::Chat(chat),
            about: self.user.id.clone(),
            frame: frame.to_string(),
        });
    }

    fn first_delivery(&self, id: &MessageId) -> bool {
        self.state.received.lock().unwrap_or_else(|e| e.into_inner()).first_sight(*id)
    }

    async fn on_frame(
        &mut self,
        sink: &mut Sink,
        frame: &str,
        acks: &mpsc::Sender<String>,
    ) -> Result<(), SessionError> {
        if let Err(retry_after_s) = self.bucket.take() {
            let error = ApiError::rate_limited(retry_after_s);
            sink.send(text(error_frame(client_id_of(frame).as_deref(), &error))).await?;
            return Ok(());
        }
        let parsed: ClientFrame = match serde_json::from_str(frame) {
            Ok(parsed) => parsed,
            Err(error) => {
                let error =
                    ApiError::bad_request("bad_request", format!("unreadable frame: {error}"));
                sink.send(text(error_frame(client_id_of(frame).as_deref(), &error))).await?;
                return Ok(());
            }
        };
        match parsed {
            ClientFrame::Ping => sink.send(text(r#"{"type":"pong"}"#.to_string())).await?,
            ClientFrame::Heartbeat { idle } => self.state.presence.send(PresenceInput::Heartbeat {
                user: self.user.id.clone(),
                device: self.device,
                idle,
            }),
            ClientFrame::Typing { chat_id } => {
                if let Ok(chat) = chat_id.parse() {
                    self.typing(chat);
                }
            }
            ClientFrame::Send { client_id, chat_id, body, reply_to, attachments } => {
                // An empty `client_id` sends without one (over HTTP, it is refused).
                let body = SendBody {
                    body,
                    reply_to,
                    client_id: Some(client_id.clone()).filter(|c| !c.is_empty()),
                    attachments,
                };
                self.spawn_send(client_id, chat_id, body, acks.clone());
            }
            ClientFrame::Read { chat_id, message_id } => {
                let parsed =
                    chat_id.parse::<ChatId>().ok().zip(message_id.parse::<MessageId>().ok());
                let Some((chat, message)) = parsed else {
                    let error = ApiError::bad_request("invalid_id", "bad chat or message id");
                    sink.send(text(error_frame(None, &error))).await?;
                    return Ok(());
                };
                let engine = self.state.engine.clone();
                let user = self.user.id.clone();
                let acks = acks.clone();
                tokio::spawn(async move {
                    if let Err(error) =
                        engine.call(|reply| Command::MarkRead { user, chat, message, reply }).await
                    {
                        let _ = acks.send(error_frame(None, &ApiError::from(error))).await;
                    }
                });
            }
        }
        Ok(())
    }

    fn spawn_send(
        &self,
        client_id: String,
        chat_id: String,
        body: SendBody,
        acks: mpsc::Sender<String>,
    ) {
        let caller = Caller { state: self.state.clone(), user: self.user.clone() };
        let sends = self.sends.clone();
        tokio::spawn(async move {
            let Ok(_permit) = sends.acquire_owned().await else {
                return;
            };
            let frame = match messages::send(&caller, &chat_id, body).await {
                Ok((message, _)) => {
                    serde_json::json!({ "type": "ack", "client_id": client_id, "message": message })
                        .to_string()
                }
                Err(error) => error_frame(Some(&client_id), &error),
            };
            let _ = acks.send(frame).await;
        });
    }
}

fn client_id_of(frame: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(frame)
        .ok()?
        .get("client_id")?
        .as_str()
        .map(str::to_string)
}

fn error_frame(client_id: Option<&str>, error: &ApiError) -> String {
    let mut value =
        serde_json::json!({ "type": "error", "code": error.code, "message": error.message });
    if let Some(client_id) = client_id {
        value["client_id"] = client_id.into();
    }
    if let Some(seconds) = error.retry_after_s {
        value["retry_after_s"] = seconds.into();
    }
    value.to_string()
}
