//! A log server's role as a state machine over a [`Storage`]: events in (a write from a
//! writer or from the predecessor in the chain, a read, a completed sync, the successor's
//! answer, a tick with the time), [`NodeAction`]s out (sync the disk, send). No I/O, no
//! clock.
//!
//! Writes are write-once per position: the same value again is acknowledged (and passed
//! down the chain again, which repairs a successor that lost it), a different value is
//! refused with what is there. A write is acknowledged only when every member of the
//! chain holds it durably: each member syncs before it forwards, and the tail's answer
//! travels back up. Reads return only durable entries, checked against their checksums.

mod write;

use crate::storage::{Entry, Storage, StoreError};
use mason_common::logmsg::{
    LogItem, LogKind, LogRead, LogReadReply, LogResult, LogStatus, LogTailReply, LogWrite,
};
use mason_common::msg::Body;
use std::collections::{BTreeMap, HashSet, VecDeque};

/// Identifies a connection to the runtime that drives the node.
pub type ConnId = u64;

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub shard: u32,
    pub shards: u32,
    /// This server's place in its shard's chain (0 = head) and the chain's length.
    pub chain_index: u32,
    pub chain_len: u32,
    pub max_payload: usize,
    /// A write not acknowledged down the chain within this long is answered `Unavailable`.
    pub forward_timeout_us: u64,
    /// A read's answer stops before it passes this many payload bytes.
    pub max_read_bytes: usize,
}

impl NodeConfig {
    pub fn is_tail(&self) -> bool {
        self.chain_index + 1 >= self.chain_len
    }
}

#[derive(Debug)]
pub enum NodeAction {
    /// Make every append so far durable, then call [`LogNode::on_synced`] with this number.
    Sync(u64),
    /// To the connection `conn`.
    Send { conn: ConnId, body: Body },
    /// To the successor in the chain.
    Forward(LogWrite),
}

/// A write waiting for the disk or for the rest of the chain.
struct Pending {
    conn: ConnId,
    id: u64,
    results: Vec<LogResult>,
    /// What goes down the chain, each with the index into `results` it answers (none
    /// for a repair of what is already here).
    down: Vec<(Option<usize>, LogItem)>,
    /// The sync generation that covers this write's appends.
    needs_sync: u64,
    /// Set once forwarded: (forward id, sent at).
    forwarded: Option<(u64, u64)>,
}

pub struct LogNode<S> {
    cfg: NodeConfig,
    store: S,
    now: u64,
    /// Bumped by each append; a sync of generation g makes every append up to g durable.
    append_gen: u64,
    sync_requested: u64,
    synced_gen: u64,
    /// Appended but not yet durable, by the generation that covers each.
    unsynced: VecDeque<(u64, u64)>,
    unsynced_set: HashSet<u64>,
    waiting_sync: VecDeque<Pending>,
    next_forward_id: u64,
    forwarded: BTreeMap<u64, Pending>,
    /// Counters for the server's log lines.
    pub stats: NodeStats,
}

#[derive(Clone, Debug, Default)]
pub struct NodeStats {
    pub appended: u64,
    pub refused: u64,
    pub syncs: u64,
    pub timeouts: u64,
    pub corrupt_reads: u64,
}

impl<S: Storage> LogNode<S> {
    pub fn new(cfg: NodeConfig, store: S) -> LogNode<S> {
        LogNode {
            cfg,
            store,
            now: 0,
            append_gen: 0,
            sync_requested: 0,
            synced_gen: 0,
            unsynced: VecDeque::new(),
            unsynced_set: HashSet::new(),
            waiting_sync: VecDeque::new(),
            next_forward_id: 1,
            forwarded: BTreeMap::new(),
            stats: NodeStats::default(),
        }
    }

    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// For the runtime, which carries out [`NodeAction::Sync`] on the store.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Writes waiting for the disk or the chain.
    pub fn pending(&self) -> usize {
        self.waiting_sync.len() + self.forwarded.len()
    }

    /// A read of `r.positions`: durable entries only, each checked against its checksum.
    pub fn on_read(&mut self, conn: ConnId, r: LogRead, out: &mut Vec<NodeAction>) {
        let mut results = Vec::with_capacity(r.positions.len());
        let mut bytes = 0usize;
        for pos in r.positions {
            let res = self.read_one(pos);
            bytes += res.payload.len();
            results.push(res);
            if bytes >= self.cfg.max_read_bytes {
                break;
            }
        }
        out.push(NodeAction::Send {
            conn,
            body: Body::LogReadReply(LogReadReply { id: r.id, results }),
        });
    }

