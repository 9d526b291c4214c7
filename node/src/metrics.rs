//! The node's metrics, served as OpenMetrics text at `GET /metrics` (see [`render`]): what the
//! node counts as it runs (requests, WebSocket sessions, the engine's groups and flushes) lives
//! here as cheap shared counters; the federation's and the push sender's own counters are read
//! at each scrape. A fresh registry per scrape keeps the wiring free of start-up order.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One HTTP request's labels: the route as the router matched it (`/api/v1/chats/{chat_id}`,
/// so the label set stays bounded; `unmatched` for paths no route serves) and the status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub status: u16,
}

/// The engine's figures: its queue, its groups and their flushes, the messages it stored.
#[derive(Clone, Debug)]
pub struct EngineMetrics {
    /// Intents waiting in the engine's queue when a group starts.
    pub queue_depth: Gauge,
    /// Intents handled per group commit.
    pub group_intents: Histogram,
    /// Seconds one group's write and flush took (groups that wrote something).
    pub flush_seconds: Histogram,
    /// Messages stored durably (sent here or received from peers).
    pub messages_written: Counter,
}

impl Default for EngineMetrics {
    fn default() -> Self {
        Self {
            queue_depth: Gauge::default(),
            // 1, 2, 4 … 512 intents.
            group_intents: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            // 0.1 ms … about 3.3 s.
            flush_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            messages_written: Counter::default(),
        }
    }
}

/// What the HTTP side counts.
#[derive(Clone, Debug, Default)]
pub struct HttpMetrics {
    pub requests: Family<RequestLabels, Counter>,
}

/// The federation's figures at a scrape.
pub struct FederationFigures<'a> {
    pub stats: &'a crate::federation::FederationStats,
    /// Peered organisations, and how many are connected now.
    pub peers: usize,
    pub peers_connected: usize,
    /// Invalid messages received from the current peers since the node started.
    pub rejected_messages: u64,
}

/// The push sender's figures at a scrape.
pub struct PushFigures<'a> {
    pub counters: &'a crate::push::PushCounters,
    /// Pushes waiting for the sender now.
    pub queued: usize,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TrafficLabels {
    kind: &'static str,
    direction: &'static str,
}

fn counter_of(value: u64) -> Counter {
    let counter = Counter::default();
    counter.inc_by(value);
    counter
}

fn gauge_of(value: usize) -> Gauge {
    let gauge = Gauge::default();
    gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
    gauge
}

fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// The OpenMetrics exposition of everything the node measures. Names start `confab_`.
pub fn render(
    http: &HttpMetrics,
    websocket_sessions: usize,
    engine: &EngineMetrics,
    federation: Option<FederationFigures<'_>>,
    push: Option<PushFigures<'_>>,
) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("confab");
    registry.register("http_requests", "HTTP requests by route and status", http.requests.clone());
    registry.register(
        "websocket_sessions",
        "WebSocket sessions open now",
        gauge_of(websocket_sessions),
    );
    registry.register(
        "engine_queue_depth",
        "Intents waiting in the engine's queue when its last group started",
        engine.queue_depth.clone(),
    );
    registry.register(
        "engine_group_intents",
        "Intents handled per group commit",
        engine.group_intents.clone(),
    );
    registry.register(
        "engine_flush_seconds",
        "Time one group's write and flush took, for groups that wrote",
        engine.flush_seconds.clone(),
    );
    registry.register(
        "messages_written",
        "Messages stored durably, sent here or received from peers",
        engine.messages_written.clone(),
    );
    if let Some(federation) = federation {
        register_federation(&mut registry, &federation);
    }
    if let Some(push) = push {
        register_push(&mut registry, &push);
    }
    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(text)
}

fn register_federation(registry: &mut Registry, federation: &FederationFigures<'_>) {
    registry.register("federation_peers", "Peered organisations", gauge_of(federation.peers));
    registry.register(
        "federation_peers_connected",
        "Peered organisations connected now",
        gauge_of(federation.peers_connected),
    );
    registry.register(
        "federation_rejected_messages",
        "Invalid messages received from the current peers since the node started",
        counter_of(federation.rejected_messages),
    );
    let stats = federation.stats;
    let messages = Family::<TrafficLabels, Counter>::default();
    let bytes = Family::<TrafficLabels, Counter>::default();
    let rows = [
        ("gossip", "out", &stats.gossip_published_messages, &stats.gossip_published_bytes),
        ("gossip", "in", &stats.gossip_received_messages, &stats.gossip_received_bytes),
        ("catchup", "in", &stats.catchup_received_pages, &stats.catchup_received_bytes),
        ("catchup", "out", &stats.catchup_served_pages, &stats.catchup_served_bytes),
    ];
    for (kind, direction, count, size) in rows {
        let labels = TrafficLabels { kind, direction };
        messages.get_or_create(&labels).inc_by(read(count));
        bytes.get_or_create(&labels).inc_by(read(size));
    }
    registry.register(
        "federation_messages",
        "Gossip messages and catch-up pages, in (received) and out (published or served)",
        messages,
    );
    registry.register("federation_bytes", "Bytes of those messages and pages", bytes);
}

fn register_push(registry: &mut Registry, push: &PushFigures<'_>) {
    let counters = push.counters;
    registry.register("push_queued", "Pushes waiting for the sender", gauge_of(push.queued));
    let outcomes = Family::<OutcomeLabels, Counter>::default();
    let rows = [
        ("accepted", &counters.accepted),
        ("failed", &counters.failed),
        ("dropped", &counters.dropped),
        ("unwoken", &counters.unwoken),
    ];
    for (outcome, count) in rows {
        outcomes.get_or_create(&OutcomeLabels { outcome }).inc_by(read(count));
    }
    registry.register(
        "push_outcomes",
        "Pushes by outcome: accepted by the relay, failed, dropped (queue full), stored unwoken",
        outcomes,
    );
    registry.register(
        "push_retries",
        "Push attempts after the first",
        counter_of(read(&counters.retried)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_figure_and_moves_with_them() {
        let http = HttpMetrics::default();
        let engine = EngineMetrics::default();
        let before = render(&http, 0, &engine, None, None).expect("render");
        assert!(before.contains("confab_messages_written_total 0"), "{before}");
        http.requests.get_or_create(&RequestLabels { route: "/healthz".into(), status: 200 }).inc();
        engine.messages_written.inc_by(3);
        engine.flush_seconds.observe(0.002);
        let after = render(&http, 0, &engine, None, None).expect("render");
        assert!(after.contains("confab_messages_written_total 3"), "{after}");
        assert!(
            after.contains("confab_http_requests_total{route=\"/healthz\",status=\"200\"} 1"),
            "{after}"
        );
        assert!(after.contains("confab_engine_flush_seconds_count 1"), "{after}");
        assert!(after.ends_with("# EOF\n"), "{after}");
    }
}
