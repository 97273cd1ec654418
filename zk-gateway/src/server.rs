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

use crate::conn::{GwAction, GwConfig, GwConn};
use crate::fourlw::{self, ConnInfo, Snapshot};
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use mason_client::zk::{ZkClient, ZkError};
use mason_client::{Client, ClientConfig, Target};
use mason_common::auth::ClusterKey;
use mason_common::transport::Tcp;
use mason_zk::{jute, Code, Request};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How a gateway reaches its backend and treats its clients.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Every proxy process, in triples (group `g` lives on triple `g % triples`).
    pub proxies: Vec<SocketAddr>,
    pub groups: u32,
    /// ZK-Mason's shard count (0: RSMKeeper).
    pub shards: u32,
    /// Reads of one znode without a watch skip the log (`--zk-reads local`).
    pub local_reads: bool,
    pub key: Arc<ClusterKey>,
    pub conn: GwConfig,
    /// The backend client's retry timeout.
    pub retry_timeout: Duration,
    /// Tells this gateway's backend clients apart in logs.
    pub gateway_id: u32,
    /// Client connections at once; more are closed as they come.
    pub max_connections: usize,
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

impl ConnCounters {
    fn info(&self, peer: &str) -> ConnInfo {
        let session = self.session.load(Ordering::Relaxed);
        ConnInfo {
            peer: peer.to_string(),
            session: (session != 0).then_some(session),
            received: self.received.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed) as usize,
        }
    }
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
}

/// Serves ZooKeeper clients on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    cfg: GatewayConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?.to_string();
    let shared = Arc::new(Shared {
        cfg,
        addr,
        sessions: Mutex::new(HashMap::new()),
        conns: Mutex::new(HashMap::new()),
        counters: Counters {
            latency_min_us: AtomicU64::new(u64::MAX),
            ..Counters::default()
        },
        next_conn: AtomicU64::new(1),
        next_client: AtomicU64::new(1),
    });
    tokio::spawn(janitor(shared.clone()));
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

/// Drops sessions whose client has been away longer than their timeout, and those the
/// backend ended.
async fn janitor(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Ok(mut sessions) = shared.sessions.lock() else {
            return;
        };
        sessions.retain(|id, s| {
            let (conn, since) = s.conn.lock().map(|g| *g).unwrap_or((None, Instant::now()));
            let away = conn.is_none()
                && since.elapsed() > Duration::from_millis(s.timeout_ms.max(0) as u64);
            let keep = !away && !s.zk.is_expired();
            if !keep {
                tracing::info!(session = id, "session dropped by the gateway");
            }
            keep
        });
    }
}

/// What a connection's backend tasks report.
enum Done {
    Opened(Result<(i64, Arc<Session>), String>),
    Answer {
        ticket: u64,
        xid: i32,
        sent_at: Instant,
        result: Result<Bytes, ZkError>,
    },
}

type Pending = Pin<Box<dyn std::future::Future<Output = Done> + Send>>;

