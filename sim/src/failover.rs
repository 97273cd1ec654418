//! Scenarios of sequencer failover (DESIGN.md section 5): the primary crashes, stalls or is
//! cut off, alone or together with a proxy leader, a backup crashes mid-takeover, two
//! backups race, and a long split heals. The group leaders time out on their sequencer
//! (150 ms here) and ask a backup to take over; every invariant, Fenced included, must hold.

use crate::net::Node;
use crate::scenario::{base, Plan, MS, S};
use crate::world::Fault;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ 0x5e9_fa11)
}

fn proxies(triples: u32) -> Vec<Node> {
    (0..triples * 3).map(Node::Proxy).collect()
}

pub fn seq_crash(seed: u64) -> Plan {
    let mut p = base(seed);
    p.faults = vec![
        (700 * MS, Fault::CrashSequencer(0)),
        (1400 * MS, Fault::RestartSequencer(0)),
    ];
    p.heals = vec![700 * MS];
    p
}

/// Every message to and from the backup (takeover requests, switches, promises, fills
/// and their acknowledgements, activation, re-asks) may come up to three times, up to
/// 60 ms late, in any order. Two triples: the primary stalls towards the first (its
/// answers arrive 150-250 ms late, after the groups promised the backup's epoch: fenced,
/// they leave holes below what the other triple's groups bound, which the backup assigns
/// as fills, re-sent every 20 ms until acknowledged, so fills also arrive after they were
/// applied), then crashes, and restarts as a backup while stale copies of messages are
/// still on their way.
pub fn seq_crash_dup_backup(seed: u64) -> Plan {
    let mut p = base(seed);
    p.world.triples = 2;
    p.world.clients = 8;
    let mut r = rng(seed);
    let stall = 600 * MS + r.gen_range(0..100 * MS);
    let late = r.gen_range(150 * MS..250 * MS);
    p.faults = vec![
        (
            500 * MS,
            Fault::Noisy {
                node: Node::Sequencer(1),
                dup: 0.5,
                late_us: 60 * MS,
            },
        ),
        (
            stall,
            Fault::Slow {
                a: vec![Node::Sequencer(0)],
                b: proxies(1),
                extra_us: late,
            },
        ),
        (stall + 400 * MS, Fault::CrashSequencer(0)),
        (stall + 800 * MS, Fault::RestartSequencer(0)),
        (1800 * MS, Fault::Heal),
    ];
    p.heals = vec![1800 * MS];
    p
}

pub fn leader_crash_during_seq_recovery(seed: u64) -> Plan {
    let mut p = base(seed);
    let at = 850 * MS + rng(seed).gen_range(0..40 * MS);
    p.faults = vec![
        (700 * MS, Fault::CrashSequencer(0)),
        (at, Fault::CrashLeader(0)),
        (1500 * MS, Fault::RestartAll),
    ];
    p.heals = vec![1500 * MS];
    p
}

pub fn seq_crash_during_election(seed: u64) -> Plan {
    let mut p = base(seed);
    let at = 700 * MS + rng(seed).gen_range(0..200 * MS);
    p.faults = vec![
        (700 * MS, Fault::CrashLeader(0)),
        (at, Fault::CrashSequencer(0)),
        (1500 * MS, Fault::RestartAll),
    ];
    p.heals = vec![1500 * MS];
    p
}

pub fn backup_crash_mid_takeover(seed: u64) -> Plan {
    let mut p = base(seed);
    p.world.sequencers = 3;
    p.world.replica.sequencers = 3;
    let at = 850 * MS + rng(seed).gen_range(0..30 * MS);
    p.faults = vec![
        (700 * MS, Fault::CrashSequencer(0)),
        (at, Fault::CrashSequencer(1)),
        (1600 * MS, Fault::RestartAll),
    ];
    p.heals = vec![at];
    p
}

pub fn backups_racing(seed: u64) -> Plan {
    let mut p = base(seed);
    p.world.sequencers = 3;
    p.world.replica.sequencers = 3;
    let skew = rng(seed).gen_range(0..3 * MS);
    p.faults = vec![
        (700 * MS, Fault::CrashSequencer(0)),
        (705 * MS, Fault::AskTakeover { seq: 1, epoch: 1 }),
        (705 * MS + skew, Fault::AskTakeover { seq: 2, epoch: 1 }),
    ];
    p.heals = vec![705 * MS];
    p
}

/// The primary stalls: what it sends arrives late, long after a backup took over, and it
/// never learns that it was replaced. Its late answers must bind nothing.
pub fn old_primary_returns(seed: u64) -> Plan {
    let mut p = base(seed);
    let extra = rng(seed).gen_range(140 * MS..260 * MS);
    p.faults = vec![
        (
            700 * MS,
            Fault::Slow {
                a: vec![Node::Sequencer(0)],
                b: proxies(1),
                extra_us: extra,
            },
        ),
        (1100 * MS, Fault::Heal),
    ];
    p.heals = vec![1100 * MS];
    p
}

/// The primary is cut from the groups of one triple of two: those ask the backup, which
/// reaches every group and takes over from all of them.
pub fn seq_partial_partition(seed: u64) -> Plan {
    let mut p = base(seed);
    p.world.triples = 2;
    p.world.clients = 8;
    p.faults = vec![
        (
            700 * MS,
            Fault::Partition {
                a: vec![Node::Sequencer(0)],
                b: (0..3).map(Node::Proxy).collect(),
                both_ways: true,
            },
        ),
        (1500 * MS, Fault::Heal),
    ];
    p.heals = vec![1500 * MS];
    p
}

/// A long split: the primary with one triple, the backup with the other. The backup's
/// takeover cannot finish without every group's promise, so its side stalls (safely) until
/// the split heals; then the takeover completes.
pub fn long_split(seed: u64) -> Plan {
    let mut p = base(seed);
    p.world.triples = 2;
    p.world.clients = 8;
    p.world.load_until_us = 3 * S;
    let side_a: Vec<Node> = [Node::Sequencer(0)]
        .into_iter()
        .chain((0..3).map(Node::Proxy))
        .collect();
    let side_b: Vec<Node> = [Node::Sequencer(1)]
        .into_iter()
        .chain((3..6).map(Node::Proxy))
        .collect();
    p.faults = vec![
        (
            600 * MS,
            Fault::Partition {
                a: side_a,
                b: side_b,
                both_ways: true,
            },
        ),
        (2000 * MS, Fault::Heal),
    ];
    p.heals = vec![2000 * MS];
    p
}
