//! What the four-letter words report about a gateway: its counters, connections and
//! watches, in the shape `fourlw.rs` answers them.

use super::{ConnCounters, ConnTask};
use crate::fourlw::{ConnInfo, Snapshot};
use std::sync::atomic::Ordering;

impl ConnCounters {
    fn info(&self, peer: &str) -> ConnInfo {
        let session = self.session.load(Ordering::Relaxed);
        ConnInfo {
            peer: peer.to_string(),
            session: (session != 0).then_some(session),
            received: self.received.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed) as usize,
        }
    }
}

impl ConnTask {
    pub(super) fn snapshot(&self) -> Snapshot {
        let c = &self.shared.counters;
        let n = c.latency_n.load(Ordering::Relaxed);
        let cfg = &self.shared.cfg;
        Snapshot {
            client_addr: self.shared.addr.clone(),
            connections: self
                .shared
                .conns
                .lock()
                .map(|m| m.values().map(|(peer, c)| c.info(peer)).collect())
                .unwrap_or_default(),
            sessions: self.shared.sessions.lock().map(|m| m.len()).unwrap_or(0),
            received: c.received.load(Ordering::Relaxed),
            sent: c.sent.load(Ordering::Relaxed),
            outstanding: c.outstanding.load(Ordering::Relaxed),
            latency_min_ms: if n == 0 {
                0
            } else {
                c.latency_min_us.load(Ordering::Relaxed) / 1000
            },
            latency_avg_ms: if n == 0 {
                0.0
            } else {
                c.latency_sum_us.load(Ordering::Relaxed) as f64 / n as f64 / 1000.0
            },
            latency_max_ms: c.latency_max_us.load(Ordering::Relaxed) / 1000,
            last_zxid: c.last_zxid.load(Ordering::Relaxed),
            min_timeout_ms: cfg.conn.min_timeout_ms,
            max_timeout_ms: cfg.conn.max_timeout_ms,
            max_buffer: cfg.conn.max_buffer,
            watches: self
                .shared
                .hub
                .lock()
                .map(|h| (h.count(), h.paths(), h.sessions()))
                .unwrap_or_default(),
            backend: if cfg.shards == 0 {
                "rsmkeeper".into()
            } else {
                format!("zkmason ({} shards)", cfg.shards)
            },
        }
    }
}
