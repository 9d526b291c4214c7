//! Changes from other organisations' nodes, and what federation asks of the engine.
//!
//! A remote `SignedChange` passes the whole validation pipeline (signature included) before it
//! touches a document; an accepted one is applied, stored with the group's batch and turned
//! into view updates and events exactly like a local intent's, so clients cannot tell a
//! message that came over federation from one posted here. Nothing is acknowledged (reported
//! `Accepted` to the network, which then forwards it) before the group's flush.
//!
//! Views follow these rules, the same as `rebuild.rs`:
//! - a message, update or reaction counts only if its user belongs to the signing organisation
//!   (the control document's member record says which, else the peers' names);
//! - an update applies when written by the message's own organisation or the chat's owner;
//!   a newer update wins, a deletion is final.

use super::derive::{self, Activity};
use super::docs::{ChatDocs, Collection, RemoteOutcome};
use super::{json, search_doc, Engine, SearchOp, Tx};
use super::{Error, Result};
use crate::events::{Audience, EventBody};
use crate::model::{keys, ChatView, MessageState, MessageView};
use crate::random::random_bytes;
use crate::store::{KvRead, Tree};
use crate::views;
use confab_protocol::bucket::{self, MessageRecord, UpdateOp, UpdateRecord};
use confab_protocol::control::ControlState;
use confab_protocol::{ChatId, DocId, MessageId, OrgId, Preverified, UserId};
use serde::{Deserialize, Serialize};

/// What became of one remote change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteVerdict {
    /// Valid and stored (after the group's flush): forward it.
    Accepted,
    /// Already known: drop, not an offence.
    Duplicate,
    /// Not applicable yet (missing dependencies, an unknown epoch or chat): drop without
    /// penalty; catch-up brings it again in order.
    Pending(String),
    /// Invalid for everyone: penalise whoever relayed it.
    Rejected(String),
}

impl From<RemoteOutcome> for RemoteVerdict {
    fn from(outcome: RemoteOutcome) -> Self {
        match outcome {
            RemoteOutcome::Accepted => RemoteVerdict::Accepted,
            RemoteOutcome::Duplicate => RemoteVerdict::Duplicate,
            RemoteOutcome::Pending(reason) => RemoteVerdict::Pending(reason),
            RemoteOutcome::Rejected(reason) => RemoteVerdict::Rejected(reason),
        }
    }
}

/// A peered organisation as the node keeps it (`peers/v1`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    /// Its organisation name: its users are `someone@name`.
    pub name: String,
    /// The addresses we dial (multiaddrs without `/p2p`).
    pub addrs: Vec<String>,
    pub added_ms: u64,
}

/// The organisations with a say in a chat, for the network's member sets (`shared_chats/v1`
/// is not stored: the engine reports these after each flush and on request).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChatOrgs {
    /// Organisations that are members now, this node's own excluded.
    pub current: Vec<OrgId>,
    /// Organisations that were members and are not now (they may still fetch the control
    /// document, to learn that they were removed), this node's own excluded.
    pub former: Vec<OrgId>,
    /// For each former member whose every epoch range is closed: the epoch its last range
    /// closed at, which the control change that removed it carries. Such an organisation is
    /// served the control document up to that change and no further.
    pub removed_at: Vec<(OrgId, u64)>,
}

impl ChatOrgs {
    /// The organisations of a chat as this node sees them. While this node's own organisation
    /// is not a member, it replicates with nobody (`current` is empty).
    pub fn of(state: &ControlState, own: &OrgId) -> Self {
        let is_member =
            |ranges: &Vec<(u64, Option<u64>)>| ranges.iter().any(|(_, until)| until.is_none());
        let own_member = state.orgs.get(own).is_some_and(is_member);
        let mut orgs = Self::default();
        for (org, ranges) in &state.orgs {
            if org == own {
                continue;
            }
            if own_member && is_member(ranges) {
                orgs.current.push(*org);
            } else {
                orgs.former.push(*org);
                if !is_member(ranges) {
                    if let Some(until) = ranges.iter().filter_map(|(_, until)| *until).max() {
                        orgs.removed_at.push((*org, until));
                    }
                }
            }
        }
        orgs
    }

