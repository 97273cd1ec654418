//! Flags of `mason experiment ...` and `mason setup ...`: the knobs of Mason's
//! run_experiment.py (DESIGN.md section 10), under the same names where they fit, with
//! Mason's defaults.

use crate::args::{positive_secs, secs, OnOff, ProxyKnobs, System, Workload, ZkArgs};
use clap::{Args, Subcommand};
use mason_client::load::OpSpaces;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Subcommand, Debug)]
pub enum ExperimentCmd {
    /// Run one experiment on the machines of a machine_info.txt, over SSH.
    Run(RunArgs),
    /// Sweep spaces x groups x concurrency, several trials per point; a CSV of every point
    /// (with the median of its trials) and throughput-vs-latency plots.
    Suite(SuiteArgs),
    /// Print a run's `aggregate-throughput 50 99 99.9 99.99` line from its results.
    Results {
        /// The run's results directory.
        dir: PathBuf,
    },
    /// ZooKeeper and etcd allocating sequence numbers beside Mason and the direct baseline,
    /// on this machine, at the same client count and concurrency.
    Peers(mason_experiments::peers::PeersArgs),
}

#[derive(Subcommand, Debug)]
pub enum SetupCmd {
    /// Make machine_info.txt from an Emulab/CloudLab "List View" paste, asking each
    /// machine over SSH for its experiment-network address, interfaces and MAC.
    ParseList(ParseListArgs),
    /// Check a machine_info.txt and print the machines it names, by role.
    Check {
        #[arg(default_value = "machine_info.txt")]
        file: PathBuf,
    },
    /// Wait until something listens at ADDR (used on the machines by `experiment run`).
    #[command(hide = true)]
    WaitListen {
        addr: std::net::SocketAddr,
        #[arg(long, default_value = "30", value_parser = positive_secs)]
        timeout: Duration,
        /// Give up as soon as this file exists (the process wrote its exit status).
        #[arg(long)]
        exit_file: Option<PathBuf>,
    },
}

#[derive(Args, Debug, Clone)]
pub struct SshArgs {
    /// The SSH user (default: ssh's own: the ssh_config's or the local user).
    #[arg(long)]
    pub ssh_user: Option<String>,
    #[arg(long)]
    pub ssh_port: Option<u16>,
    /// A private key file (ssh -i).
    #[arg(long)]
    pub ssh_identity: Option<PathBuf>,
    /// An ssh_config file (ssh -F).
    #[arg(long)]
    pub ssh_config: Option<PathBuf>,
    /// Seconds to wait for each SSH connection.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=600))]
    pub connect_timeout: u32,
}

impl SshArgs {
    pub fn ssh(&self) -> mason_setup::ssh::Ssh {
        mason_setup::ssh::Ssh {
            config: self.ssh_config.clone(),
            user: self.ssh_user.clone(),
            port: self.ssh_port,
            identity: self.ssh_identity.clone(),
            connect_timeout: self.connect_timeout,
        }
    }
}

