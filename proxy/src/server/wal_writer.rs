//! The process's write-ahead log writer, shared by every group it hosts (fsync on: a
//! thread of its own), with group commit across groups: each replica's `Persist` and
//! `Snapshot` actions queue here, in order, while the groups' tasks go on (a leader's
//! entries are already on their way to its followers); every record that arrives, from
//! any group, while a durable write is under way shares the next one (`wal.rs`). When a
//! batch is durable, each group in it hears `Persisted(number)` for its last Raft ready
//! there, and only then does it send what had to wait (acknowledgements, votes) and count
//! its own write towards a commit. A group whose inbox is full hears it later (the latest
//! number only), without holding up the writer or the other groups.
//!
//! A failed write or sync ends the process: acknowledging what is not durable would break
//! the protocol, and the replicas restart from what the log holds.

use super::metrics::{GroupMetrics, WalMetrics};
use super::Event;
use crate::wal::Wal;
use mason_common::spin::Window;
use raft::prelude::{Entry, HardState, Snapshot};
use std::collections::BTreeMap;
use std::sync::mpsc::{self as std_mpsc, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What the writer does for a group, in the order given.
pub(super) enum Job {
    Append {
        number: u64,
        hard_state: Option<HardState>,
        entries: Vec<Entry>,
        /// Whether it must be synced before it is reported (see `Action::Persist`).
        must_sync: bool,
    },
    Snapshot {
        snapshot: Snapshot,
        hard_state: HardState,
        entries: Vec<Entry>,
    },
}

/// Records at most one commit takes (the rest wait for the next).
const MAX_BATCH: u64 = 1024;

/// Whom the writer tells, per hosted group: its inbox and its metrics.
pub(super) type Groups = BTreeMap<u32, (mpsc::Sender<Event>, GroupMetrics)>;

/// The log, its metrics, and the groups' metrics.
pub(super) struct Log {
    wal: Wal,
    metrics: WalMetrics,
    groups: Groups,
}

/// The writer: a thread of its own when fsync is on; with fsync off a write is a copy to
/// the page cache, cheaper than waking a thread, and each group does it inline under a
/// lock.
pub(super) struct WalWriter {
    inline: Option<Arc<Mutex<Log>>>,
    jobs: Option<std_mpsc::Sender<(u32, Job)>>,
    thread: Option<JoinHandle<()>>,
}

/// One group's way to the writer.
pub(super) enum WalHandle {
    Inline(u32, Arc<Mutex<Log>>),
    Thread(u32, std_mpsc::Sender<(u32, Job)>),
}

impl WalWriter {
    /// Starts the writer of the process's `wal`; it reports to the groups' inboxes.
    /// With fsync on, the writer thread polls for work for up to `spin` before it sleeps.
    pub(super) fn spawn(
        wal: Wal,
        fsync: bool,
        spin: Duration,
        metrics: WalMetrics,
        groups: Groups,
    ) -> std::io::Result<WalWriter> {
        let log = Log {
            wal,
            metrics,
            groups,
        };
        if !fsync {
            return Ok(WalWriter {
                inline: Some(Arc::new(Mutex::new(log))),
                jobs: None,
                thread: None,
            });
        }
        let (tx, rx) = std_mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("wal".into())
            .spawn(move || {
                let _stop = FailStop;
                run(log, rx, spin)
            })?;
        Ok(WalWriter {
            inline: None,
            jobs: Some(tx),
            thread: Some(thread),
        })
    }

    pub(super) fn handle(&self, group: u32) -> WalHandle {
        match (&self.inline, &self.jobs) {
            (Some(log), _) => WalHandle::Inline(group, log.clone()),
            (None, Some(tx)) => WalHandle::Thread(group, tx.clone()),
            // Finished: jobs sent now are dropped (nothing is running to send them).
            (None, None) => WalHandle::Thread(group, std_mpsc::channel().0),
        }
    }

    /// Waits until everything queued is written, once every group has stopped. It blocks
    /// the calling thread: on a multi-thread runtime call it inside `block_in_place`; on a
    /// current-thread runtime the wait holds nothing up (the writer needs only the disk).
    pub(super) fn finish(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(log) = self.inline.take() {
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = log.wal.commit() {
                fail("wal write", &e);
            }
        }
    }
}

impl WalHandle {
    /// Queues `job`; returns the ready number it made durable when it was written inline
    /// (the thread reports to the group's inbox instead).
    pub(super) fn send(&self, job: Job) -> Option<u64> {
        match self {
            WalHandle::Inline(group, log) => {
                let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                let t = Instant::now();
                let s = stage(&mut log, *group, job);
                if !s.must_sync {
                    // Only a commit index moved: staged, written with the next write.
                    log.metrics.deferred(s.records);
                    return s.number;
                }
                match log.wal.commit() {
                    Ok(bytes) if s.records > 0 => {
                        log.metrics.commit(t.elapsed(), bytes, s.records, 1)
                    }
                    Ok(_) => {}
                    Err(e) => fail("wal write", &e),
                }
                s.number
            }
            WalHandle::Thread(group, tx) => {
                // The writer only stops when every sender is gone, or by ending the
                // process.
                let _ = tx.send((*group, job));
                None
            }
        }
    }
}

/// Ends the process if the writer thread panics: its groups would otherwise wait for
/// writes that never become durable (a group task that dies ends the process too).
struct FailStop;

impl Drop for FailStop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!("the wal writer panicked; exiting");
            std::process::exit(70);
        }
    }
}

