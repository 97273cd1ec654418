//! A server's recent watch triggers, for the front ends that hold ZooKeeper clients'
//! watches (a watch feed). Every server that applies writes (a ZK-Mason shard server, an
//! RSMKeeper replica) records the triggers of each write at the write's position in its
//! order, and answers "what fired after position `after`" from what it still holds.
//!
//! Positions are the server's own order: a shard's space for ZK-Mason, the zxid for
//! RSMKeeper. The log is complete over `(start, upto]`: every trigger at those positions
//! is in it. It is bounded in bytes; the oldest positions go first, whole (never half a
//! position's triggers), and `start` moves up with them. A poll from before `start` is
//! answered with a gap: the front end then falls back on ZooKeeper's own recovery (its
//! clients reconnect and send setWatches).

use std::collections::VecDeque;

use crate::acl::check_acl;
use crate::op::Trigger;
use crate::types::{perms, EventType};

/// One trigger, as a feed carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    pub pos: u64,
    pub zxid: i64,
    pub event: EventType,
    pub path: String,
    /// Whether the world may READ the znode (else the trigger uses up the watches it hits
    /// without an event, as in ZooKeeper 3.8).
    pub readable: bool,
}

impl FeedEntry {
    fn bytes(&self) -> usize {
        self.path.len() + 48
    }
}

/// What a poll gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedAnswer {
    /// Complete up to here: every trigger in `(after, upto]` is in `entries`.
    pub upto: u64,
    pub entries: Vec<FeedEntry>,
    /// The log no longer holds (or never held) the positions just after `after`.
    pub gap: bool,
}

/// The default bound on a log's bytes.
pub const DEFAULT_FEED_BYTES: usize = 32 << 20;

/// The recent triggers of one server.
#[derive(Debug, Clone)]
pub struct TriggerLog {
    entries: VecDeque<FeedEntry>,
    bytes: usize,
    max_bytes: usize,
    start: u64,
    upto: u64,
}

impl TriggerLog {
    /// A log that holds nothing at or before `at` (where the server starts: its snapshot's
    /// position), bounded to `max_bytes`.
    pub fn new(at: u64, max_bytes: usize) -> TriggerLog {
        TriggerLog {
            entries: VecDeque::new(),
            bytes: 0,
            max_bytes: max_bytes.max(1),
            start: at,
            upto: at,
        }
    }

    /// Complete up to here.
    pub fn upto(&self) -> u64 {
        self.upto
    }

    /// Complete from just after here.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The write at `pos` (zxid `zxid`) fired `triggers`. Positions come in order; one at
    /// or before `upto` is ignored (it was recorded).
    pub fn record(&mut self, pos: u64, zxid: i64, triggers: &[Trigger]) {
        if pos <= self.upto {
            return;
        }
        for t in triggers {
            let e = FeedEntry {
                pos,
                zxid,
                event: t.event,
                path: t.path.clone(),
                readable: check_acl(&t.acl, perms::READ).is_ok(),
            };
            self.bytes += e.bytes();
            self.entries.push_back(e);
        }
        self.upto = pos;
        while self.bytes > self.max_bytes {
            let Some(first) = self.entries.front().map(|e| e.pos) else {
                break;
            };
            while self.entries.front().is_some_and(|e| e.pos == first) {
                if let Some(e) = self.entries.pop_front() {
                    self.bytes -= e.bytes();
                }
            }
            self.start = first;
        }
    }

    /// Positions up to `pos` were applied and fired nothing more (noops, reads).
    pub fn advance(&mut self, pos: u64) {
        self.upto = self.upto.max(pos);
    }

    /// The server's state jumped to `at` (a snapshot installed from a peer): what came
    /// before is no longer known to be complete.
    pub fn reset(&mut self, at: u64) {
        self.entries.clear();
        self.bytes = 0;
        self.start = at;
        self.upto = at;
    }

