//! The simulated world: virtual time, one event queue, and the real state machines — the
//! sequencers (a primary and its backups), every proxy replica (hosted by proxy machines
//! in triples, as Mason ran them), and every client — wired through the simulated
//! network. Everything is driven from one seed: the same seed gives the same run, event
//! for event. What faults do is in `faults`.

mod faults;

use crate::net::{Net, NetConfig, Node};
use crate::trace::Trace;
use bytes::Bytes;
use faults::seq_config;
pub use faults::Fault;
use mason_client::load::OpSpaces;
use mason_client::{ClientAction, ClientCore, CoreConfig, CoreTarget};
use mason_common::msg::{epoch_owner, Body, Frame, RaftMsg};
use mason_common::record::{AckChunk, BoundBatch};
use mason_proxy::{Action, Replica, ReplicaConfig};
use mason_sequencer::{SeqMutant, SeqNode, SeqOut};
use raft::prelude::{Entry, HardState, Snapshot};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

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
    /// Sequencers: 0 is the first primary, the others backups.
    pub sequencers: u32,
    pub seq_tick_us: u64,
    pub seq_mutant: Option<SeqMutant>,
}

enum Ev {
    Deliver { from: Node, to: Node, body: Body },
    Process(u32),
    Tick(u32, u64),
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
    }
}

