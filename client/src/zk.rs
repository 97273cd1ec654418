//! A ZooKeeper client over a proxy group in keeper mode (RSMKeeper): each request is one
//! client op whose payload is the request in jute encoding (header and body, no length
//! prefix), and whose answer (`MultiSeq.result`) is the reply, encoded the same way.
//!
//! The ZooKeeper session is the client's proxy session: [`ZkClient::connect`] opens it
//! with a createSession request (opcode -10, the timeout as the body) and keeps the proxy
//! session it was answered under. If the underlying [`Client`] later answers under
//! another proxy session (it lost the first and silently opened a new one), the ZooKeeper
//! session is gone for this client, as ZooKeeper would say: that call and every later one
//! fail with [`ZkError::SessionExpired`]. [`ZkClient::attach`] takes a live ZooKeeper
//! session over instead (a moveSession, opcode -20): the proxy session it is answered under
//! then acts as that ZooKeeper session, and the one that held it before is answered
//! `SessionMoved`.
//!
//! With local reads on ([`ZkClient::with_local_reads`], `--zk-reads local`), a read of one
//! znode that sets no watch skips the log: the group's leader answers it (RSMKeeper: from
//! its tree, after Raft's ReadIndex; ZK-Mason: through one server of the znode's shard
//! that has applied at least the highest number of that shard's space this session has
//! seen). As in ZooKeeper, such a read waits for the session's writes sent before it, so
//! a session always reads its own writes and never goes back.

use crate::core::{ClientError, MultiSeq};
use crate::driver::Client;
use bytes::Bytes;
use mason_common::types::SpaceMask;
use mason_zk::jute::{self, JuteError, RequestHeader, Shape, Writer};
use mason_zk::{opcode, Acl, Code, CreateMode, OpResult, Request, Response, Stat};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::Notify;

/// Why a ZooKeeper call failed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ZkError {
    /// The reply carried this ZooKeeper error code.
    #[error("ZooKeeper error: {0} ({code})", code = .0.code())]
    Zk(Code),
    /// The op did not get an answer (transport or proxy session failure).
    #[error("client: {0}")]
    Client(ClientError),
    /// The reply does not decode.
    #[error("undecodable reply: {0}")]
    Decode(JuteError),
    /// The request could not be encoded (too large, or not a request a client sends).
    #[error("unencodable request: {0}")]
    Encode(JuteError),
    /// The reply answers another request.
    #[error("reply xid {got} to request xid {sent}")]
    Xid { sent: i32, got: i32 },
    /// The ZooKeeper session is gone: an answer came under another proxy session.
    #[error("the ZooKeeper session expired")]
    SessionExpired,
}

impl From<ClientError> for ZkError {
    fn from(e: ClientError) -> ZkError {
        ZkError::Client(e)
    }
}

/// The spaces an op names: RSMKeeper (`shards == 0`) takes no numbers, and every op
/// names space 0; ZK-Mason takes a number in the clock (space 0, writes only) and in
/// each shard the request touches (shard `s` is space `s + 1`).
fn op_mask(req: &Request, shards: u32) -> SpaceMask {
    if shards == 0 {
        SpaceMask::single(0)
    } else {
        SpaceMask(mason_zk::shard::spaces(req, shards))
    }
}

/// The payload of a createSession request: the header `{xid, -10}` and the timeout.
pub fn create_session_payload(xid: i32, timeout_ms: i32) -> Bytes {
    let mut w = Writer::new();
    RequestHeader {
        xid,
        op: opcode::CREATE_SESSION,
    }
    .write(&mut w);
    w.write_i32(timeout_ms);
    Bytes::from(w.into_inner())
}

/// The payload of a moveSession request (not a ZooKeeper request; only proxies' clients
/// send it): the header `{xid, -20}`, the ZooKeeper session to take over, and its
/// timeout.
pub fn move_session_payload(xid: i32, session: i64, timeout_ms: i32) -> Bytes {
    let mut w = Writer::new();
    RequestHeader {
        xid,
        op: opcode::MOVE_SESSION,
    }
    .write(&mut w);
    w.write_i64(session);
    w.write_i32(timeout_ms);
    Bytes::from(w.into_inner())
}

