//! A driver's connections: at most one open to each replica, shared by every client of
//! the driver, each made when a client first sends there and starting with the
//! handshake as a client. A connection is replaced when a client that moved on needs one
//! made since (see `ClientCore::moves`), and retired when no client talks to its replica.
//! A retired connection sends nothing more but stays open a while (twice the retry
//! timeout), so that the answers other clients still wait for on it arrive: they finish
//! ops, read as from no replica (so that a "not leader" there counts for nothing). Closing
//! it at once would have its server drop them, and every client that shares it would time
//! out and move in turn. All readers are polled together. Which frames count as from a
//! client's current replica is the driver's to say, per client (see `Read`).

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use mason_common::auth::{ClusterKey, Role, RoleKind};
use mason_common::codec::FrameCodec;
use mason_common::conn::{dial, spawn_writer, Dialed, Outbox, Overflow};
use mason_common::msg::Frame;
use mason_common::transport::{BoxRead, Transport};
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio_util::codec::FramedRead;

/// The largest frame a client accepts (an answer is small; a log read's is not).
const MAX_FRAME: usize = 64 << 20;
/// How long one connection attempt may take before the replica counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A replica that could not be dialled is not dialled again this soon: every client that
/// sends there meanwhile hears at once that it cannot be reached.
const REDIAL_AFTER: Duration = Duration::from_millis(50);
/// Frames handled in one turn at most before the driver acts on them.
pub(super) const FRAMES_PER_TURN: usize = 256;

/// What the connections gave.
pub(super) enum Read {
    /// A frame from connection `gen`, to `replica` (`None` once the driver closed it).
    Frame {
        gen: u64,
        replica: Option<usize>,
        frame: Frame,
    },
    /// The open connection `gen` to `replica` broke or closed, or dialling it failed.
    Closed { gen: u64, replica: usize },
}

/// A connection being dialled (at most one per replica), and the frames that wait for it.
struct Dialing {
    gen: u64,
    frames: Vec<Frame>,
}

/// A dial's end: the replica, and the connection or why not.
type DialEnd = (usize, Result<Dialed, String>);

struct Open {
    /// Which connection this is, counted from 0 by the driver.
    gen: u64,
    replica: usize,
    tx: Outbox,
}

pub(super) struct Conns {
    addrs: Vec<SocketAddr>,
    transport: Arc<dyn Transport>,
    key: Arc<ClusterKey>,
    me: Role,
    /// The kind of role that must answer (a proxy, or the sequencer for Direct).
    peer: RoleKind,
    /// Per replica, the open connection.
    open: Vec<Option<Open>>,
    /// Per replica, the connection being dialled (numbered past the open one).
    dialing: Vec<Option<Dialing>>,
    dials: FuturesUnordered<BoxFuture<'static, DialEnd>>,
    /// Per replica, when dialling it last failed.
    failed: Vec<Option<Instant>>,
    /// Connections replaced or no longer needed, and when: closed once `retire` passed.
    retired: Vec<(Instant, Open)>,
    retire: Duration,
    /// Every connection's frames, tagged with its `gen`, then `None` when it ends.
    /// Every connection being read, by number (a handful: polled in turn, from
    /// `next_reader` on, so that none is starved).
    readers: Vec<(u64, FramedRead<BoxRead, FrameCodec>)>,
    next_reader: usize,
    next_gen: u64,
}

impl Conns {
    pub(super) fn new(
        addrs: Vec<SocketAddr>,
        transport: Arc<dyn Transport>,
        key: Arc<ClusterKey>,
        me: Role,
        peer: RoleKind,
        retry_timeout: Duration,
    ) -> Conns {
        let n = addrs.len();
        Conns {
            addrs,
            transport,
            key,
            me,
            peer,
            open: (0..n).map(|_| None).collect(),
            dialing: (0..n).map(|_| None).collect(),
            dials: FuturesUnordered::new(),
            failed: vec![None; n],
            retired: Vec::new(),
            retire: (2 * retry_timeout).max(Duration::from_millis(100)),
            readers: Vec::new(),
            next_reader: 0,
            next_gen: 0,
        }
    }

