//! Results of a run: per-client lines, the aggregate over merged histograms, and the
//! verification of every bound and acknowledged number.

use anyhow::Context;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use mason_common::record::{read_records, AckChunk, BoundBatch, GrantChunk};
use mason_common::verify::{agree, check_fenced, Checker, Report, Violation};
use std::path::Path;

/// `aggregate-throughput 50 99 99.9 99.99` values: summed Mops/s and percentiles (us) of
/// the merged histograms.
pub fn aggregate(dir: &Path, clients: u32) -> anyhow::Result<(Vec<String>, String)> {
    let mut lines = Vec::new();
    let mut mops = 0.0;
    let mut merged: Option<Histogram<u64>> = None;
    for i in 0..clients {
        let dat = std::fs::read_to_string(dir.join(format!("client-{i}.dat")))
            .with_context(|| format!("client {i} left no client-{i}.dat"))?;
        let line = dat.trim().to_string();
        mops += line
            .split(',')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .with_context(|| format!("client-{i}.dat: bad line '{line}'"))?;
        lines.push(line);
        let bytes = std::fs::read(dir.join(format!("client-{i}.hist")))?;
        let h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut &bytes[..])
            .map_err(|e| anyhow::anyhow!("client-{i}.hist: {e:?}"))?;
        match merged.as_mut() {
            Some(m) => m
                .add(&h)
                .map_err(|e| anyhow::anyhow!("merging histograms: {e:?}"))?,
            None => merged = Some(h),
        }
    }
    let h = merged.context("no clients")?;
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let agg = format!(
        "{:.6} {:.1} {:.1} {:.1} {:.1}",
        mops,
        us(0.5),
        us(0.99),
        us(0.999),
        us(0.9999)
    );
    Ok((lines, agg))
}

/// Where a run's bindings are recorded.
pub enum Bound {
    /// Proxy groups: every replica's `bound-g<G>-r<R>.bin`. Group g is hosted by triple
    /// g % triples; the (triple, replica) processes in `unfinished` were killed and never
    /// restarted, so their records may lack an end.
    Groups {
        groups: u32,
        replicas: u32,
        triples: u32,
        unfinished: Vec<(u32, u32)>,
    },
    /// The direct baseline (and Corfu's tokens): the sequencer's own record of what it
    /// granted to whom, `grants-0.bin`.
    Sequencer,
}

fn records_violation(detail: String) -> Violation {
    Violation {
        invariant: "Records",
        detail,
        op: None,
    }
}

/// Checks every invariant over the records a run left in `dir`: what the clients say
/// they were told, against what the replicas (or the sequencer) recorded they bound.
pub fn verify(
    dir: &Path,
    spaces: u32,
    bound: &Bound,
    clients: u32,
) -> anyhow::Result<Result<Report, Violation>> {
    let mut checker = Checker::new(spaces);
    for i in 0..clients {
        let acks = read_records::<AckChunk>(&dir.join(format!("acks-{i}.bin")))
            .with_context(|| format!("reading acks-{i}.bin"))?;
        anyhow::ensure!(!acks.torn, "acks-{i}.bin is torn");
        for chunk in &acks.records {
            let ok = chunk.for_each(|seq, mask, nums| checker.ack(chunk.session, seq, mask, nums));
            anyhow::ensure!(ok, "malformed ack chunk of session {}", chunk.session);
        }
    }
    match bound {
        Bound::Sequencer => {
            let p = dir.join("grants-0.bin");
            let grants = read_records::<GrantChunk>(&p)
                .with_context(|| format!("reading {}", p.display()))?;
            if !grants.ended {
                return Ok(Err(records_violation(format!(
                    "{} has no end marker: the sequencer did not stop cleanly, and grants at its end may be missing",
                    p.display()
                ))));
            }
            let mut malformed = None;
            for g in &grants.records {
                let ok = g.for_each(|session, seq, mask, nums| {
                    if let Err(v) = checker.bind_op(session, seq, mask, nums) {
                        malformed.get_or_insert(v);
                    }
                });
                anyhow::ensure!(ok, "malformed grant chunk in {}", p.display());
            }
            if let Some(v) = malformed {
                return Ok(Err(v));
            }
        }
        Bound::Groups {
            groups,
            replicas,
            triples,
            unfinished,
        } => {
            for g in 0..*groups {
                let triple = g % (*triples).max(1);
                let mut logs = Vec::new();
                let mut complete = 0;
                for r in 0..*replicas {
                    let p = dir.join(format!("bound-g{g}-r{r}.bin"));
                    let recs = read_records::<BoundBatch>(&p)
                        .with_context(|| format!("reading {}", p.display()))?;
                    if recs.ended {
                        complete += 1;
                    } else if !unfinished.contains(&(triple, r)) {
                        return Ok(Err(records_violation(format!(
                            "{} has no end marker: replica {r} of group {g} did not stop cleanly, and records at its end may be lost",
                            p.display()
                        ))));
                    }
                    logs.push(recs.records);
                }
                if complete == 0 {
                    return Ok(Err(records_violation(format!(
                        "no replica of group {g} ended its records: what the group bound last cannot be known"
                    ))));
                }
                let log = match agree(g, logs).and_then(|l| check_fenced(g, &l).map(|_| l)) {
                    Ok(l) => l,
                    Err(v) => return Ok(Err(v)),
                };
                for b in &log {
                    if let Err(v) = checker.bind_batch(b) {
                        return Ok(Err(v));
                    }
                }
            }
            checker.fenced_checked();
        }
    }
    Ok(checker.finish())
}

