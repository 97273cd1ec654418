//! The recovery experiment on real processes: `mason local` SIGKILLs the leader of group 0
//! and later the primary sequencer, under load. The backup takes over; the verdict (Unique,
//! Contiguous, Stable, Once, FIFO, Fenced) must hold, the takeover must have happened
//! through every group's log, progress must resume within the bound after each kill, and
//! the recovery record and its plot must be written.

use mason_common::record::{read_records, BoundBatch};
use std::time::Duration;

#[path = "support/cluster.rs"]
mod cluster;
use cluster::{assert_clean_logs, check_ok_run, one_at_a_time, run_local, small, OutDir};

/// Generous for a loaded 2-core CI machine; the figures measured on loopback are in
/// docs/benchmarks.md.
const RESUME_BOUND_MS: u64 = 2_000;

/// `recovery: <what> killed at <T>ms: first new number after <N> ms, ...` (or `never`).
fn first_new_ms(stdout: &str, what: &str) -> u64 {
    let prefix = format!("recovery: {what} killed at ");
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no recovery line for the {what} kill in:\n{stdout}"));
    assert!(
        !line.contains("first new number never"),
        "progress never resumed after the {what} kill: {line}"
    );
    line.split("first new number after ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unparsable recovery line: {line}"))
}

#[test]
fn leader_then_primary_sequencer_killed_under_load() {
    let _one = one_at_a_time();
    let out = OutDir::new("failover");
    let run = run_local(
        &small(
            "--groups 2 --spaces 2 --duration 5 --warmup 0.5 \
             --kill-leader 1.5 --kill-sequencer 3.5 --fsync off",
        ),
        out.path(),
        Duration::from_secs(150),
    );
    let r = check_ok_run(&run, 2, 2);
    for c in &r.clients {
        assert!(c.mrps > 0.0, "a client made no progress: {c:?}");
    }
    let dir = out.path();
    assert_clean_logs(dir);
    assert!(
        run.stderr.contains("SIGKILLed the primary sequencer"),
        "no sequencer kill reported:\n{}",
        run.stderr
    );
    // Every group promised epoch 2 through its log (a record with epoch 2 and no ranges),
    // and bound ops at epoch 2 after it.
    for g in 0..2 {
        let mut seen = false;
        for rep in 0..3 {
            let p = dir.join(format!("bound-g{g}-r{rep}.bin"));
            let Ok(recs) = read_records::<BoundBatch>(&p) else {
                continue;
            };
            let log = recs.records;
            let Some(i) = log
                .iter()
                .position(|b| b.epoch == 2 && b.space_mask == 0 && b.batch_id == 0)
            else {
                continue;
            };
            assert!(
                log[i + 1..]
                    .iter()
                    .any(|b| b.epoch == 2 && !b.op_seqs.is_empty()),
                "group {g} replica {rep}: no op bound at epoch 2 after its promise"
            );
            assert!(
                log[i + 1..].iter().all(|b| b.epoch >= 2),
                "group {g} replica {rep}: an epoch-1 batch after the promise"
            );
            seen = true;
        }
        assert!(
            seen,
            "group {g}: no replica recorded the promise of epoch 2"
        );
    }
    for what in ["leader", "sequencer"] {
        let ms = first_new_ms(&run.stdout, what);
        assert!(
            ms <= RESUME_BOUND_MS,
            "progress resumed {ms} ms after the {what} kill (bound {RESUME_BOUND_MS} ms)"
        );
    }
    let rec = dir.join("recovery");
    for f in ["contig.csv", "kills.csv", "recovery.svg"] {
        assert!(rec.join(f).exists(), "recovery/{f} missing");
    }
    let kills = std::fs::read_to_string(rec.join("kills.csv")).expect("kills.csv");
    assert!(
        kills.contains(",leader") && kills.contains(",sequencer"),
        "{kills}"
    );
}
