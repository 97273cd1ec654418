//! Replica agreement: a deterministic 64-bit digest of the tree (every
//! node's path, data, ACL, persisted Stat and child names, then the session
//! table and, when any session moved, its owners) and a way to name the first
//! place two trees differ.
//!
//! The digest is 64-bit FNV-1a over the canonical snapshot encoding of each
//! node, so it is the same on every platform. It is computed in one pass
//! (O(size of the tree)). `last_zxid` is not part of it.

use crate::snapshot::encode_node;
use crate::tree::DataTree;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

struct Fnv64(u64);

impl Fnv64 {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }

    fn write_len(&mut self, n: usize) {
        self.write(&(n as u64).to_be_bytes());
    }
}

impl DataTree {
    /// A 64-bit digest of every node and the session table.
    pub fn digest(&self) -> u64 {
        let mut h = Fnv64(FNV_OFFSET);
        let mut buf = Vec::new();
        h.write_len(self.nodes.len());
        for (path, node) in &self.nodes {
            buf.clear();
            encode_node(&mut buf, path, node);
            h.write(&buf);
            h.write_len(node.children.len());
            for child in &node.children {
                h.write_len(child.len());
                h.write(child.as_bytes());
            }
        }
        h.write_len(self.sessions.len());
        for (id, timeout) in &self.sessions {
            h.write(&id.to_be_bytes());
            h.write(&timeout.to_be_bytes());
        }
        // Only when some session moved, so that trees without moves keep their digest.
        if !self.owners.is_empty() {
            h.write_len(self.owners.len());
            for (session, owner) in &self.owners {
                h.write(&session.to_be_bytes());
                h.write(&owner.to_be_bytes());
            }
        }
        h.0
    }

    /// The first path (in path order) whose node differs between the two
    /// trees or exists in only one; if all nodes agree, the first differing
    /// session as `session 0x<id>`, then the first session whose owner differs
    /// as `owner of session 0x<id>`; `None` if the trees agree on everything
    /// the digest covers.
    pub fn first_difference(&self, other: &DataTree) -> Option<String> {
        let mut a = self.nodes.iter().peekable();
        let mut b = other.nodes.iter().peekable();
        loop {
            match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some((pa, _)), None) => return Some((*pa).clone()),
                (None, Some((pb, _))) => return Some((*pb).clone()),
                (Some((pa, na)), Some((pb, nb))) => {
                    if pa != pb {
                        return Some(std::cmp::min(*pa, *pb).clone());
                    }
                    if na != nb {
                        return Some((*pa).clone());
                    }
                    a.next();
                    b.next();
                }
            }
        }
        let ids = self.sessions.keys().chain(other.sessions.keys());
        let mut ids: Vec<i64> = ids.copied().collect();
        ids.sort_unstable();
        ids.dedup();
        if let Some(id) = ids
            .into_iter()
            .find(|id| self.sessions.get(id) != other.sessions.get(id))
        {
            return Some(format!("session {id:#x}"));
        }
        let mut moved: Vec<i64> = self
            .owners
            .keys()
            .chain(other.owners.keys())
            .copied()
            .collect();
        moved.sort_unstable();
        moved.dedup();
        moved
            .into_iter()
            .find(|id| self.owners.get(id) != other.owners.get(id))
            .map(|id| format!("owner of session {id:#x}"))
    }
}
