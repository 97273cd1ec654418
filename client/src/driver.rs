//! The async shell around [`ClientCore`]: real sockets, a real clock, tokio. One driver
//! task runs one client, or several clients of one target that share its connections
//! ([`Client::start_shared`]): what they send in one turn goes out in one write, and the
//! group sees their ops together. It keeps a connection to each replica a client talks to
//! (see `driver/conns.rs`), tells a core when its replica cannot be reached, feeds each core
//! the frames that answer it, ticks them, and completes each op's `oneshot`.
//!
//! A [`ClientPool`] is such a driver whose clients join and leave while it runs (a ZooKeeper
//! front end's sessions): each joins with a client id, and leaves once every handle to it
//! is dropped (see `driver/slots.rs`, which also finds the client a frame answers).
//!
//! A load generator can instead run its closed loop inside the driver ([`Client::run_loop`]):
//! each answer is handed to the loop and the loop's next op submitted in the same turn, with
//! no channel, task or `oneshot` per op.

mod conns;
mod looping;
mod slots;

use looping::Looping;
pub use slots::ClientPool;
use slots::Member;

use crate::core::{ClientAction, ClientCore};
pub use crate::core::{ClientError, MultiSeq};
use bytes::Bytes;
use futures::FutureExt;
use mason_common::auth::{ClusterKey, Role, RoleKind};
use mason_common::transport::Transport;
use mason_common::types::SpaceMask;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// A closed loop of ops run inside the driver (see [`Client::run_loop`]).
pub trait OpLoop: Send + 'static {
    /// The next op to send at `now` (its spaces and payload), or `None` once the loop stops
    /// sending.
    fn next_op(&mut self, now: Instant) -> Option<(SpaceMask, Bytes)>;
    /// The answer to an op that `next_op` gave, sent at `sent` and answered at `now`.
    fn answered(&mut self, sent: Instant, now: Instant, result: Result<MultiSeq, ClientError>);
}

/// Where a client's ops go.
#[derive(Clone, Debug)]
pub enum Target {
    /// The replicas of proxy group `group`, by replica index; a client tries `first`
    /// first (where the group's first leader is: [`crate::first_leader`]).
    Group {
        group: u32,
        replicas: Vec<SocketAddr>,
        first: usize,
    },
    /// The sequencer itself, one request per op (the direct baseline).
    Direct { sequencer: SocketAddr },
}

#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// A label for logs.
    pub client_id: u64,
    pub target: Target,
    /// Move to another replica when the oldest op has waited this long.
    pub retry_timeout: Duration,
    /// Ops kept in flight at most (the group holds back no more of them).
    pub window: u32,
    pub key: Arc<ClusterKey>,
}

/// The longest gap between ticks: back-offs (10 and 20 ms) end on a tick.
const MAX_TICK: Duration = Duration::from_millis(10);
/// The replica given for a frame that does not come from a client's current replica over
/// a connection made since its last move: never a core's current replica, so a "not
/// leader" there counts for nothing, while its answers still finish ops.
const STALE: usize = usize::MAX;

type Reply = oneshot::Sender<Result<MultiSeq, ClientError>>;

enum Ev {
    Op {
        mask: SpaceMask,
        payload: Bytes,
        /// Make the payload start with the client id and the op's seq.
        stamp: bool,
        reply: Reply,
    },
    Read {
        payload: Bytes,
        min_pos: u64,
        reply: Reply,
    },
    Loop {
        lp: Box<dyn OpLoop>,
        slots: u32,
        /// Told, once the loop stopped sending and every op it sent was answered.
        done: oneshot::Sender<()>,
    },
    /// Stops the loop, telling how many of its ops are still unanswered.
    StopLoop(oneshot::Sender<u64>),
    /// A pool's new client, with this id, at this (free) slot.
    Join {
        client_id: u64,
        re_tx: Arc<AtomicU64>,
    },
    /// A pool's client whose every handle was dropped: its slot is free.
    Leave,
}

/// Who waits for an op's answer.
enum Waiter {
    Reply(Reply),
    /// An op of the loop, sent at this instant.
    Loop(Instant),
}

