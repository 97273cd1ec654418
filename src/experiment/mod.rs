//! `mason experiment` (run, suite, results, peers) and `mason setup` (parse-list, check):
//! experiments on real clusters described by a machine_info.txt, launched over SSH.

pub mod args;
mod config;
mod plan;
mod remote;
mod run;
mod setup;
mod suite;

use args::{ExperimentCmd, SetupCmd};
use std::path::Path;

pub fn experiment(cmd: ExperimentCmd) -> anyhow::Result<i32> {
    match cmd {
        ExperimentCmd::Run(a) => run::run(&a).map(|o| o.code),
        ExperimentCmd::Suite(a) => suite::run(&a),
        ExperimentCmd::Results { dir } => results(&dir),
        ExperimentCmd::Peers(a) => mason_experiments::peers::run(a),
    }
}

pub fn setup(cmd: SetupCmd) -> anyhow::Result<i32> {
    match cmd {
        SetupCmd::ParseList(a) => setup::parse_list(&a),
        SetupCmd::Check { file } => setup::check(&file),
        SetupCmd::WaitListen {
            addr,
            timeout,
            exit_file,
        } => setup::wait_listen(addr, timeout, exit_file.as_deref()),
    }
}

/// Where `experiment run` with these flags starts each role that `mason status` can ask
/// (sequencers, proxies, log servers, ZK-Mason shard servers; not clients or ZooKeeper
/// front ends), with the role it is meant to be, in start order.
pub fn role_addrs(a: &args::RunArgs) -> anyhow::Result<Vec<(String, std::net::SocketAddr)>> {
    use mason_common::auth::Role;
    use plan::Kind;
    let machines = run::load_machines(&a.machine_info)?;
    let plan = plan::build(&machines, a).map_err(anyhow::Error::msg)?;
    let r = a.replication.max(1);
    Ok(plan
        .procs
        .iter()
        .filter_map(|p| {
            let role = match p.kind {
                Kind::Sequencer(i) => Role::sequencer(i as u32),
                Kind::Proxy { triple, replica } => Role::proxy(replica, triple),
                Kind::LogServer(i) => Role::log_server(i as u32 / r, i as u32 % r),
                Kind::ZkServer { shard, index } => Role::zk_server(shard, index),
                Kind::Client(_) | Kind::ZkGateway(_) => return None,
            };
            Some((role.to_string(), p.listen?))
        })
        .collect())
}

/// Prints a run's `aggregate-throughput 50 99 99.9 99.99` line, computed from its clients'
/// files (the merged histograms), for `experiment run` and `local` results alike.
fn results(dir: &Path) -> anyhow::Result<i32> {
    let clients = (0..)
        .take_while(|i| dir.join(format!("client-{i}.dat")).exists())
        .count() as u32;
    anyhow::ensure!(
        clients > 0,
        "{} holds no client-0.dat: not a run's results directory",
        dir.display()
    );
    let (_, agg) = crate::report::aggregate(dir, clients)?;
    println!("aggregate-throughput 50 99 99.9 99.99");
    println!("{agg}");
    Ok(0)
}
