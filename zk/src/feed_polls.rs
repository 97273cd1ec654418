//! The polls of a watch feed a server holds (a long poll): a front end asks a server
//! "what fired after `after`"; when the server's [`TriggerLog`] has nothing past it, the
//! poll waits until something is applied past `after` or until its deadline, whichever
//! comes first. Shared by the ZK-Mason shard servers and the RSMKeeper replicas, which
//! turn each [`PollAnswer`] into a `ZkWatchFeed` on the poll's connection.
//!
//! Answers are idempotent (the triggers after a position), so a duplicated or old poll
//! is harmless; what is held is bounded ([`MAX_HELD_POLLS`]), and a poll waits at most
//! [`MAX_WAIT_MS`].

use std::collections::VecDeque;

use crate::feed::{FeedAnswer, TriggerLog};

/// Polls held at most; past that, the oldest is answered at once with what there is.
pub const MAX_HELD_POLLS: usize = 1024;
/// The longest a poll is held, whatever it asks.
pub const MAX_WAIT_MS: u32 = 2000;
/// About the most trigger bytes in one answer.
pub const ANSWER_BYTES: usize = 1 << 20;

/// A poll, as a server hears it (`ZkWatchPoll` less its shard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Poll {
    pub conn: u64,
    pub after: u64,
    pub wait_ms: u32,
    /// The front end holds no position yet: answer only where the server is.
    pub fresh: bool,
}

/// An answer to send on `conn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollAnswer {
    pub conn: u64,
    pub after: u64,
    pub feed: FeedAnswer,
}

#[derive(Debug, Clone)]
struct Held {
    conn: u64,
    after: u64,
    /// When it is answered anyway (us).
    deadline: u64,
}

/// The polls a server holds, oldest first.
#[derive(Debug, Clone, Default)]
pub struct FeedPolls {
    held: VecDeque<Held>,
}

fn answer(log: &TriggerLog, conn: u64, after: u64) -> PollAnswer {
    PollAnswer {
        conn,
        after,
        feed: log.answer(after, ANSWER_BYTES),
    }
}

impl FeedPolls {
    /// A poll at time `now` (us): answered into `out` at once, or held.
    pub fn poll(&mut self, log: &TriggerLog, p: Poll, now: u64, out: &mut Vec<PollAnswer>) {
        if p.fresh {
            out.push(PollAnswer {
                conn: p.conn,
                after: log.upto(),
                feed: FeedAnswer {
                    upto: log.upto(),
                    entries: Vec::new(),
                    gap: false,
                },
            });
            return;
        }
        let a = answer(log, p.conn, p.after);
        if a.feed.gap || !a.feed.entries.is_empty() || a.feed.upto > p.after || p.wait_ms == 0 {
            out.push(a);
            return;
        }
        if self.held.len() >= MAX_HELD_POLLS {
            if let Some(old) = self.held.pop_front() {
                out.push(answer(log, old.conn, old.after));
            }
        }
        let wait_us = u64::from(p.wait_ms.min(MAX_WAIT_MS)) * 1000;
        self.held.push_back(Held {
            conn: p.conn,
            after: p.after,
            deadline: now.saturating_add(wait_us),
        });
    }

    /// Answers the held polls that something new is applied for, and those whose
    /// deadline has come (called after each burst of applies, and on each tick).
    pub fn release(&mut self, log: &TriggerLog, now: u64, out: &mut Vec<PollAnswer>) {
        if self.held.is_empty() {
            return;
        }
        let upto = log.upto();
        self.held.retain(|h| {
            if upto > h.after || now >= h.deadline {
                out.push(answer(log, h.conn, h.after));
                false
            } else {
                true
            }
        });
    }

    /// A connection closed: its polls go.
    pub fn closed(&mut self, conn: u64) {
        self.held.retain(|h| h.conn != conn);
    }

    /// The earliest deadline of a held poll.
    pub fn next_deadline(&self) -> Option<u64> {
        self.held.iter().map(|h| h.deadline).min()
    }

    /// Polls held now.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::Trigger;
    use crate::types::{perms, Acl, EventType};

    fn trig(path: &str) -> Trigger {
        Trigger {
            path: path.into(),
            event: EventType::NodeDataChanged,
            acl: vec![Acl::new(perms::ALL, "world", "anyone")],
        }
    }

    fn poll(conn: u64, after: u64) -> Poll {
        Poll {
            conn,
            after,
            wait_ms: 500,
            fresh: false,
        }
    }

    #[test]
    fn a_poll_waits_for_a_write_or_its_deadline() {
        let mut log = TriggerLog::new(0, 1 << 20);
        let mut polls = FeedPolls::default();
        let mut out = Vec::new();
        log.record(1, 1, &[trig("/a")]);
        polls.poll(&log, poll(1, 0), 0, &mut out);
        assert_eq!(out.len(), 1, "something new: answered at once");
        assert_eq!(out[0].feed.entries.len(), 1);
        out.clear();
        polls.poll(&log, poll(1, 1), 0, &mut out);
        polls.poll(&log, poll(2, 1), 0, &mut out);
        assert!(out.is_empty() && polls.held() == 2);
        assert_eq!(polls.next_deadline(), Some(500_000));
        polls.closed(2);
        polls.release(&log, 100_000, &mut out);
        assert!(out.is_empty(), "nothing new, not due");
        log.record(2, 2, &[trig("/b")]);
        polls.release(&log, 100_000, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].conn, out[0].feed.upto), (1, 2));
        assert_eq!(out[0].feed.entries[0].path, "/b");
        out.clear();
        polls.poll(&log, poll(3, 2), 100_000, &mut out);
        polls.release(&log, 599_999, &mut out);
        assert!(out.is_empty());
        polls.release(&log, 600_000, &mut out);
        assert_eq!(out.len(), 1, "answered at its deadline");
        assert!(out[0].feed.entries.is_empty() && out[0].feed.upto == 2);
        assert_eq!(polls.held(), 0);
    }

    #[test]
    fn a_fresh_poll_learns_where_the_server_is_and_the_held_are_bounded() {
        let mut log = TriggerLog::new(5, 1 << 20);
        log.record(7, 3, &[trig("/a")]);
        let mut polls = FeedPolls::default();
        let mut out = Vec::new();
        let fresh = Poll {
            fresh: true,
            ..poll(1, 0)
        };
        polls.poll(&log, fresh, 0, &mut out);
        assert_eq!((out[0].after, out[0].feed.upto), (7, 7));
        assert!(out[0].feed.entries.is_empty() && !out[0].feed.gap);
        out.clear();
        polls.poll(&log, poll(1, 2), 0, &mut out);
        assert!(out[0].feed.gap, "before the log's start");
        out.clear();
        for c in 0..MAX_HELD_POLLS as u64 + 3 {
            polls.poll(&log, poll(c, 7), 0, &mut out);
        }
        assert_eq!(polls.held(), MAX_HELD_POLLS);
        assert_eq!(
            out.iter().map(|a| a.conn).collect::<Vec<_>>(),
            vec![0, 1, 2],
            "the oldest answered"
        );
    }
}
