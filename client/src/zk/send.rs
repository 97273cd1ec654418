//! How a ZooKeeper request goes out and its answer comes back: through the log, or (local
//! reads) to the leader once the session's earlier writes are answered; an answer under
//! another proxy session ends the ZooKeeper session.

use super::{decode_reply, op_mask, request_payload, RawAnswer, ZkClient, ZkError};
use crate::core::{ClientError, MultiSeq};
use bytes::Bytes;
use mason_zk::jute::{self, Shape};
use mason_zk::{Code, Request, Response};
use std::sync::atomic::Ordering;

/// Takes a ticket out of the set when dropped (answered, failed or cancelled).
struct Ticket<'a> {
    client: &'a ZkClient,
    ticket: u64,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if let Ok(mut g) = self.client.in_log.lock() {
            g.1.remove(&self.ticket);
        }
        self.client.log_done.notify_waiters();
    }
}

impl ZkClient {
    /// Waits until every op this session sent through the log before now is answered.
    async fn after_earlier_writes(&self) {
        let Ok(limit) = self.in_log.lock().map(|g| g.0) else {
            return;
        };
        loop {
            let notified = self.log_done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let clear = match self.in_log.lock() {
                Ok(g) => g.1.first().is_none_or(|t| *t >= limit),
                Err(_) => true,
            };
            if clear {
                return;
            }
            notified.await;
        }
    }

    fn ticket(&self) -> Ticket<'_> {
        let ticket = match self.in_log.lock() {
            Ok(mut g) => {
                let t = g.0;
                g.0 += 1;
                g.1.insert(t);
                t
            }
            Err(_) => u64::MAX,
        };
        Ticket {
            client: self,
            ticket,
        }
    }

    /// As [`ZkClient::call_raw`], but the request is taken now, in call order, and the
    /// future only waits for its answer. The caller keeps a session's order: it must not
    /// start a local read while one of its ops through the log is unanswered, nor an op
    /// through the log while a local read is ([`ZkClient::reads_locally`] tells which).
    pub fn start_raw(
        self: &std::sync::Arc<Self>,
        req: &Request,
        payload: Bytes,
    ) -> impl std::future::Future<Output = Result<RawAnswer, ZkError>> + Send + 'static {
        let zk = self.clone();
        let gone = if self.is_expired() {
            Some(ZkError::SessionExpired)
        } else if self.closed.load(Ordering::Relaxed) {
            Some(ZkError::Client(ClientError::Closed))
        } else {
            None
        };
        let sent = gone.is_none().then(|| {
            if self.reads_locally(req) {
                let space = op_mask(req, self.shards).iter().next().unwrap_or(0);
                let min_pos = self
                    .seen
                    .get(space as usize)
                    .map_or(0, |s| s.load(Ordering::Relaxed));
                futures::future::Either::Left(self.client.read_local_now(payload, min_pos))
            } else {
                let mask = op_mask(req, self.shards);
                futures::future::Either::Right(self.client.sequence_now(mask, payload))
            }
        });
        if matches!(req, Request::CloseSession) {
            self.closed.store(true, Ordering::Relaxed);
        }
        async move {
            let sent = match (gone, sent) {
                (Some(e), _) => return Err(e),
                (None, Some(f)) => f.await,
                (None, None) => return Err(ZkError::SessionExpired),
            };
            let m = match sent {
                Ok(m) => m,
                Err(ClientError::SessionExpired) => {
                    zk.expired.store(true, Ordering::Relaxed);
                    return Err(ZkError::Client(ClientError::SessionExpired));
                }
                Err(e) => return Err(ZkError::Client(e)),
            };
            zk.raw_answer(m)
        }
    }

    pub(super) fn raw_answer(&self, m: MultiSeq) -> Result<RawAnswer, ZkError> {
        if m.session != self.proxy {
            self.expired.store(true, Ordering::Relaxed);
            return Err(ZkError::SessionExpired);
        }
        self.note(&m);
        let (header, _) = jute::split_reply(&m.result).map_err(ZkError::Decode)?;
        if header.err == Code::SessionExpired.code() {
            self.expired.store(true, Ordering::Relaxed);
        }
        self.last_zxid.fetch_max(header.zxid, Ordering::Relaxed);
        let at = m.mask.iter().zip(m.numbers.iter().copied()).collect();
        Ok(RawAnswer {
            reply: m.result,
            at,
        })
    }

    /// Keeps the session alive at its group without touching the tree (a front end's
    /// answer to a client's ping when the session has been quiet): a read of `/` that
    /// skips the log. Its answer only says the group still holds the session.
    pub async fn heartbeat(&self) -> Result<(), ZkError> {
        let (payload, _) = request_payload(
            jute::xid::PING,
            &Request::Exists {
                path: "/".into(),
                watch: false,
            },
        )?;
        match self.client.read_local(payload, 0).await {
            Ok(m) if m.session == self.proxy => Ok(()),
            Ok(_) | Err(ClientError::SessionExpired) => {
                self.expired.store(true, Ordering::Relaxed);
                Err(ZkError::SessionExpired)
            }
            Err(e) => Err(ZkError::Client(e)),
        }
    }

    /// Sends an encoded request: through the log, or (local reads) to the leader.
    pub(super) async fn send(&self, req: &Request, payload: Bytes) -> Result<MultiSeq, ZkError> {
        if self.is_expired() {
            return Err(ZkError::SessionExpired);
        }
        if self.closed.load(Ordering::Relaxed) {
            return Err(ZkError::Client(ClientError::Closed));
        }
        let sent = if self.local_reads && req.is_local_read() {
            self.after_earlier_writes().await;
            let space = op_mask(req, self.shards).iter().next().unwrap_or(0);
            let min_pos = self
                .seen
                .get(space as usize)
                .map_or(0, |s| s.load(Ordering::Relaxed));
            self.client.read_local(payload, min_pos).await
        } else {
            let _ticket = self.ticket();
            self.client
                .sequence(op_mask(req, self.shards), payload)
                .await
        };
        if matches!(req, Request::CloseSession) {
            self.closed.store(true, Ordering::Relaxed);
        }
        match sent {
            Ok(m) => Ok(m),
            Err(ClientError::SessionExpired) => {
                // The client opens a new proxy session: this ZooKeeper session is over.
                self.expired.store(true, Ordering::Relaxed);
                Err(ZkError::Client(ClientError::SessionExpired))
            }
            Err(e) => Err(ZkError::Client(e)),
        }
    }

    pub(super) fn answer(
        &self,
        xid: i32,
        shape: &Shape,
        m: &MultiSeq,
    ) -> Result<(Response, i64), ZkError> {
        if m.session != self.proxy {
            self.expired.store(true, Ordering::Relaxed);
            return Err(ZkError::SessionExpired);
        }
        self.note(m);
        let (zxid, result) = decode_reply(xid, shape, &m.result)?;
        if result == Err(Code::SessionExpired) {
            self.expired.store(true, Ordering::Relaxed);
        }
        self.last_zxid.fetch_max(zxid, Ordering::Relaxed);
        result.map(|r| (r, zxid)).map_err(ZkError::Zk)
    }
}