/// A handle to one client; cheap to clone, all clones share one session.
#[derive(Clone)]
pub struct Client {
    tx: mpsc::UnboundedSender<(usize, Ev)>,
    /// Which of its driver's clients this is.
    slot: usize,
    re_tx: Arc<AtomicU64>,
    /// A pool's client: frees its slot once the last handle is dropped.
    _member: Option<Arc<Member>>,
}

impl Client {
    pub fn start(transport: Arc<dyn Transport>, cfg: ClientConfig) -> Client {
        let id = cfg.client_id;
        match Client::start_shared(transport, cfg, &[id]).pop() {
            Some(c) => c,
            None => unreachable!("one client per id"),
        }
    }

    /// Starts one client per id in `ids` (each its own session, with `cfg`'s target, window
    /// and timeouts; `cfg.client_id` is not used), run by one driver over shared
    /// connections.
    pub fn start_shared(
        transport: Arc<dyn Transport>,
        cfg: ClientConfig,
        ids: &[u64],
    ) -> Vec<Client> {
        let (tx, rx) = mpsc::unbounded_channel();
        let period = (cfg.retry_timeout / 4).clamp(Duration::from_millis(1), MAX_TICK);
        let mut d = Driver::new(transport, cfg);
        let mut clients = Vec::new();
        for (slot, &client_id) in ids.iter().enumerate() {
            let re_tx = Arc::new(AtomicU64::new(0));
            d.join(slot, client_id, re_tx.clone());
            clients.push(Client {
                tx: tx.clone(),
                slot,
                re_tx,
                _member: None,
            });
        }
        tokio::spawn(d.run(rx, period));
        clients
    }

    /// Gets one number in each space of `spaces` for an op carrying `payload`.
    pub async fn sequence(
        &self,
        spaces: SpaceMask,
        payload: Bytes,
    ) -> Result<MultiSeq, ClientError> {
        self.submit(spaces, payload, false).await
    }

    /// As [`Client::sequence`], with the payload's first 16 bytes replaced by the session
    /// and the op's seq (see [`crate::log::stamp`]), so that a checker can find it.
    pub async fn sequence_stamped(
        &self,
        spaces: SpaceMask,
        payload: Bytes,
    ) -> Result<MultiSeq, ClientError> {
        self.submit(spaces, payload, true).await
    }

    async fn submit(
        &self,
        spaces: SpaceMask,
        payload: Bytes,
        stamp: bool,
    ) -> Result<MultiSeq, ClientError> {
        self.take(move |reply| Ev::Op {
            mask: spaces,
            payload,
            stamp,
            reply,
        })
        .await
    }

    /// A read the leader answers without the log (`--zk-reads local`, see
    /// [`mason_common::msg::LocalRead`]): its answer, as a [`MultiSeq`] whose one number
    /// is the position the answer reflects.
    pub async fn read_local(&self, payload: Bytes, min_pos: u64) -> Result<MultiSeq, ClientError> {
        self.read_local_now(payload, min_pos).await
    }

    /// As [`Client::sequence`], but the op is taken now, in call order, and the returned
    /// future only waits for its answer: a caller that must keep its ops in order (a
    /// wire-protocol front end) calls this in order and awaits the answers as it likes.
    pub fn sequence_now(
        &self,
        spaces: SpaceMask,
        payload: Bytes,
    ) -> impl std::future::Future<Output = Result<MultiSeq, ClientError>> + Send + 'static {
        self.take(move |reply| Ev::Op {
            mask: spaces,
            payload,
            stamp: false,
            reply,
        })
    }

    /// As [`Client::read_local`], taken now (see [`Client::sequence_now`]).
    pub fn read_local_now(
        &self,
        payload: Bytes,
        min_pos: u64,
    ) -> impl std::future::Future<Output = Result<MultiSeq, ClientError>> + Send + 'static {
        self.take(move |reply| Ev::Read {
            payload,
            min_pos,
            reply,
        })
    }

    /// Hands the driver the event `make` builds around a reply channel, now; the future
    /// waits for the answer.
    fn take(
        &self,
        make: impl FnOnce(Reply) -> Ev,
    ) -> impl std::future::Future<Output = Result<MultiSeq, ClientError>> + Send + 'static {
        let (reply, rx) = oneshot::channel();
        let taken = self.tx.send((self.slot, make(reply))).is_ok();
        async move {
            if !taken {
                return Err(ClientError::Closed);
            }
            rx.await.map_err(|_| ClientError::Closed)?
        }
    }

    /// Ops re-sent so far (Mason's `num_re_tx`).
    pub fn retransmissions(&self) -> u64 {
        self.re_tx.load(Ordering::Relaxed)
    }

    /// Runs `lp` inside the driver with `slots` ops in flight: each answer goes to the loop
    /// and its next op is sent at once. The returned receiver fires once the loop stopped
    /// sending and all its ops are answered; [`Client::stop_loop`] ends it sooner.
    pub fn run_loop(&self, lp: Box<dyn OpLoop>, slots: u32) -> oneshot::Receiver<()> {
        let (done, rx) = oneshot::channel();
        let _ = self.tx.send((self.slot, Ev::Loop { lp, slots, done }));
        rx
    }

    /// Stops the loop: no op of it is sent any more, and answers to it are dropped. Returns
    /// how many of its ops were unanswered (`None` if the driver is gone).
    pub async fn stop_loop(&self) -> Option<u64> {
        let (tx, rx) = oneshot::channel();
        self.tx.send((self.slot, Ev::StopLoop(tx))).ok()?;
        rx.await.ok()
    }
}

