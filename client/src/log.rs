//! The shared log's client library: [`LogClient::append`] puts bytes at a new position
//! and returns it; [`LogClient::read`], [`LogClient::read_range`], [`LogClient::tail`] and
//! [`LogClient::subscribe`] read the log back.
//!
//! Two ways to append (DESIGN.md section 8):
//! - **Corfu** ([`AppendVia::Corfu`]): take a token (a position) from the sequencer, write
//!   the entry to the head of that position's chain. A position a writer took but never
//!   wrote stays a hole until a reader fills it with junk, after `hole_timeout`.
//! - **CorfuMason** ([`AppendVia::Mason`]): send the payload to a proxy group, which binds
//!   a position through Mason, writes it (and every noop it bound) to the log, and only
//!   then answers. The log has no holes and readers never fill.
//!
//! Reads go to the tail of the position's chain, and to the other members if the tail
//! cannot answer (down, or its copy failed its checksum).

mod links;

use crate::driver::{Client, ClientConfig, Target};
use bytes::{BufMut, Bytes, BytesMut};
use links::Links;
use mason_common::auth::ClusterKey;
use mason_common::logmsg::{shard_of, LogItem, LogRead, LogResult, LogStatus, LogTail, LogWrite};
use mason_common::msg::Body;
use mason_common::transport::Transport;
use mason_common::types::SpaceMask;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How appends reach the log.
#[derive(Clone, Debug)]
pub enum AppendVia {
    /// Tokens straight from the sequencer; the client writes the chain itself.
    Corfu { sequencer: SocketAddr },
    /// Through the replicas of proxy group `group` (`first` tried first, as in
    /// [`crate::Target::Group`]).
    Mason {
        group: u32,
        replicas: Vec<SocketAddr>,
        first: usize,
    },
    /// A reader only.
    None,
}

#[derive(Clone, Debug)]
pub struct LogClientConfig {
    /// A label for logs.
    pub client_id: u64,
    /// Each shard's chain of log servers, head first; position p is on shard p % shards.
    pub chains: Vec<Vec<SocketAddr>>,
    pub append: AppendVia,
    /// Whether [`LogClient::subscribe`] fills a position that stays empty with junk: only
    /// in a Corfu log. In a CorfuMason log an empty position is one the proxies are still
    /// writing, and a fill would take it from them.
    pub fill_holes: bool,
    /// Corfu: a reader fills a position with junk once it has waited this long for it.
    pub hole_timeout: Duration,
    /// One request to one server waits at most this long.
    pub request_timeout: Duration,
    /// An append or a read gives up after this long.
    pub op_timeout: Duration,
    /// Appends in flight at most (told to the proxy group with the session).
    pub window: u32,
    pub key: Arc<ClusterKey>,
}

impl LogClientConfig {
    pub fn new(
        client_id: u64,
        chains: Vec<Vec<SocketAddr>>,
        append: AppendVia,
        key: Arc<ClusterKey>,
    ) -> Self {
        LogClientConfig {
            client_id,
            chains,
            fill_holes: matches!(append, AppendVia::Corfu { .. }),
            append,
            hole_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_secs(1),
            op_timeout: Duration::from_secs(30),
            window: 64,
            key,
        }
    }
}

/// What a position holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    pub pos: u64,
    /// A noop (CorfuMason) or a junk fill (Corfu): nothing was appended here.
    pub noop: bool,
    pub payload: Bytes,
}

/// Whether [`LogClient::subscribe`] yields noop entries or skips them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Noops {
    Skip,
    Surface,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log server {0} is unreachable")]
    Unreachable(SocketAddr),
    #[error("log server {0} did not answer in time")]
    Timeout(SocketAddr),
    #[error("position {pos}: {status:?}")]
    Refused { pos: u64, status: LogStatus },
    #[error("position {0}: no server of its chain could read it")]
    Unreadable(u64),
    #[error("no appends: this client was made for reading only")]
    NoAppender,
    #[error("the sequencing client failed: {0}")]
    Sequencing(String),
    #[error("gave up after {0:?}")]
    GaveUp(Duration),
    #[error("a log server answered with something else")]
    Protocol,
    #[error("no log servers configured")]
    NoServers,
}

/// A handle on the log; cheap to share behind an `Arc`.
pub struct LogClient {
    cfg: LogClientConfig,
    links: Arc<Links>,
    seq: Option<Client>,
}

/// Connections to the log servers (one per server), which several [`LogClient`]s of a
/// process may share: what they send in one turn goes out in one write. Cheap to clone.
#[derive(Clone)]
pub struct LogLinks(Arc<Links>);

impl LogLinks {
    pub fn new(transport: Arc<dyn Transport>, key: Arc<ClusterKey>) -> LogLinks {
        LogLinks(Arc::new(Links::new(transport, key)))
    }
}

