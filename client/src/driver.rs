//! One client: numbers its ops 1, 2, 3, ..., keeps them until answered, and re-sends every
//! unanswered op when it moves to another replica (on a timeout, a broken connection or a
//! "not leader" answer). Each op carries `acked_below`, the lowest unanswered seq, so the
//! group can forget older answers.

use bytes::Bytes;
use mason_common::frame::{spawn_writer, FrameReader, FrameTx, DEFAULT_MAX_FRAME};
use mason_common::msg::{Body, ClientOp, Frame, GetSeq, ReplyStatus, SeqStatus};
use mason_common::transport::Transport;
use mason_common::types::SpaceMask;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Where a client's ops go.
#[derive(Clone, Debug)]
pub enum Target {
    /// The replicas of proxy group `group`, by replica index.
    Group {
        group: u32,
        replicas: Vec<SocketAddr>,
    },
    /// The sequencer itself, one request per op (the direct baseline).
    Direct { sequencer: SocketAddr },
}

#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub client_id: u64,
    pub target: Target,
    /// Move to another replica when the oldest op has waited this long.
    pub retry_timeout: Duration,
}

/// One number per space of `mask`, ascending by space, for the client's op `seq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultiSeq {
    /// The op's number in this client's own order (1, 2, 3, ...).
    pub seq: u64,
    pub mask: SpaceMask,
    pub numbers: Vec<u64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClientError {
    #[error("the op was refused as invalid (spaces out of range or empty, or unknown group)")]
    Invalid,
    #[error("the client has shut down")]
    Closed,
}

struct Pending {
    mask: SpaceMask,
    payload: Bytes,
    sent_at: Instant,
    reply: oneshot::Sender<Result<MultiSeq, ClientError>>,
}

enum Ev {
    Op {
        mask: SpaceMask,
        payload: Bytes,
        reply: oneshot::Sender<Result<MultiSeq, ClientError>>,
    },
    Frame(u64, Frame),
    Dead(u64),
}

/// A handle to one client; cheap to clone, all clones share one op sequence.
#[derive(Clone)]
pub struct Client {
    tx: mpsc::UnboundedSender<Ev>,
    re_tx: Arc<AtomicU64>,
}

impl Client {
    pub fn start(transport: Arc<dyn Transport>, cfg: ClientConfig) -> Client {
        let (tx, rx) = mpsc::unbounded_channel();
        let re_tx = Arc::new(AtomicU64::new(0));
        let d = Driver {
            cfg,
            transport,
            events: tx.clone(),
            current: 0,
            gen: 0,
            conn: None,
            next_seq: 1,
            outstanding: BTreeMap::new(),
            re_tx: re_tx.clone(),
        };
        tokio::spawn(d.run(rx));
        Client { tx, re_tx }
    }

    /// Gets one number in each space of `spaces` for an op carrying `payload`.
    pub async fn sequence(
        &self,
        spaces: SpaceMask,
        payload: Bytes,
    ) -> Result<MultiSeq, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Ev::Op {
                mask: spaces,
                payload,
                reply,
            })
            .map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    /// Ops re-sent so far (Mason's `num_re_tx`).
    pub fn retransmissions(&self) -> u64 {
        self.re_tx.load(Ordering::Relaxed)
    }
}

struct Driver {
    cfg: ClientConfig,
    transport: Arc<dyn Transport>,
    events: mpsc::UnboundedSender<Ev>,
    current: usize,
    gen: u64,
    conn: Option<FrameTx>,
    next_seq: u64,
    outstanding: BTreeMap<u64, Pending>,
    re_tx: Arc<AtomicU64>,
}

