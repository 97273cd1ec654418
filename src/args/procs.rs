//! Flags of the role processes (`mason sequencer`, `proxy`, `client`, `corfu-server`) and
//! of the sequencer benchmark; `mason local` and `mason experiment` build these command
//! lines (`crate::roles`).

use super::{
    chains, positive_secs, secs, spaces, Chains, KeyArgs, OnOff, ProxyKnobs, System, Workload,
    ZkArgs,
};
use clap::Args;
use mason_client::load::{LoadConfig, LogLoad, OpSpaces, ZkLoad, ZkWorkload};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
#[derive(Args, Debug)]
pub struct SequencerArgs {
    #[arg(long)]
    pub listen: SocketAddr,
    #[arg(long, default_value_t = 1, value_parser = spaces())]
    pub spaces: u32,
    /// This sequencer's index among --sequencers (index 0 is the first primary).
    #[arg(long, default_value_t = 0)]
    pub id: u32,
    /// How many sequencers the deployment has (the primary and its backups).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub sequencers: u32,
    /// Proxy groups of the deployment (a takeover needs a promise from each).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub groups: u32,
    /// Start as an idle backup. Without it, sequencer 0 serves epoch 1 at once: only the
    /// first primary of a fresh deployment may do that, never a restarted sequencer.
    #[arg(long)]
    pub backup: bool,
    /// Batch ids remembered per group for at-most-once answers.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub window: u64,
    /// Recompute the garbage-collection watermarks every this many milliseconds (0: GC
    /// off, recorded sets grow for the whole run).
    #[arg(long, default_value_t = 10)]
    pub gc_ms: u64,
    /// Tokio worker threads serving the connections. With 1 and `--core-thread off`,
    /// everything runs on one thread (a current-thread runtime).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Run the core (the state machine every request goes through) on a thread of its
    /// own, apart from the --threads workers: the most throughput where the sequencer has
    /// cores to itself or serves clients directly. Off: it is one more task of those
    /// workers, so that with --threads 1 a request and its answer cross no thread, which
    /// costs less CPU and latency where cores are shared and proxies carry the load.
    #[arg(long, value_enum, default_value = "on")]
    pub core_thread: crate::args::OnOff,
    /// The largest frame a proxy may send.
    #[arg(long, default_value_t = mason_common::codec::DEFAULT_MAX_FRAME)]
    pub max_frame: usize,
    /// Append every grant to a direct-baseline client to `grants-<id>.bin` here (the
    /// verdict's record of the direct baseline).
    #[arg(long)]
    pub record_dir: Option<PathBuf>,
    /// Connections past their handshake at once; more are refused.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// Serve this process's metrics in Prometheus's text format at http://ADDR/metrics
    /// (read-only, unauthenticated: bind it on a management network). Off unless given.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Args, Debug)]
pub struct ProxyArgs {
    /// This process's index into --peers.
    #[arg(long)]
    pub replica: u32,
    /// Every proxy process's address, by replica index, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub peers: Vec<SocketAddr>,
    /// The deployment's groups, 0..G: this process hosts a replica of those of its triple.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub groups: u32,
    /// This process's triple of proxy processes: it hosts the groups g with
    /// g % --triples == --triple (--peers names its own triple's three processes).
    #[arg(long, default_value_t = 0)]
    pub triple: u32,
    /// Triples of proxy processes in the deployment.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub triples: u32,
    /// Every sequencer's address, by index (the first primary first), comma-separated.
    #[arg(long, value_delimiter = ',', required_unless_present = "keeper")]
    pub sequencers: Vec<SocketAddr>,
    /// RSMKeeper: the groups hold a ZooKeeper tree and take no numbers (no sequencer).
    #[arg(long)]
    pub keeper: bool,
    #[arg(long, default_value_t = 1, value_parser = spaces())]
    pub spaces: u32,
    #[arg(long)]
    pub data_dir: PathBuf,
    /// CorfuMason: the log's chains (see `mason client --log-chains`); leaders write every
    /// number of space 0 they bind there.
    #[arg(long, value_parser = chains)]
    pub log_chains: Option<Chains>,
    /// ZK-Mason: every shard server, shards separated by ';', a shard's servers by ','
    /// (shard s is space s + 1); leaders deliver every number they bind there.
    #[arg(long, value_parser = chains, conflicts_with_all = ["log_chains", "keeper"])]
    pub zk_servers: Option<Chains>,
    /// Write bound-g<G>-r<R>.bin records of every applied batch here.
    #[arg(long)]
    pub record_dir: Option<PathBuf>,
    /// Tokio worker threads; with 1, every group and connection runs on one thread (a
    /// current-thread runtime, no hand-offs between threads).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// The largest frame a peer replica or a sequencer may send.
    #[arg(long, default_value_t = mason_common::codec::DEFAULT_MAX_FRAME)]
    pub max_frame: usize,
    /// The largest op payload a client may send, in bytes.
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(0..=(64 << 20)))]
    pub max_payload: u64,
    /// Connections past their handshake at once; more are refused.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    #[command(flatten)]
    pub knobs: ProxyKnobs,
    /// Serve this process's metrics in Prometheus's text format at http://ADDR/metrics
    /// (read-only, unauthenticated: bind it on a management network). Off unless given.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Args, Debug)]
