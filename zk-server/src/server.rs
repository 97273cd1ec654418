//! Drives a [`ZkNode`] on real sockets and a real disk. Proxies connect to deliver and
//! ask; this server links to every other shard server and sends it views, pulls,
//! fetches and fetch answers over that link (so everything a server hears from another
//! arrives on an accepted connection). One driver feeds the node each queued event,
//! carries out its actions in order, and syncs once per burst (group commit). A failed
//! append or sync stops the server: nothing written since may be acknowledged.
//!
//! Who may say what: proxies deliver and query; servers of other shards send views and
//! pulls; peers of this shard fetch and answer fetches; watchers (ZooKeeper front ends)
//! poll the watch feed and (`mason status`) ask for the server's status, in small frames.
//! Anything else closes that connection with a logged reason.

use crate::node::{ConnId, NodeAction, NodeConfig, ZkNode};
use crate::store::{self, run_store_action, Done};
use mason_common::auth::{ClusterKey, Role, RoleKind};
use mason_common::conn::{self, ConnInfo, Handler, LinkConfig, LinkHandler, Outbox, ServeConfig};
use mason_common::driver::{self, Executor, Machine};
use mason_common::msg::{Body, Frame};
use mason_common::transport::{Listener, Transport};
use mason_corfu_server::disk::{DiskOptions, DiskStore};
use mason_corfu_server::storage::Storage;
use mason_zk::DataTree;
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
    /// Every shard server's address, by shard, then index.
    pub servers: Vec<Vec<SocketAddr>>,
    pub max_frame: usize,
    pub key: Arc<ClusterKey>,
    pub max_conns: usize,
    /// Where to write this server's tree at a clean stop (`zk-s<S>-r<I>.snap`).
    pub record_dir: Option<PathBuf>,
}

enum Event {
    Open(ConnId, Role, Outbox),
    Close(ConnId),
    Frame(ConnId, Body),
    Done(Done),
    DiskFailed(String),
    Stop,
}

enum Action {
    Node(NodeAction),
    Send(Outbox, Frame),
    Close(Outbox, String),
}

struct Core {
    node: ZkNode,
    conns: HashMap<ConnId, (Role, Outbox)>,
    outs: Vec<NodeAction>,
    next_stats: u64,
    stopped: bool,
    failed: Option<String>,
    next_sample: u64,
    /// The inbox, to sample its depth (weak: it does not keep the inbox open).
    inbox: mpsc::WeakSender<Event>,
}

const STATS_US: u64 = 10_000_000;
/// A watcher sends only polls: small frames.
const WATCHER_MAX_FRAME: usize = 4 << 10;

impl Core {
    fn route(&mut self, out: &mut Vec<Action>) {
        for a in self.outs.drain(..) {
            match a {
                NodeAction::Send { conn, body } => {
                    if let Some((_, o)) = self.conns.get(&conn) {
                        out.push(Action::Send(o.clone(), Frame::new(body)));
                    }
                }
                other => out.push(Action::Node(other)),
            }
        }
    }

    fn frame(&mut self, id: ConnId, body: Body, out: &mut Vec<Action>) {
        let Some((role, _)) = self.conns.get(&id) else {
            return;
        };
        let (kind, shard, index) = (role.role_kind(), role.shard, role.index);
        let me = self.node.config().shard;
        let n = &mut self.node;
        let o = &mut self.outs;
        match (kind, body) {
            (RoleKind::Proxy, Body::ZkDeliver(d)) => n.on_deliver(id, d, o),
            (RoleKind::Proxy, Body::ZkQuery(q)) => n.on_query(id, q, o),
            (RoleKind::Proxy, Body::ZkRead(r)) => n.on_read(id, r, o),
            (RoleKind::ZkServer, Body::ZkView(v)) if shard != me && v.shard == shard => {
                n.on_view(v, o)
            }
            (RoleKind::ZkServer, Body::ZkViewPull(p)) if shard != me => {
                n.on_view_pull(shard, index, p, o)
            }
            (RoleKind::ZkServer, Body::ZkFetch(f)) if shard == me => n.on_fetch(index, f, o),
            (RoleKind::ZkServer, Body::ZkFetchReply(r)) if shard == me => n.on_fetch_reply(r, o),
            (RoleKind::Watcher, Body::ZkWatchPoll(p)) => n.on_watch_poll(id, p, o),
            (RoleKind::Watcher, Body::StatusRequest(_)) => {
                let reply = mason_common::statusmsg::StatusReply {
                    zk_server: Some(n.status()),
                    ..Default::default()
                };
                o.push(NodeAction::Send {
                    conn: id,
                    body: Body::StatusReply(Box::new(reply)),
                });
            }
            (_, other) => {
                if let Some((role, c)) = self.conns.remove(&id) {
                    n.on_closed(id);
                    out.push(Action::Close(
                        c,
                        format!("{role} may not send a {} here", other.name()),
                    ));
                }
            }
        }
    }
}