/// Payload bytes a stamped payload starts with: the session and its op number.
pub const STAMP_BYTES: usize = 16;

/// `payload` with its first 16 bytes replaced by `session` and `seq` (little-endian),
/// grown to 16 bytes if shorter, so that a checker can tell whose append an entry is.
pub fn stamp(payload: &[u8], session: u64, seq: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(payload.len().max(STAMP_BYTES));
    b.put_u64_le(session);
    b.put_u64_le(seq);
    if payload.len() > STAMP_BYTES {
        b.put_slice(&payload[STAMP_BYTES..]);
    }
    b.freeze()
}

/// The (session, seq) a stamped payload starts with.
pub fn unstamp(payload: &[u8]) -> Option<(u64, u64)> {
    let c = payload.get(..8)?.try_into().ok()?;
    let s = payload.get(8..16)?.try_into().ok()?;
    Some((u64::from_le_bytes(c), u64::from_le_bytes(s)))
}

impl LogClient {
    pub fn new(transport: Arc<dyn Transport>, cfg: LogClientConfig) -> Result<Self, LogError> {
        LogClient::sharing(transport, cfg, None, None)
    }

    /// As [`LogClient::new`], taking its appends' numbers from `seq` (a client of the
    /// target `cfg.append` names, which may share a driver with others) and talking to
    /// the log servers over `links` (which other clients may share), when given.
    pub fn sharing(
        transport: Arc<dyn Transport>,
        cfg: LogClientConfig,
        seq: Option<Client>,
        links: Option<LogLinks>,
    ) -> Result<Self, LogError> {
        if cfg.chains.is_empty() || cfg.chains.iter().any(Vec::is_empty) {
            return Err(LogError::NoServers);
        }
        let target = match &cfg.append {
            AppendVia::Corfu { sequencer } => Some(Target::Direct {
                sequencer: *sequencer,
            }),
            AppendVia::Mason {
                group,
                replicas,
                first,
            } => Some(Target::Group {
                group: *group,
                replicas: replicas.clone(),
                first: *first,
            }),
            AppendVia::None => None,
        };
        let seq = target.map(|target| {
            if let Some(c) = seq {
                return c;
            }
            Client::start(
                transport.clone(),
                ClientConfig {
                    client_id: cfg.client_id,
                    target,
                    retry_timeout: cfg.request_timeout,
                    window: cfg.window,
                    key: cfg.key.clone(),
                },
            )
        });
        let links = match links {
            Some(l) => l.0,
            None => Arc::new(Links::new(transport, cfg.key.clone())),
        };
        Ok(LogClient { links, seq, cfg })
    }

    fn shards(&self) -> u32 {
        self.cfg.chains.len() as u32
    }

    fn chain(&self, pos: u64) -> &[SocketAddr] {
        &self.cfg.chains[shard_of(pos, self.shards()) as usize]
    }

    /// Ops (appends' sequencing requests) re-sent so far.
    pub fn retransmissions(&self) -> u64 {
        self.seq.as_ref().map_or(0, Client::retransmissions)
    }

    /// Appends `payload`; returns its position once every server of its chain holds it.
    pub async fn append(&self, payload: Bytes) -> Result<u64, LogError> {
        self.append_stamped(payload, false).await.map(|(p, _, _)| p)
    }

    /// Appends, and with `stamp` makes the payload start with this client's session and
    /// the op's number (returned with the position) so that a checker can find it.
    pub async fn append_stamped(
        &self,
        payload: Bytes,
        stamp_it: bool,
    ) -> Result<(u64, u64, u64), LogError> {
        let seq = self.seq.as_ref().ok_or(LogError::NoAppender)?;
        let space0 = SpaceMask::single(0);
        match &self.cfg.append {
            AppendVia::Mason { .. } => {
                let r = if stamp_it {
                    seq.sequence_stamped(space0, payload).await
                } else {
                    seq.sequence(space0, payload).await
                };
                let r = r.map_err(|e| LogError::Sequencing(e.to_string()))?;
                let pos = r.numbers.first().copied().ok_or(LogError::Protocol)?;
                Ok((pos, r.session, r.seq))
            }
            AppendVia::Corfu { .. } => {
                let deadline = Instant::now() + self.cfg.op_timeout;
                loop {
                    let token = seq
                        .sequence(space0, Bytes::new())
                        .await
                        .map_err(|e| LogError::Sequencing(e.to_string()))?;
                    let pos = token.numbers.first().copied().ok_or(LogError::Protocol)?;
                    let data = if stamp_it {
                        stamp(&payload, token.session, token.seq)
                    } else {
                        payload.clone()
                    };
                    match self
                        .write_until(pos, LogItem::data(pos, data), deadline)
                        .await?
                    {
                        None => return Ok((pos, token.session, token.seq)),
                        // A reader filled the position first: take another token.
                        Some(_) => continue,
                    }
                }
            }
            AppendVia::None => Err(LogError::NoAppender),
        }
    }

