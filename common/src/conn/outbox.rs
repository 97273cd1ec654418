//! One connection's bounded outgoing queue ([`Outbox`]) and the task that writes it to the
//! socket: frames queued while a write is in progress go out together, and a queue closed
//! (or past its bound, for a peer that does not read) abandons even a blocked write.

use crate::codec::{CodecError, FrameCodec, Outgoing};
use crate::msg::Frame;
use bytes::Bytes;
use futures::SinkExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::codec::FramedWrite;
use tokio_util::sync::CancellationToken;

/// What an outgoing queue does when a frame would take it past its bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Close the connection: its peer is not reading (clients, watchers, anyone accepted).
    Disconnect,
    /// Drop the frame (links to peers whose protocols re-send: Raft, the sequencer's).
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("the connection is closed")]
    Closed,
    #[error("the outgoing queue is full")]
    Full,
}

struct OutboxInner {
    tx: mpsc::UnboundedSender<(usize, Outgoing)>,
    queued: AtomicUsize,
    limit: usize,
    policy: Overflow,
    /// Set with `closed` (a flag is cheaper to check per frame than the token).
    shut: AtomicBool,
    closed: CancellationToken,
    peer: String,
}

impl OutboxInner {
    fn shut(&self) {
        self.shut.store(true, Ordering::Relaxed);
        self.closed.cancel();
    }
}

/// The sending side of one connection's bounded outgoing queue; cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<OutboxInner>,
}

/// The receiving side, held by the task that writes to the socket.
pub struct OutboxRx {
    rx: mpsc::UnboundedReceiver<(usize, Outgoing)>,
    inner: Arc<OutboxInner>,
}

/// A queue of at most `limit` bytes of frames to `peer`.
pub fn outbox(limit: usize, policy: Overflow, peer: String) -> (Outbox, OutboxRx) {
    let (tx, rx) = mpsc::unbounded_channel();
    let inner = Arc::new(OutboxInner {
        tx,
        queued: AtomicUsize::new(0),
        limit,
        policy,
        shut: AtomicBool::new(false),
        closed: CancellationToken::new(),
        peer,
    });
    (
        Outbox {
            inner: inner.clone(),
        },
        OutboxRx { rx, inner },
    )
}

impl Outbox {
    /// Queues one frame (encoded by the writer, straight into its buffer).
    pub fn send(&self, frame: Frame) -> Result<(), SendError> {
        let len = prost::Message::encoded_len(&frame);
        self.queue(Outgoing::Frame(frame, len))
    }

    /// Queues one frame given as its encoded body (encode once, send to many).
    pub fn send_body(&self, body: Bytes) -> Result<(), SendError> {
        self.queue(Outgoing::Body(body))
    }

    /// Queues whole frames framed by the sender (see [`crate::codec::encode_into`]): many
    /// frames to one connection in one hand-off.
    pub fn send_framed(&self, frames: Bytes) -> Result<(), SendError> {
        if frames.is_empty() {
            return Ok(());
        }
        self.queue(Outgoing::Framed(frames))
    }

    fn queue(&self, o: Outgoing) -> Result<(), SendError> {
        let i = &self.inner;
        if i.shut.load(Ordering::Relaxed) {
            return Err(SendError::Closed);
        }
        let n = o.wire_len();
        let queued = i.queued.fetch_add(n, Ordering::Relaxed) + n;
        // One frame larger than the bound still goes out alone (a snapshot, say).
        if queued > i.limit && queued > n {
            i.queued.fetch_sub(n, Ordering::Relaxed);
            return match i.policy {
                Overflow::Drop => Err(SendError::Full),
                Overflow::Disconnect => {
                    tracing::warn!(
                        peer = %i.peer,
                        queued,
                        limit = i.limit,
                        "closing connection: its outgoing queue passed the bound (the peer is not reading)"
                    );
                    i.shut();
                    Err(SendError::Closed)
                }
            };
        }
        i.tx.send((n, o)).map_err(|_| {
            i.queued.fetch_sub(n, Ordering::Relaxed);
            SendError::Closed
        })
    }

