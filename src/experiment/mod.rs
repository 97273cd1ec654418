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
