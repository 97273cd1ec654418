//! Snapshots: a versioned, length-prefixed, big-endian encoding of the
//! whole tree with a CRC-32 trailer. Restoring checks every length, the
//! checksum, path order and parent links; a truncated or garbled snapshot is
//! an error, never a panic.
//!
//! Layout (version 1): magic `MZKT`, u32 version, i64 last_zxid,
//! u32 session count then (i64 id, i32 timeout) each, u32 node count then
//! each node in path order (string path, bytes data, u32 ACL count then
//! (i32 perms, string scheme, string id) each, the 9 persisted Stat fields),
//! then u32 CRC-32 of everything before it. Strings and byte arrays are a
//! u32 length then the bytes. Child lists and ephemeral sets are rebuilt.
//!
//! Version 2 is a ZK-Mason shard's records ([`DataTree::shard_snapshot`]): the same,
//! but each node is followed by its children's names (u32 count, then strings, sorted),
//! since a shard holds a node's record without its children's; nodes need not have
//! their parents, nor the tree a root.
//!
//! Versions 3 (whole tree) and 4 (shard) are 1 and 2 with the moved sessions' owners
//! after the session table: u32 count then (i64 session, i64 owner) each, in session
//! order. A tree with no moved session is written as version 1 or 2, so older images and
//! readers are unchanged; every version restores.

use std::collections::BTreeMap;

use bytes::Bytes;
use thiserror::Error;

use crate::path::{is_valid_path, parent};
use crate::tree::{DataTree, Node};
use crate::types::{Acl, StatPersisted};

const MAGIC: &[u8; 4] = b"MZKT";
const VERSION: u32 = 1;
const SHARD_VERSION: u32 = 2;
/// Added to a version when the image carries session owners.
const WITH_OWNERS: u32 = 2;

/// Why a snapshot could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SnapshotError {
    #[error("snapshot is truncated")]
    Truncated,
    #[error("not a snapshot (bad magic)")]
    BadMagic,
    #[error("unsupported snapshot version {0}")]
    UnsupportedVersion(u32),
    #[error("snapshot checksum mismatch")]
    BadChecksum,
    #[error("snapshot has {0} bytes after its end")]
    TrailingBytes(usize),
    #[error("invalid snapshot: {0}")]
    Invalid(String),
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(out, u32::try_from(b.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(b);
}

fn put_count(out: &mut Vec<u8>, n: usize) {
    put_u32(out, u32::try_from(n).unwrap_or(u32::MAX));
}

/// The canonical encoding of one node (also what the digest hashes).
pub(crate) fn encode_node(out: &mut Vec<u8>, path: &str, node: &Node) {
    put_bytes(out, path.as_bytes());
    put_bytes(out, &node.data);
    put_count(out, node.acl.len());
    for a in &node.acl {
        put_i32(out, a.perms);
        put_bytes(out, a.scheme.as_bytes());
        put_bytes(out, a.id.as_bytes());
    }
    let s = &node.stat;
    put_i64(out, s.czxid);
    put_i64(out, s.mzxid);
    put_i64(out, s.ctime);
    put_i64(out, s.mtime);
    put_i32(out, s.version);
    put_i32(out, s.cversion);
    put_i32(out, s.aversion);
    put_i64(out, s.ephemeral_owner);
    put_i64(out, s.pzxid);
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        let end = self.pos.checked_add(n).ok_or(SnapshotError::Truncated)?;
        let out = self
            .buf
            .get(self.pos..end)
            .ok_or(SnapshotError::Truncated)?;
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32, SnapshotError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, SnapshotError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, SnapshotError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn bytes(&mut self) -> Result<&'a [u8], SnapshotError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn string(&mut self) -> Result<String, SnapshotError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| invalid("string is not UTF-8"))
    }
}

fn invalid(why: &str) -> SnapshotError {
    SnapshotError::Invalid(why.to_string())
}

impl DataTree {
    /// Encode the whole tree.
    pub fn snapshot(&self) -> Vec<u8> {
        self.encode(VERSION)
    }

    /// Encode a ZK-Mason shard's records (version 2: child names kept with each node).
    pub fn shard_snapshot(&self) -> Vec<u8> {
        self.encode(SHARD_VERSION)
    }

    fn encode(&self, base: u32) -> Vec<u8> {
        let owners = !self.owners.is_empty();
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        put_u32(&mut out, if owners { base + WITH_OWNERS } else { base });
        put_i64(&mut out, self.last_zxid);
        put_count(&mut out, self.sessions.len());
        for (id, timeout) in &self.sessions {
            put_i64(&mut out, *id);
            put_i32(&mut out, *timeout);
        }
        if owners {
            put_count(&mut out, self.owners.len());
            for (session, owner) in &self.owners {
                put_i64(&mut out, *session);
                put_i64(&mut out, *owner);
            }
        }
        put_count(&mut out, self.nodes.len());
        for (path, node) in &self.nodes {
            encode_node(&mut out, path, node);
            if base == SHARD_VERSION {
                put_count(&mut out, node.children.len());
                for c in &node.children {
                    put_bytes(&mut out, c.as_bytes());
                }
            }
        }
        let crc = crc32fast::hash(&out);
        put_u32(&mut out, crc);
        out
    }