/// One request taken from the client, waiting for its turn at the backend.
struct Queued {
    ticket: u64,
    xid: i32,
    request: Request,
    payload: Bytes,
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
        if let Ok(mut g) = s.conn.lock() {
            if g.0 == Some(id) {
                *g = (None, Instant::now());
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
                GwAction::Open { timeout_ms } => self.open(timeout_ms),
                GwAction::Resume {
                    session,
                    passwd,
                    timeout_ms: _,
                    last_zxid: _,
                } => self.resume(session, &passwd),
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
                        request,
                        payload,
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

    /// Opens a new backend session for the client.
    fn open(&mut self, timeout_ms: i32) {
        let cfg = &self.shared.cfg;
        let n = self.shared.next_client.fetch_add(1, Ordering::Relaxed);
        let group = (n % u64::from(cfg.groups.max(1))) as u32;
        let client = Client::start(
            Arc::new(Tcp),
            ClientConfig {
                client_id: (u64::from(cfg.gateway_id) << 32) | n,
                target: Target::Group {
                    group,
                    replicas: mason_client::group_replicas(&cfg.proxies, group),
                },
                retry_timeout: cfg.retry_timeout,
                window: 1024,
                key: cfg.key.clone(),
            },
        );
        let (shards, local) = (cfg.shards, cfg.local_reads);
        let shared = self.shared.clone();
        let conn_id = self.id;
        self.pending.push(Box::pin(async move {
            let opened = tokio::time::timeout(
                Duration::from_secs(10),
                ZkClient::connect_sharded(client, timeout_ms, shards),
            )
            .await;
            let zk = match opened {
                Ok(Ok(zk)) => Arc::new(zk.with_local_reads(local)),
                Ok(Err(e)) => return Done::Opened(Err(format!("no session: {e}"))),
                Err(_) => return Done::Opened(Err("no session within 10 s".into())),
            };
            let id = zk.session();
            let s = Arc::new(Session {
                zk,
                timeout_ms,
                conn: Mutex::new((Some(conn_id), Instant::now())),
                backend_at: Mutex::new(Instant::now()),
            });
            if let Ok(mut t) = shared.sessions.lock() {
                t.insert(id, s.clone());
            }
            Done::Opened(Ok((id, s)))
        }));
    }

    /// A reconnect: the session is given back if this gateway holds it, it is alive, and
    /// the password is right.
    fn resume(&mut self, session: i64, passwd: &[u8]) {
        let held = self
            .shared
            .sessions
            .lock()
            .ok()
            .and_then(|t| t.get(&session).cloned());
        let right = self.shared.cfg.key.check_session_password(session, passwd);
        let result = match held {
            Some(s) if right && !s.zk.is_expired() => {
                if let Ok(mut g) = s.conn.lock() {
                    *g = (Some(self.id), Instant::now());
                }
                Ok((session, s))
            }
            Some(_) if !right => Err("wrong session password".to_string()),
            _ => Err(format!(
                "session {session:#x} is not held here (expired or unknown)"
            )),
        };
        self.pending
            .push(Box::pin(async move { Done::Opened(result) }));
    }

    /// A client ping: if the backend has not heard from the session for a third of its
    /// timeout, a heartbeat goes.
    fn heartbeat(&mut self) {
        let Some(s) = self.session.clone() else {
            return;
        };
        let quiet = s.backend_at.lock().map(|t| t.elapsed()).unwrap_or_default();
        if quiet < Duration::from_millis(s.timeout_ms.max(0) as u64 / 3) {
            return;
        }
        if let Ok(mut t) = s.backend_at.lock() {
            *t = Instant::now();
        }
        tokio::spawn(async move {
            if let Err(e) = s.zk.heartbeat().await {
                tracing::debug!(session = s.zk.session(), error = %e, "heartbeat failed");
            }
        });
    }

    fn on_done(&mut self, done: Done, out: &mut Vec<GwAction>) {
        match done {
            Done::Opened(Ok((id, s))) => {
                let passwd = Bytes::copy_from_slice(&self.shared.cfg.key.session_password(id));
                let (timeout, zxid) = (s.timeout_ms, s.zk.last_zxid());
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
            } => {
                self.at_backend = self.at_backend.saturating_sub(1);
                if self.at_backend == 0 {
                    self.local_at_backend = false;
                }
                self.shared
                    .counters
                    .outstanding
                    .fetch_sub(1, Ordering::Relaxed);
                self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                let c = &self.shared.counters;
                let us = sent_at.elapsed().as_micros() as u64;
                c.latency_sum_us.fetch_add(us, Ordering::Relaxed);
                c.latency_n.fetch_add(1, Ordering::Relaxed);
                c.latency_min_us.fetch_min(us, Ordering::Relaxed);
                c.latency_max_us.fetch_max(us, Ordering::Relaxed);
                match result {
                    Ok(reply) => {
                        if let Ok((h, _)) = jute::split_reply(&reply) {
                            c.last_zxid.fetch_max(h.zxid, Ordering::Relaxed);
                        }
                        self.conn.answer(ticket, reply, out);
                    }
                    Err(e) => {
                        let code = match e {
                            ZkError::SessionExpired
                            | ZkError::Client(mason_client::ClientError::SessionExpired) => {
                                Code::SessionExpired
                            }
                            ZkError::Client(mason_client::ClientError::Invalid) => {
                                Code::MarshallingError
                            }
                            _ => Code::SystemError,
                        };
                        tracing::debug!(xid, error = %e, "a request failed at the backend");
                        self.conn.fail(ticket, xid, code, out);
                    }
                }
            }
        }
    }

    /// Starts the queued requests whose turn it is (see the module's notes on order).
    fn dispatch(&mut self) {
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
            let local = s.zk.reads_locally(&q.request);
            if self.at_backend > 0 && local != self.local_at_backend {
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
            let answer = s.zk.start_raw(&q.request, q.payload);
            let (ticket, xid, sent_at) = (q.ticket, q.xid, Instant::now());
            self.pending.push(Box::pin(async move {
                Done::Answer {
                    ticket,
                    xid,
                    sent_at,
                    result: answer.await,
                }
            }));
        }
    }

    fn snapshot(&self) -> Snapshot {
        let c = &self.shared.counters;
        let n = c.latency_n.load(Ordering::Relaxed);
        let cfg = &self.shared.cfg;
        Snapshot {
            client_addr: self.shared.addr.clone(),
            connections: self
                .shared
                .conns
                .lock()
                .map(|m| m.values().map(|(peer, c)| c.info(peer)).collect())
                .unwrap_or_default(),
            sessions: self.shared.sessions.lock().map(|m| m.len()).unwrap_or(0),
            received: c.received.load(Ordering::Relaxed),
            sent: c.sent.load(Ordering::Relaxed),
            outstanding: c.outstanding.load(Ordering::Relaxed),
            latency_min_ms: if n == 0 {
                0
            } else {
                c.latency_min_us.load(Ordering::Relaxed) / 1000
            },
            latency_avg_ms: if n == 0 {
                0.0
            } else {
                c.latency_sum_us.load(Ordering::Relaxed) as f64 / n as f64 / 1000.0
            },
            latency_max_ms: c.latency_max_us.load(Ordering::Relaxed) / 1000,
            last_zxid: c.last_zxid.load(Ordering::Relaxed),
            min_timeout_ms: cfg.conn.min_timeout_ms,
            max_timeout_ms: cfg.conn.max_timeout_ms,
            max_buffer: cfg.conn.max_buffer,
            backend: if cfg.shards == 0 {
                "rsmkeeper".into()
            } else {
                format!("zkmason ({} shards)", cfg.shards)
            },
        }
    }
}
