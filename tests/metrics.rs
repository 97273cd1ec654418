//! Metrics end to end: `mason local` (mason system, 2 groups, 2 spaces, a backup
//! sequencer) with every role's `--metrics-listen`. While the load runs, every role's
//! endpoint is scraped and parsed with `prometheus-parse` (each answers, with its key
//! metrics), and proxy 0's port is fed garbage, an oversized request and an idle
//! connection, after which it still answers and the run still verifies. After the
//! verdict, the final values (`metrics-<role>.prom`) must agree with it:
//!
//! - sum over groups g of max over replicas r of `mason_proxy_ops_bound_total{group=g}`
//!   at r == the verdict's `ops=` (every replica counts each op of each batch it applies
//!   once; the furthest replica has applied every batch, and the scrape comes after the
//!   clients ended, with no faults: no batch binds after it);
//! - sum over clients of `mason_client_ops_total{result="answered"}` == the verdict's
//!   `acked=` (each answered op is one acknowledgement in the client's record);
//! - the primary's `mason_sequencer_numbers_total{space=s}` == the end of space s's
//!   range in the verdict (`sS=0..N`): every number handed out was bound (no no-ops
//!   without faults);
//! - the raft gauges agree: applied <= commit at every replica, one leader per group;
//! - every role exports its process's CPU time, memory and start time, and the run's
//!   `cpu` lines (each process's cores and CPU per op over the measured window) name
//!   every role, add up, and show the working roles busy and the idle backup sequencer
//!   not.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

#[path = "support/cluster.rs"]
mod cluster;
use cluster::{one_at_a_time, run_local_with, small, verified_ok, OutDir};

/// Parsed samples: (name, labels) -> value.
type Samples = HashMap<(String, Vec<(String, String)>), f64>;

fn parse(text: &str) -> Samples {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("a valid exposition");
    let mut out = HashMap::new();
    for s in scrape.samples {
        let v = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => continue, // histograms: their _count and _sum are checked by name
        };
        let mut labels: Vec<(String, String)> = s
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.sort();
        out.insert((s.metric, labels), v);
    }
    out
}

fn get(s: &Samples, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut l: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.sort();
    s.get(&(name.to_string(), l)).copied()
}

fn raw(addr: SocketAddr, req: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to a metrics port");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = s.write_all(req);
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn scrape(addr: SocketAddr) -> String {
    let reply = raw(addr, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    let (head, body) = reply.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    body.to_string()
}

/// `metrics ROLE http://ADDR/metrics` lines.
fn endpoints(text: &str) -> Vec<(String, SocketAddr)> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("metrics")).then_some(())?;
            let role = w.next()?.to_string();
            let addr = w
                .next()?
                .strip_prefix("http://")?
                .strip_suffix("/metrics")?;
            Some((role, addr.parse().ok()?))
        })
        .collect()
}

const ROLES: [&str; 7] = [
    "sequencer",
    "sequencer-1",
    "proxy-0",
    "proxy-1",
    "proxy-2",
    "client-0",
    "client-1",
];

/// The metric that shows a role is working, and must be above 0 mid-run.
fn key_metric(role: &str) -> &'static str {
    match role {
        r if r.starts_with("client") => "mason_client_ops_total",
        r if r.starts_with("proxy") => "mason_proxy_raft_commit_index",
        _ => "mason_sequencer_epoch",
    }
}