fn fail(what: &str, e: &dyn std::fmt::Display) -> ! {
    tracing::error!(error = %e, "{what} failed; exiting");
    std::process::exit(1);
}

/// What staging one job did.
struct Staged {
    /// The ready number an append carries.
    number: Option<u64>,
    records: u64,
    must_sync: bool,
}

/// Stages an append (or writes a snapshot, syncing what was staged before it).
fn stage(log: &mut Log, group: u32, job: Job) -> Staged {
    match job {
        Job::Append {
            number,
            hard_state,
            entries,
            must_sync,
        } => {
            let records = u64::from(hard_state.is_some() || !entries.is_empty());
            if records > 0 {
                if let Err(e) = log.wal.stage(group, hard_state.as_ref(), &entries) {
                    fail("encoding a wal record", &e);
                }
            }
            Staged {
                number: Some(number),
                records,
                must_sync,
            }
        }
        Job::Snapshot {
            snapshot,
            hard_state,
            entries,
        } => {
            let ts = Instant::now();
            if let Err(e) = log
                .wal
                .install_snapshot(group, &snapshot, &hard_state, &entries)
            {
                fail("writing a snapshot", &e);
            }
            tracing::info!(
                group,
                index = snapshot.get_metadata().index,
                bytes = snapshot.data.len(),
                entries = entries.len(),
                us = ts.elapsed().as_micros() as u64,
                "snapshot written"
            );
            if let Some((_, m)) = log.groups.get(&group) {
                m.snapshot(ts.elapsed());
            }
            Staged {
                number: None,
                records: 0,
                must_sync: false,
            }
        }
    }
}

/// How soon the writer tries again to tell a group whose inbox was full.
const RETRY: Duration = Duration::from_millis(1);

fn run(mut log: Log, jobs: std_mpsc::Receiver<(u32, Job)>, spin: Duration) {
    // Waking this thread for each job cost the proxy more than the polling does.
    let mut window = Window::new(spin);
    let mut last = BTreeMap::new();
    // What groups whose inboxes were full are still to hear: the latest number each (it
    // covers every ready before it).
    let mut owed = BTreeMap::new();
    loop {
        let first = if owed.is_empty() {
            window.wait(
                || jobs.try_recv().ok().map(Ok),
                || jobs.recv().map_err(|_| RecvTimeoutError::Disconnected),
            )
        } else {
            jobs.recv_timeout(RETRY)
        };
        let first = match first {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                report(&log.groups, &mut owed);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let t = Instant::now();
        let mut records = 0u64;
        let mut sync = false;
        let mut next = Some(first);
        while let Some((group, job)) = next.take() {
            let s = stage(&mut log, group, job);
            records += s.records;
            sync |= s.must_sync;
            if let Some(number) = s.number {
                last.insert(group, number);
            }
            if records < MAX_BATCH {
                next = jobs.try_recv().ok();
            }
        }
        if sync {
            match log.wal.commit() {
                Ok(bytes) if records > 0 => {
                    log.metrics.commit(t.elapsed(), bytes, records, last.len())
                }
                Ok(_) => {}
                Err(e) => fail("wal write", &e),
            }
        } else {
            // Only commit indexes moved: staged, and written with the next write.
            log.metrics.deferred(records);
        }
        owed.append(&mut last);
        report(&log.groups, &mut owed);
    }
    if let Err(e) = log.wal.commit() {
        fail("wal write", &e);
    }
}

/// Tells each group in `owed` the last ready of it that is durable. A group whose inbox
/// is full stays owed (and is told later, by the next report), so that one slow group
/// does not hold up the others' reports, nor the writer; a group that stopped (its inbox
/// closed) waits for nothing.
fn report(groups: &Groups, owed: &mut BTreeMap<u32, u64>) {
    owed.retain(|group, number| {
        groups.get(group).is_some_and(|(inbox, _)| {
            matches!(
                inbox.try_send(Event::Persisted(*number)),
                Err(mpsc::error::TrySendError::Full(_))
            )
        })
    });
}

#[cfg(test)]
mod tests;
