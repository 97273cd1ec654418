//! How a shard server applies its positions in order: the op at the next position runs
//! once the views it needs have come (pushed to the other shards it touches), and each
//! applied position becomes a stored record.

use super::{decode_views, NodeAction, NodeMutant, Waiting, ZkNode};
use crate::op::{self, Prepared};
use bytes::Bytes;
use mason_common::msg::Body;
use mason_common::types::SpaceMask;
use mason_common::zkmsg::{shard_space, ZkItem, ZkRecord, ZkView};
use mason_zk::jute;
use mason_zk::order::Slot;
use mason_zk::sharded::View;
use prost::Message as _;

impl ZkNode {
    /// Applies what is in order, as far as it goes.
    pub(super) fn advance(&mut self, out: &mut Vec<NodeAction>) {
        loop {
            let next = self.next();
            let item = match self.intake.peek() {
                None => return,
                Some((_, Slot::Noops(n))) => {
                    let item = ZkItem::noops(next, *n);
                    self.intake.pop();
                    self.applied(item, Vec::new(), Bytes::new(), out);
                    continue;
                }
                Some((_, Slot::Op(item))) => item.clone(),
            };
            if let Some(result) = self.early.remove(&item.pos) {
                self.intake.pop();
                self.held_bytes = self.held_bytes.saturating_sub(item.payload.len());
                self.applied(item, Vec::new(), result, out);
                continue;
            }
            let prepared = op::prepare(&self.tree, &item, self.cfg.shards);
            let mut views = Vec::new();
            let no_views = self.cfg.mutant == Some(NodeMutant::NoViews);
            if prepared.needs_views(self.cfg.shards) && !no_views {
                match self.gather(&item, &prepared, out) {
                    Some(v) => views = v,
                    None => return,
                }
            }
            self.intake.pop();
            self.held_bytes = self.held_bytes.saturating_sub(item.payload.len());
            let others = decode_views(&views[views.len().min(1)..]);
            let result = self.run_op(&item, &prepared, &others);
            self.applied(item, views, result, out);
        }
    }

    /// Mutant `ApplyOnArrival`: runs `item` now (unless it spans shards), and keeps its
    /// result for when its position comes up.
    pub(super) fn apply_early(&mut self, item: ZkItem) {
        let prepared = op::prepare(&self.tree, &item, self.cfg.shards);
        if prepared.needs_views(self.cfg.shards) {
            return;
        }
        // Its triggers are not recorded: the feed follows the order (this is a mutant).
        let (result, _, _) = op::run(
            &mut self.tree,
            &item,
            &prepared,
            &[],
            self.cfg.shard,
            self.cfg.shards,
        );
        self.early.insert(item.pos, result);
    }

    /// Mutant `CloseOnArrival`: a delivered closeSession ends its session here now.
    pub(super) fn close_early(&mut self, item: &ZkItem) {
        let is_close = jute::split_request(&item.payload)
            .is_ok_and(|(h, _)| h.op == mason_zk::opcode::CLOSE_SESSION);
        let session = item.session as i64;
        if is_close && self.tree.has_session(session) {
            let ctx = mason_zk::Ctx {
                zxid: item.numbers.first().map_or(0, |n| *n as i64 + 1),
                time_ms: item.time_ms,
            };
            self.tree
                .apply(ctx, session, &mason_zk::Request::CloseSession);
        }
    }

