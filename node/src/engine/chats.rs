//! Chat intents: creating channels, group chats and DMs, renaming, topics and notification
//! levels; and the chat lookups (record, role, documents) other intents start from.

use super::derive::{self, Activity};
use super::docs::ChatDocs;
use super::error::require_plain_text;
use super::{json, remote, Engine, Tx};
use super::{Error, Result};
use crate::events::{Audience, EventBody};
use crate::model::{keys, now_ms, ChatRecord, ChatView, NotificationLevel};
use crate::random::random_bytes;
use crate::store::Tree;
use crate::views;
use confab_protocol::control::{self, ChatInfo, ChatKind, MemberRecord, Role, Visibility};
use confab_protocol::{ChatId, UserId};
use sha2::{Digest, Sha256};

impl Engine {
    pub(super) fn chat_record(&self, chat: &ChatId) -> Result<ChatRecord> {
        if let Some(record) = self.dirty.chats.get(chat) {
            return Ok(record.clone());
        }
        views::chat(&self.reads(), chat)?.ok_or_else(|| Error::not_found("chat"))
    }

    pub(super) fn require_role(&self, chat: &ChatId, user: &UserId) -> Result<Role> {
        views::role(&self.reads(), chat, user)?.ok_or_else(Error::not_a_member)
    }

    /// Takes a chat's documents out of the cache (loading them if needed). Put them back with
    /// `self.chats.insert` on success; on error they are simply dropped and reload next time.
    pub(super) fn take_docs(&mut self, chat: &ChatId) -> Result<ChatDocs> {
        self.take_stored_docs(chat)?.ok_or_else(|| Error::not_found("chat"))
    }

    /// [`Self::take_docs`] for a chat that may not be stored yet (`None`).
    pub(super) fn take_stored_docs(&mut self, chat: &ChatId) -> Result<Option<ChatDocs>> {
        if let Some(docs) = self.chats.remove(chat) {
            return Ok(Some(docs));
        }
        ChatDocs::load(&self.reads(), *chat, self.key.id(), (random_bytes(), random_bytes()))
            .map_err(Error::internal)
    }

    /// Like [`Self::take_docs`], for writing the control document: only the owning
    /// organisation may (a chat shared from elsewhere answers 403).
    pub(super) fn take_owned_docs(&mut self, chat: &ChatId) -> Result<ChatDocs> {
        let docs = self.take_docs(chat)?;
        if docs.state.info.owner != self.key.id() {
            self.chats.insert(*chat, docs);
            return Err(Error::forbidden(
                "not_owner",
                "this chat is shared from another organisation: its name, topic and members \
                 are changed there",
            ));
        }
        Ok(docs)
    }

    pub(super) fn validate_chat_name(&self, name: &str) -> Result<String> {
        let name = name.trim().to_string();
        let max = self.limits.chat_name_chars_max;
        require_plain_text(&name, 1..=max, || {
            format!("a channel name is 1 to {max} characters without control characters")
        })?;
        Ok(name)
    }

    pub(super) fn validate_topic(&self, topic: &str) -> Result<String> {
        let topic = topic.trim().to_string();
        if topic.chars().count() > self.limits.topic_chars_max
            || topic.chars().any(|c| c.is_control() && c != '\n')
        {
            return Err(Error::invalid(
                "invalid_body",
                format!("a topic is at most {} characters", self.limits.topic_chars_max),
            ));
        }
        Ok(topic)
    }

