//! Serves a [`Sequencer`] on a transport: every connection sends `GetSeq` frames and gets
//! `SeqReply` frames back in order. A malformed frame, or a frame of another kind, closes
//! that connection with a logged reason.

use crate::Sequencer;
use mason_common::frame::{spawn_writer, FrameReader};
use mason_common::msg::{Body, Frame};
use mason_common::transport::{Connection, Listener};
use std::sync::{Arc, Mutex};

/// Accepts connections forever, each served on its own task.
pub async fn serve(mut listener: Box<dyn Listener>, seq: Arc<Mutex<Sequencer>>, max_frame: usize) {
    loop {
        match listener.accept().await {
            Ok(conn) => {
                let seq = seq.clone();
                tokio::spawn(serve_conn(conn, seq, max_frame));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

async fn serve_conn(conn: Connection, seq: Arc<Mutex<Sequencer>>, max_frame: usize) {
    let peer = conn.peer.clone();
    let tx = spawn_writer(conn.write, peer.clone());
    let mut reader = FrameReader::new(conn.read, max_frame);
    while let Some(frame) = reader.next().await {
        let req = match frame {
            Ok(Frame {
                body: Some(Body::GetSeq(req)),
            }) => req,
            Ok(other) => {
                tracing::warn!(%peer, ?other, "closing connection: not a sequencer request");
                return;
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection: malformed frame");
                return;
            }
        };
        let reply = match seq.lock() {
            Ok(mut s) => s.handle(&req),
            Err(_) => return,
        };
        if tx.send(Frame::new(Body::SeqReply(reply))).is_err() {
            return;
        }
    }
}
