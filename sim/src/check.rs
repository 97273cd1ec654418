//! The verdict of a simulated run: the same checker as `mason local` (Unique, Contiguous,
//! Stable, Once, FIFO, and agreement of every group's replicas) over what the replicas
//! applied and what the clients were told, plus the two that need the run's timeline:
//! Fenced (a group never binds a batch of an older epoch after a newer one) and Live
//! (after each heal, clients get answers again within the bound, and every op is answered
//! once the faults are over).

use crate::trace::stamp;
use crate::world::World;
use mason_common::verify::{agree, Checker, Report, Violation};

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
    let mut checker = Checker::new(w.cfg.spaces);
    for g in 0..w.groups() {
        let logs = (0..3)
            .map(|r| w.bound.get(&(g, r)).cloned().unwrap_or_default())
            .collect();
        let log = agree(g, logs)?;
        let mut epoch = 0;
        for b in &log {
            if b.epoch < epoch {
                return Err(violation(
                    "Fenced",
                    format!(
                        "group {g} bound batch {} of epoch {} after epoch {epoch}",
                        b.batch_id, b.epoch
                    ),
                ));
            }
            epoch = b.epoch;
            checker.bind_batch(b)?;
        }
    }
    for chunk in &w.acks {
        chunk.for_each(|seq, mask, nums| checker.ack(chunk.client_id, seq, mask, nums));
    }
    // Safety first (Unique, Once, FIFO, Stable); then Live; then Contiguous, which can
    // only hold once the run recovered.
    let (report, hole) = checker.finish_safety()?;
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
                "{left} ops still unanswered at {} (faults over at {})",
                stamp(w.now),
                stamp(final_heal)
            ),
        ));
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
    match hole {
        Some(v) => Err(v),
        None => Ok(report),
    }
}