    /// The epoch `org` was removed at, if it is a former member that was removed.
    pub fn removed_at(&self, org: &OrgId) -> Option<u64> {
        self.removed_at.iter().find(|(removed, _)| removed == org).map(|(_, epoch)| *epoch)
    }
}

/// The first 8 bytes of a chat id name the organisation that made it, so that nobody but its
/// owner can write a chat's genesis (a peer cannot squat an id it learned of).
pub fn chat_id_for(owner: &OrgId, random: [u8; 8]) -> ChatId {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&owner.as_bytes()[..8]);
    id[8..].copy_from_slice(&random);
    ChatId::from_bytes(id)
}

/// Whether `chat`'s id names `owner` as its maker.
pub fn chat_owned_by(chat: &ChatId, owner: &OrgId) -> bool {
    chat.as_bytes()[..8] == owner.as_bytes()[..8]
}

/// Every peer record.
pub fn peers(store: &dyn KvRead) -> Result<Vec<(OrgId, PeerRecord)>, crate::store::StoreError> {
    let all = store.range(
        Tree::Peers,
        (std::ops::Bound::Unbounded, std::ops::Bound::Unbounded),
        false,
        usize::MAX,
    )?;
    Ok(all
        .into_iter()
        .filter_map(|(key, value)| {
            let org = OrgId::from_slice(&key)?;
            let record = serde_json::from_slice(&value).ok()?;
            Some((org, record))
        })
        .collect())
}

impl Engine {
    /// Applies remote changes in order: each control change alone, each run of changes to one
    /// bucket together. A run's writes are staged whole if any of it was accepted.
    pub(super) fn apply_remote_changes(
        &mut self,
        changes: Vec<Preverified>,
        events: &mut Vec<crate::events::Event>,
    ) -> Vec<RemoteVerdict> {
        let mut verdicts = Vec::with_capacity(changes.len());
        let mut rest = changes.as_slice();
        while let Some(first) = rest.first().map(Preverified::signed) {
            let run = match first.doc.kind {
                confab_protocol::DocKind::Control => 1,
                confab_protocol::DocKind::Bucket(_) => {
                    rest.iter().take_while(|c| c.signed().doc == first.doc).count()
                }
            };
            let (group, tail) = rest.split_at(run);
            rest = tail;
            let mut tx = Tx::default();
            let result = match first.doc.kind {
                confab_protocol::DocKind::Control => {
                    self.apply_remote_control(&mut tx, &group[0]).map(|v| vec![v])
                }
                confab_protocol::DocKind::Bucket(_) => self.apply_remote_bucket(&mut tx, group),
            };
            match result {
                Ok(group_verdicts) => {
                    for (change, verdict) in group.iter().zip(&group_verdicts) {
                        if let RemoteVerdict::Rejected(reason) = verdict {
                            let signed = change.signed();
                            tracing::info!(doc = %signed.doc, signer = %signed.signer, %reason, "remote change rejected");
                        }
                    }
                    if group_verdicts.contains(&RemoteVerdict::Accepted) {
                        self.staged.stage(tx.batch);
                        events.extend(tx.events);
                        self.search_ops.extend(tx.search);
                    }
                    verdicts.extend(group_verdicts);
                }
                Err(error) => {
                    tracing::warn!(doc = %first.doc, %error, "remote changes not applied");
                    verdicts.extend(std::iter::repeat_n(
                        RemoteVerdict::Pending(error.to_string()),
                        run,
                    ));
                }
            }
        }
        verdicts
    }

