//! The gateway's watch feeds: one link to every server of every shard (ZK-Mason) or to
//! every replica of the RSMKeeper group, on which the gateway long-polls for the triggers
//! of what the server applied after the gateway's position (`ZkWatchPoll` /
//! `ZkWatchFeed`). Every answer goes into the [`WatchHub`]; the events it fires go to
//! their sessions' connections while the hub is locked, and only then is the new
//! position announced (`progress`), so a connection that sees a shard's feed at a
//! position already holds every event up to it.
//!
//! All servers of a shard apply the same order, so their answers are parts of one
//! sequence; the hub takes from each answer what lies past its position. A lost or
//! unanswered poll is sent again after [`REPOLL`].

use crate::watches::{FeedIn, Fired, WatchHub};
use mason_common::auth::{ClusterKey, Role};
use mason_common::conn::{spawn_link, LinkConfig, LinkHandler, Outbox};
use mason_common::msg::{Body, Frame};
use mason_common::transport::Tcp;
use mason_common::zkmsg::{ZkWatchFeed, ZkWatchPoll};
use mason_zk::feed::FeedEntry;
use mason_zk::EventType;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a server may hold a poll with nothing new.
const WAIT_MS: u32 = 1_000;
/// A poll unanswered this long is sent again.
const REPOLL: Duration = Duration::from_millis(2_500);
/// The largest feed answer accepted.
const MAX_FEED_FRAME: usize = 8 << 20;

/// Where the events a feed answer fired go (called with the hub locked).
pub trait Sink: Send + Sync + 'static {
    fn fired(&self, shard: u32, fired: Fired);
}

/// One feed server: its address and the role it must prove.
#[derive(Clone, Debug)]
pub struct FeedServer {
    pub shard: u32,
    pub addr: SocketAddr,
    pub role: Role,
}

/// The feed servers of a deployment: every server of every shard (`zk_servers[s]`), or,
/// for RSMKeeper (no shard servers), every replica of group 0 among `proxies`.
pub fn servers(proxies: &[SocketAddr], zk_servers: &[Vec<SocketAddr>]) -> Vec<FeedServer> {
    if zk_servers.is_empty() {
        return mason_client::group_replicas(proxies, 0)
            .into_iter()
            .enumerate()
            .map(|(r, addr)| FeedServer {
                shard: 0,
                addr,
                role: Role::proxy(r as u32, 0),
            })
            .collect();
    }
    zk_servers
        .iter()
        .enumerate()
        .flat_map(|(s, list)| {
            list.iter().enumerate().map(move |(i, addr)| FeedServer {
                shard: s as u32,
                addr: *addr,
                role: Role::zk_server(s as u32, i as u32),
            })
        })
        .collect()
}

struct FeedLink<S: Sink> {
    shard: u32,
    /// Fault injection for tests: each answer is taken this much later.
    delay: Duration,
    hub: Arc<Mutex<WatchHub>>,
    sink: Arc<S>,
    progress: tokio::sync::watch::Sender<u64>,
    out: Mutex<Option<Outbox>>,
    /// When the last poll went, and whether it was answered.
    polled: Mutex<(Instant, bool)>,
    start: Instant,
}

impl<S: Sink> FeedLink<S> {
    fn poll(&self, out: &Outbox) {
        let upto = self.hub.lock().ok().and_then(|h| h.upto(self.shard));
        let poll = ZkWatchPoll {
            shard: self.shard,
            after: upto.unwrap_or(0),
            wait_ms: WAIT_MS,
            fresh: upto.is_none(),
        };
        if let Ok(mut p) = self.polled.lock() {
            *p = (Instant::now(), false);
        }
        let _ = out.send(Frame {
            body: Some(Body::ZkWatchPoll(poll)),
        });
    }

    fn on_feed(&self, f: ZkWatchFeed) -> Result<(), String> {
        if f.shard != self.shard {
            return Err(format!(
                "a feed of shard {} on a link for shard {}",
                f.shard, self.shard
            ));
        }
        let entries = f
            .triggers
            .into_iter()
            .filter_map(|t| {
                Some(FeedEntry {
                    pos: t.pos,
                    zxid: t.zxid,
                    event: EventType::from_code(t.event)?,
                    path: t.path,
                    readable: t.readable,
                })
            })
            .collect();
        let now = self.start.elapsed().as_micros() as u64;
        {
            let Ok(mut hub) = self.hub.lock() else {
                return Err("the watch hub is poisoned".into());
            };
            let fired = hub.on_feed(
                self.shard,
                FeedIn {
                    after: f.after,
                    upto: f.upto,
                    entries,
                    gap: f.gap,
                },
                now,
            );
            self.sink.fired(self.shard, fired);
        }
        self.progress.send_modify(|g| *g += 1);
        if let Ok(mut p) = self.polled.lock() {
            p.1 = true;
        }
        // A gap answer comes at once: do not spin on it.
        let out = self.out.lock().ok().and_then(|o| o.clone());
        if let Some(out) = out {
            if f.gap {
                let link = out.clone();
                let hub = self.hub.clone();
                let shard = self.shard;
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    send_poll(&hub, shard, &link);
                });
            } else {
                self.poll(&out);
            }
        }
        Ok(())
    }
}

fn send_poll(hub: &Mutex<WatchHub>, shard: u32, out: &Outbox) {
    let upto = hub.lock().ok().and_then(|h| h.upto(shard));
    let _ = out.send(Frame {
        body: Some(Body::ZkWatchPoll(ZkWatchPoll {
            shard,
            after: upto.unwrap_or(0),
            wait_ms: WAIT_MS,
            fresh: upto.is_none(),
        })),
    });
}

impl<S: Sink> LinkHandler for FeedLink<S> {
    async fn up(&self, _peer: &Role, out: &Outbox) {
        if let Ok(mut o) = self.out.lock() {
            *o = Some(out.clone());
        }
        self.poll(out);
    }

    async fn frame(&self, body: Body) -> Result<(), String> {
        match body {
            Body::ZkWatchFeed(f) => {
                if !self.delay.is_zero() {
                    tokio::time::sleep(self.delay).await;
                }
                self.on_feed(f)
            }
            other => Err(format!("a {} frame on a watch feed", other.name())),
        }
    }
}

/// Starts a feed link to every server; returns at once.
pub fn spawn<S: Sink>(
    servers: Vec<FeedServer>,
    key: Arc<ClusterKey>,
    hub: Arc<Mutex<WatchHub>>,
    sink: Arc<S>,
    progress: tokio::sync::watch::Sender<u64>,
    delay: Duration,
) {
    let start = Instant::now();
    for s in servers {
        let link = Arc::new(FeedLink {
            shard: s.shard,
            delay,
            hub: hub.clone(),
            sink: sink.clone(),
            progress: progress.clone(),
            out: Mutex::new(None),
            polled: Mutex::new((Instant::now(), true)),
            start,
        });
        let cfg = LinkConfig {
            retry: Duration::from_millis(200),
            out_limit: 1 << 20,
            ..LinkConfig::new(key.clone(), Role::watcher(), s.role, MAX_FEED_FRAME)
        };
        let out = spawn_link(Arc::new(Tcp), s.addr, cfg, link.clone());
        // Polls lost with a link that broke, or never answered: send again.
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REPOLL / 2);
            loop {
                tick.tick().await;
                if out.is_closed() {
                    return;
                }
                let stale = link
                    .polled
                    .lock()
                    .map(|p| p.0.elapsed() > REPOLL)
                    .unwrap_or(false);
                if stale {
                    link.poll(&out);
                }
            }
        });
    }
}
