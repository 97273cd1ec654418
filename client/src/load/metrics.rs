//! The load process's metrics (`mason client --metrics-listen`): every answered op's
//! latency, answered, measured and failed ops, and re-sends, in the process registry.

use mason_common::metrics::{
    self, Histogram, IntCounter, IntGauge, LocalHistogram, LocalIntCounter,
};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub(crate) struct LoadMetrics {
    /// `mason_client_ops_total` by result.
    answered: IntCounter,
    failed: IntCounter,
    /// Answered ops inside the measured window (the run's `ops`).
    measured: IntCounter,
    latency: Histogram,
    resends: IntCounter,
    pub(crate) unanswered: IntGauge,
}

/// The process's load metrics (made and registered on first use).
pub(crate) fn get() -> &'static LoadMetrics {
    static M: OnceLock<LoadMetrics> = OnceLock::new();
    M.get_or_init(|| {
        let ops = metrics::counter_vec(
            "mason_client_ops_total",
            "Ops finished by this load process, by result (answered or failed), warm-up and \
             cool-down included.",
            &["result"],
        );
        LoadMetrics {
            answered: ops.with_label_values(&["answered"]),
            failed: ops.with_label_values(&["failed"]),
            measured: metrics::counter(
                "mason_client_measured_ops_total",
                "Answered ops sent and answered inside the measured window (the run's ops).",
            ),
            latency: metrics::histogram(
                "mason_client_op_latency_seconds",
                "Latency of every answered op, from sending to its answer.",
                metrics::LATENCY_BUCKETS,
            ),
            resends: metrics::counter(
                "mason_client_resends_total",
                "Requests sent again after their retry timeout.",
            ),
            unanswered: metrics::gauge(
                "mason_client_unanswered_ops",
                "Ops still unanswered when the drain ended (set at the end of the run).",
            ),
        }
    })
}

impl LoadMetrics {
    pub(crate) fn answered(&self, t0: Instant, t1: Instant, measured: bool) {
        self.answered.inc();
        self.latency
            .observe(t1.saturating_duration_since(t0).as_secs_f64());
        if measured {
            self.measured.inc();
        }
    }

    /// A tally of answered ops for one closed loop, kept without atomics and added to
    /// these every `LOCAL_FLUSH` (see [`LocalLoadMetrics`]).
    pub(crate) fn local(&self, now: Instant) -> LocalLoadMetrics {
        LocalLoadMetrics {
            answered: self.answered.local(),
            measured: self.measured.local(),
            latency: self.latency.local(),
            flushed_at: now,
        }
    }

    pub(crate) fn failed(&self) {
        self.failed.inc();
    }

    /// Keeps the re-send counter at `total`, the sum of the clients' own counts.
    pub(crate) fn resends(&self, total: u64) {
        metrics::advance(&self.resends, total);
    }
}

/// Copies `total()` into the re-send counter every `metrics::SAMPLE_EVERY` until aborted.
pub(crate) fn sample_resends(
    total: impl Fn() -> u64 + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(metrics::SAMPLE_EVERY.max(Duration::from_millis(1)));
        loop {
            every.tick().await;
            get().resends(total());
        }
    })
}

/// How long a loop's answered ops may wait in its [`LocalLoadMetrics`] before they are
/// added to the process's metrics, at most (while the load runs).
pub(crate) const LOCAL_FLUSH: Duration = Duration::from_millis(50);

/// One closed loop's answered ops, counted without an atomic operation each: added to the
/// process's metrics every `LOCAL_FLUSH`, at once for every answer after the window's end
/// (so that what a scrape reads at the end is whole), and when dropped.
pub(crate) struct LocalLoadMetrics {
    answered: LocalIntCounter,
    measured: LocalIntCounter,
    latency: LocalHistogram,
    flushed_at: Instant,
}

impl LocalLoadMetrics {
    /// Op sent at `t0`, answered at `t1`; `ended`: the window is over.
    pub(crate) fn answered(&mut self, t0: Instant, t1: Instant, measured: bool, ended: bool) {
        self.answered.inc();
        self.latency
            .observe(t1.saturating_duration_since(t0).as_secs_f64());
        if measured {
            self.measured.inc();
        }
        if ended || t1.saturating_duration_since(self.flushed_at) >= LOCAL_FLUSH {
            self.flush();
            self.flushed_at = t1;
        }
    }

    fn flush(&mut self) {
        self.answered.flush();
        self.measured.flush();
        self.latency.flush();
    }
}

impl Drop for LocalLoadMetrics {
    fn drop(&mut self) {
        self.flush();
    }
}
