//! The one connection layer every role uses: accepted connections ([`serve`]) and
//! reconnecting outgoing links ([`spawn_link`]), both starting with the handshake of
//! [`crate::auth`] and both framed by [`FrameCodec`].
//!
//! - **Who**: a connection's role comes from its handshake; the role's [`Handler`] decides
//!   whether that role may use this port and how large its frames may be, and closes the
//!   connection (with a logged reason) on any frame that role may not send.
//! - **How many**: at most `max_handshakes` connections may be in their handshake at once
//!   (each for at most `handshake_timeout`), and at most `max_conns` past it.
//! - **How much**: every outgoing queue is bounded in bytes ([`Outbox`]): an accepted
//!   connection whose peer stops reading is closed once its queue passes the bound; a link
//!   drops what does not fit (its protocols re-send). Reading never reserves more than
//!   what arrived (see [`crate::codec`]).

use crate::auth::{self, ClusterKey, Role};
use crate::codec::{CodecError, FrameCodec, Outgoing, READ_BUFFER};
use crate::msg::{Body, Frame};
use crate::transport::{Connection, Listener, Transport};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

/// Identifies one accepted connection within a process.
pub type ConnId = u64;

/// What an outgoing queue does when a frame would take it past its bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Close the connection: its peer is not reading (clients, watchers, anyone accepted).
    Disconnect,
    /// Drop the frame (links to peers whose protocols re-send: Raft, the sequencer's).
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("the connection is closed")]
    Closed,
    #[error("the outgoing queue is full")]
    Full,
}

struct OutboxInner {
    tx: mpsc::UnboundedSender<(usize, Outgoing)>,
    queued: AtomicUsize,
    limit: usize,
    policy: Overflow,
    /// Set with `closed` (a flag is cheaper to check per frame than the token).
    shut: AtomicBool,
    closed: CancellationToken,
    peer: String,
}

impl OutboxInner {
    fn shut(&self) {
        self.shut.store(true, Ordering::Relaxed);
        self.closed.cancel();
    }
}

/// The sending side of one connection's bounded outgoing queue; cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<OutboxInner>,
}

/// The receiving side, held by the task that writes to the socket.
pub struct OutboxRx {
    rx: mpsc::UnboundedReceiver<(usize, Outgoing)>,
    inner: Arc<OutboxInner>,
}

/// A queue of at most `limit` bytes of frames to `peer`.
pub fn outbox(limit: usize, policy: Overflow, peer: String) -> (Outbox, OutboxRx) {
    let (tx, rx) = mpsc::unbounded_channel();
    let inner = Arc::new(OutboxInner {
        tx,
        queued: AtomicUsize::new(0),
        limit,
        policy,
        shut: AtomicBool::new(false),
        closed: CancellationToken::new(),
        peer,
    });
    (
        Outbox {
            inner: inner.clone(),
        },
        OutboxRx { rx, inner },
    )
}

impl Outbox {
    /// Queues one frame (encoded by the writer, straight into its buffer).
    pub fn send(&self, frame: Frame) -> Result<(), SendError> {
        let len = prost::Message::encoded_len(&frame);
        self.queue(Outgoing::Frame(frame, len))
    }

    /// Queues one frame given as its encoded body (encode once, send to many).
    pub fn send_body(&self, body: Bytes) -> Result<(), SendError> {
        self.queue(Outgoing::Body(body))
    }

    fn queue(&self, o: Outgoing) -> Result<(), SendError> {
        let i = &self.inner;
        if i.shut.load(Ordering::Relaxed) {
            return Err(SendError::Closed);
        }
        let n = o.wire_len();
        let queued = i.queued.fetch_add(n, Ordering::Relaxed) + n;
        // One frame larger than the bound still goes out alone (a snapshot, say).
        if queued > i.limit && queued > n {
            i.queued.fetch_sub(n, Ordering::Relaxed);
            return match i.policy {
                Overflow::Drop => Err(SendError::Full),
                Overflow::Disconnect => {
                    tracing::warn!(
                        peer = %i.peer,
                        queued,
                        limit = i.limit,
                        "closing connection: its outgoing queue passed the bound (the peer is not reading)"
                    );
                    i.shut();
                    Err(SendError::Closed)
                }
            };
        }
        i.tx.send((n, o)).map_err(|_| {
            i.queued.fetch_sub(n, Ordering::Relaxed);
            SendError::Closed
        })
    }

