//! End-to-end runs of `mason local`: a whole cluster (sequencer, 3 proxy processes, client
//! processes) on 127.0.0.1, under a few seconds of load, checked twice: by the binary's own
//! `verify:` line, and independently here from the files it leaves behind (the bound-number
//! records of the proxies and the acknowledgements of the clients).
//!
//! The machine these run on may have only 2 cores, so the cluster tests of this file run one
//! at a time (a shared lock) and keep their load short.

use mason_common::record::{read_records, BoundBatch};
use mason_common::SpaceMask;
use std::collections::HashMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};

#[path = "support/records.rs"]
mod records;
use records::{check_acks_against, check_fifo, check_tiling, files_matching, read_acks, Bound};
use std::time::{Duration, Instant};

/// One cluster at a time: each spawns several processes and loads them.
static CLUSTER: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    CLUSTER.lock().unwrap_or_else(|e| e.into_inner())
}

/// A `mason local` run in its own process group: if the test gives up on it (timeout,
/// panic), the whole group (the local driver and every process it started) is SIGKILLed.
struct LocalProc {
    child: Child,
    reaped: bool,
}

impl Drop for LocalProc {
    fn drop(&mut self) {
        if !self.reaped {
            kill_group(&self.child);
            let _ = self.child.wait();
        }
    }
}

fn kill_group(child: &Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on the process group this test created has no memory-safety
        // preconditions.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

/// Keeps the results directory, and prints where it is and the tails of its logs, when the
/// test fails; removes it when the test passes.
struct OutDir {
    dir: Option<tempfile::TempDir>,
}

impl OutDir {
    fn new(name: &str) -> OutDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("mason-it-{name}-"))
            .tempdir()
            .expect("creating a temporary directory");
        OutDir { dir: Some(dir) }
    }
    fn path(&self) -> &Path {
        self.dir.as_ref().map(|d| d.path()).expect("out dir")
    }
}

impl Drop for OutDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let Some(dir) = self.dir.take() else { return };
        let path = dir.keep();
        eprintln!("--- test failed; results kept in {}", path.display());
        if let Ok(rd) = std::fs::read_dir(path.join("logs")) {
            let mut logs: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
            logs.sort();
            for l in logs {
                let text = std::fs::read_to_string(&l).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(15)..];
                eprintln!("--- tail of {}:\n{}", l.display(), tail.join("\n"));
            }
        }
    }
}

struct RunResult {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    wall: Duration,
}

