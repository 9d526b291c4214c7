//! Counters and gauges, rendered at `GET /metrics` in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// The relay's counters. All are monotonic except `queue_depth` and `queues` (gauges).
#[derive(Debug, Default)]
pub struct Metrics {
    pub queue_depth: AtomicU64,
    pub queues: AtomicU64,
    pub enqueued: AtomicU64,
    pub duplicates: AtomicU64,
    pub collapsed: AtomicU64,
    pub delivered: AtomicU64,
    pub expired: AtomicU64,
    pub purged: AtomicU64,
    pub overflowed: AtomicU64,
    pub rate_limited: AtomicU64,
    pub push_sent: AtomicU64,
    pub push_failed: AtomicU64,
    pub push_dropped: AtomicU64,
    pub push_subscriptions_deleted: AtomicU64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition (version 0.0.4).
    pub fn render(&self) -> String {
        let rows: [(&str, &str, &str, &AtomicU64); 14] = [
            ("confab_relay_queue_depth", "gauge", "Envelopes held, all queues.", &self.queue_depth),
            ("confab_relay_queues", "gauge", "Registered device queues.", &self.queues),
            (
                "confab_relay_enqueued_total",
                "counter",
                "Envelopes accepted (flushed) into a queue.",
                &self.enqueued,
            ),
            (
                "confab_relay_duplicates_total",
                "counter",
                "Enqueues answered as duplicates of an earlier envelope id.",
                &self.duplicates,
            ),
            (
                "confab_relay_collapsed_total",
                "counter",
                "Envelopes replaced by a newer one with the same topic.",
                &self.collapsed,
            ),
            (
                "confab_relay_delivered_total",
                "counter",
                "Envelopes acknowledged by their device and deleted.",
                &self.delivered,
            ),
            (
                "confab_relay_expired_total",
                "counter",
                "Envelopes dropped because their TTL ran out.",
                &self.expired,
            ),
            (
                "confab_relay_purged_total",
                "counter",
                "Envelopes deleted because their sender renounced its capability.",
                &self.purged,
            ),
            (
                "confab_relay_overflowed_total",
                "counter",
                "Enqueues refused because the queue was full.",
                &self.overflowed,
            ),
            (
                "confab_relay_rate_limited_total",
                "counter",
                "Enqueues refused with 429.",
                &self.rate_limited,
            ),
            (
                "confab_relay_push_sent_total",
                "counter",
                "Web Push messages accepted by a push service.",
                &self.push_sent,
            ),
            (
                "confab_relay_push_failed_total",
                "counter",
                "Web Push deliveries that failed.",
                &self.push_failed,
            ),
            (
                "confab_relay_push_dropped_total",
                "counter",
                "Wake-ups not attempted because the push queue was full.",
                &self.push_dropped,
            ),
            (
                "confab_relay_push_subscriptions_deleted_total",
                "counter",
                "Push subscriptions deleted after 404/410.",
                &self.push_subscriptions_deleted,
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {}", Self::get(value));
        }
        out
    }
}
