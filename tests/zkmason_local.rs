//! ZK-Mason on real processes (`mason local --system zkmason`): the tree is sharded over
//! shard servers (three per shard), proxy groups take a number per touched shard (and one
//! in the zxid clock per write) from the sequencer, and deliver every bound op and noop
//! to the shards' servers. The verdict checks every acknowledged op per znode for
//! linearizability, that the servers of each shard end with the same tree, and that the
//! shards' trees together hold every acknowledged create.
//! Faults: SIGKILL of a shard server that restarts from its disk and catches up from its
//! peers, and of the proxy process leading group 0 (its successor delivers again what
//! it may not have finished). The fault run reads with `--zk-reads local` (a shard
//! server that has applied what the session has seen answers; the verdict then holds
//! reads to per-session order, writes still linearizable).

#[path = "support/cluster.rs"]
mod cluster;
use cluster::{exited_ok, field, one_at_a_time, run_local, small, OutDir, Report};
use std::time::Duration;

/// `name`'s value in a saved scrape (`metrics-<role>.prom`, Prometheus's text format).
fn scraped(out: &std::path::Path, role: &str, name: &str) -> f64 {
    let path = out.join(format!("metrics-{role}.prom"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the text format");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

fn zkmason(name: &str, extra: &str) -> Report {
    let _one = one_at_a_time();
    let out = OutDir::new(name);
    let flags = format!("--system zkmason --duration 3 --warmup 0.5 --znodes 16 {extra}");
    let run = run_local(&small(&flags), out.path(), Duration::from_secs(120));
    let r = exited_ok(&run);
    let promise = if extra.contains("--zk-reads local") {
        "verify: ok sequential"
    } else {
        "verify: ok linearizable"
    };
    assert!(r.verify.starts_with(promise), "{}", r.verify);
    assert!(r.aggregate[0] > 0.0, "aggregate {:?}", r.aggregate);
    // 16 znodes /z{k}/n{k} and their 16 parents, each created once by some client.
    assert_eq!(field(&r.verify, "znodes="), 32, "{}", r.verify);
    assert_eq!(field(&r.verify, "created="), 32, "{}", r.verify);
    assert!(field(&r.verify, "writes=") > 100, "{}", r.verify);
    assert!(field(&r.verify, "reads=") > 100, "{}", r.verify);
    // Every shard server's last scrape (`--metrics-listen`, saved by `mason local`): it
    // applied ops, and together at least every write three times (each write is applied
    // by the three servers of each shard it touches).
    let shards = field(&r.verify, "shards=");
    let mut applied = 0.0;
    for s in 0..shards {
        for i in 0..3 {
            let role = format!("zk-s{s}-r{i}");
            let n = scraped(out.path(), &role, "mason_zk_server_applied_ops_total");
            assert!(n > 0.0, "{role} applied {n} ops");
            applied += n;
        }
    }
    // (A server killed and restarted counts from its restart.)
    assert!(
        extra.contains("--kill") || applied >= 3.0 * field(&r.verify, "writes=") as f64,
        "{applied} ops applied by the shard servers, {}",
        r.verify
    );
    r
}

#[test]
fn zkmason_mixed_load_is_linearizable_and_each_shards_servers_agree() {
    let r = zkmason("zkm-mixed", "--fsync off --zk-shards 3");
    assert_eq!(field(&r.verify, "shards="), 3, "{}", r.verify);
    assert_eq!(field(&r.verify, "servers="), 9, "{}", r.verify);
}

#[test]
fn zkmason_survives_a_shard_server_and_a_proxy_leader_killed() {
    let r = zkmason(
        "zkm-kills",
        "--fsync on --zk-shards 2 --zk-reads local --kill-zk-server 0.8 --restart-zk-server 1.6 --kill-leader 1.2",
    );
    // The restarted shard server caught up: every server of every shard is compared.
    assert_eq!(field(&r.verify, "servers="), 6, "{}", r.verify);
}
