//! The contiguous prefix of one space, as `mason watch` prints it: what every group binds
//! there (each replica's batches as they apply, and the ranges of its snapshot when the
//! watch joins), merged and let out in number order, each line only once every number
//! below it is known. No I/O: the runtime in `watch.rs` feeds it notices and prints lines.

use mason_client::watch::Notice;
use mason_common::msg::Promise;
use mason_common::record::BoundBatch;
use mason_common::SpaceMask;
use std::collections::BTreeMap;

/// One line of the watch: numbers of the space, in order, each once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// `number` is bound to op `seq` of client session `session`, by `group`.
    Op {
        number: u64,
        group: u32,
        session: u64,
        seq: u64,
    },
    /// Numbers `start..end` (end excluded) are noops: the part of a batch's range no op
    /// took, or a takeover's holes.
    Noop { start: u64, end: u64, group: u32 },
    /// Numbers `start..end` were bound before the watch joined (or while it was away), and
    /// are known only as ranges: from a replica's snapshot (`Some(group)`), or from a
    /// watermark (`None`: the groups no longer record whose they were).
    Earlier {
        start: u64,
        end: u64,
        group: Option<u32>,
    },
}

impl Line {
    /// The numbers this line covers.
    pub fn span(&self) -> (u64, u64) {
        match *self {
            Line::Op { number, .. } => (number, number + 1),
            Line::Noop { start, end, .. } | Line::Earlier { start, end, .. } => (start, end),
        }
    }

    /// `17 op group=1 session=S seq=Q`, `20..23 noop group=0`, `0..9 earlier group=?`.
    pub fn text(&self) -> String {
        match *self {
            Line::Op {
                number,
                group,
                session,
                seq,
            } => format!("{number} op group={group} session={session} seq={seq}"),
            Line::Noop { start, end, group } => format!("{start}..{end} noop group={group}"),
            Line::Earlier { start, end, group } => match group {
                Some(g) => format!("{start}..{end} earlier group={g}"),
                None => format!("{start}..{end} earlier group=?"),
            },
        }
    }

    /// One JSON object: `kind`, `group` (null when unknown), and `number` or `start`/`end`.
    pub fn json(&self) -> String {
        let v = match *self {
            Line::Op {
                number,
                group,
                session,
                seq,
            } => serde_json::json!({
                "kind": "op", "number": number, "group": group, "session": session, "seq": seq,
            }),
            Line::Noop { start, end, group } => serde_json::json!({
                "kind": "noop", "start": start, "end": end, "group": group,
            }),
            Line::Earlier { start, end, group } => serde_json::json!({
                "kind": "earlier", "start": start, "end": end, "group": group,
            }),
        };
        v.to_string()
    }
}

/// Why the merge cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// More than the bound waits above a number nobody has reported.
    Overflow {
        waiting_at: u64,
        held: usize,
        max: usize,
    },
    /// The watched space is not one of the cluster's.
    NoSuchSpace { space: u32, spaces: usize },
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Overflow {
                waiting_at,
                held,
                max,
            } => write!(
                f,
                "{held} entries wait above number {waiting_at}, which no group has reported \
                 bound, past --max-pending {max} (is a group's every replica unreachable?)"
            ),
            Stop::NoSuchSpace { space, spaces } => write!(
                f,
                "space {space} is not one of the cluster's {spaces} space(s)"
            ),
        }
    }
}

/// One batch's range in the watched space: ops take `start..start + ops.len()` in turn,
/// the rest up to `end` are noops.
#[derive(Debug)]
struct Batch {
    end: u64,
    group: u32,
    ops: Vec<(u64, u64)>,
}