impl Driver {
    fn addrs(&self) -> Vec<SocketAddr> {
        match &self.cfg.target {
            Target::Group { replicas, .. } => replicas.clone(),
            Target::Direct { sequencer } => vec![*sequencer],
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Ev>) {
        let mut tick = tokio::time::interval(self.cfg.retry_timeout / 4);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.conn.is_none() {
                self.connect().await;
            }
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev) => self.handle(ev).await,
                    None => return,
                },
                _ = tick.tick() => {
                    let late = self.outstanding.values().next().is_some_and(|p| p.sent_at.elapsed() >= self.cfg.retry_timeout);
                    if late {
                        tracing::debug!(client = self.cfg.client_id, "timeout; trying another replica");
                        self.switch(None).await;
                    }
                }
            }
        }
    }

    async fn connect(&mut self) {
        let addrs = self.addrs();
        loop {
            let addr = addrs[self.current % addrs.len()];
            match tokio::time::timeout(Duration::from_secs(1), self.transport.connect(addr)).await {
                Ok(Ok(c)) => {
                    self.gen += 1;
                    let gen = self.gen;
                    let tx = spawn_writer(c.write, c.peer.clone());
                    let events = self.events.clone();
                    let mut reader = FrameReader::new(c.read, DEFAULT_MAX_FRAME);
                    tokio::spawn(async move {
                        while let Some(Ok(f)) = reader.next().await {
                            if events.send(Ev::Frame(gen, f)).is_err() {
                                return;
                            }
                        }
                        let _ = events.send(Ev::Dead(gen));
                    });
                    self.conn = Some(tx);
                    self.resend_all();
                    return;
                }
                _ => {
                    self.current = (self.current + 1) % addrs.len();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    /// Moves to `hint` (a replica index) or the next replica, and re-sends everything.
    async fn switch(&mut self, hint: Option<usize>) {
        let n = self.addrs().len();
        let next = hint.filter(|h| *h < n && *h != self.current);
        self.current = next.unwrap_or((self.current + 1) % n);
        if next.is_none() {
            // No one is known to lead yet: give the election a moment.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.conn = None;
        self.connect().await;
    }

    fn acked_below(&self) -> u64 {
        self.outstanding
            .keys()
            .next()
            .copied()
            .unwrap_or(self.next_seq)
    }

    fn frame(&self, seq: u64, p: &Pending) -> Frame {
        match &self.cfg.target {
            Target::Group { group, .. } => Frame::new(Body::ClientOp(ClientOp {
                client_id: self.cfg.client_id,
                client_seq: seq,
                group: *group,
                space_mask: p.mask.0,
                payload: p.payload.clone(),
                acked_below: self.acked_below(),
            })),
            Target::Direct { .. } => Frame::new(Body::GetSeq(GetSeq {
                epoch: 0,
                group: self.cfg.client_id as u32,
                batch_id: seq,
                space_mask: p.mask.0,
                counts: vec![1; p.mask.len()],
            })),
        }
    }

    fn resend_all(&mut self) {
        let Some(conn) = self.conn.clone() else {
            return;
        };
        let now = Instant::now();
        let seqs: Vec<u64> = self.outstanding.keys().copied().collect();
        for seq in seqs {
            let f = match self.outstanding.get(&seq) {
                Some(p) => self.frame(seq, p),
                None => continue,
            };
            if let Some(p) = self.outstanding.get_mut(&seq) {
                p.sent_at = now;
            }
            self.re_tx.fetch_add(1, Ordering::Relaxed);
            let _ = conn.send(f);
        }
    }

    fn answer(&mut self, seq: u64, r: Result<MultiSeq, ClientError>) {
        if let Some(p) = self.outstanding.remove(&seq) {
            let _ = p.reply.send(r);
        }
    }

    async fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Op {
                mask,
                payload,
                reply,
            } => {
                let seq = self.next_seq;
                self.next_seq += 1;
                let p = Pending {
                    mask,
                    payload,
                    sent_at: Instant::now(),
                    reply,
                };
                let f = self.frame(seq, &p);
                self.outstanding.insert(seq, p);
                if let Some(c) = &self.conn {
                    let _ = c.send(f);
                }
            }
            Ev::Frame(gen, f) => match f.body {
                Some(Body::ClientReply(r)) => match ReplyStatus::try_from(r.status) {
                    Ok(ReplyStatus::Ok) => {
                        let m = MultiSeq {
                            seq: r.client_seq,
                            mask: SpaceMask(r.space_mask),
                            numbers: r.numbers,
                        };
                        self.answer(r.client_seq, Ok(m));
                    }
                    Ok(ReplyStatus::NotLeader) if gen == self.gen => {
                        let hint = (r.leader_hint as usize).checked_sub(1);
                        self.switch(hint).await;
                    }
                    Ok(ReplyStatus::NotLeader) => {}
                    Ok(ReplyStatus::Invalid) | Err(_) => {
                        self.answer(r.client_seq, Err(ClientError::Invalid))
                    }
                },
                Some(Body::SeqReply(r)) => match SeqStatus::try_from(r.status) {
                    Ok(SeqStatus::Ok) => {
                        let m = MultiSeq {
                            seq: r.batch_id,
                            mask: SpaceMask(r.space_mask),
                            numbers: r.bases,
                        };
                        self.answer(r.batch_id, Ok(m));
                    }
                    _ => self.answer(r.batch_id, Err(ClientError::Invalid)),
                },
                other => tracing::warn!(?other, "unexpected frame for a client"),
            },
            Ev::Dead(gen) if gen == self.gen => {
                self.conn = None;
                let n = self.addrs().len();
                self.current = (self.current + 1) % n;
            }
            Ev::Dead(_) => {}
        }
    }
}
