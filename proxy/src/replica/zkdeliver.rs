//! ZK-Mason delivery (docs/design.md, "ZooKeeper"): with shard servers configured, shard
//! `s` is space `s + 1` and space 0 is the zxid clock. Every committed batch that binds
//! numbers in shard spaces becomes a *delivery*: per shard, each bound op (its payload,
//! session, all its numbers and the batch's time) and each other number as noops. The
//! serving leader sends each shard's part to all that shard's servers, re-sends to those
//! that have not answered, and answers the batch's clients, with the ZooKeeper reply a
//! shard server computed, once a majority of the servers of every shard the delivery
//! touches applied it, in index order (so a session's answers keep its order).
//!
//! Deliveries are applied state, kept by every replica (and in snapshots), as CorfuMason's
//! are: a new leader sends again whatever its predecessor may not have finished, and
//! each batch entry says (`log_done_below`) which are done. An op applied before (a
//! retry after a failover) is answered with the reply a shard server keeps for it.

use super::{Action, ConnId, OpAnswer, Replica};
use crate::entry::{BatchEntry, Numbered, Numbers, OpEntry};
use bytes::Bytes;
use mason_common::msg::Body;
use mason_common::types::SpaceMask;
use mason_common::zkmsg::{ZkApplied, ZkDeliver, ZkItem, ZkQuery};
use std::collections::{BTreeMap, HashMap};

/// One committed entry's positions in the shard spaces, and who waits on them.
#[derive(Default)]
pub(crate) struct ZkDelivery {
    pub(crate) items: BTreeMap<u32, Vec<ZkItem>>,
    /// Per (shard, first position): the servers that applied it (a bit each).
    acked: HashMap<(u32, u64), u64>,
    /// Items not yet applied by a majority of their shard.
    missing: usize,
    sent: bool,
    sent_at: u64,
    /// The leader's answers, each with where its reply comes from.
    replies: Vec<Waiter>,
    results: HashMap<(u32, u64), Bytes>,
}

pub(crate) struct Waiter {
    conn: ConnId,
    session: u64,
    seq: u64,
    answer: OpAnswer,
    key: Option<(u32, u64)>,
}

/// The ZooKeeper side of a replica.
#[derive(Default)]
pub(crate) struct ZkState {
    pub(crate) deliveries: BTreeMap<u64, ZkDelivery>,
    /// Where each pending (shard, position) is delivered: its entry's index.
    at: HashMap<(u32, u64), u64>,
    /// Retried ops applied before: their answers wait on one server's reply.
    queries: HashMap<(u32, u64), (u64, Vec<Waiter>)>,
    /// The ops of the entry being applied, by (shard, position).
    stash: HashMap<(u32, u64), ZkItem>,
}

impl Replica {
    pub(super) fn zk_on(&self) -> bool {
        !self.cfg.zk_servers.is_empty()
    }

    fn zk_majority(&self, shard: u32) -> u32 {
        self.cfg
            .zk_servers
            .get(shard as usize)
            .copied()
            .unwrap_or(1)
            / 2
            + 1
    }

    /// Remembers a bound op for the delivery of the entry being applied.
    pub(super) fn zk_stash(&mut self, b: &BatchEntry, kept: &[&OpEntry], numbered: &[Numbered]) {
        if !self.zk_on() {
            return;
        }
        for (o, n) in kept.iter().zip(numbered) {
            for (j, space) in SpaceMask(n.mask).iter().enumerate() {
                let Some(pos) = n.numbers.get(j).filter(|_| space > 0) else {
                    continue;
                };
                let item = ZkItem {
                    pos: *pos,
                    noops: 0,
                    session: o.session,
                    payload: o.payload.clone(),
                    time_ms: b.time_ms,
                    mask: n.mask,
                    numbers: n.numbers.to_vec(),
                };
                self.zk.stash.insert((space - 1, *pos), item);
            }
        }
    }

