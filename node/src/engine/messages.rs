//! Message intents: sending, editing, deleting and reacting, with the checks on bodies and the
//! message views they write.

use super::derive;
use super::{docs, json, search_doc, Engine, SearchOp, Tx, REACTION_EMOJIS_PER_MESSAGE_MAX};
use super::{Error, Result};
use crate::events::{Audience, EventBody};
use crate::media::Attachment;
use crate::model::{keys, now_ms, MessageState, MessageView};
use crate::random::random_bytes;
use crate::store::{KvRead, Tree};
use crate::views;
use confab_protocol::bucket::{self, MessageRecord, UpdateOp, UpdateRecord};
use confab_protocol::control::Role;
use confab_protocol::{ChatId, MessageId, UserId};

/// Deletes a message's view (the caller stores it): its body and files go (the last message
/// carrying a blob going makes it collectable), and so does its search entry.
pub(super) fn delete_view(tx: &mut Tx, view: &mut MessageView) {
    for attachment in view.delete() {
        for blob in attachment.blob_ids() {
            tx.batch.delete(Tree::MediaRefs, keys::media_ref(blob, &view.chat_id, &view.id));
        }
    }
    tx.search.push(SearchOp::Remove(view.chat_id, view.id));
}

/// A document error as the engine reports it: a shared chat whose history has not arrived yet
/// is [`Error::NotSynced`] (retry shortly); anything else is internal.
pub(super) fn doc_error(error: docs::DocError) -> Error {
    match error {
        docs::DocError::NotSynced => Error::NotSynced,
        other => Error::internal(other),
    }
}

impl Engine {
    pub(super) fn check_body(&self, body: &str) -> Result<()> {
        let chars = body.chars().count();
        if chars > self.limits.message_chars_max {
            return Err(Error::too_large(
                "message_too_long",
                format!(
                    "message body is {chars} characters; the limit is {}",
                    self.limits.message_chars_max
                ),
            ));
        }
        if body.trim().is_empty() {
            return Err(Error::invalid("invalid_body", "message body is empty"));
        }
        Ok(())
    }

