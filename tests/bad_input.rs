//! Bad input on the wire and on the command line.
//!
//! Wire, before the handshake and after it: a frame that does not decode, a length over the
//! connection's limit (a few hundred bytes before the handshake, the role's limit after),
//! a stream that ends inside a frame, an empty body, a wrong or missing cluster key, or a
//! frame that role may not send, closes that one connection (with a logged reason); the
//! process lives on and keeps serving well-behaved connections, old and new. Command line:
//! bad values are refused by clap with exit code 2 before anything starts, and a role
//! started without a cluster key refuses to start.
//!
//! Everything listens on 127.0.0.1 only.

#[path = "support/wire.rs"]
mod wire;

use mason_common::auth::{ClusterKey, Role};
use mason_common::msg::{
    Body, ClientOp, ClientReply, Frame, GetSeq, RaftMsg, Register, ReplyStatus, SeqHello, SeqReply,
    SeqStatus,
};
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use wire::{closed_by_server, connect_as, encode, raw, recv, send};

/// The process tests of this file run one at a time (the machine may have 2 cores).
static PROCS: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    PROCS.lock().unwrap_or_else(|e| e.into_inner())
}

/// A spawned `mason` process, SIGKILLed (by its own pid) when dropped.
struct Proc {
    child: Child,
    name: &'static str,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn start(name: &'static str, args: &[String], stderr_to: &Path) -> Proc {
        let err = std::fs::File::create(stderr_to).expect("creating the stderr file");
        let child = Command::new(env!("CARGO_BIN_EXE_mason"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting mason {name}: {e}"));
        Proc { child, name }
    }

    fn assert_alive(&mut self, stderr: &Path) {
        if let Some(st) = self.child.try_wait().expect("try_wait") {
            panic!(
                "mason {} exited ({st}); its stderr:\n{}",
                self.name,
                std::fs::read_to_string(stderr).unwrap_or_default()
            );
        }
    }

    /// Waits (at most 20 s) until `addr` accepts connections.
    fn wait_listening(&mut self, addr: SocketAddr, stderr: &Path) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            self.assert_alive(stderr);
            assert!(
                Instant::now() < deadline,
                "mason {} not listening on {addr} after 20 s",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A loopback address that nothing listens on (it was free a moment ago).
fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    l.local_addr().expect("local_addr")
}

fn s(v: impl ToString) -> String {
    v.to_string()
}

/// The server must close this connection within 2 s, sending nothing first (or only what
/// it queued before).
fn assert_closed_by_server(c: &mut TcpStream, what: &str) {
    assert!(
        closed_by_server(c, Duration::from_secs(2)),
        "{what}: connection still open after 2 s"
    );
}

/// Sends `bytes` on `c` (then, if `close_write`, ends our half) and checks that the server
/// closes the connection.
fn bad_bytes(mut c: TcpStream, bytes: &[u8], close_write: bool, what: &str) {
    c.write_all(bytes).expect("sending bad bytes");
    if close_write {
        c.shutdown(Shutdown::Write).expect("shutdown write");
    }
    assert_closed_by_server(&mut c, what);
}

/// The wire-level bad inputs every server must survive, each on its own connection:
/// before any handshake, and after a handshake as `role` (whose frame limit is
/// `max_frame`). `wrong_kind` is a well-formed frame that role may not send.
fn send_every_bad_frame(
    addr: SocketAddr,
    key: &ClusterKey,
    role: &Role,
    max_frame: usize,
    wrong_kind: &Frame,
) -> usize {
    let mut n = 0;
    let whole = encode(wrong_kind);
    let mut over = ((max_frame + 1) as u32).to_be_bytes().to_vec();
    over.extend_from_slice(&[0u8; 16]);
    let cases: [(&[u8], bool, &str); 7] = [
        // A valid length with a body that does not decode (0xff is an invalid wire type).
        (&[0, 0, 0, 3, 0xff, 0xff, 0xff], false, "undecodable body"),
        // A length over the limit (its body never needs to arrive).
        (&over, false, "length over the limit"),
        // A huge length, near u32::MAX: must not make the server allocate or wait for it.
        (&[0xff, 0xff, 0xff, 0xf0], false, "length near 4 GiB"),
        // A truncated frame: a real frame cut short, then our end closes.
        (
            &whole[..whole.len() - 2],
            true,
            "truncated frame, then close",
        ),
        (&[0, 0], true, "truncated length prefix, then close"),
        (&[0, 0, 0, 0], false, "empty frame"),
        (&[0, 0, 0, 2, 0x08, 0x80], false, "unterminated varint"),
    ];
    for (bytes, close, what) in cases {
        bad_bytes(
            raw(addr),
            bytes,
            close,
            &format!("{what}, before the handshake"),
        );
        let (c, _) = connect_as(addr, key, role);
        bad_bytes(c, bytes, close, &format!("{what}, as {role}"));
        n += 2;
    }
    // A well-formed frame instead of a hello, and one this role may not send.
    bad_bytes(raw(addr), &whole, false, "a frame before the handshake");
    let (c, _) = connect_as(addr, key, role);
    bad_bytes(c, &whole, false, "a frame of the wrong kind");
    // The handshake with a wrong key, or none (the insecure key): the connector sees the
    // acceptor's proof fail; a connector that proves anyway is refused.
    for k in [ClusterKey::generate(), ClusterKey::insecure()] {
        let mut c = raw(addr);
        assert!(
            mason_common::auth::connect_blocking(&mut c, &k, role).is_err(),
            "a handshake with a wrong key succeeded"
        );
    }
    let mut c = wire::forged_handshake(addr, role);
    assert_closed_by_server(&mut c, "a made-up proof");
    n + 3
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

fn get_seq(group: u32, batch_id: u64, space_mask: u64, counts: Vec<u32>) -> Frame {
    Frame::new(Body::GetSeq(GetSeq {
        epoch: 1,
        group,
        batch_id,
        space_mask,
        counts,
        committed: 0,
        session: 0,
    }))
}

fn seq_reply(c: &mut TcpStream) -> SeqReply {
    match recv(c).body {
        Some(Body::SeqReply(r)) => *r,
        other => panic!("expected a SeqReply, got {other:?}"),
    }
}

fn start_sequencer(
    dir: &Path,
    key: &Path,
    max_frame: usize,
) -> (Proc, SocketAddr, std::path::PathBuf) {
    let addr = free_addr();
    let log = dir.join("sequencer.stderr");
    let mut args = vec![
        s("sequencer"),
        s("--listen"),
        s(addr),
        s("--spaces"),
        s(2),
        s("--groups"),
        s(2),
        s("--max-frame"),
        s(max_frame),
    ];
    args.extend(wire::key_args(key));
    let mut p = Proc::start("sequencer", &args, &log);
    p.wait_listening(addr, &log);
    (p, addr, log)
}

/// A connection to a sequencer as proxy replica 0 of triple 0, hosting `groups`.
fn as_proxy(addr: SocketAddr, key: &ClusterKey, groups: Vec<u32>) -> TcpStream {
    let (mut c, peer) = connect_as(addr, key, &Role::proxy(0, 0));
    assert_eq!(peer, Role::sequencer(0));
    send(
        &mut c,
        &Frame::new(Body::SeqHello(SeqHello { replica: 0, groups })),
    );
    c
}

#[test]
fn sequencer_survives_bad_frames() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let (kp, key) = wire::key_in(dir.path());
    let (mut seq, addr, log) = start_sequencer(dir.path(), &kp, 1024);

    // A well-behaved connection, before anything bad happens.
    let mut good = as_proxy(addr, &key, vec![0, 1]);
    send(&mut good, &get_seq(0, 1, 0b11, vec![3, 4]));
    let r = seq_reply(&mut good);
    assert_eq!(r.status, SeqStatus::Ok as i32, "{r:?}");
    assert_eq!(
        (r.group, r.batch_id, r.repeat, r.space_mask, r.epoch),
        (0, 1, false, 0b11, 1),
        "{r:?}"
    );
    assert_eq!(
        (r.bases.clone(), r.counts.clone()),
        (vec![0, 0], vec![3, 4])
    );
    // A malformed request is answered Invalid and leaves the connection open.
    send(&mut good, &get_seq(0, 2, 0b100, vec![1]));
    let r = seq_reply(&mut good);
    assert_eq!(r.status, SeqStatus::Invalid as i32, "space 2 of 2: {r:?}");
    send(&mut good, &get_seq(0, 2, 0b11, vec![1]));
    let r = seq_reply(&mut good);
    assert_eq!(r.status, SeqStatus::Invalid as i32, "counts vs mask: {r:?}");

    let wrong_kind = Frame::new(Body::ClientOp(ClientOp {
        session: 1,
        client_seq: 1,
        group: 0,
        space_mask: 1,
        payload: Default::default(),
        acked_below: 0,
    }));
    let bad = send_every_bad_frame(addr, &key, &Role::proxy(0, 0), 1024, &wrong_kind);
    // A group this sequencer does not serve, or the proxy does not host, closes it too.
    let mut c = as_proxy(addr, &key, vec![0]);
    send(&mut c, &get_seq(1, 1, 0b01, vec![1]));
    assert_closed_by_server(&mut c, "a group the proxy does not host");
    let c = as_proxy(addr, &key, vec![0, 5]);
    bad_bytes(c, &[], false, "a hello naming a group not served");
    // A direct client may ask only for its own session, at epoch 0.
    let (mut c, _) = connect_as(addr, &key, &Role::client(1));
    send(&mut c, &get_seq(0, 1, 0b01, vec![1]));
    assert_closed_by_server(&mut c, "a client asking for a group's batch");
    // A frame exactly at the limit is accepted (it is the body length that is limited):
    // a GetSeq whose counts fill 1024 bytes is answered, here Invalid (mask vs counts).
    let mut at_limit = as_proxy(addr, &key, vec![0]);
    let big = get_seq(0, 9, 0b1, vec![1; 500]);
    let n = encode(&big).len() - 4;
    assert!(n <= 1024, "test frame of {n} bytes");
    send(&mut at_limit, &big);
    let r = seq_reply(&mut at_limit);
    assert_eq!(r.status, SeqStatus::Invalid as i32, "{r:?}");

    // The good connection still works, and the sequencer's state is intact.
    send(&mut good, &get_seq(0, 2, 0b01, vec![5]));
    let r = seq_reply(&mut good);
    assert_eq!(r.status, SeqStatus::Ok as i32, "{r:?}");
    assert_eq!((r.bases.clone(), r.counts.clone()), (vec![3], vec![5]));
    send(&mut good, &get_seq(0, 1, 0b11, vec![0, 0]));
    let r = seq_reply(&mut good);
    assert!(
        r.repeat && r.bases == [0, 0] && r.counts == [3, 4],
        "repeat of batch 1: {r:?}"
    );
    // So does a new connection.
    let mut fresh = as_proxy(addr, &key, vec![1]);
    send(&mut fresh, &get_seq(1, 1, 0b11, vec![1, 1]));
    let r = seq_reply(&mut fresh);
    assert_eq!(r.status, SeqStatus::Ok as i32, "{r:?}");
    assert_eq!(
        (r.bases.clone(), r.counts.clone()),
        (vec![8, 4], vec![1, 1])
    );

    seq.assert_alive(&log);
    let text = std::fs::read_to_string(&log).expect("sequencer stderr");
    assert!(
        count(&text, "closing connection") >= bad.min(20),
        "expected a 'closing connection' line per bad connection; stderr:\n{text}"
    );
    assert!(
        text.contains("did not prove it holds the cluster key"),
        "no log line for the wrong key; stderr:\n{text}"
    );
    assert!(
        text.contains("may not send a ClientOp"),
        "no log line for the wrong-kind frame; stderr:\n{text}"
    );
}

fn client_op(session: u64, group: u32, space_mask: u64) -> Frame {
    Frame::new(Body::ClientOp(ClientOp {
        session,
        client_seq: 1,
        group,
        space_mask,
        payload: Default::default(),
        acked_below: 1,
    }))
}

fn client_reply(c: &mut TcpStream) -> ClientReply {
    match recv(c).body {
        Some(Body::ClientReply(r)) => r,
        other => panic!("expected a ClientReply, got {other:?}"),
    }
}

/// Starts replica 0 of `groups` groups whose other two replicas never start (their
/// addresses are free ports), with `--max-frame 1024`; returns it, its address and the
/// file its stderr goes to.
fn start_lone_proxy(
    dir: &Path,
    key: &Path,
    seq_addr: SocketAddr,
    groups: u32,
    extra: &[&str],
) -> (Proc, SocketAddr, std::path::PathBuf) {
    let peers = [free_addr(), free_addr(), free_addr()];
    let addr = peers[0];
    let log = dir.join("proxy.stderr");
    let mut args = vec![
        s("proxy"),
        s("--replica"),
        s(0),
        s("--peers"),
        peers
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(","),
        s("--groups"),
        s(groups),
        s("--sequencers"),
        s(seq_addr),
        s("--data-dir"),
        dir.join("data").display().to_string(),
        s("--fsync"),
        s("off"),
        s("--max-frame"),
        s(1024),
        s("--max-payload"),
        s(1024),
    ];
    args.extend(wire::key_args(key));
    args.extend(extra.iter().map(s));
    let mut proxy = Proc::start("proxy", &args, &log);
    proxy.wait_listening(addr, &log);
    (proxy, addr, log)
}

#[test]
fn proxy_survives_bad_frames() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let (kp, key) = wire::key_in(dir.path());
    let (_seq, seq_addr, _) = start_sequencer(dir.path(), &kp, 1024);
    // Replica 0 of groups whose other two replicas never start: it cannot win an election,
    // so it answers every op (and registration) for a hosted group, NotLeader.
    let (mut proxy, addr, log) = start_lone_proxy(dir.path(), &kp, seq_addr, 2, &["--spaces", "2"]);

    let (mut good, peer) = connect_as(addr, &key, &Role::client(4));
    assert_eq!(peer, Role::proxy(0, 0));
    send(
        &mut good,
        &Frame::new(Body::Register(Register {
            group: 0,
            client_id: 7,
            nonce: 3,
            window: 4,
        })),
    );
    match recv(&mut good).body {
        Some(Body::Registered(r)) => {
            assert_eq!((r.nonce, r.status), (3, ReplyStatus::NotLeader as i32))
        }
        other => panic!("expected Registered, got {other:?}"),
    }
    send(&mut good, &client_op(7, 0, 0b01));
    let r = client_reply(&mut good);
    assert_eq!((r.session, r.client_seq), (7, 1), "{r:?}");
    assert_eq!(r.status, ReplyStatus::NotLeader as i32, "{r:?}");
    // Malformed ops are answered Invalid: no space, a space out of range, no session.
    for (session, group, mask, why) in [
        (8, 0, 0, "no space"),
        (8, 1, 0b100, "space 2 of 2"),
        (0, 1, 0b01, "no session"),
    ] {
        send(&mut good, &client_op(session, group, mask));
        let r = client_reply(&mut good);
        assert_eq!(r.status, ReplyStatus::Invalid as i32, "{why}: {r:?}");
        assert_eq!((r.session, r.client_seq), (session, 1), "{why}: {r:?}");
    }

    let wrong_kind = Frame::new(Body::SeqReply(Box::new(SeqReply {
        epoch: 1,
        group: 0,
        batch_id: 1,
        status: 0,
        repeat: false,
        space_mask: 1,
        bases: vec![0],
        counts: vec![1],
        watermarks: Vec::new(),
        session: 0,
    })));
    // A client's frame limit is its payload limit and headers (1024 + 4 KiB here).
    let bad = send_every_bad_frame(addr, &key, &Role::client(4), 1024 + 4096, &wrong_kind);
    // An op for a group not hosted here closes the connection.
    let (mut c, _) = connect_as(addr, &key, &Role::client(4));
    send(&mut c, &client_op(9, 9, 0b01));
    assert_closed_by_server(&mut c, "a group not hosted here");
    // Raft frames are taken only from this triple's other replicas: from a client, the
    // connection is closed; a "peer" that is this replica itself, or of another triple, is
    // refused at the handshake.
    let raft = Frame::new(Body::Raft(RaftMsg {
        group: 0,
        data: vec![0xffu8; 8].into(),
    }));
    let (mut stranger, _) = connect_as(addr, &key, &Role::client(4));
    send(&mut stranger, &raft);
    assert_closed_by_server(&mut stranger, "raft frame from a client");
    for role in [Role::proxy(0, 0), Role::proxy(1, 3), Role::proxy(5, 0)] {
        let (c, _) = connect_as(addr, &key, &role);
        bad_bytes(c, &[], false, &format!("{role} is no peer"));
    }
    // A peer's Raft frame whose raft-rs bytes are garbage is dropped with a warning, and
    // the connection stays open; one for a group not hosted here closes it.
    let (mut peer1, _) = connect_as(addr, &key, &Role::proxy(1, 0));
    send(&mut peer1, &raft);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !closed_by_server(&mut peer1, Duration::from_millis(300)),
        "a peer's undecodable raft message closed its connection"
    );
    send(
        &mut peer1,
        &Frame::new(Body::Raft(RaftMsg {
            group: 77,
            data: Default::default(),
        })),
    );
    assert_closed_by_server(&mut peer1, "raft frame for a group not hosted here");

    // The first connection still gets answers, for both groups.
    for g in 0..2 {
        send(&mut good, &client_op(10 + u64::from(g), g, 0b10));
        let r = client_reply(&mut good);
        assert_eq!((r.session, r.client_seq), (10 + u64::from(g), 1), "{r:?}");
        assert_eq!(r.status, ReplyStatus::NotLeader as i32, "{r:?}");
    }
    // So does a new one.
    let (mut fresh, _) = connect_as(addr, &key, &Role::client(4));
    send(&mut fresh, &client_op(12, 0, 0b11));
    let r = client_reply(&mut fresh);
    assert_eq!(r.session, 12, "{r:?}");

    proxy.assert_alive(&log);
    let text = std::fs::read_to_string(&log).expect("proxy stderr");
    assert!(
        count(&text, "closing connection") >= bad.min(20),
        "expected a 'closing connection' line per bad connection; stderr:\n{text}"
    );
    for needle in [
        "may not send a SeqReply",
        "undecodable raft message",
        "not a peer of this replica",
        "did not prove it holds the cluster key",
    ] {
        assert!(
            text.contains(needle),
            "no log line '{needle}'; stderr:\n{text}"
        );
    }
}

