//! The ZooKeeper clients of the simulated world. With RSMKeeper the groups run in keeper
//! mode (a ZooKeeper tree, no sequencer); with ZK-Mason every group sequences and the
//! shard servers hold one tree for all groups, and an op names the spaces
//! `mason_zk::shard::spaces` gives it. Each client op is a ZooKeeper request on a few
//! shared znodes: a create (once one exists, NodeExists), a setData or a getData; under
//! ZK-Mason also ops that span shards (sequential children, creates and deletes of
//! short-lived znodes, multis of two setData; see `world::zkops`). A client first opens a
//! ZooKeeper session, and opens another when told its session expired, or (with
//! `WorldConfig::zk_closes`) after it closed its session itself. Every acknowledged
//! op becomes a history event with its virtual send and answer times, for the per-znode
//! linearizability check; every acknowledged create of a znode no op deletes is kept for
//! the final check of the trees.
//!
//! With local reads on (`WorldConfig::local_reads`, `--zk-reads local`) the clients also
//! send exists, and a share of their reads of one znode skip the log (all of them for the
//! clients that only read, `WorldConfig::readers`), through `ClientCore::submit_read`, as
//! `mason_client::zk::ZkClient` sends them: a read waits until every op the client sent
//! through the log before it is answered, and asks for the highest number of the znode's
//! space the client has seen in any answer (its ops' numbers, and the positions its
//! earlier local reads were answered from). Its send time in the history is when it went
//! out. Local reads enter the same per-znode history, flagged, so that the verdict can
//! hold them to what they promise.

use super::zkops::{self, Picked};
use super::World;
use bytes::Bytes;
use mason_client::zk::{create_session_payload, decode_reply, request_payload};
use mason_client::{ClientError, MultiSeq};
use mason_common::types::SpaceMask;
use mason_zk::history::{Access, Event};
use mason_zk::jute::Shape;
use mason_zk::{Acl, Code, CreateMode, DataTree, OpResult, Request, Response};
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The znodes every client works on: `/z0` .. `/z{ZNODES - 1}`.
const ZNODES: u32 = 6;

/// An op in flight: what it asked, and when.
struct Asked {
    opens: bool,
    /// A closeSession of the client's own.
    closes: bool,
    xid: i32,
    shape: Shape,
    path: String,
    /// A multi's ops' paths, in order.
    paths: Vec<String>,
    /// Whether an acknowledged create of it stays (no op deletes it).
    kept: bool,
    /// A read (exists answers with a Stat, as setData does).
    read: bool,
    sent_us: u64,
}

/// A local read waiting for the log ops its client sent before it.
struct Deferred {
    /// The last of those ops (client op ids grow).
    after: u64,
    payload: Bytes,
    /// The space of the znode's shard (RSMKeeper: 0).
    space: u32,
    asked: Asked,
}

/// What a client keeps for its local reads (as `ZkClient` does).
#[derive(Default)]
struct Reader {
    /// The highest number of each space seen in any answer (across its sessions: the
    /// history holds a client to all its earlier ops).
    seen: BTreeMap<u32, u64>,
    /// Its ops through the log not answered yet, by client op id.
    in_log: BTreeSet<u64>,
    /// Its local reads in flight, by client op id.
    local: BTreeSet<u64>,
    deferred: VecDeque<Deferred>,
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
    /// Clients whose closeSession is in flight.
    closing: BTreeSet<u32>,
    /// Every acknowledged op on a znode.
    pub events: Vec<Event>,
    /// Whether each of `events` is a local read.
    local: Vec<bool>,
    readers: BTreeMap<u32, Reader>,
    /// Local reads sent (after any wait for the log).
    pub local_sent: u64,
    /// Acknowledged creates that no op deletes (ZK-Mason, whose sessions never expire).
    pub created: Vec<String>,
    /// Acknowledged ops whose reply does not decode (an empty or foreign reply).
    pub bad_replies: Vec<String>,
}

