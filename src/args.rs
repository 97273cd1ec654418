//! Command-line flags of every subcommand. Bad values are refused by clap with a one-line
//! error and exit code 2.

use clap::{Args, Parser, Subcommand, ValueEnum};
use mason_client::load::OpSpaces;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod procs;
pub use procs::{
    BenchSeqArgs, ClientArgs, CorfuServerArgs, ProxyArgs, SequencerArgs, StatusArgs, ZkGatewayArgs,
    ZkServerArgs,
};

#[derive(Parser, Debug)]
#[command(
    name = "mason",
    version,
    about = "Scalable, contiguous multi-sequencing"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
    /// Before a role's runtime thread sleeps, it polls its sockets for up to this many
    /// microseconds, yielding the CPU between polls; the window adapts to the load and
    /// closes when the process is idle. 0: sleep at once. Processes that `mason local`
    /// and `mason experiment run` start are given the same. At most 1,000,000 (1 s).
    #[arg(long, global = true, value_name = "US", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub spin_us: u64,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run a whole cluster on loopback, load it, and verify every number.
    Local(LocalArgs),
    /// Follow one space's contiguous prefix on a running cluster: each bound op and noop
    /// range, in number order.
    Watch(crate::watch::WatchArgs),
    /// Run the sequencer.
    Sequencer(SequencerArgs),
    /// Run one proxy process: replica R of groups 0..G.
    Proxy(ProxyArgs),
    /// Run one closed-loop load process.
    Client(ClientArgs),
    /// Run one Corfu log server: one member of one shard's chain.
    CorfuServer(CorfuServerArgs),
    /// Run one ZK-Mason shard server: server I of shard S.
    ZkServer(ZkServerArgs),
    /// Serve ZooKeeper's client protocol (for kazoo, zkCli.sh, any ZooKeeper client) in
    /// front of RSMKeeper or ZK-Mason.
    ZkGateway(ZkGatewayArgs),
    /// Measure the sequencer's capacity (in process, or over TCP with --addr).
    BenchSequencer(BenchSeqArgs),
    /// Ask every process of a running cluster how it is: one table (or --json) of roles,
    /// up or down, groups' leaders, terms, commit and applied indexes, follower lags, the
    /// sequencers' epochs, and log and shard servers' positions.
    Status(Box<StatusArgs>),
    /// Run whole clusters in the deterministic simulator, under faults, from seeds.
    Sim(SimArgs),
    /// Draw a run's records.
    #[command(subcommand)]
    Plot(PlotCmd),
    /// Experiments on a real cluster from a machine_info.txt, over SSH: run, suite,
    /// results; and the peers comparison.
    #[command(subcommand)]
    Experiment(Box<crate::experiment::args::ExperimentCmd>),
    /// Make and check machine_info.txt.
    #[command(subcommand)]
    Setup(crate::experiment::args::SetupCmd),
}

#[derive(Subcommand, Debug)]
pub enum PlotCmd {
    /// The recovery record of a `mason local` run with kills: the highest contiguous
    /// number per space over time, as <dir>/recovery/recovery.svg and .png, and the
    /// recovery times after each kill.
    Recovery {
        /// The run's results directory.
        dir: PathBuf,
    },
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum System {
    /// Clients -> Raft proxy groups -> sequencer, one request per batch.
    Mason,
    /// Clients -> sequencer, one request per op (the baseline).
    Direct,
    /// The Corfu shared log: clients take a token per append from the sequencer and write
    /// the log servers themselves; readers fill holes with junk.
    Corfu,
    /// The shared log through Mason: clients append via proxy groups, which write every
    /// op and noop to the log servers; no holes.
    Corfumason,
    /// ZooKeeper's tree in every replica of one Raft group of 3 proxies (no sequencer);
    /// reads and writes go through the log, only the leader answers.
    Rsmkeeper,
    /// ZooKeeper's tree sharded over --zk-shards shards of 3 shard servers each; every op
    /// takes a number in each shard it touches (and writes one in the zxid clock) through
    /// proxy groups and the sequencer.
    Zkmason,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Mason => "mason",
            System::Direct => "direct",
            System::Corfu => "corfu",
            System::Corfumason => "corfumason",
            System::Rsmkeeper => "rsmkeeper",
            System::Zkmason => "zkmason",
        }
    }

    /// Whether the system is a ZooKeeper (its ops are ZooKeeper requests on a tree).
    pub fn zk(self) -> bool {
        matches!(self, System::Rsmkeeper | System::Zkmason)
    }

    /// Whether the system is a shared log.
    pub fn log(self) -> bool {
        matches!(self, System::Corfu | System::Corfumason)
    }

    /// Whether clients go through proxy groups.
    pub fn proxies(self) -> bool {
        matches!(
            self,
            System::Mason | System::Corfumason | System::Rsmkeeper | System::Zkmason
        )
    }

    /// Whether the system has sequencers.
    pub fn sequencers(self) -> bool {
        !matches!(self, System::Rsmkeeper)
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Append entries (shared-log systems) or sequence ops.
    Appends,
    /// Read random positions of a log filled beforehand (shared-log systems).
    Reads,
    /// ZooKeeper: setData on the run's znodes.
    Setdata,
    /// ZooKeeper: getData on the run's znodes.
    Getdata,
    /// ZooKeeper: setData for --write-percent of the ops, getData for the rest.
    Mixed,
}

