//! The closed loop a load runs inside the driver ([`super::Client::run_loop`]): how many
//! of its ops are unanswered, sending its next op, and telling its owner when it is done.

use super::{Driver, OpLoop, Waiter};
use std::time::Instant;
use tokio::sync::oneshot;

/// The loop run inside the driver, and how many of its ops are unanswered.
pub(super) struct Looping {
    pub(super) lp: Box<dyn OpLoop>,
    pub(super) pending: u64,
    pub(super) stopped: bool,
    pub(super) done: Option<oneshot::Sender<()>>,
}

impl Driver {
    /// Sends slot `s`'s loop's next op, if it has one.
    pub(super) fn loop_next(&mut self, s: usize, now_us: u64, now: Instant) {
        let Some(l) = self.slot_mut(s).and_then(|slot| slot.looping.as_mut()) else {
            return;
        };
        if l.stopped {
            return;
        }
        match l.lp.next_op(now) {
            Some((mask, payload)) => {
                l.pending += 1;
                self.submit(s, mask, payload, false, Waiter::Loop(now), now_us);
            }
            None => l.stopped = true,
        }
    }

    /// Tells slot `s`'s loop's owner once it stopped sending and has nothing unanswered.
    pub(super) fn loop_maybe_done(&mut self, s: usize) {
        let l = self.slot_mut(s).and_then(|slot| slot.looping.as_mut());
        if let Some(l) = l.filter(|l| l.stopped && l.pending == 0) {
            if let Some(done) = l.done.take() {
                let _ = done.send(());
            }
        }
    }
}
