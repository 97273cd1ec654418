//! Wire messages. Every connection carries length-prefixed [`Frame`]s (see `codec`),
//! starting with the handshake's [`Hello`], [`Challenge`] and [`Proof`] (see `auth`).
//!
//! The structs are written by hand with prost's derive macros, so no `protoc` is needed.
//! Raft messages travel as opaque bytes (raft-rs's own protobuf encoding) in [`RaftMsg`].

use bytes::Bytes;

/// One message on the wire.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Frame {
    #[prost(
        oneof = "Body",
        tags = "1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43"
    )]
    pub body: Option<Body>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Body {
    #[prost(message, tag = "1")]
    GetSeq(GetSeq),
    #[prost(message, boxed, tag = "2")]
    SeqReply(Box<SeqReply>),
    #[prost(message, tag = "3")]
    Raft(RaftMsg),
    #[prost(message, tag = "4")]
    ClientOp(ClientOp),
    #[prost(message, tag = "5")]
    ClientReply(ClientReply),
    #[prost(message, tag = "7")]
    SeqHello(SeqHello),
    #[prost(message, tag = "8")]
    Heartbeat(Heartbeat),
    #[prost(message, tag = "9")]
    Takeover(Takeover),
    #[prost(message, tag = "10")]
    Switch(Switch),
    #[prost(message, boxed, tag = "11")]
    Promise(Box<Promise>),
    #[prost(message, tag = "12")]
    Fill(Fill),
    #[prost(message, tag = "13")]
    FillAck(FillAck),
    #[prost(message, tag = "14")]
    Activate(Activate),
    #[prost(message, tag = "15")]
    Watch(Watch),
    #[prost(message, boxed, tag = "16")]
    Bound(Box<crate::record::BoundBatch>),
    #[prost(message, tag = "17")]
    LogWrite(crate::logmsg::LogWrite),
    #[prost(message, tag = "18")]
    LogWriteReply(crate::logmsg::LogWriteReply),
    #[prost(message, tag = "19")]
    LogRead(crate::logmsg::LogRead),
    #[prost(message, tag = "20")]
    LogReadReply(crate::logmsg::LogReadReply),
    #[prost(message, tag = "21")]
    LogTail(crate::logmsg::LogTail),
    #[prost(message, tag = "22")]
    LogTailReply(crate::logmsg::LogTailReply),
    #[prost(message, tag = "24")]
    Hello(Hello),
    #[prost(message, tag = "25")]
    Challenge(Challenge),
    #[prost(message, tag = "26")]
    Proof(Proof),
    #[prost(message, tag = "27")]
    Register(Register),
    #[prost(message, tag = "28")]
    Registered(Registered),
    #[prost(message, tag = "29")]
    ZkDeliver(crate::zkmsg::ZkDeliver),
    #[prost(message, tag = "30")]
    ZkQuery(crate::zkmsg::ZkQuery),
    #[prost(message, tag = "31")]
    ZkApplied(crate::zkmsg::ZkApplied),
    #[prost(message, tag = "32")]
    ZkView(crate::zkmsg::ZkView),
    #[prost(message, tag = "33")]
    ZkViewPull(crate::zkmsg::ZkViewPull),
    #[prost(message, tag = "34")]
    ZkFetch(crate::zkmsg::ZkFetch),
    #[prost(message, tag = "35")]
    ZkFetchReply(crate::zkmsg::ZkFetchReply),
    #[prost(message, tag = "36")]
    LocalRead(LocalRead),
    #[prost(message, tag = "37")]
    LocalReadReply(LocalReadReply),
    #[prost(message, tag = "38")]
    ZkRead(crate::zkmsg::ZkRead),
    #[prost(message, tag = "39")]
    ZkReadReply(crate::zkmsg::ZkReadReply),
    #[prost(message, tag = "40")]
    ZkWatchPoll(crate::zkmsg::ZkWatchPoll),
    #[prost(message, tag = "41")]
    ZkWatchFeed(crate::zkmsg::ZkWatchFeed),
    #[prost(message, tag = "42")]
    StatusRequest(crate::statusmsg::StatusRequest),
    #[prost(message, boxed, tag = "43")]
    StatusReply(Box<crate::statusmsg::StatusReply>),
}

