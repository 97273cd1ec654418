//! Snapshots of a replica's state machine (DESIGN.md section 6): every `snapshot_entries`
//! applied entries (or `snapshot_bytes` of them) a replica snapshots what it applied (batch ids, promise, recorded set,
//! open sessions with their dedup state) and compacts its Raft log behind it; a follower that fell
//! behind the compacted log gets the snapshot from its leader and restores from it, and a
//! restarted replica restores from the one on its disk.

use super::{Action, Applied, OpAnswer, Replica};
use crate::entry::Numbers;
use crate::recorded::Recorded;
use mason_common::msg::Ranges;
use prost::Message as _;
use raft::prelude::Snapshot;
use raft::Storage;

#[derive(Clone, PartialEq, prost::Message)]
struct SnapshotData {
    #[prost(uint64, tag = "1")]
    last_batch_id: u64,
    #[prost(uint64, tag = "2")]
    promised: u64,
    #[prost(uint64, repeated, packed = "true", tag = "3")]
    watermarks: Vec<u64>,
    #[prost(message, optional, tag = "4")]
    recorded: Option<Ranges>,
    #[prost(message, repeated, tag = "5")]
    clients: Vec<ClientState>,
    /// CorfuMason: deliveries not known to be written to the log.
    #[prost(message, repeated, tag = "6")]
    deliveries: Vec<PendingDelivery>,
    #[prost(uint64, tag = "7")]
    promised_ballot: u64,
    #[prost(uint64, tag = "8")]
    next_session: u64,
    /// RSMKeeper: the ZooKeeper tree (`DataTree::snapshot`).
    #[prost(bytes = "vec", tag = "9")]
    tree: Vec<u8>,
    /// ZK-Mason: deliveries not known to be applied by the shard servers.
    #[prost(message, repeated, tag = "10")]
    zk_deliveries: Vec<PendingZk>,
    /// ZK-Mason: closed sessions whose ZooKeeper session is still to close, and the seq
    /// of the closeSession that closes it.
    #[prost(uint64, repeated, tag = "11")]
    zk_expiring: Vec<u64>,
    #[prost(uint64, repeated, tag = "12")]
    zk_expiring_seqs: Vec<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PendingZk {
    #[prost(uint64, tag = "1")]
    index: u64,
    #[prost(uint32, tag = "2")]
    shard: u32,
    #[prost(message, repeated, tag = "3")]
    items: Vec<mason_common::zkmsg::ZkItem>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PendingDelivery {
    #[prost(uint64, tag = "1")]
    index: u64,
    #[prost(message, repeated, tag = "2")]
    items: Vec<mason_common::logmsg::LogItem>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ClientState {
    #[prost(uint64, tag = "1")]
    session: u64,
    #[prost(uint64, tag = "2")]
    max_seq: u64,
    #[prost(message, repeated, tag = "3")]
    answers: Vec<Answer>,
    #[prost(uint64, tag = "4")]
    client_id: u64,
    #[prost(uint32, tag = "5")]
    window: u32,
    #[prost(uint64, tag = "6")]
    timeout_us: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Answer {
    #[prost(uint64, tag = "1")]
    seq: u64,
    #[prost(fixed64, tag = "2")]
    mask: u64,
    #[prost(uint64, repeated, packed = "true", tag = "3")]
    numbers: Vec<u64>,
    #[prost(bytes = "bytes", tag = "4")]
    result: bytes::Bytes,
}

/// Entries kept below a snapshot taken locally, so that a follower a little behind still
/// catches up from the log rather than from a snapshot.
const KEEP_BEHIND: u64 = 1_000;

impl Replica {
    fn state_data(&self) -> Vec<u8> {
        let mut clients: Vec<ClientState> = self
            .sessions
            .iter()
            .map(|(id, a)| ClientState {
                session: *id,
                client_id: a.client_id,
                window: a.window,
                timeout_us: a.timeout_us,
                max_seq: a.max_seq,
                answers: a
                    .answers
                    .iter()
                    .map(|(seq, a)| Answer {
                        seq,
                        mask: a.mask,
                        numbers: a.numbers.to_vec(),
                        result: a.result.clone(),
                    })
                    .collect(),
            })
            .collect();
        clients.sort_by_key(|c| c.session);
        SnapshotData {
            last_batch_id: self.last_batch_id,
            promised: self.promised,
            promised_ballot: self.promised_ballot,
            next_session: self.next_session,
            tree: self.tree.as_ref().map(|t| t.snapshot()).unwrap_or_default(),
            watermarks: self.recorded.watermarks().to_vec(),
            recorded: Some(self.recorded.ranges()),
            clients,
            deliveries: self
                .pending_deliveries()
                .map(|(index, d)| PendingDelivery {
                    index,
                    items: d.items.values().flatten().cloned().collect(),
                })
                .collect(),
            zk_expiring: self.zk_expiring.keys().copied().collect(),
            zk_expiring_seqs: self.zk_expiring.values().copied().collect(),
            zk_deliveries: self
                .zk_pending()
                .into_iter()
                .map(|(index, shard, items)| PendingZk {
                    index,
                    shard,
                    items,
                })
                .collect(),
        }
        .encode_to_vec()
    }

    /// Restores the state machine from a snapshot's data (true if it decoded).
    pub(super) fn restore(&mut self, snap: &Snapshot) -> bool {
        let data = match SnapshotData::decode(&snap.data[..]) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(group = self.cfg.group, error = %e, "undecodable snapshot");
                return false;
            }
        };
        if self.cfg.keeper {
            match mason_zk::DataTree::restore(&data.tree) {
                Ok(t) => {
                    self.feed.reset(t.last_zxid());
                    self.tree = Some(t)
                }
                Err(e) => {
                    tracing::error!(group = self.cfg.group, error = %e, "the snapshot's tree does not restore");
                    return false;
                }
            }
        }
        self.last_batch_id = data.last_batch_id;
        self.promised = data.promised;
        self.promised_ballot = data.promised_ballot;
        self.next_session = data.next_session.max(1);
        self.recorded = Recorded::restore(
            self.cfg.spaces,
            &data.watermarks,
            &data.recorded.unwrap_or_default(),
        );
        self.sessions.clear();
        for c in data.clients {
            let a: &mut Applied = self.sessions.entry(c.session).or_default();
            a.client_id = c.client_id;
            a.window = c.window;
            a.timeout_us = c.timeout_us;
            a.max_seq = c.max_seq;
            for ans in c.answers {
                let answer = OpAnswer {
                    mask: ans.mask,
                    numbers: Numbers::from_vec(ans.numbers),
                    result: ans.result,
                };
                a.keep_answer(ans.seq, answer, 0);
            }
        }
        self.deliveries.clear();
        for d in data.deliveries {
            self.restore_delivery(d.index, d.items);
        }
        self.zk_expiring = data
            .zk_expiring
            .into_iter()
            .zip(data.zk_expiring_seqs)
            .collect();
        self.zk_restore(
            data.zk_deliveries
                .into_iter()
                .map(|p| (p.index, p.shard, p.items))
                .collect(),
        );
        self.applied_index = snap.get_metadata().index;
        self.snapshot_index = self.applied_index;
        self.applied_bytes = 0;
        self.snapshot_bytes = snap.get_data().len() as u64;
        true
    }

    /// Whether `snap`'s state decodes (and, RSMKeeper, its tree restores).
    fn restores(&self, snap: &Snapshot) -> bool {
        match SnapshotData::decode(&snap.data[..]) {
            Ok(d) => !self.cfg.keeper || mason_zk::DataTree::restore(&d.tree).is_ok(),
            Err(_) => false,
        }
    }

    /// A snapshot from the leader: the log up to it is replaced, and the state machine
    /// restored from it.
    pub(super) fn install_snapshot(&mut self, snap: Snapshot, out: &mut Vec<Action>) {
        let index = snap.get_metadata().index;
        // Checked before the log moves past it: a snapshot whose state does not restore
        // must leave both the log and the state machine as they were.
        if !self.restores(&snap) {
            tracing::error!(
                group = self.cfg.group,
                index,
                "the leader's snapshot does not restore; not installed"
            );
            return;
        }
        if let Err(e) = self.node.store().install(snap.clone()) {
            tracing::warn!(group = self.cfg.group, index, error = %e, "snapshot not installed");
            return;
        }
        if !self.restore(&snap) {
            return;
        }
        tracing::info!(
            group = self.cfg.group,
            index,
            "caught up from the leader's snapshot"
        );
        let (hard_state, entries) = self.node.store().contents();
        out.push(Action::Snapshot {
            snapshot: snap,
            hard_state,
            entries,
        });
    }

    /// Every `snapshot_entries` applied entries, or `snapshot_bytes` of them: snapshot the
    /// applied state and compact.
    pub(super) fn maybe_snapshot(&mut self, out: &mut Vec<Action>) {
        let every = self.cfg.snapshot_entries;
        let by_entries = every != 0 && self.applied_index >= self.snapshot_index + every;
        let bytes = self.cfg.snapshot_bytes;
        let by_bytes = bytes != 0
            && self.applied_index > self.snapshot_index
            && self.applied_bytes >= bytes.max(2 * self.snapshot_bytes);
        if !by_entries && !by_bytes {
            return;
        }
        let index = self.applied_index;
        let store = self.node.store().clone();
        let Ok(term) = store.term(index) else {
            return;
        };
        let mut snap = Snapshot {
            data: self.state_data().into(),
            ..Default::default()
        };
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(raft::prelude::ConfState::from((
            (1..=u64::from(self.cfg.replicas)).collect::<Vec<_>>(),
            vec![],
        )));
        let compact_to = index.saturating_sub(KEEP_BEHIND).max(1);
        if let Err(e) = store.take(snap.clone(), compact_to) {
            tracing::warn!(group = self.cfg.group, index, error = %e, "log not compacted");
            return;
        }
        self.snapshot_index = index;
        self.applied_bytes = 0;
        self.snapshot_bytes = snap.get_data().len() as u64;
        let (hard_state, entries) = store.contents_after(index);
        out.push(Action::Snapshot {
            snapshot: snap,
            hard_state,
            entries,
        });
    }
}
