//! Drives a [`LogNode`] over a [`DiskStore`] on real sockets. Connections go through the
//! common connection layer (handshake, limits, bounded queues); one driver feeds the node
//! every event that is queued, carries out its actions in order (disk lookups, appends and
//! one fdatasync for every append of a burst, which is the group commit), and feeds it
//! what the disk reports before anything else. A link keeps the connection to the
//! successor in the chain. A failed append or sync stops the server: after a failed
//! fdatasync the kernel may have dropped the dirty pages, so nothing written since may be
//! acknowledged, now or by a retry.
//!
//! Who may say what: clients and proxies write (to the head), read and ask for the tail;
//! this server's predecessor in its shard's chain (and only it) forwards writes; watchers
//! (`mason status`) ask for its status, and nothing else. Anything else closes that
//! connection with a logged reason.

use crate::disk::{DiskOptions, DiskStore};
use crate::node::{ConnId, LogNode, NodeAction, NodeConfig, Source};
use crate::storage::{run_disk_action, DiskDone, Lookup, Storage};
use mason_common::auth::{ClusterKey, Role, RoleKind};
use mason_common::conn::{self, ConnInfo, Handler, LinkConfig, LinkHandler, Outbox, ServeConfig};
use mason_common::driver::{self, Executor, Machine};
use mason_common::logmsg::LogWriteReply;
use mason_common::msg::{Body, Frame};
use mason_common::transport::{Listener, Transport};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub node: NodeConfig,
    pub dir: PathBuf,
    pub fsync: bool,
    pub segment_bytes: u64,
    /// The next server in the chain (none at the tail).
    pub successor: Option<SocketAddr>,
    /// The largest frame a peer may send (a write of many entries).
    pub max_frame: usize,
    pub key: Arc<ClusterKey>,
    pub max_conns: usize,
}

enum Event {
    Open(ConnId, Role, Outbox),
    Close(ConnId),
    Frame(ConnId, Body),
    SuccessorUp,
    SuccessorReply(LogWriteReply),
    Looked(u64, Vec<Lookup>),
    Synced(u64),
    /// An append or a sync failed: the server stops without acknowledging anything more.
    DiskFailed(String),
    Stop,
}

enum Action {
    Send(Outbox, Frame),
    Forward(Frame),
    Disk(NodeAction),
    Close(Outbox, String),
}

struct Conn {
    out: Outbox,
    /// Who its writes come from.
    source: Source,
}

const STATS_US: u64 = 10_000_000;
/// Ticks for the forward timeouts at least this often.
const TICK_US: u64 = 5_000;

struct Core {
    node: LogNode,
    conns: HashMap<ConnId, Conn>,
    outs: Vec<NodeAction>,
    next_stats: u64,
    next_tick: u64,
    stopped: bool,
    failed: Option<String>,
    next_sample: u64,
    /// The inbox, to sample its depth (weak: it does not keep the inbox open).
    inbox: mpsc::WeakSender<Event>,
}

impl Core {
    fn new(node: LogNode, inbox: mpsc::WeakSender<Event>) -> Core {
        Core {
            node,
            conns: HashMap::new(),
            outs: Vec::new(),
            next_stats: STATS_US,
            next_tick: 0,
            stopped: false,
            failed: None,
            next_sample: 0,
            inbox,
        }
    }

    fn route(&mut self, out: &mut Vec<Action>) {
        for a in self.outs.drain(..) {
            match a {
                NodeAction::Send { conn, body } => {
                    if let Some(c) = self.conns.get(&conn) {
                        out.push(Action::Send(c.out.clone(), Frame::new(body)));
                    }
                }
                NodeAction::Forward(w) => out.push(Action::Forward(Frame::new(Body::LogWrite(w)))),
                disk => out.push(Action::Disk(disk)),
            }
        }
    }
}

impl Machine for Core {
    type Event = Event;
    type Action = Action;

