//! Presence and typing across organisations: ephemeral, batched, rate-limited, never stored.
//!
//! Out: the presence changes and typing notices of this node's own users (the local hub's
//! ephemeral events; presence is published only on change, never as heartbeats) are gathered
//! per shared chat for [`BATCH_INTERVAL`] and published as one gossip message per chat on the
//! chat's topic, so only the chat's member organisations receive them:
//! `CFEP` ‖ version `01` ‖ a JSON array of frames (the same JSON frames clients get).
//!
//! In: a message is taken only from a member peer (the network drops the rest), at most
//! [`MESSAGES_PER_PEER_PER_S`] per publishing peer, at most [`FRAMES_PER_MESSAGE_MAX`] frames
//! and [`MESSAGE_BYTES_MAX`] bytes; each frame must be a typing notice for this chat or a
//! presence change, about a user whose organisation is the publisher (by the peer's name). The
//! frames are handed to the local hub as ephemeral events for the chat's members.

use crate::events::{Ephemeral, EphemeralAudience};
use confab_protocol::{ChatId, UserId};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The first bytes of an ephemeral gossip payload (a `SignedChange` starts with `CFSC`).
pub const MAGIC: &[u8; 4] = b"CFEP";
pub const VERSION: u8 = 1;
/// How long frames are gathered before one message per chat goes out.
pub const BATCH_INTERVAL: Duration = Duration::from_millis(250);
pub const FRAMES_PER_MESSAGE_MAX: usize = 64;
pub const MESSAGE_BYTES_MAX: usize = 16 * 1024;
/// Ephemeral messages taken per publishing peer per second (burst twice that).
pub const MESSAGES_PER_PEER_PER_S: f64 = 20.0;

/// Whether a gossip payload is an ephemeral batch.
pub fn is_ephemeral(payload: &[u8]) -> bool {
    payload.starts_with(MAGIC)
}

/// Frames waiting to go out, per chat; a newer frame of the same kind about the same user
/// replaces the older one.
#[derive(Default)]
pub struct Outbox {
    pending: HashMap<ChatId, Vec<(String, UserId, String)>>,
}

impl Outbox {
    /// Queues a local ephemeral event for the shared chats it concerns.
    pub fn push(&mut self, event: &Ephemeral, shared: impl Fn(&ChatId) -> bool) {
        let Ok(frame) = serde_json::from_str::<Value>(&event.frame) else {
            return;
        };
        let kind = frame["type"].as_str().unwrap_or_default().to_string();
        if kind != "typing" && kind != "presence" {
            return;
        }
        let chats: Vec<ChatId> = match &event.audience {
            EphemeralAudience::Chat(chat) => vec![*chat],
            EphemeralAudience::SharesChat(chats) => chats.iter().copied().collect(),
        };
        for chat in chats.into_iter().filter(|chat| shared(chat)) {
            let frames = self.pending.entry(chat).or_default();
            frames.retain(|(k, user, _)| !(k == &kind && user == &event.about));
            if frames.len() < FRAMES_PER_MESSAGE_MAX {
                frames.push((kind.clone(), event.about.clone(), event.frame.clone()));
            }
        }
    }

    /// The payloads to publish now, one per chat.
    pub fn take(&mut self) -> Vec<(ChatId, Vec<u8>)> {
        self.pending
            .drain()
            .filter_map(|(chat, frames)| {
                let mut payload = MAGIC.to_vec();
                payload.push(VERSION);
                let list: Vec<&str> = frames.iter().map(|(_, _, f)| f.as_str()).collect();
                payload.extend_from_slice(format!("[{}]", list.join(",")).as_bytes());
                (payload.len() <= MESSAGE_BYTES_MAX).then_some((chat, payload))
            })
            .collect()
    }
}

/// Per-peer token buckets for incoming ephemeral messages.
#[derive(Default)]
pub struct InboundLimiter {
    buckets: HashMap<confab_net::PeerId, (f64, Instant)>,
}

