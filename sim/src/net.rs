//! The simulated network: per-message delay (a floor plus an exponential tail), loss,
//! duplication, and directed partitions between any two nodes. Reordering follows from
//! independent delays. Every draw comes from the world's one seeded RNG.

use rand::rngs::StdRng;
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};

/// A node of the simulated cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Node {
    /// Sequencer `i`: 0 is the first primary, the others its backups.
    Sequencer(u32),
    /// A proxy machine: replica `m % 3` of the groups of triple `m / 3`.
    Proxy(u32),
    Client(u32),
    /// Log server `i` of the shared log: shard `i / replication`, place `i % replication`
    /// in that shard's chain (0 = head).
    LogServer(u32),
    /// ZK-Mason shard server (shard, index).
    ZkServer(u32, u32),
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Node::Sequencer(i) => write!(f, "sequencer-{i}"),
            Node::Proxy(m) => write!(f, "proxy-{m}"),
            Node::Client(c) => write!(f, "client-{c}"),
            Node::LogServer(i) => write!(f, "log-{i}"),
            Node::ZkServer(s, i) => write!(f, "zk-s{s}-r{i}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Every message takes at least this long.
    pub min_delay_us: u64,
    /// Mean of the exponential extra delay on top.
    pub mean_extra_us: f64,
    /// Probability that a message is lost.
    pub drop: f64,
    /// Probability that a message is delivered twice.
    pub dup: f64,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            min_delay_us: 20,
            mean_extra_us: 30.0,
            drop: 0.0,
            dup: 0.0,
        }
    }
}

pub struct Net {
    pub cfg: NetConfig,
    /// Directed pairs that cannot talk.
    blocked: BTreeSet<(Node, Node)>,
    /// Directed pairs whose messages take this much longer (a stalled process or link:
    /// its messages arrive late, not never).
    slow: BTreeMap<(Node, Node), u64>,
    /// Nodes whose messages (to them and from them) are duplicated with this probability,
    /// up to twice, and each copy delayed by up to this many us more: out of order, late
    /// and repeated.
    noisy: BTreeMap<Node, (f64, u64)>,
}

impl Net {
    pub fn new(cfg: NetConfig) -> Net {
        Net {
            cfg,
            blocked: BTreeSet::new(),
            slow: BTreeMap::new(),
            noisy: BTreeMap::new(),
        }
    }

    /// The delays at which copies of one message arrive (none if lost or blocked).
    pub fn route(&self, from: Node, to: Node, rng: &mut StdRng) -> Vec<u64> {
        if self.blocked.contains(&(from, to)) {
            return Vec::new();
        }
        if self.cfg.drop > 0.0 && rng.gen_bool(self.cfg.drop) {
            return Vec::new();
        }
        let extra = self.slow.get(&(from, to)).copied().unwrap_or(0);
        let mut out = vec![self.delay(rng) + extra];
        if self.cfg.dup > 0.0 && rng.gen_bool(self.cfg.dup) {
            out.push(self.delay(rng) + extra);
        }
        let noise = self
            .noisy
            .get(&from)
            .or_else(|| self.noisy.get(&to))
            .copied();
        if let Some((dup, late)) = noise {
            for _ in 0..2 {
                if rng.gen_bool(dup) {
                    out.push(self.delay(rng) + extra);
                }
            }
            for d in out.iter_mut() {
                *d += rng.gen_range(0..=late);
            }
        }
        out
    }

    /// Messages to and from `n` are duplicated (each copy with probability `dup`, twice
    /// at most) and delayed by up to `late_us` more, until the next heal.
    pub fn make_noisy(&mut self, n: Node, dup: f64, late_us: u64) {
        self.noisy.insert(n, (dup, late_us));
    }

    fn delay(&self, rng: &mut StdRng) -> u64 {
        let u: f64 = rng.gen_range(f64::EPSILON..1.0);
        self.cfg.min_delay_us + (-u.ln() * self.cfg.mean_extra_us) as u64
    }

    /// Cuts `a` from `b`: both ways, or only messages from `a` to `b`.
    pub fn partition(&mut self, a: &[Node], b: &[Node], both_ways: bool) {
        for &x in a {
            for &y in b {
                if x != y {
                    self.blocked.insert((x, y));
                    if both_ways {
                        self.blocked.insert((y, x));
                    }
                }
            }
        }
    }

    /// Messages from any of `a` to any of `b` take `extra_us` longer.
    pub fn slow_down(&mut self, a: &[Node], b: &[Node], extra_us: u64) {
        for &x in a {
            for &y in b {
                self.slow.insert((x, y), extra_us);
            }
        }
    }

    pub fn heal(&mut self) {
        self.blocked.clear();
        self.slow.clear();
        self.noisy.clear();
    }

    pub fn is_partitioned(&self) -> bool {
        !self.blocked.is_empty() || !self.slow.is_empty() || !self.noisy.is_empty()
    }
}
