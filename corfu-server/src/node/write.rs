//! The write path of a log server: write-once checks, appends, group-committed syncs, and
//! passing a write down the chain; the tail's answer travels back up.

use super::{entry_result, status, ConnId, LogNode, NodeAction, Pending};
use crate::storage::{Entry, Storage, StoreError};
use mason_common::logmsg::{LogItem, LogKind, LogResult, LogStatus, LogWrite, LogWriteReply};
use mason_common::msg::Body;

impl<S: Storage> LogNode<S> {
    /// A write from `conn`: a writer's (only the head takes those) or, with
    /// `from_upstream`, the predecessor's forward.
    pub fn on_write(
        &mut self,
        conn: ConnId,
        from_upstream: bool,
        w: LogWrite,
        out: &mut Vec<NodeAction>,
    ) {
        if !from_upstream && self.cfg.chain_index != 0 {
            let results = w
                .items
                .iter()
                .map(|it| status(it.pos, LogStatus::NotHead))
                .collect();
            out.push(reply(conn, w.id, results));
            return;
        }
        let mut results = Vec::with_capacity(w.items.len());
        let mut down = Vec::with_capacity(w.items.len());
        for item in w.items {
            let i = results.len();
            let (res, repair) = self.write_one(&item, from_upstream);
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
            conn,
            id: w.id,
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

    /// Checks and stores one item. The flag says whether what is there should go down the
    /// chain again although this write was refused (the head repairs its successor).
    fn write_one(&mut self, item: &LogItem, from_upstream: bool) -> (LogResult, bool) {
        let pos = item.pos;
        let kind = match LogKind::try_from(item.kind) {
            Ok(LogKind::Junk) if !item.payload.is_empty() => {
                return (status(pos, LogStatus::Invalid), false)
            }
            Ok(k) => k,
            Err(_) => return (status(pos, LogStatus::Invalid), false),
        };
        if !self.owns(pos) {
            self.stats.refused += 1;
            return (status(pos, LogStatus::WrongShard), false);
        }
        if item.payload.len() > self.cfg.max_payload {
            self.stats.refused += 1;
            return (status(pos, LogStatus::TooLarge), false);
        }
        let entry = Entry {
            kind,
            payload: item.payload.clone(),
        };
        let repair = match self.store.get(pos) {
            Ok(None) => false,
            Ok(Some(e)) if e == entry => return (status(pos, LogStatus::Ok), false),
            Ok(Some(e)) => {
                self.stats.refused += 1;
                return (entry_result(pos, LogStatus::Taken, e), true);
            }
            // Upstream is the authority on what a position holds: its copy replaces a
            // corrupt one. A writer's value cannot be checked against it: refused.
            Err(StoreError::Corrupt { .. }) if from_upstream => true,
            Err(StoreError::Corrupt { .. }) => {
                self.stats.refused += 1;
                return (status(pos, LogStatus::Corrupt), false);
            }
            Err(e) => {
                tracing::error!(pos, error = %e, "read before write failed");
                return (status(pos, LogStatus::Unavailable), false);
            }
        };
        match self.store.append(pos, &entry, repair) {
            Ok(()) => {
                self.append_gen += 1;
                self.stats.appended += 1;
                self.unsynced.push_back((self.append_gen, pos));
                self.unsynced_set.insert(pos);
                (status(pos, LogStatus::Ok), false)
            }
            Err(StoreError::TooLarge { .. }) => (status(pos, LogStatus::TooLarge), false),
            Err(e) => {
                tracing::error!(pos, error = %e, "append failed");
                (status(pos, LogStatus::Unavailable), false)
            }
        }
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
