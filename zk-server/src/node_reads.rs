//! Reads a shard server answers outside its space's order (`--zk-reads local`): a proxy
//! leader hands it a client's read of a znode this shard owns, with the highest position
//! of this shard's space the client's session has seen. The server answers from its
//! tree once it has applied that far (so a session reads its own writes and never goes
//! back), holding the read until then, for [`READ_WAIT_US`] at most; past that, or when
//! it holds [`MAX_HELD_READS`] already, it says it is behind and the proxy asks another.

use super::{ConnId, NodeAction, ZkNode};
use bytes::Bytes;
use mason_common::msg::Body;
use mason_common::zkmsg::{shard_space, ZkRead, ZkReadReply};
use mason_zk::{local, shard};

/// How long a read may wait for this server to catch up.
pub const READ_WAIT_US: u64 = 200_000;
/// Reads held at most (each holds its request, at most a frame).
pub const MAX_HELD_READS: usize = 4096;

/// A read waiting for this server to reach its position.
pub(crate) struct HeldRead {
    conn: ConnId,
    read: ZkRead,
    since: u64,
}

impl ZkNode {
    /// A proxy's [`ZkRead`].
    pub fn on_read(&mut self, conn: ConnId, read: ZkRead, out: &mut Vec<NodeAction>) {
        let any = self.cfg.mutant == Some(super::NodeMutant::ReadAnyState);
        if self.next() > read.min_pos || any {
            let reply = self.answer_read(&read);
            out.push(NodeAction::Send { conn, body: reply });
        } else if self.held_reads.len() < MAX_HELD_READS {
            self.held_reads.push(HeldRead {
                conn,
                read,
                since: self.now,
            });
        } else {
            out.push(NodeAction::Send {
                conn,
                body: behind(&read),
            });
        }
    }

    /// Answers the held reads this server has caught up with, and sends away those that
    /// waited too long (called after every burst and tick).
    pub(crate) fn release_reads(&mut self, out: &mut Vec<NodeAction>) {
        if self.held_reads.is_empty() {
            return;
        }
        let next = self.next();
        let now = self.now;
        for h in std::mem::take(&mut self.held_reads) {
            let body = if next > h.read.min_pos {
                self.answer_read(&h.read)
            } else if now.saturating_sub(h.since) >= READ_WAIT_US {
                behind(&h.read)
            } else {
                self.held_reads.push(h);
                continue;
            };
            out.push(NodeAction::Send { conn: h.conn, body });
        }
    }

    fn answer_read(&self, read: &ZkRead) -> Body {
        let pos = self.next().saturating_sub(1);
        // Only a read of a znode this shard owns (a proxy routes it so; anything else is
        // refused as a bad argument, not answered from a part of the tree).
        let owned = local::decode(&read.payload).is_ok_and(|(_, req)| {
            shard::spaces(&req, self.cfg.shards) == 1u64 << shard_space(self.cfg.shard)
        });
        let result = if !owned || read.shard != self.cfg.shard {
            let xid = local::decode(&read.payload).map_or(0, |(x, _)| x);
            crate::op::error_reply(xid, self.tree.last_zxid(), mason_zk::Code::BadArguments)
        } else {
            match local::answer(&self.tree, read.session as i64, &read.payload) {
                Ok(r) => r,
                Err(_) => Bytes::new(),
            }
        };
        Body::ZkReadReply(ZkReadReply {
            group: read.group,
            id: read.id,
            result,
            pos,
            behind: false,
        })
    }
}

fn behind(read: &ZkRead) -> Body {
    Body::ZkReadReply(ZkReadReply {
        group: read.group,
        id: read.id,
        behind: true,
        ..ZkReadReply::default()
    })
}
