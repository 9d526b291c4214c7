//! The views the engine derives from the documents, in one place: a chat's record from its
//! control state, a member's view, and an edit applied to a message. The live paths (local
//! intents in `chats.rs` and `messages.rs`, remote changes in `remote.rs`) and a rebuild
//! (`rebuild.rs`) all use these, so a view never depends on the path that wrote it.

use crate::model::{keys, ChatRecord, MemberView, MessageView};
use crate::store::{Tree, WriteBatch};
use confab_protocol::control::{ChatKind, ControlState, Role};
use confab_protocol::{ChatId, MessageId, OrgId, UserId};

/// Where a chat's activity stands: when it last changed and its newest message.
#[derive(Clone, Copy, Debug)]
pub(super) struct Activity {
    pub last_activity_ms: u64,
    pub last_message: Option<MessageId>,
}

impl Activity {
    /// A chat with no message yet: active since it was created.
    pub fn created(state: &ControlState) -> Self {
        Self { last_activity_ms: state.info.created_ms, last_message: None }
    }
}

/// The chat record (`Chats` tree) the control state `state` of `chat` describes. `owner_org`
/// is the owning organisation as users see it (this node's name, or a peer's); `own` is this
/// node's organisation (a chat is federated when another one is or was in it).
pub(super) fn chat_record(
    chat: ChatId,
    state: &ControlState,
    owner_org: String,
    own: &OrgId,
    activity: Activity,
) -> ChatRecord {
    // A BTreeMap's keys: sorted, as DM member lists are compared.
    let dm_members: Vec<UserId> = match state.info.kind {
        ChatKind::Dm => state.members.keys().cloned().collect(),
        _ => Vec::new(),
    };
    ChatRecord {
        id: chat,
        kind: state.info.kind,
        visibility: state.info.visibility,
        name: state.name.clone(),
        topic: state.topic.clone(),
        owner_org,
        created_ms: state.info.created_ms,
        member_count: state.members.len(),
        last_activity_ms: activity.last_activity_ms,
        last_message: activity.last_message,
        dm_members,
        federated: state.orgs.keys().any(|org| org != own),
    }
}

/// Writes `user`'s member view of `chat` with `role`, and the chat into the user's list.
pub(super) fn put_member(batch: &mut WriteBatch, chat: &ChatId, user: &UserId, role: Role) {
    let member = MemberView { user_id: user.clone(), role };
    batch.put(Tree::Members, keys::chat_member(chat, user), super::json(&member));
    batch.put(Tree::UserChats, keys::user_chat(user, chat), Vec::new());
}

/// Applies an edit made at `at_ms`: the new body and the mentions parsed from it.
pub(super) fn apply_edit(
    view: &mut MessageView,
    at_ms: u64,
    body: String,
    (mentions, mention_all): (Vec<UserId>, bool),
) {
    view.edited_ms = Some(at_ms);
    view.body = body;
    view.mentions = mentions;
    view.mention_all = mention_all;
}