impl Machine for Core {
    type Event = Event;
    type Action = Action;

    fn on_event(&mut self, ev: Event, now: u64, out: &mut Vec<Action>) {
        if self.failed.is_some() {
            return;
        }
        self.node.tick(now, &mut self.outs);
        match ev {
            Event::Open(id, role, o) => {
                self.conns.insert(id, (role, o));
            }
            Event::Close(id) => {
                self.conns.remove(&id);
                self.node.on_closed(id);
            }
            Event::Frame(id, body) => self.frame(id, body, out),
            Event::Done(Done::Looked(t, found)) => self.node.on_looked(t, found, &mut self.outs),
            Event::Done(Done::Synced(g)) => self.node.on_synced(g, &mut self.outs),
            Event::Done(Done::Nothing) => {}
            Event::DiskFailed(why) => {
                self.outs.clear();
                out.clear();
                self.failed = Some(why);
                self.stopped = true;
                return;
            }
            Event::Stop => self.stopped = true,
        }
        self.route(out);
    }

    fn on_time(&mut self, now: u64, out: &mut Vec<Action>) {
        if self.failed.is_some() {
            return;
        }
        self.node.tick(now, &mut self.outs);
        self.node.flush(&mut self.outs);
        self.route(out);
        if mason_common::metrics::due(&mut self.next_sample, now) {
            let m = crate::metrics::get();
            m.sample(&self.node);
            m.inbox.set(mason_common::metrics::queued(&self.inbox));
        }
        if now >= self.next_stats {
            self.next_stats = now + STATS_US;
            let s = &self.node.stats;
            tracing::info!(
                next = self.node.next(),
                ops = s.applied_ops,
                noops = s.applied_noops,
                views_sent = s.views_sent,
                view_pulls = s.view_pulls,
                fetches = s.fetches,
                fetched = s.fetched,
                conflicts = s.conflicts,
                "zk server"
            );
        }
    }

    fn next_deadline(&self) -> Option<u64> {
        Some(self.node.next_deadline().min(self.next_stats))
    }

    fn finished(&self) -> bool {
        self.stopped
    }
}

struct Io<S> {
    store: S,
    dir: PathBuf,
    /// This process's links to the other servers, by shard and index.
    links: Vec<Vec<Option<Outbox>>>,
    failed: bool,
}

impl<S: Storage> Executor<Core> for Io<S> {
    fn execute(&mut self, a: Action, feedback: &mut Vec<Event>) {
        if self.failed {
            return;
        }
        match a {
            Action::Close(o, why) => {
                conn::log_close(o.peer(), &why);
                o.close();
            }
            Action::Send(o, f) => {
                let _ = o.send(f);
            }
            Action::Node(NodeAction::ToServer { shard, index, body }) => {
                let link = self
                    .links
                    .get(shard as usize)
                    .and_then(|s| s.get(index as usize));
                if let Some(Some(o)) = link {
                    let _ = o.send(Frame::new(body));
                }
            }
            Action::Node(a) => {
                let sync = matches!(a, NodeAction::Sync(_) | NodeAction::Snapshot { .. });
                let snapshot = matches!(a, NodeAction::Snapshot { .. });
                let (store, dir) = (&mut self.store, &self.dir);
                let t = Instant::now();
                let r = if sync {
                    tokio::task::block_in_place(|| run_store_action(store, dir, a))
                } else {
                    run_store_action(store, dir, a)
                };
                match (snapshot, sync) {
                    (true, _) => crate::metrics::get().snapshot(t.elapsed()),
                    (false, true) => crate::metrics::get().synced(t.elapsed()),
                    _ => {}
                }
                match r {
                    Ok(Done::Nothing) => {}
                    Ok(d) => feedback.push(Event::Done(d)),
                    Err(e) => {
                        tracing::error!(error = %e, "the disk failed; stopping");
                        self.failed = true;
                        feedback.push(Event::DiskFailed(e));
                    }
                }
            }
        }
    }
}