impl World {
    /// Client `c` starts one ZooKeeper op.
    pub(super) fn zk_submit(&mut self, c: u32) {
        let k = self.rng.gen_range(0..ZNODES);
        let path = format!("/z{k}");
        let roll = self.rng.gen_range(0..100);
        let zkmason = self.cfg.zk.is_some();
        // The last `readers` clients only read, without the log.
        let reader = c + self.cfg.readers >= self.cfg.clients;
        // With closes on, a writer whose session holds its ephemeral now and then ends it
        // (its other ops in flight are numbered before the close).
        let closes = self.cfg.zk_closes > 0
            && !reader
            && self
                .zk
                .as_ref()
                .is_some_and(|z| z.ephemeral.contains(&c) && !z.closing.contains(&c))
            && self.rng.gen_range(0..100) < self.cfg.zk_closes;
        let zk = self.zk.get_or_insert_with(SimZk::default);
        let opens = zk.session.insert(c);
        let mut spanning: Option<Picked> = None;
        let req = if opens {
            Request::CreateSession { timeout_ms: 30_000 }
        } else if closes {
            zk.closing.insert(c);
            Request::CloseSession
        } else if zk.ephemeral.insert(c) {
            // One ephemeral per session, for the expiry check (a dead client's go).
            Request::Create {
                path: format!("/e{c}-{}", zk.next_xid),
                data: Bytes::new(),
                acl: Acl::open_unsafe(),
                mode: CreateMode::Ephemeral,
            }
        } else if reader && roll < 30 {
            Request::Exists {
                path: path.clone(),
                watch: false,
            }
        } else if reader {
            Request::GetData {
                path: path.clone(),
                watch: false,
            }
        } else if zkmason && (10..50).contains(&roll) {
            let p = zkops::spanning(&mut self.rng, k, ZNODES, roll - 10);
            let req = p.req.clone();
            spanning = Some(p);
            req
        } else if roll < 10 {
            Request::Create {
                path: path.clone(),
                data: Bytes::from_static(b"v"),
                acl: Acl::open_unsafe(),
                mode: CreateMode::Persistent,
            }
        } else if roll < if zkmason { 75 } else { 55 } {
            Request::SetData {
                path: path.clone(),
                data: Bytes::from(format!("{c}")),
                version: -1,
            }
        } else if self.cfg.local_reads > 0 && self.rng.gen_bool(0.3) {
            Request::Exists {
                path: path.clone(),
                watch: false,
            }
        } else {
            Request::GetData {
                path: path.clone(),
                watch: false,
            }
        };
        // What the client records of it: its path (a multi's, each op's), and whether an
        // acknowledged create stays (an ephemeral does not once sessions close).
        let ephemeral = matches!(
            &req,
            Request::Create {
                mode: CreateMode::Ephemeral,
                ..
            }
        );
        let (path, paths, kept) = match spanning {
            Some(p) => (p.path, p.paths, p.kept),
            None if closes => ("its session".to_string(), Vec::new(), false),
            None => (
                path,
                Vec::new(),
                zkmason && !(ephemeral && self.cfg.zk_closes > 0),
            ),
        };
        let Some(zk) = self.zk.as_mut() else { return };
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
        // RSMKeeper takes no numbers; ZK-Mason one in the clock (writes) and in each shard
        // the request touches.
        let mask = match self.cfg.zk {
            Some(z) => SpaceMask(mason_zk::shard::spaces(&req, z.shards)),
            None => SpaceMask::single(0),
        };
        let asked = Asked {
            opens,
            closes,
            xid,
            shape,
            path,
            paths,
            kept,
            read: matches!(req, Request::Exists { .. } | Request::GetData { .. }),
            sent_us: self.now,
        };
        let local = !opens
            && req.is_local_read()
            && (reader
                || self.cfg.local_reads > 0 && self.rng.gen_range(0..100) < self.cfg.local_reads);
        if local {
            self.clients[c as usize].in_flight += 1;
            let space = mask.iter().next().unwrap_or(0);
            let Some(r) = self.zk.as_mut().map(|z| z.readers.entry(c).or_default()) else {
                return;
            };
            // It waits for the log ops sent before it.
            let d = Deferred {
                after: r.in_log.last().copied().unwrap_or(0),
                payload,
                space,
                asked,
            };
            if r.in_log.is_empty() {
                self.send_local_read(c, d);
            } else {
                r.deferred.push_back(d);
            }
            return;
        }
        let mut out = Vec::new();
        let cl = &mut self.clients[c as usize];
        let id = cl.core.submit(mask, payload, false, self.now, &mut out);
        cl.in_flight += 1;
        if let Some(zk) = self.zk.as_mut() {
            zk.asked.insert((c, id), asked);
            zk.readers.entry(c).or_default().in_log.insert(id);
        }
        self.client_actions(c, out);
    }

