//! What a run did, for the report of a failing seed: every notable event (faults,
//! leadership, load) in full, and the last message deliveries in a ring. With `verbose`
//! every delivery is also printed as it happens. All times are virtual.

use crate::net::Node;
use mason_common::msg::Body;
use std::collections::VecDeque;

pub struct Trace {
    verbose: bool,
    notes: Vec<String>,
    recent: VecDeque<String>,
    keep: usize,
    /// Every message about this (session, seq) is kept in `focused`.
    focus: Option<(u64, u64)>,
    focused: Vec<String>,
}

pub fn stamp(us: u64) -> String {
    format!("t={}.{:06}s", us / 1_000_000, us % 1_000_000)
}

fn describe(body: &Body) -> String {
    match body {
        Body::GetSeq(r) => format!(
            "GetSeq e{} g{} b{} counts {:?}",
            r.epoch, r.group, r.batch_id, r.counts
        ),
        Body::SeqReply(r) => format!(
            "SeqReply e{} g{} b{} bases {:?} counts {:?}{}",
            r.epoch,
            r.group,
            r.batch_id,
            r.bases,
            r.counts,
            if r.repeat { " (repeat)" } else { "" }
        ),
        Body::Raft(r) => format!("Raft g{} ({} bytes)", r.group, r.data.len()),
        Body::ClientOp(o) => format!("ClientOp session {} s{}", o.session, o.client_seq),
        Body::ClientReply(r) => format!(
            "ClientReply session {} s{} status {} numbers {:?}",
            r.session, r.client_seq, r.status, r.numbers
        ),
        Body::Register(r) => format!("Register c{} g{} nonce {}", r.client_id, r.group, r.nonce),
        Body::Registered(r) => format!(
            "Registered nonce {} status {} session {}",
            r.nonce, r.status, r.session
        ),
        Body::SeqHello(h) => format!("SeqHello {}", h.replica),
        Body::Heartbeat(h) => format!("Heartbeat g{} e{}", h.group, h.epoch),
        Body::Takeover(t) => format!("Takeover g{} from e{}", t.group, t.epoch),
        Body::Switch(s) => format!("Switch g{} e{} ballot {:x}", s.group, s.epoch, s.ballot),
        Body::Promise(p) => format!(
            "Promise g{} e{} ok {} promised {} last b{} watermarks {:?} ranges {}",
            p.group,
            p.epoch,
            p.ok,
            p.promised,
            p.last_batch_id,
            p.watermarks,
            p.recorded.as_ref().map_or(0, |r| r.spaces.len())
        ),
        Body::Fill(f) => format!(
            "Fill g{} e{} holes {:?}",
            f.group,
            f.epoch,
            f.holes
                .as_ref()
                .and_then(|h| h.iter().map(|i| i.collect::<Vec<_>>()))
        ),
        Body::FillAck(a) => format!("FillAck g{} e{}", a.group, a.epoch),
        Body::Activate(a) => format!("Activate e{}", a.epoch),
        Body::Watch(w) => format!("Watch g{}", w.group),
        Body::Bound(b) => format!("Bound g{} b{}", b.group, b.batch_id),
        Body::ZkDeliver(d) => format!(
            "ZkDeliver g{} shard{} {:?}",
            d.group,
            d.shard,
            d.items.iter().map(|i| (i.pos, i.noops)).collect::<Vec<_>>()
        ),
        Body::ZkQuery(q) => format!("ZkQuery g{} shard{} {:?}", q.group, q.shard, q.positions),
        Body::ZkApplied(a) => format!(
            "ZkApplied g{} shard{} server{} {:?}",
            a.group,
            a.shard,
            a.server,
            a.done.iter().map(|d| d.pos).collect::<Vec<_>>()
        ),
        Body::ZkView(v) => format!("ZkView shard{} pos {}", v.shard, v.pos),
        Body::ZkViewPull(p) => format!("ZkViewPull pos {}", p.pos),
        Body::ZkFetch(f) => format!("ZkFetch from {}", f.from),
        Body::LocalRead(r) => format!(
            "LocalRead session {} id{} min {}",
            r.session, r.id, r.min_pos
        ),
        Body::LocalReadReply(r) => format!(
            "LocalReadReply session {} id{} status {} pos {}",
            r.session, r.id, r.status, r.pos
        ),
        Body::ZkRead(r) => format!("ZkRead shard{} id{} min {}", r.shard, r.id, r.min_pos),
        Body::ZkReadReply(r) => format!(
            "ZkReadReply id{} pos {}{}",
            r.id,
            r.pos,
            if r.behind { " behind" } else { "" }
        ),
        Body::ZkWatchPoll(p) => format!("ZkWatchPoll shard{} after {}", p.shard, p.after),
        Body::ZkWatchFeed(f) => format!(
            "ZkWatchFeed shard{} ({}, {}] {} triggers{}",
            f.shard,
            f.after,
            f.upto,
            f.triggers.len(),
            if f.gap { " gap" } else { "" }
        ),
        Body::ZkFetchReply(r) => {
            format!("ZkFetchReply {} records next {}", r.records.len(), r.next)
        }
        Body::LogWrite(w) => format!(
            "LogWrite id{} shard{} {:?}",
            w.id,
            w.shard,
            w.items.iter().map(|i| i.pos).collect::<Vec<_>>()
        ),
        Body::LogWriteReply(r) => format!(
            "LogWriteReply id{} {:?}",
            r.id,
            r.results
                .iter()
                .map(|x| (x.pos, x.status))
                .collect::<Vec<_>>()
        ),
        Body::LogRead(r) => format!("LogRead id{} {:?}", r.id, r.positions),
        Body::LogReadReply(r) => format!("LogReadReply id{} n{}", r.id, r.results.len()),
        Body::LogTail(t) => format!("LogTail id{}", t.id),
        Body::LogTailReply(t) => format!("LogTailReply id{} next{}", t.id, t.next),
        Body::Hello(_) | Body::Challenge(_) | Body::Proof(_) => body.name().to_string(),
        Body::StatusRequest(_) => body.name().to_string(),
        Body::StatusReply(r) => format!("StatusReply {} groups", r.groups.len()),
    }
}

