//! The proxy runtime: one process hosts replica `r` of the groups of its triple (as Mason
//! ran one replica of 8 groups per proxy machine). Every connection goes through the
//! common connection layer (handshake, limits, bounded queues); every hosted group's
//! [`Replica`] is driven by the common driver on its own task, fed from a bounded inbox.
//!
//! Who may say what here: clients open sessions and send ops, watchers watch, and the two
//! other replicas of this triple (and only they) send Raft messages, each carrying its own
//! replica index. Anything else closes that connection with a logged reason.
//!
//! Outgoing, the process keeps links to its two peers (Raft), to every sequencer (the
//! primary and its backups), with a shared log (CorfuMason) to the head of every log
//! shard's chain, and with ZK-Mason to every shard server (those that answer back are in
//! `server/links.rs`). A group's actions are carried out in order: sends, answers, and the
//! bound-number record, which ends with an end marker when the process stops cleanly; its
//! WAL writes go to the process's one log, shared by its groups (`wal.rs`), through one
//! writer (`server/wal_writer.rs`: group commit across the groups, fdatasync'd when
//! `fsync` is on), which tells each group when its writes are durable, and the replica
//! holds back what depends on them until then.

use crate::replica::{ConnId, Incoming, Replica, ReplicaConfig};
use crate::wal::Wal;
use anyhow::Context;
use bytes::Bytes;
use mason_common::auth::{ClusterKey, Role, RoleKind};
use mason_common::conn::{self, ConnInfo, Handler, LinkConfig, Outbox, SendOnly, ServeConfig};
use mason_common::driver;
use mason_common::logmsg::LogWriteReply;
use mason_common::msg::{Body, Frame, LocalRead, SeqHello, SeqReply};
use mason_common::record::{BoundBatch, RecordWriter};
use mason_common::transport::{Listener, Transport};
use mason_common::zkmsg::{ZkApplied, ZkReadReply};
use raft::Storage;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

mod group;
mod links;
mod metrics;
#[cfg(test)]
mod tests;
mod wal_writer;

use group::{Group, GroupIo};
use links::{Links, LogLink, SeqLink, ZkLink};
use wal_writer::WalWriter;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// This process's replica index, 0..peers.len(), in triple `triple`.
    pub replica: u32,
    pub triple: u32,
    /// The groups this process hosts a replica of.
    pub groups: Vec<u32>,
    /// Every replica process of this triple, by replica index (this one's included).
    pub peers: Vec<SocketAddr>,
    /// Every sequencer's address, by sequencer index (index 0 is the first primary).
    pub sequencers: Vec<SocketAddr>,
    pub data_dir: PathBuf,
    /// Where to write `bound-g<G>-r<R>.bin`, the record of every applied batch.
    pub record_dir: Option<PathBuf>,
    pub fsync: bool,
    /// How long the WAL writer thread (fsync on) polls for work before it sleeps
    /// (`--spin-us`; zero: it sleeps at once).
    pub spin: Duration,
    /// One Raft tick.
    pub tick: Duration,
    /// Template for every hosted replica (group and replica are filled in).
    pub replica_cfg: ReplicaConfig,
    /// The largest frame a peer replica or a sequencer may send.
    pub max_frame: usize,
    /// The largest frame a client may send (an op's payload and its headers).
    pub client_max_frame: usize,
    /// CorfuMason: each log shard's chain of servers, head first (empty: no log).
    pub log_chains: Vec<Vec<SocketAddr>>,
    /// ZK-Mason: each shard's servers (empty: not ZK-Mason).
    pub zk_servers: Vec<Vec<SocketAddr>>,
    pub key: Arc<ClusterKey>,
    /// Connections past their handshake at once.
    pub max_conns: usize,
    /// Bytes queued for one accepted connection before it is closed.
    pub conn_queue: usize,
}

