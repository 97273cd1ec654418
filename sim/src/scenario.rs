//! Named scenarios (a cluster shape, a network, and a fault schedule, scripted or drawn
//! from the seed) and the runner of one seed: build the world, run the load with its
//! faults, heal everything, let it settle, and check.

use crate::check::check;
use crate::corfu;
use crate::failover;
use crate::keeper;
use crate::net::{NetConfig, Node};
use crate::trace::{stamp, Trace};
use crate::world::{Fault, World, WorldConfig};
use crate::zkmason;
use mason_client::load::OpSpaces;
use mason_common::verify::{Report, Violation};
use mason_proxy::{Mutant, ReplicaConfig};
use mason_sequencer::SeqMutant;
use mason_zk_server::node::NodeMutant;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub(crate) const MS: u64 = 1_000;
pub(crate) const S: u64 = 1_000_000;

pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    /// Whether sweeps over "all" include it (the big one is run on its own).
    pub in_all: bool,
    build: fn(u64) -> Plan,
}

/// A world and what happens to it.
pub struct Plan {
    pub world: WorldConfig,
    /// Scripted faults at virtual times.
    pub faults: Vec<(u64, Fault)>,
    /// Times at which a fault ends (progress must resume within the live bound).
    pub heals: Vec<u64>,
    pub live_bound_us: u64,
}

/// An index into `weights`, drawn with probability proportional to its weight.
pub(crate) fn pick_weighted(rng: &mut StdRng, weights: &[u32]) -> usize {
    let mut pick = rng.gen_range(0..weights.iter().sum::<u32>().max(1));
    weights
        .iter()
        .position(|w| {
            let hit = pick < *w;
            pick = pick.saturating_sub(*w);
            hit
        })
        .unwrap_or(0)
}

pub(crate) fn base(seed: u64) -> Plan {
    Plan {
        world: WorldConfig {
            seed,
            spaces: 2,
            triples: 1,
            groups_per_triple: 2,
            clients: 4,
            concurrency: 2,
            op_spaces: OpSpaces::Random,
            load_until_us: 2 * S,
            net: NetConfig::default(),
            replica: ReplicaConfig {
                spaces: 2,
                max_batch_ops: 64,
                max_outstanding: 4,
                election_ticks: 10,
                heartbeat_ticks: 2,
                seq_retry_us: 100 * MS,
                sequencers: 2,
                seq_heartbeat_us: 25 * MS,
                seq_timeout_us: 150 * MS,
                // Small, so that runs compact their logs and lagging followers catch up
                // from snapshots.
                snapshot_entries: 300,
                ..ReplicaConfig::default()
            },
            tick_us: 10 * MS,
            tick_jitter_us: 2 * MS,
            process_delay_us: 100,
            retry_timeout_us: 200 * MS,
            fsync: true,
            unsynced_window_us: 30 * MS,
            persist_max_us: 500,
            sequencers: 2,
            seq_tick_us: 2 * MS,
            seq_mutant: None,
            log: None,
            keeper: false,
            zk: None,
            local_reads: 0,
            readers: 0,
            zk_closes: 0,
        },
        faults: Vec::new(),
        heals: Vec::new(),
        live_bound_us: 2 * S,
    }
}

pub(crate) fn steady(seed: u64) -> Plan {
    base(seed)
}

pub(crate) fn follower_crash(seed: u64) -> Plan {
    let mut p = base(seed);
    p.faults = vec![
        (600 * MS, Fault::CrashFollower(0)),
        (1200 * MS, Fault::RestartAll),
    ];
    p.heals = vec![1200 * MS];
    p
}

pub(crate) fn leader_crash(seed: u64) -> Plan {
    let mut p = base(seed);
    p.faults = vec![
        (700 * MS, Fault::CrashLeader(0)),
        (1400 * MS, Fault::RestartAll),
    ];
    p.heals = vec![1400 * MS];
    p
}

