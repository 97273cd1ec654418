//! Where a shard server keeps what it applied: each record (`ZkRecord`, encoded) in a
//! log server's segment store ([`mason_corfu_server::disk::DiskStore`], checksummed,
//! torn tails cut) at the record's first position, and the tree every so often in
//! `tree.snap` (written aside, synced, renamed), with the position it stands at.
//!
//! Recovery loads `tree.snap` (or starts from a fresh shard tree) and replays the
//! records from its position on, in order, until the first one missing.

use crate::node::{NodeAction, ZkNode};
use bytes::Bytes;
use mason_common::logmsg::LogKind;
use mason_common::zkmsg::ZkRecord;
use mason_corfu_server::storage::{Entry, Storage, StoreError};
use mason_zk::DataTree;
use prost::Message as _;
use std::io::Write;
use std::path::Path;

const SNAP_MAGIC: &[u8; 8] = b"ZKSNAP01";

/// What the store's side of an action gave back.
pub enum Done {
    Looked(u64, Vec<(u64, Option<Bytes>)>),
    Synced(u64),
    Nothing,
}

/// Carries out one of the node's store actions. An error means the server must stop.
pub fn run_store_action<S: Storage>(
    store: &mut S,
    dir: &Path,
    a: NodeAction,
) -> Result<Done, String> {
    match a {
        NodeAction::Append(records) => {
            for (pos, payload) in records {
                let e = Entry {
                    kind: LogKind::Data,
                    payload,
                };
                match store.append(pos, &e, false) {
                    Ok(()) => {}
                    // Applied once already (never in a correct run): the first stays.
                    Err(StoreError::Occupied { pos }) => {
                        tracing::error!(pos, "a record for this position is stored already")
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok(Done::Nothing)
        }
        NodeAction::Sync(gen) => {
            store.sync().map_err(|e| e.to_string())?;
            Ok(Done::Synced(gen))
        }
        NodeAction::Lookup { token, positions } => {
            let found = positions
                .into_iter()
                .map(|p| (p, store.get(p).ok().flatten().map(|e| e.payload)))
                .collect();
            Ok(Done::Looked(token, found))
        }
        NodeAction::Scan {
            token,
            from,
            budget,
        } => Ok(Done::Looked(token, scan(store, from, budget))),
        NodeAction::Snapshot { next, data } => {
            write_snapshot(dir, next, &data).map_err(|e| format!("writing tree.snap: {e}"))?;
            Ok(Done::Nothing)
        }
        NodeAction::Send { .. } | NodeAction::ToServer { .. } => Ok(Done::Nothing),
    }
}

/// Records from `from` on, in order, while they follow each other, up to `budget` bytes.
pub fn scan<S: Storage>(store: &S, from: u64, budget: usize) -> Vec<(u64, Option<Bytes>)> {
    let mut out = Vec::new();
    let (mut pos, mut bytes) = (from, 0usize);
    while bytes < budget {
        let Ok(Some(e)) = store.get(pos) else {
            break;
        };
        let Some(end) = ZkRecord::decode(&e.payload[..])
            .ok()
            .and_then(|r| r.item)
            .map(|i| i.end())
            .filter(|end| *end > pos)
        else {
            break;
        };
        bytes += e.payload.len();
        out.push((pos, Some(e.payload)));
        pos = end;
    }
    out
}

fn write_snapshot(dir: &Path, next: u64, tree: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join("tree.snap.tmp");
    let mut body = Vec::with_capacity(tree.len() + 20);
    body.extend_from_slice(SNAP_MAGIC);
    body.extend_from_slice(&next.to_le_bytes());
    body.extend_from_slice(tree);
    let crc = crc32fast::hash(&body);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&body)?;
    f.write_all(&crc.to_le_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join("tree.snap"))?;
    std::fs::File::open(dir)?.sync_all()
}

/// The tree in `tree.snap` and the position it stands at; `None` when there is none.
pub fn read_snapshot(dir: &Path) -> anyhow::Result<Option<(DataTree, u64)>> {
    let path = dir.join("tree.snap");
    let b = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    };
    if b.len() < 20 || &b[..8] != SNAP_MAGIC {
        anyhow::bail!("{}: not a shard server's tree snapshot", path.display());
    }
    let (body, crc) = b.split_at(b.len() - 4);
    let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32fast::hash(body) != crc {
        anyhow::bail!("{}: checksum mismatch", path.display());
    }
    let mut next = [0u8; 8];
    next.copy_from_slice(&body[8..16]);
    let tree = DataTree::restore(&body[16..])
        .map_err(|e| anyhow::anyhow!("{}: the tree does not restore: {e}", path.display()))?;
    Ok(Some((tree, u64::from_le_bytes(next))))
}

/// Replays the stored records from the node's position on; returns how many.
pub fn replay<S: Storage>(store: &S, node: &mut ZkNode) -> anyhow::Result<u64> {
    let mut n = 0;
    loop {
        let pos = node.next();
        let e = match store.get(pos) {
            Ok(Some(e)) => e,
            Ok(None) => return Ok(n),
            // A damaged record ends the replay there: the rest comes from the peers.
            Err(e) => {
                tracing::error!(pos, error = %e, "a damaged record; replay stops here and the server fetches the rest from its peers");
                return Ok(n);
            }
        };
        let Ok(rec) = ZkRecord::decode(&e.payload[..]) else {
            tracing::error!(pos, "an undecodable record; replay stops here and the server fetches the rest from its peers");
            return Ok(n);
        };
        if !node.replay(&rec) {
            anyhow::bail!("position {pos}: the record does not continue the tree");
        }
        n += 1;
    }
}
