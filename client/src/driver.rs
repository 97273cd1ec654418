//! The async shell around [`ClientCore`]: real sockets, a real clock, tokio. It keeps one
//! connection, to the core's current replica, made when the core first sends there (and made
//! afresh each time the core moves on), each starting with the handshake as a client; tells
//! the core when a connection cannot be made or breaks, feeds it the frames that arrive,
//! ticks it, and completes each op's `oneshot`.
//!
//! A load generator can instead run its closed loop inside the driver ([`Client::run_loop`]):
//! each answer is handed to the loop and the loop's next op submitted in the same turn, with
//! no channel, task or `oneshot` per op.

use crate::core::{ClientAction, ClientCore, CoreConfig, CoreTarget};
pub use crate::core::{ClientError, MultiSeq};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use mason_common::auth::{ClusterKey, Role, RoleKind};
use mason_common::conn::{dial, spawn_writer, Outbox, Overflow};
use mason_common::msg::Frame;
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

/// Frames read from the current replica.
type Reader = tokio_util::codec::FramedRead<
    mason_common::transport::BoxRead,
    mason_common::codec::FrameCodec,
>;

/// Frames handled in one turn at most before the driver acts on them.
const FRAMES_PER_TURN: usize = 256;

/// Where a client's ops go.
#[derive(Clone, Debug)]
pub enum Target {
    /// The replicas of proxy group `group`, by replica index.
    Group {
        group: u32,
        replicas: Vec<SocketAddr>,
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

/// The largest frame a client accepts (an answer is small; a log read's is not).
const MAX_FRAME: usize = 64 << 20;

/// How long one connection attempt may take before the replica counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest gap between ticks: back-offs (10 and 20 ms) end on a tick.
const MAX_TICK: Duration = Duration::from_millis(10);
/// The replica index given for frames from a connection that is no longer the current one:
/// never the core's current replica, so its "not leader" answers count for nothing, while
/// its answers still finish ops.
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
}

/// Who waits for an op's answer.
enum Waiter {
    Reply(Reply),
    /// An op of the loop, sent at this instant.
    Loop(Instant),
}

/// The loop run inside the driver, and how many of its ops are unanswered.
struct Looping {
    lp: Box<dyn OpLoop>,
    pending: u64,
    stopped: bool,
    done: Option<oneshot::Sender<()>>,
}

/// A handle to one client; cheap to clone, all clones share one session.
#[derive(Clone)]
pub struct Client {
    tx: mpsc::UnboundedSender<Ev>,
    re_tx: Arc<AtomicU64>,
}

impl Client {
    pub fn start(transport: Arc<dyn Transport>, cfg: ClientConfig) -> Client {
        let (tx, rx) = mpsc::unbounded_channel();
        let re_tx = Arc::new(AtomicU64::new(0));
        let (target, addrs, peer) = match cfg.target {
            Target::Group { group, replicas } => (
                CoreTarget::Group {
                    group,
                    replicas: replicas.len(),
                },
                replicas,
                RoleKind::Proxy,
            ),
            Target::Direct { sequencer } => (
                // A random session: a restarted client never meets its predecessor's.
                CoreTarget::Direct {
                    session: rand::random::<u64>() | 1 << 63,
                },
                vec![sequencer],
                RoleKind::Sequencer,
            ),
        };
        let mut core = ClientCore::new(CoreConfig {
            client_id: cfg.client_id,
            target,
            retry_timeout_us: u64::try_from(cfg.retry_timeout.as_micros()).unwrap_or(u64::MAX),
            window: cfg.window,
        });
        let mut first = Vec::new();
        core.open(0, &mut first);
        let d = Driver {
            core,
            addrs,
            transport,
            key: cfg.key,
            me: Role::client(cfg.window),
            peer,
            conn: None,
            waiting: HashMap::new(),
            looping: None,
            stale: None,
            re_tx: re_tx.clone(),
            start: Instant::now(),
            first,
        };
        let period = (cfg.retry_timeout / 4).clamp(Duration::from_millis(1), MAX_TICK);
        tokio::spawn(d.run(rx, period));
        Client { tx, re_tx }
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
        let taken = self.tx.send(make(reply)).is_ok();
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
        let _ = self.tx.send(Ev::Loop { lp, slots, done });
        rx
    }

