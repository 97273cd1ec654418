//! The shared log on real processes (`mason local --system corfu|corfumason`): every run's
//! verdict checks that each acknowledged append is at its position with its own payload
//! in every member of its chain, that the chains agree, and (CorfuMason) that the log up
//! to its tail is exactly what the groups bound, with no hole. Faults: SIGKILL and restart
//! of a chain's head or tail, and of a proxy group's leader.

#[path = "support/cluster.rs"]
mod cluster;
use cluster::{check_ok_run, one_at_a_time, run_local, small, OutDir};
use std::time::Duration;

/// `log: tail=T data=D noops=N holes_filled=H acked=A` from the verify line.
fn log_fields(verify: &str) -> [u64; 5] {
    let part = verify
        .split("log: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no log check in '{verify}'"));
    let mut v = [u64::MAX; 5];
    for (i, key) in ["tail=", "data=", "noops=", "holes_filled=", "acked="]
        .iter()
        .enumerate()
    {
        v[i] = part
            .split_whitespace()
            .find_map(|t| t.strip_prefix(key))
            .and_then(|n| n.trim_end_matches(';').parse().ok())
            .unwrap_or_else(|| panic!("no {key} in '{verify}'"));
    }
    v
}

fn corfumason(name: &str, extra: &str) -> [u64; 5] {
    let _one = one_at_a_time();
    let out = OutDir::new(name);
    let flags = format!("--system corfumason --duration 3 --warmup 0.5 {extra}");
    let run = run_local(&small(&flags), out.path(), Duration::from_secs(120));
    let r = check_ok_run(&run, 2, 1);
    let [tail, data, noops, holes, acked] = log_fields(&r.verify);
    assert_eq!(holes, 0, "CorfuMason never fills: {}", r.verify);
    assert_eq!(tail, data + noops, "positions below the tail: {}", r.verify);
    assert_eq!(
        acked, r.acked,
        "every acknowledged append checked: {}",
        r.verify
    );
    assert!(
        acked > 1000,
        "too few appends to mean anything: {}",
        r.verify
    );
    [tail, data, noops, holes, acked]
}

#[test]
fn corfumason_appends_land_in_the_log_without_holes() {
    corfumason("cm-plain", "--fsync off");
}

#[test]
fn corfumason_4k_payloads() {
    corfumason("cm-4k", "--fsync off --payload 4096");
}

#[test]
fn corfumason_survives_sigkill_and_restart_of_a_chain_tail() {
    // Server 1 is the tail of shard 0 (R = 2): writes to that shard stall while it is
    // down and go on after it restarts from its segment files.
    corfumason(
        "cm-tail",
        "--kill-log-server 1 --restart-log-server 1.8 --log-victim 1",
    );
}

#[test]
fn corfumason_survives_sigkill_and_restart_of_a_chain_head() {
    corfumason(
        "cm-head",
        "--kill-log-server 1 --restart-log-server 1.8 --log-victim 2",
    );
}

#[test]
fn corfumason_survives_a_proxy_leader_kill() {
    // The new leader writes again what its predecessor bound but may not have written,
    // and the noops of its predecessor's unfinished batches.
    corfumason("cm-leader", "--fsync off --kill-leader 1");
}

/// A Corfu run with `extra` flags: exit 0, Corfu's verdict (the sequencer's own record of
/// its tokens against what the writers were told, then the log), and its report.
fn corfu(name: &str, extra: &str) -> cluster::Report {
    let _one = one_at_a_time();
    let out = OutDir::new(name);
    let flags = format!("--system corfu --warmup 0.5 {extra}");
    let run = run_local(&small(&flags), out.path(), Duration::from_secs(120));
    let r = cluster::exited_ok(&run);
    // Corfu has no proxy groups: the tokens are checked (Fenced has nothing to check),
    // and the verdict says so.
    assert!(
        r.verify
            .starts_with("verify: ok unique contiguous stable once fifo; "),
        "{}",
        r.verify
    );
    assert!(r.verify.contains("; log: "), "{}", r.verify);
    r
}

#[test]
fn corfu_baseline_appends_and_reads() {
    let r = corfu(
        "corfu-reads",
        "--workload reads --prefill 4000 --duration 2 --fsync off",
    );
    let [tail, data, _noops, _holes, acked] = log_fields(&r.verify);
    assert!(
        acked >= 4000 && data >= acked && tail >= acked,
        "{}",
        r.verify
    );
    let reads: u64 = r
        .verify
        .split("reads: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(reads > 1000, "reads checked: {}", r.verify);
    assert!(r.verify.contains("bad=0"), "{}", r.verify);
}

#[test]
fn corfu_baseline_survives_sigkill_and_restart_of_a_chain_tail() {
    let r = corfu(
        "corfu-tail",
        "--duration 3 --kill-log-server 1 --restart-log-server 1.8 --log-victim 3",
    );
    let [_, _, _, _, acked] = log_fields(&r.verify);
    assert!(acked > 1000, "{}", r.verify);
}
