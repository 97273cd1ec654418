//! One proxy replica of one group, as a state machine: events in (client ops, Raft
//! messages, sequencer answers, ticks carrying the time), [`Action`]s out (persist, send,
//! answer, record). No I/O and no clock. (raft-rs 0.7 draws its randomized election
//! timeout from the thread's RNG, which nothing here seeds: which follower wins an
//! election varies from run to run.)
//!
//! The leader batches client ops in client-seq order per session (FIFO hold-back), asks the
//! sequencer for a whole batch at once (at most `max_outstanding` batch ids past the last
//! committed one), proposes each answered batch through Raft in batch-id order, and answers
//! clients when the batch is applied. Every replica applies the same batches and keeps the
//! per-session dedup state (Once). A new leader first applies everything up to its own first
//! entry, then re-asks the sequencer, with zero counts, for every batch id its predecessor
//! may have used, and commits whatever ranges come back as noops (DESIGN.md section 4).
//! Clients open sessions through the log first (`clients`), and ops are deduplicated per
//! session.

mod answers;
mod apply;
mod batching;
mod clients;
mod failover;
mod feed;
mod gauges;
mod keeper;
mod localread;
mod logwrite;
mod persist;
mod role;
mod snapshot;
mod status;
mod zkdeliver;
mod zkexpire;

pub use gauges::Gauges;

pub use crate::config::{Mutant, ReplicaConfig};
use crate::entry::{BatchEntry, Numbers, OpEntry};
use crate::recorded::Recorded;
use crate::store::Store;
use bytes::Bytes;
pub use clients::Incoming;

/// A table keyed by session ids that the group assigned (see `Replica::sessions`).
type SessionMap<V> = HashMap<u64, V, fxhash::FxBuildHasher>;
use mason_common::logmsg::LogWrite;
use mason_common::msg::{epoch_owner, Body, ClientReply, GetSeq, Registered, SeqReply};
use mason_common::record::BoundBatch;
use protobuf::Message as _;
use raft::prelude::{Entry, HardState, Message, Snapshot};
use raft::{RawNode, StateRole};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Identifies a client connection to the runtime that drives this replica.
pub type ConnId = u64;

/// What the runtime must do, in order.
#[derive(Debug)]
pub enum Action {
    /// Make these durable (per the fsync setting), after every earlier `Persist` and
    /// `Snapshot`, and then say so with [`Replica::on_persisted`]`(number)` (one call may
    /// answer for every earlier number too). Nothing else waits: the leader's own write
    /// overlaps its followers' (raft thesis 10.2.1), and the replica goes on meanwhile;
    /// what must follow the write (a follower's acknowledgement, a vote) is held until
    /// then. The content may be empty (a Raft ready with nothing to write, behind one
    /// still being written).
    Persist {
        number: u64,
        hard_state: Option<HardState>,
        entries: Vec<Entry>,
        /// raft-rs's `must_sync`: false when only the hard state's commit index changed.
        /// Then the write need not even be made before `on_persisted` (a commit index lost
        /// in a crash is learned again from the leader); the next write carries it.
        must_sync: bool,
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
    /// The answer to a client's `Register`.
    Registered {
        conn: ConnId,
        reply: Registered,
    },
    /// Make this snapshot the base of what is on disk, followed by the hard state and the
    /// entries after the snapshot, durably, after every earlier `Persist` (what must wait
    /// for it waits for the `Persist` that follows it).
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
    /// The answer to a client's `LocalRead`.
    ReadReply {
        conn: ConnId,
        reply: mason_common::msg::LocalReadReply,
    },
    /// To server `server` of ZK-Mason shard `shard`.
    ToZk {
        shard: u32,
        server: u32,
        body: Body,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("the snapshot on disk does not decode")]
    Snapshot,
}

/// Per-session state derived from the committed log (identical on every replica).
#[derive(Default)]
pub(crate) struct Applied {
    /// The client's label, for logs.
    client_id: u64,
    /// Ops the client keeps in flight at most (it said so when it opened the session).
    window: u32,
    /// ZooKeeper (RSMKeeper, ZK-Mason): the idle time after which the group closes the
    /// session, as negotiated from its createSession request (0: the group's timeout).
    timeout_us: u64,
    max_seq: u64,
    answers: answers::Answers,
    /// Bytes of the ZooKeeper replies in `answers`.
    answer_bytes: usize,
}

/// What an op was answered: one number per space of `mask`, and (RSMKeeper) the ZooKeeper
/// reply to its request.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct OpAnswer {
    mask: u64,
    numbers: Numbers,
    result: Bytes,
}

impl OpAnswer {
    fn numbered(mask: u64, numbers: Numbers) -> OpAnswer {
        OpAnswer {
            mask,
            numbers,
            result: Bytes::new(),
        }
    }
}