fn spawn_reader(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

/// Runs `mason local <args> --out <out>` and waits for it (at most `timeout`).
fn run_local(args: &[&str], out: &Path, timeout: Duration) -> RunResult {
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_mason"))
        .arg("local")
        .args(args)
        .arg("--out")
        .arg(out)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("starting mason local");
    let mut p = LocalProc {
        child,
        reaped: false,
    };
    let out_r = spawn_reader(p.child.stdout.take().expect("stdout"));
    let err_r = spawn_reader(p.child.stderr.take().expect("stderr"));
    let status = loop {
        if let Some(st) = p.child.try_wait().expect("waiting for mason local") {
            p.reaped = true;
            break st;
        }
        if started.elapsed() > timeout {
            kill_group(&p.child);
            let _ = p.child.wait();
            p.reaped = true;
            let stdout = out_r.join().unwrap_or_default();
            let stderr = err_r.join().unwrap_or_default();
            panic!(
                "mason local {args:?} still running after {timeout:?}; killed it\n\
                 stdout:\n{stdout}\nstderr:\n{stderr}"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out_r.join().unwrap_or_default();
    let stderr = err_r.join().unwrap_or_default();
    let wall = started.elapsed();
    eprintln!(
        "mason local {} took {:.2}s ({status})\nstdout:\n{stdout}",
        args.join(" "),
        wall.as_secs_f64()
    );
    RunResult {
        code: status.code(),
        stdout,
        stderr,
        wall,
    }
}

/// One client process's line: `mrps,p50,p99,p999,p9999,num_re_tx`.
#[derive(Debug)]
struct ClientLine {
    mrps: f64,
    latencies: [f64; 4],
    retx: u64,
}

/// The parsed report of a `mason local` run.
#[derive(Debug)]
struct Report {
    clients: Vec<ClientLine>,
    /// `aggregate-throughput 50 99 99.9 99.99` values: Mops/s, then 4 percentiles (us).
    aggregate: [f64; 5],
    verify: String,
    ops: u64,
    acked: u64,
    /// Per space: (numbers bound, noops among them), from `sN=0..X(noops=Y)`.
    spaces: Vec<(u64, u64)>,
}

fn parse_report(stdout: &str) -> Report {
    let lines: Vec<&str> = stdout.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.trim() == "aggregate-throughput 50 99 99.9 99.99")
        .unwrap_or_else(|| panic!("no aggregate-throughput header in:\n{stdout}"));
    let mut clients = Vec::new();
    for l in &lines[..header] {
        let f: Vec<&str> = l.trim().split(',').collect();
        assert_eq!(f.len(), 6, "client line '{l}' has not 6 fields");
        let num = |s: &str| -> f64 {
            let v: f64 = s
                .parse()
                .unwrap_or_else(|_| panic!("client line '{l}': '{s}' is not a number"));
            assert!(
                v.is_finite() && v >= 0.0,
                "client line '{l}': bad value {v}"
            );
            v
        };
        clients.push(ClientLine {
            mrps: num(f[0]),
            latencies: [num(f[1]), num(f[2]), num(f[3]), num(f[4])],
            retx: f[5]
                .parse()
                .unwrap_or_else(|_| panic!("client line '{l}': num_re_tx '{}'", f[5])),
        });
    }
    let values = lines
        .get(header + 1)
        .unwrap_or_else(|| panic!("no values after the aggregate header:\n{stdout}"));
    let v: Vec<f64> = values
        .split_whitespace()
        .map(|x| {
            x.parse()
                .unwrap_or_else(|_| panic!("aggregate values '{values}': '{x}' not a number"))
        })
        .collect();
    assert_eq!(v.len(), 5, "aggregate values line '{values}'");
    let aggregate = [v[0], v[1], v[2], v[3], v[4]];
    let verify = lines
        .iter()
        .find(|l| l.starts_with("verify: "))
        .unwrap_or_else(|| panic!("no verify line in:\n{stdout}"))
        .to_string();
    let mut ops = None;
    let mut acked = None;
    let mut spaces = Vec::new();
    for tok in verify.split_whitespace() {
        if let Some(n) = tok.strip_prefix("ops=") {
            ops = n.parse().ok();
        } else if let Some(n) = tok.strip_prefix("acked=") {
            acked = n.parse().ok();
        } else if let Some(rest) = tok.strip_prefix('s') {
            // sN=0..X(noops=Y)
            let Some((idx, rest)) = rest.split_once("=0..") else {
                continue;
            };
            let idx: usize = idx.parse().expect("space index");
            assert_eq!(idx, spaces.len(), "spaces out of order in '{verify}'");
            let (n, rest) = rest.split_once("(noops=").expect("noops");
            let z = rest.trim_end_matches(')');
            spaces.push((
                n.parse().expect("numbers of a space"),
                z.parse().expect("noops of a space"),
            ));
        }
    }
    Report {
        clients,
        aggregate,
        ops: ops.unwrap_or(0),
        acked: acked.unwrap_or(0),
        spaces,
        verify,
    }
}

/// The common checks of a successful run with `clients` client processes over `spaces`
/// spaces: exit 0, one well-formed line per client, a sane aggregate, `verify: ok`, and a
/// non-empty range in every space.
fn check_ok_run(run: &RunResult, clients: usize, spaces: usize) -> Report {
    assert_eq!(
        run.code,
        Some(0),
        "mason local failed\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    let r = parse_report(&run.stdout);
    assert!(
        r.verify
            .starts_with("verify: ok unique contiguous stable once fifo;"),
        "verify line: {}",
        r.verify
    );
    assert_eq!(r.clients.len(), clients, "client lines: {:?}", r.clients);
    for c in &r.clients {
        let [p50, p99, p999, p9999] = c.latencies;
        assert!(
            p50 <= p99 && p99 <= p999 && p999 <= p9999,
            "client percentiles not ascending: {c:?}"
        );
    }
    let sum: f64 = r.clients.iter().map(|c| c.mrps).sum();
    assert!(
        r.aggregate[0] > 0.0,
        "aggregate throughput {:?}",
        r.aggregate
    );
    assert!(
        (r.aggregate[0] - sum).abs() <= 1e-3 * sum.max(1e-3) + 2e-6,
        "aggregate {} is not the sum of the client lines {sum}",
        r.aggregate[0]
    );
    let [_, p50, p99, p999, p9999] = r.aggregate;
    assert!(
        p50 > 0.0 && p50 <= p99 && p99 <= p999 && p999 <= p9999,
        "aggregate percentiles: {:?}",
        r.aggregate
    );
    assert_eq!(r.spaces.len(), spaces, "spaces in '{}'", r.verify);
    for (s, (n, z)) in r.spaces.iter().enumerate() {
        assert!(*n > 0, "space {s} bound nothing: {}", r.verify);
        assert!(z <= n, "space {s}: more noops than numbers: {}", r.verify);
    }
    assert!(r.ops > 0 && r.acked > 0, "ops/acked in '{}'", r.verify);
    assert!(r.acked <= r.ops, "more acks than bound ops: {}", r.verify);
    r
}

/// No process of the run panicked or logged an error.
fn assert_clean_logs(dir: &Path) {
    let logs = dir.join("logs");
    let names = files_matching(&logs, "");
    assert!(!names.is_empty(), "no logs in {}", logs.display());
    for n in names {
        let text = std::fs::read_to_string(logs.join(&n)).unwrap_or_default();
        for l in text.lines() {
            assert!(
                !l.contains("panicked") && !l.contains("ERROR"),
                "logs/{n}: {l}"
            );
        }
    }
}

/// `extra` after the load every cluster test here uses: 2 client processes of 2 clients,
/// 8 ops in flight each.
fn small<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "--clients",
        "2",
        "--client-threads",
        "2",
        "--concurrency",
        "8",
    ];
    v.extend_from_slice(extra);
    v
}

#[test]
fn two_groups_three_spaces_random_subsets() {
    let _one = one_at_a_time();
    let out = OutDir::new("random");
    let run = run_local(
        &small(&[
            "--groups",
            "2",
            "--spaces",
            "3",
            "--op-spaces",
            "random",
            "--duration",
            "2",
            "--warmup",
            "0.5",
            "--fsync",
            "off",
        ]),
        out.path(),
        Duration::from_secs(120),
    );
    let r = check_ok_run(&run, 2, 3);
    let dir = out.path();
    assert_clean_logs(dir);
    assert!(dir.join("summary.txt").is_file(), "no summary.txt");
    let summary = std::fs::read_to_string(dir.join("summary.txt")).expect("summary.txt");
    assert!(
        summary.contains(&r.verify),
        "summary.txt lacks the verify line"
    );
    for i in 0..2 {
        assert!(dir.join(format!("client-{i}.dat")).is_file());
        assert!(dir.join(format!("acks-{i}.bin")).is_file());
    }
    assert_eq!(
        files_matching(dir, "bound-"),
        [
            "bound-g0-r0.bin",
            "bound-g0-r1.bin",
            "bound-g0-r2.bin",
            "bound-g1-r0.bin",
            "bound-g1-r1.bin",
            "bound-g1-r2.bin"
        ]
    );

    // Independently of the binary's verdict: replica 0 (every group's first leader, never
    // faulted here) bound exactly 0..max of each space, as the verify line says.
    let t = check_tiling(dir, 2, 0, 3);
    assert_eq!(
        t.numbers,
        r.spaces.iter().map(|s| s.0).collect::<Vec<_>>(),
        "per-space maxima from bound-g*-r0.bin vs {}",
        r.verify
    );
    assert_eq!(
        t.noops,
        r.spaces.iter().map(|s| s.1).collect::<Vec<_>>(),
        "per-space noops from bound-g*-r0.bin vs {}",
        r.verify
    );
    assert_eq!(t.ops.len() as u64, r.ops, "bound ops vs {}", r.verify);
    // Random subsets: across the run, more than one shape of op was bound, and the
    // spaces did not all move in lockstep.
    let masks: std::collections::HashSet<u64> = t.ops.values().map(|o| o.0).collect();
    assert!(
        masks.len() > 1,
        "only op shapes {masks:?} with --op-spaces random"
    );
    let acks = read_acks(dir, 2);
    assert_eq!(acks.len() as u64, r.acked, "acks vs {}", r.verify);
    check_acks_against(&t.ops, &acks);
    // Without faults the followers applied the same batches.
    for rep in 1..3 {
        for g in 0..2 {
            let a = read_records::<BoundBatch>(&dir.join(format!("bound-g{g}-r0.bin")))
                .expect("r0")
                .0;
            let b = read_records::<BoundBatch>(&dir.join(format!("bound-g{g}-r{rep}.bin")))
                .expect("follower")
                .0;
            assert!(
                b.len() <= a.len() && a[..b.len()] == b[..],
                "group {g}: replica {rep} applied batches r0 did not"
            );
        }
    }
    eprintln!(
        "two_groups_three_spaces_random_subsets: mason local wall {:.2}s, {} batches, {} re-sent",
        run.wall.as_secs_f64(),
        t.batches,
        r.clients.iter().map(|c| c.retx).sum::<u64>()
    );
}

#[test]
fn follower_killed_and_restarted() {
    let _one = one_at_a_time();
    let out = OutDir::new("restart");
    let run = run_local(
        &small(&[
            "--groups",
            "2",
            "--spaces",
            "2",
            "--duration",
            "4",
            "--warmup",
            "0.5",
            "--kill-follower",
            "1.5",
            "--restart-follower",
            "2.5",
            "--fsync",
            "on",
        ]),
        out.path(),
        Duration::from_secs(150),
    );
    let r = check_ok_run(&run, 2, 2);
    assert!(
        run.stderr.contains("SIGKILLed proxy 2"),
        "no kill reported:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("restarted proxy 2"),
        "no restart reported:\n{}",
        run.stderr
    );
    for c in &r.clients {
        assert!(c.mrps > 0.0, "a client made no progress: {c:?}");
    }
    assert!(r.aggregate[0] > 0.0);
    let dir = out.path();
    assert_clean_logs(dir);
    let restarted = dir.join("logs").join("proxy-2.restarted.log");
    let text = std::fs::read_to_string(&restarted)
        .unwrap_or_else(|e| panic!("{}: {e}", restarted.display()));
    assert!(
        text.contains("proxy up"),
        "the restarted proxy did not come up:\n{text}"
    );
    // It recovered its Raft log from its own WAL (not only from the leader): every group
    // replayed a non-empty log.
    for g in 0..2 {
        let line = text
            .lines()
            .find(|l| l.contains("wal replayed") && l.contains(&format!("group={g} ")))
            .unwrap_or_else(|| panic!("no wal replay line for group {g}:\n{text}"));
        let index: u64 = line
            .split("replayed_index=")
            .nth(1)
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("unparsable wal replay line: {line}"));
        assert!(index > 0, "group {g} replayed nothing from its wal: {line}");
    }
    // The first incarnation's log is kept beside it.
    assert!(dir.join("logs").join("proxy-2.log").is_file());

    let t = check_tiling(dir, 2, 0, 2);
    assert_eq!(
        t.numbers,
        r.spaces.iter().map(|s| s.0).collect::<Vec<_>>(),
        "per-space maxima from bound-g*-r0.bin vs {}",
        r.verify
    );
    let acks = read_acks(dir, 2);
    check_acks_against(&t.ops, &acks);
    // The restarted replica replayed its WAL and caught up from the leader: it applied
    // the very batches replica 0 applied, all of them.
    for g in 0..2 {
        let (a, _) = read_records::<BoundBatch>(&dir.join(format!("bound-g{g}-r0.bin")))
            .expect("reading r0's records");
        let (b, torn) = read_records::<BoundBatch>(&dir.join(format!("bound-g{g}-r2.bin")))
            .expect("reading the restarted replica's records");
        assert!(!torn, "group {g}: the restarted replica's records are torn");
        assert_eq!(
            b.len(),
            a.len(),
            "group {g}: restarted replica 2 applied {} batches, replica 0 {}",
            b.len(),
            a.len()
        );
        assert!(
            a == b,
            "group {g}: replica 2 and replica 0 applied different batches"
        );
    }
    let t2 = check_tiling(dir, 2, 2, 2);
    assert_eq!(t2.numbers, t.numbers);
    eprintln!(
        "follower_killed_and_restarted: mason local wall {:.2}s, {} batches, {} ops, {} re-sent",
        run.wall.as_secs_f64(),
        t.batches,
        t.ops.len(),
        r.clients.iter().map(|c| c.retx).sum::<u64>()
    );
}

#[test]
fn direct_baseline() {
    let _one = one_at_a_time();
    let out = OutDir::new("direct");
    let run = run_local(
        &small(&[
            "--system",
            "direct",
            "--spaces",
            "2",
            "--op-spaces",
            "random",
            "--duration",
            "2",
            "--warmup",
            "0.5",
        ]),
        out.path(),
        Duration::from_secs(120),
    );
    let r = check_ok_run(&run, 2, 2);
    let dir = out.path();
    assert_clean_logs(dir);
    // No proxy was started: no bound records, no proxy logs.
    assert!(files_matching(dir, "bound-").is_empty());
    assert!(files_matching(&dir.join("logs"), "proxy-").is_empty());
    assert_eq!(
        files_matching(&dir.join("logs"), "sequencer"),
        ["sequencer.log"]
    );
    // Every acknowledged op holds its own grant: the numbers of each space are unique
    // and, the run being fault-free, exactly 0..max.
    let acks = read_acks(dir, 2);
    assert_eq!(acks.len() as u64, r.acked);
    let mut per_space: Vec<Vec<u64>> = vec![Vec::new(); 2];
    let mut bound: Bound = HashMap::new();
    for (key, mask, nums) in &acks {
        assert_eq!(SpaceMask(*mask).len(), nums.len());
        assert!(SpaceMask(*mask).within(2) && *mask != 0);
        for (s, n) in SpaceMask(*mask).iter().zip(nums) {
            per_space[s as usize].push(*n);
        }
        assert!(
            bound.insert(*key, (*mask, nums.clone())).is_none(),
            "client {} op {} acknowledged twice",
            key.0,
            key.1
        );
    }
    for (s, nums) in per_space.iter_mut().enumerate() {
        nums.sort_unstable();
        for (i, n) in nums.iter().enumerate() {
            assert_eq!(
                *n, i as u64,
                "space {s}: numbers not 0..max (duplicate or hole)"
            );
        }
        assert_eq!(
            nums.len() as u64,
            r.spaces[s].0,
            "space {s} vs {}",
            r.verify
        );
    }
    check_fifo(&bound);
    eprintln!(
        "direct_baseline: mason local wall {:.2}s",
        run.wall.as_secs_f64()
    );
}

/// The proxy process leading group 0 is SIGKILLed under load. The surviving replicas elect
/// a new leader, which commits its predecessor's in-flight ranges (as noops) before taking
/// new ops; clients fail over to it. Every invariant holds, and ops were bound after the
/// failover: a surviving replica's log of group 0 shows a second run of K op-less probe
/// batches (the new leader's re-asks; the first run is the first leader's) followed by
/// batches with ops.
#[test]
fn leader_killed_under_load() {
    let _one = one_at_a_time();
    let out = OutDir::new("leader");
    let run = run_local(
        &small(&[
            "--groups",
            "2",
            "--spaces",
            "2",
            "--duration",
            "4",
            "--warmup",
            "0.5",
            "--kill-leader",
            "1.5",
            "--max-outstanding",
            "4",
            "--fsync",
            "on",
        ]),
        out.path(),
        Duration::from_secs(150),
    );
    let r = check_ok_run(&run, 2, 2);
    let killed: u32 = run
        .stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("mason local: SIGKILLed proxy ")
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or_else(|| panic!("no leader kill reported:\n{}", run.stderr));
    for c in &r.clients {
        assert!(c.mrps > 0.0, "a client made no progress: {c:?}");
    }
    let survivor = (0..3).find(|&x| x != killed).expect("a survivor");
    let p = out.path().join(format!("bound-g0-r{survivor}.bin"));
    let (log, _) = read_records::<BoundBatch>(&p).expect("survivor's records");
    let k = 4;
    // Start of every run of K op-less batches.
    let probe_runs: Vec<usize> = (0..log.len().saturating_sub(k - 1))
        .filter(|&i| log[i..i + k].iter().all(|b| b.op_seqs.is_empty()))
        .filter(|&i| i == 0 || !log[i - 1].op_seqs.is_empty())
        .collect();
    assert!(
        probe_runs.len() >= 2,
        "no second leader's re-asks in group 0's log (probe runs at {probe_runs:?} of {})",
        log.len()
    );
    let last = *probe_runs.last().expect("runs");
    let after = log[last + k..]
        .iter()
        .filter(|b| !b.op_seqs.is_empty())
        .count();
    assert!(after > 0, "no op was bound after the failover");
}