    /// The triggers after `after`, at most about `max_bytes` of them (cut at a position's
    /// end; at least one position's worth).
    pub fn answer(&self, after: u64, max_bytes: usize) -> FeedAnswer {
        if after < self.start {
            return FeedAnswer {
                upto: self.upto,
                entries: Vec::new(),
                gap: true,
            };
        }
        let from = self.entries.partition_point(|e| e.pos <= after);
        let mut entries = Vec::new();
        let mut bytes = 0;
        let mut upto = self.upto.max(after);
        for (i, e) in self.entries.iter().enumerate().skip(from) {
            let ends_position = self.entries.get(i + 1).is_none_or(|n| n.pos != e.pos);
            bytes += e.bytes();
            entries.push(e.clone());
            if bytes >= max_bytes && ends_position && i + 1 < self.entries.len() {
                upto = e.pos;
                break;
            }
        }
        FeedAnswer {
            upto,
            entries,
            gap: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{perms, Acl};

    fn trig(path: &str, event: EventType) -> Trigger {
        Trigger {
            path: path.into(),
            event,
            acl: vec![Acl::new(perms::ALL, "world", "anyone")],
        }
    }

    #[test]
    fn answers_what_fired_after_a_position_in_order() {
        let mut log = TriggerLog::new(10, 1 << 20);
        log.record(11, 100, &[trig("/a", EventType::NodeCreated)]);
        log.advance(13);
        log.record(
            14,
            103,
            &[
                trig("/a/b", EventType::NodeCreated),
                trig("/a", EventType::NodeChildrenChanged),
            ],
        );
        let all = log.answer(10, 1 << 20);
        assert!(!all.gap);
        assert_eq!(all.upto, 14);
        assert_eq!(
            all.entries.iter().map(|e| e.pos).collect::<Vec<_>>(),
            vec![11, 14, 14]
        );
        let later = log.answer(11, 1 << 20);
        assert_eq!(later.entries.len(), 2);
        let none = log.answer(14, 1 << 20);
        assert!(none.entries.is_empty() && none.upto == 14 && !none.gap);
        assert!(log.answer(9, 1 << 20).gap, "before the start is a gap");
        // A position recorded again is ignored.
        log.record(14, 103, &[trig("/x", EventType::NodeDeleted)]);
        assert_eq!(log.answer(10, 1 << 20).entries.len(), 3);
    }

    #[test]
    fn is_bounded_and_drops_whole_positions() {
        let mut log = TriggerLog::new(0, 200);
        for pos in 1..=20u64 {
            log.record(
                pos,
                pos as i64,
                &[
                    trig("/n", EventType::NodeDataChanged),
                    trig("/m", EventType::NodeDataChanged),
                ],
            );
        }
        assert!(log.bytes <= 200);
        let start = log.start();
        assert!(start > 0);
        assert!(log.answer(start - 1, 1 << 20).gap);
        let a = log.answer(start, 1 << 20);
        assert!(!a.gap);
        assert_eq!(a.entries.first().map(|e| e.pos), Some(start + 1));
        assert_eq!(
            a.entries.len() % 2,
            0,
            "a position's triggers stay together"
        );
    }

    #[test]
    fn an_answer_cut_to_size_ends_at_a_whole_position() {
        let mut log = TriggerLog::new(0, 1 << 20);
        for pos in 1..=10u64 {
            log.record(
                pos,
                pos as i64,
                &[
                    trig("/p", EventType::NodeDataChanged),
                    trig("/q", EventType::NodeDataChanged),
                ],
            );
        }
        let a = log.answer(0, 100);
        assert!(a.upto < 10);
        assert!(a.entries.iter().all(|e| e.pos <= a.upto));
        assert_eq!(a.entries.len() as u64, 2 * a.upto);
        let b = log.answer(a.upto, 1 << 20);
        assert_eq!(b.upto, 10);
        assert_eq!(a.entries.len() + b.entries.len(), 20);
    }

    #[test]
    fn an_unreadable_node_is_marked() {
        let mut log = TriggerLog::new(0, 1 << 20);
        log.record(
            1,
            1,
            &[Trigger {
                path: "/secret".into(),
                event: EventType::NodeDataChanged,
                acl: vec![Acl::new(perms::ALL, "ip", "10.0.0.1")],
            }],
        );
        assert!(!log.answer(0, 1 << 20).entries[0].readable);
    }
}