    /// After applying entry `index` (its actions are `out[from..]`): what it bound in the
    /// shard spaces becomes a delivery (ops from the stash, every other number as
    /// noops), and its answers wait for it.
    pub(super) fn deliver_to_zk(&mut self, index: u64, from: usize, out: &mut Vec<Action>) {
        if !self.zk_on() {
            return;
        }
        let mut stash = std::mem::take(&mut self.zk.stash);
        let mut d = ZkDelivery::default();
        let actions: Vec<Action> = out.drain(from..).collect();
        for a in actions {
            match a {
                Action::Reply { conn, reply } => d.replies.push(Waiter {
                    conn,
                    session: reply.session,
                    seq: reply.client_seq,
                    key: reply_key(reply.space_mask, &reply.numbers),
                    answer: OpAnswer {
                        mask: reply.space_mask,
                        numbers: Numbers::from_vec(reply.numbers),
                        result: reply.result,
                    },
                }),
                Action::Bound(b) => {
                    let ranges = SpaceMask(b.space_mask).iter().zip(&b.bases).zip(&b.counts);
                    for ((space, base), count) in ranges {
                        if space == 0 {
                            continue;
                        }
                        let shard = space - 1;
                        let items = d.items.entry(shard).or_default();
                        let end = base + u64::from(*count);
                        let mut pos = *base;
                        while pos < end {
                            if let Some(item) = stash.remove(&(shard, pos)) {
                                items.push(item);
                                pos += 1;
                                continue;
                            }
                            let mut stop = pos + 1;
                            while stop < end && !stash.contains_key(&(shard, stop)) {
                                stop += 1;
                            }
                            items.push(ZkItem::noops(pos, stop - pos));
                            pos = stop;
                        }
                    }
                    out.push(Action::Bound(b));
                }
                other => out.push(other),
            }
        }
        stash.clear();
        d.items.retain(|_, v| !v.is_empty());
        if d.items.is_empty() {
            // Nothing to deliver; its answers still wait for earlier deliveries.
            match self.zk.deliveries.values_mut().next_back() {
                Some(last) => last.replies.append(&mut d.replies),
                None => {
                    for w in d.replies {
                        out.push(Action::Reply {
                            conn: w.conn,
                            reply: Replica::answered(w.session, w.seq, &w.answer),
                        });
                    }
                }
            }
            return;
        }
        self.zk_insert(index, d);
        if self.is_serving() {
            self.zk_send(index, out);
        }
    }

    fn zk_insert(&mut self, index: u64, mut d: ZkDelivery) {
        d.missing = d.items.values().map(Vec::len).sum();
        for (shard, items) in &d.items {
            for it in items {
                self.zk.at.insert((*shard, it.pos), index);
            }
        }
        self.zk.deliveries.insert(index, d);
    }

    fn zk_send(&mut self, index: u64, out: &mut Vec<Action>) {
        let now = self.now;
        let group = self.cfg.group;
        let servers = self.cfg.zk_servers.clone();
        let Some(d) = self.zk.deliveries.get_mut(&index) else {
            return;
        };
        d.sent = true;
        d.sent_at = now;
        for (shard, items) in &d.items {
            let n = servers.get(*shard as usize).copied().unwrap_or(0);
            for server in 0..n {
                let todo: Vec<ZkItem> = items
                    .iter()
                    .filter(|it| {
                        d.acked.get(&(*shard, it.pos)).copied().unwrap_or(0) & 1 << server == 0
                    })
                    .cloned()
                    .collect();
                if todo.is_empty() {
                    continue;
                }
                out.push(Action::ToZk {
                    shard: *shard,
                    server,
                    body: Body::ZkDeliver(ZkDeliver {
                        group,
                        shard: *shard,
                        items: todo,
                    }),
                });
            }
        }
    }

    /// A new leader sends every delivery its predecessor may not have finished.
    pub(super) fn zk_start(&mut self, out: &mut Vec<Action>) {
        if self.cfg.mutant == Some(crate::config::Mutant::NoZkRedo) {
            self.zk.deliveries.clear();
            self.zk.at.clear();
        }
        let pending: Vec<u64> = self.zk.deliveries.keys().copied().collect();
        for index in pending {
            self.zk_send(index, out);
        }
        self.zk_release(out);
    }

