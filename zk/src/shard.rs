//! Where a znode lives in ZK-Mason, and which shards an op touches.
//!
//! A path's owner shard is the 64-bit FNV-1a hash of the path, mixed by MurmurHash3's
//! 64-bit finalizer (`fmix64`), taken modulo the number of shards, after dropping a trailing sequential suffix (the ten characters `%010d`
//! gives the parent's child counter) from its last component. So a sequential create is
//! placed before its name is known (the parent's shard picks the suffix when the op
//! applies), and `/q/job-0000000007` lives where `/q/job-` hashes. A create whose prefix
//! ends in ten digits itself (`/q/0000000001`) makes nodes that live where the whole
//! prefix hashes, and touches that shard. The empty path, the root's alias, lives where
//! `/` does. Both functions are fixed by their specifications (FNV-1a: offset
//! 0xcbf29ce484222325, prime 0x100000001b3; fmix64: shifts of 33 and the constants
//! 0xff51afd7ed558ccd and 0xc4ceb9fe1a85ec53), so the placement is the same on every
//! machine and release. The finalizer is needed: FNV-1a's low bits mix poorly (its lowest
//! bit is the parity of the bytes' lowest bits), so with 2 shards every `/z{k}/n{k}`
//! landed on one shard.
//!
//! A znode's record (data, Stat, ACL, its children's names and its child counter) lives on
//! its owner shard. A create and a delete touch the owner shard and the parent's owner
//! shard (the parent's children change); reads, setData and check touch the owner only
//! (getChildren reads the children the node's own record holds); a multi touches what its
//! ops touch; opening, closing and moving a session, getEphemerals and getAllChildrenNumber touch
//! every shard (any may hold the session's ephemerals or the path's descendants).

use crate::op::Request;
use crate::path;

/// The FNV-1a hash of `bytes`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// `path` without a trailing sequential suffix: ten digits, or a minus sign and nine
/// digits (`%010d` of a counter that overflowed), at the end of the last component.
pub fn without_suffix(path: &str) -> &str {
    let b = path.as_bytes();
    let last = b.iter().rposition(|c| *c == b'/').map_or(0, |i| i + 1);
    if b.len() < last + 10 {
        return path;
    }
    let tail = &b[b.len() - 10..];
    let digits = tail[1..].iter().all(u8::is_ascii_digit);
    if digits && (tail[0].is_ascii_digit() || tail[0] == b'-') {
        &path[..path.len() - 10]
    } else {
        path
    }
}

/// MurmurHash3's 64-bit finalizer: every input bit reaches every output bit.
pub fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// The shard that owns `path`, of `shards` (at least 1). The empty path is an alias of
/// the root (ZooKeeper's node map makes it one), so it lives where `/` does.
pub fn owner(path: &str, shards: u32) -> u32 {
    let path = if path.is_empty() { "/" } else { path };
    let h = fmix64(fnv1a(without_suffix(path).as_bytes()));
    (h % u64::from(shards.max(1))) as u32
}

/// The shards `req` touches, as a bit mask (bit s = shard s; at most 64 shards).
pub fn touched(req: &Request, shards: u32) -> u64 {
    let all = if shards >= 64 {
        u64::MAX
    } else {
        (1u64 << shards.max(1)) - 1
    };
    let bit = |p: &str| 1u64 << owner(p, shards);
    match req {
        // A sequential node is named the prefix and ten digits, so it lives where that name
        // hashes; not always where the prefix does (a prefix may end in ten digits itself).
        Request::Create { path, mode, .. } if mode.is_sequential() => {
            bit(&format!("{path}0000000000")) | path::parent(path).map_or(0, bit)
        }
        Request::Create { path, .. } | Request::Delete { path, .. } => {
            bit(path) | path::parent(path).map_or(0, bit)
        }
        Request::Multi(ops) => ops.iter().fold(0, |m, op| m | touched(op, shards)),
        // Any shard may hold the session's ephemerals, or the path's descendants; every shard
        // holds the session table.
        Request::CloseSession
        | Request::CreateSession { .. }
        | Request::MoveSession { .. }
        | Request::GetEphemerals { .. }
        | Request::GetAllChildrenNumber { .. } => all,
        other => other.paths().into_iter().fold(0, |m, p| m | bit(p)) & all,
    }
}

