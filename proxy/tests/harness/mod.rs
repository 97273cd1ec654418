//! The group tests' harness: three [`Replica`]s of one proxy group and a real
//! [`Sequencer`], wired by a deterministic in-memory network (no threads, no sockets; time
//! advanced by hand), with checks on the way (dense batch ids, at most K ids in flight).

#![allow(dead_code)]

use bytes::Bytes;
use mason_common::msg::{ClientOp, ClientReply, GetSeq, ReplyStatus, SeqReply};
use mason_common::record::BoundBatch;
use mason_common::types::SpaceMask;
use mason_common::verify::{agree, Checker, Report};
use mason_proxy::store::Store;
use mason_proxy::{Action, ConnId, Replica, ReplicaConfig};
use mason_sequencer::{Sequencer, SequencerConfig};
use std::collections::VecDeque;

pub const TICK: u64 = 10_000;
pub const N: usize = 3;

/// The group, its sequencer and the network between them.
pub struct Net {
    pub reps: Vec<Replica>,
    pub k: u64,
    pub seq: Sequencer,
    pub now: u64,
    pub raft: VecDeque<(usize, usize, Bytes)>,
    pub seq_replies: VecDeque<(usize, SeqReply)>,
    /// Sequencer answers held back (the sequencer has already handled the request).
    pub held: Vec<(usize, SeqReply)>,
    pub hold_seq: bool,
    /// Everything to or from the replica is dropped.
    pub cut: [bool; N],
    /// The replica's outgoing Raft messages are dropped.
    pub mute: [bool; N],
    /// Raft messages to the replica are dropped.
    pub deaf: [bool; N],
    /// Per replica, what it applied (its `Bound` actions), in order.
    pub bound: Vec<Vec<BoundBatch>>,
    /// Every client reply: (replica, conn, reply).
    pub replies: Vec<(usize, ConnId, ClientReply)>,
    /// Every request the sequencer answered: (replica, request, answer).
    pub asks: Vec<(usize, GetSeq, SeqReply)>,
}

pub fn op(client: u64, seq: u64, mask: u64) -> ClientOp {
    ClientOp {
        client_id: client,
        client_seq: seq,
        group: 0,
        space_mask: mask,
        payload: Bytes::new(),
        acked_below: 0,
    }
}

