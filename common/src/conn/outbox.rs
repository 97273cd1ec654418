//! One connection's bounded outgoing queue ([`Outbox`]) and the task that writes it to the
//! socket. A frame is encoded as it is sent, straight into the queue's buffer (a large
//! encoded body is queued where it is, without a copy); the writer takes everything queued
//! at once, so frames queued while a write is in progress go out together, in one
//! (vectored) write. A queue closed (or past its bound, for a peer that does not read)
//! abandons even a blocked write.

use crate::codec::{CodecError, FrameCodec, Outgoing, PREFIX};
use crate::msg::Frame;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::SinkExt;
use prost::Message as _;
use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
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

/// What is queued: whole chunks (large bodies, and what the sender framed), then the
/// open buffer, into which frames are encoded as they are sent.
#[derive(Default)]
struct Queue {
    chunks: VecDeque<Bytes>,
    open: BytesMut,
    bytes: usize,
}

impl Queue {
    /// Closes the open buffer into a chunk (before a chunk that must follow it).
    fn close_open(&mut self) {
        // A buffer that grew large (a burst, a slow peer) is not kept: what is left of it
        // would keep all of it alive once written.
        let grown = self.open.capacity() > KEEP;
        if !self.open.is_empty() {
            let b = self.open.split().freeze();
            self.chunks.push_back(b);
        }
        if grown {
            self.open = BytesMut::new();
        }
    }

    /// Everything queued, in order.
    fn take(&mut self) -> Chunks {
        self.close_open();
        Chunks {
            bufs: std::mem::take(&mut self.chunks),
            left: std::mem::take(&mut self.bytes),
        }
    }
}

/// The open buffer's size kept across writes, at most.
const KEEP: usize = 256 << 10;

/// A body or framed bytes at least this large is queued as a chunk of its own (written
/// from where it is) instead of copied into the open buffer.
const CHUNK: usize = 4 << 10;

struct OutboxInner {
    queue: Mutex<Queue>,
    /// Wakes the writer when the queue goes from empty to not.
    wake: Notify,
    /// The queue's bytes, readable without the lock.
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

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The sending side of one connection's bounded outgoing queue; cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<OutboxInner>,
}

/// The receiving side, held by the task that writes to the socket.
pub struct OutboxRx {
    inner: Arc<OutboxInner>,
}