pub struct ClientArgs {
    #[arg(long, default_value_t = 0)]
    pub index: u32,
    #[arg(long, value_enum, default_value = "mason")]
    pub system: System,
    /// Proxy processes' addresses, by replica index, comma-separated (mason system).
    #[arg(long, value_delimiter = ',')]
    pub proxies: Vec<SocketAddr>,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub groups: u32,
    /// The primary sequencer (every system but rsmkeeper).
    #[arg(long)]
    pub sequencer: Option<SocketAddr>,
    #[arg(long, default_value_t = 1, value_parser = spaces())]
    pub spaces: u32,
    #[arg(long, default_value = "all")]
    pub op_spaces: OpSpaces,
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=65535))]
    pub threads: u32,
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// The clients of this process that load one group share one connection to each
    /// of its replicas: what they send in one turn goes out in one write and is batched
    /// together, and their answers come back together. off: a connection per client.
    /// (Shared-log clients share their appends' sequencing; each keeps its own links to the log servers.)
    #[arg(long, value_enum, default_value = "on")]
    pub shared_conns: OnOff,
    #[arg(long, default_value_t = 0)]
    pub payload: usize,
    /// Shared-log systems: shards separated by ';', each a chain of log servers, head
    /// first, separated by ','.
    #[arg(long, value_parser = chains)]
    pub log_chains: Option<Chains>,
    /// appends or reads (shared-log systems; default appends); setdata, getdata or mixed
    /// (ZooKeeper systems; default mixed).
    #[arg(long, value_enum)]
    pub workload: Option<Workload>,
    #[command(flatten)]
    pub zk: ZkArgs,
    /// Appends by this process before a read workload.
    #[arg(long, default_value_t = 100_000)]
    pub prefill: u64,
    #[arg(long, default_value = "1", value_parser = secs)]
    pub warmup: Duration,
    #[arg(long, default_value = "5", value_parser = positive_secs)]
    pub duration: Duration,
    /// Seconds of load after the measured window, not measured.
    #[arg(long, default_value = "0", value_parser = secs)]
    pub cooldown: Duration,
    #[arg(long, default_value = "1", value_parser = positive_secs)]
    pub retry_timeout: Duration,
    #[arg(long, default_value = "15", value_parser = positive_secs)]
    pub drain: Duration,
    #[arg(long)]
    pub out: PathBuf,
    /// Tokio worker threads; with 1, every client of the process runs on one thread (a
    /// current-thread runtime).
    #[arg(long, default_value_t = 2)]
    pub runtime_threads: usize,
    /// Also watch every replica of every group and write the highest contiguous number
    /// known per space to this CSV every 10 ms (mason system only).
    #[arg(long)]
    pub watch_csv: Option<PathBuf>,
    /// The record's time zero, in Unix milliseconds (default: when this process starts).
    #[arg(long)]
    pub t0_unix_ms: Option<u64>,
    /// Serve this process's metrics in Prometheus's text format at http://ADDR/metrics
    /// (read-only, unauthenticated: bind it on a management network). Off unless given.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub key: KeyArgs,
}