#[derive(Args, Debug)]
pub struct ParseListArgs {
    /// The List View paste.
    #[arg(default_value = "machine_list.txt")]
    pub list: PathBuf,
    /// Where to write the result.
    #[arg(long, short, default_value = "machine_info.txt")]
    pub output: PathBuf,
    /// Do not SSH to the machines: fill only what the list says, '-' for the rest.
    #[arg(long)]
    pub offline: bool,
    #[command(flatten)]
    pub ssh: SshArgs,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The machines: one a line, name,pcID,iface1,mac,ip,ctrl_ip,iface2.
    #[arg(long, default_value = "machine_info.txt")]
    pub machine_info: PathBuf,
    /// The run's name; its results go to <results>/<name>/ (default:
    /// <system>-g<G>-s<S>-c<concurrency>-<unix time>).
    #[arg(long)]
    pub name: Option<String>,
    /// Where results directories are made (Mason's --outdir).
    #[arg(long, default_value = "results", alias = "outdir")]
    pub results: PathBuf,
    #[arg(long, value_enum, default_value = "mason")]
    pub system: System,
    /// appends or reads (shared-log systems); setdata, getdata or mixed (ZooKeeper
    /// systems; default mixed).
    #[arg(long, value_enum)]
    pub workload: Option<Workload>,
    #[command(flatten)]
    pub zk: ZkArgs,
    /// Proxy machines to use, a multiple of 3 (default: every proxy machine, which must
    /// then be a multiple of 3). Mason's --nproxies.
    #[arg(long, alias = "nproxies")]
    pub proxies: Option<u32>,
    /// Proxy groups in all (Mason's proxy leaders), spread round-robin over the triples.
    #[arg(long, default_value_t = 8, alias = "nproxy-leaders", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub groups: u32,
    /// Worker threads of each proxy process (Mason's --nproxy_threads).
    #[arg(long, default_value_t = 8, alias = "nproxy-threads", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub proxy_threads: u32,
    /// Sequencers: the primary and its backups, from the sequencer machines in number order.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub sequencers: u32,
    /// Client machines to use, one load process each (default: every client machine).
    #[arg(long, alias = "nclients")]
    pub clients: Option<u32>,
    /// Clients per client machine (Mason's --nclient_threads).
    #[arg(long, default_value_t = 16, alias = "nclient-threads", value_parser = clap::value_parser!(u32).range(1..=65535))]
    pub client_threads: u32,
    /// Ops in flight per client (Mason's --client_concurrency).
    #[arg(long, default_value_t = 32, alias = "client-concurrency", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// The clients of a client process that load one group share one connection to each
    /// of its replicas: what they send in one turn goes out in one write and is batched
    /// together, and their answers come back together. off: a connection per client.
    /// (Shared-log clients share their appends' sequencing and their links to the log servers.)
    #[arg(long, value_enum, default_value = "on")]
    pub shared_conns: crate::args::OnOff,
    /// Sequence spaces (Mason's --nsequence_spaces).
    #[arg(long, default_value_t = 1, alias = "nsequence-spaces", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub spaces: u32,
    #[arg(long, default_value = "all")]
    pub op_spaces: OpSpaces,
    /// Payload bytes per op (default 64 for the shared-log systems, 0 otherwise).
    #[arg(long)]
    pub payload: Option<usize>,
    /// Measured seconds (Mason's --expduration).
    #[arg(long, default_value = "60", alias = "expduration", value_parser = positive_secs)]
    pub duration: Duration,
    /// Seconds of load before measuring.
    #[arg(long, default_value = "4", value_parser = secs)]
    pub warmup: Duration,
    /// Seconds of load after measuring.
    #[arg(long, default_value = "4", value_parser = secs)]
    pub cooldown: Duration,
    /// Garbage collection off (the sequencer computes no watermarks).
    #[arg(long)]
    pub no_gc: bool,
    /// SIGKILL the proxy machine's process that leads group 0 this many seconds after the
    /// clients start.
    #[arg(long, value_parser = positive_secs)]
    pub kill_leader: Option<Duration>,
    /// SIGKILL the primary sequencer this many seconds after the clients start.
    #[arg(long, value_parser = positive_secs)]
    pub kill_sequencer: Option<Duration>,
    /// Log server machines to use, shards x --replication (default: every server machine).
    #[arg(long, alias = "ncorfu-servers")]
    pub log_servers: Option<u32>,
    /// Servers per shard's chain.
    #[arg(long, default_value_t = 2, alias = "corfu-replication-factor", value_parser = clap::value_parser!(u32).range(1..=8))]
    pub replication: u32,
    /// Appends before a read workload, in all.
    #[arg(long, default_value_t = 100_000)]
    pub prefill: u64,
    #[arg(long, default_value = "1", value_parser = positive_secs)]
    pub retry_timeout: Duration,
    /// Check every invariant over the collected records after the run.
    #[arg(long, value_enum, default_value = "on")]
    pub verify: OnOff,
    /// Only kill what earlier runs left on the machines, then exit.
    #[arg(long)]
    pub only_kill_zombies: bool,
    /// Check everything and print the plan (which role runs where, with which flags);
    /// launch nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Where each machine keeps the binary, logs and data: <remote-dir>/<machine name>/.
    #[arg(long, default_value = "/tmp/mason-rs", value_parser = remote_dir)]
    pub remote_dir: String,
    /// Ports: sequencers listen on BASE, proxies on BASE+1, log servers on BASE+2, ZK-Mason
    /// shard servers on BASE+3.
    #[arg(long, default_value_t = 7000)]
    pub base_port: u16,
    /// Every process serves Prometheus metrics (`--metrics-listen`) on its machine's
    /// experiment address, port METRICS+0 (sequencers), +1 (proxies), +2 (log servers), +3
    /// (ZK-Mason shard servers), +4 (ZooKeeper front ends), +5 (clients); default BASE+100.
    #[arg(long)]
    pub metrics_base_port: Option<u16>,
    /// ZooKeeper systems: the port of the ZooKeeper front end (`mason zk-gateway`) on
    /// every client machine (ZooKeeper's own 2181 by default); must not be one of the
    /// roles' ports BASE..BASE+3.
    #[arg(long, default_value_t = 2181, value_parser = clap::value_parser!(u16).range(1..))]
    pub zk_gateway_port: u16,
    /// Machines served at once by SSH.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=512))]
    pub ssh_parallel: u64,
    #[command(flatten)]
    pub ssh: SshArgs,
    #[command(flatten)]
    pub proxy: ProxyKnobs,
}

