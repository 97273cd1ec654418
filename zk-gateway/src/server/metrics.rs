//! A ZooKeeper front end's metrics (`mason zk-gateway --metrics-listen`): requests
//! received and replies sent, requests outstanding at the backend, the backend's latency,
//! open client connections and live sessions. Latency is observed as each answer comes
//! back; the rest is copied from the gateway's own counters every
//! `metrics::SAMPLE_EVERY` while the gateway lives.

use super::Shared;
use mason_common::metrics::{self, Histogram, IntCounter, IntGauge};
use std::sync::atomic::Ordering;
use std::sync::{OnceLock, Weak};
use std::time::Duration;

struct GwMetrics {
    received: IntCounter,
    sent: IntCounter,
    outstanding: IntGauge,
    connections: IntGauge,
    sessions: IntGauge,
    latency: Histogram,
}

fn get() -> &'static GwMetrics {
    static M: OnceLock<GwMetrics> = OnceLock::new();
    M.get_or_init(|| GwMetrics {
        received: metrics::counter(
            "mason_zk_gateway_requests_total",
            "ZooKeeper requests received from clients.",
        ),
        sent: metrics::counter("mason_zk_gateway_replies_total", "Replies sent to clients."),
        outstanding: metrics::gauge(
            "mason_zk_gateway_outstanding_requests",
            "Requests sent to the backend and not yet answered.",
        ),
        connections: metrics::gauge(
            "mason_zk_gateway_connections_open",
            "ZooKeeper client connections open now.",
        ),
        sessions: metrics::gauge(
            "mason_zk_gateway_sessions",
            "ZooKeeper sessions this front end holds.",
        ),
        latency: metrics::histogram(
            "mason_zk_gateway_backend_latency_seconds",
            "Time from sending a request to the backend to its answer.",
            metrics::LATENCY_BUCKETS,
        ),
    })
}

/// Observes one backend answer's latency.
pub(super) fn answered(took: Duration) {
    get().latency.observe(took.as_secs_f64());
}

/// Copies the gateway's counters into its metrics until the gateway is gone.
pub(super) fn spawn_sampler(shared: Weak<Shared>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(metrics::SAMPLE_EVERY);
        loop {
            every.tick().await;
            let Some(s) = shared.upgrade() else {
                return;
            };
            let m = get();
            let c = &s.counters;
            metrics::advance(&m.received, c.received.load(Ordering::Relaxed));
            metrics::advance(&m.sent, c.sent.load(Ordering::Relaxed));
            let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            m.outstanding.set(n(c.outstanding.load(Ordering::Relaxed)));
            let conns = s.conns.lock().map_or(0, |c| c.len());
            m.connections.set(n(conns as u64));
            let sessions = s.sessions.lock().map_or(0, |c| c.len());
            m.sessions.set(n(sessions as u64));
        }
    });
}
