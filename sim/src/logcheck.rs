//! The verdict on the shared log (CorfuMason, DESIGN.md section 8) once a run healed and
//! settled, read from every log server's store:
//!
//! - **NoHole**: every position from 0 to the highest number bound in space 0 is written in
//!   every member of its chain (and nothing is written beyond it);
//! - **LogAgree**: all members of a chain hold the same entry at each position (no position
//!   holds two values);
//! - **Log**: every op a client was answered in space 0 is in the log at its number (a data
//!   entry stamped with its client and seq), and the log is what the groups bound: the
//!   positions of bound ops hold those ops, every other bound position holds junk.

use crate::world::World;
use mason_client::log::unstamp;
use mason_common::logmsg::LogKind;
use mason_common::record::BoundBatch;
use mason_common::types::SpaceMask;
use mason_common::verify::Violation;
use mason_corfu_server::storage::{Entry, MemStore, Storage};
use std::collections::BTreeMap;

fn violation(invariant: &'static str, detail: String, op: Option<(u64, u64)>) -> Violation {
    Violation {
        invariant,
        detail,
        op,
    }
}

/// What a bound position must hold: an op's entry, or junk (a noop).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Op(u64, u64),
    Junk,
}

fn describe(e: &Entry) -> String {
    match e.kind {
        LogKind::Junk => "junk".to_string(),
        LogKind::Data => match unstamp(&e.payload) {
            Some((c, s)) => format!("session {c} op {s}"),
            None => format!("unstamped data of {} bytes", e.payload.len()),
        },
    }
}

fn get(store: &MemStore, pos: u64) -> Option<Entry> {
    store.get(pos).ok().flatten()
}

/// What space 0's numbers were bound to, from the agreed records of every group.
fn expected(bound: &[BoundBatch]) -> Result<BTreeMap<u64, Expect>, Violation> {
    let mut want = BTreeMap::new();
    for b in bound {
        let Some(k) = SpaceMask(b.space_mask).index_of(0) else {
            continue;
        };
        let base = b.bases.get(k).copied().unwrap_or(0);
        let count = b.counts.get(k).copied().unwrap_or(0);
        for pos in base..base + u64::from(count) {
            want.insert(pos, Expect::Junk);
        }
        let numbered = mason_common::verify::op_numbers(b)
            .map_err(|e| violation("Log", format!("group {}: {e}", b.group), None))?;
        for (c, s, m, nums) in numbered {
            if let Some(&pos) = m.index_of(0).and_then(|i| nums.get(i)) {
                want.insert(pos, Expect::Op(c, s));
            }
        }
    }
    Ok(want)
}

/// Checks the log servers' stores against what the groups bound (`bound`: every group's
/// agreed records) and what the clients were told.
pub fn check_log(w: &World, bound: &[BoundBatch]) -> Result<(), Violation> {
    let Some(l) = w.cfg.log else {
        return Ok(());
    };
    let mut chains: Vec<Vec<(u32, &MemStore)>> = Vec::new();
    for shard in 0..l.shards {
        let mut members = Vec::new();
        for i in l.chain(shard) {
            let Some(st) = w.log_store(i) else {
                return Err(violation("NoHole", format!("log-{i} does not exist"), None));
            };
            members.push((i, st));
        }
        chains.push(members);
    }
    let want = expected(bound)?;
    let top = want.keys().next_back().map_or(0, |p| p + 1);
    let written = chains
        .iter()
        .flatten()
        .map(|(_, st)| st.next_position())
        .max()
        .unwrap_or(0);
    // The entry at each position, once its chain agrees on it.
    let mut log: Vec<Option<Entry>> = Vec::with_capacity(top.max(written) as usize);
    for pos in 0..top.max(written) {
        let shard = mason_common::logmsg::shard_of(pos, l.shards) as usize;
        let Some(members) = chains.get(shard) else {
            return Err(violation(
                "NoHole",
                format!("no chain for position {pos}"),
                None,
            ));
        };
        let entries: Vec<(u32, Option<Entry>)> =
            members.iter().map(|(i, st)| (*i, get(st, pos))).collect();
        if pos < top {
            if let Some((i, _)) = entries.iter().find(|(_, e)| e.is_none()) {
                return Err(violation(
                    "NoHole",
                    format!(
                        "position {pos} (bound up to {}) is not written at log-{i}, a member of shard {shard}'s chain",
                        top - 1
                    ),
                    None,
                ));
            }
        }
        let first = &entries[0];
        for (i, e) in &entries[1..] {
            if *e != first.1 {
                let show = |e: &Option<Entry>| e.as_ref().map_or("nothing".to_string(), describe);
                return Err(violation(
                    "LogAgree",
                    format!(
                        "position {pos}: log-{} holds {}, log-{i} holds {}",
                        first.0,
                        show(&first.1),
                        show(e)
                    ),
                    None,
                ));
            }
        }
        if pos >= top {
            if let Some(e) = &first.1 {
                return Err(violation(
                    "Log",
                    format!(
                        "position {pos} holds {} but no group bound it (bound up to {top})",
                        describe(e)
                    ),
                    None,
                ));
            }
        }
        log.push(first.1.clone());
    }
    // Every answered op is in the log at the number it was told.
    for chunk in w.acks() {
        let c = chunk.session;
        let mut bad = None;
        chunk.for_each(|seq, mask, nums| {
            if bad.is_some() {
                return;
            }
            let Some(pos) = mask.index_of(0).and_then(|k| nums.get(k)).copied() else {
                return;
            };
            let e = log.get(pos as usize).cloned().flatten();
            let ok = e
                .as_ref()
                .is_some_and(|e| e.kind == LogKind::Data && unstamp(&e.payload) == Some((c, seq)));
            if !ok {
                let held = e.as_ref().map_or("nothing".to_string(), describe);
                bad = Some(violation(
                    "Log",
                    format!("client {c} op {seq} was answered position {pos}, which holds {held}"),
                    Some((c, seq)),
                ));
            }
        });
        if let Some(v) = bad {
            return Err(v);
        }
    }
    // The log is what the groups bound.
    for (&pos, &exp) in &want {
        let e = log.get(pos as usize).cloned().flatten();
        let ok = match (&e, exp) {
            (Some(e), Expect::Junk) => e.kind == LogKind::Junk,
            (Some(e), Expect::Op(c, s)) => {
                e.kind == LogKind::Data && unstamp(&e.payload) == Some((c, s))
            }
            (None, _) => false,
        };
        if !ok {
            let held = e.as_ref().map_or("nothing".to_string(), describe);
            let (what, op) = match exp {
                Expect::Op(c, s) => (format!("client {c} op {s}"), Some((c, s))),
                Expect::Junk => ("a noop".to_string(), None),
            };
            return Err(violation(
                "Log",
                format!("position {pos} was bound to {what} but holds {held}"),
                op,
            ));
        }
    }
    Ok(())
}
