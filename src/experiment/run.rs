//! `mason experiment run`: one experiment on the machines of a machine_info.txt.
//! 1. Plan it (every knob and machine checked; `--dry-run` stops here).
//! 2. Reach every machine it uses over SSH; an unreachable one is named and nothing is
//!    launched.
//! 3. Kill what earlier runs left (`--only-kill-zombies` stops here), copy the binary.
//! 4. Start the log servers (tails first), the sequencers and the proxies, each waited for
//!    until it listens; for the ZooKeeper systems, a ZooKeeper front end on every client
//!    machine (their addresses printed); then the clients. A progress bar runs through
//!    warm-up, the measured window and cool-down, and the scheduled kills happen on time.
//! 5. Stop the front ends, then the proxies (they flush their records), collect every
//!    machine's out/ and logs/ into `<results>/<name>/`, check the log while its servers
//!    still run, stop everything.
//! 6. Aggregate, verify, and write summary.txt (with the front ends' addresses and every
//!    process's metrics endpoint, also in metrics.txt from the start) and config.json.
//!
//! If any step fails, or the launcher gets SIGINT, SIGTERM or SIGHUP, every machine's processes are
//! killed before the error is returned.

use super::args::RunArgs;
use super::plan::{self, Kind, Plan, Proc};
use super::remote;
use crate::{logrun, report, roles};
use anyhow::Context;
use mason_setup::machines::Machine;
use mason_setup::ssh::{on_all, Ssh};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod window;

/// Set by SIGINT, SIGTERM or SIGHUP: the run stops, and its processes are killed on every machine.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn catch_sigint() {
    let handler: extern "C" fn(libc::c_int) = on_sigint;
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(sig, handler as libc::sighandler_t);
        }
    }
}

/// Whether the launcher was told to stop (SIGINT, SIGTERM or SIGHUP).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

fn check_interrupted() -> anyhow::Result<()> {
    anyhow::ensure!(
        !INTERRUPTED.load(Ordering::SeqCst),
        "interrupted (SIGINT, SIGTERM or SIGHUP)"
    );
    Ok(())
}

/// What a run left.
pub struct Outcome {
    pub code: i32,
    pub dir: PathBuf,
    /// The aggregate line's values: Mops/s, p50, p99, p99.9, p99.99 (us).
    pub aggregate: Option<String>,
}

/// The machines' processes, killed on drop unless disarmed.
struct Launched<'a> {
    ssh: &'a Ssh,
    machines: Vec<(Machine, String)>,
    width: usize,
    armed: bool,
}

impl Drop for Launched<'_> {
    fn drop(&mut self) {
        if self.armed {
            eprintln!("experiment: stopping every process on the run's machines");
        }
        on_all(&self.machines, self.width, |(m, dir)| {
            if let Err(e) = remote::kill_zombies(self.ssh, m, dir) {
                eprintln!(
                    "experiment: {}: could not stop its processes: {e:#}",
                    m.name
                );
            }
        });
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Runs `f` on every item with the machines' width, and fails naming every machine it
/// failed on.
fn each<T: Sync>(
    items: &[T],
    width: usize,
    what: &str,
    name: impl Fn(&T) -> String + Sync,
    f: impl Fn(&T) -> anyhow::Result<()> + Sync,
) -> anyhow::Result<()> {
    check_interrupted()?;
    let errs: Vec<String> = on_all(items, width, |it| {
        f(it).map_err(|e| format!("{}: {e:#}", name(it)))
    })
    .into_iter()
    .filter_map(Result::err)
    .collect();
    if errs.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "{what} failed on {} machine(s):\n  {}",
        errs.len(),
        errs.join("\n  ")
    )
}

pub fn load_machines(path: &Path) -> anyhow::Result<Vec<Machine>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the machines file {}", path.display()))?;
    Ok(mason_setup::parse_machine_info(
        &path.display().to_string(),
        &text,
    )?)
}

