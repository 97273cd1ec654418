//! Sessions: createSession registers a session id with its timeout;
//! closeSession (also how expiry is applied) deletes every ephemeral node of
//! the session in one step, in path order, and forgets the session;
//! moveSession hands a live session to another owner (ZooKeeper's "session
//! moved": the op-session that sent it acts as the session from then on, and
//! the previous owner's requests are answered `SessionMoved`).
//!
//! Liveness (heartbeats, timers, expiry decisions) is the caller's job; the
//! tree only needs to know which sessions exist so that an ephemeral create
//! for an unknown session fails with `SessionExpired`, as ZooKeeper's
//! `checkGlobalSession` makes it.

use crate::code::Code;
use crate::op::{Ctx, Trigger};
use crate::path::split_last_slash;
use crate::tree::DataTree;

impl DataTree {
    /// Register `session` (or update its timeout, as ZooKeeper's
    /// `commitSession` does for a known id).
    pub(crate) fn create_session(&mut self, session: i64, timeout_ms: i32) {
        self.sessions.insert(session, timeout_ms);
    }

    /// Delete the session's ephemerals at `ctx.zxid` (each moves its
    /// parent's pzxid and fires NodeDeleted and NodeChildrenChanged) and
    /// forget the session. Closing an unknown session changes nothing.
    pub(crate) fn close_session(&mut self, ctx: Ctx, session: i64, triggers: &mut Vec<Trigger>) {
        let paths = self.ephemerals.remove(&session).unwrap_or_default();
        for path in paths {
            let Some((raw_parent, _)) = split_last_slash(&path) else {
                continue;
            };
            let parent = if raw_parent.is_empty() {
                "/"
            } else {
                raw_parent
            }
            .to_string();
            // a node an ephemeral set names always exists; ZooKeeper ignores
            // a missing one the same way. On a ZK-Mason shard the parent may
            // live on another shard: remove_node then leaves it to its owner.
            let _ = self.remove_node(&path, &parent, ctx.zxid, triggers);
        }
        self.sessions.remove(&session);
        if let Some(owner) = self.owners.remove(&session) {
            self.aliases.remove(&owner);
        }
    }

    /// Op-session `by` takes over live session `target`, whose timeout becomes
    /// `timeout_ms`. The previous owner's alias goes (at most one alias per session);
    /// moving a session back to its own id leaves it no alias. A session not live is
    /// `SessionExpired`; an op-session that already acts as another live session is
    /// `BadArguments` (it would leave that one without an owner). Either changes nothing.
    /// Moving to the current owner only sets the timeout.
    pub(crate) fn move_session(
        &mut self,
        by: i64,
        target: i64,
        timeout_ms: i32,
    ) -> Result<(), Code> {
        if !self.sessions.contains_key(&target) {
            return Err(Code::SessionExpired);
        }
        match self.resolve_session(by) {
            Ok(acting) if acting == target => {}
            Ok(_) => return Err(Code::BadArguments),
            Err(_) => {
                if let Some(previous) = self.owners.remove(&target) {
                    self.aliases.remove(&previous);
                }
                if by != target {
                    self.owners.insert(target, by);
                    self.aliases.insert(by, target);
                }
            }
        }
        self.sessions.insert(target, timeout_ms);
        Ok(())
    }
}
