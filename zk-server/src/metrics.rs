//! A ZK-Mason shard server's metrics (`mason zk-server --metrics-listen`): ops and no-ops
//! applied, its next position, views and fetches between servers, conflicts, snapshots
//! written (count and duration) and installed, fdatasync latency, and the inbox's depth.
//! The runtime times disk actions as it carries them out and copies the node's own
//! counts ([`Stats`]) on a timer. `mason_zk_server_info` carries the server's place
//! (shard, index) as labels.

use crate::node::{Stats, ZkNode};
use mason_common::metrics::{self, Histogram, IntCounter, IntGauge};
use std::sync::OnceLock;
use std::time::Duration;

pub(crate) struct ZkServerMetrics {
    applied_ops: IntCounter,
    applied_noops: IntCounter,
    views_sent: IntCounter,
    view_pulls: IntCounter,
    fetches: IntCounter,
    fetched: IntCounter,
    conflicts: IntCounter,
    snapshots_installed: IntCounter,
    next: IntGauge,
    fsync: Histogram,
    snapshots: IntCounter,
    snapshot_seconds: Histogram,
    pub(crate) inbox: IntGauge,
}

/// The process's shard server metrics (made and registered on first use).
pub(crate) fn get() -> &'static ZkServerMetrics {
    static M: OnceLock<ZkServerMetrics> = OnceLock::new();
    M.get_or_init(|| {
        let c = metrics::counter;
        ZkServerMetrics {
            applied_ops: c(
                "mason_zk_server_applied_ops_total",
                "ZooKeeper ops this server applied to its shard's tree.",
            ),
            applied_noops: c(
                "mason_zk_server_applied_noops_total",
                "Positions this server passed as no-ops (holes filled, ops of other shards).",
            ),
            views_sent: c(
                "mason_zk_server_views_sent_total",
                "Views of this shard's tree sent to servers of other shards.",
            ),
            view_pulls: c(
                "mason_zk_server_view_pulls_total",
                "Views this server asked other shards' servers for.",
            ),
            fetches: c(
                "mason_zk_server_fetches_total",
                "Fetches of missing positions from this shard's other servers.",
            ),
            fetched: c(
                "mason_zk_server_fetched_total",
                "Positions received from this shard's other servers.",
            ),
            conflicts: c(
                "mason_zk_server_conflicts_total",
                "Deliveries that disagreed with what this server held at a position.",
            ),
            snapshots_installed: c(
                "mason_zk_server_snapshots_installed_total",
                "Trees installed from another server of the shard.",
            ),
            next: metrics::gauge(
                "mason_zk_server_next_position",
                "The next position this server will apply.",
            ),
            fsync: metrics::histogram(
                "mason_zk_server_fsync_seconds",
                "Time of one fdatasync of the server's records (a no-op with fsync off).",
                metrics::LATENCY_BUCKETS,
            ),
            snapshots: c(
                "mason_zk_server_snapshots_total",
                "Snapshots of the tree written.",
            ),
            snapshot_seconds: metrics::histogram(
                "mason_zk_server_snapshot_seconds",
                "Time to write one snapshot of the tree.",
                metrics::LATENCY_BUCKETS,
            ),
            inbox: metrics::gauge(
                "mason_zk_server_inbox_events",
                "Events waiting in the server's inbox (its queue depth).",
            ),
        }
    })
}

/// Sets `mason_zk_server_info{shard, index} 1`.
pub(crate) fn info(shard: u32, index: u32) {
    metrics::gauge_vec(
        "mason_zk_server_info",
        "This shard server's place: its shard and its index among the shard's servers.",
        &["shard", "index"],
    )
    .with_label_values(&[&shard.to_string(), &index.to_string()])
    .set(1);
}

impl ZkServerMetrics {
    pub(crate) fn synced(&self, took: Duration) {
        self.fsync.observe(took.as_secs_f64());
    }

    pub(crate) fn snapshot(&self, took: Duration) {
        self.snapshots.inc();
        self.snapshot_seconds.observe(took.as_secs_f64());
    }

    pub(crate) fn sample(&self, node: &ZkNode) {
        let s: &Stats = &node.stats;
        metrics::advance(&self.applied_ops, s.applied_ops);
        metrics::advance(&self.applied_noops, s.applied_noops);
        metrics::advance(&self.views_sent, s.views_sent);
        metrics::advance(&self.view_pulls, s.view_pulls);
        metrics::advance(&self.fetches, s.fetches);
        metrics::advance(&self.fetched, s.fetched);
        metrics::advance(&self.conflicts, s.conflicts);
        metrics::advance(&self.snapshots_installed, s.snapshots_installed);
        self.next
            .set(i64::try_from(node.next()).unwrap_or(i64::MAX));
    }
}