    fn read_one(&mut self, pos: u64) -> LogResult {
        if !self.owns(pos) {
            return status(pos, LogStatus::WrongShard);
        }
        if self.unsynced_set.contains(&pos) {
            return status(pos, LogStatus::NotWritten);
        }
        match self.store.get(pos) {
            Ok(Some(e)) => entry_result(pos, LogStatus::Ok, e),
            Ok(None) => status(pos, LogStatus::NotWritten),
            Err(StoreError::Corrupt { .. }) => {
                self.stats.corrupt_reads += 1;
                status(pos, LogStatus::Corrupt)
            }
            Err(e) => {
                tracing::error!(pos, error = %e, "read failed");
                status(pos, LogStatus::Unavailable)
            }
        }
    }

    pub fn on_tail(&self, conn: ConnId, id: u64, out: &mut Vec<NodeAction>) {
        out.push(NodeAction::Send {
            conn,
            body: Body::LogTailReply(LogTailReply {
                id,
                shard: self.cfg.shard,
                next: self.durable_next(),
            }),
        });
    }

    /// One past the highest durable position.
    fn durable_next(&self) -> u64 {
        let next = self.store.next_position();
        if next > 0 && self.unsynced_set.contains(&(next - 1)) {
            // The top is not durable yet; the answer may be low, never high.
            let mut p = next - 1;
            while p > 0 && self.unsynced_set.contains(&p) {
                p -= 1;
            }
            return if self.unsynced_set.contains(&p) {
                0
            } else {
                p + 1
            };
        }
        next
    }

    fn owns(&self, pos: u64) -> bool {
        mason_common::logmsg::shard_of(pos, self.cfg.shards) == self.cfg.shard
    }

    /// The disk made every append up to generation `gen` durable.
    pub fn on_synced(&mut self, gen: u64, out: &mut Vec<NodeAction>) {
        self.synced_gen = self.synced_gen.max(gen);
        self.stats.syncs += 1;
        while self
            .unsynced
            .front()
            .is_some_and(|(g, _)| *g <= self.synced_gen)
        {
            if let Some((_, p)) = self.unsynced.pop_front() {
                self.unsynced_set.remove(&p);
            }
        }
        while self
            .waiting_sync
            .front()
            .is_some_and(|p| p.needs_sync <= self.synced_gen)
        {
            if let Some(p) = self.waiting_sync.pop_front() {
                self.pass_down(p, out);
            }
        }
    }

    /// The sync failed: everything waiting on it is answered `Unavailable` (the writers
    /// retry; what was appended stays, and a later sync covers it).
    pub fn on_sync_failed(&mut self, out: &mut Vec<NodeAction>) {
        for p in std::mem::take(&mut self.waiting_sync) {
            answer_unavailable(p, out);
        }
        self.sync_requested = self.synced_gen;
    }

    /// Time passes: writes the chain has not acknowledged in time are answered
    /// `Unavailable`.
    pub fn tick(&mut self, now: u64, out: &mut Vec<NodeAction>) {
        self.now = self.now.max(now);
        let timeout = self.cfg.forward_timeout_us;
        let expired: Vec<u64> = self
            .forwarded
            .iter()
            .filter(|(_, p)| {
                p.forwarded
                    .is_some_and(|(_, at)| now.saturating_sub(at) >= timeout)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(p) = self.forwarded.remove(&id) {
                self.stats.timeouts += 1;
                answer_unavailable(p, out);
            }
        }
    }

    /// The link to the successor is (re)established: send again what it has not answered.
    pub fn on_successor_connected(&mut self, out: &mut Vec<NodeAction>) {
        let shard = self.cfg.shard;
        for (id, p) in self.forwarded.iter_mut() {
            p.forwarded = Some((*id, self.now));
            out.push(NodeAction::Forward(LogWrite {
                id: *id,
                shard,
                items: p.down.iter().map(|(_, it)| it.clone()).collect(),
            }));
        }
    }

    /// Call after a burst of events: asks for one sync covering every append so far
    /// (group commit).
    pub fn flush(&mut self, out: &mut Vec<NodeAction>) {
        if self.append_gen > self.sync_requested && !self.waiting_sync.is_empty() {
            self.sync_requested = self.append_gen;
            out.push(NodeAction::Sync(self.append_gen));
        }
    }
}

fn status(pos: u64, s: LogStatus) -> LogResult {
    LogResult {
        pos,
        status: s as i32,
        kind: LogKind::Data as i32,
        payload: bytes::Bytes::new(),
    }
}

fn entry_result(pos: u64, s: LogStatus, e: Entry) -> LogResult {
    LogResult {
        pos,
        status: s as i32,
        kind: e.kind as i32,
        payload: e.payload,
    }
}

fn answer_unavailable(mut p: Pending, out: &mut Vec<NodeAction>) {
    for (i, _) in &p.down {
        if let Some(r) = i.and_then(|i| p.results.get_mut(i)) {
            r.status = LogStatus::Unavailable as i32;
            r.payload = bytes::Bytes::new();
        }
    }
    out.push(NodeAction::Send {
        conn: p.conn,
        body: Body::LogWriteReply(mason_common::logmsg::LogWriteReply {
            id: p.id,
            results: p.results,
        }),
    });
}

#[cfg(test)]
mod tests;
