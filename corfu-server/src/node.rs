//! A log server's role as a state machine: events in (a write from a writer or from the
//! predecessor in the chain, a read, a tail query, what a disk lookup found, a completed
//! sync, the successor's answer, the time), [`NodeAction`]s out (look up, append, sync,
//! send, forward). No I/O, no clock: the runtime carries the disk actions out on its
//! store and reports back; the simulator does the same on an in-memory one.
//!
//! Writes are write-once per position: the same value again is acknowledged (and passed
//! down the chain again, which repairs a successor that lost it), a different value is
//! refused with what is there. A write is acknowledged only when every member of the
//! chain holds it durably: each member syncs before it forwards, and the tail's answer
//! travels back up. Reads return only durable entries, checked against their checksums.

mod write;

pub use write::Source;

use crate::storage::{Entry, Lookup};
use mason_common::logmsg::{
    LogItem, LogKind, LogRead, LogReadReply, LogResult, LogStatus, LogTailReply, LogWrite,
};
use mason_common::msg::Body;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Identifies a connection to the runtime that drives the node.
pub type ConnId = u64;

/// Positions one read answers at most.
pub const MAX_READ_POSITIONS: usize = 65_536;

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
    /// Look up what the store holds at `positions`, then call [`LogNode::on_looked_up`]
    /// with `token` and one [`Lookup`] per position, in order; once the entries found
    /// pass `budget` payload bytes, stop (the answer covers a prefix).
    Lookup {
        token: u64,
        positions: Vec<u64>,
        budget: usize,
    },
    /// Store `entry` at `pos` (with `repair`, replacing a record known to be corrupt).
    /// Durable at the next sync. A failed append stops the server.
    Append {
        pos: u64,
        entry: Entry,
        repair: bool,
    },
    /// Make every append so far durable, then call [`LogNode::on_synced`] with this
    /// number. A failed sync stops the server: the kernel may have dropped the pages.
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

/// What waits for a lookup.
enum Waiting {
    Write(write::Checking),
    Read {
        conn: ConnId,
        id: u64,
        /// Per position asked: the answer, or `None` while it is looked up.
        results: Vec<Option<LogResult>>,
    },
}

pub struct LogNode {
    cfg: NodeConfig,
    now: u64,
    /// One past the highest position appended (durable or not).
    next: u64,
    /// Bumped by each append; a sync of generation g makes every append up to g durable.
    append_gen: u64,
    sync_requested: u64,
    synced_gen: u64,
    /// Appended but not yet durable: what, and the generation that covers it.
    unsynced: HashMap<u64, (u64, Entry)>,
    /// The same, in generation order.
    unsynced_order: VecDeque<(u64, u64)>,
    waiting_sync: VecDeque<Pending>,
    next_forward_id: u64,
    forwarded: BTreeMap<u64, Pending>,
    next_token: u64,
    looking: HashMap<u64, Waiting>,
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

impl LogNode {
    /// A node over a store that holds positions below `next` (from opening it).
    pub fn new(cfg: NodeConfig, next: u64) -> LogNode {
        LogNode {
            cfg,
            now: 0,
            next,
            append_gen: 0,
            sync_requested: 0,
            synced_gen: 0,
            unsynced: HashMap::new(),
            unsynced_order: VecDeque::new(),
            waiting_sync: VecDeque::new(),
            next_forward_id: 1,
            forwarded: BTreeMap::new(),
            next_token: 1,
            looking: HashMap::new(),
            stats: NodeStats::default(),
        }
    }

    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    /// What `mason status` shows of this server: its place, its durable tail, and what
    /// it waits on.
    pub fn status(&self) -> mason_common::statusmsg::LogServerStatus {
        mason_common::statusmsg::LogServerStatus {
            shard: self.cfg.shard,
            index: self.cfg.chain_index,
            tail: self.durable_next(),
            next: self.next,
            pending: self.pending() as u64,
        }
    }

    /// Writes waiting for the disk or the chain.
    pub fn pending(&self) -> usize {
        self.waiting_sync.len() + self.forwarded.len() + self.looking.len()
    }

    fn lookup(
        &mut self,
        positions: Vec<u64>,
        budget: usize,
        w: Waiting,
        out: &mut Vec<NodeAction>,
    ) {
        let token = self.next_token;
        self.next_token += 1;
        self.looking.insert(token, w);
        out.push(NodeAction::Lookup {
            token,
            positions,
            budget,
        });
    }

