//! The group tests' harness: three [`Replica`]s of one proxy group and real sequencer
//! nodes (a primary and a backup, [`SeqNode`]s: the very state machines a sequencer
//! process runs), wired by a deterministic in-memory network (no threads, no sockets;
//! time advanced by hand), with checks on the way (dense batch ids, at most K ids in
//! flight). Clients 1..=8 open their sessions when the group starts: client `c`'s session
//! is [`session`]`(c)`.

#![allow(dead_code)]

use bytes::Bytes;
use mason_common::msg::{
    epoch_owner, Body, ClientOp, ClientReply, GetSeq, LocalReadReply, Register, ReplyStatus,
    SeqReply,
};
use mason_common::record::BoundBatch;
use mason_common::types::SpaceMask;
use mason_common::verify::{agree, op_numbers, Checker, Report};
use mason_proxy::store::Store;
use mason_proxy::{Action, ConnId, Replica, ReplicaConfig};
use mason_sequencer::{SeqNode, SeqNodeConfig, SeqOut};
use std::collections::VecDeque;

pub const TICK: u64 = 10_000;
pub const N: usize = 3;
/// Clients whose sessions are open from the start.
pub const CLIENTS: u64 = 8;
/// The sequencers' routing token for what the harness itself asks.
pub const HARNESS: u64 = 99;

/// The session client `c` (1..=CLIENTS) opened when the group started (sessions of group
/// 0 are numbered 1, 2, 3, ... in the order they open).
pub fn session(c: u64) -> u64 {
    1 << 40 | c
}

/// A sequencer's message and who it goes to.
#[derive(Clone, Debug)]
pub enum FromSeq {
    Reply(usize, SeqReply),
    Other(usize, Body),
}

/// The group, its sequencers and the network between them.
pub struct Net {
    pub reps: Vec<Replica>,
    pub k: u64,
    pub seqs: Vec<SeqNode>,
    /// Sequencers that are up (a down one hears and says nothing).
    pub seq_up: Vec<bool>,
    pub now: u64,
    pub raft: VecDeque<(usize, usize, Bytes)>,
    /// Raft messages each replica sent (those the network carried).
    pub raft_sent: [u64; N],
    pub from_seq: VecDeque<FromSeq>,
    /// Sequencer answers held back (the sequencer has already handled the request).
    pub held: Vec<(usize, SeqReply)>,
    pub hold_seq: bool,
    /// Everything to or from the replica is dropped.
    pub cut: [bool; N],
    /// The replica's outgoing Raft messages are dropped.
    pub mute: [bool; N],
    /// Raft messages to the replica are dropped.
    pub deaf: [bool; N],
    /// The replica's writes are not durable until [`Net::release_persist`]: the last
    /// ready it wrote meanwhile.
    pub hold_persist: [bool; N],
    pub held_persist: [Option<u64>; N],
    /// The replica catches up from a snapshot: its next batch id need not follow its last.
    pub from_snapshot: [bool; N],
    /// Per replica, what it applied (its `Bound` actions), in order.
    pub bound: Vec<Vec<BoundBatch>>,
    /// Per replica, the index of each snapshot it took, in order.
    pub snapshots: Vec<Vec<u64>>,
    /// Every client reply: (replica, conn, reply).
    pub replies: Vec<(usize, ConnId, ClientReply)>,
    /// Answers to local reads: (replica, connection, answer).
    pub read_replies: Vec<(usize, ConnId, LocalReadReply)>,
    /// Every request a sequencer answered: (replica, request, answer).
    pub asks: Vec<(usize, GetSeq, SeqReply)>,
    /// Every takeover message a replica sent a sequencer: (replica, sequencer, message).
    pub to_seq: Vec<(usize, u32, Body)>,
    /// ZK-Mason: every frame a replica sent a shard server: (replica, shard, server, frame).
    pub to_zk: Vec<(usize, u32, u32, Body)>,
}

pub fn op(client: u64, seq: u64, mask: u64) -> ClientOp {
    ClientOp {
        session: session(client),
        client_seq: seq,
        group: 0,
        space_mask: mask,
        payload: Bytes::new(),
        acked_below: 0,
    }
}

