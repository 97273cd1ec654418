use super::*;
use crate::storage::{run_disk_action, DiskDone, Entry, MemStore, Storage, StoreError};
use bytes::Bytes;
use mason_common::logmsg::LogWriteReply;

/// A node and its store; disk actions are carried out at once (syncs too, unless held).
struct Srv {
    node: LogNode,
    store: MemStore,
    hold_syncs: bool,
}

impl Srv {
    fn new(cfg: NodeConfig) -> Srv {
        Srv {
            node: LogNode::new(cfg, 0),
            store: MemStore::new(),
            hold_syncs: false,
        }
    }

    /// Carries out the disk actions (and what they lead to); returns the others.
    fn run(&mut self, mut out: Vec<NodeAction>) -> Vec<NodeAction> {
        let mut rest = Vec::new();
        while !out.is_empty() {
            let mut next = Vec::new();
            for a in out {
                match a {
                    NodeAction::Sync(_) if self.hold_syncs => rest.push(a),
                    NodeAction::Send { .. } | NodeAction::Forward(_) => rest.push(a),
                    d => match run_disk_action(&mut self.store, d).expect("disk") {
                        Some(DiskDone::Looked(t, f)) => self.node.on_looked_up(t, f, &mut next),
                        Some(DiskDone::Synced(g)) => self.node.on_synced(g, &mut next),
                        None => {}
                    },
                }
            }
            out = next;
        }
        rest
    }

    fn write(&mut self, conn: ConnId, upstream: bool, w: LogWrite) -> Vec<NodeAction> {
        let mut out = Vec::new();
        let from = if upstream {
            Source::Upstream
        } else {
            Source::Client
        };
        self.node.on_write(conn, from, w, &mut out);
        let mut rest = self.run(out);
        let mut out = Vec::new();
        self.node.flush(&mut out);
        rest.extend(self.run(out));
        rest
    }
}

const CLIENT: ConnId = 1;
const UPSTREAM: ConnId = 1000;

fn cfg(index: u32) -> NodeConfig {
    NodeConfig {
        shard: 1,
        shards: 2,
        chain_index: index,
        chain_len: 2,
        max_payload: 16,
        forward_timeout_us: 1000,
        max_read_bytes: 1 << 20,
    }
}

/// A chain of two nodes; forwards reach the tail unless `cut`.
struct Chain {
    head: Srv,
    tail: Srv,
    cut: bool,
    to_client: Vec<Body>,
}

impl Chain {
    fn new() -> Chain {
        Chain {
            head: Srv::new(cfg(0)),
            tail: Srv::new(cfg(1)),
            cut: false,
            to_client: Vec::new(),
        }
    }

    fn write(&mut self, items: Vec<LogItem>) -> Vec<LogResult> {
        let w = LogWrite {
            id: 7,
            shard: 1,
            items,
        };
        let out = self.head.write(CLIENT, false, w);
        self.run_head(out);
        match self.to_client.pop() {
            Some(Body::LogWriteReply(r)) => {
                assert_eq!(r.id, 7);
                r.results
            }
            other => panic!("no write answer: {other:?}"),
        }
    }

    fn run_head(&mut self, mut out: Vec<NodeAction>) {
        while !out.is_empty() {
            let mut next = Vec::new();
            for a in out {
                match a {
                    NodeAction::Send { conn, body } => {
                        assert_eq!(conn, CLIENT);
                        self.to_client.push(body)
                    }
                    NodeAction::Forward(w) if !self.cut => {
                        let r = self.tail_write(w);
                        self.head.node.on_forward_reply(r, &mut next);
                    }
                    NodeAction::Forward(_) => {}
                    other => panic!("head left {other:?}"),
                }
            }
            out = self.head.run(next);
        }
    }

