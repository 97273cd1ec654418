//! Closed-loop load: `threads` clients per process, each with `concurrency` ops in flight.
//! Latencies of ops completed inside the measured window (after the warm-up) go into one
//! HDR histogram; every answer is kept (compactly) for the verification, streamed to a
//! file as the run goes when one is given, so that a long run's memory stays flat.
//!
//! With a shared log ([`LogLoad`]) the ops are log appends (Corfu or CorfuMason) or, after
//! a prefill of appends, reads of random positions below the tail.
//!
//! With ZooKeeper ([`ZkLoad`], RSMKeeper) the ops are setData and getData on shared znodes,
//! and each client's acknowledged ops are recorded for the linearizability check (see
//! [`zk`](self::zk)).

mod metrics;
mod results;
mod seq;
mod zk;

pub use self::results::{dat_line, new_histogram, write_results, LoadResult};

pub use self::zk::{node_path, parent_path, ZkLoad, ZkWorkload};

use self::seq::{drain_loops, shared_clients, SeqLoop};
use crate::driver::{Client, ClientConfig, MultiSeq, Target};
use crate::log::{AppendVia, LogClient, LogClientConfig, LogLinks};
use bytes::Bytes;
use hdrhistogram::Histogram;
use mason_common::record::{AckChunk, RecordWriter};
use mason_common::transport::Transport;
use mason_common::types::SpaceMask;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which spaces each op touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpSpaces {
    /// Every space.
    All,
    /// This many distinct spaces, chosen at random per op.
    Count(u32),
    /// A random non-empty subset per op.
    Random,
}

impl std::str::FromStr for OpSpaces {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(OpSpaces::All),
            "random" => Ok(OpSpaces::Random),
            n => match n.parse::<u32>() {
                Ok(k) if (1..=64).contains(&k) => Ok(OpSpaces::Count(k)),
                _ => Err(format!("'{s}' is not all, random, or a count 1..=64")),
            },
        }
    }
}