    /// Closes the connection (its tasks end, the socket is shut down).
    pub fn close(&self) {
        self.inner.shut();
    }

    pub fn is_closed(&self) -> bool {
        self.inner.shut.load(Ordering::Relaxed) || self.inner.tx.is_closed()
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.inner.queued.load(Ordering::Relaxed)
    }

    pub fn peer(&self) -> &str {
        &self.inner.peer
    }
}

impl OutboxRx {
    /// The next frame to write (taken off the count of queued bytes). Closing is seen by
    /// [`write_loop`], which stops waiting here.
    async fn recv(&mut self) -> Option<Outgoing> {
        let (n, o) = self.rx.recv().await?;
        self.written(n);
        Some(o)
    }

    fn try_recv(&mut self) -> Option<Outgoing> {
        let (n, o) = self.rx.try_recv().ok()?;
        self.written(n);
        Some(o)
    }

    /// The next queued frame, if any (for tests that stand in for a socket).
    pub fn try_next(&mut self) -> Option<Outgoing> {
        self.try_recv()
    }

    fn written(&self, n: usize) {
        self.inner.queued.fetch_sub(n, Ordering::Relaxed);
    }

    /// Drops everything queued (a link that is down).
    fn discard(&mut self) {
        while self.try_recv().is_some() {}
    }

    fn closed(&self) -> CancellationToken {
        self.inner.closed.clone()
    }
}

/// Writes what is queued, many frames per write, until the queue closes or a write fails.
/// Closing the queue also abandons a write in progress: a peer that does not read must
/// not hold its connection open.
async fn write_loop<W: AsyncWrite + Unpin>(
    wr: &mut FramedWrite<W, FrameCodec>,
    rx: &mut OutboxRx,
) -> Result<(), CodecError> {
    let closed = rx.closed();
    tokio::select! {
        r = write_all_queued(wr, rx) => r,
        _ = closed.cancelled() => Ok(()),
    }
}

async fn write_all_queued<W: AsyncWrite + Unpin>(
    wr: &mut FramedWrite<W, FrameCodec>,
    rx: &mut OutboxRx,
) -> Result<(), CodecError> {
    while let Some(o) = rx.recv().await {
        wr.feed(o).await?;
        while wr.write_buffer().len() < COALESCE {
            let Some(o) = rx.try_recv() else { break };
            wr.feed(o).await?;
        }
        SinkExt::<Outgoing>::flush(wr).await?;
    }
    Ok(())
}

/// Frames queued while a write is in progress go out together, up to this many bytes.
const COALESCE: usize = 256 << 10;

/// At most this many "closing connection" warnings a second per process; the rest are
/// counted and reported with the next one, so that a flood of garbage costs little.
struct LogLimit {
    second: AtomicU64,
    count: AtomicU64,
    suppressed: AtomicU64,
}

static CLOSE_LOG: LogLimit = LogLimit {
    second: AtomicU64::new(0),
    count: AtomicU64::new(0),
    suppressed: AtomicU64::new(0),
};
const CLOSE_LOGS_PER_SECOND: u64 = 100;

/// Logs why a connection closes (rate-limited).
pub fn log_close(peer: &str, why: &dyn std::fmt::Display) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if CLOSE_LOG.second.swap(now, Ordering::Relaxed) != now {
        CLOSE_LOG.count.store(0, Ordering::Relaxed);
    }
    if CLOSE_LOG.count.fetch_add(1, Ordering::Relaxed) < CLOSE_LOGS_PER_SECOND {
        let more = CLOSE_LOG.suppressed.swap(0, Ordering::Relaxed);
        if more > 0 {
            tracing::warn!(%peer, %why, suppressed = more, "closing connection (and {more} more not logged)");
        } else {
            tracing::warn!(%peer, %why, "closing connection");
        }
    } else {
        CLOSE_LOG.suppressed.fetch_add(1, Ordering::Relaxed);
    }
}

