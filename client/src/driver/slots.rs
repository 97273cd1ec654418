//! A driver's clients: which slot each holds, the clients of a [`ClientPool`] joining and
//! leaving while it runs (a ZooKeeper front end's sessions), and which client a frame
//! answers (by session, or a registration's nonce).

use super::{ClientConfig, Driver, Ev, Slot, Target, MAX_TICK};
use crate::core::{ClientCore, CoreConfig, CoreTarget};
use crate::Client;
use mason_common::msg::{Body, Frame};
use mason_common::transport::Transport;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Drivers whose clients come and go: the slots free for the next client to join.
type FreeSlots = Arc<Mutex<FreeList>>;

#[derive(Default)]
struct FreeList {
    free: Vec<usize>,
    next: usize,
}

/// A pool's client's place in its driver, given back when the last handle drops.
pub(super) struct Member {
    tx: mpsc::UnboundedSender<(usize, Ev)>,
    slot: usize,
    free: FreeSlots,
}

impl Drop for Member {
    fn drop(&mut self) {
        // The driver hears of the leave before the slot can be handed out again (one
        // channel, in order).
        let _ = self.tx.send((self.slot, Ev::Leave));
        let mut f = self.free.lock().unwrap_or_else(|e| e.into_inner());
        f.free.push(self.slot);
    }
}

/// One driver, and connections to one target, shared by clients that join and leave while
/// it runs (each its own session). Cheap to clone. The driver stops once the pool and every
/// client of it are dropped.
#[derive(Clone)]
pub struct ClientPool {
    tx: mpsc::UnboundedSender<(usize, Ev)>,
    free: FreeSlots,
}

impl ClientPool {
    /// A driver for clients of `cfg`'s target, window and timeouts (`cfg.client_id` is not
    /// used), with no client yet.
    pub fn start(transport: Arc<dyn Transport>, cfg: ClientConfig) -> ClientPool {
        let (tx, rx) = mpsc::unbounded_channel();
        let period = (cfg.retry_timeout / 4).clamp(Duration::from_millis(1), MAX_TICK);
        let mut d = Driver::new(transport, cfg);
        d.pool = true;
        tokio::spawn(d.run(rx, period));
        ClientPool {
            tx,
            free: Arc::default(),
        }
    }

    /// A new client of the pool, with its own session, labelled `client_id` (its
    /// registrations' nonces are drawn from it, so ids must differ within a pool). Its
    /// slot is freed once every handle to it is dropped.
    pub fn join(&self, client_id: u64) -> Client {
        let slot = {
            let mut f = self.free.lock().unwrap_or_else(|e| e.into_inner());
            match f.free.pop() {
                Some(s) => s,
                None => {
                    f.next += 1;
                    f.next - 1
                }
            }
        };
        let re_tx = Arc::new(AtomicU64::new(0));
        let _ = self.tx.send((
            slot,
            Ev::Join {
                client_id,
                re_tx: re_tx.clone(),
            },
        ));
        Client {
            tx: self.tx.clone(),
            slot,
            re_tx,
            _member: Some(Arc::new(Member {
                tx: self.tx.clone(),
                slot,
                free: self.free.clone(),
            })),
        }
    }
}

/// A driver with at most this many clients finds a frame's client by looking at each.
const SCAN_SLOTS: usize = 8;

/// Whether slot `s` holds the client whose session is `session`.
fn is_session(slots: &[Option<Slot>], s: usize, session: u64) -> bool {
    slots
        .get(s)
        .and_then(Option::as_ref)
        .is_some_and(|slot| slot.core.session() == Some(session))
}

impl Driver {
    /// Starts client `client_id` at slot `s` (empty, or past the last), opening its session.
    /// It tries first the replica that last answered one of the driver's clients with
    /// success (`Driver::leader`), else the one its target names.
    pub(super) fn join(&mut self, s: usize, client_id: u64, re_tx: Arc<AtomicU64>) {
        let target = match &self.cfg.target {
            Target::Group {
                group,
                replicas,
                first,
            } => CoreTarget::Group {
                group: *group,
                replicas: replicas.len(),
                first: self.leader.unwrap_or(*first),
            },
            // A random session: a restarted client never meets its predecessor's.
            Target::Direct { .. } => CoreTarget::Direct {
                session: rand::random::<u64>() | 1 << 63,
            },
        };
        let core = ClientCore::new(CoreConfig {
            client_id,
            target,
            retry_timeout_us: u64::try_from(self.cfg.retry_timeout.as_micros()).unwrap_or(u64::MAX),
            window: self.cfg.window,
        });
        if self.slots.len() <= s {
            self.slots.resize_with(s + 1, || None);
        }
        self.slots[s] = Some(Slot {
            core,
            waiting: fxhash::FxHashMap::default(),
            looping: None,
            re_tx,
            moves: 0,
            fresh_from: 0,
        });
        let now = self.now_us();
        self.with_core(s, |core, out| core.open(now, out));
    }

    /// Slot `s`'s client left: its ops are dropped, unanswered (no one waits for them).
    pub(super) fn leave(&mut self, s: usize) {
        if let Some(slot) = self.slots.get_mut(s) {
            *slot = None;
        }
        self.queue.retain(|(q, _)| *q != s);
        self.unreachable.retain(|(q, _)| *q != s);
        self.by_session.retain(|_, v| *v != s);
        while self.slots.last().is_some_and(Option::is_none) {
            self.slots.pop();
        }
    }

    pub(super) fn slot(&self, s: usize) -> Option<&Slot> {
        self.slots.get(s).and_then(Option::as_ref)
    }

    pub(super) fn slot_mut(&mut self, s: usize) -> Option<&mut Slot> {
        self.slots.get_mut(s).and_then(Option::as_mut)
    }

    /// The client that `frame` answers: by its session, or a registration's nonce.
    /// (A pool's one client may have joined in the place of one that the frame answers.)
    pub(super) fn slot_of(&mut self, frame: &Frame) -> Option<usize> {
        if self.slots.len() == 1 && !self.pool {
            return Some(0);
        }
        let session = match &frame.body {
            Some(Body::ClientReply(r)) => r.session,
            Some(Body::LocalReadReply(r)) => r.session,
            Some(Body::SeqReply(r)) => r.session,
            Some(Body::Registered(r)) => {
                return self.slots.iter().position(|s| {
                    s.as_ref()
                        .is_some_and(|s| s.core.registering_nonce() == Some(r.nonce))
                })
            }
            _ => return None,
        };
        if self.slots.len() > SCAN_SLOTS {
            if let Some(&s) = self.by_session.get(&session) {
                if is_session(&self.slots, s, session) {
                    return Some(s);
                }
            }
        }
        let s = (0..self.slots.len()).find(|&s| is_session(&self.slots, s, session))?;
        if self.slots.len() > SCAN_SLOTS {
            // Sessions that ended (their slot left or registered anew) are forgotten
            // now and then.
            if self.by_session.len() >= 2 * self.slots.len() {
                let slots = &self.slots;
                self.by_session.retain(|&k, &mut v| is_session(slots, v, k));
            }
            self.by_session.insert(session, s);
        }
        Some(s)
    }
}
