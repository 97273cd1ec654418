//! What the simulated world's faults do: crashes that lose a machine's memory (and its
//! unsynced writes when fsync is off), restarts from its simulated disk, sequencer crashes
//! and restarts (as backups), partitions, slow links, slow clocks, loss, client deaths,
//! and the shared log's servers and ZK-Mason's shard servers crashing (or losing their
//! disks), restarting and being cut off.

use super::{DiskLoss, Ev, World, WorldConfig};
use crate::net::Node;
use mason_common::msg::{Body, Takeover};
use mason_proxy::store::Store;
use mason_proxy::{Replica, ReplicaConfig};
use mason_sequencer::{SeqNode, SeqNodeConfig};
use rand::Rng;

/// What a fault does. Scenarios schedule these at virtual times.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    Crash(u32),
    Restart(u32),
    /// Crash whichever machine leads `group` at that moment.
    CrashLeader(u32),
    /// Crash a machine hosting a follower of `group`.
    CrashFollower(u32),
    /// Cut the leader of `group` from the other machines of its triple (both ways); it still
    /// reaches the sequencer and clients.
    IsolateLeader(u32),
    /// The clock of the machine leading `group` runs slow: its ticks (Raft's, and its
    /// replicas' timers) come `factor` times further apart, until the next heal or its
    /// restart.
    SlowClock {
        group: u32,
        factor: u64,
    },
    Partition {
        a: Vec<Node>,
        b: Vec<Node>,
        both_ways: bool,
    },
    Heal,
    RestartAll,
    Loss {
        drop: f64,
        dup: f64,
    },
    /// A client dies for good: its unanswered ops are abandoned.
    CrashClient(u32),
    /// Sequencer `i` crashes (its state is lost).
    CrashSequencer(u32),
    /// Sequencer `i` restarts, as a backup.
    RestartSequencer(u32),
    /// Sequencer `seq` is asked to take over from `epoch`, as if by a group leader.
    AskTakeover {
        seq: u32,
        epoch: u64,
    },
    /// Messages from `a` to `b` take `extra_us` longer until the next heal.
    Slow {
        a: Vec<Node>,
        b: Vec<Node>,
        extra_us: u64,
    },
    /// Messages to and from `node` are duplicated (each extra copy with probability
    /// `dup`) and delayed by up to `late_us` more, until the next heal.
    Noisy {
        node: Node,
        dup: f64,
        late_us: u64,
    },
    /// Log server `i` crashes: it keeps only what it had synced.
    CrashLog(u32),
    /// Log server `i` restarts from what it kept.
    RestartLog(u32),
    /// Log server `i` is cut from every other node (both ways) until the next heal.
    PartitionLog(u32),
    /// Shard server (shard, index) crashes: it keeps what it had synced, less what the
    /// `DiskLoss` says.
    CrashZk(u32, u32, DiskLoss),
    /// Shard server (shard, index) restarts from what it kept.
    RestartZk(u32, u32),
    /// Shard server (shard, index) is cut from every other node (both ways) until the
    /// next heal.
    PartitionZk(u32, u32),
}

impl World {
    pub(super) fn start_machine(&mut self, m: u32) {
        let per = self.cfg.groups_per_triple;
        let mach = &self.machines[m as usize];
        let fresh = mach.incarnation == 0;
        let groups = mach.groups.clone();
        for (slot, group) in groups.into_iter().enumerate() {
            let storage = Store::new(vec![1, 2, 3]);
            let disk = &self.machines[m as usize].disks[slot];
            if let Some(snap) = &disk.snap {
                if let Err(e) = storage.install(snap.clone()) {
                    tracing::error!(error = %e, "installing a simulated disk's snapshot");
                }
            }
            for (_, hs, entries) in &disk.records {
                if let Err(e) = storage.replay(hs.as_ref(), entries) {
                    tracing::error!(error = %e, "replaying a simulated disk");
                }
            }
            let jitter = self
                .rng
                .gen_range(0..self.cfg.replica.election_ticks.max(1));
            let cfg = ReplicaConfig {
                group,
                replica: m % 3,
                replicas: 3,
                campaign_on_start: fresh && m.is_multiple_of(3),
                election_jitter: Some(jitter),
                tick_us: self.cfg.tick_us,
                ..self.cfg.replica.clone()
            };
            debug_assert_eq!(group % per, slot as u32);
            // Records are kept across restarts, as on disk: they carry their Raft index.
            self.bound.entry((group, m % 3)).or_default();
            match Replica::new(cfg, storage) {
                Ok(r) => self.machines[m as usize].replicas[slot] = Some(r),
                Err(e) => tracing::error!(error = %e, "starting a simulated replica"),
            }
        }
        let mach = &mut self.machines[m as usize];
        mach.alive = true;
        mach.incarnation += 1;
        mach.clock_factor = 1;
        let inc = mach.incarnation;
        let at = self.now + self.rng.gen_range(0..self.cfg.tick_us.max(1));
        self.schedule(at, Ev::Tick(m, inc));
        // A started replica flushes once (replica 0 of a fresh group campaigns).
        for slot in 0..self.machines[m as usize].groups.len() {
            self.flush(m, slot);
        }
    }

