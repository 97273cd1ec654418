//! A group's write-ahead log on a thread of its own (fsync on), with group commit: the replica's
//! `Persist` and `Snapshot` actions queue here, in order, while the group's task goes on
//! (a leader's entries are already on their way to its followers); every record that
//! arrives while a write and fdatasync are under way shares the next one. When a batch is
//! durable, the group hears `Persisted(number)` for the last Raft ready in it, and only
//! then does it send what had to wait (acknowledgements, votes) and count its own write
//! towards a commit.
//!
//! A failed write or sync ends the process: acknowledging what is not durable would break
//! the protocol, and the replica restarts from what its log holds.

use super::metrics::GroupMetrics;
use super::Event;
use crate::wal::Wal;
use raft::prelude::{Entry, HardState, Snapshot};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::mpsc;

/// What the writer does, in the order given.
pub(super) enum Job {
    Append {
        number: u64,
        hard_state: Option<HardState>,
        entries: Vec<Entry>,
    },
    Snapshot {
        snapshot: Snapshot,
        hard_state: HardState,
        entries: Vec<Entry>,
    },
}

/// Records at most one commit takes (the rest wait for the next).
const MAX_BATCH: u64 = 1024;

/// The writer: a thread of its own when fsync is on; with fsync off a write is a copy to
/// the page cache, cheaper than waking a thread, and is done inline.
pub(super) enum WalWriter {
    Inline {
        group: u32,
        wal: Wal,
        metrics: GroupMetrics,
    },
    Thread {
        jobs: Option<std_mpsc::Sender<Job>>,
        thread: Option<JoinHandle<()>>,
    },
}

impl WalWriter {
    /// Starts the writer of `group`'s `wal`; it reports to the group's `inbox`.
    pub(super) fn spawn(
        group: u32,
        wal: Wal,
        fsync: bool,
        metrics: GroupMetrics,
        inbox: mpsc::Sender<Event>,
    ) -> std::io::Result<WalWriter> {
        if !fsync {
            return Ok(WalWriter::Inline {
                group,
                wal,
                metrics,
            });
        }
        let (tx, rx) = std_mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("wal-g{group}"))
            .spawn(move || {
                let _stop = FailStop(group);
                run(group, wal, metrics, rx, inbox)
            })?;
        Ok(WalWriter::Thread {
            jobs: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues `job`; returns the ready number it made durable when it was written inline
    /// (the thread reports to the group's inbox instead).
    pub(super) fn send(&mut self, job: Job) -> Option<u64> {
        match self {
            WalWriter::Inline {
                group,
                wal,
                metrics,
            } => {
                let t = Instant::now();
                let (number, records) = stage(*group, wal, metrics, job);
                match wal.commit() {
                    Ok(bytes) if records > 0 => metrics.wal_commit(t.elapsed(), bytes, records),
                    Ok(_) => {}
                    Err(e) => fail(*group, "wal write", &e),
                }
                number
            }
            WalWriter::Thread { jobs, .. } => {
                if let Some(tx) = jobs {
                    // The writer only stops when this end closes, or by ending the process.
                    let _ = tx.send(job);
                }
                None
            }
        }
    }

    /// Waits until everything queued is written (blocking: call off the async workers).
    pub(super) fn finish(&mut self) {
        if let WalWriter::Thread { jobs, thread } = self {
            *jobs = None;
            if let Some(t) = thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// Ends the process if the writer thread panics: its group would otherwise wait for
/// writes that never become durable (a group task that dies ends the process too).
struct FailStop(u32);

impl Drop for FailStop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!(group = self.0, "the wal writer panicked; exiting");
            std::process::exit(70);
        }
    }
}

fn fail(group: u32, what: &str, e: &dyn std::fmt::Display) -> ! {
    tracing::error!(group, error = %e, "{what} failed; exiting");
    std::process::exit(1);
}

/// Stages an append (or writes a snapshot, syncing what was staged before it); returns
/// the ready number an append carries and the records staged.
fn stage(group: u32, wal: &mut Wal, metrics: &GroupMetrics, job: Job) -> (Option<u64>, u64) {
    match job {
        Job::Append {
            number,
            hard_state,
            entries,
        } => {
            if hard_state.is_none() && entries.is_empty() {
                return (Some(number), 0);
            }
            if let Err(e) = wal.stage(hard_state.as_ref(), &entries) {
                fail(group, "encoding a wal record", &e);
            }
            (Some(number), 1)
        }
        Job::Snapshot {
            snapshot,
            hard_state,
            entries,
        } => {
            let ts = Instant::now();
            if let Err(e) = wal.install_snapshot(&snapshot, &hard_state, &entries) {
                fail(group, "writing a snapshot", &e);
            }
            tracing::info!(
                group,
                index = snapshot.get_metadata().index,
                bytes = snapshot.data.len(),
                entries = entries.len(),
                us = ts.elapsed().as_micros() as u64,
                "snapshot written"
            );
            metrics.snapshot(ts.elapsed());
            (None, 0)
        }
    }
}

fn run(
    group: u32,
    mut wal: Wal,
    metrics: GroupMetrics,
    jobs: std_mpsc::Receiver<Job>,
    inbox: mpsc::Sender<Event>,
) {
    while let Ok(first) = jobs.recv() {
        let t = Instant::now();
        let mut last = None;
        let mut records = 0u64;
        let mut next = Some(first);
        while let Some(job) = next.take() {
            let (number, n) = stage(group, &mut wal, &metrics, job);
            records += n;
            last = number.or(last);
            if records < MAX_BATCH {
                next = jobs.try_recv().ok();
            }
        }
        match wal.commit() {
            Ok(bytes) if records > 0 => metrics.wal_commit(t.elapsed(), bytes, records),
            Ok(_) => {}
            Err(e) => fail(group, "wal write", &e),
        }
        if let Some(number) = last {
            // The group may have stopped (its inbox closed): nothing waits then.
            let _ = inbox.blocking_send(Event::Persisted(number));
        }
    }
    if let Err(e) = wal.commit() {
        fail(group, "wal write", &e);
    }
}
