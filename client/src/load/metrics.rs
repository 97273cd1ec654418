//! The load process's metrics (`mason client --metrics-listen`): every answered op's
//! latency, answered, measured and failed ops, and re-sends, in the process registry.

use mason_common::metrics::{self, Histogram, IntCounter, IntGauge};
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