    /// Leadership is lost: nothing is sent or answered by this replica any more.
    pub(super) fn zk_stop(&mut self) {
        for d in self.zk.deliveries.values_mut() {
            d.sent = false;
            d.replies.clear();
        }
        self.zk.queries.clear();
    }

    /// A shard server applied positions.
    pub fn on_zk_applied(&mut self, a: ZkApplied, out: &mut Vec<Action>) {
        let majority = self.zk_majority(a.shard);
        let bit = 1u64 << a.server.min(63);
        if let Some(last) = a.done.iter().map(|d| d.pos).max() {
            self.local.saw_applied(a.shard, a.server, last);
        }
        for done in a.done {
            let key = (a.shard, done.pos);
            // A server that no longer holds the reply says so; another may still hold it,
            // so the query stays (and is asked again) until one answers with it.
            let known = !done.forgotten;
            if let Some((_, waiters)) = known.then(|| self.zk.queries.remove(&key)).flatten() {
                for w in waiters {
                    let mut answer = w.answer;
                    answer.result = done.result.clone();
                    out.push(Action::Reply {
                        conn: w.conn,
                        reply: Replica::answered(w.session, w.seq, &answer),
                    });
                }
            }
            let Some(d) = self
                .zk
                .at
                .get(&key)
                .and_then(|i| self.zk.deliveries.get_mut(i))
            else {
                continue;
            };
            let acks = d.acked.entry(key).or_default();
            let before = acks.count_ones();
            *acks |= bit;
            if before < majority && acks.count_ones() >= majority {
                d.missing = d.missing.saturating_sub(1);
            }
            if !done.forgotten {
                d.results.entry(key).or_insert(done.result);
            }
        }
        self.zk_release(out);
    }

    /// Answers the clients of every done delivery that has no pending one before it.
    fn zk_release(&mut self, out: &mut Vec<Action>) {
        let serving = self.is_serving();
        while let Some(e) = self.zk.deliveries.first_entry() {
            let d = e.get();
            if d.missing > 0 || (serving && !d.sent) {
                return;
            }
            let (_, d) = e.remove_entry();
            for (shard, items) in &d.items {
                for it in items {
                    self.zk.at.remove(&(*shard, it.pos));
                }
            }
            if !serving {
                continue;
            }
            for w in d.replies {
                let mut answer = w.answer;
                match w.key.map(|k| (k, d.results.get(&k))) {
                    // Applied by a majority, but only servers that no longer hold the
                    // reply said so: ask the shard's servers for it.
                    Some((key, None)) => {
                        let w = Waiter { answer, ..w };
                        let entry = self.zk.queries.entry(key).or_insert((0, Vec::new()));
                        entry.1.push(w);
                        if entry.0 == 0 {
                            entry.0 = self.now;
                            self.zk_query(key, out);
                        }
                        continue;
                    }
                    Some((_, Some(r))) => answer.result = r.clone(),
                    None => {}
                }
                out.push(Action::Reply {
                    conn: w.conn,
                    reply: Replica::answered(w.session, w.seq, &answer),
                });
            }
        }
    }

    /// Ops applied before (a retry): each is answered with the reply its first shard's
    /// servers keep.
    pub(super) fn zk_answer_dups(&mut self, dups: &[&OpEntry], out: &mut Vec<Action>) {
        let Some(l) = self.leader.as_ref().filter(|l| l.started) else {
            return;
        };
        let mut again = Vec::new();
        for o in dups {
            let cached = self
                .sessions
                .get(&o.session)
                .and_then(|a| a.answers.get(o.client_seq));
            if let (Some(lc), Some(a)) = (l.clients.get(&o.session), cached) {
                again.push((lc.conn, Replica::answered(o.session, o.client_seq, a)));
            }
        }
        for (conn, reply) in again {
            self.zk_answer_again(conn, reply, out);
        }
    }