/// `mason <args>` must exit 2 at once, with an error on stderr that names `flag` (on its
/// first line when `one_line`), and without creating its results directory.
fn refused(args: &[&str], flag: &str, one_line: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let started = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_mason"))
        .args(args)
        .arg("--out")
        .arg(&out)
        .stdin(Stdio::null())
        .output()
        .expect("running mason");
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(2),
        "mason {args:?}: exit {:?}, stderr:\n{stderr}",
        o.status
    );
    assert!(
        took < Duration::from_secs(5),
        "mason {args:?} took {took:?} to refuse"
    );
    let first = stderr.lines().next().unwrap_or("");
    let named = if one_line {
        first.contains(flag)
    } else {
        stderr.contains(flag)
    };
    assert!(
        first.starts_with("error") && named,
        "mason {args:?}: first stderr line '{first}' is not an error naming {flag}\n{stderr}"
    );
    assert!(o.stdout.is_empty(), "mason {args:?} printed to stdout");
    assert!(
        !out.exists(),
        "mason {args:?} created its results directory: it started running"
    );
}

#[test]
fn bad_flags_are_refused() {
    refused(&["local", "--spaces", "0"], "--spaces", true);
    refused(&["local", "--spaces", "65"], "--spaces", true);
    refused(&["local", "--system", "bogus"], "--system", true);
    refused(&["local", "--duration", "0"], "--duration", true);
    refused(&["local", "--groups", "0"], "--groups", true);
    // A few more of the same kind.
    refused(&["local", "--duration=-1"], "--duration", true);
    refused(&["local", "--duration", "nan"], "--duration", true);
    refused(&["local", "--warmup=-0.5"], "--warmup", true);
    refused(&["local", "--op-spaces", "0"], "--op-spaces", true);
    refused(&["local", "--clients", "0"], "--clients", true);
    refused(&["local", "--fsync", "maybe"], "--fsync", true);
    // A restart with no kill: clap names the missing flag on the next line.
    refused(
        &["local", "--restart-follower", "2"],
        "--kill-follower",
        false,
    );
}