impl OpSpaces {
    pub fn pick(self, spaces: u32, rng: &mut impl Rng) -> SpaceMask {
        match self {
            OpSpaces::All => SpaceMask::first(spaces),
            OpSpaces::Random => loop {
                let m = SpaceMask(rng.gen::<u64>() & SpaceMask::first(spaces).0);
                if !m.is_empty() {
                    return m;
                }
            },
            OpSpaces::Count(k) => {
                let k = k.min(spaces);
                let mut m = 0u64;
                while m.count_ones() < k {
                    m |= 1u64 << rng.gen_range(0..spaces);
                }
                SpaceMask(m)
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// This load process's index; its clients get ids `index * 65536 + t + 1`.
    pub index: u32,
    pub threads: u32,
    pub concurrency: u32,
    /// This process's clients of one group share one driver and its connections (see
    /// `shared_clients`; for a shared log, the driver that sequences the appends).
    pub shared_conns: bool,
    /// Proxy processes' addresses, in triples (see [`crate::group_replicas`]), or empty for
    /// the direct baseline.
    pub proxies: Vec<SocketAddr>,
    pub groups: u32,
    pub sequencer: SocketAddr,
    pub spaces: u32,
    pub op_spaces: OpSpaces,
    pub payload: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Load kept on, unmeasured, after the measured window (so that no measured op sees
    /// the other clients stop).
    pub cooldown: Duration,
    pub retry_timeout: Duration,
    /// How long to wait for unanswered ops after the run before giving up on them.
    pub drain: Duration,
    /// Stream every answer to this file (`acks-N.bin`) during the run instead of keeping
    /// them in memory.
    pub acks_file: Option<std::path::PathBuf>,
    /// Ops on a shared log instead of bare sequencing.
    pub log: Option<LogLoad>,
    /// ZooKeeper ops (RSMKeeper) instead of bare sequencing.
    pub zk: Option<ZkLoad>,
    pub key: Arc<mason_common::auth::ClusterKey>,
}

#[derive(Clone, Debug)]
pub struct LogLoad {
    /// Each shard's chain of log servers, head first.
    pub chains: Vec<Vec<SocketAddr>>,
    /// Corfu (tokens from the sequencer) rather than CorfuMason (appends via the proxies).
    pub corfu: bool,
    /// Measure reads (after `prefill` appends by this process) instead of appends.
    pub reads: bool,
    pub prefill: u64,
}

/// What the reads of a read workload found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    pub reads: u64,
    pub noops: u64,
    /// Positions below the tail found unwritten.
    pub unwritten: u64,
    /// Data entries that are not a stamped payload of the run's size.
    pub bad: u64,
}

/// The measured window of a run: ops from `warmup` on, for `duration`; load goes on
/// through the cool-down to `stop`.
#[derive(Clone, Copy)]
pub(crate) struct Window {
    measure_from: Instant,
    end: Instant,
    pub(crate) stop: Instant,
}

impl Window {
    pub(crate) fn starting_now(cfg: &LoadConfig) -> Window {
        let measure_from = Instant::now() + cfg.warmup;
        let end = measure_from + cfg.duration;
        Window {
            measure_from,
            end,
            stop: end + cfg.cooldown,
        }
    }

    /// Counts an op sent at `t0` and answered at `t1` if it lies inside the window, and in
    /// the process's metrics.
    pub(crate) fn measure(
        &self,
        t0: Instant,
        t1: Instant,
        ops: &mut u64,
        hist: &mut Histogram<u64>,
    ) {
        let measured = self.count(t0, t1, ops, hist);
        metrics::get().answered(t0, t1, measured);
    }

    /// Counts an op sent at `t0` and answered at `t1` if it lies inside the window;
    /// returns whether it does.
    pub(crate) fn count(
        &self,
        t0: Instant,
        t1: Instant,
        ops: &mut u64,
        hist: &mut Histogram<u64>,
    ) -> bool {
        let measured = t0 >= self.measure_from && t1 <= self.end;
        if measured {
            *ops += 1;
            let ns = t1.duration_since(t0).as_nanos() as u64;
            let _ = hist.record(ns.max(1));
        }
        measured
    }

    /// Waits for the load's tasks until `drain` after `stop`; those still running then are
    /// abandoned (and counted: each holds an unanswered op).
    pub(crate) async fn drain(
        &self,
        tasks: Vec<tokio::task::JoinHandle<()>>,
        drain: Duration,
    ) -> u64 {
        let drain_end = tokio::time::Instant::from_std(self.stop + drain);
        let mut unanswered = 0;
        for t in tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout_at(drain_end, t).await.is_err() {
                abort.abort();
                unanswered += 1;
            }
        }
        unanswered
    }
}

/// Answers per client kept in memory before they are written out.
const ACK_CHUNK: usize = 16 * 1024;

type AckSink = Arc<Mutex<RecordWriter>>;

struct Shared {
    hist: Histogram<u64>,
    ops: u64,
    reads: ReadStats,
    acks: AckChunk,
    /// Chunks of earlier sessions, when nothing is streamed to a file.
    done: Vec<AckChunk>,
    /// Why writing answers out failed, if it did.
    spill_error: Option<String>,
}

/// Writes out what `acks` holds (if there is a sink) and empties it.
fn spill(sink: &Option<AckSink>, acks: &mut AckChunk) -> std::io::Result<()> {
    let Some(sink) = sink else {
        return Ok(());
    };
    let session = acks.session;
    let chunk = std::mem::take(acks);
    acks.session = session;
    match sink.lock() {
        Ok(mut w) => w.append(&chunk),
        Err(_) => Err(std::io::Error::other("the answer file's lock is poisoned")),
    }
}

/// How one client's ops are done.
#[derive(Clone)]
enum Worker {
    Seq(Client),
    Log(Arc<LogClient>),
}

impl Worker {
    fn retransmissions(&self) -> u64 {
        match self {
            Worker::Seq(c) => c.retransmissions(),
            Worker::Log(l) => l.retransmissions(),
        }
    }
}

enum Outcome {
    /// An answered op: its seq, spaces and numbers.
    Ack(MultiSeq),
    Read(ReadStats),
    Failed,
}

/// The group of this process's client thread `t`.
fn group_of(cfg: &LoadConfig, t: u32) -> u32 {
    ((u64::from(cfg.index) * u64::from(cfg.threads) + u64::from(t)) % u64::from(cfg.groups.max(1)))
        as u32
}

/// Where a client of `group` sends its ops: the group's replicas, or the sequencer in the
/// direct baseline.
fn target(cfg: &LoadConfig, group: u32) -> Target {
    if cfg.proxies.is_empty() {
        Target::Direct {
            sequencer: cfg.sequencer,
        }
    } else {
        Target::Group {
            group,
            replicas: crate::group_replicas(&cfg.proxies, group),
            first: crate::first_leader(&cfg.proxies, group),
        }
    }
}

/// The id of this process's client thread `t`.
fn client_id_of(cfg: &LoadConfig, t: u32) -> u64 {
    u64::from(cfg.index) * 65536 + u64::from(t) + 1
}

fn worker(
    transport: &Arc<dyn Transport>,
    cfg: &LoadConfig,
    t: u32,
    client_id: u64,
    shared: &mut HashMap<u32, VecDeque<Client>>,
    links: Option<&LogLinks>,
) -> Worker {
    let group = group_of(cfg, t);
    // This thread's own client (made for its id), if it shares a driver.
    let seq = shared.get_mut(&group).and_then(VecDeque::pop_front);
    if let Some(l) = &cfg.log {
        let append = if l.corfu {
            AppendVia::Corfu {
                sequencer: cfg.sequencer,
            }
        } else {
            AppendVia::Mason {
                group,
                replicas: crate::group_replicas(&cfg.proxies, group),
                first: crate::first_leader(&cfg.proxies, group),
            }
        };
        let mut lc = LogClientConfig::new(client_id, l.chains.clone(), append, cfg.key.clone());
        lc.request_timeout = cfg.retry_timeout;
        lc.window = cfg.concurrency;
        match LogClient::sharing(transport.clone(), lc, seq.clone(), links.cloned()) {
            Ok(c) => return Worker::Log(Arc::new(c)),
            // The chains were checked when the flags were parsed.
            Err(e) => tracing::error!(error = %e, "no log client; sequencing only"),
        }
    }
    seq.map(Worker::Seq).unwrap_or_else(|| {
        Worker::Seq(Client::start(
            transport.clone(),
            ClientConfig {
                client_id,
                target: target(cfg, group),
                retry_timeout: cfg.retry_timeout,
                window: cfg.concurrency,
                key: cfg.key.clone(),
            },
        ))
    })
}

/// One op: an append (or bare sequencing), or with `read_below` > 0 a read of a random
/// position below it.
async fn one_op(
    w: &Worker,
    cfg: &LoadConfig,
    rng: &mut StdRng,
    payload: &Bytes,
    read_below: u64,
) -> Outcome {
    match w {
        Worker::Seq(c) => {
            let mask = cfg.op_spaces.pick(cfg.spaces, rng);
            match c.sequence(mask, payload.clone()).await {
                Ok(m) => Outcome::Ack(m),
                Err(e) => {
                    tracing::warn!(error = %e, "op failed");
                    Outcome::Failed
                }
            }
        }
        Worker::Log(l) if read_below > 0 => {
            let pos = rng.gen_range(0..read_below);
            let mut st = ReadStats {
                reads: 1,
                ..ReadStats::default()
            };
            match l.read(pos).await {
                Ok(Some(e)) if e.noop => st.noops += 1,
                Ok(Some(e)) => {
                    let size = cfg.payload.max(crate::log::STAMP_BYTES);
                    if e.payload.len() != size || crate::log::unstamp(&e.payload).is_none() {
                        st.bad += 1;
                    }
                }
                Ok(None) => st.unwritten += 1,
                Err(e) => {
                    tracing::warn!(pos, error = %e, "read failed");
                    return Outcome::Failed;
                }
            }
            Outcome::Read(st)
        }
        Worker::Log(l) => match l.append_stamped(payload.clone(), true).await {
            Ok((pos, session, seq)) => Outcome::Ack(MultiSeq {
                session,
                seq,
                mask: SpaceMask::single(0),
                numbers: vec![pos],
                result: Bytes::new(),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "append failed");
                Outcome::Failed
            }
        },
    }
}

/// Keeps an answer for the verification, writing a full chunk (or one of an earlier
/// session) out.
fn keep_ack(s: &mut Shared, sink: &Option<AckSink>, m: &MultiSeq) {
    if s.acks.session != m.session {
        if !s.acks.seqs.is_empty() {
            let r = match sink {
                Some(_) => spill(sink, &mut s.acks),
                None => {
                    s.done.push(std::mem::take(&mut s.acks));
                    Ok(())
                }
            };
            if let Err(e) = r {
                s.spill_error.get_or_insert(e.to_string());
            }
        }
        s.acks = AckChunk {
            session: m.session,
            ..AckChunk::default()
        };
    }
    s.acks.push(m.seq, m.mask, &m.numbers);
    if s.acks.seqs.len() >= ACK_CHUNK && sink.is_some() {
        if let Err(e) = spill(sink, &mut s.acks) {
            tracing::error!(error = %e, "streaming answers to disk");
            s.spill_error.get_or_insert(e.to_string());
        }
    }
}

pub async fn run(transport: Arc<dyn Transport>, cfg: LoadConfig) -> LoadResult {
    if let Some(z) = cfg.zk.clone() {
        return zk::run(transport, cfg, z).await;
    }
    let mut acks_error = None;
    // Appended to: a client restarted with the same index keeps its predecessor's answers.
    let sink: Option<AckSink> = match &cfg.acks_file {
        Some(p) => match RecordWriter::open_append::<AckChunk>(p) {
            Ok(w) => Some(Arc::new(Mutex::new(w))),
            Err(e) => {
                acks_error = Some(format!("creating {}: {e}", p.display()));
                None
            }
        },
        None => None,
    };
    let mut workers = Vec::new();
    let mut shared = if cfg.shared_conns {
        shared_clients(&transport, &cfg)
    } else {
        HashMap::new()
    };
    // The process's log clients share their connections to the log servers too.
    let links = (cfg.shared_conns && cfg.log.is_some())
        .then(|| LogLinks::new(transport.clone(), cfg.key.clone()));
    for t in 0..cfg.threads {
        let client_id = client_id_of(&cfg, t);
        let w = worker(&transport, &cfg, t, client_id, &mut shared, links.as_ref());
        let shared = Arc::new(Mutex::new(Shared {
            hist: new_histogram(),
            ops: 0,
            reads: ReadStats::default(),
            acks: AckChunk::default(),
            done: Vec::new(),
            spill_error: None,
        }));
        workers.push((client_id, w, shared));
    }
    let read_below = match cfg.log.as_ref().filter(|l| l.reads) {
        Some(l) => prefill(&workers, &cfg, l.prefill, &sink).await.max(1),
        None => 0,
    };
    let win = Window::starting_now(&cfg);
    let stop = win.stop;
    let ws: Vec<Worker> = workers.iter().map(|(_, w, _)| w.clone()).collect();
    let resends = metrics::sample_resends(move || ws.iter().map(Worker::retransmissions).sum());
    let mut tasks = Vec::new();
    let mut loops = Vec::new();
    for (client_id, w, shared) in &workers {
        if let Worker::Seq(c) = w {
            let lp = SeqLoop {
                op_spaces: cfg.op_spaces,
                spaces: cfg.spaces,
                rng: StdRng::seed_from_u64(client_id * 1000),
                payload: Bytes::from(vec![0xa5u8; cfg.payload]),
                win,
                shared: shared.clone(),
                sink: sink.clone(),
                metrics: metrics::get().local(Instant::now()),
                answers: Vec::new(),
            };
            loops.push((c.clone(), c.run_loop(Box::new(lp), cfg.concurrency)));
            continue;
        }
        for c in 0..cfg.concurrency {
            let (w, shared, cfg, sink) = (w.clone(), shared.clone(), cfg.clone(), sink.clone());
            let mut rng = StdRng::seed_from_u64(client_id * 1000 + u64::from(c));
            let payload = Bytes::from(vec![0xa5u8; cfg.payload]);
            tasks.push(tokio::spawn(async move {
                while Instant::now() < stop {
                    let t0 = Instant::now();
                    let r = one_op(&w, &cfg, &mut rng, &payload, read_below).await;
                    let t1 = Instant::now();
                    let Ok(mut s) = shared.lock() else {
                        return;
                    };
                    match r {
                        Outcome::Ack(m) => keep_ack(&mut s, &sink, &m),
                        Outcome::Read(st) => {
                            s.reads.reads += st.reads;
                            s.reads.noops += st.noops;
                            s.reads.unwritten += st.unwritten;
                            s.reads.bad += st.bad;
                        }
                        Outcome::Failed => {
                            metrics::get().failed();
                            continue;
                        }
                    }
                    let s = &mut *s;
                    win.measure(t0, t1, &mut s.ops, &mut s.hist);
                }
            }));
        }
    }
    let mut unanswered = win.drain(tasks, cfg.drain).await;
    unanswered += drain_loops(&win, loops, cfg.drain, cfg.concurrency).await;
    resends.abort();
    let mut result = LoadResult {
        ops: 0,
        hist: new_histogram(),
        re_tx: workers.iter().map(|(_, w, _)| w.retransmissions()).sum(),
        window: cfg.duration,
        acks: Vec::new(),
        acks_error,
        unanswered,
        reads: ReadStats::default(),
        errors: 0,
        zk_history: Vec::new(),
    };
    metrics::get().resends(result.re_tx);
    metrics::get().unanswered.set(unanswered as i64);
    for (_, _, s) in workers {
        if let Ok(mut s) = s.lock() {
            result.ops += s.ops;
            result.reads.reads += s.reads.reads;
            result.reads.noops += s.reads.noops;
            result.reads.unwritten += s.reads.unwritten;
            result.reads.bad += s.reads.bad;
            let _ = result.hist.add(&s.hist);
            if let Some(e) = s.spill_error.take() {
                result.acks_error.get_or_insert(e);
            }
            if sink.is_some() {
                if let Err(e) = spill(&sink, &mut s.acks) {
                    result.acks_error.get_or_insert(e.to_string());
                }
            } else {
                result.acks.append(&mut s.done);
                result.acks.push(std::mem::take(&mut s.acks));
            }
        }
    }
    if let Some(sink) = sink.and_then(|s| Arc::try_unwrap(s).ok()) {
        let r = sink
            .into_inner()
            .map_err(|_| std::io::Error::other("the answer file's lock is poisoned"))
            .and_then(RecordWriter::finish);
        if let Err(e) = r {
            result.acks_error.get_or_insert(e.to_string());
        }
    }
    result
}

/// Appends `count` entries (spread over every client and its concurrency), keeping their
/// answers; returns the log's tail afterwards, the bound for the reads.
async fn prefill(
    workers: &[(u64, Worker, Arc<Mutex<Shared>>)],
    cfg: &LoadConfig,
    count: u64,
    sink: &Option<AckSink>,
) -> u64 {
    let per_task = count.div_ceil(u64::from(cfg.threads * cfg.concurrency).max(1));
    let mut tasks = Vec::new();
    for (client_id, w, shared) in workers {
        for c in 0..cfg.concurrency {
            let (w, shared, cfg, sink) = (w.clone(), shared.clone(), cfg.clone(), sink.clone());
            let mut rng = StdRng::seed_from_u64(client_id * 1000 + u64::from(c));
            let payload = Bytes::from(vec![0xa5u8; cfg.payload]);
            tasks.push(tokio::spawn(async move {
                for _ in 0..per_task {
                    if let Outcome::Ack(m) = one_op(&w, &cfg, &mut rng, &payload, 0).await {
                        if let Ok(mut s) = shared.lock() {
                            keep_ack(&mut s, &sink, &m);
                        }
                    }
                }
            }));
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    for (_, w, _) in workers {
        if let Worker::Log(l) = w {
            match l.tail().await {
                Ok(t) => return t,
                Err(e) => tracing::error!(error = %e, "no tail after the prefill"),
            }
        }
    }
    0
}