impl Net {
    pub fn new(tpl: ReplicaConfig) -> Net {
        Net::with_groups(tpl, 1)
    }

    /// A net whose sequencers serve `groups` groups (the others than 0 exist only as
    /// takers of numbers, by [`Net::seq_answer`]).
    pub fn with_groups(tpl: ReplicaConfig, groups: u32) -> Net {
        let reps = (0..N as u32)
            .map(|i| {
                let cfg = ReplicaConfig {
                    group: 0,
                    replica: i,
                    replicas: N as u32,
                    sequencers: 2,
                    campaign_on_start: i == 0,
                    ..tpl.clone()
                };
                Replica::new(cfg, Store::new(vec![1, 2, 3])).expect("replica")
            })
            .collect();
        let seqs = (0..2)
            .map(|id| {
                SeqNode::new(SeqNodeConfig {
                    id,
                    sequencers: 2,
                    groups,
                    spaces: tpl.spaces,
                    primary: id == 0,
                    ballot: 0xb0 + u64::from(id),
                    ..SeqNodeConfig::default()
                })
            })
            .collect();
        let mut net = Net {
            reps,
            k: tpl.max_outstanding as u64,
            seqs,
            seq_up: vec![true; 2],
            now: 0,
            raft: VecDeque::new(),
            raft_sent: [0; N],
            from_seq: VecDeque::new(),
            held: Vec::new(),
            hold_seq: false,
            cut: [false; N],
            mute: [false; N],
            deaf: [false; N],
            hold_persist: [false; N],
            held_persist: [None; N],
            from_snapshot: [false; N],
            bound: vec![Vec::new(); N],
            snapshots: vec![Vec::new(); N],
            replies: Vec::new(),
            read_replies: Vec::new(),
            asks: Vec::new(),
            to_seq: Vec::new(),
            to_zk: Vec::new(),
        };
        for r in 0..N {
            net.on(r, |rep, now, out| rep.flush(now, out));
        }
        net.settle();
        net
    }

    /// Runs one event on replica `r`, flushes it, and routes what it did.
    pub fn on(&mut self, r: usize, f: impl FnOnce(&mut Replica, u64, &mut Vec<Action>)) {
        let mut out = Vec::new();
        f(&mut self.reps[r], self.now, &mut out);
        self.reps[r].flush(self.now, &mut out);
        self.route(r, out);
    }

    pub fn last_bound(&self, r: usize) -> u64 {
        self.bound[r]
            .iter()
            .filter(|b| b.batch_id > 0)
            .map(|b| b.batch_id)
            .next_back()
            .unwrap_or(0)
    }

    /// The sequencer that serves now, if one does.
    pub fn active_seq(&self) -> Option<usize> {
        (0..self.seqs.len()).find(|&i| self.seq_up[i] && self.seqs[i].active_epoch().is_some())
    }

    /// The serving sequencer's next number per space.
    pub fn counters(&self) -> Vec<u64> {
        self.active_seq()
            .and_then(|i| self.seqs[i].sequencer())
            .map(|s| s.counters().to_vec())
            .unwrap_or_default()
    }

    /// Hands a frame from replica `r` to sequencer `i` and routes its answers.
    fn tell_sequencer(&mut self, r: usize, i: usize, body: Body) {
        if !self.seq_up.get(i).copied().unwrap_or(false) {
            return;
        }
        let req = match &body {
            Body::GetSeq(g) => Some(g.clone()),
            _ => None,
        };
        let mut out = Vec::new();
        let now = self.now;
        if self.seqs[i]
            .on_frame(r as u64, body, now, &mut out)
            .is_err()
        {
            return;
        }
        self.route_sequencer(out, req.map(|q| (r, q)));
    }

