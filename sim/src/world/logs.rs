//! The shared log's servers in the simulated world (DESIGN.md section 8): the real
//! `LogNode` state machine over an in-memory store, one per server, shard `s`'s chain being
//! servers `s*R .. s*R+R` (head first). Proxy replicas write to the head of a position's
//! shard; the head forwards down the chain after its own sync; answers travel back up.
//! A sync completes after a disk delay drawn from the seed (one sync at a time per server;
//! what is asked for meanwhile is merged into the next: group commit). Every message on a
//! log connection is lost if either end crashed since it was sent.

use super::{Ev, World};
use crate::net::Node;
use mason_common::logmsg::LogWrite;
use mason_common::msg::Body;
use mason_corfu_server::node::{ConnId, LogNode, NodeAction, NodeConfig, Source};
use mason_corfu_server::storage::{run_disk_action, DiskDone, MemStore, Storage};
use rand::Rng;

/// The shape of the shared log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// Positions are striped over this many shards (`pos % shards`).
    pub shards: u32,
    /// Servers per shard's chain.
    pub replication: u32,
    /// A sync takes between these many microseconds (drawn per sync).
    pub sync_min_us: u64,
    pub sync_max_us: u64,
    /// A forward the rest of the chain has not acknowledged in this long is answered
    /// `Unavailable` (the writer retries).
    pub forward_timeout_us: u64,
    pub tick_us: u64,
}

impl LogConfig {
    /// `shards` chains of `replication` servers with fast disks.
    pub fn new(shards: u32, replication: u32) -> LogConfig {
        LogConfig {
            shards,
            replication,
            sync_min_us: 50,
            sync_max_us: 200,
            forward_timeout_us: 300_000,
            tick_us: 10_000,
        }
    }

    pub fn servers(&self) -> u32 {
        self.shards * self.replication.max(1)
    }

    /// The servers of `shard`'s chain, head first.
    pub fn chain(&self, shard: u32) -> std::ops::Range<u32> {
        let r = self.replication.max(1);
        shard * r..shard * r + r
    }
}

/// A connection to a log server, as its node knows it: who opened it (a proxy machine, or
/// the predecessor in the chain) and in which incarnation, so that an answer on it is lost
/// once that peer restarted, as on a broken connection.
fn conn_of(peer: Node, incarnation: u64) -> Option<ConnId> {
    let inc = (incarnation & 0x3fff_ffff) << 32;
    match peer {
        Node::Proxy(m) => Some(inc | u64::from(m)),
        Node::LogServer(p) => Some(1 << 63 | inc | u64::from(p)),
        _ => None,
    }
}

fn peer_of(conn: ConnId) -> (Node, u64) {
    let inc = (conn >> 32) & 0x3fff_ffff;
    if conn >> 63 == 1 {
        (Node::LogServer(conn as u32), inc)
    } else {
        (Node::Proxy(conn as u32), inc)
    }
}

pub(super) struct SimLog {
    node: LogNode,
    store: MemStore,
    alive: bool,
    incarnation: u64,
    disk_busy: bool,
    /// The highest generation asked for while a sync was running.
    sync_queued: Option<u64>,
}

impl World {
    fn log_node_config(&self, i: u32) -> Option<NodeConfig> {
        let l = self.cfg.log?;
        let r = l.replication.max(1);
        Some(NodeConfig {
            shard: i / r,
            shards: l.shards,
            chain_index: i % r,
            chain_len: r,
            max_payload: 4096,
            forward_timeout_us: l.forward_timeout_us,
            max_read_bytes: 1 << 20,
        })
    }

    pub(super) fn start_logs(&mut self) {
        let Some(l) = self.cfg.log else { return };
        for i in 0..l.servers() {
            let Some(cfg) = self.log_node_config(i) else {
                return;
            };
            self.logs.push(SimLog {
                node: LogNode::new(cfg, 0),
                store: MemStore::new(),
                alive: true,
                incarnation: 1,
                disk_busy: false,
                sync_queued: None,
            });
            let at = self.rng.gen_range(0..l.tick_us.max(1));
            self.schedule(at, Ev::LogTick(i, 1));
        }
    }

    /// The incarnation of a live proxy machine or log server (others have no connections
    /// that can break: `Some(0)`); `None` if it is down.
    pub(super) fn incarnation(&self, n: Node) -> Option<u64> {
        match n {
            Node::Proxy(m) => self
                .machines
                .get(m as usize)
                .filter(|x| x.alive)
                .map(|x| x.incarnation),
            Node::LogServer(i) => self
                .logs
                .get(i as usize)
                .filter(|x| x.alive)
                .map(|x| x.incarnation),
            Node::ZkServer(s, i) => self.zk_incarnation(s, i),
            _ => Some(0),
        }
    }