impl Body {
    /// The message's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Body::GetSeq(_) => "GetSeq",
            Body::SeqReply(_) => "SeqReply",
            Body::Raft(_) => "Raft",
            Body::ClientOp(_) => "ClientOp",
            Body::ClientReply(_) => "ClientReply",
            Body::SeqHello(_) => "SeqHello",
            Body::Heartbeat(_) => "Heartbeat",
            Body::Takeover(_) => "Takeover",
            Body::Switch(_) => "Switch",
            Body::Promise(_) => "Promise",
            Body::Fill(_) => "Fill",
            Body::FillAck(_) => "FillAck",
            Body::Activate(_) => "Activate",
            Body::Watch(_) => "Watch",
            Body::Bound(_) => "Bound",
            Body::LogWrite(_) => "LogWrite",
            Body::LogWriteReply(_) => "LogWriteReply",
            Body::LogRead(_) => "LogRead",
            Body::LogReadReply(_) => "LogReadReply",
            Body::LogTail(_) => "LogTail",
            Body::LogTailReply(_) => "LogTailReply",
            Body::Hello(_) => "Hello",
            Body::Challenge(_) => "Challenge",
            Body::Proof(_) => "Proof",
            Body::Register(_) => "Register",
            Body::Registered(_) => "Registered",
            Body::ZkDeliver(_) => "ZkDeliver",
            Body::ZkQuery(_) => "ZkQuery",
            Body::ZkApplied(_) => "ZkApplied",
            Body::ZkView(_) => "ZkView",
            Body::ZkViewPull(_) => "ZkViewPull",
            Body::ZkFetch(_) => "ZkFetch",
            Body::ZkFetchReply(_) => "ZkFetchReply",
            Body::LocalRead(_) => "LocalRead",
            Body::LocalReadReply(_) => "LocalReadReply",
            Body::ZkRead(_) => "ZkRead",
            Body::ZkReadReply(_) => "ZkReadReply",
            Body::ZkWatchPoll(_) => "ZkWatchPoll",
            Body::ZkWatchFeed(_) => "ZkWatchFeed",
            Body::StatusRequest(_) => "StatusRequest",
            Body::StatusReply(_) => "StatusReply",
        }
    }
}

/// The first frame of every connection, from the side that connected (see `auth`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Hello {
    #[prost(uint32, tag = "1")]
    pub version: u32,
    #[prost(message, optional, tag = "2")]
    pub role: Option<crate::auth::Role>,
    #[prost(bytes = "bytes", tag = "3")]
    pub nonce: Bytes,
}

/// The accepting side's answer to [`Hello`]: its role, its nonce, and its proof that it
/// holds the cluster key.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Challenge {
    #[prost(message, optional, tag = "1")]
    pub role: Option<crate::auth::Role>,
    #[prost(bytes = "bytes", tag = "2")]
    pub nonce: Bytes,
    #[prost(bytes = "bytes", tag = "3")]
    pub mac: Bytes,
}

/// The connecting side's proof that it holds the cluster key.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Proof {
    #[prost(bytes = "bytes", tag = "1")]
    pub mac: Bytes,
}

impl Frame {
    pub fn new(body: Body) -> Frame {
        Frame { body: Some(body) }
    }
}

/// "Batch `batch_id` of group `group` needs `counts[i]` numbers in the i-th space of
/// `space_mask`." Zero counts are allowed: they ask what was assigned, and record the id as
/// used if it was not (a new proxy leader does this for its predecessor's batch ids).
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetSeq {
    #[prost(uint64, tag = "1")]
    pub epoch: u64,
    #[prost(uint32, tag = "2")]
    pub group: u32,
    #[prost(uint64, tag = "3")]
    pub batch_id: u64,
    #[prost(fixed64, tag = "4")]
    pub space_mask: u64,
    #[prost(uint32, repeated, packed = "true", tag = "5")]
    pub counts: Vec<u32>,
    /// The group's last applied batch id: the sequencer's garbage-collection watermark
    /// may pass the ranges of every id up to it.
    #[prost(uint64, tag = "6")]
    pub committed: u64,
    /// The direct baseline only: the asking client's session (its ops are `batch_id`
    /// 1, 2, 3, ...; `group` is unused). 0 for proxy groups.
    #[prost(uint64, tag = "7")]
    pub session: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum SeqStatus {
    /// Fresh ranges, or (with `repeat`) the ranges this id got before.
    Ok = 0,
    /// The id is older than the sequencer still remembers; nothing is assigned.
    TooOld = 1,
    /// The request is malformed (a space out of range, counts not matching the mask).
    Invalid = 2,
}

/// The sequencer's answer: per space of `space_mask`, `[bases[i], bases[i] + counts[i])`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SeqReply {
    #[prost(uint64, tag = "1")]
    pub epoch: u64,
    #[prost(uint32, tag = "2")]
    pub group: u32,
    #[prost(uint64, tag = "3")]
    pub batch_id: u64,
    #[prost(enumeration = "SeqStatus", tag = "4")]
    pub status: i32,
    #[prost(bool, tag = "5")]
    pub repeat: bool,
    #[prost(fixed64, tag = "6")]
    pub space_mask: u64,
    #[prost(uint64, repeated, packed = "true", tag = "7")]
    pub bases: Vec<u64>,
    #[prost(uint32, repeated, packed = "true", tag = "8")]
    pub counts: Vec<u32>,
    /// Per space (all spaces, or none): every number below is bound for good, so groups
    /// may forget their records of it (DESIGN.md section 6).
    #[prost(uint64, repeated, packed = "true", tag = "9")]
    pub watermarks: Vec<u64>,
    /// A direct client's session, from its request (0 for a group): clients that share a
    /// connection tell their answers apart by it.
    #[prost(uint64, tag = "10")]
    pub session: u64,
}

