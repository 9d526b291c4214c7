//! Node configuration: plain structs with defaults, layered from a TOML file, then environment
//! variables, then command-line flags (the binary does the layering).

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Where sled and the node key live.
    pub data_dir: PathBuf,
    /// The organisation's human name: users are `name@org_name`.
    pub org_name: String,
    /// Set the cookie's `Secure` flag (when served over HTTPS by a proxy).
    pub secure_cookies: bool,
    /// Reverse proxies whose `Forwarded` / `X-Forwarded-For` headers name the client (for the
    /// per-address login limit and the logs); addresses or networks. Empty: headers ignored.
    pub trusted_proxies: crate::forwarded::TrustedProxies,
    /// The bearer token `GET /metrics` asks for (at least 16 characters); unset: `/metrics`
    /// answers 404.
    pub metrics_token: Option<String>,
    pub limits: Limits,
    pub push: PushConfig,
    /// Federation with other organisations' nodes (`[federation]`); off unless it listens.
    pub federation: crate::federation::config::FederationConfig,
}

/// Pushing to offline devices through their relays (`[push]` in the TOML file).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    /// The relay the node offers devices that have not chosen one (`GET /api/v1/push`).
    pub default_relay_url: Option<String>,
    /// Further relays a device may choose instead of the default. The node pushes only
    /// through the relays it offers (the default and these), unless `other_relays_allowed`.
    pub relay_urls: Vec<String>,
    /// Whether a device may also name an `https` relay the node does not offer. The client
    /// page's Content-Security-Policy then lets it reach any `https` origin (`connect-src
    /// https:`), and the node makes requests to hosts its users choose: off by default.
    pub other_relays_allowed: bool,
    /// How long a relay keeps an envelope for an offline device.
    pub envelope_ttl_s: u32,
    /// One request to a relay, connection included.
    pub request_timeout_ms: u64,
    /// Pushes waiting for the sender; beyond, new ones are dropped and counted (the device
    /// still gets every message from the node when it reconnects).
    pub queue_max: usize,
    /// Pushes sent at once.
    pub concurrency: usize,
    /// Further attempts after a push the relay did not take for a passing reason (no answer,
    /// a timeout, 408, 429 or 5xx); the same envelope id each time, so the relay stores it
    /// once. A refusal (another 4xx) is never retried.
    pub retries_max: u32,
    /// Wait before the first retry; doubled for each next one, at most
    /// `retry_delay_ms_max`. A relay's `Retry-After` is waited instead when longer.
    pub retry_delay_ms: u64,
    /// Longest wait between two attempts.
    pub retry_delay_ms_max: u64,
    /// Devices one user may register.
    pub devices_per_user_max: usize,
    /// Longest device name, in characters.
    pub device_name_chars_max: usize,
    /// Longest relay URL, in bytes.
    pub relay_url_bytes_max: usize,
    /// Capabilities of a user's former devices waiting to be renounced at their relays; past
    /// it the oldest is given up.
    pub renunciations_per_user_max: usize,
    /// How often renunciations a relay did not take are tried again.
    pub renounce_retry_interval_s: u64,
}

impl PushConfig {
    /// The relays devices may choose, without a trailing `/`: the default first, no repeats.
    pub fn offered_relays(&self) -> Vec<String> {
        let mut offered: Vec<String> = Vec::new();
        for url in self.default_relay_url.iter().chain(&self.relay_urls) {
            let url = normalise_relay_url(url);
            if !offered.contains(&url) {
                offered.push(url);
            }
        }
        offered
    }

    /// Whether `url` is a plain `http(s)://host[:port][/path]` URL (no spaces or control
    /// characters) of at most `relay_url_bytes_max` bytes.
    pub fn is_relay_url(&self, url: &str) -> bool {
        let odd = url.chars().any(|c| c.is_whitespace() || c.is_control());
        !odd && url.len() <= self.relay_url_bytes_max && origin_of(url).is_some()
    }