    pub(super) fn mentions(&self, body: &str) -> (Vec<UserId>, bool) {
        views::parse_mentions(&self.reads(), &self.org_name, body)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn send(
        &mut self,
        tx: &mut Tx,
        user: &UserId,
        chat: &ChatId,
        body: String,
        reply_to: Option<MessageId>,
        client_id: Option<String>,
        attachments: Vec<Attachment>,
    ) -> Result<(MessageView, bool)> {
        if attachments.len() > bucket::ATTACHMENTS_PER_MESSAGE_MAX {
            return Err(Error::invalid(
                "too_many_attachments",
                format!("a message carries at most {} files", bucket::ATTACHMENTS_PER_MESSAGE_MAX),
            ));
        }
        if attachments.is_empty() || !body.is_empty() {
            self.check_body(&body)?;
        }
        if let Some(client_id) = &client_id {
            if client_id.is_empty() || client_id.len() > 64 {
                return Err(Error::invalid("invalid_body", "client_id is 1 to 64 bytes"));
            }
            if let Some(found) =
                self.reads().get(Tree::ClientIds, &keys::client_id(user, client_id))?
            {
                let existing = ChatId::from_slice(&found[..16.min(found.len())])
                    .zip(MessageId::from_slice(found.get(16..).unwrap_or_default()))
                    .and_then(|(c, m)| views::message(&self.reads(), &c, &m).ok().flatten());
                if let Some(message) = existing {
                    return Ok((message, false));
                }
            }
        }
        let mut record = self.chat_record(chat)?;
        self.require_role(chat, user)?;
        if let Some(parent) = &reply_to {
            if views::message(&self.reads(), chat, parent)?.is_none() {
                return Err(Error::invalid(
                    "invalid_body",
                    "reply_to names no message of this chat",
                ));
            }
        }
        let now = now_ms();
        let time = self.hlc.tick(now);
        let org = self.key.id();
        let id = MessageId::new(time, &org, self.unique);
        let mentions = self.mentions(&body);
        let stored = MessageRecord {
            author: user.clone(),
            body,
            reply_to,
            attachments: attachments.iter().map(Into::into).collect(),
        };
        let mut docs = self.take_docs(chat)?;
        docs.change_bucket(&self.key, now, &mut tx.batch, |doc, collections| {
            bucket::put_message(doc, collections, &org, &id, &stored)
        })
        .map_err(doc_error)?;
        docs.bucket_messages += 1;
        // Only the owner seals a bucket (in its control document); others write on until it does.
        if docs.bucket_messages >= self.limits.bucket_messages_max && docs.state.info.owner == org {
            docs.roll_over(&self.key, now, random_bytes(), &mut tx.batch)
                .map_err(Error::internal)?;
        }
        self.chats.insert(*chat, docs);
        // The view as a remote node or a rebuild derives it from the same record.
        let message = MessageView::from_record(id, *chat, stored, mentions, MessageState::Sent);
        tx.batch.put(Tree::Messages, keys::message(chat, &id), json(&message));
        for attachment in &message.attachments {
            for blob in attachment.blob_ids() {
                tx.batch.put(Tree::MediaRefs, keys::media_ref(blob, chat, &id), Vec::new());
            }
        }
        tx.search.push(SearchOp::Upsert(search_doc(&message)));
        self.dirty.hlc = Some(time);
        record.last_activity_ms = now.max(record.last_activity_ms);
        record.last_message = Some(id);
        self.dirty.chats.insert(*chat, record);
        // Your own message is read by you.
        self.dirty.markers.insert((user.clone(), *chat), id);
        if let Some(client_id) = &client_id {
            let mut value = chat.as_bytes().to_vec();
            value.extend_from_slice(id.as_bytes());
            tx.batch.put(Tree::ClientIds, keys::client_id(user, client_id), value);
        }
        self.emit(
            tx,
            Audience::Chat(*chat),
            EventBody::MessageCreated { message: message.clone() },
        );
        Ok((message, true))
    }

    pub(super) fn message_for_update(
        &self,
        chat: &ChatId,
        message: &MessageId,
    ) -> Result<MessageView> {
        let found = views::message(&self.reads(), chat, message)?
            .ok_or_else(|| Error::not_found("message"))?;
        if found.deleted {
            return Err(Error::not_found("message"));
        }
        Ok(found)
    }

    pub(super) fn write_update(
        &mut self,
        tx: &mut Tx,
        chat: &ChatId,
        user: &UserId,
        target: MessageId,
        op: UpdateOp,
    ) -> Result<u64> {
        let now = now_ms();
        let at = self.hlc.tick(now);
        let org = self.key.id();
        let update = UpdateRecord { target, by: user.clone(), at, op };
        let mut docs = self.take_docs(chat)?;
        docs.change_bucket(&self.key, now, &mut tx.batch, |doc, collections| {
            bucket::put_update(doc, collections, &org, &update)
        })
        .map_err(doc_error)?;
        self.chats.insert(*chat, docs);
        self.dirty.hlc = Some(at);
        Ok(at.ms)
    }

    pub(super) fn edit(
        &mut self,
        tx: &mut Tx,
        user: &UserId,
        chat: &ChatId,
        message: &MessageId,
        body: String,
    ) -> Result<MessageView> {
        self.check_body(&body)?;
        self.require_role(chat, user)?;
        let mut view = self.message_for_update(chat, message)?;
        if &view.author != user {
            return Err(Error::forbidden("forbidden", "only the author edits a message"));
        }
        let at =
            self.write_update(tx, chat, user, *message, UpdateOp::Edit { body: body.clone() })?;
        let mentions = self.mentions(&body);
        derive::apply_edit(&mut view, at, body, mentions);
        tx.search.push(SearchOp::Upsert(search_doc(&view)));
        let body = EventBody::MessageEdited { message: view.clone() };
        self.store_message_update(tx, &view, body);
        Ok(view)
    }

    pub(super) fn delete(
        &mut self,
        tx: &mut Tx,
        user: &UserId,
        node_admin: bool,
        chat: &ChatId,
        message: &MessageId,
    ) -> Result<MessageView> {
        let role = views::role(&self.reads(), chat, user)?;
        if role.is_none() && !node_admin {
            return Err(Error::not_a_member());
        }
        let mut view = self.message_for_update(chat, message)?;
        let moderator = node_admin || role.is_some_and(|r| r >= Role::Admin);
        if &view.author != user && !moderator {
            return Err(Error::forbidden(
                "forbidden",
                "only the author or a moderator deletes a message",
            ));
        }
        let at = self.write_update(tx, chat, user, *message, UpdateOp::Delete)?;
        view.edited_ms = Some(at);
        delete_view(tx, &mut view);
        let body = EventBody::MessageDeleted { message: view.clone() };
        self.store_message_update(tx, &view, body);
        Ok(view)
    }

    pub(super) fn react(
        &mut self,
        tx: &mut Tx,
        user: &UserId,
        chat: &ChatId,
        message: &MessageId,
        emoji: &str,
        on: bool,
    ) -> Result<MessageView> {
        if !bucket::valid_emoji(emoji) {
            return Err(Error::invalid(
                "invalid_body",
                format!("an emoji is 1 to {} bytes without spaces or ':'", bucket::EMOJI_BYTES_MAX),
            ));
        }
        self.require_role(chat, user)?;
        let mut view = self.message_for_update(chat, message)?;
        let new_emoji = !view.reactions.iter().any(|r| r.emoji == emoji);
        if on && new_emoji && view.reactions.len() >= REACTION_EMOJIS_PER_MESSAGE_MAX {
            return Err(Error::invalid(
                "invalid_body",
                format!(
                    "a message has at most {REACTION_EMOJIS_PER_MESSAGE_MAX} different reactions"
                ),
            ));
        }
        if !view.set_reaction(emoji, user, on) {
            return Ok(view);
        }
        let now = now_ms();
        let org = self.key.id();
        let mut docs = self.take_docs(chat)?;
        docs.change_bucket(&self.key, now, &mut tx.batch, |doc, collections| {
            bucket::put_reaction(doc, collections, &org, message, emoji, user, on)
        })
        .map_err(doc_error)?;
        self.chats.insert(*chat, docs);
        let body = EventBody::MessageReactions {
            chat_id: *chat,
            message_id: *message,
            emoji: emoji.to_string(),
            user_id: user.clone(),
            on,
            reactions: view.reactions.clone(),
        };
        self.store_message_update(tx, &view, body);
        Ok(view)
    }
}
