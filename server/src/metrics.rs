//! Process metrics, rendered as Prometheus text at `GET /metrics`.
//!
//! Counters are plain atomics updated with relaxed ordering: each is independent, and a scrape
//! that sees one counter a moment ahead of another is harmless. Nothing here allocates on the
//! paths that update it.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds, in seconds, of the persistence latency histogram's buckets.
const LATENCY_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_open: AtomicI64,
    pub connections_total: AtomicU64,
    pub sessions_active: AtomicI64,
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub chat_messages_stored: AtomicU64,
    pub direct_messages_stored: AtomicU64,
    pub notifications_stored: AtomicU64,
    /// Users with a device on this node (one inbox each).
    pub inboxes_active: AtomicI64,
    /// Of those, inboxes whose task runs: their user was sent something (or a device synced).
    pub inbox_tasks: AtomicI64,
    pub slow_disconnects: AtomicU64,
    pub sockets_refused: AtomicU64,
    pub frames_rate_limited: AtomicU64,
    pub http_rate_limited: AtomicU64,
    pub write_failures: AtomicU64,
    /// Messages between nodes that were sent and received.
    pub bus_sent: AtomicU64,
    pub bus_received: AtomicU64,
    /// Messages between nodes that could not be published or taken in.
    pub bus_lost: AtomicU64,
    pub persist_latency: Histogram,
}

/// A fixed-bucket latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(index) = LATENCY_BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[index].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let gauges = [
            ("convene_connections", "Open WebSocket connections.", self.connections_open.load(Ordering::Relaxed)),
            (
                "convene_sessions_active",
                "Sessions with a running actor on this node.",
                self.sessions_active.load(Ordering::Relaxed),
            ),
            (
                "convene_inboxes_active",
                "Users with a connection on this node.",
                self.inboxes_active.load(Ordering::Relaxed),
            ),
            (
                "convene_inbox_tasks",
                "Inboxes on this node with a running task: users sent something since their first connection here.",
                self.inbox_tasks.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in gauges {
            // Writing to a String cannot fail; the fmt::Result exists only for other writers.
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        let counters = [
            ("convene_connections_total", "WebSocket connections accepted.", &self.connections_total),
            ("convene_frames_in_total", "Frames received from clients.", &self.frames_in),
            ("convene_frames_out_total", "Frames queued to clients.", &self.frames_out),
            ("convene_chat_messages_stored_total", "Chat messages durably stored.", &self.chat_messages_stored),
            ("convene_direct_messages_stored_total", "1:1 messages durably stored.", &self.direct_messages_stored),
            ("convene_notifications_stored_total", "Notifications pushed and stored.", &self.notifications_stored),
            (
                "convene_slow_disconnects_total",
                "Connections closed because they did not read fast enough.",
                &self.slow_disconnects,
            ),
            (
                "convene_frames_rate_limited_total",
                "Frames refused because their connection sent past its frame budget.",
                &self.frames_rate_limited,
            ),
            (
                "convene_http_rate_limited_total",
                "HTTP requests refused (429) because their caller's budget was spent.",
                &self.http_rate_limited,
            ),
            (
                "convene_sockets_refused_total",
                "Sockets closed on accept because the node held too many.",
                &self.sockets_refused,
            ),
            (
                "convene_write_failures_total",
                "Writes the database refused or could not take in time.",
                &self.write_failures,
            ),
            ("convene_bus_sent_total", "Messages published to other nodes.", &self.bus_sent),
            ("convene_bus_received_total", "Messages received from other nodes.", &self.bus_received),
            (
                "convene_bus_lost_total",
                "Messages between nodes that were lost (queue full, Redis down).",
                &self.bus_lost,
            ),
        ];
        for (name, help, value) in counters {
            let _ =
                writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", value.load(Ordering::Relaxed));
        }
        self.persist_latency.render(
            &mut out,
            "convene_persist_seconds",
            "Time from a write's submission to its commit.",
        );
        out
    }
}