/// A raft-rs message for one group, in raft-rs's own encoding.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RaftMsg {
    #[prost(uint32, tag = "1")]
    pub group: u32,
    #[prost(bytes = "bytes", tag = "2")]
    pub data: Bytes,
}

/// A client's operation, in the client's session (see [`Register`]). A session numbers
/// its ops 1, 2, 3, ... and says, with `acked_below`, that it holds the answers of every op
/// below that number.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ClientOp {
    #[prost(uint64, tag = "1")]
    pub session: u64,
    #[prost(uint64, tag = "2")]
    pub client_seq: u64,
    #[prost(uint32, tag = "3")]
    pub group: u32,
    #[prost(fixed64, tag = "4")]
    pub space_mask: u64,
    #[prost(bytes = "bytes", tag = "5")]
    pub payload: Bytes,
    #[prost(uint64, tag = "6")]
    pub acked_below: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum ReplyStatus {
    Ok = 0,
    /// This replica does not lead the group; `leader_hint` (replica index + 1) may.
    NotLeader = 1,
    /// The op is malformed (spaces out of range, no space, unknown group).
    Invalid = 2,
    /// The op was bound once and its answer is forgotten (the client said it held it, or
    /// kept more than its window in flight): the session is out of step and the client
    /// must open a new one. The op itself is bound.
    SessionExpired = 3,
    /// The group holds as many sessions as it may: try again later.
    TooManySessions = 4,
    /// The group does not know the op's session (closed after an idle spell, or never
    /// opened), so this copy of the op was not batched and never will be: an op sent only
    /// this once may go again under a new session.
    UnknownSession = 5,
}

/// The most ops a session may keep in flight through a proxy group: a client numbers an
/// op only while it is below its lowest unanswered op plus its window.
pub const MAX_CLIENT_WINDOW: u32 = 4096;
/// The most ops a direct client (one that asks the sequencer itself) keeps in flight: the
/// sequencer keeps this many answers per direct session.
pub const DIRECT_SESSION_WINDOW: u32 = 256;

/// The answer to a [`ClientOp`]: one number per space of `space_mask`, ascending by space.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ClientReply {
    #[prost(uint64, tag = "1")]
    pub session: u64,
    #[prost(uint64, tag = "2")]
    pub client_seq: u64,
    #[prost(enumeration = "ReplyStatus", tag = "3")]
    pub status: i32,
    #[prost(uint32, tag = "4")]
    pub leader_hint: u32,
    #[prost(fixed64, tag = "5")]
    pub space_mask: u64,
    #[prost(uint64, repeated, packed = "true", tag = "6")]
    pub numbers: Vec<u64>,
    /// RSMKeeper: the ZooKeeper reply to the op's request (jute: the reply header and its
    /// body, without the length prefix). Empty otherwise.
    #[prost(bytes = "bytes", tag = "7")]
    pub result: Bytes,
}