    /// Writes `item` to its chain, retrying until `deadline`. `None`: written (or already
    /// there); `Some(r)`: the position holds something else, which `r` carries.
    async fn write_until(
        &self,
        pos: u64,
        item: LogItem,
        deadline: Instant,
    ) -> Result<Option<LogResult>, LogError> {
        let head = self.chain(pos)[0];
        let shard = shard_of(pos, self.shards());
        loop {
            let w = item.clone();
            let r = self
                .links
                .call(head, self.cfg.request_timeout, |id| {
                    Body::LogWrite(LogWrite {
                        id,
                        shard,
                        items: vec![w.clone()],
                    })
                })
                .await;
            match r {
                Ok(Body::LogWriteReply(mut r)) if r.results.len() == 1 => {
                    let res = r.results.remove(0);
                    match res.status() {
                        LogStatus::Ok => return Ok(None),
                        LogStatus::Taken => return Ok(Some(res)),
                        LogStatus::Unavailable => {}
                        s => return Err(LogError::Refused { pos, status: s }),
                    }
                }
                Ok(_) => return Err(LogError::Protocol),
                Err(e) => tracing::debug!(pos, error = %e, "log write; retrying"),
            }
            if Instant::now() >= deadline {
                return Err(LogError::GaveUp(self.cfg.op_timeout));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Fills `pos` with junk (Corfu's hole filling). Returns what the position holds
    /// afterwards: the junk, or what a writer got there first.
    pub async fn fill(&self, pos: u64) -> Result<LogEntry, LogError> {
        let deadline = Instant::now() + self.cfg.op_timeout;
        match self.write_until(pos, LogItem::junk(pos), deadline).await? {
            None => Ok(LogEntry {
                pos,
                noop: true,
                payload: Bytes::new(),
            }),
            Some(r) => Ok(entry(r)),
        }
    }

    /// What `pos` holds, or `None` if nothing is written there yet.
    pub async fn read(&self, pos: u64) -> Result<Option<LogEntry>, LogError> {
        let mut v = self.read_positions(vec![pos]).await?;
        Ok(v.pop().flatten())
    }

    /// Positions `from..to` in order: each entry, or `None` where nothing is written yet.
    pub async fn read_range(&self, from: u64, to: u64) -> Result<Vec<Option<LogEntry>>, LogError> {
        self.read_positions((from..to).collect()).await
    }

    async fn read_positions(&self, positions: Vec<u64>) -> Result<Vec<Option<LogEntry>>, LogError> {
        let n = self.shards();
        let mut by_shard: Vec<Vec<u64>> = vec![Vec::new(); n as usize];
        for &p in &positions {
            by_shard[shard_of(p, n) as usize].push(p);
        }
        let reads = by_shard
            .into_iter()
            .enumerate()
            .filter(|(_, ps)| !ps.is_empty())
            .map(|(s, ps)| self.read_shard(s as u32, ps));
        let mut found = std::collections::HashMap::new();
        for r in futures::future::join_all(reads).await {
            for (p, e) in r? {
                found.insert(p, e);
            }
        }
        Ok(positions
            .iter()
            .map(|p| found.remove(p).flatten())
            .collect())
    }

    /// Reads `positions` of one shard from its tail, asking the other members about any
    /// the tail could not serve.
    async fn read_shard(
        &self,
        shard: u32,
        mut positions: Vec<u64>,
    ) -> Result<Vec<(u64, Option<LogEntry>)>, LogError> {
        let chain = &self.cfg.chains[shard as usize];
        let mut done = Vec::with_capacity(positions.len());
        for addr in chain.iter().rev() {
            let mut left = Vec::new();
            while !positions.is_empty() {
                let ask: Vec<u64> = positions.drain(..positions.len().min(4096)).collect();
                let r = self
                    .links
                    .call(*addr, self.cfg.request_timeout, |id| {
                        Body::LogRead(LogRead {
                            id,
                            shard,
                            positions: ask.clone(),
                        })
                    })
                    .await;
                let results = match r {
                    Ok(Body::LogReadReply(r)) => r.results,
                    Ok(_) => return Err(LogError::Protocol),
                    Err(e) => {
                        tracing::debug!(%addr, error = %e, "read failed; asking the next server");
                        left.extend(ask);
                        continue;
                    }
                };
                let answered = results.len();
                for res in results {
                    match res.status() {
                        LogStatus::Ok => done.push((res.pos, Some(entry(res)))),
                        // Not written at the tail: not acknowledged anywhere.
                        LogStatus::NotWritten => done.push((res.pos, None)),
                        LogStatus::WrongShard | LogStatus::Invalid => {
                            return Err(LogError::Refused {
                                pos: res.pos,
                                status: res.status(),
                            })
                        }
                        _ => left.push(res.pos),
                    }
                }
                // The answer stopped early (a size cap): ask again for the rest.
                positions.extend_from_slice(&ask[answered.min(ask.len())..]);
            }
            if left.is_empty() {
                return Ok(done);
            }
            positions = left;
        }
        match positions.first() {
            Some(p) => Err(LogError::Unreadable(*p)),
            None => Ok(done),
        }
    }

    /// What member `member` of `shard`'s chain itself holds at `positions` (which must be
    /// the shard's): for checking that a chain's copies agree. `Err` for a position it
    /// cannot serve (its copy is corrupt, say), as the status it gave.
    pub async fn read_member(
        &self,
        shard: u32,
        member: usize,
        positions: &[u64],
    ) -> Result<Vec<(u64, Result<Option<LogEntry>, LogStatus>)>, LogError> {
        let addr = *self
            .cfg
            .chains
            .get(shard as usize)
            .and_then(|c| c.get(member))
            .ok_or(LogError::NoServers)?;
        let mut out = Vec::with_capacity(positions.len());
        let mut rest = positions;
        while !rest.is_empty() {
            let ask = &rest[..rest.len().min(4096)];
            let r = self
                .links
                .call(addr, self.cfg.request_timeout, |id| {
                    Body::LogRead(LogRead {
                        id,
                        shard,
                        positions: ask.to_vec(),
                    })
                })
                .await?;
            let Body::LogReadReply(r) = r else {
                return Err(LogError::Protocol);
            };
            if r.results.is_empty() {
                return Err(LogError::Protocol);
            }
            rest = &rest[r.results.len().min(rest.len())..];
            for res in r.results {
                let v = match res.status() {
                    LogStatus::Ok => Ok(Some(entry(res.clone()))),
                    LogStatus::NotWritten => Ok(None),
                    s => Err(s),
                };
                out.push((res.pos, v));
            }
        }
        Ok(out)
    }

    /// One past the highest position any log server holds: every position below it is
    /// taken (CorfuMason: bound, and written or about to be; Corfu: a token was given).
    pub async fn tail(&self) -> Result<u64, LogError> {
        let mut next = 0;
        for chain in &self.cfg.chains {
            let mut got = None;
            for addr in chain.iter().rev() {
                let r = self
                    .links
                    .call(*addr, self.cfg.request_timeout, |id| {
                        Body::LogTail(LogTail { id })
                    })
                    .await;
                if let Ok(Body::LogTailReply(t)) = r {
                    got = Some(got.unwrap_or(0u64).max(t.next));
                }
            }
            next = next.max(got.ok_or(LogError::Unreadable(0))?);
        }
        Ok(next)
    }

    /// Yields the log's entries in order from `from`, waiting for new ones, forever (until
    /// the receiver is dropped or an error is sent). A Corfu subscriber fills a position
    /// that stays empty for `hole_timeout` while later positions exist.
    pub fn subscribe(
        self: &Arc<Self>,
        from: u64,
        noops: Noops,
    ) -> tokio::sync::mpsc::Receiver<Result<LogEntry, LogError>> {
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let me = self.clone();
        tokio::spawn(async move { me.follow(from, noops, tx).await });
        rx
    }

    async fn follow(
        &self,
        mut next: u64,
        noops: Noops,
        tx: tokio::sync::mpsc::Sender<Result<LogEntry, LogError>>,
    ) {
        let fills = self.cfg.fill_holes;
        let mut waiting_since: Option<Instant> = None;
        loop {
            let chunk = match self.read_range(next, next + 256).await {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let mut progressed = false;
            for e in chunk {
                let Some(e) = e else { break };
                next += 1;
                progressed = true;
                waiting_since = None;
                if e.noop && noops == Noops::Skip {
                    continue;
                }
                if tx.send(Ok(e)).await.is_err() {
                    return;
                }
            }
            if progressed {
                continue;
            }
            let since = *waiting_since.get_or_insert_with(Instant::now);
            if fills && since.elapsed() >= self.cfg.hole_timeout {
                // A hole only if something later exists: otherwise this is the end.
                match self.tail().await {
                    Ok(t) if t > next => {
                        if let Err(e) = self.fill(next).await {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

fn entry(r: LogResult) -> LogEntry {
    LogEntry {
        pos: r.pos,
        noop: r.is_junk(),
        payload: r.payload,
    }
}