/// Every machine of the triple loses power at once, under load: what each had not yet
/// made durable is gone, on all three.
pub(crate) fn power_loss(seed: u64) -> Plan {
    let mut p = base(seed);
    // Writes take up to 3 ms to become durable: a wide window for the crash to fall in.
    p.world.persist_max_us = 3 * MS;
    p.faults = vec![
        (700 * MS, Fault::Crash(0)),
        (700 * MS, Fault::Crash(1)),
        (700 * MS, Fault::Crash(2)),
        (1000 * MS, Fault::RestartAll),
    ];
    p.heals = vec![1000 * MS];
    p
}

pub(crate) fn leader_isolated(seed: u64) -> Plan {
    let mut p = base(seed);
    p.faults = vec![
        (500 * MS, Fault::IsolateLeader(0)),
        (1300 * MS, Fault::Heal),
    ];
    p.heals = vec![1300 * MS];
    p
}

pub(crate) fn client_crash(seed: u64) -> Plan {
    let mut p = base(seed);
    p.faults = vec![
        (600 * MS, Fault::CrashClient(0)),
        (900 * MS, Fault::CrashLeader(0)),
    ];
    p.heals = vec![900 * MS];
    p
}

pub(crate) fn loss(seed: u64) -> Plan {
    let mut p = base(seed);
    p.world.net.drop = 0.05;
    // Nothing below retransmits a lost message (no TCP here): retry sooner, so that the
    // run does more than wait out timeouts.
    p.world.retry_timeout_us = 40 * MS;
    p.world.replica.seq_retry_us = 20 * MS;
    p
}

pub(crate) fn dup_reorder(seed: u64) -> Plan {
    let mut p = base(seed);
    p.world.net.dup = 0.05;
    p.world.net.mean_extra_us = 400.0;
    p
}

/// Episodes drawn from the seed, one at a time: a machine crashes and restarts, a machine
/// is cut from its triple (or from the sequencer) and healed, or the network turns lossy
/// for a while. At most one machine of a triple is affected at once, so every group keeps
/// a majority.
pub(crate) fn random(seed: u64) -> Plan {
    let mut p = base(seed);
    p.world.load_until_us = 3 * S;
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_fa17);
    let mut t = 200 * MS;
    let mut crashed_clients = 0;
    let machines = p.world.triples * 3;
    // Every episode ends while the load still runs, so Live is checked after each.
    while t + 100 * MS < p.world.load_until_us - 300 * MS {
        let len = rng
            .gen_range(50 * MS..600 * MS)
            .min(p.world.load_until_us - 300 * MS - t);
        let m = rng.gen_range(0..machines);
        // Kinds by weight: crash 3, cut from the triple 3, cut from the sequencer 2, loss 2,
        // a client dies for good 1.
        let kind = pick_weighted(&mut rng, &[3, 3, 2, 2, 1]);
        let (start, end) = match kind {
            0 => (Fault::Crash(m), Fault::RestartAll),
            1 => {
                let t3 = m / 3;
                let others = (t3 * 3..t3 * 3 + 3)
                    .filter(|&x| x != m)
                    .map(Node::Proxy)
                    .collect();
                let both_ways = rng.gen_bool(0.5);
                (
                    Fault::Partition {
                        a: vec![Node::Proxy(m)],
                        b: others,
                        both_ways,
                    },
                    Fault::Heal,
                )
            }
            2 => (
                Fault::Partition {
                    a: vec![Node::Proxy(m)],
                    b: vec![Node::Sequencer(0)],
                    both_ways: true,
                },
                Fault::Heal,
            ),
            // At most all clients but one die, so that progress can still be seen.
            4 if crashed_clients + 1 < p.world.clients => {
                crashed_clients += 1;
                let c = rng.gen_range(0..p.world.clients);
                (
                    Fault::CrashClient(c),
                    Fault::Loss {
                        drop: 0.0,
                        dup: 0.0,
                    },
                )
            }
            _ => (
                Fault::Loss {
                    drop: rng.gen_range(0.01..0.2),
                    dup: rng.gen_range(0.0..0.1),
                },
                Fault::Loss {
                    drop: 0.0,
                    dup: 0.0,
                },
            ),
        };
        p.faults.push((t, start));
        p.faults.push((t + len, end));
        t += len;
        // The next episode starts after the group had time to recover, so that Live is
        // checked after every episode.
        p.heals.push(t);
        t += p.live_bound_us + rng.gen_range(0..200 * MS);
    }
    p
}

