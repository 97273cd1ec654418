//! The gateway's watches, as a state machine with no I/O: which session watches which
//! znode since which position, and what fires them.
//!
//! ZooKeeper's watches belong to the server a client talks to; here that is the gateway.
//! A watch is set by a read (getData, exists, getChildren) that went through the log, at
//! the read's position in its shard's order (RSMKeeper: its zxid). What the servers apply
//! comes back as a feed per shard (`ZkWatchFeed`: every trigger after a position, in
//! order); a trigger at a later position than a watch's fires it, once. Each trigger is
//! taken from the feed of the shard that owns its path (every touched shard reports an
//! op's triggers, the owner's is enough).
//!
//! A read's reply is let out only once the feed of its shard has reached the read's
//! position (`upto`), so that an event that came before the reply's state goes out
//! before the reply (ZooKeeper's order), and so that the watch, armed when the reply goes
//! out, can be checked against the triggers already seen past its position (`recent`).
//!
//! Watch tables follow ZooKeeper's: data watches (getData, exists) fire on
//! NodeCreated, NodeDataChanged and NodeDeleted; child watches (getChildren) on
//! NodeChildrenChanged and NodeDeleted; a session holds one watch per table and path, and
//! gets one event per trigger. A trigger on a znode the world may not READ uses the
//! watches up without an event.

use mason_zk::feed::FeedEntry;
use mason_zk::{EventType, WatchKind, WatchedEvent};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Triggers kept per shard after the feed passed them, to check watches armed late.
const RECENT: usize = 1 << 16;

/// A gap is taken as final once a shard's feed has made no progress for this long.
pub const GAP_PATIENCE_US: u64 = 1_000_000;

#[derive(Debug, Default)]
struct Feed {
    /// Complete up to here (None: not heard yet).
    upto: Option<u64>,
    /// The last triggers seen, in order.
    recent: VecDeque<Recent>,
    /// `recent` holds every trigger after this position.
    recent_from: u64,
    progress_at: u64,
}

/// A trigger the feed passed, kept to check watches armed after it.
#[derive(Debug)]
struct Recent {
    pos: u64,
    event: EventType,
    path: String,
    readable: bool,
    /// The (session, child table?) watches it fired. A watch armed later from a read
    /// before it was, in ZooKeeper, already set when it came: it is used up by it, and
    /// sends no second event to a session that got one.
    fired: Vec<(i64, bool)>,
}

/// One (session, table) watch on a path: the position it was armed at.
#[derive(Debug, Default)]
struct PathWatches {
    data: BTreeMap<i64, u64>,
    child: BTreeMap<i64, u64>,
}

/// What arming a watch did.
#[derive(Debug, PartialEq, Eq)]
pub enum Armed {
    /// It waits for a trigger.
    Waiting,
    /// A trigger past its position was already seen: the event, to send now (None: the
    /// trigger's node is not readable; the watch is used up silently).
    Fired(Option<WatchedEvent>),
    /// Its position is older than what the gateway still knows: it cannot be decided.
    Unknown,
}

/// A feed's answer, as the hub takes it.
#[derive(Debug)]
pub struct FeedIn {
    pub after: u64,
    pub upto: u64,
    pub entries: Vec<FeedEntry>,
    pub gap: bool,
}

/// What a feed answer did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fired {
    /// Events to send, in order.
    pub events: Vec<(i64, WatchedEvent)>,
    /// Sessions whose watches on this shard were lost to a gap: their connections should
    /// close, so that their clients reconnect and set their watches again.
    pub lost: Vec<i64>,
}

pub struct WatchHub {
    /// ZK-Mason's shard count (0: RSMKeeper, one feed).
    shards: u32,
    feeds: Vec<Feed>,
    paths: HashMap<String, PathWatches>,
    /// Watches per session, by shard.
    sessions: HashMap<i64, HashMap<u32, usize>>,
}

impl WatchHub {
    pub fn new(shards: u32) -> WatchHub {
        WatchHub {
            shards,
            feeds: (0..shards.max(1)).map(|_| Feed::default()).collect(),
            paths: HashMap::new(),
            sessions: HashMap::new(),
        }
    }

