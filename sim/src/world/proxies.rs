//! The proxy machines of the simulated world: each handles what arrived in one go (its
//! batching), routes its replicas' actions (Raft to its triple, requests to the
//! sequencers, answers to clients, writes to the shared log, deliveries and local reads
//! to ZK-Mason's shard servers), and ticks them; plus the
//! queries the checker asks of them (who leads, who lags).

use super::{Ev, World};
use crate::net::Node;
use mason_common::msg::{epoch_owner, Body, RaftMsg};
use mason_proxy::replica::LOG_REQ_GROUP_SHIFT;
use mason_proxy::{Action, Replica};
use rand::Rng;

/// The durable-at time of a write deferred (lost in a crash until a synced write carries it).
const UNSYNCED: u64 = u64::MAX;

impl World {
    pub(super) fn process(&mut self, m: u32) {
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
                Body::Register(r) => r.group,
                Body::Heartbeat(h) => h.group,
                Body::Switch(s) => s.group,
                Body::Fill(f) => f.group,
                // A log server's answer: the write id says which group asked.
                Body::LogWriteReply(r) => (r.id >> LOG_REQ_GROUP_SHIFT) as u32,
                Body::ZkApplied(a) => a.group,
                Body::LocalRead(r) => r.group,
                Body::ZkReadReply(r) => r.group,
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
                Body::Raft(r) => {
                    if let Node::Proxy(p) = from {
                        rep.on_raft(p % 3, &r.data)
                    }
                }
                Body::SeqReply(r) => rep.on_seq_reply(*r),
                Body::Heartbeat(h) => rep.on_heartbeat(h),
                Body::Switch(s) => rep.on_switch(s, &mut out),
                Body::Fill(f) => rep.on_fill(f, &mut out),
                Body::LogWriteReply(r) => rep.on_log_reply(r, &mut out),
                Body::ZkApplied(a) => {
                    if let Node::ZkServer(..) = from {
                        rep.on_zk_applied(a, &mut out)
                    }
                }
                Body::ClientOp(op) => {
                    if let Node::Client(c) = from {
                        rep.on_client_op(u64::from(c), op, &mut out);
                    }
                }
                Body::Register(r) => {
                    if let Node::Client(c) = from {
                        rep.on_register(u64::from(c), r, &mut out);
                    }
                }
                Body::LocalRead(r) => {
                    if let Node::Client(c) = from {
                        rep.on_local_read(u64::from(c), r, &mut out);
                    }
                }
                Body::ZkReadReply(r) => {
                    if let Node::ZkServer(..) = from {
                        rep.on_zk_read_reply(r, &mut out)
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

    /// A replica's writes up to ready `number` are durable: it hears so (unless its
    /// machine crashed since it wrote them).
    pub(super) fn persisted(&mut self, m: u32, inc: u64, slot: usize, number: u64) {
        let mach = &self.machines[m as usize];
        if !mach.alive || mach.incarnation != inc {
            return;
        }
        let now = self.now;
        let mut out = Vec::new();
        if let Some(rep) = self.machines[m as usize].replicas[slot].as_mut() {
            rep.on_persisted(number, &mut out);
            rep.flush(now, &mut out);
        }
        self.route(m, slot, out);
    }

    pub(super) fn flush(&mut self, m: u32, slot: usize) {
        let now = self.now;
        let mut out = Vec::new();
        if let Some(rep) = self.machines[m as usize].replicas[slot].as_mut() {
            rep.flush(now, &mut out);
        }
        self.route(m, slot, out);
    }

    pub(super) fn tick(&mut self, m: u32, inc: u64) {
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
        let slow = self.machines[m as usize].clock_factor.max(1);
        let at = self.now + (self.cfg.tick_us + jitter) * slow;
        self.schedule(at, Ev::Tick(m, inc));
    }

    fn route(&mut self, m: u32, slot: usize, out: Vec<Action>) {
        let group = self.machines[m as usize].groups[slot];
        let base = (m / 3) * 3;
        for a in out {
            match a {
                Action::Persist {
                    number,
                    hard_state,
                    entries,
                    must_sync,
                } => {
                    let now = self.now;
                    let inc = self.machines[m as usize].incarnation;
                    let d = &mut self.machines[m as usize].disks[slot];
                    if must_sync {
                        let lat = self.rng.gen_range(0..=self.cfg.persist_max_us);
                        let at = d.synced_at.max(now) + lat;
                        d.synced_at = at;
                        // A sync makes the unsynced writes before it durable too.
                        for r in d.records.iter_mut().filter(|r| r.0 == UNSYNCED) {
                            r.0 = at;
                        }
                        d.records.push((at, hard_state, entries));
                        self.schedule(at, Ev::Persisted(m, inc, slot, number));
                    } else {
                        // Not yet written: reported once the writes before it are, and
                        // lost in a crash unless a later synced write carries it.
                        let at = d.synced_at.max(now);
                        d.records.push((UNSYNCED, hard_state, entries));
                        self.schedule(at, Ev::Persisted(m, inc, slot, number));
                    }
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
                Action::Registered { conn, reply } => self.send(
                    Node::Proxy(m),
                    Node::Client(conn as u32),
                    Body::Registered(reply),
                ),
                Action::ReadReply { conn, reply } => self.send(
                    Node::Proxy(m),
                    Node::Client(conn as u32),
                    Body::LocalReadReply(reply),
                ),
                Action::Bound(b) => self.bound.entry((group, m % 3)).or_default().push(b),
                Action::LogWrite(w) => self.log_write_from(m, w),
                Action::ToZk {
                    shard,
                    server,
                    body,
                } => self.zk_from_proxy(m, shard, server, body),
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
}
