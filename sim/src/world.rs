//! The simulated world: virtual time, one event queue, and the real state machines — the
//! sequencers (a primary and its backups), every proxy replica (hosted by proxy machines
//! in triples, as Mason ran them), and every client — wired through the simulated
//! network. Everything is driven from one seed: the same seed gives the same run, event
//! for event. The proxy machines are in `proxies`, the shared log's servers in `logs`, and
//! what faults do in `faults`.

mod faults;
mod logs;
mod proxies;
mod zk;
mod zkmason;
mod zkops;
mod zkstate;

use crate::net::{Net, NetConfig, Node};
use crate::trace::Trace;
use bytes::Bytes;
use faults::seq_config;
pub use faults::Fault;
pub use logs::LogConfig;
use logs::SimLog;
use mason_client::load::OpSpaces;
use mason_client::{ClientAction, ClientCore, CoreConfig, CoreTarget};
use mason_common::msg::{Body, Frame};
use mason_common::record::{AckChunk, BoundBatch};
use mason_proxy::{Replica, ReplicaConfig};
use mason_sequencer::{SeqMutant, SeqNode, SeqOut};
use raft::prelude::{Entry, HardState, Snapshot};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
pub use zkmason::{DiskLoss, ZkConfig};

#[derive(Clone, Debug)]
pub struct WorldConfig {
    pub seed: u64,
    pub spaces: u32,
    /// Proxy machines come in triples; each triple hosts `groups_per_triple` groups.
    pub triples: u32,
    pub groups_per_triple: u32,
    pub clients: u32,
    /// Ops in flight per client.
    pub concurrency: u32,
    pub op_spaces: OpSpaces,
    /// Clients start new ops until this time.
    pub load_until_us: u64,
    pub net: NetConfig,
    /// Template for every replica (group, index and election jitter are filled in).
    pub replica: ReplicaConfig,
    pub tick_us: u64,
    /// Each tick comes up to this much late.
    pub tick_jitter_us: u64,
    /// A proxy machine handles what arrived within this window in one go (its batching).
    pub process_delay_us: u64,
    pub retry_timeout_us: u64,
    /// Whether replicas fdatasync each write. Without it, a crash loses what was written
    /// in the last `unsynced_window_us`.
    pub fsync: bool,
    pub unsynced_window_us: u64,
    /// A replica's write (a Raft ready) becomes durable, and the replica hears so, up to
    /// this long after the one before it; a crash loses what was not yet (fsync on).
    pub persist_max_us: u64,
    /// Sequencers: 0 is the first primary, the others backups.
    pub sequencers: u32,
    pub seq_tick_us: u64,
    pub seq_mutant: Option<SeqMutant>,
    /// A shared log (CorfuMason): space 0's numbers are its positions, and every replica
    /// writes what its group bound there before answering.
    pub log: Option<LogConfig>,
    /// RSMKeeper: the groups hold a ZooKeeper tree and the clients' ops are ZooKeeper
    /// requests (see `world::zk`).
    pub keeper: bool,
    /// ZK-Mason: shard servers apply what the groups bind in the shard spaces (space 0
    /// is the zxid clock), and the clients' ops are ZooKeeper requests (`world::zk`).
    pub zk: Option<ZkConfig>,
    /// RSMKeeper and ZK-Mason (`--zk-reads local`): the percentage of the clients' reads
    /// of one znode that skip the log (`ClientCore::submit_read`; with it on, a third of
    /// the reads are exists rather than getData); 0: every op goes through the log.
    pub local_reads: u32,
    /// RSMKeeper and ZK-Mason: the last this many clients only read (getData, exists),
    /// every read without the log (a ZooKeeper workload's readers).
    pub readers: u32,
    /// ZK-Mason: the percentage of a writing client's ops, once its session holds its
    /// ephemeral, that are a closeSession instead (sent while its other ops are in flight,
    /// so that they are numbered just before it); its next op opens a new session. 0:
    /// sessions last the run.
    pub zk_closes: u32,
}