    /// The number the next connection made will have.
    pub(super) fn next_gen(&self) -> u64 {
        self.next_gen
    }

    /// Whether any connection is still being read or dialled.
    pub(super) fn busy(&self) -> bool {
        !self.readers.is_empty() || !self.dials.is_empty()
    }

    /// The next frame from any connection, or the end of the open one to a replica, or a
    /// failed dial. A dial that succeeds sends the frames that waited for it. Pends for
    /// ever when nothing is being read or dialled.
    pub(super) async fn next_read(&mut self) -> Read {
        std::future::poll_fn(|cx| self.poll_read(cx)).await
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Read> {
        loop {
            if let Poll::Ready(Some((to, dialed))) = self.dials.poll_next_unpin(cx) {
                if let Some(read) = self.dialed(to, dialed) {
                    return Poll::Ready(read);
                }
                continue;
            }
            let Some((i, next)) = self.poll_readers(cx) else {
                // Nothing is read now.
                return Poll::Pending;
            };
            let gen = self.readers[i].0;
            match next {
                Some(frame) => {
                    self.next_reader = i + 1;
                    let replica = self.replica_of(gen);
                    return Poll::Ready(Read::Frame {
                        gen,
                        replica,
                        frame,
                    });
                }
                // Its end, or a frame it could not read (which ends it too).
                None => {
                    self.readers.swap_remove(i);
                    self.retired.retain(|(_, o)| o.gen != gen);
                    let open = self
                        .open
                        .iter()
                        .position(|o| o.as_ref().is_some_and(|o| o.gen == gen));
                    if let Some(replica) = open {
                        self.open[replica] = None;
                        return Poll::Ready(Read::Closed { gen, replica });
                    }
                }
            }
        }
    }

    /// The first reader, from `next_reader` on, with a frame or its end to give: its
    /// place, and the frame (`None`: the end).
    fn poll_readers(&mut self, cx: &mut Context<'_>) -> Option<(usize, Option<Frame>)> {
        let n = self.readers.len();
        for k in 0..n {
            let i = (self.next_reader + k) % n;
            match self.readers[i].1.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(frame))) => return Some((i, Some(frame))),
                Poll::Ready(Some(Err(_)) | None) => return Some((i, None)),
                Poll::Pending => {}
            }
        }
        None
    }

    /// Whether replica `to` has an open connection numbered `fresh_from` or later.
    pub(super) fn serves(&self, to: usize, fresh_from: u64) -> bool {
        self.open
            .get(to)
            .and_then(Option::as_ref)
            .is_some_and(|o| o.gen >= fresh_from)
    }

    /// The replica of connection `gen`, open or retired.
    fn replica_of(&self, gen: u64) -> Option<usize> {
        self.open
            .iter()
            .flatten()
            .chain(self.retired.iter().map(|(_, o)| o))
            .find(|o| o.gen == gen)
            .map(|o| o.replica)
    }

    /// Sends `frame` to replica `to` on a connection numbered `fresh_from` or later: now
    /// on an open one, or once the one being dialled is made (dialling one if there is
    /// none); false if `to` cannot be reached.
    pub(super) fn send(&mut self, to: usize, fresh_from: u64, frame: Frame) -> bool {
        if let Some(o) = self.open.get(to).and_then(Option::as_ref) {
            if o.gen >= fresh_from {
                let _ = o.tx.send(frame);
                return true;
            }
        }
        let Some(dialing) = self.dialing.get_mut(to) else {
            return false;
        };
        if let Some(d) = dialing.as_mut() {
            if d.gen < fresh_from {
                // Nothing was read on it yet, so it counts as made since: it is numbered
                // anew (and not dialled again, which would start its timeout over).
                d.gen = self.next_gen;
                self.next_gen += 1;
            }
            d.frames.push(frame);
            return true;
        }
        if self
            .failed
            .get(to)
            .copied()
            .flatten()
            .is_some_and(|t| t.elapsed() < REDIAL_AFTER)
        {
            return false;
        }
        let gen = self.next_gen;
        self.next_gen += 1;
        *dialing = Some(Dialing {
            gen,
            frames: vec![frame],
        });
        let dial = self.dial(to);
        self.dials.push(dial);
        true
    }

    /// Connects to replica `to` and runs the handshake, in the background.
    fn dial(&self, to: usize) -> BoxFuture<'static, DialEnd> {
        let addr = self.addrs.get(to).copied();
        let transport = self.transport.clone();
        let key = self.key.clone();
        let me = self.me.clone();
        let want = self.peer;
        async move {
            let Some(addr) = addr else {
                return (to, Err(format!("no replica {to}")));
            };
            let c = dial(
                &*transport,
                addr,
                &key,
                &me,
                |r| r.role_kind() == want,
                MAX_FRAME,
                CONNECT_TIMEOUT,
            )
            .await;
            (to, c)
        }
        .boxed()
    }

    /// A dial ended: the connection opens and takes the frames that waited for it, or the
    /// replica counts as unreachable (told as the connection's end).
    fn dialed(&mut self, to: usize, dialed: Result<Dialed, String>) -> Option<Read> {
        let d = self.dialing.get_mut(to)?.take()?;
        let gen = d.gen;
        let c = match dialed {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(replica = to, error = %e, "cannot connect");
                if let Some(f) = self.failed.get_mut(to) {
                    *f = Some(Instant::now());
                }
                return Some(Read::Closed { gen, replica: to });
            }
        };
        let tx = spawn_writer(c.wr, 64 << 20, Overflow::Drop, c.addr.to_string());
        for f in d.frames {
            let _ = tx.send(f);
        }
        self.readers.push((gen, c.rd));
        let o = Open {
            gen,
            replica: to,
            tx,
        };
        if let Some(old) = self.open.get_mut(to).and_then(|s| s.replace(o)) {
            self.retired.push((Instant::now(), old));
        }
        None
    }

    /// Retires every open connection that no client needs: a client needs the one to its
    /// current replica, numbered from its `fresh_from` on (`needed(replica, gen)` says
    /// whether any client does).
    pub(super) fn keep_only(&mut self, needed: impl Fn(usize, u64) -> bool) {
        for (replica, slot) in self.open.iter_mut().enumerate() {
            if !slot.as_ref().is_some_and(|o| needed(replica, o.gen)) {
                if let Some(old) = slot.take() {
                    self.retired.push((Instant::now(), old));
                }
            }
        }
    }

    /// Closes the retired connections whose time is up (their readers go on until the
    /// far end closes).
    pub(super) fn close_retired(&mut self) {
        let retire = self.retire;
        self.retired.retain(|(at, _)| at.elapsed() < retire);
    }
}

