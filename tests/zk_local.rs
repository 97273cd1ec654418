//! RSMKeeper on real processes (`mason local --system rsmkeeper`): three proxy processes
//! keep the ZooKeeper tree in one Raft group, clients run setData/getData on shared
//! znodes, and the verdict checks every acknowledged op per znode for linearizability,
//! that the replicas end with the same tree, and that acknowledged creates are in it.
//! Faults: SIGKILL of the group's leader, and of a follower that then restarts from its
//! data directory and catches up; the fault run reads with `--zk-reads local` (the leader
//! answers after a ReadIndex round, so reads stay linearizable).

#[path = "support/cluster.rs"]
mod cluster;
use cluster::{exited_ok, field, one_at_a_time, run_local, small, OutDir, Report};
use std::time::Duration;

fn rsmkeeper(name: &str, extra: &str) -> Report {
    let _one = one_at_a_time();
    let out = OutDir::new(name);
    let flags = format!("--system rsmkeeper --duration 3 --warmup 0.5 --znodes 16 {extra}");
    let run = run_local(&small(&flags), out.path(), Duration::from_secs(120));
    let r = exited_ok(&run);
    assert!(
        r.verify.starts_with("verify: ok linearizable"),
        "{}",
        r.verify
    );
    assert_eq!(r.clients.len(), 2, "client lines: {:?}", r.clients);
    assert!(r.aggregate[0] > 0.0, "aggregate {:?}", r.aggregate);
    // 16 znodes /z{k}/n{k} and their 16 parents, each created once by some client.
    assert_eq!(field(&r.verify, "znodes="), 32, "{}", r.verify);
    assert_eq!(field(&r.verify, "created="), 32, "{}", r.verify);
    assert!(field(&r.verify, "writes=") > 100, "{}", r.verify);
    r
}

#[test]
fn rsmkeeper_mixed_load_is_linearizable_and_replicas_agree() {
    let r = rsmkeeper("zk-mixed", "--fsync off --write-percent 50");
    assert!(field(&r.verify, "reads=") > 100, "{}", r.verify);
    assert_eq!(field(&r.verify, "replicas="), 3, "{}", r.verify);
}

#[test]
fn rsmkeeper_survives_its_leader_killed_and_a_follower_restarted() {
    let r = rsmkeeper(
        "zk-kills",
        "--fsync on --zk-reads local --kill-leader 1.2 --kill-follower 0.8 --restart-follower 2.0",
    );
    // The killed leader wrote no tree; the two others (the restarted follower among
    // them, unless it was the leader killed) agree.
    assert!(field(&r.verify, "replicas=") >= 2, "{}", r.verify);
}