/// The payload of a tree request (header and body, no length prefix), and the form its
/// reply takes.
pub fn request_payload(xid: i32, req: &Request) -> Result<(Bytes, Shape), ZkError> {
    let shape = Shape::for_request(req)
        .ok_or(ZkError::Encode(JuteError::ShapeMismatch("createSession")))?;
    let framed = jute::encode_request(xid, req, &shape).map_err(ZkError::Encode)?;
    let payload = Bytes::from(framed);
    if payload.len() < 4 {
        return Err(ZkError::Encode(JuteError::ShapeMismatch("short frame")));
    }
    Ok((payload.slice(4..), shape))
}

/// Decodes the reply (`MultiSeq.result`) to the request with `sent_xid` sent in form
/// `shape`: its zxid, and the response or the ZooKeeper error code.
pub fn decode_reply(
    sent_xid: i32,
    shape: &Shape,
    reply: &[u8],
) -> Result<(i64, Result<Response, Code>), ZkError> {
    let (header, body) = jute::split_reply(reply).map_err(ZkError::Decode)?;
    if header.xid != sent_xid {
        return Err(ZkError::Xid {
            sent: sent_xid,
            got: header.xid,
        });
    }
    let result = jute::decode_response(shape, header.err, body).map_err(ZkError::Decode)?;
    Ok((header.zxid, result))
}

/// A ZooKeeper session over an async [`Client`]; calls may run concurrently (`&self`).
pub struct ZkClient {
    client: Client,
    /// ZK-Mason's shard count (0: RSMKeeper).
    shards: u32,
    /// The proxy session every answer must come under.
    proxy: u64,
    /// The ZooKeeper session: the proxy session's own, or one it took over
    /// ([`ZkClient::attach_sharded`]).
    session: i64,
    next_xid: AtomicU32,
    last_zxid: AtomicI64,
    expired: AtomicBool,
    closed: AtomicBool,
    /// Answer reads of one znode without the log.
    local_reads: bool,
    /// The highest number of each space this session has seen (ZK-Mason: a local read
    /// of a shard is answered from at least that shard's number).
    seen: Vec<AtomicU64>,
    /// Ops through the log not yet answered, by ticket, and the next ticket: a local read
    /// waits for those sent before it.
    in_log: Mutex<(u64, BTreeSet<u64>)>,
    log_done: Notify,
}

/// A raw request's answer: the reply (header and body, in jute) and where it was
/// answered: each space it was numbered in and its number there (through the log), or the
/// shard space and the position the server had applied (a local read). Empty for
/// RSMKeeper, whose place is the reply's zxid.
#[derive(Debug, Clone)]
pub struct RawAnswer {
    pub reply: Bytes,
    pub at: Vec<(u32, u64)>,
}

impl ZkClient {
    /// Opens a ZooKeeper session of `timeout_ms` through `client` (RSMKeeper).
    pub async fn connect(client: Client, timeout_ms: i32) -> Result<ZkClient, ZkError> {
        ZkClient::connect_sharded(client, timeout_ms, 0).await
    }

    /// Opens a ZooKeeper session of `timeout_ms` through `client` on ZK-Mason with
    /// `shards` shards (0: RSMKeeper).
    pub async fn connect_sharded(
        client: Client,
        timeout_ms: i32,
        shards: u32,
    ) -> Result<ZkClient, ZkError> {
        let xid = 1;
        let mask = op_mask(&Request::CreateSession { timeout_ms }, shards);
        let m = client
            .sequence(mask, create_session_payload(xid, timeout_ms))
            .await?;
        let (zxid, result) = decode_reply(xid, &Shape::CloseSession, &m.result)?;
        result.map_err(ZkError::Zk)?;
        let session = m.session as i64;
        Ok(ZkClient::opened(client, shards, session, zxid, &m))
    }

    /// Takes the live ZooKeeper session `session` over through `client` (RSMKeeper), its
    /// timeout now `timeout_ms`: see [`ZkClient::attach_sharded`].
    pub async fn attach(
        client: Client,
        session: i64,
        timeout_ms: i32,
    ) -> Result<ZkClient, ZkError> {
        ZkClient::attach_sharded(client, session, timeout_ms, 0).await
    }

