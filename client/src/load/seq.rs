//! The bare-sequencing load's clients (and a shared log's sequencing clients): those of
//! one group share one driver and its connections ([`shared_clients`]), and each runs its
//! closed loop inside that driver ([`SeqLoop`]), drained at the end by [`drain_loops`].

use super::{
    client_id_of, group_of, keep_ack, metrics, target, AckSink, LoadConfig, OpSpaces, Shared,
    Window,
};
use crate::driver::{Client, ClientConfig, ClientError, MultiSeq, OpLoop};
use bytes::Bytes;
use mason_common::transport::Transport;
use mason_common::types::SpaceMask;
use rand::rngs::StdRng;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// This process's clients, by group (for a shared log, those that sequence its appends).
/// Those of one group share one driver and its connections: the ops they send in one turn
/// go out in one write and reach the group together (as one batch), and the group's
/// answers to them come back in one.
pub(super) fn shared_clients(
    transport: &Arc<dyn Transport>,
    cfg: &LoadConfig,
) -> HashMap<u32, VecDeque<Client>> {
    let mut ids: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for t in 0..cfg.threads {
        ids.entry(group_of(cfg, t))
            .or_default()
            .push(client_id_of(cfg, t));
    }
    ids.into_iter()
        .map(|(group, ids)| {
            let c = ClientConfig {
                client_id: 0,
                target: target(cfg, group),
                retry_timeout: cfg.retry_timeout,
                window: cfg.concurrency,
                key: cfg.key.clone(),
            };
            (
                group,
                Client::start_shared(transport.clone(), c, &ids).into(),
            )
        })
        .collect()
}

/// One client thread's closed loop of sequencing ops, run inside its driver: `concurrency`
/// ops in flight, each answer measured and kept, and the next op sent in the same turn.
pub(super) struct SeqLoop {
    pub(super) op_spaces: OpSpaces,
    pub(super) spaces: u32,
    pub(super) rng: StdRng,
    pub(super) payload: Bytes,
    pub(super) win: Window,
    pub(super) shared: Arc<Mutex<Shared>>,
    pub(super) sink: Option<AckSink>,
    /// Its answered ops, added to the process's metrics now and then.
    pub(super) metrics: metrics::LocalLoadMetrics,
    /// Answers not yet kept (see `KEEP_TOGETHER`).
    pub(super) answers: Vec<(Instant, Instant, MultiSeq)>,
}

impl OpLoop for SeqLoop {
    fn next_op(&mut self, now: Instant) -> Option<(SpaceMask, Bytes)> {
        (now < self.win.stop).then(|| {
            let mask = self.op_spaces.pick(self.spaces, &mut self.rng);
            (mask, self.payload.clone())
        })
    }

    fn answered(&mut self, sent: Instant, now: Instant, result: Result<MultiSeq, ClientError>) {
        match result {
            Ok(m) => {
                self.answers.push((sent, now, m));
                let ended = now >= self.win.end;
                if ended || self.answers.len() >= KEEP_TOGETHER {
                    self.keep(ended);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "op failed");
                metrics::get().failed();
            }
        }
    }
}

/// Answers a loop holds before it takes its worker's lock to keep them (at once after the
/// window's end, so that what the load reads at the end is whole).
const KEEP_TOGETHER: usize = 64;

impl SeqLoop {
    /// Keeps the answers held: their numbers, and those inside the window measured.
    fn keep(&mut self, ended: bool) {
        let Ok(mut s) = self.shared.lock() else {
            // A worker that panicked holding it: nothing is kept any more, nor held.
            self.answers.clear();
            return;
        };
        let s = &mut *s;
        for (sent, now, m) in self.answers.drain(..) {
            keep_ack(s, &self.sink, &m);
            let measured = self.win.count(sent, now, &mut s.ops, &mut s.hist);
            self.metrics.answered(sent, now, measured, ended);
        }
    }
}

impl Drop for SeqLoop {
    fn drop(&mut self) {
        self.keep(true);
    }
}

/// Waits for the loops until `drain` after the window's stop; a loop still waiting then is
/// stopped, and its unanswered ops counted.
pub(super) async fn drain_loops(
    win: &Window,
    loops: Vec<(Client, tokio::sync::oneshot::Receiver<()>)>,
    drain: Duration,
    slots: u32,
) -> u64 {
    let drain_end = tokio::time::Instant::from_std(win.stop + drain);
    let mut unanswered = 0;
    for (client, done) in loops {
        if let Ok(Ok(())) = tokio::time::timeout_at(drain_end, done).await {
            continue;
        }
        // A driver stuck dialling answers within its connect timeout.
        unanswered += match tokio::time::timeout(Duration::from_secs(3), client.stop_loop()).await {
            Ok(Some(n)) => n,
            _ => u64::from(slots),
        };
    }
    unanswered
}