/// Mason's largest sequencing deployment: 48 proxy machines in 16 triples, each hosting 8
/// groups (128 groups, 384 Raft replicas), 4 spaces, 16 client machines of 2 clients.
fn mason_128(seed: u64) -> Plan {
    let mut p = base(seed);
    p.world.spaces = 4;
    p.world.replica.spaces = 4;
    p.world.triples = 16;
    p.world.groups_per_triple = 8;
    p.world.clients = 32;
    p.world.concurrency = 2;
    p.world.load_until_us = 10 * S;
    p.faults = vec![(5 * S, Fault::CrashLeader(0)), (6 * S, Fault::RestartAll)];
    p.heals = vec![6 * S];
    p
}

pub const SCENARIOS: &[Scenario] = &[
    Scenario { name: "steady", about: "1 triple, 2 groups, 2 spaces, 4 clients; no faults", in_all: true, build: steady },
    Scenario { name: "follower-crash", about: "a follower's machine crashes at 0.6s and restarts from its disk at 1.2s", in_all: true, build: follower_crash },
    Scenario { name: "leader-crash", about: "the machine leading group 0 crashes at 0.7s and restarts at 1.4s", in_all: true, build: leader_crash },
    Scenario { name: "power-loss", about: "all three machines of the triple crash at once at 0.7s, under load, with writes up to 3 ms from durable; they restart from their disks at 1.0s", in_all: true, build: power_loss },
    Scenario { name: "leader-isolated", about: "group 0's leader is cut from its followers (not from the sequencer) at 0.5s, healed at 1.3s", in_all: true, build: leader_isolated },
    Scenario { name: "client-crash", about: "a client dies for good with ops in flight at 0.6s; group 0's leader crashes at 0.9s", in_all: true, build: client_crash },
    Scenario { name: "loss", about: "5% of all messages are lost", in_all: true, build: loss },
    Scenario { name: "dup-reorder", about: "5% of messages are duplicated; delays vary widely, so messages reorder", in_all: true, build: dup_reorder },
    Scenario { name: "random", about: "random crash, partition and loss episodes drawn from the seed", in_all: true, build: random },
    Scenario { name: "seq-crash-dup-backup", about: "the primary sequencer crashes at 0.6-0.7s; the backup's messages both ways come up to 3 times, up to 60 ms late; the primary restarts 0.5s later", in_all: true, build: failover::seq_crash_dup_backup },
    Scenario { name: "seq-crash", about: "the primary sequencer crashes at 0.7s (a backup takes over) and restarts as a backup at 1.4s", in_all: true, build: failover::seq_crash },
    Scenario { name: "leader-crash-in-seq-recovery", about: "the primary sequencer crashes at 0.7s; group 0's leader crashes during the takeover", in_all: true, build: failover::leader_crash_during_seq_recovery },
    Scenario { name: "seq-crash-in-election", about: "group 0's leader crashes at 0.7s; the primary sequencer crashes during the election", in_all: true, build: failover::seq_crash_during_election },
    Scenario { name: "backup-crash-mid-takeover", about: "3 sequencers: the primary crashes at 0.7s, the backup taking over crashes mid-takeover; the third takes over", in_all: true, build: failover::backup_crash_mid_takeover },
    Scenario { name: "backups-racing", about: "3 sequencers: the primary crashes and both backups are asked to take over at once", in_all: true, build: failover::backups_racing },
    Scenario { name: "old-primary-returns", about: "the primary stalls at 0.7s (its messages arrive 140-260 ms late); a backup takes over; its late answers must bind nothing", in_all: true, build: failover::old_primary_returns },
    Scenario { name: "seq-partial-partition", about: "2 triples: the primary is cut from one triple's groups only (0.7s-1.5s)", in_all: true, build: failover::seq_partial_partition },
    Scenario { name: "long-split", about: "2 triples: primary + one triple split from backup + the other for 1.4 s, then healed", in_all: true, build: failover::long_split },
    Scenario { name: "log-steady", about: "CorfuMason: 1 space written to a log of 2 shards x 2 chained servers; no faults", in_all: true, build: corfu::log_steady },
    Scenario { name: "log-server-crash", about: "CorfuMason: a random log server crashes at 0.6-0.9s and restarts 0.2-0.6s later", in_all: true, build: corfu::log_server_crash },
    Scenario { name: "log-server-partition", about: "CorfuMason: a random log server is cut from everyone at 0.6-0.8s, healed 0.3-0.7s later", in_all: true, build: corfu::log_server_partition },
    Scenario { name: "log-leader-crash", about: "CorfuMason: the log turns slow at 0.5s; group 0's leader crashes with writes in flight at 0.7s", in_all: true, build: corfu::log_leader_crash },
    Scenario { name: "log-random", about: "CorfuMason: random log server crash/cut-off, proxy crash/cut-off and loss episodes", in_all: true, build: corfu::log_random },
    Scenario { name: "keeper-steady", about: "RSMKeeper: 2 groups keep ZooKeeper trees; 4 clients create, set and get 6 shared znodes; no faults", in_all: true, build: keeper::keeper_steady },
    Scenario { name: "keeper-follower-crash", about: "RSMKeeper: a follower's machine crashes at 0.6s and restarts from its disk at 1.2s", in_all: true, build: keeper::keeper_follower_crash },
    Scenario { name: "keeper-leader-crash", about: "RSMKeeper: the machine leading group 0 crashes at 0.7s and restarts at 1.4s", in_all: true, build: keeper::keeper_leader_crash },
    Scenario { name: "keeper-leader-isolated", about: "RSMKeeper: group 0's leader is cut from its followers at 0.5s, healed at 1.3s", in_all: true, build: keeper::keeper_leader_isolated },
    Scenario { name: "keeper-dup-reorder", about: "RSMKeeper: 5% of messages are duplicated; delays vary widely, so messages reorder", in_all: true, build: keeper::keeper_dup_reorder },
    Scenario { name: "keeper-client-crash", about: "RSMKeeper: a client dies for good at 0.6s and its session expires (0.4s timeout), with its ephemeral; group 0's leader crashes at 0.9s", in_all: true, build: keeper::keeper_client_crash },
    Scenario { name: "keeper-local-reads", about: "RSMKeeper, reads of one znode after a ReadIndex round instead of the log (60%; 2 of 4 clients only read): group 0's leader is cut from its followers at 0.5s, its clock 4x slow, healed at 1.3s", in_all: true, build: keeper::keeper_local_reads },
    Scenario { name: "keeper-random", about: "RSMKeeper: random crash, partition and loss episodes drawn from the seed", in_all: true, build: keeper::keeper_random },
    Scenario { name: "zkmason-steady", about: "ZK-Mason: 2 groups sequence ZooKeeper requests over a tree of 2 shards x 3 servers; 4 clients; no faults", in_all: true, build: zkmason::zkmason_steady },
    Scenario { name: "zkmason-server-crash", about: "ZK-Mason: a random shard server crashes at 0.6-0.9s and restarts from its disk 0.2-0.6s later", in_all: true, build: zkmason::zkmason_server_crash },
    Scenario { name: "zkmason-server-lost", about: "ZK-Mason, 3 shards: a random shard server loses its disk at 0.6-0.8s and restarts empty 0.2-0.5s later (it catches up from its peers)", in_all: true, build: zkmason::zkmason_server_lost },
    Scenario { name: "zkmason-leader-crash", about: "ZK-Mason: the shard servers turn slow to reach at 0.5s; group 0's leader crashes with deliveries in flight at 0.7s", in_all: true, build: zkmason::zkmason_leader_crash },
    Scenario { name: "zkmason-partition", about: "ZK-Mason: a random shard server is cut from everyone at 0.6-0.8s, healed 0.3-0.7s later", in_all: true, build: zkmason::zkmason_partition },
    Scenario { name: "zkmason-dup-reorder", about: "ZK-Mason, 3 shards: 5% of messages are duplicated; delays vary widely, so deliveries, views and fetches reorder", in_all: true, build: zkmason::zkmason_dup_reorder },
    Scenario { name: "zkmason-client-crash", about: "ZK-Mason: a client dies for good at 0.6s and its session expires (0.4s timeout) on every shard with its ephemeral, while a shard server is cut off (0.8-1.3s) and group 0's leader crashes (0.9s)", in_all: true, build: zkmason::zkmason_client_crash },
    Scenario { name: "zkmason-local-reads", about: "ZK-Mason, reads answered by one shard server once it applied what the client saw (60%; 2 of 6 clients only read): two servers of a shard answer the proxies 8-20 ms late; the third, cut from them, crashes and restarts from an old snapshot, three times (0.4s-1.85s)", in_all: true, build: zkmason::zkmason_local_reads },
    Scenario { name: "zkmason-session-close", about: "ZK-Mason: clients close their ZooKeeper session (5% of ops, another op in flight) and open a new one, while a shard server's deliveries come 2-6 ms late and reordered from 0.3s", in_all: true, build: zkmason::zkmason_session_close },
    Scenario { name: "zkmason-random", about: "ZK-Mason, 2 or 3 shards: random shard server crash/disk loss/cut-off, proxy crash/cut-off, leader crash and loss episodes", in_all: true, build: zkmason::zkmason_random },
    Scenario { name: "mason-128", about: "48 proxy machines (16 triples x 8 groups = 128 groups), 4 spaces, 32 clients, 10 s; a leader crash at 5 s", in_all: false, build: mason_128 },
];

pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

/// A deliberate protocol breakage in a proxy replica, in the sequencers, or in ZK-Mason's
/// shard servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimMutant {
    Proxy(Mutant),
    Seq(SeqMutant),
    Zk(NodeMutant),
}

impl std::str::FromStr for SimMutant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "no-fill" => Ok(SimMutant::Seq(SeqMutant::NoFill)),
            "majority-promises" => Ok(SimMutant::Seq(SeqMutant::MajorityPromises)),
            "zk-out-of-order" => Ok(SimMutant::Zk(NodeMutant::ApplyOnArrival)),
            "zk-no-views" => Ok(SimMutant::Zk(NodeMutant::NoViews)),
            "read-any-state" => Ok(SimMutant::Zk(NodeMutant::ReadAnyState)),
            "zk-close-on-arrival" => Ok(SimMutant::Zk(NodeMutant::CloseOnArrival)),
            _ => s.parse::<Mutant>().map(SimMutant::Proxy).map_err(|e| {
                format!(
                    "{e}, or of the sequencer: no-fill, majority-promises, or of ZK-Mason's \
                     shard servers: zk-out-of-order, zk-no-views, read-any-state, \
                     zk-close-on-arrival"
                )
            }),
        }
    }
}

impl From<Mutant> for SimMutant {
    fn from(m: Mutant) -> SimMutant {
        SimMutant::Proxy(m)
    }
}

