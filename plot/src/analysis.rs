//! Recovery analysis over a [`Record`]: per-space stalls ([`gaps`]), and for every kill the
//! progress rate before it, the time to the first newly bound number and the time until the
//! rate is back to 90% ([`recovery`]), plus the one-line summaries ([`summary_lines`]).
//!
//! Everything is measured on the samples as recorded: times are sample times, so results
//! have the resolution of the sampling period (about 10 ms), and missing rows just make one
//! sample interval longer.

use crate::record::Record;

/// Shortest stall reported by the plot and used to detect a kill's outage, in ms.
pub const MIN_GAP_MS: u64 = 20;
/// Length of the window before a kill over which `pre_rate` is measured, in ms.
pub const PRE_WINDOW_MS: u64 = 1000;
/// Length of the window over which the recovered rate is measured, in ms.
pub const RATE_WINDOW_MS: u64 = 100;
/// A stall of the total prefix that begins more than this long after a kill is not
/// attributed to it, in ms. A kill stops the prefix within about one commit latency (the
/// first hole is a number handed out just before the kill), far less than this.
pub const STALL_ONSET_MS: u64 = 500;

/// A maximal interval during which one space's prefix did not advance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub space: usize,
    /// Time of the first sample that showed the stalled value (the last advance seen).
    pub start_ms: u64,
    /// Time of the first sample at which the prefix had advanced again, or the last sample's
    /// time when the stall lasts until the end of the record.
    pub end_ms: u64,
}

impl Gap {
    /// `end_ms - start_ms`.
    pub fn duration_ms(&self) -> u64 {
        self.end_ms.saturating_sub(self.start_ms)
    }
}

/// How the sequencing recovered from one kill. See [`recovery`] for the definitions.
#[derive(Debug, Clone, PartialEq)]
pub struct KillRecovery {
    /// What was killed (`kills.csv`'s `what`).
    pub what: String,
    /// When, in ms since the load started.
    pub at_ms: u64,
    /// Aggregate contiguous progress (sum over spaces) before the kill, in numbers/s.
    pub pre_rate: f64,
    /// ms from the kill to the first newly bound number after its outage; `Some(0)` when
    /// progress did not stop; `None` when it stopped and never resumed within the record
    /// (or the record ends before the kill).
    pub first_new_ms: Option<u64>,
    /// ms from the kill until the progress rate is back to 90% of `pre_rate`; `None` if it
    /// never is before the next kill or the end of the record.
    pub back_to_90_ms: Option<u64>,
}

/// A run of samples with equal value: `start`/`end` as in [`Gap`]; `resumed` is false
/// when the run lasts until the last sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stall {
    pub start: u64,
    pub end: u64,
    pub resumed: bool,
    /// The value the series stalled at.
    pub value: u64,
}

/// Stalls of the series `values` (sampled at `times`) lasting at least `min_ms`. A stall
/// needs at least two samples with the same value (one flat sample interval).
pub(crate) fn stalls(times: &[u64], values: &[u64], min_ms: u64) -> Vec<Stall> {
    let n = times.len().min(values.len());
    let mut out = Vec::new();
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && values[j + 1] == values[i] {
            j += 1;
        }
        if j > i {
            let (end, resumed) = if j + 1 < n {
                (times[j + 1], true)
            } else {
                (times[j], false)
            };
            if end.saturating_sub(times[i]) >= min_ms {
                out.push(Stall {
                    start: times[i],
                    end,
                    resumed,
                    value: values[i],
                });
            }
        }
        i = j + 1;
    }
    out
}

fn times(record: &Record) -> Vec<u64> {
    record.samples.iter().map(|(t, _)| *t).collect()
}

/// The prefix of `space` at every sample.
pub(crate) fn space_series(record: &Record, space: usize) -> Vec<u64> {
    let col = |v: &Vec<u64>| v.get(space).copied().unwrap_or(0);
    record.samples.iter().map(|(_, v)| col(v)).collect()
}

/// P(t): the sum over spaces of the prefix at every sample.
fn total_series(record: &Record) -> Vec<u64> {
    let sum = |v: &Vec<u64>| v.iter().fold(0u64, |a, &x| a.saturating_add(x));
    record.samples.iter().map(|(_, v)| sum(v)).collect()
}

/// Per space, every maximal interval of at least `min_ms` in which its prefix did not
/// advance: it starts at the first sample showing the stalled value and ends at the first
/// sample at which the prefix had advanced (or at the last sample if it never did). Only
/// runs of two or more equal samples count, so with 10 ms sampling the shortest
/// detectable stall is about 20 ms. Sorted by space, then time.
pub fn gaps(record: &Record, min_ms: u64) -> Vec<Gap> {
    gaps_with_value(record, min_ms)
        .into_iter()
        .map(|(g, _)| g)
        .collect()
}

/// [`gaps`], each with the prefix value its space was stuck at.
pub(crate) fn gaps_with_value(record: &Record, min_ms: u64) -> Vec<(Gap, u64)> {
    let ts = times(record);
    (0..record.spaces)
        .flat_map(|space| {
            stalls(&ts, &space_series(record, space), min_ms)
                .into_iter()
                .map(move |s| {
                    let gap = Gap {
                        space,
                        start_ms: s.start,
                        end_ms: s.end,
                    };
                    (gap, s.value)
                })
        })
        .collect()
}

/// Numbers/s of `p` between samples `i0` and `i1`; 0 over an empty interval.
fn rate(ts: &[u64], p: &[u64], i0: usize, i1: usize) -> f64 {
    if ts[i1] <= ts[i0] {
        return 0.0;
    }
    p[i1].saturating_sub(p[i0]) as f64 * 1000.0 / (ts[i1] - ts[i0]) as f64
}

