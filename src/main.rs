//! The one `mason` binary: a subcommand per role (sequencer, proxy, client, corfu-server)
//! and per tool (local cluster, experiments over SSH, setup, simulator, plots, benchmarks).

mod args;
mod cpu;
mod experiment;
mod live;
mod local;
mod logrun;
mod report;
mod roles;
mod sim;
mod status;
mod watch;
mod zkrun;

use anyhow::Context;
use args::{
    BenchSeqArgs, ClientArgs, Cmd, CorfuServerArgs, ProxyArgs, SequencerArgs, ZkGatewayArgs,
    ZkServerArgs,
};
use clap::Parser;
use mason_common::transport::{Tcp, Transport};
use std::sync::Arc;
use std::time::{Duration, Instant};

// Every role allocates per message; mimalloc roughly halves what glibc's malloc costs here
// (see docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = args::Cli::parse();
    // The simulator runs many replicas (and their expected failovers) in one process: only
    // errors, unless asked.
    let default_level = if matches!(cli.cmd, Cmd::Sim(_)) {
        "error"
    } else {
        "info"
    };
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .init();
    SPIN_US.store(cli.spin_us, std::sync::atomic::Ordering::Relaxed);
    let code = match run(cli.cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

/// The tokio runtime a role runs on, with `threads` workers. Given one thread, a role runs
/// on a current-thread runtime: its tasks then run on the thread that calls `block_on`,
/// with none of a multi-thread scheduler's hand-offs (1.18x a proxy group's ops/s at
/// saturation on 2 vCPUs, docs/benchmarks.md), unless `apart`: it needs a worker apart
/// from that thread (it blocks one on disk work with `block_in_place`, or runs its core on
/// the `block_on` thread beside the tasks that serve its connections), or it keeps the
/// multi-thread runtime it always had, not having been measured on the other (the
/// ZooKeeper front end, `mason watch`, the sequencer benchmark). A current-thread runtime
/// polls its sockets for up to `--spin-us` before it sleeps (`mason_common::spin`).
fn runtime(threads: usize, apart: bool) -> anyhow::Result<tokio::runtime::Runtime> {
    if threads <= 1 && !apart {
        return mason_common::spin::Spin::build(
            tokio::runtime::Builder::new_current_thread().enable_all(),
            Duration::from_micros(spin_us()),
        )
        .context("starting the tokio runtime");
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// `--spin-us`: for the runtimes this process builds, and the processes it starts.
static SPIN_US: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn spin_us() -> u64 {
    SPIN_US.load(std::sync::atomic::Ordering::Relaxed)
}

fn run(cmd: Cmd) -> anyhow::Result<i32> {
    match cmd {
        Cmd::Sequencer(a) => sequencer(a).map(|_| 0),
        Cmd::Proxy(a) => proxy(a).map(|_| 0),
        Cmd::Client(a) => client(a).map(|_| 0),
        Cmd::CorfuServer(a) => corfu_server(a).map(|_| 0),
        Cmd::ZkServer(a) => zk_server(a).map(|_| 0),
        Cmd::ZkGateway(a) => zk_gateway(a).map(|_| 0),
        Cmd::Local(a) => local::run(a),
        Cmd::Watch(a) => watch::run(a),
        Cmd::BenchSequencer(a) => bench_sequencer(a).map(|_| 0),
        Cmd::Sim(a) => sim::run(a),
        Cmd::Status(a) => status::run(*a),
        Cmd::Plot(args::PlotCmd::Recovery { dir }) => plot_recovery(&dir),
        Cmd::Experiment(c) => experiment::experiment(*c),
        Cmd::Setup(c) => experiment::setup(c),
    }
}

async fn terminated() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

fn sequencer(a: SequencerArgs) -> anyhow::Result<()> {
    let key = a.key.load()?;
    let rt = runtime(a.threads, a.core_thread.on())?;
    rt.block_on(async move {
        anyhow::ensure!(
            a.id < a.sequencers,
            "--id {} is not an index among --sequencers {}",
            a.id,
            a.sequencers
        );
        let node = mason_sequencer::SeqNode::new(mason_sequencer::SeqNodeConfig {
            id: a.id,
            sequencers: a.sequencers,
            groups: a.groups,
            spaces: a.spaces,
            primary: a.id == 0 && !a.backup,
            window: a.window as usize,
            gc_us: a.gc_ms * 1000,
            // A fresh ballot per process: a restarted sequencer never reuses a takeover.
            ballot: rand::random::<u64>() | 1,
            ..Default::default()
        });
        let listener = Tcp
            .bind(a.listen)
            .await
            .with_context(|| format!("binding {}", a.listen))?;
        serve_metrics(a.metrics_listen).await?;
        tracing::info!(
            listen = %a.listen,
            spaces = a.spaces,
            id = a.id,
            epoch = ?node.active_epoch(),
            "sequencer up"
        );
        let mut serve =
            mason_common::conn::ServeConfig::new(key, mason_common::auth::Role::sequencer(a.id));
        serve.max_conns = a.max_connections as usize;
        let cfg = mason_sequencer::server::ServerConfig {
            serve,
            max_frame: a.max_frame,
            client_max_frame: 4 << 10,
            record: a
                .record_dir
                .as_ref()
                .map(|d| d.join(format!("grants-{}.bin", a.id))),
            core_thread: a.core_thread.on(),
        };
        mason_sequencer::server::serve(listener, node, a.groups, cfg, terminated()).await
    })
}

fn proxy(a: ProxyArgs) -> anyhow::Result<()> {
    let listen = *a
        .peers
        .get(a.replica as usize)
        .context("--replica is not an index into --peers")?;
    anyhow::ensure!(
        a.triple < a.triples,
        "--triple {} is not one of --triples {}",
        a.triple,
        a.triples
    );
    let groups: Vec<u32> = (0..a.groups)
        .filter(|g| g % a.triples == a.triple)
        .collect();
    anyhow::ensure!(
        !groups.is_empty(),
        "triple {} of {} hosts none of the {} group(s)",
        a.triple,
        a.triples,
        a.groups
    );
    let key = a.key.load()?;
    let rt = runtime(a.threads, false)?;
    rt.block_on(async move {
        let listener = Tcp.bind(listen).await.with_context(|| format!("binding {listen}"))?;
        serve_metrics(a.metrics_listen).await?;
        let cfg = mason_proxy::server::ServerConfig {
            replica: a.replica,
            triple: a.triple,
            groups,
            peers: a.peers.clone(),
            sequencers: a.sequencers.clone(),
            data_dir: a.data_dir.clone(),
            record_dir: a.record_dir.clone(),
            fsync: a.knobs.fsync.on(),
            spin: Duration::from_micros(spin_us()),
            tick: std::time::Duration::from_millis(a.knobs.tick_ms),
            replica_cfg: mason_proxy::ReplicaConfig {
                spaces: a.spaces,
                max_batch_ops: a.knobs.max_batch as usize,
                max_outstanding: a.knobs.max_outstanding as usize,
                batch_delay_us: a.knobs.batch_delay_us,
                election_ticks: a.knobs.election_ticks as usize,
                heartbeat_ticks: a.knobs.heartbeat_ticks as usize,
                seq_heartbeat_us: a.knobs.seq_heartbeat_ms * 1000,
                seq_timeout_us: a.knobs.seq_timeout_ms * 1000,
                snapshot_entries: a.knobs.snapshot_entries,
                session_timeout_us: a.knobs.session_timeout_s * 1_000_000,
                keeper: a.keeper,
                wall_base_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0),
                ..Default::default()
            },
            max_frame: a.max_frame,
            client_max_frame: a.max_payload as usize + (4 << 10),
            log_chains: a.log_chains.clone().map(|c| c.0).unwrap_or_default(),
            zk_servers: a.zk_servers.clone().map(|c| c.0).unwrap_or_default(),
            key,
            max_conns: a.max_connections as usize,
            conn_queue: (a.knobs.conn_queue_mb as usize) << 20,
        };
        tracing::info!(replica = a.replica, groups = a.groups, %listen, fsync = a.knobs.fsync.on(), "proxy up");
        mason_proxy::server::run(cfg, Arc::new(Tcp), listener, terminated()).await
    })
}

fn corfu_server(a: CorfuServerArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.shard < a.shards,
        "--shard {} is not a shard of --shards {}",
        a.shard,
        a.shards
    );
    anyhow::ensure!(
        a.chain_index < a.chain_len,
        "--chain-index {} is not a place in a chain of --chain-len {}",
        a.chain_index,
        a.chain_len
    );
    let tail = a.chain_index + 1 == a.chain_len;
    anyhow::ensure!(
        tail || a.successor.is_some(),
        "--successor is required: server {} of a chain of {} is not the tail",
        a.chain_index,
        a.chain_len
    );
    let key = a.key.load()?;
    let rt = runtime(a.threads, true)?;
    rt.block_on(async move {
        let listener = Tcp
            .bind(a.listen)
            .await
            .with_context(|| format!("binding {}", a.listen))?;
        serve_metrics(a.metrics_listen).await?;
        let cfg = mason_corfu_server::server::ServerConfig {
            node: mason_corfu_server::node::NodeConfig {
                shard: a.shard,
                shards: a.shards,
                chain_index: a.chain_index,
                chain_len: a.chain_len,
                max_payload: a.max_payload,
                forward_timeout_us: 1_000_000,
                max_read_bytes: 4 << 20,
            },
            dir: a.dir.clone(),
            fsync: a.fsync.on(),
            segment_bytes: a.segment_mb << 20,
            successor: if tail { None } else { a.successor },
            max_frame: a.max_frame,
            key,
            max_conns: a.max_connections as usize,
        };
        tracing::info!(listen = %a.listen, shard = a.shard, chain_index = a.chain_index, fsync = a.fsync.on(), "log server up");
        mason_corfu_server::server::serve(listener, Arc::new(Tcp), cfg, terminated()).await
    })
}

fn zk_server(a: ZkServerArgs) -> anyhow::Result<()> {
    let servers = a.servers.0.clone();
    let shards = servers.len() as u32;
    anyhow::ensure!(
        shards <= 63,
        "--servers names {shards} shards; ZK-Mason has at most 63"
    );
    let here = servers.get(a.shard as usize).ok_or_else(|| {
        anyhow::anyhow!(
            "--shard {} is not one of the {shards} shards of --servers",
            a.shard
        )
    })?;
    anyhow::ensure!(
        (a.index as usize) < here.len(),
        "--index {} is not a server of shard {} (it has {})",
        a.index,
        a.shard,
        here.len()
    );
    let key = a.key.load()?;
    let rt = runtime(a.threads, true)?;
    rt.block_on(async move {
        let listener = Tcp
            .bind(a.listen)
            .await
            .with_context(|| format!("binding {}", a.listen))?;
        serve_metrics(a.metrics_listen).await?;
        let mut node = mason_zk_server::node::NodeConfig::new(
            a.shard,
            shards,
            a.index,
            servers.iter().map(|s| s.len() as u32).collect(),
        );
        node.snapshot_every = a.snapshot_every;
        let cfg = mason_zk_server::server::ServerConfig {
            node,
            dir: a.dir.clone(),
            fsync: a.fsync.on(),
            servers,
            max_frame: a.max_frame,
            key,
            max_conns: a.max_connections as usize,
            record_dir: a.record_dir.clone(),
        };
        tracing::info!(listen = %a.listen, shard = a.shard, index = a.index, fsync = a.fsync.on(), "zk server up");
        mason_zk_server::server::serve(listener, Arc::new(Tcp), cfg, terminated()).await
    })
}

fn zk_gateway(a: ZkGatewayArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.system.zk(),
        "--system {} is not a ZooKeeper system (rsmkeeper or zkmason)",
        a.system.name()
    );
    anyhow::ensure!(
        a.min_session_timeout_ms <= a.max_session_timeout_ms,
        "--min-session-timeout-ms {} is above --max-session-timeout-ms {}",
        a.min_session_timeout_ms,
        a.max_session_timeout_ms
    );
    let shards = a.zk.shards(a.system);
    let zk_servers = a
        .zk_servers
        .as_ref()
        .map(|c| c.0.clone())
        .unwrap_or_default();
    anyhow::ensure!(
        shards == 0 || zk_servers.len() == shards as usize,
        "--zk-servers names {} shards, but --zk-shards is {shards} (ZK-Mason's gateway follows \
         every shard server's watch feed)",
        zk_servers.len()
    );
    // Fault injection for tests (tests/zk_gateway.rs): watch feeds that answer late.
    let feed_delay = std::env::var("MASON_TEST_FEED_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::ZERO, Duration::from_millis);
    let key = a.key.load()?;
    let rt = runtime(a.threads, true)?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .with_context(|| format!("binding {}", a.listen))?;
        serve_metrics(a.metrics_listen).await?;
        let cfg = mason_zk_gateway::server::GatewayConfig {
            proxies: a.proxies.clone(),
            groups: a.groups,
            shards,
            zk_servers,
            local_reads: a.zk.zk_reads == args::ZkReads::Local,
            key,
            conn: mason_zk_gateway::conn::GwConfig {
                max_buffer: a.max_buffer,
                min_timeout_ms: a.min_session_timeout_ms,
                max_timeout_ms: a.max_session_timeout_ms,
            },
            retry_timeout: Duration::from_millis(a.retry_timeout_ms.max(1)),
            shared_conns: a.shared_conns.on(),
            gateway_id: a.id,
            max_connections: a.max_connections as usize,
            feed_delay,
        };
        tracing::info!(listen = %a.listen, system = a.system.name(), "zk gateway up");
        mason_zk_gateway::server::serve(listener, cfg, terminated()).await
    })
}