    /// Stops the loop: no op of it is sent any more, and answers to it are dropped. Returns
    /// how many of its ops were unanswered (`None` if the driver is gone).
    pub async fn stop_loop(&self) -> Option<u64> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Ev::StopLoop(tx)).ok()?;
        rx.await.ok()
    }
}

/// The connection to replica `to`, made after the core's `moves`-th move; `gen` tells its
/// frames from those of earlier connections.
struct Conn {
    to: usize,
    moves: u64,
    tx: Outbox,
    rd: Reader,
}

struct Driver {
    core: ClientCore,
    addrs: Vec<SocketAddr>,
    transport: Arc<dyn Transport>,
    key: Arc<ClusterKey>,
    me: Role,
    /// What the other end must be.
    peer: RoleKind,
    conn: Option<Conn>,
    waiting: HashMap<u64, Waiter>,
    looping: Option<Looping>,
    /// The connection's reader before the last move, until it closes.
    stale: Option<Reader>,
    re_tx: Arc<AtomicU64>,
    start: Instant,
    /// What the core asked for before the driver ran (opening a session).
    first: Vec<ClientAction>,
}

impl Driver {
    fn now_us(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Ev>, period: Duration) {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut out = std::mem::take(&mut self.first);
        self.apply(&mut out).await;
        loop {
            tokio::select! {
                ev = rx.recv() => {
                    let Some(ev) = ev else { return };
                    self.handle(ev, &mut out);
                    // Whatever else is queued joins this turn.
                    while let Ok(ev) = rx.try_recv() {
                        self.handle(ev, &mut out);
                    }
                }
                f = next_frame(self.conn.as_mut().map(|c| &mut c.rd)) => {
                    self.on_read(f, true, &mut out);
                }
                f = next_frame(self.stale.as_mut()) => {
                    self.on_read(f, false, &mut out);
                }
                _ = tick.tick() => {
                    let now = self.now_us();
                    self.core.tick(now, &mut out);
                }
            }
            self.apply(&mut out).await;
        }
    }

    /// Feeds the core a frame read from the current connection (or from the one before it,
    /// whose answers still finish ops), and the frames already read behind it.
    fn on_read(&mut self, first: Option<Frame>, current: bool, out: &mut Vec<ClientAction>) {
        let now = self.now_us();
        let mut next = first;
        for _ in 0..FRAMES_PER_TURN {
            let Some(f) = next else {
                // The connection broke or closed.
                if current {
                    if let Some(c) = self.conn.take() {
                        self.core.on_unreachable(c.to, now, out);
                    }
                } else {
                    self.stale = None;
                }
                return;
            };
            let from = match &self.conn {
                Some(c) if current => c.to,
                _ => STALE,
            };
            self.core.on_frame(from, f, now, out);
            let rd = if current {
                self.conn.as_mut().map(|c| &mut c.rd)
            } else {
                self.stale.as_mut()
            };
            let Some(rd) = rd else { return };
            next = match rd.next().now_or_never() {
                Some(f) => f.and_then(Result::ok),
                None => return,
            };
        }
    }

    fn handle(&mut self, ev: Ev, out: &mut Vec<ClientAction>) {
        let now = self.now_us();
        match ev {
            Ev::Op {
                mask,
                payload,
                stamp,
                reply,
            } => {
                let id = self.core.submit(mask, payload, stamp, now, out);
                self.waiting.insert(id, Waiter::Reply(reply));
            }
            Ev::Read {
                payload,
                min_pos,
                reply,
            } => {
                let id = self.core.submit_read(payload, min_pos, now, out);
                self.waiting.insert(id, Waiter::Reply(reply));
            }
            Ev::Loop { lp, slots, done } => {
                self.looping = Some(Looping {
                    lp,
                    pending: 0,
                    stopped: false,
                    done: Some(done),
                });
                let at = Instant::now();
                for _ in 0..slots {
                    self.loop_next(now, at, out);
                }
                self.loop_maybe_done();
            }
            Ev::StopLoop(reply) => {
                let pending = self.looping.take().map_or(0, |l| l.pending);
                let _ = reply.send(pending);
            }
        }
    }

