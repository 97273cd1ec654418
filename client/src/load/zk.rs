//! The ZooKeeper workload (RSMKeeper): every client thread opens a ZooKeeper session
//! ([`ZkClient`]), creates the shared znodes `/z{k % 16}/n{k}` (all threads use the same
//! paths, so they contend), then keeps `concurrency` setData and/or getData ops on random
//! znodes in flight, measured as the bare workload is. Every acknowledged op goes into the
//! thread's history (`ZkHistoryChunk`s, streamed to the history file as they fill) for the
//! per-znode linearizability check.

use super::{
    client_id_of, group_of, new_histogram, shared_clients, target, LoadConfig, LoadResult,
    ReadStats, Window,
};
use crate::driver::{Client, ClientConfig};
use crate::zk::{ZkClient, ZkError};
use bytes::Bytes;
use futures::StreamExt;
use hdrhistogram::Histogram;
use mason_common::record::{monotonic_us, RecordWriter, ZkHistoryChunk};
use mason_common::transport::Transport;
use mason_zk::{Code, CreateMode, Stat};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which ops a ZooKeeper run measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZkWorkload {
    /// Only setData.
    SetData,
    /// Only getData.
    GetData,
    /// setData with probability `write_percent`%, getData otherwise.
    Mixed,
}

impl std::str::FromStr for ZkWorkload {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "setdata" => Ok(ZkWorkload::SetData),
            "getdata" => Ok(ZkWorkload::GetData),
            "mixed" => Ok(ZkWorkload::Mixed),
            _ => Err(format!("'{s}' is not setdata, getdata or mixed")),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ZkLoad {
    pub workload: ZkWorkload,
    /// Used by `Mixed`: the percentage of ops that are setData.
    pub write_percent: u32,
    /// The shared znodes `/z{k % 16}/n{k}`, k in `0..znodes` (at least one).
    pub znodes: u32,
    pub session_timeout_ms: i32,
    /// Where every thread's acknowledged ops go (appended to, ended cleanly); kept in
    /// [`LoadResult::zk_history`] when there is none.
    pub history_file: Option<PathBuf>,
    /// ZK-Mason's shard count (0: RSMKeeper).
    pub shards: u32,
    /// Reads answered without the log (`--zk-reads local`).
    pub local_reads: bool,
}

impl ZkLoad {
    /// Whether the next op is a setData.
    fn pick_write(&self, rng: &mut impl Rng) -> bool {
        match self.workload {
            ZkWorkload::SetData => true,
            ZkWorkload::GetData => false,
            ZkWorkload::Mixed => rng.gen_range(0..100) < self.write_percent,
        }
    }

    fn znodes(&self) -> u32 {
        self.znodes.max(1)
    }
}

/// The parent of znode `k`.
pub fn parent_path(k: u32) -> String {
    format!("/z{}", k % 16)
}

/// The path of znode `k`.
pub fn node_path(k: u32) -> String {
    format!("/z{}/n{k}", k % 16)
}

/// Ops per history chunk before it is written out.
const HISTORY_CHUNK: usize = 16 * 1024;

type HistorySink = Arc<Mutex<RecordWriter>>;

/// One thread's history: the chunk being filled, and (with no file) the full ones.
struct History {
    chunk: ZkHistoryChunk,
    done: Vec<ZkHistoryChunk>,
    sink: Option<HistorySink>,
    error: Option<String>,
}

impl History {
    fn new(client: u64, sink: Option<HistorySink>) -> History {
        History {
            chunk: ZkHistoryChunk {
                client,
                ..ZkHistoryChunk::default()
            },
            done: Vec::new(),
            sink,
            error: None,
        }
    }

    fn op(&mut self, path: &str, stat: &Stat, write: bool, sent_us: u64, answered_us: u64) {
        let c = &mut self.chunk;
        c.paths.push(path.to_string());
        c.czxids.push(stat.czxid);
        c.writes.push(write);
        c.versions.push(stat.version);
        c.sent_us.push(sent_us);
        c.answered_us.push(answered_us);
        if c.paths.len() >= HISTORY_CHUNK {
            self.spill();
        }
    }

