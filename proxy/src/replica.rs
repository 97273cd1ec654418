//! One proxy replica of one group, as a state machine: events in (client ops, Raft
//! messages, sequencer answers, ticks carrying the time), [`Action`]s out (persist, send,
//! answer, record). No I/O and no clock. (raft-rs 0.7 draws its randomized election
//! timeout from the thread's RNG, which nothing here seeds: which follower wins an
//! election varies from run to run.)
//!
//! The leader batches client ops in client-seq order per client (FIFO hold-back), asks the
//! sequencer for a whole batch at once (at most `max_outstanding` batch ids past the last
//! committed one), proposes each answered batch through Raft in batch-id order, and answers
//! clients when the batch is applied. Every replica applies the same batches and keeps the
//! per-client dedup state (Once). A new leader first applies everything up to its own first
//! entry, then re-asks the sequencer, with zero counts, for every batch id its predecessor
//! may have used, and commits whatever ranges come back as noops (DESIGN.md section 4).

mod apply;
mod batching;
mod failover;
mod logwrite;
mod snapshot;

pub use crate::config::{Mutant, ReplicaConfig};
use crate::entry::OpEntry;
use crate::recorded::Recorded;
use crate::store::Store;
use bytes::Bytes;
use mason_common::logmsg::LogWrite;
use mason_common::msg::{epoch_owner, Body, ClientOp, ClientReply, GetSeq, ReplyStatus, SeqReply};
use mason_common::record::BoundBatch;
use mason_common::types::SpaceMask;
use protobuf::Message as _;
use raft::prelude::{Entry, HardState, Message, Snapshot};
use raft::{RawNode, StateRole};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Identifies a client connection to the runtime that drives this replica.
pub type ConnId = u64;

/// What the runtime must do, in order.
#[derive(Debug)]
pub enum Action {
    /// Make these durable (per the fsync setting) before doing any later action.
    Persist {
        hard_state: Option<HardState>,
        entries: Vec<Entry>,
    },
    /// A Raft message to replica `to` (an index, not a Raft id).
    SendRaft {
        to: u32,
        data: Bytes,
    },
    /// To the sequencer that owns the request's epoch.
    SendSeq(GetSeq),
    /// A takeover message to sequencer `seq` (an index among the sequencers).
    ToSeq {
        seq: u32,
        body: Body,
    },
    Reply {
        conn: ConnId,
        reply: ClientReply,
    },
    /// Make this snapshot the base of what is on disk, followed by the hard state and the
    /// entries after the snapshot, durably, before doing any later action.
    Snapshot {
        snapshot: Snapshot,
        hard_state: HardState,
        entries: Vec<Entry>,
    },
    /// A batch (or a takeover's holes, as batch id 0 with no ops, or a promise of a new
    /// epoch, as batch id 0 with no ranges) was applied: record what it bound.
    Bound(BoundBatch),
    /// To the head of the chain of log shard `write.shard` (CorfuMason).
    LogWrite(LogWrite),
}

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("the snapshot on disk does not decode")]
    Snapshot,
}

/// Per-client state derived from the committed log (identical on every replica).
#[derive(Default)]
pub(crate) struct Applied {
    max_seq: u64,
    answers: BTreeMap<u64, (u64, Vec<u64>)>,
}

enum Stage {
    Requested { sent_at: u64 },
    Answered(SeqReply),
    Proposed,
}

struct Inflight {
    id: u64,
    ops: Vec<OpEntry>,
    request: GetSeq,
    stage: Stage,
    /// Times the request was re-sent for want of an answer.
    resends: u32,
}

/// After this many unanswered re-sends of one request, the leader says so (once).
const RESENDS_BEFORE_WARNING: u32 = 5;

struct LeaderClient {
    next_seq: u64,
    held: BTreeMap<u64, OpEntry>,
    conn: ConnId,
}

/// Volatile state of a leader for one term.
struct Leader {
    term: u64,
    start_index: u64,
    started: bool,
    next_batch_id: u64,
    inflight: VecDeque<Inflight>,
    open: VecDeque<OpEntry>,
    open_since: u64,
    clients: BTreeMap<u64, LeaderClient>,
    waiting: Vec<(ConnId, ClientOp)>,
    /// The sequencer watermarks last heard, to pass on in the next batch if they moved.
    seq_watermarks: Vec<u64>,
}

