//! `mason local`: a whole cluster on loopback as separate processes of this binary (a
//! primary sequencer and its backups, 3 proxy processes hosting every group's replicas, N
//! client processes), a measured run with the scheduled kills, then the per-client lines,
//! the aggregate, the verification, and (with kills) the recovery times.

use crate::args::{LocalArgs, System};
use crate::report;
use anyhow::Context;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const REPLICAS: u32 = 3;

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

fn free_addrs(n: usize) -> anyhow::Result<Vec<SocketAddr>> {
    let ls: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .context("finding free loopback ports")?;
    ls.iter()
        .map(|l| l.local_addr().map_err(Into::into))
        .collect()
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

fn wait_listening(addr: SocketAddr, child: &mut Child, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Ok(());
        }
        if let Some(st) = child.try_wait()? {
            anyhow::bail!("{what} exited ({st}) before listening on {addr}; see its log");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    anyhow::bail!("{what} is not listening on {addr} after 20 s")
}

fn s(v: impl ToString) -> String {
    v.to_string()
}

fn join(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn default_out(a: &LocalArgs) -> PathBuf {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let sys = match a.system {
        System::Mason => "mason",
        System::Direct => "direct",
    };
    PathBuf::from("results").join(format!("{sys}-g{}-s{}-{t}", a.groups, a.spaces))
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
    let exe = std::env::current_exe().context("finding the mason binary")?;
    let mason = a.system == System::Mason;
    let nseq = if mason { a.sequencers as usize } else { 1 };
    let addrs = free_addrs(nseq + REPLICAS as usize)?;
    let seq_addrs: Vec<SocketAddr> = addrs[..nseq].to_vec();
    let seq_addr = seq_addrs[0];
    let proxies: Vec<SocketAddr> = addrs[nseq..].to_vec();
    let mut cluster = Cluster { procs: Vec::new() };

    let mut seq_idx = Vec::new();
    for (i, addr) in seq_addrs.iter().enumerate() {
        let name = if i == 0 {
            s("sequencer")
        } else {
            format!("sequencer-{i}")
        };
        let mut child = spawn(
            &exe,
            &[
                s("sequencer"),
                s("--listen"),
                s(addr),
                s("--spaces"),
                s(a.spaces),
                s("--id"),
                s(i),
                s("--sequencers"),
                s(nseq),
                s("--groups"),
                s(a.groups),
                s("--threads"),
                s(a.process_threads),
            ],
            &logs.join(format!("{name}.log")),
            false,
        )?;
        wait_listening(*addr, &mut child, &name)?;
        cluster.procs.push((name, child));
        seq_idx.push(cluster.procs.len() - 1);
    }

    let proxy_args = |r: u32| -> Vec<String> {
        let mut v = vec![
            s("proxy"),
            s("--replica"),
            s(r),
            s("--peers"),
            join(&proxies),
            s("--groups"),
            s(a.groups),
            s("--sequencers"),
            join(&seq_addrs),
            s("--spaces"),
            s(a.spaces),
            s("--data-dir"),
            out.join("data").join(format!("r{r}")).display().to_string(),
            s("--record-dir"),
            out.display().to_string(),
            s("--threads"),
            s(a.process_threads),
        ];
        v.extend(a.proxy.to_args());
        v
    };
    let mut proxy_idx = Vec::new();
    if mason {
        for r in 0..REPLICAS {
            let child = spawn(
                &exe,
                &proxy_args(r),
                &logs.join(format!("proxy-{r}.log")),
                false,
            )?;
            cluster.procs.push((format!("proxy-{r}"), child));
            proxy_idx.push(cluster.procs.len() - 1);
        }
        for (r, &i) in proxy_idx.iter().enumerate() {
            wait_listening(proxies[r], &mut cluster.procs[i].1, &format!("proxy {r}"))?;
        }
        // Start the load once every group has a leader ready to take ops, so that the
        // clients' first ops are not redirected (and counted as re-sent) while the groups
        // elect.
        let deadline = Instant::now() + Duration::from_secs(10);
        while (0..a.groups).any(|g| leader_of(&logs, g).is_none()) {
            if Instant::now() >= deadline {
                eprintln!("mason local: not every group has a leader after 10 s; starting anyway");
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    let kills = a.kill_leader.is_some() || a.kill_sequencer.is_some() || a.kill_follower.is_some();
    let record = mason && (a.record_contiguity || kills);
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
    for i in 0..a.clients {
        let mut v = vec![
            s("client"),
            s("--index"),
            s(i),
            s("--system"),
            s(if mason { "mason" } else { "direct" }),
            s("--sequencer"),
            s(seq_addr),
            s("--groups"),
            s(a.groups),
            s("--spaces"),
            s(a.spaces),
            s("--op-spaces"),
            op_spaces_arg(a.op_spaces),
            s("--threads"),
            s(a.client_threads),
            s("--concurrency"),
            s(a.concurrency),
            s("--payload"),
            s(a.payload),
            s("--warmup"),
            s(a.warmup.as_secs_f64()),
            s("--duration"),
            s(a.duration.as_secs_f64()),
            s("--retry-timeout"),
            s(a.retry_timeout.as_secs_f64()),
            s("--out"),
            out.display().to_string(),
            s("--runtime-threads"),
            s(a.process_threads),
        ];
        if mason {
            v.push(s("--proxies"));
            v.push(join(&proxies));
        }
        if record && i == 0 {
            v.extend([
                s("--watch-csv"),
                recovery_dir.join("contig.csv").display().to_string(),
                s("--t0-unix-ms"),
                s(t0_unix_ms),
            ]);
        }
        let child = spawn(&exe, &v, &logs.join(format!("client-{i}.log")), true)?;
        cluster.procs.push((format!("client-{i}"), child));
        client_idx.push(cluster.procs.len() - 1);
    }
    let started = Instant::now();
    eprintln!(
        "mason local: {} system, {} group(s), {} space(s), {} client process(es) x {} x {}; results in {}",
        if mason { "mason" } else { "direct" },
        a.groups,
        a.spaces,
        a.clients,
        a.client_threads,
        a.concurrency,
        out.display()
    );

    // Fault schedule: kill a follower, maybe restart it from its data directory; kill the
    // leader of group 0.
    let mut killed = false;
    let mut restarted = false;
    let mut leader_killed = false;
    let mut seq_killed = false;
    let mut kill_log = String::from("t_ms,what\n");
    let limit = a.warmup + a.duration + Duration::from_secs(60);
    loop {
        let t = started.elapsed();
        if mason && !killed && a.kill_follower.is_some_and(|k| t >= k) {
            let i = proxy_idx[2];
            let _ = cluster.procs[i].1.kill();
            let _ = cluster.procs[i].1.wait();
            killed = true;
            eprintln!("mason local: SIGKILLed proxy 2 at {:.2}s", t.as_secs_f64());
        }
        if mason && !leader_killed && a.kill_leader.is_some_and(|k| t >= k) {
            leader_killed = true;
            match leader_of(&logs, 0) {
                Some(r) => {
                    let i = proxy_idx[r as usize];
                    let _ = cluster.procs[i].1.kill();
                    let _ = cluster.procs[i].1.wait();
                    kill_log.push_str(&format!("{},leader\n", t0.elapsed().as_millis()));
                    eprintln!(
                        "mason local: SIGKILLed proxy {r} (leader of group 0) at {:.2}s",
                        t.as_secs_f64()
                    );
                }
                None => eprintln!("mason local: no leader of group 0 found to kill"),
            }
        }
        if mason && !seq_killed && a.kill_sequencer.is_some_and(|k| t >= k) {
            seq_killed = true;
            let i = seq_idx[0];
            let _ = cluster.procs[i].1.kill();
            let _ = cluster.procs[i].1.wait();
            kill_log.push_str(&format!("{},sequencer\n", t0.elapsed().as_millis()));
            eprintln!(
                "mason local: SIGKILLed the primary sequencer at {:.2}s",
                t.as_secs_f64()
            );
        }
        if killed && !restarted && a.restart_follower.is_some_and(|r| t >= r) {
            let i = proxy_idx[2];
            let child = spawn(
                &exe,
                &proxy_args(2),
                &logs.join("proxy-2.restarted.log"),
                false,
            )?;
            cluster.procs[i].1 = child;
            restarted = true;
            eprintln!("mason local: restarted proxy 2 at {:.2}s", t.as_secs_f64());
        }
        let mut running = 0;
        for &i in &client_idx {
            let (name, c) = &mut cluster.procs[i];
            match c.try_wait()? {
                None => running += 1,
                Some(st) if !st.success() => {
                    anyhow::bail!("{name} failed ({st}); see {}", logs.display())
                }
                Some(_) => {}
            }
        }
        if running == 0 {
            break;
        }
        anyhow::ensure!(t < limit, "clients still running after {:?}", limit);
        std::thread::sleep(Duration::from_millis(10));
    }

    // Let followers apply the last commits, then stop the proxies so they flush records.
    std::thread::sleep(Duration::from_millis(500));
    for &i in &proxy_idx {
        if let Ok(pid) = i32::try_from(cluster.procs[i].1.id()) {
            // SAFETY: kill(2) on a child's pid has no memory-safety preconditions.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for &i in &proxy_idx {
        while cluster.procs[i].1.try_wait()?.is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    drop(cluster);

    if record {
        std::fs::write(recovery_dir.join("kills.csv"), &kill_log)?;
    }
    let (lines, agg) = report::aggregate(&out, a.clients)?;
    let mut text = String::new();
    for l in &lines {
        text.push_str(l);
        text.push('\n');
    }
    text.push_str("aggregate-throughput 50 99 99.9 99.99\n");
    text.push_str(&agg);
    text.push('\n');
    let groups = mason.then_some((a.groups, REPLICAS));
    let (verdict, code) = if !a.verify.on() {
        ("verify: skipped (--verify off)".to_string(), 0)
    } else {
        match report::verify(&out, a.spaces, groups, a.clients)? {
            Ok(r) => (format!("verify: ok {r}"), 0),
            Err(v) => (format!("verify: FAIL {v}"), 1),
        }
    };
    text.push_str(&verdict);
    text.push('\n');
    if record {
        match mason_plot::read_record(&out) {
            Ok(rec) => {
                for line in mason_plot::summary_lines(&mason_plot::recovery(&rec)) {
                    text.push_str(&line);
                    text.push('\n');
                }
                match mason_plot::plot_recovery(&out) {
                    Ok(paths) => {
                        for p in paths {
                            text.push_str(&format!("plot: {}\n", p.display()));
                        }
                    }
                    Err(e) => text.push_str(&format!("plot: not drawn: {e}\n")),
                }
            }
            Err(e) => text.push_str(&format!("recovery: no record: {e}\n")),
        }
    }
    print!("{text}");
    std::fs::write(out.join("summary.txt"), &text)?;
    Ok(code)
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
            for line in text.lines().filter(|l| l.contains("leading;")) {
                let field = |k: &str| {
                    line.split(&format!(" {k}="))
                        .nth(1)
                        .and_then(|v| v.split_whitespace().next())
                        .and_then(|v| v.parse::<u64>().ok())
                };
                if field("group") != Some(u64::from(group)) {
                    continue;
                }
                if let Some(term) = field("term") {
                    if best.is_none_or(|(t, _)| term > t) {
                        best = Some((term, r));
                    }
                }
            }
        }
    }
    best.map(|(_, r)| r)
}

fn op_spaces_arg(o: mason_client::load::OpSpaces) -> String {
    match o {
        mason_client::load::OpSpaces::All => s("all"),
        mason_client::load::OpSpaces::Random => s("random"),
        mason_client::load::OpSpaces::Count(k) => s(k),
    }
}