    /// Takes the live ZooKeeper session `session` over through `client` on ZK-Mason with
    /// `shards` shards (0: RSMKeeper), its timeout now `timeout_ms`: a moveSession through
    /// the log, numbered as a createSession is. From then on this client's ops act as
    /// `session` (its ephemerals, its close), the client session that held it before is
    /// answered `SessionMoved`, and the group expires `session` when this client's proxy
    /// session goes idle. [`ZkClient::session`] is `session`. A session that is not live
    /// any more is [`ZkError::SessionExpired`].
    pub async fn attach_sharded(
        client: Client,
        session: i64,
        timeout_ms: i32,
        shards: u32,
    ) -> Result<ZkClient, ZkError> {
        let xid = 1;
        let mask = op_mask(
            &Request::MoveSession {
                session,
                timeout_ms,
            },
            shards,
        );
        let m = client
            .sequence(mask, move_session_payload(xid, session, timeout_ms))
            .await?;
        let (zxid, result) = decode_reply(xid, &Shape::CloseSession, &m.result)?;
        match result {
            Ok(_) => Ok(ZkClient::opened(client, shards, session, zxid, &m)),
            Err(Code::SessionExpired) => Err(ZkError::SessionExpired),
            Err(code) => Err(ZkError::Zk(code)),
        }
    }

    /// A client for ZooKeeper session `session`, opened or taken over by the answer `m`.
    fn opened(client: Client, shards: u32, session: i64, zxid: i64, m: &MultiSeq) -> ZkClient {
        ZkClient {
            client,
            shards,
            proxy: m.session,
            session,
            next_xid: AtomicU32::new(2),
            last_zxid: AtomicI64::new(zxid),
            expired: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            local_reads: false,
            seen: (0..64).map(|_| AtomicU64::new(0)).collect(),
            in_log: Mutex::new((0, BTreeSet::new())),
            log_done: Notify::new(),
        }
        .saw(m)
    }

    /// Answers reads of one znode without the log from now on (see the module's notes).
    pub fn with_local_reads(mut self, on: bool) -> ZkClient {
        self.local_reads = on;
        self
    }

    /// Notes the numbers of an answer.
    fn saw(self, m: &MultiSeq) -> ZkClient {
        self.note(m);
        self
    }

    fn note(&self, m: &MultiSeq) {
        for (space, n) in m.mask.iter().zip(&m.numbers) {
            if let Some(s) = self.seen.get(space as usize) {
                s.fetch_max(*n, Ordering::Relaxed);
            }
        }
    }

    /// The ZooKeeper session id: the proxy session's own ([`ZkClient::connect`]) or the
    /// one it took over ([`ZkClient::attach`]).
    pub fn session(&self) -> i64 {
        self.session
    }

    /// The largest zxid seen in a reply of this session.
    pub fn last_zxid(&self) -> i64 {
        self.last_zxid.load(Ordering::Relaxed)
    }

    /// Whether the session is gone (every call fails with `SessionExpired`).
    pub fn is_expired(&self) -> bool {
        self.expired.load(Ordering::Relaxed)
    }

    /// Whether the session was closed by this client (a closeSession was sent).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Retransmissions of the underlying client.
    pub fn retransmissions(&self) -> u64 {
        self.client.retransmissions()
    }

    fn xid(&self) -> i32 {
        (self.next_xid.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff) as i32
    }

    /// Sends `req`; its response and the reply's zxid, or why not.
    pub async fn call(&self, req: Request) -> Result<(Response, i64), ZkError> {
        let xid = self.xid();
        let (payload, shape) = request_payload(xid, &req)?;
        let m = self.send(&req, payload).await?;
        self.answer(xid, &shape, &m)
    }

    /// Sends `req`, already encoded as `payload` (header and body, no length prefix, with
    /// the caller's xid), and returns the reply as the group sent it (header and body):
    /// what a wire-protocol front end passes on unchanged.
    pub async fn call_raw(&self, req: &Request, payload: Bytes) -> Result<Bytes, ZkError> {
        let m = self.send(req, payload).await?;
        self.raw_answer(m).map(|a| a.reply)
    }