pub fn run(a: &RunArgs) -> anyhow::Result<Outcome> {
    let machines = load_machines(&a.machine_info)?;
    let mut plan = plan::build(&machines, a)
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.machine_info.display()))?;
    let ssh = a.ssh.ssh();
    let width = a.ssh_parallel as usize;
    let root = a.remote_dir.trim_end_matches('/');
    if a.dry_run {
        print!("{}", plan.describe());
        return Ok(Outcome {
            code: 0,
            dir: PathBuf::new(),
            aggregate: None,
        });
    }
    if a.only_kill_zombies {
        let all: Vec<(Machine, String)> = machines
            .iter()
            .map(|m| (m.clone(), format!("{root}/{}", m.name)))
            .collect();
        kill_leftovers(&ssh, &all, width, true)?;
        return Ok(Outcome {
            code: 0,
            dir: PathBuf::new(),
            aggregate: None,
        });
    }
    let name = a.name.clone().unwrap_or_else(|| {
        format!(
            "{}-g{}-s{}-c{}-{}",
            a.system.name(),
            if a.system.zk() { 1 } else { a.groups },
            a.spaces,
            a.concurrency,
            unix_ms() / 1000
        )
    });
    let out = a.results.join(&name);
    if std::fs::read_dir(&out).is_ok_and(|mut d| d.next().is_some()) {
        anyhow::bail!(
            "{} already holds files (of an earlier run?); remove it or choose another --name",
            out.display()
        );
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    // A fresh cluster key for this run, readable only by its owner; every machine gets a
    // copy with the binary.
    let key_file = out.join("cluster.key");
    mason_common::auth::ClusterKey::write_new(&key_file)
        .with_context(|| format!("writing the run's cluster key {}", key_file.display()))?;
    plan.shape.key_file = key_file.clone();
    // Where every process serves its metrics, while the run goes (summary.txt lists them
    // again at the end).
    let metrics_txt = out.join("metrics.txt");
    let metrics_lines: String = plan
        .metrics_lines()
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&metrics_txt, &metrics_lines)
        .with_context(|| format!("writing {}", metrics_txt.display()))?;

    let mut used: Vec<(Machine, String)> = Vec::new();
    for p in &plan.procs {
        if !used.iter().any(|(m, _)| m.name == p.machine.name) {
            used.push((p.machine.clone(), p.dir.clone()));
        }
    }
    // 2. Every machine must answer before anything starts anywhere.
    each(
        &used,
        width,
        "reaching the machines over SSH (nothing was launched)",
        |(m, _)| format!("{} ({}, line {})", m.name, m.ctrl, m.line),
        |(m, _)| Ok(ssh.check(&m.ctrl)?),
    )?;
    catch_sigint();
    let mut launched = Launched {
        ssh: &ssh,
        machines: used.clone(),
        width,
        armed: true,
    };

    // 3. Leftovers, then the binary.
    let exe = std::env::current_exe().context("finding the mason binary")?;
    kill_leftovers(&ssh, &used, width, false)?;
    // An earlier, larger run may have left processes on machines this one does not use,
    // and they would still talk to this run's addresses: best effort there.
    let spare: Vec<(Machine, String)> = machines
        .iter()
        .filter(|m| !used.iter().any(|(u, _)| u.name == m.name))
        .map(|m| (m.clone(), format!("{root}/{}", m.name)))
        .collect();
    if let Err(e) = kill_leftovers(&ssh, &spare, width, false) {
        eprintln!("experiment: warning: on machines this run does not use: {e:#}");
    }
    let sum = remote::sha256_file(&exe)?;
    let copied = std::sync::atomic::AtomicUsize::new(0);
    each(
        &used,
        width,
        "copying the binary",
        |(m, _)| m.name.clone(),
        |(m, d)| {
            if remote::install(&ssh, m, d, &exe, &sum)? {
                copied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            remote::install_key(&ssh, m, d, &key_file)
        },
    )?;
    eprintln!(
        "experiment: {} on {} machine(s) (copied to {}, already there on the others); results in {}",
        exe.display(),
        used.len(),
        copied.into_inner(),
        out.display()
    );
    eprintln!(
        "experiment: every process's metrics endpoint is listed in {}",
        metrics_txt.display()
    );

    // 4. Servers in dependency order, then the clients.
    let start_all = |procs: Vec<&Proc>, extra: &(dyn Fn(&Proc) -> Vec<String> + Sync)| {
        each(
            &procs,
            width,
            "starting",
            |p| p.machine.name.clone(),
            |p| remote::start(&ssh, p, &extra(p)),
        )
    };
    let none = |_: &Proc| Vec::new();
    if let Some(l) = &plan.layout {
        // Tails first, so that each member finds its successor listening.
        for member in (0..l.replication as usize).rev() {
            let at: Vec<&Proc> = plan
                .of(|k| matches!(k, Kind::LogServer(i) if i % l.replication as usize == member))
                .collect();
            start_all(at, &none)?;
        }
    }
    // ZK-Mason's shard servers link to each other and wait for proxies: any order.
    start_all(
        plan.of(|k| matches!(k, Kind::ZkServer { .. })).collect(),
        &none,
    )?;
    start_all(
        plan.of(|k| matches!(k, Kind::Sequencer(_))).collect(),
        &none,
    )?;
    start_all(
        plan.of(|k| matches!(k, Kind::Proxy { .. })).collect(),
        &none,
    )?;
    let proxies: Vec<&Proc> = plan.of(|k| matches!(k, Kind::Proxy { .. })).collect();
    wait_for_leaders(&ssh, &plan, &proxies);
    // ZooKeeper's front ends, once what they front listens, each waited for until it
    // listens; then anyone may point zkCli.sh or kazoo at them while the run lasts.
    let gateways: Vec<&Proc> = plan.of(|k| matches!(k, Kind::ZkGateway(_))).collect();
    start_all(gateways.clone(), &none)?;
    if let Some(l) = plan.front_ends_line() {
        eprintln!("experiment: {l} (zkCli.sh -server HOST:PORT while the run lasts)");
    }

    let kills = a.kill_leader.is_some() || a.kill_sequencer.is_some();
    // RSMKeeper binds no numbers: there is no contiguity to record.
    let record = plan.shape.system.proxies() && plan.shape.system.sequencers() && kills;
    let t0_ms = unix_ms();
    let t0 = Instant::now();
    let watch = |p: &Proc| match p.kind {
        Kind::Client(0) if record => vec![
            "--watch-csv".into(),
            format!("{}/out/contig.csv", p.dir),
            "--t0-unix-ms".into(),
            t0_ms.to_string(),
        ],
        _ => Vec::new(),
    };
    let clients: Vec<&Proc> = plan.of(|k| matches!(k, Kind::Client(_))).collect();
    start_all(clients.clone(), &watch)?;
    let cpu = crate::cpu::Window::start(
        plan.procs
            .iter()
            .filter_map(|p| Some((p.name(), p.metrics?)))
            .collect(),
        Instant::now(),
        a.warmup,
        a.duration,
    );
    let (kill_log, killed) = window::drive(a, &ssh, &plan, &clients, &proxies, t0)?;

    // 5. Stop the front ends (their sessions' backends are the proxies), then the proxies
    // and the sequencers so that they end their records, then collect.
    std::thread::sleep(Duration::from_millis(500));
    each(
        &gateways,
        width,
        "stopping the zookeeper front ends",
        |p| p.machine.name.clone(),
        |p| remote::signal(&ssh, p, "TERM", true),
    )?;
    let stopping: Vec<&Proc> = plan
        .of(|k| matches!(k, Kind::Proxy { .. } | Kind::Sequencer(_)))
        .collect();
    each(
        &stopping,
        width,
        "stopping the proxies and sequencers",
        |p| p.machine.name.clone(),
        |p| remote::signal(&ssh, p, "TERM", true),
    )?;
    // Shard servers last, once nothing more is delivered (a lagging one catches up from
    // its peers meanwhile): each writes the tree it ends with.
    let zk_servers: Vec<&Proc> = plan.of(|k| matches!(k, Kind::ZkServer { .. })).collect();
    if !zk_servers.is_empty() {
        std::thread::sleep(Duration::from_millis(1500));
        each(
            &zk_servers,
            width,
            "stopping the shard servers",
            |p| p.machine.name.clone(),
            |p| remote::signal(&ssh, p, "TERM", true),
        )?;
    }
    let unclean = unclean_stops(&ssh, &plan, &killed, width)?;
    let machines_dir = out.join("machines");
    each(
        &used,
        width,
        "collecting results",
        |(m, _)| m.name.clone(),
        |(m, d)| remote::collect(&ssh, m, d, &machines_dir),
    )?;
    gather(&machines_dir, &out)?;
    if record {
        std::fs::create_dir_all(out.join("recovery"))?;
        let _ = std::fs::rename(
            out.join("contig.csv"),
            out.join("recovery").join("contig.csv"),
        );
        std::fs::write(out.join("recovery").join("kills.csv"), &kill_log)?;
    }
    let log_verdict = match &plan.layout {
        Some(l) if a.verify.on() => Some(logrun::check(
            &out,
            &plan.shape,
            plan.clients,
            l,
            plan.shape.payload,
        )?),
        _ => None,
    };
    launched.armed = false;
    drop(launched);

    // 6. The figures and the verdict.
    let checks = report::Checks {
        spaces: plan.shape.spaces,
        groups: plan
            .shape
            .system
            .proxies()
            .then_some((plan.shape.groups, 3)),
        clients: plan.clients,
        verify: a.verify.on(),
        log_verdict,
        recovery: record,
        killed_replicas: killed.proxies,
        triples: plan.triples,
        zk: plan.shape.system.zk().then_some(report::ZkChecks {
            shards: plan.shape.zk_shards,
            servers: super::plan::ZK_SERVERS,
            gone: Vec::new(),
            reads: a.zk.reads_promise(plan.shape.system),
        }),
    };
    let (mut text, mut code) = report::summary(&out, checks)?;
    // Each process on a machine of its own (or a few): the launcher's cores say nothing.
    if let Some(lines) = cpu.lines(report::ops_per_sec(&text).unwrap_or(0.0), None) {
        print!("{lines}");
        text.push_str(&lines);
    }
    for u in &unclean {
        let line = format!("stop: FAILED {u}; see its log under machines/");
        eprintln!("{line}");
        text.push_str(&line);
        text.push('\n');
        code = code.max(1);
    }
    if let Some(l) = plan.front_ends_line() {
        println!("{l}");
        text.push_str(&l);
        text.push('\n');
    }
    // Every process's metrics endpoint (`metrics <name> http://ADDR/metrics`), as
    // `mason local` lists its roles'.
    text.push_str(&metrics_lines);
    std::fs::write(out.join("summary.txt"), &text)
        .with_context(|| format!("writing {}", out.join("summary.txt").display()))?;
    std::fs::write(
        out.join("config.json"),
        super::config::json(a, &plan, &name)?,
    )?;
    let aggregate = report::aggregate_line(&text).map(str::to_string);
    Ok(Outcome {
        code,
        dir: out,
        aggregate,
    })
}

