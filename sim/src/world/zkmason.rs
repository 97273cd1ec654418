//! ZK-Mason's shard servers in the simulated world (docs/design.md, "ZooKeeper"): the real
//! `ZkNode` state machine over an in-memory store, `servers` per shard. Proxy leaders
//! deliver to them and hear back (`ZkApplied`), and hand them local reads (`ZkRead`,
//! answered with `ZkReadReply`), on connections; servers send each other
//! views, pulls and fetches on links. Every message on a connection or link is lost if
//! either end restarted since it was sent. Appends, lookups and scans are carried out at
//! once; a sync takes a disk delay drawn from the seed (one at a time, what is asked
//! meanwhile merged into the next); a snapshot is durable once written. A crash keeps what
//! was synced (and the last snapshot) and restarts through `store::replay`; a lost server
//! restarts with nothing and catches up from its peers.

use super::{Ev, World};
use crate::net::Node;
use mason_common::msg::Body;
use mason_corfu_server::storage::{MemStore, Storage};
use mason_zk::DataTree;
use mason_zk_server::node::{NodeAction, NodeConfig, NodeMutant, ZkNode};
use mason_zk_server::store::{self, run_store_action, Done};
use rand::Rng;
use std::path::Path;

/// The shape of ZK-Mason's servers and their timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZkConfig {
    pub shards: u32,
    /// Servers per shard.
    pub servers: u32,
    /// A sync takes between these many microseconds (drawn per sync).
    pub sync_min_us: u64,
    pub sync_max_us: u64,
    pub tick_us: u64,
    /// The node's wait before asking again for a view or fetching on a hole.
    pub retry_us: u64,
    /// The node fetches from a peer when nothing was applied for this long.
    pub idle_fetch_us: u64,
    /// A snapshot of the tree every this many applied positions.
    pub snapshot_every: u64,
    /// A deliberate breakage of every shard server.
    pub mutant: Option<NodeMutant>,
}

impl ZkConfig {
    /// `shards` shards of `servers` servers with fast disks.
    pub fn new(shards: u32, servers: u32) -> ZkConfig {
        ZkConfig {
            shards,
            servers,
            sync_min_us: 50,
            sync_max_us: 300,
            tick_us: 10_000,
            retry_us: 50_000,
            idle_fetch_us: 250_000,
            snapshot_every: 150,
            mutant: None,
        }
    }
}

pub(super) struct SimZkServer {
    pub(super) node: ZkNode,
    pub(super) store: MemStore,
    /// The last snapshot written: the position it stands at, and the tree.
    pub(super) snap: Option<(u64, Vec<u8>)>,
    pub(super) alive: bool,
    incarnation: u64,
    disk_busy: bool,
    sync_queued: Option<u64>,
}

/// What a shard server's crash takes from its disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskLoss {
    /// What it had not synced.
    Unsynced,
    /// Every record (a damaged log), not its last snapshot.
    Records,
    /// Everything: it restarts empty.
    All,
}

/// A proxy machine's connection, as a shard server knows it: the machine and its
/// incarnation (an answer on it is lost once the machine restarted).
fn proxy_conn(m: u32, incarnation: u64) -> u64 {
    (incarnation & 0x3fff_ffff) << 32 | u64::from(m)
}

impl World {
    pub(super) fn zk_node_config(&self, shard: u32, index: u32) -> Option<NodeConfig> {
        let z = self.cfg.zk?;
        let mut c = NodeConfig::new(shard, z.shards, index, vec![z.servers; z.shards as usize]);
        c.retry_us = z.retry_us;
        c.idle_fetch_us = z.idle_fetch_us;
        c.snapshot_every = z.snapshot_every;
        c.mutant = z.mutant;
        Some(c)
    }

    /// The index of (shard, index) in `zks`.
    fn zk_k(&self, shard: u32, index: u32) -> Option<usize> {
        let z = self.cfg.zk?;
        (shard < z.shards && index < z.servers).then_some((shard * z.servers + index) as usize)
    }

    pub(super) fn zk_at(&self, k: usize) -> (u32, u32) {
        let n = self.cfg.zk.map_or(1, |z| z.servers.max(1));
        (k as u32 / n, k as u32 % n)
    }

    pub(super) fn zk_workload(&self) -> bool {
        self.cfg.keeper || self.cfg.zk.is_some()
    }

    pub(super) fn start_zk_servers(&mut self) {
        let Some(z) = self.cfg.zk else { return };
        for k in 0..(z.shards * z.servers) as usize {
            let (s, i) = self.zk_at(k);
            let Some(cfg) = self.zk_node_config(s, i) else {
                return;
            };
            self.zks.push(SimZkServer {
                node: ZkNode::new(cfg, DataTree::new_shard(s, z.shards), 0),
                store: MemStore::new(),
                snap: None,
                alive: true,
                incarnation: 1,
                disk_busy: false,
                sync_queued: None,
            });
            let at = self.rng.gen_range(0..z.tick_us.max(1));
            self.schedule(at, Ev::ZkTick(k as u32, 1));
        }
    }