    /// Client `c` sends local read `d`, asking for what it has seen of the read's space.
    fn send_local_read(&mut self, c: u32, mut d: Deferred) {
        let now = self.now;
        let Some(zk) = self.zk.as_mut() else { return };
        let r = zk.readers.entry(c).or_default();
        let min_pos = r.seen.get(&d.space).copied().unwrap_or(0);
        let mut out = Vec::new();
        let id = self.clients[c as usize]
            .core
            .submit_read(d.payload, min_pos, now, &mut out);
        r.local.insert(id);
        d.asked.sent_us = now;
        zk.asked.insert((c, id), d.asked);
        zk.local_sent += 1;
        self.client_actions(c, out);
    }

    /// Client `c`'s local reads whose earlier log ops are all answered go out.
    fn release_local_reads(&mut self, c: u32) {
        loop {
            let Some(r) = self.zk.as_mut().and_then(|z| z.readers.get_mut(&c)) else {
                return;
            };
            let first = r.in_log.first().copied();
            let ready = r
                .deferred
                .front()
                .is_some_and(|d| first.is_none_or(|f| f > d.after));
            if !ready {
                return;
            }
            let Some(d) = r.deferred.pop_front() else {
                return;
            };
            self.send_local_read(c, d);
        }
    }

    /// Whether client `c`'s op `id` is a local read in flight.
    pub(super) fn zk_is_local(&self, c: u32, id: u64) -> bool {
        self.zk
            .as_ref()
            .and_then(|z| z.readers.get(&c))
            .is_some_and(|r| r.local.contains(&id))
    }

    /// Client `c`'s op `id` finished: an acknowledged one is recorded, what its answer
    /// numbered is noted, and the local reads that waited for it go out.
    pub(super) fn zk_done(&mut self, c: u32, id: u64, result: &Result<MultiSeq, ClientError>) {
        let local = match self.zk.as_mut().map(|z| z.readers.entry(c).or_default()) {
            Some(r) => {
                r.in_log.remove(&id);
                if let Ok(ms) = result {
                    for (space, n) in ms.mask.iter().zip(&ms.numbers) {
                        let s = r.seen.entry(space).or_default();
                        *s = (*s).max(*n);
                    }
                }
                r.local.remove(&id)
            }
            None => false,
        };
        self.zk_record(c, id, result, local);
        self.release_local_reads(c);
    }