/// What a group's task hears.
enum Event {
    Client {
        conn: ConnId,
        out: Outbox,
        inc: Incoming,
    },
    Watch {
        conn: ConnId,
        out: Outbox,
        ranges_only: bool,
    },
    Read {
        conn: ConnId,
        out: Outbox,
        read: LocalRead,
    },
    /// A watcher's poll of the RSMKeeper watch feed.
    Poll {
        conn: ConnId,
        out: Outbox,
        poll: mason_common::zkmsg::ZkWatchPoll,
    },
    Closed(ConnId),
    /// Frames that arrived together on one connection, for this group, in order (see
    /// [`Conns::frames`]); the permit counts them against the group's bound until handled.
    Many(Vec<Event>, tokio::sync::OwnedSemaphorePermit),
    /// A Raft message from replica `from`.
    Raft(u32, Bytes),
    Seq(SeqReply),
    /// A failover message from a sequencer (heartbeat echo, switch, fill, activate).
    SeqOther(Body),
    SeqConnected,
    LogReply(LogWriteReply),
    ZkApplied(ZkApplied),
    ZkReadReply(ZkReadReply),
    /// The process's WAL writer made this group's writes up to this Raft ready durable.
    Persisted(u64),
    /// `mason status`: this replica's view of its group.
    Status(tokio::sync::oneshot::Sender<mason_common::statusmsg::GroupStatus>),
    Shutdown,
}

type Inboxes = Arc<HashMap<u32, mpsc::Sender<Event>>>;

/// Events a group's inbox holds before its senders wait; and, apart, the frames it holds
/// in [`Event::Many`] at most.
const INBOX: usize = 8192;
/// How often a group's record is flushed to its file.
const RECORD_FLUSH_US: u64 = 100_000;

