//! A ZK-Mason shard server's role as a state machine with no I/O (docs/design.md,
//! "ZooKeeper"): it takes the positions of its shard's space that proxies deliver, in
//! any order and any number of times, and applies them strictly in order (`InOrder`).
//!
//! An op that spans shards waits for the *views* of the other touched shards: when its
//! position comes up, this server sends its own view to every server of those shards,
//! and runs the op once it holds one view from each (asking again after `retry_us`).
//! Every applied position becomes a record (the item, the views it ran with, its reply)
//! that the runtime appends to the server's store; once the store is synced, the proxies
//! that delivered (or asked about) the position hear that it is applied, with the reply.
//!
//! A server that sees a hole (positions held past one that has not come) for a while,
//! that waits on a view for a while (a server that lags gets no views pushed: the other
//! shards sent them long ago), or that has heard nothing for a while, fetches from a
//! peer of its shard: the peer
//! sends its records from that position on, or its tree when it no longer holds them.
//! Records carry their views, so a fetched op runs without any exchange.

use bytes::Bytes;
use mason_common::msg::Body;
use mason_common::zkmsg::{ZkApplied, ZkDeliver, ZkDone, ZkItem, ZkQuery, ZkRecord};
use mason_zk::order::{InOrder, Offer, Slot};
use mason_zk::sharded::View;
use mason_zk::DataTree;
use std::collections::{BTreeMap, HashMap};

pub type ConnId = u64;

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub shard: u32,
    pub shards: u32,
    pub index: u32,
    /// Servers of each shard.
    pub servers: Vec<u32>,
    /// Positions held at most past the next one.
    pub max_ahead: u64,
    /// Bytes of delivered payloads held past the next position at most: past it, a
    /// delivery is refused as one too far ahead is (its proxy delivers it again). The
    /// next position is always taken: it is what lets the others go.
    pub max_held_bytes: usize,
    /// How long to wait for a view, or on a hole, before asking again.
    pub retry_us: u64,
    /// A fetch from a peer at least this often while nothing is applied.
    pub idle_fetch_us: u64,
    /// Bytes of records in one fetch answer.
    pub max_fetch_bytes: usize,
    /// Write a snapshot of the tree every this many applied positions (0: never).
    pub snapshot_every: u64,
    /// A deliberate breakage (the simulator proves its checks catch it); never set in a
    /// real server.
    pub mutant: Option<NodeMutant>,
}

/// Deliberate breakages of one step of a shard server (`mason sim --mutant`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeMutant {
    /// A delivered op that touches this shard alone is applied as soon as it arrives, not
    /// when its position comes up.
    ApplyOnArrival,
    /// An op that spans shards runs on this shard's records alone: no view exchange.
    NoViews,
    /// A local read is answered at once, whether or not this server has applied what
    /// the reading session has seen.
    ReadAnyState,
    /// A closeSession delivered ahead of its turn ends the session (and deletes its
    /// ephemerals here) at once: the close lands at another place in this server's order
    /// than in its peers'.
    CloseOnArrival,
}

impl NodeConfig {
    pub fn new(shard: u32, shards: u32, index: u32, servers: Vec<u32>) -> NodeConfig {
        NodeConfig {
            shard,
            shards,
            index,
            servers,
            max_ahead: 1 << 20,
            max_held_bytes: 256 << 20,
            retry_us: 200_000,
            idle_fetch_us: 1_000_000,
            max_fetch_bytes: 4 << 20,
            snapshot_every: 100_000,
            mutant: None,
        }
    }
}

/// What the node asks its runtime to do.
#[derive(Debug)]
pub enum NodeAction {
    /// A frame on an accepted connection (a proxy's).
    Send { conn: ConnId, body: Body },
    /// A frame to another shard server, over this server's link to it.
    ToServer { shard: u32, index: u32, body: Body },
    /// Store these records (encoded `ZkRecord`s), each at its first position.
    Append(Vec<(u64, Bytes)>),
    /// Make every append so far durable, then report `Synced(gen)`.
    Sync(u64),
    /// Read the records at these positions, then report them.
    Lookup { token: u64, positions: Vec<u64> },
    /// Read the records from `from` on, in order, up to `budget` bytes, then report them.
    Scan {
        token: u64,
        from: u64,
        budget: usize,
    },
    /// Persist the tree as of `next` (everything below it applied).
    Snapshot { next: u64, data: Vec<u8> },
}

/// Why the node asked the store for records.
enum Want {
    /// Answer these positions to a proxy again.
    Again { conn: ConnId, group: u32 },
    /// A server of shard `shard` asked for this server's view of a position.
    View { shard: u32, index: u32 },
    /// A peer fetches.
    Fetch { index: u32 },
}

/// The op at the next position, waiting for views.
struct Waiting {
    pos: u64,
    own: Bytes,
    /// (shard, position there) of each view still missing.
    need: Vec<(u32, u64)>,
    asked_at: u64,
    /// When it started waiting.
    since: u64,
}