    /// Sends on a connection (to or between log servers or shard servers): nothing goes
    /// to (or from) a node that is down, or to an incarnation of `to` other than `to_inc`
    /// (when the connection was opened by it).
    pub(super) fn send_conn(&mut self, from: Node, to: Node, to_inc: Option<u64>, body: Body) {
        let (Some(a), Some(b)) = (self.incarnation(from), self.incarnation(to)) else {
            return;
        };
        if to_inc.is_some_and(|x| x != b & 0x3fff_ffff) {
            return;
        }
        for d in self.net.route(from, to, &mut self.rng) {
            let at = self.now + d;
            self.schedule(
                at,
                Ev::LogDeliver {
                    from,
                    to,
                    body: body.clone(),
                    incarnations: (a, b),
                },
            );
        }
    }

    /// A proxy replica's write goes to the head of its shard.
    pub(super) fn log_write_from(&mut self, m: u32, w: LogWrite) {
        let Some(l) = self.cfg.log else { return };
        if w.shard >= l.shards {
            self.trace.note(
                self.now,
                format!("proxy-{m} wrote to shard {}, which does not exist", w.shard),
            );
            return;
        }
        let head = l.chain(w.shard).start;
        let to = Node::LogServer(head);
        self.send_conn(Node::Proxy(m), to, None, Body::LogWrite(w));
    }

    /// A message arrives at log server `i`.
    pub(super) fn log_receive(&mut self, from: Node, i: u32, body: Body) {
        let Some(l) = self.cfg.log else { return };
        let r = l.replication.max(1);
        let Some(conn) = self.incarnation(from).and_then(|inc| conn_of(from, inc)) else {
            return;
        };
        let Some(s) = self.logs.get_mut(i as usize).filter(|s| s.alive) else {
            return;
        };
        let mut out = Vec::new();
        match (from, body) {
            (Node::Proxy(_), Body::LogWrite(w)) => {
                s.node.on_write(conn, Source::Proxy, w, &mut out)
            }
            (Node::LogServer(p), Body::LogWrite(w)) if p + 1 == i && !i.is_multiple_of(r) => {
                s.node.on_write(conn, Source::Upstream, w, &mut out)
            }
            (Node::LogServer(n), Body::LogWriteReply(rep))
                if n == i + 1 && !n.is_multiple_of(r) =>
            {
                s.node.on_forward_reply(rep, &mut out)
            }
            _ => return,
        }
        s.node.flush(&mut out);
        self.log_actions(i, out);
    }

    fn log_actions(&mut self, i: u32, mut out: Vec<NodeAction>) {
        let Some(l) = self.cfg.log else { return };
        let r = l.replication.max(1);
        let me = Node::LogServer(i);
        // Lookups and appends are carried out at once (what they report comes back before
        // anything else); a sync takes the disk's time.
        let mut todo = Vec::new();
        while !out.is_empty() {
            let mut next = Vec::new();
            for a in out {
                match a {
                    NodeAction::Lookup { .. } | NodeAction::Append { .. } => {
                        let Some(s) = self.logs.get_mut(i as usize) else {
                            continue;
                        };
                        match run_disk_action(&mut s.store, a) {
                            Ok(Some(DiskDone::Looked(t, found))) => {
                                s.node.on_looked_up(t, found, &mut next)
                            }
                            Ok(_) => {}
                            Err(e) => tracing::error!(error = %e, "simulated disk action failed"),
                        }
                    }
                    other => todo.push(other),
                }
            }
            out = next;
        }
        for a in todo {
            match a {
                NodeAction::Lookup { .. } | NodeAction::Append { .. } => {}
                NodeAction::Sync(gen) => {
                    let Some(s) = self.logs.get_mut(i as usize) else {
                        continue;
                    };
                    if s.disk_busy {
                        s.sync_queued = Some(s.sync_queued.map_or(gen, |q| q.max(gen)));
                    } else {
                        self.start_sync(i, gen);
                    }
                }
                NodeAction::Send { conn, body } => {
                    let (to, inc) = peer_of(conn);
                    self.send_conn(me, to, Some(inc), body);
                }
                NodeAction::Forward(w) => {
                    if !(i + 1).is_multiple_of(r) {
                        let to = Node::LogServer(i + 1);
                        self.send_conn(me, to, None, Body::LogWrite(w));
                    }
                }
            }
        }
    }

    fn start_sync(&mut self, i: u32, gen: u64) {
        let Some(l) = self.cfg.log else { return };
        let delay = self
            .rng
            .gen_range(l.sync_min_us..=l.sync_max_us.max(l.sync_min_us));
        let Some(s) = self.logs.get_mut(i as usize) else {
            return;
        };
        s.disk_busy = true;
        let inc = s.incarnation;
        let at = self.now + delay;
        self.schedule(at, Ev::LogSync(i, inc, gen));
    }

    /// Log server `i`, if it is up and still in incarnation `inc` (an event for an earlier
    /// incarnation, from before a crash, is dropped).
    fn live_log(&mut self, i: u32, inc: u64) -> Option<&mut SimLog> {
        self.logs
            .get_mut(i as usize)
            .filter(|s| s.alive && s.incarnation == inc)
    }