    /// An answer from the dedup cache (its numbers, not its ZooKeeper reply): the reply
    /// comes from a server of the op's first shard, asked for it.
    pub(super) fn zk_answer_again(
        &mut self,
        conn: ConnId,
        reply: mason_common::msg::ClientReply,
        out: &mut Vec<Action>,
    ) {
        let key = reply_key(reply.space_mask, &reply.numbers);
        let Some(key) = key.filter(|_| reply.status == 0) else {
            out.push(Action::Reply { conn, reply });
            return;
        };
        let w = Waiter {
            conn,
            session: reply.session,
            seq: reply.client_seq,
            key: Some(key),
            answer: OpAnswer {
                mask: reply.space_mask,
                numbers: Numbers::from_vec(reply.numbers),
                result: reply.result,
            },
        };
        let entry = self.zk.queries.entry(key).or_insert((0, Vec::new()));
        entry.1.push(w);
        if entry.0 == 0 {
            entry.0 = self.now;
            self.zk_query(key, out);
        }
    }

    fn zk_query(&self, (shard, pos): (u32, u64), out: &mut Vec<Action>) {
        let n = self
            .cfg
            .zk_servers
            .get(shard as usize)
            .copied()
            .unwrap_or(0);
        for server in 0..n {
            out.push(Action::ToZk {
                shard,
                server,
                body: Body::ZkQuery(ZkQuery {
                    group: self.cfg.group,
                    shard,
                    positions: vec![pos],
                }),
            });
        }
    }

    /// Re-sends deliveries and queries unanswered for `log_retry_us`.
    pub(super) fn zk_retry(&mut self, now: u64, out: &mut Vec<Action>) {
        if !self.zk_on() || !self.is_serving() {
            return;
        }
        let retry = self.cfg.log_retry_us;
        let late: Vec<u64> = self
            .zk
            .deliveries
            .iter()
            .filter(|(_, d)| d.sent && now.saturating_sub(d.sent_at) >= retry)
            .map(|(i, _)| *i)
            .collect();
        for index in late {
            self.zk_send(index, out);
        }
        let late: Vec<(u32, u64)> = self
            .zk
            .queries
            .iter()
            .filter(|(_, (at, _))| now.saturating_sub(*at) >= retry)
            .map(|(k, _)| *k)
            .collect();
        for key in late {
            if let Some(q) = self.zk.queries.get_mut(&key) {
                q.0 = now;
            }
            self.zk_query(key, out);
        }
    }

    /// The index below which every delivery is done (for the next batch entry).
    pub(super) fn zk_done_below(&self) -> u64 {
        self.zk
            .deliveries
            .keys()
            .next()
            .copied()
            .unwrap_or(self.applied_index + 1)
    }

    /// A leader said every delivery below `below` is done: forget them.
    pub(super) fn zk_forget(&mut self, below: u64) {
        if below == 0 || self.is_serving() {
            return;
        }
        while let Some(e) = self.zk.deliveries.first_entry() {
            if *e.key() >= below {
                break;
            }
            let (_, d) = e.remove_entry();
            for (shard, items) in &d.items {
                for it in items {
                    self.zk.at.remove(&(*shard, it.pos));
                }
            }
        }
    }

    /// Deliveries not known to be done, by index and shard (for snapshots).
    pub(super) fn zk_pending(&self) -> Vec<(u64, u32, Vec<ZkItem>)> {
        let mut v = Vec::new();
        for (i, d) in &self.zk.deliveries {
            for (s, items) in &d.items {
                v.push((*i, *s, items.clone()));
            }
        }
        v
    }

    pub(super) fn zk_restore(&mut self, pending: Vec<(u64, u32, Vec<ZkItem>)>) {
        self.zk = ZkState::default();
        let mut by_index: BTreeMap<u64, ZkDelivery> = BTreeMap::new();
        for (i, s, items) in pending {
            by_index.entry(i).or_default().items.insert(s, items);
        }
        for (i, d) in by_index {
            self.zk_insert(i, d);
        }
    }

    /// Deliveries not yet done (tests and the simulator read this).
    pub fn undelivered(&self) -> usize {
        self.zk.deliveries.len()
    }
}

/// Where an op's reply comes from: its first shard and its position there.
fn reply_key(mask: u64, numbers: &[u64]) -> Option<(u32, u64)> {
    let m = SpaceMask(mask);
    let space = m.iter().find(|s| *s > 0)?;
    let pos = numbers.get(m.index_of(space)?)?;
    Some((space - 1, *pos))
}
