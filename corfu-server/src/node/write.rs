//! The write path of a log server: checks, write-once against what is stored (looked up
//! first), appends, group-committed syncs, and passing a write down the chain; the tail's
//! answer travels back up.

use super::{entry_result, status, ConnId, LogNode, NodeAction, Pending, Waiting};
use crate::storage::{Entry, Lookup};
use mason_common::logmsg::{LogItem, LogKind, LogResult, LogStatus, LogWrite, LogWriteReply};
use mason_common::msg::Body;

/// Who a write comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A writer that may race others for a position (Corfu's clients): head only.
    Client,
    /// A proxy writing what its group bound (CorfuMason): head only, and the authority on
    /// what a position holds, so its value replaces a corrupt copy.
    Proxy,
    /// This server's predecessor in the chain, forwarding: also the authority.
    Upstream,
}

impl Source {
    /// Whether this source's value may replace a copy known to be corrupt.
    fn authoritative(self) -> bool {
        self != Source::Client
    }
}

/// A write whose items wait for a lookup of what is stored at their positions.
pub(super) struct Checking {
    conn: ConnId,
    id: u64,
    from: Source,
    items: Vec<LogItem>,
    /// Per item: its answer if already known (a refusal), or `None` (looked up).
    early: Vec<Option<LogResult>>,
}

impl LogNode {
    /// A write from `conn`: a writer's (only the head takes those) or the predecessor's
    /// forward.
    pub fn on_write(&mut self, conn: ConnId, from: Source, w: LogWrite, out: &mut Vec<NodeAction>) {
        if from != Source::Upstream && self.cfg.chain_index != 0 {
            let results = w
                .items
                .iter()
                .map(|it| status(it.pos, LogStatus::NotHead))
                .collect();
            out.push(reply(conn, w.id, results));
            return;
        }
        let mut early = Vec::with_capacity(w.items.len());
        let mut ask = Vec::new();
        for item in &w.items {
            let refused = self.refusal(item);
            if refused.is_none() {
                ask.push(item.pos);
            }
            early.push(refused);
        }
        let c = Checking {
            conn,
            id: w.id,
            from,
            items: w.items,
            early,
        };
        if ask.is_empty() {
            self.finish_write(c, Vec::new(), out);
        } else {
            self.lookup(ask, usize::MAX, Waiting::Write(c), out);
        }
    }

    /// Why `item` is refused before anything is looked up, if it is.
    fn refusal(&mut self, item: &LogItem) -> Option<LogResult> {
        let pos = item.pos;
        let s = match LogKind::try_from(item.kind) {
            Ok(LogKind::Junk) if !item.payload.is_empty() => LogStatus::Invalid,
            Err(_) => LogStatus::Invalid,
            Ok(_) if !self.owns(pos) => LogStatus::WrongShard,
            Ok(_) if item.payload.len() > self.cfg.max_payload => LogStatus::TooLarge,
            Ok(_) => return None,
        };
        if s != LogStatus::Invalid {
            self.stats.refused += 1;
        }
        Some(status(pos, s))
    }

    /// The write's lookups are back: decide each item, append, and wait for the disk.
    pub(super) fn finish_write(
        &mut self,
        c: Checking,
        found: Vec<Lookup>,
        out: &mut Vec<NodeAction>,
    ) {
        let mut found = found.into_iter();
        let mut results = Vec::with_capacity(c.items.len());
        let mut down = Vec::with_capacity(c.items.len());
        for (item, early) in c.items.into_iter().zip(c.early) {
            let i = results.len();
            if let Some(r) = early {
                results.push(r);
                continue;
            }
            let look = found
                .next()
                .unwrap_or(Lookup::Failed(item.pos, "no lookup".into()));
            let (res, repair) = self.write_one(&item, c.from, look, out);
            match (res.status(), repair) {
                (LogStatus::Ok, _) => down.push((Some(i), item)),
                (LogStatus::Taken, true) => down.push((
                    None,
                    LogItem {
                        pos: res.pos,
                        kind: res.kind,
                        payload: res.payload.clone(),
                    },
                )),
                _ => {}
            }
            results.push(res);
        }
        let p = Pending {
            conn: c.conn,
            id: c.id,
            results,
            down,
            needs_sync: self.append_gen,
            forwarded: None,
        };
        if p.needs_sync <= self.synced_gen {
            self.pass_down(p, out);
        } else {
            self.waiting_sync.push_back(p);
        }
    }