    /// Writes the chunk out (or keeps it, with no file) and starts a new one.
    fn spill(&mut self) {
        let client = self.chunk.client;
        let chunk = std::mem::replace(
            &mut self.chunk,
            ZkHistoryChunk {
                client,
                ..ZkHistoryChunk::default()
            },
        );
        let empty =
            chunk.paths.is_empty() && chunk.created.is_empty() && chunk.closed_sessions.is_empty();
        if empty {
            return;
        }
        let Some(sink) = &self.sink else {
            self.done.push(chunk);
            return;
        };
        let r = match sink.lock() {
            Ok(mut w) => w.append(&chunk),
            Err(_) => Err(std::io::Error::other("the history file's lock is poisoned")),
        };
        if let Err(e) = r {
            tracing::error!(error = %e, "writing the ZooKeeper history");
            self.error.get_or_insert(e.to_string());
        }
    }
}

/// One thread's measurements and history.
struct Stats {
    hist: Histogram<u64>,
    ops: u64,
    errors: u64,
    history: History,
}

impl Stats {
    fn error(&mut self, what: &str, e: &ZkError) {
        self.errors += 1;
        tracing::debug!(error = %e, "{what} failed");
    }
}

struct Thread {
    client: Client,
    zk: Option<Arc<ZkClient>>,
    stats: Arc<Mutex<Stats>>,
}

/// Runs the ZooKeeper workload `z` (see the module's doc).
pub(super) async fn run(transport: Arc<dyn Transport>, cfg: LoadConfig, z: ZkLoad) -> LoadResult {
    let mut history_error = None;
    let sink: Option<HistorySink> = match &z.history_file {
        Some(p) => match RecordWriter::open_append::<ZkHistoryChunk>(p) {
            Ok(w) => Some(Arc::new(Mutex::new(w))),
            Err(e) => {
                history_error = Some(format!("creating {}: {e}", p.display()));
                None
            }
        },
        None => None,
    };
    let payload = Bytes::from(vec![0xa5u8; cfg.payload]);
    let mut threads = Vec::new();
    let mut setups = Vec::new();
    let mut shared = if cfg.shared_conns {
        shared_clients(&transport, &cfg)
    } else {
        std::collections::HashMap::new()
    };
    for t in 0..cfg.threads {
        let client_id = client_id_of(&cfg, t);
        let group = group_of(&cfg, t);
        let shared = shared.get_mut(&group).and_then(|q| q.pop_front());
        let client = shared.unwrap_or_else(|| {
            Client::start(
                transport.clone(),
                ClientConfig {
                    client_id,
                    target: target(&cfg, group),
                    retry_timeout: cfg.retry_timeout,
                    window: cfg.concurrency,
                    key: cfg.key.clone(),
                },
            )
        });
        let stats = Arc::new(Mutex::new(Stats {
            hist: new_histogram(),
            ops: 0,
            errors: 0,
            history: History::new(client_id, sink.clone()),
        }));
        let (c, s, z2, p) = (client.clone(), stats.clone(), z.clone(), payload.clone());
        let width = cfg.concurrency.max(1) as usize;
        setups.push(tokio::spawn(
            async move { setup(c, &z2, &s, p, width).await },
        ));
        threads.push(Thread {
            client,
            zk: None,
            stats,
        });
    }
    // Setting up is not measured; a group that never answers must not hang the run.
    let setup_end = tokio::time::Instant::now() + cfg.warmup + cfg.duration + cfg.drain;
    for (th, s) in threads.iter_mut().zip(setups) {
        let abort = s.abort_handle();
        match tokio::time::timeout_at(setup_end, s).await {
            Ok(Ok(zk)) => th.zk = zk.map(Arc::new),
            Ok(Err(e)) => tracing::error!(error = %e, "a ZooKeeper setup task failed"),
            Err(_) => {
                abort.abort();
                tracing::error!("a ZooKeeper session was not set up in time");
            }
        }
    }

    let win = Window::starting_now(&cfg);
    let stop = win.stop;
    let clients: Vec<Client> = threads.iter().map(|th| th.client.clone()).collect();
    let resends =
        super::metrics::sample_resends(move || clients.iter().map(Client::retransmissions).sum());
    let mut tasks = Vec::new();
    for (t, th) in threads.iter().enumerate() {
        let Some(zk) = &th.zk else { continue };
        for c in 0..cfg.concurrency {
            let (zk, stats, z, payload) =
                (zk.clone(), th.stats.clone(), z.clone(), payload.clone());
            let seed = (u64::from(cfg.index) * 65536 + t as u64 + 1) * 1000 + u64::from(c);
            let mut rng = StdRng::seed_from_u64(seed);
            tasks.push(tokio::spawn(async move {
                while Instant::now() < stop && !zk.is_expired() {
                    let path = node_path(rng.gen_range(0..z.znodes()));
                    let write = z.pick_write(&mut rng);
                    let t0 = Instant::now();
                    let sent = monotonic_us();
                    let r = if write {
                        zk.set_data(&path, payload.clone(), -1).await
                    } else {
                        zk.get_data(&path).await.map(|(_, stat)| stat)
                    };
                    let answered = monotonic_us();
                    let t1 = Instant::now();
                    let Ok(mut s) = stats.lock() else {
                        return;
                    };
                    match r {
                        Ok(stat) => s.history.op(&path, &stat, write, sent, answered),
                        Err(e) => {
                            s.error(if write { "setData" } else { "getData" }, &e);
                            super::metrics::get().failed();
                            continue;
                        }
                    }
                    let s = &mut *s;
                    win.measure(t0, t1, &mut s.ops, &mut s.hist);
                }
            }));
        }
    }
    let unanswered = win.drain(tasks, cfg.drain).await;
    // Close every live session; a close counts only if it was acknowledged.
    let close_wait = cfg.drain.max(Duration::from_secs(1));
    let closes = threads.iter().map(|th| {
        let zk = th.zk.clone();
        async move {
            let zk = zk.filter(|zk| !zk.is_expired())?;
            match tokio::time::timeout(close_wait, zk.close()).await {
                Ok(Ok(())) => Some(zk.session()),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "closeSession failed");
                    None
                }
                Err(_) => {
                    tracing::debug!("closeSession was not answered in time");
                    None
                }
            }
        }
    });
    let closed = futures::future::join_all(closes).await;

    let mut result = LoadResult {
        ops: 0,
        hist: new_histogram(),
        re_tx: threads.iter().map(|th| th.client.retransmissions()).sum(),
        window: cfg.duration,
        acks: Vec::new(),
        acks_error: history_error,
        unanswered,
        reads: ReadStats::default(),
        errors: 0,
        zk_history: Vec::new(),
    };
    resends.abort();
    super::metrics::get().resends(result.re_tx);
    super::metrics::get().unanswered.set(unanswered as i64);
    for (th, closed) in threads.into_iter().zip(closed) {
        let Ok(mut s) = th.stats.lock() else {
            result
                .acks_error
                .get_or_insert("a thread's lock is poisoned".into());
            continue;
        };
        if let Some(session) = closed {
            s.history.chunk.closed_sessions.push(session);
        }
        s.history.spill();
        result.ops += s.ops;
        result.errors += s.errors;
        let _ = result.hist.add(&s.hist);
        result.zk_history.append(&mut s.history.done);
        if let Some(e) = s.history.error.take() {
            result.acks_error.get_or_insert(e);
        }
        // Drop the thread's handle on the file, so that it can be ended below.
        s.history.sink = None;
    }
    if let Some(sink) = sink.and_then(|s| Arc::try_unwrap(s).ok()) {
        let r = sink
            .into_inner()
            .map_err(|_| std::io::Error::other("the history file's lock is poisoned"))
            .and_then(RecordWriter::finish);
        if let Err(e) = r {
            result.acks_error.get_or_insert(e.to_string());
        }
    } else if z.history_file.is_some() && result.acks_error.is_none() {
        result.acks_error = Some("the history file is still in use: not ended".into());
    }
    result
}

