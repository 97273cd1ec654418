//! The one shape in which a runtime drives a role's state machine (a sequencer, a proxy
//! group's replica, a log server, ...): events arrive on a bounded inbox, the machine turns
//! them into actions, and an [`Executor`] carries the actions out in order, on real
//! sockets and files. Time comes in as the machine asks for it: the driver wakes at the
//! machine's [`Machine::next_deadline`]. An action whose completion the machine must hear
//! about (a disk write, a sync) reports back as an event, fed to the machine before
//! anything else. The simulator drives the same machines without this runtime.

use std::time::Instant;
use tokio::sync::mpsc;

/// A role's deterministic state machine, as the driver sees it.
pub trait Machine {
    type Event;
    type Action;
    /// One event at `now` (microseconds since the driver started).
    fn on_event(&mut self, ev: Self::Event, now: u64, out: &mut Vec<Self::Action>);
    /// After every burst of events, and whenever `next_deadline` is reached.
    fn on_time(&mut self, now: u64, out: &mut Vec<Self::Action>);
    /// When `on_time` must next be called at the latest (microseconds), if ever.
    fn next_deadline(&self) -> Option<u64>;
    /// Whether the machine has finished (the driver returns once its actions are done).
    fn finished(&self) -> bool {
        false
    }
}

/// Carries out a machine's actions, in order. Completions the machine must hear about go
/// into `feedback`.
pub trait Executor<M: Machine> {
    fn execute(&mut self, action: M::Action, feedback: &mut Vec<M::Event>);
}

/// The inbox of a driven machine: bounded, so that a flood from one connection waits on
/// that connection instead of growing memory.
pub fn inbox<E>(capacity: usize) -> (mpsc::Sender<E>, mpsc::Receiver<E>) {
    mpsc::channel(capacity)
}

/// The most events handled before their actions are carried out (a burst).
pub const BURST: usize = 4096;

/// Microseconds since `start`.
pub fn micros_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Drives `m` until its inbox closes or it says it has finished.
pub async fn drive<M, X>(m: &mut M, x: &mut X, inbox: &mut mpsc::Receiver<M::Event>, start: Instant)
where
    M: Machine,
    X: Executor<M>,
{
    let mut out = Vec::new();
    let mut feedback = Vec::new();
    let mut burst = Vec::with_capacity(64);
    loop {
        let first = match m.next_deadline() {
            Some(d) => {
                let at = start + std::time::Duration::from_micros(d);
                tokio::select! {
                    biased;
                    ev = inbox.recv() => match ev {
                        Some(ev) => Some(ev),
                        None => return,
                    },
                    _ = tokio::time::sleep_until(at.into()) => None,
                }
            }
            None => match inbox.recv().await {
                Some(ev) => Some(ev),
                None => return,
            },
        };
        burst.extend(first);
        while burst.len() < BURST {
            match inbox.try_recv() {
                Ok(ev) => burst.push(ev),
                Err(_) => break,
            }
        }
        let now = micros_since(start);
        for ev in burst.drain(..) {
            m.on_event(ev, now, &mut out);
        }
        m.on_time(now, &mut out);
        // Carry out the actions; what they report back goes in before the next burst.
        while !out.is_empty() {
            for a in out.drain(..) {
                x.execute(a, &mut feedback);
            }
            if feedback.is_empty() {
                break;
            }
            let now = micros_since(start);
            for ev in feedback.drain(..) {
                m.on_event(ev, now, &mut out);
            }
            m.on_time(now, &mut out);
        }
        if m.finished() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts events, asks to be woken 2 ms after each, and echoes each through the
    /// executor's feedback once.
    struct Echo {
        seen: Vec<u32>,
        woke: u32,
        wake_at: Option<u64>,
    }

    impl Machine for Echo {
        type Event = u32;
        type Action = u32;
        fn on_event(&mut self, ev: u32, now: u64, out: &mut Vec<u32>) {
            self.seen.push(ev);
            if ev < 100 {
                out.push(ev + 100);
            }
            self.wake_at = Some(now + 2_000);
        }
        fn on_time(&mut self, now: u64, _: &mut Vec<u32>) {
            if self.wake_at.is_some_and(|t| now >= t) {
                self.woke += 1;
                self.wake_at = None;
            }
        }
        fn next_deadline(&self) -> Option<u64> {
            self.wake_at
        }
        fn finished(&self) -> bool {
            self.woke > 0 && self.seen.contains(&3)
        }
    }

    struct Back(Vec<u32>);

    impl Executor<Echo> for Back {
        fn execute(&mut self, a: u32, fb: &mut Vec<u32>) {
            self.0.push(a);
            fb.push(a);
        }
    }

    #[tokio::test]
    async fn actions_run_in_order_feedback_comes_back_and_deadlines_wake_it() {
        let (tx, mut rx) = inbox(2);
        let mut m = Echo {
            seen: Vec::new(),
            woke: 0,
            wake_at: None,
        };
        let mut x = Back(Vec::new());
        for e in [1, 2, 3] {
            tx.try_send(e).ok();
            if e == 2 {
                assert!(tx.try_send(9).is_err(), "the inbox is bounded");
            }
        }
        let t = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let _ = tx.send(3).await;
            tx
        });
        drive(&mut m, &mut x, &mut rx, Instant::now()).await;
        let _ = t.await;
        assert_eq!(&x.0[..2], &[101, 102]);
        assert!(m.seen.starts_with(&[1, 2, 101, 102]), "{:?}", m.seen);
        assert_eq!(m.woke, 1);
    }
}