enum Ev {
    Deliver {
        from: Node,
        to: Node,
        body: Body,
    },
    /// A message on a connection to or between log servers: lost if either end crashed
    /// (restarted) since it was sent, as a broken connection loses what it carried.
    LogDeliver {
        from: Node,
        to: Node,
        body: Body,
        incarnations: (u64, u64),
    },
    /// Log server `i` (incarnation) finished a sync of this generation.
    LogSync(u32, u64, u64),
    LogTick(u32, u64),
    /// Shard server `k` (incarnation) finished a sync of this generation; its tick.
    ZkSync(u32, u64, u64),
    ZkTick(u32, u64),
    Process(u32),
    Tick(u32, u64),
    /// Proxy machine `m` (incarnation), slot: its writes up to this ready are durable.
    Persisted(u32, u64, usize, u64),
    ClientTick(u32),
    SeqTick(u32, u64),
    Fault(Fault),
    StopLoad,
}

struct Queued {
    at: u64,
    n: u64,
    ev: Ev,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.n) == (o.at, o.n)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.n).cmp(&(o.at, o.n))
    }
}

/// A sequencer routes answers by an opaque token: here, the sender's node.
fn node_token(n: Node) -> u64 {
    match n {
        Node::Proxy(m) => u64::from(m),
        Node::Client(c) => (1 << 32) | u64::from(c),
        Node::Sequencer(i) => (2 << 32) | u64::from(i),
        Node::LogServer(i) => (3 << 32) | u64::from(i),
        Node::ZkServer(s, i) => (4 << 32) | u64::from(s) << 16 | u64::from(i & 0xffff),
    }
}

fn token_node(t: u64) -> Node {
    match t >> 32 {
        4 => Node::ZkServer((t >> 16) as u32 & 0xffff, t as u32 & 0xffff),
        3 => Node::LogServer(t as u32),
        2 => Node::Sequencer(t as u32),
        1 => Node::Client(t as u32),
        _ => Node::Proxy(t as u32),
    }
}

struct SimSeq {
    node: SeqNode,
    alive: bool,
    incarnation: u64,
}

/// What a replica wrote: its latest snapshot, and one record per `Persist` action with the
/// time it is durable from (a snapshot and the log rewritten after it are always synced),
/// which is also when the replica hears so.
#[derive(Default)]
struct Disk {
    snap: Option<Snapshot>,
    records: Vec<(u64, Option<HardState>, Vec<Entry>)>,
    /// When the latest write is durable (writes become durable in order).
    synced_at: u64,
}

struct Machine {
    alive: bool,
    incarnation: u64,
    groups: Vec<u32>,
    replicas: Vec<Option<Replica>>,
    disks: Vec<Disk>,
    inbox: Vec<(Node, Body)>,
    scheduled: bool,
    /// Its ticks come this many times further apart (a slow clock; 1: none).
    clock_factor: u64,
}

struct SimClient {
    core: ClientCore,
    machines: Vec<u32>,
    in_flight: u32,
    alive: bool,
}

pub struct World {
    pub cfg: WorldConfig,
    pub now: u64,
    rng: StdRng,
    queue: BinaryHeap<Reverse<Queued>>,
    n: u64,
    pub net: Net,
    seqs: Vec<SimSeq>,
    machines: Vec<Machine>,
    clients: Vec<SimClient>,
    load: bool,
    /// What each (group, replica index) applied, in order, across restarts.
    pub bound: BTreeMap<(u32, u32), Vec<BoundBatch>>,
    /// What each client session was told, by session.
    acks: BTreeMap<u64, AckChunk>,
    /// Virtual time of every acknowledgement, in order.
    pub ack_times: Vec<u64>,
    pub events: u64,
    pub trace: Trace,
    leaders: Vec<Option<u32>>,
    pub leader_changes: u64,
    /// Batches applied out of id order by replicas that have since crashed.
    anomalies: u64,
    /// The shared log's servers (none without a log).
    logs: Vec<SimLog>,
    /// The ZooKeeper side of the clients (RSMKeeper and ZK-Mason; none otherwise).
    zk: Option<zk::SimZk>,
    /// ZK-Mason's shard servers, shard by shard (none otherwise).
    zks: Vec<zkmason::SimZkServer>,
    /// Shard servers' anomalies: conflicts seen by servers since restarted, positions
    /// applied twice, failed recoveries.
    zk_conflicts: u64,
    zk_twice: u64,
    zk_failures: Vec<String>,
}