const MAX_HELD_PER_CLIENT: usize = 1 << 14;
/// A log write's id carries its group in the bits from here up.
pub const LOG_REQ_GROUP_SHIFT: u32 = 40;
const MAX_WAITING: usize = 1 << 16;

pub struct Replica {
    cfg: ReplicaConfig,
    node: RawNode<Store>,
    now: u64,
    applied_index: u64,
    /// The index of the latest snapshot (taken here or installed).
    snapshot_index: u64,
    /// Batches applied out of id order (a bug: a state machine that missed entries).
    anomalies: u64,
    last_batch_id: u64,
    clients: HashMap<u64, Applied>,
    leader: Option<Leader>,
    /// The highest sequencer epoch this group has promised (applied state).
    promised: u64,
    recorded: Recorded,
    /// When the sequencer of `promised` was last heard from (leaders only).
    seq_heard: u64,
    heartbeat_sent: u64,
    /// Backups asked to take over since the sequencer was last heard from.
    takeover_asks: u64,
    /// CorfuMason: applied entries whose log writes are not known to be done, by index.
    deliveries: BTreeMap<u64, logwrite::Delivery>,
    log_reqs: BTreeMap<u64, logwrite::LogReq>,
    next_log_req: u64,
    /// Payloads of the entry being applied, by log position.
    log_stash: HashMap<u64, Bytes>,
}

