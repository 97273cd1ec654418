//! The command line of every role process, shared by `mason local` (processes on loopback)
//! and `mason experiment run` (processes on machines over SSH): both describe a run as a
//! [`Shape`] and ask here for each process's flags.

use crate::args::{ProxyKnobs, System, Workload};
use mason_client::load::OpSpaces;
use std::net::SocketAddr;
use std::time::Duration;

/// What every process of a run needs to agree on.
#[derive(Clone, Debug)]
pub struct Shape {
    pub system: System,
    pub groups: u32,
    pub spaces: u32,
    pub op_spaces: OpSpaces,
    pub client_threads: u32,
    pub concurrency: u32,
    /// A client process's clients of one group share their connections.
    pub shared_conns: bool,
    /// Payload bytes per op, resolved (64 for the shared-log systems unless set).
    pub payload: usize,
    pub workload: Workload,
    /// ZooKeeper: the mixed workload's percentage of setData, and the znodes.
    pub write_percent: u32,
    pub znodes: u32,
    /// ZK-Mason: the tree's shards (0: not ZK-Mason).
    pub zk_shards: u32,
    /// ZooKeeper: reads answered without the log.
    pub zk_local_reads: bool,
    /// Appends by each client process before a read workload.
    pub prefill_per_client: u64,
    pub warmup: Duration,
    pub duration: Duration,
    pub cooldown: Duration,
    pub retry_timeout: Duration,
    pub proxy: ProxyKnobs,
    /// Worker threads of each sequencer, proxy and log server process.
    pub threads: u32,
    /// Runtime threads of each client process.
    pub client_threads_rt: u32,
    /// Sequencer watermark period in ms (0: GC off).
    pub gc_ms: u64,
    /// The sequencers' core on a thread of its own (`mason sequencer --core-thread`).
    pub seq_core_thread: bool,
    /// The cluster key every process of the run is given (a file only its owner reads).
    pub key_file: std::path::PathBuf,
    /// `--spin-us` of every process of the run.
    pub spin_us: u64,
}

impl Shape {
    /// The flags every role process of the run is given.
    fn shared_args(&self) -> [String; 4] {
        [
            s("--cluster-key-file"),
            self.key_file.display().to_string(),
            s("--spin-us"),
            s(self.spin_us),
        ]
    }
}

pub fn s(v: impl ToString) -> String {
    v.to_string()
}

pub fn join(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// `mason sequencer` flags for sequencer `id` of `sequencers`, recording its grants to
/// direct clients under `record_dir`.
pub fn sequencer(
    sh: &Shape,
    listen: SocketAddr,
    id: usize,
    sequencers: usize,
    record_dir: &str,
) -> Vec<String> {
    let mut v = vec![
        s("sequencer"),
        s("--listen"),
        s(listen),
        s("--spaces"),
        s(sh.spaces),
        s("--id"),
        s(id),
        s("--sequencers"),
        s(sequencers),
        s("--groups"),
        s(sh.groups),
        s("--gc-ms"),
        s(sh.gc_ms),
        s("--threads"),
        s(sh.threads),
        s("--core-thread"),
        s(if sh.seq_core_thread { "on" } else { "off" }),
        s("--record-dir"),
        s(record_dir),
    ];
    v.extend(sh.shared_args());
    v
}

/// Where a proxy process sits: replica `replica` of triple `triple` of `triples`, whose
/// three processes listen on `peers`.
pub struct ProxyPlace<'a> {
    pub replica: u32,
    pub triple: u32,
    pub triples: u32,
    pub peers: &'a [SocketAddr],
}

/// `mason proxy` flags.
pub fn proxy(
    sh: &Shape,
    place: &ProxyPlace,
    sequencers: &[SocketAddr],
    data_dir: &str,
    record_dir: &str,
    log_chains: Option<&str>,
) -> Vec<String> {
    let mut v = vec![
        s("proxy"),
        s("--replica"),
        s(place.replica),
        s("--triple"),
        s(place.triple),
        s("--triples"),
        s(place.triples),
        s("--peers"),
        join(place.peers),
        s("--groups"),
        s(sh.groups),
        s("--spaces"),
        s(sh.spaces),
        s("--data-dir"),
        s(data_dir),
        s("--record-dir"),
        s(record_dir),
        s("--threads"),
        s(sh.threads),
    ];
    v.extend(sh.proxy.to_args());
    v.extend(sh.shared_args());
    if sh.system.sequencers() {
        v.extend([s("--sequencers"), join(sequencers)]);
    } else {
        v.push(s("--keeper"));
    }
    match (log_chains, sh.system) {
        (Some(c), System::Corfumason) => v.extend([s("--log-chains"), s(c)]),
        (Some(c), System::Zkmason) => v.extend([s("--zk-servers"), s(c)]),
        _ => {}
    }
    v
}

