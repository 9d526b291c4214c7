//! The relay's configuration: a plain struct with defaults. The binary layers a TOML file,
//! environment variables and command-line flags over these defaults; tests build it directly.

use serde::Deserialize;
use std::path::PathBuf;

/// Everything the relay needs besides its listener and shutdown signal.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where sled keeps the relay's data.
    pub data_dir: PathBuf,
    /// The VAPID `sub` claim (RFC 8292 §2.1): a `mailto:` or `https:` contact for the operator.
    pub vapid_subject: String,
    /// Allow push endpoints that resolve to loopback, private, link-local or other
    /// non-public addresses (off by default: a relay must not be turned against its own network).
    pub allow_private_push_endpoints: bool,
    /// Allow `http://` push endpoints (off by default; tests turn it on).
    pub allow_http_push_endpoints: bool,
    /// How often expired envelopes and stale records are swept.
    pub sweep_interval_ms: u64,
    /// After every sled flush, also `fsync` sled's data file before acknowledging (sled 0.34's
    /// flush uses `sync_file_range`, which survives a process crash but not necessarily a power
    /// loss). On by default.
    pub fsync: bool,
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("confab-relay-data"),
            vapid_subject: "mailto:relay-operator@example.invalid".to_owned(),
            allow_private_push_endpoints: false,
            allow_http_push_endpoints: false,
            sweep_interval_ms: 1_000,
            fsync: true,
            limits: Limits::default(),
        }
    }
}

/// Every size, count and rate the relay enforces. `spec/relay.md` lists them with their errors.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest HTTP request body (413 `payload_too_large` beyond).
    pub request_body_bytes_max: usize,
    /// Largest encoded sealed envelope (413 `envelope_too_large` beyond).
    pub sealed_bytes_max: usize,
    /// Largest envelope TTL in seconds (400 `invalid_ttl` beyond, or for 0).
    pub ttl_s_max: u32,
    /// How far an enqueue request's `sent_ms` may be from the relay's clock (400 `stale_request`).
    pub clock_skew_s_max: u64,
    /// Longest a capability token may still be valid for (403 `capability_lifetime`).
    pub capability_lifetime_s_max: u64,
    /// Envelopes held per queue (507 `queue_full` beyond).
    pub queue_envelopes_max: u64,
    /// Bytes of sealed envelopes held per queue (507 `queue_full` beyond).
    pub queue_bytes_max: u64,
    /// Queues on this relay (507 `relay_full` beyond).
    pub queues_max: u64,
    /// Revoked capabilities remembered per queue (409 `revocation_limit` beyond).
    pub revocations_per_queue_max: u64,
    /// Sustained enqueues per second per recipient queue (429 `rate_limited` beyond the burst).
    pub enqueue_rate_per_s: f64,
    pub enqueue_burst: f64,
    /// Sustained registrations per second, relay-wide.
    pub register_rate_per_s: f64,
    pub register_burst: f64,
    /// Sustained challenges issued per second, relay-wide.
    pub challenge_rate_per_s: f64,
    pub challenge_burst: f64,
    /// Challenges outstanding at once (503 `busy` beyond).
    pub challenges_outstanding_max: usize,
    /// Seconds a challenge stays valid.
    pub challenge_ttl_s: u64,
    /// Envelopes per fetch answer or WebSocket batch.
    pub fetch_envelopes_max: usize,
    /// Bytes of sealed envelopes per fetch answer or WebSocket batch (at least one is sent).
    pub fetch_bytes_max: usize,
    /// Envelope ids per acknowledgement (400 `too_many_ids` beyond).
    pub ack_ids_max: usize,
    /// Envelopes sent over one WebSocket and not yet acknowledged.
    pub ws_inflight_max: usize,
    /// Largest WebSocket message a device may send.
    pub ws_message_bytes_max: usize,
    /// Seconds a WebSocket client has to answer the challenge.
    pub ws_auth_timeout_s: u64,
    /// WebSocket sessions open at once, relay-wide (503 `busy` beyond).
    pub ws_sessions_max: usize,
    /// Wake-ups waiting to be pushed (beyond: counted as `push_dropped`, the envelope stays).
    pub push_queue_max: usize,
    /// Pushes in flight at once.
    pub push_concurrency: usize,
    /// Seconds one push delivery may take.
    pub push_timeout_s: u64,
    /// Longest push endpoint URL.
    pub push_endpoint_len_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            request_body_bytes_max: 96 * 1024,
            sealed_bytes_max: 64 * 1024,
            ttl_s_max: 7 * 24 * 3600,
            clock_skew_s_max: 600,
            capability_lifetime_s_max: 400 * 24 * 3600,
            queue_envelopes_max: 1_000,
            queue_bytes_max: 16 * 1024 * 1024,
            queues_max: 100_000,
            revocations_per_queue_max: 1_024,
            enqueue_rate_per_s: 10.0,
            enqueue_burst: 100.0,
            register_rate_per_s: 5.0,
            register_burst: 50.0,
            challenge_rate_per_s: 200.0,
            challenge_burst: 1_000.0,
            challenges_outstanding_max: 10_000,
            challenge_ttl_s: 60,
            fetch_envelopes_max: 100,
            fetch_bytes_max: 1024 * 1024,
            ack_ids_max: 1_000,
            ws_inflight_max: 256,
            ws_message_bytes_max: 64 * 1024,
            ws_auth_timeout_s: 10,
            ws_sessions_max: 10_000,
            push_queue_max: 1_024,
            push_concurrency: 16,
            push_timeout_s: 10,
            push_endpoint_len_max: 1_024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_layers_over_defaults() {
        let config: Config = toml::from_str(
            "data_dir = \"/var/lib/relay\"\nfsync = false\n[limits]\nqueue_envelopes_max = 5\n",
        )
        .expect("toml");
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/relay"));
        assert!(!config.fsync);
        assert_eq!(config.limits.queue_envelopes_max, 5);
        assert_eq!(config.limits.ttl_s_max, Limits::default().ttl_s_max);
        assert!(toml::from_str::<Config>("no_such_field = 1").is_err());
    }
}