#[derive(Default, Debug, Clone)]
pub struct Stats {
    pub applied_ops: u64,
    pub applied_noops: u64,
    pub views_sent: u64,
    pub view_pulls: u64,
    pub fetches: u64,
    pub fetched: u64,
    pub conflicts: u64,
    pub snapshots_installed: u64,
}

pub struct ZkNode {
    cfg: NodeConfig,
    tree: DataTree,
    intake: InOrder<ZkItem>,
    /// Payload bytes the intake holds.
    held_bytes: usize,
    waiting: Option<Waiting>,
    /// Views from other shards, by (shard, position there).
    views: BTreeMap<(u32, u64), Bytes>,
    view_bytes: usize,
    /// Per shard, the position past the last of its views an op here used.
    used: Vec<u64>,
    /// Who waits on each position not applied yet: (conn, group).
    waiters: BTreeMap<u64, Vec<(ConnId, u32)>>,
    /// Applied, appended, not yet synced: (pos, reply).
    unsynced: Vec<(u64, Bytes)>,
    syncing: BTreeMap<u64, Vec<(u64, Bytes)>>,
    next_gen: u64,
    wants: HashMap<u64, Want>,
    next_token: u64,
    now: u64,
    last_progress: u64,
    last_fetch: u64,
    fetch_peer: u32,
    since_snapshot: u64,
    /// Mutant `ApplyOnArrival`: the results of ops applied before their turn.
    early: BTreeMap<u64, Bytes>,
    /// Local reads waiting for this server to catch up.
    held_reads: Vec<reads::HeldRead>,
    /// The watch feed: the triggers of what was applied, and the polls held.
    feed: feed::Feed,
    pub stats: Stats,
}

/// Views held at most, and their bytes.
const MAX_VIEWS: usize = 65_536;
const MAX_VIEW_BYTES: usize = 64 << 20;

impl ZkNode {
    /// A server whose tree is `tree`, with everything below `next` applied.
    pub fn new(cfg: NodeConfig, tree: DataTree, next: u64) -> ZkNode {
        let shards = cfg.shards as usize;
        ZkNode {
            intake: InOrder::new(next, cfg.max_ahead),
            held_bytes: 0,
            tree,
            waiting: None,
            views: BTreeMap::new(),
            view_bytes: 0,
            used: vec![0; shards],
            waiters: BTreeMap::new(),
            unsynced: Vec::new(),
            syncing: BTreeMap::new(),
            next_gen: 1,
            wants: HashMap::new(),
            next_token: 1,
            now: 0,
            last_progress: 0,
            last_fetch: 0,
            fetch_peer: 0,
            since_snapshot: 0,
            early: BTreeMap::new(),
            held_reads: Vec::new(),
            feed: feed::Feed::new(next),
            stats: Stats::default(),
            cfg,
        }
    }

    pub fn tree(&self) -> &DataTree {
        &self.tree
    }

    /// What `mason status` shows of this server: its place and how far it has applied.
    pub fn status(&self) -> mason_common::statusmsg::ZkServerStatus {
        mason_common::statusmsg::ZkServerStatus {
            shard: self.cfg.shard,
            index: self.cfg.index,
            applied: self.next(),
            ops: self.stats.applied_ops,
            noops: self.stats.applied_noops,
        }
    }

    /// The first position not applied yet.
    pub fn next(&self) -> u64 {
        self.intake.next()
    }

    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    /// Recovery: applies a stored record (everything before it is applied).
    pub fn replay(&mut self, rec: &ZkRecord) -> bool {
        let Some(item) = &rec.item else {
            return false;
        };
        if item.pos != self.next() {
            return false;
        }
        self.apply_record(item, &rec.views);
        self.feed.log.advance(item.end() - 1);
        self.reset_intake(item.end());
        true
    }

    fn reset_intake(&mut self, next: u64) {
        self.intake = InOrder::new(next, self.cfg.max_ahead);
        self.held_bytes = 0;
    }