pub struct Options {
    pub mutant: Option<SimMutant>,
    /// Print every event as it happens.
    pub verbose: bool,
}

pub struct Outcome {
    pub seed: u64,
    pub result: Result<Report, Violation>,
    pub events: u64,
    pub virtual_us: u64,
    pub leader_changes: u64,
    /// Faults and leadership changes, then the last events.
    pub notes: Vec<String>,
    pub recent: Vec<String>,
    /// When the violation is about one op: every message about it (from a replay).
    pub focused: Vec<String>,
    /// Local reads (`WorldConfig::local_reads`): sent, and acknowledged (each one in the
    /// per-znode check).
    pub local_reads: (u64, u64),
}

impl Outcome {
    /// One line for a passing seed, or the failure with its replay command and trace.
    pub fn render(&self, scenario: &str, mutant: Option<&str>) -> String {
        match &self.result {
            Ok(r) => {
                let noops: Vec<u64> = r.noops.clone();
                let reads = match self.local_reads {
                    (0, _) => String::new(),
                    (sent, acked) => format!(" local-reads={acked}/{sent}"),
                };
                format!(
                    "seed {}: ok {} events={} ops={} acked={} noops={:?} leader-changes={}{reads}",
                    self.seed,
                    stamp(self.virtual_us),
                    self.events,
                    r.ops,
                    r.acked,
                    noops,
                    self.leader_changes
                )
            }
            Err(v) => {
                let m = mutant.map(|m| format!(" --mutant {m}")).unwrap_or_default();
                let mut s = format!(
                    "seed {}: FAIL {v}\n  replay: mason sim --scenario {scenario} --seed {}{m} --trace\n  faults and leadership:\n",
                    self.seed, self.seed
                );
                for n in self.notes.iter().rev().take(30).rev() {
                    s.push_str(&format!("    {n}\n"));
                }
                if let Err(Violation {
                    op: Some((c, q)), ..
                }) = &self.result
                {
                    s.push_str(&format!("  messages about client {c} op {q}:\n"));
                    for n in self.focused.iter().take(40) {
                        s.push_str(&format!("    {n}\n"));
                    }
                }
                s.push_str("  last events:\n");
                for n in &self.recent {
                    s.push_str(&format!("    {n}\n"));
                }
                s.pop();
                s
            }
        }
    }
}

