//! One connection per log server, shared by every caller: requests carry ids, answers
//! are matched to them. A broken connection fails what waits on it and is made again on
//! the next call.

use super::LogError;
use futures::StreamExt;
use mason_common::auth::{ClusterKey, Role, RoleKind};
use mason_common::conn::{dial, spawn_writer, Outbox, Overflow};
use mason_common::msg::{Body, Frame};
use mason_common::transport::Transport;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Body>>>>;

struct Link {
    tx: Outbox,
    waiters: Waiters,
    dead: Arc<AtomicBool>,
    /// Its reader's task: the connection closes once the link is dropped, whether or not
    /// the server closes its end.
    reading: tokio::task::AbortHandle,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.reading.abort();
        self.tx.close();
    }
}

pub(crate) struct Links {
    transport: Arc<dyn Transport>,
    key: Arc<ClusterKey>,
    links: tokio::sync::Mutex<HashMap<SocketAddr, Arc<Link>>>,
    next_id: AtomicU64,
}

impl Links {
    pub(crate) fn new(transport: Arc<dyn Transport>, key: Arc<ClusterKey>) -> Links {
        Links {
            transport,
            key,
            links: tokio::sync::Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }

    /// The link to `addr`, and whether it was already open (it may have broken since).
    async fn link(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<(Arc<Link>, bool), LogError> {
        if let Some(l) = self.links.lock().await.get(&addr) {
            if !l.dead.load(Ordering::Acquire) {
                return Ok((l.clone(), true));
            }
        }
        // Connect without holding the map: a server that is down must not stall calls to
        // the others.
        let conn = dial(
            &*self.transport,
            addr,
            &self.key,
            &Role::client(0),
            |r| r.role_kind() == RoleKind::LogServer,
            64 << 20,
            timeout,
        )
        .await
        .map_err(|e| {
            tracing::debug!(%addr, error = %e, "cannot reach a log server");
            LogError::Unreachable(addr)
        })?;
        let waiters: Waiters = Arc::default();
        let dead = Arc::new(AtomicBool::new(false));
        let mut reader = conn.rd;
        let (w, d) = (waiters.clone(), dead.clone());
        let reading = tokio::spawn(async move {
            while let Some(Ok(Frame { body: Some(b) })) = reader.next().await {
                let id = match &b {
                    Body::LogWriteReply(r) => r.id,
                    Body::LogReadReply(r) => r.id,
                    Body::LogTailReply(r) => r.id,
                    _ => {
                        tracing::warn!(%addr, "unexpected frame from a log server; closing");
                        break;
                    }
                };
                let w = w.lock().ok().and_then(|mut w| w.remove(&id));
                if let Some(w) = w {
                    let _ = w.send(b);
                }
            }
            d.store(true, Ordering::Release);
            if let Ok(mut w) = w.lock() {
                w.clear(); // fails every waiter at once
            }
        });
        let link = Arc::new(Link {
            tx: spawn_writer(conn.wr, 64 << 20, Overflow::Drop, addr.to_string()),
            waiters,
            dead,
            reading: reading.abort_handle(),
        });
        let mut links = self.links.lock().await;
        match links.get(&addr) {
            // Another call connected meanwhile: use that link (this one closes when dropped).
            Some(l) if !l.dead.load(Ordering::Acquire) => Ok((l.clone(), true)),
            _ => {
                links.insert(addr, link.clone());
                Ok((link, false))
            }
        }
    }

    /// Sends the request `make(id)` to `addr` and waits at most `timeout` for its answer.
    pub(crate) async fn call(
        &self,
        addr: SocketAddr,
        timeout: Duration,
        make: impl Fn(u64) -> Body,
    ) -> Result<Body, LogError> {
        match self.call_once(addr, timeout, &make).await {
            // A connection that was open may have broken unnoticed (the server restarted):
            // once more on a fresh one.
            Err((LogError::Unreachable(_), true)) => self
                .call_once(addr, timeout, &make)
                .await
                .map_err(|(e, _)| e),
            r => r.map_err(|(e, _)| e),
        }
    }

    async fn call_once(
        &self,
        addr: SocketAddr,
        timeout: Duration,
        make: &impl Fn(u64) -> Body,
    ) -> Result<Body, (LogError, bool)> {
        let (link, reused) = self.link(addr, timeout).await.map_err(|e| (e, false))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = link.waiters.lock() {
            w.insert(id, tx);
        }
        if link.tx.send(Frame::new(make(id))).is_err() {
            link.dead.store(true, Ordering::Release);
            return Err((LogError::Unreachable(addr), reused));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(b)) => Ok(b),
            Ok(Err(_)) => {
                link.dead.store(true, Ordering::Release);
                Err((LogError::Unreachable(addr), reused))
            }
            Err(_) => {
                if let Ok(mut w) = link.waiters.lock() {
                    w.remove(&id);
                }
                Err((LogError::Timeout(addr), false))
            }
        }
    }
}
