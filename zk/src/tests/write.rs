//! setData, delete, setACL, check and the reads: versions, pzxid, zxids of
//! failed writes, ACL refusals and read results.

use bytes::Bytes;

use super::*;
use crate::{perms, Stat};

#[test]
fn set_data_with_right_wrong_and_any_version() {
    let mut t = T::new();
    t.mk("/a", CreateMode::Persistent);
    let applied = t.run(S1, set_data("/a", b"abc", 0));
    let expected = Stat {
        czxid: 1,
        mzxid: 2,
        ctime: time_of(1),
        mtime: time_of(2),
        version: 1,
        data_length: 3,
        pzxid: 1,
        ..Stat::default()
    };
    assert_eq!(applied.response, Ok(Response::Stat(expected)));
    assert_eq!(code(&t.run(S1, set_data("/a", b"zz", 0))), Code::BadVersion);
    assert_eq!(t.stat("/a"), expected);
    assert_eq!(t.tree.data("/a"), Some(Bytes::from_static(b"abc")));
    let any = t.run(S1, set_data("/a", b"", -1));
    assert!(matches!(any.response, Ok(Response::Stat(s)) if s.version == 2 && s.mzxid == 4));
    assert_eq!(
        code(&t.run(S1, set_data("/missing", b"", -1))),
        Code::NoNode
    );
}

#[test]
fn delete_with_versions_and_not_empty() {
    let mut t = T::new();
    t.mk("/a", CreateMode::Persistent);
    t.mk("/a/b", CreateMode::Persistent);
    t.run(S1, set_data("/a", b"x", -1));
    assert_eq!(code(&t.run(S1, delete("/a", 1))), Code::NotEmpty);
    // the version is checked before the children
    assert_eq!(code(&t.run(S1, delete("/a", 7))), Code::BadVersion);
    assert_eq!(code(&t.run(S1, delete("/a/b", 1))), Code::BadVersion);
    assert_eq!(code(&t.run(S1, delete("/a/b", 0))), Code::Ok);
    assert_eq!(code(&t.run(S1, delete("/a/b", -1))), Code::NoNode);
    assert_eq!(code(&t.run(S1, delete("/a", -1))), Code::Ok);
    assert_eq!(t.tree.stat("/a"), None);
    assert_eq!(code(&t.run(S1, delete("/x/y", -1))), Code::NoNode);
}

#[test]
fn pzxid_moves_on_child_create_and_delete_only() {
    let mut t = T::new();
    t.mk("/p", CreateMode::Persistent); // zxid 1
    t.mk("/p/c", CreateMode::Persistent); // zxid 2
    let s = t.stat("/p");
    assert_eq!((s.pzxid, s.mzxid, s.cversion, s.version), (2, 1, 1, 0));
    t.run(S1, set_data("/p/c", b"x", -1)); // zxid 3
    assert_eq!(t.stat("/p").pzxid, 2);
    t.run(S1, delete("/p/c", -1)); // zxid 4
    let s = t.stat("/p");
    // stored creates stay 1, no children: 2*1 - 0
    assert_eq!((s.pzxid, s.mzxid, s.cversion, s.num_children), (4, 1, 2, 0));
    // a failed child create does not move it either
    t.run(S1, create("/p/c/d", b"", CreateMode::Persistent));
    assert_eq!(t.stat("/p").pzxid, 4);
}