/// How a process accepts connections.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub key: Arc<ClusterKey>,
    /// This process's role, told to every connector.
    pub me: Role,
    /// Connections past their handshake at once; more are refused.
    pub max_conns: usize,
    /// Connections in their handshake at once; more are refused.
    pub max_handshakes: usize,
    pub handshake_timeout: Duration,
    /// Bytes queued for one connection before it is closed.
    pub out_limit: usize,
}

impl ServeConfig {
    pub fn new(key: Arc<ClusterKey>, me: Role) -> ServeConfig {
        ServeConfig {
            key,
            me,
            max_conns: 4096,
            max_handshakes: 256,
            handshake_timeout: Duration::from_secs(3),
            out_limit: 8 << 20,
        }
    }
}

/// One accepted connection, as its handler sees it.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub id: ConnId,
    pub role: Role,
    pub peer: String,
}

/// A role's side of its accepted connections. Frames of one connection are handled in
/// order; `frame` may wait (a bounded inbox pushes back on that connection only).
pub trait Handler: Send + Sync + 'static {
    /// Whether `role` may connect here: the largest frame it may send, or why not.
    fn admit(&self, role: &Role) -> Result<usize, String>;
    /// The connection is established; `out` sends to it.
    fn open(&self, conn: &ConnInfo, out: Outbox) -> impl Future<Output = ()> + Send;
    /// One frame from the connection (`out` sends to it); an error closes it, with the
    /// reason logged.
    fn frame(
        &self,
        conn: &ConnInfo,
        out: &Outbox,
        body: Body,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// The connection closed.
    fn close(&self, conn: &ConnInfo) -> impl Future<Output = ()> + Send;
}

/// Accepts connections forever.
pub async fn serve<H: Handler>(mut listener: Box<dyn Listener>, cfg: ServeConfig, handler: Arc<H>) {
    let cfg = Arc::new(cfg);
    let handshakes = Arc::new(Semaphore::new(cfg.max_handshakes));
    let per_host = Arc::new(std::sync::Mutex::new(HashMap::<String, usize>::new()));
    let conns = Arc::new(Semaphore::new(cfg.max_conns));
    let mut next: ConnId = 1;
    loop {
        let conn = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // One host cannot take every handshake slot: at most a quarter of them.
        let host = host_of(&conn.peer);
        let Some(pending) = PendingHost::enter(&per_host, host, cfg.max_handshakes / 4) else {
            log_close(
                &conn.peer,
                &"too many connections from this host in their handshake",
            );
            continue;
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            log_close(&conn.peer, &"too many connections in their handshake");
            continue;
        };
        let id = next;
        next += 1;
        let (cfg, conns, handler) = (cfg.clone(), conns.clone(), handler.clone());
        tokio::spawn(async move {
            let peer = conn.peer.clone();
            let mut rd = FramedRead::with_capacity(
                conn.read,
                FrameCodec::new(auth::HANDSHAKE_MAX_FRAME),
                READ_BUFFER,
            );
            let mut wr = FramedWrite::new(conn.write, FrameCodec::new(auth::HANDSHAKE_MAX_FRAME));
            let shake = tokio::time::timeout(
                cfg.handshake_timeout,
                auth::accept(&mut rd, &mut wr, &cfg.key, &cfg.me),
            )
            .await
            .unwrap_or(Err(auth::HandshakeError::Timeout));
            drop((permit, pending));
            let role = match shake {
                Ok(r) => r,
                Err(auth::HandshakeError::Silent) => {
                    return tracing::debug!(%peer, "a connection closed before its handshake")
                }
                Err(e) => return log_close(&peer, &format!("handshake: {e}")),
            };
            let max = match handler.admit(&role) {
                Ok(m) => m,
                Err(why) => {
                    return log_close(&peer, &format!("{role} may not connect here: {why}"))
                }
            };
            let Ok(_slot) = conns.try_acquire_owned() else {
                return log_close(&peer, &"the connection cap is reached");
            };
            rd.decoder_mut().set_max(max);
            wr.encoder_mut().set_max(usize::MAX);
            let info = ConnInfo { id, role, peer };
            run_accepted(rd, wr, info, &cfg, &*handler).await;
        });
    }
}

/// The host part of a peer's `host:port` (or all of it).
fn host_of(peer: &str) -> String {
    peer.rsplit_once(':').map_or(peer, |(h, _)| h).to_string()
}