/// What a run's summary covers.
pub struct Checks {
    pub spaces: u32,
    /// Groups and replicas per group, when the run had proxies.
    pub groups: Option<(u32, u32)>,
    /// Proxy processes (triple, replica) that were killed and not restarted.
    pub killed_replicas: Vec<(u32, u32)>,
    /// Triples of proxy processes.
    pub triples: u32,
    pub clients: u32,
    pub verify: bool,
    /// The shared log's check, made while its servers still ran.
    pub log_verdict: Option<Result<String, String>>,
    /// Report the recovery times and draw the recovery plot.
    pub recovery: bool,
    /// A ZooKeeper run: its verdict is `zkrun::verify`'s, not the numbers'.
    pub zk: Option<ZkChecks>,
}

/// What a ZooKeeper run's verdict compares.
pub struct ZkChecks {
    /// ZK-Mason's shards (0: RSMKeeper, whose group replicas hold the trees).
    pub shards: u32,
    /// Servers per shard.
    pub servers: u32,
    /// Shard servers (shard, index) killed and not restarted.
    pub gone: Vec<(u32, u32)>,
    /// What reads promise (sequential: ZK-Mason's local reads).
    pub reads: mason_zk::history::Reads,
}

fn z_reads(c: &Checks) -> mason_zk::history::Reads {
    c.zk.as_ref()
        .map_or(mason_zk::history::Reads::Linearizable, |z| z.reads)
}

/// The line of figures after a summary's `aggregate-throughput` header.
pub fn aggregate_line(summary: &str) -> Option<&str> {
    let mut lines = summary.lines();
    lines.find(|l| l.starts_with("aggregate-throughput"))?;
    lines.next()
}

/// The aggregate throughput in a summary's text, in ops/s (its aggregate line starts with
/// it in millions).
pub fn ops_per_sec(summary: &str) -> Option<f64> {
    let mops: f64 = aggregate_line(summary)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(mops * 1e6)
}

