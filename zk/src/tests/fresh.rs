//! The start state a fresh ZooKeeper 3.8 shows a client, and what a client
//! may do to the reserved `/zookeeper` subtree.

use bytes::Bytes;

use super::*;
use crate::{perms, Stat};

#[test]
fn fresh_root_stat() {
    let t = T::new();
    // zero stored child creates, one child: reported cversion 2*0 - 1
    let expected = Stat {
        cversion: -1,
        num_children: 1,
        ..Stat::default()
    };
    assert_eq!(t.stat("/"), expected);
    assert_eq!(t.tree.children("/"), Some(vec!["zookeeper".to_string()]));
    assert_eq!(t.tree.acl("/"), Some(Acl::open_unsafe().as_slice()));
    assert_eq!(t.tree.last_zxid(), 0);
    assert_eq!(t.tree.node_count(), 4);
}

#[test]
fn fresh_zookeeper_subtree_stats() {
    let t = T::new();
    let zk = Stat {
        cversion: -2,
        num_children: 2,
        ..Stat::default()
    };
    assert_eq!(t.stat("/zookeeper"), zk);
    assert_eq!(
        t.tree.children("/zookeeper"),
        Some(vec!["config".to_string(), "quota".to_string()])
    );
    assert_eq!(t.stat("/zookeeper/quota"), Stat::default());
    // the config node's ACL is set with version -1 at startup
    let config = Stat {
        aversion: -1,
        ..Stat::default()
    };
    assert_eq!(t.stat("/zookeeper/config"), config);
    assert_eq!(
        t.tree.acl("/zookeeper/config"),
        Some([Acl::new(perms::READ, "world", "anyone")].as_slice())
    );
}

#[test]
fn quorum_config_node() {
    let tree = DataTree::new_with_config(Bytes::from_static(b"server.1=a:1:2"), 0x1_0000_0000, 5);
    let s = tree.stat("/zookeeper/config").expect("config node");
    assert_eq!(s.version, -1);
    assert_eq!(s.mzxid, 0x1_0000_0000);
    assert_eq!(s.mtime, 5);
    assert_eq!(s.czxid, 0);
    assert_eq!(s.aversion, -1);
    assert_eq!(s.data_length, 14);
}

#[test]
fn reserved_nodes_cannot_be_deleted() {
    let mut t = T::new();
    for p in ["/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"] {
        assert_eq!(code(&t.run(S1, delete(p, -1))), Code::BadArguments, "{p}");
    }
    assert_eq!(t.tree.node_count(), 4);
}

#[test]
fn config_node_is_read_only_for_clients() {
    let mut t = T::new();
    assert_eq!(
        code(&t.run(S1, set_data("/zookeeper/config", b"x", -1))),
        Code::NoAuth
    );
    let set_acl = Request::SetAcl {
        path: "/zookeeper/config".to_string(),
        acl: Acl::open_unsafe(),
        version: -1,
    };
    assert_eq!(code(&t.run(S1, set_acl)), Code::NoAuth);
    let under = create("/zookeeper/config/x", b"", CreateMode::Persistent);
    assert_eq!(code(&t.run(S1, under)), Code::NoAuth);
    assert_eq!(
        code(&t.run(S1, get_data("/zookeeper/config", false))),
        Code::Ok
    );
    // each refused write still took a zxid
    assert_eq!(t.tree.last_zxid(), 3);
}

#[test]
fn create_under_zookeeper_is_allowed() {
    let mut t = T::new();
    assert_eq!(
        t.mk("/zookeeper/mine", CreateMode::Persistent),
        "/zookeeper/mine"
    );
    let s = t.stat("/zookeeper");
    assert_eq!(s.num_children, 3);
    assert_eq!(s.cversion, 2 - 3);
    assert_eq!(s.pzxid, 1);
}

#[test]
fn all_children_number() {
    let mut t = T::new();
    let n = |t: &mut T, p: &str| {
        t.run(
            S1,
            Request::GetAllChildrenNumber {
                path: p.to_string(),
            },
        )
    };
    assert_eq!(n(&mut t, "/").response, Ok(Response::AllChildrenNumber(3)));
    assert_eq!(
        n(&mut t, "/zookeeper").response,
        Ok(Response::AllChildrenNumber(2))
    );
    t.mk("/a", CreateMode::Persistent);
    t.mk("/a/b", CreateMode::Persistent);
    t.mk("/a/b/c", CreateMode::Persistent);
    t.mk("/ab", CreateMode::Persistent);
    assert_eq!(n(&mut t, "/a").response, Ok(Response::AllChildrenNumber(2)));
    assert_eq!(n(&mut t, "/").response, Ok(Response::AllChildrenNumber(7)));
    // "" is the root's alias; ZooKeeper counts every key starting with "/"
    assert_eq!(n(&mut t, "").response, Ok(Response::AllChildrenNumber(8)));
    assert_eq!(code(&n(&mut t, "/nope")), Code::NoNode);
}

#[test]
fn empty_path_is_the_root_alias_for_reads() {
    let mut t = T::new();
    let root = t.stat("/");
    assert_eq!(
        t.run(S1, exists("", false)).response,
        Ok(Response::Stat(root))
    );
}