fn client(a: ClientArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.sequencer.is_some() || !a.system.sequencers(),
        "--sequencer is required for the {} system",
        a.system.name()
    );
    anyhow::ensure!(
        a.workload().zk() == a.system.zk(),
        "--workload {} does not apply to the {} system",
        format!("{:?}", a.workload()).to_lowercase(),
        a.system.name()
    );
    let key = a.key.load()?;
    let rt = runtime(a.runtime_threads, false)?;
    let out = a.out.clone();
    let index = a.index;
    std::fs::create_dir_all(&out)?;
    rt.block_on(serve_metrics(a.metrics_listen))?;
    let cfg = a.load_config(key.clone());
    let watch = a.watch_csv.clone().map(|csv| {
        let t0 = t0_instant(a.t0_unix_ms);
        let until = Instant::now() + cfg.warmup + cfg.duration;
        let (proxies, groups, spaces) = (cfg.proxies.clone(), cfg.groups, cfg.spaces);
        rt.spawn(async move {
            let watched = mason_client::watch::Watched {
                proxies,
                groups,
                spaces,
            };
            let r = mason_client::watch::record_contiguity(
                Arc::new(Tcp),
                key,
                watched,
                &csv,
                t0,
                until,
            )
            .await;
            if let Err(e) = r {
                tracing::error!(error = %e, csv = %csv.display(), "writing the contiguity record");
            }
        })
    });
    let result = rt.block_on(mason_client::load::run(Arc::new(Tcp), cfg));
    if let Some(w) = watch {
        let _ = rt.block_on(w);
    }
    if result.unanswered > 0 {
        tracing::warn!(
            unanswered = result.unanswered,
            "ops left unanswered after the drain"
        );
    }
    if let Some(e) = &result.acks_error {
        anyhow::bail!("the answers could not be recorded: {e}");
    }
    mason_client::load::write_results(&out, index, &result)
        .with_context(|| format!("writing results under {}", out.display()))?;
    if a.metrics_listen.is_some() {
        // The final values, for after this process has gone (`mason local` lists them).
        let prom = out.join(format!("metrics-client-{index}.prom"));
        let text = mason_common::metrics::encode(mason_common::metrics::registry());
        std::fs::write(&prom, text).with_context(|| format!("writing {}", prom.display()))?;
    }
    println!("{}", result.dat_line());
    Ok(())
}