    /// Decides one item against what is there (what this node appended and has not yet
    /// synced is newer than any lookup). The flag says whether what is there should go
    /// down the chain again although this write was refused (the head repairs its
    /// successor).
    fn write_one(
        &mut self,
        item: &LogItem,
        from: Source,
        look: Lookup,
        out: &mut Vec<NodeAction>,
    ) -> (LogResult, bool) {
        let pos = item.pos;
        let kind = LogKind::try_from(item.kind).unwrap_or(LogKind::Data);
        let entry = Entry {
            kind,
            payload: item.payload.clone(),
        };
        let there = match self.unsynced.get(&pos) {
            Some((_, e)) => Lookup::Held(pos, e.clone()),
            None => look,
        };
        let repair = match there {
            Lookup::Free(_) => false,
            Lookup::Held(_, e) if e == entry => return (status(pos, LogStatus::Ok), false),
            Lookup::Held(_, e) => {
                self.stats.refused += 1;
                return (entry_result(pos, LogStatus::Taken, e), true);
            }
            // Upstream (and a proxy, which bound it) is the authority on what a position
            // holds: its copy replaces a corrupt one. A racing writer's value cannot be
            // checked against it: refused.
            Lookup::Corrupt(..) if from.authoritative() => true,
            Lookup::Corrupt(..) => {
                self.stats.refused += 1;
                return (status(pos, LogStatus::Corrupt), false);
            }
            Lookup::Failed(_, why) => {
                tracing::error!(pos, "read before write failed: {why}");
                return (status(pos, LogStatus::Unavailable), false);
            }
        };
        self.append_gen += 1;
        self.stats.appended += 1;
        self.unsynced.insert(pos, (self.append_gen, entry.clone()));
        self.unsynced_order.push_back((self.append_gen, pos));
        self.next = self.next.max(pos.saturating_add(1));
        out.push(NodeAction::Append { pos, entry, repair });
        (status(pos, LogStatus::Ok), false)
    }

    /// Durable here: forward down the chain, or (at the tail) answer.
    pub(super) fn pass_down(&mut self, mut p: Pending, out: &mut Vec<NodeAction>) {
        if self.cfg.is_tail() || p.down.is_empty() {
            out.push(reply(p.conn, p.id, p.results));
            return;
        }
        let id = self.next_forward_id;
        self.next_forward_id += 1;
        p.forwarded = Some((id, self.now));
        out.push(NodeAction::Forward(LogWrite {
            id,
            shard: self.cfg.shard,
            items: p.down.iter().map(|(_, it)| it.clone()).collect(),
        }));
        self.forwarded.insert(id, p);
    }

    /// The successor's answer to a forward: the write is acknowledged (or not) upstream.
    pub fn on_forward_reply(&mut self, r: LogWriteReply, out: &mut Vec<NodeAction>) {
        let Some(mut p) = self.forwarded.remove(&r.id) else {
            return; // answered already (timed out), or a duplicate
        };
        for (k, (idx, _)) in p.down.iter().enumerate() {
            let Some(i) = idx else { continue };
            let theirs = r.results.get(k);
            let Some(mine) = p.results.get_mut(*i) else {
                continue;
            };
            match theirs {
                Some(t) if t.status() == LogStatus::Ok => {}
                Some(t) => {
                    tracing::error!(
                        pos = t.pos,
                        status = ?t.status(),
                        "the successor refused a write this server holds"
                    );
                    *mine = t.clone();
                }
                None => mine.status = LogStatus::Unavailable as i32,
            }
        }
        out.push(reply(p.conn, p.id, std::mem::take(&mut p.results)));
    }
}

fn reply(conn: ConnId, id: u64, results: Vec<LogResult>) -> NodeAction {
    NodeAction::Send {
        conn,
        body: Body::LogWriteReply(LogWriteReply { id, results }),
    }
}
