//! Device intents: register, forget (revoke) and point at a relay, with the renunciations
//! these leave for the push sender; and the `notification_sent` mark the push sender asks for
//! once a relay accepted an envelope.

use super::{json, Engine, Tx};
use super::{Error, Result};
use crate::model::{
    keys, now_ms, DeviceRecord, MessageState, PendingRenunciation, RelayRegistration,
};
use crate::store::Tree;
use crate::views;
use confab_protocol::relay::CapabilityToken;
use confab_protocol::{ChatId, DeviceId, MessageId, UserId};

impl Engine {
    pub(super) fn register_device(
        &mut self,
        tx: &mut Tx,
        record: DeviceRecord,
        devices_max: usize,
    ) -> Result<DeviceRecord> {
        let existing = views::devices(&self.reads(), &record.user)?;
        if existing.iter().any(|device| {
            device.signing_key == record.signing_key || device.sealing_key == record.sealing_key
        }) {
            return Err(Error::conflict(
                "device_exists",
                "a device with this key is already registered",
            ));
        }
        if existing.len() >= devices_max {
            return Err(Error::conflict(
                "too_many_devices",
                format!("at most {devices_max} devices per user; remove one first"),
            ));
        }
        tx.batch.put(Tree::Devices, keys::device(&record.user, &record.id), json(&record));
        Ok(record)
    }

    /// Forgets the device; a capability it gave this node for a relay queue is to be
    /// renounced there (recorded in the same transaction, so neither happens without the
    /// other).
    pub(super) fn revoke_device(
        &mut self,
        tx: &mut Tx,
        user: &UserId,
        device: &DeviceId,
        renunciations_max: usize,
    ) -> Result<()> {
        let record = views::device(&self.reads(), user, device)?
            .ok_or_else(|| Error::not_found("device"))?;
        tx.batch.delete(Tree::Devices, keys::device(user, device));
        if let Some(relay) = record.relay {
            self.record_renunciation(tx, user, relay, renunciations_max)?;
        }
        Ok(())
    }

    pub(super) fn set_device_relay(
        &mut self,
        tx: &mut Tx,
        user: &UserId,
        device: &DeviceId,
        relay: Option<RelayRegistration>,
        renunciations_max: usize,
    ) -> Result<DeviceRecord> {
        let mut record = views::device(&self.reads(), user, device)?
            .ok_or_else(|| Error::not_found("device"))?;
        let previous = std::mem::replace(&mut record.relay, relay);
        tx.batch.put(Tree::Devices, keys::device(user, device), json(&record));
        // A capability for a queue this node no longer pushes to is given up.
        if let Some(old) = previous {
            let kept = record
                .relay
                .as_ref()
                .is_some_and(|new| new.url == old.url && new.queue == old.queue);
            if !kept {
                self.record_renunciation(tx, user, old, renunciations_max)?;
            }
        }
        Ok(record)
    }

    /// Records that `relay`'s capability is to be renounced (the push sender does it and then
    /// forgets the record). A user has at most `renunciations_max` pending; past it the oldest
    /// is given up, so removing devices over and over cannot fill the store.
    fn record_renunciation(
        &mut self,
        tx: &mut Tx,
        user: &UserId,
        relay: RelayRegistration,
        renunciations_max: usize,
    ) -> Result<()> {
        let Ok(capability) = CapabilityToken::from_text(&relay.capability) else {
            // Checked when it was stored; a record that no longer parses cannot be renounced.
            tracing::warn!(%user, queue = %relay.queue, "push: stored capability unreadable, not renounced");
            return Ok(());
        };
        let pending = views::renunciations(&self.reads(), Some(user), usize::MAX)?;
        let excess = (pending.len() + 1).saturating_sub(renunciations_max.max(1));
        let mut oldest: Vec<_> = pending.into_iter().collect();
        oldest.sort_by_key(|(_, renunciation)| renunciation.recorded_ms);
        for (key, renunciation) in oldest.into_iter().take(excess) {
            tracing::warn!(%user, relay = %renunciation.relay.url, queue = %renunciation.relay.queue, "push: too many pending renunciations; the oldest is given up");
            tx.batch.delete(Tree::Renunciations, key);
        }
        let key = keys::renunciation(user, &relay.queue, &capability.id);
        let record = PendingRenunciation { user: user.clone(), relay, recorded_ms: now_ms() };
        tx.batch.put(Tree::Renunciations, key, json(&record));
        Ok(())
    }

    /// The push sender renounced the capability (or gave up on it): the record goes.
    pub(super) fn forget_renunciation(&mut self, tx: &mut Tx, key: Vec<u8>) -> Result<()> {
        tx.batch.delete(Tree::Renunciations, key);
        Ok(())
    }

    /// `sent` → `notification_sent`; later states stay (a state only moves forward).
    pub(super) fn mark_notified(
        &mut self,
        tx: &mut Tx,
        chat: &ChatId,
        message: &MessageId,
    ) -> Result<()> {
        if let Some(view) = views::message(&self.reads(), chat, message)? {
            self.advance_state(tx, view, MessageState::NotificationSent);
        }
        Ok(())
    }
}
