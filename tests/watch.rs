//! `mason watch` against a running `mason local` of 2 groups: from 0, the numbers it prints
//! are exactly 0..N, each once, in order, ops of both groups among them, and each op line
//! names the op the proxies' records bind at that number; from where the groups stand
//! (no --from), in JSON, it starts where it says and tiles on from there.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/cluster.rs"]
mod cluster;
use cluster::records::check_tiling;
use cluster::{listen_addr, one_at_a_time, run_local_with, small, spawn_reader, OutDir};

/// Numbers the first watch prints (a few seconds of this load on a loaded 2-core machine).
const COUNT: u64 = 20_000;

/// One printed line: its numbers `start..end`, kind, group, and (ops) session and seq.
#[derive(Debug)]
struct Printed {
    start: u64,
    end: u64,
    kind: String,
    group: Option<u32>,
    op: Option<(u64, u64)>,
}

/// `17 op group=1 session=S seq=Q`, `20..23 noop group=0`, `0..9 earlier group=?`.
fn parse_text(line: &str) -> Printed {
    let f: Vec<&str> = line.split_whitespace().collect();
    assert!(f.len() >= 3, "short line '{line}'");
    let (start, end) = match f[0].split_once("..") {
        Some((a, b)) => (a.parse().expect("start"), b.parse().expect("end")),
        None => {
            let n: u64 = f[0]
                .parse()
                .unwrap_or_else(|_| panic!("number in '{line}'"));
            (n, n + 1)
        }
    };
    let field = |k: &str| f.iter().find_map(|t| t.strip_prefix(k));
    let group = field("group=").and_then(|g| g.parse().ok());
    let op = match (field("session="), field("seq=")) {
        (Some(s), Some(q)) => Some((s.parse().expect("session"), q.parse().expect("seq"))),
        _ => None,
    };
    Printed {
        start,
        end,
        kind: f[1].to_string(),
        group,
        op,
    }
}

fn parse_json(line: &str) -> Printed {
    let v: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("'{line}' is not JSON: {e}"));
    let n = |k: &str| v[k].as_u64();
    let kind = v["kind"].as_str().expect("kind").to_string();
    let (start, end) = match n("number") {
        Some(x) => (x, x + 1),
        None => (n("start").expect("start"), n("end").expect("end")),
    };
    Printed {
        start,
        end,
        kind,
        group: n("group").map(|g| g as u32),
        op: n("session").zip(n("seq")),
    }
}

