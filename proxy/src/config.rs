//! How a replica is configured, and the deliberate protocol breakages (mutants) the
//! simulator uses to prove that its checker catches each broken step.

/// A group snapshots at least once per this many bytes of applied entries (see
/// [`ReplicaConfig::snapshot_bytes`]): a thirty-second of a WAL segment.
pub const SNAPSHOT_BYTES: u64 = crate::wal::SEGMENT_BYTES / 32;

#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    pub group: u32,
    /// This replica's index in its group, 0..replicas. Its Raft id is index + 1.
    pub replica: u32,
    pub replicas: u32,
    pub spaces: u32,
    /// Ops per batch at most.
    pub max_batch_ops: usize,
    /// K: batch ids in use past the last committed one, at most.
    pub max_outstanding: usize,
    /// A batch waits at most this long for more ops (0: it closes as soon as the input is
    /// drained).
    pub batch_delay_us: u64,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// How often the runtime ticks, in us (a tick much later than that means the process
    /// was paused).
    pub tick_us: u64,
    /// Re-send a sequencer request unanswered for this long.
    pub seq_retry_us: u64,
    /// How many sequencers there are (the primary and its backups); epoch `e` belongs to
    /// sequencer `(e - 1) % sequencers`.
    pub sequencers: u32,
    /// A leader that has heard nothing from its sequencer for this long sends a heartbeat.
    pub seq_heartbeat_us: u64,
    /// A leader that has heard nothing from its sequencer for this long asks a backup to
    /// take over (and asks the next one after as long again).
    pub seq_timeout_us: u64,
    /// Start an election at once (used for replica 0 of a fresh group, so that the first
    /// leader is known without waiting out an election timeout).
    pub campaign_on_start: bool,
    /// `None`: raft-rs draws each election timeout from the thread's RNG (real runs).
    /// `Some(j)`: the timeout is always `election_ticks + j` ticks, so that a run is a pure
    /// function of its inputs (the simulator picks `j` per replica from its seed).
    pub election_jitter: Option<usize>,
    /// Snapshot the applied state and compact the Raft log every this many applied
    /// entries (0: never).
    pub snapshot_entries: u64,
    /// Also snapshot once the entries applied since the last snapshot pass this many
    /// bytes, and twice that snapshot's size (0: by entries only). A WAL segment starts
    /// with each group's entries since its snapshot, so this bounds what starting one
    /// copies; the second bound keeps a large state (an RSMKeeper tree) from being
    /// written more often than the log it replaces.
    pub snapshot_bytes: u64,
    /// CorfuMason: the shared log's shard count (0: no log). Space 0's numbers are log
    /// positions, written to the log servers before clients are answered.
    pub log_shards: u32,
    /// Re-send a log write unanswered (or refused for now) for this long.
    pub log_retry_us: u64,
    /// A batch closes once its ops' payloads pass this many bytes (its Raft entry, and the
    /// messages that carry it, stay well below the peers' frame limit).
    pub max_batch_bytes: usize,
    /// A client session with no op for this long is closed (its dedup state forgotten).
    pub session_timeout_us: u64,
    /// Sessions open at once, at most; registrations past it are refused.
    pub max_sessions: usize,
    /// Client ops waiting for a batch (or for a new leader to start) at most, in bytes;
    /// more are dropped (their clients re-send).
    pub max_queued_bytes: usize,
    /// RSMKeeper: no sequencer; every op's payload is a ZooKeeper request that every
    /// replica applies to the group's tree (see `replica::keeper`).
    pub keeper: bool,
    /// ZK-Mason: the servers of each shard (empty: not ZK-Mason). Shard `s` is space
    /// `s + 1`; every bound op and noop there is delivered to its servers (see
    /// `replica::zkdeliver`), and log_retry_us paces re-sends.
    pub zk_servers: Vec<u32>,
    /// The wall clock (Unix ms) at the runtime's time 0: a keeper leader stamps each batch
    /// with `wall_base_ms + now / 1000`, ZooKeeper's ctime and mtime.
    pub wall_base_ms: i64,
    /// A deliberate protocol bug, for proving that the checker catches it. Only the
    /// simulator and tests set this.
    pub mutant: Option<Mutant>,
}

