//! Opening a connection's ZooKeeper session: a new one (createSession through a backend
//! session of its own), one this gateway still holds (given back), or one that another
//! gateway held (its client moved here: a new backend session takes the ZooKeeper
//! session over with a moveSession through the log, and the old backend session's later
//! ops are answered SessionMoved, so a front end that is not dead cannot act for it).

use super::{ConnTask, Done, Session};
use mason_client::zk::ZkClient;
use mason_client::{Client, ClientConfig, ClientPool, Target};
use mason_common::transport::Tcp;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long opening or taking over a session may take at the backend.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

impl ConnTask {
    /// Opens a backend session for the client (groups taken in turn): a new ZooKeeper
    /// session, or, with `adopt`, the client's existing one taken over.
    pub(super) fn open(&mut self, timeout_ms: i32, adopt: Option<i64>) {
        let cfg = &self.shared.cfg;
        let n = self.shared.next_client.fetch_add(1, Ordering::Relaxed);
        let group = (n % u64::from(cfg.groups.max(1))) as u32;
        let client_id = (u64::from(cfg.gateway_id) << 32) | n;
        let ccfg = ClientConfig {
            client_id,
            target: Target::Group {
                group,
                replicas: mason_client::group_replicas(&cfg.proxies, group),
                first: mason_client::first_leader(&cfg.proxies, group),
            },
            retry_timeout: cfg.retry_timeout,
            window: 1024,
            key: cfg.key.clone(),
        };
        let client = if cfg.shared_conns {
            let mut pools = self.shared.pools.lock().unwrap_or_else(|e| e.into_inner());
            pools
                .entry(group)
                .or_insert_with(|| ClientPool::start(Arc::new(Tcp), ccfg))
                .join(client_id)
        } else {
            Client::start(Arc::new(Tcp), ccfg)
        };
        let (shards, local) = (cfg.shards, cfg.local_reads);
        let shared = self.shared.clone();
        let conn_id = self.id;
        self.pending.push(Box::pin(async move {
            let opened = match adopt {
                None => {
                    tokio::time::timeout(
                        OPEN_TIMEOUT,
                        ZkClient::connect_sharded(client, timeout_ms, shards),
                    )
                    .await
                }
                Some(session) => {
                    tokio::time::timeout(
                        OPEN_TIMEOUT,
                        ZkClient::attach_sharded(client, session, timeout_ms, shards),
                    )
                    .await
                }
            };
            let zk = match opened {
                Ok(Ok(zk)) => Arc::new(zk.with_local_reads(local)),
                Ok(Err(e)) => return Done::Opened(Err(format!("no session: {e}"))),
                Err(_) => return Done::Opened(Err("no session within 10 s".into())),
            };
            let id = zk.session();
            if let Some(session) = adopt {
                tracing::info!(session, "took over a session that moved here");
            }
            let s = Arc::new(Session {
                zk,
                timeout_ms,
                conn: Mutex::new((Some(conn_id), Instant::now())),
                backend_at: Mutex::new(Instant::now()),
                notes: Mutex::new(None),
            });
            if let Ok(mut t) = shared.sessions.lock() {
                t.insert(id, s.clone());
            }
            Done::Opened(Ok((id, s)))
        }));
    }

    /// A reconnect with a session id and password. A session this gateway holds is given
    /// back; one it does not hold (its client comes from another gateway) is taken over.
    /// A wrong password gets the expired-session answer. (A session held here that moved
    /// away and came back answers SessionMoved once; the connection then closes, the
    /// gateway forgets it, and the client's next reconnect takes it over.)
    pub(super) fn resume(&mut self, session: i64, passwd: &[u8], timeout_ms: i32) {
        if !self.shared.cfg.key.check_session_password(session, passwd) {
            let why = "wrong session password".to_string();
            self.pending
                .push(Box::pin(async move { Done::Opened(Err(why)) }));
            return;
        }
        let held = self
            .shared
            .sessions
            .lock()
            .ok()
            .and_then(|t| t.get(&session).cloned())
            .filter(|s| !s.zk.is_expired());
        match held {
            Some(s) => {
                if let Ok(mut g) = s.conn.lock() {
                    *g = (Some(self.id), Instant::now());
                }
                self.pending
                    .push(Box::pin(async move { Done::Opened(Ok((session, s))) }));
            }
            None => self.open(timeout_ms, Some(session)),
        }
    }

    /// A client ping: if the backend has not heard from the session for a third of its
    /// timeout, a heartbeat goes.
    pub(super) fn heartbeat(&mut self) {
        let Some(s) = self.session.clone() else {
            return;
        };
        let quiet = s.backend_at.lock().map(|t| t.elapsed()).unwrap_or_default();
        if quiet < Duration::from_millis(s.timeout_ms.max(0) as u64 / 3) {
            return;
        }
        if let Ok(mut t) = s.backend_at.lock() {
            *t = Instant::now();
        }
        tokio::spawn(async move {
            if let Err(e) = s.zk.heartbeat().await {
                tracing::debug!(session = s.zk.session(), error = %e, "heartbeat failed");
            }
        });
    }
}
