//! RSMKeeper in the simulated world: the groups run in keeper mode (a ZooKeeper tree, no
//! sequencer), and each client op is a ZooKeeper request on a few shared znodes: a create
//! (once one exists, NodeExists), a setData or a getData. A client first opens a
//! ZooKeeper session, and opens another when told its session expired. Every acknowledged op becomes a
//! history event with its virtual send and answer times, for the per-znode linearizability
//! check; at the end every live replica's tree is compared with its group's others.

use super::World;
use bytes::Bytes;
use mason_client::zk::{create_session_payload, decode_reply, request_payload};
use mason_client::{ClientError, MultiSeq};
use mason_common::types::SpaceMask;
use mason_zk::history::{Access, Event};
use mason_zk::jute::Shape;
use mason_zk::{Acl, Code, CreateMode, DataTree, Request, Response};
use rand::Rng;
use std::collections::BTreeMap;

/// The znodes every client works on: `/z0` .. `/z{ZNODES - 1}`.
const ZNODES: u32 = 6;

/// An op in flight: what it asked, and when.
struct Asked {
    opens: bool,
    xid: i32,
    shape: Shape,
    path: String,
    sent_us: u64,
}

/// The ZooKeeper side of the world's clients.
#[derive(Default)]
pub struct SimZk {
    next_xid: i32,
    asked: BTreeMap<(u32, u64), Asked>,
    /// Clients with a ZooKeeper session open or being opened.
    session: std::collections::BTreeSet<u32>,
    /// Clients whose session has its ephemeral (asked for, or created).
    ephemeral: std::collections::BTreeSet<u32>,
    /// Every acknowledged op on a znode.
    pub events: Vec<Event>,
}

impl World {
    /// Client `c` starts one ZooKeeper op.
    pub(super) fn zk_submit(&mut self, c: u32) {
        let k = self.rng.gen_range(0..ZNODES);
        let path = format!("/z{k}");
        let roll = self.rng.gen_range(0..100);
        let zk = self.zk.get_or_insert_with(SimZk::default);
        let opens = zk.session.insert(c);
        let req = if opens {
            Request::CreateSession { timeout_ms: 30_000 }
        } else if zk.ephemeral.insert(c) {
            // One ephemeral per session, for the expiry check (a dead client's go).
            Request::Create {
                path: format!("/e{c}-{}", zk.next_xid),
                data: Bytes::new(),
                acl: Acl::open_unsafe(),
                mode: CreateMode::Ephemeral,
            }
        } else if roll < 10 {
            Request::Create {
                path: path.clone(),
                data: Bytes::from_static(b"v"),
                acl: Acl::open_unsafe(),
                mode: CreateMode::Persistent,
            }
        } else if roll < 55 {
            Request::SetData {
                path: path.clone(),
                data: Bytes::from(format!("{c}")),
                version: -1,
            }
        } else {
            Request::GetData {
                path: path.clone(),
                watch: false,
            }
        };
        zk.next_xid = zk.next_xid.wrapping_add(1);
        let xid = zk.next_xid;
        let encoded = if opens {
            Ok((create_session_payload(xid, 30_000), Shape::CloseSession))
        } else {
            request_payload(xid, &req)
        };
        let Ok((payload, shape)) = encoded else {
            return;
        };
        let mut out = Vec::new();
        let cl = &mut self.clients[c as usize];
        let id = cl
            .core
            .submit(SpaceMask::single(0), payload, false, self.now, &mut out);
        cl.in_flight += 1;
        if let Some(zk) = self.zk.as_mut() {
            zk.asked.insert(
                (c, id),
                Asked {
                    opens,
                    xid,
                    shape,
                    path,
                    sent_us: self.now,
                },
            );
        }
        self.client_actions(c, out);
    }

    /// Client `c`'s op `id` finished: an acknowledged one is recorded.
    pub(super) fn zk_done(&mut self, c: u32, id: u64, result: &Result<MultiSeq, ClientError>) {
        let now = self.now;
        let Some(zk) = self.zk.as_mut() else {
            return;
        };
        let Some(asked) = zk.asked.remove(&(c, id)) else {
            return;
        };
        let Ok(ms) = result else {
            if asked.opens {
                zk.session.remove(&c);
            }
            return;
        };
        let resp = match decode_reply(asked.xid, &asked.shape, &ms.result) {
            Ok((_, Ok(resp))) => resp,
            Ok((_, Err(Code::SessionExpired))) | Err(_) => {
                // The next op opens a new session.
                zk.session.remove(&c);
                zk.ephemeral.remove(&c);
                return;
            }
            Ok((_, Err(_))) => return,
        };
        let (access, stat) = match resp {
            // The session's ephemeral: its owner is checked at the end, not its versions.
            Response::Create { stat, .. } if stat.ephemeral_owner != 0 => return,
            Response::Create { stat, .. } | Response::Stat(stat) => (Access::Write, stat),
            Response::Data { stat, .. } => (Access::Read, stat),
            _ => return,
        };
        // Each group is a tree of its own: its znodes are told apart by the group.
        let group = c % self
            .cfg
            .triples
            .saturating_mul(self.cfg.groups_per_triple)
            .max(1);
        zk.events.push(Event {
            path: format!("group {group} {}", asked.path),
            czxid: stat.czxid,
            access,
            version: stat.version,
            sent_us: asked.sent_us,
            answered_us: now,
            client: u64::from(c),
        });
    }

    /// Each group's live replicas' trees: (group, machine, tree).
    pub fn zk_trees(&self) -> Vec<(u32, u32, &DataTree)> {
        let per = self.cfg.groups_per_triple;
        let mut out = Vec::new();
        for g in 0..self.groups() {
            let t = g / per;
            for m in t * 3..t * 3 + 3 {
                let rep = self.machines[m as usize].replicas[(g % per) as usize].as_ref();
                if let Some(tree) = rep.and_then(|r| r.tree()) {
                    out.push((g, m, tree));
                }
            }
        }
        out
    }

    /// The client sessions of clients that died for good (their ZooKeeper sessions must
    /// expire once the group closes the idle client sessions).
    pub fn dead_sessions(&self) -> Vec<i64> {
        self.clients
            .iter()
            .filter(|c| !c.alive)
            .filter_map(|c| c.core.session())
            .map(|s| s as i64)
            .collect()
    }

    /// The acknowledged ops on znodes.
    pub fn zk_events(&self) -> &[Event] {
        self.zk.as_ref().map_or(&[], |z| &z.events[..])
    }
}
