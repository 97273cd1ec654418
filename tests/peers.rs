//! `mason experiment peers` end to end, briefly: Mason and a real ZooKeeper ensemble (3
//! JVMs, Debian's `zookeeper`, as CI installs it) under the same small load. Each gives
//! a row with its rate and latencies, ZooKeeper's sequential creates are unique, and each
//! row says how much CPU its servers spent per op (their processes' user and system time
//! over the measured window, from /proc for ZooKeeper's JVMs, from `mason local`'s `cpu`
//! lines for Mason's sequencers and proxies). Mason runs one proxy group here
//! (`--groups 1`, passed on to `mason local`).

use std::time::Duration;

#[path = "support/cluster.rs"]
mod cluster;
use cluster::{run_mason_with, OutDir};

/// One row of peers.csv: system, ops/s, p50, p99, server CPU per op, note.
struct Row {
    system: String,
    ops: Option<f64>,
    server_cpu_us: Option<f64>,
    note: String,
}

fn rows(csv: &str) -> Vec<Row> {
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("system,ops_per_s,p50_us,p99_us,server_cpu_us,note")
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.splitn(6, ',').collect();
            assert_eq!(f.len(), 6, "{l}");
            Row {
                system: f[0].to_string(),
                ops: f[1].parse().ok(),
                server_cpu_us: f[4].parse().ok(),
                note: f[5].to_string(),
            }
        })
        .collect()
}

#[test]
fn mason_and_zookeeper_each_give_their_rate_and_their_servers_cpu_per_op() {
    let out = OutDir::new("peers");
    let dir = out.path().display().to_string();
    let args = format!(
        "experiment peers --systems mason,zookeeper --warmup 2 --duration 2 --fsync off \
         --clients 1 --client-threads 2 --concurrency 4 --groups 1 --out {dir}"
    );
    let args: Vec<&str> = args.split_whitespace().collect();
    let (run, ()) = run_mason_with(&args, Duration::from_secs(180), || ());
    let stdout = &run.stdout;
    assert_eq!(run.code, Some(0), "{stdout}\n{}", run.stderr);
    assert!(
        stdout
            .lines()
            .next()
            .is_some_and(|h| h.contains("srv_cpu_us")),
        "{stdout}"
    );
    let csv = std::fs::read_to_string(out.path().join("peers.csv")).expect("peers.csv");
    let rows = rows(&csv);
    let names: Vec<&str> = rows.iter().map(|r| r.system.as_str()).collect();
    assert_eq!(names, ["mason", "zookeeper create"], "{csv}");
    for r in &rows {
        assert!(r.ops.is_some_and(|o| o > 100.0), "{}: {csv}", r.system);
        // Some CPU, and not more than every core of the machine for the whole window
        // spread over the ops measured (a figure that counted wall time, or the wrong
        // processes, would not sit in this range).
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let most = cores * 1.1 * 1e6 / r.ops.unwrap_or(1.0);
        assert!(
            r.server_cpu_us.is_some_and(|c| c > 0.1 && c < most),
            "{}: server CPU {:?} us/op, at most {most:.1}: {csv}",
            r.system,
            r.server_cpu_us
        );
    }
    assert!(
        rows[0].note.contains(" 1 proxy group x 3 replicas"),
        "{csv}"
    );
    // `mason local` itself ran one group (its stderr is kept beside peers.csv).
    let log = std::fs::read_to_string(out.path().join("mason-mason.log")).expect("mason's log");
    assert!(log.contains("mason system, 1 group(s),"), "{log}");
    assert!(rows[1].note.contains("unique ("), "{csv}");
}