#[cfg(test)]
mod tests {
    //! A dial that hangs holds up only the frames for its replica: the others' go out and
    //! are answered meanwhile; frames sent while a dial runs go out once it is made, in
    //! order; a client that needs a newer connection takes over the dial under way; a dial
    //! that fails ends as a connection closes.

    use super::*;
    use mason_common::conn::{serve, ConnInfo, Handler, ServeConfig};
    use mason_common::msg::{Body, Registered};
    use mason_common::transport::Tcp;

    /// Answers every frame with itself, as a proxy.
    struct Echo;

    impl Handler for Echo {
        fn admit(&self, _: &Role) -> Result<usize, String> {
            Ok(1024)
        }
        async fn open(&self, _: &ConnInfo, _: Outbox) {}
        async fn frame(&self, _: &ConnInfo, out: &Outbox, body: Body) -> Result<(), String> {
            out.send(Frame { body: Some(body) })
                .map_err(|e| format!("{e:?}"))
        }
        async fn close(&self, _: &ConnInfo) {}
    }

    fn frame(nonce: u64) -> Frame {
        Frame {
            body: Some(Body::Registered(Registered {
                nonce,
                ..Default::default()
            })),
        }
    }

    fn nonce(f: &Frame) -> Option<u64> {
        match &f.body {
            Some(Body::Registered(r)) => Some(r.nonce),
            _ => None,
        }
    }

