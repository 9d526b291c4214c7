//! The objects of spec/client-api.md, as the tests read them. Fields the spec lists are
//! required (a missing one is a contract deviation and fails decoding); unknown extra fields
//! are tolerated.

use serde::{Deserialize, Serialize};

/// `User`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct User {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub status_text: String,
    pub time_zone: String,
    pub team: String,
    pub is_admin: bool,
    pub disabled: bool,
    pub created_ms: i64,
}

/// `Chat` (a channel or a DM).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Chat {
    pub id: String,
    pub kind: String,
    pub visibility: String,
    /// A DM may have no name.
    pub name: Option<String>,
    pub topic: Option<String>,
    pub owner_org: String,
    pub created_ms: i64,
    pub member_count: u64,
    pub joined: bool,
    pub my_role: Option<String>,
}

/// `Member`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Member {
    pub user_id: String,
    pub role: String,
}

/// `Message`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Message {
    pub id: String,
    pub chat_id: String,
    pub author: String,
    pub body: String,
    pub reply_to: Option<String>,
    pub created_ms: i64,
    pub edited_ms: Option<i64>,
    pub deleted: bool,
    pub mentions: Vec<String>,
    pub mention_all: bool,
    pub state: String,
}

/// `ChatListEntry`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct ChatListEntry {
    pub chat: Chat,
    pub unread_count: u64,
    pub mention_count: u64,
    pub last_message: Option<Message>,
    pub last_activity_ms: i64,
    pub last_read: Option<String>,
}

/// `{messages, has_more}` of history and sync.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Page {
    pub messages: Vec<Message>,
    pub has_more: bool,
}

/// `{registration_open}` of the admin settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Settings {
    pub registration_open: bool,
}

/// Query of `GET /chats/{id}/messages`.
#[derive(Clone, Debug, Default)]
pub struct HistoryQuery {
    pub before: Option<String>,
    pub after: Option<String>,
    pub limit: Option<u32>,
}

impl HistoryQuery {
    /// The newest `limit`.
    pub fn latest(limit: u32) -> Self {
        HistoryQuery { limit: Some(limit), ..Default::default() }
    }

    /// Up to `limit` older than `id`.
    pub fn before(id: &str, limit: u32) -> Self {
        HistoryQuery { before: Some(id.to_string()), limit: Some(limit), ..Default::default() }
    }

    /// Up to `limit` newer than `id`.
    pub fn after(id: &str, limit: u32) -> Self {
        HistoryQuery { after: Some(id.to_string()), limit: Some(limit), ..Default::default() }
    }

    pub(crate) fn to_query(&self) -> String {
        let mut parts = Vec::new();
        if let Some(b) = &self.before {
            parts.push(format!("before={b}"));
        }
        if let Some(a) = &self.after {
            parts.push(format!("after={a}"));
        }
        if let Some(l) = self.limit {
            parts.push(format!("limit={l}"));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("?{}", parts.join("&"))
        }
    }
}