struct Conns {
    inbox: mpsc::Sender<Event>,
    shards: u32,
    max_frame: usize,
}

impl Handler for Conns {
    fn admit(&self, role: &Role) -> Result<usize, String> {
        match role.role_kind() {
            RoleKind::Proxy => Ok(self.max_frame),
            RoleKind::ZkServer if role.shard < self.shards => Ok(self.max_frame),
            RoleKind::Watcher => Ok(WATCHER_MAX_FRAME),
            _ => Err("only proxies, watchers and other zk servers talk to a zk server".into()),
        }
    }

    async fn open(&self, c: &ConnInfo, out: Outbox) {
        let _ = self
            .inbox
            .send(Event::Open(c.id, c.role.clone(), out))
            .await;
    }

    async fn frame(&self, c: &ConnInfo, _: &Outbox, body: Body) -> Result<(), String> {
        self.inbox
            .send(Event::Frame(c.id, body))
            .await
            .map_err(|_| "the zk server is stopping".to_string())
    }

    async fn close(&self, c: &ConnInfo) {
        let _ = self.inbox.send(Event::Close(c.id)).await;
    }
}

/// A link to another server: it never answers on it.
struct Peer;

impl LinkHandler for Peer {
    async fn up(&self, _: &Role, _: &Outbox) {}

    async fn frame(&self, body: Body) -> Result<(), String> {
        Err(format!("a zk server sent a {} on a link", body.name()))
    }
}

/// Opens the store, recovers the tree, and serves until `shutdown`.
pub async fn serve(
    listener: Box<dyn Listener>,
    transport: Arc<dyn Transport>,
    cfg: ServerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.dir)?;
    let opts = DiskOptions {
        segment_bytes: 64 << 20,
        max_payload: cfg.max_frame,
        sync: cfg.fsync,
    };
    let (store, report) = DiskStore::open(&cfg.dir, opts)?;
    let (shard, shards, index) = (cfg.node.shard, cfg.node.shards, cfg.node.index);
    let (tree, next) = match store::read_snapshot(&cfg.dir)? {
        Some(x) => x,
        None => (DataTree::new_shard(shard, shards), 0),
    };
    let mut node = ZkNode::new(cfg.node.clone(), tree, next);
    let replayed = store::replay(&store, &mut node)?;
    tracing::info!(
        dir = %cfg.dir.display(),
        snapshot_next = next,
        replayed,
        next = node.next(),
        torn_tail = ?report.torn_tail,
        corrupt = report.corrupt.len(),
        "zk server recovered"
    );
    let me = Role::zk_server(shard, index);
    let (tx, mut rx) = driver::inbox(16_384);
    crate::metrics::info(shard, index);
    let mut links = Vec::new();
    for (s, addrs) in cfg.servers.iter().enumerate() {
        let mut row = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
            if s as u32 == shard && i as u32 == index {
                row.push(None);
                continue;
            }
            let lc = LinkConfig::new(
                cfg.key.clone(),
                me.clone(),
                Role::zk_server(s as u32, i as u32),
                cfg.max_frame,
            );
            row.push(Some(conn::spawn_link(
                transport.clone(),
                *addr,
                lc,
                Arc::new(Peer),
            )));
        }
        links.push(row);
    }
    let handler = Arc::new(Conns {
        inbox: tx.clone(),
        shards,
        max_frame: cfg.max_frame,
    });
    let mut serve = ServeConfig::new(cfg.key.clone(), me);
    serve.max_conns = cfg.max_conns;
    let accept = tokio::spawn(conn::serve(listener, serve, handler));
    let mut core = Core {
        node,
        conns: HashMap::new(),
        outs: Vec::new(),
        next_stats: STATS_US,
        stopped: false,
        failed: None,
        next_sample: 0,
        inbox: tx.downgrade(),
    };
    let mut io = Io {
        store,
        dir: cfg.dir.clone(),
        links,
        failed: false,
    };
    let stop = async move {
        shutdown.await;
        let _ = tx.send(Event::Stop).await;
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = driver::drive(&mut core, &mut io, &mut rx, Instant::now()) => {}
        _ = stop => {}
    }
    accept.abort();
    if let Some(why) = core.failed {
        anyhow::bail!("the disk failed: {why}");
    }
    if let Some(d) = &cfg.record_dir {
        let path = d.join(format!("zk-s{shard}-r{index}.snap"));
        std::fs::write(&path, core.node.tree().shard_snapshot())
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}