impl InboundLimiter {
    /// Whether one more message from `peer` may be taken now.
    pub fn allow(&mut self, peer: confab_net::PeerId, now: Instant) -> bool {
        let burst = MESSAGES_PER_PEER_PER_S * 2.0;
        if self.buckets.len() > 4096 {
            self.buckets.clear();
        }
        let (tokens, last) = self.buckets.entry(peer).or_insert((burst, now));
        let refill = now.duration_since(*last).as_secs_f64() * MESSAGES_PER_PEER_PER_S;
        *tokens = (*tokens + refill).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Why an ephemeral message was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EphemeralError {
    #[error("not an ephemeral batch of a known version")]
    Format,
    #[error("more than {FRAMES_PER_MESSAGE_MAX} frames or {MESSAGE_BYTES_MAX} bytes")]
    TooLarge,
    #[error("a frame is about a user of another organisation than its publisher")]
    ForeignUser,
    #[error("a frame is malformed or about another chat")]
    Frame,
}

/// Checks a received batch and turns it into local ephemeral events. `publisher_name` is the
/// organisation name this node gave the publishing peer.
pub fn decode(
    chat: ChatId,
    payload: &[u8],
    publisher_name: &str,
    now_ms: u64,
) -> Result<Vec<Ephemeral>, EphemeralError> {
    if payload.len() > MESSAGE_BYTES_MAX {
        return Err(EphemeralError::TooLarge);
    }
    let body = payload
        .strip_prefix(MAGIC.as_slice())
        .and_then(|rest| rest.strip_prefix(&[VERSION]))
        .ok_or(EphemeralError::Format)?;
    let frames: Vec<Value> = serde_json::from_slice(body).map_err(|_| EphemeralError::Format)?;
    if frames.len() > FRAMES_PER_MESSAGE_MAX {
        return Err(EphemeralError::TooLarge);
    }
    let mut events = Vec::with_capacity(frames.len());
    for frame in frames {
        let user: UserId =
            frame["user_id"].as_str().and_then(|u| u.parse().ok()).ok_or(EphemeralError::Frame)?;
        if user.org_name() != publisher_name {
            return Err(EphemeralError::ForeignUser);
        }
        let clean = match frame["type"].as_str() {
            Some("typing") => {
                if frame["chat_id"].as_str() != Some(chat.to_string().as_str()) {
                    return Err(EphemeralError::Frame);
                }
                // A remote clock is not trusted to say how long: at most 10 s from now.
                let expires = frame["expires_ms"].as_u64().unwrap_or(now_ms);
                serde_json::json!({
                    "type": "typing",
                    "chat_id": chat,
                    "user_id": user,
                    "expires_ms": expires.clamp(now_ms, now_ms + 10_000),
                })
            }
            Some("presence") => {
                let status = frame["status"].as_str().ok_or(EphemeralError::Frame)?;
                if !matches!(status, "online" | "away" | "offline") {
                    return Err(EphemeralError::Frame);
                }
                serde_json::json!({
                    "type": "presence",
                    "user_id": user,
                    "status": status,
                    "last_active_ms": frame["last_active_ms"].as_u64().unwrap_or(0),
                })
            }
            _ => return Err(EphemeralError::Frame),
        };
        let audience = if clean["type"] == "typing" {
            EphemeralAudience::Chat(chat)
        } else {
            EphemeralAudience::SharesChat(Arc::new(vec![chat]))
        };
        events.push(Ephemeral { audience, about: user, frame: clean.to_string() });
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat() -> ChatId {
        ChatId::from_bytes([7; 16])
    }

    fn typing(user: &str) -> Ephemeral {
        Ephemeral {
            audience: EphemeralAudience::Chat(chat()),
            about: user.parse().unwrap(),
            frame: serde_json::json!({"type": "typing", "chat_id": chat(), "user_id": user, "expires_ms": 5})
                .to_string(),
        }
    }

    #[test]
    fn batches_round_trip_and_replace_older_frames() {
        let mut outbox = Outbox::default();
        outbox.push(&typing("alice@acme"), |_| true);
        outbox.push(&typing("alice@acme"), |_| true);
        outbox.push(&typing("ann@acme"), |_| true);
        let out = outbox.take();
        assert_eq!(out.len(), 1);
        let events = decode(chat(), &out[0].1, "acme", 1).unwrap();
        assert_eq!(events.len(), 2, "one frame per user");
        assert!(outbox.take().is_empty());
    }

    #[test]
    fn refuses_foreign_users_other_chats_and_garbage() {
        let mut outbox = Outbox::default();
        outbox.push(&typing("alice@acme"), |_| true);
        let payload = outbox.take().remove(0).1;
        assert_eq!(decode(chat(), &payload, "globex", 1).unwrap_err(), EphemeralError::ForeignUser);
        assert_eq!(
            decode(ChatId::from_bytes([8; 16]), &payload, "acme", 1).unwrap_err(),
            EphemeralError::Frame
        );
        assert_eq!(decode(chat(), b"CFEP\x01{", "acme", 1).unwrap_err(), EphemeralError::Format);
        assert_eq!(decode(chat(), b"CFSC", "acme", 1).unwrap_err(), EphemeralError::Format);
        let many = format!("CFEP\x01[{}]", vec!["{}"; 65].join(","));
        assert_eq!(
            decode(chat(), many.as_bytes(), "acme", 1).unwrap_err(),
            EphemeralError::TooLarge
        );
    }

    #[test]
    fn clamps_typing_expiry_and_limits_rate() {
        let frame = format!(
            "CFEP\x01[{{\"type\":\"typing\",\"chat_id\":\"{}\",\"user_id\":\"a@acme\",\"expires_ms\":99999999}}]",
            chat()
        );
        let events = decode(chat(), frame.as_bytes(), "acme", 1000).unwrap();
        assert!(events[0].frame.contains("\"expires_ms\":11000"));
        let mut limiter = InboundLimiter::default();
        let peer = confab_net::keypair_of([1; 32]).unwrap().public().to_peer_id();
        let now = Instant::now();
        let allowed = (0..100).filter(|_| limiter.allow(peer, now)).count();
        assert_eq!(allowed, 40, "the burst, then nothing until it refills");
        assert!(limiter.allow(peer, now + Duration::from_secs(1)));
    }
}