/// ZK-Mason: the sequencer spaces `req` takes a number in, as a mask. Space 0 is the
/// clock every write touches (its number is the write's zxid); shard `s` is space `s + 1`.
pub fn spaces(req: &Request, shards: u32) -> u64 {
    let clock = u64::from(req.is_write());
    clock | touched(req, shards.min(63)) << 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn fnv1a_matches_its_specification() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn a_sequential_name_lives_where_its_prefix_does() {
        assert_eq!(without_suffix("/q/job-0000000007"), "/q/job-");
        assert_eq!(without_suffix("/q/-000000001"), "/q/");
        assert_eq!(without_suffix("/q/0000000012"), "/q/");
        assert_eq!(without_suffix("/q/job-123"), "/q/job-123");
        assert_eq!(without_suffix("/0123456789/x"), "/0123456789/x");
        assert_eq!(without_suffix("/"), "/");
        for shards in 1..9 {
            assert_eq!(owner("", shards), owner("/", shards), "the root's alias");
            assert_eq!(owner("/q/job-0000000007", shards), owner("/q/job-", shards));
            assert!(owner("/a/b", shards) < shards);
        }
    }

    #[test]
    fn fmix64_matches_murmur3() {
        // MurmurHash3's fmix64 of 0 is 0; of 1, a published value.
        assert_eq!(fmix64(0), 0);
        assert_eq!(fmix64(1), 0xb456_bcfc_34c2_cb2c);
    }

    #[test]
    fn short_similar_paths_spread_over_two_and_four_shards() {
        // The load generator's znodes: FNV-1a alone put every one on one shard of two.
        for shards in [2u32, 4, 8] {
            let mut seen = vec![0u32; shards as usize];
            for k in 0..64 {
                seen[owner(&format!("/z{}/n{k}", k % 16), shards) as usize] += 1;
            }
            let fair = 64 / shards;
            assert!(
                seen.iter().all(|n| *n >= fair / 3),
                "{shards} shards: {seen:?}"
            );
        }
    }

    #[test]
    fn paths_spread_over_the_shards() {
        let mut seen = [0u32; 4];
        for i in 0..400 {
            seen[owner(&format!("/app/node{i}"), 4) as usize] += 1;
        }
        assert!(seen.iter().all(|n| *n > 60), "{seen:?}");
    }

    #[test]
    fn creates_and_deletes_touch_the_parent_too() {
        let shards = 8;
        let (a, parent) = ("/app/x1", "/app");
        let both = 1 << owner(a, shards) | 1 << owner(parent, shards);
        let create = Request::Create {
            path: a.into(),
            data: Bytes::new(),
            acl: Vec::new(),
            mode: crate::CreateMode::Persistent,
        };
        assert_eq!(touched(&create, shards), both);
        let delete = Request::Delete {
            path: a.into(),
            version: -1,
        };
        assert_eq!(touched(&delete, shards), both);
        let set = Request::SetData {
            path: a.into(),
            data: Bytes::new(),
            version: -1,
        };
        assert_eq!(touched(&set, shards), 1 << owner(a, shards));
        let multi = Request::Multi(vec![set, create]);
        assert_eq!(touched(&multi, shards), both);
        assert_eq!(touched(&Request::CloseSession, shards), 0xff);
        let moved = Request::MoveSession {
            session: 7,
            timeout_ms: 1,
        };
        assert_eq!(touched(&moved, shards), 0xff);
        // A write, as createSession is: it takes a number in the clock (its zxid).
        let open = Request::CreateSession { timeout_ms: 1 };
        assert_eq!(spaces(&moved, shards), spaces(&open, shards));
        assert_eq!(spaces(&moved, shards), 0x1ff);
    }

    #[test]
    fn a_sequential_create_touches_where_its_node_will_live() {
        let prefix = "/q/job-0000000001";
        let node = "/q/job-00000000010000000004";
        let shards = (2..64)
            .find(|n| owner(prefix, *n) != owner(node, *n))
            .expect("some shard count tells them apart");
        let create = Request::Create {
            path: prefix.into(),
            data: Bytes::new(),
            acl: Vec::new(),
            mode: crate::CreateMode::EphemeralSequential,
        };
        let mask = touched(&create, shards);
        assert_ne!(mask & 1 << owner(node, shards), 0);
        assert_eq!(mask, 1 << owner(node, shards) | 1 << owner("/q", shards));
    }
}
