//! ZooKeeper's own clients against RSMKeeper and ZK-Mason through `mason zk-gateway`
//! (`mason local --serve`), with a real Apache ZooKeeper 3.8 as the oracle:
//! - the same seeded random operations (creates in every mode, sequential names, sets and
//!   deletes with right and wrong versions, exists, children with their Stat, multi with
//!   failing ops, ephemerals across a session's close) through kazoo give the same
//!   answers, line by line, from ZooKeeper and from each of our systems;
//! - kazoo's recipes (lock, counter, party, election, transaction, ensure_path) give the
//!   same output;
//! - zkCli.sh runs create, ls, get, set, stat, delete and deleteall; the Rust
//!   `zookeeper-client` crate sees the same as from ZooKeeper;
//! - bad input (garbage, a negative or oversized length, a reconnect with a wrong
//!   password or an unknown session) gets ZooKeeper's answer, closes that connection
//!   only, and the front end goes on serving;
//! - `mason local --serve` stops every process and exits 0 on SIGINT and on SIGTERM.
//!
//! Needs Debian's `zookeeper` and `python3-kazoo` (`.ci/run` installs them).

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/forward.rs"]
mod forward;
#[path = "support/procnet.rs"]
mod procnet;
#[path = "support/zookeeper.rs"]
mod zookeeper;

use cluster::{one_at_a_time, OutDir};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use zookeeper::{four_letter, kazoo, RealZooKeeper, Serving};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// Seeds of the differential run (each its own root and two sessions).
fn seeds(range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    range.map(|s| s.to_string()).collect()
}

/// Runs the differential script against `ours` and `oracle` and compares the outputs
/// line by line.
fn same_as_zookeeper(ours: &str, oracle: &str, seeds: &[String], what: &str) {
    let mut args = vec![oracle];
    args.extend(seeds.iter().map(String::as_str));
    let want = kazoo("differential.py", &args, SCRIPT_TIMEOUT);
    args[0] = ours;
    let got = kazoo("differential.py", &args, SCRIPT_TIMEOUT);
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    assert!(
        w.len() > 50 * seeds.len(),
        "too little compared: {}",
        w.len()
    );
    for (i, (a, b)) in w.iter().zip(&g).enumerate() {
        assert_eq!(a, b, "{what}: line {i} differs from ZooKeeper's");
    }
    assert_eq!(w.len(), g.len(), "{what}: a different number of lines");
    let errors = w.iter().filter(|l| l.contains("=> err")).count();
    let oks = w.iter().filter(|l| l.contains("=> ok")).count();
    let events = w.iter().filter(|l| l.contains(": events S")).count();
    assert!(
        errors > 20 && oks > 20 && events > 2 * seeds.len(),
        "{what}: errors {errors}, oks {oks}, steps with watch events {events}"
    );
    eprintln!(
        "{what}: {} lines ({oks} ok, {errors} errors, {events} with watch events) the same as \
         ZooKeeper's",
        w.len()
    );
}

#[test]
fn zookeeper_clients_get_zookeepers_answers_from_zkmason_and_rsmkeeper() {
    let _one = one_at_a_time();
    let zk = RealZooKeeper::start();
    let oracle = zk.addr.to_string();

    let out = OutDir::new("zk-gateway-zkmason");
    let mut zkm = Serving::start("zkmason", &["--zk-shards", "2"], out.path());
    let hosts = zkm.hosts();
    same_as_zookeeper(&hosts, &oracle, &seeds(1..=20), "zkmason 2 shards");
    let want = kazoo("recipes.py", &[&oracle], SCRIPT_TIMEOUT);
    let got = kazoo("recipes.py", &[&hosts], SCRIPT_TIMEOUT);
    assert_eq!(got, want, "kazoo's recipes on zkmason");
    assert!(got.contains("party after close ['member-1']"), "{got}");
    assert!(got.contains("rival got it after the release True"), "{got}");
    assert!(got.contains("DataWatch [None, 'a', 'b', None]"), "{got}");
    assert_eq!(zkm.stop(libc::SIGINT), Some(0), "SIGINT stops it cleanly");

    let out = OutDir::new("zk-gateway-rsmkeeper");
    let mut keeper = Serving::start("rsmkeeper", &["--zk-reads", "local"], out.path());
    // Fresh roots on both: seeds the oracle has not seen.
    same_as_zookeeper(&keeper.hosts(), &oracle, &seeds(21..=30), "rsmkeeper");
    assert_eq!(
        keeper.stop(libc::SIGTERM),
        Some(0),
        "SIGTERM stops it cleanly"
    );
}

