//! Wire messages of ZK-Mason (DESIGN.md section 8, docs/design.md "ZooKeeper"): proxies
//! deliver every bound position of a shard's space (an op, or a range of noops) to that
//! shard's servers and hear back once each applied it; shard servers exchange their
//! *views* of ops that span shards, and a lagging server fetches what it missed from a
//! peer of its shard.
//!
//! Space 0 of the sequencer is the clock every write touches (its number is the zxid);
//! shard `s` is space `s + 1`.

use bytes::Bytes;

/// The space of shard `shard`.
pub fn shard_space(shard: u32) -> u32 {
    shard + 1
}

/// One bound position of a shard's space: an op (`noops == 0`) or `noops` noops from
/// `pos` on.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ZkItem {
    #[prost(uint64, tag = "1")]
    pub pos: u64,
    #[prost(uint64, tag = "2")]
    pub noops: u64,
    /// The op's ZooKeeper session (its client session).
    #[prost(uint64, tag = "3")]
    pub session: u64,
    /// The ZooKeeper request: header and body in jute, no length prefix.
    #[prost(bytes = "bytes", tag = "4")]
    pub payload: Bytes,
    /// The proxy leader's clock when it batched the op (ctime and mtime).
    #[prost(int64, tag = "5")]
    pub time_ms: i64,
    /// Every space the op took a number in, and those numbers, in space order.
    #[prost(fixed64, tag = "6")]
    pub mask: u64,
    #[prost(uint64, repeated, tag = "7")]
    pub numbers: Vec<u64>,
}

impl ZkItem {
    pub fn noops(pos: u64, count: u64) -> ZkItem {
        ZkItem {
            pos,
            noops: count,
            ..ZkItem::default()
        }
    }

    pub fn is_op(&self) -> bool {
        self.noops == 0
    }

    /// The first position after this item.
    pub fn end(&self) -> u64 {
        self.pos.saturating_add(self.noops.max(1))
    }
}

/// A proxy leader -> a server of `shard`: these positions, for group `group`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ZkDeliver {
    #[prost(uint32, tag = "1")]
    pub group: u32,
    #[prost(uint32, tag = "2")]
    pub shard: u32,
    #[prost(message, repeated, tag = "3")]
    pub items: Vec<ZkItem>,
}

/// A proxy leader -> a server of `shard`: answer again the results at these positions
/// (a retried op the group applied before), once applied.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ZkQuery {
    #[prost(uint32, tag = "1")]
    pub group: u32,
    #[prost(uint32, tag = "2")]
    pub shard: u32,
    #[prost(uint64, repeated, tag = "3")]
    pub positions: Vec<u64>,
}

/// One applied (and durable) position, and the ZooKeeper reply of its op (empty for
/// noops; empty with `forgotten` when the server no longer holds it).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ZkDone {
    #[prost(uint64, tag = "1")]
    pub pos: u64,
    #[prost(bytes = "bytes", tag = "2")]
    pub result: Bytes,
    #[prost(bool, tag = "3")]
    pub forgotten: bool,
}

/// A shard server -> a proxy: it applied these positions (delivered or asked for by
/// `group`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ZkApplied {
    #[prost(uint32, tag = "1")]
    pub group: u32,
    #[prost(uint32, tag = "2")]
    pub shard: u32,
    #[prost(uint32, tag = "3")]
    pub server: u32,
    #[prost(message, repeated, tag = "4")]
    pub done: Vec<ZkDone>,
}

/// A shard server -> the servers of the other shards an op touches: `shard`'s records
/// that the op at `pos` (of `shard`'s space) needs, as they stood just before it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ZkView {
    #[prost(uint32, tag = "1")]
    pub shard: u32,
    #[prost(uint64, tag = "2")]
    pub pos: u64,
    #[prost(bytes = "bytes", tag = "3")]
    pub view: Bytes,
}

/// A shard server -> a server of another shard: send again your view of your `pos`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ZkViewPull {
    #[prost(uint64, tag = "1")]
    pub pos: u64,
}

/// A shard server -> a peer of its shard: what you applied from `from` on.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ZkFetch {
    #[prost(uint64, tag = "1")]
    pub from: u64,
}

