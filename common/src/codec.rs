//! The wire's framing as a tokio-util codec, used on both sides of every connection: a
//! 4-byte big-endian length, then the prost bytes of one [`Frame`].
//!
//! A length prefix buys nothing until its bytes arrive: the decoder never reserves the
//! announced length up front (the read buffer grows only with what was received), and a
//! buffer that grew for one large frame is given back once it is drained. Each connection
//! has its own limit, set from its role after the handshake (a few hundred bytes before
//! it); a longer frame is an error that closes that connection. Bodies are decoded from
//! frozen [`Bytes`], so payloads are not copied.

use crate::msg::Frame;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;
use tokio_util::codec::{Decoder, Encoder};

/// Bytes of the length prefix.
pub const PREFIX: usize = 4;
/// The default largest frame between authenticated peers (Raft messages and snapshots,
/// promises, log writes). Nothing is reserved for it before it arrives.
pub const DEFAULT_MAX_FRAME: usize = 256 << 20;
/// A read buffer at least this large is replaced by a small one once it is empty.
const SHRINK_ABOVE: usize = 256 << 10;
/// What a connection's read buffer starts with.
pub const READ_BUFFER: usize = 4 << 10;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {len} bytes exceeds this connection's limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("frame does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("frame has no body")]
    Empty,
    #[error("the stream ended inside a frame ({0} bytes of it received)")]
    Truncated(usize),
}

/// Length-prefixed [`Frame`]s with a per-connection size limit.
#[derive(Clone, Debug)]
pub struct FrameCodec {
    max: usize,
}

impl FrameCodec {
    pub fn new(max: usize) -> FrameCodec {
        FrameCodec { max }
    }

    /// The largest body accepted (and sent) from now on.
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// The body's length, once the prefix has arrived and passed the limit.
    fn announced(&self, src: &BytesMut) -> Result<Option<usize>, CodecError> {
        if src.len() < PREFIX {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len > self.max {
            return Err(CodecError::TooLong { len, max: self.max });
        }
        Ok(Some(len))
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        let Some(len) = self.announced(src)? else {
            return Ok(None);
        };
        if src.len() < PREFIX + len {
            return Ok(None);
        }
        src.advance(PREFIX);
        // A small frame in a large buffer is copied out: as a slice it would keep the
        // whole buffer alive for as long as it is kept (an op held back, say).
        let body = if src.capacity() > SHRINK_ABOVE && len < src.capacity() / 8 {
            let b = Bytes::copy_from_slice(&src[..len]);
            src.advance(len);
            b
        } else {
            src.split_to(len).freeze()
        };
        if src.is_empty() && src.capacity() > SHRINK_ABOVE {
            *src = BytesMut::with_capacity(READ_BUFFER);
        }
        decode_body(body).map(Some)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        match self.decode(src)? {
            Some(f) => Ok(Some(f)),
            None if src.is_empty() => Ok(None),
            None => Err(CodecError::Truncated(src.len())),
        }
    }
}

/// Decodes one frame body (without its prefix).
pub fn decode_body(body: Bytes) -> Result<Frame, CodecError> {
    let frame = Frame::decode(body)?;
    if frame.body.is_none() {
        return Err(CodecError::Empty);
    }
    Ok(frame)
}

/// One frame's body, encoded once (to be sent on one or many connections).
pub fn encode_body(frame: &Frame) -> Bytes {
    Bytes::from(frame.encode_to_vec())
}

/// Appends one length-prefixed frame to `buf`.
pub fn encode_into(frame: &Frame, buf: &mut BytesMut) {
    let len = frame.encoded_len();
    buf.reserve(len + PREFIX);
    buf.put_u32(len as u32);
    // Encoding into a BytesMut with reserved room cannot fail.
    let _ = frame.encode(buf);
}

/// Frames bound for several connections, framed into one buffer per connection in the
/// order they were added, so that each connection's go out in one hand-off
/// ([`crate::conn::Outbox::send_framed`]).
#[derive(Debug)]
pub struct FramesPerConn<K>(Vec<(K, BytesMut)>);

impl<K> Default for FramesPerConn<K> {
    fn default() -> Self {
        FramesPerConn(Vec::new())
    }
}

impl<K: PartialEq> FramesPerConn<K> {
    /// Adds `frame` for connection `to`, after those added for it before.
    pub fn add(&mut self, to: K, frame: &Frame) {
        // Looked up from the latest: answers to one connection mostly come together.
        let i = match self.0.iter().rposition(|(c, _)| *c == to) {
            Some(i) => i,
            None => {
                self.0.push((to, BytesMut::new()));
                self.0.len() - 1
            }
        };
        encode_into(frame, &mut self.0[i].1);
    }

