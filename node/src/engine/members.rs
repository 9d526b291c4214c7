//! Membership intents: adding, removing, joining, leaving and roles, with the organisation
//! ranges a chat's control document keeps per member organisation.

use super::{json, Engine, Tx};
use super::{Error, Result};
use crate::events::{Audience, EventBody};
use crate::model::{keys, now_ms, ChatRecord, ChatView, MemberView};
use crate::store::Tree;
use crate::views;
use confab_protocol::control::{self, ChatKind, MemberRecord, Role, Visibility};
use confab_protocol::{ChatId, UserId};

/// An organisation's membership epochs in a control document: `[from, until)`.
pub(super) type OrgRanges = Vec<(u64, Option<u64>)>;

/// The organisation ranges to write when a user of `org` joins at `epoch`: a new open range if
/// the organisation is not a member now, else `None` (nothing changes).
pub(super) fn org_ranges_joining(
    state: &control::ControlState,
    org: &confab_protocol::OrgId,
    epoch: u64,
) -> Option<OrgRanges> {
    let mut ranges = state.orgs.get(org).cloned().unwrap_or_default();
    if ranges.iter().any(|(_, until)| until.is_none()) {
        return None;
    }
    ranges.push((epoch, None));
    Some(ranges)
}

/// The organisation ranges to write when `user` leaves at `epoch`: the user's organisation's
/// open range closes if nobody else of it stays (never the owner's), else `None`.
pub(super) fn org_ranges_leaving(
    state: &control::ControlState,
    user: &UserId,
    epoch: u64,
) -> Option<(confab_protocol::OrgId, OrgRanges)> {
    let org = state.members.get(user)?.org;
    if org == state.info.owner {
        return None;
    }
    let others_stay =
        state.members.iter().any(|(other, member)| other != user && member.org == org);
    if others_stay {
        return None;
    }
    let mut ranges = state.orgs.get(&org).cloned().unwrap_or_default();
    for range in &mut ranges {
        if range.1.is_none() {
            range.1 = Some(epoch);
        }
    }
    Some((org, ranges))
}

impl Engine {
    /// Adds `user` to the control document and views; the caller checked the rights.
    pub(super) fn add_to_chat(
        &mut self,
        tx: &mut Tx,
        record: &mut ChatRecord,
        user: &UserId,
        role: Role,
    ) -> Result<()> {
        if record.member_count >= self.limits.channel_members_max {
            return Err(Error::forbidden(
                "member_limit",
                format!(
                    "the channel has reached its limit of {} members",
                    self.limits.channel_members_max
                ),
            ));
        }
        let org = self.org_of_user(user)?;
        if org == self.key.id() {
            let target = self.user_record(user)?;
            if target.disabled {
                return Err(Error::invalid("invalid_body", format!("{user} is disabled")));
            }
        }
        let mut docs = self.take_owned_docs(&record.id)?;
        let member = user.clone();
        let epoch = docs.state.epoch + 1;
        let ranges = org_ranges_joining(&docs.state, &org, epoch);
        docs.change_control(
            &self.key,
            now_ms(),
            &mut tx.batch,
            |doc| {
                control::put_member(doc, &member, &MemberRecord { role, org })?;
                if let Some(ranges) = &ranges {
                    control::set_org_ranges(doc, &org, ranges)?;
                }
                Ok(())
            },
            true,
        )
        .map_err(Error::internal)?;
        self.chats.insert(record.id, docs);
        record.member_count += 1;
        record.federated |= org != self.key.id();
        tx.batch.put(Tree::Chats, record.id.as_bytes().to_vec(), json(&*record));
        self.dirty.chats.remove(&record.id);
        self.put_member_view(tx, &record.id, user, role);
        self.emit(
            tx,
            Audience::User(user.clone()),
            EventBody::ChatJoined { chat: ChatView::of(record, Some(role)) },
        );
        self.emit_chat_updated(tx, record);
        Ok(())
    }

    pub(super) fn remove_from_chat(
        &mut self,
        tx: &mut Tx,
        record: &mut ChatRecord,
        user: &UserId,
    ) -> Result<()> {
        let mut docs = self.take_owned_docs(&record.id)?;
        let member = user.clone();
        let epoch = docs.state.epoch + 1;
        let ranges = org_ranges_leaving(&docs.state, user, epoch);
        docs.change_control(
            &self.key,
            now_ms(),
            &mut tx.batch,
            |doc| {
                control::remove_member(doc, &member)?;
                if let Some((org, ranges)) = &ranges {
                    control::set_org_ranges(doc, org, ranges)?;
                }
                Ok(())
            },
            true,
        )
        .map_err(Error::internal)?;
        self.chats.insert(record.id, docs);
        record.member_count = record.member_count.saturating_sub(1);
        tx.batch.put(Tree::Chats, record.id.as_bytes().to_vec(), json(&*record));
        self.dirty.chats.remove(&record.id);
        tx.batch.delete(Tree::Members, keys::chat_member(&record.id, user));
        tx.batch.delete(Tree::UserChats, keys::user_chat(user, &record.id));
        self.emit(tx, Audience::User(user.clone()), EventBody::ChatLeft { chat_id: record.id });
        self.emit_chat_updated(tx, record);
        Ok(())
    }