    #[tokio::test]
    async fn a_hanging_dial_holds_up_only_its_own_replica() {
        let key = Arc::new(ClusterKey::generate());
        let echo = Tcp
            .bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let echo_addr = echo.local_addr().expect("addr");
        tokio::spawn(serve(
            echo,
            ServeConfig::new(key.clone(), Role::proxy(0, 0)),
            Arc::new(Echo),
        ));
        // Accepts and never speaks: its dial waits out the handshake's whole timeout.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let silent_addr = silent.local_addr().expect("addr");
        let held = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = silent.accept().await {
                held.push(s);
            }
        });
        let mut conns = Conns::new(
            vec![silent_addr, echo_addr],
            Arc::new(Tcp),
            key,
            Role::client(8),
            RoleKind::Proxy,
            Duration::from_millis(100),
        );
        let start = Instant::now();
        assert!(conns.send(0, 0, frame(100)));
        assert!(conns.send(1, 0, frame(1)));
        assert!(conns.send(1, 0, frame(2)));
        assert!(conns.send(0, 0, frame(101)));
        assert!(
            start.elapsed() < CONNECT_TIMEOUT / 4,
            "sending waited for a dial"
        );
        // Replica 1's answers come, in order, on its first connection, long before replica
        // 0's dial gives up.
        let mut answered = Vec::new();
        while answered.len() < 2 {
            match tokio::time::timeout(CONNECT_TIMEOUT / 2, conns.next_read()).await {
                Ok(Read::Frame {
                    gen,
                    replica: Some(1),
                    frame,
                }) => {
                    assert_eq!(gen, 1, "replica 1's connection is the second dialled");
                    answered.extend(nonce(&frame));
                }
                Ok(Read::Frame { replica, .. }) => panic!("a frame from replica {replica:?}"),
                Ok(Read::Closed { replica, .. }) => panic!("replica {replica} closed early"),
                Err(_) => panic!("replica 1 unanswered while replica 0's dial hangs"),
            }
        }
        assert_eq!(answered, vec![1, 2]);
        assert!(
            start.elapsed() < CONNECT_TIMEOUT,
            "replica 1 was answered only after replica 0's dial gave up"
        );
        // A client that moved (it needs a connection made since) takes over the dial
        // under way, numbered anew, instead of starting its timeout over.
        let fresh = conns.next_gen();
        assert_eq!(fresh, 2);
        assert!(conns.send(0, fresh, frame(103)));
        assert_eq!(conns.dials.len(), 1, "dialled again");
        // Replica 0's dial fails as its connection closing, and a send there is refused
        // for a while after.
        match tokio::time::timeout(CONNECT_TIMEOUT * 4, conns.next_read()).await {
            Ok(Read::Closed { gen, replica }) => assert_eq!((gen, replica), (fresh, 0)),
            Ok(Read::Frame { replica, .. }) => panic!("a frame from replica {replica:?}"),
            Err(_) => panic!("replica 0's dial never ended"),
        }
        assert!(start.elapsed() >= CONNECT_TIMEOUT);
        assert!(!conns.send(0, 0, frame(102)), "redialled at once");
        // Replica 1 is still served on the same connection.
        assert!(conns.send(1, 0, frame(3)));
        match tokio::time::timeout(CONNECT_TIMEOUT, conns.next_read()).await {
            Ok(Read::Frame {
                gen: 1,
                replica: Some(1),
                frame,
            }) => assert_eq!(nonce(&frame), Some(3)),
            _ => panic!("replica 1 no longer answers"),
        }
        held.abort();
    }
}
