//! Watching what proxy groups bind: [`watch_group`] subscribes to one replica of one group
//! and yields what it applies (ops and noops alike), reconnecting when the replica goes
//! away ([`watch_group_bounded`]: into a bounded channel); [`Contiguity`] unions what
//! several watches report into the highest contiguous number known per space;
//! [`record_contiguity`] samples that every 10 ms into a CSV (the recovery experiment's
//! record).

use futures::StreamExt;
use mason_common::auth::{ClusterKey, Role, RoleKind};
use mason_common::conn::{dial, spawn_writer, Overflow};
use mason_common::msg::{Body, Frame, Promise, Watch};
use mason_common::record::BoundBatch;
use mason_common::transport::Transport;
use mason_common::types::SpaceMask;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What a watched replica reports.
#[derive(Debug, Clone)]
pub enum Notice {
    /// On (re)subscribing: what the replica still records, with its watermarks (every
    /// number below a watermark is bound).
    Snapshot(Promise),
    /// One applied batch, or a takeover's holes (batch id 0, no ops). Numbers of its ranges
    /// that its ops do not take are noops.
    Bound(BoundBatch),
}

/// Subscribes to replica `addr`'s view of `group` until `tx` is closed, reconnecting
/// every 50 ms while the replica is unreachable. With `ranges_only`, notices carry no ops.
pub async fn watch_group(
    transport: Arc<dyn Transport>,
    key: Arc<ClusterKey>,
    addr: SocketAddr,
    group: u32,
    ranges_only: bool,
    tx: mpsc::UnboundedSender<Notice>,
) {
    follow(
        transport,
        key,
        addr,
        group,
        ranges_only,
        Sink::Unbounded(tx),
    )
    .await
}

/// [`watch_group`] into a bounded channel: while `tx` is full this stops reading the
/// replica, whose bounded queue for a watcher then closes the connection; the watch
/// reconnects and the fresh [`Notice::Snapshot`] covers (as ranges) what it missed.
pub async fn watch_group_bounded(
    transport: Arc<dyn Transport>,
    key: Arc<ClusterKey>,
    addr: SocketAddr,
    group: u32,
    ranges_only: bool,
    tx: mpsc::Sender<Notice>,
) {
    follow(transport, key, addr, group, ranges_only, Sink::Bounded(tx)).await
}

/// Where a watch hands its notices.
enum Sink {
    Unbounded(mpsc::UnboundedSender<Notice>),
    Bounded(mpsc::Sender<Notice>),
}

impl Sink {
    fn is_closed(&self) -> bool {
        match self {
            Sink::Unbounded(t) => t.is_closed(),
            Sink::Bounded(t) => t.is_closed(),
        }
    }

    /// False once the receiver is gone.
    async fn send(&self, n: Notice) -> bool {
        match self {
            Sink::Unbounded(t) => t.send(n).is_ok(),
            Sink::Bounded(t) => t.send(n).await.is_ok(),
        }
    }
}