enum Stage {
    Requested {
        sent_at: u64,
    },
    Answered(SeqReply),
    /// Appended to this leader's log at `index` in `term`: the entry is kept as proposed,
    /// so that applying it here takes it instead of decoding it again (an entry of that
    /// index and term can only be this one: Raft's log matching).
    Proposed {
        index: u64,
        term: u64,
        entry: Option<BatchEntry>,
    },
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
    /// The NoHoldBack mutant only: the seqs it batched (it batches out of order).
    batched: std::collections::BTreeSet<u64>,
}

/// A request to open a session, waiting for its entry to apply.
struct Opening {
    conn: ConnId,
    client_id: u64,
    nonce: u64,
    window: u32,
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
    /// By session id (FxHash, as `Replica::sessions`: ids of sessions that applied).
    clients: SessionMap<LeaderClient>,
    /// Ops and registrations that came before this leader started.
    waiting: Vec<(ConnId, clients::Incoming)>,
    /// Bytes of client payloads in `waiting`, `open` and held ops.
    queued_bytes: usize,
    /// The sequencer watermarks last heard, to pass on in the next batch if they moved.
    seq_watermarks: Vec<u64>,
    /// Registrations to propose, and those proposed, by (client, nonce).
    to_open: Vec<Opening>,
    opening: BTreeMap<(u64, u64), ConnId>,
    /// When each session last sent an op (this leader's clock); sessions idle longer than
    /// the timeout are closed through the log. (FxHash also makes which idle sessions
    /// close first the same in every run of a seed.)
    last_seen: SessionMap<u64>,
    next_expiry_check: u64,
    /// The switch this leader proposed last (proposed once per epoch and ballot).
    proposed_switch: Option<(u64, u64)>,
}

impl Leader {
    /// Puts `op` at the end of the open batch (its age counts from the first op).
    fn batch(&mut self, now: u64, op: OpEntry) {
        if self.open.is_empty() {
            self.open_since = now;
        }
        self.open.push_back(op);
    }
}

/// A log write's id carries its group in the bits from here up.
pub const LOG_REQ_GROUP_SHIFT: u32 = 40;
/// A session id carries its group (+ 1) in the bits from here up.
pub const SESSION_GROUP_SHIFT: u32 = 40;
/// A tick that comes this much later than the one before (or 3 ticks, if longer) means
/// the process was paused (or starved): the silence it measured is not evidence.
const PAUSE_US: u64 = 50_000;

pub struct Replica {
    cfg: ReplicaConfig,
    node: RawNode<Store>,
    now: u64,
    applied_index: u64,
    /// The index of the latest snapshot (taken here or installed).
    snapshot_index: u64,
    /// Bytes of the entries applied since that snapshot, and the size of the last one
    /// taken here (see [`ReplicaConfig::snapshot_bytes`]).
    applied_bytes: u64,
    snapshot_bytes: u64,
    /// Batches applied out of id order (a bug: a state machine that missed entries).
    anomalies: u64,
    /// The highest commit index this leader told its followers of by a message of its
    /// own (see [`Replica::tell_commit_when_idle`]).
    commit_told: u64,
    /// RSMKeeper: the group's ZooKeeper tree, and the watch feed of its triggers.
    tree: Option<mason_zk::DataTree>,
    feed: feed::KeeperFeed,
    last_batch_id: u64,
    /// Open client sessions by id (applied state). Looked up twice per op, so hashed with
    /// FxHash: the ids are the group's own counter, not a client's choice, so no client
    /// can pick keys that collide.
    sessions: SessionMap<Applied>,
    /// The next session id's counter (applied state).
    next_session: u64,
    leader: Option<Leader>,
    /// The highest sequencer epoch this group has promised, and to which ballot (applied
    /// state; ballot 0 for the first epoch, which nobody took over).
    promised: u64,
    promised_ballot: u64,
    recorded: Recorded,
    /// When the sequencer of `promised` was last heard from (leaders only).
    seq_heard: u64,
    heartbeat_sent: u64,
    /// When the last tick came (to tell a pause from the sequencer's silence).
    last_tick: u64,
    /// Backups asked to take over since the sequencer was last heard from.
    takeover_asks: u64,
    /// CorfuMason: applied entries whose log writes are not known to be done, by index.
    deliveries: BTreeMap<u64, logwrite::Delivery>,
    log_reqs: BTreeMap<u64, logwrite::LogReq>,
    next_log_req: u64,
    /// Payloads of the entry being applied, by log position.
    log_stash: HashMap<u64, Bytes>,
    /// ZK-Mason: deliveries to the shard servers.
    zk: zkdeliver::ZkState,
    /// ZK-Mason: sessions closed for idleness whose ZooKeeper session is still to close
    /// on the shards (applied state), and those this leader batched a close for (when).
    zk_expiring: BTreeMap<u64, u64>,
    zk_closes_batched: BTreeMap<u64, u64>,
    /// Reads answered without the log (leaders only).
    local: localread::LocalReads,
    /// Raft readies handed to the runtime to persist and not yet persisted, oldest first,
    /// with the messages that may only go once they are (a follower's acks, votes).
    unpersisted: VecDeque<(u64, Vec<Message>)>,
    /// The ready that carried a snapshot from the leader, until it is durable. Raft's log
    /// already starts after the snapshot, while its applied index may not move there until
    /// then: a campaign meanwhile would look for entries the log no longer holds (raft-rs
    /// aborts), so this replica neither times out nor obeys a `MsgTimeoutNow` until then.
    snapshot_unpersisted: Option<u64>,
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
            // A commit rides on the next append; `tell_commit_when_idle` tells it at a
            // tick when none is coming.
            skip_bcast_commit: true,
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
            applied_bytes: 0,
            snapshot_bytes: 0,
            anomalies: 0,
            commit_told: 0,
            tree: cfg.keeper.then(mason_zk::DataTree::new),
            feed: Default::default(),
            last_batch_id: 0,
            sessions: HashMap::default(),
            next_session: 1,
            leader: None,
            promised: 1,
            promised_ballot: 0,
            recorded: Recorded::new(cfg.spaces),
            seq_heard: 0,
            heartbeat_sent: 0,
            last_tick: 0,
            takeover_asks: 0,
            deliveries: BTreeMap::new(),
            log_reqs: BTreeMap::new(),
            // Log servers answer on one link per process: the id says which group asked.
            next_log_req: (u64::from(cfg.group) << LOG_REQ_GROUP_SHIFT) + 1,
            log_stash: HashMap::new(),
            zk: zkdeliver::ZkState::default(),
            zk_expiring: Default::default(),
            zk_closes_batched: Default::default(),
            local: Default::default(),
            unpersisted: VecDeque::new(),
            snapshot_unpersisted: None,
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

