//! `mason experiment peers`: ZooKeeper and etcd allocating sequence numbers, side by side
//! with Mason and the direct baseline, at the same client count and concurrency, all on
//! this machine. Prints one row per system and writes `peers.csv` and the servers' logs.

mod etcd;
mod etcd_proto;
mod load;
mod mason;
mod procs;
mod zk;
mod zkserve;

use anyhow::Context;
use clap::{Args, ValueEnum};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Runs Mason (`mason local`), the direct baseline, a 3-server ZooKeeper ensemble
/// (sequential-znode creates) and a 3-member etcd cluster (puts numbered by revision, and
/// a compare-and-swap counter) with the same load. Mason's clients are C processes of T
/// threads; the ZooKeeper and etcd load runs in this process, as C x T sessions
/// (connections), each with K requests in flight.
#[derive(Args, Debug, Clone)]
pub struct PeersArgs {
    /// Client processes (C); for ZooKeeper and etcd, C x T sessions in this process.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub clients: u32,
    /// Threads per client process (T).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub client_threads: u32,
    /// Requests in flight per thread or session (K).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// Mason's proxy groups (`mason local --groups`). Each group batches on its own, so at
    /// a given load more groups make smaller batches: on a machine with fewer cores than
    /// the cluster has processes, fewer groups do more (docs/benchmarks.md, "Issue 15,
    /// eighteenth step").
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub groups: u32,
    /// Measured seconds per system (fractions allowed).
    #[arg(long, default_value = "5", value_parser = positive_secs)]
    pub duration: Duration,
    /// Seconds of load before measuring.
    #[arg(long, default_value = "1", value_parser = secs)]
    pub warmup: Duration,
    /// Durable writes: off passes `--fsync off` to mason, `forceSync=no` to ZooKeeper and
    /// `--unsafe-no-fsync` to etcd where it has it (3.5+).
    #[arg(long, value_enum, default_value = "on")]
    pub fsync: OnOff,
    /// Systems to run, in this order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "mason,direct,zookeeper,etcd,etcd-cas"
    )]
    pub systems: Vec<System>,
    /// The ZooKeeper-protocol systems' workloads (zookeeper, rsmkeeper, zkmason-1,
    /// zkmason-2), each a row, in this order, through the same client.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "create")]
    pub zk_workloads: Vec<ZkWorkload>,
    /// RSMKeeper's and ZK-Mason's reads: through the log, or local (`mason local
    /// --zk-reads`); ZooKeeper's own reads are always local to the server a client is on.
    #[arg(long, value_enum, default_value = "sequenced")]
    pub zk_reads: ZkReads,
    /// Output directory (default `results/peers-<unix time>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnOff {
    On,
    Off,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    Mason,
    Direct,
    Zookeeper,
    Etcd,
    EtcdCas,
    /// RSMKeeper behind its ZooKeeper front ends (`mason local --serve`).
    Rsmkeeper,
    /// ZK-Mason with 1 shard behind its front ends.
    #[value(name = "zkmason-1")]
    Zkmason1,
    /// ZK-Mason with 2 shards behind its front ends.
    #[value(name = "zkmason-2")]
    Zkmason2,
}

/// How RSMKeeper and ZK-Mason answer reads (`mason local --zk-reads`).
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZkReads {
    Sequenced,
    Local,
}

/// What the ZooKeeper-protocol systems are loaded with.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZkWorkload {
    /// Sequential creates under /seq (the suffix is the number).
    Create,
    /// setData of 8 bytes on 64 znodes, round robin.
    Setdata,
    /// getData of the same znodes.
    Getdata,
}

