//! A load's closed loop run inside the client's driver (`Client::run_loop`), against a real
//! sequencer on loopback: it keeps exactly its slots in flight, every op is answered once
//! with a number of its own and the numbers tile from 0; clients that share a driver and
//! its connection (`Client::start_shared`) each get their own answers; a loop whose server
//! never answers is stopped with all its ops counted unanswered, and asks for none after
//! that; a pool's clients (`ClientPool`) join and leave while it runs, and a client that
//! joins in a left one's place is a new session of its own; and one that joins goes
//! straight to the replica where its pool found the leader (a fake group of two).

use bytes::Bytes;
use mason_client::{Client, ClientConfig, ClientError, ClientPool, MultiSeq, OpLoop, Target};
use mason_common::auth::{ClusterKey, Role};
use mason_common::conn::ServeConfig;
use mason_common::transport::{Tcp, Transport};
use mason_common::SpaceMask;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a test loop saw, shared with the test.
#[derive(Default)]
struct Seen {
    asked: u64,
    in_flight: u64,
    most_in_flight: u64,
    numbers: Vec<u64>,
    seqs: Vec<u64>,
    errors: u64,
}

/// Sends `ops` ops, then stops.
struct CountingLoop {
    ops: u64,
    seen: Arc<Mutex<Seen>>,
}

impl OpLoop for CountingLoop {
    fn next_op(&mut self, _now: Instant) -> Option<(SpaceMask, Bytes)> {
        let mut s = self.seen.lock().expect("lock");
        if s.asked == self.ops {
            return None;
        }
        s.asked += 1;
        s.in_flight += 1;
        s.most_in_flight = s.most_in_flight.max(s.in_flight);
        Some((SpaceMask::single(0), Bytes::from_static(b"op")))
    }

    fn answered(&mut self, sent: Instant, now: Instant, r: Result<MultiSeq, ClientError>) {
        assert!(now >= sent, "answered before it was sent");
        let mut s = self.seen.lock().expect("lock");
        s.in_flight -= 1;
        match r {
            Ok(m) => {
                s.numbers.extend(m.numbers);
                s.seqs.push(m.seq);
            }
            Err(_) => s.errors += 1,
        }
    }
}

