//! Scenarios of RSMKeeper (DESIGN.md section 8): the groups keep a ZooKeeper tree in
//! keeper mode (no sequencer: the sequencers stay idle), and the clients create, set and
//! get a few shared znodes. The faults are those of the sequencing scenarios: a follower
//! or the leader crashes and restarts from its disk, the leader is cut from its followers,
//! messages are lost, duplicated and reordered, or all of these at random. The verdict is
//! per-znode linearizability of every acknowledged op, one tree on every live replica of
//! a group, and liveness.

use crate::scenario::{self, Plan};
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