    /// Open client sessions.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// One Raft tick, at time `now` (us).
    pub fn tick(&mut self, now: u64, out: &mut Vec<Action>) {
        let pause = PAUSE_US.max(3 * self.cfg.tick_us);
        if now.saturating_sub(self.last_tick) > pause && self.last_tick > 0 {
            // The process did not run for a while: what it did not hear meanwhile says
            // nothing about the sequencer, nor about its clients' sessions. Start watching
            // both afresh.
            tracing::info!(
                group = self.cfg.group,
                paused_ms = (now - self.last_tick) / 1000,
                "ticks resumed after a pause; silences are measured afresh"
            );
            self.seq_heard = now;
            self.heartbeat_sent = 0;
            if let Some(l) = self.leader.as_mut() {
                for t in l.last_seen.values_mut() {
                    *t = now;
                }
            }
        }
        self.last_tick = now;
        self.now = self.now.max(now);
        if self.snapshot_unpersisted.is_none() {
            self.node.tick();
        }
        self.zk_propose_closes(now, out);
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
        self.expire_sessions(now);
        self.retry_log_writes(now, out);
        self.retry_local_reads(now, out);
        // Before the flush, which sends what it adds.
        self.tell_commit_when_idle();
        self.flush(now, out);
    }

    /// A Raft message from replica `from` (as its connection's handshake proved): a
    /// message that says it is from anyone else is dropped.
    pub fn on_raft(&mut self, from: u32, data: &[u8]) {
        let mut m = match Message::parse_from_bytes(data) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(group = self.cfg.group, error = %e, "undecodable raft message");
                return;
            }
        };
        let me = u64::from(self.cfg.replica) + 1;
        if m.to != me || m.from != u64::from(from) + 1 || m.from == me {
            tracing::warn!(
                group = self.cfg.group,
                from = m.from,
                to = m.to,
                sender = from,
                "dropping a raft message not from the peer that sent it, or not for this replica"
            );
            return;
        }
        if m.get_msg_type() == raft::prelude::MessageType::MsgTimeoutNow
            && self.snapshot_unpersisted.is_some()
        {
            tracing::info!(
                group = self.cfg.group,
                "not campaigning while the leader's snapshot is being written"
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

    /// Called after a burst of events: closes batches, proposes answered ones, and handles
    /// Raft's output.
    pub fn flush(&mut self, now: u64, out: &mut Vec<Action>) {
        self.now = self.now.max(now);
        self.drive_raft(out);
        self.sync_role(out);
        self.close_batches(out);
        self.propose_answered(out);
        self.propose_sessions();
        self.serve_local_reads(out);
        self.drive_raft(out);
        self.sync_role(out);
        self.release_polls();
    }
}