    /// Changes to one bucket of a known chat (see [`ChatDocs::apply_remote_bucket`]).
    fn apply_remote_bucket(
        &mut self,
        tx: &mut Tx,
        group: &[Preverified],
    ) -> Result<Vec<RemoteVerdict>> {
        let Some(first) = group.first().map(Preverified::signed) else {
            return Ok(Vec::new());
        };
        let chat = first.doc.chat;
        let Some(mut docs) = self.take_stored_docs(&chat)? else {
            return Ok(vec![RemoteVerdict::Pending("unknown chat".into()); group.len()]);
        };
        let (outcomes, touched) = docs
            .apply_remote_bucket(&self.reads(), group, &mut tx.batch)
            .map_err(Error::internal)?;
        for (collection, key, value) in touched {
            self.bucket_view(tx, &docs.state, chat, collection, &key, value)?;
        }
        self.chats.insert(chat, docs);
        Ok(outcomes.into_iter().map(RemoteVerdict::from).collect())
    }

    /// A change to a chat's control document; the first one of a chat this node does not have
    /// yet is its genesis, accepted only from the organisation the chat id names.
    fn apply_remote_control(&mut self, tx: &mut Tx, change: &Preverified) -> Result<RemoteVerdict> {
        let signed = change.signed();
        let chat = signed.doc.chat;
        let mut docs = match self.take_stored_docs(&chat)? {
            Some(docs) => docs,
            None if chat_owned_by(&chat, &signed.signer) => ChatDocs::remote_genesis(
                chat,
                signed.signer,
                self.key.id(),
                (random_bytes(), random_bytes()),
            ),
            None => {
                return Ok(RemoteVerdict::Rejected(
                    "the chat id does not name the signer as its owner".into(),
                ))
            }
        };
        let old_state = docs.state.clone();
        let outcome = docs
            .apply_remote_control(&self.reads(), change, &mut tx.batch)
            .map_err(Error::internal)?;
        if matches!(outcome, RemoteOutcome::Accepted) {
            self.control_views(tx, chat, &docs.state, &old_state)?;
        }
        // A chat whose control genesis was refused was never stored: forget it.
        if !docs.control.validator.is_empty() {
            self.chats.insert(chat, docs);
        }
        Ok(RemoteVerdict::from(outcome))
    }

    /// A control document changed remotely: the chat record, its members and their events.
    fn control_views(
        &mut self,
        tx: &mut Tx,
        chat: ChatId,
        state: &ControlState,
        old: &ControlState,
    ) -> Result<()> {
        let existing = match self.dirty.chats.get(&chat) {
            Some(record) => Some(record.clone()),
            None => views::chat(&self.reads(), &chat)?,
        };
        let activity = match &existing {
            Some(record) => Activity {
                last_activity_ms: record.last_activity_ms,
                last_message: record.last_message,
            },
            None => Activity::created(state),
        };
        let owner_org = self.org_label(&state.info.owner);
        let record = derive::chat_record(chat, state, owner_org, &self.key.id(), activity);
        tx.batch.put(Tree::Chats, chat.as_bytes().to_vec(), json(&record));
        self.dirty.chats.remove(&chat);
        for (user, member) in &state.members {
            let before = old.members.get(user).map(|m| m.role);
            if before == Some(member.role) {
                continue;
            }
            self.put_member_view(tx, &chat, user, member.role);
            if user.org_name() == self.org_name {
                self.emit(
                    tx,
                    Audience::User(user.clone()),
                    EventBody::ChatJoined { chat: ChatView::of(&record, Some(member.role)) },
                );
            }
        }
        for user in old.members.keys() {
            if state.members.contains_key(user) {
                continue;
            }
            tx.batch.delete(Tree::Members, keys::chat_member(&chat, user));
            tx.batch.delete(Tree::UserChats, keys::user_chat(user, &chat));
            if user.org_name() == self.org_name {
                self.emit(tx, Audience::User(user.clone()), EventBody::ChatLeft { chat_id: chat });
            }
        }
        self.emit_chat_updated(tx, &record);
        Ok(())
    }

    /// How this node names an organisation: its own name, a peer's name, or the id.
    pub(super) fn org_label(&self, org: &OrgId) -> String {
        if *org == self.key.id() {
            return self.org_name.clone();
        }
        self.peer_name(org).unwrap_or_else(|| org.to_string())
    }

