//! RSMKeeper: the group's state machine is a ZooKeeper tree, and there is no sequencer.
//!
//! The leader proposes each batch of client ops straight into the log (its batch ids take
//! no numbers), stamped with its wall clock. Every replica applies each op, in log order,
//! to its own [`DataTree`]: the op's payload is a ZooKeeper request in ZooKeeper's own
//! encoding (jute: the request header and the body, no length prefix), and the reply, in
//! the same encoding, is kept as the op's answer. So a retried op is answered again, never
//! applied twice, and every replica's tree goes through the same states. Reads go through
//! the log too, so they are linearizable. Only the leader answers.
//!
//! The ZooKeeper session of an op is its client session (unique in the deployment, never
//! reused): a client opens it with a `createSession` request (opcode -10, the body its
//! timeout in ms) and ends it with `closeSession`; a client session the group closes for
//! idleness (`--session-timeout-s`) expires its ZooKeeper session at that place in the
//! log. Another client session may take a live ZooKeeper session over with a
//! `moveSession` (opcode -20: the session, then its timeout); the tree then runs its ops as
//! that session, answers the previous owner's `SessionMoved`, and only the owner's
//! idleness expires it. Each write takes the next zxid.

use super::{Action, OpAnswer, Replica};
use crate::entry::{BatchEntry, Numbers, OpEntry};
use bytes::Bytes;
use mason_zk::jute::{self, Decoded, JuteError};
use mason_zk::{opcode, Code, Ctx, DataTree, Request, Trigger};

impl Replica {
    /// Applies a committed batch's new ops to the tree and answers them (the leader), and
    /// answers again the ops applied before.
    pub(super) fn apply_requests(
        &mut self,
        b: &BatchEntry,
        kept: &[&OpEntry],
        dups: &[&OpEntry],
        out: &mut Vec<Action>,
    ) {
        let reorder =
            self.cfg.mutant == Some(crate::config::Mutant::KeeperReorder) && !self.is_leader();
        let Some(tree) = self.tree.as_mut() else {
            return;
        };
        let order: Vec<&&OpEntry> = if reorder {
            kept.iter().rev().collect()
        } else {
            kept.iter().collect()
        };
        for o in order {
            let (before, mut fired) = (tree.last_zxid(), Vec::new());
            let result = run(tree, o.session as i64, b.time_ms, &o.payload, &mut fired);
            self.feed.applied(before, tree.last_zxid(), &fired);
            let Some(a) = self.sessions.get_mut(&o.session) else {
                continue;
            };
            let answer = OpAnswer {
                mask: o.space_mask,
                numbers: Numbers::new(),
                result,
            };
            a.keep_answer(o.client_seq, answer.clone(), o.acked_below);
            if let Some(lc) = self
                .leader
                .as_ref()
                .filter(|l| l.started)
                .and_then(|l| l.clients.get(&o.session))
            {
                out.push(Action::Reply {
                    conn: lc.conn,
                    reply: Replica::answered(o.session, o.client_seq, &answer),
                });
            }
        }
        if let Some(l) = self.leader.as_mut() {
            if l.inflight.front().is_some_and(|f| f.id == b.batch_id) {
                l.inflight.pop_front();
            }
        }
        self.answer_dups(dups, out);
    }

    /// RSMKeeper: a client session closed for idleness ends its ZooKeeper session too, at
    /// this entry's place in the log, so every replica deletes its ephemerals at the same
    /// point (ZooKeeper's session expiry).
    pub(super) fn expire_zk_session(&mut self, session: u64) {
        let Some(tree) = self.tree.as_mut() else {
            return;
        };
        let id = session as i64;
        // Only the session it owns now: one moved to another client session stays.
        let Ok(zk_session) = tree.resolve_session(id) else {
            return;
        };
        let ctx = Ctx {
            zxid: tree.last_zxid() + 1,
            time_ms: 0,
        };
        let gone = tree.ephemerals(zk_session).len();
        let before = tree.last_zxid();
        let applied = tree.apply(ctx, id, &Request::CloseSession);
        self.feed
            .applied(before, tree.last_zxid(), &applied.triggers);
        tracing::info!(
            group = self.cfg.group,
            session = zk_session,
            ephemerals = gone,
            "an idle session expired; its ephemerals are deleted"
        );
    }

    /// The group's tree (RSMKeeper only).
    pub fn tree(&self) -> Option<&DataTree> {
        self.tree.as_ref()
    }
}

/// Applies one request (`payload`: header and body) of `session` to `tree`; returns the
/// reply (header and body). A request that does not decode is answered with ZooKeeper's
/// code for it, and changes nothing; so is any request but createSession and moveSession
/// of a session the tree does not hold (never created, closed or expired: SessionExpired)
/// or that moved to another client session (SessionMoved): ZooKeeper applies nothing of
/// an expired session, nor of one that moved. The watch triggers it fires go to `fired`.
pub(crate) fn run(
    tree: &mut DataTree,
    session: i64,
    time_ms: i64,
    payload: &[u8],
    fired: &mut Vec<Trigger>,
) -> Bytes {
    let (header, body) = match jute::split_request(payload) {
        Ok(x) => x,
        Err(_) => return error_reply(0, tree.last_zxid(), Code::MarshallingError),
    };
    if header.op != opcode::CREATE_SESSION && header.op != opcode::MOVE_SESSION {
        if let Err(code) = tree.resolve_session(session) {
            return error_reply(header.xid, tree.last_zxid(), code);
        }
    }
    let ctx = Ctx {
        zxid: tree.last_zxid() + 1,
        time_ms,
    };
    // createSession and moveSession come only from proxies' clients.
    let decoded = jute::decode_logged_request(header.op, body);
    match decoded {
        Ok(Decoded::Tree { request, shape }) => {
            let mut applied = tree.apply(ctx, session, &request);
            // The watch triggers, for the feed.
            fired.append(&mut applied.triggers);
            match jute::encode_response(header.xid, applied.zxid, &applied.response, &shape) {
                Ok(framed) => Bytes::from(framed).slice(4..),
                Err(_) => error_reply(header.xid, applied.zxid, Code::MarshallingError),
            }
        }
        // Pings, auth, watches and the like are a front end's business, not the log's.
        Ok(Decoded::Special(_)) => error_reply(header.xid, tree.last_zxid(), Code::Unimplemented),
        Err(e) => error_reply(header.xid, tree.last_zxid(), reply_code(&e)),
    }
}

fn reply_code(e: &JuteError) -> Code {
    e.reply_code()
}

fn error_reply(xid: i32, zxid: i64, code: Code) -> Bytes {
    Bytes::from(jute::header_reply(xid, zxid, code.code()))
}
