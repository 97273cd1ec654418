//! The dialing side: one handshake to a peer that must prove an expected role
//! ([`dial`]), and links that reconnect whenever they break ([`spawn_link`]), each with a
//! bounded queue that drops what does not fit (the protocols on links re-send).

use super::outbox::{outbox, write_loop, Outbox, OutboxRx, Overflow};
use crate::auth::{self, ClusterKey, Role};
use crate::codec::{FrameCodec, READ_BUFFER};
use crate::msg::{Body, Frame};
use crate::transport::{Connection, Transport};
use futures::{SinkExt, StreamExt};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::codec::{FramedRead, FramedWrite};

/// One established outgoing connection, past its handshake.
pub struct Dialed {
    pub rd: FramedRead<crate::transport::BoxRead, FrameCodec>,
    pub wr: FramedWrite<crate::transport::BoxWrite, FrameCodec>,
    /// The role the acceptor proved.
    pub peer: Role,
    pub addr: SocketAddr,
}

/// Connects to `addr` as `me` and runs the handshake (both within `timeout`); the peer
/// must prove a role for which `expect` holds. Frames from it may be up to `max_frame`.
pub async fn dial(
    transport: &dyn Transport,
    addr: SocketAddr,
    key: &ClusterKey,
    me: &Role,
    expect: impl Fn(&Role) -> bool,
    max_frame: usize,
    timeout: Duration,
) -> Result<Dialed, String> {
    let c: Connection = tokio::time::timeout(timeout, transport.connect(addr))
        .await
        .map_err(|_| format!("connecting to {addr} timed out"))?
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let mut rd = FramedRead::with_capacity(
        c.read,
        FrameCodec::new(auth::HANDSHAKE_MAX_FRAME),
        READ_BUFFER,
    );
    let mut wr = FramedWrite::new(c.write, FrameCodec::new(auth::HANDSHAKE_MAX_FRAME));
    let peer = tokio::time::timeout(timeout, auth::connect(&mut rd, &mut wr, key, me))
        .await
        .map_err(|_| format!("{addr}: {}", auth::HandshakeError::Timeout))?
        .map_err(|e| format!("{addr}: {e}"))?;
    if !expect(&peer) {
        return Err(format!(
            "{addr} is a {peer}, not what this connection is for"
        ));
    }
    rd.decoder_mut().set_max(max_frame);
    wr.encoder_mut().set_max(usize::MAX);
    Ok(Dialed { rd, wr, peer, addr })
}

/// A link's side of the frames it receives.
pub trait LinkHandler: Send + Sync + 'static {
    /// The first frame on every (re)established link, before anything queued.
    fn hello(&self) -> Option<Frame> {
        None
    }
    /// The link is (re)established with a peer of role `peer`; `out` is the link's queue.
    fn up(&self, peer: &Role, out: &Outbox) -> impl Future<Output = ()> + Send;
    /// One frame from the peer; an error breaks the link (it reconnects).
    fn frame(&self, body: Body) -> impl Future<Output = Result<(), String>> + Send;
}

/// A link that receives nothing: any frame breaks it.
pub struct SendOnly;

impl LinkHandler for SendOnly {
    async fn up(&self, _: &Role, _: &Outbox) {}
    async fn frame(&self, _: Body) -> Result<(), String> {
        Err("a frame on a send-only link".into())
    }
}

/// How a process keeps one outgoing link.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    pub key: Arc<ClusterKey>,
    pub me: Role,
    /// The role the peer must prove (a link to anything else is closed).
    pub peer: Role,
    /// The largest frame accepted from the peer.
    pub max_frame: usize,
    /// Bytes queued before frames are dropped.
    pub out_limit: usize,
    /// Wait this long before connecting again.
    pub retry: Duration,
    pub connect_timeout: Duration,
}

impl LinkConfig {
    pub fn new(key: Arc<ClusterKey>, me: Role, peer: Role, max_frame: usize) -> LinkConfig {
        LinkConfig {
            key,
            me,
            peer,
            max_frame,
            out_limit: 64 << 20,
            retry: Duration::from_millis(20),
            connect_timeout: Duration::from_secs(2),
        }
    }
}

/// A connection to `addr` that is made again whenever it breaks. Frames sent while it is
/// down are dropped (the protocols on links re-send). Returns the link's queue.
pub fn spawn_link<H: LinkHandler>(
    transport: Arc<dyn Transport>,
    addr: SocketAddr,
    cfg: LinkConfig,
    handler: Arc<H>,
) -> Outbox {
    let (out, mut rx) = outbox(cfg.out_limit, Overflow::Drop, addr.to_string());
    let link = out.clone();
    tokio::spawn(async move {
        let mut failures = 0u64;
        while !link.is_closed() {
            let want = cfg.peer.clone();
            let dialed = dial(
                &*transport,
                addr,
                &cfg.key,
                &cfg.me,
                |p| *p == want,
                cfg.max_frame,
                cfg.connect_timeout,
            )
            .await;
            match dialed {
                Ok(mut d) => {
                    failures = 0;
                    let hello = match handler.hello() {
                        Some(h) => d.wr.send(&h).await.map_err(|e| e.to_string()),
                        None => Ok(()),
                    };
                    if let Err(e) = hello {
                        tracing::debug!(%addr, error = %e, "the link broke at once");
                        rx.discard();
                        tokio::time::sleep(cfg.retry).await;
                        continue;
                    }
                    handler.up(&cfg.peer, &link).await;
                    if let Some(why) = run_link(d.rd, d.wr, &mut rx, &*handler).await {
                        tracing::warn!(%addr, peer = %cfg.peer, %why, "link broken; reconnecting");
                    }
                }
                Err(e) => {
                    failures += 1;
                    // Say so once, then only now and then (the peer may be down for long).
                    if failures == 1 || failures.is_multiple_of(500) {
                        tracing::debug!(%addr, peer = %cfg.peer, error = %e, failures, "cannot link");
                    }
                }
            }
            rx.discard();
            tokio::time::sleep(cfg.retry).await;
        }
    });
    out
}

/// Runs one established link until it breaks (the reason) or its queue closes (None).
async fn run_link<H: LinkHandler>(
    mut rd: FramedRead<crate::transport::BoxRead, FrameCodec>,
    mut wr: FramedWrite<crate::transport::BoxWrite, FrameCodec>,
    rx: &mut OutboxRx,
    handler: &H,
) -> Option<String> {
    let reading = async {
        loop {
            match rd.next().await {
                None => return "the peer closed it".to_string(),
                Some(Err(e)) => return e.to_string(),
                Some(Ok(Frame { body: None })) => return "an empty frame".to_string(),
                Some(Ok(Frame { body: Some(b) })) => {
                    if let Err(why) = handler.frame(b).await {
                        return why;
                    }
                }
            }
        }
    };
    tokio::select! {
        why = reading => Some(why),
        r = write_loop(&mut wr, rx) => match r {
            Ok(()) => None,
            Err(e) => Some(e.to_string()),
        },
    }
}