/// Runs one seed of a scenario. A violation about one op is followed by a replay of the
/// same seed (runs are deterministic) that collects every message about that op.
pub fn run_seed(sc: &Scenario, seed: u64, opts: &Options) -> Outcome {
    let mut o = run_once(sc, seed, opts, Trace::new(opts.verbose, 25));
    if let Err(Violation {
        op: Some((c, q)), ..
    }) = &o.result
    {
        let again = run_once(sc, seed, opts, Trace::new(false, 0).focus(*c, *q));
        o.focused = again.focused;
    }
    o
}

fn run_once(sc: &Scenario, seed: u64, opts: &Options, trace: Trace) -> Outcome {
    let mut plan = (sc.build)(seed);
    match opts.mutant {
        Some(SimMutant::Proxy(m)) => plan.world.replica.mutant = Some(m),
        Some(SimMutant::Seq(m)) => plan.world.seq_mutant = Some(m),
        Some(SimMutant::Zk(m)) => {
            if let Some(z) = plan.world.zk.as_mut() {
                z.mutant = Some(m);
            }
        }
        None => {}
    }
    let load_until = plan.world.load_until_us;
    let mut w = World::new(plan.world, trace);
    for (at, f) in plan.faults {
        w.schedule_fault(at, f);
    }
    // The faults end with the load: heal, restart, and no more loss.
    w.schedule_fault(load_until, Fault::Heal);
    w.schedule_fault(load_until, Fault::RestartAll);
    w.schedule_fault(
        load_until,
        Fault::Loss {
            drop: 0.0,
            dup: 0.0,
        },
    );
    w.run_until(load_until);
    // Settle: until every op is answered and followers have caught up, or past the bound.
    let cap = load_until + plan.live_bound_us + S;
    let mut quiet_since = None;
    while w.now < cap {
        let next = w.now + 50 * MS;
        w.run_until(next);
        // With a log, also until every leader has written what its group bound.
        if w.outstanding() == 0 && w.log_settled() && w.zk_settled() {
            let q = *quiet_since.get_or_insert(w.now);
            if w.now >= q + 300 * MS {
                break;
            }
        } else {
            quiet_since = None;
        }
    }
    let result = check(&w, &plan.heals, load_until, plan.live_bound_us);
    Outcome {
        seed,
        result,
        events: w.events,
        virtual_us: w.now,
        leader_changes: w.leader_changes,
        notes: w.trace.notes().to_vec(),
        recent: w.trace.recent().cloned().collect(),
        focused: w.trace.focused().to_vec(),
        local_reads: w.zk_local_reads(),
    }
}