    /// Sends the loop's next op, if it has one.
    fn loop_next(&mut self, now_us: u64, now: Instant, out: &mut Vec<ClientAction>) {
        let Some(l) = self.looping.as_mut() else {
            return;
        };
        if l.stopped {
            return;
        }
        match l.lp.next_op(now) {
            Some((mask, payload)) => {
                l.pending += 1;
                let id = self.core.submit(mask, payload, false, now_us, out);
                self.waiting.insert(id, Waiter::Loop(now));
            }
            None => l.stopped = true,
        }
    }

    /// Tells the loop's owner once it stopped sending and has nothing unanswered.
    fn loop_maybe_done(&mut self) {
        if let Some(l) = self
            .looping
            .as_mut()
            .filter(|l| l.stopped && l.pending == 0)
        {
            if let Some(done) = l.done.take() {
                let _ = done.send(());
            }
        }
    }

    /// Hands an answer to whoever waits for it; the loop sends its next op at once.
    fn finish(
        &mut self,
        id: u64,
        result: Result<MultiSeq, ClientError>,
        out: &mut Vec<ClientAction>,
    ) {
        match self.waiting.remove(&id) {
            Some(Waiter::Reply(reply)) => {
                let _ = reply.send(result);
            }
            Some(Waiter::Loop(sent)) => {
                let now = Instant::now();
                if let Some(l) = self.looping.as_mut() {
                    l.pending = l.pending.saturating_sub(1);
                    l.lp.answered(sent, now, result);
                    let now_us = self.now_us();
                    self.loop_next(now_us, now, out);
                    self.loop_maybe_done();
                }
            }
            None => {}
        }
    }

    /// Carries out the core's actions (and those they lead to) until none are left.
    async fn apply(&mut self, out: &mut Vec<ClientAction>) {
        let mut acts = Vec::new();
        while !out.is_empty() {
            std::mem::swap(out, &mut acts);
            let moves = self.core.moves();
            for a in acts.drain(..) {
                match a {
                    ClientAction::Done { id, result } => self.finish(id, result, out),
                    // Sent for a replica the core has since left: skip it.
                    ClientAction::Send { to, .. }
                        if to != self.core.current() || moves != self.core.moves() => {}
                    ClientAction::Send { to, frame } => {
                        // Dialling is boxed: its large future would otherwise be part of
                        // (and copied with) every turn's.
                        let ready = self
                            .conn
                            .as_ref()
                            .is_some_and(|c| c.to == to && c.moves == moves);
                        if ready || Box::pin(self.connect(to)).await {
                            if let Some(c) = &self.conn {
                                let _ = c.tx.send(frame);
                            }
                        } else {
                            let now = self.now_us();
                            self.core.on_unreachable(to, now, out);
                        }
                    }
                }
            }
        }
        if out.capacity() < acts.capacity() {
            std::mem::swap(out, &mut acts);
        }
        // Once the core has moved on, drop the old connection at once, as a move should;
        // answers already on their way from it still count.
        let (current, moves) = (self.core.current(), self.core.moves());
        if let Some(c) = self.conn.take_if(|c| c.to != current || c.moves != moves) {
            self.stale = Some(c.rd);
        }
        self.re_tx
            .store(self.core.retransmissions(), Ordering::Relaxed);
    }

    /// Makes sure the connection is to replica `to` and no older than the core's last move.
    async fn connect(&mut self, to: usize) -> bool {
        let moves = self.core.moves();
        if self
            .conn
            .as_ref()
            .is_some_and(|c| c.to == to && c.moves == moves)
        {
            return true;
        }
        if let Some(c) = self.conn.take() {
            self.stale = Some(c.rd);
        }
        let Some(&addr) = self.addrs.get(to) else {
            return false;
        };
        let want = self.peer;
        let c = match dial(
            &*self.transport,
            addr,
            &self.key,
            &self.me,
            |r| r.role_kind() == want,
            MAX_FRAME,
            CONNECT_TIMEOUT,
        )
        .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(client = self.core.client_id(), %addr, error = %e, "cannot connect");
                return false;
            }
        };
        let tx = spawn_writer(c.wr, 64 << 20, Overflow::Drop, addr.to_string());
        self.conn = Some(Conn {
            to,
            moves,
            tx,
            rd: c.rd,
        });
        true
    }
}

/// The next frame from `rd`; `None` when it broke or closed. Pends for ever without one.
async fn next_frame(rd: Option<&mut Reader>) -> Option<Frame> {
    match rd {
        Some(rd) => rd.next().await.and_then(Result::ok),
        None => std::future::pending().await,
    }
}
