//! A shard server's side of the watch feed (docs/design.md, "The watch feed"): every op
//! it runs records the watch triggers its apply fired at the op's position in the
//! shard's space, in a bounded [`TriggerLog`] (noops and reads only move it on), on every
//! path that applies positions: in order, replayed from the store, fetched from a peer;
//! a peer's tree installed resets it. A ZooKeeper front end (a watcher) polls every
//! server of the shard with `ZkWatchPoll` and gets `ZkWatchFeed` on that connection: at
//! once when there is something past its position, else when something is applied or
//! at the poll's deadline ([`FeedPolls`]).
//!
//! Positions are the shard's: the log's `upto` is the last applied position
//! (`next() - 1`; 0 before anything is applied, which loses nothing: position 0 of a
//! shard is a createSession, a refused op or a noop, since every createSession touches
//! every shard, and none fires a trigger).

use super::{ConnId, NodeAction, ZkNode};
use crate::op::{self, Prepared};
use bytes::Bytes;
use mason_common::msg::Body;
use mason_common::zkmsg::{ZkItem, ZkTrigger, ZkWatchFeed, ZkWatchPoll};
use mason_zk::feed::{TriggerLog, DEFAULT_FEED_BYTES};
use mason_zk::feed_polls::{FeedPolls, Poll, PollAnswer};
use mason_zk::sharded::View;

/// The log and the polls held.
pub(crate) struct Feed {
    pub(crate) log: TriggerLog,
    pub(crate) polls: FeedPolls,
}

impl Feed {
    /// Everything below `next` is applied (its triggers are not known here).
    pub(crate) fn new(next: u64) -> Feed {
        Feed {
            log: TriggerLog::new(next.saturating_sub(1), DEFAULT_FEED_BYTES),
            polls: FeedPolls::default(),
        }
    }
}

impl ZkNode {
    /// A watcher's poll on connection `conn`.
    pub fn on_watch_poll(&mut self, conn: ConnId, poll: ZkWatchPoll, out: &mut Vec<NodeAction>) {
        let (shard, server) = (self.cfg.shard, self.cfg.index);
        if poll.shard != shard {
            // Not this server's shard: nothing it could answer.
            let feed = ZkWatchFeed {
                shard: poll.shard,
                server,
                after: poll.after,
                upto: 0,
                triggers: Vec::new(),
                gap: true,
            };
            out.push(NodeAction::Send {
                conn,
                body: Body::ZkWatchFeed(feed),
            });
            return;
        }
        let mut answers = Vec::new();
        let p = Poll {
            conn,
            after: poll.after,
            wait_ms: poll.wait_ms,
            fresh: poll.fresh,
        };
        self.feed
            .polls
            .poll(&self.feed.log, p, self.now, &mut answers);
        out.extend(answers.into_iter().map(|a| send(shard, server, a)));
    }

    /// Answers the held polls that something new was applied for, or whose deadline has
    /// come (after each burst and on each tick).
    pub(crate) fn release_polls(&mut self, out: &mut Vec<NodeAction>) {
        let mut answers = Vec::new();
        self.feed
            .polls
            .release(&self.feed.log, self.now, &mut answers);
        let (shard, server) = (self.cfg.shard, self.cfg.index);
        out.extend(answers.into_iter().map(|a| send(shard, server, a)));
    }

    /// The server's recent triggers.
    pub fn feed(&self) -> &TriggerLog {
        &self.feed.log
    }

    /// Polls held now.
    pub fn held_polls(&self) -> usize {
        self.feed.polls.held()
    }

    /// Runs `item` (at its position, in order) and records what its apply fired.
    pub(crate) fn run_op(&mut self, item: &ZkItem, prepared: &Prepared, others: &[View]) -> Bytes {
        let (reply, triggers, zxid) = op::run(
            &mut self.tree,
            item,
            prepared,
            others,
            self.cfg.shard,
            self.cfg.shards,
        );
        self.feed.log.record(item.pos, zxid, &triggers);
        reply
    }
}

/// A poll's answer as a frame on its connection.
pub(crate) fn send(shard: u32, server: u32, a: PollAnswer) -> NodeAction {
    NodeAction::Send {
        conn: a.conn,
        body: Body::ZkWatchFeed(ZkWatchFeed {
            shard,
            server,
            after: a.after,
            upto: a.feed.upto,
            triggers: a
                .feed
                .entries
                .into_iter()
                .map(|e| ZkTrigger {
                    pos: e.pos,
                    zxid: e.zxid,
                    event: e.event.code(),
                    path: e.path,
                    readable: e.readable,
                })
                .collect(),
            gap: a.feed.gap,
        }),
    }
}
