//! `cargo bench -p mason-common --bench frames`: what the wire's framing costs per op on
//! a proxy leader, in memory: decoding a read's worth of client ops (`FrameCodec`, the
//! decoder every connection runs), and framing the answers to them into one buffer
//! (`encode_into`, as a leader does per client connection). A loaded client sends about a
//! hundred ops in one write (docs/benchmarks.md), so the default batch is 128; payloads are
//! empty, as in `mason local`'s load. Run before and after a change to the codec or the
//! messages (`scripts/micro-ab.sh`). Built with the bench profile (no link-time
//! optimization, unlike the release binary).

use bytes::{Bytes, BytesMut};
use mason_common::codec::{encode_into, FrameCodec, DEFAULT_MAX_FRAME};
use mason_common::msg::{Body, ClientOp, ClientReply, Frame, ReplyStatus};
use tokio_util::codec::Decoder;

// The allocator the `mason` binary runs with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    divan::main();
}

fn op(k: u64) -> Frame {
    Frame::new(Body::ClientOp(ClientOp {
        session: 1 << 40 | (k % 8),
        client_seq: 1_000_000 + k,
        group: 0,
        space_mask: 1,
        payload: Bytes::new(),
        acked_below: 1_000_000 + k,
    }))
}

fn reply(k: u64) -> Frame {
    Frame::new(Body::ClientReply(ClientReply {
        session: 1 << 40 | (k % 8),
        client_seq: 1_000_000 + k,
        status: ReplyStatus::Ok as i32,
        leader_hint: 0,
        space_mask: 1,
        numbers: vec![5_000_000_000 + k],
        result: Bytes::new(),
    }))
}

/// A read of `ops` client ops, decoded frame by frame.
#[divan::bench(args = [1, 128])]
fn decode_ops(bencher: divan::Bencher, ops: u64) {
    let mut wire = BytesMut::new();
    for k in 0..ops {
        encode_into(&op(k), &mut wire);
    }
    let wire = wire.freeze();
    let mut codec = FrameCodec::new(DEFAULT_MAX_FRAME);
    bencher
        .counter(divan::counter::ItemsCount::new(ops))
        .with_inputs(|| BytesMut::from(&wire[..]))
        .bench_local_refs(|buf| {
            let mut n = 0u64;
            while let Ok(Some(f)) = codec.decode(buf) {
                n += u64::from(matches!(f.body, Some(Body::ClientOp(_))));
            }
            assert_eq!(n, ops, "every op decoded");
        });
}

/// The answers to `ops` ops, framed into one buffer.
#[divan::bench(args = [1, 128])]
fn encode_replies(bencher: divan::Bencher, ops: u64) {
    let replies: Vec<Frame> = (0..ops).map(reply).collect();
    bencher
        .counter(divan::counter::ItemsCount::new(ops))
        .bench_local(|| {
            let mut buf = BytesMut::new();
            for r in &replies {
                encode_into(r, &mut buf);
            }
            buf
        });
}