    /// Refuses offered relay URLs that are not plain `http(s)://host[:port][/path]` URLs, so a
    /// typo is found at start rather than by the first device that enrols.
    pub fn validate(&self) -> Result<(), String> {
        for url in self.offered_relays() {
            if !self.is_relay_url(&url) {
                return Err(format!(
                    "push: relay URL {url:?} is not an http(s) URL of at most {} bytes",
                    self.relay_url_bytes_max
                ));
            }
        }
        Ok(())
    }
}

/// A relay URL as the node stores and compares it: without trailing `/`.
pub fn normalise_relay_url(url: &str) -> String {
    url.trim().trim_end_matches('/').to_string()
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            default_relay_url: None,
            relay_urls: Vec::new(),
            other_relays_allowed: false,
            envelope_ttl_s: 7 * 24 * 3600,
            request_timeout_ms: 10_000,
            queue_max: 4096,
            concurrency: 16,
            retries_max: 6,
            retry_delay_ms: 500,
            retry_delay_ms_max: 30_000,
            devices_per_user_max: 20,
            device_name_chars_max: 64,
            relay_url_bytes_max: 512,
            renunciations_per_user_max: 100,
            renounce_retry_interval_s: 300,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./confab-data"),
            org_name: "local".into(),
            secure_cookies: false,
            trusted_proxies: crate::forwarded::TrustedProxies::default(),
            metrics_token: None,
            limits: Limits::default(),
            push: PushConfig::default(),
            federation: crate::federation::config::FederationConfig::default(),
        }
    }
}

/// Every size, count and rate the node enforces.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest HTTP request body (uploads have their own limit, `upload_bytes_max`); past it 413.
    pub request_body_bytes_max: usize,
    /// Largest WebSocket frame, either way (a 100,000-character message fits in 1 MiB).
    pub websocket_frame_bytes_max: usize,
    /// Longest message body, in characters; past it 413 `message_too_long`.
    pub message_chars_max: usize,
    /// Most members of a channel.
    pub channel_members_max: usize,
    /// Most members of a direct message or group DM, its creator included.
    pub dm_members_max: usize,
    /// Longest channel name, in characters.
    pub chat_name_chars_max: usize,
    /// Longest channel topic, in characters.
    pub topic_chars_max: usize,
    /// Longest profile field (display name, status, time zone, team), in characters.
    pub profile_field_chars_max: usize,
    /// Failed sign-ins per account and per client address within `login_window_s` before further
    /// tries are refused with 429.
    pub login_failures_max: u32,
    /// The window the sign-in failures are counted in.
    pub login_window_s: u64,
    /// Frames a WebSocket session may send per second (a token bucket) ...
    pub websocket_frames_per_s: u32,
    /// ... and at once.
    pub websocket_frames_burst: u32,
    /// HTTP requests one signed-in user may make per second (a token bucket) ...
    pub requests_per_s_per_user: u32,
    /// ... and at once.
    pub requests_burst_per_user: u32,
    /// How long a session (the sign-in cookie) lasts.
    pub session_lifetime_s: u64,
    /// Events kept in the event log for clients that resume from a cursor; older ones are trimmed
    /// (a client behind them reloads).
    pub events_retained_max: u64,
    /// Messages per history document (bucket) of a chat before a new bucket starts.
    pub bucket_messages_max: u64,
    /// Most messages one history or sync page returns.
    pub history_page_max: usize,
    /// Unread messages counted per chat; more show as this many.
    pub unread_count_max: usize,
    /// WebSocket sessions one user may have open at once; the next is closed with 1008.
    pub websocket_connections_per_user_max: usize,
    /// How often each device sends a presence heartbeat.
    pub presence_heartbeat_interval_ms: u64,
    /// Heartbeats a device may miss before it counts as gone.
    pub presence_heartbeats_missed_max: u64,
    /// Shortest time between two typing notices of one session in one chat.
    pub typing_interval_min_ms: u64,
    /// How long a typing notice shows without a new one.
    pub typing_expiry_ms: u64,
    /// Shortest time between two group-commit flushes; intents arriving meanwhile share the
    /// next flush. Bounds the flush rate under load; adds at most this much latency.
    pub group_commit_interval_min_us: u64,
    /// sled page cache. Memory against speed: with this and `search_writer_heap_bytes` at
    /// 32 MiB each, confab-bench's flood peaked at 125-135 MiB instead of 182-199 but
    /// sustained 4,325 msg/s instead of 6,487 (same sitting).
    pub storage_cache_bytes: u64,
    /// Password hashes (Argon2id, 19 MiB each) computed at once; more wait.
    pub password_hashes_concurrent_max: usize,
    /// Largest file upload; past it the upload is refused with 413.
    pub upload_bytes_max: u64,
    /// How often the collector looks for blobs no message references any more.
    pub media_collect_interval_s: u64,
    /// Blobs younger than this are kept even when unreferenced (uploaded, not yet posted).
    pub media_collect_grace_s: u64,
    /// Indexing memory of the search index writer (see `storage_cache_bytes` for what
    /// lowering it costs).
    pub search_writer_heap_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            request_body_bytes_max: 1024 * 1024,
            websocket_frame_bytes_max: 1024 * 1024,
            message_chars_max: 100_000,
            channel_members_max: 10_000,
            dm_members_max: 9,
            chat_name_chars_max: 80,
            topic_chars_max: 250,
            profile_field_chars_max: 100,
            login_failures_max: 10,
            login_window_s: 300,
            websocket_frames_per_s: 200,
            websocket_frames_burst: 400,
            requests_per_s_per_user: 100,
            requests_burst_per_user: 200,
            session_lifetime_s: 30 * 24 * 3600,
            events_retained_max: 1_000_000,
            bucket_messages_max: 5_000,
            history_page_max: 200,
            unread_count_max: 10_000,
            websocket_connections_per_user_max: 32,
            presence_heartbeat_interval_ms: 5_000,
            presence_heartbeats_missed_max: 3,
            typing_interval_min_ms: 2_000,
            typing_expiry_ms: 6_000,
            group_commit_interval_min_us: 2_000,
            storage_cache_bytes: 64 * 1024 * 1024,
            password_hashes_concurrent_max: 2,
            upload_bytes_max: crate::media::UPLOAD_BYTES_MAX_DEFAULT,
            media_collect_interval_s: 3600,
            media_collect_grace_s: 24 * 3600,
            search_writer_heap_bytes: 64 * 1024 * 1024,
        }
    }
}

