//! Scenarios of RSMKeeper (DESIGN.md section 8): the groups keep a ZooKeeper tree in
//! keeper mode (no sequencer: the sequencers stay idle), and the clients create, set and
//! get a few shared znodes. The faults are those of the sequencing scenarios: a follower
//! or the leader crashes and restarts from its disk, the leader is cut from its followers,
//! messages are lost, duplicated and reordered, or all of these at random; or, with reads
//! without the log, a deposed leader with a slow clock. The verdict is per-znode
//! linearizability of every acknowledged op (local reads too), one tree on every live
//! replica of a group, and liveness.

use crate::scenario::{self, Plan, MS};
use crate::world::Fault;
use mason_client::load::OpSpaces;

/// `p` in keeper mode: one space (unused), every op on it.
fn keeper(mut p: Plan) -> Plan {
    p.world.keeper = true;
    p.world.replica.keeper = true;
    p.world.spaces = 1;
    p.world.replica.spaces = 1;
    p.world.op_spaces = OpSpaces::All;
    p
}

pub fn keeper_steady(seed: u64) -> Plan {
    keeper(scenario::steady(seed))
}

pub fn keeper_follower_crash(seed: u64) -> Plan {
    keeper(scenario::follower_crash(seed))
}

pub fn keeper_leader_crash(seed: u64) -> Plan {
    keeper(scenario::leader_crash(seed))
}

pub fn keeper_leader_isolated(seed: u64) -> Plan {
    keeper(scenario::leader_isolated(seed))
}

pub fn keeper_dup_reorder(seed: u64) -> Plan {
    keeper(scenario::dup_reorder(seed))
}

pub fn keeper_random(seed: u64) -> Plan {
    keeper(scenario::random(seed))
}

/// A client dies for good at 0.6s (its session then idles out after 0.4s and its
/// ephemeral must go on every replica); group 0's leader crashes at 0.9s.
pub fn keeper_client_crash(seed: u64) -> Plan {
    let mut p = keeper(scenario::client_crash(seed));
    p.world.replica.session_timeout_us = 400 * crate::scenario::MS;
    p
}

/// Local reads (`--zk-reads local`): the leader answers reads of one znode after a Raft
/// ReadIndex round. 60% of the reads skip the log, and 2 of the 4 clients (one per group)
/// only read, all without the log, so nothing they wait for moves them off a replica.
/// Group 0's leader is cut from its followers at 0.5s (healed at 1.3s), and its clock runs
/// 4x slow from then on (as a lease would not allow): it notices only late that it lost
/// its followers, and meanwhile holds the reads it gets (no round finishes) while the
/// others elect a leader that commits newer writes. The readers' reads there must wait,
/// and move on, rather than answer from its stale tree.
pub fn keeper_local_reads(seed: u64) -> Plan {
    let mut p = keeper(scenario::leader_isolated(seed));
    p.world.local_reads = 60;
    p.world.readers = 2;
    p.faults.insert(
        1,
        (
            500 * MS,
            Fault::SlowClock {
                group: 0,
                factor: 4,
            },
        ),
    );
    p
}
