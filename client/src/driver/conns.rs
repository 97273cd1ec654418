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

use futures::stream::{BoxStream, SelectAll};
use futures::StreamExt;
use mason_common::auth::{ClusterKey, Role, RoleKind};
use mason_common::conn::{dial, spawn_writer, Outbox, Overflow};
use mason_common::msg::Frame;
use mason_common::transport::Transport;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The largest frame a client accepts (an answer is small; a log read's is not).
const MAX_FRAME: usize = 64 << 20;
/// How long one connection attempt may take before the replica counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A replica that could not be dialled is not dialled again this soon: every client that
/// sends there meanwhile hears at once that it cannot be reached. (A dial holds up every
/// client of the driver, for up to `CONNECT_TIMEOUT` where nothing answers.)
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
    /// The open connection `gen` to `replica` broke or closed.
    Closed { gen: u64, replica: usize },
}

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
    /// Per replica, when dialling it last failed.
    failed: Vec<Option<Instant>>,
    /// Connections replaced or no longer needed, and when: closed once `retire` passed.
    retired: Vec<(Instant, Open)>,
    retire: Duration,
    /// Every connection's frames, tagged with its `gen`, then `None` when it ends.
    readers: SelectAll<BoxStream<'static, (u64, Option<Frame>)>>,
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
            failed: vec![None; n],
            retired: Vec::new(),
            retire: (2 * retry_timeout).max(Duration::from_millis(100)),
            readers: SelectAll::new(),
            next_gen: 0,
        }
    }

    /// The number the next connection made will have.
    pub(super) fn next_gen(&self) -> u64 {
        self.next_gen
    }

    /// Whether any connection is still being read.
    pub(super) fn reading(&self) -> bool {
        !self.readers.is_empty()
    }

    /// The next frame from any connection, or the end of the open one to a replica. Pends
    /// for ever when nothing is being read.
    pub(super) async fn next_read(&mut self) -> Read {
        loop {
            match self.readers.next().await {
                Some((gen, Some(frame))) => {
                    let replica = self.replica_of(gen);
                    return Read::Frame {
                        gen,
                        replica,
                        frame,
                    };
                }
                Some((gen, None)) => {
                    self.retired.retain(|(_, o)| o.gen != gen);
                    let open = self
                        .open
                        .iter()
                        .position(|o| o.as_ref().is_some_and(|o| o.gen == gen));
                    if let Some(replica) = open {
                        self.open[replica] = None;
                        return Read::Closed { gen, replica };
                    }
                }
                None => std::future::pending::<()>().await,
            }
        }
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

    /// Sends `frame` to replica `to` on a connection numbered `fresh_from` or later,
    /// dialling one if there is none; false if `to` cannot be reached.
    pub(super) async fn send(&mut self, to: usize, fresh_from: u64, frame: Frame) -> bool {
        if let Some(o) = self.open.get(to).and_then(Option::as_ref) {
            if o.gen >= fresh_from {
                let _ = o.tx.send(frame);
                return true;
            }
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
        // Boxed: dialling's large future would otherwise be part of (and copied with)
        // every turn's.
        match Box::pin(self.dial(to)).await {
            Some(o) => {
                let _ = o.tx.send(frame);
                if let Some(slot) = self.open.get_mut(to) {
                    if let Some(old) = slot.replace(o) {
                        self.retired.push((Instant::now(), old));
                    }
                }
                true
            }
            None => {
                if let Some(f) = self.failed.get_mut(to) {
                    *f = Some(Instant::now());
                }
                false
            }
        }
    }

    async fn dial(&mut self, to: usize) -> Option<Open> {
        let addr = *self.addrs.get(to)?;
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
                tracing::debug!(%addr, error = %e, "cannot connect");
                return None;
            }
        };
        let gen = self.next_gen;
        self.next_gen += 1;
        let tx = spawn_writer(c.wr, 64 << 20, Overflow::Drop, addr.to_string());
        let frames =
            c.rd.scan((), |_, r| futures::future::ready(r.ok()))
                .map(move |f| (gen, Some(f)))
                .chain(futures::stream::once(async move { (gen, None) }));
        self.readers.push(frames.boxed());
        Some(Open {
            gen,
            replica: to,
            tx,
        })
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