/// A queue of at most `limit` bytes of frames to `peer`. What the writer has taken and is
/// still writing counts no more, so a connection holds at most twice `limit`.
pub fn outbox(limit: usize, policy: Overflow, peer: String) -> (Outbox, OutboxRx) {
    let inner = Arc::new(OutboxInner {
        queue: Mutex::new(Queue::default()),
        wake: Notify::new(),
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
        OutboxRx { inner },
    )
}

impl Outbox {
    /// Queues one frame, encoded at once into the queue's open buffer (no copy of the
    /// frame is kept, and frames sent together go out in one write).
    pub fn send(&self, frame: Frame) -> Result<(), SendError> {
        let len = prost::Message::encoded_len(&frame);
        if PREFIX + len >= CHUNK {
            // A large frame (a Raft snapshot, say) is encoded outside the lock, into a
            // chunk of its own.
            let mut b = BytesMut::with_capacity(PREFIX + len);
            b.put_u32(len as u32);
            frame.encode_raw(&mut b);
            let b = b.freeze();
            return self.queue(PREFIX + len, |q| {
                q.close_open();
                q.chunks.push_back(b);
            });
        }
        self.queue(PREFIX + len, |q| {
            q.open.reserve(PREFIX + len);
            q.open.put_u32(len as u32);
            frame.encode_raw(&mut q.open);
        })
    }

    /// Queues one frame given as its encoded body (encode once, send to many).
    pub fn send_body(&self, body: Bytes) -> Result<(), SendError> {
        self.queue(PREFIX + body.len(), |q| {
            q.open.put_u32(body.len() as u32);
            if body.len() >= CHUNK {
                q.close_open();
                q.chunks.push_back(body);
            } else {
                q.open.extend_from_slice(&body);
            }
        })
    }

    /// Queues whole frames framed by the sender (see [`crate::codec::encode_into`]): many
    /// frames to one connection in one hand-off.
    pub fn send_framed(&self, frames: Bytes) -> Result<(), SendError> {
        if frames.is_empty() {
            return Ok(());
        }
        self.queue(frames.len(), |q| {
            if frames.len() >= CHUNK {
                q.close_open();
                q.chunks.push_back(frames);
            } else {
                q.open.extend_from_slice(&frames);
            }
        })
    }

    /// Queues `n` bytes, put in by `put`, unless they would take the queue past its
    /// bound (one frame larger than the bound still goes out alone: a snapshot, say).
    fn queue(&self, n: usize, put: impl FnOnce(&mut Queue)) -> Result<(), SendError> {
        let i = &self.inner;
        if i.shut.load(Ordering::Relaxed) {
            return Err(SendError::Closed);
        }
        let mut q = i.lock();
        // Checked again under the lock: the writer empties the queue when it ends, and
        // what is queued after that would stay until the last sender is gone.
        if i.shut.load(Ordering::Relaxed) {
            return Err(SendError::Closed);
        }
        let queued = q.bytes + n;
        if queued > i.limit && q.bytes > 0 {
            drop(q);
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
        let was_empty = q.bytes == 0;
        put(&mut q);
        q.bytes = queued;
        i.queued.store(queued, Ordering::Relaxed);
        drop(q);
        if was_empty {
            i.wake.notify_one();
        }
        Ok(())
    }

    /// Closes the connection (its tasks end, the socket is shut down).
    pub fn close(&self) {
        self.inner.shut();
    }

    pub fn is_closed(&self) -> bool {
        self.inner.shut.load(Ordering::Relaxed)
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.inner.queued.load(Ordering::Relaxed)
    }

    pub fn peer(&self) -> &str {
        &self.inner.peer
    }
}

/// With its writer gone, nothing more is queued, and what was is dropped.
impl Drop for OutboxRx {
    fn drop(&mut self) {
        self.shut();
    }
}

impl OutboxRx {
    /// Everything queued, taken off the queue (empty if nothing is).
    fn take(&mut self) -> Chunks {
        let mut q = self.inner.lock();
        self.inner.queued.store(0, Ordering::Relaxed);
        q.take()
    }

    /// Everything queued, as whole frames, if anything is (for tests that stand in for a
    /// socket).
    pub fn try_next(&mut self) -> Option<Outgoing> {
        let mut c = self.take();
        (c.remaining() > 0).then(|| Outgoing::Framed(c.copy_to_bytes(c.remaining())))
    }

    /// Drops everything queued (a link that is down).
    pub(super) fn discard(&mut self) {
        self.take();
    }

    pub(super) fn closed(&self) -> CancellationToken {
        self.inner.closed.clone()
    }

    /// Closes the queue (its writer is done) and drops what it holds: senders may keep
    /// their handles for long.
    pub(super) fn shut(&mut self) {
        self.inner.shut();
        self.take();
        self.inner.lock().open = BytesMut::new();
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
    // Anything written through the codec before (a handshake) goes first.
    SinkExt::<Outgoing>::flush(wr).await?;
    let w = wr.get_mut();
    loop {
        let mut chunks = rx.take();
        if chunks.remaining() == 0 {
            // A send after the take above left a permit: no wake-up is lost.
            rx.inner.wake.notified().await;
            continue;
        }
        w.write_all_buf(&mut chunks).await?;
        w.flush().await?;
    }
}

/// Queued chunks, written in order (several in one vectored write), and their bytes.
struct Chunks {
    bufs: VecDeque<Bytes>,
    left: usize,
}

impl Buf for Chunks {
    fn remaining(&self) -> usize {
        self.left
    }

    fn chunk(&self) -> &[u8] {
        self.bufs.front().map_or(&[], |b| &b[..])
    }

    fn advance(&mut self, n: usize) {
        let mut n = n.min(self.left);
        self.left -= n;
        while n > 0 {
            let Some(front) = self.bufs.front_mut() else {
                return;
            };
            if n < front.len() {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.bufs.pop_front();
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (b, d) in self.bufs.iter().zip(dst.iter_mut()) {
            *d = IoSlice::new(b);
            n += 1;
        }
        n
    }
}

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

    /// Frames sent every way (encoded at send, small and large encoded bodies, small and
    /// large framed runs) come out of the socket whole and in the order sent, many per
    /// write; after the writer is gone, sends are refused.
    #[tokio::test]
    async fn every_kind_of_send_comes_out_in_order() {
        use crate::msg::{Body, Heartbeat};
        use futures::StreamExt;
        use tokio_util::codec::FramedRead;
        let hb = |group| {
            Frame::new(Body::Heartbeat(Heartbeat {
                epoch: u64::from(group) << 40,
                group,
            }))
        };
        let (a, b) = tokio::io::duplex(1 << 16);
        let (o, mut rx) = outbox(64 << 20, Overflow::Disconnect, "p".into());
        let mut wr = FramedWrite::new(a, FrameCodec::new(usize::MAX));
        let writer = tokio::spawn(async move {
            let r = write_loop(&mut wr, &mut rx).await;
            drop(rx);
            r
        });
        let mut want = Vec::new();
        let mut group = 0u32;
        let mut next = |want: &mut Vec<u32>| {
            group += 1;
            want.push(group);
            hb(group)
        };
        for round in 0..50 {
            o.send(next(&mut want)).unwrap();
            o.send_body(crate::codec::encode_body(&next(&mut want)))
                .unwrap();
            // A framed run: small, or past the size that is queued as a chunk of its own.
            let n = if round % 2 == 0 { 3 } else { 400 };
            let mut framed = BytesMut::new();
            for _ in 0..n {
                crate::codec::encode_into(&next(&mut want), &mut framed);
            }
            o.send_framed(framed.freeze()).unwrap();
            if round % 3 == 0 {
                // A body large enough to be a chunk of its own, between small frames.
                let mut big = next(&mut want);
                if let Some(Body::Heartbeat(h)) = &mut big.body {
                    h.epoch = u64::MAX;
                }
                let body = crate::codec::encode_body(&big);
                let mut padded = body.to_vec();
                // Unknown fields make it large; the decoder skips them.
                prost::encoding::bytes::encode(999, &vec![7u8; 5000], &mut padded);
                o.send_body(Bytes::from(padded)).unwrap();
            }
            if round % 10 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let mut rd = FramedRead::new(b, FrameCodec::new(1 << 20));
        let mut got = Vec::new();
        while got.len() < want.len() {
            match tokio::time::timeout(std::time::Duration::from_secs(5), rd.next()).await {
                Ok(Some(Ok(Frame {
                    body: Some(Body::Heartbeat(h)),
                }))) => got.push(h.group),
                other => panic!("after {} frames: {other:?}", got.len()),
            }
        }
        assert_eq!(got, want);
        assert_eq!(o.queued(), 0);
        o.close();
        let _ = writer.await;
        assert!(o.is_closed());
        assert_eq!(o.send(hb(1)), Err(SendError::Closed));
    }

    /// A queue whose writer is gone holds nothing, though senders keep their handles; and
    /// a buffer that grew large for a burst is not kept once written.
    #[test]
    fn nothing_is_held_past_its_write_or_its_writer() {
        use crate::msg::{Body, Heartbeat};
        let hb = || Frame::new(Body::Heartbeat(Heartbeat { epoch: 1, group: 2 }));
        let (o, mut rx) = outbox(64 << 20, Overflow::Disconnect, "p".into());
        for _ in 0..50_000 {
            o.send(hb()).unwrap();
        }
        assert!(o.inner.lock().open.capacity() > KEEP);
        let taken = rx.take();
        assert_eq!(taken.remaining(), o_len(&hb()) * 50_000);
        drop(taken);
        assert_eq!(
            o.inner.lock().open.capacity(),
            0,
            "the burst's buffer is kept"
        );
        for _ in 0..1000 {
            o.send(hb()).unwrap();
        }
        drop(rx);
        assert_eq!(o.send(hb()), Err(SendError::Closed));
        let q = o.inner.lock();
        assert!(q.chunks.is_empty() && q.bytes == 0 && q.open.capacity() == 0);
    }

    fn o_len(f: &Frame) -> usize {
        PREFIX + prost::Message::encoded_len(f)
    }
}