    fn peer_name(&self, org: &OrgId) -> Option<String> {
        let bytes = self.reads().get(Tree::Peers, org.as_bytes()).ok()??;
        serde_json::from_slice::<PeerRecord>(&bytes).ok().map(|record| record.name)
    }

    /// The organisation a user id belongs to: this node's own, or a peer's by name.
    pub(super) fn org_of_user(&self, user: &UserId) -> Result<OrgId> {
        if user.org_name() == self.org_name {
            return Ok(self.key.id());
        }
        peers(&self.reads())?
            .into_iter()
            .find(|(_, record)| record.name == user.org_name())
            .map(|(org, _)| org)
            .ok_or_else(|| Error::UnknownOrganisation {
                message: format!(
                    "no peered organisation is named {:?}: peer with it first",
                    user.org_name()
                ),
            })
    }

    /// Whether `user` may be written about by `org`: the control document's member record
    /// decides; for former members, the organisation names this node knows.
    fn user_belongs(&self, state: &ControlState, user: &UserId, org: &OrgId) -> bool {
        if let Some(member) = state.members.get(user) {
            return member.org == *org;
        }
        if *org == self.key.id() {
            return user.org_name() == self.org_name;
        }
        if user.org_name() == self.org_name {
            return false;
        }
        self.peer_name(org).is_none_or(|name| name == user.org_name())
    }

    #[allow(clippy::too_many_arguments)]
    fn bucket_view(
        &mut self,
        tx: &mut Tx,
        state: &ControlState,
        chat: ChatId,
        collection: Collection,
        key: &str,
        value: Option<String>,
    ) -> Result<()> {
        // The validator admitted only keys in the signer's namespace: the key names the writer.
        let Some((org, rest)) = bucket::split_key(key) else {
            return Ok(());
        };
        match collection {
            Collection::Messages => {
                let (Ok(id), Some(Ok(record))) = (
                    rest.parse::<MessageId>(),
                    value.map(|v| serde_json::from_str::<MessageRecord>(&v)),
                ) else {
                    return Ok(());
                };
                self.remote_message(tx, state, chat, org, id, record)
            }
            Collection::Updates => {
                let Some(Ok(update)) = value.map(|v| serde_json::from_str::<UpdateRecord>(&v))
                else {
                    return Ok(());
                };
                self.remote_update(tx, state, chat, org, update)
            }
            Collection::Reactions => {
                let Some((message, emoji, user)) = bucket::parse_reaction_key_rest(rest) else {
                    return Ok(());
                };
                let on = value.as_deref() == Some(bucket::REACTION_ON);
                let emoji = emoji.to_string();
                self.remote_reaction(tx, state, chat, org, message, &emoji, user, on)
            }
        }
    }

    fn remote_message(
        &mut self,
        tx: &mut Tx,
        state: &ControlState,
        chat: ChatId,
        org: OrgId,
        id: MessageId,
        record: MessageRecord,
    ) -> Result<()> {
        if !self.user_belongs(state, &record.author, &org) {
            tracing::info!(%chat, author = %record.author, %org, "message by a user of another organisation ignored");
            return Ok(());
        }
        if views::message(&self.reads(), &chat, &id)?.is_some() {
            return Ok(());
        }
        let mentions = self.mentions(&record.body);
        let message = MessageView::from_record(id, chat, record, mentions, MessageState::Sent);
        tx.batch.put(Tree::Messages, keys::message(&chat, &id), json(&message));
        // Its files are fetched from a member node on first download (by hash).
        for attachment in &message.attachments {
            for blob in attachment.blob_ids() {
                tx.batch.put(Tree::MediaRefs, keys::media_ref(blob, &chat, &id), Vec::new());
            }
        }
        tx.search.push(SearchOp::Upsert(search_doc(&message)));
        let mut chat_record = self.chat_record(&chat)?;
        if chat_record.last_message.is_none_or(|last| last < id) {
            chat_record.last_message = Some(id);
            chat_record.last_activity_ms = chat_record.last_activity_ms.max(id.time_ms());
            self.dirty.chats.insert(chat, chat_record);
        }
        self.emit(tx, Audience::Chat(chat), EventBody::MessageCreated { message });
        Ok(())
    }