    /// Whether `req` goes to the leader without the log (local reads on, and a read of
    /// one znode that sets no watch).
    pub fn reads_locally(&self, req: &Request) -> bool {
        self.local_reads && req.is_local_read()
    }

    /// create2 with the open ACL: the actual path and the new node's Stat.
    pub async fn create(
        &self,
        path: &str,
        data: Bytes,
        mode: CreateMode,
    ) -> Result<(String, Stat), ZkError> {
        let req = Request::Create {
            path: path.to_string(),
            data,
            acl: Acl::open_unsafe(),
            mode,
        };
        match self.call(req).await? {
            (Response::Create { path, stat }, _) => Ok((path, stat)),
            _ => Err(unexpected("create")),
        }
    }

    pub async fn set_data(&self, path: &str, data: Bytes, version: i32) -> Result<Stat, ZkError> {
        let req = Request::SetData {
            path: path.to_string(),
            data,
            version,
        };
        match self.call(req).await? {
            (Response::Stat(stat), _) => Ok(stat),
            _ => Err(unexpected("setData")),
        }
    }

    pub async fn get_data(&self, path: &str) -> Result<(Bytes, Stat), ZkError> {
        let req = Request::GetData {
            path: path.to_string(),
            watch: false,
        };
        match self.call(req).await? {
            (Response::Data { data, stat }, _) => Ok((data, stat)),
            _ => Err(unexpected("getData")),
        }
    }

    /// The node's Stat, or `None` if there is no such node.
    pub async fn exists(&self, path: &str) -> Result<Option<Stat>, ZkError> {
        let req = Request::Exists {
            path: path.to_string(),
            watch: false,
        };
        match self.call(req).await {
            Ok((Response::Stat(stat), _)) => Ok(Some(stat)),
            Ok(_) => Err(unexpected("exists")),
            Err(ZkError::Zk(Code::NoNode)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn delete(&self, path: &str, version: i32) -> Result<(), ZkError> {
        let req = Request::Delete {
            path: path.to_string(),
            version,
        };
        self.call(req).await.map(|_| ())
    }

    /// The child names (getChildren, no Stat).
    pub async fn get_children(&self, path: &str) -> Result<Vec<String>, ZkError> {
        let req = Request::GetChildren {
            path: path.to_string(),
            watch: false,
            with_stat: false,
        };
        match self.call(req).await? {
            (Response::Children { names, .. }, _) => Ok(names),
            _ => Err(unexpected("getChildren")),
        }
    }

    /// The child names and the node's Stat (getChildren2).
    pub async fn get_children2(&self, path: &str) -> Result<(Vec<String>, Stat), ZkError> {
        let req = Request::GetChildren {
            path: path.to_string(),
            watch: false,
            with_stat: true,
        };
        match self.call(req).await? {
            (Response::Children { names, stat }, _) => Ok((names, stat)),
            _ => Err(unexpected("getChildren2")),
        }
    }

    /// sync: answered once everything before it in the order of `path`'s shard (the
    /// group's log, for RSMKeeper) is applied; always through the log.
    pub async fn sync(&self, path: &str) -> Result<String, ZkError> {
        let req = Request::Sync {
            path: path.to_string(),
        };
        match self.call(req).await? {
            (Response::Sync { path }, _) => Ok(path),
            _ => Err(unexpected("sync")),
        }
    }

    /// An atomic multi; a failed one answers `OpResult::Error` for every op.
    pub async fn multi(&self, ops: Vec<Request>) -> Result<Vec<OpResult>, ZkError> {
        match self.call(Request::Multi(ops)).await? {
            (Response::Multi(results), _) => Ok(results),
            _ => Err(unexpected("multi")),
        }
    }

    /// Ends the session (its ephemerals go); later calls fail.
    pub async fn close(&self) -> Result<(), ZkError> {
        let r = self.call(Request::CloseSession).await.map(|_| ());
        self.closed.store(true, Ordering::Relaxed);
        r
    }
}

fn unexpected(what: &'static str) -> ZkError {
    ZkError::Decode(JuteError::ShapeMismatch(what))
}

mod send;
#[cfg(test)]
mod tests;