#[derive(Args, Debug)]
pub struct SuiteArgs {
    /// Sequence spaces to sweep.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    pub spaces_list: Vec<u32>,
    /// Proxy group counts to sweep.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16")]
    pub groups_list: Vec<u32>,
    /// Client concurrencies to sweep.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32,64")]
    pub concurrency_list: Vec<u32>,
    /// Runs per point; the point's figures are the medians.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub trials: u32,
    /// The suite's name: <results>/<name>/ holds suite.csv, the plots, and every run.
    #[arg(long)]
    pub suite_name: Option<String>,
    /// Every other knob, as for `experiment run` (its --spaces, --groups and
    /// --concurrency are overridden by the sweep).
    #[command(flatten)]
    pub run: RunArgs,
}

/// An absolute path of plain characters: it goes into remote shell commands and into the
/// pattern that finds a run's leftover processes.
fn remote_dir(s: &str) -> Result<String, String> {
    let plain = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c));
    if !s.starts_with('/') || !plain || s.contains("..") || s.trim_end_matches('/').is_empty() {
        return Err(format!(
            "'{s}': must be an absolute path of letters, digits and _ . / - (no ..)"
        ));
    }
    Ok(s.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn remote_dirs_are_plain_absolute_paths() {
        assert_eq!(
            super::remote_dir("/tmp/mason-rs/").unwrap(),
            "/tmp/mason-rs"
        );
        for bad in [
            "tmp/x",
            "/tmp/a b",
            "/tmp/a+b",
            "/tmp/../etc",
            "/",
            "/tmp/x;rm",
        ] {
            assert!(super::remote_dir(bad).is_err(), "{bad}");
        }
    }

    /// No two flags of one subcommand share a name or an alias (`suite` flattens every
    /// flag of `run`). Checked by hand: clap's own check runs only in debug builds.
    #[test]
    fn no_subcommand_has_a_flag_twice() {
        use clap::CommandFactory;
        fn check(cmd: &clap::Command, path: &str) {
            let mut seen = std::collections::HashSet::new();
            for a in cmd.get_arguments() {
                let names = a
                    .get_long()
                    .into_iter()
                    .chain(a.get_all_aliases().unwrap_or_default());
                for n in names {
                    assert!(seen.insert(n.to_string()), "{path}: --{n} twice");
                }
            }
            for sc in cmd.get_subcommands() {
                check(sc, &format!("{path} {}", sc.get_name()));
            }
        }
        let cmd = crate::args::Cli::command();
        check(&cmd, "mason");
        let suite = cmd
            .find_subcommand("experiment")
            .and_then(|e| e.find_subcommand("suite"))
            .map(|s| s.get_arguments().count());
        assert!(
            suite.is_some_and(|n| n > 40),
            "suite has every flag of run: {suite:?}"
        );
    }
}
