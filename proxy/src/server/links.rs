//! The proxy process's outgoing links that answer back: to each sequencer (answers and
//! failover messages), to each log shard's head (CorfuMason), and to each ZK-Mason shard
//! server. Each hands what it hears to the inbox of the group it is for.

use super::{Event, Inboxes};
use mason_common::auth::Role;
use mason_common::conn::{LinkHandler, Outbox};
use mason_common::msg::{Body, Frame, SeqHello};

/// A link to sequencer `i`: it hears answers and failover messages for this process's
/// groups.
pub(super) struct SeqLink {
    pub(super) inboxes: Inboxes,
    pub(super) hello: SeqHello,
}

impl LinkHandler for SeqLink {
    fn hello(&self) -> Option<Frame> {
        Some(Frame::new(Body::SeqHello(self.hello.clone())))
    }

    async fn up(&self, _: &Role, _: &Outbox) {
        for tx in self.inboxes.values() {
            let _ = tx.send(Event::SeqConnected).await;
        }
    }

    async fn frame(&self, body: Body) -> Result<(), String> {
        let group = match &body {
            Body::SeqReply(r) => r.group,
            Body::Heartbeat(h) => h.group,
            Body::Switch(s) => s.group,
            Body::Fill(x) => x.group,
            Body::Activate(_) => {
                for tx in self.inboxes.values() {
                    let _ = tx.send(Event::SeqOther(body.clone())).await;
                }
                return Ok(());
            }
            other => return Err(format!("a sequencer sent a {}", other.name())),
        };
        let Some(tx) = self.inboxes.get(&group) else {
            return Err(format!(
                "a sequencer sent a frame for group {group}, not hosted here"
            ));
        };
        let ev = match body {
            Body::SeqReply(r) => Event::Seq(*r),
            b => Event::SeqOther(b),
        };
        let _ = tx.send(ev).await;
        Ok(())
    }
}

/// A link to the head of a log shard's chain: answers to the leaders' log writes.
pub(super) struct LogLink {
    pub(super) inboxes: Inboxes,
}

impl LinkHandler for LogLink {
    async fn up(&self, _: &Role, _: &Outbox) {}

    async fn frame(&self, body: Body) -> Result<(), String> {
        let Body::LogWriteReply(r) = body else {
            return Err(format!("a log server sent a {}", body.name()));
        };
        let group = (r.id >> crate::replica::LOG_REQ_GROUP_SHIFT) as u32;
        match self.inboxes.get(&group) {
            Some(tx) => {
                let _ = tx.send(Event::LogReply(r)).await;
                Ok(())
            }
            None => Err(format!("a log answer for group {group}, not hosted here")),
        }
    }
}

/// Every outgoing link of the process.
pub(super) struct Links {
    /// By replica index (none for this one).
    pub(super) peers: Vec<Option<Outbox>>,
    /// By sequencer index.
    pub(super) seqs: Vec<Outbox>,
    /// By log shard.
    pub(super) logs: Vec<Outbox>,
    /// By ZK-Mason shard, then server.
    pub(super) zk: Vec<Vec<Outbox>>,
}

/// A link to a ZK-Mason shard server: what it applied, for the group that delivered it.
pub(super) struct ZkLink {
    pub(super) inboxes: Inboxes,
}

impl LinkHandler for ZkLink {
    async fn up(&self, _: &Role, _: &Outbox) {}

    async fn frame(&self, body: Body) -> Result<(), String> {
        let (group, ev) = match body {
            Body::ZkApplied(a) => (a.group, Event::ZkApplied(a)),
            Body::ZkReadReply(r) => (r.group, Event::ZkReadReply(r)),
            other => return Err(format!("a zk server sent a {}", other.name())),
        };
        match self.inboxes.get(&group) {
            Some(tx) => {
                let _ = tx.send(ev).await;
                Ok(())
            }
            None => Err(format!("a zk answer for group {group}, not hosted here")),
        }
    }
}