/// Runs `mason watch <args>` against the run in `out` (at most 40 s); its stdout and
/// stderr.
fn watch(out: &Path, proxies: &str, args: &[&str]) -> (String, String) {
    let key = out.join("cluster.key");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mason"))
        .arg("watch")
        .args(["--proxies", proxies, "--groups", "2", "--space", "0"])
        .args(args)
        .arg("--cluster-key-file")
        .arg(&key)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting mason watch");
    let out_r = spawn_reader(child.stdout.take().expect("stdout"));
    let err_r = spawn_reader(child.stderr.take().expect("stderr"));
    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(st) = child.try_wait().expect("waiting for mason watch") {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (
        out_r.join().unwrap_or_default(),
        err_r.join().unwrap_or_default(),
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "mason watch {args:?}: {status:?}\nstderr:\n{stderr}\nstdout tail:\n{}",
        &stdout[stdout.len().saturating_sub(2000)..]
    );
    (stdout, stderr)
}

/// The lines tile `from..from + count` exactly: each number once, in order.
fn assert_tiles(lines: &[Printed], from: u64, count: u64) {
    let mut next = from;
    for l in lines {
        assert_eq!(
            l.start, next,
            "a line starts at {} where {next} was due",
            l.start
        );
        assert!(l.end > l.start, "an empty line at {}", l.start);
        next = l.end;
    }
    assert_eq!(next, from + count, "the lines end at {next}");
}

#[test]
fn watch_prints_the_contiguous_prefix_of_two_groups() {
    let _one = one_at_a_time();
    let out = OutDir::new("watch");
    let dir = out.path().to_path_buf();
    let (run, (from0, now)) = run_local_with(
        &small("--duration 8 --groups 2"),
        out.path(),
        Duration::from_secs(120),
        || {
            let proxies: Vec<String> = (0..3)
                .map(|r| listen_addr(&dir.join(format!("logs/proxy-{r}.log"))).to_string())
                .collect();
            let proxies = proxies.join(",");
            let count = COUNT.to_string();
            // Both watches run at once: the second joins while the load runs.
            std::thread::scope(|s| {
                let first = s.spawn(|| watch(&dir, &proxies, &["--from", "0", "--count", &count]));
                std::thread::sleep(Duration::from_secs(4));
                let now = watch(&dir, &proxies, &["--count", "5000", "--json"]);
                (first.join().expect("the first watch"), now)
            })
        },
    );
    let report = cluster::verified_ok(&run);

    // From 0: exactly 0..COUNT, each once, in order.
    let lines: Vec<Printed> = from0.0.lines().map(parse_text).collect();
    assert_tiles(&lines, 0, COUNT);
    // Each op line is the op the records bind there (replica 0's records, checked whole
    // by the support code), and the ops it prints are all the records bind below COUNT.
    let tiling = check_tiling(out.path(), 2, 0, 1);
    let mut by_number = std::collections::HashMap::new();
    for (op, (_, numbers)) in &tiling.ops {
        by_number.insert(numbers[0], *op);
    }
    let mut groups = [0u64; 2];
    let mut printed_ops = 0u64;
    for l in &lines {
        match l.kind.as_str() {
            "op" => {
                let op = l.op.expect("an op line names its op");
                assert_eq!(by_number.get(&l.start), Some(&op), "op line at {}", l.start);
                groups[l.group.expect("an op's group") as usize] += 1;
                printed_ops += 1;
            }
            "noop" => {
                for n in l.start..l.end {
                    assert!(
                        !by_number.contains_key(&n),
                        "{n} is an op, printed as a noop"
                    );
                }
            }
            "earlier" => {}
            k => panic!("unknown kind '{k}'"),
        }
    }
    // Ops bound before the watch saw them are printed as ranges, without their ops.
    let earlier: Vec<(u64, u64)> = lines
        .iter()
        .filter(|l| l.kind == "earlier")
        .map(|l| (l.start, l.end))
        .collect();
    let in_earlier = |n: u64| earlier.iter().any(|(a, b)| *a <= n && n < *b);
    let bound_below = by_number.keys().filter(|n| **n < COUNT).count() as u64;
    let unreported = by_number
        .keys()
        .filter(|n| **n < COUNT && in_earlier(**n))
        .count() as u64;
    assert_eq!(
        printed_ops + unreported,
        bound_below,
        "op lines, and ops inside earlier ranges, against the ops bound below {COUNT}"
    );
    assert!(
        groups[0] > 0 && groups[1] > 0,
        "ops of both groups: {groups:?}"
    );
    // The verdict's noops of the whole space include any printed here.
    let noops: u64 = lines
        .iter()
        .filter(|l| l.kind == "noop")
        .map(|l| l.end - l.start)
        .sum();
    assert!(
        noops <= report.spaces[0].1,
        "{noops} noops printed; {}",
        report.verify
    );

    // From where the groups stood when it joined: it says where, and tiles on from there.
    let (json, stderr) = now;
    let from: u64 = stderr
        .lines()
        .find_map(|l| l.split("space 0 from ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no start in the watch's stderr:\n{stderr}"));
    assert!(from > 0, "the load had bound numbers 4 s in");
    let lines: Vec<Printed> = json.lines().map(parse_json).collect();
    assert_tiles(&lines, from, 5000);
    for l in lines.iter().filter(|l| l.kind == "op") {
        assert_eq!(
            by_number.get(&l.start),
            l.op.as_ref(),
            "op line at {}",
            l.start
        );
    }
}
