//! The gateway's runtime: accepts ZooKeeper clients, drives each connection's
//! [`GwConn`], and runs each session's requests on its own backend session (a
//! [`ZkClient`] over the proxy groups: one proxy session per ZooKeeper session, groups
//! taken in turn).
//!
//! A session's requests reach its backend in the order the client sent them: requests
//! are taken in order, and the ones through the log pipeline, as do local reads among
//! themselves, but a local read waits for the session's earlier ops through the log to
//! be answered, and an op through the log for its earlier local reads (so no read sees a
//! later write of its own session, and every read sees the earlier ones). Replies are
//! written in request order by the connection.
//!
//! Sessions outlive their connections for their timeout: a client that reconnects to
//! this gateway with its session id and password gets its session back (its password is
//! a MAC of the id under the cluster key). A session whose client stays away longer is
//! dropped here; its group closes it through the log once it has been idle for the
//! timeout, deleting its ephemerals. A client's pings keep its backend session alive: a
//! ping when nothing went to the backend for a third of the timeout sends a heartbeat.
//!
//! Watches: a read that sets one, and any reply of a session that watches something, is
//! held until the watch feed of its shard has reached the reply's position, so that the
//! events before it go out first ([`crate::watches`], [`crate::feeds`]; the holding and
//! setWatches are in `server/watching.rs`). A session's watches live as long as its
//! connection: a client that reconnects sets them again (setWatches), as ZooKeeper's do.

use crate::conn::{GwAction, GwConfig, GwConn};
use crate::feeds;
use crate::fourlw;
use crate::watches::{Fired, WatchHub};
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use mason_client::zk::{RawAnswer, ZkClient, ZkError};
use mason_client::ClientPool;
use mason_common::auth::ClusterKey;
use mason_zk::jute::SetWatches;
use mason_zk::{jute, Code, Request, WatchKind, WatchedEvent};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

mod backend;
mod metrics;
mod report;
mod sessions;
mod watching;

/// How a gateway reaches its backend and treats its clients.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Every proxy process, in triples (group `g` lives on triple `g % triples`).
    pub proxies: Vec<SocketAddr>,
    pub groups: u32,
    /// ZK-Mason's shard count (0: RSMKeeper).
    pub shards: u32,
    /// ZK-Mason: every shard server, by shard (their watch feeds); empty for RSMKeeper,
    /// whose feed is group 0's replicas.
    pub zk_servers: Vec<Vec<SocketAddr>>,
    /// Reads of one znode without a watch skip the log (`--zk-reads local`).
    pub local_reads: bool,
    pub key: Arc<ClusterKey>,
    pub conn: GwConfig,
    /// The backend client's retry timeout.
    pub retry_timeout: Duration,
    /// The backend sessions of one group share one client driver and its connections
    /// (`ClientPool`); off: each has its own.
    pub shared_conns: bool,
    /// Tells this gateway's backend clients apart in logs.
    pub gateway_id: u32,
    /// Client connections at once; more are closed as they come.
    pub max_connections: usize,
    /// Fault injection for tests: every watch feed answer is taken this much later (so
    /// replies that must wait for the feeds are seen to wait).
    pub feed_delay: Duration,
}

/// Requests one connection may have taken and not yet answered: past it, the gateway
/// reads nothing more from that client until some are answered (so a client that
/// pipelines without end holds at most this many requests, each within jute.maxbuffer).
const MAX_PENDING: usize = 1024;

/// A ZooKeeper session this gateway holds.
struct Session {
    zk: Arc<ZkClient>,
    timeout_ms: i32,
    /// The connection serving it, if any, and when it was last served.
    conn: Mutex<(Option<u64>, Instant)>,
    /// When the backend last heard from it (any op, or a heartbeat).
    backend_at: Mutex<Instant>,
    /// Where its watch events go: the serving connection's id and inbox.
    notes: Mutex<Option<(u64, mpsc::UnboundedSender<Note>)>>,
}

