//! Scenarios of CorfuMason (DESIGN.md section 8): the proxy groups write every number they
//! bind in space 0 (ops and noops) to a shared log of 2 shards x 2 chained servers, and
//! answer clients only once it is written. Log servers crash, restart and are cut off; a
//! proxy leader crashes with writes in flight; and a random mix. Besides the sequencing
//! invariants, the log must end up with no hole, agreeing chains, and every answered op at
//! its number.

use crate::net::Node;
use crate::scenario::{base, pick_weighted, Plan, MS, S};
use crate::world::{Fault, LogConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ 0x00c0_f10c)
}

/// The base plan with one space, which is the log's: 2 shards, each a chain of 2 servers.
pub(crate) fn log_base(seed: u64) -> Plan {
    let mut p = base(seed);
    p.world.spaces = 1;
    p.world.replica.spaces = 1;
    p.world.replica.log_retry_us = 100 * MS;
    p.world.log = Some(LogConfig::new(2, 2));
    p
}

fn servers(p: &Plan) -> u32 {
    p.world.log.map_or(1, |l| l.servers())
}

pub fn log_steady(seed: u64) -> Plan {
    log_base(seed)
}

/// A log server crashes mid-run (losing what it had not synced) and restarts later; its
/// shard stalls meanwhile, and every write waiting on it is written again.
pub fn log_server_crash(seed: u64) -> Plan {
    let mut p = log_base(seed);
    let mut r = rng(seed);
    let i = r.gen_range(0..servers(&p));
    let at = r.gen_range(600 * MS..900 * MS);
    let back = at + r.gen_range(200 * MS..600 * MS);
    p.faults = vec![(at, Fault::CrashLog(i)), (back, Fault::RestartLog(i))];
    p.heals = vec![back];
    p
}

/// A log server is cut from every other node for a while, then healed.
pub fn log_server_partition(seed: u64) -> Plan {
    let mut p = log_base(seed);
    let mut r = rng(seed);
    let i = r.gen_range(0..servers(&p));
    let at = r.gen_range(600 * MS..800 * MS);
    let heal = at + r.gen_range(300 * MS..700 * MS);
    p.faults = vec![(at, Fault::PartitionLog(i)), (heal, Fault::Heal)];
    p.heals = vec![heal];
    p
}

/// The links from the proxies to the log turn slow (writes pile up in flight), and the
/// machine leading group 0 crashes: what it had in flight is lost with its connections, so
/// the new leader must write its predecessor's unfinished deliveries again.
pub fn log_leader_crash(seed: u64) -> Plan {
    let mut p = log_base(seed);
    let mut r = rng(seed);
    let extra = r.gen_range(3 * MS..10 * MS);
    let at = 700 * MS + r.gen_range(0..20 * MS);
    let proxies: Vec<Node> = (0..p.world.triples * 3).map(Node::Proxy).collect();
    let logs: Vec<Node> = (0..servers(&p)).map(Node::LogServer).collect();
    p.faults = vec![
        (
            500 * MS,
            Fault::Slow {
                a: proxies,
                b: logs,
                extra_us: extra,
            },
        ),
        (at, Fault::CrashLeader(0)),
        (1000 * MS, Fault::Heal),
        (1400 * MS, Fault::RestartAll),
    ];
    p.heals = vec![1400 * MS];
    p
}

/// Episodes drawn from the seed, one at a time: a log server crashes and restarts, a log
/// server is cut off, a proxy machine crashes or is cut from its triple, a proxy leader
/// crashes while the log is slow, or the network turns lossy.
pub fn log_random(seed: u64) -> Plan {
    let mut p = log_base(seed);
    p.world.load_until_us = 3 * S;
    let mut r = rng(seed ^ 0x5eed);
    let machines = p.world.triples * 3;
    let logs = servers(&p);
    let end = p.world.load_until_us - 300 * MS;
    let mut t = 200 * MS;
    while t + 100 * MS < end {
        let len = r.gen_range(50 * MS..600 * MS).min(end - t);
        let m = r.gen_range(0..machines);
        let i = r.gen_range(0..logs);
        // Kinds by weight: log crash 3, log cut off 3, proxy crash 2, proxy cut from its
        // triple 2, leader crash with a slow log 2, loss 1.
        let kind = pick_weighted(&mut r, &[3, 3, 2, 2, 2, 1]);
        let episode: Vec<(u64, Fault)> = match kind {
            0 => vec![(t, Fault::CrashLog(i)), (t + len, Fault::RestartLog(i))],
            1 => vec![(t, Fault::PartitionLog(i)), (t + len, Fault::Heal)],
            2 => vec![(t, Fault::Crash(m)), (t + len, Fault::RestartAll)],
            3 => {
                let t3 = m / 3;
                let others = (t3 * 3..t3 * 3 + 3)
                    .filter(|&x| x != m)
                    .map(Node::Proxy)
                    .collect();
                vec![
                    (
                        t,
                        Fault::Partition {
                            a: vec![Node::Proxy(m)],
                            b: others,
                            both_ways: true,
                        },
                    ),
                    (t + len, Fault::Heal),
                ]
            }
            4 => {
                let g = r.gen_range(0..p.world.triples * p.world.groups_per_triple);
                let slow = Fault::Slow {
                    a: (0..machines).map(Node::Proxy).collect(),
                    b: (0..logs).map(Node::LogServer).collect(),
                    extra_us: r.gen_range(MS..8 * MS),
                };
                vec![
                    (t, slow),
                    (t + len / 2, Fault::CrashLeader(g)),
                    (t + len, Fault::Heal),
                    (t + len, Fault::RestartAll),
                ]
            }
            _ => vec![
                (
                    t,
                    Fault::Loss {
                        drop: r.gen_range(0.01..0.1),
                        dup: r.gen_range(0.0..0.05),
                    },
                ),
                (
                    t + len,
                    Fault::Loss {
                        drop: 0.0,
                        dup: 0.0,
                    },
                ),
            ],
        };
        p.faults.extend(episode);
        t += len;
        p.heals.push(t);
        t += p.live_bound_us + r.gen_range(0..200 * MS);
    }
    p
}