/// The run's summary (per-client lines, the aggregate, the verdict, and the recovery
/// times and plot), printed and written to `<out>/summary.txt`, and its exit code (1 when
/// verification fails).
pub fn summary(out: &Path, c: Checks) -> anyhow::Result<(String, i32)> {
    let (lines, agg) = aggregate(out, c.clients)?;
    let mut text = String::new();
    for l in &lines {
        text.push_str(l);
        text.push('\n');
    }
    text.push_str("aggregate-throughput 50 99 99.9 99.99\n");
    text.push_str(&agg);
    text.push('\n');
    let (verdict, code) = if !c.verify {
        ("verify: skipped (--verify off)".to_string(), 0)
    } else {
        let bound = match c.groups {
            Some((groups, replicas)) => Bound::Groups {
                groups,
                replicas,
                triples: c.triples,
                unfinished: c.killed_replicas.clone(),
            },
            None => Bound::Sequencer,
        };
        let seq = if let Some(z) = c.zk.as_ref().filter(|z| z.shards > 0) {
            crate::zkrun::verify_sharded(out, c.clients, z)
        } else if c.zk.is_some() {
            let (replicas, gone) = match &c.groups {
                Some((_, replicas)) => (
                    *replicas,
                    c.killed_replicas
                        .iter()
                        .map(|(_, r)| *r)
                        .collect::<Vec<_>>(),
                ),
                None => (0, Vec::new()),
            };
            crate::zkrun::verify(out, c.clients, replicas, &gone, z_reads(&c))
        } else {
            verify(out, c.spaces, &bound, c.clients)?
                .map(|r| r.to_string())
                .map_err(|v| v.to_string())
        };
        match (seq, c.log_verdict) {
            (Err(v), _) => (format!("verify: FAIL {v}"), 1),
            (_, Some(Err(v))) => (format!("verify: FAIL {v}"), 1),
            (Ok(r), Some(Ok(l))) => (format!("verify: ok {r}; {l}"), 0),
            (Ok(r), None) => (format!("verify: ok {r}"), 0),
        }
    };
    text.push_str(&verdict);
    text.push('\n');
    if c.recovery {
        match mason_plot::read_record(out) {
            Ok(rec) => {
                for line in mason_plot::summary_lines(&mason_plot::recovery(&rec)) {
                    text.push_str(&line);
                    text.push('\n');
                }
                match mason_plot::plot_recovery(out) {
                    Ok(paths) => {
                        for p in paths {
                            text.push_str(&format!("plot: {}\n", p.display()));
                        }
                    }
                    Err(e) => text.push_str(&format!("plot: not drawn: {e}\n")),
                }
            }
            Err(e) => text.push_str(&format!("recovery: no record: {e}\n")),
        }
    }
    print!("{text}");
    std::fs::write(out.join("summary.txt"), &text)?;
    Ok((text, code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mason_common::record::RecordWriter;
    use mason_common::types::SpaceMask;

    fn batch(id: u64, base: u64, ops: &[(u64, u64)]) -> BoundBatch {
        BoundBatch {
            group: 0,
            batch_id: id,
            epoch: 1,
            space_mask: 1,
            bases: vec![base],
            counts: vec![ops.len() as u32],
            op_sessions: ops.iter().map(|o| o.0).collect(),
            op_seqs: ops.iter().map(|o| o.1).collect(),
            op_masks: vec![1; ops.len()],
            index: id,
        }
    }

    /// A run of one group: every replica bound ops 1 and 2 of session 9 (numbers 0 and 1);
    /// `ended[r]` says whether replica r ended its record cleanly.
    fn run(dir: &Path, ended: [bool; 3]) {
        for (r, end) in ended.iter().enumerate() {
            let mut w = RecordWriter::create(&dir.join(format!("bound-g0-r{r}.bin"))).unwrap();
            w.append(&batch(1, 0, &[(9, 1), (9, 2)])).unwrap();
            if *end {
                w.finish().unwrap();
            } else {
                w.flush().unwrap();
            }
        }
        let mut a = AckChunk {
            session: 9,
            ..AckChunk::default()
        };
        a.push(1, SpaceMask(1), &[0]);
        a.push(2, SpaceMask(1), &[1]);
        let mut w = RecordWriter::create(&dir.join("acks-0.bin")).unwrap();
        w.append(&a).unwrap();
        w.finish().unwrap();
    }

    fn groups(unfinished: Vec<(u32, u32)>) -> Bound {
        Bound::Groups {
            groups: 1,
            replicas: 3,
            triples: 1,
            unfinished,
        }
    }

    /// A record without its end marker is reported, unless its replica was killed (and
    /// then another replica's complete record must exist).
    #[test]
    fn records_that_did_not_end_cleanly_are_reported() {
        let d = tempfile::tempdir().unwrap();
        run(d.path(), [true, true, true]);
        let r = verify(d.path(), 1, &groups(vec![]), 1).unwrap().unwrap();
        assert!(r.fenced && r.acked == 2);
        run(d.path(), [true, true, false]);
        let v = verify(d.path(), 1, &groups(vec![]), 1)
            .unwrap()
            .unwrap_err();
        assert_eq!(v.invariant, "Records");
        assert!(v.detail.contains("bound-g0-r2.bin"), "{}", v.detail);
        assert!(verify(d.path(), 1, &groups(vec![(0, 2)]), 1)
            .unwrap()
            .is_ok());
        run(d.path(), [false, false, false]);
        let all = vec![(0, 0), (0, 1), (0, 2)];
        let v = verify(d.path(), 1, &groups(all), 1).unwrap().unwrap_err();
        assert_eq!(v.invariant, "Records");
    }

    /// The direct baseline is checked against the sequencer's own grants: an answer it
    /// never granted is caught, and a grant record without its end is reported.
    #[test]
    fn the_direct_baseline_is_checked_against_the_sequencers_grants() {
        let d = tempfile::tempdir().unwrap();
        run(d.path(), [true; 3]);
        let grants = |ended: bool, numbers: [u64; 2]| {
            let mut g = GrantChunk::default();
            g.push(9, 1, SpaceMask(1), &[numbers[0]]);
            g.push(9, 2, SpaceMask(1), &[numbers[1]]);
            let mut w = RecordWriter::create(&d.path().join("grants-0.bin")).unwrap();
            w.append(&g).unwrap();
            if ended {
                w.finish().unwrap();
            } else {
                w.flush().unwrap();
            }
        };
        grants(true, [0, 1]);
        let r = verify(d.path(), 1, &Bound::Sequencer, 1).unwrap().unwrap();
        assert!(!r.fenced, "no epochs in the direct baseline");
        grants(true, [0, 2]);
        let v = verify(d.path(), 1, &Bound::Sequencer, 1)
            .unwrap()
            .unwrap_err();
        assert_eq!(v.invariant, "Stable");
        grants(false, [0, 1]);
        let v = verify(d.path(), 1, &Bound::Sequencer, 1)
            .unwrap()
            .unwrap_err();
        assert_eq!(v.invariant, "Records");
    }
}