/// Opens the thread's session and creates the shared znodes (parents first, then the
/// children with `width` creates in flight); `None` if no session could be opened or it
/// expired meanwhile.
async fn setup(
    client: Client,
    z: &ZkLoad,
    stats: &Mutex<Stats>,
    payload: Bytes,
    width: usize,
) -> Option<ZkClient> {
    let zk = match ZkClient::connect_sharded(client, z.session_timeout_ms, z.shards).await {
        Ok(zk) => zk.with_local_reads(z.local_reads),
        Err(e) => {
            tracing::error!(error = %e, "no ZooKeeper session");
            return None;
        }
    };
    let create = |path: String, data: Bytes| {
        let zk = &zk;
        async move {
            let sent = monotonic_us();
            let r = zk.create(&path, data, CreateMode::Persistent).await;
            let answered = monotonic_us();
            let Ok(mut s) = stats.lock() else {
                return;
            };
            match r {
                Ok((_, stat)) => {
                    s.history.op(&path, &stat, true, sent, answered);
                    s.history.chunk.created.push(path);
                }
                Err(ZkError::Zk(Code::NodeExists)) => {}
                Err(e) => s.error("create", &e),
            }
        }
    };
    for k in 0..z.znodes().min(16) {
        create(parent_path(k), Bytes::new()).await;
    }
    futures::stream::iter(0..z.znodes())
        .map(|k| create(node_path(k), payload.clone()))
        .buffer_unordered(width)
        .collect::<()>()
        .await;
    // One ephemeral per session, so that the verdict's check that closed sessions left
    // none has something to find.
    let mine = format!("/session-{:x}", zk.session());
    if let Err(e) = zk.create(&mine, Bytes::new(), CreateMode::Ephemeral).await {
        if let Ok(mut s) = stats.lock() {
            s.error("create an ephemeral", &e);
        }
    }
    (!zk.is_expired()).then_some(zk)
}

#[cfg(test)]
mod tests;