    fn route_sequencer(&mut self, out: Vec<SeqOut>, asked: Option<(usize, GetSeq)>) {
        for o in out {
            match o {
                SeqOut::Reply(origin, Body::SeqReply(rep)) => {
                    let to = origin as usize;
                    if let Some((r, q)) = &asked {
                        if rep.batch_id == q.batch_id && to == *r {
                            self.asks.push((*r, q.clone(), *rep.clone()));
                        }
                    }
                    if to >= N {
                        continue;
                    }
                    if self.hold_seq {
                        self.held.push((to, *rep));
                    } else {
                        self.from_seq.push_back(FromSeq::Reply(to, *rep));
                    }
                }
                SeqOut::Reply(origin, body) => {
                    if (origin as usize) < N {
                        self.from_seq
                            .push_back(FromSeq::Other(origin as usize, body));
                    }
                }
                SeqOut::Group(_, body) | SeqOut::Broadcast(body) => {
                    for r in 0..N {
                        self.from_seq.push_back(FromSeq::Other(r, body.clone()));
                    }
                }
                SeqOut::Record(_) => {}
            }
        }
    }

    /// Routes actions in order, checking on the way: batch ids applied densely, and every
    /// sequencer request within K ids past the last batch applied before it.
    /// (A `Persist` is durable at once here: the replica hears so after its other actions.)
    pub fn route(&mut self, r: usize, out: Vec<Action>) {
        let mut persisted = None;
        for a in out {
            match a {
                Action::Persist { number, .. } => persisted = Some(number),
                Action::Snapshot { snapshot, .. } => {
                    self.snapshots[r].push(snapshot.get_metadata().index)
                }
                Action::LogWrite(_) => {}
                Action::ToZk {
                    shard,
                    server,
                    body,
                } => {
                    if !self.cut[r] {
                        self.to_zk.push((r, shard, server, body));
                    }
                }
                Action::ToSeq { seq, body } => {
                    if self.cut[r] {
                        continue;
                    }
                    self.to_seq.push((r, seq, body.clone()));
                    self.tell_sequencer(r, seq as usize, body);
                }
                Action::SendRaft { to, data } => {
                    if !self.cut[r] && !self.mute[r] {
                        self.raft_sent[r] += 1;
                        self.raft.push_back((r, to as usize, data));
                    }
                }
                Action::SendSeq(req) => {
                    let last = self.last_bound(r);
                    assert!(
                        req.batch_id > last && req.batch_id <= last + self.k,
                        "replica {r} asked for batch {} with {last} applied, K={}",
                        req.batch_id,
                        self.k
                    );
                    if self.cut[r] {
                        continue;
                    }
                    let to = epoch_owner(req.epoch, self.seqs.len() as u32) as usize;
                    self.tell_sequencer(r, to, Body::GetSeq(req));
                }
                Action::Reply { conn, reply } => self.replies.push((r, conn, reply)),
                Action::ReadReply { conn, reply } => self.read_replies.push((r, conn, reply)),
                Action::Registered { conn, reply } => {
                    // Kept as a reply of its own kind: session in `session`, nonce in seq.
                    self.replies.push((
                        r,
                        conn,
                        ClientReply {
                            session: reply.session,
                            client_seq: reply.nonce,
                            status: reply.status,
                            leader_hint: reply.leader_hint,
                            space_mask: u64::MAX,
                            numbers: Vec::new(),
                            result: Bytes::new(),
                        },
                    ))
                }
                Action::Bound(b) => {
                    if b.batch_id > 0 && std::mem::take(&mut self.from_snapshot[r]) {
                        // Caught up from a snapshot: what it covers was never applied here.
                    } else if b.batch_id > 0 {
                        let last = self.last_bound(r);
                        assert_eq!(b.batch_id, last + 1, "replica {r}: batch ids not dense");
                    }
                    self.bound[r].push(b);
                }
            }
        }
        if let Some(number) = persisted {
            if self.hold_persist[r] {
                self.held_persist[r] = Some(number);
                return;
            }
            let mut out = Vec::new();
            self.reps[r].on_persisted(number, &mut out);
            self.route(r, out);
        }
    }