/// One client of a driver: its core, who waits for its ops, and its loop.
struct Slot {
    core: ClientCore,
    /// Who waits for each op, by the op's id (ids this client hands out: a fast hash).
    waiting: fxhash::FxHashMap<u64, Waiter>,
    looping: Option<Looping>,
    re_tx: Arc<AtomicU64>,
    /// The core's move count when last looked at.
    moves: u64,
    /// Only connections numbered from this one on, made since its last move, carry its
    /// frames from its current replica (see [`ClientCore::moves`]).
    fresh_from: u64,
}

struct Driver {
    cfg: ClientConfig,
    /// Clients join and leave while it runs ([`ClientPool`]).
    pool: bool,
    /// By slot; a pool's slot is empty once its client left.
    slots: Vec<Option<Slot>>,
    /// Which slot a session is (a cache: checked against the slot's core).
    by_session: HashMap<u64, usize>,
    conns: conns::Conns,
    /// The cores' answers still to hand over, by slot. (Their sends go out as they are
    /// asked for, in [`Driver::with_core`].)
    queue: Vec<(usize, ClientAction)>,
    /// Sends that found their replica unreachable, by slot: the core hears so in `apply`.
    unreachable: Vec<(usize, usize)>,
    /// A buffer the cores write their actions into.
    buf: Vec<ClientAction>,
    start: Instant,
    /// The clock read once per turn (what arrived together was answered together), and
    /// as microseconds since `start`; cleared when the turn ends.
    clock: std::cell::Cell<Option<(Instant, u64)>>,
    /// The replica that last answered one of its clients' ops or registrations with
    /// success, over a connection that counts for that client (cleared when it says "not
    /// leader"): where a client that joins a pool tries first.
    leader: Option<usize>,
}

impl Driver {
    fn new(transport: Arc<dyn Transport>, cfg: ClientConfig) -> Driver {
        let (addrs, peer) = match &cfg.target {
            Target::Group { replicas, .. } => (replicas.clone(), RoleKind::Proxy),
            Target::Direct { sequencer } => (vec![*sequencer], RoleKind::Sequencer),
        };
        let me = Role::client(cfg.window);
        let conns = conns::Conns::new(
            addrs,
            transport,
            cfg.key.clone(),
            me,
            peer,
            cfg.retry_timeout,
        );
        Driver {
            cfg,
            pool: false,
            slots: Vec::new(),
            by_session: HashMap::new(),
            leader: None,
            conns,
            queue: Vec::new(),
            unreachable: Vec::new(),
            buf: Vec::new(),
            start: Instant::now(),
            clock: std::cell::Cell::new(None),
        }
    }

    /// This turn's time: the clock is read at its first use in a turn.
    fn now(&self) -> (Instant, u64) {
        if let Some(c) = self.clock.get() {
            return c;
        }
        let at = Instant::now();
        let us = u64::try_from(at.duration_since(self.start).as_micros()).unwrap_or(u64::MAX);
        self.clock.set(Some((at, us)));
        (at, us)
    }

