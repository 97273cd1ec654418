//! Running `mason local` from tests: one cluster at a time, in its own process group
//! (SIGKILLed if the test gives up), its results directory kept on failure, and its report
//! parsed and checked.

#![allow(dead_code)]

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[path = "records.rs"]
pub mod records;
use records::files_matching;

/// One cluster at a time: each spawns several processes and loads them.
pub static CLUSTER: Mutex<()> = Mutex::new(());

pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    CLUSTER.lock().unwrap_or_else(|e| e.into_inner())
}

/// A `mason local` run in its own process group: if the test gives up on it (timeout,
/// panic), the whole group (the local driver and every process it started) is SIGKILLed.
pub struct LocalProc {
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

pub fn kill_group(child: &Child) {
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
pub struct OutDir {
    dir: Option<tempfile::TempDir>,
}

impl OutDir {
    pub fn new(name: &str) -> OutDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("mason-it-{name}-"))
            .tempdir()
            .expect("creating a temporary directory");
        OutDir { dir: Some(dir) }
    }
    pub fn path(&self) -> &Path {
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

pub struct RunResult {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub wall: Duration,
}

pub fn spawn_reader(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

/// Runs `mason local <args> --out <out>` and waits for it (at most `timeout`).
pub fn run_local(args: &[&str], out: &Path, timeout: Duration) -> RunResult {
    run_local_with(args, out, timeout, || ()).0
}

/// The address a role's log says it listens on (`listen=ADDR`), once it says so (at most
/// 20 s).
pub fn listen_addr(log: &Path) -> std::net::SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let found = text.split_whitespace().find_map(|w| {
            w.strip_prefix("listen=")
                .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        });
        if let Some(a) = found {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "{} names no listen address",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `mason local <args> --out <out>`, runs `during` on this thread while it runs, then
/// waits for it (at most `timeout` in all).
pub fn run_local_with<T>(
    args: &[&str],
    out: &Path,
    timeout: Duration,
    during: impl FnOnce() -> T,
) -> (RunResult, T) {
    let out = out.display().to_string();
    let mut all = vec!["local"];
    all.extend_from_slice(args);
    all.extend(["--out", out.as_str()]);
    run_mason_with(&all, timeout, during)
}

/// Runs `mason <args>` in a process group of its own (`RUST_LOG=info`), runs `during` on
/// this thread while it runs, then waits for it (at most `timeout` in all; past it the
/// whole group is SIGKILLed and the test fails).
pub fn run_mason_with<T>(
    args: &[&str],
    timeout: Duration,
    during: impl FnOnce() -> T,
) -> (RunResult, T) {
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_mason"))
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("starting mason");
    let mut p = LocalProc {
        child,
        reaped: false,
    };
    let out_r = spawn_reader(p.child.stdout.take().expect("stdout"));
    let err_r = spawn_reader(p.child.stderr.take().expect("stderr"));
    let got = during();
    let status = loop {
        if let Some(st) = p.child.try_wait().expect("waiting for mason") {
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
                "mason {args:?} still running after {timeout:?}; killed it\n\
                 stdout:\n{stdout}\nstderr:\n{stderr}"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out_r.join().unwrap_or_default();
    let stderr = err_r.join().unwrap_or_default();
    let wall = started.elapsed();
    eprintln!(
        "mason {} took {:.2}s ({status})\nstdout:\n{stdout}",
        args.join(" "),
        wall.as_secs_f64()
    );
    (
        RunResult {
            code: status.code(),
            stdout,
            stderr,
            wall,
        },
        got,
    )
}

/// One client process's line: `mrps,p50,p99,p999,p9999,num_re_tx`.
#[derive(Debug)]
pub struct ClientLine {
    pub mrps: f64,
    pub latencies: [f64; 4],
    pub retx: u64,
}

/// The parsed report of a `mason local` run.
#[derive(Debug)]
pub struct Report {
    pub clients: Vec<ClientLine>,
    /// `aggregate-throughput 50 99 99.9 99.99` values: Mops/s, then 4 percentiles (us).
    pub aggregate: [f64; 5],
    pub verify: String,
    pub ops: u64,
    pub acked: u64,
    /// Per space: (numbers bound, noops among them), from `sN=0..X(noops=Y)`.
    pub spaces: Vec<(u64, u64)>,
}

pub fn parse_report(stdout: &str) -> Report {
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
            let z = rest.trim_end_matches(';').trim_end_matches(')');
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

/// Exit 0 (or the run's output in the failure), and its report.
pub fn exited_ok(run: &RunResult) -> Report {
    assert_eq!(
        run.code,
        Some(0),
        "mason local failed\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    parse_report(&run.stdout)
}

/// Exit 0 and a verdict of ok.
pub fn verified_ok(run: &RunResult) -> Report {
    let r = exited_ok(run);
    assert!(r.verify.starts_with("verify: ok "), "{}", r.verify);
    r
}

/// The common checks of a successful run with `clients` client processes over `spaces`
/// spaces: exit 0, one well-formed line per client, a sane aggregate, `verify: ok`, and a
/// non-empty range in every space.
pub fn check_ok_run(run: &RunResult, clients: usize, spaces: usize) -> Report {
    let r = exited_ok(run);
    // Runs with proxy groups check Fenced too; the direct baseline has none to check.
    assert!(
        r.verify
            .starts_with("verify: ok unique contiguous stable once fifo fenced;")
            || r.verify
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
pub fn assert_clean_logs(dir: &Path) {
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

/// `extra` (flags separated by spaces) after the load every cluster test here uses: 2
/// client processes of 2 clients, 8 ops in flight each.
pub fn small(extra: &str) -> Vec<&str> {
    let mut v = vec![
        "--clients",
        "2",
        "--client-threads",
        "2",
        "--concurrency",
        "8",
    ];
    v.extend(extra.split_whitespace());
    v
}

/// `key=N` from a verdict line.
pub fn field(verify: &str, key: &str) -> u64 {
    verify
        .split_whitespace()
        .find_map(|t| t.strip_prefix(key))
        .and_then(|n| n.trim_end_matches(';').parse().ok())
        .unwrap_or_else(|| panic!("no {key} in '{verify}'"))
}
