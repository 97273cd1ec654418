//! A shard server's dealings with other servers: views of ops that span shards (pushed
//! when an op's position comes up, pulled again when one is late), fetches from a peer
//! of the shard (records from a position on, or the peer's tree), and the store's
//! answers to the lookups those need. Time drives the retries.

use super::{ConnId, NodeAction, Want, ZkNode, MAX_VIEWS, MAX_VIEW_BYTES};
use bytes::Bytes;
use mason_common::msg::Body;
use mason_common::zkmsg::{ZkDone, ZkFetch, ZkFetchReply, ZkRecord, ZkView, ZkViewPull};
use mason_zk::order::Slot;
use mason_zk::DataTree;
use prost::Message as _;

impl ZkNode {
    /// Another shard's view of one of its positions.
    pub fn on_view(&mut self, v: ZkView, out: &mut Vec<NodeAction>) {
        let s = v.shard;
        if s == self.cfg.shard || s >= self.cfg.shards || v.pos < self.used[s as usize] {
            return;
        }
        let key = (s, v.pos);
        if self.views.contains_key(&key) {
            return;
        }
        let waited = self.waiting.as_ref().is_some_and(|w| w.need.contains(&key));
        // What is held is bounded; a view dropped here is asked for again when needed.
        if !waited
            && (self.views.len() >= MAX_VIEWS || self.view_bytes + v.view.len() > MAX_VIEW_BYTES)
        {
            return;
        }
        self.view_bytes += v.view.len();
        self.views.insert(key, v.view);
        if waited {
            self.advance(out);
        }
    }

    /// A server of `shard` asks for this server's view of position `pull.pos`.
    pub fn on_view_pull(
        &mut self,
        shard: u32,
        index: u32,
        pull: ZkViewPull,
        out: &mut Vec<NodeAction>,
    ) {
        let pos = pull.pos;
        if let Some(w) = self.waiting.as_ref().filter(|w| w.pos == pos) {
            out.push(NodeAction::ToServer {
                shard,
                index,
                body: Body::ZkView(ZkView {
                    shard: self.cfg.shard,
                    pos,
                    view: w.own.clone(),
                }),
            });
        } else if pos < self.next() {
            let token = self.token(Want::View { shard, index });
            out.push(NodeAction::Lookup {
                token,
                positions: vec![pos],
            });
        }
        // Not there yet: its view goes out when it comes up.
    }

    /// A peer of this shard fetches from `f.from` on.
    pub fn on_fetch(&mut self, index: u32, f: ZkFetch, out: &mut Vec<NodeAction>) {
        if f.from >= self.next() {
            out.push(self.fetch_reply(index, Vec::new()));
            return;
        }
        let token = self.token(Want::Fetch { index });
        out.push(NodeAction::Scan {
            token,
            from: f.from,
            budget: self.cfg.max_fetch_bytes,
        });
    }

    fn fetch_reply(&self, index: u32, records: Vec<ZkRecord>) -> NodeAction {
        NodeAction::ToServer {
            shard: self.cfg.shard,
            index,
            body: Body::ZkFetchReply(ZkFetchReply {
                records,
                snapshot: Bytes::new(),
                snapshot_next: 0,
                next: self.next(),
            }),
        }
    }

    /// What the store found for a lookup or a scan: (position, record), in order.
    pub fn on_looked(
        &mut self,
        token: u64,
        found: Vec<(u64, Option<Bytes>)>,
        out: &mut Vec<NodeAction>,
    ) {
        let Some(want) = self.wants.remove(&token) else {
            return;
        };
        let records: Vec<(u64, Option<ZkRecord>)> = found
            .into_iter()
            .map(|(p, b)| (p, b.and_then(|b| ZkRecord::decode(&b[..]).ok())))
            .collect();
        match want {
            Want::Again { conn, group } => {
                let done = records
                    .into_iter()
                    .map(|(pos, r)| match r {
                        Some(r) => ZkDone {
                            pos,
                            result: r.result,
                            forgotten: false,
                        },
                        None => ZkDone {
                            pos,
                            result: Bytes::new(),
                            forgotten: true,
                        },
                    })
                    .collect();
                out.push(self.applied_msg(conn, group, done));
            }
            Want::View { shard, index } => {
                for (pos, r) in records {
                    // A record's first view is its own shard's.
                    if let Some(view) = r.and_then(|r| r.views.into_iter().next()) {
                        out.push(NodeAction::ToServer {
                            shard,
                            index,
                            body: Body::ZkView(ZkView {
                                shard: self.cfg.shard,
                                pos,
                                view,
                            }),
                        });
                    }
                }
            }
            Want::Fetch { index } => {
                let recs: Vec<ZkRecord> = records.into_iter().filter_map(|(_, r)| r).collect();
                if recs.is_empty() {
                    // This server no longer holds the start (it took a peer's tree past
                    // it): send the tree.
                    let mut reply = self.fetch_reply(index, Vec::new());
                    if let NodeAction::ToServer {
                        body: Body::ZkFetchReply(r),
                        ..
                    } = &mut reply
                    {
                        r.snapshot = Bytes::from(self.tree.shard_snapshot());
                        r.snapshot_next = self.next();
                    }
                    out.push(reply);
                } else {
                    out.push(self.fetch_reply(index, recs));
                }
            }
        }
    }

