//! RSMKeeper's side of the watch feed (docs/design.md, "The watch feed"): every replica
//! with a tree records the watch triggers each write's apply fired at the write's zxid,
//! in a bounded [`TriggerLog`] (reads and refused requests only move it on to the tree's
//! last zxid; an idle session's expiry records its closeSession's; a snapshot restored
//! resets it at the tree's last zxid). A ZooKeeper front end polls every replica of the
//! group with `ZkWatchPoll` (shard 0) and gets `ZkWatchFeed` on that connection: at once
//! when there is something past its position, else when something is applied or at the
//! poll's deadline ([`FeedPolls`], released in `flush`, so on every tick too).
//!
//! The answers do not go out as [`super::Action`]s (every driver of a replica matches
//! those exhaustively): the runtime takes them with [`Replica::take_feeds`] after each
//! event and flush. A replica without a tree (not RSMKeeper), or a poll for another
//! shard than 0, is answered with a gap at position 0.

use super::{ConnId, Replica};
use mason_common::zkmsg::{ZkTrigger, ZkWatchFeed, ZkWatchPoll};
use mason_zk::feed::{TriggerLog, DEFAULT_FEED_BYTES};
use mason_zk::feed_polls::{FeedPolls, Poll, PollAnswer};
use mason_zk::Trigger;

/// The log, the polls held, and the answers not taken yet.
pub(crate) struct KeeperFeed {
    log: TriggerLog,
    polls: FeedPolls,
    answers: Vec<(ConnId, ZkWatchFeed)>,
}

impl Default for KeeperFeed {
    fn default() -> KeeperFeed {
        KeeperFeed {
            log: TriggerLog::new(0, DEFAULT_FEED_BYTES),
            polls: FeedPolls::default(),
            answers: Vec::new(),
        }
    }
}

impl KeeperFeed {
    /// A request was applied: the tree's last zxid went from `before` to `after`, and
    /// the apply fired `fired`.
    pub(super) fn applied(&mut self, before: i64, after: i64, fired: &[Trigger]) {
        let at = u64::try_from(after).unwrap_or(0);
        if after > before {
            self.log.record(at, after, fired);
        } else {
            self.log.advance(at);
        }
    }

    /// The tree was replaced by one whose last zxid is `zxid` (a snapshot).
    pub(super) fn reset(&mut self, zxid: i64) {
        self.log.reset(u64::try_from(zxid).unwrap_or(0));
    }
}

impl Replica {
    /// A watcher's poll on connection `conn`.
    pub fn on_watch_poll(&mut self, conn: ConnId, poll: ZkWatchPoll) {
        let server = self.cfg.replica;
        if self.tree.is_none() || poll.shard != 0 {
            let feed = ZkWatchFeed {
                shard: poll.shard,
                server,
                after: poll.after,
                upto: 0,
                triggers: Vec::new(),
                gap: true,
            };
            self.feed.answers.push((conn, feed));
            return;
        }
        let p = Poll {
            conn,
            after: poll.after,
            wait_ms: poll.wait_ms,
            fresh: poll.fresh,
        };
        let mut answers = Vec::new();
        let f = &mut self.feed;
        f.polls.poll(&f.log, p, self.now, &mut answers);
        f.answers
            .extend(answers.into_iter().map(|a| to_feed(server, a)));
    }

    /// A connection closed: its held polls go.
    pub fn on_watch_closed(&mut self, conn: ConnId) {
        self.feed.polls.closed(conn);
    }

    /// The feed answers to send since the last call: (connection, answer).
    pub fn take_feeds(&mut self) -> Vec<(ConnId, ZkWatchFeed)> {
        std::mem::take(&mut self.feed.answers)
    }

    /// This replica's recent triggers (positions are zxids).
    pub fn feed(&self) -> &TriggerLog {
        &self.feed.log
    }

    /// Answers the held polls something was applied for, or whose deadline has come.
    pub(super) fn release_polls(&mut self) {
        let mut answers = Vec::new();
        let f = &mut self.feed;
        f.polls.release(&f.log, self.now, &mut answers);
        let server = self.cfg.replica;
        f.answers
            .extend(answers.into_iter().map(|a| to_feed(server, a)));
    }
}

fn to_feed(server: u32, a: PollAnswer) -> (ConnId, ZkWatchFeed) {
    let triggers = a
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
        .collect();
    let feed = ZkWatchFeed {
        shard: 0,
        server,
        after: a.after,
        upto: a.feed.upto,
        triggers,
        gap: a.feed.gap,
    };
    (a.conn, feed)
}