    /// Feeds: one per shard (one for RSMKeeper).
    pub fn feeds(&self) -> u32 {
        self.shards.max(1)
    }

    /// The shard that owns `path` (its feed).
    pub fn shard_of(&self, path: &str) -> u32 {
        if self.shards == 0 {
            0
        } else {
            mason_zk::shard::owner(path, self.shards)
        }
    }

    /// Where shard `shard`'s feed is complete up to (None: not heard yet).
    pub fn upto(&self, shard: u32) -> Option<u64> {
        self.feeds.get(shard as usize).and_then(|f| f.upto)
    }

    /// Whether the feed of `shard` has reached `pos`.
    pub fn reached(&self, shard: u32, pos: u64) -> bool {
        self.upto(shard).is_some_and(|u| u >= pos)
    }

    /// Whether `session` has a watch on any shard.
    pub fn watching(&self, session: i64) -> bool {
        self.sessions.get(&session).is_some_and(|m| !m.is_empty())
    }

    /// Number of (session, path, table) watches, as mntr counts them.
    pub fn count(&self) -> usize {
        self.paths
            .values()
            .map(|w| w.data.len() + w.child.len())
            .sum()
    }

    /// Paths watched.
    pub fn paths(&self) -> usize {
        self.paths.len()
    }

    /// Sessions with a watch.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Arms `session`'s watch of `kind` on `path`, set by a read at `pos` of the path's
    /// shard. The feed of that shard must have reached `pos` (the caller holds the read's
    /// reply until it has).
    pub fn arm(&mut self, session: i64, path: &str, kind: WatchKind, pos: u64) -> Armed {
        let shard = self.shard_of(path);
        let Some(feed) = self.feeds.get(shard as usize) else {
            return Armed::Unknown;
        };
        if pos < feed.recent_from {
            return Armed::Unknown;
        }
        let child = kind == WatchKind::Child;
        let hit = self.feeds.get_mut(shard as usize).and_then(|feed| {
            feed.recent
                .iter_mut()
                .rev()
                .take_while(|r| r.pos > pos)
                .filter(|r| r.path == path && fires(kind, r.event))
                .last()
        });
        if let Some(r) = hit {
            // The session already had its event for this trigger (from this table's
            // watch, which this one is in ZooKeeper, or from the other table's: one event
            // per session): the watch is used up without another.
            let told = r.fired.iter().any(|(s, _)| *s == session);
            if !r.fired.contains(&(session, child)) {
                r.fired.push((session, child));
            }
            if told {
                return Armed::Fired(None);
            }
            return Armed::Fired(r.readable.then(|| WatchedEvent {
                event_type: r.event,
                path: r.path.clone(),
            }));
        }
        let w = self.paths.entry(path.to_string()).or_default();
        let table = match kind {
            WatchKind::Data | WatchKind::Exist => &mut w.data,
            WatchKind::Child => &mut w.child,
        };
        let new = !table.contains_key(&session);
        let at = table.entry(session).or_insert(pos);
        *at = (*at).min(pos);
        if new {
            *self
                .sessions
                .entry(session)
                .or_default()
                .entry(shard)
                .or_default() += 1;
        }
        Armed::Waiting
    }