/// The ZooKeeper workload's knobs (`--system rsmkeeper`).
#[derive(Args, Clone, Debug)]
pub struct ZkArgs {
    /// ZooKeeper's mixed workload: the percentage of ops that are setData (Mason's
    /// --write_percent was a fraction: no alias, so that 1 cannot mean two things).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub write_percent: u32,
    /// ZooKeeper: the znodes every client works on (created first, /z{k % 16}/n{k}).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub znodes: u32,
    /// ZK-Mason: the tree's shards, each 3 shard servers (default 2).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=63))]
    pub zk_shards: Option<u32>,
    /// How getData (and exists, getChildren) are answered: through the log (sequenced,
    /// linearizable), or without it (local: RSMKeeper's leader after a ReadIndex round,
    /// still linearizable; ZK-Mason's shard server that has applied what the session has
    /// seen, as ZooKeeper's reads).
    #[arg(long, value_enum, default_value = "sequenced")]
    pub zk_reads: ZkReads,
}

/// How ZooKeeper reads are answered (`--zk-reads`).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ZkReads {
    #[default]
    Sequenced,
    Local,
}

impl ZkArgs {
    /// The shard count for `system` (0: not ZK-Mason).
    /// What the verdict holds reads to on `system`.
    pub fn reads_promise(&self, system: System) -> mason_zk::history::Reads {
        match (self.zk_reads, system) {
            (ZkReads::Local, System::Zkmason) => mason_zk::history::Reads::Sequential,
            _ => mason_zk::history::Reads::Linearizable,
        }
    }

    pub fn shards(&self, system: System) -> u32 {
        match system {
            System::Zkmason => self.zk_shards.unwrap_or(2),
            _ => 0,
        }
    }
}

impl Workload {
    /// The ZooKeeper workloads.
    pub fn zk(self) -> bool {
        matches!(
            self,
            Workload::Setdata | Workload::Getdata | Workload::Mixed
        )
    }
}

/// Log chains: shards separated by ';', each a chain of servers (head first) separated by
/// ','. For example `127.0.0.1:7000,127.0.0.1:7001;127.0.0.1:7002,127.0.0.1:7003`.
#[derive(Clone, Debug)]
pub struct Chains(pub Vec<Vec<SocketAddr>>);