    pub(super) fn zk_incarnation(&self, shard: u32, index: u32) -> Option<u64> {
        let k = self.zk_k(shard, index)?;
        self.zks.get(k).filter(|x| x.alive).map(|x| x.incarnation)
    }

    /// Every shard server's node.
    pub(super) fn zk_nodes(&self) -> Vec<Node> {
        (0..self.zks.len())
            .map(|k| {
                let (s, i) = self.zk_at(k);
                Node::ZkServer(s, i)
            })
            .collect()
    }

    /// A proxy replica's message to a shard server.
    pub(super) fn zk_from_proxy(&mut self, m: u32, shard: u32, server: u32, body: Body) {
        if self.zk_k(shard, server).is_none() {
            self.trace.note(
                self.now,
                format!("proxy-{m} sent to zk server {shard}/{server}, which does not exist"),
            );
            return;
        }
        self.send_conn(Node::Proxy(m), Node::ZkServer(shard, server), None, body);
    }

    /// A message arrives at shard server (shard, index).
    pub(super) fn zk_receive(&mut self, from: Node, shard: u32, index: u32, body: Body) {
        let now = self.now;
        let conn = match from {
            Node::Proxy(m) => match self.incarnation(from) {
                Some(inc) => proxy_conn(m, inc),
                None => return,
            },
            _ => 0,
        };
        let Some(k) = self.zk_k(shard, index) else {
            return;
        };
        let Some(srv) = self.zks.get_mut(k).filter(|s| s.alive) else {
            return;
        };
        let n = &mut srv.node;
        let mut out = Vec::new();
        n.tick(now, &mut out);
        // Who may say what, as the real server admits it.
        match (from, body) {
            (Node::Proxy(_), Body::ZkDeliver(d)) => n.on_deliver(conn, d, &mut out),
            (Node::Proxy(_), Body::ZkQuery(q)) => n.on_query(conn, q, &mut out),
            (Node::Proxy(_), Body::ZkRead(r)) => n.on_read(conn, r, &mut out),
            (Node::ZkServer(s, _), Body::ZkView(v)) if s != shard && v.shard == s => {
                n.on_view(v, &mut out)
            }
            (Node::ZkServer(s, i), Body::ZkViewPull(p)) if s != shard => {
                n.on_view_pull(s, i, p, &mut out)
            }
            (Node::ZkServer(s, i), Body::ZkFetch(f)) if s == shard => n.on_fetch(i, f, &mut out),
            (Node::ZkServer(s, _), Body::ZkFetchReply(r)) if s == shard => {
                n.on_fetch_reply(r, &mut out)
            }
            _ => return,
        }
        n.flush(&mut out);
        self.zk_actions(k, out);
    }

    /// Carries out a node's actions: the store's at once (what they report is fed back
    /// first), a sync on the disk's time, messages on the network.
    fn zk_actions(&mut self, k: usize, mut out: Vec<NodeAction>) {
        let (shard, index) = self.zk_at(k);
        let me = Node::ZkServer(shard, index);
        let mut todo = Vec::new();
        while !out.is_empty() {
            let mut next = Vec::new();
            for a in out {
                if let NodeAction::Append(records) = &a {
                    // Each position is applied and stored once (the store keeps the first).
                    for (pos, _) in records {
                        if self.zks.get(k).is_some_and(|s| s.store.contains(*pos)) {
                            let note = format!("{me} applied position {pos} a second time");
                            self.trace.note(self.now, note);
                            self.zk_twice += 1;
                        }
                    }
                }
                let Some(s) = self.zks.get_mut(k) else {
                    return;
                };
                match a {
                    NodeAction::Snapshot { next: at, data } => s.snap = Some((at, data)),
                    NodeAction::Append(_) | NodeAction::Lookup { .. } | NodeAction::Scan { .. } => {
                        match run_store_action(&mut s.store, Path::new(""), a) {
                            Ok(Done::Looked(t, found)) => s.node.on_looked(t, found, &mut next),
                            Ok(_) => {}
                            Err(e) => tracing::error!(error = %e, "simulated zk store failed"),
                        }
                    }
                    other => todo.push(other),
                }
            }
            out = next;
        }
        for a in todo {
            match a {
                NodeAction::Sync(gen) => {
                    let Some(s) = self.zks.get_mut(k) else {
                        continue;
                    };
                    if s.disk_busy {
                        s.sync_queued = Some(s.sync_queued.map_or(gen, |q| q.max(gen)));
                    } else {
                        self.zk_start_sync(k, gen);
                    }
                }
                NodeAction::Send { conn, body } => {
                    let (m, inc) = (conn as u32, (conn >> 32) & 0x3fff_ffff);
                    self.send_conn(me, Node::Proxy(m), Some(inc), body);
                }
                NodeAction::ToServer { shard, index, body }
                    if self.zk_k(shard, index).is_some() =>
                {
                    self.send_conn(me, Node::ZkServer(shard, index), None, body);
                }
                _ => {}
            }
        }
    }