    /// Rebuild a tree from `snapshot()`'s output.
    pub fn restore(buf: &[u8]) -> Result<DataTree, SnapshotError> {
        if buf.len() < MAGIC.len() + 4 + 4 {
            return Err(SnapshotError::Truncated);
        }
        if &buf[..4] != MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let (body, trailer) = buf.split_at(buf.len() - 4);
        let mut r = Reader { buf: body, pos: 4 };
        let version = r.u32()?;
        if !(VERSION..=SHARD_VERSION + WITH_OWNERS).contains(&version) {
            return Err(SnapshotError::UnsupportedVersion(version));
        }
        let mut crc = [0u8; 4];
        crc.copy_from_slice(trailer);
        if crc32fast::hash(body) != u32::from_be_bytes(crc) {
            return Err(SnapshotError::BadChecksum);
        }
        let shard = version == SHARD_VERSION || version == SHARD_VERSION + WITH_OWNERS;
        let tree = read_tree(&mut r, shard, version > SHARD_VERSION)?;
        if r.pos != body.len() {
            return Err(SnapshotError::TrailingBytes(body.len() - r.pos));
        }
        Ok(tree)
    }
}

fn read_tree(r: &mut Reader<'_>, shard: bool, owned: bool) -> Result<DataTree, SnapshotError> {
    let last_zxid = r.i64()?;
    let mut sessions = BTreeMap::new();
    for _ in 0..r.u32()? {
        let id = r.i64()?;
        let timeout = r.i32()?;
        if sessions.insert(id, timeout).is_some() {
            return Err(invalid("duplicate session"));
        }
    }
    let mut owners = BTreeMap::new();
    let mut aliases = BTreeMap::new();
    if owned {
        let mut previous: Option<i64> = None;
        for _ in 0..r.u32()? {
            let session = r.i64()?;
            let owner = r.i64()?;
            if previous.is_some_and(|p| p >= session) {
                return Err(invalid("session owners out of order"));
            }
            if !sessions.contains_key(&session) || owner == session {
                return Err(invalid("an owner of a session not live, or of itself"));
            }
            if aliases.insert(owner, session).is_some() {
                return Err(invalid("an owner of two sessions"));
            }
            owners.insert(session, owner);
            previous = Some(session);
        }
    }
    let mut tree = DataTree {
        nodes: BTreeMap::new(),
        ephemerals: BTreeMap::new(),
        sessions,
        owners,
        aliases,
        last_zxid,
    };
    let count = r.u32()?;
    let mut previous: Option<String> = None;
    for _ in 0..count {
        let (path, mut node) = read_node(r)?;
        if !is_valid_path(&path) {
            return Err(invalid("bad path"));
        }
        if previous.as_ref().is_some_and(|p| *p >= path) {
            return Err(invalid("paths out of order"));
        }
        if shard {
            for _ in 0..r.u32()? {
                let name = r.string()?;
                if name.is_empty() || name.contains('/') {
                    return Err(invalid("bad child name"));
                }
                node.children.insert(name);
            }
        }
        match parent(&path) {
            _ if shard => {}
            None => {}
            Some(parent_path) => {
                let name = crate::path::name(&path).to_string();
                let parent_node = tree
                    .nodes
                    .get_mut(parent_path)
                    .ok_or_else(|| invalid("node without parent"))?;
                parent_node.children.insert(name);
            }
        }
        let owner = node.stat.ephemeral_owner;
        if owner != 0 {
            tree.ephemerals
                .entry(owner)
                .or_default()
                .insert(path.clone());
        }
        tree.nodes.insert(path.clone(), node);
        previous = Some(path);
    }
    if !shard && !tree.nodes.contains_key("/") {
        return Err(invalid("no root"));
    }
    Ok(tree)
}

fn read_node(r: &mut Reader<'_>) -> Result<(String, Node), SnapshotError> {
    let path = r.string()?;
    let data = Bytes::copy_from_slice(r.bytes()?);
    let mut acl = Vec::new();
    for _ in 0..r.u32()? {
        let perms = r.i32()?;
        let scheme = r.string()?;
        let id = r.string()?;
        acl.push(Acl { perms, scheme, id });
    }
    let stat = StatPersisted {
        czxid: r.i64()?,
        mzxid: r.i64()?,
        ctime: r.i64()?,
        mtime: r.i64()?,
        version: r.i32()?,
        cversion: r.i32()?,
        aversion: r.i32()?,
        ephemeral_owner: r.i64()?,
        pzxid: r.i64()?,
    };
    Ok((path, Node::new(data, acl, stat)))
}
