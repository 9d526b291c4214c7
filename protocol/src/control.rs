//! The control document of a chat: metadata, members, roles, the membership epoch and the seals
//! of full history buckets. Only the owning organisation writes it.
//!
//! ```text
//! { "v": "confab-control/1",
//!   "chat": { "kind": "channel", "visibility": "public", "created_ms": …, "owner": "<org>" },   (JSON string)
//!   "name": "general", "topic": "…", "epoch": 3,
//!   "members": { "alice@acme": "{\"role\":\"owner\",\"org\":\"<org>\"}", … },
//!   "orgs":    { "<org>": "[[1,null]]", … },            (epoch ranges, JSON string)
//!   "buckets": { "1": "{\"sealed\":true,\"heads\":[…],\"messages\":5000}", … } }
//! ```
//!
//! `epoch` grows with every membership change; `orgs` records, per member organisation, the epoch
//! ranges `[from, until)` in which it is a member (`until` null while it still is). Validation of
//! bucket changes asks [`ControlState`] whether the signer's organisation was a member at the
//! epoch the change claims.

use crate::ids::{OrgId, UserId};
use crate::validate::{Membership, MembershipAnswer};
use automerge::transaction::Transactable;
use automerge::{AutoCommit, AutomergeError, ObjType, ReadDoc, ScalarValue, Value, ROOT};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const SCHEMA: &str = "confab-control/1";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatKind {
    Channel,
    Dm,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    Public,
    Private,
    Dm,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Member,
    Admin,
    Owner,
}

/// The fixed facts about a chat, written by genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatInfo {
    pub kind: ChatKind,
    pub visibility: Visibility,
    pub created_ms: u64,
    pub owner: OrgId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub role: Role,
    pub org: OrgId,
}

/// A bucket's entry: `sealed` with its final heads once full.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRecord {
    pub sealed: bool,
    /// Hex change hashes of the bucket's final heads.
    pub heads: Vec<String>,
    pub messages: u64,
}

