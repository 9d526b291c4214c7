//! Account intents: creating users, passwords, profiles, disabling, do-not-disturb.

use super::error::require_plain_text;
use super::{json, Engine, ProfilePatch, Tx};
use super::{Error, Result};
use crate::events::{Audience, EventBody};
use crate::model::{now_ms, UserRecord, UserView};
use crate::store::{KvRead, Tree};
use crate::views;
use confab_protocol::UserId;

impl Engine {
    pub(super) fn user_record(&self, user: &UserId) -> Result<UserRecord> {
        if user.org_name() != self.org_name {
            return Err(Error::not_found("user"));
        }
        views::user(&self.reads(), user.localpart())?.ok_or_else(|| Error::not_found("user"))
    }

    pub(super) fn create_user(
        &mut self,
        tx: &mut Tx,
        username: &str,
        password_hash: String,
        display_name: String,
        force_admin: Option<bool>,
        bypass_registration: bool,
    ) -> Result<UserRecord> {
        let id = UserId::new(username, &self.org_name)
            .map_err(|e| Error::invalid("invalid_username", e.to_string()))?;
        if views::user(&self.reads(), username)?.is_some() {
            return Err(Error::conflict(
                "username_taken",
                format!("the username {username:?} is taken"),
            ));
        }
        let first =
            self.reads().range(Tree::Users, crate::store::prefix_range(b""), false, 1)?.is_empty();
        if !bypass_registration && !first && !views::settings(&self.reads())?.registration_open {
            return Err(Error::forbidden(
                "registration_closed",
                "registration is closed on this node",
            ));
        }
        let display_name =
            self.profile_field("display_name", Some(display_name))?.unwrap_or_default();
        let record = UserRecord {
            display_name: if display_name.is_empty() { username.to_string() } else { display_name },
            id,
            password_hash,
            status_text: String::new(),
            time_zone: String::new(),
            team: String::new(),
            is_admin: force_admin.unwrap_or(first),
            disabled: false,
            created_ms: now_ms(),
            session_generation: 0,
            dnd_until_ms: None,
        };
        self.put_user(tx, &record);
        Ok(record)
    }

    pub(super) fn put_user(&mut self, tx: &mut Tx, record: &UserRecord) {
        tx.batch.put(Tree::Users, record.id.localpart().as_bytes().to_vec(), json(record));
        self.emit(tx, Audience::All, EventBody::UserUpdated { user: UserView::from(record) });
    }

    pub(super) fn set_password(
        &mut self,
        tx: &mut Tx,
        username: &str,
        password_hash: String,
    ) -> Result<UserRecord> {
        let mut record =
            views::user(&self.reads(), username)?.ok_or_else(|| Error::not_found("user"))?;
        record.password_hash = password_hash;
        record.session_generation += 1;
        tx.batch.put(Tree::Users, username.as_bytes().to_vec(), json(&record));
        Ok(record)
    }

    pub(super) fn profile_field(
        &self,
        name: &str,
        value: Option<String>,
    ) -> Result<Option<String>> {
        let Some(value) = value else { return Ok(None) };
        let value = value.trim().to_string();
        let max = self.limits.profile_field_chars_max;
        require_plain_text(&value, 0..=max, || {
            format!("{name} must be at most {max} characters without control characters")
        })?;
        Ok(Some(value))
    }

    pub(super) fn update_profile(
        &mut self,
        tx: &mut Tx,
        user: &UserId,
        patch: ProfilePatch,
    ) -> Result<UserRecord> {
        let mut record = self.user_record(user)?;
        if let Some(name) = self.profile_field("display_name", patch.display_name)? {
            record.display_name = if name.is_empty() { user.localpart().to_string() } else { name };
        }
        if let Some(status) = self.profile_field("status_text", patch.status_text)? {
            record.status_text = status;
        }
        if let Some(zone) = self.profile_field("time_zone", patch.time_zone)? {
            record.time_zone = zone;
        }
        if let Some(team) = self.profile_field("team", patch.team)? {
            record.team = team;
        }
        self.put_user(tx, &record);
        Ok(record)
    }

    pub(super) fn set_disabled(
        &mut self,
        tx: &mut Tx,
        user: &UserId,
        disabled: bool,
    ) -> Result<UserRecord> {
        let mut record = self.user_record(user)?;
        if record.disabled != disabled {
            record.disabled = disabled;
            record.session_generation += 1;
            self.put_user(tx, &record);
        }
        Ok(record)
    }

    pub(super) fn set_do_not_disturb(
        &mut self,
        tx: &mut Tx,
        user: &UserId,
        until_ms: Option<u64>,
    ) -> Result<UserRecord> {
        let mut record = self.user_record(user)?;
        record.dnd_until_ms = until_ms;
        self.put_user(tx, &record);
        Ok(record)
    }
}