    /// The disk of log server `i` finished a sync.
    pub(super) fn log_synced(&mut self, i: u32, inc: u64, gen: u64) {
        let Some(s) = self.live_log(i, inc) else {
            return;
        };
        let mut out = Vec::new();
        match s.store.sync() {
            Ok(()) => s.node.on_synced(gen, &mut out),
            Err(e) => tracing::error!(error = %e, "simulated sync failed"),
        }
        s.disk_busy = false;
        let next = s.sync_queued.take();
        s.node.flush(&mut out);
        if let Some(g) = next {
            self.start_sync(i, g);
        }
        self.log_actions(i, out);
    }

    pub(super) fn log_tick(&mut self, i: u32, inc: u64) {
        let now = self.now;
        let Some(tick_us) = self.cfg.log.map(|l| l.tick_us) else {
            return;
        };
        let Some(s) = self.live_log(i, inc) else {
            return;
        };
        let mut out = Vec::new();
        s.node.tick(now, &mut out);
        s.node.flush(&mut out);
        self.log_actions(i, out);
        self.schedule(now + tick_us, Ev::LogTick(i, inc));
    }

    /// Log server `i` crashes: what it had not synced is lost, and so is every message on
    /// its connections.
    pub(super) fn crash_log(&mut self, i: u32) {
        let Some(cfg) = self.log_node_config(i) else {
            return;
        };
        let Some(s) = self.logs.get_mut(i as usize).filter(|s| s.alive) else {
            return;
        };
        s.store = s.store.crash();
        s.node = LogNode::new(cfg, s.store.next_position());
        s.alive = false;
        s.incarnation += 1;
        s.disk_busy = false;
        s.sync_queued = None;
        self.trace.note(self.now, format!("crash log-{i}"));
    }

    /// Log server `i` restarts over what its disk kept; its predecessor reconnects and
    /// sends again what the chain has not acknowledged.
    pub(super) fn restart_log(&mut self, i: u32) {
        let now = self.now;
        let Some(l) = self.cfg.log else { return };
        let Some(s) = self.logs.get_mut(i as usize).filter(|s| !s.alive) else {
            return;
        };
        s.alive = true;
        s.incarnation += 1;
        let inc = s.incarnation;
        // The node's clock starts now, not at 0 (or its first forwards would time out).
        let mut out = Vec::new();
        s.node.tick(now, &mut out);
        self.trace.note(now, format!("restart log-{i}"));
        self.log_actions(i, out);
        self.schedule(now + l.tick_us, Ev::LogTick(i, inc));
        if !i.is_multiple_of(l.replication.max(1)) {
            self.log_successor_connected(i - 1);
        }
    }

    /// The link from `i` to its successor is (re)made: `i` sends again what is unanswered.
    pub(super) fn log_successor_connected(&mut self, i: u32) {
        let mut out = Vec::new();
        if let Some(s) = self.logs.get_mut(i as usize).filter(|s| s.alive) {
            s.node.on_successor_connected(&mut out);
        }
        self.log_actions(i, out);
    }

    /// After a heal every chain link is made again.
    pub(super) fn relink_logs(&mut self) {
        let Some(l) = self.cfg.log else { return };
        let r = l.replication.max(1);
        for i in 0..self.logs.len() as u32 {
            if !(i + 1).is_multiple_of(r) && self.incarnation(Node::LogServer(i + 1)).is_some() {
                self.log_successor_connected(i);
            }
        }
    }

    pub(super) fn restart_logs(&mut self) {
        for i in 0..self.logs.len() as u32 {
            self.restart_log(i);
        }
    }

    /// The whole log: every server but `i` (to cut `i` from everyone).
    pub(super) fn everyone_but(&self, n: Node) -> Vec<Node> {
        let mut all: Vec<Node> = (0..self.seqs.len() as u32).map(Node::Sequencer).collect();
        all.extend((0..self.machines.len() as u32).map(Node::Proxy));
        all.extend((0..self.clients.len() as u32).map(Node::Client));
        all.extend((0..self.logs.len() as u32).map(Node::LogServer));
        all.extend(self.zk_nodes());
        all.retain(|&x| x != n);
        all
    }

    /// What log server `i` holds (its store, synced or not).
    pub fn log_store(&self, i: u32) -> Option<&MemStore> {
        self.logs.get(i as usize).map(|s| &s.store)
    }

    /// Whether every group's serving leader has written all its deliveries (always true
    /// without a log).
    pub fn log_settled(&self) -> bool {
        if self.cfg.log.is_none() {
            return true;
        }
        self.machines
            .iter()
            .filter(|m| m.alive)
            .flat_map(|m| m.replicas.iter().flatten())
            .filter(|r| r.is_serving())
            .all(|r| r.unwritten_deliveries() == 0)
    }

    /// Deliveries not yet written, summed over serving leaders (for reports).
    pub fn unwritten_deliveries(&self) -> usize {
        self.machines
            .iter()
            .filter(|m| m.alive)
            .flat_map(|m| m.replicas.iter().flatten())
            .filter(|r| r.is_serving())
            .map(|r| r.unwritten_deliveries())
            .sum()
    }

    /// Writes waiting at live log servers (for reports).
    pub fn log_pending(&self) -> usize {
        self.logs
            .iter()
            .filter(|s| s.alive)
            .map(|s| s.node.pending())
            .sum()
    }
}