/// A connection of `host` in its handshake; counted until dropped.
struct PendingHost {
    map: Arc<std::sync::Mutex<HashMap<String, usize>>>,
    host: String,
}

impl PendingHost {
    fn enter(
        map: &Arc<std::sync::Mutex<HashMap<String, usize>>>,
        host: String,
        max: usize,
    ) -> Option<PendingHost> {
        let mut m = map.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(host.clone()).or_insert(0);
        if *n >= max.max(1) {
            return None;
        }
        *n += 1;
        Some(PendingHost {
            map: map.clone(),
            host,
        })
    }
}

impl Drop for PendingHost {
    fn drop(&mut self) {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.host) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.host);
            }
        }
    }
}

async fn run_accepted<H, R, W>(
    mut rd: FramedRead<R, FrameCodec>,
    mut wr: FramedWrite<W, FrameCodec>,
    info: ConnInfo,
    cfg: &ServeConfig,
    handler: &H,
) where
    H: Handler,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (out, mut orx) = outbox(cfg.out_limit, Overflow::Disconnect, info.peer.clone());
    let closed = orx.closed();
    let peer = info.peer.clone();
    let writer = tokio::spawn(async move {
        if let Err(e) = write_loop(&mut wr, &mut orx).await {
            tracing::debug!(%peer, error = %e, "write failed; closing connection");
        }
        orx.inner.shut();
        let _ = wr.get_mut().shutdown().await;
    });
    handler.open(&info, out.clone()).await;
    let cancelled = closed.cancelled();
    tokio::pin!(cancelled);
    loop {
        let next = tokio::select! {
            f = rd.next() => f,
            _ = &mut cancelled => break,
        };
        match next {
            None => break,
            Some(Err(e)) => {
                log_close(&info.peer, &format!("from {}: {e}", info.role));
                break;
            }
            Some(Ok(Frame { body: None })) => {
                log_close(&info.peer, &"an empty frame");
                break;
            }
            Some(Ok(Frame { body: Some(b) })) => {
                if let Err(why) = handler.frame(&info, &out, b).await {
                    log_close(&info.peer, &format!("from {}: {why}", info.role));
                    break;
                }
            }
        }
    }
    out.close();
    handler.close(&info).await;
    let _ = writer.await;
}

/// One established outgoing connection, past its handshake.
pub struct Dialed {
    pub rd: FramedRead<crate::transport::BoxRead, FrameCodec>,
    pub wr: FramedWrite<crate::transport::BoxWrite, FrameCodec>,
    /// The role the acceptor proved.
    pub peer: Role,
    pub addr: SocketAddr,
}

/// Connects to `addr` as `me` and runs the handshake (both within `timeout`); the peer
/// must prove a role for which `expect` holds. Frames from it may be up to `max_frame`.
pub async fn dial(
    transport: &dyn Transport,
    addr: SocketAddr,
    key: &ClusterKey,
    me: &Role,
    expect: impl Fn(&Role) -> bool,
    max_frame: usize,
    timeout: Duration,
) -> Result<Dialed, String> {
    let c: Connection = tokio::time::timeout(timeout, transport.connect(addr))
        .await
        .map_err(|_| format!("connecting to {addr} timed out"))?
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let mut rd = FramedRead::with_capacity(
        c.read,
        FrameCodec::new(auth::HANDSHAKE_MAX_FRAME),
        READ_BUFFER,
    );
    let mut wr = FramedWrite::new(c.write, FrameCodec::new(auth::HANDSHAKE_MAX_FRAME));
    let peer = tokio::time::timeout(timeout, auth::connect(&mut rd, &mut wr, key, me))
        .await
        .map_err(|_| format!("{addr}: {}", auth::HandshakeError::Timeout))?
        .map_err(|e| format!("{addr}: {e}"))?;
    if !expect(&peer) {
        return Err(format!(
            "{addr} is a {peer}, not what this connection is for"
        ));
    }
    rd.decoder_mut().set_max(max_frame);
    wr.encoder_mut().set_max(usize::MAX);
    Ok(Dialed { rd, wr, peer, addr })
}