/// Everything in a control document, read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlState {
    pub info: ChatInfo,
    pub name: String,
    pub topic: String,
    pub epoch: u64,
    pub members: BTreeMap<UserId, MemberRecord>,
    /// Per organisation: epoch ranges `[from, until)`; `until` is `None` while it is a member.
    pub orgs: BTreeMap<OrgId, Vec<(u64, Option<u64>)>>,
    pub buckets: BTreeMap<u32, BucketRecord>,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control document field {0:?} is missing or malformed")]
    Field(&'static str),
    #[error("automerge: {0}")]
    Automerge(#[from] AutomergeError),
}

/// Writes the genesis of a control document at epoch 1 with its first member.
pub fn genesis(
    doc: &mut AutoCommit,
    info: &ChatInfo,
    name: &str,
    topic: &str,
    first_member: (&UserId, &MemberRecord),
) -> Result<(), AutomergeError> {
    doc.put(ROOT, "v", SCHEMA)?;
    doc.put(ROOT, "chat", json(info))?;
    doc.put(ROOT, "name", name)?;
    doc.put(ROOT, "topic", topic)?;
    doc.put(ROOT, "epoch", 1u64)?;
    doc.put_object(ROOT, "members", ObjType::Map)?;
    doc.put_object(ROOT, "orgs", ObjType::Map)?;
    doc.put_object(ROOT, "buckets", ObjType::Map)?;
    put_member(doc, first_member.0, first_member.1)?;
    set_org_ranges(doc, &info.owner, &[(1, None)])
}

pub fn set_name(doc: &mut AutoCommit, name: &str) -> Result<(), AutomergeError> {
    doc.put(ROOT, "name", name)
}

pub fn set_topic(doc: &mut AutoCommit, topic: &str) -> Result<(), AutomergeError> {
    doc.put(ROOT, "topic", topic)
}

pub fn set_epoch(doc: &mut AutoCommit, epoch: u64) -> Result<(), AutomergeError> {
    doc.put(ROOT, "epoch", epoch)
}

pub fn put_member(
    doc: &mut AutoCommit,
    user: &UserId,
    record: &MemberRecord,
) -> Result<(), AutomergeError> {
    let members = map(doc, "members")?;
    doc.put(&members, user.as_str(), json(record))
}

pub fn remove_member(doc: &mut AutoCommit, user: &UserId) -> Result<(), AutomergeError> {
    let members = map(doc, "members")?;
    doc.delete(&members, user.as_str())
}

pub fn set_org_ranges(
    doc: &mut AutoCommit,
    org: &OrgId,
    ranges: &[(u64, Option<u64>)],
) -> Result<(), AutomergeError> {
    let orgs = map(doc, "orgs")?;
    doc.put(&orgs, org.to_string(), json(&ranges))
}

pub fn put_bucket(
    doc: &mut AutoCommit,
    number: u32,
    record: &BucketRecord,
) -> Result<(), AutomergeError> {
    let buckets = map(doc, "buckets")?;
    doc.put(&buckets, number.to_string(), json(record))
}

fn map(doc: &AutoCommit, name: &str) -> Result<automerge::ObjId, AutomergeError> {
    match doc.get(ROOT, name)? {
        Some((Value::Object(ObjType::Map), id)) => Ok(id),
        _ => Err(AutomergeError::InvalidOp(ObjType::Map)),
    }
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn scalar_str(doc: &impl ReadDoc, obj: &automerge::ObjId, key: &str) -> Option<String> {
    match doc.get(obj, key).ok()?? {
        (Value::Scalar(value), _) => match value.as_ref() {
            ScalarValue::Str(text) => Some(text.to_string()),
            _ => None,
        },
        _ => None,
    }
}

fn entries<T: serde::de::DeserializeOwned>(
    doc: &impl ReadDoc,
    name: &'static str,
) -> Result<Vec<(String, T)>, ControlError> {
    let obj = match doc.get(ROOT, name)? {
        Some((Value::Object(ObjType::Map), id)) => id,
        _ => return Err(ControlError::Field(name)),
    };
    let mut out = Vec::new();
    for key in doc.keys(&obj) {
        let text = scalar_str(doc, &obj, &key).ok_or(ControlError::Field(name))?;
        let value = serde_json::from_str(&text).map_err(|_| ControlError::Field(name))?;
        out.push((key, value));
    }
    Ok(out)
}

/// Reads the whole control document.
pub fn read(doc: &impl ReadDoc) -> Result<ControlState, ControlError> {
    let root = ROOT;
    if scalar_str(doc, &root, "v").as_deref() != Some(SCHEMA) {
        return Err(ControlError::Field("v"));
    }
    let info: ChatInfo = scalar_str(doc, &root, "chat")
        .and_then(|text| serde_json::from_str(&text).ok())
        .ok_or(ControlError::Field("chat"))?;
    let epoch = match doc.get(ROOT, "epoch")? {
        Some((Value::Scalar(value), _)) => value.as_u64().ok_or(ControlError::Field("epoch"))?,
        _ => return Err(ControlError::Field("epoch")),
    };
    let mut members = BTreeMap::new();
    for (key, record) in entries::<MemberRecord>(doc, "members")? {
        members.insert(key.parse().map_err(|_| ControlError::Field("members"))?, record);
    }
    let mut orgs = BTreeMap::new();
    for (key, ranges) in entries::<Vec<(u64, Option<u64>)>>(doc, "orgs")? {
        orgs.insert(key.parse().map_err(|_| ControlError::Field("orgs"))?, ranges);
    }
    let mut buckets = BTreeMap::new();
    for (key, record) in entries::<BucketRecord>(doc, "buckets")? {
        buckets.insert(key.parse().map_err(|_| ControlError::Field("buckets"))?, record);
    }
    Ok(ControlState {
        info,
        name: scalar_str(doc, &root, "name").ok_or(ControlError::Field("name"))?,
        topic: scalar_str(doc, &root, "topic").ok_or(ControlError::Field("topic"))?,
        epoch,
        members,
        orgs,
        buckets,
    })
}

impl Membership for ControlState {
    fn org_at_epoch(&self, org: &OrgId, epoch: u64) -> MembershipAnswer {
        // Epochs start at 1: epoch 0 never becomes known, so it is final, not pending.
        if epoch == 0 {
            return MembershipAnswer::NotMember;
        }
        if epoch > self.epoch {
            return MembershipAnswer::UnknownEpoch;
        }
        let member = self.orgs.get(org).is_some_and(|ranges| {
            ranges
                .iter()
                .any(|(from, until)| *from <= epoch && until.is_none_or(|until| epoch < until))
        });
        if member {
            MembershipAnswer::Member
        } else {
            MembershipAnswer::NotMember
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genesis_and_read_back() {
        let owner = OrgId::from_bytes([1; 32]);
        let alice: UserId = "alice@acme".parse().unwrap();
        let info = ChatInfo {
            kind: ChatKind::Channel,
            visibility: Visibility::Public,
            created_ms: 5,
            owner,
        };
        let mut doc = AutoCommit::new();
        genesis(
            &mut doc,
            &info,
            "general",
            "",
            (&alice, &MemberRecord { role: Role::Owner, org: owner }),
        )
        .unwrap();
        doc.commit();
        let state = read(&doc).unwrap();
        assert_eq!(state.info, info);
        assert_eq!(state.name, "general");
        assert_eq!(state.epoch, 1);
        assert_eq!(state.members[&alice].role, Role::Owner);
        assert_eq!(state.org_at_epoch(&owner, 1), MembershipAnswer::Member);
        assert_eq!(state.org_at_epoch(&owner, 2), MembershipAnswer::UnknownEpoch);
        assert_eq!(state.org_at_epoch(&OrgId::from_bytes([2; 32]), 1), MembershipAnswer::NotMember);
    }

    #[test]
    fn removed_org_is_not_a_member_at_later_epochs() {
        let owner = OrgId::from_bytes([1; 32]);
        let globex = OrgId::from_bytes([2; 32]);
        let alice: UserId = "alice@acme".parse().unwrap();
        let info = ChatInfo {
            kind: ChatKind::Channel,
            visibility: Visibility::Private,
            created_ms: 5,
            owner,
        };
        let mut doc = AutoCommit::new();
        genesis(
            &mut doc,
            &info,
            "x",
            "",
            (&alice, &MemberRecord { role: Role::Owner, org: owner }),
        )
        .unwrap();
        set_org_ranges(&mut doc, &globex, &[(2, Some(4))]).unwrap();
        set_epoch(&mut doc, 5).unwrap();
        doc.commit();
        let state = read(&doc).unwrap();
        assert_eq!(state.org_at_epoch(&globex, 1), MembershipAnswer::NotMember);
        assert_eq!(state.org_at_epoch(&globex, 3), MembershipAnswer::Member);
        assert_eq!(state.org_at_epoch(&globex, 4), MembershipAnswer::NotMember);
    }
}