    /// A proxy delivered positions.
    pub fn on_deliver(&mut self, conn: ConnId, d: ZkDeliver, out: &mut Vec<NodeAction>) {
        if d.shard != self.cfg.shard {
            return;
        }
        let mut again = Vec::new();
        for item in d.items {
            let pos = item.pos;
            if pos < self.next() {
                again.push(pos);
                continue;
            }
            // A noop range with a payload, or longer than what may wait, is no delivery
            // of a correct proxy.
            if item.noops > self.cfg.max_ahead || (item.noops > 0 && !item.payload.is_empty()) {
                tracing::warn!(
                    shard = self.cfg.shard,
                    pos,
                    noops = item.noops,
                    "a malformed delivery; ignored"
                );
                continue;
            }
            // What waits is bounded in bytes too; the next position is always taken (it
            // is what lets the others go).
            let len = item.payload.len();
            if pos != self.next() && self.held_bytes + len > self.cfg.max_held_bytes {
                continue;
            }
            let early = (self.cfg.mutant == Some(NodeMutant::ApplyOnArrival)
                && item.is_op()
                && pos > self.next())
            .then(|| item.clone());
            if self.cfg.mutant == Some(NodeMutant::CloseOnArrival) && pos > self.next() {
                self.close_early(&item);
            }
            let slot = if item.is_op() {
                Slot::Op(item)
            } else {
                Slot::Noops(item.noops)
            };
            match self.intake.offer(pos, slot) {
                Offer::Taken => {
                    self.held_bytes += len;
                    if let Some(item) = early {
                        self.apply_early(item);
                    }
                    self.wait_on(pos, conn, d.group)
                }
                Offer::Duplicate => self.wait_on(pos, conn, d.group),
                Offer::TooFar => {}
                Offer::Conflict => {
                    self.stats.conflicts += 1;
                    tracing::error!(
                        shard = self.cfg.shard,
                        pos,
                        "two things delivered for one number"
                    );
                }
            }
        }
        self.lookup_again(conn, d.group, again, out);
        self.advance(out);
    }

    /// A proxy asks for the results at positions (a retried op).
    pub fn on_query(&mut self, conn: ConnId, q: ZkQuery, out: &mut Vec<NodeAction>) {
        if q.shard != self.cfg.shard {
            return;
        }
        let next = self.next();
        let mut again = Vec::new();
        for pos in q.positions {
            if pos < next {
                again.push(pos);
            } else if pos - next < self.cfg.max_ahead {
                self.wait_on(pos, conn, q.group);
            }
        }
        self.lookup_again(conn, q.group, again, out);
    }

    fn wait_on(&mut self, pos: u64, conn: ConnId, group: u32) {
        let w = self.waiters.entry(pos).or_default();
        if !w.contains(&(conn, group)) {
            w.push((conn, group));
        }
    }

    fn lookup_again(
        &mut self,
        conn: ConnId,
        group: u32,
        positions: Vec<u64>,
        out: &mut Vec<NodeAction>,
    ) {
        if positions.is_empty() {
            return;
        }
        let token = self.token(Want::Again { conn, group });
        out.push(NodeAction::Lookup { token, positions });
    }

    fn token(&mut self, w: Want) -> u64 {
        let t = self.next_token;
        self.next_token += 1;
        self.wants.insert(t, w);
        t
    }

    /// A connection closed: nobody waits there any more.
    pub fn on_closed(&mut self, conn: ConnId) {
        self.feed.polls.closed(conn);
        self.waiters.retain(|_, w| {
            w.retain(|(c, _)| *c != conn);
            !w.is_empty()
        });
    }

    /// The end of a burst of events: one sync covers every append since the last.
    pub fn flush(&mut self, out: &mut Vec<NodeAction>) {
        self.release_reads(out);
        self.release_polls(out);
        if self.unsynced.is_empty() {
            return;
        }
        let gen = self.next_gen;
        self.next_gen += 1;
        self.syncing.insert(gen, std::mem::take(&mut self.unsynced));
        out.push(NodeAction::Sync(gen));
    }

    /// Everything appended up to sync `gen` is durable: answer who waits on it.
    pub fn on_synced(&mut self, gen: u64, out: &mut Vec<NodeAction>) {
        let mut replies: BTreeMap<(ConnId, u32), Vec<ZkDone>> = BTreeMap::new();
        while let Some(e) = self.syncing.first_entry() {
            if *e.key() > gen {
                break;
            }
            for (pos, result) in e.remove() {
                for (conn, group) in self.waiters.remove(&pos).unwrap_or_default() {
                    replies.entry((conn, group)).or_default().push(ZkDone {
                        pos,
                        result: result.clone(),
                        forgotten: false,
                    });
                }
            }
        }
        for ((conn, group), done) in replies {
            out.push(self.applied_msg(conn, group, done));
        }
    }

    fn applied_msg(&self, conn: ConnId, group: u32, done: Vec<ZkDone>) -> NodeAction {
        NodeAction::Send {
            conn,
            body: Body::ZkApplied(ZkApplied {
                group,
                shard: self.cfg.shard,
                server: self.cfg.index,
                done,
            }),
        }
    }
}

/// Decodes views; an undecodable one (never from a correct peer) is left out.
pub(crate) fn decode_views(views: &[Bytes]) -> Vec<View> {
    views.iter().filter_map(|v| View::decode(v).ok()).collect()
}

#[path = "node_apply.rs"]
mod apply;
#[path = "node_feed.rs"]
mod feed;
#[path = "node_peers.rs"]
mod peers;
#[path = "node_reads.rs"]
mod reads;
pub use reads::{MAX_HELD_READS, READ_WAIT_US};