/// The merge of every group's bindings in one space.
///
/// Memory: what waits above the next number to print (batches, their ops, snapshot ranges)
/// is counted in entries (one per batch, one per op, one per range); [`Merge::note`] fails
/// with [`Stop::Overflow`] once that passes `max_held`, rather than grow without end while
/// a hole stays open.
#[derive(Debug)]
pub struct Merge {
    space: u32,
    /// Groups whose snapshot arrived (the watch knows where each stands).
    heard: Vec<bool>,
    /// The next number to print; `None` until the start is set.
    next: Option<u64>,
    /// Where printing stops (`--count`), once started.
    end: Option<u64>,
    /// Batches by their first number here; disjoint in a correct cluster.
    detail: BTreeMap<u64, Batch>,
    /// Snapshot ranges by start: disjoint (overlapping ones are merged), with their group.
    coarse: BTreeMap<u64, (u64, u32)>,
    /// Every number below is bound (the highest watermark reported).
    floor: u64,
    held: usize,
    max_held: usize,
}

impl Merge {
    pub fn new(space: u32, groups: u32, max_held: usize) -> Merge {
        Merge {
            space,
            heard: vec![false; groups as usize],
            next: None,
            end: None,
            detail: BTreeMap::new(),
            coarse: BTreeMap::new(),
            floor: 0,
            held: 0,
            max_held,
        }
    }

    /// Whether a snapshot of every group has arrived.
    pub fn heard_all(&self) -> bool {
        self.heard.iter().all(|h| *h)
    }

    /// The groups not heard from yet.
    pub fn unheard(&self) -> Vec<u32> {
        (0..self.heard.len() as u32)
            .filter(|g| !self.heard[*g as usize])
            .collect()
    }

    pub fn started(&self) -> bool {
        self.next.is_some()
    }

    /// The next number to print, once started.
    pub fn next(&self) -> Option<u64> {
        self.next
    }

    /// Entries held above the next number.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Prints from `from`, and at most `count` numbers when given.
    pub fn start(&mut self, from: u64, count: Option<u64>) {
        self.next = Some(from);
        self.end = count.map(|c| from.saturating_add(c));
        self.drop_below(from);
    }

    /// Whether `--count` numbers have been printed.
    pub fn done(&self) -> bool {
        matches!((self.next, self.end), (Some(n), Some(e)) if n >= e)
    }

    /// Every number below this is known bound, from what arrived so far: where the groups
    /// stand now.
    pub fn known_prefix(&self) -> u64 {
        let mut x = self.floor;
        loop {
            let d = self.detail.range(..=x).next_back().map(|(_, b)| b.end);
            let c = self.coarse.range(..=x).next_back().map(|(_, r)| r.0);
            match d.into_iter().chain(c).filter(|e| *e > x).max() {
                Some(e) => x = e,
                None => return x,
            }
        }
    }

    /// Takes what a replica reported.
    pub fn note(&mut self, n: &Notice) -> Result<(), Stop> {
        match n {
            Notice::Snapshot(p) => self.snapshot(p)?,
            Notice::Bound(b) => self.batch(b),
        }
        if self.held > self.max_held {
            return Err(Stop::Overflow {
                waiting_at: self.next.unwrap_or(self.floor),
                held: self.held,
                max: self.max_held,
            });
        }
        Ok(())
    }

    fn snapshot(&mut self, p: &Promise) -> Result<(), Stop> {
        let Some(w) = p.watermarks.get(self.space as usize) else {
            return Err(Stop::NoSuchSpace {
                space: self.space,
                spaces: p.watermarks.len(),
            });
        };
        if let Some(h) = self.heard.get_mut(p.group as usize) {
            *h = true;
        }
        self.floor = self.floor.max(*w);
        if let Some(it) = p.recorded.as_ref().and_then(|r| r.iter()) {
            for (s, b, l) in it {
                if s == self.space {
                    self.add_range(b, b.saturating_add(l), p.group);
                }
            }
        }
        Ok(())
    }

