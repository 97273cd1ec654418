//! create: every mode, the exact Stat of the new node and its parent,
//! sequential names from the stored counter, and each refusal's code.

use bytes::Bytes;

use super::*;
use crate::Stat;

#[test]
fn create_persistent_sets_exact_stats() {
    let mut t = T::new();
    let applied = t.run(S1, create("/a", b"hello", CreateMode::Persistent));
    let expected = Stat {
        czxid: 1,
        mzxid: 1,
        ctime: time_of(1),
        mtime: time_of(1),
        version: 0,
        cversion: 0,
        aversion: 0,
        ephemeral_owner: 0,
        data_length: 5,
        num_children: 0,
        pzxid: 1,
    };
    assert_eq!(
        applied.response,
        Ok(Response::Create {
            path: "/a".to_string(),
            stat: expected
        })
    );
    assert_eq!(applied.zxid, 1);
    assert_eq!(t.stat("/a"), expected);
    // root: one stored child create, two children -> 2*1 - 2 = 0
    let root = t.stat("/");
    assert_eq!((root.cversion, root.num_children, root.pzxid), (0, 2, 1));
    assert_eq!((root.mzxid, root.version), (0, 0));
    assert_eq!(t.tree.data("/a"), Some(Bytes::from_static(b"hello")));
}

#[test]
fn create_in_every_supported_mode() {
    let mut t = T::new();
    t.run(S1, Request::CreateSession { timeout_ms: 30_000 });
    t.mk("/p", CreateMode::Persistent);
    assert_eq!(t.stat("/p").ephemeral_owner, 0);
    t.mk("/e", CreateMode::Ephemeral);
    assert_eq!(t.stat("/e").ephemeral_owner, S1);
    assert_eq!(
        t.mk("/p/s-", CreateMode::PersistentSequential),
        "/p/s-0000000000"
    );
    assert_eq!(
        t.mk("/p/s-", CreateMode::EphemeralSequential),
        "/p/s-0000000001"
    );
    assert_eq!(t.stat("/p/s-0000000001").ephemeral_owner, S1);
    assert_eq!(t.stat("/p/s-0000000000").ephemeral_owner, 0);
    assert_eq!(
        t.tree.ephemerals(S1),
        vec!["/e".to_string(), "/p/s-0000000001".to_string()]
    );
}

#[test]
fn container_and_ttl_are_unimplemented() {
    let mut t = T::new();
    for flag in [4, 5, 6] {
        let mode = CreateMode::from_flag(flag).expect("known flag");
        assert_eq!(
            code(&t.run(S1, create("/c", b"", mode))),
            Code::Unimplemented
        );
    }
    assert_eq!(CreateMode::from_flag(7), Err(Code::BadArguments));
    assert_eq!(CreateMode::from_flag(-1), Err(Code::BadArguments));
    assert_eq!(t.tree.stat("/c"), None);
    assert_eq!(t.tree.last_zxid(), 3);
}

#[test]
fn create_under_missing_parent_is_no_node() {
    let mut t = T::new();
    assert_eq!(
        code(&t.run(S1, create("/a/b", b"", CreateMode::Persistent))),
        Code::NoNode
    );
    // ZooKeeper looks the parent up before it validates the full path
    assert_eq!(
        code(&t.run(S1, create("/x/", b"", CreateMode::Persistent))),
        Code::NoNode
    );
    assert_eq!(
        code(&t.run(S1, create("a/b", b"", CreateMode::Persistent))),
        Code::NoNode
    );
}

#[test]
fn create_existing_is_node_exists() {
    let mut t = T::new();
    t.mk("/a", CreateMode::Persistent);
    let before = t.stat("/");
    assert_eq!(
        code(&t.run(S1, create("/a", b"x", CreateMode::Persistent))),
        Code::NodeExists
    );
    assert_eq!(
        code(&t.run(S1, create("/", b"", CreateMode::Persistent))),
        Code::NodeExists
    );
    assert_eq!(t.stat("/"), before);
    assert_eq!(t.stat("/a").data_length, 0);
}

#[test]
fn children_of_ephemerals_are_refused() {
    let mut t = T::new();
    t.run(S1, Request::CreateSession { timeout_ms: 10_000 });
    t.mk("/e", CreateMode::Ephemeral);
    let child = create("/e/c", b"", CreateMode::Persistent);
    assert_eq!(code(&t.run(S1, child)), Code::NoChildrenForEphemerals);
    let seq = create("/e/c", b"", CreateMode::PersistentSequential);
    assert_eq!(code(&t.run(S1, seq)), Code::NoChildrenForEphemerals);
    assert_eq!(t.stat("/e").num_children, 0);
    assert_eq!(t.stat("/e").cversion, 0);
}

