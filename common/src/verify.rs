//! The invariant checker (DESIGN.md section 7) shared by `mason local` and the simulator.
//!
//! Feed it what was bound (committed batches as the replicas recorded them, or the
//! sequencer's own record of its grants in the direct baseline) and what clients were told
//! (the numbers they received, as they recorded them), then [`Checker::finish`] checks, per
//! space:
//! - Unique: no number is bound twice (ranges never overlap);
//! - Contiguous: the bound numbers are exactly `0..=max`;
//! - Once: a (session, seq) is bound at most once;
//! - FIFO: for one session and one space, a later op has a larger number;
//! - Stable: every acknowledged number is the one bound to that op.
//!
//! The numbers of a batch's ops are derived here from its ranges ([`op_numbers`]), by code
//! of its own, not by the code the proxies answer clients with: a bug in either shows as a
//! Stable violation instead of passing both.

use crate::record::BoundBatch;
use crate::types::SpaceMask;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// A broken invariant, with enough detail to find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
    /// The (client, seq) of the op at fault, when one op is.
    pub op: Option<(u64, u64)>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.invariant, self.detail)
    }
}

fn violation(invariant: &'static str, detail: String) -> Violation {
    Violation {
        invariant,
        detail,
        op: None,
    }
}

fn op_violation(invariant: &'static str, client: u64, seq: u64, detail: String) -> Violation {
    Violation {
        invariant,
        detail,
        op: Some((client, seq)),
    }
}

