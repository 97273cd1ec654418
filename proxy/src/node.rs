//! The proxy runtime: one process hosts replica `r` of several groups (as Mason ran one
//! replica of 8 groups per proxy machine). It listens for clients and for its peers' Raft
//! messages, keeps reconnecting links to its peers and to the sequencer, and runs one task
//! per hosted group that feeds that group's [`Replica`] and carries out its actions: WAL
//! writes (fdatasync'd when `fsync` is on), sends, answers and bound-number records. It
//! keeps a link to every sequencer (the primary and its backups), and streams what a group
//! binds to clients that watch it. With a shared log (CorfuMason), it also keeps a link to
//! the head of every log shard's chain, for the leaders' log writes.

use crate::replica::{Action, ConnId, Replica, ReplicaConfig};
use crate::wal::Wal;
use anyhow::Context;
use bytes::Bytes;
use mason_common::frame::{spawn_writer, FrameReader, FrameTx};
use mason_common::msg::{
    epoch_owner, Body, ClientOp, ClientReply, Frame, PeerHello, RaftMsg, ReplyStatus, SeqHello,
    SeqReply,
};
use mason_common::record::{BoundBatch, RecordWriter};
use mason_common::transport::{Listener, Transport};
use raft::Storage;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This process's replica index, 0..peers.len().
    pub replica: u32,
    /// The groups this process hosts a replica of.
    pub groups: Vec<u32>,
    /// Every replica process's address, by replica index (this one's included).
    pub peers: Vec<SocketAddr>,
    /// Every sequencer's address, by sequencer index (index 0 is the first primary).
    pub sequencers: Vec<SocketAddr>,
    pub data_dir: PathBuf,
    /// Where to write `bound-g<G>-r<R>.bin`, the record of every applied batch.
    pub record_dir: Option<PathBuf>,
    pub fsync: bool,
    /// One Raft tick.
    pub tick: Duration,
    /// Template for every hosted replica (group and replica are filled in).
    pub replica_cfg: ReplicaConfig,
    pub max_frame: usize,
    /// CorfuMason: each log shard's chain of servers, head first (empty: no log).
    pub log_chains: Vec<Vec<SocketAddr>>,
}

enum Event {
    Client {
        conn: ConnId,
        tx: FrameTx,
        op: ClientOp,
    },
    Raft(Bytes),
    Seq(SeqReply),
    /// A failover message from a sequencer (heartbeat echo, switch, fill, activate).
    SeqOther(Body),
    SeqConnected,
    LogReply(mason_common::logmsg::LogWriteReply),
    Watch {
        conn: ConnId,
        tx: FrameTx,
        ranges_only: bool,
    },
    Shutdown(oneshot::Sender<()>),
}

type Inboxes = Arc<HashMap<u32, mpsc::UnboundedSender<Event>>>;