#[test]
fn ephemeral_for_unknown_session_is_session_expired() {
    let mut t = T::new();
    let e = create("/e", b"", CreateMode::Ephemeral);
    assert_eq!(code(&t.run(S2, e.clone())), Code::SessionExpired);
    // the session check comes before the path checks
    let bad = create("bad", b"", CreateMode::EphemeralSequential);
    assert_eq!(code(&t.run(S2, bad)), Code::SessionExpired);
    t.run(S2, Request::CreateSession { timeout_ms: 5_000 });
    assert_eq!(code(&t.run(S2, e)), Code::Ok);
}

#[test]
fn empty_or_bad_acl_is_invalid_acl() {
    let mut t = T::new();
    let mut req = create("/a", b"", CreateMode::Persistent);
    if let Request::Create { acl, .. } = &mut req {
        acl.clear();
    }
    assert_eq!(code(&t.run(S1, req)), Code::InvalidAcl);
    let mut req = create("/a", b"", CreateMode::Persistent);
    if let Request::Create { acl, .. } = &mut req {
        *acl = vec![Acl::new(31, "auth", "")];
    }
    assert_eq!(code(&t.run(S1, req)), Code::InvalidAcl);
}

#[test]
fn sequential_names_come_from_the_stored_counter() {
    let mut t = T::new();
    t.mk("/q", CreateMode::Persistent);
    assert_eq!(
        t.mk("/q/n", CreateMode::PersistentSequential),
        "/q/n0000000000"
    );
    assert_eq!(
        t.mk("/q/n", CreateMode::PersistentSequential),
        "/q/n0000000001"
    );
    assert_eq!(code(&t.run(S1, delete("/q/n0000000000", -1))), Code::Ok);
    // the counter counts creates, not children
    assert_eq!(
        t.mk("/q/n", CreateMode::PersistentSequential),
        "/q/n0000000002"
    );
    // a plain create counts too
    t.mk("/q/plain", CreateMode::Persistent);
    assert_eq!(
        t.mk("/q/", CreateMode::PersistentSequential),
        "/q/0000000004"
    );
    // stored 5 creates, 4 children: 2*5 - 4
    let s = t.stat("/q");
    assert_eq!((s.cversion, s.num_children), (6, 4));
    assert_eq!(code(&t.run(S1, delete("/q/plain", -1))), Code::Ok);
    let s = t.stat("/q");
    assert_eq!((s.cversion, s.num_children), (7, 3));
}

#[test]
fn sequential_suffix_formats_like_java() {
    let mut t = T::new();
    t.mk("/q", CreateMode::Persistent);
    if let Some(n) = t.tree.nodes.get_mut("/q") {
        n.stat.cversion = -5;
    }
    assert_eq!(
        t.mk("/q/x", CreateMode::PersistentSequential),
        "/q/x-000000005"
    );
    assert_eq!(t.tree.nodes["/q"].stat.cversion, -4);
}

#[test]
fn sequential_counter_overflow_sticks_like_zookeeper() {
    let mut t = T::new();
    t.mk("/q", CreateMode::Persistent);
    if let Some(n) = t.tree.nodes.get_mut("/q") {
        n.stat.cversion = i32::MAX - 1;
    }
    assert_eq!(
        t.mk("/q/x", CreateMode::PersistentSequential),
        "/q/x2147483646"
    );
    assert_eq!(t.stat("/q").pzxid, 2);
    assert_eq!(
        t.mk("/q/x", CreateMode::PersistentSequential),
        "/q/x2147483647"
    );
    // the wrapped counter is not larger, so cversion and pzxid stay
    assert_eq!(t.tree.nodes["/q"].stat.cversion, i32::MAX);
    assert_eq!(t.stat("/q").pzxid, 2);
    let again = create("/q/x", b"", CreateMode::PersistentSequential);
    assert_eq!(code(&t.run(S1, again)), Code::NodeExists);
}

#[test]
fn bad_paths_are_bad_arguments() {
    let mut t = T::new();
    t.mk("/a", CreateMode::Persistent);
    let cases = [
        create("noslash", b"", CreateMode::Persistent),
        create("", b"", CreateMode::Persistent),
        create("/a/", b"", CreateMode::Persistent),
        create("/a/.", b"", CreateMode::Persistent),
        create("/a/..", b"", CreateMode::Persistent),
        create("/a/b\0", b"", CreateMode::Persistent),
        create("/a/\u{1}", b"", CreateMode::Persistent),
        set_data("/a/", b"", -1),
        set_data("a", b"", -1),
        check("/a//b", -1),
        delete("nope", -1),
        delete("/a\0", -1),
        exists("/a\0", false),
    ];
    for req in cases {
        assert_eq!(code(&t.run(S1, req.clone())), Code::BadArguments, "{req:?}");
    }
    assert_eq!(t.tree.node_count(), 5);
    // a sequential prefix may end with "/"
    assert_eq!(
        t.mk("/a/", CreateMode::PersistentSequential),
        "/a/0000000000"
    );
}
