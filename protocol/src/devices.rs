//! The device list a node publishes for each of its users, signed by the organisation key.
//!
//! A sender seals what it pushes to a device to that device's X25519 key ([`SealingKey`]), and
//! relays check capabilities against its Ed25519 key ([`DevicePublicKey`]). Both come from this
//! list, so nobody but the user's organisation can add a device to it. A revoked device is
//! simply no longer listed; `issued_ms` orders lists, and a holder keeps the newest it verified.
//!
//! Signed payload (context `confab/v1/device-list`, see [`crate::relay::RelayDomain`]):
//! `version (1) = 0x01 ‖ org (32) ‖ user id length (1) ‖ user id (UTF-8) ‖ issued_ms (u64 BE) ‖
//! device count (u16 BE) ‖ per device: device id (16) ‖ signing key (32) ‖ sealing key (32) ‖
//! created_ms (u64 BE)`.

use crate::ids::{DeviceId, OrgId, UserId};
use crate::keys::{OrgKey, Signature, SignatureError};
use crate::relay::{org_sign, verify, DevicePublicKey, RelayDomain};
use serde::{Deserialize, Serialize};

crate::ids::fixed_bytes_id!(
    /// A device's X25519 public key: what is pushed to the device is sealed to it.
    SealingKey, 32, "52 characters"
);

/// Most devices one list may name.
pub const DEVICES_MAX: usize = 64;
const VERSION: u8 = 1;

/// One device of a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceEntry {
    pub device_id: DeviceId,
    pub signing_key: DevicePublicKey,
    pub sealing_key: SealingKey,
    pub created_ms: u64,
}

/// A user's current devices, as their organisation states them at `issued_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceList {
    pub org: OrgId,
    pub user: UserId,
    pub issued_ms: u64,
    pub devices: Vec<DeviceEntry>,
}

/// A [`DeviceList`] with the organisation's signature over [`DeviceList::signed_payload`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedDeviceList {
    pub list: DeviceList,
    #[serde(with = "crate::relay::b64_signature")]
    pub signature: Signature,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceListError {
    #[error("a device list names at most {DEVICES_MAX} devices")]
    TooManyDevices,
    #[error("device list signature: {0}")]
    Signature(#[from] SignatureError),
}

impl DeviceList {
    /// The bytes the organisation signs.
    pub fn signed_payload(&self) -> Result<Vec<u8>, DeviceListError> {
        if self.devices.len() > DEVICES_MAX {
            return Err(DeviceListError::TooManyDevices);
        }
        let user = self.user.as_str().as_bytes();
        let mut payload = Vec::with_capacity(44 + user.len() + self.devices.len() * 88);
        payload.push(VERSION);
        payload.extend_from_slice(self.org.as_bytes());
        // User ids are at most 255 bytes (`UserId` validates it).
        payload.push(user.len() as u8);
        payload.extend_from_slice(user);
        payload.extend_from_slice(&self.issued_ms.to_be_bytes());
        payload.extend_from_slice(&(self.devices.len() as u16).to_be_bytes());
        for device in &self.devices {
            payload.extend_from_slice(device.device_id.as_bytes());
            payload.extend_from_slice(device.signing_key.as_bytes());
            payload.extend_from_slice(device.sealing_key.as_bytes());
            payload.extend_from_slice(&device.created_ms.to_be_bytes());
        }
        Ok(payload)
    }

    /// Signs the list with the organisation key; `org` must be that key's id.
    pub fn sign(self, org: &OrgKey) -> Result<SignedDeviceList, DeviceListError> {
        let signature = org_sign(org, RelayDomain::DeviceList, &self.signed_payload()?);
        Ok(SignedDeviceList { list: self, signature })
    }
}

impl SignedDeviceList {
    /// Checks the signature by the organisation the list names, strictly.
    pub fn verify(&self) -> Result<(), DeviceListError> {
        let payload = self.list.signed_payload()?;
        verify(self.list.org.as_bytes(), RelayDomain::DeviceList, &payload, &self.signature)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(org: &OrgKey) -> DeviceList {
        DeviceList {
            org: org.id(),
            user: UserId::new("alice", "acme").unwrap(),
            issued_ms: 1_700_000_000_000,
            devices: vec![DeviceEntry {
                device_id: DeviceId::from_bytes([7; 16]),
                signing_key: DevicePublicKey::from_bytes([8; 32]),
                sealing_key: SealingKey::from_bytes([9; 32]),
                created_ms: 1_699_000_000_000,
            }],
        }
    }

    #[test]
    fn a_signed_list_verifies_and_any_change_breaks_it() {
        let org = OrgKey::from_seed([1; 32]);
        let signed = list(&org).sign(&org).unwrap();
        assert_eq!(signed.verify(), Ok(()));
        let json = serde_json::to_string(&signed).unwrap();
        let back: SignedDeviceList = serde_json::from_str(&json).unwrap();
        assert_eq!(back.verify(), Ok(()));

        let mut added = signed.clone();
        added.list.devices.push(DeviceEntry {
            device_id: DeviceId::from_bytes([3; 16]),
            signing_key: DevicePublicKey::from_bytes([3; 32]),
            sealing_key: SealingKey::from_bytes([3; 32]),
            created_ms: 0,
        });
        assert!(added.verify().is_err());
        let mut swapped = signed.clone();
        swapped.list.devices[0].sealing_key = SealingKey::from_bytes([10; 32]);
        assert!(swapped.verify().is_err());
        let other = OrgKey::from_seed([2; 32]);
        let mut forged = list(&org).sign(&other).unwrap();
        forged.list.org = org.id();
        assert!(forged.verify().is_err());
    }
}
