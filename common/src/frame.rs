//! Length-prefixed framing of [`Frame`]s: a 4-byte big-endian length, then the prost bytes.
//!
//! A frame that is longer than the limit, truncated, or does not decode is an error that
//! closes the connection it came on (the caller logs the reason); nothing else is affected.

use crate::msg::Frame;
use bytes::{BufMut, BytesMut};
use futures::StreamExt;
use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

/// Default largest frame accepted: 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("frame has no body")]
    Empty,
}

/// Reads frames from a byte stream.
pub struct FrameReader<R> {
    inner: FramedRead<R, LengthDelimitedCodec>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(read: R, max_frame: usize) -> Self {
        let codec = LengthDelimitedCodec::builder()
            .length_field_length(4)
            .max_frame_length(max_frame)
            .new_codec();
        FrameReader {
            inner: FramedRead::new(read, codec),
        }
    }

    /// The next frame; `None` at a clean end of stream. Oversized frames, a stream that ends
    /// inside a frame, and bytes that do not decode are errors.
    pub async fn next(&mut self) -> Option<Result<Frame, FrameError>> {
        let bytes = match self.inner.next().await? {
            Ok(b) => b,
            Err(e) => return Some(Err(FrameError::Io(e))),
        };
        Some(decode(&bytes))
    }

    /// The next frame's body: `None` at the end of the stream, or after logging why the
    /// connection from `peer` closes (a malformed, oversized, truncated or empty frame).
    pub async fn next_body(&mut self, peer: &str) -> Option<crate::msg::Body> {
        match self.next().await? {
            Ok(Frame { body: Some(b) }) => Some(b),
            Ok(Frame { body: None }) => {
                tracing::warn!(%peer, "closing connection: empty frame");
                None
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection: malformed frame");
                None
            }
        }
    }
}

/// Decodes one frame body.
pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
    let frame = Frame::decode(bytes)?;
    if frame.body.is_none() {
        return Err(FrameError::Empty);
    }
    Ok(frame)
}

/// Appends one length-prefixed frame to `buf`.
pub fn encode_into(frame: &Frame, buf: &mut BytesMut) {
    let len = frame.encoded_len();
    buf.reserve(len + 4);
    buf.put_u32(len as u32);
    // Encoding into a BytesMut with reserved room cannot fail.
    let _ = frame.encode(buf);
}

/// A sender of frames to one connection; dropping every clone closes the connection.
pub type FrameTx = mpsc::UnboundedSender<Frame>;

/// Spawns a task that writes every frame sent on the returned channel, coalescing whatever
/// is queued into one write. It ends when the channel closes or a write fails.
pub fn spawn_writer<W>(mut write: W, peer: String) -> FrameTx
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<Frame>();
    tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(64 << 10);
        while let Some(frame) = rx.recv().await {
            encode_into(&frame, &mut buf);
            while buf.len() < (256 << 10) {
                match rx.try_recv() {
                    Ok(f) => encode_into(&f, &mut buf),
                    Err(_) => break,
                }
            }
            if let Err(e) = write.write_all(&buf).await {
                tracing::debug!(%peer, error = %e, "write failed; closing connection");
                break;
            }
            buf.clear();
        }
        let _ = write.shutdown().await;
    });
    tx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{Body, GetSeq};

    fn sample() -> Frame {
        Frame::new(Body::GetSeq(GetSeq {
            epoch: 1,
            group: 2,
            batch_id: 3,
            space_mask: 0b101,
            counts: vec![4, 5],
            committed: 0,
        }))
    }

    #[tokio::test]
    async fn roundtrip_and_errors() {
        let mut buf = BytesMut::new();
        encode_into(&sample(), &mut buf);
        encode_into(&sample(), &mut buf);
        let mut r = FrameReader::new(&buf[..], 1024);
        assert_eq!(r.next().await.unwrap().unwrap(), sample());
        assert_eq!(r.next().await.unwrap().unwrap(), sample());
        assert!(r.next().await.is_none());

        // Oversized.
        let mut r = FrameReader::new(&buf[..], 4);
        assert!(matches!(r.next().await, Some(Err(FrameError::Io(_)))));
        // Truncated inside a frame.
        let cut = &buf[..buf.len() - 3];
        let mut r = FrameReader::new(cut, 1024);
        assert!(r.next().await.unwrap().is_ok());
        assert!(matches!(r.next().await, Some(Err(FrameError::Io(_)))));
        // Garbage body.
        let junk = [0u8, 0, 0, 3, 0xff, 0xff, 0xff];
        let mut r = FrameReader::new(&junk[..], 1024);
        assert!(matches!(r.next().await, Some(Err(FrameError::Decode(_)))));
        // Empty body.
        let empty = [0u8, 0, 0, 0];
        let mut r = FrameReader::new(&empty[..], 1024);
        assert!(matches!(r.next().await, Some(Err(FrameError::Empty))));
    }
}