    fn now_us(&self) -> u64 {
        self.now().1
    }

    /// Runs `f` on slot `s`'s core: the frames it sends go out now, its answers are
    /// queued for `apply`.
    fn with_core(&mut self, s: usize, f: impl FnOnce(&mut ClientCore, &mut Vec<ClientAction>)) {
        let Some(slot) = self.slots.get_mut(s).and_then(Option::as_mut) else {
            return;
        };
        f(&mut slot.core, &mut self.buf);
        let moves = slot.core.moves();
        if moves != slot.moves {
            // Connections are only dialled by the sends below, after this (numbered as
            // their dial starts): the next one is the first made since the move.
            slot.moves = moves;
            slot.fresh_from = self.conns.next_gen();
        }
        let (current, fresh_from) = (slot.core.current(), slot.fresh_from);
        for a in self.buf.drain(..) {
            match a {
                ClientAction::Send { to, frame } if to == current => {
                    if !self.conns.send(to, fresh_from, frame) {
                        self.unreachable.push((s, to));
                    }
                }
                // For a replica the core left while it ran: dropped.
                ClientAction::Send { .. } => {}
                done => self.queue.push((s, done)),
            }
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<(usize, Ev)>, period: Duration) {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.apply();
        loop {
            tokio::select! {
                ev = rx.recv() => {
                    let Some((s, ev)) = ev else { return };
                    self.handle(s, ev);
                    // Whatever else is queued joins this turn.
                    while let Ok((s, ev)) = rx.try_recv() {
                        self.handle(s, ev);
                    }
                }
                read = self.conns.next_read(), if self.conns.busy() => {
                    self.on_read(read);
                    // Frames already read join this turn.
                    for _ in 0..conns::FRAMES_PER_TURN {
                        match self.conns.next_read().now_or_never() {
                            Some(read) => self.on_read(read),
                            None => break,
                        }
                    }
                }
                _ = tick.tick() => {
                    let now = self.now_us();
                    for s in 0..self.slots.len() {
                        self.with_core(s, |core, out| core.tick(now, out));
                    }
                    self.conns.close_retired();
                }
            }
            self.apply();
            self.clock.set(None);
        }
    }

    /// What `frame`, from replica `from`, says of where the leader is.
    fn note_leader(&mut self, from: usize, frame: &mason_common::msg::Frame) {
        use mason_common::msg::{Body, ReplyStatus};
        let status = match &frame.body {
            Some(Body::ClientReply(r)) => r.status,
            Some(Body::Registered(r)) => r.status,
            _ => return,
        };
        match ReplyStatus::try_from(status) {
            Ok(ReplyStatus::Ok) => self.leader = Some(from),
            Ok(ReplyStatus::NotLeader) if self.leader == Some(from) => self.leader = None,
            _ => {}
        }
    }

    /// A frame from one of the connections (to the core it answers), or the end of one.
    fn on_read(&mut self, read: conns::Read) {
        let now = self.now_us();
        match read {
            conns::Read::Frame {
                gen,
                replica,
                frame,
            } => {
                let Some(s) = self.slot_of(&frame) else {
                    tracing::debug!(?frame, "a frame for no client of this driver");
                    return;
                };
                let from = match (replica, self.slot(s)) {
                    (Some(r), Some(slot)) if self.counts_for(slot, gen, r) => r,
                    _ => STALE,
                };
                if from != STALE {
                    self.note_leader(from, &frame);
                }
                self.with_core(s, |core, out| core.on_frame(from, frame, now, out));
            }
            conns::Read::Closed { gen, replica } => {
                // (A failed dial leaves alone the clients that an older connection, still
                // open, serves.)
                for s in 0..self.slots.len() {
                    if self.slot(s).is_some_and(|slot| {
                        self.counts_for(slot, gen, replica)
                            && !self.conns.serves(replica, slot.fresh_from)
                    }) {
                        self.with_core(s, |core, out| core.on_unreachable(replica, now, out));
                    }
                }
            }
        }
    }

    /// Whether connection `gen` to `replica` is, for `slot`, its current replica's, made
    /// since its last move.
    fn counts_for(&self, slot: &Slot, gen: u64, replica: usize) -> bool {
        replica == slot.core.current() && gen >= slot.fresh_from
    }

    fn handle(&mut self, s: usize, ev: Ev) {
        let now = self.now_us();
        match ev {
            Ev::Join { client_id, re_tx } => self.join(s, client_id, re_tx),
            Ev::Leave => self.leave(s),
            Ev::Op {
                mask,
                payload,
                stamp,
                reply,
            } => self.submit(s, mask, payload, stamp, Waiter::Reply(reply), now),
            Ev::Read {
                payload,
                min_pos,
                reply,
            } => {
                let mut id = None;
                self.with_core(s, |core, out| {
                    id = Some(core.submit_read(payload, min_pos, now, out));
                });
                if let (Some(id), Some(slot)) = (id, self.slot_mut(s)) {
                    slot.waiting.insert(id, Waiter::Reply(reply));
                }
            }
            Ev::Loop { lp, slots, done } => {
                let Some(slot) = self.slot_mut(s) else {
                    return;
                };
                slot.looping = Some(Looping {
                    lp,
                    pending: 0,
                    stopped: false,
                    done: Some(done),
                });
                let at = self.now().0;
                for _ in 0..slots {
                    self.loop_next(s, now, at);
                }
                self.loop_maybe_done(s);
            }
            Ev::StopLoop(reply) => {
                let Some(slot) = self.slot_mut(s) else {
                    let _ = reply.send(0);
                    return;
                };
                let pending = slot.looping.take().map_or(0, |l| l.pending);
                // Their answers are for no loop now (a later loop must not count them).
                slot.waiting.retain(|_, w| matches!(w, Waiter::Reply(_)));
                let _ = reply.send(pending);
            }
        }
    }

    /// Hands slot `s`'s core an op; `waiter` hears its answer.
    fn submit(
        &mut self,
        s: usize,
        mask: SpaceMask,
        payload: Bytes,
        stamp: bool,
        waiter: Waiter,
        now_us: u64,
    ) {
        let mut id = None;
        self.with_core(s, |core, out| {
            id = Some(core.submit(mask, payload, stamp, now_us, out));
        });
        if let (Some(id), Some(slot)) = (id, self.slot_mut(s)) {
            slot.waiting.insert(id, waiter);
        }
    }

    /// Hands an answer to whoever waits for it; a loop sends its next op at once.
    fn finish(&mut self, s: usize, id: u64, result: Result<MultiSeq, ClientError>) {
        let Some(slot) = self.slot_mut(s) else {
            return;
        };
        match slot.waiting.remove(&id) {
            Some(Waiter::Reply(reply)) => {
                let _ = reply.send(result);
            }
            Some(Waiter::Loop(sent)) => {
                let (now, now_us) = self.now();
                let Some(slot) = self.slot_mut(s) else {
                    return;
                };
                if let Some(l) = slot.looping.as_mut() {
                    l.pending = l.pending.saturating_sub(1);
                    l.lp.answered(sent, now, result);
                    self.loop_next(s, now_us, now);
                    self.loop_maybe_done(s);
                }
            }
            None => {}
        }
    }

    /// Hands over the cores' answers, and tells them of unreachable replicas (and so on,
    /// for what those lead to) until nothing is left.
    fn apply(&mut self) {
        let mut acts = Vec::new();
        loop {
            for (s, to) in std::mem::take(&mut self.unreachable) {
                let now = self.now_us();
                self.with_core(s, |core, out| core.on_unreachable(to, now, out));
            }
            if self.queue.is_empty() {
                break;
            }
            std::mem::swap(&mut self.queue, &mut acts);
            for (s, a) in acts.drain(..) {
                if let ClientAction::Done { id, result } = a {
                    self.finish(s, id, result);
                }
            }
        }
        if self.queue.capacity() < acts.capacity() {
            std::mem::swap(&mut self.queue, &mut acts);
        }
        // A connection no client needs any more is retired at once, as a move should.
        let slots = &self.slots;
        self.conns.keep_only(|replica, gen| {
            slots
                .iter()
                .flatten()
                .any(|s| s.core.current() == replica && gen >= s.fresh_from)
        });
        for s in self.slots.iter().flatten() {
            s.re_tx.store(s.core.retransmissions(), Ordering::Relaxed);
        }
    }
}