    /// A feed answer from a server of `shard`, at `now_us`.
    pub fn on_feed(&mut self, shard: u32, f: FeedIn, now_us: u64) -> Fired {
        let mut fired = Fired::default();
        let sharded = self.shards > 0;
        let shards = self.shards;
        let Some(feed) = self.feeds.get_mut(shard as usize) else {
            return fired;
        };
        let Some(upto) = feed.upto else {
            // The first answer only says where the feed starts.
            feed.upto = Some(f.upto);
            feed.recent_from = f.upto;
            feed.progress_at = now_us;
            return fired;
        };
        if f.gap {
            let take = f.upto > upto && now_us.saturating_sub(feed.progress_at) > GAP_PATIENCE_US;
            if take {
                feed.upto = Some(f.upto);
                feed.recent.clear();
                feed.recent_from = f.upto;
                feed.progress_at = now_us;
                fired.lost = self.drop_shard(shard);
            }
            return fired;
        }
        if f.after > upto || f.upto <= upto {
            return fired;
        }
        for e in f.entries {
            if e.pos <= upto || e.pos > f.upto {
                continue;
            }
            if sharded && mason_zk::shard::owner(&e.path, shards) != shard {
                continue;
            }
            // The watches it fires: (session, child table?).
            let mut pairs: Vec<(i64, bool)> = Vec::new();
            if let Some(w) = self.paths.get_mut(&e.path) {
                let (data, child) = match e.event {
                    EventType::NodeCreated | EventType::NodeDataChanged => (true, false),
                    EventType::NodeDeleted => (true, true),
                    EventType::NodeChildrenChanged => (false, true),
                };
                for (on, is_child, table) in
                    [(data, false, &mut w.data), (child, true, &mut w.child)]
                {
                    if !on {
                        continue;
                    }
                    table.retain(|s, at| {
                        let fire = *at < e.pos;
                        if fire {
                            pairs.push((*s, is_child));
                        }
                        !fire
                    });
                }
                if w.data.is_empty() && w.child.is_empty() {
                    self.paths.remove(&e.path);
                }
            }
            for (s, _) in &pairs {
                if let Some(m) = self.sessions.get_mut(s) {
                    if let Some(n) = m.get_mut(&shard) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            m.remove(&shard);
                        }
                    }
                    if m.is_empty() {
                        self.sessions.remove(s);
                    }
                }
            }
            if e.readable {
                let mut hit: Vec<i64> = pairs.iter().map(|(s, _)| *s).collect();
                hit.sort_unstable();
                hit.dedup();
                fired.events.extend(hit.into_iter().map(|s| {
                    (
                        s,
                        WatchedEvent {
                            event_type: e.event,
                            path: e.path.clone(),
                        },
                    )
                }));
            }
            let Some(feed) = self.feeds.get_mut(shard as usize) else {
                break;
            };
            feed.recent.push_back(Recent {
                pos: e.pos,
                event: e.event,
                path: e.path,
                readable: e.readable,
                fired: pairs,
            });
            while feed.recent.len() > RECENT {
                if let Some(r) = feed.recent.pop_front() {
                    feed.recent_from = r.pos;
                }
            }
        }
        if let Some(feed) = self.feeds.get_mut(shard as usize) {
            feed.upto = Some(f.upto);
            feed.progress_at = now_us;
        }
        fired
    }

    /// Forgets every watch of `session` (its session ended, or moved elsewhere).
    pub fn drop_session(&mut self, session: i64) {
        if self.sessions.remove(&session).is_none() {
            return;
        }
        self.paths.retain(|_, w| {
            w.data.remove(&session);
            w.child.remove(&session);
            !(w.data.is_empty() && w.child.is_empty())
        });
    }

    /// Drops every watch on `shard`'s paths; returns the sessions that had one.
    fn drop_shard(&mut self, shard: u32) -> Vec<i64> {
        let shards = self.shards;
        let mut lost = Vec::new();
        self.paths.retain(|path, w| {
            if shards > 0 && mason_zk::shard::owner(path, shards) != shard {
                return true;
            }
            lost.extend(w.data.keys().chain(w.child.keys()).copied());
            false
        });
        for s in &lost {
            if let Some(m) = self.sessions.get_mut(s) {
                m.remove(&shard);
                if m.is_empty() {
                    self.sessions.remove(s);
                }
            }
        }
        lost.sort_unstable();
        lost.dedup();
        lost
    }
}

/// Whether a trigger of `event` fires a watch of `kind`.
fn fires(kind: WatchKind, event: EventType) -> bool {
    match kind {
        WatchKind::Data | WatchKind::Exist => event != EventType::NodeChildrenChanged,
        WatchKind::Child => matches!(
            event,
            EventType::NodeChildrenChanged | EventType::NodeDeleted
        ),
    }
}

#[cfg(test)]
mod tests;