fn token_node(t: u64) -> Node {
    match t >> 32 {
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
/// time it was written (a snapshot and the log rewritten after it are always synced).
#[derive(Default)]
struct Disk {
    snap: Option<Snapshot>,
    records: Vec<(u64, Option<HardState>, Vec<Entry>)>,
}

struct Machine {
    alive: bool,
    incarnation: u64,
    groups: Vec<u32>,
    replicas: Vec<Option<Replica>>,
    disks: Vec<Disk>,
    inbox: Vec<(Node, Body)>,
    scheduled: bool,
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
    pub acks: Vec<AckChunk>,
    /// Virtual time of every acknowledgement, in order.
    pub ack_times: Vec<u64>,
    pub events: u64,
    pub trace: Trace,
    leaders: Vec<Option<u32>>,
    pub leader_changes: u64,
    /// Batches applied out of id order by replicas that have since crashed.
    anomalies: u64,
}

impl World {
    pub fn new(cfg: WorldConfig, trace: Trace) -> World {
        let rng = StdRng::seed_from_u64(cfg.seed);
        let groups = cfg.triples * cfg.groups_per_triple;
        let seqs = (0..cfg.sequencers.max(1))
            .map(|i| SimSeq {
                node: SeqNode::new(seq_config(&cfg, i, i == 0)),
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
            });
        }
        let clients = (0..cfg.clients)
            .map(|c| {
                let group = c % groups;
                let t = group / cfg.groups_per_triple;
                SimClient {
                    core: ClientCore::new(CoreConfig {
                        client_id: u64::from(c) + 1,
                        target: CoreTarget::Group { group, replicas: 3 },
                        retry_timeout_us: cfg.retry_timeout_us,
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
            acks: (0..cfg.clients)
                .map(|c| AckChunk {
                    client_id: u64::from(c) + 1,
                    ..AckChunk::default()
                })
                .collect(),
            ack_times: Vec::new(),
            events: 0,
            trace,
            leaders: vec![None; groups as usize],
            leader_changes: 0,
            anomalies: 0,
            cfg,
        };
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
            Ev::Process(m) => self.process(m),
            Ev::Tick(m, inc) => self.tick(m, inc),
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
            }
        }
    }

    fn submit(&mut self, c: u32) {
        let mask = self.cfg.op_spaces.pick(self.cfg.spaces, &mut self.rng);
        let mut out = Vec::new();
        let cl = &mut self.clients[c as usize];
        cl.core.submit(mask, Bytes::new(), self.now, &mut out);
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
                ClientAction::Done { seq, result } => {
                    self.clients[c as usize].in_flight -= 1;
                    if let Ok(ms) = result {
                        self.acks[c as usize].push(seq, ms.mask, &ms.numbers);
                        self.ack_times.push(self.now);
                    }
                    if self.load && self.clients[c as usize].alive {
                        self.submit(c);
                    }
                }
            }
        }
    }

    fn process(&mut self, m: u32) {
        let mach = &mut self.machines[m as usize];
        mach.scheduled = false;
        if !mach.alive {
            return;
        }
        let inbox = std::mem::take(&mut mach.inbox);
        let mut touched = vec![false; mach.groups.len()];
        let per = self.cfg.groups_per_triple;
        for (from, body) in inbox {
            let group = match &body {
                Body::Raft(r) => r.group,
                Body::SeqReply(r) => r.group,
                Body::ClientOp(o) => o.group,
                Body::Heartbeat(h) => h.group,
                Body::Switch(s) => s.group,
                Body::Fill(f) => f.group,
                Body::Activate(a) => {
                    for (slot, t) in touched.iter_mut().enumerate() {
                        *t = true;
                        let mut out = Vec::new();
                        if let Some(rep) = self.machines[m as usize].replicas[slot].as_mut() {
                            rep.on_activate(a.clone(), &mut out);
                        }
                        self.route(m, slot, out);
                    }
                    continue;
                }
                _ => continue,
            };
            let slot = (group % per) as usize;
            if self.machines[m as usize].groups.get(slot) != Some(&group) {
                continue;
            }
            touched[slot] = true;
            let mut out = Vec::new();
            let Some(rep) = self.machines[m as usize].replicas[slot].as_mut() else {
                continue;
            };
            match body {
                Body::Raft(r) => rep.on_raft(&r.data),
                Body::SeqReply(r) => rep.on_seq_reply(r),
                Body::Heartbeat(h) => rep.on_heartbeat(h),
                Body::Switch(s) => rep.on_switch(s, &mut out),
                Body::Fill(f) => rep.on_fill(f, &mut out),
                Body::ClientOp(op) => {
                    if let Node::Client(c) = from {
                        rep.on_client_op(u64::from(c), op, &mut out);
                    }
                }
                _ => {}
            }
            self.route(m, slot, out);
        }
        for (slot, t) in touched.into_iter().enumerate() {
            if t {
                self.flush(m, slot);
            }
        }
    }

    fn flush(&mut self, m: u32, slot: usize) {
        let now = self.now;
        let mut out = Vec::new();
        if let Some(rep) = self.machines[m as usize].replicas[slot].as_mut() {
            rep.flush(now, &mut out);
        }
        self.route(m, slot, out);
    }

    fn tick(&mut self, m: u32, inc: u64) {
        let mach = &self.machines[m as usize];
        if !mach.alive || mach.incarnation != inc {
            return;
        }
        for slot in 0..mach.groups.len() {
            let now = self.now;
            let mut out = Vec::new();
            if let Some(rep) = self.machines[m as usize].replicas[slot].as_mut() {
                rep.tick(now, &mut out);
            }
            self.route(m, slot, out);
        }
        let jitter = if self.cfg.tick_jitter_us > 0 {
            self.rng.gen_range(0..self.cfg.tick_jitter_us)
        } else {
            0
        };
        let at = self.now + self.cfg.tick_us + jitter;
        self.schedule(at, Ev::Tick(m, inc));
    }

    fn route(&mut self, m: u32, slot: usize, out: Vec<Action>) {
        let group = self.machines[m as usize].groups[slot];
        let base = (m / 3) * 3;
        for a in out {
            match a {
                Action::Persist {
                    hard_state,
                    entries,
                } => {
                    let now = self.now;
                    let d = &mut self.machines[m as usize].disks[slot];
                    d.records.push((now, hard_state, entries));
                }
                Action::Snapshot {
                    snapshot,
                    hard_state,
                    entries,
                } => {
                    let d = &mut self.machines[m as usize].disks[slot];
                    d.snap = Some(snapshot);
                    d.records = vec![(0, Some(hard_state), entries)];
                }
                Action::SendRaft { to, data } => {
                    self.send(
                        Node::Proxy(m),
                        Node::Proxy(base + to),
                        Body::Raft(RaftMsg { group, data }),
                    );
                }
                Action::SendSeq(req) => {
                    let to = epoch_owner(req.epoch, self.seqs.len() as u32);
                    self.send(Node::Proxy(m), Node::Sequencer(to), Body::GetSeq(req))
                }
                Action::ToSeq { seq, body } => {
                    self.send(Node::Proxy(m), Node::Sequencer(seq), body)
                }
                Action::Reply { conn, reply } => self.send(
                    Node::Proxy(m),
                    Node::Client(conn as u32),
                    Body::ClientReply(reply),
                ),
                Action::Bound(b) => self.bound.entry((group, m % 3)).or_default().push(b),
            }
        }
        self.note_leader(m, slot);
    }

    fn note_leader(&mut self, m: u32, slot: usize) {
        let group = self.machines[m as usize].groups[slot];
        let leads = self.machines[m as usize].replicas[slot]
            .as_ref()
            .is_some_and(|r| r.is_serving());
        let g = group as usize;
        if leads && self.leaders[g] != Some(m) {
            self.leaders[g] = Some(m);
            self.leader_changes += 1;
            self.trace
                .note(self.now, format!("group {group}: proxy-{m} leads"));
        } else if !leads && self.leaders[g] == Some(m) {
            self.leaders[g] = None;
        }
    }

    /// The machine whose replica of `group` leads (serves) now.
    pub fn leader_of(&self, group: u32) -> Option<u32> {
        let per = self.cfg.groups_per_triple;
        let t = group / per;
        (t * 3..t * 3 + 3).find(|&m| {
            self.machines[m as usize].replicas[(group % per) as usize]
                .as_ref()
                .is_some_and(|r| r.is_leader())
        })
    }

    /// Live replicas that applied less than the most advanced live replica of their group:
    /// (group, machine, its last batch id, the group's).
    pub fn lagging(&self) -> Vec<(u32, u32, u64, u64)> {
        let per = self.cfg.groups_per_triple;
        let mut out = Vec::new();
        for g in 0..self.groups() {
            let t = g / per;
            let live: Vec<(u32, u64)> = (t * 3..t * 3 + 3)
                .filter_map(|m| {
                    self.machines[m as usize].replicas[(g % per) as usize]
                        .as_ref()
                        .map(|r| (m, r.last_batch_id()))
                })
                .collect();
            let top = live.iter().map(|x| x.1).max().unwrap_or(0);
            for (m, last) in live {
                if last < top {
                    out.push((g, m, last, top));
                }
            }
        }
        out
    }

    /// Batches applied out of batch-id order by any replica, live or crashed.
    pub fn anomalies(&self) -> u64 {
        let live: u64 = self
            .machines
            .iter()
            .flat_map(|m| m.replicas.iter().flatten())
            .map(Replica::anomalies)
            .sum();
        self.anomalies + live
    }

    /// A fresh draw from the world's RNG (for schedules made up front).
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }
}