/// zkCli.sh, Apache's own client, non-interactively: one command per run.
fn zkcli(addr: SocketAddr, cmd: &[&str]) -> String {
    let out = std::process::Command::new("/usr/share/zookeeper/bin/zkCli.sh")
        .arg("-server")
        .arg(addr.to_string())
        .args(cmd)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running zkCli.sh (Debian's zookeeper package)");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "zkCli.sh {cmd:?}: {text}");
    text
}

/// A connection that sends `bytes` and reads until the gateway closes it (at most 10 s);
/// what it answered.
fn send_and_read(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(bytes).expect("write");
    let mut got = Vec::new();
    s.read_to_end(&mut got)
        .expect("the gateway closes the connection");
    got
}

fn connect_packet(session: i64, passwd: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend(0i32.to_be_bytes()); // protocol version
    body.extend(0i64.to_be_bytes()); // last zxid seen
    body.extend(10_000i32.to_be_bytes()); // timeout
    body.extend(session.to_be_bytes());
    body.extend((passwd.len() as i32).to_be_bytes());
    body.extend(passwd);
    let mut p = (body.len() as i32).to_be_bytes().to_vec();
    p.extend(body);
    p
}

#[test]
fn zkcli_works_and_bad_input_closes_only_its_connection() {
    let _one = one_at_a_time();
    let out = OutDir::new("zk-gateway-zkcli");
    let mut zkm = Serving::start(
        "zkmason",
        &["--zk-shards", "2", "--zk-reads", "local", "--gateways", "1"],
        out.path(),
    );
    let addr = zkm.addrs[0];
    assert!(zkcli(addr, &["create", "/zc", "hello"]).contains("Created /zc"));
    assert!(zkcli(addr, &["create", "/zc/k1", "a"]).contains("Created /zc/k1"));
    assert!(zkcli(addr, &["create", "/zc/k2", "b"]).contains("Created /zc/k2"));
    assert!(zkcli(addr, &["ls", "/zc"]).contains("[k1, k2]"));
    assert!(zkcli(addr, &["get", "/zc"]).contains("hello"));
    zkcli(addr, &["set", "/zc", "bye"]);
    let stat = zkcli(addr, &["stat", "/zc"]);
    for line in [
        "dataVersion = 1",
        "cversion = 2",
        "numChildren = 2",
        "dataLength = 3",
    ] {
        assert!(stat.contains(line), "{line} in {stat}");
    }
    zkcli(addr, &["delete", "/zc/k1"]);
    zkcli(addr, &["deleteall", "/zc"]);
    assert!(zkcli(addr, &["ls", "/"]).contains("[zookeeper]"));

    // Bad input: each closes its own connection.
    let negative = (-5i32).to_be_bytes();
    assert!(
        send_and_read(addr, &negative).is_empty(),
        "a negative length"
    );
    let oversized = ((1 << 20) + 1i32).to_be_bytes();
    assert!(
        send_and_read(addr, &oversized).is_empty(),
        "past jute.maxbuffer"
    );
    let mut garbage = 3i32.to_be_bytes().to_vec();
    garbage.extend([1, 2, 3]);
    assert!(
        send_and_read(addr, &garbage).is_empty(),
        "a connect that does not decode"
    );
    // A reconnect to a session nobody holds, or with a wrong password: ZooKeeper's
    // expired-session answer (timeout 0, session 0), then a close.
    for (session, passwd) in [(0x1234_5678i64, [0u8; 16]), (0x7777, [9u8; 16])] {
        let got = send_and_read(addr, &connect_packet(session, &passwd));
        assert!(got.len() >= 4 + 4 + 4 + 8, "{got:?}");
        let timeout = i32::from_be_bytes([got[8], got[9], got[10], got[11]]);
        let sid = i64::from_be_bytes(got[12..20].try_into().expect("8 bytes"));
        assert_eq!((timeout, sid), (0, 0), "refused as expired");
    }
    // Four-letter words.
    assert_eq!(four_letter(addr, "ruok").as_deref(), Some("imok"));
    assert_eq!(four_letter(addr, "isro").as_deref(), Some("rw"));
    let mntr = four_letter(addr, "mntr").unwrap_or_default();
    assert!(mntr.contains("zk_version\t3.8.0"), "{mntr}");
    assert!(mntr.lines().all(|l| l.split('\t').count() == 2), "{mntr}");
    let envi = four_letter(addr, "envi").unwrap_or_default();
    assert!(envi.contains("zookeeper.version=3.8.0-"), "{envi}");
    // And it still serves a real client.
    let recipes = kazoo("recipes.py", &[&addr.to_string()], SCRIPT_TIMEOUT);
    assert!(recipes.contains("counter 6"), "{recipes}");
    assert_eq!(zkm.stop(libc::SIGINT), Some(0));
}

/// The `zookeeper-client` crate (async Rust; create2 by default) runs create2 in every
/// mode, getChildren2, multi with and without a failing op, setData with versions,
/// getEphemerals, getAllChildrenNumber and the errors of bad creates and deletes; what
/// it sees, normalized, is the same from ZooKeeper and from ZK-Mason.
async fn rust_client_script(hosts: &str) -> Vec<String> {
    use zookeeper_client as zk;
    let c = zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(hosts)
        .await
        .expect("a session");
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let eph = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    let seq = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
    let eseq = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    let stat = |s: &zk::Stat| {
        format!(
            "v{} cv{} len{} kids{} eph={} c<=m:{}",
            s.version,
            s.cversion,
            s.data_length,
            s.num_children,
            s.ephemeral_owner != 0,
            s.czxid <= s.mzxid
        )
    };
    let mut out = Vec::new();
    let (s, _) = c.create("/rc", b"root", &open).await.expect("create2");
    out.push(format!("create /rc {}", stat(&s)));
    let (s, n) = c.create("/rc/s-", b"1", &seq).await.expect("sequential");
    out.push(format!("sequential {} {}", n.into_i64(), stat(&s)));
    let (s, n) = c
        .create("/rc/e-", b"", &eseq)
        .await
        .expect("ephemeral sequential");
    out.push(format!(
        "ephemeral sequential {} {}",
        n.into_i64(),
        stat(&s)
    ));
    let (s, _) = c.create("/rc/e", b"x", &eph).await.expect("ephemeral");
    out.push(format!("ephemeral {}", stat(&s)));
    out.push(format!(
        "under an ephemeral: {:?}",
        c.create("/rc/e/x", b"", &open).await.err()
    ));
    out.push(format!(
        "missing parent: {:?}",
        c.create("/nope/x", b"", &open).await.err()
    ));
    let (mut kids, s) = c.get_children("/rc").await.expect("getChildren2");
    kids.sort();
    out.push(format!("children {kids:?} {}", stat(&s)));
    let s = c
        .set_data("/rc", b"two", Some(0))
        .await
        .expect("setData v0");
    out.push(format!("set v0 {}", stat(&s)));
    out.push(format!(
        "set v0 again: {:?}",
        c.set_data("/rc", b"three", Some(0)).await.err()
    ));
    let mut w = c.new_multi_writer();
    w.add_create("/rc/m1", b"m", &open).expect("add");
    w.add_check_version("/rc", 5).expect("add");
    out.push(format!("failed multi: {:?}", w.commit().await.err()));
    out.push(format!(
        "rolled back: {:?}",
        c.check_stat("/rc/m1").await.map(|s| s.is_some())
    ));
    let mut w = c.new_multi_writer();
    w.add_create("/rc/m1", b"m", &open).expect("add");
    w.add_check_version("/rc", 1).expect("add");
    w.add_set_data("/rc", b"four", Some(1)).expect("add");
    let results = w.commit().await.expect("multi");
    out.push(format!("multi results {}", results.len()));
    let mut ephs = c.list_ephemerals("/rc").await.expect("getEphemerals");
    ephs.sort();
    out.push(format!("ephemerals {ephs:?}"));
    out.push(format!(
        "descendants {:?}",
        c.count_descendants_number("/rc").await
    ));
    let (data, s) = c.get_data("/rc").await.expect("getData");
    out.push(format!(
        "get {:?} {}",
        String::from_utf8_lossy(&data),
        stat(&s)
    ));
    out.push(format!(
        "delete missing: {:?}",
        c.delete("/rc/none", None).await.err()
    ));
    out.push(format!(
        "delete non-empty: {:?}",
        c.delete("/rc", None).await.err()
    ));
    drop(c);
    out
}

/// Watches through the `zookeeper-client` crate: client A (behind a forwarder the test
/// can cut) watches znodes that client B changes. Live events come, each before any
/// reply that reflects its change (ZooKeeper's order); then A's connection is cut, B
/// changes what A watches, and when A reconnects (same session) its setWatches brings the
/// events it missed, while an unchanged watch stays armed and fires later.
async fn rust_watch_script(direct: SocketAddr) -> Vec<String> {
    use zookeeper_client as zk;
    let connect = |hosts: String| async move {
        zk::Client::connector()
            .with_session_timeout(Duration::from_secs(10))
            .connect(&hosts)
            .await
            .expect("a session")
    };
    let fwd = forward::Forwarder::start(direct).await;
    let a = connect(fwd.addr.to_string()).await;
    let b = connect(direct.to_string()).await;
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let ev = |e: Result<zk::WatchedEvent, tokio::time::error::Elapsed>| match e {
        Ok(e) => format!("{:?} {}", e.event_type, e.path),
        Err(_) => "no event within 20 s".to_string(),
    };
    let wait = Duration::from_secs(20);
    let mut out = Vec::new();
    b.create("/wt", b"0", &open).await.expect("create");
    b.create("/wt/c", b"", &open).await.expect("create");

    let (_, _, w_data) = a.get_and_watch_data("/wt").await.expect("getData watch");
    let (none, w_exist) = a.check_and_watch_stat("/wt/e").await.expect("exists watch");
    out.push(format!("exists /wt/e before: {}", none.is_some()));
    b.set_data("/wt", b"1", None).await.expect("set");
    // A reads the new data: its event must have come before this reply.
    let (data, _) = a.get_data("/wt").await.expect("getData");
    out.push(format!(
        "read {:?}; its event came first: {}",
        String::from_utf8_lossy(&data),
        futures::FutureExt::now_or_never(w_data.changed())
            .map(|e| format!("{:?} {}", e.event_type, e.path))
            .unwrap_or_else(|| "no".into())
    ));
    b.create("/wt/e", b"", &open).await.expect("create");
    out.push(format!(
        "live: {}",
        ev(tokio::time::timeout(wait, w_exist.changed()).await)
    ));

    // Watches that outlive a lost connection.
    let session = a.session().id();
    let (_, _, w_kids) = a
        .get_and_watch_children("/wt")
        .await
        .expect("children watch");
    let (_, w_new) = a
        .check_and_watch_stat("/wt/new")
        .await
        .expect("exists watch");
    let (_, _, w_gone) = a.get_and_watch_data("/wt/c").await.expect("getData watch");
    let (_, _, w_same) = a.get_and_watch_data("/wt/e").await.expect("getData watch");
    fwd.cut();
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.create("/wt/new", b"", &open).await.expect("create");
    b.delete("/wt/c", None).await.expect("delete");
    fwd.resume();
    for (what, w) in [("children", w_kids), ("exists", w_new), ("deleted", w_gone)] {
        out.push(format!(
            "after the reconnect, {what}: {}",
            ev(tokio::time::timeout(wait, w.changed()).await)
        ));
    }
    out.push(format!("same session: {}", a.session().id() == session));
    b.set_data("/wt/e", b"later", None).await.expect("set");
    out.push(format!(
        "the unchanged watch fires later: {}",
        ev(tokio::time::timeout(wait, w_same.changed()).await)
    ));
    drop(a);
    drop(b);
    out
}

#[test]
fn the_rust_zookeeper_client_sees_zkmason_as_zookeeper() {
    let _one = one_at_a_time();
    let zk = RealZooKeeper::start();
    let out = OutDir::new("zk-gateway-rust-client");
    // Watch feeds answer 300 ms late: replies that must wait for them are seen to wait.
    let mut zkm = Serving::start_env(
        "zkmason",
        &["--zk-shards", "3"],
        out.path(),
        &[("MASON_TEST_FEED_DELAY_MS", "300")],
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let want = rt.block_on(rust_client_script(&zk.addr.to_string()));
    let got = rt.block_on(rust_client_script(&zkm.hosts()));
    for (a, b) in want.iter().zip(&got) {
        assert_eq!(a, b);
    }
    assert_eq!(want.len(), got.len());
    assert!(want.iter().any(|l| l.contains("BadVersion")), "{want:?}");
    let want = rt.block_on(rust_watch_script(zk.addr));
    let got = rt.block_on(rust_watch_script(zkm.addrs[0]));
    eprintln!("watches from ZooKeeper:\n{}", want.join("\n"));
    assert_eq!(got, want, "watches");
    assert!(
        want.iter()
            .all(|l| !l.contains("no event") && !l.ends_with(": no")),
        "{want:?}"
    );
    eprintln!("the same from both:\n{}", want.join("\n"));
    drop(rt);
    assert_eq!(zkm.stop(libc::SIGINT), Some(0));
}

/// One client of the front-end fault test: its session, its ephemeral, its watch, and
/// the creates it got answered.
struct Mover {
    client: zookeeper_client::Client,
    session: i64,
    watch: zookeeper_client::OneshotWatcher,
}

/// A front end is SIGKILLed under load. Its clients (behind a forwarder, as behind a load
/// balancer) reconnect to the other front end with their session ids: their sessions
/// are intact (same id, ephemerals kept), their watches are set again (those whose znode
/// changed while they were away fire on the reconnect, the others on a later change), and
/// every create that was answered, before or after the kill, is there.
#[test]
fn a_killed_front_end_hands_its_clients_sessions_and_watches_to_another() {
    use zookeeper_client as zk;
    let _one = one_at_a_time();
    let out = OutDir::new("zk-gateway-kill");
    let mut zkm = Serving::start(
        "zkmason",
        &["--zk-shards", "2", "--gateways", "2"],
        out.path(),
    );
    let (g0, g1) = (zkm.addrs[0], zkm.addrs[1]);
    let pid = zkm.gateway_pid(g0).expect("front end 0's pid");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async move {
        let connect = |hosts: String| async move {
            zk::Client::connector()
                .with_session_timeout(Duration::from_secs(10))
                .connect(&hosts)
                .await
                .expect("a session")
        };
        let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        let eph = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
        let seq = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
        let fwd = forward::Forwarder::start(g0).await;
        let admin = connect(g1.to_string()).await;
        admin.create("/f", b"", &open).await.expect("create /f");
        const CLIENTS: usize = 4;
        let mut movers = Vec::new();
        for i in 0..CLIENTS {
            let c = connect(fwd.addr.to_string()).await;
            c.create(&format!("/f/e{i}"), b"", &eph)
                .await
                .expect("ephemeral");
            c.create(&format!("/f/w{i}"), b"0", &open)
                .await
                .expect("create");
            let (_, _, watch) = c
                .get_and_watch_data(&format!("/f/w{i}"))
                .await
                .expect("watch");
            let session = c.session().id().0;
            movers.push(Mover {
                client: c,
                session,
                watch,
            });
        }
        // Load: every client creates sequential znodes until told to stop.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let killed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut loads = Vec::new();
        for (i, m) in movers.iter().enumerate() {
            let c = m.client.clone();
            let (stop, killed, seq) = (stop.clone(), killed.clone(), seq.clone());
            loads.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut after_kill = 0;
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    n += 1;
                    let data = format!("{i}:{n}");
                    let was_killed = killed.load(std::sync::atomic::Ordering::SeqCst);
                    if let Ok((_, s)) = c.create(&format!("/f/c{i}-"), data.as_bytes(), &seq).await
                    {
                        acked.push((format!("/f/c{i}-{s}"), data));
                        after_kill += usize::from(was_killed);
                    } else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                (acked, after_kill)
            }));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        // SAFETY: kill(2) on a front end of the `mason local` this test started.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
        fwd.retarget(g1);
        fwd.cut();
        killed.store(true, std::sync::atomic::Ordering::SeqCst);
        // Half the watched znodes change while their clients are away.
        for i in 0..CLIENTS / 2 {
            admin
                .set_data(&format!("/f/w{i}"), b"away", None)
                .await
                .expect("set while away");
        }
        fwd.resume();
        tokio::time::sleep(Duration::from_secs(3)).await;
        for i in CLIENTS / 2..CLIENTS {
            admin
                .set_data(&format!("/f/w{i}"), b"back", None)
                .await
                .expect("set after the move");
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut total = 0;
        for (i, (m, load)) in movers.into_iter().zip(loads).enumerate() {
            let (acked, after_kill) = load.await.expect("load task");
            assert!(after_kill > 0, "client {i} was answered after the kill");
            assert_eq!(
                m.client.session().id().0,
                m.session,
                "client {i}: same session"
            );
            let e = tokio::time::timeout(Duration::from_secs(20), m.watch.changed())
                .await
                .unwrap_or_else(|_| panic!("client {i}: its watch fired"));
            assert_eq!(
                (e.event_type, e.path.as_str()),
                (zk::EventType::NodeDataChanged, format!("/f/w{i}").as_str()),
                "client {i}'s watch"
            );
            let st = admin
                .check_stat(&format!("/f/e{i}"))
                .await
                .expect("exists")
                .unwrap_or_else(|| panic!("client {i}: its ephemeral survived the move"));
            assert_eq!(
                st.ephemeral_owner, m.session,
                "client {i}: its ephemeral's owner"
            );
            for (path, data) in &acked {
                let (got, _) = admin
                    .get_data(path)
                    .await
                    .unwrap_or_else(|e| panic!("acknowledged {path} lost: {e}"));
                assert_eq!(got, data.as_bytes(), "{path}");
            }
            // Still working on the other front end.
            m.client
                .set_data(&format!("/f/w{i}"), b"last", None)
                .await
                .expect("a write after the move");
            total += acked.len();
        }
        eprintln!("{total} acknowledged creates, all there; 4 sessions moved with their watches");
    });
    assert_eq!(zkm.stop(libc::SIGINT), Some(0));
}