async fn follow(
    transport: Arc<dyn Transport>,
    key: Arc<ClusterKey>,
    addr: SocketAddr,
    group: u32,
    ranges_only: bool,
    tx: Sink,
) {
    while !tx.is_closed() {
        let conn = dial(
            &*transport,
            addr,
            &key,
            &Role::watcher(),
            |r| r.role_kind() == RoleKind::Proxy,
            64 << 20,
            Duration::from_secs(2),
        )
        .await;
        let Ok(conn) = conn else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let w = spawn_writer(conn.wr, 1 << 20, Overflow::Drop, addr.to_string());
        let _ = w.send(Frame::new(Body::Watch(Watch { group, ranges_only })));
        let mut reader = conn.rd;
        while let Some(Ok(f)) = reader.next().await {
            let n = match f.body {
                Some(Body::Promise(p)) => Notice::Snapshot(*p),
                Some(Body::Bound(b)) => Notice::Bound(*b),
                _ => continue,
            };
            if !tx.send(n).await {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The union of bound ranges per space, and the contiguous prefix it makes.
#[derive(Debug, Clone)]
pub struct Contiguity {
    /// Per space: numbers 0..prefix are known bound; `above` holds known ranges beyond.
    prefix: Vec<u64>,
    above: Vec<BTreeMap<u64, u64>>,
}

impl Contiguity {
    pub fn new(spaces: u32) -> Contiguity {
        Contiguity {
            prefix: vec![0; spaces as usize],
            above: vec![BTreeMap::new(); spaces as usize],
        }
    }

    /// Numbers `0..prefix()[s]` of each space are all known bound.
    pub fn prefix(&self) -> &[u64] {
        &self.prefix
    }

    pub fn add(&mut self, space: u32, base: u64, len: u64) {
        let s = space as usize;
        if s >= self.prefix.len() || len == 0 {
            return;
        }
        let end = base.saturating_add(len);
        if end <= self.prefix[s] {
            return;
        }
        let m = &mut self.above[s];
        let e = m.entry(base).or_insert(end);
        *e = (*e).max(end);
        self.advance(s);
    }

    /// Everything below `w` of `space` is bound.
    pub fn floor(&mut self, space: u32, w: u64) {
        let s = space as usize;
        if s < self.prefix.len() && w > self.prefix[s] {
            self.prefix[s] = w;
            self.advance(s);
        }
    }

    fn advance(&mut self, s: usize) {
        let m = &mut self.above[s];
        while let Some((&b, &e)) = m.first_key_value() {
            if b > self.prefix[s] {
                break;
            }
            self.prefix[s] = self.prefix[s].max(e);
            m.remove(&b);
        }
    }

    pub fn note(&mut self, n: &Notice) {
        match n {
            Notice::Snapshot(p) => {
                for (s, w) in p.watermarks.iter().enumerate() {
                    self.floor(s as u32, *w);
                }
                if let Some(it) = p.recorded.as_ref().and_then(|r| r.iter()) {
                    for (s, b, l) in it {
                        self.add(s, b, l);
                    }
                }
            }
            Notice::Bound(b) => {
                for ((s, base), c) in SpaceMask(b.space_mask).iter().zip(&b.bases).zip(&b.counts) {
                    self.add(s, *base, u64::from(*c));
                }
            }
        }
    }
}

/// What [`record_contiguity`] watches: every replica of `groups` groups hosted by
/// `proxies` (in triples), over `spaces` spaces.
#[derive(Clone, Debug)]
pub struct Watched {
    pub proxies: Vec<SocketAddr>,
    pub groups: u32,
    pub spaces: u32,
}

/// Watches every replica of every group and writes `t_ms,s0,s1,...` to `csv` every 10 ms
/// (`t_ms` counted from `t0`) until `until`.
pub async fn record_contiguity(
    transport: Arc<dyn Transport>,
    key: Arc<ClusterKey>,
    w: Watched,
    csv: &Path,
    t0: Instant,
    until: Instant,
) -> std::io::Result<()> {
    let Watched {
        proxies,
        groups,
        spaces,
    } = w;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for g in 0..groups {
        for p in crate::group_replicas(&proxies, g) {
            tasks.push(tokio::spawn(watch_group(
                transport.clone(),
                key.clone(),
                p,
                g,
                true,
                tx.clone(),
            )));
        }
    }
    drop(tx);
    let mut f = std::io::BufWriter::new(std::fs::File::create(csv)?);
    let header: Vec<String> = (0..spaces).map(|s| format!("s{s}")).collect();
    writeln!(f, "t_ms,{}", header.join(","))?;
    let mut c = Contiguity::new(spaces);
    let mut every = tokio::time::interval(Duration::from_millis(10));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while Instant::now() < until {
        tokio::select! {
            n = rx.recv() => match n {
                Some(n) => c.note(&n),
                None => break,
            },
            _ = every.tick() => {
                let t = t0.elapsed().as_millis();
                let row: Vec<String> = c.prefix().iter().map(u64::to_string).collect();
                writeln!(f, "{t},{}", row.join(","))?;
            }
        }
    }
    for t in tasks {
        t.abort();
    }
    f.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_grows_only_over_contiguous_ranges() {
        let mut c = Contiguity::new(2);
        c.add(0, 5, 5);
        assert_eq!(c.prefix(), &[0, 0]);
        c.add(0, 0, 3);
        assert_eq!(c.prefix(), &[3, 0]);
        c.add(0, 3, 2);
        assert_eq!(c.prefix(), &[10, 0]);
        c.add(0, 2, 4); // known already
        c.add(1, 4, 1);
        c.floor(1, 4);
        assert_eq!(c.prefix(), &[10, 5]);
        c.floor(0, 7); // a lower watermark changes nothing
        assert_eq!(c.prefix(), &[10, 5]);
    }
}