    fn batch(&mut self, b: &BoundBatch) {
        let mask = SpaceMask(b.space_mask);
        let Some(k) = mask.index_of(self.space) else {
            return;
        };
        let (Some(&base), Some(&count)) = (b.bases.get(k), b.counts.get(k)) else {
            tracing::warn!(
                group = b.group,
                batch = b.batch_id,
                "a batch without its range"
            );
            return;
        };
        let n = b.op_sessions.len();
        if b.op_seqs.len() != n || b.op_masks.len() != n {
            tracing::warn!(
                group = b.group,
                batch = b.batch_id,
                "a batch's op columns differ"
            );
            return;
        }
        let end = base.saturating_add(u64::from(count));
        if end <= self.next.unwrap_or(0) || self.detail.contains_key(&base) {
            return; // printed already, or another replica's copy
        }
        let ops: Vec<(u64, u64)> = (0..n)
            .filter(|i| SpaceMask(b.op_masks[*i]).contains(self.space))
            .map(|i| (b.op_sessions[i], b.op_seqs[i]))
            .collect();
        if ops.len() as u64 > u64::from(count) {
            tracing::warn!(
                group = b.group,
                batch = b.batch_id,
                "a batch's ops overflow its range"
            );
            return;
        }
        self.held += 1 + ops.len();
        let group = b.group;
        self.detail.insert(base, Batch { end, group, ops });
    }

    /// Adds `start..end` of `group` to the snapshot ranges, merging what it overlaps.
    fn add_range(&mut self, mut start: u64, mut end: u64, group: u32) {
        if end <= self.next.unwrap_or(0) || start >= end {
            return;
        }
        // The ranges are disjoint and sorted, so their ends ascend too: those that overlap
        // `start..end` are the last ones starting before `end`. Ranges that only touch
        // stay apart (they may be different groups').
        let over: Vec<u64> = self
            .coarse
            .range(..end)
            .rev()
            .take_while(|(_, (e, _))| *e > start)
            .map(|(s, _)| *s)
            .collect();
        for s in over {
            if let Some((e, _)) = self.coarse.remove(&s) {
                self.held -= 1;
                start = start.min(s);
                end = end.max(e);
            }
        }
        self.held += 1;
        self.coarse.insert(start, (end, group));
    }

    fn drop_below(&mut self, next: u64) {
        while let Some(e) = self.detail.first_entry() {
            if e.get().end > next {
                break;
            }
            self.held -= 1 + e.remove().ops.len();
        }
        while let Some(e) = self.coarse.first_entry() {
            if e.get().0 > next {
                break;
            }
            e.remove();
            self.held -= 1;
        }
    }

    /// The next line, if every number below it is known (and `--count` is not reached).
    pub fn pop(&mut self) -> Option<Line> {
        let next = self.next?;
        if self.done() {
            return None;
        }
        self.drop_below(next);
        let stop = self.end.unwrap_or(u64::MAX);
        let first = self.detail.first_key_value().map(|(s, _)| *s);
        let line = match first.filter(|s| *s <= next) {
            Some(s) => {
                let b = &self.detail[&s];
                match b.ops.get((next - s) as usize) {
                    Some(&(session, seq)) => Line::Op {
                        number: next,
                        group: b.group,
                        session,
                        seq,
                    },
                    None => Line::Noop {
                        start: next,
                        end: b.end.min(stop),
                        group: b.group,
                    },
                }
            }
            None => {
                // Known only as ranges: up to the next batch known in detail.
                let upto = first.unwrap_or(u64::MAX).min(stop);
                let c = self.coarse.first_key_value().map(|(s, r)| (*s, *r));
                match c {
                    Some((s, (e, g))) if s <= next => Line::Earlier {
                        start: next,
                        end: e.min(upto),
                        group: Some(g),
                    },
                    _ if self.floor > next => Line::Earlier {
                        start: next,
                        end: self.floor.min(upto).min(c.map_or(u64::MAX, |c| c.0)),
                        group: None,
                    },
                    _ => return None,
                }
            }
        };
        self.next = Some(line.span().1);
        Some(line)
    }
}

#[cfg(test)]
mod tests;