/// Client -> the leader of `group` (`--zk-reads local`): answer this ZooKeeper read
/// without putting it through the log. RSMKeeper's leader answers it from its own tree
/// once it has applied everything committed when the read came (Raft's ReadIndex), so
/// the read is still linearizable; ZK-Mason's leader has one server of the read's shard
/// answer it, once that server has applied the shard's space up to `min_pos` (the
/// highest number of that space the session has seen), as a ZooKeeper follower answers
/// a read. The read takes no seq: `id` is the client's own, to match the answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LocalRead {
    #[prost(uint64, tag = "1")]
    pub session: u64,
    #[prost(uint32, tag = "2")]
    pub group: u32,
    #[prost(uint64, tag = "3")]
    pub id: u64,
    /// The ZooKeeper request (header and body in jute, no length prefix).
    #[prost(bytes = "bytes", tag = "4")]
    pub payload: Bytes,
    #[prost(uint64, tag = "5")]
    pub min_pos: u64,
}

/// The answer to a [`LocalRead`]: the ZooKeeper reply, and (ZK-Mason) the read's space
/// and the position of it the answering server had applied.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LocalReadReply {
    #[prost(uint64, tag = "1")]
    pub session: u64,
    #[prost(uint64, tag = "2")]
    pub id: u64,
    #[prost(enumeration = "ReplyStatus", tag = "3")]
    pub status: i32,
    #[prost(uint32, tag = "4")]
    pub leader_hint: u32,
    #[prost(bytes = "bytes", tag = "5")]
    pub result: Bytes,
    #[prost(uint32, tag = "6")]
    pub space: u32,
    #[prost(uint64, tag = "7")]
    pub pos: u64,
}

/// Client -> a proxy replica of `group`: "open a session for me". The group commits the
/// session through its log and answers with its id; a session that stays idle longer
/// than the group's session timeout is closed (through the log too), and its ops are
/// answered [`ReplyStatus::UnknownSession`]. `nonce` tells the answers of this request
/// from those of earlier ones.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Register {
    #[prost(uint32, tag = "1")]
    pub group: u32,
    /// A label for logs (the client's index); sessions are told apart by their id.
    #[prost(uint64, tag = "2")]
    pub client_id: u64,
    #[prost(uint64, tag = "3")]
    pub nonce: u64,
    /// Ops the client keeps in flight at most ([`MAX_CLIENT_WINDOW`] at most): an op at or
    /// beyond its `acked_below` plus this window is refused, so the group holds back no
    /// more than this many of the session's ops, and keeps no more of its answers.
    #[prost(uint32, tag = "4")]
    pub window: u32,
}

/// The answer to [`Register`]: with `Ok`, the new session's id, unique across the
/// deployment and never reused.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Registered {
    #[prost(uint64, tag = "1")]
    pub nonce: u64,
    #[prost(enumeration = "ReplyStatus", tag = "2")]
    pub status: i32,
    #[prost(uint32, tag = "3")]
    pub leader_hint: u32,
    #[prost(uint64, tag = "4")]
    pub session: u64,
}

/// The first frame on a proxy process's link to a sequencer: which replica of which
/// groups it hosts, so that a (backup) sequencer can reach every group.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SeqHello {
    #[prost(uint32, tag = "1")]
    pub replica: u32,
    #[prost(uint32, repeated, packed = "true", tag = "2")]
    pub groups: Vec<u32>,
}

/// Proxy leader -> sequencer when nothing else is in flight; echoed back. Only an echo
/// from the sequencer of the group's current epoch counts as a sign of life.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Heartbeat {
    #[prost(uint64, tag = "1")]
    pub epoch: u64,
    #[prost(uint32, tag = "2")]
    pub group: u32,
}

/// Proxy leader -> a backup sequencer: "the sequencer of `epoch` has been silent; take over".
#[derive(Clone, PartialEq, prost::Message)]
pub struct Takeover {
    #[prost(uint64, tag = "1")]
    pub epoch: u64,
    #[prost(uint32, tag = "2")]
    pub group: u32,
}

/// Backup -> every replica of `group`: "commit a promise of `epoch` and tell me what you
/// bound" (DESIGN.md section 5, step 2). Only the group's leader acts on it.
///
/// `ballot` names one takeover attempt (a sequencer process's random incarnation): a
/// sequencer that restarted without memory of the epochs it used could otherwise run a
/// second takeover at an epoch a group already promised, and count the group's old promise
/// for it. A group promises an epoch to one ballot only.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Switch {
    #[prost(uint64, tag = "1")]
    pub epoch: u64,
    #[prost(uint32, tag = "2")]
    pub group: u32,
    #[prost(uint64, tag = "3")]
    pub ballot: u64,
}