/// `scheme://host[:port]` of an http(s) URL made only of URL-safe characters; `None` otherwise
/// (nothing odd may reach the header).
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split('/').next()?;
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    if authority.is_empty() || !authority.chars().all(safe) {
        return None;
    }
    Some(format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The commented sample in the repository's root.
    const SAMPLE: &str = include_str!("../../confab.example.toml");

    #[test]
    fn the_sample_configuration_writes_out_every_setting_at_its_default() {
        let parsed: Config = toml::from_str(SAMPLE).expect("the sample parses as a Config");
        let sample: toml::Value = toml::from_str(SAMPLE).expect("the sample is TOML");
        let defaults = toml::Value::try_from(Config::default()).expect("the defaults serialise");
        // The sample's own text, not serde's defaults, holds every setting with its value.
        assert_eq!(sample, defaults, "confab.example.toml differs from Config::default()");
        assert_eq!(toml::Value::try_from(parsed).expect("serialise"), defaults);
    }

    #[test]
    fn an_unknown_setting_is_refused_by_name() {
        let error = toml::from_str::<Config>("[limits]\nmessage_chars = 5\n").expect_err("unknown");
        assert!(error.to_string().contains("message_chars"), "{error}");
    }

    #[test]
    fn trusted_proxies_are_checked_when_the_file_is_read() {
        let config: Config = toml::from_str("trusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n")
            .expect("addresses and networks");
        assert!(config.trusted_proxies.contains("10.1.2.3".parse().expect("ip")));
        let error = toml::from_str::<Config>("trusted_proxies = [\"proxy.local\"]\n")
            .expect_err("a host name is not an address");
        assert!(error.to_string().contains("proxy.local"), "{error}");
    }
}
