//! The ZooKeeper ops of ZK-Mason's simulated clients that span shards: a sequential child
//! of a shared znode (its parent's counter names it, and they may live on two shards), a
//! create or a delete of a short-lived znode (its record and its parent's), a read of
//! one, and a multi of two setData (each on its own znode's shard).

use bytes::Bytes;
use mason_zk::{Acl, CreateMode, Request};
use rand::rngs::StdRng;
use rand::Rng;

/// A request and what the client records of it.
pub(super) struct Picked {
    pub(super) req: Request,
    /// The znode it is about (a multi: its first).
    pub(super) path: String,
    /// A multi's ops' paths, in order.
    pub(super) paths: Vec<String>,
    /// Whether an acknowledged create of it stays (no op deletes it).
    pub(super) kept: bool,
}

/// An op on znode `k` of `znodes` (`roll` in 0..40 says which).
pub(super) fn spanning(rng: &mut StdRng, k: u32, znodes: u32, roll: u32) -> Picked {
    let shared = format!("/z{k}");
    let brief = format!("/d{k}");
    let create = |path: &str, mode| Request::Create {
        path: path.to_string(),
        data: Bytes::from_static(b"d"),
        acl: Acl::open_unsafe(),
        mode,
    };
    let (req, path, kept) = match roll {
        0..=9 => {
            let child = format!("{shared}/s-");
            (
                create(&child, CreateMode::PersistentSequential),
                child,
                true,
            )
        }
        10..=17 => (create(&brief, CreateMode::Persistent), brief, false),
        18..=25 => (
            Request::Delete {
                path: brief.clone(),
                version: -1,
            },
            brief,
            false,
        ),
        26..=29 => (
            Request::GetData {
                path: brief.clone(),
                watch: false,
            },
            brief,
            false,
        ),
        _ => {
            let other = format!(
                "/z{}",
                (k + 1 + rng.gen_range(0..znodes.max(2) - 1)) % znodes
            );
            let set = |p: &str| Request::SetData {
                path: p.to_string(),
                data: Bytes::from(format!("m{roll}")),
                version: -1,
            };
            let paths = vec![shared.clone(), other.clone()];
            return Picked {
                req: Request::Multi(vec![set(&shared), set(&other)]),
                path: shared,
                paths,
                kept: false,
            };
        }
    };
    Picked {
        req,
        path,
        paths: Vec::new(),
        kept,
    }
}
