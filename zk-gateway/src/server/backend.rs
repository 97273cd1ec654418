//! A connection's requests at the backend: started in turn on its session's `ZkClient`
//! (see the server module's notes on order), and what comes back (a session opened, an
//! answer, a setWatches' reads) handed to the connection.

use super::{failure_code, metrics, watching, ConnTask, Done, GwAction, Job};
use bytes::Bytes;
use mason_zk::jute;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio::sync::mpsc;

impl ConnTask {
    pub(super) fn on_done(&mut self, done: Done, out: &mut Vec<GwAction>) {
        match done {
            Done::Opened(Ok((id, s))) => {
                let passwd = Bytes::copy_from_slice(&self.shared.cfg.key.session_password(id));
                let (timeout, zxid) = (s.timeout_ms, s.zk.last_zxid());
                let (tx, rx) = mpsc::unbounded_channel();
                if let Ok(mut n) = s.notes.lock() {
                    *n = Some((self.id, tx));
                }
                self.notes = Some(rx);
                // Watches set on an earlier connection are the client's to set again.
                if let Ok(mut hub) = self.shared.hub.lock() {
                    hub.drop_session(id);
                }
                self.session = Some(s);
                self.counters.session.store(id, Ordering::Relaxed);
                self.conn.opened(id, timeout, passwd, zxid, out);
            }
            Done::Opened(Err(why)) => self.conn.refused(&why, out),
            Done::Answer {
                ticket,
                xid,
                sent_at,
                result,
                watch,
            } => {
                self.backend_done();
                self.shared
                    .counters
                    .outstanding
                    .fetch_sub(1, Ordering::Relaxed);
                self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                let c = &self.shared.counters;
                let us = sent_at.elapsed().as_micros() as u64;
                metrics::answered(sent_at.elapsed());
                c.latency_sum_us.fetch_add(us, Ordering::Relaxed);
                c.latency_n.fetch_add(1, Ordering::Relaxed);
                c.latency_min_us.fetch_min(us, Ordering::Relaxed);
                c.latency_max_us.fetch_max(us, Ordering::Relaxed);
                match result {
                    Ok(answer) => {
                        if let Ok((h, _)) = jute::split_reply(&answer.reply) {
                            c.last_zxid.fetch_max(h.zxid, Ordering::Relaxed);
                        }
                        self.answered(ticket, answer, watch, out);
                    }
                    Err(e) => {
                        tracing::debug!(xid, error = %e, "a request failed at the backend");
                        self.conn.fail(ticket, xid, failure_code(&e), out);
                    }
                }
            }
            Done::Rewatched {
                ticket,
                xid,
                watches,
                reads,
            } => {
                self.backend_done();
                self.rewatched(ticket, xid, &watches, reads, out);
            }
        }
    }

    /// One of the session's jobs at the backend is done.
    fn backend_done(&mut self) {
        self.at_backend = self.at_backend.saturating_sub(1);
        if self.at_backend == 0 {
            self.local_at_backend = false;
        }
    }

    /// Starts the queued requests whose turn it is (see the module's notes on order).
    pub(super) fn dispatch(&mut self) {
        let Some(s) = self.session.clone() else {
            return;
        };
        // A reconnect elsewhere took the session: this connection is stale.
        if s.conn.lock().is_ok_and(|g| g.0 != Some(self.id)) {
            self.closing
                .get_or_insert("the session moved to another connection".into());
            return;
        }
        while let Some(q) = self.queue.front() {
            let local = match &q.job {
                Job::Request { request, .. } => s.zk.reads_locally(request),
                // Its reads are exists without a watch: local when local reads are on.
                Job::SetWatches(_) => self.shared.cfg.local_reads,
            };
            if self.at_backend > 0
                && (local != self.local_at_backend || matches!(q.job, Job::SetWatches(_)))
            {
                return;
            }
            let Some(q) = self.queue.pop_front() else {
                return;
            };
            self.at_backend += 1;
            self.local_at_backend = local;
            if let Ok(mut t) = s.backend_at.lock() {
                *t = Instant::now();
            }
            let (ticket, xid, sent_at) = (q.ticket, q.xid, Instant::now());
            match q.job {
                Job::Request { request, payload } => {
                    let watch = watching::watch_of(&request);
                    let answer = s.zk.start_raw(&request, payload);
                    self.pending.push(Box::pin(async move {
                        Done::Answer {
                            ticket,
                            xid,
                            sent_at,
                            result: answer.await,
                            watch,
                        }
                    }));
                }
                Job::SetWatches(watches) => {
                    let reads = watching::start_reads(&s.zk, &watches);
                    self.pending.push(Box::pin(async move {
                        Done::Rewatched {
                            ticket,
                            xid,
                            watches,
                            reads: futures::future::join_all(reads).await,
                        }
                    }));
                }
            }
        }
    }
}
