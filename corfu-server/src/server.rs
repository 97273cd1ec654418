//! Drives a [`LogNode`] over a [`DiskStore`] on real sockets. Connection tasks decode
//! frames and pass them to one core thread, which owns the node: it takes every event
//! that is queued, lets the node act on them, and makes all their appends durable with a
//! single fdatasync (group commit) before anything they wait for is forwarded or
//! acknowledged. A link task keeps the connection to the successor in the chain.
//!
//! A malformed frame, or a frame a log server never takes, closes that connection with a
//! logged reason; nothing else is affected.

use crate::disk::{DiskOptions, DiskStore};
use crate::node::{ConnId, LogNode, NodeAction, NodeConfig};
use crate::storage::Storage;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use mason_common::frame::{spawn_writer, FrameReader, FrameTx};
use mason_common::logmsg::LogHello;
use mason_common::msg::{Body, Frame};
use mason_common::transport::{Connection, Listener, Transport};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub node: NodeConfig,
    pub dir: PathBuf,
    pub fsync: bool,
    pub segment_bytes: u64,
    /// The next server in the chain (none at the tail).
    pub successor: Option<SocketAddr>,
    pub max_frame: usize,
}

enum Event {
    Open(ConnId, FrameTx),
    Close(ConnId),
    Frame(ConnId, Body),
    SuccessorUp(FrameTx),
    SuccessorDown,
    SuccessorReply(Body),
}

struct Conn {
    tx: FrameTx,
    upstream: bool,
}

/// Opens the store (reporting what recovery found) and serves until the process ends.
pub async fn serve(
    listener: Box<dyn Listener>,
    transport: Arc<dyn Transport>,
    cfg: ServerConfig,
) -> anyhow::Result<()> {
    let opts = DiskOptions {
        segment_bytes: cfg.segment_bytes,
        max_payload: cfg.node.max_payload,
        sync: cfg.fsync,
    };
    let (store, report) = DiskStore::open(&cfg.dir, opts)?;
    tracing::info!(
        dir = %cfg.dir.display(),
        entries = report.entries,
        segments = report.segments,
        torn_tail = ?report.torn_tail,
        corrupt = report.corrupt.len(),
        next = store.next_position(),
        "log store open"
    );
    let node = LogNode::new(cfg.node.clone(), store);
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::Builder::new()
        .name("log-core".into())
        .spawn(move || core(node, rx))?;
    if let Some(addr) = cfg.successor {
        let hello = LogHello {
            shard: cfg.node.shard,
            chain_index: cfg.node.chain_index,
        };
        tokio::spawn(successor_link(
            transport,
            addr,
            hello,
            tx.clone(),
            cfg.max_frame,
        ));
    }
    accept_loop(listener, tx, cfg.max_frame).await;
    Ok(())
}

