//! Sequencer capacity: the state machine alone on one core, and a server over the network
//! driven by pipelined, batched requests. Both report numbers handed out per second.
//!
//! Over the network the bench speaks as proxy replica 0 of triple 0 for groups
//! `0..groups`, from batch id 1: it needs a sequencer of its own (a fresh primary, started
//! with at least that many `--groups`), never one that real proxies use.

use crate::{Sequencer, SequencerConfig};
use bytes::BytesMut;
use futures::{FutureExt, StreamExt};
use mason_common::auth::{ClusterKey, Role, RoleKind};
use mason_common::codec::{encode_into, FrameCodec};
use mason_common::conn::{dial, spawn_writer, Outbox, Overflow};
use mason_common::msg::{Body, Frame, GetSeq, SeqHello, SeqStatus};
use mason_common::transport::{BoxRead, Transport};
use mason_common::types::SpaceMask;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::codec::FramedRead;

#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub spaces: u32,
    /// Numbers asked per space per request (a proxy batch's size).
    pub batch: u32,
    pub groups: u32,
    pub duration: Duration,
}

#[derive(Clone, Debug)]
pub struct BenchResult {
    pub requests: u64,
    pub numbers: u64,
    pub elapsed: Duration,
}

impl BenchResult {
    pub fn requests_per_sec(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    pub fn numbers_per_sec(&self) -> f64 {
        self.numbers as f64 / self.elapsed.as_secs_f64()
    }
}

/// The most answers taken from one connection before its next requests are sent.
const MOST_PER_TURN: usize = 1024;
/// How long a connection waits for its next answer before the bench gives up on it.
const ANSWER_WAIT: Duration = Duration::from_secs(10);

/// Keeps `pipeline` requests in flight on one connection until `stop_at`, then waits for
/// every answer. Answers are taken as they come, all that have arrived at once, and as
/// many new requests go out in one write: the load generator spends little of the CPU it
/// shares with the sequencer.
async fn run_connection(
    mut rd: FramedRead<BoxRead, FrameCodec>,
    tx: Outbox,
    cfg: &BenchConfig,
    group: u32,
    pipeline: usize,
    stop_at: Instant,
    done: &AtomicU64,
) -> anyhow::Result<()> {
    let mut frame = Frame::new(Body::GetSeq(request(cfg, group, 0)));
    let mut next_id = 0u64;
    let mut buf = BytesMut::new();
    let mut send = |n: usize, buf: &mut BytesMut| {
        for _ in 0..n {
            next_id += 1;
            if let Some(Body::GetSeq(r)) = &mut frame.body {
                r.batch_id = next_id;
            }
            encode_into(&frame, buf);
        }
        let _ = tx.send_framed(buf.split().freeze());
    };
    send(pipeline, &mut buf);
    let mut outstanding = pipeline;
    while outstanding > 0 {
        let Ok(mut next) = tokio::time::timeout(ANSWER_WAIT, rd.next()).await else {
            anyhow::bail!("group {group}: {outstanding} requests unanswered after {ANSWER_WAIT:?}");
        };
        let mut answered = 0;
        loop {
            match next {
                Some(Ok(Frame {
                    body: Some(Body::SeqReply(r)),
                })) if r.status == SeqStatus::Ok as i32 && !r.repeat => answered += 1,
                Some(Ok(Frame {
                    body: Some(Body::SeqReply(r)),
                })) => anyhow::bail!(
                    "group {group}: the sequencer did not grant a fresh batch (status {}, \
                     repeat {}): is it fresh, and serving this many groups?",
                    r.status,
                    r.repeat
                ),
                Some(Ok(f)) => anyhow::bail!("group {group}: not an answer: {f:?}"),
                Some(Err(e)) => anyhow::bail!("group {group}: {e}"),
                None => anyhow::bail!(
                    "group {group}: the sequencer closed the connection (its log says why: is \
                     it fresh, and serving at least this many groups?)"
                ),
            }
            if answered == MOST_PER_TURN {
                break;
            }
            match rd.next().now_or_never() {
                Some(n) => next = n,
                None => break,
            }
        }
        outstanding -= answered;
        done.fetch_add(answered as u64, Ordering::Relaxed);
        if Instant::now() < stop_at {
            outstanding += answered;
            send(answered, &mut buf);
        }
    }
    Ok(())
}

fn request(cfg: &BenchConfig, group: u32, batch_id: u64) -> GetSeq {
    let mask = SpaceMask::first(cfg.spaces);
    GetSeq {
        epoch: 1,
        group,
        batch_id,
        space_mask: mask.0,
        counts: vec![cfg.batch; mask.len()],
        committed: 0,
        session: 0,
    }
}

/// Drives the state machine directly on this thread.
pub fn in_process(cfg: &BenchConfig) -> BenchResult {
    let mut seq = Sequencer::new(SequencerConfig {
        spaces: cfg.spaces,
        ..SequencerConfig::default()
    });
    let groups = cfg.groups.max(1);
    let mut reqs: Vec<GetSeq> = (0..groups).map(|g| request(cfg, g, 0)).collect();
    let start = Instant::now();
    let mut n = 0u64;
    let mut id = 1u64;
    let mut out = Vec::with_capacity(4);
    loop {
        for r in reqs.iter_mut() {
            r.batch_id = id;
            seq.handle(r, 0, &mut out);
            std::hint::black_box(&out);
            out.clear();
        }
        id += 1;
        n += u64::from(groups);
        if n % 65536 < u64::from(groups) && start.elapsed() >= cfg.duration {
            break;
        }
    }
    let elapsed = start.elapsed();
    BenchResult {
        requests: n,
        numbers: n * u64::from(cfg.batch) * u64::from(cfg.spaces),
        elapsed,
    }
}

/// Opens `cfg.groups` connections (one group each) with `pipeline` requests in flight.
pub async fn over_network(
    transport: Arc<dyn Transport>,
    addr: SocketAddr,
    key: &ClusterKey,
    cfg: &BenchConfig,
    pipeline: usize,
) -> anyhow::Result<BenchResult> {
    let done = Arc::new(AtomicU64::new(0));
    let stop_at = Instant::now() + cfg.duration;
    let mut tasks = Vec::new();
    let start = Instant::now();
    for g in 0..cfg.groups.max(1) {
        let d = dial(
            &*transport,
            addr,
            key,
            &Role::proxy(0, 0),
            |r| r.role_kind() == RoleKind::Sequencer,
            1 << 20,
            Duration::from_secs(5),
        )
        .await
        .map_err(anyhow::Error::msg)?;
        let tx = spawn_writer(d.wr, 64 << 20, Overflow::Disconnect, addr.to_string());
        let hello = SeqHello {
            replica: 0,
            groups: vec![g],
        };
        let _ = tx.send(Frame::new(Body::SeqHello(hello)));
        let cfg = cfg.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            run_connection(d.rd, tx, &cfg, g, pipeline, stop_at, &done).await
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = start.elapsed();
    let requests = done.load(Ordering::Relaxed);
    Ok(BenchResult {
        requests,
        numbers: requests * u64::from(cfg.batch) * u64::from(cfg.spaces),
        elapsed,
    })
}