/// The proxies' ports, from a `mason local` run's `addrs.txt`.
fn proxy_ports(out: &std::path::Path) -> Vec<u16> {
    let addrs = std::fs::read_to_string(out.join("addrs.txt")).expect("addrs.txt");
    addrs
        .lines()
        .filter(|l| l.starts_with("proxy"))
        .filter_map(|l| l.rsplit('\t').next()?.parse::<SocketAddr>().ok())
        .map(|a| a.port())
        .collect()
}

/// Many ZooKeeper sessions through one front end: with `--shared-conns on` (the default)
/// its backend sessions share one driver and its connections to the proxies, so it holds
/// a few connections to them, not one per session; with `off`, at least one per session.
/// Either way each session's writes are its own and every session reads them all, and
/// the sessions, once closed, are let go at once.
#[test]
fn a_front_ends_sessions_share_its_connections_to_the_proxies() {
    use zookeeper_client as zk;
    let _one = one_at_a_time();
    const SESSIONS: usize = 16;
    for shared in ["on", "off"] {
        let out = OutDir::new(&format!("zk-gateway-shared-{shared}"));
        let mut zkm = Serving::start("rsmkeeper", &["--shared-conns", shared], out.path());
        let pid = zkm.gateway_pid(zkm.addrs[0]).expect("the front end's pid");
        let ports = proxy_ports(out.path());
        assert_eq!(ports.len(), 3, "one triple of proxies");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let hosts = zkm.addrs[0].to_string();
        let clients = rt.block_on(async move {
            let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
            let mut clients = Vec::new();
            for _ in 0..SESSIONS {
                let c = zk::Client::connector()
                    .with_session_timeout(Duration::from_secs(10))
                    .connect(&hosts)
                    .await
                    .expect("a session");
                clients.push(c);
            }
            let mut writes = Vec::new();
            for (i, c) in clients.iter().enumerate() {
                let (c, open) = (c.clone(), open.clone());
                writes.push(async move {
                    for k in 0..5 {
                        c.create(&format!("/s{i}-{k}"), format!("{i}:{k}").as_bytes(), &open)
                            .await
                            .expect("create");
                    }
                });
            }
            futures::future::join_all(writes).await;
            let ids: std::collections::HashSet<i64> =
                clients.iter().map(|c| c.session().id().0).collect();
            assert_eq!(ids.len(), SESSIONS, "a session each");
            for c in &clients {
                for i in 0..SESSIONS {
                    let (data, _) = c.get_data(&format!("/s{i}-4")).await.expect("get");
                    assert_eq!(data, format!("{i}:4").as_bytes());
                }
            }
            clients
        });
        let n = procnet::connections_to(pid, &ports);
        eprintln!("--shared-conns {shared}: the front end holds {n} connections to the proxies");
        if shared == "on" {
            // The backend sessions' connection to the leader (at most one per replica),
            // and the watch feed's.
            assert!(n <= 6, "{n} connections for {SESSIONS} sessions");
        } else {
            assert!(
                n >= SESSIONS,
                "only {n} connections for {SESSIONS} sessions"
            );
        }
        // Closed sessions are let go at once (their backend clients' slots with them), not
        // after their timeout (10 s).
        let gateway = zkm.addrs[0];
        rt.block_on(async move {
            drop(clients); // each sends its closeSession
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let m = four_letter(gateway, "mntr").unwrap_or_default();
                if m.lines().any(|l| l == "zk_global_sessions\t0") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "closed sessions still held:\n{m}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        drop(rt);
        assert_eq!(zkm.stop(libc::SIGINT), Some(0));
    }
}