/// A group's answer to [`Switch`]. With `ok`, it has committed its promise of `epoch`:
/// it binds nothing from older epochs from now on, and this is everything it bound that it
/// has not forgotten. Without `ok`, it has promised `promised`, which is higher.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Promise {
    #[prost(uint64, tag = "1")]
    pub epoch: u64,
    #[prost(uint32, tag = "2")]
    pub group: u32,
    #[prost(bool, tag = "3")]
    pub ok: bool,
    #[prost(uint64, tag = "4")]
    pub promised: u64,
    /// The last batch id the group applied; its next request will use the one after.
    #[prost(uint64, tag = "5")]
    pub last_batch_id: u64,
    /// Per space: every number below is bound (the group forgot its records there).
    #[prost(uint64, repeated, packed = "true", tag = "6")]
    pub watermarks: Vec<u64>,
    #[prost(message, optional, tag = "7")]
    pub recorded: Option<Ranges>,
    /// The ballot the group promised `promised` to.
    #[prost(uint64, tag = "8")]
    pub ballot: u64,
}

/// Ranges of numbers as three columns: `[bases[i], bases[i] + lens[i])` in `spaces[i]`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Ranges {
    #[prost(uint32, repeated, packed = "true", tag = "1")]
    pub spaces: Vec<u32>,
    #[prost(uint64, repeated, packed = "true", tag = "2")]
    pub bases: Vec<u64>,
    #[prost(uint64, repeated, packed = "true", tag = "3")]
    pub lens: Vec<u64>,
}

impl Ranges {
    pub fn push(&mut self, space: u32, base: u64, len: u64) {
        self.spaces.push(space);
        self.bases.push(base);
        self.lens.push(len);
    }

    /// The ranges as (space, base, len), or None if the columns differ in length.
    pub fn iter(&self) -> Option<impl Iterator<Item = (u32, u64, u64)> + '_> {
        let n = self.spaces.len();
        if self.bases.len() != n || self.lens.len() != n {
            return None;
        }
        Some(
            self.spaces
                .iter()
                .zip(&self.bases)
                .zip(&self.lens)
                .map(|((s, b), l)| (*s, *b, *l)),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.spaces.is_empty()
    }
}

/// Backup -> group: "commit these holes as noops" (section 5, step 4). Idempotent.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Fill {
    #[prost(uint64, tag = "1")]
    pub epoch: u64,
    #[prost(uint32, tag = "2")]
    pub group: u32,
    #[prost(message, optional, tag = "3")]
    pub holes: Option<Ranges>,
    #[prost(uint64, tag = "4")]
    pub ballot: u64,
}

/// Group -> backup: the holes of [`Fill`] at `epoch` are committed.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FillAck {
    #[prost(uint64, tag = "1")]
    pub epoch: u64,
    #[prost(uint32, tag = "2")]
    pub group: u32,
    #[prost(uint64, tag = "3")]
    pub ballot: u64,
}

/// The sequencer of `epoch` serves from now on.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Activate {
    #[prost(uint64, tag = "1")]
    pub epoch: u64,
    #[prost(uint64, tag = "2")]
    pub ballot: u64,
}

/// Client -> proxy replica: "show me what group `group` binds". The replica answers with
/// a [`Promise`]-shaped snapshot of what it still records (its watermarks and ranges),
/// then streams a [`Body::Bound`] for every batch or hole it applies from then on; a
/// notice's numbers that its ops do not take are noops. With `ranges_only`, notices carry
/// no op columns (cheaper; enough to follow contiguity).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Watch {
    #[prost(uint32, tag = "1")]
    pub group: u32,
    #[prost(bool, tag = "2")]
    pub ranges_only: bool,
}

/// Which sequencer owns `epoch` among `n`: epochs are ballots, and each sequencer takes
/// over only with epochs it owns, so two backups never use the same one.
pub fn epoch_owner(epoch: u64, n: u32) -> u32 {
    if n == 0 {
        return 0;
    }
    (epoch.saturating_sub(1) % u64::from(n)) as u32
}

/// The smallest epoch above `above` that sequencer `me` of `n` owns.
pub fn next_owned_epoch(above: u64, me: u32, n: u32) -> u64 {
    let mut e = above + 1;
    while epoch_owner(e, n) != me {
        e += 1;
    }
    e
}