    fn tail_write(&mut self, w: LogWrite) -> LogWriteReply {
        match self.tail.write(UPSTREAM, true, w).pop() {
            Some(NodeAction::Send {
                conn,
                body: Body::LogWriteReply(r),
            }) => {
                assert_eq!(conn, UPSTREAM);
                r
            }
            other => panic!("tail did {other:?}"),
        }
    }
}

fn read(n: &mut Srv, pos: u64) -> LogResult {
    let mut out = Vec::new();
    n.node.on_read(
        CLIENT,
        LogRead {
            id: 1,
            shard: 1,
            positions: vec![pos],
        },
        &mut out,
    );
    match n.run(out).pop() {
        Some(NodeAction::Send {
            body: Body::LogReadReply(mut r),
            ..
        }) => r.results.remove(0),
        other => panic!("no read answer: {other:?}"),
    }
}

fn data(pos: u64, s: &str) -> LogItem {
    LogItem::data(pos, Bytes::copy_from_slice(s.as_bytes()))
}

#[test]
fn a_write_is_acknowledged_once_the_whole_chain_holds_it() {
    let mut c = Chain::new();
    let r = c.write(vec![data(3, "a"), LogItem::junk(5)]);
    assert!(r.iter().all(|r| r.status() == LogStatus::Ok), "{r:?}");
    let got = read(&mut c.tail, 3);
    assert_eq!((got.status(), &got.payload[..]), (LogStatus::Ok, &b"a"[..]));
    assert!(read(&mut c.tail, 5).is_junk());
    assert_eq!(read(&mut c.head, 3).payload, got.payload);
    assert_eq!(read(&mut c.tail, 7).status(), LogStatus::NotWritten);
}

#[test]
fn positions_are_written_once() {
    let mut c = Chain::new();
    c.write(vec![data(3, "a")]);
    assert_eq!(c.write(vec![data(3, "a")])[0].status(), LogStatus::Ok);
    let taken = c.write(vec![data(3, "b")]).remove(0);
    assert_eq!(taken.status(), LogStatus::Taken);
    assert_eq!(&taken.payload[..], b"a");
    let fill = c.write(vec![LogItem::junk(3)]).remove(0);
    assert_eq!((fill.status(), fill.is_junk()), (LogStatus::Taken, false));
    assert_eq!(&read(&mut c.tail, 3).payload[..], b"a");
}

#[test]
fn bad_writes_are_refused_with_a_reason() {
    let mut c = Chain::new();
    let r = c.write(vec![
        data(4, "wrong shard"),
        data(1, "seventeen bytes!!"),
        LogItem {
            pos: 3,
            kind: LogKind::Junk as i32,
            payload: Bytes::from_static(b"x"),
        },
        LogItem {
            pos: 5,
            kind: 9,
            payload: Bytes::new(),
        },
    ]);
    let got: Vec<_> = r.iter().map(|r| r.status()).collect();
    use LogStatus::*;
    assert_eq!(got, [WrongShard, TooLarge, Invalid, Invalid]);
    for pos in [1, 3, 5] {
        assert_eq!(read(&mut c.tail, pos).status(), NotWritten);
        assert_eq!(read(&mut c.head, pos).status(), NotWritten);
    }
    let w = LogWrite {
        id: 1,
        shard: 1,
        items: vec![data(7, "x")],
    };
    match c.tail.write(CLIENT, false, w).pop() {
        Some(NodeAction::Send {
            body: Body::LogWriteReply(r),
            ..
        }) => assert_eq!(r.results[0].status(), NotHead),
        other => panic!("{other:?}"),
    }
    assert_eq!(read(&mut c.tail, 7).status(), NotWritten);
}