    /// The views `item` runs with (this shard's first), once all have come; until then it
    /// sends its own and waits.
    fn gather(
        &mut self,
        item: &ZkItem,
        p: &Prepared,
        out: &mut Vec<NodeAction>,
    ) -> Option<Vec<Bytes>> {
        if self.waiting.as_ref().map(|w| w.pos) != Some(item.pos) {
            let Prepared::Run { request, .. } = p else {
                return Some(Vec::new());
            };
            let own = mason_zk::sharded::view(
                &self.tree,
                item.session as i64,
                request,
                self.cfg.shard,
                self.cfg.shards,
            );
            let own = Bytes::from(own.encode());
            let need = self.others(item);
            for (shard, _) in &need {
                for index in 0..self.servers(*shard) {
                    self.stats.views_sent += 1;
                    out.push(NodeAction::ToServer {
                        shard: *shard,
                        index,
                        body: Body::ZkView(ZkView {
                            shard: self.cfg.shard,
                            pos: item.pos,
                            view: own.clone(),
                        }),
                    });
                }
            }
            self.waiting = Some(Waiting {
                pos: item.pos,
                own,
                need,
                asked_at: self.now,
                since: self.now,
            });
        }
        let w = self.waiting.as_ref()?;
        if w.need.iter().any(|k| !self.views.contains_key(k)) {
            return None;
        }
        let w = self.waiting.take()?;
        let mut views = vec![w.own];
        for k in &w.need {
            if let Some(v) = self.views.remove(k) {
                self.view_bytes -= v.len();
                views.push(v);
            }
            self.used[k.0 as usize] = self.used[k.0 as usize].max(k.1 + 1);
        }
        Some(views)
    }

    /// The other shards `item` touches, and its position in each.
    fn others(&self, item: &ZkItem) -> Vec<(u32, u64)> {
        let mask = SpaceMask(item.mask);
        (0..self.cfg.shards)
            .filter(|s| *s != self.cfg.shard)
            .filter_map(|s| {
                let k = mask.index_of(shard_space(s))?;
                Some((s, *item.numbers.get(k)?))
            })
            .collect()
    }

    pub(super) fn servers(&self, shard: u32) -> u32 {
        self.cfg.servers.get(shard as usize).copied().unwrap_or(0)
    }

    /// Runs a stored record's op (recovery, fetch): its views came with it.
    pub(super) fn apply_record(&mut self, item: &ZkItem, views: &[Bytes]) -> Bytes {
        if !item.is_op() {
            self.stats.applied_noops = self.stats.applied_noops.saturating_add(item.noops);
            return Bytes::new();
        }
        self.stats.applied_ops += 1;
        let prepared = op::prepare(&self.tree, item, self.cfg.shards);
        let others: Vec<View> = decode_views(views)
            .into_iter()
            .filter(|v| v.shard != self.cfg.shard)
            .collect();
        self.run_op(item, &prepared, &others)
    }

    /// `item` is applied with `views`, giving `result`: store it, and answer once synced.
    fn applied(
        &mut self,
        item: ZkItem,
        views: Vec<Bytes>,
        result: Bytes,
        out: &mut Vec<NodeAction>,
    ) {
        if item.is_op() {
            self.stats.applied_ops += 1;
        } else {
            self.stats.applied_noops = self.stats.applied_noops.saturating_add(item.noops);
        }
        self.stored(item, views, result, out);
    }

    pub(super) fn stored(
        &mut self,
        item: ZkItem,
        views: Vec<Bytes>,
        result: Bytes,
        out: &mut Vec<NodeAction>,
    ) {
        let pos = item.pos;
        let end = item.end();
        let rec = ZkRecord {
            item: Some(item),
            views,
            result: result.clone(),
        };
        out.push(NodeAction::Append(vec![(
            pos,
            Bytes::from(rec.encode_to_vec()),
        )]));
        self.unsynced.push((pos, result));
        self.feed.log.advance(end - 1);
        self.last_progress = self.now;
        self.since_snapshot += end - pos;
        // Views of positions already used are never needed again.
        for s in 0..self.cfg.shards {
            let below = self.used[s as usize];
            while let Some((k, _)) = self.views.range((s, 0)..(s, below)).next() {
                let k = *k;
                if let Some(v) = self.views.remove(&k) {
                    self.view_bytes -= v.len();
                }
            }
        }
        if self.cfg.snapshot_every > 0 && self.since_snapshot >= self.cfg.snapshot_every {
            self.since_snapshot = 0;
            out.push(NodeAction::Snapshot {
                next: end,
                data: self.tree.shard_snapshot(),
            });
        }
    }
}