impl Net {
    pub fn new(tpl: ReplicaConfig) -> Net {
        let reps = (0..N as u32)
            .map(|i| {
                let cfg = ReplicaConfig {
                    group: 0,
                    replica: i,
                    replicas: N as u32,
                    campaign_on_start: i == 0,
                    ..tpl.clone()
                };
                Replica::new(cfg, Store::new(vec![1, 2, 3])).expect("replica")
            })
            .collect();
        let seq = Sequencer::new(SequencerConfig {
            spaces: tpl.spaces,
            epoch: 1,
            ..Default::default()
        });
        let mut net = Net {
            reps,
            k: tpl.max_outstanding as u64,
            seq,
            now: 0,
            raft: VecDeque::new(),
            seq_replies: VecDeque::new(),
            held: Vec::new(),
            hold_seq: false,
            cut: [false; N],
            mute: [false; N],
            deaf: [false; N],
            bound: vec![Vec::new(); N],
            replies: Vec::new(),
            asks: Vec::new(),
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
        self.bound[r].last().map_or(0, |b| b.batch_id)
    }

    /// Routes actions in order, checking on the way: batch ids applied densely, and every
    /// sequencer request within K ids past the last batch applied before it.
    pub fn route(&mut self, r: usize, out: Vec<Action>) {
        for a in out {
            match a {
                // Heartbeats to the sequencer: this harness's sequencer never fails.
                Action::Persist { .. } | Action::Snapshot { .. } | Action::ToSeq { .. } => {}
                Action::SendRaft { to, data } => {
                    if !self.cut[r] && !self.mute[r] {
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
                    // Answers go to whoever asked (a request that waited for earlier ids
                    // of its group is answered when they arrive).
                    let mut answers = Vec::new();
                    self.seq.handle(&req, r as u64, &mut answers);
                    for (origin, rep) in answers {
                        let to = origin as usize;
                        if rep.batch_id == req.batch_id && to == r {
                            self.asks.push((r, req.clone(), rep.clone()));
                        }
                        if self.hold_seq {
                            self.held.push((to, rep));
                        } else {
                            self.seq_replies.push_back((to, rep));
                        }
                    }
                }
                Action::Reply { conn, reply } => self.replies.push((r, conn, reply)),
                Action::Bound(b) => {
                    let last = self.last_bound(r);
                    assert_eq!(b.batch_id, last + 1, "replica {r}: batch ids not dense");
                    self.bound[r].push(b);
                }
                Action::LogWrite(_) => {}
            }
        }
    }

    /// Delivers queued messages until none is left.
    pub fn settle(&mut self) {
        for _ in 0..1_000_000 {
            if let Some((from, to, data)) = self.raft.pop_front() {
                if !self.cut[from] && !self.cut[to] && !self.deaf[to] {
                    self.on(to, |rep, _, _| rep.on_raft(&data));
                }
            } else if let Some((r, rep)) = self.seq_replies.pop_front() {
                if !self.cut[r] {
                    self.on(r, |x, _, _| x.on_seq_reply(rep));
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

    /// Elects a leader and lets its start-up batches commit everywhere.
    pub fn start(tpl: ReplicaConfig) -> (Net, usize) {
        let mut net = Net::new(tpl);
        let l = net.elect();
        net.advance(5 * TICK);
        (net, l)
    }

    /// Delivers `ops` to replica `r` in one burst (conn = client id), then one flush.
    pub fn send(&mut self, r: usize, ops: &[ClientOp]) {
        let mut out = Vec::new();
        for o in ops {
            self.reps[r].on_client_op(o.client_id, o.clone(), &mut out);
        }
        self.reps[r].flush(self.now, &mut out);
        self.route(r, out);
        self.settle();
    }

    pub fn send_on(&mut self, r: usize, conn: ConnId, o: ClientOp) {
        self.on(r, |rep, _, out| rep.on_client_op(conn, o, out));
        self.settle();
    }

    /// Stops holding sequencer answers and delivers the held ones, latest first.
    pub fn release(&mut self) {
        self.hold_seq = false;
        while let Some((r, rep)) = self.held.pop() {
            self.seq_replies.push_back((r, rep));
        }
        self.settle();
    }

    pub fn oks(&self, client: u64) -> Vec<&ClientReply> {
        self.replies
            .iter()
            .map(|(_, _, rep)| rep)
            .filter(|rep| rep.client_id == client && rep.status == ReplyStatus::Ok as i32)
            .collect()
    }

    /// (seq, numbers) of `client`'s ops in replica `r`'s log, in log order.
    pub fn bound_ops(&self, r: usize, client: u64) -> Vec<(u64, Vec<u64>)> {
        let mut v = Vec::new();
        for b in &self.bound[r] {
            b.for_each_op(|c, s, _, n| {
                if c == client {
                    v.push((s, n.to_vec()));
                }
            })
            .expect("well-formed batch");
        }
        v
    }

    /// Checker over replica `r`'s log plus every Ok reply any client received.
    pub fn check(&self, r: usize) -> Report {
        let mut c = Checker::new(self.seq.counters().len() as u32);
        for b in &self.bound[r] {
            c.bind_batch(b).expect("bind");
        }
        for (_, _, rep) in &self.replies {
            if rep.status == ReplyStatus::Ok as i32 {
                c.ack(
                    rep.client_id,
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
        let mut covered = vec![0u64; self.seq.counters().len()];
        for b in &self.bound[r] {
            for (s, c) in SpaceMask(b.space_mask).iter().zip(&b.counts) {
                covered[s as usize] += u64::from(*c);
            }
        }
        self.seq
            .counters()
            .iter()
            .zip(covered)
            .map(|(t, c)| t - c)
            .collect()
    }
}

pub fn cfg(spaces: u32) -> ReplicaConfig {
    ReplicaConfig {
        spaces,
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
