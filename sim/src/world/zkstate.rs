//! What the checker asks of ZK-Mason's shard servers in the simulated world: each
//! server's node, what went wrong inside them, whether each one's disk gives back what it
//! applied, how far each shard's space was bound and handed out, and whether deliveries
//! and servers went quiet.

use super::World;
use mason_zk::DataTree;
use mason_zk_server::node::ZkNode;
use mason_zk_server::store;

impl World {
    /// What shard server `k` would recover from its disk now (what a crash keeps): a node
    /// from its snapshot and the records after it, or why it does not recover.
    fn zk_recover(&self, k: usize) -> Result<ZkNode, String> {
        let (shard, index) = self.zk_at(k);
        let (Some(z), Some(cfg), Some(s)) = (
            self.cfg.zk,
            self.zk_node_config(shard, index),
            self.zks.get(k),
        ) else {
            return Err("no such server".into());
        };
        let (tree, next) = match &s.snap {
            Some((next, data)) => DataTree::restore(data)
                .map(|t| (t, *next))
                .map_err(|e| format!("its snapshot does not restore: {e}"))?,
            None => (DataTree::new_shard(shard, z.shards), 0),
        };
        let mut node = ZkNode::new(cfg, tree, next);
        store::replay(&s.store.crash(), &mut node).map_err(|e| e.to_string())?;
        Ok(node)
    }

    /// Every live shard server whose disk would not give back what it applied: (shard,
    /// index, what it would recover to, or why not).
    pub fn zk_unrecoverable(&self) -> Vec<(u32, u32, String)> {
        let mut out = Vec::new();
        for (k, s) in self.zks.iter().enumerate().filter(|(_, s)| s.alive) {
            let (shard, index) = self.zk_at(k);
            match self.zk_recover(k) {
                Ok(n)
                    if n.next() == s.node.next() && n.tree().digest() == s.node.tree().digest() => {
                }
                Ok(n) => out.push((
                    shard,
                    index,
                    format!(
                        "position {} (it stands at {}){}",
                        n.next(),
                        s.node.next(),
                        if n.next() == s.node.next() {
                            " with another tree"
                        } else {
                            ""
                        }
                    ),
                )),
                Err(e) => out.push((shard, index, e)),
            }
        }
        out
    }

    /// Every shard server: (shard, index, whether it is up, its node).
    pub fn zk_servers(&self) -> Vec<(u32, u32, bool, &ZkNode)> {
        (0..self.zks.len())
            .map(|k| {
                let (s, i) = self.zk_at(k);
                (s, i, self.zks[k].alive, &self.zks[k].node)
            })
            .collect()
    }

    /// What went wrong inside the shard servers: two things delivered for one number,
    /// a position applied twice, a server that did not recover from its disk.
    pub fn zk_anomalies(&self) -> Vec<String> {
        let conflicts: u64 = self.zk_conflicts
            + self
                .zks
                .iter()
                .filter(|s| s.alive)
                .map(|s| s.node.stats.conflicts)
                .sum::<u64>();
        let mut v = self.zk_failures.clone();
        if conflicts > 0 {
            v.push(format!(
                "{conflicts} positions were delivered two different things"
            ));
        }
        if self.zk_twice > 0 {
            v.push(format!("{} positions were applied twice", self.zk_twice));
        }
        v
    }

    /// Per shard space (1..=shards), one past the highest number any replica bound there.
    pub fn zk_bound_tops(&self) -> Vec<u64> {
        let Some(z) = self.cfg.zk else {
            return Vec::new();
        };
        let mut top = vec![0u64; z.shards as usize];
        for b in self.bound.values().flatten() {
            let m = mason_common::types::SpaceMask(b.space_mask);
            for ((space, base), count) in m.iter().zip(&b.bases).zip(&b.counts) {
                if let Some(t) = space.checked_sub(1).and_then(|s| top.get_mut(s as usize)) {
                    *t = (*t).max(base + u64::from(*count));
                }
            }
        }
        top
    }

    /// The next number of each space at the live active sequencer of the highest epoch.
    pub fn seq_counters(&self) -> Option<Vec<u64>> {
        self.seqs
            .iter()
            .filter(|s| s.alive)
            .filter_map(|s| s.node.sequencer())
            .max_by_key(|s| s.epoch())
            .map(|s| s.counters().to_vec())
    }

    /// Whether ZK-Mason went quiet: every serving leader's deliveries are done, and every
    /// live shard server applied all its space bound (always true without ZK-Mason).
    pub fn zk_settled(&self) -> bool {
        if self.cfg.zk.is_none() {
            return true;
        }
        let delivered = self
            .machines
            .iter()
            .filter(|m| m.alive)
            .flat_map(|m| m.replicas.iter().flatten())
            .filter(|r| r.is_serving())
            .all(|r| r.undelivered() == 0);
        let tops = self.zk_bound_tops();
        delivered
            && self.zk_servers().iter().all(|(s, _, alive, n)| {
                !alive || tops.get(*s as usize).is_some_and(|t| n.next() >= *t)
            })
    }
}