    fn zk_start_sync(&mut self, k: usize, gen: u64) {
        let Some(z) = self.cfg.zk else { return };
        let delay = self
            .rng
            .gen_range(z.sync_min_us..=z.sync_max_us.max(z.sync_min_us));
        let Some(s) = self.zks.get_mut(k) else {
            return;
        };
        s.disk_busy = true;
        let inc = s.incarnation;
        let at = self.now + delay;
        self.schedule(at, Ev::ZkSync(k as u32, inc, gen));
    }

    fn live_zk(&mut self, k: u32, inc: u64) -> Option<&mut SimZkServer> {
        self.zks
            .get_mut(k as usize)
            .filter(|s| s.alive && s.incarnation == inc)
    }

    /// The disk of shard server `k` finished a sync.
    pub(super) fn zk_synced(&mut self, k: u32, inc: u64, gen: u64) {
        let Some(s) = self.live_zk(k, inc) else {
            return;
        };
        let mut out = Vec::new();
        match s.store.sync() {
            Ok(()) => s.node.on_synced(gen, &mut out),
            Err(e) => tracing::error!(error = %e, "simulated zk sync failed"),
        }
        s.disk_busy = false;
        let queued = s.sync_queued.take();
        s.node.flush(&mut out);
        if let Some(g) = queued {
            self.zk_start_sync(k as usize, g);
        }
        self.zk_actions(k as usize, out);
    }

    pub(super) fn zk_tick(&mut self, k: u32, inc: u64) {
        let now = self.now;
        let Some(tick_us) = self.cfg.zk.map(|z| z.tick_us) else {
            return;
        };
        let Some(s) = self.live_zk(k, inc) else {
            return;
        };
        let mut out = Vec::new();
        s.node.tick(now, &mut out);
        s.node.flush(&mut out);
        self.zk_actions(k as usize, out);
        self.schedule(now + tick_us, Ev::ZkTick(k, inc));
    }

    /// Shard server (shard, index) crashes: it keeps what it had synced and its last
    /// snapshot, less what `loss` says.
    pub(super) fn crash_zk(&mut self, shard: u32, index: u32, loss: DiskLoss) {
        let Some(k) = self.zk_k(shard, index) else {
            return;
        };
        let Some(s) = self.zks.get_mut(k).filter(|s| s.alive) else {
            return;
        };
        self.zk_conflicts += s.node.stats.conflicts;
        s.store = match loss {
            DiskLoss::Unsynced => s.store.crash(),
            DiskLoss::Records | DiskLoss::All => MemStore::new(),
        };
        if loss == DiskLoss::All {
            s.snap = None;
        }
        s.alive = false;
        s.incarnation += 1;
        s.disk_busy = false;
        s.sync_queued = None;
        let what = match loss {
            DiskLoss::Unsynced => "crashes",
            DiskLoss::Records => "crashes and loses its records (not its snapshot)",
            DiskLoss::All => "crashes and loses its disk",
        };
        self.trace
            .note(self.now, format!("zk-s{shard}-r{index} {what}"));
    }

    /// Shard server (shard, index) restarts from its snapshot and the records after it.
    pub(super) fn restart_zk(&mut self, shard: u32, index: u32) {
        let now = self.now;
        let (Some(z), Some(k), Some(cfg)) = (
            self.cfg.zk,
            self.zk_k(shard, index),
            self.zk_node_config(shard, index),
        ) else {
            return;
        };
        let Some(s) = self.zks.get_mut(k).filter(|s| !s.alive) else {
            return;
        };
        let name = format!("zk-s{shard}-r{index}");
        let mut failed = Vec::new();
        let (tree, next) = match &s.snap {
            Some((next, data)) => match DataTree::restore(data) {
                Ok(t) => (t, *next),
                Err(e) => {
                    failed.push(format!("{name}: its snapshot does not restore: {e}"));
                    (DataTree::new_shard(shard, z.shards), 0)
                }
            },
            None => (DataTree::new_shard(shard, z.shards), 0),
        };
        let mut node = ZkNode::new(cfg, tree, next);
        if let Err(e) = store::replay(&s.store, &mut node) {
            failed.push(format!("{name} does not recover from its disk: {e}"));
        }
        let mut out = Vec::new();
        // The node's clock starts now, not at 0.
        node.tick(now, &mut out);
        s.node = node;
        s.alive = true;
        s.incarnation += 1;
        let inc = s.incarnation;
        let from = s.node.next();
        self.zk_failures.extend(failed);
        self.trace
            .note(now, format!("restart {name} (at position {from})"));
        self.zk_actions(k, out);
        self.schedule(now + z.tick_us, Ev::ZkTick(k as u32, inc));
    }

    pub(super) fn restart_zk_servers(&mut self) {
        for k in 0..self.zks.len() {
            let (s, i) = self.zk_at(k);
            self.restart_zk(s, i);
        }
    }

    /// Proxy machine `m` crashed in incarnation `inc`: its connections close.
    pub(super) fn zk_proxy_closed(&mut self, m: u32, inc: u64) {
        for s in self.zks.iter_mut().filter(|s| s.alive) {
            s.node.on_closed(proxy_conn(m, inc));
        }
    }
}