    fn on_event(&mut self, ev: Event, _now: u64, out: &mut Vec<Action>) {
        if let Event::Frame(_, body) = &ev {
            crate::metrics::get().frame(body);
        }
        let n = &mut self.node;
        match ev {
            Event::Open(id, role, o) => {
                let source = match role.role_kind() {
                    RoleKind::LogServer => Source::Upstream,
                    RoleKind::Proxy => Source::Proxy,
                    _ => Source::Client,
                };
                self.conns.insert(id, Conn { out: o, source });
            }
            Event::Close(id) => {
                self.conns.remove(&id);
            }
            Event::Frame(id, body) => {
                let source = self.conns.get(&id).map_or(Source::Client, |c| c.source);
                let upstream = source == Source::Upstream;
                match body {
                    Body::LogWrite(w) => n.on_write(id, source, w, &mut self.outs),
                    Body::LogRead(r) if !upstream => n.on_read(id, r, &mut self.outs),
                    Body::LogTail(t) if !upstream => n.on_tail(id, t.id, &mut self.outs),
                    // Only a watcher's (the handler lets nothing else through from one).
                    Body::StatusRequest(_) => {
                        let reply = mason_common::statusmsg::StatusReply {
                            log_server: Some(n.status()),
                            ..Default::default()
                        };
                        self.outs.push(NodeAction::Send {
                            conn: id,
                            body: Body::StatusReply(Box::new(reply)),
                        });
                    }
                    other => {
                        if let Some(c) = self.conns.remove(&id) {
                            let why = format!("the predecessor sent a {}", other.name());
                            out.push(Action::Close(c.out, why));
                        }
                    }
                }
            }
            Event::SuccessorUp => n.on_successor_connected(&mut self.outs),
            Event::SuccessorReply(r) => n.on_forward_reply(r, &mut self.outs),
            Event::Looked(token, found) => n.on_looked_up(token, found, &mut self.outs),
            Event::Synced(gen) => n.on_synced(gen, &mut self.outs),
            Event::DiskFailed(why) => {
                // Drop everything the node asked for meanwhile: none of it may go out.
                self.outs.clear();
                out.clear();
                self.failed = Some(why);
                self.stopped = true;
            }
            Event::Stop => self.stopped = true,
        }
        if self.failed.is_some() {
            self.outs.clear();
            return;
        }
        self.route(out);
    }