    fn crash(&mut self, m: u32) {
        let now = self.now;
        let fsync = self.cfg.fsync;
        let window = self.cfg.unsynced_window_us;
        let mach = &mut self.machines[m as usize];
        if !mach.alive {
            return;
        }
        mach.alive = false;
        let closed = mach.incarnation;
        mach.incarnation += 1;
        mach.inbox.clear();
        for r in mach.replicas.iter_mut() {
            self.anomalies += r.as_ref().map_or(0, Replica::anomalies);
            *r = None;
        }
        for d in mach.disks.iter_mut() {
            // Fsync on: what was not yet durable is gone. Off: also what was written in
            // the last `window` (the page cache).
            let by = if fsync {
                now
            } else {
                now.saturating_sub(window)
            };
            d.records.retain(|(t, _, _)| *t <= by);
            d.synced_at = d.synced_at.min(now);
        }
        for g in self.leaders.iter_mut() {
            if *g == Some(m) {
                *g = None;
            }
        }
        self.zk_proxy_closed(m, closed);
        self.trace.note(now, format!("crash proxy-{m}"));
    }

    pub(super) fn fault(&mut self, f: Fault) {
        match f {
            Fault::Crash(m) => self.crash(m),
            Fault::Restart(m) => {
                if !self.machines[m as usize].alive {
                    self.trace.note(self.now, format!("restart proxy-{m}"));
                    self.start_machine(m);
                }
            }
            Fault::CrashLeader(g) => match self.leader_of(g) {
                Some(m) => self.crash(m),
                None => self
                    .trace
                    .note(self.now, format!("group {g} has no leader to crash")),
            },
            Fault::CrashFollower(g) => {
                let leader = self.leader_of(g);
                let t = g / self.cfg.groups_per_triple;
                let follower = (t * 3..t * 3 + 3)
                    .find(|&m| Some(m) != leader && self.machines[m as usize].alive);
                if let Some(m) = follower {
                    self.crash(m);
                }
            }
            Fault::IsolateLeader(g) => {
                if let Some(m) = self.leader_of(g) {
                    let t = m / 3;
                    let others: Vec<Node> = (t * 3..t * 3 + 3)
                        .filter(|&x| x != m)
                        .map(Node::Proxy)
                        .collect();
                    self.net.partition(&[Node::Proxy(m)], &others, true);
                    self.trace.note(
                        self.now,
                        format!("isolate proxy-{m} (leader of group {g}) from its triple"),
                    );
                }
            }
            Fault::SlowClock { group, factor } => {
                if let Some(m) = self.leader_of(group) {
                    self.machines[m as usize].clock_factor = factor;
                    self.trace.note(
                        self.now,
                        format!("proxy-{m}'s clock (leader of group {group}) runs {factor}x slow"),
                    );
                }
            }
            Fault::Partition { a, b, both_ways } => {
                self.trace.note(
                    self.now,
                    format!("partition {a:?} from {b:?} (both ways: {both_ways})"),
                );
                self.net.partition(&a, &b, both_ways);
            }
            Fault::Heal => {
                self.trace.note(self.now, "heal".to_string());
                self.net.heal();
                for mach in self.machines.iter_mut() {
                    mach.clock_factor = 1;
                }
                self.relink_logs();
            }
            Fault::RestartAll => {
                for m in 0..self.machines.len() as u32 {
                    if !self.machines[m as usize].alive {
                        self.trace.note(self.now, format!("restart proxy-{m}"));
                        self.start_machine(m);
                    }
                }
                for i in 0..self.seqs.len() as u32 {
                    self.restart_sequencer(i);
                }
                self.restart_logs();
                self.restart_zk_servers();
            }
            Fault::CrashClient(c) => {
                if let Some(cl) = self.clients.get_mut(c as usize) {
                    cl.alive = false;
                    self.trace.note(self.now, format!("crash client-{c}"));
                }
            }
            Fault::CrashSequencer(i) => {
                if let Some(s) = self.seqs.get_mut(i as usize).filter(|s| s.alive) {
                    s.alive = false;
                    s.incarnation += 1;
                    self.trace.note(self.now, format!("crash sequencer-{i}"));
                }
            }
            Fault::RestartSequencer(i) => self.restart_sequencer(i),
            Fault::AskTakeover { seq, epoch } => {
                self.trace.note(
                    self.now,
                    format!("ask sequencer-{seq} to take over from epoch {epoch}"),
                );
                let body = Body::Takeover(Takeover { epoch, group: 0 });
                self.deliver(Node::Proxy(0), Node::Sequencer(seq), body);
            }
            Fault::Slow { a, b, extra_us } => {
                self.trace.note(
                    self.now,
                    format!("slow {a:?} -> {b:?} by {} ms", extra_us / 1000),
                );
                self.net.slow_down(&a, &b, extra_us);
            }
            Fault::Noisy { node, dup, late_us } => {
                self.trace.note(
                    self.now,
                    format!(
                        "{node}'s messages duplicated ({dup}) and up to {} ms late",
                        late_us / 1000
                    ),
                );
                self.net.make_noisy(node, dup, late_us);
            }
            Fault::CrashLog(i) => self.crash_log(i),
            Fault::RestartLog(i) => self.restart_log(i),
            Fault::PartitionLog(i) => {
                let me = Node::LogServer(i);
                let others = self.everyone_but(me);
                self.trace
                    .note(self.now, format!("cut log-{i} from everyone"));
                self.net.partition(&[me], &others, true);
            }
            Fault::CrashZk(s, i, loss) => self.crash_zk(s, i, loss),
            Fault::RestartZk(s, i) => self.restart_zk(s, i),
            Fault::PartitionZk(s, i) => {
                let me = Node::ZkServer(s, i);
                let others = self.everyone_but(me);
                self.trace.note(self.now, format!("cut {me} from everyone"));
                self.net.partition(&[me], &others, true);
            }
            Fault::Loss { drop, dup } => {
                self.trace.note(self.now, format!("loss {drop} dup {dup}"));
                self.net.cfg.drop = drop;
                self.net.cfg.dup = dup;
            }
        }
    }

