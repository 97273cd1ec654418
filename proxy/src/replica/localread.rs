//! Reads answered without the log (`--zk-reads local`, [`LocalRead`]). Only the serving
//! leader answers them, and only reads of one znode that set no watch.
//!
//! RSMKeeper: the leader gathers the reads that came since its last round and asks Raft
//! for a read index (one ReadIndex round, a heartbeat to a majority, per gathering). Once
//! it has applied up to that index it answers them from its tree. So each read sees every
//! write committed before it arrived: reads stay linearizable, without a log entry.
//!
//! ZK-Mason: the leader hands each read to one server of the znode's shard, with the
//! highest number of that shard's space the session has seen (`min_pos`). The server
//! answers once it has applied that far, as a ZooKeeper follower answers a read once it
//! has caught up with what the client saw. The leader picks the server that is known to
//! be furthest ahead (from its answers to deliveries), tries another when one says it is
//! behind or stays silent, and gives up after [`TRIES`]; the client then asks again.
//!
//! Pending reads are bounded in bytes (`max_queued_bytes`): past it a read is dropped,
//! and its client asks again after its retry timeout.

use super::{Action, ConnId, Replica};
use mason_common::msg::{Body, LocalRead, LocalReadReply, ReplyStatus};
use mason_common::zkmsg::{ZkRead, ZkReadReply};
use mason_zk::local;
use std::collections::{BTreeMap, HashMap};

/// A read handed to shard servers is tried on this many of them at most.
const TRIES: u32 = 3;
/// A shard server silent on a read for this long: try another.
const SERVER_SILENCE_US: u64 = 500_000;

struct Waiting {
    conn: ConnId,
    read: LocalRead,
}

struct AtServer {
    conn: ConnId,
    read: LocalRead,
    shard: u32,
    server: u32,
    sent_at: u64,
    tries: u32,
}

/// The leader's reads in flight.
#[derive(Default)]
pub(crate) struct LocalReads {
    /// RSMKeeper: reads not yet in a ReadIndex round.
    gathered: Vec<Waiting>,
    /// RSMKeeper: reads whose round is out, by the round's context.
    rounds: BTreeMap<u64, Vec<Waiting>>,
    /// RSMKeeper: reads with their read index, to answer once it is applied.
    indexed: Vec<(u64, Waiting)>,
    next_round: u64,
    /// ZK-Mason: reads at shard servers, by this leader's id for them.
    at_servers: BTreeMap<u64, AtServer>,
    next_id: u64,
    /// The highest position each (shard, server) is known to have applied.
    applied: HashMap<(u32, u32), u64>,
    bytes: usize,
}

impl LocalReads {
    fn all(&mut self) -> Vec<Waiting> {
        let mut all = std::mem::take(&mut self.gathered);
        all.extend(std::mem::take(&mut self.rounds).into_values().flatten());
        all.extend(
            std::mem::take(&mut self.indexed)
                .into_iter()
                .map(|(_, w)| w),
        );
        all.extend(
            std::mem::take(&mut self.at_servers)
                .into_values()
                .map(|a| Waiting {
                    conn: a.conn,
                    read: a.read,
                }),
        );
        self.bytes = 0;
        all
    }

    /// A shard server said it applied `pos` of its shard's space.
    pub(crate) fn saw_applied(&mut self, shard: u32, server: u32, pos: u64) {
        let at = self.applied.entry((shard, server)).or_default();
        *at = (*at).max(pos);
    }
}

fn reply(read: &LocalRead, status: ReplyStatus, hint: u32) -> LocalReadReply {
    LocalReadReply {
        session: read.session,
        id: read.id,
        status: status as i32,
        leader_hint: hint,
        ..LocalReadReply::default()
    }
}

impl Replica {
    /// A client's [`LocalRead`].
    pub fn on_local_read(&mut self, conn: ConnId, read: LocalRead, out: &mut Vec<Action>) {
        let hint = self.node.raft.leader_id as u32;
        let tree_here = self.tree.is_some() || self.zk_on();
        if read.group != self.cfg.group || !tree_here || local::decode(&read.payload).is_err() {
            out.push(Action::ReadReply {
                conn,
                reply: reply(&read, ReplyStatus::Invalid, 0),
            });
            return;
        }
        let Some(l) = self.leader.as_mut() else {
            out.push(Action::ReadReply {
                conn,
                reply: reply(&read, ReplyStatus::NotLeader, hint),
            });
            return;
        };
        if l.started && !self.sessions.contains_key(&read.session) {
            out.push(Action::ReadReply {
                conn,
                reply: reply(&read, ReplyStatus::UnknownSession, hint),
            });
            return;
        }
        // A read keeps its session alive, as any op does.
        if let Some(t) = l.last_seen.get_mut(&read.session) {
            *t = self.now;
        }
        let n = read.payload.len() + 64;
        if self.local.bytes + n > self.cfg.max_queued_bytes {
            return; // the client asks again
        }
        self.local.bytes += n;
        self.local.gathered.push(Waiting { conn, read });
    }

    /// Moves the gathered reads on (called on every flush): RSMKeeper starts a ReadIndex
    /// round for them; ZK-Mason hands each to a shard server.
    pub(super) fn serve_local_reads(&mut self, out: &mut Vec<Action>) {
        if self.local.gathered.is_empty() || !self.is_serving() {
            return;
        }
        if self.tree.is_some() {
            if self.cfg.mutant == Some(crate::config::Mutant::ReadWithoutIndex) {
                let index = self.applied_index;
                let reads = std::mem::take(&mut self.local.gathered);
                self.local
                    .indexed
                    .extend(reads.into_iter().map(|w| (index, w)));
                self.answer_indexed_reads(out);
                return;
            }
            // raft-rs drops a read index asked before this term committed an entry.
            if !self.node.raft.commit_to_current_term() {
                return;
            }
            let round = self.local.next_round;
            self.local.next_round += 1;
            let reads = std::mem::take(&mut self.local.gathered);
            self.local.rounds.insert(round, reads);
            self.node.read_index(round.to_le_bytes().to_vec());
            return;
        }
        for w in std::mem::take(&mut self.local.gathered) {
            self.send_to_server(w, 0, None, out);
        }
    }