fn parse_secs(s: &str, positive: bool) -> Result<Duration, String> {
    let v: f64 = s.parse().map_err(|e| format!("'{s}': {e}"))?;
    if !v.is_finite() || v < 0.0 || (positive && v == 0.0) || v > 86_400.0 {
        return Err(format!(
            "'{s}': seconds must be in {}..=86400",
            if positive { "(0" } else { "[0" }
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

fn positive_secs(s: &str) -> Result<Duration, String> {
    parse_secs(s, true)
}

fn secs(s: &str) -> Result<Duration, String> {
    parse_secs(s, false)
}

/// The load every system gets.
#[derive(Debug, Clone)]
pub struct Load {
    pub clients: u32,
    pub client_threads: u32,
    pub concurrency: u32,
    /// Mason's proxy groups.
    pub groups: u32,
    pub duration: Duration,
    pub warmup: Duration,
    pub fsync: bool,
    /// RSMKeeper and ZK-Mason answer reads without the log.
    pub zk_local_reads: bool,
}

impl Load {
    /// Client sessions for the in-process load (C x T).
    pub fn sessions(&self) -> u32 {
        self.clients * self.client_threads
    }
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub system: String,
    pub ops_per_s: Option<f64>,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    /// The servers' CPU per op over the measured window, in microseconds (every server
    /// process's user and system time; for Mason, its sequencers' and proxies').
    pub server_cpu_us: Option<f64>,
    pub note: String,
}

impl Row {
    fn measured(system: &str, t: &load::Tally, note: String) -> Row {
        let some = t.ops > 0;
        Row {
            system: system.to_string(),
            ops_per_s: Some(t.ops_per_s()),
            p50_us: some.then(|| t.us(0.5)),
            p99_us: some.then(|| t.us(0.99)),
            server_cpu_us: t.server_cpu_us(),
            note,
        }
    }

    fn without_figures(system: &str, note: String) -> Row {
        Row {
            system: system.to_string(),
            ops_per_s: None,
            p50_us: None,
            p99_us: None,
            server_cpu_us: None,
            note,
        }
    }
}

fn system_name(s: System) -> &'static str {
    match s {
        System::Mason => "mason",
        System::Direct => "direct",
        System::Zookeeper => "zookeeper",
        System::Etcd => "etcd",
        System::EtcdCas => "etcd-cas",
        System::Rsmkeeper => "rsmkeeper",
        System::Zkmason1 => "zkmason-1",
        System::Zkmason2 => "zkmason-2",
    }
}

fn fmt_opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.decimals$}"))
}

/// The table printed to stdout.
pub fn table(rows: &[Row]) -> String {
    let mut s = format!(
        "{:<18} {:>10} {:>9} {:>9} {:>10}  note\n",
        "system", "ops/s", "p50_us", "p99_us", "srv_cpu_us"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{:<18} {:>10} {:>9} {:>9} {:>10}  {}",
            r.system,
            fmt_opt(r.ops_per_s, 0),
            fmt_opt(r.p50_us, 1),
            fmt_opt(r.p99_us, 1),
            fmt_opt(r.server_cpu_us, 2),
            r.note
        );
    }
    s
}

/// The same rows as CSV (the note quoted, inner quotes doubled).
pub fn csv(rows: &[Row]) -> String {
    let mut s = String::from("system,ops_per_s,p50_us,p99_us,server_cpu_us,note\n");
    for r in rows {
        let opt = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v:.1}"));
        let _ = writeln!(
            s,
            "{},{},{},{},{},\"{}\"",
            r.system,
            opt(r.ops_per_s),
            opt(r.p50_us),
            opt(r.p99_us),
            r.server_cpu_us
                .map_or_else(String::new, |v| format!("{v:.2}")),
            r.note.replace('"', "\"\"")
        );
    }
    s
}

/// Runs one system; a failure becomes a row that says why. The ZooKeeper-protocol
/// systems give one row per workload.
fn run_one(
    s: System,
    load: &Load,
    out: &Path,
    runtime: &tokio::runtime::Runtime,
    workloads: &[ZkWorkload],
) -> Vec<Row> {
    let name = system_name(s);
    let rows = match s {
        System::Mason | System::Direct => mason::run(name, load, out).map(|r| vec![r]),
        System::Zookeeper => match zk::missing() {
            Some(why) => Ok(vec![Row::without_figures(name, why)]),
            None => runtime.block_on(zk::run(load, out, workloads)),
        },
        System::Etcd | System::EtcdCas => runtime.block_on(run_etcd(s, load, out)).map(|r| vec![r]),
        System::Rsmkeeper => runtime.block_on(zkserve::run("rsmkeeper", 0, load, out, workloads)),
        System::Zkmason1 => runtime.block_on(zkserve::run("zkmason", 1, load, out, workloads)),
        System::Zkmason2 => runtime.block_on(zkserve::run("zkmason", 2, load, out, workloads)),
    };
    rows.unwrap_or_else(|e| vec![Row::without_figures(name, format!("FAILED: {e:#}"))])
}