fn client(addr: SocketAddr, key: &ClusterKey, slots: u32) -> Client {
    Client::start(
        Arc::new(Tcp),
        ClientConfig {
            client_id: 1,
            target: Target::Direct { sequencer: addr },
            retry_timeout: Duration::from_millis(200),
            window: slots,
            key: Arc::new(key.clone()),
        },
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A sequencer served in this process on a free loopback port: its address, a way to stop
/// it, and its task.
async fn sequencer(
    key: &ClusterKey,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let listener = Tcp
        .bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let cfg = mason_sequencer::server::ServerConfig {
        serve: ServeConfig::new(Arc::new(key.clone()), Role::sequencer(0)),
        max_frame: 1 << 20,
        client_max_frame: 4 << 10,
        record: None,
        core_thread: false,
    };
    let node = mason_sequencer::SeqNode::new(mason_sequencer::SeqNodeConfig::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(mason_sequencer::server::serve(
        listener,
        node,
        1,
        cfg,
        async move {
            let _ = stopped.await;
        },
    ));
    (addr, stop, server)
}

#[test]
fn clients_sharing_a_connection_each_get_their_own_answers() {
    runtime().block_on(async {
        let key = ClusterKey::generate();
        let (addr, stop, server) = sequencer(&key).await;
        const CLIENTS: u64 = 3;
        const OPS: u64 = 1000;
        const SLOTS: u32 = 8;
        let cfg = ClientConfig {
            client_id: 0,
            target: Target::Direct { sequencer: addr },
            retry_timeout: Duration::from_millis(200),
            window: SLOTS,
            key: Arc::new(key.clone()),
        };
        let ids: Vec<u64> = (1..=CLIENTS).collect();
        let clients = Client::start_shared(Arc::new(Tcp), cfg, &ids);
        assert_eq!(clients.len() as u64, CLIENTS);
        let mut seen = Vec::new();
        let mut dones = Vec::new();
        for c in &clients {
            let s = Arc::new(Mutex::new(Seen::default()));
            let lp = CountingLoop {
                ops: OPS,
                seen: s.clone(),
            };
            dones.push(c.run_loop(Box::new(lp), SLOTS));
            seen.push(s);
        }
        for d in dones {
            tokio::time::timeout(Duration::from_secs(30), d)
                .await
                .expect("every loop finished within 30 s")
                .expect("the driver told it");
        }
        let mut all = Vec::new();
        for s in &seen {
            let s = std::mem::take(&mut *s.lock().expect("lock"));
            assert_eq!((s.asked, s.errors, s.in_flight), (OPS, 0, 0));
            let mut seqs = s.seqs.clone();
            seqs.sort_unstable();
            assert_eq!(
                seqs,
                (1..=OPS).collect::<Vec<_>>(),
                "each client was answered its own ops, once each"
            );
            all.extend(s.numbers);
        }
        all.sort_unstable();
        assert_eq!(
            all,
            (0..CLIENTS * OPS).collect::<Vec<_>>(),
            "unique and contiguous across the clients"
        );
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    });
}

#[test]
fn a_loop_keeps_its_slots_full_and_every_op_gets_its_own_number() {
    runtime().block_on(async {
        let key = ClusterKey::generate();
        let (addr, stop, server) = sequencer(&key).await;

        const OPS: u64 = 3000;
        const SLOTS: u32 = 8;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let c = client(addr, &key, SLOTS);
        let lp = CountingLoop {
            ops: OPS,
            seen: seen.clone(),
        };
        let done = c.run_loop(Box::new(lp), SLOTS);
        tokio::time::timeout(Duration::from_secs(30), done)
            .await
            .expect("the loop finished within 30 s")
            .expect("the driver told it");
        assert_eq!(c.stop_loop().await, Some(0), "nothing left unanswered");

        let s = std::mem::take(&mut *seen.lock().expect("lock"));
        assert_eq!(s.asked, OPS);
        assert_eq!(s.errors, 0);
        assert_eq!(s.in_flight, 0);
        assert_eq!(
            s.most_in_flight,
            u64::from(SLOTS),
            "the loop's slots were kept full, never overfilled"
        );
        let mut numbers = s.numbers.clone();
        numbers.sort_unstable();
        assert_eq!(
            numbers,
            (0..OPS).collect::<Vec<_>>(),
            "unique and contiguous"
        );
        let mut seqs = s.seqs.clone();
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len() as u64, OPS, "each op answered once");
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    });
}

#[test]
fn a_loop_stopped_without_answers_counts_every_slot_and_sends_no_more() {
    runtime().block_on(async {
        // Accepts and never speaks: no handshake, no answer.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = silent.local_addr().expect("addr");
        let held = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((s, _)) = silent.accept().await {
                conns.push(s);
            }
        });
        let seen = Arc::new(Mutex::new(Seen::default()));
        let c = client(addr, &ClusterKey::generate(), 4);
        let lp = CountingLoop {
            ops: u64::MAX,
            seen: seen.clone(),
        };
        let mut done = c.run_loop(Box::new(lp), 4);
        assert!(
            tokio::time::timeout(Duration::from_millis(500), &mut done)
                .await
                .is_err(),
            "a loop with nothing answered cannot be done"
        );
        let pending = tokio::time::timeout(Duration::from_secs(10), c.stop_loop())
            .await
            .expect("the driver answers within its connect timeout");
        assert_eq!(pending, Some(4));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let s = seen.lock().expect("lock");
        assert_eq!(
            s.asked, 4,
            "no op asked for past the slots, nor after the stop"
        );
        assert!(s.numbers.is_empty());
        held.abort();
    });
}

/// Sends `ops` ops one after another on `c`, in `lanes` concurrent lanes; the answers.
async fn ops_on(c: &Client, ops: u64, lanes: u64) -> Vec<MultiSeq> {
    let mut lanes_done = Vec::new();
    for _ in 0..lanes {
        let c = c.clone();
        lanes_done.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..ops / lanes {
                let m = tokio::time::timeout(
                    Duration::from_secs(10),
                    c.sequence(SpaceMask::single(0), Bytes::from_static(b"op")),
                )
                .await
                .expect("answered within 10 s")
                .expect("no error");
                got.push(m);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for l in lanes_done {
        all.extend(l.await.expect("lane"));
    }
    all
}

/// One client's answers: one session, its seqs exactly 1..=n.
fn one_session(answers: &[MultiSeq], n: u64, who: &str) -> u64 {
    let session = answers[0].session;
    assert!(
        answers.iter().all(|m| m.session == session),
        "{who}: one session"
    );
    let mut seqs: Vec<u64> = answers.iter().map(|m| m.seq).collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=n).collect::<Vec<_>>(),
        "{who}: its own ops, once each"
    );
    session
}

