//! The verdict of a simulated run: the same checker as `mason local` (Unique, Contiguous,
//! Stable, Once, FIFO, and agreement of every group's replicas) over what the replicas
//! applied and what the clients were told, plus the two that need the run's timeline:
//! Fenced (a group never binds a batch of an older epoch after a newer one) and Live
//! (after each heal, clients get answers again within the bound, and every op is answered
//! once the faults are over). With a shared log, `logcheck` then checks the log servers'
//! contents against what was bound and answered; with ZK-Mason, `zkcheck` checks the
//! shard servers' trees and the clients' ZooKeeper histories.

use crate::logcheck::check_log;
use crate::trace::stamp;
use crate::world::World;
use crate::zkcheck::{check_zkmason, live_servers};
use mason_common::verify::{agree, check_fenced, Checker, Report, Violation};
use mason_zk::history;

fn violation(invariant: &'static str, detail: String) -> Violation {
    Violation {
        invariant,
        detail,
        op: None,
    }
}

pub fn check(
    w: &World,
    heals: &[u64],
    final_heal: u64,
    live_bound_us: u64,
) -> Result<Report, Violation> {
    if w.cfg.keeper {
        return check_keeper(w, heals, final_heal, live_bound_us);
    }
    settled(w)?;
    let mut checker = Checker::new(w.cfg.spaces);
    let mut all_bound = Vec::new();
    for g in 0..w.groups() {
        let logs = (0..3)
            .map(|r| w.bound.get(&(g, r)).cloned().unwrap_or_default())
            .collect();
        let log = agree(g, logs)?;
        check_fenced(g, &log)?;
        checker.fenced_checked();
        for b in &log {
            checker.bind_batch(b)?;
        }
        if w.cfg.log.is_some() {
            all_bound.extend(log);
        }
    }
    for chunk in w.acks() {
        chunk.for_each(|seq, mask, nums| checker.ack(chunk.session, seq, mask, nums));
    }
    // Safety first (Unique, Once, FIFO, Stable); then Live; then Contiguous, which can
    // only hold once the run recovered.
    let (report, hole) = checker.finish_safety()?;
    if w.cfg.zk.is_some() {
        check_zkmason(w, final_heal)?;
    }
    live(w, heals, final_heal, live_bound_us)?;
    if let Some(v) = hole {
        return Err(v);
    }
    check_log(w, &all_bound)?;
    Ok(report)
}

/// Live: after each heal, clients get answers again within the bound; every op is
/// answered once the faults are over, soon after; and (with a log) every leader has
/// written what its group bound.
fn live(w: &World, heals: &[u64], final_heal: u64, live_bound_us: u64) -> Result<(), Violation> {
    // Heals after the load stopped are covered by the final check below.
    for &h in heals.iter().filter(|&&h| h < final_heal) {
        let answered = w.ack_times.iter().any(|&t| t > h && t <= h + live_bound_us);
        if !answered {
            return Err(violation(
                "Live",
                format!(
                    "no op answered within {:.3}s after the heal at {}",
                    live_bound_us as f64 / 1e6,
                    stamp(h)
                ),
            ));
        }
    }
    let left = w.outstanding();
    if left > 0 {
        return Err(violation(
            "Live",
            format!(
                "{left} ops still unanswered at {} (faults over at {}): {}",
                stamp(w.now),
                stamp(final_heal),
                w.stuck().join("; ")
            ),
        ));
    }
    if !w.log_settled() {
        return Err(violation(
            "Live",
            format!(
                "the group leaders still have {} log deliveries unwritten at {} ({} writes pending at the log servers)",
                w.unwritten_deliveries(),
                stamp(w.now),
                w.log_pending()
            ),
        ));
    }
    if w.cfg.zk.is_some() {
        live_servers(w)?;
    }
    if let Some(&last) = w.ack_times.last() {
        if last > final_heal + live_bound_us {
            return Err(violation(
                "Live",
                format!(
                    "the last op was answered at {}, more than {:.3}s after the faults ended at {}",
                    stamp(last),
                    live_bound_us as f64 / 1e6,
                    stamp(final_heal)
                ),
            ));
        }
    }
    Ok(())
}

/// RSMKeeper's verdict: every acknowledged op is linearizable per znode (local reads too:
/// the leader answers them after a ReadIndex round), each group's live replicas hold the
/// same tree, and the run was live.
fn check_keeper(
    w: &World,
    heals: &[u64],
    final_heal: u64,
    live_bound_us: u64,
) -> Result<Report, Violation> {
    settled(w)?;
    let covered =
        history::check(w.zk_events()).map_err(|v| violation("Linearizable", v.to_string()))?;
    if covered.writes == 0 {
        return Err(violation(
            "Live",
            "no write was acknowledged: nothing to check".into(),
        ));
    }
    let trees = w.zk_trees();
    for g in 0..w.groups() {
        let n = trees.iter().filter(|t| t.0 == g).count();
        if n < 2 {
            return Err(violation(
                "Agreement",
                format!("group {g}: {n} live replica tree(s), nothing to compare"),
            ));
        }
    }
    for (g, m, t) in &trees {
        let Some((_, m0, t0)) = trees.iter().find(|x| x.0 == *g) else {
            continue;
        };
        if t.digest() != t0.digest() {
            let at = t0
                .first_difference(t)
                .unwrap_or_else(|| "(the sessions)".into());
            return Err(violation(
                "Agreement",
                format!("group {g}: proxy-{m}'s tree differs from proxy-{m0}'s at {at}"),
            ));
        }
    }
    // A client that died for good: once its idle session was closed through the log,
    // every replica ended its ZooKeeper session and deleted its ephemerals.
    if w.cfg.replica.session_timeout_us < final_heal {
        let expected = history::Expected {
            closed: w.dead_sessions(),
            ..Default::default()
        };
        for (g, m, t) in &trees {
            history::check_final(t, &expected)
                .map_err(|e| violation("Expiry", format!("group {g}: proxy-{m}'s tree: {e}")))?;
        }
    }
    live(w, heals, final_heal, live_bound_us)?;
    Ok(Report {
        numbers: Vec::new(),
        noops: Vec::new(),
        ops: (covered.writes + covered.reads) as u64,
        acked: (covered.writes + covered.reads) as u64,
        fenced: false,
    })
}

/// Every replica applied its batches in id order (none missed entries), and once
/// everything healed and went quiet, every live replica caught up with its group.
fn settled(w: &World) -> Result<(), Violation> {
    if w.anomalies() > 0 {
        // A replica applied batches out of id order: its state machine missed entries
        // (a snapshot not restored, say), which its records alone may not show.
        return Err(violation(
            "Stable",
            format!(
                "{} batches applied out of id order by some replica",
                w.anomalies()
            ),
        ));
    }
    if let Some((g, m, last, top)) = w.lagging().first() {
        // Once everything healed and went quiet, every live replica has caught up (from
        // the log, or from a snapshot once the log was compacted).
        return Err(violation(
            "Live",
            format!("proxy-{m}'s replica of group {g} applied up to batch {last}, its group {top}"),
        ));
    }
    Ok(())
}
