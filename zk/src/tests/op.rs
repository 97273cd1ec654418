//! Request classification: which requests are writes, their opcodes and
//! the paths they touch.

use super::*;
use crate::opcode;

#[test]
fn writes_and_reads() {
    let writes = [
        create("/a", b"", CreateMode::Persistent),
        delete("/a", -1),
        set_data("/a", b"", -1),
        check("/a", -1),
        Request::Multi(vec![]),
        Request::CreateSession { timeout_ms: 1 },
        Request::CloseSession,
    ];
    assert!(writes.iter().all(Request::is_write));
    let reads = [
        exists("/a", false),
        get_data("/a", false),
        get_children("/a", false),
        Request::Sync {
            path: "/a".to_string(),
        },
        Request::GetAcl {
            path: "/a".to_string(),
        },
        Request::GetEphemerals {
            prefix: String::new(),
        },
        Request::GetAllChildrenNumber {
            path: "/a".to_string(),
        },
    ];
    assert!(!reads.iter().any(Request::is_write));
    assert_eq!(writes[0].opcode(), opcode::CREATE);
    assert_eq!(writes[6].opcode(), -11);
    assert_eq!(reads[2].opcode(), opcode::GET_CHILDREN2);
}

#[test]
fn paths_name_parents_of_creates_and_deletes() {
    assert_eq!(
        create("/a/b", b"", CreateMode::Persistent).paths(),
        vec!["/a/b", "/a"]
    );
    assert_eq!(delete("/a", -1).paths(), vec!["/a", "/"]);
    assert_eq!(set_data("/a/b", b"", -1).paths(), vec!["/a/b"]);
    let multi = Request::Multi(vec![
        create("/a/x", b"", CreateMode::PersistentSequential),
        set_data("/a", b"", -1),
        delete("/b/y", -1),
    ]);
    assert_eq!(multi.paths(), vec!["/a/x", "/a", "/b/y", "/b"]);
    assert!(Request::CloseSession.paths().is_empty());
}