impl World {
    pub fn new(mut cfg: WorldConfig, trace: Trace) -> World {
        if let Some(l) = &cfg.log {
            cfg.replica.log_shards = l.shards;
        }
        if let Some(z) = &cfg.zk {
            cfg.replica.zk_servers = vec![z.servers; z.shards as usize];
            cfg.spaces = z.shards + 1;
            cfg.replica.spaces = z.shards + 1;
        }
        let rng = StdRng::seed_from_u64(cfg.seed);
        let groups = cfg.triples * cfg.groups_per_triple;
        let seqs = (0..cfg.sequencers.max(1))
            .map(|i| SimSeq {
                node: SeqNode::new(seq_config(&cfg, i, i == 0, 0)),
                alive: true,
                incarnation: 0,
            })
            .collect();
        let mut machines = Vec::new();
        for m in 0..cfg.triples * 3 {
            let t = m / 3;
            let hosted: Vec<u32> = (0..cfg.groups_per_triple)
                .map(|i| t * cfg.groups_per_triple + i)
                .collect();
            machines.push(Machine {
                alive: false,
                incarnation: 0,
                replicas: hosted.iter().map(|_| None).collect(),
                disks: hosted.iter().map(|_| Disk::default()).collect(),
                groups: hosted,
                inbox: Vec::new(),
                scheduled: false,
                clock_factor: 1,
            });
        }
        let clients = (0..cfg.clients)
            .map(|c| {
                let group = c % groups;
                let t = group / cfg.groups_per_triple;
                SimClient {
                    core: ClientCore::new(CoreConfig {
                        client_id: u64::from(c) + 1,
                        target: CoreTarget::Group {
                            group,
                            replicas: 3,
                            first: 0,
                        },
                        retry_timeout_us: cfg.retry_timeout_us,
                        window: cfg.concurrency,
                    }),
                    machines: (0..3).map(|r| t * 3 + r).collect(),
                    in_flight: 0,
                    alive: true,
                }
            })
            .collect();
        let net = Net::new(cfg.net.clone());
        let mut w = World {
            now: 0,
            rng,
            queue: BinaryHeap::new(),
            n: 0,
            net,
            seqs,
            machines,
            clients,
            load: true,
            bound: BTreeMap::new(),
            acks: BTreeMap::new(),
            ack_times: Vec::new(),
            events: 0,
            trace,
            leaders: vec![None; groups as usize],
            leader_changes: 0,
            anomalies: 0,
            logs: Vec::new(),
            zk: None,
            zks: Vec::new(),
            zk_conflicts: 0,
            zk_twice: 0,
            zk_failures: Vec::new(),
            cfg,
        };
        w.start_logs();
        w.start_zk_servers();
        for m in 0..w.machines.len() as u32 {
            w.start_machine(m);
        }
        for i in 0..w.seqs.len() as u32 {
            let at = w.rng.gen_range(0..w.cfg.seq_tick_us.max(1));
            w.schedule(at, Ev::SeqTick(i, 0));
        }
        for c in 0..w.cfg.clients {
            for _ in 0..w.cfg.concurrency {
                w.submit(c);
            }
            let at = w.cfg.retry_timeout_us / 4;
            w.schedule(at, Ev::ClientTick(c));
        }
        let stop = w.cfg.load_until_us;
        w.schedule(stop, Ev::StopLoad);
        w
    }