    fn remote_update(
        &mut self,
        tx: &mut Tx,
        state: &ControlState,
        chat: ChatId,
        org: OrgId,
        update: UpdateRecord,
    ) -> Result<()> {
        if !self.user_belongs(state, &update.by, &org) {
            return Ok(());
        }
        let Some(mut view) = views::message(&self.reads(), &chat, &update.target)? else {
            return Ok(());
        };
        let allowed = update.target.minted_by(&org) || org == state.info.owner;
        if !allowed || view.deleted || view.edited_ms.is_some_and(|ms| ms > update.at.ms) {
            return Ok(());
        }
        view.edited_ms = Some(update.at.ms);
        let body = match update.op {
            UpdateOp::Edit { body } => {
                let mentions = self.mentions(&body);
                derive::apply_edit(&mut view, update.at.ms, body, mentions);
                tx.search.push(SearchOp::Upsert(search_doc(&view)));
                EventBody::MessageEdited { message: view.clone() }
            }
            UpdateOp::Delete => {
                super::delete_view(tx, &mut view);
                EventBody::MessageDeleted { message: view.clone() }
            }
        };
        self.store_message_update(tx, &view, body);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn remote_reaction(
        &mut self,
        tx: &mut Tx,
        state: &ControlState,
        chat: ChatId,
        org: OrgId,
        message: MessageId,
        emoji: &str,
        user: UserId,
        on: bool,
    ) -> Result<()> {
        if !self.user_belongs(state, &user, &org) {
            return Ok(());
        }
        let Some(mut view) = views::message(&self.reads(), &chat, &message)? else {
            return Ok(());
        };
        if view.deleted || !view.set_reaction(emoji, &user, on) {
            return Ok(());
        }
        let body = EventBody::MessageReactions {
            chat_id: chat,
            message_id: message,
            emoji: emoji.to_string(),
            user_id: user,
            on,
            reactions: view.reactions.clone(),
        };
        self.store_message_update(tx, &view, body);
        Ok(())
    }

    /// The heads this node has of a document, and the chat's current bucket number; `None`
    /// for a chat it does not have.
    pub(super) fn doc_heads(&mut self, doc: DocId) -> Result<Option<DocHeads>> {
        let chat = doc.chat;
        let own = self.key.id();
        let Some(mut docs) = self.take_stored_docs(&chat)? else {
            return Ok(None);
        };
        let heads = docs.heads(&self.reads(), doc).map_err(Error::internal)?;
        let answer = DocHeads {
            heads,
            current_bucket: docs.bucket_number,
            orgs: ChatOrgs::of(&docs.state, &own),
        };
        self.chats.insert(chat, docs);
        Ok(Some(answer))
    }

    /// Adds, replaces or removes a peer record.
    pub(super) fn set_peer(
        &mut self,
        tx: &mut Tx,
        org: OrgId,
        record: Option<PeerRecord>,
    ) -> Result<()> {
        match record {
            Some(record) => {
                if record.name == self.org_name {
                    return Err(Error::invalid(
                        "invalid_body",
                        "a peer cannot have this node's own organisation name",
                    ));
                }
                let clash = peers(&self.reads())?
                    .into_iter()
                    .any(|(other, r)| other != org && r.name == record.name);
                if clash {
                    return Err(Error::conflict(
                        "conflict",
                        format!("another peer is named {:?}", record.name),
                    ));
                }
                tx.batch.put(Tree::Peers, org.as_bytes().to_vec(), json(&record));
            }
            None => tx.batch.delete(Tree::Peers, org.as_bytes().to_vec()),
        }
        Ok(())
    }
}

/// The answer to [`super::Command::DocHeads`].
#[derive(Clone, Debug)]
pub struct DocHeads {
    pub heads: Vec<[u8; 32]>,
    pub current_bucket: u32,
    pub orgs: ChatOrgs,
}