/// Runs the process until `shutdown` resolves; then every group ends its record cleanly.
pub async fn run(
    cfg: ServerConfig,
    transport: Arc<dyn Transport>,
    listener: Box<dyn Listener>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data dir {}", cfg.data_dir.display()))?;
    let me = Role::proxy(cfg.replica, cfg.triple);
    let mut senders = HashMap::new();
    let mut receivers = Vec::new();
    for &g in &cfg.groups {
        let (tx, rx) = driver::inbox(INBOX);
        senders.insert(g, tx);
        receivers.push((g, rx));
    }
    let inboxes: Inboxes = Arc::new(senders);

    let mut peer_links = Vec::new();
    for (i, addr) in cfg.peers.iter().enumerate() {
        if i as u32 == cfg.replica {
            peer_links.push(None);
            continue;
        }
        let lc = LinkConfig::new(
            cfg.key.clone(),
            me.clone(),
            Role::proxy(i as u32, cfg.triple),
            cfg.max_frame,
        );
        peer_links.push(Some(conn::spawn_link(
            transport.clone(),
            *addr,
            lc,
            Arc::new(SendOnly),
        )));
    }
    let mut seq_links = Vec::new();
    for (i, addr) in cfg.sequencers.iter().enumerate() {
        let lc = LinkConfig::new(
            cfg.key.clone(),
            me.clone(),
            Role::sequencer(i as u32),
            cfg.max_frame,
        );
        let h = SeqLink {
            inboxes: inboxes.clone(),
            hello: SeqHello {
                replica: cfg.replica,
                groups: cfg.groups.clone(),
            },
        };
        seq_links.push(conn::spawn_link(transport.clone(), *addr, lc, Arc::new(h)));
    }
    let mut log_links = Vec::new();
    for (shard, chain) in cfg.log_chains.iter().enumerate() {
        let Some(head) = chain.first() else {
            anyhow::bail!("a log shard with no servers");
        };
        let lc = LinkConfig::new(
            cfg.key.clone(),
            me.clone(),
            Role::log_server(shard as u32, 0),
            cfg.max_frame,
        );
        let h = LogLink {
            inboxes: inboxes.clone(),
        };
        log_links.push(conn::spawn_link(transport.clone(), *head, lc, Arc::new(h)));
    }
    let mut zk_links = Vec::new();
    for (shard, servers) in cfg.zk_servers.iter().enumerate() {
        let mut row = Vec::new();
        for (i, addr) in servers.iter().enumerate() {
            let lc = LinkConfig::new(
                cfg.key.clone(),
                me.clone(),
                Role::zk_server(shard as u32, i as u32),
                cfg.max_frame,
            );
            let h = ZkLink {
                inboxes: inboxes.clone(),
            };
            row.push(conn::spawn_link(transport.clone(), *addr, lc, Arc::new(h)));
        }
        zk_links.push(row);
    }
    let links = Arc::new(Links {
        peers: peer_links,
        seqs: seq_links,
        logs: log_links,
        zk: zk_links,
    });

    let hosted: Vec<u32> = receivers.iter().map(|(g, _)| *g).collect();
    let (wal, mut stores) = Wal::open(
        &cfg.data_dir,
        cfg.fsync,
        &hosted,
        (1..=cfg.peers.len() as u64).collect(),
    )
    .context("opening the wal")?;
    let mut told = wal_writer::Groups::new();
    for &g in &hosted {
        let Some(inbox) = inboxes.get(&g).cloned() else {
            anyhow::bail!("group {g} has no inbox");
        };
        told.insert(g, (inbox, metrics::GroupMetrics::new(g)));
    }
    let mut writer = WalWriter::spawn(wal, cfg.fsync, cfg.spin, metrics::WalMetrics::new(), told)
        .context("starting the wal writer")?;
    let mut tasks = Vec::new();
    for (g, mut rx) in receivers {
        let Some(storage) = stores.remove(&g) else {
            anyhow::bail!("the wal has no storage for group {g}");
        };
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
        rcfg.sequencers = cfg.sequencers.len().max(1) as u32;
        // First elections go round the triple's replicas (its i-th group's at replica
        // i mod 3), so that leaders, and their work, spread over its processes.
        let nth = hosted.iter().position(|h| *h == g).unwrap_or(0) as u32;
        rcfg.campaign_on_start = fresh && cfg.replica == nth % rcfg.replicas.max(1);
        rcfg.log_shards = cfg.log_chains.len() as u32;
        rcfg.zk_servers = cfg.zk_servers.iter().map(|s| s.len() as u32).collect();
        rcfg.tick_us = cfg.tick.as_micros() as u64;
        let replica = Replica::new(rcfg, storage).context("starting raft")?;
        let record = match &cfg.record_dir {
            // Appended to across restarts: records carry their Raft index, and a replica
            // restarted from a snapshot resumes at a later one.
            Some(d) => Some(RecordWriter::open_append::<BoundBatch>(
                &d.join(format!("bound-g{g}-r{}.bin", cfg.replica)),
            )?),
            None => None,
        };
        let gm = metrics::GroupMetrics::new(g);
        let mut group = Group {
            metrics: gm.clone(),
            inbox: inboxes.get(&g).map(|tx| tx.downgrade()),
            replica,
            conns: HashMap::new(),
            watchers: Vec::new(),
            tick: cfg.tick.as_micros() as u64,
            next_tick: 0,
            next_flush: 0,
            stopped: false,
            acts: Vec::new(),
        };
        let mut io = GroupIo {
            group: g,
            wal: writer.handle(g),
            record,
            links: links.clone(),
            metrics: gm.clone(),
        };
        let tree_file = cfg
            .record_dir
            .as_ref()
            .map(|d| d.join(format!("tree-g{g}-r{}.snap", cfg.replica)));
        tasks.push(tokio::spawn(async move {
            driver::drive(&mut group, &mut io, &mut rx, Instant::now()).await;
            // The writer reports to no one now (it finishes when every group has).
            drop(rx);
            if let Some(r) = io.record.take() {
                if let Err(e) = r.finish() {
                    tracing::error!(group = g, error = %e, "ending the bound record");
                }
            }
            // RSMKeeper: the tree as this replica ends, for the checker to compare.
            if let (Some(path), Some(tree)) = (tree_file, group.replica.tree()) {
                if let Err(e) = std::fs::write(&path, tree.snapshot()) {
                    tracing::error!(group = g, error = %e, "writing the final tree");
                }
            }
        }));
    }

    let handler = Arc::new(Conns {
        inboxes: inboxes.clone(),
        frame_permits: cfg
            .groups
            .iter()
            .map(|&g| (g, Arc::new(tokio::sync::Semaphore::new(INBOX))))
            .collect(),
        replica: cfg.replica,
        triple: cfg.triple,
        replicas: cfg.peers.len() as u32,
        max_frame: cfg.max_frame,
        client_max_frame: cfg.client_max_frame,
    });
    let mut serve = ServeConfig::new(cfg.key.clone(), me);
    serve.max_conns = cfg.max_conns;
    serve.out_limit = cfg.conn_queue;
    let accept = tokio::spawn(conn::serve(listener, serve, handler));
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
    };
    tokio::pin!(watch);
    tokio::select! {
        _ = shutdown => {}
        _ = &mut watch => {}
    }
    accept.abort();
    for tx in inboxes.values() {
        let _ = tx.send(Event::Shutdown).await;
    }
    watch.await;
    // Whatever the writer still holds goes to disk. On a current-thread runtime this
    // thread simply waits: the writer needs only the disk (it reports with `try_send`).
    match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::CurrentThread => writer.finish(),
        _ => tokio::task::block_in_place(|| writer.finish()),
    }
    Ok(())
}

