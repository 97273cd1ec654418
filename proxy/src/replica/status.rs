//! What `mason status` shows of one replica: its Raft role, term, commit and applied
//! index, a leader's view of each follower, and the group's epoch and serving state, read
//! from the replica as it stands (nothing changes by asking).

use super::Replica;
use mason_common::statusmsg::{FollowerStatus, GroupStatus};

impl Replica {
    /// This replica's view of its group, for `mason status`.
    pub fn status(&self) -> GroupStatus {
        let raft = &self.node.raft;
        let me = u64::from(self.cfg.replica) + 1;
        let followers = if self.is_leader() {
            let mut f: Vec<FollowerStatus> = raft
                .prs()
                .iter()
                .filter(|(id, _)| **id != me)
                .map(|(id, p)| FollowerStatus {
                    replica: id.saturating_sub(1) as u32,
                    matched: p.matched,
                })
                .collect();
            f.sort_by_key(|x| x.replica);
            f
        } else {
            Vec::new()
        };
        GroupStatus {
            group: self.cfg.group,
            replica: self.cfg.replica,
            leader: self.is_leader(),
            leader_hint: u32::try_from(raft.leader_id).unwrap_or(0),
            term: raft.term,
            commit: raft.raft_log.committed,
            applied: self.applied_index,
            last_index: raft.raft_log.last_index(),
            followers,
            epoch: self.promised,
            serving: self.is_serving(),
            last_batch_id: self.last_batch_id,
            sessions: self.sessions.len() as u64,
        }
    }
}
