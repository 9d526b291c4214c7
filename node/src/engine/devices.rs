//! Device intents: register, forget (revoke) and point at a relay; and the `notification_sent`
//! mark the push sender asks for once a relay accepted an envelope.

use super::{json, Engine, Tx};
use crate::error::{ApiError, ApiResult};
use crate::model::{keys, DeviceRecord, MessageState, RelayRegistration};
use crate::store::Tree;
use crate::views;
use confab_protocol::{ChatId, DeviceId, MessageId, UserId};

impl Engine {
    pub(super) fn register_device(
        &mut self,
        tx: &mut Tx,
        record: DeviceRecord,
        devices_max: usize,
    ) -> ApiResult<DeviceRecord> {
        let existing = views::devices(&self.reads(), &record.user)?;
        if existing.iter().any(|device| {
            device.signing_key == record.signing_key || device.sealing_key == record.sealing_key
        }) {
            return Err(ApiError::conflict(
                "device_exists",
                "a device with this key is already registered",
            ));
        }
        if existing.len() >= devices_max {
            return Err(ApiError::conflict(
                "too_many_devices",
                format!("at most {devices_max} devices per user; remove one first"),
            ));
        }
        tx.batch.put(
            Tree::Devices,
            keys::device(&record.user, &record.id),
            json(&record),
        );
        Ok(record)
    }

    pub(super) fn revoke_device(
        &mut self,
        tx: &mut Tx,
        user: &UserId,
        device: &DeviceId,
    ) -> ApiResult<()> {
        if views::device(&self.reads(), user, device)?.is_none() {
            return Err(ApiError::not_found("device"));
        }
        tx.batch.delete(Tree::Devices, keys::device(user, device));
        Ok(())
    }

    pub(super) fn set_device_relay(
        &mut self,
        tx: &mut Tx,
        user: &UserId,
        device: &DeviceId,
        relay: Option<RelayRegistration>,
    ) -> ApiResult<DeviceRecord> {
        let mut record = views::device(&self.reads(), user, device)?
            .ok_or_else(|| ApiError::not_found("device"))?;
        record.relay = relay;
        tx.batch
            .put(Tree::Devices, keys::device(user, device), json(&record));
        Ok(record)
    }

    /// `sent` → `notification_sent`; later states stay (a state only moves forward).
    pub(super) fn mark_notified(
        &mut self,
        tx: &mut Tx,
        chat: &ChatId,
        message: &MessageId,
    ) -> ApiResult<()> {
        if let Some(view) = views::message(&self.reads(), chat, message)? {
            self.advance_state(tx, view, MessageState::NotificationSent);
        }
        Ok(())
    }
}
