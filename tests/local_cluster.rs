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
use std::time::Duration;

#[path = "support/cluster.rs"]
mod cluster;
use cluster::records::{
    by_index, check_acks_against, check_fifo, check_tiling, files_matching, read_acks, Bound,
};
use cluster::{assert_clean_logs, check_ok_run, one_at_a_time, run_local, small, OutDir};

#[test]
fn two_groups_three_spaces_random_subsets() {
    let _one = one_at_a_time();
    let out = OutDir::new("random");
    let run = run_local(
        &small(
            "--groups 2 --spaces 3 --op-spaces random --duration 2 \
             --warmup 0.5 --fsync off",
        ),
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

    // Independently of the binary's verdict: replica 0 (never faulted here, it applies
    // every group's whole log) bound exactly 0..max of each space, as the verify line says.
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
                .records;
            let b = read_records::<BoundBatch>(&dir.join(format!("bound-g{g}-r{rep}.bin")))
                .expect("follower")
                .records;
            assert!(
                b.len() <= a.len() && a[..b.len()] == b[..],
                "group {g}: replica {rep} applied batches r0 did not"
            );
        }
    }
    let resent: u64 = r.clients.iter().map(|c| c.retx).sum();
    eprintln!(
        "two_groups_three_spaces_random_subsets: mason local wall {:.2}s, {} batches, {resent} re-sent",
        run.wall.as_secs_f64(),
        t.batches,
    );
    // The load starts once each group has its first leader, and each client tries that
    // replica first (group 1's is proxy 1): without a fault, nothing is re-sent, not even
    // a registration redirected. A machine slow enough to cost a group its first leader
    // (an election timeout is 200-400 ms) is a fault of its own: then re-sends are fine.
    let leaderships = ["proxy-0", "proxy-1", "proxy-2"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(dir.join("logs").join(format!("{p}.log"))).ok())
        .map(|log| log.lines().filter(|l| l.contains("leading;")).count())
        .sum::<usize>();
    if leaderships == 2 {
        assert_eq!(resent, 0, "a fault-free run re-sent ops: {:?}", r.clients);
    } else {
        eprintln!("{leaderships} leaderships for 2 groups: re-sends not checked");
    }
}

