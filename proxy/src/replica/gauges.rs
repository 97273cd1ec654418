//! The numbers a replica's runtime copies into its metrics on a timer (Raft term, commit
//! and applied index, the leader, the batches in flight), read from the replica as it
//! stands: nothing changes by asking.

use super::Replica;

/// One replica's state, for its group's gauges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gauges {
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    /// The replica this one believes leads (None: none known).
    pub leader: Option<u32>,
    pub is_leader: bool,
    /// A leader's batches proposed and not yet applied (0 on a follower).
    pub inflight: usize,
    /// A leader's ops waiting for the next batch (0 on a follower).
    pub open_ops: usize,
    pub sessions: usize,
}

impl Replica {
    pub fn gauges(&self) -> Gauges {
        let raft = &self.node.raft;
        Gauges {
            term: raft.term,
            commit: raft.raft_log.committed,
            applied: self.applied_index,
            // Raft ids are replica indexes + 1; 0 is "no leader".
            leader: raft
                .leader_id
                .checked_sub(1)
                .and_then(|r| u32::try_from(r).ok()),
            is_leader: self.is_leader(),
            inflight: self.leader.as_ref().map_or(0, |l| l.inflight.len()),
            open_ops: self.leader.as_ref().map_or(0, |l| l.open.len()),
            sessions: self.sessions.len(),
        }
    }
}