/// Spawns a task that writes what is queued on the returned [`Outbox`] to `wr` (at most
/// `limit` bytes queued; past it, `policy` applies), until it closes or a write fails.
pub fn spawn_writer<W>(
    mut wr: FramedWrite<W, FrameCodec>,
    limit: usize,
    policy: Overflow,
    peer: String,
) -> Outbox
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (out, mut rx) = outbox(limit, policy, peer);
    tokio::spawn(async move {
        if let Err(e) = write_loop(&mut wr, &mut rx).await {
            tracing::debug!(peer = %rx.inner.peer, error = %e, "write failed; closing connection");
        }
        rx.inner.shut();
        let _ = wr.get_mut().shutdown().await;
    });
    out
}

/// A link's side of the frames it receives.
pub trait LinkHandler: Send + Sync + 'static {
    /// The first frame on every (re)established link, before anything queued.
    fn hello(&self) -> Option<Frame> {
        None
    }
    /// The link is (re)established with a peer of role `peer`; `out` is the link's queue.
    fn up(&self, peer: &Role, out: &Outbox) -> impl Future<Output = ()> + Send;
    /// One frame from the peer; an error breaks the link (it reconnects).
    fn frame(&self, body: Body) -> impl Future<Output = Result<(), String>> + Send;
}

/// A link that receives nothing: any frame breaks it.
pub struct SendOnly;

impl LinkHandler for SendOnly {
    async fn up(&self, _: &Role, _: &Outbox) {}
    async fn frame(&self, _: Body) -> Result<(), String> {
        Err("a frame on a send-only link".into())
    }
}

/// How a process keeps one outgoing link.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    pub key: Arc<ClusterKey>,
    pub me: Role,
    /// The role the peer must prove (a link to anything else is closed).
    pub peer: Role,
    /// The largest frame accepted from the peer.
    pub max_frame: usize,
    /// Bytes queued before frames are dropped.
    pub out_limit: usize,
    /// Wait this long before connecting again.
    pub retry: Duration,
    pub connect_timeout: Duration,
}

impl LinkConfig {
    pub fn new(key: Arc<ClusterKey>, me: Role, peer: Role, max_frame: usize) -> LinkConfig {
        LinkConfig {
            key,
            me,
            peer,
            max_frame,
            out_limit: 64 << 20,
            retry: Duration::from_millis(20),
            connect_timeout: Duration::from_secs(2),
        }
    }
}

/// A connection to `addr` that is made again whenever it breaks. Frames sent while it is
/// down are dropped (the protocols on links re-send). Returns the link's queue.
pub fn spawn_link<H: LinkHandler>(
    transport: Arc<dyn Transport>,
    addr: SocketAddr,
    cfg: LinkConfig,
    handler: Arc<H>,
) -> Outbox {
    let (out, mut rx) = outbox(cfg.out_limit, Overflow::Drop, addr.to_string());
    let link = out.clone();
    tokio::spawn(async move {
        let mut failures = 0u64;
        while !link.is_closed() {
            let want = cfg.peer.clone();
            let dialed = dial(
                &*transport,
                addr,
                &cfg.key,
                &cfg.me,
                |p| *p == want,
                cfg.max_frame,
                cfg.connect_timeout,
            )
            .await;
            match dialed {
                Ok(mut d) => {
                    failures = 0;
                    let hello = match handler.hello() {
                        Some(h) => d.wr.send(&h).await.map_err(|e| e.to_string()),
                        None => Ok(()),
                    };
                    if let Err(e) = hello {
                        tracing::debug!(%addr, error = %e, "the link broke at once");
                        rx.discard();
                        tokio::time::sleep(cfg.retry).await;
                        continue;
                    }
                    handler.up(&cfg.peer, &link).await;
                    if let Some(why) = run_link(d.rd, d.wr, &mut rx, &*handler).await {
                        tracing::warn!(%addr, peer = %cfg.peer, %why, "link broken; reconnecting");
                    }
                }
                Err(e) => {
                    failures += 1;
                    // Say so once, then only now and then (the peer may be down for long).
                    if failures == 1 || failures.is_multiple_of(500) {
                        tracing::debug!(%addr, peer = %cfg.peer, error = %e, failures, "cannot link");
                    }
                }
            }
            rx.discard();
            tokio::time::sleep(cfg.retry).await;
        }
    });
    out
}