#[test]
fn a_pools_clients_join_and_leave_and_each_is_a_session_of_its_own() {
    runtime().block_on(async {
        let key = ClusterKey::generate();
        let (addr, stop, server) = sequencer(&key).await;
        let pool = ClientPool::start(
            Arc::new(Tcp),
            ClientConfig {
                client_id: 0,
                target: Target::Direct { sequencer: addr },
                retry_timeout: Duration::from_millis(200),
                window: 8,
                key: Arc::new(key.clone()),
            },
        );
        const OPS: u64 = 400;
        let (a, b) = (pool.join(1), pool.join(2));
        let (ga, gb) = tokio::join!(ops_on(&a, OPS, 4), ops_on(&b, OPS, 4));
        let sa = one_session(&ga, OPS, "a");
        let sb = one_session(&gb, OPS, "b");
        assert_ne!(sa, sb);
        // a leaves (its every handle dropped); c joins in its place, b goes on.
        drop(a);
        let c = pool.join(3);
        let (gc, gb2) = tokio::join!(ops_on(&c, OPS, 4), ops_on(&b, OPS, 4));
        let sc = one_session(&gc, OPS, "c, a new session from 1");
        assert!(sc != sa && sc != sb, "c has a session of its own");
        assert!(gb2.iter().all(|m| m.session == sb), "b kept its session");
        let mut bseqs: Vec<u64> = gb2.iter().map(|m| m.seq).collect();
        bseqs.sort_unstable();
        assert_eq!(bseqs, (OPS + 1..=2 * OPS).collect::<Vec<_>>(), "b went on");
        let mut all: Vec<u64> = [ga, gb, gc, gb2]
            .iter()
            .flatten()
            .flat_map(|m| m.numbers.clone())
            .collect();
        all.sort_unstable();
        assert_eq!(
            all,
            (0..4 * OPS).collect::<Vec<_>>(),
            "unique and contiguous across the clients"
        );
        // Many clients at once, each its own session.
        let many: Vec<Client> = (10..40).map(|id| pool.join(id)).collect();
        let mut runs = Vec::new();
        for c in &many {
            let c = c.clone();
            runs.push(tokio::spawn(async move { ops_on(&c, 20, 2).await }));
        }
        let mut sessions = std::collections::HashSet::new();
        for r in runs {
            let g = r.await.expect("client");
            sessions.insert(one_session(&g, 20, "one of many"));
        }
        assert_eq!(sessions.len(), many.len(), "a session each");
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    });
}

/// A replica of a fake group of two, `index`, while `leader` says which leads. A follower
/// answers every registration and op "not leader, try the leader"; the leader opens a
/// session per registration (numbered across the group, as a real group's replicated
/// sessions are) and answers each op with its seq as its number. Each counts the
/// registrations it got.
struct FakeReplica {
    index: usize,
    leader: Arc<std::sync::atomic::AtomicUsize>,
    sessions: Arc<std::sync::atomic::AtomicU64>,
    registrations: Arc<std::sync::atomic::AtomicU64>,
}