/// What the watch feeds tell a connection.
enum Note {
    Event(WatchedEvent),
    /// Its session's watches were lost (a gap in a feed): close, so that the client
    /// reconnects and sets them again.
    Lost,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    sent: AtomicU64,
    outstanding: AtomicU64,
    latency_sum_us: AtomicU64,
    latency_n: AtomicU64,
    latency_min_us: AtomicU64,
    latency_max_us: AtomicU64,
    last_zxid: AtomicI64,
}

/// One connection's counters, for `cons` and `stat`.
#[derive(Default)]
struct ConnCounters {
    received: AtomicU64,
    sent: AtomicU64,
    queued: AtomicU64,
    /// The session it serves (0: none yet).
    session: AtomicI64,
}

struct Shared {
    cfg: GatewayConfig,
    addr: String,
    sessions: Mutex<HashMap<i64, Arc<Session>>>,
    /// Each connection's peer and counters (the map is locked only as connections come
    /// and go, and for the four-letter words).
    conns: Mutex<HashMap<u64, (String, Arc<ConnCounters>)>>,
    counters: Counters,
    next_conn: AtomicU64,
    next_client: AtomicU64,
    /// Per group, the driver its backend sessions share (started with the first).
    pools: Mutex<HashMap<u32, ClientPool>>,
    hub: Arc<Mutex<WatchHub>>,
    progress: tokio::sync::watch::Receiver<u64>,
}

/// Hands the events the feeds fire to their sessions' connections.
struct Deliver(Weak<Shared>);

impl feeds::Sink for Deliver {
    fn fired(&self, _shard: u32, fired: Fired) {
        let Some(shared) = self.0.upgrade() else {
            return;
        };
        let Ok(sessions) = shared.sessions.lock() else {
            return;
        };
        let send = |session: i64, note: Note| {
            if let Some(s) = sessions.get(&session) {
                if let Ok(n) = s.notes.lock() {
                    if let Some((_, tx)) = n.as_ref() {
                        let _ = tx.send(note);
                    }
                }
            }
        };
        for (session, event) in fired.events {
            send(session, Note::Event(event));
        }
        for session in fired.lost {
            send(session, Note::Lost);
        }
    }
}

/// Serves ZooKeeper clients on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    cfg: GatewayConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?.to_string();
    let hub = Arc::new(Mutex::new(WatchHub::new(cfg.shards)));
    let (progress_tx, progress) = tokio::sync::watch::channel(0u64);
    let feed_servers = feeds::servers(&cfg.proxies, &cfg.zk_servers);
    let shared = Arc::new(Shared {
        cfg,
        addr,
        hub: hub.clone(),
        progress,
        sessions: Mutex::new(HashMap::new()),
        conns: Mutex::new(HashMap::new()),
        counters: Counters {
            latency_min_us: AtomicU64::new(u64::MAX),
            ..Counters::default()
        },
        next_conn: AtomicU64::new(1),
        next_client: AtomicU64::new(1),
        pools: Mutex::new(HashMap::new()),
    });
    feeds::spawn(
        feed_servers,
        shared.cfg.key.clone(),
        hub,
        Arc::new(Deliver(Arc::downgrade(&shared))),
        progress_tx,
        shared.cfg.feed_delay,
    );
    tokio::spawn(janitor(shared.clone()));
    metrics::spawn_sampler(Arc::downgrade(&shared));
    let slots = Arc::new(tokio::sync::Semaphore::new(
        shared.cfg.max_connections.max(1),
    ));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, "closing connection: too many connections");
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        run_conn(shared, stream, peer).await;
                        drop(slot);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Drops sessions whose client has been away longer than their timeout, those the
