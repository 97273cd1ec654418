//! A proxy process's metrics (`mason proxy --metrics-listen`), per hosted group: ops and
//! batches bound and the batch size, Raft messages sent, the replica's Raft term, commit
//! and applied index and leader, proposals in flight, snapshots, and the group's inbox depth; and for the
//! process's shared WAL, group-commit latency, bytes, and records and groups per sync.
//! The group's runtime counts bound batches, and the WAL writer disk writes, as they are
//! carried out; the replica's own state is copied on a timer.

use crate::replica::Replica;
use mason_common::metrics::{self, Histogram, IntCounter, IntGauge};
use mason_common::record::BoundBatch;
use std::time::Duration;

/// The process's write-ahead log, shared by its groups (handles).
#[derive(Clone)]
pub(super) struct WalMetrics {
    sync: Histogram,
    bytes: IntCounter,
    records: Histogram,
    groups: Histogram,
    deferred: IntCounter,
}

impl WalMetrics {
    pub(super) fn new() -> WalMetrics {
        WalMetrics {
            sync: metrics::histogram(
                "mason_proxy_wal_sync_seconds",
                "Time to make one group commit's WAL records durable: one direct synchronous write, or a write and an fdatasync where the file system takes no direct writes (the write alone with fsync off).",
                metrics::LATENCY_BUCKETS,
            ),
            records: metrics::histogram(
                "mason_proxy_wal_records_per_sync",
                "WAL records (Raft readies, of any hosted group) that shared one durable write (group commit).",
                &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0],
            ),
            groups: metrics::histogram(
                "mason_proxy_wal_groups_per_sync",
                "Hosted groups whose records shared one durable write.",
                &[1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0],
            ),
            bytes: metrics::counter(
                "mason_proxy_wal_bytes_total",
                "Bytes appended to the process's WAL.",
            ),
            deferred: metrics::counter(
                "mason_proxy_wal_deferred_records_total",
                "WAL records reported persisted before they were written: only a commit index moved (raft-rs's must_sync was false); the next write carries them.",
            ),
        }
    }

    pub(super) fn commit(&self, took: Duration, bytes: usize, records: u64, groups: usize) {
        self.sync.observe(took.as_secs_f64());
        self.bytes.inc_by(bytes as u64);
        self.records.observe(records as f64);
        self.groups.observe(groups as f64);
    }

    pub(super) fn deferred(&self, records: u64) {
        self.deferred.inc_by(records);
    }
}

/// One hosted group's metrics (handles: clones update the same series).
#[derive(Clone)]
pub(super) struct GroupMetrics {
    ops_bound: IntCounter,
    batches_bound: IntCounter,
    batch_ops: Histogram,
    raft_sent: IntCounter,
    term: IntGauge,
    commit: IntGauge,
    applied: IntGauge,
    leader: IntGauge,
    is_leader: IntGauge,
    inflight: IntGauge,
    open_ops: IntGauge,
    sessions: IntGauge,
    inbox: IntGauge,
    snapshots: IntCounter,
    snapshot_seconds: Histogram,
    next_sample: u64,
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl GroupMetrics {
    pub(super) fn new(group: u32) -> GroupMetrics {
        let g = group.to_string();
        let l = &[g.as_str()];
        let counter = |name: &str, help: &str| {
            metrics::counter_vec(name, help, &["group"]).with_label_values(l)
        };
        let gauge = |name: &str, help: &str| {
            metrics::gauge_vec(name, help, &["group"]).with_label_values(l)
        };
        let hist = |name: &str, help: &str, b: &[f64]| {
            metrics::histogram_vec(name, help, &["group"], b).with_label_values(l)
        };
        GroupMetrics {
            ops_bound: counter(
                "mason_proxy_ops_bound_total",
                "Client ops in the batches this replica applied (each op bound once per replica).",
            ),
            batches_bound: counter(
                "mason_proxy_batches_bound_total",
                "Batches this replica applied that bound numbers.",
            ),
            batch_ops: hist(
                "mason_proxy_batch_ops",
                "Client ops per applied batch.",
                metrics::SIZE_BUCKETS,
            ),
            raft_sent: counter(
                "mason_proxy_raft_messages_sent_total",
                "Raft messages this replica sent to its peers (a leader's appends and heartbeats, a follower's answers, votes).",
            ),
            term: gauge("mason_proxy_raft_term", "The replica's Raft term."),
            commit: gauge(
                "mason_proxy_raft_commit_index",
                "The replica's Raft commit index.",
            ),
            applied: gauge(
                "mason_proxy_raft_applied_index",
                "The Raft index this replica has applied.",
            ),
            leader: gauge(
                "mason_proxy_raft_leader",
                "The replica index this replica believes leads the group (-1: none known).",
            ),
            is_leader: gauge(
                "mason_proxy_is_leader",
                "1 if this replica leads the group, else 0.",
            ),
            inflight: gauge(
                "mason_proxy_proposals_in_flight",
                "A leader's batches proposed and not yet applied.",
            ),
            open_ops: gauge(
                "mason_proxy_open_ops",
                "A leader's client ops waiting for the next batch.",
            ),
            sessions: gauge("mason_proxy_sessions", "Open client sessions of the group."),
            inbox: gauge(
                "mason_proxy_inbox_events",
                "Events waiting in the group's inbox (its queue depth).",
            ),
            snapshots: counter(
                "mason_proxy_snapshots_total",
                "Snapshots of the group written with the WAL.",
            ),
            snapshot_seconds: hist(
                "mason_proxy_snapshot_seconds",
                "Time to write one snapshot.",
                metrics::LATENCY_BUCKETS,
            ),
            next_sample: 0,
        }
    }

    pub(super) fn bound(&self, b: &BoundBatch) {
        let ops = b.op_sessions.len() as u64;
        self.ops_bound.inc_by(ops);
        self.batches_bound.inc();
        self.batch_ops.observe(ops as f64);
    }

    pub(super) fn raft_sent(&self) {
        self.raft_sent.inc();
    }

    pub(super) fn snapshot(&self, took: Duration) {
        self.snapshots.inc();
        self.snapshot_seconds.observe(took.as_secs_f64());
    }

    /// Copies the replica's state and the inbox depth, at most every
    /// `metrics::SAMPLE_EVERY`.
    pub(super) fn sample<T>(
        &mut self,
        r: &Replica,
        now: u64,
        inbox: &tokio::sync::mpsc::WeakSender<T>,
    ) {
        if !metrics::due(&mut self.next_sample, now) {
            return;
        }
        let s = r.gauges();
        self.term.set(i(s.term));
        self.commit.set(i(s.commit));
        self.applied.set(i(s.applied));
        self.leader.set(s.leader.map_or(-1, i64::from));
        self.is_leader.set(i64::from(s.is_leader));
        self.inflight.set(i(s.inflight as u64));
        self.open_ops.set(i(s.open_ops as u64));
        self.sessions.set(i(s.sessions as u64));
        self.inbox.set(metrics::queued(inbox));
    }
}