    fn zk_record(&mut self, c: u32, id: u64, result: &Result<MultiSeq, ClientError>, local: bool) {
        let now = self.now;
        let Some(zk) = self.zk.as_mut() else {
            return;
        };
        let Some(asked) = zk.asked.remove(&(c, id)) else {
            return;
        };
        if asked.closes {
            // Closed (or refused, the session being gone already): the next op opens a
            // new session.
            zk.closing.remove(&c);
            zk.session.remove(&c);
            zk.ephemeral.remove(&c);
        }
        let Ok(ms) = result else {
            if asked.opens {
                zk.session.remove(&c);
            }
            return;
        };
        let resp = match decode_reply(asked.xid, &asked.shape, &ms.result) {
            Ok((_, Ok(resp))) => resp,
            Ok((_, Err(Code::SessionExpired))) => {
                // The next op opens a new session.
                zk.session.remove(&c);
                zk.ephemeral.remove(&c);
                return;
            }
            Err(e) => {
                zk.bad_replies.push(format!(
                    "client {c}'s op on {} answered at {}: {e}",
                    asked.path,
                    crate::trace::stamp(now)
                ));
                zk.session.remove(&c);
                zk.ephemeral.remove(&c);
                return;
            }
            Ok((_, Err(_))) => return,
        };
        // With RSMKeeper each group is a tree of its own: its znodes are told apart by the
        // group. ZK-Mason's groups share one tree.
        let prefix = if self.cfg.zk.is_some() {
            String::new()
        } else {
            let groups = self.cfg.triples * self.cfg.groups_per_triple;
            format!("group {} ", c % groups.max(1))
        };
        let mut seen: Vec<(String, Access, mason_zk::Stat)> = Vec::new();
        match resp {
            Response::Create { path, stat } => {
                if asked.kept {
                    zk.created.push(path.clone());
                }
                // The session's ephemeral: its owner is checked at the end, not its versions.
                if stat.ephemeral_owner == 0 {
                    seen.push((path, Access::Write, stat));
                }
            }
            Response::Stat(stat) if asked.read => seen.push((asked.path, Access::Read, stat)),
            Response::Stat(stat) => seen.push((asked.path, Access::Write, stat)),
            Response::Data { stat, .. } => seen.push((asked.path, Access::Read, stat)),
            Response::Multi(results) => {
                for (r, path) in results.into_iter().zip(asked.paths) {
                    if let OpResult::SetData { stat } = r {
                        seen.push((path, Access::Write, stat));
                    }
                }
            }
            _ => {}
        }
        for (path, access, stat) in seen {
            zk.events.push(Event {
                path: format!("{prefix}{path}"),
                czxid: stat.czxid,
                access,
                version: stat.version,
                sent_us: asked.sent_us,
                answered_us: now,
                client: u64::from(c),
            });
            zk.local.push(local);
        }
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

    /// The indices of the clients that died for good (their ephemerals are `/e{c}-N`).
    pub fn dead_clients(&self) -> Vec<u32> {
        (0..self.clients.len() as u32)
            .filter(|c| !self.clients[*c as usize].alive)
            .collect()
    }

    /// The acknowledged ops on znodes.
    pub fn zk_events(&self) -> &[Event] {
        self.zk.as_ref().map_or(&[], |z| &z.events[..])
    }

    /// The acknowledged ops on znodes that went through the log (all but local reads).
    pub fn zk_log_events(&self) -> Vec<Event> {
        let Some(z) = self.zk.as_ref() else {
            return Vec::new();
        };
        z.events
            .iter()
            .zip(&z.local)
            .filter(|(_, local)| !**local)
            .map(|(e, _)| e.clone())
            .collect()
    }

    /// Local reads: (sent, acknowledged and in the history).
    pub fn zk_local_reads(&self) -> (u64, u64) {
        self.zk.as_ref().map_or((0, 0), |z| {
            (z.local_sent, z.local.iter().filter(|l| **l).count() as u64)
        })
    }

    /// The acknowledged creates no op deletes (ZK-Mason).
    pub fn zk_created(&self) -> &[String] {
        self.zk.as_ref().map_or(&[], |z| &z.created[..])
    }

    /// Acknowledged ops whose ZooKeeper reply does not decode.
    pub fn zk_bad_replies(&self) -> &[String] {
        self.zk.as_ref().map_or(&[], |z| &z.bad_replies[..])
    }
}
