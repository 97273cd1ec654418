//! Replica agreement: digests, first_difference, snapshot round trip and
//! rejection of truncated or garbled snapshots.

use bytes::Bytes;

use super::*;
use crate::{perms, SnapshotError};

/// A tree with a bit of everything: nested nodes, data, a custom ACL,
/// sequential and ephemeral nodes, two sessions.
fn build() -> T {
    let mut t = T::new();
    t.run(S1, Request::CreateSession { timeout_ms: 10_000 });
    t.run(S2, Request::CreateSession { timeout_ms: 20_000 });
    t.mk("/app", CreateMode::Persistent);
    t.mk("/app/seq-", CreateMode::PersistentSequential);
    t.mk("/app/seq-", CreateMode::PersistentSequential);
    t.run(S2, create("/app/eph", b"e", CreateMode::Ephemeral));
    t.run(S1, set_data("/app", b"payload", -1));
    t.run(S1, delete("/app/seq-0000000000", -1));
    let acl = Request::Create {
        path: "/locked".to_string(),
        data: Bytes::from_static(b"\x00\xff"),
        acl: vec![
            Acl::new(perms::READ, "world", "anyone"),
            Acl::new(perms::ALL, "ip", "10.0.0.1"),
        ],
        mode: CreateMode::Persistent,
    };
    t.run(S1, acl);
    t
}

#[test]
fn same_ops_give_the_same_digest() {
    let a = build();
    let b = build();
    assert_eq!(a.tree.digest(), b.tree.digest());
    assert_eq!(a.tree.first_difference(&b.tree), None);
    assert_ne!(a.tree.digest(), DataTree::new().digest());
}

#[test]
fn divergence_changes_the_digest_and_is_located() {
    let a = build();
    let mut b = build();
    b.run(S1, set_data("/app/seq-0000000001", b"x", -1));
    assert_ne!(a.tree.digest(), b.tree.digest());
    assert_eq!(
        a.tree.first_difference(&b.tree),
        Some("/app/seq-0000000001".to_string())
    );

    let mut c = build();
    c.mk("/app/extra", CreateMode::Persistent);
    assert_ne!(a.tree.digest(), c.tree.digest());
    // the parent's stat changed too, and it comes first
    assert_eq!(a.tree.first_difference(&c.tree), Some("/app".to_string()));

    let mut d = build();
    d.run(0x300, Request::CreateSession { timeout_ms: 1 });
    assert_ne!(a.tree.digest(), d.tree.digest());
    assert_eq!(
        a.tree.first_difference(&d.tree),
        Some("session 0x300".to_string())
    );
}

#[test]
fn snapshot_round_trip() {
    let t = build();
    let bytes = t.tree.snapshot();
    let restored = DataTree::restore(&bytes).expect("restores");
    assert_eq!(restored, t.tree);
    assert_eq!(restored.digest(), t.tree.digest());
    assert_eq!(restored.last_zxid(), t.zxid);
    assert_eq!(restored.ephemerals(S2), vec!["/app/eph".to_string()]);
    assert_eq!(restored.snapshot(), bytes);
    // the restored tree keeps working: closing S2 removes its ephemeral
    let mut r = T {
        tree: restored,
        zxid: t.zxid,
    };
    r.run(S2, Request::CloseSession);
    assert_eq!(r.tree.stat("/app/eph"), None);
    assert_eq!(
        r.mk("/app/seq-", CreateMode::PersistentSequential),
        "/app/seq-0000000003"
    );
}

#[test]
fn truncated_snapshots_are_rejected() {
    let bytes = build().tree.snapshot();
    for len in 0..bytes.len() {
        let result = DataTree::restore(&bytes[..len]);
        assert!(result.is_err(), "prefix of {len} bytes was accepted");
    }
    assert_eq!(
        DataTree::restore(&bytes[..5]),
        Err(SnapshotError::Truncated)
    );
}

#[test]
fn garbled_snapshots_are_rejected() {
    let bytes = build().tree.snapshot();
    let mut flipped = bytes.clone();
    flipped[40] ^= 0x01;
    assert_eq!(DataTree::restore(&flipped), Err(SnapshotError::BadChecksum));
    let mut magic = bytes.clone();
    magic[0] = b'X';
    assert_eq!(DataTree::restore(&magic), Err(SnapshotError::BadMagic));
    let mut version = bytes.clone();
    version[7] = 9;
    assert_eq!(
        DataTree::restore(&version),
        Err(SnapshotError::UnsupportedVersion(9))
    );
    let mut longer = bytes[..bytes.len() - 4].to_vec();
    longer.push(0);
    let crc = crc32fast::hash(&longer);
    longer.extend_from_slice(&crc.to_be_bytes());
    assert_eq!(
        DataTree::restore(&longer),
        Err(SnapshotError::TrailingBytes(1))
    );
}