impl ClientArgs {
    /// The workload asked for, or the system's default.
    pub fn workload(&self) -> Workload {
        self.workload.unwrap_or(if self.system.zk() {
            Workload::Mixed
        } else {
            Workload::Appends
        })
    }

    pub fn load_config(&self, key: std::sync::Arc<mason_common::auth::ClusterKey>) -> LoadConfig {
        LoadConfig {
            index: self.index,
            threads: self.threads,
            concurrency: self.concurrency,
            shared_conns: self.shared_conns.on(),
            proxies: if self.system.proxies() {
                self.proxies.clone()
            } else {
                Vec::new()
            },
            groups: self.groups,
            // Only the direct baseline and Corfu's clients talk to the sequencer. RSMKeeper
            // has none (`main` requires --sequencer of every other system): the address
            // is then never used.
            sequencer: self
                .sequencer
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0))),
            spaces: self.spaces,
            op_spaces: self.op_spaces,
            payload: self.payload,
            warmup: self.warmup,
            duration: self.duration,
            cooldown: self.cooldown,
            retry_timeout: self.retry_timeout,
            drain: self.drain,
            acks_file: Some(self.out.join(format!("acks-{}.bin", self.index))),
            log: match (&self.log_chains, self.system.log()) {
                (Some(chains), true) => Some(LogLoad {
                    chains: chains.0.clone(),
                    corfu: self.system == System::Corfu,
                    reads: self.workload() == Workload::Reads,
                    prefill: self.prefill,
                }),
                _ => None,
            },
            zk: self.system.zk().then(|| ZkLoad {
                workload: match self.workload() {
                    Workload::Setdata => ZkWorkload::SetData,
                    Workload::Getdata => ZkWorkload::GetData,
                    _ => ZkWorkload::Mixed,
                },
                write_percent: self.zk.write_percent,
                znodes: self.zk.znodes,
                session_timeout_ms: 30_000,
                history_file: Some(self.out.join(format!("zk-history-{}.bin", self.index))),
                shards: self.zk.shards(self.system),
                local_reads: self.zk.zk_reads == super::ZkReads::Local,
            }),
            key,
        }
    }
}