#[test]
fn nothing_is_acknowledged_or_read_before_it_is_durable() {
    let mut n = Srv::new(cfg(1));
    n.hold_syncs = true;
    let w = LogWrite {
        id: 2,
        shard: 1,
        items: vec![data(9, "z")],
    };
    let out = n.write(UPSTREAM, true, w);
    assert!(matches!(out.as_slice(), [NodeAction::Sync(1)]), "{out:?}");
    assert_eq!(read(&mut n, 9).status(), LogStatus::NotWritten);
    let mut tail = Vec::new();
    n.node.on_tail(CLIENT, 1, &mut tail);
    assert!(
        matches!(&tail[..], [NodeAction::Send { body: Body::LogTailReply(t), .. }] if t.next <= 9),
        "the tail counts only what is durable"
    );
    n.store.sync().unwrap();
    let mut out = Vec::new();
    n.node.on_synced(1, &mut out);
    assert!(matches!(out.as_slice(), [NodeAction::Send { .. }]));
    assert_eq!(read(&mut n, 9).status(), LogStatus::Ok);
}

/// Two writes of one position in one burst (both looked up before either appends): the
/// second is decided against the first, not against the (stale) lookup.
#[test]
fn racing_writes_of_one_position_in_one_burst_are_decided_in_order() {
    let mut n = Srv::new(cfg(1));
    let mut out = Vec::new();
    for (id, v) in [(1, "a"), (2, "b")] {
        let w = LogWrite {
            id,
            shard: 1,
            items: vec![data(3, v)],
        };
        n.node.on_write(UPSTREAM, Source::Upstream, w, &mut out);
    }
    assert_eq!(
        out.iter()
            .filter(|a| matches!(a, NodeAction::Lookup { .. }))
            .count(),
        2
    );
    let mut rest = n.run(out);
    let mut flush = Vec::new();
    n.node.flush(&mut flush);
    rest.extend(n.run(flush));
    let answers: Vec<LogStatus> = rest
        .iter()
        .filter_map(|a| match a {
            NodeAction::Send {
                body: Body::LogWriteReply(r),
                ..
            } => Some(r.results[0].status()),
            _ => None,
        })
        .collect();
    assert_eq!(answers, vec![LogStatus::Ok, LogStatus::Taken]);
    assert_eq!(&read(&mut n, 3).payload[..], b"a");
}

#[test]
fn a_write_the_tail_never_acknowledges_times_out_unacknowledged() {
    let mut c = Chain::new();
    c.cut = true;
    let mut out = Vec::new();
    let w = LogWrite {
        id: 7,
        shard: 1,
        items: vec![data(3, "a")],
    };
    out.extend(c.head.write(CLIENT, false, w));
    c.run_head(out);
    assert!(c.to_client.is_empty(), "acknowledged without the tail");
    let mut out = Vec::new();
    c.head.node.tick(5000, &mut out);
    c.run_head(out);
    match c.to_client.pop() {
        Some(Body::LogWriteReply(r)) => assert_eq!(r.results[0].status(), LogStatus::Unavailable),
        other => panic!("{other:?}"),
    }
    // The writer's retry, once the tail is back, completes the write.
    c.cut = false;
    assert_eq!(c.write(vec![data(3, "a")])[0].status(), LogStatus::Ok);
    assert_eq!(read(&mut c.tail, 3).status(), LogStatus::Ok);
}

#[test]
fn the_head_repairs_a_successor_that_lost_an_entry() {
    let mut c = Chain::new();
    c.write(vec![data(3, "a")]);
    c.tail = Srv::new(cfg(1));
    assert_eq!(read(&mut c.tail, 3).status(), LogStatus::NotWritten);
    // A reader's junk fill meets the head's data: refused, and the data goes down again.
    let r = c.write(vec![LogItem::junk(3)]).remove(0);
    assert_eq!(r.status(), LogStatus::Taken);
    assert_eq!(&read(&mut c.tail, 3).payload[..], b"a");
}