    pub fn groups(&self) -> u32 {
        self.cfg.triples * self.cfg.groups_per_triple
    }

    fn schedule(&mut self, at: u64, ev: Ev) {
        self.n += 1;
        self.queue.push(Reverse(Queued { at, n: self.n, ev }));
    }

    pub fn schedule_fault(&mut self, at: u64, f: Fault) {
        self.schedule(at, Ev::Fault(f));
    }

    /// Ops of live clients not yet answered.
    pub fn outstanding(&self) -> usize {
        self.clients
            .iter()
            .filter(|c| c.alive)
            .map(|c| c.core.outstanding())
            .sum()
    }

    /// What the live clients with ops in flight wait for (for a Live report).
    pub fn stuck(&self) -> Vec<String> {
        self.clients
            .iter()
            .filter(|c| c.alive && c.core.outstanding() > 0)
            .map(|c| c.core.describe())
            .collect()
    }

    /// Runs events until `until` (virtual us) or the queue empties.
    pub fn run_until(&mut self, until: u64) {
        while let Some(Reverse(q)) = self.queue.peek() {
            if q.at > until {
                break;
            }
            let Some(Reverse(q)) = self.queue.pop() else {
                break;
            };
            self.now = q.at;
            self.events += 1;
            self.handle(q.ev);
        }
        self.now = self.now.max(until);
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver { from, to, body } => self.deliver(from, to, body),
            Ev::LogDeliver {
                from,
                to,
                body,
                incarnations,
            } => {
                if self.incarnation(from) == Some(incarnations.0)
                    && self.incarnation(to) == Some(incarnations.1)
                {
                    self.deliver(from, to, body);
                }
            }
            Ev::LogSync(i, inc, gen) => self.log_synced(i, inc, gen),
            Ev::LogTick(i, inc) => self.log_tick(i, inc),
            Ev::ZkSync(k, inc, gen) => self.zk_synced(k, inc, gen),
            Ev::ZkTick(k, inc) => self.zk_tick(k, inc),
            Ev::Process(m) => self.process(m),
            Ev::Tick(m, inc) => self.tick(m, inc),
            Ev::Persisted(m, inc, slot, number) => self.persisted(m, inc, slot, number),
            Ev::ClientTick(c) => {
                if !self.clients[c as usize].alive {
                    return;
                }
                let mut out = Vec::new();
                self.clients[c as usize].core.tick(self.now, &mut out);
                self.client_actions(c, out);
                let at = self.now + self.cfg.retry_timeout_us / 4;
                self.schedule(at, Ev::ClientTick(c));
            }
            Ev::SeqTick(i, inc) => {
                let s = &mut self.seqs[i as usize];
                if !s.alive || s.incarnation != inc {
                    return;
                }
                let mut out = Vec::new();
                s.node.tick(self.now, &mut out);
                self.seq_out(i, out);
                let at = self.now + self.cfg.seq_tick_us;
                self.schedule(at, Ev::SeqTick(i, inc));
            }
            Ev::Fault(f) => self.fault(f),
            Ev::StopLoad => {
                self.load = false;
                self.trace.note(self.now, "load stops".to_string());
            }
        }
    }

    fn send(&mut self, from: Node, to: Node, body: Body) {
        let delays = self.net.route(from, to, &mut self.rng);
        for d in delays {
            let at = self.now + d;
            self.schedule(
                at,
                Ev::Deliver {
                    from,
                    to,
                    body: body.clone(),
                },
            );
        }
    }

    fn deliver(&mut self, from: Node, to: Node, body: Body) {
        self.trace.message(self.now, from, to, &body);
        match to {
            Node::Sequencer(i) => {
                let now = self.now;
                let Some(s) = self.seqs.get_mut(i as usize).filter(|s| s.alive) else {
                    return;
                };
                let mut out = Vec::new();
                if s.node
                    .on_frame(node_token(from), body, now, &mut out)
                    .is_ok()
                {
                    self.seq_out(i, out);
                }
            }
            Node::Proxy(m) => {
                let delay = self.cfg.process_delay_us;
                let mach = &mut self.machines[m as usize];
                if !mach.alive {
                    return;
                }
                mach.inbox.push((from, body));
                if !mach.scheduled {
                    mach.scheduled = true;
                    let at = self.now + delay;
                    self.schedule(at, Ev::Process(m));
                }
            }
            Node::Client(c) => {
                if !self.clients[c as usize].alive {
                    return;
                }
                let idx = match from {
                    Node::Proxy(m) => (m % 3) as usize,
                    _ => 0,
                };
                let mut out = Vec::new();
                self.clients[c as usize]
                    .core
                    .on_frame(idx, Frame::new(body), self.now, &mut out);
                self.client_actions(c, out);
            }
            Node::LogServer(i) => self.log_receive(from, i, body),
            Node::ZkServer(s, i) => self.zk_receive(from, s, i, body),
        }
    }

    fn seq_out(&mut self, i: u32, out: Vec<SeqOut>) {
        let per = self.cfg.groups_per_triple;
        let from = Node::Sequencer(i);
        for o in out {
            match o {
                SeqOut::Reply(origin, body) => self.send(from, token_node(origin), body),
                SeqOut::Group(g, body) => {
                    let t = g / per;
                    for m in t * 3..t * 3 + 3 {
                        self.send(from, Node::Proxy(m), body.clone());
                    }
                }
                SeqOut::Broadcast(body) => {
                    for m in 0..self.machines.len() as u32 {
                        self.send(from, Node::Proxy(m), body.clone());
                    }
                }
                // The simulated clients go through proxy groups: no direct grants.
                SeqOut::Record(_) => {}
            }
        }
    }

    fn submit(&mut self, c: u32) {
        if self.zk_workload() {
            return self.zk_submit(c);
        }
        let mask = self.cfg.op_spaces.pick(self.cfg.spaces, &mut self.rng);
        let mut out = Vec::new();
        let with_log = self.cfg.log.is_some();
        let cl = &mut self.clients[c as usize];
        // With a log, each entry says whose op it is, so the checker can find it there.
        let payload = if with_log {
            Bytes::from_static(&[0u8; 24])
        } else {
            Bytes::new()
        };
        cl.core.submit(mask, payload, with_log, self.now, &mut out);
        cl.in_flight += 1;
        self.client_actions(c, out);
    }

    fn client_actions(&mut self, c: u32, out: Vec<ClientAction>) {
        for a in out {
            match a {
                ClientAction::Send { to, frame } => {
                    let Some(body) = frame.body else { continue };
                    let m = self.clients[c as usize].machines[to % 3];
                    self.send(Node::Client(c), Node::Proxy(m), body);
                }
                ClientAction::Done { id, result } => {
                    self.clients[c as usize].in_flight -= 1;
                    // A read answered without the log (seq 0) took no numbers of the
                    // group's: it is no sequencing ack, and Live is told by the ops
                    // through the log.
                    let local = self.zk_is_local(c, id);
                    if self.zk_workload() {
                        self.zk_done(c, id, &result);
                    }
                    if self.cfg.keeper {
                        if result.is_ok() && !local {
                            self.ack_times.push(self.now);
                        }
                    } else if let Some(ms) = result.ok().filter(|_| !local) {
                        let chunk = self.acks.entry(ms.session).or_insert_with(|| AckChunk {
                            session: ms.session,
                            ..AckChunk::default()
                        });
                        chunk.push(ms.seq, ms.mask, &ms.numbers);
                        self.ack_times.push(self.now);
                    }
                    if self.load && self.clients[c as usize].alive {
                        self.submit(c);
                    }
                }
            }
        }
    }

    /// What every client session was told.
    pub fn acks(&self) -> impl Iterator<Item = &AckChunk> {
        self.acks.values()
    }

    /// A fresh draw from the world's RNG (for schedules made up front).
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }
}
