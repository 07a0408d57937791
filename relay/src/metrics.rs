//! Counters for `/metrics`, in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    pub agents_connected: AtomicI64,
    pub viewers_connected: AtomicI64,
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    /// Viewers (or agents) closed with 4001 because their queue overflowed.
    pub queue_drops: AtomicU64,
    /// Times a transcript viewer fell behind and was fed from the store (see `catch_up`).
    pub catch_ups: AtomicU64,
    pub invalid_frames: AtomicU64,
    pub rate_limited: AtomicU64,
    /// Connections refused by the per-IP cap.
    pub connections_refused: AtomicU64,
    /// Broker publishes that failed (each is retried).
    pub broker_publish_failures: AtomicU64,
    /// Broker messages that did not fit the queue (see the broker module).
    pub broker_overflows: AtomicU64,
    /// Push messages the push service, ntfy or a webhook took.
    pub push_sent: AtomicU64,
    /// Push messages dropped after a refusal or an hour of retries.
    pub push_failed: AtomicU64,
    /// Push messages not enqueued because the outbox was full.
    pub push_outbox_full: AtomicU64,
    /// Push messages dropped because their host resolved to an internal address at send time.
    pub push_endpoint_refused: AtomicU64,
    /// Looks into the push outbox (each one a statement on the store).
    pub push_claims: AtomicU64,
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut out = String::new();
        let gauges = [
            ("flightdeck_agents_connected", "Agents connected now.", self.agents_connected.load(Ordering::Relaxed)),
            ("flightdeck_viewers_connected", "Viewers connected now.", self.viewers_connected.load(Ordering::Relaxed)),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        let counters = [
            ("flightdeck_messages_in_total", "WebSocket messages received.", &self.messages_in),
            ("flightdeck_messages_out_total", "WebSocket messages sent.", &self.messages_out),
            (
                "flightdeck_queue_drops_total",
                "Sockets closed with 4001 because their queue overflowed.",
                &self.queue_drops,
            ),
            (
                "flightdeck_viewer_catch_ups_total",
                "Times a transcript viewer fell behind and caught up from the store instead of being closed.",
                &self.catch_ups,
            ),
            ("flightdeck_invalid_frames_total", "Invalid frames received.", &self.invalid_frames),
            ("flightdeck_rate_limited_total", "Requests refused by a rate limit.", &self.rate_limited),
            (
                "flightdeck_connections_refused_total",
                "Connections refused by the per-IP cap.",
                &self.connections_refused,
            ),
            (
                "flightdeck_broker_publish_failures_total",
                "Broker publishes that failed and were retried.",
                &self.broker_publish_failures,
            ),
            (
                "flightdeck_broker_overflows_total",
                "Broker messages that did not fit the queue (the other nodes were asked to resync).",
                &self.broker_overflows,
            ),
            (
                "flightdeck_push_sent_total",
                "Push messages delivered to a push service, ntfy or a webhook.",
                &self.push_sent,
            ),
            (
                "flightdeck_push_failed_total",
                "Push messages dropped (refused, or not delivered within an hour).",
                &self.push_failed,
            ),
            (
                "flightdeck_push_outbox_full_total",
                "Push messages not enqueued because the outbox was full.",
                &self.push_outbox_full,
            ),
            (
                "flightdeck_push_endpoint_refused_total",
                "Push messages dropped because their host resolved to an internal address when sent.",
                &self.push_endpoint_refused,
            ),
            ("flightdeck_push_claims_total", "Looks into the push outbox for due messages.", &self.push_claims),
        ];
        for (name, help, value) in counters {
            let _ =
                writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", value.load(Ordering::Relaxed));
        }
        out
    }
}
