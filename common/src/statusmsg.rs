//! `mason status`'s messages: a watcher asks any role how it is ([`StatusRequest`]) and
//! gets one [`StatusReply`], with the part that fits the role filled in (a proxy process:
//! one [`GroupStatus`] per hosted group; a sequencer, a log server or a ZK-Mason shard
//! server: its own). Every field is read from the role's state machine as it stands when
//! the request reaches it; nothing is changed by asking.

/// Watcher -> any role: "tell me how you are". Nothing else may a watcher send to a
/// sequencer or a log server.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusRequest {}

/// The answer to [`StatusRequest`]: the sub-messages of the answering role.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusReply {
    /// A proxy process: each group it hosts a replica of, by group id.
    #[prost(message, repeated, tag = "1")]
    pub groups: Vec<GroupStatus>,
    #[prost(message, optional, tag = "2")]
    pub sequencer: Option<SequencerStatus>,
    #[prost(message, optional, tag = "3")]
    pub log_server: Option<LogServerStatus>,
    #[prost(message, optional, tag = "4")]
    pub zk_server: Option<ZkServerStatus>,
}

/// One replica of one proxy group, as this replica sees its group.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GroupStatus {
    #[prost(uint32, tag = "1")]
    pub group: u32,
    /// This replica's index.
    #[prost(uint32, tag = "2")]
    pub replica: u32,
    /// Whether this replica is the group's Raft leader.
    #[prost(bool, tag = "3")]
    pub leader: bool,
    /// The leader this replica knows of, as replica index + 1 (0: none known).
    #[prost(uint32, tag = "4")]
    pub leader_hint: u32,
    #[prost(uint64, tag = "5")]
    pub term: u64,
    /// Raft's commit index, this replica's applied index and its last log index.
    #[prost(uint64, tag = "6")]
    pub commit: u64,
    #[prost(uint64, tag = "7")]
    pub applied: u64,
    #[prost(uint64, tag = "8")]
    pub last_index: u64,
    /// A leader: each other replica's matched index (followers leave it empty).
    #[prost(message, repeated, tag = "9")]
    pub followers: Vec<FollowerStatus>,
    /// The highest sequencer epoch the group has promised (applied state).
    #[prost(uint64, tag = "10")]
    pub epoch: u64,
    /// A leader that has finished taking over from its predecessor.
    #[prost(bool, tag = "11")]
    pub serving: bool,
    /// The last batch id applied.
    #[prost(uint64, tag = "12")]
    pub last_batch_id: u64,
    /// Open client sessions (applied state).
    #[prost(uint64, tag = "13")]
    pub sessions: u64,
}

impl GroupStatus {
    /// The leader this replica knows of, as a replica index.
    pub fn leader_replica(&self) -> Option<u32> {
        self.leader_hint.checked_sub(1)
    }
}

/// A follower's progress, as its leader tracks it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FollowerStatus {
    #[prost(uint32, tag = "1")]
    pub replica: u32,
    /// The highest log index the leader knows the follower holds.
    #[prost(uint64, tag = "2")]
    pub matched: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum SeqState {
    /// Waits to take over.
    Backup = 0,
    /// Collecting promises and filling holes for `epoch`.
    TakingOver = 1,
    /// Serves `epoch`: the primary.
    Active = 2,
}

/// One sequencer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SequencerStatus {
    #[prost(uint32, tag = "1")]
    pub index: u32,
    #[prost(enumeration = "SeqState", tag = "2")]
    pub state: i32,
    /// The epoch it serves or takes over with; a backup: the newest it has seen.
    #[prost(uint64, tag = "3")]
    pub epoch: u64,
    /// Per space (active only): the next number it hands out.
    #[prost(uint64, repeated, packed = "true", tag = "4")]
    pub next: Vec<u64>,
    /// Per space (active only): every number below is bound for good.
    #[prost(uint64, repeated, packed = "true", tag = "5")]
    pub watermarks: Vec<u64>,
}

/// One log server: member `index` of shard `shard`'s chain.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LogServerStatus {
    #[prost(uint32, tag = "1")]
    pub shard: u32,
    #[prost(uint32, tag = "2")]
    pub index: u32,
    /// One past the highest durable position it holds.
    #[prost(uint64, tag = "3")]
    pub tail: u64,
    /// One past the highest position it appended (durable or not).
    #[prost(uint64, tag = "4")]
    pub next: u64,
    /// Writes waiting for the disk or the chain.
    #[prost(uint64, tag = "5")]
    pub pending: u64,
}

/// One ZK-Mason shard server.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ZkServerStatus {
    #[prost(uint32, tag = "1")]
    pub shard: u32,
    #[prost(uint32, tag = "2")]
    pub index: u32,
    /// The first position of its shard's space not applied yet.
    #[prost(uint64, tag = "3")]
    pub applied: u64,
    #[prost(uint64, tag = "4")]
    pub ops: u64,
    #[prost(uint64, tag = "5")]
    pub noops: u64,
}
