//! Presence: who is online, away or offline, as an I/O-free state machine fed heartbeats,
//! disconnects and ticks with the current time (so it is tested without waiting).
//!
//! Each device (WebSocket session) heartbeats every `heartbeat_interval_ms` (5 s by default).
//! A device is alive until `heartbeats_missed_max` intervals (15 s) pass without one. A user is
//! online while any alive device is active, away while alive devices are all idle, offline when
//! none is alive. A disconnect does not end a device at once: it lapses like a missed heartbeat,
//! so a quick reconnect (a new device) makes no online/offline flap. Only changes of the
//! published status come out; heartbeats never leave the node.

use confab_protocol::UserId;
use serde::Serialize;
use std::collections::HashMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Online,
    Away,
    Offline,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PresenceView {
    pub user_id: UserId,
    pub status: Status,
    /// Last time any device of the user was active (not idle); 0 if never seen.
    pub last_active_ms: u64,
}

#[derive(Clone, Copy, Debug)]
pub struct PresenceConfig {
    pub heartbeat_interval_ms: u64,
    pub heartbeats_missed_max: u64,
}

impl PresenceConfig {
    fn lapse_ms(&self) -> u64 {
        self.heartbeat_interval_ms * self.heartbeats_missed_max
    }
}

#[derive(Debug)]
struct Device {
    last_seen_ms: u64,
    idle: bool,
}

#[derive(Debug)]
struct UserState {
    devices: HashMap<u64, Device>,
    published: Status,
    last_active_ms: u64,
}

/// Presence of every user with a device seen recently.
#[derive(Debug)]
pub struct PresenceTracker {
    config: PresenceConfig,
    users: HashMap<UserId, UserState>,
}

impl PresenceTracker {
    pub fn new(config: PresenceConfig) -> Self {
        Self { config, users: HashMap::new() }
    }

    /// A heartbeat (or a new connection) from `device` of `user`.
    pub fn heartbeat(
        &mut self,
        user: &UserId,
        device: u64,
        idle: bool,
        now_ms: u64,
    ) -> Option<PresenceView> {
        let state = self.users.entry(user.clone()).or_insert_with(|| UserState {
            devices: HashMap::new(),
            published: Status::Offline,
            last_active_ms: 0,
        });
        state.devices.insert(device, Device { last_seen_ms: now_ms, idle });
        if !idle {
            state.last_active_ms = now_ms;
        }
        self.republish(user, now_ms)
    }

    /// The device's connection closed. It lapses like a device that stopped heartbeating, so
    /// nothing changes now; a reconnect within the lapse keeps the user online.
    pub fn disconnect(&mut self, user: &UserId, device: u64, now_ms: u64) -> Option<PresenceView> {
        let _ = (user, device, now_ms);
        None
    }

    /// Expires lapsed devices; returns the users whose status changed.
    pub fn tick(&mut self, now_ms: u64) -> Vec<PresenceView> {
        let lapse = self.config.lapse_ms();
        let mut changed_users = Vec::new();
        for (user, state) in &mut self.users {
            let before = state.devices.len();
            state.devices.retain(|_, device| now_ms.saturating_sub(device.last_seen_ms) < lapse);
            if state.devices.len() != before {
                changed_users.push(user.clone());
            }
        }
        let changes =
            changed_users.iter().filter_map(|user| self.republish(user, now_ms)).collect();
        // Forget offline users with no devices, so memory follows who is connected.
        self.users
            .retain(|_, state| !state.devices.is_empty() || state.published != Status::Offline);
        changes
    }

    fn republish(&mut self, user: &UserId, now_ms: u64) -> Option<PresenceView> {
        let lapse = self.config.lapse_ms();
        let state = self.users.get_mut(user)?;
        let alive =
            state.devices.values().filter(|d| now_ms.saturating_sub(d.last_seen_ms) < lapse);
        let mut status = Status::Offline;
        for device in alive {
            if !device.idle {
                status = Status::Online;
                break;
            }
            status = Status::Away;
        }
        if status == state.published {
            return None;
        }
        state.published = status;
        Some(PresenceView { user_id: user.clone(), status, last_active_ms: state.last_active_ms })
    }

    pub fn view(&self, user: &UserId) -> PresenceView {
        match self.users.get(user) {
            Some(state) => PresenceView {
                user_id: user.clone(),
                status: state.published,
                last_active_ms: state.last_active_ms,
            },
            None => {
                PresenceView { user_id: user.clone(), status: Status::Offline, last_active_ms: 0 }
            }
        }
    }

    /// Last-active times of users that went offline are kept by the caller if needed.
    pub fn tracked_users(&self) -> usize {
        self.users.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> PresenceTracker {
        PresenceTracker::new(PresenceConfig {
            heartbeat_interval_ms: 5_000,
            heartbeats_missed_max: 3,
        })
    }

    fn alice() -> UserId {
        "alice@local".parse().unwrap()
    }

    #[test]
    fn online_then_offline_after_three_missed_heartbeats() {
        let mut presence = tracker();
        let change = presence.heartbeat(&alice(), 1, false, 1_000).unwrap();
        assert_eq!((change.status, change.last_active_ms), (Status::Online, 1_000));
        assert_eq!(
            presence.heartbeat(&alice(), 1, false, 6_000),
            None,
            "heartbeats publish nothing"
        );
        assert!(presence.tick(20_000).is_empty(), "14 s after the last heartbeat: still online");
        let changes = presence.tick(21_000);
        assert_eq!(changes.len(), 1);
        assert_eq!((changes[0].status, changes[0].last_active_ms), (Status::Offline, 6_000));
        assert_eq!(presence.tracked_users(), 0);
    }

    #[test]
    fn a_quick_reconnect_makes_no_flap() {
        let mut presence = tracker();
        presence.heartbeat(&alice(), 1, false, 0);
        assert_eq!(presence.disconnect(&alice(), 1, 2_000), None);
        assert_eq!(
            presence.heartbeat(&alice(), 2, false, 3_000),
            None,
            "a new device of an online user"
        );
        assert!(presence.tick(16_000).is_empty(), "the old device lapses, the user stays online");
        assert_eq!(presence.view(&alice()).status, Status::Online);
    }

    #[test]
    fn idle_devices_make_the_user_away() {
        let mut presence = tracker();
        presence.heartbeat(&alice(), 1, false, 0);
        assert_eq!(presence.heartbeat(&alice(), 1, true, 5_000).unwrap().status, Status::Away);
        assert_eq!(presence.heartbeat(&alice(), 2, false, 6_000).unwrap().status, Status::Online);
        assert_eq!(presence.view(&alice()).last_active_ms, 6_000);
    }
}