    pub(super) fn create_channel(
        &mut self,
        tx: &mut Tx,
        creator: &UserId,
        name: String,
        topic: String,
        visibility: Visibility,
    ) -> Result<ChatView> {
        let name = self.validate_chat_name(&name)?;
        let topic = self.validate_topic(&topic)?;
        if visibility == Visibility::Dm {
            return Err(Error::invalid("invalid_body", "visibility is public or private"));
        }
        let taken = views::all_chats(&self.reads())?.iter().any(|chat| {
            chat.kind == ChatKind::Channel && chat.name.to_lowercase() == name.to_lowercase()
        });
        if taken {
            return Err(Error::conflict("conflict", format!("a channel named {name:?} exists")));
        }
        let chat = remote::chat_id_for(&self.key.id(), random_bytes());
        self.create_chat(tx, chat, ChatKind::Channel, visibility, &name, &topic, creator, &[])
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn create_chat(
        &mut self,
        tx: &mut Tx,
        chat: ChatId,
        kind: ChatKind,
        visibility: Visibility,
        name: &str,
        topic: &str,
        creator: &UserId,
        others: &[UserId],
    ) -> Result<ChatView> {
        let now = now_ms();
        let org = self.key.id();
        let info = ChatInfo { kind, visibility, created_ms: now, owner: org };
        let creator_role = if kind == ChatKind::Dm { Role::Member } else { Role::Owner };
        let first = MemberRecord { role: creator_role, org };
        let mut docs = ChatDocs::create(
            &self.key,
            chat,
            &info,
            name,
            topic,
            (creator, &first),
            now,
            (random_bytes(), random_bytes()),
            &mut tx.batch,
        )
        .map_err(Error::internal)?;
        if !others.is_empty() {
            let mut others_owned = Vec::new();
            for user in others {
                others_owned.push((user.clone(), self.org_of_user(user)?));
            }
            let epoch = docs.state.epoch + 1;
            docs.change_control(
                &self.key,
                now,
                &mut tx.batch,
                |doc| {
                    let mut joined = Vec::new();
                    for (user, member_org) in &others_owned {
                        control::put_member(
                            doc,
                            user,
                            &MemberRecord { role: Role::Member, org: *member_org },
                        )?;
                        if *member_org != org && !joined.contains(member_org) {
                            joined.push(*member_org);
                            control::set_org_ranges(doc, member_org, &[(epoch, None)])?;
                        }
                    }
                    Ok(())
                },
                true,
            )
            .map_err(Error::internal)?;
        }
        let mut members = vec![(creator.clone(), creator_role)];
        members.extend(others.iter().map(|user| (user.clone(), Role::Member)));
        let activity = Activity::created(&docs.state);
        let record = derive::chat_record(chat, &docs.state, self.org_name.clone(), &org, activity);
        tx.batch.put(Tree::Chats, chat.as_bytes().to_vec(), json(&record));
        self.dirty.chats.remove(&chat);
        for (user, role) in &members {
            self.put_member_view(tx, &chat, user, *role);
            self.emit(
                tx,
                Audience::User(user.clone()),
                EventBody::ChatJoined { chat: ChatView::of(&record, Some(*role)) },
            );
        }
        self.chats.insert(chat, docs);
        Ok(ChatView::of(&record, Some(creator_role)))
    }

    pub(super) fn put_member_view(
        &mut self,
        tx: &mut Tx,
        chat: &ChatId,
        user: &UserId,
        role: Role,
    ) {
        derive::put_member(&mut tx.batch, chat, user, role);
    }

    pub(super) fn open_dm(
        &mut self,
        tx: &mut Tx,
        creator: &UserId,
        others: Vec<UserId>,
    ) -> Result<(ChatView, bool)> {
        let mut everyone: Vec<UserId> = others;
        everyone.push(creator.clone());
        everyone.sort();
        everyone.dedup();
        if everyone.len() < 2 || everyone.len() > self.limits.dm_members_max {
            return Err(Error::invalid(
                "invalid_body",
                format!("a DM has 2 to {} people including you", self.limits.dm_members_max),
            ));
        }
        let mut orgs = Vec::new();
        for user in &everyone {
            let org = self
                .org_of_user(user)
                .map_err(|_| Error::invalid("invalid_body", format!("no user {user}")))?;
            if org == self.key.id() {
                let record = self
                    .user_record(user)
                    .map_err(|_| Error::invalid("invalid_body", format!("no user {user}")))?;
                if record.disabled {
                    return Err(Error::invalid("invalid_body", format!("{user} is disabled")));
                }
            }
            if !orgs.contains(&org) {
                orgs.push(org);
            }
        }
        // One conversation per set of people: the chat id is derived from the set and from the
        // organisation that opens it; a DM the same people already have, opened by any of
        // their organisations, is reused.
        let mut hasher = Sha256::new();
        hasher.update(b"confab/v1/dm\0");
        for user in &everyone {
            hasher.update(user.as_str().as_bytes());
            hasher.update([0]);
        }
        let digest = hasher.finalize();
        let mut set_hash = [0u8; 8];
        set_hash.copy_from_slice(&digest[..8]);
        for org in &orgs {
            let candidate = remote::chat_id_for(org, set_hash);
            if let Some(record) = views::chat(&self.reads(), &candidate)? {
                return Ok((views::chat_view(&self.reads(), &record, creator)?, false));
            }
        }
        let chat = remote::chat_id_for(&self.key.id(), set_hash);
        let others: Vec<UserId> = everyone.iter().filter(|u| *u != creator).cloned().collect();
        let view =
            self.create_chat(tx, chat, ChatKind::Dm, Visibility::Dm, "", "", creator, &others)?;
        Ok((view, true))
    }

    pub(super) fn update_chat(
        &mut self,
        tx: &mut Tx,
        user: &UserId,
        chat: &ChatId,
        name: Option<String>,
        topic: Option<String>,
    ) -> Result<ChatView> {
        let mut record = self.chat_record(chat)?;
        let role = self.require_role(chat, user)?;
        let name = name.map(|n| self.validate_chat_name(&n)).transpose()?;
        let topic = topic.map(|t| self.validate_topic(&t)).transpose()?;
        if name.is_some() && (record.kind == ChatKind::Dm || role < Role::Admin) {
            return Err(Error::forbidden(
                "forbidden",
                "only the channel's owner or an admin can rename it",
            ));
        }
        let mut docs = self.take_owned_docs(chat)?;
        let (n, t) = (name.clone(), topic.clone());
        docs.change_control(
            &self.key,
            now_ms(),
            &mut tx.batch,
            |doc| {
                if let Some(name) = &n {
                    control::set_name(doc, name)?;
                }
                if let Some(topic) = &t {
                    control::set_topic(doc, topic)?;
                }
                Ok(())
            },
            false,
        )
        .map_err(Error::internal)?;
        self.chats.insert(*chat, docs);
        if let Some(name) = name {
            record.name = name;
        }
        if let Some(topic) = topic {
            record.topic = topic;
        }
        tx.batch.put(Tree::Chats, chat.as_bytes().to_vec(), json(&record));
        self.dirty.chats.remove(chat);
        self.emit_chat_updated(tx, &record);
        Ok(ChatView::of(&record, Some(role)))
    }

    pub(super) fn set_notification_level(
        &mut self,
        tx: &mut Tx,
        user: &UserId,
        chat: &ChatId,
        level: NotificationLevel,
    ) -> Result<()> {
        self.require_role(chat, user)?;
        tx.batch.put(Tree::NotifySettings, keys::user_chat(user, chat), json(&level));
        self.emit(
            tx,
            Audience::User(user.clone()),
            EventBody::NotificationsUpdated { chat_id: *chat, level },
        );
        Ok(())
    }
}
