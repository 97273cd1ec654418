//! What a load run measured and kept, and the files it is written to.

use super::ReadStats;
use hdrhistogram::serialization::{Serializer, V2Serializer};
use hdrhistogram::Histogram;
use mason_common::record::{AckChunk, RecordWriter, ZkHistoryChunk};
use std::path::Path;
use std::time::Duration;

pub struct LoadResult {
    /// Ops completed inside the measured window.
    pub ops: u64,
    /// Latencies (ns) of those ops.
    pub hist: Histogram<u64>,
    pub re_tx: u64,
    pub window: Duration,
    /// Every answer received (those not streamed to `acks_file`), in chunks.
    pub acks: Vec<AckChunk>,
    /// Why streaming the answers to `acks_file` failed, if it did.
    pub acks_error: Option<String>,
    /// Ops still unanswered when the drain ended.
    pub unanswered: u64,
    pub reads: ReadStats,
    /// Ops that failed (ZooKeeper runs: error replies and lost answers).
    pub errors: u64,
    /// A ZooKeeper run's history, when it has no history file.
    pub zk_history: Vec<ZkHistoryChunk>,
}

impl LoadResult {
    /// Mason's per-client line: `mrps,p50,p99,p999,p9999,num_re_tx` (Mops/s, us).
    pub fn dat_line(&self) -> String {
        dat_line(self.ops, self.window, &self.hist, self.re_tx)
    }
}

/// Formats `mrps,p50,p99,p999,p9999,num_re_tx` from counts and a histogram in ns.
pub fn dat_line(ops: u64, window: Duration, hist: &Histogram<u64>, re_tx: u64) -> String {
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    format!(
        "{:.6},{:.1},{:.1},{:.1},{:.1},{}",
        ops as f64 / window.as_secs_f64().max(1e-9) / 1e6,
        us(0.5),
        us(0.99),
        us(0.999),
        us(0.9999),
        re_tx
    )
}

pub fn new_histogram() -> Histogram<u64> {
    // 1 ns to 100 s at 3 significant digits: constant, valid bounds.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("constant histogram bounds are valid")
}

/// Writes `client-N.dat`, `client-N.hist` (HDR V2) and, unless the run streamed them,
/// `acks-N.bin` (and a ZooKeeper run's `zk-history-N.bin`) under `dir`.
pub fn write_results(dir: &Path, index: u32, r: &LoadResult) -> std::io::Result<()> {
    std::fs::write(
        dir.join(format!("client-{index}.dat")),
        format!("{}\n", r.dat_line()),
    )?;
    let mut buf = Vec::new();
    V2Serializer::new()
        .serialize(&r.hist, &mut buf)
        .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
    std::fs::write(dir.join(format!("client-{index}.hist")), buf)?;
    if r.reads.reads > 0 {
        let s = r.reads;
        std::fs::write(
            dir.join(format!("client-{index}.reads")),
            format!(
                "reads={} noops={} unwritten={} bad={}\n",
                s.reads, s.noops, s.unwritten, s.bad
            ),
        )?;
    }
    if !r.zk_history.is_empty() {
        let mut w = RecordWriter::create(&dir.join(format!("zk-history-{index}.bin")))?;
        for h in &r.zk_history {
            w.append(h)?;
        }
        w.finish()?;
    }
    if r.acks.is_empty() {
        return Ok(());
    }
    let mut w = RecordWriter::create(&dir.join(format!("acks-{index}.bin")))?;
    for a in r.acks.iter().filter(|a| !a.seqs.is_empty()) {
        w.append(a)?;
    }
    w.finish()
}