/// Runs the node until `shutdown` resolves, then flushes every group's records.
pub async fn run(
    cfg: NodeConfig,
    transport: Arc<dyn Transport>,
    listener: Box<dyn Listener>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data dir {}", cfg.data_dir.display()))?;
    let mut senders = HashMap::new();
    let mut receivers = Vec::new();
    for &g in &cfg.groups {
        let (tx, rx) = mpsc::unbounded_channel();
        senders.insert(g, tx);
        receivers.push((g, rx));
    }
    let inboxes: Inboxes = Arc::new(senders);

    let mut peer_links = Vec::new();
    for (i, addr) in cfg.peers.iter().enumerate() {
        if i as u32 == cfg.replica {
            peer_links.push(None);
        } else {
            let hello = Frame::new(Body::PeerHello(PeerHello {
                replica: cfg.replica,
            }));
            peer_links.push(Some(spawn_link(
                transport.clone(),
                *addr,
                cfg.max_frame,
                Some(hello),
                || {},
                |_| {},
            )));
        }
    }
    let peer_links = Arc::new(peer_links);
    let mut seq_links = Vec::new();
    for addr in &cfg.sequencers {
        let on_connect = inboxes.clone();
        let on_frame = inboxes.clone();
        let hello = Frame::new(Body::SeqHello(SeqHello {
            replica: cfg.replica,
            groups: cfg.groups.clone(),
        }));
        seq_links.push(spawn_link(
            transport.clone(),
            *addr,
            cfg.max_frame,
            Some(hello),
            move || {
                for tx in on_connect.values() {
                    let _ = tx.send(Event::SeqConnected);
                }
            },
            move |f| route_seq_frame(&on_frame, f),
        ));
    }
    let seq_links = Arc::new(seq_links);
    let mut log_links = Vec::new();
    for chain in &cfg.log_chains {
        let Some(head) = chain.first() else {
            anyhow::bail!("a log shard with no servers");
        };
        let on_frame = inboxes.clone();
        log_links.push(spawn_link(
            transport.clone(),
            *head,
            cfg.max_frame,
            None,
            || {},
            move |f| route_log_frame(&on_frame, f),
        ));
    }
    let log_links = Arc::new(log_links);

    let mut tasks = Vec::new();
    for (g, rx) in receivers {
        let (wal, storage) = Wal::open(
            &cfg.data_dir.join(format!("g{g}.wal")),
            cfg.fsync,
            (1..=cfg.peers.len() as u64).collect(),
        )
        .with_context(|| format!("opening the wal of group {g}"))?;
        let replayed = storage.last_index().unwrap_or(0);
        tracing::info!(group = g, replayed_index = replayed, "wal replayed");
        let fresh = replayed == 0
            && storage
                .initial_state()
                .map(|s| s.hard_state.term)
                .unwrap_or(0)
                == 0;
        let mut rcfg = cfg.replica_cfg.clone();
        rcfg.group = g;
        rcfg.replica = cfg.replica;
        rcfg.replicas = cfg.peers.len() as u32;
        rcfg.sequencers = cfg.sequencers.len() as u32;
        rcfg.campaign_on_start = fresh && cfg.replica == 0;
        rcfg.log_shards = cfg.log_chains.len() as u32;
        let replica = Replica::new(rcfg, storage).context("starting raft")?;
        let record = match &cfg.record_dir {
            // Appended to across restarts: records carry their Raft index, and a replica
            // restarted from a snapshot resumes at a later one.
            Some(d) => Some(RecordWriter::open_append::<BoundBatch>(
                &d.join(format!("bound-g{g}-r{}.bin", cfg.replica)),
            )?),
            None => None,
        };
        let group = GroupTask {
            replica,
            wal,
            record,
            conns: HashMap::new(),
            peer_links: peer_links.clone(),
            seq_links: seq_links.clone(),
            log_links: log_links.clone(),
            watchers: Vec::new(),
            tick: cfg.tick,
            fsync: cfg.fsync,
        };
        tasks.push(tokio::spawn(group.run(rx)));
    }

    let ctx = Arc::new(ConnCtx {
        inboxes: inboxes.clone(),
        replica: cfg.replica,
        replicas: cfg.peers.len() as u32,
        max_frame: cfg.max_frame,
    });
    let accept = tokio::spawn(accept_loop(listener, ctx));
    // A group task that dies (raft-rs aborts on states it considers impossible) would
    // leave a replica that looks alive but serves nothing: fail-stop instead, so that the
    // replica restarts from its log.
    let mut watched: futures::stream::FuturesUnordered<_> = tasks.into_iter().collect();
    let watch = async {
        use futures::StreamExt;
        while let Some(r) = watched.next().await {
            if let Err(e) = r {
                tracing::error!(error = %e, "a group task died; exiting");
                std::process::exit(70);
            }
        }
        std::future::pending::<()>().await;
    };
    tokio::select! {
        _ = shutdown => {}
        _ = watch => {}
    }
    accept.abort();
    for tx in inboxes.values() {
        let (done, wait) = oneshot::channel();
        if tx.send(Event::Shutdown(done)).is_ok() {
            let _ = wait.await;
        }
    }
    Ok(())
}

/// What every incoming connection needs to know.
struct ConnCtx {
    inboxes: Inboxes,
    replica: u32,
    replicas: u32,
    max_frame: usize,
}