    /// Each connection's frames, in the order the connections were first added to.
    pub fn drain(&mut self) -> impl Iterator<Item = (K, Bytes)> + '_ {
        self.0.drain(..).map(|(c, b)| (c, b.freeze()))
    }
}

/// What goes out on a connection: a frame to encode, one encoded already (to be sent on
/// many connections, encoded once), or frames the sender framed itself (many at once).
#[derive(Clone, Debug)]
pub enum Outgoing {
    /// A frame and its encoded length (computed once, when it is queued).
    Frame(Frame, usize),
    Body(Bytes),
    /// Whole frames, each with its prefix (see [`encode_into`]), written as they are.
    Framed(Bytes),
}

impl Outgoing {
    /// Bytes on the wire, prefix included.
    pub fn wire_len(&self) -> usize {
        match self {
            Outgoing::Frame(_, len) => PREFIX + *len,
            Outgoing::Body(b) => PREFIX + b.len(),
            Outgoing::Framed(b) => b.len(),
        }
    }
}

impl Encoder<Outgoing> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, o: Outgoing, dst: &mut BytesMut) -> Result<(), CodecError> {
        match o {
            Outgoing::Frame(f, len) => {
                if len > self.max {
                    return Err(CodecError::TooLong { len, max: self.max });
                }
                dst.reserve(len + PREFIX);
                dst.put_u32(len as u32);
                f.encode_raw(dst);
                Ok(())
            }
            Outgoing::Body(b) => Encoder::<Bytes>::encode(self, b, dst),
            Outgoing::Framed(b) => {
                let mut at = 0;
                while let Some(p) = b.get(at..at + PREFIX) {
                    let len = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize;
                    if len > self.max {
                        return Err(CodecError::TooLong { len, max: self.max });
                    }
                    at += PREFIX + len;
                }
                dst.extend_from_slice(&b);
                Ok(())
            }
        }
    }
}

/// Encodes an already encoded body (see [`encode_body`]) with its prefix.
impl Encoder<Bytes> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, body: Bytes, dst: &mut BytesMut) -> Result<(), CodecError> {
        if body.len() > self.max {
            return Err(CodecError::TooLong {
                len: body.len(),
                max: self.max,
            });
        }
        dst.reserve(PREFIX + body.len());
        dst.put_u32(body.len() as u32);
        dst.extend_from_slice(&body);
        Ok(())
    }
}