    pub(super) fn join(&mut self, tx: &mut Tx, user: &UserId, chat: &ChatId) -> Result<ChatView> {
        let mut record = self.chat_record(chat)?;
        if let Some(role) = views::role(&self.reads(), chat, user)? {
            return Ok(ChatView::of(&record, Some(role)));
        }
        if record.visibility != Visibility::Public {
            return Err(Error::not_found("chat"));
        }
        self.add_to_chat(tx, &mut record, user, Role::Member)?;
        Ok(ChatView::of(&record, Some(Role::Member)))
    }

    pub(super) fn leave(&mut self, tx: &mut Tx, user: &UserId, chat: &ChatId) -> Result<()> {
        let mut record = self.chat_record(chat)?;
        self.require_role(chat, user)?;
        if record.kind == ChatKind::Dm {
            return Err(Error::invalid("bad_request", "you cannot leave a direct message"));
        }
        self.remove_from_chat(tx, &mut record, user)
    }

    pub(super) fn add_member(
        &mut self,
        tx: &mut Tx,
        by: &UserId,
        chat: &ChatId,
        target: &UserId,
        role: Role,
    ) -> Result<MemberView> {
        let mut record = self.chat_record(chat)?;
        let by_role = self.require_role(chat, by)?;
        if record.kind == ChatKind::Dm {
            return Err(Error::invalid("bad_request", "a DM's members are fixed; start a new DM"));
        }
        if record.visibility == Visibility::Private && by_role < Role::Admin {
            return Err(Error::forbidden(
                "forbidden",
                "only the owner or an admin can invite to a private channel",
            ));
        }
        if role == Role::Owner || (role == Role::Admin && by_role < Role::Owner) {
            return Err(Error::forbidden("forbidden", "you cannot grant that role"));
        }
        if views::role(&self.reads(), chat, target)?.is_some() {
            return Err(Error::conflict("conflict", format!("{target} is already a member")));
        }
        self.add_to_chat(tx, &mut record, target, role)?;
        Ok(MemberView { user_id: target.clone(), role })
    }

    pub(super) fn set_role(
        &mut self,
        tx: &mut Tx,
        by: &UserId,
        chat: &ChatId,
        target: &UserId,
        role: Role,
    ) -> Result<MemberView> {
        let record = self.chat_record(chat)?;
        if self.require_role(chat, by)? != Role::Owner || record.kind == ChatKind::Dm {
            return Err(Error::forbidden("forbidden", "only the channel's owner changes roles"));
        }
        if role == Role::Owner {
            return Err(Error::invalid("invalid_body", "role is admin or member"));
        }
        let current =
            views::role(&self.reads(), chat, target)?.ok_or_else(|| Error::not_found("member"))?;
        if current == Role::Owner {
            return Err(Error::forbidden("forbidden", "the owner's role cannot be changed"));
        }
        let org = self.org_of_user(target)?;
        let mut docs = self.take_owned_docs(chat)?;
        let member = target.clone();
        docs.change_control(
            &self.key,
            now_ms(),
            &mut tx.batch,
            |doc| control::put_member(doc, &member, &MemberRecord { role, org }),
            false,
        )
        .map_err(Error::internal)?;
        self.chats.insert(*chat, docs);
        self.put_member_view(tx, chat, target, role);
        self.emit_chat_updated(tx, &record);
        Ok(MemberView { user_id: target.clone(), role })
    }

    pub(super) fn remove_member(
        &mut self,
        tx: &mut Tx,
        by: &UserId,
        chat: &ChatId,
        target: &UserId,
    ) -> Result<()> {
        let mut record = self.chat_record(chat)?;
        let by_role = self.require_role(chat, by)?;
        if record.kind == ChatKind::Dm || by_role < Role::Admin {
            return Err(Error::forbidden(
                "forbidden",
                "only the owner or an admin removes members",
            ));
        }
        let target_role =
            views::role(&self.reads(), chat, target)?.ok_or_else(|| Error::not_found("member"))?;
        if target_role >= by_role {
            return Err(Error::forbidden(
                "forbidden",
                "you cannot remove a member of equal or higher role",
            ));
        }
        self.remove_from_chat(tx, &mut record, target)
    }
}