    /// ZK-Mason: hands `w` to a server of its shard other than `not` (its try `tries`).
    fn send_to_server(&mut self, w: Waiting, tries: u32, not: Option<u32>, out: &mut Vec<Action>) {
        let shards = self.cfg.zk_servers.len() as u32;
        let shard = match local::decode(&w.read.payload) {
            Ok((_, req)) => {
                let mask = mason_zk::shard::spaces(&req, shards);
                mask.trailing_zeros().saturating_sub(1)
            }
            Err(_) => return,
        };
        let servers = self
            .cfg
            .zk_servers
            .get(shard as usize)
            .copied()
            .unwrap_or(0);
        if servers == 0 || tries >= TRIES {
            self.local.bytes = self.local.bytes.saturating_sub(w.read.payload.len() + 64);
            return; // the client asks again
        }
        // The server known to be furthest ahead, other than the one that failed.
        let server = (0..servers)
            .filter(|s| Some(*s) != not)
            .max_by_key(|s| {
                let at = self.local.applied.get(&(shard, *s)).copied().unwrap_or(0);
                (at, (u64::from(*s) + w.read.id) % u64::from(servers))
            })
            .unwrap_or(0);
        let id = self.local.next_id;
        self.local.next_id += 1;
        out.push(Action::ToZk {
            shard,
            server,
            body: Body::ZkRead(ZkRead {
                group: self.cfg.group,
                shard,
                id,
                session: w.read.session,
                payload: w.read.payload.clone(),
                min_pos: w.read.min_pos,
            }),
        });
        self.local.at_servers.insert(
            id,
            AtServer {
                conn: w.conn,
                read: w.read,
                shard,
                server,
                sent_at: self.now,
                tries: tries + 1,
            },
        );
    }

    /// ZK-Mason: a shard server's answer to a read.
    pub fn on_zk_read_reply(&mut self, r: ZkReadReply, out: &mut Vec<Action>) {
        let Some(a) = self.local.at_servers.remove(&r.id) else {
            return;
        };
        let w = Waiting {
            conn: a.conn,
            read: a.read,
        };
        if r.behind {
            self.send_to_server(w, a.tries, Some(a.server), out);
            return;
        }
        self.local.saw_applied(a.shard, a.server, r.pos);
        self.local.bytes = self.local.bytes.saturating_sub(w.read.payload.len() + 64);
        out.push(Action::ReadReply {
            conn: w.conn,
            reply: LocalReadReply {
                result: r.result,
                space: a.shard + 1,
                pos: r.pos,
                ..reply(&w.read, ReplyStatus::Ok, 0)
            },
        });
    }

    /// ZK-Mason: reads a server has sat on too long go to another.
    pub(super) fn retry_local_reads(&mut self, now: u64, out: &mut Vec<Action>) {
        let late: Vec<u64> = self
            .local
            .at_servers
            .iter()
            .filter(|(_, a)| now.saturating_sub(a.sent_at) >= SERVER_SILENCE_US)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            if let Some(a) = self.local.at_servers.remove(&id) {
                let w = Waiting {
                    conn: a.conn,
                    read: a.read,
                };
                self.send_to_server(w, a.tries, Some(a.server), out);
            }
        }
    }

    /// RSMKeeper: Raft's answers to ReadIndex rounds.
    pub(super) fn on_read_states(&mut self, states: Vec<raft::ReadState>) {
        for rs in states {
            let Ok(ctx) = <[u8; 8]>::try_from(rs.request_ctx.as_slice()) else {
                continue;
            };
            if let Some(reads) = self.local.rounds.remove(&u64::from_le_bytes(ctx)) {
                self.local
                    .indexed
                    .extend(reads.into_iter().map(|w| (rs.index, w)));
            }
        }
    }

    /// RSMKeeper: answers the reads whose read index is applied.
    pub(super) fn answer_indexed_reads(&mut self, out: &mut Vec<Action>) {
        if self.local.indexed.is_empty() {
            return;
        }
        let applied = self.applied_index;
        let Some(tree) = self.tree.as_ref() else {
            return;
        };
        let (ready, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.local.indexed)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.local.indexed = wait;
        for (_, w) in ready {
            self.local.bytes = self.local.bytes.saturating_sub(w.read.payload.len() + 64);
            let answer = local::answer(tree, w.read.session as i64, &w.read.payload);
            let r = match answer {
                Ok(result) => LocalReadReply {
                    result,
                    pos: applied,
                    ..reply(&w.read, ReplyStatus::Ok, 0)
                },
                Err(_) => reply(&w.read, ReplyStatus::Invalid, 0),
            };
            out.push(Action::ReadReply {
                conn: w.conn,
                reply: r,
            });
        }
    }

    /// Leadership is lost: every read in flight is told to look elsewhere.
    pub(super) fn drop_local_reads(&mut self, hint: u32, out: &mut Vec<Action>) {
        for w in self.local.all() {
            out.push(Action::ReadReply {
                conn: w.conn,
                reply: reply(&w.read, ReplyStatus::NotLeader, hint),
            });
        }
    }
}