    /// Restarts a crashed sequencer with no state, as a backup.
    fn restart_sequencer(&mut self, i: u32) {
        let Some(inc) = self
            .seqs
            .get(i as usize)
            .filter(|s| !s.alive)
            .map(|s| s.incarnation + 1)
        else {
            return;
        };
        let cfg = seq_config(&self.cfg, i, false, inc);
        let Some(s) = self.seqs.get_mut(i as usize) else {
            return;
        };
        s.node = SeqNode::new(cfg);
        s.alive = true;
        s.incarnation = inc;
        self.trace
            .note(self.now, format!("restart sequencer-{i} (as a backup)"));
        let at = self.now + self.cfg.seq_tick_us;
        self.schedule(at, Ev::SeqTick(i, inc));
    }
}

/// Sequencer `id`'s configuration in its incarnation `inc` (0 at the start); its ballot
/// is drawn from the seed, new for every incarnation, as a real one draws it at random.
pub(super) fn seq_config(cfg: &WorldConfig, id: u32, primary: bool, inc: u64) -> SeqNodeConfig {
    let mut x = cfg.seed ^ (u64::from(id) << 40) ^ inc.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // splitmix64
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    SeqNodeConfig {
        id,
        sequencers: cfg.sequencers.max(1),
        groups: cfg.triples * cfg.groups_per_triple,
        spaces: cfg.spaces,
        primary,
        ballot: x | 1,
        mutant: cfg.seq_mutant,
        ..SeqNodeConfig::default()
    }
}