#[test]
fn set_acl_bumps_aversion_and_enforces_it() {
    let mut t = T::new();
    t.mk("/a", CreateMode::Persistent);
    let read_only = Request::SetAcl {
        path: "/a".to_string(),
        acl: Acl::read_unsafe(),
        version: 0,
    };
    let applied = t.run(S1, read_only.clone());
    let stat = match applied.response {
        Ok(Response::Stat(s)) => s,
        other => panic!("{other:?}"),
    };
    assert_eq!((stat.aversion, stat.version, stat.mzxid), (1, 0, 1));
    assert_eq!(t.tree.acl("/a"), Some(Acl::read_unsafe().as_slice()));
    // now world may only read: writes and a further setACL are refused
    assert_eq!(code(&t.run(S1, set_data("/a", b"x", -1))), Code::NoAuth);
    assert_eq!(code(&t.run(S1, read_only)), Code::NoAuth);
    assert_eq!(
        code(&t.run(S1, create("/a/b", b"", CreateMode::Persistent))),
        Code::NoAuth
    );
    assert_eq!(code(&t.run(S1, get_data("/a", false))), Code::Ok);
    let bad_version = Request::SetAcl {
        path: "/".to_string(),
        acl: Acl::open_unsafe(),
        version: 3,
    };
    assert_eq!(code(&t.run(S1, bad_version)), Code::BadVersion);
    let empty = Request::SetAcl {
        path: "/".to_string(),
        acl: vec![],
        version: -1,
    };
    assert_eq!(code(&t.run(S1, empty)), Code::InvalidAcl);
}

#[test]
fn get_acl_redacts_digests_without_admin() {
    let mut t = T::new();
    let req = Request::Create {
        path: "/d".to_string(),
        data: Bytes::new(),
        acl: vec![
            Acl::new(perms::READ, "world", "anyone"),
            Acl::new(perms::ALL, "digest", "bob:secret"),
        ],
        mode: CreateMode::Persistent,
    };
    assert_eq!(code(&t.run(S1, req)), Code::Ok);
    let got = t.run(
        S1,
        Request::GetAcl {
            path: "/d".to_string(),
        },
    );
    match got.response {
        Ok(Response::Acl { acl, stat }) => {
            assert_eq!(acl[1], Acl::new(perms::ALL, "digest", "bob:x"));
            assert_eq!(stat.czxid, 1);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn standalone_check() {
    let mut t = T::new();
    t.mk("/a", CreateMode::Persistent);
    assert_eq!(t.run(S1, check("/a", 0)).response, Ok(Response::Empty));
    assert_eq!(code(&t.run(S1, check("/a", 1))), Code::BadVersion);
    assert_eq!(code(&t.run(S1, check("/b", -1))), Code::NoNode);
    assert_eq!(t.tree.last_zxid(), 4);
}

#[test]
fn failed_writes_take_a_zxid_and_change_nothing() {
    let mut t = T::new();
    t.mk("/a", CreateMode::Persistent);
    let digest = t.tree.digest();
    let applied = t.run(S1, delete("/nope", -1));
    assert_eq!(applied.response, Err(Code::NoNode));
    assert_eq!(applied.zxid, 2);
    assert!(applied.triggers.is_empty());
    assert_eq!(t.tree.last_zxid(), 2);
    assert_eq!(t.tree.digest(), digest);
}

#[test]
fn reads_report_last_zxid_and_change_nothing() {
    let mut t = T::new();
    t.mk("/a", CreateMode::Persistent);
    t.mk("/a/y", CreateMode::Persistent);
    t.mk("/a/x", CreateMode::Persistent);
    let digest = t.tree.digest();
    let applied = t.run(S1, exists("/missing", true));
    assert_eq!((applied.response, applied.zxid), (Err(Code::NoNode), 3));
    let children = t.run(S1, get_children("/a", false));
    match children.response {
        Ok(Response::Children { names, stat }) => {
            assert_eq!(names, vec!["x".to_string(), "y".to_string()]);
            assert_eq!((stat.num_children, stat.cversion, stat.pzxid), (2, 2, 3));
        }
        other => panic!("{other:?}"),
    }
    let data = t.run(S1, get_data("/a", false)).response;
    assert_eq!(
        data,
        Ok(Response::Data {
            data: Bytes::new(),
            stat: t.stat("/a")
        })
    );
    let sync = t.run(
        S1,
        Request::Sync {
            path: "/whatever".to_string(),
        },
    );
    assert_eq!(
        sync.response,
        Ok(Response::Sync {
            path: "/whatever".to_string()
        })
    );
    assert_eq!(
        code(&t.run(S1, get_children("/missing", false))),
        Code::NoNode
    );
    assert_eq!(t.tree.digest(), digest);
    assert_eq!(t.tree.last_zxid(), 3);
}
