//! ZK-Mason session expiry: when the group closes an idle client session (through its
//! log, `--session-timeout-s`), the ZooKeeper session it carried must end too, with its
//! ephemerals, at one place in every shard's order. So every replica notes the session
//! as *expiring* when it applies the close (applied state, in snapshots), and the
//! serving leader batches a closeSession for it, as the op of that session after its last
//! (so the session's numbers still grow with its seqs). The op takes its numbers like any
//! other (every shard and the clock) and goes to the shard servers, which delete the
//! session's ephemerals at it. No client can send it: the session is closed, and the
//! leader takes nothing more from it. Applying it ends the expiry; a second one (a new
//! leader batched it again, or this one did after its first was lost) binds nothing, its
//! numbers become noops.

use super::{Action, Replica};
use crate::entry::OpEntry;
use bytes::Bytes;
use mason_zk::jute::{RequestHeader, Writer};
use mason_zk::{opcode, shard, Request};

impl Replica {
    /// Applying the close of idle session `session`: its ZooKeeper session must expire,
    /// by an op of seq `seq` (the one after the session's last).
    pub(super) fn zk_expire(&mut self, session: u64, seq: u64) {
        if self.zk_on() {
            self.zk_expiring.insert(session, seq);
        }
    }

    /// Whether `o` is a group-made closeSession still to apply (then it is applied, and
    /// the session's expiry is done).
    pub(super) fn zk_take_close(&mut self, o: &OpEntry) -> bool {
        let ours = self.zk_on() && self.zk_expiring.get(&o.session) == Some(&o.client_seq);
        if ours {
            self.zk_expiring.remove(&o.session);
            self.zk_closes_batched.remove(&o.session);
        }
        ours
    }

    /// The serving leader batches a closeSession for each expiring session it has not
    /// batched one for yet.
    pub(super) fn zk_propose_closes(&mut self, now: u64, _out: &mut [Action]) {
        if !self.zk_on() || !self.is_serving() {
            return;
        }
        let shards = self.cfg.zk_servers.len() as u32;
        // A close batched long ago and still not applied was lost (its batch fenced off
        // by a sequencer takeover, say): batch it again. A second copy binds nothing.
        let again = 4 * self.cfg.seq_retry_us.max(self.cfg.seq_timeout_us);
        let mask = shard::spaces(&Request::CloseSession, shards);
        let todo: Vec<(u64, u64)> = self
            .zk_expiring
            .iter()
            .filter(|(s, _)| {
                self.zk_closes_batched
                    .get(s)
                    .is_none_or(|at| now.saturating_sub(*at) >= again)
            })
            .map(|(s, seq)| (*s, *seq))
            .collect();
        let Some(l) = self.leader.as_mut() else {
            return;
        };
        for (session, seq) in todo {
            tracing::info!(
                group = self.cfg.group,
                session,
                "an idle session expires: closing its ZooKeeper session on every shard"
            );
            l.batch(
                now,
                OpEntry {
                    session,
                    client_seq: seq,
                    space_mask: mask,
                    payload: close_payload(),
                    acked_below: 0,
                },
            );
            self.zk_closes_batched.insert(session, now);
        }
    }
}

/// closeSession in jute: the header `{xid 0, -11}` and no body.
fn close_payload() -> Bytes {
    let mut w = Writer::new();
    RequestHeader {
        xid: 0,
        op: opcode::CLOSE_SESSION,
    }
    .write(&mut w);
    Bytes::from(w.into_inner())
}
