//! Closed-loop load for the peer systems (ZooKeeper, etcd), run in this process: S client
//! sessions, each with K operations in flight, for warmup + duration. Collects the latency
//! histogram of the measured window, the numbers every operation was given (to check them
//! for uniqueness), failures and retries.

use hdrhistogram::Histogram;
use std::future::Future;
use std::time::{Duration, Instant};

/// What one successful operation returned.
pub struct Outcome {
    /// The number the system gave this operation (a znode sequence, a revision, a counter).
    pub number: i64,
    /// Attempts that failed before this one succeeded (compare-and-swap conflicts).
    pub retries: u64,
}

/// Everything the load saw.
pub struct Tally {
    /// Latencies (ns) of the operations that started after warmup and ended in time.
    pub hist: Histogram<u64>,
    /// Operations counted in the measured window.
    pub ops: u64,
    /// The measured window's length.
    pub window: Duration,
    /// Numbers of every successful operation, warmup included.
    pub numbers: Vec<i64>,
    /// Retries over the whole run.
    pub retries: u64,
    /// Operations that failed (errors, not conflicts).
    pub errors: u64,
    pub first_error: Option<String>,
    /// The cores the servers kept busy over the measured window (`None`: not read).
    pub server_cores: Option<f64>,
}

fn new_hist() -> Histogram<u64> {
    // 1 ns .. 60 s at 3 significant digits; these bounds are valid constants.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

impl Tally {
    fn new(window: Duration) -> Self {
        Tally {
            hist: new_hist(),
            ops: 0,
            window,
            numbers: Vec::new(),
            retries: 0,
            errors: 0,
            first_error: None,
            server_cores: None,
        }
    }

    fn merge(&mut self, o: Tally) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.hist.add(&o.hist);
        self.ops += o.ops;
        self.numbers.extend(o.numbers);
        self.retries += o.retries;
        self.errors += o.errors;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }

    /// `; N errors, first: ...` for a row's note, or nothing.
    pub fn errors_note(&self) -> String {
        if self.errors == 0 {
            return String::new();
        }
        let first = self.first_error.as_deref().unwrap_or("?");
        format!("; {} errors, first: {first}", self.errors)
    }

    pub fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.window.as_secs_f64()
    }

    /// The servers' CPU per measured op, in microseconds.
    pub fn server_cpu_us(&self) -> Option<f64> {
        let ops = self.ops_per_s();
        self.server_cores
            .filter(|_| ops > 0.0)
            .map(|c| c * 1e6 / ops)
    }

    /// Latency at quantile `q`, in microseconds.
    pub fn us(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }

    /// Checks the numbers: `(count, duplicates, holes between min and max)`.
    pub fn check_numbers(&mut self) -> (u64, u64, u64) {
        uniqueness(&mut self.numbers)
    }
}

/// `(count, duplicates, holes)` of `numbers` (sorted in place): duplicates are numbers
/// given twice; holes are the values in min..=max that nobody got.
pub fn uniqueness(numbers: &mut [i64]) -> (u64, u64, u64) {
    numbers.sort_unstable();
    let count = numbers.len() as u64;
    let dups = numbers.windows(2).filter(|w| w[0] == w[1]).count() as u64;
    let holes = match (numbers.first(), numbers.last()) {
        (Some(&lo), Some(&hi)) => (hi - lo + 1) as u64 - (count - dups),
        _ => 0,
    };
    (count, dups, holes)
}

/// Runs `op` from `k` tasks per session until warmup + duration has passed. `op` gets the
/// end of the run; it may give up on an operation past it by returning `Ok(None)` (not
/// counted). An error is counted and followed by a short pause (so a dead server is not
/// hammered). The CPU of the processes `servers` over the measured window is read too.
pub async fn drive<S, F, Fut>(
    sessions: &[S],
    k: u32,
    (warmup, duration): (Duration, Duration),
    servers: Vec<u32>,
    op: F,
) -> Tally
where
    S: Clone + Send + 'static,
    F: Fn(S, Instant) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<Option<Outcome>>> + Send + 'static,
{
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let probe = super::procs::CpuProbe::start(servers, start, warmup, duration);
    let mut tasks = tokio::task::JoinSet::new();
    for s in sessions {
        for _ in 0..k {
            let (s, op) = (s.clone(), op.clone());
            tasks.spawn(async move {
                let mut t = Tally::new(duration);
                loop {
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    match op(s.clone(), end).await {
                        Ok(None) => {}
                        Ok(Some(o)) => {
                            let t1 = Instant::now();
                            t.numbers.push(o.number);
                            t.retries += o.retries;
                            if t0 >= measure_from && t1 <= end {
                                let ns = (t1 - t0).as_nanos().clamp(1, 60_000_000_000) as u64;
                                t.hist.saturating_record(ns);
                                t.ops += 1;
                            }
                        }
                        Err(e) => {
                            t.errors += 1;
                            if t.first_error.is_none() {
                                t.first_error = Some(format!("{e:#}"));
                            }
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                t
            });
        }
    }
    let mut all = Tally::new(duration);
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(t) => all.merge(t),
            Err(e) => {
                all.errors += 1;
                all.first_error
                    .get_or_insert_with(|| format!("load task: {e}"));
            }
        }
    }
    // The probe's last reading was taken before the end of the window.
    all.server_cores = tokio::task::spawn_blocking(move || probe.finish())
        .await
        .ok()
        .flatten();
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniqueness_counts_duplicates_and_holes() {
        assert_eq!(uniqueness(&mut []), (0, 0, 0));
        assert_eq!(uniqueness(&mut [3, 1, 2]), (3, 0, 0));
        assert_eq!(uniqueness(&mut [5, 1, 2, 2]), (4, 1, 2));
    }
}
