//! Log servers (`mason corfu-server`) on loopback, driven directly: bad writes are refused
//! with their reason and never stored; a malformed frame closes only its connection;
//! segment files damaged on disk (a flipped byte, a cut tail) are reported and never
//! returned as data; racing writers never leave two values at one position; a Corfu
//! reader fills a hole a writer left; and log clients that share their links (`LogLinks`)
//! hold one connection per server between them.

#[path = "support/procnet.rs"]
mod procnet;
#[path = "support/wire.rs"]
mod wire;

use bytes::Bytes;
use mason_client::log::{AppendVia, LogClient, LogClientConfig, LogLinks, Noops};
use mason_common::auth::{ClusterKey, Role};
use mason_common::logmsg::{LogItem, LogStatus, LogWrite, LogWriteReply};
use mason_common::msg::{Body, Frame};
use mason_common::transport::Tcp;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("its address")
}

/// A server process, SIGKILLed when dropped.
struct Server {
    child: Child,
    args: Vec<String>,
    log: PathBuf,
    addr: SocketAddr,
}

impl Server {
    fn start(args: Vec<String>, addr: SocketAddr, log: PathBuf) -> Server {
        let child = spawn(&args, &log);
        let s = Server {
            child,
            args,
            log,
            addr,
        };
        s.wait_listening();
        s
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(self.addr).is_err() {
            assert!(Instant::now() < deadline, "{} not listening", self.addr);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.kill();
        self.child = spawn(&self.args, &self.log);
        self.wait_listening();
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(args: &[String], log: &Path) -> Child {
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    Command::new(env!("CARGO_BIN_EXE_mason"))
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("starting mason")
}

/// The test's cluster key, in `dir` (made on first use).
fn key(dir: &Path) -> ClusterKey {
    let p = dir.join("cluster.key");
    if !p.exists() {
        wire::key_in(dir);
    }
    ClusterKey::from_file(&p).expect("the test's key")
}

/// A chain of `r` servers for `shard` of `shards`, head first, tails started first.
fn chain(dir: &Path, shard: u32, shards: u32, r: u32, extra: &[&str]) -> Vec<Server> {
    key(dir);
    let addrs: Vec<SocketAddr> = (0..r).map(|_| free_addr()).collect();
    let mut servers = Vec::new();
    for i in (0..r as usize).rev() {
        let mut args: Vec<String> = [
            "corfu-server",
            "--listen",
            &addrs[i].to_string(),
            "--dir",
            &dir.join(format!("s{i}")).display().to_string(),
            "--shard",
            &shard.to_string(),
            "--shards",
            &shards.to_string(),
            "--chain-index",
            &i.to_string(),
            "--chain-len",
            &r.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if i + 1 < r as usize {
            args.extend(["--successor".to_string(), addrs[i + 1].to_string()]);
        }
        args.extend(wire::key_args(&dir.join("cluster.key")));
        args.extend(extra.iter().map(|s| s.to_string()));
        servers.push(Server::start(args, addrs[i], dir.join(format!("s{i}.log"))));
    }
    servers.reverse();
    servers
}

/// One request and its answer over a fresh blocking connection, as a client.
fn call(addr: SocketAddr, key: &ClusterKey, body: Body) -> Body {
    let (mut s, _) = wire::connect_as(addr, key, &Role::client(1));
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    wire::send(&mut s, &Frame::new(body));
    wire::recv(&mut s).body.expect("a body")
}

fn write(addr: SocketAddr, key: &ClusterKey, shard: u32, items: Vec<LogItem>) -> LogWriteReply {
    match call(
        addr,
        key,
        Body::LogWrite(LogWrite {
            id: 9,
            shard,
            items,
        }),
    ) {
        Body::LogWriteReply(r) => r,
        other => panic!("not a write answer: {other:?}"),
    }
}

fn data(pos: u64, n: usize, fill: u8) -> LogItem {
    LogItem::data(pos, Bytes::from(vec![fill; n]))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn reader(chains: Vec<Vec<SocketAddr>>, key: &ClusterKey) -> Arc<LogClient> {
    let mut cfg = LogClientConfig::new(77, chains, AppendVia::None, Arc::new(key.clone()));
    cfg.request_timeout = Duration::from_millis(500);
    Arc::new(LogClient::new(Arc::new(Tcp), cfg).expect("client"))
}

#[test]
fn bad_writes_are_refused_and_never_stored() {
    let dir = tempfile::tempdir().expect("tmp");
    // Shard 0 of 2: even positions only; entries up to 1 KiB.
    let c = chain(
        dir.path(),
        0,
        2,
        2,
        &["--max-payload", "1024", "--fsync", "off"],
    );
    let k = key(dir.path());
    let head = c[0].addr;
    let r = write(
        head,
        &k,
        0,
        vec![
            data(1, 8, 1),    // another shard's
            data(2, 1025, 2), // too large
            data(4, 1024, 3), // fine, at the limit
        ],
    );
    let got: Vec<LogStatus> = r.results.iter().map(|x| x.status()).collect();
    assert_eq!(
        got,
        [LogStatus::WrongShard, LogStatus::TooLarge, LogStatus::Ok]
    );
    // Only the tail's place in the chain takes forwards: a writer there is refused.
    let r = write(c[1].addr, &k, 0, vec![data(6, 8, 4)]);
    assert_eq!(r.results[0].status(), LogStatus::NotHead);
    // A malformed frame closes its own connection; the server goes on serving.
    let mut s = TcpStream::connect(head).expect("connect");
    s.write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff])
        .expect("garbage");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut b = [0u8; 1];
    assert!(
        matches!(s.read(&mut b), Ok(0) | Err(_)),
        "connection not closed"
    );
    let log = reader(
        vec![c.iter().map(|s| s.addr).collect(), vec![free_addr()]],
        &k,
    );
    let rt = rt();
    for m in 0..2 {
        let got = rt
            .block_on(log.read_member(0, m, &[2, 4, 6]))
            .expect("member read");
        assert_eq!(
            got[0].1,
            Ok(None),
            "member {m}: the oversized entry was stored"
        );
        assert_eq!(
            got[2].1,
            Ok(None),
            "member {m}: the tail took a writer's entry"
        );
        let e = got[1].1.clone().expect("readable").expect("written");
        assert_eq!(e.payload.len(), 1024);
    }
    assert!(
        c[0].log_text().contains("closing connection"),
        "no reason logged"
    );
}

#[test]
fn damaged_segments_are_reported_and_never_returned_as_data() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = chain(dir.path(), 0, 1, 2, &["--fsync", "on"]);
    let k = key(dir.path());
    let items: Vec<LogItem> = (0..50).map(|p| data(p, 100, p as u8)).collect();
    let r = write(c[0].addr, &k, 0, items);
    assert!(r.results.iter().all(|x| x.status() == LogStatus::Ok));
    let chains = vec![c.iter().map(|s| s.addr).collect::<Vec<_>>()];
    // Flip a payload byte of position 20 in the tail's segment.
    c[1].kill();
    let seg = dir.path().join("s1").join("seg-00000000.log");
    let mut bytes = std::fs::read(&seg).expect("segment");
    let needle = vec![20u8; 100];
    let at = bytes
        .windows(100)
        .position(|w| w == needle.as_slice())
        .expect("position 20's payload");
    bytes[at + 50] ^= 0x40;
    std::fs::write(&seg, &bytes).expect("write back");
    c[1].restart();
    let log = reader(chains.clone(), &k);
    let rt = rt();
    let tail_view = rt
        .block_on(log.read_member(0, 1, &[19, 20, 21]))
        .expect("read");
    assert_eq!(
        tail_view[1].1,
        Err(LogStatus::Corrupt),
        "the flipped entry was served"
    );
    assert!(tail_view[0].1.as_ref().is_ok_and(|e| e.is_some()));
    assert!(tail_view[2].1.as_ref().is_ok_and(|e| e.is_some()));
    // The library reads around the damage, from the head.
    let e = rt.block_on(log.read(20)).expect("read").expect("written");
    assert_eq!(e.payload, Bytes::from(vec![20u8; 100]));
    assert!(c[1].log_text().contains("corrupt"), "damage not reported");
    // The head's copy repairs the tail: the same value again goes down the chain.
    let r = write(c[0].addr, &k, 0, vec![data(20, 100, 20)]);
    assert_eq!(r.results[0].status(), LogStatus::Ok);
    let fixed = rt.block_on(log.read_member(0, 1, &[20])).expect("read");
    assert_eq!(
        fixed[0].1.clone().ok().flatten().map(|e| e.payload),
        Some(Bytes::from(vec![20u8; 100]))
    );

    // Cut the tail's segment inside its last record: a torn tail, dropped and reported.
    c[1].kill();
    let len = std::fs::metadata(&seg).expect("segment").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .expect("open");
    f.set_len(len - 30).expect("truncate");
    drop(f);
    c[1].restart();
    assert!(c[1].log_text().contains("torn"), "torn tail not reported");
    let v = rt
        .block_on(log.read_member(0, 1, &[18, 19, 20]))
        .expect("read");
    // The last record there is the repaired 20: cut, so the damaged copy before it is
    // what the scan finds: refused as corrupt, never served as data.
    assert_eq!(v[2].1, Err(LogStatus::Corrupt));
    assert!(v[1]
        .1
        .as_ref()
        .is_ok_and(|e| e.as_ref().is_some_and(|e| e.payload[0] == 19)));
}

#[test]
fn racing_writers_leave_one_value_per_position() {
    let dir = tempfile::tempdir().expect("tmp");
    let c = chain(dir.path(), 0, 1, 2, &["--fsync", "off"]);
    let k = key(dir.path());
    let head = c[0].addr;
    let handles: Vec<_> = (0..6u8)
        .map(|w| {
            let k = k.clone();
            std::thread::spawn(move || {
                (0..100u64)
                    .map(|p| {
                        write(head, &k, 0, vec![data(p, 32, w + 1)])
                            .results
                            .remove(0)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let results: Vec<Vec<_>> = handles
        .into_iter()
        .map(|h| h.join().expect("writer"))
        .collect();
    let log = reader(vec![c.iter().map(|s| s.addr).collect()], &k);
    let rt = rt();
    let positions: Vec<u64> = (0..100).collect();
    let head_view = rt
        .block_on(log.read_member(0, 0, &positions))
        .expect("head");
    let tail_view = rt
        .block_on(log.read_member(0, 1, &positions))
        .expect("tail");
    for p in 0..100usize {
        let stored = tail_view[p]
            .1
            .clone()
            .expect("ok")
            .expect("written")
            .payload;
        assert_eq!(
            head_view[p].1.clone().expect("ok").map(|e| e.payload),
            Some(stored.clone())
        );
        let winners: Vec<u8> = results
            .iter()
            .enumerate()
            .filter(|(_, r)| r[p].status() == LogStatus::Ok)
            .map(|(w, _)| w as u8 + 1)
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "position {p}: writers told ok: {winners:?}"
        );
        assert_eq!(
            stored[0], winners[0],
            "position {p} holds another writer's value"
        );
        for r in &results {
            if r[p].status() == LogStatus::Taken {
                assert_eq!(r[p].payload, stored, "a loser was shown another value");
            }
        }
    }
}

#[test]
fn a_corfu_reader_fills_the_hole_a_writer_left() {
    let dir = tempfile::tempdir().expect("tmp");
    let c = chain(dir.path(), 0, 1, 2, &["--fsync", "off"]);
    let k = key(dir.path());
    let seq_addr = free_addr();
    let _seq = Server::start(
        [
            vec![
                "sequencer".into(),
                "--listen".into(),
                seq_addr.to_string(),
                "--sequencers".into(),
                "1".into(),
            ],
            wire::key_args(&dir.path().join("cluster.key")),
        ]
        .concat(),
        seq_addr,
        dir.path().join("seq.log"),
    );
    let chains = vec![c.iter().map(|s| s.addr).collect::<Vec<_>>()];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // A writer takes position 0 and dies before writing it.
        let dead = mason_client::Client::start(
            Arc::new(Tcp),
            mason_client::ClientConfig {
                client_id: 5,
                target: mason_client::Target::Direct {
                    sequencer: seq_addr,
                },
                retry_timeout: Duration::from_secs(1),
                window: 1,
                key: Arc::new(k.clone()),
            },
        );
        let token = dead
            .sequence(mason_common::SpaceMask::single(0), Bytes::new())
            .await
            .expect("token");
        assert_eq!(token.numbers, vec![0]);
        let mut cfg = LogClientConfig::new(
            6,
            chains,
            AppendVia::Corfu {
                sequencer: seq_addr,
            },
            Arc::new(k.clone()),
        );
        cfg.hole_timeout = Duration::from_millis(200);
        let log = Arc::new(LogClient::new(Arc::new(Tcp), cfg).expect("client"));
        for i in 0..3u8 {
            let p = log.append(Bytes::from(vec![i; 10])).await.expect("append");
            assert_eq!(p, u64::from(i) + 1);
        }
        assert_eq!(log.read(0).await.expect("read"), None, "the hole is there");
        let mut sub = log.subscribe(0, Noops::Surface);
        let first = tokio::time::timeout(Duration::from_secs(10), sub.recv())
            .await
            .expect("the subscriber filled the hole in time")
            .expect("open")
            .expect("entry");
        assert!(first.noop && first.pos == 0, "{first:?}");
        for i in 0..3u8 {
            let e = sub.recv().await.expect("open").expect("entry");
            assert_eq!(
                (e.pos, e.noop, e.payload.to_vec()),
                (u64::from(i) + 1, false, vec![i; 10])
            );
        }
        assert_eq!(log.tail().await.expect("tail"), 4);
        // Skipping noops, a new subscriber sees only the appends.
        let mut sub = log.subscribe(0, Noops::Skip);
        let e = sub.recv().await.expect("open").expect("entry");
        assert_eq!(e.pos, 1);
    });
}

#[test]
fn a_reader_that_is_not_a_corfu_writer_never_fills() {
    // In a CorfuMason log an empty position is one the proxies are still writing: a
    // reader that filled it would take it from them.
    let dir = tempfile::tempdir().expect("tmp");
    let c = chain(dir.path(), 0, 1, 2, &["--fsync", "off"]);
    let k = key(dir.path());
    let r = write(c[0].addr, &k, 0, vec![data(1, 8, 1)]);
    assert_eq!(r.results[0].status(), LogStatus::Ok);
    let mut cfg = LogClientConfig::new(
        8,
        vec![c.iter().map(|s| s.addr).collect()],
        AppendVia::None,
        Arc::new(k.clone()),
    );
    cfg.hole_timeout = Duration::from_millis(50);
    assert!(!cfg.fill_holes);
    let log = Arc::new(LogClient::new(Arc::new(Tcp), cfg).expect("client"));
    let rt = rt();
    rt.block_on(async {
        let mut sub = log.subscribe(0, Noops::Surface);
        let got = tokio::time::timeout(Duration::from_millis(600), sub.recv()).await;
        assert!(
            got.is_err(),
            "the subscriber went past the empty position: {got:?}"
        );
        for m in 0..2 {
            let v = log.read_member(0, m, &[0]).await.expect("read");
            assert_eq!(v[0].1, Ok(None), "member {m}: position 0 was filled");
        }
        // Once the position is written, the subscriber goes on in order.
        let r = write(c[0].addr, &k, 0, vec![data(0, 8, 9)]);
        assert_eq!(r.results[0].status(), LogStatus::Ok);
        let e = sub.recv().await.expect("open").expect("entry");
        assert_eq!((e.pos, e.payload[0]), (0, 9));
    });
}

/// Readers of one process that share their links hold one connection to each server
/// between them, and each still gets its own answers; readers that do not share hold one
/// each.
#[test]
fn log_clients_that_share_links_hold_one_connection_per_server() {
    let dir = tempfile::tempdir().expect("tmp");
    let c = chain(dir.path(), 0, 1, 1, &["--fsync", "off"]);
    let k = key(dir.path());
    const POSITIONS: u64 = 40;
    for pos in 0..POSITIONS {
        let r = write(c[0].addr, &k, 0, vec![data(pos, 8, pos as u8)]);
        assert_eq!(r.results[0].status(), LogStatus::Ok);
    }
    let port = c[0].addr.port();
    const READERS: usize = 4;
    let rt = rt();
    for share in [true, false] {
        let links = share.then(|| LogLinks::new(Arc::new(Tcp), Arc::new(k.clone())));
        let readers: Vec<Arc<LogClient>> = (0..READERS)
            .map(|i| {
                let mut cfg = LogClientConfig::new(
                    100 + i as u64,
                    vec![vec![c[0].addr]],
                    AppendVia::None,
                    Arc::new(k.clone()),
                );
                cfg.request_timeout = Duration::from_secs(5);
                Arc::new(
                    LogClient::sharing(Arc::new(Tcp), cfg, None, links.clone()).expect("client"),
                )
            })
            .collect();
        rt.block_on(async {
            let mut reads = Vec::new();
            for (i, r) in readers.iter().enumerate() {
                let r = r.clone();
                reads.push(tokio::spawn(async move {
                    for pos in (0..POSITIONS).filter(|p| (*p as usize) % READERS == i) {
                        let e = r.read(pos).await.expect("read").expect("written");
                        assert_eq!((e.pos, e.payload[0]), (pos, pos as u8));
                    }
                }));
            }
            for r in reads {
                r.await.expect("reader");
            }
        });
        // Readers that raced to connect first each dialled; all but one link close at once.
        let want = if share { 1 } else { READERS };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let n = procnet::connections_to(std::process::id() as i32, &[port]);
            if n == want {
                break;
            }
            assert!(
                Instant::now() < deadline && n > want,
                "{n} connections for {READERS} readers (sharing: {share}), not {want}"
            );
            rt.block_on(async { tokio::time::sleep(Duration::from_millis(20)).await });
        }
        drop(readers);
        drop(links);
        // Dropped links close (the server need not close its end) before the next count.
        let deadline = Instant::now() + Duration::from_secs(5);
        while procnet::connections_to(std::process::id() as i32, &[port]) > 0 {
            assert!(Instant::now() < deadline, "links left open");
            rt.block_on(async { tokio::time::sleep(Duration::from_millis(20)).await });
        }
    }
}
