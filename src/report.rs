//! Results of a run: per-client lines, the aggregate over merged histograms, and the
//! verification of every bound and acknowledged number.

use crate::args::System;
use anyhow::Context;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use mason_common::record::{read_records, AckChunk, BoundBatch};
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

/// Checks every invariant over the records a run left in `dir`.
pub fn verify(
    dir: &Path,
    spaces: u32,
    groups: Option<(u32, u32)>,
    clients: u32,
) -> anyhow::Result<Result<Report, Violation>> {
    let mut checker = Checker::new(spaces);
    let mut acks = Vec::new();
    for i in 0..clients {
        let (chunks, torn) = read_records::<AckChunk>(&dir.join(format!("acks-{i}.bin")))
            .with_context(|| format!("reading acks-{i}.bin"))?;
        anyhow::ensure!(!torn, "acks-{i}.bin is torn");
        acks.extend(chunks);
    }
    let mut malformed = None;
    for chunk in &acks {
        let ok = chunk.for_each(|seq, mask, nums| {
            if groups.is_none() {
                if let Err(v) = checker.bind_op(chunk.client_id, seq, mask, nums) {
                    malformed.get_or_insert(v);
                }
            }
            checker.ack(chunk.client_id, seq, mask, nums);
        });
        anyhow::ensure!(ok, "malformed ack chunk of client {}", chunk.client_id);
    }
    if let Some(v) = malformed {
        return Ok(Err(v));
    }
    if let Some((groups, replicas)) = groups {
        for g in 0..groups {
            let mut logs = Vec::new();
            for r in 0..replicas {
                let p = dir.join(format!("bound-g{g}-r{r}.bin"));
                let (log, _torn) = read_records::<BoundBatch>(&p)
                    .with_context(|| format!("reading {}", p.display()))?;
                logs.push(log);
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
    }
    Ok(checker.finish())
}

/// What a run's summary covers.
pub struct Checks {
    pub system: System,
    pub spaces: u32,
    /// Groups and replicas per group, when the run had proxies.
    pub groups: Option<(u32, u32)>,
    pub clients: u32,
    pub verify: bool,
    /// The shared log's check, made while its servers still ran.
    pub log_verdict: Option<Result<String, String>>,
    /// Report the recovery times and draw the recovery plot.
    pub recovery: bool,
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
        let seq = if c.system == System::Corfu {
            // Corfu's tokens are not contiguous (a writer that loses its position to a
            // reader's fill takes another): only the log is checked.
            None
        } else {
            Some(verify(out, c.spaces, c.groups, c.clients)?)
        };
        match (seq, c.log_verdict) {
            (Some(Err(v)), _) => (format!("verify: FAIL {v}"), 1),
            (_, Some(Err(v))) => (format!("verify: FAIL {v}"), 1),
            (Some(Ok(r)), Some(Ok(l))) => (format!("verify: ok {r}; {l}"), 0),
            (Some(Ok(r)), None) => (format!("verify: ok {r}"), 0),
            (None, Some(Ok(l))) => (format!("verify: ok unique log; {l}"), 0),
            (None, None) => ("verify: nothing to check".to_string(), 0),
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