/// For every kill (in `record.kills` order), how progress recovered. With P(t) the sum over
/// spaces of the contiguous prefix at sample time t, and T the kill time:
///
/// - `pre_rate` = (P(b) − P(a)) / (b − a), in numbers/s, where b is the last sample at or
///   before T and a the last sample at or before T − 1 s (the first sample if there is
///   none, i.e. the window starts at the beginning of the record). 0 if a = b (no sample
///   at or before T, or none in the window).
/// - **outage**: a *stall* of P is a run of two or more samples with the same P, from the
///   first sample showing that value to the first sample where P is larger (see [`gaps`]);
///   only stalls of at least [`MIN_GAP_MS`] count. The kill's outage is the longest stall
///   that is in progress at T (starts at or before T, ends after it) or starts within
///   [`STALL_ONSET_MS`] after T and before the next kill. A stall that never ends counts as
///   longest. Taking the longest, not the first, keeps a short hiccup just before the real
///   outage from being mistaken for it, and the onset bound keeps an unrelated later stall
///   from being blamed on a kill that caused none.
/// - `first_new_ms` = (end of the outage) − T: the kill to the first sample at which the
///   contiguous prefix has grown past the value it was stuck at, i.e. the first newly bound
///   number that was known contiguous. `Some(0)` if there is no outage (progress never
///   stopped for [`MIN_GAP_MS`]); `None` if the outage lasts until the end of the record
///   or no sample is at or after T.
/// - `back_to_90_ms` = t − T for the first sample time t ≥ T + `first_new_ms` such that
///   the rate of P from t to u, the first sample at or after t + [`RATE_WINDOW_MS`], is at
///   least 0.9 × `pre_rate`, where u must not be after the next kill (progress after
///   another kill never counts for this one). The first candidate window starts at the
///   sample where progress resumed, so the jump that fills the hole is not counted, but a
///   catch-up spread over later samples is. `None` if there is no such t before the next
///   kill or the end of the record.
pub fn recovery(record: &Record) -> Vec<KillRecovery> {
    let ts = times(record);
    let p = total_series(record);
    let outages = stalls(&ts, &p, MIN_GAP_MS);
    record
        .kills
        .iter()
        .map(|(at, what)| {
            let next_kill = record.kills.iter().map(|k| k.0).filter(|&t| t > *at).min();
            let pre_rate = pre_rate(&ts, &p, *at);
            let first_new_ms = first_new(&ts, &outages, *at, next_kill);
            let back_to_90_ms = first_new_ms.and_then(|f| {
                back_to_90(
                    &ts,
                    &p,
                    *at,
                    at.saturating_add(f),
                    pre_rate * 0.9,
                    next_kill,
                )
            });
            KillRecovery {
                what: what.clone(),
                at_ms: *at,
                pre_rate,
                first_new_ms,
                back_to_90_ms,
            }
        })
        .collect()
}

fn pre_rate(ts: &[u64], p: &[u64], at: u64) -> f64 {
    let upto = ts.partition_point(|&t| t <= at);
    if upto == 0 {
        return 0.0;
    }
    let from = ts
        .partition_point(|&t| t <= at.saturating_sub(PRE_WINDOW_MS))
        .saturating_sub(1);
    rate(ts, p, from, upto - 1)
}

fn first_new(ts: &[u64], outages: &[Stall], at: u64, next_kill: Option<u64>) -> Option<u64> {
    if ts.last().is_none_or(|&last| last < at) {
        return None;
    }
    let in_progress = |s: &&Stall| s.start <= at && (s.end > at || !s.resumed);
    let begins_after = |s: &&Stall| {
        s.start > at && s.start - at <= STALL_ONSET_MS && next_kill.is_none_or(|k| s.start < k)
    };
    let key = |s: &&Stall| {
        (
            !s.resumed,
            s.end.saturating_sub(s.start),
            std::cmp::Reverse(s.start),
        )
    };
    let outage = outages
        .iter()
        .filter(|s| in_progress(s) || begins_after(s))
        .max_by_key(key);
    match outage {
        None => Some(0),
        Some(s) if !s.resumed => None,
        Some(s) => Some(s.end.saturating_sub(at)),
    }
}

fn back_to_90(
    ts: &[u64],
    p: &[u64],
    at: u64,
    from: u64,
    target: f64,
    next_kill: Option<u64>,
) -> Option<u64> {
    let first = ts.partition_point(|&t| t < from);
    for i in first..ts.len() {
        let j = ts.partition_point(|&t| t < ts[i].saturating_add(RATE_WINDOW_MS));
        if j >= ts.len() || next_kill.is_some_and(|k| ts[j] > k) {
            return None;
        }
        if rate(ts, p, i, j) >= target {
            return Some(ts[i].saturating_sub(at));
        }
    }
    None
}

/// One line per kill:
/// `recovery: <what> killed at <T>ms: first new number after <first_new_ms> ms, back to 90%
/// of <pre_rate, rounded> numbers/s after <back_to_90_ms> ms`, with `never` in place of
/// `after <N> ms` for a `None`.
pub fn summary_lines(recs: &[KillRecovery]) -> Vec<String> {
    let ms = |v: Option<u64>| v.map_or_else(|| "never".to_string(), |v| format!("after {v} ms"));
    recs.iter()
        .map(|r| {
            format!(
                "recovery: {} killed at {}ms: first new number {}, \
                 back to 90% of {} numbers/s {}",
                r.what,
                r.at_ms,
                ms(r.first_new_ms),
                r.pre_rate.round() as u64,
                ms(r.back_to_90_ms),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests;
