//! Serves a [`Sequencer`] on a transport: connections send `GetSeq` frames and get
//! `SeqReply` frames back. An answer goes to the connection its request came on (a request
//! that waited for earlier ids of its group is answered when they arrive, possibly while
//! another connection's request is handled). A malformed frame, or a frame of another kind,
//! closes that connection with a logged reason.

use crate::Sequencer;
use mason_common::frame::{spawn_writer, FrameReader, FrameTx};
use mason_common::msg::{Body, Frame};
use mason_common::transport::{Connection, Listener};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

struct Shared {
    seq: Sequencer,
    conns: HashMap<u64, FrameTx>,
}

/// Accepts connections forever, each served on its own task.
pub async fn serve(mut listener: Box<dyn Listener>, seq: Sequencer, max_frame: usize) {
    let shared = Arc::new(Mutex::new(Shared {
        seq,
        conns: HashMap::new(),
    }));
    let mut next_id = 1u64;
    loop {
        match listener.accept().await {
            Ok(conn) => {
                tokio::spawn(serve_conn(conn, next_id, shared.clone(), max_frame));
                next_id += 1;
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

async fn serve_conn(conn: Connection, id: u64, shared: Arc<Mutex<Shared>>, max_frame: usize) {
    let peer = conn.peer.clone();
    let tx = spawn_writer(conn.write, peer.clone());
    if let Ok(mut s) = shared.lock() {
        s.conns.insert(id, tx);
    }
    let mut reader = FrameReader::new(conn.read, max_frame);
    let mut out = Vec::new();
    while let Some(frame) = reader.next().await {
        let req = match frame {
            Ok(Frame {
                body: Some(Body::GetSeq(req)),
            }) => req,
            Ok(other) => {
                tracing::warn!(%peer, ?other, "closing connection: not a sequencer request");
                break;
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection: malformed frame");
                break;
            }
        };
        let Ok(mut s) = shared.lock() else {
            break;
        };
        s.seq.handle(&req, id, &mut out);
        for (origin, reply) in out.drain(..) {
            if let Some(tx) = s.conns.get(&origin) {
                let _ = tx.send(Frame::new(Body::SeqReply(reply)));
            }
        }
    }
    if let Ok(mut s) = shared.lock() {
        s.conns.remove(&id);
    }
}