/// Serves the process's metrics at `addr` (`--metrics-listen`), if given, on the current
/// runtime.
async fn serve_metrics(addr: Option<std::net::SocketAddr>) -> anyhow::Result<()> {
    if let Some(addr) = addr {
        mason_common::metrics::start(addr)
            .await
            .with_context(|| format!("binding --metrics-listen {addr}"))?;
    }
    Ok(())
}

/// Prints the recovery times of a run with kills, and draws its record.
pub fn plot_recovery(dir: &std::path::Path) -> anyhow::Result<i32> {
    let record = mason_plot::read_record(dir)?;
    for line in mason_plot::summary_lines(&mason_plot::recovery(&record)) {
        println!("{line}");
    }
    match mason_plot::plot_recovery(dir) {
        Ok(paths) => {
            for p in paths {
                println!("plot: {}", p.display());
            }
            Ok(0)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(1)
        }
    }
}

/// The `Instant` that was `t0_unix_ms` (now, if not given).
fn t0_instant(t0_unix_ms: Option<u64>) -> Instant {
    let now = Instant::now();
    let Some(t0) = t0_unix_ms else {
        return now;
    };
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(t0);
    now.checked_sub(Duration::from_millis(unix_now.saturating_sub(t0)))
        .unwrap_or(now)
}

fn bench_sequencer(a: BenchSeqArgs) -> anyhow::Result<()> {
    let cfg = mason_sequencer::bench::BenchConfig {
        spaces: a.spaces,
        batch: a.batch,
        groups: a.groups,
        duration: a.duration,
    };
    let r = match a.addr {
        None => mason_sequencer::bench::in_process(&cfg),
        Some(addr) => {
            let key = a.key.load()?;
            let rt = runtime(a.threads, true)?;
            rt.block_on(mason_sequencer::bench::over_network(
                Arc::new(Tcp),
                addr,
                &key,
                &cfg,
                a.pipeline,
            ))?
        }
    };
    println!(
        "sequencer {}: spaces={} batch={} groups={} requests/s={:.0} numbers/s={:.0}",
        if a.addr.is_some() {
            "over tcp"
        } else {
            "in process"
        },
        a.spaces,
        a.batch,
        a.groups,
        r.requests_per_sec(),
        r.numbers_per_sec()
    );
    Ok(())
}