/// backend ended, and those their client closed (a connection still answering one keeps
/// it until then; its backend client's slot is freed once no one holds it).
async fn janitor(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Ok(mut sessions) = shared.sessions.lock() else {
            return;
        };
        let mut gone = Vec::new();
        sessions.retain(|id, s| {
            let (conn, since) = s.conn.lock().map(|g| *g).unwrap_or((None, Instant::now()));
            let away = conn.is_none()
                && since.elapsed() > Duration::from_millis(s.timeout_ms.max(0) as u64);
            let keep = !away && !s.zk.is_expired() && !s.zk.is_closed();
            if !keep {
                tracing::info!(session = id, "session dropped by the gateway");
                gone.push(*id);
            }
            keep
        });
        drop(sessions);
        if let Ok(mut hub) = shared.hub.lock() {
            for id in gone {
                hub.drop_session(id);
            }
        }
    }
}

/// What a connection's backend tasks report.
enum Done {
    Opened(Result<(i64, Arc<Session>), String>),
    Answer {
        ticket: u64,
        xid: i32,
        sent_at: Instant,
        result: Result<RawAnswer, ZkError>,
        /// The watch the request asks for, if any.
        watch: Option<(String, WatchKind)>,
    },
    /// The reads a setWatches made, one per watch, in its order.
    Rewatched {
        ticket: u64,
        xid: i32,
        watches: SetWatches,
        reads: Vec<Result<RawAnswer, ZkError>>,
    },
}

type Pending = Pin<Box<dyn std::future::Future<Output = Done> + Send>>;

/// One request taken from the client, waiting for its turn at the backend.
struct Queued {
    ticket: u64,
    xid: i32,
    job: Job,
}

enum Job {
    Request {
        request: Request,
        payload: Bytes,
    },
    /// A reconnected client's watches, to decide (all at once, when nothing else of the
    /// session is at the backend).
    SetWatches(SetWatches),
}

struct ConnTask {
    shared: Arc<Shared>,
    id: u64,
    conn: GwConn,
    session: Option<Arc<Session>>,
    queue: VecDeque<Queued>,
    /// Requests at the backend: how many, and whether they are local reads.
    at_backend: usize,
    local_at_backend: bool,
    counters: Arc<ConnCounters>,
    pending: FuturesUnordered<Pending>,
    closing: Option<String>,
    /// Watch events for this connection's session.
    notes: Option<mpsc::UnboundedReceiver<Note>>,
    /// Replies waiting for the watch feeds (see `watching.rs`).
    held: Vec<watching::Held>,
    progress: tokio::sync::watch::Receiver<u64>,
}

async fn run_conn(shared: Arc<Shared>, mut stream: TcpStream, peer: SocketAddr) {
    let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let counters = Arc::new(ConnCounters::default());
    if let Ok(mut c) = shared.conns.lock() {
        c.insert(id, (peer.to_string(), counters.clone()));
    }
    let mut t = ConnTask {
        conn: GwConn::new(shared.cfg.conn.clone(), peer.ip().to_string()),
        shared: shared.clone(),
        id,
        counters,
        session: None,
        queue: VecDeque::new(),
        at_backend: 0,
        local_at_backend: false,
        pending: FuturesUnordered::new(),
        closing: None,
        notes: None,
        held: Vec::new(),
        progress: shared.progress.clone(),
    };
    let mut buf = vec![0u8; 64 << 10];
    let mut out = Vec::new();
    loop {
        let room = t.conn.pending() < MAX_PENDING;
        tokio::select! {
            n = stream.read(&mut buf), if room => match n {
                Ok(0) => break,
                Ok(n) => t.conn.on_bytes(&buf[..n], &mut out),
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "read failed");
                    break;
                }
            },
            Some(done) = t.pending.next(), if !t.pending.is_empty() => t.on_done(done, &mut out),
            Some(note) = next_note(&mut t.notes) => t.on_note(note, &mut out),
            Ok(()) = t.progress.changed(), if !t.held.is_empty() => t.release(&mut out),
        }
        if !t.carry_out(&mut stream, &mut out).await {
            break;
        }
        t.dispatch();
        if let Some(why) = &t.closing {
            tracing::info!(%peer, session = ?t.conn.session(), why, "closing a client connection");
            break;
        }
    }
    let _ = stream.shutdown().await;
    if let Ok(mut c) = shared.conns.lock() {
        c.remove(&id);
    }
    if let Some(s) = &t.session {
        let mine = s.conn.lock().is_ok_and(|g| g.0 == Some(id));
        if mine {
            if let Ok(mut g) = s.conn.lock() {
                *g = (None, Instant::now());
            }
            if let Ok(mut n) = s.notes.lock() {
                *n = None;
            }
            // Watches belong to the connection: a client that comes back sets them again.
            if let Ok(mut hub) = shared.hub.lock() {
                hub.drop_session(s.zk.session());
            }
        }
    }
    shared.counters.outstanding.fetch_sub(
        t.at_backend as u64 + t.queue.len() as u64,
        Ordering::Relaxed,
    );
}

