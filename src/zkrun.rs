//! The verdict of a ZooKeeper run (RSMKeeper), from records kept apart: each client's
//! history of acknowledged ops (`zk-history-N.bin`) and each replica's tree as it ended
//! (`tree-g0-rR.snap`).
//!
//! - linearizable per znode: every acknowledged setData got a version of its own, and an
//!   op sent after another was answered sees it (`mason_zk::history::check`);
//! - the replicas end with the same tree (a digest, and on a mismatch the first path that
//!   differs);
//! - what was acknowledged is in that tree: created znodes are there and listed by their
//!   parents, and the sessions closed left no ephemerals (`history::check_final`).

use mason_common::record::{read_records, ZkHistoryChunk};
use mason_zk::history::{self, Access, Event, Expected};
use mason_zk::DataTree;
use std::path::Path;

/// Checks a run of `clients` client processes against the trees of `replicas` replicas,
/// those in `gone` excepted (killed and not restarted: they could not write one).
/// `Ok` is the verdict's details; `Err` names the check that failed.
pub fn verify(
    out: &Path,
    clients: u32,
    replicas: u32,
    gone: &[u32],
    reads: history::Reads,
) -> Result<String, String> {
    let (covered, expected) = histories(out, clients, reads)?;
    let paths: Vec<(u32, std::path::PathBuf)> = (0..replicas)
        .filter(|r| !gone.contains(r))
        .map(|r| (r, out.join(format!("tree-g0-r{r}.snap"))))
        .collect();
    let (n, t0) = agreeing(&paths, "replica")?;
    history::check_final(&t0, &expected).map_err(|m| format!("acknowledged {m}"))?;
    Ok(format!(
        "linearizable znodes={} writes={} reads={}; trees agree replicas={n} znodes={} zxid={:#x}; created={} present; closed-sessions={} without ephemerals",
        covered.znodes,
        covered.writes,
        covered.reads,
        t0.node_count(),
        t0.last_zxid(),
        expected.created.len(),
        expected.closed.len(),
    ))
}

/// ZK-Mason's verdict: the histories as for RSMKeeper; the servers of each shard end
/// with the same tree (those in `z.gone` excepted); and the shards' trees, put together,
/// hold what was acknowledged.
pub fn verify_sharded(
    out: &Path,
    clients: u32,
    z: &crate::report::ZkChecks,
) -> Result<String, String> {
    let (covered, expected) = histories(out, clients, z.reads)?;
    let mut parts = Vec::new();
    let mut compared = 0;
    for s in 0..z.shards {
        let paths: Vec<(u32, std::path::PathBuf)> = (0..z.servers)
            .filter(|i| !z.gone.contains(&(s, *i)))
            .map(|i| (i, out.join(format!("zk-s{s}-r{i}.snap"))))
            .collect();
        let (n, t) = agreeing(&paths, &format!("shard {s} server"))?;
        compared += n;
        parts.push(t);
    }
    let whole = mason_zk::sharded::merge(&parts).map_err(|e| format!("trees {e}"))?;
    history::check_final(&whole, &expected).map_err(|m| format!("acknowledged {m}"))?;
    Ok(format!(
        "{} znodes={} writes={} reads={}; trees agree shards={} servers={compared} znodes={} zxid={:#x}; created={} present; closed-sessions={} without ephemerals",
        match z.reads {
            history::Reads::Linearizable => "linearizable",
            history::Reads::Sequential => "sequential",
        },
        covered.znodes,
        covered.writes,
        covered.reads,
        z.shards,
        whole.node_count(),
        whole.last_zxid(),
        expected.created.len(),
        expected.closed.len(),
    ))
}

/// Reads the trees at `paths` (at least two) and checks they are the same: how many,
/// and one of them.
fn agreeing(paths: &[(u32, std::path::PathBuf)], what: &str) -> Result<(usize, DataTree), String> {
    let mut trees: Vec<(u32, DataTree)> = Vec::new();
    for (r, path) in paths {
        let bytes = std::fs::read(path).map_err(|e| format!("tree {}: {e}", path.display()))?;
        let tree =
            DataTree::restore(&bytes).map_err(|e| format!("tree {}: {e}", path.display()))?;
        trees.push((*r, tree));
    }
    if trees.len() < 2 {
        return Err(format!(
            "trees only {} {what} tree(s) to compare (killed ones write none)",
            trees.len()
        ));
    }
    let (first, t0) = trees.remove(0);
    for (r, t) in &trees {
        if t.digest() != t0.digest() {
            let at = t0
                .first_difference(t)
                .unwrap_or_else(|| "(the sessions)".into());
            return Err(format!(
                "trees {what} {r} (zxid {:#x}) differs from {what} {first} (zxid {:#x}) at {at}",
                t.last_zxid(),
                t0.last_zxid()
            ));
        }
    }
    Ok((trees.len() + 1, t0))
}

