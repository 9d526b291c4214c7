//! The federation task's traffic counters ([`FederationStats`]), shown by the admin API.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

/// Traffic of the federation task since the process started, for the admin API and
/// benchmarks. Bytes are payload bytes (what is published or fetched), without libp2p's
/// framing, encryption or gossipsub control messages. Relaxed atomics: each counter is exact,
/// a snapshot of several is not taken at one instant.
#[derive(Debug, Default, Serialize)]
pub struct FederationStats {
    /// Own messages published on gossip (changes, presence and typing batches) that the
    /// network took.
    pub gossip_published_messages: AtomicU64,
    pub gossip_published_bytes: AtomicU64,
    /// Gossip messages received (changes, presence and typing batches), before validation:
    /// duplicates and invalid ones included.
    pub gossip_received_messages: AtomicU64,
    pub gossip_received_bytes: AtomicU64,
    /// Catch-up pages received from peers, as the requester.
    pub catchup_received_pages: AtomicU64,
    pub catchup_received_changes: AtomicU64,
    pub catchup_received_bytes: AtomicU64,
    /// Catch-up pages answered to peers.
    pub catchup_served_pages: AtomicU64,
    pub catchup_served_changes: AtomicU64,
    pub catchup_served_bytes: AtomicU64,
}

fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}

impl FederationStats {
    pub(super) fn published(&self, bytes: usize) {
        add(&self.gossip_published_messages, 1);
        add(&self.gossip_published_bytes, bytes);
    }

    pub(super) fn received(&self, bytes: usize) {
        add(&self.gossip_received_messages, 1);
        add(&self.gossip_received_bytes, bytes);
    }

    pub(super) fn page_received(&self, page: &confab_net::CatchupPage) {
        add(&self.catchup_received_pages, 1);
        add(&self.catchup_received_changes, page.changes.len());
        add(&self.catchup_received_bytes, page_bytes(page));
    }

    pub(super) fn page_served(&self, page: &confab_net::CatchupPage) {
        add(&self.catchup_served_pages, 1);
        add(&self.catchup_served_changes, page.changes.len());
        add(&self.catchup_served_bytes, page_bytes(page));
    }
}

fn page_bytes(page: &confab_net::CatchupPage) -> usize {
    page.changes.iter().map(Vec::len).sum()
}