/// Per-space totals of a run that passed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Per space: how many numbers are bound (0..count), and how many of them are noops.
    pub numbers: Vec<u64>,
    pub noops: Vec<u64>,
    pub ops: u64,
    pub acked: u64,
    /// Whether Fenced was checked too (a caller with groups' logs checks it, and says so).
    pub fenced: bool,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fenced = if self.fenced { " fenced" } else { "" };
        write!(
            f,
            "unique contiguous stable once fifo{fenced}; ops={} acked={}",
            self.ops, self.acked
        )?;
        for (s, (n, z)) in self.numbers.iter().zip(&self.noops).enumerate() {
            write!(f, " s{s}=0..{n}(noops={z})")?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct OpsOf {
    /// (seq, mask, offset into `numbers`)
    entries: Vec<(u64, u64, u32)>,
    numbers: Vec<u64>,
}

impl OpsOf {
    fn push(&mut self, seq: u64, mask: SpaceMask, nums: &[u64]) {
        self.entries.push((seq, mask.0, self.numbers.len() as u32));
        self.numbers.extend_from_slice(nums);
    }
    fn nums(&self, i: usize) -> &[u64] {
        let (_, m, off) = self.entries[i];
        let off = off as usize;
        &self.numbers[off..off + SpaceMask(m).len()]
    }
    /// Sorts entries by seq (stable, so the first of duplicates stays first).
    fn sort(&mut self) {
        self.entries.sort_by_key(|e| e.0);
    }
}

/// Collects bindings and acknowledgements; checks them in [`Checker::finish`].
pub struct Checker {
    spaces: u32,
    ranges: Vec<Vec<(u64, u64)>>,
    taken: Vec<u64>,
    bound: HashMap<u64, OpsOf>,
    acked: HashMap<u64, OpsOf>,
    ops: u64,
    acks: u64,
    fenced: bool,
}

/// One op of a batch with its numbers: `(session, seq, mask, numbers)`.
pub type NumberedOp = (u64, u64, SpaceMask, Vec<u64>);

/// Each op of a batch with its numbers, in op order: in each space of the batch, the ops
/// that touch it take the space's range in turn.
pub fn op_numbers(b: &BoundBatch) -> Result<Vec<NumberedOp>, String> {
    let mask = SpaceMask(b.space_mask);
    if b.bases.len() != mask.len() || b.counts.len() != mask.len() {
        return Err(format!(
            "batch {}: {} bases and {} counts for {} spaces",
            b.batch_id,
            b.bases.len(),
            b.counts.len(),
            mask.len()
        ));
    }
    let n = b.op_sessions.len();
    if b.op_seqs.len() != n || b.op_masks.len() != n {
        return Err(format!(
            "batch {}: op columns of different lengths",
            b.batch_id
        ));
    }
    let mut out: Vec<NumberedOp> = (0..n)
        .map(|i| {
            (
                b.op_sessions[i],
                b.op_seqs[i],
                SpaceMask(b.op_masks[i]),
                Vec::new(),
            )
        })
        .collect();
    for op in &out {
        if let Some(s) = op.2.iter().find(|s| !mask.contains(*s)) {
            return Err(format!(
                "batch {}: an op touches space {s}, outside the batch",
                b.batch_id
            ));
        }
    }
    // Space by space (the proxies number op by op): spaces ascend, so each op's numbers
    // come out in its spaces' order.
    for (k, s) in mask.iter().enumerate() {
        let (base, count) = (b.bases[k], u64::from(b.counts[k]));
        let touching = out.iter_mut().filter(|op| op.2.contains(s));
        for (number, op) in (base..).zip(touching) {
            if number >= base + count {
                return Err(format!(
                    "batch {}: its ops need more numbers in space {s} than its range holds",
                    b.batch_id
                ));
            }
            op.3.push(number);
        }
    }
    Ok(out)
}

impl Checker {
    pub fn new(spaces: u32) -> Checker {
        Checker {
            spaces,
            ranges: vec![Vec::new(); spaces as usize],
            taken: vec![0; spaces as usize],
            bound: HashMap::new(),
            acked: HashMap::new(),
            ops: 0,
            acks: 0,
            fenced: false,
        }
    }

    /// The caller checked Fenced over every group's log (with [`check_fenced`]).
    pub fn fenced_checked(&mut self) {
        self.fenced = true;
    }

    fn check_mask(&self, mask: SpaceMask, what: &str) -> Result<(), Violation> {
        if mask.within(self.spaces) {
            Ok(())
        } else {
            Err(violation(
                "Unique",
                format!("{what} touches {mask:?}, beyond {} spaces", self.spaces),
            ))
        }
    }

    /// Records one committed batch: its ranges and the numbers of its ops.
    pub fn bind_batch(&mut self, b: &BoundBatch) -> Result<(), Violation> {
        let mask = SpaceMask(b.space_mask);
        self.check_mask(mask, &format!("group {} batch {}", b.group, b.batch_id))?;
        let ops =
            op_numbers(b).map_err(|e| violation("Unique", format!("group {}: {e}", b.group)))?;
        for ((s, base), count) in mask.iter().zip(&b.bases).zip(&b.counts) {
            if *count > 0 {
                self.ranges[s as usize].push((*base, u64::from(*count)));
            }
        }
        for (c, s, m, n) in ops {
            self.bind_op_numbers(c, s, m, &n);
        }
        Ok(())
    }

    fn bind_op_numbers(&mut self, client: u64, seq: u64, mask: SpaceMask, nums: &[u64]) {
        for s in mask.iter() {
            self.taken[s as usize] += 1;
        }
        self.ops += 1;
        self.bound.entry(client).or_default().push(seq, mask, nums);
    }

    /// Records an op bound on its own (the direct baseline: one grant per op).
    pub fn bind_op(
        &mut self,
        session: u64,
        seq: u64,
        mask: SpaceMask,
        nums: &[u64],
    ) -> Result<(), Violation> {
        self.check_mask(mask, &format!("session {session} op {seq}"))?;
        if nums.len() != mask.len() {
            return Err(violation(
                "Unique",
                format!(
                    "session {session} op {seq}: {} numbers for {mask:?}",
                    nums.len()
                ),
            ));
        }
        for (s, n) in mask.iter().zip(nums) {
            self.ranges[s as usize].push((*n, 1));
        }
        self.bind_op_numbers(session, seq, mask, nums);
        Ok(())
    }

    /// Records an answer a client session received.
    pub fn ack(&mut self, session: u64, seq: u64, mask: SpaceMask, nums: &[u64]) {
        self.acks += 1;
        self.acked.entry(session).or_default().push(seq, mask, nums);
    }

    /// Checks the safety invariants (Unique, Once, FIFO, Stable) first, then Contiguous,
    /// which only holds once recovery has finished: a caller that also checks liveness can
    /// tell a hole left by a stalled run from one a protocol bug made.
    pub fn finish(self) -> Result<Report, Violation> {
        let (report, holes) = self.finish_safety()?;
        match holes {
            Some(v) => Err(v),
            None => Ok(report),
        }
    }

    /// Like [`Checker::finish`], but returns a Contiguous violation (if any) beside the
    /// report instead of as the error.
    pub fn finish_safety(mut self) -> Result<(Report, Option<Violation>), Violation> {
        let mut report = Report {
            ops: self.ops,
            acked: self.acks,
            fenced: self.fenced,
            ..Report::default()
        };
        let mut hole = None;
        for (s, ranges) in self.ranges.iter_mut().enumerate() {
            ranges.sort_unstable();
            let top = ranges.last().map(|r| r.0 + r.1).unwrap_or(0);
            let mut next = 0u64;
            for &(base, count) in ranges.iter() {
                if base < next {
                    return Err(violation(
                        "Unique",
                        format!("space {s}: number {base} bound twice"),
                    ));
                }
                if base > next && hole.is_none() {
                    hole = Some(violation(
                        "Contiguous",
                        format!("space {s}: hole {next}..{base} (bound up to {top})"),
                    ));
                }
                next = base + count;
            }
            report.numbers.push(next);
            report.noops.push(next - self.taken[s]);
        }
        let mut clients: Vec<u64> = self.bound.keys().copied().collect();
        clients.sort_unstable();
        for c in &clients {
            let Some(ops) = self.bound.get_mut(c) else {
                continue;
            };
            ops.sort();
            check_once_fifo(*c, ops)?;
        }
        let mut acked: Vec<u64> = self.acked.keys().copied().collect();
        acked.sort_unstable();
        let empty = OpsOf::default();
        for c in acked {
            let Some(acks) = self.acked.get_mut(&c) else {
                continue;
            };
            acks.sort();
            let bound = self.bound.get(&c).unwrap_or(&empty);
            check_stable(c, acks, bound)?;
        }
        Ok((report, hole))
    }
}

/// Fenced: in the order one group applied them, the epochs of its records never go back (a
/// promise of a new epoch is itself a record, with no ranges), so no batch of an old
/// sequencer was bound after the group switched.
pub fn check_fenced(group: u32, log: &[BoundBatch]) -> Result<(), Violation> {
    let mut epoch = 0;
    for b in log {
        if b.epoch < epoch {
            return Err(violation(
                "Fenced",
                format!(
                    "group {group} bound batch {} of epoch {} after epoch {epoch}",
                    b.batch_id, b.epoch
                ),
            ));
        }
        epoch = b.epoch;
    }
    Ok(())
}

fn check_once_fifo(session: u64, ops: &OpsOf) -> Result<(), Violation> {
    let mut last: [Option<u64>; 64] = [None; 64];
    let mut prev_seq = None;
    for i in 0..ops.entries.len() {
        let (seq, mask, _) = ops.entries[i];
        if prev_seq == Some(seq) {
            return Err(op_violation(
                "Once",
                session,
                seq,
                format!("session {session} op {seq} bound twice"),
            ));
        }
        prev_seq = Some(seq);
        for (s, n) in SpaceMask(mask).iter().zip(ops.nums(i)) {
            if let Some(p) = last[s as usize] {
                if *n <= p {
                    return Err(op_violation(
                        "FIFO",
                        session,
                        seq,
                        format!(
                            "session {session} space {s}: op {seq} got {n}, an earlier op got {p}"
                        ),
                    ));
                }
            }
            last[s as usize] = Some(*n);
        }
    }
    Ok(())
}

fn check_stable(session: u64, acks: &OpsOf, bound: &OpsOf) -> Result<(), Violation> {
    for i in 0..acks.entries.len() {
        let (seq, mask, _) = acks.entries[i];
        let Ok(j) = bound.entries.binary_search_by_key(&seq, |e| e.0) else {
            return Err(op_violation(
                "Stable",
                session,
                seq,
                format!("session {session} op {seq} was acknowledged but never bound"),
            ));
        };
        if bound.entries[j].1 != mask || bound.nums(j) != acks.nums(i) {
            return Err(op_violation(
                "Stable",
                session,
                seq,
                format!(
                    "session {session} op {seq} acknowledged {:?} but bound {:?}",
                    acks.nums(i),
                    bound.nums(j)
                ),
            ));
        }
    }
    Ok(())
}

/// One replica's records as its log: by Raft index, each index once. A replica that
/// restarted applied part of its log again (the same records at the same indexes: they
/// must be equal), or restarted from a snapshot (its records resume at a later index).
pub fn replica_log(
    group: u32,
    replica: usize,
    records: Vec<BoundBatch>,
) -> Result<BTreeMap<u64, Vec<BoundBatch>>, Violation> {
    let mut log: BTreeMap<u64, Vec<BoundBatch>> = BTreeMap::new();
    let mut run: Vec<BoundBatch> = Vec::new();
    let mut flush = |run: &mut Vec<BoundBatch>| -> Result<(), Violation> {
        let Some(index) = run.first().map(|b| b.index) else {
            return Ok(());
        };
        let run = std::mem::take(run);
        match log.get(&index) {
            Some(old) if *old != run => Err(violation(
                "Stable",
                format!(
                    "group {group}: replica {replica} applied index {index} twice, differently"
                ),
            )),
            Some(_) => Ok(()),
            None => {
                log.insert(index, run);
                Ok(())
            }
        }
    };
    for b in records {
        // A new index, or the same record again (the replica restarted and is applying
        // this index a second time), ends the run.
        if run.first().is_some_and(|f| f.index != b.index) || run.contains(&b) {
            flush(&mut run)?;
        }
        run.push(b);
    }
    flush(&mut run)?;
    Ok(log)
}

/// Stable across replicas: every index that several replicas of a group applied holds the
/// same records on each. Returns the group's log, the union of theirs in index order.
pub fn agree(group: u32, logs: Vec<Vec<BoundBatch>>) -> Result<Vec<BoundBatch>, Violation> {
    let mut union: BTreeMap<u64, (usize, Vec<BoundBatch>)> = BTreeMap::new();
    for (r, records) in logs.into_iter().enumerate() {
        for (index, run) in replica_log(group, r, records)? {
            match union.get(&index) {
                Some((first, old)) if *old != run => {
                    return Err(violation(
                        "Stable",
                        format!(
                            "group {group}: replica {r} and replica {first} applied different batches at index {index}"
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    union.insert(index, (r, run));
                }
            }
        }
    }
    Ok(union.into_values().flat_map(|(_, run)| run).collect())
}

#[cfg(test)]
mod tests;