async fn accept_loop(mut listener: Box<dyn Listener>, tx: Sender<Event>, max_frame: usize) {
    let mut next: ConnId = 1;
    loop {
        match listener.accept().await {
            Ok(conn) => {
                tokio::spawn(serve_conn(conn, next, tx.clone(), max_frame));
                next += 1;
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn serve_conn(conn: Connection, id: ConnId, tx: Sender<Event>, max_frame: usize) {
    let peer = conn.peer.clone();
    let out = spawn_writer(conn.write, peer.clone());
    if tx.send(Event::Open(id, out)).is_err() {
        return;
    }
    let mut reader = FrameReader::new(conn.read, max_frame);
    while let Some(body) = reader.next_body(&peer).await {
        match &body {
            Body::LogWrite(_) | Body::LogRead(_) | Body::LogTail(_) | Body::LogHello(_) => {}
            _ => {
                tracing::warn!(%peer, "closing connection: not a log server message");
                break;
            }
        }
        if tx.send(Event::Frame(id, body)).is_err() {
            break;
        }
    }
    let _ = tx.send(Event::Close(id));
}

/// Keeps a connection to the successor: introduces itself, passes answers back.
async fn successor_link(
    transport: Arc<dyn Transport>,
    addr: SocketAddr,
    hello: LogHello,
    tx: Sender<Event>,
    max_frame: usize,
) {
    loop {
        let conn = match transport.connect(addr).await {
            Ok(c) => c,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        tracing::info!(%addr, "linked to the successor");
        let out = spawn_writer(conn.write, addr.to_string());
        let _ = out.send(Frame::new(Body::LogHello(hello.clone())));
        if tx.send(Event::SuccessorUp(out)).is_err() {
            return;
        }
        let mut reader = FrameReader::new(conn.read, max_frame);
        while let Some(frame) = reader.next().await {
            match frame {
                Ok(Frame {
                    body: Some(b @ Body::LogWriteReply(_)),
                }) => {
                    if tx.send(Event::SuccessorReply(b)).is_err() {
                        return;
                    }
                }
                Ok(_) => {
                    tracing::warn!(%addr, "closing the link: the successor sent something else");
                    break;
                }
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "closing the link: malformed frame");
                    break;
                }
            }
        }
        tracing::warn!(%addr, "lost the successor; reconnecting");
        if tx.send(Event::SuccessorDown).is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Core {
    node: LogNode<DiskStore>,
    conns: HashMap<ConnId, Conn>,
    successor: Option<FrameTx>,
    start: Instant,
    out: Vec<NodeAction>,
}

fn core(node: LogNode<DiskStore>, rx: Receiver<Event>) {
    let mut c = Core {
        node,
        conns: HashMap::new(),
        successor: None,
        start: Instant::now(),
        out: Vec::new(),
    };
    let mut last_tick = Instant::now();
    let mut last_stats = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_millis(5)) {
            Ok(ev) => c.handle(ev),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        for _ in 0..4096 {
            match rx.try_recv() {
                Ok(ev) => c.handle(ev),
                Err(_) => break,
            }
        }
        if last_tick.elapsed() >= Duration::from_millis(5) {
            last_tick = Instant::now();
            let now = c.start.elapsed().as_micros() as u64;
            c.node.tick(now, &mut c.out);
        }
        c.node.flush(&mut c.out);
        c.run();
        if last_stats.elapsed() >= Duration::from_secs(10) {
            last_stats = Instant::now();
            let s = &c.node.stats;
            tracing::info!(
                appended = s.appended,
                refused = s.refused,
                syncs = s.syncs,
                timeouts = s.timeouts,
                corrupt_reads = s.corrupt_reads,
                "log server"
            );
        }
    }
}

impl Core {
    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Open(id, tx) => {
                self.conns.insert(
                    id,
                    Conn {
                        tx,
                        upstream: false,
                    },
                );
            }
            Event::Close(id) => {
                self.conns.remove(&id);
            }
            Event::Frame(id, body) => self.on_frame(id, body),
            Event::SuccessorUp(tx) => {
                self.successor = Some(tx);
                self.node.on_successor_connected(&mut self.out);
            }
            Event::SuccessorDown => self.successor = None,
            Event::SuccessorReply(Body::LogWriteReply(r)) => {
                self.node.on_forward_reply(r, &mut self.out)
            }
            Event::SuccessorReply(_) => {}
        }
    }

    fn on_frame(&mut self, id: ConnId, body: Body) {
        let upstream = self.conns.get(&id).is_some_and(|c| c.upstream);
        match body {
            Body::LogWrite(w) => self.node.on_write(id, upstream, w, &mut self.out),
            Body::LogRead(r) => self.node.on_read(id, r, &mut self.out),
            Body::LogTail(t) => self.node.on_tail(id, t.id, &mut self.out),
            Body::LogHello(h) => {
                let cfg = self.node.config();
                if h.shard == cfg.shard && h.chain_index + 1 == cfg.chain_index {
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.upstream = true;
                    }
                } else {
                    tracing::warn!(
                        shard = h.shard,
                        chain_index = h.chain_index,
                        "closing connection: a hello from a server that is not this one's predecessor"
                    );
                    self.conns.remove(&id);
                }
            }
            _ => {}
        }
    }

    /// Carries out the node's actions; a sync's completion may produce more.
    fn run(&mut self) {
        while !self.out.is_empty() {
            let actions = std::mem::take(&mut self.out);
            for a in actions {
                match a {
                    NodeAction::Sync(gen) => match self.node.store_mut().sync() {
                        Ok(()) => self.node.on_synced(gen, &mut self.out),
                        Err(e) => {
                            tracing::error!(error = %e, "sync failed");
                            self.node.on_sync_failed(&mut self.out);
                        }
                    },
                    NodeAction::Send { conn, body } => {
                        if let Some(c) = self.conns.get(&conn) {
                            let _ = c.tx.send(Frame::new(body));
                        }
                    }
                    NodeAction::Forward(w) => {
                        if let Some(s) = &self.successor {
                            let _ = s.send(Frame::new(Body::LogWrite(w)));
                        }
                    }
                }
            }
        }
    }
}