    fn on_time(&mut self, now: u64, out: &mut Vec<Action>) {
        if self.failed.is_some() {
            return;
        }
        if now >= self.next_tick {
            self.node.tick(now, &mut self.outs);
            self.next_tick = now + TICK_US;
        }
        self.node.flush(&mut self.outs);
        self.route(out);
        if mason_common::metrics::due(&mut self.next_sample, now) {
            let m = crate::metrics::get();
            m.stats(&self.node.stats);
            m.inbox.set(mason_common::metrics::queued(&self.inbox));
        }
        if now >= self.next_stats {
            self.next_stats = now + STATS_US;
            let s = &self.node.stats;
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

    fn next_deadline(&self) -> Option<u64> {
        let d = self.next_stats.min(self.next_tick);
        Some(self.node.next_deadline().map_or(d, |t| t.min(d)))
    }

    fn finished(&self) -> bool {
        self.stopped
    }
}

struct Disk<S> {
    store: S,
    successor: Option<Outbox>,
    /// Set once the disk failed: nothing is carried out any more.
    failed: bool,
}

impl<S: Storage> Executor<Core> for Disk<S> {
    fn execute(&mut self, a: Action, feedback: &mut Vec<Event>) {
        if self.failed {
            return;
        }
        match a {
            Action::Send(o, f) => {
                let _ = o.send(f);
            }
            Action::Forward(f) => {
                if let Some(s) = &self.successor {
                    let _ = s.send(f);
                }
            }
            Action::Close(o, why) => {
                conn::log_close(o.peer(), &why);
                o.close();
            }
            Action::Disk(d) => {
                let store = &mut self.store;
                let sync = matches!(d, NodeAction::Sync(_));
                let t = Instant::now();
                let r = if sync {
                    tokio::task::block_in_place(|| run_disk_action(store, d))
                } else {
                    run_disk_action(store, d)
                };
                if sync {
                    crate::metrics::get().synced(t.elapsed());
                }
                match r {
                    Ok(Some(DiskDone::Looked(t, found))) => feedback.push(Event::Looked(t, found)),
                    Ok(Some(DiskDone::Synced(g))) => feedback.push(Event::Synced(g)),
                    Ok(None) => {}
                    Err(e) => {
                        // Never acknowledge (now or on a retry) what may not be on disk.
                        tracing::error!(error = %e, "the disk failed; stopping");
                        self.failed = true;
                        feedback.push(Event::DiskFailed(e.to_string()));
                    }
                }
            }
        }
    }
}

struct Conns {
    inbox: mpsc::Sender<Event>,
    shard: u32,
    index: u32,
    max_frame: usize,
}

impl Handler for Conns {
    fn admit(&self, role: &Role) -> Result<usize, String> {
        match role.role_kind() {
            RoleKind::Client | RoleKind::Proxy => Ok(self.max_frame),
            RoleKind::LogServer if role.shard == self.shard && role.index + 1 == self.index => {
                Ok(self.max_frame)
            }
            RoleKind::LogServer => Err("not this server's predecessor in its chain".into()),
            // `mason status`: a status request, nothing else.
            RoleKind::Watcher => Ok(4 << 10),
            _ => Err("only clients, proxies and the predecessor talk to a log server".into()),
        }
    }

    async fn open(&self, c: &ConnInfo, out: Outbox) {
        let _ = self
            .inbox
            .send(Event::Open(c.id, c.role.clone(), out))
            .await;
    }

    async fn frame(&self, c: &ConnInfo, _: &Outbox, body: Body) -> Result<(), String> {
        let upstream = c.role.role_kind() == RoleKind::LogServer;
        let watcher = c.role.role_kind() == RoleKind::Watcher;
        let ok = match &body {
            Body::StatusRequest(_) => watcher,
            _ if watcher => false,
            Body::LogWrite(_) => true,
            Body::LogRead(_) | Body::LogTail(_) => !upstream,
            _ => false,
        };
        if !ok {
            return Err(format!("{} may not send a {} here", c.role, body.name()));
        }
        self.inbox
            .send(Event::Frame(c.id, body))
            .await
            .map_err(|_| "the log server is stopping".to_string())
    }

    async fn close(&self, c: &ConnInfo) {
        let _ = self.inbox.send(Event::Close(c.id)).await;
    }
}

/// The link to the successor: its answers to forwards.
struct Successor {
    inbox: mpsc::Sender<Event>,
}

impl LinkHandler for Successor {
    async fn up(&self, peer: &Role, _: &Outbox) {
        tracing::info!(%peer, "linked to the successor");
        let _ = self.inbox.send(Event::SuccessorUp).await;
    }

    async fn frame(&self, body: Body) -> Result<(), String> {
        match body {
            Body::LogWriteReply(r) => {
                let _ = self.inbox.send(Event::SuccessorReply(r)).await;
                Ok(())
            }
            other => Err(format!("the successor sent a {}", other.name())),
        }
    }
}

/// Opens the store (reporting what recovery found) and serves until `shutdown`.
pub async fn serve(
    listener: Box<dyn Listener>,
    transport: Arc<dyn Transport>,
    cfg: ServerConfig,
    shutdown: impl std::future::Future<Output = ()>,
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
    let me = Role::log_server(cfg.node.shard, cfg.node.chain_index);
    let (tx, mut rx) = driver::inbox(16_384);
    let successor = cfg.successor.map(|addr| {
        let lc = LinkConfig::new(
            cfg.key.clone(),
            me.clone(),
            Role::log_server(cfg.node.shard, cfg.node.chain_index + 1),
            cfg.max_frame,
        );
        let h = Successor { inbox: tx.clone() };
        conn::spawn_link(transport.clone(), addr, lc, Arc::new(h))
    });
    let handler = Arc::new(Conns {
        inbox: tx.clone(),
        shard: cfg.node.shard,
        index: cfg.node.chain_index,
        max_frame: cfg.max_frame,
    });
    let mut serve = ServeConfig::new(cfg.key.clone(), me);
    serve.max_conns = cfg.max_conns;
    let accept = tokio::spawn(conn::serve(listener, serve, handler));
    crate::metrics::info(cfg.node.shard, cfg.node.chain_index);
    let mut core = Core::new(
        LogNode::new(cfg.node.clone(), store.next_position()),
        tx.downgrade(),
    );
    let mut disk = Disk {
        store,
        successor,
        failed: false,
    };
    let stop = async move {
        shutdown.await;
        let _ = tx.send(Event::Stop).await;
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = driver::drive(&mut core, &mut disk, &mut rx, Instant::now()) => {}
        _ = stop => {}
    }
    accept.abort();
    match core.failed {
        Some(why) => anyhow::bail!("the disk failed: {why}"),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Entry, MemStore, StoreError};
    use bytes::Bytes;
    use mason_common::logmsg::{LogItem, LogWrite};

    /// A store whose syncs fail (as fdatasync does after a write-back error).
    struct FailingSync(MemStore);

    impl Storage for FailingSync {
        fn get(&self, pos: u64) -> Result<Option<Entry>, StoreError> {
            self.0.get(pos)
        }
        fn contains(&self, pos: u64) -> bool {
            self.0.contains(pos)
        }
        fn append(&mut self, pos: u64, e: &Entry, repair: bool) -> Result<(), StoreError> {
            self.0.append(pos, e, repair)
        }
        fn sync(&mut self) -> Result<(), StoreError> {
            Err(StoreError::Io {
                path: "seg-00000000.log".into(),
                source: std::io::Error::other("EIO"),
            })
        }
        fn next_position(&self) -> u64 {
            self.0.next_position()
        }
        fn damaged(&self) -> Vec<u64> {
            Vec::new()
        }
    }

    /// A failed fdatasync stops the server: the write is never acknowledged (not as
    /// written, nor as "try again", which would let a retry be acknowledged over pages the
    /// kernel may have dropped), and the server ends with the disk's error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_failed_sync_stops_the_server_unacknowledged() {
        let cfg = NodeConfig {
            shard: 0,
            shards: 1,
            chain_index: 0,
            chain_len: 1,
            max_payload: 1024,
            forward_timeout_us: 1_000_000,
            max_read_bytes: 1 << 20,
        };
        let mut disk = Disk {
            store: FailingSync(MemStore::new()),
            successor: None,
            failed: false,
        };
        let (out, mut client) = conn::outbox(1 << 20, conn::Overflow::Disconnect, "c".into());
        let (tx, mut rx) = driver::inbox(16);
        let mut core = Core::new(LogNode::new(cfg, 0), tx.downgrade());
        tx.send(Event::Open(1, Role::client(1), out)).await.unwrap();
        let w = LogWrite {
            id: 9,
            shard: 0,
            items: vec![LogItem::data(0, Bytes::from_static(b"x"))],
        };
        tx.send(Event::Frame(1, Body::LogWrite(w))).await.unwrap();
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            driver::drive(&mut core, &mut disk, &mut rx, Instant::now()),
        )
        .await
        .expect("the server stops");
        assert!(core.failed.as_deref().is_some_and(|w| w.contains("EIO")));
        assert!(client.try_next().is_none(), "nothing was answered");
    }
}