    /// Closes the connection (its tasks end, the socket is shut down).
    pub fn close(&self) {
        self.inner.shut();
    }

    pub fn is_closed(&self) -> bool {
        self.inner.shut.load(Ordering::Relaxed) || self.inner.tx.is_closed()
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.inner.queued.load(Ordering::Relaxed)
    }

    pub fn peer(&self) -> &str {
        &self.inner.peer
    }
}

impl OutboxRx {
    /// The next frame to write (taken off the count of queued bytes). Closing is seen by
    /// [`write_loop`], which stops waiting here.
    async fn recv(&mut self) -> Option<Outgoing> {
        let (n, o) = self.rx.recv().await?;
        self.written(n);
        Some(o)
    }

    fn try_recv(&mut self) -> Option<Outgoing> {
        let (n, o) = self.rx.try_recv().ok()?;
        self.written(n);
        Some(o)
    }

    /// The next queued frame, if any (for tests that stand in for a socket).
    pub fn try_next(&mut self) -> Option<Outgoing> {
        self.try_recv()
    }

    fn written(&self, n: usize) {
        self.inner.queued.fetch_sub(n, Ordering::Relaxed);
    }

    /// Drops everything queued (a link that is down).
    pub(super) fn discard(&mut self) {
        while self.try_recv().is_some() {}
    }

    pub(super) fn closed(&self) -> CancellationToken {
        self.inner.closed.clone()
    }

    /// Closes the queue (its writer is done).
    pub(super) fn shut(&self) {
        self.inner.shut();
    }
}

/// Writes what is queued, many frames per write, until the queue closes or a write fails.
/// Closing the queue also abandons a write in progress: a peer that does not read must
/// not hold its connection open.
pub(super) async fn write_loop<W: AsyncWrite + Unpin>(
    wr: &mut FramedWrite<W, FrameCodec>,
    rx: &mut OutboxRx,
) -> Result<(), CodecError> {
    let closed = rx.closed();
    tokio::select! {
        r = write_all_queued(wr, rx) => r,
        _ = closed.cancelled() => Ok(()),
    }
}

async fn write_all_queued<W: AsyncWrite + Unpin>(
    wr: &mut FramedWrite<W, FrameCodec>,
    rx: &mut OutboxRx,
) -> Result<(), CodecError> {
    while let Some(o) = rx.recv().await {
        wr.feed(o).await?;
        while wr.write_buffer().len() < COALESCE {
            let Some(o) = rx.try_recv() else { break };
            wr.feed(o).await?;
        }
        SinkExt::<Outgoing>::flush(wr).await?;
    }
    Ok(())
}

/// Frames queued while a write is in progress go out together, up to this many bytes.
const COALESCE: usize = 256 << 10;

/// Spawns a task that writes what is queued on the returned [`Outbox`] to `wr` (at most
/// `limit` bytes queued; past it, `policy` applies), until it closes or a write fails.
pub fn spawn_writer<W>(
    mut wr: FramedWrite<W, FrameCodec>,
    limit: usize,
    policy: Overflow,
    peer: String,
) -> Outbox
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (out, mut rx) = outbox(limit, policy, peer);
    tokio::spawn(async move {
        if let Err(e) = write_loop(&mut wr, &mut rx).await {
            tracing::debug!(peer = %rx.inner.peer, error = %e, "write failed; closing connection");
        }
        rx.shut();
        let _ = wr.get_mut().shutdown().await;
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame larger than an empty queue's bound goes out alone; a second is refused.
    #[test]
    fn one_oversized_frame_fits_an_empty_queue() {
        let (o, mut rx) = outbox(100, Overflow::Drop, "p".into());
        assert!(o.send_body(Bytes::from(vec![0u8; 500])).is_ok());
        assert_eq!(
            o.send_body(Bytes::from(vec![0u8; 10])),
            Err(SendError::Full)
        );
        assert!(rx.try_next().is_some());
        assert_eq!(o.queued(), 0);
        assert!(o.send_body(Bytes::from(vec![0u8; 10])).is_ok());
    }
}