/// Accepted connections: clients, watchers, and this triple's other replicas.
struct Conns {
    inboxes: Inboxes,
    /// Per group, the frames its inbox may hold in [`Event::Many`].
    frame_permits: HashMap<u32, Arc<tokio::sync::Semaphore>>,
    replica: u32,
    triple: u32,
    replicas: u32,
    max_frame: usize,
    client_max_frame: usize,
}

impl Conns {
    async fn to_group(&self, group: u32, ev: Event) -> Result<(), String> {
        let Some(tx) = self.inboxes.get(&group) else {
            return Err(format!("group {group} is not hosted here"));
        };
        tx.send(ev)
            .await
            .map_err(|_| "the proxy is stopping".to_string())
    }

    async fn hand_over(&self, per_group: Vec<(u32, Vec<Event>)>) -> Result<(), String> {
        for (group, evs) in per_group {
            self.to_group_many(group, evs).await?;
        }
        Ok(())
    }

    /// Frames for `group` that arrived together, handed over as one event.
    async fn to_group_many(&self, group: u32, mut evs: Vec<Event>) -> Result<(), String> {
        if evs.len() == 1 {
            if let Some(ev) = evs.pop() {
                return self.to_group(group, ev).await;
            }
        }
        let Some(permits) = self.frame_permits.get(&group) else {
            return Err(format!("group {group} is not hosted here"));
        };
        // At most `MAX_FRAMES_AT_ONCE` frames, far fewer than the permits: this is granted.
        let n = u32::try_from(evs.len()).unwrap_or(u32::MAX);
        let permit = permits
            .clone()
            .acquire_many_owned(n)
            .await
            .map_err(|_| "the proxy is stopping".to_string())?;
        self.to_group(group, Event::Many(evs, permit)).await
    }

