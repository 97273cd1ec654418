//! The verdict on ZK-Mason's shard servers and clients once a run healed and settled (the
//! sequencing invariants are checked before, over what the groups bound and answered):
//!
//! - **Linearizable**: per znode (a path and its czxid), every acknowledged write got a
//!   version of its own and no op went back past one answered before it was sent
//!   (`mason_zk::history::check`); every acknowledged op's reply decodes. With local
//!   reads, this holds of the ops through the log, and:
//! - **Sequential** (local reads, `--zk-reads local`): per znode, writes as above, and
//!   each read sees every op of its own client answered before it was sent
//!   (`history::check_reads` with `Reads::Sequential`, over every op, local reads too).
//! - **Agreement**: no server was delivered two things for one number, applied one twice,
//!   or failed to recover from its disk, and each live server's disk (what a crash would
//!   keep) recovers to what it applied; all live servers of a shard that applied as far
//!   hold the same tree; one tree per shard merges into one whole tree
//!   (`mason_zk::sharded::merge`) that holds every acknowledged create no op deletes
//!   (`history::check_final`).
//! - **Live** (`live_servers`): every live server of each shard reached the sequencer's
//!   counter of its space, and every leader's deliveries are done.
//!
//! - **Expiry** (when sessions time out within the run): every session of a client that
//!   died for good is closed in the shards' union, its ephemerals gone
//!   (`proxy/src/replica/zkexpire.rs` closes it on every shard through the sequencer).

use crate::world::World;
use mason_common::verify::Violation;
use mason_zk::history::{self, Reads};
use mason_zk::{sharded, DataTree};

fn violation(invariant: &'static str, detail: String) -> Violation {
    Violation {
        invariant,
        detail,
        op: None,
    }
}

/// Linearizable and Agreement.
pub fn check_zkmason(w: &World, final_heal: u64) -> Result<(), Violation> {
    let covered = if w.cfg.local_reads > 0 || w.cfg.readers > 0 {
        history::check(&w.zk_log_events()).map_err(|v| violation("Linearizable", v.to_string()))?;
        history::check_reads(w.zk_events(), Reads::Sequential)
            .map_err(|v| violation("Sequential", v.to_string()))?
    } else {
        history::check(w.zk_events()).map_err(|v| violation("Linearizable", v.to_string()))?
    };
    if covered.writes == 0 {
        return Err(violation(
            "Live",
            "no write was acknowledged: nothing to check".into(),
        ));
    }
    if let Some(bad) = w.zk_bad_replies().first() {
        return Err(violation(
            "Linearizable",
            format!(
                "{} acknowledged ops got no ZooKeeper reply, first {bad}",
                w.zk_bad_replies().len()
            ),
        ));
    }
    if let Some(a) = w.zk_anomalies().first() {
        return Err(violation("Agreement", a.clone()));
    }
    // What each server's disk holds (once the run went quiet, all of it synced) gives
    // back what it applied.
    if let Some((s, i, why)) = w.zk_unrecoverable().first() {
        return Err(violation(
            "Agreement",
            format!("zk-s{s}-r{i} restarted from its disk would recover to {why}"),
        ));
    }
    let servers = w.zk_servers();
    let shards = w.cfg.zk.map_or(0, |z| z.shards);
    let mut parts: Vec<DataTree> = Vec::new();
    for s in 0..shards {
        let live: Vec<_> = servers.iter().filter(|x| x.0 == s && x.2).collect();
        let Some(top) = live.iter().max_by_key(|x| x.3.next()) else {
            return Err(violation(
                "Agreement",
                format!("shard {s} has no live server"),
            ));
        };
        for x in live.iter().filter(|x| x.3.next() == top.3.next()) {
            if x.3.tree().digest() != top.3.tree().digest() {
                let at = top
                    .3
                    .tree()
                    .first_difference(x.3.tree())
                    .unwrap_or_else(|| "(the sessions)".into());
                return Err(violation(
                    "Agreement",
                    format!(
                        "shard {s}: at position {}, zk-s{s}-r{}'s tree differs from zk-s{s}-r{}'s at {at}",
                        top.3.next(),
                        x.1,
                        top.1
                    ),
                ));
            }
        }
        parts.push(top.3.tree().clone());
    }
    let whole = sharded::merge(&parts)
        .map_err(|e| violation("Agreement", format!("the shards' trees do not merge: {e}")))?;
    // Sessions time out within the run: a dead client's ephemeral must be gone (Expiry,
    // below), not present.
    let expiry = w.cfg.replica.session_timeout_us < final_heal;
    let dead: Vec<String> = w.dead_clients().iter().map(|c| format!("/e{c}-")).collect();
    let expected = history::Expected {
        created: w
            .zk_created()
            .iter()
            .filter(|p| !expiry || !dead.iter().any(|d| p.starts_with(d.as_str())))
            .cloned()
            .collect(),
        ..Default::default()
    };
    history::check_final(&whole, &expected)
        .map_err(|e| violation("Agreement", format!("the shards' union: {e}")))?;
    // A client that died for good: once its idle session was closed through its group's
    // log, every shard ended its ZooKeeper session and deleted its ephemerals.
    if expiry {
        let expected = history::Expected {
            closed: w.dead_sessions(),
            ..Default::default()
        };
        history::check_final(&whole, &expected)
            .map_err(|e| violation("Expiry", format!("the shards' union: {e}")))?;
    }
    Ok(())
}

/// Live: every live shard server applied all of its space that was handed out, and no
/// serving leader has a delivery left.
pub fn live_servers(w: &World) -> Result<(), Violation> {
    let mut tops = w.zk_bound_tops();
    if let Some(counters) = w.seq_counters() {
        for (s, t) in tops.iter_mut().enumerate() {
            *t = (*t).max(counters.get(s + 1).copied().unwrap_or(0));
        }
    }
    for (s, i, alive, n) in w.zk_servers() {
        let top = tops.get(s as usize).copied().unwrap_or(0);
        if alive && n.next() < top {
            return Err(violation(
                "Live",
                format!(
                    "zk-s{s}-r{i} applied up to position {} of its space, which was handed out up to {top}",
                    n.next()
                ),
            ));
        }
    }
    if !w.zk_settled() {
        return Err(violation(
            "Live",
            "a serving leader still has deliveries to the shard servers not done".into(),
        ));
    }
    Ok(())
}