/// Every client's history: what the per-znode check covered, and what the final tree
/// must hold.
fn histories(
    out: &Path,
    clients: u32,
    reads: history::Reads,
) -> Result<(history::Covered, Expected), String> {
    let mut events = Vec::new();
    let mut expected = Expected::default();
    for i in 0..clients {
        let path = out.join(format!("zk-history-{i}.bin"));
        let recs = read_records::<ZkHistoryChunk>(&path)
            .map_err(|e| format!("history {}: {e}", path.display()))?;
        if !recs.ended {
            return Err(format!(
                "history {}: the file does not end cleanly (its client did not finish)",
                path.display()
            ));
        }
        for c in recs.records {
            add_chunk(&c, &mut events, &mut expected)
                .map_err(|e| format!("history {}: {e}", path.display()))?;
        }
    }
    let covered = history::check_reads(&events, reads).map_err(|v| match reads {
        history::Reads::Linearizable => format!("linearizable {v}"),
        history::Reads::Sequential => format!("sequential {v}"),
    })?;
    if covered.writes == 0 || covered.reads + covered.writes < 2 {
        return Err(format!(
            "linearizable too little to check: {} write(s) and {} read(s) acknowledged",
            covered.writes, covered.reads
        ));
    }
    Ok((covered, expected))
}

/// One chunk's ops as events, and what it says must be in the final tree.
fn add_chunk(
    c: &ZkHistoryChunk,
    events: &mut Vec<Event>,
    expected: &mut Expected,
) -> Result<(), String> {
    let n = c.paths.len();
    let columns = [
        c.czxids.len(),
        c.writes.len(),
        c.versions.len(),
        c.sent_us.len(),
        c.answered_us.len(),
    ];
    if columns.iter().any(|len| *len != n) {
        return Err(format!(
            "a chunk of client {} has columns of different lengths",
            c.client
        ));
    }
    for i in 0..n {
        events.push(Event {
            path: c.paths[i].clone(),
            czxid: c.czxids[i],
            access: if c.writes[i] {
                Access::Write
            } else {
                Access::Read
            },
            version: c.versions[i],
            sent_us: c.sent_us[i],
            answered_us: c.answered_us[i],
            client: c.client,
        });
    }
    expected.created.extend(c.created.iter().cloned());
    expected.closed.extend(c.closed_sessions.iter().copied());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mason_common::record::RecordWriter;
    use mason_zk::{Acl, CreateMode, Ctx, Request};
    const LIN: history::Reads = history::Reads::Linearizable;

    fn write_history(dir: &Path, chunk: ZkHistoryChunk) {
        let mut w = RecordWriter::create(&dir.join("zk-history-0.bin")).expect("create");
        w.append(&chunk).expect("append");
        w.finish().expect("finish");
    }

    fn tree() -> DataTree {
        let mut t = DataTree::new();
        let create = Request::Create {
            path: "/a".into(),
            data: bytes::Bytes::new(),
            acl: Acl::open_unsafe(),
            mode: CreateMode::Persistent,
        };
        t.apply(
            Ctx {
                zxid: 1,
                time_ms: 5,
            },
            1,
            &create,
        );
        t
    }

    fn chunk(versions: [i32; 2]) -> ZkHistoryChunk {
        ZkHistoryChunk {
            client: 1,
            paths: vec!["/a".into(), "/a".into()],
            czxids: vec![1, 1],
            writes: vec![true, false],
            versions: versions.to_vec(),
            sent_us: vec![10, 30],
            answered_us: vec![20, 40],
            created: vec!["/a".into()],
            closed_sessions: Vec::new(),
        }
    }

    #[test]
    fn a_good_run_passes_and_each_check_can_fail() {
        let dir = std::env::temp_dir().join(format!("mason-zkrun-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let t = tree();
        for r in 0..3 {
            std::fs::write(dir.join(format!("tree-g0-r{r}.snap")), t.snapshot()).expect("tree");
        }
        write_history(&dir, chunk([0, 0]));
        let ok = verify(&dir, 1, 3, &[], LIN).expect("ok");
        assert!(ok.contains("znodes=1 writes=1 reads=1"), "{ok}");

        // A read after the write that misses it.
        write_history(&dir, chunk([3, 2]));
        let e = verify(&dir, 1, 3, &[], LIN).expect_err("stale read");
        assert!(e.starts_with("linearizable"), "{e}");

        // A replica whose tree went another way.
        write_history(&dir, chunk([0, 0]));
        let mut other = tree();
        other.apply(
            Ctx {
                zxid: 2,
                time_ms: 6,
            },
            1,
            &Request::SetData {
                path: "/a".into(),
                data: bytes::Bytes::from_static(b"x"),
                version: -1,
            },
        );
        std::fs::write(dir.join("tree-g0-r2.snap"), other.snapshot()).expect("tree");
        let e = verify(&dir, 1, 3, &[], LIN).expect_err("trees differ");
        assert!(
            e.starts_with("trees replica 2") && e.ends_with("at /a"),
            "{e}"
        );
        // Killed and never restarted: not compared; with one tree left, nothing to compare.
        assert!(verify(&dir, 1, 3, &[2], LIN).is_ok());
        let e = verify(&dir, 1, 3, &[1, 2], LIN).expect_err("one tree");
        assert!(e.starts_with("trees only 1"), "{e}");

        // An acknowledged create missing from the trees.
        let mut c = chunk([0, 0]);
        c.created.push("/b".into());
        write_history(&dir, c);
        let e = verify(&dir, 1, 2, &[], LIN).expect_err("missing create");
        assert!(e.starts_with("acknowledged /b"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
