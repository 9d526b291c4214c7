//! `[federation]` settings. Kept apart from the federation task so that `config.rs` can hold
//! them without importing the engine.

use serde::{Deserialize, Serialize};

/// `[federation]` in the configuration file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FederationConfig {
    /// Multiaddrs to listen on, e.g. `/ip4/0.0.0.0/tcp/7700`. Empty: the node does not
    /// federate.
    pub listen: Vec<String>,
    /// Addresses put in invite tokens (what other organisations dial); the listen addresses
    /// when empty.
    pub public_addrs: Vec<String>,
    /// How often catch-up runs with every connected peer (gossip only repairs seconds of loss).
    pub anti_entropy_interval_s: u64,
    /// Invalid gossip messages from one peer after which it is blacklisted.
    pub blacklist_after_rejects: u32,
    /// Most gossip messages handed to the engine at once.
    pub gossip_batch_max: usize,
    /// Most catch-up pages fetched for one document in one sync.
    pub sync_pages_max: usize,
    /// How long an invite token stays valid.
    pub invite_ttl_s: u64,
    /// Most peered organisations.
    pub peers_max: usize,
}

impl Default for FederationConfig {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            public_addrs: Vec::new(),
            anti_entropy_interval_s: 30,
            blacklist_after_rejects: 10,
            gossip_batch_max: 256,
            sync_pages_max: 1000,
            invite_ttl_s: 7 * 24 * 3600,
            peers_max: 1024,
        }
    }
}