/// Deliberate breakages of one protocol step each (see `mason sim --mutant`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutant {
    /// A new leader does not re-ask its predecessor's batch ids: their ranges stay holes.
    SkipReask,
    /// The leader answers clients when the sequencer answers, before the batch commits.
    AnswerBeforeCommit,
    /// The leader batches a client's ops as they arrive, not in client-seq order.
    NoHoldBack,
    /// Retried ops are batched and applied again.
    NoDedup,
    /// Answers and batches from an epoch older than the group's promise are used anyway.
    NoFence,
    /// CorfuMason: a new leader does not write again what its predecessor may not have
    /// written to the log (holes stay).
    NoLogRedo,
    /// The leader answers the first two ops of a batch with each other's numbers (what
    /// it binds is right; what it tells the clients is not).
    WrongNumbers,
    /// RSMKeeper: followers apply each batch's requests in reverse order (the leader in
    /// order), so replicas' trees part.
    KeeperReorder,
    /// ZK-Mason: a new leader does not deliver again what its predecessor may not have
    /// delivered to the shard servers (their positions stay holes).
    NoZkRedo,
    /// RSMKeeper (`--zk-reads local`): the leader answers a local read from its tree at
    /// once, without a ReadIndex round (a deposed leader answers stale reads).
    ReadWithoutIndex,
    /// A replica counts its own write towards a commit, and sends its acknowledgements and
    /// votes, as soon as it hands the write to its disk, not once it is durable.
    AckBeforePersist,
    /// Every write is marked as one that need not be synced (as if only a commit index
    /// had moved), so the runtime reports entries and votes durable before any sync.
    SyncNothing,
}

impl std::str::FromStr for Mutant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "skip-reask" => Ok(Mutant::SkipReask),
            "answer-before-commit" => Ok(Mutant::AnswerBeforeCommit),
            "no-hold-back" => Ok(Mutant::NoHoldBack),
            "no-dedup" => Ok(Mutant::NoDedup),
            "no-fence" => Ok(Mutant::NoFence),
            "no-log-redo" => Ok(Mutant::NoLogRedo),
            "wrong-numbers" => Ok(Mutant::WrongNumbers),
            "keeper-reorder" => Ok(Mutant::KeeperReorder),
            "no-zk-redo" => Ok(Mutant::NoZkRedo),
            "read-without-index" => Ok(Mutant::ReadWithoutIndex),
            "ack-before-persist" => Ok(Mutant::AckBeforePersist),
            "sync-nothing" => Ok(Mutant::SyncNothing),
            _ => Err(format!(
                "unknown mutant '{s}' (skip-reask, answer-before-commit, no-hold-back, \
                 no-dedup, no-fence, no-log-redo, wrong-numbers, keeper-reorder, no-zk-redo, \
                 read-without-index, ack-before-persist, sync-nothing)"
            )),
        }
    }
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig {
            group: 0,
            replica: 0,
            replicas: 3,
            spaces: 1,
            max_batch_ops: 4096,
            max_outstanding: 8,
            batch_delay_us: 0,
            election_ticks: 20,
            heartbeat_ticks: 2,
            tick_us: 10_000,
            seq_retry_us: 500_000,
            sequencers: 1,
            seq_heartbeat_us: 50_000,
            seq_timeout_us: 1_000_000,
            campaign_on_start: false,
            election_jitter: None,
            snapshot_entries: 10_000,
            snapshot_bytes: SNAPSHOT_BYTES,
            log_shards: 0,
            log_retry_us: 200_000,
            max_batch_bytes: 4 << 20,
            session_timeout_us: 60_000_000,
            max_sessions: 1 << 16,
            max_queued_bytes: 256 << 20,
            keeper: false,
            zk_servers: Vec::new(),
            wall_base_ms: 0,
            mutant: None,
        }
    }
}
