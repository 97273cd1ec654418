//! The async shell around [`ClientCore`]: real sockets, a real clock, tokio. It keeps one
//! connection, to the core's current replica, made when the core first sends there (and made
//! afresh each time the core moves on), each starting with the handshake as a client; tells
//! the core when a connection cannot be made or breaks, feeds it the frames that arrive,
//! ticks it, and completes each op's `oneshot`.

use crate::core::{ClientAction, ClientCore, CoreConfig, CoreTarget};
pub use crate::core::{ClientError, MultiSeq};
use bytes::Bytes;
use futures::StreamExt;
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
    Frame(u64, Frame),
    Dead(u64),
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
            events: tx.clone(),
            conn: None,
            gen: 0,
            waiting: HashMap::new(),
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
}

/// The connection to replica `to`, made after the core's `moves`-th move; `gen` tells its
/// frames from those of earlier connections.
struct Conn {
    to: usize,
    moves: u64,
    gen: u64,
    tx: Outbox,
}

struct Driver {
    core: ClientCore,
    addrs: Vec<SocketAddr>,
    transport: Arc<dyn Transport>,
    key: Arc<ClusterKey>,
    me: Role,
    /// What the other end must be.
    peer: RoleKind,
    events: mpsc::UnboundedSender<Ev>,
    conn: Option<Conn>,
    gen: u64,
    waiting: HashMap<u64, Reply>,
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
                ev = rx.recv() => match ev {
                    Some(ev) => self.handle(ev, &mut out),
                    None => return,
                },
                _ = tick.tick() => {
                    let now = self.now_us();
                    self.core.tick(now, &mut out);
                }
            }
            self.apply(&mut out).await;
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
                self.waiting.insert(id, reply);
            }
            Ev::Read {
                payload,
                min_pos,
                reply,
            } => {
                let id = self.core.submit_read(payload, min_pos, now, out);
                self.waiting.insert(id, reply);
            }
            Ev::Frame(gen, f) => {
                let from = match &self.conn {
                    Some(c) if c.gen == gen => c.to,
                    _ => STALE,
                };
                self.core.on_frame(from, f, now, out);
            }
            Ev::Dead(gen) => {
                if let Some(c) = self.conn.take_if(|c| c.gen == gen) {
                    self.core.on_unreachable(c.to, now, out);
                }
            }
        }
    }

    /// Carries out what the core asked for, and what that in turn makes it ask.
    async fn apply(&mut self, out: &mut Vec<ClientAction>) {
        let mut acts = Vec::new();
        while !out.is_empty() {
            std::mem::swap(out, &mut acts);
            let moves = self.core.moves();
            for a in acts.drain(..) {
                match a {
                    ClientAction::Done { id, result } => {
                        if let Some(reply) = self.waiting.remove(&id) {
                            let _ = reply.send(result);
                        }
                    }
                    // A send from before a move: the core re-sends it where it went.
                    ClientAction::Send { to, .. }
                        if to != self.core.current() || moves != self.core.moves() => {}
                    ClientAction::Send { to, frame } => {
                        if self.connect(to).await {
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
        // Once the core has moved on, drop the old connection at once, as a move should.
        let (current, moves) = (self.core.current(), self.core.moves());
        self.conn.take_if(|c| c.to != current || c.moves != moves);
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
        self.conn = None;
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
        self.gen += 1;
        let gen = self.gen;
        let tx = spawn_writer(c.wr, 64 << 20, Overflow::Drop, addr.to_string());
        let events = self.events.clone();
        let mut reader = c.rd;
        tokio::spawn(async move {
            while let Some(Ok(f)) = reader.next().await {
                if events.send(Ev::Frame(gen, f)).is_err() {
                    return;
                }
            }
            let _ = events.send(Ev::Dead(gen));
        });
        self.conn = Some(Conn { to, moves, gen, tx });
        true
    }
}