    /// Delivers queued messages until none is left.
    pub fn settle(&mut self) {
        for _ in 0..1_000_000 {
            if let Some((from, to, data)) = self.raft.pop_front() {
                if !self.cut[from] && !self.cut[to] && !self.deaf[to] {
                    self.on(to, |rep, _, _| rep.on_raft(from as u32, &data));
                }
            } else if let Some(m) = self.from_seq.pop_front() {
                match m {
                    FromSeq::Reply(r, rep) if !self.cut[r] => {
                        self.on(r, |x, _, _| x.on_seq_reply(rep))
                    }
                    FromSeq::Other(r, body) if !self.cut[r] => self.on(r, |x, _, out| match body {
                        Body::Heartbeat(h) => x.on_heartbeat(h),
                        Body::Switch(s) => x.on_switch(s, out),
                        Body::Fill(f) => x.on_fill(f, out),
                        Body::Activate(a) => x.on_activate(a, out),
                        _ => {}
                    }),
                    _ => {}
                }
            } else {
                return;
            }
        }
        panic!("the network never went quiet");
    }

    pub fn advance(&mut self, us: u64) {
        let end = self.now + us;
        while self.now + TICK <= end {
            self.now += TICK;
            for r in 0..N {
                let mut out = Vec::new();
                self.reps[r].tick(self.now, &mut out);
                self.route(r, out);
            }
            for i in 0..self.seqs.len() {
                if !self.seq_up[i] {
                    continue;
                }
                let mut out = Vec::new();
                self.seqs[i].tick(self.now, &mut out);
                self.route_sequencer(out, None);
            }
            self.settle();
        }
    }

    pub fn serving(&self) -> Option<usize> {
        (0..N).find(|&r| !self.cut[r] && self.reps[r].is_serving())
    }

    /// Ticks until a replica that is not cut off serves; returns it.
    pub fn elect(&mut self) -> usize {
        for _ in 0..1000 {
            if let Some(l) = self.serving() {
                return l;
            }
            self.advance(TICK);
        }
        panic!("no leader elected");
    }

    /// Elects a leader, opens the sessions of clients 1..=CLIENTS, and lets its start-up
    /// batches commit everywhere.
    pub fn start(tpl: ReplicaConfig) -> (Net, usize) {
        Net::start_with_groups(tpl, 1)
    }

    pub fn start_with_groups(tpl: ReplicaConfig, groups: u32) -> (Net, usize) {
        let mut net = Net::with_groups(tpl, groups);
        let l = net.elect();
        net.advance(5 * TICK);
        for c in 1..=CLIENTS {
            let r = Register {
                group: 0,
                client_id: c,
                nonce: c,
                window: 64,
            };
            net.on(l, |rep, _, out| rep.on_register(c, r, out));
        }
        net.settle();
        net.advance(2 * TICK);
        for c in 1..=CLIENTS {
            let opened = net.replies.iter().any(|(_, conn, rep)| {
                *conn == c && rep.space_mask == u64::MAX && rep.session == session(c)
            });
            assert!(opened, "client {c} opened session {}", session(c));
        }
        net.replies.clear();
        (net, l)
    }

    /// Delivers `ops` to replica `r` in one burst (conn = the client's number), then one
    /// flush.
    pub fn send(&mut self, r: usize, ops: &[ClientOp]) {
        let mut out = Vec::new();
        for o in ops {
            self.reps[r].on_client_op(o.session & 0xffff, o.clone(), &mut out);
        }
        self.reps[r].flush(self.now, &mut out);
        self.route(r, out);
        self.settle();
    }

    /// Replica `r`'s held writes are durable now (and later ones at once).
    pub fn release_persist(&mut self, r: usize) {
        self.hold_persist[r] = false;
        if let Some(number) = self.held_persist[r].take() {
            let mut out = Vec::new();
            self.reps[r].on_persisted(number, &mut out);
            self.reps[r].flush(self.now, &mut out);
            self.route(r, out);
            self.settle();
        }
    }

    pub fn send_on(&mut self, r: usize, conn: ConnId, o: ClientOp) {
        self.on(r, |rep, _, out| rep.on_client_op(conn, o, out));
        self.settle();
    }