/// Runs one established link until it breaks (the reason) or its queue closes (None).
async fn run_link<H: LinkHandler>(
    mut rd: FramedRead<crate::transport::BoxRead, FrameCodec>,
    mut wr: FramedWrite<crate::transport::BoxWrite, FrameCodec>,
    rx: &mut OutboxRx,
    handler: &H,
) -> Option<String> {
    let reading = async {
        loop {
            match rd.next().await {
                None => return "the peer closed it".to_string(),
                Some(Err(e)) => return e.to_string(),
                Some(Ok(Frame { body: None })) => return "an empty frame".to_string(),
                Some(Ok(Frame { body: Some(b) })) => {
                    if let Err(why) = handler.frame(b).await {
                        return why;
                    }
                }
            }
        }
    };
    tokio::select! {
        why = reading => Some(why),
        r = write_loop(&mut wr, rx) => match r {
            Ok(()) => None,
            Err(e) => Some(e.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Tcp;
    use std::sync::atomic::AtomicUsize;

    /// Takes clients, echoes nothing, counts frames.
    struct Count(AtomicUsize);

    impl Handler for Count {
        fn admit(&self, role: &Role) -> Result<usize, String> {
            match role.role_kind() {
                crate::auth::RoleKind::Client => Ok(1024),
                _ => Err("clients only".into()),
            }
        }
        async fn open(&self, _: &ConnInfo, _: Outbox) {}
        async fn frame(&self, _: &ConnInfo, _: &Outbox, _: Body) -> Result<(), String> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        async fn close(&self, _: &ConnInfo) {}
    }

    async fn server(key: &ClusterKey, max_handshakes: usize) -> SocketAddr {
        let l = Tcp.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut cfg = ServeConfig::new(Arc::new(key.clone()), Role::sequencer(0));
        cfg.max_handshakes = max_handshakes;
        tokio::spawn(serve(l, cfg, Arc::new(Count(AtomicUsize::new(0)))));
        addr
    }

    async fn from(src: &str, to: SocketAddr) -> tokio::net::TcpStream {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(format!("{src}:0").parse().unwrap()).unwrap();
        s.connect(to).await.unwrap()
    }

    /// One host that opens connections and never finishes their handshakes holds at most
    /// a quarter of the slots: others still get in.
    #[tokio::test]
    async fn one_host_cannot_take_every_handshake_slot() {
        use tokio::io::AsyncReadExt;
        let key = ClusterKey::generate();
        let addr = server(&key, 16).await;
        let mut idle = Vec::new();
        for _ in 0..4 {
            idle.push(from("127.0.0.1", addr).await);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The fifth from the same host is refused at once.
        let mut fifth = from("127.0.0.1", addr).await;
        let mut b = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_secs(1), fifth.read(&mut b)).await;
        assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "not refused: {r:?}");
        // So is a client of that host that would finish its handshake; another host's
        // gets through.
        let transport = Tcp;
        let d = dial(
            &transport,
            addr,
            &key,
            &Role::client(1),
            |r| *r == Role::sequencer(0),
            1024,
            Duration::from_secs(2),
        )
        .await;
        assert!(d.is_err(), "127.0.0.1 has no slot left");
        let (r, w) = from("127.0.0.2", addr).await.into_split();
        let mut rd = FramedRead::new(r, FrameCodec::new(auth::HANDSHAKE_MAX_FRAME));
        let mut wr = FramedWrite::new(w, FrameCodec::new(auth::HANDSHAKE_MAX_FRAME));
        let peer = auth::connect(&mut rd, &mut wr, &key, &Role::client(1)).await;
        assert_eq!(peer.unwrap(), Role::sequencer(0));
        drop(idle);
    }

    /// A frame larger than an empty queue's bound goes out alone; a second is refused.
    #[test]
    fn one_oversized_frame_fits_an_empty_queue() {
        let (o, mut rx) = outbox(100, Overflow::Drop, "p".into());
        assert!(o.send_body(Bytes::from(vec![0u8; 500])).is_ok());
        assert_eq!(
            o.send_body(Bytes::from(vec![0u8; 10])),
            Err(SendError::Full)
        );
        assert!(rx.try_next().is_some());
        assert_eq!(o.queued(), 0);
        assert!(o.send_body(Bytes::from(vec![0u8; 10])).is_ok());
    }
}
