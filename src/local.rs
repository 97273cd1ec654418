//! `mason local`: a whole cluster on loopback as separate processes of this binary (a
//! primary sequencer and its backups, 3 proxy processes hosting every group's replicas, N
//! client processes, and for the shared-log systems the log servers), a measured run with
//! the scheduled kills, then the per-client lines, the aggregate, the verification, and
//! (with kills) the recovery times.

use crate::args::{LocalArgs, System, Workload};
use crate::logrun::{self, LogLayout};
use crate::report;
use crate::roles::{self, s, ProxyPlace, Shape};
use anyhow::Context;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod check;
mod faults;
mod metrics;
pub(crate) use metrics::scrape;
mod ports;
mod serve;
mod start;

use ports::free_addrs;

const REPLICAS: u32 = 3;
/// Servers per ZK-Mason shard.
const ZK_SERVERS: usize = 3;

/// Children that are killed if the run ends early.
struct Cluster {
    procs: Vec<(String, Child)>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, c) in self.procs.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(exe: &Path, args: &[String], log: &Path, stdout: bool) -> anyhow::Result<Child> {
    let err = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut cmd = Command::new(exe);
    cmd.args(args).stdin(Stdio::null()).stderr(err);
    cmd.stdout(if stdout {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.spawn()
        .with_context(|| format!("starting {} {}", exe.display(), args.join(" ")))
}

/// The run's shape, as every process is told it.
fn shape(a: &LocalArgs, workload: Workload, payload: usize, key_file: &Path) -> Shape {
    Shape {
        system: a.system,
        groups: default_groups(a),
        // ZK-Mason: the zxid clock, then one space per shard.
        spaces: match a.zk.shards(a.system) {
            0 => a.spaces,
            n => n + 1,
        },
        op_spaces: a.op_spaces,
        client_threads: a.client_threads,
        concurrency: a.concurrency,
        shared_conns: a.shared_conns.on(),
        payload,
        workload,
        write_percent: a.zk.write_percent,
        znodes: a.zk.znodes,
        zk_shards: a.zk.shards(a.system),
        zk_local_reads: a.zk.zk_reads == crate::args::ZkReads::Local,
        prefill_per_client: a.prefill.div_ceil(u64::from(a.clients)),
        warmup: a.warmup,
        duration: a.duration,
        cooldown: Duration::ZERO,
        retry_timeout: a.retry_timeout,
        proxy: a.proxy.clone(),
        threads: a.process_threads,
        client_threads_rt: a.process_threads,
        gc_ms: if a.no_gc { 0 } else { 10 },
        seq_core_thread: a.seq_core_thread.map_or(!a.system.proxies(), |c| c.on()),
        key_file: key_file.to_path_buf(),
        spin_us: crate::spin_us(),
    }
}

/// RSMKeeper is one group; everything else has 2 unless told.
fn default_groups(a: &LocalArgs) -> u32 {
    a.groups
        .unwrap_or(if a.system == System::Rsmkeeper { 1 } else { 2 })
}

fn default_out(a: &LocalArgs) -> PathBuf {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("results").join(format!(
        "{}-g{}-s{}-{t}",
        a.system.name(),
        default_groups(a),
        a.spaces
    ))
}

/// Runs the experiment; returns the process exit code (1 when verification fails).
pub fn run(a: LocalArgs) -> anyhow::Result<i32> {
    let out = a.out.clone().unwrap_or_else(|| default_out(&a));
    // A run's proxies replay their Raft logs from data/: reusing it would restart old
    // groups against a fresh sequencer, and mix two runs' records.
    if out.join("data").exists() || out.join("summary.txt").exists() {
        eprintln!(
            "error: {} already holds a run; remove it or choose another --out",
            out.display()
        );
        return Ok(2);
    }
    let logs = out.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    // A fresh cluster key for this run, readable only by its owner: every process of the
    // run proves it holds it on every connection.
    let key_file = out.join("cluster.key");
    mason_common::auth::ClusterKey::write_new(&key_file)
        .with_context(|| format!("writing the run's cluster key {}", key_file.display()))?;
    let exe = std::env::current_exe().context("finding the mason binary")?;
    // "mason" below: the clients go through proxy groups (mason and corfumason).
    let mason = a.system.proxies();
    let nseq = match (a.system.sequencers(), mason) {
        (false, _) => 0,
        (true, true) => a.sequencers as usize,
        (true, false) => 1,
    };
    let workload = a.workload.unwrap_or(if a.system.zk() {
        Workload::Mixed
    } else {
        Workload::Appends
    });
    if let Some(why) = check::refused(&a, workload) {
        eprintln!("error: {why}");
        return Ok(2);
    }
    // Mason's ZooKeeper values are 8 bytes.
    let payload = a.payload.unwrap_or(match a.system {
        s if s.log() => 64,
        s if s.zk() => 8,
        _ => 0,
    });
    let shape = shape(&a, workload, payload, &key_file);
    let data_dir = out.join("data").display().to_string();
    let fsync = a.proxy.fsync.on();
    let addrs = free_addrs(nseq + REPLICAS as usize)?;
    let seq_addrs: Vec<SocketAddr> = addrs[..nseq].to_vec();
    let seq_addr = seq_addrs.first().copied();
    let proxies: Vec<SocketAddr> = addrs[nseq..].to_vec();
    let mut cluster = Cluster { procs: Vec::new() };
    let mut endpoints = metrics::Endpoints::new(&out);
    let layout = if a.system.log() {
        Some(LogLayout {
            addrs: free_addrs(a.log_servers as usize)?,
            replication: a.replication,
        })
    } else {
        None
    };
    let key_arg = key_file.display().to_string();
    let log_args = |v: usize| match &layout {
        Some(l) => l.server_args(v, &data_dir, fsync, a.process_threads, &key_arg),
        None => Vec::new(),
    };
    // ZK-Mason's shard servers: 3 per shard, each linked to every other.
    let zk_shards = shape.zk_shards as usize;
    let zk_addrs = free_addrs(zk_shards * ZK_SERVERS)?;
    let zk_list = zk_addrs
        .chunks(ZK_SERVERS)
        .map(roles::join)
        .collect::<Vec<_>>()
        .join(";");
    let zk_args = |k: usize| {
        roles::zk_server(
            &shape,
            zk_addrs[k],
            k / ZK_SERVERS,
            k % ZK_SERVERS,
            &zk_list,
            &data_dir,
            &out.display().to_string(),
        )
    };
    let chains = match &layout {
        Some(l) => Some(l.chains_arg()),
        None => (zk_shards > 0).then(|| zk_list.clone()),
    };
    let proxy_args = |r: u32| -> Vec<String> {
        let place = ProxyPlace {
            replica: r,
            triple: 0,
            triples: 1,
            peers: &proxies,
        };
        roles::proxy(
            &shape,
            &place,
            &seq_addrs,
            &out.join("data").join(format!("r{r}")).display().to_string(),
            &out.display().to_string(),
            chains.as_deref(),
        )
    };

    let mut starter = start::Starter {
        exe: &exe,
        logs: &logs,
        cluster: &mut cluster,
        endpoints: &mut endpoints,
    };
    let log_addrs = layout.as_ref().map(|l| l.addrs.clone()).unwrap_or_default();
    // Tails first, so that each head finds its successor listening.
    let mut log_idx = starter.one_by_one(
        (0..log_addrs.len())
            .rev()
            .map(|i| (format!("log-{i}"), log_args(i), log_addrs[i]))
            .collect(),
    )?;
    log_idx.reverse();
    let seq_idx = starter.one_by_one(
        seq_addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| {
                let name = if i == 0 {
                    s("sequencer")
                } else {
                    format!("sequencer-{i}")
                };
                let args = roles::sequencer(&shape, *addr, i, nseq, &out.display().to_string());
                (name, args, *addr)
            })
            .collect(),
    )?;
    let zk_idx = starter.together(
        (0..zk_addrs.len())
            .map(|k| {
                let name = format!("zk-s{}-r{}", k / ZK_SERVERS, k % ZK_SERVERS);
                (name, zk_args(k), zk_addrs[k])
            })
            .collect(),
    )?;
    let mut proxy_idx = Vec::new();
    if mason {
        proxy_idx = starter.together(
            (0..REPLICAS)
                .map(|r| (format!("proxy-{r}"), proxy_args(r), proxies[r as usize]))
                .collect(),
        )?;
        // Start the load once every group has a leader ready to take ops, so that the
        // clients' first ops are not redirected (and counted as re-sent) while the groups
        // elect.
        let deadline = Instant::now() + Duration::from_secs(10);
        while (0..shape.groups).any(|g| leader_of(&logs, g).is_none()) {
            if Instant::now() >= deadline {
                eprintln!("mason local: not every group has a leader after 10 s; starting anyway");
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    // Where every process listens, for `mason status` (and tests) while the run goes.
    let status_cmd = crate::status::write_local_addrs(
        &out,
        &seq_addrs,
        if mason { &proxies } else { &[] },
        layout.as_ref(),
        &zk_addrs,
        ZK_SERVERS,
    )
    .context("writing addrs.txt")?;
    eprintln!("mason local: inspect with `{status_cmd}`");
    if a.serve {
        return serve::serve(
            &a,
            &shape,
            &exe,
            &proxies,
            &zk_list,
            &logs,
            &mut endpoints,
            cluster,
        );
    }

    let kills = a.kill_leader.is_some() || a.kill_sequencer.is_some() || a.kill_follower.is_some();
    // RSMKeeper binds no numbers: there is no contiguity to record.
    let record = mason && a.system.sequencers() && (a.record_contiguity || kills);
    let recovery_dir = out.join("recovery");
    if record {
        std::fs::create_dir_all(&recovery_dir)?;
    }
    let t0_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let t0 = Instant::now();
    let mut client_idx = Vec::new();
    // Each client's metrics endpoint, scraped for the progress bar's live figures.
    let mut live_addrs = Vec::new();
    for i in 0..a.clients {
        let mut v = roles::client(
            &shape,
            i,
            seq_addr,
            &proxies,
            chains.as_deref(),
            &out.display().to_string(),
        );
        if record && i == 0 {
            v.extend([
                s("--watch-csv"),
                recovery_dir.join("contig.csv").display().to_string(),
                s("--t0-unix-ms"),
                s(t0_unix_ms),
            ]);
        }
        let v = endpoints.with(&format!("client-{i}"), v)?;
        live_addrs.extend(crate::live::metrics_of(&v));
        let child = spawn(&exe, &v, &logs.join(format!("client-{i}.log")), true)?;
        cluster.procs.push((format!("client-{i}"), child));
        client_idx.push(cluster.procs.len() - 1);
    }
    let started = Instant::now();
    let cpu = crate::cpu::Window::start(endpoints.roles(), started, a.warmup, a.duration);
    eprintln!(
        "mason local: {} system, {} group(s), {} space(s), {} client process(es) x {} x {}; results in {}",
        a.system.name(),
        shape.groups,
        shape.spaces,
        a.clients,
        a.client_threads,
        a.concurrency,
        out.display()
    );

    // The fault schedule (`local/faults.rs`): kills and restarts as the flags ask.
    let client_args = || {
        roles::client(
            &shape,
            0,
            seq_addr,
            &proxies,
            chains.as_deref(),
            &out.display().to_string(),
        )
    };
    let mut faults = faults::Faults::new();
    let limit = a.warmup + a.duration + Duration::from_secs(60);
    let bar = crate::live::Bar::start(live_addrs, a.warmup, a.duration);
    {
        let mut procs = faults::Procs {
            cluster: &mut cluster,
            endpoints: &mut endpoints,
            exe: &exe,
            logs: &logs,
            t0,
            mason,
            proxy_idx: &proxy_idx,
            seq_idx: &seq_idx,
            log_idx: &log_idx,
            zk_idx: &zk_idx,
            client_idx: &client_idx,
            log_addrs: &log_addrs,
            proxy_args: &proxy_args,
            log_args: &log_args,
            zk_args: &zk_args,
            client_args: &client_args,
        };
        loop {
            let t = started.elapsed();
            bar.tick(t);
            faults.step(&a, t, &mut procs)?;
            if faults.clients_running(&a, &mut procs)? == 0 {
                break;
            }
            anyhow::ensure!(t < limit, "clients still running after {:?}", limit);
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    drop(bar);

    // Let followers apply the last commits, then stop the proxies and the sequencers so
    // they end their records cleanly (a record without its end marker is reported).
    std::thread::sleep(Duration::from_millis(500));
    endpoints.save_all(&out);
    let stopping: Vec<usize> = proxy_idx.iter().chain(&seq_idx).copied().collect();
    let mut unclean = stop(&mut cluster, &stopping)?;
    // Shard servers last, once nothing more is delivered: a lagging one catches up from
    // its peers (they fetch from each other every second when idle), then each writes the
    // tree it ends with.
    if !zk_idx.is_empty() {
        std::thread::sleep(Duration::from_millis(if faults.zk_restarted() {
            2500
        } else {
            300
        }));
    }
    unclean.extend(stop(&mut cluster, &zk_idx)?);

    // The log is checked while its servers still run.
    let log_verdict = match &layout {
        Some(l) if a.verify.on() => {
            if faults.log_server_down() {
                anyhow::bail!(
                    "a log server was killed and not restarted: the log cannot be checked whole"
                );
            }
            let mut v = logrun::check(&out, &shape, a.clients, l, payload)?;
            if workload == Workload::Reads {
                v = v.and_then(|s| {
                    logrun::check_reads(&out, a.clients).map(|r| format!("{s}; {r}"))
                });
            }
            Some(v)
        }
        _ => None,
    };
    drop(cluster);

    if record {
        std::fs::write(recovery_dir.join("kills.csv"), &faults.kill_log)?;
    }
    let groups = mason.then_some((shape.groups, REPLICAS));
    let checks = report::Checks {
        spaces: a.spaces,
        groups,
        clients: a.clients,
        verify: a.verify.on(),
        log_verdict,
        recovery: record,
        // Replicas that were killed and never restarted cannot have ended their records.
        killed_replicas: faults.unfinished(),
        triples: 1,
        zk: a.system.zk().then_some(report::ZkChecks {
            shards: zk_shards as u32,
            servers: ZK_SERVERS as u32,
            gone: if faults.zk_server_down() {
                vec![(0, faults::ZK_VICTIM as u32)]
            } else {
                Vec::new()
            },
            reads: a.zk.reads_promise(a.system),
        }),
    };
    let (text, mut code) = report::summary(&out, checks)?;
    let machine = std::thread::available_parallelism().ok().map(|n| n.get());
    if let Some(lines) = cpu.lines(report::ops_per_sec(&text).unwrap_or(0.0), machine) {
        print!("{lines}");
        append_to(&out.join("summary.txt"), &lines)?;
    }
    if !unclean.is_empty() {
        let lines: String = unclean
            .iter()
            .map(|u| format!("stop: FAILED {u}; see its log in {}\n", logs.display()))
            .collect();
        eprint!("{lines}");
        append_to(&out.join("summary.txt"), &lines)?;
        code = code.max(1);
    }
    endpoints.list_in_summary(&out)?;
    crate::status::head_summary(&out, &status_cmd)?;
    Ok(code)
}

fn append_to(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("appending to {}", path.display()))
}

/// SIGTERMs the processes `which` (those still running) and waits up to 10 s for them to
/// end their records. Returns how each that did not end cleanly ended: a role at a clean
/// stop exits 0, so a panic on the way out (or a stop that hangs) fails the run though
/// its records are whole.
fn stop(cluster: &mut Cluster, which: &[usize]) -> anyhow::Result<Vec<String>> {
    let mut stopping = Vec::new();
    for &i in which {
        if cluster.procs[i].1.try_wait()?.is_some() {
            continue; // killed, and not restarted
        }
        if let Ok(pid) = i32::try_from(cluster.procs[i].1.id()) {
            // SAFETY: kill(2) on a child's pid has no memory-safety preconditions.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        stopping.push(i);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut unclean = Vec::new();
    for i in stopping {
        let (name, child) = &mut cluster.procs[i];
        let mut status = child.try_wait()?;
        while status.is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            status = child.try_wait()?;
        }
        match status {
            Some(st) if st.success() => {}
            Some(st) => unclean.push(format!("{name} ended with {st} when stopped")),
            None => unclean.push(format!("{name} had not stopped 10 s after SIGTERM")),
        }
    }
    Ok(unclean)
}

/// The proxy process whose replica of `group` most recently took the lead (the highest
/// term in the proxies' "leading" log lines).
fn leader_of(logs: &Path, group: u32) -> Option<u32> {
    let mut best: Option<(u64, u32)> = None;
    for r in 0..REPLICAS {
        for name in [format!("proxy-{r}.log"), format!("proxy-{r}.restarted.log")] {
            let Ok(text) = std::fs::read_to_string(logs.join(name)) else {
                continue;
            };
            if let Some(term) = roles::led_term(&text, group) {
                if best.is_none_or(|(t, _)| term > t) {
                    best = Some((term, r));
                }
            }
        }
    }
    best.map(|(_, r)| r)
}