    /// A read of `r.positions`: durable entries only, each checked against its checksum.
    /// The answer covers at most [`MAX_READ_POSITIONS`] positions and stops once it passes
    /// `max_read_bytes` of payload (the reader asks again for the rest).
    pub fn on_read(&mut self, conn: ConnId, r: LogRead, out: &mut Vec<NodeAction>) {
        let n = r.positions.len().min(MAX_READ_POSITIONS);
        let mut results = Vec::with_capacity(n);
        let mut ask = Vec::new();
        for pos in r.positions.into_iter().take(n) {
            if !self.owns(pos) {
                results.push(Some(status(pos, LogStatus::WrongShard)));
            } else if self.unsynced.contains_key(&pos) || pos >= self.next {
                results.push(Some(status(pos, LogStatus::NotWritten)));
            } else {
                results.push(None);
                ask.push(pos);
            }
        }
        let w = Waiting::Read {
            conn,
            id: r.id,
            results,
        };
        if ask.is_empty() {
            self.answer_read(w, out);
        } else {
            let budget = self.cfg.max_read_bytes;
            self.lookup(ask, budget, w, out);
        }
    }

    fn answer_read(&mut self, w: Waiting, out: &mut Vec<NodeAction>) {
        let Waiting::Read { conn, id, results } = w else {
            return;
        };
        let mut answered = Vec::with_capacity(results.len());
        let mut bytes = 0usize;
        // In order, up to the first position not looked up (past the byte budget).
        for r in results.into_iter().map_while(|r| r) {
            bytes += r.payload.len();
            answered.push(r);
            if bytes >= self.cfg.max_read_bytes {
                break;
            }
        }
        out.push(NodeAction::Send {
            conn,
            body: Body::LogReadReply(LogReadReply {
                id,
                results: answered,
            }),
        });
    }

    /// What a lookup found, one per position asked, in order.
    pub fn on_looked_up(&mut self, token: u64, found: Vec<Lookup>, out: &mut Vec<NodeAction>) {
        let Some(w) = self.looking.remove(&token) else {
            return;
        };
        match w {
            Waiting::Write(c) => self.finish_write(c, found, out),
            Waiting::Read {
                conn,
                id,
                mut results,
            } => {
                let mut found = found.into_iter();
                for slot in results.iter_mut().filter(|r| r.is_none()) {
                    // The lookup stopped at its byte budget: the answer ends here.
                    let Some(f) = found.next() else {
                        break;
                    };
                    *slot = Some(match f {
                        Lookup::Held(pos, e) => entry_result(pos, LogStatus::Ok, e),
                        Lookup::Free(pos) => status(pos, LogStatus::NotWritten),
                        Lookup::Corrupt(pos, why) => {
                            self.stats.corrupt_reads += 1;
                            tracing::error!(pos, "corrupt entry not returned: {why}");
                            status(pos, LogStatus::Corrupt)
                        }
                        Lookup::Failed(pos, why) => {
                            tracing::error!(pos, "read failed: {why}");
                            status(pos, LogStatus::Unavailable)
                        }
                    });
                }
                self.answer_read(Waiting::Read { conn, id, results }, out);
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

    /// One past the highest durable position (it may be low, never high).
    fn durable_next(&self) -> u64 {
        let mut p = self.next;
        while p > 0 && self.unsynced.contains_key(&(p - 1)) {
            p -= 1;
        }
        p
    }

    fn owns(&self, pos: u64) -> bool {
        mason_common::logmsg::shard_of(pos, self.cfg.shards) == self.cfg.shard
    }

    /// The disk made every append up to generation `gen` durable.
    pub fn on_synced(&mut self, gen: u64, out: &mut Vec<NodeAction>) {
        self.synced_gen = self.synced_gen.max(gen);
        self.stats.syncs += 1;
        while self
            .unsynced_order
            .front()
            .is_some_and(|(g, _)| *g <= self.synced_gen)
        {
            if let Some((g, p)) = self.unsynced_order.pop_front() {
                // A later append of the same position (a repair) stays unsynced.
                if self.unsynced.get(&p).is_some_and(|(pg, _)| *pg == g) {
                    self.unsynced.remove(&p);
                }
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

    /// When [`LogNode::tick`] next has something to do: the oldest forward's timeout.
    pub fn next_deadline(&self) -> Option<u64> {
        self.forwarded
            .values()
            .filter_map(|p| p.forwarded.map(|(_, at)| at + self.cfg.forward_timeout_us))
            .min()
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