impl Replica {
    /// A replica over `storage` (fresh, or replayed from its snapshot and log).
    pub fn new(cfg: ReplicaConfig, storage: Store) -> Result<Replica, ReplicaError> {
        let (min_election_tick, max_election_tick) = match cfg.election_jitter {
            Some(j) => (cfg.election_ticks + j, cfg.election_ticks + j + 1),
            None => (0, 0),
        };
        let rcfg = raft::Config {
            id: u64::from(cfg.replica) + 1,
            election_tick: cfg.election_ticks,
            min_election_tick,
            max_election_tick,
            heartbeat_tick: cfg.heartbeat_ticks,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        rcfg.validate()?;
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let snap = storage.snapshot_now();
        let mut node = RawNode::new(&rcfg, storage, &logger)?;
        if cfg.campaign_on_start {
            node.campaign()?;
        }
        let mut r = Replica {
            node,
            now: 0,
            applied_index: 0,
            snapshot_index: 0,
            anomalies: 0,
            last_batch_id: 0,
            clients: HashMap::new(),
            leader: None,
            promised: 1,
            recorded: Recorded::new(cfg.spaces),
            seq_heard: 0,
            heartbeat_sent: 0,
            takeover_asks: 0,
            deliveries: BTreeMap::new(),
            log_reqs: BTreeMap::new(),
            // Log servers answer on one link per process: the id says which group asked.
            next_log_req: (u64::from(cfg.group) << LOG_REQ_GROUP_SHIFT) + 1,
            log_stash: HashMap::new(),
            cfg,
        };
        if snap.get_metadata().index > 0 && !r.restore(&snap) {
            return Err(ReplicaError::Snapshot);
        }
        Ok(r)
    }

    pub fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    /// Whether this replica leads and has finished taking over from its predecessor.
    pub fn is_serving(&self) -> bool {
        self.leader.as_ref().is_some_and(|l| l.started)
    }

    pub fn group(&self) -> u32 {
        self.cfg.group
    }

    pub fn last_batch_id(&self) -> u64 {
        self.last_batch_id
    }

    /// How many batches this replica applied out of batch-id order (0 unless its state
    /// machine missed entries, e.g. a snapshot not restored).
    pub fn anomalies(&self) -> u64 {
        self.anomalies
    }

    /// The highest sequencer epoch this group has promised.
    pub fn promised(&self) -> u64 {
        self.promised
    }

    pub fn recorded(&self) -> &Recorded {
        &self.recorded
    }

    fn owner(&self, epoch: u64) -> u32 {
        epoch_owner(epoch, self.cfg.sequencers)
    }

    /// The earliest time (us) at which [`Replica::flush`] has something to do on its own.
    pub fn next_deadline(&self) -> Option<u64> {
        let l = self.leader.as_ref()?;
        if l.open.is_empty() || l.inflight.len() >= self.cfg.max_outstanding {
            return None;
        }
        Some(l.open_since + self.cfg.batch_delay_us)
    }

    /// One Raft tick, at time `now` (us).
    pub fn tick(&mut self, now: u64, out: &mut Vec<Action>) {
        self.now = self.now.max(now);
        self.node.tick();
        let retry = self.cfg.seq_retry_us;
        let group = self.cfg.group;
        if let Some(l) = self.leader.as_mut() {
            for b in l.inflight.iter_mut() {
                if let Stage::Requested { sent_at } = &mut b.stage {
                    if now.saturating_sub(*sent_at) >= retry {
                        *sent_at = now;
                        b.resends += 1;
                        if b.resends == RESENDS_BEFORE_WARNING {
                            tracing::warn!(
                                group,
                                batch = b.id,
                                resends = b.resends,
                                "the sequencer has not answered this batch"
                            );
                        }
                        out.push(Action::SendSeq(b.request.clone()));
                    }
                }
            }
        }
        self.watch_sequencer(now, out);
        self.retry_log_writes(now, out);
        self.flush(now, out);
    }

    pub fn on_raft(&mut self, data: &[u8]) {
        let mut m = match Message::parse_from_bytes(data) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(group = self.cfg.group, error = %e, "undecodable raft message");
                return;
            }
        };
        let me = u64::from(self.cfg.replica) + 1;
        if m.to != me || m.from == me || m.from == 0 || m.from > u64::from(self.cfg.replicas) {
            tracing::warn!(
                group = self.cfg.group,
                from = m.from,
                to = m.to,
                "dropping a raft message not between this group's peers"
            );
            return;
        }
        if m.get_msg_type() == raft::prelude::MessageType::MsgHeartbeat {
            // A heartbeat may say the leader committed more than this replica holds (after
            // a restart that lost unsynced writes, say); raft-rs would abort on that.
            // Learning a smaller commit index is always safe.
            let last = self.node.raft.raft_log.last_index();
            if m.commit > last {
                m.commit = last;
            }
        }
        if let Err(e) = self.node.step(m) {
            tracing::debug!(group = self.cfg.group, error = %e, "raft step");
        }
    }

    /// The connection to the sequencer was (re)established: re-send what is unanswered.
    pub fn on_seq_connected(&mut self, out: &mut Vec<Action>) {
        if let Some(l) = self.leader.as_mut() {
            for b in l.inflight.iter_mut() {
                if let Stage::Requested { sent_at } = &mut b.stage {
                    *sent_at = self.now;
                    out.push(Action::SendSeq(b.request.clone()));
                }
            }
        }
    }

    pub fn on_seq_reply(&mut self, reply: SeqReply) {
        if reply.epoch != self.promised && self.cfg.mutant != Some(Mutant::NoFence) {
            // Fenced: an answer from a sequencer this group no longer listens to.
            return;
        }
        if reply.epoch == self.promised {
            self.seq_heard = self.now;
        }
        let Some(l) = self.leader.as_mut() else {
            return;
        };
        if reply.watermarks.len() == self.cfg.spaces as usize {
            l.seq_watermarks.clone_from(&reply.watermarks);
        }
        if let Some(b) = l.inflight.iter_mut().find(|b| b.id == reply.batch_id) {
            if matches!(b.stage, Stage::Requested { .. }) {
                b.stage = Stage::Answered(reply);
            }
        }
    }

    /// The answer to op `seq` of `client`: its numbers, one per space of `mask`.
    fn answered(client: u64, seq: u64, mask: u64, numbers: Vec<u64>) -> ClientReply {
        ClientReply {
            client_id: client,
            client_seq: seq,
            status: ReplyStatus::Ok as i32,
            leader_hint: 0,
            space_mask: mask,
            numbers,
        }
    }

    fn reply(status: ReplyStatus, op: &ClientOp, hint: u32) -> ClientReply {
        ClientReply {
            client_id: op.client_id,
            client_seq: op.client_seq,
            status: status as i32,
            leader_hint: hint,
            space_mask: 0,
            numbers: Vec::new(),
        }
    }

    pub fn on_client_op(&mut self, conn: ConnId, op: ClientOp, out: &mut Vec<Action>) {
        let mask = SpaceMask(op.space_mask);
        if op.group != self.cfg.group
            || op.client_seq == 0
            || mask.is_empty()
            || !mask.within(self.cfg.spaces)
        {
            out.push(Action::Reply {
                conn,
                reply: Self::reply(ReplyStatus::Invalid, &op, 0),
            });
            return;
        }
        let hint = self.node.raft.leader_id as u32;
        let Some(l) = self.leader.as_mut() else {
            out.push(Action::Reply {
                conn,
                reply: Self::reply(ReplyStatus::NotLeader, &op, hint),
            });
            return;
        };
        if !l.started {
            if l.waiting.len() < MAX_WAITING {
                l.waiting.push((conn, op));
            }
            return;
        }
        let applied = self.clients.entry(op.client_id).or_default();
        let no_dedup = self.cfg.mutant == Some(Mutant::NoDedup);
        if op.client_seq <= applied.max_seq && !no_dedup {
            if let Some((m, nums)) = applied.answers.get(&op.client_seq) {
                let reply = Self::answered(op.client_id, op.client_seq, *m, nums.clone());
                self.answer_after_log(conn, reply, out);
            }
            return;
        }
        let lc = l
            .clients
            .entry(op.client_id)
            .or_insert_with(|| LeaderClient {
                next_seq: applied.max_seq + 1,
                held: BTreeMap::new(),
                conn,
            });
        lc.conn = conn;
        let entry = OpEntry {
            client_id: op.client_id,
            client_seq: op.client_seq,
            space_mask: op.space_mask,
            payload: op.payload,
            acked_below: op.acked_below,
        };
        if op.client_seq < lc.next_seq {
            if !no_dedup {
                return; // already batched: answered when its batch applies
            }
            // The NoDedup mutant batches the retry again.
            if l.open.is_empty() {
                l.open_since = self.now;
            }
            l.open.push_back(entry);
            return;
        }
        if self.cfg.mutant == Some(Mutant::NoHoldBack) {
            if l.open.is_empty() {
                l.open_since = self.now;
            }
            l.open.push_back(entry);
            lc.next_seq = lc.next_seq.max(op.client_seq + 1);
            return;
        }
        if op.client_seq > lc.next_seq {
            if lc.held.len() < MAX_HELD_PER_CLIENT {
                lc.held.insert(op.client_seq, entry);
            }
            return;
        }
        if l.open.is_empty() {
            l.open_since = self.now;
        }
        l.open.push_back(entry);
        lc.next_seq += 1;
        while let Some(e) = lc.held.remove(&lc.next_seq) {
            l.open.push_back(e);
            lc.next_seq += 1;
        }
    }

    /// Called after a burst of events: closes batches, proposes answered ones, and handles
    /// Raft's output.
    pub fn flush(&mut self, now: u64, out: &mut Vec<Action>) {
        self.now = self.now.max(now);
        self.drive_raft(out);
        self.sync_role(out);
        self.close_batches(out);
        self.propose_answered(out);
        self.drive_raft(out);
        self.sync_role(out);
    }

    fn sync_role(&mut self, out: &mut Vec<Action>) {
        let term = self.node.raft.term;
        let leading = self.is_leader();
        if self
            .leader
            .as_ref()
            .is_some_and(|l| !leading || l.term != term)
        {
            self.step_down(out);
        }
        if leading && self.leader.is_none() {
            self.leader = Some(Leader {
                term,
                start_index: self.node.raft.raft_log.last_index(),
                started: false,
                next_batch_id: 0,
                inflight: VecDeque::new(),
                open: VecDeque::new(),
                open_since: self.now,
                clients: BTreeMap::new(),
                waiting: Vec::new(),
                seq_watermarks: Vec::new(),
            });
            self.seq_heard = self.now;
            self.takeover_asks = 0;
        }
        self.maybe_start(out);
    }

    /// Leadership is lost: tell every client with ops in flight to look elsewhere.
    fn step_down(&mut self, out: &mut Vec<Action>) {
        let Some(l) = self.leader.take() else {
            return;
        };
        self.stop_deliveries();
        let hint = self.node.raft.leader_id as u32;
        for (client, lc) in l.clients {
            out.push(Action::Reply {
                conn: lc.conn,
                reply: ClientReply {
                    client_id: client,
                    client_seq: 0,
                    status: ReplyStatus::NotLeader as i32,
                    leader_hint: hint,
                    space_mask: 0,
                    numbers: Vec::new(),
                },
            });
        }
        for (conn, op) in l.waiting {
            out.push(Action::Reply {
                conn,
                reply: Self::reply(ReplyStatus::NotLeader, &op, hint),
            });
        }
    }

    /// Once everything before this term's first entry is applied, the predecessor's batch
    /// ids are known: re-ask each with zero counts, and only then take new ops.
    fn maybe_start(&mut self, out: &mut Vec<Action>) {
        let applied = self.applied_index;
        let k = self.cfg.max_outstanding as u64;
        let all = SpaceMask::first(self.cfg.spaces);
        let Some(l) = self.leader.as_mut() else {
            return;
        };
        if l.started || applied < l.start_index {
            return;
        }
        l.started = true;
        let first = self.last_batch_id + 1;
        let probes = if self.cfg.mutant == Some(Mutant::SkipReask) {
            first..first
        } else {
            first..first + k
        };
        for id in probes {
            let request = GetSeq {
                epoch: self.promised,
                group: self.cfg.group,
                batch_id: id,
                space_mask: all.0,
                counts: vec![0; all.len()],
                committed: self.last_batch_id,
            };
            out.push(Action::SendSeq(request.clone()));
            l.inflight.push_back(Inflight {
                id,
                ops: Vec::new(),
                request,
                stage: Stage::Requested { sent_at: self.now },
                resends: 0,
            });
        }
        l.next_batch_id = first + k;
        tracing::info!(
            group = self.cfg.group,
            term = l.term,
            epoch = self.promised,
            last_batch = self.last_batch_id,
            "leading; re-asking the predecessor's batch ids"
        );
        let waiting = std::mem::take(&mut l.waiting);
        self.start_deliveries(out);
        for (conn, op) in waiting {
            self.on_client_op(conn, op, out);
        }
    }

    fn drive_raft(&mut self, out: &mut Vec<Action>) {
        if !self.node.has_ready() {
            return;
        }
        let mut rd = self.node.ready();
        self.send_all(rd.take_messages(), out);
        if !rd.snapshot().is_empty() {
            let snap = rd.snapshot().clone();
            self.install_snapshot(snap, out);
        }
        let committed = rd.take_committed_entries();
        self.apply(committed, out);
        let entries = rd.entries().clone();
        let hard_state = rd.hs().cloned();
        {
            let store = self.node.store().clone();
            let mut core = store.mem().wl();
            if !entries.is_empty() {
                if let Err(e) = core.append(&entries) {
                    tracing::error!(group = self.cfg.group, error = %e, "append to raft storage");
                }
            }
            if let Some(hs) = &hard_state {
                core.set_hardstate(hs.clone());
            }
        }
        if !entries.is_empty() || hard_state.is_some() {
            out.push(Action::Persist {
                hard_state,
                entries,
            });
        }
        self.send_all(rd.take_persisted_messages(), out);
        let mut light = self.node.advance(rd);
        if let Some(c) = light.commit_index() {
            self.node.store().mem().wl().mut_hard_state().set_commit(c);
        }
        self.send_all(light.take_messages(), out);
        let committed = light.take_committed_entries();
        self.apply(committed, out);
        self.node.advance_apply();
        self.maybe_snapshot(out);
    }

    fn send_all(&self, msgs: Vec<Message>, out: &mut Vec<Action>) {
        for m in msgs {
            let to = m.to;
            match m.write_to_bytes() {
                Ok(b) if to >= 1 => out.push(Action::SendRaft {
                    to: (to - 1) as u32,
                    data: Bytes::from(b),
                }),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "encode raft message"),
            }
        }
    }
}
