//! The shared-log half of `mason local` (`--system corfu|corfumason`): the log servers'
//! command lines (positions striped over shards, each shard a chain of R servers), and the
//! log's verification after the run, while the servers still run:
//! - **Log**: every acknowledged append is at its position, with its own payload (the
//!   payload names the client and op), in every member of its chain;
//! - **Unique**: no two acknowledged appends share a position;
//! - **LogAgree**: the members of each chain hold the same entry at every position (no
//!   position ever holds two values);
//! - **NoHole** (CorfuMason): every position below the tail is written, and the log is
//!   exactly what the groups bound: their ops' payloads at their numbers, junk at every
//!   noop. Corfu's holes (tokens taken, never written) are filled with junk here, as a
//!   reader would, and counted.

use crate::args::System;
use crate::roles::Shape;
use anyhow::Context;
use mason_client::log::{unstamp, AppendVia, LogClient, LogClientConfig, LogEntry};
use mason_common::logmsg::shard_of;
use mason_common::record::{read_records, AckChunk, BoundBatch};
use mason_common::transport::Tcp;
use mason_common::types::SpaceMask;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// The log servers of a run: `addrs[i]` is member `i % R` of shard `i / R`'s chain.
pub struct LogLayout {
    pub addrs: Vec<SocketAddr>,
    pub replication: u32,
}

impl LogLayout {
    pub fn shards(&self) -> u32 {
        self.addrs.len() as u32 / self.replication
    }

    pub fn chains(&self) -> Vec<Vec<SocketAddr>> {
        self.addrs
            .chunks(self.replication as usize)
            .map(<[SocketAddr]>::to_vec)
            .collect()
    }