    /// A peer's answer to a fetch: apply what continues from here.
    pub fn on_fetch_reply(&mut self, r: ZkFetchReply, out: &mut Vec<NodeAction>) {
        let mut took = 0u64;
        let mut next = self.next();
        for rec in r.records {
            let Some(item) = rec.item.clone() else {
                continue;
            };
            if item.pos != next {
                continue;
            }
            next = item.end();
            let result = self.apply_record(&item, &rec.views);
            self.stored(item, rec.views, result, out);
            took += 1;
        }
        if took > 0 {
            // Once for the whole answer: what waits past it stays.
            self.waiting = None;
            self.reset_keeping(next);
        }
        if took == 0 && r.snapshot_next > self.next() && !r.snapshot.is_empty() {
            match DataTree::restore(&r.snapshot) {
                Ok(tree) => {
                    tracing::info!(
                        shard = self.cfg.shard,
                        from = self.next(),
                        to = r.snapshot_next,
                        "took a peer's tree"
                    );
                    self.tree = tree;
                    // The triggers of the positions the tree skipped are not known here.
                    self.feed.log.reset(r.snapshot_next - 1);
                    self.waiting = None;
                    self.reset_keeping(r.snapshot_next);
                    self.forget_waiters_below(r.snapshot_next, out);
                    self.stats.snapshots_installed += 1;
                    self.since_snapshot = 0;
                    out.push(NodeAction::Snapshot {
                        next: r.snapshot_next,
                        data: r.snapshot.to_vec(),
                    });
                }
                Err(e) => {
                    tracing::error!(shard = self.cfg.shard, error = %e, "a peer's tree does not restore")
                }
            }
        }
        self.stats.fetched += took;
        self.advance(out);
    }

    /// Moves the intake to `next`, keeping what it holds past it.
    fn reset_keeping(&mut self, next: u64) {
        for (_, slot) in self.intake.advance_to(next) {
            if let Slot::Op(item) = slot {
                self.held_bytes = self.held_bytes.saturating_sub(item.payload.len());
            }
        }
    }

    /// A peer's tree took this server past positions it never applied itself: they are
    /// applied (inside the tree), their replies unknown here.
    fn forget_waiters_below(&mut self, next: u64, out: &mut Vec<NodeAction>) {
        let below: Vec<u64> = self.waiters.range(..next).map(|(p, _)| *p).collect();
        let mut replies: std::collections::BTreeMap<(ConnId, u32), Vec<ZkDone>> =
            std::collections::BTreeMap::new();
        for p in below {
            for (c, g) in self.waiters.remove(&p).unwrap_or_default() {
                replies.entry((c, g)).or_default().push(ZkDone {
                    pos: p,
                    result: Bytes::new(),
                    forgotten: true,
                });
            }
        }
        for ((c, g), done) in replies {
            out.push(self.applied_msg(c, g, done));
        }
    }

    /// Time: ask again for late views, and fetch on a hole or when idle.
    pub fn tick(&mut self, now: u64, out: &mut Vec<NodeAction>) {
        self.now = now;
        self.release_reads(out);
        self.release_polls(out);
        let retry = self.cfg.retry_us;
        if let Some(w) = self.waiting.as_mut() {
            if now.saturating_sub(w.asked_at) >= retry {
                w.asked_at = now;
                let missing: Vec<(u32, u64)> = w
                    .need
                    .iter()
                    .filter(|k| !self.views.contains_key(k))
                    .copied()
                    .collect();
                for (shard, pos) in missing {
                    let n = self.servers(shard).max(1);
                    let index = ((now / retry.max(1)) % u64::from(n)) as u32;
                    self.stats.view_pulls += 1;
                    out.push(NodeAction::ToServer {
                        shard,
                        index,
                        body: Body::ZkViewPull(ZkViewPull { pos }),
                    });
                }
            }
        }
        let hole = self.intake.held() > 0 && self.intake.peek().is_none();
        // A view this late was most likely pushed long ago, when this server was cut off
        // or behind: the peers' records carry it, and what follows.
        let late_view = self
            .waiting
            .as_ref()
            .is_some_and(|w| now.saturating_sub(w.since) >= retry);
        let quiet = now.saturating_sub(self.last_progress);
        let since = now.saturating_sub(self.last_fetch);
        let due = (((hole && quiet >= retry) || late_view) && since >= retry)
            || (quiet >= self.cfg.idle_fetch_us && since >= self.cfg.idle_fetch_us);
        let peers = self.servers(self.cfg.shard);
        if due && peers > 1 {
            self.last_fetch = now;
            self.fetch_peer = (self.fetch_peer + 1) % peers;
            if self.fetch_peer == self.cfg.index {
                self.fetch_peer = (self.fetch_peer + 1) % peers;
            }
            self.stats.fetches += 1;
            out.push(NodeAction::ToServer {
                shard: self.cfg.shard,
                index: self.fetch_peer,
                body: Body::ZkFetch(ZkFetch { from: self.next() }),
            });
        }
    }

    /// When the node next needs `tick`.
    pub fn next_deadline(&self) -> u64 {
        let mut wait = self.cfg.retry_us.min(self.cfg.idle_fetch_us);
        if !self.held_reads.is_empty() {
            wait = wait.min(super::reads::READ_WAIT_US / 4);
        }
        if let Some(d) = self.feed.polls.next_deadline() {
            wait = wait.min(d.saturating_sub(self.now));
        }
        self.now + wait.max(1)
    }
}