impl Encoder<&Frame> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        let len = frame.encoded_len();
        if len > self.max {
            return Err(CodecError::TooLong { len, max: self.max });
        }
        encode_into(frame, dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{Body, GetSeq};
    use futures::StreamExt;
    use tokio_util::codec::FramedRead;

    fn sample() -> Frame {
        Frame::new(Body::GetSeq(GetSeq {
            epoch: 1,
            group: 2,
            batch_id: 3,
            space_mask: 0b101,
            counts: vec![4, 5],
            ..Default::default()
        }))
    }

    #[tokio::test]
    async fn roundtrip_and_every_error() {
        let mut buf = BytesMut::new();
        encode_into(&sample(), &mut buf);
        encode_into(&sample(), &mut buf);
        let mut r = FramedRead::new(&buf[..], FrameCodec::new(1024));
        assert_eq!(r.next().await.unwrap().unwrap(), sample());
        assert_eq!(r.next().await.unwrap().unwrap(), sample());
        assert!(r.next().await.is_none());

        let mut r = FramedRead::new(&buf[..], FrameCodec::new(4));
        assert!(matches!(
            r.next().await,
            Some(Err(CodecError::TooLong { max: 4, .. }))
        ));
        let cut = &buf[..buf.len() - 3];
        let mut r = FramedRead::new(cut, FrameCodec::new(1024));
        assert!(r.next().await.unwrap().is_ok());
        assert!(matches!(
            r.next().await,
            Some(Err(CodecError::Truncated(_)))
        ));
        let junk = [0u8, 0, 0, 3, 0xff, 0xff, 0xff];
        let mut r = FramedRead::new(&junk[..], FrameCodec::new(1024));
        assert!(matches!(r.next().await, Some(Err(CodecError::Decode(_)))));
        let empty = [0u8, 0, 0, 0];
        let mut r = FramedRead::new(&empty[..], FrameCodec::new(1024));
        assert!(matches!(r.next().await, Some(Err(CodecError::Empty))));
    }

    /// Frames framed by their sender go out as they are, between frames encoded by the
    /// writer, in order, and each decodes on its own.
    #[tokio::test]
    async fn framed_frames_go_out_whole_and_in_order() {
        let other = Frame::new(Body::GetSeq(GetSeq {
            batch_id: 9,
            ..Default::default()
        }));
        let mut two = BytesMut::new();
        encode_into(&sample(), &mut two);
        encode_into(&other, &mut two);
        let framed = Outgoing::Framed(two.freeze());
        assert_eq!(
            framed.wire_len(),
            2 * PREFIX + sample().encoded_len() + other.encoded_len()
        );
        let mut c = FrameCodec::new(1024);
        let mut buf = BytesMut::new();
        c.encode(Outgoing::Body(encode_body(&other)), &mut buf)
            .unwrap();
        assert!(matches!(
            FrameCodec::new(8).encode(framed.clone(), &mut BytesMut::new()),
            Err(CodecError::TooLong { max: 8, .. })
        ));
        c.encode(framed, &mut buf).unwrap();
        c.encode(Outgoing::Frame(sample(), sample().encoded_len()), &mut buf)
            .unwrap();
        let mut r = FramedRead::new(&buf[..], FrameCodec::new(1024));
        for want in [&other, &sample(), &other, &sample()] {
            assert_eq!(&r.next().await.unwrap().unwrap(), want);
        }
        assert!(r.next().await.is_none());
    }

    /// Frames added for several connections come out per connection, each connection's in
    /// the order added, the connections in the order first seen.
    #[tokio::test]
    async fn frames_per_connection_keep_their_order() {
        let f = |id: u64| {
            Frame::new(Body::GetSeq(GetSeq {
                batch_id: id,
                ..Default::default()
            }))
        };
        let mut per = FramesPerConn::default();
        for (conn, id) in [(7u64, 1), (3, 2), (7, 3), (7, 4), (3, 5)] {
            per.add(conn, &f(id));
        }
        let mut got = Vec::new();
        for (conn, bytes) in per.drain() {
            let mut r = FramedRead::new(&bytes[..], FrameCodec::new(1024));
            let mut ids = Vec::new();
            while let Some(fr) = r.next().await {
                match fr.unwrap().body {
                    Some(Body::GetSeq(g)) => ids.push(g.batch_id),
                    other => panic!("{other:?}"),
                }
            }
            got.push((conn, ids));
        }
        assert_eq!(got, vec![(7, vec![1, 3, 4]), (3, vec![2, 5])]);
        assert_eq!(per.drain().count(), 0);
    }

    /// A bare prefix announcing 16 MiB reserves nothing beyond what arrived.
    #[test]
    fn an_announced_length_reserves_nothing() {
        let mut c = FrameCodec::new(32 << 20);
        let mut src = BytesMut::with_capacity(READ_BUFFER);
        src.extend_from_slice(&(16u32 << 20).to_be_bytes());
        assert!(c.decode(&mut src).unwrap().is_none());
        assert!(src.capacity() <= READ_BUFFER, "{}", src.capacity());
        src.extend_from_slice(&[0u8; 1000]);
        assert!(c.decode(&mut src).unwrap().is_none());
        assert!(src.capacity() <= READ_BUFFER);
    }

    /// A buffer that grew for a large frame shrinks once drained.
    #[test]
    fn a_drained_large_buffer_is_given_back() {
        let mut c = FrameCodec::new(4 << 20);
        let big = Frame::new(Body::GetSeq(GetSeq {
            counts: vec![7; 400_000],
            ..Default::default()
        }));
        let mut src = BytesMut::new();
        encode_into(&big, &mut src);
        assert!(src.capacity() > SHRINK_ABOVE);
        assert_eq!(c.decode(&mut src).unwrap().unwrap(), big);
        assert!(src.capacity() <= READ_BUFFER);
    }

    #[test]
    fn the_encoder_refuses_what_the_peer_would_refuse() {
        let mut c = FrameCodec::new(8);
        let mut dst = BytesMut::new();
        assert!(Encoder::<&Frame>::encode(&mut c, &sample(), &mut dst).is_err());
        assert!(dst.is_empty());
        c.set_max(1024);
        Encoder::<Bytes>::encode(&mut c, encode_body(&sample()), &mut dst).unwrap();
        assert_eq!(c.decode(&mut dst).unwrap().unwrap(), sample());
    }
}
