//! A log server's metrics (`mason corfu-server --metrics-listen`): writes, reads and tail
//! requests received, entries appended, refusals, fdatasyncs and their latency, forward
//! timeouts, corrupt reads, and the inbox's depth. The runtime counts frames as they
//! arrive and syncs as it carries them out, and copies the node's own counts
//! ([`NodeStats`]) on a timer. `mason_log_server_info` carries the server's place
//! (shard, chain index) as labels, Prometheus's way of labelling a whole process.

use crate::node::NodeStats;
use mason_common::metrics::{self, Histogram, IntCounter, IntGauge};
use mason_common::msg::Body;
use std::sync::OnceLock;
use std::time::Duration;

pub(crate) struct LogMetrics {
    writes: IntCounter,
    reads: IntCounter,
    tails: IntCounter,
    appended: IntCounter,
    refused: IntCounter,
    syncs: IntCounter,
    timeouts: IntCounter,
    corrupt_reads: IntCounter,
    fsync: Histogram,
    pub(crate) inbox: IntGauge,
}

/// The process's log server metrics (made and registered on first use).
pub(crate) fn get() -> &'static LogMetrics {
    static M: OnceLock<LogMetrics> = OnceLock::new();
    M.get_or_init(|| {
        let frames = metrics::counter_vec(
            "mason_log_requests_total",
            "Requests received, by kind (write, read, tail).",
            &["kind"],
        );
        LogMetrics {
            writes: frames.with_label_values(&["write"]),
            reads: frames.with_label_values(&["read"]),
            tails: frames.with_label_values(&["tail"]),
            appended: metrics::counter(
                "mason_log_appended_total",
                "Entries appended to this server's store.",
            ),
            refused: metrics::counter(
                "mason_log_refused_total",
                "Writes refused (a position already written, out of place, too large).",
            ),
            syncs: metrics::counter(
                "mason_log_syncs_total",
                "fdatasyncs that completed (one covers every append of a burst).",
            ),
            timeouts: metrics::counter(
                "mason_log_forward_timeouts_total",
                "Writes forwarded down the chain that the successor did not answer in time.",
            ),
            corrupt_reads: metrics::counter(
                "mason_log_corrupt_reads_total",
                "Reads that found a damaged entry.",
            ),
            fsync: metrics::histogram(
                "mason_log_fsync_seconds",
                "Time of one fdatasync of the store (a no-op with fsync off).",
                metrics::LATENCY_BUCKETS,
            ),
            inbox: metrics::gauge(
                "mason_log_inbox_events",
                "Events waiting in the server's inbox (its queue depth).",
            ),
        }
    })
}

/// Sets `mason_log_server_info{shard, chain_index} 1`.
pub(crate) fn info(shard: u32, chain_index: u32) {
    metrics::gauge_vec(
        "mason_log_server_info",
        "This log server's place: its shard and its index in the shard's chain.",
        &["shard", "chain_index"],
    )
    .with_label_values(&[&shard.to_string(), &chain_index.to_string()])
    .set(1);
}

impl LogMetrics {
    pub(crate) fn frame(&self, body: &Body) {
        match body {
            Body::LogWrite(_) => self.writes.inc(),
            Body::LogRead(_) => self.reads.inc(),
            Body::LogTail(_) => self.tails.inc(),
            _ => {}
        }
    }

    pub(crate) fn synced(&self, took: Duration) {
        self.fsync.observe(took.as_secs_f64());
    }

    pub(crate) fn stats(&self, s: &NodeStats) {
        metrics::advance(&self.appended, s.appended);
        metrics::advance(&self.refused, s.refused);
        metrics::advance(&self.syncs, s.syncs);
        metrics::advance(&self.timeouts, s.timeouts);
        metrics::advance(&self.corrupt_reads, s.corrupt_reads);
    }
}
