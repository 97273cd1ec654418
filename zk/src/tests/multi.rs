//! multi: all-or-nothing, one zxid, ZooKeeper's per-op results on failure
//! (0 before, the code, -2 after), no triggers unless it commits.

use super::*;
use crate::{EventType, OpResult, Trigger};

fn multi(ops: Vec<Request>) -> Request {
    Request::Multi(ops)
}

fn trig(path: &str, event: EventType) -> Trigger {
    Trigger {
        path: path.to_string(),
        event,
        acl: crate::Acl::open_unsafe(),
    }
}

#[test]
fn multi_success_applies_every_op_at_one_zxid() {
    let mut t = T::new();
    let applied = t.run(
        S1,
        multi(vec![
            create("/m", b"", CreateMode::Persistent),
            create("/m/a", b"1", CreateMode::Persistent),
            set_data("/m", b"xy", 0),
            check("/m", 1),
            delete("/m/a", 0),
        ]),
    );
    let m = t.stat("/m");
    assert_eq!(
        (m.czxid, m.mzxid, m.pzxid, m.version, m.data_length),
        (1, 1, 1, 1, 2)
    );
    assert_eq!((m.cversion, m.num_children), (2, 0));
    let results = match applied.response {
        Ok(Response::Multi(r)) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(results.len(), 5);
    assert!(
        matches!(&results[0], OpResult::Create { path, stat } if path == "/m" && stat.czxid == 1)
    );
    assert!(matches!(&results[1], OpResult::Create { path, .. } if path == "/m/a"));
    assert!(matches!(&results[2], OpResult::SetData { stat } if stat.version == 1));
    assert_eq!(results[3], OpResult::Check);
    assert_eq!(results[4], OpResult::Delete);
    assert_eq!(
        applied.triggers,
        vec![
            trig("/m", EventType::NodeCreated),
            trig("/", EventType::NodeChildrenChanged),
            trig("/m/a", EventType::NodeCreated),
            trig("/m", EventType::NodeChildrenChanged),
            trig("/m", EventType::NodeDataChanged),
            trig("/m/a", EventType::NodeDeleted),
            trig("/m", EventType::NodeChildrenChanged),
        ]
    );
    assert_eq!(t.tree.last_zxid(), 1);
}

#[test]
fn multi_failure_reports_rolled_back_code_and_runtime_inconsistency() {
    let mut t = T::new();
    t.mk("/a", CreateMode::Persistent);
    let before = t.tree.clone();
    let applied = t.run(
        S1,
        multi(vec![
            create("/x", b"", CreateMode::Persistent),
            set_data("/a", b"new", -1),
            set_data("/missing", b"", -1),
            create("/y", b"", CreateMode::Persistent),
            delete("/a", -1),
        ]),
    );
    assert_eq!(
        applied.response,
        Ok(Response::Multi(vec![
            OpResult::Error(Code::Ok),
            OpResult::Error(Code::Ok),
            OpResult::Error(Code::NoNode),
            OpResult::Error(Code::RuntimeInconsistency),
            OpResult::Error(Code::RuntimeInconsistency),
        ]))
    );
    assert!(applied.triggers.is_empty());
    assert_eq!(applied.zxid, 2);
    assert_eq!(t.tree.first_difference(&before), None);
    assert_eq!(t.tree.digest(), before.digest());
    assert_eq!(t.tree.stat("/x"), None);
}

#[test]
fn check_inside_multi_guards_the_writes() {
    let mut t = T::new();
    t.mk("/a", CreateMode::Persistent);
    let applied = t.run(S1, multi(vec![set_data("/a", b"v", -1), check("/a", 5)]));
    assert_eq!(
        applied.response,
        Ok(Response::Multi(vec![
            OpResult::Error(Code::Ok),
            OpResult::Error(Code::BadVersion),
        ]))
    );
    let s = t.stat("/a");
    assert_eq!((s.version, s.mzxid, s.data_length), (0, 1, 0));
    // the check sees the earlier op's version inside the multi
    let ok = t.run(S1, multi(vec![set_data("/a", b"v", -1), check("/a", 1)]));
    assert!(matches!(ok.response, Ok(Response::Multi(ref r)) if r[1] == OpResult::Check));
}

#[test]
fn rollback_restores_deletes_counters_and_ephemerals() {
    let mut t = T::new();
    t.run(S1, Request::CreateSession { timeout_ms: 1000 });
    t.mk("/q", CreateMode::Persistent);
    t.mk("/q/e", CreateMode::Ephemeral);
    t.run(S1, set_data("/q/e", b"data", -1));
    let before = t.tree.clone();
    let applied = t.run(
        S1,
        multi(vec![
            create("/q/s", b"", CreateMode::EphemeralSequential),
            delete("/q/e", -1),
            create("/q/s", b"", CreateMode::PersistentSequential),
            create("/nope/x", b"", CreateMode::Persistent),
        ]),
    );
    assert!(matches!(
        applied.response,
        Ok(Response::Multi(ref r)) if r[3] == OpResult::Error(Code::NoNode)
    ));
    assert_eq!(t.tree.first_difference(&before), None);
    assert_eq!(t.tree.ephemerals(S1), vec!["/q/e".to_string()]);
    assert_eq!(t.tree.nodes["/q"].stat.cversion, 1);
    assert_eq!(t.stat("/q/e").version, 1);
    // the next sequential create continues from the restored counter
    assert_eq!(
        t.mk("/q/s", CreateMode::PersistentSequential),
        "/q/s0000000001"
    );
}

#[test]
fn multi_with_a_read_is_refused_whole() {
    let mut t = T::new();
    let applied = t.run(
        S1,
        multi(vec![
            create("/a", b"", CreateMode::Persistent),
            exists("/a", false),
        ]),
    );
    assert_eq!(applied.response, Err(Code::MarshallingError));
    assert_eq!(t.tree.stat("/a"), None);
    assert_eq!(t.tree.last_zxid(), 1);
}

#[test]
fn empty_multi_succeeds() {
    let mut t = T::new();
    assert_eq!(
        t.run(S1, multi(vec![])).response,
        Ok(Response::Multi(vec![]))
    );
}