    /// Asks the serving sequencer directly (as a rival would); returns its answer.
    pub fn seq_answer(&mut self, req: GetSeq) -> Option<SeqReply> {
        let i = self.active_seq()?;
        let mut out = Vec::new();
        let now = self.now;
        self.seqs[i]
            .on_frame(HARNESS, Body::GetSeq(req), now, &mut out)
            .ok()?;
        out.into_iter().find_map(|o| match o {
            SeqOut::Reply(HARNESS, Body::SeqReply(r)) => Some(*r),
            _ => None,
        })
    }

    /// Stops holding sequencer answers and delivers the held ones, latest first.
    pub fn release(&mut self) {
        self.hold_seq = false;
        while let Some((r, rep)) = self.held.pop() {
            self.from_seq.push_back(FromSeq::Reply(r, rep));
        }
        self.settle();
    }

    pub fn oks(&self, client: u64) -> Vec<&ClientReply> {
        self.replies
            .iter()
            .map(|(_, _, rep)| rep)
            .filter(|rep| {
                rep.session == session(client)
                    && rep.status == ReplyStatus::Ok as i32
                    && rep.space_mask != u64::MAX
            })
            .collect()
    }

    /// (seq, numbers) of `client`'s ops in replica `r`'s log, in log order.
    pub fn bound_ops(&self, r: usize, client: u64) -> Vec<(u64, Vec<u64>)> {
        let mut v = Vec::new();
        for b in &self.bound[r] {
            for (s, q, _, n) in op_numbers(b).expect("well-formed batch") {
                if s == session(client) {
                    v.push((q, n));
                }
            }
        }
        v
    }

    /// Checker over replica `r`'s log plus every Ok reply any client received.
    pub fn check(&self, r: usize) -> Report {
        let mut c = Checker::new(self.reps[r].recorded().watermarks().len() as u32);
        for b in &self.bound[r] {
            c.bind_batch(b).expect("bind");
        }
        for (_, _, rep) in &self.replies {
            if rep.status == ReplyStatus::Ok as i32 && rep.space_mask != u64::MAX {
                c.ack(
                    rep.session,
                    rep.client_seq,
                    SpaceMask(rep.space_mask),
                    &rep.numbers,
                );
            }
        }
        c.finish()
            .unwrap_or_else(|v| panic!("invariant broken: {v}"))
    }

    /// Lets commits propagate, then checks the replicas that are not cut off applied the
    /// same batches (all of them, not just a prefix).
    pub fn agree_all(&mut self) {
        self.advance(10 * TICK);
        let logs: Vec<Vec<BoundBatch>> = (0..N)
            .filter(|&r| !self.cut[r])
            .map(|r| self.bound[r].clone())
            .collect();
        let lens: Vec<usize> = logs.iter().map(Vec::len).collect();
        agree(0, logs).unwrap_or_else(|v| panic!("replicas disagree: {v}"));
        assert!(lens.windows(2).all(|w| w[0] == w[1]), "logs {lens:?}");
    }

    /// Per space, how many numbers below the sequencer's counter no batch in `r`'s log
    /// covers (ranges never overlap: Unique is checked separately).
    pub fn holes(&self, r: usize) -> Vec<u64> {
        let counters = self.counters();
        let mut covered = vec![0u64; counters.len()];
        for b in &self.bound[r] {
            for (s, c) in SpaceMask(b.space_mask).iter().zip(&b.counts) {
                covered[s as usize] += u64::from(*c);
            }
        }
        counters.iter().zip(covered).map(|(t, c)| t - c).collect()
    }
}

pub fn cfg(spaces: u32) -> ReplicaConfig {
    ReplicaConfig {
        spaces,
        sequencers: 2,
        ..Default::default()
    }
}

/// A fixed pseudo-random permutation (a tiny LCG; no dependency, same every run).
pub fn shuffle<T>(v: &mut [T], mut seed: u64) {
    for i in (1..v.len()).rev() {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        v.swap(i, (seed >> 33) as usize % (i + 1));
    }
}