/// One etcd figure on a fresh cluster, stopped (and its directory removed) afterwards.
async fn run_etcd(s: System, load: &Load, out: &Path) -> anyhow::Result<Row> {
    let Some(bin) = etcd::binary() else {
        return Ok(Row::without_figures(
            system_name(s),
            "skipped: no etcd (apt-get install etcd-server)".into(),
        ));
    };
    let dir = tempfile::Builder::new()
        .prefix("mason-peers-etcd-")
        .tempdir()
        .context("creating etcd's temporary directory")?;
    let cluster = etcd::start(&bin, dir.path(), out, load.fsync).await?;
    let row = if s == System::EtcdCas {
        cluster.cas(load).await?
    } else {
        cluster.puts(load).await?
    };
    cluster.stop()?;
    Ok(row)
}

/// Runs the comparison; returns the process exit code (1 if a system failed or gave a
/// number twice).
pub fn run(a: PeersArgs) -> anyhow::Result<i32> {
    let out = match a.out {
        Some(o) => o,
        None => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            PathBuf::from(format!("results/peers-{t}"))
        }
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let load = Load {
        clients: a.clients,
        client_threads: a.client_threads,
        concurrency: a.concurrency,
        groups: a.groups,
        duration: a.duration,
        warmup: a.warmup,
        fsync: a.fsync == OnOff::On,
        zk_local_reads: a.zk_reads == ZkReads::Local,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(load.sessions().clamp(1, 64) as usize)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let mut rows = Vec::new();
    for &s in &a.systems {
        for row in run_one(s, &load, &out, &runtime, &a.zk_workloads) {
            tracing::info!(system = row.system.as_str(), ops_per_s = ?row.ops_per_s, "done");
            rows.push(row);
        }
    }
    drop(runtime);
    let text = table(&rows);
    print!("{text}");
    let csv_path = out.join("peers.csv");
    std::fs::write(&csv_path, csv(&rows))
        .with_context(|| format!("writing {}", csv_path.display()))?;
    println!(
        "wrote {} (and the servers' logs beside it)",
        csv_path.display()
    );
    let failed = rows
        .iter()
        .any(|r| r.note.starts_with("FAILED") || r.note.contains("DUPLICATES"));
    Ok(if failed { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(system: &str, ops: Option<f64>, note: &str) -> Row {
        Row {
            system: system.into(),
            ops_per_s: ops,
            p50_us: ops.map(|_| 12.34),
            p99_us: ops.map(|_| 56.78),
            server_cpu_us: ops.map(|_| 9.876),
            note: note.into(),
        }
    }

    #[test]
    fn csv_quotes_notes_and_leaves_missing_figures_empty() {
        let rows = [
            row("etcd", Some(1234.5), "said \"hi\", twice"),
            row("zookeeper", None, "skipped"),
        ];
        assert_eq!(
            csv(&rows),
            "system,ops_per_s,p50_us,p99_us,server_cpu_us,note\n\
             etcd,1234.5,12.3,56.8,9.88,\"said \"\"hi\"\", twice\"\n\
             zookeeper,,,,,\"skipped\"\n"
        );
        let t = table(&rows);
        assert!(t
            .lines()
            .nth(2)
            .is_some_and(|l| l.contains(" - ") && l.ends_with("skipped")));
    }

    #[test]
    fn seconds_parse_with_bounds() {
        assert_eq!(positive_secs("2.5"), Ok(Duration::from_millis(2500)));
        assert!(positive_secs("0").is_err());
        assert_eq!(secs("0"), Ok(Duration::ZERO));
        assert!(secs("-1").is_err());
        assert!(secs("x").is_err());
    }
}