#[test]
fn roles_without_a_cluster_key_refuse_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    for args in [
        vec![s("sequencer"), s("--listen"), s(free_addr())],
        vec![
            s("corfu-server"),
            s("--listen"),
            s(free_addr()),
            s("--dir"),
            dir.path().join("log").display().to_string(),
        ],
        vec![
            s("client"),
            s("--sequencer"),
            s(free_addr()),
            s("--out"),
            dir.path().join("out").display().to_string(),
        ],
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_mason"))
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("running mason");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains("--cluster-key-file") && err.contains("--insecure"),
            "mason {args:?}: {:?}\n{err}",
            o.status
        );
    }
    // A key file others can read is refused too, naming the fix.
    let kp = dir.path().join("open.key");
    std::fs::write(&kp, format!("{}\n", "ab".repeat(32))).expect("key");
    let o = Command::new(env!("CARGO_BIN_EXE_mason"))
        .args([
            "sequencer",
            "--listen",
            &s(free_addr()),
            "--cluster-key-file",
        ])
        .arg(&kp)
        .stdin(Stdio::null())
        .output()
        .expect("running mason");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("chmod 600"),
        "{:?}\n{err}",
        o.status
    );
}

#[test]
fn local_refuses_a_results_dir_that_holds_a_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("data").join("r0")).expect("mkdir");
    let started = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_mason"))
        .args(["local", "--out"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run mason");
    assert_eq!(o.status.code(), Some(2));
    assert!(started.elapsed() < Duration::from_secs(5));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("already holds a run"), "stderr: {err}");
    assert!(!dir.path().join("logs").exists(), "nothing was started");
}