/// A read of many positions stops once its answer passes `max_read_bytes` (it once looked
/// up everything first), and covers at most MAX_READ_POSITIONS.
#[test]
fn a_read_stops_at_its_byte_budget() {
    let mut n = Srv::new(NodeConfig {
        max_payload: 1000,
        max_read_bytes: 2500,
        ..cfg(1)
    });
    let items: Vec<LogItem> = (0..10)
        .map(|i| data(2 * i + 1, &"x".repeat(1000)))
        .collect();
    n.write(
        UPSTREAM,
        true,
        LogWrite {
            id: 1,
            shard: 1,
            items,
        },
    );
    let mut out = Vec::new();
    // The same position a million times (a 16 MiB frame could say so).
    n.node.on_read(
        CLIENT,
        LogRead {
            id: 2,
            shard: 1,
            positions: vec![3; 1_000_000],
        },
        &mut out,
    );
    let looked: usize = out
        .iter()
        .map(|a| match a {
            NodeAction::Lookup { positions, .. } => positions.len(),
            _ => 0,
        })
        .sum();
    assert!(looked <= MAX_READ_POSITIONS);
    match n.run(out).pop() {
        Some(NodeAction::Send {
            body: Body::LogReadReply(r),
            ..
        }) => {
            assert_eq!(r.results.len(), 3, "1000 + 1000 + 1000 bytes passes 2500");
        }
        other => panic!("{other:?}"),
    }
}

/// A store whose copy of one position is corrupt (as a flipped bit on disk leaves it).
struct Corrupt(MemStore, u64);

impl Storage for Corrupt {
    fn get(&self, pos: u64) -> Result<Option<Entry>, StoreError> {
        if pos == self.1 {
            return Err(StoreError::Corrupt {
                pos,
                path: "seg-00000000.log".into(),
                offset: 0,
                reason: "flipped".into(),
            });
        }
        self.0.get(pos)
    }
    fn contains(&self, pos: u64) -> bool {
        pos == self.1 || self.0.contains(pos)
    }
    fn append(&mut self, pos: u64, e: &Entry, repair: bool) -> Result<(), StoreError> {
        if pos == self.1 && repair {
            self.1 = u64::MAX;
        }
        self.0.append(pos, e, repair)
    }
    fn sync(&mut self) -> Result<(), StoreError> {
        self.0.sync()
    }
    fn next_position(&self) -> u64 {
        self.0.next_position()
    }
    fn damaged(&self) -> Vec<u64> {
        vec![self.1]
    }
}

/// The head's own copy is corrupt: a racing client's value is refused, but a proxy's
/// (which bound the position) replaces it, so a CorfuMason group is not stuck.
#[test]
fn a_proxy_repairs_a_corrupt_copy_at_the_head() {
    let mut node = LogNode::new(cfg(0), 10);
    let mut store = Corrupt(MemStore::new(), 3);
    let mut write = |node: &mut LogNode, from: Source| {
        let mut out = Vec::new();
        let w = LogWrite {
            id: 1,
            shard: 1,
            items: vec![data(3, "a")],
        };
        node.on_write(CLIENT, from, w, &mut out);
        let mut sent = Vec::new();
        while !out.is_empty() {
            let mut next = Vec::new();
            for a in out {
                match a {
                    NodeAction::Send { .. } | NodeAction::Forward(_) => sent.push(a),
                    d => match run_disk_action(&mut store, d).unwrap() {
                        Some(DiskDone::Looked(t, f)) => node.on_looked_up(t, f, &mut next),
                        Some(DiskDone::Synced(g)) => node.on_synced(g, &mut next),
                        None => {}
                    },
                }
            }
            node.flush(&mut next);
            out = next;
        }
        sent
    };
    let sent = write(&mut node, Source::Client);
    assert!(matches!(
        &sent[..],
        [NodeAction::Send { body: Body::LogWriteReply(r), .. }] if r.results[0].status() == LogStatus::Corrupt
    ));
    let sent = write(&mut node, Source::Proxy);
    assert!(
        matches!(&sent[..], [NodeAction::Forward(w)] if w.items[0].pos == 3),
        "{sent:?}"
    );
}
