//! `cargo bench -p mason-proxy --bench group`: what one batch costs a proxy group's state
//! machines, with no sockets, disk or runtime: the leader's batching, the sequencer's
//! request and answer (a real sequencer node), Raft's append to both followers and their
//! acknowledgements, every replica's apply, and the leader's answers. The three replicas
//! and the sequencers run in memory on the group tests' harness (`tests/harness`), every
//! write durable at once. Each iteration sends one batch of `ops` ops (spread over the
//! harness's 8 clients, each op saying its client holds every earlier answer) and waits
//! until every op is answered. The time per op here is the protocol's own CPU; a loaded
//! `mason local` spends several times more per op, mostly in the kernel
//! (docs/benchmarks.md). Run before and after a change to the hot path (`scripts/micro-ab.sh`).
//! Built with the bench profile (no link-time optimization, unlike the release binary).

#[path = "../tests/harness/mod.rs"]
mod harness;

use harness::{cfg, session, Net, CLIENTS};
use mason_common::msg::{ClientOp, ReplyStatus};

// The allocator the `mason` binary runs with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    divan::main();
}

/// One batch of `ops` ops through the group, answered.
#[divan::bench(args = [1, 16, 128, 1024])]
fn batch(bencher: divan::Bencher, ops: u64) {
    let (mut net, l) = Net::start(cfg(1));
    let mut seqs = [0u64; CLIENTS as usize];
    bencher
        .counter(divan::counter::ItemsCount::new(ops))
        .bench_local(|| {
            let batch: Vec<ClientOp> = (0..ops)
                .map(|k| {
                    let c = (k % CLIENTS) as usize;
                    seqs[c] += 1;
                    ClientOp {
                        session: session(c as u64 + 1),
                        client_seq: seqs[c],
                        group: 0,
                        space_mask: 1,
                        payload: bytes::Bytes::new(),
                        acked_below: seqs[c],
                    }
                })
                .collect();
            net.send(l, &batch);
            let answered = net
                .replies
                .iter()
                .filter(|(_, _, r)| r.status == ReplyStatus::Ok as i32)
                .count();
            assert_eq!(answered as u64, ops, "every op of the batch answered");
            forget(&mut net);
        });
}

/// Drops what the harness recorded (it keeps everything for the tests' checks), keeping
/// each replica's last applied batch, against which the next is checked.
fn forget(net: &mut Net) {
    net.replies.clear();
    net.asks.clear();
    net.to_seq.clear();
    for b in &mut net.bound {
        let last = b.pop();
        b.clear();
        b.extend(last);
    }
}