    /// The `--log-chains` flag value.
    pub fn chains_arg(&self) -> String {
        self.chains()
            .iter()
            .map(|c| {
                c.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect::<Vec<_>>()
            .join(";")
    }

    /// `mason corfu-server` flags for server `i`.
    /// `data` is the directory under which it keeps `log-<i>/`.
    pub fn server_args(
        &self,
        i: usize,
        data: &str,
        fsync: bool,
        threads: u32,
        key_file: &str,
    ) -> Vec<String> {
        let r = self.replication as usize;
        let (shard, member) = (i / r, i % r);
        let mut v: Vec<String> = vec![
            "corfu-server".into(),
            "--listen".into(),
            self.addrs[i].to_string(),
            "--dir".into(),
            format!("{data}/log-{i}"),
            "--shard".into(),
            shard.to_string(),
            "--shards".into(),
            self.shards().to_string(),
            "--chain-index".into(),
            member.to_string(),
            "--chain-len".into(),
            r.to_string(),
            "--fsync".into(),
            if fsync { "on" } else { "off" }.into(),
            "--threads".into(),
            threads.to_string(),
            "--cluster-key-file".into(),
            key_file.into(),
        ];
        if member + 1 < r {
            v.extend(["--successor".into(), self.addrs[i + 1].to_string()]);
        }
        v
    }
}

/// An op: (session, its op seq).
type Op = (u64, u64);
/// A check's outcome: its findings, or the violation; `Err` of the outer result is a
/// failure to check at all (a record that cannot be read).
type Checked<T> = anyhow::Result<Result<T, String>>;

/// What the acknowledged appends say: position -> (session, op seq).
fn acked(dir: &Path, clients: u32) -> Checked<HashMap<u64, Op>> {
    let mut at = HashMap::new();
    for i in 0..clients {
        let p = dir.join(format!("acks-{i}.bin"));
        let chunks = read_records::<AckChunk>(&p)
            .with_context(|| format!("reading {}", p.display()))?
            .records;
        for c in chunks {
            let mut dup = None;
            c.for_each(|seq, _mask, nums| {
                if let Some(&pos) = nums.first() {
                    if let Some(prev) = at.insert(pos, (c.session, seq)) {
                        dup.get_or_insert((pos, prev, (c.session, seq)));
                    }
                }
            });
            if let Some((pos, a, b)) = dup {
                return Ok(Err(format!(
                    "Unique: position {pos} acknowledged to two appends: session {} op {} and session {} op {}",
                    a.0, a.1, b.0, b.1
                )));
            }
        }
    }
    Ok(Ok(at))
}

/// What the groups bound in space 0: position -> Some((client, seq)) for an op, None for
/// a noop.
fn bound(dir: &Path, groups: u32) -> Checked<HashMap<u64, Option<Op>>> {
    let mut at = HashMap::new();
    for g in 0..groups {
        let mut logs = Vec::new();
        for r in 0..3 {
            let p = dir.join(format!("bound-g{g}-r{r}.bin"));
            let log = read_records::<BoundBatch>(&p)
                .with_context(|| format!("reading {}", p.display()))?
                .records;
            logs.push(log);
        }
        let log = match mason_common::verify::agree(g, logs) {
            Ok(l) => l,
            Err(v) => return Ok(Err(v.to_string())),
        };
        for b in &log {
            let m = SpaceMask(b.space_mask);
            let Some(k) = m.index_of(0) else { continue };
            let (Some(&base), Some(&count)) = (b.bases.get(k), b.counts.get(k)) else {
                continue;
            };
            let count = u64::from(count);
            for p in base..base + count {
                at.insert(p, None);
            }
            let ops = match mason_common::verify::op_numbers(b) {
                Ok(ops) => ops,
                Err(e) => return Ok(Err(format!("Unique: group {g}: {e}"))),
            };
            for (c, s, om, nums) in ops {
                if om.index_of(0) == Some(0) {
                    if let Some(&p) = nums.first() {
                        at.insert(p, Some((c, s)));
                    }
                }
            }
        }
    }
    Ok(Ok(at))
}

/// Checks the log after a run (the servers must still be up). `Ok(Ok(summary))`, or
/// `Ok(Err(violation))`.
pub fn check(
    dir: &Path,
    a: &Shape,
    clients: u32,
    layout: &LogLayout,
    payload: usize,
) -> Checked<String> {
    let at = match acked(dir, clients)? {
        Ok(m) => m,
        Err(v) => return Ok(Err(v)),
    };
    let expect = match a.system {
        System::Corfumason => match bound(dir, a.groups)? {
            Ok(m) => Some(m),
            Err(v) => return Ok(Err(v)),
        },
        _ => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let key = Arc::new(mason_common::auth::ClusterKey::from_file(&a.key_file)?);
        let client = Arc::new(LogClient::new(
            Arc::new(Tcp),
            LogClientConfig::new(u64::MAX, layout.chains(), AppendVia::None, key),
        )?);
        let tail = client.tail().await?;
        let shards = layout.shards();
        let mut holes = 0u64;
        let (mut data, mut noops) = (0u64, 0u64);
        let size = payload.max(mason_client::log::STAMP_BYTES);
        for s in 0..shards {
            let positions: Vec<u64> = (0..tail).filter(|p| shard_of(*p, shards) == s).collect();
            let mut copies = Vec::new();
            for m in 0..layout.replication as usize {
                let got = client.read_member(s, m, &positions).await?;
                copies.push(got);
            }
            for (k, &pos) in positions.iter().enumerate() {
                let mut first: Option<Option<LogEntry>> = None;
                for (m, c) in copies.iter().enumerate() {
                    let e = match c.get(k) {
                        Some((p, Ok(e))) if *p == pos => e.clone(),
                        Some((_, Err(st))) => {
                            return Ok(Err(format!(
                                "LogAgree: position {pos}: member {m} of shard {s} answers {st:?}"
                            )))
                        }
                        _ => return Ok(Err(format!("LogAgree: position {pos}: member {m} of shard {s} gave no answer"))),
                    };
                    match &first {
                        None => first = Some(e),
                        Some(f) if *f != e => {
                            let show = |x: &Option<LogEntry>| x.as_ref().map_or("nothing".into(), describe);
                            return Ok(Err(format!(
                                "LogAgree: position {pos}: the members of shard {s}'s chain differ (member 0 holds {}, member {m} holds {})",
                                show(f),
                                show(&e)
                            )));
                        }
                        Some(_) => {}
                    }
                }
                let entry = match first.flatten() {
                    Some(e) => e,
                    None if a.system == System::Corfu => {
                        // A token taken and never written: fill it, as a reader would.
                        holes += 1;
                        client.fill(pos).await?
                    }
                    None => {
                        return Ok(Err(format!(
                            "NoHole: position {pos} (below the tail {tail}) is not written"
                        )))
                    }
                };
                if entry.noop {
                    noops += 1;
                } else {
                    data += 1;
                }
                if let Some(want) = at.get(&pos) {
                    let ok = !entry.noop
                        && entry.payload.len() == size
                        && unstamp(&entry.payload) == Some(*want);
                    if !ok {
                        return Ok(Err(format!(
                            "Log: position {pos} was acknowledged to client {} op {} but holds {}",
                            want.0,
                            want.1,
                            describe(&entry)
                        )));
                    }
                }
                if let Some(expect) = &expect {
                    let fine = match expect.get(&pos) {
                        Some(Some(op)) => !entry.noop && unstamp(&entry.payload) == Some(*op),
                        Some(None) => entry.noop,
                        None => false,
                    };
                    if !fine {
                        return Ok(Err(format!(
                            "NoHole: position {pos} holds {} but the groups bound {:?}",
                            describe(&entry),
                            expect.get(&pos)
                        )));
                    }
                }
            }
        }
        if let Some((pos, _)) = at.iter().find(|(p, _)| **p >= tail) {
            return Ok(Err(format!(
                "Log: position {pos} was acknowledged but is beyond the log's tail {tail}"
            )));
        }
        Ok(Ok(format!(
            "log: tail={tail} data={data} noops={noops} holes_filled={holes} acked={}",
            at.len()
        )))
    })
}

fn describe(e: &LogEntry) -> String {
    if e.noop {
        return "junk".into();
    }
    match unstamp(&e.payload) {
        Some((c, s)) => format!("client {c} op {s} ({} bytes)", e.payload.len()),
        None => format!("{} unstamped bytes", e.payload.len()),
    }
}

/// The read workload's findings per client process (`client-N.reads`): a data entry that
/// is not a whole stamped payload fails the run.
pub fn check_reads(dir: &Path, clients: u32) -> Result<String, String> {
    let (mut reads, mut noops, mut unwritten, mut bad) = (0u64, 0u64, 0u64, 0u64);
    for i in 0..clients {
        let p = dir.join(format!("client-{i}.reads"));
        let Ok(text) = std::fs::read_to_string(&p) else {
            return Err(format!("reads: {} is missing", p.display()));
        };
        for kv in text.split_whitespace() {
            let (k, v) = kv.split_once('=').unwrap_or((kv, "0"));
            let v: u64 = v.parse().unwrap_or(0);
            match k {
                "reads" => reads += v,
                "noops" => noops += v,
                "unwritten" => unwritten += v,
                "bad" => bad += v,
                _ => {}
            }
        }
    }
    if bad > 0 {
        return Err(format!(
            "Log: {bad} of {reads} reads returned a damaged payload"
        ));
    }
    Ok(format!(
        "reads: {reads} checked, noops={noops} unwritten={unwritten} bad=0"
    ))
}