impl ConnTask {
    /// Carries out the connection's actions; false once the connection is to close.
    async fn carry_out(&mut self, stream: &mut TcpStream, out: &mut Vec<GwAction>) -> bool {
        let mut ok = true;
        for a in out.drain(..) {
            match a {
                GwAction::Write(bytes) => {
                    self.shared.counters.sent.fetch_add(1, Ordering::Relaxed);
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = stream.write_all(&bytes).await {
                        tracing::debug!(error = %e, "write failed");
                        ok = false;
                    }
                }
                GwAction::Open { timeout_ms } => self.open(timeout_ms, None),
                GwAction::Resume {
                    session,
                    passwd,
                    timeout_ms,
                    last_zxid: _,
                } => self.resume(session, &passwd, timeout_ms),
                GwAction::Submit {
                    ticket,
                    request,
                    payload,
                } => {
                    self.shared
                        .counters
                        .received
                        .fetch_add(1, Ordering::Relaxed);
                    self.shared
                        .counters
                        .outstanding
                        .fetch_add(1, Ordering::Relaxed);
                    self.counters.received.fetch_add(1, Ordering::Relaxed);
                    self.counters.queued.fetch_add(1, Ordering::Relaxed);
                    let xid = jute::split_request(&payload).map_or(0, |(h, _)| h.xid);
                    self.queue.push_back(Queued {
                        ticket,
                        xid,
                        job: Job::Request { request, payload },
                    });
                }
                GwAction::SetWatches {
                    ticket,
                    xid,
                    watches,
                } => {
                    self.shared
                        .counters
                        .received
                        .fetch_add(1, Ordering::Relaxed);
                    self.queue.push_back(Queued {
                        ticket,
                        xid,
                        job: Job::SetWatches(watches),
                    });
                }
                GwAction::Ping => {
                    self.shared
                        .counters
                        .received
                        .fetch_add(1, Ordering::Relaxed);
                    self.heartbeat();
                }
                GwAction::FourLetter(word) => {
                    let text = fourlw::answer(word, &self.snapshot());
                    let _ = stream.write_all(text.as_bytes()).await;
                    self.closing = Some(format!("answered {word}"));
                }
                GwAction::Close(why) => {
                    self.closing = Some(why);
                }
            }
        }
        ok
    }
}

/// The ZooKeeper code for a request the backend could not answer.
fn failure_code(e: &ZkError) -> Code {
    match e {
        ZkError::SessionExpired | ZkError::Client(mason_client::ClientError::SessionExpired) => {
            Code::SessionExpired
        }
        ZkError::Client(mason_client::ClientError::Invalid) => Code::MarshallingError,
        _ => Code::SystemError,
    }
}

/// The next watch note, if the connection has a session (else never).
async fn next_note(notes: &mut Option<mpsc::UnboundedReceiver<Note>>) -> Option<Note> {
    match notes {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
