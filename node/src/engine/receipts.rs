//! Receipt intents: read markers and the received/read states of messages.

use super::{json, Engine, Tx};
use super::{Error, Result};
use crate::events::{Audience, EventBody};
use crate::model::{keys, MessageState, MessageView};
use crate::store::{KvRead, Tree};
use crate::views;
use confab_protocol::{ChatId, MessageId, UserId};

impl Engine {
    pub(super) fn mark_read(
        &mut self,
        tx: &mut Tx,
        user: &UserId,
        chat: &ChatId,
        message: &MessageId,
    ) -> Result<()> {
        self.require_role(chat, user)?;
        if views::message(&self.reads(), chat, message)?.is_none() {
            return Err(Error::not_found("message"));
        }
        let previous = match self.dirty.markers.get(&(user.clone(), *chat)) {
            Some(dirty) => Some(*dirty),
            None => views::read_marker(&self.reads(), user, chat)?,
        };
        if previous.as_ref().is_some_and(|p| p >= message) {
            return Ok(());
        }
        tx.batch.put(Tree::ReadMarkers, keys::user_chat(user, chat), message.as_bytes().to_vec());
        self.dirty.markers.remove(&(user.clone(), *chat));
        self.emit(
            tx,
            Audience::Chat(*chat),
            EventBody::ReadMarker { chat_id: *chat, user_id: user.clone(), message_id: *message },
        );
        // Other people's messages up to the marker are now viewed (bounded work per call).
        let (start, _) = crate::store::prefix_range(chat.as_bytes());
        let start = previous.map_or(start, |p| std::ops::Bound::Excluded(keys::message(chat, &p)));
        let end = std::ops::Bound::Included(keys::message(chat, message));
        for (_, value) in self.reads().range(Tree::Messages, (start, end), true, 1000)? {
            let Ok(view) = serde_json::from_slice::<MessageView>(&value) else {
                continue;
            };
            if &view.author != user {
                self.advance_state(tx, view, MessageState::Viewed);
            }
        }
        Ok(())
    }

    pub(super) fn mark_received(
        &mut self,
        tx: &mut Tx,
        chat: &ChatId,
        message: &MessageId,
        by: &UserId,
    ) -> Result<()> {
        if let Some(view) = views::message(&self.reads(), chat, message)? {
            if &view.author != by {
                self.advance_state(tx, view, MessageState::Received);
            }
        }
        Ok(())
    }

    /// Moves a message's delivery state forward to `to` (a state never moves back) and tells
    /// its author.
    pub(super) fn advance_state(&mut self, tx: &mut Tx, mut view: MessageView, to: MessageState) {
        if view.state >= to {
            return;
        }
        view.state = to;
        tx.batch.put(Tree::Messages, keys::message(&view.chat_id, &view.id), json(&view));
        self.emit(
            tx,
            Audience::User(view.author.clone()),
            EventBody::MessageState { chat_id: view.chat_id, message_id: view.id, state: to },
        );
    }
}