#[test]
fn follower_killed_and_restarted() {
    let _one = one_at_a_time();
    let out = OutDir::new("restart");
    let run = run_local(
        &small(
            "--groups 2 --spaces 2 --duration 4 --warmup 0.5 \
             --kill-follower 1.5 --restart-follower 2.5 --fsync on --snapshot-entries 300",
        ),
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
    // The first incarnation's log is kept beside it. It had taken snapshots, so the WAL it
    // left holds snapshots' resets and the restart replayed through them.
    let first = std::fs::read_to_string(dir.join("logs").join("proxy-2.log")).unwrap_or_default();
    assert!(
        first.contains("snapshot written"),
        "the killed proxy took no snapshot before it died:\n{first}"
    );

    let t = check_tiling(dir, 2, 0, 2);
    assert_eq!(
        t.numbers,
        r.spaces.iter().map(|s| s.0).collect::<Vec<_>>(),
        "per-space maxima from bound-g*-r0.bin vs {}",
        r.verify
    );
    let acks = read_acks(dir, 2);
    check_acks_against(&t.ops, &acks);
    // The restarted replica replayed its WAL (or its snapshot) and caught up from the
    // leader: at every Raft index both hold, it applied what replica 0 applied, and it
    // holds the whole tail, up to replica 0's last index.
    for g in 0..2 {
        let a = read_records::<BoundBatch>(&dir.join(format!("bound-g{g}-r0.bin")))
            .expect("reading r0's records")
            .records;
        let rb = read_records::<BoundBatch>(&dir.join(format!("bound-g{g}-r2.bin")))
            .expect("reading the restarted replica's records");
        assert!(
            !rb.torn,
            "group {g}: the restarted replica's records are torn"
        );
        assert!(
            rb.ended,
            "group {g}: the restarted replica did not end its records"
        );
        let b = rb.records;
        let (a, b) = (by_index(a), by_index(b));
        for (i, rb) in &b {
            assert_eq!(
                a.get(i),
                Some(rb),
                "group {g}: replica 2 and replica 0 differ at index {i}"
            );
        }
        assert_eq!(
            a.keys().last(),
            b.keys().last(),
            "group {g}: the restarted replica did not catch up to replica 0's last index"
        );
    }
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
        &small(
            "--system direct --spaces 2 --op-spaces random --duration 2 \
             --warmup 0.5",
        ),
        out.path(),
        Duration::from_secs(120),
    );
    let r = check_ok_run(&run, 2, 2);
    assert!(
        !r.verify.contains("fenced"),
        "no group, no epoch: Fenced is not checked, and not claimed: {}",
        r.verify
    );
    let dir = out.path();
    assert_clean_logs(dir);
    // The sequencer's own record of its grants, ended cleanly, is what was checked.
    let grants = mason_common::record::read_records::<mason_common::record::GrantChunk>(
        &dir.join("grants-0.bin"),
    )
    .expect("the sequencer's grant record");
    assert!(grants.ended && !grants.torn);
    let granted: usize = grants.records.iter().map(|g| g.len()).sum();
    assert!(
        granted as u64 >= r.acked,
        "{granted} grants, {} acked",
        r.acked
    );
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
        &small(
            "--groups 2 --spaces 2 --duration 4 --warmup 0.5 \
             --kill-leader 1.5 --max-outstanding 4 --fsync on",
        ),
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
    let log = read_records::<BoundBatch>(&p)
        .expect("survivor's records")
        .records;
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

/// A client process SIGKILLed and started again with the same index (so the same client
/// ids): its new incarnation opens new sessions (through the groups, or at random with the
/// sequencer), its old ops are never mistaken for its new ones, every invariant holds over
/// both incarnations' answers, and the new one makes progress. Once with proxy groups,
/// once in the direct baseline.
#[test]
fn a_client_restarted_with_its_id_gets_new_sessions_and_progresses() {
    for system in ["mason", "direct"] {
        let _one = one_at_a_time();
        let out = OutDir::new(&format!("client-restart-{system}"));
        let run = run_local(
            &small(&format!(
                "--system {system} --duration 3 --warmup 0.5 --kill-client 1 --restart-client 1.5"
            )),
            out.path(),
            Duration::from_secs(120),
        );
        let r = check_ok_run(&run, 2, 1);
        assert!(
            run.stderr.contains("restarted client 0"),
            "{system}: {}",
            run.stderr
        );
        // The restarted process measured its own ops.
        assert!(r.clients[0].mrps > 0.0, "{system}: {:?}", r.clients[0]);
        // Both incarnations' ops are bound, each in sessions of its own: 2 processes x 2
        // clients, and 2 more for the restarted process.
        let mut sessions = std::collections::BTreeSet::new();
        if system == "mason" {
            for g in 0..2 {
                let p = out.path().join(format!("bound-g{g}-r0.bin"));
                for b in mason_common::record::read_records::<BoundBatch>(&p)
                    .expect("records")
                    .records
                {
                    sessions.extend(b.op_sessions);
                }
            }
        } else {
            let p = out.path().join("grants-0.bin");
            for g in mason_common::record::read_records::<mason_common::record::GrantChunk>(&p)
                .expect("grants")
                .records
            {
                sessions.extend(g.sessions);
            }
        }
        assert!(
            sessions.len() >= 6,
            "{system}: ops bound in {} sessions",
            sessions.len()
        );
        // The restarted process's own answers: new sessions, numbered from 1.
        let acks = read_acks(out.path(), 1);
        assert!(
            acks.iter().any(|a| a.0 .1 == 1),
            "{system}: seqs restart at 1"
        );
    }
}