pub fn chains(s: &str) -> Result<Chains, String> {
    let mut out = Vec::new();
    for (i, shard) in s.split(';').enumerate() {
        let mut chain = Vec::new();
        for (j, a) in shard.split(',').enumerate() {
            let a = a.trim();
            let addr = a.parse().map_err(|_| {
                format!("shard {i}, server {j}: '{a}' is not an address (host:port)")
            })?;
            chain.push(addr);
        }
        out.push(chain);
    }
    let len = out[0].len();
    if out.iter().any(|c| c.len() != len) {
        return Err("every shard's chain must have the same number of servers".into());
    }
    Ok(Chains(out))
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

impl OnOff {
    pub fn on(self) -> bool {
        self == OnOff::On
    }
}

/// Seconds, fractional allowed, and finite; `positive` also refuses 0.
fn parse_secs(s: &str, positive: bool) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    let ok = v.is_finite() && if positive { v > 0.0 } else { v >= 0.0 };
    if !ok {
        let bound = if positive { "more than 0" } else { "0 or more" };
        return Err(format!("'{s}': must be {bound} seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

/// Seconds, fractional allowed, more than zero.
pub fn positive_secs(s: &str) -> Result<Duration, String> {
    parse_secs(s, true)
}

/// Seconds, fractional allowed, zero or more.
pub fn secs(s: &str) -> Result<Duration, String> {
    parse_secs(s, false)
}

fn spaces() -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(1..=64)
}

/// Knobs shared by the proxy processes, whoever starts them.
#[derive(Args, Debug, Clone)]
pub struct ProxyKnobs {
    /// Make each Raft write durable (fdatasync) before acknowledging it.
    #[arg(long, value_enum, default_value = "on")]
    pub fsync: OnOff,
    /// Ops per batch at most.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_batch: u64,
    /// K: sequencer requests (batch ids) in flight per group at most.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub max_outstanding: u64,
    /// A batch waits at most this long for more ops; 0 closes it as soon as the input is
    /// drained.
    #[arg(long, default_value_t = 0, alias = "batch-timeout-us")]
    pub batch_delay_us: u64,
    /// One Raft tick, in milliseconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub tick_ms: u64,
    /// Raft election timeout, in ticks (randomized up to twice this).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(2..=100_000))]
    pub election_ticks: u64,
    /// Raft heartbeat interval, in ticks.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub heartbeat_ticks: u64,
    /// A group leader that has heard nothing from its sequencer for this long sends it a
    /// heartbeat, in milliseconds.
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub seq_heartbeat_ms: u64,
    /// A group leader that has heard nothing from its sequencer for this long asks a
    /// backup sequencer to take over, in milliseconds.
    #[arg(long, default_value_t = 150, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub seq_timeout_ms: u64,
    /// Snapshot each replica's state and compact its Raft log every this many applied
    /// entries (0: never; Mason's max_log_size).
    #[arg(long, default_value_t = 10_000, alias = "max-log-size")]
    pub snapshot_entries: u64,
    /// Bytes of answers queued for one client connection, in MiB, before the connection is
    /// closed (its client is not reading).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub conn_queue_mb: u64,
    /// A client session with no op for this many seconds is closed through the log (its
    /// dedup state forgotten; its client must open a new one).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub session_timeout_s: u64,
}

impl ProxyKnobs {
    pub fn to_args(&self) -> Vec<String> {
        vec![
            "--fsync".into(),
            if self.fsync.on() { "on" } else { "off" }.into(),
            "--max-batch".into(),
            self.max_batch.to_string(),
            "--max-outstanding".into(),
            self.max_outstanding.to_string(),
            "--batch-delay-us".into(),
            self.batch_delay_us.to_string(),
            "--tick-ms".into(),
            self.tick_ms.to_string(),
            "--election-ticks".into(),
            self.election_ticks.to_string(),
            "--heartbeat-ticks".into(),
            self.heartbeat_ticks.to_string(),
            "--seq-heartbeat-ms".into(),
            self.seq_heartbeat_ms.to_string(),
            "--seq-timeout-ms".into(),
            self.seq_timeout_ms.to_string(),
            "--snapshot-entries".into(),
            self.snapshot_entries.to_string(),
            "--session-timeout-s".into(),
            self.session_timeout_s.to_string(),
            "--conn-queue-mb".into(),
            self.conn_queue_mb.to_string(),
        ]
    }
}

#[derive(Args, Debug, Clone)]
pub struct LocalArgs {
    #[arg(long, value_enum, default_value = "mason")]
    pub system: System,
    /// Proxy groups (each 3 replicas; 3 proxy processes host one replica of every group).
    /// Default 2; RSMKeeper is one group. Each group batches on its own: where the
    /// cluster's processes outnumber the cores, fewer groups make bigger batches and do more.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub groups: Option<u32>,
    /// Sequence spaces, 1..=64.
    #[arg(long, default_value_t = 1, value_parser = spaces())]
    pub spaces: u32,
    /// Which spaces each op touches: all, random (a random non-empty subset), or a count.
    #[arg(long, default_value = "all")]
    pub op_spaces: OpSpaces,
    /// Client processes.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub clients: u32,
    /// Clients (each its own op sequence) per client process.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=65535))]
    pub client_threads: u32,
    /// Ops in flight per client.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// The clients of a client process that load one group share one connection to each
    /// of its replicas: what they send in one turn goes out in one write and is batched
    /// together, and their answers come back together. off: a connection per client.
    /// (Shared-log clients share their appends' sequencing and their links to the log servers.)
    #[arg(long, value_enum, default_value = "on")]
    pub shared_conns: OnOff,
    /// Payload bytes per op (default: 64 for the shared-log systems, as in Mason; 0
    /// otherwise). Log payloads start with 16 bytes naming the op, so they are at least 16.
    #[arg(long)]
    pub payload: Option<usize>,
    /// Appends, or reads of a log filled by --prefill appends first (shared-log systems);
    /// setdata, getdata or mixed (ZooKeeper systems; default mixed).
    #[arg(long, value_enum)]
    pub workload: Option<Workload>,
    #[command(flatten)]
    pub zk: ZkArgs,
    /// Log servers (shared-log systems): shards x --replication.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub log_servers: u32,
    /// Servers per shard's chain.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=8))]
    pub replication: u32,
    /// Appends before a read workload, in all.
    #[arg(long, default_value_t = 100_000)]
    pub prefill: u64,
    /// SIGKILL log server --log-victim this many seconds after the clients start.
    #[arg(long, value_parser = positive_secs)]
    pub kill_log_server: Option<Duration>,
    /// Restart the killed log server (from its data directory) at this many seconds.
    #[arg(long, value_parser = positive_secs, requires = "kill_log_server")]
    pub restart_log_server: Option<Duration>,
    /// Which log server the kill hits (server i is member i % R of shard i / R's chain;
    /// 0 is the head of shard 0, 1 its tail with R = 2).
    #[arg(long, default_value_t = 0)]
    pub log_victim: u32,
    /// Measured seconds.
    #[arg(long, default_value = "5", value_parser = positive_secs)]
    pub duration: Duration,
    /// Seconds of load before measuring.
    #[arg(long, default_value = "1", value_parser = secs)]
    pub warmup: Duration,
    /// Results directory (default: results/<system>-g<G>-s<S>-<time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Clients move to another replica after this long without an answer.
    #[arg(long, default_value = "1", value_parser = positive_secs)]
    pub retry_timeout: Duration,
    /// SIGKILL proxy process 2 this many seconds after the clients start (with 1 or 2
    /// groups a follower: first elections go round the processes, group g's at process g
    /// mod 3).
    #[arg(long, value_parser = positive_secs)]
    pub kill_follower: Option<Duration>,
    /// Restart the killed follower from its data directory this many seconds after the
    /// clients start.
    #[arg(long, value_parser = positive_secs, requires = "kill_follower")]
    pub restart_follower: Option<Duration>,
    /// SIGKILL client process 0 this many seconds after the clients start (with
    /// --restart-client).
    #[arg(long, value_parser = positive_secs, requires = "restart_client")]
    pub kill_client: Option<Duration>,
    /// Start client process 0 again, with the same index (so the same client ids, each in a
    /// new session), this many seconds after the clients start.
    #[arg(long, value_parser = positive_secs, requires = "kill_client")]
    pub restart_client: Option<Duration>,
    /// SIGKILL the proxy process that leads group 0 this many seconds after the clients
    /// start (its replicas of other groups die with it, as with a machine).
    #[arg(long, value_parser = positive_secs)]
    pub kill_leader: Option<Duration>,
    /// SIGKILL the primary sequencer this many seconds after the clients start; a backup
    /// takes over.
    #[arg(long, value_parser = positive_secs)]
    pub kill_sequencer: Option<Duration>,
    /// SIGKILL ZK-Mason shard server 1 of shard 0 this many seconds after the clients start.
    #[arg(long, value_parser = positive_secs)]
    pub kill_zk_server: Option<Duration>,
    /// Restart the killed shard server (from its data directory) at this many seconds.
    #[arg(long, value_parser = positive_secs, requires = "kill_zk_server")]
    pub restart_zk_server: Option<Duration>,
    /// rsmkeeper and zkmason: start the cluster with ZooKeeper front ends (`mason
    /// zk-gateway`) instead of a load, print `serving zookeeper on HOST:PORT,...` and
    /// serve until SIGINT or SIGTERM; then stop every process and exit 0.
    #[arg(long)]
    pub serve: bool,
    /// With --serve: the front ends (each its own port).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16), requires = "serve")]
    pub gateways: u32,
    /// With --serve: the first front end's port (the next ones follow it); free ports
    /// when not given.
    #[arg(long, requires = "serve")]
    pub serve_port: Option<u16>,
    /// Sequencers: the primary and its backups (mason system).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub sequencers: u32,
    /// Check every invariant after the run (off: only the throughput and latency lines,
    /// for long runs whose records would take long to check).
    #[arg(long, value_enum, default_value = "on")]
    pub verify: OnOff,
    /// Record the highest contiguous number per space every 10 ms into
    /// <out>/recovery/contig.csv (on whenever a kill is scheduled).
    #[arg(long)]
    pub record_contiguity: bool,
    /// Tokio worker threads in each process of the cluster. With 1, the proxies, the
    /// clients and a sequencer whose core shares its thread each run on one thread (a
    /// current-thread runtime).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub process_threads: u32,
    /// The sequencers' core on a thread of its own (`mason sequencer --core-thread`).
    /// Default: on where clients talk to the sequencer directly (direct, corfu), which then
    /// carries the load; off behind proxy groups, where every process of the cluster
    /// shares this machine's cores and a thread hop per request costs more than it gives.
    #[arg(long, value_enum)]
    pub seq_core_thread: Option<OnOff>,
    /// Garbage collection off: the sequencer computes no watermarks, so recorded sets grow
    /// for the whole run (Mason's --no_gc).
    #[arg(long)]
    pub no_gc: bool,
    #[command(flatten)]
    pub proxy: ProxyKnobs,
}

/// Who a role is to its peers: the cluster secret every connection's handshake proves.
#[derive(Args, Debug, Clone)]
pub struct KeyArgs {
    /// The cluster key: a file of 64 hex digits, readable only by its owner (`mason local`
    /// and `mason experiment run` make one per run).
    #[arg(long, value_name = "FILE")]
    pub cluster_key_file: Option<PathBuf>,
    /// Run without a cluster key: any process that can reach this one's port can talk to
    /// it as anything (only on a network no one else shares).
    #[arg(long, conflicts_with = "cluster_key_file")]
    pub insecure: bool,
}

impl KeyArgs {
    /// The key, from its file; or the well-known insecure one with `--insecure`.
    pub fn load(&self) -> anyhow::Result<std::sync::Arc<mason_common::auth::ClusterKey>> {
        use mason_common::auth::ClusterKey;
        let key = match (&self.cluster_key_file, self.insecure) {
            (Some(p), _) => ClusterKey::from_file(p)?,
            (None, true) => {
                tracing::warn!("running without a cluster key (--insecure): anyone who can reach this port can act as any role");
                ClusterKey::insecure()
            }
            (None, false) => anyhow::bail!(
                "no --cluster-key-file: give the cluster's key file (`mason local` and `mason experiment run` make one per run), or --insecure to run without authentication"
            ),
        };
        Ok(std::sync::Arc::new(key))
    }
}

/// `A..B`: seeds A (inclusive) to B (exclusive).
pub fn seed_range(s: &str) -> Result<std::ops::Range<u64>, String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("'{s}' is not a range A..B"))?;
    let a: u64 = a.parse().map_err(|_| format!("'{a}' is not a seed"))?;
    let b: u64 = b.parse().map_err(|_| format!("'{b}' is not a seed"))?;
    if a >= b {
        return Err(format!("'{s}' is empty"));
    }
    Ok(a..b)
}

#[derive(Args, Debug)]
pub struct SimArgs {
    /// Name the scenarios and exit.
    #[arg(long)]
    pub list: bool,
    /// A scenario (see --list), or `all` for every scenario but the largest.
    #[arg(long, default_value = "steady")]
    pub scenario: String,
    /// Replay one seed.
    #[arg(long, conflicts_with = "seeds")]
    pub seed: Option<u64>,
    /// Sweep seeds A..B (B excluded).
    #[arg(long, value_parser = seed_range)]
    pub seeds: Option<std::ops::Range<u64>>,
    /// Break one protocol step on purpose: skip-reask, answer-before-commit, no-hold-back,
    /// no-dedup, no-fence, no-log-redo, wrong-numbers, keeper-reorder, no-zk-redo,
    /// read-without-index, ack-before-persist, sync-nothing (proxies), no-fill, majority-promises (sequencers),
    /// zk-out-of-order, zk-no-views, read-any-state, zk-close-on-arrival (ZK-Mason shard
    /// servers).
    #[arg(long)]
    pub mutant: Option<String>,
    /// Print every event of the run.
    #[arg(long)]
    pub trace: bool,
    /// Also report wall-clock speed (events/s, virtual seconds per wall second) on stderr.
    #[arg(long)]
    pub timing: bool,
    /// Seeds run in parallel threads (output stays in seed order).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub jobs: u64,
}