impl Trace {
    pub fn new(verbose: bool, keep: usize) -> Trace {
        Trace {
            verbose,
            notes: Vec::new(),
            recent: VecDeque::new(),
            keep,
            focus: None,
            focused: Vec::new(),
        }
    }

    /// Also keeps every message about op `seq` of `session`.
    pub fn focus(mut self, session: u64, seq: u64) -> Trace {
        self.focus = Some((session, seq));
        self
    }

    /// The messages about the focused op, in order.
    pub fn focused(&self) -> &[String] {
        &self.focused
    }

    pub fn note(&mut self, now: u64, what: String) {
        let line = format!("{} {what}", stamp(now));
        if self.verbose {
            println!("{line}");
        }
        self.recent.push_back(line.clone());
        if self.recent.len() > self.keep {
            self.recent.pop_front();
        }
        self.notes.push(line);
    }

    pub fn message(&mut self, now: u64, from: Node, to: Node, body: &Body) {
        if let Some((c, s)) = self.focus {
            let about = match body {
                Body::ClientOp(o) => o.session == c && o.client_seq == s,
                Body::ClientReply(r) => r.session == c && (r.client_seq == s || r.client_seq == 0),
                // Writes of the op's entry to the shared log (its payload is stamped).
                Body::LogWrite(w) => w
                    .items
                    .iter()
                    .any(|it| mason_client::log::unstamp(&it.payload) == Some((c, s))),
                _ => false,
            };
            if about {
                self.focused
                    .push(format!("{} {from} -> {to}: {}", stamp(now), describe(body)));
            }
        }
        if !self.verbose && self.keep == 0 {
            return;
        }
        let line = format!("{} {from} -> {to}: {}", stamp(now), describe(body));
        if self.verbose {
            println!("{line}");
        }
        self.recent.push_back(line);
        if self.recent.len() > self.keep {
            self.recent.pop_front();
        }
    }

    /// Faults and leadership changes, in order.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The last events of the run.
    pub fn recent(&self) -> impl Iterator<Item = &String> {
        self.recent.iter()
    }
}
