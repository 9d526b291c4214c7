//! Counts of live things per key (a device's, a user's open WebSocket sessions), each counted
//! by a guard that gives its place back when dropped.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

pub struct LiveCount<K: Eq + Hash + Clone> {
    open: Mutex<HashMap<K, usize>>,
}

impl<K: Eq + Hash + Clone> Default for LiveCount<K> {
    fn default() -> Self {
        Self { open: Mutex::new(HashMap::new()) }
    }
}

impl<K: Eq + Hash + Clone> LiveCount<K> {
    fn lock(&self) -> MutexGuard<'_, HashMap<K, usize>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one more for `key` until the guard is dropped.
    pub fn connect(self: &Arc<Self>, key: K) -> LiveGuard<K> {
        *self.lock().entry(key.clone()).or_default() += 1;
        LiveGuard { count: self.clone(), key }
    }

    /// As [`Self::connect`], or `None` when `max` are live for `key` already.
    pub fn try_connect(self: &Arc<Self>, key: &K, max: usize) -> Option<LiveGuard<K>> {
        let mut open = self.lock();
        let live = open.get(key).copied().unwrap_or(0);
        if live >= max {
            return None;
        }
        open.insert(key.clone(), live + 1);
        Some(LiveGuard { count: self.clone(), key: key.clone() })
    }

    pub fn is_live(&self, key: &K) -> bool {
        self.lock().contains_key(key)
    }

    /// Live ones over all keys.
    pub fn total(&self) -> usize {
        self.lock().values().sum()
    }
}

/// One live thing's place in its key's count.
pub struct LiveGuard<K: Eq + Hash + Clone> {
    count: Arc<LiveCount<K>>,
    key: K,
}

impl<K: Eq + Hash + Clone> Drop for LiveGuard<K> {
    fn drop(&mut self) {
        let mut open = self.count.lock();
        if let Some(live) = open.get_mut(&self.key) {
            *live = live.saturating_sub(1);
            if *live == 0 {
                open.remove(&self.key);
            }
        }
    }
}