/// `mason zk-server` flags for server `index` of shard `shard`; `servers` is the
/// `--zk-servers` list (shards by ';', a shard's servers by ',').
pub fn zk_server(
    sh: &Shape,
    listen: SocketAddr,
    shard: usize,
    index: usize,
    servers: &str,
    data_dir: &str,
    record_dir: &str,
) -> Vec<String> {
    let mut v = vec![
        s("zk-server"),
        s("--listen"),
        s(listen),
        s("--shard"),
        s(shard),
        s("--index"),
        s(index),
        s("--servers"),
        s(servers),
        s("--dir"),
        format!("{data_dir}/zk-s{shard}-r{index}"),
        s("--fsync"),
        s(if sh.proxy.fsync.on() { "on" } else { "off" }),
        s("--record-dir"),
        s(record_dir),
        s("--threads"),
        s(sh.threads),
    ];
    v.extend(sh.shared_args());
    v
}

/// `mason zk-gateway` flags for front end `id`, listening on `listen`.
/// `zk_servers` is the shard servers' `--zk-servers` list (empty for RSMKeeper).
pub fn zk_gateway(
    sh: &Shape,
    listen: SocketAddr,
    id: u32,
    proxies: &[SocketAddr],
    zk_servers: &str,
) -> Vec<String> {
    let mut v = vec![
        s("zk-gateway"),
        s("--listen"),
        s(listen),
        s("--system"),
        s(sh.system.name()),
        s("--proxies"),
        join(proxies),
        s("--groups"),
        s(sh.groups),
        s("--id"),
        s(id),
        s("--max-session-timeout-ms"),
        s(sh.proxy
            .session_timeout_s
            .saturating_mul(1000)
            .min(i32::MAX as u64)),
        s("--threads"),
        s(sh.threads),
        s("--shared-conns"),
        s(if sh.shared_conns { "on" } else { "off" }),
    ];
    if sh.zk_shards > 0 {
        v.extend([s("--zk-shards"), s(sh.zk_shards)]);
        v.extend([s("--zk-servers"), s(zk_servers)]);
    }
    if sh.zk_local_reads {
        v.extend([s("--zk-reads"), s("local")]);
    }
    v.extend(sh.shared_args());
    v
}

/// `mason client` flags for client process `index`; `proxies` lists every proxy process
/// in triples.
pub fn client(
    sh: &Shape,
    index: u32,
    sequencer: Option<SocketAddr>,
    proxies: &[SocketAddr],
    log_chains: Option<&str>,
    out: &str,
) -> Vec<String> {
    let mut v = vec![
        s("client"),
        s("--index"),
        s(index),
        s("--system"),
        s(sh.system.name()),
        s("--groups"),
        s(sh.groups),
        s("--spaces"),
        s(sh.spaces),
        s("--op-spaces"),
        op_spaces_arg(sh.op_spaces),
        s("--threads"),
        s(sh.client_threads),
        s("--concurrency"),
        s(sh.concurrency),
        s("--shared-conns"),
        s(if sh.shared_conns { "on" } else { "off" }),
        s("--payload"),
        s(sh.payload),
        s("--warmup"),
        s(sh.warmup.as_secs_f64()),
        s("--duration"),
        s(sh.duration.as_secs_f64()),
        s("--cooldown"),
        s(sh.cooldown.as_secs_f64()),
        s("--retry-timeout"),
        s(sh.retry_timeout.as_secs_f64()),
        s("--out"),
        s(out),
        s("--runtime-threads"),
        s(sh.client_threads_rt),
    ];
    v.extend(sh.shared_args());
    if let Some(seq) = sequencer {
        v.extend([s("--sequencer"), s(seq)]);
    }
    if sh.system.proxies() {
        v.extend([s("--proxies"), join(proxies)]);
    }
    if sh.system.zk() {
        v.extend([
            s("--workload"),
            format!("{:?}", sh.workload).to_lowercase(),
            s("--write-percent"),
            s(sh.write_percent),
            s("--znodes"),
            s(sh.znodes),
        ]);
        if sh.zk_shards > 0 {
            v.extend([s("--zk-shards"), s(sh.zk_shards)]);
        }
        if sh.zk_local_reads {
            v.extend([s("--zk-reads"), s("local")]);
        }
    }
    if let Some(c) = log_chains.filter(|_| sh.system.log()) {
        v.extend([s("--log-chains"), s(c)]);
        if sh.workload == Workload::Reads {
            v.extend([s("--workload"), s("reads")]);
            v.extend([s("--prefill"), s(sh.prefill_per_client)]);
        }
    }
    v
}

/// The highest term in which a proxy's log says it took the lead of `group` (its
/// `leading; group=G term=T` lines).
pub fn led_term(log: &str, group: u32) -> Option<u64> {
    log.lines()
        .filter(|l| l.contains("leading;"))
        .filter_map(|line| {
            let field = |k: &str| {
                line.split(&format!(" {k}="))
                    .nth(1)
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| v.parse::<u64>().ok())
            };
            (field("group") == Some(u64::from(group)))
                .then(|| field("term"))
                .flatten()
        })
        .max()
}

fn op_spaces_arg(o: OpSpaces) -> String {
    match o {
        OpSpaces::All => s("all"),
        OpSpaces::Random => s("random"),
        OpSpaces::Count(k) => s(k),
    }
}