async fn accept_loop(mut listener: Box<dyn Listener>, ctx: Arc<ConnCtx>) {
    let next_conn = Arc::new(AtomicU64::new(1));
    loop {
        match listener.accept().await {
            Ok(conn) => {
                let id = next_conn.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(serve_conn(conn, id, ctx.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Reads one incoming connection: client ops and peers' Raft messages go to their group.
/// Raft messages are taken only after the connection introduced itself as a peer.
async fn serve_conn(conn: mason_common::transport::Connection, id: ConnId, ctx: Arc<ConnCtx>) {
    let peer = conn.peer.clone();
    let inboxes = &ctx.inboxes;
    let tx = spawn_writer(conn.write, peer.clone());
    let mut reader = FrameReader::new(conn.read, ctx.max_frame);
    let mut from_peer = false;
    while let Some(frame) = reader.next().await {
        match frame {
            Ok(Frame {
                body: Some(Body::ClientOp(op)),
            }) => match inboxes.get(&op.group) {
                Some(inbox) => {
                    let _ = inbox.send(Event::Client {
                        conn: id,
                        tx: tx.clone(),
                        op,
                    });
                }
                None => {
                    let _ = tx.send(Frame::new(Body::ClientReply(ClientReply {
                        client_id: op.client_id,
                        client_seq: op.client_seq,
                        status: ReplyStatus::Invalid as i32,
                        leader_hint: 0,
                        space_mask: 0,
                        numbers: Vec::new(),
                    })));
                }
            },
            Ok(Frame {
                body: Some(Body::Watch(w)),
            }) => match inboxes.get(&w.group) {
                Some(inbox) => {
                    let _ = inbox.send(Event::Watch {
                        conn: id,
                        tx: tx.clone(),
                        ranges_only: w.ranges_only,
                    });
                }
                None => {
                    tracing::warn!(%peer, group = w.group, "closing connection: watch of a group not hosted here");
                    return;
                }
            },
            Ok(Frame {
                body: Some(Body::PeerHello(h)),
            }) => {
                if h.replica >= ctx.replicas || h.replica == ctx.replica {
                    tracing::warn!(%peer, replica = h.replica, "closing connection: not a peer's replica index");
                    return;
                }
                from_peer = true;
            }
            Ok(Frame {
                body: Some(Body::Raft(_)),
            }) if !from_peer => {
                tracing::warn!(%peer, "closing connection: raft message from a connection that is not a peer's");
                return;
            }
            Ok(Frame {
                body: Some(Body::Raft(m)),
            }) => match inboxes.get(&m.group) {
                Some(inbox) => {
                    let _ = inbox.send(Event::Raft(m.data));
                }
                None => {
                    tracing::warn!(%peer, group = m.group, "raft message for a group not hosted here")
                }
            },
            Ok(other) => {
                tracing::warn!(%peer, ?other, "closing connection: unexpected frame for a proxy");
                return;
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection: malformed frame");
                return;
            }
        }
    }
}

/// Hands a sequencer's frame to the group it concerns (an activation to every group).
fn route_seq_frame(inboxes: &Inboxes, f: Frame) {
    let group = match &f.body {
        Some(Body::SeqReply(r)) => r.group,
        Some(Body::Heartbeat(h)) => h.group,
        Some(Body::Switch(s)) => s.group,
        Some(Body::Fill(x)) => x.group,
        Some(Body::Activate(_)) => {
            for tx in inboxes.values() {
                if let Some(b) = &f.body {
                    let _ = tx.send(Event::SeqOther(b.clone()));
                }
            }
            return;
        }
        other => {
            tracing::warn!(?other, "unexpected frame from a sequencer");
            return;
        }
    };
    let Some(tx) = inboxes.get(&group) else {
        tracing::warn!(group, "sequencer frame for a group not hosted here");
        return;
    };
    match f.body {
        Some(Body::SeqReply(r)) => {
            let _ = tx.send(Event::Seq(r));
        }
        Some(b) => {
            let _ = tx.send(Event::SeqOther(b));
        }
        None => {}
    }
}

/// Hands a log server's answer to the group whose write it answers (the id says which).
fn route_log_frame(inboxes: &Inboxes, f: Frame) {
    match f.body {
        Some(Body::LogWriteReply(r)) => {
            let group = (r.id >> crate::replica::LOG_REQ_GROUP_SHIFT) as u32;
            match inboxes.get(&group) {
                Some(tx) => {
                    let _ = tx.send(Event::LogReply(r));
                }
                None => tracing::warn!(group, "log answer for a group not hosted here"),
            }
        }
        other => tracing::warn!(?other, "unexpected frame from a log server"),
    }
}

/// A connection that is re-established whenever it breaks. Frames sent while it is down
/// are dropped (Raft and the sequencer protocol tolerate loss; both retry).
fn spawn_link(
    transport: Arc<dyn Transport>,
    addr: SocketAddr,
    max_frame: usize,
    hello: Option<Frame>,
    on_connect: impl Fn() + Send + 'static,
    on_frame: impl Fn(Frame) + Send + Sync + 'static,
) -> FrameTx {
    let (tx, mut rx) = mpsc::unbounded_channel::<Frame>();
    let on_frame = Arc::new(on_frame);
    tokio::spawn(async move {
        loop {
            let conn = match transport.connect(addr).await {
                Ok(c) => c,
                Err(_) => {
                    while rx.try_recv().is_ok() {}
                    if rx.is_closed() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let (dead_tx, mut dead) = oneshot::channel::<()>();
            let on_frame = on_frame.clone();
            let mut reader = FrameReader::new(conn.read, max_frame);
            let read_task = tokio::spawn(async move {
                while let Some(Ok(f)) = reader.next().await {
                    on_frame(f);
                }
                let _ = dead_tx.send(());
            });
            on_connect();
            let mut write = conn.write;
            let mut buf = bytes::BytesMut::with_capacity(64 << 10);
            if let Some(h) = &hello {
                mason_common::frame::encode_into(h, &mut buf);
            }
            loop {
                tokio::select! {
                    f = rx.recv() => {
                        let Some(f) = f else {
                            read_task.abort();
                            return;
                        };
                        mason_common::frame::encode_into(&f, &mut buf);
                        while buf.len() < (256 << 10) {
                            match rx.try_recv() {
                                Ok(f) => mason_common::frame::encode_into(&f, &mut buf),
                                Err(_) => break,
                            }
                        }
                        let r = tokio::io::AsyncWriteExt::write_all(&mut write, &buf).await;
                        buf.clear();
                        if r.is_err() {
                            break;
                        }
                    }
                    _ = &mut dead => break,
                }
            }
            read_task.abort();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    tx
}

struct GroupTask {
    replica: Replica,
    wal: Wal,
    record: Option<RecordWriter>,
    conns: HashMap<ConnId, FrameTx>,
    peer_links: Arc<Vec<Option<FrameTx>>>,
    seq_links: Arc<Vec<FrameTx>>,
    log_links: Arc<Vec<FrameTx>>,
    /// Clients watching this group: (connection, ranges only).
    watchers: Vec<(FrameTx, bool)>,
    tick: Duration,
    fsync: bool,
}

impl GroupTask {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Event>) {
        let start = Instant::now();
        let us = |t: Instant| t.duration_since(start).as_micros() as u64;
        let mut next_tick = start + self.tick;
        let mut next_flush = start + Duration::from_millis(100);
        let mut out = Vec::new();
        loop {
            let mut wake = next_tick;
            if let Some(d) = self.replica.next_deadline() {
                wake = wake.min(start + Duration::from_micros(d));
            }
            let first = tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev) => Some(ev),
                    None => return,
                },
                _ = tokio::time::sleep_until(wake.into()) => None,
            };
            let mut evs = first.into_iter().collect::<Vec<_>>();
            while evs.len() < 4096 {
                match rx.try_recv() {
                    Ok(ev) => evs.push(ev),
                    Err(_) => break,
                }
            }
            for ev in evs {
                match ev {
                    Event::Client { conn, tx, op } => {
                        self.conns.entry(conn).or_insert(tx);
                        self.replica.on_client_op(conn, op, &mut out);
                    }
                    Event::Raft(data) => self.replica.on_raft(&data),
                    Event::Seq(r) => self.replica.on_seq_reply(r),
                    Event::SeqOther(b) => match b {
                        Body::Heartbeat(h) => self.replica.on_heartbeat(h),
                        Body::Switch(s) => self.replica.on_switch(s, &mut out),
                        Body::Fill(f) => self.replica.on_fill(f, &mut out),
                        Body::Activate(a) => self.replica.on_activate(a, &mut out),
                        _ => {}
                    },
                    Event::SeqConnected => self.replica.on_seq_connected(&mut out),
                    Event::LogReply(r) => self.replica.on_log_reply(r, &mut out),
                    Event::Watch {
                        conn,
                        tx,
                        ranges_only,
                    } => {
                        let snap = self.replica.promise(true, self.replica.promised());
                        tracing::info!(group = self.group(), conn, "a client watches this group");
                        if tx.send(Frame::new(Body::Promise(snap))).is_ok() {
                            self.watchers.push((tx, ranges_only));
                        }
                    }
                    Event::Shutdown(done) => {
                        self.execute(&mut out);
                        if let Some(r) = self.record.as_mut() {
                            let _ = r.flush();
                        }
                        let _ = done.send(());
                        return;
                    }
                }
            }
            let now = Instant::now();
            if now >= next_tick {
                self.replica.tick(us(now), &mut out);
                next_tick += self.tick;
                if next_tick < now {
                    next_tick = now + self.tick;
                }
            }
            self.replica.flush(us(now), &mut out);
            self.execute(&mut out);
            if now >= next_flush {
                if let Some(r) = self.record.as_mut() {
                    let _ = r.flush();
                }
                next_flush = now + Duration::from_millis(100);
            }
        }
    }

    fn execute(&mut self, out: &mut Vec<Action>) {
        for a in out.drain(..) {
            match a {
                Action::Persist {
                    hard_state,
                    entries,
                } => {
                    let wal = &mut self.wal;
                    let r = if self.fsync {
                        tokio::task::block_in_place(|| wal.append(hard_state.as_ref(), &entries))
                    } else {
                        wal.append(hard_state.as_ref(), &entries)
                    };
                    if let Err(e) = r {
                        // Acknowledging what is not durable would break the protocol: stop.
                        tracing::error!(error = %e, "wal write failed; exiting");
                        std::process::exit(1);
                    }
                }
                Action::Snapshot {
                    snapshot,
                    hard_state,
                    entries,
                } => {
                    let wal = &mut self.wal;
                    let t = Instant::now();
                    let r = tokio::task::block_in_place(|| {
                        wal.install_snapshot(&snapshot, &hard_state, &entries)
                    });
                    tracing::info!(
                        group = self.replica.group(),
                        index = snapshot.get_metadata().index,
                        bytes = snapshot.data.len(),
                        entries = entries.len(),
                        us = t.elapsed().as_micros() as u64,
                        "snapshot written"
                    );
                    if let Err(e) = r {
                        tracing::error!(error = %e, "writing a snapshot failed; exiting");
                        std::process::exit(1);
                    }
                }
                Action::SendRaft { to, data } => {
                    if let Some(Some(link)) = self.peer_links.get(to as usize) {
                        let group = self.group();
                        let _ = link.send(Frame::new(Body::Raft(RaftMsg { group, data })));
                    }
                }
                Action::SendSeq(req) => {
                    let to = epoch_owner(req.epoch, self.seq_links.len() as u32);
                    if let Some(link) = self.seq_links.get(to as usize) {
                        let _ = link.send(Frame::new(Body::GetSeq(req)));
                    }
                }
                Action::ToSeq { seq, body } => {
                    if let Some(link) = self.seq_links.get(seq as usize) {
                        let _ = link.send(Frame::new(body));
                    }
                }
                Action::LogWrite(w) => {
                    if let Some(link) = self.log_links.get(w.shard as usize) {
                        let _ = link.send(Frame::new(Body::LogWrite(w)));
                    }
                }
                Action::Reply { conn, reply } => {
                    if let Some(tx) = self.conns.get(&conn) {
                        if tx.send(Frame::new(Body::ClientReply(reply))).is_err() {
                            self.conns.remove(&conn);
                        }
                    }
                }
                Action::Bound(b) => {
                    if let Some(r) = self.record.as_mut() {
                        if let Err(e) = r.append(&b) {
                            tracing::error!(error = %e, "writing the bound record");
                        }
                    }
                    if !self.watchers.is_empty() {
                        self.notify_watchers(b);
                    }
                }
            }
        }
    }

    fn group(&self) -> u32 {
        self.replica.group()
    }

    fn notify_watchers(&mut self, b: mason_common::record::BoundBatch) {
        let ranges = mason_common::record::BoundBatch {
            op_clients: Vec::new(),
            op_seqs: Vec::new(),
            op_masks: Vec::new(),
            ..b.clone()
        };
        self.watchers.retain(|(tx, ranges_only)| {
            let body = if *ranges_only {
                ranges.clone()
            } else {
                b.clone()
            };
            tx.send(Frame::new(Body::Bound(body))).is_ok()
        });
    }
}