    /// The event a frame from connection `c` makes, and the group it goes to (`None`: a
    /// status request, answered here).
    fn event(
        &self,
        c: &ConnInfo,
        out: &Outbox,
        body: Body,
    ) -> Result<Option<(u32, Event)>, String> {
        let conn = c.id;
        let routed = match (c.role.role_kind(), body) {
            (RoleKind::Client, Body::ClientOp(op)) => {
                let group = op.group;
                let out = out.clone();
                let inc = Incoming::Op(op);
                (group, Event::Client { conn, out, inc })
            }
            (RoleKind::Client, Body::Register(r)) => {
                let group = r.group;
                let out = out.clone();
                let inc = Incoming::Register(r);
                (group, Event::Client { conn, out, inc })
            }
            (RoleKind::Client, Body::LocalRead(read)) => {
                let group = read.group;
                let out = out.clone();
                (group, Event::Read { conn, out, read })
            }
            (RoleKind::Watcher, Body::Watch(w)) => {
                let ev = Event::Watch {
                    conn,
                    out: out.clone(),
                    ranges_only: w.ranges_only,
                };
                (w.group, ev)
            }
            // The RSMKeeper group is group 0.
            (RoleKind::Watcher, Body::ZkWatchPoll(poll)) => {
                let out = out.clone();
                (0, Event::Poll { conn, out, poll })
            }
            (RoleKind::Watcher, Body::StatusRequest(_)) => return Ok(None),
            (RoleKind::Proxy, Body::Raft(m)) => (m.group, Event::Raft(c.role.replica, m.data)),
            (_, body) => return Err(format!("{} may not send a {} here", c.role, body.name())),
        };
        // Refused here, in the frames' order (not when a batch of them is handed over).
        if !self.inboxes.contains_key(&routed.0) {
            return Err(format!("group {} is not hosted here", routed.0));
        }
        Ok(Some(routed))
    }

    /// Answers a `StatusRequest` with every hosted group's view (a group that does not
    /// answer within a second is left out).
    async fn status(&self, out: &Outbox) -> Result<(), String> {
        use mason_common::statusmsg::StatusReply;
        let mut groups: Vec<u32> = self.inboxes.keys().copied().collect();
        groups.sort_unstable();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        let mut reply = StatusReply::default();
        for g in groups {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let ask = async {
                self.to_group(g, Event::Status(tx)).await?;
                Ok::<_, String>(rx.await.ok())
            };
            match tokio::time::timeout_at(deadline, ask).await {
                Ok(Ok(Some(s))) => reply.groups.push(s),
                Ok(Err(why)) => return Err(why),
                _ => {}
            }
        }
        out.send(Frame::new(Body::StatusReply(Box::new(reply))))
            .map_err(|e| format!("answering a status request: {e}"))
    }
}

impl Handler for Conns {
    fn admit(&self, role: &Role) -> Result<usize, String> {
        match role.role_kind() {
            RoleKind::Client => Ok(self.client_max_frame),
            RoleKind::Watcher => Ok(4 << 10),
            RoleKind::Proxy
                if role.triple == self.triple
                    && role.replica < self.replicas
                    && role.replica != self.replica =>
            {
                Ok(self.max_frame)
            }
            RoleKind::Proxy => Err("not a peer of this replica".into()),
            _ => Err("only clients, watchers and this triple's replicas talk to a proxy".into()),
        }
    }

    async fn open(&self, _: &ConnInfo, _: Outbox) {}

    async fn frame(&self, c: &ConnInfo, out: &Outbox, body: Body) -> Result<(), String> {
        match self.event(c, out, body)? {
            Some((group, ev)) => self.to_group(group, ev).await,
            None => self.status(out).await,
        }
    }

    /// Frames that arrived together: one hand-off per group they are for, in their order
    /// (a status request waits for the frames before it). Those before a refused frame
    /// are handed over before the connection closes.
    async fn frames(&self, c: &ConnInfo, out: &Outbox, bodies: Vec<Body>) -> Result<(), String> {
        let mut per_group: Vec<(u32, Vec<Event>)> = Vec::new();
        for body in bodies {
            let routed = match self.event(c, out, body) {
                Ok(r) => r,
                Err(why) => {
                    self.hand_over(per_group).await?;
                    return Err(why);
                }
            };
            match routed {
                Some((group, ev)) => match per_group.iter_mut().find(|(g, _)| *g == group) {
                    Some((_, evs)) => evs.push(ev),
                    None => per_group.push((group, vec![ev])),
                },
                None => {
                    self.hand_over(std::mem::take(&mut per_group)).await?;
                    self.status(out).await?;
                }
            }
        }
        self.hand_over(per_group).await
    }

    async fn close(&self, c: &ConnInfo) {
        for tx in self.inboxes.values() {
            let _ = tx.send(Event::Closed(c.id)).await;
        }
    }
}
