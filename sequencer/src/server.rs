//! Serves a [`SeqNode`] on a transport. Proxy processes introduce themselves with a
//! `SeqHello` (which groups they host) so that a backup can reach every group; clients of
//! the direct baseline just send `GetSeq`. An answer goes to the connection its request
//! came on (a request that waited for earlier ids of its group is answered when they
//! arrive, possibly while another connection's request is handled). A malformed frame, or
//! a frame a sequencer never accepts, closes that connection with a logged reason. A timer
//! drives the node's periodic work (takeover re-sends, garbage-collection watermarks).

use crate::node::{SeqNode, SeqOut};
use mason_common::frame::{spawn_writer, FrameReader, FrameTx};
use mason_common::msg::{Body, Frame};
use mason_common::transport::{Connection, Listener};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Conn {
    tx: FrameTx,
    /// The groups the proxy process on this connection hosts (empty until its hello).
    groups: Vec<u32>,
    proxy: bool,
}

struct Shared {
    node: SeqNode,
    conns: HashMap<u64, Conn>,
    start: Instant,
    out: Vec<SeqOut>,
}

impl Shared {
    fn now(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    fn send_out(&mut self) {
        for o in self.out.drain(..) {
            match o {
                SeqOut::Reply(origin, body) => {
                    if let Some(c) = self.conns.get(&origin) {
                        let _ = c.tx.send(Frame::new(body));
                    }
                }
                SeqOut::Group(g, body) => {
                    for c in self.conns.values().filter(|c| c.groups.contains(&g)) {
                        let _ = c.tx.send(Frame::new(body.clone()));
                    }
                }
                SeqOut::Broadcast(body) => {
                    for c in self.conns.values().filter(|c| c.proxy) {
                        let _ = c.tx.send(Frame::new(body.clone()));
                    }
                }
            }
        }
    }
}

/// Accepts connections forever, each served on its own task.
pub async fn serve(mut listener: Box<dyn Listener>, node: SeqNode, max_frame: usize) {
    let shared = Arc::new(Mutex::new(Shared {
        node,
        conns: HashMap::new(),
        start: Instant::now(),
        out: Vec::new(),
    }));
    tokio::spawn(ticker(shared.clone()));
    let mut next_id = 1u64;
    loop {
        match listener.accept().await {
            Ok(conn) => {
                tokio::spawn(serve_conn(conn, next_id, shared.clone(), max_frame));
                next_id += 1;
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn ticker(shared: Arc<Mutex<Shared>>) {
    let mut every = tokio::time::interval(Duration::from_millis(2));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        every.tick().await;
        let Ok(mut s) = shared.lock() else {
            return;
        };
        let now = s.now();
        let s = &mut *s;
        s.node.tick(now, &mut s.out);
        s.send_out();
    }
}

async fn serve_conn(conn: Connection, id: u64, shared: Arc<Mutex<Shared>>, max_frame: usize) {
    let peer = conn.peer.clone();
    let tx = spawn_writer(conn.write, peer.clone());
    if let Ok(mut s) = shared.lock() {
        s.conns.insert(
            id,
            Conn {
                tx,
                groups: Vec::new(),
                proxy: false,
            },
        );
    }
    let mut reader = FrameReader::new(conn.read, max_frame);
    while let Some(body) = reader.next_body(&peer).await {
        let Ok(mut s) = shared.lock() else {
            break;
        };
        let s = &mut *s;
        if let Body::SeqHello(h) = &body {
            if let Some(c) = s.conns.get_mut(&id) {
                c.groups = h.groups.clone();
                c.proxy = true;
            }
        }
        let now = s.now();
        if let Err(why) = s.node.on_frame(id, body, now, &mut s.out) {
            tracing::warn!(%peer, why, "closing connection: not a sequencer message");
            s.out.clear();
            break;
        }
        s.send_out();
    }
    if let Ok(mut s) = shared.lock() {
        s.conns.remove(&id);
    }
}
