//! The accepting side: every connection's handshake (bounded in number, per host and in
//! time), its role's admission and frame limit, then its frames handed to the role's
//! [`Handler`] in order, with a bounded [`Outbox`] for what goes back.

use super::outbox::{outbox, write_loop, Outbox, Overflow};
use super::ConnId;
use crate::auth::{self, ClusterKey, Role};
use crate::codec::{FrameCodec, READ_BUFFER};
use crate::msg::{Body, Frame};
use crate::transport::Listener;
use futures::FutureExt;
use futures::StreamExt;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio_util::codec::{FramedRead, FramedWrite};

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
    /// The frames that had arrived together on the connection, in order (at most
    /// [`MAX_FRAMES_AT_ONCE`]): by default one [`Handler::frame`] call each. A handler may
    /// take them at once (one hand-off to its role's task instead of one per frame). An
    /// error closes the connection; the frames before the one refused have been taken.
    fn frames(
        &self,
        conn: &ConnInfo,
        out: &Outbox,
        bodies: Vec<Body>,
    ) -> impl Future<Output = Result<(), String>> + Send {
        async move {
            for b in bodies {
                self.frame(conn, out, b).await?;
            }
            Ok(())
        }
    }
    /// The connection closed.
    fn close(&self, conn: &ConnInfo) -> impl Future<Output = ()> + Send;
}

/// Frames read from one connection and handed to its handler together, at most.
pub const MAX_FRAMES_AT_ONCE: usize = 64;

/// Accepts connections forever.
pub async fn serve<H: Handler>(mut listener: Box<dyn Listener>, cfg: ServeConfig, handler: Arc<H>) {
    let cfg = Arc::new(cfg);
    let handshakes = Arc::new(Semaphore::new(cfg.max_handshakes));
    let per_host = Arc::new(std::sync::Mutex::new(HashMap::<String, usize>::new()));
    let conns = Arc::new(Semaphore::new(cfg.max_conns));
    let open = crate::metrics::gauge(
        "mason_connections_open",
        "Accepted connections past their handshake, open now.",
    );
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
        let (cfg, conns, handler, open) =
            (cfg.clone(), conns.clone(), handler.clone(), open.clone());
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
            open.inc();
            run_accepted(rd, wr, info, &cfg, &*handler).await;
            open.dec();
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
        orx.shut();
        let _ = wr.get_mut().shutdown().await;
    });
    handler.open(&info, out.clone()).await;
    let cancelled = closed.cancelled();
    tokio::pin!(cancelled);
    let mut held = None;
    loop {
        let next = match held.take() {
            Some(n) => n,
            None => tokio::select! {
                f = rd.next() => f,
                _ = &mut cancelled => break,
            },
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
                // With it, the frames already read and decodable, without waiting; what
                // is not a frame (an error, the end) is held for the next turn.
                let mut bodies = vec![b];
                while bodies.len() < MAX_FRAMES_AT_ONCE {
                    match rd.next().now_or_never() {
                        Some(Some(Ok(Frame { body: Some(b) }))) => bodies.push(b),
                        Some(other) => {
                            held = Some(other);
                            break;
                        }
                        None => break,
                    }
                }
                if let Err(why) = handler.frames(&info, &out, bodies).await {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::dial;
    use crate::transport::{Tcp, Transport};
    use std::net::SocketAddr;
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

    /// Records the groups of the heartbeats it takes, and how many came in each hand-off;
    /// refuses a heartbeat for group 999.
    struct Batches(
        std::sync::Mutex<(Vec<u32>, Vec<usize>)>,
        tokio::sync::Notify,
    );

    impl Handler for Batches {
        fn admit(&self, _: &Role) -> Result<usize, String> {
            Ok(1024)
        }
        async fn open(&self, _: &ConnInfo, _: Outbox) {}
        async fn frame(&self, _: &ConnInfo, _: &Outbox, _: Body) -> Result<(), String> {
            Err("taken one at a time".into())
        }
        async fn frames(&self, _: &ConnInfo, _: &Outbox, bodies: Vec<Body>) -> Result<(), String> {
            let mut s = self.0.lock().unwrap();
            s.1.push(bodies.len());
            for b in bodies {
                match b {
                    Body::Heartbeat(h) if h.group == 999 => return Err("group 999".into()),
                    Body::Heartbeat(h) => s.0.push(h.group),
                    _ => return Err("not a heartbeat".into()),
                }
            }
            Ok(())
        }
        async fn close(&self, _: &ConnInfo) {
            self.1.notify_one();
        }
    }

    /// Frames that arrive together reach the handler together (at most
    /// `MAX_FRAMES_AT_ONCE` at a time), in order; a refused one closes the connection
    /// after those before it were taken.
    #[tokio::test]
    async fn frames_that_arrive_together_are_handed_over_together() {
        use futures::SinkExt;
        let key = ClusterKey::generate();
        let l = Tcp.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = l.local_addr().unwrap();
        let h = Arc::new(Batches(Default::default(), tokio::sync::Notify::new()));
        let cfg = ServeConfig::new(Arc::new(key.clone()), Role::sequencer(0));
        tokio::spawn(serve(l, cfg, h.clone()));
        let mut d = dial(
            &Tcp,
            addr,
            &key,
            &Role::client(1),
            |_| true,
            1024,
            Duration::from_secs(2),
        )
        .await
        .unwrap();
        let hb = |group| {
            let f = Frame::new(Body::Heartbeat(crate::msg::Heartbeat { epoch: 1, group }));
            let len = crate::codec::encode_body(&f).len();
            crate::codec::Outgoing::Frame(f, len)
        };
        // One write: 200 heartbeats, a refused one, and one more that is never taken.
        for g in 0..200 {
            d.wr.feed(hb(g)).await.unwrap();
        }
        d.wr.feed(hb(999)).await.unwrap();
        d.wr.feed(hb(7)).await.unwrap();
        SinkExt::<crate::codec::Outgoing>::flush(&mut d.wr)
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), h.1.notified())
            .await
            .expect("the connection closed");
        let s = h.0.lock().unwrap();
        assert_eq!(s.0, (0..200).collect::<Vec<u32>>());
        assert!(
            s.1.iter().all(|n| (1..=MAX_FRAMES_AT_ONCE).contains(n)),
            "{:?}",
            s.1
        );
        assert!(
            s.1.iter().any(|n| *n > 1),
            "never more than one at a time: {:?}",
            s.1
        );
    }
}