/// Checks the summary's `cpu ROLE CORES cores US us/op` lines and their `cpu all` sum,
/// for a run of `ops_per_sec`.
fn cpu_lines_add_up(summary: &str, ops_per_sec: f64) {
    let machine = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let mut sum = (0.0, 0.0);
    let mut all = None;
    for l in summary.lines().filter_map(|l| l.strip_prefix("cpu ")) {
        let f: Vec<&str> = l.split_whitespace().collect();
        assert!(
            f.len() >= 5 && f[2] == "cores" && f[4] == "us/op",
            "cpu {l}"
        );
        let cores: f64 = f[1].parse().unwrap_or_else(|_| panic!("cpu {l}"));
        let per_op: f64 = f[3].parse().unwrap_or_else(|_| panic!("cpu {l}"));
        assert!((0.0..=machine + 0.25).contains(&cores), "cpu {l}");
        // us/op is cores over the run's rate (both rounded to two places).
        let expect = cores * 1e6 / ops_per_sec;
        assert!(
            (per_op - expect).abs() <= 0.01 + 0.005 * 1e6 / ops_per_sec,
            "cpu {l}: {expect:.2} us/op expected at {ops_per_sec:.0} ops/s"
        );
        match f[0] {
            "all" => all = Some((cores, per_op)),
            "sequencer-1" => assert!(cores < 0.05, "an idle backup: cpu {l}"),
            role => {
                assert!(ROLES.contains(&role), "cpu {l}");
                assert!(cores > 0.01, "a working role: cpu {l}");
                sum = (sum.0 + cores, sum.1 + per_op);
            }
        }
    }
    let named = summary
        .lines()
        .filter(|l| l.starts_with("cpu ") && !l.starts_with("cpu all"))
        .count();
    assert_eq!(named, ROLES.len(), "one cpu line per role:\n{summary}");
    let (cores, per_op) = all.expect("a `cpu all` line");
    assert!(
        (cores - sum.0).abs() <= 0.06,
        "{cores} cores, the roles' add to {}",
        sum.0
    );
    assert!(
        (per_op - sum.1).abs() <= 0.06 + sum.1 * 0.01,
        "{per_op} us/op vs {}",
        sum.1
    );
}