/// Kills what earlier runs left on each machine (its directory beside it); `all` says so
/// for every machine, not only for those that had leftovers.
fn kill_leftovers(
    ssh: &Ssh,
    on: &[(Machine, String)],
    width: usize,
    all: bool,
) -> anyhow::Result<()> {
    each(
        on,
        width,
        "killing leftovers",
        |(m, _)| m.name.clone(),
        |(m, d)| {
            let n = remote::kill_zombies(ssh, m, d)?;
            if all || n > 0 {
                eprintln!("experiment: {}: killed {n} leftover process(es)", m.name);
            }
            Ok(())
        },
    )
}

/// Waits (up to 10 s) until the proxies' logs show a leader for every group, so that the
/// clients' first ops are not redirected while the groups elect.
fn wait_for_leaders(ssh: &Ssh, plan: &Plan, proxies: &[&Proc]) {
    if proxies.is_empty() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let logs: Vec<String> = on_all(proxies, 32, |p| {
            remote::leading_lines(ssh, p).unwrap_or_default()
        });
        let all = logs.join("\n");
        if (0..plan.shape.groups).all(|g| roles::led_term(&all, g).is_some()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("experiment: not every group has a leader after 10 s; starting the clients anyway");
}

/// How each proxy, sequencer and shard server that was stopped (not killed) ended, where
/// it did not exit 0: a role at a clean stop exits 0, so a panic on the way out (or a stop
/// that hangs) fails the run though its records are whole, as in `mason local`.
fn unclean_stops(
    ssh: &Ssh,
    plan: &Plan,
    killed: &window::Killed,
    width: usize,
) -> anyhow::Result<Vec<String>> {
    let stopped: Vec<&Proc> = plan
        .of(|k| match k {
            Kind::Proxy { triple, replica } => !killed.proxies.contains(&(triple, replica)),
            Kind::Sequencer(i) => !(i == 0 && killed.sequencer),
            Kind::ZkServer { .. } => true,
            _ => false,
        })
        .collect();
    let ends = on_all(&stopped, width, |p| remote::exit_status(ssh, p));
    let mut unclean = Vec::new();
    for (p, end) in stopped.iter().zip(ends) {
        let (what, on) = (p.describe(), &p.machine.name);
        match end? {
            Some(0) => {}
            Some(c) => unclean.push(format!("{what} on {on} ended with status {c} when stopped")),
            None => unclean.push(format!("{what} on {on} had not stopped 10 s after SIGTERM")),
        }
    }
    Ok(unclean)
}

/// Moves the collected `<machine>/out/*` files (client results, acks, records) up into the
/// run's directory, where the report reads them; logs stay under machines/<machine>/logs.
fn gather(machines_dir: &Path, out: &Path) -> anyhow::Result<()> {
    for m in std::fs::read_dir(machines_dir)? {
        let m = m?;
        let Ok(files) = std::fs::read_dir(m.path().join("out")) else {
            continue;
        };
        for f in files {
            let f = f?;
            if f.file_type()?.is_file() {
                std::fs::rename(f.path(), out.join(f.file_name()))?;
            }
        }
    }
    Ok(())
}