impl mason_common::conn::Handler for FakeReplica {
    fn admit(&self, _: &Role) -> Result<usize, String> {
        Ok(1024)
    }
    async fn open(&self, _: &mason_common::conn::ConnInfo, _: mason_common::conn::Outbox) {}
    async fn frame(
        &self,
        _: &mason_common::conn::ConnInfo,
        out: &mason_common::conn::Outbox,
        body: mason_common::msg::Body,
    ) -> Result<(), String> {
        use mason_common::msg::{Body, ClientReply, Frame, Registered, ReplyStatus};
        use std::sync::atomic::Ordering;
        let leader = self.leader.load(Ordering::SeqCst);
        let (status, hint) = if leader == self.index {
            (ReplyStatus::Ok as i32, 0)
        } else {
            (ReplyStatus::NotLeader as i32, leader as u32 + 1)
        };
        let reply = match body {
            Body::Register(r) => {
                self.registrations.fetch_add(1, Ordering::SeqCst);
                let session = if leader == self.index {
                    self.sessions.fetch_add(1, Ordering::SeqCst) + 1
                } else {
                    0
                };
                Body::Registered(Registered {
                    nonce: r.nonce,
                    status,
                    leader_hint: hint,
                    session,
                })
            }
            Body::ClientOp(op) => Body::ClientReply(ClientReply {
                session: op.session,
                client_seq: op.client_seq,
                status,
                leader_hint: hint,
                space_mask: op.space_mask,
                numbers: if leader == self.index {
                    vec![op.client_seq]
                } else {
                    Vec::new()
                },
                ..Default::default()
            }),
            _ => return Ok(()),
        };
        out.send(Frame { body: Some(reply) })
            .map_err(|e| format!("{e:?}"))
    }
    async fn close(&self, _: &mason_common::conn::ConnInfo) {}
}

/// A client that joins a pool tries first the replica that last answered one of its
/// pool's clients with success, not the one its target names: after a failover, or where
/// the first guess was wrong, new sessions (a ZooKeeper front end's, say) are not each
/// redirected (or, where the guess is a dead machine, held up by a dial that fails).
#[test]
fn a_client_joining_a_pool_goes_where_its_pool_found_the_leader() {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    runtime().block_on(async {
        let key = ClusterKey::generate();
        let leader = Arc::new(AtomicUsize::new(1));
        let sessions = Arc::new(AtomicU64::new(0));
        let mut addrs = Vec::new();
        let mut counts = Vec::new();
        for index in 0..2 {
            let l = Tcp
                .bind("127.0.0.1:0".parse().expect("addr"))
                .await
                .expect("bind");
            addrs.push(l.local_addr().expect("addr"));
            let registrations = Arc::new(AtomicU64::new(0));
            counts.push(registrations.clone());
            tokio::spawn(mason_common::conn::serve(
                l,
                ServeConfig::new(Arc::new(key.clone()), Role::proxy(0, 0)),
                Arc::new(FakeReplica {
                    index,
                    leader: leader.clone(),
                    sessions: sessions.clone(),
                    registrations,
                }),
            ));
        }
        let pool = ClientPool::start(
            Arc::new(Tcp),
            ClientConfig {
                client_id: 0,
                target: Target::Group {
                    group: 0,
                    replicas: addrs,
                    first: 0,
                },
                retry_timeout: Duration::from_secs(5),
                window: 8,
                key: Arc::new(key.clone()),
            },
        );
        let op = |c: Client, who: &'static str| async move {
            tokio::time::timeout(
                Duration::from_secs(5),
                c.sequence(SpaceMask::single(0), Bytes::from_static(b"op")),
            )
            .await
            .unwrap_or_else(|_| panic!("{who}: unanswered after 5 s"))
            .unwrap_or_else(|e| panic!("{who}: {e:?}"))
        };
        let reg = |i: usize| counts[i].load(Ordering::SeqCst);
        // Client `id` joins the pool and its first op is answered; then the registrations
        // each replica has seen in all, and this client's re-sends, are as `why` says.
        let joined = |id: u64, regs: (u64, u64), resent: u64, why: &'static str| {
            let c = pool.join(id);
            async move {
                let m = op(c.clone(), why).await;
                assert_eq!((m.session, m.seq), (id, 1), "{why}");
                assert_eq!((reg(0), reg(1)), regs, "{why}");
                assert_eq!(c.retransmissions(), resent, "{why}: re-sent");
                c
            }
        };
        let a = joined(1, (1, 1), 1, "a: redirected once, then registered").await;
        joined(
            2,
            (1, 2),
            0,
            "b went to the leader its pool knows, not to the target's first",
        )
        .await;
        // The lead moves to replica 0: a's next op is sent back there, and answered; then
        // a new client goes straight to replica 0.
        leader.store(0, Ordering::SeqCst);
        let m = op(a.clone(), "a, after the lead moved").await;
        assert_eq!(m.seq, 2);
        joined(3, (2, 2), 0, "c went to where a found the new leader").await;
    });
}