/// Scrapes every role while the run goes (see the module's doc); then the bad input.
fn during_run(dir: &Path) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen: HashMap<String, bool> = HashMap::new();
    let mut eps = Vec::new();
    while seen.len() < ROLES.len() || seen.values().any(|ok| !ok) {
        assert!(
            Instant::now() < deadline,
            "not every role's metrics answered with its key metric above 0: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
        eps = endpoints(&std::fs::read_to_string(dir.join("metrics.txt")).unwrap_or_default());
        for (role, addr) in &eps {
            if seen.get(role) == Some(&true) {
                continue;
            }
            let Ok(mut c) = TcpStream::connect(*addr) else {
                continue; // not up yet
            };
            let _ = c.write_all(b"GET /metrics HTTP/1.1\r\n\r\n");
            let mut reply = String::new();
            let _ = c.read_to_string(&mut reply);
            let Some((_, body)) = reply.split_once("\r\n\r\n") else {
                continue;
            };
            let s = parse(body);
            let up = s
                .iter()
                .any(|((n, _), v)| n == key_metric(role) && *v > 0.0);
            // A backup sequencer serves no epoch: it answers, and that is all.
            let up =
                up || (role == "sequencer-1" && get(&s, "mason_sequencer_epoch", &[]).is_some());
            seen.insert(role.clone(), up);
        }
    }
    // Bad input to proxy 0's metrics port: garbage, too big a request, an idle connection.
    let proxy0 = eps
        .iter()
        .find(|(r, _)| r == "proxy-0")
        .map(|(_, a)| *a)
        .expect("proxy-0 listed");
    let idle = TcpStream::connect(proxy0).expect("an idle connection");
    assert!(raw(proxy0, b"\x16\x03\x01garbage\r\n\r\n").starts_with("HTTP/1.1 400"));
    assert!(raw(proxy0, &vec![b'G'; 64 << 10]).starts_with("HTTP/1.1 400"));
    assert!(raw(proxy0, b"GET /admin HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    let s = parse(&scrape(proxy0));
    assert!(get(&s, "mason_proxy_raft_commit_index", &[("group", "0")]).is_some_and(|v| v > 0.0));
    drop(idle);
    seen.into_keys().collect()
}

#[test]
fn every_role_exports_metrics_that_agree_with_the_verdict() {
    let _one = one_at_a_time();
    let out = OutDir::new("metrics");
    let dir = out.path().to_path_buf();
    let (run, seen) = run_local_with(
        &small("--groups 2 --spaces 2 --sequencers 2 --duration 3 --warmup 0.5 --fsync off"),
        out.path(),
        Duration::from_secs(120),
        || during_run(&dir),
    );
    let r = verified_ok(&run);
    assert_eq!(seen.len(), ROLES.len(), "{seen:?}");
    let summary = std::fs::read_to_string(dir.join("summary.txt")).expect("summary.txt");
    let listed: Vec<String> = endpoints(&summary).into_iter().map(|(r, _)| r).collect();
    for role in ROLES {
        assert!(
            listed.iter().any(|l| l == role),
            "summary.txt lists no metrics for {role}"
        );
    }
    let fin = |role: &str| {
        let p = dir.join(format!("metrics-{role}.prom"));
        parse(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
    };
    for role in ROLES {
        let m = fin(role);
        assert!(
            get(&m, "process_cpu_seconds_total", &[]) > Some(0.0),
            "{role}"
        );
        assert!(
            get(&m, "process_resident_memory_bytes", &[]) > Some(1e6),
            "{role}"
        );
        assert!(
            get(&m, "process_start_time_seconds", &[]) > Some(1.6e9),
            "{role}"
        );
    }
    let mut lines = summary.lines();
    lines.find(|l| l.starts_with("aggregate-throughput"));
    let mops: f64 = lines
        .next()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .expect("the aggregate throughput");
    cpu_lines_add_up(&summary, mops * 1e6);
    let proxies: Vec<Samples> = (0..3).map(|i| fin(&format!("proxy-{i}"))).collect();
    let mut bound = 0.0;
    for g in ["0", "1"] {
        let per: Vec<f64> = proxies
            .iter()
            .map(|p| get(p, "mason_proxy_ops_bound_total", &[("group", g)]).unwrap_or(0.0))
            .collect();
        bound += per.iter().cloned().fold(0.0, f64::max);
        let leaders: f64 = proxies
            .iter()
            .map(|p| get(p, "mason_proxy_is_leader", &[("group", g)]).unwrap_or(0.0))
            .sum();
        assert_eq!(leaders, 1.0, "group {g} has {leaders} leaders");
        for p in &proxies {
            let applied = get(p, "mason_proxy_raft_applied_index", &[("group", g)]);
            let commit = get(p, "mason_proxy_raft_commit_index", &[("group", g)]);
            assert!(
                applied.is_some() && applied <= commit,
                "{applied:?} > {commit:?}"
            );
            assert!(get(p, "mason_proxy_batch_ops_count", &[("group", g)]) > Some(0.0));
        }
    }
    // One WAL per proxy process, shared by its groups.
    for p in &proxies {
        let syncs = get(p, "mason_proxy_wal_sync_seconds_count", &[]);
        let records = get(p, "mason_proxy_wal_records_per_sync_sum", &[]);
        let groups = get(p, "mason_proxy_wal_groups_per_sync_sum", &[]);
        assert!(
            syncs > Some(0.0) && records >= syncs && groups >= syncs,
            "{syncs:?} {records:?} {groups:?}"
        );
    }
    assert_eq!(
        bound, r.ops as f64,
        "ops bound by the groups vs the verdict: {}",
        r.verify
    );
    let answered: f64 = (0..2)
        .map(|i| {
            let c = fin(&format!("client-{i}"));
            assert!(get(&c, "mason_client_op_latency_seconds_count", &[]) > Some(0.0));
            assert!(get(&c, "mason_client_resends_total", &[]).is_some());
            get(&c, "mason_client_ops_total", &[("result", "answered")]).unwrap_or(0.0)
        })
        .sum();
    assert_eq!(answered, r.acked as f64, "{}", r.verify);
    let seq = fin("sequencer");
    assert_eq!(r.spaces.len(), 2, "{}", r.verify);
    for (s, (end, noops)) in ["0", "1"].into_iter().zip(r.spaces.iter().copied()) {
        assert_eq!(noops, 0, "{}", r.verify);
        let numbers = get(&seq, "mason_sequencer_numbers_total", &[("space", s)]);
        assert_eq!(numbers, Some(end as f64), "space {s}: {}", r.verify);
        assert!(get(&seq, "mason_sequencer_requests_total", &[("space", s)]) > Some(0.0));
    }
}