/// One applied position as a server keeps it: the item, every view it was applied with,
/// and its result (an encoded record, see `mason_zk_server::record`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ZkRecord {
    #[prost(message, optional, tag = "1")]
    pub item: Option<ZkItem>,
    #[prost(bytes = "bytes", repeated, tag = "2")]
    pub views: Vec<Bytes>,
    #[prost(bytes = "bytes", tag = "3")]
    pub result: Bytes,
}

/// The answer to [`ZkFetch`]: the records from `from` on, in order (as many as fit), or,
/// when the peer no longer holds `from`, its whole tree at `snapshot_next`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ZkFetchReply {
    #[prost(message, repeated, tag = "1")]
    pub records: Vec<ZkRecord>,
    #[prost(bytes = "bytes", tag = "2")]
    pub snapshot: Bytes,
    #[prost(uint64, tag = "3")]
    pub snapshot_next: u64,
    /// The peer's next position: where it is.
    #[prost(uint64, tag = "4")]
    pub next: u64,
}

/// A proxy leader -> a server of `shard`: answer this read (`--zk-reads local`) from your
/// tree once you have applied your space up to `min_pos`. `id` is the proxy's own.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ZkRead {
    #[prost(uint32, tag = "1")]
    pub group: u32,
    #[prost(uint32, tag = "2")]
    pub shard: u32,
    #[prost(uint64, tag = "3")]
    pub id: u64,
    #[prost(uint64, tag = "4")]
    pub session: u64,
    /// The ZooKeeper request (header and body in jute, no length prefix).
    #[prost(bytes = "bytes", tag = "5")]
    pub payload: Bytes,
    #[prost(uint64, tag = "6")]
    pub min_pos: u64,
}

/// A shard server's answer to a [`ZkRead`]: the ZooKeeper reply and the last position it
/// had applied; `behind` (and no reply) when it did not reach `min_pos` in time.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ZkReadReply {
    #[prost(uint32, tag = "1")]
    pub group: u32,
    #[prost(uint64, tag = "2")]
    pub id: u64,
    #[prost(bytes = "bytes", tag = "3")]
    pub result: Bytes,
    #[prost(uint64, tag = "4")]
    pub pos: u64,
    #[prost(bool, tag = "5")]
    pub behind: bool,
}

/// One watch trigger of a write a server applied, as a watch feed carries it: the write's
/// position in the feed's order (a shard's space for ZK-Mason, the zxid for RSMKeeper),
/// its zxid, the event (ZooKeeper's `EventType` code) and the znode. `readable` is false
/// when the znode's ACL denies world READ: such a trigger uses up the watches it hits
/// without telling their sessions (ZooKeeper 3.8's rule).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ZkTrigger {
    #[prost(uint64, tag = "1")]
    pub pos: u64,
    #[prost(int64, tag = "2")]
    pub zxid: i64,
    #[prost(int32, tag = "3")]
    pub event: i32,
    #[prost(string, tag = "4")]
    pub path: String,
    #[prost(bool, tag = "5")]
    pub readable: bool,
}

/// A watcher (a ZooKeeper front end) -> a shard server of `shard`, or a replica of the
/// RSMKeeper group (`shard` 0): send the triggers of what you applied after position
/// `after`. With `fresh`, the watcher holds no position yet: answer only where you are.
/// When there is nothing new, the server may hold the poll up to `wait_ms` (a long poll).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ZkWatchPoll {
    #[prost(uint32, tag = "1")]
    pub shard: u32,
    #[prost(uint64, tag = "2")]
    pub after: u64,
    #[prost(uint32, tag = "3")]
    pub wait_ms: u32,
    #[prost(bool, tag = "4")]
    pub fresh: bool,
}

/// The answer to a [`ZkWatchPoll`]: every trigger at a position in `(after, upto]`, in
/// order (`upto` is where the server had applied, or less when the answer was cut to a
/// size). `gap`: the server no longer holds (or never held) the triggers just after
/// `after`; then `upto` is where it is and there are no triggers.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ZkWatchFeed {
    #[prost(uint32, tag = "1")]
    pub shard: u32,
    #[prost(uint32, tag = "2")]
    pub server: u32,
    #[prost(uint64, tag = "3")]
    pub after: u64,
    #[prost(uint64, tag = "4")]
    pub upto: u64,
    #[prost(message, repeated, tag = "5")]
    pub triggers: Vec<ZkTrigger>,
    #[prost(bool, tag = "6")]
    pub gap: bool,
}