#[derive(Args, Debug)]
pub struct CorfuServerArgs {
    #[arg(long)]
    pub listen: SocketAddr,
    /// Where the segment files live (recovered from on start).
    #[arg(long)]
    pub dir: PathBuf,
    /// This server's shard, of --shards.
    #[arg(long, default_value_t = 0)]
    pub shard: u32,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub shards: u32,
    /// This server's place in its shard's chain (0 = head).
    #[arg(long, default_value_t = 0)]
    pub chain_index: u32,
    /// Servers in the chain.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8))]
    pub chain_len: u32,
    /// The next server in the chain (required unless this is the tail).
    #[arg(long)]
    pub successor: Option<SocketAddr>,
    /// fdatasync before acknowledging (off: acknowledge once written to the page cache,
    /// as paper-style runs do).
    #[arg(long, value_enum, default_value = "on")]
    pub fsync: OnOff,
    /// The largest entry accepted, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_payload: usize,
    /// Segment file size, in MiB.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub segment_mb: u64,
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// The largest frame a client, proxy or predecessor may send.
    #[arg(long, default_value_t = mason_common::codec::DEFAULT_MAX_FRAME)]
    pub max_frame: usize,
    /// Connections past their handshake at once; more are refused.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// Serve this process's metrics in Prometheus's text format at http://ADDR/metrics
    /// (read-only, unauthenticated: bind it on a management network). Off unless given.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Args, Debug)]
pub struct ZkServerArgs {
    #[arg(long)]
    pub listen: SocketAddr,
    /// Where its records and tree snapshots live (recovered from on start).
    #[arg(long)]
    pub dir: PathBuf,
    /// This server's shard.
    #[arg(long)]
    pub shard: u32,
    /// This server's index among its shard's servers.
    #[arg(long)]
    pub index: u32,
    /// Every shard server, shards separated by ';', a shard's servers by ',' (the same
    /// list every proxy is given).
    #[arg(long, value_parser = chains)]
    pub servers: Chains,
    /// fdatasync what is applied before saying so.
    #[arg(long, value_enum, default_value = "on")]
    pub fsync: OnOff,
    /// Snapshot the tree every this many applied positions (0: never).
    #[arg(long, default_value_t = 100_000)]
    pub snapshot_every: u64,
    /// Write the tree as it ends (`zk-s<S>-r<I>.snap`) here at a clean stop.
    #[arg(long)]
    pub record_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// The largest frame a proxy or another server may send.
    #[arg(long, default_value_t = mason_common::codec::DEFAULT_MAX_FRAME)]
    pub max_frame: usize,
    /// Connections past their handshake at once; more are refused.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// Serve this process's metrics in Prometheus's text format at http://ADDR/metrics
    /// (read-only, unauthenticated: bind it on a management network). Off unless given.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Args, Debug)]
pub struct ZkGatewayArgs {
    /// Where ZooKeeper clients connect (ZooKeeper's own port is 2181).
    #[arg(long)]
    pub listen: SocketAddr,
    /// rsmkeeper or zkmason: the system behind this gateway.
    #[arg(long, value_enum)]
    pub system: System,
    /// Proxy processes' addresses, by replica index, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub proxies: Vec<SocketAddr>,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub groups: u32,
    /// ZK-Mason: every shard server, shards separated by ';', a shard's servers by ','
    /// (as the proxies' --zk-servers): the gateway follows their watch feeds.
    #[arg(long, value_parser = chains)]
    pub zk_servers: Option<Chains>,
    #[command(flatten)]
    pub zk: super::ZkArgs,
    /// The session timeouts granted, in ms: a client's request is clamped to this range
    /// (the maximum should be the proxies' --session-timeout-s).
    #[arg(long, default_value_t = 4_000, value_parser = clap::value_parser!(i32).range(1..))]
    pub min_session_timeout_ms: i32,
    #[arg(long, default_value_t = 60_000, value_parser = clap::value_parser!(i32).range(1..))]
    pub max_session_timeout_ms: i32,
    /// `jute.maxbuffer`: the largest packet a client may send.
    #[arg(long, default_value_t = mason_zk::jute::DEFAULT_MAX_BUFFER)]
    pub max_buffer: usize,
    /// The backend client's retry timeout, in ms.
    #[arg(long, default_value_t = 1000)]
    pub retry_timeout_ms: u64,
    /// The backend sessions of one group share one connection to each of its replicas
    /// (what they send in one turn goes out in one write and is batched together). off: a
    /// connection per session.
    #[arg(long, value_enum, default_value = "on")]
    pub shared_conns: OnOff,
    /// Tells this gateway's backend clients apart in the proxies' logs.
    #[arg(long, default_value_t = 0)]
    pub id: u32,
    /// Client connections at once; more are closed as they come.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Serve this process's metrics in Prometheus's text format at http://ADDR/metrics
    /// (read-only, unauthenticated: bind it on a management network). Off unless given.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Args, Debug)]
pub struct BenchSeqArgs {
    /// A running sequencer to load over TCP, started fresh for this run (the bench's groups
    /// start their batch ids at 1) and serving at least --groups groups (its own
    /// `--groups`); without it the state machine is driven in process, on one core.
    #[arg(long)]
    pub addr: Option<SocketAddr>,
    #[arg(long, default_value_t = 1, value_parser = spaces())]
    pub spaces: u32,
    /// Numbers per space per request.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
    /// Groups (connections, over TCP).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub groups: u32,
    /// Requests in flight per connection (over TCP).
    #[arg(long, default_value_t = 8)]
    pub pipeline: usize,
    #[arg(long, default_value = "3", value_parser = positive_secs)]
    pub duration: Duration,
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    #[command(flatten)]
    pub key: KeyArgs,
}

/// `mason status`: which processes to ask, with which key, and how to print.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The processes to ask (any roles: each one's role comes from its handshake).
    /// Without it, the processes `experiment run` starts from --machine-info and the
    /// layout flags below.
    #[arg(long, value_delimiter = ',', conflicts_with = "machine_info")]
    pub addrs: Vec<SocketAddr>,
    /// One JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// A process that has not answered within this long is shown as down.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub timeout_ms: u64,
    #[command(flatten)]
    pub key: KeyArgs,
    /// Where `experiment run` starts each role: the same flags it took.
    #[command(flatten, next_help_heading = "Layout (as given to experiment run)")]
    pub layout: crate::experiment::args::RunArgs,
}
